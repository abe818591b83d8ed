//! The rule classifier: which user flow rule (`xvs_control::flowrule`) a
//! packet hits, and which of its fields that answer depended on.
//!
//! This is slow-path code, run on a flow-cache miss. [`Fields::parse`]
//! extracts what a rule can match from a frame; [`RuleTable::compile`] turns
//! the named rules of the desired state into rules over datapath indices
//! (ports and remote nodes resolved, prefixes as address and mask, so each
//! field is one compare); [`RuleTable::lookup`] finds the winner.
//!
//! Order. Rules are kept sorted by priority, highest first, and the first
//! that matches wins. Among equal priorities the rule listed first in the
//! desired state wins (a stable sort): OVS leaves that case undefined, we
//! define it so a dump and a trace always agree with what the datapath did.
//!
//! Cost. `lookup` is a linear scan, allocation-free, with an early exit on
//! the first differing field of each rule: fine for the tens of rules a
//! service chain has, and it only runs on a cache miss. For thousands of
//! rules the next step is OVS's tuple-space search (one hash table per
//! distinct set of matched fields, probed in order of their best priority;
//! `lib/classifier.c`), which keeps this interface.
//!
//! Un-wildcarding. Besides the winner, `lookup` reports the fields the
//! decision depended on ([`Lookup::examined`]), as OVS's megaflows do: for
//! each rule that lost, the fields compared up to and including the first
//! that differed; for the winner, all of its fields. Any packet that agrees
//! with this one on those fields gets the same answer (a property test
//! checks it), so the caller may cache the decision under a key made of
//! just those fields. Fields are compared in a fixed order that puts L2
//! last (in_port, dl_type, nw_proto, L4 ports, addresses, then VLAN and
//! MACs), so a rule that differs from the packet both in L3 and L2 drags
//! only the L3 field into the set and decisions stay cacheable under keys
//! that lack L2 fields as often as possible.
//!
//! A table is built once per rule set and never mutated: readers need no
//! synchronisation.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use smoltcp::wire::{
    EthernetFrame, Ipv4Packet, Ipv6ExtHeader, Ipv6FragmentHeader, Ipv6Packet, TcpPacket, UdpPacket,
};
use xvs_control::flowrule::{
    FlowRule, RuleAction, VlanMatch, ETHERTYPE_IPV4, ETHERTYPE_IPV6, IP_PROTO_TCP, IP_PROTO_UDP,
};
use xvs_control::state::MacAddr;

use crate::port::PortId;
use crate::wire::vlan::{self, Tag};
use crate::wire::{ETHERTYPE_VLAN, UDP_HEADER_LEN};

/// A set of the fields a rule can match, one bit each.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FieldSet(u16);

impl FieldSet {
    pub const EMPTY: FieldSet = FieldSet(0);
    pub const IN_PORT: FieldSet = FieldSet(1 << 0);
    pub const DL_SRC: FieldSet = FieldSet(1 << 1);
    pub const DL_DST: FieldSet = FieldSet(1 << 2);
    pub const VLAN: FieldSet = FieldSet(1 << 3);
    pub const DL_TYPE: FieldSet = FieldSet(1 << 4);
    pub const NW_SRC: FieldSet = FieldSet(1 << 5);
    pub const NW_DST: FieldSet = FieldSet(1 << 6);
    pub const NW_PROTO: FieldSet = FieldSet(1 << 7);
    pub const TP_SRC: FieldSet = FieldSet(1 << 8);
    pub const TP_DST: FieldSet = FieldSet(1 << 9);
    /// Every field.
    pub const ALL: FieldSet = FieldSet((1 << 10) - 1);
    /// The Ethernet-level fields: a key without them cannot tell MACs or
    /// VLANs apart.
    pub const L2: FieldSet = FieldSet(Self::DL_SRC.0 | Self::DL_DST.0 | Self::VLAN.0);

