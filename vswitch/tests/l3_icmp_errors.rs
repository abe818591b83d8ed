//! ICMP errors the switch sends for packets it cannot forward: time
//! exceeded, net unreachable, fragmentation needed; when it must not send
//! them (about ICMP errors, non-first fragments), and the rate limit.
mod common;
use common::*;

use std::net::Ipv4Addr;

use etherparse::{IpNumber, Ipv4Header, PacketBuilder};
use xvs_vswitch::drop::DropReason;
use xvs_vswitch::pipeline::PipelineConfig;

/// The IP datagram inside `frame` (header and payload, padding excluded).
fn datagram(frame: &[u8]) -> &[u8] {
    let (ip, _) = Ipv4Header::from_slice(&frame[14..]).unwrap();
    &frame[14..14 + usize::from(ip.total_len)]
}

/// Checks the IP header of an error the switch sent to `to`, quoting
/// `quote_len` bytes.
fn assert_error_header(e: &IcmpMsg, to: Ipv4Addr, quote_len: usize) {
    assert_eq!(
        e.ip.source,
        NODE_IP.octets(),
        "errors come from the node IP"
    );
    assert_eq!(e.ip.destination, to.octets());
    assert_eq!(e.ip.time_to_live, 64);
    assert_eq!(e.ip.protocol, IpNumber::ICMP);
    assert_eq!(usize::from(e.ip.total_len), 20 + 8 + quote_len);
    assert_eq!(e.ip.dscp.value(), 0xc0 >> 2, "internetwork control");
    assert_eq!(e.ip.ecn.value(), 0, "not ECN-capable");
    assert!(e.ip.dont_fragment, "errors are sent with DF");
    assert!(!e.ip.more_fragments);
    assert_eq!(e.ip.fragment_offset.value(), 0);
    assert_eq!(e.payload.len(), quote_len);
}

/// The standard harness with a bucket of `burst` ICMP errors (refilled at
/// the default rate).
fn with_icmp_burst(burst: u32) -> Harness {
    let config = PipelineConfig {
        icmp_burst: burst,
        ..PipelineConfig::default()
    };
    Harness::with(state(), config)
}

/// No ICMP error was sent, and none was held back by the rate limit.
fn assert_no_icmp_error(h: &Harness) {
    let c = h.counters();
    assert_eq!(
        (c.icmp_errors, c.icmp_rate_limited),
        (0, 0),
        "(icmp_errors, icmp_rate_limited)"
    );
}

/// A UDP frame with `ip_len` bytes of IP datagram, DF as given.
fn sized_udp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ip_len: usize,
    df: bool,
) -> Vec<u8> {
    let mut ip = Ipv4Header::new(0, 64, IpNumber::UDP, src.octets(), dst.octets()).unwrap();
    ip.dont_fragment = df;
    ip.identification = 0x0707;
    let payload: Vec<u8> = (0..ip_len - 28)
        .map(|i| u8::try_from(i % 251).unwrap())
        .collect();
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
        .udp(40000, 5001);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, &payload).unwrap();
    assert_eq!(out.len(), 14 + ip_len);
    out
}

#[test]
fn ttl_1_gets_time_exceeded_from_the_node_ip() {
    let mut h = Harness::new();
    let input = pod_udp(1, pod_ip(2), 1, b"expiring payload");
    // The error goes back to the sender.
    let out = send_expect_one(&mut h, "pod1", input.clone(), "pod1");
    assert_eq!(macs_of(&out), (GW_MAC, pod_mac(1)));
    let e = icmp_of(&out);
    assert_eq!((e.ty, e.code), (11, 0), "time exceeded in transit");
    assert_eq!(e.rest, [0; 4]);
    // The whole (short) datagram is quoted, exactly as it was received.
    let orig = datagram(&input);
    assert_eq!(orig.len(), 20 + 8 + 16);
    assert_error_header(&e, pod_ip(1), orig.len());
    assert_eq!(e.payload, orig);
    assert_eq!(out.len(), 14 + 20 + 8 + orig.len());

    let c = h.counters();
    assert_eq!(c.icmp_errors, 1);
    assert_eq!(c.icmp_rate_limited, 0);
    assert_eq!(h.drops(DropReason::TtlExpired), 1);
    assert_eq!(h.counters().total_drops(), 1);
    h.assert_no_frame_leak();
}

