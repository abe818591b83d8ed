//! xvsd: the datapath wired to real interfaces.
//!
//! [`Datapath::start`] compiles the configuration into a snapshot, attaches
//! the XDP steering program to every port (pod and bridged ports:
//! everything; the uplink: only what the switch owns, so the node's own
//! traffic keeps flowing through the kernel), and starts one worker per
//! configured core, pinned to it. Each worker has its own UMEM, shared by
//! all its AF_XDP sockets, so forwarding between the queues a worker serves
//! moves descriptors. Receive queues are dealt out round robin: queue `q` of
//! the `p`-th port goes to worker `(p + q) mod workers`, which spreads
//! single-queue ports (veth) over the workers and gives every worker a queue
//! of each port that has as many queues as there are workers. A worker
//! without a queue of a port hands packets for it to the worker that serves
//! its queue 0 (see [`crate::handoff`]): one copy, the price of one UMEM per
//! worker.
//!
//! [`Datapath::stop`] stops the workers, closes the sockets and detaches the
//! programs; a crash leaves the programs attached, and the next start
//! replaces them (see `xvs_hw::steer`).
//!
//! Each worker thread (named `xvs-worker-{i}`) reports its kernel thread
//! id at start ([`WorkerInfo`]), so a benchmark can `perf stat -t` exactly
//! it. At stop the workers' counters come back as a [`Report`], which
//! serializes (xvsd writes it as JSON with [`write_atomically`]); `hw`'s
//! counter types are serialized here, field for field, so `hw` needs no
//! serde.
//!
//! A worker busy-polls while there is traffic and, after [`BUSY_ROUNDS`]
//! empty rounds, sleeps in `poll(2)` on its sockets and its hand-off
//! doorbell until a packet arrives (or [`IDLE_WAIT_MS`] pass, to look at the
//! stop flag), so an idle switch does not keep its cores at 100%. The time
//! asleep counts as idle in the worker's [`StageTimes`].

pub mod config;
pub mod control;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use serde::{Serialize, Serializer};

use xvs_control::state::PortKind;
use xvs_hw::steer::{AttachMode, SteerCounters, SteerError, Steering, SteeringProgram};
use xvs_hw::xsk::{Accounting, BindMode, SocketStats, Xsk, XskError};

use crate::drop::DropReason;
use crate::handoff::{self, Outbox};
use crate::pipeline::PipelineConfig;
use crate::port::{XskPool, XskPort};
use crate::snapshot::{CompileError, Snapshot};
use crate::worker::{PortCounters, PortSlot, StageTimes, Worker};
use config::{rx_queues, ConfigError, XvsdConfig};

/// Empty poll rounds before a worker sleeps.
pub const BUSY_ROUNDS: u32 = 1024;
/// Longest sleep of an idle worker.
pub const IDLE_WAIT_MS: i32 = 50;
/// UMEM frames beyond what the rings can hold: eight batches of 64 for
/// the pipeline's own allocations and queues and for packets handed over
/// by other workers.
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
    #[error("no ports: give --uplink, --pod and/or --bridged")]
    NoPorts,
    #[error("cores {0:?}: a core may serve one worker only")]
    DuplicateCore(Vec<usize>),
    #[error("core {0} does not exist or may not be used by this process")]
    Pin(usize),
    #[error("cannot set up the hand-off between workers: {0}")]
    Handoff(std::io::Error),
}

/// What `xvsctl show` will print about a port.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub name: String,
    pub xdp: AttachMode,
    pub bind: BindMode,
    pub queues: u32,
    /// The workers serving its queues, by index (queue `q` is served by
    /// `workers[q % workers.len()]`).
    pub workers: Vec<usize>,
}

/// A running worker thread.
#[derive(Debug, Clone, Copy)]
pub struct WorkerInfo {
    /// The core it is pinned to (`None`: not pinned).
    pub core: Option<usize>,
    /// Its kernel thread id, for `perf stat -t` (`None` if
    /// `/proc/thread-self` could not be read).
    pub tid: Option<u32>,
}

