//! rules: the user's flow rules (`xvsctl add-flow`), consulted before the
//! default pipeline.
//!
//! A packet arrives here from ethernet-input when the snapshot has rules:
//! either with its rule already known (a flow-cache hit), or to be
//! classified ([`crate::classifier`]). No matching rule, or a rule that
//! says `normal`, sends it back to ethernet-input for the default pipeline.
//! Otherwise the rule's actions run in order: modifications change the
//! frame in place (a pushed VLAN tag takes 4 bytes of headroom, a popped
//! one gives them back); the first sending action decides where the packet
//! goes; every `output:` after it sends a copy. Output takes the frame as
//! it is: a rule that sends a packet bypasses routing (no TTL decrement,
//! no MTU check), as an OpenFlow `output` does. `vxlan:` takes untagged
//! IPv4 only: it hands the packet to vxlan-encap as the route to a remote
//! node would.
//!
//! A rule decision is cached under the packet's flow key unless it examined
//! the Ethernet source (see [`crate::flow_cache`]); a `normal` is cached by
//! ip4-forward together with the route it reaches, unless the rule changed
//! the packet before saying `normal`.

use smoltcp::wire::{EthernetAddress, EthernetFrame, Ipv4Packet};

use super::{Next, State, NO_KEY};
use crate::classifier::{CompiledAction, CompiledRule, Fields, RuleCaching};
use crate::drop::DropReason;
use crate::flow_cache::{self, CachedAction, UNCACHEABLE_FIELDS};
use crate::packet::{frame_u16, FramePool, Packet, FRAME_SIZE};
use crate::port::Batch;
use crate::snapshot::Snapshot;
use crate::wire::vlan::{self, Tag};
use crate::wire::{ETHERNET_HEADER_LEN, ETHERTYPE_VLAN};
use xvs_control::flowrule::ETHERTYPE_IPV4;
use xvs_flowtable::FlowState;

/// Bytes of the two MAC addresses, which a tag goes after.
const MACS_LEN: usize = 12;

impl State {
    pub(super) fn rules<P: FramePool>(&mut self, snap: &Snapshot, pool: &mut P, batch: &mut Batch) {
        for i in 0..batch.len() {
            if self.meta[i].next != Next::Rules {
                continue;
            }
            let cached = self.meta[i].rule != super::NO_RULE;
            let index = if cached {
                usize::from(self.meta[i].rule)
            } else {
                let Some(fields) = Fields::parse(self.in_port.id, batch[i].data(pool)) else {
                    self.drop_packet(i, DropReason::TruncatedEthernet);
                    continue;
                };
                let lookup = snap.rules.lookup(&fields);
                if lookup.examined.intersects(UNCACHEABLE_FIELDS) {
                    self.meta[i].key = NO_KEY;
                }
                match lookup.rule {
                    Some(index) => index,
                    None => {
                        self.normal(i);
                        self.trace(i, "rules", || "no rule matches: normal".into());
                        continue;
                    }
                }
            };
            let Some(rule) = snap.rules.rules().get(index) else {
                self.drop_packet(i, DropReason::Internal);
                continue;
            };
            // Fits: the snapshot holds at most MAX_RULES rules.
            self.meta[i].rule = u16::try_from(index).unwrap_or(super::NO_RULE);
            let mut pkt = batch[i];
            // Counted as received, before the actions change the frame.
            let bytes = if self.meta[i].key == NO_KEY {
                0
            } else {
                flow_cache::counted_bytes(pkt.data(pool), usize::from(self.meta[i].l3))
            };
            self.run_actions(snap, pool, i, &mut pkt, rule);
            batch[i] = pkt;
            self.trace(i, "rules", || {
                let from = if cached { " (cached)" } else { "" };
                format!("{}{from}", rule.source)
            });
            if rule.caching != RuleCaching::Actions {
                continue;
            }
            let k = self.meta[i].key;
            if k != NO_KEY {
                self.meta[i].key = NO_KEY;
                let action = CachedAction::Rule {
                    rule: self.meta[i].rule,
                };
                self.add_flow(usize::from(k), flow_cache::value(action, snap), bytes);
            }
        }
    }

    /// Hands packet `i` to the default pipeline.
    fn normal(&mut self, i: usize) {
        self.meta[i].rules_done = true;
        self.set_next(i, Next::EthernetInput);
    }

    /// Adds the flow of key `k` with `value` to the cache, counting the
    /// packet that made it.
    pub(super) fn add_flow(&mut self, k: usize, value: xvs_flowtable::FlowValue, bytes: u64) {
        let Some(flows) = &self.flows else { return };
        let key = &self.keys[k];
        if flows
            .insert(key, value, FlowState::Embryonic, self.now_ns)
            .is_some()
        {
            self.counters.flows_added += 1;
            if let Some(hit) = flows.lookup(key) {
                flows.credit(&hit, 1, bytes, self.now_ns);
            }
        }
    }

