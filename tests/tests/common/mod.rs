//! Network-namespace topologies and an xvsd process, for the end-to-end
//! tests. Everything a test creates is removed when its guard drops, also
//! when the test fails.
//!
//! These tests need root. Outside CI a non-root run skips them with a loud
//! message; under `CI=true` a non-root run fails instead of skipping.

#![allow(dead_code)] // each test binary uses a part

pub mod cni;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One end-to-end test at a time: they share the machine's two cores and
/// XDP attach points.
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the serial lock, or returns `None` (skip) when not root outside CI.
pub fn root_or_skip(test: &str) -> Option<MutexGuard<'static, ()>> {
    let uid = Command::new("id").arg("-u").output().ok();
    let is_root = uid.is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !is_root {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: needs root, and CI=true: refusing to skip");
        }
        eprintln!("\n!!!! SKIPPED {test}: needs root (network namespaces, XDP). Run `make test` as root. !!!!\n");
        return None;
    }
    Some(
        SERIAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}

/// Runs a command; panics with its output if it fails.
pub fn run(cmd: &str) -> String {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("running sh")
}

/// Namespaces and host-side links made by a test, removed on drop.
#[derive(Default)]
pub struct Topology {
    netns: Vec<String>,
    links: Vec<String>,
}

impl Topology {
    pub fn netns(&mut self, name: &str) {
        let _ = sh(&format!("ip netns del {name} 2>/dev/null"));
        run(&format!("ip netns add {name}"));
        run(&format!("ip -n {name} link set lo up"));
        self.netns.push(name.to_string());
    }

    /// A pod: netns `ns` with `eth0` (MAC `mac`, address `ip`/32, routes via
    /// the 169.254.1.1 gateway, checksum offload off), its veth's host end
    /// `host` up in the root namespace.
    pub fn pod(&mut self, ns: &str, host: &str, ip: &str, mac: &str) {
        self.pod_with_queues(ns, host, ip, mac, 1);
    }

    /// A pod whose veth has `queues` queues each way (one per worker lets
    /// every worker serve it).
    pub fn pod_with_queues(&mut self, ns: &str, host: &str, ip: &str, mac: &str, queues: u32) {
        self.netns(ns);
        let _ = sh(&format!("ip link del {host} 2>/dev/null"));
        let q = format!("numtxqueues {queues} numrxqueues {queues}");
        run(&format!(
            "ip link add {host} {q} type veth peer name eth0 netns {ns} {q}"
        ));
        self.links.push(host.to_string());
        run(&format!("ip -n {ns} link set eth0 address {mac}"));
        run(&format!("ip -n {ns} addr add {ip}/32 dev eth0"));
        run(&format!("ip -n {ns} link set eth0 up"));
        run(&format!(
            "ip -n {ns} route add 169.254.1.1 dev eth0 scope link"
        ));
        run(&format!(
            "ip -n {ns} route add default via 169.254.1.1 dev eth0"
        ));
        // A frame whose checksum the sender left to "hardware" would cross
        // AF_XDP unfinished: veth has no offload to finish it.
        run(&format!("ip netns exec {ns} ethtool -K eth0 tx off"));
        run(&format!("ip link set {host} up"));
    }

    /// A host on a plain subnet: netns `ns` with `eth0` at `cidr` (e.g.
    /// 10.99.0.1/24, no gateway, checksum offload off), its veth's host end
    /// `host` up in the root namespace. For bridged ports.
    pub fn host(&mut self, ns: &str, host: &str, cidr: &str) {
        self.netns(ns);
        let _ = sh(&format!("ip link del {host} 2>/dev/null"));
        run(&format!(
            "ip link add {host} type veth peer name eth0 netns {ns}"
        ));
        self.links.push(host.to_string());
        run(&format!("ip -n {ns} addr add {cidr} dev eth0"));
        run(&format!("ip -n {ns} link set eth0 up"));
        run(&format!("ip netns exec {ns} ethtool -K eth0 tx off"));
        run(&format!("ip link set {host} up"));
    }

    /// A link the test made in the root namespace, deleted on drop.
    pub fn link(&mut self, name: &str) {
        self.links.push(name.to_string());
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for l in &self.links {
            let _ = sh(&format!("ip link del {l} 2>/dev/null"));
        }
        for n in &self.netns {
            // Servers a failed test left behind would outlive the netns.
            let _ = sh(&format!("ip netns pids {n} | xargs -r kill -9"));
            let _ = sh(&format!("ip netns del {n} 2>/dev/null"));
        }
    }
}

/// The xvsd binary cargo built beside this test.
pub fn xvsd_path() -> PathBuf {
    bin_path("xvsd")
}

/// A binary of the workspace that cargo built beside this test.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo build --workspace --bins` (make test does)",
        path.display()
    );
    path
}

