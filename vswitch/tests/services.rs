//! Services and masquerade at the pipeline level (issue #8): the standard
//! node (pods 1-3, an uplink with a static route to 172.16.0.0/16, a VXLAN
//! overlay to node2's 10.244.2.0/24) with Services, conntrack and the NAT
//! tables, every frame built and read back by etherparse (checksums
//! verified by `parse_checked`).

mod common;
use common::*;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use etherparse::{NetSlice, PacketBuilder, TransportSlice};
use xvs_control::service::{EndpointSpec, ServiceSpec};
use xvs_control::state::DesiredState;
use xvs_flowtable::snat_ports::SnatPool;
use xvs_flowtable::{Conntrack, FlowTable, Timeouts};
use xvs_vswitch::drop::DropReason;
use xvs_vswitch::pipeline::{NatTables, PipelineConfig};
use xvs_vswitch::snapshot::Snapshot;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// The pod CIDR's network address: SNAT inside the cluster.
const CLUSTER_SNAT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 0);

fn service(json: serde_json::Value) -> ServiceSpec {
    serde_json::from_value(json).expect("a valid service")
}

/// `default/web`: VIP:80 -> 8080 on `endpoints`.
fn web(endpoints: &[Ipv4Addr]) -> ServiceSpec {
    let mut s = service(serde_json::json!({
        "name": "default/web", "cluster_ip": VIP,
        "ports": [{"name": "http", "port": 80, "target_port": 8080},
                  {"name": "dns", "protocol": "UDP", "port": 53, "target_port": 5353}],
    }));
    s.endpoints = endpoints
        .iter()
        .map(|&ip| EndpointSpec::ready(ip))
        .collect();
    s
}

fn with_services(services: &[ServiceSpec]) -> DesiredState {
    let mut s = state();
    for svc in services {
        s.services.insert(svc.clone());
    }
    s.node.cluster_cidr = Some("10.244.0.0/16".parse().unwrap());
    s
}

struct Nat {
    h: Harness,
    ct: Arc<Conntrack>,
    nat: Arc<NatTables>,
}

/// A harness running `state` with conntrack (releasing SNAT ports as
/// xvsd's does) and NAT tables whose SNAT range is `ports`.
fn nat_harness(state: DesiredState, ports: (u16, u16)) -> Nat {
    let mut h = Harness::with(state.clone(), PipelineConfig::default());
    let snap = Snapshot::compile_with(&state, 1, None, ports).expect("compiles");
    h.worker.pipeline.set_snapshot(Arc::new(snap));
    let nat = Arc::new(NatTables {
        snat: SnatPool::new(&[NODE_IP, CLUSTER_SNAT], ports.0..=ports.1),
        affinity: FlowTable::with_capacity(1024),
        snat_exhausted: AtomicU64::new(0),
    });
    let released = Arc::clone(&nat);
    let ct = Arc::new(
        Conntrack::new(4096, Timeouts::default()).with_on_remove(move |c| {
            if let Some(s) = c.nat().snat {
                if let std::net::IpAddr::V4(a) = s.to.addr {
                    released.snat.release(a, s.to.port);
                }
            }
        }),
    );
    h.worker.pipeline.set_conntrack(Arc::clone(&ct));
    h.worker.pipeline.set_nat(Arc::clone(&nat));
    Nat { h, ct, nat }
}

fn tcp_frame(
    macs: ([u8; 6], [u8; 6]),
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    syn: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, 1000, 64240);
    b = if syn { b.syn() } else { b.ack(1) };
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn udp_frame(macs: ([u8; 6], [u8; 6]), src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .udp(src.1, dst.1);
    let mut out = Vec::new();
    b.write(&mut out, b"query").unwrap();
    out
}

