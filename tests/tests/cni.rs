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

use common::cni::{
    cnitool, cnitool_ok, netns_path, ports, start_xvsd, CniNet, TempDir, REFERENCE_PLUGINS,
};
use common::Topology;
use common::{bin_path, output_text, ping_eventually, root_or_skip, run};
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

use common::cni::lease_files as leases;

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
    let (xvsd, socket) = start_xvsd(state.path());
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
    let (xvsd, socket) = start_xvsd(state.path());
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

/// Whether a link named `name` exists in the root namespace.
fn link_exists(name: &str) -> bool {
    common::sh(&format!("ip link show {name}")).status.success()
}

#[test]
fn cnitool_twenty_concurrent_adds_then_dels() {
    let Some(_serial) = root_or_skip("cnitool_twenty_concurrent_adds_then_dels") else {
        return;
    };
    const PODS: usize = 20;
    let mut topo = Topology::default();
    let names: Vec<String> = (0..PODS).map(|i| format!("xccc-{i}")).collect();
    for ns in &names {
        topo.netns(ns);
    }
    let bin = TempDir::new("xvs-cni-bin");
    let path = cni_path(&bin);
    let env = [("CNI_PATH", path.as_str())];
    let state = TempDir::new("xvs-cni-conc");
    let (xvsd, socket) = start_xvsd(state.path());
    let net = CniNet::new("xvsconc", |dir| xvs_conflist("1.0.0", &socket, dir));

    let added: Vec<(String, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .map(|ns| {
                let (net, env) = (&net, &env);
                s.spawn(move || add(net, ns, env, "1.0.0"))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("an ADD thread panicked"))
            .collect()
    });
    for (_, host) in &added {
        topo.link(host);
    }
    let mut ips: Vec<String> = added.iter().map(|(ip, _)| ip.clone()).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), PODS, "duplicate addresses: {added:?}");
    assert_eq!(leases(net.dir(), "xvsconc"), ips);
    for (ns, (ip, _)) in names.iter().zip(&added) {
        let shown = run(&format!("ip -n {ns} -4 addr show dev eth0"));
        assert!(shown.contains(&format!("inet {ip}/32")), "{ns}: {shown}");
    }
    let listed = ports(&socket);
    assert_eq!(listed.len(), PODS, "{listed:?}");
    for (ns, (ip, host)) in names.iter().zip(&added) {
        let port = listed
            .iter()
            .find(|p| p["name"] == host.as_str())
            .unwrap_or_else(|| panic!("no port {host} in {listed:?}"));
        assert_eq!(port["attachment"]["ifname"], "eth0", "{port}");
        assert_eq!(port["attachment"]["netns"], netns_path(ns), "{port}");
        assert_eq!(port["kind"]["pod"]["ip"], ip.as_str(), "{port}");
    }

    std::thread::scope(|s| {
        for ns in &names {
            let (net, env) = (&net, &env);
            s.spawn(move || cnitool_ok("del", net, &netns_path(ns), env));
        }
    });
    assert!(leases(net.dir(), "xvsconc").is_empty());
    assert!(ports(&socket).is_empty(), "{:?}", ports(&socket));
    for (ns, (_, host)) in names.iter().zip(&added) {
        assert!(!link_exists(host), "{host} left behind");
        let left = run(&format!("ip -n {ns} -o link show"));
        assert!(!left.contains("eth0"), "{ns}: {left}");
    }
    let xvs_links = run("ip -o link show");
    for (_, host) in &added {
        assert!(!xvs_links.contains(host.as_str()), "{xvs_links}");
    }
    drop(xvsd);
}

