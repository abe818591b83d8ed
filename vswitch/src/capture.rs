//! Packet capture on one port: copies of the frames a worker receives on
//! it and sends out of it, for `xvsctl capture` (tcpdump cannot see them:
//! the XDP program redirects a port's frames to AF_XDP before any
//! AF_PACKET socket, and the switch's own transmits never enter the
//! kernel's stack).
//!
//! Design. A [`Capture`] is made by the control thread for one port; each
//! worker is given a [`Tap`] of it (`Worker::set_tap`) and copies frames
//! at two points of its round: a received burst before the pipeline sees
//! it ([`Direction::In`]), and a transmit queue just before the port takes
//! it ([`Direction::Out`], also for packets other workers handed over).
//! Each copy is `snaplen` bytes at most, stamped with the wall clock (read
//! once per burst: the burst arrived, or leaves, together).
//!
//! Concurrency contract. The taps of one capture share a budget (an
//! atomic count of packets still wanted): a worker claims one unit per
//! packet with a compare-and-swap, so all workers together copy at most
//! `count` packets, and a budget at zero costs a tapped burst one atomic
//! load. Copies travel to the control thread over a bounded channel with
//! `try_send` only: a worker never blocks on the control plane. A packet
//! that finds the channel full is not copied, counted as dropped, and its
//! unit of budget given back, so `count` stays the number of packets the
//! file gets unless the capture times out or is interrupted. The control
//! thread is the only reader; it ends the capture by zeroing the budget
//! ([`Capture::end`]), after which taps copy nothing and are removed at
//! leisure; the shared state is freed with the last tap.
//!
//! A worker without a tap pays one predictable branch per burst (an
//! `Option` that is `None`); a tap on another port, one comparison more.
//!
//! A worker that installs a new snapshot drops its tap ([`Tap::interrupt`]):
//! port ids may mean other ports now. The capture then ends early and says
//! so ([`CaptureResult::interrupted`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender, TrySendError};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, PcapError, TsResolution};

use crate::packet::FramePool;
use crate::port::{Batch, PortId};

/// Copies in flight between the workers and the control thread. At a
/// burst of 64 per port per round this is 64 full bursts; the control
/// thread drains it far faster than a port fills it.
pub const CHANNEL_FRAMES: usize = 4096;

/// How often a waiting [`Capture::collect`] looks whether the capture was
/// interrupted.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// Which way a captured frame was going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received on the port.
    In,
    /// Sent out of the port.
    Out,
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedFrame {
    /// Wall-clock time of capture, in ns since the Unix epoch.
    pub timestamp_ns: u64,
    pub direction: Direction,
    /// The frame's length on the wire.
    pub orig_len: u32,
    /// Its first `snaplen` bytes.
    pub data: Vec<u8>,
}

/// What the taps of one capture share with it.
#[derive(Debug)]
pub struct CaptureState {
    /// Packets still wanted.
    remaining: AtomicU64,
    /// Packets not copied because the channel was full.
    dropped: AtomicU64,
    /// A worker dropped its tap for a new snapshot.
    interrupted: AtomicBool,
    /// The control thread stopped collecting.
    ended: AtomicBool,
}

impl CaptureState {
    /// Whether the control thread has stopped collecting (a tap of an
    /// ended capture may be replaced).
    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }
}

/// A worker's end of a capture.
#[derive(Debug, Clone)]
pub struct Tap {
    port: PortId,
    snaplen: usize,
    state: Arc<CaptureState>,
    frames: Sender<CapturedFrame>,
}

impl Tap {
    /// The port it copies frames of.
    pub fn port(&self) -> PortId {
        self.port
    }

    /// Whether it is a tap of the capture with state `state`.
    pub fn feeds(&self, state: &Arc<CaptureState>) -> bool {
        Arc::ptr_eq(&self.state, state)
    }

    /// Copies the packets of `batch` if `port` is the tapped one.
    #[inline]
    pub fn observe<P: FramePool>(
        &self,
        port: PortId,
        pool: &P,
        batch: &Batch,
        direction: Direction,
    ) {
        if port == self.port {
            self.copy(pool, batch, direction);
        }
    }

