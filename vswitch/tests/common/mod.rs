//! Shared harness of the pipeline tests: a node with three pods, an uplink
//! with a VXLAN overlay to one remote node, and a three-port bridge domain,
//! all on in-memory ports. Frames are built and checked with etherparse, a
//! parser independent of the smoltcp views the datapath uses.
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use etherparse::{
    ArpOperation, EtherType, Ethernet2Header, IpFragOffset, IpNumber, Ipv4Header, NetSlice,
    PacketBuilder, SlicedPacket, TransportSlice,
};
use xvs_control::state::{
    DesiredState, MacAddr, NodeSpec, PortKind, PortSpec, RemoteNodeSpec, RouteSpec, VxlanSpec,
    DEFAULT_GATEWAY_MAC, DEFAULT_POD_GATEWAY,
};
use xvs_vswitch::drop::{Counters, DropReason};
use xvs_vswitch::handoff::{self, Inbox};
use xvs_vswitch::packet::{FramePool, HeapFramePool};
use xvs_vswitch::pipeline::PipelineConfig;
use xvs_vswitch::port::MemoryPort;
use xvs_vswitch::snapshot::Snapshot;
use xvs_vswitch::worker::{PortSlot, Worker};

pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
pub const REMOTE_VTEP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
pub const GATEWAY: Ipv4Addr = DEFAULT_POD_GATEWAY;
pub const GW_MAC: [u8; 6] = DEFAULT_GATEWAY_MAC.0;
pub const UPLINK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xff, 0x01];
pub const UNDERLAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xff, 0x02];
pub const VTEP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xee, 0x01];
pub const REMOTE_VTEP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xee, 0x02];
pub const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xfe, 0x01];
pub const VNI: u32 = 42;
pub const POD_MTU: u16 = 1450;

/// Pod `n` (1..=3): address 10.244.1.(10+n), MAC 02:00:00:00:01:0n.
pub fn pod_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 1, 10 + n)
}
pub fn pod_mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0x01, n]
}
/// A pod on the remote node.
pub const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 5);
/// An address reached through the static route out of the uplink.
pub const EXTERNAL: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 9);
/// An address with no route at all.
pub const UNROUTABLE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

/// Port names in `PortId` order: pod1, pod2, pod3, uplink, br1, br2, br3.
pub const PORTS: [&str; 7] = ["pod1", "pod2", "pod3", "uplink", "br1", "br2", "br3"];

pub fn state() -> DesiredState {
    let mut ports: Vec<PortSpec> = (1..=3)
        .map(|n| PortSpec {
            attachment: None,
            name: format!("pod{n}"),
            kind: PortKind::Pod {
                ip: pod_ip(n),
                mac: MacAddr(pod_mac(n)),
            },
            mtu: POD_MTU,
        })
        .collect();
    ports.push(PortSpec {
        attachment: None,
        name: "uplink".into(),
        kind: PortKind::Uplink {
            mac: MacAddr(UPLINK_MAC),
        },
        mtu: 1500,
    });
    for n in 1..=3 {
        ports.push(PortSpec {
            attachment: None,
            name: format!("br{n}"),
            kind: PortKind::Bridged { domain: 7 },
            mtu: 1500,
        });
    }
    DesiredState {
        node: NodeSpec {
            node_ip: NODE_IP,
            pod_cidr: "10.244.1.0/24".parse().unwrap(),
            gateway_ip: GATEWAY,
            gateway_mac: DEFAULT_GATEWAY_MAC,
            vxlan: Some(VxlanSpec {
                vni: VNI,
                vtep_ip: NODE_IP,
                vtep_mac: MacAddr(VTEP_MAC),
                udp_port: 4789,
                uplink: "uplink".into(),
            }),
            cluster_cidr: None,
        },
        ports,
        routes: vec![RouteSpec {
            prefix: "172.16.0.0/16".parse().unwrap(),
            port: "uplink".into(),
            next_hop_mac: MacAddr(ROUTER_MAC),
        }],
        remote_nodes: vec![RemoteNodeSpec {
            name: "node2".into(),
            pod_cidr: "10.244.2.0/24".parse().unwrap(),
            vtep_ip: REMOTE_VTEP,
            vtep_mac: MacAddr(REMOTE_VTEP_MAC),
            underlay_mac: MacAddr(UNDERLAY_MAC),
        }],
        proxy_arp: vec![Ipv4Addr::new(10, 244, 1, 1)],
        rules: Vec::new(),
        services: Default::default(),
    }
}