/// Pods come and go on one xvsd, the oldest first (on each worker the
/// first pod's socket registered the worker's UMEM), and a deleted pod's
/// netns comes back (same container id, so the same host ifname on a new
/// interface): every ADD gets a port that carries traffic, and when xvsd
/// stops, every frame is accounted for and no more than one ring's worth
/// per worker is still lent to a socket.
#[test]
fn cnitool_pods_come_and_go_on_one_xvsd() {
    let Some(_serial) = root_or_skip("cnitool_pods_come_and_go_on_one_xvsd") else {
        return;
    };
    const PODS: usize = 6;
    let mut topo = Topology::default();
    let names: Vec<String> = (0..PODS).map(|i| format!("xchurn-{i}")).collect();
    for ns in &names {
        topo.netns(ns);
    }
    let bin = TempDir::new("xvs-cni-bin");
    let path = cni_path(&bin);
    let env = [("CNI_PATH", path.as_str())];
    let state = TempDir::new("xvs-cni-churn");
    let (xvsd, socket) = start_xvsd(state.path());
    let net = CniNet::new("xvschurn", |dir| xvs_conflist("1.0.0", &socket, dir));

    // (netns, pod IP) of the pods attached, oldest first.
    let mut live: Vec<(String, String)> = Vec::new();
    let attach = |topo: &mut Topology, live: &mut Vec<(String, String)>, ns: &str| {
        let (ip, host) = add(&net, ns, &env, "1.0.0");
        topo.link(&host);
        if let Some((peer, peer_ip)) = live.last() {
            assert!(
                ping_eventually(ns, peer_ip, 10),
                "{ns} -> {peer}\n{}",
                xvsd.log()
            );
            assert!(
                ping_eventually(peer, &ip, 10),
                "{peer} -> {ns}\n{}",
                xvsd.log()
            );
        }
        live.push((ns.to_string(), ip));
    };
    attach(&mut topo, &mut live, &names[0]);
    attach(&mut topo, &mut live, &names[1]);
    // Each round deletes the oldest pod and adds a new one; the last
    // rounds bring back the first two netns.
    let comeback = names.iter().skip(2).chain(names.iter().take(2));
    for ns in comeback {
        let (gone, _) = live.remove(0);
        cnitool_ok("del", &net, &netns_path(&gone), &env);
        attach(&mut topo, &mut live, ns);
    }
    assert_eq!(ports(&socket).len(), 2, "{:?}", ports(&socket));
    for (ns, _) in std::mem::take(&mut live) {
        cnitool_ok("del", &net, &netns_path(&ns), &env);
    }
    assert!(ports(&socket).is_empty(), "{:?}", ports(&socket));
    assert!(leases(net.dir(), "xvschurn").is_empty());

    let log = xvsd.terminate();
    let reports: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("frame accounting"))
        .collect();
    assert!(!reports.is_empty(), "{log}");
    for line in reports {
        assert!(line.contains("balanced=true"), "{line}");
        // The default ring: the last pod's fill ring, if it registered
        // its worker's UMEM, is taken back only at the next port change.
        let fill: u32 = line
            .split(" fill=")
            .nth(1)
            .and_then(|f| f.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("no fill= in {line}"));
        assert!(fill <= 2048, "{line}");
    }
}

/// A directory for `PATH` with iptables but not ip6tables.
///
/// Debian 12's portmap (containernetworking-plugins 1.1.1) fails CHECK of
/// an IPv4-only attachment whenever ip6tables works: it looks for an IPv6
/// DNAT chain it never made ("could not check ipv6 dnat: chain CNI-DN-...
/// not found in iptables table nat", containernetworking/plugins#819,
/// fixed upstream later). It skips IPv6 when it finds no ip6tables in
/// `PATH`; xvs pods are IPv4-only, so that is what this node is.
fn ipv4_only_path(dir: &TempDir) -> String {
    let bin = dir.path().join("v4bin");
    std::fs::create_dir_all(&bin).expect("creating v4bin");
    for tool in ["iptables", "iptables-save", "iptables-restore"] {
        let _ = std::fs::remove_file(bin.join(tool));
        std::os::unix::fs::symlink(Path::new("/usr/sbin").join(tool), bin.join(tool))
            .expect("linking an iptables tool");
    }
    format!("{}:/usr/bin:/bin", bin.display())
}

