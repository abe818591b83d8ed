//! User-programmable flow rules for NFV service chaining, written the way
//! `ovs-ofctl add-flow` writes them:
//!
//! ```text
//! priority=100,in_port=pod1,tcp,tp_dst=80 actions=output:fw0
//! priority=90,dl_vlan=0xffff,ip,nw_dst=10.1.0.0/16 actions=mod_vlan_vid:20,output:uplink
//! udp6,ipv6_dst=fd00::/64,tp_dst=53 actions=vxlan:node-b
//! ```
//!
//! A rule is a priority, a [`FlowMatch`] whose every field is optional (an
//! absent field is a wildcard) and a list of [`RuleAction`]s. The text form
//! is the interface: it is what people type, what `dump-rules` prints, and
//! what state files hold (serde goes through it), so parsing is strict and
//! printing is canonical: `rule.to_string().parse() == Ok(rule)` for every
//! rule the parser accepts (a property test checks it).
//!
//! What follows ovs-ofctl(8) and what does not:
//! - Match fields and shorthands (`ip`, `tcp6`, ...) have OVS's names and
//!   OVS's prerequisites (`tp_dst` needs `tcp` or `udp`, `nw_src` needs
//!   `ip`, ...), checked when the whole match is read, so order does not
//!   matter. Fields are separated by commas or blanks.
//! - Ports and remote nodes are *names*, not OpenFlow port numbers; the
//!   datapath resolves them when it compiles the rules.
//! - Masks exist only as address prefixes (`10.0.0.0/24`); a prefix with
//!   host bits set is cut to its network, as OVS does. No masks on MACs or
//!   ports.
//! - Actions are fewer and their order is constrained, so a rule that makes
//!   no sense is refused instead of silently doing something odd: `drop`
//!   stands alone; after the first action that sends the packet (`output`,
//!   `normal`, `vxlan`) only further `output:` copies may follow; a list
//!   that only modifies the packet and never sends it is refused; an empty
//!   list drops (as in OVS) and is printed `drop`.
//! - `vxlan:NODE` is ours: encapsulate toward a remote node of the overlay.
//! - Equal priorities: OVS leaves the winner undefined; the datapath picks
//!   the rule added first (see `vswitch::classifier`).
//!
//! Pure data and text: nothing here knows ports exist or touches packets.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::state::MacAddr;

/// The priority of a rule that does not say, as in OVS.
pub const DEFAULT_PRIORITY: u16 = 32768;

/// Ethertypes and IP protocol numbers the shorthands stand for.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const IP_PROTO_ICMP: u8 = 1;
pub const IP_PROTO_TCP: u8 = 6;
pub const IP_PROTO_UDP: u8 = 17;
pub const IP_PROTO_ICMPV6: u8 = 58;

/// The only TPID `push_vlan` accepts (802.1Q; no 802.1ad stacking).
pub const TPID_8021Q: u16 = 0x8100;

/// The largest VLAN ID.
pub const MAX_VID: u16 = 4095;

/// What `dl_vlan=0xffff` means: the frame carries no 802.1Q tag.
const DL_VLAN_UNTAGGED: u16 = 0xffff;

/// One rule: where a packet matches `matches`, `actions` happen to it; of
/// several matching rules the one with the highest `priority` wins.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowRule {
    pub priority: u16,
    pub matches: FlowMatch,
    /// Never empty once parsed: `actions=` alone becomes `[Drop]`.
    pub actions: Vec<RuleAction>,
}

/// What a rule matches; `None` is a wildcard.
///
/// IPv4 and IPv6 prefixes share `nw_src`/`nw_dst` (the text says
/// `nw_src` for one and `ipv6_src` for the other); a parsed match always
/// holds the family its `dl_type` calls for, and prefixes are truncated to
/// their network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FlowMatch {
    /// The name of the port the packet came in on.
    pub in_port: Option<String>,
    pub dl_src: Option<MacAddr>,
    pub dl_dst: Option<MacAddr>,
    pub dl_vlan: Option<VlanMatch>,
    /// The ethertype after any 802.1Q tag.
    pub dl_type: Option<u16>,
    pub nw_src: Option<IpNet>,
    pub nw_dst: Option<IpNet>,
    pub nw_proto: Option<u8>,
    pub tp_src: Option<u16>,
    pub tp_dst: Option<u16>,
}

/// The 802.1Q condition of a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VlanMatch {
    /// No tag (`dl_vlan=0xffff`).
    Untagged,
    /// An outer tag with this VLAN ID, `0..=4095`.
    Vid(u16),
}

/// One action, in the order the rule lists them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RuleAction {
    /// `output:PORT`: send a copy out of the named port. Several may follow
    /// one another (one copy each).
    Output(String),
    /// `normal`: hand the packet to the switch's default pipeline.
    Normal,
    /// `drop` (also what an empty `actions=` means).
    Drop,
    /// `mod_dl_dst:MAC`: rewrite the Ethernet destination.
    ModDlDst(MacAddr),
    /// `mod_vlan_vid:VID`: set the VLAN ID of the outer tag, pushing an
    /// 802.1Q tag first if the frame has none (as OVS does).
    ModVlanVid(u16),
    /// `push_vlan:0x8100`: push a new outer 802.1Q tag; the parser makes
    /// sure a `mod_vlan_vid` follows at once to give it its VLAN ID.
    PushVlan,
    /// `strip_vlan` or `pop_vlan`: remove the outer tag, if any.
    StripVlan,
    /// `vxlan:NODE`: encapsulate in VXLAN toward the named remote node.
    Vxlan(String),
}

