//! Reading benchmark results and describing the machine they came from.

use std::path::Path;

/// The median point estimate (ns) of a criterion `estimates.json`.
pub fn median_ns(estimates: &Path) -> Result<f64, String> {
    let text = std::fs::read_to_string(estimates).map_err(|e| e.to_string())?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    json["median"]["point_estimate"]
        .as_f64()
        .ok_or_else(|| "no median.point_estimate".to_string())
}

/// The CPU model from /proc/cpuinfo, or "unknown CPU".
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_criterion_median() {
        let dir = std::env::temp_dir().join(format!("xvs-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("estimates.json");
        std::fs::write(
            &f,
            r#"{"mean":{"point_estimate":2.0},"median":{"point_estimate":1234.5}}"#,
        )
        .unwrap();
        assert_eq!(median_ns(&f).unwrap(), 1234.5);
        std::fs::write(&f, r#"{"mean":{}}"#).unwrap();
        assert!(median_ns(&f).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// p50, p99 (nearest rank) and mean of samples, in the samples' unit: what
/// the latency benches (`cni-latency`, `service-latency`) report.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
}

impl Stats {
    pub fn of(samples: &[f64]) -> Stats {
        if samples.is_empty() {
            return Stats::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        // The nearest rank of percentile `pct`: ceil(pct/100 * n), from 1.
        let rank = |pct: usize| {
            let r = (pct * sorted.len()).div_ceil(100);
            sorted[r.clamp(1, sorted.len()) - 1]
        };
        Stats {
            p50: rank(50),
            p99: rank(99),
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        }
    }
}