#[test]
fn cnitool_chains_portmap_and_bandwidth_after_xvs_cni() {
    let Some(_serial) = root_or_skip("cnitool_chains_portmap_and_bandwidth_after_xvs_cni") else {
        return;
    };
    let ns = "xccc-chain";
    let mut topo = Topology::default();
    topo.netns(ns);
    let bin = TempDir::new("xvs-cni-bin");
    let path = cni_path(&bin);
    let sys_path = ipv4_only_path(&bin);
    let caps = json!({
        "portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}],
        "bandwidth": {"ingressRate": 1_000_000, "ingressBurst": 100_000,
                      "egressRate": 1_000_000, "egressBurst": 100_000},
    })
    .to_string();
    let env = [
        ("CNI_PATH", path.as_str()),
        ("PATH", sys_path.as_str()),
        ("CAP_ARGS", caps.as_str()),
    ];
    let state = TempDir::new("xvs-cni-chain");
    let (xvsd, socket) = start_xvsd(state.path());
    let net = CniNet::new("xvschain", |dir| {
        let mut list = xvs_conflist("1.0.0", &socket, dir);
        let plugins = list["plugins"].as_array_mut().expect("plugins");
        plugins.push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
        plugins.push(json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}));
        list
    });

    let out = cnitool_ok("add", &net, &netns_path(ns), &env);
    let result: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let interfaces = result["interfaces"].as_array().expect("interfaces");
    for i in interfaces {
        topo.link(i["name"].as_str().expect("a name"));
    }
    // xvs-cni's result, passed along: bandwidth appended its ifb.
    assert_eq!(result["cniVersion"], "1.0.0", "{result}");
    assert_eq!(interfaces.len(), 3, "{result}");
    assert_eq!(interfaces[1]["sandbox"], netns_path(ns), "{result}");
    let host = interfaces[0]["name"].as_str().unwrap().to_string();
    let ifb = interfaces[2]["name"].as_str().unwrap().to_string();
    assert!(
        host.starts_with("xvs") && ifb.starts_with("bwp"),
        "{result}"
    );
    let ip = result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.strip_suffix("/32"))
        .expect("a /32")
        .to_string();
    assert_eq!(result["routes"][0]["gw"], "169.254.1.1", "{result}");
    let nat = run("iptables -t nat -S");
    assert!(
        nat.contains(&format!("--dport 18080 -j DNAT --to-destination {ip}:80")),
        "{nat}"
    );
    let qdisc = run(&format!("tc qdisc show dev {host}"));
    assert!(qdisc.contains("tbf"), "{qdisc}");
    assert!(ports(&socket).iter().any(|p| p["name"] == host.as_str()));

    cnitool_ok("check", &net, &netns_path(ns), &env);

    for _ in 0..2 {
        cnitool_ok("del", &net, &netns_path(ns), &env);
    }
    let nat = run("iptables -t nat -S");
    assert!(!nat.contains(&format!("{ip}:80")), "{nat}");
    assert!(!link_exists(&host) && !link_exists(&ifb));
    assert!(leases(net.dir(), "xvschain").is_empty());
    assert!(ports(&socket).is_empty(), "{:?}", ports(&socket));
    drop(xvsd);
}