#[test]
fn ttl_0_gets_time_exceeded_too() {
    let mut h = Harness::new();
    let input = tcp_syn(pod_mac(3), GW_MAC, pod_ip(3), EXTERNAL, 0);
    let out = send_expect_one(&mut h, "pod3", input.clone(), "pod3");
    assert_eq!(macs_of(&out), (GW_MAC, pod_mac(3)));
    let e = icmp_of(&out);
    assert_eq!((e.ty, e.code), (11, 0));
    let orig = datagram(&input);
    assert_error_header(&e, pod_ip(3), orig.len());
    assert_eq!(e.payload, orig);
    assert_eq!(e.payload[8], 0, "quoted TTL is the received one");
    assert_eq!(h.counters().icmp_errors, 1);
    assert_eq!(h.drops(DropReason::TtlExpired), 1);
    assert_eq!(h.counters().total_drops(), 1);
    h.assert_no_frame_leak();
}

#[test]
fn ttl_2_is_still_forwarded() {
    let mut h = Harness::new();
    let out = send_expect_one(
        &mut h,
        "pod1",
        pod_udp(1, pod_ip(2), 2, b"last hop"),
        "pod2",
    );
    assert_eq!(ipv4_of(&out).2, 1);
    assert_eq!(h.counters().icmp_errors, 0);
    assert_eq!(h.counters().total_drops(), 0);
    h.assert_no_frame_leak();
}

#[test]
fn no_route_gets_net_unreachable() {
    let mut h = Harness::new();
    let input = pod_udp(2, UNROUTABLE, 64, b"where is 203.0.113.7?");
    let out = send_expect_one(&mut h, "pod2", input.clone(), "pod2");
    assert_eq!(macs_of(&out), (GW_MAC, pod_mac(2)));
    let e = icmp_of(&out);
    assert_eq!((e.ty, e.code), (3, 0), "net unreachable");
    assert_eq!(e.rest, [0; 4]);
    let orig = datagram(&input);
    assert_error_header(&e, pod_ip(2), orig.len());
    assert_eq!(e.payload, orig);
    assert_eq!(h.drops(DropReason::NoRoute), 1);
    assert_eq!(h.counters().total_drops(), 1);
    assert_eq!(h.counters().icmp_errors, 1);

    // With TTL 1 the missing route is found first, as in Linux.
    let input = pod_udp(2, UNROUTABLE, 1, b"ttl 1 and no route");
    h.send("pod2", input.clone());
    let (_, out) = only_output(&mut h);
    let e = icmp_of(&out);
    assert_eq!((e.ty, e.code), (3, 0));
    assert_eq!(e.payload, datagram(&input));
    assert_eq!(h.drops(DropReason::NoRoute), 2);
    assert_eq!(h.drops(DropReason::TtlExpired), 0);
    h.assert_no_frame_leak();
}

#[test]
fn df_over_the_pod_mtu_gets_fragmentation_needed_1450() {
    let mut h = Harness::new();
    // Exactly the MTU passes.
    let fits = sized_udp(pod_mac(1), GW_MAC, pod_ip(1), pod_ip(2), 1450, true);
    let out = send_expect_one(&mut h, "pod1", fits, "pod2");
    assert_eq!(out.len(), 14 + 1450);

    // One byte more does not.
    let input = sized_udp(pod_mac(1), GW_MAC, pod_ip(1), pod_ip(2), 1451, true);
    let out = send_expect_one(&mut h, "pod1", input.clone(), "pod1");
    assert_eq!(macs_of(&out), (GW_MAC, pod_mac(1)));
    let e = icmp_of(&out);
    assert_eq!((e.ty, e.code), (3, 4), "fragmentation needed");
    assert_eq!(e.rest, [0, 0, 0x05, 0xaa], "next-hop MTU 1450 (RFC 1191)");
    // The error is at most 576 bytes: 548 bytes of quote.
    assert_error_header(&e, pod_ip(1), 548);
    assert_eq!(usize::from(e.ip.total_len), 576);
    assert_eq!(e.payload, &datagram(&input)[..548]);
    assert_eq!(h.drops(DropReason::MtuExceeded), 1);
    assert_eq!(h.counters().total_drops(), 1);
    assert_eq!(h.counters().icmp_errors, 1);
    h.assert_no_frame_leak();
}

