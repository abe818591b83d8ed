//! Errors in the shape the CNI spec prescribes.
//!
//! A CNI plugin fails by exiting non-zero and printing one JSON object on
//! stdout (SPEC.md 1.1.0, "Error"):
//!
//! ```json
//! { "cniVersion": "1.1.0", "code": 7, "msg": "...", "details": "..." }
//! ```
//!
//! Every fallible function of this crate returns `Result<T, CniError>`, so the
//! code a runtime sees is decided where the failure is understood, not guessed
//! at the top. [`CniError`] is a `thiserror` enum: its `Display` is the `msg`
//! (one line naming the variable, field or value at fault, as the spec asks
//! for codes 2 and 4) and [`CniError::details`] says what to do about it.
//! Only the binary prints, and only one thing: the result or this error.
//!
//! Codes 0–99 are the spec's; 100 and up are ours and listed in [`ErrorCode`].
//! An error a delegated IPAM plugin reported ([`CniError::Delegated`]) keeps
//! the plugin's own code, message and details, whatever they are, which is
//! why [`CniError::code`] is a number and not an [`ErrorCode`].

use std::io;
use std::path::PathBuf;

use serde::Serialize;

use crate::ipam::IpamError;
use crate::plumb::PlumbError;
use crate::spec::Command;
use crate::version::CniVersion;

/// The numeric codes a runtime sees in `code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorCode {
    /// 1: the configuration asks for a spec version we do not speak.
    IncompatibleVersion = 1,
    /// 2: a configuration field we recognise but do not implement.
    UnsupportedField = 2,
    /// 3: the container is unknown; the runtime need not clean up.
    UnknownContainer = 3,
    /// 4: a `CNI_*` environment variable is missing or malformed.
    InvalidEnvironment = 4,
    /// 5: reading stdin, the lease directory, ... failed.
    Io = 5,
    /// 6: stdin (or `prevResult`) is not the JSON we expect.
    Decoding = 6,
    /// 7: the configuration decodes but does not make sense.
    InvalidNetworkConfig = 7,
    /// 11: a transient condition; the runtime may retry.
    TryAgainLater = 11,
    /// 50: STATUS: the plugin cannot serve ADD now.
    NotAvailable = 50,
    /// 51: STATUS: not available, and existing pods may have limited connectivity.
    LimitedConnectivity = 51,
    /// 100: a command this build does not implement yet.
    NotImplemented = 100,
    /// 101: the IP pool has no free address.
    PoolExhausted = 101,
    /// 102: the pod already has an interface named `CNI_IFNAME`, or the host
    /// end's name is taken (an ADD without the DEL of an earlier one).
    InterfaceExists = 102,
    /// 103: creating or configuring the veth pair failed.
    Plumbing = 103,
    /// 104: xvsd answered, but refused the request.
    XvsdRefused = 104,
    /// 105: CHECK found the attachment differing from `prevResult`.
    CheckFailed = 105,
}

impl ErrorCode {
    /// The number printed in the error JSON.
    pub const fn as_u32(self) -> u32 {
        self as u32
    }
}