/// A `CNI_PATH` whose xvs-cni is a wrapper recording what the plugin
/// told libcni (cnitool prints only an error's message): its last stdout
/// goes to `<dir>/reply.json`, its CNI_CONTAINERID to `<dir>/containerid`.
fn recording_cni_path(dir: &TempDir) -> String {
    use std::os::unix::fs::PermissionsExt;
    let wrapper = dir.path().join("xvs-cni");
    let d = dir.path().display();
    let script = format!(
        "#!/bin/sh\nprintf '%s' \"$CNI_CONTAINERID\" > {d}/containerid\n\
         out=$({bin}); rc=$?\nprintf '%s\\n' \"$out\" > {d}/reply.json\n\
         printf '%s\\n' \"$out\"\nexit $rc\n",
        bin = bin_path("xvs-cni").display()
    );
    std::fs::write(&wrapper, script).expect("writing the wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        .expect("chmod the wrapper");
    format!("{d}:{REFERENCE_PLUGINS}")
}

/// The reply the wrapper of [`recording_cni_path`] recorded.
fn recorded_reply(dir: &TempDir) -> Value {
    let text = std::fs::read_to_string(dir.path().join("reply.json")).expect("a recorded reply");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn cnitool_reports_spec_errors_for_bad_configs() {
    let Some(_serial) = root_or_skip("cnitool_reports_spec_errors_for_bad_configs") else {
        return;
    };
    let ns = "xccc-bad";
    let mut topo = Topology::default();
    topo.netns(ns);
    let bin = TempDir::new("xvs-cni-bin");
    let path = recording_cni_path(&bin);
    let env = [("CNI_PATH", path.as_str())];
    let plugin = |dir: &Path| {
        json!({"type": "xvs-cni", "socket": dir.join("no-xvsd.sock"),
               "ipam": {"subnet": "10.244.1.0/24", "dataDir": dir.join("ipam")}})
    };
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit, u64, &str); 6] = [
        (
            "noversion",
            |l| drop(l.as_object_mut().unwrap().remove("cniVersion")),
            1,
            "CNI version \"\" is not supported by xvs-cni",
        ),
        (
            "version9",
            |l| l["cniVersion"] = "9.9.9".into(),
            1,
            "CNI version \"9.9.9\" is not supported",
        ),
        (
            "badtype",
            |l| l["plugins"][0]["mtu"] = "big".into(),
            6,
            "cannot decode the network configuration",
        ),
        (
            "badsocket",
            |l| l["plugins"][0]["socket"] = 42.into(),
            6,
            "cannot decode the network configuration",
        ),
        (
            "badsubnet",
            |l| l["plugins"][0]["ipam"]["subnet"] = "10.244.1.0/33".into(),
            7,
            "ipam.subnet: \"10.244.1.0/33\" is not an address/prefix",
        ),
        (
            "ranges",
            |l| l["plugins"][0]["ipam"]["ranges"] = json!([[{"subnet": "10.244.1.0/24"}]]),
            2,
            "unsupported field ipam.ranges",
        ),
    ];
    for (name, edit, code, msg) in cases {
        let net = CniNet::new(&format!("xvsbad{name}"), |dir| {
            let mut list = json!({"cniVersion": "1.0.0", "plugins": [plugin(dir)]});
            edit(&mut list);
            list
        });
        let out = cnitool("add", &net, &netns_path(ns), &env);
        let text = output_text(&out);
        assert!(!out.status.success(), "{name}: {text}");
        assert!(
            text.contains("plugin type=\"xvs-cni\" failed (add)") && text.contains(msg),
            "{name}: {text}"
        );
        let reply = recorded_reply(&bin);
        assert_eq!(reply["code"], code, "{name}: {reply}");
        let reply_msg = reply["msg"].as_str().expect("a msg");
        assert!(
            text.contains(reply_msg),
            "{name}: {reply_msg} not in {text}"
        );
        assert!(leases(net.dir(), &format!("xvsbad{name}")).is_empty());
    }
    // Not JSON at all: libcni rejects the conflist before any plugin runs.
    let net = CniNet::new("xvsbadjson", |dir| json!({"plugins": [plugin(dir)]}));
    std::fs::write(
        net.dir().join("xvsbadjson.conflist"),
        "{\"name\": \"xvsbadjson\", ",
    )
    .expect("writing garbage");
    let out = cnitool("add", &net, &netns_path(ns), &env);
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("error parsing configuration list"),
        "{}",
        output_text(&out)
    );
}

/// xvs-cni's host-side name for (container id, ifname): FNV-1a 64 of
/// `id \0 ifname`, top 44 bits in hex after "xvs" (plumb::host_ifname).
fn host_ifname(container_id: &str, ifname: &str) -> String {
    let bytes = container_id
        .bytes()
        .chain(std::iter::once(0))
        .chain(ifname.bytes());
    let hash = bytes.fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("xvs{:011x}", hash >> 20)
}

