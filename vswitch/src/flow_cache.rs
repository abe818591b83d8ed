//! The flow cache: what the pipeline decided for a flow, so that the next
//! packet of the flow skips the decision.
//!
//! The cache is `flowtable`'s lock-free [`FlowTable`], one per datapath,
//! shared by every worker (a flow's packets may arrive on several queues)
//! and read by the control plane for `dump-flows`. This module is the
//! switch's side of it: which packets may be cached, under what key, what a
//! cached value means, and how cached flows follow a new snapshot.
//!
//! **What is cached.** An untagged IPv4 frame, not a fragment, addressed to
//! the switch's MAC on a routed port (pod or uplink), whose TCP or UDP
//! header (if any) is whole. Its key is the in-port (as the key's zone),
//! protocol, addresses and ports; ICMP and other protocols have ports 0.
//! Those conditions fix every other field a decision can read (`dl_dst` is
//! the port's MAC, no VLAN, ethertype IPv4), except the Ethernet source:
//! a rule decision that examined `dl_src` is never cached. Bridged ports
//! are not cached (the learning bridge decides on MACs), nor are packets
//! the switch answers itself, decapsulated ones, ICMP errors, or anything
//! the default pipeline drops (a rule's `drop` is cached like its other
//! actions).
//!
//! **What a value means** ([`CachedAction`]): either "run rule R's
//! actions", or "route to next hop H" (an index into the snapshot's
//! [`Snapshot::hops`]), with the rule whose `normal` led there, if any, so
//! that `dump-flows` can point back at it. On a route hit the per-packet
//! checks that depend on more than the key still run: the IPv4 header
//! checks, the anti-spoofing check, TTL and MTU (a rule hit runs the rule's
//! actions, which check nothing, as on a miss). The value carries the generation of
//! the snapshot it was computed under, and a worker treats a value of any
//! other generation as a miss: a cached flow is never used under a snapshot
//! that did not produce it.
//!
//! **Revalidation** ([`revalidate`]). After a new snapshot is published, the
//! control thread recomputes every flow's decision from its key under the
//! new snapshot, as OVS's revalidators do: a flow whose behaviour is the
//! same (same rule text, same next hop by port name and MAC or by remote
//! node name) is re-tagged with the new generation and keeps its counters;
//! any other flow is removed. So adding or removing a rule removes exactly
//! the flows whose decision it changes. Until the sweep reaches a flow,
//! its packets take the slow path, which re-inserts it. (A flow the ager
//! or an eviction removes between the sweep's check and its re-tagging is
//! inserted again; it ages out on the next sweep.)

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use smoltcp::wire::{Ipv4Packet, TcpPacket, UdpPacket};
use xvs_control::flowrule::{
    FlowMatch, FlowRule, RuleAction, ETHERTYPE_IPV4, IP_PROTO_TCP, IP_PROTO_UDP,
};
use xvs_control::state::MacAddr;
use xvs_flowtable::{FlowKey, FlowTable, FlowValue, FlowView};

use crate::classifier::{FieldSet, Fields, RuleCaching};
use crate::port::PortId;
use crate::snapshot::{NextHop, PortRole, Route, Snapshot};
use crate::wire::UDP_HEADER_LEN;

/// What a cached flow does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachedAction {
    /// The actions of rule `rule` (an index into the snapshot's rule table),
    /// a rule that does not end in `normal`.
    Rule { rule: u16 },
    /// The default pipeline's route to `hop` (an index into
    /// [`Snapshot::hops`]), reached through rule `rule`'s `normal` if a
    /// rule matched.
    Forward { hop: u16, rule: Option<u16> },
}

/// The rule field's value for "no rule" (15 bits).
const NO_RULE: u32 = 0x7fff;
const RULE_BIT: u32 = 1 << 31;

impl CachedAction {
    /// Packs the action into a flow value's 32-bit action word:
    /// bit 31 rule/forward, bits 16..31 the rule, bits 0..16 the hop.
    pub fn encode(self) -> u32 {
        match self {
            CachedAction::Rule { rule } => RULE_BIT | u32::from(rule) << 16,
            CachedAction::Forward { hop, rule } => {
                rule.map_or(NO_RULE, u32::from) << 16 | u32::from(hop)
            }
        }
    }

    #[allow(clippy::cast_possible_truncation)] // masked fields
    pub fn decode(word: u32) -> CachedAction {
        let rule = (word >> 16 & NO_RULE) as u16;
        if word & RULE_BIT != 0 {
            CachedAction::Rule { rule }
        } else {
            CachedAction::Forward {
                hop: word as u16,
                rule: (u32::from(rule) != NO_RULE).then_some(rule),
            }
        }
    }

