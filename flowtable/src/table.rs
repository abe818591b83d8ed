//! The flow cache: a concurrent exact-match table from [`FlowKey`] to a
//! [`FlowValue`] with per-flow counters, fixed in size at creation.
//!
//! # Layout
//!
//! Two arrays, both allocated once:
//!
//! - **Buckets**: a power-of-two array of 64-byte buckets of 8 slots. A slot
//!   is one `AtomicU64`: the high 32 bits of the key's hash (a signature)
//!   and the index of the entry plus one; 0 is an empty slot. A key lives in
//!   its primary bucket, or in its secondary one when the primary is full,
//!   so a lookup almost always reads one cache line of index and, thanks to
//!   the signatures, exactly one entry: two cache misses per lookup, the
//!   minimum for a key stored outside the index.
//! - **Entries**: a slab of 128-byte entries. The first cache line holds
//!   what a lookup reads (a sequence word, the 48-byte key, the 8-byte
//!   value); the second what a hit writes (packets, bytes, last seen,
//!   created). Free entries sit on a lock-free stack (Treiber, with a tag
//!   against ABA).
//!
//! Sizing: at most `capacity` flows live at once (a new flow reserves one
//! of `capacity` units with a CAS, or evicts and takes its victim's unit);
//! the slab has [`REPLACE_SPARES`] entries more, because replacing a value
//! publishes a fresh entry before the old one is released. The index has
//! 2 × `capacity` slots (8 bytes each, against 128 per entry), so it is at
//! most half full: at that load about 2% of keys overflow to their
//! secondary bucket and both buckets of a key are practically never full.
//! (At 80% load, primary-first placement overflows a fifth of the buckets;
//! two-choice placement copes, but then a lookup must read both buckets.) Both arrays
//! are allocated once, on transparent huge pages where the kernel allows,
//! since at a million flows every lookup would otherwise also miss the TLB
//! twice.
//!
//! # Concurrency contract
//!
//! - **Readers** (`lookup`, `lookup_batch`, `for_each`) take no lock and
//!   never wait: they load a slot, read the entry it names under its
//!   sequence word, and treat any sign of a concurrent change as a miss.
//!   Any number of threads may read at once.
//! - **Writers** (`insert`, `remove`, `retain`, `set_state`, `credit`) may
//!   run on any number of threads at once, alongside readers. They never
//!   block each other either: slots change only by compare-and-swap, and
//!   an entry is written only by the thread that took it off the free
//!   stack (or won the CAS that evicted it).
//! - **An entry's key and value never change while it is published.** A new
//!   value for a key is a new entry, swapped into the key's slot with one
//!   CAS; a reader sees the old value or the new one, never a mix. What does
//!   change in place is benign to race on: counters (atomic adds), last
//!   seen, and the embryonic/established state used by eviction.
//! - **What a reader sees during a write**: an entry being (re)written has
//!   an odd sequence word, and its sequence word changes every time it is
//!   retired or rewritten. A reader checks the word before and after
//!   reading key and value (a seqlock, with the fences of Boehm's "Can
//!   seqlocks get along with programming language memory models?"), so it
//!   either returns a key and value that were published together, or
//!   misses. It never returns a value that was not inserted for that key.
//! - **Reclamation**: entries are type-stable (the slab is never freed
//!   while the table lives), so a reader holding a stale index reads valid
//!   memory, and the sequence check rejects what it reads if the entry was
//!   reused. This is RCU's `SLAB_TYPESAFE_BY_RCU` discipline without grace
//!   periods: no epoch, no deferred free, no reader registration.
//! - **Benign races, stated**: two threads inserting the same new key at
//!   the same moment may both succeed, leaving two entries for it until one
//!   is evicted or removed (lookups return either; `remove` removes both).
//!   A `credit` racing with the eviction of its flow may add to the flow
//!   that reuses the entry; the sequence check makes the window a few
//!   instructions wide. OVS's datapath flow counters accept the same.
//!
//! # Eviction
//!
//! When both buckets of a new key are full, or the slab is exhausted, an
//! entry is evicted instead of allocating: among the candidates, embryonic
//! flows (not yet seen both ways) go before established ones, and within a
//! class the one idle longest goes first. Candidates are the 16 slots of
//! the key's buckets; if those hold nothing (slab exhausted by other
//! buckets), a clock hand samples the next buckets of the table, as Redis
//! samples for approximate LRU.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use arrayvec::ArrayVec;
use xvs_hw::mem::{advise_huge_pages, prefetch};

