//! The flow cache (`xvs_vswitch::flow_cache`) in the pipeline: what is
//! cached and what is not, what a hit does (checked on the output frames
//! with etherparse), that a cached flow never outlives its snapshot, what
//! revalidation keeps, and two property tests: a pipeline with the cache
//! behaves exactly as one without, and the cache key describes every rule
//! field a decision may read.
mod common;
use common::*;

use std::net::Ipv4Addr;

use etherparse::{NetSlice, PacketBuilder, TransportSlice};
use proptest::prelude::*;
use xvs_control::flowrule::{ETHERTYPE_IPV4, IP_PROTO_UDP};
use xvs_control::state::{DesiredState, MacAddr};
use xvs_flowtable::{FlowTable, FlowView};
use xvs_vswitch::classifier::Fields;
use xvs_vswitch::drop::{Counters, DropReason};
use xvs_vswitch::flow_cache::{self, fields_of_key, flow_key, CachedAction};
use xvs_vswitch::snapshot::{NextHop, Snapshot};

const PAYLOAD: &[u8] = b"flow cache test payload";

/// A pod address no pod has (answered with host unreachable).
const UNASSIGNED: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 99);

/// The cached action of `flow`.
fn action_of(flow: &FlowView) -> CachedAction {
    CachedAction::decode(flow.value.action())
}

/// The one flow of `table`.
fn only_flow(table: &FlowTable) -> FlowView {
    let flows = flows_of(table);
    assert_eq!(flows.len(), 1, "one cached flow: {flows:?}");
    flows[0]
}

/// The flow of `table` whose destination is `dst`.
fn flow_to(table: &FlowTable, dst: Ipv4Addr) -> Option<FlowView> {
    flows_of(table)
        .into_iter()
        .find(|f| f.key.tuple().dst == std::net::IpAddr::V4(dst))
}

