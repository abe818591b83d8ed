//! The flow table against a `HashMap` model: random inserts, replaces,
//! removes, lookups and sweeps on a small table, so that evictions happen
//! often. After every step the table holds exactly the model's flows, except
//! for flows it reported evicting (exactly one per eviction, never the key
//! just inserted).

// Test data is made by narrowing random numbers on purpose.
#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]

use std::collections::HashMap;
use std::net::Ipv4Addr;

use proptest::prelude::*;
use xvs_flowtable::{FlowKey, FlowState, FlowTable, FlowValue, Inserted};

fn key(n: u16) -> FlowKey {
    FlowKey::v4(
        1,
        6,
        Ipv4Addr::new(10, 0, (n >> 8) as u8, n as u8),
        1000 + n,
        Ipv4Addr::new(10, 1, 0, 1),
        80,
    )
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u16, u32),
    Remove(u16),
    Lookup(u16),
    /// Remove every flow whose value's action is odd.
    RetainEven,
}

fn op(keys: u16) -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..keys, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => (0..keys).prop_map(Op::Remove),
        3 => (0..keys).prop_map(Op::Lookup),
        1 => Just(Op::RetainEven),
    ]
}

fn contents(t: &FlowTable) -> HashMap<FlowKey, FlowValue> {
    let mut m = HashMap::new();
    t.for_each(|v| {
        assert!(
            m.insert(v.key, v.value).is_none(),
            "a single-threaded table never holds a key twice"
        );
    });
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn behaves_like_a_map_that_may_evict(capacity in 1usize..48, ops in proptest::collection::vec(op(96), 1..300)) {
        let table = FlowTable::with_capacity_and_seed(capacity, 42);
        let mut model: HashMap<FlowKey, FlowValue> = HashMap::new();
        for (now, op) in ops.into_iter().enumerate() {
            let now = now as u64;
            match op {
                Op::Insert(k, v) => {
                    let (k, v) = (key(k), FlowValue::new(v, 1));
                    let existed = model.contains_key(&k);
                    let outcome = table.insert(&k, v, FlowState::Embryonic, now);
                    prop_assert!(outcome.is_some(), "a single writer always finds room");
                    model.insert(k, v);
                    let outcome: Inserted = outcome.unwrap();
                    prop_assert_eq!(outcome.replaced, existed);
                    if outcome.evicted {
                        let now_in = contents(&table);
                        let gone: Vec<_> = model.keys().filter(|m| !now_in.contains_key(m)).copied().collect();
                        prop_assert_eq!(gone.len(), 1, "exactly one flow evicted");
                        prop_assert_ne!(gone[0], k, "never the key just inserted");
                        model.remove(&gone[0]);
                    }
                }
                Op::Remove(k) => {
                    let k = key(k);
                    prop_assert_eq!(table.remove(&k), model.remove(&k).is_some());
                }
                Op::Lookup(k) => {
                    let k = key(k);
                    prop_assert_eq!(table.lookup(&k).map(|h| h.value), model.get(&k).copied());
                }
                Op::RetainEven => {
                    let before = model.len();
                    model.retain(|_, v| v.action() % 2 == 0);
                    prop_assert_eq!(table.retain(|v| v.value.action() % 2 == 0), before - model.len());
                }
            }
            prop_assert_eq!(contents(&table), model.clone());
            prop_assert_eq!(table.len(), model.len());
            prop_assert!(table.len() <= table.capacity());
        }
        // Batched lookups agree with single ones.
        let keys: Vec<FlowKey> = (0..96).map(key).collect();
        let mut out = vec![None; keys.len()];
        table.lookup_batch(&keys, &mut out);
        for (k, hit) in keys.iter().zip(&out) {
            prop_assert_eq!(hit.map(|h| h.value), model.get(k).copied());
        }
    }
}

