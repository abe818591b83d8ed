//! IPv4 routing: pod to pod, pod to the uplink, longest prefix match, the
//! checks of ip4-input (spoofing, unroutable destinations, padding) and
//! fragments.
//!
//! A routed frame must equal the input frame with exactly three changes:
//! the MACs, TTL - 1 and the IPv4 header checksum. `routed_frame()` builds that
//! expectation with etherparse, independently of the datapath's RFC 1624
//! update, and the tests compare whole frames.
mod common;
use common::*;

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{Ipv4Header, NetSlice, PacketBuilder, TransportSlice};
use xvs_control::state::{MacAddr, RouteSpec};
use xvs_vswitch::drop::DropReason;

#[test]
fn pod_to_pod_udp_rewrites_only_macs_and_ttl() {
    let mut h = Harness::new();
    let payload = b"pod one to pod two, byte for byte";
    let input = pod_udp(1, pod_ip(2), 64, payload);
    let out = send_expect_one(&mut h, "pod1", input.clone(), "pod2");
    assert_eq!(out, routed_frame(&input, GW_MAC, pod_mac(2)));

    // The same, field by field, through etherparse.
    assert_eq!(macs_of(&out), (GW_MAC, pod_mac(2)));
    assert_eq!(ipv4_of(&out), (pod_ip(1), pod_ip(2), 63));
    let p = parse_checked(&out);
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        panic!("not UDP: {:?}", p.transport)
    };
    assert_eq!((udp.source_port(), udp.destination_port()), (40000, 5001));
    assert_eq!(udp.payload(), payload);
    assert_eq!(out.len(), input.len());

    let c = h.counters();
    assert_eq!(c.routed, 1);
    assert_eq!(c.total_drops(), 0);
    h.assert_no_frame_leak();
}

#[test]
fn ttl_is_decremented_by_exactly_one_at_every_value() {
    let mut h = Harness::new();
    for ttl in [2u8, 3, 17, 64, 128, 200, 255] {
        let input = pod_udp(3, pod_ip(1), ttl, &[ttl; 11]);
        let out = send_expect_one(&mut h, "pod3", input.clone(), "pod1");
        assert_eq!(out, routed_frame(&input, GW_MAC, pod_mac(1)), "ttl {ttl}");
        assert_eq!(ipv4_of(&out).2, ttl - 1);
    }
    assert_eq!(h.counters().routed, 7);
    assert_eq!(h.counters().total_drops(), 0);
    h.assert_no_frame_leak();
}

#[test]
fn pod_to_pod_tcp_syn_keeps_a_valid_tcp_checksum() {
    let mut h = Harness::new();
    let input = tcp_syn(pod_mac(2), GW_MAC, pod_ip(2), pod_ip(3), 64);
    let out = send_expect_one(&mut h, "pod2", input.clone(), "pod3");
    assert_eq!(out, routed_frame(&input, GW_MAC, pod_mac(3)));
    // parse_checked (in send_expect_one) verified the TCP checksum; check the
    // segment is still the SYN that was sent.
    let p = parse_checked(&out);
    let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
        panic!("not TCP")
    };
    assert!(tcp.syn() && !tcp.ack());
    assert_eq!((tcp.source_port(), tcp.destination_port()), (40001, 80));
    assert_eq!(tcp.sequence_number(), 1000);
    assert_eq!(ipv4_of(&out), (pod_ip(2), pod_ip(3), 63));
    assert_eq!(h.counters().routed, 1);
    h.assert_no_frame_leak();
}

#[test]
fn pod_to_external_goes_out_the_uplink_to_the_router() {
    let mut h = Harness::new();
    let input = pod_udp(1, EXTERNAL, 64, b"to the world");
    let out = send_expect_one(&mut h, "pod1", input.clone(), "uplink");
    assert_eq!(macs_of(&out), (UPLINK_MAC, ROUTER_MAC));
    assert_eq!(ROUTER_MAC, [0x02, 0, 0, 0, 0xfe, 0x01]);
    assert_eq!(out, routed_frame(&input, UPLINK_MAC, ROUTER_MAC));
    assert_eq!(ipv4_of(&out), (pod_ip(1), EXTERNAL, 63));
    assert_eq!(h.counters().routed, 1);
    h.assert_no_frame_leak();
}

