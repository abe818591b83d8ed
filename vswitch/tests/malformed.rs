//! Malformed and hostile input: every frame is dropped under its exact
//! reason, nothing panics, nothing leaks, and whatever does go out is a
//! well-formed frame (checked with etherparse).
mod common;

use std::net::Ipv6Addr;

use common::*;
use etherparse::{Ipv4HeaderSlice, UdpHeaderSlice};
use proptest::prelude::*;
use xvs_vswitch::drop::DropReason;

const PAYLOAD: &[u8] = b"malformed-input test payload";

/// A valid IPv4/UDP frame as `port` would receive it, addressed to pod2:
/// from pod1 on "pod1", from the external network on "uplink".
fn valid_ipv4(port: &str, ttl: u8) -> Vec<u8> {
    ipv4_with(port, ttl, PAYLOAD)
}

/// `valid_ipv4` with another UDP payload.
fn ipv4_with(port: &str, ttl: u8, payload: &[u8]) -> Vec<u8> {
    match port {
        "pod1" => pod_udp(1, pod_ip(2), ttl, payload),
        "uplink" => udp(ROUTER_MAC, UPLINK_MAC, EXTERNAL, pod_ip(2), ttl, payload),
        other => panic!("no valid IPv4 frame for {other}"),
    }
}

/// `valid_ipv4(port, 64)` changed by `edit`, then given an IPv4 header
/// checksum that verifies over the IHL*4 bytes the header claims.
fn edited_ipv4(port: &str, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut f = valid_ipv4(port, 64);
    edit(&mut f);
    fix_ipv4_checksum(&mut f, 14);
    f
}

/// The routed ports, each with the MAC the switch uses on it.
const ROUTED: [(&str, [u8; 6]); 2] = [("pod1", GW_MAC), ("uplink", UPLINK_MAC)];

/// On a fresh harness, sends each (port, description, frame) of `cases`
/// and expects it to be dropped for `reason` alone (`expect_drop`). Checks
/// that the `reason` counter ends at the number of cases and that no frame
/// leaked; returns that number.
fn expect_drops(reason: DropReason, cases: Vec<(&str, String, Vec<u8>)>) -> u64 {
    let mut h = Harness::new();
    let n = cases.len() as u64;
    for (port, what, f) in cases {
        expect_drop(&mut h, port, f, reason, &what);
    }
    assert_eq!(h.drops(reason), n);
    h.assert_no_frame_leak();
    n
}

/// `expect_drops` of the (description, frame) cases that `cases` makes for
/// each routed port (given with the MAC the switch uses on it).
fn drops_on_routed_ports(
    reason: DropReason,
    cases: impl Fn(&str, [u8; 6]) -> Vec<(String, Vec<u8>)>,
) -> u64 {
    let mut all = Vec::new();
    for (port, mac) in ROUTED {
        all.extend(
            cases(port, mac)
                .into_iter()
                .map(|(what, f)| (port, what, f)),
        );
    }
    expect_drops(reason, all)
}

/// Both routed ports deliver the unmodified frame: the drops below are
/// caused by the one thing each test breaks.
#[test]
fn baseline_valid_ipv4_is_delivered() {
    let mut h = Harness::new();
    for (port, _) in ROUTED {
        let f = valid_ipv4(port, 64);
        h.send(port, f.clone());
        let out = h.sent("pod2");
        assert_eq!(out.len(), 1, "from {port}");
        let (_, dst, ttl) = ipv4_of(&out[0]);
        assert_eq!((dst, ttl), (pod_ip(2), 63));
        assert_eq!(out[0].len(), f.len());
    }
    assert_eq!(h.counters().total_drops(), 0);
    h.assert_no_frame_leak();
}

// ---------------------------------------------------------------------------
// Ethernet and 802.1Q.

