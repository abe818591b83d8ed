//! The flow cache and flow rules of a running xvsd, driven with xvsctl
//! while pods talk: `dump-flows` shows the flows real traffic made (key,
//! actions, counters), `add-flow` changes what happens to exactly the
//! packets it matches and leaves every other cached flow in place (its
//! counters keep growing), a redirect rule delivers a pod's packets to
//! another pod where tshark sees them, `del-flows` undoes it, bad rules
//! get clear errors, and `dump-conntrack` lists the pings' and a TCP
//! stream's connections.

mod common;

use common::{ping, ping_eventually, root_or_skip, routed_pods, sh, Topology};
use serde_json::Value;

const POD1: (&str, &str, &str, &str) = ("xfl-pod1", "xfl1", "10.244.1.91", "02:00:00:0f:00:01");
const POD2: (&str, &str, &str, &str) = ("xfl-pod2", "xfl2", "10.244.1.92", "02:00:00:0f:00:02");
const POD3: (&str, &str, &str, &str) = ("xfl-pod3", "xfl3", "10.244.1.93", "02:00:00:0f:00:03");

use common::output_text as text;

/// The cached flow from `src` to `dst` in a `dump-flows -o json` answer.
fn flow<'a>(dump: &'a Value, src: &str, dst: &str) -> Option<&'a Value> {
    dump["flows"]
        .as_array()?
        .iter()
        .find(|f| f["src"] == src && f["dst"] == dst)
}

