//! The Kubernetes Services a Service benchmark programs into its DUT:
//! the one the traffic goes to, and as many others as the run asks for.
//!
//! The measured Service is ClusterIP [`SERVICE_IP`], UDP port
//! [`SERVICE_PORT`], with one endpoint, the sink, at
//! [`ENDPOINT_IP`]:[`ENDPOINT_PORT`]. The others ("dummies") only fill
//! the DUT's tables, as a cluster's other Services do: each has its own
//! ClusterIP (the next addresses after the measured one), TCP port 80 to
//! 8080, and one or two endpoints in the node's pod CIDR. No packet goes
//! to them; what they cost is what the measured Service's packets pay for
//! a larger table (a lookup among N, or a longer rule set to walk).
//!
//! The same Services are written two ways:
//!
//! * for xvsd, a desired state ([`xvsd_state`]: `state.json` in its state
//!   directory, read at start, `xvs_control::state::DesiredState`);
//! * for Linux, kube-proxy's nftables mode ([`kube_proxy_nft`]: the
//!   `service-ips` verdict map with an element per Service port, a chain
//!   per Service port picking an endpoint with `numgen`, a chain per
//!   endpoint doing the DNAT), as `pkg/proxy/nftables` writes it. With one
//!   Service it is exactly the rule set the `nft-dnat` DUT always loaded.
//!
//! Flows past 16384 need more than the source port to tell them apart,
//! and for xvsd the source address must stay the pod's own (its
//! anti-spoofing check); so the generator varies the destination port,
//! and the measured Service then has one port per 16384 flows (80, 81,
//! ...: [`service_ports`]), each to its own target port (5001, 5002, ...:
//! with one target port, flows from the same source port to ports 80 and
//! 81 would become one connection to the endpoint, which xvsd refuses as
//! a NAT clash and netfilter would resolve by changing the source port).
//! The kernel takes any source address, and its traffic keeps port 80.

use std::fmt::Write;
use std::net::Ipv4Addr;

use serde_json::{json, Value};

use crate::frames::FLOW_PORTS;

/// The measured Service's ClusterIP and port.
pub const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
pub const SERVICE_PORT: u16 = 80;
/// Its endpoint: the sink.
pub const ENDPOINT_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 20);
pub const ENDPOINT_PORT: u16 = 5001;
/// The node the Services are on (xvsd's `--node-ip`, `--pod-cidr`).
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
pub const POD_CIDR: &str = "10.244.1.0/24";
/// Most ports one Service may have (`xvs_control::service::MAX_PORTS`).
const MAX_PORTS: u32 = 64;

/// The measured Service's name (kube-proxy's `namespace/name`).
const NAME: &str = "default/bench";

/// How many ports the measured Service needs for `flows` flows that vary
/// the destination port past 16384; an error past [`MAX_PORTS`].
pub fn service_ports(flows: u32) -> Result<u16, String> {
    let ports = flows.div_ceil(FLOW_PORTS).max(1);
    if ports > MAX_PORTS {
        return Err(format!(
            "{flows} flows to one Service from one address need {ports} Service ports; at most {MAX_PORTS} ({} flows)",
            MAX_PORTS * FLOW_PORTS
        ));
    }
    Ok(u16::try_from(ports).unwrap_or(u16::MAX))
}

/// Dummy `i` (1 ≤ i < services): its name, ClusterIP and endpoints.
fn dummy(i: u32) -> (String, Ipv4Addr, Vec<Ipv4Addr>) {
    let ip = Ipv4Addr::from(u32::from(SERVICE_IP).wrapping_add(i));
    let last = |base: u32, span: u32| {
        let host = u8::try_from(base + i % span).unwrap_or(u8::MAX);
        Ipv4Addr::new(10, 244, 1, host)
    };
    // Odd ones have one endpoint, even ones two; none is the generator
    // (.10) or the sink (.20).
    let mut endpoints = vec![last(100, 100)];
    if i % 2 == 0 {
        endpoints.push(last(200, 50));
    }
    (format!("default/svc-{i}"), ip, endpoints)
}

/// Dummies' port and target port (TCP).
const DUMMY_PORT: u16 = 80;
const DUMMY_TARGET: u16 = 8080;

