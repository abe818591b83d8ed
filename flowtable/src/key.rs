//! Flow keys: the exact-match key of the flow cache and of conntrack.
//!
//! A key is six 64-bit words, the same layout for IPv4 and IPv6, so the
//! table compares and hashes a fixed 48 bytes without branching on the
//! family:
//!
//! ```text
//! word 0:  zone (16) | VNI (24) | IP protocol (8) | family (8) | 0 (8)
//! word 1:  source port (16) | destination port (16) | 0 (32)
//! word 2-3: source address (IPv6, or ::ffff:a.b.c.d for IPv4)
//! word 4-5: destination address (same)
//! ```
//!
//! The zone is the in-port for the flow cache, or a conntrack zone; the
//! VNI is 0 outside the overlay. For ICMP echo, the ports carry the echo
//! identifier (as source and destination), as Linux conntrack does. The
//! words are what the table stores in its atomics, and `from_words`
//! rebuilds a key from them.

// This module packs fields into words and back: every narrowing cast here
// takes a field that a shift and the field's width put in range.
#![allow(clippy::cast_possible_truncation)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Number of 64-bit words in a key.
pub const KEY_WORDS: usize = 6;

/// The fields of a flow, as code builds and reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowTuple {
    pub zone: u16,
    /// 24 bits; higher bits are ignored.
    pub vni: u32,
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// A packed, hashable flow key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    words: [u64; KEY_WORDS],
}

const FAMILY_V4: u64 = 4;
const FAMILY_V6: u64 = 6;

fn addr_words(a: IpAddr) -> (u64, u64) {
    let v6 = match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let b = u128::from(v6);
    ((b >> 64) as u64, b as u64)
}

fn words_addr(hi: u64, lo: u64, v4: bool) -> IpAddr {
    let v6 = Ipv6Addr::from((u128::from(hi) << 64) | u128::from(lo));
    match v6.to_ipv4_mapped() {
        Some(v4addr) if v4 => IpAddr::V4(v4addr),
        _ => IpAddr::V6(v6),
    }
}

impl FlowKey {
    /// Packs a tuple. A tuple mixing an IPv4 and an IPv6 address is stored
    /// as IPv6 (the IPv4 one mapped).
    pub fn new(t: &FlowTuple) -> FlowKey {
        let v4 = t.src.is_ipv4() && t.dst.is_ipv4();
        let family = if v4 { FAMILY_V4 } else { FAMILY_V6 };
        let (s0, s1) = addr_words(t.src);
        let (d0, d1) = addr_words(t.dst);
        FlowKey {
            words: [
                u64::from(t.zone) << 48
                    | u64::from(t.vni & 0x00ff_ffff) << 24
                    | u64::from(t.proto) << 16
                    | family << 8,
                u64::from(t.src_port) << 48 | u64::from(t.dst_port) << 32,
                s0,
                s1,
                d0,
                d1,
            ],
        }
    }

    /// Shorthand for an IPv4 key.
    pub fn v4(
        zone: u16,
        proto: u8,
        src: Ipv4Addr,
        src_port: u16,
        dst: Ipv4Addr,
        dst_port: u16,
    ) -> FlowKey {
        FlowKey::new(&FlowTuple {
            zone,
            vni: 0,
            proto,
            src: src.into(),
            dst: dst.into(),
            src_port,
            dst_port,
        })
    }

    /// Unpacks the tuple.
    pub fn tuple(&self) -> FlowTuple {
        let w = &self.words;
        let v4 = (w[0] >> 8) & 0xff == FAMILY_V4;
        FlowTuple {
            zone: (w[0] >> 48) as u16,
            vni: ((w[0] >> 24) & 0x00ff_ffff) as u32,
            proto: (w[0] >> 16) as u8,
            src: words_addr(w[2], w[3], v4),
            dst: words_addr(w[4], w[5], v4),
            src_port: (w[1] >> 48) as u16,
            dst_port: (w[1] >> 32) as u16,
        }
    }

    /// The key of the other direction: addresses and ports swapped, zone,
    /// VNI and protocol kept.
    pub fn reversed(&self) -> FlowKey {
        let w = &self.words;
        let ports = w[1] >> 32;
        let swapped = (ports & 0xffff) << 16 | ports >> 16;
        FlowKey {
            words: [w[0], swapped << 32, w[4], w[5], w[2], w[3]],
        }
    }

    /// The words the table stores.
    #[inline]
    pub fn words(&self) -> &[u64; KEY_WORDS] {
        &self.words
    }

    /// Rebuilds a key from stored words.
    #[inline]
    pub fn from_words(words: [u64; KEY_WORDS]) -> FlowKey {
        FlowKey { words }
    }

