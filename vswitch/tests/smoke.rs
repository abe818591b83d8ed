//! The harness itself works: pod to pod on one node.
mod common;
use common::*;

#[test]
fn pod_to_pod_udp_is_routed() {
    let mut h = Harness::new();
    h.send("pod1", pod_udp(1, pod_ip(2), 64, b"hello"));
    let out = h.sent("pod2");
    assert_eq!(out.len(), 1);
    let (src, dst, ttl) = ipv4_of(&out[0]);
    assert_eq!((src, dst, ttl), (pod_ip(1), pod_ip(2), 63));
    assert_eq!(macs_of(&out[0]), (GW_MAC, pod_mac(2)));
    assert_eq!(h.counters().total_drops(), 0);
    h.assert_no_frame_leak();
}
