//! The pod gateway: proxy ARP for 169.254.1.1 (and the proxy-ARP list),
//! ICMP echo to the gateway, and what the gateway refuses.
mod common;
use common::*;

use std::net::Ipv4Addr;

use etherparse::{IcmpEchoHeader, Icmpv4Type, PacketBuilder, TransportSlice};
use xvs_vswitch::drop::DropReason;

/// The proxy-ARP address of the harness state.
const PROXY: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);

/// An ARP packet (any opcode) from `sender`, Ethernet to `eth_dst`.
fn arp(
    eth_dst: [u8; 6],
    op: u16,
    sender_mac: [u8; 6],
    sender: Ipv4Addr,
    target_mac: [u8; 6],
    target: Ipv4Addr,
) -> Vec<u8> {
    let mut f = arp_request(sender_mac, sender, target);
    f[0..6].copy_from_slice(&eth_dst);
    f[20..22].copy_from_slice(&op.to_be_bytes());
    f[32..38].copy_from_slice(&target_mac);
    f
}

/// Sends `request` on pod `n`'s port and checks that the only answer is
/// the gateway's ARP reply for `ip`, back on that port.
fn expect_arp_reply(h: &mut Harness, n: u8, request: Vec<u8>, ip: Ipv4Addr) {
    let port = format!("pod{n}");
    let out = send_expect_one(h, &port, request, &port);
    assert_arp_reply(&out, n, ip);
}

/// Nothing was answered or sent: `n` ARP packets dropped as not for us,
/// no other drops, no ARP replies, no frame leaked.
fn assert_arp_ignored(h: &mut Harness, n: u64) {
    assert_dropped_only(h, DropReason::ArpNotForUs, n);
    assert_eq!(h.counters().arp_replies, 0);
    h.assert_no_frame_leak();
}

#[test]
fn arp_for_the_gateway_is_answered_on_the_in_port_only() {
    let mut h = Harness::new();
    let request = arp_request(pod_mac(1), pod_ip(1), GATEWAY);
    expect_arp_reply(&mut h, 1, request, GATEWAY);
    assert_eq!(h.counters().arp_replies, 1);
    assert_eq!(h.counters().total_drops(), 0);

    // Each pod gets its own answer on its own port.
    let request = arp_request(pod_mac(3), pod_ip(3), GATEWAY);
    expect_arp_reply(&mut h, 3, request, GATEWAY);
    assert_eq!(h.counters().arp_replies, 2);
    h.assert_no_frame_leak();
}

#[test]
fn arp_for_a_proxy_arp_address_is_answered() {
    let mut h = Harness::new();
    expect_arp_reply(&mut h, 2, arp_request(pod_mac(2), pod_ip(2), PROXY), PROXY);
    assert_eq!(h.counters().arp_replies, 1);
    h.assert_no_frame_leak();
}

#[test]
fn padded_and_unicast_arp_requests_are_answered() {
    let mut h = Harness::new();
    // A request padded to the 60-byte minimum: the reply is 42 bytes.
    let mut padded = arp_request(pod_mac(1), pod_ip(1), GATEWAY);
    padded.resize(60, 0x5a);
    expect_arp_reply(&mut h, 1, padded, GATEWAY);

    // Linux re-validates a stale neighbour with a unicast request.
    let unicast = arp(GW_MAC, 1, pod_mac(1), pod_ip(1), GW_MAC, GATEWAY);
    expect_arp_reply(&mut h, 1, unicast, GATEWAY);
    assert_eq!(h.counters().arp_replies, 2);
    h.assert_no_frame_leak();
}

#[test]
fn arp_for_other_addresses_is_not_answered() {
    let mut h = Harness::new();
    // Another pod's address: pods reach each other through the gateway.
    h.send("pod1", arp_request(pod_mac(1), pod_ip(1), pod_ip(2)));
    // Something on the outside.
    h.send("pod1", arp_request(pod_mac(1), pod_ip(1), EXTERNAL));
    // The node IP.
    h.send("pod1", arp_request(pod_mac(1), pod_ip(1), NODE_IP));
    assert_arp_ignored(&mut h, 3);
}