    /// The rule that made the flow, if any.
    pub fn rule(self) -> Option<u16> {
        match self {
            CachedAction::Rule { rule } => Some(rule),
            CachedAction::Forward { rule, .. } => rule,
        }
    }
}

/// A snapshot generation as flow values store it (the low 32 bits: two
/// generations 2^32 apart never coexist).
#[allow(clippy::cast_possible_truncation)]
pub const fn generation_tag(generation: u64) -> u32 {
    generation as u32
}

/// The cache value of `action` under `snap`.
pub fn value(action: CachedAction, snap: &Snapshot) -> FlowValue {
    FlowValue::new(action.encode(), generation_tag(snap.flow_generation))
}

/// The cache key of an untagged IPv4 frame received on `in_port`, whose
/// IPv4 header starts at `l3`. `None` when the packet cannot be cached: a
/// header that does not hold together, a fragment, or TCP/UDP without the
/// header [`Fields::parse`] takes the ports from (the two must agree; a
/// property test checks it).
pub fn flow_key(in_port: PortId, frame: &[u8], l3: usize) -> Option<FlowKey> {
    let ip = Ipv4Packet::new_checked(frame.get(l3..)?).ok()?;
    if ip.version() != 4 || ip.more_frags() || ip.frag_offset() != 0 {
        return None;
    }
    let proto = u8::from(ip.next_header());
    let (src_port, dst_port) = match proto {
        IP_PROTO_TCP => {
            let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
            (tcp.src_port(), tcp.dst_port())
        }
        IP_PROTO_UDP => {
            let header = ip.payload().get(..UDP_HEADER_LEN)?;
            let udp = UdpPacket::new_unchecked(header);
            (udp.src_port(), udp.dst_port())
        }
        _ => (0, 0),
    };
    Some(FlowKey::v4(
        in_port,
        proto,
        ip.src_addr(),
        src_port,
        ip.dst_addr(),
        dst_port,
    ))
}

/// The bytes a cached flow counts for one packet: its frame as received,
/// up to the end of the IPv4 datagram whose header starts at `l3`
/// (Ethernet padding, which ip4-input trims, left out). The same measure
/// on a hit (ethernet-input), on a miss that routes (ip4-forward, after the
/// trim) and on a miss that runs a rule (before the actions change the
/// frame), so a packet counts the same whichever way it went.
pub fn counted_bytes(frame: &[u8], l3: usize) -> u64 {
    let end = frame.get(l3 + 2..l3 + 4).map_or(frame.len(), |b| {
        l3 + usize::from(u16::from_be_bytes([b[0], b[1]]))
    });
    u64::try_from(end.min(frame.len())).unwrap_or(u64::MAX)
}

/// The IPv4 addresses of a key the pipeline made.
fn v4_addrs(key: &FlowKey) -> Option<(PortId, u8, Ipv4Addr, Ipv4Addr, u16, u16)> {
    let t = key.tuple();
    match (t.src, t.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            Some((t.zone, t.proto, src, dst, t.src_port, t.dst_port))
        }
        _ => None,
    }
}

/// The rule fields of every packet with `key`, the Ethernet source aside
/// (left zero: a decision that examines it is not cached). `port_mac` is
/// the switch's MAC on the in-port, which such packets are addressed to.
pub fn fields_of_key(key: &FlowKey, port_mac: MacAddr) -> Option<Fields> {
    let (in_port, proto, src, dst, src_port, dst_port) = v4_addrs(key)?;
    let ports = matches!(proto, IP_PROTO_TCP | IP_PROTO_UDP);
    Some(Fields {
        in_port,
        dl_src: MacAddr::default(),
        dl_dst: port_mac,
        vlan: None,
        dl_type: ETHERTYPE_IPV4,
        nw_src: Some(src.into()),
        nw_dst: Some(dst.into()),
        nw_proto: Some(proto),
        tp_src: ports.then_some(src_port),
        tp_dst: ports.then_some(dst_port),
    })
}

/// Fields a cached rule decision may not depend on.
pub const UNCACHEABLE_FIELDS: FieldSet = FieldSet::DL_SRC;

