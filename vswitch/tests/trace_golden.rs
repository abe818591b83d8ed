//! `xvsctl trace` output checked against golden text: each case traces one
//! described packet through a node with two pods, an uplink with a static
//! route and a VXLAN overlay to a remote node, and a three-port bridge
//! domain, and compares the trace's text with
//! `tests/golden/trace/<case>.txt`.
//!
//! When a change to the pipeline changes a trace on purpose (a new stage,
//! a new note), rewrite the golden files and review their diff:
//!
//! ```sh
//! XVS_BLESS=1 cargo test -p xvs-vswitch --test trace_golden
//! git diff vswitch/tests/golden/trace/
//! ```
//!
//! Blessing also deletes golden files no case produces any more. The text
//! is deterministic: no clocks, no addresses of memory, no hash order.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use xvs_control::state::DesiredState;
use xvs_vswitch::snapshot::Snapshot;
use xvs_vswitch::trace::{trace, Trace, Verdict};

/// (golden file name, packet description).
const CASES: &[(&str, &str)] = &[
    (
        "pod_to_pod_tcp",
        "in_port=pod1,tcp,nw_src=10.244.1.11,nw_dst=10.244.1.12,tp_dst=80",
    ),
    (
        "pod_to_remote_pod_vxlan",
        "in_port=pod1,udp,nw_dst=10.244.2.5,tp_dst=53,len=100",
    ),
    ("ping_gateway", "in_port=pod1,icmp,nw_dst=169.254.1.1"),
    (
        "ttl_1_time_exceeded",
        "in_port=pod1,udp,nw_dst=10.244.1.12,tp_dst=33434,nw_ttl=1",
    ),
    ("no_route", "in_port=pod1,icmp,nw_dst=203.0.113.7"),
    (
        "unknown_pod_host_unreachable",
        "in_port=pod1,tcp,nw_dst=10.244.1.99,tp_dst=80",
    ),
    ("arp_for_gateway", "in_port=pod1,arp"),
    (
        "uplink_to_pod",
        "in_port=uplink,tcp,nw_src=172.16.0.9,nw_dst=10.244.1.12,tp_dst=443",
    ),
    (
        "mtu_fragmentation_needed",
        "in_port=uplink,udp,nw_src=172.16.0.9,nw_dst=10.244.1.12,tp_dst=9,len=1514",
    ),
    (
        "spoofed_source",
        "in_port=pod1,ip,nw_src=10.244.1.12,nw_dst=10.244.1.11",
    ),
    (
        "bridged_flood",
        "in_port=br1,dl_vlan=10,udp,nw_src=192.0.2.1,nw_dst=192.0.2.2,tp_dst=9",
    ),
    (
        "ipv6_on_pod_port",
        "in_port=pod1,icmp6,ipv6_src=fd00::1,ipv6_dst=fd00::2",
    ),
];

/// Cases traced against [`state_with_rules`]: (golden file name, packet).
const RULE_CASES: &[(&str, &str)] = &[
    (
        "rule_redirect",
        "in_port=pod1,tcp,nw_dst=10.244.1.12,tp_dst=8080",
    ),
    ("rule_drop", "in_port=pod1,tcp,nw_dst=10.244.1.12,tp_dst=22"),
    ("rule_normal", "in_port=pod1,icmp,nw_dst=10.244.1.12"),
    (
        "rule_vxlan",
        "in_port=pod1,udp,nw_dst=10.244.1.12,tp_dst=4000",
    ),
    (
        "rule_no_match",
        "in_port=pod1,udp,nw_dst=10.244.1.12,tp_dst=53",
    ),
    (
        "rule_strip_vlan",
        "in_port=br1,dl_vlan=10,udp,nw_src=192.0.2.1,nw_dst=192.0.2.2,tp_dst=9",
    ),
];

