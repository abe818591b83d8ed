//! The learning bridge: bridge domain 7 with ports br1..br3.
//!
//! Frames are built with etherparse; every frame that comes out is parsed
//! with `parse_checked` and compared byte for byte with what went in (a
//! bridge never rewrites a frame).
mod common;
use common::*;

use std::net::Ipv4Addr;

use etherparse::{PacketBuilder, VlanId};
use xvs_vswitch::drop::DropReason;
use xvs_vswitch::l2::MacTableConfig;
use xvs_vswitch::pipeline::PipelineConfig;

const BROADCAST: [u8; 6] = [0xff; 6];
const BRIDGE_PORTS: [&str; 3] = ["br1", "br2", "br3"];

/// Host `n` on the bridge: MAC 02:00:00:00:aa:0n, address 10.7.0.n.
fn host_mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0xaa, n]
}
fn host_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 7, 0, n)
}

/// An untagged UDP frame from host `from` to Ethernet `dst`.
fn frame(from: u8, dst: [u8; 6], payload: &[u8]) -> Vec<u8> {
    udp(host_mac(from), dst, host_ip(from), host_ip(99), 64, payload)
}

/// A UDP frame with an 802.1Q tag (VLAN `vid`, priority `pcp`).
fn tagged(src: [u8; 6], dst: [u8; 6], vid: u16, pcp: u8, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src, dst)
        .single_vlan(VlanId::try_new(vid).unwrap())
        .ipv4([10, 7, 0, 1], [10, 7, 0, 2], 64)
        .udp(1000, 2000);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).unwrap();
    // Set the PCP bits by hand (etherparse's single_vlan leaves them 0).
    assert_eq!(&out[12..14], &[0x81, 0x00], "802.1Q TPID");
    out[14] |= pcp << 5;
    out
}

/// What each bridge port sent, in `BRIDGE_PORTS` order; also asserts that
/// nothing went out of a routed port and that every frame parses.
fn bridge_out(h: &mut Harness) -> [Vec<Vec<u8>>; 3] {
    for name in ["pod1", "pod2", "pod3", "uplink"] {
        assert!(h.sent(name).is_empty(), "a bridged frame leaked to {name}");
    }
    let out = BRIDGE_PORTS.map(|p| h.sent(p));
    for frames in &out {
        for f in frames {
            parse_checked(f);
        }
    }
    out
}

/// Asserts that exactly `want` ports (by name) each sent exactly `frame`,
/// and the others sent nothing.
fn assert_sent_to(h: &mut Harness, want: &[&str], frame: &[u8]) {
    let out = bridge_out(h);
    for (name, frames) in BRIDGE_PORTS.iter().zip(&out) {
        if want.contains(name) {
            assert_eq!(frames.len(), 1, "{name} should send one frame");
            assert_eq!(frames[0], frame, "{name} must send the frame unchanged");
        } else {
            assert!(
                frames.is_empty(),
                "{name} should send nothing, sent {}",
                frames.len()
            );
        }
    }
}

/// Sends `frame` on `in_port` and asserts that exactly the ports in `want`
/// each sent it, unchanged, and no other port sent anything.
fn expect_bridged(h: &mut Harness, in_port: &str, frame: Vec<u8>, want: &[&str]) {
    h.send(in_port, frame.clone());
    assert_sent_to(h, want, &frame);
}

/// The bridge counters: frames flooded, bridged (to one learned port),
/// and MAC table entries learned.
fn assert_bridge_counts(h: &Harness, flooded: u64, bridged: u64, mac_learned: u64) {
    let c = h.counters();
    assert_eq!(
        (c.flooded, c.bridged, c.mac_learned),
        (flooded, bridged, mac_learned),
        "(flooded, bridged, mac_learned)"
    );
}

#[test]
fn broadcast_floods_to_the_other_two_ports_only() {
    let mut h = Harness::new();
    let f = frame(1, BROADCAST, b"who is there");
    expect_bridged(&mut h, "br1", f, &["br2", "br3"]);
    let f = frame(2, BROADCAST, b"from br2");
    expect_bridged(&mut h, "br2", f, &["br1", "br3"]);
    let f = frame(3, BROADCAST, b"from br3");
    expect_bridged(&mut h, "br3", f, &["br1", "br2"]);

    assert_bridge_counts(&h, 3, 0, 3);
    assert_eq!(h.counters().total_drops(), 0);
    h.assert_no_frame_leak();
}

