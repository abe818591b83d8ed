//! xvs-bench: measures xvsd and its peers on one generator → DUT → sink
//! topology in one invocation (`make perf`), see `xvs_perf::bench`.
//!
//! ```sh
//! xvs-bench --runs 3 --out target/perf            # everything (~22 min)
//! xvs-bench --duts xvsd-l3,linux-routing --flows 1 --runs 1 --seconds 0.5 --steps 1
//! # a Service's ClusterIP through xvsd and kube-proxy's nftables rules,
//! # with 1 and with 10,000 Services programmed
//! xvs-bench --duts xvsd-service,nft-dnat --services 1,10000 --runs 1
//! ```
//!
//! Writes `run-<n>.json` per run, `summary.json`, `results.md` and three
//! PNG plots into the output directory, and prints the Markdown table.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use xvs_perf::bench::dut::{scripts_dir, DutKind, RunningDut, Scale, Tools};
use xvs_perf::bench::results::{
    cost_markdown, dut_label, markdown, services_markdown, summarize, Case, Cost, Machine, Run,
};
use xvs_perf::bench::topology::Topology;
use xvs_perf::bench::trial::{search, trial, Load};
use xvs_perf::bench::{plot, run_command, BenchError};

#[derive(Parser)]
#[command(
    name = "xvs-bench",
    version,
    about = "Packet-rate benchmark: xvsd and its peers, side by side"
)]
struct Cli {
    /// Devices under test, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = DutKind::ALL)]
    duts: Vec<DutKind>,
    /// Numbers of flows to measure each DUT at.
    #[arg(long, value_delimiter = ',', default_values_t = [1u32, 1000, 100_000])]
    flows: Vec<u32>,
    /// Numbers of Kubernetes Services to program into the DUTs that take
    /// them (xvsd-service, nft-dnat), each measured at every flow count:
    /// the one the traffic goes to and the rest idle.
    #[arg(long, value_delimiter = ',', default_values_t = [1u32],
          value_parser = clap::value_parser!(u32).range(1..))]
    services: Vec<u32>,
    /// Runs of the whole set (the summary reports medians).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds per trial.
    #[arg(long, default_value_t = 1.5)]
    seconds: f64,
    /// Trials of the binary search after the full-rate one.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Frame size on the wire, bytes.
    #[arg(long, default_value_t = 64)]
    size: u16,
    #[arg(long, default_value_t = 0)]
    gen_core: usize,
    #[arg(long, default_value_t = 1)]
    dut_core: usize,
    /// Seconds of `perf stat` on xvsd's worker (0: skip).
    #[arg(long, default_value_t = 3.0)]
    cost_seconds: f64,
    #[arg(long, default_value = "target/perf")]
    out: PathBuf,
    /// Peers the table states ratios to.
    #[arg(long, value_delimiter = ',', default_values_t = ["linux-routing".to_string(), "testpmd".to_string()])]
    ratio_to: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match bench(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xvs-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(cli: &Cli) -> Result<(), BenchError> {
    if run_command("id -u")?.trim() != "0" {
        return Err(BenchError::Dut(
            "needs root (network namespaces, XDP)".into(),
        ));
    }
    let bin_dir = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let pktgen = bin_dir.join("xvs-pktgen");
    for bin in ["xvs-pktgen", "xvsd"] {
        if !bin_dir.join(bin).exists() {
            return Err(BenchError::Dut(format!(
                "{bin} is not next to xvs-bench in {} (cargo build --release --workspace --bins)",
                bin_dir.display()
            )));
        }
    }
    std::fs::create_dir_all(&cli.out)?;
    let out = cli.out.canonicalize()?;
    let tools = Tools {
        scripts: scripts_dir(&bin_dir),
        bin_dir,
        work_dir: out.clone(),
    };
    let settings = json!({
        "frame_size": cli.size, "trial_seconds": cli.seconds, "search_steps": cli.steps,
        "loss_limit": xvs_perf::bench::trial::LOSS_LIMIT, "flows": cli.flows,
        "services": cli.services,
        "gen_core": cli.gen_core, "dut_core": cli.dut_core, "kind": "udp",
    });
    let placement = placement(cli);
    let cases_per_run: usize = cli
        .duts
        .iter()
        .map(|d| service_counts(cli, *d).len() * cli.flows.len())
        .sum();
    let progress = ProgressBar::with_draw_target(
        Some((cli.runs * cases_per_run) as u64),
        ProgressDrawTarget::stderr_with_hz(4),
    );
    progress.set_style(
        ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {pos}/{len} cases  {msg}")
            .expect("a valid template"),
    );
    let mut runs = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for n in 1..=cli.runs {
        let mut cases = Vec::new();
        for &dut in &cli.duts {
            for services in service_counts(cli, dut) {
                for &flows in &cli.flows {
                    let label = dut_label(dut.name(), services);
                    progress
                        .set_message(format!("run {n}/{}: {label} at {flows} flow(s)", cli.runs));
                    match measure(cli, &tools, &pktgen, dut, services, flows, &progress) {
                        Ok(case) => cases.push(case),
                        Err(e) => {
                            let why = format!("{label} at {flows} flow(s): {e}");
                            progress.suspend(|| eprintln!("!!!! not measured: {why}"));
                            skipped.push(why);
                        }
                    }
                    progress.inc(1);
                }
            }
        }
        let costs = if n == 1 && cli.cost_seconds > 0.0 {
            cli.duts
                .iter()
                .filter(|d| d.is_xvsd())
                .filter_map(|&d| {
                    // At the largest Service count asked for.
                    let services = service_counts(cli, d).into_iter().max().flatten();
                    let label = dut_label(d.name(), services);
                    progress.set_message(format!("perf stat on {label}"));
                    cost(cli, &tools, &pktgen, d, services)
                        .map_err(|e| {
                            progress.suspend(|| eprintln!("!!!! no cost for {label}: {e}"));
                        })
                        .ok()
                })
                .collect()
        } else {
            Vec::new()
        };
        let run = Run {
            run: n,
            machine: Machine::this(),
            settings: settings.clone(),
            placement: placement.clone(),
            cases,
            costs,
        };
        std::fs::write(
            out.join(format!("run-{n}.json")),
            serde_json::to_string_pretty(&run)?,
        )?;
        runs.push(run);
    }
    progress.finish_and_clear();
    report(cli, &out, &runs, &skipped)
}

/// The Service counts `dut` is measured at: `--services`, or none for a
/// DUT that does not take Services.
fn service_counts(cli: &Cli, dut: DutKind) -> Vec<Option<u32>> {
    if dut.takes_services() {
        cli.services.iter().copied().map(Some).collect()
    } else {
        vec![None]
    }
}

/// One DUT at one number of flows (and of Services), on a fresh topology.
fn measure(
    cli: &Cli,
    tools: &Tools,
    pktgen: &Path,
    kind: DutKind,
    services: Option<u32>,
    flows: u32,
    progress: &ProgressBar,
) -> Result<Case, BenchError> {
    let label = dut_label(kind.name(), services);
    let topology = Topology::create()?;
    let scale = Scale {
        flows,
        services: services.unwrap_or(1),
    };
    let dut = RunningDut::start(kind, &topology, scale, cli.dut_core, tools)?;
    let load = |rate, seconds| Load {
        flows,
        rate,
        seconds,
        size: cli.size,
        gen_core: cli.gen_core,
    };
    // Learning: every flow seen once (caches, conntrack) before measuring.
    let warm_seconds = 0.3 + f64::from(flows) * 2.0 / 1e6;
    trial(pktgen, &dut.traffic, &load(Some(1_000_000), warm_seconds))?;
    let mut step = 0;
    let found = search(
        |rate| {
            step += 1;
            let r = trial(pktgen, &dut.traffic, &load(rate, cli.seconds))?;
            progress.set_message(format!(
                "{label} {flows} flow(s), trial {step}: {:.2} Mpps offered, {:.2} delivered, loss {:.3}%",
                r.offered_pps / 1e6,
                r.delivered_pps / 1e6,
                r.loss * 100.0
            ));
            Ok(r)
        },
        cli.steps,
    )?;
    let at_half = if found.ndr_pps >= 2.0 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let half = (found.ndr_pps / 2.0) as u64;
        Some(trial(pktgen, &dut.traffic, &load(Some(half), cli.seconds))?)
    } else {
        None
    };
    let dut_report = dut.stop()?;
    Ok(Case {
        dut: kind.name(),
        services,
        flows,
        search: found,
        at_half,
        dut_report,
    })
}

