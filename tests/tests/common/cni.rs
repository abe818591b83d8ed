//! The real CNI runtimes, for the end-to-end CNI tests: cnitool (libcni's
//! own driver, which `scripts/setup-deps.sh` builds from Debian's source
//! package) and podman 4.3 with its CNI network backend. Both run the
//! plugins of a conflist the test writes; everything they leave behind (a
//! temp dir, attachments, containers, storage) goes when the guard drops,
//! also when the test fails. Links a plugin makes in the root namespace
//! (the reference bridge plugin's bridge) are the test's to register with
//! [`Topology::link`](super::Topology::link).
//!
//! cnitool's interface: `cnitool add|check|del <net> <netns path>`, `<net>`
//! being the `name` of a conflist in `NETCONFPATH` (default /etc/cni/net.d).
//! It finds plugins in `CNI_PATH` (colon-separated), takes the interface
//! name from `CNI_IFNAME` (default eth0), `CNI_ARGS` as `K=V;K=V`, and
//! capability args (runtimeConfig) from `CAP_ARGS` as a JSON object. The
//! container id is `cnitool-` and a hash of the netns path, and libcni
//! caches each ADD's result in /var/lib/cni/results until the DEL.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

use super::{output_text, run, sh};

/// Where `scripts/setup-deps.sh` installs cnitool.
pub const CNITOOL: &str = "/usr/local/bin/cnitool";
/// The reference plugins of Debian's containernetworking-plugins.
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// A directory under the system temp dir, removed (recursively) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CNI network for cnitool: its conflist alone in a private
/// `NETCONFPATH` directory. Every attachment [`cnitool`] added and did not
/// delete is deleted on drop (releasing IPAM leases and libcni's cache).
pub struct CniNet {
    name: String,
    dir: TempDir,
    /// Each ADD not yet undone by a DEL. A lock, so that threads can
    /// share the net (concurrent ADDs).
    attached: Mutex<Vec<Attachment>>,
}

/// What [`cnitool`] needs to repeat for a DEL.
#[derive(PartialEq)]
struct Attachment {
    netns: String,
    env: Vec<(String, String)>,
}