/// Everything that can make `xvs-cni` fail, each with its spec code.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// `cniVersion` names a version we do not support (or is absent).
    #[error(
        "CNI version {requested:?} is not supported by xvs-cni (supported: {})",
        CniVersion::supported_list()
    )]
    UnsupportedVersion {
        /// What the configuration said (`""` when it had no `cniVersion`).
        requested: String,
    },
    /// The command exists only from a later spec version than configured.
    #[error("{command} needs cniVersion {minimum} or later, the configuration says {configured}")]
    CommandNeedsVersion {
        /// The command invoked.
        command: Command,
        /// The first spec version that has it.
        minimum: CniVersion,
        /// The configuration's version.
        configured: CniVersion,
    },
    /// A field we know of but do not implement; the spec wants key and value.
    #[error("unsupported field {key} = {value}")]
    UnsupportedField {
        /// JSON path of the field, e.g. `ipam.ranges`.
        key: String,
        /// Its value, as JSON.
        value: String,
    },
    /// The container is not known (code 3).
    #[error("container {container_id:?} is unknown")]
    UnknownContainer {
        /// The `CNI_CONTAINERID` given.
        container_id: String,
    },
    /// Required `CNI_*` variables are unset or empty.
    #[error("required environment variables missing: {}", .vars.join(", "))]
    MissingEnv {
        /// Their names, in the spec's order.
        vars: Vec<&'static str>,
    },
    /// A `CNI_*` variable is set to something unusable.
    #[error("{var}={value:?} is invalid: {reason}")]
    InvalidEnv {
        /// The variable's name.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing, e.g. "reading the network configuration from stdin".
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// JSON that does not decode into what the spec says it is.
    #[error("cannot decode {what}: {source}")]
    Decode {
        /// What was being decoded, e.g. "the network configuration on stdin"
        /// or "the result of IPAM plugin host-local".
        what: String,
        /// serde's description, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A configuration that decodes but is semantically wrong.
    #[error("invalid network configuration: {field}: {reason}")]
    InvalidConfig {
        /// JSON path of the field at fault, e.g. `ipam.rangeStart`.
        field: String,
        /// What is wrong and, where useful, what would be right.
        reason: String,
    },
    /// A transient condition; retrying later should work.
    #[error("try again later: {reason}")]
    TryAgainLater {
        /// What is transiently wrong.
        reason: String,
    },
    /// STATUS: the plugin cannot serve ADD.
    #[error("xvs-cni is not available: {reason}")]
    NotAvailable {
        /// Why, e.g. xvsd not reachable on its socket.
        reason: String,
    },
    /// STATUS: not available, existing pods may be affected too.
    #[error("xvs-cni is not available and existing pods may have limited connectivity: {reason}")]
    LimitedConnectivity {
        /// Why.
        reason: String,
    },
    /// The built-in IP allocator failed.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// Plumbing the veth pair failed (codes 102, 103, or 4 for a bad
    /// `CNI_NETNS`).
    #[error(transparent)]
    Plumb(#[from] PlumbError),
    /// xvsd answered the control request with an error (code 104).
    #[error("xvsd on {socket} refused {method}: {message}")]
    XvsdRefused {
        /// The control socket.
        socket: String,
        /// The control method, e.g. `port-add`.
        method: &'static str,
        /// xvsd's error.
        message: String,
    },
    /// CHECK: what differs from `prevResult` (code 105).
    #[error("CHECK failed: {}", .differences.join("; "))]
    CheckFailed {
        /// One line per difference.
        differences: Vec<String>,
    },
    /// A command this build does not implement yet (code 100).
    #[error("xvs-cni: {command} is not implemented yet")]
    NotImplemented {
        /// The command.
        command: Command,
    },
    /// `ipam.type` names no file in the `CNI_PATH` directories (code 7).
    #[error(
        "IPAM plugin {plugin:?} (ipam.type) not found in CNI_PATH {}",
        if .path.is_empty() { "(empty)".to_owned() } else { join_paths(.path) }
    )]
    DelegateNotFound {
        /// The `ipam.type`.
        plugin: String,
        /// The directories searched.
        path: Vec<PathBuf>,
    },
    /// The delegated IPAM plugin failed; its error object, passed through
    /// unchanged: `Display` is its `msg`.
    #[error("{msg}")]
    Delegated {
        /// The `ipam.type`, for logs.
        plugin: String,
        /// Its `code`.
        code: u32,
        /// Its `msg`.
        msg: String,
        /// Its `details` (`""` when it had none).
        details: String,
    },
}

