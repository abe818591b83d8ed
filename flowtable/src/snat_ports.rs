//! SNAT (masquerade) source-port allocation: a fixed-size, lock-free bitmap
//! of ports per external IPv4 address.
//!
//! When a pod opens a connection to the outside, the first packet's slow
//! path picks an external IP and claims a free source port on it; the NAT
//! binding then owns that port until conntrack ages the flow out and
//! releases it. [`SnatPorts`] is the port set of one external IP, one bit
//! per port in a `Box<[AtomicU64]>` sized once in [`SnatPorts::new`] (8 KiB
//! for a full 64 Ki range); [`SnatPool`] is the fixed set of external IPs,
//! each with its own `SnatPorts`.
//!
//! # Why a bitmap
//!
//! It is bounded (no allocation after `new`, whatever the load: exhaustion
//! is `None`, which the caller counts as a drop reason), compact, and a
//! claim is a single atomic read-modify-write that cannot hand out a port
//! twice. Allocation starts at a position derived from a caller-supplied
//! `hint` (the flow hash), so concurrent allocations from different cores
//! usually land on different words and cache lines, and a port is reused
//! only after the scan has gone around, which keeps a just-released port
//! away from new flows for a while (the TIME_WAIT concern of RFC 6056 §3).
//! The hint does not pick the port — the first free port at or after the
//! hint's position does — so it needs no randomness of its own beyond a
//! well-mixed flow hash.
//!
//! # Concurrency contract
//!
//! - Any thread may call any method through `&self` at any time
//!   (`SnatPorts: Send + Sync`): worker cores allocate on their slow path,
//!   and whoever expires a NAT binding (the aging pass of a worker or the
//!   control plane) releases.
//! - A port is claimed with `fetch_or` of its bit and is ours only if the
//!   bit was clear in the value `fetch_or` returns. The read-modify-write is
//!   atomic, so of any number of concurrent claimers of one bit exactly one
//!   sees it clear: **a port is never held by two owners**. A claimer that
//!   loses a race retries on the same word with the value it got back, so
//!   a failed claim always means another claim succeeded: the allocator is
//!   lock-free (some caller always makes progress), not wait-free.
//! - Only the owner of a port releases it, once, with `fetch_and` clearing
//!   its bit. `release` of a port that is free, or outside the range,
//!   changes nothing and returns `false`, so a duplicate release is
//!   detectable; releasing *someone else's* port is a caller bug this type
//!   cannot detect.
//! - Orderings: release is `Release` and the claim is `Acquire`, so
//!   everything the previous owner did before releasing a port (removing
//!   its NAT binding from the flow table) happens-before the next owner's
//!   use of it. Scans read words `Relaxed`: they only choose which bit to
//!   try; the `fetch_or` decides.
//! - `None` from `allocate` means every word was seen full at some moment
//!   during the scan; a port released meanwhile behind the scan is not
//!   seen. `in_use` is a sum over words read one by one, exact when no
//!   call is running concurrently and otherwise a close estimate — good for
//!   stats, not for decisions.
//! - Nothing is ever freed or reallocated while shared; the bitmap lives as
//!   long as the allocator.

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};

/// Free source ports of one external address, as a lock-free bitmap.
#[derive(Debug)]
pub struct SnatPorts {
    /// Bit `i` of word `i / 64` stands for port `first + i`; set = in use.
    /// Bits past `capacity` in the last word are set forever, so scans
    /// never hand them out.
    words: Box<[AtomicU64]>,
    first: u16,
    /// Number of ports, up to 65536.
    capacity: u32,
}

impl SnatPorts {
    /// An allocator for the ports of `range`, all free. An empty range
    /// (start > end) gives an allocator that never has a port.
    pub fn new(range: RangeInclusive<u16>) -> Self {
        let (first, last) = (*range.start(), *range.end());
        let capacity = if first <= last {
            u32::from(last) - u32::from(first) + 1
        } else {
            0
        };
        let words = (0..capacity.div_ceil(64))
            .map(|w| {
                let valid = (capacity - w * 64).min(64);
                AtomicU64::new(if valid == 64 { 0 } else { u64::MAX << valid })
            })
            .collect();
        SnatPorts {
            words,
            first,
            capacity,
        }
    }

    /// Claims a free port, scanning from the position `hint % capacity`
    /// (pass the flow hash, so flows spread over the range and cores over
    /// the bitmap), or `None` when every port is taken. Never allocates,
    /// never panics.
    pub fn allocate(&self, hint: u64) -> Option<u16> {
        let start = u32::try_from(hint.checked_rem(u64::from(self.capacity))?).ok()?;
        let n = self.words.len();
        let first_word = usize::try_from(start / 64).ok()?;
        // Within each word, search upward from the hint's bit, wrapping.
        let rot = start % 64;
        for i in 0..n {
            let w = (first_word + i) % n;
            let word = &self.words[w];
            let mut seen = word.load(Ordering::Relaxed);
            while seen != u64::MAX {
                let bit = (rot + (!seen).rotate_right(rot).trailing_zeros()) % 64;
                let mask = 1u64 << bit;
                let prev = word.fetch_or(mask, Ordering::Acquire);
                if prev & mask == 0 {
                    return self.port_at(w, bit);
                }
                // Lost the race for this bit; `prev` is the word now.
                seen = prev;
            }
        }
        None
    }

