//! Running the commands a benchmark is made of (`ip`, `nft`, `ethtool`,
//! `perf`, the devices under test), with their output in the error when
//! they fail.

use std::process::Command;

use super::BenchError;

/// Runs `cmd` with `sh -c`; its stdout, or an error with both streams.
pub fn run(cmd: &str) -> Result<String, BenchError> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map_err(|e| BenchError::Command {
            cmd: cmd.to_string(),
            output: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(BenchError::Command {
            cmd: cmd.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .trim()
            .to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs each command in turn inside network namespace `ns`.
pub fn run_in(ns: &str, cmds: &[&str]) -> Result<(), BenchError> {
    for cmd in cmds {
        run(&format!("ip netns exec {ns} {cmd}"))?;
    }
    Ok(())
}

/// Runs `cmd` for its side effect when it may fail (cleanup).
pub fn quietly(cmd: &str) {
    let _ = Command::new("sh").arg("-c").arg(cmd).output();
}
