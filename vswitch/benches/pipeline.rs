//! ns per packet through the pipeline, per path, at batch 32 and 64.
//!
//! Each iteration does what a worker does with one received burst, minus
//! the port I/O: refill `batch` frames from templates (the pipeline rewrites
//! frames in place, so each round needs fresh ones, as a NIC would deliver),
//! run `Pipeline::process`, and return the transmitted frames to the pool.
//! The `baseline` row does the refill and the return without the pipeline,
//! in the same run, so `path - baseline` is the pipeline's own cost.
//! Frames are 64 bytes on the wire (60 without FCS); each packet of a batch
//! is a different flow (source port), as on a real link.
//!
//! `make bench` runs this and prints the table (perf/src/bin/bench-table.rs).

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use etherparse::PacketBuilder;
use xvs_control::state::{
    DesiredState, MacAddr, NodeSpec, PortKind, PortSpec, RemoteNodeSpec, VxlanSpec,
    DEFAULT_GATEWAY_MAC,
};
use xvs_vswitch::packet::{FramePool, HeapFramePool};
use xvs_vswitch::pipeline::{Pipeline, PipelineConfig};
use xvs_vswitch::port::{Batch, PortId};
use xvs_vswitch::snapshot::Snapshot;

const GW: [u8; 6] = DEFAULT_GATEWAY_MAC.0;
const UPLINK_MAC: [u8; 6] = [2, 0, 0, 0, 0xff, 1];
const VTEP_MAC: [u8; 6] = [2, 0, 0, 0, 0xee, 1];
const REMOTE_VTEP_MAC: [u8; 6] = [2, 0, 0, 0, 0xee, 2];
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
const REMOTE_VTEP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
const HOST_A: [u8; 6] = [2, 0, 0, 0, 0xaa, 1];
const HOST_B: [u8; 6] = [2, 0, 0, 0, 0xbb, 1];

fn pod_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 1, 10 + n)
}
fn pod_mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 1, n]
}

/// pod1, pod2 (routed), uplink with VXLAN to node2, br1 and br2 (bridged).
fn state() -> DesiredState {
    let pod = |n: u8| PortSpec {
        name: format!("pod{n}"),
        kind: PortKind::Pod {
            ip: pod_ip(n),
            mac: MacAddr(pod_mac(n)),
        },
        mtu: 1450,
    };
    DesiredState {
        node: NodeSpec {
            node_ip: NODE_IP,
            pod_cidr: "10.244.1.0/24".parse().unwrap(),
            gateway_ip: Ipv4Addr::new(169, 254, 1, 1),
            gateway_mac: DEFAULT_GATEWAY_MAC,
            vxlan: Some(VxlanSpec {
                vni: 1,
                vtep_ip: NODE_IP,
                vtep_mac: MacAddr(VTEP_MAC),
                udp_port: 4789,
                uplink: "uplink".into(),
            }),
        },
        ports: vec![
            pod(1),
            pod(2),
            PortSpec {
                name: "uplink".into(),
                kind: PortKind::Uplink {
                    mac: MacAddr(UPLINK_MAC),
                },
                mtu: 1500,
            },
            PortSpec {
                name: "br1".into(),
                kind: PortKind::Bridged { domain: 1 },
                mtu: 1500,
            },
            PortSpec {
                name: "br2".into(),
                kind: PortKind::Bridged { domain: 1 },
                mtu: 1500,
            },
        ],
        routes: vec![],
        remote_nodes: vec![RemoteNodeSpec {
            name: "node2".into(),
            pod_cidr: "10.244.2.0/24".parse().unwrap(),
            vtep_ip: REMOTE_VTEP,
            vtep_mac: MacAddr(REMOTE_VTEP_MAC),
            underlay_mac: MacAddr([2, 0, 0, 0, 0xff, 2]),
        }],
        proxy_arp: vec![],
    }
}

/// A 60-byte Ethernet/IPv4/UDP frame (64 on the wire with FCS).
fn udp64(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, sport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(sport, 5001);
    let payload = [0u8; 18];
    let mut out = Vec::with_capacity(60);
    b.write(&mut out, &payload).unwrap();
    assert_eq!(out.len(), 60);
    out
}

