//! xvs control plane: the desired-state model shared by every source of
//! configuration (config files, the control socket, the CNI plugin, datastore
//! watchers), the control socket's wire format (`protocol`), its server loop
//! (`server`, generic over a handler) and blocking client (`client`), the
//! result of a packet trace (`trace`), and the `xvsctl` CLI.
//!
//! This crate never touches packets and never links the datapath: `xvs-cni`
//! and `xvsctl` depend on it and must stay light. The datapath (`vswitch`)
//! depends on it only for types: the desired state, which it compiles into
//! an immutable snapshot, flow rules, and a trace's result.

#![forbid(unsafe_code)]

pub mod client;
pub mod flowrule;
pub mod protocol;
pub mod server;
pub mod service;
pub mod state;
pub mod trace;
