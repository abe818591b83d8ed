//! What xvsd answers on its control socket (`xvs_control::server`).
//!
//! For now the read-only view an operator starts with: `version`, and
//! `show` (ports with their XDP and bind modes, queues and serving
//! workers; workers with core and thread id), built once at start from
//! what the datapath set up. Programming state over the socket (ports,
//! routes, VTEPs, `apply`) comes with the desired-state store.

use serde_json::{json, Value};
use xvs_control::protocol::{ErrorBody, Request, PROTOCOL_VERSION};
use xvs_control::server::{unknown_method, Handler, Peer};

use super::{PortInfo, WorkerInfo};

/// xvsd's control handler.
pub struct Control {
    show: Value,
}

impl Control {
    pub fn new(ports: &[PortInfo], workers: &[WorkerInfo]) -> Control {
        let ports: Vec<Value> = ports
            .iter()
            .map(|p| {
                json!({
                    "name": p.name, "xdp": p.xdp.name(), "bind": p.bind.name(),
                    "queues": p.queues, "workers": p.workers,
                })
            })
            .collect();
        let workers: Vec<Value> = workers
            .iter()
            .enumerate()
            .map(|(i, w)| json!({"worker": i, "core": w.core, "tid": w.tid}))
            .collect();
        Control {
            show: json!({"ports": ports, "workers": workers}),
        }
    }
}

impl Handler for Control {
    fn handle(&self, request: &Request, _peer: &Peer) -> Result<Value, ErrorBody> {
        match request.method.as_str() {
            "version" => Ok(json!({
                "xvsd": env!("CARGO_PKG_VERSION"),
                "protocol": PROTOCOL_VERSION,
            })),
            "show" => Ok(self.show.clone()),
            _ => Err(unknown_method(request)),
        }
    }
}