    /// A 64-bit hash of the key, seeded by `seed` (the table's random
    /// seed, so nobody can precompute colliding keys). Word pairs are mixed
    /// by independent folded multiplies (as wyhash and foldhash do) and then
    /// combined, so the CPU computes the three products in parallel instead
    /// of a chain of six.
    #[inline]
    pub fn hash(&self, seed: u64) -> u64 {
        let w = &self.words;
        let s2 = seed.rotate_left(32);
        let a = fold_mul(
            w[0] ^ seed ^ 0x243f_6a88_85a3_08d3,
            w[1] ^ s2 ^ 0x1319_8a2e_0370_7344,
        );
        let b = fold_mul(
            w[2] ^ seed ^ 0xa409_3822_299f_31d0,
            w[3] ^ s2 ^ 0x082e_fa98_ec4e_6c89,
        );
        let c = fold_mul(
            w[4] ^ seed ^ 0x4528_21e6_38d0_1377,
            w[5] ^ s2 ^ 0xbe54_66cf_34e9_0c6c,
        );
        fold_mul(
            a ^ c ^ 0x9e37_79b9_7f4a_7c15,
            b ^ seed ^ 0xbf58_476d_1ce4_e5b9,
        )
    }
}

#[inline]
#[allow(clippy::cast_possible_truncation)] // the two halves of the product
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl std::fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.tuple();
        write!(
            f,
            "zone {} vni {} proto {} {}:{} > {}:{}",
            t.zone, t.vni, t.proto, t.src, t.src_port, t.dst, t.dst_port
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tuple(src: IpAddr, dst: IpAddr) -> FlowTuple {
        FlowTuple {
            zone: 7,
            vni: 0x12_3456,
            proto: 6,
            src,
            dst,
            src_port: 40000,
            dst_port: 443,
        }
    }

    #[test]
    fn v4_and_v6_round_trip() {
        let t4 = tuple("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert_eq!(FlowKey::new(&t4).tuple(), t4);
        let t6 = tuple("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        assert_eq!(FlowKey::new(&t6).tuple(), t6);
        assert_ne!(FlowKey::new(&t4), FlowKey::new(&t6));
    }

    #[test]
    fn a_v4_key_differs_from_its_v6_mapped_twin() {
        let a = tuple("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let b = tuple(
            "::ffff:10.0.0.1".parse().unwrap(),
            "::ffff:10.0.0.2".parse().unwrap(),
        );
        assert_ne!(
            FlowKey::new(&a),
            FlowKey::new(&b),
            "the family word tells them apart"
        );
    }

    #[test]
    fn reversed_swaps_ends() {
        let k = FlowKey::v4(
            3,
            17,
            Ipv4Addr::new(1, 2, 3, 4),
            1111,
            Ipv4Addr::new(5, 6, 7, 8),
            2222,
        );
        let r = k.reversed().tuple();
        assert_eq!(
            (r.src, r.src_port, r.dst, r.dst_port),
            (
                "5.6.7.8".parse().unwrap(),
                2222,
                "1.2.3.4".parse().unwrap(),
                1111
            )
        );
        assert_eq!((r.zone, r.proto), (3, 17));
        assert_eq!(k.reversed().reversed(), k);
    }

    proptest! {
        #[test]
        fn round_trip_any(zone: u16, vni in 0u32..1 << 24, proto: u8, s: u128, d: u128, sp: u16, dp: u16, v4: bool) {
            let (src, dst) = if v4 {
                (IpAddr::V4(Ipv4Addr::from(s as u32)), IpAddr::V4(Ipv4Addr::from(d as u32)))
            } else {
                (IpAddr::V6(Ipv6Addr::from(s)), IpAddr::V6(Ipv6Addr::from(d)))
            };
            let t = FlowTuple { zone, vni, proto, src, dst, src_port: sp, dst_port: dp };
            let k = FlowKey::new(&t);
            // An IPv6 tuple whose addresses happen to be IPv4-mapped still
            // reads back as the IPv6 addresses it was given.
            prop_assert_eq!(k.tuple(), t);
            prop_assert_eq!(FlowKey::from_words(*k.words()), k);
        }

        #[test]
        fn hash_spreads_single_bit_changes(w in any::<[u64; KEY_WORDS]>(), word in 0usize..KEY_WORDS, bit in 0u32..64) {
            let a = FlowKey::from_words(w);
            let mut w2 = w;
            w2[word] ^= 1 << bit;
            let b = FlowKey::from_words(w2);
            let diff = (a.hash(1) ^ b.hash(1)).count_ones();
            prop_assert!((8..=56).contains(&diff), "{} bits differ", diff);
        }
    }
}
