//! Header templates for xvs-pktgen's generator program, built with
//! etherparse. The program copies the template into every frame and then
//! writes the per-frame fields (flow, lengths, checksums, stamp), so only
//! the fields that stay the same matter here.

use std::net::Ipv4Addr;

use etherparse::PacketBuilder;
use xvs_hw::pktgen::FrameKind;

/// Addresses and ports of the generated traffic.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// The outer headers of VXLAN-encapsulated traffic.
#[derive(Debug, Clone, Copy)]
pub struct Outer {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub vni: u32,
    pub port: u16,
}

/// Wire sizes of simple IMIX (7:4:1 of 64, 594 and 1518 bytes).
pub const IMIX: [u16; 12] = [64, 594, 64, 64, 594, 64, 1518, 64, 594, 64, 594, 64];

/// The frame length (without the 4-byte FCS) of a wire size.
pub fn frame_len(wire: u16) -> u16 {
    wire.saturating_sub(4)
}

fn udp(e: &Endpoints) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(e.src_mac, e.dst_mac)
        .ipv4(e.src_ip.octets(), e.dst_ip.octets(), 64)
        .udp(e.src_port, e.dst_port)
        .write(&mut out, &[0; 12])
        .expect("writing to a Vec");
    out.truncate(FrameKind::Udp.header_len());
    out
}

/// The template of `kind` (VXLAN needs `outer`).
pub fn template(kind: FrameKind, e: &Endpoints, outer: Option<&Outer>) -> Result<Vec<u8>, String> {
    match kind {
        FrameKind::Udp => Ok(udp(e)),
        FrameKind::TcpSyn => {
            let mut out = Vec::new();
            PacketBuilder::ethernet2(e.src_mac, e.dst_mac)
                .ipv4(e.src_ip.octets(), e.dst_ip.octets(), 64)
                .tcp(e.src_port, e.dst_port, 0, 65535)
                .syn()
                .write(&mut out, &[])
                .expect("writing to a Vec");
            Ok(out)
        }
        FrameKind::Vxlan => {
            let o = outer.ok_or("VXLAN frames need the outer addresses")?;
            let mut payload = vec![0x08, 0, 0, 0];
            payload.extend_from_slice(&o.vni.to_be_bytes()[1..]);
            payload.push(0);
            payload.extend_from_slice(&udp(e));
            payload.extend_from_slice(&[0; 12]);
            let mut out = Vec::new();
            PacketBuilder::ethernet2(o.src_mac, o.dst_mac)
                .ipv4(o.src_ip.octets(), o.dst_ip.octets(), 64)
                .udp(49152, o.port)
                .write(&mut out, &payload)
                .expect("writing to a Vec");
            out.truncate(FrameKind::Vxlan.header_len());
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Ipv4HeaderSlice, SlicedPacket, TransportSlice};

    fn endpoints() -> Endpoints {
        Endpoints {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            dst_ip: Ipv4Addr::new(10, 0, 0, 2),
            src_port: 1024,
            dst_port: 5001,
        }
    }

    #[test]
    fn templates_have_the_header_length_the_program_copies() {
        let outer = Outer {
            src_mac: [2, 0, 0, 0, 1, 1],
            dst_mac: [2, 0, 0, 0, 1, 2],
            src_ip: Ipv4Addr::new(192, 168, 0, 1),
            dst_ip: Ipv4Addr::new(192, 168, 0, 2),
            vni: 7,
            port: 4789,
        };
        for kind in [FrameKind::Udp, FrameKind::TcpSyn, FrameKind::Vxlan] {
            let t = template(kind, &endpoints(), Some(&outer)).unwrap();
            assert_eq!(t.len(), kind.header_len(), "{kind:?}");
        }
        let tcp = template(FrameKind::TcpSyn, &endpoints(), None).unwrap();
        let p = SlicedPacket::from_ethernet(&tcp).unwrap();
        let Some(TransportSlice::Tcp(t)) = p.transport else {
            panic!("not TCP")
        };
        assert!(t.syn() && !t.ack());
        // The inner headers sit where the program expects them (offset 50).
        let vx = template(FrameKind::Vxlan, &endpoints(), Some(&outer)).unwrap();
        let inner = Ipv4HeaderSlice::from_slice(&vx[64..84]).unwrap();
        assert_eq!(inner.destination_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(&vx[50..56], &[2, 0, 0, 0, 0, 2], "inner destination MAC");
        assert!(template(FrameKind::Vxlan, &endpoints(), None).is_err());
    }

    #[test]
    fn imix_is_seven_four_one() {
        let count = |s| IMIX.iter().filter(|&&x| x == s).count();
        assert_eq!((count(64), count(594), count(1518)), (7, 4, 1));
    }
}