#[test]
fn replacing_a_value_keeps_the_counters() {
    let t = FlowTable::with_capacity_and_seed(16, 1);
    let k = key(1);
    t.insert(&k, FlowValue::new(7, 1), FlowState::Embryonic, 10);
    let hit = t.lookup(&k).unwrap();
    t.credit(&hit, 3, 300, 20);
    assert_eq!(
        t.insert(&k, FlowValue::new(8, 2), FlowState::Established, 30)
            .map(|i| (i.replaced, i.evicted)),
        Some((true, false))
    );
    let mut views = Vec::new();
    t.for_each(|v| views.push(*v));
    assert_eq!(views.len(), 1);
    let v = views[0];
    assert_eq!(
        (v.value, v.packets, v.bytes, v.created, v.last_seen),
        (FlowValue::new(8, 2), 3, 300, 10, 30)
    );
    assert_eq!(v.state, FlowState::Established);
}

#[test]
fn a_stale_hit_credits_nothing() {
    let t = FlowTable::with_capacity_and_seed(1, 1);
    t.insert(&key(1), FlowValue::new(1, 1), FlowState::Embryonic, 0);
    let stale = t.lookup(&key(1)).unwrap();
    // The only entry is evicted and reused for another flow.
    assert!(t
        .insert(&key(2), FlowValue::new(2, 1), FlowState::Embryonic, 1)
        .is_some_and(|i| i.evicted));
    t.credit(&stale, 5, 500, 2);
    let mut views = Vec::new();
    t.for_each(|v| views.push(*v));
    assert_eq!(
        (views[0].key, views[0].packets),
        (key(2), 0),
        "the new flow did not get the old flow's packets"
    );
}

#[test]
fn eviction_takes_embryonic_flows_first_and_the_idlest_of_them() {
    let capacity = 1024;
    let t = FlowTable::with_capacity_and_seed(capacity, 7);
    // A quarter established (and idle the longest), the rest embryonic with
    // last-seen times spread out.
    for n in 0..capacity as u16 {
        let state = if n % 4 == 0 {
            FlowState::Established
        } else {
            FlowState::Embryonic
        };
        assert!(t
            .insert(
                &key(n),
                FlowValue::new(u32::from(n), 1),
                state,
                u64::from(n)
            )
            .is_some());
    }
    // Newcomers are embryonic too; their action marks them apart.
    const NEWCOMER: u32 = u32::MAX;
    let mut evicted_times = Vec::new();
    for n in 0..200u16 {
        let before: HashMap<_, _> = contents(&t);
        let outcome = t.insert(
            &key(5000 + n),
            FlowValue::new(NEWCOMER, 1),
            FlowState::Embryonic,
            10_000 + u64::from(n),
        );
        assert!(outcome.is_some_and(|i| i.evicted), "the table is full");
        let after = contents(&t);
        let gone: Vec<_> = before
            .iter()
            .filter(|(k, _)| !after.contains_key(k))
            .collect();
        assert_eq!(gone.len(), 1);
        let action = gone[0].1.action();
        if action != NEWCOMER {
            assert_ne!(
                action % 4,
                0,
                "an established flow was evicted while embryonic ones remained"
            );
            evicted_times.push(u64::from(action));
        }
    }
    // Idle-longest first: the evicted embryonic flows are older on average
    // than the embryonic flows overall (uniform over 0..1024, mean ~512).
    let mean = evicted_times.iter().sum::<u64>() as f64 / evicted_times.len() as f64;
    assert!(mean < 400.0, "mean last-seen of evicted flows {mean}");
}

#[test]
fn capacity_is_never_exceeded_and_memory_is_stated() {
    let t = FlowTable::with_capacity_and_seed(100, 3);
    for n in 0..1000u16 {
        assert!(t
            .insert(
                &key(n),
                FlowValue::new(1, 1),
                FlowState::Embryonic,
                u64::from(n)
            )
            .is_some());
        assert!(t.len() <= 100);
    }
    assert_eq!(t.len(), 100, "a full table stays full");
    // 1M flows: 128-byte entries, 1.25 index slots of 8 bytes, a free-list
    // link, and the replacement spares spread thin.
    let big = FlowTable::with_capacity_and_seed(1 << 20, 3);
    let bpe = big.bytes_per_entry();
    assert!((148.0..160.0).contains(&bpe), "{bpe} bytes per entry");
}
