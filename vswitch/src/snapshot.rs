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
//!
//! Services are compiled into their own [`ServiceTable`], which a new
//! snapshot shares with the previous one wherever Services did not change
//! ([`Snapshot::compile_with`]); a change of Services alone makes a new
//! snapshot that shares everything else ([`Snapshot::with_services`]) and
//! keeps its `flow_generation`: cached flows do not depend on Services
//! (conntrack carries a connection's NAT), so they stay valid and nothing
//! needs revalidating.

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use rustc_hash::{FxHashMap, FxHashSet};
use xvs_control::service::Services;
use xvs_control::state::{DesiredState, MacAddr, PortKind};

use crate::classifier::{RuleError, RuleTable};
use crate::lpm::Lpm;
use crate::packet::MAX_FRAME_LEN;
use crate::port::PortId;
use crate::services::{NodeFacts, ServiceTable, ServiceTableError, DEFAULT_SNAT_PORTS};
use crate::wire::{vlan, ETHERNET_HEADER_LEN, VXLAN_OVERHEAD};

/// The smallest MTU an IPv4 link may have (RFC 791).
pub const MIN_MTU: u16 = 68;
/// The largest MTU a frame buffer carries: a tagged Ethernet frame of this
/// MTU fills a frame's data area.
#[allow(clippy::cast_possible_truncation)] // 1774, checked by the test below
pub const MAX_MTU: u16 = (MAX_FRAME_LEN - ETHERNET_HEADER_LEN - vlan::TAG_LEN) as u16;

/// An IPv4 prefix in the form the datapath tests it: one AND, one compare
/// (`Ipv4Net::contains` rebuilds the netmask on every call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix4 {
    net: u32,
    mask: u32,
}

impl From<Ipv4Net> for Prefix4 {
    fn from(n: Ipv4Net) -> Self {
        Prefix4 {
            net: u32::from(n.network()),
            mask: u32::from(n.netmask()),
        }
    }
}

impl Prefix4 {
    #[inline]
    pub fn contains(self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask == self.net
    }
}

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NextHop {
    /// Out of `port` to Ethernet destination `mac`.
    Port { port: PortId, mac: MacAddr },
    /// Into the overlay toward remote node `remote` (index in `remotes`).
    Remote { remote: u16 },
}

/// What the route table says about a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Via(NextHop),
    /// Inside this node's pod CIDR but no pod has the address: answered with
    /// ICMP host unreachable instead of following a shorter route (the
    /// default route would bounce it between us and the router until its
    /// TTL ran out, which is why Calico installs a blackhole route for its
    /// block).
    Unassigned,
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
    /// `pod_cidr`, for the datapath.
    pub pod_prefix: Prefix4,
    pub vtep_ip: Ipv4Addr,
    pub vtep_mac: MacAddr,
    pub underlay_mac: MacAddr,
}

/// The compiled, immutable datapath configuration.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub generation: u64,
    /// The generation of the last change to anything but Services: what
    /// cached flows and hand-off parcels are tagged with.
    pub flow_generation: u64,
    /// Indexed by [`PortId`].
    pub ports: Vec<PortInfo>,
    pub routes: Lpm<u32, Route>,
    pub node_ip: Ipv4Addr,
    /// This node's pod CIDR.
    pub pod_cidr: Ipv4Net,
    /// `pod_cidr`, for the datapath.
    pub pod_prefix: Prefix4,
    /// The pod gateway: answers ARP and ICMP echo.
    pub gateway_ip: Ipv4Addr,
    /// Addresses the switch answers ARP for on pod ports (gateway included).
    pub proxy_arp: FxHashSet<Ipv4Addr>,
    pub overlay: Option<Overlay>,
    pub remotes: Vec<Remote>,
    /// Remote VTEP address -> index in `remotes`: VXLAN is only accepted
    /// from these.
    pub remote_by_vtep: FxHashMap<Ipv4Addr, u16>,
    /// Ports of each bridge domain, in port order (the flood lists).
    pub bridge_domains: FxHashMap<u16, Vec<PortId>>,
    /// The user's flow rules, consulted before the default pipeline.
    pub rules: RuleTable,
    /// Every distinct next hop of `routes`, so that a cached flow names
    /// its hop with a 16-bit index ([`Snapshot::hop_id`]).
    pub hops: Vec<NextHop>,
    hop_ids: FxHashMap<NextHop, u16>,
    /// Services, compiled.
    pub services: Arc<ServiceTable>,
    /// The Services `services` was compiled from.
    pub service_specs: Services,
    /// What the service table was compiled for.
    pub facts: NodeFacts,
    /// The cluster's pod network, if pod traffic leaving it is
    /// masqueraded.
    pub cluster_prefix: Option<Prefix4>,
    /// The source address of SNAT inside the cluster (NodePort traffic to
    /// an endpoint on another node, hairpin): this node's pod CIDR's
    /// network address, as Flannel gives its VXLAN device, so the answers
    /// come back through this node's overlay route.
    pub cluster_snat_ip: Ipv4Addr,
}