    /// Frees `port`. Returns whether it was allocated; a port that was
    /// free or is outside the range is left alone and gives `false`.
    pub fn release(&self, port: u16) -> bool {
        let Some((word, mask)) = self.locate(port) else {
            return false;
        };
        word.fetch_and(!mask, Ordering::Release) & mask != 0
    }

    /// Whether `port` is currently allocated (false outside the range).
    pub fn is_allocated(&self, port: u16) -> bool {
        self.locate(port)
            .is_some_and(|(word, mask)| word.load(Ordering::Acquire) & mask != 0)
    }

    /// Ports allocated now (see the module doc for concurrent callers).
    pub fn in_use(&self) -> usize {
        let set: u64 = self
            .words
            .iter()
            .map(|w| u64::from(w.load(Ordering::Relaxed).count_ones()))
            .sum();
        let padding = self.words.len() as u64 * 64 - u64::from(self.capacity);
        usize::try_from(set - padding).unwrap_or(usize::MAX)
    }

    /// Number of ports in the range.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// The range of ports this allocator hands out (empty when capacity is 0).
    pub fn range(&self) -> RangeInclusive<u16> {
        match self.capacity {
            0 => RangeInclusive::new(1, 0),
            c => self.first..=self.port_offset(c - 1).unwrap_or(self.first),
        }
    }

    /// The bitmap word and bit mask of `port`, if it is in the range.
    fn locate(&self, port: u16) -> Option<(&AtomicU64, u64)> {
        let off = u32::from(port).checked_sub(u32::from(self.first))?;
        if off >= self.capacity {
            return None;
        }
        let word = self.words.get(usize::try_from(off / 64).ok()?)?;
        Some((word, 1u64 << (off % 64)))
    }

    /// The port of bit `bit` of word `w`.
    fn port_at(&self, w: usize, bit: u32) -> Option<u16> {
        self.port_offset(u32::try_from(w).ok()? * 64 + bit)
    }

    /// `first + off`; `None` only if `off` is beyond the range, which
    /// padding bits (set forever) rule out.
    fn port_offset(&self, off: u32) -> Option<u16> {
        u16::try_from(u32::from(self.first) + off).ok()
    }
}

/// The SNAT ports of a fixed set of external IPv4 addresses.
///
/// The set is fixed at creation, so lookup by address is a binary search of
/// a sorted array with no lock; each address's ports follow the
/// [`SnatPorts`] contract. A change of external addresses builds a new pool
/// (carried by the next datapath snapshot).
#[derive(Debug)]
pub struct SnatPool {
    /// Sorted, no duplicates; `ports[i]` belongs to `ips[i]`.
    ips: Box<[Ipv4Addr]>,
    ports: Box<[SnatPorts]>,
}

impl SnatPool {
    /// A pool of `range` on each of `ips` (duplicates are merged).
    pub fn new(ips: &[Ipv4Addr], range: RangeInclusive<u16>) -> Self {
        let mut sorted = ips.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let ports = sorted
            .iter()
            .map(|_| SnatPorts::new(range.clone()))
            .collect();
        SnatPool {
            ips: sorted.into_boxed_slice(),
            ports,
        }
    }

    /// The port allocator of `ip`, if `ip` is one of the pool's addresses.
    #[inline]
    pub fn ports(&self, ip: Ipv4Addr) -> Option<&SnatPorts> {
        let i = self.ips.binary_search(&ip).ok()?;
        self.ports.get(i)
    }

    /// Claims a port on `ip` (see [`SnatPorts::allocate`]); `None` if `ip`
    /// is not in the pool or its ports are exhausted.
    pub fn allocate(&self, ip: Ipv4Addr, hint: u64) -> Option<u16> {
        self.ports(ip)?.allocate(hint)
    }

    /// Frees `port` on `ip`; `false` if it was not allocated or `ip` is not
    /// in the pool.
    pub fn release(&self, ip: Ipv4Addr, port: u16) -> bool {
        self.ports(ip).is_some_and(|p| p.release(port))
    }

