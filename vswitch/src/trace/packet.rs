//! The packet a trace describes: the description's text read into a
//! fully specified packet (defaults filled in, see the table in
//! [`super`]), printed back in canonical form, and built into a frame with
//! etherparse.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Ethernet2Header, IpNumber, PacketBuilder,
    SingleVlanHeader, VlanId, VlanPcp,
};
use ipnet::IpNet;
use xvs_control::flowrule::{
    parse_number, FlowMatch, ParseFlowError, VlanMatch, ETHERTYPE_ARP, ETHERTYPE_IPV4,
    ETHERTYPE_IPV6, IP_PROTO_ICMP, IP_PROTO_ICMPV6, IP_PROTO_TCP, IP_PROTO_UDP,
};
use xvs_control::state::MacAddr;

use super::TraceError;
use crate::packet::MAX_FRAME_LEN;
use crate::port::PortId;
use crate::snapshot::{NextHop, PortRole, Route, Snapshot};

/// Source MAC of a traced frame where no pod's MAC applies: locally
/// administered, and "trace" in its last five bytes.
const TRACE_MAC: MacAddr = MacAddr([0x02, 0x74, 0x72, 0x61, 0x63, 0x65]);
/// Default TCP/UDP source port: the first of the dynamic range.
const DEFAULT_TP_SRC: u16 = 49152;
/// Default TTL (hop limit), Linux's.
const DEFAULT_TTL: u8 = 64;
/// ICMP echo identifier and sequence number of a traced echo.
const ECHO_ID: u16 = 1;
const ECHO_SEQ: u16 = 1;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;
const ARP_REQUEST: u16 = 1;
/// The ISN and window of a traced TCP SYN (Linux's initial window).
const TCP_SEQ: u32 = 1;
const TCP_WINDOW: u16 = 64240;