use crate::key::{FlowKey, KEY_WORDS};

/// Slots per bucket: 8 × 8 bytes fill one cache line.
const SLOTS: usize = 8;
/// Buckets a global eviction looks at before it settles for the best seen.
const EVICT_SAMPLE_BUCKETS: usize = 8;
/// Entries beyond `capacity`, for value replacements in flight: as many
/// threads as this may replace values at once without evicting.
pub const REPLACE_SPARES: usize = 256;

/// What the table caches for a flow: an action handle and the datapath
/// snapshot generation it was computed under, packed in one word so that
/// readers load both at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowValue(u64);

impl FlowValue {
    pub const fn new(action: u32, generation: u32) -> Self {
        FlowValue((generation as u64) << 32 | action as u64)
    }

    /// Index of the cached actions in the datapath's action table.
    #[inline]
    #[allow(clippy::cast_possible_truncation)] // the low half
    pub const fn action(self) -> u32 {
        self.0 as u32
    }

    /// The snapshot generation the actions were computed under.
    #[inline]
    pub const fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    pub const fn to_bits(self) -> u64 {
        self.0
    }

    pub const fn from_bits(bits: u64) -> Self {
        FlowValue(bits)
    }
}

/// Whether a flow has been seen in both directions: eviction takes
/// embryonic flows first (half-open scans and floods die before real
/// connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum FlowState {
    Embryonic = 0,
    Established = 1,
}

/// A reference to a cached flow, as a lookup returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowHit {
    pub value: FlowValue,
    /// The entry's index, for `credit` and `set_state`.
    pub handle: u32,
    /// The entry's sequence word when it was read; `credit` refuses a
    /// handle whose entry has been reused since.
    seq: u32,
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    /// The flow's entry.
    pub handle: u32,
    /// The key was there: its value was replaced, its counters kept.
    pub replaced: bool,
    /// Another flow was evicted to make room.
    pub evicted: bool,
}

/// A consistent copy of one entry, for dumps and sweeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowView {
    pub key: FlowKey,
    pub value: FlowValue,
    pub state: FlowState,
    pub packets: u64,
    pub bytes: u64,
    pub last_seen: u64,
    pub created: u64,
    pub handle: u32,
}

#[repr(C, align(64))]
struct Bucket {
    slots: [AtomicU64; SLOTS],
}

#[repr(C, align(64))]
struct Entry {
    // First cache line: what a lookup reads.
    seq: AtomicU32,
    state: AtomicU32,
    key: [AtomicU64; KEY_WORDS],
    value: AtomicU64,
    // Second cache line: what a hit writes.
    packets: AtomicU64,
    bytes: AtomicU64,
    last_seen: AtomicU64,
    created: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Bucket>() == 64);
const _: () = assert!(std::mem::size_of::<Entry>() == 128);
const _: () = assert!(
    std::mem::offset_of!(Entry, packets) == 64,
    "lookup fields fill the first line"
);

impl Entry {
    fn new() -> Self {
        Entry {
            seq: AtomicU32::new(0),
            state: AtomicU32::new(0),
            key: std::array::from_fn(|_| AtomicU64::new(0)),
            value: AtomicU64::new(0),
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            last_seen: AtomicU64::new(0),
            created: AtomicU64::new(0),
        }
    }

    /// Reads key and value if no write overlapped the read.
    #[inline]
    fn read(&self) -> Option<(u32, [u64; KEY_WORDS], u64)> {
        let s1 = self.seq.load(Ordering::Acquire);
        if s1 & 1 == 1 {
            return None;
        }
        let key = std::array::from_fn(|i| self.key[i].load(Ordering::Relaxed));
        let value = self.value.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        (self.seq.load(Ordering::Relaxed) == s1).then_some((s1, key, value))
    }