#[test]
fn flows_and_rules_through_xvsctl() {
    let Some(_serial) = root_or_skip("flows_and_rules_through_xvsctl") else {
        return;
    };
    let mut topo = Topology::default();
    let dir = std::env::temp_dir().join(format!("xvs-flows-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("xvsd.sock").display().to_string();
    let xvsd = routed_pods(
        &mut topo,
        &[POD1, POD2, POD3],
        &["--control-socket", &socket],
    );
    let xvsctl = common::bin_path("xvsctl");
    let ctl = |args: &str| sh(&format!("{} --socket {socket} {args}", xvsctl.display()));
    let ok = |args: &str| {
        let out = ctl(args);
        assert!(out.status.success(), "xvsctl {args}: {}", text(&out));
        text(&out)
    };
    let json = |args: &str| -> Value {
        let out = ok(&format!("-o json {args}"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args}: {e}: {out}"))
    };
    let (p1, p2, p3) = (POD1.2, POD2.2, POD3.2);

    // Pings make one flow each way per pair, with the pings' counts.
    assert!(ping_eventually(POD1.0, p2, 5), "{}", xvsd.log());
    assert!(ping(POD1.0, p2, 3) && ping(POD1.0, p3, 3), "{}", xvsd.log());
    let dump = json("dump-flows");
    let to2 = flow(&dump, p1, p2).unwrap_or_else(|| panic!("no {p1} > {p2} flow: {dump:#}"));
    assert_eq!(
        to2["match"],
        format!("in_port={},icmp,nw_src={p1},nw_dst={p2}", POD1.1)
    );
    assert!(
        to2["actions"]
            .as_str()
            .unwrap()
            .ends_with(&format!("output:{}", POD2.1)),
        "{to2}"
    );
    assert!(to2["packets"].as_u64().unwrap() >= 3, "{to2}");
    assert!(to2["rule"].is_null() && to2["current"] == true, "{to2}");
    assert!(flow(&dump, p2, p1).is_some(), "the replies' flow: {dump:#}");
    let to3_before = flow(&dump, p1, p3).expect("pod1 > pod3 flow")["packets"]
        .as_u64()
        .unwrap();
    let table = ok("dump-flows");
    assert!(
        table.contains(&format!(
            "in_port={},icmp,nw_src={p1},nw_dst={p2}, packets:",
            POD1.1
        )),
        "{table}"
    );
    // The pings and a TCP stream are tracked connections, as conntrack -L
    // shows them.
    common::iperf3(POD3.0, p3, POD2.0, "-t 1");
    let conns = ok(&format!("dump-conntrack --addr {p2}"));
    assert!(
        conns.lines().any(|l| l.starts_with("icmp ")
            && l.contains(&format!("src={p1} dst={p2} id="))
            && l.contains(&format!("src={p2} dst={p1} id="))),
        "{conns}"
    );
    assert!(
        conns.lines().any(|l| l.starts_with("tcp ")
            && l.contains(&format!("src={p2} dst={p3} sport="))
            && l.contains("dport=5201")
            && l.contains("[ASSURED]")),
        "{conns}"
    );
    assert!(
        !conns.contains(&format!("src={p1} dst={p3} ")),
        "filtered by {p2}: {conns}"
    );

    // Filters.
    let only2 = json(&format!("dump-flows --port {}", POD2.1));
    assert!(
        only2["flows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["in_port"] == POD2.1),
        "{only2:#}"
    );
    assert!(flow(&only2, p2, p1).is_some(), "{only2:#}");
    let about3 = json(&format!("dump-flows --addr {p3}"));
    assert!(
        about3["flows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["src"] == p3 || f["dst"] == p3),
        "{about3:#}"
    );

    // A drop rule for pod1 > pod2 ICMP: those pings fail, pod1 > pod3 is
    // untouched, and its cached flow was kept (its count keeps growing
    // from where it was instead of starting again).
    let rule = format!(
        "priority=100,in_port={},icmp,nw_dst={p2} actions=drop",
        POD1.1
    );
    assert!(ok(&format!("add-flow \"{rule}\"")).contains("+ rule"));
    assert!(!ping(POD1.0, p2, 2), "the drop rule lets pings through");
    assert!(ping(POD1.0, p3, 2), "{}", xvsd.log());
    let dump = json("dump-flows");
    let to3 = flow(&dump, p1, p3).expect("pod1 > pod3 flow kept");
    assert!(
        to3["packets"].as_u64().unwrap() >= to3_before + 2,
        "the pod3 flow was re-created instead of kept: {to3} (had {to3_before})"
    );
    let dropped = flow(&dump, p1, p2).expect("the dropped flow is cached");
    assert_eq!(dropped["actions"], "drop", "{dropped}");
    assert_eq!(dropped["rule"], rule.as_str());
    let rules = ok("dump-rules");
    assert!(rules.contains(&rule), "{rules}");
    let listed = json("dump-rules");
    assert!(
        listed["rules"][0]["packets"].as_u64().unwrap() >= 2,
        "{listed:#}"
    );

    // The same priority and match with other actions replaces the rule,
    // as ovs-ofctl add-flow does.
    let normal = rule.replace("actions=drop", "actions=normal");
    let replaced = ok(&format!("add-flow \"{normal}\""));
    assert!(
        replaced.contains("- rule") && replaced.contains("+ rule"),
        "{replaced}"
    );
    assert_eq!(json("dump-rules")["rules"].as_array().unwrap().len(), 1);
    assert!(ping(POD1.0, p2, 2), "{}", xvsd.log());

    // Deleting it by its match leaves forwarding as it was.
    let del = ok(&format!(
        "del-flows \"priority=100,in_port={},icmp,nw_dst={p2}\"",
        POD1.1
    ));
    assert!(del.contains("- rule"), "{del}");
    assert!(ping(POD1.0, p2, 2), "{}", xvsd.log());

    // A redirect (service chaining): UDP to pod2 port 9999 goes to pod3,
    // unchanged, where tshark sees it.
    ok(&format!(
        "add-flow \"priority=200,in_port={},udp,tp_dst=9999 actions=output:{}\"",
        POD1.1, POD3.1
    ));
    let capture = std::process::Command::new("ip")
        .args(["netns", "exec", POD3.0, "tshark", "-i", "eth0", "-c", "1"])
        .args(["-a", "duration:15", "-f", "udp port 9999", "-T", "fields"])
        .args(["-e", "ip.src", "-e", "ip.dst", "-e", "ip.ttl"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting tshark");
    std::thread::sleep(std::time::Duration::from_secs(2));
    for _ in 0..5 {
        sh(&format!(
            "ip netns exec {} bash -c 'echo chained > /dev/udp/{p2}/9999'",
            POD1.0
        ));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let seen = capture.wait_with_output().expect("tshark");
    let seen = String::from_utf8_lossy(&seen.stdout);
    assert_eq!(
        seen.split_whitespace().collect::<Vec<_>>(),
        [p1, p2, "64"],
        "pod3 should see pod1's datagram to pod2, TTL untouched"
    );

    // A `normal` rule: forwarded as usual, and the flow names the rule.
    ok(&format!(
        "add-flow \"priority=50,in_port={},icmp actions=normal\"",
        POD2.1
    ));
    assert!(ping(POD2.0, p3, 2), "{}", xvsd.log());
    let dump = json("dump-flows");
    let normal = flow(&dump, p2, p3).expect("pod2 > pod3 flow");
    assert!(
        normal["rule"].as_str().unwrap().contains("actions=normal")
            && normal["actions"]
                .as_str()
                .unwrap()
                .ends_with(&format!("output:{}", POD3.1)),
        "{normal}"
    );

    // The rules are desired state.
    let state = json("get-state");
    assert_eq!(state["rules"].as_array().unwrap().len(), 2, "{state:#}");

    // Cached flows can be flushed; traffic caches them again.
    let flushed = ok("del-flows --cached");
    assert!(flushed.contains("cached flows deleted"), "{flushed}");
    assert_eq!(json("dump-flows")["cached"], 0);
    assert!(ping(POD1.0, p3, 1));
    assert!(flow(&json("dump-flows"), p1, p3).is_some());

    // Bad rules: clear errors, nothing changes.
    for (bad, says) in [
        ("tcp,tp_dst=80", "actions"),
        ("in_port=nosuch actions=drop", "no port named `nosuch`"),
        ("tp_dst=80 actions=drop", "tcp"),
        ("actions=vxlan:nowhere", "remote node"),
    ] {
        let out = ctl(&format!("add-flow \"{bad}\""));
        assert!(
            !out.status.success() && text(&out).contains(says),
            "{bad}: {}",
            text(&out)
        );
    }
    let none = ctl("del-flows");
    assert!(
        !none.status.success() && text(&none).contains("--all"),
        "{}",
        text(&none)
    );
    ok("del-flows --all");
    assert_eq!(json("dump-rules")["rules"].as_array().unwrap().len(), 0);
    assert!(ping(POD1.0, p2, 1), "{}", xvsd.log());
    drop(xvsd);
    let _ = std::fs::remove_dir_all(&dir);
}
