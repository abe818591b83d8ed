//! xvsd's configuration: a TOML file and command-line flags, merged (flags
//! win for single values, add to lists), then turned into the desired state
//! the datapath compiles.
//!
//! The file is the bootstrap shape an operator writes by hand; the control
//! socket (issue #6) will program the same desired state at run time.
//!
//! ```toml
//! uplink = "eth0"
//! node_ip = "192.168.50.1"
//! pod_cidr = "10.244.1.0/24"
//! cores = [0, 1]   # one worker per core; none: one unpinned worker
//!
//! [vxlan]
//! vni = 1
//!
//! [[remote_nodes]]
//! name = "node2"
//! pod_cidr = "10.244.2.0/24"
//! vtep_ip = "192.168.50.2"
//! vtep_mac = "02:00:00:00:02:01"
//! underlay_mac = "02:00:00:00:02:00"
//!
//! [[pods]]
//! ifname = "veth-pod1"
//! ip = "10.244.1.2"
//! mac = "02:00:00:01:00:02"
//!
//! cluster_cidr = "10.244.0.0/16"   # masquerade pod traffic leaving it
//! snat_ports = "61000-65535"        # node-IP ports masquerade may use
//!
//! [[bridged]]      # a port of a learning bridge, switched by MAC only
//! ifname = "veth-nf1"
//! domain = 1       # bridge domain; default 1
//! ```
//!
//! `node_ip` and `pod_cidr` describe the routed side (uplink, pods, the
//! overlay). A switch with only bridged ports has no routed side: nothing
//! from a bridged port reaches L3, so there they may be left out, and the
//! node facts the desired state needs are filled with placeholders
//! ([`BRIDGE_ONLY_NODE_IP`], [`BRIDGE_ONLY_POD_CIDR`]) nothing reads.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::Deserialize;
use xvs_control::state::{
    DesiredState, MacAddr, NodeSpec, PortKind, PortSpec, RemoteNodeSpec, VxlanSpec,
    DEFAULT_GATEWAY_MAC, DEFAULT_POD_GATEWAY, VXLAN_UDP_PORT,
};

use super::datapath::ring_size_for;
use crate::services::DEFAULT_SNAT_PORTS;

/// Descriptors per AF_XDP ring of uplink and bridged ports unless
/// configured.
pub const DEFAULT_RING_SIZE: u32 = 2048;
/// Descriptors per AF_XDP ring of pod ports unless configured: the
/// smallest that lost nothing under an iperf3 TCP stream between two pods
/// (512 did), and half the UMEM of 2048 per pod.
pub const DEFAULT_POD_RING_SIZE: u32 = 1024;
/// Flows the flow cache holds by default: 37 MiB of table.
pub const DEFAULT_MAX_FLOWS: usize = 262_144;
/// Connections conntrack tracks by default: 32 MiB of entries.
pub const DEFAULT_MAX_CONNECTIONS: usize = 262_144;
/// Idle time after which a cached flow goes (OVS's `max-idle` default).
pub const DEFAULT_FLOW_IDLE_MS: u64 = 10_000;
/// Frames of each worker's UMEM unless configured (2 KiB each: 128 MiB,
/// pinned): room for 29 pods and an uplink with the default rings.
pub const DEFAULT_UMEM_FRAMES: u32 = 65536;
/// Client-IP affinity entries remembered at most.
pub const DEFAULT_MAX_AFFINITY: usize = 65_536;
/// Bridge domain of a bridged port unless configured.
pub const DEFAULT_BRIDGE_DOMAIN: u16 = 1;
/// Node IP of a switch with only bridged ports, where none is given.
pub const BRIDGE_ONLY_NODE_IP: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
/// Pod CIDR of a switch with only bridged ports, where none is given: one
/// address no packet can be routed to.
pub const BRIDGE_ONLY_POD_CIDR: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 32);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{0} is required (in the config file or as --{1})")]
    Missing(&'static str, &'static str),
    #[error("--{flag} {value:?}: expected {expected}")]
    Flag {
        flag: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("the VXLAN overlay needs an uplink")]
    VxlanWithoutUplink,
    #[error("interface {ifname}: {what}")]
    Interface { ifname: String, what: String },
}