#[test]
fn a_pod_probing_or_announcing_its_own_address_is_not_answered() {
    let mut h = Harness::new();
    // RFC 5227 probe: sender address 0.0.0.0, target the pod's own.
    h.send(
        "pod1",
        arp_request(pod_mac(1), Ipv4Addr::UNSPECIFIED, pod_ip(1)),
    );
    // Gratuitous ARP request: sender = target = own address.
    h.send("pod1", arp_request(pod_mac(1), pod_ip(1), pod_ip(1)));
    // Gratuitous ARP reply, broadcast.
    h.send(
        "pod1",
        arp([0xff; 6], 2, pod_mac(1), pod_ip(1), [0xff; 6], pod_ip(1)),
    );
    assert_arp_ignored(&mut h, 3);
}

#[test]
fn a_pod_whose_address_is_the_proxy_address_is_not_answered() {
    // A pod that owns an address on the proxy-ARP list probes for it: the
    // switch must not claim the pod's own address.
    let mut s = state();
    s.proxy_arp.push(pod_ip(2));
    let mut h = Harness::with(s, Default::default());
    h.send("pod2", arp_request(pod_mac(2), pod_ip(2), pod_ip(2)));
    assert_nothing_sent(&mut h);
    assert_eq!(h.drops(DropReason::ArpNotForUs), 1);
    // Another pod asking for it is answered.
    let request = arp_request(pod_mac(1), pod_ip(1), pod_ip(2));
    expect_arp_reply(&mut h, 1, request, pod_ip(2));
    h.assert_no_frame_leak();
}

#[test]
fn arp_on_the_uplink_is_left_to_the_kernel() {
    let mut h = Harness::new();
    h.send("uplink", arp_request(ROUTER_MAC, EXTERNAL, GATEWAY));
    h.send("uplink", arp_request(ROUTER_MAC, EXTERNAL, NODE_IP));
    h.send(
        "uplink",
        arp(UPLINK_MAC, 1, ROUTER_MAC, EXTERNAL, [0; 6], PROXY),
    );
    assert_arp_ignored(&mut h, 3);
}

#[test]
fn an_arp_reply_to_us_is_not_answered() {
    let mut h = Harness::new();
    let reply = arp(GW_MAC, 2, pod_mac(1), pod_ip(1), GW_MAC, GATEWAY);
    h.send("pod1", reply);
    assert_arp_ignored(&mut h, 1);
}

#[test]
fn malformed_arp_is_dropped() {
    let mut h = Harness::new();
    // Cut short.
    h.send(
        "pod1",
        arp_request(pod_mac(1), pod_ip(1), GATEWAY)[..30].to_vec(),
    );
    // Not Ethernet/IPv4 (hardware type 6, IEEE 802).
    let mut f = arp_request(pod_mac(1), pod_ip(1), GATEWAY);
    f[14..16].copy_from_slice(&[0, 6]);
    h.send("pod1", f);
    assert_dropped_only(&mut h, DropReason::MalformedArp, 2);
    h.assert_no_frame_leak();
}