#[test]
fn unknown_unicast_floods_to_the_other_two_ports_only() {
    let mut h = Harness::new();
    // Host 9 never sent anything: its MAC is unknown.
    let f = frame(2, host_mac(9), b"anyone?");
    expect_bridged(&mut h, "br2", f, &["br1", "br3"]);
    assert_eq!(h.counters().flooded, 1);
    assert_eq!(h.counters().bridged, 0);
    assert_eq!(h.counters().total_drops(), 0);
    h.assert_no_frame_leak();
}

#[test]
fn multicast_destination_floods_even_when_learned() {
    let mut h = Harness::new();
    let group = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];
    let f = frame(1, group, b"mdns");
    expect_bridged(&mut h, "br1", f, &["br2", "br3"]);
    h.send("br3", frame(3, group, b"mdns"));
    let out = bridge_out(&mut h);
    assert_eq!(out.map(|f| f.len()), [1, 1, 0]);
    assert_eq!(h.counters().flooded, 2);
    assert_eq!(h.counters().bridged, 0);
    h.assert_no_frame_leak();
}

#[test]
fn learned_unicast_goes_to_exactly_one_port() {
    let mut h = Harness::new();
    // Host 1 announces itself on br1, host 3 on br3.
    h.send("br1", frame(1, BROADCAST, b"hello"));
    h.send("br3", frame(3, BROADCAST, b"hello"));
    bridge_out(&mut h);
    assert_eq!(h.counters().mac_learned, 2);

    let f = frame(2, host_mac(1), b"to host 1");
    expect_bridged(&mut h, "br2", f, &["br1"]);
    let f = frame(2, host_mac(3), b"to host 3");
    expect_bridged(&mut h, "br2", f, &["br3"]);

    // Host 2 was learned on br2 from the frames above.
    let f = frame(1, host_mac(2), b"back to host 2");
    expect_bridged(&mut h, "br1", f, &["br2"]);

    assert_bridge_counts(&h, 2, 3, 3);
    assert_eq!(h.counters().total_drops(), 0);
    h.assert_no_frame_leak();
}

#[test]
fn destination_on_the_in_port_is_filtered() {
    let mut h = Harness::new();
    // Hosts 1 and 2 both sit behind br1 (a hub or a nested switch).
    h.send("br1", frame(1, BROADCAST, b"1"));
    h.send("br1", frame(2, BROADCAST, b"2"));
    bridge_out(&mut h);

    h.send("br1", frame(1, host_mac(2), b"local"));
    let out = bridge_out(&mut h);
    assert_eq!(out.map(|f| f.len()), [0, 0, 0]);
    assert_eq!(h.drops(DropReason::L2SameSegment), 1);
    assert_eq!(h.counters().total_drops(), 1);
    assert_eq!(h.counters().bridged, 0);
    h.assert_no_frame_leak();
}

#[test]
fn a_mac_that_moves_is_relearned_on_its_new_port() {
    let mut h = Harness::new();
    h.send("br1", frame(1, BROADCAST, b"on br1"));
    bridge_out(&mut h);
    let f = frame(2, host_mac(1), b"to host 1");
    expect_bridged(&mut h, "br2", f, &["br1"]);

    // Host 1 moves to br3.
    h.send("br3", frame(1, BROADCAST, b"on br3 now"));
    bridge_out(&mut h);
    let f = frame(2, host_mac(1), b"to host 1 again");
    expect_bridged(&mut h, "br2", f, &["br3"]);

    // host 1 on br1, host 2 on br2, host 1 moved to br3.
    assert_eq!(h.counters().mac_learned, 3);
    h.assert_no_frame_leak();
}

