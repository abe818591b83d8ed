//! The datapath snapshot: the desired state compiled into the immutable
//! tables the pipeline reads.
//!
//! Compilation resolves names to indices (a port's position in `ports` is
//! its [`PortId`]), derives the routes (a /32 per pod, each remote node's
//! pod CIDR into the overlay, static routes), builds the bridge domains'
//! flood lists, and rejects a state that cannot work with an error that
//! says what to fix. The result is never mutated: the control plane builds a
//! new one and publishes it with one pointer swap, and each carries a
//! `generation` so cached flows built from an older one can be revalidated.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rustc_hash::{FxHashMap, FxHashSet};
use xvs_control::state::{DesiredState, MacAddr, PortKind};

use crate::lpm::Lpm;
use crate::port::PortId;
use crate::wire::VXLAN_OVERHEAD;

/// What a port is, as the pipeline sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRole {
    /// A pod's veth; `ip` is the only source address it may use.
    Pod { ip: Ipv4Addr },
    /// The link to the underlay.
    Uplink,
    /// A port of bridge domain `domain`.
    Bridged { domain: u16 },
}

/// One port of the snapshot.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub name: String,
    pub role: PortRole,
    /// The switch's own MAC on this port: destination of what is routed to
    /// us, source of what we route out.
    pub mac: MacAddr,
    pub mtu: u16,
}

/// Where a route leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// Out of `port` to Ethernet destination `mac`.
    Port { port: PortId, mac: MacAddr },
    /// Into the overlay toward remote node `remote` (index in `remotes`).
    Remote { remote: u16 },
}

/// This node's end of the VXLAN overlay.
#[derive(Debug, Clone)]
pub struct Overlay {
    pub vni: u32,
    pub vtep_ip: Ipv4Addr,
    pub vtep_mac: MacAddr,
    pub udp_port: u16,
    pub uplink: PortId,
}

/// A remote VTEP.
#[derive(Debug, Clone)]
pub struct Remote {
    pub name: String,
    pub pod_cidr: Ipv4Net,
    pub vtep_ip: Ipv4Addr,
    pub vtep_mac: MacAddr,
    pub underlay_mac: MacAddr,
}

/// The compiled, immutable datapath configuration.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub generation: u64,
    /// Indexed by [`PortId`].
    pub ports: Vec<PortInfo>,
    pub routes: Lpm<u32, NextHop>,
    pub node_ip: Ipv4Addr,
    /// The pod gateway: answers ARP and ICMP echo.
    pub gateway_ip: Ipv4Addr,
    /// Addresses the switch answers ARP for on pod ports (gateway included).
    pub proxy_arp: FxHashSet<Ipv4Addr>,
    pub overlay: Option<Overlay>,
    pub remotes: Vec<Remote>,
    /// Ports of each bridge domain, in port order (the flood lists).
    pub bridge_domains: FxHashMap<u16, Vec<PortId>>,
}

/// Why a desired state cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("port name {0:?} is used twice; port names must be unique")]
    DuplicatePort(String),
    #[error("{0} ports configured; the switch supports at most {max}", max = PortId::MAX)]
    TooManyPorts(usize),
    #[error("route {prefix} names port {port:?}, which does not exist")]
    UnknownRoutePort { prefix: Ipv4Net, port: String },
    #[error("route {prefix} goes out bridged port {port:?}; routes must use a pod or uplink port")]
    RouteToBridgedPort { prefix: Ipv4Net, port: String },
    #[error("prefix {0} is routed twice (pods, remote nodes and static routes must not overlap exactly)")]
    DuplicateRoute(Ipv4Net),
    #[error("pod port {port:?} has address {ip}, outside this node's pod CIDR {cidr}")]
    PodOutsideCidr {
        port: String,
        ip: Ipv4Addr,
        cidr: Ipv4Net,
    },
    #[error("remote node {0:?} is configured but this node has no `vxlan` section")]
    RemoteWithoutOverlay(String),
    #[error("VXLAN uplink {0:?} is not a port of kind `uplink`")]
    BadOverlayUplink(String),
    #[error("VNI {0} does not fit in 24 bits")]
    VniOutOfRange(u32),
    #[error("port {port:?} has MTU {mtu}; it must be at least 68 (RFC 791) and the overlay needs {need} more on the uplink")]
    BadMtu { port: String, mtu: u16, need: usize },
}

