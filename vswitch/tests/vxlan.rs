//! The VXLAN overlay (RFC 7348): encapsulation toward node2, decapsulation
//! of what node2 sends, and everything a VTEP must refuse. Every output
//! frame is taken apart with etherparse, inner frames included.
mod common;

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use common::*;
use etherparse::{
    EtherType, Ethernet2Header, IpFragOffset, IpNumber, Ipv4Header, LinkSlice, NetSlice,
    TransportSlice, UdpHeader,
};
use xvs_vswitch::drop::DropReason;
use xvs_vswitch::pipeline::PipelineConfig;

const VXLAN_PORT: u16 = 4789;
const PAYLOAD: &[u8] = b"overlay payload, byte for byte: \x00\x01\x02\xfe\xff";
/// Offsets in an encapsulated frame without outer IPv4 options.
const OUTER_IP: usize = 14;
const OUTER_UDP: usize = 34;
const VXLAN_HDR: usize = 42;
const INNER: usize = 50;
const INNER_IP: usize = 64;

// ---------------------------------------------------------------------------
// Building tunnel frames.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UdpSum {
    Zero,
    Valid,
    Wrong,
}

/// The outer headers of a VXLAN frame; `from_remote` is what node2 sends.
#[derive(Debug, Clone)]
struct Outer {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    udp_sum: UdpSum,
    more_fragments: bool,
    /// In units of 8 bytes.
    frag_offset: u16,
    flags: u8,
    vni: u32,
}

impl Outer {
    fn from_remote() -> Self {
        Outer {
            src_mac: UNDERLAY_MAC,
            dst_mac: UPLINK_MAC,
            src_ip: REMOTE_VTEP,
            dst_ip: NODE_IP,
            src_port: 51234,
            dst_port: VXLAN_PORT,
            udp_sum: UdpSum::Zero,
            more_fragments: false,
            frag_offset: 0,
            flags: 0x08,
            vni: VNI,
        }
    }

    fn vxlan_header(&self) -> [u8; 8] {
        let v = self.vni.to_be_bytes();
        [self.flags, 0, 0, 0, v[1], v[2], v[3], 0]
    }

    /// The complete frame around inner Ethernet frame `inner`.
    fn frame(&self, inner: &[u8]) -> Vec<u8> {
        let mut p = self.vxlan_header().to_vec();
        p.extend_from_slice(inner);
        self.frame_raw(&p)
    }

    /// The frame with `udp_payload` (whatever it is) after the UDP header;
    /// all lengths consistent, the IPv4 checksum valid.
    fn frame_raw(&self, udp_payload: &[u8]) -> Vec<u8> {
        let udp_len = u16::try_from(8 + udp_payload.len()).unwrap();
        let mut ip = Ipv4Header::new(
            udp_len,
            64,
            IpNumber::UDP,
            self.src_ip.octets(),
            self.dst_ip.octets(),
        )
        .unwrap();
        let fragment = self.more_fragments || self.frag_offset != 0;
        ip.dont_fragment = !fragment;
        ip.more_fragments = self.more_fragments;
        ip.fragment_offset = IpFragOffset::try_new(self.frag_offset).unwrap();
        ip.identification = 0x4242;
        ip.header_checksum = ip.calc_header_checksum();
        let mut udp = UdpHeader {
            source_port: self.src_port,
            destination_port: self.dst_port,
            length: udp_len,
            checksum: 0,
        };
        let valid = udp.calc_checksum_ipv4(&ip, udp_payload).unwrap();
        assert_ne!(valid, 0, "etherparse never computes a zero UDP checksum");
        udp.checksum = match self.udp_sum {
            UdpSum::Zero => 0,
            UdpSum::Valid => valid,
            UdpSum::Wrong => valid ^ 0x0101,
        };
        let eth = Ethernet2Header {
            source: self.src_mac,
            destination: self.dst_mac,
            ether_type: EtherType::IPV4,
        };
        let mut f = eth.to_bytes().to_vec();
        f.extend_from_slice(&ip.to_bytes());
        f.extend_from_slice(&udp.to_bytes());
        f.extend_from_slice(udp_payload);
        f
    }
}

/// A frame from node2's pod REMOTE_POD to `dst`, as node2's flannel.1 puts
/// it into the tunnel (our VTEP MAC as destination).
fn inner_udp(dst: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
    udp(REMOTE_VTEP_MAC, VTEP_MAC, REMOTE_POD, dst, ttl, payload)
}

/// A UDP frame from pod1 with the given ports.
fn pod1_udp_ports(dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    udp_ports(
        pod_mac(1),
        GW_MAC,
        pod_ip(1),
        dst,
        64,
        (sport, dport),
        payload,
    )
}

/// The IPv4 datagram of `frame` (from offset 14) as a router forwards it:
/// TTL one less, header checksum recomputed, everything else unchanged.
fn forwarded_ip(frame: &[u8]) -> Vec<u8> {
    let mut ip = frame[14..].to_vec();
    decrement_ttl(&mut ip);
    ip
}

/// Decrements the TTL of IPv4 datagram `ip` and recomputes its checksum.
fn decrement_ttl(ip: &mut [u8]) {
    ip[8] -= 1;
    ip[10] = 0;
    ip[11] = 0;
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let sum = checksum(&ip[..ihl]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
}

fn swap(f: &mut [u8], a: usize, b: usize, len: usize) {
    for i in 0..len {
        f.swap(a + i, b + i);
    }
}

/// Turns one of our encapsulated frames around as node2 would send it
/// back: outer MACs and addresses swapped, inner MACs swapped.
fn turn_around_outer(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    swap(&mut f, 0, 6, 6);
    swap(&mut f, OUTER_IP + 12, OUTER_IP + 16, 4);
    fix_ipv4_checksum(&mut f, OUTER_IP);
    swap(&mut f, INNER, INNER + 6, 6);
    f
}

// ---------------------------------------------------------------------------
// Taking encapsulated output apart.

/// An encapsulated output frame, every layer parsed (and checksummed) by
/// etherparse.
#[derive(Debug)]
struct Vx {
    eth: Ethernet2Header,
    ip: Ipv4Header,
    udp: UdpHeader,
    vxlan: [u8; 8],
    inner: Vec<u8>,
}

fn parse_vxlan(frame: &[u8]) -> Vx {
    let p = parse_checked(frame);
    let Some(LinkSlice::Ethernet2(eth)) = &p.link else {
        panic!("no Ethernet II header: {:?}", p.link)
    };
    assert!(p.link_exts.is_empty(), "outer frame is tagged");
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("outer is not IPv4: {:?}", p.net)
    };
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        panic!("outer is not UDP: {:?}", p.transport)
    };
    let payload = udp.payload();
    assert!(
        payload.len() >= 8,
        "UDP payload shorter than a VXLAN header"
    );
    Vx {
        eth: eth.to_header(),
        ip: ip.header().to_header(),
        udp: udp.to_header(),
        vxlan: payload[..8].try_into().unwrap(),
        inner: payload[8..].to_vec(),
    }
}

