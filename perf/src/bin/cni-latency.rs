//! cni-latency: ADD and DEL latency of xvs-cni against the reference
//! bridge + host-local plugins (Debian's containernetworking-plugins), both
//! driven by cnitool (libcni) in the same run (`make bench`, root).
//!
//! ```sh
//! cni-latency --pods 100 --out target/bench-cni/cni-latency.json
//! ```
//!
//! The bench starts its own xvsd (`--state-dir none`, a private control
//! socket), writes one conflist per plugin into private `NETCONFPATH`
//! directories and makes two network namespaces per pod, one per plugin.
//! It then ADDs every pod, alternating which plugin goes first from pod to
//! pod so that machine noise hits both alike, and DELs them all the same
//! way. Each sample is the wall time of one `cnitool add|del` (fork, exec,
//! libcni, the plugins). It prints p50/p99/mean per plugin and operation
//! with the ratio xvs-cni / reference, and writes every sample as JSON.
//!
//! Whatever happens (a failure, Ctrl-C), the attachments are deleted and
//! the namespaces, the bridge, xvsd and the temp dir are removed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};
use xvs_perf::bench::{run_command, BenchError};
use xvs_perf::report::cpu_model;
use xvs_perf::report::Stats;

#[derive(Parser)]
#[command(
    name = "cni-latency",
    version,
    about = "ADD/DEL latency of xvs-cni vs the reference bridge + host-local plugins"
)]
struct Cli {
    /// Pods attached (and detached) per plugin.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Where the JSON report goes.
    #[arg(long, default_value = "target/bench-cni/cni-latency.json")]
    out: PathBuf,
    /// cnitool, as scripts/setup-deps.sh builds it.
    #[arg(long, default_value = "/usr/local/bin/cnitool")]
    cnitool: PathBuf,
    /// The reference plugins (bridge, host-local).
    #[arg(long, default_value = "/usr/lib/cni")]
    reference_plugins: PathBuf,
    /// Where xvsd and xvs-cni are (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// xvsd's `--pod-ring-size`: with its default (1024) the default UMEM
    /// of one worker holds 29 pods; 256 fits more than 100.
    #[arg(long, default_value_t = 256)]
    pod_ring_size: u32,
}

/// The two plugins, in report order.
const PLUGINS: [Plugin; 2] = [Plugin::Xvs, Plugin::Reference];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Plugin {
    Xvs,
    Reference,
}

impl Plugin {
    fn name(self) -> &'static str {
        match self {
            Plugin::Xvs => "xvs-cni",
            Plugin::Reference => "bridge+host-local",
        }
    }

    /// The CNI network's name (also its conflist's file name).
    fn net(self) -> &'static str {
        match self {
            Plugin::Xvs => "xcbench-xvs",
            Plugin::Reference => "xcbench-ref",
        }
    }

    /// Pod `i`'s namespace.
    fn netns(self, i: usize) -> String {
        match self {
            Plugin::Xvs => format!("xcb-x{i}"),
            Plugin::Reference => format!("xcb-r{i}"),
        }
    }
}

