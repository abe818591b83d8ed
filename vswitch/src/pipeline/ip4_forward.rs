//! ip4-forward: longest-prefix-match route lookup, TTL, MTU, and the
//! Ethernet rewrite toward the next hop.
//!
//! In the order Linux's `ip_forward` checks them: no route → ICMP net
//! unreachable (host unreachable for an address of this node's pod CIDR
//! that no pod has); TTL <= 1 → ICMP time exceeded; larger than the egress MTU →
//! ICMP fragmentation needed if DF is set (xvs never fragments), else a
//! counted drop. Only then is the packet changed: TTL decremented with the
//! RFC 1624 incremental checksum update, MACs rewritten. Packets the switch
//! originated (echo replies, ICMP errors) skip the TTL check and are never
//! answered with an error.
//!
//! A packet whose flow hit the cache comes with its next hop and skips the
//! route lookup; a packet whose flow may be cached (a miss) has its route
//! added to the cache here, once every check has passed.

use smoltcp::wire::{EthernetAddress, EthernetFrame, Ipv4Packet};

use super::{IcmpReply, Next, State, NO_HOP, NO_KEY, NO_RULE};
use crate::drop::DropReason;
use crate::flow_cache::{self, CachedAction};
use crate::packet::FramePool;
use crate::port::Batch;
use crate::snapshot::{NextHop, Route, Snapshot};
use crate::wire::{checksum, VXLAN_OVERHEAD};

// ICMP types and codes (RFC 792, RFC 1191).
const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMP_NET_UNREACHABLE: u8 = 0;
const ICMP_HOST_UNREACHABLE: u8 = 1;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMP_TIME_EXCEEDED: u8 = 11;