/// Checks everything about an encapsulated frame that does not depend on
/// the inner packet; returns it parsed.
fn check_encap_to_node2(frame: &[u8]) -> Vx {
    let vx = parse_vxlan(frame);
    assert_eq!(
        vx.eth.destination, UNDERLAY_MAC,
        "outer dst MAC: underlay next hop"
    );
    assert_eq!(vx.eth.source, UPLINK_MAC, "outer src MAC: uplink");
    assert_eq!(vx.eth.ether_type, EtherType::IPV4);
    assert_eq!(vx.ip.source, NODE_IP.octets(), "outer src: our VTEP");
    assert_eq!(
        vx.ip.destination,
        REMOTE_VTEP.octets(),
        "outer dst: node2's VTEP"
    );
    assert!(vx.ip.options.is_empty());
    assert!(vx.ip.dont_fragment, "outer DF");
    assert!(!vx.ip.more_fragments);
    assert_eq!(vx.ip.fragment_offset.value(), 0);
    assert_eq!(vx.ip.time_to_live, 64, "outer TTL");
    assert_eq!(vx.ip.protocol, IpNumber::UDP);
    assert_eq!(
        usize::from(vx.ip.total_len),
        frame.len() - 14,
        "outer total length"
    );
    assert_eq!(
        vx.ip.header_checksum,
        vx.ip.calc_header_checksum(),
        "outer IPv4 checksum"
    );
    assert_eq!(vx.udp.destination_port, VXLAN_PORT);
    assert!(
        (49152..=65535).contains(&vx.udp.source_port),
        "UDP source port {} outside 49152..=65535",
        vx.udp.source_port
    );
    assert_eq!(vx.udp.checksum, 0, "outer UDP checksum is zero (RFC 7348)");
    assert_eq!(
        usize::from(vx.udp.length),
        8 + 8 + vx.inner.len(),
        "UDP length"
    );
    assert_eq!(frame.len(), 50 + vx.inner.len(), "50 bytes of overhead");
    assert_eq!(
        vx.vxlan,
        [0x08, 0, 0, 0, 0, 0, 42, 0],
        "VXLAN header: I flag, VNI 42"
    );
    {
        let inner = parse_checked(&vx.inner);
        let Some(LinkSlice::Ethernet2(ie)) = &inner.link else {
            panic!("inner frame is not Ethernet II")
        };
        assert_eq!(ie.source(), VTEP_MAC, "inner src MAC: our VTEP MAC");
        assert_eq!(
            ie.destination(),
            REMOTE_VTEP_MAC,
            "inner dst MAC: node2's VTEP MAC"
        );
        assert_eq!(ie.ether_type(), EtherType::IPV4);
    }
    vx
}

/// The one frame sent out of the uplink, which must be an encapsulated
/// frame to node2 (`check_encap_to_node2`), with its layers parsed.
fn only_encap(h: &mut Harness) -> (Vec<u8>, Vx) {
    let mut out = h.sent("uplink");
    assert_eq!(out.len(), 1, "one encapsulated frame");
    let frame = out.pop().unwrap();
    let vx = check_encap_to_node2(&frame);
    (frame, vx)
}

/// Sends `frame` on pod1; the outer UDP source port it was tunnelled with.
fn outer_src_port(h: &mut Harness, frame: Vec<u8>) -> u16 {
    h.send("pod1", frame);
    only_encap(h).1.udp.source_port
}

/// Sends `frame` on the uplink and checks that one frame came out of
/// `pod`: `inner`'s datagram, routed. Returns that frame.
fn expect_decap(h: &mut Harness, frame: Vec<u8>, pod: &str, inner: &[u8]) -> Vec<u8> {
    h.send("uplink", frame);
    let mut out = h.sent(pod);
    assert_eq!(out.len(), 1, "one frame out of {pod}");
    assert_eq!(&out[0][14..], &forwarded_ip(inner)[..]);
    out.pop().unwrap()
}

/// Sends `inner` from node2 through the tunnel and checks that pod2 got
/// nothing and the switch answered through the tunnel: one encapsulated
/// frame to node2 with IPv4 from `from` to the remote pod, TTL 64, inside.
/// Returns the ICMP message of the answer.
fn answered_through_tunnel(h: &mut Harness, inner: &[u8], from: Ipv4Addr) -> IcmpMsg {
    h.send("uplink", vxlan_from_remote(inner, VNI));
    assert!(h.sent("pod2").is_empty());
    let (_, vx) = only_encap(h);
    assert_eq!(ipv4_of(&vx.inner), (from, REMOTE_POD, 64));
    icmp_of(&vx.inner)
}

/// The counters are (encapsulated, decapsulated, routed, drops in total),
/// nothing else was sent and no frame leaked.
fn assert_tunnel_counts(h: &mut Harness, want: (u64, u64, u64, u64)) {
    let c = h.counters();
    assert_eq!(
        (c.vxlan_encap, c.vxlan_decap, c.routed, c.total_drops()),
        want,
        "(vxlan_encap, vxlan_decap, routed, total_drops)"
    );
    assert_nothing_sent(h);
    h.assert_no_frame_leak();
}

// ---------------------------------------------------------------------------
// Encapsulation.

#[test]
fn encap_pod_to_remote_pod_headers_exact() {
    let mut h = Harness::new();
    let orig = pod_udp(1, REMOTE_POD, 64, PAYLOAD);
    h.send("pod1", orig.clone());
    let (_, vx) = only_encap(&mut h);

    // The inner frame: the original packet, routed.
    assert_eq!(
        vx.inner.len(),
        orig.len(),
        "inner frame is the original frame's size"
    );
    assert_eq!(
        &vx.inner[14..],
        &forwarded_ip(&orig)[..],
        "inner IPv4 = original with TTL - 1"
    );
    let inner = parse_checked(&vx.inner);
    let Some(NetSlice::Ipv4(ip)) = &inner.net else {
        panic!("inner is not IPv4")
    };
    let ih = ip.header().to_header();
    assert_eq!(ih.time_to_live, 63);
    assert_eq!(
        ih.header_checksum,
        ih.calc_header_checksum(),
        "inner IPv4 checksum"
    );
    assert_eq!(
        (ih.source, ih.destination),
        (pod_ip(1).octets(), REMOTE_POD.octets())
    );
    assert!(ih.dont_fragment, "inner DF is the pod's");
    let Some(TransportSlice::Udp(u)) = &inner.transport else {
        panic!("inner is not UDP")
    };
    assert_eq!((u.source_port(), u.destination_port()), (40000, 5001));
    assert_eq!(u.payload(), PAYLOAD, "payload byte-identical");
    assert_tunnel_counts(&mut h, (1, 0, 1, 0));
}