/// A running xvsd; killed on drop.
pub struct Xvsd {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Xvsd {
    /// Starts xvsd with `args` and waits until it logs "ready". Without a
    /// `--state-dir` in `args` it persists nothing (`--state-dir none`),
    /// so no test leaves state behind for the next.
    pub fn start(args: &[&str]) -> Xvsd {
        let stateless: &[&str] = if args.contains(&"--state-dir") {
            &[]
        } else {
            &["--state-dir", "none"]
        };
        let mut child = Command::new(xvsd_path())
            .args(stateless)
            .args(args)
            .env("XVS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning xvsd");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("ready:") {
                    let _ = ready_tx.send(());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let mut xvsd = Xvsd { child, lines };
        if ready_rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = xvsd.child.kill();
            panic!("xvsd did not become ready:\n{}", xvsd.log());
        }
        xvsd
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// SIGTERM, wait for exit (at most 10 s); returns the log.
    pub fn terminate(mut self) -> String {
        run(&format!("kill -TERM {}", self.child.id()));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for xvsd") {
                std::thread::sleep(Duration::from_millis(100)); // last log lines
                assert!(
                    status.success(),
                    "xvsd exited with {status}:\n{}",
                    self.log()
                );
                return self.log();
            }
            assert!(
                Instant::now() < deadline,
                "xvsd ignored SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// CPU time (user + system, in clock ticks) of each worker thread, in
    /// worker order.
    pub fn worker_cpu_ticks(&self) -> Vec<u64> {
        let dir = format!("/proc/{}/task", self.child.id());
        let mut workers = Vec::new();
        for task in std::fs::read_dir(&dir).expect("task dir").flatten() {
            let path = task.path();
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            let Some(index) = comm.trim().strip_prefix("xvs-worker-") else {
                continue;
            };
            let stat = std::fs::read_to_string(path.join("stat")).expect("stat");
            // Fields after the ")" that ends the command name: state is
            // field 3, utime 14, stime 15.
            let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
            workers.push((index.parse::<usize>().expect("worker index"), ticks));
        }
        assert!(!workers.is_empty(), "no xvs-worker thread in {dir}");
        workers.sort_unstable();
        workers.into_iter().map(|(_, ticks)| ticks).collect()
    }

    /// Asserts that every worker sleeps while nothing arrives: over 2 s, a
    /// busy-polling worker would use 200 ticks (USER_HZ 100).
    pub fn assert_workers_idle(&self) {
        std::thread::sleep(Duration::from_millis(500));
        let before = self.worker_cpu_ticks();
        std::thread::sleep(Duration::from_secs(2));
        let after = self.worker_cpu_ticks();
        for (i, (a, b)) in after.iter().zip(&before).enumerate() {
            let used = a - b;
            assert!(used < 20, "idle worker {i} used {used} ticks of CPU in 2 s");
        }
    }
}

impl Drop for Xvsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ping` from namespace `ns`; true if all `count` replies came back.
pub fn ping(ns: &str, dst: &str, count: u32) -> bool {
    sh(&format!(
        "ip netns exec {ns} ping -c {count} -i 0.2 -W 2 {dst}"
    ))
    .status
    .success()
}

/// Waits up to `secs` for a first ping reply (ARP, first packets).
pub fn ping_eventually(ns: &str, dst: &str, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if ping(ns, dst, 1) {
            return true;
        }
    }
    false
}

/// Runs an iperf3 client in `client_ns` against a one-shot server in
/// `server_ns` at `server_ip`; returns the parsed JSON report.
pub fn iperf3(server_ns: &str, server_ip: &str, client_ns: &str, extra: &str) -> serde_json::Value {
    let port = 5201;
    run(&format!(
        "ip netns exec {server_ns} iperf3 -s -1 -D -B {server_ip} -p {port}"
    ));
    std::thread::sleep(Duration::from_millis(300));
    let out = sh(&format!(
        "ip netns exec {client_ns} timeout 30 iperf3 -c {server_ip} -p {port} -J {extra}"
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("iperf3 output ({e}): {text}"))
}

/// Pods `(netns, host end, ip, mac)` in `topo` and an xvsd routing them
/// (node 192.168.77.1, pod CIDR 10.244.1.0/24), with `extra` flags.
pub fn routed_pods(topo: &mut Topology, pods: &[(&str, &str, &str, &str)], extra: &[&str]) -> Xvsd {
    let mut args: Vec<String> = ["--node-ip", "192.168.77.1", "--pod-cidr", "10.244.1.0/24"]
        .map(String::from)
        .to_vec();
    for (ns, host, ip, mac) in pods {
        topo.pod(ns, host, ip, mac);
        args.push("--pod".into());
        args.push(format!("{host},{ip},{mac}"));
    }
    args.extend(extra.iter().map(|s| (*s).to_string()));
    Xvsd::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Writes `lines` (raw request lines, newline-terminated) on one connection
/// to the control socket at `socket` and reads one JSON reply per line.
pub fn raw_requests(socket: &std::path::Path, lines: &[u8]) -> Vec<serde_json::Value> {
    use std::io::Write;
    let mut conn = std::os::unix::net::UnixStream::connect(socket).expect("connecting");
    conn.write_all(lines).expect("writing requests");
    let n = lines.iter().filter(|&&b| b == b'\n').count();
    BufReader::new(conn)
        .lines()
        .take(n)
        .map(|l| serde_json::from_str(&l.expect("a reply line")).expect("a JSON reply"))
        .collect()
}

/// A command's stdout and stderr, for assertion messages and matching.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The node's own TCP: a listener of this process on `ip` (a port the
/// kernel picks) echoes one line upper-cased to a client in namespace
/// `ns`. Returns the port and what the client read back.
pub fn node_tcp_echo(ns: &str, ip: &str) -> (u16, String) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind(format!("{ip}:0")).expect("listen on the node IP");
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut line = String::new();
        BufReader::new(conn.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        conn.write_all(line.to_uppercase().as_bytes()).unwrap();
    });
    let out = sh(&format!(
        "ip netns exec {ns} timeout 5 bash -c 'exec 3<>/dev/tcp/{ip}/{port}; echo hello >&3; head -1 <&3'"
    ));
    let reply = output_text(&out).trim().to_string();
    if reply == "HELLO" {
        server.join().unwrap();
    }
    (port, reply)
}