/// xvsd's worker under full load for `cost_seconds`: `perf stat` on the
/// worker thread, packets from xvsd's report, stages from its timers.
fn cost(
    cli: &Cli,
    tools: &Tools,
    pktgen: &Path,
    kind: DutKind,
    services: Option<u32>,
) -> Result<Cost, BenchError> {
    let topology = Topology::create()?;
    let scale = Scale {
        flows: 1,
        services: services.unwrap_or(1),
    };
    let dut = RunningDut::start(kind, &topology, scale, cli.dut_core, tools)?;
    let tid = dut
        .worker_tid()
        .ok_or_else(|| BenchError::Dut("no xvs-worker-0 thread".into()))?;
    let window = cli.cost_seconds + 1.0;
    let perf = std::thread::spawn(move || {
        run_command(&format!(
            "perf stat -x, -e task-clock,cycles,instructions -t {tid} -- sleep {window} 2>&1 >/dev/null"
        ))
    });
    std::thread::sleep(Duration::from_millis(300));
    let load = Load {
        flows: 1,
        rate: None,
        seconds: cli.cost_seconds,
        size: cli.size,
        gen_core: cli.gen_core,
    };
    let t = trial(pktgen, &dut.traffic, &load)?;
    let perf = perf
        .join()
        .map_err(|_| BenchError::Dut("perf stat thread".into()))??;
    let report = dut
        .stop()?
        .ok_or_else(|| BenchError::Dut("no xvsd report".into()))?;
    let worker = &report["workers"][0];
    let packets = worker["rx_packets"].as_u64().unwrap_or(0);
    let counter = |event: &str| -> Option<f64> {
        perf.lines()
            .find(|l| l.split(',').nth(2) == Some(event))
            .and_then(|l| l.split(',').next()?.parse().ok())
    };
    let task_clock_ms = counter("task-clock")
        .ok_or_else(|| BenchError::Dut(format!("perf stat printed no task-clock: {perf}")))?;
    #[allow(clippy::cast_precision_loss)]
    let per_packet = |v: f64| v / packets.max(1) as f64;
    let task_clock_ns = task_clock_ms * 1e6;
    let (cycles_per_packet, cycles_source) = match counter("cycles") {
        Some(c) => (Some(per_packet(c)), "perf cycles counter".to_string()),
        None => match cpu_mhz() {
            Some(mhz) => (
                Some(per_packet(task_clock_ns) * mhz / 1000.0),
                format!("task-clock × {mhz:.0} MHz (no cycles counter in this VM)"),
            ),
            None => (None, "no cycles counter, no CPU MHz".to_string()),
        },
    };
    Ok(Cost {
        dut: kind.name(),
        services,
        offered_pps: t.offered_pps,
        packets,
        task_clock_ns,
        ns_per_packet: per_packet(task_clock_ns),
        cycles_per_packet,
        cycles_source,
        instructions_per_packet: counter("instructions").map(per_packet),
        stages: worker.get("times").cloned(),
    })
}

