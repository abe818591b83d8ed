//! The running datapath, and how it changes while it runs.
//!
//! [`Datapath::start`] starts one worker per configured core, pinned to
//! it, each with its own UMEM and no ports, then [`Datapath::apply`]s the
//! desired state. Every later change goes through `apply` too: a new
//! desired state is compiled into a new snapshot (generation + 1) and the
//! ports are reconciled by name:
//!
//! - a port whose interface is plumbed the same way (same steering) is
//!   kept: its program, its sockets, its counters;
//! - a new port gets its XDP steering program attached (pod and bridged
//!   ports: everything; the uplink: only what the switch owns, so the
//!   node's own traffic keeps flowing through the kernel) and one AF_XDP
//!   socket per receive queue, each queue given to the worker with the
//!   fewest sockets;
//! - a port no longer wanted loses its sockets (their frames come back to
//!   the UMEM) and then its program.
//!
//! Workers never wait on the control plane: the control thread sends each
//! worker a job over a channel and rings its doorbell; the worker runs
//! jobs between two poll rounds. A change takes two jobs per worker:
//! *open* (create the new sockets; the control thread registers them in
//! the steering programs) and, once every worker has opened, *commit*
//! (swap in the new port table and snapshot, close what went away). If
//! any worker fails to open, every worker is told to *abort* instead and
//! closes what it opened: the datapath is unchanged. Packets a worker
//! handed over under the old port numbering are dropped by the receiver
//! (`handoff_stale`), never sent out of the wrong port.
//!
//! An interface that does not exist (a pod deleted while xvsd was down)
//! does not stop the switch: its port stays in the desired state, is left
//! out of the datapath, and is reported as missing.
//!
//! A worker busy-polls while there is traffic and, after [`BUSY_ROUNDS`]
//! empty rounds, sleeps in `poll(2)` on its sockets, its hand-off doorbell
//! and its job doorbell until something arrives (or [`IDLE_WAIT_MS`]
//! pass, to look at the stop flag), so an idle switch does not keep its
//! cores at 100%. The time asleep counts as idle in its
//! [`crate::worker::StageTimes`].
//!
//! A capture ([`Datapath::capture`]) is two jobs per worker too: one
//! installs a tap of the port (see [`crate::capture`]), one removes it.
//! In between the control thread collects the copies without holding the
//! datapath's lock, so changes and reads go on during a capture (a change
//! ends it). One capture runs at a time.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender};
use ipnet::Ipv4Net;
use xvs_control::state::{DesiredState, PortKind, PortSpec};
use xvs_flowtable::snat_ports::SnatPool;
use xvs_flowtable::{Conntrack, FlowTable, Timeouts};
use xvs_hw::steer::{AttachMode, NodeSteering, Steering, SteeringProgram};
use xvs_hw::xsk::{BindMode, SocketId, SocketStats, Xsk};

use super::config::rx_queues;
use super::{DaemonError, PortReport, Report, WorkerReport};
use crate::capture::{Capture, CaptureResult, CaptureState};
use crate::drop::DropReason;
use crate::flow_cache;
use crate::handoff::{self, Doorbell, Outbox};
use crate::pipeline::{NatTables, PipelineConfig};
use crate::port::{XskPool, XskPort};
use crate::services::ServiceTable;
use crate::snapshot::Snapshot;
use crate::worker::{PortCounters, PortSlot, Worker};

/// Empty poll rounds before a worker sleeps.
pub const BUSY_ROUNDS: u32 = 1024;
/// Longest sleep of an idle worker.
pub const IDLE_WAIT_MS: i32 = 50;
/// UMEM frames kept beyond what the sockets' rings can hold: eight
/// batches of 64 for the pipeline's own allocations and queues and for
/// packets handed over by other workers.
const SPARE_FRAMES: u32 = 512;
/// How long the control thread waits for a worker to run a job.
const JOB_TIMEOUT: Duration = Duration::from_secs(10);

/// What `xvsctl show` prints about a port.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub name: String,
    pub xdp: AttachMode,
    pub bind: BindMode,
    pub queues: u32,
    /// The worker serving each queue.
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

/// Fixed at start.
#[derive(Debug, Clone, Copy)]
pub struct DatapathSettings {
    /// Descriptors per AF_XDP ring of uplink and bridged ports.
    pub ring: u32,
    /// Descriptors per AF_XDP ring of pod ports (and frames each keeps
    /// lent for receiving): smaller, so that a UMEM holds more pods.
    pub pod_ring: u32,
    pub force_copy: bool,
    /// Frames of each worker's UMEM; every socket can hold two rings' worth.
    pub umem_frames: u32,
    /// Flows the flow cache holds at most, and connections conntrack
    /// tracks at most.
    pub max_flows: usize,
    pub max_connections: usize,
    /// A cached flow without packets for this long is removed.
    pub flow_idle: Duration,
    /// Node-IP (and pod-network-address) ports SNAT takes.
    pub snat_ports: (u16, u16),
    /// Client-IP affinity entries remembered at most.
    pub max_affinity: usize,
}

impl DatapathSettings {
    /// The ring size of `port`'s sockets.
    pub fn ring_for(&self, port: &PortKind) -> u32 {
        ring_size_for(port, self.ring, self.pod_ring)
    }
}

/// The ring size of a port of `kind`, given the sizes for pod ports and
/// for the others.
pub fn ring_size_for(kind: &PortKind, ring: u32, pod_ring: u32) -> u32 {
    match kind {
        PortKind::Pod { .. } => pod_ring,
        PortKind::Uplink { .. } | PortKind::Bridged { .. } => ring,
    }
}

type XskWorker = Worker<XskPool, XskPort>;
type Job = Box<dyn FnOnce(&mut WorkerCtx) + Send>;