/// The next hop a `Forward` flow names in `snap`.
fn hop_of(flow: &FlowView, snap: &Snapshot) -> NextHop {
    match action_of(flow) {
        CachedAction::Forward { hop, .. } => snap.hops[usize::from(hop)],
        other => panic!("not a forwarding flow: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// 1. A flow misses once, then hits.

#[test]
fn pod_to_pod_udp_misses_once_then_hits_with_identical_output() {
    let mut h = Harness::new();
    let table = h.enable_flow_cache(1024);
    let input = pod_udp(1, pod_ip(2), 64, PAYLOAD);
    let want = routed_frame(&input, GW_MAC, pod_mac(2));

    let first = send_expect_one(&mut h, "pod1", input.clone(), "pod2");
    assert_eq!(first, want, "slow path: routed");
    assert_eq!(h.flow_counts(), (1, 1, 0), "(misses, added, hits)");

    let second = send_expect_one(&mut h, "pod1", input.clone(), "pod2");
    assert_eq!(second, first, "the hit sends the same bytes");
    assert_eq!(h.flow_counts(), (1, 1, 1), "(misses, added, hits)");

    // Field by field, through etherparse.
    for out in [&first, &second] {
        assert_eq!(macs_of(out), (GW_MAC, pod_mac(2)));
        assert_eq!(ipv4_of(out), (pod_ip(1), pod_ip(2), 63));
        let p = parse_checked(out);
        let Some(TransportSlice::Udp(udp)) = &p.transport else {
            panic!("not UDP: {:?}", p.transport)
        };
        assert_eq!((udp.source_port(), udp.destination_port()), (40000, 5001));
        assert_eq!(udp.payload(), PAYLOAD);
    }

    let flow = only_flow(&table);
    assert_eq!(flow.packets, 2);
    assert_eq!(flow.bytes, 2 * input.len() as u64);
    let snap = h.worker.pipeline.snapshot().clone();
    assert_eq!(
        hop_of(&flow, &snap),
        NextHop::Port {
            port: 1,
            mac: MacAddr(pod_mac(2))
        }
    );
    assert_eq!(action_of(&flow).rule(), None);

    let d = flow_cache::describe(&flow, &snap, h.now_ns).expect("describable");
    assert_eq!(
        d.matches,
        "in_port=pod1,udp,nw_src=10.244.1.11,nw_dst=10.244.1.12,tp_src=40000,tp_dst=5001"
    );
    assert_eq!(
        d.actions,
        "dec_ttl,mod_dl_src:ee:ee:ee:ee:ee:ee,mod_dl_dst:02:00:00:00:01:02,output:pod2"
    );
    assert!(d.actions.ends_with("output:pod2"));
    assert_eq!(d.in_port, "pod1");
    assert_eq!((d.packets, d.rule, d.current), (2, None, true));
    // The match is valid rule syntax.
    flow_rule(&format!("{} actions=output:pod2", d.matches));

    let c = h.counters();
    assert_eq!((c.routed, c.total_drops()), (2, 0));
    h.assert_no_frame_leak();
}

#[test]
fn one_flow_twice_in_one_batch_is_one_flow_counting_both() {
    let mut h = Harness::new();
    let table = h.enable_flow_cache(1024);
    let input = pod_udp(1, pod_ip(2), 64, PAYLOAD);
    h.port("pod1").inject(input.clone());
    h.port("pod1").inject(input.clone());
    h.run();
    let out = h.sent("pod2");
    assert_eq!(out.len(), 2);
    let want = routed_frame(&input, GW_MAC, pod_mac(2));
    assert!(out.iter().all(|f| *f == want));
    let flow = only_flow(&table);
    assert_eq!((flow.packets, flow.bytes), (2, 2 * input.len() as u64));

    // A third packet in a later batch hits.
    let third = send_expect_one(&mut h, "pod1", input, "pod2");
    assert_eq!(third, want);
    assert_eq!(h.counters().flow_hits, 1);
    h.assert_no_frame_leak();
}

#[test]
fn padded_frame_counts_the_same_on_miss_and_hit() {
    // A 54-byte TCP SYN as a NIC delivers it: padded to 60 bytes.
    let mut h = Harness::new();
    let table = h.enable_flow_cache(1024);
    let mut input = tcp_syn(ROUTER_MAC, UPLINK_MAC, EXTERNAL, pod_ip(2), 64);
    let datagram_frame = input.len() as u64;
    input.resize(60, 0);
    let want = routed_frame(&input, GW_MAC, pod_mac(2));
    for _ in 0..2 {
        assert_eq!(
            send_expect_one(&mut h, "uplink", input.clone(), "pod2"),
            want
        );
    }
    assert_eq!(h.flow_counts(), (1, 1, 1));
    let flow = only_flow(&table);
    assert_eq!(flow.packets, 2);
    assert_eq!(
        flow.bytes,
        2 * datagram_frame,
        "both packets count the frame up to the end of the datagram"
    );
}

// ---------------------------------------------------------------------------
// 2. What is not cached.

/// Sends each frame of `frames` (port, frame) twice through a harness with
/// the cache and one without; checks that nothing was cached, nothing hit,
/// and both sent the same frames and counted the same. Returns the cached
/// harness's counters.
fn expect_not_cached(what: &str, frames: &[(&str, Vec<u8>)]) -> Counters {
    let mut cached = Harness::new();
    let table = cached.enable_flow_cache(1024);
    let mut plain = Harness::new();
    for round in 0..2 {
        for (port, frame) in frames {
            cached.send(port, frame.clone());
            plain.send(port, frame.clone());
            for name in PORTS {
                assert_eq!(
                    cached.sent(name),
                    plain.sent(name),
                    "{what} (round {round}): output on {name}"
                );
            }
        }
    }
    let c = cached.counters().clone();
    assert_eq!(c.flows_added, 0, "{what}: nothing cached");
    assert_eq!(c.flow_hits, 0, "{what}: nothing hit");
    assert!(table.is_empty(), "{what}: table empty");
    assert_eq!(
        without_flow_counts(&c),
        without_flow_counts(plain.counters()),
        "{what}: counters"
    );
    cached.assert_no_frame_leak();
    plain.assert_no_frame_leak();
    c
}

/// `c` with the flow-cache counters zeroed (for comparing a harness with
/// the cache to one without).
fn without_flow_counts(c: &Counters) -> Counters {
    Counters {
        flow_hits: 0,
        flow_misses: 0,
        flows_added: 0,
        ..c.clone()
    }
}

#[test]
fn echo_to_gateway_is_not_cached() {
    let c = expect_not_cached(
        "echo",
        &[("pod1", ping(pod_mac(1), GW_MAC, pod_ip(1), GATEWAY, 64, 1))],
    );
    assert_eq!(c.echo_replies, 2);
    assert_eq!(c.flow_misses, 2, "looked up, missed, not added");
}

#[test]
fn ttl_expiring_packet_is_not_cached() {
    let c = expect_not_cached("ttl 1", &[("pod1", pod_udp(1, pod_ip(2), 1, PAYLOAD))]);
    assert_eq!((c.icmp_errors, c.drops_of(DropReason::TtlExpired)), (2, 2));
}

#[test]
fn unroutable_and_unassigned_destinations_are_not_cached() {
    let c = expect_not_cached(
        "no route",
        &[
            ("pod1", pod_udp(1, UNROUTABLE, 64, PAYLOAD)),
            ("pod1", pod_udp(1, UNASSIGNED, 64, PAYLOAD)),
        ],
    );
    assert_eq!(c.drops_of(DropReason::NoRoute), 2);
    assert_eq!(c.drops_of(DropReason::HostUnreachable), 2);
    assert_eq!(c.icmp_errors, 4);
}

#[test]
fn fragments_are_not_cached() {
    let first = raw_ipv4(
        pod_mac(1),
        GW_MAC,
        fragment_header(pod_ip(1), pod_ip(2), 64, 7, true, 0),
        &[0x9c, 0x40, 0x13, 0x89, 0, 40, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
    );
    let later = raw_ipv4(
        pod_mac(1),
        GW_MAC,
        fragment_header(pod_ip(1), pod_ip(2), 64, 7, false, 2),
        &[9; 24],
    );
    let c = expect_not_cached("fragments", &[("pod1", first), ("pod1", later)]);
    assert_eq!(c.routed, 4);
    assert_eq!(c.flow_misses, 0, "fragments are not even looked up");
}

#[test]
fn bridged_traffic_is_not_cached() {
    let a = [0x02, 0, 0, 0, 0xbb, 1];
    let b = [0x02, 0, 0, 0, 0xbb, 2];
    let c = expect_not_cached(
        "bridged",
        &[
            ("br1", udp(a, b, pod_ip(1), pod_ip(2), 64, PAYLOAD)),
            ("br2", udp(b, a, pod_ip(2), pod_ip(1), 64, PAYLOAD)),
            ("br1", udp(a, b, pod_ip(1), pod_ip(2), 64, PAYLOAD)),
        ],
    );
    assert!(c.bridged + c.flooded > 0);
    assert_eq!(c.flow_misses, 0, "bridged ports are not looked up");
}

#[test]
fn decapsulated_traffic_is_not_cached() {
    let inner = udp(
        REMOTE_VTEP_MAC,
        VTEP_MAC,
        REMOTE_POD,
        pod_ip(1),
        64,
        PAYLOAD,
    );
    let c = expect_not_cached("vxlan", &[("uplink", vxlan_from_remote(&inner, VNI))]);
    assert_eq!((c.vxlan_decap, c.routed), (2, 2));
}

#[test]
fn spoofed_and_local_packets_are_not_cached() {
    let spoofed = udp(pod_mac(1), GW_MAC, pod_ip(2), pod_ip(3), 64, PAYLOAD);
    let martian = udp(ROUTER_MAC, UPLINK_MAC, pod_ip(2), pod_ip(3), 64, PAYLOAD);
    let to_node = pod_udp(1, NODE_IP, 64, PAYLOAD);
    let c = expect_not_cached(
        "spoofed",
        &[("pod1", spoofed), ("uplink", martian), ("pod1", to_node)],
    );
    assert_eq!(c.drops_of(DropReason::SpoofedSource), 2);
    assert_eq!(c.drops_of(DropReason::MartianAddress), 2);
    assert_eq!(c.drops_of(DropReason::LocalUnsupported), 2);
}

#[test]
fn cached_flow_still_checks_ttl_and_mtu_per_packet() {
    let mut h = Harness::new();
    let table = h.enable_flow_cache(1024);
    let input = pod_udp(1, pod_ip(2), 64, PAYLOAD);
    send_expect_one(&mut h, "pod1", input, "pod2");
    // Same key, TTL 1: hits, but is answered with time exceeded.
    let expiring = pod_udp(1, pod_ip(2), 1, PAYLOAD);
    let err = send_expect_one(&mut h, "pod1", expiring, "pod1");
    assert_eq!(icmp_of(&err).ty, 11);
    // Same key, too big for pod2's MTU (DF set by etherparse's builder).
    let big = pod_udp(1, pod_ip(2), 64, &[7; 1500]);
    let err = send_expect_one(&mut h, "pod1", big, "pod1");
    let msg = icmp_of(&err);
    assert_eq!((msg.ty, msg.code), (3, 4));
    assert_eq!(h.flow_counts(), (1, 1, 2));
    assert_eq!(only_flow(&table).packets, 3);
    h.assert_no_frame_leak();
}

// ---------------------------------------------------------------------------
// 3. Into the overlay.

#[test]
fn pod_to_remote_pod_hit_encapsulates_too() {
    let mut h = Harness::new();
    let table = h.enable_flow_cache(1024);
    let input = pod_udp(1, REMOTE_POD, 64, PAYLOAD);
    let mut outs = Vec::new();
    for _ in 0..2 {
        let out = send_expect_one(&mut h, "pod1", input.clone(), "uplink");
        let inner = vxlan_inner_to_node2(&out);
        assert_eq!(inner.len(), input.len());
        let routed = routed_frame(&input, VTEP_MAC, REMOTE_VTEP_MAC);
        assert_eq!(inner, routed, "inner frame: the packet, routed");
        assert_eq!(ipv4_of(&inner), (pod_ip(1), REMOTE_POD, 63));
        outs.push(out);
    }
    assert_eq!(outs[0], outs[1], "the hit sends the same bytes");
    assert_eq!(h.flow_counts(), (1, 1, 1));
    let c = h.counters();
    assert_eq!((c.vxlan_encap, c.routed, c.total_drops()), (2, 2, 0));
    let flow = only_flow(&table);
    let snap = h.worker.pipeline.snapshot().clone();
    assert_eq!(hop_of(&flow, &snap), NextHop::Remote { remote: 0 });
    let d = flow_cache::describe(&flow, &snap, h.now_ns).unwrap();
    assert_eq!(d.actions, "dec_ttl,vxlan:node2");
    assert_eq!((d.packets, d.bytes), (2, 2 * input.len() as u64));
    h.assert_no_frame_leak();
}

// ---------------------------------------------------------------------------
// 4. A new snapshot.

const NEW_ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xfe, 0x09];
const EXTERNAL2: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 10);

/// The test state with the static route moved to `NEW_ROUTER_MAC` and a
/// rule that matches only UDP to pod3.
fn changed_state() -> DesiredState {
    let mut s = state_with_rules(&["priority=100,udp,nw_dst=10.244.1.13 actions=output:pod3"]);
    s.routes[0].next_hop_mac = MacAddr(NEW_ROUTER_MAC);
    s
}

#[test]
fn new_snapshot_never_uses_stale_flow_and_revalidation_keeps_unchanged_ones() {
    let mut h = Harness::new();
    let table = h.enable_flow_cache(1024);
    let to_pod2 = pod_udp(1, pod_ip(2), 64, PAYLOAD);
    let to_pod3 = pod_udp(1, pod_ip(3), 64, PAYLOAD);
    let to_ext = pod_udp(1, EXTERNAL, 64, PAYLOAD);
    let to_ext2 = pod_udp(1, EXTERNAL2, 64, PAYLOAD);
    let to_remote = pod_udp(1, REMOTE_POD, 64, PAYLOAD);
    let all = [&to_pod2, &to_pod3, &to_ext, &to_ext2, &to_remote];
    for f in all {
        h.send("pod1", f.clone());
    }
    h.all_sent();
    assert_eq!(h.flow_counts(), (5, 5, 0));
    assert_eq!(table.len(), 5);

    let (old, new) = h.switch_state(&changed_state(), 2);

    // The flow to EXTERNAL was cached toward ROUTER_MAC; under generation
    // 2 the packet takes the new route.
    let out = send_expect_one(&mut h, "pod1", to_ext.clone(), "uplink");
    assert_eq!(out, routed_frame(&to_ext, UPLINK_MAC, NEW_ROUTER_MAC));
    assert_eq!(h.flow_counts(), (6, 6, 0), "a miss, not a stale hit");
    let ext = flow_to(&table, EXTERNAL).unwrap();
    assert_eq!(ext.value.generation(), 2);
    assert_eq!(ext.packets, 2, "the flow's counters carry on");

    let swept = flow_cache::revalidate(&table, &old, &new);
    // pod2 and the remote pod: unchanged, re-tagged. pod3 (now a rule) and
    // EXTERNAL2 (new next-hop MAC): removed. EXTERNAL: already current.
    assert_eq!(
        swept,
        flow_cache::Revalidated {
            kept: 2,
            removed: 2
        }
    );
    assert_eq!(table.len(), 3);
    assert!(flow_to(&table, pod_ip(3)).is_none());
    assert!(flow_to(&table, EXTERNAL2).is_none());
    for dst in [pod_ip(2), EXTERNAL, REMOTE_POD] {
        let f = flow_to(&table, dst).unwrap();
        assert_eq!(f.value.generation(), 2, "{dst} re-tagged");
        assert_eq!(flow_cache::decide(&new, &f.key), Some(action_of(&f)));
    }
    assert_eq!(
        flow_to(&table, pod_ip(2)).unwrap().packets,
        1,
        "counters kept"
    );

    // Kept flows hit at once.
    let before = h.flow_counts();
    let out = send_expect_one(&mut h, "pod1", to_pod2.clone(), "pod2");
    assert_eq!(out, routed_frame(&to_pod2, GW_MAC, pod_mac(2)));
    let out = send_expect_one(&mut h, "pod1", to_remote.clone(), "uplink");
    assert_eq!(
        vxlan_inner_to_node2(&out),
        routed_frame(&to_remote, VTEP_MAC, REMOTE_VTEP_MAC)
    );
    let out = send_expect_one(&mut h, "pod1", to_ext.clone(), "uplink");
    assert_eq!(out, routed_frame(&to_ext, UPLINK_MAC, NEW_ROUTER_MAC));
    assert_eq!(h.flow_counts(), (before.0, before.1, before.2 + 3));

    // Removed flows take the slow path: the rule for pod3 (output as is),
    // the new route for EXTERNAL2; then they hit.
    for _ in 0..2 {
        let out = send_expect_one(&mut h, "pod1", to_pod3.clone(), "pod3");
        assert_eq!(out, to_pod3, "the rule outputs the frame unchanged");
        let out = send_expect_one(&mut h, "pod1", to_ext2.clone(), "uplink");
        assert_eq!(out, routed_frame(&to_ext2, UPLINK_MAC, NEW_ROUTER_MAC));
    }
    assert_eq!(h.flow_counts(), (before.0 + 2, before.1 + 2, before.2 + 5));
    assert!(matches!(
        action_of(&flow_to(&table, pod_ip(3)).unwrap()),
        CachedAction::Rule { .. }
    ));

    // A snapshot that changes nothing keeps every flow.
    let (old, new) = h.switch_state(&changed_state(), 3);
    let swept = flow_cache::revalidate(&table, &old, &new);
    assert_eq!(
        swept,
        flow_cache::Revalidated {
            kept: 5,
            removed: 0
        }
    );
    let before = h.flow_counts();
    for f in all {
        h.send("pod1", f.clone());
    }
    assert_eq!(h.all_sent().len(), 5);
    assert_eq!(h.flow_counts(), (before.0, before.1, before.2 + 5));
    h.assert_no_frame_leak();
}

#[test]
fn revalidation_drops_flows_of_older_generations_and_changed_ports() {
    let mut h = Harness::new();
    let table = h.enable_flow_cache(1024);
    h.send("pod1", pod_udp(1, pod_ip(2), 64, PAYLOAD));
    h.send("pod2", pod_udp(2, pod_ip(1), 64, PAYLOAD));
    h.all_sent();
    assert_eq!(table.len(), 2);
    // pod2 gets another address: its port's role changes.
    let mut s = state();
    if let xvs_control::state::PortKind::Pod { ip, .. } = &mut s.ports[1].kind {
        *ip = Ipv4Addr::new(10, 244, 1, 50);
    }
    let (old, new) = h.switch_state(&s, 2);
    let swept = flow_cache::revalidate(&table, &old, &new);
    // pod1 -> pod2's old address: the /32 is gone (host unreachable now);
    // pod2's flow: its port's role changed.
    assert_eq!(
        swept,
        flow_cache::Revalidated {
            kept: 0,
            removed: 2
        }
    );
    // A sweep from a generation the table does not hold removes all.
    h.send("pod1", pod_udp(1, pod_ip(3), 64, PAYLOAD));
    h.all_sent();
    let stale = Snapshot::compile(&state(), 1).unwrap();
    let newer = Snapshot::compile(&state(), 5).unwrap();
    assert_eq!(table.len(), 1);
    let swept = flow_cache::revalidate(&table, &stale, &newer);
    assert_eq!(
        swept,
        flow_cache::Revalidated {
            kept: 0,
            removed: 1
        }
    );
    assert!(table.is_empty());
}

// ---------------------------------------------------------------------------
// 5. With and without the cache, the same.

/// Sources of the property test: the pods, then the uplink.
const SOURCES: [&str; 4] = ["pod1", "pod2", "pod3", "uplink"];

/// Destinations of the property test.
const DESTINATIONS: [Ipv4Addr; 9] = [
    Ipv4Addr::new(10, 244, 1, 11),
    Ipv4Addr::new(10, 244, 1, 12),
    Ipv4Addr::new(10, 244, 1, 13),
    REMOTE_POD,
    EXTERNAL,
    Ipv4Addr::new(172, 16, 5, 5),
    GATEWAY,
    UNASSIGNED,
    UNROUTABLE,
];

/// Rules the property test picks from.
const RULES: [&str; 9] = [
    "priority=100,in_port=pod1,udp,tp_dst=5001 actions=output:pod3",
    "priority=90,udp,nw_dst=10.244.2.0/24 actions=normal",
    "priority=80,icmp actions=drop",
    "priority=70,tcp,nw_dst=172.16.0.0/16 actions=vxlan:node2",
    "priority=60,dl_src=02:00:00:00:01:02 actions=output:pod1",
    "priority=10,ip actions=mod_dl_dst:ee:ee:ee:ee:ee:ee,normal",
    "priority=50,tcp actions=output:pod2,output:pod3",
    "priority=40,in_port=uplink,udp actions=mod_vlan_vid:5,output:br1",
    "priority=95,udp,nw_src=10.244.1.13,tp_src=40001 actions=normal",
];

/// One flow of the property test.
#[derive(Debug, Clone)]
struct FlowSpec {
    source: usize,
    spoofed: bool,
    dst: usize,
    /// 0 UDP, 1 TCP, 2 ICMP echo.
    proto: u8,
    sport: u16,
    ttl: u8,
    /// 0 not a fragment, 1 first fragment, 2 later fragment.
    fragment: u8,
}

fn flow_spec() -> impl Strategy<Value = FlowSpec> {
    (
        0..SOURCES.len(),
        prop::bool::weighted(0.15),
        0..DESTINATIONS.len(),
        0..3u8,
        prop_oneof![Just(40000u16), Just(40001u16)],
        prop_oneof![4 => Just(64u8), 1 => Just(1u8)],
        prop_oneof![6 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
    )
        .prop_map(
            |(source, spoofed, dst, proto, sport, ttl, fragment)| FlowSpec {
                source,
                spoofed,
                dst,
                proto,
                sport,
                ttl,
                fragment,
            },
        )
}

impl FlowSpec {
    fn port(&self) -> &'static str {
        SOURCES[self.source]
    }

    /// A packet of the flow; `seq` varies the payload; `other_mac` gives a
    /// pod's packet another source MAC (same flow key, other dl_src).
    fn frame(&self, seq: u16, other_mac: bool) -> Vec<u8> {
        let (src_mac, dst_mac, src) = match self.source {
            3 => (
                ROUTER_MAC,
                UPLINK_MAC,
                if self.spoofed { pod_ip(1) } else { EXTERNAL },
            ),
            n => {
                let n = u8::try_from(n).unwrap() + 1;
                let src = if self.spoofed {
                    pod_ip(n % 3 + 1)
                } else {
                    pod_ip(n)
                };
                let mac = if other_mac {
                    [0x02, 0, 0, 0, 0x01, n + 0x10]
                } else {
                    pod_mac(n)
                };
                (mac, GW_MAC, src)
            }
        };
        let dst = DESTINATIONS[self.dst];
        let payload = [seq.to_be_bytes().as_slice(), PAYLOAD].concat();
        if self.fragment > 0 {
            let first = self.fragment == 1;
            let ip = fragment_header(src, dst, self.ttl, 99, first, if first { 0 } else { 4 });
            return raw_ipv4(
                src_mac,
                dst_mac,
                ip,
                &[&[0x9c, 0x40, 0x13, 0x89, 0, 64, 0, 0], &payload[..]].concat(),
            );
        }
        let b =
            PacketBuilder::ethernet2(src_mac, dst_mac).ipv4(src.octets(), dst.octets(), self.ttl);
        let mut out = Vec::new();
        match self.proto {
            0 => {
                let b = b.udp(self.sport, 5001);
                b.write(&mut out, &payload).unwrap();
            }
            1 => {
                let b = b.tcp(self.sport, 80, u32::from(seq), 64240).syn();
                b.write(&mut out, &payload).unwrap();
            }
            _ => {
                let b = b.icmpv4_echo_request(0x1234, seq);
                b.write(&mut out, &payload).unwrap();
            }
        }
        out
    }
}

/// The property: the same frames through a harness with the cache and one
/// without give the same frames per port and the same counters. Returns the
/// counters of the one with the cache.
fn same_with_and_without_cache(
    rules: u16,
    flows: &[FlowSpec],
    sequence: &[(usize, bool, bool)],
) -> Result<Counters, TestCaseError> {
    let chosen: Vec<&str> = RULES
        .iter()
        .enumerate()
        .filter(|(i, _)| rules & (1 << i) != 0)
        .map(|(_, r)| *r)
        .collect();
    let s = state_with_rules(&chosen);
    let mut cached = Harness::with(s.clone(), Default::default());
    cached.enable_flow_cache(256);
    let mut plain = Harness::with(s, Default::default());
    for (seq, &(flow, other_mac, run)) in sequence.iter().enumerate() {
        let spec = &flows[flow % flows.len()];
        let frame = spec.frame(u16::try_from(seq).unwrap(), other_mac);
        cached.port(spec.port()).inject(frame.clone());
        plain.port(spec.port()).inject(frame);
        if run || seq + 1 == sequence.len() {
            cached.run();
            plain.run();
            for name in PORTS {
                let (a, b) = (cached.sent(name), plain.sent(name));
                prop_assert_eq!(a, b, "output on {} after packet {}", name, seq);
            }
        }
    }
    prop_assert_eq!(
        without_flow_counts(cached.counters()),
        without_flow_counts(plain.counters())
    );
    cached.assert_no_frame_leak();
    plain.assert_no_frame_leak();
    Ok(cached.counters().clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn prop_cache_changes_nothing_but_speed(
        rules in prop_oneof![1 => Just(0u16), 3 => 0u16..(1 << RULES.len())],
        flows in prop::collection::vec(flow_spec(), 1..8),
        sequence in prop::collection::vec(
            (0usize..8, prop::bool::weighted(0.2), prop::bool::weighted(0.3)),
            1..40,
        ),
    ) {
        same_with_and_without_cache(rules, &flows, &sequence)?;
    }
}

#[test]
fn cache_equivalence_sees_hits() {
    // The property's generator must make the cache work: a fixed case
    // whose flows repeat, with and without rules.
    let flows: Vec<FlowSpec> = (0..DESTINATIONS.len())
        .map(|dst| FlowSpec {
            source: dst % SOURCES.len(),
            spoofed: false,
            dst,
            proto: u8::try_from(dst % 3).unwrap(),
            sport: 40000,
            ttl: 64,
            fragment: 0,
        })
        .collect();
    let sequence: Vec<(usize, bool, bool)> = (0..40)
        .map(|i| (i % flows.len(), i % 7 == 0, i % 5 == 0))
        .collect();
    for rules in [0, 0b1_0000_0011, 0b0_1100_1101] {
        let c = same_with_and_without_cache(rules, &flows, &sequence).unwrap();
        assert!(c.flow_hits >= 20, "rules {rules:#b}: {} hits", c.flow_hits);
        assert!(c.flows_added > 0);
    }
}

// ---------------------------------------------------------------------------
// 6. The key says everything a cached decision may read.

#[derive(Debug, Clone)]
struct RawSpec {
    in_port: u16,
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: u32,
    dst: u32,
    proto: u8,
    ports: (u16, u16),
    ttl: u8,
    option_words: u8,
    more_frags: bool,
    frag_offset: u16,
    tcp_offset_words: u8,
    payload: usize,
    cut: Option<usize>,
    mutations: Vec<(usize, u8)>,
}

fn raw_spec() -> impl Strategy<Value = RawSpec> {
    (
        (
            0u16..8,
            prop_oneof![Just(GW_MAC), Just(UPLINK_MAC), any::<[u8; 6]>()],
            any::<[u8; 6]>(),
            any::<u32>(),
            any::<u32>(),
            prop_oneof![Just(6u8), Just(17u8), Just(1u8), any::<u8>()],
            any::<(u16, u16)>(),
            any::<u8>(),
        ),
        (
            prop_oneof![3 => Just(0u8), 1 => 0u8..11],
            prop::bool::weighted(0.1),
            prop_oneof![8 => Just(0u16), 1 => 0u16..0x2000],
            prop_oneof![3 => Just(5u8), 1 => 0u8..16],
            0usize..40,
            prop::option::weighted(0.2, 0usize..100),
            prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        ),
    )
        .prop_map(
            |(
                (in_port, dst_mac, src_mac, src, dst, proto, ports, ttl),
                (option_words, more_frags, frag_offset, tcp_offset_words, payload, cut, mutations),
            )| RawSpec {
                in_port,
                dst_mac,
                src_mac,
                src,
                dst,
                proto,
                ports,
                ttl,
                option_words,
                more_frags,
                frag_offset,
                tcp_offset_words,
                payload,
                cut,
                mutations,
            },
        )
}

impl RawSpec {
    /// The frame: Ethernet, IPv4 (options zero), the L4 header the protocol
    /// calls for, payload; then cut short and mutated.
    fn frame(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        match self.proto {
            6 => {
                let mut tcp = [0u8; 20];
                tcp[0..2].copy_from_slice(&self.ports.0.to_be_bytes());
                tcp[2..4].copy_from_slice(&self.ports.1.to_be_bytes());
                tcp[12] = self.tcp_offset_words << 4;
                l4.extend_from_slice(&tcp);
            }
            17 => {
                l4.extend_from_slice(&self.ports.0.to_be_bytes());
                l4.extend_from_slice(&self.ports.1.to_be_bytes());
                l4.extend_from_slice(&u16::try_from(8 + self.payload).unwrap().to_be_bytes());
                l4.extend_from_slice(&[0, 0]);
            }
            _ => {}
        }
        l4.extend((0..self.payload).map(|i| u8::try_from(i).unwrap()));
        let ihl = 5 + usize::from(self.option_words);
        let total = ihl * 4 + l4.len();
        let mut f = Vec::new();
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f.push(0x40 | u8::try_from(ihl).unwrap());
        f.push(0);
        f.extend_from_slice(&u16::try_from(total).unwrap().to_be_bytes());
        f.extend_from_slice(&[0x12, 0x34]);
        let flags = u16::from(self.more_frags) << 13 | self.frag_offset;
        f.extend_from_slice(&flags.to_be_bytes());
        f.push(self.ttl);
        f.push(self.proto);
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&self.src.to_be_bytes());
        f.extend_from_slice(&self.dst.to_be_bytes());
        f.resize(14 + ihl * 4, 0);
        fix_ipv4_checksum(&mut f, 14);
        f.extend_from_slice(&l4);
        if let Some(cut) = self.cut {
            f.truncate(cut);
        }
        if !f.is_empty() {
            let len = f.len();
            for &(at, byte) in &self.mutations {
                f[at % len] = byte;
            }
        }
        f
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn prop_key_fields_agree_with_parsed_fields(spec in raw_spec()) {
        let frame = spec.frame();
        // flow_key's caller (ethernet-input) hands it untagged IPv4 frames
        // only, the IPv4 header at offset 14.
        prop_assume!(frame.get(12..14) == Some(&ETHERTYPE_IPV4.to_be_bytes()[..]));
        if let Some(key) = flow_key(spec.in_port, &frame, 14) {
            let parsed = Fields::parse(spec.in_port, &frame).expect("an Ethernet header");
            let mut dl_dst = [0; 6];
            dl_dst.copy_from_slice(&frame[..6]);
            let from_key = fields_of_key(&key, MacAddr(dl_dst)).expect("an IPv4 key");
            prop_assert_eq!(
                Fields { dl_src: MacAddr::default(), ..parsed },
                from_key
            );
        }
    }
}

#[test]
fn key_of_valid_frames_exists_and_matches() {
    // The property above is not vacuous: well-formed frames have keys.
    let frames = [
        pod_udp(1, pod_ip(2), 64, PAYLOAD),
        tcp_syn(pod_mac(1), GW_MAC, pod_ip(1), EXTERNAL, 64),
        ping(pod_mac(1), GW_MAC, pod_ip(1), REMOTE_POD, 64, 3),
    ];
    for f in &frames {
        let key = flow_key(0, f, 14).expect("a key");
        let parsed = Fields::parse(0, f).unwrap();
        assert_eq!(
            Fields {
                dl_src: MacAddr::default(),
                ..parsed
            },
            fields_of_key(&key, MacAddr(GW_MAC)).unwrap()
        );
    }
    let key = flow_key(0, &frames[0], 14).unwrap();
    assert_eq!(key.tuple().proto, IP_PROTO_UDP);
    assert_eq!((key.tuple().src_port, key.tuple().dst_port), (40000, 5001));
    let p = parse_checked(&frames[1]);
    assert!(matches!(p.net, Some(NetSlice::Ipv4(_))));
}
