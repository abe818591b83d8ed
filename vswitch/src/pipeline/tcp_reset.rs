//! tcp-reset: refuse a TCP segment with a RST, as nftables' `reject with
//! tcp reset` does (kube-proxy's answer for a Service without endpoints).
//!
//! The RST is built in the refused segment's own frame (RFC 9293 3.10.7.1,
//! the CLOSED state): from the address and port the segment was sent to,
//! to its sender; if the segment had ACK set the RST takes its sequence
//! number from that acknowledgment, otherwise it has sequence 0 and
//! acknowledges everything the segment occupied (its payload plus SYN and
//! FIN), with ACK set. Its IP header is new (no options, TTL 64, DF); its
//! payload is gone. A RST is never answered with a RST. Marked as
//! originated, it goes back through ip4-forward to the sender.

use smoltcp::wire::{IpProtocol, Ipv4Packet};

use super::{Next, State, ORIGINATED_TTL};
use crate::packet::{frame_u16, FramePool};
use crate::port::Batch;
use crate::wire::{checksum, Ipv4Header, IPV4_HEADER_LEN};

/// A TCP header without options.
const TCP_HEADER_LEN: usize = 20;
/// The RST's IPv4 total length and TCP data offset word, as the header
/// fields hold them.
const RST_TOTAL_LEN: u16 = 40;
const DATA_OFFSET_WORDS: u8 = 5;
const _: () = assert!(RST_TOTAL_LEN as usize == IPV4_HEADER_LEN + TCP_HEADER_LEN);
const _: () = assert!(DATA_OFFSET_WORDS as usize * 4 == TCP_HEADER_LEN);

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

impl State {
    #[cold]
    pub(super) fn tcp_reset<P: FramePool>(&mut self, pool: &mut P, batch: &mut Batch) {
        for (i, pkt) in batch.iter_mut().enumerate() {
            if self.meta[i].next != Next::TcpReset {
                continue;
            }
            let m = self.meta[i];
            // The refused segment is dropped whether or not a RST goes back.
            self.counters.count_drop(m.drop);
            let l3 = usize::from(m.l3);
            let data = pkt.data_mut(pool);
            let Some(rst) = reset_for(&data[l3..]) else {
                self.set_next(i, Next::Done);
                pool.free(pkt.frame);
                self.trace(i, "tcp-reset", || {
                    "not answered (a RST or cut short)".into()
                });
                continue;
            };
            let out = &mut data[l3..l3 + rst.len()];
            out.copy_from_slice(&rst);
            pkt.len = frame_u16(l3 + rst.len());
            self.meta[i].originated = true;
            self.counters.tcp_resets += 1;
            self.set_next(i, Next::Ip4Forward);
            self.trace(i, "tcp-reset", || {
                let ip = Ipv4Packet::new_unchecked(&rst[..]);
                format!("rst from {} to {}", ip.src_addr(), ip.dst_addr())
            });
        }
    }
}

/// The RST answering IPv4 segment `ip` (validated by ip4-input), or
/// `None` for a RST or a segment whose TCP header is cut short.
fn reset_for(ip: &[u8]) -> Option<[u8; IPV4_HEADER_LEN + TCP_HEADER_LEN]> {
    let p = Ipv4Packet::new_checked(ip).ok()?;
    let tcp = p.payload();
    let data_offset = usize::from(tcp.get(12)? >> 4) * 4;
    if data_offset < TCP_HEADER_LEN || tcp.len() < data_offset {
        return None;
    }
    let flags = tcp[13];
    if flags & RST != 0 {
        return None;
    }
    let word = |at: usize| u32::from_be_bytes([tcp[at], tcp[at + 1], tcp[at + 2], tcp[at + 3]]);
    let (seq, ack) = (word(4), word(8));
    let payload = u32::try_from(tcp.len() - data_offset).unwrap_or(u32::MAX);
    let (out_seq, out_ack, out_flags) = if flags & ACK != 0 {
        (ack, 0, RST)
    } else {
        let occupied = payload + u32::from(flags & SYN != 0) + u32::from(flags & FIN != 0);
        (0, seq.wrapping_add(occupied), RST | ACK)
    };
    let mut out = [0u8; IPV4_HEADER_LEN + TCP_HEADER_LEN];
    let (src, dst) = (p.dst_addr(), p.src_addr());
    Ipv4Header {
        src,
        dst,
        protocol: IpProtocol::Tcp,
        total_len: RST_TOTAL_LEN,
        tos: 0,
        ttl: ORIGINATED_TTL,
        dont_frag: true,
    }
    .emit(&mut out);
    let t = &mut out[IPV4_HEADER_LEN..];
    t[0..2].copy_from_slice(&tcp[2..4]);
    t[2..4].copy_from_slice(&tcp[0..2]);
    t[4..8].copy_from_slice(&out_seq.to_be_bytes());
    t[8..12].copy_from_slice(&out_ack.to_be_bytes());
    t[12] = DATA_OFFSET_WORDS << 4;
    t[13] = out_flags;
    // Pseudo header + segment.
    let mut acc = checksum::sum(&src.octets()) + checksum::sum(&dst.octets());
    acc += u32::from(u8::from(IpProtocol::Tcp)) + u32::from(DATA_OFFSET_WORDS) * 4;
    acc += checksum::sum(t);
    let sum = !checksum::fold(acc);
    t[16..18].copy_from_slice(&sum.to_be_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Ipv4Slice, PacketBuilder, TcpSlice};

    fn segment(syn: bool, ack: Option<u32>, payload: &[u8]) -> Vec<u8> {
        let mut b =
            PacketBuilder::ipv4([10, 244, 1, 11], [10, 96, 0, 10], 64).tcp(40000, 80, 1000, 512);
        if syn {
            b = b.syn();
        }
        if let Some(a) = ack {
            b = b.ack(a);
        }
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn parsed(rst: &[u8]) -> (Ipv4Slice<'_>, TcpSlice<'_>) {
        let ip = Ipv4Slice::from_slice(rst).unwrap();
        let tcp = TcpSlice::from_slice(ip.payload().payload).unwrap();
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let want = tcp
            .to_header()
            .calc_checksum_ipv4(&h, tcp.payload())
            .unwrap();
        assert_eq!(tcp.checksum(), want);
        (ip, tcp)
    }

    #[test]
    fn a_syn_gets_rst_ack_acknowledging_it() {
        let rst = reset_for(&segment(true, None, b"")).unwrap();
        let (ip, tcp) = parsed(&rst);
        assert_eq!(ip.header().source(), [10, 96, 0, 10]);
        assert_eq!(ip.header().destination(), [10, 244, 1, 11]);
        assert_eq!((tcp.source_port(), tcp.destination_port()), (80, 40000));
        assert!(tcp.rst() && tcp.ack() && !tcp.syn());
        assert_eq!(
            (tcp.sequence_number(), tcp.acknowledgment_number()),
            (0, 1001)
        );
    }

    #[test]
    fn a_segment_with_ack_gets_a_rst_at_that_sequence() {
        let rst = reset_for(&segment(false, Some(777), b"data")).unwrap();
        let (_, tcp) = parsed(&rst);
        assert!(tcp.rst() && !tcp.ack());
        assert_eq!(tcp.sequence_number(), 777);
    }

    #[test]
    fn a_rst_is_not_answered() {
        let mut s = segment(false, Some(1), b"");
        s[20 + 13] |= RST;
        assert!(reset_for(&s).is_none());
        assert!(reset_for(&s[..30]).is_none(), "cut short");
    }
}
