//! An in-memory port: a queue of frames to receive and a list of frames
//! sent. It needs no root and no kernel, so every pipeline feature is tested
//! and benchmarked on it.

use std::collections::VecDeque;

use super::{Batch, Port};
use crate::packet::{FramePool, MAX_FRAME_LEN};

/// A port whose "wire" is two in-process queues.
#[derive(Default)]
pub struct MemoryPort {
    rx: VecDeque<Vec<u8>>,
    /// Frames the switch transmitted, oldest first.
    pub sent: Vec<Vec<u8>>,
    /// Received frames dropped because they were too long for a frame.
    pub rx_dropped: u64,
    /// Keep transmitted frames in `sent` (tests) or just count them
    /// (benchmarks).
    keep_sent: bool,
    /// Frames transmitted in total.
    pub tx_count: u64,
    /// Most packets one `rx_burst` returns (models a NIC's burst size).
    burst: usize,
}

impl MemoryPort {
    pub fn new() -> Self {
        MemoryPort {
            keep_sent: true,
            burst: super::BATCH_SIZE,
            ..Default::default()
        }
    }

    /// A port that counts what it transmits without keeping it, and hands
    /// out at most `burst` packets per `rx_burst`.
    pub fn counting(burst: usize) -> Self {
        MemoryPort {
            keep_sent: false,
            burst: burst.clamp(1, super::BATCH_SIZE),
            ..Default::default()
        }
    }

    /// Queues a frame to be received by the switch.
    pub fn inject(&mut self, frame: impl Into<Vec<u8>>) {
        self.rx.push_back(frame.into());
    }

    /// Frames still waiting to be received.
    pub fn pending(&self) -> usize {
        self.rx.len()
    }

    /// Takes the transmitted frames.
    pub fn take_sent(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.sent)
    }
}

impl<P: FramePool> Port<P> for MemoryPort {
    fn rx_burst(&mut self, pool: &mut P, batch: &mut Batch) -> usize {
        let mut added = 0;
        while added < self.burst && !batch.is_full() {
            let Some(bytes) = self.rx.pop_front() else {
                break;
            };
            if bytes.len() > MAX_FRAME_LEN {
                self.rx_dropped += 1;
                continue;
            }
            let Some(pkt) = pool.alloc_with(&bytes) else {
                // No frame to receive into: leave it on the wire for the
                // next poll, as a NIC with an empty fill ring would.
                self.rx.push_front(bytes);
                break;
            };
            batch.push(pkt);
            added += 1;
        }
        added
    }

    fn tx_burst(&mut self, pool: &mut P, batch: &mut Batch) -> usize {
        let sent = batch.len();
        for pkt in batch.drain(..) {
            if self.keep_sent {
                self.sent.push(pkt.data(pool).to_vec());
            }
            pool.free(pkt.frame);
        }
        self.tx_count += sent as u64;
        sent
    }
}
