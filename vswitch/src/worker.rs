//! A worker: one pool of frames, the ports it serves, one pipeline.
//!
//! `poll` is one round of the poll loop: for each port, receive a burst,
//! run it through the pipeline, flush every transmit queue that got
//! packets. `daemon` runs it in a pinned thread with adaptive back-off;
//! tests, benchmarks and the pipeline demo call it directly.

use std::sync::Arc;

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
}

/// A pool, its ports (indexed like the snapshot's port table) and the
/// pipeline between them.
pub struct Worker<P: FramePool, T: Port<P>> {
    pub pool: P,
    pub ports: Vec<T>,
    pub pipeline: Pipeline,
    pub port_counters: Vec<PortCounters>,
    batch: Batch,
}

impl<P: FramePool, T: Port<P>> Worker<P, T> {
    /// `ports[i]` must be the port the snapshot calls `PortId` `i`.
    ///
    /// # Panics
    /// If there are not exactly as many ports as the snapshot has: wiring
    /// ports to ids is the caller's job, and a mismatch is a bug.
    pub fn new(pool: P, ports: Vec<T>, snapshot: Arc<Snapshot>, config: PipelineConfig) -> Self {
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
            batch: Batch::new(),
        }
    }

    /// One round over every port at time `now_ns`; returns the packets
    /// received.
    pub fn poll(&mut self, now_ns: u64) -> usize {
        let mut received = 0;
        for idx in 0..self.ports.len() {
            let Ok(in_port) = PortId::try_from(idx) else {
                break;
            };
            let n = self.ports[idx].rx_burst(&mut self.pool, &mut self.batch);
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
        received
    }

    /// Hands every transmit queue to its port. A port sends what it can
    /// and frees the rest (its own drop counter); the counters here count
    /// what it took.
    fn flush(&mut self) {
        for (port, queue) in self.pipeline.tx_queues() {
            let idx = usize::from(port);
            let bytes: u64 = queue.iter().map(|p| u64::from(p.len)).sum();
            let queued = queue.len();
            let sent = self.ports[idx].tx_burst(&mut self.pool, queue);
            let c = &mut self.port_counters[idx];
            c.tx_packets += sent as u64;
            // Bytes are exact when the port took everything, as it does
            // unless its ring is full.
            c.tx_bytes += if sent == queued {
                bytes
            } else {
                bytes * sent as u64 / queued as u64
            };
        }
    }
}
