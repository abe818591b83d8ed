//! Kubernetes Services in the desired state: what kube-proxy would be told
//! by the API server (a Service and its EndpointSlices), in the shape
//! `xvsctl service`/`endpoint` and `apply -f` use.
//!
//! A [`ServiceSpec`] is one Service with its endpoints folded in (the
//! EndpointSlices of a Service, merged by address): its ClusterIP, the
//! external and load-balancer addresses it also answers on, its ports
//! (each TCP or UDP, with a target port and, for NodePort and LoadBalancer
//! Services, a node port), session affinity, the two traffic policies and
//! the endpoints with the EndpointSlice conditions `ready`, `serving` and
//! `terminating`. Spellings follow the Kubernetes API (`ClusterIP`,
//! `NodePort`, `TCP`, `ClientIP`, `Local`) so a Service can be copied from
//! `kubectl get -o yaml` by hand; field names are snake_case like the rest
//! of the state.
//!
//! [`Services`] holds them by `namespace/name` in a persistent ordered map
//! (`imbl::OrdMap` of `Arc`s): cloning the desired state, which every
//! change does, costs the same with 50 Services or 50,000, and adding or
//! removing one is `O(log n)`. That is what keeps a Service update's cost
//! flat as the cluster grows (the point of doing Services in xvs instead of
//! in a rule set that is rewritten on every change).
//!
//! Differences from Kubernetes, each because xvs is given resolved facts:
//! a Service must have a ClusterIP (headless Services are not proxied, so
//! they are not given to xvs); node ports are given, not allocated; a
//! named target port arrives resolved to a number, the same for every
//! endpoint; whether an endpoint is local is whether its address is in
//! this node's pod CIDR. Endpoints have a Maglev `weight` (default 1),
//! which Kubernetes does not have.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Default `session_affinity_timeout` (Kubernetes: 3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT_SECS: u32 = 10_800;
/// Longest `session_affinity_timeout` Kubernetes accepts (one day).
pub const MAX_AFFINITY_TIMEOUT_SECS: u32 = 86_400;
/// Most endpoints one Service may have (its Maglev table grows with them,
/// see `vswitch::services`).
pub const MAX_ENDPOINTS: usize = 6_000;
/// Most ports one Service may have.
pub const MAX_PORTS: usize = 64;

/// The namespace a Service name without one is in.
pub const DEFAULT_NAMESPACE: &str = "default";

/// One Service and its endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// `namespace/name`.
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: ServiceType,
    pub cluster_ip: Ipv4Addr,
    /// `spec.externalIPs`: more addresses the Service answers on, as
    /// traffic from outside the cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<Ipv4Addr>,
    /// `status.loadBalancer.ingress[].ip`: what a LoadBalancer Service's
    /// load balancer sends to the nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_ips: Vec<Ipv4Addr>,
    pub ports: Vec<ServicePort>,
    #[serde(default, skip_serializing_if = "SessionAffinity::is_none")]
    pub session_affinity: SessionAffinity,
    /// Seconds a client stays with its endpoint under `ClientIP` affinity
    /// since its last new connection.
    #[serde(
        default = "default_affinity_timeout",
        skip_serializing_if = "is_default_affinity_timeout"
    )]
    pub session_affinity_timeout: u32,
    /// Traffic from outside the cluster (node ports, external and
    /// load-balancer addresses): `Local` sends it only to endpoints on this
    /// node and keeps the client's address.
    #[serde(default, skip_serializing_if = "TrafficPolicy::is_cluster")]
    pub external_traffic_policy: TrafficPolicy,
    /// Traffic to the ClusterIP: `Local` sends it only to endpoints on this
    /// node.
    #[serde(default, skip_serializing_if = "TrafficPolicy::is_cluster")]
    pub internal_traffic_policy: TrafficPolicy,
    #[serde(default)]
    pub endpoints: Vec<EndpointSpec>,
}

fn default_affinity_timeout() -> u32 {
    DEFAULT_AFFINITY_TIMEOUT_SECS
}

fn is_default_affinity_timeout(t: &u32) -> bool {
    *t == DEFAULT_AFFINITY_TIMEOUT_SECS
}

