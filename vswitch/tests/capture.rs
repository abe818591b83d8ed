//! Capture taps on in-memory workers: a tap sees its port's received and
//! transmitted frames with their direction, all workers together stop at
//! the budget, a full channel costs counted drops (never a blocked
//! worker), a new snapshot interrupts the capture, and a worker with no
//! tap, or a tap on another port, forwards exactly as before.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use xvs_vswitch::capture::{Capture, CaptureResult, Direction};
use xvs_vswitch::packet::HeapFramePool;
use xvs_vswitch::pipeline::PipelineConfig;
use xvs_vswitch::port::{MemoryPort, PortId};
use xvs_vswitch::snapshot::Snapshot;
use xvs_vswitch::worker::Worker;

type MemWorker = Worker<HeapFramePool, MemoryPort>;

fn id(h: &Harness, name: &str) -> PortId {
    h.worker.pipeline.snapshot().port_id(name).unwrap()
}

/// Collects what the taps copied (they have all been given out).
fn collect(mut capture: Capture) -> CaptureResult {
    capture.collect(Duration::from_millis(50))
}

fn directions(r: &CaptureResult) -> Vec<Direction> {
    r.frames.iter().map(|f| f.direction).collect()
}

#[test]
fn a_tap_sees_what_its_port_receives_and_sends() {
    let mut h = Harness::new();
    let capture = Capture::new(id(&h, "pod1"), 100, 65535);
    h.worker.set_tap(capture.tap());
    let out = pod_udp(1, pod_ip(2), 64, b"pod1 to pod2");
    let back = pod_udp(2, pod_ip(1), 64, b"pod2 to pod1");
    h.send("pod1", out.clone());
    h.send("pod2", back);
    let sent = h.sent("pod1");
    assert_eq!(sent.len(), 1);
    let r = collect(capture);
    assert_eq!(directions(&r), [Direction::In, Direction::Out]);
    assert_eq!(r.frames[0].data, out, "received: as it came in");
    assert_eq!(r.frames[1].data, sent[0], "sent: as it went out");
    for f in &r.frames {
        assert_eq!(f.orig_len as usize, f.data.len());
        parse_checked(&f.data);
    }
    assert!(r.frames[0].timestamp_ns <= r.frames[1].timestamp_ns);
    assert_eq!((r.dropped, r.interrupted), (0, false));
    h.assert_no_frame_leak();
}

#[test]
fn a_snaplen_cuts_the_copy_not_the_length() {
    let mut h = Harness::new();
    let capture = Capture::new(id(&h, "pod2"), 10, 20);
    h.worker.set_tap(capture.tap());
    let frame = pod_udp(1, pod_ip(2), 64, &[7; 100]);
    h.send("pod1", frame);
    let sent = h.sent("pod2");
    let r = collect(capture);
    assert_eq!(r.frames.len(), 1);
    assert_eq!(r.frames[0].data, sent[0][..20]);
    assert_eq!(r.frames[0].orig_len as usize, sent[0].len());
}

/// Two workers serving pod1 (worker 0 receives on it, worker 1 sends out
/// of its own queue of it) share one budget.
#[test]
fn the_budget_is_shared_by_every_worker() {
    let snapshot = Arc::new(Snapshot::compile(&state(), 1).unwrap());
    let (slots0, slots1, inbox1) = slots_through_worker1(&snapshot, "pod2");
    let config = PipelineConfig::default();
    let mut w0: MemWorker = Worker::with_handoff(
        HeapFramePool::new(POOL_FRAMES),
        slots0,
        None,
        snapshot.clone(),
        config,
    );
    let mut w1: MemWorker = Worker::with_handoff(
        HeapFramePool::new(POOL_FRAMES),
        slots1,
        Some(inbox1),
        snapshot.clone(),
        config,
    );
    let pod1 = snapshot.port_id("pod1").unwrap();
    let pod2 = snapshot.port_id("pod2").unwrap();
    let capture = Capture::new(pod1, 5, 65535);
    w0.set_tap(capture.tap());
    w1.set_tap(capture.tap());
    for i in 0..4 {
        w0.local_port_mut(pod1)
            .unwrap()
            .inject(pod_udp(1, pod_ip(3), 64, &[i]));
        w1.local_port_mut(pod2)
            .unwrap()
            .inject(pod_udp(2, pod_ip(1), 64, &[i]));
    }
    w0.poll(1);
    w1.poll(1);
    assert_eq!(w1.local_port_mut(pod1).unwrap().sent.len(), 4);
    let r = collect(capture);
    assert_eq!(r.frames.len(), 5, "both workers together stop at 5");
    let ins = directions(&r)
        .iter()
        .filter(|d| **d == Direction::In)
        .count();
    assert_eq!(ins, 4, "worker 0 took 4, worker 1 what was left");
}