    /// The pool's addresses, sorted.
    pub fn ips(&self) -> &[Ipv4Addr] {
        &self.ips
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    fn drain(p: &SnatPorts, hint: u64) -> HashSet<u16> {
        let mut got = HashSet::new();
        for i in 0..p.capacity() as u64 {
            let port = p
                .allocate(hint.wrapping_add(i * 7919))
                .expect("a free port");
            assert!(p.range().contains(&port), "{port}");
            assert!(got.insert(port), "{port} handed out twice");
        }
        got
    }

    #[test]
    fn allocates_every_port_once_then_none() {
        for range in [100..=163u16, 100..=227, 100..=199, 7..=7, 65000..=65535] {
            let p = SnatPorts::new(range.clone());
            let want = usize::from(range.end() - range.start()) + 1;
            assert_eq!(p.capacity(), want);
            assert_eq!(p.range(), range);
            let got = drain(&p, 12345);
            assert_eq!(got.len(), want);
            assert_eq!(p.in_use(), want);
            for hint in [0, 1, 63, 64, u64::MAX] {
                assert_eq!(p.allocate(hint), None, "{range:?} exhausted");
            }
        }
    }

    #[test]
    fn full_u16_range() {
        let p = SnatPorts::new(0..=u16::MAX);
        assert_eq!(p.capacity(), 65536);
        assert_eq!(p.allocate(65535), Some(65535));
        assert_eq!(p.allocate(65536), Some(0));
        assert_eq!(p.in_use(), 2);
        assert!(p.release(65535));
        assert_eq!(p.in_use(), 1);
    }

    #[test]
    fn empty_range_has_no_ports() {
        #[allow(clippy::reversed_empty_ranges)]
        let p = SnatPorts::new(200..=100);
        assert_eq!(p.capacity(), 0);
        assert_eq!(p.in_use(), 0);
        assert_eq!(p.allocate(0), None);
        assert_eq!(p.allocate(u64::MAX), None);
        assert!(!p.release(150));
        assert!(p.range().is_empty());
    }

    #[test]
    fn hint_picks_the_start_of_the_scan() {
        let p = SnatPorts::new(1024..=65535);
        // On a free bitmap the port is exactly first + hint % capacity.
        assert_eq!(p.allocate(0), Some(1024));
        assert_eq!(p.allocate(5), Some(1029));
        assert_eq!(p.allocate(64512 + 7), Some(1031));
        // Taken: the next free one upward in the word.
        assert_eq!(p.allocate(5), Some(1030));
        assert_eq!(p.allocate(5), Some(1032));
        // Upward wraps within the word before moving to the next word.
        let q = SnatPorts::new(0..=127);
        for h in 60u16..64 {
            assert_eq!(q.allocate(u64::from(h)), Some(h));
        }
        assert_eq!(q.allocate(62), Some(0));
        // A full word sends the scan to the next one, same bit offset first.
        for _ in 0..59 {
            assert!(q.allocate(62).unwrap() < 64);
        }
        assert_eq!(q.allocate(62), Some(64 + 62));
        // Wrapping from the last word to the first.
        let r = SnatPorts::new(0..=99); // two words, 36 padding bits
        assert_eq!(r.allocate(99), Some(99));
        assert_eq!(r.allocate(99), Some(64));
    }

    #[test]
    fn release_and_reallocate() {
        let p = SnatPorts::new(100..=163);
        let all = drain(&p, 0);
        assert!(p.is_allocated(130));
        assert!(p.release(130));
        assert!(!p.is_allocated(130));
        assert_eq!(p.in_use(), 63);
        assert!(!p.release(130), "second release is a no-op");
        assert_eq!(p.allocate(999), Some(130), "the only free port");
        assert_eq!(p.allocate(999), None);
        for port in all {
            assert!(p.release(port));
        }
        assert_eq!(p.in_use(), 0);
        assert_eq!(drain(&p, 77).len(), 64);
    }

    #[test]
    fn releasing_outside_the_range_is_a_no_op() {
        let p = SnatPorts::new(100..=199);
        drain(&p, 3);
        for port in [0, 99, 200, 227, 255, u16::MAX] {
            assert!(!p.release(port), "{port}");
            assert!(!p.is_allocated(port), "{port}");
        }
        assert_eq!(p.in_use(), 100);
        assert_eq!(p.allocate(0), None, "padding bits stay taken");
    }

    #[test]
    fn pool_looks_up_by_ip() {
        let a = Ipv4Addr::new(192, 0, 2, 10);
        let b = Ipv4Addr::new(192, 0, 2, 1);
        let c = Ipv4Addr::new(198, 51, 100, 7);
        let pool = SnatPool::new(&[a, b, a, c], 2000..=2063);
        assert_eq!(pool.ips(), [b, a, c]);
        assert_eq!(pool.allocate(a, 0), Some(2000));
        assert_eq!(pool.allocate(a, 0), Some(2001));
        assert_eq!(pool.allocate(b, 0), Some(2000), "independent per IP");
        assert_eq!(pool.allocate(Ipv4Addr::new(10, 0, 0, 1), 0), None);
        assert!(pool.release(a, 2000));
        assert!(!pool.release(a, 2000));
        assert!(!pool.release(c, 2000));
        assert!(!pool.release(Ipv4Addr::UNSPECIFIED, 2001));
        assert_eq!(pool.ports(a).unwrap().in_use(), 1);
        assert_eq!(pool.ports(b).unwrap().in_use(), 1);
        assert_eq!(pool.ports(c).unwrap().in_use(), 0);
        let empty = SnatPool::new(&[], 1..=10);
        assert!(empty.ips().is_empty());
        assert_eq!(empty.allocate(a, 1), None);
    }

    /// Threads allocate and release on a small range for about a second,
    /// often hitting exhaustion. A port enters the test's global set right
    /// after the allocator handed it out and leaves it right before its
    /// release, so a port found already in the set would have two owners.
    #[test]
    fn concurrent_callers_never_share_a_port() {
        const THREADS: u64 = 4;
        let ports = Arc::new(SnatPorts::new(5000..=5127)); // 128 ports
        let held = Arc::new(Mutex::new(HashSet::new()));
        let (allocs, releases, exhausted) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let deadline = Instant::now() + Duration::from_millis(1000);
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (ports, held) = (Arc::clone(&ports), Arc::clone(&held));
                let (allocs, releases, exhausted) = (
                    Arc::clone(&allocs),
                    Arc::clone(&releases),
                    Arc::clone(&exhausted),
                );
                std::thread::spawn(move || {
                    let mut mine: Vec<u16> = Vec::new();
                    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ t;
                    while Instant::now() < deadline {
                        for _ in 0..256 {
                            rng ^= rng << 13;
                            rng ^= rng >> 7;
                            rng ^= rng << 17;
                            // Hold up to ~50 each: 4 threads want more than 128.
                            if rng % 100 < 55 && mine.len() < 50 {
                                match ports.allocate(rng) {
                                    Some(p) => {
                                        assert!(held.lock().unwrap().insert(p), "{p} owned twice");
                                        mine.push(p);
                                        allocs.fetch_add(1, Ordering::Relaxed);
                                    }
                                    None => {
                                        exhausted.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            } else if !mine.is_empty() {
                                let p = mine.swap_remove((rng >> 32) as usize % mine.len());
                                assert!(held.lock().unwrap().remove(&p));
                                assert!(ports.release(p), "{p} was ours");
                                releases.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        let mut still_held = 0;
        let leftovers: Vec<Vec<u16>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        for mine in &leftovers {
            still_held += mine.len();
        }
        let (a, r) = (
            allocs.load(Ordering::Relaxed),
            releases.load(Ordering::Relaxed),
        );
        assert_eq!(a - r, still_held);
        assert_eq!(ports.in_use(), still_held);
        assert_eq!(held.lock().unwrap().len(), still_held);
        for p in leftovers.into_iter().flatten() {
            assert!(ports.release(p));
        }
        assert_eq!(ports.in_use(), 0);
        assert!(a > 10_000, "only {a} allocations");
        assert!(
            exhausted.load(Ordering::Relaxed) > 0,
            "never hit exhaustion"
        );
        println!(
            "{a} allocations, {r} releases, {} exhausted",
            exhausted.load(Ordering::Relaxed)
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Allocate(u64),
        Release(u16),
    }

    proptest! {
        /// Against a `HashSet` of allocated ports: allocation succeeds iff
        /// the model has a free port, gives one the model does not hold,
        /// and release reports what the model says.
        #[test]
        fn matches_hash_set_model(
            first in 1u16..1000,
            len in 0u16..200,
            ops in proptest::collection::vec(
                prop_oneof![
                    any::<u64>().prop_map(Op::Allocate),
                    (0u16..1300).prop_map(Op::Release),
                ],
                0..400,
            ),
        ) {
            let range = first..=first.wrapping_add(len).wrapping_sub(1);
            let p = SnatPorts::new(range.clone());
            let cap = usize::from(len);
            prop_assert_eq!(p.capacity(), cap);
            let mut model: HashSet<u16> = HashSet::new();
            for op in ops {
                match op {
                    Op::Allocate(hint) => match p.allocate(hint) {
                        Some(port) => {
                            prop_assert!(range.contains(&port));
                            prop_assert!(model.insert(port), "{} twice", port);
                        }
                        None => prop_assert_eq!(model.len(), cap),
                    },
                    Op::Release(port) => {
                        prop_assert_eq!(p.release(port), model.remove(&port));
                    }
                }
                prop_assert_eq!(p.in_use(), model.len());
            }
            for port in range.start().saturating_sub(2)..=range.end().saturating_add(2) {
                prop_assert_eq!(p.is_allocated(port), model.contains(&port));
            }
        }
    }
}
