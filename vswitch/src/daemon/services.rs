//! The control methods over Services: `service-add`, `service-del`,
//! `service-list`, `endpoint-add`, `endpoint-del`.
//!
//! Services and their endpoints are managed apart, as Kubernetes keeps
//! Services and EndpointSlices apart: `service-add` of a Service that
//! exists with other settings is a conflict unless `replace` is set, and a
//! replacing add that lists no endpoints keeps the endpoints the Service
//! has; `endpoint-add` adds an endpoint or updates its conditions and
//! weight (by address), `endpoint-del` removes it. Adding exactly what is
//! there changes nothing.
//!
//! Every change takes the Service fast path ([`Datapath::apply_services`]):
//! one Service compiled, the snapshot shared otherwise, one journal line
//! synced ([`super::store`]); its cost does not grow with the number of
//! Services. The answer comes once every worker runs the new snapshot and
//! the change is on disk, so when `xvsctl` returns the datapath uses it.
//!
//! Errors: a Service that does not hold together is `invalid-params`, one
//! that claims another's address and port or node port is `conflict`, an
//! unknown Service or endpoint is `not-found`; each message says what.

use std::net::Ipv4Addr;

use serde::Deserialize;
use serde_json::{json, Value};
use xvs_control::protocol::{ErrorBody, ErrorCode};
use xvs_control::service::{EndpointSpec, ServiceSpec, Services};

use super::control::{changed, err, params, Control};
use super::store::JournalEntry;
use super::DaemonError;
use crate::services::ServiceTableError;
use crate::snapshot::CompileError;

/// Most Services one `service-list` answers with (the answer must fit a
/// protocol line).
pub const MAX_LIST: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceAdd {
    service: ServiceSpec,
    #[serde(default)]
    replace: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceName {
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ServiceList {
    /// Only this Service, or the Services of this namespace (`ns/`).
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointAdd {
    service: String,
    endpoint: EndpointSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointDel {
    service: String,
    ip: Ipv4Addr,
}

/// Answers `method` if it is one of this module's; `None` otherwise.
pub(super) fn handle(
    control: &Control,
    method: &str,
    request: &Value,
) -> Option<Result<Value, ErrorBody>> {
    Some(match method {
        "service-add" => params(request).and_then(|a: ServiceAdd| {
            control.change_service(&a.service.name.clone(), |current| {
                let mut new = a.service;
                match current {
                    Some(old) if a.replace && new.endpoints.is_empty() => {
                        new.endpoints.clone_from(&old.endpoints);
                    }
                    Some(old) if !a.replace && **old != new => {
                        return Err(err(
                            ErrorCode::Conflict,
                            format!(
                                "service {} exists with other settings; replace it \
                                 (xvsctl service add --replace) or delete it first",
                                new.name
                            ),
                        ))
                    }
                    _ => {}
                }
                Ok(Some(new))
            })
        }),
        "service-del" => params(request).and_then(|d: ServiceName| {
            control.change_service(&d.name, |current| match current {
                Some(_) => Ok(None),
                None => Err(not_found(&d.name)),
            })
        }),
        "endpoint-add" => params(request).and_then(|a: EndpointAdd| {
            control.change_service(&a.service, |current| {
                let mut s = (**current.ok_or_else(|| not_found(&a.service))?).clone();
                match s.endpoints.iter_mut().find(|e| e.ip == a.endpoint.ip) {
                    Some(e) => *e = a.endpoint,
                    None => s.endpoints.push(a.endpoint),
                }
                Ok(Some(s))
            })
        }),
        "endpoint-del" => params(request).and_then(|d: EndpointDel| {
            control.change_service(&d.service, |current| {
                let mut s = (**current.ok_or_else(|| not_found(&d.service))?).clone();
                let before = s.endpoints.len();
                s.endpoints.retain(|e| e.ip != d.ip);
                if s.endpoints.len() == before {
                    return Err(err(
                        ErrorCode::NotFound,
                        format!("service {} has no endpoint {}", d.service, d.ip),
                    ));
                }
                Ok(Some(s))
            })
        }),
        "service-list" => params(request).map(|l: ServiceList| list(control, &l)),
        _ => return None,
    })
}

fn not_found(name: &str) -> ErrorBody {
    err(ErrorCode::NotFound, format!("no service {name}"))
}

/// The Services `l` asks for, each with its endpoints and how many of them
/// take new connections.
fn list(control: &Control, l: &ServiceList) -> Value {
    let dp = control.datapath();
    let snap = dp.snapshot();
    let wanted = |s: &ServiceSpec| match l.name.as_deref() {
        None => true,
        Some(ns) if ns.ends_with('/') => s.name.starts_with(ns),
        Some(name) => s.name == name,
    };
    let matching = || dp.desired().services.iter().filter(|s| wanted(s));
    let total = matching().count();
    let services: Vec<Value> = matching()
        .take(MAX_LIST)
        .map(|s| {
            let mut v = serde_json::to_value(&**s).unwrap_or_default();
            let usable = snap.services.get(&s.name).map_or(0, |c| c.usable_count());
            v["usable_endpoints"] = json!(usable);
            v
        })
        .collect();
    json!({ "services": services, "total": total, "generation": snap.generation })
}

impl Control {
    /// Changes the Service `name` to what `change` makes of it (`None`:
    /// gone), through the Service fast path, then journals it. Returns the
    /// change line and the generation, as other changes do.
    pub(super) fn change_service(
        &self,
        name: &str,
        change: impl FnOnce(
            Option<&std::sync::Arc<ServiceSpec>>,
        ) -> Result<Option<ServiceSpec>, ErrorBody>,
    ) -> Result<Value, ErrorBody> {
        let mut dp = self.datapath();
        let current = dp.desired().services.get(name).cloned();
        let new = change(current.as_ref())?;
        if let Some(s) = &new {
            if s.name != name {
                return Err(err(
                    ErrorCode::InvalidParams,
                    format!("service {} cannot be renamed to {}", name, s.name),
                ));
            }
        }
        let line = match (&current, &new) {
            (Some(old), Some(new)) if **old == *new => None,
            (None, None) => None,
            (None, Some(s)) => Some(format!("+ service {name} {}", json_line(s))),
            (Some(_), Some(s)) => Some(format!("~ service {name} {}", json_line(s))),
            (Some(_), None) => Some(format!("- service {name}")),
        };
        let changes: Vec<String> = line.into_iter().collect();
        if !changes.is_empty() {
            let mut services: Services = dp.desired().services.clone();
            let entry = match new {
                Some(s) => {
                    services.insert(s.clone());
                    JournalEntry::ServicePut(s)
                }
                None => {
                    services.remove(name);
                    JournalEntry::ServiceDel(name.to_string())
                }
            };
            dp.apply_services(services, &[name.to_string()])
                .map_err(service_error)?;
            self.persist(Some(&[entry]), dp.desired(), &changes)?;
        }
        Ok(changed(&changes, dp.snapshot().generation, false))
    }
}

fn json_line(s: &ServiceSpec) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The protocol error for a Service change the datapath refused.
pub(super) fn service_error(e: DaemonError) -> ErrorBody {
    match e {
        DaemonError::Compile(CompileError::Service(
            e @ (ServiceTableError::FrontendTaken(..) | ServiceTableError::NodePortTaken(..)),
        )) => err(ErrorCode::Conflict, e.to_string()),
        DaemonError::Compile(e) => err(ErrorCode::InvalidParams, e.to_string()),
        e => err(ErrorCode::Internal, e.to_string()),
    }
}