/// What a worker thread owns.
struct WorkerCtx {
    worker: XskWorker,
    /// To every other worker, by index.
    outboxes: Vec<Option<Outbox>>,
    jobs: Receiver<Job>,
    bell: Arc<Doorbell>,
    /// Sockets opened by the last *open* job, by port name, until *commit*
    /// or *abort*.
    opened: HashMap<String, Vec<SocketId>>,
    /// Its counters as last published (see [`PUBLISH_EVERY`]).
    published: Arc<Mutex<Option<WorkerStats>>>,
    info: WorkerInfo,
    /// The datapath's clock: zero at its start, shared by every worker and
    /// the control thread, so flow ages compare.
    epoch: Instant,
}

/// How often a worker publishes a copy of its counters for `xvsctl stats`
/// and the metrics endpoint. It copies them only if no reader holds the
/// slot (`try_lock`): a worker never waits for the control plane.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// One worker's counters at one moment.
#[derive(Debug, Clone)]
struct WorkerStats {
    report: WorkerReport,
    /// Its view of each port, by name.
    ports: Vec<(String, PortCounters)>,
    drops: [u64; DropReason::COUNT],
}

impl WorkerCtx {
    fn stats(&self) -> WorkerStats {
        let worker = &self.worker;
        let counters = worker.pipeline.counters();
        let mut drops = [0u64; DropReason::COUNT];
        for r in DropReason::ALL {
            drops[*r as usize] = counters.drops_of(*r);
        }
        let total = |f: fn(&PortCounters) -> u64| worker.port_counters.iter().map(f).sum();
        WorkerStats {
            report: WorkerReport {
                core: self.info.core,
                tid: self.info.tid,
                rx_packets: total(|c| c.rx_packets),
                tx_packets: total(|c| c.tx_packets),
                handed_off: total(|c| c.handed_off),
                handoff_drops: total(|c| c.handoff_drops),
                handoff_no_frame: worker.handoff_no_frame,
                handoff_stale: worker.handoff_stale,
                tx_ring_full: local(worker).map(|p| p.tx_ring_full).sum(),
                flow_hits: counters.flow_hits,
                flow_misses: counters.flow_misses,
                flows_added: counters.flows_added,
                ct_created: counters.ct_created,
                ct_invalid: counters.ct_invalid,
                svc_connections: counters.svc_connections,
                snat_connections: counters.snat_connections,
                tcp_resets: counters.tcp_resets,
                nat_port_remaps: counters.nat_port_remaps,
                sockets: local(worker).fold(SocketStats::default(), |mut sum, p| {
                    sum.add(&p.stats(&worker.pool));
                    sum
                }),
                accounting: worker.pool.xsk.accounting(),
                times: worker.times,
            },
            ports: worker
                .pipeline
                .snapshot()
                .ports
                .iter()
                .map(|p| p.name.clone())
                .zip(worker.port_counters.iter().copied())
                .collect(),
            drops,
        }
    }

    /// Publishes [`WorkerCtx::stats`] unless a reader holds the slot.
    fn publish(&self) {
        if let Ok(mut slot) = self.published.try_lock() {
            *slot = Some(self.stats());
        }
    }
}

/// A port of the datapath: its program and how it is served.
struct LivePort {
    spec: PortSpec,
    plumbing: Plumbing,
    program: SteeringProgram,
    info: PortInfo,
    /// On an uplink: the Service addresses and node ports its program
    /// steers to the switch.
    steered: Option<SteeredServices>,
}

/// What of the Services an uplink's program steers.
#[derive(Debug, Default)]
struct SteeredServices {
    addresses: std::collections::HashSet<std::net::Ipv4Addr>,
    node_ports: std::collections::HashSet<(u8, u16)>,
}

impl LivePort {
    /// Brings the program's Service steering to exactly `table`'s.
    fn steer_services(&mut self, table: &ServiceTable) -> Result<(), DaemonError> {
        let Some(steered) = &mut self.steered else {
            return Ok(());
        };
        let addresses: std::collections::HashSet<_> = table.addresses().collect();
        let node_ports: std::collections::HashSet<_> = table.node_ports().collect();
        let delta = crate::services::SteeringDelta {
            add_addresses: addresses.difference(&steered.addresses).copied().collect(),
            del_addresses: steered.addresses.difference(&addresses).copied().collect(),
            add_node_ports: node_ports
                .difference(&steered.node_ports)
                .copied()
                .collect(),
            del_node_ports: steered
                .node_ports
                .difference(&node_ports)
                .copied()
                .collect(),
        };
        self.steer_delta(&delta)
    }

    /// Applies `delta` to the program's Service steering.
    fn steer_delta(&mut self, delta: &crate::services::SteeringDelta) -> Result<(), DaemonError> {
        let Some(steered) = &mut self.steered else {
            return Ok(());
        };
        for &a in &delta.add_addresses {
            self.program.own_prefix(a, 32)?;
            steered.addresses.insert(a);
        }
        for &(proto, port) in &delta.add_node_ports {
            self.program.add_node_port(proto, port)?;
            steered.node_ports.insert((proto, port));
        }
        for a in &delta.del_addresses {
            if steered.addresses.remove(a) {
                self.program.disown_prefix(*a, 32)?;
            }
        }
        for np in &delta.del_node_ports {
            if steered.node_ports.remove(np) {
                self.program.del_node_port(np.0, np.1)?;
            }
        }
        Ok(())
    }
}

/// How a port's interface is set up; a port whose plumbing changes is
/// taken down and set up again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plumbing {
    steering: Steering,
    /// The prefix an uplink steers to the switch (the pod CIDR).
    owned: Option<Ipv4Net>,
}

