//! Kubernetes Services end to end (issue #8): a client pod and three
//! backend pods behind one xvsd, its uplink a veth whose other end is an
//! "external" namespace (a client of NodePorts, a server out of the
//! cluster). Real peers only: busybox httpd in every backend, whose CGI
//! `who` answers with the backend's name and the client address it saw,
//! and curl. What is checked is what a workload sees: which backend
//! answered, from which address, whether a connection was refused and how
//! fast, whether a stream survived a change of endpoints.
//!
//! Some tests make the external namespace a second node too, built the
//! way Flannel builds one (the kernel's VXLAN device, routes and
//! neighbour entries), with a backend pod behind it: a Service endpoint
//! on another node.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{node_tcp_echo, output_text, ping, root_or_skip, run, sh, Topology, Xvsd};

const NODE_IP: &str = "192.168.78.1";
const POD_CIDR: &str = "10.244.1.0/24";
const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// The external namespace on the uplink's other end.
const EXT_IP: &str = "192.168.78.2";
const EXT_NET: &str = "192.168.78.0/24";
const CLIENT_IP: &str = "10.244.1.10";
const BACKENDS: [&str; 3] = ["10.244.1.11", "10.244.1.12", "10.244.1.13"];
/// The port every backend's httpd listens on (the Services' targetPort).
const TARGET_PORT: u16 = 8080;
/// The pod behind the kernel node (in its pod CIDR REMOTE_CIDR).
const REMOTE_POD: &str = "10.244.2.5";
const REMOTE_CIDR: &str = "10.244.2.0/24";
/// Bytes of the file the stream test downloads.
const BIG: usize = 10 << 20;

/// A directory of server files, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One node: namespaces `<tag>-cli` (the client pod, CLIENT_IP),
/// `<tag>-b1..b3` (backend pods at BACKENDS, each serving httpd on
/// TARGET_PORT) and `<tag>-ext` (EXT_IP, on the uplink `<tag>up`), and an
/// xvsd switching them with a static route to EXT_NET through the uplink.
/// [`Node::beside_a_kernel_node`] makes `<tag>-ext` a second node as well
/// (see [`kernel_node`]), with a pod `<tag>-r2` at REMOTE_POD serving
/// httpd as "r2".
struct Node {
    // Dropped in this order: xvsd first, then the namespaces (and the
    // servers in them), then their files.
    xvsd: Xvsd,
    _topo: Topology,
    www: TempDir,
    tag: String,
    socket: String,
}

impl Node {
    /// `big`: give every server a BIG-byte file `/big` too.
    fn start(tag: &str, big: bool) -> Node {
        Node::build(tag, big, false)
    }

    /// A node whose uplink peer `<tag>-ext` is also node2, a kernel VXLAN
    /// node with the pod REMOTE_POD behind it, known to xvsd as a remote.
    fn beside_a_kernel_node(tag: &str) -> Node {
        Node::build(tag, false, true)
    }

