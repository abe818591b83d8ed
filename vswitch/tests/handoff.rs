//! Two workers that split the ports between them and hand each other the
//! packets for ports they do not serve. Every output is compared with what
//! one worker serving all ports sends for the same input, and checked by
//! etherparse.

mod common;

use std::sync::Arc;

use common::*;
use etherparse::TransportSlice;
use xvs_vswitch::handoff::{self, PARCELS_PER_LINK};
use xvs_vswitch::packet::{FramePool, HeapFramePool};
use xvs_vswitch::pipeline::PipelineConfig;
use xvs_vswitch::port::{MemoryPort, BATCH_SIZE};
use xvs_vswitch::snapshot::Snapshot;
use xvs_vswitch::worker::{PortSlot, Worker};

type MemWorker = Worker<HeapFramePool, MemoryPort>;

/// Worker 0 serves the ports named in `mine`, worker 1 all the others.
fn pair(mine: &[&str]) -> [MemWorker; 2] {
    let snapshot = Arc::new(Snapshot::compile(&state(), 1).unwrap());
    let mut mesh = handoff::mesh(2).unwrap();
    let (inbox1, out1) = mesh.pop().unwrap();
    let (inbox0, out0) = mesh.pop().unwrap();
    let slots = |me: usize, outboxes: &[Option<handoff::Outbox>]| {
        snapshot
            .ports
            .iter()
            .map(|p| {
                let owner = usize::from(!mine.contains(&p.name.as_str()));
                if owner == me {
                    PortSlot::Local(MemoryPort::new())
                } else {
                    PortSlot::Remote(outboxes[owner].clone().unwrap())
                }
            })
            .collect()
    };
    let worker = |me, outboxes: Vec<_>, inbox| {
        Worker::with_handoff(
            HeapFramePool::new(POOL_FRAMES),
            slots(me, &outboxes),
            Some(inbox),
            snapshot.clone(),
            PipelineConfig::default(),
        )
    };
    [worker(0, out0, inbox0), worker(1, out1, inbox1)]
}

fn port_id(w: &MemWorker, name: &str) -> u16 {
    w.pipeline.snapshot().port_id(name).unwrap()
}

fn inject(w: &mut MemWorker, port: &str, frame: Vec<u8>) {
    let id = port_id(w, port);
    w.local_port_mut(id)
        .expect("injected on a local port")
        .inject(frame);
}

/// Polls both workers until neither has anything left.
fn run(workers: &mut [MemWorker; 2]) {
    while workers[0].poll(1_000_000_000) + workers[1].poll(1_000_000_000) > 0 {}
}

fn sent(w: &mut MemWorker, port: &str) -> Vec<Vec<u8>> {
    let id = port_id(w, port);
    w.local_port_mut(id).unwrap().take_sent()
}

/// What one worker serving every port sends out of `out` for `frame`.
fn single_worker_output(in_port: &str, frame: Vec<u8>, out: &str) -> Vec<Vec<u8>> {
    let mut h = Harness::new();
    h.send(in_port, frame);
    h.sent(out)
}

fn assert_no_leak(workers: &[MemWorker; 2]) {
    for w in workers {
        assert_eq!(w.pool.free_count(), w.pool.capacity(), "frames leaked");
    }
}

