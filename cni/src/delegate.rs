//! Delegated IPAM: running the plugin `ipam.type` names, as libcni's
//! `invoke.DelegateAdd/Del/Check` do for the reference plugins (bridge, ptp).
//!
//! **Finding it.** `ipam.type` is a bare file name (empty or containing `/`:
//! code 7), looked up in the `CNI_PATH` directories in order; the first
//! regular file of that name wins, as libcni's `FindInPath` does. None is
//! [`CniError::DelegateNotFound`], code 7, naming the plugin and the path.
//!
//! **Running it.** The delegate gets our environment with `CNI_COMMAND` set
//! to the operation, the configuration exactly as we received it
//! ([`NetConf::raw`], `runtimeConfig` and `prevResult` included) on stdin,
//! and our stderr, so its logs reach the runtime as ours do. The other
//! `CNI_*` variables are set again from the parsed [`Env`]: in the binary
//! that changes nothing, and in-process callers whose variables did not come
//! from the process environment (tests) hand on what they were given. A
//! spawn that fails with ETXTBSY (the file is still open for writing
//! somewhere, typically a plugin being installed, or a fork of another
//! thread holding a descriptor) is retried a few times, as libcni does.
//! Another failure to start it is code 5.
//!
//! **Never hanging.** stdin is written and stdout read on their own
//! threads; the caller waits for both the end of stdout and the exit, up to
//! one deadline ([`DEFAULT_TIMEOUT`]). Past it the delegate is killed and
//! the answer is code 11 (try again later). Only the delegate itself is
//! killed: a grandchild that keeps stdout open is not waited for either (its
//! reader thread is abandoned and ends with the process).
//!
//! **Its answer.** Exit 0: for ADD, stdout is a result of any version we
//! speak ([`CniResult::from_json`]; its `cniVersion`, if any, must be one of
//! them), for the other commands stdout is ignored. Non-zero: stdout is a
//! CNI error object, passed on unchanged as [`CniError::Delegated`] (its
//! code, `msg` and `details`, whatever they are). Output that decodes as
//! neither is code 6.
//!
//! **Commands from CNI 1.1.0.** GC and STATUS are new in 1.1.0; IPAM plugins
//! built before it (Debian 12's host-local 1.1.1) answer them with code 4
//! (unknown `CNI_COMMAND`) or 1 (incompatible version).
//! [`Delegate::run_if_known`] treats those two as "nothing to do here" and
//! logs them.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{self, Child, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use crate::error::CniError;
use crate::spec::{Command, Env, NetConf};
use crate::version::{CniResult, CniVersion};

/// How long one run of the delegate may take before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Spawns tried when the executable is busy (ETXTBSY), and the pause after
/// the first; libcni waits a second, five times.
const SPAWN_ATTEMPTS: u32 = 5;
const SPAWN_PAUSE: Duration = Duration::from_millis(100);

/// One configuration's IPAM plugin, ready to be run for any command.
#[derive(Clone, Debug)]
pub struct Delegate<'a> {
    plugin: &'a str,
    env: &'a Env,
    stdin: Vec<u8>,
    timeout: Duration,
}

