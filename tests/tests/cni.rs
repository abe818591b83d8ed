//! xvs-cni end to end, driven by cnitool (libcni): an xvsd with no pods, a
//! conflist of type xvs-cni (built-in IPAM over 10.244.1.0/24 from .10),
//! two netns pods attached by ADD — each gets an address, the pods reach
//! each other through xvsd — CHECK passes, DEL twice succeeds and leaves no
//! lease and no port, also with xvsd gone.
//!
//! cniVersion 1.1.0 is driven by invoking xvs-cni directly, as a runtime
//! does: Debian's libcni (1.1.2, hence cnitool) refuses a 1.1.0 result
//! ("unsupported CNI result version"), and has no STATUS or GC. That test
//! also covers CHECK with a 1.1.0 prevResult, STATUS and GC.

mod common;

use std::path::Path;

use common::cni::{cnitool, cnitool_ok, netns_path, CniNet, TempDir, REFERENCE_PLUGINS};
use common::{bin_path, output_text, ping_eventually, raw_requests, root_or_skip, run};
use common::{Topology, Xvsd};
use serde_json::{json, Value};

/// An xvs-cni conflist talking to xvsd on `socket`, leases under `state`.
fn xvs_conflist(version: &str, socket: &Path, state: &Path) -> Value {
    json!({
        "cniVersion": version,
        "plugins": [{
            "type": "xvs-cni",
            "socket": socket,
            "ipam": {
                "subnet": "10.244.1.0/24",
                "rangeStart": "10.244.1.10",
                "dataDir": state.join("ipam"),
            },
            "dns": { "nameservers": ["10.96.0.10"] },
        }]
    })
}

/// A `CNI_PATH` with xvs-cni (a link to the one cargo built) and the
/// reference plugins.
fn cni_path(dir: &TempDir) -> String {
    let link = dir.path().join("xvs-cni");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(bin_path("xvs-cni"), &link).expect("linking xvs-cni");
    format!("{}:{REFERENCE_PLUGINS}", dir.path().display())
}

/// xvsd's ports (`port-list`).
fn ports(socket: &Path) -> Vec<Value> {
    let replies = raw_requests(
        socket,
        b"{\"version\":1,\"id\":1,\"method\":\"port-list\",\"params\":null}\n",
    );
    replies[0]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("port-list: {}", replies[0]))
        .clone()
}

/// The lease files of network `net`.
fn leases(state: &Path, net: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(state.join("ipam").join(net)) else {
        return Vec::new();
    };
    let mut ips: Vec<String> = dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
        .collect();
    ips.sort();
    ips
}

/// ADD `ns` to `net`; returns (pod IP, host ifname) from the result.
fn add(net: &CniNet, ns: &str, env: &[(&str, &str)], version: &str) -> (String, String) {
    let out = cnitool_ok("add", net, &netns_path(ns), env);
    let result: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(result["cniVersion"], version, "{result}");
    assert_eq!(result["routes"][0]["dst"], "0.0.0.0/0", "{result}");
    assert_eq!(result["routes"][0]["gw"], "169.254.1.1", "{result}");
    assert_eq!(result["dns"]["nameservers"][0], "10.96.0.10", "{result}");
    assert_eq!(result["interfaces"][1]["sandbox"], netns_path(ns));
    let address = result["ips"][0]["address"].as_str().expect("an address");
    let ip = address.strip_suffix("/32").expect("a /32").to_string();
    let host = result["interfaces"][0]["name"]
        .as_str()
        .expect("host ifname");
    (ip, host.to_string())
}