#[test]
fn cnitool_add_onto_an_existing_ifname_fails_and_leaks_nothing() {
    let Some(_serial) = root_or_skip("cnitool_add_onto_an_existing_ifname_fails_and_leaks_nothing")
    else {
        return;
    };
    let ns = "xccc-exists";
    let mut topo = Topology::default();
    topo.netns(ns);
    // No dummy driver on these machines: a veth pair inside the pod.
    run(&format!(
        "ip -n {ns} link add eth0 type veth peer name eth0peer"
    ));
    let bin = TempDir::new("xvs-cni-bin");
    let path = recording_cni_path(&bin);
    let env = [("CNI_PATH", path.as_str())];
    let state = TempDir::new("xvs-cni-exists");
    let (xvsd, socket) = start_xvsd(state.path());
    let net = CniNet::new("xvsexists", |dir| xvs_conflist("1.0.0", &socket, dir));

    let out = cnitool("add", &net, &netns_path(ns), &env);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "interface eth0 already exists in network namespace {}",
            netns_path(ns)
        )),
        "{text}"
    );
    let reply = recorded_reply(&bin);
    assert_eq!(reply["code"], 102, "{reply}");
    let container_id =
        std::fs::read_to_string(bin.path().join("containerid")).expect("the container id");
    let host = host_ifname(&container_id, "eth0");
    topo.link(&host);
    assert!(!link_exists(&host), "{host} leaked");
    assert!(leases(net.dir(), "xvsexists").is_empty());
    assert!(ports(&socket).is_empty(), "{:?}", ports(&socket));
    let shown = run(&format!("ip -n {ns} -d link show eth0"));
    assert!(
        shown.contains("veth"),
        "the pod's own eth0 was touched: {shown}"
    );

    // Once the name is free, the same attachment succeeds, its host end
    // named as computed above. (Not with 10.244.1.10 again: like
    // host-local, allocation goes round-robin from the last reserved IP.)
    run(&format!("ip -n {ns} link del eth0"));
    let (ip, added_host) = add(&net, ns, &env, "1.0.0");
    assert_eq!(added_host, host);
    assert_eq!(leases(net.dir(), "xvsexists"), vec![ip]);
    cnitool_ok("del", &net, &netns_path(ns), &env);
    assert!(leases(net.dir(), "xvsexists").is_empty());
    drop(xvsd);
}

/// host-local's lease file for `ip` in its `dataDir` (`<dir>/ipam`) of
/// network `net`: "<container id>\r\n<ifname>".
fn host_local_lease(dir: &Path, net: &str, ip: &str) -> String {
    let path = dir.join("ipam").join(net).join(ip);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn cnitool_delegates_ipam_to_host_local() {
    let Some(_serial) = root_or_skip("cnitool_delegates_ipam_to_host_local") else {
        return;
    };
    let (a, b) = ("xcnihl-a", "xcnihl-b");
    let mut topo = Topology::default();
    topo.netns(a);
    topo.netns(b);
    let bin = TempDir::new("xvs-cni-bin");
    let path = cni_path(&bin);
    let env = [("CNI_PATH", path.as_str())];
    let state = TempDir::new("xvs-cni-hl");
    let (xvsd, socket) = start_xvsd(state.path());
    let name = "xvshl";
    let net = CniNet::new(name, |dir| {
        json!({
            "cniVersion": "1.0.0",
            "plugins": [{
                "type": "xvs-cni",
                "socket": socket,
                // Debian's host-local (1.1.1), found in CNI_PATH; it owns
                // the whole section, `ranges` included.
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "10.244.1.0/24", "rangeStart": "10.244.1.50"}]],
                    "dataDir": dir.join("ipam"),
                },
                "dns": { "nameservers": ["10.96.0.10"] },
            }]
        })
    });

    let (ip_a, host_a) = add(&net, a, &env, "1.0.0");
    let (ip_b, host_b) = add(&net, b, &env, "1.0.0");
    topo.link(&host_a);
    topo.link(&host_b);
    // host-local hands out from rangeStart, in order.
    assert_eq!(
        (ip_a.as_str(), ip_b.as_str()),
        ("10.244.1.50", "10.244.1.51")
    );
    assert_eq!(leases(net.dir(), name), [ip_a.clone(), ip_b.clone()]);
    for (ns, ip) in [(a, &ip_a), (b, &ip_b)] {
        let lease = host_local_lease(net.dir(), name, ip);
        assert!(
            lease.starts_with("cnitool-") && lease.ends_with("\r\neth0"),
            "{lease:?}"
        );
        let shown = run(&format!("ip -n {ns} -4 addr show dev eth0"));
        assert!(shown.contains(&format!("inet {ip}/32")), "{shown}");
    }
    let listed = ports(&socket);
    for (host, ip) in [(&host_a, &ip_a), (&host_b, &ip_b)] {
        let port = listed
            .iter()
            .find(|p| p["name"] == host.as_str())
            .unwrap_or_else(|| panic!("no port {host} in {listed:?}"));
        assert_eq!(port["kind"]["pod"]["ip"], ip.as_str(), "{port}");
    }

    assert!(ping_eventually(a, &ip_b, 10), "{}", xvsd.log());
    assert!(ping_eventually(b, &ip_a, 10), "{}", xvsd.log());

    // CHECK runs host-local's CHECK too (which looks for its lease).
    cnitool_ok("check", &net, &netns_path(a), &env);
    cnitool_ok("check", &net, &netns_path(b), &env);

    for _ in 0..2 {
        cnitool_ok("del", &net, &netns_path(a), &env);
    }
    assert_eq!(leases(net.dir(), name), [ip_b.as_str()]);
    assert!(!ports(&socket).iter().any(|p| p["name"] == host_a.as_str()));
    assert!(!link_exists(&host_a));
    cnitool_ok("del", &net, &netns_path(b), &env);
    cnitool_ok("del", &net, &netns_path(b), &env);
    assert!(leases(net.dir(), name).is_empty());
    assert!(ports(&socket).is_empty(), "{:?}", ports(&socket));
    drop(xvsd);
}

