//! Ports: where packets enter and leave a worker.
//!
//! A [`Port`] moves descriptors in bursts: `rx_burst` fills a batch with
//! received packets, `tx_burst` takes a batch for sending. Both take the
//! worker's [`FramePool`] because the port's rings live in it: an AF_XDP
//! port refills its fill ring from the pool on receive and returns completed
//! frames to it on transmit; the in-memory port copies bytes in and out of
//! it. Implemented by [`MemoryPort`] (tests, benchmarks, the demo) and
//! [`XskPort`] (AF_XDP, over `hw`); a pcap replay port is to come.

mod memory;
mod xsk;

pub use memory::MemoryPort;
pub use xsk::{XskPool, XskPort};

use arrayvec::ArrayVec;

use crate::packet::{FramePool, Packet};

/// Index of a port in the datapath snapshot's port table.
pub type PortId = u16;

/// The most packets any stage handles at once (VPP's VLIB_FRAME_SIZE is 256,
/// OVS's NETDEV_MAX_BURST 32; 64 is AF_XDP's usual ring batch and keeps a
/// batch's descriptors and metadata inside L1).
pub const BATCH_SIZE: usize = 64;

/// A burst of packets.
pub type Batch = ArrayVec<Packet, BATCH_SIZE>;

/// A source and sink of packets for one worker.
pub trait Port<P: FramePool> {
    /// Appends up to `batch.remaining_capacity()` received packets to
    /// `batch` and returns how many it added. Never blocks.
    fn rx_burst(&mut self, pool: &mut P, batch: &mut Batch) -> usize;

    /// Takes every packet of `batch` (leaving it empty) and sends what it
    /// can. Frames it cannot send are returned to the pool and counted by
    /// the port; it returns how many it sent. Never blocks.
    fn tx_burst(&mut self, pool: &mut P, batch: &mut Batch) -> usize;
}
