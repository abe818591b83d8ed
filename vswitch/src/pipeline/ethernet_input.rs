//! ethernet-input: parse the L2 header and pick the pipeline a frame enters.
//!
//! Bridged ports hand every frame to the learning bridge (tags and all),
//! except link-local IEEE 802.1D reserved groups, which a bridge must not
//! forward. Routed ports (pods, uplink) take untagged frames addressed to
//! the switch's MAC on that port, plus broadcast ARP; everything else is a
//! counted drop.
//!
//! With flow rules configured, every frame that passes the first L2 checks
//! (length, source MAC) goes to the rules stage, before the checks of the
//! default pipeline (802.1D reserved groups, VLAN on a routed port, not our
//! MAC): a rule may forward what the default pipeline would drop, as an
//! OpenFlow rule may. It comes back here if a rule says `normal`.
//!
//! Frames the flow cache may hold (see [`crate::flow_cache`]) are looked up
//! here, the whole batch at once after the per-frame loop, so that the
//! table's cache misses overlap.

use smoltcp::wire::{EthernetFrame, EthernetProtocol};
use xvs_control::state::MacAddr;

use super::{Next, State, NO_KEY, NO_RULE};
use crate::drop::DropReason;
use crate::flow_cache::{self, generation_tag, CachedAction};
use crate::packet::{frame_u16, FramePool};
use crate::port::Batch;
use crate::snapshot::{PortRole, Snapshot};
use crate::wire::vlan::{self, Tag};
use crate::wire::{ETHERNET_HEADER_LEN, ETHERTYPE_VLAN};

impl State {
    pub(super) fn ethernet_input<P: FramePool>(
        &mut self,
        snap: &Snapshot,
        pool: &mut P,
        batch: &mut Batch,
    ) {
        let (role, port_mac) = (self.in_port.role, self.in_port.mac);
        let has_rules = !snap.rules.is_empty();
        let caching = self.flows.is_some() && !matches!(role, PortRole::Bridged { .. });
        let mut keys = 0;
        for (i, pkt) in batch.iter().enumerate() {
            if self.meta[i].next != Next::EthernetInput {
                continue;
            }
            let data = pkt.data(pool);
            let Ok(eth) = EthernetFrame::new_checked(data) else {
                self.drop_packet(i, DropReason::TruncatedEthernet);
                continue;
            };
            let src = MacAddr(eth.src_addr().0);
            let dst = MacAddr(eth.dst_addr().0);
            if src.is_multicast() || src == MacAddr::default() {
                self.drop_packet(i, DropReason::BadSourceMac);
                continue;
            }
            let (ethertype, vid, l3) = if u16::from(eth.ethertype()) == ETHERTYPE_VLAN {
                let Ok(tag) = Tag::new_checked(eth.payload()) else {
                    self.drop_packet(i, DropReason::TruncatedVlan);
                    continue;
                };
                (
                    tag.ethertype(),
                    Some(tag.vid()),
                    ETHERNET_HEADER_LEN + vlan::TAG_LEN,
                )
            } else {
                (eth.ethertype(), None, ETHERNET_HEADER_LEN)
            };
            self.meta[i].l3 = frame_u16(l3);
            self.meta[i].vid = vid.unwrap_or(0);

            let rules_done = self.meta[i].rules_done;
            let cacheable = caching
                && !rules_done
                && vid.is_none()
                && dst == port_mac
                && ethertype == EthernetProtocol::Ipv4;
            if let Some(key) = cacheable
                .then(|| flow_cache::flow_key(self.in_port.id, data, l3))
                .flatten()
            {
                self.keys[keys] = key;
                self.meta[i].key = key_index(keys);
                keys += 1;
            }
            let next = match role {
                _ if has_rules && !rules_done => Ok(Next::Rules),
                PortRole::Bridged { .. } if is_8021d_reserved(dst) => Err(DropReason::L2Reserved),
                PortRole::Bridged { .. } => Ok(Next::L2Bridge),
                PortRole::Pod { .. } | PortRole::Uplink => {
                    if vid.is_some() {
                        Err(DropReason::VlanOnRoutedPort)
                    } else if dst == port_mac {
                        match ethertype {
                            EthernetProtocol::Ipv4 => Ok(Next::Ip4Input),
                            EthernetProtocol::Arp => Ok(Next::Arp),
                            _ => Err(DropReason::UnsupportedEthertype),
                        }
                    } else if dst == MacAddr::BROADCAST && ethertype == EthernetProtocol::Arp {
                        Ok(Next::Arp)
                    } else {
                        Err(DropReason::NotOurMac)
                    }
                }
            };
            match next {
                Ok(next) => self.set_next(i, next),
                Err(reason) => self.drop_packet(i, reason),
            }
            self.trace(i, "ethernet-input", || {
                let tag = vid.map(|v| format!(" vlan {v}")).unwrap_or_default();
                format!("{src} > {dst}{tag} {ethertype} {}", super::decision(next))
            });
        }
        if keys > 0 {
            self.lookup_flows(snap, pool, batch, keys);
        }
    }

    /// Looks up the first `n` keys of the batch in the flow cache and sends
    /// each packet that hits to where its cached action says.
    fn lookup_flows<P: FramePool>(&mut self, snap: &Snapshot, pool: &P, batch: &Batch, n: usize) {
        // Taken out for the loop (a move, not a reference-count change).
        let Some(flows) = self.flows.take() else {
            return;
        };
        flows.lookup_batch(&self.keys[..n], &mut self.hits[..n]);
        let tag = generation_tag(snap.flow_generation);
        for (i, pkt) in batch.iter().enumerate() {
            let k = self.meta[i].key;
            if k == NO_KEY {
                continue;
            }
            let hit = match self.hits[usize::from(k)] {
                Some(hit) if hit.value.generation() == tag => hit,
                _ => {
                    self.counters.flow_misses += 1;
                    continue;
                }
            };
            self.counters.flow_hits += 1;
            let bytes = flow_cache::counted_bytes(pkt.data(pool), usize::from(self.meta[i].l3));
            flows.credit(&hit, 1, bytes, self.now_ns);
            let m = &mut self.meta[i];
            m.key = NO_KEY;
            m.hit_key = k;
            let action = CachedAction::decode(hit.value.action());
            match action {
                CachedAction::Rule { rule } => {
                    m.rule = rule;
                    self.set_next(i, Next::Rules);
                }
                CachedAction::Forward { hop, rule } => {
                    m.hop = hop;
                    m.rule = rule.unwrap_or(NO_RULE);
                    m.rules_done = true;
                    self.set_next(i, Next::Ip4Input);
                }
            }
            self.trace(i, "flow-cache", || format!("hit: {action:?}"));
        }
        self.flows = Some(flows);
    }
}

/// A batch index as `Meta::key` stores it.
#[allow(clippy::cast_possible_truncation)] // below BATCH_SIZE (64)
const fn key_index(i: usize) -> u8 {
    i as u8
}

/// 01:80:c2:00:00:00 through 01:80:c2:00:00:0f (IEEE 802.1D table 7-10).
fn is_8021d_reserved(mac: MacAddr) -> bool {
    matches!(mac.0, [0x01, 0x80, 0xc2, 0x00, 0x00, last] if last <= 0x0f)
}