/// The config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XvsdConfig {
    pub uplink: Option<String>,
    pub node_ip: Option<Ipv4Addr>,
    pub pod_cidr: Option<Ipv4Net>,
    /// CPUs for the datapath workers, one worker each (empty: one worker,
    /// not pinned).
    #[serde(default)]
    pub cores: Vec<usize>,
    /// Descriptors per AF_XDP ring of uplink and bridged ports (power of
    /// two).
    pub ring_size: Option<u32>,
    /// Descriptors per AF_XDP ring of pod ports (power of two).
    pub pod_ring_size: Option<u32>,
    /// Bind copy mode even where the driver offers zero-copy.
    #[serde(default)]
    pub force_copy: bool,
    /// Frames of each worker's UMEM (bounds the sockets a worker serves).
    pub umem_frames: Option<u32>,
    /// Flows the flow cache holds at most.
    pub max_flows: Option<usize>,
    /// Connections conntrack tracks at most.
    pub max_connections: Option<usize>,
    /// Milliseconds without packets after which a cached flow is removed.
    pub flow_idle_ms: Option<u64>,
    /// The cluster's pod network: pod traffic leaving it is masqueraded.
    pub cluster_cidr: Option<Ipv4Net>,
    /// `FIRST-LAST`: node-IP source ports for SNAT.
    pub snat_ports: Option<String>,
    pub vxlan: Option<VxlanConfig>,
    #[serde(default)]
    pub remote_nodes: Vec<RemoteNodeSpec>,
    #[serde(default)]
    pub pods: Vec<PodConfig>,
    #[serde(default)]
    pub bridged: Vec<BridgedConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VxlanConfig {
    pub vni: u32,
    /// Default: the node IP.
    pub vtep_ip: Option<Ipv4Addr>,
    /// Default: the uplink's MAC.
    pub vtep_mac: Option<MacAddr>,
    pub udp_port: Option<u16>,
}

/// A pod attached by its veth's host end.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodConfig {
    pub ifname: String,
    pub ip: Ipv4Addr,
    /// The pod's own interface MAC.
    pub mac: MacAddr,
    pub mtu: Option<u16>,
}

/// A port of a learning bridge: frames are switched by MAC within its
/// bridge domain, never routed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgedConfig {
    pub ifname: String,
    #[serde(default = "default_bridge_domain")]
    pub domain: u16,
}

fn default_bridge_domain() -> u16 {
    DEFAULT_BRIDGE_DOMAIN
}

