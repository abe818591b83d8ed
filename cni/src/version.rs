//! Spec versions, the VERSION reply, and the ADD result in each version.
//!
//! xvs-cni speaks 0.3.1, 0.4.0, 1.0.0 and 1.1.0 and always answers in the
//! version the configuration asks for. That is not pedantry: a runtime on
//! libcni 1.1.x knows no 1.1.0 result and rejects it, so a 1.0.0 conflist must
//! get a 1.0.0 result. The result is kept in one version-free model
//! ([`CniResult`]) and encoded per version by hand, so each version's shape is
//! visible in one place and pinned by golden tests:
//!
//! | version      | differences in the result                                         |
//! |--------------|-------------------------------------------------------------------|
//! | 0.3.1, 0.4.0 | every `ips[]` entry carries `"version": "4"` or `"6"`              |
//! | 1.0.0        | no `version` in `ips[]` (libcni derives it from the address)       |
//! | 1.1.0        | adds interface `mtu`/`socketPath`/`pciID` and route `mtu`/`advmss`/`priority`/`table`/`scope` |
//!
//! Those rules are libcni's conversions (pkg/types/040 and 100): between 0.4.0
//! and 1.0.0 only `version` appears or disappears; 1.1.0 only adds optional
//! fields, which we drop when encoding 1.0.0 or older. Empty lists and an empty
//! `dns` are left out, as libcni's `omitempty` does. Decoding (`prevResult`)
//! accepts any of the four shapes.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Map, Value};

use crate::error::CniError;
use crate::spec::Command;

/// A CNI spec version this plugin speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    /// 0.3.1: rich results, chaining.
    V0_3_1,
    /// 0.4.0: CHECK, `prevResult` on DEL.
    V0_4_0,
    /// 1.0.0: no `version` in ips, conflists only.
    V1_0_0,
    /// 1.1.0: STATUS, GC, more result fields.
    V1_1_0,
}

impl CniVersion {
    /// The newest version we speak.
    pub const LATEST: CniVersion = CniVersion::V1_1_0;

    /// All versions we speak, oldest first (the order of `supportedVersions`).
    pub const SUPPORTED: [CniVersion; 4] = [
        CniVersion::V0_3_1,
        CniVersion::V0_4_0,
        CniVersion::V1_0_0,
        CniVersion::V1_1_0,
    ];

    /// The version as the spec spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    /// Parses a `cniVersion` string; anything but the four we speak is code 1.
    pub fn parse(s: &str) -> Result<CniVersion, CniError> {
        CniVersion::SUPPORTED
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| CniError::UnsupportedVersion {
                requested: s.to_owned(),
            })
    }

    /// "0.3.1, 0.4.0, 1.0.0, 1.1.0", for messages.
    pub fn supported_list() -> String {
        CniVersion::SUPPORTED.map(CniVersion::as_str).join(", ")
    }

    /// The first version in which `command` exists.
    pub const fn introducing(command: Command) -> CniVersion {
        match command {
            Command::Add | Command::Del | Command::Version => CniVersion::V0_3_1,
            Command::Check => CniVersion::V0_4_0,
            Command::Status | Command::Gc => CniVersion::V1_1_0,
        }
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CniVersion {
    type Err = CniError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CniVersion::parse(s)
    }
}

impl Serialize for CniVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The `cniVersion` of a JSON document, if it has one we speak.
///
/// Used to answer in the caller's version even when the rest of the document
/// is broken (an error reply still carries a `cniVersion`).
pub fn peek_version(stdin: &[u8]) -> Option<CniVersion> {
    #[derive(Deserialize)]
    struct Peek {
        #[serde(rename = "cniVersion")]
        cni_version: Option<String>,
    }
    let peek: Peek = serde_json::from_slice(stdin).ok()?;
    CniVersion::parse(peek.cni_version.as_deref()?).ok()
}

/// The VERSION reply: `{"cniVersion": ..., "supportedVersions": [...]}`.
///
/// `cniVersion` echoes the input's (libcni probes with its own newest
/// version) when we speak it, and is [`CniVersion::LATEST`] otherwise. VERSION
/// never fails on its input: it is how a runtime finds out what we speak, so a
/// version we do not know, or no input at all, still gets the list.
pub fn version_reply(stdin: &[u8]) -> Value {
    let version = peek_version(stdin).unwrap_or(CniVersion::LATEST);
    json!({
        "cniVersion": version,
        "supportedVersions": CniVersion::SUPPORTED,
    })
}

