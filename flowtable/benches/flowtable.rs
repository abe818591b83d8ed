//! The flow table against the usual alternatives, on the same keys in the
//! same run: `std::collections::HashMap` behind an `RwLock`, and `DashMap`
//! (both with foldhash, the fastest general-purpose hasher, so the
//! comparison is of the tables, not of SipHash).
//!
//! For 1K, 100K, 393,216 (the fill of DPDK's `hash_perf_autotest`
//! table, for a like-for-like comparison), 1M and 4M flows (IPv4
//! 5-tuples, random; 48-byte keys), in ns per
//! operation, median of `XVS_BENCH_REPS` runs (default 5):
//! - `lookup`: one key at a time, random keys, all hits (the keys to look
//!   up are prepared in advance and read in order, as DPDK's benchmark does);
//! - `batch16`, `batch64`: 16 or 64 keys per call (ours: `lookup_batch`;
//!   the others: the gets under one read-lock acquisition / in a loop);
//! - `insert`: filling an empty table to the size;
//! - `+writer`: `batch64` lookups on one core while a thread on the other
//!   core inserts and removes other keys of the same table as fast as it
//!   can;
//! - `+writer elsewhere`: the same writer working on a separate table of the
//!   same kind: the control that shows what the machine itself loses to a
//!   busy second core (shared L3, memory bandwidth, a host that may run the
//!   two vCPUs on one physical core). The difference between the two is
//!   what sharing the table costs.
//!
//! Prints a Markdown table and writes JSON to `XVS_BENCH_JSON` if set. When
//! `XVS_DPDK_CSV` names the output of `scripts/dpdk-hash-bench.sh`, DPDK's
//! own rte_hash numbers from the same machine and run are printed beside
//! ours. `cargo bench -p xvs-flowtable` runs it; `make bench-flowtable`
//! runs both.

// Test data is made by narrowing random numbers on purpose.
#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]

use std::collections::HashMap;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use dashmap::DashMap;
use foldhash::fast::RandomState;
use xvs_flowtable::{FlowKey, FlowState, FlowTable, FlowValue};

/// Batch sizes measured: DPDK hash_perf's burst, and the datapath's batch
/// (also DPDK's bulk maximum, RTE_HASH_LOOKUP_BULK_MAX).
const SMALL_BATCH: usize = 16;
const BATCH: usize = 64;
/// Lookups per timed run.
const LOOKUPS: usize = 1 << 20;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn random_keys(n: usize, seed: u64) -> Vec<FlowKey> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let r = rng.next();
            FlowKey::v4(
                (r >> 48) as u16 & 0xff,
                if r & 1 == 0 { 6 } else { 17 },
                Ipv4Addr::from((r >> 16) as u32),
                (r >> 32) as u16,
                Ipv4Addr::from(rng.next() as u32),
                443,
            )
        })
        .collect()
}

/// The three contenders behind one interface.
trait Table: Sync + Send {
    fn name(&self) -> &'static str;
    fn insert(&self, k: &FlowKey, v: u64);
    fn remove(&self, k: &FlowKey);
    fn get(&self, k: &FlowKey) -> Option<u64>;
    /// Looks up a batch; returns the number of hits.
    fn get_batch(&self, ks: &[FlowKey]) -> usize;
}

struct Ours(FlowTable);
impl Table for Ours {
    fn name(&self) -> &'static str {
        "xvs FlowTable"
    }
    fn insert(&self, k: &FlowKey, v: u64) {
        self.0
            .insert(k, FlowValue::from_bits(v), FlowState::Established, 0);
    }
    fn remove(&self, k: &FlowKey) {
        self.0.remove(k);
    }
    fn get(&self, k: &FlowKey) -> Option<u64> {
        self.0.lookup(k).map(|h| h.value.to_bits())
    }
    fn get_batch(&self, ks: &[FlowKey]) -> usize {
        let mut out = [None; BATCH];
        let out = &mut out[..ks.len()];
        self.0.lookup_batch(ks, out);
        out.iter().filter(|h| h.is_some()).count()
    }
}

