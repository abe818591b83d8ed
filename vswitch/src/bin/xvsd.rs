//! xvsd: the xvs switch daemon. See `xvs_vswitch::daemon`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use xvs_control::server::Server;
use xvs_control::state::DesiredState;
use xvs_vswitch::daemon::config::{self, Flags, XvsdConfig, DEFAULT_MAX_AFFINITY};
use xvs_vswitch::daemon::control::Control;
use xvs_vswitch::daemon::store::{merge, StateStore};
use xvs_vswitch::daemon::{metrics, write_atomically, Datapath, DatapathSettings, Report};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("XVS_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let flags = Flags::parse();
    match run(&flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("xvsd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The control plane's sockets, bound before the datapath starts (a
/// second xvsd finds the first one listening and stops there, before it
/// could replace the first one's XDP programs), served on a thread of
/// their own: a single-threaded tokio runtime, off the datapath cores.
struct ControlPlane {
    runtime: tokio::runtime::Runtime,
    server: Option<Server>,
    metrics: Option<tokio::net::TcpListener>,
}

impl ControlPlane {
    fn bind(flags: &Flags) -> Result<ControlPlane, Box<dyn std::error::Error>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let server = match flags.control_socket.as_str() {
            "none" => None,
            path => {
                let server = runtime
                    .block_on(Server::bind(
                        std::path::Path::new(path),
                        flags.control_uids.clone(),
                    ))
                    .map_err(|e| format!("--control-socket {path}: {e}"))?;
                tracing::info!(path, allowed_uids = ?flags.control_uids, "control socket");
                Some(server)
            }
        };
        let metrics = match flags.metrics_addr {
            None => None,
            Some(addr) => {
                metrics::check_localhost(&addr).map_err(|e| format!("--metrics-addr {e}"))?;
                let listener = runtime
                    .block_on(tokio::net::TcpListener::bind(addr))
                    .map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
                tracing::info!(%addr, "metrics endpoint (GET /metrics)");
                Some(listener)
            }
        };
        Ok(ControlPlane {
            runtime,
            server,
            metrics,
        })
    }

    /// Serves until `stop`; the socket file is removed when it ends.
    fn serve(
        self,
        datapath: &Arc<Mutex<Datapath>>,
        store: Option<StateStore>,
        stop: &Arc<AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let stop = stop.clone();
        let handler = Arc::new(Control::new(datapath.clone(), store));
        let ControlPlane {
            runtime,
            server,
            metrics,
        } = self;
        std::thread::Builder::new()
            .name("xvs-control".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut tasks = Vec::new();
                    if let Some(server) = server {
                        tasks.push((
                            "control socket",
                            tokio::spawn(server.serve(handler.clone())),
                        ));
                    }
                    if let Some(listener) = metrics {
                        let control = handler.clone();
                        let source: metrics::Source = Arc::new(move || control.metrics());
                        tasks.push(("metrics", tokio::spawn(metrics::serve(listener, source))));
                    }
                    drop(handler);
                    while !stop.load(Ordering::Relaxed)
                        && !tasks.iter().any(|(_, t)| t.is_finished())
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    for (what, task) in tasks {
                        task.abort();
                        if let Ok(Err(e)) = task.await {
                            tracing::error!("{what}: {e}");
                        }
                    }
                });
            })
    }
}

/// The state to start with: the stored one with the command line's laid
/// over it.
fn initial_state(
    config: &XvsdConfig,
    store: Option<&StateStore>,
) -> Result<DesiredState, Box<dyn std::error::Error>> {
    let stored = store.map(StateStore::load).transpose()?.flatten();
    if let (Some(store), Some(s)) = (store, &stored) {
        tracing::info!(
            path = %store.path().display(),
            ports = s.ports.len(),
            routes = s.routes.len(),
            vteps = s.remote_nodes.len(),
            "stored state loaded"
        );
    }
    let boot = if config.describes_node() || stored.is_none() {
        Some(config.desired_state(config::sysfs_link)?)
    } else {
        None
    };
    Ok(merge(stored, boot).expect("one of them is there"))
}

/// Warns when the kernel's ephemeral ports overlap the SNAT ports: the
/// uplink's XDP program hands what arrives for those to the switch, so the
/// node's own connections using one would lose their answers.
fn warn_if_snat_ports_overlap((first, last): (u16, u16)) {
    let Ok(text) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return;
    };
    let mut it = text
        .split_whitespace()
        .filter_map(|v| v.parse::<u16>().ok());
    if let (Some(lo), Some(hi)) = (it.next(), it.next()) {
        if lo <= last && first <= hi {
            tracing::warn!(
                snat_ports = format!("{first}-{last}"),
                ip_local_port_range = format!("{lo}-{hi}"),
                "the SNAT ports overlap the kernel's ephemeral ports: the node's own \
                 connections on those ports will not get their answers; narrow one of them"
            );
        }
    }
}