/// One interface in a result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    /// Interface name (in the sandbox for the pod side).
    pub name: String,
    /// MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: Option<String>,
    /// MTU (1.1.0 and later only).
    pub mtu: Option<u32>,
    /// The netns path for interfaces inside the container, `None` on the host.
    pub sandbox: Option<String>,
    /// vhost-user socket path (1.1.0 and later only).
    pub socket_path: Option<String>,
    /// PCI address of the device (1.1.0 and later only).
    pub pci_id: Option<String>,
}

/// One address in a result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpConfig {
    /// Index into the result's interfaces; `None` in IPAM results.
    pub interface: Option<usize>,
    /// Address with prefix length.
    pub address: IpNet,
    /// Default gateway for this address, if any.
    pub gateway: Option<IpAddr>,
}

/// One route in a result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix.
    pub dst: IpNet,
    /// Next hop; `None` for the default gateway of the interface.
    pub gw: Option<IpAddr>,
    /// Route MTU (1.1.0 and later only).
    pub mtu: Option<u32>,
    /// Advertised MSS (1.1.0 and later only).
    pub advmss: Option<u32>,
    /// Route priority / metric (1.1.0 and later only).
    pub priority: Option<u32>,
    /// Routing table (1.1.0 and later only).
    pub table: Option<u32>,
    /// Route scope (1.1.0 and later only).
    pub scope: Option<u8>,
}

impl Route {
    /// A route with only destination and next hop.
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Route {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// DNS settings, as in the spec's well-known `dns` structure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Dns {
    /// Name servers, in priority order.
    pub nameservers: Vec<String>,
    /// Local domain.
    pub domain: Option<String>,
    /// Search domains.
    pub search: Vec<String>,
    /// Resolver options.
    pub options: Vec<String>,
}

impl Dns {
    /// No setting at all (then `dns` is left out of the result).
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// The result of ADD (and of an IPAM plugin), independent of the version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniResult {
    /// Interfaces created or configured.
    pub interfaces: Vec<Interface>,
    /// Addresses assigned.
    pub ips: Vec<IpConfig>,
    /// Routes installed.
    pub routes: Vec<Route>,
    /// DNS settings.
    pub dns: Dns,
}

impl CniResult {
    /// The result in the shape of `version`, with `cniVersion` set to it.
    pub fn to_json(&self, version: CniVersion) -> Value {
        let v11 = version >= CniVersion::V1_1_0;
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(version));
        if !self.interfaces.is_empty() {
            let list = self.interfaces.iter().map(|i| {
                let mut m = Map::new();
                m.insert("name".into(), json!(i.name));
                put(&mut m, "mac", &i.mac);
                if v11 {
                    put(&mut m, "mtu", &i.mtu);
                }
                put(&mut m, "sandbox", &i.sandbox);
                if v11 {
                    put(&mut m, "socketPath", &i.socket_path);
                    put(&mut m, "pciID", &i.pci_id);
                }
                Value::Object(m)
            });
            out.insert("interfaces".into(), Value::Array(list.collect()));
        }
        if !self.ips.is_empty() {
            let list = self.ips.iter().map(|ip| {
                let mut m = Map::new();
                if version < CniVersion::V1_0_0 {
                    let family = if ip.address.addr().is_ipv4() {
                        "4"
                    } else {
                        "6"
                    };
                    m.insert("version".into(), json!(family));
                }
                m.insert("address".into(), json!(ip.address.to_string()));
                put(&mut m, "gateway", &ip.gateway.map(|g| g.to_string()));
                put(&mut m, "interface", &ip.interface);
                Value::Object(m)
            });
            out.insert("ips".into(), Value::Array(list.collect()));
        }
        if !self.routes.is_empty() {
            let list = self.routes.iter().map(|r| {
                let mut m = Map::new();
                m.insert("dst".into(), json!(r.dst.to_string()));
                put(&mut m, "gw", &r.gw.map(|g| g.to_string()));
                if v11 {
                    put(&mut m, "mtu", &r.mtu);
                    put(&mut m, "advmss", &r.advmss);
                    put(&mut m, "priority", &r.priority);
                    put(&mut m, "table", &r.table);
                    put(&mut m, "scope", &r.scope);
                }
                Value::Object(m)
            });
            out.insert("routes".into(), Value::Array(list.collect()));
        }
        if !self.dns.is_empty() {
            let d = &self.dns;
            let mut m = Map::new();
            if !d.nameservers.is_empty() {
                m.insert("nameservers".into(), json!(d.nameservers));
            }
            put(&mut m, "domain", &d.domain);
            if !d.search.is_empty() {
                m.insert("search".into(), json!(d.search));
            }
            if !d.options.is_empty() {
                m.insert("options".into(), json!(d.options));
            }
            out.insert("dns".into(), Value::Object(m));
        }
        Value::Object(out)
    }

