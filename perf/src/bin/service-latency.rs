//! service-latency: how long a Service change takes to reach the datapath
//! with 1k, 10k and 50k Services already programmed, xvsd against
//! kube-proxy's nftables mode (`nft -f`) in the same run (issue #8, 5a;
//! root).
//!
//! ```sh
//! service-latency --services 1000,10000,50000 --ops 200 \
//!     --out target/bench-services/service-latency.json
//! ```
//!
//! For each scale N the bench programs N Services both ways, then times K
//! (`--ops`) Service adds and K endpoint adds on each, the two peers
//! alternating which goes first from change to change so that machine
//! noise hits both alike.
//!
//! - **xvsd** starts from a state directory holding the N Services (a
//!   `state.json` written by the bench: the control protocol's 1 MiB line
//!   could not carry 50,000), with no ports, one worker. How long it takes
//!   to be ready is reported. A sample is the round trip of one
//!   `service-add` or `endpoint-add` on the control socket through the
//!   blocking client: xvsd answers once every worker runs the new snapshot
//!   and the change is synced to its journal, so the answer is the moment
//!   the datapath uses the change (and would still after a crash).
//! - **nft** gets the kube-proxy `nftables` ruleset for the same N Services
//!   (the shape of `bench::dut`'s `KUBE_PROXY_NFT`: a `service-ips`
//!   verdict map, a chain per Service picking an endpoint with `numgen`, a
//!   chain per endpoint doing the DNAT) in a fresh network namespace; the
//!   initial load is timed and reported. It is made of `nft -f` runs of
//!   `--nft-chunk` Services each, where kube-proxy's first sync is one
//!   transaction: the kernel's cost of one transaction grows with the
//!   square of its size (`perf` shows it binding each Service's anonymous
//!   `numgen` map, `__nft_set_trans_bind`), so 20k Services took twice as
//!   long in one file as in files of 2,500, and 50k in one file would
//!   take most of ten minutes. The load grows with the square of N even
//!   so (each new anonymous map costs in proportion to the table's sets,
//!   `nf_tables_newset`): about five minutes at 50k. A sample is one whole
//!   `nft -f FILE` process applying the change as kube-proxy's partial
//!   sync writes it: a new Service adds its endpoint chains, its chain and
//!   its map element; a new endpoint adds its chain, flushes the Service's
//!   chain and writes its rules again with the longer `numgen` map. The
//!   `nft` processes are started by a shell already inside the namespace,
//!   so `ip netns exec` is not in the samples (kube-proxy runs in the host
//!   namespace).
//!
//! When `nft` is slow at a scale, fewer `nft` changes than K are made (as
//! many as `--nft-budget` seconds allow per kind after the first five,
//! spread over the K xvsd changes); the table says how many each peer
//! made. Both peers are checked afterwards: xvsd lists every Service and
//! its datapath the added endpoint, nft's `service-ips` map every
//! Service.
//!
//! It prints p50/p99/mean per scale, peer and change with the ratio
//! xvsd / nft, and writes every sample as JSON. Whatever happens (a
//! failure, Ctrl-C), xvsd is stopped and the namespace and the temporary
//! directory are removed.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};
use xvs_control::client::Client;
use xvs_perf::bench::services::{chain_hash, kube_proxy_base};
use xvs_perf::bench::{run_command, BenchError};
use xvs_perf::report::cpu_model;
use xvs_perf::report::Stats;

#[derive(Parser)]
#[command(
    name = "service-latency",
    version,
    about = "Service update latency of xvsd vs kube-proxy's nftables ruleset (nft -f)"
)]
struct Cli {
    /// Services programmed before the timed changes; one run per value.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,50000")]
    services: Vec<usize>,
    /// Service adds, and endpoint adds, timed per scale and peer.
    #[arg(long, default_value_t = 200)]
    ops: usize,
    /// Seconds of `nft -f` samples allowed per scale and kind of change;
    /// past it, fewer nft changes than `--ops` are made.
    #[arg(long, default_value_t = 30.0)]
    nft_budget: f64,
    /// Services per `nft -f` loading the initial ruleset (0: all in one).
    /// One transaction costs the kernel time in the square of its size.
    #[arg(long, default_value_t = 2500)]
    nft_chunk: usize,
    /// Where the JSON report goes.
    #[arg(long, default_value = "target/bench-services/service-latency.json")]
    out: PathBuf,
    /// Where xvsd is (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The CPU of xvsd's one worker (default: the last one).
    #[arg(long)]
    core: Option<usize>,
}