    /// Each field with its name in the rule syntax, in bit order.
    const NAMES: [(FieldSet, &'static str); 10] = [
        (Self::IN_PORT, "in_port"),
        (Self::DL_SRC, "dl_src"),
        (Self::DL_DST, "dl_dst"),
        (Self::VLAN, "dl_vlan"),
        (Self::DL_TYPE, "dl_type"),
        (Self::NW_SRC, "nw_src"),
        (Self::NW_DST, "nw_dst"),
        (Self::NW_PROTO, "nw_proto"),
        (Self::TP_SRC, "tp_src"),
        (Self::TP_DST, "tp_dst"),
    ];

    #[inline]
    pub const fn union(self, other: FieldSet) -> FieldSet {
        FieldSet(self.0 | other.0)
    }

    /// True when every field of `other` is in `self`.
    #[inline]
    pub const fn contains(self, other: FieldSet) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when `self` and `other` have a field in common.
    #[inline]
    pub const fn intersects(self, other: FieldSet) -> bool {
        self.0 & other.0 != 0
    }

    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for FieldSet {
    type Output = FieldSet;
    #[inline]
    fn bitor(self, other: FieldSet) -> FieldSet {
        self.union(other)
    }
}

impl std::ops::BitOrAssign for FieldSet {
    #[inline]
    fn bitor_assign(&mut self, other: FieldSet) {
        *self = self.union(other);
    }
}

impl fmt::Display for FieldSet {
    /// The field names as the rule syntax spells them, comma-separated
    /// (`in_port,dl_type,tp_dst`); empty for the empty set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (field, name) in Self::NAMES {
            if self.contains(field) {
                if !first {
                    f.write_str(",")?;
                }
                first = false;
                f.write_str(name)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for FieldSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FieldSet({self})")
    }
}

/// What a rule can match, extracted from one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    pub in_port: PortId,
    pub dl_src: MacAddr,
    pub dl_dst: MacAddr,
    /// The VLAN ID of the outer 802.1Q tag; `None` for an untagged frame.
    pub vlan: Option<u16>,
    /// The ethertype after the outer tag (what follows the MACs on an
    /// untagged frame).
    pub dl_type: u16,
    /// Set for a well-formed IPv4 or IPv6 packet.
    pub nw_src: Option<IpAddr>,
    pub nw_dst: Option<IpAddr>,
    /// IPv4's protocol, or the upper-layer header after IPv6's extension
    /// headers.
    pub nw_proto: Option<u8>,
    /// TCP or UDP ports; `None` for other protocols, for fragments other
    /// than the first, and when the L4 header is cut short.
    pub tp_src: Option<u16>,
    pub tp_dst: Option<u16>,
}

/// IPv6 extension headers walked before giving up on finding the upper
/// layer: real packets carry one or two; the bound keeps a crafted chain of
/// empty headers from costing a loop per 8 bytes of a jumbo frame.
const MAX_IPV6_EXTENSION_HEADERS: usize = 8;

/// IPv6 next-header values of the extension headers walked over.
mod ipv6_ext {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const DESTINATION_OPTIONS: u8 = 60;
    /// A fragment header's fixed size.
    pub const FRAGMENT_LEN: usize = 8;
}

impl Fields {
    /// Extracts the fields of `frame`, received on `in_port`.
    ///
    /// `None` when the frame is shorter than its Ethernet header (tag
    /// included, if the ethertype announces one). Anything cut short or
    /// malformed above that leaves the fields it would have given `None`:
    /// an IPv4/IPv6 header that does not hold together (smoltcp's
    /// `check_len`, plus the version nibble) gives no L3 fields, a TCP
    /// header that does not gives no ports. Never panics, whatever the
    /// bytes.
    pub fn parse(in_port: PortId, frame: &[u8]) -> Option<Fields> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        let (vlan, dl_type, l3) = if u16::from(eth.ethertype()) == ETHERTYPE_VLAN {
            let tag = Tag::new_checked(eth.payload()).ok()?;
            (
                Some(tag.vid()),
                u16::from(tag.ethertype()),
                eth.payload().get(vlan::TAG_LEN..)?,
            )
        } else {
            (None, u16::from(eth.ethertype()), eth.payload())
        };
        let mut fields = Fields {
            in_port,
            dl_src: MacAddr(eth.src_addr().0),
            dl_dst: MacAddr(eth.dst_addr().0),
            vlan,
            dl_type,
            nw_src: None,
            nw_dst: None,
            nw_proto: None,
            tp_src: None,
            tp_dst: None,
        };
        match dl_type {
            ETHERTYPE_IPV4 => fields.parse_ipv4(l3),
            ETHERTYPE_IPV6 => fields.parse_ipv6(l3),
            _ => {}
        }
        Some(fields)
    }

    fn parse_ipv4(&mut self, l3: &[u8]) {
        let Ok(ip) = Ipv4Packet::new_checked(l3) else {
            return;
        };
        if ip.version() != 4 {
            return;
        }
        self.nw_src = Some(IpAddr::V4(ip.src_addr()));
        self.nw_dst = Some(IpAddr::V4(ip.dst_addr()));
        let proto = u8::from(ip.next_header());
        self.nw_proto = Some(proto);
        if ip.frag_offset() == 0 {
            self.parse_ports(proto, ip.payload());
        }
    }

    fn parse_ipv6(&mut self, l3: &[u8]) {
        let Ok(ip) = Ipv6Packet::new_checked(l3) else {
            return;
        };
        if ip.version() != 6 {
            return;
        }
        self.nw_src = Some(IpAddr::V6(ip.src_addr()));
        self.nw_dst = Some(IpAddr::V6(ip.dst_addr()));
        let mut next = u8::from(ip.next_header());
        let mut rest = ip.payload();
        for _ in 0..=MAX_IPV6_EXTENSION_HEADERS {
            match next {
                ipv6_ext::HOP_BY_HOP | ipv6_ext::ROUTING | ipv6_ext::DESTINATION_OPTIONS => {
                    let Ok(ext) = Ipv6ExtHeader::new_checked(rest) else {
                        return;
                    };
                    next = u8::from(ext.next_header());
                    // The length counts 8-octet units after the first 8.
                    let len = (usize::from(ext.header_len()) + 1) * 8;
                    let Some(after) = rest.get(len..) else {
                        return;
                    };
                    rest = after;
                }
                ipv6_ext::FRAGMENT => {
                    // Fixed size: its second byte is reserved, not a length.
                    let Some(header) = rest.get(..ipv6_ext::FRAGMENT_LEN) else {
                        return;
                    };
                    let Ok(fragment) = Ipv6FragmentHeader::new_checked(&header[2..]) else {
                        return;
                    };
                    next = header[0];
                    if fragment.frag_offset() != 0 {
                        // A later fragment: the upper layer is known, its
                        // header is in the first fragment.
                        self.nw_proto = Some(next);
                        return;
                    }
                    rest = &rest[ipv6_ext::FRAGMENT_LEN..];
                }
                upper => {
                    self.nw_proto = Some(upper);
                    self.parse_ports(upper, rest);
                    return;
                }
            }
        }
    }

    fn parse_ports(&mut self, proto: u8, l4: &[u8]) {
        match proto {
            IP_PROTO_TCP => {
                if let Ok(tcp) = TcpPacket::new_checked(l4) {
                    self.tp_src = Some(tcp.src_port());
                    self.tp_dst = Some(tcp.dst_port());
                }
            }
            IP_PROTO_UDP => {
                // Not `UdpPacket::new_checked`: it also refuses a datagram
                // whose length field exceeds the bytes present, and a packet
                // that escapes port rules by lying in that field would slip
                // past a `udp,tp_dst=53 actions=drop` into `normal`. Like
                // OVS, the ports count whenever the 8-byte header is there;
                // the view covers exactly those bytes, so no accessor of the
                // two used can read past them.
                if let Some(header) = l4.get(..UDP_HEADER_LEN) {
                    let udp = UdpPacket::new_unchecked(header);
                    self.tp_src = Some(udp.src_port());
                    self.tp_dst = Some(udp.dst_port());
                }
            }
            _ => {}
        }
    }
}

/// An address prefix as one AND and one compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpPrefix {
    V4 { addr: u32, mask: u32 },
    V6 { addr: u128, mask: u128 },
}