#[test]
fn encap_tcp_and_icmp_also_tunnelled() {
    let mut h = Harness::new();
    for orig in [
        tcp_syn(pod_mac(1), GW_MAC, pod_ip(1), REMOTE_POD, 64),
        ping(pod_mac(1), GW_MAC, pod_ip(1), REMOTE_POD, 64, 9),
    ] {
        h.send("pod1", orig.clone());
        let (_, vx) = only_encap(&mut h);
        assert_eq!(&vx.inner[14..], &forwarded_ip(&orig)[..]);
    }
    assert_eq!(h.counters().vxlan_encap, 2);
    assert_eq!(h.counters().total_drops(), 0);
    assert_nothing_sent(&mut h);
    h.assert_no_frame_leak();
}

#[test]
fn encap_source_port_is_stable_per_flow() {
    let mut h = Harness::new();
    let a = outer_src_port(&mut h, pod1_udp_ports(REMOTE_POD, 33000, 53, b"first"));
    let b = outer_src_port(
        &mut h,
        pod1_udp_ports(REMOTE_POD, 33000, 53, b"second, longer payload"),
    );
    let c = outer_src_port(&mut h, pod1_udp_ports(REMOTE_POD, 33000, 53, b""));
    assert_eq!((a, a), (b, c), "same flow, same outer source port");
    let t1 = outer_src_port(
        &mut h,
        tcp_syn(pod_mac(1), GW_MAC, pod_ip(1), REMOTE_POD, 64),
    );
    let t2 = outer_src_port(
        &mut h,
        tcp_syn(pod_mac(1), GW_MAC, pod_ip(1), REMOTE_POD, 30),
    );
    assert_eq!(t1, t2, "TTL is not part of the flow");
    assert_eq!(h.counters().vxlan_encap, 5);
    h.assert_no_frame_leak();
}

#[test]
fn encap_source_port_spreads_flows() {
    let mut h = Harness::new();
    for sport in 10_000..10_200u16 {
        h.port("pod1")
            .inject(pod1_udp_ports(REMOTE_POD, sport, 5001, b"x"));
    }
    h.run();
    let out = h.sent("uplink");
    assert_eq!(out.len(), 200);
    let ports: HashSet<u16> = out
        .iter()
        .map(|f| check_encap_to_node2(f).udp.source_port)
        .collect();
    // 200 flows into 16384 ports: a hash that mixes the inner ports leaves
    // about one collision. 150 leaves a wide margin.
    assert!(
        ports.len() >= 150,
        "only {} distinct outer source ports for 200 flows",
        ports.len()
    );
    // Addresses count as well: the same ports to another pod or from another pod.
    let p1 = outer_src_port(&mut h, pod1_udp_ports(REMOTE_POD, 10_000, 5001, b"x"));
    let p2 = outer_src_port(
        &mut h,
        pod1_udp_ports(Ipv4Addr::new(10, 244, 2, 6), 10_000, 5001, b"x"),
    );
    assert_ne!(p1, p2, "destination address is part of the flow");
    assert_eq!(h.counters().total_drops(), 0);
    h.assert_no_frame_leak();
}

/// The fragments of one datagram are one flow: they must leave with the same
/// outer source port, or ECMP in the underlay and RSS at node2 may reorder
/// them (Linux's flow dissector does not use ports of any fragment by
/// default, first fragment included).
#[test]
fn encap_fragments_of_one_datagram_share_source_port() {
    let mut h = Harness::new();
    let frag = |mf: bool, offset: u16, payload: &[u8]| {
        let ip = fragment_header(pod_ip(1), REMOTE_POD, 64, 0x7777, mf, offset);
        raw_ipv4(pod_mac(1), GW_MAC, ip, payload)
    };
    // First fragment: UDP header (ports 40000 -> 5001, length 40) + 16 bytes.
    let mut first = vec![0x9c, 0x40, 0x13, 0x89, 0, 40, 0, 0];
    first.extend_from_slice(&[0xaa; 16]);
    let p_first = outer_src_port(&mut h, frag(true, 0, &first));
    let p_last = outer_src_port(&mut h, frag(false, 3, &[0xbb; 16]));
    assert_eq!(
        p_first, p_last,
        "fragments of one datagram took different outer source ports"
    );
    assert_eq!(h.counters().vxlan_encap, 2);
    h.assert_no_frame_leak();
}

#[test]
fn encap_largest_inner_packet_fills_uplink_mtu_exactly() {
    // Pods get the uplink's MTU here, so a 1450-byte packet is legal for them.
    let mut h = Harness::with(state_with_pod_mtu(1500), PipelineConfig::default());
    let orig = pod_udp(1, REMOTE_POD, 64, &[0x5a; 1450 - 28]);
    h.send("pod1", orig.clone());
    let (_, vx) = only_encap(&mut h);
    assert_eq!(
        vx.ip.total_len, 1500,
        "outer IPv4 packet is exactly the uplink MTU"
    );
    assert_eq!(&vx.inner[14..], &forwarded_ip(&orig)[..]);
    assert_eq!(h.counters().total_drops(), 0);
    h.assert_no_frame_leak();
}

#[test]
fn encap_respects_uplink_mtu_frag_needed_with_mtu_1450() {
    let mut h = Harness::with(state_with_pod_mtu(1500), PipelineConfig::default());
    let mut expected_drops = 0;
    for ip_len in [1451usize, 1464, 1465, 1500] {
        // Fits the pod's MTU (1500); with 50 bytes of overhead it does not fit the uplink's.
        let orig = pod_udp(1, REMOTE_POD, 64, &vec![0x5a; ip_len - 28]);
        h.send("pod1", orig.clone());
        expected_drops += 1;
        assert!(
            h.sent("uplink").is_empty(),
            "{ip_len}-byte packet was encapsulated past the uplink MTU"
        );
        let back = h.sent("pod1");
        assert_eq!(back.len(), 1, "{ip_len}: one ICMP error back to the pod");
        assert_eq!(ipv4_of(&back[0]), (NODE_IP, pod_ip(1), 64));
        assert_eq!(macs_of(&back[0]), (GW_MAC, pod_mac(1)));
        let icmp = icmp_of(&back[0]);
        assert_eq!(
            (icmp.ty, icmp.code),
            (3, 4),
            "{ip_len}: fragmentation needed"
        );
        assert_eq!(
            icmp.rest,
            [0, 0, 0x05, 0xaa],
            "{ip_len}: next-hop MTU 1450 = 1500 - 50"
        );
        assert_eq!(
            &icmp.payload[..],
            &orig[14..14 + 548],
            "{ip_len}: quote of the original, cut to 576 bytes"
        );
        assert_eq!(h.drops(DropReason::MtuExceeded), expected_drops);
    }
    let c = h.counters();
    assert_eq!((c.vxlan_encap, c.icmp_errors, c.total_drops()), (0, 4, 4));
    assert_nothing_sent(&mut h);
    h.assert_no_frame_leak();
}