/// What `snap` decides for packets with `key`, recomputed from the key
/// alone, or `None` if that decision is not one the cache holds (a drop,
/// local delivery, an L2-dependent rule, no route).
pub fn decide(snap: &Snapshot, key: &FlowKey) -> Option<CachedAction> {
    let (in_port, _, _, dst, _, _) = v4_addrs(key)?;
    let port = snap.ports.get(usize::from(in_port))?;
    if matches!(port.role, PortRole::Bridged { .. }) {
        return None;
    }
    let mut via_rule = None;
    if !snap.rules.is_empty() {
        let lookup = snap.rules.lookup(&fields_of_key(key, port.mac)?);
        if lookup.examined.intersects(UNCACHEABLE_FIELDS) {
            return None;
        }
        if let Some(r) = lookup.rule {
            let rule = &snap.rules.rules()[r];
            let r = u16::try_from(r).ok()?;
            match rule.caching {
                RuleCaching::Actions => return Some(CachedAction::Rule { rule: r }),
                RuleCaching::Nothing => return None,
                RuleCaching::Normal => via_rule = Some(r),
            }
        }
    }
    if snap.is_local(dst) {
        return None;
    }
    match snap.routes.lookup(u32::from(dst)) {
        Some(&Route::Via(hop)) => Some(CachedAction::Forward {
            hop: snap.hop_id(hop)?,
            rule: via_rule,
        }),
        _ => None,
    }
}

/// Whether `a` under `old` and `b` under `new` do the same thing to a
/// packet: the same rule text, and the same next hop named by port name and
/// MAC or by remote node name. (Everything else a hop needs — port MACs,
/// MTUs, the remote's VTEP — the pipeline reads from the current snapshot
/// on every packet.)
fn same_behaviour(old: &Snapshot, a: CachedAction, new: &Snapshot, b: CachedAction) -> bool {
    let same_rule = rule_source(old, a.rule()) == rule_source(new, b.rule());
    match (a, b) {
        (CachedAction::Rule { .. }, CachedAction::Rule { .. }) => same_rule,
        (CachedAction::Forward { hop: h1, .. }, CachedAction::Forward { hop: h2, .. }) => {
            let before = hop_by_name(old, h1);
            same_rule && before.is_some() && before == hop_by_name(new, h2)
        }
        _ => false,
    }
}

fn rule_source(snap: &Snapshot, rule: Option<u16>) -> Option<&FlowRule> {
    let rule = snap.rules.rules().get(usize::from(rule?))?;
    Some(&rule.source)
}

/// A next hop by names: (port name, next-hop MAC) or (remote node name, 0).
fn hop_by_name(snap: &Snapshot, hop: u16) -> Option<(&str, MacAddr)> {
    match snap.hops.get(usize::from(hop))? {
        NextHop::Port { port, mac } => {
            Some((snap.ports.get(usize::from(*port))?.name.as_str(), *mac))
        }
        NextHop::Remote { remote } => Some((
            snap.remotes.get(usize::from(*remote))?.name.as_str(),
            MacAddr::default(),
        )),
    }
}

/// What a revalidation sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Revalidated {
    /// Flows whose behaviour is unchanged, now tagged with the new
    /// generation.
    pub kept: usize,
    /// Flows removed: their decision changed, or cannot be cached any more.
    pub removed: usize,
}

/// Moves every flow cached under `old` to `new` (see the module
/// documentation). Flows of any other generation than `old` and `new` are
/// removed: they were made under a snapshot older than `old`.
pub fn revalidate(table: &FlowTable, old: &Snapshot, new: &Snapshot) -> Revalidated {
    let (old_tag, new_tag) = (
        generation_tag(old.flow_generation),
        generation_tag(new.flow_generation),
    );
    let same_port = |zone: PortId| {
        let (Some(a), Some(b)) = (
            old.ports.get(usize::from(zone)),
            new.ports.get(usize::from(zone)),
        ) else {
            return false;
        };
        a.name == b.name && a.role == b.role && a.mac == b.mac
    };
    let mut kept: Vec<(FlowView, CachedAction)> = Vec::new();
    let removed = table.retain(|flow| {
        let tag = flow.value.generation();
        if tag == new_tag {
            return true;
        }
        if tag != old_tag || !same_port(flow.key.tuple().zone) {
            return false;
        }
        let before = CachedAction::decode(flow.value.action());
        match decide(new, &flow.key) {
            Some(after) if same_behaviour(old, before, new, after) => {
                kept.push((*flow, after));
                true
            }
            _ => false,
        }
    });
    for (flow, action) in &kept {
        // Replaces the value, keeping counters; the flow's last-seen time is
        // passed through so revalidation does not keep idle flows alive.
        table.insert(&flow.key, value(*action, new), flow.state, flow.last_seen);
    }
    Revalidated {
        kept: kept.len(),
        removed,
    }
}

