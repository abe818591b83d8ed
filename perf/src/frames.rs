//! xvs-pktgen's frames: header templates built with etherparse, and
//! [`FrameWriter`], which turns a template into a frame the way the
//! generator's XDP program does (for the AF_XDP engine, which writes its
//! frames in userspace).
//!
//! Both engines copy the template into every frame and then write the
//! per-frame fields (flow, lengths, checksums, stamp), so only the fields
//! that stay the same matter in a template. Where they sit (offsets from
//! the frame's start; the stamp is 12 bytes right after the innermost UDP
//! header: the sequence number as a native-endian u32, then the send time
//! in ns of CLOCK_MONOTONIC as a native-endian u64):
//!
//! ```text
//!            eth  IPv4  UDP/TCP  stamp
//! UDP          0    14       34     42
//! TCP SYN      0    14       34      -  (TCP seq = sequence number,
//!                                        ack = low 32 bits of the time)
//! VXLAN        0    14       34         outer: UDP source port per flow
//!   inner     50    64       84     92
//! ```

use std::net::Ipv4Addr;

use etherparse::PacketBuilder;
use xvs_hw::pktgen::{FlowVary, FrameKind, TEMPLATE_LEN};

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

/// Port numbers within one source address (or destination port) that
/// flows take: flow `f` adds `f % FLOW_PORTS` to the source port.
pub const FLOW_PORTS: u32 = 16384;

/// Writes generated frames, byte for byte as the generator's XDP program
/// (`xvs_gen` in `hw/bpf/pktgen.bpf.c`) does, from a template: every
/// header, the flow's fields, the IPv4 lengths and header checksums, the
/// UDP lengths (checksum 0) or the TCP checksum, and the stamp. The payload
/// is zeroes.
#[derive(Debug, Clone)]
pub struct FrameWriter {
    kind: FrameKind,
    vary: FlowVary,
    template: [u8; TEMPLATE_LEN],
}

impl FrameWriter {
    /// `template` is [`template`]'s for `kind`; flows vary as `vary` says.
    pub fn new(kind: FrameKind, template: &[u8], vary: FlowVary) -> Result<Self, String> {
        if template.len() != kind.header_len() {
            return Err(format!(
                "a {kind:?} template has {} bytes, not {}",
                template.len(),
                kind.header_len()
            ));
        }
        let mut t = [0; TEMPLATE_LEN];
        t[..template.len()].copy_from_slice(template);
        Ok(FrameWriter {
            kind,
            vary,
            template: t,
        })
    }

    /// Writes the `size`-byte frame of flow `flow` with sequence number
    /// `seq` and send time `now_ns` at the start of `buf`, whatever `buf`
    /// held before, and returns its length; `None` if `size` is shorter
    /// than the kind's headers and stamp ([`FrameKind::min_frame_len`]) or
    /// longer than `buf`.
    pub fn write(
        &self,
        buf: &mut [u8],
        size: u16,
        flow: u32,
        seq: u32,
        now_ns: u64,
    ) -> Option<usize> {
        let len = usize::from(size);
        if len < self.kind.min_frame_len() {
            return None;
        }
        let frame = buf.get_mut(..len)?;
        let headers = self.kind.header_len();
        frame[..headers].copy_from_slice(&self.template[..headers]);
        frame[headers..].fill(0);
        // Every offset below lies inside `min_frame_len` bytes.
        if self.kind == FrameKind::TcpSyn {
            self.set_flow(frame, 14, flow);
            put_u32(frame, 38, seq);
            put_u32(frame, 42, low_u32(now_ns));
            ip_finish(frame, 14);
            // The TCP checksum: pseudo header and segment.
            put_u16(frame, 50, 0);
            let segment = len - 34;
            let mut sum = sum_words(0, &frame[26..34]);
            sum += 6 + u32::try_from(segment).unwrap_or(0);
            put_u16(frame, 50, fold(sum_words(sum, &frame[34..])));
            return Some(len);
        }
        let ip = if self.kind == FrameKind::Vxlan {
            // Outer source port: entropy for the receiver's RSS, per flow.
            let port_add = u16::try_from(flow % FLOW_PORTS).unwrap_or(0);
            put_u16(frame, 34, 49152 + port_add);
            put_u16(frame, 38, u16::try_from(len - 34).unwrap_or(0));
            put_u16(frame, 40, 0);
            ip_finish(frame, 14);
            64
        } else {
            14
        };
        self.set_flow(frame, ip, flow);
        ip_finish(frame, ip);
        let udp = ip + 20;
        put_u16(frame, udp + 4, u16::try_from(len - udp).unwrap_or(0));
        put_u16(frame, udp + 6, 0);
        frame[udp + 8..udp + 12].copy_from_slice(&seq.to_ne_bytes());
        frame[udp + 12..udp + 20].copy_from_slice(&now_ns.to_ne_bytes());
        Some(len)
    }