/// Runs the whole life cycle for conflist version `version` in netns
/// `a` and `b`.
fn life_cycle(version: &str, a: &str, b: &str) {
    let mut topo = Topology::default();
    topo.netns(a);
    topo.netns(b);
    let bin = TempDir::new("xvs-cni-bin");
    let path = cni_path(&bin);
    let env = [("CNI_PATH", path.as_str())];
    let state = TempDir::new("xvs-cni-xvsd");
    let socket = state.path().join("xvsd.sock");
    let socket_arg = socket.display().to_string();
    let xvsd = Xvsd::start(&[
        "--control-socket",
        &socket_arg,
        "--node-ip",
        "192.168.77.1",
        "--pod-cidr",
        "10.244.1.0/24",
    ]);
    let name = format!("xvs{}", version.replace('.', ""));
    let net = CniNet::new(&name, |dir| xvs_conflist(version, &socket, dir));

    let (ip_a, host_a) = add(&net, a, &env, version);
    let (ip_b, host_b) = add(&net, b, &env, version);
    topo.link(&host_a);
    topo.link(&host_b);
    assert_ne!(ip_a, ip_b);
    for (ns, ip) in [(a, &ip_a), (b, &ip_b)] {
        let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
        assert!(ip.starts_with("10.244.1.") && last >= 10, "{ip}");
        let shown = run(&format!("ip -n {ns} -4 addr show dev eth0"));
        assert!(shown.contains(&format!("inet {ip}/32")), "{shown}");
    }
    assert_eq!(leases(net.dir(), &name), {
        let mut v = vec![ip_a.clone(), ip_b.clone()];
        v.sort();
        v
    });
    let listed = ports(&socket);
    for host in [&host_a, &host_b] {
        let port = listed
            .iter()
            .find(|p| p["name"] == host.as_str())
            .unwrap_or_else(|| panic!("no port {host} in {listed:?}"));
        assert_eq!(port["attachment"]["ifname"], "eth0");
    }

    assert!(ping_eventually(a, &ip_b, 10), "{}", xvsd.log());
    assert!(ping_eventually(b, &ip_a, 10), "{}", xvsd.log());

    cnitool_ok("check", &net, &netns_path(a), &env);
    cnitool_ok("check", &net, &netns_path(b), &env);

    for _ in 0..2 {
        cnitool_ok("del", &net, &netns_path(a), &env);
    }
    assert_eq!(leases(net.dir(), &name), vec![ip_b.clone()]);
    assert!(
        !ports(&socket).iter().any(|p| p["name"] == host_a.as_str()),
        "{:?}",
        ports(&socket)
    );
    let gone = common::sh(&format!("ip link show {host_a}"));
    assert!(!gone.status.success(), "{}", output_text(&gone));
    let shown = common::sh(&format!("ip -n {a} link show eth0"));
    assert!(!shown.status.success(), "{}", output_text(&shown));

    // DEL with xvsd gone still succeeds and frees the address.
    drop(xvsd);
    let out = cnitool("del", &net, &netns_path(b), &env);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(leases(net.dir(), &name).is_empty());
}

#[test]
fn cnitool_attaches_pods_through_xvs_cni_1_0_0() {
    let Some(_serial) = root_or_skip("cnitool_attaches_pods_through_xvs_cni_1_0_0") else {
        return;
    };
    life_cycle("1.0.0", "xcni10-a", "xcni10-b");
}

/// Runs xvs-cni as a runtime would: `vars` and the config on stdin.
fn invoke(vars: &[(&str, &str)], conf: &Value) -> (bool, Value, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(bin_path("xvs-cni"))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning xvs-cni");
    let stdin = serde_json::to_vec(conf).expect("serialising the config");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(&stdin)
        .expect("writing the config");
    let out = child.wait_with_output().expect("waiting for xvs-cni");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.success(), json, output_text(&out))
}

