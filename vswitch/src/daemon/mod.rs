//! xvsd: the datapath wired to real interfaces.
//!
//! - [`config`]: the TOML file and flags, turned into a desired state;
//! - [`store`]: the desired state persisted under `/var/lib/xvs`, so a
//!   restarted xvsd comes back with every port attached;
//! - [`datapath`]: the workers, their AF_XDP sockets and the XDP steering
//!   programs, and how a new desired state is applied while they run;
//! - [`control`]: what xvsd answers on its control socket;
//! - [`metrics`]: the Prometheus endpoint.
//!
//! Each worker thread (named `xvs-worker-{i}`) reports its kernel thread
//! id at start ([`WorkerInfo`]), so a benchmark can `perf stat -t` exactly
//! it. At stop the workers' counters come back as a [`Report`], which
//! serializes (xvsd writes it as JSON with [`write_atomically`]); `hw`'s
//! counter types are serialized here, field for field, so `hw` needs no
//! serde. A crash leaves the XDP programs attached, and the next start
//! replaces them (see `xvs_hw::steer`).

pub mod config;
pub mod control;
pub mod datapath;
mod flows;
pub mod metrics;
mod services;
pub mod store;

pub use datapath::{Datapath, DatapathSettings, PortInfo, WorkerInfo};

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

use xvs_hw::steer::{SteerCounters, SteerError};
use xvs_hw::xsk::{Accounting, SocketStats, XskError};

use crate::snapshot::CompileError;
use crate::worker::{PortCounters, StageTimes};
use config::ConfigError;

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
    #[error("cores {0:?}: a core may serve one worker only")]
    DuplicateCore(Vec<usize>),
    #[error("core {0} does not exist or may not be used by this process")]
    Pin(usize),
    #[error("cannot set up the hand-off between workers: {0}")]
    Handoff(std::io::Error),
    #[error("worker {worker} would serve {sockets} sockets, which need {need} UMEM frames; it has {frames} (raise --umem-frames, or lower --pod-ring-size or --ring-size)")]
    UmemFull {
        worker: usize,
        sockets: usize,
        frames: u32,
        need: u32,
    },
    #[error("{0}")]
    Worker(String),
    #[error("no port {name} in the datapath{}", if *missing { " (its interface does not exist)" } else { "" })]
    NoPort { name: String, missing: bool },
    #[error("a capture is already running on port {0}; wait for it to end")]
    CaptureBusy(String),
    #[error("the node IP and pod CIDR are fixed while xvsd runs (SNAT ports are allocated on {0}); restart xvsd to change them")]
    NodeFixed(String),
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
    /// Packets handed over by others under an older snapshot, dropped.
    pub handoff_stale: u64,
    /// Packets its tx rings had no room for.
    pub tx_ring_full: u64,
    /// Flow cache: packets that hit, packets that missed, flows added.
    pub flow_hits: u64,
    pub flow_misses: u64,
    pub flows_added: u64,
    /// Connections it started tracking, and packets invalid in their
    /// connection's state.
    pub ct_created: u64,
    pub ct_invalid: u64,
    /// New connections load-balanced to a Service endpoint, masqueraded,
    /// and refused with a TCP RST.
    pub svc_connections: u64,
    pub snat_connections: u64,
    pub tcp_resets: u64,
    /// Service connections given another source port on a clash.
    pub nat_port_remaps: u64,
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

#[cfg(test)]
mod tests {
    use super::*;

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
                handoff_stale: 0,
                tx_ring_full: 0,
                flow_hits: 2,
                flow_misses: 1,
                flows_added: 1,
                ct_created: 1,
                ct_invalid: 0,
                svc_connections: 0,
                snat_connections: 0,
                tcp_resets: 0,
                nat_port_remaps: 0,
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