fn join_paths(path: &[PathBuf]) -> String {
    path.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

impl CniError {
    /// Shorthand for [`CniError::InvalidConfig`].
    pub fn invalid_config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`CniError::InvalidEnv`].
    pub fn invalid_env(var: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self::InvalidEnv {
            var,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`CniError::Io`].
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The code of this error: one of [`ErrorCode`], or a delegated IPAM
    /// plugin's own.
    pub fn code(&self) -> u32 {
        let ours = match self {
            Self::Delegated { code, .. } => return *code,
            Self::UnsupportedVersion { .. } | Self::CommandNeedsVersion { .. } => {
                ErrorCode::IncompatibleVersion
            }
            Self::UnsupportedField { .. } => ErrorCode::UnsupportedField,
            Self::UnknownContainer { .. } => ErrorCode::UnknownContainer,
            Self::MissingEnv { .. } | Self::InvalidEnv { .. } => ErrorCode::InvalidEnvironment,
            Self::Io { .. } => ErrorCode::Io,
            Self::Decode { .. } => ErrorCode::Decoding,
            Self::InvalidConfig { .. } => ErrorCode::InvalidNetworkConfig,
            Self::TryAgainLater { .. } => ErrorCode::TryAgainLater,
            Self::NotAvailable { .. } => ErrorCode::NotAvailable,
            Self::LimitedConnectivity { .. } => ErrorCode::LimitedConnectivity,
            Self::Ipam(e) => match e {
                IpamError::Exhausted { .. } => ErrorCode::PoolExhausted,
                IpamError::Busy { .. } => ErrorCode::TryAgainLater,
                IpamError::Io { .. } => ErrorCode::Io,
                IpamError::RequestedOutOfRange { .. }
                | IpamError::RequestedInUse { .. }
                | IpamError::RequestedWhileHolding { .. } => ErrorCode::InvalidNetworkConfig,
            },
            Self::Plumb(e) => match e {
                PlumbError::IfnameExists { .. } | PlumbError::HostIfnameExists { .. } => {
                    ErrorCode::InterfaceExists
                }
                PlumbError::NetnsNotFound { .. }
                | PlumbError::NetnsOpen { .. }
                | PlumbError::NotANetns { .. } => ErrorCode::InvalidEnvironment,
                PlumbError::InvalidMtu { .. } | PlumbError::InvalidMac { .. } => {
                    ErrorCode::InvalidNetworkConfig
                }
                _ => ErrorCode::Plumbing,
            },
            Self::XvsdRefused { .. } => ErrorCode::XvsdRefused,
            Self::CheckFailed { .. } => ErrorCode::CheckFailed,
            Self::NotImplemented { .. } => ErrorCode::NotImplemented,
            Self::DelegateNotFound { .. } => ErrorCode::InvalidNetworkConfig,
        };
        ours.as_u32()
    }

    /// The `details` string: what a person should do about it.
    pub fn details(&self) -> String {
        match self {
            Self::UnsupportedVersion { .. } => format!(
                "set cniVersion in the network configuration (list) to one of {}; \
                 runtimes on libcni older than 1.2 need 1.0.0 or lower",
                CniVersion::supported_list()
            ),
            Self::CommandNeedsVersion { minimum, .. } => format!(
                "raise cniVersion to {minimum} or later, or do not invoke this command for this network"
            ),
            Self::UnsupportedField { .. } => {
                "remove the field; xvs-cni's built-in IPAM allocates from one subnet \
                 (ipam.subnet with optional rangeStart/rangeEnd/gateway); for more, set \
                 ipam.type to delegate to an IPAM plugin such as host-local, which gets \
                 the whole ipam section"
                    .to_owned()
            }
            Self::UnknownContainer { .. } => {
                "nothing is attached for this container; no cleanup is needed".to_owned()
            }
            Self::MissingEnv { .. } | Self::InvalidEnv { .. } => {
                "the runtime must set CNI_COMMAND; CNI_CONTAINERID (alphanumeric, then \
                 alphanumerics, '_', '.', '-') and CNI_IFNAME (1-15 bytes, not '.' or '..', \
                 no '/', ':' or whitespace) for ADD, DEL and CHECK; CNI_NETNS for ADD and \
                 CHECK; CNI_PATH for GC; CNI_ARGS, if set, is KEY=VALUE pairs separated by ';'"
                    .to_owned()
            }
            Self::Io { .. } => "check the path, its permissions and free space".to_owned(),
            Self::Decode { .. } => {
                "the runtime must pass one JSON network configuration object on stdin; \
                 check the types of the fields named above"
                    .to_owned()
            }
            Self::InvalidConfig { .. } => {
                "fix the field in the network configuration (/etc/cni/net.d)".to_owned()
            }
            Self::TryAgainLater { .. } => "retry the operation".to_owned(),
            Self::NotAvailable { .. } | Self::LimitedConnectivity { .. } => {
                "start xvsd, or check `xvsctl show` and its logs".to_owned()
            }
            Self::Ipam(e) => e.hint(),
            Self::Plumb(PlumbError::IfnameExists { .. } | PlumbError::HostIfnameExists { .. }) => {
                "run DEL for the earlier attachment first, or choose another CNI_IFNAME".to_owned()
            }
            Self::Plumb(PlumbError::InvalidMac { .. }) => {
                "fix runtimeConfig.mac: a unicast (first byte even), non-zero MAC such as \
                 02:xx:xx:xx:xx:xx (locally administered)"
                    .to_owned()
            }
            Self::Plumb(
                PlumbError::NetnsNotFound { .. }
                | PlumbError::NetnsOpen { .. }
                | PlumbError::NotANetns { .. },
            ) => "CNI_NETNS must be the path of the pod's network namespace".to_owned(),
            Self::Plumb(_) => {
                "check the kernel log and that xvs-cni runs as root (CAP_NET_ADMIN, \
                 CAP_SYS_ADMIN) with ethtool installed"
                    .to_owned()
            }
            Self::XvsdRefused { .. } => {
                "check `xvsctl port list` and xvsd's log; a port with this name and other \
                 settings must be deleted first"
                    .to_owned()
            }
            Self::CheckFailed { .. } => {
                "the attachment drifted from what ADD made; delete and re-create the pod".to_owned()
            }
            Self::NotImplemented { .. } => {
                "this command is not implemented by this build of xvs-cni".to_owned()
            }
            Self::DelegateNotFound { .. } => {
                "install the IPAM plugin into one of the CNI_PATH directories (the runtime's \
                 plugin directories), or fix ipam.type"
                    .to_owned()
            }
            Self::Delegated { details, .. } => details.clone(),
        }
    }

    /// The error object the spec prescribes, for the given protocol version.
    pub fn to_reply(&self, version: CniVersion) -> ErrorReply {
        ErrorReply {
            cni_version: version,
            code: self.code(),
            msg: self.to_string(),
            details: self.details(),
        }
    }
}

/// The error JSON object as printed on stdout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorReply {
    /// The protocol version of this output.
    pub cni_version: CniVersion,
    /// [`ErrorCode`] as a number, or a delegated IPAM plugin's code.
    pub code: u32,
    /// One line saying what went wrong.
    pub msg: String,
    /// What to do about it.
    pub details: String,
}

impl ErrorReply {
    /// The object as one line of JSON.
    pub fn to_json(&self) -> String {
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}
