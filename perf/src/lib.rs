//! xvs performance tooling: the packet generator, the benchmark runner
//! (issue #5) and the report helpers behind `make bench`.

#![forbid(unsafe_code)]

pub mod bench;
pub mod frames;
pub mod report;