#[test]
fn encap_oversize_without_df_is_dropped() {
    let mut h = Harness::with(state_with_pod_mtu(1500), PipelineConfig::default());
    for (n, ip_len) in [1451usize, 1500].into_iter().enumerate() {
        let mut orig = pod_udp(1, REMOTE_POD, 64, &vec![0x5a; ip_len - 28]);
        orig[14 + 6] &= !0x40; // clear DF
        fix_ipv4_checksum(&mut orig, 14);
        h.send("pod1", orig);
        assert!(
            h.sent("uplink").is_empty(),
            "{ip_len}-byte packet was encapsulated past the uplink MTU"
        );
        assert!(h.sent("pod1").is_empty(), "no ICMP without DF");
        assert_eq!(h.drops(DropReason::MtuExceeded), n as u64 + 1);
    }
    assert_eq!(h.counters().icmp_errors, 0);
    h.assert_no_frame_leak();
}

// ---------------------------------------------------------------------------
// Decapsulation.

#[test]
fn decap_delivers_inner_packet_to_pod() {
    let mut h = Harness::new();
    let inner = inner_udp(pod_ip(2), 64, PAYLOAD);
    let frame = vxlan_from_remote(&inner, VNI);
    // The harness's builder fills in a real UDP checksum, as Linux does for
    // VXLAN over IPv4 only when asked to: this is the non-zero, correct case.
    assert_ne!(
        u16::from_be_bytes([frame[OUTER_UDP + 6], frame[OUTER_UDP + 7]]),
        0
    );
    let out = expect_decap(&mut h, frame, "pod2", &inner);
    assert_eq!(ipv4_of(&out), (REMOTE_POD, pod_ip(2), 63));
    assert_eq!(macs_of(&out), (GW_MAC, pod_mac(2)));
    assert_eq!(
        out.len(),
        inner.len(),
        "outer headers removed, nothing else"
    );
    let p = parse_checked(&out);
    let Some(TransportSlice::Udp(u)) = &p.transport else {
        panic!("not UDP")
    };
    assert_eq!(u.payload(), PAYLOAD, "payload byte-identical");
    assert_tunnel_counts(&mut h, (0, 1, 1, 0));
}

#[test]
fn decap_accepts_zero_and_valid_udp_checksum() {
    let mut h = Harness::new();
    let inner = inner_udp(pod_ip(3), 64, PAYLOAD);
    for (n, sum) in [UdpSum::Zero, UdpSum::Valid].into_iter().enumerate() {
        let o = Outer {
            udp_sum: sum,
            ..Outer::from_remote()
        };
        expect_decap(&mut h, o.frame(&inner), "pod3", &inner);
        assert_eq!(h.counters().vxlan_decap, n as u64 + 1, "{sum:?} checksum");
    }
    assert_eq!(h.counters().total_drops(), 0);
    assert_nothing_sent(&mut h);
    h.assert_no_frame_leak();
}

#[test]
fn decap_wrong_udp_checksum_is_malformed() {
    let mut h = Harness::new();
    let o = Outer {
        udp_sum: UdpSum::Wrong,
        ..Outer::from_remote()
    };
    let frame = o.frame(&inner_udp(pod_ip(2), 64, PAYLOAD));
    assert_ne!(
        u16::from_be_bytes([frame[OUTER_UDP + 6], frame[OUTER_UDP + 7]]),
        0
    );
    h.send("uplink", frame);
    assert_dropped_only(&mut h, DropReason::MalformedVxlan, 1);
    assert_eq!(h.counters().vxlan_decap, 0);
    h.assert_no_frame_leak();
}

/// `expect_drop` on the uplink for malformed VXLAN: `frame`, then `frame`
/// followed by Ethernet `padding` ("`what`, padded").
fn expect_malformed_vxlan(h: &mut Harness, frame: Vec<u8>, padding: &[u8], what: &str) {
    let padded = [&frame[..], padding].concat();
    expect_drop(h, "uplink", frame, DropReason::MalformedVxlan, what);
    let what = format!("{what}, padded");
    expect_drop(h, "uplink", padded, DropReason::MalformedVxlan, &what);
}

#[test]
fn decap_wrong_vni_or_i_flag_clear_is_wrong_vni() {
    let mut h = Harness::new();
    let inner = inner_udp(pod_ip(2), 64, PAYLOAD);
    let mut cases: Vec<(String, Outer)> = Vec::new();
    for vni in [43, 0, 0x00ff_ffff, 42 << 8] {
        let o = Outer {
            vni,
            ..Outer::from_remote()
        };
        cases.push((format!("VNI {vni}"), o));
    }
    for flags in [0x00, 0xf7] {
        let o = Outer {
            flags,
            ..Outer::from_remote()
        };
        cases.push((format!("flags {flags:#04x}"), o));
    }
    for (what, o) in cases {
        let f = o.frame(&inner);
        expect_drop(&mut h, "uplink", f, DropReason::VxlanWrongVni, &what);
    }
    // The harness builder agrees.
    expect_drop(
        &mut h,
        "uplink",
        vxlan_from_remote(&inner, 7),
        DropReason::VxlanWrongVni,
        "harness VNI 7",
    );
    assert_eq!(h.drops(DropReason::VxlanWrongVni), 7);
    h.assert_no_frame_leak();
}

#[test]
fn decap_ignores_reserved_bits() {
    // RFC 7348 section 5: reserved fields MUST be ignored on receipt.
    let mut h = Harness::new();
    let inner = inner_udp(pod_ip(2), 64, PAYLOAD);
    let mut payload = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 42, 0xff];
    payload.extend_from_slice(&inner);
    let f = Outer::from_remote().frame_raw(&payload);
    expect_decap(&mut h, f, "pod2", &inner);
    assert_eq!(h.counters().vxlan_decap, 1);
    assert_eq!(h.counters().total_drops(), 0);
    h.assert_no_frame_leak();
}

#[test]
fn decap_truncated_vxlan_header_is_malformed() {
    let mut h = Harness::new();
    for n in [0usize, 1, 4, 7] {
        // UDP length = 8 + n: consistent, just too short for a VXLAN header.
        let hdr = Outer::from_remote().vxlan_header();
        let frame = Outer::from_remote().frame_raw(&hdr[..n]);
        // Ethernet padding (to 60 bytes) is not a VXLAN header either.
        let padding = vec![0x08; 60 - frame.len()];
        expect_malformed_vxlan(&mut h, frame, &padding, &format!("{n}-byte VXLAN header"));
    }
    assert_eq!(h.drops(DropReason::MalformedVxlan), 8);
    h.assert_no_frame_leak();
}

