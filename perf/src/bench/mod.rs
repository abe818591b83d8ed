//! The benchmark runner behind `make perf` (`xvs-bench`).
//!
//! For each device under test it builds a fresh generator → DUT → sink
//! topology of network namespaces ([`topology`]), starts the DUT
//! ([`dut`]), and measures with xvs-pktgen ([`trial`]): the generator's
//! full rate (offered vs delivered), the RFC 2544 no-drop rate by binary
//! search, and latency at half of it, at each number of flows (and, for
//! the DUTs that proxy a Kubernetes Service, each number of Services
//! programmed: [`services`]). A run is
//! written as JSON; the runs of an invocation are summarised as medians
//! with their spread in Markdown ([`results`]) and PNG plots ([`plot`]).
//!
//! The runner drives everything through the same command lines a person
//! would type (`ip`, `nft`, `xvsd`, `xvs-pktgen`, the peers' scripts), so a
//! surprising number can be reproduced by hand.

pub mod dut;
pub mod plot;
pub mod results;
pub mod services;
mod sh;
pub mod topology;
pub mod trial;

pub use sh::run as run_command;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("`{cmd}` failed: {output}")]
    Command { cmd: String, output: String },
    #[error("{0}")]
    Dut(String),
    #[error("plotting: {0}")]
    Plot(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("reading a report: {0}")]
    Json(#[from] serde_json::Error),
}