struct Locked(RwLock<HashMap<FlowKey, u64, RandomState>>);
impl Table for Locked {
    fn name(&self) -> &'static str {
        "RwLock<HashMap>"
    }
    fn insert(&self, k: &FlowKey, v: u64) {
        self.0.write().unwrap().insert(*k, v);
    }
    fn remove(&self, k: &FlowKey) {
        self.0.write().unwrap().remove(k);
    }
    fn get(&self, k: &FlowKey) -> Option<u64> {
        self.0.read().unwrap().get(k).copied()
    }
    fn get_batch(&self, ks: &[FlowKey]) -> usize {
        let map = self.0.read().unwrap();
        ks.iter().filter(|k| map.contains_key(k)).count()
    }
}

struct Dash(DashMap<FlowKey, u64, RandomState>);
impl Table for Dash {
    fn name(&self) -> &'static str {
        "DashMap"
    }
    fn insert(&self, k: &FlowKey, v: u64) {
        self.0.insert(*k, v);
    }
    fn remove(&self, k: &FlowKey) {
        self.0.remove(k);
    }
    fn get(&self, k: &FlowKey) -> Option<u64> {
        self.0.get(k).map(|v| *v)
    }
    fn get_batch(&self, ks: &[FlowKey]) -> usize {
        ks.iter().filter(|k| self.0.contains_key(k)).count()
    }
}

/// A table with room for `n` flows (the churn keys of the concurrent
/// writer included, so that nothing is evicted).
fn make(kind: usize, n: usize) -> Box<dyn Table> {
    match kind {
        0 => Box::new(Ours(FlowTable::with_capacity_and_seed(n, 0x5eed))),
        1 => Box::new(Locked(RwLock::new(HashMap::with_capacity_and_hasher(
            n,
            RandomState::default(),
        )))),
        _ => Box::new(Dash(DashMap::with_capacity_and_hasher(
            n,
            RandomState::default(),
        ))),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pin(core: usize) {
    if let Some(id) = core_affinity::get_core_ids().and_then(|ids| ids.get(core).copied()) {
        core_affinity::set_for_current(id);
    }
}

#[derive(Default, Clone, Copy)]
struct Row {
    lookup: f64,
    small_batch: f64,
    batch: f64,
    insert: f64,
    with_writer: f64,
    writer_elsewhere: f64,
}

/// Runs `batch_run` on `t` while a thread on the other core inserts and
/// removes `churn` keys in `target` as fast as it can.
fn with_churn(t: &dyn Table, target: Arc<dyn Table>, probes: &[FlowKey], churn: &[FlowKey]) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, churn) = (stop.clone(), churn.to_vec());
        std::thread::spawn(move || {
            pin(1);
            while !stop.load(Ordering::Relaxed) {
                for k in &churn {
                    target.insert(k, 1);
                }
                for k in &churn {
                    target.remove(k);
                }
            }
        })
    };
    let ns = batch_run(t, probes, BATCH);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    ns
}

fn lookup_run(t: &dyn Table, probes: &[FlowKey]) -> f64 {
    let start = Instant::now();
    let mut hits = 0u64;
    for key in probes {
        hits += u64::from(t.get(key).is_some());
    }
    let ns = start.elapsed().as_nanos() as f64 / probes.len() as f64;
    assert_eq!(
        hits as usize,
        probes.len(),
        "{}: every key is present",
        t.name()
    );
    ns
}

fn batch_run(t: &dyn Table, probes: &[FlowKey], size: usize) -> f64 {
    let start = Instant::now();
    let mut done = 0usize;
    let mut hits = 0usize;
    for batch in probes.chunks(size) {
        hits += t.get_batch(black_box(batch));
        done += batch.len();
    }
    let ns = start.elapsed().as_nanos() as f64 / done as f64;
    assert_eq!(hits, done, "{}: every key is present", t.name());
    ns
}