#[test]
fn echo_request_to_the_gateway_gets_an_echo_reply() {
    let mut h = Harness::new();
    let input = ping(pod_mac(2), GW_MAC, pod_ip(2), GATEWAY, 64, 7);
    let out = send_expect_one(&mut h, "pod2", input.clone(), "pod2");
    assert_eq!(macs_of(&out), (GW_MAC, pod_mac(2)));
    assert_eq!(ipv4_of(&out), (GATEWAY, pod_ip(2), 64));
    let p = parse_checked(&out);
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("not ICMP: {:?}", p.transport)
    };
    assert_eq!(
        icmp.icmp_type(),
        Icmpv4Type::EchoReply(IcmpEchoHeader { id: 0x1234, seq: 7 })
    );
    assert_eq!(icmp.code_u8(), 0);
    assert_eq!(icmp.payload(), b"xvs ping payload");
    assert_eq!(checksum(icmp.slice()), 0, "ICMP checksum");

    // Byte for byte, the reply etherparse would build.
    let b = PacketBuilder::ethernet2(GW_MAC, pod_mac(2))
        .ipv4(GATEWAY.octets(), pod_ip(2).octets(), 64)
        .icmpv4_echo_reply(0x1234, 7);
    let mut want = Vec::new();
    b.write(&mut want, b"xvs ping payload").unwrap();
    assert_eq!(out, want);

    let c = h.counters();
    assert_eq!(c.echo_replies, 1);
    assert_eq!(c.total_drops(), 0);
    h.assert_no_frame_leak();
}

#[test]
fn echo_replies_keep_each_sequence_number_and_ignore_the_request_ttl() {
    let mut h = Harness::new();
    // TTL 1 is fine: the request is delivered locally, not forwarded.
    for (seq, ttl) in [(0u16, 1u8), (1, 2), (0xfffe, 255), (0xffff, 64)] {
        let input = ping(pod_mac(3), GW_MAC, pod_ip(3), GATEWAY, ttl, seq);
        let mut padded = input.clone();
        padded.resize(input.len().max(60) + 4, 0x77);
        let out = send_expect_one(&mut h, "pod3", padded, "pod3");
        assert_eq!(out.len(), input.len(), "padding trimmed");
        assert_eq!(ipv4_of(&out), (GATEWAY, pod_ip(3), 64));
        let p = parse_checked(&out);
        let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
            panic!("not ICMP")
        };
        assert_eq!(
            icmp.icmp_type(),
            Icmpv4Type::EchoReply(IcmpEchoHeader { id: 0x1234, seq })
        );
    }
    assert_eq!(h.counters().echo_replies, 4);
    assert_eq!(h.counters().icmp_errors, 0);
    assert_eq!(h.counters().total_drops(), 0);
    h.assert_no_frame_leak();
}

#[test]
fn echo_with_a_bad_icmp_checksum_is_malformed() {
    let mut h = Harness::new();
    let mut f = ping(pod_mac(1), GW_MAC, pod_ip(1), GATEWAY, 64, 1);
    // The ICMP checksum (after 14 + 20 + 2 bytes); the IP header stays valid.
    f[36] ^= 0x40;
    h.send("pod1", f);
    assert_dropped_only(&mut h, DropReason::MalformedIcmp, 1);
    assert_eq!(h.counters().echo_replies, 0);

    // ICMP cut shorter than its header.
    let b =
        PacketBuilder::ethernet2(pod_mac(1), GW_MAC).ipv4(pod_ip(1).octets(), GATEWAY.octets(), 64);
    let mut short = Vec::new();
    b.write(&mut short, etherparse::IpNumber::ICMP, &[8, 0, 0xf7])
        .unwrap();
    h.send("pod1", short);
    assert_nothing_sent(&mut h);
    assert_eq!(h.drops(DropReason::MalformedIcmp), 2);
    h.assert_no_frame_leak();
}

#[test]
fn udp_tcp_and_other_icmp_to_the_gateway_are_unsupported() {
    let mut h = Harness::new();
    h.send("pod1", pod_udp(1, GATEWAY, 64, b"dns?"));
    h.send("pod1", tcp_syn(pod_mac(1), GW_MAC, pod_ip(1), GATEWAY, 64));
    // An echo reply (type 0) is not a request.
    let b = PacketBuilder::ethernet2(pod_mac(1), GW_MAC)
        .ipv4(pod_ip(1).octets(), GATEWAY.octets(), 64)
        .icmpv4_echo_reply(1, 1);
    let mut reply = Vec::new();
    b.write(&mut reply, b"pong").unwrap();
    h.send("pod1", reply);
    // A fragmented echo request.
    let mut frag = ping(pod_mac(1), GW_MAC, pod_ip(1), GATEWAY, 64, 1);
    frag[20] = 0x20; // MF, DF clear
    fix_ipv4_checksum(&mut frag, 14);
    h.send("pod1", frag);
    assert_dropped_only(&mut h, DropReason::LocalUnsupported, 4);
    assert_eq!(h.counters().echo_replies, 0);
    assert_eq!(h.counters().icmp_errors, 0);
    h.assert_no_frame_leak();
}

