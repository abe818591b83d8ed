//! `xvsctl capture` end to end: two pods ping each other through xvsd (two
//! workers, one serving each pod, so replies reach pod1's port through the
//! hand-off), a capture of pod1's port is read back by tshark, and bad
//! captures get clear errors: an unknown port, a relative path, a count out
//! of range. A capture that sees nothing ends at its timeout; one that a
//! reconfiguration cuts short says so.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{ping_eventually, raw_requests, root_or_skip, routed_pods, run, sh, Topology};

const POD1: (&str, &str, &str, &str) = ("xcap-pod1", "xcap1", "10.244.1.91", "02:00:00:0e:00:01");
const POD2: (&str, &str, &str, &str) = ("xcap-pod2", "xcap2", "10.244.1.92", "02:00:00:0e:00:02");

use common::output_text as text;

/// A background process, killed when dropped.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// pod1 pings pod2 five times a second for `secs` seconds.
fn pings(secs: u32) -> Background {
    let child = Command::new("ip")
        .args(["netns", "exec", POD1.0, "ping", "-q", "-i", "0.2", "-w"])
        .arg(secs.to_string())
        .arg(POD2.2)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning ping");
    Background(child)
}

/// (ip.src, ip.dst, icmp.type) of each frame of `file`, as tshark reads it.
fn tshark_fields(file: &Path) -> Vec<(String, String, String)> {
    let out = run(&format!(
        "tshark -r {} -T fields -e ip.src -e ip.dst -e icmp.type 2>/dev/null",
        file.display()
    ));
    out.lines()
        .map(|l| {
            let mut f = l.split('\t').map(str::to_string);
            let mut next = || f.next().unwrap_or_default();
            (next(), next(), next())
        })
        .collect()
}