    /// Decodes a result of any supported version: a `prevResult`, or what a
    /// delegated IPAM plugin printed. `what` names it in errors ("prevResult",
    /// "the result of IPAM plugin host-local").
    ///
    /// Wrong JSON types and unparsable addresses are decoding failures
    /// (code 6): the result was produced by a program, not written by a
    /// person. `cniVersion` is not looked at: every shape we speak decodes.
    pub fn from_json(value: &Value, what: &str) -> Result<CniResult, CniError> {
        let decode = |source| CniError::Decode {
            what: what.to_owned(),
            source,
        };
        let wire: wire::Result = serde_json::from_value(value.clone()).map_err(decode)?;
        wire.into_result()
            .map_err(|reason| decode(serde::de::Error::custom(reason)))
    }
}

fn put<T: Serialize>(m: &mut Map<String, Value>, key: &str, value: &Option<T>) {
    if let Some(v) = value {
        m.insert(key.into(), json!(v));
    }
}

/// The superset of the four result shapes, for decoding.
mod wire {
    use super::*;

    #[derive(Deserialize)]
    pub(super) struct Result {
        #[serde(default)]
        interfaces: Vec<Interface>,
        #[serde(default)]
        ips: Vec<IpConfig>,
        #[serde(default)]
        routes: Vec<Route>,
        #[serde(default)]
        dns: Option<Dns>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Interface {
        name: String,
        mac: Option<String>,
        mtu: Option<u32>,
        sandbox: Option<String>,
        socket_path: Option<String>,
        #[serde(rename = "pciID")]
        pci_id: Option<String>,
    }

    #[derive(Deserialize)]
    struct IpConfig {
        /// 0.x only; re-derived from the address when encoding.
        #[allow(dead_code)]
        version: Option<String>,
        address: String,
        gateway: Option<String>,
        interface: Option<usize>,
    }

    #[derive(Deserialize)]
    struct Route {
        dst: String,
        gw: Option<String>,
        mtu: Option<u32>,
        advmss: Option<u32>,
        priority: Option<u32>,
        table: Option<u32>,
        scope: Option<u8>,
    }

    fn net(s: &str, field: &str) -> std::result::Result<IpNet, String> {
        IpNet::from_str(s).map_err(|_| format!("{field} {s:?} is not an address/prefix"))
    }

    fn addr(s: Option<String>, field: &str) -> std::result::Result<Option<IpAddr>, String> {
        s.filter(|s| !s.is_empty())
            .map(|s| IpAddr::from_str(&s).map_err(|_| format!("{field} {s:?} is not an IP")))
            .transpose()
    }

    fn text(s: Option<String>) -> Option<String> {
        s.filter(|s| !s.is_empty())
    }