    fn build(tag: &str, big: bool, with_kernel_node: bool) -> Node {
        let mut topo = Topology::default();
        let www = TempDir(
            std::env::temp_dir().join(format!("xvs-services-{tag}-{}", std::process::id())),
        );
        let _ = std::fs::remove_dir_all(&www.0);
        std::fs::create_dir_all(&www.0).unwrap();
        let socket = www.0.join("xvsd.sock").display().to_string();

        let ext = format!("{tag}-ext");
        let up = format!("{tag}up");
        let (up_mac, ext_mac) = (mac(tag, 0xf0), mac(tag, 0xf1));
        topo.netns(&ext);
        let _ = sh(&format!("ip link del {up} 2>/dev/null"));
        run(&format!(
            "ip link add {up} type veth peer name eth0 netns {ext}"
        ));
        topo.link(&up);
        // The node's address is the kernel's, on the uplink: it answers ARP
        // for it (the uplink's program passes ARP to the kernel).
        for cmd in [
            format!("ip link set {up} address {up_mac}"),
            format!("ip addr add {NODE_IP}/24 dev {up}"),
            format!("ip link set {up} up"),
            format!("ip -n {ext} link set eth0 address {ext_mac}"),
            format!("ip -n {ext} addr add {EXT_IP}/24 dev eth0"),
            format!("ip -n {ext} link set eth0 up"),
            format!("ip netns exec {ext} ethtool -K eth0 tx off"),
        ] {
            run(&cmd);
        }
        let vx_mac = mac(tag, 0xf2);
        if with_kernel_node {
            kernel_node(&mut topo, tag, &up_mac, &vx_mac);
        }

        let mut args: Vec<String> = [
            "--uplink",
            &up,
            "--node-ip",
            NODE_IP,
            "--pod-cidr",
            POD_CIDR,
            "--cluster-cidr",
            CLUSTER_CIDR,
            "--control-socket",
            &socket,
        ]
        .map(String::from)
        .to_vec();
        if with_kernel_node {
            args.extend(["--vni".into(), "1".into(), "--remote".into()]);
            args.push(format!("node2,{REMOTE_CIDR},{EXT_IP},{vx_mac},{ext_mac}"));
        }
        let pods = std::iter::once(("cli".to_string(), CLIENT_IP))
            .chain((1..).zip(BACKENDS).map(|(i, ip)| (format!("b{i}"), ip)));
        for (i, (name, ip)) in pods.enumerate() {
            let (ns, host, mac) = (format!("{tag}-{name}"), format!("{tag}{i}"), mac(tag, i));
            topo.pod(&ns, &host, ip, &mac);
            args.push("--pod".into());
            args.push(format!("{host},{ip},{mac}"));
        }
        for i in 1..=BACKENDS.len() {
            let name = format!("b{i}");
            serve(&www.0.join(&name), &format!("{tag}-{name}"), &name, big);
        }
        if with_kernel_node {
            serve(&www.0.join("r2"), &format!("{tag}-r2"), "r2", big);
        }
        let xvsd = Xvsd::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let node = Node {
            xvsd,
            _topo: topo,
            www,
            tag: tag.to_string(),
            socket,
        };
        node.ok(&format!(
            "route add {EXT_NET} --port {up} --next-hop-mac {ext_mac}"
        ));
        node
    }

    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.tag)
    }

    fn ctl(&self, args: &str) -> std::process::Output {
        sh(&format!(
            "{} --socket {} {args}",
            common::bin_path("xvsctl").display(),
            self.socket
        ))
    }

    /// `xvsctl args`, which must succeed; its output.
    fn ok(&self, args: &str) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "xvsctl {args}: {}\nxvsd log:\n{}",
            output_text(&out),
            self.log()
        );
        output_text(&out)
    }

    fn json(&self, args: &str) -> serde_json::Value {
        let text = self.ok(&format!("-o json {args}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("xvsctl {args} ({e}): {text}"))
    }

    fn log(&self) -> String {
        self.xvsd.log()
    }

    /// `curl url` from namespace `ns`, `n` times, each a new connection
    /// (a new curl). Each attempt's answer (`who`'s "NAME ADDR") or
    /// `FAIL <exit code>`.
    fn curls(&self, ns: &str, url: &str, n: usize) -> Vec<String> {
        let out = run(&format!(
            "ip netns exec {} sh -c 'for i in $(seq {n}); do \
             curl -s --max-time 3 {url} || echo FAIL $?; done'",
            self.ns(ns)
        ));
        out.lines().map(str::to_string).collect()
    }
}

/// A MAC of test `tag`'s n-th interface.
fn mac(tag: &str, n: usize) -> String {
    let t = tag.bytes().last().unwrap_or(0);
    format!("02:00:00:1c:{t:02x}:{n:02x}")
}

/// Makes `<tag>-ext` (eth0 at EXT_IP, MAC of `<tag>up`'s peer) a second
/// node the way Flannel builds one, as xvsd.rs's `kernel_node` does: a
/// VXLAN device vx0 (VNI 1, MAC `vx_mac`) over eth0, this node's pod CIDR
/// routed over it to 10.244.1.0 at `up_mac` (the uplink's, xvsd's VTEP
/// MAC) behind NODE_IP, and a pod `<tag>-r2` at REMOTE_POD routed behind
/// it.
fn kernel_node(topo: &mut Topology, tag: &str, up_mac: &str, vx_mac: &str) {
    let (node2, r2) = (format!("{tag}-ext"), format!("{tag}-r2"));
    topo.netns(&r2);
    let n = format!("ip -n {node2}");
    for cmd in [
        format!("{n} link add vx0 type vxlan id 1 local {EXT_IP} dstport 4789 dev eth0 nolearning"),
        format!("{n} link set vx0 address {vx_mac}"),
        format!("{n} addr add 10.244.2.0/32 dev vx0"),
        format!("{n} link set vx0 up"),
        format!("{n} route add {POD_CIDR} via 10.244.1.0 dev vx0 onlink"),
        format!("{n} neigh add 10.244.1.0 lladdr {up_mac} dev vx0 nud permanent"),
        format!("bridge -n {node2} fdb append {up_mac} dev vx0 dst {NODE_IP}"),
        format!("{n} link add n2p type veth peer name eth0 netns {r2}"),
        format!("{n} addr add 10.244.2.1/24 dev n2p"),
        format!("{n} link set n2p up"),
        format!("ip netns exec {node2} sysctl -qw net.ipv4.ip_forward=1"),
        format!("ip -n {r2} addr add {REMOTE_POD}/24 dev eth0"),
        format!("ip -n {r2} link set eth0 up"),
        format!("ip -n {r2} route add default via 10.244.2.1"),
        format!("ip netns exec {r2} ethtool -K eth0 tx off"),
    ] {
        run(&cmd);
    }
    for dev in ["vx0", "n2p"] {
        run(&format!("ip netns exec {node2} ethtool -K {dev} tx off"));
    }
}

/// busybox httpd on TARGET_PORT in namespace `ns`, serving `dir`, whose
/// `/cgi-bin/who` answers "`name` CLIENT-ADDRESS".
fn serve(dir: &Path, ns: &str, name: &str, big: bool) {
    use std::os::unix::fs::PermissionsExt;
    let cgi = dir.join("cgi-bin");
    std::fs::create_dir_all(&cgi).unwrap();
    let who = cgi.join("who");
    std::fs::write(
        &who,
        format!("#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho \"{name} $REMOTE_ADDR\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&who, std::fs::Permissions::from_mode(0o755)).unwrap();
    if big {
        std::fs::write(dir.join("big"), vec![0u8; BIG]).unwrap();
    }
    // Without -f it daemonizes once it listens; the Topology guard kills
    // it with its namespace.
    run(&format!(
        "ip netns exec {ns} busybox httpd -p 0.0.0.0:{TARGET_PORT} -h {}",
        dir.display()
    ));
    let local = format!(
        "ip netns exec {ns} curl -s --max-time 1 http://127.0.0.1:{TARGET_PORT}/cgi-bin/who"
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while !run_ok(&local).starts_with(name) {
        assert!(Instant::now() < deadline, "httpd in {ns} does not answer");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// stdout of `cmd`, empty if it failed.
fn run_ok(cmd: &str) -> String {
    let out = sh(cmd);
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        String::new()
    }
}

/// The backend names among `answers` ("NAME ADDR" lines), sorted, once
/// each.
fn names(answers: &[String]) -> Vec<&str> {
    let mut names: Vec<&str> = answers
        .iter()
        .filter_map(|a| a.split_whitespace().next())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// 30 new connections to a ClusterIP with three backends reach all three,
/// every one answered, each backend seeing the client's own address.
#[test]
fn cluster_ip_spreads_connections_over_all_endpoints() {
    let Some(_serial) = root_or_skip("cluster_ip_spreads_connections_over_all_endpoints") else {
        return;
    };
    let node = Node::start("xsva", false);
    node.ok(&format!(
        "service add web --cluster-ip 10.96.0.10 --port 80:{TARGET_PORT} --endpoint {}",
        BACKENDS.join(",")
    ));
    let answers = node.curls("cli", "http://10.96.0.10/cgi-bin/who", 30);
    let log = node.log();
    assert!(
        answers.len() == 30
            && answers
                .iter()
                .all(|a| a.ends_with(&format!(" {CLIENT_IP}"))),
        "every request answered, from the client's address: {answers:?}\nxvsd log:\n{log}"
    );
    assert_eq!(names(&answers), ["b1", "b2", "b3"], "{answers:?}\n{log}");
}

/// The values of `key=` in a `conntrack -L` line, in order: the original
/// tuple's, then the reply tuple's.
fn conntrack_fields<'a>(line: &'a str, key: &str) -> Vec<&'a str> {
    let key = format!("{key}=");
    line.split_whitespace()
        .filter_map(|w| w.strip_prefix(key.as_str()))
        .collect()
}

/// The tracked connections with `addr` in a tuple, as `conntrack -L`
/// lines.
fn conntrack(node: &Node, addr: &str) -> Vec<String> {
    let dump = node.json(&format!("dump-conntrack --addr {addr}"));
    dump["connections"]
        .as_array()
        .unwrap_or_else(|| panic!("{dump}"))
        .iter()
        .map(|c| c.as_str().unwrap_or_default().to_string())
        .collect()
}

/// With sessionAffinity ClientIP every new connection of one client goes
/// to the same endpoint (without it, 20 connections over three endpoints
/// all land on one with probability 3^-19).
#[test]
fn session_affinity_client_ip_pins_a_client() {
    let Some(_serial) = root_or_skip("session_affinity_client_ip_pins_a_client") else {
        return;
    };
    let node = Node::start("xsvb", false);
    node.ok(&format!(
        "service add sticky --cluster-ip 10.96.0.20 --port 80:{TARGET_PORT} --affinity ClientIP --endpoint {}",
        BACKENDS.join(",")
    ));
    let answers = node.curls("cli", "http://10.96.0.20/cgi-bin/who", 20);
    let log = node.log();
    assert!(
        answers.len() == 20
            && answers
                .iter()
                .all(|a| a.ends_with(&format!(" {CLIENT_IP}"))),
        "every request answered: {answers:?}\nxvsd log:\n{log}"
    );
    assert_eq!(names(&answers).len(), 1, "one backend: {answers:?}\n{log}");
}

/// A NodePort on the node IP, from a client outside the cluster (on the
/// uplink): answered by the backend pods, all on this node, which see the
/// client's own address.
#[test]
fn node_port_from_outside_keeps_the_client_address() {
    let Some(_serial) = root_or_skip("node_port_from_outside_keeps_the_client_address") else {
        return;
    };
    let node = Node::start("xsvc", false);
    node.ok(&format!(
        "service add np --type NodePort --cluster-ip 10.96.0.30 --port 80:{TARGET_PORT}/TCP@30080 --endpoint {}",
        BACKENDS.join(",")
    ));
    let answers = node.curls("ext", &format!("http://{NODE_IP}:30080/cgi-bin/who"), 12);
    let log = node.log();
    assert!(
        answers.len() == 12 && answers.iter().all(|a| a.ends_with(&format!(" {EXT_IP}"))),
        "every request answered, from the external client's address: {answers:?}\nxvsd log:\n{log}"
    );
    assert!(
        names(&answers).len() >= 2,
        "connections spread over the endpoints: {answers:?}\n{log}"
    );
    // The ClusterIP of the same Service, from a pod.
    let answers = node.curls("cli", "http://10.96.0.30/cgi-bin/who", 3);
    assert!(
        answers
            .iter()
            .all(|a| a.ends_with(&format!(" {CLIENT_IP}"))),
        "{answers:?}\n{log}"
    );
}

/// A Service without endpoints refuses at once: a TCP connection gets a
/// reset (curl: ECONNREFUSED, "Connection refused", exit code 7; an ICMP
/// error would be "No route to host") well within a second, where a silent
/// drop would leave it to time out; a UDP datagram gets an ICMP port
/// unreachable, which a connected socket reports as ECONNREFUSED. Both are
/// counted as drops of reason service_no_endpoints.
#[test]
fn service_without_endpoints_is_refused_at_once() {
    let Some(_serial) = root_or_skip("service_without_endpoints_is_refused_at_once") else {
        return;
    };
    let node = Node::start("xsvd", false);
    node.ok(&format!(
        "service add empty --cluster-ip 10.96.0.40 --port http=80:{TARGET_PORT} --port dns=53/UDP"
    ));
    // The client resolves its gateway first, so the time below is the
    // refusal's alone.
    assert!(
        common::ping_eventually(&node.ns("cli"), BACKENDS[0], 5),
        "{}",
        node.log()
    );
    let started = Instant::now();
    let out = sh(&format!(
        "ip netns exec {} curl -sv --max-time 5 http://10.96.0.40/",
        node.ns("cli")
    ));
    let took = started.elapsed();
    let said = output_text(&out);
    assert!(
        out.status.code() == Some(7) && said.contains("Connection refused"),
        "curl to a Service without endpoints: {:?} {said}\nxvsd log:\n{}",
        out.status,
        node.log()
    );
    assert!(
        took < Duration::from_secs(1),
        "refused only after {took:?}\nxvsd log:\n{}",
        node.log()
    );
    let out = sh(&format!(
        "ip netns exec {} timeout 5 bash -c \
         'exec 3<>/dev/udp/10.96.0.40/53; printf x >&3; read -t 2 -r <&3'",
        node.ns("cli")
    ));
    let said = output_text(&out);
    assert!(
        said.contains("Connection refused"),
        "UDP to a Service without endpoints: {:?} {said}\nxvsd log:\n{}",
        out.status,
        node.log()
    );
    // Both refusals counted (the counters are published every 100 ms).
    std::thread::sleep(Duration::from_millis(300));
    let stats = node.json("stats");
    let refused = stats["drops"]["service_no_endpoints"].as_u64().unwrap_or(0);
    assert!(
        refused >= 2,
        "service_no_endpoints drops: {stats}\nxvsd log:\n{}",
        node.log()
    );
    // An endpoint makes it answer.
    node.ok(&format!("endpoint add empty {}", BACKENDS[0]));
    let answers = node.curls("cli", "http://10.96.0.40/cgi-bin/who", 1);
    assert_eq!(
        answers,
        [format!("b1 {CLIENT_IP}")],
        "after endpoint add:\n{}",
        node.log()
    );
}

/// A pod's connection out of the cluster CIDR leaves from the node IP and
/// a port of the SNAT range: a server outside (which has no route to the
/// pods) sees the node IP and answers; a ping out is masqueraded too.
#[test]
fn pod_traffic_leaving_the_cluster_is_masqueraded() {
    let Some(_serial) = root_or_skip("pod_traffic_leaving_the_cluster_is_masqueraded") else {
        return;
    };
    let node = Node::start("xsve", false);
    serve(&node.www.0.join("ext"), &node.ns("ext"), "ext", false);
    let url = format!("http://{EXT_IP}:{TARGET_PORT}/cgi-bin/who");
    let answers = node.curls("cli", &url, 3);
    let log = node.log();
    assert_eq!(
        answers,
        vec![format!("ext {NODE_IP}"); 3],
        "the external server sees the node IP\nxvsd log:\n{log}"
    );
    let conns = conntrack(&node, EXT_IP);
    assert!(
        !conns.is_empty(),
        "no connection to {EXT_IP} tracked\n{log}"
    );
    for c in &conns {
        let (src, dport) = (conntrack_fields(c, "src"), conntrack_fields(c, "dport"));
        let port: u16 = dport.get(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        assert!(
            src.first() == Some(&CLIENT_IP) && (61000..=65535).contains(&port),
            "a reply to the node IP at a SNAT port: {c}\n{conns:?}\nxvsd log:\n{log}"
        );
    }
    assert!(
        ping(&node.ns("cli"), EXT_IP, 2),
        "ping out of the cluster\nxvsd log:\n{}",
        node.log()
    );
}

/// A long download through a ClusterIP survives the removal of every other
/// endpoint (conntrack holds its binding); new connections go only to the
/// endpoint left.
#[test]
fn removing_endpoints_does_not_disturb_an_established_stream() {
    let Some(_serial) = root_or_skip("removing_endpoints_does_not_disturb_an_established_stream")
    else {
        return;
    };
    let node = Node::start("xsvf", true);
    let vip = "10.96.0.60";
    node.ok(&format!(
        "service add dl --cluster-ip {vip} --port 80:{TARGET_PORT} --endpoint {}",
        BACKENDS.join(",")
    ));
    // 10 MiB at 2 MiB/s: about 5 s.
    let cli = node.ns("cli");
    let mut download = std::process::Command::new("ip")
        .args(["netns", "exec", &cli, "curl", "-s", "--max-time", "30"])
        .args(["--limit-rate", "2M", "-o", "/dev/null"])
        .args(["-w", "%{http_code} %{size_download}"])
        .arg(format!("http://{vip}/big"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawning curl");
    let deadline = Instant::now() + Duration::from_secs(3);
    let backend = loop {
        let conns = conntrack(&node, vip);
        let established = conns.iter().find(|c| c.contains("ESTABLISHED"));
        if let Some(c) = established {
            let src = conntrack_fields(c, "src");
            break src
                .get(1)
                .unwrap_or_else(|| panic!("no reply tuple: {c}"))
                .to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no established connection to {vip}: {conns:?}\nxvsd log:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let index = BACKENDS
        .iter()
        .position(|b| *b == backend)
        .unwrap_or_else(|| panic!("the stream's backend {backend} is none of {BACKENDS:?}"));
    for other in BACKENDS.iter().filter(|b| **b != backend) {
        node.ok(&format!("endpoint del dl {other}"));
    }
    assert!(
        download.try_wait().unwrap().is_none(),
        "the download ended before the endpoints changed: too fast to test\nxvsd log:\n{}",
        node.log()
    );
    let answers = node.curls("cli", &format!("http://{vip}/cgi-bin/who"), 6);
    assert_eq!(
        answers,
        vec![format!("b{} {CLIENT_IP}", index + 1); 6],
        "new connections only to the endpoint left\nxvsd log:\n{}",
        node.log()
    );
    let out = download.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        said,
        format!("200 {BIG}"),
        "the download through the endpoint kept ({:?})\nxvsd log:\n{}",
        out.status,
        node.log()
    );
}

/// A pod that reaches itself through a Service (hairpin) is answered, its
/// connection SNATed from the pod CIDR's network address so that the
/// answer comes back through the switch.
#[test]
fn hairpin_is_snated_from_the_pod_network_address() {
    let Some(_serial) = root_or_skip("hairpin_is_snated_from_the_pod_network_address") else {
        return;
    };
    let node = Node::start("xsvg", false);
    node.ok(&format!(
        "service add self --cluster-ip 10.96.0.70 --port 80:{TARGET_PORT} --endpoint {}",
        BACKENDS[0]
    ));
    let answers = node.curls("b1", "http://10.96.0.70/cgi-bin/who", 3);
    assert_eq!(
        answers,
        vec!["b1 10.244.1.0"; 3],
        "xvsd log:\n{}",
        node.log()
    );
}

/// A NodePort whose only endpoint is on another node, from a client
/// outside the cluster (node2 itself, on the uplink subnet): every request
/// answered, the backend seeing this node's pod network address (SNAT, so
/// that the answer comes back through this node to be un-NATed). The
/// ClusterIP of the same Service from a pod here reaches it with the pod's
/// own address. Meanwhile the node's own TCP on its IP, at a port neither
/// a node port nor a SNAT port, still reaches the kernel.
#[test]
fn node_port_to_an_endpoint_on_another_node() {
    let Some(_serial) = root_or_skip("node_port_to_an_endpoint_on_another_node") else {
        return;
    };
    let node = Node::beside_a_kernel_node("xsvn");
    node.ok(&format!(
        "service add np --type NodePort --cluster-ip 10.96.0.70 --port 80:{TARGET_PORT}@30080 --endpoint {REMOTE_POD}"
    ));
    let answers = node.curls("ext", &format!("http://{NODE_IP}:30080/cgi-bin/who"), 8);
    assert_eq!(
        answers,
        vec!["r2 10.244.1.0"; 8],
        "every request answered by node2's pod, SNATed from the pod network address\nxvsd log:\n{}",
        node.log()
    );
    let answers = node.curls("cli", "http://10.96.0.70/cgi-bin/who", 3);
    assert_eq!(
        answers,
        vec![format!("r2 {CLIENT_IP}"); 3],
        "the ClusterIP from a pod, its address kept\nxvsd log:\n{}",
        node.log()
    );

    // A port from the kernel's ephemeral range: neither the node port nor
    // in the SNAT range, so the uplink's program passes it to the kernel.
    let (port, reply) = node_tcp_echo(&node.ns("ext"), NODE_IP);
    assert!(
        port != 30080 && !(61000..=65535).contains(&port),
        "the kernel gave port {port}"
    );
    assert_eq!(
        reply,
        "HELLO",
        "node2 -> the node's own listener at {NODE_IP}:{port}\nxvsd log:\n{}",
        node.log()
    );
}

/// externalTrafficPolicy Local with the only endpoint on another node:
/// traffic from outside is dropped (as kube-proxy does, no RST), counted
/// as service_no_local_endpoints. A local endpoint added then answers
/// every request, seeing the client's own address (no SNAT under Local).
#[test]
fn external_traffic_policy_local_drops_without_a_local_endpoint() {
    let Some(_serial) =
        root_or_skip("external_traffic_policy_local_drops_without_a_local_endpoint")
    else {
        return;
    };
    let node = Node::beside_a_kernel_node("xsvl");
    node.ok(&format!(
        "service add lp --type NodePort --cluster-ip 10.96.0.80 --port 80:{TARGET_PORT}@30081 --external-traffic-policy Local --endpoint {REMOTE_POD}"
    ));
    let url = format!("http://{NODE_IP}:30081/cgi-bin/who");
    let out = sh(&format!(
        "ip netns exec {} curl -s --max-time 2 {url}",
        node.ns("ext")
    ));
    assert_eq!(
        out.status.code(),
        Some(28),
        "curl from outside should time out (exit 28): {}\nxvsd log:\n{}",
        output_text(&out),
        node.log()
    );
    // The counters are published every 100 ms.
    std::thread::sleep(Duration::from_millis(300));
    let stats = node.json("stats");
    let dropped = stats["drops"]["service_no_local_endpoints"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        dropped > 0,
        "service_no_local_endpoints drops: {stats}\nxvsd log:\n{}",
        node.log()
    );

    node.ok(&format!("endpoint add lp {}", BACKENDS[0]));
    let answers = node.curls("ext", &url, 6);
    assert_eq!(
        answers,
        vec![format!("b1 {EXT_IP}"); 6],
        "after endpoint add of a local pod\nxvsd log:\n{}",
        node.log()
    );
}