#[test]
fn fragmentation_needed_reaches_an_external_sender_through_the_uplink() {
    let mut h = Harness::new();
    let input = sized_udp(ROUTER_MAC, UPLINK_MAC, EXTERNAL, pod_ip(3), 1500, true);
    let out = send_expect_one(&mut h, "uplink", input.clone(), "uplink");
    assert_eq!(macs_of(&out), (UPLINK_MAC, ROUTER_MAC));
    let e = icmp_of(&out);
    assert_eq!((e.ty, e.code), (3, 4));
    assert_eq!(e.rest, [0, 0, 0x05, 0xaa]);
    assert_error_header(&e, EXTERNAL, 548);
    assert_eq!(e.payload, &datagram(&input)[..548]);
    assert_eq!(out.len(), 14 + 576);
    assert_eq!(h.drops(DropReason::MtuExceeded), 1);
    h.assert_no_frame_leak();
}

#[test]
fn over_the_mtu_without_df_is_dropped_without_an_error() {
    let mut h = Harness::new();
    let input = sized_udp(pod_mac(1), GW_MAC, pod_ip(1), pod_ip(2), 1451, false);
    h.send("pod1", input);
    assert_dropped_only(&mut h, DropReason::MtuExceeded, 1);
    assert_no_icmp_error(&h);
    h.assert_no_frame_leak();
}

/// The overlay toward node2 carries inner IP packets of at most
/// 1500 (uplink MTU) - 20 (outer IPv4) - 8 (UDP) - 8 (VXLAN) - 14 (inner
/// Ethernet) = 1450 bytes.
#[test]
fn df_over_the_overlay_mtu_gets_fragmentation_needed_1450() {
    let mut h = Harness::new();
    for src_port in ["pod1", "uplink"] {
        let (src_mac, dst_mac, src) = if src_port == "pod1" {
            (pod_mac(1), GW_MAC, pod_ip(1))
        } else {
            (ROUTER_MAC, UPLINK_MAC, EXTERNAL)
        };
        // 1450 bytes fit: the outer packet is exactly the uplink MTU.
        let fits = sized_udp(src_mac, dst_mac, src, REMOTE_POD, 1450, true);
        let out = send_expect_one(&mut h, src_port, fits.clone(), "uplink");
        let (outer_src, outer_dst, _) = ipv4_of(&out);
        assert_eq!((outer_src, outer_dst), (NODE_IP, REMOTE_VTEP));
        let (outer, _) = Ipv4Header::from_slice(&out[14..]).unwrap();
        assert_eq!(outer.total_len, 1500, "outer packet fills the uplink MTU");
        assert_eq!(out.len(), 14 + 1500);
        // The inner IP datagram after the 50-byte encapsulation.
        let inner = &out[50 + 14..];
        assert_eq!(inner.len(), 1450);
        assert_eq!(inner[8], 63, "inner TTL decremented");
        assert_eq!(
            &inner[20..],
            &datagram(&fits)[20..],
            "inner payload unchanged"
        );

        // 1451 bytes would make a 1501-byte outer packet.
        let input = sized_udp(src_mac, dst_mac, src, REMOTE_POD, 1451, true);
        // The error goes back to the sender.
        let out = send_expect_one(&mut h, src_port, input.clone(), src_port);
        let e = icmp_of(&out);
        assert_eq!((e.ty, e.code), (3, 4), "fragmentation needed");
        assert_eq!(
            u16::from_be_bytes([e.rest[2], e.rest[3]]),
            1450,
            "next-hop MTU of the overlay"
        );
        assert_error_header(&e, src, 548);
        assert_eq!(e.payload, &datagram(&input)[..548]);
    }
    assert_eq!(h.counters().vxlan_encap, 2);
    assert_eq!(h.drops(DropReason::MtuExceeded), 2);
    assert_eq!(h.counters().total_drops(), 2);
    h.assert_no_frame_leak();
}