impl CniNet {
    /// Writes the conflist `conflist(dir)` returns, with `name` set as its
    /// `name`. `dir` is the network's private directory, for plugin state
    /// such as host-local's `dataDir` (so none outlives the test).
    pub fn new(name: &str, conflist: impl FnOnce(&Path) -> serde_json::Value) -> CniNet {
        let dir = TempDir::new(&format!("xvs-cni-{name}"));
        let mut list = conflist(dir.path());
        list["name"] = name.into();
        std::fs::write(
            dir.path().join(format!("{name}.conflist")),
            serde_json::to_vec_pretty(&list).expect("serialising the conflist"),
        )
        .expect("writing the conflist");
        CniNet {
            name: name.to_string(),
            dir,
            attached: Mutex::new(Vec::new()),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `NETCONFPATH` directory, also the network's state directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for CniNet {
    fn drop(&mut self) {
        for a in std::mem::take(&mut *self.attached.lock().unwrap_or_else(PoisonError::into_inner))
        {
            let env: Vec<(&str, &str)> = a
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let _ = cnitool_command("del", self, &a.netns, &env).output();
        }
    }
}

/// The path `ip netns add <ns>` gives a namespace, as cnitool takes it.
pub fn netns_path(ns: &str) -> String {
    format!("/var/run/netns/{ns}")
}

/// Runs `cnitool <op> <net> <netns_path>` with `NETCONFPATH` set to the
/// net's directory, `CNI_PATH` to the reference plugins unless `env` sets
/// it, and `env` (`CNI_IFNAME`, `CNI_ARGS`, `CAP_ARGS`...). Every `add`
/// is remembered, to be deleted when the net drops; a successful `del`
/// with the same netns and env forgets it.
pub fn cnitool(op: &str, net: &CniNet, netns_path: &str, env: &[(&str, &str)]) -> Output {
    let out = cnitool_command(op, net, netns_path, env)
        .output()
        .unwrap_or_else(|e| panic!("running {CNITOOL} ({e}): run scripts/setup-deps.sh as root"));
    let this = Attachment {
        netns: netns_path.to_string(),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
    };
    let mut attached = net.attached.lock().unwrap_or_else(PoisonError::into_inner);
    match op {
        // Also a failed ADD: the runtime is to DEL what it half did.
        "add" => attached.push(this),
        "del" if out.status.success() => attached.retain(|a| *a != this),
        _ => {}
    }
    out
}

/// [`cnitool`] that must succeed; returns its stdout (an ADD's result).
pub fn cnitool_ok(op: &str, net: &CniNet, netns_path: &str, env: &[(&str, &str)]) -> String {
    let out = cnitool(op, net, netns_path, env);
    assert!(
        out.status.success(),
        "cnitool {op} {} {netns_path} failed: {}",
        net.name,
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cnitool_command(op: &str, net: &CniNet, netns_path: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(CNITOOL);
    cmd.args([op, &net.name, netns_path])
        .env("NETCONFPATH", net.dir())
        .env("CNI_PATH", REFERENCE_PLUGINS)
        .envs(env.iter().copied());
    cmd
}

/// A private podman: its own containers.conf (`CONTAINERS_CONF`), storage
/// (`CONTAINERS_STORAGE_CONF`), CNI config dir and runtime state, all in
/// one temp dir, with the busybox image imported offline. Containers are
/// removed (running their CNI DEL) on drop.
///
/// What podman 4.3 needs on these machines, each learnt from a failure:
/// runc (crun refuses the hybrid cgroup v1/v2 setup), the cgroupfs cgroup
/// manager (no systemd), the vfs storage driver, events in a file (no
/// journald), and `default_ulimits` within the current hard limits: with
/// no CAP_SYS_RESOURCE, runc fails with "error setting rlimits for ready
/// process: error setting rlimit type 7 (6): operation not permitted" when
/// asked for more. podman itself runs with a lower RLIMIT_NPROC (32768
/// here, kernel.pid_max) than the shell, so nproc is capped well below.
pub struct Podman {
    dir: TempDir,
}

impl Podman {
    /// The image [`Podman::new`] imports: busybox-static and its applets.
    pub const IMAGE: &'static str = "localhost/xvs-busybox:latest";

    pub fn new() -> Podman {
        let dir = TempDir::new("xvs-podman");
        let p = dir.path();
        std::fs::create_dir_all(p.join("net.d")).expect("creating net.d");
        let (nofile, nproc) = (hard_limit("Max open files"), hard_limit("Max processes"));
        let nproc = nproc.min(4096);
        let conf = format!(
            r#"[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]

[network]
network_backend = "cni"
cni_plugin_dirs = ["{plugins}"]
network_config_dir = "{dir}/net.d"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{dir}/events.log"
tmp_dir = "{dir}/tmp"
"#,
            plugins = REFERENCE_PLUGINS,
            dir = p.display()
        );
        std::fs::write(p.join("containers.conf"), conf).expect("writing containers.conf");
        let storage = format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{dir}/graph\"\nrunroot = \"{dir}/run\"\n",
            dir = p.display()
        );
        std::fs::write(p.join("storage.conf"), storage).expect("writing storage.conf");
        let podman = Podman { dir };
        let rootfs = podman.busybox_rootfs_tar();
        podman.ok(&["import", &rootfs.display().to_string(), Self::IMAGE]);
        podman
    }

    /// The directory podman reads CNI conflists from.
    pub fn net_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    /// Writes a CNI network (conflist, `name` set) for `--network name`.
    /// `conflist` gets the podman dir, for plugin state such as `dataDir`.
    pub fn network(&self, name: &str, conflist: impl FnOnce(&Path) -> serde_json::Value) {
        let mut list = conflist(self.dir.path());
        list["name"] = name.into();
        std::fs::write(
            self.net_dir().join(format!("{name}.conflist")),
            serde_json::to_vec_pretty(&list).expect("serialising the conflist"),
        )
        .expect("writing the conflist");
    }

    /// `podman args...` in this environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("podman");
        cmd.args(args)
            .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .env(
                "CONTAINERS_STORAGE_CONF",
                self.dir.path().join("storage.conf"),
            );
        cmd
    }

    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("running podman")
    }

    /// `podman args...` that must succeed; returns its trimmed stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "podman {} failed: {}",
            args.join(" "),
            output_text(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A rootfs of /bin/busybox (Debian's busybox-static) and a link per
    /// applet, as a tar for `podman import`.
    fn busybox_rootfs_tar(&self) -> PathBuf {
        let root = self.dir.path().join("rootfs");
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).expect("creating rootfs/bin");
        std::fs::copy("/bin/busybox", bin.join("busybox"))
            .expect("copying /bin/busybox: is busybox-static installed (scripts/setup-deps.sh)?");
        for applet in run("/bin/busybox --list").lines() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("applet link");
            }
        }
        for d in ["etc", "proc", "sys", "dev", "tmp", "root"] {
            std::fs::create_dir_all(root.join(d)).expect("creating a rootfs dir");
        }
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")
            .expect("writing etc/passwd");
        std::fs::write(root.join("etc/group"), "root:x:0:\n").expect("writing etc/group");
        let tar = self.dir.path().join("rootfs.tar");
        run(&format!(
            "tar -C {} -cf {} .",
            root.display(),
            tar.display()
        ));
        tar
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Runs each container's CNI DEL and unmounts its shm.
        let _ = self.output(&["rm", "--all", "--force", "--time", "0"]);
        // Anything still mounted under the dir (a container podman lost
        // track of) would make the removal fail.
        let _ = sh(&format!(
            "findmnt -rn -o TARGET | grep '^{}/' | sort -r | xargs -r -n1 umount -l",
            self.dir.path().display()
        ));
    }
}

