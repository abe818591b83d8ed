//! What a runtime hands the plugin: the `CNI_*` environment and the network
//! configuration on stdin, validated the way SPEC.md 1.1.0 says.
//!
//! **Environment** ([`Env`]). Which variables a command needs is the spec's
//! table, not libcni's skel (which also demands `CNI_PATH` for ADD/DEL/CHECK):
//!
//! | command          | required                                              |
//! |------------------|-------------------------------------------------------|
//! | ADD, CHECK       | `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`          |
//! | DEL              | `CNI_CONTAINERID`, `CNI_IFNAME` (`CNI_NETNS` optional) |
//! | GC               | `CNI_PATH`                                            |
//! | STATUS, VERSION  | nothing but `CNI_COMMAND`                             |
//!
//! An empty variable counts as unset, because libcni always exports all six
//! (it probes VERSION with `CNI_CONTAINERID=""`, `CNI_NETNS=dummy`,
//! `CNI_IFNAME=dummy`, `CNI_PATH=dummy`); variables a command does not need are
//! not looked at, so such probes always pass. Missing or malformed variables
//! are code 4 and the message names every one of them.
//!
//! **Configuration** ([`NetConf`]). stdin is normally one plugin's
//! configuration, derived by the runtime from a `.conf` or a `.conflist`
//! (`cniVersion` and `name` copied in, `runtimeConfig` and `prevResult`
//! added). A whole conflist is accepted too, for people piping a file by hand:
//! the xvs-cni entry is picked and derived as libcni would. Checks run in
//! stages, so the code tells what kind of mistake it is:
//!
//! 1. JSON syntax, and stdin must be an object — code 6;
//! 2. `cniVersion` — code 1 (absent means 0.1.0 in libcni, which we do not
//!    speak); a configuration for another version is not judged by our schema;
//! 3. JSON types (`"mtu": "big"`, `prevResult` shapes) — code 6;
//! 4. meaning: names, addresses, prefixes, ranges, MTU, paths — code 7;
//!    host-local fields we do not implement (`ipam.ranges`) — code 2.
//!
//! Unknown top-level fields are ignored: the spec lets runtimes and chained
//! plugins add their own.
//!
//! **IPAM.** Without `ipam.type` the built-in host-local-style allocator
//! ([`crate::ipam`]) serves `ipam.subnet`, or the top-level `podCIDR` (alias
//! `subnet`), the node's pod CIDR. With `ipam.type` the allocation is delegated
//! to that plugin, found in `CNI_PATH` ([`crate::delegate`]): it receives this
//! same configuration ([`NetConf::raw`]) and owns the whole `ipam` section,
//! so host-local fields we do not implement (`ranges`, `routes`) are fine
//! there, and `ipam.type` must be a bare name (code 7 for a path).
//!
//! **Capability arguments.** `runtimeConfig.ips` (and the older convention
//! `args.cni.ips`, read the same way) asks for addresses, `runtimeConfig.mac`
//! for the pod interface's MAC (unicast and non-zero, code 7 otherwise). The
//! built-in IPAM serves the first requested IPv4 address; a delegated one
//! reads them itself from its stdin. `CNI_ARGS`' `IP=` is not read.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use xvs_control::state::MacAddr;

use crate::error::CniError;
use crate::ipam::{Pool, DEFAULT_DATA_DIR};
use crate::version::{CniResult, CniVersion, Dns};

/// The gateway pods route through: the switch answers ARP for it with its own
/// MAC, as Calico's proxy ARP does.
pub const DEFAULT_GATEWAY: IpAddr = IpAddr::V4(Ipv4Addr::new(169, 254, 1, 1));

/// The plugin's `type`, and the executable's name.
pub const PLUGIN_TYPE: &str = "xvs-cni";

/// A CNI operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach a container; idempotent.
    Del,
    /// Verify an attachment against `prevResult`.
    Check,
    /// Say whether ADD can be served.
    Status,
    /// Remove what is not in `cni.dev/valid-attachments`.
    Gc,
    /// Report the spec versions we speak.
    Version,
}

impl Command {
    /// All commands, in the spec's order.
    pub const ALL: [Command; 6] = [
        Command::Add,
        Command::Del,
        Command::Check,
        Command::Status,
        Command::Version,
        Command::Gc,
    ];

    /// The `CNI_COMMAND` spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }

    /// Parses `CNI_COMMAND` (exact, upper case, as runtimes send it).
    pub fn parse(s: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether the command acts on one attachment (container id + ifname).
    pub const fn is_attachment(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `CNI_ARGS`: `KEY=VALUE` pairs separated by `;`, in the runtime's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniArgs {
    pairs: Vec<(String, String)>,
}

impl CniArgs {
    /// Parses `CNI_ARGS`. Empty segments (a trailing `;`) are skipped; a
    /// segment without `=` or with an empty key is code 4. The value is
    /// everything after the first `=`. Unknown keys are kept, not rejected:
    /// we only read the ones we know, so `IgnoreUnknown` changes nothing.
    pub fn parse(s: &str) -> Result<CniArgs, CniError> {
        let mut pairs = Vec::new();
        for segment in s.split(';').filter(|seg| !seg.is_empty()) {
            match segment.split_once('=') {
                Some((key, value)) if !key.is_empty() => {
                    pairs.push((key.to_owned(), value.to_owned()));
                }
                _ => {
                    return Err(CniError::invalid_env(
                        "CNI_ARGS",
                        s,
                        format!("{segment:?} is not KEY=VALUE"),
                    ))
                }
            }
        }
        Ok(CniArgs { pairs })
    }

    /// The value of `key` (the last one if repeated).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `K8S_POD_NAME`, set by kubelet's runtimes.
    pub fn pod_name(&self) -> Option<&str> {
        self.get("K8S_POD_NAME")
    }

    /// `K8S_POD_NAMESPACE`.
    pub fn pod_namespace(&self) -> Option<&str> {
        self.get("K8S_POD_NAMESPACE")
    }

    /// `K8S_POD_UID`.
    pub fn pod_uid(&self) -> Option<&str> {
        self.get("K8S_POD_UID")
    }

    /// `K8S_POD_INFRA_CONTAINER_ID`.
    pub fn pod_infra_container_id(&self) -> Option<&str> {
        self.get("K8S_POD_INFRA_CONTAINER_ID")
    }
}

/// The `CNI_*` environment of one invocation, validated for its command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID`; valid and non-empty for ADD/DEL/CHECK, else `""`.
    pub container_id: String,
    /// `CNI_NETNS`; `Some` for ADD and CHECK, optional for DEL, else `None`.
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`; a valid Linux name for ADD/DEL/CHECK, else `""`.
    pub ifname: String,
    /// `CNI_ARGS`, parsed for ADD/DEL/CHECK (empty otherwise).
    pub args: CniArgs,
    /// `CNI_PATH` split on `:`; non-empty for GC.
    pub path: Vec<PathBuf>,
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Result<Env, CniError> {
        Env::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());

        let Some(raw_command) = get("CNI_COMMAND") else {
            return Err(CniError::MissingEnv {
                vars: vec!["CNI_COMMAND"],
            });
        };
        let command = Command::parse(&raw_command).ok_or_else(|| {
            CniError::invalid_env(
                "CNI_COMMAND",
                &raw_command,
                "expected one of ADD, DEL, CHECK, STATUS, VERSION, GC",
            )
        })?;

        let mut env = Env {
            command,
            container_id: String::new(),
            netns: None,
            ifname: String::new(),
            args: CniArgs::default(),
            path: Vec::new(),
        };
        let mut missing = Vec::new();
        let needs_netns = matches!(command, Command::Add | Command::Check);

        if command.is_attachment() {
            match get("CNI_CONTAINERID") {
                Some(id) => env.container_id = id,
                None => missing.push("CNI_CONTAINERID"),
            }
            match get("CNI_NETNS") {
                Some(netns) => env.netns = Some(PathBuf::from(netns)),
                None if needs_netns => missing.push("CNI_NETNS"),
                None => {}
            }
            match get("CNI_IFNAME") {
                Some(ifname) => env.ifname = ifname,
                None => missing.push("CNI_IFNAME"),
            }
        }
        let path = get("CNI_PATH");
        if command == Command::Gc && path.is_none() {
            missing.push("CNI_PATH");
        }
        if !missing.is_empty() {
            return Err(CniError::MissingEnv { vars: missing });
        }
        if command.is_attachment() {
            validate_container_id(&env.container_id)?;
            validate_ifname(&env.ifname)?;
            if let Some(args) = get("CNI_ARGS") {
                env.args = CniArgs::parse(&args)?;
            }
        }
        if let Some(path) = path {
            env.path = std::env::split_paths(&path)
                .filter(|p| !p.as_os_str().is_empty())
                .collect();
        }
        Ok(env)
    }

    /// The attachment this invocation is about (ADD/DEL/CHECK).
    pub fn attachment(&self) -> Attachment {
        Attachment {
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
        }
    }
}

/// SPEC.md: "Must start with an alphanumeric character, optionally followed
/// by any combination of one or more alphanumeric characters, underscore
/// (_), dot (.) or hyphen (-)."
fn validate_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(CniError::invalid_env(
            "CNI_CONTAINERID",
            id,
            "must start with a letter or digit, followed by letters, digits, '_', '.' or '-'",
        ))
    }
}

/// SPEC.md: "must not be empty, must not be "." or "..", must be less than 16
/// characters and must not contain / or : or any whitespace characters".
/// Linux counts bytes (IFNAMSIZ is 16 with the NUL).
fn validate_ifname(name: &str) -> Result<(), CniError> {
    let reason = if name.len() > 15 {
        Some("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are not interface names")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        Some("contains '/', ':' or whitespace")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CniError::invalid_env("CNI_IFNAME", name, reason)),
        None => Ok(()),
    }
}

/// One attachment: the key a runtime uses for an ADD and its DEL.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Attachment {
    /// `CNI_CONTAINERID`.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

impl Attachment {
    /// Builds one from its parts.
    pub fn new(container_id: impl Into<String>, ifname: impl Into<String>) -> Attachment {
        Attachment {
            container_id: container_id.into(),
            ifname: ifname.into(),
        }
    }
}

/// Where addresses come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ipam {
    /// The built-in allocator ([`crate::ipam::HostLocal`]).
    BuiltIn {
        /// The addresses it may hand out.
        pool: Pool,
        /// The lease directory: `<ipam.dataDir or /var/lib/cni/networks>/<name>`.
        data_dir: PathBuf,
    },
    /// Another IPAM plugin, found in `CNI_PATH`.
    Delegate {
        /// Its `ipam.type`.
        plugin: String,
    },
}

/// Capability arguments the runtime put in `runtimeConfig`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// `ips` capability: addresses asked for this attachment.
    pub ips: Vec<IpNet>,
    /// `mac` capability: the pod interface's MAC (unicast, non-zero).
    pub mac: Option<MacAddr>,
    /// The other capabilities (`portMappings`, `bandwidth`, ...), untouched,
    /// for the chained plugins that own them.
    pub other: BTreeMap<String, Value>,
}

/// One plugin's network configuration, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConf {
    /// `cniVersion`: the version every reply is encoded in.
    pub cni_version: CniVersion,
    /// `name`: the network's name (also names the lease directory).
    pub name: String,
    /// `type`: normally `xvs-cni`.
    pub plugin_type: String,
    /// `mtu` of the pod interface; `None` means derive it from the uplink.
    pub mtu: Option<u32>,
    /// `socket`: xvsd's control socket.
    pub socket: PathBuf,
    /// `gateway`: the pods' next hop (default [`DEFAULT_GATEWAY`]).
    pub gateway: IpAddr,
    /// The node's pod CIDR (`podCIDR`, alias `subnet`), if given.
    pub pod_cidr: Option<IpNet>,
    /// Where addresses come from.
    pub ipam: Ipam,
    /// `dns`, copied into results.
    pub dns: Dns,
    /// `runtimeConfig`.
    pub runtime_config: RuntimeConfig,
    /// `prevResult`, converted from the configuration's version.
    pub prev_result: Option<CniResult>,
    /// `cni.dev/valid-attachments` (GC only; libcni also writes the name of
    /// an early draft, `cni.dev/attachments`, which is read as well).
    pub valid_attachments: Option<Vec<Attachment>>,
    /// `args`, untouched (conventions: `args.cni.ips`, ...).
    pub args: Option<Value>,
    /// `args.cni.ips`: addresses asked for, as `runtimeConfig.ips` (which
    /// comes first).
    pub args_ips: Vec<IpNet>,
    /// The configuration as received (derived, if a conflist was given);
    /// delegated IPAM plugins get exactly this on their stdin.
    pub raw: Value,
}

/// The fields as JSON types; strings are parsed in [`NetConf::validate`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConf {
    name: Option<String>,
    #[serde(rename = "type")]
    plugin_type: Option<String>,
    mtu: Option<u32>,
    socket: Option<PathBuf>,
    #[serde(rename = "podCIDR")]
    pod_cidr: Option<String>,
    subnet: Option<String>,
    gateway: Option<String>,
    ipam: Option<RawIpam>,
    dns: Option<Dns>,
    runtime_config: Option<RawRuntimeConfig>,
    prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<Attachment>>,
    #[serde(rename = "cni.dev/attachments")]
    attachments: Option<Vec<Attachment>>,
    args: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIpam {
    #[serde(rename = "type")]
    plugin_type: Option<String>,
    subnet: Option<String>,
    range_start: Option<String>,
    range_end: Option<String>,
    gateway: Option<String>,
    data_dir: Option<PathBuf>,
    ranges: Option<Value>,
}

#[derive(Deserialize)]
struct RawRuntimeConfig {
    ips: Option<Vec<String>>,
    mac: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

impl NetConf {
    /// Decodes and validates stdin (a plugin configuration or a conflist).
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let decode = |source| CniError::Decode {
            what: "the network configuration on stdin".into(),
            source,
        };
        let mut value: Value = serde_json::from_slice(stdin).map_err(decode)?;
        if !value.is_object() {
            return Err(decode(serde::de::Error::custom(
                "expected a JSON object, found another JSON value",
            )));
        }
        if value.get("plugins").is_some() {
            value = derive_from_list(value)?;
        }
        let cni_version = match value.get("cniVersion") {
            None | Some(Value::Null) => CniVersion::parse("")?,
            Some(Value::String(s)) => CniVersion::parse(s)?,
            Some(other) => {
                return Err(decode(serde::de::Error::custom(format!(
                    "cniVersion must be a string, found {other}"
                ))))
            }
        };
        let raw: RawConf = serde_json::from_value(value.clone()).map_err(decode)?;
        NetConf::validate(cni_version, raw, value)
    }

    fn validate(cni_version: CniVersion, raw: RawConf, value: Value) -> Result<NetConf, CniError> {
        let name = raw.name.unwrap_or_default();
        validate_network_name(&name)?;
        let plugin_type = raw.plugin_type.unwrap_or_default();
        if plugin_type.is_empty() {
            return Err(CniError::invalid_config(
                "type",
                "missing; it names the plugin executable (\"xvs-cni\")",
            ));
        }

        let pod_cidr = match (&raw.pod_cidr, &raw.subnet) {
            (Some(a), Some(b)) if a != b => {
                return Err(CniError::invalid_config(
                    "podCIDR",
                    format!("{a:?} and its alias subnet {b:?} disagree; set one of them"),
                ))
            }
            (Some(s), _) => Some(parse_net("podCIDR", s)?),
            (None, Some(s)) => Some(parse_net("subnet", s)?),
            (None, None) => None,
        };

        let ipam = match raw.ipam {
            Some(RawIpam {
                plugin_type: Some(plugin),
                ..
            }) if !plugin.is_empty() => {
                if plugin.contains('/') {
                    return Err(CniError::invalid_config(
                        "ipam.type",
                        format!("{plugin:?} must be a plugin name in CNI_PATH, not a path"),
                    ));
                }
                Ipam::Delegate { plugin }
            }
            raw_ipam => built_in_ipam(raw_ipam, pod_cidr, &name)?,
        };

        let gateway = match &raw.gateway {
            Some(s) => parse_ip("gateway", s)?,
            None => DEFAULT_GATEWAY,
        };
        if let Ipam::BuiltIn { pool, .. } = &ipam {
            if pool.subnet().addr().is_ipv4() != gateway.is_ipv4() {
                return Err(CniError::invalid_config(
                    "gateway",
                    format!(
                        "{gateway} is not in the address family of the pool {}{}",
                        pool.subnet(),
                        if raw.gateway.is_none() {
                            " (the default gateway is IPv4; set one for IPv6)"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }

        let is_v6 = match &ipam {
            Ipam::BuiltIn { pool, .. } => pool.subnet().addr().is_ipv6(),
            Ipam::Delegate { .. } => false,
        };
        if let Some(mtu) = raw.mtu {
            let min = if is_v6 { 1280 } else { 68 };
            if !(min..=65535).contains(&mtu) {
                return Err(CniError::invalid_config(
                    "mtu",
                    format!(
                        "{mtu} is outside {min}..=65535; leave it out to derive it from the uplink"
                    ),
                ));
            }
        }

        let runtime_config = match raw.runtime_config {
            None => RuntimeConfig::default(),
            Some(rc) => RuntimeConfig {
                ips: parse_ips("runtimeConfig.ips", &rc.ips.unwrap_or_default())?,
                mac: rc
                    .mac
                    .map(|m| validate_mac("runtimeConfig.mac", m))
                    .transpose()?,
                other: rc.other,
            },
        };

        let socket = raw
            .socket
            .unwrap_or_else(|| PathBuf::from(xvs_control::client::DEFAULT_SOCKET));
        if !socket.is_absolute() {
            return Err(CniError::invalid_config(
                "socket",
                format!(
                    "{:?} must be an absolute path",
                    socket.display().to_string()
                ),
            ));
        }

        let args_ips = match raw.args.as_ref().and_then(|a| a.pointer("/cni/ips")) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => {
                let strings = list
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<String>>>()
                    .ok_or_else(|| {
                        CniError::invalid_config("args.cni.ips", "must be a list of strings")
                    })?;
                parse_ips("args.cni.ips", &strings)?
            }
            Some(_) => {
                return Err(CniError::invalid_config(
                    "args.cni.ips",
                    "must be a list of strings",
                ))
            }
        };

        let prev_result = raw
            .prev_result
            .as_ref()
            .map(|v| CniResult::from_json(v, "prevResult"))
            .transpose()?;

        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            mtu: raw.mtu,
            socket,
            gateway,
            pod_cidr,
            ipam,
            dns: raw.dns.unwrap_or_default(),
            runtime_config,
            prev_result,
            valid_attachments: raw.valid_attachments.or(raw.attachments),
            args: raw.args,
            args_ips,
            raw: value,
        })
    }

    /// Checks that `command` exists in the configured version and has what it
    /// needs: CHECK from 0.4.0, STATUS and GC from 1.1.0 (code 1); GC needs
    /// its valid attachments (code 7 — without them it would free everything).
    pub fn check_command(&self, command: Command) -> Result<(), CniError> {
        let minimum = CniVersion::introducing(command);
        if self.cni_version < minimum {
            return Err(CniError::CommandNeedsVersion {
                command,
                minimum,
                configured: self.cni_version,
            });
        }
        if command == Command::Gc && self.valid_attachments.is_none() {
            return Err(CniError::invalid_config(
                "cni.dev/valid-attachments",
                "missing; GC needs the list of attachments to keep",
            ));
        }
        Ok(())
    }
}

/// Derives our plugin's configuration from a whole conflist, as libcni does:
/// pick the version (highest of `cniVersions` we speak, else `cniVersion`),
/// copy it and `name` into the `xvs-cni` entry (or the only entry).
fn derive_from_list(list: Value) -> Result<Value, CniError> {
    let plugins = list
        .get("plugins")
        .and_then(Value::as_array)
        .ok_or_else(|| CniError::invalid_config("plugins", "must be a list of plugin objects"))?;
    let ours: Vec<&Value> = plugins
        .iter()
        .filter(|p| p.get("type").and_then(Value::as_str) == Some(PLUGIN_TYPE))
        .collect();
    let entry = match (ours.as_slice(), plugins.as_slice()) {
        ([one], _) => *one,
        ([], [one]) => one,
        _ => {
            return Err(CniError::invalid_config(
                "plugins",
                format!(
                    "a configuration list needs exactly one entry of type {PLUGIN_TYPE:?}; \
                     runtimes pass each plugin its own configuration"
                ),
            ))
        }
    };
    let mut derived = entry.clone();
    let Some(obj) = derived.as_object_mut() else {
        return Err(CniError::invalid_config("plugins[]", "must be an object"));
    };
    let version = list
        .get("cniVersions")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .filter_map(|v| v.as_str().and_then(|s| CniVersion::parse(s).ok()))
                .max()
        })
        .map(|v| Value::from(v.as_str()))
        .or_else(|| list.get("cniVersion").cloned());
    if let Some(version) = version {
        obj.insert("cniVersion".into(), version);
    }
    if let Some(name) = list.get("name") {
        obj.insert("name".into(), name.clone());
    }
    Ok(derived)
}

fn built_in_ipam(
    raw: Option<RawIpam>,
    pod_cidr: Option<IpNet>,
    name: &str,
) -> Result<Ipam, CniError> {
    let raw = raw.unwrap_or(RawIpam {
        plugin_type: None,
        subnet: None,
        range_start: None,
        range_end: None,
        gateway: None,
        data_dir: None,
        ranges: None,
    });
    if let Some(ranges) = &raw.ranges {
        return Err(CniError::UnsupportedField {
            key: "ipam.ranges".into(),
            value: ranges.to_string(),
        });
    }
    let subnet = match &raw.subnet {
        Some(s) => parse_net("ipam.subnet", s)?,
        None => pod_cidr.ok_or_else(|| {
            CniError::invalid_config(
                "ipam.subnet",
                "no subnet to allocate from: set podCIDR (the node's pod CIDR) or ipam.subnet, \
                 or ipam.type to delegate",
            )
        })?,
    };
    let start = raw
        .range_start
        .as_deref()
        .map(|s| parse_ip("ipam.rangeStart", s))
        .transpose()?;
    let end = raw
        .range_end
        .as_deref()
        .map(|s| parse_ip("ipam.rangeEnd", s))
        .transpose()?;
    let mut pool = Pool::new(subnet, start, end).map_err(pool_error)?;
    if let Some(gw) = &raw.gateway {
        let gw = parse_ip("ipam.gateway", gw)?;
        pool = pool.reserve("gateway", gw).map_err(pool_error)?;
    }
    let parent = raw
        .data_dir
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    if !parent.is_absolute() {
        return Err(CniError::invalid_config(
            "ipam.dataDir",
            format!(
                "{:?} must be an absolute path",
                parent.display().to_string()
            ),
        ));
    }
    let data_dir = parent.join(name);
    Ok(Ipam::BuiltIn { pool, data_dir })
}

fn pool_error(e: crate::ipam::PoolError) -> CniError {
    CniError::invalid_config(format!("ipam.{}", e.field()), e.to_string())
}

/// libcni's rule for network names: the container-id alphabet.
fn validate_network_name(name: &str) -> Result<(), CniError> {
    if name.is_empty() {
        return Err(CniError::invalid_config("name", "missing network name"));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        Ok(())
    } else {
        Err(CniError::invalid_config(
            "name",
            format!(
                "{name:?}: must start with a letter or digit, followed by letters, digits, \
                 '_', '.' or '-'"
            ),
        ))
    }
}

fn parse_net(field: &str, s: &str) -> Result<IpNet, CniError> {
    IpNet::from_str(s)
        .map_err(|_| CniError::invalid_config(field, format!("{s:?} is not an address/prefix")))
}

fn parse_ip(field: &str, s: &str) -> Result<IpAddr, CniError> {
    IpAddr::from_str(s).map_err(|_| CniError::invalid_config(field, format!("{s:?} is not an IP")))
}

/// Addresses with or without a prefix (`10.1.2.3/24`, `10.1.2.3`).
fn parse_ips(field: &str, list: &[String]) -> Result<Vec<IpNet>, CniError> {
    list.iter()
        .map(|s| {
            IpNet::from_str(s)
                .or_else(|_| IpAddr::from_str(s).map(IpNet::from))
                .map_err(|_| {
                    CniError::invalid_config(field, format!("{s:?} is not an IP or address/prefix"))
                })
        })
        .collect()
}

/// Six bytes of two hex digits each, and a MAC a pod interface can have
/// ([`crate::plumb::check_mac`]: unicast, non-zero).
fn validate_mac(field: &str, mac: String) -> Result<MacAddr, CniError> {
    let parts: Vec<&str> = mac.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    let parsed = match MacAddr::from_str(&mac) {
        Ok(parsed) if ok => parsed,
        _ => {
            return Err(CniError::invalid_config(
                field,
                format!("{mac:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"),
            ))
        }
    };
    crate::plumb::check_mac(parsed).map_err(|e| CniError::invalid_config(field, e.to_string()))?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    fn env<K: AsRef<str>, V: AsRef<str>>(vars: &[(K, V)]) -> Result<Env, CniError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        Env::from_lookup(|k| map.get(k).cloned())
    }

    const FULL: [(&str, &str); 6] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "3f6940ab5ab4"),
        ("CNI_NETNS", "/var/run/netns/pod1"),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=1234",
        ),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ];

    /// [`FULL`] for `command`, without the `drop` variables, with `set` ones.
    fn with<'a>(
        command: &'a str,
        drop: &[&str],
        set: &[(&'a str, &'a str)],
    ) -> Vec<(&'a str, &'a str)> {
        let mut vars: Vec<(&str, &str)> = FULL
            .iter()
            .copied()
            .filter(|(k, _)| *k != "CNI_COMMAND" && !drop.contains(k))
            .filter(|(k, _)| !set.iter().any(|(s, _)| s == k))
            .collect();
        vars.extend_from_slice(set);
        vars.push(("CNI_COMMAND", command));
        vars
    }

    fn code(r: Result<Env, CniError>) -> (u32, String) {
        let e = r.unwrap_err();
        (e.code(), e.to_string())
    }

    #[test]
    fn add_env_parses_everything() {
        let e = env(&FULL).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.container_id, "3f6940ab5ab4");
        assert_eq!(e.netns, Some(PathBuf::from("/var/run/netns/pod1")));
        assert_eq!(e.ifname, "eth0");
        assert_eq!(e.args.pod_name(), Some("web-0"));
        assert_eq!(e.args.pod_namespace(), Some("default"));
        assert_eq!(e.args.pod_uid(), Some("1234"));
        assert_eq!(e.args.get("IgnoreUnknown"), Some("1"));
        assert_eq!(
            e.path,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        assert_eq!(e.attachment(), Attachment::new("3f6940ab5ab4", "eth0"));
    }

    #[test]
    fn each_missing_var_is_named_with_code_4() {
        for (command, required) in [
            ("ADD", &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"][..]),
            ("CHECK", &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"][..]),
            ("DEL", &["CNI_CONTAINERID", "CNI_IFNAME"][..]),
            ("GC", &["CNI_PATH"][..]),
        ] {
            for var in required {
                let (c, msg) = code(env(&with(command, &[var], &[])));
                assert_eq!(c, 4, "{command} without {var}");
                assert!(msg.contains(var), "{command}: {msg}");
                // Set but empty is the same as unset (libcni exports all six).
                let (c, msg) = code(env(&with(command, &[], &[(var, "")])));
                assert_eq!(c, 4, "{command} with empty {var}");
                assert!(msg.contains(var), "{command}: {msg}");
            }
        }
        // All of them at once, all named.
        let (c, msg) = code(env(&[("CNI_COMMAND", "ADD")]));
        assert_eq!(c, 4);
        assert_eq!(
            msg,
            "required environment variables missing: CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME"
        );
    }

    #[test]
    fn optional_vars_may_be_missing() {
        let del = env(&with("DEL", &["CNI_NETNS", "CNI_ARGS", "CNI_PATH"], &[])).unwrap();
        assert_eq!(del.netns, None);
        assert!(del.path.is_empty());
        env(&with("ADD", &["CNI_ARGS", "CNI_PATH"], &[])).unwrap();
        env(&with("CHECK", &["CNI_ARGS", "CNI_PATH"], &[])).unwrap();
        let status = env(&[("CNI_COMMAND", "STATUS")]).unwrap();
        assert_eq!(status.command, Command::Status);
        env(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")]).unwrap();
    }

    #[test]
    fn command_missing_or_unknown_is_code_4() {
        let (c, msg) = code(env::<&str, &str>(&[]));
        assert_eq!((c, msg.contains("CNI_COMMAND")), (4, true));
        for bad in ["add", "DELETE", "version", " ADD"] {
            let (c, msg) = code(env(&with(bad, &[], &[])));
            assert_eq!(c, 4, "{bad}");
            assert!(msg.contains("CNI_COMMAND"), "{msg}");
        }
    }

    #[test]
    fn garbage_values_are_code_4_naming_the_var() {
        let cases = [
            ("CNI_CONTAINERID", "-leading-dash"),
            ("CNI_CONTAINERID", "has space"),
            ("CNI_CONTAINERID", "slash/inside"),
            ("CNI_CONTAINERID", "ünicode"),
            ("CNI_IFNAME", "a-very-long-name0"),
            ("CNI_IFNAME", "."),
            ("CNI_IFNAME", ".."),
            ("CNI_IFNAME", "eth/0"),
            ("CNI_IFNAME", "eth:0"),
            ("CNI_IFNAME", "eth 0"),
            ("CNI_ARGS", "K8S_POD_NAME"),
            ("CNI_ARGS", "=value"),
        ];
        for (var, value) in cases {
            let (c, msg) = code(env(&with("ADD", &[], &[(var, value)])));
            assert_eq!(c, 4, "{var}={value}");
            assert!(msg.starts_with(var), "{msg}");
        }
        // 15 bytes is the longest name Linux takes.
        env(&with("ADD", &[], &[("CNI_IFNAME", "abcdefghijklmno")])).unwrap();
    }

    #[test]
    fn version_works_with_libcnis_dummy_env() {
        // libcni's GetVersionInfo.
        let e = env(&[
            ("CNI_COMMAND", "VERSION"),
            ("CNI_CONTAINERID", ""),
            ("CNI_NETNS", "dummy"),
            ("CNI_IFNAME", "dummy"),
            ("CNI_PATH", "dummy"),
        ])
        .unwrap();
        assert_eq!(e.command, Command::Version);
        // Nothing but the command, even with garbage elsewhere.
        env(&[
            ("CNI_COMMAND", "VERSION"),
            ("CNI_IFNAME", "not/valid"),
            ("CNI_ARGS", "garbage"),
        ])
        .unwrap();
    }

    #[test]
    fn cni_args_edge_cases() {
        let a = CniArgs::parse("A=1;;B=x=y;A=2;").unwrap();
        assert_eq!(a.get("A"), Some("2"));
        assert_eq!(a.get("B"), Some("x=y"));
        assert_eq!(a.iter().count(), 3);
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
    }

    fn conf(v: Value) -> Result<NetConf, CniError> {
        NetConf::parse(v.to_string().as_bytes())
    }

    fn base() -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "xvs",
            "type": "xvs-cni",
            "podCIDR": "10.244.1.0/24",
        })
    }

    fn set(mut v: Value, key: &str, value: Value) -> Value {
        v.as_object_mut().unwrap().insert(key.into(), value);
        v
    }

    fn conf_code(v: Value) -> (u32, String) {
        let e = conf(v).unwrap_err();
        (e.code(), e.to_string())
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = conf(base()).unwrap();
        assert_eq!(c.cni_version, CniVersion::V1_0_0);
        assert_eq!(c.name, "xvs");
        assert_eq!(c.gateway, DEFAULT_GATEWAY);
        assert_eq!(c.socket, PathBuf::from("/run/xvs/xvsd.sock"));
        assert_eq!(c.mtu, None);
        match &c.ipam {
            Ipam::BuiltIn { pool, data_dir } => {
                assert_eq!(pool.subnet().to_string(), "10.244.1.0/24");
                assert_eq!(data_dir, &PathBuf::from("/var/lib/cni/networks/xvs"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn full_config_as_a_runtime_derives_it() {
        let c = conf(json!({
            "cniVersion": "1.1.0",
            "name": "xvs",
            "type": "xvs-cni",
            "mtu": 1450,
            "socket": "/tmp/xvsd.sock",
            "gateway": "169.254.1.1",
            "ipam": {"subnet": "10.244.1.0/24", "rangeStart": "10.244.1.10",
                     "rangeEnd": "10.244.1.20", "gateway": "10.244.1.1",
                     "dataDir": "/tmp/leases"},
            "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]},
            "runtimeConfig": {"ips": ["10.244.1.15/24", "10.244.1.16"],
                              "mac": "0A:58:0A:F4:01:05",
                              "portMappings": [{"hostPort": 8080, "containerPort": 80}]},
            "args": {"cni": {"ips": ["10.244.1.15"]}},
            "prevResult": {"cniVersion": "1.1.0",
                           "ips": [{"address": "10.244.1.15/32", "interface": 0}],
                           "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/p"}]},
            "somethingARuntimeAdded": true
        }))
        .unwrap();
        assert_eq!(c.cni_version, CniVersion::V1_1_0);
        assert_eq!(c.mtu, Some(1450));
        assert_eq!(c.socket, PathBuf::from("/tmp/xvsd.sock"));
        assert_eq!(c.dns.nameservers, vec!["10.96.0.10"]);
        assert_eq!(c.runtime_config.ips.len(), 2);
        assert_eq!(
            c.runtime_config.mac.map(|m| m.to_string()).as_deref(),
            Some("0a:58:0a:f4:01:05")
        );
        assert_eq!(c.args_ips, vec!["10.244.1.15/32".parse::<IpNet>().unwrap()]);
        assert!(c.runtime_config.other.contains_key("portMappings"));
        assert!(c.args.is_some());
        let prev = c.prev_result.unwrap();
        assert_eq!(prev.ips[0].address.to_string(), "10.244.1.15/32");
        match c.ipam {
            Ipam::BuiltIn { pool, data_dir } => {
                assert_eq!(pool.range_start().to_string(), "10.244.1.10");
                assert_eq!(pool.range_end().to_string(), "10.244.1.20");
                assert_eq!(data_dir, PathBuf::from("/tmp/leases/xvs"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn delegated_ipam() {
        let c = conf(set(
            base(),
            "ipam",
            json!({"type": "host-local", "ranges": [[{"subnet": "10.1.0.0/16"}]]}),
        ))
        .unwrap();
        assert_eq!(
            c.ipam,
            Ipam::Delegate {
                plugin: "host-local".into()
            }
        );
        // The delegate gets the configuration as received.
        assert_eq!(c.raw["ipam"]["type"], "host-local");
    }

    #[test]
    fn decoding_failures_are_code_6() {
        for bad in [
            &b"{\"cniVersion\": \"1.0.0\", "[..],
            b"",
            b"[1, 2]",
            b"\"a string\"",
        ] {
            let e = NetConf::parse(bad).unwrap_err();
            assert_eq!(e.code(), 6, "{}", String::from_utf8_lossy(bad));
        }
        for (key, value) in [
            ("mtu", json!("1450")),
            ("mtu", json!(-1)),
            ("name", json!(7)),
            ("ipam", json!("host-local")),
            ("dns", json!({"nameservers": "10.0.0.1"})),
            ("runtimeConfig", json!({"ips": "10.0.0.1"})),
            ("cni.dev/valid-attachments", json!([{"containerID": 1}])),
            ("prevResult", json!({"ips": [{"address": "bogus"}]})),
        ] {
            let (c, msg) = conf_code(set(base(), key, value.clone()));
            assert_eq!(c, 6, "{key}={value}: {msg}");
        }
    }

    #[test]
    fn invalid_configs_are_code_7_naming_the_field() {
        let mut no_name = base();
        no_name.as_object_mut().unwrap().remove("name");
        let mut no_type = base();
        no_type.as_object_mut().unwrap().remove("type");
        let mut no_subnet = base();
        no_subnet.as_object_mut().unwrap().remove("podCIDR");
        let cases = [
            (no_name, "name"),
            (no_type, "type"),
            (no_subnet, "ipam.subnet"),
            (set(base(), "name", json!("bad name")), "name"),
            (set(base(), "podCIDR", json!("10.244.1.0/33")), "podCIDR"),
            (
                set(base(), "podCIDR", json!("10.244.1.1/24")),
                "ipam.subnet",
            ),
            (
                set(base(), "podCIDR", json!("10.244.1.0/31")),
                "ipam.subnet",
            ),
            (set(base(), "subnet", json!("10.9.0.0/24")), "podCIDR"),
            (set(base(), "socket", json!("xvsd.sock")), "socket"),
            (
                set(base(), "ipam", json!({"dataDir": "leases"})),
                "ipam.dataDir",
            ),
            (set(base(), "gateway", json!("169.254.1")), "gateway"),
            (set(base(), "gateway", json!("fe80::1")), "gateway"),
            (set(base(), "mtu", json!(0)), "mtu"),
            (set(base(), "mtu", json!(70000)), "mtu"),
            (
                set(base(), "ipam", json!({"rangeStart": "10.244.2.1"})),
                "ipam.rangeStart",
            ),
            (
                set(base(), "ipam", json!({"rangeEnd": "10.244.1.255"})),
                "ipam.rangeEnd",
            ),
            (
                set(
                    base(),
                    "ipam",
                    json!({"rangeStart": "10.244.1.9", "rangeEnd": "10.244.1.8"}),
                ),
                "ipam.rangeStart",
            ),
            (
                set(base(), "ipam", json!({"gateway": "10.9.9.9"})),
                "ipam.gateway",
            ),
            (set(base(), "ipam", json!({"type": "../evil"})), "ipam.type"),
            (
                set(base(), "runtimeConfig", json!({"ips": ["nope"]})),
                "runtimeConfig.ips",
            ),
            (
                set(base(), "runtimeConfig", json!({"mac": "0a:58"})),
                "runtimeConfig.mac",
            ),
            (
                set(base(), "runtimeConfig", json!({"mac": "01:00:5e:00:00:01"})),
                "runtimeConfig.mac",
            ),
            (
                set(base(), "runtimeConfig", json!({"mac": "00:00:00:00:00:00"})),
                "runtimeConfig.mac",
            ),
            (
                set(base(), "args", json!({"cni": {"ips": ["10.244.1.300"]}})),
                "args.cni.ips",
            ),
            (
                set(base(), "args", json!({"cni": {"ips": "10.244.1.3"}})),
                "args.cni.ips",
            ),
            (set(base(), "plugins", json!("x")), "plugins"),
        ];
        for (v, field) in cases {
            let (c, msg) = conf_code(v.clone());
            assert_eq!(c, 7, "{v}: {msg}");
            assert!(
                msg.starts_with(&format!("invalid network configuration: {field}: ")),
                "{field}: {msg}"
            );
        }
    }

    #[test]
    fn versions_are_code_1() {
        let mut no_version = base();
        no_version.as_object_mut().unwrap().remove("cniVersion");
        for v in [
            no_version,
            set(base(), "cniVersion", json!("0.2.0")),
            set(base(), "cniVersion", json!("2.0.0")),
        ] {
            assert_eq!(conf_code(v).0, 1);
        }
        // Checked before the rest: a config in an unknown version is not
        // judged by our schema.
        assert_eq!(conf_code(json!({"cniVersion": "9.0.0", "mtu": "x"})).0, 1);
        assert_eq!(conf_code(set(base(), "cniVersion", json!(1.0))).0, 6);
    }

    #[test]
    fn unsupported_field_is_code_2_with_key_and_value() {
        let (c, msg) = conf_code(set(
            base(),
            "ipam",
            json!({"ranges": [[{"subnet": "10.1.0.0/16"}]]}),
        ));
        assert_eq!(c, 2);
        assert!(msg.contains("ipam.ranges"), "{msg}");
        assert!(msg.contains("10.1.0.0/16"), "{msg}");
    }

    #[test]
    fn commands_need_their_versions() {
        let c = conf(set(base(), "cniVersion", json!("0.3.1"))).unwrap();
        assert_eq!(c.check_command(Command::Check).unwrap_err().code(), 1);
        c.check_command(Command::Add).unwrap();
        c.check_command(Command::Del).unwrap();
        let c = conf(base()).unwrap();
        c.check_command(Command::Check).unwrap();
        for cmd in [Command::Status, Command::Gc] {
            let e = c.check_command(cmd).unwrap_err();
            assert_eq!(e.code(), 1);
            assert_eq!(
                e.to_string(),
                format!("{cmd} needs cniVersion 1.1.0 or later, the configuration says 1.0.0")
            );
        }
        let c = conf(set(base(), "cniVersion", json!("1.1.0"))).unwrap();
        c.check_command(Command::Status).unwrap();
        assert_eq!(c.check_command(Command::Gc).unwrap_err().code(), 7);
    }

    #[test]
    fn gc_reads_both_attachment_keys() {
        let list = json!([{"containerID": "a", "ifname": "eth0"}]);
        for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
            let c = conf(set(
                set(base(), "cniVersion", json!("1.1.0")),
                key,
                list.clone(),
            ))
            .unwrap();
            assert_eq!(
                c.valid_attachments,
                Some(vec![Attachment::new("a", "eth0")])
            );
            c.check_command(Command::Gc).unwrap();
        }
    }

    #[test]
    fn a_whole_conflist_is_derived() {
        let list = json!({
            "cniVersion": "1.0.0",
            "cniVersions": ["1.0.0", "1.1.0", "7.0.0"],
            "name": "podnet",
            "plugins": [
                {"type": "xvs-cni", "podCIDR": "10.244.1.0/24"},
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        });
        let c = conf(list).unwrap();
        assert_eq!(c.name, "podnet");
        assert_eq!(c.cni_version, CniVersion::V1_1_0);
        assert_eq!(c.raw["cniVersion"], "1.1.0");
        let two = json!({"cniVersion": "1.0.0", "name": "n", "plugins": [
            {"type": "bridge"}, {"type": "portmap"}]});
        assert_eq!(conf_code(two).0, 7);
    }

    #[test]
    fn ipv6_pools_need_a_gateway_of_their_family() {
        let v6 = set(base(), "podCIDR", json!("fd00:10:244:1::/64"));
        assert_eq!(conf_code(v6.clone()).0, 7);
        let c = conf(set(v6.clone(), "gateway", json!("fe80::1"))).unwrap();
        assert_eq!(c.gateway.to_string(), "fe80::1");
        assert_eq!(
            conf_code(set(
                set(v6, "gateway", json!("fe80::1")),
                "mtu",
                json!(1000)
            ))
            .0,
            7
        );
    }
}
