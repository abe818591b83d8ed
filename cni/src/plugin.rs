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
        Command::Status => commands::status(conf).map(|()| String::new()),
        Command::Gc => commands::gc(conf, log).map(|()| String::new()),
        Command::Version => Ok(format!("{}\n", version_reply(&[]))),
    }
}

fn failure(e: &CniError, version: CniVersion, what: &str) -> Output {
    Output {
        stdout: format!("{}\n", e.to_reply(version).to_json()),
        stderr: format!("xvs-cni: {what}{e} (code {})\n", e.code().as_u32()),
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

    #[test]
    fn delegated_ipam_is_not_supported_yet_code_2() {
        let conf = CONF.replace(
            r#""podCIDR": "10.244.1.0/24","#,
            r#""ipam": {"type": "host-local"},"#,
        );
        let (json, _) = invoke(&attach("ADD"), &conf);
        assert_eq!(json["code"], 2, "{json}");
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