    fn run_actions<P: FramePool>(
        &mut self,
        snap: &Snapshot,
        pool: &mut P,
        i: usize,
        pkt: &mut Packet,
        rule: &CompiledRule,
    ) {
        let mut sent = false;
        for action in &rule.actions {
            let result = match *action {
                CompiledAction::Drop => Err(DropReason::RuleDrop),
                CompiledAction::SetDstMac(mac) => {
                    EthernetFrame::new_unchecked(pkt.data_mut(pool))
                        .set_dst_addr(EthernetAddress(mac.0));
                    Ok(())
                }
                CompiledAction::SetVlan(vid) => match outer_tag(pkt, pool) {
                    Some(_) => {
                        let data = pkt.data_mut(pool);
                        Tag::new_unchecked(&mut data[ETHERNET_HEADER_LEN..]).set_vid(vid);
                        Ok(())
                    }
                    None => push_tag(pool, pkt, 0, vid),
                },
                CompiledAction::PushVlan => {
                    let (pcp, vid) = outer_tag(pkt, pool).unwrap_or((0, 0));
                    push_tag(pool, pkt, pcp, vid)
                }
                CompiledAction::PopVlan => {
                    pop_tag(pool, pkt);
                    Ok(())
                }
                CompiledAction::Output(port) if sent => {
                    match pool.alloc() {
                        Some(frame) => {
                            let copy = pool.copy_packet(pkt, frame);
                            self.enqueue(pool, port, copy);
                        }
                        None => self.counters.count_drop(DropReason::PoolExhausted),
                    }
                    Ok(())
                }
                // The parser allows nothing but copies after the first send.
                _ if sent => Ok(()),
                CompiledAction::Output(port) => {
                    sent = true;
                    self.output_to(i, port);
                    Ok(())
                }
                CompiledAction::Encap { remote } => {
                    sent = true;
                    self.rule_encap(snap, pool, i, pkt, remote)
                }
                CompiledAction::Normal => {
                    sent = true;
                    if rule.caching == RuleCaching::Nothing {
                        self.meta[i].key = NO_KEY;
                    }
                    self.normal(i);
                    Ok(())
                }
            };
            if let Err(reason) = result {
                self.drop_packet(i, reason);
                return;
            }
        }
        if !sent {
            // Unreachable for a parsed rule (it always sends or drops).
            self.drop_packet(i, DropReason::RuleDrop);
        }
    }

    /// Sends packet `i` into the overlay toward `remote`, as a route would.
    fn rule_encap<P: FramePool>(
        &mut self,
        snap: &Snapshot,
        pool: &P,
        i: usize,
        pkt: &Packet,
        remote: u16,
    ) -> Result<(), DropReason> {
        if snap.overlay.is_none() || usize::from(remote) >= snap.remotes.len() {
            return Err(DropReason::NoOverlay);
        }
        if ethertype(pkt, pool) != Some(ETHERTYPE_IPV4) {
            return Err(DropReason::RuleEncapNotIpv4);
        }
        // The packet skipped ip4-input: vxlan-encap reads its header, so it
        // must hold together here.
        let whole = pkt
            .data(pool)
            .get(ETHERNET_HEADER_LEN..)
            .and_then(|l3| Ipv4Packet::new_checked(l3).ok())
            .is_some_and(|ip| ip.version() == 4);
        if !whole {
            return Err(DropReason::MalformedIpv4);
        }
        self.meta[i].l3 = frame_u16(ETHERNET_HEADER_LEN);
        self.meta[i].remote = remote;
        self.set_next(i, Next::VxlanEncap);
        Ok(())
    }
}

/// The ethertype right after the MACs.
fn ethertype<P: FramePool>(pkt: &Packet, pool: &P) -> Option<u16> {
    let data = pkt.data(pool);
    Some(u16::from_be_bytes([
        *data.get(MACS_LEN)?,
        *data.get(MACS_LEN + 1)?,
    ]))
}

/// PCP and VID of the frame's outer 802.1Q tag, if it has one.
fn outer_tag<P: FramePool>(pkt: &Packet, pool: &P) -> Option<(u8, u16)> {
    if ethertype(pkt, pool)? != ETHERTYPE_VLAN {
        return None;
    }
    let tag = Tag::new_checked(pkt.data(pool).get(ETHERNET_HEADER_LEN..)?).ok()?;
    Some((tag.pcp(), tag.vid()))
}

/// Inserts an 802.1Q tag after the MACs, moving them 4 bytes into the
/// headroom.
fn push_tag<P: FramePool>(
    pool: &mut P,
    pkt: &mut Packet,
    pcp: u8,
    vid: u16,
) -> Result<(), DropReason> {
    let head = usize::from(pkt.head);
    let len = usize::from(pkt.len);
    if head < vlan::TAG_LEN || len < MACS_LEN || head + len > FRAME_SIZE {
        return Err(DropReason::RuleVlanNoRoom);
    }
    let new_head = head - vlan::TAG_LEN;
    let frame = pool.frame_mut(pkt.frame);
    frame.copy_within(head..head + MACS_LEN, new_head);
    let tag_at = new_head + MACS_LEN;
    frame[tag_at..tag_at + 2].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
    frame[tag_at + 2..tag_at + vlan::TAG_LEN].fill(0);
    let mut tag = Tag::new_unchecked(&mut frame[tag_at + 2..tag_at + vlan::TAG_LEN]);
    tag.set_pcp(pcp);
    tag.set_vid(vid);
    pkt.head = frame_u16(new_head);
    pkt.len = frame_u16(len + vlan::TAG_LEN);
    Ok(())
}

/// Removes the outer 802.1Q tag, if any, moving the MACs over it.
fn pop_tag<P: FramePool>(pool: &mut P, pkt: &mut Packet) {
    if outer_tag(pkt, pool).is_none() {
        return;
    }
    let head = usize::from(pkt.head);
    let frame = pool.frame_mut(pkt.frame);
    frame.copy_within(head..head + MACS_LEN, head + vlan::TAG_LEN);
    pkt.head = frame_u16(head + vlan::TAG_LEN);
    pkt.len -= frame_u16(vlan::TAG_LEN);
}