#[test]
fn xvs_cni_1_1_0_add_check_status_gc_del() {
    let Some(_serial) = root_or_skip("xvs_cni_1_1_0_add_check_status_gc_del") else {
        return;
    };
    let (a, b) = ("xcni11-a", "xcni11-b");
    let mut topo = Topology::default();
    topo.netns(a);
    topo.netns(b);
    let state = TempDir::new("xvs-cni-11");
    let socket = state.path().join("xvsd.sock");
    let socket_arg = socket.display().to_string();
    let xvsd = Xvsd::start(&[
        "--control-socket",
        &socket_arg,
        "--node-ip",
        "192.168.77.1",
        "--pod-cidr",
        "10.244.1.0/24",
    ]);
    let mut conf = xvs_conflist("1.1.0", &socket, state.path())["plugins"][0].clone();
    conf["cniVersion"] = "1.1.0".into();
    conf["name"] = "xvs11".into();
    let attach = |command: &'static str, ns: &'static str| {
        vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", ns),
            (
                "CNI_NETNS",
                if ns == a {
                    "/var/run/netns/xcni11-a"
                } else {
                    "/var/run/netns/xcni11-b"
                },
            ),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", REFERENCE_PLUGINS),
        ]
    };
    let (ok, status, text) = invoke(&[("CNI_COMMAND", "STATUS")], &conf);
    assert!(ok, "{text}");
    assert_eq!(status, Value::Null);

    let mut results = Vec::new();
    for ns in [a, b] {
        let (ok, result, text) = invoke(&attach("ADD", ns), &conf);
        assert!(ok, "ADD {ns}: {text}");
        assert_eq!(result["cniVersion"], "1.1.0", "{result}");
        assert_eq!(result["interfaces"][1]["mtu"], 1450, "{result}");
        topo.link(
            result["interfaces"][0]["name"]
                .as_str()
                .expect("host ifname"),
        );
        results.push(result);
    }
    let ip = |r: &Value| {
        let address = r["ips"][0]["address"].as_str().expect("an address");
        address.trim_end_matches("/32").to_string()
    };
    let (ip_a, ip_b) = (ip(&results[0]), ip(&results[1]));
    assert!(ping_eventually(a, &ip_b, 10), "{}", xvsd.log());

    // A second ADD without DEL: code 102, and a keeps its address.
    let (ok, error, _) = invoke(&attach("ADD", a), &conf);
    assert!(!ok);
    assert_eq!(error["code"], 102, "{error}");
    assert!(leases(state.path(), "xvs11").contains(&ip_a));
    assert!(ping_eventually(b, &ip_a, 10), "{}", xvsd.log());

    for (ns, result) in [(a, &results[0]), (b, &results[1])] {
        let mut check = conf.clone();
        check["prevResult"] = result.clone();
        let (ok, _, text) = invoke(&attach("CHECK", ns), &check);
        assert!(ok, "CHECK {ns}: {text}");
    }
    // CHECK against another pod's result lists what differs.
    let mut wrong = conf.clone();
    wrong["prevResult"] = results[1].clone();
    let (ok, error, _) = invoke(&attach("CHECK", a), &wrong);
    assert!(!ok);
    assert_eq!(error["code"], 105, "{error}");
    assert!(error["msg"].as_str().unwrap().contains(&ip_b), "{error}");

    // GC keeping only a: b's port, veth and lease go.
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": a, "ifname": "eth0"}]);
    let (ok, _, text) = invoke(
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", REFERENCE_PLUGINS)],
        &gc,
    );
    assert!(ok, "GC: {text}");
    let host_b = results[1]["interfaces"][0]["name"].as_str().unwrap();
    assert!(!ports(&socket).iter().any(|p| p["name"] == host_b));
    assert!(ports(&socket)
        .iter()
        .any(|p| p["name"] == results[0]["interfaces"][0]["name"]));
    assert_eq!(leases(state.path(), "xvs11"), vec![ip_a.clone()]);
    let shown = common::sh(&format!("ip -n {b} link show eth0"));
    assert!(!shown.status.success(), "{}", output_text(&shown));

    for _ in 0..2 {
        let (ok, out, text) = invoke(&attach("DEL", a), &conf);
        assert!(ok, "DEL: {text}");
        assert_eq!(out, Value::Null);
    }
    assert!(leases(state.path(), "xvs11").is_empty());
    assert!(ports(&socket).is_empty(), "{:?}", ports(&socket));

    drop(xvsd);
    let (ok, error, _) = invoke(&[("CNI_COMMAND", "STATUS")], &conf);
    assert!(!ok);
    assert_eq!(error["code"], 50, "{error}");
}
