//! VXLAN header (RFC 7348, section 5).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The I flag must be set for a valid VNI; receivers ignore the reserved
//! bits (section 5: "Reserved fields ... MUST be ignored on receipt").

mod field {
    pub const FLAGS: usize = 0;
    pub const VNI: core::ops::Range<usize> = 4..7;
}

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// The I flag: the VNI field is valid.
pub const FLAG_VNI_VALID: u8 = 0x08;

/// A view of a VXLAN header followed by the inner Ethernet frame.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// The buffer is shorter than the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self, Truncated> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<(), Truncated> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Truncated)
        } else {
            Ok(())
        }
    }

    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Whether the I flag says the VNI is valid.
    #[inline]
    pub fn vni_valid(&self) -> bool {
        self.flags() & FLAG_VNI_VALID != 0
    }

    /// The 24-bit VXLAN network identifier.
    #[inline]
    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// The inner Ethernet frame.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes a complete header for `vni` (I flag set, reserved bits zero).
    #[inline]
    pub fn emit_header(&mut self, vni: u32) {
        let b = &mut self.buffer.as_mut()[..HEADER_LEN];
        let v = (vni & 0x00ff_ffff).to_be_bytes();
        b.copy_from_slice(&[FLAG_VNI_VALID, 0, 0, 0, v[1], v[2], v[3], 0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // I flag, VNI 0x123456.
    const GOLDEN: [u8; 8] = [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0];

    #[test]
    fn parse_golden() {
        let p = Packet::new_checked(&GOLDEN[..]).unwrap();
        assert!(p.vni_valid());
        assert_eq!(p.vni(), 0x123456);
        assert!(p.payload().is_empty());
    }

    #[test]
    fn emit_matches_golden_and_masks_vni() {
        let mut buf = [0xffu8; 8];
        Packet::new_unchecked(&mut buf[..]).emit_header(0xff12_3456);
        assert_eq!(buf, GOLDEN);
    }

    #[test]
    fn reserved_bits_are_ignored_on_receipt() {
        let mut b = GOLDEN;
        b[0] |= 0xf7;
        b[7] = 0xff;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.vni_valid());
        assert_eq!(p.vni(), 0x123456);
    }

    #[test]
    fn truncated_is_an_error() {
        assert_eq!(Packet::new_checked(&GOLDEN[..7]).unwrap_err(), Truncated);
    }
}
