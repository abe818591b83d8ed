//! xvs datapath: packet views, ports, the batch pipeline, and the worker
//! that drives them.
//!
//! Layout, following the packet:
//! - [`port`]: where packets come from and go to ([`port::Port`], the
//!   in-memory port, the AF_XDP port);
//! - [`packet`]: frames and descriptors (the UMEM model);
//! - [`wire`]: zero-copy typed views of the protocols;
//! - [`snapshot`]: the desired state compiled into immutable tables
//!   ([`lpm`] routes, ports, overlay, bridge domains);
//! - [`classifier`]: user flow rules compiled for the slow path's lookup;
//! - [`pipeline`]: the stages a batch walks, one file each;
//! - [`l2`]: the MAC learning table;
//! - [`drop`]: drop reasons and per-worker counters;
//! - [`worker`]: polls ports, runs the pipeline, flushes transmit queues;
//! - [`capture`]: copies of one port's frames for `xvsctl capture`;
//! - [`trace`]: one described packet through the slow path, for
//!   `xvsctl trace`;
//! - [`daemon`]: xvsd: configuration, AF_XDP setup, the worker thread.
//!
//! No FFI and no `unsafe` here: NICs are reached only through the `Port`
//! trait, whose AF_XDP implementation wraps `hw`.

#![forbid(unsafe_code)]

pub mod capture;
pub mod classifier;
pub mod daemon;
pub mod drop;
pub mod flow_cache;
pub mod handoff;
pub mod l2;
pub mod lpm;
pub mod packet;
pub mod pipeline;
pub mod port;
pub mod services;
pub mod snapshot;
pub mod trace;
pub mod wire;
pub mod worker;