/// A packet handed to the worker that serves the port is captured there,
/// once, as it leaves.
#[test]
fn handed_off_packets_are_captured_where_they_leave() {
    let snapshot = Arc::new(Snapshot::compile(&state(), 1).unwrap());
    let (slots0, slots1, inbox1) = slots_through_worker1(&snapshot, "pod2");
    let config = PipelineConfig::default();
    let mut w0: MemWorker = Worker::with_handoff(
        HeapFramePool::new(POOL_FRAMES),
        slots0,
        None,
        snapshot.clone(),
        config,
    );
    let mut w1: MemWorker = Worker::with_handoff(
        HeapFramePool::new(POOL_FRAMES),
        slots1,
        Some(inbox1),
        snapshot.clone(),
        config,
    );
    let pod1 = snapshot.port_id("pod1").unwrap();
    let pod2 = snapshot.port_id("pod2").unwrap();
    let capture = Capture::new(pod2, 10, 65535);
    w0.set_tap(capture.tap());
    w1.set_tap(capture.tap());
    w0.local_port_mut(pod1)
        .unwrap()
        .inject(pod_udp(1, pod_ip(2), 64, b"over the hand-off"));
    w0.poll(1);
    w1.poll(1);
    let sent = w1.local_port_mut(pod2).unwrap().take_sent();
    assert_eq!(sent.len(), 1);
    let r = collect(capture);
    assert_eq!(directions(&r), [Direction::Out]);
    assert_eq!(r.frames[0].data, sent[0]);
}

#[test]
fn a_full_channel_drops_copies_counted_and_forwards_everything() {
    let mut h = Harness::new();
    let capture = Capture::with_channel(id(&h, "pod1"), 100, 65535, 3);
    h.worker.set_tap(capture.tap());
    for i in 0..10 {
        h.port("pod1").inject(pod_udp(1, pod_ip(2), 64, &[i]));
    }
    h.run();
    assert_eq!(h.sent("pod2").len(), 10, "capture never costs a packet");
    let r = collect(capture);
    assert_eq!((r.frames.len(), r.dropped), (3, 7));
    // The first three, in order: a dropped copy does not reorder the rest.
    for (i, f) in r.frames.iter().enumerate() {
        assert_eq!(
            f.data,
            pod_udp(1, pod_ip(2), 64, &[u8::try_from(i).unwrap()])
        );
    }
    h.assert_no_frame_leak();
}

#[test]
fn a_new_snapshot_interrupts_the_capture() {
    let mut h = Harness::new();
    let mut capture = Capture::new(id(&h, "pod1"), 100, 65535);
    h.worker.set_tap(capture.tap());
    h.send("pod1", pod_udp(1, pod_ip(2), 64, b"before"));
    let snapshot = Arc::new(Snapshot::compile(&state(), 2).unwrap());
    let ports = h
        .worker
        .take_ports()
        .into_iter()
        .map(|(_, slot, counters)| (slot, counters))
        .collect();
    h.worker.install(snapshot, ports);
    assert!(
        h.worker.tap().is_none(),
        "the tap went with the old snapshot"
    );
    h.send("pod1", pod_udp(1, pod_ip(2), 64, b"after"));
    let r = capture.collect(Duration::from_secs(30));
    assert!(r.interrupted);
    assert_eq!(r.frames.len(), 1, "what came before the change is kept");
}

/// No tap, or a tap on a port the traffic does not cross: the same
/// frames out, the same counters, nothing copied.
#[test]
fn a_worker_without_a_matching_tap_forwards_as_before() {
    let frames: Vec<Vec<u8>> = (0..64u8)
        .map(|i| pod_udp(1, pod_ip(2), 64, &[i; 32]))
        .collect();
    let run = |h: &mut Harness| {
        for f in &frames {
            h.port("pod1").inject(f.clone());
        }
        h.run();
        (h.all_sent(), h.worker.port_counters.clone())
    };
    let mut plain = Harness::new();
    let expected = run(&mut plain);
    let mut tapped = Harness::new();
    let capture = Capture::new(id(&tapped, "pod3"), 100, 65535);
    tapped.worker.set_tap(capture.tap());
    assert_eq!(run(&mut tapped), expected);
    assert!(collect(capture).frames.is_empty());
    tapped.assert_no_frame_leak();
}