#[test]
fn vlan_tagged_frames_are_bridged_with_the_tag_intact() {
    let mut h = Harness::new();
    let f = tagged(host_mac(1), BROADCAST, 10, 5, b"tagged broadcast");
    h.send("br1", f.clone());
    let out = bridge_out(&mut h);
    assert!(out[0].is_empty());
    for sent in &out[1..] {
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0], f, "tag, priority and payload unchanged");
        let p = parse_checked(&sent[0]);
        let ids: Vec<u16> = p.vlan_ids().iter().map(|v| v.value()).collect();
        assert_eq!(ids, [10]);
        assert_eq!(sent[0][14] >> 5, 5, "PCP kept");
    }

    // Host 1 is now known in VLAN 10: a tagged unicast to it goes to br1.
    let f = tagged(host_mac(2), host_mac(1), 10, 0, b"tagged unicast");
    expect_bridged(&mut h, "br2", f.clone(), &["br1"]);
    let p = parse_checked(&f);
    assert_eq!(p.vlan_ids().first().map(|v| v.value()), Some(10));
    assert_eq!(h.counters().bridged, 1);
    assert_eq!(h.counters().total_drops(), 0);
    h.assert_no_frame_leak();
}

#[test]
fn learning_is_per_vlan() {
    let mut h = Harness::new();
    // Host 1 is learned on br1 in VLAN 10 only.
    h.send("br1", tagged(host_mac(1), BROADCAST, 10, 0, b"vlan 10"));
    bridge_out(&mut h);

    // VLAN 10: unicast to br1.
    let f = tagged(host_mac(2), host_mac(1), 10, 0, b"in vlan 10");
    expect_bridged(&mut h, "br2", f, &["br1"]);

    // VLAN 20: the same MAC is unknown there, so the frame floods.
    let f = tagged(host_mac(2), host_mac(1), 20, 0, b"in vlan 20");
    expect_bridged(&mut h, "br2", f, &["br1", "br3"]);

    // Untagged: unknown too.
    let f = frame(2, host_mac(1), b"untagged");
    expect_bridged(&mut h, "br2", f, &["br1", "br3"]);

    // The priority bits are not part of the VLAN id.
    let f = tagged(host_mac(3), host_mac(1), 10, 7, b"vlan 10 prio 7");
    expect_bridged(&mut h, "br3", f, &["br1"]);

    // Learned: host 1 in VLAN 10, host 2 in VLAN 10, 20 and untagged, host 3
    // in VLAN 10.
    assert_bridge_counts(&h, 3, 2, 5);
    h.assert_no_frame_leak();
}

#[test]
fn learned_macs_age_out_and_flood_again() {
    let config = PipelineConfig {
        mac_table: MacTableConfig {
            capacity: 64,
            max_age_ns: 1_000,
        },
        ..PipelineConfig::default()
    };
    let mut h = Harness::with(state(), config);
    let t0 = h.now_ns;
    h.send("br1", frame(1, BROADCAST, b"hello"));
    bridge_out(&mut h);

    // Exactly max_age later the entry is still valid.
    h.now_ns = t0 + 1_000;
    let f = frame(2, host_mac(1), b"still here?");
    expect_bridged(&mut h, "br2", f, &["br1"]);

    // One nanosecond more and it is gone: flood.
    h.now_ns = t0 + 1_001;
    let f = frame(2, host_mac(1), b"gone?");
    expect_bridged(&mut h, "br2", f, &["br1", "br3"]);

    // Host 1 talks again and is relearned (counted as new).
    h.send("br1", frame(1, host_mac(2), b"back"));
    let out = bridge_out(&mut h);
    assert_eq!(out.map(|f| f.len()), [0, 1, 0]);
    let f = frame(2, host_mac(1), b"and unicast again");
    expect_bridged(&mut h, "br2", f, &["br1"]);

    // Learned: host 1, host 2, host 1 after aging.
    assert_bridge_counts(&h, 2, 3, 3);
    h.assert_no_frame_leak();
}

