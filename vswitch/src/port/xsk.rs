//! AF_XDP ports: the adapter between `hw`'s AF_XDP sockets and the
//! pipeline.
//!
//! [`XskPool`] is a worker's UMEM seen as a [`FramePool`]; an [`XskPort`] is
//! one of its sockets. Receiving takes descriptors off the rx ring and tops
//! the fill ring up from the pool; transmitting reaps the completion ring
//! into the pool and puts the batch on the tx ring. A packet never leaves
//! its frame between the two, whatever port it goes out of.

use arrayvec::ArrayVec;
use xvs_hw::xsk::{SocketId, SocketStats, TxDesc, Xsk};

use super::{Batch, Port, BATCH_SIZE};
use crate::packet::{frame_u16, FrameId, FramePool, Packet};

/// Frames the fill rings leave in the pool, for what the pipeline allocates
/// itself (ICMP errors, flooded copies).
const KEEP_FREE: usize = 2 * BATCH_SIZE;

/// A worker's UMEM as the pipeline's frame pool.
pub struct XskPool {
    pub xsk: Xsk,
}

impl FramePool for XskPool {
    #[inline]
    fn frame(&self, id: FrameId) -> &[u8] {
        self.xsk.frame(id.0)
    }

    #[inline]
    fn frame_mut(&mut self, id: FrameId) -> &mut [u8] {
        self.xsk.frame_mut(id.0)
    }

    fn alloc(&mut self) -> Option<FrameId> {
        self.xsk.alloc().map(FrameId)
    }

    fn free(&mut self, id: FrameId) {
        self.xsk.free(id.0);
    }

    fn copy_packet(&mut self, pkt: &Packet, to: FrameId) -> Packet {
        self.xsk.copy_packet(
            pkt.frame.0,
            to.0,
            usize::from(pkt.head),
            usize::from(pkt.len),
        );
        Packet { frame: to, ..*pkt }
    }

    fn free_count(&self) -> usize {
        self.xsk.free_count()
    }

    fn capacity(&self) -> usize {
        self.xsk.capacity()
    }
}

/// A port: one AF_XDP socket of the worker's UMEM per receive queue of the
/// interface; it transmits through the first.
#[derive(Debug)]
pub struct XskPort {
    sockets: Vec<SocketId>,
    /// The socket the next receive starts with, so queues take turns.
    next: usize,
    /// Packets the tx ring had no room for (freed, not sent).
    pub tx_ring_full: u64,
}

impl XskPort {
    /// # Panics
    /// If `sockets` is empty.
    pub fn new(sockets: Vec<SocketId>) -> Self {
        assert!(!sockets.is_empty(), "a port needs a socket");
        XskPort {
            sockets,
            next: 0,
            tx_ring_full: 0,
        }
    }

    /// Its sockets, one per receive queue it serves.
    pub fn sockets(&self) -> &[SocketId] {
        &self.sockets
    }

    /// The counters of its sockets, summed.
    pub fn stats(&self, pool: &XskPool) -> SocketStats {
        let mut sum = SocketStats::default();
        for &id in &self.sockets {
            sum.add(&pool.xsk.stats(id));
        }
        sum
    }
}

impl Port<XskPool> for XskPort {
    fn rx_burst(&mut self, pool: &mut XskPool, batch: &mut Batch) -> usize {
        pool.xsk.reap(self.sockets[0]);
        let mut n = 0;
        for i in 0..self.sockets.len() {
            let socket = self.sockets[(self.next + i) % self.sockets.len()];
            n += pool.xsk.receive(socket, batch.remaining_capacity(), |d| {
                batch.push(Packet {
                    frame: FrameId(d.frame),
                    head: d.offset,
                    len: d.len,
                });
            });
            pool.xsk.refill(socket, KEEP_FREE);
        }
        self.next = (self.next + 1) % self.sockets.len();
        n
    }

    fn tx_burst(&mut self, pool: &mut XskPool, batch: &mut Batch) -> usize {
        let socket = self.sockets[0];
        pool.xsk.reap(socket);
        let descs: ArrayVec<TxDesc, BATCH_SIZE> = batch
            .iter()
            .map(|p| TxDesc {
                frame: p.frame.0,
                offset: p.head,
                len: frame_u16(usize::from(p.len)),
            })
            .collect();
        let sent = pool.xsk.transmit(socket, &descs);
        for p in &batch[sent..] {
            pool.free(p.frame);
        }
        self.tx_ring_full += (batch.len() - sent) as u64;
        batch.clear();
        sent
    }
}