fn measure(kind: usize, n: usize, reps: usize) -> (String, Row, f64) {
    let keys = random_keys(n, 1);
    let churn = random_keys(n.clamp(1024, 1 << 16), 2);
    let mut rng = Rng(3);
    // The keys to look up, drawn at random from the table's and laid out in
    // the order they are looked up, so the timed loops read them
    // sequentially (as DPDK's hash_perf walks its shuffled key array, and as
    // a datapath reads keys just parsed from a burst of packets): what is
    // timed is the table's random accesses, not the harness's.
    let probes: Vec<FlowKey> = (0..LOOKUPS)
        .map(|_| keys[(rng.next() % n as u64) as usize])
        .collect();
    let (mut lookups, mut small, mut batches, mut inserts, mut with_writer, mut elsewhere) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut name = String::new();
    let mut bytes = 0.0;
    for _ in 0..reps {
        let t: Arc<dyn Table> = Arc::from(make(kind, n + churn.len()));
        name = t.name().to_string();
        pin(0);
        let start = Instant::now();
        for (i, k) in keys.iter().enumerate() {
            t.insert(k, i as u64);
        }
        inserts.push(start.elapsed().as_nanos() as f64 / n as f64);
        lookups.push(lookup_run(&*t, &probes));
        small.push(batch_run(&*t, &probes, SMALL_BATCH));
        batches.push(batch_run(&*t, &probes, BATCH));

        with_writer.push(with_churn(&*t, t.clone(), &probes, &churn));
        let other: Arc<dyn Table> = Arc::from(make(kind, n + churn.len()));
        elsewhere.push(with_churn(&*t, other, &probes, &churn));
        if kind == 0 {
            bytes = FlowTable::with_capacity_and_seed(n, 0).bytes_per_entry();
            drop(t);
        }
    }
    let row = Row {
        lookup: median(lookups),
        small_batch: median(small),
        batch: median(batches),
        insert: median(inserts),
        with_writer: median(with_writer),
        writer_elsewhere: median(elsewhere),
    };
    (name, row, bytes)
}

fn main() {
    // `cargo test --bench flowtable` runs this binary with `--bench`
    // absent: do one small quick pass so the benchmark keeps working.
    let quick = !std::env::args().any(|a| a == "--bench");
    let reps = std::env::var("XVS_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 1 } else { 5 });
    let sizes: &[usize] = if quick {
        &[1_000]
    } else {
        &[1_000, 100_000, 393_216, 1_000_000, 4_000_000]
    };
    let mut results = Vec::new();
    println!("| flows | table | lookup ns | batch16 ns/key | batch64 ns/key | insert ns | batch64 +writer | batch64 +writer elsewhere | bytes/entry |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for &n in sizes {
        for kind in 0..3 {
            let (name, r, bytes) = measure(kind, n, reps);
            let b = if bytes > 0.0 {
                format!("{bytes:.0}")
            } else {
                "-".into()
            };
            println!(
                "| {n} | {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {b} |",
                r.lookup, r.small_batch, r.batch, r.insert, r.with_writer, r.writer_elsewhere
            );
            results.push(serde_json::json!({
                "flows": n, "table": name, "lookup_ns": r.lookup, "batch16_ns": r.small_batch,
                "batch64_ns": r.batch, "insert_ns": r.insert, "batch64_with_writer_ns": r.with_writer,
                "batch64_writer_elsewhere_ns": r.writer_elsewhere, "bytes_per_entry": bytes,
            }));
        }
    }
    if let Ok(path) = std::env::var("XVS_BENCH_JSON") {
        std::fs::write(&path, serde_json::to_string_pretty(&results).unwrap()).expect("write JSON");
    }
    if let Ok(csv) = std::env::var("XVS_DPDK_CSV") {
        print_dpdk(&csv);
    }
}

/// DPDK's rte_hash numbers, as `scripts/dpdk-hash-bench.sh` printed them
/// (`dpdk,<test>,<what>,<value>,<unit>`), converted to ns with its TSC rate.
fn print_dpdk(path: &str) {
    let Ok(text) = std::fs::read_to_string(path) else {
        println!("\n(no DPDK results at {path})");
        return;
    };
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with("dpdk,"))
        .map(|l| l.split(',').collect())
        .collect();
    let tsc_hz = rows
        .iter()
        .find(|r| r.get(2) == Some(&"tsc_hz"))
        .and_then(|r| r.get(3)?.parse::<f64>().ok());
    println!("\nDPDK rte_hash on this machine, same run (dpdk-test):\n");
    println!("| test | measure | cycles | ns |");
    println!("|---|---|---:|---:|");
    for r in rows.iter().filter(|r| r.len() >= 5 && r[4] == "cycles") {
        let cycles: f64 = r[3].parse().unwrap_or(f64::NAN);
        let ns = tsc_hz.map_or(f64::NAN, |hz| cycles / hz * 1e9);
        println!("| {} | {} | {cycles:.1} | {ns:.1} |", r[1], r[2]);
    }
}
