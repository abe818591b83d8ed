//! `xvsctl trace` against a running xvsd: a described packet from one pod
//! to another is shown leaving on the other pod's port, and nothing
//! reaches that pod (its kernel's count of IPv4 packets received does not
//! move until a real ping goes through); a bad description gets a clear
//! error.

mod common;

use std::time::Duration;

use common::{ping_eventually, root_or_skip, routed_pods, run, sh, Topology};

const POD1: (&str, &str, &str, &str) = ("xtr-pod1", "xtr1", "10.244.1.91", "02:00:00:0e:00:01");
const POD2: (&str, &str, &str, &str) = ("xtr-pod2", "xtr2", "10.244.1.92", "02:00:00:0e:00:02");

use common::output_text as text;

/// IPv4 packets the kernel of pod namespace `ns` received (`Ip:
/// InReceives` of its /proc/net/snmp). Only IPv4 counts: the host ends
/// of the veths send their own IPv6 chatter (DAD, router solicitations)
/// straight to the pods now and then.
fn ipv4_received(ns: &str) -> u64 {
    let snmp = run(&format!("ip netns exec {ns} cat /proc/net/snmp"));
    let mut ip = snmp.lines().filter(|l| l.starts_with("Ip: "));
    let (names, values) = (ip.next().unwrap_or(""), ip.next().unwrap_or(""));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "InReceives")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no Ip InReceives in {snmp}"))
}

#[test]
fn trace_shows_the_path_and_sends_nothing() {
    let Some(_serial) = root_or_skip("trace_shows_the_path_and_sends_nothing") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("xvs-trace-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("xvsd.sock").display().to_string();
    let mut topo = Topology::default();
    let xvsd = routed_pods(&mut topo, &[POD1, POD2], &["--control-socket", &socket]);
    let xvsctl = common::bin_path("xvsctl");
    let ctl = |args: &str| sh(&format!("{} --socket {socket} {args}", xvsctl.display()));

    let (rx1, rx2) = (ipv4_received(POD1.0), ipv4_received(POD2.0));

    let icmp = format!(
        "in_port={},icmp,nw_src={},nw_dst={}",
        POD1.1, POD1.2, POD2.2
    );
    let out = ctl(&format!("trace '{icmp}'"));
    let shown = text(&out);
    assert!(out.status.success(), "{shown}\n{}", xvsd.log());
    assert!(
        shown.starts_with(&format!("packet: in_port={},dl_src={}", POD1.1, POD1.3)),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "ip4-forward: {}: out {} to {}",
            POD2.2, POD2.1, POD2.3
        )),
        "{shown}"
    );
    let output = format!(
        "output to {}: ee:ee:ee:ee:ee:ee > {}, {} > {} ttl 63, icmp echo request",
        POD2.1, POD2.3, POD1.2, POD2.2
    );
    assert!(shown.contains(&output), "{shown}");

    // The JSON form, with the words as separate arguments.
    let words = icmp.replace(',', " ");
    let out = ctl(&format!("-o json trace {words}"));
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON trace");
    assert_eq!(v["verdicts"][0]["verdict"], "output", "{v}");
    assert_eq!(v["verdicts"][0]["port"], POD2.1, "{v}");
    assert_eq!(v["stages"][0]["stage"], "ethernet-input", "{v}");

    // A ping of the gateway is answered, in the trace only.
    let gw = ctl(&format!("trace in_port={},icmp,nw_dst=169.254.1.1", POD1.1));
    assert!(
        text(&gw).contains(&format!("output to {}: ", POD1.1))
            && text(&gw).contains("icmp echo reply"),
        "{}",
        text(&gw)
    );

    // Nothing was sent: neither pod received anything.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ipv4_received(POD2.0), rx2, "a traced packet reached pod2");
    assert_eq!(ipv4_received(POD1.0), rx1, "a traced reply reached pod1");

    // Bad descriptions: refused with what was wrong.
    for (description, says) in [
        (
            "in_port=nope,icmp,nw_dst=10.244.1.92".to_string(),
            "in_port=nope: the switch has no such port",
        ),
        (
            format!("in_port={},icmp,nw_dst=10.244.1.0/24", POD1.1),
            "a traced packet has one address there, not a prefix",
        ),
        (
            format!("in_port={},tcp,nw_dst={}", POD1.1, POD2.2),
            "a tcp or udp packet needs tp_dst=PORT",
        ),
        (
            format!("in_port={},tp_dst=80,nw_dst={}", POD1.1, POD2.2),
            "tp_dst=80 needs tcp or udp",
        ),
    ] {
        let out = ctl(&format!("trace '{description}'"));
        let said = text(&out);
        assert!(
            !out.status.success() && said.contains("invalid-params") && said.contains(says),
            "{description}: {said}"
        );
    }

    // The counters do count: a real ping gets through and is received.
    assert!(ping_eventually(POD1.0, POD2.2, 5), "{}", xvsd.log());
    assert!(ipv4_received(POD2.0) > rx2, "the ping reached pod2");

    xvsd.terminate();
    std::fs::remove_dir_all(&dir).unwrap();
}