#[test]
fn a_frame_to_another_unicast_mac_is_not_ours() {
    let mut h = Harness::new();
    // Straight to pod 2's MAC, bypassing the gateway.
    h.send(
        "pod1",
        udp(pod_mac(1), pod_mac(2), pod_ip(1), pod_ip(2), 64, b"x"),
    );
    // A ping to the gateway IP but the wrong MAC.
    h.send(
        "pod1",
        ping(
            pod_mac(1),
            [0x02, 0, 0, 0, 0, 0x99],
            pod_ip(1),
            GATEWAY,
            64,
            1,
        ),
    );
    // An ARP request sent unicast to someone else.
    h.send(
        "pod1",
        arp(pod_mac(2), 1, pod_mac(1), pod_ip(1), [0; 6], GATEWAY),
    );
    // On the uplink, a frame for the gateway MAC is not for the uplink MAC.
    h.send(
        "uplink",
        udp(ROUTER_MAC, GW_MAC, EXTERNAL, pod_ip(1), 64, b"x"),
    );
    assert_dropped_only(&mut h, DropReason::NotOurMac, 4);
    h.assert_no_frame_leak();
}

// ---------------------------------------------------------------------------
// The switch's other addresses: the node IP and the VTEP are local too.

#[test]
fn traffic_to_the_node_ip_is_local_and_not_answered() {
    // With a default route, the node IP would leave through the uplink if
    // it were forwarded.
    let mut h = Harness::with(state_with_default_route(), Default::default());
    let cases = [
        (
            "pod1",
            pod_udp(1, NODE_IP, 64, b"to the node"),
            "UDP from a pod",
        ),
        (
            "pod1",
            pod_udp(1, NODE_IP, 1, b"ttl 1"),
            "UDP with TTL 1 from a pod",
        ),
        (
            "pod2",
            ping(pod_mac(2), GW_MAC, pod_ip(2), NODE_IP, 64, 1),
            "echo request from a pod",
        ),
        (
            "pod3",
            tcp_syn(pod_mac(3), GW_MAC, pod_ip(3), NODE_IP, 64),
            "TCP SYN from a pod",
        ),
        (
            "uplink",
            udp(ROUTER_MAC, UPLINK_MAC, EXTERNAL, NODE_IP, 64, b"x"),
            "UDP from outside",
        ),
        (
            "uplink",
            ping(ROUTER_MAC, UPLINK_MAC, EXTERNAL, NODE_IP, 64, 2),
            "echo request from outside",
        ),
    ];
    for (port, frame, what) in cases {
        expect_drop(&mut h, port, frame, DropReason::LocalUnsupported, what);
    }
    assert_eq!(h.counters().echo_replies, 0);
    assert_eq!(h.drops(DropReason::LocalUnsupported), 6);

    // The gateway still answers echo.
    let input = ping(pod_mac(1), GW_MAC, pod_ip(1), GATEWAY, 64, 3);
    let out = send_expect_one(&mut h, "pod1", input, "pod1");
    assert_eq!(macs_of(&out), (GW_MAC, pod_mac(1)));
    assert_eq!(ipv4_of(&out), (GATEWAY, pod_ip(1), 64));
    let e = icmp_of(&out);
    assert_eq!((e.ty, e.code), (0, 0), "echo reply");
    assert_eq!(e.rest, [0x12, 0x34, 0, 3]);
    assert_eq!(e.payload, b"xvs ping payload");
    assert_eq!(h.counters().echo_replies, 1);
    assert_eq!(h.counters().total_drops(), 6);
    h.assert_no_frame_leak();
}

