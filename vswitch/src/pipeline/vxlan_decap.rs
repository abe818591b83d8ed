//! vxlan-decap: take VXLAN addressed to our VTEP apart and route the inner
//! packet (RFC 7348).
//!
//! ip4-input already validated the outer IPv4 header, made sure it is not a
//! fragment, and saw UDP to our VXLAN port. Here: the UDP length must fit,
//! a non-zero UDP checksum must verify, the I flag must be set and the VNI
//! must be ours, the inner frame must be an untagged IPv4 frame to our VTEP
//! MAC (what Flannel's kernel peers send). Decapsulation moves the packet's
//! head past the outer headers; nothing is copied. The inner packet then
//! re-enters ip4-input, marked so that it is never decapsulated again.

use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpAddress, Ipv4Packet, UdpPacket};
use xvs_control::state::MacAddr;

use super::{Next, Pipeline};
use crate::drop::DropReason;
use crate::packet::{frame_u16, FramePool};
use crate::port::Batch;
use crate::wire::{vxlan, ETHERNET_HEADER_LEN, UDP_HEADER_LEN};

impl Pipeline {
    pub(super) fn vxlan_decap<P: FramePool>(&mut self, pool: &mut P, batch: &mut Batch) {
        let Some(overlay) = &self.snapshot.overlay else {
            return;
        };
        let (vni, vtep_mac) = (overlay.vni, overlay.vtep_mac);
        for (i, pkt) in batch.iter_mut().enumerate() {
            if self.meta[i].next != Next::VxlanDecap {
                continue;
            }
            let l3 = usize::from(self.meta[i].l3);
            let data = pkt.data(pool);
            let ip = Ipv4Packet::new_unchecked(&data[l3..]);
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
            let inner_ok = EthernetFrame::new_checked(vx.payload()).is_ok_and(|e| {
                MacAddr(e.dst_addr().0) == vtep_mac && e.ethertype() == EthernetProtocol::Ipv4
            });
            if !inner_ok {
                self.drop_packet(i, DropReason::VxlanBadInner);
                continue;
            }
            let inner_len = vx.payload().len();
            let inner_offset =
                l3 + usize::from(ip.header_len()) + UDP_HEADER_LEN + vxlan::HEADER_LEN;
            pkt.head += frame_u16(inner_offset);
            pkt.len = frame_u16(inner_len);
            let m = &mut self.meta[i];
            m.l3 = frame_u16(ETHERNET_HEADER_LEN);
            m.decapped = true;
            self.set_next(i, Next::Ip4Input);
            self.counters.vxlan_decap += 1;
            self.trace(i, "vxlan-decap", || {
                format!("vni {vni} from {src}: {inner_len} byte inner frame")
            });
        }
    }
}