/// Why a desired state cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("port name {0:?} is used twice; port names must be unique")]
    DuplicatePort(String),
    #[error("{0} ports configured; the switch supports at most {max}", max = PortId::MAX)]
    TooManyPorts(usize),
    #[error("{0} remote nodes configured; the switch supports at most {max}", max = u16::MAX)]
    TooManyRemotes(usize),
    #[error("route {prefix} names port {port:?}, which does not exist")]
    UnknownRoutePort { prefix: Ipv4Net, port: String },
    #[error("route {prefix} goes out bridged port {port:?}; routes must use a pod or uplink port")]
    RouteToBridgedPort { prefix: Ipv4Net, port: String },
    #[error("prefix {0} is routed twice (pods, remote nodes and static routes must not overlap exactly)")]
    DuplicateRoute(Ipv4Net),
    #[error("remote node {name:?} claims pod CIDR {cidr}, which overlaps this node's {ours}")]
    RemoteOverlapsLocal {
        name: String,
        cidr: Ipv4Net,
        ours: Ipv4Net,
    },
    #[error("remote nodes {0:?} and {1:?} have the same VTEP address {2}")]
    DuplicateVtep(String, String, Ipv4Addr),
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
    #[error("port {port:?} has MTU {mtu}; it must be between {MIN_MTU} and {MAX_MTU}")]
    BadMtu { port: String, mtu: u16 },
    #[error("VXLAN uplink {port:?} has MTU {mtu}; the overlay needs at least {need} (68 for the inner packet + {VXLAN_OVERHEAD})")]
    OverlayMtuTooSmall { port: String, mtu: u16, need: usize },
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("{0} flow rules configured; the switch supports at most {max}", max = MAX_RULES)]
    TooManyRules(usize),
    #[error("{0} distinct next hops; the switch supports at most {max}", max = u16::MAX - 1)]
    TooManyHops(usize),
    #[error(transparent)]
    Service(#[from] ServiceTableError),
    #[error("pod port {port:?} has address {ip}, the pod CIDR's network address, which the switch uses as its own source address inside the cluster")]
    PodHasNetworkAddress { port: String, ip: Ipv4Addr },
}

/// The most flow rules a snapshot holds: a cached flow names its rule in
/// 15 bits.
pub const MAX_RULES: usize = (1 << 15) - 2;

impl Snapshot {
    /// Compiles `state` into snapshot number `generation`, with the
    /// default SNAT ports.
    pub fn compile(state: &DesiredState, generation: u64) -> Result<Snapshot, CompileError> {
        Self::compile_with(state, generation, None, DEFAULT_SNAT_PORTS)
    }