/// `spec.type`. ExternalName Services are DNS only and never reach a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn name(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// A transport protocol a Service port carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    TCP,
    UDP,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::TCP => 6,
            Protocol::UDP => 17,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::TCP => "TCP",
            Protocol::UDP => "UDP",
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Ok(Protocol::TCP),
            "UDP" => Ok(Protocol::UDP),
            _ => Err(format!("protocol {s:?}: expected TCP or UDP")),
        }
    }
}

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePort {
    /// Needed when a Service has more than one port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    pub port: u16,
    /// The endpoints' port; `port` when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u16>,
    /// The port every node answers on, for NodePort and LoadBalancer
    /// Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
}

fn default_protocol() -> Protocol {
    Protocol::TCP
}

impl ServicePort {
    /// The port traffic is sent to on an endpoint.
    pub fn target(&self) -> u16 {
        self.target_port.unwrap_or(self.port)
    }
}

/// `spec.sessionAffinity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum SessionAffinity {
    #[default]
    None,
    /// A client's new connections go to the endpoint its last one went to,
    /// for `session_affinity_timeout` seconds.
    ClientIP,
}

impl SessionAffinity {
    fn is_none(&self) -> bool {
        *self == SessionAffinity::None
    }
}

/// `spec.externalTrafficPolicy` / `spec.internalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

impl TrafficPolicy {
    fn is_cluster(&self) -> bool {
        *self == TrafficPolicy::Cluster
    }
}

/// One endpoint (an EndpointSlice endpoint with one address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    pub ip: Ipv4Addr,
    /// `conditions.ready`: takes new connections. Kubernetes reads a
    /// missing value as true.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub ready: bool,
    /// `conditions.serving`: would take connections, whether or not it is
    /// terminating; defaults to `ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<bool>,
    /// `conditions.terminating`: on its way out.
    #[serde(default, skip_serializing_if = "is_false")]
    pub terminating: bool,
    /// Relative share of new connections (Maglev weight); 0 takes none.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub weight: u32,
}

fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
fn is_false(b: &bool) -> bool {
    !*b
}
fn one() -> u32 {
    1
}
fn is_one(w: &u32) -> bool {
    *w == 1
}

impl EndpointSpec {
    /// A ready endpoint of weight 1.
    pub fn ready(ip: Ipv4Addr) -> Self {
        EndpointSpec {
            ip,
            ready: true,
            serving: None,
            terminating: false,
            weight: 1,
        }
    }

    /// `conditions.serving`, defaulted as Kubernetes does.
    pub fn is_serving(&self) -> bool {
        self.serving.unwrap_or(self.ready)
    }

    /// The conditions as `kubectl` would list them.
    pub fn conditions(&self) -> String {
        let mut c = Vec::new();
        if self.ready {
            c.push("ready");
        }
        if self.is_serving() {
            c.push("serving");
        }
        if self.terminating {
            c.push("terminating");
        }
        if c.is_empty() {
            "none".into()
        } else {
            c.join(",")
        }
    }
}