#[test]
fn frames_shorter_than_ethernet_header_are_truncated_ethernet() {
    let full = valid_ipv4("pod1", 64);
    let mut cases = Vec::new();
    for port in PORTS {
        for len in [0usize, 1, 13] {
            cases.push((port, format!("{len} bytes"), full[..len].to_vec()));
        }
    }
    let n = expect_drops(DropReason::TruncatedEthernet, cases);
    assert_eq!(n, 3 * PORTS.len() as u64);
}

#[test]
fn cut_short_vlan_tag_is_truncated_vlan() {
    let mut cases = Vec::new();
    for (port, mac) in [
        ("pod1", GW_MAC),
        ("uplink", UPLINK_MAC),
        ("br1", [0x02, 0, 0, 0, 0xb0, 2]),
    ] {
        let src = if port == "uplink" {
            ROUTER_MAC
        } else {
            pod_mac(1)
        };
        let full = tagged(src, mac, 100, 0x0800, PAYLOAD);
        for len in 14..18 {
            let what = format!("{len}-byte tagged frame");
            cases.push((port, what, full[..len].to_vec()));
        }
    }
    assert_eq!(expect_drops(DropReason::TruncatedVlan, cases), 12);
}

#[test]
fn tagged_frame_on_routed_port_is_vlan_on_routed_port() {
    let n = drops_on_routed_ports(DropReason::VlanOnRoutedPort, |port, mac| {
        let ip = valid_ipv4(port, 64);
        let src: [u8; 6] = ip[6..12].try_into().unwrap();
        let mut cases: Vec<(String, Vec<u8>)> = [0, 1, 4095]
            .into_iter()
            .map(|vid| {
                let f = tagged(src, mac, vid, 0x0800, &ip[14..]);
                (format!("IPv4 in VLAN {vid}"), f)
            })
            .collect();
        let arp = arp_request(pod_mac(1), pod_ip(1), GATEWAY);
        let f = tagged(pod_mac(1), [0xff; 6], 10, 0x0806, &arp[14..]);
        cases.push(("ARP in VLAN 10".into(), f));
        cases
    });
    assert_eq!(n, 8);
}

#[test]
fn ipv6_on_routed_port_is_unsupported_ethertype() {
    let n = drops_on_routed_ports(DropReason::UnsupportedEthertype, |port, mac| {
        let src = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
        let dst = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
        let v6 = ipv6_udp(pod_mac(1), mac, src, dst, (1000, 2000), PAYLOAD);
        // Any other ethertype to our MAC is refused the same way.
        let mut other = valid_ipv4(port, 64);
        other[12..14].copy_from_slice(&[0x88, 0xcc]);
        vec![("IPv6".into(), v6), ("LLDP ethertype".into(), other)]
    });
    assert_eq!(n, 4);
}

#[test]
fn multicast_source_mac_is_bad_source_mac() {
    let mut cases = Vec::new();
    for port in ["pod1", "uplink", "br1"] {
        for (src, what) in [
            ([0x01, 0x00, 0x5e, 0, 0, 1], "multicast source"),
            ([0xff; 6], "broadcast source"),
        ] {
            let mut f = valid_ipv4(if port == "uplink" { "uplink" } else { "pod1" }, 64);
            f[6..12].copy_from_slice(&src);
            cases.push((port, what.to_string(), f));
        }
    }
    assert_eq!(expect_drops(DropReason::BadSourceMac, cases), 6);
}

#[test]
fn unicast_to_another_mac_is_not_our_mac() {
    // Another pod's MAC on either routed port; and the uplink does not
    // answer to the gateway MAC, nor pods to the uplink's.
    let cases = [
        ("pod1", pod_mac(3), "dst MAC of pod3"),
        ("uplink", pod_mac(3), "dst MAC of pod3"),
        ("uplink", GW_MAC, "gateway MAC on the uplink"),
        ("pod1", UPLINK_MAC, "uplink MAC on a pod"),
    ]
    .map(|(port, dst, what)| {
        let mut f = valid_ipv4(port, 64);
        f[0..6].copy_from_slice(&dst);
        (port, what.to_string(), f)
    });
    assert_eq!(expect_drops(DropReason::NotOurMac, cases.into()), 4);
}