fn plumbing(spec: &PortSpec, state: &DesiredState, snat_ports: (u16, u16)) -> Plumbing {
    match spec.kind {
        PortKind::Uplink { .. } => Plumbing {
            steering: Steering::Owned {
                vxlan: state.node.vxlan.as_ref().map(|v| (v.vtep_ip, v.udp_port)),
                node: Some(NodeSteering {
                    ip: state.node.node_ip,
                    snat_ports,
                }),
            },
            owned: Some(state.node.pod_cidr),
        },
        PortKind::Pod { .. } | PortKind::Bridged { .. } => Plumbing {
            steering: Steering::All,
            owned: None,
        },
    }
}

/// How one worker reaches one port of a new snapshot.
#[derive(Debug, Clone)]
enum Plan {
    /// Already served this way: keep the slot.
    Keep,
    /// Open sockets with rings of `ring` on these queues (done by the
    /// *open* job).
    Open { queues: Vec<u32>, ring: u32 },
    /// Another worker serves it.
    Remote { owner: usize },
}

/// A socket a worker opened, for the control thread to register.
struct Opened {
    port: String,
    queue: u32,
    fd: RawFd,
    mode: BindMode,
}

pub struct Datapath {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<WorkerCtx>>,
    published: Vec<Arc<Mutex<Option<WorkerStats>>>>,
    jobs: Vec<Sender<Job>>,
    bells: Vec<Arc<Doorbell>>,
    /// In snapshot order; programs are detached when they drop, after the
    /// workers' sockets.
    live: Vec<LivePort>,
    /// The running workers, in order; empty once stopped.
    pub workers: Vec<WorkerInfo>,
    desired: DesiredState,
    snapshot: Arc<Snapshot>,
    missing: Vec<String>,
    settings: DatapathSettings,
    /// The capture running (or last run), and its port.
    capture: Option<(Arc<CaptureState>, String)>,
    /// The generation the next snapshot gets.
    next_generation: u64,
    /// The flow cache and the connection table every worker shares.
    flows: Arc<FlowTable>,
    conntrack: Arc<Conntrack>,
    /// SNAT ports and Service affinity, shared by every worker.
    nat: Arc<NatTables>,
    epoch: Instant,
    /// Ages flows out (see [`age_flows`]); stops with the workers.
    ager: Option<JoinHandle<()>>,
}

impl Datapath {
    /// Starts a worker on each of `cores` (none: one unpinned worker) and
    /// applies `state`. `stop` ends them (set it from a signal handler).
    pub fn start(
        state: DesiredState,
        cores: &[usize],
        settings: DatapathSettings,
        stop: Arc<AtomicBool>,
    ) -> Result<Datapath, DaemonError> {
        let cores: Vec<Option<usize>> = if cores.is_empty() {
            vec![None]
        } else {
            let mut sorted = cores.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != cores.len() {
                return Err(DaemonError::DuplicateCore(cores.to_vec()));
            }
            cores.iter().copied().map(Some).collect()
        };
        // The workers start on a snapshot without ports.
        let empty = DesiredState {
            node: xvs_control::state::NodeSpec {
                vxlan: None,
                ..state.node.clone()
            },
            ports: Vec::new(),
            routes: Vec::new(),
            remote_nodes: Vec::new(),
            proxy_arp: Vec::new(),
            rules: Vec::new(),
            services: Default::default(),
        };
        let snapshot = Arc::new(Snapshot::compile_with(
            &empty,
            0,
            None,
            settings.snat_ports,
        )?);
        // SNAT takes ports of the node IP (masquerade) and of the pod
        // network's address (inside the cluster); conntrack gives a port
        // back when it removes the connection that held it.
        let (first, last) = settings.snat_ports;
        let nat = Arc::new(NatTables {
            snat: SnatPool::new(
                &[state.node.node_ip, snapshot.cluster_snat_ip],
                first..=last,
            ),
            affinity: FlowTable::with_capacity(settings.max_affinity),
            snat_exhausted: std::sync::atomic::AtomicU64::new(0),
        });
        let released = Arc::clone(&nat);
        let conntrack = Conntrack::new(settings.max_connections, Timeouts::default())
            .with_on_remove(move |conn| {
                if let Some(s) = conn.nat().snat {
                    if let std::net::IpAddr::V4(a) = s.to.addr {
                        released.snat.release(a, s.to.port);
                    }
                }
            });
        let mut datapath = Datapath {
            stop,
            threads: Vec::new(),
            published: Vec::new(),
            jobs: Vec::new(),
            bells: Vec::new(),
            live: Vec::new(),
            workers: Vec::new(),
            desired: empty,
            snapshot: snapshot.clone(),
            missing: Vec::new(),
            settings,
            capture: None,
            next_generation: 1,
            flows: Arc::new(FlowTable::with_capacity(settings.max_flows)),
            conntrack: Arc::new(conntrack),
            nat,
            epoch: Instant::now(),
            ager: None,
        };
        // Refused here, not at the first port of that kind.
        xvs_hw::xsk::check_ring(settings.pod_ring)?;
        let mesh = handoff::mesh(cores.len()).map_err(DaemonError::Handoff)?;
        let several = cores.len() > 1;
        for (w, (core, (inbox, outboxes))) in cores.into_iter().zip(mesh).enumerate() {
            let xsk = Xsk::new(settings.umem_frames, settings.ring.max(settings.pod_ring))?;
            let mut worker = Worker::with_handoff(
                XskPool { xsk },
                Vec::new(),
                several.then_some(inbox),
                snapshot.clone(),
                PipelineConfig::default(),
            );
            worker.pipeline.set_flow_cache(datapath.flows.clone());
            worker.pipeline.set_conntrack(datapath.conntrack.clone());
            worker.pipeline.set_nat(datapath.nat.clone());
            let (tx, rx) = channel::unbounded();
            let bell = Doorbell::new().map_err(DaemonError::Handoff)?;
            let published = Arc::new(Mutex::new(None));
            let ctx = WorkerCtx {
                worker,
                outboxes,
                jobs: rx,
                bell: bell.clone(),
                opened: HashMap::new(),
                published: published.clone(),
                info: WorkerInfo { core, tid: None },
                epoch: datapath.epoch,
            };
            datapath.published.push(published);
            // On error the datapath drops here and stops the workers
            // already started.
            datapath.spawn(w, core, ctx)?;
            datapath.jobs.push(tx);
            datapath.bells.push(bell);
        }
        datapath.ager = Some(spawn_ager(
            datapath.flows.clone(),
            datapath.conntrack.clone(),
            datapath.nat.clone(),
            datapath.epoch,
            settings.flow_idle,
            datapath.stop.clone(),
        ));
        datapath.apply(state)?;
        Ok(datapath)
    }

