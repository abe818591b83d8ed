//! Connection tracking of routed traffic: every packet ip4-forward routes
//! for a pod, from the uplink or out of the overlay (decapsulated: the
//! answers to a pod's connection to a remote pod come that way), but not
//! the switch's own replies and errors, updates its connection in the
//! datapath's [`Conntrack`],
//! which `xvsctl dump-conntrack` lists as `conntrack -L` does. TCP
//! connections follow Linux's state machine; UDP, ICMP echo and other
//! protocols (by addresses alone) are replied or not; ICMP errors belong
//! to the connection they quote and are not tracked on their own.
//!
//! Tracking decides nothing yet: a packet invalid for its connection's
//! state is counted (`ct_invalid`) and still forwarded, as Linux does
//! without a rule that drops `ct state invalid`. Services and masquerade
//! will read their NAT bindings from here.

use smoltcp::wire::{Icmpv4Packet, Ipv4Packet, TcpPacket};
use xvs_control::flowrule::{IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP};
use xvs_flowtable::{CtError, FlowKey, PacketInfo, Verdict};

use super::State;
use crate::wire::UDP_HEADER_LEN;

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;

/// TCP flags byte offset in the TCP header.
const TCP_FLAGS: usize = 13;

impl State {
    /// Applies the IPv4 packet `ip` (already validated by ip4-input) to its
    /// connection, creating it on a first packet.
    pub(super) fn track(&mut self, ip: &[u8]) {
        let Some(ct) = &self.conntrack else { return };
        let Some((key, info, opens)) = conn_key(ip) else {
            return;
        };
        let now = self.now_ns;
        for _ in 0..2 {
            match ct.lookup(&key) {
                Some(r) => match ct.update(&r, &info, now) {
                    Verdict::Stale => continue,
                    Verdict::Invalid => self.counters.ct_invalid += 1,
                    _ => {}
                },
                None if opens => match ct.create(key, key.reversed(), &info, now) {
                    Ok(_) => self.counters.ct_created += 1,
                    // Another core created it first: apply the packet to it.
                    Err(CtError::Exists(r)) => {
                        if ct.update(&r, &info, now) == Verdict::Invalid {
                            self.counters.ct_invalid += 1;
                        }
                    }
                    Err(_) => self.counters.ct_untracked += 1,
                },
                None => self.counters.ct_untracked += 1,
            }
            return;
        }
    }
}

/// The connection key of an IPv4 packet, what conntrack needs of it, and
/// whether it may open a connection (an echo reply or an ICMP error may
/// not). `None` for what is not tracked: fragments after the first, ICMP
/// other than echo, and headers cut short.
fn conn_key(bytes: &[u8]) -> Option<(FlowKey, PacketInfo, bool)> {
    let ip = Ipv4Packet::new_checked(bytes).ok()?;
    if ip.frag_offset() != 0 {
        return None;
    }
    let proto = u8::from(ip.next_header());
    let len = u32::from(ip.total_len());
    let l4 = ip.payload();
    let (sport, dport, info, opens) = match proto {
        IP_PROTO_TCP => {
            let tcp = TcpPacket::new_checked(l4).ok()?;
            let flags = *l4.get(TCP_FLAGS)?;
            let (s, d) = (tcp.src_port(), tcp.dst_port());
            (s, d, PacketInfo::tcp(flags, len), true)
        }
        IP_PROTO_UDP => {
            let h = l4.get(..UDP_HEADER_LEN)?;
            let (s, d) = (
                u16::from_be_bytes([h[0], h[1]]),
                u16::from_be_bytes([h[2], h[3]]),
            );
            (s, d, PacketInfo::udp(len), true)
        }
        IP_PROTO_ICMP => {
            let icmp = Icmpv4Packet::new_checked(l4).ok()?;
            let ty = u8::from(icmp.msg_type());
            if ty != ICMP_ECHO_REQUEST && ty != ICMP_ECHO_REPLY {
                return None;
            }
            let id = icmp.echo_ident();
            (id, id, PacketInfo::icmp(len), ty == ICMP_ECHO_REQUEST)
        }
        _ => (0, 0, PacketInfo::new(proto, 0, len), true),
    };
    let key = FlowKey::v4(0, proto, ip.src_addr(), sport, ip.dst_addr(), dport);
    Some((key, info, opens))
}