// ---------------------------------------------------------------------------
// IPv4 header.

#[test]
fn ipv4_header_shorter_than_20_bytes_is_malformed() {
    let n = drops_on_routed_ports(DropReason::MalformedIpv4, |port, _| {
        let full = valid_ipv4(port, 64);
        [0usize, 1, 12, 19]
            .into_iter()
            .map(|ip_len| {
                let f = full[..14 + ip_len].to_vec();
                (format!("{ip_len}-byte IPv4 header"), f)
            })
            .collect()
    });
    assert_eq!(n, 8);
}

#[test]
fn ipv4_ihl_below_5_is_malformed() {
    let n = drops_on_routed_ports(DropReason::MalformedIpv4, |port, _| {
        [0u8, 1, 4]
            .into_iter()
            .map(|ihl| {
                let mut f = valid_ipv4(port, 64);
                f[14] = 0x40 | ihl;
                // A checksum that verifies over the IHL*4 bytes the header
                // claims (where there are enough to hold the field).
                if ihl >= 3 {
                    fix_ipv4_checksum(&mut f, 14);
                }
                (format!("IHL {ihl}"), f)
            })
            .collect()
    });
    assert_eq!(n, 6);
}

#[test]
fn ipv4_ihl_beyond_the_frame_is_malformed() {
    let n = drops_on_routed_ports(DropReason::MalformedIpv4, |port, _| {
        // 20-byte header + 8-byte UDP header, no payload: 28 bytes present.
        let base = ipv4_with(port, 64, b"");
        assert_eq!(base.len(), 14 + 28);
        let with = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut f = base.clone();
            edit(&mut f);
            fix_ipv4_checksum(&mut f, 14);
            f
        };
        vec![
            // IHL 15 claims 60 header bytes; total length left at 28.
            ("IHL 15, total length 28".into(), with(&|f| f[14] = 0x4f)),
            // IHL 15 and total length 60: both agree, the bytes are not there.
            (
                "IHL 15, total length 60".into(),
                with(&|f| {
                    f[14] = 0x4f;
                    f[16..18].copy_from_slice(&60u16.to_be_bytes());
                }),
            ),
            // IHL 10 (40 bytes) in a frame padded to 60 bytes (46 of IPv4):
            // total length 28 is shorter than the header.
            (
                "IHL 10, total length 28, padded".into(),
                with(&|f| {
                    f[14] = 0x4a;
                    f.resize(60, 0);
                }),
            ),
        ]
    });
    assert_eq!(n, 6);
}

#[test]
fn ipv4_total_length_below_header_length_is_malformed() {
    let n = drops_on_routed_ports(DropReason::MalformedIpv4, |port, _| {
        [(5u8, 19u16), (5, 0), (5, 1), (6, 20), (6, 23)]
            .into_iter()
            .map(|(ihl, total)| {
                let f = edited_ipv4(port, |f| {
                    if ihl == 6 {
                        // A 4-byte NOP option so the header really is 24 bytes.
                        f.splice(34..34, [1, 1, 1, 1]);
                    }
                    f[14] = 0x40 | ihl;
                    f[16..18].copy_from_slice(&total.to_be_bytes());
                });
                (format!("IHL {ihl}, total length {total}"), f)
            })
            .collect()
    });
    assert_eq!(n, 10);
}

