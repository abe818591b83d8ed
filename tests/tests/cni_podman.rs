//! xvs-cni under podman 4.3 (Debian) with its CNI network backend: an
//! xvsd with no pods, a conflist (cniVersion 1.0.0: podman's libcni 1.1.2
//! refuses a 1.1.0 result) of type xvs-cni in podman's private
//! network_config_dir, xvs-cni on its `cni_plugin_dirs`. Two busybox
//! containers on that network each get an address from xvs-cni's IPAM
//! (on their eth0, a port in xvsd) and ping each other through xvsd;
//! `podman rm` runs DEL, which frees the lease and removes the port.

mod common;

use std::path::Path;

use common::cni::{ports, start_xvsd, Podman, TempDir};
use common::{bin_path, output_text, root_or_skip, Topology};
use serde_json::{json, Value};

/// The network's name, for `--network`, and its IPAM lease directory.
const NET: &str = "xvspod";

/// The lease files (one per address) under `state`.
fn leases(state: &Path) -> Vec<String> {
    common::cni::lease_files(state, NET)
}

/// The xvsd port whose attachment names container `id`.
fn port_of<'a>(ports: &'a [Value], id: &str) -> Option<&'a Value> {
    ports.iter().find(|p| p.to_string().contains(id))
}

/// Runs a container `name` on the xvs network; returns (id, IP).
fn start(podman: &Podman, name: &str) -> (String, String) {
    let id = podman.ok(&[
        "run",
        "-d",
        "--network",
        NET,
        "--name",
        name,
        Podman::IMAGE,
        "sleep",
        "300",
    ]);
    let ip = podman.ok(&[
        "inspect",
        "--format",
        &format!("{{{{(index .NetworkSettings.Networks \"{NET}\").IPAddress}}}}"),
        &id,
    ]);
    (id, ip)
}

/// `podman exec id ping dst`, retried for up to `secs` seconds.
fn ping_eventually(podman: &Podman, id: &str, dst: &str, secs: u64) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let out = podman.output(&["exec", id, "ping", "-c", "1", "-W", "1", dst]);
        if out.status.success() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            eprintln!("ping {dst} from {id}: {}", output_text(&out));
            return false;
        }
    }
}

#[test]
fn podman_runs_busybox_on_an_xvs_cni_network() {
    let Some(_serial) = root_or_skip("podman_runs_busybox_on_an_xvs_cni_network") else {
        return;
    };
    // Dropped in reverse: the containers go first (their DEL reaching
    // xvsd), then xvsd, then any veth left behind.
    let mut topo = Topology::default();
    let state = TempDir::new("xvs-cni-podman");
    let (xvsd, socket) = start_xvsd(state.path());
    let bin = TempDir::new("xvs-cni-podman-bin");
    std::os::unix::fs::symlink(bin_path("xvs-cni"), bin.path().join("xvs-cni"))
        .expect("linking xvs-cni");
    let podman = Podman::new();
    podman.prepend_plugin_dir(bin.path());
    podman.network(NET, |dir| {
        json!({
            "cniVersion": "1.0.0",
            "plugins": [{
                "type": "xvs-cni",
                "socket": socket,
                "ipam": {
                    "subnet": "10.244.1.0/24",
                    "rangeStart": "10.244.1.10",
                    "dataDir": dir.join("ipam"),
                },
            }]
        })
    });
    let pod_dir = podman.net_dir().parent().expect("podman dir").to_path_buf();

    let (id_a, ip_a) = start(&podman, "xvspod-a");
    let (id_b, ip_b) = start(&podman, "xvspod-b");
    let listed = ports(&socket);
    let mut hosts = Vec::new();
    for (id, ip) in [(&id_a, &ip_a), (&id_b, &ip_b)] {
        assert!(ip.starts_with("10.244.1."), "{id} got {ip:?}");
        let inside = podman.ok(&["exec", id, "ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
        assert!(
            inside.contains(&format!("inet {ip}/32")),
            "{ip}/32 not on eth0 in {id}: {inside}"
        );
        let port = port_of(&listed, id)
            .unwrap_or_else(|| panic!("no port for container {id} in {listed:?}"));
        assert_eq!(port["attachment"]["ifname"], "eth0", "{port}");
        let host = port["name"].as_str().expect("a port name").to_string();
        topo.link(&host);
        hosts.push(host);
    }
    assert_ne!(ip_a, ip_b);
    let mut both = vec![ip_a.clone(), ip_b.clone()];
    both.sort();
    assert_eq!(leases(&pod_dir), both);

    assert!(ping_eventually(&podman, &id_a, &ip_b, 10), "{}", xvsd.log());
    assert!(ping_eventually(&podman, &id_b, &ip_a, 10), "{}", xvsd.log());

    // podman rm runs DEL: the lease and the port go, and the veth.
    podman.ok(&["rm", "--force", "--time", "0", &id_a]);
    assert_eq!(leases(&pod_dir), vec![ip_b.clone()]);
    let listed = ports(&socket);
    assert!(port_of(&listed, &id_a).is_none(), "{listed:?}");
    assert!(port_of(&listed, &id_b).is_some(), "{listed:?}");
    let gone = common::sh(&format!("ip link show {}", hosts[0]));
    assert!(!gone.status.success(), "{}", output_text(&gone));

    podman.ok(&["rm", "--force", "--time", "0", &id_b]);
    assert!(leases(&pod_dir).is_empty(), "{:?}", leases(&pod_dir));
    assert!(ports(&socket).is_empty(), "{:?}", ports(&socket));
}
