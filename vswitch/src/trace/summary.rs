//! What left the switch, in one line per frame: each output frame read
//! back with etherparse, a parser independent of the smoltcp views the
//! stages use, so a trace is also a check of what the stages wrote.

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{
    icmpv4, ArpOperation, Icmpv4Header, Icmpv4Type, Icmpv6Type, IpNumber, Ipv4Header,
    LinkExtHeader, LinkHeader, NetHeaders, PacketHeaders, TransportHeader,
};
use xvs_control::flowrule::{IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP};
use xvs_control::state::MacAddr;

/// One line about `frame`: MACs and VLAN, addresses and TTL, the transport,
/// the length, and a VXLAN packet's inner frame (UDP to `vxlan_port`) in
/// brackets. A wrong IPv4, TCP, UDP or ICMP checksum is pointed out.
pub fn describe(frame: &[u8], vxlan_port: Option<u16>) -> String {
    let h = match PacketHeaders::from_ethernet_slice(frame) {
        Ok(h) => h,
        Err(e) => return format!("{} bytes etherparse cannot read: {e}", frame.len()),
    };
    let mut parts: Vec<String> = Vec::new();
    let mut ether_type = None;
    if let Some(LinkHeader::Ethernet2(eth)) = &h.link {
        let mut s = format!("{} > {}", MacAddr(eth.source), MacAddr(eth.destination));
        ether_type = Some(eth.ether_type);
        for ext in &h.link_exts {
            if let LinkExtHeader::Vlan(v) = ext {
                s.push_str(&format!(" vlan {}", v.vlan_id.value()));
                ether_type = Some(v.ether_type);
            }
        }
        parts.push(s);
    }
    let payload = h.payload.slice();
    let mut inner = None;
    match &h.net {
        Some(NetHeaders::Ipv4(ip, _)) => {
            let bad = if ip.header_checksum == ip.calc_header_checksum() {
                ""
            } else {
                " (bad checksum)"
            };
            parts.push(format!(
                "{} > {} ttl {}{bad}",
                Ipv4Addr::from(ip.source),
                Ipv4Addr::from(ip.destination),
                ip.time_to_live
            ));
            match &h.transport {
                Some(TransportHeader::Tcp(t)) => {
                    let ok = t.calc_checksum_ipv4(ip, payload).ok() == Some(t.checksum);
                    parts.push(format!("{}{}", tcp_text(t), bad_sum(ok)));
                }
                Some(TransportHeader::Udp(u)) => {
                    let ok = u.checksum == 0
                        || u.calc_checksum_ipv4(ip, payload).ok() == Some(u.checksum);
                    parts.push(format!(
                        "udp {} > {}{}",
                        u.source_port,
                        u.destination_port,
                        bad_sum(ok)
                    ));
                    if Some(u.destination_port) == vxlan_port {
                        if let Some((vni, rest)) = vxlan(payload) {
                            parts.push(format!("vxlan vni {vni}"));
                            inner = Some(describe(rest, None));
                        }
                    }
                }
                Some(TransportHeader::Icmpv4(i)) => {
                    let ok = i.icmp_type.calc_checksum(payload) == i.checksum;
                    parts.push(format!("icmp {}{}", icmp_text(i, payload), bad_sum(ok)));
                }
                Some(other) => parts.push(format!("{other:?}")),
                None => parts.push(format!("proto {}", ip.protocol.0)),
            }
        }
        Some(NetHeaders::Ipv6(ip, _)) => {
            parts.push(format!(
                "{} > {} hlim {}",
                Ipv6Addr::from(ip.source),
                Ipv6Addr::from(ip.destination),
                ip.hop_limit
            ));
            match &h.transport {
                Some(TransportHeader::Tcp(t)) => parts.push(tcp_text(t)),
                Some(TransportHeader::Udp(u)) => {
                    parts.push(format!("udp {} > {}", u.source_port, u.destination_port))
                }
                Some(TransportHeader::Icmpv6(i)) => parts.push(match i.icmp_type {
                    Icmpv6Type::EchoRequest(e) => {
                        format!("icmp6 echo request id {} seq {}", e.id, e.seq)
                    }
                    Icmpv6Type::EchoReply(e) => {
                        format!("icmp6 echo reply id {} seq {}", e.id, e.seq)
                    }
                    ref t => format!("icmp6 type {} code {}", t.type_u8(), t.code_u8()),
                }),
                Some(other) => parts.push(format!("{other:?}")),
                None => parts.push(format!("proto {}", ip.next_header.0)),
            }
        }
        Some(NetHeaders::Arp(arp)) => parts.push(match arp.try_eth_ipv4() {
            Ok(a) if a.operation == ArpOperation::REQUEST => format!(
                "arp who-has {} tell {}",
                Ipv4Addr::from(a.target_ipv4),
                Ipv4Addr::from(a.sender_ipv4)
            ),
            Ok(a) if a.operation == ArpOperation::REPLY => format!(
                "arp reply {} is-at {}",
                Ipv4Addr::from(a.sender_ipv4),
                MacAddr(a.sender_mac)
            ),
            Ok(a) => format!("arp op {}", a.operation.0),
            Err(_) => "arp (not Ethernet/IPv4)".to_string(),
        }),
        None => {
            if let Some(t) = ether_type {
                parts.push(format!("ethertype {:#06x}", t.0));
            }
        }
    }
    parts.push(format!("{} bytes", frame.len()));
    let mut line = parts.join(", ");
    if let Some(inner) = inner {
        line.push_str(&format!(" [{inner}]"));
    }
    line
}