#[test]
fn decap_truncated_inner_frame_is_bad_inner() {
    let mut h = Harness::new();
    let inner = inner_udp(pod_ip(2), 64, PAYLOAD);
    for n in [0usize, 1, 13] {
        let frame = Outer::from_remote().frame(&inner[..n]);
        let what = format!("{n}-byte inner frame");
        expect_drop(&mut h, "uplink", frame, DropReason::VxlanBadInner, &what);
    }
    assert_eq!(h.drops(DropReason::VxlanBadInner), 3);
    h.assert_no_frame_leak();
}

#[test]
fn decap_inner_not_ipv4_to_our_vtep_mac_is_bad_inner() {
    let mut h = Harness::new();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "inner dst is node2's VTEP MAC",
            udp(
                REMOTE_VTEP_MAC,
                REMOTE_VTEP_MAC,
                REMOTE_POD,
                pod_ip(2),
                64,
                PAYLOAD,
            ),
        ),
        (
            "inner dst is the gateway MAC",
            udp(REMOTE_VTEP_MAC, GW_MAC, REMOTE_POD, pod_ip(2), 64, PAYLOAD),
        ),
        (
            "inner dst is broadcast",
            udp(
                REMOTE_VTEP_MAC,
                [0xff; 6],
                REMOTE_POD,
                pod_ip(2),
                64,
                PAYLOAD,
            ),
        ),
        (
            "inner ARP request, broadcast",
            arp_request(REMOTE_VTEP_MAC, REMOTE_POD, pod_ip(2)),
        ),
        ("inner ARP to our VTEP MAC", {
            let mut a = arp_request(REMOTE_VTEP_MAC, REMOTE_POD, pod_ip(2));
            a[..6].copy_from_slice(&VTEP_MAC);
            a
        }),
        ("inner 802.1Q-tagged IPv4", {
            let i = inner_udp(pod_ip(2), 64, PAYLOAD);
            tagged(REMOTE_VTEP_MAC, VTEP_MAC, 5, 0x0800, &i[14..])
        }),
        (
            "inner IPv6",
            ipv6_udp(
                REMOTE_VTEP_MAC,
                VTEP_MAC,
                Ipv6Addr::from([0xfd; 16]),
                Ipv6Addr::from([0xfe; 16]),
                (1, 2),
                PAYLOAD,
            ),
        ),
    ];
    let n = cases.len() as u64;
    for (what, inner) in cases {
        let f = vxlan_from_remote(&inner, VNI);
        expect_drop(&mut h, "uplink", f, DropReason::VxlanBadInner, what);
    }
    assert_eq!(h.drops(DropReason::VxlanBadInner), n);
    h.assert_no_frame_leak();
}

#[test]
fn decap_outer_fragment_is_vxlan_fragmented() {
    let mut h = Harness::new();
    let inner = inner_udp(pod_ip(2), 64, PAYLOAD);
    for (more_fragments, frag_offset, what) in [
        (true, 0, "first fragment (MF)"),
        (false, 185, "last fragment (offset)"),
        (true, 1, "middle fragment"),
    ] {
        let o = Outer {
            more_fragments,
            frag_offset,
            ..Outer::from_remote()
        };
        let f = o.frame(&inner);
        expect_drop(&mut h, "uplink", f, DropReason::VxlanFragmented, what);
    }
    assert_eq!(h.drops(DropReason::VxlanFragmented), 3);
    h.assert_no_frame_leak();
}

#[test]
fn decap_udp_length_that_lies_is_malformed() {
    let mut h = Harness::new();
    let inner = inner_udp(pod_ip(2), 64, PAYLOAD);
    let good = Outer::from_remote().frame(&inner);
    let udp_len = u16::from_be_bytes([good[OUTER_UDP + 4], good[OUTER_UDP + 5]]);
    assert_eq!(usize::from(udp_len), good.len() - OUTER_UDP);
    for bad in [udp_len + 1, udp_len + 100, 0xffff, 7, 0] {
        let mut f = good.clone();
        f[OUTER_UDP + 4..OUTER_UDP + 6].copy_from_slice(&bad.to_be_bytes());
        // Ethernet padding after the datagram does not make a longer UDP length true.
        expect_malformed_vxlan(&mut h, f, &[0; 64], &format!("UDP length {bad}"));
    }
    assert_eq!(h.drops(DropReason::MalformedVxlan), 10);
    h.assert_no_frame_leak();
}

#[test]
fn decap_inner_frame_ends_where_udp_length_says() {
    let mut h = Harness::new();
    let inner = inner_udp(pod_ip(2), 64, PAYLOAD);
    let good = Outer::from_remote().frame(&inner);
    let short = |udp_len: usize| {
        let mut f = good.clone();
        f[OUTER_UDP + 4..OUTER_UDP + 6]
            .copy_from_slice(&u16::try_from(udp_len).unwrap().to_be_bytes());
        f
    };
    // UDP length cuts the inner frame to 13 bytes: too short for Ethernet.
    expect_drop(
        &mut h,
        "uplink",
        short(8 + 8 + 13),
        DropReason::VxlanBadInner,
        "UDP length leaves 13 inner bytes",
    );
    assert_eq!(h.counters().vxlan_decap, 0);
    // UDP length cuts the inner frame after the inner IPv4 header: the
    // tunnel is fine, but the inner total length now lies.
    h.send("uplink", short(8 + 8 + 14 + 20));
    assert_eq!(h.counters().vxlan_decap, 1);
    assert_eq!(h.drops(DropReason::MalformedIpv4), 1);
    assert_eq!(h.counters().total_drops(), 2);
    assert_nothing_sent(&mut h);
    // A UDP length that ends exactly at the inner datagram (trailing bytes
    // in the IP payload after it) is fine: they are not part of the frame.
    let mut f = Outer::from_remote().frame(&[&inner[..], &[0xee; 9][..]].concat());
    let udp_len = u16::try_from(8 + 8 + inner.len()).unwrap();
    f[OUTER_UDP + 4..OUTER_UDP + 6].copy_from_slice(&udp_len.to_be_bytes());
    expect_decap(&mut h, f, "pod2", &inner);
    assert_eq!(h.counters().vxlan_decap, 2);
    assert_eq!(h.counters().total_drops(), 2);
    h.assert_no_frame_leak();
}

