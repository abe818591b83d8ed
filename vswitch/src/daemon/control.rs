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
//!
//! `trace` runs a described packet through a pipeline of its own on the
//! snapshot the workers run ([`crate::trace`]); it holds the datapath's
//! lock only to take the snapshot, and nothing reaches a worker.
//!
//! `capture` copies a port's frames into a pcap file that xvsd itself
//! writes (atomically: a temporary file renamed into place), since
//! packets do not fit the protocol's bounded lines. It waits for the
//! packets without holding the datapath's lock ([`Datapath::capture`]).
//! xvsd writes the file as root, so only root may ask for one.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use xvs_control::protocol::{ErrorBody, ErrorCode, Request, PROTOCOL_VERSION};
use xvs_control::server::{unknown_method, Handler, Peer};
use xvs_control::state::{
    diff, Attachment, DesiredState, PortKind, PortSpec, RemoteNodeSpec, RouteSpec,
};

use super::store::{JournalEntry, StateStore};
use super::{write_atomically, DaemonError, Datapath, Report};
use crate::capture;
use crate::wire::VXLAN_OVERHEAD;

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
    /// Set by the CNI plugin: the attachment the port is for.
    #[serde(default)]
    attachment: Option<Attachment>,
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
struct TraceParams {
    /// The packet, described as `xvsctl trace` takes it.
    packet: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Apply {
    state: DesiredState,
    /// Only report what would change.
    #[serde(default)]
    dry_run: bool,
}

/// Most packets one capture may ask for (each up to a frame, ~1.8 KB,
/// held in memory until the file is written).
pub const MAX_CAPTURE_PACKETS: u64 = 100_000;
/// Longest a capture may wait for its packets.
pub const MAX_CAPTURE_TIMEOUT_MS: u64 = 300_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureParams {
    port: String,
    #[serde(default = "default_capture_count")]
    count: u64,
    #[serde(default = "default_snaplen")]
    snaplen: u32,
    #[serde(default = "default_capture_timeout_ms")]
    timeout_ms: u64,
    /// Where xvsd writes the pcap: an absolute path.
    path: PathBuf,
}

fn default_capture_count() -> u64 {
    10
}
fn default_snaplen() -> u32 {
    65535
}
fn default_capture_timeout_ms() -> u64 {
    10_000
}

pub(super) fn err(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, message)
}

/// A change's answer: its lines and the generation the datapath runs.
pub(super) fn changed(changes: &[String], generation: u64, dry_run: bool) -> Value {
    json!({ "changes": changes, "generation": generation, "dry_run": dry_run })
}

/// A method's parameters; absent ones are an empty object.
pub(super) fn params<T: for<'de> Deserialize<'de>>(params: &Value) -> Result<T, ErrorBody> {
    let params = if params.is_null() { &json!({}) } else { params };
    serde_json::from_value(params.clone()).map_err(|e| err(ErrorCode::InvalidParams, e.to_string()))
}

impl Control {
    pub fn new(datapath: Arc<Mutex<Datapath>>, store: Option<StateStore>) -> Control {
        Control { datapath, store }
    }

