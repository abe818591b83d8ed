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
//!
//! Rounds are timed by stage, the way OVS's `dpif-netdev/pmd-stats-show`
//! splits a PMD thread's cycles ([`StageTimes`]): the clock is read at each
//! stage boundary where there was work — after a burst that brought
//! packets, after the pipeline, after each transmit queue, around each
//! hand-off delivery — and the time since the previous read, which may be
//! in an earlier round, is charged to the stage that just ran. An empty
//! burst reads no clock (its time goes to whatever is charged next); a
//! round that found nothing reads it once, at its end, and is charged to
//! idle, as is the time `daemon` sleeps. A read of the monotonic clock
//! costs tens of ns (vDSO; ~50 ns in a VM), so that is one read per idle
//! round and a few per batch, never one per packet or per idle port. Every
//! nanosecond between the first read and the last is charged once.
//!
//! A worker may hold a capture [`Tap`] (`xvsctl capture`): it sees each
//! received burst before the pipeline and each transmit queue before its
//! port (see [`crate::capture`]). Without one, that is one branch per
//! burst; with one, its copying is charged to the pipeline (received
//! bursts) and to tx (transmits).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::capture::{Direction, Tap};
use crate::handoff::{Inbox, Outbox};
use crate::packet::FramePool;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::port::{Batch, Port, PortId};
use crate::snapshot::Snapshot;

/// Traffic counters of one port, as seen by one worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
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

/// Buckets of the batch-size histogram: bursts of 1, 2–3, 4–7, 8–15,
/// 16–31, 32–63 and 64 packets.
pub const BATCH_BUCKETS: usize = 7;

/// The bucket of a burst of `n` (1..=64) packets: ⌊log2 n⌋.
fn batch_bucket(n: usize) -> usize {
    let log2 = (usize::BITS - 1).saturating_sub(n.leading_zeros());
    (log2 as usize).min(BATCH_BUCKETS - 1)
}

/// Where one worker's time went, in nanoseconds of the monotonic clock.
/// The stage times are those of rounds that found work; their sum is the
/// busy time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StageTimes {
    /// Receiving: rx bursts off every port the worker serves, with the
    /// fill-ring refills and wakeup syscalls they make.
    pub rx_ns: u64,
    /// The pipeline: classification and processing of the bursts.
    pub pipeline_ns: u64,
    /// Transmitting: tx bursts, with completion-ring reaping and the
    /// `sendto` kick.
    pub tx_ns: u64,
    /// Handing off: copying batches into parcels for other workers, and
    /// parcels from them into frames.
    pub handoff_ns: u64,
    /// Rounds that found nothing, and time asleep.
    pub idle_ns: u64,
    /// Rounds that found packets, and rounds that did not.
    pub busy_polls: u64,
    pub idle_polls: u64,
    /// Packets received from ports or handed over by other workers.
    pub packets: u64,
    /// Receive bursts by size, in the buckets of [`BATCH_BUCKETS`].
    pub batches: [u64; BATCH_BUCKETS],
}

impl StageTimes {
    /// Time spent in rounds that found work.
    pub fn busy_ns(&self) -> u64 {
        self.rx_ns + self.pipeline_ns + self.tx_ns + self.handoff_ns
    }

    /// `stage_ns` spread over the packets (0 without packets).
    pub fn per_packet(&self, stage_ns: u64) -> f64 {
        if self.packets == 0 {
            return 0.0;
        }
        stage_ns as f64 / self.packets as f64
    }

    /// `stage_ns` as a percentage of the busy time (0 when never busy).
    pub fn busy_share(&self, stage_ns: u64) -> f64 {
        match self.busy_ns() {
            0 => 0.0,
            busy => 100.0 * stage_ns as f64 / busy as f64,
        }
    }

