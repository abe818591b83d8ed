//! One invocation, from environment and stdin to what goes on stdout.
//!
//! The binary is a thin shell around [`run`], so the whole protocol —
//! which checks run in which order, which `cniVersion` an error carries, what
//! is printed — is testable without spawning processes. The order is
//! libcni's skel, with the version check moved before the schema:
//!
//! 1. the `CNI_*` environment (code 4);
//! 2. VERSION answers at once, whatever stdin holds (or fails to deliver);
//! 3. stdin could not be read (code 5);
//! 4. the configuration: JSON (6), `cniVersion` (1), meaning (7, 2);
//! 5. the command against the configured version (1);
//! 6. the command itself.
//!
//! stdout carries exactly one JSON document, the result or the error, and
//! nothing at all for a successful DEL, CHECK or GC; everything meant for
//! people goes to stderr. An error is encoded in the configuration's version
//! when that is known and one we speak, else in [`CniVersion::LATEST`].
//!
//! The commands themselves are in [`crate::commands`].

use std::io::Read;

use crate::commands;
use crate::error::CniError;
use crate::spec::{Command, Env, NetConf};
use crate::version::{peek_version, version_reply, CniVersion};

/// What the process prints and its exit status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// The result or error JSON (with a trailing newline), or nothing.
    pub stdout: String,
    /// Log lines for people.
    pub stderr: String,
    /// 0 on success, 1 on error.
    pub exit_code: u8,
}

/// Runs one invocation: `lookup` reads environment variables.
pub fn run(lookup: impl Fn(&str) -> Option<String>, stdin: &mut dyn Read) -> Output {
    let mut input = Vec::new();
    let read = stdin.read_to_end(&mut input);
    let reply_version = peek_version(&input).unwrap_or(CniVersion::LATEST);

    let env = match Env::from_lookup(&lookup) {
        Ok(env) => env,
        Err(e) => {
            let mut out = failure(&e, reply_version, "");
            if matches!(&e, CniError::MissingEnv { vars } if vars.contains(&"CNI_COMMAND")) {
                out.stderr = format!(
                    "xvs-cni: CNI plugin attaching pods to xvsd; \
                     CNI protocol versions supported: {}\n{}",
                    CniVersion::supported_list(),
                    out.stderr
                );
            }
            return out;
        }
    };
    let what = if env.command.is_attachment() {
        format!("{} {}/{}: ", env.command, env.container_id, env.ifname)
    } else {
        format!("{}: ", env.command)
    };

    if env.command == Command::Version {
        // Nothing but the reply's cniVersion depends on stdin: a probe
        // never fails on its input, not even an unreadable one.
        return Output {
            stdout: format!("{}\n", version_reply(&input)),
            stderr: String::new(),
            exit_code: 0,
        };
    }
    if let Err(source) = read {
        let e = CniError::io("reading the network configuration from stdin", source);
        return failure(&e, reply_version, &what);
    }
    let conf = match NetConf::parse(&input) {
        Ok(conf) => conf,
        Err(e) => return failure(&e, reply_version, &what),
    };
    let mut log = String::new();
    match dispatch(&env, &conf, &mut log) {
        Ok(stdout) => Output {
            stdout,
            stderr: log,
            exit_code: 0,
        },
        Err(e) => {
            let mut out = failure(&e, conf.cni_version, &what);
            out.stderr.insert_str(0, &log);
            out
        }
    }
}

fn dispatch(env: &Env, conf: &NetConf, log: &mut String) -> Result<String, CniError> {
    conf.check_command(env.command)?;
    match env.command {
        Command::Add => commands::add(env, conf, log),
        Command::Del => commands::del(env, conf, log).map(|()| String::new()),
        Command::Check => commands::check(env, conf).map(|()| String::new()),
        Command::Status => commands::status(env, conf, log).map(|()| String::new()),
        Command::Gc => commands::gc(env, conf, log).map(|()| String::new()),
        Command::Version => Ok(format!("{}\n", version_reply(&[]))),
    }
}

