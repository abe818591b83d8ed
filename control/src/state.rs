//! The desired state of one node's switch, as people and programs declare it.
//!
//! Everything here is plain data with serde derives: it is what `xvsctl apply`
//! reads, what gets persisted, and what the datapath compiles into its
//! snapshot. It names things (ports by name, addresses as text in files) and
//! holds no datapath indices; `vswitch::snapshot` assigns those and rejects an
//! inconsistent state with a message that says what to fix.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::flowrule::FlowRule;
use crate::service::Services;

/// The link-local gateway every pod routes through, as Calico does: the
/// switch answers ARP for it on pod ports with its own MAC.
pub const DEFAULT_POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The MAC the switch uses on pod ports (Calico uses the same one).
pub const DEFAULT_GATEWAY_MAC: MacAddr = MacAddr([0xee; 6]);
/// IANA-assigned VXLAN UDP port (RFC 7348).
pub const VXLAN_UDP_PORT: u16 = 4789;

/// The whole desired state of the switch on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredState {
    pub node: NodeSpec,
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// Static routes beyond the ones derived from pods and remote nodes.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// Other nodes of the cluster reached through the VXLAN overlay.
    #[serde(default)]
    pub remote_nodes: Vec<RemoteNodeSpec>,
    /// Extra addresses the switch answers ARP for on pod ports, besides the
    /// pod gateway.
    #[serde(default)]
    pub proxy_arp: Vec<Ipv4Addr>,
    /// Flow rules (ovs-ofctl syntax, see [`crate::flowrule`]) the slow path
    /// consults before the default pipeline; the order breaks ties between
    /// equal priorities.
    #[serde(default)]
    pub rules: Vec<FlowRule>,
    /// Kubernetes Services with their endpoints ([`crate::service`]).
    #[serde(default, skip_serializing_if = "Services::is_empty")]
    pub services: Services,
}

/// Facts about this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// The node's own address: source of ICMP errors the switch generates.
    pub node_ip: Ipv4Addr,
    /// The pod CIDR allocated to this node.
    pub pod_cidr: Ipv4Net,
    #[serde(default = "default_gateway_ip")]
    pub gateway_ip: Ipv4Addr,
    #[serde(default = "default_gateway_mac")]
    pub gateway_mac: MacAddr,
    /// Present when the node takes part in a VXLAN overlay.
    #[serde(default)]
    pub vxlan: Option<VxlanSpec>,
    /// The whole cluster's pod network (kube-proxy's `--cluster-cidr`).
    /// When set, pod traffic leaving it is masqueraded to the node IP
    /// (SNAT), as Flannel's `ipMasq` and kube-proxy do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_cidr: Option<Ipv4Net>,
}

fn default_gateway_ip() -> Ipv4Addr {
    DEFAULT_POD_GATEWAY
}
fn default_gateway_mac() -> MacAddr {
    DEFAULT_GATEWAY_MAC
}

/// This node's VXLAN tunnel endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VxlanSpec {
    pub vni: u32,
    /// The outer source address; usually the node IP.
    pub vtep_ip: Ipv4Addr,
    /// The MAC of our end of the overlay: inner source MAC of what we
    /// encapsulate, inner destination MAC of what peers send us (Flannel's
    /// `VtepMAC`).
    pub vtep_mac: MacAddr,
    #[serde(default = "default_vxlan_port")]
    pub udp_port: u16,
    /// Name of the port the overlay runs over.
    pub uplink: String,
}

fn default_vxlan_port() -> u16 {
    VXLAN_UDP_PORT
}

/// One port of the switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    pub name: String,
    pub kind: PortKind,
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// The container attachment a CNI plugin made this port for, so that
    /// CHECK can verify it and GC can find ports no runtime knows any more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
}

/// A CNI attachment: the runtime's key for it (container id and interface
/// name) and where the pod's end went.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    pub container_id: String,
    /// The interface name inside the pod (`CNI_IFNAME`).
    pub ifname: String,
    /// The pod's network namespace (`CNI_NETNS`).
    pub netns: String,
}

fn default_mtu() -> u16 {
    1500
}

/// What a port is for; decides which pipeline a frame from it enters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PortKind {
    /// A pod's veth (host end). Routed: the pod sends everything to the
    /// gateway; the switch installs a /32 route to `ip` through this port.
    Pod { ip: Ipv4Addr, mac: MacAddr },
    /// The node's link to the underlay. Routed, carries the overlay; `mac`
    /// is the NIC's own address, used as source of what we send there.
    Uplink { mac: MacAddr },
    /// A port of a learning bridge (NFV use): frames are switched by MAC
    /// within bridge domain `domain`, never routed.
    Bridged { domain: u16 },
}

/// A static route: `prefix` is reached through `port`, with `next_hop_mac`
/// as the Ethernet destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub prefix: Ipv4Net,
    pub port: String,
    pub next_hop_mac: MacAddr,
}

/// Another node of the overlay, the way Flannel describes one: its pod CIDR
/// lives behind its VTEP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteNodeSpec {
    pub name: String,
    pub pod_cidr: Ipv4Net,
    pub vtep_ip: Ipv4Addr,
    /// The MAC of the remote VXLAN device (inner destination MAC).
    pub vtep_mac: MacAddr,
    /// Ethernet destination on the uplink for the outer packet: the remote
    /// node itself on a flat underlay, or the underlay router.
    pub underlay_mac: MacAddr,
}