    /// Reads the value if the entry holds `key` and no write overlapped.
    #[inline]
    fn read_if(&self, key: &[u64; KEY_WORDS]) -> Option<(u32, u64)> {
        let s1 = self.seq.load(Ordering::Acquire);
        if s1 & 1 == 1 {
            return None;
        }
        for (stored, want) in self.key.iter().zip(key) {
            if stored.load(Ordering::Relaxed) != *want {
                return None;
            }
        }
        let value = self.value.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        (self.seq.load(Ordering::Relaxed) == s1).then_some((s1, value))
    }

    /// Writes a new flow into an entry this thread owns (off the free stack
    /// or won by eviction), as one seqlock write.
    fn write(
        &self,
        key: &[u64; KEY_WORDS],
        value: u64,
        state: FlowState,
        now: u64,
        carried: (u64, u64, u64),
    ) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1) | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for (slot, w) in self.key.iter().zip(key) {
            slot.store(*w, Ordering::Relaxed);
        }
        self.value.store(value, Ordering::Relaxed);
        self.state.store(state as u32, Ordering::Relaxed);
        let (packets, bytes, created) = carried;
        self.packets.store(packets, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
        self.created
            .store(if created == 0 { now } else { created }, Ordering::Relaxed);
        self.last_seen.store(now, Ordering::Relaxed);
        self.seq
            .store((s.wrapping_add(1) | 1).wrapping_add(1), Ordering::Release);
    }

    /// Invalidates an entry that was just unpublished: readers that still
    /// hold its index see the sequence word change and miss.
    fn retire(&self) {
        self.seq.fetch_add(2, Ordering::Release);
    }

    fn view(&self, handle: u32) -> Option<FlowView> {
        let (_, key, value) = self.read()?;
        Some(FlowView {
            key: FlowKey::from_words(key),
            value: FlowValue::from_bits(value),
            state: if self.state.load(Ordering::Relaxed) == FlowState::Established as u32 {
                FlowState::Established
            } else {
                FlowState::Embryonic
            },
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            last_seen: self.last_seen.load(Ordering::Relaxed),
            created: self.created.load(Ordering::Relaxed),
            handle,
        })
    }
}

/// A lock-free stack of free entry indices (Treiber). The head packs a
/// 32-bit tag, bumped by every change, with the top index plus one, so a
/// pop that read a stale head fails its CAS instead of corrupting the list
/// (the ABA problem).
pub(crate) struct FreeStack {
    head: AtomicU64,
    next: Box<[AtomicU32]>,
}

impl FreeStack {
    pub(crate) fn full(n: u32) -> Self {
        // Entry i links to i+1; the head is entry 0.
        let next = (0..n)
            .map(|i| AtomicU32::new(if i + 1 < n { i + 2 } else { 0 }))
            .collect();
        FreeStack {
            head: AtomicU64::new(if n > 0 { 1 } else { 0 }),
            next,
        }
    }

    pub(crate) fn pop(&self) -> Option<u32> {
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let top = (head & 0xffff_ffff) as u32;
            let idx = top.checked_sub(1)?;
            let next = self.next[idx as usize].load(Ordering::Relaxed);
            let new = ((head >> 32).wrapping_add(1) << 32) | u64::from(next);
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(idx),
                Err(now) => head = now,
            }
        }
    }

    pub(crate) fn push(&self, idx: u32) {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            self.next[idx as usize].store((head & 0xffff_ffff) as u32, Ordering::Relaxed);
            let new = ((head >> 32).wrapping_add(1) << 32) | u64::from(idx + 1);
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }
}

/// The concurrent flow cache. See the module documentation for the
/// contract.
pub struct FlowTable {
    buckets: Box<[Bucket]>,
    bucket_mask: usize,
    entries: Box<[Entry]>,
    free: FreeStack,
    capacity: usize,
    /// Flows published now; never above `capacity`.
    live: AtomicUsize,
    evict_hand: AtomicUsize,
    seed: u64,
}

