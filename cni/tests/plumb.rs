//! `xvs_cni::plumb` against the real kernel: attach, inspect and detach in
//! network namespaces made for each test, checked with iproute2 and ethtool
//! (independent witnesses), never with our own netlink code.
//!
//! These tests need root. Outside CI a non-root run skips them with a loud
//! message; under `CI=true` a non-root run fails instead of skipping.
//! Every namespace and link a test makes is removed when its guard drops,
//! also when the test fails.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use xvs_cni::plumb::{self, AttachRequest, PlumbError, GATEWAY};

/// `true` when the test may run; panics under `CI=true` when not root.
fn root_or_skip(test: &str) -> bool {
    let uid = Command::new("id").arg("-u").output().ok();
    let is_root = uid.is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !is_root {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: needs root, and CI=true: refusing to skip");
        }
        eprintln!("\n!!!! SKIPPED {test}: needs root (network namespaces). Run as root. !!!!\n");
    }
    is_root
}

fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("running sh")
}

/// Runs a command; panics with its output if it fails.
fn run(cmd: &str) -> String {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(cmd: &str) -> Value {
    serde_json::from_str(&run(cmd)).unwrap_or_else(|e| panic!("`{cmd}`: not JSON: {e}"))
}

/// A named network namespace, deleted on drop (with what is inside it).
struct Ns {
    name: String,
}

impl Ns {
    fn new(tag: &str) -> Ns {
        let name = format!("xvsplumb-{tag}-{}", std::process::id());
        let _ = sh(&format!("ip netns del {name} 2>/dev/null"));
        run(&format!("ip netns add {name}"));
        Ns { name }
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// The names of the links inside.
    fn links(&self) -> Vec<String> {
        let links = json(&format!("ip -n {} -j link show", self.name));
        links
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = sh(&format!("ip netns del {} 2>/dev/null", self.name));
    }
}

/// A host-namespace link, deleted on drop if still there.
struct HostLink(String);

impl Drop for HostLink {
    fn drop(&mut self) {
        let _ = sh(&format!("ip link del {} 2>/dev/null", self.0));
    }
}

fn host_link_exists(name: &str) -> bool {
    sh(&format!("ip link show dev {name}")).status.success()
}

/// An attach request for container `id` into `ns` as `eth0`.
fn request(id: &str, ns: &Ns, address: Ipv4Addr) -> (AttachRequest, HostLink) {
    let host_ifname = plumb::host_ifname(&format!("{id}-{}", std::process::id()), "eth0");
    let guard = HostLink(host_ifname.clone());
    let req = AttachRequest {
        host_ifname,
        netns: ns.path(),
        ifname: "eth0".into(),
        address,
        gateway: GATEWAY,
        mtu: 1450,
        mac: None,
    };
    (req, guard)
}

#[test]
fn attach_configures_both_ends() {
    if !root_or_skip("attach_configures_both_ends") {
        return;
    }
    let ns = Ns::new("cfg");
    let (req, _host) = request("cfg", &ns, Ipv4Addr::new(10, 244, 1, 7));
    let attached = plumb::attach(&req).expect("attach");
    assert_eq!(attached.host_ifname, req.host_ifname);
    let n = &ns.name;

    // The pod end: named, up, MTU, MAC and index as reported.
    let link = &json(&format!("ip -n {n} -j link show dev eth0"))[0];
    assert_eq!(link["mtu"], 1450, "{link}");
    assert!(
        link["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{link}"
    );
    assert_eq!(link["address"], attached.pod_mac.to_string());
    assert_eq!(link["ifindex"], attached.pod_ifindex);
    assert_eq!(ns.links(), ["lo", "eth0"], "no temporary peer left behind");

    // Exactly the /32.
    let addr = &json(&format!("ip -n {n} -j -4 addr show dev eth0"))[0]["addr_info"];
    assert_eq!(addr.as_array().unwrap().len(), 1, "{addr}");
    assert_eq!(addr[0]["local"], "10.244.1.7");
    assert_eq!(addr[0]["prefixlen"], 32);

    // The link route to the gateway and the default route through it.
    let routes = json(&format!("ip -n {n} -j -4 route show dev eth0"));
    let routes = routes.as_array().unwrap();
    assert!(
        routes.iter().any(|r| r["dst"] == "169.254.1.1"
            && r["scope"] == "link"
            && r.get("gateway").is_none()),
        "{routes:?}"
    );
    assert!(
        routes
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "169.254.1.1"),
        "{routes:?}"
    );

    // TX checksum offload off on the pod end.
    let features = run(&format!("ip netns exec {n} ethtool -k eth0"));
    assert!(
        features.lines().any(|l| l.trim() == "tx-checksumming: off"),
        "{features}"
    );

    // The host end: up, same MTU, reported MAC, and its peer is the pod end
    // in another namespace.
    let host = &json(&format!("ip -j -d link show dev {}", req.host_ifname))[0];
    assert_eq!(host["mtu"], 1450, "{host}");
    assert!(
        host["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{host}"
    );
    assert_eq!(host["address"], attached.host_mac.to_string());
    assert_eq!(host["ifindex"], attached.host_ifindex);
    assert_eq!(host["linkinfo"]["info_kind"], "veth", "{host}");
    assert!(
        host.get("link_netnsid").is_some(),
        "peer in another netns: {host}"
    );
    assert_eq!(host["link_index"], attached.pod_ifindex, "{host}");
    assert!(
        host.get("addr_info").is_none()
            || host["addr_info"].as_array().is_none_or(|a| a.is_empty()),
        "host end has no address"
    );

    // inspect reads back the same state.
    let pod = plumb::inspect(&ns.path(), "eth0").expect("inspect");
    assert_eq!(pod.ifindex, attached.pod_ifindex);
    assert_eq!(pod.mac, attached.pod_mac);
    assert_eq!(pod.mtu, 1450);
    assert!(pod.up);
    assert_eq!(pod.addresses, ["10.244.1.7/32".parse().unwrap()]);
    assert!(pod.has_address(req.address));
    assert!(pod.has_link_route_to(GATEWAY), "{:?}", pod.routes);
    assert!(pod.has_default_via(GATEWAY), "{:?}", pod.routes);
}

#[test]
fn attach_refuses_a_taken_ifname_without_leaking() {
    if !root_or_skip("attach_refuses_a_taken_ifname_without_leaking") {
        return;
    }
    let ns = Ns::new("dup");
    let (first, _h1) = request("dup1", &ns, Ipv4Addr::new(10, 244, 1, 8));
    plumb::attach(&first).expect("first attach");

    let (second, _h2) = request("dup2", &ns, Ipv4Addr::new(10, 244, 1, 9));
    let err = plumb::attach(&second).expect_err("second attach with eth0");
    assert!(matches!(err, PlumbError::IfnameExists { .. }), "{err:?}");
    assert!(err.to_string().contains("eth0 already exists"), "{err}");
    assert!(!host_link_exists(&second.host_ifname), "leaked host end");
    assert_eq!(ns.links(), ["lo", "eth0"]);
    // The first attachment is untouched.
    let pod = plumb::inspect(&ns.path(), "eth0").unwrap();
    assert!(pod.has_address(first.address));

    // The same host name again (same container and ifname) into another pod:
    // refused as a leftover, the existing pair untouched, nothing leaked there.
    let other = Ns::new("dup-other");
    let again = AttachRequest {
        netns: other.path(),
        ..first.clone()
    };
    let err = plumb::attach(&again).expect_err("same host name");
    assert!(
        matches!(err, PlumbError::HostIfnameExists { .. }),
        "{err:?}"
    );
    assert_eq!(other.links(), ["lo"]);
    assert!(host_link_exists(&first.host_ifname));
}

#[test]
fn a_failure_after_creation_removes_the_pair() {
    if !root_or_skip("a_failure_after_creation_removes_the_pair") {
        return;
    }
    // The pod already routes the gateway through another interface, so
    // adding our link route fails after the pair exists.
    let ns = Ns::new("undo");
    let n = &ns.name;
    run(&format!(
        "ip -n {n} link add other0 type veth peer name other1"
    ));
    run(&format!("ip -n {n} link set other0 up"));
    run(&format!(
        "ip -n {n} route add 169.254.1.1/32 dev other0 scope link"
    ));

    let (req, _host) = request("undo", &ns, Ipv4Addr::new(10, 244, 1, 10));
    let err = plumb::attach(&req).expect_err("route clash");
    assert!(matches!(err, PlumbError::Netlink { .. }), "{err:?}");
    assert!(err.to_string().contains("169.254.1.1"), "{err}");
    assert!(!host_link_exists(&req.host_ifname), "leaked host end");
    assert_eq!(ns.links(), ["lo", "other1", "other0"]);
}

#[test]
fn detach_is_idempotent() {
    if !root_or_skip("detach_is_idempotent") {
        return;
    }
    let ns = Ns::new("del");
    let (req, _host) = request("del", &ns, Ipv4Addr::new(10, 244, 1, 11));
    plumb::attach(&req).expect("attach");

    plumb::detach(&req.host_ifname, &ns.path(), "eth0").expect("first detach");
    assert!(!host_link_exists(&req.host_ifname));
    assert_eq!(ns.links(), ["lo"]);
    plumb::detach(&req.host_ifname, &ns.path(), "eth0").expect("second detach");

    let err = plumb::inspect(&ns.path(), "eth0").expect_err("inspect after detach");
    assert!(matches!(err, PlumbError::LinkNotFound { .. }), "{err:?}");
}

#[test]
fn detach_removes_a_pod_end_whose_host_end_is_unknown() {
    if !root_or_skip("detach_removes_a_pod_end_whose_host_end_is_unknown") {
        return;
    }
    let ns = Ns::new("orphan");
    let (req, _host) = request("orphan", &ns, Ipv4Addr::new(10, 244, 1, 12));
    plumb::attach(&req).expect("attach");
    // A different host name (say, from an older naming scheme): the pod's
    // veth is still found and removed, taking the host end with it.
    plumb::detach("xvsunknown", &ns.path(), "eth0").expect("detach");
    assert!(!host_link_exists(&req.host_ifname));
    assert_eq!(ns.links(), ["lo"]);
}

#[test]
fn detach_with_the_netns_gone_succeeds() {
    if !root_or_skip("detach_with_the_netns_gone_succeeds") {
        return;
    }
    let ns = Ns::new("gone");
    let (req, _host) = request("gone", &ns, Ipv4Addr::new(10, 244, 1, 13));
    plumb::attach(&req).expect("attach");
    let path = ns.path();
    drop(ns); // deletes the namespace, and with it the pair

    plumb::detach(&req.host_ifname, &path, "eth0").expect("detach, netns gone");
    assert!(!host_link_exists(&req.host_ifname));
    plumb::detach(
        &req.host_ifname,
        Path::new("/run/netns/xvs-never-was"),
        "eth0",
    )
    .expect("detach, netns never existed");
}

#[test]
fn attach_into_a_missing_netns_fails_clearly() {
    if !root_or_skip("attach_into_a_missing_netns_fails_clearly") {
        return;
    }
    let host_ifname = plumb::host_ifname(&format!("missing-{}", std::process::id()), "eth0");
    let _host = HostLink(host_ifname.clone());
    let req = AttachRequest {
        host_ifname,
        netns: PathBuf::from("/run/netns/xvs-does-not-exist"),
        ifname: "eth0".into(),
        address: Ipv4Addr::new(10, 244, 1, 14),
        gateway: GATEWAY,
        mtu: 1450,
        mac: None,
    };
    let err = plumb::attach(&req).expect_err("missing netns");
    assert!(matches!(err, PlumbError::NetnsNotFound { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("network namespace /run/netns/xvs-does-not-exist does not exist"),
        "{err}"
    );
    assert!(!host_link_exists(&req.host_ifname));

    let err = plumb::inspect(&req.netns, "eth0").expect_err("inspect, missing netns");
    assert!(matches!(err, PlumbError::NetnsNotFound { .. }), "{err:?}");
}

#[test]
fn bad_names_and_mtus_are_refused_before_anything_is_made() {
    if !root_or_skip("bad_names_and_mtus_are_refused_before_anything_is_made") {
        return;
    }
    let ns = Ns::new("bad");
    let (req, _host) = request("bad", &ns, Ipv4Addr::new(10, 244, 1, 15));
    let long = AttachRequest {
        ifname: "a-name-longer-than-15".into(),
        ..req.clone()
    };
    assert!(matches!(
        plumb::attach(&long),
        Err(PlumbError::InvalidIfname { .. })
    ));
    let tiny = AttachRequest {
        mtu: 60,
        ..req.clone()
    };
    assert!(matches!(
        plumb::attach(&tiny),
        Err(PlumbError::InvalidMtu { mtu: 60 })
    ));
    assert!(!host_link_exists(&req.host_ifname));
    assert_eq!(ns.links(), ["lo"]);
}

#[test]
fn attach_sets_the_requested_mac() {
    if !root_or_skip("attach_sets_the_requested_mac") {
        return;
    }
    let ns = Ns::new("mac");
    let (req, _host) = request("mac", &ns, Ipv4Addr::new(10, 244, 1, 17));
    let mac = "02:12:34:56:78:9a".parse().unwrap();
    let req = AttachRequest {
        mac: Some(mac),
        ..req
    };
    let attached = plumb::attach(&req).expect("attach");
    assert_eq!(attached.pod_mac, mac);
    let link = &json(&format!("ip -n {} -j link show dev eth0", ns.name))[0];
    assert_eq!(link["address"], "02:12:34:56:78:9a", "{link}");
    assert_eq!(plumb::inspect(&ns.path(), "eth0").unwrap().mac, mac);
    plumb::detach(&req.host_ifname, &ns.path(), "eth0").expect("detach");

    // A multicast MAC is refused before anything is made.
    let bad = AttachRequest {
        mac: Some("01:00:5e:00:00:01".parse().unwrap()),
        ..req.clone()
    };
    assert!(matches!(
        plumb::attach(&bad),
        Err(PlumbError::InvalidMac { .. })
    ));
    assert!(!host_link_exists(&req.host_ifname));
    assert_eq!(ns.links(), ["lo"]);
}

#[test]
fn the_callers_thread_stays_in_its_namespace() {
    if !root_or_skip("the_callers_thread_stays_in_its_namespace") {
        return;
    }
    let before = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let ns = Ns::new("thread");
    let (req, _host) = request("thread", &ns, Ipv4Addr::new(10, 244, 1, 16));
    plumb::attach(&req).expect("attach");
    plumb::inspect(&ns.path(), "eth0").expect("inspect");
    plumb::detach(&req.host_ifname, &ns.path(), "eth0").expect("detach");
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        before
    );
}