    fn spawn(
        &mut self,
        index: usize,
        core: Option<usize>,
        mut ctx: WorkerCtx,
    ) -> Result<(), DaemonError> {
        let stop = self.stop.clone();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("xvs-worker-{index}"))
            .spawn(move || {
                let pinned = core.is_none_or(xvs_hw::cpu::pin_current_thread);
                ctx.info.tid = current_tid();
                let _ = started_tx.send((pinned, ctx.info.tid));
                if pinned {
                    run(ctx, &stop)
                } else {
                    ctx
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

    /// The state the switch was last told to be in (missing ports
    /// included).
    pub fn desired(&self) -> &DesiredState {
        &self.desired
    }

    /// The snapshot the workers run.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// Ports of the desired state whose interface does not exist.
    pub fn missing(&self) -> &[String] {
        &self.missing
    }

    /// The ports in the datapath, in snapshot order.
    pub fn ports(&self) -> impl Iterator<Item = &PortInfo> {
        self.live.iter().map(|p| &p.info)
    }

    /// Converges the datapath to `desired` (see the module
    /// documentation). On error nothing changed.
    pub fn apply(&mut self, desired: DesiredState) -> Result<(), DaemonError> {
        let (effective, missing) = present(&desired, |name| {
            std::path::Path::new("/sys/class/net").join(name).exists()
        });
        let generation = self.next_generation;
        let snapshot = Arc::new(Snapshot::compile_with(
            &effective,
            generation,
            Some(&self.snapshot),
            self.settings.snat_ports,
        )?);
        let snat_ips = self.nat.snat.ips();
        if !snat_ips.contains(&effective.node.node_ip)
            || !snat_ips.contains(&snapshot.cluster_snat_ip)
        {
            let ips: Vec<String> = snat_ips.iter().map(ToString::to_string).collect();
            return Err(DaemonError::NodeFixed(ips.join(" and ")));
        }

        // Reconcile ports by name: kept (index into `live`) or new.
        let workers = self.jobs.len();
        let mut load = vec![0usize; workers];
        // UMEM frames the sockets of each worker may hold: two rings each.
        let mut frames = vec![0u32; workers];
        let mut kept: Vec<Option<usize>> = Vec::with_capacity(effective.ports.len());
        let snat_ports = self.settings.snat_ports;
        for spec in &effective.ports {
            let plumb = plumbing(spec, &effective, snat_ports);
            let old = self
                .live
                .iter()
                .position(|p| p.spec.name == spec.name && p.plumbing == plumb);
            if let Some(j) = old {
                for &w in &self.live[j].info.workers {
                    load[w] += 1;
                    frames[w] = frames[w].saturating_add(2 * self.settings.ring_for(&spec.kind));
                }
            }
            kept.push(old);
        }
        let mut fresh: HashMap<usize, LivePort> = HashMap::new();
        for (i, spec) in effective.ports.iter().enumerate() {
            if kept[i].is_some() {
                continue;
            }
            let plumb = plumbing(spec, &effective, snat_ports);
            let program = SteeringProgram::attach(&spec.name, plumb.steering)?;
            if let Some(cidr) = plumb.owned {
                program.own_prefix(cidr.network(), cidr.prefix_len())?;
            }
            let queues = rx_queues(&spec.name);
            let served_by = (0..queues)
                .map(|_| {
                    let w = (0..workers).min_by_key(|&w| (load[w], w)).unwrap_or(0);
                    load[w] += 1;
                    frames[w] = frames[w].saturating_add(2 * self.settings.ring_for(&spec.kind));
                    w
                })
                .collect();
            fresh.insert(
                i,
                LivePort {
                    spec: spec.clone(),
                    plumbing: plumb,
                    info: PortInfo {
                        name: spec.name.clone(),
                        xdp: program.mode(),
                        bind: BindMode::Copy,
                        queues,
                        workers: served_by,
                    },
                    steered: matches!(spec.kind, PortKind::Uplink { .. })
                        .then(SteeredServices::default),
                    program,
                },
            );
        }
        let need = |w: usize| frames[w].saturating_add(SPARE_FRAMES);
        if let Some(w) = (0..workers).find(|&w| need(w) > self.settings.umem_frames) {
            return Err(DaemonError::UmemFull {
                worker: w,
                sockets: load[w],
                frames: self.settings.umem_frames,
                need: need(w),
            });
        }

        // Service addresses and node ports on the uplinks: all of them on
        // a new program, what changed on a kept one (a kept program that
        // fails is left half-steered; the next change retries it).
        for port in fresh.values_mut() {
            port.steer_services(&snapshot.services)?;
        }
        for &j in kept.iter().flatten() {
            self.live[j].steer_services(&snapshot.services)?;
        }

        // Each worker's plan for each port of the new snapshot.
        let port_of = |i: usize| -> &PortInfo {
            match kept[i] {
                Some(j) => &self.live[j].info,
                None => &fresh[&i].info,
            }
        };
        let plans: Vec<Vec<Plan>> = (0..workers)
            .map(|w| {
                (0..effective.ports.len())
                    .map(|i| {
                        let info = port_of(i);
                        let queues: Vec<u32> = (0..info.queues)
                            .filter(|&q| info.workers[q as usize] == w)
                            .collect();
                        match (queues.is_empty(), kept[i]) {
                            (false, Some(_)) => Plan::Keep,
                            (false, None) => Plan::Open {
                                queues,
                                ring: self.settings.ring_for(&effective.ports[i].kind),
                            },
                            (true, _) => Plan::Remote {
                                owner: info.workers[0],
                            },
                        }
                    })
                    .collect()
            })
            .collect();

        // Open, on every worker; abort everywhere if one fails.
        let names: Vec<String> = effective.ports.iter().map(|p| p.name.clone()).collect();
        let settings = self.settings;
        let opened = self.on_workers(|w| {
            let plan = plans[w].clone();
            let names = names.clone();
            move |ctx: &mut WorkerCtx| open(ctx, &names, &plan, settings)
        });
        let registered = opened.and_then(|opened| {
            for o in opened.into_iter().flatten() {
                let port = fresh
                    .values_mut()
                    .find(|p| p.spec.name == o.port)
                    .ok_or_else(|| DaemonError::Worker(format!("opened unknown {}", o.port)))?;
                port.program.register_socket_fd(o.queue, o.fd)?;
                port.info.bind = o.mode;
            }
            Ok(())
        });
        if let Err(e) = registered {
            let _ = self.on_workers(|_| |ctx: &mut WorkerCtx| abort(ctx));
            return Err(e);
        }
        // From here a worker may run this generation (even if the commit
        // fails on another) and cache flows under it: it is never reused.
        self.next_generation = generation + 1;
        self.on_workers(|w| {
            let plan = plans[w].clone();
            let names = names.clone();
            let snapshot = snapshot.clone();
            move |ctx: &mut WorkerCtx| commit(ctx, snapshot, &names, &plan)
        })?;

        // The new port table; programs of ports that went drop (detach)
        // here, after their sockets closed.
        let mut old: Vec<Option<LivePort>> = self.live.drain(..).map(Some).collect();
        self.live = (0..effective.ports.len())
            .filter_map(|i| match kept[i] {
                Some(j) => old[j].take(),
                None => fresh.remove(&i),
            })
            .collect();
        for gone in old.into_iter().flatten() {
            tracing::info!(port = gone.spec.name, "port removed");
        }
        for name in &missing {
            tracing::warn!(
                port = name,
                "interface does not exist: port left out of the datapath"
            );
        }
        let old = std::mem::replace(&mut self.snapshot, snapshot);
        let swept = flow_cache::revalidate(&self.flows, &old, &self.snapshot);
        tracing::info!(
            generation = self.snapshot.generation,
            kept = swept.kept,
            removed = swept.removed,
            "snapshot published; cached flows revalidated"
        );
        self.desired = desired;
        self.missing = missing;
        Ok(())
    }

    /// Converges the datapath to the desired state with `services` as its
    /// Services, `changed` naming every Service that differs from the
    /// current ones: the Service fast path. Only those Services are
    /// compiled, the rest of the snapshot is shared, the uplinks' steering
    /// changes by what those Services used, and each worker swaps in the
    /// new snapshot between two batches; cached flows stay valid (see
    /// [`Snapshot::with_services`]). Costs `O(changed · log n)` whatever
    /// the number of Services. On error nothing changed.
    pub fn apply_services(
        &mut self,
        services: xvs_control::service::Services,
        changed: &[String],
    ) -> Result<(), DaemonError> {
        let old = Arc::clone(&self.snapshot);
        let changes: Vec<_> = changed
            .iter()
            .map(|name| (name.as_str(), services.get(name)))
            .collect();
        let table = old
            .services
            .update(&changes, &old.facts)
            .map_err(|e| DaemonError::Compile(e.into()))?;
        let touched: Vec<&xvs_control::service::ServiceSpec> = changed
            .iter()
            .flat_map(|name| [old.service_specs.get(name), services.get(name)])
            .flatten()
            .map(|s| &**s)
            .collect();
        let delta = ServiceTable::steering_delta(&old.services, &table, touched.into_iter());
        for port in &mut self.live {
            port.steer_delta(&delta)?;
        }
        let generation = self.next_generation;
        self.next_generation = generation + 1;
        let snapshot = Arc::new(old.with_services(Arc::new(table), services.clone(), generation));
        self.on_workers(|_| {
            let snapshot = Arc::clone(&snapshot);
            move |ctx: &mut WorkerCtx| {
                ctx.worker.pipeline.set_snapshot(snapshot);
                Ok(())
            }
        })?;
        self.snapshot = snapshot;
        self.desired.services = services;
        Ok(())
    }

    /// Runs `make(w)`'s job on every worker `w` and waits for all of them.
    fn on_workers<R: Send + 'static, J>(
        &self,
        make: impl Fn(usize) -> J,
    ) -> Result<Vec<R>, DaemonError>
    where
        J: FnOnce(&mut WorkerCtx) -> Result<R, String> + Send + 'static,
    {
        let replies: Vec<_> = (0..self.jobs.len())
            .map(|w| {
                let (tx, rx) = channel::bounded(1);
                let job = make(w);
                let job: Job = Box::new(move |ctx| {
                    let _ = tx.send(job(ctx));
                });
                if self.jobs[w].send(job).is_err() {
                    return Err(DaemonError::Worker(format!("worker {w} has stopped")));
                }
                self.bells[w].ring();
                Ok(rx)
            })
            .collect::<Result<_, _>>()?;
        let deadline = Instant::now() + JOB_TIMEOUT;
        let mut results = Vec::with_capacity(replies.len());
        let mut first_error = None;
        for (w, rx) in replies.into_iter().enumerate() {
            match rx.recv_deadline(deadline) {
                Ok(Ok(r)) => results.push(r),
                Ok(Err(e)) => {
                    first_error.get_or_insert(DaemonError::Worker(format!("worker {w}: {e}")));
                }
                Err(_) => {
                    first_error.get_or_insert(DaemonError::Worker(format!(
                        "worker {w} did not answer within {JOB_TIMEOUT:?}"
                    )));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(results),
        }
    }

    /// Captures up to `count` frames received on or sent out of port
    /// `port` (`snaplen` bytes of each at most), for at most `timeout`.
    /// `datapath` is locked only to install the taps and to remove them,
    /// not while the frames come in.
    ///
    /// # Errors
    /// [`DaemonError::NoPort`] if the datapath has no port `port`,
    /// [`DaemonError::CaptureBusy`] if another capture runs, or a worker's
    /// failure to take the tap (then no tap is left installed).
    pub fn capture(
        datapath: &Mutex<Datapath>,
        port: &str,
        count: u64,
        snaplen: usize,
        timeout: Duration,
    ) -> Result<CaptureResult, DaemonError> {
        let lock = || datapath.lock().unwrap_or_else(PoisonError::into_inner);
        let mut capture = lock().start_capture(port, count, snaplen)?;
        let result = capture.collect(timeout);
        lock().end_capture(&capture);
        tracing::info!(
            port,
            packets = result.frames.len(),
            dropped = result.dropped,
            interrupted = result.interrupted,
            "capture done"
        );
        Ok(result)
    }

    /// Installs a tap of `port` on every worker.
    fn start_capture(
        &mut self,
        port: &str,
        count: u64,
        snaplen: usize,
    ) -> Result<Capture, DaemonError> {
        if let Some((running, on)) = &self.capture {
            if !running.is_ended() {
                return Err(DaemonError::CaptureBusy(on.clone()));
            }
        }
        let id = self
            .snapshot
            .port_id(port)
            .ok_or_else(|| DaemonError::NoPort {
                name: port.to_string(),
                missing: self.missing.iter().any(|m| m == port),
            })?;
        let capture = Capture::new(id, count, snaplen);
        let installed = self.on_workers(|_| {
            let tap = capture.tap();
            move |ctx: &mut WorkerCtx| {
                // A tap left by an ended capture whose removal failed is
                // replaced; the datapath refused a second live capture.
                ctx.worker.set_tap(tap);
                Ok(())
            }
        });
        if let Err(e) = installed {
            self.end_capture(&capture);
            return Err(e);
        }
        self.capture = Some((capture.state().clone(), port.to_string()));
        tracing::info!(port, count, "capture started");
        Ok(capture)
    }

    /// Ends `capture` and removes its taps (only its own: a worker may
    /// have dropped it for a new snapshot already).
    fn end_capture(&mut self, capture: &Capture) {
        capture.end();
        let state = capture.state().clone();
        let removed = self.on_workers(|_| {
            let state = state.clone();
            move |ctx: &mut WorkerCtx| {
                if ctx.worker.tap().is_some_and(|t| t.feeds(&state)) {
                    ctx.worker.set_tap(None);
                }
                Ok(())
            }
        });
        if let Err(e) = removed {
            // Ended, its taps copy nothing; the next capture replaces them.
            tracing::warn!(error = %e, "removing the capture taps");
        }
    }

    /// The counters as the workers last published them (at most
    /// [`PUBLISH_EVERY`] old), with the steering programs' read now.
    pub fn live_report(&self) -> Report {
        let stats: Vec<WorkerStats> = self
            .published
            .iter()
            .filter_map(|slot| slot.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect();
        self.report(stats)
    }

    /// `stats` summed into a report over the current ports.
    fn report(&self, stats: Vec<WorkerStats>) -> Report {
        let mut ports: Vec<PortReport> = self
            .live
            .iter()
            .map(|p| PortReport {
                name: p.spec.name.clone(),
                counters: PortCounters::default(),
                steering: p.program.counters().ok(),
            })
            .collect();
        let mut drops = [0u64; DropReason::COUNT];
        let mut workers = Vec::new();
        for w in stats {
            for (name, c) in &w.ports {
                if let Some(port) = ports.iter_mut().find(|p| &p.name == name) {
                    port.counters.add(c);
                }
            }
            for (sum, n) in drops.iter_mut().zip(w.drops) {
                *sum += n;
            }
            workers.push(w.report);
        }
        let drops = DropReason::ALL
            .iter()
            .map(|r| (r.name(), drops[*r as usize]))
            .filter(|(_, n)| *n > 0)
            .collect();
        Report {
            ports,
            workers,
            drops,
        }
    }

    /// The flow cache.
    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }

    /// The connections of routed traffic.
    pub fn conntrack(&self) -> &Conntrack {
        &self.conntrack
    }

    /// Per SNAT source address: ports in use, and how many there are.
    pub fn snat_ports(&self) -> Vec<(std::net::Ipv4Addr, usize, usize)> {
        let pool = &self.nat.snat;
        pool.ips()
            .iter()
            .filter_map(|&ip| pool.ports(ip).map(|p| (ip, p.in_use(), p.capacity())))
            .collect()
    }

    /// The datapath clock's reading (the time base of flow ages).
    pub fn now_ns(&self) -> u64 {
        nanos_since(self.epoch)
    }

    /// Stops the workers and returns their counters. The sockets close
    /// here; the XDP programs are detached when `self` drops.
    pub fn stop(&mut self) -> Option<Report> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ager) = self.ager.take() {
            let _ = ager.join();
        }
        self.workers.clear();
        let stats: Vec<WorkerStats> = self
            .threads
            .drain(..)
            .filter_map(|t| t.join().ok())
            .map(|ctx| ctx.stats())
            .collect();
        if stats.is_empty() {
            return None;
        }
        Some(self.report(stats))
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `desired` without the ports whose interface does not exist (and the
/// static routes through them), and the names of those ports. The uplink
/// is never left out: without it the node is not switched at all, and
/// attaching to it fails with a clear error.
fn present(desired: &DesiredState, exists: impl Fn(&str) -> bool) -> (DesiredState, Vec<String>) {
    let mut effective = desired.clone();
    let missing: Vec<String> = desired
        .ports
        .iter()
        .filter(|p| !matches!(p.kind, PortKind::Uplink { .. }) && !exists(&p.name))
        .map(|p| p.name.clone())
        .collect();
    effective.ports.retain(|p| !missing.contains(&p.name));
    effective.routes.retain(|r| !missing.contains(&r.port));
    // Rules that name a missing port (in_port= or output:) wait with it.
    effective.rules.retain(|r| {
        let named = r
            .matches
            .in_port
            .iter()
            .chain(r.actions.iter().filter_map(|a| match a {
                xvs_control::flowrule::RuleAction::Output(port) => Some(port),
                _ => None,
            }));
        !named.into_iter().any(|p| missing.contains(p))
    });
    (effective, missing)
}

/// The *open* job: sockets for every port this worker is to open.
fn open(
    ctx: &mut WorkerCtx,
    names: &[String],
    plan: &[Plan],
    settings: DatapathSettings,
) -> Result<Vec<Opened>, String> {
    let mut opened = Vec::new();
    for (name, plan) in names.iter().zip(plan) {
        let Plan::Open { queues, ring } = plan else {
            continue;
        };
        let mut ids = Vec::new();
        for &queue in queues {
            let xsk = &mut ctx.worker.pool.xsk;
            match xsk.add_socket(name, queue, *ring, settings.force_copy) {
                Ok(id) => {
                    xsk.refill(id, 0);
                    opened.push(Opened {
                        port: name.clone(),
                        queue,
                        fd: xsk.fd(id).as_raw_fd(),
                        mode: xsk.mode(id),
                    });
                    ids.push(id);
                }
                Err(e) => {
                    ctx.opened.insert(name.clone(), ids);
                    abort(ctx)?;
                    return Err(format!("port {name} queue {queue}: {e}"));
                }
            }
        }
        ctx.opened.insert(name.clone(), ids);
    }
    Ok(opened)
}

/// The *abort* job: closes what *open* opened.
fn abort(ctx: &mut WorkerCtx) -> Result<(), String> {
    for (_, ids) in ctx.opened.drain() {
        for id in ids {
            ctx.worker.pool.xsk.remove_socket(id);
        }
    }
    Ok(())
}

/// The *commit* job: the new port table and snapshot; sockets of ports
/// not kept are closed. A plan that does not fit what the worker has (a
/// bug) changes nothing and closes what *open* opened.
fn commit(
    ctx: &mut WorkerCtx,
    snapshot: Arc<Snapshot>,
    names: &[String],
    plan: &[Plan],
) -> Result<(), String> {
    let current: Vec<&str> = ctx
        .worker
        .pipeline
        .snapshot()
        .ports
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    for (name, plan) in names.iter().zip(plan) {
        let fits = match plan {
            Plan::Keep => current
                .iter()
                .position(|n| n == name)
                .is_some_and(|i| matches!(ctx.worker.ports[i], PortSlot::Local(_))),
            Plan::Open { .. } => ctx.opened.get(name).is_some_and(|ids| !ids.is_empty()),
            Plan::Remote { owner } => ctx.outboxes.get(*owner).is_some_and(Option::is_some),
        };
        if !fits {
            abort(ctx)?;
            return Err(format!("the plan for port {name} ({plan:?}) does not fit"));
        }
    }
    let mut old: HashMap<String, (PortSlot<XskPort>, PortCounters)> = ctx
        .worker
        .take_ports()
        .into_iter()
        .map(|(name, slot, counters)| (name, (slot, counters)))
        .collect();
    let mut ports = Vec::with_capacity(names.len());
    for (name, plan) in names.iter().zip(plan) {
        let kept = old.remove(name);
        let counters = kept.as_ref().map(|(_, c)| *c).unwrap_or_default();
        let slot = match (plan, kept) {
            (Plan::Keep, Some((slot, _))) => slot,
            (Plan::Remote { owner }, kept) => {
                if let Some((PortSlot::Local(p), _)) = kept {
                    close(&mut ctx.worker.pool.xsk, &p);
                }
                PortSlot::Remote(ctx.outboxes[*owner].clone().expect("checked above"))
            }
            (_, kept) => {
                if let Some((PortSlot::Local(p), _)) = kept {
                    close(&mut ctx.worker.pool.xsk, &p);
                }
                PortSlot::Local(XskPort::new(ctx.opened.remove(name).unwrap_or_default()))
            }
        };
        ports.push((slot, counters));
    }
    for (_, (slot, _)) in old {
        if let PortSlot::Local(p) = slot {
            close(&mut ctx.worker.pool.xsk, &p);
        }
    }
    ctx.opened.clear();
    ctx.worker.install(snapshot, ports);
    Ok(())
}

fn close(xsk: &mut Xsk, port: &XskPort) {
    for &id in port.sockets() {
        xsk.remove_socket(id);
    }
}

/// The kernel's id of the calling thread, from the `/proc/thread-self`
/// link (`<pid>/task/<tid>`).
pub(crate) fn current_tid() -> Option<u32> {
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

/// The poll loop of a worker, until `stop`.
fn run(mut ctx: WorkerCtx, stop: &AtomicBool) -> WorkerCtx {
    let publish_ns = u64::try_from(PUBLISH_EVERY.as_nanos()).unwrap_or(u64::MAX);
    let mut published_ns = 0;
    let mut empty = 0u32;
    while !stop.load(Ordering::Relaxed) {
        while let Ok(job) = ctx.jobs.try_recv() {
            job(&mut ctx);
        }
        let now = nanos_since(ctx.epoch);
        if now.saturating_sub(published_ns) >= publish_ns {
            ctx.publish();
            published_ns = now;
        }
        if ctx.worker.poll(now) > 0 {
            empty = 0;
            continue;
        }
        empty = empty.saturating_add(1);
        if empty < BUSY_ROUNDS {
            std::hint::spin_loop();
            continue;
        }
        if !sleep(&ctx) {
            // poll(2) itself failing (it should not): do not spin.
            std::thread::sleep(Duration::from_millis(1));
        }
        ctx.worker.account_idle();
    }
    ctx
}

fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// How often the ager sweeps the flow cache.
const AGE_EVERY: Duration = Duration::from_secs(1);

/// Starts the thread that removes flows idle for longer than `idle` and
/// expired connections, once per [`AGE_EVERY`], until `stop` (OVS's
/// revalidator threads do the same with `max-idle`). It shares the tables
/// with the workers and never blocks them.
fn spawn_ager(
    flows: Arc<FlowTable>,
    conntrack: Arc<Conntrack>,
    nat: Arc<NatTables>,
    epoch: Instant,
    idle: Duration,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    let affinity_ns = u64::from(xvs_control::service::MAX_AFFINITY_TIMEOUT_SECS) * 1_000_000_000;
    let mut exhausted_seen = 0;
    let idle_ns = u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX);
    std::thread::Builder::new()
        .name("xvs-flow-ager".into())
        .spawn(move || {
            let tick = Duration::from_millis(100);
            let mut waited = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                waited += tick;
                if waited < AGE_EVERY {
                    continue;
                }
                waited = Duration::ZERO;
                let now = nanos_since(epoch);
                let aged = flows.retain(|f| now.saturating_sub(f.last_seen) < idle_ns);
                let expired = conntrack.expire(now);
                // Affinity older than the longest timeout is no use to
                // any Service (each checks its own timeout on lookup).
                nat.affinity
                    .retain(|f| now.saturating_sub(f.last_seen) < affinity_ns);
                if aged + expired > 0 {
                    tracing::debug!(aged, expired, "idle flows and expired connections removed");
                }
                let exhausted = nat.snat_exhausted.load(Ordering::Relaxed);
                if exhausted != exhausted_seen {
                    for ip in nat.snat.ips() {
                        let ports = nat.snat.ports(*ip);
                        tracing::warn!(
                            refused = exhausted - exhausted_seen,
                            %ip,
                            in_use = ports.map_or(0, |p| p.in_use()),
                            capacity = ports.map_or(0, |p| p.capacity()),
                            "SNAT ports exhausted: new connections needing a source port \
                             were dropped (snat_ports_exhausted); widen --snat-ports or \
                             shorten connection timeouts"
                        );
                    }
                    exhausted_seen = exhausted;
                }
            }
        })
        .expect("spawning the flow ager")
}

/// Sleeps until a socket, the hand-off doorbell or the job doorbell has
/// something, or [`IDLE_WAIT_MS`]; `false` if `poll(2)` failed.
fn sleep(ctx: &WorkerCtx) -> bool {
    let worker = &ctx.worker;
    if !ctx.jobs.is_empty() {
        return true;
    }
    let ok = match worker.inbox() {
        None => worker
            .pool
            .xsk
            .wait_rx(&[ctx.bell.fd()], IDLE_WAIT_MS)
            .is_ok(),
        Some(inbox) => {
            if !inbox.prepare_sleep() {
                return true;
            }
            let ok = worker
                .pool
                .xsk
                .wait_rx(&[inbox.doorbell_fd(), ctx.bell.fd()], IDLE_WAIT_MS)
                .is_ok();
            inbox.woke();
            ok
        }
    };
    ctx.bell.drain();
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use xvs_control::state::{MacAddr, NodeSpec, RouteSpec};

    fn port(name: &str, kind: PortKind) -> PortSpec {
        PortSpec {
            attachment: None,
            name: name.into(),
            kind,
            mtu: 1500,
        }
    }

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

    #[test]
    fn ports_without_an_interface_are_left_out_with_their_routes() {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let state = DesiredState {
            node: NodeSpec {
                node_ip: "192.168.0.1".parse().unwrap(),
                pod_cidr: "10.244.1.0/24".parse().unwrap(),
                gateway_ip: xvs_control::state::DEFAULT_POD_GATEWAY,
                gateway_mac: xvs_control::state::DEFAULT_GATEWAY_MAC,
                vxlan: None,
                cluster_cidr: None,
            },
            ports: vec![
                port("eth0", PortKind::Uplink { mac }),
                port(
                    "gone",
                    PortKind::Pod {
                        ip: "10.244.1.2".parse().unwrap(),
                        mac,
                    },
                ),
                port("here", PortKind::Bridged { domain: 1 }),
            ],
            routes: vec![RouteSpec {
                prefix: "10.9.0.0/16".parse().unwrap(),
                port: "gone".into(),
                next_hop_mac: mac,
            }],
            remote_nodes: Vec::new(),
            proxy_arp: Vec::new(),
            rules: [
                "in_port=gone actions=drop",
                "in_port=here actions=output:gone",
                "in_port=here actions=output:eth0",
            ]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect(),
            services: Default::default(),
        };
        let (effective, missing) = present(&state, |name| name == "here");
        let rules: Vec<String> = effective.rules.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            rules,
            ["in_port=here actions=output:eth0"],
            "rules naming a missing port wait with it"
        );
        assert!(Snapshot::compile(&effective, 1).is_ok());
        assert_eq!(missing, ["gone"]);
        let names: Vec<&str> = effective.ports.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["eth0", "here"], "the uplink is never left out");
        assert!(effective.routes.is_empty());
        let (all, none) = present(&state, |_| true);
        assert_eq!((all, none.is_empty()), (state, true));
    }
}
