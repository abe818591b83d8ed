//! Frames and packet descriptors.
//!
//! A worker owns one pool of fixed-size frames; a [`Packet`] is a descriptor
//! (frame index + data window) into it, never a copy of the bytes. This is
//! the AF_XDP model: one UMEM per worker shared by all its sockets, so moving
//! a packet from one port to another moves a descriptor. The in-memory pool
//! here ([`HeapFramePool`]) implements [`FramePool`], and so does the AF_XDP
//! adapter over `hw`'s UMEM (`port::XskPool`); the pipeline is generic
//! over it and never knows which.
//!
//! Every frame starts with [`HEADROOM`] free bytes so that encapsulation
//! (VXLAN needs 50) and ICMP error generation (28) prepend headers in place
//! instead of copying the payload.

/// Size of one frame. 2048 holds a 1518-byte frame plus headroom and keeps
/// frames from straddling pages, as AF_XDP's aligned mode requires.
pub const FRAME_SIZE: usize = 2048;
/// Free bytes before the data of a freshly received frame (the kernel's
/// XDP_PACKET_HEADROOM).
pub const HEADROOM: usize = 256;
/// The largest frame a port hands us (data window), headroom excluded.
pub const MAX_FRAME_LEN: usize = FRAME_SIZE - HEADROOM;

/// An offset or length inside a frame as stored in a descriptor.
///
/// Every offset and length inside a frame is below `FRAME_SIZE` (2048), so
/// the narrowing cannot truncate; callers pass values derived from frame
/// bounds or header-length constants.
#[inline]
#[allow(clippy::cast_possible_truncation)]
pub const fn frame_u16(n: usize) -> u16 {
    debug_assert!(n <= FRAME_SIZE);
    n as u16
}

/// Index of a frame in its worker's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameId(pub u32);

/// A packet: which frame, and where in it the bytes are.
///
/// `head + len <= FRAME_SIZE` always holds for descriptors made by a pool or
/// port; the pipeline keeps it when it moves `head` to prepend or strip
/// headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub frame: FrameId,
    pub head: u16,
    pub len: u16,
}

impl Packet {
    /// The packet's bytes.
    #[inline]
    pub fn data<'a, P: FramePool + ?Sized>(&self, pool: &'a P) -> &'a [u8] {
        &pool.frame(self.frame)[self.head as usize..self.head as usize + self.len as usize]
    }

    /// The packet's bytes, writable.
    #[inline]
    pub fn data_mut<'a, P: FramePool + ?Sized>(&self, pool: &'a mut P) -> &'a mut [u8] {
        &mut pool.frame_mut(self.frame)[self.head as usize..self.head as usize + self.len as usize]
    }
}

/// The frame memory of one worker.
///
/// Implementations hand out each frame to one owner at a time: a frame is
/// either free in the pool, or owned by exactly one descriptor (in a port's
/// rings, a batch, or a tx queue).
pub trait FramePool {
    /// The whole frame, headroom included (`FRAME_SIZE` bytes).
    fn frame(&self, id: FrameId) -> &[u8];
    /// The whole frame, writable.
    fn frame_mut(&mut self, id: FrameId) -> &mut [u8];
    /// Takes a free frame, or `None` when the pool is exhausted.
    fn alloc(&mut self) -> Option<FrameId>;
    /// Returns a frame to the pool.
    fn free(&mut self, id: FrameId);

    /// Takes a frame and copies `bytes` into it after the headroom, as a
    /// NIC does on receive. `None` if the pool is empty or `bytes` is longer
    /// than [`MAX_FRAME_LEN`].
    fn alloc_with(&mut self, bytes: &[u8]) -> Option<Packet> {
        let len = u16::try_from(bytes.len())
            .ok()
            .filter(|&l| usize::from(l) <= MAX_FRAME_LEN)?;
        let frame = self.alloc()?;
        let pkt = Packet {
            frame,
            head: frame_u16(HEADROOM),
            len,
        };
        pkt.data_mut(self).copy_from_slice(bytes);
        Some(pkt)
    }
    /// Copies `pkt`'s bytes into frame `to` at the same offset and returns
    /// the descriptor of the copy.
    fn copy_packet(&mut self, pkt: &Packet, to: FrameId) -> Packet;
    /// Frames currently free (for accounting checks and stats).
    fn free_count(&self) -> usize;
    /// Frames in the pool in total.
    fn capacity(&self) -> usize;
}

/// A pool of frames in ordinary heap memory: the in-memory ports' "UMEM".
pub struct HeapFramePool {
    memory: Vec<u8>,
    free: Vec<FrameId>,
    frames: usize,
}

impl HeapFramePool {
    pub fn new(frames: u32) -> Self {
        let count = frames as usize;
        HeapFramePool {
            memory: vec![0; count * FRAME_SIZE],
            // Reversed so that frame 0 is handed out first: easier to read in
            // a debugger, no other reason.
            free: (0..frames).rev().map(FrameId).collect(),
            frames: count,
        }
    }
}

impl FramePool for HeapFramePool {
    #[inline]
    fn frame(&self, id: FrameId) -> &[u8] {
        let start = id.0 as usize * FRAME_SIZE;
        &self.memory[start..start + FRAME_SIZE]
    }

    #[inline]
    fn frame_mut(&mut self, id: FrameId) -> &mut [u8] {
        let start = id.0 as usize * FRAME_SIZE;
        &mut self.memory[start..start + FRAME_SIZE]
    }

    #[inline]
    fn alloc(&mut self) -> Option<FrameId> {
        self.free.pop()
    }

    #[inline]
    fn free(&mut self, id: FrameId) {
        debug_assert!((id.0 as usize) < self.frames);
        debug_assert!(self.free.len() < self.frames, "double free of {id:?}");
        self.free.push(id);
    }

    fn copy_packet(&mut self, pkt: &Packet, to: FrameId) -> Packet {
        let (head, len) = (usize::from(pkt.head), usize::from(pkt.len));
        let from = pkt.frame.0 as usize * FRAME_SIZE + head;
        self.memory
            .copy_within(from..from + len, to.0 as usize * FRAME_SIZE + head);
        Packet { frame: to, ..*pkt }
    }

    fn free_count(&self) -> usize {
        self.free.len()
    }

    fn capacity(&self) -> usize {
        self.frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_with_places_bytes_after_headroom() {
        let mut pool = HeapFramePool::new(2);
        let pkt = pool.alloc_with(&[1, 2, 3]).unwrap();
        assert_eq!(pkt.head as usize, HEADROOM);
        assert_eq!(pkt.data(&pool), &[1, 2, 3]);
        assert_eq!(pool.free_count(), 1);
        pool.free(pkt.frame);
        assert_eq!(pool.free_count(), 2);
    }

    #[test]
    fn exhaustion_and_oversize_are_none() {
        let mut pool = HeapFramePool::new(1);
        assert!(pool.alloc_with(&vec![0; MAX_FRAME_LEN + 1]).is_none());
        assert_eq!(
            pool.free_count(),
            1,
            "an oversized frame must not leak a frame"
        );
        assert!(pool.alloc_with(&[0; 60]).is_some());
        assert!(pool.alloc_with(&[0; 60]).is_none());
    }
}