    /// Adds a finished round that found `packets`.
    fn end_round(&mut self, round: &Round, packets: usize) {
        if packets == 0 {
            self.idle_polls += 1;
        } else {
            self.busy_polls += 1;
            self.packets += packets as u64;
        }
        let [rx, pipeline, tx, handoff, idle] = round.ns;
        self.rx_ns += rx;
        self.pipeline_ns += pipeline;
        self.tx_ns += tx;
        self.handoff_ns += handoff;
        self.idle_ns += idle;
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The stages a round's time is charged to (indices into `Round::ns`).
#[derive(Clone, Copy)]
enum Stage {
    Rx,
    Pipeline,
    Tx,
    Handoff,
    Idle,
}

/// The clock of one poll round.
struct Round {
    /// The previous clock read.
    last: Instant,
    ns: [u64; 5],
}

impl Round {
    fn since(last: Instant) -> Self {
        Round { last, ns: [0; 5] }
    }

    /// Charges the time since the previous read to `stage`.
    #[inline]
    fn lap(&mut self, stage: Stage) {
        let now = Instant::now();
        self.ns[stage as usize] += nanos(now - self.last);
        self.last = now;
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
    /// Where its time went.
    pub times: StageTimes,
    /// The last read of the clock the stages are timed with (`None`
    /// before the first round).
    clock: Option<Instant>,
    /// Packets other workers handed over that found no free frame here.
    pub handoff_no_frame: u64,
    /// Packets other workers handed over under an older snapshot, dropped
    /// (their port ids may mean other ports now).
    pub handoff_stale: u64,
    inbox: Option<Inbox>,
    batch: Batch,
    /// The capture tap, if a capture is running.
    tap: Option<Tap>,
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
            times: StageTimes::default(),
            clock: None,
            handoff_no_frame: 0,
            handoff_stale: 0,
            inbox,
            batch: Batch::new(),
            tap: None,
        }
    }

    /// Takes every port with its counters, named as the current snapshot
    /// names them, leaving the worker without ports until
    /// [`Worker::install`] (a reconfiguration in between).
    pub fn take_ports(&mut self) -> Vec<(String, PortSlot<T>, PortCounters)> {
        let names = self
            .pipeline
            .snapshot()
            .ports
            .iter()
            .map(|p| p.name.clone());
        names
            .zip(self.ports.drain(..))
            .zip(self.port_counters.drain(..))
            .map(|((name, slot), counters)| (name, slot, counters))
            .collect()
    }

    /// Switches to `snapshot` with `ports` (indexed like its port table,
    /// each with its counters so far). A capture tap is dropped, its
    /// capture interrupted: the port it taps may have another id now.
    ///
    /// # Panics
    /// As [`Worker::new`], if the ports do not match the snapshot.
    pub fn install(&mut self, snapshot: Arc<Snapshot>, ports: Vec<(PortSlot<T>, PortCounters)>) {
        assert_eq!(
            ports.len(),
            snapshot.ports.len(),
            "one port per snapshot port"
        );
        (self.ports, self.port_counters) = ports.into_iter().unzip();
        self.pipeline.set_snapshot(snapshot);
        if let Some(tap) = self.tap.take() {
            tap.interrupt();
        }
    }

    /// Installs (or with `None` removes) the capture tap; returns the one
    /// it replaces.
    pub fn set_tap(&mut self, tap: Option<Tap>) -> Option<Tap> {
        std::mem::replace(&mut self.tap, tap)
    }

    /// The capture tap, if any.
    pub fn tap(&self) -> Option<&Tap> {
        self.tap.as_ref()
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
        let mut round = Round::since(self.clock.unwrap_or_else(Instant::now));
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
            round.lap(Stage::Rx);
            received += n;
            self.times.batches[batch_bucket(n)] += 1;
            let c = &mut self.port_counters[idx];
            c.rx_packets += n as u64;
            c.rx_bytes += self.batch.iter().map(|p| u64::from(p.len)).sum::<u64>();
            if let Some(tap) = &self.tap {
                tap.observe(in_port, &self.pool, &self.batch, Direction::In);
            }
            self.pipeline
                .process(&mut self.pool, in_port, &mut self.batch, now_ns);
            round.lap(Stage::Pipeline);
            self.flush(&mut round);
        }
        received += self.deliver_handoffs(&mut round);
        if received == 0 {
            round.lap(Stage::Idle);
        }
        self.clock = Some(round.last);
        self.times.end_round(&round, received);
        received
    }

