//! Zero-copy typed views of the protocols the switch parses and rewrites.
//!
//! Ethernet, ARP, IPv4, IPv6, UDP, TCP and ICMPv4 come from smoltcp's wire
//! module: views over `T: AsRef<[u8]>` with `new_checked` for untrusted
//! bytes, field constants and setters only where `T: AsMut<[u8]>` — exactly
//! the shape this project wants, maintained elsewhere. smoltcp has no 802.1Q
//! tag and no VXLAN header, so those two are written here in the same shape
//! ([`vlan`], [`vxlan`]), and [`checksum`] adds the RFC 1624 incremental
//! update that a router needs and smoltcp does not offer.
//!
//! Rule for the datapath: untrusted bytes only ever go through
//! `new_checked`; after it, no accessor panics.

pub mod checksum;
pub mod vlan;
pub mod vxlan;

pub use smoltcp::wire::{
    ArpOperation, ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv4Packet,
    IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket,
};

/// Ethernet header length without a VLAN tag.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// IPv4 header length without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// UDP header length.
pub const UDP_HEADER_LEN: usize = 8;
/// ICMPv4 header length (type, code, checksum, 4 bytes of rest-of-header).
pub const ICMP_HEADER_LEN: usize = 8;
/// ARP payload length for Ethernet/IPv4.
pub const ARP_IPV4_LEN: usize = 28;
/// Ethertype of an 802.1Q tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;

/// Bytes a VXLAN encapsulation adds in front of the inner Ethernet frame:
/// outer Ethernet + IPv4 + UDP + VXLAN.
pub const VXLAN_OVERHEAD: usize =
    ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN + vxlan::HEADER_LEN;

/// The fields of an option-less IPv4 header the switch writes itself (ICMP
/// errors, VXLAN outer headers).
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Header {
    pub src: core::net::Ipv4Addr,
    pub dst: core::net::Ipv4Addr,
    pub protocol: IpProtocol,
    /// Header plus payload, in bytes.
    pub total_len: u16,
    /// DSCP and ECN as one byte (the old TOS field).
    pub tos: u8,
    pub ttl: u8,
    pub dont_frag: bool,
}

impl Ipv4Header {
    /// Writes this header, checksum included, at the start of `buf`, which
    /// must hold at least [`IPV4_HEADER_LEN`] bytes.
    pub fn emit(&self, buf: &mut [u8]) {
        let mut ip = Ipv4Packet::new_unchecked(&mut buf[..IPV4_HEADER_LEN]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_dscp(self.tos >> 2);
        ip.set_ecn(self.tos & 3);
        ip.set_total_len(self.total_len);
        // ID 0 is fine with DF set (RFC 6864 section 4.1); the switch only
        // writes headers that are never fragmented.
        ip.set_ident(0);
        ip.clear_flags();
        ip.set_dont_frag(self.dont_frag);
        ip.set_frag_offset(0);
        ip.set_hop_limit(self.ttl);
        ip.set_next_header(self.protocol);
        ip.set_src_addr(self.src);
        ip.set_dst_addr(self.dst);
        ip.fill_checksum();
    }
}
