//! MAC learning table with aging, one per worker, for all bridge domains.
//!
//! Keyed by (bridge domain, VLAN id, MAC) like the Linux bridge's FDB, so
//! the same MAC in two domains or two VLANs is two entries. An entry is
//! valid for `max_age` after the last frame from that MAC; lookups treat an
//! older entry as absent (so aging is exact without a timer), and a sweep
//! reclaims expired entries when the table is full. Capacity is fixed: when
//! every entry is live, new MACs are not learned (counted), and frames to
//! them are flooded, which is what a full hardware FDB does too.
//!
//! Source MACs are chosen by whoever sends, so the table resists being
//! made slow on purpose: the hasher is seeded at random (foldhash; no
//! precomputed collisions), and a full table is swept at most once per
//! `max_age / 16`, so a port sending random source MACs cannot turn every
//! frame into a walk over the whole table.
//!
//! Concurrency: owned by one worker, no sharing. With several workers each
//! learns what it sees; a MAC learned on one worker is flooded by another
//! until that one sees it too, which is correct, only less efficient.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use crate::port::PortId;
use xvs_control::state::MacAddr;

/// Sizing and aging of a MAC table.
#[derive(Debug, Clone, Copy)]
pub struct MacTableConfig {
    pub capacity: usize,
    /// Nanoseconds an entry lives after its last refresh (Linux bridge
    /// default: 300 s).
    pub max_age_ns: u64,
}

impl Default for MacTableConfig {
    fn default() -> Self {
        MacTableConfig {
            capacity: 8192,
            max_age_ns: 300_000_000_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    domain: u16,
    vid: u16,
    mac: MacAddr,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    port: PortId,
    seen_ns: u64,
}

/// What learning a source MAC did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// New entry, or the MAC moved to another port.
    New,
    /// Known entry refreshed.
    Refreshed,
    /// Table full of live entries: not learned.
    Full,
}

pub struct MacTable {
    entries: HashMap<Key, Entry, RandomState>,
    config: MacTableConfig,
    /// When the last sweep of a full table ran.
    last_sweep_ns: Option<u64>,
}

impl MacTable {
    pub fn new(config: MacTableConfig) -> Self {
        MacTable {
            entries: HashMap::with_capacity_and_hasher(config.capacity, RandomState::default()),
            config,
            last_sweep_ns: None,
        }
    }

    /// Records that `mac` was seen on `port` at `now_ns`.
    pub fn learn(
        &mut self,
        domain: u16,
        vid: u16,
        mac: MacAddr,
        port: PortId,
        now_ns: u64,
    ) -> Learned {
        let key = Key { domain, vid, mac };
        let max_age = self.config.max_age_ns;
        if let Some(e) = self.entries.get_mut(&key) {
            let moved = e.port != port || expired(e, now_ns, max_age);
            *e = Entry {
                port,
                seen_ns: now_ns,
            };
            return if moved {
                Learned::New
            } else {
                Learned::Refreshed
            };
        }
        if self.entries.len() >= self.config.capacity {
            let interval = (max_age / 16).max(1);
            let due = self
                .last_sweep_ns
                .is_none_or(|t| now_ns.saturating_sub(t) >= interval);
            if due {
                self.last_sweep_ns = Some(now_ns);
                self.sweep(now_ns);
            }
            if self.entries.len() >= self.config.capacity {
                return Learned::Full;
            }
        }
        self.entries.insert(
            key,
            Entry {
                port,
                seen_ns: now_ns,
            },
        );
        Learned::New
    }

    /// The port `mac` was last seen on, if that is recent enough.
    #[inline]
    pub fn lookup(&self, domain: u16, vid: u16, mac: MacAddr, now_ns: u64) -> Option<PortId> {
        let e = self.entries.get(&Key { domain, vid, mac })?;
        (!expired(e, now_ns, self.config.max_age_ns)).then_some(e.port)
    }