/// On a fresh harness, sends node2's VXLAN frame to pod2 with its outer
/// IPv4 header changed by `edit` (checksum then recomputed), and checks it
/// is decapsulated and delivered like any other: one decapsulation, no
/// drops, no frame leaked.
fn assert_decapsulated_despite(edit: impl FnOnce(&mut Vec<u8>)) {
    let mut h = Harness::new();
    let inner = inner_udp(pod_ip(2), 64, PAYLOAD);
    let mut f = Outer::from_remote().frame(&inner);
    edit(&mut f);
    fix_ipv4_checksum(&mut f, OUTER_IP);
    expect_decap(&mut h, f, "pod2", &inner);
    assert_eq!(h.counters().vxlan_decap, 1);
    assert_eq!(h.counters().total_drops(), 0);
    h.assert_no_frame_leak();
}

#[test]
fn decap_outer_ipv4_options_are_skipped() {
    assert_decapsulated_despite(|f| {
        // Four NOP options: IHL 6.
        f.splice(OUTER_IP + 20..OUTER_IP + 20, [1, 1, 1, 1]);
        f[OUTER_IP] = 0x46;
        let total = u16::from_be_bytes([f[OUTER_IP + 2], f[OUTER_IP + 3]]) + 4;
        f[OUTER_IP + 2..OUTER_IP + 4].copy_from_slice(&total.to_be_bytes());
    });
}

#[test]
fn vxlan_on_pod_port_is_not_decapsulated() {
    let mut h = Harness::new();
    let inner = inner_udp(pod_ip(2), 64, PAYLOAD);
    // A pod sends a well-formed VXLAN packet to our VTEP address.
    let o = Outer {
        src_mac: pod_mac(1),
        dst_mac: GW_MAC,
        src_ip: pod_ip(1),
        ..Outer::from_remote()
    };
    h.send("pod1", o.frame(&inner));
    assert!(h.sent("pod2").is_empty(), "the inner packet reached pod2");
    assert_eq!(h.counters().vxlan_decap, 0);
    // It is ordinary UDP to the node's own address: local, and the switch
    // has no UDP service.
    assert_dropped_only(&mut h, DropReason::LocalUnsupported, 1);
    h.assert_no_frame_leak();
}

#[test]
fn vxlan_on_bridged_port_is_bridged_untouched() {
    let mut h = Harness::new();
    let frame = vxlan_from_remote(&inner_udp(pod_ip(2), 64, PAYLOAD), VNI);
    h.send("br1", frame.clone());
    assert_eq!(h.sent("br2"), vec![frame.clone()]);
    assert_eq!(h.sent("br3"), vec![frame]);
    let c = h.counters();
    assert_eq!((c.vxlan_decap, c.flooded, c.total_drops()), (0, 1, 0));
    assert_nothing_sent(&mut h);
    h.assert_no_frame_leak();
}

#[test]
fn vxlan_to_another_udp_port_is_not_decapsulated() {
    let mut h = Harness::new();
    let o = Outer {
        dst_port: 4790,
        ..Outer::from_remote()
    };
    h.send("uplink", o.frame(&inner_udp(pod_ip(2), 64, PAYLOAD)));
    // Ordinary UDP to our node address: local, not forwarded, no error.
    assert_eq!(h.counters().vxlan_decap, 0);
    assert_dropped_only(&mut h, DropReason::LocalUnsupported, 1);
    h.assert_no_frame_leak();
}

#[test]
fn vxlan_to_another_address_is_routed_as_ordinary_udp() {
    let mut h = Harness::new();
    // VXLAN from node2 to 172.16.0.9, hairpinned through the uplink.
    let o = Outer {
        dst_ip: EXTERNAL,
        udp_sum: UdpSum::Valid,
        ..Outer::from_remote()
    };
    let frame = o.frame(&inner_udp(pod_ip(2), 64, PAYLOAD));
    h.send("uplink", frame.clone());
    let out = h.sent("uplink");
    assert_eq!(out.len(), 1);
    assert_eq!(macs_of(&out[0]), (UPLINK_MAC, ROUTER_MAC));
    assert_eq!(
        &out[0][14..],
        &forwarded_ip(&frame)[..],
        "routed, tunnel untouched"
    );
    assert!(h.sent("pod2").is_empty());
    assert_tunnel_counts(&mut h, (0, 0, 1, 0));
}

// ---------------------------------------------------------------------------
// Through the tunnel and back.

#[test]
fn round_trip_reply_reaches_pod() {
    let mut h = Harness::new();
    h.send("pod1", pod_udp(1, REMOTE_POD, 64, PAYLOAD));
    let (out, _) = only_encap(&mut h);
    // node2 answers: the same frame turned around, outer and inner.
    let mut reply = turn_around_outer(&out);
    swap(&mut reply, INNER_IP + 12, INNER_IP + 16, 4);
    swap(&mut reply, INNER_IP + 20, INNER_IP + 22, 2);
    h.send("uplink", reply);
    let got = h.sent("pod1");
    assert_eq!(got.len(), 1);
    assert_eq!(ipv4_of(&got[0]), (REMOTE_POD, pod_ip(1), 62));
    assert_eq!(macs_of(&got[0]), (GW_MAC, pod_mac(1)));
    let p = parse_checked(&got[0]);
    let Some(TransportSlice::Udp(u)) = &p.transport else {
        panic!("not UDP")
    };
    assert_eq!((u.source_port(), u.destination_port()), (5001, 40000));
    assert_eq!(u.payload(), PAYLOAD);
    assert_tunnel_counts(&mut h, (1, 1, 2, 0));
}

#[test]
fn decapped_packet_for_remote_pod_is_reencapsulated() {
    let mut h = Harness::new();
    // A node2 pod's packet for another node2 address, hairpinned through
    // us (node2 routed it our way): decapsulated, routed, encapsulated
    // straight back (VXLAN in, VXLAN out).
    let other_remote_pod = Ipv4Addr::new(10, 244, 2, 6);
    let inner = inner_udp(other_remote_pod, 64, PAYLOAD);
    h.send("uplink", vxlan_from_remote(&inner, VNI));
    let (out, vx) = only_encap(&mut h);
    assert_eq!(
        &vx.inner[14..],
        &forwarded_ip(&inner)[..],
        "inner packet routed once: TTL 63"
    );
    assert_eq!(
        &out[VXLAN_HDR..VXLAN_HDR + 8],
        &[0x08, 0, 0, 0, 0, 0, 42, 0]
    );
    assert_tunnel_counts(&mut h, (1, 1, 1, 0));
}

#[test]
fn node2_cannot_send_packets_claiming_our_pods_addresses() {
    let mut h = Harness::new();
    // Our own encapsulated packet, turned around by node2: its inner source
    // is pod1, an address node2 does not own.
    h.send("pod1", pod_udp(1, REMOTE_POD, 64, PAYLOAD));
    let (first, _) = only_encap(&mut h);
    h.send("uplink", turn_around_outer(&first));
    assert_dropped_only(&mut h, DropReason::VxlanSpoofedInner, 1);
    assert_eq!(h.counters().vxlan_decap, 0);
    h.assert_no_frame_leak();
}