/// A slot that holds a flow: (bucket, slot index, slot value).
type SlotRef = (usize, usize, u64);

/// Where a key may live, computed once from its hash.
#[derive(Clone, Copy)]
struct Place {
    sig: u32,
    buckets: [usize; 2],
}

#[inline]
fn slot_sig(slot: u64) -> u32 {
    (slot >> 32) as u32
}

#[inline]
fn slot_entry(slot: u64) -> Option<u32> {
    ((slot & 0xffff_ffff) as u32).checked_sub(1)
}

#[inline]
fn make_slot(sig: u32, entry: u32) -> u64 {
    u64::from(sig) << 32 | u64::from(entry + 1)
}

impl FlowTable {
    /// A table for `capacity` flows (at least 1, at most `u32::MAX - 1`),
    /// with all its memory allocated now. The hash seed is random, so
    /// nobody can precompute keys that collide in a given table.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_capacity_and_seed(capacity, foldhash_seed())
    }

    /// As `with_capacity`, with a fixed seed (tests, benchmarks).
    pub fn with_capacity_and_seed(capacity: usize, seed: u64) -> Self {
        let capacity = capacity.clamp(1, u32::MAX as usize - 1 - REPLACE_SPARES);
        let entries = capacity + REPLACE_SPARES;
        let slots = 2 * capacity;
        let buckets = slots.div_ceil(SLOTS).next_power_of_two().max(2);
        FlowTable {
            buckets: huge_slice(buckets, |_| Bucket {
                slots: std::array::from_fn(|_| AtomicU64::new(0)),
            }),
            bucket_mask: buckets - 1,
            entries: huge_slice(entries, |_| Entry::new()),
            free: FreeStack::full(u32::try_from(entries).unwrap_or(u32::MAX)),
            capacity,
            live: AtomicUsize::new(0),
            evict_hand: AtomicUsize::new(0),
            seed,
        }
    }

    /// Flows the table can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Takes one unit of capacity for a new flow, if any is left.
    fn reserve(&self) -> bool {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |l| {
                (l < self.capacity).then_some(l + 1)
            })
            .is_ok()
    }

    /// Flows in the table now (duplicates from racing inserts included).
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of memory per flow of capacity: entry plus its share of the
    /// index.
    pub fn bytes_per_entry(&self) -> f64 {
        let total = std::mem::size_of_val(&*self.entries)
            + std::mem::size_of_val(&*self.buckets)
            + std::mem::size_of_val(&*self.free.next);
        total as f64 / self.capacity() as f64
    }

    #[inline]
    #[allow(clippy::cast_possible_truncation)] // bucket indices are masked
    fn place(&self, key: &FlowKey) -> Place {
        let h = key.hash(self.seed);
        let sig = (h >> 32) as u32;
        let b1 = h as usize & self.bucket_mask;
        let mut b2 = (h.rotate_right(17) as usize ^ (sig as usize).wrapping_mul(0x5bd1_e995))
            & self.bucket_mask;
        if b2 == b1 {
            b2 ^= 1;
        }
        Place {
            sig,
            buckets: [b1, b2],
        }
    }

    /// Finds `key` in its buckets: (bucket, slot index, slot value, entry
    /// sequence, value).
    #[inline]
    fn find(&self, key: &FlowKey, place: Place) -> Option<(usize, usize, u64, u32, u64)> {
        for b in place.buckets {
            for (s, slot) in self.buckets[b].slots.iter().enumerate() {
                let v = slot.load(Ordering::Acquire);
                if slot_sig(v) != place.sig {
                    continue;
                }
                let Some(e) = slot_entry(v) else { continue };
                if let Some((seq, value)) = self.entries[e as usize].read_if(key.words()) {
                    return Some((b, s, v, seq, value));
                }
            }
        }
        None
    }

    /// Looks `key` up. Never blocks, never waits for a writer.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<FlowHit> {
        let place = self.place(key);
        self.find(key, place).and_then(|(_, _, slot, seq, value)| {
            Some(FlowHit {
                value: FlowValue::from_bits(value),
                handle: slot_entry(slot)?,
                seq,
            })
        })
    }

    /// Looks up every key of `keys` into `out` (same length; extra outputs
    /// are left alone). Works in stages over up to 64 keys at a time, as
    /// DPDK's `rte_hash_lookup_bulk` does: hash every key and prefetch its
    /// primary bucket; match signatures and prefetch the candidate entry;
    /// then compare keys. A prefetch does not wait for its line, so a
    /// batch's cache misses overlap instead of queueing one behind another.
    pub fn lookup_batch(&self, keys: &[FlowKey], out: &mut [Option<FlowHit>]) {
        const CHUNK: usize = 64;
        for (keys, out) in keys.chunks(CHUNK).zip(out.chunks_mut(CHUNK)) {
            let keys = &keys[..keys.len().min(out.len())];
            // Filled as far as used, never zeroed whole.
            let mut places: ArrayVec<Place, CHUNK> = ArrayVec::new();
            for key in keys {
                let p = self.place(key);
                prefetch(&self.buckets[p.buckets[0]]);
                places.push(p);
            }
            let mut candidates: ArrayVec<u32, CHUNK> = ArrayVec::new();
            for p in &places {
                let e = self.match_primary(p);
                if e != u32::MAX {
                    prefetch(&self.entries[e as usize]);
                }
                candidates.push(e);
            }
            for (((key, p), &e), out) in keys
                .iter()
                .zip(&places)
                .zip(&candidates)
                .zip(out.iter_mut())
            {
                let fast = (e != u32::MAX)
                    .then(|| self.entries[e as usize].read_if(key.words()))
                    .flatten()
                    .map(|(seq, value)| FlowHit {
                        value: FlowValue::from_bits(value),
                        handle: e,
                        seq,
                    });
                // A key that overflowed to its secondary bucket, a signature
                // collision, or an entry changing under us: the full search.
                *out = fast.or_else(|| {
                    self.find(key, *p).and_then(|(_, _, slot, seq, value)| {
                        Some(FlowHit {
                            value: FlowValue::from_bits(value),
                            handle: slot_entry(slot)?,
                            seq,
                        })
                    })
                });
            }
        }
    }

    /// The entry of the first slot of `p`'s primary bucket whose signature
    /// matches, or `u32::MAX`. Builds a mask of matching slots without a
    /// branch per slot (their outcome is random, so branches would be
    /// mispredicted), then takes its lowest bit.
    #[inline]
    fn match_primary(&self, p: &Place) -> u32 {
        let slots = &self.buckets[p.buckets[0]].slots;
        let mut mask = 0u32;
        let mut values = [0u64; SLOTS];
        for (j, (slot, v)) in slots.iter().zip(values.iter_mut()).enumerate() {
            *v = slot.load(Ordering::Acquire);
            mask |= u32::from(slot_sig(*v) == p.sig && *v != 0) << j;
        }
        if mask == 0 {
            return u32::MAX;
        }
        slot_entry(values[mask.trailing_zeros() as usize]).unwrap_or(u32::MAX)
    }

    /// Adds `packets` and `bytes` to a flow found by a lookup and records
    /// `now` as its last-seen time. Does nothing if the entry was reused
    /// since the lookup.
    #[inline]
    pub fn credit(&self, hit: &FlowHit, packets: u64, bytes: u64, now: u64) {
        let Some(e) = self.entries.get(hit.handle as usize) else {
            return;
        };
        if e.seq.load(Ordering::Relaxed) != hit.seq {
            return;
        }
        e.packets.fetch_add(packets, Ordering::Relaxed);
        e.bytes.fetch_add(bytes, Ordering::Relaxed);
        e.last_seen.store(now, Ordering::Relaxed);
    }

    /// Marks a flow embryonic or established (for eviction order).
    pub fn set_state(&self, hit: &FlowHit, state: FlowState) {
        if let Some(e) = self.entries.get(hit.handle as usize) {
            if e.seq.load(Ordering::Relaxed) == hit.seq {
                e.state.store(state as u32, Ordering::Relaxed);
            }
        }
    }

    /// Inserts `key` → `value`, or replaces the value of an existing key
    /// (keeping its counters). When there is no room, evicts (see the
    /// module documentation); it never allocates. Returns `None` only if
    /// the table holds no entry it could evict, which takes a table of
    /// capacity smaller than its concurrent inserters.
    pub fn insert(
        &self,
        key: &FlowKey,
        value: FlowValue,
        state: FlowState,
        now: u64,
    ) -> Option<Inserted> {
        let place = self.place(key);
        if let Some((b, s, old_slot, _, _)) = self.find(key, place) {
            return self.replace(key, place, b, s, old_slot, value, state, now);
        }
        // Room for one more flow: a unit of capacity and a free entry, or
        // a victim's entry and unit.
        let (entry, evicted) = if self.reserve() {
            match self.free.pop() {
                Some(e) => (e, false),
                None => {
                    // More replacements in flight than spares: give up
                    // rather than exceed the memory bound.
                    self.live.fetch_sub(1, Ordering::Relaxed);
                    return None;
                }
            }
        } else {
            (self.evict_for(place, None)?, true)
        };
        self.entries[entry as usize].write(key.words(), value.to_bits(), state, now, (0, 0, 0));
        let new_slot = make_slot(place.sig, entry);
        loop {
            if let Some((b, s)) = self.empty_slot(place) {
                if self.buckets[b].slots[s]
                    .compare_exchange(0, new_slot, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return Some(Inserted {
                        handle: entry,
                        replaced: false,
                        evicted,
                    });
                }
                continue;
            }
            // Both buckets full: move a resident to its other bucket if that
            // has room (one cuckoo step), else replace the best victim.
            if self.displace(place) {
                continue;
            }
            let Some((b, s, victim_slot)) = self.victim_in(place) else {
                continue;
            };
            if self.buckets[b].slots[s]
                .compare_exchange(victim_slot, new_slot, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                if let Some(victim) = slot_entry(victim_slot) {
                    self.entries[victim as usize].retire();
                    self.free.push(victim);
                }
                // The victim's unit of capacity is freed; ours was taken.
                self.live.fetch_sub(1, Ordering::Relaxed);
                return Some(Inserted {
                    handle: entry,
                    replaced: false,
                    evicted: true,
                });
            }
        }
    }

    /// Publishes a new entry for an existing key in its slot.
    #[allow(clippy::too_many_arguments)]
    fn replace(
        &self,
        key: &FlowKey,
        place: Place,
        b: usize,
        s: usize,
        old_slot: u64,
        value: FlowValue,
        state: FlowState,
        now: u64,
    ) -> Option<Inserted> {
        let old = slot_entry(old_slot)?;
        let old_entry = &self.entries[old as usize];
        // A spare entry, or (more replacements in flight than spares) one
        // evicted from another flow, never from the flow being replaced.
        let (entry, evicted) = match self.free.pop() {
            Some(e) => (e, false),
            None => {
                let e = self.evict_for(place, Some(old))?;
                self.live.fetch_sub(1, Ordering::Relaxed);
                (e, true)
            }
        };
        let carried = (
            old_entry.packets.load(Ordering::Relaxed),
            old_entry.bytes.load(Ordering::Relaxed),
            old_entry.created.load(Ordering::Relaxed),
        );
        self.entries[entry as usize].write(key.words(), value.to_bits(), state, now, carried);
        let new_slot = make_slot(place.sig, entry);
        if self.buckets[b].slots[s]
            .compare_exchange(old_slot, new_slot, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            old_entry.retire();
            self.free.push(old);
            Some(Inserted {
                handle: entry,
                replaced: true,
                evicted,
            })
        } else {
            // Someone removed or replaced it meanwhile: start over with our
            // entry given back.
            self.entries[entry as usize].retire();
            self.free.push(entry);
            self.insert(key, value, state, now)
        }
    }

    /// Makes room in one of `place`'s buckets by moving a flow living there
    /// from its primary bucket to its secondary one, if that one has a free
    /// slot (one cuckoo step).
    /// The flow is copied into a spare entry published in the other bucket
    /// before its old slot is cleared, so a concurrent lookup finds the old
    /// entry or the copy, never neither; two slots never name one entry, so
    /// every entry is freed exactly once. Counter updates that land on the
    /// old entry during the move are lost. Returns whether a slot was freed.
    fn displace(&self, place: Place) -> bool {
        for b in place.buckets {
            for (s, slot) in self.buckets[b].slots.iter().enumerate() {
                let v = slot.load(Ordering::Acquire);
                let Some(e) = slot_entry(v) else { continue };
                let old = &self.entries[e as usize];
                let Some((_, key, value)) = old.read() else {
                    continue;
                };
                let theirs = self.place(&FlowKey::from_words(key));
                // Only from its primary bucket to its secondary: readers scan the
                // primary first, so with the copy published in the secondary
                // before the original leaves the primary, a reader always
                // meets one of the two. (Moving the other way, a reader could
                // pass the primary before the copy lands and the secondary
                // after the original left.)
                if theirs.buckets[0] != b {
                    continue;
                }
                let alt = theirs.buckets[1];
                let Some(free) = self.buckets[alt]
                    .slots
                    .iter()
                    .position(|x| x.load(Ordering::Relaxed) == 0)
                else {
                    continue;
                };
                let Some(copy) = self.free.pop() else {
                    return false;
                };
                let state = if old.state.load(Ordering::Relaxed) == FlowState::Established as u32 {
                    FlowState::Established
                } else {
                    FlowState::Embryonic
                };
                let carried = (
                    old.packets.load(Ordering::Relaxed),
                    old.bytes.load(Ordering::Relaxed),
                    old.created.load(Ordering::Relaxed),
                );
                self.entries[copy as usize].write(
                    &key,
                    value,
                    state,
                    old.last_seen.load(Ordering::Relaxed),
                    carried,
                );
                let copy_slot = make_slot(slot_sig(v), copy);
                if self.buckets[alt].slots[free]
                    .compare_exchange(0, copy_slot, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    self.entries[copy as usize].retire();
                    self.free.push(copy);
                    continue;
                }
                if self.buckets[b].slots[s]
                    .compare_exchange(v, 0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    old.retire();
                    self.free.push(e);
                    return true;
                }
                // The flow was removed or replaced meanwhile: withdraw the
                // copy. If someone already took it out, they freed it (and
                // counted it out of `live`, which never counted it in).
                if self.buckets[alt].slots[free]
                    .compare_exchange(copy_slot, 0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    self.entries[copy as usize].retire();
                    self.free.push(copy);
                } else {
                    self.live.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        false
    }

    /// A free slot for a key: in its primary bucket if there is one (the
    /// one batched lookups prefetch), else in its secondary bucket.
    fn empty_slot(&self, place: Place) -> Option<(usize, usize)> {
        place.buckets.into_iter().find_map(|b| {
            self.buckets[b]
                .slots
                .iter()
                .position(|s| s.load(Ordering::Relaxed) == 0)
                .map(|s| (b, s))
        })
    }

    /// Eviction rank: lower goes first (embryonic before established, then
    /// idle longest).
    fn rank(&self, entry: u32) -> (u32, u64) {
        let e = &self.entries[entry as usize];
        (
            e.state.load(Ordering::Relaxed),
            e.last_seen.load(Ordering::Relaxed),
        )
    }

    /// The lowest-ranked flow in `buckets`, other than `spare`.
    fn best_victim(
        &self,
        buckets: impl Iterator<Item = usize>,
        spare: Option<u32>,
    ) -> Option<SlotRef> {
        let mut best: Option<((u32, u64), SlotRef)> = None;
        for b in buckets {
            for (s, slot) in self.buckets[b].slots.iter().enumerate() {
                let v = slot.load(Ordering::Acquire);
                let Some(e) = slot_entry(v) else { continue };
                if Some(e) == spare {
                    continue;
                }
                let r = self.rank(e);
                if best.is_none_or(|(br, _)| r < br) {
                    best = Some((r, (b, s, v)));
                }
            }
        }
        best.map(|(_, at)| at)
    }

    fn victim_in(&self, place: Place) -> Option<SlotRef> {
        self.best_victim(place.buckets.into_iter(), None)
    }

    /// Evicts a flow to make room for one at `place`: the best victim of its
    /// buckets, or of a sample of buckets under the clock hand, never
    /// `spare`. Returns the victim's entry, now owned by the caller, who
    /// also inherits the victim's unit of capacity (`live` is unchanged).
    fn evict_for(&self, place: Place, spare: Option<u32>) -> Option<u32> {
        for _ in 0..self.buckets.len().div_ceil(EVICT_SAMPLE_BUCKETS) + 1 {
            let candidate = self
                .best_victim(place.buckets.into_iter(), spare)
                .or_else(|| {
                    let start = self
                        .evict_hand
                        .fetch_add(EVICT_SAMPLE_BUCKETS, Ordering::Relaxed);
                    self.best_victim(
                        (start..start + EVICT_SAMPLE_BUCKETS).map(|b| b & self.bucket_mask),
                        spare,
                    )
                });
            let Some((b, s, v)) = candidate else { continue };
            if self.buckets[b].slots[s]
                .compare_exchange(v, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                let e = slot_entry(v)?;
                self.entries[e as usize].retire();
                return Some(e);
            }
        }
        None
    }

    /// Removes `key` (every copy of it). Returns whether it was there.
    pub fn remove(&self, key: &FlowKey) -> bool {
        let place = self.place(key);
        let mut removed = false;
        while let Some((b, s, v, _, _)) = self.find(key, place) {
            removed |= self.unpublish(b, s, v);
        }
        removed
    }

    /// Takes the entry in slot `s` of bucket `b` out, if the slot still
    /// holds `v`, and returns it to the free stack.
    fn unpublish(&self, b: usize, s: usize, v: u64) -> bool {
        if self.buckets[b].slots[s]
            .compare_exchange(v, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        if let Some(e) = slot_entry(v) {
            self.entries[e as usize].retire();
            self.free.push(e);
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
        true
    }

    /// Calls `f` on a consistent copy of every flow.
    pub fn for_each(&self, mut f: impl FnMut(&FlowView)) {
        for bucket in self.buckets.iter() {
            for slot in &bucket.slots {
                let v = slot.load(Ordering::Acquire);
                let Some(e) = slot_entry(v) else { continue };
                if let Some(view) = self.entries[e as usize].view(e) {
                    f(&view);
                }
            }
        }
    }

    /// Removes every flow for which `keep` returns false (aging, and
    /// invalidation of flows built from an old snapshot). Runs alongside
    /// lookups and inserts. Returns how many it removed.
    pub fn retain(&self, mut keep: impl FnMut(&FlowView) -> bool) -> usize {
        let mut removed = 0;
        for (b, bucket) in self.buckets.iter().enumerate() {
            for (s, slot) in bucket.slots.iter().enumerate() {
                let v = slot.load(Ordering::Acquire);
                let Some(e) = slot_entry(v) else { continue };
                let Some(view) = self.entries[e as usize].view(e) else {
                    continue;
                };
                if !keep(&view) && self.unpublish(b, s, v) {
                    removed += 1;
                }
            }
        }
        removed
    }
}

/// A slice of `n` values made by `make`, its memory advised to the kernel
/// for huge pages before the first write (advice that fails is ignored:
/// the table works the same on small pages, only slower).
pub(crate) fn huge_slice<T>(n: usize, make: impl FnMut(usize) -> T) -> Box<[T]> {
    let mut v = Vec::with_capacity(n);
    let _ = advise_huge_pages(v.spare_capacity_mut());
    v.extend((0..n).map(make));
    v.into_boxed_slice()
}

/// A random seed, from the standard library's per-process random keys.
fn foldhash_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5eed);
    h.finish()
}
