//! xvsd end to end over AF_XDP (issue #4): pods in network namespaces whose
//! veth host ends are xvsd ports, a second node built the way Flannel
//! builds one (the kernel's VXLAN device and routes), the node's own
//! traffic on the uplink, and a crash and restart. Real peers only: ping,
//! iperf3, the kernel's TCP stack.

mod common;

use common::{
    iperf3, node_tcp_echo, ping, ping_eventually, root_or_skip, routed_pods, run, sh, Topology,
    Xvsd,
};

const POD_CIDR: &str = "10.244.1.0/24";

fn pod_args(pods: &[(&str, &str, &str)]) -> Vec<String> {
    pods.iter()
        .flat_map(|(host, ip, mac)| ["--pod".to_string(), format!("{host},{ip},{mac}")])
        .collect()
}

/// Every worker's frames are all accounted for after shutdown.
fn assert_balanced(log: &str) {
    let reports = log.lines().filter(|l| l.contains("frame accounting"));
    let (mut n, mut balanced) = (0, 0);
    for line in reports {
        n += 1;
        balanced += usize::from(line.contains("balanced=true"));
    }
    assert!(
        n > 0 && balanced == n,
        "frame accounting after shutdown:\n{log}"
    );
}

/// The numeric `key=` field of a log line.
fn field(line: &str, key: &str) -> u64 {
    let at = line.find(&format!(" {key}=")).expect("field in log line") + key.len() + 2;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a number")
}

/// The numeric `key=` field of each "worker counters" log line, by worker.
fn worker_field(log: &str, key: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("worker counters"))
        .map(|l| field(l, key))
        .collect()
}

/// The numeric `key=` field of the "port counters" log line of `port`.
fn port_field(log: &str, port: &str, key: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains("port counters") && l.contains(&format!("port=\"{port}\"")))
        .unwrap_or_else(|| panic!("no counters of port {port}:\n{log}"));
    field(line, key)
}

fn xdp_attached(ifname: &str) -> bool {
    String::from_utf8_lossy(&sh(&format!("ip link show dev {ifname}")).stdout).contains("xdp")
}

/// (a) Three pods on one node: ping through the gateway, TCP and UDP with
/// iperf3, frames all accounted for, and an idle worker that sleeps.
#[test]
fn three_pods_on_one_node() {
    let Some(_serial) = root_or_skip("three_pods_on_one_node") else {
        return;
    };
    let mut topo = Topology::default();
    let pods = [
        ("xta1", "10.244.1.11", "02:00:00:0a:00:01"),
        ("xta2", "10.244.1.12", "02:00:00:0a:00:02"),
        ("xta3", "10.244.1.13", "02:00:00:0a:00:03"),
    ];
    for (i, (host, ip, mac)) in pods.iter().enumerate() {
        topo.pod(&format!("xta-pod{}", i + 1), host, ip, mac);
    }
    let mut args = vec!["--node-ip", "192.168.77.1", "--pod-cidr", POD_CIDR];
    let pod_args = pod_args(&pods);
    args.extend(pod_args.iter().map(String::as_str));
    let xvsd = Xvsd::start(&args);

    assert!(
        ping_eventually("xta-pod1", "169.254.1.1", 5),
        "gateway:\n{}",
        xvsd.log()
    );
    for (from, to) in [(1, 2), (2, 3), (3, 1)] {
        let dst = pods[to - 1].1;
        assert!(
            ping_eventually(&format!("xta-pod{from}"), dst, 5)
                && ping(&format!("xta-pod{from}"), dst, 3),
            "pod{from} -> pod{to}:\n{}",
            xvsd.log()
        );
    }

    let tcp = iperf3("xta-pod2", pods[1].1, "xta-pod1", "-t 2");
    let received = tcp["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    assert!(
        received > 10 << 20,
        "TCP pod1 -> pod2 moved only {received} bytes"
    );

    let udp = iperf3("xta-pod1", pods[0].1, "xta-pod3", "-u -b 20M -t 2");
    let sum = &udp["end"]["sum"];
    let (lost, packets) = (
        sum["lost_packets"].as_u64().unwrap(),
        sum["packets"].as_u64().unwrap(),
    );
    assert!(
        packets > 1000 && lost * 100 < packets,
        "UDP pod3 -> pod1: {lost} of {packets} lost"
    );

    // Idle: the worker sleeps in poll(2) instead of spinning.
    xvsd.assert_workers_idle();

    let log = xvsd.terminate();
    assert_balanced(&log);
    for (host, _, _) in pods {
        assert!(
            !xdp_attached(host),
            "{host} still has an XDP program after shutdown"
        );
    }
}