#[test]
fn the_node_ip_is_local_for_a_pod_of_another_node_too() {
    let mut h = Harness::new();
    // node2's pod pings our node IP through the tunnel.
    let inner = ping(REMOTE_VTEP_MAC, VTEP_MAC, REMOTE_POD, NODE_IP, 64, 4);
    h.send("uplink", vxlan_from_remote(&inner, VNI));
    let c = h.counters();
    assert_eq!(c.vxlan_decap, 1);
    assert_eq!((c.echo_replies, c.icmp_errors, c.routed), (0, 0, 0));
    assert_dropped_only(&mut h, DropReason::LocalUnsupported, 1);
    h.assert_no_frame_leak();
}

#[test]
fn traffic_to_a_separate_vtep_address_is_local() {
    let vtep = Ipv4Addr::new(192, 168, 50, 10);
    let mut s = state_with_default_route();
    s.node.vxlan.as_mut().unwrap().vtep_ip = vtep;
    let mut h = Harness::with(s, Default::default());
    let cases = [
        (
            "pod1",
            pod_udp(1, vtep, 64, b"to the vtep"),
            "UDP from a pod",
        ),
        (
            "pod1",
            ping(pod_mac(1), GW_MAC, pod_ip(1), vtep, 64, 1),
            "echo request from a pod",
        ),
        (
            "uplink",
            udp(ROUTER_MAC, UPLINK_MAC, EXTERNAL, vtep, 64, b"x"),
            "UDP (not VXLAN) from outside",
        ),
        // The node IP is still local when it is not the VTEP.
        (
            "pod2",
            pod_udp(2, NODE_IP, 64, b"to the node"),
            "UDP to the node IP",
        ),
    ];
    for (port, frame, what) in cases {
        expect_drop(&mut h, port, frame, DropReason::LocalUnsupported, what);
    }
    assert_eq!(h.counters().echo_replies, 0);
    h.assert_no_frame_leak();
}

#[test]
fn an_echo_request_with_ip_options_is_not_answered() {
    let mut h = Harness::new();
    let plain = ping(pod_mac(1), GW_MAC, pod_ip(1), GATEWAY, 64, 5);
    // One 4-byte option word (NOP, EOL, padding): IHL 6.
    let mut with_options = plain.clone();
    with_options.splice(14 + 20..14 + 20, [1, 0, 0, 0]);
    with_options[14] = 0x46;
    let total = u16::from_be_bytes([with_options[16], with_options[17]]) + 4;
    with_options[16..18].copy_from_slice(&total.to_be_bytes());
    fix_ipv4_checksum(&mut with_options, 14);
    // A valid echo request by etherparse's reading: header checksum, the
    // option bytes, ICMP checksum.
    {
        let p = parse_checked(&with_options);
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4")
        };
        assert_eq!(ip.header().ihl(), 6);
        assert_eq!(ip.header().options(), [1, 0, 0, 0]);
        let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
            panic!("not ICMP")
        };
        assert_eq!(
            icmp.icmp_type(),
            Icmpv4Type::EchoRequest(IcmpEchoHeader { id: 0x1234, seq: 5 })
        );
    }
    expect_drop(
        &mut h,
        "pod1",
        with_options,
        DropReason::LocalUnsupported,
        "echo request with IP options",
    );
    assert_eq!(h.counters().echo_replies, 0);

    // Without the option the same request is answered.
    let out = send_expect_one(&mut h, "pod1", plain, "pod1");
    let e = icmp_of(&out);
    assert_eq!((e.ty, e.code), (0, 0));
    assert_eq!(e.rest, [0x12, 0x34, 0, 5]);
    assert_eq!(h.counters().echo_replies, 1);
    assert_eq!(h.counters().total_drops(), 1);
    h.assert_no_frame_leak();
}