#[test]
fn multicast_or_broadcast_source_mac_is_dropped() {
    let mut h = Harness::new();
    let mcast_src = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01];
    h.send(
        "br1",
        udp(mcast_src, BROADCAST, host_ip(1), host_ip(2), 64, b"x"),
    );
    h.send(
        "br2",
        udp(BROADCAST, host_mac(1), host_ip(1), host_ip(2), 64, b"x"),
    );
    let out = bridge_out(&mut h);
    assert_eq!(out.map(|f| f.len()), [0, 0, 0]);
    assert_eq!(h.drops(DropReason::BadSourceMac), 2);
    assert_eq!(h.counters().total_drops(), 2);
    assert_eq!(h.counters().mac_learned, 0, "a bad source is never learned");

    // Nothing was learned: unicast to that "MAC" floods.
    let f = frame(3, host_mac(1), b"x");
    expect_bridged(&mut h, "br3", f, &["br1", "br2"]);
    h.assert_no_frame_leak();
}

#[test]
fn full_mac_table_still_forwards_by_flooding() {
    let config = PipelineConfig {
        mac_table: MacTableConfig {
            capacity: 1,
            max_age_ns: 300_000_000_000,
        },
        ..PipelineConfig::default()
    };
    let mut h = Harness::with(state(), config);
    // Host 1 takes the only entry.
    h.send("br1", frame(1, BROADCAST, b"first"));
    bridge_out(&mut h);
    assert_eq!(h.counters().mac_learned, 1);
    assert_eq!(h.counters().mac_table_full, 0);

    // Host 2 cannot be learned, but its frame to host 1 is delivered.
    let f = frame(2, host_mac(1), b"to host 1");
    expect_bridged(&mut h, "br2", f, &["br1"]);
    assert_eq!(h.counters().mac_table_full, 1);

    // So a frame to host 2 floods.
    let f = frame(1, host_mac(2), b"to host 2");
    expect_bridged(&mut h, "br1", f, &["br2", "br3"]);
    let f = frame(3, host_mac(2), b"to host 2 from br3");
    expect_bridged(&mut h, "br3", f, &["br1", "br2"]);

    let c = h.counters();
    // Host 2 and host 3 were refused; host 1's second frame only refreshed.
    assert_eq!(c.mac_table_full, 2);
    assert_eq!(c.mac_learned, 1);
    assert_eq!(c.total_drops(), 0);
    h.assert_no_frame_leak();
}

#[test]
fn flooding_with_an_exhausted_pool_counts_pool_exhausted() {
    // One frame: it holds the received packet, no copy can be made.
    let mut h = Harness::with_pool(1);
    let f = frame(1, BROADCAST, b"flood me");
    h.send("br1", f.clone());
    // The last target gets the original frame; the copy for br2 is lost.
    assert_sent_to(&mut h, &["br3"], &f);
    assert_eq!(h.drops(DropReason::PoolExhausted), 1);
    assert_eq!(h.counters().flooded, 1);
    h.assert_no_frame_leak();

    // Three frames, two packets in one batch: one copy fits.
    let mut h = Harness::with_pool(3);
    let a = frame(1, BROADCAST, b"first");
    let b = frame(1, BROADCAST, b"second");
    h.port("br1").inject(a.clone());
    h.port("br1").inject(b.clone());
    h.run();
    let out = bridge_out(&mut h);
    assert!(out[0].is_empty());
    assert_eq!(out[1].len(), 1, "only the first packet got a copy");
    assert_eq!(out[1][0], a);
    assert_eq!(out[2], [a, b], "the originals go to the last port");
    assert_eq!(h.drops(DropReason::PoolExhausted), 1);
    assert_eq!(h.counters().total_drops(), 1);
    assert_eq!(h.counters().flooded, 2);
    h.assert_no_frame_leak();

    // With frames to spare nothing is lost.
    let mut h = Harness::with_pool(2);
    let f = frame(1, BROADCAST, b"enough");
    expect_bridged(&mut h, "br1", f, &["br2", "br3"]);
    assert_eq!(h.counters().total_drops(), 0);
    h.assert_no_frame_leak();
}

#[test]
fn truncated_frames_on_a_bridged_port_are_dropped() {
    let mut h = Harness::new();
    // Shorter than an Ethernet header.
    h.send("br1", vec![0xff; 13]);
    // An 802.1Q TPID with the tag cut short.
    let mut f = Vec::new();
    f.extend_from_slice(&BROADCAST);
    f.extend_from_slice(&host_mac(1));
    f.extend_from_slice(&[0x81, 0x00, 0x00]);
    h.send("br1", f);
    let out = bridge_out(&mut h);
    assert_eq!(out.map(|f| f.len()), [0, 0, 0]);
    assert_eq!(h.drops(DropReason::TruncatedEthernet), 1);
    assert_eq!(h.drops(DropReason::TruncatedVlan), 1);
    assert_eq!(h.counters().total_drops(), 2);
    h.assert_no_frame_leak();
}

