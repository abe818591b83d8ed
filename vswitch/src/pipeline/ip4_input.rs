//! ip4-input: validate an IPv4 header and decide between local delivery,
//! VXLAN decapsulation and forwarding.
//!
//! Checks, as RFC 1812 section 5.2.2 asks of a router: the header fits the
//! frame, IHL >= 5, the total length covers the header and fits the frame
//! (Ethernet padding after it is trimmed), the checksum verifies. Then the
//! addresses (section 5.3.7): martian sources and destinations are dropped;
//! pods may only send from their own address (Calico's RPF check), and the
//! uplink may not bring in sources of this node's own pod CIDR (strict
//! reverse-path filtering, as `rp_filter` does for Calico). Broadcast,
//! multicast and unspecified destinations are not routed. Everything else
//! goes to ip4-nat, which tracks it and, after any NAT, hands the switch's
//! own addresses (gateway, node, VTEP) to local delivery (5.2.1) and the
//! rest to forwarding.

use std::net::Ipv4Addr;

use smoltcp::wire::{IpProtocol, Ipv4Packet, UdpPacket};

use super::{Meta, Next, State};
use crate::drop::DropReason;
use crate::packet::{frame_u16, FramePool};
use crate::port::Batch;
use crate::snapshot::{PortRole, Snapshot};

impl State {
    pub(super) fn ip4_input<P: FramePool>(
        &mut self,
        snap: &Snapshot,
        pool: &mut P,
        batch: &mut Batch,
    ) {
        let role = self.in_port.role;
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
            let next = classify(snap, role, &m, &ip);
            // Trim Ethernet padding: from here on the packet ends where the
            // IPv4 datagram does.
            pkt.len = frame_u16(l3 + usize::from(ip.total_len()));
            match next {
                Ok(next) => self.set_next(i, next),
                Err(reason) => self.drop_packet(i, reason),
            }
            self.trace(i, "ip4-input", || {
                let (src, dst) = (ip.src_addr(), ip.dst_addr());
                format!(
                    "{src} > {dst} {} {}",
                    ip_proto_name(ip.next_header()),
                    super::decision(next)
                )
            });
        }
    }
}

#[inline]
fn classify(
    snap: &Snapshot,
    role: PortRole,
    m: &Meta,
    ip: &Ipv4Packet<&[u8]>,
) -> Result<Next, DropReason> {
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if is_martian_source(src) || is_martian_destination(dst) {
        return Err(DropReason::MartianAddress);
    }
    match role {
        PortRole::Pod { ip: pod_ip } if src != pod_ip => return Err(DropReason::SpoofedSource),
        PortRole::Uplink if snap.pod_prefix.contains(src) => {
            return Err(DropReason::MartianAddress)
        }
        _ => {}
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
            if ip.more_frags() || ip.frag_offset() != 0 {
                return Err(DropReason::VxlanFragmented);
            }
            match UdpPacket::new_checked(ip.payload()) {
                Err(_) => return Err(DropReason::MalformedVxlan),
                Ok(udp) if udp.dst_port() == overlay.udp_port => return Ok(Next::VxlanDecap),
                Ok(_) => {}
            }
        }
    }
    // Local delivery or forwarding is ip4-nat's to decide, after NAT.
    Ok(Next::Ip4Nat)
}

/// Sources no forwarded packet may carry (RFC 1812 5.3.7 and 4.2.2.11):
/// "this" network 0/8, loopback, multicast, class E and broadcast.
pub(super) fn is_martian_source(a: Ipv4Addr) -> bool {
    let first = a.octets()[0];
    first == 0 || first == 127 || first >= 224
}

/// Destinations that are never routed: "this" network, loopback, class E
/// (limited broadcast and multicast are handled as not routable).
fn is_martian_destination(a: Ipv4Addr) -> bool {
    let first = a.octets()[0];
    first == 0 && !a.is_unspecified() || first == 127 || (first >= 240 && !a.is_broadcast())
}

pub(super) fn ip_proto_name(p: IpProtocol) -> String {
    match p {
        IpProtocol::Icmp => "icmp".into(),
        IpProtocol::Tcp => "tcp".into(),
        IpProtocol::Udp => "udp".into(),
        other => format!("proto {}", u8::from(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn martians() {
        for a in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "224.0.0.5",
        ] {
            assert!(is_martian_source(a.parse().unwrap()), "{a}");
        }
        for a in ["10.0.0.1", "169.254.1.1", "192.168.1.1", "223.255.255.254"] {
            assert!(!is_martian_source(a.parse().unwrap()), "{a}");
        }
        for a in ["0.1.2.3", "127.0.0.1", "240.0.0.1"] {
            assert!(is_martian_destination(a.parse().unwrap()), "{a}");
        }
        for a in ["255.255.255.255", "224.0.0.5", "0.0.0.0", "8.8.8.8"] {
            assert!(!is_martian_destination(a.parse().unwrap()), "{a}");
        }
    }
}