#[test]
fn ipv4_total_length_beyond_the_frame_is_malformed() {
    let n = drops_on_routed_ports(DropReason::MalformedIpv4, |port, _| {
        let real = u16::try_from(valid_ipv4(port, 64).len() - 14).unwrap();
        let mut cases: Vec<(String, Vec<u8>)> = [real + 1, real + 100, 1500, 0xffff]
            .into_iter()
            .map(|total| {
                let f = edited_ipv4(port, |f| {
                    f[16..18].copy_from_slice(&total.to_be_bytes());
                });
                (format!("total length {total} of {real}"), f)
            })
            .collect();
        // With Ethernet padding: a short datagram claiming more than the
        // padded frame holds.
        let mut f = ipv4_with(port, 64, b"x");
        f.resize(60, 0);
        f[16..18].copy_from_slice(&47u16.to_be_bytes());
        fix_ipv4_checksum(&mut f, 14);
        cases.push(("total length 47 in a padded 60-byte frame".into(), f));
        cases
    });
    assert_eq!(n, 10);
}

#[test]
fn ethernet_padding_is_trimmed_not_forwarded() {
    let mut h = Harness::new();
    for (port, _) in ROUTED {
        let f = ipv4_with(port, 64, b"x");
        assert_eq!(f.len(), 43);
        let mut padded = f.clone();
        padded.resize(60, 0xa5);
        h.send(port, padded);
        let out = h.sent("pod2");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), 43, "padding from {port} trimmed");
        assert_eq!(ipv4_of(&out[0]).2, 63);
        assert_eq!(&out[0][34..], &f[34..], "UDP untouched");
    }
    assert_eq!(h.counters().total_drops(), 0);
    h.assert_no_frame_leak();
}

#[test]
fn ipv4_wrong_version_is_malformed() {
    let n = drops_on_routed_ports(DropReason::MalformedIpv4, |port, _| {
        [6u8, 0, 15]
            .into_iter()
            .map(|version| {
                let f = edited_ipv4(port, |f| f[14] = (version << 4) | 5);
                (format!("version {version}"), f)
            })
            .collect()
    });
    assert_eq!(n, 6);
}

#[test]
fn ipv4_bad_header_checksum_is_dropped() {
    let n = drops_on_routed_ports(DropReason::BadIpv4Checksum, |port, _| {
        let good = valid_ipv4(port, 64);
        let sum = u16::from_be_bytes([good[24], good[25]]);
        let mut cases = Vec::new();
        for bad in [sum ^ 1, sum ^ 0x8000, 0, 0xffff] {
            // 0x0000 and 0xffff are the same number in one's complement:
            // skip whichever of them would be the correct checksum.
            if bad == sum || (bad | sum == 0xffff && bad & sum == 0 && (bad == 0 || sum == 0)) {
                continue;
            }
            let mut f = good.clone();
            f[24..26].copy_from_slice(&bad.to_be_bytes());
            cases.push((format!("checksum {bad:#06x} for {sum:#06x}"), f));
        }
        // A header changed after the checksum was computed.
        let mut f = good.clone();
        f[22] = 65; // TTL
        cases.push(("TTL changed under the checksum".into(), f));
        cases
    });
    assert!(n >= 8);
}