#[test]
fn a_domain_with_a_single_port_has_no_flood_target() {
    let mut s = state();
    s.ports.push(xvs_control::state::PortSpec {
        attachment: None,
        name: "br4".into(),
        kind: xvs_control::state::PortKind::Bridged { domain: 9 },
        mtu: 1500,
    });
    let mut h = Harness::with(s, PipelineConfig::default());
    h.send("br4", frame(4, BROADCAST, b"alone"));
    assert!(h.sent("br4").is_empty(), "never back out of the in-port");
    let out = bridge_out(&mut h);
    assert_eq!(out.map(|f| f.len()), [0, 0, 0], "domains are separate");
    assert_eq!(h.drops(DropReason::L2NoFloodTarget), 1);
    assert_eq!(h.counters().total_drops(), 1);
    assert_eq!(h.counters().flooded, 0);

    // Domain 7 does not learn what domain 9 saw: host 4 is unknown there.
    let f = frame(1, host_mac(4), b"to host 4");
    expect_bridged(&mut h, "br1", f, &["br2", "br3"]);
    h.assert_no_frame_leak();
}

/// A frame from host `from` to `dst` with `ethertype` (or an 802.3 length)
/// and `payload`, padded to the 60-byte minimum.
fn raw_frame(from: u8, dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&host_mac(from));
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f.resize(f.len().max(60), 0);
    f
}

/// 01:80:c2:00:00:`last`.
fn ieee_group(last: u8) -> [u8; 6] {
    [0x01, 0x80, 0xc2, 0x00, 0x00, last]
}

#[test]
fn ieee_8021d_reserved_groups_are_never_bridged() {
    let mut h = Harness::new();
    let cases = [
        // An STP configuration BPDU: 802.3 length, LLC 42 42 03.
        (
            raw_frame(1, ieee_group(0x00), 38, &[0x42, 0x42, 0x03, 0, 0, 0, 0]),
            "STP",
        ),
        // A PAUSE frame: MAC control opcode 1, quanta 0xffff.
        (
            raw_frame(1, ieee_group(0x01), 0x8808, &[0, 1, 0xff, 0xff]),
            "PAUSE",
        ),
        (raw_frame(1, ieee_group(0x02), 0x8809, &[1, 1]), "LACP"),
        (
            raw_frame(1, ieee_group(0x03), 0x888e, &[1, 1, 0, 0]),
            "802.1X",
        ),
        (
            raw_frame(1, ieee_group(0x0e), 0x88cc, &[0x02, 0x07, 0x04]),
            "LLDP",
        ),
        (
            frame(1, ieee_group(0x0f), b"last reserved"),
            "01:80:c2:00:00:0f",
        ),
    ];
    for (f, what) in cases {
        expect_drop(&mut h, "br1", f, DropReason::L2Reserved, what);
    }
    assert_eq!(h.drops(DropReason::L2Reserved), 6);
    assert_bridge_counts(&h, 0, 0, 0);

    // Nothing was learned from them: host 1 is unknown, so this floods.
    let f = frame(2, host_mac(1), b"to host 1");
    expect_bridged(&mut h, "br2", f, &["br1", "br3"]);

    // 01:80:c2:00:00:10 is past the reserved block: flooded like any group.
    let f = frame(1, ieee_group(0x10), b"not reserved");
    expect_bridged(&mut h, "br1", f, &["br2", "br3"]);
    assert_bridge_counts(&h, 2, 0, 2);
    assert_eq!(h.counters().total_drops(), 6);
    h.assert_no_frame_leak();
}