#[test]
fn vxlan_from_an_unknown_vtep_is_refused() {
    let mut h = Harness::new();
    let o = Outer {
        src_ip: Ipv4Addr::new(192, 168, 50, 99),
        ..Outer::from_remote()
    };
    h.send("uplink", o.frame(&inner_udp(pod_ip(2), 64, PAYLOAD)));
    assert_dropped_only(&mut h, DropReason::VxlanUnknownPeer, 1);
    h.assert_no_frame_leak();
}

#[test]
fn nested_vxlan_is_decapsulated_only_once() {
    let mut h = Harness::new();
    let innermost = inner_udp(pod_ip(2), 64, PAYLOAD);
    // The decapsulated frame is itself VXLAN from node2 to our VTEP, sent to
    // our VTEP MAC: it would reach pod2 if decapsulated a second time.
    let middle = Outer {
        src_mac: REMOTE_VTEP_MAC,
        dst_mac: VTEP_MAC,
        ..Outer::from_remote()
    }
    .frame(&innermost);
    h.send("uplink", vxlan_from_remote(&middle, VNI));
    assert!(h.sent("pod2").is_empty(), "decapsulated twice");
    let c = h.counters();
    assert_eq!(c.vxlan_decap, 1, "exactly one decapsulation");
    // The middle packet is plain UDP to our own address, which belongs to
    // the node's stack: delivered locally, not decapsulated again.
    assert_eq!(c.drops_of(DropReason::LocalUnsupported), 1);
    assert_eq!(c.total_drops(), 1);
    assert_eq!(c.icmp_errors, 0);
    assert_nothing_sent(&mut h);
    h.assert_no_frame_leak();
}

#[test]
fn decapped_ttl_expiry_answers_through_the_tunnel() {
    let mut h = Harness::new();
    let inner = inner_udp(pod_ip(2), 1, PAYLOAD);
    let icmp = answered_through_tunnel(&mut h, &inner, NODE_IP);
    assert_eq!((icmp.ty, icmp.code), (11, 0));
    assert_eq!(
        &icmp.payload[..],
        &inner[14..],
        "quote: the inner datagram as received"
    );
    let c = h.counters();
    assert_eq!((c.vxlan_decap, c.vxlan_encap, c.icmp_errors), (1, 1, 1));
    assert_eq!(c.drops_of(DropReason::TtlExpired), 1);
    assert_eq!(c.total_drops(), 1);
    h.assert_no_frame_leak();
}

#[test]
fn remote_ping_to_gateway_is_answered_through_the_tunnel() {
    let mut h = Harness::new();
    let inner = ping(REMOTE_VTEP_MAC, VTEP_MAC, REMOTE_POD, GATEWAY, 64, 77);
    let icmp = answered_through_tunnel(&mut h, &inner, GATEWAY);
    assert_eq!((icmp.ty, icmp.code), (0, 0));
    assert_eq!(icmp.rest, [0x12, 0x34, 0, 77]);
    assert_eq!(&icmp.payload[..], b"xvs ping payload");
    let c = h.counters();
    assert_eq!(
        (
            c.vxlan_decap,
            c.vxlan_encap,
            c.echo_replies,
            c.total_drops()
        ),
        (1, 1, 1, 0)
    );
    h.assert_no_frame_leak();
}

#[test]
fn decap_outer_ttl_1_is_still_decapsulated() {
    // The outer packet is addressed to us: its TTL is not checked.
    assert_decapsulated_despite(|f| f[OUTER_IP + 8] = 1);
}

#[test]
fn decapped_packet_over_pod_mtu_gets_frag_needed_through_the_tunnel() {
    let mut h = Harness::new();
    // 1451 bytes of IPv4 with DF for pod2, whose MTU is 1450.
    let inner = inner_udp(pod_ip(2), 64, &[0x77; 1451 - 28]);
    let icmp = answered_through_tunnel(&mut h, &inner, NODE_IP);
    assert_eq!((icmp.ty, icmp.code), (3, 4));
    assert_eq!(icmp.rest, [0, 0, 0x05, 0xaa], "next-hop MTU 1450");
    assert_eq!(&icmp.payload[..], &inner[14..14 + 548]);
    let c = h.counters();
    assert_eq!((c.vxlan_decap, c.vxlan_encap, c.icmp_errors), (1, 1, 1));
    assert_eq!(c.drops_of(DropReason::MtuExceeded), 1);
    assert_eq!(c.total_drops(), 1);
    h.assert_no_frame_leak();
}

// ---------------------------------------------------------------------------
// ECN across the tunnel (RFC 6040).

/// ECN codepoints (RFC 3168).
const NOT_ECT: u8 = 0b00;
const ECT1: u8 = 0b01;
const ECT0: u8 = 0b10;
const CE: u8 = 0b11;
/// DSCP EF (46) in the upper six bits of the TOS byte.
const DSCP_EF: u8 = 46 << 2;

/// `frame` (an IPv4 frame without a tag) with TOS byte `tos` and its IPv4
/// header checksum recomputed.
fn with_tos(mut frame: Vec<u8>, tos: u8) -> Vec<u8> {
    frame[14 + 1] = tos;
    fix_ipv4_checksum(&mut frame, 14);
    frame
}

/// node2's VXLAN frame around `inner` with outer TOS byte `tos`.
fn from_remote_with_outer_tos(inner: &[u8], tos: u8) -> Vec<u8> {
    let mut f = Outer::from_remote().frame(inner);
    f[OUTER_IP + 1] = tos;
    fix_ipv4_checksum(&mut f, OUTER_IP);
    f
}

#[test]
fn encap_copies_inner_ecn_to_the_outer_header_but_ce_becomes_ect0() {
    let mut h = Harness::new();
    let cases = [
        (NOT_ECT, NOT_ECT, "Not-ECT"),
        (ECT1, ECT1, "ECT(1)"),
        (ECT0, ECT0, "ECT(0)"),
        (CE, ECT0, "CE"),
    ];
    let mut n = 0;
    for (inner_ecn, outer_ecn, what) in cases {
        for dscp in [0, DSCP_EF] {
            let orig = with_tos(pod_udp(1, REMOTE_POD, 64, PAYLOAD), dscp | inner_ecn);
            h.send("pod1", orig.clone());
            let (frame, vx) = only_encap(&mut h);
            n += 1;
            assert_eq!(vx.ip.ecn.value(), outer_ecn, "inner {what}: outer ECN");
            // The DSCP is not inherited (Linux's VXLAN default, `tos 0`).
            assert_eq!(
                frame[OUTER_IP + 1],
                outer_ecn,
                "inner {what}, DSCP {dscp:#x}: outer TOS byte"
            );
            // The inner packet keeps its own TOS, CE included.
            assert_eq!(
                vx.inner[14 + 1],
                dscp | inner_ecn,
                "inner {what}: inner TOS"
            );
            assert_eq!(&vx.inner[14..], &forwarded_ip(&orig)[..], "inner {what}");
        }
    }
    assert_tunnel_counts(&mut h, (n, 0, n, 0));
}