#[test]
fn cnitool_runtime_config_ips_and_mac() {
    let Some(_serial) = root_or_skip("cnitool_runtime_config_ips_and_mac") else {
        return;
    };
    let (a, b) = ("xcnicap-a", "xcnicap-b");
    let mut topo = Topology::default();
    topo.netns(a);
    topo.netns(b);
    let bin = TempDir::new("xvs-cni-bin");
    // The wrapper records xvs-cni's reply, for the error code.
    let path = recording_cni_path(&bin);
    let mac = "02:12:34:56:78:9a";
    let caps = json!({"ips": ["10.244.1.77/24"], "mac": mac}).to_string();
    let env = [("CNI_PATH", path.as_str()), ("CAP_ARGS", caps.as_str())];
    let state = TempDir::new("xvs-cni-cap");
    let (xvsd, socket) = start_xvsd(state.path());
    let name = "xvscap";
    let net = CniNet::new(name, |dir| {
        let mut list = xvs_conflist("1.0.0", &socket, dir);
        // libcni passes only the capabilities a plugin declares.
        list["plugins"][0]["capabilities"] = json!({"ips": true, "mac": true});
        list
    });

    let (ip, host) = add(&net, a, &env, "1.0.0");
    topo.link(&host);
    assert_eq!(ip, "10.244.1.77");
    let reply = recorded_reply(&bin);
    assert_eq!(reply["interfaces"][1]["mac"], mac, "{reply}");
    let shown = run(&format!("ip -n {a} -4 addr show dev eth0"));
    assert!(shown.contains("inet 10.244.1.77/32"), "{shown}");
    let link = run(&format!("ip -n {a} link show dev eth0"));
    assert!(link.contains(&format!("link/ether {mac} ")), "{link}");
    assert_eq!(leases(net.dir(), name), ["10.244.1.77"]);
    let listed = ports(&socket);
    let port = listed
        .iter()
        .find(|p| p["name"] == host.as_str())
        .unwrap_or_else(|| panic!("no port {host} in {listed:?}"));
    assert_eq!(port["kind"]["pod"]["mac"], mac, "{port}");
    assert_eq!(port["kind"]["pod"]["ip"], "10.244.1.77", "{port}");
    cnitool_ok("check", &net, &netns_path(a), &env);

    // A second pod asking for the same address: code 7 naming it and its
    // holder, nothing made, a keeps it.
    let caps_b = json!({"ips": ["10.244.1.77/24"]}).to_string();
    let env_b = [("CNI_PATH", path.as_str()), ("CAP_ARGS", caps_b.as_str())];
    let out = cnitool("add", &net, &netns_path(b), &env_b);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    let reply = recorded_reply(&bin);
    assert_eq!(reply["code"], 7, "{reply}");
    let msg = reply["msg"].as_str().expect("a msg");
    assert!(msg.contains("10.244.1.77 is in use by cnitool-"), "{msg}");
    assert!(text.contains(msg), "{text}");
    let container_b =
        std::fs::read_to_string(bin.path().join("containerid")).expect("the container id");
    let host_b = host_ifname(&container_b, "eth0");
    topo.link(&host_b);
    assert!(!link_exists(&host_b), "{host_b} leaked");
    let left = run(&format!("ip -n {b} -o link show"));
    assert!(!left.contains("eth0"), "{left}");
    assert_eq!(leases(net.dir(), name), ["10.244.1.77"]);
    assert_eq!(ports(&socket).len(), 1, "{:?}", ports(&socket));

    cnitool_ok("del", &net, &netns_path(a), &env);
    assert!(leases(net.dir(), name).is_empty());
    assert!(ports(&socket).is_empty(), "{:?}", ports(&socket));
    drop(xvsd);
}