pub const POOL_FRAMES: u32 = 1024;

/// A worker over in-memory ports, with helpers to inject and collect.
pub struct Harness {
    pub worker: Worker<HeapFramePool, MemoryPort>,
    pub now_ns: u64,
}

impl Harness {
    pub fn new() -> Self {
        Self::with(state(), PipelineConfig::default())
    }

    pub fn with(state: DesiredState, config: PipelineConfig) -> Self {
        Self::with_all(state, config, POOL_FRAMES)
    }

    /// The standard topology and configuration over a pool of only
    /// `frames` frames (to test pool exhaustion).
    pub fn with_pool(frames: u32) -> Self {
        Self::with_all(state(), PipelineConfig::default(), frames)
    }

    /// `state` and `config` over a pool of `frames` frames.
    pub fn with_all(state: DesiredState, config: PipelineConfig, frames: u32) -> Self {
        let snapshot = Arc::new(Snapshot::compile(&state, 1).expect("test state compiles"));
        let ports = snapshot.ports.iter().map(|_| MemoryPort::new()).collect();
        let worker = Worker::new(HeapFramePool::new(frames), ports, snapshot, config);
        Harness {
            worker,
            now_ns: 1_000_000_000,
        }
    }

    pub fn port(&mut self, name: &str) -> &mut MemoryPort {
        let id = self
            .worker
            .pipeline
            .snapshot()
            .port_id(name)
            .unwrap_or_else(|| panic!("no port {name}"));
        self.worker.local_port_mut(id).expect("a local port")
    }

    /// Injects `frame` on `port` and polls until every port is idle.
    pub fn send(&mut self, port: &str, frame: Vec<u8>) {
        self.port(port).inject(frame);
        self.run();
    }

    /// Polls until nothing is pending anywhere.
    pub fn run(&mut self) {
        while self.worker.poll(self.now_ns) > 0 {}
    }

    /// Frames transmitted on `port` since the last call.
    pub fn sent(&mut self, port: &str) -> Vec<Vec<u8>> {
        self.port(port).take_sent()
    }

    /// Frames transmitted on every port: (port name, frame).
    pub fn all_sent(&mut self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for name in PORTS {
            for f in self.sent(name) {
                out.push((name.to_string(), f));
            }
        }
        out
    }

    pub fn counters(&self) -> &Counters {
        self.worker.pipeline.counters()
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.counters().drops_of(reason)
    }

    /// Every frame is back in the pool: nothing leaked or was freed twice.
    pub fn assert_no_frame_leak(&self) {
        assert_eq!(
            self.worker.pool.free_count(),
            self.worker.pool.capacity(),
            "frames leaked"
        );
    }
}

// ---------------------------------------------------------------------------
// Frame builders (etherparse).

/// The frame etherparse's packet `builder` writes around `payload`.
macro_rules! build {
    ($builder:expr, $payload:expr) => {{
        let b = $builder;
        let payload: &[u8] = $payload;
        let mut out = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut out, payload).unwrap();
        out
    }};
}

/// An IPv4/UDP frame with `payload`, from port 40000 to port 5001.
pub fn udp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    udp_ports(src_mac, dst_mac, src, dst, ttl, (40000, 5001), payload)
}

/// An IPv4/UDP frame with `payload` between `ports` (source, destination).
pub fn udp_ports(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    (sport, dport): (u16, u16),
    payload: &[u8],
) -> Vec<u8> {
    build!(
        PacketBuilder::ethernet2(src_mac, dst_mac)
            .ipv4(src.octets(), dst.octets(), ttl)
            .udp(sport, dport),
        payload
    )
}