#[test]
fn icmp_errors_are_rate_limited_and_the_bucket_refills() {
    let mut h = with_icmp_burst(3);
    assert_eq!(
        PipelineConfig::default().icmp_rate,
        1000,
        "one token per millisecond"
    );
    // Sends `n` TTL-expired packets in one batch, each tagged with its
    // index, and returns the indices the errors quote.
    let burst = |h: &mut Harness, n: u8| -> Vec<u8> {
        for i in 0..n {
            h.port("pod1").inject(pod_udp(1, pod_ip(2), 1, &[i; 4]));
        }
        h.run();
        let mut quoted = Vec::new();
        for (port, f) in h.all_sent() {
            assert_eq!(port, "pod1");
            let e = icmp_of(&f);
            assert_eq!((e.ty, e.code), (11, 0));
            // The quoted UDP payload starts after 20 + 8 bytes.
            quoted.push(e.payload[28]);
        }
        quoted
    };

    assert_eq!(burst(&mut h, 10), [0, 1, 2], "the burst: first three only");
    assert_eq!(h.counters().icmp_errors, 3);
    assert_eq!(h.counters().icmp_rate_limited, 7);
    assert_eq!(h.drops(DropReason::TtlExpired), 10);
    assert_eq!(h.counters().total_drops(), 10);

    // One millisecond buys one token.
    h.now_ns += 1_000_000;
    assert_eq!(burst(&mut h, 5), [0]);
    assert_eq!(h.counters().icmp_errors, 4);
    assert_eq!(h.counters().icmp_rate_limited, 11);

    // Not a whole token yet.
    h.now_ns += 999_999;
    assert!(burst(&mut h, 1).is_empty());
    assert_eq!(h.counters().icmp_rate_limited, 12);
    h.now_ns += 1;
    assert_eq!(burst(&mut h, 1), [0]);

    // A long pause refills up to the burst, no more.
    h.now_ns += 10_000_000_000;
    assert_eq!(burst(&mut h, 5), [0, 1, 2]);
    assert_eq!(h.counters().icmp_errors, 8);
    assert_eq!(h.counters().icmp_rate_limited, 14);
    assert_eq!(h.drops(DropReason::TtlExpired), 22);
    h.assert_no_frame_leak();
}

#[test]
fn rate_limited_errors_do_not_stop_forwarding() {
    let mut h = with_icmp_burst(1);
    for _ in 0..3 {
        h.port("pod1").inject(pod_udp(1, UNROUTABLE, 64, b"x"));
    }
    h.port("pod1").inject(pod_udp(1, pod_ip(3), 64, b"y"));
    h.run();
    let out = h.all_sent();
    let ports: Vec<&str> = out.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(ports, ["pod1", "pod3"]);
    for (_, f) in &out {
        parse_checked(f);
    }
    assert_eq!(h.counters().icmp_errors, 1);
    assert_eq!(h.counters().icmp_rate_limited, 2);
    assert_eq!(h.drops(DropReason::NoRoute), 3);
    h.assert_no_frame_leak();
}