/// What changes from `old` to `new`, one line per object: `+ port pod1
/// pod 10.244.1.2 02:00:00:00:01:02`, `- route 10.9.0.0/16`, `~ node ...`
/// (an object of the same name, changed: its new form). Empty when the
/// states are equal. Objects are named by what identifies them: ports
/// and remote nodes by name, routes by prefix, proxy-ARP addresses by
/// themselves.
pub fn diff(old: &DesiredState, new: &DesiredState) -> Vec<String> {
    let mut out = Vec::new();
    if old.node != new.node {
        out.push(format!("~ node {}", json(&new.node)));
    }
    keyed(&mut out, "port", &old.ports, &new.ports, |p| p.name.clone());
    keyed(&mut out, "route", &old.routes, &new.routes, |r| {
        r.prefix.to_string()
    });
    keyed(
        &mut out,
        "vtep",
        &old.remote_nodes,
        &new.remote_nodes,
        |r| r.name.clone(),
    );
    keyed(&mut out, "proxy-arp", &old.proxy_arp, &new.proxy_arp, |a| {
        a.to_string()
    });
    keyed(&mut out, "rule", &old.rules, &new.rules, |r| r.to_string());
    for c in old.services.changes(&new.services) {
        out.push(match c.new {
            None => format!("- service {}", c.name),
            Some(s) if c.old.is_none() => format!("+ service {} {}", c.name, json(&**s)),
            Some(s) => format!("~ service {} {}", c.name, json(&**s)),
        });
    }
    out
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn keyed<T: Serialize + PartialEq>(
    out: &mut Vec<String>,
    what: &str,
    old: &[T],
    new: &[T],
    key: impl Fn(&T) -> String,
) {
    for o in old {
        if !new.iter().any(|n| key(n) == key(o)) {
            out.push(format!("- {what} {}", key(o)));
        }
    }
    for n in new {
        match old.iter().find(|o| key(o) == key(n)) {
            None => out.push(format!("+ {what} {} {}", key(n), json(n))),
            Some(o) if o != n => out.push(format!("~ {what} {} {}", key(n), json(n))),
            Some(_) => {}
        }
    }
}

/// An Ethernet address, written `aa:bb:cc:dd:ee:ff` in files and on the CLI.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex bytes like 02:00:00:00:00:01")]
pub struct ParseMacError(String);

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.is_empty() || part.len() > 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_says_its_attachment_only_when_it_has_one() {
        let mut port = PortSpec {
            name: "veth1".into(),
            kind: PortKind::Uplink {
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
            },
            mtu: 1500,
            attachment: None,
        };
        let plain = serde_json::to_string(&port).unwrap();
        assert!(!plain.contains("attachment"), "{plain}");
        port.attachment = Some(Attachment {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            netns: "/var/run/netns/p1".into(),
        });
        let json = serde_json::to_string(&port).unwrap();
        assert!(json.contains(r#""container_id":"c1""#), "{json}");
        assert_eq!(serde_json::from_str::<PortSpec>(&json).unwrap(), port);
        let old: PortSpec = serde_json::from_str(&plain).unwrap();
        assert_eq!(old.attachment, None, "state files without it still load");
    }

    #[test]
    fn mac_round_trip() {
        let m: MacAddr = "02:0a:ff:00:01:9c".parse().unwrap();
        assert_eq!(m.0, [0x02, 0x0a, 0xff, 0x00, 0x01, 0x9c]);
        assert_eq!(m.to_string(), "02:0a:ff:00:01:9c");
        assert!(!m.is_multicast());
        assert!(MacAddr::BROADCAST.is_multicast());
    }

    #[test]
    fn bad_macs_are_rejected() {
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "zz:00:00:00:00:00",
            "002:0:0:0:0:0",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn state_json_round_trip_with_defaults() {
        let text = r#"{
            "node": {"node_ip": "192.168.0.1", "pod_cidr": "10.244.1.0/24",
                     "vxlan": {"vni": 1, "vtep_ip": "192.168.0.1",
                               "vtep_mac": "02:00:00:00:00:aa", "uplink": "eth0"}},
            "ports": [{"name": "pod1", "kind": {"pod": {"ip": "10.244.1.2", "mac": "02:00:00:00:01:02"}}}]
        }"#;
        let state: DesiredState = serde_json::from_str(text).unwrap();
        assert_eq!(state.node.gateway_ip, DEFAULT_POD_GATEWAY);
        assert_eq!(state.node.vxlan.as_ref().unwrap().udp_port, 4789);
        assert_eq!(state.ports[0].mtu, 1500);
        let again: DesiredState =
            serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        assert_eq!(state, again);
    }

    #[test]
    fn diff_names_what_was_added_removed_and_changed() {
        let text = r#"{
            "node": {"node_ip": "192.168.0.1", "pod_cidr": "10.244.1.0/24"},
            "ports": [{"name": "a", "kind": {"bridged": {"domain": 1}}},
                      {"name": "b", "kind": {"bridged": {"domain": 1}}}],
            "proxy_arp": ["10.244.1.9"]
        }"#;
        let old: DesiredState = serde_json::from_str(text).unwrap();
        assert!(diff(&old, &old).is_empty());
        let mut new = old.clone();
        new.ports.remove(0);
        new.ports[0].mtu = 9000;
        new.ports.push(PortSpec {
            attachment: None,
            name: "c".into(),
            kind: PortKind::Bridged { domain: 2 },
            mtu: 1500,
        });
        new.proxy_arp.clear();
        assert_eq!(
            diff(&old, &new),
            [
                "- port a",
                r#"~ port b {"name":"b","kind":{"bridged":{"domain":1}},"mtu":9000}"#,
                r#"+ port c {"name":"c","kind":{"bridged":{"domain":2}},"mtu":1500}"#,
                "- proxy-arp 10.244.1.9",
            ]
        );
    }

    #[test]
    fn unknown_fields_are_errors() {
        let text =
            r#"{"node": {"node_ip": "192.168.0.1", "pod_cidr": "10.244.1.0/24", "bogus": 1}}"#;
        let err = serde_json::from_str::<DesiredState>(text).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }
}