    /// Flow `flow` in the IPv4 header at `ip` and the UDP/TCP header after
    /// it (see [`FlowVary`]); ports wrap.
    fn set_flow(&self, frame: &mut [u8], ip: usize, flow: u32) {
        let l4 = ip + 20;
        let low = u16::try_from(flow % FLOW_PORTS).unwrap_or(0);
        let high = flow / FLOW_PORTS;
        put_u16(frame, l4, get_u16(frame, l4).wrapping_add(low));
        match self.vary {
            FlowVary::SrcIp => put_u32(frame, ip + 12, get_u32(frame, ip + 12).wrapping_add(high)),
            FlowVary::DstPort => {
                let high = u16::try_from(high).unwrap_or(0);
                put_u16(frame, l4 + 2, get_u16(frame, l4 + 2).wrapping_add(high));
            }
        }
    }
}

/// The IPv4 header at `ip`: total length (to the end of `frame`) and
/// header checksum (20 bytes, no options, as the templates are).
fn ip_finish(frame: &mut [u8], ip: usize) {
    let total = u16::try_from(frame.len() - ip).unwrap_or(0);
    put_u16(frame, ip + 2, total);
    put_u16(frame, ip + 10, 0);
    let sum = sum_words(0, &frame[ip..ip + 20]);
    put_u16(frame, ip + 10, fold(sum));
}

/// Adds the big-endian 16-bit words of `bytes` (an odd last byte padded
/// with zero) to `sum`.
fn sum_words(sum: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    let mut sum = chunks
        .by_ref()
        .fold(sum, |s, w| s + u32::from(u16::from_be_bytes([w[0], w[1]])));
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

/// The one's complement of the one's complement sum.
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(u16::MAX)
}

fn low_u32(v: u64) -> u32 {
    u32::try_from(v & u64::from(u32::MAX)).unwrap_or(0)
}

fn get_u16(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

fn put_u16(frame: &mut [u8], at: usize, v: u16) {
    frame[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn get_u32(frame: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]])
}