#[test]
fn reserved_groups_on_a_routed_port_are_not_ours() {
    let mut h = Harness::new();
    // Routed ports take only what is addressed to the switch; an LLDP frame
    // there is simply not for us.
    let lldp = udp(pod_mac(1), ieee_group(0x0e), pod_ip(1), pod_ip(2), 64, b"x");
    expect_drop(
        &mut h,
        "pod1",
        lldp,
        DropReason::NotOurMac,
        "LLDP group on a pod port",
    );
    h.assert_no_frame_leak();
}

#[test]
fn an_all_zero_source_mac_is_dropped() {
    let mut h = Harness::new();
    let zero = [0; 6];
    let cases = [
        (
            "br1",
            udp(zero, BROADCAST, host_ip(1), host_ip(2), 64, b"x"),
            "broadcast on br1",
        ),
        (
            "br2",
            udp(zero, host_mac(3), host_ip(1), host_ip(3), 64, b"x"),
            "unicast on br2",
        ),
        (
            "pod1",
            udp(zero, GW_MAC, pod_ip(1), pod_ip(2), 64, b"x"),
            "to the gateway on pod1",
        ),
    ];
    for (port, f, what) in cases {
        expect_drop(&mut h, port, f, DropReason::BadSourceMac, what);
    }
    assert_eq!(h.drops(DropReason::BadSourceMac), 3);
    assert_eq!(
        h.counters().mac_learned,
        0,
        "a zero source is never learned"
    );

    // As a destination it is just an unknown unicast MAC: flooded.
    let f = frame(3, zero, b"to 00:00:00:00:00:00");
    expect_bridged(&mut h, "br3", f, &["br1", "br2"]);
    assert_bridge_counts(&h, 1, 0, 1);
    h.assert_no_frame_leak();
}

#[test]
fn a_new_snapshot_forgets_macs_of_a_renamed_port_only() {
    let mut h = Harness::new();
    h.send("br1", frame(1, BROADCAST, b"host 1 on br1"));
    h.send("br2", frame(2, BROADCAST, b"host 2 on br2"));
    bridge_out(&mut h);
    let f = frame(3, host_mac(1), b"to host 1");
    expect_bridged(&mut h, "br3", f, &["br1"]);
    let f = frame(3, host_mac(2), b"to host 2");
    expect_bridged(&mut h, "br3", f, &["br2"]);
    assert_bridge_counts(&h, 2, 2, 3);

    // br1's id (4) now belongs to another port of the same domain.
    let mut s = state();
    let br1 = s.ports.iter_mut().find(|p| p.name == "br1").unwrap();
    br1.name = "br1-new".into();
    let snapshot = std::sync::Arc::new(xvs_vswitch::snapshot::Snapshot::compile(&s, 2).unwrap());
    h.worker.pipeline.set_snapshot(snapshot);
    assert_eq!(h.worker.pipeline.snapshot().generation, 2);
    assert_eq!(h.worker.pipeline.snapshot().port_id("br1-new"), Some(4));

    // What each bridge port (ids 4, 5, 6) sent since the last look.
    let out = |h: &mut Harness| -> [Vec<Vec<u8>>; 3] {
        for name in ["pod1", "pod2", "pod3", "uplink"] {
            assert!(h.sent(name).is_empty(), "a bridged frame leaked to {name}");
        }
        let sent = [4, 5, 6].map(|i| h.worker.local_port_mut(i).unwrap().take_sent());
        for f in sent.iter().flatten() {
            parse_checked(f);
        }
        sent
    };

    // Host 2, on the unchanged br2, is still known.
    let f = frame(3, host_mac(2), b"to host 2 again");
    h.send("br3", f.clone());
    assert_eq!(out(&mut h), [vec![], vec![f], vec![]]);

    // Host 1 was learned on the old br1: forgotten, so the frame floods.
    let f = frame(3, host_mac(1), b"to host 1 again");
    h.send("br3", f.clone());
    assert_eq!(out(&mut h), [vec![f.clone()], vec![f], vec![]]);

    // Host 3 (br3, unchanged) is known too: no new learning so far.
    let f = frame(2, host_mac(3), b"to host 3");
    h.send("br2", f.clone());
    assert_eq!(out(&mut h), [vec![], vec![], vec![f]]);
    assert_bridge_counts(&h, 3, 4, 3);
    assert_eq!(h.counters().total_drops(), 0);
    h.assert_no_frame_leak();
}
