//! The `xvs-cni` executable as a runtime sees it: a fresh process with only
//! the `CNI_*` variables a runtime sets, JSON on stdin, one JSON document (or
//! nothing) on stdout.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
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

/// An xvsd stand-in on `socket` answering every request with an empty list
/// (an empty `port-list`; `version` only needs an answer).
fn fake_xvsd(socket: &Path) {
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

/// A fake IPAM plugin `dir/bin/fake-ipam`: records its stdin and its
/// `CNI_*` environment under `dir`, then runs `body`.
fn fake_ipam(dir: &Path, body: &str) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let d = dir.display();
    let script = format!(
        "#!/bin/sh\ncat > {d}/stdin.$CNI_COMMAND\nenv | grep ^CNI_ | sort > {d}/env.$CNI_COMMAND\n{body}\n"
    );
    let path = bin.join("fake-ipam");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_delegated_ipam_error_passes_through_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fake_xvsd(&d.join("xvsd.sock"));
    fake_ipam(
        d,
        r#"echo '{"cniVersion": "1.0.0", "code": 999, "msg": "failed to allocate for range 0: no IP addresses available in range set: 10.9.0.50-10.9.0.50", "details": ""}'; exit 1"#,
    );
    let conf = json!({"cniVersion": "1.0.0", "name": "xvs", "type": "xvs-cni",
                      "socket": d.join("xvsd.sock"),
                      "ipam": {"type": "fake-ipam",
                               "ranges": [[{"subnet": "10.9.0.0/24", "rangeStart": "10.9.0.50",
                                            "rangeEnd": "10.9.0.50"}]]},
                      "runtimeConfig": {"ips": ["10.9.0.50/24"]}});
    let path = format!("/nonexistent:{}", d.join("bin").display());
    let mut vars = attach("ADD");
    vars[5] = ("CNI_PATH", &path);
    let r = xvs_cni(&vars, &conf.to_string());
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(
        r.json,
        json!({"cniVersion": "1.0.0", "code": 999,
               "msg": "failed to allocate for range 0: no IP addresses available in range set: 10.9.0.50-10.9.0.50",
               "details": ""})
    );
    assert_eq!(r.stdout.lines().count(), 1);
    assert!(
        r.stderr.contains("from IPAM plugin fake-ipam"),
        "{}",
        r.stderr
    );
    // It got the configuration as we did, and our CNI_* with its command.
    let stdin: Value =
        serde_json::from_slice(&std::fs::read(d.join("stdin.ADD")).unwrap()).unwrap();
    assert_eq!(stdin, conf);
    let env = std::fs::read_to_string(d.join("env.ADD")).unwrap();
    assert_eq!(
        env,
        format!(
            "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0\n\
             CNI_COMMAND=ADD\nCNI_CONTAINERID=3f6940ab5ab43bc5\nCNI_IFNAME=eth0\n\
             CNI_NETNS=/var/run/netns/pod1\nCNI_PATH={path}\n"
        )
    );
    // It failed: there was nothing to give back.
    assert!(!d.join("stdin.DEL").exists());
}

#[test]
fn gc_and_status_with_a_delegate_that_predates_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fake_xvsd(&d.join("xvsd.sock"));
    // What Debian 12's host-local (skel of libcni 1.1) answers.
    fake_ipam(
        d,
        r#"echo "{\"code\":4,\"msg\":\"unknown CNI_COMMAND: $CNI_COMMAND\"}"; exit 1"#,
    );
    let conf = json!({"cniVersion": "1.1.0", "name": "xvs", "type": "xvs-cni",
                      "socket": d.join("xvsd.sock"),
                      "ipam": {"type": "fake-ipam", "subnet": "10.9.0.0/24"},
                      "cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]})
    .to_string();
    let path = d.join("bin").display().to_string();
    for command in ["GC", "STATUS"] {
        let r = xvs_cni(&[("CNI_COMMAND", command), ("CNI_PATH", &path)], &conf);
        assert_eq!(r.code, Some(0), "{command}: {}{}", r.stdout, r.stderr);
        assert_eq!(r.stdout, "");
        assert!(
            r.stderr
                .contains(&format!("unknown CNI_COMMAND: {command}")),
            "{}",
            r.stderr
        );
        assert!(d.join(format!("stdin.{command}")).exists());
    }
    // A delegated GC sees the valid attachments.
    let stdin = std::fs::read_to_string(d.join("stdin.GC")).unwrap();
    assert!(stdin.contains("cni.dev/valid-attachments"), "{stdin}");
}