/// The two peers, in report order.
const PEERS: [Peer; 2] = [Peer::Xvsd, Peer::Nft];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Peer {
    Xvsd,
    Nft,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Xvsd => "xvsd",
            Peer::Nft => "nft",
        }
    }
}

/// The timed changes, in report order.
const CHANGES: [Change; 2] = [Change::ServiceAdd, Change::EndpointAdd];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    ServiceAdd,
    EndpointAdd,
}

impl Change {
    fn name(self) -> &'static str {
        match self {
            Change::ServiceAdd => "service-add",
            Change::EndpointAdd => "endpoint-add",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Change::ServiceAdd => "service_add",
            Change::EndpointAdd => "endpoint_add",
        }
    }
}

const NODE_IP: &str = "192.168.79.1";
const POD_CIDR: &str = "10.244.1.0/24";
/// kube-proxy's `--cluster-cidr`: traffic to a Service from outside it is
/// marked for masquerade.
const CLUSTER_CIDR: &str = "10.244.0.0/16";
const NAMESPACE: &str = "bench";
const PORT: u16 = 80;
const TARGET_PORT: u16 = 8080;
/// Service `i`'s ClusterIP is `10.96.0.0 + (i + 1) * CLUSTER_IP_STRIDE`,
/// spread over the ClusterIP range `10.96.0.0/12`.
const CLUSTER_IP_STRIDE: u32 = 4;
const CLUSTER_IP_BASE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 0);
const CLUSTER_IP_RANGE: u32 = 1 << 20;
/// Changes made by both peers before `--nft-budget` decides how many more
/// `nft` makes.
const NFT_PROBE: usize = 5;
/// How long xvsd may take to load its Services and be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(600);
/// xvsd log lines kept for an error report.
const LOG_TAIL: usize = 40;

/// When the run started, for the progress lines.
static START: OnceLock<Instant> = OnceLock::new();

/// A progress line on stderr, with the seconds since the start.
fn progress(line: &str) {
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[{t:5.0} s] {line}");
}