/// A minimum-size IPv4/UDP frame: 60 bytes (64 on the wire with the FCS),
/// TTL 64, from port `sport` to port 5001, 18 zero bytes of payload.
pub fn min_udp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
) -> Vec<u8> {
    let out = udp_ports(src_mac, dst_mac, src, dst, 64, (sport, 5001), &[0; 18]);
    assert_eq!(out.len(), 60);
    out
}

/// An IPv6/UDP frame with `payload` between `ports` (source, destination).
pub fn ipv6_udp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    (sport, dport): (u16, u16),
    payload: &[u8],
) -> Vec<u8> {
    build!(
        PacketBuilder::ethernet2(src_mac, dst_mac)
            .ipv6(src.octets(), dst.octets(), 64)
            .udp(sport, dport),
        payload
    )
}

/// An Ethernet + `ip` + raw `payload` frame, for fragments and headers
/// etherparse's builder will not make. Total length and checksum are set.
pub fn raw_ipv4(src_mac: [u8; 6], dst_mac: [u8; 6], mut ip: Ipv4Header, payload: &[u8]) -> Vec<u8> {
    ip.set_payload_len(payload.len()).unwrap();
    let mut out = Vec::new();
    Ethernet2Header {
        source: src_mac,
        destination: dst_mac,
        ether_type: EtherType::IPV4,
    }
    .write(&mut out)
    .unwrap();
    ip.write(&mut out).unwrap();
    out.extend_from_slice(payload);
    out
}

/// The IPv4 header of a UDP fragment from `src` to `dst`: identification
/// `id`, DF clear, MF as given, offset in units of 8 bytes. For `raw_ipv4`.
pub fn fragment_header(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    id: u16,
    more_fragments: bool,
    offset_units: u16,
) -> Ipv4Header {
    let mut ip = Ipv4Header::new(0, ttl, IpNumber::UDP, src.octets(), dst.octets()).unwrap();
    ip.identification = id;
    ip.dont_fragment = false;
    ip.more_fragments = more_fragments;
    ip.fragment_offset = IpFragOffset::try_new(offset_units).unwrap();
    ip
}

/// An IPv4/TCP SYN frame.
pub fn tcp_syn(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
) -> Vec<u8> {
    build!(
        PacketBuilder::ethernet2(src_mac, dst_mac)
            .ipv4(src.octets(), dst.octets(), ttl)
            .tcp(40001, 80, 1000, 64240)
            .syn(),
        &[]
    )
}

/// An ICMP echo request frame.
pub fn ping(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    seq: u16,
) -> Vec<u8> {
    build!(
        PacketBuilder::ethernet2(src_mac, dst_mac)
            .ipv4(src.octets(), dst.octets(), ttl)
            .icmpv4_echo_request(0x1234, seq),
        b"xvs ping payload"
    )
}

/// A pod's frame to the gateway MAC.
pub fn pod_udp(n: u8, dst: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
    udp(pod_mac(n), GW_MAC, pod_ip(n), dst, ttl, payload)
}