#[test]
fn ttl_0_and_1_expire_with_icmp_time_exceeded() {
    let mut h = Harness::new();
    let mut n = 0;
    for (port, mac) in ROUTED {
        for ttl in [0u8, 1] {
            let f = valid_ipv4(port, ttl);
            let src = ipv4_of(&f).0;
            h.send(port, f.clone());
            n += 1;
            assert_eq!(h.drops(DropReason::TtlExpired), n, "TTL {ttl} from {port}");
            assert!(
                h.sent("pod2").is_empty(),
                "TTL {ttl} from {port} was forwarded"
            );
            let back = h.sent(port);
            assert_eq!(back.len(), 1, "one ICMP error back out of {port}");
            let next_hop = if port == "pod1" {
                pod_mac(1)
            } else {
                ROUTER_MAC
            };
            assert_eq!(macs_of(&back[0]), (mac, next_hop));
            assert_eq!(ipv4_of(&back[0]), (NODE_IP, src, 64));
            let icmp = icmp_of(&back[0]);
            assert_eq!(
                (icmp.ty, icmp.code, icmp.rest),
                (11, 0, [0; 4]),
                "time exceeded in transit"
            );
            assert_eq!(
                &icmp.payload[..],
                &f[14..],
                "quote: the datagram as received"
            );
            // Internetwork control precedence, as Linux sets on ICMP errors.
            assert_eq!(back[0][15], 0xc0);
            assert!(h.all_sent().is_empty());
        }
    }
    let c = h.counters();
    assert_eq!(
        (c.icmp_errors, c.routed, c.total_drops()),
        (4, 4, 4),
        "the errors are routed, the originals dropped"
    );
    // TTL 1 to the gateway itself is delivered, not expired: ping answers.
    h.send("pod1", ping(pod_mac(1), GW_MAC, pod_ip(1), GATEWAY, 1, 3));
    let back = h.sent("pod1");
    assert_eq!(back.len(), 1);
    assert_eq!(ipv4_of(&back[0]), (GATEWAY, pod_ip(1), 64));
    assert_eq!(icmp_of(&back[0]).ty, 0);
    assert_eq!(h.drops(DropReason::TtlExpired), 4);
    h.assert_no_frame_leak();
}

// ---------------------------------------------------------------------------
// ARP.

#[test]
fn baseline_arp_request_for_gateway_is_answered() {
    let mut h = Harness::new();
    h.send("pod1", arp_request(pod_mac(1), pod_ip(1), GATEWAY));
    let out = h.sent("pod1");
    assert_eq!(out.len(), 1);
    // Every field of the reply, byte for byte and through etherparse.
    assert_arp_reply(&out[0], 1, GATEWAY);
    assert_eq!(h.counters().arp_replies, 1);
    assert_eq!(h.counters().total_drops(), 0);
    h.assert_no_frame_leak();
}

#[test]
fn arp_truncated_is_malformed_arp() {
    let mut h = Harness::new();
    let full = arp_request(pod_mac(1), pod_ip(1), GATEWAY);
    for arp_len in [0usize, 1, 7, 8, 20, 27] {
        let f = full[..14 + arp_len].to_vec();
        expect_drop(
            &mut h,
            "pod1",
            f,
            DropReason::MalformedArp,
            &format!("{arp_len}-byte ARP"),
        );
    }
    assert_eq!(h.drops(DropReason::MalformedArp), 6);
    // ARP on the uplink belongs to the node's kernel: not parsed, whatever its shape.
    let mut f = full[..14 + 7].to_vec();
    f[6..12].copy_from_slice(&ROUTER_MAC);
    expect_drop(&mut h, "uplink", f, DropReason::ArpNotForUs, "7-byte ARP");
    assert_eq!(h.drops(DropReason::MalformedArp), 6);
    h.assert_no_frame_leak();
}

#[test]
fn arp_not_ethernet_ipv4_is_malformed_arp() {
    let mut h = Harness::new();
    let full = arp_request(pod_mac(1), pod_ip(1), GATEWAY);
    // Hardware length 8 in a 28-byte body (the addresses cannot fit).
    let mut hlen8 = full.clone();
    hlen8[18] = 8;
    // Hardware length 8 with a body long enough for 8-byte addresses.
    let mut hlen8_long = full[..22].to_vec();
    hlen8_long[18] = 8;
    hlen8_long.extend_from_slice(&[0x02, 0, 0, 0, 0x01, 1, 0, 0]);
    hlen8_long.extend_from_slice(&pod_ip(1).octets());
    hlen8_long.extend_from_slice(&[0; 8]);
    hlen8_long.extend_from_slice(&GATEWAY.octets());
    assert_eq!(hlen8_long.len(), 14 + 8 + 2 * (8 + 4));
    let mut cases = vec![
        (hlen8, "hardware length 8, 28 bytes"),
        (hlen8_long, "hardware length 8, 32 bytes"),
    ];
    for (at, value, what) in [
        (14, 0x00, "hardware type 6 (IEEE 802)"),
        (16, 0x86, "protocol type 0x86dd"),
        (19, 16, "protocol length 16"),
        (19, 0, "protocol length 0"),
        (18, 0, "hardware length 0"),
    ] {
        let mut f = full.clone();
        f[at] = value;
        if at == 14 {
            f[15] = 6;
        }
        if at == 16 {
            f[17] = 0xdd;
        }
        // Keep the body long enough for whatever lengths it now claims.
        f.resize(14 + 8 + 2 * (6 + 16), 0);
        cases.push((f, what));
    }
    for (f, what) in cases {
        expect_drop(&mut h, "pod1", f, DropReason::MalformedArp, what);
    }
    assert_eq!(h.drops(DropReason::MalformedArp), 7);
    assert_eq!(h.counters().arp_replies, 0);
    h.assert_no_frame_leak();
}