#[test]
fn packets_cross_to_the_worker_that_serves_the_output_port() {
    let mut w = pair(&["pod1"]);
    let cases = [
        // Routed pod to pod, both directions.
        ("pod1", pod_udp(1, pod_ip(2), 64, b"to pod2"), "pod2"),
        ("pod2", pod_udp(2, pod_ip(1), 64, b"to pod1"), "pod1"),
        // Encapsulated towards the remote node, and decapsulated back.
        ("pod1", pod_udp(1, REMOTE_POD, 64, b"over vxlan"), "uplink"),
        (
            "uplink",
            vxlan_from_remote(
                &udp(
                    REMOTE_VTEP_MAC,
                    VTEP_MAC,
                    REMOTE_POD,
                    pod_ip(1),
                    64,
                    b"from remote",
                ),
                VNI,
            ),
            "pod1",
        ),
        // The largest frame the pod MTU allows.
        (
            "pod1",
            pod_udp(1, pod_ip(3), 64, &vec![0xa5; usize::from(POD_MTU) - 28]),
            "pod3",
        ),
    ];
    for (in_port, frame, out) in cases {
        let expected = single_worker_output(in_port, frame.clone(), out);
        assert_eq!(expected.len(), 1, "{in_port} -> {out}: reference output");
        let (src, dst) = if in_port == "pod1" { (0, 1) } else { (1, 0) };
        inject(&mut w[src], in_port, frame);
        run(&mut w);
        let got = sent(&mut w[dst], out);
        assert_eq!(got, expected, "{in_port} -> {out} through the hand-off");
        parse_checked(&got[0]);
        let out_id = usize::from(port_id(&w[src], out));
        assert!(w[src].port_counters[out_id].handed_off > 0);
        assert!(w[dst].port_counters[out_id].tx_packets > 0);
    }
    assert_no_leak(&w);
}

#[test]
fn a_behind_receiver_costs_counted_drops_not_frames() {
    let mut w = pair(&["pod1"]);
    let pod2 = usize::from(port_id(&w[0], "pod2"));
    // Worker 1 does not poll: every parcel fills up, then batches drop.
    let batches = PARCELS_PER_LINK + 2;
    for _ in 0..batches {
        for i in 0..BATCH_SIZE {
            let seq = u8::try_from(i).unwrap();
            inject(&mut w[0], "pod1", pod_udp(1, pod_ip(2), 64, &[seq]));
        }
        w[0].poll(1);
    }
    let c = w[0].port_counters[pod2];
    let total = (batches * BATCH_SIZE) as u64;
    assert_eq!(c.handed_off, (PARCELS_PER_LINK * BATCH_SIZE) as u64);
    assert_eq!(c.handed_off + c.handoff_drops, total);
    assert_eq!(
        w[0].pool.free_count(),
        w[0].pool.capacity(),
        "the sender keeps no frame"
    );
    // The receiver catches up and sends every parcel, in order.
    run(&mut w);
    let out = sent(&mut w[1], "pod2");
    assert_eq!(out.len(), PARCELS_PER_LINK * BATCH_SIZE);
    assert_eq!(w[1].port_counters[pod2].tx_packets, c.handed_off);
    for (i, f) in out.iter().enumerate() {
        let Some(TransportSlice::Udp(udp)) = parse_checked(f).transport else {
            panic!("not UDP");
        };
        assert_eq!(udp.payload(), &[u8::try_from(i % BATCH_SIZE).unwrap()]);
    }
    assert_no_leak(&w);
}

#[test]
fn a_receiver_out_of_frames_counts_what_it_could_not_take() {
    // Worker 1 with a pool too small for a full batch.
    let snapshot = Arc::new(Snapshot::compile(&state(), 1).unwrap());
    let (slots0, slots1, inbox1) = slots_through_worker1(&snapshot, "pod2");
    let pod2 = usize::from(snapshot.port_id("pod2").unwrap());
    let config = PipelineConfig::default();
    let mut w0: MemWorker = Worker::with_handoff(
        HeapFramePool::new(POOL_FRAMES),
        slots0,
        None,
        snapshot.clone(),
        config,
    );
    let mut w1: MemWorker = Worker::with_handoff(
        HeapFramePool::new(10),
        slots1,
        Some(inbox1),
        snapshot,
        config,
    );
    for i in 0..20u8 {
        inject(&mut w0, "pod1", pod_udp(1, pod_ip(2), 64, &[i]));
    }
    w0.poll(1);
    w1.poll(1);
    assert_eq!(w1.port_counters[pod2].tx_packets, 10);
    assert_eq!(w1.handoff_no_frame, 10);
}