impl IpPrefix {
    pub fn new(net: IpNet) -> IpPrefix {
        match net {
            IpNet::V4(net) => {
                let mask = u32::from(net.netmask());
                IpPrefix::V4 {
                    addr: u32::from(net.addr()) & mask,
                    mask,
                }
            }
            IpNet::V6(net) => {
                let mask = u128::from(net.netmask());
                IpPrefix::V6 {
                    addr: u128::from(net.addr()) & mask,
                    mask,
                }
            }
        }
    }

    /// Whether `ip` lies in the prefix; an address of the other family
    /// never does.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (*self, ip) {
            (IpPrefix::V4 { addr, mask }, IpAddr::V4(ip)) => u32::from(ip) & mask == addr,
            (IpPrefix::V6 { addr, mask }, IpAddr::V6(ip)) => u128::from(ip) & mask == addr,
            _ => false,
        }
    }
}

/// A rule's match over datapath indices; `None` is a wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledMatch {
    pub in_port: Option<PortId>,
    pub dl_src: Option<MacAddr>,
    pub dl_dst: Option<MacAddr>,
    pub vlan: Option<VlanMatch>,
    pub dl_type: Option<u16>,
    pub nw_src: Option<IpPrefix>,
    pub nw_dst: Option<IpPrefix>,
    pub nw_proto: Option<u8>,
    pub tp_src: Option<u16>,
    pub tp_dst: Option<u16>,
}

/// One condition of a match: a wildcard passes without being looked at;
/// otherwise the field joins `examined` before it is compared.
#[inline]
fn field_matches<T>(
    wanted: Option<T>,
    field: FieldSet,
    examined: &mut FieldSet,
    is_match: impl FnOnce(T) -> bool,
) -> bool {
    match wanted {
        None => true,
        Some(wanted) => {
            *examined |= field;
            is_match(wanted)
        }
    }
}

impl CompiledMatch {
    /// The fields this match looks at.
    pub fn fields(&self) -> FieldSet {
        let present = [
            (self.in_port.is_some(), FieldSet::IN_PORT),
            (self.dl_src.is_some(), FieldSet::DL_SRC),
            (self.dl_dst.is_some(), FieldSet::DL_DST),
            (self.vlan.is_some(), FieldSet::VLAN),
            (self.dl_type.is_some(), FieldSet::DL_TYPE),
            (self.nw_src.is_some(), FieldSet::NW_SRC),
            (self.nw_dst.is_some(), FieldSet::NW_DST),
            (self.nw_proto.is_some(), FieldSet::NW_PROTO),
            (self.tp_src.is_some(), FieldSet::TP_SRC),
            (self.tp_dst.is_some(), FieldSet::TP_DST),
        ];
        present
            .into_iter()
            .filter(|(is_set, _)| *is_set)
            .fold(FieldSet::EMPTY, |set, (_, field)| set | field)
    }

    /// Whether `f` matches, adding to `examined` each field compared, up to
    /// the first that differs (the order is the module doc's).
    #[inline]
    fn matches(&self, f: &Fields, examined: &mut FieldSet) -> bool {
        field_matches(self.in_port, FieldSet::IN_PORT, examined, |p| {
            f.in_port == p
        }) && field_matches(self.dl_type, FieldSet::DL_TYPE, examined, |t| {
            f.dl_type == t
        }) && field_matches(self.nw_proto, FieldSet::NW_PROTO, examined, |p| {
            f.nw_proto == Some(p)
        }) && field_matches(self.tp_dst, FieldSet::TP_DST, examined, |p| {
            f.tp_dst == Some(p)
        }) && field_matches(self.tp_src, FieldSet::TP_SRC, examined, |p| {
            f.tp_src == Some(p)
        }) && field_matches(self.nw_dst, FieldSet::NW_DST, examined, |p| {
            f.nw_dst.is_some_and(|a| p.contains(a))
        }) && field_matches(self.nw_src, FieldSet::NW_SRC, examined, |p| {
            f.nw_src.is_some_and(|a| p.contains(a))
        }) && field_matches(self.vlan, FieldSet::VLAN, examined, |v| match v {
            VlanMatch::Untagged => f.vlan.is_none(),
            VlanMatch::Vid(vid) => f.vlan == Some(vid),
        }) && field_matches(self.dl_dst, FieldSet::DL_DST, examined, |m| f.dl_dst == m)
            && field_matches(self.dl_src, FieldSet::DL_SRC, examined, |m| f.dl_src == m)
    }
}

/// One action over datapath indices, executed in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompiledAction {
    /// Send a copy out of this port.
    Output(PortId),
    /// Rewrite the Ethernet destination.
    SetDstMac(MacAddr),
    /// Set the VLAN ID of the outer tag, pushing an 802.1Q tag first if the
    /// frame has none (OVS's `mod_vlan_vid`).
    SetVlan(u16),
    /// Push a new outer 802.1Q tag (`push_vlan:0x8100`), its PCP and VID
    /// those of the tag it covers or 0 on an untagged frame (OpenFlow's
    /// push-VLAN). A rule parsed from text always follows it with
    /// `SetVlan`, which then sets the new tag's VID.
    PushVlan,
    /// Remove the outer tag, if any.
    PopVlan,
    /// Encapsulate in VXLAN toward this remote node (an index the caller
    /// assigned through `compile`'s `remote_id`).
    Encap {
        remote: u16,
    },
    /// Continue with the switch's default pipeline.
    Normal,
    Drop,
}

/// A rule ready for lookup, with the rule it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledRule {
    pub priority: u16,
    pub matches: CompiledMatch,
    /// Never empty: a rule without actions compiles to `[Drop]`.
    pub actions: Vec<CompiledAction>,
    /// The rule as written, for `dump-rules` and `trace`.
    pub source: FlowRule,
    /// The rule's position in the list it was compiled from (its order of
    /// addition, which breaks ties between equal priorities).
    pub index: usize,
    /// What the flow cache may keep of a decision by this rule, worked out
    /// once here rather than per packet.
    pub caching: RuleCaching,
}

/// What the flow cache may keep of a rule's decision (see
/// `crate::flow_cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleCaching {
    /// The rule's own actions (it does not say `normal`).
    Actions,
    /// It says only `normal`: the route the default pipeline reaches is
    /// cached, pointing back at the rule.
    Normal,
    /// It changes the packet before `normal`, or copies it besides: the
    /// default pipeline decides on a frame the key does not describe.
    Nothing,
}

