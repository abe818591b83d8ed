//! `make demo` (until the AF_XDP daemon lands): a node with three pods, an
//! uplink with a VXLAN overlay to a second node, and a two-port bridge,
//! on in-memory ports. A mixed set of frames goes through the pipeline; for
//! each one it prints the stages it went through and what came out where
//! (decoded with etherparse, independently of the datapath's own parser),
//! then the counters.

use std::net::Ipv4Addr;
use std::sync::Arc;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use xvs_control::state::{
    DesiredState, MacAddr, NodeSpec, PortKind, PortSpec, RemoteNodeSpec, VxlanSpec,
    DEFAULT_GATEWAY_MAC,
};
use xvs_vswitch::packet::HeapFramePool;
use xvs_vswitch::pipeline::PipelineConfig;
use xvs_vswitch::port::MemoryPort;
use xvs_vswitch::snapshot::Snapshot;
use xvs_vswitch::worker::Worker;

const GW: [u8; 6] = DEFAULT_GATEWAY_MAC.0;
const UPLINK_MAC: [u8; 6] = [2, 0, 0, 0, 0xff, 1];
const UNDERLAY_MAC: [u8; 6] = [2, 0, 0, 0, 0xff, 2];
const VTEP_MAC: [u8; 6] = [2, 0, 0, 0, 0xee, 1];
const REMOTE_VTEP_MAC: [u8; 6] = [2, 0, 0, 0, 0xee, 2];
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
const REMOTE_VTEP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 5);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

fn pod_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 1, 10 + n)
}
fn pod_mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 1, n]
}

fn state() -> DesiredState {
    let mut ports: Vec<PortSpec> = (1..=3)
        .map(|n| PortSpec {
            name: format!("pod{n}"),
            kind: PortKind::Pod {
                ip: pod_ip(n),
                mac: MacAddr(pod_mac(n)),
            },
            mtu: 1450,
        })
        .collect();
    ports.push(PortSpec {
        name: "uplink".into(),
        kind: PortKind::Uplink {
            mac: MacAddr(UPLINK_MAC),
        },
        mtu: 1500,
    });
    ports.push(PortSpec {
        name: "vnf-a".into(),
        kind: PortKind::Bridged { domain: 100 },
        mtu: 1500,
    });
    ports.push(PortSpec {
        name: "vnf-b".into(),
        kind: PortKind::Bridged { domain: 100 },
        mtu: 1500,
    });
    DesiredState {
        node: NodeSpec {
            node_ip: NODE_IP,
            pod_cidr: "10.244.1.0/24".parse().unwrap(),
            gateway_ip: GATEWAY,
            gateway_mac: DEFAULT_GATEWAY_MAC,
            vxlan: Some(VxlanSpec {
                vni: 1,
                vtep_ip: NODE_IP,
                vtep_mac: MacAddr(VTEP_MAC),
                udp_port: 4789,
                uplink: "uplink".into(),
            }),
        },
        ports,
        routes: vec![],
        remote_nodes: vec![RemoteNodeSpec {
            name: "node2".into(),
            pod_cidr: "10.244.2.0/24".parse().unwrap(),
            vtep_ip: REMOTE_VTEP,
            vtep_mac: MacAddr(REMOTE_VTEP_MAC),
            underlay_mac: MacAddr(UNDERLAY_MAC),
        }],
        proxy_arp: vec![],
    }
}

fn udp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    dport: u16,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.octets(), dst.octets(), ttl)
        .udp(40000, dport);
    let mut out = Vec::new();
    b.write(&mut out, b"demo payload").unwrap();
    out
}

fn tcp_syn(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(40001, 80, 1, 64240)
        .syn();
    let mut out = Vec::new();
    b.write(&mut out, &[]).unwrap();
    out
}

fn ping(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.octets(), dst.octets(), 64)
        .icmpv4_echo_request(7, 1);
    let mut out = Vec::new();
    b.write(&mut out, b"ping").unwrap();
    out
}