/// (src, sport, dst, dport) of a TCP or UDP frame, checksums verified.
fn tuple_of(frame: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let p = parse_checked(frame);
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    let (s, d) = (ip.header().source_addr(), ip.header().destination_addr());
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => (s, t.source_port(), d, t.destination_port()),
        Some(TransportSlice::Udp(u)) => (s, u.source_port(), d, u.destination_port()),
        Some(TransportSlice::Icmpv4(i)) => {
            let id = match i.header().icmp_type {
                etherparse::Icmpv4Type::EchoRequest(e) | etherparse::Icmpv4Type::EchoReply(e) => {
                    e.id
                }
                _ => 0,
            };
            (s, id, d, id)
        }
        other => panic!("unexpected transport {other:?}"),
    }
}

/// Pod `n`'s TCP SYN from `sport` to `dst`.
fn pod_syn(n: u8, sport: u16, dst: (Ipv4Addr, u16)) -> Vec<u8> {
    tcp_frame((pod_mac(n), GW_MAC), (pod_ip(n), sport), dst, true, b"")
}

/// Pod `n`'s TCP segment (ACK, no SYN) from `sport` to `dst`.
fn pod_segment(n: u8, sport: u16, dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    tcp_frame(
        (pod_mac(n), GW_MAC),
        (pod_ip(n), sport),
        dst,
        false,
        payload,
    )
}

/// Where the one output frame went and what it carries, inner frame for
/// VXLAN.
fn out_of(h: &mut Harness) -> (String, (Ipv4Addr, u16, Ipv4Addr, u16)) {
    let (port, frame) = only_output(h);
    if port == "uplink" && udp_dst_port(&frame) == Some(4789) {
        let inner = vxlan_inner_to_node2(&frame);
        return ("vxlan".into(), tuple_of(&inner));
    }
    (port, tuple_of(&frame))
}

fn udp_dst_port(frame: &[u8]) -> Option<u16> {
    match parse_checked(frame).transport {
        Some(TransportSlice::Udp(u)) => Some(u.destination_port()),
        _ => None,
    }
}

#[test]
fn cluster_ip_spreads_connections_over_local_and_remote_endpoints() {
    let eps = [pod_ip(2), pod_ip(3), REMOTE_POD];
    let Nat { mut h, ct, .. } = nat_harness(with_services(&[web(&eps)]), (61000, 65535));
    let mut seen: HashMap<(String, Ipv4Addr), u32> = HashMap::new();
    for sport in 40000..40300 {
        h.send("pod1", pod_syn(1, sport, (VIP, 80)));
        let (port, (src, sp, dst, dp)) = out_of(&mut h);
        assert_eq!(
            (src, sp),
            (pod_ip(1), sport),
            "the client's address is kept"
        );
        assert_eq!(dp, 8080, "the target port");
        let want_port = match dst {
            d if d == pod_ip(2) => "pod2",
            d if d == pod_ip(3) => "pod3",
            d if d == REMOTE_POD => "vxlan",
            d => panic!("not an endpoint: {d}"),
        };
        assert_eq!(port, want_port);
        *seen.entry((port, dst)).or_default() += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|&n| n > 60), "{seen:?}");
    assert_eq!(h.counters().svc_connections, 300);
    assert_eq!(ct.len(), 300);
    h.assert_no_frame_leak();
}

#[test]
fn replies_come_back_from_the_service_address() {
    let Nat { mut h, .. } = nat_harness(with_services(&[web(&[pod_ip(2)])]), (61000, 65535));
    h.send("pod1", pod_syn(1, 40000, (VIP, 80)));
    assert_eq!(
        out_of(&mut h),
        ("pod2".into(), (pod_ip(1), 40000, pod_ip(2), 8080))
    );
    // pod2 answers its client directly; the switch puts the VIP back.
    h.send("pod2", pod_segment(2, 8080, (pod_ip(1), 40000), b"hello"));
    assert_eq!(out_of(&mut h), ("pod1".into(), (VIP, 80, pod_ip(1), 40000)));
    // And the client's next segment (no SYN) goes to the same endpoint.
    h.send("pod1", pod_segment(1, 40000, (VIP, 80), b"more data"));
    assert_eq!(
        out_of(&mut h),
        ("pod2".into(), (pod_ip(1), 40000, pod_ip(2), 8080))
    );
    // UDP on the second port, to its own target port.
    h.send(
        "pod1",
        udp_frame((pod_mac(1), GW_MAC), (pod_ip(1), 5000), (VIP, 53)),
    );
    assert_eq!(
        out_of(&mut h),
        ("pod2".into(), (pod_ip(1), 5000, pod_ip(2), 5353))
    );
    h.send(
        "pod2",
        udp_frame((pod_mac(2), GW_MAC), (pod_ip(2), 5353), (pod_ip(1), 5000)),
    );
    assert_eq!(out_of(&mut h), ("pod1".into(), (VIP, 53, pod_ip(1), 5000)));
}