/// A fully specified packet: a description with its defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Described {
    pub(super) in_port: PortId,
    in_port_name: String,
    src_mac: MacAddr,
    dst_mac: MacAddr,
    /// `dl_vlan` as given (`Untagged` is kept so the text says it back).
    vlan: Option<VlanMatch>,
    net: Net,
    /// The frame's length when given (`len=`); else the headers alone.
    len: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Net {
    Ip {
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        ttl: u8,
        l4: L4,
    },
    Arp {
        op: u16,
        spa: Ipv4Addr,
        tpa: Ipv4Addr,
    },
    /// Any other ethertype: the header and a zero payload.
    Other(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L4 {
    Ports {
        src: u16,
        dst: u16,
    },
    Icmp {
        ty: u8,
        code: u8,
    },
    /// Only the IP header (another protocol number).
    Raw,
}

/// The packet fields a flow match does not have.
#[derive(Debug, Default)]
struct Extras {
    nw_ttl: Option<(u8, String)>,
    icmp_type: Option<(u8, String)>,
    icmp_code: Option<(u8, String)>,
    arp_op: Option<(u16, String)>,
    arp_spa: Option<(Ipv4Addr, String)>,
    arp_tpa: Option<(Ipv4Addr, String)>,
    len: Option<(usize, String)>,
}

impl Extras {
    /// Takes `token` if it is a packet field (`Ok(true)`).
    fn take(&mut self, token: &str) -> Result<bool, TraceError> {
        let Some((key, value)) = token.split_once('=') else {
            return Ok(false);
        };
        let bad = |expected| TraceError::BadValue {
            token: token.to_string(),
            expected,
        };
        match key {
            "nw_ttl" => {
                let v = parse_number(value).ok_or_else(|| bad("a TTL 0..=255"))?;
                set(&mut self.nw_ttl, v, token)?;
            }
            "icmp_type" => {
                let v = parse_number(value).ok_or_else(|| bad("an ICMP type 0..=255"))?;
                set(&mut self.icmp_type, v, token)?;
            }
            "icmp_code" => {
                let v = parse_number(value).ok_or_else(|| bad("an ICMP code 0..=255"))?;
                set(&mut self.icmp_code, v, token)?;
            }
            "arp_op" => {
                let v = parse_number(value)
                    .ok_or_else(|| bad("an ARP operation (1 request, 2 reply)"))?;
                set(&mut self.arp_op, v, token)?;
            }
            "arp_spa" | "arp_tpa" => {
                let v = value
                    .parse::<Ipv4Addr>()
                    .map_err(|_| bad("an IPv4 address like 10.244.1.11"))?;
                let slot = if key == "arp_spa" {
                    &mut self.arp_spa
                } else {
                    &mut self.arp_tpa
                };
                set(slot, v, token)?;
            }
            "len" => {
                let v = parse_number(value).ok_or_else(|| bad("a frame length in bytes"))?;
                set(&mut self.len, v, token)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Fills a packet field; giving it again is fine only with the same value.
fn set<T: PartialEq>(slot: &mut Option<(T, String)>, v: T, token: &str) -> Result<(), TraceError> {
    match slot {
        Some((earlier, _)) if *earlier != v => Err(TraceError::Conflict {
            token: token.to_string(),
        }),
        _ => {
            *slot = Some((v, token.to_string()));
            Ok(())
        }
    }
}

/// The tokens that say what a packet is (they set `dl_type`).
fn sets_dl_type(token: &str) -> bool {
    matches!(
        token,
        "ip" | "ipv6" | "arp" | "tcp" | "udp" | "icmp" | "tcp6" | "udp6" | "icmp6"
    ) || token.starts_with("dl_type=")
}

fn key(token: &str) -> &str {
    token.split_once('=').map_or(token, |(k, _)| k)
}

/// The one address of a host prefix.
fn host(net: Option<IpNet>, field: &str) -> Result<Option<IpAddr>, TraceError> {
    match net {
        None => Ok(None),
        Some(n) if n.prefix_len() == n.max_prefix_len() => Ok(Some(n.addr())),
        Some(n) => {
            let family = if n.addr().is_ipv4() { "nw" } else { "ipv6" };
            Err(TraceError::NotAnAddress {
                token: format!("{family}_{field}={n}"),
            })
        }
    }
}

/// Refuses packet field `token` (if given) unless `ok`.
fn needs<T>(field: &Option<(T, String)>, ok: bool, needs: &'static str) -> Result<(), TraceError> {
    match field {
        Some((_, token)) if !ok => Err(TraceError::MissingPrerequisite {
            token: token.clone(),
            needs,
        }),
        _ => Ok(()),
    }
}

impl Described {
    pub(super) fn parse(snap: &Snapshot, description: &str) -> Result<Described, TraceError> {
        let mut extras = Extras::default();
        let mut rest: Vec<&str> = Vec::new();
        let tokens = description
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty());
        for token in tokens {
            if !extras.take(token)? {
                rest.push(token);
            }
        }
        // `nw_dst=...` alone means an IPv4 packet (OVS's trace assumes as
        // much; a match would want `ip` spelled out).
        if !rest.iter().any(|t| sets_dl_type(t)) {
            if rest
                .iter()
                .any(|t| matches!(key(t), "nw_src" | "nw_dst" | "nw_proto"))
            {
                rest.push("ip");
            } else if rest
                .iter()
                .any(|t| matches!(key(t), "ipv6_src" | "ipv6_dst"))
            {
                rest.push("ipv6");
            }
        }
        let m: FlowMatch = rest.join(",").parse().map_err(|e| match e {
            ParseFlowError::UnknownField { token } => TraceError::UnknownField { token },
            e => TraceError::Parse(e),
        })?;

        let in_port_name = m.in_port.clone().ok_or(TraceError::NoInPort)?;
        let in_port = snap
            .port_id(&in_port_name)
            .ok_or_else(|| TraceError::UnknownPort(in_port_name.clone()))?;
        let port = &snap.ports[usize::from(in_port)];
        let pod_ip = match port.role {
            PortRole::Pod { ip } => Some(ip),
            _ => None,
        };
        let bridged = matches!(port.role, PortRole::Bridged { .. });

        let dl_type = m.dl_type.ok_or(TraceError::Missing(
            "no protocol: say what the packet is (ip, tcp, udp, icmp, arp, ipv6, tcp6, udp6, \
             icmp6 or dl_type=ETHERTYPE)",
        ))?;
        let is_ip = matches!(dl_type, ETHERTYPE_IPV4 | ETHERTYPE_IPV6);
        let proto = m.nw_proto.unwrap_or(0);
        let icmp = matches!(
            (dl_type, proto),
            (ETHERTYPE_IPV4, IP_PROTO_ICMP) | (ETHERTYPE_IPV6, IP_PROTO_ICMPV6)
        );
        let arp = dl_type == ETHERTYPE_ARP;
        needs(
            &extras.nw_ttl,
            is_ip,
            "ip or ipv6 (dl_type=0x0800 or 0x86dd)",
        )?;
        needs(&extras.icmp_type, icmp, "icmp or icmp6")?;
        needs(&extras.icmp_code, icmp, "icmp or icmp6")?;
        needs(&extras.arp_op, arp, "arp (dl_type=0x0806)")?;
        needs(&extras.arp_spa, arp, "arp (dl_type=0x0806)")?;
        needs(&extras.arp_tpa, arp, "arp (dl_type=0x0806)")?;

        let net = match dl_type {
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => {
                let v4 = dl_type == ETHERTYPE_IPV4;
                let src = match host(m.nw_src, "src")? {
                    Some(a) => a,
                    None => match pod_ip {
                        Some(ip) if v4 => IpAddr::V4(ip),
                        _ => {
                            return Err(TraceError::Missing(if v4 {
                                "no source address: give nw_src=ADDRESS (only a pod port has \
                                 a default, the pod's address)"
                            } else {
                                "no source address: give ipv6_src=ADDRESS"
                            }))
                        }
                    },
                };
                let dst = host(m.nw_dst, "dst")?.ok_or(TraceError::Missing(if v4 {
                    "no destination address: give nw_dst=ADDRESS"
                } else {
                    "no destination address: give ipv6_dst=ADDRESS"
                }))?;
                let l4 = match proto {
                    IP_PROTO_TCP | IP_PROTO_UDP => L4::Ports {
                        src: m.tp_src.unwrap_or(DEFAULT_TP_SRC),
                        dst: m.tp_dst.ok_or(TraceError::Missing(
                            "no destination port: a tcp or udp packet needs tp_dst=PORT",
                        ))?,
                    },
                    _ if icmp => {
                        let echo = if v4 {
                            ICMP_ECHO_REQUEST
                        } else {
                            ICMPV6_ECHO_REQUEST
                        };
                        L4::Icmp {
                            ty: extras.icmp_type.map_or(echo, |(t, _)| t),
                            code: extras.icmp_code.map_or(0, |(c, _)| c),
                        }
                    }
                    _ => L4::Raw,
                };
                Net::Ip {
                    src,
                    dst,
                    proto,
                    ttl: extras.nw_ttl.map_or(DEFAULT_TTL, |(t, _)| t),
                    l4,
                }
            }
            ETHERTYPE_ARP => Net::Arp {
                op: extras.arp_op.map_or(ARP_REQUEST, |(o, _)| o),
                spa: match (extras.arp_spa, pod_ip) {
                    (Some((a, _)), _) | (None, Some(a)) => a,
                    (None, None) => {
                        return Err(TraceError::Missing(
                            "no sender address: give arp_spa=ADDRESS (only a pod port has a \
                             default, the pod's address)",
                        ))
                    }
                },
                tpa: extras.arp_tpa.map_or(snap.gateway_ip, |(a, _)| a),
            },
            other => Net::Other(other),
        };

        let src_mac = m.dl_src.unwrap_or_else(|| {
            pod_ip
                .and_then(|ip| pod_mac(snap, in_port, ip))
                .unwrap_or(TRACE_MAC)
        });
        let broadcast = bridged
            || matches!(
                net,
                Net::Arp {
                    op: ARP_REQUEST,
                    ..
                }
            );
        let dst_mac = m.dl_dst.unwrap_or(if broadcast {
            MacAddr::BROADCAST
        } else {
            port.mac
        });
        Ok(Described {
            in_port,
            in_port_name,
            src_mac,
            dst_mac,
            vlan: m.dl_vlan,
            net,
            len: extras.len.map(|(l, _)| l),
        })
    }

    fn ethertype(&self) -> u16 {
        match &self.net {
            Net::Ip { src, .. } if src.is_ipv4() => ETHERTYPE_IPV4,
            Net::Ip { .. } => ETHERTYPE_IPV6,
            Net::Arp { .. } => ETHERTYPE_ARP,
            Net::Other(t) => *t,
        }
    }

    /// The frame: with `len=`, the headers and a zero payload up to it.
    pub(super) fn frame(&self) -> Result<Vec<u8>, TraceError> {
        let headers = self.build(0)?;
        let Some(len) = self.len else {
            return Ok(headers);
        };
        if len > MAX_FRAME_LEN {
            return Err(TraceError::TooLong {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        let Some(pad) = len.checked_sub(headers.len()) else {
            return Err(TraceError::TooShort {
                len,
                min: headers.len(),
            });
        };
        self.build(pad)
    }

    /// The frame with `pad` zero bytes of payload (for ARP: Ethernet
    /// padding after the ARP packet).
    fn build(&self, pad: usize) -> Result<Vec<u8>, TraceError> {
        let e = |e: &dyn fmt::Display| TraceError::Build(e.to_string());
        let payload = vec![0u8; pad];
        let mut out = Vec::with_capacity(64 + pad);
        let ether_type = EtherType(self.ethertype());
        let eth = |ether_type| Ethernet2Header {
            source: self.src_mac.0,
            destination: self.dst_mac.0,
            ether_type,
        };
        match self.vlan {
            Some(VlanMatch::Vid(vid)) => {
                eth(EtherType::VLAN_TAGGED_FRAME)
                    .write(&mut out)
                    .map_err(|x| e(&x))?;
                SingleVlanHeader {
                    pcp: VlanPcp::ZERO,
                    drop_eligible_indicator: false,
                    vlan_id: VlanId::try_new(vid).map_err(|x| e(&x))?,
                    ether_type,
                }
                .write(&mut out)
                .map_err(|x| e(&x))?;
            }
            Some(VlanMatch::Untagged) | None => {
                eth(ether_type).write(&mut out).map_err(|x| e(&x))?;
            }
        }
        match self.net {
            Net::Ip {
                src,
                dst,
                proto,
                ttl,
                l4,
            } => {
                let b = match (src, dst) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => {
                        PacketBuilder::ipv4(s.octets(), d.octets(), ttl)
                    }
                    (IpAddr::V6(s), IpAddr::V6(d)) => {
                        PacketBuilder::ipv6(s.octets(), d.octets(), ttl)
                    }
                    _ => return Err(TraceError::Build("mixed address families".into())),
                };
                let v4 = src.is_ipv4();
                let written = match l4 {
                    L4::Ports { src, dst } if proto == IP_PROTO_TCP => b
                        .tcp(src, dst, TCP_SEQ, TCP_WINDOW)
                        .syn()
                        .write(&mut out, &payload),
                    L4::Ports { src, dst } => b.udp(src, dst).write(&mut out, &payload),
                    L4::Icmp { ty, code } if v4 => match ty {
                        ICMP_ECHO_REQUEST if code == 0 => b.icmpv4_echo_request(ECHO_ID, ECHO_SEQ),
                        ICMP_ECHO_REPLY if code == 0 => b.icmpv4_echo_reply(ECHO_ID, ECHO_SEQ),
                        _ => b.icmpv4_raw(ty, code, [0; 4]),
                    }
                    .write(&mut out, &payload),
                    L4::Icmp { ty, code } => match ty {
                        ICMPV6_ECHO_REQUEST if code == 0 => {
                            b.icmpv6_echo_request(ECHO_ID, ECHO_SEQ)
                        }
                        ICMPV6_ECHO_REPLY if code == 0 => b.icmpv6_echo_reply(ECHO_ID, ECHO_SEQ),
                        _ => b.icmpv6_raw(ty, code, [0; 4]),
                    }
                    .write(&mut out, &payload),
                    L4::Raw => b.write(&mut out, IpNumber(proto), &payload),
                };
                written.map_err(|x| e(&x))?;
            }
            Net::Arp { op, spa, tpa } => {
                let tha = if op == ARP_REQUEST {
                    [0; 6]
                } else {
                    self.dst_mac.0
                };
                ArpPacket::new(
                    ArpHardwareId::ETHERNET,
                    EtherType::IPV4,
                    ArpOperation(op),
                    &self.src_mac.0,
                    &spa.octets(),
                    &tha,
                    &tpa.octets(),
                )
                .map_err(|x| e(&x))?
                .write(&mut out)
                .map_err(|x| e(&x))?;
                out.extend_from_slice(&payload);
            }
            Net::Other(_) => out.extend_from_slice(&payload),
        }
        Ok(out)
    }
}

/// The MAC of the pod on `port` (whose address is `ip`): where its /32
/// route leads.
fn pod_mac(snap: &Snapshot, port: PortId, ip: Ipv4Addr) -> Option<MacAddr> {
    match snap.routes.get_exact(u32::from(ip), 32) {
        Some(Route::Via(NextHop::Port { port: p, mac })) if *p == port => Some(*mac),
        _ => None,
    }
}

impl fmt::Display for Described {
    /// The description in canonical form: the match fields as a flow rule
    /// prints them, then the packet fields, every default spelled out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = FlowMatch {
            in_port: Some(self.in_port_name.clone()),
            dl_src: Some(self.src_mac),
            dl_dst: Some(self.dst_mac),
            dl_vlan: self.vlan,
            dl_type: Some(self.ethertype()),
            ..FlowMatch::default()
        };
        if let Net::Ip {
            src,
            dst,
            proto,
            l4,
            ..
        } = self.net
        {
            m.nw_src = Some(IpNet::from(src));
            m.nw_dst = Some(IpNet::from(dst));
            m.nw_proto = Some(proto);
            if let L4::Ports { src, dst } = l4 {
                m.tp_src = Some(src);
                m.tp_dst = Some(dst);
            }
        }
        write!(f, "{m}")?;
        match self.net {
            Net::Ip { ttl, l4, .. } => {
                write!(f, ",nw_ttl={ttl}")?;
                if let L4::Icmp { ty, code } = l4 {
                    write!(f, ",icmp_type={ty},icmp_code={code}")?;
                }
            }
            Net::Arp { op, spa, tpa } => write!(f, ",arp_op={op},arp_spa={spa},arp_tpa={tpa}")?,
            Net::Other(_) => {}
        }
        // The length of the frame as built, with or without `len=`.
        let len = self
            .len
            .or_else(|| self.build(0).ok().map(|b| b.len()))
            .unwrap_or(0);
        write!(f, ",len={len}")
    }
}