/// An ICMP message of `ty`/`code` from pod 1 to pod 2 with TTL `ttl`;
/// errors carry a quote of some packet, as a real one would.
fn icmp_msg(ty: u8, code: u8, ttl: u8) -> Vec<u8> {
    let quoted = pod_udp(2, pod_ip(1), 63, b"12345678");
    let b = PacketBuilder::ethernet2(pod_mac(1), GW_MAC)
        .ipv4(pod_ip(1).octets(), pod_ip(2).octets(), ttl)
        .icmpv4_raw(ty, code, [0; 4]);
    let payload = &quoted[14..14 + 28];
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).unwrap();
    out
}

#[test]
fn no_icmp_error_about_an_icmp_error() {
    let mut h = Harness::new();
    // Dest unreachable (port), source quench, redirect, time exceeded,
    // parameter problem: all errors.
    let errors = [(3, 3), (4, 0), (5, 1), (11, 0), (12, 0)];
    for (ty, code) in errors {
        h.send("pod1", icmp_msg(ty, code, 1));
        assert_nothing_sent(&mut h);
    }
    assert_eq!(h.drops(DropReason::TtlExpired), 5);
    assert_no_icmp_error(&h); // suppressed, not rate limited

    // They are forwarded normally with a TTL to spare.
    h.send("pod1", icmp_msg(3, 3, 64));
    assert_eq!(only_output(&mut h).0, "pod2");

    // Queries (echo request and reply) with TTL 1 are answered.
    for ty in [8, 0] {
        let input = icmp_msg(ty, 0, 1);
        let out = send_expect_one(&mut h, "pod1", input.clone(), "pod1");
        let e = icmp_of(&out);
        assert_eq!((e.ty, e.code), (11, 0));
        assert_eq!(e.payload, datagram(&input));
    }
    assert_eq!(h.counters().icmp_errors, 2);
    assert_eq!(h.drops(DropReason::TtlExpired), 7);
    h.assert_no_frame_leak();
}

/// A UDP fragment from pod 1 to pod 2 (identification 0x4242).
fn fragment(ttl: u8, mf: bool, offset_units: u16, payload: &[u8]) -> Vec<u8> {
    let ip = fragment_header(pod_ip(1), pod_ip(2), ttl, 0x4242, mf, offset_units);
    raw_ipv4(pod_mac(1), GW_MAC, ip, payload)
}

#[test]
fn non_first_fragment_with_ttl_1_gets_no_icmp_error() {
    let mut h = Harness::new();
    h.send("pod1", fragment(1, true, 4, &[0x22; 16]));
    h.send("pod1", fragment(1, false, 6, &[0x33; 12]));
    assert_nothing_sent(&mut h);
    assert_eq!(h.drops(DropReason::TtlExpired), 2);
    assert_no_icmp_error(&h);

    // The first fragment (offset 0, MF) is answered.
    let mut first = vec![0x9c, 0x40, 0x13, 0x89, 0x00, 0x40, 0x00, 0x00];
    first.extend_from_slice(&[0x11; 24]);
    let input = fragment(1, true, 0, &first);
    let out = send_expect_one(&mut h, "pod1", input.clone(), "pod1");
    let e = icmp_of(&out);
    assert_eq!((e.ty, e.code), (11, 0));
    assert_error_header(&e, pod_ip(1), 20 + 32);
    assert_eq!(e.payload, datagram(&input));
    assert_eq!(h.counters().icmp_errors, 1);
    assert_eq!(h.drops(DropReason::TtlExpired), 3);
    h.assert_no_frame_leak();
}

#[test]
fn the_quote_of_a_padded_frame_stops_at_the_datagram() {
    let mut h = Harness::new();
    let input = pod_udp(1, pod_ip(2), 1, b"hi");
    let mut padded = input.clone();
    padded.resize(60, 0xee);
    h.send("pod1", padded);
    let (_, out) = only_output(&mut h);
    let e = icmp_of(&out);
    assert_eq!((e.ty, e.code), (11, 0));
    assert_error_header(&e, pod_ip(1), 30);
    assert_eq!(e.payload, &input[14..]);
    h.assert_no_frame_leak();
}

