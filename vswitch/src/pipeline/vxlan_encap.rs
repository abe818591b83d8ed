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
//! UDP checksum is zero, as RFC 7348 recommends for IPv4.

use std::sync::Arc;

use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet};

use super::ip4_local::ORIGINATED_TTL;
use super::{Next, Pipeline};
use crate::drop::DropReason;
use crate::packet::{frame_u16, FramePool};
use crate::port::Batch;
use crate::wire::{vxlan, ETHERNET_HEADER_LEN, IPV4_HEADER_LEN, UDP_HEADER_LEN, VXLAN_OVERHEAD};

impl Pipeline {
    pub(super) fn vxlan_encap<P: FramePool>(&mut self, pool: &mut P, batch: &mut Batch) {
        // One reference-count bump per batch lets the loop read the
        // snapshot while it updates the pipeline's counters and metadata.
        let snap = Arc::clone(&self.snapshot);
        let Some(overlay) = &snap.overlay else { return };
        let (vni, vtep_ip, vtep_mac, udp_port, uplink) = (
            overlay.vni,
            overlay.vtep_ip,
            overlay.vtep_mac,
            overlay.udp_port,
            overlay.uplink,
        );
        let uplink_mac = snap.ports[usize::from(uplink)].mac;
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
            let mut inner = EthernetFrame::new_unchecked(&mut data[..]);
            inner.set_dst_addr(EthernetAddress(remote.vtep_mac.0));
            inner.set_src_addr(EthernetAddress(vtep_mac.0));
            let src_port = 49152 | (flow_hash(&data[usize::from(m.l3)..]) & 0x3fff) as u16;

            pkt.head = frame_u16(new_head);
            pkt.len = frame_u16(inner_len + VXLAN_OVERHEAD);
            let data = pkt.data_mut(pool);

            let mut eth = EthernetFrame::new_unchecked(&mut data[..]);
            eth.set_dst_addr(EthernetAddress(remote.underlay_mac.0));
            eth.set_src_addr(EthernetAddress(uplink_mac.0));
            eth.set_ethertype(EthernetProtocol::Ipv4);

            let outer_ip_len = IPV4_HEADER_LEN + UDP_HEADER_LEN + vxlan::HEADER_LEN + inner_len;
            let mut ip = Ipv4Packet::new_unchecked(&mut data[ETHERNET_HEADER_LEN..]);
            ip.set_version(4);
            ip.set_header_len(20);
            ip.set_dscp(0);
            ip.set_ecn(0);
            ip.set_total_len(frame_u16(outer_ip_len));
            ip.set_ident(0);
            ip.clear_flags();
            ip.set_dont_frag(true);
            ip.set_frag_offset(0);
            ip.set_hop_limit(ORIGINATED_TTL);
            ip.set_next_header(IpProtocol::Udp);
            ip.set_src_addr(vtep_ip);
            ip.set_dst_addr(remote.vtep_ip);
            ip.fill_checksum();

            let udp = &mut data[ETHERNET_HEADER_LEN + IPV4_HEADER_LEN..];
            let udp_len = frame_u16(outer_ip_len - IPV4_HEADER_LEN);
            udp[0..2].copy_from_slice(&src_port.to_be_bytes());
            udp[2..4].copy_from_slice(&udp_port.to_be_bytes());
            udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
            udp[6..8].copy_from_slice(&[0, 0]);
            vxlan::Packet::new_unchecked(&mut udp[UDP_HEADER_LEN..]).emit_header(vni);

            self.counters.vxlan_encap += 1;
            self.output_to(i, uplink);
            self.trace(i, "vxlan-encap", || {
                format!(
                    "vni {vni} {vtep_ip}:{src_port} > {}:{udp_port} via {}",
                    remote.vtep_ip, remote.underlay_mac
                )
            });
        }
    }
}

/// A hash of an IPv4 packet's flow: addresses and protocol, plus the ports
/// of TCP and UDP when the packet is not a fragment. Every fragment of a
/// datagram, the first included, hashes alike so that they all take one
/// path and arrive in order (Linux's flow dissector does the same).
/// `ip` is a validated IPv4 packet.
#[allow(clippy::cast_possible_truncation)] // keeps the low 32 bits of the mix
pub(crate) fn flow_hash(ip: &[u8]) -> u32 {
    let ip = Ipv4Packet::new_unchecked(ip);
    let mut h = u64::from(u32::from(ip.src_addr())) << 32 | u64::from(u32::from(ip.dst_addr()));
    h ^= u64::from(u8::from(ip.next_header())) << 56;
    let proto = ip.next_header();
    let fragment = ip.more_frags() || ip.frag_offset() != 0;
    if !fragment && (proto == IpProtocol::Tcp || proto == IpProtocol::Udp) {
        if let Some(ports) = ip.payload().get(..4) {
            h = h.rotate_left(17)
                ^ u64::from(u32::from_be_bytes([ports[0], ports[1], ports[2], ports[3]]));
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