    /// Charges the time since the last round to idle: for the poll loop
    /// to call after sleeping, so that the sleep is not charged to the
    /// first stage of the next round.
    pub fn account_idle(&mut self) {
        let now = Instant::now();
        if let Some(last) = self.clock.replace(now) {
            self.times.idle_ns += nanos(now - last);
        }
    }

    /// Hands every transmit queue to its port, or to the worker that
    /// serves it.
    fn flush(&mut self, round: &mut Round) {
        let generation = self.pipeline.snapshot().flow_generation;
        for (port, queue) in self.pipeline.tx_queues() {
            let idx = usize::from(port);
            let c = &mut self.port_counters[idx];
            match &mut self.ports[idx] {
                PortSlot::Local(p) => {
                    if let Some(tap) = &self.tap {
                        tap.observe(port, &self.pool, queue, Direction::Out);
                    }
                    transmit(p, &mut self.pool, queue, c);
                    round.lap(Stage::Tx);
                }
                PortSlot::Remote(outbox) => {
                    let queued = queue.len() as u64;
                    let sent = outbox.send(&mut self.pool, port, generation, queue) as u64;
                    c.handed_off += sent;
                    c.handoff_drops += queued - sent;
                    round.lap(Stage::Handoff);
                }
            }
        }
    }

    /// Sends what other workers handed over; returns how many packets.
    /// Copying parcels in is charged to the hand-off, sending to tx.
    fn deliver_handoffs(&mut self, round: &mut Round) -> usize {
        let Some(inbox) = &self.inbox else {
            return 0;
        };
        let (ports, counters, tap) = (&mut self.ports, &mut self.port_counters, &self.tap);
        let generation = self.pipeline.snapshot().flow_generation;
        let done = inbox.deliver(
            &mut self.pool,
            &mut self.batch,
            generation,
            |pool, port, batch| {
                round.lap(Stage::Handoff);
                let idx = usize::from(port);
                match (ports.get_mut(idx), counters.get_mut(idx)) {
                    (Some(PortSlot::Local(p)), Some(c)) => {
                        if let Some(tap) = tap {
                            tap.observe(port, pool, batch, Direction::Out);
                        }
                        transmit(p, pool, batch, c);
                    }
                    // Handed to a worker that does not serve the port: a wiring
                    // bug, but a packet is never worth a panic.
                    _ => {
                        for p in batch.drain(..) {
                            pool.free(p.frame);
                        }
                    }
                }
                round.lap(Stage::Tx);
            },
        );
        self.handoff_no_frame += done.no_frame as u64;
        self.handoff_stale += done.stale as u64;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_buckets_are_powers_of_two() {
        let buckets: Vec<usize> = [1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64]
            .into_iter()
            .map(batch_bucket)
            .collect();
        assert_eq!(buckets, [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6]);
        assert_eq!(batch_bucket(1000), BATCH_BUCKETS - 1, "clamped");
    }

    #[test]
    fn shares_and_per_packet_costs() {
        let t = StageTimes {
            rx_ns: 100,
            pipeline_ns: 300,
            tx_ns: 500,
            handoff_ns: 100,
            packets: 10,
            ..StageTimes::default()
        };
        assert_eq!(t.busy_ns(), 1000);
        assert_eq!(t.per_packet(t.pipeline_ns), 30.0);
        assert_eq!(t.busy_share(t.tx_ns), 50.0);
        let idle = StageTimes::default();
        assert_eq!((idle.per_packet(0), idle.busy_share(0)), (0.0, 0.0));
    }
}