/// Why a Service is refused. Each message names the Service and what to
/// change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("service name {0:?}: expected namespace/name, each 1-63 characters of a-z, 0-9, '-' and '.'")]
    BadName(String),
    #[error("service {0}: a service needs at least one port")]
    NoPorts(String),
    #[error("service {0}: {1} ports; at most {MAX_PORTS}")]
    TooManyPorts(String, usize),
    #[error("service {0}: port 0 is not a port")]
    ZeroPort(String),
    #[error("service {0}: {1}/{2} is listed twice")]
    DuplicatePort(String, &'static str, u16),
    #[error("service {0}: the port name {1:?} is used twice")]
    DuplicatePortName(String, String),
    #[error("service {0}: with several ports every port needs a name")]
    UnnamedPort(String),
    #[error("service {0}: node port {1} on a {2} service; only NodePort and LoadBalancer services have node ports")]
    NodePortNotAllowed(String, u16, &'static str),
    #[error("service {0}: port {1}/{2} of a NodePort service needs a node_port")]
    NodePortMissing(String, &'static str, u16),
    #[error("service {0}: address {1} cannot be a service address (unspecified, loopback, multicast or broadcast)")]
    BadAddress(String, Ipv4Addr),
    #[error("service {0}: session_affinity_timeout {1} is outside 1..={MAX_AFFINITY_TIMEOUT_SECS} seconds")]
    BadAffinityTimeout(String, u32),
    #[error("service {0}: endpoint {1} is listed twice")]
    DuplicateEndpoint(String, Ipv4Addr),
    #[error("service {0}: endpoint address {1} is not a unicast address")]
    BadEndpoint(String, Ipv4Addr),
    #[error("service {0}: {1} endpoints; at most {MAX_ENDPOINTS}")]
    TooManyEndpoints(String, usize),
}

/// Whether `a` may be a Service or endpoint address.
fn unicast(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast())
}

fn valid_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// `name` with the default namespace if it has none (`web` is
/// `default/web`), as `kubectl` reads a name without `-n`.
pub fn qualified_name(name: &str) -> String {
    if name.contains('/') {
        name.to_string()
    } else {
        format!("{DEFAULT_NAMESPACE}/{name}")
    }
}

impl ServiceSpec {
    /// Checks the Service on its own (conflicts with other Services are
    /// the datapath's to find, when it compiles them together).
    pub fn validate(&self) -> Result<(), ServiceError> {
        let name = &self.name;
        let e = || name.clone();
        match name.split_once('/') {
            Some((ns, n)) if valid_label(ns) && valid_label(n) => {}
            _ => return Err(ServiceError::BadName(e())),
        }
        if self.ports.is_empty() {
            return Err(ServiceError::NoPorts(e()));
        }
        if self.ports.len() > MAX_PORTS {
            return Err(ServiceError::TooManyPorts(e(), self.ports.len()));
        }
        for a in std::iter::once(&self.cluster_ip)
            .chain(&self.external_ips)
            .chain(&self.load_balancer_ips)
        {
            if !unicast(*a) {
                return Err(ServiceError::BadAddress(e(), *a));
            }
        }
        let mut seen = HashSet::new();
        let mut names = HashSet::new();
        for p in &self.ports {
            if p.port == 0 || p.target_port == Some(0) || p.node_port == Some(0) {
                return Err(ServiceError::ZeroPort(e()));
            }
            if !seen.insert((p.protocol, p.port)) {
                return Err(ServiceError::DuplicatePort(e(), p.protocol.name(), p.port));
            }
            match &p.name {
                Some(n) if !names.insert(n.clone()) => {
                    return Err(ServiceError::DuplicatePortName(e(), n.clone()))
                }
                None if self.ports.len() > 1 => return Err(ServiceError::UnnamedPort(e())),
                _ => {}
            }
            match (self.kind, p.node_port) {
                (ServiceType::ClusterIP, Some(np)) => {
                    return Err(ServiceError::NodePortNotAllowed(e(), np, self.kind.name()))
                }
                (ServiceType::NodePort, None) => {
                    return Err(ServiceError::NodePortMissing(
                        e(),
                        p.protocol.name(),
                        p.port,
                    ))
                }
                _ => {}
            }
        }
        if self.session_affinity == SessionAffinity::ClientIP
            && !(1..=MAX_AFFINITY_TIMEOUT_SECS).contains(&self.session_affinity_timeout)
        {
            return Err(ServiceError::BadAffinityTimeout(
                e(),
                self.session_affinity_timeout,
            ));
        }
        if self.endpoints.len() > MAX_ENDPOINTS {
            return Err(ServiceError::TooManyEndpoints(e(), self.endpoints.len()));
        }
        let mut ips = HashSet::new();
        for ep in &self.endpoints {
            if !unicast(ep.ip) {
                return Err(ServiceError::BadEndpoint(e(), ep.ip));
            }
            if !ips.insert(ep.ip) {
                return Err(ServiceError::DuplicateEndpoint(e(), ep.ip));
            }
        }
        Ok(())
    }

    /// Every address the Service answers on, ClusterIP first.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        std::iter::once(self.cluster_ip)
            .chain(self.external_ips.iter().copied())
            .chain(self.load_balancer_ips.iter().copied())
    }

    /// The ports as `kubectl get svc` prints them: `80:30080/TCP,53/UDP`.
    pub fn ports_text(&self) -> String {
        self.ports
            .iter()
            .map(|p| match p.node_port {
                Some(np) => format!("{}:{np}/{}", p.port, p.protocol.name()),
                None => format!("{}/{}", p.port, p.protocol.name()),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The Services of a desired state, by `namespace/name`. See the module
/// documentation for why it is a persistent map. Serialized as a list in
/// name order; a list naming a Service twice does not load.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Services(imbl::OrdMap<String, Arc<ServiceSpec>>);

impl Services {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<ServiceSpec>> {
        self.0.get(name)
    }

    /// Adds or replaces the Service of `spec.name`; the one it replaced.
    pub fn insert(&mut self, spec: ServiceSpec) -> Option<Arc<ServiceSpec>> {
        self.insert_arc(Arc::new(spec))
    }

    pub fn insert_arc(&mut self, spec: Arc<ServiceSpec>) -> Option<Arc<ServiceSpec>> {
        self.0.insert(spec.name.clone(), spec)
    }

    pub fn remove(&mut self, name: &str) -> Option<Arc<ServiceSpec>> {
        self.0.remove(name)
    }

    /// In name order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ServiceSpec>> + '_ {
        self.0.values()
    }

    /// Whether the two share their whole map (a clone not changed since):
    /// O(1), so unchanged Services are skipped without comparing them.
    pub fn ptr_eq(&self, other: &Services) -> bool {
        self.0.ptr_eq(&other.0)
    }

    /// Every Service that differs between `self` (old) and `new`, in name
    /// order: `(name, old, new)`, with `None` for absent. One merge pass
    /// over both, comparing `Arc`s by pointer before contents.
    pub fn changes<'a>(&'a self, new: &'a Services) -> Vec<ServiceChange<'a>> {
        let mut out = Vec::new();
        if self.ptr_eq(new) {
            return out;
        }
        let (mut a, mut b) = (self.0.iter().peekable(), new.0.iter().peekable());
        loop {
            let order = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
            };
            match order {
                std::cmp::Ordering::Less => {
                    let (k, v) = a.next().expect("peeked");
                    out.push(ServiceChange {
                        name: k,
                        old: Some(v),
                        new: None,
                    });
                }
                std::cmp::Ordering::Greater => {
                    let (k, v) = b.next().expect("peeked");
                    out.push(ServiceChange {
                        name: k,
                        old: None,
                        new: Some(v),
                    });
                }
                std::cmp::Ordering::Equal => {
                    let ((k, va), (_, vb)) = (a.next().expect("peeked"), b.next().expect("peeked"));
                    if !Arc::ptr_eq(va, vb) && va != vb {
                        out.push(ServiceChange {
                            name: k,
                            old: Some(va),
                            new: Some(vb),
                        });
                    }
                }
            }
        }
        out
    }
}

/// One Service that differs between two [`Services`].
#[derive(Debug, Clone, Copy)]
pub struct ServiceChange<'a> {
    pub name: &'a str,
    pub old: Option<&'a Arc<ServiceSpec>>,
    pub new: Option<&'a Arc<ServiceSpec>>,
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.values()).finish()
    }
}

