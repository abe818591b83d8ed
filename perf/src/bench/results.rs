//! What a run records (one JSON file per run), and the summary over runs:
//! medians with their spread, as a Markdown table with ratios to peers.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::trial::{Latency, Search, TrialResult};

/// The machine a run was made on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub kernel: String,
}

impl Machine {
    pub fn this() -> Machine {
        Machine {
            cpu: crate::report::cpu_model(),
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".into(), |s| s.trim().to_string()),
        }
    }
}

/// One DUT at one number of flows (and of Services, for a DUT that takes
/// them).
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub dut: &'static str,
    /// Services programmed, the measured one included (`xvsd-service`,
    /// `nft-dnat`); absent for the other DUTs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<u32>,
    pub flows: u32,
    pub search: Search,
    /// A trial at half the no-drop rate, for latency.
    pub at_half: Option<TrialResult>,
    /// What the DUT said about itself when stopped (xvsd's report, a
    /// peer's counters).
    pub dut_report: Option<serde_json::Value>,
}

/// xvsd's cost per packet from `perf stat` on its worker thread, and the
/// worker's own split of that time by stage.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    pub dut: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<u32>,
    pub offered_pps: f64,
    /// Packets the worker received in the measured window.
    pub packets: u64,
    pub task_clock_ns: f64,
    pub ns_per_packet: f64,
    /// From the `cycles` counter when the machine has it, else task-clock
    /// times the TSC rate (see `cycles_source`).
    pub cycles_per_packet: Option<f64>,
    pub cycles_source: String,
    pub instructions_per_packet: Option<f64>,
    /// The worker's stage times (xvsd's report).
    pub stages: Option<serde_json::Value>,
}

/// One invocation's run `run` (of `runs`).
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub run: usize,
    pub machine: Machine,
    pub settings: serde_json::Value,
    /// Which core does which part of the work.
    pub placement: Vec<String>,
    pub cases: Vec<Case>,
    pub costs: Vec<Cost>,
}

/// Median, min and max of the same number over runs.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// How tables and plots name a DUT: its name, and the Services it had if
/// it takes them ("xvsd-service (10000 svc)").
pub fn dut_label(dut: &str, services: Option<u32>) -> String {
    match services {
        Some(n) => format!("{dut} ({n} svc)"),
        None => dut.to_string(),
    }
}

/// A (DUT, Services, flows) row of the summary, in Mpps and µs.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub dut: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<u32>,
    pub flows: u32,
    pub runs: usize,
    pub offered_mpps: Spread,
    pub delivered_mpps: Spread,
    pub ndr_mpps: Spread,
    /// Latency at half the no-drop rate, µs: p50, p99, p99.9 (medians).
    pub latency_us: [Option<f64>; 3],
}

impl Row {
    /// [`dut_label`].
    pub fn label(&self) -> String {
        dut_label(self.dut, self.services)
    }
}

/// Medians over runs for each (DUT, Services, flows), in the order first
/// seen.
pub fn summarize(runs: &[Run]) -> Vec<Row> {
    type Key = (&'static str, Option<u32>, u32);
    let mut order: Vec<Key> = Vec::new();
    let mut by: BTreeMap<Key, Vec<&Case>> = BTreeMap::new();
    for case in runs.iter().flat_map(|r| &r.cases) {
        let key = (case.dut, case.services, case.flows);
        if !by.contains_key(&key) {
            order.push(key);
        }
        by.entry(key).or_default().push(case);
    }
    let mpps = |cases: &[&Case], f: &dyn Fn(&Case) -> f64| {
        let v: Vec<f64> = cases.iter().map(|c| f(c) / 1e6).collect();
        Spread::of(&v).unwrap_or(Spread {
            median: 0.0,
            min: 0.0,
            max: 0.0,
        })
    };
    let latency = |cases: &[&Case], f: &dyn Fn(&Latency) -> Option<u64>| {
        #[allow(clippy::cast_precision_loss)]
        let v: Vec<f64> = cases
            .iter()
            .filter_map(|c| c.at_half.as_ref().and_then(|t| f(&t.latency)))
            .map(|ns| ns as f64 / 1000.0)
            .collect();
        Spread::of(&v).map(|s| s.median)
    };
    order
        .into_iter()
        .map(|key| {
            let cases = &by[&key];
            Row {
                dut: key.0,
                services: key.1,
                flows: key.2,
                runs: cases.len(),
                offered_mpps: mpps(cases, &|c| c.search.max.offered_pps),
                delivered_mpps: mpps(cases, &|c| c.search.max.delivered_pps),
                ndr_mpps: mpps(cases, &|c| c.search.ndr_pps),
                latency_us: [
                    latency(cases, &|l| l.p50),
                    latency(cases, &|l| l.p99),
                    latency(cases, &|l| l.p999),
                ],
            }
        })
        .collect()
}

/// "1", "1K", "100K".
pub fn flows_label(flows: u32) -> String {
    match flows {
        f if f >= 1000 && f % 1000 == 0 => format!("{}K", f / 1000),
        f => f.to_string(),
    }
}

/// The row of `peer` to compare `r` with: at the same flows, and at the
/// same Services where both take them (else `peer`'s first).
fn peer_row<'a>(rows: &'a [Row], r: &Row, peer: &str) -> Option<&'a Row> {
    let mut same = rows.iter().filter(|b| b.dut == peer && b.flows == r.flows);
    match r.services {
        Some(n) => same
            .clone()
            .find(|b| b.services == Some(n))
            .or_else(|| same.next()),
        None => same.next(),
    }
}