/// An ARP request from `sender` asking for `target`, broadcast.
pub fn arp_request(sender_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// `inner` (an Ethernet frame) inside VXLAN from the remote VTEP to us, as
/// the kernel's VXLAN device on the remote node would send it.
pub fn vxlan_from_remote(inner: &[u8], vni: u32) -> Vec<u8> {
    vxlan_from_remote_port(inner, vni, 51234)
}

/// `vxlan_from_remote` with outer UDP source port `sport` (the remote VTEP
/// picks it per inner flow).
pub fn vxlan_from_remote_port(inner: &[u8], vni: u32, sport: u16) -> Vec<u8> {
    let mut payload = vec![0x08, 0, 0, 0];
    payload.extend_from_slice(&vni.to_be_bytes()[1..]);
    payload.push(0);
    payload.extend_from_slice(inner);
    let (src, dst) = (REMOTE_VTEP, NODE_IP);
    udp_ports(
        UNDERLAY_MAC,
        UPLINK_MAC,
        src,
        dst,
        64,
        (sport, 4789),
        &payload,
    )
}

// ---------------------------------------------------------------------------
// Checks (etherparse).

/// Parses `frame` with etherparse and verifies the IPv4 header checksum and,
/// where present, the ICMP, UDP (unless zero) and TCP checksums. Returns the
/// sliced packet for further checks.
pub fn parse_checked(frame: &[u8]) -> SlicedPacket<'_> {
    let p = SlicedPacket::from_ethernet(frame)
        .unwrap_or_else(|e| panic!("etherparse rejects output frame: {e:?}"));
    if let Some(NetSlice::Ipv4(ip)) = &p.net {
        let h = ip.header().to_header();
        assert_eq!(
            h.header_checksum,
            h.calc_header_checksum(),
            "IPv4 header checksum"
        );
        let payload = ip.payload().payload;
        match &p.transport {
            Some(TransportSlice::Icmpv4(icmp)) => {
                let sum = checksum(icmp.slice());
                assert_eq!(sum, 0, "ICMP checksum");
            }
            Some(TransportSlice::Udp(udp)) if udp.checksum() != 0 => {
                let want = udp
                    .to_header()
                    .calc_checksum_ipv4(&h, udp.payload())
                    .unwrap();
                assert_eq!(udp.checksum(), want, "UDP checksum");
            }
            Some(TransportSlice::Tcp(tcp)) => {
                let want = tcp
                    .to_header()
                    .calc_checksum_ipv4(&h, tcp.payload())
                    .unwrap();
                assert_eq!(tcp.checksum(), want, "TCP checksum");
            }
            _ => {}
        }
        let _ = payload;
    }
    p
}

/// RFC 1071 sum, complemented: 0 over a region that includes its checksum.
pub fn checksum(data: &[u8]) -> u16 {
    let mut acc: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !u16::try_from(acc).expect("folded to 16 bits")
}

/// (src, dst, ttl) of an output frame's IPv4 header.
pub fn ipv4_of(frame: &[u8]) -> (Ipv4Addr, Ipv4Addr, u8) {
    let p = parse_checked(frame);
    match p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            (h.source_addr(), h.destination_addr(), h.ttl())
        }
        other => panic!("not IPv4: {other:?}"),
    }
}

/// (src MAC, dst MAC) of a frame.
pub fn macs_of(frame: &[u8]) -> ([u8; 6], [u8; 6]) {
    let mut src = [0; 6];
    let mut dst = [0; 6];
    dst.copy_from_slice(&frame[0..6]);
    src.copy_from_slice(&frame[6..12]);
    (src, dst)
}

// ---------------------------------------------------------------------------
// Helpers added for tests/vxlan.rs and tests/malformed.rs.

/// The test state with every pod port's MTU set to `mtu`.
pub fn state_with_pod_mtu(mtu: u16) -> DesiredState {
    let mut s = state();
    for p in &mut s.ports {
        if matches!(p.kind, PortKind::Pod { .. }) {
            p.mtu = mtu;
        }
    }
    s
}

impl Harness {
    /// Packets received over all ports (the worker's port counters).
    pub fn received(&self) -> u64 {
        self.worker.port_counters.iter().map(|c| c.rx_packets).sum()
    }

    /// Packets transmitted over all ports (the worker's port counters).
    pub fn transmitted(&self) -> u64 {
        self.worker.port_counters.iter().map(|c| c.tx_packets).sum()
    }
}

/// An ICMP message found in an output frame (checked with `parse_checked`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcmpMsg {
    /// The IPv4 header that carried the message.
    pub ip: Ipv4Header,
    pub ty: u8,
    pub code: u8,
    /// Bytes 4..8 of the ICMP header (for "fragmentation needed", bytes
    /// 6..8 are the next-hop MTU).
    pub rest: [u8; 4],
    /// What follows the 8-byte ICMP header (the quote of an error).
    pub payload: Vec<u8>,
}