impl FromIterator<ServiceSpec> for Services {
    fn from_iter<I: IntoIterator<Item = ServiceSpec>>(iter: I) -> Self {
        let mut s = Services::default();
        for spec in iter {
            s.insert(spec);
        }
        s
    }
}

impl Serialize for Services {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.values().map(|v| &**v))
    }
}

impl<'de> Deserialize<'de> for Services {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = Vec::<ServiceSpec>::deserialize(d)?;
        let mut s = Services::default();
        for spec in list {
            let name = spec.name.clone();
            if s.insert(spec).is_some() {
                return Err(serde::de::Error::custom(format!(
                    "service {name} is listed twice"
                )));
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> ServiceSpec {
        serde_json::from_str(
            r#"{"name": "default/web", "cluster_ip": "10.96.0.10",
                "ports": [{"port": 80, "target_port": 8080}],
                "endpoints": [{"ip": "10.244.1.11"}, {"ip": "10.244.1.12", "ready": false, "terminating": true}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn defaults_follow_kubernetes() {
        let s = web();
        assert_eq!(s.kind, ServiceType::ClusterIP);
        assert_eq!(s.ports[0].protocol, Protocol::TCP);
        assert_eq!(s.ports[0].target(), 8080);
        assert_eq!(s.session_affinity, SessionAffinity::None);
        assert_eq!(s.session_affinity_timeout, 10_800);
        assert_eq!(s.external_traffic_policy, TrafficPolicy::Cluster);
        assert!(s.endpoints[0].ready && s.endpoints[0].is_serving());
        assert!(!s.endpoints[0].terminating);
        assert_eq!(s.endpoints[0].weight, 1);
        // serving defaults to ready.
        assert!(!s.endpoints[1].is_serving());
        assert_eq!(s.endpoints[1].conditions(), "terminating");
        s.validate().unwrap();
        // Defaults are left out when written, so the JSON round-trips
        // to the same value and stays short.
        let text = serde_json::to_string(&s).unwrap();
        assert!(
            !text.contains("weight") && !text.contains("policy"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<ServiceSpec>(&text).unwrap(), s);
    }

    #[test]
    fn kubernetes_spellings() {
        let s: ServiceSpec = serde_json::from_str(
            r#"{"name": "kube-system/dns", "type": "NodePort", "cluster_ip": "10.96.0.53",
                "ports": [{"name": "dns", "protocol": "UDP", "port": 53, "node_port": 30053},
                          {"name": "dns-tcp", "protocol": "TCP", "port": 53, "node_port": 30054}],
                "session_affinity": "ClientIP", "session_affinity_timeout": 60,
                "external_traffic_policy": "Local", "internal_traffic_policy": "Local"}"#,
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.ports_text(), "53:30053/UDP,53:30054/TCP");
        let bad: Result<ServiceSpec, _> = serde_json::from_str(
            r#"{"name": "a/b", "cluster_ip": "10.96.0.1", "ports": [{"protocol": "SCTP", "port": 1}]}"#,
        );
        assert!(bad.unwrap_err().to_string().contains("SCTP"));
    }

    #[test]
    fn validation_names_the_problem() {
        let check = |edit: fn(&mut ServiceSpec), want: &str| {
            let mut s = web();
            edit(&mut s);
            let e = s.validate().expect_err(want).to_string();
            assert!(e.contains(want), "{e:?} should mention {want:?}");
        };
        check(|s| s.name = "web".into(), "namespace/name");
        check(|s| s.name = "Default/web".into(), "namespace/name");
        check(|s| s.ports.clear(), "at least one port");
        check(|s| s.ports[0].port = 0, "port 0");
        check(
            |s| s.ports.push(s.ports[0].clone()),
            "every port needs a name",
        );
        check(
            |s| {
                s.ports[0].name = Some("a".into());
                let mut p = s.ports[0].clone();
                p.name = Some("b".into());
                s.ports.push(p);
            },
            "TCP/80 is listed twice",
        );
        check(|s| s.ports[0].node_port = Some(30080), "only NodePort");
        check(|s| s.kind = ServiceType::NodePort, "needs a node_port");
        check(|s| s.cluster_ip = Ipv4Addr::BROADCAST, "255.255.255.255");
        check(|s| s.external_ips.push(Ipv4Addr::LOCALHOST), "127.0.0.1");
        check(
            |s| {
                s.session_affinity = SessionAffinity::ClientIP;
                s.session_affinity_timeout = 0;
            },
            "session_affinity_timeout 0",
        );
        check(
            |s| s.endpoints.push(s.endpoints[0].clone()),
            "10.244.1.11 is listed twice",
        );
        check(
            |s| s.endpoints.push(EndpointSpec::ready(Ipv4Addr::UNSPECIFIED)),
            "not a unicast",
        );
    }

    #[test]
    fn services_serialize_as_a_list_in_name_order_and_refuse_duplicates() {
        let mut a = web();
        a.name = "z/a".into();
        let s: Services = [a.clone(), web()].into_iter().collect();
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.find("default/web") < text.find("z/a"), "{text}");
        assert_eq!(serde_json::from_str::<Services>(&text).unwrap(), s);
        let twice = serde_json::to_string(&[web(), web()]).unwrap();
        let e = serde_json::from_str::<Services>(&twice).unwrap_err();
        assert!(e.to_string().contains("listed twice"), "{e}");
    }

    #[test]
    fn changes_are_found_by_merging_in_name_order() {
        let mk = |name: &str, port: u16| {
            let mut s = web();
            s.name = name.into();
            s.ports[0].port = port;
            s
        };
        let old: Services = [mk("a/a", 1), mk("a/b", 2), mk("a/c", 3)]
            .into_iter()
            .collect();
        assert!(old.changes(&old.clone()).is_empty());
        let mut new = old.clone();
        new.remove("a/a");
        new.insert(mk("a/b", 20));
        new.insert(mk("a/d", 4));
        // An equal value in a new Arc is not a change.
        new.insert(mk("a/c", 3));
        let got: Vec<(&str, bool, bool)> = old
            .changes(&new)
            .iter()
            .map(|c| (c.name, c.old.is_some(), c.new.is_some()))
            .collect();
        assert_eq!(
            got,
            [
                ("a/a", true, false),
                ("a/b", true, true),
                ("a/d", false, true)
            ]
        );
    }

    #[test]
    fn names_get_the_default_namespace() {
        assert_eq!(qualified_name("web"), "default/web");
        assert_eq!(qualified_name("ns/web"), "ns/web");
    }
}