#[test]
fn capture_writes_a_pcap_tshark_reads() {
    let Some(_serial) = root_or_skip("capture_writes_a_pcap_tshark_reads") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("xvs-capture-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("xvsd.sock").display().to_string();
    let mut topo = Topology::default();
    let xvsd = routed_pods(
        &mut topo,
        &[POD1, POD2],
        &["--control-socket", &socket, "--cores", "0,1"],
    );
    let xvsctl = common::bin_path("xvsctl");
    let ctl = |args: &str| sh(&format!("{} --socket {socket} {args}", xvsctl.display()));
    assert!(ping_eventually(POD1.0, POD2.2, 5), "{}", xvsd.log());
    let serves = |port: &str, worker: &str| {
        xvsd.log()
            .lines()
            .any(|l| l.contains(&format!("port=\"{port}\"")) && l.contains(worker))
    };
    assert!(
        serves(POD1.1, "workers=[0]") && serves(POD2.1, "workers=[1]"),
        "one worker per pod, so replies cross the hand-off:\n{}",
        xvsd.log()
    );

    // Ten packets of pod1's port while it pings pod2: requests in, replies
    // out, as tshark reads them.
    let pcap = dir.join("pod1.pcap");
    let pinging = pings(30);
    let out = ctl(&format!("capture {} -w {} -c 10", POD1.1, pcap.display()));
    assert!(out.status.success(), "{}\n{}", text(&out), xvsd.log());
    assert_eq!(
        text(&out),
        format!("10 packets captured on {} to {}\n", POD1.1, pcap.display())
    );
    let frames = tshark_fields(&pcap);
    assert_eq!(frames.len(), 10, "{frames:?}");
    let request = (POD1.2.to_string(), POD2.2.to_string(), "8".to_string());
    let reply = (POD2.2.to_string(), POD1.2.to_string(), "0".to_string());
    for f in &frames {
        // A fresh pod's ARP or IPv6 (MLD reports, router solicitations)
        // may slip in: no IPv4 fields.
        assert!(
            *f == request || *f == reply || f.0.is_empty(),
            "unexpected frame {f:?} in {frames:?}"
        );
    }
    assert!(
        frames.contains(&request) && frames.contains(&reply),
        "both directions: {frames:?}"
    );

    // -o json: the raw result; a relative FILE is taken from xvsctl's
    // directory.
    let out = sh(&format!(
        "cd {} && {} --socket {socket} -o json capture {} -w rel.pcap -c 2",
        dir.display(),
        xvsctl.display(),
        POD1.1
    ));
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["packets"], 2, "{v}");
    assert_eq!(v["dropped"], 0, "{v}");
    assert_eq!(v["interrupted"], false, "{v}");
    assert_eq!(v["path"], dir.join("rel.pcap").display().to_string());
    assert_eq!(tshark_fields(&dir.join("rel.pcap")).len(), 2);

    // A reconfiguration ends a capture early, and it says so.
    let long = Command::new(&xvsctl)
        .args(["--socket", &socket, "capture", POD1.1, "-w"])
        .arg(dir.join("cut.pcap"))
        .args(["-c", "100000", "--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning xvsctl");
    std::thread::sleep(Duration::from_millis(1500));
    let busy = ctl(&format!(
        "capture {} -w {}/x.pcap -c 1",
        POD2.1,
        dir.display()
    ));
    assert!(
        text(&busy).contains("conflict") && text(&busy).contains("already running"),
        "one capture at a time: {}",
        text(&busy)
    );
    let route = ctl(&format!(
        "route add 10.9.0.0/16 --port {} --next-hop-mac {}",
        POD2.1, POD2.3
    ));
    assert!(route.status.success(), "{}", text(&route));
    let cut = long.wait_with_output().expect("xvsctl capture");
    assert!(cut.status.success(), "{}", text(&cut));
    assert!(
        text(&cut).contains("capture ended early: the switch was reconfigured"),
        "{}",
        text(&cut)
    );
    drop(pinging);

    // Nothing to see: the capture ends at its timeout with what it has.
    // (A pod's kernel may still send an IPv6 router solicitation in that
    // second, seen once here: not IPv4, so no fields; no ping is left.)
    let quiet = ctl(&format!(
        "capture {} -w {} -c 5 --timeout 1",
        POD2.1,
        dir.join("quiet.pcap").display()
    ));
    assert!(quiet.status.success(), "{}", text(&quiet));
    let frames = tshark_fields(&dir.join("quiet.pcap"));
    assert!(
        frames.len() < 5 && frames.iter().all(|f| f.0.is_empty()),
        "{}{frames:?}",
        text(&quiet)
    );
    assert!(
        text(&quiet).starts_with(&format!("{} packet", frames.len()))
            && text(&quiet).contains(&format!("captured on {}", POD2.1)),
        "{}",
        text(&quiet)
    );

    // Bad captures: clear errors, no file.
    let unknown = ctl(&format!(
        "capture xcap-none -w {}/n.pcap -c 1",
        dir.display()
    ));
    assert!(
        !unknown.status.success()
            && text(&unknown).contains("not-found")
            && text(&unknown).contains("no port xcap-none"),
        "{}",
        text(&unknown)
    );
    let replies = raw_requests(
        Path::new(&socket),
        format!(
            "{{\"version\":1,\"id\":1,\"method\":\"capture\",\"params\":{{\"port\":\"{p}\",\"count\":1,\"path\":\"rel.pcap\"}}}}\n\
             {{\"version\":1,\"id\":2,\"method\":\"capture\",\"params\":{{\"port\":\"{p}\",\"count\":0,\"path\":\"{d}/z.pcap\"}}}}\n\
             {{\"version\":1,\"id\":3,\"method\":\"capture\",\"params\":{{\"port\":\"{p}\",\"count\":1,\"path\":\"/xvs-no-such-dir/z.pcap\"}}}}\n",
            p = POD1.1,
            d = dir.display()
        )
        .as_bytes(),
    );
    assert_eq!(replies[0]["error"]["code"], "invalid-params", "{replies:?}");
    let message = replies[0]["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("must be absolute"), "{message}");
    assert_eq!(replies[1]["error"]["code"], "invalid-params", "{replies:?}");
    assert_eq!(replies[2]["error"]["code"], "invalid-params", "{replies:?}");
    let mut left: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    left.sort();
    let expected: Vec<PathBuf> = ["cut.pcap", "pod1.pcap", "quiet.pcap", "rel.pcap"]
        .iter()
        .map(|n| dir.join(n))
        .collect();
    assert_eq!(left, expected, "no file for a refused capture");

    let log = xvsd.terminate();
    assert!(log.contains("capture done"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