/// The ICMP message of an IPv4 output frame; panics if it is not ICMP.
pub fn icmp_of(frame: &[u8]) -> IcmpMsg {
    let p = parse_checked(frame);
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4: {:?}", p.net)
    };
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("not ICMPv4: {:?}", p.transport)
    };
    IcmpMsg {
        ip: ip.header().to_header(),
        ty: icmp.type_u8(),
        code: icmp.code_u8(),
        rest: icmp.bytes5to8(),
        payload: icmp.payload().to_vec(),
    }
}

/// Checks that `frame` is the gateway's ARP reply to pod `n` for `ip`:
/// 42 bytes, Ethernet/IPv4 ARP header bytes as sent, and every address
/// field (read with etherparse).
pub fn assert_arp_reply(frame: &[u8], n: u8, ip: Ipv4Addr) {
    assert_eq!(frame.len(), 42, "Ethernet + 28-byte ARP, no padding");
    assert_eq!(macs_of(frame), (GW_MAC, pod_mac(n)));
    assert_eq!(
        &frame[12..22],
        &[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2],
        "ARP, Ethernet/IPv4, reply"
    );
    let p = parse_checked(frame);
    let Some(NetSlice::Arp(a)) = &p.net else {
        panic!("not ARP: {:?}", p.net)
    };
    let a = a.to_packet().try_eth_ipv4().expect("Ethernet/IPv4 ARP");
    assert_eq!(a.operation, ArpOperation::REPLY);
    assert_eq!(a.sender_mac, GW_MAC);
    assert_eq!(GW_MAC, [0xee; 6]);
    assert_eq!(a.sender_ipv4, ip.octets());
    assert_eq!(a.target_mac, pod_mac(n));
    assert_eq!(a.target_ipv4, pod_ip(n).octets());
}

// ---------------------------------------------------------------------------
// Assertions about what a harness sent and dropped.

/// The one frame sent anywhere, with its port; the frame passes
/// `parse_checked`.
pub fn only_output(h: &mut Harness) -> (String, Vec<u8>) {
    let mut out = h.all_sent();
    assert_eq!(
        out.len(),
        1,
        "expected exactly one output frame, got {:?}",
        out.iter().map(|(p, f)| (p, f.len())).collect::<Vec<_>>()
    );
    let (port, frame) = out.pop().unwrap();
    parse_checked(&frame);
    (port, frame)
}

/// Sends `frame` on `in_port` and checks that exactly one frame came out
/// (`only_output`), on `out_port`; returns that frame.
pub fn send_expect_one(h: &mut Harness, in_port: &str, frame: Vec<u8>, out_port: &str) -> Vec<u8> {
    h.send(in_port, frame);
    let (port, out) = only_output(h);
    assert_eq!(
        port, out_port,
        "the one frame for what came in on {in_port}"
    );
    out
}

/// Nothing was sent on any port (since the last look).
pub fn assert_nothing_sent(h: &mut Harness) {
    let out = h.all_sent();
    assert!(
        out.is_empty(),
        "expected no output, got frames on {:?}",
        out.iter().map(|(p, f)| (p, f.len())).collect::<Vec<_>>()
    );
}

/// Nothing was sent anywhere, `n` packets were dropped for `reason`, and
/// there were no other drops.
pub fn assert_dropped_only(h: &mut Harness, reason: DropReason, n: u64) {
    assert_nothing_sent(h);
    assert_eq!(h.drops(reason), n, "{} drops", reason.name());
    assert_eq!(h.counters().total_drops(), n, "drops in total");
}