impl RuleCaching {
    fn of(actions: &[RuleAction]) -> RuleCaching {
        match actions {
            [RuleAction::Normal] => RuleCaching::Normal,
            a if a.contains(&RuleAction::Normal) => RuleCaching::Nothing,
            _ => RuleCaching::Actions,
        }
    }
}

/// Why a rule list could not be compiled; names the rule at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error(
        "rule {index} `{rule}`: no port named `{port}` (in_port= and output: take the name of \
         one of the switch's ports)"
    )]
    UnknownPort {
        index: usize,
        rule: String,
        port: String,
    },
    #[error(
        "rule {index} `{rule}`: no remote node named `{node}` (vxlan: takes the name of one of \
         the desired state's remote_nodes)"
    )]
    UnknownRemote {
        index: usize,
        rule: String,
        node: String,
    },
}

/// The outcome of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup {
    /// The winning rule, as an index into [`RuleTable::rules`]; `None` when
    /// no rule matches.
    pub rule: Option<usize>,
    /// The fields the outcome depended on (see the module doc).
    pub examined: FieldSet,
}

/// The compiled rules, highest priority first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleTable {
    rules: Vec<CompiledRule>,
}

impl RuleTable {
    /// Compiles `rules`, resolving port names with `port_id` and remote
    /// node names with `remote_id`. Rules are ordered by priority, highest
    /// first; equal priorities keep their order in `rules`.
    pub fn compile(
        rules: &[FlowRule],
        port_id: impl Fn(&str) -> Option<PortId>,
        remote_id: impl Fn(&str) -> Option<u16>,
    ) -> Result<RuleTable, RuleError> {
        let mut compiled = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| compile_rule(index, rule, &port_id, &remote_id))
            .collect::<Result<Vec<_>, _>>()?;
        // Stable: ties keep their order of addition.
        compiled.sort_by_key(|rule| std::cmp::Reverse(rule.priority));
        Ok(RuleTable { rules: compiled })
    }

    /// The highest-priority rule that `fields` matches, and the fields
    /// that decided it. Allocation-free; cost linear in the rules scanned.
    pub fn lookup(&self, fields: &Fields) -> Lookup {
        let mut examined = FieldSet::EMPTY;
        let rule = self
            .rules
            .iter()
            .position(|rule| rule.matches.matches(fields, &mut examined));
        Lookup { rule, examined }
    }

    /// The rules in lookup order (highest priority first); a
    /// [`Lookup::rule`] indexes this slice.
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn compile_rule(
    index: usize,
    rule: &FlowRule,
    port_id: &impl Fn(&str) -> Option<PortId>,
    remote_id: &impl Fn(&str) -> Option<u16>,
) -> Result<CompiledRule, RuleError> {
    let port = |name: &str| {
        port_id(name).ok_or_else(|| RuleError::UnknownPort {
            index,
            rule: rule.to_string(),
            port: name.to_string(),
        })
    };
    let m = &rule.matches;
    let matches = CompiledMatch {
        in_port: m.in_port.as_deref().map(port).transpose()?,
        dl_src: m.dl_src,
        dl_dst: m.dl_dst,
        vlan: m.dl_vlan,
        dl_type: m.dl_type,
        nw_src: m.nw_src.map(IpPrefix::new),
        nw_dst: m.nw_dst.map(IpPrefix::new),
        nw_proto: m.nw_proto,
        tp_src: m.tp_src,
        tp_dst: m.tp_dst,
    };
    let mut actions = rule
        .actions
        .iter()
        .map(|action| {
            Ok(match action {
                RuleAction::Output(name) => CompiledAction::Output(port(name)?),
                RuleAction::Normal => CompiledAction::Normal,
                RuleAction::Drop => CompiledAction::Drop,
                RuleAction::ModDlDst(mac) => CompiledAction::SetDstMac(*mac),
                RuleAction::ModVlanVid(vid) => CompiledAction::SetVlan(*vid),
                RuleAction::PushVlan => CompiledAction::PushVlan,
                RuleAction::StripVlan => CompiledAction::PopVlan,
                RuleAction::Vxlan(node) => CompiledAction::Encap {
                    remote: remote_id(node).ok_or_else(|| RuleError::UnknownRemote {
                        index,
                        rule: rule.to_string(),
                        node: node.clone(),
                    })?,
                },
            })
        })
        .collect::<Result<Vec<_>, RuleError>>()?;
    if actions.is_empty() {
        actions.push(CompiledAction::Drop);
    }
    Ok(CompiledRule {
        priority: rule.priority,
        matches,
        actions,
        source: rule.clone(),
        index,
        caching: RuleCaching::of(&rule.actions),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{
        EtherType, Ethernet2Header, IpFragOffset, IpHeaders, IpNumber, Ipv4Extensions, Ipv4Header,
        Ipv6Extensions, Ipv6FragmentHeader as Ipv6Frag, Ipv6Header, Ipv6RawExtHeader,
        PacketBuilder, VlanId,
    };
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
    const PORTS: [&str; 4] = ["pod1", "pod2", "fw0", "uplink"];
    const REMOTES: [&str; 2] = ["node-a", "node-b"];

    fn port_id(name: &str) -> Option<PortId> {
        PORTS
            .iter()
            .position(|p| *p == name)
            .and_then(|i| PortId::try_from(i).ok())
    }

    fn remote_id(name: &str) -> Option<u16> {
        REMOTES
            .iter()
            .position(|r| *r == name)
            .and_then(|i| u16::try_from(i).ok())
    }

    fn table(rules: &[&str]) -> RuleTable {
        let rules: Vec<FlowRule> = rules.iter().map(|r| r.parse().unwrap()).collect();
        RuleTable::compile(&rules, port_id, remote_id).unwrap()
    }

    /// The source text of the rule `fields` hits, if any.
    fn winner(table: &RuleTable, fields: &Fields) -> Option<String> {
        table
            .lookup(fields)
            .rule
            .map(|i| table.rules()[i].source.to_string())
    }

    fn tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ipv4(src, dst, 64)
            .tcp(sport, dport, 1, 1024)
            .write(&mut frame, b"hello")
            .unwrap();
        frame
    }

    fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(&mut frame, b"hello")
            .unwrap();
        frame
    }

    fn tcp4_tagged(vid: u16, dport: u16) -> Vec<u8> {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .single_vlan(VlanId::try_new(vid).unwrap())
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(1000, dport, 1, 1024)
            .write(&mut frame, b"hello")
            .unwrap();
        frame
    }

    fn udp6(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16) -> Vec<u8> {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ipv6(src.octets(), dst.octets(), 64)
            .udp(sport, dport)
            .write(&mut frame, b"hello")
            .unwrap();
        frame
    }

    fn arp() -> Vec<u8> {
        let mut frame = Vec::new();
        Ethernet2Header {
            source: SRC_MAC,
            destination: [0xff; 6],
            ether_type: EtherType::ARP,
        }
        .write(&mut frame)
        .unwrap();
        frame.extend_from_slice(&[0; 28]);
        frame
    }

    fn fields(in_port: &str, frame: &[u8]) -> Fields {
        Fields::parse(port_id(in_port).unwrap(), frame).unwrap()
    }

    #[test]
    fn parses_ipv4_tcp() {
        let f = fields("pod2", &tcp4([10, 0, 0, 1], [10, 0, 0, 2], 4000, 80));
        assert_eq!(
            f,
            Fields {
                in_port: 1,
                dl_src: MacAddr(SRC_MAC),
                dl_dst: MacAddr(DST_MAC),
                vlan: None,
                dl_type: 0x0800,
                nw_src: Some(Ipv4Addr::new(10, 0, 0, 1).into()),
                nw_dst: Some(Ipv4Addr::new(10, 0, 0, 2).into()),
                nw_proto: Some(6),
                tp_src: Some(4000),
                tp_dst: Some(80),
            }
        );
    }

    #[test]
    fn parses_tagged_frame_with_inner_ethertype() {
        let f = fields("pod1", &tcp4_tagged(100, 443));
        assert_eq!(f.vlan, Some(100));
        assert_eq!(f.dl_type, 0x0800);
        assert_eq!(f.tp_dst, Some(443));
    }

    #[test]
    fn parses_ipv6_udp_and_arp() {
        let src: Ipv6Addr = "fd00::1".parse().unwrap();
        let dst: Ipv6Addr = "fd00:1::53".parse().unwrap();
        let f = fields("pod1", &udp6(src, dst, 5353, 53));
        assert_eq!(
            (f.dl_type, f.nw_src, f.nw_dst, f.nw_proto, f.tp_src, f.tp_dst),
            (
                0x86dd,
                Some(src.into()),
                Some(dst.into()),
                Some(17),
                Some(5353),
                Some(53)
            )
        );
        let f = fields("pod1", &arp());
        assert_eq!(f.dl_type, 0x0806);
        assert_eq!(f.dl_dst, MacAddr::BROADCAST);
        assert_eq!((f.nw_src, f.nw_proto, f.tp_dst), (None, None, None));
    }

    #[test]
    fn walks_ipv6_extension_headers() {
        let mut frame = Vec::new();
        let header = Ipv6Header {
            source: "fd00::1".parse::<Ipv6Addr>().unwrap().octets(),
            destination: "fd00::2".parse::<Ipv6Addr>().unwrap().octets(),
            hop_limit: 64,
            ..Ipv6Header::default()
        };
        let exts = Ipv6Extensions {
            hop_by_hop_options: Some(Ipv6RawExtHeader::new_raw(IpNumber::TCP, &[0; 14]).unwrap()),
            destination_options: Some(Ipv6RawExtHeader::new_raw(IpNumber::TCP, &[0; 6]).unwrap()),
            ..Ipv6Extensions::default()
        };
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ip(IpHeaders::Ipv6(header.clone(), exts))
            .tcp(1234, 22, 1, 1024)
            .write(&mut frame, b"x")
            .unwrap();
        let f = fields("pod1", &frame);
        assert_eq!(
            (f.nw_proto, f.tp_src, f.tp_dst),
            (Some(6), Some(1234), Some(22))
        );

        // A first fragment carries the ports; a later one does not.
        for (offset, ports) in [(0, Some(22)), (10, None)] {
            let exts = Ipv6Extensions {
                fragment: Some(Ipv6Frag::new(
                    IpNumber::TCP,
                    IpFragOffset::try_new(offset).unwrap(),
                    true,
                    7,
                )),
                ..Ipv6Extensions::default()
            };
            let mut frame = Vec::new();
            PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
                .ip(IpHeaders::Ipv6(header.clone(), exts))
                .tcp(1234, 22, 1, 1024)
                .write(&mut frame, b"x")
                .unwrap();
            let f = fields("pod1", &frame);
            assert_eq!((f.nw_proto, f.tp_dst), (Some(6), ports), "offset {offset}");
        }
    }

    #[test]
    fn later_ipv4_fragments_have_no_ports() {
        for (offset, ports) in [(0, Some(80)), (100, None)] {
            let mut ip =
                Ipv4Header::new(0, 64, IpNumber::TCP, [10, 0, 0, 1], [10, 0, 0, 2]).unwrap();
            ip.fragment_offset = IpFragOffset::try_new(offset).unwrap();
            ip.more_fragments = true;
            let mut frame = Vec::new();
            PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
                .ip(IpHeaders::Ipv4(ip, Ipv4Extensions::default()))
                .tcp(1234, 80, 1, 1024)
                .write(&mut frame, b"x")
                .unwrap();
            let f = fields("pod1", &frame);
            assert_eq!(
                (f.nw_proto, f.tp_src.is_some(), f.tp_dst),
                (Some(6), ports.is_some(), ports)
            );
        }
    }

    #[test]
    fn truncated_frames() {
        let frame = tcp4([10, 0, 0, 1], [10, 0, 0, 2], 4000, 80);
        // Shorter than an Ethernet header.
        assert_eq!(Fields::parse(0, &frame[..13]), None);
        // Ethernet only: L2 fields, nothing above.
        let f = Fields::parse(0, &frame[..14]).unwrap();
        assert_eq!((f.dl_type, f.nw_src, f.nw_proto), (0x0800, None, None));
        // IP header whose total length runs past the frame: no L3 fields.
        let f = Fields::parse(0, &frame[..14 + 20 + 10]).unwrap();
        assert_eq!((f.nw_src, f.tp_dst), (None, None));
        // A tag announced but cut short is not a whole Ethernet header.
        let tagged = tcp4_tagged(5, 80);
        assert_eq!(Fields::parse(0, &tagged[..16]), None);
        assert!(Fields::parse(0, &tagged[..18]).is_some());

        // IPv4 that holds together but whose TCP header is cut short:
        // addresses and protocol, no ports.
        let mut short = frame[..14 + 20 + 10].to_vec();
        short[16..18].copy_from_slice(&30u16.to_be_bytes()); // total length
        let f = Fields::parse(0, &short).unwrap();
        assert_eq!((f.nw_proto, f.tp_src, f.tp_dst), (Some(6), None, None));
        assert!(f.nw_src.is_some());

        // UDP: the 8-byte header is enough, whatever its length field says.
        let mut udp = udp4([10, 0, 0, 1], [10, 0, 0, 2], 5000, 53);
        udp[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&9000u16.to_be_bytes());
        let f = Fields::parse(0, &udp).unwrap();
        assert_eq!(f.tp_dst, Some(53));
    }

    #[test]
    fn higher_priority_wins_and_ties_go_to_the_earlier_rule() {
        let t = table(&[
            "priority=10,ip actions=output:pod1",
            "priority=20,tcp actions=output:pod2",
            "priority=20,ip actions=output:fw0",
            "priority=20,tcp,tp_dst=80 actions=output:uplink",
        ]);
        let web = fields("pod1", &tcp4([10, 0, 0, 1], [10, 0, 0, 2], 4000, 80));
        assert_eq!(
            winner(&t, &web).unwrap(),
            "priority=20,tcp actions=output:pod2"
        );
        let dns = fields("pod1", &udp4([10, 0, 0, 1], [10, 0, 0, 2], 4000, 53));
        assert_eq!(
            winner(&t, &dns).unwrap(),
            "priority=20,ip actions=output:fw0"
        );
        let order: Vec<(u16, usize)> = t.rules().iter().map(|r| (r.priority, r.index)).collect();
        assert_eq!(order, [(20, 1), (20, 2), (20, 3), (10, 0)]);
        assert_eq!(t.len(), 4);
        assert_eq!(
            t.rules()[0].actions,
            [CompiledAction::Output(port_id("pod2").unwrap())]
        );
    }

    #[test]
    fn prefixes_mask_the_address() {
        let t = table(&["ip,nw_dst=10.0.0.0/24 actions=normal"]);
        let hit = fields("pod1", &tcp4([192, 168, 0, 1], [10, 0, 0, 200], 1, 2));
        let miss = fields("pod1", &tcp4([192, 168, 0, 1], [10, 0, 1, 1], 1, 2));
        assert!(t.lookup(&hit).rule.is_some());
        assert!(t.lookup(&miss).rule.is_none());

        let t = table(&["ip,nw_src=0.0.0.0/0 actions=normal"]);
        assert!(t.lookup(&hit).rule.is_some());
        let v6 = fields(
            "pod1",
            &udp6("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap(), 1, 2),
        );
        assert!(
            t.lookup(&v6).rule.is_none(),
            "an IPv4 prefix never holds an IPv6 address"
        );
    }

    #[test]
    fn ipv6_prefixes() {
        let t = table(&[
            "priority=2,ipv6,ipv6_dst=fd00:1::/64 actions=output:pod1",
            "priority=1,udp6,ipv6_src=fd00::1 actions=vxlan:node-b",
        ]);
        let f = |dst: &str| {
            fields(
                "pod2",
                &udp6("fd00::1".parse().unwrap(), dst.parse().unwrap(), 1, 53),
            )
        };
        assert_eq!(t.lookup(&f("fd00:1::ffff:1")).rule, Some(0));
        assert_eq!(t.lookup(&f("fd00:1:0:1::1")).rule, Some(1));
        assert_eq!(t.rules()[1].actions, [CompiledAction::Encap { remote: 1 }]);
        let other_src = fields(
            "pod2",
            &udp6(
                "fd00::2".parse().unwrap(),
                "fd00:2::1".parse().unwrap(),
                1,
                53,
            ),
        );
        assert_eq!(t.lookup(&other_src).rule, None);
    }

    #[test]
    fn vlan_matches() {
        let t = table(&[
            "priority=3,dl_vlan=100,tcp,tp_dst=443 actions=strip_vlan,output:fw0",
            "priority=2,dl_vlan=0xffff actions=push_vlan:0x8100,mod_vlan_vid:7,output:uplink",
            "priority=1,dl_vlan=200 actions=mod_vlan_vid:300,normal",
        ]);
        let tagged_100 = fields("pod1", &tcp4_tagged(100, 443));
        let tagged_100_http = fields("pod1", &tcp4_tagged(100, 80));
        let tagged_200 = fields("pod1", &tcp4_tagged(200, 443));
        let untagged = fields("pod1", &tcp4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 443));
        assert_eq!(t.lookup(&tagged_100).rule, Some(0));
        assert_eq!(t.lookup(&tagged_100_http).rule, None);
        assert_eq!(t.lookup(&tagged_200).rule, Some(2));
        assert_eq!(t.lookup(&untagged).rule, Some(1));
        assert_eq!(
            t.rules()[1].actions,
            [
                CompiledAction::PushVlan,
                CompiledAction::SetVlan(7),
                CompiledAction::Output(3)
            ]
        );
        assert_eq!(
            t.rules()[0].actions,
            [CompiledAction::PopVlan, CompiledAction::Output(2)]
        );
    }

    #[test]
    fn transport_ports() {
        let t = table(&[
            "priority=3,tcp,tp_dst=80 actions=output:fw0",
            "priority=2,udp,tp_src=53 actions=output:pod1",
            "priority=1,udp,tp_dst=80 actions=drop",
        ]);
        let tcp80 = fields("pod1", &tcp4([10, 0, 0, 1], [10, 0, 0, 2], 53, 80));
        let udp80 = fields("pod1", &udp4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 80));
        let udp_from_53 = fields("pod1", &udp4([10, 0, 0, 1], [10, 0, 0, 2], 53, 80));
        let tcp_from_53 = fields("pod1", &tcp4([10, 0, 0, 1], [10, 0, 0, 2], 53, 81));
        assert_eq!(t.lookup(&tcp80).rule, Some(0));
        assert_eq!(t.lookup(&udp80).rule, Some(2));
        assert_eq!(t.rules()[2].actions, [CompiledAction::Drop]);
        assert_eq!(t.lookup(&udp_from_53).rule, Some(1));
        assert_eq!(t.lookup(&tcp_from_53).rule, None);
    }

    #[test]
    fn in_port_and_l2() {
        let t = table(&[
            "priority=2,in_port=pod1,dl_dst=02:00:00:00:00:02 actions=mod_dl_dst:02:00:00:00:00:99,output:fw0",
            "priority=1,in_port=fw0 actions=normal",
        ]);
        let frame = tcp4([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
        assert_eq!(t.lookup(&fields("pod1", &frame)).rule, Some(0));
        assert_eq!(t.lookup(&fields("pod2", &frame)).rule, None);
        assert_eq!(t.lookup(&fields("fw0", &frame)).rule, Some(1));
        assert_eq!(
            t.rules()[0].actions,
            [
                CompiledAction::SetDstMac(MacAddr([2, 0, 0, 0, 0, 0x99])),
                CompiledAction::Output(2)
            ]
        );
        let mut other_dst = fields("pod1", &frame);
        other_dst.dl_dst = MacAddr([2, 0, 0, 0, 0, 3]);
        assert_eq!(t.lookup(&other_dst).rule, None);
    }

    #[test]
    fn examined_fields() {
        let t = table(&[
            "priority=30,in_port=fw0,dl_src=02:00:00:00:00:aa actions=normal",
            "priority=20,dl_dst=02:00:00:00:00:bb,tcp,tp_dst=22 actions=drop",
            "priority=10,tcp,nw_dst=10.0.0.0/8 actions=output:fw0",
            "priority=0 actions=normal",
        ]);
        // Rule 0 fails on in_port; rule 1 on tp_dst before its dl_dst is
        // looked at; rule 2 wins with all of its fields.
        let web = fields("pod1", &tcp4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 80));
        let l = t.lookup(&web);
        assert_eq!(l.rule, Some(2));
        assert_eq!(
            l.examined,
            FieldSet::IN_PORT
                | FieldSet::DL_TYPE
                | FieldSet::NW_PROTO
                | FieldSet::TP_DST
                | FieldSet::NW_DST
        );
        assert!(!l.examined.intersects(FieldSet::L2));
        assert_eq!(
            t.rules()[1].matches.fields(),
            FieldSet::DL_DST | FieldSet::DL_TYPE | FieldSet::NW_PROTO | FieldSet::TP_DST
        );
        assert_eq!(
            l.examined.to_string(),
            "in_port,dl_type,nw_dst,nw_proto,tp_dst"
        );

        // SSH reaches rule 1's dl_dst: now the decision depends on L2.
        let ssh = fields("pod1", &tcp4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 22));
        let l = t.lookup(&ssh);
        assert_eq!(l.rule, Some(2));
        assert!(l.examined.contains(FieldSet::DL_DST));
        assert!(!l.examined.contains(FieldSet::DL_SRC));

        // Falling through to the match-all rule adds nothing of its own.
        let dns = fields("pod1", &udp4([10, 0, 0, 1], [192, 168, 0, 1], 1000, 53));
        let l = t.lookup(&dns);
        assert_eq!(l.rule, Some(3));
        assert_eq!(
            l.examined,
            FieldSet::IN_PORT | FieldSet::DL_TYPE | FieldSet::NW_PROTO
        );

        let empty = RuleTable::default();
        assert!(empty.is_empty());
        assert_eq!(
            empty.lookup(&dns),
            Lookup {
                rule: None,
                examined: FieldSet::EMPTY
            }
        );
    }

    #[test]
    fn unknown_names_are_errors_naming_the_rule() {
        let rules: Vec<FlowRule> = ["ip actions=normal", "in_port=pod9 actions=normal"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        let e = RuleTable::compile(&rules, port_id, remote_id).unwrap_err();
        assert_eq!(
            e,
            RuleError::UnknownPort {
                index: 1,
                rule: "in_port=pod9 actions=normal".into(),
                port: "pod9".into()
            }
        );
        assert!(e
            .to_string()
            .contains("rule 1 `in_port=pod9 actions=normal`: no port named `pod9`"));

        let rules = ["ip actions=output:nowhere".parse().unwrap()];
        assert!(matches!(
            RuleTable::compile(&rules, port_id, remote_id),
            Err(RuleError::UnknownPort { port, .. }) if port == "nowhere"
        ));
        let rules = ["ip actions=vxlan:node-z".parse().unwrap()];
        let e = RuleTable::compile(&rules, port_id, remote_id).unwrap_err();
        assert_eq!(
            e,
            RuleError::UnknownRemote {
                index: 0,
                rule: "ip actions=vxlan:node-z".into(),
                node: "node-z".into()
            }
        );
    }

    /// Rules over small value domains, so packets drawn from the same
    /// domains hit some of them and miss others.
    fn small_rule() -> impl Strategy<Value = FlowRule> {
        use xvs_control::flowrule::FlowMatch;
        let mac = (0u8..3).prop_map(|b| MacAddr([2, 0, 0, 0, 0, b]));
        let m = (
            proptest::option::of((0usize..3).prop_map(|i| PORTS[i].to_string())),
            proptest::option::of(mac.clone()),
            proptest::option::of(mac),
            proptest::option::of(prop_oneof![
                Just(VlanMatch::Untagged),
                (1u16..3).prop_map(VlanMatch::Vid)
            ]),
            proptest::option::of(prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x0806)]),
            proptest::option::of((0u8..4, 6u8..=8).prop_map(|(b, len)| {
                IpNet::new(Ipv4Addr::new(b << 6, 0, 0, 0).into(), len)
                    .unwrap()
                    .trunc()
            })),
            proptest::option::of(prop_oneof![Just(6u8), Just(17)]),
            proptest::option::of(0u16..3),
            proptest::option::of(0u16..3),
        );
        (any::<u8>(), m).prop_map(
            |(
                priority,
                (in_port, dl_src, dl_dst, dl_vlan, dl_type, nw_dst, nw_proto, tp_src, tp_dst),
            )| FlowRule {
                priority: u16::from(priority % 4),
                matches: FlowMatch {
                    in_port,
                    dl_src,
                    dl_dst,
                    dl_vlan,
                    dl_type,
                    nw_src: None,
                    nw_dst,
                    nw_proto,
                    tp_src,
                    tp_dst,
                },
                actions: vec![RuleAction::Normal],
            },
        )
    }

    fn small_fields() -> impl Strategy<Value = Fields> {
        (
            0u16..3,
            0u8..3,
            0u8..3,
            proptest::option::of(1u16..3),
            prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x0806)],
            proptest::option::of(
                (0u8..4).prop_map(|b| IpAddr::from(Ipv4Addr::new(b << 6, 1, 2, 3))),
            ),
            proptest::option::of(prop_oneof![Just(6u8), Just(17), Just(1)]),
            proptest::option::of(0u16..3),
            proptest::option::of(0u16..3),
        )
            .prop_map(
                |(in_port, s, d, vlan, dl_type, nw_dst, nw_proto, tp_src, tp_dst)| Fields {
                    in_port,
                    dl_src: MacAddr([2, 0, 0, 0, 0, s]),
                    dl_dst: MacAddr([2, 0, 0, 0, 0, d]),
                    vlan,
                    dl_type,
                    nw_src: None,
                    nw_dst,
                    nw_proto,
                    tp_src,
                    tp_dst,
                },
            )
    }

    /// A match evaluated the obvious way, on the rule as written.
    fn model_matches(m: &xvs_control::flowrule::FlowMatch, f: &Fields) -> bool {
        let in_net = |net: Option<IpNet>, addr: Option<IpAddr>| match (net, addr) {
            (None, _) => true,
            (Some(net), Some(addr)) => net.contains(&addr),
            (Some(_), None) => false,
        };
        let eq = |want: Option<u16>, have: Option<u16>| want.is_none() || want == have;
        m.in_port
            .as_deref()
            .is_none_or(|p| port_id(p) == Some(f.in_port))
            && m.dl_src.is_none_or(|mac| mac == f.dl_src)
            && m.dl_dst.is_none_or(|mac| mac == f.dl_dst)
            && m.dl_vlan.is_none_or(|v| match v {
                VlanMatch::Untagged => f.vlan.is_none(),
                VlanMatch::Vid(vid) => f.vlan == Some(vid),
            })
            && m.dl_type.is_none_or(|t| t == f.dl_type)
            && in_net(m.nw_src, f.nw_src)
            && in_net(m.nw_dst, f.nw_dst)
            && (m.nw_proto.is_none() || m.nw_proto == f.nw_proto)
            && eq(m.tp_src, f.tp_src)
            && eq(m.tp_dst, f.tp_dst)
    }

    /// `b`'s fields outside `keep` moved into `a`.
    fn mix(a: Fields, b: Fields, keep: FieldSet) -> Fields {
        fn pick<T>(keep: FieldSet, field: FieldSet, x: T, y: T) -> T {
            if keep.contains(field) {
                x
            } else {
                y
            }
        }
        Fields {
            in_port: pick(keep, FieldSet::IN_PORT, a.in_port, b.in_port),
            dl_src: pick(keep, FieldSet::DL_SRC, a.dl_src, b.dl_src),
            dl_dst: pick(keep, FieldSet::DL_DST, a.dl_dst, b.dl_dst),
            vlan: pick(keep, FieldSet::VLAN, a.vlan, b.vlan),
            dl_type: pick(keep, FieldSet::DL_TYPE, a.dl_type, b.dl_type),
            nw_src: pick(keep, FieldSet::NW_SRC, a.nw_src, b.nw_src),
            nw_dst: pick(keep, FieldSet::NW_DST, a.nw_dst, b.nw_dst),
            nw_proto: pick(keep, FieldSet::NW_PROTO, a.nw_proto, b.nw_proto),
            tp_src: pick(keep, FieldSet::TP_SRC, a.tp_src, b.tp_src),
            tp_dst: pick(keep, FieldSet::TP_DST, a.tp_dst, b.tp_dst),
        }
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panic(frame in proptest::collection::vec(any::<u8>(), 0..200),
                                         ethertype in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x8100), any::<u16>()],
                                         inner in prop_oneof![Just(0x0800u16), Just(0x86dd)]) {
            let _ = Fields::parse(0, &frame);
            // Steer the random bytes into the IP and tag parsers too.
            let mut steered = frame.clone();
            if steered.len() >= 18 {
                steered[12..14].copy_from_slice(&ethertype.to_be_bytes());
                steered[16..18].copy_from_slice(&inner.to_be_bytes());
                let _ = Fields::parse(0, &steered);
            }
        }

        /// The first match in priority order, as a model, and the examined
        /// set as a contract: whatever happens outside it does not change
        /// the answer.
        #[test]
        fn lookup_is_first_match_and_examined_decides(
            rules in proptest::collection::vec(small_rule(), 0..8),
            packet in small_fields(),
            other in small_fields(),
        ) {
            let table = RuleTable::compile(&rules, port_id, remote_id).unwrap();
            let lookup = table.lookup(&packet);
            let mut by_priority: Vec<(usize, &FlowRule)> = rules.iter().enumerate().collect();
            by_priority.sort_by_key(|(i, r)| (std::cmp::Reverse(r.priority), *i));
            let model = by_priority
                .iter()
                .find(|(_, r)| model_matches(&r.matches, &packet))
                .map(|(i, _)| *i);
            prop_assert_eq!(lookup.rule.map(|r| table.rules()[r].index), model);

            let mixed = mix(packet, other, lookup.examined);
            prop_assert_eq!(table.lookup(&mixed).rule, lookup.rule);
        }
    }
}