/// Command-line flags of xvsd.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "xvsd",
    version,
    about = "xvs: a poll-mode AF_XDP virtual switch"
)]
pub struct Flags {
    /// TOML configuration file.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// The node's uplink interface.
    #[arg(long)]
    pub uplink: Option<String>,
    #[arg(long)]
    pub node_ip: Option<Ipv4Addr>,
    #[arg(long)]
    pub pod_cidr: Option<Ipv4Net>,
    /// VXLAN network identifier (enables the overlay).
    #[arg(long)]
    pub vni: Option<u32>,
    /// VXLAN tunnel endpoint address (default: the node IP).
    #[arg(long)]
    pub vtep_ip: Option<Ipv4Addr>,
    #[arg(long)]
    pub vxlan_port: Option<u16>,
    /// A remote node: NAME,POD_CIDR,VTEP_IP,VTEP_MAC,UNDERLAY_MAC.
    #[arg(
        long = "remote",
        value_name = "NAME,CIDR,VTEP_IP,VTEP_MAC,UNDERLAY_MAC"
    )]
    pub remotes: Vec<String>,
    /// A pod port: IFNAME,IP,MAC (the host end of the pod's veth, the pod's
    /// address and its interface MAC).
    #[arg(long = "pod", value_name = "IFNAME,IP,MAC")]
    pub pods: Vec<String>,
    /// A bridged port: IFNAME[,DOMAIN] (switched by MAC within bridge
    /// domain DOMAIN, default 1; never routed).
    #[arg(long = "bridged", value_name = "IFNAME[,DOMAIN]")]
    pub bridged: Vec<String>,
    /// CPUs for the datapath workers, e.g. 1 or 2,3.
    #[arg(long, value_delimiter = ',')]
    pub cores: Vec<usize>,
    /// Descriptors per AF_XDP ring of uplink and bridged ports [default:
    /// 2048].
    #[arg(long)]
    pub ring_size: Option<u32>,
    /// Descriptors per AF_XDP ring of pod ports; each pod holds two rings'
    /// worth of UMEM frames [default: 1024].
    #[arg(long)]
    pub pod_ring_size: Option<u32>,
    /// Bind copy mode even where zero-copy is offered.
    #[arg(long)]
    pub force_copy: bool,
    /// Frames (2 KiB) of each worker's UMEM, all pinned; each socket can
    /// hold two rings' worth [default: 65536, or what the configured
    /// ports need].
    #[arg(long)]
    pub umem_frames: Option<u32>,
    /// Flows the flow cache holds at most (128 bytes each, plus 16 of
    /// index) [default: 262144].
    #[arg(long)]
    pub max_flows: Option<usize>,
    /// Connections conntrack tracks at most (128 bytes each, plus two
    /// index entries) [default: 262144].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// A cached flow without packets for this long is removed
    /// [default: 10000, as OVS's max-idle].
    #[arg(long, value_name = "MS")]
    pub flow_idle_ms: Option<u64>,
    /// The cluster's pod network (kube-proxy's --cluster-cidr): pod
    /// traffic to anywhere outside it leaves masqueraded to the node IP.
    #[arg(long, value_name = "CIDR")]
    pub cluster_cidr: Option<Ipv4Net>,
    /// Node-IP source ports SNAT (masquerade, NodePort to another node,
    /// hairpin) takes connections' ports from; keep them out of
    /// net.ipv4.ip_local_port_range [default: 61000-65535].
    #[arg(long, value_name = "FIRST-LAST")]
    pub snat_ports: Option<String>,
    /// Serve Prometheus metrics on this localhost address (e.g.
    /// 127.0.0.1:9464), at /metrics.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where the desired state is persisted (`none`: nowhere; a restart
    /// then forgets what the control socket added).
    #[arg(long, default_value = "/var/lib/xvs")]
    pub state_dir: String,
    /// At shutdown, also write the counters (ports, steering, workers with
    /// their thread ids and stage times, drops) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub report_json: Option<PathBuf>,
    /// The control socket (`none`: no control socket).
    #[arg(long, default_value = xvs_control::client::DEFAULT_SOCKET)]
    pub control_socket: String,
    /// A uid that may use the control socket besides root (repeatable);
    /// the socket is then world-connectable and each peer's uid checked.
    #[arg(long = "control-uid")]
    pub control_uids: Vec<u32>,
}

fn flag_err(flag: &'static str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::Flag {
        flag,
        value: value.to_string(),
        expected,
    }
}