#[test]
fn external_to_pod_comes_in_the_uplink() {
    let mut h = Harness::new();
    let input = udp(ROUTER_MAC, UPLINK_MAC, EXTERNAL, pod_ip(2), 50, b"reply");
    let out = send_expect_one(&mut h, "uplink", input.clone(), "pod2");
    assert_eq!(out, routed_frame(&input, GW_MAC, pod_mac(2)));
    assert_eq!(ipv4_of(&out), (EXTERNAL, pod_ip(2), 49));
    h.assert_no_frame_leak();
}

#[test]
fn longest_prefix_wins() {
    let mac = |b: u8| [0x02, 0, 0, 0, 0xfe, b];
    let mut s = state();
    for (prefix, port, m) in [
        ("172.16.5.0/24", "uplink", mac(0x05)),
        ("172.16.5.128/25", "uplink", mac(0x06)),
        ("0.0.0.0/0", "uplink", mac(0x00)),
        ("192.0.2.0/24", "pod3", pod_mac(3)),
    ] {
        s.routes.push(RouteSpec {
            prefix: prefix.parse().unwrap(),
            port: port.into(),
            next_hop_mac: MacAddr(m),
        });
    }
    let mut h = Harness::with(s, Default::default());
    // Out of the uplink to next hop `m`.
    let up = |dst: Ipv4Addr, m: [u8; 6]| (dst, "uplink", UPLINK_MAC, m);
    let cases: [(Ipv4Addr, &str, [u8; 6], [u8; 6]); 7] = [
        up(EXTERNAL, mac(0x01)),                       // /16
        up(Ipv4Addr::new(172, 16, 5, 9), mac(0x05)),   // /24
        up(Ipv4Addr::new(172, 16, 5, 127), mac(0x05)), // /24
        up(Ipv4Addr::new(172, 16, 5, 128), mac(0x06)), // /25
        up(Ipv4Addr::new(172, 17, 0, 1), mac(0x00)),   // /0
        (pod_ip(2), "pod2", GW_MAC, pod_mac(2)),       // /32 beats /0
        (Ipv4Addr::new(192, 0, 2, 77), "pod3", GW_MAC, pod_mac(3)),
    ];
    for (dst, want_port, src_mac, dst_mac) in cases {
        let input = pod_udp(1, dst, 64, b"lpm");
        h.send("pod1", input.clone());
        let (port, out) = only_output(&mut h);
        assert_eq!(port, want_port, "{dst}");
        assert_eq!(out, routed_frame(&input, src_mac, dst_mac), "{dst}");
    }
    // The remote node's /24 beats the default route: into the overlay.
    let out = send_expect_one(
        &mut h,
        "pod1",
        pod_udp(1, REMOTE_POD, 64, b"overlay"),
        "uplink",
    );
    assert_eq!(macs_of(&out), (UPLINK_MAC, UNDERLAY_MAC));
    assert_eq!(ipv4_of(&out), (NODE_IP, REMOTE_VTEP, 64));
    // And with a default route nothing is unroutable.
    h.send("pod1", pod_udp(1, UNROUTABLE, 64, b"default"));
    let (port, out) = only_output(&mut h);
    assert_eq!((port.as_str(), macs_of(&out).1), ("uplink", mac(0x00)));

    assert_eq!(h.counters().routed, 9);
    assert_eq!(h.counters().total_drops(), 0);
    h.assert_no_frame_leak();
}

#[test]
fn spoofed_source_from_a_pod_is_dropped() {
    let mut h = Harness::new();
    for src in [pod_ip(2), Ipv4Addr::new(10, 244, 1, 99), GATEWAY, EXTERNAL] {
        h.send(
            "pod1",
            udp(pod_mac(1), GW_MAC, src, pod_ip(3), 64, b"spoof"),
        );
    }
    assert_dropped_only(&mut h, DropReason::SpoofedSource, 4);
    assert_eq!(h.counters().icmp_errors, 0);
    // The pod's own address still works.
    h.send("pod1", pod_udp(1, pod_ip(3), 64, b"honest"));
    assert_eq!(only_output(&mut h).0, "pod3");
    h.assert_no_frame_leak();
}

#[test]
fn broadcast_multicast_and_unspecified_destinations_are_not_routed() {
    let mut h = Harness::new();
    let dsts = [
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 251),
        Ipv4Addr::new(239, 1, 2, 3),
        Ipv4Addr::UNSPECIFIED,
    ];
    for dst in dsts {
        h.send("pod1", pod_udp(1, dst, 64, b"nope"));
    }
    // TTL 1 too: no ICMP error about an unroutable destination either.
    h.send("pod1", pod_udp(1, Ipv4Addr::BROADCAST, 1, b"nope"));
    assert_dropped_only(&mut h, DropReason::NotRoutable, 5);
    assert_eq!(h.counters().icmp_errors, 0);
    h.assert_no_frame_leak();
}