/// Sends `frame` on `port` and checks that exactly one drop counter went
/// up, by one, for `reason`; that nothing was routed, decapsulated or
/// answered with an ICMP error; and that nothing was sent anywhere.
pub fn expect_drop(h: &mut Harness, port: &str, frame: Vec<u8>, reason: DropReason, what: &str) {
    let before = h.counters().clone();
    h.send(port, frame);
    let after = h.counters().clone();
    assert_eq!(
        after.drops_of(reason) - before.drops_of(reason),
        1,
        "{what} on {port}: expected one {} drop, counters now {:?}",
        reason.name(),
        after.nonzero_drops().collect::<Vec<_>>()
    );
    assert_eq!(
        after.total_drops() - before.total_drops(),
        1,
        "{what} on {port}: exactly one drop"
    );
    assert_eq!(
        after.routed, before.routed,
        "{what} on {port}: nothing routed"
    );
    assert_eq!(
        after.vxlan_decap, before.vxlan_decap,
        "{what} on {port}: not decapsulated"
    );
    assert_eq!(
        after.icmp_errors, before.icmp_errors,
        "{what} on {port}: no ICMP error"
    );
    let sent = h.all_sent();
    assert!(
        sent.is_empty(),
        "{what} on {port}: unexpected output {sent:?}"
    );
}

/// An 802.1Q-tagged frame: `vid`, then `ethertype` and `payload`.
pub fn tagged(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    vid: u16,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(18 + payload.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x81, 0x00]);
    f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Recomputes the IPv4 header checksum of the header at `frame[l3..]`
/// (over IHL*4 bytes, or the bytes present if fewer).
pub fn fix_ipv4_checksum(frame: &mut [u8], l3: usize) {
    let ihl = usize::from(frame[l3] & 0x0f) * 4;
    let end = (l3 + ihl).min(frame.len());
    frame[l3 + 10] = 0;
    frame[l3 + 11] = 0;
    let sum = checksum(&frame[l3..end]);
    frame[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
}

/// Next hop of the default route of `state_with_default_route`.
pub const DEFAULT_ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xfe, 0x00];

/// The test state plus a static default route, 0.0.0.0/0 out of the uplink
/// to `DEFAULT_ROUTER_MAC`: every destination has a route, so a packet
/// that is not forwarded was refused on purpose.
pub fn state_with_default_route() -> DesiredState {
    let mut s = state();
    s.routes.push(RouteSpec {
        prefix: "0.0.0.0/0".parse().unwrap(),
        port: "uplink".into(),
        next_hop_mac: MacAddr(DEFAULT_ROUTER_MAC),
    });
    s
}

/// Port slots of two workers where worker 0 reaches `port` only through
/// worker 1 (a hand-off) and worker 1 serves every port itself, with
/// worker 1's inbox.
pub fn slots_through_worker1(
    snapshot: &Snapshot,
    port: &str,
) -> (Vec<PortSlot<MemoryPort>>, Vec<PortSlot<MemoryPort>>, Inbox) {
    let remote = usize::from(snapshot.port_id(port).unwrap());
    let mut mesh = handoff::mesh(2).unwrap();
    let (inbox1, _) = mesh.pop().unwrap();
    let (_, out0) = mesh.pop().unwrap();
    let slots0 = (0..snapshot.ports.len())
        .map(|i| {
            if i == remote {
                PortSlot::Remote(out0[1].clone().unwrap())
            } else {
                PortSlot::Local(MemoryPort::new())
            }
        })
        .collect();
    let slots1 = (0..snapshot.ports.len())
        .map(|_| PortSlot::Local(MemoryPort::new()))
        .collect();
    (slots0, slots1, inbox1)
}

// ---------------------------------------------------------------------------
// Helpers added for tests/flow_cache.rs and tests/rules.rs.

/// Parses a flow rule in `xvsctl add-flow` syntax.
pub fn flow_rule(text: &str) -> xvs_control::flowrule::FlowRule {
    text.parse()
        .unwrap_or_else(|e| panic!("test rule `{text}` does not parse: {e}"))
}

/// The test state with `rules` (in order of addition).
pub fn state_with_rules(rules: &[&str]) -> DesiredState {
    let mut s = state();
    s.rules = rules.iter().map(|r| flow_rule(r)).collect();
    s
}

impl Harness {
    /// Gives the pipeline a flow cache of `capacity` flows; returns it.
    pub fn enable_flow_cache(&mut self, capacity: usize) -> Arc<xvs_flowtable::FlowTable> {
        let table = Arc::new(xvs_flowtable::FlowTable::with_capacity(capacity));
        self.worker.pipeline.set_flow_cache(Arc::clone(&table));
        table
    }

