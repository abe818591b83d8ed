//! xvs hardware access: AF_XDP sockets sharing one UMEM ([`xsk`], on
//! libxdp-sys), the XDP steering program ([`steer`], libbpf-rs), the
//! traffic generator's and sink's XDP programs ([`pktgen`]), CPU
//! pinning ([`cpu`]), and the two memory primitives the flow table needs
//! ([`mem`]). The AF_XDP parts are behind the `afxdp` feature, which the
//! datapath turns on, so the flow table builds without libbpf and clang.
//!
//! This is the only crate of the workspace allowed to use `unsafe`; every
//! block carries a `// SAFETY:` comment (enforced by the workspace lint
//! `clippy::undocumented_unsafe_blocks`), and memory shared with the kernel
//! is wrapped into owning types at once and never handed out as long-lived
//! `&mut [u8]` aliases.

pub mod cpu;
pub mod mem;
#[cfg(feature = "afxdp")]
pub mod pktgen;
#[cfg(feature = "afxdp")]
pub mod steer;
#[cfg(feature = "afxdp")]
pub mod xsk;
