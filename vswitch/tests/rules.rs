//! User flow rules (`xvsctl add-flow`) in the pipeline: which rule wins
//! (priorities, prefixes, equal priorities), what each action does to the
//! frame (checked with etherparse), and how rule decisions are cached.
mod common;
use common::*;

use std::net::Ipv4Addr;

use etherparse::{EtherType, LinkExtSlice, TransportSlice};
use xvs_flowtable::FlowTable;
use xvs_vswitch::drop::DropReason;
use xvs_vswitch::flow_cache::{self, CachedAction};

const PAYLOAD: &[u8] = b"flow rule test payload";

/// A harness over the test state with `rules`, with a flow cache if
/// `cache`.
fn harness(rules: &[&str], cache: bool) -> (Harness, Option<std::sync::Arc<FlowTable>>) {
    let mut h = Harness::with(state_with_rules(rules), Default::default());
    let table = cache.then(|| h.enable_flow_cache(1024));
    (h, table)
}

/// UDP from pod `n` to `dst` with destination port `dport`.
fn pod_udp_to(n: u8, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    udp_ports(
        pod_mac(n),
        GW_MAC,
        pod_ip(n),
        dst,
        64,
        (40000, dport),
        PAYLOAD,
    )
}

/// The 802.1Q tags of `frame`, outermost first, as (PCP, VID), read by
/// etherparse, with the ethertype after them.
fn tags_of(frame: &[u8]) -> (Vec<(u8, u16)>, EtherType) {
    let p = parse_checked(frame);
    let mut tags = Vec::new();
    let mut ethertype = None;
    for ext in &p.link_exts {
        let LinkExtSlice::Vlan(v) = ext else {
            panic!("not a VLAN tag: {ext:?}")
        };
        tags.push((v.priority_code_point().value(), v.vlan_identifier().value()));
        ethertype = Some(v.ether_type());
    }
    let ethertype = ethertype.unwrap_or_else(|| match &p.link {
        Some(etherparse::LinkSlice::Ethernet2(e)) => e.ether_type(),
        other => panic!("no Ethernet II header: {other:?}"),
    });
    (tags, ethertype)
}

/// An IPv4/UDP frame between two bridged hosts, tagged with `vid` and PCP
/// `pcp`.
fn tagged_udp(vid: u16, pcp: u8) -> Vec<u8> {
    let inner = udp(HOST_A, HOST_B, pod_ip(1), pod_ip(2), 64, PAYLOAD);
    let mut f = tagged(HOST_A, HOST_B, vid, 0x0800, &inner[14..]);
    f[14] |= pcp << 5;
    f
}

const HOST_A: [u8; 6] = [0x02, 0, 0, 0, 0xbb, 1];
const HOST_B: [u8; 6] = [0x02, 0, 0, 0, 0xbb, 2];

// ---------------------------------------------------------------------------
// 7. Which rule wins.

/// Overlapping rules: a /24 under a /32, a /32 under a /24, a port drop
/// above all, an in_port rule, two TCP rules of equal priority.
const OVERLAPPING: [&str; 7] = [
    "priority=100,udp,nw_dst=10.244.1.0/24 actions=output:uplink",
    "priority=200,udp,nw_dst=10.244.1.12 actions=output:pod2",
    "priority=50,udp,nw_dst=10.244.1.11 actions=output:pod3",
    "priority=300,udp,tp_dst=9999 actions=drop",
    "priority=250,in_port=pod2,udp actions=output:pod1",
    "priority=20,tcp actions=output:pod2",
    "priority=20,tcp,tp_dst=80 actions=output:pod3",
];