#[test]
fn martian_sources_are_dropped_without_an_icmp_error() {
    let mut h = Harness::new();
    // Only the uplink can bring such sources (pods are held to their own).
    for src in [
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 1),
    ] {
        h.send(
            "uplink",
            udp(ROUTER_MAC, UPLINK_MAC, src, pod_ip(2), 1, b"odd source"),
        );
    }
    // Martian sources (RFC 1812 5.3.7) are dropped on input, before the
    // TTL is even looked at, so no error can go back to them.
    assert_dropped_only(&mut h, DropReason::MartianAddress, 3);
    assert_no_icmp_error(&h);
    h.assert_no_frame_leak();
}

#[test]
fn suppressed_errors_do_not_use_up_the_rate_limit() {
    let mut h = with_icmp_burst(1);
    // Errors about ICMP errors and non-first fragments are suppressed...
    h.port("pod1").inject(icmp_msg(3, 1, 1));
    h.port("pod1").inject(fragment(1, false, 6, &[0x33; 12]));
    // ...so the one token is still there for this packet.
    let input = pod_udp(1, pod_ip(2), 1, b"gets the token");
    h.port("pod1").inject(input.clone());
    h.run();
    let (port, out) = only_output(&mut h);
    assert_eq!(port, "pod1");
    let e = icmp_of(&out);
    assert_eq!((e.ty, e.code), (11, 0));
    assert_eq!(e.payload, datagram(&input));
    assert_eq!(h.counters().icmp_errors, 1);
    assert_eq!(h.counters().icmp_rate_limited, 0);
    assert_eq!(h.drops(DropReason::TtlExpired), 3);
    h.assert_no_frame_leak();
}

#[test]
fn a_mixed_batch_is_handled_packet_by_packet() {
    let mut h = Harness::new();
    let mut bad_sum = pod_udp(1, pod_ip(3), 64, b"bad sum");
    bad_sum[14 + 10] ^= 0xff;
    let batch = [
        pod_udp(1, pod_ip(2), 64, b"0 routed"),      // pod2
        pod_udp(1, pod_ip(3), 1, b"1 expires"),      // pod1: time exceeded
        arp_request(pod_mac(1), pod_ip(1), GATEWAY), // pod1: ARP reply
        udp(pod_mac(1), GW_MAC, pod_ip(2), pod_ip(3), 64, b"3"), // spoofed
        pod_udp(1, UNROUTABLE, 64, b"4 no route"),   // pod1: unreachable
        ping(pod_mac(1), GW_MAC, pod_ip(1), GATEWAY, 64, 5), // pod1: echo reply
        bad_sum,                                     // bad checksum
        pod_udp(1, EXTERNAL, 64, b"7 out"),          // uplink
    ];
    for f in &batch {
        h.port("pod1").inject(f.clone());
    }
    h.run();

    let pod2 = h.sent("pod2");
    assert_eq!(pod2.len(), 1);
    assert_eq!(ipv4_of(&pod2[0]), (pod_ip(1), pod_ip(2), 63));
    let uplink = h.sent("uplink");
    assert_eq!(uplink.len(), 1);
    assert_eq!(ipv4_of(&uplink[0]), (pod_ip(1), EXTERNAL, 63));
    assert_eq!(macs_of(&uplink[0]), (UPLINK_MAC, ROUTER_MAC));

    // Back to pod 1, in batch order.
    let pod1 = h.sent("pod1");
    assert_eq!(pod1.len(), 4);
    let e = icmp_of(&pod1[0]);
    assert_eq!((e.ty, e.code), (11, 0));
    assert_eq!(e.payload, datagram(&batch[1]));
    assert_arp_reply(&pod1[1], 1, GATEWAY); // ARP reply second
    let e = icmp_of(&pod1[2]);
    assert_eq!((e.ty, e.code), (3, 0));
    assert_eq!(e.payload, datagram(&batch[4]));
    assert_eq!(ipv4_of(&pod1[3]), (GATEWAY, pod_ip(1), 64));

    assert!(h.sent("pod3").is_empty());
    assert!(h.all_sent().is_empty());
    let c = h.counters();
    assert_eq!(c.icmp_errors, 2);
    assert_eq!(c.arp_replies, 1);
    assert_eq!(c.echo_replies, 1);
    assert_eq!(h.drops(DropReason::TtlExpired), 1);
    assert_eq!(h.drops(DropReason::SpoofedSource), 1);
    assert_eq!(h.drops(DropReason::NoRoute), 1);
    assert_eq!(h.drops(DropReason::BadIpv4Checksum), 1);
    assert_eq!(c.total_drops(), 4);
    h.assert_no_frame_leak();
}

