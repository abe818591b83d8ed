//! A worker's stage times: after in-memory traffic they account for every
//! packet and burst, each stage that ran has time, and stages that did not
//! run (empty bursts included) have none. No assertion on how long anything takes: only that the
//! parts fit in the wall time around them.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::*;
use xvs_vswitch::packet::HeapFramePool;
use xvs_vswitch::pipeline::PipelineConfig;
use xvs_vswitch::port::MemoryPort;
use xvs_vswitch::snapshot::Snapshot;
use xvs_vswitch::worker::{StageTimes, Worker, BATCH_BUCKETS};

type MemWorker = Worker<HeapFramePool, MemoryPort>;

fn total_ns(t: &StageTimes) -> u64 {
    t.busy_ns() + t.idle_ns
}

#[test]
fn one_worker_times_its_stages() {
    let mut h = Harness::new();
    for i in 0..100u8 {
        h.port("pod1").inject(pod_udp(1, pod_ip(2), 64, &[i]));
    }
    let wall = Instant::now();
    h.run();
    let elapsed = wall.elapsed().as_nanos();
    assert_eq!(h.sent("pod2").len(), 100);

    let t = h.worker.times;
    // Bursts of 64 and 36, then a round that found nothing.
    assert_eq!((t.packets, t.busy_polls, t.idle_polls), (100, 2, 1));
    let mut batches = [0; BATCH_BUCKETS];
    batches[6] = 1;
    batches[5] = 1;
    assert_eq!(t.batches, batches);
    assert!(
        t.rx_ns > 0 && t.pipeline_ns > 0 && t.tx_ns > 0 && t.idle_ns > 0,
        "{t:?}"
    );
    assert_eq!(t.handoff_ns, 0, "no other worker to hand off to");
    assert!(u128::from(total_ns(&t)) <= elapsed, "{t:?} in {elapsed} ns");
    h.assert_no_frame_leak();
}

#[test]
fn hand_offs_are_timed_on_both_sides() {
    // Worker 0 reaches pod2 through worker 1, which serves every port.
    let snapshot = Arc::new(Snapshot::compile(&state(), 1).unwrap());
    let (slots0, slots1, inbox1) = slots_through_worker1(&snapshot, "pod2");
    let pod2 = usize::from(snapshot.port_id("pod2").unwrap());
    let worker = |slots, inbox| -> MemWorker {
        Worker::with_handoff(
            HeapFramePool::new(POOL_FRAMES),
            slots,
            inbox,
            snapshot.clone(),
            PipelineConfig::default(),
        )
    };
    let (mut w0, mut w1) = (worker(slots0, None), worker(slots1, Some(inbox1)));
    let pod1 = snapshot.port_id("pod1").unwrap();
    for i in 0..10u8 {
        w0.local_port_mut(pod1)
            .unwrap()
            .inject(pod_udp(1, pod_ip(2), 64, &[i]));
    }

    let wall = Instant::now();
    assert_eq!(w0.poll(1), 10);
    assert_eq!(w1.poll(1), 10);
    let elapsed = wall.elapsed().as_nanos();

    let (t0, t1) = (w0.times, w1.times);
    // The sender received, processed and handed off; it sent nothing.
    assert_eq!((t0.packets, t0.busy_polls, t0.batches[3]), (10, 1, 1));
    assert!(
        t0.rx_ns > 0 && t0.pipeline_ns > 0 && t0.handoff_ns > 0,
        "{t0:?}"
    );
    assert_eq!(t0.tx_ns, 0, "{t0:?}");
    // The receiver took the parcel in and sent it; no burst, no pipeline.
    assert_eq!((t1.packets, t1.busy_polls), (10, 1));
    assert_eq!(t1.batches, [0; BATCH_BUCKETS]);
    assert!(t1.handoff_ns > 0 && t1.tx_ns > 0, "{t1:?}");
    assert_eq!((t1.rx_ns, t1.pipeline_ns), (0, 0), "{t1:?}");
    assert!(
        u128::from(total_ns(&t0) + total_ns(&t1)) <= elapsed,
        "{t0:?} and {t1:?} in {elapsed} ns"
    );
    let out = w1
        .local_port_mut(pod2.try_into().unwrap())
        .unwrap()
        .take_sent();
    assert_eq!(out.len(), 10);
}