// ---------------------------------------------------------------------------
// Property tests: arbitrary and mutated frames on arbitrary ports.

/// Valid frames for the mutation test, each with the port it belongs on.
fn base_frames() -> Vec<(usize, Vec<u8>)> {
    let remote_inner = udp(
        REMOTE_VTEP_MAC,
        VTEP_MAC,
        REMOTE_POD,
        pod_ip(2),
        64,
        PAYLOAD,
    );
    let bridged_ip = udp(
        [0x02, 0, 0, 0, 0xb0, 1],
        [0x02, 0, 0, 0, 0xb0, 2],
        pod_ip(1),
        pod_ip(2),
        64,
        PAYLOAD,
    );
    vec![
        (0, pod_udp(1, pod_ip(2), 64, PAYLOAD)),
        (0, pod_udp(1, REMOTE_POD, 64, PAYLOAD)),
        (0, pod_udp(1, pod_ip(3), 1, PAYLOAD)),
        (0, ping(pod_mac(1), GW_MAC, pod_ip(1), GATEWAY, 64, 1)),
        (0, arp_request(pod_mac(1), pod_ip(1), GATEWAY)),
        (3, vxlan_from_remote(&remote_inner, VNI)),
        (
            3,
            udp(ROUTER_MAC, UPLINK_MAC, EXTERNAL, pod_ip(1), 64, PAYLOAD),
        ),
        (
            4,
            tagged(
                [0x02, 0, 0, 0, 0xb0, 1],
                [0x02, 0, 0, 0, 0xb0, 2],
                100,
                0x0800,
                &bridged_ip[14..],
            ),
        ),
    ]
}

/// The MAC the switch uses as source on routed port `port`.
fn own_mac(port: &str) -> Option<[u8; 6]> {
    match port {
        "pod1" | "pod2" | "pod3" => Some(GW_MAC),
        "uplink" => Some(UPLINK_MAC),
        _ => None,
    }
}

