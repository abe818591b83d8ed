//! ip4-input: validate an IPv4 header and decide between local delivery,
//! VXLAN decapsulation and forwarding.
//!
//! Checks, as RFC 1812 section 5.2.2 asks of a router: the header fits the
//! frame, IHL >= 5, the total length covers the header and fits the frame
//! (Ethernet padding after it is trimmed), the checksum verifies. Pods may
//! only send from their own address (Calico's RPF check). Broadcast,
//! multicast and unspecified destinations are not routed.

use std::net::Ipv4Addr;

use smoltcp::wire::{IpProtocol, Ipv4Packet, UdpPacket};

use super::{Next, Pipeline};
use crate::drop::DropReason;
use crate::packet::{frame_u16, FramePool};
use crate::port::Batch;
use crate::snapshot::PortRole;

impl Pipeline {
    pub(super) fn ip4_input<P: FramePool>(&mut self, pool: &mut P, batch: &mut Batch) {
        let Some(port) = self.snapshot.ports.get(usize::from(self.in_port)) else {
            return;
        };
        let role = port.role;
        for (i, pkt) in batch.iter_mut().enumerate() {
            if self.meta[i].next != Next::Ip4Input {
                continue;
            }
            let m = self.meta[i];
            let l3 = usize::from(m.l3);
            let data = pkt.data(pool);
            let Some(Ok(ip)) = data.get(l3..).map(Ipv4Packet::new_checked) else {
                self.drop_packet(i, DropReason::MalformedIpv4);
                continue;
            };
            if ip.version() != 4 {
                self.drop_packet(i, DropReason::MalformedIpv4);
                continue;
            }
            if !ip.verify_checksum() {
                self.drop_packet(i, DropReason::BadIpv4Checksum);
                continue;
            }
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            let fragment = ip.more_frags() || ip.frag_offset() != 0;
            let next = classify(self, role, &m, &ip, src, dst, fragment);
            // Trim Ethernet padding: from here on the packet ends where the
            // IPv4 datagram does.
            pkt.len = frame_u16(l3 + usize::from(ip.total_len()));
            match next {
                Ok(next) => self.set_next(i, next),
                Err(reason) => self.drop_packet(i, reason),
            }
            self.trace(i, "ip4-input", || {
                format!(
                    "{src} > {dst} {} {}",
                    ip_proto_name(ip.next_header()),
                    super::decision(next)
                )
            });
        }
    }
}

fn classify(
    pipeline: &Pipeline,
    role: PortRole,
    m: &super::Meta,
    ip: &Ipv4Packet<&[u8]>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    fragment: bool,
) -> Result<Next, DropReason> {
    let snap = &pipeline.snapshot;
    if let PortRole::Pod { ip: pod_ip } = role {
        if src != pod_ip && !m.decapped {
            return Err(DropReason::SpoofedSource);
        }
    }
    if dst.is_broadcast() || dst.is_multicast() || dst.is_unspecified() {
        return Err(DropReason::NotRoutable);
    }
    if let Some(overlay) = &snap.overlay {
        if dst == overlay.vtep_ip
            && role == PortRole::Uplink
            && !m.decapped
            && ip.next_header() == IpProtocol::Udp
        {
            if fragment {
                return Err(DropReason::VxlanFragmented);
            }
            match UdpPacket::new_checked(ip.payload()) {
                Err(_) => return Err(DropReason::MalformedVxlan),
                Ok(udp) if udp.dst_port() == overlay.udp_port => return Ok(Next::VxlanDecap),
                Ok(_) => {}
            }
        }
    }
    if dst == snap.gateway_ip {
        return Ok(Next::Ip4Local);
    }
    Ok(Next::Ip4Forward)
}

pub(super) fn ip_proto_name(p: IpProtocol) -> String {
    match p {
        IpProtocol::Icmp => "icmp".into(),
        IpProtocol::Tcp => "tcp".into(),
        IpProtocol::Udp => "udp".into(),
        other => format!("proto {}", u8::from(other)),
    }
}