const XVS_CIDR: &str = "10.247.0.0/16";
const REF_CIDR: &str = "10.248.0.0/16";
const BRIDGE: &str = "xcbench0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            eprintln!("cni-latency: {e}");
            return ExitCode::FAILURE;
        }
    }
    match bench(&cli, &stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cni-latency: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Everything the bench made; undone on drop, in reverse order.
struct Setup {
    dir: PathBuf,
    cnitool: PathBuf,
    cni_path: String,
    /// (plugin, pod) attached and not yet deleted.
    attached: Vec<(Plugin, usize)>,
    netns: Vec<String>,
    xvsd: Option<Child>,
}

impl Setup {
    fn cnitool(&self, op: &str, plugin: Plugin, pod: usize) -> Command {
        let mut cmd = Command::new(&self.cnitool);
        cmd.args([
            op,
            plugin.net(),
            &format!("/var/run/netns/{}", plugin.netns(pod)),
        ])
        .env("NETCONFPATH", self.dir.join(plugin.net()))
        .env("CNI_PATH", &self.cni_path)
        .env("CNI_IFNAME", "eth0")
        .stdin(Stdio::null());
        cmd
    }

    /// Runs `cnitool op` for the pod; its wall time, or the error.
    fn timed(&mut self, op: &str, plugin: Plugin, pod: usize) -> Result<Duration, BenchError> {
        let mut cmd = self.cnitool(op, plugin, pod);
        let start = Instant::now();
        let out = cmd.output()?;
        let took = start.elapsed();
        if op == "add" {
            // A failed ADD is to be deleted too.
            self.attached.push((plugin, pod));
        }
        if !out.status.success() {
            return Err(BenchError::Command {
                cmd: format!("cnitool {op} {} {}", plugin.net(), plugin.netns(pod)),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
                .trim()
                .to_string(),
            });
        }
        if op == "add" {
            let result: Value = serde_json::from_slice(&out.stdout)?;
            if result["ips"][0]["address"].as_str().is_none() {
                return Err(BenchError::Dut(format!(
                    "{} ADD gave no address: {result}",
                    plugin.name()
                )));
            }
        } else {
            self.attached.retain(|a| *a != (plugin, pod));
        }
        Ok(took)
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for (plugin, pod) in std::mem::take(&mut self.attached) {
            let _ = self.cnitool("del", plugin, pod).output();
        }
        for ns in &self.netns {
            let _ = run_command(&format!("ip netns del {ns}"));
        }
        let _ = run_command(&format!("ip link del {BRIDGE} 2>/dev/null"));
        if let Some(mut xvsd) = self.xvsd.take() {
            let _ = run_command(&format!("kill -TERM {}", xvsd.id()));
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(xvsd.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = xvsd.kill();
            let _ = xvsd.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bench(cli: &Cli, stop: &AtomicBool) -> Result<(), BenchError> {
    if run_command("id -u")?.trim() != "0" {
        return Err(BenchError::Dut("needs root (network namespaces)".into()));
    }
    if cli.pods == 0 {
        return Err(BenchError::Dut("--pods must be at least 1".into()));
    }
    let bin_dir = match &cli.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    for bin in ["xvsd", "xvs-cni"] {
        if !bin_dir.join(bin).exists() {
            return Err(BenchError::Dut(format!(
                "{bin} is not in {} (cargo build --release --workspace --bins)",
                bin_dir.display()
            )));
        }
    }
    for needed in [
        cli.cnitool.clone(),
        cli.reference_plugins.join("bridge"),
        cli.reference_plugins.join("host-local"),
    ] {
        if !needed.exists() {
            return Err(BenchError::Dut(format!(
                "{} is missing (run scripts/setup-deps.sh as root)",
                needed.display()
            )));
        }
    }
    let _ = run_command(&format!("ip link del {BRIDGE} 2>/dev/null"));

    let dir = std::env::temp_dir().join(format!("xvs-cni-latency-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bin"))?;
    let mut setup = Setup {
        cni_path: format!(
            "{}:{}",
            dir.join("bin").display(),
            cli.reference_plugins.display()
        ),
        dir,
        cnitool: cli.cnitool.clone(),
        attached: Vec::new(),
        netns: Vec::new(),
        xvsd: None,
    };
    let dir = setup.dir.clone();
    std::os::unix::fs::symlink(bin_dir.join("xvs-cni"), dir.join("bin/xvs-cni"))?;

    let socket = dir.join("xvsd.sock");
    setup.xvsd = Some(start_xvsd(
        &bin_dir.join("xvsd"),
        &socket,
        cli.pod_ring_size,
    )?);
    write_conflist(
        &dir,
        Plugin::Xvs,
        json!({
            "cniVersion": "1.0.0",
            "plugins": [{
                "type": "xvs-cni",
                "socket": socket,
                "ipam": { "subnet": XVS_CIDR, "rangeStart": "10.247.0.10",
                          "dataDir": dir.join("ipam-xvs") },
            }]
        }),
    )?;
    write_conflist(
        &dir,
        Plugin::Reference,
        json!({
            "cniVersion": "1.0.0",
            "plugins": [{
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": REF_CIDR }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": dir.join("ipam-ref"),
                }
            }]
        }),
    )?;

    for i in 0..cli.pods {
        for plugin in PLUGINS {
            let ns = plugin.netns(i);
            let _ = run_command(&format!("ip netns del {ns} 2>/dev/null"));
            run_command(&format!("ip netns add {ns}"))?;
            setup.netns.push(ns);
        }
    }

    // samples[plugin][op] in seconds; op 0 = ADD, 1 = DEL.
    let mut samples = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
    for (o, op) in ["add", "del"].into_iter().enumerate() {
        for i in 0..cli.pods {
            let order = if i % 2 == 0 {
                PLUGINS
            } else {
                [PLUGINS[1], PLUGINS[0]]
            };
            for plugin in order {
                if stop.load(Ordering::Relaxed) {
                    return Err(BenchError::Dut("interrupted; cleaned up".into()));
                }
                let took = setup.timed(op, plugin, i)?;
                let p = PLUGINS.iter().position(|x| *x == plugin).unwrap_or(0);
                samples[p][o].push(took.as_secs_f64());
            }
        }
    }

    let kernel = run_command("uname -r").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "Machine: {} ({cpus} CPUs), kernel {}",
        cpu_model(),
        kernel.trim()
    );
    println!(
        "{} pods per plugin via cnitool, ADDs then DELs, plugins alternating; ms per call.\n",
        cli.pods
    );
    println!("| plugin | op | p50 ms | p99 ms | mean ms |");
    println!("|---|---|---:|---:|---:|");
    let mut results = serde_json::Map::new();
    let mut stats = [[Stats::default(); 2]; 2];
    for (p, plugin) in PLUGINS.into_iter().enumerate() {
        let mut ops = serde_json::Map::new();
        for (o, op) in ["ADD", "DEL"].into_iter().enumerate() {
            let s = Stats::of(&samples[p][o]);
            stats[p][o] = s;
            println!(
                "| {} | {op} | {:.2} | {:.2} | {:.2} |",
                plugin.name(),
                s.p50 * 1e3,
                s.p99 * 1e3,
                s.mean * 1e3
            );
            ops.insert(
                op.to_lowercase(),
                json!({
                    "p50_ms": s.p50 * 1e3, "p99_ms": s.p99 * 1e3, "mean_ms": s.mean * 1e3,
                    "samples_ms": samples[p][o].iter().map(|x| x * 1e3).collect::<Vec<_>>(),
                }),
            );
        }
        results.insert(plugin.name().to_string(), Value::Object(ops));
    }
    println!();
    let mut ratios = serde_json::Map::new();
    for (o, op) in ["ADD", "DEL"].into_iter().enumerate() {
        let (x, r) = (stats[0][o], stats[1][o]);
        let ratio = json!({
            "p50": x.p50 / r.p50, "p99": x.p99 / r.p99, "mean": x.mean / r.mean,
        });
        println!(
            "{op}: xvs-cni / reference = {:.2}x at p50, {:.2}x at p99, {:.2}x mean",
            x.p50 / r.p50,
            x.p99 / r.p99,
            x.mean / r.mean
        );
        ratios.insert(op.to_lowercase(), ratio);
    }
    let report = json!({
        "machine": { "cpu": cpu_model(), "cpus": cpus, "kernel": kernel.trim() },
        "pods": cli.pods,
        "method": "cnitool add for every pod then cnitool del for every pod, \
                   the two plugins alternating which goes first; wall time per call",
        "cni_version": "1.0.0",
        "xvsd_pod_ring_size": cli.pod_ring_size,
        "results": results,
        "ratio_xvs_to_reference": ratios,
    });
    if let Some(parent) = cli.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&cli.out, serde_json::to_vec_pretty(&report)?)?;
    println!("\nwrote {}", cli.out.display());
    Ok(())
}

/// Writes `list` (with its `name`) as the only conflist of the plugin's
/// `NETCONFPATH` directory.
fn write_conflist(dir: &Path, plugin: Plugin, mut list: Value) -> Result<(), BenchError> {
    list["name"] = plugin.net().into();
    let net_dir = dir.join(plugin.net());
    std::fs::create_dir_all(&net_dir)?;
    std::fs::write(
        net_dir.join(format!("{}.conflist", plugin.net())),
        serde_json::to_vec_pretty(&list)?,
    )?;
    Ok(())
}

/// Starts xvsd with no pods on `socket` (descriptors per pod ring:
/// `pod_ring_size`) and waits until it is ready.
fn start_xvsd(xvsd: &Path, socket: &Path, pod_ring_size: u32) -> Result<Child, BenchError> {
    let mut child = Command::new(xvsd)
        .args(["--state-dir", "none", "--control-socket"])
        .arg(socket)
        .args(["--node-ip", "192.168.77.1", "--pod-cidr", XVS_CIDR])
        .args(["--pod-ring-size", &pod_ring_size.to_string()])
        .env("XVS_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Some(stderr) = stderr else { return };
        let mut log = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("ready:") {
                let _ = tx.send(Ok(()));
            }
            log.push(line);
        }
        let _ = tx.send(Err(log.join("\n")));
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(())) => Ok(child),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            let log = match other {
                Ok(Err(log)) => log,
                _ => "(no ready line in 20 s)".into(),
            };
            Err(BenchError::Dut(format!(
                "xvsd did not become ready:\n{log}"
            )))
        }
    }
}
