//! The control methods over flows: the flow cache (`dump-flows`,
//! `del-flows`), the user's flow rules (`rule-add`, `rule-del`,
//! `rule-list`) and the connection table (`dump-conntrack`).
//!
//! Rules are part of the desired state: adding or deleting one is a state
//! change like adding a port (a new snapshot, persisted once the datapath
//! took it), and the revalidation that follows every new snapshot removes
//! exactly the cached flows whose decision changed. Deleting cached flows
//! changes no state: their next packets take the slow path and cache them
//! again.
//!
//! Rule deletion is by exact match, as `ovs-ofctl del-flows --strict`
//! does: a match given with `priority=` deletes the rule with exactly that
//! match and priority; without one, every rule whose match is exactly the
//! given one, whatever its priority; no match at all deletes every rule.
//! (OVS's non-strict form, deleting every rule a match covers, is not
//! offered: exact deletion is what scripts want.) Adding a rule with the
//! priority and match of an existing one replaces it, as `add-flow` does.
//!
//! Dumps are bounded ([`MAX_DUMP`] entries, the answer must fit a
//! protocol line): a bigger table answers with the first entries in order
//! and says how many there are; filters narrow it.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::{json, Value};
use xvs_control::flowrule::{parse_match_with_priority, FlowRule};
use xvs_control::protocol::{ErrorBody, ErrorCode};

use super::control::{err, params, Control};
use super::Datapath;
use crate::flow_cache::{self, CachedAction, FlowDescription};

/// Most entries one dump answers with (about 700 KB of flows).
pub const MAX_DUMP: usize = 2000;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FlowFilter {
    /// Only flows received on this port.
    port: Option<String>,
    /// Only flows from or to this address.
    addr: Option<IpAddr>,
}

impl FlowFilter {
    fn keeps(&self, flow: &FlowDescription) -> bool {
        self.port.as_ref().is_none_or(|p| *p == flow.in_port)
            && self.addr.is_none_or(|a| a == flow.src || a == flow.dst)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleAdd {
    rule: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDel {
    /// A match, `priority=` allowed; absent: every rule.
    #[serde(rename = "match")]
    matches: Option<String>,
}

/// Answers `method` if it is one of this module's; `None` otherwise.
pub(super) fn handle(
    control: &Control,
    method: &str,
    request: &Value,
) -> Option<Result<Value, ErrorBody>> {
    Some(match method {
        "dump-flows" => params(request).map(|f| dump_flows(&control.datapath(), &f)),
        "del-flows" => params(request).map(|f| del_flows(&control.datapath(), &f)),
        "rule-list" => Ok(rule_list(&control.datapath())),
        "dump-conntrack" => params::<FlowFilter>(request).and_then(|f| match f.port {
            Some(_) => Err(err(
                ErrorCode::InvalidParams,
                "connections are not tied to ports: filter by addr",
            )),
            None => Ok(dump_conntrack(&control.datapath(), &f)),
        }),
        "rule-add" => params::<RuleAdd>(request).and_then(|p| {
            let rule: FlowRule = p
                .rule
                .parse()
                .map_err(|e| err(ErrorCode::InvalidParams, format!("{e}")))?;
            control.change(
                |state| {
                    // As ovs-ofctl add-flow: a rule with the same priority
                    // and match is replaced.
                    match state
                        .rules
                        .iter_mut()
                        .find(|r| r.priority == rule.priority && r.matches == rule.matches)
                    {
                        Some(old) => *old = rule,
                        None => state.rules.push(rule),
                    }
                    Ok(())
                },
                false,
            )
        }),
        "rule-del" => params::<RuleDel>(request).and_then(|p| {
            let selector = p
                .matches
                .as_deref()
                .map(parse_match_with_priority)
                .transpose()
                .map_err(|e| err(ErrorCode::InvalidParams, format!("{e}")))?;
            control.change(
                |state| {
                    state.rules.retain(|rule| match &selector {
                        None => false,
                        Some((priority, m)) => {
                            rule.matches != *m || priority.is_some_and(|p| p != rule.priority)
                        }
                    });
                    Ok(())
                },
                false,
            )
        }),
        _ => return None,
    })
}

/// Every cached flow that passes `filter`, ordered by in-port and match.
fn dump_flows(dp: &Datapath, filter: &FlowFilter) -> Value {
    let (snap, now) = (dp.snapshot(), dp.now_ns());
    let mut flows = Vec::new();
    dp.flows().for_each(|view| {
        if let Some(flow) = flow_cache::describe(view, snap, now).filter(|f| filter.keeps(f)) {
            flows.push(flow);
        }
    });
    flows.sort_by(|a, b| (&a.in_port, &a.matches).cmp(&(&b.in_port, &b.matches)));
    let matched = flows.len();
    flows.truncate(MAX_DUMP);
    json!({
        "generation": snap.generation,
        "capacity": dp.flows().capacity(),
        "cached": dp.flows().len(),
        "matched": matched,
        "flows": flows,
    })
}

/// Removes the cached flows that pass `filter`.
fn del_flows(dp: &Datapath, filter: &FlowFilter) -> Value {
    let (snap, now) = (dp.snapshot(), dp.now_ns());
    let removed = dp.flows().retain(|view| {
        // A flow that cannot be described (its port is gone) goes too.
        !flow_cache::describe(view, snap, now).is_none_or(|f| filter.keeps(&f))
    });
    json!({ "removed": removed })
}

/// The tracked connections with an address `filter.addr` (if given) in
/// either tuple, as `conntrack -L` prints them, oldest first.
fn dump_conntrack(dp: &Datapath, filter: &FlowFilter) -> Value {
    let now = dp.now_ns();
    let mut conns = Vec::new();
    dp.conntrack().for_each(|c| {
        let (o, r) = (c.orig.tuple(), c.reply.tuple());
        if filter
            .addr
            .is_none_or(|a| [o.src, o.dst, r.src, r.dst].contains(&a))
        {
            conns.push((c.created, c.display(now).to_string()));
        }
    });
    conns.sort();
    let matched = conns.len();
    conns.truncate(MAX_DUMP);
    let stats = dp.conntrack().stats();
    json!({
        "connections": conns.into_iter().map(|(_, line)| line).collect::<Vec<_>>(),
        "matched": matched,
        "live": stats.live,
        "capacity": stats.capacity,
    })
}

/// The rules in lookup order, each with what its cached flows carried.
fn rule_list(dp: &Datapath) -> Value {
    let snap = dp.snapshot();
    let rules = snap.rules.rules();
    let mut per_rule = vec![(0u64, 0u64, 0u64); rules.len()];
    let tag = flow_cache::generation_tag(snap.flow_generation);
    dp.flows().for_each(|view| {
        if view.value.generation() != tag {
            return;
        }
        let rule = CachedAction::decode(view.value.action()).rule();
        if let Some(stats) = rule.and_then(|r| per_rule.get_mut(usize::from(r))) {
            stats.0 += 1;
            stats.1 += view.packets;
            stats.2 += view.bytes;
        }
    });
    let rules: Vec<Value> = rules
        .iter()
        .zip(per_rule)
        .map(|(rule, (flows, packets, bytes))| {
            json!({
                "rule": rule.source.to_string(),
                "priority": rule.priority,
                "cached_flows": flows,
                "packets": packets,
                "bytes": bytes,
            })
        })
        .collect();
    json!({ "generation": snap.generation, "rules": rules })
}
