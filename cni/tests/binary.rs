//! The `xvs-cni` executable as a runtime sees it: a fresh process with only
//! the `CNI_*` variables a runtime sets, JSON on stdin, one JSON document (or
//! nothing) on stdout.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

struct Run {
    json: Value,
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

fn xvs_cni(vars: &[(&str, &str)], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xvs-cni"))
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xvs-cni");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    Run {
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8(out.stderr).unwrap(),
        code: out.status.code(),
    }
}

const CONF_1_0: &str = r#"{"cniVersion": "1.0.0", "name": "xvs", "type": "xvs-cni",
                           "podCIDR": "10.244.1.0/24"}"#;

fn attach(command: &str) -> Vec<(&str, &str)> {
    vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", "3f6940ab5ab43bc5"),
        ("CNI_NETNS", "/var/run/netns/pod1"),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
        ),
        ("CNI_PATH", "/opt/cni/bin"),
    ]
}

#[test]
fn version_answers_libcnis_probe() {
    let r = xvs_cni(
        &[
            ("CNI_COMMAND", "VERSION"),
            ("CNI_CONTAINERID", ""),
            ("CNI_NETNS", "dummy"),
            ("CNI_IFNAME", "dummy"),
            ("CNI_PATH", "dummy"),
        ],
        r#"{"cniVersion":"1.1.0"}"#,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.json,
        json!({"cniVersion": "1.1.0", "supportedVersions": ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );
    assert_eq!(r.stdout.lines().count(), 1);
}

#[test]
fn without_xvsd_add_is_code_11_and_status_code_50_in_the_configs_version() {
    let dir = std::env::temp_dir().join(format!("xvs-cni-binary-{}", std::process::id()));
    let conf = |version: &str| {
        json!({"cniVersion": version, "name": "xvs", "type": "xvs-cni",
               "socket": dir.join("no-xvsd.sock"),
               "ipam": {"subnet": "10.244.1.0/24", "dataDir": dir.join("ipam")}})
        .to_string()
    };
    for (command, version, code) in [("ADD", "1.0.0", 11), ("STATUS", "1.1.0", 50)] {
        let r = xvs_cni(&attach(command), &conf(version));
        assert_eq!(r.code, Some(1), "{command}");
        assert_eq!(r.json["code"], code, "{command}: {}", r.stdout);
        assert_eq!(r.json["cniVersion"], version);
        assert!(
            r.json["msg"].as_str().unwrap().contains("no-xvsd.sock"),
            "{}",
            r.stdout
        );
        assert!(r.stderr.starts_with("xvs-cni: "), "{}", r.stderr);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_gets_spec_errors() {
    type Env<'a> = Vec<(&'a str, &'a str)>;
    let cases: [(Env, &str, u64); 5] = [
        (attach("ADD"), "{broken", 6),
        (
            attach("ADD"),
            r#"{"cniVersion": "0.2.0", "name": "x", "type": "xvs-cni"}"#,
            1,
        ),
        (
            attach("ADD"),
            r#"{"cniVersion": "1.0.0", "name": "x", "type": "xvs-cni"}"#,
            7,
        ),
        (vec![("CNI_COMMAND", "ADD")], CONF_1_0, 4),
        (vec![("CNI_COMMAND", "FROB")], CONF_1_0, 4),
    ];
    for (vars, stdin, code) in cases {
        let r = xvs_cni(&vars, stdin);
        assert_eq!(r.code, Some(1));
        assert_eq!(r.json["code"], code, "{stdin}: {}", r.stdout);
        let keys: Vec<&String> = r.json.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["cniVersion", "code", "details", "msg"]);
    }
}