    pub(super) fn datapath(&self) -> MutexGuard<'_, Datapath> {
        // A panic while holding the lock is a bug; the datapath itself is
        // still consistent (apply changes it only at the end).
        self.datapath.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `change` to the desired state, then persists it. Returns
    /// the change's lines and the generation the datapath runs.
    pub(super) fn change(
        &self,
        change: impl FnOnce(&mut DesiredState) -> Result<(), ErrorBody>,
        dry_run: bool,
    ) -> Result<Value, ErrorBody> {
        let mut dp = self.datapath();
        let mut state = dp.desired().clone();
        change(&mut state)?;
        let changes = diff(dp.desired(), &state);
        if !changes.is_empty() && !dry_run {
            // Everything but the Services is small: journal it, unless the
            // Services changed too (`apply`), then write it all.
            let services_changed = !state.services.ptr_eq(&dp.desired().services);
            dp.apply(state.clone()).map_err(|e| match e {
                DaemonError::Steer(xvs_hw::steer::SteerError::NoInterface(name)) => err(
                    ErrorCode::NotFound,
                    format!("interface {name} does not exist"),
                ),
                DaemonError::NodeFixed(_) => err(ErrorCode::InvalidParams, e.to_string()),
                e => super::services::service_error(e),
            })?;
            let journaled = (!services_changed).then(|| {
                let mut base = state.clone();
                base.services = Default::default();
                vec![JournalEntry::Base(base)]
            });
            self.persist(journaled.as_deref(), &state, &changes)?;
        }
        Ok(changed(&changes, dp.snapshot().generation, dry_run))
    }

