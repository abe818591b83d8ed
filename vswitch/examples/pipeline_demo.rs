//! `make demo` (until the AF_XDP daemon lands): a node with three pods, an
//! uplink with a VXLAN overlay to a second node, and a three-port bridge,
//! on in-memory ports: the topology and frame builders of the pipeline
//! tests (tests/common). A mixed set of frames goes through the pipeline;
//! for each one it prints the stages it went through and what came out
//! where (decoded with etherparse, independently of the datapath's own
//! parser), then the counters.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::Ipv4Addr;

use common::*;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use xvs_control::state::MacAddr;

/// Two hosts behind the bridge: A on br1, B on br2.
const HOST_A: [u8; 6] = [2, 0, 0, 0, 0xa, 1];
const HOST_B: [u8; 6] = [2, 0, 0, 0, 0xb, 1];
const HOST_A_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const HOST_B_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const PAYLOAD: &[u8] = b"demo payload";

/// One line describing a frame, from etherparse's point of view.
fn describe(frame: &[u8]) -> String {
    if frame.len() >= 42 && frame[12..14] == [0x08, 0x06] {
        let a = &frame[14..];
        let ip = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
        return match a[7] {
            1 => format!("ARP who-has {} tell {}", ip(&a[24..28]), ip(&a[14..18])),
            2 => format!(
                "ARP reply {} is-at {}",
                ip(&a[14..18]),
                MacAddr(a[8..14].try_into().unwrap())
            ),
            op => format!("ARP op {op}"),
        };
    }
    let p = match SlicedPacket::from_ethernet(frame) {
        Ok(p) => p,
        Err(_) => return format!("{} bytes etherparse cannot parse", frame.len()),
    };
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        return format!("{} bytes, not IPv4", frame.len());
    };
    let h = ip.header();
    let l3 = format!(
        "{} > {} ttl {}",
        h.source_addr(),
        h.destination_addr(),
        h.ttl()
    );
    match &p.transport {
        Some(TransportSlice::Udp(u)) if u.destination_port() == 4789 => {
            let v = u.payload();
            let vni = u32::from_be_bytes([0, v[4], v[5], v[6]]);
            format!("VXLAN vni {vni} {l3} [inner: {}]", describe(&v[8..]))
        }
        Some(TransportSlice::Udp(u)) => format!(
            "UDP {l3} port {} > {}",
            u.source_port(),
            u.destination_port()
        ),
        Some(TransportSlice::Tcp(t)) => format!(
            "TCP {l3} port {} > {}{}",
            t.source_port(),
            t.destination_port(),
            if t.syn() { " SYN" } else { "" }
        ),
        Some(TransportSlice::Icmpv4(i)) => format!("ICMP {l3} {:?}", i.icmp_type()),
        _ => format!("IPv4 {l3} proto {}", h.protocol().0),
    }
}

fn main() {
    let mut h = Harness::new();
    h.worker.pipeline.enable_trace();

    let mut truncated = pod_udp(1, pod_ip(2), 64, PAYLOAD);
    truncated.truncate(14 + 12);
    let ttl1 = udp_ports(
        pod_mac(1),
        GW_MAC,
        pod_ip(1),
        pod_ip(3),
        1,
        (40000, 33434),
        PAYLOAD,
    );
    let no_route = udp_ports(
        pod_mac(2),
        GW_MAC,
        pod_ip(2),
        UNROUTABLE,
        64,
        (40000, 53),
        PAYLOAD,
    );
    let inner_from_node2 = udp(
        REMOTE_VTEP_MAC,
        VTEP_MAC,
        REMOTE_POD,
        pod_ip(3),
        64,
        PAYLOAD,
    );
    let b_to_a = udp_ports(
        HOST_B,
        HOST_A,
        HOST_B_IP,
        HOST_A_IP,
        64,
        (40000, 7),
        PAYLOAD,
    );
    let traffic: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "pod1 asks for its gateway",
            "pod1",
            arp_request(pod_mac(1), pod_ip(1), GATEWAY),
        ),
        (
            "pod1 pings the gateway",
            "pod1",
            ping(pod_mac(1), GW_MAC, pod_ip(1), GATEWAY, 64, 1),
        ),
        (
            "pod1 to pod2, UDP",
            "pod1",
            pod_udp(1, pod_ip(2), 64, PAYLOAD),
        ),
        (
            "pod2 to pod3, TCP SYN",
            "pod2",
            tcp_syn(pod_mac(2), GW_MAC, pod_ip(2), pod_ip(3), 64),
        ),
        (
            "pod1 to a pod on node2 (overlay)",
            "pod1",
            pod_udp(1, REMOTE_POD, 64, PAYLOAD),
        ),
        (
            "node2's pod to pod3 (from the overlay)",
            "uplink",
            vxlan_from_remote(&inner_from_node2, VNI),
        ),
        ("traceroute probe with TTL 1", "pod1", ttl1),
        ("pod2 to an address with no route", "pod2", no_route),
        (
            "pod3 spoofs pod1's address",
            "pod3",
            udp(pod_mac(3), GW_MAC, pod_ip(1), pod_ip(2), 64, PAYLOAD),
        ),
        ("malformed: IPv4 header cut short", "pod1", truncated),
        (
            "VXLAN for a VNI we do not serve",
            "uplink",
            vxlan_from_remote(&inner_from_node2, 99),
        ),
        (
            "host A on br1 broadcasts",
            "br1",
            arp_request(HOST_A, HOST_A_IP, HOST_B_IP),
        ),
        (
            "host B on br2 answers A (unicast, A now learned)",
            "br2",
            b_to_a,
        ),
    ];

    println!("xvs pipeline demo: node {NODE_IP}, pods pod1..pod3 (10.244.1.11-13) behind gateway {GATEWAY},");
    println!("overlay VNI {VNI} to node2 (10.244.2.0/24 at {REMOTE_VTEP}), bridge domain 7 with br1..br3.\n");
    for (n, (what, in_port, frame)) in traffic.into_iter().enumerate() {
        println!(
            "#{:<2} {what}\n    in  {in_port:<7} {}",
            n + 1,
            describe(&frame)
        );
        // Inject on `in_port` and poll until every port is idle.
        h.send(in_port, frame);
        for ev in h.worker.pipeline.take_trace() {
            println!("        {:<15} {}", ev.stage, ev.note);
        }
        let sent = h.all_sent();
        for (name, out) in &sent {
            println!("    out {name:<7} {}", describe(out));
        }
        if sent.is_empty() {
            println!("    (nothing sent)");
        }
        println!();
    }

    println!("Ports            rx pkts  tx pkts");
    for (port, c) in h
        .worker
        .pipeline
        .snapshot()
        .ports
        .iter()
        .zip(&h.worker.port_counters)
    {
        println!(
            "  {:<14} {:>7}  {:>7}",
            port.name, c.rx_packets, c.tx_packets
        );
    }
    let c = h.counters();
    println!("\nPipeline counters");
    for (name, value) in [
        ("routed", c.routed),
        ("bridged", c.bridged),
        ("flooded", c.flooded),
        ("arp_replies", c.arp_replies),
        ("echo_replies", c.echo_replies),
        ("icmp_errors", c.icmp_errors),
        ("vxlan_encap", c.vxlan_encap),
        ("vxlan_decap", c.vxlan_decap),
        ("mac_learned", c.mac_learned),
    ] {
        println!("  {name:<22} {value}");
    }
    println!("\nDrops by reason");
    for (name, value) in c.nonzero_drops() {
        println!("  {name:<22} {value}");
    }
}