    /// Compiles `state` into snapshot number `generation`, reusing what
    /// `previous` compiled of the Services that did not change (when the
    /// node facts Services depend on are the same). `snat_ports` are the
    /// node-IP ports SNAT uses, which no node port may take.
    pub fn compile_with(
        state: &DesiredState,
        generation: u64,
        previous: Option<&Snapshot>,
        snat_ports: (u16, u16),
    ) -> Result<Snapshot, CompileError> {
        let node = &state.node;
        let facts = NodeFacts {
            node_ip: node.node_ip,
            pod_cidr: node.pod_cidr,
            gateway_ip: node.gateway_ip,
            snat_ports,
        };
        let services = match previous.filter(|p| p.facts == facts) {
            Some(p) if p.service_specs.ptr_eq(&state.services) => Arc::clone(&p.services),
            Some(p) => {
                let changes = p.service_specs.changes(&state.services);
                let changes: Vec<_> = changes.iter().map(|c| (c.name, c.new)).collect();
                Arc::new(p.services.update(&changes, &facts)?)
            }
            None => Arc::new(ServiceTable::build(&state.services, &facts)?),
        };
        let cluster_snat_ip = node.pod_cidr.network();
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
            if !(MIN_MTU..=MAX_MTU).contains(&spec.mtu) {
                return Err(CompileError::BadMtu {
                    port: spec.name.clone(),
                    mtu: spec.mtu,
                });
            }
            let (role, mac) = match &spec.kind {
                PortKind::Pod { ip, mac } => {
                    if *ip == cluster_snat_ip && node.pod_cidr.prefix_len() < 32 {
                        return Err(CompileError::PodHasNetworkAddress {
                            port: spec.name.clone(),
                            ip: *ip,
                        });
                    }
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
                    if routes.insert(u32::from(*ip), 32, Route::Via(hop)).is_some() {
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
                let need = usize::from(MIN_MTU) + VXLAN_OVERHEAD;
                if usize::from(port.mtu) < need {
                    return Err(CompileError::OverlayMtuTooSmall {
                        port: port.name.clone(),
                        mtu: port.mtu,
                        need,
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

        // Every address of this node's pod CIDR that no pod has. (With a /32
        // CIDR the one address is the pod's, whose route stays.)
        let (net, len) = (
            u32::from(node.pod_cidr.network()),
            node.pod_cidr.prefix_len(),
        );
        if routes.get_exact(net, len).is_none() {
            routes.insert(net, len, Route::Unassigned);
        }

        let mut remotes: Vec<Remote> = Vec::with_capacity(state.remote_nodes.len());
        let mut remote_by_vtep = FxHashMap::default();
        for (idx, r) in state.remote_nodes.iter().enumerate() {
            if overlay.is_none() {
                return Err(CompileError::RemoteWithoutOverlay(r.name.clone()));
            }
            let remote = u16::try_from(idx)
                .map_err(|_| CompileError::TooManyRemotes(state.remote_nodes.len()))?;
            if r.pod_cidr.contains(&node.pod_cidr) || node.pod_cidr.contains(&r.pod_cidr) {
                return Err(CompileError::RemoteOverlapsLocal {
                    name: r.name.clone(),
                    cidr: r.pod_cidr,
                    ours: node.pod_cidr,
                });
            }
            if let Some(other) = remote_by_vtep.insert(r.vtep_ip, remote) {
                let other = remotes[usize::from(other)].name.clone();
                return Err(CompileError::DuplicateVtep(
                    other,
                    r.name.clone(),
                    r.vtep_ip,
                ));
            }
            let hop = Route::Via(NextHop::Remote { remote });
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
                pod_prefix: r.pod_cidr.into(),
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
                .insert(
                    u32::from(r.prefix.network()),
                    r.prefix.prefix_len(),
                    Route::Via(hop),
                )
                .is_some()
            {
                return Err(CompileError::DuplicateRoute(r.prefix));
            }
        }

        let mut proxy_arp: FxHashSet<Ipv4Addr> = state.proxy_arp.iter().copied().collect();
        proxy_arp.insert(node.gateway_ip);

        if state.rules.len() > MAX_RULES {
            return Err(CompileError::TooManyRules(state.rules.len()));
        }
        let rules = RuleTable::compile(
            &state.rules,
            |name| by_name.get(name).copied(),
            |name| {
                remotes
                    .iter()
                    .position(|r| r.name == name)
                    .and_then(|i| u16::try_from(i).ok())
            },
        )?;

        let mut hops = Vec::new();
        let mut hop_ids = FxHashMap::default();
        for route in routes.values() {
            if let Route::Via(hop) = *route {
                if let std::collections::hash_map::Entry::Vacant(e) = hop_ids.entry(hop) {
                    // u16::MAX is the pipeline's "no hop".
                    let id = u16::try_from(hops.len())
                        .ok()
                        .filter(|&id| id < u16::MAX)
                        .ok_or(CompileError::TooManyHops(hops.len()))?;
                    e.insert(id);
                    hops.push(hop);
                }
            }
        }

        Ok(Snapshot {
            generation,
            flow_generation: generation,
            ports,
            routes,
            node_ip: node.node_ip,
            pod_cidr: node.pod_cidr,
            pod_prefix: node.pod_cidr.into(),
            gateway_ip: node.gateway_ip,
            proxy_arp,
            overlay,
            remotes,
            remote_by_vtep,
            bridge_domains,
            rules,
            hops,
            hop_ids,
            services,
            service_specs: state.services.clone(),
            facts,
            cluster_prefix: node.cluster_cidr.map(Prefix4::from),
            cluster_snat_ip,
        })
    }

    /// This snapshot with `services` (compiled from `specs`) instead of
    /// its Services, as number `generation`; see the module documentation.
    pub fn with_services(
        &self,
        services: Arc<ServiceTable>,
        specs: Services,
        generation: u64,
    ) -> Snapshot {
        Snapshot {
            generation,
            services,
            service_specs: specs,
            ..self.clone()
        }
    }

    /// Whether `ip` is one of the switch's own addresses: the pod gateway,
    /// the node IP, the VTEP.
    #[inline]
    pub fn is_local(&self, ip: Ipv4Addr) -> bool {
        ip == self.gateway_ip
            || ip == self.node_ip
            || self.overlay.as_ref().is_some_and(|o| o.vtep_ip == ip)
    }

    /// The index of `hop` in [`Snapshot::hops`], if a route leads there.
    pub fn hop_id(&self, hop: NextHop) -> Option<u16> {
        self.hop_ids.get(&hop).copied()
    }

    /// The port with this name.
    pub fn port_id(&self, name: &str) -> Option<PortId> {
        self.ports
            .iter()
            .position(|p| p.name == name)
            .and_then(|i| PortId::try_from(i).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use xvs_control::state::{
        NodeSpec, PortSpec, RemoteNodeSpec, RouteSpec, VxlanSpec, DEFAULT_GATEWAY_MAC,
        DEFAULT_POD_GATEWAY,
    };

    const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
    /// Deliberately not the node IP, so `is_local` can tell them apart.
    const VTEP_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 10);
    const REMOTE_VTEP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
    const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 11);
    const POD_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
    const UPLINK_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xff, 1]);
    const ROUTER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xfe, 1]);
    const PROXY: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn port(name: &str, kind: PortKind, mtu: u16) -> PortSpec {
        PortSpec {
            attachment: None,
            name: name.into(),
            kind,
            mtu,
        }
    }

    fn remote(name: &str, cidr: &str, vtep_ip: Ipv4Addr) -> RemoteNodeSpec {
        RemoteNodeSpec {
            name: name.into(),
            pod_cidr: net(cidr),
            vtep_ip,
            vtep_mac: MacAddr([2, 0, 0, 0, 0xee, 2]),
            underlay_mac: MacAddr([2, 0, 0, 0, 0xff, 2]),
        }
    }

    /// A small state that compiles: ports pod1 (0), eth0 (1, the uplink
    /// carrying the overlay) and br1 (2, bridge domain 7); remote node2; a
    /// static route 172.16.0.0/16 out of eth0.
    fn base() -> DesiredState {
        DesiredState {
            node: NodeSpec {
                node_ip: NODE_IP,
                pod_cidr: net("10.244.1.0/24"),
                gateway_ip: DEFAULT_POD_GATEWAY,
                gateway_mac: DEFAULT_GATEWAY_MAC,
                vxlan: Some(VxlanSpec {
                    vni: 42,
                    vtep_ip: VTEP_IP,
                    vtep_mac: MacAddr([2, 0, 0, 0, 0xee, 1]),
                    udp_port: 4789,
                    uplink: "eth0".into(),
                }),
                cluster_cidr: None,
            },
            ports: vec![
                port(
                    "pod1",
                    PortKind::Pod {
                        ip: POD_IP,
                        mac: POD_MAC,
                    },
                    1450,
                ),
                port("eth0", PortKind::Uplink { mac: UPLINK_MAC }, 1500),
                port("br1", PortKind::Bridged { domain: 7 }, 1500),
            ],
            routes: vec![RouteSpec {
                prefix: net("172.16.0.0/16"),
                port: "eth0".into(),
                next_hop_mac: ROUTER_MAC,
            }],
            remote_nodes: vec![remote("node2", "10.244.2.0/24", REMOTE_VTEP)],
            proxy_arp: vec![PROXY],
            rules: Vec::new(),
            services: Default::default(),
        }
    }

    fn compile(state: &DesiredState) -> Snapshot {
        Snapshot::compile(state, 7).unwrap_or_else(|e| panic!("state should compile: {e}"))
    }

    /// `base()` changed by `edit` fails with exactly `want`, whose message
    /// mentions each of `mentions`.
    fn expect_err(edit: impl FnOnce(&mut DesiredState), want: CompileError, mentions: &[&str]) {
        let mut s = base();
        edit(&mut s);
        let err = Snapshot::compile(&s, 1).expect_err("state should not compile");
        assert_eq!(err, want);
        let msg = err.to_string();
        for m in mentions {
            assert!(msg.contains(m), "{msg:?} does not mention {m:?}");
        }
    }

    /// `base()` changed by `edit` compiles.
    fn expect_ok(edit: impl FnOnce(&mut DesiredState)) -> Snapshot {
        let mut s = base();
        edit(&mut s);
        compile(&s)
    }

    #[test]
    fn max_mtu_fills_a_frame_with_a_vlan_tag() {
        // 2048 - 256 headroom - 14 Ethernet - 4 802.1Q.
        assert_eq!(MAX_MTU, 1774);
        assert_eq!(MIN_MTU, 68);
    }

    #[test]
    fn a_good_state_compiles_to_the_expected_tables() {
        let snap = compile(&base());
        assert_eq!(snap.generation, 7);
        let names: Vec<&str> = snap.ports.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["pod1", "eth0", "br1"]);
        assert_eq!(snap.ports[0].role, PortRole::Pod { ip: POD_IP });
        assert_eq!(
            snap.ports[0].mac, DEFAULT_GATEWAY_MAC,
            "the gateway MAC on pod ports"
        );
        assert_eq!(snap.ports[0].mtu, 1450);
        assert_eq!(snap.ports[1].role, PortRole::Uplink);
        assert_eq!(snap.ports[1].mac, UPLINK_MAC);
        assert_eq!(snap.ports[2].role, PortRole::Bridged { domain: 7 });
        assert_eq!(snap.port_id("br1"), Some(2));
        assert_eq!(snap.port_id("nope"), None);
        assert_eq!(snap.bridge_domains.len(), 1);
        assert_eq!(snap.bridge_domains[&7], [2]);

        let lookup = |a: &str| snap.routes.lookup(u32::from(ip(a))).copied();
        // The pod's /32 leads out of its port to its MAC.
        assert_eq!(
            lookup("10.244.1.11"),
            Some(Route::Via(NextHop::Port {
                port: 0,
                mac: POD_MAC
            }))
        );
        // The rest of this node's pod CIDR belongs to nobody.
        for a in [
            "10.244.1.0",
            "10.244.1.10",
            "10.244.1.12",
            "10.244.1.99",
            "10.244.1.255",
        ] {
            assert_eq!(lookup(a), Some(Route::Unassigned), "{a}");
        }
        // node2's pod CIDR goes into the overlay.
        for a in ["10.244.2.0", "10.244.2.5", "10.244.2.255"] {
            assert_eq!(
                lookup(a),
                Some(Route::Via(NextHop::Remote { remote: 0 })),
                "{a}"
            );
        }
        // The static route.
        assert_eq!(
            lookup("172.16.200.1"),
            Some(Route::Via(NextHop::Port {
                port: 1,
                mac: ROUTER_MAC
            }))
        );
        for a in ["172.17.0.1", "10.244.3.1", "203.0.113.7", "192.168.50.2"] {
            assert_eq!(lookup(a), None, "{a}");
        }

        let overlay = snap.overlay.as_ref().expect("overlay");
        assert_eq!(
            (
                overlay.vni,
                overlay.vtep_ip,
                overlay.udp_port,
                overlay.uplink
            ),
            (42, VTEP_IP, 4789, 1)
        );
        assert_eq!(snap.remotes.len(), 1);
        assert_eq!(snap.remotes[0].name, "node2");
        assert_eq!(snap.remotes[0].pod_cidr, net("10.244.2.0/24"));
        assert_eq!(snap.remote_by_vtep.len(), 1);
        assert_eq!(snap.remote_by_vtep[&REMOTE_VTEP], 0);
        assert_eq!(
            (snap.node_ip, snap.pod_cidr, snap.gateway_ip),
            (NODE_IP, net("10.244.1.0/24"), DEFAULT_POD_GATEWAY)
        );
        let mut proxy: Vec<Ipv4Addr> = snap.proxy_arp.iter().copied().collect();
        proxy.sort_unstable();
        assert_eq!(proxy, [PROXY, DEFAULT_POD_GATEWAY]);
    }

    #[test]
    fn only_the_gateway_node_and_vtep_addresses_are_local() {
        let snap = compile(&base());
        for a in [DEFAULT_POD_GATEWAY, NODE_IP, VTEP_IP] {
            assert!(snap.is_local(a), "{a} should be local");
        }
        for a in [
            POD_IP,
            PROXY,
            REMOTE_VTEP,
            ip("10.244.1.0"),
            ip("10.244.1.99"),
            ip("10.244.2.5"),
            ip("172.16.0.9"),
            ip("169.254.1.2"),
            ip("192.168.50.11"),
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
        ] {
            assert!(!snap.is_local(a), "{a} should not be local");
        }

        // Without an overlay there is no VTEP address.
        let snap = expect_ok(|s| {
            s.node.vxlan = None;
            s.remote_nodes.clear();
        });
        assert!(snap.is_local(DEFAULT_POD_GATEWAY));
        assert!(snap.is_local(NODE_IP));
        assert!(!snap.is_local(VTEP_IP));
    }

    #[test]
    fn duplicate_port_names_are_refused() {
        expect_err(
            |s| {
                s.ports
                    .push(port("pod1", PortKind::Uplink { mac: UPLINK_MAC }, 1500))
            },
            CompileError::DuplicatePort("pod1".into()),
            &["\"pod1\""],
        );
    }

    #[test]
    fn too_many_ports_are_refused() {
        let n = usize::from(PortId::MAX) + 1;
        expect_err(
            |s| {
                s.ports = (0..n)
                    .map(|i| port(&format!("br{i}"), PortKind::Bridged { domain: 1 }, 1500))
                    .collect();
                s.node.vxlan = None;
                s.remote_nodes.clear();
                s.routes.clear();
            },
            CompileError::TooManyPorts(n),
            &["65536", "65535"],
        );
    }

    #[test]
    fn a_route_through_a_missing_port_is_refused() {
        expect_err(
            |s| s.routes[0].port = "eth9".into(),
            CompileError::UnknownRoutePort {
                prefix: net("172.16.0.0/16"),
                port: "eth9".into(),
            },
            &["172.16.0.0/16", "\"eth9\""],
        );
    }

    #[test]
    fn a_route_through_a_bridged_port_is_refused() {
        expect_err(
            |s| s.routes[0].port = "br1".into(),
            CompileError::RouteToBridgedPort {
                prefix: net("172.16.0.0/16"),
                port: "br1".into(),
            },
            &["172.16.0.0/16", "\"br1\""],
        );
        // Pod ports may carry static routes.
        let snap = expect_ok(|s| s.routes[0].port = "pod1".into());
        assert_eq!(
            snap.routes.lookup(u32::from(ip("172.16.0.9"))).copied(),
            Some(Route::Via(NextHop::Port {
                port: 0,
                mac: ROUTER_MAC
            }))
        );
    }

    #[test]
    fn the_same_prefix_routed_twice_is_refused() {
        let pod2 = |s: &mut DesiredState| {
            let mac = MacAddr([2, 0, 0, 0, 1, 2]);
            s.ports
                .push(port("pod2", PortKind::Pod { ip: POD_IP, mac }, 1450));
        };
        expect_err(
            pod2,
            CompileError::DuplicateRoute(net("10.244.1.11/32")),
            &["10.244.1.11/32"],
        );

        let static_route = |prefix: &str| {
            let prefix = net(prefix);
            move |s: &mut DesiredState| {
                s.routes.push(RouteSpec {
                    prefix,
                    port: "eth0".into(),
                    next_hop_mac: ROUTER_MAC,
                });
            }
        };
        // The same static route twice.
        expect_err(
            static_route("172.16.0.0/16"),
            CompileError::DuplicateRoute(net("172.16.0.0/16")),
            &["172.16.0.0/16"],
        );
        // A static route on a remote node's pod CIDR.
        expect_err(
            static_route("10.244.2.0/24"),
            CompileError::DuplicateRoute(net("10.244.2.0/24")),
            &["10.244.2.0/24"],
        );
        // A static route on a pod's address.
        expect_err(
            static_route("10.244.1.11/32"),
            CompileError::DuplicateRoute(net("10.244.1.11/32")),
            &["10.244.1.11/32"],
        );
        // A static route on this node's own pod CIDR.
        expect_err(
            static_route("10.244.1.0/24"),
            CompileError::DuplicateRoute(net("10.244.1.0/24")),
            &["10.244.1.0/24"],
        );

        // Overlapping but different prefixes are what LPM is for.
        let snap = expect_ok(static_route("10.244.2.128/25"));
        let lookup = |a: &str| snap.routes.lookup(u32::from(ip(a))).copied();
        assert_eq!(
            lookup("10.244.2.200"),
            Some(Route::Via(NextHop::Port {
                port: 1,
                mac: ROUTER_MAC
            }))
        );
        assert_eq!(
            lookup("10.244.2.100"),
            Some(Route::Via(NextHop::Remote { remote: 0 }))
        );
    }

    #[test]
    fn a_pod_outside_the_pod_cidr_is_refused() {
        let outside = ip("10.244.2.7");
        expect_err(
            |s| {
                s.ports[0].kind = PortKind::Pod {
                    ip: outside,
                    mac: POD_MAC,
                }
            },
            CompileError::PodOutsideCidr {
                port: "pod1".into(),
                ip: outside,
                cidr: net("10.244.1.0/24"),
            },
            &["\"pod1\"", "10.244.2.7", "10.244.1.0/24"],
        );
    }

    #[test]
    fn remote_nodes_need_an_overlay() {
        expect_err(
            |s| s.node.vxlan = None,
            CompileError::RemoteWithoutOverlay("node2".into()),
            &["\"node2\"", "vxlan"],
        );
    }

    #[test]
    fn the_overlay_uplink_must_be_an_uplink_port() {
        let uplink = |name: &'static str| {
            move |s: &mut DesiredState| s.node.vxlan.as_mut().unwrap().uplink = name.into()
        };
        expect_err(
            uplink("eth9"),
            CompileError::BadOverlayUplink("eth9".into()),
            &["\"eth9\""],
        );
        expect_err(
            uplink("pod1"),
            CompileError::BadOverlayUplink("pod1".into()),
            &["\"pod1\""],
        );
        expect_err(
            uplink("br1"),
            CompileError::BadOverlayUplink("br1".into()),
            &["\"br1\""],
        );
    }