impl XvsdConfig {
    /// Reads the file named by `--config` (if any) and applies the flags.
    pub fn load(flags: &Flags) -> Result<Self, ConfigError> {
        let mut config = match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.clone(),
                    source: Box::new(source),
                })?
            }
            None => XvsdConfig::default(),
        };
        config.apply(flags)?;
        Ok(config)
    }

    fn apply(&mut self, f: &Flags) -> Result<(), ConfigError> {
        if f.uplink.is_some() {
            self.uplink.clone_from(&f.uplink);
        }
        self.node_ip = f.node_ip.or(self.node_ip);
        self.pod_cidr = f.pod_cidr.or(self.pod_cidr);
        self.ring_size = f.ring_size.or(self.ring_size);
        self.pod_ring_size = f.pod_ring_size.or(self.pod_ring_size);
        self.umem_frames = f.umem_frames.or(self.umem_frames);
        self.max_flows = f.max_flows.or(self.max_flows);
        self.max_connections = f.max_connections.or(self.max_connections);
        self.flow_idle_ms = f.flow_idle_ms.or(self.flow_idle_ms);
        self.cluster_cidr = f.cluster_cidr.or(self.cluster_cidr);
        if f.snat_ports.is_some() {
            self.snat_ports.clone_from(&f.snat_ports);
        }
        self.snat_ports()?;
        self.force_copy |= f.force_copy;
        if !f.cores.is_empty() {
            self.cores.clone_from(&f.cores);
        }
        if f.vni.is_some() || f.vtep_ip.is_some() || f.vxlan_port.is_some() {
            let v = self.vxlan.get_or_insert_with(VxlanConfig::default);
            if let Some(vni) = f.vni {
                v.vni = vni;
            }
            v.vtep_ip = f.vtep_ip.or(v.vtep_ip);
            v.udp_port = f.vxlan_port.or(v.udp_port);
        }
        for r in &f.remotes {
            const WANT: &str = "NAME,POD_CIDR,VTEP_IP,VTEP_MAC,UNDERLAY_MAC";
            let parts: Vec<&str> = r.split(',').collect();
            let [name, cidr, ip, vtep_mac, underlay_mac] = parts[..] else {
                return Err(flag_err("remote", r, WANT));
            };
            self.remote_nodes.push(RemoteNodeSpec {
                name: name.to_string(),
                pod_cidr: cidr.parse().map_err(|_| flag_err("remote", r, WANT))?,
                vtep_ip: ip.parse().map_err(|_| flag_err("remote", r, WANT))?,
                vtep_mac: vtep_mac.parse().map_err(|_| flag_err("remote", r, WANT))?,
                underlay_mac: underlay_mac
                    .parse()
                    .map_err(|_| flag_err("remote", r, WANT))?,
            });
        }
        for p in &f.pods {
            const WANT: &str = "IFNAME,IP,MAC";
            let parts: Vec<&str> = p.split(',').collect();
            let [ifname, ip, mac] = parts[..] else {
                return Err(flag_err("pod", p, WANT));
            };
            self.pods.push(PodConfig {
                ifname: ifname.to_string(),
                ip: ip.parse().map_err(|_| flag_err("pod", p, WANT))?,
                mac: mac.parse().map_err(|_| flag_err("pod", p, WANT))?,
                mtu: None,
            });
        }
        for b in &f.bridged {
            const WANT: &str = "IFNAME or IFNAME,DOMAIN (DOMAIN 0-65535)";
            let (ifname, domain) = match b.split_once(',') {
                None => (b.as_str(), DEFAULT_BRIDGE_DOMAIN),
                Some((ifname, domain)) => (
                    ifname,
                    domain.parse().map_err(|_| flag_err("bridged", b, WANT))?,
                ),
            };
            if ifname.is_empty() {
                return Err(flag_err("bridged", b, WANT));
            }
            self.bridged.push(BridgedConfig {
                ifname: ifname.to_string(),
                domain,
            });
        }
        Ok(())
    }

    /// Whether anything is routed: an uplink, pods, the overlay.
    fn routed(&self) -> bool {
        self.uplink.is_some()
            || !self.pods.is_empty()
            || self.vxlan.is_some()
            || !self.remote_nodes.is_empty()
    }

    pub fn max_flows(&self) -> usize {
        self.max_flows.unwrap_or(DEFAULT_MAX_FLOWS).max(1)
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections
            .unwrap_or(DEFAULT_MAX_CONNECTIONS)
            .max(1)
    }

    pub fn flow_idle(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.flow_idle_ms.unwrap_or(DEFAULT_FLOW_IDLE_MS))
    }

    pub fn ring_size(&self) -> u32 {
        self.ring_size.unwrap_or(DEFAULT_RING_SIZE)
    }

    pub fn pod_ring_size(&self) -> u32 {
        self.pod_ring_size.unwrap_or(DEFAULT_POD_RING_SIZE)
    }

    /// Whether the file and flags describe anything (else the stored
    /// state alone says what the switch is).
    pub fn describes_node(&self) -> bool {
        self.routed() || !self.bridged.is_empty() || self.node_ip.is_some()
    }

    /// The SNAT port range, `FIRST-LAST` with `0 < FIRST <= LAST`.
    pub fn snat_ports(&self) -> Result<(u16, u16), ConfigError> {
        const WANT: &str = "FIRST-LAST, two ports with 0 < FIRST <= LAST";
        let Some(text) = &self.snat_ports else {
            return Ok(DEFAULT_SNAT_PORTS);
        };
        let bad = || flag_err("snat-ports", text, WANT);
        let (a, b) = text.split_once('-').ok_or_else(bad)?;
        let (a, b): (u16, u16) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if a == 0 || a > b {
            return Err(bad());
        }
        Ok((a, b))
    }

    /// UMEM frames per worker: as configured, else the default or what
    /// the ports of `state` need if that is more (every socket on one
    /// worker, the worst case).
    pub fn umem_frames(&self, state: &DesiredState) -> u32 {
        self.umem_frames.unwrap_or_else(|| {
            let need = state
                .ports
                .iter()
                .map(|p| {
                    let ring = ring_size_for(&p.kind, self.ring_size(), self.pod_ring_size());
                    rx_queues(&p.name).saturating_mul(2 * ring)
                })
                .fold(1024u32, u32::saturating_add);
            need.max(DEFAULT_UMEM_FRAMES)
        })
    }

    /// The desired state this configuration describes. `link` answers the
    /// MAC and MTU of an interface (sysfs in xvsd, a table in tests).
    pub fn desired_state(
        &self,
        link: impl Fn(&str) -> Result<(MacAddr, u16), String>,
    ) -> Result<DesiredState, ConfigError> {
        let (node_ip, pod_cidr) = if self.routed() || self.bridged.is_empty() {
            let node_ip = self
                .node_ip
                .ok_or(ConfigError::Missing("node_ip", "node-ip"))?;
            let pod_cidr = self
                .pod_cidr
                .ok_or(ConfigError::Missing("pod_cidr", "pod-cidr"))?;
            (node_ip, pod_cidr)
        } else {
            (
                self.node_ip.unwrap_or(BRIDGE_ONLY_NODE_IP),
                self.pod_cidr.unwrap_or(BRIDGE_ONLY_POD_CIDR),
            )
        };
        let link = |ifname: &str| {
            link(ifname).map_err(|what| ConfigError::Interface {
                ifname: ifname.to_string(),
                what,
            })
        };
        let mut ports = Vec::new();
        let mut uplink_mac = None;
        if let Some(uplink) = &self.uplink {
            let (mac, mtu) = link(uplink)?;
            uplink_mac = Some(mac);
            ports.push(PortSpec {
                attachment: None,
                name: uplink.clone(),
                kind: PortKind::Uplink { mac },
                mtu,
            });
        }
        let vxlan = match &self.vxlan {
            None => None,
            Some(v) => {
                let uplink = self.uplink.clone().ok_or(ConfigError::VxlanWithoutUplink)?;
                Some(VxlanSpec {
                    vni: v.vni,
                    vtep_ip: v.vtep_ip.unwrap_or(node_ip),
                    vtep_mac: v
                        .vtep_mac
                        .or(uplink_mac)
                        .ok_or(ConfigError::VxlanWithoutUplink)?,
                    udp_port: v.udp_port.unwrap_or(VXLAN_UDP_PORT),
                    uplink,
                })
            }
        };
        for pod in &self.pods {
            let (_, mtu) = link(&pod.ifname)?;
            ports.push(PortSpec {
                attachment: None,
                name: pod.ifname.clone(),
                kind: PortKind::Pod {
                    ip: pod.ip,
                    mac: pod.mac,
                },
                mtu: pod.mtu.unwrap_or(mtu),
            });
        }
        for port in &self.bridged {
            let (_, mtu) = link(&port.ifname)?;
            ports.push(PortSpec {
                attachment: None,
                name: port.ifname.clone(),
                kind: PortKind::Bridged {
                    domain: port.domain,
                },
                mtu,
            });
        }
        Ok(DesiredState {
            node: NodeSpec {
                node_ip,
                pod_cidr,
                gateway_ip: DEFAULT_POD_GATEWAY,
                gateway_mac: DEFAULT_GATEWAY_MAC,
                vxlan,
                cluster_cidr: self.cluster_cidr,
            },
            ports,
            routes: Vec::new(),
            remote_nodes: self.remote_nodes.clone(),
            proxy_arp: Vec::new(),
            rules: Vec::new(),
            services: Default::default(),
        })
    }
}