/// Why a rule or match text was refused. Every message quotes the token at
/// fault and says what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseFlowError {
    #[error(
        "no actions: a rule ends with `actions=...`, e.g. `tcp,tp_dst=80 actions=output:fw0` \
         (an empty `actions=` drops)"
    )]
    MissingActions,
    #[error("`{token}`: a match has no actions; give only the match fields here")]
    ActionsInMatch { token: String },
    #[error("`{token}`: priority belongs to a rule, not to a match")]
    PriorityInMatch { token: String },
    #[error(
        "unknown match field `{token}`: expected one of priority, in_port, dl_src, dl_dst, \
         dl_vlan, dl_type, nw_src, nw_dst, ipv6_src, ipv6_dst, nw_proto, tp_src, tp_dst"
    )]
    UnknownField { token: String },
    #[error(
        "unknown keyword `{token}`: expected field=value or one of ip, ipv6, arp, tcp, udp, \
         icmp, tcp6, udp6, icmp6"
    )]
    UnknownKeyword { token: String },
    #[error("`{token}`: expected {expected}")]
    BadValue {
        token: String,
        expected: &'static str,
    },
    #[error("`{token}` contradicts the {field} given earlier in the match")]
    Conflict { token: String, field: &'static str },
    #[error("{token} needs {needs}")]
    MissingPrerequisite { token: String, needs: &'static str },
    #[error(
        "unknown action `{token}`: expected output:PORT, normal, drop, mod_dl_dst:MAC, \
         mod_vlan_vid:VID, push_vlan:0x8100, strip_vlan (or pop_vlan) or vxlan:NODE"
    )]
    UnknownAction { token: String },
    #[error("action `{token}`: expected {expected}")]
    BadActionArgument {
        token: String,
        expected: &'static str,
    },
    #[error("empty action in `actions={actions}`: remove the extra comma")]
    EmptyAction { actions: String },
    #[error("`drop` must be the only action (an empty `actions=` drops too)")]
    DropNotAlone,
    #[error(
        "action `{token}` after `{terminal}`: once the packet is sent (output, normal, vxlan) \
         only further output:PORT copies may follow"
    )]
    AfterTerminal { token: String, terminal: String },
    #[error("`push_vlan:0x8100` must be followed at once by `mod_vlan_vid:VID` to give the new tag its VLAN ID")]
    PushVlanWithoutVid,
    #[error(
        "actions `{actions}` never send the packet: end them with output:PORT, normal or \
         vxlan:NODE, or write drop"
    )]
    NoTerminalAction { actions: String },
}

impl FlowMatch {
    /// True when the match has no field: it matches every packet.
    pub fn is_empty(&self) -> bool {
        *self == FlowMatch::default()
    }
}

/// Parses the match part of a rule, `priority=` allowed (what `del-flows`
/// and `trace` take): the priority if it was given, and the match.
pub fn parse_match_with_priority(s: &str) -> Result<(Option<u16>, FlowMatch), ParseFlowError> {
    parse_match(s, true)
}

impl FromStr for FlowMatch {
    type Err = ParseFlowError;

    /// Parses a match alone; `priority=` is refused (see
    /// [`parse_match_with_priority`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_match(s, false).map(|(_, m)| m)
    }
}

impl FromStr for FlowRule {
    type Err = ParseFlowError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (match_text, actions_text) = split_actions(s).ok_or(ParseFlowError::MissingActions)?;
        let (priority, matches) = parse_match(match_text, true)?;
        let actions = parse_actions(actions_text)?;
        Ok(FlowRule {
            priority: priority.unwrap_or(DEFAULT_PRIORITY),
            matches,
            actions,
        })
    }
}

/// Splits `s` at the `actions=` that starts a token: the match text before
/// it and the action text after it.
fn split_actions(s: &str) -> Option<(&str, &str)> {
    const KEY: &str = "actions=";
    let mut from = 0;
    while let Some(found) = s[from..].find(KEY) {
        let at = from + found;
        let starts_token = s[..at].chars().next_back().is_none_or(is_match_separator);
        if starts_token {
            return Some((&s[..at], &s[at + KEY.len()..]));
        }
        from = at + KEY.len();
    }
    None
}

fn is_match_separator(c: char) -> bool {
    c == ',' || c.is_whitespace()
}

fn parse_match(s: &str, allow_priority: bool) -> Result<(Option<u16>, FlowMatch), ParseFlowError> {
    let mut priority = None;
    let mut m = FlowMatch::default();
    for token in s.split(is_match_separator).filter(|t| !t.is_empty()) {
        let Some((key, value)) = token.split_once('=') else {
            apply_shorthand(&mut m, token)?;
            continue;
        };
        let bad = |expected| ParseFlowError::BadValue {
            token: token.to_string(),
            expected,
        };
        match key {
            "priority" if allow_priority => {
                let p = parse_number(value).ok_or_else(|| bad("a priority 0..=65535"))?;
                set(&mut priority, p, token, "priority")?;
            }
            "priority" => {
                return Err(ParseFlowError::PriorityInMatch {
                    token: token.to_string(),
                })
            }
            "actions" => {
                return Err(ParseFlowError::ActionsInMatch {
                    token: token.to_string(),
                })
            }
            "in_port" => {
                let name = parse_name(value).ok_or_else(|| bad("a port name"))?;
                set(&mut m.in_port, name, token, "in_port")?;
            }
            "dl_src" | "dl_dst" => {
                let mac = value
                    .parse::<MacAddr>()
                    .map_err(|_| bad("a MAC address like 02:00:00:00:00:01 (no mask)"))?;
                let (slot, field) = if key == "dl_src" {
                    (&mut m.dl_src, "dl_src")
                } else {
                    (&mut m.dl_dst, "dl_dst")
                };
                set(slot, mac, token, field)?;
            }
            "dl_vlan" => {
                let vlan = match parse_number::<u16>(value) {
                    Some(DL_VLAN_UNTAGGED) => VlanMatch::Untagged,
                    Some(vid) if vid <= MAX_VID => VlanMatch::Vid(vid),
                    _ => return Err(bad("a VLAN ID 0..=4095, or 0xffff for untagged frames")),
                };
                set(&mut m.dl_vlan, vlan, token, "dl_vlan")?;
            }
            "dl_type" => {
                let ethertype =
                    parse_number(value).ok_or_else(|| bad("an ethertype like 0x0800"))?;
                set(&mut m.dl_type, ethertype, token, "dl_type")?;
            }
            "nw_src" | "nw_dst" | "ipv6_src" | "ipv6_dst" => {
                let v6 = key.starts_with("ipv6");
                let net = parse_prefix(value, v6).ok_or_else(|| {
                    bad(if v6 {
                        "an IPv6 address or prefix like fd00::/64 (nw_src/nw_dst take IPv4)"
                    } else {
                        "an IPv4 address or prefix like 10.0.0.0/24 (ipv6_src/ipv6_dst take IPv6)"
                    })
                })?;
                if key.ends_with("src") {
                    set(&mut m.nw_src, net, token, "source address")?;
                } else {
                    set(&mut m.nw_dst, net, token, "destination address")?;
                }
            }
            "nw_proto" => {
                let proto =
                    parse_number(value).ok_or_else(|| bad("an IP protocol number 0..=255"))?;
                set(&mut m.nw_proto, proto, token, "nw_proto")?;
            }
            "tp_src" | "tp_dst" => {
                let port = parse_number(value).ok_or_else(|| bad("a port number 0..=65535"))?;
                let (slot, field) = if key == "tp_src" {
                    (&mut m.tp_src, "tp_src")
                } else {
                    (&mut m.tp_dst, "tp_dst")
                };
                set(slot, port, token, field)?;
            }
            _ => {
                return Err(ParseFlowError::UnknownField {
                    token: token.to_string(),
                })
            }
        }
    }
    check_prerequisites(&m)?;
    Ok((priority, m))
}

