//! Longest-prefix-match route table.
//!
//! One hash map per prefix length present, probed from the longest length
//! down: a lookup costs one hash probe per distinct prefix length, and a
//! node's table has few (pods /32, node CIDRs /24, default /0), so three
//! probes resolve a typical lookup. It is generic over the address width so
//! IPv6 reuses it unchanged (`Lpm<u128, _>`).
//!
//! Built once per datapath snapshot and never mutated afterwards, so
//! readers need no synchronisation. If route counts grow to where probes
//! cost (full BGP tables), DIR-24-8 (DPDK rte_lpm) or a Poptrie replaces the
//! inside without changing the interface.

use rustc_hash::FxHashMap;

/// An address usable as an LPM key: an unsigned integer of `BITS` bits.
pub trait LpmAddr: Copy + Eq + std::hash::Hash {
    const BITS: u8;
    /// The address with all but the `len` leading bits cleared.
    fn mask(self, len: u8) -> Self;
}

impl LpmAddr for u32 {
    const BITS: u8 = 32;
    #[inline]
    fn mask(self, len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            self & (u32::MAX << (32 - u32::from(len)))
        }
    }
}

impl LpmAddr for u128 {
    const BITS: u8 = 128;
    #[inline]
    fn mask(self, len: u8) -> u128 {
        if len == 0 {
            0
        } else {
            self & (u128::MAX << (128 - u32::from(len)))
        }
    }
}

/// A longest-prefix-match table from prefixes to `V`.
#[derive(Debug, Clone)]
pub struct Lpm<A: LpmAddr, V> {
    /// (prefix length, prefixes of that length), longest first.
    levels: Vec<(u8, FxHashMap<A, V>)>,
}

impl<A: LpmAddr, V> Default for Lpm<A, V> {
    fn default() -> Self {
        Lpm { levels: Vec::new() }
    }
}

impl<A: LpmAddr, V> Lpm<A, V> {
    /// Inserts `addr/len`, replacing (and returning) what was there.
    /// Host bits of `addr` are ignored.
    pub fn insert(&mut self, addr: A, len: u8, value: V) -> Option<V> {
        let len = len.min(A::BITS);
        let idx = match self.levels.binary_search_by(|(l, _)| len.cmp(l)) {
            Ok(i) => i,
            Err(i) => {
                self.levels.insert(i, (len, FxHashMap::default()));
                i
            }
        };
        self.levels[idx].1.insert(addr.mask(len), value)
    }

    /// The value of the longest prefix containing `addr`.
    #[inline]
    pub fn lookup(&self, addr: A) -> Option<&V> {
        self.levels
            .iter()
            .find_map(|(len, map)| map.get(&addr.mask(*len)))
    }

    /// The value stored for exactly `addr/len`.
    pub fn get_exact(&self, addr: A, len: u8) -> Option<&V> {
        let len = len.min(A::BITS);
        self.levels
            .iter()
            .find(|(l, _)| *l == len)?
            .1
            .get(&addr.mask(len))
    }

    /// Every stored value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.levels.iter().flat_map(|(_, map)| map.values())
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.levels.iter().map(|(_, m)| m.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(a: u8, b: u8, c: u8, d: u8) -> u32 {
        u32::from_be_bytes([a, b, c, d])
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = Lpm::default();
        t.insert(0, 0, "default");
        t.insert(ip(10, 244, 0, 0), 16, "cluster");
        t.insert(ip(10, 244, 1, 0), 24, "node");
        t.insert(ip(10, 244, 1, 7), 32, "pod");
        assert_eq!(t.lookup(ip(10, 244, 1, 7)), Some(&"pod"));
        assert_eq!(t.lookup(ip(10, 244, 1, 8)), Some(&"node"));
        assert_eq!(t.lookup(ip(10, 244, 2, 8)), Some(&"cluster"));
        assert_eq!(t.lookup(ip(8, 8, 8, 8)), Some(&"default"));
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn host_bits_are_ignored_and_insert_replaces() {
        let mut t = Lpm::default();
        assert_eq!(t.insert(ip(10, 0, 0, 99), 8, 1), None);
        assert_eq!(t.insert(ip(10, 1, 2, 3), 8, 2), Some(1));
        assert_eq!(t.lookup(ip(10, 200, 0, 1)), Some(&2));
        assert_eq!(t.get_exact(ip(10, 0, 0, 0), 8), Some(&2));
        assert_eq!(t.lookup(ip(11, 0, 0, 0)), None);
    }

    #[test]
    fn ipv6_width() {
        let mut t: Lpm<u128, u8> = Lpm::default();
        t.insert(0xfd00_u128 << 112, 16, 1);
        t.insert(0xfd00_0000_0000_0001_u128 << 64, 64, 2);
        assert_eq!(t.lookup((0xfd00_0000_0000_0001_u128 << 64) | 5), Some(&2));
        assert_eq!(t.lookup((0xfd00_0000_0000_0002_u128 << 64) | 5), Some(&1));
        assert_eq!(t.lookup(1), None);
    }

    proptest! {
        /// Against a linear scan over every prefix: the model of LPM.
        #[test]
        fn matches_linear_scan(routes in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..40),
                               probes in proptest::collection::vec(any::<u32>(), 1..50)) {
            let mut t = Lpm::default();
            let mut model: Vec<(u32, u8, usize)> = Vec::new();
            for (i, (a, l)) in routes.iter().enumerate() {
                t.insert(*a, *l, i);
                model.retain(|(ma, ml, _)| !(*ml == *l && *ma == a.mask(*l)));
                model.push((a.mask(*l), *l, i));
            }
            for p in probes.iter().chain(routes.iter().map(|(a, _)| a)) {
                let want = model.iter().filter(|(a, l, _)| p.mask(*l) == *a).max_by_key(|(_, l, _)| *l).map(|m| m.2);
                prop_assert_eq!(t.lookup(*p).copied(), want);
            }
        }
    }
}
