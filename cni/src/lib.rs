//! `xvs-cni`: the CNI plugin that attaches pods to xvsd (issue #7).
//!
//! Depends on `control` only, never on the datapath. The modules follow the
//! life of one invocation:
//!
//! - [`spec`]: the `CNI_*` environment and the network configuration,
//!   validated per command as SPEC.md 1.1.0 says;
//! - [`version`]: the spec versions we speak, the VERSION reply, and the ADD
//!   result encoded in each version;
//! - [`error`]: the spec's error object and codes, one `thiserror` enum;
//! - [`ipam`]: the built-in host-local-style allocator, leases on disk under
//!   a file lock;
//! - [`delegate`]: running another IPAM plugin (`ipam.type`) from
//!   `CNI_PATH` instead, with a timeout;
//! - [`plumb`]: the veth pair and the pod end's address, routes and
//!   offloads, made and removed over rtnetlink;
//! - [`commands`]: ADD, DEL, CHECK, STATUS and GC, putting those together;
//! - [`plugin`]: one invocation from environment and stdin to stdout, which
//!   the `xvs-cni` binary wraps.

#![forbid(unsafe_code)]

pub mod commands;
pub mod delegate;
pub mod error;
pub mod ipam;
pub mod plugin;
pub mod plumb;
pub mod spec;
pub mod version;
pub mod xvsd;

pub use error::{CniError, ErrorCode};
pub use spec::{Attachment, Command, Env, NetConf};
pub use version::{CniResult, CniVersion};