/// Without `mtu` in the configuration a pod gets xvsd's uplink MTU minus
/// the 50 bytes of VXLAN (here a 1700-byte uplink: 1650), and `mtu`
/// overrides it.
#[test]
fn cnitool_pod_mtu_follows_the_uplink() {
    let Some(_serial) = root_or_skip("cnitool_pod_mtu_follows_the_uplink") else {
        return;
    };
    let mut topo = Topology::default();
    topo.host("xcmu-ext", "xcmuup", "192.168.78.2/24");
    run("ip link set xcmuup mtu 1700");
    run("ip -n xcmu-ext link set eth0 mtu 1700");
    topo.netns("xcmu-a");
    topo.netns("xcmu-b");
    let bin = TempDir::new("xvs-cni-bin");
    let path = cni_path(&bin);
    let env = [("CNI_PATH", path.as_str())];
    let state = TempDir::new("xvs-cni-mtu");
    let socket = state.path().join("xvsd.sock");
    let socket_arg = socket.display().to_string();
    let xvsd = common::Xvsd::start(&[
        "--control-socket",
        &socket_arg,
        "--uplink",
        "xcmuup",
        "--node-ip",
        "192.168.78.1",
        "--pod-cidr",
        "10.244.1.0/24",
    ]);
    let show = run(&format!(
        "{} --socket {socket_arg} show",
        common::bin_path("xvsctl").display()
    ));
    assert!(show.contains("pod MTU 1650"), "{show}");

    for (ns, mtu, conf_mtu) in [("xcmu-a", 1650, None), ("xcmu-b", 1400, Some(1400))] {
        let name = format!("mtu{mtu}");
        let net = CniNet::new(&name, |dir| {
            let mut conf = xvs_conflist("1.0.0", &socket, dir);
            if let Some(m) = conf_mtu {
                conf["plugins"][0]["mtu"] = json!(m);
            }
            conf
        });
        let out = cnitool_ok("add", &net, &netns_path(ns), &env);
        let result: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        // (A 1.0.0 result has no interface MTU; 1.1.0 added it.)
        let host = result["interfaces"][0]["name"]
            .as_str()
            .unwrap()
            .to_string();
        topo.link(&host);
        let inside = run(&format!("ip -n {ns} link show eth0"));
        assert!(inside.contains(&format!("mtu {mtu} ")), "{inside}");
        let outside = run(&format!("ip link show {host}"));
        assert!(outside.contains(&format!("mtu {mtu} ")), "{outside}");
        cnitool_ok("del", &net, &netns_path(ns), &env);
    }
    drop(xvsd);
}