fn main() -> ExitCode {
    START.get_or_init(Instant::now);
    let cli = Cli::parse();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            eprintln!("service-latency: {e}");
            return ExitCode::FAILURE;
        }
    }
    match bench(&cli, &stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("service-latency: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Service `i` of the bench, as both peers program it.
struct Svc {
    i: usize,
    cluster_ip: Ipv4Addr,
    endpoints: Vec<Ipv4Addr>,
}

impl Svc {
    /// Service `i` with `endpoints` endpoints.
    fn new(i: usize, endpoints: usize) -> Svc {
        Svc {
            i,
            cluster_ip: cluster_ip(i),
            endpoints: (0..endpoints).map(|e| endpoint_ip(i, e)).collect(),
        }
    }

    /// A preloaded Service: two or three endpoints.
    fn preloaded(i: usize) -> Svc {
        Svc::new(i, 2 + i % 2)
    }

    fn name(&self) -> String {
        format!("{NAMESPACE}/svc-{}", self.i)
    }

    /// The `ServiceSpec` xvsd is given.
    fn spec(&self) -> Value {
        json!({
            "name": self.name(),
            "cluster_ip": self.cluster_ip,
            "ports": [{ "name": "http", "protocol": "TCP", "port": PORT, "target_port": TARGET_PORT }],
            "endpoints": self.endpoints.iter().map(|ip| json!({ "ip": ip })).collect::<Vec<_>>(),
        })
    }

    /// kube-proxy's service port name, `ns/name/proto/port-name`.
    fn port_name(&self) -> String {
        format!("{}/tcp/http", self.name())
    }

    fn chain(&self) -> String {
        let port = self.port_name();
        format!("service-{}-{port}", chain_hash(&port))
    }

    fn endpoint_chain(&self, ip: Ipv4Addr) -> String {
        let id = format!("{}__{ip}/{TARGET_PORT}", self.port_name());
        format!("endpoint-{}-{id}", chain_hash(&id))
    }

    /// `nft` commands writing the Service's chain and endpoint chain
    /// `only` (all of them if `None`), `flush`ing them first as a partial
    /// sync does, and, for a new Service, its `service-ips` element.
    fn nft(&self, out: &mut String, only: Option<Ipv4Addr>, flush: bool, element: bool) {
        for &ip in &self.endpoints {
            if only.is_some_and(|o| o != ip) {
                continue;
            }
            let chain = self.endpoint_chain(ip);
            chain_head(out, &chain, flush, true);
            let _ = writeln!(
                out,
                "add rule ip kube-proxy {chain} ip saddr {ip} jump mark-for-masquerade\n\
                 add rule ip kube-proxy {chain} meta l4proto tcp dnat to {ip}:{TARGET_PORT}"
            );
        }
        // An existing Service's chain is only flushed and written again.
        let chain = self.chain();
        chain_head(out, &chain, flush, only.is_none());
        let picks: Vec<String> = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(k, &ip)| format!("{k} : goto {}", self.endpoint_chain(ip)))
            .collect();
        let _ = writeln!(
            out,
            "add rule ip kube-proxy {chain} ip daddr {} tcp dport {PORT} ip saddr != {CLUSTER_CIDR} \
             jump mark-for-masquerade\n\
             add rule ip kube-proxy {chain} numgen random mod {} vmap {{ {} }}",
            self.cluster_ip,
            self.endpoints.len(),
            picks.join(", ")
        );
        if element {
            let _ = writeln!(
                out,
                "add element ip kube-proxy service-ips {{ {} . tcp . {PORT} : goto {chain} }}",
                self.cluster_ip
            );
        }
    }
}

/// `add chain` (if `add`) and `flush chain` (if `flush`) of `chain`.
fn chain_head(out: &mut String, chain: &str, flush: bool, add: bool) {
    if add {
        let _ = writeln!(out, "add chain ip kube-proxy {chain}");
    }
    if flush {
        let _ = writeln!(out, "flush chain ip kube-proxy {chain}");
    }
}

fn cluster_ip(i: usize) -> Ipv4Addr {
    // bench() checks that every index used fits the range.
    let i = u32::try_from(i).unwrap_or(u32::MAX / CLUSTER_IP_STRIDE - 1);
    Ipv4Addr::from(u32::from(CLUSTER_IP_BASE) + (i + 1) * CLUSTER_IP_STRIDE)
}

/// Endpoint `e` of Service `i`: a pod address on this node (none need
/// exist), distinct within a Service for `e` < 80.
fn endpoint_ip(i: usize, e: usize) -> Ipv4Addr {
    let host = u8::try_from(10 + (3 * i + e) % 240).unwrap_or(10);
    Ipv4Addr::new(10, 244, 1, host)
}

/// Which Service the `k`th endpoint add of `ops` goes to, spread over the
/// `n` preloaded ones.
fn endpoint_target(k: usize, ops: usize, n: usize) -> usize {
    k * n / ops.max(1)
}

/// xvsd with its Services loaded, talked to through its control socket.
struct Xvsd {
    child: Child,
    client: Client,
    /// The last lines it logged.
    log: Arc<Mutex<VecDeque<String>>>,
    startup: Duration,
}

impl Xvsd {
    /// Starts xvsd on `dir` (its state directory, holding `state.json`)
    /// and waits until it serves.
    fn start(xvsd: &Path, dir: &Path, core: usize) -> Result<Xvsd, BenchError> {
        let socket = dir.join("xvsd.sock");
        let started = Instant::now();
        let mut child = Command::new(xvsd)
            .arg("--state-dir")
            .arg(dir)
            .arg("--control-socket")
            .arg(&socket)
            .args(["--node-ip", NODE_IP, "--pod-cidr", POD_CIDR])
            .args(["--cores", &core.to_string()])
            .env("XVS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take();
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        let tail = log.clone();
        // Drains xvsd's log for as long as it runs (it logs every change;
        // a full pipe would stall it).
        std::thread::spawn(move || {
            let Some(stderr) = stderr else { return };
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("ready:") {
                    let _ = tx.send(true);
                }
                if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("  xvsd said: {line}");
                }
                let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
                if tail.len() == LOG_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            let _ = tx.send(false);
        });
        let ready = rx.recv_timeout(READY_TIMEOUT);
        let startup = started.elapsed();
        let client = match ready {
            Ok(true) => Client::connect(&socket).map_err(|e| BenchError::Dut(e.to_string())),
            Ok(false) => Err(BenchError::Dut("xvsd exited before it was ready".into())),
            Err(_) => Err(BenchError::Dut(format!(
                "xvsd was not ready in {} s",
                READY_TIMEOUT.as_secs()
            ))),
        };
        let mut xvsd = match client {
            Ok(client) => Xvsd {
                child,
                client,
                log,
                startup,
            },
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                // Let the reader take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return Err(BenchError::Dut(format!(
                    "{e}; its log:\n{}",
                    log_text(&log)
                )));
            }
        };
        xvsd.check_running()?;
        Ok(xvsd)
    }

    /// Fails when xvsd has exited.
    fn check_running(&mut self) -> Result<(), BenchError> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(BenchError::Dut(format!(
                "xvsd exited ({status}); its log:\n{}",
                log_text(&self.log)
            )));
        }
        Ok(())
    }

    /// Calls `method`; its result, or an error with xvsd's last log lines.
    fn call(&mut self, method: &str, params: Value) -> Result<Value, BenchError> {
        self.client.call(method, params).map_err(|e| {
            BenchError::Dut(format!(
                "xvsd {method}: {e}; its last log lines:\n{}",
                log_text(&self.log)
            ))
        })
    }

    /// Makes a change: its round-trip time. An answer that reports no
    /// change is an error (the bench only makes real ones).
    fn timed(&mut self, method: &str, params: Value) -> Result<Duration, BenchError> {
        let start = Instant::now();
        let result = self.call(method, params)?;
        let took = start.elapsed();
        if result["changes"].as_array().is_none_or(Vec::is_empty) {
            return Err(BenchError::Dut(format!(
                "xvsd answered {method} without a change: {result}"
            )));
        }
        Ok(took)
    }

    /// How many Services of the bench xvsd has.
    fn service_count(&mut self) -> Result<u64, BenchError> {
        let list = self.call("service-list", json!({ "name": format!("{NAMESPACE}/") }))?;
        list["total"]
            .as_u64()
            .ok_or_else(|| BenchError::Dut(format!("service-list without a total: {list}")))
    }

    /// The usable endpoints the datapath has for Service `svc`.
    fn usable_endpoints(&mut self, svc: &Svc) -> Result<u64, BenchError> {
        let list = self.call("service-list", json!({ "name": svc.name() }))?;
        list["services"][0]["usable_endpoints"]
            .as_u64()
            .ok_or_else(|| BenchError::Dut(format!("service-list {}: {list}", svc.name())))
    }
}