fn apply_shorthand(m: &mut FlowMatch, token: &str) -> Result<(), ParseFlowError> {
    let (ethertype, proto) = match token {
        "ip" => (ETHERTYPE_IPV4, None),
        "ipv6" => (ETHERTYPE_IPV6, None),
        "arp" => (ETHERTYPE_ARP, None),
        "tcp" => (ETHERTYPE_IPV4, Some(IP_PROTO_TCP)),
        "udp" => (ETHERTYPE_IPV4, Some(IP_PROTO_UDP)),
        "icmp" => (ETHERTYPE_IPV4, Some(IP_PROTO_ICMP)),
        "tcp6" => (ETHERTYPE_IPV6, Some(IP_PROTO_TCP)),
        "udp6" => (ETHERTYPE_IPV6, Some(IP_PROTO_UDP)),
        "icmp6" => (ETHERTYPE_IPV6, Some(IP_PROTO_ICMPV6)),
        _ => {
            return Err(ParseFlowError::UnknownKeyword {
                token: token.to_string(),
            })
        }
    };
    set(&mut m.dl_type, ethertype, token, "dl_type")?;
    if let Some(proto) = proto {
        set(&mut m.nw_proto, proto, token, "nw_proto")?;
    }
    Ok(())
}

/// Fills a match field; giving it again is fine only with the same value.
fn set<T: PartialEq>(
    slot: &mut Option<T>,
    value: T,
    token: &str,
    field: &'static str,
) -> Result<(), ParseFlowError> {
    match slot {
        Some(earlier) if *earlier != value => Err(ParseFlowError::Conflict {
            token: token.to_string(),
            field,
        }),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

/// OVS's prerequisites, once the whole match is known.
fn check_prerequisites(m: &FlowMatch) -> Result<(), ParseFlowError> {
    let missing = |token: String, needs| Err(ParseFlowError::MissingPrerequisite { token, needs });
    for (name, port) in [("tp_src", m.tp_src), ("tp_dst", m.tp_dst)] {
        if let Some(port) = port {
            if !matches!(m.nw_proto, Some(IP_PROTO_TCP | IP_PROTO_UDP)) {
                return missing(format!("{name}={port}"), "tcp or udp (nw_proto=6 or 17)");
            }
        }
    }
    if let Some(proto) = m.nw_proto {
        if !matches!(m.dl_type, Some(ETHERTYPE_IPV4 | ETHERTYPE_IPV6)) {
            return missing(
                format!("nw_proto={proto}"),
                "ip or ipv6 (dl_type=0x0800 or 0x86dd)",
            );
        }
    }
    for (dir, net) in [("src", m.nw_src), ("dst", m.nw_dst)] {
        match net {
            Some(net @ IpNet::V4(_)) if m.dl_type != Some(ETHERTYPE_IPV4) => {
                return missing(
                    format!("nw_{dir}={}", PrefixText(net)),
                    "ip (dl_type=0x0800)",
                );
            }
            Some(net @ IpNet::V6(_)) if m.dl_type != Some(ETHERTYPE_IPV6) => {
                return missing(
                    format!("ipv6_{dir}={}", PrefixText(net)),
                    "ipv6 (dl_type=0x86dd)",
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// A decimal or `0x` hexadecimal number that fits `T` (how rules write
/// numbers; `trace` descriptions read theirs the same way).
pub fn parse_number<T: TryFrom<u64>>(s: &str) -> Option<T> {
    let n = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(hex, 16).ok()?
        }
        Some(_) => return None,
        None if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok()?,
        None => return None,
    };
    T::try_from(n).ok()
}

/// A port or node name: anything the text form can carry back unchanged.
fn parse_name(s: &str) -> Option<String> {
    let valid = !s.is_empty() && !s.contains(|c: char| is_match_separator(c) || c == '=');
    valid.then(|| s.to_string())
}

/// An address (a host prefix) or `address/length` of the family asked for,
/// cut to its network.
fn parse_prefix(s: &str, v6: bool) -> Option<IpNet> {
    let net = if s.contains('/') {
        s.parse::<IpNet>().ok()?
    } else {
        IpNet::from(s.parse::<IpAddr>().ok()?)
    };
    (net.addr().is_ipv6() == v6).then(|| net.trunc())
}

fn parse_actions(s: &str) -> Result<Vec<RuleAction>, ParseFlowError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(vec![RuleAction::Drop]);
    }
    let actions = s
        .split(',')
        .map(|token| match token.trim() {
            "" => Err(ParseFlowError::EmptyAction {
                actions: s.to_string(),
            }),
            token => parse_action(token),
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_action_order(&actions)?;
    Ok(actions)
}

fn parse_action(token: &str) -> Result<RuleAction, ParseFlowError> {
    let bad = |expected| ParseFlowError::BadActionArgument {
        token: token.to_string(),
        expected,
    };
    let (name, argument) = match token.split_once(':') {
        Some((name, argument)) => (name, Some(argument)),
        None => (token, None),
    };
    let action = match (name.to_ascii_lowercase().as_str(), argument) {
        ("output", Some(port)) => {
            RuleAction::Output(parse_name(port).ok_or_else(|| bad("output:PORT with a port name"))?)
        }
        ("output", None) => return Err(bad("output:PORT with a port name")),
        ("vxlan", Some(node)) => RuleAction::Vxlan(
            parse_name(node).ok_or_else(|| bad("vxlan:NODE with a remote node name"))?,
        ),
        ("vxlan", None) => return Err(bad("vxlan:NODE with a remote node name")),
        ("normal", None) => RuleAction::Normal,
        ("drop", None) => RuleAction::Drop,
        ("strip_vlan" | "pop_vlan", None) => RuleAction::StripVlan,
        ("normal" | "drop" | "strip_vlan" | "pop_vlan", Some(_)) => return Err(bad("no argument")),
        ("mod_dl_dst", argument) => RuleAction::ModDlDst(
            argument
                .and_then(|mac| mac.parse().ok())
                .ok_or_else(|| bad("mod_dl_dst:MAC with a MAC address like 02:00:00:00:00:01"))?,
        ),
        ("mod_vlan_vid", argument) => RuleAction::ModVlanVid(
            argument
                .and_then(parse_number)
                .filter(|vid| *vid <= MAX_VID)
                .ok_or_else(|| bad("mod_vlan_vid:VID with a VLAN ID 0..=4095"))?,
        ),
        ("push_vlan", argument) => match argument.and_then(parse_number::<u16>) {
            Some(TPID_8021Q) => RuleAction::PushVlan,
            _ => return Err(bad("push_vlan:0x8100 (802.1Q is the only TPID supported)")),
        },
        _ => {
            return Err(ParseFlowError::UnknownAction {
                token: token.to_string(),
            })
        }
    };
    Ok(action)
}

impl RuleAction {
    /// Whether this action sends the packet somewhere (or drops it): what
    /// ends the modifying part of an action list.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            RuleAction::Output(_) | RuleAction::Normal | RuleAction::Drop | RuleAction::Vxlan(_)
        )
    }
}

fn check_action_order(actions: &[RuleAction]) -> Result<(), ParseFlowError> {
    let mut terminal: Option<&RuleAction> = None;
    for (i, action) in actions.iter().enumerate() {
        if *action == RuleAction::Drop && actions.len() != 1 {
            return Err(ParseFlowError::DropNotAlone);
        }
        if let Some(terminal) = terminal {
            if !matches!(action, RuleAction::Output(_)) {
                return Err(ParseFlowError::AfterTerminal {
                    token: action.to_string(),
                    terminal: terminal.to_string(),
                });
            }
        }
        if *action == RuleAction::PushVlan
            && !matches!(actions.get(i + 1), Some(RuleAction::ModVlanVid(_)))
        {
            return Err(ParseFlowError::PushVlanWithoutVid);
        }
        if action.is_terminal() && terminal.is_none() {
            terminal = Some(action);
        }
    }
    if terminal.is_none() {
        return Err(ParseFlowError::NoTerminalAction {
            actions: ActionsText(actions).to_string(),
        });
    }
    Ok(())
}

/// Writes comma-separated items, remembering whether it wrote any.
struct Joiner<'a, 'b> {
    f: &'a mut fmt::Formatter<'b>,
    wrote: bool,
}

impl Joiner<'_, '_> {
    fn item(&mut self, args: fmt::Arguments<'_>) -> fmt::Result {
        if self.wrote {
            self.f.write_str(",")?;
        }
        self.wrote = true;
        self.f.write_fmt(args)
    }
}

/// An address without its prefix length when it is a host prefix.
struct PrefixText(IpNet);

impl fmt::Display for PrefixText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let net = self.0.trunc();
        if net.prefix_len() == net.max_prefix_len() {
            write!(f, "{}", net.addr())
        } else {
            write!(f, "{net}")
        }
    }
}

struct ActionsText<'a>(&'a [RuleAction]);

