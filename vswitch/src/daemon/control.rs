//! What xvsd answers on its control socket (`xvs_control::server`).
//!
//! Reads (`version`, `show`, `get-state`, `port-list`, `route-list`,
//! `vtep-list`) look at the datapath and its desired state. Changes
//! (`port-add|del`, `route-add|del`, `vtep-add|del`, `apply`) build a new
//! desired state, have the datapath apply it (a new snapshot, swapped in
//! by every worker between two batches), and only then persist it: what
//! is on disk is always a state the datapath accepted. Changes are
//! serialized by the datapath's lock; reads wait for a change in flight.
//! An add of exactly what is there already, and an `apply` of the state
//! the switch is in, change nothing (no new generation): CNI retries and
//! `xvsctl apply` run twice are harmless.

use std::sync::{Arc, Mutex, MutexGuard};

use serde::Deserialize;
use serde_json::{json, Value};
use xvs_control::protocol::{ErrorBody, ErrorCode, Request, PROTOCOL_VERSION};
use xvs_control::server::{unknown_method, Handler, Peer};
use xvs_control::state::{diff, DesiredState, PortKind, PortSpec, RemoteNodeSpec, RouteSpec};

use super::store::StateStore;
use super::{DaemonError, Datapath};

/// xvsd's control handler.
pub struct Control {
    datapath: Arc<Mutex<Datapath>>,
    store: Option<StateStore>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PortAdd {
    name: String,
    kind: PortKind,
    /// Default: the interface's MTU.
    mtu: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ByName {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ByPrefix {
    prefix: ipnet::Ipv4Net,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Apply {
    state: DesiredState,
    /// Only report what would change.
    #[serde(default)]
    dry_run: bool,
}

fn err(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, message)
}

impl Control {
    pub fn new(datapath: Arc<Mutex<Datapath>>, store: Option<StateStore>) -> Control {
        Control { datapath, store }
    }

    fn datapath(&self) -> MutexGuard<'_, Datapath> {
        // A panic while holding the lock is a bug; the datapath itself is
        // still consistent (apply changes it only at the end).
        self.datapath.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `change` to the desired state, then persists it. Returns
    /// the change's lines and the generation the datapath runs.
    fn change(
        &self,
        change: impl FnOnce(&mut DesiredState) -> Result<(), ErrorBody>,
        dry_run: bool,
    ) -> Result<Value, ErrorBody> {
        let mut dp = self.datapath();
        let mut state = dp.desired().clone();
        change(&mut state)?;
        let changes = diff(dp.desired(), &state);
        if !changes.is_empty() && !dry_run {
            dp.apply(state.clone()).map_err(|e| match e {
                DaemonError::Compile(e) => err(ErrorCode::InvalidParams, e.to_string()),
                DaemonError::Steer(xvs_hw::steer::SteerError::NoInterface(name)) => err(
                    ErrorCode::NotFound,
                    format!("interface {name} does not exist"),
                ),
                e => err(ErrorCode::Internal, e.to_string()),
            })?;
            if let Some(store) = &self.store {
                store.save(&state).map_err(|e| {
                    err(
                        ErrorCode::Internal,
                        format!("applied, but not persisted: {e}"),
                    )
                })?;
            }
            for line in &changes {
                tracing::info!(change = line.as_str(), "desired state");
            }
        }
        Ok(json!({
            "changes": changes,
            "generation": dp.snapshot().generation,
            "dry_run": dry_run,
        }))
    }

    fn show(&self) -> Value {
        let dp = self.datapath();
        let ports: Vec<Value> = dp
            .ports()
            .map(|p| {
                json!({
                    "name": p.name, "xdp": p.xdp.name(), "bind": p.bind.name(),
                    "queues": p.queues, "workers": p.workers,
                })
            })
            .collect();
        let workers: Vec<Value> = dp
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| json!({"worker": i, "core": w.core, "tid": w.tid}))
            .collect();
        json!({
            "generation": dp.snapshot().generation,
            "ports": ports,
            "missing": dp.missing(),
            "workers": workers,
        })
    }

    /// The live counters as Prometheus text.
    pub fn metrics(&self) -> String {
        let dp = self.datapath();
        let report = dp.live_report();
        super::metrics::render(&super::metrics::MetricsInput {
            report: &report,
            generation: dp.snapshot().generation,
            flows: 0,
            flow_capacity: 0,
        })
    }

    fn stats(&self) -> Value {
        let dp = self.datapath();
        let mut v = serde_json::to_value(dp.live_report()).unwrap_or_default();
        v["generation"] = json!(dp.snapshot().generation);
        v
    }

    fn port_list(&self) -> Value {
        let dp = self.datapath();
        let ports: Vec<Value> = dp
            .desired()
            .ports
            .iter()
            .map(|p| {
                let mut v = serde_json::to_value(p).unwrap_or_default();
                let missing = dp.missing().contains(&p.name);
                v["status"] = json!(if missing { "missing" } else { "up" });
                v
            })
            .collect();
        json!(ports)
    }
}

/// Adds `item`, or accepts it unchanged if an equal one is there; another
/// item with the same key is a conflict.
fn add<T: PartialEq + Clone>(
    items: &mut Vec<T>,
    item: T,
    what: &str,
    key: impl Fn(&T) -> String,
) -> Result<(), ErrorBody> {
    match items.iter().find(|i| key(i) == key(&item)) {
        Some(i) if *i == item => Ok(()),
        Some(_) => Err(err(
            ErrorCode::Conflict,
            format!(
                "{what} {} exists with other settings; delete it first",
                key(&item)
            ),
        )),
        None => {
            items.push(item);
            Ok(())
        }
    }
}

/// Removes the item with key `name`.
fn del<T>(
    items: &mut Vec<T>,
    name: &str,
    what: &str,
    key: impl Fn(&T) -> String,
) -> Result<(), ErrorBody> {
    let before = items.len();
    items.retain(|i| key(i) != name);
    if items.len() == before {
        return Err(err(ErrorCode::NotFound, format!("no {what} {name}")));
    }
    Ok(())
}

impl Handler for Control {
    fn handle(&self, request: &Request, _peer: &Peer) -> Result<Value, ErrorBody> {
        let port_name = |p: &PortSpec| p.name.clone();
        let route_key = |r: &RouteSpec| r.prefix.to_string();
        let vtep_name = |r: &RemoteNodeSpec| r.name.clone();
        match request.method.as_str() {
            "version" => Ok(json!({
                "xvsd": env!("CARGO_PKG_VERSION"),
                "protocol": PROTOCOL_VERSION,
            })),
            "show" => Ok(self.show()),
            "get-state" => Ok(serde_json::to_value(self.datapath().desired()).unwrap_or_default()),
            "port-list" => Ok(self.port_list()),
            "stats" => Ok(self.stats()),
            "route-list" => Ok(json!(self.datapath().desired().routes)),
            "vtep-list" => Ok(json!(self.datapath().desired().remote_nodes)),
            "port-add" => {
                let p: PortAdd = request.params()?;
                let mtu = match p.mtu {
                    Some(mtu) => mtu,
                    None => super::config::sysfs_link(&p.name)
                        .map(|(_, mtu)| mtu)
                        .map_err(|e| {
                            err(ErrorCode::NotFound, format!("interface {}: {e}", p.name))
                        })?,
                };
                let spec = PortSpec {
                    name: p.name,
                    kind: p.kind,
                    mtu,
                };
                self.change(|s| add(&mut s.ports, spec, "port", port_name), false)
            }
            "port-del" => {
                let p: ByName = request.params()?;
                self.change(|s| del(&mut s.ports, &p.name, "port", port_name), false)
            }
            "route-add" => {
                let r: RouteSpec = request.params()?;
                self.change(|s| add(&mut s.routes, r, "route", route_key), false)
            }
            "route-del" => {
                let r: ByPrefix = request.params()?;
                let prefix = r.prefix.to_string();
                self.change(|s| del(&mut s.routes, &prefix, "route", route_key), false)
            }
            "vtep-add" => {
                let r: RemoteNodeSpec = request.params()?;
                self.change(|s| add(&mut s.remote_nodes, r, "vtep", vtep_name), false)
            }
            "vtep-del" => {
                let r: ByName = request.params()?;
                self.change(
                    |s| del(&mut s.remote_nodes, &r.name, "vtep", vtep_name),
                    false,
                )
            }
            "apply" => {
                let a: Apply = request.params()?;
                self.change(
                    |s| {
                        *s = a.state;
                        Ok(())
                    },
                    a.dry_run,
                )
            }
            _ => Err(unknown_method(request)),
        }
    }
}