fn failure(e: &CniError, version: CniVersion, what: &str) -> Output {
    let from = match e {
        CniError::Delegated { plugin, .. } => format!(", from IPAM plugin {plugin}"),
        _ => String::new(),
    };
    Output {
        stdout: format!("{}\n", e.to_reply(version).to_json()),
        stderr: format!("xvs-cni: {what}{e} (code {}{from})\n", e.code()),
        exit_code: 1,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::{json, Value};

    use super::*;

    fn invoke(vars: &[(&str, &str)], stdin: &str) -> (Value, Output) {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let out = run(|k| map.get(k).cloned(), &mut stdin.as_bytes());
        let json = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        (json, out)
    }

    const CONF: &str = r#"{"cniVersion": "1.1.0", "name": "xvs", "type": "xvs-cni",
                           "podCIDR": "10.244.1.0/24",
                           "cni.dev/valid-attachments": []}"#;

    fn attach(command: &str) -> Vec<(&str, &str)> {
        vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "abc123"),
            ("CNI_NETNS", "/var/run/netns/p"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
        ]
    }

    #[test]
    fn version_with_libcnis_probe() {
        let (json, out) = invoke(
            &[
                ("CNI_COMMAND", "VERSION"),
                ("CNI_CONTAINERID", ""),
                ("CNI_NETNS", "dummy"),
                ("CNI_IFNAME", "dummy"),
                ("CNI_PATH", "dummy"),
            ],
            r#"{"cniVersion":"1.0.0"}"#,
        );
        assert_eq!(out.exit_code, 0);
        assert_eq!(
            json,
            json!({"cniVersion": "1.0.0",
                   "supportedVersions": ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
        );
        assert!(out.stderr.is_empty());
    }

    /// CONF with xvsd's socket and the lease directory under `dir`.
    fn conf_in(dir: &std::path::Path, version: &str) -> String {
        json!({"cniVersion": version, "name": "xvs", "type": "xvs-cni",
               "socket": dir.join("no-xvsd.sock"),
               "ipam": {"subnet": "10.244.1.0/24", "dataDir": dir.join("ipam")},
               "cni.dev/valid-attachments": []})
        .to_string()
    }

    #[test]
    fn status_without_xvsd_is_code_50_naming_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let (json, out) = invoke(&attach("STATUS"), &conf_in(dir.path(), "1.1.0"));
        assert_eq!(out.exit_code, 1);
        assert_eq!(json["code"], 50);
        assert!(
            json["msg"].as_str().unwrap().contains("no-xvsd.sock"),
            "{json}"
        );
    }

    #[test]
    fn add_without_xvsd_is_code_11_and_leaves_no_lease() {
        let dir = tempfile::tempdir().unwrap();
        let (json, out) = invoke(&attach("ADD"), &conf_in(dir.path(), "1.0.0"));
        assert_eq!(out.exit_code, 1);
        assert_eq!(json["code"], 11, "{json}");
        assert_eq!(json["cniVersion"], "1.0.0");
        assert!(json["msg"].as_str().unwrap().contains("no-xvsd.sock"));
        let leases = dir.path().join("ipam/xvs");
        let held = std::fs::read_dir(&leases)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("10."))
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(held, 0);
    }

    /// An xvsd stand-in on `socket` answering every request with an empty
    /// list (an empty `port-list`; `version` only needs an answer).
    fn fake_xvsd(socket: &std::path::Path) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut writer = stream.try_clone().unwrap();
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        let request: Value = serde_json::from_str(&line).unwrap();
                        let reply = json!({"id": request["id"], "result": []});
                        writeln!(writer, "{reply}").unwrap();
                    }
                });
            }
        });
    }

    /// A fake IPAM plugin `fake` in `dir/bin` that appends its CNI_COMMAND
    /// to `dir/calls` and then runs `body` (with `$CNI_COMMAND` set).
    fn fake_ipam(dir: &std::path::Path, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let path = bin.join("fake");
        let calls = dir.join("calls");
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"$CNI_COMMAND\" >> {}\n{body}\n",
                calls.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn calls(dir: &std::path::Path) -> String {
        std::fs::read_to_string(dir.join("calls")).unwrap_or_default()
    }

    const FAKE_RESULT: &str = r#"'{"cniVersion": "1.1.0", "ips": [{"address": "10.9.0.7/24", "gateway": "10.9.0.1"}], "dns": {"nameservers": ["10.9.0.53"]}}'"#;

    /// A 1.1.0 config delegating to `fake`, xvsd on `dir/xvsd.sock`.
    fn delegating_conf(dir: &std::path::Path) -> String {
        json!({"cniVersion": "1.1.0", "name": "xvs", "type": "xvs-cni",
               "socket": dir.join("xvsd.sock"),
               "ipam": {"type": "fake", "ranges": [[{"subnet": "10.9.0.0/24"}]]},
               "cni.dev/valid-attachments": []})
        .to_string()
    }

    /// `attach(command)` with CNI_PATH = `dir/bin` and a netns that does
    /// not exist (so ADD fails at plumbing, after IPAM, without root).
    fn attach_in(command: &'static str, dir: &std::path::Path) -> Vec<(&'static str, String)> {
        vec![
            ("CNI_COMMAND", command.to_owned()),
            ("CNI_CONTAINERID", "abc123".to_owned()),
            (
                "CNI_NETNS",
                "/var/run/netns/xvs-cni-unit-test-gone".to_owned(),
            ),
            ("CNI_IFNAME", "eth0".to_owned()),
            ("CNI_PATH", dir.join("bin").display().to_string()),
        ]
    }

    fn invoke_owned(vars: &[(&str, String)], stdin: &str) -> (Value, Output) {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        invoke(&vars, stdin)
    }

    #[test]
    fn delegated_add_without_xvsd_is_code_11_and_never_runs_the_delegate() {
        let dir = tempfile::tempdir().unwrap();
        fake_ipam(dir.path(), &format!("echo {FAKE_RESULT}"));
        let (json, _) = invoke_owned(&attach_in("ADD", dir.path()), &delegating_conf(dir.path()));
        assert_eq!(json["code"], 11, "{json}");
        assert_eq!(calls(dir.path()), "");
    }

    #[test]
    fn a_failed_add_gives_the_delegates_address_back_with_its_del() {
        let dir = tempfile::tempdir().unwrap();
        fake_ipam(
            dir.path(),
            &format!("[ \"$CNI_COMMAND\" = ADD ] && echo {FAKE_RESULT}; exit 0"),
        );
        fake_xvsd(&dir.path().join("xvsd.sock"));
        let (json, out) = invoke_owned(&attach_in("ADD", dir.path()), &delegating_conf(dir.path()));
        // The delegate's address was taken, then plumbing failed (no netns).
        assert_eq!(json["code"], 4, "{json}");
        assert!(
            json["msg"].as_str().unwrap().contains("does not exist"),
            "{json}"
        );
        assert_eq!(calls(dir.path()), "ADD\nDEL\n", "{}", out.stderr);
    }

    #[test]
    fn a_delegate_result_without_ipv4_is_code_7_and_given_back() {
        let dir = tempfile::tempdir().unwrap();
        fake_ipam(
            dir.path(),
            r#"[ "$CNI_COMMAND" = ADD ] && echo '{"cniVersion": "1.1.0", "ips": [{"address": "fd00::7/64"}]}'; exit 0"#,
        );
        fake_xvsd(&dir.path().join("xvsd.sock"));
        let (json, _) = invoke_owned(&attach_in("ADD", dir.path()), &delegating_conf(dir.path()));
        assert_eq!(json["code"], 7, "{json}");
        let msg = json["msg"].as_str().unwrap();
        assert!(
            msg.contains("fake returned no IPv4 address") && msg.contains("fd00::7/64"),
            "{msg}"
        );
        assert_eq!(calls(dir.path()), "ADD\nDEL\n");
    }

    #[test]
    fn the_delegates_add_error_reaches_the_runtime_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        fake_ipam(
            dir.path(),
            r#"echo '{"cniVersion": "1.1.0", "code": 999, "msg": "no IP addresses available in range set", "details": "widen it"}'; exit 1"#,
        );
        fake_xvsd(&dir.path().join("xvsd.sock"));
        let (json, out) = invoke_owned(&attach_in("ADD", dir.path()), &delegating_conf(dir.path()));
        assert_eq!(out.exit_code, 1);
        assert_eq!(
            json,
            json!({"cniVersion": "1.1.0", "code": 999,
                   "msg": "no IP addresses available in range set", "details": "widen it"})
        );
        assert!(
            out.stderr.contains("from IPAM plugin fake"),
            "{}",
            out.stderr
        );
        // Nothing was allocated: nothing to give back.
        assert_eq!(calls(dir.path()), "ADD\n");
    }

    #[test]
    fn a_missing_delegate_is_code_7_naming_it_and_cni_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        fake_xvsd(&dir.path().join("xvsd.sock"));
        let (json, _) = invoke_owned(&attach_in("ADD", dir.path()), &delegating_conf(dir.path()));
        assert_eq!(json["code"], 7, "{json}");
        let msg = json["msg"].as_str().unwrap();
        assert!(
            msg.contains("\"fake\"") && msg.contains(&dir.path().join("bin").display().to_string()),
            "{msg}"
        );
    }

    #[test]
    fn delegated_del_runs_the_delegates_del_and_returns_its_error() {
        let dir = tempfile::tempdir().unwrap();
        fake_ipam(dir.path(), "exit 0");
        // No xvsd: port-del is skipped, as always.
        let (json, out) = invoke_owned(&attach_in("DEL", dir.path()), &delegating_conf(dir.path()));
        assert_eq!(out.exit_code, 0, "{json} {}", out.stderr);
        assert_eq!(calls(dir.path()), "DEL\n");

        fake_ipam(
            dir.path(),
            r#"echo '{"code": 11, "msg": "lease store locked"}'; exit 1"#,
        );
        let (json, _) = invoke_owned(&attach_in("DEL", dir.path()), &delegating_conf(dir.path()));
        assert_eq!(
            (json["code"].clone(), json["msg"].clone()),
            (json!(11), json!("lease store locked"))
        );
    }

    #[test]
    fn delegated_check_fails_with_the_delegates_error() {
        let dir = tempfile::tempdir().unwrap();
        fake_ipam(
            dir.path(),
            r#"grep -q '"prevResult"' || exit 3; echo '{"code": 7, "msg": "no IP for abc123/eth0"}'; exit 1"#,
        );
        let mut conf: Value = serde_json::from_str(&delegating_conf(dir.path())).unwrap();
        conf["prevResult"] = json!({"cniVersion": "1.1.0",
                                    "ips": [{"address": "10.9.0.7/32", "interface": 1}]});
        let (json, _) = invoke_owned(&attach_in("CHECK", dir.path()), &conf.to_string());
        assert_eq!(json["code"], 7, "{json}");
        assert_eq!(json["msg"], "no IP for abc123/eth0");
        assert_eq!(calls(dir.path()), "CHECK\n");
    }

    #[test]
    fn delegated_gc_and_status_skip_plugins_from_before_1_1() {
        let dir = tempfile::tempdir().unwrap();
        // Debian 12's host-local 1.1.1 to GC and STATUS.
        fake_ipam(
            dir.path(),
            r#"echo "{\"code\": 4, \"msg\": \"unknown CNI_COMMAND: $CNI_COMMAND\"}"; exit 1"#,
        );
        fake_xvsd(&dir.path().join("xvsd.sock"));
        let conf = delegating_conf(dir.path());
        let path = dir.path().join("bin").display().to_string();
        for command in ["GC", "STATUS"] {
            let (json, out) = invoke(&[("CNI_COMMAND", command), ("CNI_PATH", &path)], &conf);
            assert_eq!(out.exit_code, 0, "{command}: {json}");
            assert!(out.stdout.is_empty());
            assert!(
                out.stderr
                    .contains(&format!("unknown CNI_COMMAND: {command}")),
                "{}",
                out.stderr
            );
        }
        assert_eq!(calls(dir.path()), "GC\nSTATUS\n");
        // Any other failure is the answer.
        fake_ipam(
            dir.path(),
            r#"echo '{"code": 50, "msg": "lease store unavailable"}'; exit 1"#,
        );
        let (json, _) = invoke(&[("CNI_COMMAND", "STATUS"), ("CNI_PATH", &path)], &conf);
        assert_eq!(json["code"], 50, "{json}");
        let (json, _) = invoke(&[("CNI_COMMAND", "GC"), ("CNI_PATH", &path)], &conf);
        assert_eq!(json["code"], 50, "{json}");
    }

    #[test]
    fn runtime_config_ips_with_built_in_ipam() {
        let dir = tempfile::tempdir().unwrap();
        fake_xvsd(&dir.path().join("no-xvsd.sock"));
        let mut conf: Value = serde_json::from_str(&conf_in(dir.path(), "1.0.0")).unwrap();
        conf["runtimeConfig"] = json!({"ips": ["10.244.1.77/24"]});
        let parsed = NetConf::parse(conf.to_string().as_bytes()).unwrap();
        let crate::spec::Ipam::BuiltIn { pool, data_dir } = &parsed.ipam else {
            panic!("built-in IPAM expected");
        };
        let ipam = crate::ipam::HostLocal::new(data_dir, pool.clone());

        // Plumbing fails (no netns) after the lease was taken: given back.
        let (json, _) = invoke_owned(&attach_in("ADD", dir.path()), &conf.to_string());
        assert_eq!(json["code"], 4, "{json}");
        assert!(ipam.leases().unwrap().is_empty());

        // Held by another attachment: code 7 naming address and holder.
        ipam.allocate_requested(
            &crate::spec::Attachment::new("other", "eth0"),
            "10.244.1.77".parse().unwrap(),
        )
        .unwrap();
        let (json, _) = invoke_owned(&attach_in("ADD", dir.path()), &conf.to_string());
        assert_eq!(json["code"], 7, "{json}");
        let msg = json["msg"].as_str().unwrap();
        assert!(
            msg.contains("10.244.1.77") && msg.contains("other/eth0"),
            "{msg}"
        );
        assert_eq!(ipam.leases().unwrap().len(), 1);

        // args.cni.ips the same way; outside the pool is code 7.
        let mut conf: Value = serde_json::from_str(&conf_in(dir.path(), "1.0.0")).unwrap();
        conf["args"] = json!({"cni": {"ips": ["10.244.2.5"]}});
        let (json, _) = invoke_owned(&attach_in("ADD", dir.path()), &conf.to_string());
        assert_eq!(json["code"], 7, "{json}");
        assert!(
            json["msg"].as_str().unwrap().contains("10.244.2.5"),
            "{json}"
        );
        // Only IPv6 asked for: code 7.
        conf["args"] = json!({"cni": {"ips": ["fd00::5"]}});
        let (json, _) = invoke_owned(&attach_in("ADD", dir.path()), &conf.to_string());
        assert_eq!(json["code"], 7, "{json}");
        assert!(
            json["msg"].as_str().unwrap().contains("args.cni.ips"),
            "{json}"
        );
    }

    #[test]
    fn check_needs_prev_result_code_7() {
        let dir = tempfile::tempdir().unwrap();
        let (json, _) = invoke(&attach("CHECK"), &conf_in(dir.path(), "1.1.0"));
        assert_eq!(json["code"], 7, "{json}");
        assert!(json["msg"].as_str().unwrap().contains("prevResult"));
    }

    #[test]
    fn del_with_everything_gone_succeeds_and_releases_the_lease() {
        let dir = tempfile::tempdir().unwrap();
        let conf = conf_in(dir.path(), "1.0.0");
        let parsed = NetConf::parse(conf.as_bytes()).unwrap();
        let crate::spec::Ipam::BuiltIn { pool, data_dir } = &parsed.ipam else {
            panic!("built-in IPAM expected");
        };
        let ipam = crate::ipam::HostLocal::new(data_dir, pool.clone());
        let attachment = crate::spec::Attachment::new("abc123", "eth0");
        ipam.allocate(&attachment).unwrap();
        let mut vars = attach("DEL");
        vars[2] = ("CNI_NETNS", "/var/run/netns/xvs-cni-unit-test-gone");
        for _ in 0..2 {
            let (_, out) = invoke(&vars, &conf);
            assert_eq!(out.exit_code, 0, "{}{}", out.stdout, out.stderr);
            assert!(out.stdout.is_empty());
            // xvsd was not there: logged, not failed.
            assert!(out.stderr.contains("port-del"), "{}", out.stderr);
        }
        assert_eq!(ipam.find(&attachment).unwrap(), None);
    }

    #[test]
    fn gc_without_xvsd_frees_leases_then_says_try_again() {
        let dir = tempfile::tempdir().unwrap();
        let conf = conf_in(dir.path(), "1.1.0");
        let parsed = NetConf::parse(conf.as_bytes()).unwrap();
        let crate::spec::Ipam::BuiltIn { pool, data_dir } = &parsed.ipam else {
            panic!("built-in IPAM expected");
        };
        let ipam = crate::ipam::HostLocal::new(data_dir, pool.clone());
        ipam.allocate(&crate::spec::Attachment::new("gone", "eth0"))
            .unwrap();
        let vars = [("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")];
        let (json, _) = invoke(&vars, &conf);
        assert_eq!(json["code"], 11, "{json}");
        assert!(ipam.leases().unwrap().is_empty());
    }

    #[test]
    fn errors_carry_the_configurations_version() {
        let conf = CONF
            .replace("1.1.0", "0.4.0")
            .replace(r#""type": "xvs-cni","#, "");
        let (json, _) = invoke(&attach("ADD"), &conf);
        assert_eq!(
            (json["code"].clone(), json["cniVersion"].clone()),
            (json!(7), json!("0.4.0"))
        );
        let (json, _) = invoke(&attach("ADD"), "{not json");
        assert_eq!(
            (json["code"].clone(), json["cniVersion"].clone()),
            (json!(6), json!("1.1.0"))
        );
        let (json, _) = invoke(&attach("CHECK"), &CONF.replace("1.1.0", "0.3.1"));
        assert_eq!(
            (json["code"].clone(), json["cniVersion"].clone()),
            (json!(1), json!("0.3.1"))
        );
        let (json, _) = invoke(&[("CNI_COMMAND", "ADD")], &CONF.replace("1.1.0", "1.0.0"));
        assert_eq!(
            (json["code"].clone(), json["cniVersion"].clone()),
            (json!(4), json!("1.0.0"))
        );
    }

    #[test]
    fn the_error_object_has_the_spec_shape() {
        let (json, out) = invoke(&[("CNI_COMMAND", "ADD")], CONF);
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["cniVersion", "code", "details", "msg"]);
        assert_eq!(
            json["msg"],
            "required environment variables missing: CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME"
        );
        // One JSON document on stdout, one line.
        assert_eq!(out.stdout.lines().count(), 1);
    }

    #[test]
    fn no_command_says_what_we_are_on_stderr() {
        let (json, out) = invoke(&[], "");
        assert_eq!(json["code"], 4);
        assert!(
            out.stderr.contains("versions supported: 0.3.1"),
            "{}",
            out.stderr
        );
    }

    #[test]
    fn an_unreadable_stdin_is_code_5() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("broken pipe"))
            }
        }
        let vars: HashMap<&str, &str> = attach("ADD").into_iter().collect();
        let out = run(|k| vars.get(k).map(|v| (*v).to_owned()), &mut Broken);
        let json: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(json["code"], 5);
        let out = run(
            |k| (k == "CNI_COMMAND").then(|| "VERSION".to_owned()),
            &mut Broken,
        );
        assert_eq!(out.exit_code, 0);
    }
}