impl fmt::Display for ActionsText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("drop");
        }
        for (i, action) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{action}")?;
        }
        Ok(())
    }
}

impl FlowMatch {
    /// The fields in canonical order: in_port, L2, the protocol (as a
    /// shorthand where one applies), addresses, ports.
    fn write_fields(&self, out: &mut Joiner<'_, '_>) -> fmt::Result {
        if let Some(port) = &self.in_port {
            out.item(format_args!("in_port={port}"))?;
        }
        match self.dl_vlan {
            Some(VlanMatch::Untagged) => out.item(format_args!("dl_vlan=0xffff"))?,
            Some(VlanMatch::Vid(vid)) => out.item(format_args!("dl_vlan={vid}"))?,
            None => {}
        }
        if let Some(mac) = self.dl_src {
            out.item(format_args!("dl_src={mac}"))?;
        }
        if let Some(mac) = self.dl_dst {
            out.item(format_args!("dl_dst={mac}"))?;
        }
        let shorthand = match (self.dl_type, self.nw_proto) {
            (Some(ETHERTYPE_IPV4), Some(IP_PROTO_TCP)) => Some("tcp"),
            (Some(ETHERTYPE_IPV4), Some(IP_PROTO_UDP)) => Some("udp"),
            (Some(ETHERTYPE_IPV4), Some(IP_PROTO_ICMP)) => Some("icmp"),
            (Some(ETHERTYPE_IPV6), Some(IP_PROTO_TCP)) => Some("tcp6"),
            (Some(ETHERTYPE_IPV6), Some(IP_PROTO_UDP)) => Some("udp6"),
            (Some(ETHERTYPE_IPV6), Some(IP_PROTO_ICMPV6)) => Some("icmp6"),
            _ => None,
        };
        if let Some(shorthand) = shorthand {
            out.item(format_args!("{shorthand}"))?;
        } else {
            match self.dl_type {
                Some(ETHERTYPE_IPV4) => out.item(format_args!("ip"))?,
                Some(ETHERTYPE_IPV6) => out.item(format_args!("ipv6"))?,
                Some(ETHERTYPE_ARP) => out.item(format_args!("arp"))?,
                Some(ethertype) => out.item(format_args!("dl_type={ethertype:#06x}"))?,
                None => {}
            }
            if let Some(proto) = self.nw_proto {
                out.item(format_args!("nw_proto={proto}"))?;
            }
        }
        for (dir, net) in [("src", self.nw_src), ("dst", self.nw_dst)] {
            match net {
                Some(net @ IpNet::V4(_)) => {
                    out.item(format_args!("nw_{dir}={}", PrefixText(net)))?
                }
                Some(net @ IpNet::V6(_)) => {
                    out.item(format_args!("ipv6_{dir}={}", PrefixText(net)))?
                }
                None => {}
            }
        }
        if let Some(port) = self.tp_src {
            out.item(format_args!("tp_src={port}"))?;
        }
        if let Some(port) = self.tp_dst {
            out.item(format_args!("tp_dst={port}"))?;
        }
        Ok(())
    }
}