fn run(flags: &Flags) -> Result<(), Box<dyn std::error::Error>> {
    let config = XvsdConfig::load(flags)?;
    if let Some(path) = &flags.report_json {
        Report::check_path(path).map_err(|e| format!("--report-json {}: {e}", path.display()))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let control = ControlPlane::bind(flags)?;
    let store = match flags.state_dir.as_str() {
        "none" => None,
        dir => Some(StateStore::open(std::path::Path::new(dir))?),
    };
    let state = initial_state(&config, store.as_ref())?;
    let settings = DatapathSettings {
        ring: config.ring_size(),
        pod_ring: config.pod_ring_size(),
        force_copy: config.force_copy,
        umem_frames: config.umem_frames(&state),
        max_flows: config.max_flows(),
        max_connections: config.max_connections(),
        flow_idle: config.flow_idle(),
        snat_ports: config.snat_ports()?,
        max_affinity: DEFAULT_MAX_AFFINITY,
    };
    warn_if_snat_ports_overlap(settings.snat_ports);
    let datapath = Datapath::start(state.clone(), &config.cores, settings, stop.clone())?;
    if let Some(store) = &store {
        store.save(&state)?;
    }
    for p in datapath.ports() {
        tracing::info!(
            port = p.name,
            xdp = p.xdp.name(),
            bind = p.bind.name(),
            queues = p.queues,
            workers = ?p.workers,
            "port up"
        );
    }
    for (i, w) in datapath.workers.iter().enumerate() {
        tracing::info!(
            worker = i,
            tid = %or_none(w.tid),
            core = %or_none(w.core),
            "worker up"
        );
    }
    tracing::info!(
        "ready: forwarding on {} ports (generation {})",
        datapath.ports().count(),
        datapath.snapshot().generation
    );
    let datapath = Arc::new(Mutex::new(datapath));
    let control = control.serve(&datapath, store, &stop)?;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    tracing::info!("stopping");
    let _ = control.join();
    // The control thread has ended, and with it every handle on the
    // datapath but ours.
    let mut datapath = match Arc::try_unwrap(datapath) {
        Ok(datapath) => datapath.into_inner().unwrap_or_else(|e| e.into_inner()),
        Err(_) => return Err("the control plane still holds the datapath".into()),
    };
    let report = datapath.stop();
    if let Some(report) = &report {
        for p in &report.ports {
            let c = &p.counters;
            let steer = p.steering.unwrap_or_default();
            tracing::info!(
                port = p.name,
                rx = c.rx_packets,
                tx = c.tx_packets,
                xdp_redirected = steer.redirected,
                xdp_passed = steer.passed,
                xdp_dropped = steer.dropped,
                "port counters"
            );
        }
        for (reason, n) in &report.drops {
            tracing::info!(reason, n, "drops");
        }
        for (i, w) in report.workers.iter().enumerate() {
            let a = w.accounting;
            tracing::info!(
                worker = i,
                core = ?w.core,
                rx = w.rx_packets,
                tx = w.tx_packets,
                handed_off = w.handed_off,
                handoff_drops = w.handoff_drops,
                handoff_no_frame = w.handoff_no_frame,
                tx_ring_full = w.tx_ring_full,
                kernel_rx_ring_full = w.sockets.rx_ring_full,
                kernel_no_fill_frame = w.sockets.rx_fill_ring_empty,
                kernel_rx_dropped = w.sockets.rx_dropped,
                "worker counters"
            );
            tracing::info!(
                worker = i,
                total = a.total,
                free = a.free,
                user = a.user,
                fill = a.fill,
                rx = a.rx,
                tx = a.tx,
                completion = a.completion,
                balanced = a.balanced(),
                "frame accounting"
            );
            let t = &w.times;
            let stage = |ns| format!("{:.1}ns/pkt({:.0}%)", t.per_packet(ns), t.busy_share(ns));
            tracing::info!(
                worker = i,
                packets = t.packets,
                busy_ns = t.busy_ns(),
                idle_ns = t.idle_ns,
                busy_polls = t.busy_polls,
                idle_polls = t.idle_polls,
                rx = %stage(t.rx_ns),
                pipeline = %stage(t.pipeline_ns),
                tx = %stage(t.tx_ns),
                handoff = %stage(t.handoff_ns),
                batches = ?t.batches,
                "worker time"
            );
        }
    }
    drop(datapath);
    tracing::info!("stopped; XDP programs detached");
    if let (Some(path), Some(report)) = (&flags.report_json, &report) {
        let mut json = serde_json::to_vec_pretty(report)?;
        json.push(b'\n');
        write_atomically(path, &json)
            .map_err(|e| format!("writing the report to {}: {e}", path.display()))?;
        tracing::info!(path = %path.display(), "report written");
    }
    Ok(())
}

fn or_none(v: Option<impl std::fmt::Display>) -> String {
    v.map_or_else(|| "none".into(), |v| v.to_string())
}
