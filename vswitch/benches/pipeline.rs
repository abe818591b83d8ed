//! ns per packet through the pipeline, per path, at batch 32 and 64.
//!
//! Each iteration does what a worker does with one received burst, minus
//! the port I/O: refill `batch` frames from templates (the pipeline rewrites
//! frames in place, so each round needs fresh ones, as a NIC would deliver),
//! run `Pipeline::process`, and return the transmitted frames to the pool.
//! The `baseline` row does the refill and the return without the pipeline,
//! in the same run, so `path - baseline` is the pipeline's own cost.
//! Frames are 64 bytes on the wire (60 without FCS); each packet of a batch
//! is a different flow (source port), as on a real link. The topology and
//! the frame builders are the pipeline tests' (tests/common): pods
//! pod1..pod3, an uplink with the overlay to node2, bridge domain 7.
//!
//! The `_cached` rows run with xvsd's flow cache and conntrack, every
//! flow already cached: the fast path; the others are the slow path alone
//! (no cache, no conntrack), what every packet costs without them.
//!
//! `make bench` runs this and prints the table (perf/src/bin/bench-table.rs).

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use common::{
    min_udp, pod_ip, pod_mac, state, vxlan_from_remote_port, GW_MAC, REMOTE_POD, REMOTE_VTEP_MAC,
    VNI, VTEP_MAC,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use xvs_flowtable::{Conntrack, FlowTable, Timeouts};
use xvs_vswitch::packet::{FramePool, HeapFramePool};
use xvs_vswitch::pipeline::{Pipeline, PipelineConfig};
use xvs_vswitch::port::{Batch, PortId};
use xvs_vswitch::snapshot::Snapshot;

/// Two hosts behind the bridge: A on br1, B on br2 (learned before the run).
const HOST_A: [u8; 6] = [2, 0, 0, 0, 0xaa, 1];
const HOST_B: [u8; 6] = [2, 0, 0, 0, 0xbb, 1];

struct Path {
    name: &'static str,
    in_port: &'static str,
    frame: fn(u16) -> Vec<u8>,
    /// Whether to run the pipeline (false: the baseline).
    process: bool,
    /// With xvsd's flow cache and conntrack (flows warmed up: every
    /// measured packet hits), or the bare slow path.
    cached: bool,
    /// With [`RULES`] flow rules that the packets do not match (the
    /// classifier scans them all on the slow path).
    rules: bool,
}

/// Rules a service chain might have, none matching the measured packets.
const RULES: usize = 16;

const PATHS: &[Path] = &[
    Path {
        name: "baseline",
        in_port: "pod1",
        frame: |i| min_udp(pod_mac(1), GW_MAC, pod_ip(1), pod_ip(2), i),
        process: false,
        cached: false,
        rules: false,
    },
    Path {
        name: "l2_forward",
        in_port: "br1",
        frame: |i| min_udp(HOST_A, HOST_B, pod_ip(1), pod_ip(2), i),
        process: true,
        cached: false,
        rules: false,
    },
    Path {
        name: "l3_forward",
        in_port: "pod1",
        frame: |i| min_udp(pod_mac(1), GW_MAC, pod_ip(1), pod_ip(2), i),
        process: true,
        cached: false,
        rules: false,
    },
    Path {
        name: "vxlan_encap",
        in_port: "pod1",
        frame: |i| min_udp(pod_mac(1), GW_MAC, pod_ip(1), REMOTE_POD, i),
        process: true,
        cached: false,
        rules: false,
    },
    Path {
        name: "vxlan_decap",
        in_port: "uplink",
        frame: |i| {
            let inner = min_udp(REMOTE_VTEP_MAC, VTEP_MAC, REMOTE_POD, pod_ip(2), i);
            vxlan_from_remote_port(&inner, VNI, 50000 + i)
        },
        process: true,
        cached: false,
        rules: false,
    },
    Path {
        name: "l3_forward_cached",
        in_port: "pod1",
        frame: |i| min_udp(pod_mac(1), GW_MAC, pod_ip(1), pod_ip(2), i),
        process: true,
        cached: true,
        rules: false,
    },
    Path {
        name: "vxlan_encap_cached",
        in_port: "pod1",
        frame: |i| min_udp(pod_mac(1), GW_MAC, pod_ip(1), REMOTE_POD, i),
        process: true,
        cached: true,
        rules: false,
    },
    Path {
        name: "l3_forward_rules",
        in_port: "pod1",
        frame: |i| min_udp(pod_mac(1), GW_MAC, pod_ip(1), pod_ip(2), i),
        process: true,
        cached: false,
        rules: true,
    },
    Path {
        name: "l3_forward_rules_cached",
        in_port: "pod1",
        frame: |i| min_udp(pod_mac(1), GW_MAC, pod_ip(1), pod_ip(2), i),
        process: true,
        cached: true,
        rules: true,
    },
];

fn bench(c: &mut Criterion) {
    let plain = Arc::new(Snapshot::compile(&state(), 1).unwrap());
    let mut with_rules = state();
    with_rules.rules = (0..RULES)
        .map(|i| {
            format!(
                "priority={},in_port=pod2,tcp,tp_dst={} actions=drop",
                100 + i,
                8000 + i
            )
            .parse()
            .unwrap()
        })
        .collect();
    let with_rules = Arc::new(Snapshot::compile(&with_rules, 1).unwrap());
    let mut group = c.benchmark_group("pipeline");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for path in PATHS {
        let snapshot = if path.rules { &with_rules } else { &plain };
        for batch_size in [32u16, 64] {
            let in_port: PortId = snapshot.port_id(path.in_port).unwrap();
            let templates: Vec<Vec<u8>> = (0..batch_size).map(|i| (path.frame)(1000 + i)).collect();
            let mut pool = HeapFramePool::new(1024);
            let mut pipeline = Pipeline::new(Arc::clone(snapshot), PipelineConfig::default());
            if path.cached {
                pipeline.set_flow_cache(Arc::new(FlowTable::with_capacity(1 << 16)));
                pipeline.set_conntrack(Arc::new(Conntrack::new(1 << 16, Timeouts::default())));
                for t in &templates {
                    batch_of(&mut pool, t, &mut pipeline, in_port);
                }
            }
            // Teach the bridge where HOST_B lives so l2_forward is unicast.
            let mut batch = Batch::new();
            batch.push(
                pool.alloc_with(&min_udp(HOST_B, HOST_A, pod_ip(2), pod_ip(1), 1))
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
                pipeline.counters().total_drops(),
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
/// Runs `frame` through once (to cache its flow).
fn batch_of(pool: &mut HeapFramePool, frame: &[u8], pipeline: &mut Pipeline, in_port: PortId) {
    let mut batch = Batch::new();
    batch.push(pool.alloc_with(frame).unwrap());
    pipeline.process(pool, in_port, &mut batch, 0);
    drain(pipeline, pool);
}

fn drain(pipeline: &mut Pipeline, pool: &mut HeapFramePool) {
    for (_, queue) in pipeline.tx_queues() {
        for p in queue.drain(..) {
            pool.free(p.frame);
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