/// An address of this node's pod CIDR that no pod has.
const NO_SUCH_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 99);

#[test]
fn an_unassigned_pod_address_gets_host_unreachable() {
    let mut h = Harness::new();
    let input = pod_udp(1, NO_SUCH_POD, 64, b"anyone at .99?");
    let out = send_expect_one(&mut h, "pod1", input.clone(), "pod1");
    assert_eq!(macs_of(&out), (GW_MAC, pod_mac(1)));
    let e = icmp_of(&out);
    assert_eq!((e.ty, e.code), (3, 1), "host unreachable");
    assert_eq!(e.rest, [0; 4]);
    let orig = datagram(&input);
    assert_error_header(&e, pod_ip(1), orig.len());
    assert_eq!(e.payload, orig);
    assert_eq!(h.drops(DropReason::HostUnreachable), 1);
    assert_eq!(h.counters().total_drops(), 1);
    assert_eq!(h.counters().icmp_errors, 1);

    // The neighbour of a pod's address, with TTL 1: the missing pod is
    // found before the TTL is looked at, as a missing route is.
    let neighbour = Ipv4Addr::new(10, 244, 1, 10);
    let input = pod_udp(2, neighbour, 1, b"ttl 1 to .10");
    let out = send_expect_one(&mut h, "pod2", input.clone(), "pod2");
    let e = icmp_of(&out);
    assert_eq!((e.ty, e.code), (3, 1));
    assert_error_header(&e, pod_ip(2), datagram(&input).len());
    assert_eq!(e.payload, datagram(&input));

    // From the outside, the error goes back out of the uplink.
    let input = udp(ROUTER_MAC, UPLINK_MAC, EXTERNAL, NO_SUCH_POD, 64, b"x");
    let out = send_expect_one(&mut h, "uplink", input.clone(), "uplink");
    assert_eq!(macs_of(&out), (UPLINK_MAC, ROUTER_MAC));
    let e = icmp_of(&out);
    assert_eq!((e.ty, e.code), (3, 1));
    assert_error_header(&e, EXTERNAL, datagram(&input).len());
    assert_eq!(e.payload, datagram(&input));

    assert_eq!(h.drops(DropReason::HostUnreachable), 3);
    assert_eq!(h.drops(DropReason::TtlExpired), 0);
    assert_eq!(h.counters().total_drops(), 3);
    assert_eq!(h.counters().icmp_errors, 3);
    h.assert_no_frame_leak();
}

#[test]
fn an_unassigned_pod_address_does_not_follow_the_default_route() {
    let mut h = Harness::with(state_with_default_route(), PipelineConfig::default());
    // The default route works: an address without a better route leaves
    // through the uplink to the default router.
    let out = send_expect_one(&mut h, "pod1", pod_udp(1, UNROUTABLE, 64, b"x"), "uplink");
    assert_eq!(macs_of(&out), (UPLINK_MAC, DEFAULT_ROUTER_MAC));

    // But the pod CIDR's free addresses are ours, not the router's: the
    // packet is answered, not bounced to the router.
    for (port, input) in [
        ("pod1", pod_udp(1, NO_SUCH_POD, 64, b"from a pod")),
        (
            "uplink",
            udp(
                ROUTER_MAC,
                UPLINK_MAC,
                UNROUTABLE,
                NO_SUCH_POD,
                64,
                b"from outside",
            ),
        ),
    ] {
        let out = send_expect_one(&mut h, port, input.clone(), port);
        let e = icmp_of(&out);
        assert_eq!((e.ty, e.code), (3, 1), "from {port}: host unreachable");
        let src = ipv4_of(&input).0;
        assert_error_header(&e, src, datagram(&input).len());
        assert_eq!(e.payload, datagram(&input));
        if port == "uplink" {
            // Back toward its sender, which the default route reaches.
            assert_eq!(macs_of(&out), (UPLINK_MAC, DEFAULT_ROUTER_MAC));
        }
    }
    assert_eq!(h.drops(DropReason::HostUnreachable), 2);
    assert_eq!(h.counters().total_drops(), 2);
    assert_eq!(h.counters().icmp_errors, 2);
    h.assert_no_frame_leak();
}