/// Cases traced against [`state_with_services`]: (golden file name, packet).
const SERVICE_CASES: &[(&str, &str)] = &[
    (
        "service_cluster_ip",
        "in_port=pod1,tcp,nw_dst=10.96.0.10,tp_dst=80",
    ),
    (
        "service_no_endpoints_rst",
        "in_port=pod1,tcp,nw_dst=10.96.0.11,tp_dst=80",
    ),
    (
        "service_no_endpoints_udp",
        "in_port=pod1,udp,nw_dst=10.96.0.11,tp_dst=53",
    ),
    (
        "service_node_port_to_remote",
        "in_port=uplink,tcp,nw_src=172.16.0.9,nw_dst=192.168.50.1,tp_dst=30080",
    ),
    (
        "masquerade",
        "in_port=pod1,tcp,nw_dst=172.16.0.9,tp_dst=443",
    ),
];

/// [`state`] with Services (a ClusterIP with a local and a remote
/// endpoint, one without endpoints, a NodePort whose endpoint is on node2)
/// and masquerade of pod traffic leaving 10.244.0.0/16.
fn state_with_services() -> DesiredState {
    let mut s = state();
    s.node.cluster_cidr = Some("10.244.0.0/16".parse().unwrap());
    let services: xvs_control::service::Services = serde_json::from_value(serde_json::json!([
        {"name": "default/web", "cluster_ip": "10.96.0.10",
         "ports": [{"port": 80, "target_port": 8080}],
         "endpoints": [{"ip": "10.244.1.12"}, {"ip": "10.244.2.5"}]},
        {"name": "default/empty", "cluster_ip": "10.96.0.11",
         "ports": [{"name": "http", "port": 80}, {"name": "dns", "protocol": "UDP", "port": 53}]},
        {"name": "default/np", "type": "NodePort", "cluster_ip": "10.96.0.12",
         "ports": [{"port": 80, "target_port": 8080, "node_port": 30080}],
         "endpoints": [{"ip": "10.244.2.5"}]},
    ]))
    .expect("the services parse");
    s.services = services;
    s
}

/// [`state`] with flow rules: a redirect with a MAC rewrite, a drop, a
/// `normal`, an encapsulation and a VLAN strip.
fn state_with_rules() -> DesiredState {
    let mut s = state();
    s.rules = [
        "priority=200,in_port=pod1,tcp,tp_dst=8080 actions=mod_dl_dst:02:00:00:00:0f:0f,output:uplink",
        "priority=100,in_port=pod1,tcp,tp_dst=22 actions=drop",
        "priority=90,in_port=pod1,icmp actions=normal",
        "priority=90,in_port=pod1,udp,tp_dst=4000 actions=vxlan:node2",
        "in_port=br1,dl_vlan=10 actions=strip_vlan,output:br3",
    ]
    .iter()
    .map(|r| r.parse().expect("test rule parses"))
    .collect();
    s
}

/// The node: pods pod1 (10.244.1.11) and pod2 (10.244.1.12) with MTU 1450,
/// the uplink (MTU 1500) carrying the overlay (VNI 42) to node2
/// (10.244.2.0/24) and a static route 172.16.0.0/16, bridge domain 7 of
/// br1..br3. Written as a state file is, so it does not depend on fields
/// with defaults.
fn state() -> DesiredState {
    serde_json::from_value(serde_json::json!({
        "node": {
            "node_ip": "192.168.50.1",
            "pod_cidr": "10.244.1.0/24",
            "vxlan": {
                "vni": 42,
                "vtep_ip": "192.168.50.1",
                "vtep_mac": "02:00:00:00:ee:01",
                "uplink": "uplink",
            },
        },
        "ports": [
            {"name": "pod1", "mtu": 1450,
             "kind": {"pod": {"ip": "10.244.1.11", "mac": "02:00:00:00:01:01"}}},
            {"name": "pod2", "mtu": 1450,
             "kind": {"pod": {"ip": "10.244.1.12", "mac": "02:00:00:00:01:02"}}},
            {"name": "uplink", "mtu": 1500, "kind": {"uplink": {"mac": "02:00:00:00:ff:01"}}},
            {"name": "br1", "kind": {"bridged": {"domain": 7}}},
            {"name": "br2", "kind": {"bridged": {"domain": 7}}},
            {"name": "br3", "kind": {"bridged": {"domain": 7}}},
        ],
        "routes": [
            {"prefix": "172.16.0.0/16", "port": "uplink", "next_hop_mac": "02:00:00:00:fe:01"},
        ],
        "remote_nodes": [{
            "name": "node2",
            "pod_cidr": "10.244.2.0/24",
            "vtep_ip": "192.168.50.2",
            "vtep_mac": "02:00:00:00:ee:02",
            "underlay_mac": "02:00:00:00:ff:02",
        }],
    }))
    .expect("the test state parses")
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/trace")
}