/// A cached flow as `dump-flows` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FlowDescription {
    /// The key in rule-match syntax (paste it into `add-flow`).
    #[serde(rename = "match")]
    pub matches: String,
    pub in_port: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// What the datapath does to the flow's packets, in action syntax.
    pub actions: String,
    /// The rule that made the flow, as written; `None` for the default
    /// pipeline alone.
    pub rule: Option<String>,
    pub packets: u64,
    pub bytes: u64,
    /// Nanoseconds since the flow was cached, and since its last packet
    /// (on the datapath's clock).
    pub age_ns: u64,
    pub idle_ns: u64,
    /// False when the flow was cached under an older snapshot and waits for
    /// revalidation (its packets take the slow path meanwhile).
    pub current: bool,
}

/// Describes `flow` for a person, with names from `snap`; `now` is the
/// datapath clock's current reading.
pub fn describe(flow: &FlowView, snap: &Snapshot, now: u64) -> Option<FlowDescription> {
    let (in_port, proto, src, dst, src_port, dst_port) = v4_addrs(&flow.key)?;
    let in_port = snap.ports.get(usize::from(in_port))?.name.clone();
    let ports = matches!(proto, IP_PROTO_TCP | IP_PROTO_UDP);
    let matches = FlowMatch {
        in_port: Some(in_port.clone()),
        dl_type: Some(ETHERTYPE_IPV4),
        nw_proto: Some(proto),
        nw_src: Some(IpNet::V4(Ipv4Net::from(src))),
        nw_dst: Some(IpNet::V4(Ipv4Net::from(dst))),
        tp_src: ports.then_some(src_port),
        tp_dst: ports.then_some(dst_port),
        ..FlowMatch::default()
    };
    let current = flow.value.generation() == generation_tag(snap.flow_generation);
    let action = CachedAction::decode(flow.value.action());
    let rule = action
        .rule()
        .filter(|_| current)
        .and_then(|r| snap.rules.rules().get(usize::from(r)))
        .map(|r| r.source.to_string());
    let actions = if !current {
        format!("(cached under generation {})", flow.value.generation())
    } else {
        match action {
            CachedAction::Rule { rule } => snap
                .rules
                .rules()
                .get(usize::from(rule))
                .map(|r| actions_text(&r.source.actions))
                .unwrap_or_default(),
            CachedAction::Forward { hop, .. } => match snap.hops.get(usize::from(hop)) {
                Some(NextHop::Port { port, mac }) => {
                    let out = &snap.ports[usize::from(*port)];
                    format!(
                        "dec_ttl,mod_dl_src:{},mod_dl_dst:{mac},output:{}",
                        out.mac, out.name
                    )
                }
                Some(NextHop::Remote { remote }) => {
                    format!("dec_ttl,vxlan:{}", snap.remotes[usize::from(*remote)].name)
                }
                None => String::new(),
            },
        }
    };
    Some(FlowDescription {
        matches: matches.to_string(),
        in_port,
        src: src.into(),
        dst: dst.into(),
        actions,
        rule,
        packets: flow.packets,
        bytes: flow.bytes,
        age_ns: now.saturating_sub(flow.created),
        idle_ns: now.saturating_sub(flow.last_seen),
        current,
    })
}

fn actions_text(actions: &[RuleAction]) -> String {
    actions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::MAX_RULES;

    #[test]
    fn cached_action_round_trips() {
        let last_rule = u16::try_from(MAX_RULES - 1).unwrap();
        assert!(u32::from(last_rule) < NO_RULE, "every rule index fits");
        for action in [
            CachedAction::Rule { rule: 0 },
            CachedAction::Rule { rule: last_rule },
            CachedAction::Forward { hop: 0, rule: None },
            CachedAction::Forward {
                hop: u16::MAX,
                rule: Some(0),
            },
            CachedAction::Forward {
                hop: 7,
                rule: Some(last_rule),
            },
        ] {
            assert_eq!(CachedAction::decode(action.encode()), action);
        }
    }

    #[test]
    fn counted_bytes_stop_at_the_end_of_the_datagram() {
        // 60 bytes: a 40-byte datagram after 14 bytes of Ethernet, padded.
        let mut frame = [0u8; 60];
        frame[16..18].copy_from_slice(&40u16.to_be_bytes());
        assert_eq!(counted_bytes(&frame, 14), 54);
        // A length past the frame, or no header at all: the frame.
        frame[16..18].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(counted_bytes(&frame, 14), 60);
        assert_eq!(counted_bytes(&frame[..15], 14), 15);
    }
}
