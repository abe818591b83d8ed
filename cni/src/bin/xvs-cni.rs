//! The `xvs-cni` executable a container runtime runs (from /opt/cni/bin):
//! `CNI_*` variables in the environment, the network configuration on stdin,
//! the result or the error JSON on stdout, logs on stderr. All the logic is
//! in [`xvs_cni::plugin::run`].

#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let out = xvs_cni::plugin::run(|name| std::env::var(name).ok(), &mut io::stdin().lock());
    // If stdout or stderr is gone there is nobody left to tell.
    let _ = io::stderr().write_all(out.stderr.as_bytes());
    let mut stdout = io::stdout().lock();
    let _ = stdout.write_all(out.stdout.as_bytes());
    let _ = stdout.flush();
    ExitCode::from(out.exit_code)
}