impl State {
    pub(super) fn ip4_forward<P: FramePool>(
        &mut self,
        snap: &Snapshot,
        pool: &mut P,
        batch: &mut Batch,
    ) {
        for (i, pkt) in batch.iter().enumerate() {
            if self.meta[i].next != Next::Ip4Forward {
                continue;
            }
            let m = self.meta[i];
            let l3 = usize::from(m.l3);
            let data = pkt.data_mut(pool);
            let ip_len = data.len() - l3;
            let ip = Ipv4Packet::new_unchecked(&data[l3..]);
            let dst = ip.dst_addr();
            let (ttl, dont_frag) = (ip.hop_limit(), ip.dont_frag());

            // Replies and errors the switch made reuse the slot of the
            // packet they answer: never its cached hop, never its flow.
            let own_flow = !m.originated && !m.decapped;
            let cached = (own_flow && m.hop != NO_HOP)
                .then(|| snap.hops.get(usize::from(m.hop)))
                .flatten()
                .map(|&hop| Route::Via(hop));
            let route = cached
                .as_ref()
                .or_else(|| snap.routes.lookup(u32::from(dst)));
            let hop = match route {
                Some(Route::Unassigned) => {
                    self.refuse(
                        i,
                        DropReason::HostUnreachable,
                        ICMP_DEST_UNREACHABLE,
                        ICMP_HOST_UNREACHABLE,
                        0,
                    );
                    self.trace(i, "ip4-forward", || format!("{dst}: no such pod"));
                    continue;
                }
                Some(&Route::Via(hop)) => Some(hop),
                None => None,
            };
            let Some(hop) = hop else {
                self.refuse(
                    i,
                    DropReason::NoRoute,
                    ICMP_DEST_UNREACHABLE,
                    ICMP_NET_UNREACHABLE,
                    0,
                );
                self.trace(i, "ip4-forward", || format!("{dst}: no route"));
                continue;
            };
            if !m.originated && ttl <= 1 {
                self.refuse(i, DropReason::TtlExpired, ICMP_TIME_EXCEEDED, 0, 0);
                self.trace(i, "ip4-forward", || format!("{dst}: ttl {ttl} expired"));
                continue;
            }
            // The L3 MTU available toward the next hop.
            let mtu = match hop {
                NextHop::Port { port, .. } => match snap.ports.get(usize::from(port)) {
                    Some(out) => usize::from(out.mtu),
                    None => {
                        self.drop_packet(i, DropReason::UnknownPort);
                        continue;
                    }
                },
                NextHop::Remote { remote } => {
                    let Some(overlay) = &snap.overlay else {
                        self.drop_packet(i, DropReason::NoOverlay);
                        continue;
                    };
                    if usize::from(remote) >= snap.remotes.len() {
                        self.drop_packet(i, DropReason::NoOverlay);
                        continue;
                    }
                    let uplink_mtu = snap
                        .ports
                        .get(usize::from(overlay.uplink))
                        .map_or(0, |p| usize::from(p.mtu));
                    // The outer IPv4 packet (outer IPv4 + UDP + VXLAN + inner
                    // Ethernet + this packet) must fit the uplink MTU. The
                    // outer Ethernet header does not count against it, but
                    // the inner one does and is as long, so the overhead is
                    // the whole VXLAN_OVERHEAD (1500 - 50 = 1450).
                    uplink_mtu.saturating_sub(VXLAN_OVERHEAD)
                }
            };
            if ip_len > mtu {
                if dont_frag && !m.originated {
                    let mtu = u16::try_from(mtu).unwrap_or(u16::MAX);
                    self.refuse(
                        i,
                        DropReason::MtuExceeded,
                        ICMP_DEST_UNREACHABLE,
                        ICMP_FRAG_NEEDED,
                        mtu,
                    );
                } else {
                    self.drop_packet(i, DropReason::MtuExceeded);
                }
                self.trace(i, "ip4-forward", || {
                    format!("{dst}: {ip_len} bytes > mtu {mtu}")
                });
                continue;
            }

            if !m.originated {
                let mut ip = Ipv4Packet::new_unchecked(&mut data[l3..]);
                let old = u16::from_be_bytes([ttl, u8::from(ip.next_header())]);
                let new = u16::from_be_bytes([ttl - 1, u8::from(ip.next_header())]);
                let sum = checksum::update_u16(ip.checksum(), old, new);
                ip.set_hop_limit(ttl - 1);
                ip.set_checksum(sum);
            }
            match hop {
                NextHop::Port { port, mac } => {
                    let src = snap.ports[usize::from(port)].mac;
                    let mut eth = EthernetFrame::new_unchecked(&mut data[..]);
                    eth.set_dst_addr(EthernetAddress(mac.0));
                    eth.set_src_addr(EthernetAddress(src.0));
                    self.output_to(i, port);
                }
                NextHop::Remote { remote } => {
                    self.meta[i].remote = remote;
                    self.set_next(i, Next::VxlanEncap);
                }
            }
            self.counters.routed += 1;
            if own_flow && m.key != NO_KEY {
                if let Some(id) = snap.hop_id(hop) {
                    let action = CachedAction::Forward {
                        hop: id,
                        rule: (m.rule != NO_RULE).then_some(m.rule),
                    };
                    // Trimmed by ip4-input: flow_cache::counted_bytes.
                    let bytes = u64::from(pkt.len);
                    self.add_flow(usize::from(m.key), flow_cache::value(action, snap), bytes);
                }
                self.meta[i].key = NO_KEY;
            }
            if self.trace.is_some() {
                let note = match hop {
                    NextHop::Port { port, mac } => {
                        format!("{dst}: out {} to {mac}", snap.ports[usize::from(port)].name)
                    }
                    NextHop::Remote { remote } => {
                        format!("{dst}: vxlan to {}", snap.remotes[usize::from(remote)].name)
                    }
                };
                self.trace(i, "ip4-forward", || note);
            }
        }
    }

    /// Drops packet `i` for `reason` and, unless the switch generated it,
    /// asks icmp-error to answer it with ICMP `ty`/`code`.
    pub(super) fn refuse(&mut self, i: usize, reason: DropReason, ty: u8, code: u8, mtu: u16) {
        if self.meta[i].originated {
            self.drop_packet(i, reason);
        } else {
            self.meta[i].drop = reason;
            self.meta[i].icmp = IcmpReply { ty, code, mtu };
            self.set_next(i, Next::IcmpError);
        }
    }
}
