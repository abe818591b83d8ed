//! vxlan-encap: put a routed packet into the overlay toward a remote VTEP
//! (RFC 7348).
//!
//! The inner frame is the routed packet with its Ethernet header rewritten
//! to go from our VTEP MAC to the remote VTEP's MAC (what the kernel's
//! `flannel.1` device would send). The outer headers (Ethernet, IPv4 with
//! DF, UDP, VXLAN: 50 bytes) are written into the frame's headroom; the
//! payload never moves. The UDP source port comes from a hash of the inner
//! flow so that the underlay's ECMP and the receiver's RSS spread flows
//! (RFC 7348 section 5, within the dynamic range 49152-65535). The outer
//! UDP checksum is zero, as RFC 7348 recommends for IPv4. The outer ECN
//! field follows RFC 6040's normal mode, as Linux tunnels do: copied from
//! the inner packet, except that CE becomes ECT(0).

use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet};

use super::{Next, State, ORIGINATED_TTL};
use crate::drop::DropReason;
use crate::packet::{frame_u16, FramePool};
use crate::port::Batch;
use crate::snapshot::Snapshot;
use crate::wire::{
    vxlan, Ipv4Header, ETHERNET_HEADER_LEN, IPV4_HEADER_LEN, UDP_HEADER_LEN, VXLAN_OVERHEAD,
};

/// ECN codepoints (RFC 3168).
const ECN_ECT0: u8 = 0b10;
const ECN_CE: u8 = 0b11;

impl State {
    pub(super) fn vxlan_encap<P: FramePool>(
        &mut self,
        snap: &Snapshot,
        pool: &mut P,
        batch: &mut Batch,
    ) {
        let Some(overlay) = &snap.overlay else { return };
        let uplink_mac = snap.ports[usize::from(overlay.uplink)].mac;
        for (i, pkt) in batch.iter_mut().enumerate() {
            if self.meta[i].next != Next::VxlanEncap {
                continue;
            }
            let m = self.meta[i];
            // ip4-forward checked the index against this snapshot.
            let remote = &snap.remotes[usize::from(m.remote)];
            let Some(new_head) = usize::from(pkt.head).checked_sub(VXLAN_OVERHEAD) else {
                self.drop_packet(i, DropReason::NoHeadroom);
                continue;
            };
            let inner_len = usize::from(pkt.len);
            let data = pkt.data_mut(pool);
            let inner_ip = Ipv4Packet::new_unchecked(&data[usize::from(m.l3)..]);
            let src_port = 49152 | (flow_hash(&inner_ip) & 0x3fff) as u16;
            let outer_ecn = match inner_ip.ecn() {
                ECN_CE => ECN_ECT0,
                ecn => ecn,
            };
            let mut inner = EthernetFrame::new_unchecked(&mut data[..]);
            inner.set_dst_addr(EthernetAddress(remote.vtep_mac.0));
            inner.set_src_addr(EthernetAddress(overlay.vtep_mac.0));

            pkt.head = frame_u16(new_head);
            pkt.len = frame_u16(inner_len + VXLAN_OVERHEAD);
            let data = pkt.data_mut(pool);

            let mut eth = EthernetFrame::new_unchecked(&mut data[..]);
            eth.set_dst_addr(EthernetAddress(remote.underlay_mac.0));
            eth.set_src_addr(EthernetAddress(uplink_mac.0));
            eth.set_ethertype(EthernetProtocol::Ipv4);

            let outer_ip_len = IPV4_HEADER_LEN + UDP_HEADER_LEN + vxlan::HEADER_LEN + inner_len;
            Ipv4Header {
                src: overlay.vtep_ip,
                dst: remote.vtep_ip,
                protocol: IpProtocol::Udp,
                total_len: frame_u16(outer_ip_len),
                tos: outer_ecn,
                ttl: ORIGINATED_TTL,
                dont_frag: true,
            }
            .emit(&mut data[ETHERNET_HEADER_LEN..]);

            let udp = &mut data[ETHERNET_HEADER_LEN + IPV4_HEADER_LEN..];
            let udp_len = frame_u16(outer_ip_len - IPV4_HEADER_LEN);
            udp[0..2].copy_from_slice(&src_port.to_be_bytes());
            udp[2..4].copy_from_slice(&overlay.udp_port.to_be_bytes());
            udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
            udp[6..8].copy_from_slice(&[0, 0]);
            vxlan::Packet::new_unchecked(&mut udp[UDP_HEADER_LEN..]).emit_header(overlay.vni);

            self.counters.vxlan_encap += 1;
            self.output_to(i, overlay.uplink);
            self.trace(i, "vxlan-encap", || {
                let (vni, port) = (overlay.vni, overlay.udp_port);
                format!(
                    "vni {vni} {}:{src_port} > {}:{port} via {}",
                    overlay.vtep_ip, remote.vtep_ip, remote.underlay_mac
                )
            });
        }
    }
}

/// A hash of an IPv4 packet's flow: addresses and protocol, plus the TCP or
/// UDP ports of unfragmented packets. Every fragment of a datagram (first
/// included, like Linux's flow dissector) hashes without ports, so all of
/// them take the same path and arrive in order.
#[allow(clippy::cast_possible_truncation)] // keeps the low 32 bits of the mix
pub(crate) fn flow_hash(ip: &Ipv4Packet<&[u8]>) -> u32 {
    let proto = ip.next_header();
    let mut h = u64::from(u32::from(ip.src_addr())) << 32 | u64::from(u32::from(ip.dst_addr()));
    h ^= u64::from(u8::from(proto)) << 56;
    let fragment = ip.more_frags() || ip.frag_offset() != 0;
    if !fragment && (proto == IpProtocol::Tcp || proto == IpProtocol::Udp) {
        if let Some(&[a, b, c, d]) = ip.payload().get(..4) {
            h = h.rotate_left(17) ^ u64::from(u32::from_be_bytes([a, b, c, d]));
        }
    }
    // Murmur3's 64-bit finaliser: every input bit affects every output bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h as u32
}
