//! xvs-cni's side of xvsd's control socket: connect, call, and turn what
//! goes wrong into CNI errors. An xvsd that cannot be reached (no socket, a
//! refused connection, a dropped one) is transient: code 11, naming the
//! socket. An xvsd that answers with an error is code 104, with its message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use xvs_control::client::{Client, ClientError};
use xvs_control::protocol::ErrorCode;

use crate::error::CniError;

/// How long one control request may take: ADD is on the pod's start path.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to xvsd.
pub struct Xvsd {
    client: Client,
    socket: PathBuf,
}

impl Xvsd {
    /// Connects to the control socket at `socket`; failing is code 11.
    pub fn connect(socket: &Path) -> Result<Xvsd, CniError> {
        let mut client = Client::connect(socket).map_err(|e| unreachable(socket, &e))?;
        client
            .set_timeout(TIMEOUT)
            .map_err(|e| unreachable(socket, &e))?;
        Ok(Xvsd {
            client,
            socket: socket.to_path_buf(),
        })
    }

    /// Calls `method`; xvsd's errors are code 104, lost connections code 11.
    pub fn call(&mut self, method: &'static str, params: Value) -> Result<Value, CniError> {
        self.client
            .call(method, params)
            .map_err(|e| self.error(method, e))
    }

    /// `port-del`; `Ok(false)` when xvsd has no such port.
    pub fn port_del(&mut self, name: &str) -> Result<bool, CniError> {
        match self.client.call("port-del", json!({ "name": name })) {
            Ok(_) => Ok(true),
            Err(ClientError::Refused(body)) if body.code == ErrorCode::NotFound => Ok(false),
            Err(e) => Err(self.error("port-del", e)),
        }
    }

    /// `port-list`: every port xvsd has, with `attachment` and `status`.
    pub fn port_list(&mut self) -> Result<Vec<Value>, CniError> {
        match self.call("port-list", Value::Null)? {
            Value::Array(ports) => Ok(ports),
            other => Err(CniError::XvsdRefused {
                socket: self.socket.display().to_string(),
                method: "port-list",
                message: format!("expected an array of ports, got {other}"),
            }),
        }
    }

    /// The MTU xvsd says pods should have (`show`'s `pod_mtu`: its
    /// smallest uplink's minus the VXLAN overhead); `None` without an
    /// uplink.
    pub fn pod_mtu(&mut self) -> Result<Option<u32>, CniError> {
        let show = self.call("show", Value::Null)?;
        Ok(show["pod_mtu"].as_u64().and_then(|m| u32::try_from(m).ok()))
    }

    fn error(&self, method: &'static str, e: ClientError) -> CniError {
        match e {
            ClientError::Refused(body) => CniError::XvsdRefused {
                socket: self.socket.display().to_string(),
                method,
                message: body.message,
            },
            other => unreachable(&self.socket, &other),
        }
    }
}

/// Code 11: xvsd could not be reached (or dropped the connection).
fn unreachable(socket: &Path, e: &dyn std::fmt::Display) -> CniError {
    CniError::TryAgainLater {
        reason: format!(
            "xvsd is not reachable on its control socket {}: {e}",
            socket.display()
        ),
    }
}