    #[cold]
    fn copy<P: FramePool>(&self, pool: &P, batch: &Batch, direction: Direction) {
        if self.state.remaining.load(Ordering::Relaxed) == 0 {
            return;
        }
        let timestamp_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        for pkt in batch {
            if !self.claim() {
                return;
            }
            if self.frames.is_full() {
                // Not worth a copy that cannot be sent.
                self.give_back();
                continue;
            }
            let bytes = pkt.data(pool);
            let frame = CapturedFrame {
                timestamp_ns,
                direction,
                orig_len: u32::from(pkt.len),
                data: bytes[..bytes.len().min(self.snaplen)].to_vec(),
            };
            match self.frames.try_send(frame) {
                Ok(()) => {}
                // Filled up by another worker since `is_full`.
                Err(TrySendError::Full(_)) => self.give_back(),
                // No one collects any more.
                Err(TrySendError::Disconnected(_)) => {
                    self.state.remaining.store(0, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Takes one packet of the budget; `false` when it is spent.
    fn claim(&self) -> bool {
        self.state
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
            .is_ok()
    }

    /// Counts a packet the channel had no room for, and returns its unit
    /// of budget (unless the capture ended or was interrupted meanwhile:
    /// then the budget stays at zero; a unit that slips back in a race
    /// with the end costs at most a copy no one reads).
    #[cold]
    fn give_back(&self) {
        let state = &self.state;
        state.dropped.fetch_add(1, Ordering::Relaxed);
        let over = state.ended.load(Ordering::Acquire) || state.interrupted.load(Ordering::Acquire);
        if !over {
            state.remaining.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops the tap because the worker's port table changed: the capture
    /// ends early, interrupted.
    pub fn interrupt(self) {
        self.state.interrupted.store(true, Ordering::Release);
        self.state.remaining.store(0, Ordering::Relaxed);
    }
}

/// What a capture brought back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureResult {
    /// In capture order (by timestamp; frames of one burst keep their
    /// order).
    pub frames: Vec<CapturedFrame>,
    /// Packets not copied because the channel was full.
    pub dropped: u64,
    /// A reconfiguration ended the capture early.
    pub interrupted: bool,
}

/// The control thread's end of a capture of one port.
pub struct Capture {
    state: Arc<CaptureState>,
    frames: Receiver<CapturedFrame>,
    /// The sender taps are cloned from, dropped when collecting starts so
    /// that the channel disconnects once every tap is gone.
    sender: Option<Sender<CapturedFrame>>,
    port: PortId,
    snaplen: usize,
    count: u64,
}

impl Capture {
    /// A capture of up to `count` packets of `port`, `snaplen` bytes of
    /// each at most.
    pub fn new(port: PortId, count: u64, snaplen: usize) -> Capture {
        Self::with_channel(port, count, snaplen, CHANNEL_FRAMES)
    }

    /// As [`Capture::new`], with room for `capacity` copies in flight.
    pub fn with_channel(port: PortId, count: u64, snaplen: usize, capacity: usize) -> Capture {
        let (tx, rx) = channel::bounded(capacity);
        Capture {
            state: Arc::new(CaptureState {
                remaining: AtomicU64::new(count),
                dropped: AtomicU64::new(0),
                interrupted: AtomicBool::new(false),
                ended: AtomicBool::new(false),
            }),
            frames: rx,
            sender: Some(tx),
            port,
            snaplen,
            count,
        }
    }

    /// A tap for one worker (`None` once collecting has started).
    pub fn tap(&self) -> Option<Tap> {
        Some(Tap {
            port: self.port,
            snaplen: self.snaplen,
            state: self.state.clone(),
            frames: self.sender.clone()?,
        })
    }

    /// What the taps share, to tell them apart from another capture's.
    pub fn state(&self) -> &Arc<CaptureState> {
        &self.state
    }

    /// Stops the taps: they copy nothing more.
    pub fn end(&self) {
        self.state.remaining.store(0, Ordering::Relaxed);
        self.state.ended.store(true, Ordering::Release);
    }

    /// Waits until `count` packets arrived, `timeout` passed, or the
    /// capture was interrupted (or every tap dropped), then ends the
    /// capture and returns what arrived.
    pub fn collect(&mut self, timeout: Duration) -> CaptureResult {
        self.sender = None;
        let count = usize::try_from(self.count).unwrap_or(usize::MAX);
        let deadline = Instant::now() + timeout;
        let mut frames = Vec::with_capacity(count.min(CHANNEL_FRAMES));
        while frames.len() < count && !self.state.interrupted.load(Ordering::Acquire) {
            let wake = deadline.min(Instant::now() + CHECK_EVERY);
            match self.frames.recv_deadline(wake) {
                Ok(frame) => frames.push(frame),
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => break,
            }
        }
        self.end();
        // Copies sent before the end (or the interruption) still count.
        while frames.len() < count {
            let Ok(frame) = self.frames.try_recv() else {
                break;
            };
            frames.push(frame);
        }
        frames.sort_by_key(|f| f.timestamp_ns);
        CaptureResult {
            frames,
            dropped: self.state.dropped.load(Ordering::Relaxed),
            interrupted: self.state.interrupted.load(Ordering::Acquire),
        }
    }
}

/// `frames` as a pcap file: Ethernet frames, nanosecond timestamps, at
/// most `snaplen` bytes of each (longer copies are cut to it).
///
/// # Errors
/// Only for a timestamp after 2106, which the format cannot hold.
pub fn to_pcap(frames: &[CapturedFrame], snaplen: u32) -> Result<Vec<u8>, PcapError> {
    let header = PcapHeader {
        snaplen,
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::NanoSecond,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(Vec::new(), header)?;
    let limit = usize::try_from(snaplen).unwrap_or(usize::MAX);
    for f in frames {
        let data = &f.data[..f.data.len().min(limit)];
        let orig_len = f
            .orig_len
            .max(u32::try_from(data.len()).unwrap_or(u32::MAX));
        writer.write_packet(&PcapPacket::new(
            Duration::from_nanos(f.timestamp_ns),
            orig_len,
            data,
        ))?;
    }
    Ok(writer.into_writer())
}

impl Drop for Capture {
    /// A capture dropped without [`Capture::collect`] (an error path)
    /// still stops its taps, and lets the next capture start.
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::HeapFramePool;

    fn batch(pool: &mut HeapFramePool, frames: &[&[u8]]) -> Batch {
        frames.iter().map(|f| pool.alloc_with(f).unwrap()).collect()
    }

    #[test]
    fn copies_only_its_port_truncated_to_snaplen() {
        let mut pool = HeapFramePool::new(4);
        let b = batch(&mut pool, &[&[1, 2, 3, 4], &[5, 6]]);
        let mut capture = Capture::new(3, 10, 3);
        let tap = capture.tap().unwrap();
        tap.observe(2, &pool, &b, Direction::In);
        tap.observe(3, &pool, &b, Direction::Out);
        drop(tap);
        let r = capture.collect(Duration::from_secs(1));
        let got: Vec<_> = r
            .frames
            .iter()
            .map(|f| (f.direction, f.orig_len, f.data.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (Direction::Out, 4, vec![1, 2, 3]),
                (Direction::Out, 2, vec![5, 6])
            ]
        );
        assert!(!r.interrupted && r.dropped == 0);
        assert!(capture.tap().is_none(), "no new taps once collecting");
    }

    #[test]
    fn an_interrupted_capture_ends_at_once_with_what_it_had() {
        let mut pool = HeapFramePool::new(1);
        let b = batch(&mut pool, &[&[1]]);
        let mut capture = Capture::new(0, 10, 100);
        let (tap, other) = (capture.tap().unwrap(), capture.tap().unwrap());
        tap.observe(0, &pool, &b, Direction::In);
        tap.interrupt();
        let start = Instant::now();
        let r = capture.collect(Duration::from_secs(30));
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(r.interrupted);
        assert_eq!(r.frames.len(), 1);
        other.observe(0, &pool, &b, Direction::In);
        assert!(capture.frames.is_empty(), "an ended capture copies nothing");
    }

    /// The file read back by pcap-file's reader (tshark reads it in the
    /// end-to-end test).
    #[test]
    fn pcap_has_nanosecond_ethernet_records() {
        let frames = [
            CapturedFrame {
                timestamp_ns: 1_700_000_000_123_456_789,
                direction: Direction::In,
                orig_len: 60,
                data: vec![0xaa; 60],
            },
            CapturedFrame {
                timestamp_ns: 1_700_000_001_000_000_001,
                direction: Direction::Out,
                orig_len: 1500,
                data: vec![0xbb; 200],
            },
        ];
        let bytes = to_pcap(&frames, 100).unwrap();
        let mut reader = pcap_file::pcap::PcapReader::new(&bytes[..]).unwrap();
        let h = reader.header();
        assert_eq!(
            (h.datalink, h.ts_resolution, h.snaplen),
            (DataLink::ETHERNET, TsResolution::NanoSecond, 100)
        );
        let first = reader.next_packet().unwrap().unwrap();
        assert_eq!(first.timestamp, Duration::new(1_700_000_000, 123_456_789));
        assert_eq!((first.orig_len, first.data.len()), (60, 60));
        // Raw: pcap-file's checked reader refuses an original length
        // beyond the snaplen, which is what a snaplen is for (libpcap and
        // tshark read it).
        let second = reader.next_raw_packet().unwrap().unwrap();
        assert_eq!(
            (second.orig_len, &second.data[..]),
            (1500, &[0xbb; 100][..])
        );
        assert_eq!((second.ts_sec, second.ts_frac), (1_700_000_001, 1));
        assert!(reader.next_raw_packet().is_none());
    }
}
