//! One trial (the sink listening, the generator sending at a rate for a
//! while) and the RFC 2544 search for the highest rate a DUT forwards with
//! less than 0.1% loss.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::dut::Traffic;
use super::sh::{quietly, run};
use super::topology::{GEN_NS, SINK_NS};
use super::BenchError;

/// What a trial offers.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Load {
    pub flows: u32,
    /// Packets per second; `None`: as fast as the generator goes.
    pub rate: Option<u64>,
    pub seconds: f64,
    /// Wire size in bytes (FCS included).
    pub size: u16,
    pub gen_core: usize,
}

/// Latency percentiles in ns (bucket floors of the sink's histogram).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Latency {
    pub p50: Option<u64>,
    pub p90: Option<u64>,
    pub p99: Option<u64>,
    #[serde(rename = "p99.9")]
    pub p999: Option<u64>,
    pub max: Option<u64>,
}

/// What a trial measured.
#[derive(Debug, Clone, Serialize)]
pub struct TrialResult {
    pub requested_pps: Option<u64>,
    pub offered_pps: f64,
    pub delivered_pps: f64,
    pub sent: u64,
    pub received: u64,
    /// Lost fraction of what was sent.
    pub loss: f64,
    pub reordered: u64,
    pub flows_seen: u64,
    pub latency: Latency,
    /// The sink's latency histogram: (bucket floor ns, packets), non-empty
    /// buckets only.
    pub latency_histogram: Vec<(u64, u64)>,
}

/// Runs one trial of `load` with `traffic` through whatever DUT is up.
pub fn trial(pktgen: &Path, traffic: &Traffic, load: &Load) -> Result<TrialResult, BenchError> {
    let mut sink = Command::new("ip");
    sink.args(["netns", "exec", SINK_NS])
        .arg(pktgen)
        .args(["sink", "--dev", "eth0"])
        .args(["--flows", &load.flows.to_string()])
        .args(["--seconds", &(load.seconds + 30.0).to_string()]);
    if let Some(port) = traffic.sink_vxlan_port {
        sink.args(["--vxlan-port", &port.to_string()]);
    }
    let mut sink = sink
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = sink.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(line) if line.contains("sink ready") => {}
        other => {
            let _ = sink.kill();
            return Err(BenchError::Dut(format!(
                "the sink did not start: {other:?}"
            )));
        }
    }
    let rate = load
        .rate
        .map_or_else(|| "max".to_string(), |r| r.to_string());
    let gen = run(&format!(
        "ip netns exec {GEN_NS} {} gen --dev eth0 --dst-mac {} --src-ip {} --dst-ip {} \
         --dst-port {} --vary {} --flows {} --size {} --rate {rate} --seconds {} --core {}",
        pktgen.display(),
        traffic.dst_mac,
        traffic.src_ip,
        traffic.dst_ip,
        traffic.dst_port,
        traffic.vary,
        load.flows,
        load.size,
        load.seconds,
        load.gen_core,
    ));
    // Frames still queued in the DUT arrive within a few ms.
    std::thread::sleep(Duration::from_millis(300));
    quietly(&format!("kill -TERM {}", sink.id()));
    let out = sink.wait_with_output()?;
    let gen: Value = serde_json::from_str(&gen?)?;
    let sink: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        BenchError::Dut(format!(
            "the sink's report: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        ))
    })?;
    Ok(result(load.rate, &gen, &sink))
}

/// Reads the generator's and the sink's JSON lines.
fn result(requested: Option<u64>, gen: &Value, sink: &Value) -> TrialResult {
    let sent = gen["sent"].as_u64().unwrap_or(0);
    let seconds = gen["seconds"].as_f64().unwrap_or(0.0);
    let received = sink["received"].as_u64().unwrap_or(0);
    #[allow(clippy::cast_precision_loss)]
    let per_second = |n: u64| {
        if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        }
    };
    #[allow(clippy::cast_precision_loss)]
    let loss = if sent == 0 {
        1.0
    } else {
        sent.saturating_sub(received) as f64 / sent as f64
    };
    TrialResult {
        requested_pps: requested,
        offered_pps: per_second(sent),
        delivered_pps: per_second(received),
        sent,
        received,
        loss,
        reordered: sink["reordered"].as_u64().unwrap_or(0),
        flows_seen: sink["flows_seen"].as_u64().unwrap_or(0),
        latency: serde_json::from_value(sink["latency_ns"].clone()).unwrap_or_default(),
        latency_histogram: serde_json::from_value(sink["latency_histogram"].clone())
            .unwrap_or_default(),
    }
}