/// MAC and MTU of a local interface, from sysfs.
pub fn sysfs_link(ifname: &str) -> Result<(MacAddr, u16), String> {
    if ifname.is_empty() || ifname.contains('/') || ifname.starts_with('.') {
        return Err("not an interface name".into());
    }
    let read = |attr: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{ifname}/{attr}"))
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("reading its {attr}: {e}"))
    };
    let mac = read("address")?
        .parse()
        .map_err(|e| format!("its address: {e}"))?;
    let mtu = read("mtu")?.parse().map_err(|e| format!("its mtu: {e}"))?;
    Ok((mac, mtu))
}

/// Receive queues of a local interface (at least 1).
pub fn rx_queues(ifname: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{ifname}/queues"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .ok()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Snapshot;
    use clap::Parser;

    fn links(ifname: &str) -> Result<(MacAddr, u16), String> {
        match ifname {
            "eth0" => Ok((MacAddr([2, 0, 0, 0, 0, 1]), 1500)),
            "veth1" => Ok((MacAddr([2, 0, 0, 0, 0, 9]), 1450)),
            _ => Err("no such interface".into()),
        }
    }

    #[test]
    fn file_and_flags_merge_into_a_desired_state() {
        let mut config: XvsdConfig = toml::from_str(
            r#"
            uplink = "eth0"
            node_ip = "192.168.1.1"
            pod_cidr = "10.244.1.0/24"
            [vxlan]
            vni = 7
            [[pods]]
            ifname = "veth1"
            ip = "10.244.1.2"
            mac = "02:00:00:01:00:02"
            "#,
        )
        .unwrap();
        let flags = Flags::parse_from([
            "xvsd",
            "--remote",
            "n2,10.244.2.0/24,192.168.1.2,02:00:00:00:02:01,02:00:00:00:02:00",
            "--cores",
            "1,2",
        ]);
        config.apply(&flags).unwrap();
        assert_eq!(config.cores, [1, 2]);
        let state = config.desired_state(links).unwrap();
        assert_eq!(state.ports.len(), 2);
        assert_eq!(
            state.ports[0].kind,
            PortKind::Uplink {
                mac: MacAddr([2, 0, 0, 0, 0, 1])
            }
        );
        assert_eq!(state.ports[1].mtu, 1450);
        let vxlan = state.node.vxlan.unwrap();
        assert_eq!(
            (vxlan.vni, vxlan.vtep_ip),
            (7, Ipv4Addr::new(192, 168, 1, 1))
        );
        assert_eq!(vxlan.vtep_mac, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(state.remote_nodes[0].name, "n2");
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let flags = Flags::parse_from(["xvsd", "--pod", "veth1,10.244.1.300,02:00:00:00:00:01"]);
        let err = XvsdConfig::load(&flags).unwrap_err().to_string();
        assert!(
            err.contains("--pod") && err.contains("IFNAME,IP,MAC"),
            "{err}"
        );

        let flags = Flags::parse_from(["xvsd", "--node-ip", "10.0.0.1"]);
        let err = XvsdConfig::load(&flags)
            .unwrap()
            .desired_state(links)
            .unwrap_err();
        assert!(err.to_string().contains("pod_cidr"), "{err}");

        let config: XvsdConfig = toml::from_str(
            "node_ip = \"10.0.0.1\"\npod_cidr = \"10.244.0.0/24\"\n[[pods]]\nifname = \"nope\"\nip = \"10.244.0.2\"\nmac = \"02:00:00:00:00:01\"\n",
        )
        .unwrap();
        let err = config.desired_state(links).unwrap_err().to_string();
        assert!(
            err.contains("nope") && err.contains("no such interface"),
            "{err}"
        );

        assert!(
            toml::from_str::<XvsdConfig>("uplnk = \"eth0\"").is_err(),
            "typos are refused"
        );
        let config: XvsdConfig = toml::from_str(
            "node_ip = \"10.0.0.1\"\npod_cidr = \"10.244.0.0/24\"\n[vxlan]\nvni = 1\n",
        )
        .unwrap();
        assert!(matches!(
            config.desired_state(links),
            Err(ConfigError::VxlanWithoutUplink)
        ));
    }

    #[test]
    fn bridged_ports_from_file_and_flags() {
        let mut config: XvsdConfig = toml::from_str(
            r#"
            [[bridged]]
            ifname = "eth0"
            [[bridged]]
            ifname = "veth1"
            domain = 7
            "#,
        )
        .unwrap();
        let flags = Flags::parse_from(["xvsd", "--bridged", "veth1,9", "--bridged", "eth0"]);
        config.apply(&flags).unwrap();
        // A bridge-only switch needs no node IP or pod CIDR.
        let state = config.desired_state(links).unwrap();
        let ports: Vec<_> = state
            .ports
            .iter()
            .map(|p| (p.name.as_str(), p.kind.clone(), p.mtu))
            .collect();
        assert_eq!(
            ports,
            [
                ("eth0", PortKind::Bridged { domain: 1 }, 1500),
                ("veth1", PortKind::Bridged { domain: 7 }, 1450),
                ("veth1", PortKind::Bridged { domain: 9 }, 1450),
                ("eth0", PortKind::Bridged { domain: 1 }, 1500),
            ]
        );
        assert_eq!(
            (state.node.node_ip, state.node.pod_cidr),
            (BRIDGE_ONLY_NODE_IP, BRIDGE_ONLY_POD_CIDR)
        );
        let file_only = XvsdConfig {
            bridged: config.bridged[..2].to_vec(),
            ..XvsdConfig::default()
        };
        let snapshot = Snapshot::compile(&file_only.desired_state(links).unwrap(), 1).unwrap();
        assert_eq!(snapshot.bridge_domains.len(), 2);

        // With a routed port beside them, the node facts are required.
        let flags = Flags::parse_from([
            "xvsd",
            "--bridged",
            "veth1",
            "--pod",
            "eth0,10.244.1.2,02:00:00:01:00:02",
        ]);
        let err = XvsdConfig::load(&flags)
            .unwrap()
            .desired_state(links)
            .unwrap_err();
        assert!(err.to_string().contains("node_ip"), "{err}");

        for bad in ["veth1,", "veth1,x", "veth1,65536", ",1", "", "veth1,1,2"] {
            let flags = Flags::parse_from(["xvsd", "--bridged", bad]);
            let err = XvsdConfig::load(&flags).unwrap_err().to_string();
            assert!(
                err.contains("--bridged") && err.contains("IFNAME,DOMAIN"),
                "{bad:?}: {err}"
            );
        }
        assert!(
            toml::from_str::<XvsdConfig>("[[bridged]]\nifname = \"a\"\nvlan = 3\n").is_err(),
            "unknown keys of a bridged port are refused"
        );
    }

    #[test]
    fn sysfs_names_are_checked() {
        assert_eq!(sysfs_link("../etc"), Err("not an interface name".into()));
        let err = sysfs_link("xvs-no-such-if").unwrap_err();
        assert!(err.contains("address"), "{err}");
    }
}