/// The hard limit of `resource` ("Max open files") of this process, from
/// /proc/self/limits.
fn hard_limit(resource: &str) -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("reading /proc/self/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with(resource))
        .unwrap_or_else(|| panic!("no {resource} in /proc/self/limits"));
    let hard = line[resource.len()..]
        .split_whitespace()
        .nth(1)
        .expect("a hard limit column");
    if hard == "unlimited" {
        1 << 20
    } else {
        hard.parse().expect("a numeric hard limit")
    }
}

impl Podman {
    /// Puts `dir` first in podman's `cni_plugin_dirs`, before the
    /// reference plugins: for a plugin cargo built (`dir` holding a link
    /// to it), found there when podman runs the network's conflist.
    pub fn prepend_plugin_dir(&self, dir: &Path) {
        let path = self.dir.path().join("containers.conf");
        let conf = std::fs::read_to_string(&path).expect("reading containers.conf");
        let key = "cni_plugin_dirs = [";
        assert!(conf.contains(key), "no {key} in {conf}");
        let conf = conf.replacen(key, &format!("{key}\"{}\", ", dir.display()), 1);
        std::fs::write(&path, conf).expect("writing containers.conf");
    }
}

/// The lease files (one per address, named by it, as host-local and
/// xvs-cni's IPAM write them) of network `net` under `state/ipam`, sorted.
pub fn lease_files(state: &Path, net: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(state.join("ipam").join(net)) else {
        return Vec::new();
    };
    let mut ips: Vec<String> = dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
        .collect();
    ips.sort();
    ips
}

/// A fresh xvsd for CNI tests on a control socket in `state` (returned),
/// with the default UMEM and rings: one worker holds the 20 pods of the
/// concurrency test.
pub fn start_xvsd(state: &Path) -> (super::Xvsd, PathBuf) {
    let socket = state.join("xvsd.sock");
    let socket_arg = socket.display().to_string();
    let xvsd = super::Xvsd::start(&[
        "--control-socket",
        &socket_arg,
        "--node-ip",
        "192.168.77.1",
        "--pod-cidr",
        "10.244.1.0/24",
    ]);
    (xvsd, socket)
}

/// xvsd's ports (`port-list`) on control socket `socket`.
pub fn ports(socket: &Path) -> Vec<serde_json::Value> {
    let replies = super::raw_requests(
        socket,
        b"{\"version\":1,\"id\":1,\"method\":\"port-list\",\"params\":null}\n",
    );
    replies[0]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("port-list: {}", replies[0]))
        .clone()
}