fn arp_request(sender_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

fn vxlan_from_node2(inner: &[u8], vni: u32) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(UNDERLAY_MAC, UPLINK_MAC)
        .ipv4(REMOTE_VTEP.octets(), NODE_IP.octets(), 64)
        .udp(55555, 4789);
    let mut payload = vec![0x08, 0, 0, 0];
    payload.extend_from_slice(&vni.to_be_bytes()[1..]);
    payload.push(0);
    payload.extend_from_slice(inner);
    let mut out = Vec::new();
    b.write(&mut out, &payload).unwrap();
    out
}

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
    let snapshot = Arc::new(Snapshot::compile(&state(), 1).expect("demo state compiles"));
    let names: Vec<String> = snapshot.ports.iter().map(|p| p.name.clone()).collect();
    let ports = names.iter().map(|_| MemoryPort::new()).collect();
    let mut worker = Worker::new(
        HeapFramePool::new(256),
        ports,
        Arc::clone(&snapshot),
        PipelineConfig::default(),
    );
    worker.pipeline.enable_trace();
    let port = |name: &str| usize::from(snapshot.port_id(name).unwrap());

    let mut truncated = udp(pod_mac(1), GW, pod_ip(1), pod_ip(2), 64, 9);
    truncated.truncate(14 + 12);
    let ttl1 = udp(pod_mac(1), GW, pod_ip(1), pod_ip(3), 1, 33434);
    let inner_from_node2 = udp(REMOTE_VTEP_MAC, VTEP_MAC, REMOTE_POD, pod_ip(3), 64, 5001);
    let traffic: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "pod1 asks for its gateway",
            "pod1",
            arp_request(pod_mac(1), pod_ip(1), GATEWAY),
        ),
        (
            "pod1 pings the gateway",
            "pod1",
            ping(pod_mac(1), GW, pod_ip(1), GATEWAY),
        ),
        (
            "pod1 to pod2, UDP",
            "pod1",
            udp(pod_mac(1), GW, pod_ip(1), pod_ip(2), 64, 5001),
        ),
        (
            "pod2 to pod3, TCP SYN",
            "pod2",
            tcp_syn(pod_mac(2), GW, pod_ip(2), pod_ip(3)),
        ),
        (
            "pod1 to a pod on node2 (overlay)",
            "pod1",
            udp(pod_mac(1), GW, pod_ip(1), REMOTE_POD, 64, 5001),
        ),
        (
            "node2's pod to pod3 (from the overlay)",
            "uplink",
            vxlan_from_node2(&inner_from_node2, 1),
        ),
        ("traceroute probe with TTL 1", "pod1", ttl1),
        (
            "pod2 to an address with no route",
            "pod2",
            udp(
                pod_mac(2),
                GW,
                pod_ip(2),
                Ipv4Addr::new(203, 0, 113, 7),
                64,
                53,
            ),
        ),
        (
            "pod3 spoofs pod1's address",
            "pod3",
            udp(pod_mac(3), GW, pod_ip(1), pod_ip(2), 64, 5001),
        ),
        ("malformed: IPv4 header cut short", "pod1", truncated),
        (
            "VXLAN for a VNI we do not serve",
            "uplink",
            vxlan_from_node2(&inner_from_node2, 99),
        ),
        (
            "VNF A broadcasts on the bridge",
            "vnf-a",
            arp_request(
                [2, 0, 0, 0, 0xa, 1],
                Ipv4Addr::new(192, 0, 2, 1),
                Ipv4Addr::new(192, 0, 2, 2),
            ),
        ),
        (
            "VNF B answers A (unicast, A now learned)",
            "vnf-b",
            udp(
                [2, 0, 0, 0, 0xb, 1],
                [2, 0, 0, 0, 0xa, 1],
                Ipv4Addr::new(192, 0, 2, 2),
                Ipv4Addr::new(192, 0, 2, 1),
                64,
                7,
            ),
        ),
    ];

    println!("xvs pipeline demo: node 192.168.50.1, pods pod1..pod3 (10.244.1.11-13) behind gateway {GATEWAY},");
    println!("overlay VNI 1 to node2 (10.244.2.0/24 at {REMOTE_VTEP}), bridge domain 100 with vnf-a and vnf-b.\n");
    for (n, (what, in_port, frame)) in traffic.into_iter().enumerate() {
        println!(
            "#{:<2} {what}\n    in  {in_port:<7} {}",
            n + 1,
            describe(&frame)
        );
        worker.ports[port(in_port)].inject(frame);
        worker.poll(1_000_000_000);
        for ev in worker.pipeline.take_trace() {
            println!("        {:<15} {}", ev.stage, ev.note);
        }
        let mut any = false;
        for (idx, name) in names.iter().enumerate() {
            for out in worker.ports[idx].take_sent() {
                println!("    out {name:<7} {}", describe(&out));
                any = true;
            }
        }
        if !any {
            println!("    (nothing sent)");
        }
        println!();
    }

    println!("Ports            rx pkts  tx pkts");
    for (idx, name) in names.iter().enumerate() {
        let c = worker.port_counters[idx];
        println!("  {name:<14} {:>7}  {:>7}", c.rx_packets, c.tx_packets);
    }
    let c = &worker.pipeline.counters;
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