/// The summary as Markdown: a row per (DUT, Services, flows), with each
/// DUT's no-drop rate as a ratio to each of `peers` at the same flows
/// (and Services).
pub fn markdown(rows: &[Row], peers: &[&str]) -> String {
    let peers: Vec<&str> = peers
        .iter()
        .copied()
        .filter(|p| rows.iter().any(|r| r.dut == *p))
        .collect();
    let mut s = String::from(
        "| DUT | flows | offered Mpps | delivered Mpps | NDR Mpps (<0.1% loss), median [min–max] |",
    );
    for p in &peers {
        let _ = write!(s, " NDR ÷ {p} |");
    }
    s.push_str(" p50 µs | p99 µs | p99.9 µs |\n|---|---:|---:|---:|---:|");
    for _ in &peers {
        s.push_str("---:|");
    }
    s.push_str("---:|---:|---:|\n");
    let us = |v: Option<f64>| v.map_or_else(|| "–".into(), |v| format!("{v:.1}"));
    for r in rows {
        let _ = write!(
            s,
            "| {} | {} | {:.2} | {:.2} | {:.2} [{:.2}–{:.2}] |",
            r.label(),
            flows_label(r.flows),
            r.offered_mpps.median,
            r.delivered_mpps.median,
            r.ndr_mpps.median,
            r.ndr_mpps.min,
            r.ndr_mpps.max
        );
        for p in &peers {
            let base = peer_row(rows, r, p).map(|b| b.ndr_mpps.median);
            match base {
                Some(b) if b > 0.0 => {
                    let _ = write!(s, " {:.2} |", r.ndr_mpps.median / b);
                }
                _ => s.push_str(" – |"),
            }
        }
        let _ = writeln!(
            s,
            " {} | {} | {} |",
            us(r.latency_us[0]),
            us(r.latency_us[1]),
            us(r.latency_us[2])
        );
    }
    s
}

/// xvsd's Services against kube-proxy's nftables DNAT: the no-drop rate of
/// each at every (Services, flows) both were measured at, and their ratio.
/// Empty unless both were.
pub fn services_markdown(rows: &[Row]) -> String {
    let (ours, theirs) = ("xvsd-service", "nft-dnat");
    let pairs: Vec<(&Row, &Row)> = rows
        .iter()
        .filter(|r| r.dut == ours)
        .filter_map(|r| {
            let peer = rows
                .iter()
                .find(|b| b.dut == theirs && b.services == r.services && b.flows == r.flows)?;
            Some((r, peer))
        })
        .collect();
    if pairs.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "| Services | flows | {ours} NDR Mpps | {theirs} NDR Mpps | {ours} ÷ {theirs} |\n|---:|---:|---:|---:|---:|\n"
    );
    for (r, b) in pairs {
        let ratio = if b.ndr_mpps.median > 0.0 {
            format!("{:.2}", r.ndr_mpps.median / b.ndr_mpps.median)
        } else {
            "–".into()
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:.2} | {:.2} | {ratio} |",
            r.services.unwrap_or(1),
            flows_label(r.flows),
            r.ndr_mpps.median,
            b.ndr_mpps.median,
        );
    }
    s
}

/// The per-packet cost table.
pub fn cost_markdown(costs: &[Cost]) -> String {
    let mut s = String::from(
        "| DUT | offered Mpps | worker ns/packet | cycles/packet | cycles from | stage split of busy time |\n|---|---:|---:|---:|---|---|\n",
    );
    for c in costs {
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.0} | {} | {} | {} |",
            dut_label(c.dut, c.services),
            c.offered_pps / 1e6,
            c.ns_per_packet,
            c.cycles_per_packet
                .map_or_else(|| "–".into(), |v| format!("{v:.0}")),
            c.cycles_source,
            c.stages.as_ref().map_or_else(|| "–".into(), stage_split),
        );
    }
    s
}

