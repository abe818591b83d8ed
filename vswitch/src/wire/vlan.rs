//! IEEE 802.1Q VLAN tag, as it sits after the source MAC.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         TPID (0x8100)         | PCP |D|         VID           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |      Inner EtherType          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The view starts at the TCI (after the TPID that smoltcp's Ethernet view
//! reports as the ethertype), so a tagged frame reads as Ethernet view →
//! `Tag` view over its payload.

use smoltcp::wire::EthernetProtocol;

mod field {
    pub const TCI: core::ops::Range<usize> = 0..2;
    pub const ETHERTYPE: core::ops::Range<usize> = 2..4;
}

/// Length of the tag after the TPID: TCI + inner ethertype.
pub const TAG_LEN: usize = field::ETHERTYPE.end;

/// A view of an 802.1Q tag (TCI and inner ethertype).
#[derive(Debug, Clone)]
pub struct Tag<T: AsRef<[u8]>> {
    buffer: T,
}

/// The buffer is shorter than the tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

impl<T: AsRef<[u8]>> Tag<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Tag { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self, Truncated> {
        let tag = Self::new_unchecked(buffer);
        tag.check_len()?;
        Ok(tag)
    }

    pub fn check_len(&self) -> Result<(), Truncated> {
        if self.buffer.as_ref().len() < TAG_LEN {
            Err(Truncated)
        } else {
            Ok(())
        }
    }

    #[inline]
    fn tci(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::TCI];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// VLAN identifier (12 bits).
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// Priority code point (3 bits).
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// The ethertype of what follows the tag.
    #[inline]
    pub fn ethertype(&self) -> EthernetProtocol {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        EthernetProtocol::from(u16::from_be_bytes([b[0], b[1]]))
    }

    /// What follows the tag.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[TAG_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Tag<T> {
    #[inline]
    pub fn set_vid(&mut self, vid: u16) {
        let tci = (self.tci() & 0xf000) | (vid & 0x0fff);
        self.buffer.as_mut()[field::TCI].copy_from_slice(&tci.to_be_bytes());
    }

    #[inline]
    pub fn set_pcp(&mut self, pcp: u8) {
        let tci = (self.tci() & 0x1fff) | (u16::from(pcp & 7) << 13);
        self.buffer.as_mut()[field::TCI].copy_from_slice(&tci.to_be_bytes());
    }

    #[inline]
    pub fn set_ethertype(&mut self, ethertype: EthernetProtocol) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&u16::from(ethertype).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // PCP 5, DEI 0, VID 100, then IPv4.
    const GOLDEN: [u8; 4] = [0xa0, 0x64, 0x08, 0x00];

    #[test]
    fn parse_golden() {
        let tag = Tag::new_checked(&GOLDEN[..]).unwrap();
        assert_eq!(tag.vid(), 100);
        assert_eq!(tag.pcp(), 5);
        assert_eq!(tag.ethertype(), EthernetProtocol::Ipv4);
        assert!(tag.payload().is_empty());
    }

    #[test]
    fn emit_matches_golden() {
        let mut buf = [0u8; 4];
        let mut tag = Tag::new_unchecked(&mut buf[..]);
        tag.set_pcp(5);
        tag.set_vid(100);
        tag.set_ethertype(EthernetProtocol::Ipv4);
        assert_eq!(buf, GOLDEN);
    }

    #[test]
    fn truncated_is_an_error() {
        assert_eq!(Tag::new_checked(&GOLDEN[..3]).unwrap_err(), Truncated);
    }
}
