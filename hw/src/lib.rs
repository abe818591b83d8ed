//! xvs hardware access: AF_XDP sockets and UMEM (xsk-rs), the XDP steering
//! program (libbpf-rs), NIC queue queries and CPU pinning (issue #4), and
//! the two memory primitives the flow table needs ([`mem`]).
//!
//! This is the only crate of the workspace allowed to use `unsafe`; every
//! block carries a `// SAFETY:` comment (enforced by the workspace lint
//! `clippy::undocumented_unsafe_blocks`), and memory shared with the kernel
//! is wrapped into owning types at once and never handed out as long-lived
//! `&mut [u8]` aliases.

pub mod cpu;
pub mod mem;
#[cfg(feature = "afxdp")]
pub mod steer;
#[cfg(feature = "afxdp")]
pub mod xsk;