/// "rx 30% · pipeline 25% · tx 45%" from a worker's stage times (every
/// numeric `*_ns` field but busy and idle).
fn stage_split(stages: &serde_json::Value) -> String {
    let Some(map) = stages.as_object() else {
        return "–".into();
    };
    let parts: Vec<(&str, f64)> = map
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_suffix("_ns")?;
            (!matches!(name, "busy" | "idle")).then_some((name, v.as_f64()?))
        })
        .collect();
    let total: f64 = parts.iter().map(|p| p.1).sum();
    if total <= 0.0 {
        return "–".into();
    }
    parts
        .iter()
        .map(|(k, v)| format!("{k} {:.0}%", v / total * 100.0))
        .collect::<Vec<_>>()
        .join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_middle() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[1.0, 4.0]).unwrap().median, 2.5);
        assert!(Spread::of(&[]).is_none());
        assert!(Spread::of(&[f64::NAN]).is_none());
    }

    #[test]
    fn stage_split_in_percent() {
        let v = serde_json::json!({"rx_ns": 30, "pipeline_ns": 20, "tx_ns": 50, "busy_ns": 100, "idle_ns": 7, "packets": 9});
        assert_eq!(stage_split(&v), "pipeline 20% · rx 30% · tx 50%");
        assert_eq!(stage_split(&serde_json::json!({"rx_ns": 0})), "–");
    }

    fn row(dut: &'static str, flows: u32, ndr: f64) -> Row {
        service_row(dut, None, flows, ndr)
    }

    fn service_row(dut: &'static str, services: Option<u32>, flows: u32, ndr: f64) -> Row {
        let s = |v| Spread {
            median: v,
            min: v,
            max: v,
        };
        Row {
            dut,
            services,
            flows,
            runs: 1,
            offered_mpps: s(9.0),
            delivered_mpps: s(ndr),
            ndr_mpps: s(ndr),
            latency_us: [Some(5.0), None, None],
        }
    }

    #[test]
    fn the_table_states_ratios_to_peers_at_the_same_flows() {
        let rows = [
            row("xvsd-l3", 1, 3.0),
            row("linux-routing", 1, 1.5),
            row("xvsd-l3", 1000, 2.0),
        ];
        let md = markdown(&rows, &["linux-routing", "absent"]);
        assert!(
            md.contains(" NDR ÷ linux-routing |") && !md.contains("absent"),
            "{md}"
        );
        assert!(
            md.contains("| xvsd-l3 | 1 | 9.00 | 3.00 | 3.00 [3.00–3.00] | 2.00 | 5.0 | – | – |"),
            "{md}"
        );
        assert!(
            md.contains("| linux-routing | 1 | 9.00 | 1.50 | 1.50 [1.50–1.50] | 1.00 |"),
            "{md}"
        );
        // No peer measured at 1K flows: no ratio.
        assert!(
            md.contains("| xvsd-l3 | 1K | 9.00 | 2.00 | 2.00 [2.00–2.00] | – |"),
            "{md}"
        );
    }

    #[test]
    fn services_are_labelled_and_compared_at_the_same_count() {
        let rows = [
            service_row("xvsd-service", Some(1), 1, 2.0),
            service_row("xvsd-service", Some(10_000), 1, 1.8),
            service_row("nft-dnat", Some(1), 1, 1.0),
            service_row("nft-dnat", Some(10_000), 1, 0.6),
            row("xvsd-l3", 1, 3.0),
        ];
        let md = markdown(&rows, &["nft-dnat"]);
        assert!(
            md.contains("| xvsd-service (1 svc) | 1 | 9.00 | 2.00 | 2.00 [2.00–2.00] | 2.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| xvsd-service (10000 svc) | 1 | 9.00 | 1.80 | 1.80 [1.80–1.80] | 3.00 |"),
            "{md}"
        );
        // A DUT without Services against the peer's first.
        assert!(
            md.contains("| xvsd-l3 | 1 | 9.00 | 3.00 | 3.00 [3.00–3.00] | 3.00 |"),
            "{md}"
        );
        let svc = services_markdown(&rows);
        assert!(svc.contains("| 1 | 1 | 2.00 | 1.00 | 2.00 |"), "{svc}");
        assert!(svc.contains("| 10000 | 1 | 1.80 | 0.60 | 3.00 |"), "{svc}");
        assert_eq!(services_markdown(&rows[2..]), "");
    }

    #[test]
    fn flows_are_labelled_in_thousands() {
        assert_eq!(flows_label(1), "1");
        assert_eq!(flows_label(1000), "1K");
        assert_eq!(flows_label(100_000), "100K");
        assert_eq!(flows_label(1500), "1500");
    }
}