    impl Result {
        pub(super) fn into_result(self) -> std::result::Result<super::CniResult, String> {
            let interfaces = self
                .interfaces
                .into_iter()
                .map(|i| super::Interface {
                    name: i.name,
                    mac: text(i.mac),
                    mtu: i.mtu.filter(|&m| m != 0),
                    sandbox: text(i.sandbox),
                    socket_path: text(i.socket_path),
                    pci_id: text(i.pci_id),
                })
                .collect();
            let ips = self
                .ips
                .into_iter()
                .map(|ip| {
                    Ok(super::IpConfig {
                        interface: ip.interface,
                        address: net(&ip.address, "ips[].address")?,
                        gateway: addr(ip.gateway, "ips[].gateway")?,
                    })
                })
                .collect::<std::result::Result<_, String>>()?;
            let routes = self
                .routes
                .into_iter()
                .map(|r| {
                    Ok(super::Route {
                        dst: net(&r.dst, "routes[].dst")?,
                        gw: addr(r.gw, "routes[].gw")?,
                        mtu: r.mtu,
                        advmss: r.advmss,
                        priority: r.priority,
                        table: r.table,
                        scope: r.scope,
                    })
                })
                .collect::<std::result::Result<_, String>>()?;
            Ok(super::CniResult {
                interfaces,
                ips,
                routes,
                dns: self.dns.unwrap_or_default(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A result using every field, so each version's golden shows what it drops.
    fn full() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "xvs1a2b3c4d".into(),
                    mac: Some("ee:ee:ee:ee:ee:ee".into()),
                    mtu: Some(1450),
                    sandbox: None,
                    socket_path: None,
                    pci_id: None,
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some("0a:58:0a:f4:01:05".into()),
                    mtu: Some(1450),
                    sandbox: Some("/var/run/netns/pod1".into()),
                    socket_path: Some("/run/vhost/pod1.sock".into()),
                    pci_id: Some("0000:00:04.0".into()),
                },
            ],
            ips: vec![IpConfig {
                interface: Some(1),
                address: "10.244.1.5/32".parse().unwrap(),
                gateway: Some("169.254.1.1".parse().unwrap()),
            }],
            routes: vec![
                Route::new("169.254.1.1/32".parse().unwrap(), None),
                Route {
                    dst: "0.0.0.0/0".parse().unwrap(),
                    gw: Some("169.254.1.1".parse().unwrap()),
                    mtu: Some(1450),
                    advmss: Some(1410),
                    priority: Some(10),
                    table: Some(254),
                    scope: Some(0),
                },
            ],
            dns: Dns {
                nameservers: vec!["10.96.0.10".into()],
                domain: Some("cluster.local".into()),
                search: vec!["default.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            },
        }
    }

    fn golden(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    const GOLDEN_0X: &str = r#"{
        "cniVersion": "VERSION",
        "interfaces": [
            {"name": "xvs1a2b3c4d", "mac": "ee:ee:ee:ee:ee:ee"},
            {"name": "eth0", "mac": "0a:58:0a:f4:01:05", "sandbox": "/var/run/netns/pod1"}
        ],
        "ips": [
            {"version": "4", "address": "10.244.1.5/32", "gateway": "169.254.1.1", "interface": 1}
        ],
        "routes": [
            {"dst": "169.254.1.1/32"},
            {"dst": "0.0.0.0/0", "gw": "169.254.1.1"}
        ],
        "dns": {
            "nameservers": ["10.96.0.10"],
            "domain": "cluster.local",
            "search": ["default.svc.cluster.local"],
            "options": ["ndots:5"]
        }
    }"#;

    #[test]
    fn golden_0_3_1() {
        let want = golden(&GOLDEN_0X.replace("VERSION", "0.3.1"));
        assert_eq!(full().to_json(CniVersion::V0_3_1), want);
    }

    #[test]
    fn golden_0_4_0() {
        let want = golden(&GOLDEN_0X.replace("VERSION", "0.4.0"));
        assert_eq!(full().to_json(CniVersion::V0_4_0), want);
    }

    #[test]
    fn golden_1_0_0() {
        let want = golden(
            r#"{
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "xvs1a2b3c4d", "mac": "ee:ee:ee:ee:ee:ee"},
                {"name": "eth0", "mac": "0a:58:0a:f4:01:05", "sandbox": "/var/run/netns/pod1"}
            ],
            "ips": [
                {"address": "10.244.1.5/32", "gateway": "169.254.1.1", "interface": 1}
            ],
            "routes": [
                {"dst": "169.254.1.1/32"},
                {"dst": "0.0.0.0/0", "gw": "169.254.1.1"}
            ],
            "dns": {
                "nameservers": ["10.96.0.10"],
                "domain": "cluster.local",
                "search": ["default.svc.cluster.local"],
                "options": ["ndots:5"]
            }
        }"#,
        );
        assert_eq!(full().to_json(CniVersion::V1_0_0), want);
    }

    #[test]
    fn golden_1_1_0() {
        let want = golden(
            r#"{
            "cniVersion": "1.1.0",
            "interfaces": [
                {"name": "xvs1a2b3c4d", "mac": "ee:ee:ee:ee:ee:ee", "mtu": 1450},
                {"name": "eth0", "mac": "0a:58:0a:f4:01:05", "mtu": 1450,
                 "sandbox": "/var/run/netns/pod1",
                 "socketPath": "/run/vhost/pod1.sock", "pciID": "0000:00:04.0"}
            ],
            "ips": [
                {"address": "10.244.1.5/32", "gateway": "169.254.1.1", "interface": 1}
            ],
            "routes": [
                {"dst": "169.254.1.1/32"},
                {"dst": "0.0.0.0/0", "gw": "169.254.1.1", "mtu": 1450, "advmss": 1410,
                 "priority": 10, "table": 254, "scope": 0}
            ],
            "dns": {
                "nameservers": ["10.96.0.10"],
                "domain": "cluster.local",
                "search": ["default.svc.cluster.local"],
                "options": ["ndots:5"]
            }
        }"#,
        );
        assert_eq!(full().to_json(CniVersion::V1_1_0), want);
    }