    #[test]
    fn the_vni_must_fit_24_bits() {
        let vni = |v: u32| move |s: &mut DesiredState| s.node.vxlan.as_mut().unwrap().vni = v;
        expect_err(
            vni(0x0100_0000),
            CompileError::VniOutOfRange(0x0100_0000),
            &["16777216"],
        );
        expect_err(
            vni(u32::MAX),
            CompileError::VniOutOfRange(u32::MAX),
            &["4294967295"],
        );
        let snap = expect_ok(vni(0x00ff_ffff));
        assert_eq!(snap.overlay.unwrap().vni, 0x00ff_ffff);
    }

    #[test]
    fn port_mtus_must_be_between_68_and_max_mtu() {
        let mtu = |idx: usize, m: u16| move |s: &mut DesiredState| s.ports[idx].mtu = m;
        expect_err(
            mtu(0, 67),
            CompileError::BadMtu {
                port: "pod1".into(),
                mtu: 67,
            },
            &["\"pod1\"", "67", "68", "1774"],
        );
        expect_err(
            mtu(0, 0),
            CompileError::BadMtu {
                port: "pod1".into(),
                mtu: 0,
            },
            &["\"pod1\""],
        );
        expect_err(
            mtu(2, 1775),
            CompileError::BadMtu {
                port: "br1".into(),
                mtu: 1775,
            },
            &["\"br1\"", "1775", "1774"],
        );
        expect_err(
            mtu(1, u16::MAX),
            CompileError::BadMtu {
                port: "eth0".into(),
                mtu: u16::MAX,
            },
            &["\"eth0\"", "65535"],
        );
        for m in [MIN_MTU, MAX_MTU] {
            let snap = expect_ok(mtu(2, m));
            assert_eq!(snap.ports[2].mtu, m);
        }
        let snap = expect_ok(mtu(1, MAX_MTU));
        assert_eq!(snap.ports[1].mtu, 1774);
    }