impl Snapshot {
    /// Compiles `state` into snapshot number `generation`.
    pub fn compile(state: &DesiredState, generation: u64) -> Result<Snapshot, CompileError> {
        let node = &state.node;
        if state.ports.len() > usize::from(PortId::MAX) {
            return Err(CompileError::TooManyPorts(state.ports.len()));
        }

        let mut by_name: FxHashMap<&str, PortId> = FxHashMap::default();
        let mut ports = Vec::with_capacity(state.ports.len());
        let mut routes = Lpm::default();
        let mut bridge_domains: FxHashMap<u16, Vec<PortId>> = FxHashMap::default();

        for (idx, spec) in state.ports.iter().enumerate() {
            let id =
                PortId::try_from(idx).map_err(|_| CompileError::TooManyPorts(state.ports.len()))?;
            if by_name.insert(spec.name.as_str(), id).is_some() {
                return Err(CompileError::DuplicatePort(spec.name.clone()));
            }
            if spec.mtu < 68 {
                return Err(CompileError::BadMtu {
                    port: spec.name.clone(),
                    mtu: spec.mtu,
                    need: 0,
                });
            }
            let (role, mac) = match &spec.kind {
                PortKind::Pod { ip, mac } => {
                    if !node.pod_cidr.contains(ip) {
                        return Err(CompileError::PodOutsideCidr {
                            port: spec.name.clone(),
                            ip: *ip,
                            cidr: node.pod_cidr,
                        });
                    }
                    let host = Ipv4Net::from(*ip);
                    let hop = NextHop::Port {
                        port: id,
                        mac: *mac,
                    };
                    if routes.insert(u32::from(*ip), 32, hop).is_some() {
                        return Err(CompileError::DuplicateRoute(host));
                    }
                    (PortRole::Pod { ip: *ip }, node.gateway_mac)
                }
                PortKind::Uplink { mac } => (PortRole::Uplink, *mac),
                PortKind::Bridged { domain } => {
                    bridge_domains.entry(*domain).or_default().push(id);
                    (PortRole::Bridged { domain: *domain }, MacAddr::default())
                }
            };
            ports.push(PortInfo {
                name: spec.name.clone(),
                role,
                mac,
                mtu: spec.mtu,
            });
        }

        let overlay = match &node.vxlan {
            None => None,
            Some(v) => {
                if v.vni > 0x00ff_ffff {
                    return Err(CompileError::VniOutOfRange(v.vni));
                }
                let uplink = *by_name
                    .get(v.uplink.as_str())
                    .ok_or_else(|| CompileError::BadOverlayUplink(v.uplink.clone()))?;
                let port = &ports[usize::from(uplink)];
                if port.role != PortRole::Uplink {
                    return Err(CompileError::BadOverlayUplink(v.uplink.clone()));
                }
                if usize::from(port.mtu) < 68 + VXLAN_OVERHEAD {
                    return Err(CompileError::BadMtu {
                        port: port.name.clone(),
                        mtu: port.mtu,
                        need: VXLAN_OVERHEAD,
                    });
                }
                Some(Overlay {
                    vni: v.vni,
                    vtep_ip: v.vtep_ip,
                    vtep_mac: v.vtep_mac,
                    udp_port: v.udp_port,
                    uplink,
                })
            }
        };

        let mut remotes = Vec::with_capacity(state.remote_nodes.len());
        for (idx, r) in state.remote_nodes.iter().enumerate() {
            if overlay.is_none() {
                return Err(CompileError::RemoteWithoutOverlay(r.name.clone()));
            }
            let remote = u16::try_from(idx).map_err(|_| CompileError::TooManyPorts(idx))?;
            let hop = NextHop::Remote { remote };
            if routes
                .insert(
                    u32::from(r.pod_cidr.network()),
                    r.pod_cidr.prefix_len(),
                    hop,
                )
                .is_some()
            {
                return Err(CompileError::DuplicateRoute(r.pod_cidr));
            }
            remotes.push(Remote {
                name: r.name.clone(),
                pod_cidr: r.pod_cidr,
                vtep_ip: r.vtep_ip,
                vtep_mac: r.vtep_mac,
                underlay_mac: r.underlay_mac,
            });
        }

        for r in &state.routes {
            let port =
                *by_name
                    .get(r.port.as_str())
                    .ok_or_else(|| CompileError::UnknownRoutePort {
                        prefix: r.prefix,
                        port: r.port.clone(),
                    })?;
            if matches!(ports[usize::from(port)].role, PortRole::Bridged { .. }) {
                return Err(CompileError::RouteToBridgedPort {
                    prefix: r.prefix,
                    port: r.port.clone(),
                });
            }
            let hop = NextHop::Port {
                port,
                mac: r.next_hop_mac,
            };
            if routes
                .insert(u32::from(r.prefix.network()), r.prefix.prefix_len(), hop)
                .is_some()
            {
                return Err(CompileError::DuplicateRoute(r.prefix));
            }
        }

        let mut proxy_arp: FxHashSet<Ipv4Addr> = state.proxy_arp.iter().copied().collect();
        proxy_arp.insert(node.gateway_ip);

        Ok(Snapshot {
            generation,
            ports,
            routes,
            node_ip: node.node_ip,
            gateway_ip: node.gateway_ip,
            proxy_arp,
            overlay,
            remotes,
            bridge_domains,
        })
    }

    /// The port with this name.
    pub fn port_id(&self, name: &str) -> Option<PortId> {
        self.ports
            .iter()
            .position(|p| p.name == name)
            .and_then(|i| PortId::try_from(i).ok())
    }
}
