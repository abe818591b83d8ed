//! Readers and writers on every core at once, for several seconds
//! (`XVS_STRESS_SECS`, default 3).
//!
//! Each writer owns a disjoint set of keys and inserts, replaces and
//! removes them at random, so it knows what each of its keys should hold at
//! the end. Every value carries its key's number in the action field, and a
//! per-key version in the generation field. Checked:
//! - a lookup never returns a value that was not inserted for that key
//!   (the action always names the key looked up);
//! - versions a reader sees for a key never go backwards while no remove
//!   intervenes... (not checkable without ordering between threads, so not
//!   claimed);
//! - at the end, every key a writer last inserted is present with the
//!   value it last wrote, except for as many as were evicted, and nothing
//!   it removed is present;
//! - the live count matches the contents and never exceeds capacity.

// Test data is made by narrowing random numbers on purpose.
#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xvs_flowtable::{FlowKey, FlowState, FlowTable, FlowValue};

fn key(n: u32) -> FlowKey {
    FlowKey::v4(
        2,
        17,
        Ipv4Addr::from(0x0a00_0000 | n),
        5000,
        Ipv4Addr::new(10, 255, 0, 1),
        53,
    )
}

/// A small deterministic generator (xorshift), one per thread.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn concurrent_readers_and_writers_never_see_foreign_values() {
    let secs: u64 = std::env::var("XVS_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let writers = cores.max(2);
    let readers = cores.max(2);
    let keys_per_writer: u32 = 4096;
    let all_keys = keys_per_writer * writers as u32;
    // Room for every key: evictions only from full bucket pairs (rare).
    let table = Arc::new(FlowTable::with_capacity_and_seed(all_keys as usize, 99));
    let stop = Arc::new(AtomicBool::new(false));
    let evictions = Arc::new(AtomicU64::new(0));
    let lookups = Arc::new(AtomicU64::new(0));

    let mut handles = Vec::new();
    for w in 0..writers as u32 {
        let (table, stop, evictions) = (table.clone(), stop.clone(), evictions.clone());
        handles.push(std::thread::spawn(move || {
            let mut rng = Rng(0x9e37_79b9 + u64::from(w));
            // What each owned key should hold: Some(version) or None.
            let mut state: Vec<Option<u32>> = vec![None; keys_per_writer as usize];
            let mut version = 0u32;
            let mut now = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let i = (rng.next() % u64::from(keys_per_writer)) as u32;
                let n = w * keys_per_writer + i;
                now += 1;
                if rng.next() % 4 == 0 {
                    table.remove(&key(n));
                    state[i as usize] = None;
                } else {
                    version += 1;
                    let out = table.insert(
                        &key(n),
                        FlowValue::new(n, version),
                        FlowState::Embryonic,
                        now,
                    );
                    let out = out.expect("room: capacity covers every key");
                    if out.evicted {
                        evictions.fetch_add(1, Ordering::Relaxed);
                    }
                    state[i as usize] = Some(version);
                }
            }
            (w, state)
        }));
    }
    let mut reader_handles = Vec::new();
    for r in 0..readers as u64 {
        let (table, stop, lookups) = (table.clone(), stop.clone(), lookups.clone());
        reader_handles.push(std::thread::spawn(move || {
            let mut rng = Rng(0x1234_5678 + r);
            let mut keys = Vec::with_capacity(32);
            let mut out = vec![None; 32];
            let mut hits = 0u64;
            while !stop.load(Ordering::Relaxed) {
                keys.clear();
                let ns: Vec<u32> = (0..32)
                    .map(|_| (rng.next() % u64::from(all_keys)) as u32)
                    .collect();
                keys.extend(ns.iter().map(|&n| key(n)));
                table.lookup_batch(&keys, &mut out);
                for (n, hit) in ns.iter().zip(&out) {
                    if let Some(hit) = hit {
                        assert_eq!(
                            hit.value.action(),
                            *n,
                            "a lookup returned another key's value"
                        );
                        table.credit(hit, 1, 64, 0);
                        hits += 1;
                    }
                }
                let n = ns[0];
                if let Some(hit) = table.lookup(&key(n)) {
                    assert_eq!(
                        hit.value.action(),
                        n,
                        "a lookup returned another key's value"
                    );
                }
                lookups.fetch_add(33, Ordering::Relaxed);
            }
            hits
        }));
    }

    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let hits: u64 = reader_handles.into_iter().map(|h| h.join().unwrap()).sum();
    let evicted = evictions.load(Ordering::Relaxed);
    let mut missing = 0u64;
    for h in handles {
        let (w, state) = h.join().unwrap();
        for (i, want) in state.iter().enumerate() {
            let n = w * keys_per_writer + i as u32;
            match (want, table.lookup(&key(n))) {
                (Some(v), Some(hit)) => assert_eq!(
                    hit.value,
                    FlowValue::new(n, *v),
                    "key {n} holds a stale value"
                ),
                (Some(_), None) => missing += 1,
                (None, Some(_)) => panic!("key {n} was removed last but is present"),
                (None, None) => {}
            }
        }
    }
    assert!(
        missing <= evicted,
        "{missing} keys lost but only {evicted} evictions"
    );
    let mut counted = 0;
    table.for_each(|_| counted += 1);
    assert_eq!(counted, table.len());
    assert!(table.len() <= table.capacity());
    let total = lookups.load(Ordering::Relaxed);
    eprintln!(
        "stress: {writers} writers, {readers} readers, {secs} s: {total} lookups, {hits} batched hits, {evicted} evictions, {missing} missing, checked in {:?}",
        started.elapsed()
    );
    assert!(total > 0 && hits > 0, "the readers did work");
}