/// Counters of one stopped worker.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerReport {
    pub core: Option<usize>,
    /// Its kernel thread id, as in [`WorkerInfo`].
    pub tid: Option<u32>,
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Packets passed to other workers, and dropped because they were
    /// behind.
    pub handed_off: u64,
    pub handoff_drops: u64,
    /// Packets handed over by others that found no free frame here.
    pub handoff_no_frame: u64,
    /// Packets its tx rings had no room for.
    pub tx_ring_full: u64,
    /// Its sockets' counters, the kernel's included (packets lost before
    /// they reached the worker: rx ring full, no fill-ring frame).
    #[serde(with = "SocketStatsJson")]
    pub sockets: SocketStats,
    #[serde(with = "AccountingJson")]
    pub accounting: Accounting,
    /// Where its time went, by stage.
    pub times: StageTimes,
}

/// Counters of one port of a stopped datapath.
#[derive(Debug, Clone, Serialize)]
pub struct PortReport {
    pub name: String,
    /// Summed over the workers.
    pub counters: PortCounters,
    /// What its XDP program did with the packets the port received (`None`
    /// if the program's counters could not be read).
    #[serde(serialize_with = "steering_json")]
    pub steering: Option<SteerCounters>,
}

/// Counters of a stopped datapath.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ports: Vec<PortReport>,
    pub workers: Vec<WorkerReport>,
    /// Pipeline drops by reason, summed over the workers (a JSON object
    /// from reason to count).
    #[serde(serialize_with = "drops_json")]
    pub drops: Vec<(&'static str, u64)>,
}