/// Where a golden packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Out of this port unchanged (a rule's output).
    AsIs(&'static str),
    /// Routed out of this port to this MAC (the default pipeline).
    Routed(&'static str, [u8; 6]),
    /// Dropped by a rule.
    RuleDrop,
    /// Into the overlay (the default pipeline's route to node2).
    Overlay,
}

/// Sends `frame` on `port` and checks it met `fate`.
fn expect_fate(h: &mut Harness, what: &str, port: &str, frame: &[u8], fate: Fate) {
    let drops = h.drops(DropReason::RuleDrop);
    h.send(port, frame.to_vec());
    let mut out = h.all_sent();
    match fate {
        Fate::RuleDrop => {
            assert!(out.is_empty(), "{what}: sent {out:?}");
            assert_eq!(h.drops(DropReason::RuleDrop), drops + 1, "{what}");
        }
        Fate::AsIs(to) => {
            assert_eq!(out.len(), 1, "{what}: {out:?}");
            let (p, f) = out.pop().unwrap();
            assert_eq!((p.as_str(), &f[..]), (to, frame), "{what}");
        }
        Fate::Routed(to, mac) => {
            assert_eq!(out.len(), 1, "{what}: {out:?}");
            let (p, f) = out.pop().unwrap();
            let src = if to == "uplink" { UPLINK_MAC } else { GW_MAC };
            assert_eq!(
                (p.as_str(), f),
                (to, routed_frame(frame, src, mac)),
                "{what}"
            );
        }
        Fate::Overlay => {
            assert_eq!(out.len(), 1, "{what}: {out:?}");
            let (p, f) = out.pop().unwrap();
            assert_eq!(p, "uplink", "{what}");
            assert_eq!(
                vxlan_inner_to_node2(&f),
                routed_frame(frame, VTEP_MAC, REMOTE_VTEP_MAC),
                "{what}"
            );
        }
    }
}

#[test]
fn priorities_prefixes_and_ties_decide_golden_packets() {
    let tcp_to = |dst| tcp_syn(pod_mac(1), GW_MAC, pod_ip(1), dst, 64);
    let golden: Vec<(&str, &str, Vec<u8>, Fate)> = vec![
        (
            "/32 at 200 beats /24 at 100",
            "pod1",
            pod_udp_to(1, pod_ip(2), 5001),
            Fate::AsIs("pod2"),
        ),
        (
            "/24 catches the rest of the block",
            "pod1",
            pod_udp_to(1, pod_ip(3), 5001),
            Fate::AsIs("uplink"),
        ),
        (
            "/24 at 100 beats /32 at 50",
            "pod3",
            pod_udp_to(3, pod_ip(1), 5001),
            Fate::AsIs("uplink"),
        ),
        (
            "an unassigned address of the /24",
            "pod1",
            pod_udp_to(1, Ipv4Addr::new(10, 244, 1, 200), 5001),
            Fate::AsIs("uplink"),
        ),
        (
            "tp_dst drop at 300 beats the /32",
            "pod1",
            pod_udp_to(1, pod_ip(2), 9999),
            Fate::RuleDrop,
        ),
        (
            "in_port at 250 beats the prefixes",
            "pod2",
            pod_udp_to(2, pod_ip(3), 5001),
            Fate::AsIs("pod1"),
        ),
        (
            "tp_dst drop at 300 beats in_port at 250",
            "pod2",
            pod_udp_to(2, pod_ip(3), 9999),
            Fate::RuleDrop,
        ),
        (
            "outside the /24: default route",
            "pod1",
            pod_udp_to(1, EXTERNAL, 5001),
            Fate::Routed("uplink", ROUTER_MAC),
        ),
        (
            "outside the /24: default overlay",
            "pod1",
            pod_udp_to(1, REMOTE_POD, 5001),
            Fate::Overlay,
        ),
        (
            "equal priorities: the first added",
            "pod1",
            tcp_to(pod_ip(3)),
            Fate::AsIs("pod2"),
        ),
        (
            "no UDP rule for ICMP: default",
            "pod1",
            ping(pod_mac(1), GW_MAC, pod_ip(1), pod_ip(2), 64, 1),
            Fate::Routed("pod2", pod_mac(2)),
        ),
    ];
    for cache in [false, true] {
        let (mut h, _) = harness(&OVERLAPPING, cache);
        // Twice: with the cache, the second time is a hit.
        for round in 0..2 {
            for (what, port, frame, fate) in &golden {
                let what = format!("{what} (cache {cache}, round {round})");
                expect_fate(&mut h, &what, port, frame, *fate);
            }
        }
        if cache {
            let (misses, added, hits) = h.flow_counts();
            assert_eq!((misses, added), (11, 11));
            assert_eq!(hits, 11);
        }
        h.assert_no_frame_leak();
    }

    // The tie the other way round: now the tp_dst rule was added first.
    let mut swapped = OVERLAPPING;
    swapped.swap(5, 6);
    for cache in [false, true] {
        let (mut h, _) = harness(&swapped, cache);
        for _ in 0..2 {
            expect_fate(
                &mut h,
                "tie, swapped",
                "pod1",
                &tcp_to(pod_ip(3)),
                Fate::AsIs("pod3"),
            );
            // Port 443 only matches the catch-all TCP rule.
            let mut other = tcp_to(pod_ip(3));
            other[36..38].copy_from_slice(&443u16.to_be_bytes());
            fix_tcp_checksum(&mut other);
            expect_fate(
                &mut h,
                "tie, other port",
                "pod1",
                &other,
                Fate::AsIs("pod2"),
            );
        }
        h.assert_no_frame_leak();
    }
}

/// Recomputes the TCP checksum of an untagged IPv4/TCP frame (no options).
fn fix_tcp_checksum(frame: &mut [u8]) {
    let (ip, _) = etherparse::Ipv4Header::from_slice(&frame[14..]).unwrap();
    let (mut tcp, _) = etherparse::TcpHeader::from_slice(&frame[34..]).unwrap();
    let payload = frame[34 + tcp.header_len()..].to_vec();
    tcp.checksum = tcp.calc_checksum_ipv4(&ip, &payload).unwrap();
    let bytes = tcp.to_bytes();
    frame[34..34 + bytes.len()].copy_from_slice(&bytes);
}

// ---------------------------------------------------------------------------
// 8. Each action.

#[test]
fn output_sends_the_frame_unchanged_without_routing() {
    for cache in [false, true] {
        let (mut h, _) = harness(&["in_port=pod1,udp actions=output:pod3"], cache);
        for _ in 0..2 {
            let input = pod_udp(1, pod_ip(2), 64, PAYLOAD);
            let out = send_expect_one(&mut h, "pod1", input.clone(), "pod3");
            assert_eq!(out, input, "not routed: MACs and TTL as they came");
            assert_eq!(ipv4_of(&out).2, 64);
            // TTL 1 is not refused either.
            let input = pod_udp(1, pod_ip(2), 1, PAYLOAD);
            assert_eq!(
                send_expect_one(&mut h, "pod1", input.clone(), "pod3"),
                input
            );
        }
        let c = h.counters();
        assert_eq!((c.routed, c.icmp_errors, c.total_drops()), (0, 0, 0));
        h.assert_no_frame_leak();
    }
}

#[test]
fn drop_counts_rule_drop() {
    for cache in [false, true] {
        let (mut h, _) = harness(&["in_port=pod1,udp,tp_dst=5001 actions=drop"], cache);
        for _ in 0..2 {
            expect_drop(
                &mut h,
                "pod1",
                pod_udp(1, pod_ip(2), 64, PAYLOAD),
                DropReason::RuleDrop,
                "rule drop",
            );
        }
        assert_eq!(h.drops(DropReason::RuleDrop), 2);
        // Another port is not matched.
        send_expect_one(&mut h, "pod1", pod_udp_to(1, pod_ip(2), 5002), "pod2");
        h.assert_no_frame_leak();
    }
}

#[test]
fn mod_dl_dst_rewrites_only_the_destination() {
    for cache in [false, true] {
        let (mut h, _) = harness(
            &["in_port=pod1,udp actions=mod_dl_dst:02:00:00:00:01:03,output:pod3"],
            cache,
        );
        for _ in 0..2 {
            let input = pod_udp(1, pod_ip(3), 64, PAYLOAD);
            let out = send_expect_one(&mut h, "pod1", input.clone(), "pod3");
            let mut want = input.clone();
            want[..6].copy_from_slice(&pod_mac(3));
            assert_eq!(out, want);
            assert_eq!(macs_of(&out), (pod_mac(1), pod_mac(3)));
            assert_eq!(ipv4_of(&out), (pod_ip(1), pod_ip(3), 64));
        }
        h.assert_no_frame_leak();
    }
}

#[test]
fn mod_vlan_vid_pushes_a_tag_on_untagged_frames() {
    for cache in [false, true] {
        let (mut h, _) = harness(
            &["in_port=pod1,udp actions=mod_vlan_vid:10,output:br1"],
            cache,
        );
        for _ in 0..2 {
            let input = pod_udp(1, pod_ip(2), 64, PAYLOAD);
            let out = send_expect_one(&mut h, "pod1", input.clone(), "br1");
            assert_eq!(out, tagged(pod_mac(1), GW_MAC, 10, 0x0800, &input[14..]));
            assert_eq!(tags_of(&out), (vec![(0, 10)], EtherType::IPV4));
            assert_eq!(ipv4_of(&out), (pod_ip(1), pod_ip(2), 64));
            let p = parse_checked(&out);
            let Some(TransportSlice::Udp(u)) = &p.transport else {
                panic!("not UDP")
            };
            assert_eq!(u.payload(), PAYLOAD);
        }
        h.assert_no_frame_leak();
    }
}

#[test]
fn mod_vlan_vid_changes_the_vid_of_tagged_frames() {
    for cache in [false, true] {
        let (mut h, _) = harness(
            &["in_port=br1,dl_vlan=10 actions=mod_vlan_vid:20,output:br2"],
            cache,
        );
        for _ in 0..2 {
            let input = tagged_udp(10, 5);
            let out = send_expect_one(&mut h, "br1", input.clone(), "br2");
            assert_eq!(tags_of(&out), (vec![(5, 20)], EtherType::IPV4), "PCP kept");
            assert_eq!(out.len(), input.len());
            assert_eq!(out[..14], input[..14]);
            assert_eq!(out[16..], input[16..]);
        }
        // Another VID is not matched: bridged as it is.
        h.send("br1", tagged_udp(11, 0));
        assert_eq!(h.sent("br2"), vec![tagged_udp(11, 0)]);
        h.all_sent();
        h.assert_no_frame_leak();
    }
}

#[test]
fn push_vlan_then_mod_vlan_vid_stacks_a_tag() {
    let rules = [
        "in_port=pod1 actions=push_vlan:0x8100,mod_vlan_vid:30,output:br1",
        "in_port=br1 actions=push_vlan:0x8100,mod_vlan_vid:30,output:br2",
    ];
    for cache in [false, true] {
        let (mut h, _) = harness(&rules, cache);
        for _ in 0..2 {
            // Untagged: one tag.
            let input = pod_udp(1, pod_ip(2), 64, PAYLOAD);
            let out = send_expect_one(&mut h, "pod1", input.clone(), "br1");
            assert_eq!(out, tagged(pod_mac(1), GW_MAC, 30, 0x0800, &input[14..]));
            assert_eq!(tags_of(&out), (vec![(0, 30)], EtherType::IPV4));
            // Tagged: a new outer tag with the inner tag's PCP.
            let input = tagged_udp(10, 5);
            let out = send_expect_one(&mut h, "br1", input.clone(), "br2");
            assert_eq!(
                tags_of(&out),
                (vec![(5, 30), (5, 10)], EtherType::IPV4),
                "outer 30, inner 10"
            );
            assert_eq!(out.len(), input.len() + 4);
            assert_eq!(out[..12], input[..12]);
            assert_eq!(out[16..], input[12..]);
            assert_eq!(ipv4_of(&out), (pod_ip(1), pod_ip(2), 64));
        }
        h.assert_no_frame_leak();
    }
}

#[test]
fn strip_vlan_removes_the_tag() {
    for cache in [false, true] {
        let (mut h, _) = harness(
            &["in_port=br1,dl_vlan=10 actions=strip_vlan,output:br3"],
            cache,
        );
        for _ in 0..2 {
            let input = tagged_udp(10, 3);
            let out = send_expect_one(&mut h, "br1", input.clone(), "br3");
            let want = udp(HOST_A, HOST_B, pod_ip(1), pod_ip(2), 64, PAYLOAD);
            assert_eq!(out, want);
            assert_eq!(tags_of(&out), (vec![], EtherType::IPV4));
            // Untagged frames are not matched (dl_vlan=10), bridged as is.
        }
        h.assert_no_frame_leak();
    }
    // strip_vlan on an untagged frame changes nothing.
    let (mut h, _) = harness(&["in_port=pod1 actions=strip_vlan,output:pod2"], true);
    let input = pod_udp(1, pod_ip(2), 64, PAYLOAD);
    assert_eq!(
        send_expect_one(&mut h, "pod1", input.clone(), "pod2"),
        input
    );
}

#[test]
fn vxlan_action_encapsulates_ipv4_and_refuses_the_rest() {
    for cache in [false, true] {
        let (mut h, _) = harness(&["in_port=pod1 actions=vxlan:node2"], cache);
        for _ in 0..2 {
            let input = pod_udp(1, pod_ip(2), 64, PAYLOAD);
            let out = send_expect_one(&mut h, "pod1", input.clone(), "uplink");
            let inner = vxlan_inner_to_node2(&out);
            assert_eq!(
                inner[14..],
                input[14..],
                "inner IPv4 as it came (no TTL change)"
            );
            assert_eq!(ipv4_of(&inner), (pod_ip(1), pod_ip(2), 64));

            let v6 = ipv6_udp(
                pod_mac(1),
                GW_MAC,
                "fd00::1".parse().unwrap(),
                "fd00::2".parse().unwrap(),
                (1, 2),
                PAYLOAD,
            );
            expect_drop(&mut h, "pod1", v6, DropReason::RuleEncapNotIpv4, "IPv6");
            let arp = arp_request(pod_mac(1), pod_ip(1), GATEWAY);
            expect_drop(&mut h, "pod1", arp, DropReason::RuleEncapNotIpv4, "ARP");
        }
        // A frame that says IPv4 but whose header does not hold together
        // (the rule path skips ip4-input): a counted drop, no panic.
        for cut in [15, 20, 33] {
            let mut short = pod_udp(1, pod_ip(2), 64, PAYLOAD);
            short.truncate(cut);
            expect_drop(
                &mut h,
                "pod1",
                short,
                DropReason::MalformedIpv4,
                "cut short",
            );
        }
        let mut lying = pod_udp(1, pod_ip(2), 64, PAYLOAD);
        lying[16..18].copy_from_slice(&9000u16.to_be_bytes());
        expect_drop(
            &mut h,
            "pod1",
            lying,
            DropReason::MalformedIpv4,
            "total length lies",
        );
        assert_eq!(h.counters().vxlan_encap, 2);
        h.assert_no_frame_leak();
    }
    // A tagged IPv4 frame is not IPv4 after the MACs.
    let (mut h, _) = harness(&["in_port=br1 actions=vxlan:node2"], true);
    expect_drop(
        &mut h,
        "br1",
        tagged_udp(10, 0),
        DropReason::RuleEncapNotIpv4,
        "tagged",
    );
    h.assert_no_frame_leak();
}

#[test]
fn normal_routes_like_the_default_pipeline_and_the_flow_names_the_rule() {
    let rules = [
        "priority=100,in_port=pod1,udp actions=normal",
        "priority=10,udp actions=drop",
    ];
    let (mut h, table) = harness(&rules, true);
    let table = table.unwrap();
    let (mut plain, _) = harness(&[], false);
    for _ in 0..2 {
        for frame in [
            pod_udp(1, pod_ip(2), 64, PAYLOAD),
            pod_udp(1, REMOTE_POD, 64, PAYLOAD),
            pod_udp(1, pod_ip(3), 1, PAYLOAD),
        ] {
            h.send("pod1", frame.clone());
            plain.send("pod1", frame);
            for name in PORTS {
                assert_eq!(h.sent(name), plain.sent(name), "output on {name}");
            }
        }
    }
    // pod2 and the remote pod are cached (the TTL 1 packet is not).
    assert_eq!(h.flow_counts(), (4, 2, 2));
    let snap = h.worker.pipeline.snapshot().clone();
    let flow = flows_of(&table)
        .into_iter()
        .find(|f| f.key.tuple().dst == std::net::IpAddr::V4(pod_ip(2)))
        .unwrap();
    let CachedAction::Forward {
        rule: Some(rule), ..
    } = CachedAction::decode(flow.value.action())
    else {
        panic!("not a forward through a rule")
    };
    assert_eq!(
        snap.rules.rules()[usize::from(rule)].source,
        flow_rule(rules[0])
    );
    let d = flow_cache::describe(&flow, &snap, h.now_ns).unwrap();
    assert_eq!(d.rule.as_deref(), Some(rules[0]));
    assert!(d.actions.ends_with("output:pod2"), "{}", d.actions);
    assert_eq!(d.packets, 2);
    // Another pod's UDP falls to the drop rule.
    expect_drop(
        &mut h,
        "pod2",
        pod_udp(2, pod_ip(1), 64, PAYLOAD),
        DropReason::RuleDrop,
        "pod2",
    );
    h.assert_no_frame_leak();
}

#[test]
fn output_copies_go_to_every_port() {
    for cache in [false, true] {
        let (mut h, _) = harness(&["in_port=pod1,udp actions=output:pod2,output:pod3"], cache);
        for _ in 0..2 {
            let input = pod_udp(1, pod_ip(2), 64, PAYLOAD);
            h.send("pod1", input.clone());
            assert_eq!(h.sent("pod2"), vec![input.clone()]);
            assert_eq!(h.sent("pod3"), vec![input.clone()]);
            assert_nothing_sent(&mut h);
        }
        h.assert_no_frame_leak();
    }
}

#[test]
fn no_matching_rule_takes_the_default_pipeline() {
    for cache in [false, true] {
        let (mut h, _) = harness(
            &[
                "priority=100,in_port=pod2,udp actions=drop",
                "tcp actions=output:pod3",
            ],
            cache,
        );
        for _ in 0..2 {
            let input = pod_udp(1, pod_ip(2), 64, PAYLOAD);
            let out = send_expect_one(&mut h, "pod1", input.clone(), "pod2");
            assert_eq!(out, routed_frame(&input, GW_MAC, pod_mac(2)));
            let echo = send_expect_one(
                &mut h,
                "pod1",
                ping(pod_mac(1), GW_MAC, pod_ip(1), GATEWAY, 64, 1),
                "pod1",
            );
            assert_eq!(icmp_of(&echo).ty, 0, "echo reply");
            let arp = arp_request(pod_mac(1), pod_ip(1), GATEWAY);
            let reply = send_expect_one(&mut h, "pod1", arp, "pod1");
            assert_arp_reply(&reply, 1, GATEWAY);
        }
        assert_eq!(h.counters().total_drops(), 0);
        h.assert_no_frame_leak();
    }
}

// ---------------------------------------------------------------------------
// 9. Caching rule decisions.

#[test]
fn rule_hit_twice_is_classified_once() {
    let (mut h, table) = harness(
        &["priority=100,in_port=pod1,udp,tp_dst=5001 actions=mod_vlan_vid:7,output:br2"],
        true,
    );
    let table = table.unwrap();
    let input = pod_udp(1, pod_ip(3), 64, PAYLOAD);
    let want = tagged(pod_mac(1), GW_MAC, 7, 0x0800, &input[14..]);
    for _ in 0..2 {
        assert_eq!(send_expect_one(&mut h, "pod1", input.clone(), "br2"), want);
    }
    assert_eq!(h.flow_counts(), (1, 1, 1));
    let flows = flows_of(&table);
    assert_eq!(flows.len(), 1);
    assert_eq!(
        CachedAction::decode(flows[0].value.action()),
        CachedAction::Rule { rule: 0 }
    );
    assert_eq!(
        (flows[0].packets, flows[0].bytes),
        (2, 2 * input.len() as u64),
        "the bytes received, not the bytes sent"
    );
    let d = flow_cache::describe(&flows[0], h.worker.pipeline.snapshot(), h.now_ns).unwrap();
    assert_eq!(d.actions, "mod_vlan_vid:7,output:br2");
    h.assert_no_frame_leak();
}

#[test]
fn rule_on_dl_src_is_applied_every_time_never_cached() {
    let (mut h, table) = harness(
        &["priority=100,dl_src=02:00:00:00:01:01 actions=output:pod3"],
        true,
    );
    let table = table.unwrap();
    for _ in 0..3 {
        let input = pod_udp(1, pod_ip(2), 64, PAYLOAD);
        assert_eq!(
            send_expect_one(&mut h, "pod1", input.clone(), "pod3"),
            input
        );
        // pod2's packets miss the rule, also on dl_src: not cached either
        // (another source MAC would match it).
        let input = pod_udp(2, pod_ip(1), 64, PAYLOAD);
        let out = send_expect_one(&mut h, "pod2", input.clone(), "pod1");
        assert_eq!(out, routed_frame(&input, GW_MAC, pod_mac(1)));
    }
    assert_eq!(h.flow_counts(), (6, 0, 0));
    assert!(table.is_empty());
    // A frame with the same key but another source MAC is routed.
    let other = udp(
        [0x02, 0, 0, 0, 9, 9],
        GW_MAC,
        pod_ip(1),
        pod_ip(2),
        64,
        PAYLOAD,
    );
    let out = send_expect_one(&mut h, "pod1", other.clone(), "pod2");
    assert_eq!(out, routed_frame(&other, GW_MAC, pod_mac(2)));
    h.assert_no_frame_leak();
}

#[test]
fn modification_before_normal_caches_nothing() {
    let (mut h, table) = harness(
        &["in_port=pod1,udp actions=mod_dl_dst:ee:ee:ee:ee:ee:ee,normal"],
        true,
    );
    let table = table.unwrap();
    for _ in 0..2 {
        let input = pod_udp(1, pod_ip(2), 64, PAYLOAD);
        let out = send_expect_one(&mut h, "pod1", input.clone(), "pod2");
        assert_eq!(out, routed_frame(&input, GW_MAC, pod_mac(2)));
    }
    assert_eq!(h.flow_counts(), (2, 0, 0));
    assert!(table.is_empty());

    // A modification that changes the decision: the packet is not ours any
    // more, and every packet finds that out.
    let (mut h, table) = harness(
        &["in_port=pod1,udp actions=mod_dl_dst:02:00:00:00:00:99,normal"],
        true,
    );
    for _ in 0..2 {
        expect_drop(
            &mut h,
            "pod1",
            pod_udp(1, pod_ip(2), 64, PAYLOAD),
            DropReason::NotOurMac,
            "modified then normal",
        );
    }
    assert!(table.unwrap().is_empty());
    h.assert_no_frame_leak();
}

#[test]
fn normal_with_a_copy_caches_nothing_and_copies_every_time() {
    let (mut h, table) = harness(&["in_port=pod1,udp actions=normal,output:pod3"], true);
    for _ in 0..2 {
        let input = pod_udp(1, pod_ip(2), 64, PAYLOAD);
        h.send("pod1", input.clone());
        assert_eq!(h.sent("pod3"), vec![input.clone()], "the copy, as it came");
        assert_eq!(
            h.sent("pod2"),
            vec![routed_frame(&input, GW_MAC, pod_mac(2))]
        );
        assert_nothing_sent(&mut h);
    }
    assert!(table.unwrap().is_empty());
    assert_eq!(h.counters().flows_added, 0);
    h.assert_no_frame_leak();
}

#[test]
fn rule_naming_an_unknown_port_or_node_is_refused() {
    // A rule naming a port or node that does not exist is refused when the
    // snapshot is compiled, not at packet time.
    let s = state_with_rules(&["in_port=pod1 actions=output:nosuch"]);
    assert!(xvs_vswitch::snapshot::Snapshot::compile(&s, 1).is_err());
    let s = state_with_rules(&["in_port=pod1 actions=vxlan:nosuch"]);
    assert!(xvs_vswitch::snapshot::Snapshot::compile(&s, 1).is_err());
}