    #[test]
    fn the_overlay_uplink_needs_room_for_a_68_byte_inner_packet() {
        let uplink_mtu = |m: u16| move |s: &mut DesiredState| s.ports[1].mtu = m;
        expect_err(
            uplink_mtu(117),
            CompileError::OverlayMtuTooSmall {
                port: "eth0".into(),
                mtu: 117,
                need: 118,
            },
            &["\"eth0\"", "117", "118"],
        );
        expect_err(
            uplink_mtu(68),
            CompileError::OverlayMtuTooSmall {
                port: "eth0".into(),
                mtu: 68,
                need: 118,
            },
            &["\"eth0\"", "68"],
        );
        expect_ok(uplink_mtu(118));
        // Without an overlay the uplink may have any valid MTU.
        let snap = expect_ok(|s| {
            s.ports[1].mtu = 68;
            s.node.vxlan = None;
            s.remote_nodes.clear();
        });
        assert_eq!(snap.ports[1].mtu, 68);
    }

    #[test]
    fn a_remote_pod_cidr_overlapping_ours_is_refused() {
        let ours = net("10.244.1.0/24");
        for cidr in [
            "10.244.1.0/24",
            "10.244.0.0/16",
            "10.244.1.128/25",
            "0.0.0.0/0",
            "10.244.1.11/32",
        ] {
            expect_err(
                |s| s.remote_nodes[0].pod_cidr = net(cidr),
                CompileError::RemoteOverlapsLocal {
                    name: "node2".into(),
                    cidr: net(cidr),
                    ours,
                },
                &["\"node2\"", cidr, "10.244.1.0/24"],
            );
        }
        // Adjacent is fine.
        for cidr in ["10.244.0.0/24", "10.244.2.0/23"] {
            expect_ok(|s| s.remote_nodes[0].pod_cidr = net(cidr));
        }
    }