/// Checks a frame the switch transmitted on a routed port: from the switch's
/// MAC, ARP or IPv4, and if IPv4 a valid header (etherparse) whose total
/// length is the frame's; for our own VXLAN, the inner header too.
fn check_routed_output(port: &str, mac: [u8; 6], f: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(f.len() >= 14, "{port}: {}-byte frame", f.len());
    prop_assert_eq!(macs_of(f).0, mac, "{}: source MAC", port);
    match u16::from_be_bytes([f[12], f[13]]) {
        0x0806 => {
            prop_assert!(port != "uplink", "ARP out of the uplink");
            prop_assert_eq!(f.len(), 42);
        }
        0x0800 => {
            let ip = Ipv4HeaderSlice::from_slice(&f[14..]).map_err(|e| {
                TestCaseError::fail(format!("{port}: etherparse rejects IPv4 header: {e:?}"))
            })?;
            let h = ip.to_header();
            prop_assert_eq!(checksum(ip.slice()), 0, "{}: IPv4 header checksum", port);
            // etherparse's header model has no reserved flag bit, so its own
            // checksum only applies to headers without it.
            if f[14 + 6] & 0x80 == 0 {
                prop_assert_eq!(
                    h.header_checksum,
                    h.calc_header_checksum(),
                    "{}: IPv4 header checksum",
                    port
                );
            }
            prop_assert_eq!(
                usize::from(h.total_len),
                f.len() - 14,
                "{}: IPv4 total length",
                port
            );
            prop_assert!(h.time_to_live >= 1, "{}: forwarded with TTL 0", port);
            let ours = port == "uplink"
                && ip.source_addr() == NODE_IP
                && ip.destination_addr() == REMOTE_VTEP;
            if ours {
                let l4 = 14 + ip.slice().len();
                let u = UdpHeaderSlice::from_slice(&f[l4..]).map_err(|e| {
                    TestCaseError::fail(format!("our VXLAN without UDP header: {e:?}"))
                })?;
                prop_assert_eq!(u.destination_port(), 4789);
                prop_assert_eq!(usize::from(u.length()), f.len() - l4);
                prop_assert_eq!(&f[l4 + 8..l4 + 16], &[0x08, 0, 0, 0, 0, 0, 42, 0]);
                let inner = &f[l4 + 16..];
                prop_assert!(inner.len() >= 34);
                prop_assert_eq!(&inner[..12], &[REMOTE_VTEP_MAC, VTEP_MAC].concat()[..]);
                prop_assert_eq!(&inner[12..14], &[0x08, 0x00]);
                let iip = Ipv4HeaderSlice::from_slice(&inner[14..])
                    .map_err(|e| TestCaseError::fail(format!("inner IPv4 header: {e:?}")))?;
                let ih = iip.to_header();
                prop_assert_eq!(checksum(iip.slice()), 0, "inner IPv4 header checksum");
                if inner[14 + 6] & 0x80 == 0 {
                    prop_assert_eq!(
                        ih.header_checksum,
                        ih.calc_header_checksum(),
                        "inner IPv4 header checksum"
                    );
                }
                prop_assert_eq!(
                    usize::from(ih.total_len),
                    inner.len() - 14,
                    "inner IPv4 total length"
                );
            }
        }
        other => prop_assert!(
            false,
            "{}: ethertype {:#06x} out of a routed port",
            port,
            other
        ),
    }
    Ok(())
}

/// Injects every (port, frame), runs the worker, and checks the invariants.
fn run_and_check(inputs: &[(usize, Vec<u8>)]) -> Result<(), TestCaseError> {
    let mut h = Harness::new();
    for (port, frame) in inputs {
        h.port(PORTS[*port]).inject(frame.clone());
    }
    h.run();
    let received = h.received();
    prop_assert_eq!(received, inputs.len() as u64, "every frame was received");
    let transmitted = h.transmitted();
    let drops = h.counters().total_drops();
    prop_assert!(
        drops + transmitted >= received,
        "{} received but only {} transmitted + {} drops counted",
        received,
        transmitted,
        drops
    );
    let mut seen = 0u64;
    for port in PORTS {
        for f in h.sent(port) {
            seen += 1;
            if let Some(mac) = own_mac(port) {
                check_routed_output(port, mac, &f)?;
            }
        }
    }
    prop_assert_eq!(
        seen,
        transmitted,
        "port counters match the frames on the wire"
    );
    h.assert_no_frame_leak();
    Ok(())
}

/// A frame of random bytes, or random bytes behind an Ethernet header
/// addressed to the port (so they reach the L3 stages).
fn random_frame() -> impl Strategy<Value = (usize, Vec<u8>)> {
    let raw = (0..PORTS.len(), prop::collection::vec(any::<u8>(), 0..1600));
    let headed = (
        0..PORTS.len(),
        prop::sample::select(vec![0x0800u16, 0x0806, 0x8100, 0x86dd]),
        prop::collection::vec(any::<u8>(), 0..1586),
    )
        .prop_map(|(port, ethertype, body)| {
            let dst = own_mac(PORTS[port]).unwrap_or([0xff; 6]);
            let mut f = dst.to_vec();
            f.extend_from_slice(&pod_mac(1));
            f.extend_from_slice(&ethertype.to_be_bytes());
            f.extend_from_slice(&body);
            (port, f)
        });
    prop_oneof![raw, headed]
}