#[test]
fn a_service_without_endpoints_is_refused_at_once() {
    let Nat { mut h, ct, .. } = nat_harness(with_services(&[web(&[])]), (61000, 65535));
    h.send("pod1", pod_syn(1, 40000, (VIP, 80)));
    let (port, frame) = only_output(&mut h);
    assert_eq!(port, "pod1");
    let p = parse_checked(&frame);
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!("a TCP answer")
    };
    assert!(t.rst() && t.ack(), "RST+ACK to a SYN");
    assert_eq!((t.source_port(), t.destination_port()), (80, 40000));
    assert_eq!(t.acknowledgment_number(), 1001, "acknowledges the SYN");
    assert_eq!(tuple_of(&frame).0, VIP, "from the service address");
    // UDP: ICMP port unreachable, quoting the datagram.
    h.send(
        "pod1",
        udp_frame((pod_mac(1), GW_MAC), (pod_ip(1), 5000), (VIP, 53)),
    );
    let (port, frame) = only_output(&mut h);
    assert_eq!(port, "pod1");
    let icmp = icmp_of(&frame);
    assert_eq!((icmp.ty, icmp.code), (3, 3), "port unreachable");
    assert_eq!(h.drops(DropReason::ServiceNoEndpoints), 2);
    assert_eq!(h.counters().tcp_resets, 1);
    assert_eq!(ct.len(), 0, "a refused connection is not tracked");
    h.assert_no_frame_leak();
}

#[test]
fn hairpin_reaches_the_client_itself_from_the_cluster_snat_address() {
    let Nat { mut h, nat, .. } = nat_harness(with_services(&[web(&[pod_ip(1)])]), (61000, 65535));
    h.send("pod1", pod_syn(1, 40000, (VIP, 80)));
    let (port, (src, sport, dst, dport)) = out_of(&mut h);
    assert_eq!((port.as_str(), dst, dport), ("pod1", pod_ip(1), 8080));
    assert_eq!(
        src, CLUSTER_SNAT,
        "a packet from its own address would be dropped"
    );
    assert!((61000..=65535).contains(&sport));
    h.send("pod1", pod_segment(1, 8080, (CLUSTER_SNAT, sport), b""));
    assert_eq!(out_of(&mut h), ("pod1".into(), (VIP, 80, pod_ip(1), 40000)));
    assert_eq!(nat.snat.ports(CLUSTER_SNAT).unwrap().in_use(), 1);
}

fn node_port(policy: &str, endpoints: &[Ipv4Addr]) -> ServiceSpec {
    let mut s = service(serde_json::json!({
        "name": "default/np", "type": "NodePort", "cluster_ip": "10.96.0.20",
        "ports": [{"port": 80, "target_port": 8080, "node_port": 30080}],
        "external_traffic_policy": policy,
    }));
    s.endpoints = endpoints
        .iter()
        .map(|&ip| EndpointSpec::ready(ip))
        .collect();
    s
}

fn from_outside(sport: u16, dport: u16) -> Vec<u8> {
    tcp_frame(
        (ROUTER_MAC, UPLINK_MAC),
        (EXTERNAL, sport),
        (NODE_IP, dport),
        true,
        b"",
    )
}