    #[test]
    fn ipv6_address_is_version_6_in_0x() {
        let r = CniResult {
            ips: vec![IpConfig {
                interface: None,
                address: "fd00:10:244::5/128".parse().unwrap(),
                gateway: None,
            }],
            ..CniResult::default()
        };
        assert_eq!(
            r.to_json(CniVersion::V0_4_0),
            golden(
                r#"{"cniVersion": "0.4.0",
                    "ips": [{"version": "6", "address": "fd00:10:244::5/128"}]}"#
            )
        );
    }

    #[test]
    fn empty_result_has_only_the_version() {
        let r = CniResult::default();
        assert_eq!(
            r.to_json(CniVersion::V1_0_0),
            golden(r#"{"cniVersion": "1.0.0"}"#)
        );
    }

    #[test]
    fn decode_round_trips_every_version() {
        for version in CniVersion::SUPPORTED {
            let encoded = full().to_json(version);
            let decoded = CniResult::from_json(&encoded, "prevResult").unwrap();
            // What the version cannot carry is lost, nothing else.
            assert_eq!(decoded.to_json(version), encoded, "{version}");
        }
        let v11 = full().to_json(CniVersion::V1_1_0);
        assert_eq!(CniResult::from_json(&v11, "prevResult").unwrap(), full());
    }

    #[test]
    fn decode_failures_are_code_6() {
        for bad in [
            json!({"ips": [{"address": "10.0.0.300/24"}]}),
            json!({"ips": "nope"}),
            json!({"routes": [{"dst": "0.0.0.0/0", "gw": "x"}]}),
            json!({"interfaces": [{"mac": "ee:ee:ee:ee:ee:ee"}]}),
        ] {
            let err = CniResult::from_json(&bad, "prevResult").unwrap_err();
            assert_eq!(err.code(), 6, "{bad}: {err}");
            assert!(err.to_string().contains("prevResult"), "{err}");
        }
        let err = CniResult::from_json(
            &json!({"ips": [{"address": "nope"}]}),
            "the result of IPAM plugin host-local",
        )
        .unwrap_err();
        assert_eq!(err.code(), 6);
        assert!(
            err.to_string()
                .starts_with("cannot decode the result of IPAM plugin host-local: "),
            "{err}"
        );
    }

    #[test]
    fn versions_parse_and_unknown_ones_are_code_1() {
        for v in CniVersion::SUPPORTED {
            assert_eq!(CniVersion::parse(v.as_str()).unwrap(), v);
        }
        for bad in ["0.2.0", "0.3.0", "1.2.0", "2.0.0", "1.0", "", "latest"] {
            let err = CniVersion::parse(bad).unwrap_err();
            assert_eq!(err.code(), 1, "{bad}");
            let msg = err.to_string();
            assert!(msg.contains("0.3.1, 0.4.0, 1.0.0, 1.1.0"), "{msg}");
        }
    }

    #[test]
    fn version_reply_echoes_a_supported_version() {
        let want = |v: &str| json!({"cniVersion": v, "supportedVersions": ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]});
        // What libcni sends when probing.
        assert_eq!(version_reply(br#"{"cniVersion":"1.0.0"}"#), want("1.0.0"));
        assert_eq!(version_reply(br#"{"cniVersion":"0.3.1"}"#), want("0.3.1"));
        // Unknown, missing, or no input at all: the newest we speak.
        assert_eq!(version_reply(br#"{"cniVersion":"9.9.9"}"#), want("1.1.0"));
        assert_eq!(version_reply(b"{}"), want("1.1.0"));
        assert_eq!(version_reply(b""), want("1.1.0"));
        assert_eq!(version_reply(b"not json"), want("1.1.0"));
    }

    #[test]
    fn command_versions() {
        assert_eq!(CniVersion::introducing(Command::Check), CniVersion::V0_4_0);
        assert_eq!(CniVersion::introducing(Command::Gc), CniVersion::V1_1_0);
        assert_eq!(CniVersion::introducing(Command::Status), CniVersion::V1_1_0);
        assert_eq!(CniVersion::introducing(Command::Add), CniVersion::V0_3_1);
    }
}
