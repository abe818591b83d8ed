//! icmp-error: answer a packet the switch cannot deliver with an ICMP error
//! (time exceeded, destination unreachable, fragmentation needed).
//!
//! The error is built in the offending packet's own frame: the original IP
//! header and the start of its payload are already where the quote goes, so
//! only the new Ethernet, IPv4 and ICMP headers (42 bytes) are written into
//! the headroom in front of them; no payload is copied. The quote is cut so
//! the whole error is at most 576 bytes (RFC 1812 4.3.2.3). The new packet
//! comes from the node IP with DF set (at 576 bytes it never needs
//! fragmenting), is marked as originated, and goes back through ip4-forward
//! to reach the sender wherever it is.
//!
//! Never sent (RFC 1812 4.3.2.7): about an ICMP error, about a non-first
//! fragment, to a martian, broadcast or multicast source. Rate-limited per
//! worker with a token bucket (Linux's `icmp_msgs_per_sec` defaults); Linux
//! also limits per destination, which this does not yet do.

use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet};

use super::ip4_input::is_martian_source;
use super::{Next, State, ORIGINATED_TTL};
use crate::drop::DropReason;
use crate::packet::{frame_u16, FramePool};
use crate::port::Batch;
use crate::snapshot::Snapshot;
use crate::wire::{checksum, Ipv4Header, ETHERNET_HEADER_LEN, ICMP_HEADER_LEN, IPV4_HEADER_LEN};

/// Largest ICMP error datagram (RFC 1812 4.3.2.3).
const MAX_ERROR_LEN: usize = 576;
/// Headers written in front of the quote.
const PREFIX_LEN: usize = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + ICMP_HEADER_LEN;
/// Internetwork control precedence, as Linux sets on ICMP errors.
const TOS_INTERNETWORK_CONTROL: u8 = 0xc0;

impl State {
    #[cold]
    pub(super) fn icmp_error<P: FramePool>(
        &mut self,
        snap: &Snapshot,
        pool: &mut P,
        batch: &mut Batch,
    ) {
        for (i, pkt) in batch.iter_mut().enumerate() {
            if self.meta[i].next != Next::IcmpError {
                continue;
            }
            let m = self.meta[i];
            // The original packet is dropped whether or not an error goes
            // back; count it under its reason now.
            self.counters.count_drop(m.drop);
            self.set_next(i, Next::Done);

            let l3 = usize::from(m.l3);
            let ip = Ipv4Packet::new_unchecked(&pkt.data(pool)[l3..]);
            let src = ip.src_addr();
            let suppress = is_martian_source(src)
                || ip.frag_offset() != 0
                || (ip.next_header() == IpProtocol::Icmp && is_icmp_error(ip.payload()));
            if suppress || !self.icmp_limiter.take(self.now_ns) {
                if !suppress {
                    self.counters.icmp_rate_limited += 1;
                }
                pool.free(pkt.frame);
                self.trace(i, "icmp-error", || {
                    format!(
                        "to {src}: suppressed ({})",
                        if suppress { "rfc 1812" } else { "rate limit" }
                    )
                });
                continue;
            }

            // The quote: the original datagram from its IP header on (which
            // ip4-input validated), cut to fit.
            let quote =
                usize::from(ip.total_len()).min(MAX_ERROR_LEN - IPV4_HEADER_LEN - ICMP_HEADER_LEN);
            let Some(new_head) = (usize::from(pkt.head) + l3).checked_sub(PREFIX_LEN) else {
                // Counts the error that could not be built; the original
                // was counted above.
                pool.free(pkt.frame);
                self.counters.count_drop(DropReason::NoHeadroom);
                continue;
            };
            pkt.head = frame_u16(new_head);
            pkt.len = frame_u16(PREFIX_LEN + quote);
            let data = pkt.data_mut(pool);

            // MACs are written by ip4-forward.
            EthernetFrame::new_unchecked(&mut data[..]).set_ethertype(EthernetProtocol::Ipv4);
            Ipv4Header {
                src: snap.node_ip,
                dst: src,
                protocol: IpProtocol::Icmp,
                total_len: frame_u16(IPV4_HEADER_LEN + ICMP_HEADER_LEN + quote),
                tos: TOS_INTERNETWORK_CONTROL,
                ttl: ORIGINATED_TTL,
                dont_frag: true,
            }
            .emit(&mut data[ETHERNET_HEADER_LEN..]);

            let icmp = &mut data[ETHERNET_HEADER_LEN + IPV4_HEADER_LEN..];
            icmp[..ICMP_HEADER_LEN].copy_from_slice(&[m.icmp.ty, m.icmp.code, 0, 0, 0, 0, 0, 0]);
            icmp[6..8].copy_from_slice(&m.icmp.mtu.to_be_bytes());
            let sum = checksum::checksum(icmp);
            icmp[2..4].copy_from_slice(&sum.to_be_bytes());

            self.counters.icmp_errors += 1;
            self.meta[i].l3 = frame_u16(ETHERNET_HEADER_LEN);
            self.meta[i].originated = true;
            self.set_next(i, Next::Ip4Forward);
            self.trace(i, "icmp-error", || {
                format!("type {} code {} to {src}", m.icmp.ty, m.icmp.code)
            });
        }
    }
}

/// Whether an ICMP message (its bytes from the ICMP header on) is an error
/// rather than a query: errors are never answered with errors. Types 3, 4,
/// 5, 11 and 12 are errors; like Linux, unknown types (above 18) and a
/// missing type byte are treated as errors too.
fn is_icmp_error(icmp: &[u8]) -> bool {
    icmp.first()
        .is_none_or(|&ty| matches!(ty, 3 | 4 | 5 | 11 | 12) || ty > 18)
}

#[cfg(test)]
mod tests {
    use super::is_icmp_error;

    #[test]
    fn queries_are_not_errors() {
        for ty in [0, 8, 13, 14, 9, 10] {
            assert!(!is_icmp_error(&[ty]), "type {ty}");
        }
        for ty in [3, 4, 5, 11, 12, 19, 255] {
            assert!(is_icmp_error(&[ty]), "type {ty}");
        }
        assert!(is_icmp_error(&[]));
    }
}