#[test]
fn node_port_to_a_local_endpoint_keeps_the_client_address() {
    let Nat { mut h, .. } = nat_harness(
        with_services(&[node_port("Cluster", &[pod_ip(2)])]),
        (61000, 65535),
    );
    h.send("uplink", from_outside(50000, 30080));
    assert_eq!(
        out_of(&mut h),
        ("pod2".into(), (EXTERNAL, 50000, pod_ip(2), 8080))
    );
    h.send("pod2", pod_segment(2, 8080, (EXTERNAL, 50000), b""));
    let (port, frame) = only_output(&mut h);
    assert_eq!(port, "uplink");
    assert_eq!(macs_of(&frame).1, ROUTER_MAC);
    assert_eq!(tuple_of(&frame), (NODE_IP, 30080, EXTERNAL, 50000));
    // Another port of the node IP is not the service's: left alone (the
    // node's own traffic never reaches the switch there).
    h.send("uplink", from_outside(50001, 30081));
    assert!(h.all_sent().is_empty());
}

#[test]
fn node_port_to_another_node_snats_so_the_answer_comes_back_here() {
    let Nat { mut h, .. } = nat_harness(
        with_services(&[node_port("Cluster", &[REMOTE_POD])]),
        (61000, 65535),
    );
    h.send("uplink", from_outside(50000, 30080));
    let (port, (src, sport, dst, dport)) = out_of(&mut h);
    assert_eq!((port.as_str(), dst, dport), ("vxlan", REMOTE_POD, 8080));
    assert_eq!(src, CLUSTER_SNAT, "from this node's pod network");
    // The endpoint's answer arrives through the overlay.
    let answer = tcp_frame(
        (REMOTE_VTEP_MAC, VTEP_MAC),
        (REMOTE_POD, 8080),
        (CLUSTER_SNAT, sport),
        false,
        b"",
    );
    h.send("uplink", vxlan_from_remote(&answer, VNI));
    let (port, frame) = only_output(&mut h);
    assert_eq!(port, "uplink");
    assert_eq!(tuple_of(&frame), (NODE_IP, 30080, EXTERNAL, 50000));
}

#[test]
fn local_traffic_policy_uses_local_endpoints_or_drops() {
    let Nat { mut h, .. } = nat_harness(
        with_services(&[node_port("Local", &[pod_ip(2), REMOTE_POD])]),
        (61000, 65535),
    );
    for sport in 50000..50050 {
        h.send("uplink", from_outside(sport, 30080));
        assert_eq!(
            out_of(&mut h),
            ("pod2".into(), (EXTERNAL, sport, pod_ip(2), 8080))
        );
    }
    let Nat { mut h, .. } = nat_harness(
        with_services(&[node_port("Local", &[REMOTE_POD])]),
        (61000, 65535),
    );
    h.send("uplink", from_outside(50000, 30080));
    assert_dropped_only(&mut h, DropReason::ServiceNoLocalEndpoints, 1);
    // From inside the cluster the ClusterIP still reaches it (the internal
    // policy is Cluster).
    h.send(
        "pod1",
        pod_syn(1, 40000, ("10.96.0.20".parse().unwrap(), 80)),
    );
    assert_eq!(out_of(&mut h).0, "vxlan");
}

#[test]
fn client_ip_affinity_pins_every_connection_of_a_client() {
    let mut svc = web(&[pod_ip(2), pod_ip(3), REMOTE_POD]);
    svc.session_affinity = xvs_control::service::SessionAffinity::ClientIP;
    let Nat { mut h, .. } = nat_harness(with_services(&[svc]), (61000, 65535));
    let mut backends = std::collections::HashSet::new();
    for sport in 40000..40100 {
        h.send("pod1", pod_syn(1, sport, (VIP, 80)));
        backends.insert(out_of(&mut h).1 .2);
    }
    assert_eq!(backends.len(), 1, "{backends:?}");
}

