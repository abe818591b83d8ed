//! The CNI test harness, proved on the reference plugins (Debian's
//! containernetworking-plugins) before it drives xvs-cni: cnitool runs a
//! bridge + host-local conflist (cniVersion 1.0.0) into a netns — ADD gives
//! the netns an address from the range, CHECK passes, DEL twice succeeds
//! and frees the lease — and podman runs a busybox container on such a
//! network, which gets its address from host-local and gives it back on
//! `podman rm`.

mod common;

use std::path::Path;

use common::cni::{cnitool, cnitool_ok, netns_path, CniNet, Podman};
use common::{output_text, root_or_skip, run, Topology};

/// A bridge + host-local conflist on `bridge` over `subnet`, its leases
/// under `state`.
fn bridge_conflist(bridge: &str, subnet: &str, state: &Path) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "plugins": [{
            "type": "bridge",
            "bridge": bridge,
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": subnet }]],
                "routes": [{ "dst": "0.0.0.0/0" }],
                "dataDir": state.join("ipam"),
            }
        }]
    })
}

use common::cni::lease_files as leases;

#[test]
fn cnitool_runs_reference_bridge_and_host_local() {
    let Some(_serial) = root_or_skip("cnitool_runs_reference_bridge_and_host_local") else {
        return;
    };
    let mut topo = Topology::default();
    topo.link("xcniref0");
    topo.netns("xcniref-a");
    let net = CniNet::new("xcniref", |dir| {
        bridge_conflist("xcniref0", "10.203.1.0/24", dir)
    });
    let ns = netns_path("xcniref-a");

    let result: serde_json::Value =
        serde_json::from_str(&cnitool_ok("add", &net, &ns, &[])).expect("ADD prints a JSON result");
    assert_eq!(result["cniVersion"], "1.0.0", "{result}");
    let cidr = result["ips"][0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no ips[0].address in {result}"));
    assert!(
        cidr.starts_with("10.203.1."),
        "{cidr} is not from the range"
    );
    let sandbox = result["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .find(|i| i["sandbox"] == ns.as_str())
        .unwrap_or_else(|| panic!("no interface in the netns in {result}"));
    assert_eq!(sandbox["name"], "eth0");
    let addrs = run("ip -n xcniref-a -4 -o addr show dev eth0");
    assert!(
        addrs.contains(cidr),
        "{cidr} not on eth0 in the netns: {addrs}"
    );
    let ip = cidr.split('/').next().unwrap_or_default();
    assert_eq!(leases(net.dir(), "xcniref"), [ip]);

    cnitool_ok("check", &net, &ns, &[]);

    cnitool_ok("del", &net, &ns, &[]);
    let gone = run("ip -n xcniref-a -o link show");
    assert!(
        !gone.contains("eth0"),
        "eth0 still in the netns after DEL: {gone}"
    );
    assert!(
        leases(net.dir(), "xcniref").is_empty(),
        "DEL kept the lease"
    );
    // DEL is idempotent: libcni has no cached result any more, and the
    // plugins find nothing to remove.
    let again = cnitool("del", &net, &ns, &[]);
    assert!(
        again.status.success(),
        "second DEL failed: {}",
        output_text(&again)
    );
    // A CHECK of nothing attached fails (libcni finds no cached result).
    let check = cnitool("check", &net, &ns, &[]);
    assert!(!check.status.success(), "CHECK passed after DEL");
}

#[test]
fn podman_runs_busybox_on_a_reference_bridge_network() {
    let Some(_serial) = root_or_skip("podman_runs_busybox_on_a_reference_bridge_network") else {
        return;
    };
    let mut topo = Topology::default();
    topo.link("xcnipod0");
    let podman = Podman::new();
    podman.network("xcnipod", |dir| {
        bridge_conflist("xcnipod0", "10.203.2.0/24", dir)
    });

    let id = podman.ok(&[
        "run",
        "-d",
        "--network",
        "xcnipod",
        "--name",
        "xcnipod-c1",
        Podman::IMAGE,
        "sleep",
        "300",
    ]);
    let ip = podman.ok(&[
        "inspect",
        "--format",
        "{{(index .NetworkSettings.Networks \"xcnipod\").IPAddress}}",
        &id,
    ]);
    assert!(ip.starts_with("10.203.2."), "container got {ip:?}");
    let inside = podman.ok(&["exec", &id, "ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(
        inside.contains(&format!("{ip}/24")),
        "{ip} not on eth0 in the container: {inside}"
    );
    let state = podman.net_dir().parent().expect("podman dir").to_path_buf();
    assert_eq!(leases(&state, "xcnipod"), [ip.as_str()]);
    // The container reaches the bridge, its gateway.
    podman.ok(&["exec", &id, "ping", "-c", "1", "-W", "2", "10.203.2.1"]);

    podman.ok(&["rm", "--force", "--time", "0", &id]);
    assert!(
        leases(&state, "xcnipod").is_empty(),
        "podman rm kept the lease"
    );
}