/// Recomputes the IPv4 header checksum at `l3` if a plausible header is there.
fn refix_ipv4(f: &mut [u8], l3: usize) {
    if f.len() >= l3 + 20 && f[l3 - 2..l3] == [0x08, 0x00] {
        let ihl = usize::from(f[l3] & 0x0f) * 4;
        if ihl >= 20 && f.len() >= l3 + ihl {
            fix_ipv4_checksum(f, l3);
        }
    }
}

#[derive(Debug, Clone)]
struct Mutation {
    base: usize,
    /// `None`: the frame's own port.
    port: Option<usize>,
    flips: Vec<(prop::sample::Index, u8)>,
    cut: Option<prop::sample::Index>,
    /// Recompute IPv4 checksums (outer and inner) and zero the VXLAN UDP
    /// checksum after mutating, so that mutations get past the checks.
    refix: bool,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        0..base_frames().len(),
        prop::option::of(0..PORTS.len()),
        prop::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 0..5),
        prop::option::of(any::<prop::sample::Index>()),
        any::<bool>(),
    )
        .prop_map(|(base, port, flips, cut, refix)| Mutation {
            base,
            port,
            flips,
            cut,
            refix,
        })
}

fn apply(m: &Mutation) -> (usize, Vec<u8>) {
    let (own_port, mut f) = base_frames().swap_remove(m.base);
    for (at, xor) in &m.flips {
        let i = at.index(f.len());
        f[i] ^= xor;
    }
    if let Some(cut) = &m.cut {
        f.truncate(cut.index(f.len() + 1));
    }
    if m.refix {
        refix_ipv4(&mut f, 14);
        if f.len() >= 42 && f[23] == 17 {
            f[40] = 0;
            f[41] = 0;
        }
        refix_ipv4(&mut f, 64);
    }
    (m.port.unwrap_or(own_port), f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn prop_random_frames_never_panic_or_leak(frames in prop::collection::vec(random_frame(), 1..8)) {
        run_and_check(&frames)?;
    }

    #[test]
    fn prop_mutated_frames_never_panic_or_leak(muts in prop::collection::vec(mutation(), 1..8)) {
        let frames: Vec<(usize, Vec<u8>)> = muts.iter().map(apply).collect();
        run_and_check(&frames)?;
    }
}

/// The unmutated base frames do what they should, so the mutation test
/// starts from frames that reach every stage.
#[test]
fn base_frames_reach_their_stages() {
    let mut h = Harness::new();
    for (port, f) in base_frames() {
        h.send(PORTS[port], f);
    }
    let c = h.counters().clone();
    assert_eq!(c.vxlan_encap, 1, "pod1 -> remote pod");
    assert_eq!(c.vxlan_decap, 1, "VXLAN from node2");
    assert_eq!(c.echo_replies, 1);
    assert_eq!(c.arp_replies, 1);
    assert_eq!(c.icmp_errors, 1, "TTL 1");
    assert_eq!(c.flooded, 1, "bridged frame");
    assert_eq!(c.drops_of(DropReason::TtlExpired), 1);
    assert_eq!(c.total_drops(), 1);
    assert_eq!(
        h.sent("pod2").len(),
        2,
        "pod1's UDP and node2's decapsulated UDP"
    );
    assert_eq!(
        h.sent("pod1").len(),
        4,
        "echo reply, ARP reply, ICMP error, external UDP"
    );
    assert_eq!(h.sent("uplink").len(), 1);
    assert_eq!((h.sent("br2").len(), h.sent("br3").len()), (1, 1));
    h.assert_no_frame_leak();
}