    /// Switches the pipeline to `state` compiled as snapshot `generation`;
    /// returns the snapshot it replaced and the new one.
    pub fn switch_state(
        &mut self,
        state: &DesiredState,
        generation: u64,
    ) -> (Arc<Snapshot>, Arc<Snapshot>) {
        let old = Arc::clone(self.worker.pipeline.snapshot());
        let new = Arc::new(Snapshot::compile(state, generation).expect("test state compiles"));
        self.worker.pipeline.set_snapshot(Arc::clone(&new));
        (old, new)
    }

    /// (flow_misses, flows_added, flow_hits).
    pub fn flow_counts(&self) -> (u64, u64, u64) {
        let c = self.counters();
        (c.flow_misses, c.flows_added, c.flow_hits)
    }
}

/// Every flow of `table`.
pub fn flows_of(table: &xvs_flowtable::FlowTable) -> Vec<xvs_flowtable::FlowView> {
    let mut out = Vec::new();
    table.for_each(|f| out.push(*f));
    out
}

/// The frame a router sends for `input`: new MACs, TTL - 1, checksum
/// recomputed from scratch (etherparse), Ethernet padding removed.
pub fn routed_frame(input: &[u8], src_mac: [u8; 6], dst_mac: [u8; 6]) -> Vec<u8> {
    let (mut ip, _) = Ipv4Header::from_slice(&input[14..]).expect("test input is IPv4");
    let end = 14 + usize::from(ip.total_len);
    let mut out = input[..end].to_vec();
    out[0..6].copy_from_slice(&dst_mac);
    out[6..12].copy_from_slice(&src_mac);
    ip.time_to_live -= 1;
    ip.header_checksum = ip.calc_header_checksum();
    let hdr = ip.to_bytes();
    out[14..14 + hdr.len()].copy_from_slice(&hdr);
    out
}

/// Checks with etherparse that `frame` is a VXLAN frame from us to node2
/// (outer Ethernet, IPv4 with DF and TTL 64, UDP to 4789 from the dynamic
/// range with a zero checksum, VXLAN with the I flag and our VNI, inner
/// Ethernet from our VTEP MAC to node2's); returns the inner frame.
pub fn vxlan_inner_to_node2(frame: &[u8]) -> Vec<u8> {
    let p = parse_checked(frame);
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link else {
        panic!("no Ethernet II header: {:?}", p.link)
    };
    assert!(p.link_exts.is_empty(), "outer frame is tagged");
    assert_eq!(eth.destination(), UNDERLAY_MAC, "outer dst MAC");
    assert_eq!(eth.source(), UPLINK_MAC, "outer src MAC");
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("outer is not IPv4: {:?}", p.net)
    };
    let ip = ip.header().to_header();
    assert_eq!(ip.source, NODE_IP.octets(), "outer src: our VTEP");
    assert_eq!(ip.destination, REMOTE_VTEP.octets(), "outer dst: node2");
    assert!(ip.dont_fragment, "outer DF");
    assert_eq!(ip.time_to_live, 64, "outer TTL");
    assert_eq!(usize::from(ip.total_len), frame.len() - 14);
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        panic!("outer is not UDP: {:?}", p.transport)
    };
    assert_eq!(udp.destination_port(), 4789);
    assert!(udp.source_port() >= 49152, "outer UDP source port");
    assert_eq!(udp.checksum(), 0, "outer UDP checksum");
    let payload = udp.payload();
    assert_eq!(usize::from(udp.length()), 8 + payload.len());
    assert_eq!(frame.len(), 50 + payload.len() - 8, "50 bytes of overhead");
    assert_eq!(
        payload[..8],
        [0x08, 0, 0, 0, 0, 0, 42, 0],
        "VXLAN header: I flag, VNI 42"
    );
    let inner = payload[8..].to_vec();
    assert_eq!(macs_of(&inner), (VTEP_MAC, REMOTE_VTEP_MAC), "inner MACs");
    inner
}