#[test]
fn icmp_errors_have_df_set_and_tos_0xc0_whatever_the_original_had() {
    let mut h = Harness::new();
    // DSCP EF, ECN CE, DF clear: none of it is copied into the error.
    let mut input = pod_udp(1, pod_ip(2), 1, b"tos and flags");
    input[14 + 1] = (46 << 2) | 0b11;
    input[14 + 6] &= !0x40;
    fix_ipv4_checksum(&mut input, 14);
    let out = send_expect_one(&mut h, "pod1", input.clone(), "pod1");
    let e = icmp_of(&out);
    assert_eq!((e.ty, e.code), (11, 0), "time exceeded");
    assert_eq!(out[14 + 1], 0xc0, "TOS byte: internetwork control, not-ECT");
    assert_eq!(out[14 + 6] & 0xe0, 0x40, "flags: DF only");
    assert!(e.ip.dont_fragment);
    assert_eq!(e.ip.dscp.value(), 48);
    assert_eq!(e.ip.ecn.value(), 0);
    assert_error_header(&e, pod_ip(1), datagram(&input).len());
    assert_eq!(
        e.payload,
        datagram(&input),
        "the quote keeps the original TOS"
    );
    assert_eq!(e.payload[1], 0xbb);
    assert_eq!(h.counters().icmp_errors, 1);
    assert_eq!(h.drops(DropReason::TtlExpired), 1);
    h.assert_no_frame_leak();
}

#[test]
fn the_largest_icmp_rate_does_not_break_the_rate_limiter() {
    // u32::MAX errors per second is less than a nanosecond per token.
    let config = PipelineConfig {
        icmp_rate: u32::MAX,
        ..PipelineConfig::default()
    };
    assert_eq!(config.icmp_burst, 50);
    let mut h = Harness::with(state(), config);
    // 64 expiring packets in one batch, tagged with their index: the first
    // 50 (the burst) are answered at once.
    let burst = |h: &mut Harness| -> Vec<u8> {
        for i in 0..64u8 {
            h.port("pod1").inject(pod_udp(1, pod_ip(2), 1, &[i; 4]));
        }
        h.run();
        let mut quoted = Vec::new();
        for (port, f) in h.all_sent() {
            assert_eq!(port, "pod1");
            let e = icmp_of(&f);
            assert_eq!((e.ty, e.code), (11, 0));
            quoted.push(e.payload[28]);
        }
        quoted
    };
    assert_eq!(burst(&mut h), (0..50).collect::<Vec<u8>>());
    assert_eq!(h.counters().icmp_errors, 50);
    assert_eq!(h.counters().icmp_rate_limited, 14);
    // A microsecond later the bucket is full again.
    h.now_ns += 1_000;
    assert_eq!(burst(&mut h), (0..50).collect::<Vec<u8>>());
    assert_eq!(h.counters().icmp_errors, 100);
    assert_eq!(h.counters().icmp_rate_limited, 28);
    assert_eq!(h.drops(DropReason::TtlExpired), 128);
    assert_eq!(h.counters().total_drops(), 128);
    h.assert_no_frame_leak();
}