impl Drop for Xvsd {
    fn drop(&mut self) {
        let _ = run_command(&format!("kill -TERM {}", self.child.id()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_text(log: &Mutex<VecDeque<String>>) -> String {
    let log = log.lock().unwrap_or_else(PoisonError::into_inner);
    log.iter().cloned().collect::<Vec<_>>().join("\n")
}

/// A network namespace with kube-proxy's table and a shell in it that
/// runs `nft -f FILE` for each file name it reads, answering the exit code.
struct NftNs {
    name: String,
    shell: Option<Child>,
    input: Option<ChildStdin>,
    output: Option<BufReader<ChildStdout>>,
}

impl NftNs {
    fn create(name: &str) -> Result<NftNs, BenchError> {
        let _ = run_command(&format!("ip netns del {name} 2>/dev/null"));
        run_command(&format!("ip netns add {name}"))?;
        let mut ns = NftNs {
            name: name.to_string(),
            shell: None,
            input: None,
            output: None,
        };
        let mut shell = Command::new("ip")
            .args(["netns", "exec", name, "sh", "-c"])
            .arg(r#"while IFS= read -r f; do nft -f "$f" >"$f.log" 2>&1; echo $?; done"#)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        ns.input = shell.stdin.take();
        ns.output = shell.stdout.take().map(BufReader::new);
        ns.shell = Some(shell);
        Ok(ns)
    }

    /// Runs `nft -f file` in the namespace: its wall time.
    fn apply(&mut self, file: &Path) -> Result<Duration, BenchError> {
        let (Some(input), Some(output)) = (&mut self.input, &mut self.output) else {
            return Err(BenchError::Dut("the nft shell is gone".into()));
        };
        let mut line = String::new();
        let start = Instant::now();
        input.write_all(format!("{}\n", file.display()).as_bytes())?;
        input.flush()?;
        output.read_line(&mut line)?;
        let took = start.elapsed();
        if line.trim() != "0" {
            let mut log = file.as_os_str().to_owned();
            log.push(".log");
            let why = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(BenchError::Command {
                cmd: format!("nft -f {} (in netns {})", file.display(), self.name),
                output: if line.is_empty() {
                    "the shell running nft exited".into()
                } else {
                    format!("exit {}: {}", line.trim(), why.trim())
                },
            });
        }
        Ok(took)
    }

    /// How many Services the `service-ips` map sends to a chain. (Listing
    /// the map takes a second at 50k Services; `nft list chain` or
    /// `nft get element` take minutes there.)
    fn service_count(&self) -> Result<usize, BenchError> {
        let map = run_command(&format!(
            "ip netns exec {} nft list map ip kube-proxy service-ips",
            self.name
        ))?;
        Ok(map.matches(": goto service-").count())
    }
}

impl Drop for NftNs {
    fn drop(&mut self) {
        // End of input ends the shell.
        self.input = None;
        if let Some(mut shell) = self.shell.take() {
            let _ = shell.wait();
        }
        let _ = run_command(&format!("ip netns del {}", self.name));
    }
}

/// The directory of one scale's files; removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One scale's measurements.
struct ScaleResult {
    services: usize,
    xvsd_startup: Duration,
    state_bytes: usize,
    nft_load: Duration,
    ruleset_files: usize,
    ruleset_bytes: usize,
    /// samples[peer][change], seconds.
    samples: [[Vec<f64>; 2]; 2],
    /// The nft changes made per kind, when fewer than `--ops`.
    nft_reduced: [Option<usize>; 2],
}

fn bench(cli: &Cli, stop: &AtomicBool) -> Result<(), BenchError> {
    if run_command("id -u")?.trim() != "0" {
        return Err(BenchError::Dut(
            "needs root (xvsd, network namespaces)".into(),
        ));
    }
    if cli.ops == 0 || cli.services.iter().any(|&n| n < cli.ops) {
        return Err(BenchError::Dut(
            "--ops must be at least 1 and no --services value below it \
             (each endpoint add goes to another Service)"
                .into(),
        ));
    }
    if !(cli.nft_budget > 0.0 && cli.nft_budget.is_finite()) {
        return Err(BenchError::Dut(
            "--nft-budget must be a positive number of seconds".into(),
        ));
    }
    let most = cli.services.iter().max().copied().unwrap_or(0) + cli.ops;
    let room = usize::try_from(CLUSTER_IP_RANGE / CLUSTER_IP_STRIDE - 1).unwrap_or(usize::MAX);
    if most > room {
        return Err(BenchError::Dut(format!(
            "at most {room} Services (with --ops) fit the ClusterIP range 10.96.0.0/12"
        )));
    }
    let bin_dir = match &cli.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    let xvsd = bin_dir.join("xvsd");
    if !xvsd.exists() {
        return Err(BenchError::Dut(format!(
            "xvsd is not in {} (cargo build --release --workspace --bins)",
            bin_dir.display()
        )));
    }
    if run_command("command -v nft").is_err() {
        return Err(BenchError::Dut(
            "nft is missing (run scripts/setup-deps.sh perf as root)".into(),
        ));
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let core = cli.core.unwrap_or(cpus - 1);

    let run_start = Instant::now();
    let mut results = Vec::new();
    let mut failed = None;
    for (s, &n) in cli.services.iter().enumerate() {
        match scale(cli, &xvsd, core, n, s % 2 == 1, stop) {
            Ok(r) => results.push(r),
            Err(e) => {
                failed = Some(format!("{n} Services: {e}"));
                break;
            }
        }
    }
    let run_time = run_start.elapsed();
    // The scales done are reported even when a later one failed.
    if !results.is_empty() {
        report(cli, &results, core, run_time, failed.as_deref())?;
    }
    match failed {
        Some(e) => Err(BenchError::Dut(e)),
        None => Ok(()),
    }
}

/// Programs `n` Services both ways and times the changes.
fn scale(
    cli: &Cli,
    xvsd_bin: &Path,
    core: usize,
    n: usize,
    nft_first: bool,
    stop: &AtomicBool,
) -> Result<ScaleResult, BenchError> {
    let interrupted = || -> Result<(), BenchError> {
        if stop.load(Ordering::Relaxed) {
            return Err(BenchError::Dut("interrupted; cleaned up".into()));
        }
        Ok(())
    };
    let pid = std::process::id();
    let dir = TempDir(std::env::temp_dir().join(format!("xvs-service-latency-{pid}-{n}")));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(dir.0.join("xvsd"))?;
    std::fs::create_dir_all(dir.0.join("nft"))?;

    let state = json!({
        "node": { "node_ip": NODE_IP, "pod_cidr": POD_CIDR },
        "services": (0..n).map(|i| Svc::preloaded(i).spec()).collect::<Vec<_>>(),
    });
    let state = serde_json::to_vec(&state)?;
    std::fs::write(dir.0.join("xvsd/state.json"), &state)?;
    // The table, then the Services in files of `--nft-chunk`.
    let chunk = if cli.nft_chunk == 0 { n } else { cli.nft_chunk };
    let mut ruleset_files = Vec::new();
    let mut ruleset_bytes = 0;
    // The table without Services; they follow as `add` commands, the
    // way kube-proxy's own syncs write them.
    let mut text = kube_proxy_base();
    for i in 0..n {
        Svc::preloaded(i).nft(&mut text, None, false, true);
        if (i + 1) % chunk == 0 || i + 1 == n {
            let file = dir
                .0
                .join(format!("nft/ruleset-{}.nft", ruleset_files.len()));
            std::fs::write(&file, &text)?;
            ruleset_bytes += text.len();
            ruleset_files.push(file);
            text.clear();
        }
    }

    progress(&format!("{n} Services: starting xvsd and loading nft"));
    let mut xvsd = None;
    let mut nft = None;
    let mut nft_load = Duration::ZERO;
    for peer in if nft_first {
        [Peer::Nft, Peer::Xvsd]
    } else {
        PEERS
    } {
        interrupted()?;
        match peer {
            Peer::Xvsd => xvsd = Some(Xvsd::start(xvsd_bin, &dir.0.join("xvsd"), core)?),
            Peer::Nft => {
                let mut ns = NftNs::create(&format!("xsl-{pid}"))?;
                for file in &ruleset_files {
                    interrupted()?;
                    nft_load += ns.apply(file)?;
                }
                nft = Some(ns);
            }
        }
    }
    let (Some(mut xvsd), Some(mut nft)) = (xvsd, nft) else {
        return Err(BenchError::Dut("a peer did not start".into()));
    };
    let loaded = xvsd.service_count()?;
    if loaded != u64::try_from(n).unwrap_or(u64::MAX) {
        return Err(BenchError::Dut(format!(
            "xvsd loaded {loaded} Services from its state.json, not {n}"
        )));
    }
    let loaded = nft.service_count()?;
    if loaded != n {
        return Err(BenchError::Dut(format!(
            "nft's service-ips map has {loaded} Services after the load, not {n}"
        )));
    }
    progress(&format!(
        "{n} Services: xvsd ready in {:.2} s; nft -f of the ruleset ({} nft -f) took {:.2} s",
        xvsd.startup.as_secs_f64(),
        ruleset_files.len(),
        nft_load.as_secs_f64()
    ));

    let budget = Duration::from_secs_f64(cli.nft_budget);
    let mut samples = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
    let mut nft_reduced = [None, None];
    for (c, change) in CHANGES.into_iter().enumerate() {
        // The changes, made ready before any is timed.
        let mut requests = Vec::with_capacity(cli.ops);
        let mut files = Vec::with_capacity(cli.ops);
        for k in 0..cli.ops {
            let mut text = String::new();
            let request = match change {
                Change::ServiceAdd => {
                    let svc = Svc::new(n + k, 2);
                    svc.nft(&mut text, None, true, true);
                    json!({ "service": svc.spec(), "replace": false })
                }
                Change::EndpointAdd => {
                    let old = Svc::preloaded(endpoint_target(k, cli.ops, n));
                    let svc = Svc::new(old.i, old.endpoints.len() + 1);
                    let new = svc.endpoints[old.endpoints.len()];
                    svc.nft(&mut text, Some(new), true, false);
                    json!({ "service": svc.name(), "endpoint": { "ip": new } })
                }
            };
            let file = dir.0.join(format!("nft/{}-{k}.nft", change.name()));
            std::fs::write(&file, text)?;
            requests.push(request);
            files.push(file);
        }

        // nft makes the first NFT_PROBE changes and then, if it is slow,
        // only as many as the budget allows, spread evenly.
        let mut nft_every = 1;
        let mut nft_spent = Duration::ZERO;
        for (k, (request, file)) in requests.into_iter().zip(&files).enumerate() {
            if k == NFT_PROBE && k < cli.ops {
                let mean = nft_spent.as_nanos() / NFT_PROBE as u128;
                let affordable = budget.as_nanos() / mean.max(1);
                let affordable = usize::try_from(affordable).unwrap_or(usize::MAX);
                if affordable < cli.ops {
                    let more = affordable.saturating_sub(k).max(1);
                    nft_every = (cli.ops - k).div_ceil(more);
                }
            }
            let nft_turn = k < NFT_PROBE || (k - NFT_PROBE) % nft_every == 0;
            let order = if k % 2 == 0 {
                PEERS
            } else {
                [PEERS[1], PEERS[0]]
            };
            for peer in order {
                interrupted()?;
                match peer {
                    Peer::Xvsd => {
                        let took = xvsd.timed(change.name(), request.clone())?;
                        samples[0][c].push(took.as_secs_f64());
                    }
                    Peer::Nft if nft_turn => {
                        let took = nft.apply(file)?;
                        nft_spent += took;
                        samples[1][c].push(took.as_secs_f64());
                    }
                    Peer::Nft => {}
                }
            }
        }
        if samples[1][c].len() < cli.ops {
            nft_reduced[c] = Some(samples[1][c].len());
        }
        progress(&format!(
            "{n} Services: {} done ({} xvsd, {} nft)",
            change.name(),
            samples[0][c].len(),
            samples[1][c].len()
        ));
    }

    // The changes are there: xvsd has every Service and the datapath the
    // longer endpoint list; nft the last Service's chain.
    let want = u64::try_from(n + cli.ops).unwrap_or(u64::MAX);
    let have = xvsd.service_count()?;
    if have != want {
        return Err(BenchError::Dut(format!(
            "xvsd has {have} Services after the adds, not {want}"
        )));
    }
    let target = Svc::preloaded(endpoint_target(cli.ops - 1, cli.ops, n));
    let usable = xvsd.usable_endpoints(&target)?;
    if usable != u64::try_from(target.endpoints.len() + 1).unwrap_or(0) {
        return Err(BenchError::Dut(format!(
            "xvsd's datapath has {usable} usable endpoints for {} after the endpoint add, \
             not {}",
            target.name(),
            target.endpoints.len() + 1
        )));
    }
    let want = n + samples[1][0].len();
    let have = nft.service_count()?;
    if have != want {
        return Err(BenchError::Dut(format!(
            "nft's service-ips map has {have} Services after the adds, not {want}"
        )));
    }

    Ok(ScaleResult {
        services: n,
        xvsd_startup: xvsd.startup,
        state_bytes: state.len(),
        nft_load,
        ruleset_files: ruleset_files.len(),
        ruleset_bytes,
        samples,
        nft_reduced,
    })
}

fn report(
    cli: &Cli,
    results: &[ScaleResult],
    core: usize,
    run_time: Duration,
    failed: Option<&str>,
) -> Result<(), BenchError> {
    let kernel = run_command("uname -r").unwrap_or_default();
    let nft_version = run_command("nft --version").unwrap_or_default();
    let fs = run_command(&format!(
        "df --output=fstype {} | tail -n 1",
        std::env::temp_dir().display()
    ))
    .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "Machine: {} ({cpus} CPUs), kernel {}, {}",
        cpu_model(),
        kernel.trim(),
        nft_version.trim()
    );
    println!(
        "Per scale: {} Service adds then {} endpoint adds, xvsd (control-socket round trip, \
         one worker on CPU {core}, journal on {}) and nft -f alternating; ms per change.\n",
        cli.ops,
        cli.ops,
        fs.trim()
    );
    println!(
        "Programming N Services: xvsd from its state.json (start to ready), nft -f of the \
         ruleset in files of {} Services (one file: one transaction).\n",
        if cli.nft_chunk == 0 {
            "all".to_string()
        } else {
            cli.nft_chunk.to_string()
        }
    );
    println!(
        "| Services | xvsd start to ready s | state.json MB | nft -f ruleset s | nft files | ruleset MB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for r in results {
        println!(
            "| {} | {:.2} | {:.1} | {:.2} | {} | {:.1} |",
            r.services,
            r.xvsd_startup.as_secs_f64(),
            r.state_bytes as f64 / 1e6,
            r.nft_load.as_secs_f64(),
            r.ruleset_files,
            r.ruleset_bytes as f64 / 1e6
        );
    }
    println!();
    println!("| Services | peer | change | n | p50 ms | p99 ms | mean ms |");
    println!("|---:|---|---|---:|---:|---:|---:|");
    let mut scales = Vec::new();
    let mut ratio_lines = Vec::new();
    for r in results {
        let mut peers = serde_json::Map::new();
        let mut stats = [[Stats::default(); 2]; 2];
        for (p, peer) in PEERS.into_iter().enumerate() {
            let mut changes = serde_json::Map::new();
            for (c, change) in CHANGES.into_iter().enumerate() {
                let s = Stats::of(&r.samples[p][c]);
                stats[p][c] = s;
                println!(
                    "| {} | {} | {} | {} | {:.2} | {:.2} | {:.2} |",
                    r.services,
                    peer.name(),
                    change.name(),
                    r.samples[p][c].len(),
                    s.p50 * 1e3,
                    s.p99 * 1e3,
                    s.mean * 1e3
                );
                changes.insert(
                    change.key().to_string(),
                    json!({
                        "n": r.samples[p][c].len(),
                        "p50_ms": s.p50 * 1e3, "p99_ms": s.p99 * 1e3, "mean_ms": s.mean * 1e3,
                        "samples_ms": r.samples[p][c].iter().map(|x| x * 1e3).collect::<Vec<_>>(),
                    }),
                );
            }
            peers.insert(peer.name().to_string(), Value::Object(changes));
        }
        let mut ratios = serde_json::Map::new();
        for (c, change) in CHANGES.into_iter().enumerate() {
            let (x, t) = (stats[0][c], stats[1][c]);
            ratios.insert(
                change.key().to_string(),
                json!({ "p50": x.p50 / t.p50, "p99": x.p99 / t.p99, "mean": x.mean / t.mean }),
            );
            ratio_lines.push(format!(
                "{} Services, {}: xvsd / nft = {} at p50, {} at p99, {} mean{}",
                r.services,
                change.name(),
                ratio(x.p50 / t.p50),
                ratio(x.p99 / t.p99),
                ratio(x.mean / t.mean),
                r.nft_reduced[c].map_or(String::new(), |m| format!(
                    " (nft made {m} of {} changes: --nft-budget {} s)",
                    cli.ops, cli.nft_budget
                ))
            ));
        }
        scales.push(json!({
            "services": r.services,
            "xvsd_startup_s": r.xvsd_startup.as_secs_f64(),
            "xvsd_state_json_bytes": r.state_bytes,
            "nft_ruleset_load_s": r.nft_load.as_secs_f64(),
            "nft_ruleset_bytes": r.ruleset_bytes,
            "nft_ruleset_files": r.ruleset_files,
            "nft_changes_reduced_to": {
                "service_add": r.nft_reduced[0], "endpoint_add": r.nft_reduced[1],
            },
            "results": peers,
            "ratio_xvsd_to_nft": ratios,
        }));
    }
    println!();
    for line in &ratio_lines {
        println!("{line}");
    }
    println!("\nrun time {:.0} s", run_time.as_secs_f64());
    if let Some(e) = failed {
        println!("FAILED, so the scales after this one are missing: {e}");
    }
    let report = json!({
        "machine": {
            "cpu": cpu_model(), "cpus": cpus, "kernel": kernel.trim(),
            "nft": nft_version.trim(), "state_dir_fs": fs.trim(),
        },
        "ops": cli.ops,
        "nft_budget_s": cli.nft_budget,
        "nft_chunk_services": cli.nft_chunk,
        "xvsd_core": core,
        "method": "per scale: xvsd started from a state.json of N Services (no ports, one worker) \
                   and kube-proxy's nftables ruleset for the same N Services loaded with nft -f \
                   in a fresh netns; then K service adds and K endpoint adds, the two peers \
                   alternating which goes first. xvsd: round trip of the control-socket request \
                   (answered after every worker swapped the snapshot and the journal was synced). \
                   nft: wall time of one nft -f process applying kube-proxy's partial-sync \
                   change, started by a shell inside the netns",
        "run_time_s": run_time.as_secs_f64(),
        "scales": scales,
        "failed": failed,
    });
    if let Some(parent) = cli.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&cli.out, serde_json::to_vec_pretty(&report)?)?;
    println!("wrote {}", cli.out.display());
    Ok(())
}

/// A ratio as `0.52x`, or as `1/870` when far below one.
fn ratio(r: f64) -> String {
    if r >= 0.1 || r <= 0.0 || !r.is_finite() {
        format!("{r:.2}x")
    } else {
        format!("1/{:.0}", 1.0 / r)
    }
}