#[test]
fn ethernet_padding_is_trimmed() {
    let mut h = Harness::new();
    let input = pod_udp(1, pod_ip(2), 64, b"hi");
    assert_eq!(input.len(), 44);
    let mut padded = input.clone();
    padded.resize(60, 0xab);
    let out = send_expect_one(&mut h, "pod1", padded, "pod2");
    assert_eq!(out.len(), 44, "padding must not be forwarded");
    assert_eq!(out, routed_frame(&input, GW_MAC, pod_mac(2)));
    let p = parse_checked(&out);
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        panic!("not UDP")
    };
    assert_eq!(udp.payload(), b"hi");
    h.assert_no_frame_leak();
}

#[test]
fn ip_fragments_are_routed_unchanged_but_for_the_ttl() {
    let mut h = Harness::new();
    let header = |mf: bool, offset_units: u16| {
        fragment_header(pod_ip(1), pod_ip(2), 64, 0x4242, mf, offset_units)
    };
    // First fragment: a UDP header and the start of the data.
    let mut first = vec![0x9c, 0x40, 0x13, 0x89, 0x00, 0x40, 0x00, 0x00];
    first.extend_from_slice(&[0x11; 24]);
    let frags = [
        raw_ipv4(pod_mac(1), GW_MAC, header(true, 0), &first),
        // A middle fragment (offset 32 bytes) and the last one.
        raw_ipv4(pod_mac(1), GW_MAC, header(true, 4), &[0x22; 16]),
        raw_ipv4(pod_mac(1), GW_MAC, header(false, 6), &[0x33; 12]),
    ];
    for f in &frags {
        let out = send_expect_one(&mut h, "pod1", f.clone(), "pod2");
        assert_eq!(out, routed_frame(f, GW_MAC, pod_mac(2)));
        let p = parse_checked(&out);
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4")
        };
        let (hin, _) = Ipv4Header::from_slice(&f[14..]).unwrap();
        let hout = ip.header();
        assert_eq!(hout.identification(), 0x4242);
        assert_eq!(hout.more_fragments(), hin.more_fragments);
        assert_eq!(hout.fragments_offset(), hin.fragment_offset);
        assert!(!hout.dont_fragment());
        assert_eq!(hout.ttl(), 63);
    }
    assert_eq!(h.counters().routed, 3);
    assert_eq!(h.counters().total_drops(), 0);
    h.assert_no_frame_leak();
}

#[test]
fn tagged_or_foreign_frames_on_a_pod_port_are_dropped() {
    let mut h = Harness::new();
    // An 802.1Q tagged frame on a routed port.
    let b = PacketBuilder::ethernet2(pod_mac(1), GW_MAC)
        .single_vlan(etherparse::VlanId::try_new(10).unwrap())
        .ipv4(pod_ip(1).octets(), pod_ip(2).octets(), 64)
        .udp(1, 2);
    let mut tagged = Vec::new();
    b.write(&mut tagged, b"tagged").unwrap();
    h.send("pod1", tagged);
    // IPv6 to the gateway MAC.
    let src = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    let dst = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
    let v6 = ipv6_udp(pod_mac(1), GW_MAC, src, dst, (1, 2), b"v6");
    h.send("pod1", v6);
    assert_nothing_sent(&mut h);
    assert_eq!(h.drops(DropReason::VlanOnRoutedPort), 1);
    assert_eq!(h.drops(DropReason::UnsupportedEthertype), 1);
    assert_eq!(h.counters().total_drops(), 2);
    h.assert_no_frame_leak();
}