/// xvsd's desired state with `services` Services (at least the measured
/// one), the measured one with `ports` ports: what goes into `state.json`.
/// The command line's node and ports are laid over it at start.
pub fn xvsd_state(services: u32, ports: u16) -> Value {
    let measured = json!({
        "name": NAME,
        "cluster_ip": SERVICE_IP,
        "ports": (0..ports).map(|k| json!({
            "name": format!("p{}", SERVICE_PORT + k),
            "protocol": "UDP",
            "port": SERVICE_PORT + k,
            "target_port": ENDPOINT_PORT + k,
        })).collect::<Vec<_>>(),
        "endpoints": [{"ip": ENDPOINT_IP}],
    });
    let dummies = (1..services).map(|i| {
        let (name, ip, endpoints) = dummy(i);
        json!({
            "name": name,
            "cluster_ip": ip,
            "ports": [{"protocol": "TCP", "port": DUMMY_PORT, "target_port": DUMMY_TARGET}],
            "endpoints": endpoints.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
        })
    });
    json!({
        "node": {"node_ip": NODE_IP, "pod_cidr": POD_CIDR},
        "services": std::iter::once(measured).chain(dummies).collect::<Vec<_>>(),
    })
}

/// kube-proxy's nftables rules for `services` Services (see the module
/// documentation): the measured one, one port, UDP, plus the dummies.
/// The fixed chains are as kube-proxy writes them, except `priority -100`
/// for `dstnat` on the output hook, which Debian 12's nft 1.0.6 refuses.
pub fn kube_proxy_nft(services: u32) -> String {
    let mut chains = String::new();
    let mut elements = Vec::new();
    let mut add = |name: &str,
                   ip: Ipv4Addr,
                   proto: &str,
                   port: u16,
                   target: u16,
                   eps: &[Ipv4Addr]| {
        let service = format!("{name}/{proto}/p{port}");
        let service_chain = format!("service-{}-{service}", chain_hash(&service));
        let endpoint_chains: Vec<String> = eps
            .iter()
            .map(|ep| {
                let endpoint = format!("{service}__{ep}/{target}");
                format!("endpoint-{}-{endpoint}", chain_hash(&endpoint))
            })
            .collect();
        let picks: Vec<String> = endpoint_chains
            .iter()
            .enumerate()
            .map(|(k, c)| format!("{k} : goto {c}"))
            .collect();
        let _ = write!(
            chains,
            "    chain {service_chain} {{\n        ip daddr {ip} {proto} dport {port} ip saddr != 10.244.0.0/16 jump mark-for-masquerade\n        numgen random mod {} vmap {{ {} }}\n    }}\n",
            eps.len(),
            picks.join(", ")
        );
        for (ep, chain) in eps.iter().zip(&endpoint_chains) {
            let _ = write!(
                chains,
                "    chain {chain} {{\n        ip saddr {ep} jump mark-for-masquerade\n        meta l4proto {proto} dnat to {ep}:{target}\n    }}\n"
            );
        }
        elements.push(format!("{ip} . {proto} . {port} : goto {service_chain}"));
    };
    add(
        NAME,
        SERVICE_IP,
        "udp",
        SERVICE_PORT,
        ENDPOINT_PORT,
        &[ENDPOINT_IP],
    );
    for i in 1..services {
        let (name, ip, endpoints) = dummy(i);
        add(&name, ip, "tcp", DUMMY_PORT, DUMMY_TARGET, &endpoints);
    }
    format!(
        "{NFT_HEAD}{chains}    map service-ips {{\n        type ipv4_addr . inet_proto . inet_service : verdict\n        elements = {{ {} }}\n    }}\n{NFT_TAIL}",
        elements.join(",\n            ")
    )
}

/// kube-proxy's table with its fixed chains and an empty `service-ips`
/// map: what Services are then added to with `add` commands.
pub fn kube_proxy_base() -> String {
    format!(
        "{NFT_HEAD}    map service-ips {{\n        type ipv4_addr . inet_proto . inet_service : verdict\n    }}\n{NFT_TAIL}"
    )
}

/// The part of kube-proxy's chain names that keeps them unique: eight
/// base32 characters of a hash of the rest (kube-proxy hashes with
/// SHA-256; any stable hash does here). The measured Service's are the
/// ones the 1-Service rule set always had.
pub fn chain_hash(name: &str) -> String {
    match name {
        "default/bench/udp/p80" => return "ULMVA6XW".into(),
        "default/bench/udp/p80__10.244.1.20/5001" => return "5OJB2KTY".into(),
        _ => {}
    }
    // FNV-1a, 64 bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    (0..8)
        .map(|k| char::from(BASE32[usize::try_from((h >> (k * 5)) & 31).unwrap_or(0)]))
        .collect()
}