impl fmt::Display for FlowMatch {
    /// The match alone, fields comma-separated; empty for a match-all.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_fields(&mut Joiner { f, wrote: false })
    }
}

impl fmt::Display for FlowRule {
    /// ovs-ofctl's form: `priority=N,MATCH actions=ACTIONS`, the priority
    /// left out when it is the default, a blank before `actions=` unless
    /// the match is empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Joiner { f, wrote: false };
        if self.priority != DEFAULT_PRIORITY {
            out.item(format_args!("priority={}", self.priority))?;
        }
        self.matches.write_fields(&mut out)?;
        if out.wrote {
            f.write_str(" ")?;
        }
        write!(f, "actions={}", ActionsText(&self.actions))
    }
}

impl fmt::Display for RuleAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleAction::Output(port) => write!(f, "output:{port}"),
            RuleAction::Normal => f.write_str("normal"),
            RuleAction::Drop => f.write_str("drop"),
            RuleAction::ModDlDst(mac) => write!(f, "mod_dl_dst:{mac}"),
            RuleAction::ModVlanVid(vid) => write!(f, "mod_vlan_vid:{vid}"),
            RuleAction::PushVlan => write!(f, "push_vlan:{TPID_8021Q:#06x}"),
            RuleAction::StripVlan => f.write_str("strip_vlan"),
            RuleAction::Vxlan(node) => write!(f, "vxlan:{node}"),
        }
    }
}

