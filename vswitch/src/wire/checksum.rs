//! Internet checksum helpers (RFC 1071) and incremental update (RFC 1624).
//!
//! A router that decrements TTL or a NAT that rewrites an address changes a
//! few 16-bit words of a header; RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`,
//! updates the checksum from just those words instead of summing the whole
//! header again. Eqn. 3 (not RFC 1141's eqn. 2) is the form that never
//! produces 0xFFFF from a correct header where 0x0000 is meant.

/// Updates checksum `sum` for one 16-bit word changing from `old` to `new`.
#[inline]
pub fn update_u16(sum: u16, old: u16, new: u16) -> u16 {
    let acc = u32::from(!sum) + u32::from(!old) + u32::from(new);
    !fold(acc)
}

/// Updates checksum `sum` for a 32-bit field (an IPv4 address) changing.
#[inline]
pub fn update_u32(sum: u16, old: u32, new: u32) -> u16 {
    let [o0, o1, o2, o3] = old.to_be_bytes();
    let [n0, n1, n2, n3] = new.to_be_bytes();
    let sum = update_u16(
        sum,
        u16::from_be_bytes([o0, o1]),
        u16::from_be_bytes([n0, n1]),
    );
    update_u16(
        sum,
        u16::from_be_bytes([o2, o3]),
        u16::from_be_bytes([n2, n3]),
    )
}

/// The one's complement sum of `data` (no final complement), as RFC 1071.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    let mut acc = 0u32;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

/// The Internet checksum of `data`, ready to store in a header.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// Folds carries of a 32-bit accumulator into 16 bits.
#[inline]
#[allow(clippy::cast_possible_truncation)] // the loop leaves at most 16 bits
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IPv4 header from RFC 1071's usual worked example.
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn full_checksum_of_known_header() {
        let mut h = HEADER;
        h[10] = 0;
        h[11] = 0;
        assert_eq!(checksum(&h), 0xb861);
        assert_eq!(checksum(&HEADER), 0, "a correct header sums to zero");
    }

    #[test]
    fn incremental_ttl_decrement_matches_full_recompute() {
        for ttl in 1..=255u8 {
            let mut h = HEADER;
            h[8] = ttl;
            h[10] = 0;
            h[11] = 0;
            let c = checksum(&h);
            let old_word = u16::from_be_bytes([h[8], h[9]]);
            h[8] = ttl - 1;
            let new_word = u16::from_be_bytes([h[8], h[9]]);
            let inc = update_u16(c, old_word, new_word);
            assert_eq!(inc, checksum(&h), "ttl {ttl}");
        }
    }

    #[test]
    fn incremental_address_change_matches_full_recompute() {
        let mut h = HEADER;
        let old = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let new: u32 = 0x0a_f4_01_07;
        h[12..16].copy_from_slice(&new.to_be_bytes());
        let inc = update_u32(0xb861, old, new);
        h[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(inc, checksum(&h));
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }
}
