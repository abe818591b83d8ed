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