/// Two workers on two cores. Pods 1 and 2 have a veth queue per worker,
/// so both workers serve them; pod 3 has one queue, so one worker serves it
/// and the other hands it its packets.
#[test]
fn two_workers_split_the_queues() {
    let Some(_serial) = root_or_skip("two_workers_split_the_queues") else {
        return;
    };
    let mut topo = Topology::default();
    let pods = [
        ("xtw1", "10.244.1.41", "02:00:00:0f:00:01"),
        ("xtw2", "10.244.1.42", "02:00:00:0f:00:02"),
        ("xtw3", "10.244.1.43", "02:00:00:0f:00:03"),
    ];
    for (i, (host, ip, mac)) in pods.iter().enumerate() {
        let queues = if i < 2 { 2 } else { 1 };
        topo.pod_with_queues(&format!("xtw-pod{}", i + 1), host, ip, mac, queues);
    }
    let mut args = vec![
        "--node-ip",
        "192.168.77.1",
        "--pod-cidr",
        POD_CIDR,
        "--cores",
        "0,1",
    ];
    let pod_args = pod_args(&pods);
    args.extend(pod_args.iter().map(String::as_str));
    let xvsd = Xvsd::start(&args);
    let log = xvsd.log();
    assert!(
        log.contains(r#"port="xtw1" xdp="native" bind="copy" queues=2 workers=[0, 1]"#)
            && log.contains(r#"port="xtw3" xdp="native" bind="copy" queues=1 workers=[0]"#),
        "queues dealt out to both workers:\n{log}"
    );

    for (from, to) in [(1, 2), (2, 3), (3, 1), (1, 3)] {
        let dst = pods[to - 1].1;
        assert!(
            ping_eventually(&format!("xtw-pod{from}"), dst, 5)
                && ping(&format!("xtw-pod{from}"), dst, 3),
            "pod{from} -> pod{to}:\n{}",
            xvsd.log()
        );
    }
    // Several streams spread over both queues, hence both workers.
    let tcp = iperf3("xtw-pod2", pods[1].1, "xtw-pod1", "-t 2 -P 4");
    let received = tcp["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    assert!(received > 10 << 20, "TCP pod1 -> pod2: {received} bytes");
    // Both ways through the hand-off: pod1's packets to pod3 cross it when
    // pod1's kernel put them on the queue of the worker that does not serve
    // pod3, a hash of each connection; 8 streams each way make it all but
    // certain that some do (all 16 on one side: 1 in 65536).
    for (server, ip, client) in [
        ("xtw-pod3", pods[2].1, "xtw-pod1"),
        ("xtw-pod1", pods[0].1, "xtw-pod3"),
    ] {
        let r = iperf3(server, ip, client, "-t 2 -P 8");
        let received = r["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
        assert!(
            received > 10 << 20,
            "TCP {client} -> {server}: {received} bytes"
        );
    }
    xvsd.assert_workers_idle();

    let log = xvsd.terminate();
    assert_balanced(&log);
    let rx = worker_field(&log, "rx");
    assert!(rx.len() == 2 && rx.iter().all(|&n| n > 1000), "{log}");
    let handed_off = worker_field(&log, "handed_off");
    assert!(handed_off.iter().sum::<u64>() > 1000, "{log}");
    assert_eq!(worker_field(&log, "handoff_no_frame"), [0, 0], "{log}");
}

/// Two hosts on one subnet behind bridged ports: xvsd switches their
/// frames by MAC (ARP included), a bridge-only switch with no node IP or
/// pod CIDR. Its worker's thread id is logged, and at shutdown the report
/// is written as JSON.
#[test]
fn bridged_ports_switch_one_subnet() {
    let Some(_serial) = root_or_skip("bridged_ports_switch_one_subnet") else {
        return;
    };
    let mut topo = Topology::default();
    topo.host("xtl-h1", "xtl1", "10.99.0.1/24");
    topo.host("xtl-h2", "xtl2", "10.99.0.2/24");
    let report = std::env::temp_dir().join(format!("xvsd-report-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&report);
    let xvsd = Xvsd::start(&[
        "--bridged",
        "xtl1",
        "--bridged",
        "xtl2,1",
        "--report-json",
        report.to_str().expect("a UTF-8 temp dir"),
    ]);
    let log = xvsd.log();
    let up = log
        .lines()
        .find(|l| l.contains("worker up"))
        .unwrap_or_else(|| panic!("no worker up line:\n{log}"));
    let tid = field(up, "tid");
    let comm = std::fs::read_to_string(format!("/proc/{}/task/{tid}/comm", xvsd.pid()));
    assert_eq!(
        comm.as_deref().map(str::trim).ok(),
        Some("xvs-worker-0"),
        "{up}"
    );

    assert!(
        ping_eventually("xtl-h1", "10.99.0.2", 5) && ping("xtl-h1", "10.99.0.2", 3),
        "h1 -> h2:\n{}",
        xvsd.log()
    );
    assert!(ping("xtl-h2", "10.99.0.1", 3), "h2 -> h1:\n{}", xvsd.log());
    let tcp = iperf3("xtl-h2", "10.99.0.2", "xtl-h1", "-t 2");
    let received = tcp["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    assert!(received > 10 << 20, "TCP h1 -> h2: {received} bytes");

    let log = xvsd.terminate();
    assert_balanced(&log);
    for port in ["xtl1", "xtl2"] {
        let (rx, tx) = (port_field(&log, port, "rx"), port_field(&log, port, "tx"));
        assert!(rx > 1000 && tx > 1000, "{port}: rx {rx} tx {tx}\n{log}");
        assert!(!xdp_attached(port), "{port} keeps XDP after shutdown");
    }
    assert!(
        log.lines()
            .any(|l| l.contains("worker time") && field(l, "packets") > 1000),
        "{log}"
    );

    let text = std::fs::read_to_string(&report).unwrap_or_else(|e| panic!("{e}:\n{log}"));
    let _ = std::fs::remove_file(&report);
    let json: serde_json::Value = serde_json::from_str(&text).expect("the report is JSON");
    let worker = &json["workers"][0];
    assert_eq!(worker["tid"].as_u64(), Some(tid), "{text}");
    let times = &worker["times"];
    let packets = times["packets"].as_u64().unwrap_or(0);
    assert!(packets > 1000, "{text}");
    assert_eq!(worker["rx_packets"].as_u64(), Some(packets), "{text}");
    assert!(times["busy_polls"].as_u64().unwrap_or(0) > 0, "{text}");
    let ports = json["ports"].as_array().expect("ports");
    assert_eq!(ports.len(), 2, "{text}");
    for p in ports {
        assert!(
            p["counters"]["tx_packets"].as_u64().unwrap_or(0) > 1000,
            "{text}"
        );
        assert!(
            p["steering"]["redirected"].as_u64().unwrap_or(0) > 1000,
            "{text}"
        );
    }
}

/// The remote node: netns `xtb-node2` on the other end of the uplink veth,
/// with a VXLAN device, routes and neighbour entries as Flannel programs
/// them, and a pod `xtb-r2` (10.244.2.5) routed behind it.
fn kernel_node(topo: &mut Topology, our_mac: &str) {
    topo.netns("xtb-node2");
    topo.netns("xtb-r2");
    let _ = sh("ip link del xtbup 2>/dev/null");
    run("ip link add xtbup type veth peer name eth0 netns xtb-node2");
    topo.link("xtbup");
    run(&format!("ip link set xtbup address {our_mac}"));
    run("ip addr add 192.168.77.1/24 dev xtbup");
    run("ip link set xtbup up");
    let n = "ip -n xtb-node2";
    for cmd in [
        format!("{n} link set eth0 address 02:00:00:0b:02:00"),
        format!("{n} addr add 192.168.77.2/24 dev eth0"),
        format!("{n} link set eth0 up"),
        format!(
            "{n} link add vx0 type vxlan id 1 local 192.168.77.2 dstport 4789 dev eth0 nolearning"
        ),
        format!("{n} link set vx0 address 02:00:00:0b:02:01"),
        format!("{n} addr add 10.244.2.0/32 dev vx0"),
        format!("{n} link set vx0 up"),
        format!("{n} route add 10.244.1.0/24 via 10.244.1.0 dev vx0 onlink"),
        format!("{n} neigh add 10.244.1.0 lladdr {our_mac} dev vx0 nud permanent"),
        format!("bridge -n xtb-node2 fdb append {our_mac} dev vx0 dst 192.168.77.1"),
        format!("{n} link add n2p type veth peer name eth0 netns xtb-r2"),
        format!("{n} addr add 10.244.2.1/24 dev n2p"),
        format!("{n} link set n2p up"),
        "ip netns exec xtb-node2 sysctl -qw net.ipv4.ip_forward=1".to_string(),
        "ip -n xtb-r2 addr add 10.244.2.5/24 dev eth0".to_string(),
        "ip -n xtb-r2 link set eth0 up".to_string(),
        "ip -n xtb-r2 route add default via 10.244.2.1".to_string(),
    ] {
        run(&cmd);
    }
    for dev in ["eth0", "vx0", "n2p"] {
        run(&format!("ip netns exec xtb-node2 ethtool -K {dev} tx off"));
    }
    run("ip netns exec xtb-r2 ethtool -K eth0 tx off");
}

/// (b) A pod behind xvsd and a pod behind a kernel VXLAN node ping and
/// exchange TCP both ways; (c) meanwhile the node's own TCP on the uplink
/// still works, steered to the kernel.
#[test]
fn vxlan_to_a_kernel_node_and_host_traffic_on_the_uplink() {
    let Some(_serial) = root_or_skip("vxlan_to_a_kernel_node") else {
        return;
    };
    let our_mac = "02:00:00:0b:01:00";
    let mut topo = Topology::default();
    kernel_node(&mut topo, our_mac);
    topo.pod("xtb-pod1", "xtb1", "10.244.1.21", "02:00:00:0b:00:01");
    let xvsd = Xvsd::start(&[
        "--uplink",
        "xtbup",
        "--node-ip",
        "192.168.77.1",
        "--pod-cidr",
        POD_CIDR,
        "--vni",
        "1",
        "--remote",
        "node2,10.244.2.0/24,192.168.77.2,02:00:00:0b:02:01,02:00:00:0b:02:00",
        "--pod",
        "xtb1,10.244.1.21,02:00:00:0b:00:01",
    ]);

    assert!(
        ping_eventually("xtb-pod1", "10.244.2.5", 5),
        "pod1 -> remote pod:\n{}",
        xvsd.log()
    );
    assert!(
        ping("xtb-r2", "10.244.1.21", 3),
        "remote pod -> pod1:\n{}",
        xvsd.log()
    );
    for (server_ns, server_ip, client_ns) in [
        ("xtb-r2", "10.244.2.5", "xtb-pod1"),
        ("xtb-pod1", "10.244.1.21", "xtb-r2"),
    ] {
        let r = iperf3(server_ns, server_ip, client_ns, "-t 2");
        let received = r["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
        assert!(
            received > 10 << 20,
            "TCP {client_ns} -> {server_ns}: {received} bytes"
        );
    }

    // (c) The node's own service on the uplink address: the steering
    // program passes it to the kernel.
    let (port, reply) = node_tcp_echo("xtb-node2", "192.168.77.1");
    assert_eq!(reply, "HELLO", "the node's own listener on port {port}");

    let log = xvsd.terminate();
    assert_balanced(&log);
    assert!(
        !xdp_attached("xtbup"),
        "the uplink keeps an XDP program after shutdown"
    );
}

/// (d) SIGKILL leaves the steering programs attached; a restarted xvsd
/// replaces them, forwards again, and leaves nothing behind on SIGTERM.
#[test]
fn restart_after_a_crash() {
    let Some(_serial) = root_or_skip("restart_after_a_crash") else {
        return;
    };
    let mut topo = Topology::default();
    let pods = [
        ("xtd1", "10.244.1.31", "02:00:00:0d:00:01"),
        ("xtd2", "10.244.1.32", "02:00:00:0d:00:02"),
    ];
    topo.pod("xtd-pod1", pods[0].0, pods[0].1, pods[0].2);
    topo.pod("xtd-pod2", pods[1].0, pods[1].1, pods[1].2);
    let mut args = vec!["--node-ip", "192.168.77.1", "--pod-cidr", POD_CIDR];
    let pod_args = pod_args(&pods);
    args.extend(pod_args.iter().map(String::as_str));

    let first = Xvsd::start(&args);
    assert!(ping_eventually("xtd-pod1", pods[1].1, 5), "{}", first.log());
    first.kill();
    assert!(
        xdp_attached("xtd1") && xdp_attached("xtd2"),
        "a crash leaves the programs"
    );
    assert!(
        !ping("xtd-pod1", pods[1].1, 1),
        "nothing forwards while xvsd is down"
    );

    let second = Xvsd::start(&args);
    assert!(
        second.log().contains("replacing a stale xvs_steer"),
        "{}",
        second.log()
    );
    assert!(
        ping_eventually("xtd-pod1", pods[1].1, 5),
        "after restart:\n{}",
        second.log()
    );
    assert!(
        ping("xtd-pod2", pods[0].1, 3),
        "after restart, the other way"
    );
    second.terminate();
    assert!(
        !xdp_attached("xtd1") && !xdp_attached("xtd2"),
        "stale programs after shutdown"
    );
}

/// A core list that cannot be served is refused with a clear error, and
/// nothing is left attached.
#[test]
fn unusable_cores_are_refused() {
    let Some(_serial) = root_or_skip("unusable_cores_are_refused") else {
        return;
    };
    let mut topo = Topology::default();
    topo.pod("xte-pod1", "xte1", "10.244.1.51", "02:00:00:10:00:01");
    for (cores, expected) in [
        ("0,0", "a core may serve one worker only"),
        ("0,4096", "core 4096 does not exist"),
    ] {
        let out = std::process::Command::new(common::xvsd_path())
            .args(["--node-ip", "192.168.77.1", "--pod-cidr", POD_CIDR])
            .args([
                "--pod",
                "xte1,10.244.1.51,02:00:00:10:00:01",
                "--cores",
                cores,
            ])
            .output()
            .expect("running xvsd");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expected),
            "--cores {cores}: {}\n{stderr}",
            out.status
        );
        assert!(!xdp_attached("xte1"), "--cores {cores} left XDP attached");
    }
}

/// The control socket: `xvsctl show` and `version` as root and as an
/// allowed uid, a uid that is not allowed refused by its credentials,
/// garbage and an unknown method answered with errors while xvsd keeps
/// forwarding, a second xvsd on the same socket refused before it touches
/// the ports, and the socket file gone after shutdown.
#[test]
fn control_socket_show_and_peer_check() {
    let Some(_serial) = root_or_skip("control_socket_show_and_peer_check") else {
        return;
    };
    let mut topo = Topology::default();
    let socket = std::env::temp_dir().join(format!("xvs-ctl-test-{}.sock", std::process::id()));
    let socket_arg = socket.display().to_string();
    let xvsd = routed_pods(
        &mut topo,
        &[
            ("xtc-pod1", "xtc1", "10.244.1.71", "02:00:00:0c:00:01"),
            ("xtc-pod2", "xtc2", "10.244.1.72", "02:00:00:0c:00:02"),
        ],
        &["--control-socket", &socket_arg, "--control-uid", "65534"],
    );
    let xvsctl = common::bin_path("xvsctl");
    let ctl = |prefix: &str, args: &str| {
        sh(&format!(
            "{prefix} {} --socket {socket_arg} {args}",
            xvsctl.display()
        ))
    };
    let out = ctl("", "-o json show");
    assert!(out.status.success(), "{out:?}");
    let show: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = show["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["xtc1", "xtc2"], "{show}");
    assert_eq!(show["ports"][0]["xdp"], "native", "{show}");
    assert_eq!(show["workers"].as_array().unwrap().len(), 1, "{show}");
    let table = String::from_utf8_lossy(&ctl("", "show").stdout).into_owned();
    assert!(
        table.starts_with("snapshot generation 1") && table.contains("xtc2  native  copy"),
        "{table}"
    );
    // An allowed uid is served; another is refused by its credentials.
    let nobody = ctl(
        "setpriv --reuid 65534 --regid 65534 --clear-groups",
        "version",
    );
    assert!(nobody.status.success(), "{nobody:?}");
    assert!(String::from_utf8_lossy(&nobody.stdout).contains("control protocol 1"));
    let other = ctl(
        "setpriv --reuid 65533 --regid 65533 --clear-groups",
        "version",
    );
    assert!(!other.status.success());
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(
        err.contains("permission-denied") && err.contains("uid 65533"),
        "{err}"
    );
    // Garbage, an unknown method and a good request on one connection.
    let replies = common::raw_requests(
        &socket,
        b"garbage\n{\"version\":1,\"id\":2,\"method\":\"frobnicate\"}\n{\"version\":1,\"id\":3,\"method\":\"version\"}\n",
    );
    assert_eq!(replies[0]["error"]["code"], "parse-error", "{replies:?}");
    assert_eq!(replies[1]["error"]["code"], "unknown-method", "{replies:?}");
    assert_eq!(replies[2]["result"]["protocol"], 1, "{replies:?}");
    // A second xvsd on the same socket stops before touching the ports.
    let second = sh(&format!(
        "{} --node-ip 192.168.77.1 --pod-cidr 10.244.1.0/24 --pod xtc1,10.244.1.71,02:00:00:0c:00:01 --control-socket {socket_arg}",
        common::bin_path("xvsd").display()
    ));
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("another xvsd is listening"), "{err}");
    assert!(ping("xtc-pod1", "10.244.1.72", 2), "{}", xvsd.log());
    xvsd.terminate();
    assert!(!socket.exists(), "the socket file is removed at shutdown");
}
