//! The control socket programming a running xvsd end to end: ports added
//! and removed while it forwards, `xvsctl apply` converging (and doing
//! nothing the second time), bad requests answered while traffic flows,
//! and the desired state surviving a SIGKILL: the restarted xvsd, given
//! nothing but its state directory, forwards between the same pods again.

mod common;

use common::{ping, ping_eventually, root_or_skip, sh, Topology, Xvsd};

const POD1: (&str, &str, &str, &str) = ("xct-pod1", "xct1", "10.244.1.81", "02:00:00:0d:00:01");
const POD2: (&str, &str, &str, &str) = ("xct-pod2", "xct2", "10.244.1.82", "02:00:00:0d:00:02");
const POD3: (&str, &str, &str, &str) = ("xct-pod3", "xct3", "10.244.1.83", "02:00:00:0d:00:03");

use common::output_text as text;

#[test]
fn state_changes_at_run_time_and_survives_a_crash() {
    let Some(_serial) = root_or_skip("state_changes_at_run_time_and_survives_a_crash") else {
        return;
    };
    let mut topo = Topology::default();
    for (ns, host, ip, mac) in [POD1, POD2, POD3] {
        topo.pod(ns, host, ip, mac);
    }
    let dir = std::env::temp_dir().join(format!("xvs-control-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("xvsd.sock").display().to_string();
    let state_dir = dir.join("state").display().to_string();
    let xvsctl = common::bin_path("xvsctl");
    let ctl = |args: &str| sh(&format!("{} --socket {socket} {args}", xvsctl.display()));
    let ok = |args: &str| {
        let out = ctl(args);
        assert!(out.status.success(), "xvsctl {args}: {}", text(&out));
        text(&out)
    };
    let pod1 = format!("{},{},{}", POD1.1, POD1.2, POD1.3);
    let start = |extra: &[&str]| {
        let mut args = vec!["--control-socket", &socket, "--state-dir", &state_dir];
        args.extend_from_slice(extra);
        Xvsd::start(&args)
    };
    let metrics = format!("127.0.0.1:{}", 19000 + std::process::id() % 1000);
    let xvsd = start(&[
        "--metrics-addr",
        &metrics,
        "--node-ip",
        "192.168.77.1",
        "--pod-cidr",
        "10.244.1.0/24",
        "--pod",
        &pod1,
    ]);

    // A port added at run time forwards; adding it again changes nothing;
    // adding another under its name, or a port with no interface, fails.
    let add2 = format!("port add {} --pod {},{}", POD2.1, POD2.2, POD2.3);
    let out = ok(&add2);
    assert!(
        out.contains("+ port xct2") && out.contains("now at generation 2"),
        "{out}"
    );
    assert!(ping_eventually(POD1.0, POD2.2, 5), "{}", xvsd.log());
    assert!(ok(&add2).contains("no change (generation 2)"));
    let clash = ctl(&format!("port add {} --pod 10.244.1.99,{}", POD2.1, POD2.3));
    assert!(
        !clash.status.success() && text(&clash).contains("conflict"),
        "{}",
        text(&clash)
    );
    let nowhere = ctl("port add xct-none --bridged 1");
    assert!(
        text(&nowhere).contains("not-found") && text(&nowhere).contains("xct-none"),
        "{}",
        text(&nowhere)
    );
    let overlay = ctl("vtep add node2 --pod-cidr 10.244.2.0/24 --vtep-ip 192.168.77.2 --vtep-mac 02:00:00:00:02:01 --underlay-mac 02:00:00:00:02:00");
    assert!(
        text(&overlay).contains("invalid-params") && text(&overlay).contains("no `vxlan` section"),
        "{}",
        text(&overlay)
    );

    // Bad requests on the socket get clear errors while traffic flows.
    let replies = common::raw_requests(
        std::path::Path::new(&socket),
        b"{\"version\":1,\"id\":1,\"method\":\"port-add\",\"params\":{\"name\":5}}\n\
          {\"version\":1,\"id\":2,\"method\":\"route-del\",\"params\":{\"prefix\":\"10.1.0.0/16\"}}\n\
          {\"version\":1,\"id\":3,\"method\":\"apply\",\"params\":{\"state\":{\"node\":7}}}\n",
    );
    assert_eq!(replies[0]["error"]["code"], "invalid-params", "{replies:?}");
    assert_eq!(replies[1]["error"]["code"], "not-found", "{replies:?}");
    assert_eq!(replies[2]["error"]["code"], "invalid-params", "{replies:?}");
    assert!(ping(POD1.0, POD2.2, 2), "{}", xvsd.log());

    // apply converges to exactly the file, and a second apply is a no-op.
    let yaml = dir.join("state.yaml");
    std::fs::write(
        &yaml,
        format!(
            "node:\n  node_ip: 192.168.77.1\n  pod_cidr: 10.244.1.0/24\nports:\n\
             - name: {}\n  kind: {{pod: {{ip: {}, mac: \"{}\"}}}}\n\
             - name: {}\n  kind: {{pod: {{ip: {}, mac: \"{}\"}}}}\n\
             routes:\n- {{prefix: 10.9.0.0/16, port: {}, next_hop_mac: \"{}\"}}\n\
             services:\n- {{name: default/applied, cluster_ip: 10.96.0.98, \
             ports: [{{port: 80}}], endpoints: [{{ip: {}}}]}}\n",
            POD1.1, POD1.2, POD1.3, POD3.1, POD3.2, POD3.3, POD3.1, POD3.3, POD3.2
        ),
    )
    .unwrap();
    let dry = ok(&format!("apply -f {} --dry-run", yaml.display()));
    assert!(dry.contains("dry run"), "{dry}");
    assert!(ping(POD1.0, POD2.2, 1), "a dry run changes nothing");
    let applied = ok(&format!("apply -f {}", yaml.display()));
    assert!(
        applied.contains("- port xct2")
            && applied.contains("+ port xct3")
            && applied.contains("+ route 10.9.0.0/16")
            && applied.contains("+ service default/applied")
            && applied.contains("now at generation 3"),
        "{applied}"
    );
    assert!(
        ok(&format!("apply -f {}", yaml.display())).contains("no change (generation 3)"),
        "the same file twice changes nothing"
    );
    assert!(ping_eventually(POD1.0, POD3.2, 5), "{}", xvsd.log());
    assert!(!ping(POD1.0, POD2.2, 1), "xct2 was removed");
    let routes = ok("route list");
    assert!(routes.contains("10.9.0.0/16  xct3"), "{routes}");
    let show = ok("show");
    assert!(show.starts_with("snapshot generation 3"), "{show}");

    // Live counters: xvsctl stats and the Prometheus endpoint.
    std::thread::sleep(std::time::Duration::from_millis(300)); // a publish
    let stats: serde_json::Value = serde_json::from_str(&ok("-o json stats")).unwrap();
    let xct1 = stats["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == POD1.1)
        .unwrap();
    assert!(
        xct1["counters"]["rx_packets"].as_u64().unwrap() > 0,
        "{stats}"
    );
    assert!(
        xct1["steering"]["redirected"].as_u64().unwrap() > 0,
        "{stats}"
    );
    let table = ok("stats");
    assert!(
        table.contains("worker 0 (core") && table.contains("ns per packet"),
        "{table}"
    );
    let scrape = common::run(&format!("curl -sf http://{metrics}/metrics"));
    assert!(
        scrape.contains("xvs_port_rx_packets_total{port=\"xct1\"}")
            && scrape.contains("xvs_snapshot_generation 3")
            && scrape.trim_end().ends_with("# EOF"),
        "{scrape}"
    );

    // A Service added on its own is journaled, not written whole.
    ok("service add journaled --cluster-ip 10.96.0.99 --port 80 --endpoint 10.244.1.83");

    // SIGKILL, then a restart that is given only its state directory.
    xvsd.kill();
    let xvsd = start(&[]);
    assert!(ping_eventually(POD1.0, POD3.2, 5), "{}", xvsd.log());
    let services = ok("service list");
    assert!(
        services.contains("default/applied") && services.contains("default/journaled"),
        "both Services came back:\n{services}"
    );
    let ports = ok("-o json port list");
    let ports: serde_json::Value = serde_json::from_str(&ports).unwrap();
    let names: Vec<&str> = ports
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [POD1.1, POD3.1]);
    // A port whose interface went away while xvsd was down is reported,
    // not fatal: the others forward.
    xvsd.kill();
    common::run(&format!("ip link del {}", POD3.1));
    let xvsd = start(&[]);
    let list = ok("port list");
    assert!(list.contains("xct3") && list.contains("missing"), "{list}");
    assert!(ok("show").contains("missing interfaces (ports left out): xct3"));
    ok(&add2);
    assert!(ping_eventually(POD1.0, POD2.2, 5), "{}", xvsd.log());
    // Every UMEM frame is accounted for after ports came and went.
    let log = xvsd.terminate();
    assert!(
        log.contains("balanced=true") && !log.contains("balanced=false"),
        "{log}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A worker's UMEM bounds the pods it serves, at two pod rings of frames
/// each: a port-add beyond that is refused with what to change, changes
/// nothing, and fits again once a pod is gone; `--pod-ring-size` sets it.
#[test]
fn pod_ports_are_admitted_within_the_umem() {
    let Some(_serial) = root_or_skip("pod_ports_are_admitted_within_the_umem") else {
        return;
    };
    let mut topo = Topology::default();
    let pods: Vec<(String, String, String, String)> = (1..=4)
        .map(|i| {
            (
                format!("xcu-pod{i}"),
                format!("xcu{i}"),
                format!("10.244.1.9{i}"),
                format!("02:00:00:0d:01:0{i}"),
            )
        })
        .collect();
    for (ns, host, ip, mac) in &pods {
        topo.pod(ns, host, ip, mac);
    }
    let dir = std::env::temp_dir().join(format!("xvs-umem-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("xvsd.sock").display().to_string();
    let xvsctl = common::bin_path("xvsctl");
    let ctl = |args: &str| sh(&format!("{} --socket {socket} {args}", xvsctl.display()));
    let add = |i: usize| {
        let (_, host, ip, mac) = &pods[i];
        ctl(&format!("port add {host} --pod {ip},{mac}"))
    };
    // One worker, 8192 frames: 512 spare and 2 x 1024 per pod, so three.
    for (ring, fit) in [("1024", 3), ("512", 4)] {
        let xvsd = Xvsd::start(&[
            "--control-socket",
            &socket,
            "--state-dir",
            "none",
            "--node-ip",
            "192.168.77.1",
            "--pod-cidr",
            "10.244.1.0/24",
            "--umem-frames",
            "8192",
            "--pod-ring-size",
            ring,
        ]);
        for i in 0..fit {
            let out = add(i);
            assert!(out.status.success(), "ring {ring}, pod {i}: {}", text(&out));
        }
        if fit < pods.len() {
            let out = add(fit);
            let said = text(&out);
            assert!(!out.status.success(), "{said}");
            assert!(
                said.contains("UMEM frames") && said.contains("--pod-ring-size"),
                "{said}"
            );
            let listed = text(&ctl("port list"));
            assert!(!listed.contains(&pods[fit].1), "{listed}");
            let out = ctl(&format!("port del {}", pods[0].1));
            assert!(out.status.success(), "{}", text(&out));
            let out = add(fit);
            assert!(out.status.success(), "after a pod went: {}", text(&out));
        }
        let (ns, _, _, _) = &pods[fit - 1];
        assert!(ping_eventually(ns, &pods[1].2, 10), "{}", xvsd.log());
        drop(xvsd);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