/// The loss RFC 2544's throughput allows here: below 0.1%.
pub const LOSS_LIMIT: f64 = 0.001;

/// The result of a search.
#[derive(Debug, Clone, Serialize)]
pub struct Search {
    /// The trial at the generator's full rate: offered vs delivered.
    pub max: TrialResult,
    /// The highest rate offered with loss below [`LOSS_LIMIT`] (0 if none).
    pub ndr_pps: f64,
    /// Every trial of the search, in order.
    pub steps: Vec<TrialResult>,
}

/// RFC 2544 throughput: a trial at full rate, then a binary search
/// between 0 and that offered rate, starting just below what the DUT
/// delivered at full rate (the likely answer, so few steps are wasted),
/// for `steps` trials.
pub fn search(
    mut trial: impl FnMut(Option<u64>) -> Result<TrialResult, BenchError>,
    steps: usize,
) -> Result<Search, BenchError> {
    let max = trial(None)?;
    let mut found = Search {
        ndr_pps: 0.0,
        steps: Vec::new(),
        max: max.clone(),
    };
    if max.loss < LOSS_LIMIT {
        found.ndr_pps = max.offered_pps;
        return Ok(found);
    }
    let (mut lo, mut hi) = (0.0f64, max.offered_pps);
    let mut rate = (max.delivered_pps * 0.98).min(hi);
    for _ in 0..steps {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let r = trial(Some(rate.max(1.0) as u64))?;
        if r.loss < LOSS_LIMIT {
            lo = rate;
            found.ndr_pps = found.ndr_pps.max(r.offered_pps);
        } else {
            hi = rate;
        }
        found.steps.push(r);
        rate = (lo + hi) / 2.0;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DUT that forwards up to `capacity` pps and drops the rest; the
    /// generator reaches 10 Mpps.
    fn fake(capacity: u64) -> impl FnMut(Option<u64>) -> Result<TrialResult, BenchError> {
        move |rate| {
            let offered = rate.unwrap_or(10_000_000);
            Ok(result(
                rate,
                &serde_json::json!({"sent": offered, "seconds": 1.0}),
                &serde_json::json!({"received": offered.min(capacity)}),
            ))
        }
    }

    #[test]
    fn converges_below_the_capacity() {
        let s = search(fake(1_234_000), 7).unwrap();
        assert_eq!(s.steps.len(), 7);
        assert!(
            s.ndr_pps <= 1.234e6 && s.ndr_pps > 1.234e6 * 0.97,
            "{}",
            s.ndr_pps
        );
        assert!((s.max.delivered_pps - 1.234e6).abs() < 1.0);
        assert!((s.max.loss - (1.0 - 0.1234)).abs() < 1e-6);
    }

    #[test]
    fn a_lossless_dut_needs_one_trial() {
        let s = search(fake(20_000_000), 7).unwrap();
        assert!(s.steps.is_empty());
        assert_eq!(s.ndr_pps, 10e6);
    }

    #[test]
    fn a_dut_that_drops_everything_has_no_throughput() {
        let s = search(fake(0), 4).unwrap();
        assert_eq!(s.ndr_pps, 0.0);
        assert!(s.steps.iter().all(|t| t.loss == 1.0));
    }

    #[test]
    fn missing_fields_read_as_nothing_sent() {
        let r = result(None, &serde_json::json!({}), &serde_json::json!({}));
        assert_eq!((r.sent, r.received, r.loss), (0, 0, 1.0));
    }
}