    /// Persists a change the datapath took — as `entries` in the journal,
    /// or with `None` the whole `state` — and logs its lines.
    pub(super) fn persist(
        &self,
        entries: Option<&[JournalEntry]>,
        state: &DesiredState,
        changes: &[String],
    ) -> Result<(), ErrorBody> {
        if let Some(store) = &self.store {
            match entries {
                Some(entries) => store.record(entries, state),
                None => store.save(state),
            }
            .map_err(|e| {
                err(
                    ErrorCode::Internal,
                    format!("applied, but not persisted: {e}"),
                )
            })?;
        }
        for line in changes {
            tracing::info!(change = line.as_str(), "desired state");
        }
        Ok(())
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
            "pod_mtu": pod_mtu(dp.desired()),
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
            flows: dp.flows().len(),
            flow_capacity: dp.flows().capacity(),
            services: dp.snapshot().services.len(),
            snat_ports: dp.snat_ports(),
        })
    }

    fn stats(&self) -> Value {
        let dp = self.datapath();
        let mut v = serde_json::to_value(dp.live_report()).unwrap_or_default();
        v["generation"] = json!(dp.snapshot().generation);
        v
    }

    /// Captures into a pcap file; see the module documentation.
    fn capture(&self, c: CaptureParams, peer: &Peer) -> Result<Value, ErrorBody> {
        let invalid = |m: String| err(ErrorCode::InvalidParams, format!("capture: {m}"));
        if peer.uid != 0 {
            return Err(err(
                ErrorCode::PermissionDenied,
                "capture: xvsd writes the file as root, so only root may capture",
            ));
        }
        if !(1..=MAX_CAPTURE_PACKETS).contains(&c.count) {
            return Err(invalid(format!(
                "count {} is out of range 1..={MAX_CAPTURE_PACKETS}",
                c.count
            )));
        }
        if !(1..=65535).contains(&c.snaplen) {
            return Err(invalid(format!(
                "snaplen {} is out of range 1..=65535",
                c.snaplen
            )));
        }
        if !(1..=MAX_CAPTURE_TIMEOUT_MS).contains(&c.timeout_ms) {
            return Err(invalid(format!(
                "timeout_ms {} is out of range 1..={MAX_CAPTURE_TIMEOUT_MS}",
                c.timeout_ms
            )));
        }
        if !c.path.is_absolute() {
            return Err(invalid(format!(
                "path {}: must be absolute (xvsd writes it, from its own working directory)",
                c.path.display()
            )));
        }
        Report::check_path(&c.path)
            .map_err(|e| invalid(format!("path {}: {e}", c.path.display())))?;
        let result = Datapath::capture(
            &self.datapath,
            &c.port,
            c.count,
            usize::try_from(c.snaplen).unwrap_or(usize::MAX),
            Duration::from_millis(c.timeout_ms),
        )
        .map_err(|e| match e {
            DaemonError::NoPort { .. } => err(ErrorCode::NotFound, format!("capture: {e}")),
            DaemonError::CaptureBusy(_) => err(ErrorCode::Conflict, format!("capture: {e}")),
            e => err(ErrorCode::Internal, format!("capture: {e}")),
        })?;
        let written = capture::to_pcap(&result.frames, c.snaplen)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_atomically(&c.path, &bytes));
        if let Err(e) = written {
            return Err(err(
                ErrorCode::Internal,
                format!(
                    "capture: {} packets captured, but writing {} failed: {e}",
                    result.frames.len(),
                    c.path.display()
                ),
            ));
        }
        Ok(json!({
            "port": c.port,
            "path": c.path,
            "packets": result.frames.len(),
            "dropped": result.dropped,
            "interrupted": result.interrupted,
        }))
    }

    /// Traces `packet` through the current snapshot.
    fn trace(&self, packet: &str) -> Result<Value, ErrorBody> {
        let (snapshot, missing) = {
            let dp = self.datapath();
            (Arc::clone(dp.snapshot()), dp.missing().to_vec())
        };
        let trace = crate::trace::trace(&snapshot, packet).map_err(|e| {
            let message = match e {
                crate::trace::TraceError::UnknownPort(name) if missing.contains(&name) => {
                    format!(
                        "in_port={name}: the port's interface does not exist, so it is not \
                         in the datapath (`xvsctl show` lists missing ports)"
                    )
                }
                e => e.to_string(),
            };
            err(ErrorCode::InvalidParams, format!("trace: {message}"))
        })?;
        serde_json::to_value(trace).map_err(|e| err(ErrorCode::Internal, e.to_string()))
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

/// The largest MTU a pod can use without its packets being too big for
/// the overlay: the smallest uplink's MTU minus the VXLAN encapsulation
/// (what CNI plugins give pods by default). `None` without an uplink.
pub fn pod_mtu(state: &DesiredState) -> Option<u16> {
    state
        .ports
        .iter()
        .filter(|p| matches!(p.kind, PortKind::Uplink { .. }))
        .map(|p| p.mtu)
        .min()
        .map(|mtu| mtu.saturating_sub(u16::try_from(VXLAN_OVERHEAD).unwrap_or(u16::MAX)))
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
    fn handle(&self, request: &Request, peer: &Peer) -> Result<Value, ErrorBody> {
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
            "capture" => self.capture(request.params()?, peer),
            "route-list" => Ok(json!(self.datapath().desired().routes)),
            "vtep-list" => Ok(json!(self.datapath().desired().remote_nodes)),
            "trace" => {
                let t: TraceParams = request.params()?;
                self.trace(&t.packet)
            }
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
                    attachment: p.attachment,
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
            method => super::flows::handle(self, method, &request.params)
                .or_else(|| super::services::handle(self, method, &request.params))
                .unwrap_or_else(|| Err(unknown_method(request))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(ports: Value) -> DesiredState {
        serde_json::from_value(json!({
            "node": {"node_ip": "192.168.1.1", "pod_cidr": "10.244.1.0/24", "gateway_ip": "169.254.1.1", "gateway_mac": "02:00:00:00:00:ff"},
            "ports": ports,
        }))
        .expect("a valid state")
    }

    #[test]
    fn pod_mtu_is_the_smallest_uplink_mtu_minus_vxlan() {
        let uplink = |name: &str, mtu: u16| json!({"name": name, "kind": {"uplink": {"mac": "02:00:00:00:00:01"}}, "mtu": mtu});
        let pod = json!({"name": "p", "kind": {"pod": {"ip": "10.244.1.2", "mac": "02:00:00:00:00:02"}}, "mtu": 1000});
        assert_eq!(pod_mtu(&state(json!([pod.clone()]))), None);
        assert_eq!(
            pod_mtu(&state(json!([pod, uplink("u1", 9000)]))),
            Some(8950)
        );
        assert_eq!(
            pod_mtu(&state(json!([uplink("u1", 9000), uplink("u2", 1500)]))),
            Some(1450)
        );
    }
}