#[test]
fn masquerade_leaves_from_the_node_ip_and_answers_come_back() {
    let Nat { mut h, nat, ct } = nat_harness(with_services(&[]), (61000, 61001));
    let server = (EXTERNAL, 443);
    h.send("pod1", pod_syn(1, 40000, server));
    let (port, (src, sport, dst, dport)) = out_of(&mut h);
    assert_eq!(
        (port.as_str(), src, dst, dport),
        ("uplink", NODE_IP, EXTERNAL, 443)
    );
    assert!((61000..=61001).contains(&sport));
    h.send(
        "uplink",
        tcp_frame(
            (ROUTER_MAC, UPLINK_MAC),
            server,
            (NODE_IP, sport),
            false,
            b"hi",
        ),
    );
    assert_eq!(
        out_of(&mut h),
        ("pod1".into(), (EXTERNAL, 443, pod_ip(1), 40000))
    );
    // Pings too: the echo identifier is what is translated.
    h.send("pod2", ping(pod_mac(2), GW_MAC, pod_ip(2), EXTERNAL, 64, 1));
    let (port, (src, id, _, _)) = out_of(&mut h);
    assert_eq!((port.as_str(), src), ("uplink", NODE_IP));
    let mut reply = Vec::new();
    PacketBuilder::ethernet2(ROUTER_MAC, UPLINK_MAC)
        .ipv4(EXTERNAL.octets(), NODE_IP.octets(), 60)
        .icmpv4_echo_reply(id, 1)
        .write(&mut reply, b"xvs ping payload")
        .unwrap();
    h.send("uplink", reply);
    assert_eq!(
        out_of(&mut h),
        ("pod2".into(), (EXTERNAL, 0x1234, pod_ip(2), 0x1234))
    );
    // Inside the cluster nothing is masqueraded.
    h.send("pod1", pod_syn(1, 40001, (REMOTE_POD, 80)));
    assert_eq!(
        out_of(&mut h),
        ("vxlan".into(), (pod_ip(1), 40001, REMOTE_POD, 80))
    );
    // Two ports, both taken: the third connection is a counted drop.
    h.send("pod3", pod_syn(3, 40002, server));
    assert_dropped_only(&mut h, DropReason::SnatPortsExhausted, 1);
    assert_eq!(
        nat.snat_exhausted
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Expiring the connections gives the ports back.
    ct.expire(u64::MAX / 2);
    assert_eq!(nat.snat.ports(NODE_IP).unwrap().in_use(), 0);
    h.send("pod3", pod_syn(3, 40002, server));
    assert_eq!(out_of(&mut h).1 .0, NODE_IP);
}

#[test]
fn removing_an_endpoint_keeps_established_connections_and_moves_few_new_ones() {
    let eps: Vec<Ipv4Addr> = (0..5).map(|i| Ipv4Addr::new(10, 244, 2, 20 + i)).collect();
    let state = with_services(&[web(&eps)]);
    let Nat { mut h, ct, .. } = nat_harness(state.clone(), (61000, 65535));
    let mut before = HashMap::new();
    for sport in 40000..42000 {
        h.send("pod1", pod_syn(1, sport, (VIP, 80)));
        before.insert(sport, out_of(&mut h).1 .2);
    }
    // The endpoint goes (a new snapshot, as xvsd swaps it in).
    let mut smaller = state.clone();
    smaller.services.insert(web(&eps[1..]));
    let old = Arc::clone(h.worker.pipeline.snapshot());
    let new = Snapshot::compile_with(&smaller, 2, Some(&old), (61000, 65535)).unwrap();
    h.worker.pipeline.set_snapshot(Arc::new(new));
    // Established connections keep their endpoint, even the removed one's.
    for (&sport, &backend) in &before {
        h.send("pod1", pod_segment(1, sport, (VIP, 80), b"x"));
        assert_eq!(out_of(&mut h).1 .2, backend, "connection from {sport}");
    }
    // New connections (the same tuples, once their connections are gone)
    // move only if their endpoint went, save a few.
    ct.expire(u64::MAX / 2);
    let (mut moved, mut stayed) = (0, 0);
    for (&sport, &backend) in &before {
        h.send("pod1", pod_syn(1, sport, (VIP, 80)));
        let now = out_of(&mut h).1 .2;
        assert_ne!(now, eps[0], "the removed endpoint gets nothing new");
        if backend != eps[0] {
            if now == backend {
                stayed += 1;
            } else {
                moved += 1;
            }
        }
    }
    assert!(moved * 20 < stayed, "{moved} moved, {stayed} stayed");
}

#[test]
fn later_fragments_of_a_service_datagram_are_dropped_not_leaked() {
    let Nat { mut h, .. } = nat_harness(with_services(&[web(&[pod_ip(2)])]), (61000, 65535));
    let ip = fragment_header(pod_ip(1), VIP, 64, 7, false, 100);
    h.send("pod1", raw_ipv4(pod_mac(1), GW_MAC, ip, &[0u8; 64]));
    assert_dropped_only(&mut h, DropReason::NatFragment, 1);
}

#[test]
fn services_that_share_nothing_changed_are_shared_between_snapshots() {
    let a = web(&[pod_ip(2)]);
    let mut b = web(&[pod_ip(3)]);
    b.name = "default/other".into();
    b.cluster_ip = "10.96.0.11".parse().unwrap();
    let s1 = Snapshot::compile(&with_services(&[a.clone(), b.clone()]), 1).unwrap();
    let mut changed = b.clone();
    changed.endpoints.push(EndpointSpec::ready(pod_ip(1)));
    let s2 = Snapshot::compile_with(&with_services(&[a, changed]), 2, Some(&s1), (61000, 65535))
        .unwrap();
    assert!(Arc::ptr_eq(
        s1.services.get("default/web").unwrap(),
        s2.services.get("default/web").unwrap()
    ));
    assert!(!Arc::ptr_eq(
        s1.services.get("default/other").unwrap(),
        s2.services.get("default/other").unwrap()
    ));
}

/// The share of new connections that change endpoint when one of N goes,
/// through the whole pipeline (conntrack emptied in between, as if every
/// connection were new): Maglev moves the removed endpoint's 1/N and a
/// little more. Prints the table the README quotes (`cargo test -p
/// xvs-vswitch --test services -- --nocapture moved`).
#[test]
fn removing_one_of_n_endpoints_moves_about_one_nth_of_new_connections() {
    const CONNECTIONS: u16 = 6000;
    println!("endpoints  moved    1/N      moved beyond 1/N");
    for n in [3u8, 5, 8, 20, 50] {
        let eps: Vec<Ipv4Addr> = (0..n).map(|i| Ipv4Addr::new(10, 244, 2, 10 + i)).collect();
        let state = with_services(&[web(&eps)]);
        let Nat { mut h, ct, .. } = nat_harness(state.clone(), (61000, 65535));
        let picks = |h: &mut Harness| -> Vec<Ipv4Addr> {
            let out = (0..CONNECTIONS)
                .map(|i| {
                    h.send("pod1", pod_syn(1, 20000 + i, (VIP, 80)));
                    out_of(h).1 .2
                })
                .collect();
            ct.expire(u64::MAX / 2);
            out
        };
        let before = picks(&mut h);
        let mut smaller = state.clone();
        smaller.services.insert(web(&eps[1..]));
        let old = Arc::clone(h.worker.pipeline.snapshot());
        let new = Snapshot::compile_with(&smaller, 2, Some(&old), (61000, 65535)).unwrap();
        h.worker.pipeline.set_snapshot(Arc::new(new));
        let after = picks(&mut h);
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        let share = moved as f64 / f64::from(CONNECTIONS);
        let ideal = 1.0 / f64::from(n);
        println!(
            "{n:>9}  {:>5.1}%   {:>5.1}%   {:>+5.1} points",
            100.0 * share,
            100.0 * ideal,
            100.0 * (share - ideal)
        );
        assert!(after.iter().all(|a| *a != eps[0]));
        // The removed endpoint's share moves (within sampling noise), and
        // Maglev's extra churn stays small.
        assert!(
            share > ideal * 0.8 && share < ideal * 1.2 + 0.02,
            "{n}: {share}"
        );
    }
}

/// A cached flow's hop belongs to the connection that cached it: when the
/// same tuple starts a new connection to another endpoint (the old one went
/// and its connection expired), the packet goes to the new endpoint's port,
/// and so do the next ones.
#[test]
fn a_new_connection_on_a_cached_flow_follows_its_own_endpoint() {
    let state = with_services(&[web(&[pod_ip(2)])]);
    let Nat { mut h, ct, .. } = nat_harness(state.clone(), (61000, 65535));
    h.enable_flow_cache(1024);
    let data = |h: &mut Harness| {
        h.send("pod1", pod_segment(1, 40000, (VIP, 80), b"x"));
        out_of(h)
    };
    h.send("pod1", pod_syn(1, 40000, (VIP, 80)));
    assert_eq!(out_of(&mut h).0, "pod2");
    assert_eq!(
        data(&mut h),
        ("pod2".into(), (pod_ip(1), 40000, pod_ip(2), 8080))
    );
    assert!(h.counters().flow_hits > 0, "the flow is cached");
    // pod2 is no endpoint any more, pod3 is; a Service change keeps the
    // cache's generation, so the cached flow stays.
    let mut moved = state.clone();
    moved.services.insert(web(&[pod_ip(3)]));
    let old = Arc::clone(h.worker.pipeline.snapshot());
    let table = old
        .services
        .update(
            &[("default/web", moved.services.get("default/web"))],
            &old.facts,
        )
        .unwrap();
    let new = old.with_services(Arc::new(table), moved.services.clone(), 2);
    assert_eq!(new.flow_generation, old.flow_generation);
    h.worker.pipeline.set_snapshot(Arc::new(new));
    // The established connection keeps pod2.
    assert_eq!(data(&mut h).0, "pod2");
    // It expires; the same tuple opens a new connection, which goes to
    // pod3 although its first packet hits the cached flow.
    ct.expire(u64::MAX / 2);
    h.send("pod1", pod_syn(1, 40000, (VIP, 80)));
    assert_eq!(
        out_of(&mut h),
        ("pod3".into(), (pod_ip(1), 40000, pod_ip(3), 8080))
    );
    assert_eq!(
        data(&mut h),
        ("pod3".into(), (pod_ip(1), 40000, pod_ip(3), 8080))
    );
    assert_eq!(
        data(&mut h),
        ("pod3".into(), (pod_ip(1), 40000, pod_ip(3), 8080))
    );
}

/// One client port to two Service ports that lead to the same endpoint
/// port: the second connection's reply tuple is the first's, so it gets
/// another source port (as Linux's NAT does) instead of being dropped, and
/// its answers come back to the client's own port.
#[test]
fn a_clashing_reply_tuple_gets_another_source_port() {
    let mut svc = web(&[pod_ip(2)]);
    svc.ports[1] =
        serde_json::from_value(serde_json::json!({"name": "alt", "port": 81, "target_port": 8080}))
            .unwrap();
    let Nat { mut h, .. } = nat_harness(with_services(&[svc]), (61000, 65535));
    h.send("pod1", pod_syn(1, 40000, (VIP, 80)));
    assert_eq!(
        out_of(&mut h),
        ("pod2".into(), (pod_ip(1), 40000, pod_ip(2), 8080))
    );
    h.send("pod1", pod_syn(1, 40000, (VIP, 81)));
    let (port, (src, sport, dst, dport)) = out_of(&mut h);
    assert_eq!(
        (port.as_str(), src, dst, dport),
        ("pod2", pod_ip(1), pod_ip(2), 8080)
    );
    assert_ne!(sport, 40000, "another source port");
    assert_eq!(h.counters().nat_port_remaps, 1);
    h.send("pod2", pod_segment(2, 8080, (pod_ip(1), sport), b""));
    assert_eq!(out_of(&mut h), ("pod1".into(), (VIP, 81, pod_ip(1), 40000)));
    h.send("pod2", pod_segment(2, 8080, (pod_ip(1), 40000), b""));
    assert_eq!(out_of(&mut h), ("pod1".into(), (VIP, 80, pod_ip(1), 40000)));
}