impl Serialize for FlowRule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FlowRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|e| serde::de::Error::custom(format!("flow rule {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule(s: &str) -> FlowRule {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn err(s: &str) -> ParseFlowError {
        match s.parse::<FlowRule>() {
            Ok(r) => panic!("{s:?} should be refused, parsed as {r:?}"),
            Err(e) => e,
        }
    }

    /// (input, canonical form)
    const GOLDEN: &[(&str, &str)] = &[
        (
            "priority=100,in_port=pod1,tcp,tp_dst=80,actions=output:fw0",
            "priority=100,in_port=pod1,tcp,tp_dst=80 actions=output:fw0",
        ),
        (
            "priority=100,in_port=pod1,tcp,tp_dst=80 actions=output:fw0",
            "priority=100,in_port=pod1,tcp,tp_dst=80 actions=output:fw0",
        ),
        ("actions=normal", "actions=normal"),
        ("actions=NORMAL", "actions=normal"),
        ("priority=0 actions=", "priority=0 actions=drop"),
        ("priority=32768,ip actions=drop", "ip actions=drop"),
        (
            "tp_dst=0x50 , dl_type=0x0800\tnw_proto=6 actions=normal",
            "tcp,tp_dst=80 actions=normal",
        ),
        ("ip,nw_proto=47 actions=normal", "ip,nw_proto=47 actions=normal"),
        ("ipv6,nw_proto=1 actions=normal", "ipv6,nw_proto=1 actions=normal"),
        ("dl_type=0x86dd,nw_proto=58 actions=normal", "icmp6 actions=normal"),
        ("dl_type=2054 actions=normal", "arp actions=normal"),
        ("dl_type=0x88cc actions=drop", "dl_type=0x88cc actions=drop"),
        (
            "udp,nw_src=10.0.0.5/24,nw_dst=10.1.2.3/32,tp_src=53 actions=normal",
            "udp,nw_src=10.0.0.0/24,nw_dst=10.1.2.3,tp_src=53 actions=normal",
        ),
        (
            "udp6,ipv6_dst=fd00::1:2/64,ipv6_src=fd00::7,tp_dst=53 actions=vxlan:node-b",
            "udp6,ipv6_src=fd00::7,ipv6_dst=fd00::/64,tp_dst=53 actions=vxlan:node-b",
        ),
        (
            "dl_dst=02:00:00:00:00:02,dl_src=02:00:00:00:00:01,dl_vlan=10 actions=strip_vlan,normal",
            "dl_vlan=10,dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02 actions=strip_vlan,normal",
        ),
        (
            "dl_vlan=0xffff actions=mod_vlan_vid:20,output:uplink",
            "dl_vlan=0xffff actions=mod_vlan_vid:20,output:uplink",
        ),
        (
            "dl_vlan=65535 actions=pop_vlan,output:a",
            "dl_vlan=0xffff actions=strip_vlan,output:a",
        ),
        (
            "ip actions=push_vlan:0x8100,mod_vlan_vid:7,mod_dl_dst:02:aa:bb:cc:dd:ee,output:a,output:b",
            "ip actions=push_vlan:0x8100,mod_vlan_vid:7,mod_dl_dst:02:aa:bb:cc:dd:ee,output:a,output:b",
        ),
        (
            "arp actions=vxlan:node-b,output:mirror",
            "arp actions=vxlan:node-b,output:mirror",
        ),
        (
            "icmp actions=normal, output:mirror",
            "icmp actions=normal,output:mirror",
        ),
        // A field given twice with one value is accepted once.
        ("ip,tcp,tp_dst=22,tp_dst=22 actions=drop", "tcp,tp_dst=22 actions=drop"),
    ];

    #[test]
    fn golden_strings_parse_to_their_canonical_form() {
        for (input, canonical) in GOLDEN {
            let parsed = rule(input);
            assert_eq!(parsed.to_string(), *canonical, "from {input:?}");
            assert_eq!(rule(canonical), parsed, "canonical {canonical:?}");
        }
    }

    #[test]
    fn parsed_structure() {
        let r =
            rule("priority=100,in_port=pod1,tcp,nw_dst=10.0.0.0/24,tp_dst=80 actions=output:fw0");
        assert_eq!(
            r,
            FlowRule {
                priority: 100,
                matches: FlowMatch {
                    in_port: Some("pod1".into()),
                    dl_type: Some(ETHERTYPE_IPV4),
                    nw_proto: Some(IP_PROTO_TCP),
                    nw_dst: Some("10.0.0.0/24".parse().unwrap()),
                    tp_dst: Some(80),
                    ..FlowMatch::default()
                },
                actions: vec![RuleAction::Output("fw0".into())],
            }
        );
        assert_eq!(rule("actions=").actions, vec![RuleAction::Drop]);
        assert_eq!(rule("actions=normal").priority, DEFAULT_PRIORITY);
        assert!(rule("actions=normal").matches.is_empty());
        assert_eq!(
            rule("ip,nw_src=10.0.0.1 actions=normal").matches.nw_src,
            Some("10.0.0.1/32".parse().unwrap())
        );
    }

    #[test]
    fn actions_keyword_must_start_a_token() {
        // `in_port=xactions=...` is not an actions= token.
        assert_eq!(err("in_port=xactions=drop"), ParseFlowError::MissingActions);
        assert_eq!(err("tcp,tp_dst=80"), ParseFlowError::MissingActions);
        assert_eq!(err(""), ParseFlowError::MissingActions);
    }

    #[test]
    fn match_alone() {
        let m: FlowMatch = "in_port=pod1,udp,tp_dst=53".parse().unwrap();
        assert_eq!(m.to_string(), "in_port=pod1,udp,tp_dst=53");
        assert_eq!("".parse::<FlowMatch>().unwrap(), FlowMatch::default());
        assert_eq!(FlowMatch::default().to_string(), "");
        assert!(matches!(
            "priority=5,ip".parse::<FlowMatch>(),
            Err(ParseFlowError::PriorityInMatch { .. })
        ));
        assert!(matches!(
            "ip,actions=drop".parse::<FlowMatch>(),
            Err(ParseFlowError::ActionsInMatch { .. })
        ));
        assert_eq!(
            parse_match_with_priority("priority=5,ip").unwrap(),
            (
                Some(5),
                FlowMatch {
                    dl_type: Some(ETHERTYPE_IPV4),
                    ..FlowMatch::default()
                }
            )
        );
        assert_eq!(
            parse_match_with_priority("arp").unwrap().0,
            None,
            "no priority given"
        );
    }

    #[test]
    fn match_errors() {
        let cases: &[(&str, ParseFlowError)] = &[
            (
                "foo=1 actions=drop",
                ParseFlowError::UnknownField {
                    token: "foo=1".into(),
                },
            ),
            (
                "tcpp actions=drop",
                ParseFlowError::UnknownKeyword {
                    token: "tcpp".into(),
                },
            ),
            (
                "priority=70000 actions=drop",
                ParseFlowError::BadValue {
                    token: "priority=70000".into(),
                    expected: "a priority 0..=65535",
                },
            ),
            (
                "in_port= actions=drop",
                ParseFlowError::BadValue {
                    token: "in_port=".into(),
                    expected: "a port name",
                },
            ),
            (
                "dl_src=02:00:00:00:00 actions=drop",
                ParseFlowError::BadValue {
                    token: "dl_src=02:00:00:00:00".into(),
                    expected: "a MAC address like 02:00:00:00:00:01 (no mask)",
                },
            ),
            (
                "dl_vlan=4096 actions=drop",
                ParseFlowError::BadValue {
                    token: "dl_vlan=4096".into(),
                    expected: "a VLAN ID 0..=4095, or 0xffff for untagged frames",
                },
            ),
            (
                "dl_type=ip actions=drop",
                ParseFlowError::BadValue {
                    token: "dl_type=ip".into(),
                    expected: "an ethertype like 0x0800",
                },
            ),
            (
                "ip,nw_src=fd00::1 actions=drop",
                ParseFlowError::BadValue {
                    token: "nw_src=fd00::1".into(),
                    expected:
                        "an IPv4 address or prefix like 10.0.0.0/24 (ipv6_src/ipv6_dst take IPv6)",
                },
            ),
            (
                "ipv6,ipv6_dst=10.0.0.1 actions=drop",
                ParseFlowError::BadValue {
                    token: "ipv6_dst=10.0.0.1".into(),
                    expected: "an IPv6 address or prefix like fd00::/64 (nw_src/nw_dst take IPv4)",
                },
            ),
            (
                "ip,nw_dst=10.0.0.0/33 actions=drop",
                ParseFlowError::BadValue {
                    token: "nw_dst=10.0.0.0/33".into(),
                    expected:
                        "an IPv4 address or prefix like 10.0.0.0/24 (ipv6_src/ipv6_dst take IPv6)",
                },
            ),
            (
                "ip,nw_proto=256 actions=drop",
                ParseFlowError::BadValue {
                    token: "nw_proto=256".into(),
                    expected: "an IP protocol number 0..=255",
                },
            ),
            (
                "tcp,tp_dst=+80 actions=drop",
                ParseFlowError::BadValue {
                    token: "tp_dst=+80".into(),
                    expected: "a port number 0..=65535",
                },
            ),
            (
                "tcp,tp_src=0x actions=drop",
                ParseFlowError::BadValue {
                    token: "tp_src=0x".into(),
                    expected: "a port number 0..=65535",
                },
            ),
            (
                "tcp,udp actions=drop",
                ParseFlowError::Conflict {
                    token: "udp".into(),
                    field: "nw_proto",
                },
            ),
            (
                "ipv6,tcp actions=drop",
                ParseFlowError::Conflict {
                    token: "tcp".into(),
                    field: "dl_type",
                },
            ),
            (
                "in_port=a,in_port=b actions=drop",
                ParseFlowError::Conflict {
                    token: "in_port=b".into(),
                    field: "in_port",
                },
            ),
            (
                "priority=1,priority=2 actions=drop",
                ParseFlowError::Conflict {
                    token: "priority=2".into(),
                    field: "priority",
                },
            ),
            (
                "ip,nw_src=10.0.0.1,nw_src=10.0.0.2 actions=drop",
                ParseFlowError::Conflict {
                    token: "nw_src=10.0.0.2".into(),
                    field: "source address",
                },
            ),
            (
                "tp_dst=80 actions=drop",
                ParseFlowError::MissingPrerequisite {
                    token: "tp_dst=80".into(),
                    needs: "tcp or udp (nw_proto=6 or 17)",
                },
            ),
            (
                "icmp,tp_src=8 actions=drop",
                ParseFlowError::MissingPrerequisite {
                    token: "tp_src=8".into(),
                    needs: "tcp or udp (nw_proto=6 or 17)",
                },
            ),
            (
                "nw_proto=6 actions=drop",
                ParseFlowError::MissingPrerequisite {
                    token: "nw_proto=6".into(),
                    needs: "ip or ipv6 (dl_type=0x0800 or 0x86dd)",
                },
            ),
            (
                "arp,nw_proto=1 actions=drop",
                ParseFlowError::MissingPrerequisite {
                    token: "nw_proto=1".into(),
                    needs: "ip or ipv6 (dl_type=0x0800 or 0x86dd)",
                },
            ),
            (
                "nw_dst=10.0.0.0/8 actions=drop",
                ParseFlowError::MissingPrerequisite {
                    token: "nw_dst=10.0.0.0/8".into(),
                    needs: "ip (dl_type=0x0800)",
                },
            ),
            (
                "ipv6,nw_src=10.0.0.1 actions=drop",
                ParseFlowError::MissingPrerequisite {
                    token: "nw_src=10.0.0.1".into(),
                    needs: "ip (dl_type=0x0800)",
                },
            ),
            (
                "ip,ipv6_src=fd00::/8 actions=drop",
                ParseFlowError::MissingPrerequisite {
                    token: "ipv6_src=fd00::/8".into(),
                    needs: "ipv6 (dl_type=0x86dd)",
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(&err(input), expected, "{input:?}");
        }
    }

    #[test]
    fn action_errors() {
        let cases: &[(&str, ParseFlowError)] = &[
            (
                "actions=flood",
                ParseFlowError::UnknownAction {
                    token: "flood".into(),
                },
            ),
            (
                "actions=output",
                ParseFlowError::BadActionArgument {
                    token: "output".into(),
                    expected: "output:PORT with a port name",
                },
            ),
            (
                "actions=output:",
                ParseFlowError::BadActionArgument {
                    token: "output:".into(),
                    expected: "output:PORT with a port name",
                },
            ),
            (
                "actions=vxlan",
                ParseFlowError::BadActionArgument {
                    token: "vxlan".into(),
                    expected: "vxlan:NODE with a remote node name",
                },
            ),
            (
                "actions=drop:1",
                ParseFlowError::BadActionArgument {
                    token: "drop:1".into(),
                    expected: "no argument",
                },
            ),
            (
                "actions=mod_dl_dst:zz,normal",
                ParseFlowError::BadActionArgument {
                    token: "mod_dl_dst:zz".into(),
                    expected: "mod_dl_dst:MAC with a MAC address like 02:00:00:00:00:01",
                },
            ),
            (
                "actions=mod_vlan_vid:4096,normal",
                ParseFlowError::BadActionArgument {
                    token: "mod_vlan_vid:4096".into(),
                    expected: "mod_vlan_vid:VID with a VLAN ID 0..=4095",
                },
            ),
            (
                "actions=push_vlan:0x88a8,mod_vlan_vid:1,normal",
                ParseFlowError::BadActionArgument {
                    token: "push_vlan:0x88a8".into(),
                    expected: "push_vlan:0x8100 (802.1Q is the only TPID supported)",
                },
            ),
            (
                "actions=output:a,,output:b",
                ParseFlowError::EmptyAction {
                    actions: "output:a,,output:b".into(),
                },
            ),
            ("actions=drop,drop", ParseFlowError::DropNotAlone),
            ("actions=output:a,drop", ParseFlowError::DropNotAlone),
            (
                "actions=output:a,mod_dl_dst:02:00:00:00:00:01,output:b",
                ParseFlowError::AfterTerminal {
                    token: "mod_dl_dst:02:00:00:00:00:01".into(),
                    terminal: "output:a".into(),
                },
            ),
            (
                "actions=normal,normal",
                ParseFlowError::AfterTerminal {
                    token: "normal".into(),
                    terminal: "normal".into(),
                },
            ),
            (
                "actions=output:a,vxlan:b",
                ParseFlowError::AfterTerminal {
                    token: "vxlan:b".into(),
                    terminal: "output:a".into(),
                },
            ),
            (
                "actions=push_vlan:0x8100,output:a",
                ParseFlowError::PushVlanWithoutVid,
            ),
            (
                "actions=mod_vlan_vid:5,push_vlan:0x8100",
                ParseFlowError::PushVlanWithoutVid,
            ),
            (
                "actions=mod_vlan_vid:5,strip_vlan",
                ParseFlowError::NoTerminalAction {
                    actions: "mod_vlan_vid:5,strip_vlan".into(),
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(&err(input), expected, "{input:?}");
        }
    }

    #[test]
    fn messages_name_the_token_and_what_was_expected() {
        assert_eq!(
            err("tp_dst=80 actions=drop").to_string(),
            "tp_dst=80 needs tcp or udp (nw_proto=6 or 17)"
        );
        assert_eq!(
            err("tcp,tp_dst=http actions=drop").to_string(),
            "`tp_dst=http`: expected a port number 0..=65535"
        );
        let msg = err("actions=output:a,normal").to_string();
        assert!(msg.contains("`normal` after `output:a`"), "{msg}");
    }

    #[test]
    fn serde_uses_the_text_form() {
        let r = rule("priority=10,in_port=p1,udp,tp_dst=53 actions=output:dns");
        let json = serde_json::to_string(&vec![r.clone()]).unwrap();
        assert_eq!(
            json,
            r#"["priority=10,in_port=p1,udp,tp_dst=53 actions=output:dns"]"#
        );
        let back: Vec<FlowRule> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, vec![r]);
        let bad = serde_json::from_str::<FlowRule>(r#""tp_dst=80 actions=drop""#).unwrap_err();
        assert!(
            bad.to_string().contains("tp_dst=80 needs tcp or udp"),
            "{bad}"
        );
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9][a-zA-Z0-9_.:-]{0,10}"
    }

    fn mac() -> impl Strategy<Value = MacAddr> {
        any::<[u8; 6]>().prop_map(MacAddr)
    }

    fn v4_net() -> impl Strategy<Value = IpNet> {
        (any::<[u8; 4]>(), 0u8..=32)
            .prop_map(|(a, len)| IpNet::new(IpAddr::from(a), len).unwrap().trunc())
    }

    fn v6_net() -> impl Strategy<Value = IpNet> {
        (any::<[u8; 16]>(), 0u8..=128)
            .prop_map(|(a, len)| IpNet::new(IpAddr::from(a), len).unwrap().trunc())
    }

    /// Any match the parser accepts: fields drawn freely, then those whose
    /// prerequisites are missing removed.
    fn flow_match() -> impl Strategy<Value = FlowMatch> {
        let l2 = (
            proptest::option::of(name()),
            proptest::option::of(mac()),
            proptest::option::of(mac()),
            proptest::option::of(prop_oneof![
                Just(VlanMatch::Untagged),
                (0..=MAX_VID).prop_map(VlanMatch::Vid)
            ]),
        );
        let l3 = (
            proptest::option::of(prop_oneof![
                Just(ETHERTYPE_IPV4),
                Just(ETHERTYPE_IPV6),
                Just(ETHERTYPE_ARP),
                any::<u16>()
            ]),
            proptest::option::of(prop_oneof![
                Just(IP_PROTO_TCP),
                Just(IP_PROTO_UDP),
                Just(IP_PROTO_ICMP),
                Just(IP_PROTO_ICMPV6),
                any::<u8>()
            ]),
            proptest::option::of(v4_net()),
            proptest::option::of(v4_net()),
            proptest::option::of(v6_net()),
            proptest::option::of(v6_net()),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u16>()),
        );
        (l2, l3).prop_map(
            |(
                (in_port, dl_src, dl_dst, dl_vlan),
                (dl_type, proto, s4, d4, s6, d6, tp_src, tp_dst),
            )| {
                let is_ip = matches!(dl_type, Some(ETHERTYPE_IPV4 | ETHERTYPE_IPV6));
                let nw_proto = proto.filter(|_| is_ip);
                let has_ports = matches!(nw_proto, Some(IP_PROTO_TCP | IP_PROTO_UDP));
                let (nw_src, nw_dst) = match dl_type {
                    Some(ETHERTYPE_IPV4) => (s4, d4),
                    Some(ETHERTYPE_IPV6) => (s6, d6),
                    _ => (None, None),
                };
                FlowMatch {
                    in_port,
                    dl_src,
                    dl_dst,
                    dl_vlan,
                    dl_type,
                    nw_src,
                    nw_dst,
                    nw_proto,
                    tp_src: tp_src.filter(|_| has_ports),
                    tp_dst: tp_dst.filter(|_| has_ports),
                }
            },
        )
    }

    /// Any action list the parser accepts.
    fn actions() -> impl Strategy<Value = Vec<RuleAction>> {
        let modification = prop_oneof![
            mac().prop_map(|m| vec![RuleAction::ModDlDst(m)]),
            (0..=MAX_VID).prop_map(|v| vec![RuleAction::ModVlanVid(v)]),
            (0..=MAX_VID).prop_map(|v| vec![RuleAction::PushVlan, RuleAction::ModVlanVid(v)]),
            Just(vec![RuleAction::StripVlan]),
        ];
        let terminal = prop_oneof![
            Just(RuleAction::Normal),
            name().prop_map(RuleAction::Output),
            name().prop_map(RuleAction::Vxlan),
        ];
        let sends = (
            proptest::collection::vec(modification, 0..3),
            terminal,
            proptest::collection::vec(name(), 0..3),
        )
            .prop_map(|(mods, terminal, copies)| {
                let mut actions: Vec<RuleAction> = mods.into_iter().flatten().collect();
                actions.push(terminal);
                actions.extend(copies.into_iter().map(RuleAction::Output));
                actions
            });
        prop_oneof![1 => Just(vec![RuleAction::Drop]), 5 => sends]
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(priority in any::<u16>(), matches in flow_match(), actions in actions()) {
            let r = FlowRule { priority, matches, actions };
            let text = r.to_string();
            let back: FlowRule = text.parse().map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
            prop_assert_eq!(&back, &r, "{}", text);
            let m = r.matches.to_string();
            let back_match = m.parse::<FlowMatch>().ok();
            prop_assert_eq!(back_match.as_ref(), Some(&r.matches), "{}", m);
        }

        #[test]
        fn any_text_is_answered(text in "\\PC{0,60}") {
            let _ = text.parse::<FlowRule>();
            let _ = text.parse::<FlowMatch>();
        }
    }
}