    /// Removes expired entries.
    pub fn sweep(&mut self, now_ns: u64) {
        let max_age = self.config.max_age_ns;
        self.entries.retain(|_, e| !expired(e, now_ns, max_age));
    }

    /// Forgets every MAC learned on `port` (port removed or link down).
    pub fn flush_port(&mut self, port: PortId) {
        self.entries.retain(|_, e| e.port != port);
    }

    /// Entries stored, expired ones included until swept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[inline]
fn expired(e: &Entry, now_ns: u64, max_age_ns: u64) -> bool {
    now_ns.saturating_sub(e.seen_ns) > max_age_ns
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);
    const C: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xc]);

    fn table(capacity: usize) -> MacTable {
        MacTable::new(MacTableConfig {
            capacity,
            max_age_ns: 100,
        })
    }

    #[test]
    fn learn_lookup_move() {
        let mut t = table(8);
        assert_eq!(t.learn(1, 0, A, 3, 0), Learned::New);
        assert_eq!(t.learn(1, 0, A, 3, 10), Learned::Refreshed);
        assert_eq!(t.lookup(1, 0, A, 10), Some(3));
        assert_eq!(
            t.learn(1, 0, A, 4, 20),
            Learned::New,
            "a MAC that moves is relearned"
        );
        assert_eq!(t.lookup(1, 0, A, 20), Some(4));
    }

    #[test]
    fn domains_and_vlans_are_separate() {
        let mut t = table(8);
        t.learn(1, 0, A, 3, 0);
        assert_eq!(t.lookup(2, 0, A, 0), None);
        assert_eq!(t.lookup(1, 5, A, 0), None);
    }

    #[test]
    fn entries_age_out_exactly() {
        let mut t = table(8);
        t.learn(1, 0, A, 3, 0);
        assert_eq!(t.lookup(1, 0, A, 100), Some(3));
        assert_eq!(t.lookup(1, 0, A, 101), None);
        t.sweep(101);
        assert!(t.is_empty());
    }

    #[test]
    fn full_table_reclaims_expired_then_refuses() {
        let mut t = table(2);
        t.learn(1, 0, A, 1, 0);
        t.learn(1, 0, B, 1, 50);
        assert_eq!(t.learn(1, 0, C, 1, 60), Learned::Full);
        assert_eq!(
            t.learn(1, 0, C, 1, 120),
            Learned::New,
            "A expired and was swept"
        );
        assert_eq!(t.lookup(1, 0, C, 120), Some(1));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_full_table_is_swept_at_most_once_per_interval() {
        // max_age 100 -> at most one sweep per 6 ns while full.
        let mut t = table(2);
        t.learn(1, 0, A, 1, 0);
        t.learn(1, 0, B, 1, 200); // A has expired but is not swept yet
        assert_eq!(
            t.learn(1, 0, C, 1, 200),
            Learned::New,
            "first sweep at 200 reclaims A"
        );
        // Now full of live entries: the sweep at 201 happens, 202 is too soon.
        let d = MacAddr([2, 0, 0, 0, 0, 0xd]);
        assert_eq!(t.learn(1, 0, d, 1, 201), Learned::Full);
        assert_eq!(
            t.last_sweep_ns,
            Some(200),
            "201 is within the interval of 200"
        );
        assert_eq!(t.learn(1, 0, d, 1, 206), Learned::Full);
        assert_eq!(t.last_sweep_ns, Some(206));
        // B (seen at 200) and C (200) expire after 300; the next due sweep
        // after that frees room.
        assert_eq!(t.learn(1, 0, d, 1, 301), Learned::New);
    }

    #[test]
    fn flush_port_forgets_only_that_port() {
        let mut t = table(8);
        t.learn(1, 0, A, 1, 0);
        t.learn(1, 0, B, 2, 0);
        t.flush_port(1);
        assert_eq!(t.lookup(1, 0, A, 0), None);
        assert_eq!(t.lookup(1, 0, B, 0), Some(2));
    }
}
