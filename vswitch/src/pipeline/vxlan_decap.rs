//! vxlan-decap: take VXLAN addressed to our VTEP apart and route the inner
//! packet (RFC 7348).
//!
//! ip4-input already validated the outer IPv4 header, made sure it is not a
//! fragment, and saw UDP to our VXLAN port. Here, in order: the outer
//! source must be a known remote VTEP (anyone else on the underlay could
//! otherwise inject packets toward pods, as Calico also refuses); the UDP
//! length must fit; a non-zero UDP checksum must verify; the I flag must be
//! set and the VNI ours; the inner frame must be an untagged IPv4 frame to
//! our VTEP MAC (what Flannel's kernel peers send), from an address the
//! sending node owns (its pod CIDR or its VTEP address). ECN follows RFC
//! 6040: an outer CE mark is copied onto an ECN-capable inner packet, and a
//! CE-marked tunnel packet whose inner packet is not ECN-capable is dropped.
//!
//! Decapsulation moves the packet's head past the outer headers; nothing is
//! copied. The inner packet then re-enters ip4-input, marked so that it is
//! never decapsulated again. An inner IPv4 header too short to read is left
//! for ip4-input to count as malformed.

use std::net::Ipv4Addr;

use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpAddress, Ipv4Packet, UdpPacket};
use xvs_control::state::MacAddr;

use super::{Next, State};
use crate::drop::DropReason;
use crate::packet::{frame_u16, FramePool};
use crate::port::Batch;
use crate::snapshot::Snapshot;
use crate::wire::{checksum, vxlan, ETHERNET_HEADER_LEN, IPV4_HEADER_LEN, UDP_HEADER_LEN};

const ECN_NOT_ECT: u8 = 0b00;
const ECN_CE: u8 = 0b11;

impl State {
    pub(super) fn vxlan_decap<P: FramePool>(
        &mut self,
        snap: &Snapshot,
        pool: &mut P,
        batch: &mut Batch,
    ) {
        let Some(overlay) = &snap.overlay else { return };
        let (vni, vtep_mac) = (overlay.vni, overlay.vtep_mac);
        for (i, pkt) in batch.iter_mut().enumerate() {
            if self.meta[i].next != Next::VxlanDecap {
                continue;
            }
            let l3 = usize::from(self.meta[i].l3);
            let data = pkt.data(pool);
            let ip = Ipv4Packet::new_unchecked(&data[l3..]);
            let outer_ecn = ip.ecn();
            let Some(remote) = snap
                .remote_by_vtep
                .get(&ip.src_addr())
                .map(|&r| &snap.remotes[usize::from(r)])
            else {
                let peer = ip.src_addr();
                self.drop_packet(i, DropReason::VxlanUnknownPeer);
                self.trace(i, "vxlan-decap", || {
                    format!("from {peer}: not a known VTEP")
                });
                continue;
            };
            let (src, dst) = (
                IpAddress::Ipv4(ip.src_addr()),
                IpAddress::Ipv4(ip.dst_addr()),
            );
            let Ok(udp) = UdpPacket::new_checked(ip.payload()) else {
                self.drop_packet(i, DropReason::MalformedVxlan);
                continue;
            };
            if udp.checksum() != 0 && !udp.verify_checksum(&src, &dst) {
                self.drop_packet(i, DropReason::MalformedVxlan);
                continue;
            }
            // UdpPacket::payload ends where the UDP length says.
            let Ok(vx) = vxlan::Packet::new_checked(udp.payload()) else {
                self.drop_packet(i, DropReason::MalformedVxlan);
                continue;
            };
            if !vx.vni_valid() || vx.vni() != vni {
                let got = vx.vni();
                self.drop_packet(i, DropReason::VxlanWrongVni);
                self.trace(i, "vxlan-decap", || format!("vni {got}, ours is {vni}"));
                continue;
            }
            let inner = vx.payload();
            let inner_ok = EthernetFrame::new_checked(inner).is_ok_and(|e| {
                MacAddr(e.dst_addr().0) == vtep_mac && e.ethertype() == EthernetProtocol::Ipv4
            });
            if !inner_ok {
                self.drop_packet(i, DropReason::VxlanBadInner);
                continue;
            }
            let inner_ip = inner.get(ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + IPV4_HEADER_LEN);
            if let Some(h) = inner_ip {
                let inner_src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
                if !remote.pod_prefix.contains(inner_src) && inner_src != remote.vtep_ip {
                    self.drop_packet(i, DropReason::VxlanSpoofedInner);
                    self.trace(i, "vxlan-decap", || {
                        format!("inner source {inner_src} not owned by {}", remote.name)
                    });
                    continue;
                }
                if outer_ecn == ECN_CE && h[1] & 3 == ECN_NOT_ECT {
                    self.drop_packet(i, DropReason::VxlanEcnDrop);
                    continue;
                }
            }
            let inner_len = inner.len();
            let inner_offset =
                l3 + usize::from(ip.header_len()) + UDP_HEADER_LEN + vxlan::HEADER_LEN;
            pkt.head += frame_u16(inner_offset);
            pkt.len = frame_u16(inner_len);
            if outer_ecn == ECN_CE && inner_ip.is_some() {
                mark_ce(&mut pkt.data_mut(pool)[ETHERNET_HEADER_LEN..]);
            }
            self.meta[i].l3 = frame_u16(ETHERNET_HEADER_LEN);
            self.meta[i].decapped = true;
            self.set_next(i, Next::Ip4Input);
            self.counters.vxlan_decap += 1;
            self.trace(i, "vxlan-decap", || {
                format!("vni {vni} from {src}: {inner_len} byte inner frame")
            });
        }
    }
}

/// Sets ECN to CE in the IPv4 header at the start of `ip` (at least 20
/// bytes), patching the checksum (RFC 1624). The checksum is only patched,
/// not validated: ip4-input checks it next, and a header that was bad
/// before stays bad.
fn mark_ce(ip: &mut [u8]) {
    let old = u16::from_be_bytes([ip[0], ip[1]]);
    ip[1] |= ECN_CE;
    let new = u16::from_be_bytes([ip[0], ip[1]]);
    let sum = checksum::update_u16(u16::from_be_bytes([ip[10], ip[11]]), old, new);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
}
