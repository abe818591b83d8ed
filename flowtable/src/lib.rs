//! xvs flow state: the lock-free exact-match flow cache, conntrack entries
//! with NAT bindings, and Maglev tables (issue #3).
//!
//! Pure data structures: no I/O, no knowledge of ports or sockets, so they
//! are tested against simple models and benchmarked in isolation.

#![forbid(unsafe_code)]