const NFT_HEAD: &str = r#"
table ip kube-proxy {
    comment "rules for kube-proxy"
    chain mark-for-masquerade {
        mark set mark or 0x4000
    }
    chain masquerading {
        mark and 0x4000 == 0 return
        mark set mark xor 0x4000
        masquerade fully-random
    }
    chain services {
        ip daddr . meta l4proto . th dport vmap @service-ips
    }
"#;

const NFT_TAIL: &str = r#"    chain nat-prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        jump services
    }
    chain nat-output {
        type nat hook output priority -100; policy accept;
        jump services
    }
    chain nat-postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        jump masquerading
    }
    chain filter-forward {
        type filter hook forward priority filter; policy accept;
        ct state invalid drop
    }
}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use xvs_control::state::DesiredState;

    /// The rule set the `nft-dnat` DUT loaded before it took a Service
    /// count.
    const ONE_SERVICE: &str = r#"
table ip kube-proxy {
    comment "rules for kube-proxy"
    chain mark-for-masquerade {
        mark set mark or 0x4000
    }
    chain masquerading {
        mark and 0x4000 == 0 return
        mark set mark xor 0x4000
        masquerade fully-random
    }
    chain services {
        ip daddr . meta l4proto . th dport vmap @service-ips
    }
    chain service-ULMVA6XW-default/bench/udp/p80 {
        ip daddr 10.96.0.10 udp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
        numgen random mod 1 vmap { 0 : goto endpoint-5OJB2KTY-default/bench/udp/p80__10.244.1.20/5001 }
    }
    chain endpoint-5OJB2KTY-default/bench/udp/p80__10.244.1.20/5001 {
        ip saddr 10.244.1.20 jump mark-for-masquerade
        meta l4proto udp dnat to 10.244.1.20:5001
    }
    map service-ips {
        type ipv4_addr . inet_proto . inet_service : verdict
        elements = { 10.96.0.10 . udp . 80 : goto service-ULMVA6XW-default/bench/udp/p80 }
    }
    chain nat-prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        jump services
    }
    chain nat-output {
        type nat hook output priority -100; policy accept;
        jump services
    }
    chain nat-postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        jump masquerading
    }
    chain filter-forward {
        type filter hook forward priority filter; policy accept;
        ct state invalid drop
    }
}
"#;

    #[test]
    fn one_service_is_the_rule_set_nft_dnat_always_had() {
        assert_eq!(kube_proxy_nft(1), ONE_SERVICE);
    }

    #[test]
    fn every_service_has_a_map_element_a_chain_and_its_endpoint_chains() {
        let rules = kube_proxy_nft(5);
        let count = |s: &str| rules.matches(s).count();
        assert_eq!(count("    chain service-"), 5);
        // 1 + (1 + 2 + 1 + 2) endpoints.
        assert_eq!(count("    chain endpoint-"), 7);
        assert_eq!(count(" : goto service-"), 5);
        assert!(
            rules.contains("10.96.0.14 . tcp . 80 : goto service-"),
            "{rules}"
        );
        assert!(
            rules.contains("numgen random mod 2 vmap { 0 : goto endpoint-"),
            "{rules}"
        );
        assert!(
            rules.contains("meta l4proto tcp dnat to 10.244.1.104:8080"),
            "{rules}"
        );
        // Chain names are unique.
        let mut names: Vec<&str> = rules
            .lines()
            .filter_map(|l| l.trim().strip_prefix("chain "))
            .collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
    }

    #[test]
    fn xvsd_state_loads_as_a_desired_state_of_valid_services() {
        let state: DesiredState = serde_json::from_value(xvsd_state(10_000, 7)).unwrap();
        assert_eq!(state.services.len(), 10_000);
        let measured = state.services.get(NAME).unwrap();
        assert_eq!(measured.cluster_ip, SERVICE_IP);
        assert_eq!(measured.ports.len(), 7);
        assert_eq!(measured.ports[6].port, 86);
        assert_eq!(measured.ports[6].target(), ENDPOINT_PORT + 6);
        let state: DesiredState = serde_json::from_value(xvsd_state(3, 1)).unwrap();
        let mut ips = std::collections::HashSet::new();
        for i in 0..3 {
            let name = if i == 0 {
                NAME.to_string()
            } else {
                format!("default/svc-{i}")
            };
            let s = state.services.get(&name).unwrap();
            s.validate().unwrap();
            assert!(ips.insert(s.cluster_ip), "{name}: a ClusterIP twice");
        }
    }

    #[test]
    fn a_service_port_per_16384_flows() {
        assert_eq!(service_ports(1), Ok(1));
        assert_eq!(service_ports(16_384), Ok(1));
        assert_eq!(service_ports(16_385), Ok(2));
        assert_eq!(service_ports(100_000), Ok(7));
        assert!(service_ports(64 * 16_384 + 1).is_err());
    }
}