#[test]
fn bad_ipv4_headers_are_dropped() {
    let mut h = Harness::new();
    let good = pod_udp(1, pod_ip(2), 64, b"payload");

    let mut bad_sum = good.clone();
    bad_sum[14 + 10] ^= 0x01;
    h.send("pod1", bad_sum);

    // Total length longer than the frame.
    let mut too_long = good.clone();
    let len = u16::from_be_bytes([too_long[16], too_long[17]]) + 10;
    too_long[16..18].copy_from_slice(&len.to_be_bytes());
    fix_ipv4_checksum(&mut too_long, 14);
    h.send("pod1", too_long);

    // IHL 4 (16-byte header).
    let mut short_ihl = good.clone();
    short_ihl[14] = 0x44;
    fix_ipv4_checksum(&mut short_ihl, 14);
    h.send("pod1", short_ihl);

    // Cut inside the header.
    h.send("pod1", good[..14 + 12].to_vec());

    assert_nothing_sent(&mut h);
    assert_eq!(h.drops(DropReason::BadIpv4Checksum), 1);
    assert_eq!(h.drops(DropReason::MalformedIpv4), 3);
    assert_eq!(h.counters().total_drops(), 4);
    assert_eq!(h.counters().icmp_errors, 0);
    h.assert_no_frame_leak();
}

#[test]
fn martian_sources_from_the_uplink_are_dropped() {
    // With a default route every destination is routable: nothing below is
    // dropped for lack of a route.
    let mut h = Harness::with(state_with_default_route(), Default::default());
    let cases = [
        (Ipv4Addr::new(127, 0, 0, 1), "loopback source"),
        (Ipv4Addr::new(0, 1, 2, 3), "\"this network\" source"),
        (Ipv4Addr::new(240, 0, 0, 1), "class E source"),
        // Reverse-path check: our own pod CIDR cannot be behind the uplink.
        (Ipv4Addr::new(10, 244, 1, 50), "source in our pod CIDR"),
        (pod_ip(1), "source of one of our pods"),
    ];
    for (src, what) in cases {
        for ttl in [64, 1] {
            let f = udp(ROUTER_MAC, UPLINK_MAC, src, pod_ip(2), ttl, b"martian");
            let what = format!("{what} {src}, TTL {ttl}");
            expect_drop(&mut h, "uplink", f, DropReason::MartianAddress, &what);
        }
    }
    assert_eq!(h.drops(DropReason::MartianAddress), 10);

    // Ordinary outside sources still get in.
    for src in [EXTERNAL, UNROUTABLE] {
        let input = udp(ROUTER_MAC, UPLINK_MAC, src, pod_ip(2), 64, b"fine");
        let out = send_expect_one(&mut h, "uplink", input.clone(), "pod2");
        assert_eq!(out, routed_frame(&input, GW_MAC, pod_mac(2)));
    }
    assert_eq!(h.counters().total_drops(), 10);
    h.assert_no_frame_leak();
}

#[test]
fn martian_destinations_are_dropped() {
    let mut h = Harness::with(state_with_default_route(), Default::default());
    let dsts = [
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(240, 0, 0, 1),
        Ipv4Addr::new(0, 1, 2, 3),
        Ipv4Addr::new(255, 255, 255, 254),
    ];
    for dst in dsts {
        for ttl in [64, 1] {
            let what = format!("to {dst}, TTL {ttl}");
            let f = pod_udp(1, dst, ttl, b"martian");
            expect_drop(&mut h, "pod1", f, DropReason::MartianAddress, &what);
        }
        let f = udp(ROUTER_MAC, UPLINK_MAC, EXTERNAL, dst, 64, b"martian");
        let what = format!("to {dst} from outside");
        expect_drop(&mut h, "uplink", f, DropReason::MartianAddress, &what);
    }
    assert_eq!(h.drops(DropReason::MartianAddress), 12);
    // The default route itself works.
    let out = send_expect_one(&mut h, "pod1", pod_udp(1, UNROUTABLE, 64, b"x"), "uplink");
    assert_eq!(macs_of(&out), (UPLINK_MAC, DEFAULT_ROUTER_MAC));
    assert_eq!(h.counters().total_drops(), 12);
    h.assert_no_frame_leak();
}

#[test]
fn a_pod_sending_from_a_martian_source_is_a_martian_not_a_spoofer() {
    let mut h = Harness::new();
    // The martian check comes before the pod's source check.
    for src in [
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(240, 0, 0, 1),
    ] {
        let f = udp(pod_mac(1), GW_MAC, src, pod_ip(2), 64, b"dhcp-ish");
        let what = format!("pod1 from {src}");
        expect_drop(&mut h, "pod1", f, DropReason::MartianAddress, &what);
    }
    assert_eq!(h.drops(DropReason::MartianAddress), 3);
    assert_eq!(h.drops(DropReason::SpoofedSource), 0);
    h.assert_no_frame_leak();
}
