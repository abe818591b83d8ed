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
//! For now only VERSION is implemented; ADD, DEL, CHECK, STATUS and GC
//! validate their input and then fail with code 100 (not implemented yet).

use std::io::Read;

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
    match dispatch(&env, &conf) {
        Ok(stdout) => Output {
            stdout,
            stderr: String::new(),
            exit_code: 0,
        },
        Err(e) => failure(&e, conf.cni_version, &what),
    }
}

fn dispatch(env: &Env, conf: &NetConf) -> Result<String, CniError> {
    conf.check_command(env.command)?;
    match env.command {
        Command::Add | Command::Del | Command::Check | Command::Status | Command::Gc => {
            Err(CniError::NotImplemented {
                command: env.command,
            })
        }
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

    #[test]
    fn other_commands_are_not_implemented_yet_code_100() {
        for command in ["ADD", "DEL", "CHECK", "STATUS", "GC"] {
            let (json, out) = invoke(&attach(command), CONF);
            assert_eq!(out.exit_code, 1, "{command}");
            assert_eq!(json["code"], 100, "{command}");
            assert_eq!(json["cniVersion"], "1.1.0");
            assert_eq!(
                json["msg"],
                format!("xvs-cni: {command} is not implemented yet")
            );
            assert!(out.stderr.contains("code 100"), "{}", out.stderr);
        }
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