impl<'a> Delegate<'a> {
    /// The plugin `plugin` (the configuration's `ipam.type`) for the
    /// invocation `env` with the configuration `conf`.
    pub fn new(plugin: &'a str, env: &'a Env, conf: &NetConf) -> Delegate<'a> {
        Delegate {
            plugin,
            env,
            // A `Value` always serialises (its keys are strings).
            stdin: serde_json::to_vec(&conf.raw).unwrap_or_default(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Changes how long one run may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Delegate<'a> {
        self.timeout = timeout;
        self
    }

    /// The plugin's name (`ipam.type`).
    pub fn plugin(&self) -> &str {
        self.plugin
    }

    /// ADD: the IPAM result.
    pub fn add(&self) -> Result<CniResult, CniError> {
        let stdout = self.exec(Command::Add)?;
        let what = format!("the result of IPAM plugin {}", self.plugin);
        let decode = |source| CniError::Decode {
            what: what.clone(),
            source,
        };
        let value: Value = serde_json::from_slice(&stdout).map_err(decode)?;
        if let Some(version) = value.get("cniVersion") {
            let spoken = version.as_str().and_then(|v| CniVersion::parse(v).ok());
            if spoken.is_none() {
                return Err(decode(serde::de::Error::custom(format!(
                    "cniVersion {version} is not one of {}",
                    CniVersion::supported_list()
                ))));
            }
        }
        CniResult::from_json(&value, &what)
    }

    /// DEL, CHECK, GC or STATUS; the delegate's error is returned.
    pub fn run(&self, command: Command) -> Result<(), CniError> {
        self.exec(command).map(drop)
    }

    /// GC or STATUS, for which a delegate from before CNI 1.1.0 answers
    /// code 4 or 1: that is logged to `log` and is success.
    pub fn run_if_known(&self, command: Command, log: &mut String) -> Result<(), CniError> {
        match self.run(command) {
            Err(CniError::Delegated {
                code: code @ (1 | 4),
                msg,
                ..
            }) => {
                let _ = writeln!(
                    log,
                    "xvs-cni: {command}: IPAM plugin {} does not do {command} \
                     (code {code}: {msg}); skipped",
                    self.plugin
                );
                Ok(())
            }
            other => other,
        }
    }

    /// Runs the delegate for `command`; its stdout if it exits 0.
    fn exec(&self, command: Command) -> Result<Vec<u8>, CniError> {
        let exe = find(self.plugin, &self.env.path)?;
        let mut cmd = self.command(&exe, command);
        let running =
            |what: &str| format!("{what} IPAM plugin {} ({})", self.plugin, exe.display());
        let mut child = spawn(&mut cmd).map_err(|e| CniError::io(running("running"), e))?;
        let deadline = Instant::now() + self.timeout;
        let timed_out = || CniError::TryAgainLater {
            reason: format!(
                "IPAM plugin {} ({}) did not finish {command} within {:?} and was killed",
                self.plugin,
                exe.display(),
                self.timeout
            ),
        };

        if let Some(mut stdin) = child.stdin.take() {
            let input = self.stdin.clone();
            // A delegate that exits without reading makes this fail (EPIPE):
            // its exit status tells what happened.
            thread::spawn(move || {
                let _ = stdin.write_all(&input);
            });
        }
        let (tx, rx) = mpsc::channel();
        if let Some(mut stdout) = child.stdout.take() {
            thread::spawn(move || {
                let mut out = Vec::new();
                let read = stdout.read_to_end(&mut out).map(|_| out);
                let _ = tx.send(read);
            });
        }
        let stdout = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                kill(&mut child);
                return Err(CniError::io(running("reading the output of"), e));
            }
            Err(RecvTimeoutError::Timeout) => {
                kill(&mut child);
                return Err(timed_out());
            }
            Err(RecvTimeoutError::Disconnected) => {
                kill(&mut child);
                return Err(CniError::io(
                    running("reading the output of"),
                    io::Error::other("no stdout pipe"),
                ));
            }
        };
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    kill(&mut child);
                    return Err(timed_out());
                }
                Ok(None) => thread::sleep(Duration::from_millis(2)),
                Err(e) => {
                    kill(&mut child);
                    return Err(CniError::io(running("waiting for"), e));
                }
            }
        };
        if status.success() {
            Ok(stdout)
        } else {
            Err(delegated_error(self.plugin, status, &stdout))
        }
    }

    /// The process: our environment, `CNI_*` from [`Env`], `command`.
    fn command(&self, exe: &Path, command: Command) -> process::Command {
        let env = self.env;
        let mut cmd = process::Command::new(exe);
        cmd.env("CNI_COMMAND", command.as_str());
        if env.command.is_attachment() {
            cmd.env("CNI_CONTAINERID", &env.container_id)
                .env("CNI_IFNAME", &env.ifname);
            if let Some(netns) = &env.netns {
                cmd.env("CNI_NETNS", netns);
            }
            let args: Vec<String> = env.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
            if !args.is_empty() {
                cmd.env("CNI_ARGS", args.join(";"));
            }
        }
        if let Ok(path) = std::env::join_paths(&env.path) {
            if !env.path.is_empty() {
                cmd.env("CNI_PATH", path);
            }
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        cmd
    }
}

/// The executable `plugin` in the first of the `path` directories that has
/// it as a regular file (symbolic links followed).
pub fn find(plugin: &str, path: &[PathBuf]) -> Result<PathBuf, CniError> {
    if plugin.is_empty() || plugin.contains('/') {
        return Err(CniError::invalid_config(
            "ipam.type",
            format!("{plugin:?} must be a plugin name in CNI_PATH, not a path"),
        ));
    }
    path.iter()
        .map(|dir| dir.join(plugin))
        .find(|exe| exe.metadata().is_ok_and(|m| m.is_file()))
        .ok_or_else(|| CniError::DelegateNotFound {
            plugin: plugin.to_owned(),
            path: path.to_vec(),
        })
}

