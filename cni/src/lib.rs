//! `xvs-cni`: the CNI plugin that attaches pods to xvsd (issue #7).
//!
//! Depends on `control` only, never on the datapath.

#![forbid(unsafe_code)]