fn put_u32(frame: &mut [u8], at: usize, v: u32) {
    frame[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Ipv4HeaderSlice, NetSlice, SlicedPacket, TransportSlice};
    use xvs_hw::pktgen::LiveGenerator;

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

    fn outer() -> Outer {
        Outer {
            src_mac: [2, 0, 0, 0, 1, 1],
            dst_mac: [2, 0, 0, 0, 1, 2],
            src_ip: Ipv4Addr::new(192, 168, 0, 1),
            dst_ip: Ipv4Addr::new(192, 168, 0, 2),
            vni: 7,
            port: 4789,
        }
    }

    const KINDS: [FrameKind; 3] = [FrameKind::Udp, FrameKind::TcpSyn, FrameKind::Vxlan];

    #[test]
    fn templates_have_the_header_length_the_program_copies() {
        let outer = outer();
        for kind in KINDS {
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

    fn writer(kind: FrameKind, vary: FlowVary) -> FrameWriter {
        let t = template(kind, &endpoints(), Some(&outer())).unwrap();
        FrameWriter::new(kind, &t, vary).unwrap()
    }

    /// (flow, frame length) pairs: both sides of 16384, sizes from the
    /// shortest to the longest.
    fn cases(kind: FrameKind) -> [(u32, u16); 5] {
        let min = u16::try_from(kind.min_frame_len()).unwrap();
        [
            (0, min),
            (1, 590),
            (16383, 1514),
            (16384, min),
            (40000, 1514),
        ]
    }

    const NOW: u64 = 0x0123_4567_89ab_cdef;

    /// Checks one written frame with etherparse: lengths, checksums, the
    /// flow's fields, the stamp, zeroes after it.
    fn check(kind: FrameKind, vary: FlowVary, frame: &[u8], flow: u32, seq: u32) {
        let inner = if kind == FrameKind::Vxlan {
            let p = SlicedPacket::from_ethernet(frame).unwrap();
            let Some(NetSlice::Ipv4(ip)) = &p.net else {
                panic!("outer not IPv4")
            };
            let h = ip.header();
            assert_eq!(usize::from(h.total_len()), frame.len() - 14);
            assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
            let Some(TransportSlice::Udp(udp)) = &p.transport else {
                panic!("outer not UDP")
            };
            assert_eq!(
                udp.source_port(),
                49152 + u16::try_from(flow % 16384).unwrap()
            );
            assert_eq!(udp.destination_port(), 4789);
            assert_eq!(usize::from(udp.length()), frame.len() - 34);
            assert_eq!(udp.checksum(), 0);
            assert_eq!(&frame[42..50], &[8, 0, 0, 0, 0, 0, 7, 0], "VXLAN header");
            &frame[50..]
        } else {
            frame
        };
        let p = SlicedPacket::from_ethernet(inner).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4")
        };
        let h = ip.header();
        assert_eq!(usize::from(h.total_len()), inner.len() - 14);
        assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
        assert_eq!(h.ttl(), 64);
        let high = flow / 16384;
        let (src_ip, dst_port) = match vary {
            FlowVary::SrcIp => (u32::from(Ipv4Addr::new(10, 0, 0, 1)) + high, 5001),
            FlowVary::DstPort => (u32::from(Ipv4Addr::new(10, 0, 0, 1)), 5001 + high),
        };
        assert_eq!(h.source_addr(), Ipv4Addr::from(src_ip));
        assert_eq!(h.destination_addr(), Ipv4Addr::new(10, 0, 0, 2));
        let src_port = 1024 + flow % 16384;
        match &p.transport {
            Some(TransportSlice::Udp(udp)) => {
                assert_ne!(kind, FrameKind::TcpSyn);
                assert_eq!(u32::from(udp.source_port()), src_port);
                assert_eq!(u32::from(udp.destination_port()), dst_port);
                assert_eq!(usize::from(udp.length()), inner.len() - 34);
                assert_eq!(udp.checksum(), 0);
                let payload = udp.payload();
                assert_eq!(&payload[..4], &seq.to_ne_bytes(), "stamp: sequence");
                assert_eq!(&payload[4..12], &NOW.to_ne_bytes(), "stamp: time");
                assert!(payload[12..].iter().all(|&b| b == 0), "payload zeroes");
            }
            Some(TransportSlice::Tcp(tcp)) => {
                assert_eq!(kind, FrameKind::TcpSyn);
                assert_eq!(u32::from(tcp.source_port()), src_port);
                assert_eq!(u32::from(tcp.destination_port()), dst_port);
                assert!(tcp.syn() && !tcp.ack());
                assert_eq!(tcp.sequence_number(), seq);
                assert_eq!(
                    tcp.acknowledgment_number(),
                    0x89ab_cdef,
                    "low 32 bits of the time"
                );
                let sum = tcp.calc_checksum_ipv4(h.source(), h.destination());
                assert_eq!(tcp.checksum(), sum.unwrap());
                assert!(tcp.payload().iter().all(|&b| b == 0), "payload zeroes");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn written_frames_have_their_flow_lengths_checksums_and_stamp() {
        for kind in KINDS {
            for vary in [FlowVary::SrcIp, FlowVary::DstPort] {
                let w = writer(kind, vary);
                // Dirty memory, as a reused UMEM frame: every byte of the
                // frame is written.
                let mut dirty = [0xa5u8; 2048];
                let mut clean = [0u8; 2048];
                for (flow, size) in cases(kind) {
                    let seq = 7_000_000 + flow;
                    let len = w.write(&mut dirty, size, flow, seq, NOW).unwrap();
                    assert_eq!(len, usize::from(size));
                    w.write(&mut clean, size, flow, seq, NOW).unwrap();
                    assert_eq!(&dirty[..len], &clean[..len], "{kind:?} {flow}");
                    check(kind, vary, &dirty[..len], flow, seq);
                }
            }
        }
    }

    #[test]
    fn ports_wrap_and_bad_sizes_are_refused() {
        let e = Endpoints {
            src_port: 65535,
            dst_port: 65535,
            ..endpoints()
        };
        let t = template(FrameKind::Udp, &e, None).unwrap();
        let w = FrameWriter::new(FrameKind::Udp, &t, FlowVary::DstPort).unwrap();
        let mut buf = [0u8; 128];
        w.write(&mut buf, 60, 16385, 0, 0).unwrap();
        assert_eq!(get_u16(&buf, 34), 0, "source port 65535 + 1");
        assert_eq!(get_u16(&buf, 36), 0, "destination port 65535 + 1");
        assert_eq!(
            w.write(&mut buf, 53, 0, 0, 0),
            None,
            "shorter than headers and stamp"
        );
        assert_eq!(
            w.write(&mut buf, 129, 0, 0, 0),
            None,
            "longer than the buffer"
        );
        assert!(FrameWriter::new(FrameKind::TcpSyn, &t, FlowVary::SrcIp).is_err());
    }

    /// The XDP program (run once per frame without sending it) writes the
    /// same bytes: the two engines send the same traffic. Needs root (BPF).
    #[test]
    fn frames_match_the_generator_program_byte_for_byte() {
        let uid = std::process::Command::new("id").arg("-u").output();
        if !uid.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0") {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "needs root (BPF), and CI=true: refusing to skip"
            );
            eprintln!("SKIPPED frames_match_the_generator_program_byte_for_byte: needs root");
            return;
        }
        for kind in KINDS {
            for vary in [FlowVary::SrcIp, FlowVary::DstPort] {
                let t = template(kind, &endpoints(), Some(&outer())).unwrap();
                let w = FrameWriter::new(kind, &t, vary).unwrap();
                for (flow, size) in cases(kind) {
                    // One flow per sequence number, so packet `flow` is flow
                    // `flow`.
                    let mut g = LiveGenerator::new("lo", kind, &t, &[size], 50_000, vary).unwrap();
                    let bpf = g.dry_run(flow).unwrap();
                    assert_eq!(bpf.len(), usize::from(size));
                    // The program's send time, to write the same stamp.
                    let now = match kind {
                        FrameKind::TcpSyn => u64::from(get_u32(&bpf, 42)),
                        FrameKind::Udp => u64::from_ne_bytes(bpf[46..54].try_into().unwrap()),
                        FrameKind::Vxlan => u64::from_ne_bytes(bpf[96..104].try_into().unwrap()),
                    };
                    let mut ours = vec![0xa5; 2048];
                    let len = w.write(&mut ours, size, flow, flow, now).unwrap();
                    assert_eq!(&ours[..len], &bpf[..], "{kind:?} {vary:?} flow {flow}");
                }
            }
        }
    }
}