/// What a golden file holds: the command, then the trace's text.
fn golden_text(description: &str, t: &Trace) -> String {
    format!("$ xvsctl trace '{description}'\n{t}")
}

#[test]
fn traces_match_the_golden_files() {
    let plain = Arc::new(Snapshot::compile(&state(), 1).expect("the test state compiles"));
    let ruled = Arc::new(Snapshot::compile(&state_with_rules(), 1).expect("the rules compile"));
    let served =
        Arc::new(Snapshot::compile(&state_with_services(), 1).expect("the services compile"));
    let bless = std::env::var_os("XVS_BLESS").is_some();
    let dir = golden_dir();
    let mut failures = Vec::new();
    let cases = CASES
        .iter()
        .map(|c| (c, &plain))
        .chain(RULE_CASES.iter().map(|c| (c, &ruled)))
        .chain(SERVICE_CASES.iter().map(|c| (c, &served)));
    for ((name, description), snapshot) in cases {
        let t = trace(snapshot, description)
            .unwrap_or_else(|e| panic!("{name}: {description:?} should trace: {e}"));

        // Independent of the golden text: the JSON form round-trips, the
        // printed packet traces the same again, and no output frame has a
        // checksum etherparse disagrees with.
        let json = serde_json::to_value(&t).expect("a trace serializes");
        let back: Trace = serde_json::from_value(json).expect("and deserializes");
        assert_eq!(back, t, "{name}: JSON round trip");
        let again = trace(snapshot, &t.packet)
            .unwrap_or_else(|e| panic!("{name}: the printed packet should trace: {e}"));
        assert_eq!(again, t, "{name}: tracing the printed packet");
        for v in &t.verdicts {
            if let Verdict::Output { frame, .. } = v {
                assert!(!frame.contains("bad checksum"), "{name}: {frame}");
            }
        }

        let path = dir.join(format!("{name}.txt"));
        let actual = golden_text(description, &t);
        if bless {
            std::fs::create_dir_all(&dir).expect("creating the golden directory");
            std::fs::write(&path, &actual).expect("writing a golden file");
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{name}: the trace differs from {}\n--- expected\n{expected}--- actual\n{actual}",
                path.display()
            )),
            Err(e) => failures.push(format!(
                "{name}: {}: {e}\n--- actual\n{actual}",
                path.display()
            )),
        }
    }

    // Golden files of cases that are gone.
    let wanted: Vec<String> = CASES
        .iter()
        .chain(RULE_CASES)
        .chain(SERVICE_CASES)
        .map(|(n, _)| format!("{n}.txt"))
        .collect();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if !wanted.contains(&file) {
            if bless {
                std::fs::remove_file(entry.path()).expect("removing a stale golden file");
            } else {
                failures.push(format!("{file}: no case produces this golden file"));
            }
        }
    }

    assert!(
        failures.is_empty(),
        "{}\n\nIf the change is intended, rewrite the golden files and review the diff:\n  \
         XVS_BLESS=1 cargo test -p xvs-vswitch --test trace_golden\n",
        failures.join("\n")
    );
}