#[test]
fn decap_outer_ce_is_copied_onto_an_ecn_capable_inner_packet() {
    let mut h = Harness::new();
    for inner_ecn in [ECT0, ECT1, CE] {
        for outer_tos in [CE, DSCP_EF | CE] {
            let inner = with_tos(inner_udp(pod_ip(2), 64, PAYLOAD), DSCP_EF | inner_ecn);
            // What pod2 must get: the inner packet marked CE (DSCP kept),
            // checksum valid, then routed.
            let want = with_tos(inner.clone(), DSCP_EF | CE);
            let frame = from_remote_with_outer_tos(&inner, outer_tos);
            let out = expect_decap(&mut h, frame, "pod2", &want);
            assert_eq!(
                out[14 + 1],
                DSCP_EF | CE,
                "inner ECN {inner_ecn:#04b}, outer TOS {outer_tos:#x}"
            );
            assert_eq!(ipv4_of(&out), (REMOTE_POD, pod_ip(2), 63));
        }
    }
    assert_tunnel_counts(&mut h, (0, 6, 6, 0));
}

#[test]
fn decap_outer_ce_over_a_not_ect_inner_packet_is_dropped() {
    let mut h = Harness::new();
    for (inner_tos, outer_tos) in [(NOT_ECT, CE), (DSCP_EF, CE), (NOT_ECT, DSCP_EF | CE)] {
        let inner = with_tos(inner_udp(pod_ip(2), 64, PAYLOAD), inner_tos);
        let frame = from_remote_with_outer_tos(&inner, outer_tos);
        let what = format!("inner TOS {inner_tos:#x}, outer TOS {outer_tos:#x}");
        expect_drop(&mut h, "uplink", frame, DropReason::VxlanEcnDrop, &what);
    }
    assert_eq!(h.drops(DropReason::VxlanEcnDrop), 3);
    h.assert_no_frame_leak();
}

#[test]
fn decap_without_outer_ce_leaves_the_inner_ecn_alone() {
    let mut h = Harness::new();
    // (outer ECN, inner ECN): the inner packet is delivered as it was,
    // apart from its TTL.
    let cases = [
        (ECT0, ECT1),
        (ECT0, ECT0),
        (NOT_ECT, CE),
        (ECT0, CE),
        (NOT_ECT, ECT0),
        (ECT0, NOT_ECT),
        (ECT1, NOT_ECT),
    ];
    for (outer_ecn, inner_ecn) in cases {
        let inner = with_tos(inner_udp(pod_ip(2), 64, PAYLOAD), DSCP_EF | inner_ecn);
        let frame = from_remote_with_outer_tos(&inner, outer_ecn);
        let out = expect_decap(&mut h, frame, "pod2", &inner);
        assert_eq!(
            out[14 + 1],
            DSCP_EF | inner_ecn,
            "outer {outer_ecn:#04b}, inner {inner_ecn:#04b}"
        );
    }
    assert_tunnel_counts(&mut h, (0, 7, 7, 0));
}

// ---------------------------------------------------------------------------
// Which inner sources node2 may use.

#[test]
fn node2s_own_vtep_address_is_an_accepted_inner_source() {
    let mut h = Harness::new();
    // node2 itself reports that pod1's packet expired there: an ICMP time
    // exceeded from its VTEP address, quoting pod1's datagram.
    let quoted = pod_udp(1, REMOTE_POD, 1, PAYLOAD);
    let b = etherparse::PacketBuilder::ethernet2(REMOTE_VTEP_MAC, VTEP_MAC)
        .ipv4(REMOTE_VTEP.octets(), pod_ip(1).octets(), 64)
        .icmpv4_raw(11, 0, [0; 4]);
    let quote = &quoted[14..14 + 28];
    let mut inner = Vec::with_capacity(b.size(quote.len()));
    b.write(&mut inner, quote).unwrap();

    let out = expect_decap(&mut h, vxlan_from_remote(&inner, VNI), "pod1", &inner);
    assert_eq!(macs_of(&out), (GW_MAC, pod_mac(1)));
    assert_eq!(ipv4_of(&out), (REMOTE_VTEP, pod_ip(1), 63));
    let e = icmp_of(&out);
    assert_eq!((e.ty, e.code), (11, 0));
    assert_eq!(e.payload, quote);

    // Plain UDP from node2's VTEP address too.
    let inner = udp(
        REMOTE_VTEP_MAC,
        VTEP_MAC,
        REMOTE_VTEP,
        pod_ip(3),
        64,
        PAYLOAD,
    );
    expect_decap(&mut h, vxlan_from_remote(&inner, VNI), "pod3", &inner);
    assert_tunnel_counts(&mut h, (0, 2, 2, 0));
}

#[test]
fn node2_cannot_send_from_random_addresses_it_does_not_own() {
    let mut h = Harness::new();
    let sources = [
        (Ipv4Addr::new(10, 244, 3, 5), "a third node's pod CIDR"),
        (Ipv4Addr::new(10, 244, 1, 99), "our pod CIDR"),
        (Ipv4Addr::new(8, 8, 8, 8), "the internet"),
        (EXTERNAL, "behind our static route"),
        (Ipv4Addr::new(192, 168, 50, 3), "next to its VTEP address"),
        (NODE_IP, "our own VTEP address"),
    ];
    for (src, what) in sources {
        let inner = udp(REMOTE_VTEP_MAC, VTEP_MAC, src, pod_ip(2), 64, PAYLOAD);
        let f = vxlan_from_remote(&inner, VNI);
        let what = format!("inner source {src}: {what}");
        expect_drop(&mut h, "uplink", f, DropReason::VxlanSpoofedInner, &what);
    }
    assert_eq!(h.drops(DropReason::VxlanSpoofedInner), 6);
    // Its own pod CIDR, edges included, is accepted.
    for src in [Ipv4Addr::new(10, 244, 2, 1), Ipv4Addr::new(10, 244, 2, 254)] {
        let inner = udp(REMOTE_VTEP_MAC, VTEP_MAC, src, pod_ip(2), 64, PAYLOAD);
        expect_decap(&mut h, vxlan_from_remote(&inner, VNI), "pod2", &inner);
    }
    assert_tunnel_counts(&mut h, (0, 2, 2, 6));
}