impl Report {
    /// Checks early that [`write_atomically`] can put a file at `path`:
    /// it names a file, in a directory that exists.
    ///
    /// # Errors
    /// What is wrong with `path`.
    pub fn check_path(path: &Path) -> Result<(), String> {
        if path.file_name().is_none() {
            return Err("not a file name".into());
        }
        let dir = report_dir(path);
        if !dir.is_dir() {
            return Err(format!("{} is not a directory", dir.display()));
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically: into a temporary file in the same
/// directory, then renamed over `path`, so a reader sees the old file or
/// the whole new one. (xvsd writes the [`Report`] as JSON with it.)
///
/// # Errors
/// If the file cannot be written or renamed; the temporary file is
/// removed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let Some(name) = path.file_name() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file name",
        ));
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = report_dir(path).join(tmp_name);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The directory `path` is in.
fn report_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `hw`'s socket counters in the JSON report (serde's remote derive, here
/// and below: the field lists mirror `hw`'s structs, and a field added
/// there must be added here to appear in the report).
#[derive(Serialize)]
#[serde(remote = "SocketStats")]
struct SocketStatsJson {
    tx_wakeups: u64,
    tx_wakeup_errors: u64,
    fill_wakeups: u64,
    rx_ring_full: u64,
    rx_fill_ring_empty: u64,
    rx_dropped: u64,
    rx_invalid_descs: u64,
    tx_invalid_descs: u64,
}

/// `hw`'s frame accounting in the JSON report.
#[derive(Serialize)]
#[serde(remote = "Accounting")]
struct AccountingJson {
    total: u32,
    free: u32,
    user: u32,
    fill: u32,
    rx: u32,
    tx: u32,
    completion: u32,
    lent: u32,
}

/// `hw`'s steering counters in the JSON report.
#[derive(Serialize)]
#[serde(remote = "SteerCounters")]
struct SteerCountersJson {
    redirected: u64,
    passed: u64,
    dropped: u64,
}

fn steering_json<S: Serializer>(c: &Option<SteerCounters>, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Counters(#[serde(with = "SteerCountersJson")] SteerCounters);
    c.map(Counters).serialize(s)
}

fn drops_json<S: Serializer>(drops: &[(&'static str, u64)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(drops.iter().copied())
}

type XskWorker = Worker<XskPool, XskPort>;

pub struct Datapath {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<XskWorker>>,
    // Detached when dropped, after the workers (and their sockets) stopped.
    programs: Vec<SteeringProgram>,
    pub ports: Vec<PortInfo>,
    /// The running workers, in order; empty once stopped.
    pub workers: Vec<WorkerInfo>,
}

/// Which worker serves queue `queue` of the `port`-th port.
fn worker_of(port: usize, queue: u32, workers: usize) -> usize {
    (port + queue as usize) % workers
}

impl Datapath {
    /// Sets everything up and starts the workers. `stop` ends them (set it
    /// from a signal handler).
    pub fn start(config: &XvsdConfig, stop: Arc<AtomicBool>) -> Result<Datapath, DaemonError> {
        let cores: Vec<Option<usize>> = if config.cores.is_empty() {
            vec![None]
        } else {
            let mut sorted = config.cores.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != config.cores.len() {
                return Err(DaemonError::DuplicateCore(config.cores.clone()));
            }
            config.cores.iter().copied().map(Some).collect()
        };
        let workers = cores.len();
        let state = config.desired_state(config::sysfs_link)?;
        if state.ports.is_empty() {
            return Err(DaemonError::NoPorts);
        }
        let snapshot = Arc::new(Snapshot::compile(&state, 1)?);

        let ring = config.ring_size();
        let queues: Vec<u32> = state.ports.iter().map(|p| rx_queues(&p.name)).collect();
        // Each socket can lend a full fill ring and a full tx ring to the
        // kernel; the rest is for the pipeline's batches and queues.
        let mut xsks = (0..workers)
            .map(|w| {
                let sockets = queues
                    .iter()
                    .enumerate()
                    .map(|(p, &nq)| (0..nq).filter(|&q| worker_of(p, q, workers) == w).count())
                    .sum::<usize>();
                let sockets = u32::try_from(sockets).unwrap_or(u32::MAX);
                Xsk::new(sockets * 2 * ring + SPARE_FRAMES, ring)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut mesh = handoff::mesh(workers).map_err(DaemonError::Handoff)?;

        let vxlan = state.node.vxlan.as_ref().map(|v| (v.vtep_ip, v.udp_port));
        let mut programs = Vec::new();
        let mut infos = Vec::new();
        // slots[worker][port]
        let mut slots: Vec<Vec<PortSlot<XskPort>>> = (0..workers).map(|_| Vec::new()).collect();
        for (p, (spec, &nq)) in state.ports.iter().zip(&queues).enumerate() {
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
            let mut sockets: Vec<Vec<_>> = vec![Vec::new(); workers];
            let mut bind = None;
            for queue in 0..nq {
                let w = worker_of(p, queue, workers);
                let xsk = &mut xsks[w];
                let id = xsk.add_socket(&spec.name, queue, ring, config.force_copy)?;
                program.register_socket(queue, xsk.fd(id))?;
                xsk.refill(id, 0);
                bind.get_or_insert(xsk.mode(id));
                sockets[w].push(id);
            }
            let owner = worker_of(p, 0, workers);
            for (w, ids) in sockets.into_iter().enumerate() {
                slots[w].push(if ids.is_empty() {
                    PortSlot::Remote(outbox(&mesh[w].1, owner))
                } else {
                    PortSlot::Local(XskPort::new(ids))
                });
            }
            infos.push(PortInfo {
                name: spec.name.clone(),
                xdp: program.mode(),
                bind: bind.unwrap_or(BindMode::Copy),
                queues: nq,
                workers: (0..nq.min(u32::try_from(workers).unwrap_or(u32::MAX)))
                    .map(|q| worker_of(p, q, workers))
                    .collect(),
            });
            programs.push(program);
        }

        let mut datapath = Datapath {
            stop: stop.clone(),
            threads: Vec::new(),
            programs,
            ports: infos,
            workers: Vec::new(),
        };
        let parts = xsks.into_iter().zip(slots).zip(mesh.drain(..));
        for (w, ((xsk, ports), (inbox, _))) in parts.enumerate() {
            let inbox = (workers > 1).then_some(inbox);
            let worker = Worker::with_handoff(
                XskPool { xsk },
                ports,
                inbox,
                snapshot.clone(),
                PipelineConfig::default(),
            );
            // On error the datapath drops here and stops the workers
            // already started.
            datapath.spawn(w, cores[w], worker)?;
        }
        Ok(datapath)
    }

    fn spawn(
        &mut self,
        index: usize,
        core: Option<usize>,
        worker: XskWorker,
    ) -> Result<(), DaemonError> {
        let stop = self.stop.clone();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("xvs-worker-{index}"))
            .spawn(move || {
                let pinned = core.is_none_or(xvs_hw::cpu::pin_current_thread);
                let _ = started_tx.send((pinned, current_tid()));
                if pinned {
                    run(worker, &stop)
                } else {
                    worker
                }
            })
            .expect("spawning a worker thread");
        let Ok((true, tid)) = started_rx.recv() else {
            let _ = thread.join();
            return Err(DaemonError::Pin(core.unwrap_or_default()));
        };
        self.threads.push(thread);
        self.workers.push(WorkerInfo { core, tid });
        Ok(())
    }

    /// Stops the workers and returns their counters. The sockets close
    /// here; the XDP programs are detached when `self` drops.
    pub fn stop(&mut self) -> Option<Report> {
        self.stop.store(true, Ordering::Relaxed);
        let mut ports: Vec<PortReport> = self
            .ports
            .iter()
            .zip(&self.programs)
            .map(|(p, program)| PortReport {
                name: p.name.clone(),
                counters: PortCounters::default(),
                steering: program.counters().ok(),
            })
            .collect();
        let mut drops = [0u64; DropReason::COUNT];
        let mut workers = Vec::new();
        let infos = std::mem::take(&mut self.workers);
        for (info, thread) in infos.into_iter().zip(self.threads.drain(..)) {
            let Ok(worker) = thread.join() else {
                continue;
            };
            for (port, c) in ports.iter_mut().zip(&worker.port_counters) {
                port.counters.add(c);
            }
            let counters = worker.pipeline.counters();
            for r in DropReason::ALL {
                drops[*r as usize] += counters.drops_of(*r);
            }
            let total = |f: fn(&PortCounters) -> u64| worker.port_counters.iter().map(f).sum();
            workers.push(WorkerReport {
                core: info.core,
                tid: info.tid,
                rx_packets: total(|c| c.rx_packets),
                tx_packets: total(|c| c.tx_packets),
                handed_off: total(|c| c.handed_off),
                handoff_drops: total(|c| c.handoff_drops),
                handoff_no_frame: worker.handoff_no_frame,
                tx_ring_full: local(&worker).map(|p| p.tx_ring_full).sum(),
                sockets: local(&worker).fold(SocketStats::default(), |mut sum, p| {
                    sum.add(&p.stats(&worker.pool));
                    sum
                }),
                accounting: worker.pool.xsk.accounting(),
                times: worker.times,
            });
        }
        if workers.is_empty() {
            return None;
        }
        let drops = DropReason::ALL
            .iter()
            .map(|r| (r.name(), drops[*r as usize]))
            .filter(|(_, n)| *n > 0)
            .collect();
        Some(Report {
            ports,
            workers,
            drops,
        })
    }
}

/// The kernel's id of the calling thread, from the `/proc/thread-self`
/// link (`<pid>/task/<tid>`).
fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// The ports a worker serves.
fn local(worker: &XskWorker) -> impl Iterator<Item = &XskPort> {
    worker.ports.iter().filter_map(|slot| match slot {
        PortSlot::Local(p) => Some(p),
        PortSlot::Remote(_) => None,
    })
}

fn outbox(outboxes: &[Option<Outbox>], to: usize) -> Outbox {
    outboxes[to]
        .clone()
        .expect("a worker without a queue of a port is not the worker that serves it")
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
            continue;
        }
        if !sleep(&worker) {
            // poll(2) itself failing (it should not): do not spin.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        worker.account_idle();
    }
    worker
}

/// Sleeps until a socket or the hand-off doorbell has something, or
/// [`IDLE_WAIT_MS`]; `false` if `poll(2)` failed.
fn sleep(worker: &XskWorker) -> bool {
    match worker.inbox() {
        None => worker.pool.xsk.wait_rx(&[], IDLE_WAIT_MS).is_ok(),
        Some(inbox) => {
            if !inbox.prepare_sleep() {
                return true;
            }
            let ok = worker
                .pool
                .xsk
                .wait_rx(&[inbox.doorbell_fd()], IDLE_WAIT_MS)
                .is_ok();
            inbox.woke();
            ok
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_knows_its_kernel_id() {
        let (tid, comm) = std::thread::Builder::new()
            .name("xvs-tid-test".into())
            .spawn(|| {
                let tid = current_tid().expect("a tid");
                (
                    tid,
                    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")),
                )
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(comm.unwrap().trim(), "xvs-tid-test");
        assert_ne!(Some(tid), current_tid(), "each thread its own");
    }

    fn report() -> Report {
        Report {
            ports: vec![PortReport {
                name: "veth1".into(),
                counters: PortCounters {
                    rx_packets: 3,
                    ..PortCounters::default()
                },
                steering: Some(SteerCounters {
                    redirected: 3,
                    passed: 1,
                    dropped: 0,
                }),
            }],
            workers: vec![WorkerReport {
                core: Some(1),
                tid: Some(4242),
                rx_packets: 3,
                tx_packets: 3,
                handed_off: 0,
                handoff_drops: 0,
                handoff_no_frame: 0,
                tx_ring_full: 0,
                sockets: SocketStats {
                    tx_wakeups: 2,
                    ..SocketStats::default()
                },
                accounting: Accounting {
                    total: 8,
                    free: 8,
                    ..Accounting::default()
                },
                times: StageTimes {
                    packets: 3,
                    rx_ns: 100,
                    ..StageTimes::default()
                },
            }],
            drops: vec![("ttl-exceeded", 2)],
        }
    }

    #[test]
    fn the_report_is_written_as_json_atomically() {
        let dir = std::env::temp_dir().join(format!("xvs-report-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("report.json");
        Report::check_path(&path).unwrap();
        std::fs::write(&path, "old").unwrap();
        let json = serde_json::to_vec(&report()).unwrap();
        write_atomically(&path, &json).unwrap();

        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let w = &json["workers"][0];
        assert_eq!(
            (w["tid"].as_u64(), w["core"].as_u64()),
            (Some(4242), Some(1))
        );
        assert_eq!(w["times"]["packets"], 3);
        assert_eq!(w["times"]["rx_ns"], 100);
        assert_eq!(w["times"]["batches"].as_array().unwrap().len(), 7);
        assert_eq!(w["sockets"]["tx_wakeups"], 2);
        assert_eq!(w["accounting"]["total"], 8);
        let p = &json["ports"][0];
        assert_eq!(p["counters"]["rx_packets"], 3);
        assert_eq!(p["steering"]["passed"], 1);
        assert_eq!(json["drops"]["ttl-exceeded"], 2);
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_report_path_that_cannot_work_is_refused() {
        assert!(Report::check_path(Path::new("/")).is_err());
        let err = Report::check_path(Path::new("/xvs-no-such-dir/r.json")).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
        assert!(Report::check_path(Path::new("r.json")).is_ok(), "the cwd");
        let err = write_atomically(Path::new("/xvs-no-such-dir/r.json"), b"{}").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
