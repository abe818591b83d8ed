//! xvsd: the datapath wired to real interfaces.
//!
//! [`Datapath::start`] compiles the configuration into a snapshot, attaches
//! the XDP steering program to every port (pod ports: everything; the
//! uplink: only what the switch owns, so the node's own traffic keeps
//! flowing through the kernel), binds an AF_XDP socket per receive queue,
//! all sharing one UMEM, and starts the worker thread pinned to its core.
//! [`Datapath::stop`] stops the worker, closes the sockets and detaches the
//! programs; a crash leaves the programs attached, and the next start
//! replaces them (see `xvs_hw::steer`).
//!
//! The worker busy-polls while there is traffic and, after
//! [`BUSY_ROUNDS`] empty rounds, sleeps in `poll(2)` on its sockets until a
//! packet arrives (or [`IDLE_WAIT_MS`] pass, to look at the stop flag), so
//! an idle switch does not keep a core at 100%.
//!
//! One worker serves every port for now: veth has a single queue, and a
//! (device, queue) takes one AF_XDP socket, so a second worker would need a
//! hand-off ring to transmit on ports it does not own. The first configured
//! core is used; more cores are refused with a clear error rather than
//! ignored.

pub mod config;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use xvs_control::state::PortKind;
use xvs_hw::steer::{AttachMode, SteerError, Steering, SteeringProgram};
use xvs_hw::xsk::{Accounting, BindMode, Xsk, XskError};

use crate::pipeline::PipelineConfig;
use crate::port::{XskPool, XskPort};
use crate::snapshot::{CompileError, Snapshot};
use crate::worker::{PortCounters, Worker};
use config::{rx_queues, ConfigError, XvsdConfig};

/// Empty poll rounds before a worker sleeps.
pub const BUSY_ROUNDS: u32 = 1024;
/// Longest sleep of an idle worker.
pub const IDLE_WAIT_MS: i32 = 50;
/// UMEM frames beyond what the rings can hold: eight batches of 64 for
/// the pipeline's own allocations and queues.
const SPARE_FRAMES: u32 = 512;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the configuration does not compile: {0}")]
    Compile(#[from] CompileError),
    #[error(transparent)]
    Steer(#[from] SteerError),
    #[error(transparent)]
    Xsk(#[from] XskError),
    #[error("no ports: give --uplink and/or --pod")]
    NoPorts,
    #[error("cores {0:?}: one worker serves all ports (veth has one queue); give one core")]
    Cores(Vec<usize>),
    #[error("core {0} does not exist or may not be used by this process")]
    Pin(usize),
}

/// What `xvsctl show` will print about a port.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub name: String,
    pub xdp: AttachMode,
    pub bind: BindMode,
    pub queues: u32,
}

/// Counters of a stopped datapath.
#[derive(Debug, Clone)]
pub struct Report {
    pub ports: Vec<(String, PortCounters)>,
    pub drops: Vec<(&'static str, u64)>,
    pub accounting: Accounting,
}

type XskWorker = Worker<XskPool, XskPort>;

pub struct Datapath {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<XskWorker>>,
    // Detached when dropped, after the worker (and its sockets) stopped.
    _programs: Vec<SteeringProgram>,
    pub ports: Vec<PortInfo>,
}

impl Datapath {
    /// Sets everything up and starts the worker. `stop` ends it (set it
    /// from a signal handler).
    pub fn start(config: &XvsdConfig, stop: Arc<AtomicBool>) -> Result<Datapath, DaemonError> {
        let core = match config.cores[..] {
            [] => None,
            [core] => Some(core),
            _ => return Err(DaemonError::Cores(config.cores.clone())),
        };
        let state = config.desired_state(config::sysfs_link)?;
        if state.ports.is_empty() {
            return Err(DaemonError::NoPorts);
        }
        let snapshot = Arc::new(Snapshot::compile(&state, 1)?);

        let ring = config.ring_size();
        let queues: Vec<u32> = state.ports.iter().map(|p| rx_queues(&p.name)).collect();
        // Each socket can lend a full fill ring and a full tx ring to the
        // kernel; the rest is for the pipeline's batches and queues.
        let sockets: u32 = queues.iter().sum();
        let frames = sockets * 2 * ring + SPARE_FRAMES;
        let mut xsk = Xsk::new(frames, ring)?;

        let vxlan = state.node.vxlan.as_ref().map(|v| (v.vtep_ip, v.udp_port));
        let mut programs = Vec::new();
        let mut ports = Vec::new();
        let mut infos = Vec::new();
        for (spec, &nq) in state.ports.iter().zip(&queues) {
            let steering = match spec.kind {
                PortKind::Uplink { .. } => Steering::Owned { vxlan },
                PortKind::Pod { .. } | PortKind::Bridged { .. } => Steering::All,
            };
            let program = SteeringProgram::attach(&spec.name, steering)?;
            if matches!(spec.kind, PortKind::Uplink { .. }) {
                // Traffic routed to our pods from the underlay.
                let cidr = state.node.pod_cidr;
                program.own_prefix(cidr.network(), cidr.prefix_len())?;
            }
            let mut ids = Vec::new();
            for queue in 0..nq {
                let id = xsk.add_socket(&spec.name, queue, ring, config.force_copy)?;
                program.register_socket(queue, xsk.fd(id))?;
                xsk.refill(id, 0);
                ids.push(id);
            }
            infos.push(PortInfo {
                name: spec.name.clone(),
                xdp: program.mode(),
                bind: xsk.mode(ids[0]),
                queues: nq,
            });
            ports.push(XskPort::new(ids));
            programs.push(program);
        }
        let worker = Worker::new(XskPool { xsk }, ports, snapshot, PipelineConfig::default());
        let thread = {
            let worker_stop = stop.clone();
            let (pinned_tx, pinned_rx) = std::sync::mpsc::channel();
            let thread = std::thread::Builder::new()
                .name("xvs-worker-0".into())
                .spawn(move || {
                    let pinned = core.is_none_or(xvs_hw::cpu::pin_current_thread);
                    let _ = pinned_tx.send(pinned);
                    run(worker, &worker_stop)
                })
                .expect("spawning the worker thread");
            if !pinned_rx.recv().unwrap_or(false) {
                stop.store(true, Ordering::Relaxed);
                let _ = thread.join();
                return Err(DaemonError::Pin(core.unwrap_or_default()));
            }
            thread
        };
        Ok(Datapath {
            stop,
            thread: Some(thread),
            _programs: programs,
            ports: infos,
        })
    }

    /// Stops the worker and returns its counters. The sockets close here;
    /// the XDP programs are detached when `self` drops.
    pub fn stop(&mut self) -> Option<Report> {
        self.stop.store(true, Ordering::Relaxed);
        let worker = self.thread.take()?.join().ok()?;
        let ports = self
            .ports
            .iter()
            .map(|p| p.name.clone())
            .zip(worker.port_counters.iter().copied())
            .collect();
        let drops = worker.pipeline.counters().nonzero_drops().collect();
        Some(Report {
            ports,
            drops,
            accounting: worker.pool.xsk.accounting(),
        })
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The poll loop of a worker, until `stop`.
fn run(mut worker: XskWorker, stop: &AtomicBool) -> XskWorker {
    let start = Instant::now();
    let mut empty = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let now = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if worker.poll(now) > 0 {
            empty = 0;
            continue;
        }
        empty = empty.saturating_add(1);
        if empty < BUSY_ROUNDS {
            std::hint::spin_loop();
        } else if worker.pool.xsk.wait_rx(IDLE_WAIT_MS).is_err() {
            // poll(2) itself failing (it should not): do not spin.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    worker
}