fn bad_sum(ok: bool) -> &'static str {
    if ok {
        ""
    } else {
        " (bad checksum)"
    }
}

fn tcp_text(t: &etherparse::TcpHeader) -> String {
    let flags: Vec<&str> = [
        (t.syn, "syn"),
        (t.fin, "fin"),
        (t.rst, "rst"),
        (t.psh, "psh"),
        (t.ack, "ack"),
        (t.urg, "urg"),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| *name)
    .collect();
    let mut s = format!("tcp {} > {}", t.source_port, t.destination_port);
    for f in flags {
        s.push(' ');
        s.push_str(f);
    }
    s
}

/// An ICMP message in words; an error with the addresses it quotes.
fn icmp_text(i: &Icmpv4Header, payload: &[u8]) -> String {
    use icmpv4::DestUnreachableHeader as U;
    let (what, error) = match &i.icmp_type {
        Icmpv4Type::EchoRequest(e) => (format!("echo request id {} seq {}", e.id, e.seq), false),
        Icmpv4Type::EchoReply(e) => (format!("echo reply id {} seq {}", e.id, e.seq), false),
        Icmpv4Type::DestinationUnreachable(u) => (
            match u {
                U::Network => "net unreachable".to_string(),
                U::Host => "host unreachable".to_string(),
                U::Port => "port unreachable".to_string(),
                U::FragmentationNeeded { next_hop_mtu } => {
                    format!("fragmentation needed mtu {next_hop_mtu}")
                }
                other => format!("destination unreachable code {}", other.code_u8()),
            },
            true,
        ),
        Icmpv4Type::TimeExceeded(icmpv4::TimeExceededCode::TtlExceededInTransit) => {
            ("time exceeded in transit".to_string(), true)
        }
        Icmpv4Type::TimeExceeded(_) => ("time exceeded in reassembly".to_string(), true),
        _ => {
            let b = i.to_bytes();
            let (ty, code) = (b.first().copied(), b.get(1).copied());
            (
                format!("type {} code {}", ty.unwrap_or(0), code.unwrap_or(0)),
                false,
            )
        }
    };
    if !error {
        return what;
    }
    match Ipv4Header::from_slice(payload) {
        Ok((q, _)) => format!(
            "{what} about {} > {} {}",
            Ipv4Addr::from(q.source),
            Ipv4Addr::from(q.destination),
            proto_name(q.protocol)
        ),
        Err(_) => what,
    }
}

fn proto_name(p: IpNumber) -> String {
    match p.0 {
        IP_PROTO_TCP => "tcp".into(),
        IP_PROTO_UDP => "udp".into(),
        IP_PROTO_ICMP => "icmp".into(),
        n => format!("proto {n}"),
    }
}

/// A VXLAN header's VNI and the inner frame, if `udp_payload` has the I
/// flag (RFC 7348).
fn vxlan(udp_payload: &[u8]) -> Option<(u32, &[u8])> {
    let (header, inner) = udp_payload.split_at_checked(8)?;
    (header[0] & 0x08 != 0).then(|| {
        let vni = u32::from_be_bytes([0, header[4], header[5], header[6]]);
        (vni, inner)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    #[test]
    fn summaries_point_out_bad_checksums() {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 9)
            .udp(1, 2)
            .write(&mut frame, b"xy")
            .unwrap();
        assert_eq!(
            describe(&frame, None),
            "02:00:00:00:00:01 > 02:00:00:00:00:02, 10.0.0.1 > 10.0.0.2 ttl 9, udp 1 > 2, 44 bytes"
        );
        frame[24] ^= 1; // IPv4 header checksum
        frame[41] ^= 1; // UDP checksum
        assert_eq!(
            describe(&frame, None),
            "02:00:00:00:00:01 > 02:00:00:00:00:02, 10.0.0.1 > 10.0.0.2 ttl 9 (bad checksum), \
             udp 1 > 2 (bad checksum), 44 bytes"
        );
        let cut = describe(&frame[..20], None);
        assert!(
            cut.starts_with("20 bytes etherparse cannot read: IPv4 Header Error"),
            "{cut}"
        );
    }
}