    #[test]
    fn two_remotes_with_one_vtep_are_refused() {
        expect_err(
            |s| {
                s.remote_nodes
                    .push(remote("node3", "10.244.3.0/24", REMOTE_VTEP))
            },
            CompileError::DuplicateVtep("node2".into(), "node3".into(), REMOTE_VTEP),
            &["\"node2\"", "\"node3\"", "192.168.50.2"],
        );
        // With its own VTEP, node3 is remote 1.
        let snap = expect_ok(|s| {
            s.remote_nodes
                .push(remote("node3", "10.244.3.0/24", ip("192.168.50.3")))
        });
        assert_eq!(snap.remote_by_vtep[&ip("192.168.50.3")], 1);
        assert_eq!(
            snap.routes.lookup(u32::from(ip("10.244.3.9"))).copied(),
            Some(Route::Via(NextHop::Remote { remote: 1 }))
        );
    }

    #[test]
    fn a_single_address_pod_cidr_still_routes_to_its_pod() {
        // The pod CIDR is exactly the one pod's address: compile accepts
        // it, so the pod must stay reachable.
        let snap = expect_ok(|s| s.node.pod_cidr = net("10.244.1.11/32"));
        assert_eq!(
            snap.routes.lookup(u32::from(POD_IP)).copied(),
            Some(Route::Via(NextHop::Port {
                port: 0,
                mac: POD_MAC
            }))
        );
    }
}
