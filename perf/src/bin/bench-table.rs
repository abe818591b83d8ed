//! Prints criterion's results for a benchmark group as a Markdown table of
//! ns per packet, with the same run's baseline subtracted.
//!
//! Usage: `bench-table [CRITERION_DIR] [GROUP] [BASELINE]`; defaults:
//! `target/criterion`, `pipeline`, `baseline`. Reads
//! `<dir>/<group>/<path>/<batch>/new/estimates.json` (criterion's own
//! output) and reports the median estimate divided by the batch size.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use xvs_perf::report::{cpu_model, median_ns};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args.first().map_or("target/criterion", String::as_str);
    let group = args.get(1).map_or("pipeline", String::as_str);
    let baseline = args.get(2).map_or("baseline", String::as_str);
    let group_dir = Path::new(dir).join(group);

    // path -> batch -> ns per packet
    let mut table: BTreeMap<String, BTreeMap<u32, f64>> = BTreeMap::new();
    let Ok(paths) = std::fs::read_dir(&group_dir) else {
        eprintln!(
            "bench-table: no results in {} (run `cargo bench` first)",
            group_dir.display()
        );
        return ExitCode::FAILURE;
    };
    for path in paths.flatten().filter(|e| e.path().is_dir()) {
        let name = path.file_name().to_string_lossy().into_owned();
        let Ok(batches) = std::fs::read_dir(path.path()) else {
            continue;
        };
        for b in batches.flatten() {
            let Ok(batch) = b.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            match median_ns(&b.path().join("new/estimates.json")) {
                Ok(ns) => {
                    table
                        .entry(name.clone())
                        .or_default()
                        .insert(batch, ns / f64::from(batch));
                }
                Err(e) => eprintln!("bench-table: {}: {e}", b.path().display()),
            }
        }
    }
    if table.is_empty() {
        eprintln!("bench-table: no results in {}", group_dir.display());
        return ExitCode::FAILURE;
    }

    let batches: Vec<u32> = table
        .values()
        .flat_map(|m| m.keys().copied())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let base = table.get(baseline).cloned().unwrap_or_default();
    println!(
        "Machine: {} ({} CPUs)",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("Median of criterion samples; `net` subtracts the same run's `{baseline}` row.\n");
    let mut header = String::from("| path |");
    let mut rule = String::from("|---|");
    for b in &batches {
        header += &format!(" batch {b}: ns/pkt | net ns/pkt | Mpps/core |");
        rule += "---:|---:|---:|";
    }
    println!("{header}\n{rule}");
    let rows = std::iter::once(baseline.to_string())
        .chain(table.keys().filter(|k| *k != baseline).cloned());
    for name in rows {
        let Some(row) = table.get(&name) else {
            continue;
        };
        let mut line = format!("| {name} |");
        for b in &batches {
            match row.get(b) {
                Some(ns) => {
                    let net = ns - base.get(b).copied().unwrap_or(0.0);
                    line += &format!(" {ns:.1} | {net:.1} | {:.1} |", 1000.0 / ns);
                }
                None => line += " - | - | - |",
            }
        }
        println!("{line}");
    }
    ExitCode::SUCCESS
}
