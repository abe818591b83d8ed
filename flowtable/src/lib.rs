//! xvs flow state: the lock-free exact-match flow cache ([`table`]) over
//! packed flow keys ([`key`]), conntrack entries with NAT bindings, Maglev
//! tables and SNAT port allocation.
//!
//! Pure data structures: no I/O, no knowledge of ports or sockets, so they
//! are tested against simple models and benchmarked in isolation. Every
//! structure here is shared by the worker cores and the control plane, and
//! its module states who reads, who writes, and what a reader sees during a
//! write.

#![forbid(unsafe_code)]

pub mod conntrack;
pub mod key;
pub mod maglev;
pub mod snat_ports;
pub mod table;

pub use conntrack::{
    Conntrack, CtError, CtRef, CtState, CtView, Dir, NatBinding, PacketInfo, TcpState, Timeouts,
    Verdict,
};
pub use key::{FlowKey, FlowTuple};
pub use table::{FlowHit, FlowState, FlowTable, FlowValue, FlowView, Inserted};