/// `inner` inside VXLAN from node2 to us.
fn vxlan(inner: &[u8], sport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0xff, 2], UPLINK_MAC)
        .ipv4(REMOTE_VTEP.octets(), NODE_IP.octets(), 64)
        .udp(sport, 4789);
    let mut payload = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
    payload.extend_from_slice(inner);
    let mut out = Vec::new();
    b.write(&mut out, &payload).unwrap();
    out
}

struct Path {
    name: &'static str,
    in_port: &'static str,
    frame: fn(u16) -> Vec<u8>,
    /// Whether to run the pipeline (false: the baseline).
    process: bool,
}

const PATHS: &[Path] = &[
    Path {
        name: "baseline",
        in_port: "pod1",
        frame: |i| udp64(pod_mac(1), GW, pod_ip(1), pod_ip(2), i),
        process: false,
    },
    Path {
        name: "l2_forward",
        in_port: "br1",
        frame: |i| udp64(HOST_A, HOST_B, pod_ip(1), pod_ip(2), i),
        process: true,
    },
    Path {
        name: "l3_forward",
        in_port: "pod1",
        frame: |i| udp64(pod_mac(1), GW, pod_ip(1), pod_ip(2), i),
        process: true,
    },
    Path {
        name: "vxlan_encap",
        in_port: "pod1",
        frame: |i| udp64(pod_mac(1), GW, pod_ip(1), Ipv4Addr::new(10, 244, 2, 5), i),
        process: true,
    },
    Path {
        name: "vxlan_decap",
        in_port: "uplink",
        frame: |i| {
            vxlan(
                &udp64(
                    REMOTE_VTEP_MAC,
                    VTEP_MAC,
                    Ipv4Addr::new(10, 244, 2, 5),
                    pod_ip(2),
                    i,
                ),
                50000 + i,
            )
        },
        process: true,
    },
];

fn bench(c: &mut Criterion) {
    let snapshot = Arc::new(Snapshot::compile(&state(), 1).unwrap());
    let mut group = c.benchmark_group("pipeline");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for path in PATHS {
        for batch_size in [32u16, 64] {
            let in_port: PortId = snapshot.port_id(path.in_port).unwrap();
            let templates: Vec<Vec<u8>> = (0..batch_size).map(|i| (path.frame)(1000 + i)).collect();
            let mut pool = HeapFramePool::new(1024);
            let mut pipeline = Pipeline::new(Arc::clone(&snapshot), PipelineConfig::default());
            // Teach the bridge where HOST_B lives so l2_forward is unicast.
            let mut batch = Batch::new();
            batch.push(
                pool.alloc_with(&udp64(HOST_B, HOST_A, pod_ip(2), pod_ip(1), 1))
                    .unwrap(),
            );
            pipeline.process(&mut pool, snapshot.port_id("br2").unwrap(), &mut batch, 0);
            drain(&mut pipeline, &mut pool);

            group.throughput(Throughput::Elements(u64::from(batch_size)));
            group.bench_with_input(
                BenchmarkId::new(path.name, batch_size),
                &batch_size,
                |b, _| {
                    b.iter(|| {
                        for t in &templates {
                            batch.push(pool.alloc_with(t).unwrap());
                        }
                        if path.process {
                            pipeline.process(&mut pool, in_port, black_box(&mut batch), 1);
                            drain(&mut pipeline, &mut pool);
                        } else {
                            for p in batch.drain(..) {
                                pool.free(black_box(p).frame);
                            }
                        }
                    });
                },
            );
            // Each path must really take its path: everything transmitted,
            // nothing dropped (checked once, outside the timing).
            assert_eq!(
                pipeline.counters.total_drops(),
                0,
                "{} dropped packets",
                path.name
            );
            assert_eq!(pool.free_count(), pool.capacity());
        }
    }
    group.finish();
}

/// Returns every queued frame to the pool, as a port's tx completion would.
fn drain(pipeline: &mut Pipeline, pool: &mut HeapFramePool) {
    for (_, queue) in pipeline.tx_queues() {
        for p in queue.drain(..) {
            pool.free(p.frame);
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
