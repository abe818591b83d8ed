//! A worker: one pool of frames, the ports it serves, one pipeline.
//!
//! `poll` is one round of the poll loop: for each port, receive a burst,
//! run it through the pipeline, flush every transmit queue that got
//! packets; then transmit what other workers handed over. `daemon` runs it
//! in a pinned thread with adaptive back-off; tests, benchmarks and the
//! pipeline demo call it directly.
//!
//! A worker sees every port of the snapshot, but serves only those it has
//! queues of ([`PortSlot::Local`]); packets for the others go to the worker
//! that serves them through a hand-off link ([`PortSlot::Remote`], see
//! [`crate::handoff`]).

use std::sync::Arc;

use crate::handoff::{Inbox, Outbox};
use crate::packet::FramePool;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::port::{Batch, Port, PortId};
use crate::snapshot::Snapshot;

/// Traffic counters of one port, as seen by one worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Packets for this port passed to the worker that serves it (counted
    /// in its `tx_packets` when it sends them).
    pub handed_off: u64,
    /// Packets for this port dropped because the serving worker was behind.
    pub handoff_drops: u64,
}

impl PortCounters {
    /// Adds `other` (the same port seen by another worker).
    pub fn add(&mut self, other: &PortCounters) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.tx_packets += other.tx_packets;
        self.tx_bytes += other.tx_bytes;
        self.handed_off += other.handed_off;
        self.handoff_drops += other.handoff_drops;
    }
}

/// How a worker reaches one port.
pub enum PortSlot<T> {
    /// The worker has queues of this port: it receives and sends on it.
    Local(T),
    /// Another worker serves the port; packets for it go through this
    /// outbox.
    Remote(Outbox),
}

/// A pool, its ports (indexed like the snapshot's port table) and the
/// pipeline between them.
pub struct Worker<P: FramePool, T: Port<P>> {
    pub pool: P,
    pub ports: Vec<PortSlot<T>>,
    pub pipeline: Pipeline,
    pub port_counters: Vec<PortCounters>,
    /// Packets other workers handed over that found no free frame here.
    pub handoff_no_frame: u64,
    inbox: Option<Inbox>,
    batch: Batch,
}

impl<P: FramePool, T: Port<P>> Worker<P, T> {
    /// A worker that serves every port: `ports[i]` must be the port the
    /// snapshot calls `PortId` `i`.
    ///
    /// # Panics
    /// If there are not exactly as many ports as the snapshot has: wiring
    /// ports to ids is the caller's job, and a mismatch is a bug.
    pub fn new(pool: P, ports: Vec<T>, snapshot: Arc<Snapshot>, config: PipelineConfig) -> Self {
        let slots = ports.into_iter().map(PortSlot::Local).collect();
        Self::with_handoff(pool, slots, None, snapshot, config)
    }

    /// A worker among several: `ports[i]` is how it reaches the snapshot's
    /// port `i`, `inbox` where the others hand it packets for its ports.
    ///
    /// # Panics
    /// As [`Worker::new`].
    pub fn with_handoff(
        pool: P,
        ports: Vec<PortSlot<T>>,
        inbox: Option<Inbox>,
        snapshot: Arc<Snapshot>,
        config: PipelineConfig,
    ) -> Self {
        assert_eq!(
            ports.len(),
            snapshot.ports.len(),
            "one port per snapshot port"
        );
        let port_counters = vec![PortCounters::default(); ports.len()];
        Worker {
            pool,
            ports,
            pipeline: Pipeline::new(snapshot, config),
            port_counters,
            handoff_no_frame: 0,
            inbox,
            batch: Batch::new(),
        }
    }

    /// The port with id `id` if this worker serves it.
    pub fn local_port_mut(&mut self, id: PortId) -> Option<&mut T> {
        match self.ports.get_mut(usize::from(id)) {
            Some(PortSlot::Local(port)) => Some(port),
            _ => None,
        }
    }

    /// Where other workers hand packets to this one, if any.
    pub fn inbox(&self) -> Option<&Inbox> {
        self.inbox.as_ref()
    }

    /// One round over every port at time `now_ns`; returns the packets
    /// received (from ports and from other workers).
    pub fn poll(&mut self, now_ns: u64) -> usize {
        let mut received = 0;
        for idx in 0..self.ports.len() {
            let Ok(in_port) = PortId::try_from(idx) else {
                break;
            };
            let PortSlot::Local(port) = &mut self.ports[idx] else {
                continue;
            };
            let n = port.rx_burst(&mut self.pool, &mut self.batch);
            if n == 0 {
                continue;
            }
            received += n;
            let c = &mut self.port_counters[idx];
            c.rx_packets += n as u64;
            c.rx_bytes += self.batch.iter().map(|p| u64::from(p.len)).sum::<u64>();
            self.pipeline
                .process(&mut self.pool, in_port, &mut self.batch, now_ns);
            self.flush();
        }
        received + self.deliver_handoffs()
    }

    /// Hands every transmit queue to its port, or to the worker that
    /// serves it.
    fn flush(&mut self) {
        for (port, queue) in self.pipeline.tx_queues() {
            let idx = usize::from(port);
            let c = &mut self.port_counters[idx];
            match &mut self.ports[idx] {
                PortSlot::Local(p) => transmit(p, &mut self.pool, queue, c),
                PortSlot::Remote(outbox) => {
                    let queued = queue.len() as u64;
                    let sent = outbox.send(&mut self.pool, port, queue) as u64;
                    c.handed_off += sent;
                    c.handoff_drops += queued - sent;
                }
            }
        }
    }

    /// Sends what other workers handed over; returns how many packets.
    fn deliver_handoffs(&mut self) -> usize {
        let Some(inbox) = &self.inbox else {
            return 0;
        };
        let (ports, counters) = (&mut self.ports, &mut self.port_counters);
        let done = inbox.deliver(&mut self.pool, &mut self.batch, |pool, port, batch| {
            let idx = usize::from(port);
            match (ports.get_mut(idx), counters.get_mut(idx)) {
                (Some(PortSlot::Local(p)), Some(c)) => transmit(p, pool, batch, c),
                // Handed to a worker that does not serve the port: a wiring
                // bug, but a packet is never worth a panic.
                _ => {
                    for p in batch.drain(..) {
                        pool.free(p.frame);
                    }
                }
            }
        });
        self.handoff_no_frame += done.no_frame as u64;
        done.packets
    }
}

/// Gives `queue` to `port`. The port sends what it can and frees the rest
/// (its own drop counter); the counters here count what it took.
fn transmit<P: FramePool, T: Port<P>>(
    port: &mut T,
    pool: &mut P,
    queue: &mut Batch,
    c: &mut PortCounters,
) {
    let bytes: u64 = queue.iter().map(|p| u64::from(p.len)).sum();
    let queued = queue.len();
    let sent = port.tx_burst(pool, queue);
    c.tx_packets += sent as u64;
    // Bytes are exact when the port took everything, as it does unless its
    // ring is full.
    c.tx_bytes += if sent == queued {
        bytes
    } else {
        bytes * sent as u64 / queued as u64
    };
}