fn cpu_mhz() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

/// Which core does what, for the report.
fn placement(cli: &Cli) -> Vec<String> {
    let (g, d) = (cli.gen_core, cli.dut_core);
    vec![
        format!("core {g}: the generator (BPF_PROG_RUN live frames, XDP_TX into its veth)"),
        format!(
            "core {g}: gen0's receive (NAPI on the sender's CPU): for AF_XDP DUTs the XDP program and the copy into the UMEM (veth has no zero-copy), for kernel DUTs building the skb, handed to core {d} by RPS"
        ),
        format!(
            "core {d}: the DUT: xvsd's worker, testpmd's or OVS's PMD thread, or the kernel's forwarding path; its transmit to the sink (an skb per packet for AF_XDP on veth) and the sink's XDP counting program"
        ),
    ]
}

fn report(cli: &Cli, out: &Path, runs: &[Run], skipped: &[String]) -> Result<(), BenchError> {
    let rows = summarize(runs);
    let peers: Vec<&str> = cli.ratio_to.iter().map(String::as_str).collect();
    let costs: Vec<Cost> = runs.iter().flat_map(|r| r.costs.clone()).collect();
    let machine = Machine::this();
    let mut md = format!(
        "# xvs-bench: {} run(s), {}-byte UDP frames, {} s trials\n\n{} ({} CPUs), Linux {}.\n\n",
        runs.len(),
        cli.size,
        cli.seconds,
        machine.cpu,
        machine.cpus,
        machine.kernel
    );
    md.push_str(&markdown(&rows, &peers));
    let services = services_markdown(&rows);
    if !services.is_empty() {
        md.push_str(
            "\nTo a Service's ClusterIP, DNATed to one endpoint: xvsd against kube-proxy's nftables rules, with N Services programmed (the measured one and N−1 idle):\n\n",
        );
        md.push_str(&services);
    }
    md.push_str("\nOffered and delivered: at the generator's full rate. NDR: the highest offered rate with <0.1% loss (RFC 2544 binary search). Latency: one way, generator to sink, at half the NDR.\n\nWhere the work runs:\n\n");
    for p in runs.first().map_or(&[][..], |r| &r.placement[..]) {
        md.push_str(&format!("- {p}\n"));
    }
    if !costs.is_empty() {
        md.push_str("\nxvsd's worker at full load (`perf stat -t` on the worker thread):\n\n");
        md.push_str(&cost_markdown(&costs));
    }
    if !skipped.is_empty() {
        md.push_str("\nNot measured:\n\n");
        for s in skipped {
            md.push_str(&format!("- {s}\n"));
        }
    }
    std::fs::write(out.join("results.md"), &md)?;
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&json!({"rows": rows, "costs": costs, "skipped": skipped}))?,
    )?;
    let first_flows = cli.flows.first().copied().unwrap_or(1);
    plot::throughput_by_dut(&rows, first_flows, &out.join("throughput-by-dut.png"))?;
    plot::throughput_vs_flows(&rows, &out.join("throughput-vs-flows.png"))?;
    if let Some(run) = runs.first() {
        plot::latency_cdf(run, first_flows, &out.join("latency-cdf.png"))?;
    }
    println!("{md}");
    eprintln!("xvs-bench: results in {}", out.display());
    Ok(())
}