fn spawn(cmd: &mut process::Command) -> io::Result<Child> {
    let mut pause = SPAWN_PAUSE;
    for _ in 1..SPAWN_ATTEMPTS {
        match cmd.spawn() {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy => {
                thread::sleep(pause);
                pause *= 2;
            }
            other => return other,
        }
    }
    cmd.spawn()
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The CNI error object a failed plugin prints.
#[derive(Deserialize)]
struct ErrorObject {
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

/// What a delegate that exited with `status` and printed `stdout` reported:
/// its error object, or code 6 if stdout is not one.
fn delegated_error(plugin: &str, status: ExitStatus, stdout: &[u8]) -> CniError {
    match serde_json::from_slice::<ErrorObject>(stdout) {
        Ok(e) => CniError::Delegated {
            plugin: plugin.to_owned(),
            code: e.code,
            msg: e.msg,
            details: e.details,
        },
        Err(source) => CniError::Decode {
            what: format!(
                "the error of IPAM plugin {plugin}, which failed ({status}) and printed {:?}",
                String::from_utf8_lossy(&stdout[..stdout.len().min(200)])
            ),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use serde_json::json;
    use tempfile::TempDir;

    use super::*;
    use crate::spec::{CniArgs, Ipam};

    /// A plugin named `name` in `dir`: a shell script with `body`.
    fn script(dir: &Path, name: &str, body: &str) {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn env(command: Command, path: Vec<PathBuf>) -> Env {
        Env {
            command,
            container_id: "c0ffee".into(),
            netns: Some("/var/run/netns/p".into()),
            ifname: "eth0".into(),
            args: CniArgs::parse("K8S_POD_NAME=web-0").unwrap(),
            path,
        }
    }

    fn conf(plugin: &str) -> NetConf {
        NetConf::parse(
            json!({"cniVersion": "1.0.0", "name": "xvs", "type": "xvs-cni",
                   "ipam": {"type": plugin, "ranges": [[{"subnet": "10.9.0.0/24"}]]},
                   "runtimeConfig": {"ips": ["10.9.0.7/24"]}})
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn add_decodes_the_result_and_the_delegate_sees_what_we_got() {
        let dir = TempDir::new().unwrap();
        let seen = dir.path().join("seen");
        script(
            dir.path(),
            "fake",
            &format!(
                "cat > {s}.stdin\necho \"$CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME $CNI_NETNS \
                 $CNI_ARGS $CNI_PATH\" > {s}.env\n\
                 echo '{{\"cniVersion\": \"1.0.0\", \"ips\": [{{\"address\": \"10.9.0.7/24\", \
                 \"gateway\": \"10.9.0.1\"}}], \"dns\": {{\"nameservers\": [\"10.9.0.53\"]}}}}'",
                s = seen.display()
            ),
        );
        let conf = conf("fake");
        let env = env(Command::Add, vec!["/nonexistent".into(), dir.path().into()]);
        let result = Delegate::new("fake", &env, &conf).add().unwrap();
        assert_eq!(result.ips[0].address.to_string(), "10.9.0.7/24");
        assert_eq!(result.dns.nameservers, ["10.9.0.53"]);
        let stdin: Value =
            serde_json::from_slice(&std::fs::read(seen.with_extension("stdin")).unwrap()).unwrap();
        assert_eq!(stdin, conf.raw);
        assert_eq!(
            std::fs::read_to_string(seen.with_extension("env")).unwrap(),
            format!(
                "ADD c0ffee eth0 /var/run/netns/p K8S_POD_NAME=web-0 /nonexistent:{}\n",
                dir.path().display()
            )
        );
    }

    #[test]
    fn the_delegates_error_object_is_passed_through() {
        let dir = TempDir::new().unwrap();
        script(
            dir.path(),
            "fake",
            r#"echo '{"cniVersion": "1.0.0", "code": 999, "msg": "no IP addresses available in range set: 10.9.0.1-10.9.0.254", "details": "ask an admin"}'; exit 1"#,
        );
        let conf = conf("fake");
        let env = env(Command::Del, vec![dir.path().into()]);
        let err = Delegate::new("fake", &env, &conf)
            .run(Command::Del)
            .unwrap_err();
        assert_eq!(err.code(), 999);
        let reply = err.to_reply(CniVersion::V1_0_0);
        assert_eq!(
            reply.msg,
            "no IP addresses available in range set: 10.9.0.1-10.9.0.254"
        );
        assert_eq!(reply.details, "ask an admin");
    }

    #[test]
    fn undecodable_output_is_code_6() {
        let dir = TempDir::new().unwrap();
        script(dir.path(), "fails", "echo 'panic: oops'; exit 2");
        script(dir.path(), "garbage", "echo '{\"ips\": \"none\"}'");
        script(dir.path(), "future", "echo '{\"cniVersion\": \"9.0.0\"}'");
        script(dir.path(), "silent", "exit 0");
        let conf = conf("fails");
        let env = env(Command::Add, vec![dir.path().into()]);
        let err = Delegate::new("fails", &env, &conf).add().unwrap_err();
        assert_eq!(err.code(), 6);
        let msg = err.to_string();
        assert!(
            msg.contains("IPAM plugin fails") && msg.contains("panic: oops"),
            "{msg}"
        );
        for plugin in ["garbage", "future", "silent"] {
            let err = Delegate::new(plugin, &env, &conf).add().unwrap_err();
            assert_eq!(err.code(), 6, "{plugin}: {err}");
            assert!(
                err.to_string()
                    .starts_with(&format!("cannot decode the result of IPAM plugin {plugin}")),
                "{err}"
            );
        }
    }

    #[test]
    fn a_missing_plugin_is_code_7_naming_it_and_the_path() {
        let dir = TempDir::new().unwrap();
        let path = vec![dir.path().join("a"), dir.path().join("b")];
        std::fs::create_dir_all(&path[0]).unwrap();
        // A directory of that name is not the plugin.
        std::fs::create_dir_all(path[0].join("host-local")).unwrap();
        let err = find("host-local", &path).unwrap_err();
        assert_eq!(err.code(), 7);
        assert_eq!(
            err.to_string(),
            format!(
                "IPAM plugin \"host-local\" (ipam.type) not found in CNI_PATH {}:{}",
                path[0].display(),
                path[1].display()
            )
        );
        let err = find("host-local", &[]).unwrap_err();
        assert!(err.to_string().ends_with("CNI_PATH (empty)"), "{err}");
        for bad in ["", "../host-local", "/usr/lib/cni/host-local"] {
            assert_eq!(find(bad, &path).unwrap_err().code(), 7, "{bad:?}");
        }
        // The first directory that has it wins.
        std::fs::create_dir_all(&path[1]).unwrap();
        script(&path[1], "ipam", "exit 0");
        std::fs::create_dir_all(dir.path().join("c")).unwrap();
        script(&dir.path().join("c"), "ipam", "exit 0");
        let both = vec![path[1].clone(), dir.path().join("c")];
        assert_eq!(find("ipam", &both).unwrap(), path[1].join("ipam"));
    }

    #[test]
    fn a_plugin_that_cannot_run_is_code_5() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("not-executable");
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        let conf = conf("not-executable");
        let env = env(Command::Add, vec![dir.path().into()]);
        let err = Delegate::new("not-executable", &env, &conf)
            .add()
            .unwrap_err();
        assert_eq!(err.code(), 5, "{err}");
    }

    #[test]
    fn a_hanging_plugin_is_killed_and_code_11() {
        let dir = TempDir::new().unwrap();
        // Reads nothing, prints nothing, never ends by itself.
        script(dir.path(), "hangs", "exec sleep 60");
        // Closes stdout at once, then hangs.
        script(dir.path(), "lingers", "exec >&-\nexec sleep 60");
        let conf = conf("hangs");
        let env = env(Command::Add, vec![dir.path().into()]);
        for plugin in ["hangs", "lingers"] {
            let started = Instant::now();
            let err = Delegate::new(plugin, &env, &conf)
                .with_timeout(Duration::from_millis(300))
                .run(Command::Check)
                .unwrap_err();
            let took = started.elapsed();
            assert_eq!(err.code(), 11, "{plugin}: {err}");
            assert!(err.to_string().contains("killed"), "{err}");
            assert!(took < Duration::from_secs(5), "{plugin}: {took:?}");
        }
    }

    #[test]
    fn gc_and_status_tolerate_plugins_from_before_1_1() {
        let dir = TempDir::new().unwrap();
        script(
            dir.path(),
            "old",
            r#"echo '{"code": 4, "msg": "unknown CNI_COMMAND: GC"}'; exit 1"#,
        );
        script(
            dir.path(),
            "broken",
            r#"echo '{"code": 5, "msg": "disk on fire"}'; exit 1"#,
        );
        let conf = conf("old");
        let env = env(Command::Gc, vec![dir.path().into()]);
        let mut log = String::new();
        Delegate::new("old", &env, &conf)
            .run_if_known(Command::Gc, &mut log)
            .unwrap();
        assert!(log.contains("unknown CNI_COMMAND: GC"), "{log}");
        let err = Delegate::new("broken", &env, &conf)
            .run_if_known(Command::Status, &mut log)
            .unwrap_err();
        assert_eq!((err.code(), err.to_string()), (5, "disk on fire".into()));
        assert!(matches!(conf.ipam, Ipam::Delegate { .. }));
    }
}
