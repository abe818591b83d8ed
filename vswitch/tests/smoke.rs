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

/// A worker over `ports` memory ports for the harness state's snapshot
/// (which has seven ports).
fn worker_with_ports(ports: usize) {
    use std::sync::Arc;
    use xvs_vswitch::packet::HeapFramePool;
    use xvs_vswitch::pipeline::PipelineConfig;
    use xvs_vswitch::port::MemoryPort;
    use xvs_vswitch::snapshot::Snapshot;
    use xvs_vswitch::worker::Worker;

    let snapshot = Arc::new(Snapshot::compile(&state(), 1).unwrap());
    assert_eq!(snapshot.ports.len(), 7);
    let ports = (0..ports).map(|_| MemoryPort::new()).collect();
    let worker = Worker::new(
        HeapFramePool::new(8),
        ports,
        snapshot,
        PipelineConfig::default(),
    );
    assert_eq!(worker.ports.len(), 7);
}

#[test]
fn a_worker_with_one_port_per_snapshot_port_starts() {
    worker_with_ports(7);
}

#[test]
#[should_panic(expected = "one port per snapshot port")]
fn a_worker_with_too_few_ports_panics() {
    worker_with_ports(6);
}

#[test]
#[should_panic(expected = "one port per snapshot port")]
fn a_worker_with_too_many_ports_panics() {
    worker_with_ports(8);
}
