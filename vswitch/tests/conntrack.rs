//! Connection tracking of routed traffic at the pipeline level: a pod's
//! TCP connection to a pod on this node, and to a pod behind the overlay
//! whose answers arrive encapsulated, both seen both ways; the switch's own
//! answers (an echo reply from the gateway) are not connections.

mod common;
use common::*;

use std::sync::Arc;

use etherparse::PacketBuilder;
use xvs_flowtable::{Conntrack, CtState, TcpState, Timeouts};

fn tcp(
    src: ([u8; 6], std::net::Ipv4Addr, u16),
    dst: ([u8; 6], std::net::Ipv4Addr, u16),
    syn: bool,
    ack: bool,
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4(src.1.octets(), dst.1.octets(), 64)
        .tcp(src.2, dst.2, 1000, 64240);
    if syn {
        b = b.syn();
    }
    if ack {
        b = b.ack(1);
    }
    let mut out = Vec::with_capacity(b.size(0));
    b.write(&mut out, &[]).unwrap();
    out
}

fn tracking() -> (Harness, Arc<Conntrack>) {
    let mut h = Harness::new();
    let ct = Arc::new(Conntrack::new(1024, Timeouts::default()));
    h.worker.pipeline.set_conntrack(Arc::clone(&ct));
    (h, ct)
}

fn only_connection(ct: &Conntrack) -> xvs_flowtable::CtView {
    let mut all = Vec::new();
    ct.for_each(|c| all.push(*c));
    assert_eq!(all.len(), 1, "{all:?}");
    all[0]
}

#[test]
fn a_handshake_between_two_local_pods_is_tracked_both_ways() {
    let (mut h, ct) = tracking();
    let pod1 = (pod_mac(1), pod_ip(1), 40001);
    let pod2 = (pod_mac(2), pod_ip(2), 80);
    send_expect_one(
        &mut h,
        "pod1",
        tcp(pod1, (GW_MAC, pod2.1, 80), true, false),
        "pod2",
    );
    let c = only_connection(&ct);
    assert!(!c.seen_reply);
    send_expect_one(
        &mut h,
        "pod2",
        tcp(pod2, (GW_MAC, pod1.1, 40001), true, true),
        "pod1",
    );
    send_expect_one(
        &mut h,
        "pod1",
        tcp(pod1, (GW_MAC, pod2.1, 80), false, true),
        "pod2",
    );
    let c = only_connection(&ct);
    assert!(c.seen_reply, "the SYN/ACK was seen as the reply");
    assert_eq!(c.state, CtState::Tcp(TcpState::Established));
    assert_eq!(h.counters().ct_created, 1);
}

#[test]
fn answers_from_the_overlay_reach_the_connection_of_a_local_pod() {
    let (mut h, ct) = tracking();
    let pod1 = (pod_mac(1), pod_ip(1), 40001);
    send_expect_one(
        &mut h,
        "pod1",
        tcp(pod1, (GW_MAC, REMOTE_POD, 5202), true, false),
        "uplink",
    );
    // The remote pod's SYN/ACK, encapsulated by its node.
    let inner = tcp(
        (REMOTE_VTEP_MAC, REMOTE_POD, 5202),
        (VTEP_MAC, pod1.1, 40001),
        true,
        true,
    );
    send_expect_one(&mut h, "uplink", vxlan_from_remote(&inner, VNI), "pod1");
    let c = only_connection(&ct);
    assert!(c.seen_reply, "the decapsulated answer counts: {c:?}");
    assert_eq!(c.state, CtState::Tcp(TcpState::SynRecv));
}

#[test]
fn the_switch_own_answers_are_not_connections() {
    let (mut h, ct) = tracking();
    send_expect_one(
        &mut h,
        "pod1",
        ping(pod_mac(1), GW_MAC, pod_ip(1), GATEWAY, 64, 1),
        "pod1",
    );
    let mut n = 0;
    ct.for_each(|_| n += 1);
    assert_eq!(n, 0, "an echo to the gateway is answered, not routed");
}
