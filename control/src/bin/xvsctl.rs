//! xvsctl: inspect and program a running xvsd over its control socket, in
//! the habits of `ovs-vsctl` / `ovs-appctl`. Tables for people, `-o json`
//! for scripts.
//!
//! ```sh
//! xvsctl show                      # ports (XDP and bind modes, queues, workers), workers
//! xvsctl port add veth1 --pod 10.244.1.2,02:00:00:00:01:02
//! xvsctl route add 10.9.0.0/16 --port eth0 --next-hop-mac 02:00:00:00:00:fe
//! xvsctl vtep add node2 --pod-cidr 10.244.2.0/24 --vtep-ip 192.168.50.2 \
//!        --vtep-mac 02:00:00:00:02:01 --underlay-mac 02:00:00:00:02:00
//! xvsctl service add web --cluster-ip 10.96.0.10 --port http=80:8080/TCP@30080 \
//!        --type NodePort --endpoint 10.244.1.11,10.244.2.12
//! xvsctl endpoint add web 10.244.1.13 --weight 2   # web is default/web
//! xvsctl service list kube-system/ # the Services of a namespace, like kubectl get svc
//! xvsctl service show web          # ports, policies, endpoints with their conditions
//! xvsctl apply -f state.yaml       # converge to exactly this state; prints the diff
//! xvsctl trace in_port=veth1,tcp,nw_dst=10.244.1.3,tp_dst=80   # each stage's decision, nothing sent
//! xvsctl capture veth1 -w /tmp/veth1.pcap -c 10   # xvsd writes a pcap (tshark -r)
//! xvsctl completions bash > /etc/bash_completion.d/xvsctl
//! ```

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand, ValueEnum};
use ipnet::Ipv4Net;
use serde_json::{json, Value};
use xvs_control::client::{Client, DEFAULT_SOCKET};
use xvs_control::service::{
    qualified_name, EndpointSpec, Protocol, ServiceError, ServicePort, ServiceSpec, ServiceType,
    SessionAffinity, TrafficPolicy, DEFAULT_AFFINITY_TIMEOUT_SECS, MAX_AFFINITY_TIMEOUT_SECS,
};
use xvs_control::state::{DesiredState, MacAddr, PortKind};
use xvs_control::trace::Trace;

#[derive(Parser)]
#[command(name = "xvsctl", version, about = "Inspect and program a running xvsd")]
struct Cli {
    /// xvsd's control socket.
    #[arg(long, global = true, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Output: a table, or the JSON result as xvsd sent it.
    #[arg(short, long, global = true, value_enum, default_value = "table")]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Ports with their XDP and bind modes, queues and workers; workers;
    /// the snapshot generation.
    Show,
    /// xvsd's version and protocol version.
    Version,
    /// Add, delete or list ports.
    #[command(subcommand)]
    Port(PortCommand),
    /// Add, delete or list static routes.
    #[command(subcommand)]
    Route(RouteCommand),
    /// Add, delete or list remote nodes (their VTEPs and pod CIDRs).
    #[command(subcommand)]
    Vtep(VtepCommand),
    /// Add, delete, list or show Kubernetes Services. A NAME without a
    /// namespace is in namespace `default`.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Add or delete a Service's endpoints.
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// Converge to exactly the state in FILE (YAML or JSON, the shape
    /// `xvsctl -o json get-state` prints) and print what changed.
    Apply {
        #[arg(short, long)]
        file: PathBuf,
        /// Print what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Counters per port and per worker (received, sent, drops by reason,
    /// burst sizes, busy and idle time, as `ovs-appctl
    /// dpif-netdev/pmd-stats-show`), at most 100 ms old.
    Stats,
    /// The whole desired state.
    GetState,
    /// Copy frames received on and sent out of PORT into a pcap file,
    /// which xvsd writes (read it with tshark -r or wireshark).
    Capture {
        /// The port: its interface name, as `xvsctl show` lists it.
        port: String,
        /// The pcap file (a relative path is taken from here).
        #[arg(short = 'w', long = "write", value_name = "FILE")]
        file: PathBuf,
        /// Stop after N packets (both directions together).
        #[arg(short = 'c', long, value_name = "N",
              value_parser = clap::value_parser!(u64).range(1..=100_000))]
        count: u64,
        /// Bytes kept of each frame.
        #[arg(long, default_value_t = 65535,
              value_parser = clap::value_parser!(u32).range(1..=65535))]
        snaplen: u32,
        /// Stop after SECS seconds with what was captured.
        #[arg(long, value_name = "SECS", default_value_t = 10,
              value_parser = clap::value_parser!(u64).range(1..=300))]
        timeout: u64,
    },
    /// Run a described packet through the switch's slow path without
    /// sending it, and print each stage's decision and where the packet
    /// (and any reply or ICMP error) would go, like `ovs-appctl
    /// ofproto/trace`. PACKET is written like a flow rule's match, e.g.
    /// `in_port=pod1,tcp,nw_dst=10.244.1.3,tp_dst=80`, plus nw_ttl,
    /// icmp_type, icmp_code, arp_op, arp_spa, arp_tpa and len; what is
    /// left out gets a default (the trace prints the packet in full).
    Trace {
        /// The packet (several words are joined with blanks).
        #[arg(required = true, num_args = 1.., value_name = "PACKET")]
        packet: Vec<String>,
    },
    /// Add a flow rule, written as `ovs-ofctl add-flow` writes one:
    /// `priority=100,in_port=pod1,tcp,tp_dst=80 actions=output:fw0`.
    AddFlow {
        /// The rule (several words are joined with blanks).
        #[arg(required = true, num_args = 1.., value_name = "RULE")]
        rule: Vec<String>,
    },
    /// Delete flow rules whose match is exactly MATCH (only those of its
    /// priority if it has `priority=`), or every rule with --all; with
    /// --cached, delete cached flows instead (of --port / --addr if given).
    DelFlows {
        #[arg(num_args = 0.., value_name = "MATCH", conflicts_with_all = ["all", "cached"])]
        matches: Vec<String>,
        /// Delete every rule.
        #[arg(long, conflicts_with = "cached")]
        all: bool,
        /// Delete cached flows, not rules.
        #[arg(long)]
        cached: bool,
        #[command(flatten)]
        filter: FlowFilter,
    },
    /// The flow rules in lookup order, with what their cached flows
    /// carried.
    DumpRules,
    /// The flow cache: each flow's key, actions, rule, packets, bytes,
    /// age and idle time.
    DumpFlows {
        #[command(flatten)]
        filter: FlowFilter,
    },
    /// The connections of routed traffic, as `conntrack -L` prints them.
    DumpConntrack {
        /// Only connections from or to this address.
        #[arg(long)]
        addr: Option<std::net::IpAddr>,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
}

#[derive(Args)]
struct FlowFilter {
    /// Only flows received on this port.
    #[arg(long)]
    port: Option<String>,
    /// Only flows from or to this address.
    #[arg(long)]
    addr: Option<std::net::IpAddr>,
}

impl FlowFilter {
    fn params(&self) -> Value {
        json!({"port": self.port, "addr": self.addr})
    }
}

#[derive(Subcommand)]
enum PortCommand {
    /// Attach an interface (give exactly one of --pod, --uplink, --bridged).
    Add(PortAdd),
    Del {
        name: String,
    },
    List,
}

#[derive(Args)]
struct PortAdd {
    name: String,
    /// A pod's veth (host end): the pod's address and interface MAC.
    #[arg(long, value_name = "IP,MAC", conflicts_with_all = ["uplink", "bridged"])]
    pod: Option<String>,
    /// The node's uplink, with its MAC.
    #[arg(long, value_name = "MAC", conflicts_with = "bridged")]
    uplink: Option<MacAddr>,
    /// A port of bridge domain DOMAIN.
    #[arg(long, value_name = "DOMAIN")]
    bridged: Option<u16>,
    /// Default: the interface's MTU.
    #[arg(long)]
    mtu: Option<u16>,
}

#[derive(Subcommand)]
enum RouteCommand {
    Add {
        prefix: Ipv4Net,
        #[arg(long)]
        port: String,
        #[arg(long)]
        next_hop_mac: MacAddr,
    },
    Del {
        prefix: Ipv4Net,
    },
    List,
}

#[derive(Subcommand)]
enum VtepCommand {
    Add {
        name: String,
        #[arg(long)]
        pod_cidr: Ipv4Net,
        #[arg(long)]
        vtep_ip: Ipv4Addr,
        #[arg(long)]
        vtep_mac: MacAddr,
        #[arg(long)]
        underlay_mac: MacAddr,
    },
    Del {
        name: String,
    },
    List,
}

#[derive(Subcommand)]
enum ServiceCommand {
    /// Add a Service (with --replace, change one), as kube-proxy would be
    /// told of it.
    Add(ServiceAdd),
    /// Delete a Service with its endpoints.
    Del {
        /// NAMESPACE/NAME, or NAME in namespace `default`.
        name: String,
    },
    /// Services as `kubectl get services` lists them: every one, one
    /// (NAME) or those of a namespace (NAMESPACE/). ENDPOINTS is
    /// usable/all; the usable ones take new connections: the ready ones,
    /// or if none is ready the serving and terminating ones, never those
    /// of weight 0.
    List {
        /// NAMESPACE/NAME, NAME (in namespace `default`) or NAMESPACE/.
        name: Option<String>,
    },
    /// One Service in full: its addresses, ports, policies and endpoints
    /// with their conditions.
    Show {
        /// NAMESPACE/NAME, or NAME in namespace `default`.
        name: String,
    },
}

/// The `--port` syntax, for help and error messages.
const PORT_SPEC: &str = "[NAME=]PORT[:TARGET][/PROTO][@NODEPORT]";

#[derive(Args)]
struct ServiceAdd {
    /// NAMESPACE/NAME, or NAME in namespace `default`.
    name: String,
    /// The Service's virtual address (spec.clusterIP).
    #[arg(long, value_name = "IP")]
    cluster_ip: Ipv4Addr,
    /// A port, as [NAME=]PORT[:TARGET][/PROTO][@NODEPORT]: e.g.
    /// `http=80:8080/TCP@30080`, `80:8080`, `53/UDP`. TARGET (the
    /// endpoints' port) defaults to PORT, PROTO (TCP or UDP, either case)
    /// to TCP; NODEPORT is for NodePort and LoadBalancer Services. Repeat
    /// for more ports; with several, each needs a NAME.
    #[arg(long = "port", value_name = "SPEC", required = true, value_parser = parse_port_spec)]
    ports: Vec<ServicePort>,
    #[arg(
        long = "type",
        value_name = "TYPE",
        value_enum,
        ignore_case = true,
        default_value = "ClusterIP"
    )]
    kind: TypeArg,
    /// More addresses the Service answers on (spec.externalIPs); repeat or
    /// separate with commas.
    #[arg(long = "external-ip", value_name = "IP", value_delimiter = ',')]
    external_ips: Vec<Ipv4Addr>,
    /// Addresses its load balancer sends to the nodes
    /// (status.loadBalancer.ingress); repeat or separate with commas.
    #[arg(long = "lb-ip", value_name = "IP", value_delimiter = ',')]
    load_balancer_ips: Vec<Ipv4Addr>,
    /// ClientIP: a client's new connections go to the endpoint its last
    /// one went to.
    #[arg(
        long,
        value_name = "AFFINITY",
        value_enum,
        ignore_case = true,
        default_value = "None"
    )]
    affinity: AffinityArg,
    /// How long ClientIP affinity lasts after a client's last new
    /// connection [default: 10800].
    #[arg(long, value_name = "SECS",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_AFFINITY_TIMEOUT_SECS)))]
    affinity_timeout: Option<u32>,
    /// For traffic from outside the cluster: Local sends it only to
    /// endpoints on this node and keeps the client's address.
    #[arg(
        long,
        value_name = "POLICY",
        value_enum,
        ignore_case = true,
        default_value = "Cluster"
    )]
    external_traffic_policy: PolicyArg,
    /// For traffic to the ClusterIP: Local sends it only to endpoints on
    /// this node.
    #[arg(
        long,
        value_name = "POLICY",
        value_enum,
        ignore_case = true,
        default_value = "Cluster"
    )]
    internal_traffic_policy: PolicyArg,
    /// A ready endpoint of weight 1; repeat or separate with commas (see
    /// `xvsctl endpoint add` for other conditions and weights).
    #[arg(long = "endpoint", value_name = "IP", value_delimiter = ',')]
    endpoints: Vec<Ipv4Addr>,
    /// Replace the Service if it exists with other settings; without
    /// --endpoint it keeps the endpoints it has.
    #[arg(long)]
    replace: bool,
}

/// `--type`, spelled as in Kubernetes.
#[derive(Clone, Copy, ValueEnum)]
enum TypeArg {
    #[value(name = "ClusterIP")]
    ClusterIp,
    #[value(name = "NodePort")]
    NodePort,
    #[value(name = "LoadBalancer")]
    LoadBalancer,
}

/// `--affinity`, spelled as in Kubernetes.
#[derive(Clone, Copy, ValueEnum)]
enum AffinityArg {
    #[value(name = "None")]
    None,
    #[value(name = "ClientIP")]
    ClientIp,
}

/// `--external-traffic-policy` / `--internal-traffic-policy`.
#[derive(Clone, Copy, ValueEnum)]
enum PolicyArg {
    #[value(name = "Cluster")]
    Cluster,
    #[value(name = "Local")]
    Local,
}

impl PolicyArg {
    fn policy(self) -> TrafficPolicy {
        match self {
            PolicyArg::Cluster => TrafficPolicy::Cluster,
            PolicyArg::Local => TrafficPolicy::Local,
        }
    }
}

impl ServiceAdd {
    /// The Service this command line describes, checked as xvsd will
    /// check it, so a mistake is reported before anything is sent.
    fn into_spec(self) -> Result<ServiceSpec, String> {
        let session_affinity = match self.affinity {
            AffinityArg::None if self.affinity_timeout.is_some() => {
                return Err("--affinity-timeout applies only with --affinity ClientIP".into())
            }
            AffinityArg::None => SessionAffinity::None,
            AffinityArg::ClientIp => SessionAffinity::ClientIP,
        };
        let spec = ServiceSpec {
            name: qualified_name(&self.name),
            kind: match self.kind {
                TypeArg::ClusterIp => ServiceType::ClusterIP,
                TypeArg::NodePort => ServiceType::NodePort,
                TypeArg::LoadBalancer => ServiceType::LoadBalancer,
            },
            cluster_ip: self.cluster_ip,
            external_ips: self.external_ips,
            load_balancer_ips: self.load_balancer_ips,
            ports: self.ports,
            session_affinity,
            session_affinity_timeout: self
                .affinity_timeout
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECS),
            external_traffic_policy: self.external_traffic_policy.policy(),
            internal_traffic_policy: self.internal_traffic_policy.policy(),
            endpoints: self
                .endpoints
                .into_iter()
                .map(EndpointSpec::ready)
                .collect(),
        };
        spec.validate().map_err(|e| {
            // The model's messages name its fields; say which flag to use.
            let hint = match e {
                ServiceError::UnnamedPort(_) => " (write --port NAME=PORT...)",
                ServiceError::NodePortMissing(..) => " (write --port PORT...@NODEPORT)",
                ServiceError::NodePortNotAllowed(..) => {
                    " (give --type NodePort or --type LoadBalancer)"
                }
                _ => "",
            };
            format!("{e}{hint}")
        })?;
        Ok(spec)
    }
}

/// Parses a `--port` SPEC, [`PORT_SPEC`]: `http=80:8080/TCP@30080`.
fn parse_port_spec(spec: &str) -> Result<ServicePort, String> {
    let bad = |why: String| format!("{why} (a port is {PORT_SPEC}, e.g. http=80:8080/TCP@30080)");
    let (name, rest) = match spec.split_once('=') {
        Some((name, rest)) => (Some(name), rest),
        None => (None, spec),
    };
    if let Some(name) = name {
        let ok = (1..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !ok {
            return Err(bad(format!(
                "port name {name:?} is not 1-63 characters of a-z, 0-9 and '-' \
                 (not first or last)"
            )));
        }
    }
    let number = |what: &str, s: &str| match s.parse::<u16>() {
        Ok(n) if n != 0 => Ok(n),
        _ => Err(bad(format!("{what} {s:?} is not a port number (1-65535)"))),
    };
    let (rest, node_port) = match rest.split_once('@') {
        Some((_, np)) if np.contains('/') => {
            return Err(bad(format!(
                "node port {np:?}: write /PROTO before @NODEPORT"
            )))
        }
        Some((rest, np)) => (rest, Some(number("node port", np)?)),
        None => (rest, None),
    };
    let (rest, protocol) = match rest.split_once('/') {
        Some((rest, proto)) => (rest, proto.parse::<Protocol>().map_err(bad)?),
        None => (rest, Protocol::TCP),
    };
    let (port, target_port) = match rest.split_once(':') {
        Some((port, target)) => (port, Some(number("target port", target)?)),
        None => (rest, None),
    };
    Ok(ServicePort {
        name: name.map(str::to_string),
        protocol,
        port: number("port", port)?,
        target_port,
        node_port,
    })
}

#[derive(Subcommand)]
enum EndpointCommand {
    /// Add an endpoint to SERVICE, or set the conditions and weight of
    /// the one with this address. By default it is ready, serving, not
    /// terminating, of weight 1.
    Add {
        /// NAMESPACE/NAME, or NAME in namespace `default`.
        service: String,
        /// The endpoint's (a pod's) address.
        ip: Ipv4Addr,
        /// Not ready: it takes no new connections.
        #[arg(long)]
        not_ready: bool,
        /// Whether it would take connections, terminating or not
        /// [default: as ready].
        #[arg(long, value_name = "BOOL", action = ArgAction::Set)]
        serving: Option<bool>,
        /// On its way out.
        #[arg(long)]
        terminating: bool,
        /// Its share of new connections relative to the others (Maglev
        /// weight); 0 takes none.
        #[arg(long, value_name = "N", default_value_t = 1)]
        weight: u32,
    },
    /// Remove the endpoint with this address from SERVICE.
    Del {
        /// NAMESPACE/NAME, or NAME in namespace `default`.
        service: String,
        ip: Ipv4Addr,
    },
}

type Render = fn(&Value) -> String;

/// The request a command makes and how its answer is shown.
fn request(command: Command) -> Result<(&'static str, Value, Render), String> {
    Ok(match command {
        Command::Show => ("show", Value::Null, show_table),
        Command::Version => ("version", Value::Null, version_table),
        Command::GetState => ("get-state", Value::Null, |v| format!("{v:#}\n")),
        Command::Stats => ("stats", Value::Null, stats_text),
        Command::Port(PortCommand::Add(p)) => {
            let kind = match (p.pod, p.uplink, p.bridged) {
                (Some(pod), None, None) => {
                    let (ip, mac) = pod
                        .split_once(',')
                        .and_then(|(ip, mac)| Some((ip.parse().ok()?, mac.parse().ok()?)))
                        .ok_or_else(|| format!("--pod {pod:?}: expected IP,MAC"))?;
                    PortKind::Pod { ip, mac }
                }
                (None, Some(mac), None) => PortKind::Uplink { mac },
                (None, None, Some(domain)) => PortKind::Bridged { domain },
                _ => return Err("give one of --pod, --uplink, --bridged".into()),
            };
            (
                "port-add",
                json!({"name": p.name, "kind": kind, "mtu": p.mtu}),
                changes_text,
            )
        }
        Command::Port(PortCommand::Del { name }) => {
            ("port-del", json!({"name": name}), changes_text)
        }
        Command::Port(PortCommand::List) => ("port-list", Value::Null, port_list_table),
        Command::Route(RouteCommand::Add {
            prefix,
            port,
            next_hop_mac,
        }) => (
            "route-add",
            json!({"prefix": prefix, "port": port, "next_hop_mac": next_hop_mac}),
            changes_text,
        ),
        Command::Route(RouteCommand::Del { prefix }) => {
            ("route-del", json!({"prefix": prefix}), changes_text)
        }
        Command::Route(RouteCommand::List) => ("route-list", Value::Null, route_list_table),
        Command::Vtep(VtepCommand::Add {
            name,
            pod_cidr,
            vtep_ip,
            vtep_mac,
            underlay_mac,
        }) => (
            "vtep-add",
            json!({"name": name, "pod_cidr": pod_cidr, "vtep_ip": vtep_ip,
                   "vtep_mac": vtep_mac, "underlay_mac": underlay_mac}),
            changes_text,
        ),
        Command::Vtep(VtepCommand::Del { name }) => {
            ("vtep-del", json!({"name": name}), changes_text)
        }
        Command::Vtep(VtepCommand::List) => ("vtep-list", Value::Null, vtep_list_table),
        Command::Service(ServiceCommand::Add(add)) => {
            let replace = add.replace;
            (
                "service-add",
                json!({"service": add.into_spec()?, "replace": replace}),
                changes_text,
            )
        }
        Command::Service(ServiceCommand::Del { name }) => (
            "service-del",
            json!({"name": qualified_name(&name)}),
            changes_text,
        ),
        Command::Service(ServiceCommand::List { name }) => (
            "service-list",
            // `ns/` stays a namespace: qualified_name leaves it as it is.
            json!({"name": name.as_deref().map(qualified_name)}),
            service_list_table,
        ),
        Command::Service(ServiceCommand::Show { name }) => {
            if name.ends_with('/') {
                return Err(format!(
                    "{name:?} is a namespace: show takes one Service, \
                     `xvsctl service list {name}` lists them"
                ));
            }
            (
                "service-list",
                json!({"name": qualified_name(&name)}),
                service_show_text,
            )
        }
        Command::Endpoint(EndpointCommand::Add {
            service,
            ip,
            not_ready,
            serving,
            terminating,
            weight,
        }) => {
            let endpoint = EndpointSpec {
                ip,
                ready: !not_ready,
                serving,
                terminating,
                weight,
            };
            (
                "endpoint-add",
                json!({"service": qualified_name(&service), "endpoint": endpoint}),
                changes_text,
            )
        }
        Command::Endpoint(EndpointCommand::Del { service, ip }) => (
            "endpoint-del",
            json!({"service": qualified_name(&service), "ip": ip}),
            changes_text,
        ),
        Command::Apply { file, dry_run } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("reading {}: {e}", file.display()))?;
            // Through a JSON value: YAML's own enum form is a tag
            // (`!pod {...}`), but files write `kind: {pod: {...}}`, the
            // shape `get-state` prints.
            let state: DesiredState = serde_yaml_ng::from_str::<Value>(&text)
                .map_err(|e| e.to_string())
                .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
                .map_err(|e| format!("{}: {e}", file.display()))?;
            (
                "apply",
                json!({"state": state, "dry_run": dry_run}),
                changes_text,
            )
        }
        Command::Capture {
            port,
            file,
            count,
            snaplen,
            timeout,
        } => {
            // xvsd runs elsewhere (its own working directory).
            let path =
                std::path::absolute(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            (
                "capture",
                json!({"port": port, "path": path, "count": count,
                       "snaplen": snaplen, "timeout_ms": timeout * 1000}),
                capture_text,
            )
        }
        Command::Trace { packet } => ("trace", json!({"packet": packet.join(" ")}), trace_text),
        Command::AddFlow { rule } => ("rule-add", json!({"rule": rule.join(" ")}), changes_text),
        Command::DelFlows {
            matches,
            all,
            cached,
            filter,
        } => match (cached, all, matches.is_empty()) {
            (true, _, _) => ("del-flows", filter.params(), deleted_text),
            (false, _, _) if filter.port.is_some() || filter.addr.is_some() => {
                return Err("--port and --addr select cached flows: add --cached".into())
            }
            (false, true, _) => ("rule-del", json!({}), changes_text),
            (false, false, false) => (
                "rule-del",
                json!({"match": matches.join(" ")}),
                changes_text,
            ),
            (false, false, true) => return Err(
                "say what to delete: a rule MATCH, --all (every rule) or --cached (cached flows)"
                    .into(),
            ),
        },
        Command::DumpRules => ("rule-list", Value::Null, dump_rules_text),
        Command::DumpConntrack { addr } => {
            ("dump-conntrack", json!({"addr": addr}), conntrack_text)
        }
        Command::DumpFlows { filter } => ("dump-flows", filter.params(), dump_flows_text),
        Command::Completions { .. } => unreachable!("handled in main"),
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "xvsctl", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    // A capture answers when it is done: up to its timeout.
    let wait = match &cli.command {
        Command::Capture { timeout, .. } => Some(Duration::from_secs(timeout + 30)),
        _ => None,
    };
    // `service show` asks for a list of one; an empty one is an error.
    let show = match &cli.command {
        Command::Service(ServiceCommand::Show { name }) => Some(qualified_name(name)),
        _ => None,
    };
    let result = request(cli.command).and_then(|(method, params, render)| {
        let v = Client::connect(&cli.socket)
            .and_then(|mut c| {
                if let Some(wait) = wait {
                    c.set_timeout(wait)?;
                }
                c.call(method, params)
            })
            .map_err(|e| e.to_string())?;
        match show {
            Some(name) if v["services"].as_array().is_some_and(Vec::is_empty) => {
                Err(format!("no service {name}"))
            }
            _ => Ok((v, render)),
        }
    });
    match result {
        Ok((v, render)) => {
            match cli.output {
                Output::Json => println!("{v:#}"),
                Output::Table => print!("{}", render(&v)),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xvsctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Left-aligned columns wide enough for every cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.iter().map(|h| (*h).to_string()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// The rows of the array `v`, one column per field.
fn rows(v: &Value, fields: &[&str]) -> Vec<Vec<String>> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|item| fields.iter().map(|f| cell(&item[*f])).collect())
                .collect()
        })
        .unwrap_or_default()
}

fn show_table(v: &Value) -> String {
    let rows = |key: &str, fields: &[&str]| rows(&v[key], fields);
    let missing = match v["missing"].as_array() {
        Some(m) if !m.is_empty() => format!(
            "missing interfaces (ports left out): {}\n",
            cell(&v["missing"])
        ),
        _ => String::new(),
    };
    format!(
        "snapshot generation {}, pod MTU {}\n{missing}\n{}\n{}",
        cell(&v["generation"]),
        cell(&v["pod_mtu"]),
        table(
            &["NAME", "XDP", "BIND", "QUEUES", "WORKERS"],
            &rows("ports", &["name", "xdp", "bind", "queues", "workers"]),
        ),
        table(
            &["WORKER", "CORE", "TID"],
            &rows("workers", &["worker", "core", "tid"]),
        ),
    )
}

/// A port's kind in a few words.
fn kind_text(kind: &Value) -> String {
    if let Some(p) = kind.get("pod") {
        format!("pod {} {}", cell(&p["ip"]), cell(&p["mac"]))
    } else if let Some(u) = kind.get("uplink") {
        format!("uplink {}", cell(&u["mac"]))
    } else if let Some(b) = kind.get("bridged") {
        format!("bridged domain {}", cell(&b["domain"]))
    } else {
        cell(kind)
    }
}

fn port_list_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    vec![
                        cell(&p["name"]),
                        kind_text(&p["kind"]),
                        cell(&p["mtu"]),
                        cell(&p["status"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(&["NAME", "KIND", "MTU", "STATUS"], &rows)
}

fn route_list_table(v: &Value) -> String {
    table(
        &["PREFIX", "PORT", "NEXT HOP MAC"],
        &rows(v, &["prefix", "port", "next_hop_mac"]),
    )
}

fn vtep_list_table(v: &Value) -> String {
    table(
        &["NAME", "POD CIDR", "VTEP IP", "VTEP MAC", "UNDERLAY MAC"],
        &rows(
            v,
            &["name", "pod_cidr", "vtep_ip", "vtep_mac", "underlay_mac"],
        ),
    )
}

fn stats_text(v: &Value) -> String {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let ports: Vec<Vec<String>> = v["ports"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let c = &p["counters"];
                    let s = &p["steering"];
                    vec![
                        cell(&p["name"]),
                        cell(&c["rx_packets"]),
                        cell(&c["rx_bytes"]),
                        cell(&c["tx_packets"]),
                        cell(&c["tx_bytes"]),
                        cell(&c["handed_off"]),
                        cell(&c["handoff_drops"]),
                        cell(&s["redirected"]),
                        cell(&s["passed"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = format!("snapshot generation {}\n\n", cell(&v["generation"]));
    out.push_str(&table(
        &[
            "PORT",
            "RX PKTS",
            "RX BYTES",
            "TX PKTS",
            "TX BYTES",
            "HANDED OFF",
            "HANDOFF DROPS",
            "XDP REDIRECTED",
            "XDP PASSED",
        ],
        &ports,
    ));
    for (i, w) in v["workers"].as_array().into_iter().flatten().enumerate() {
        let t = &w["times"];
        let busy = ["rx_ns", "pipeline_ns", "tx_ns", "handoff_ns"]
            .iter()
            .map(|k| n(&t[*k]))
            .sum::<u64>();
        let total = busy + n(&t["idle_ns"]);
        let packets = n(&t["packets"]);
        let per_packet = |k: &str| match packets {
            0 => "-".to_string(),
            p => format!("{:.0}", n(&t[k]) as f64 / p as f64),
        };
        let share = |part: u64, whole: u64| match whole {
            0 => "-".to_string(),
            w => format!("{:.1}%", 100.0 * part as f64 / w as f64),
        };
        let bursts: Vec<String> = ["1", "2-3", "4-7", "8-15", "16-31", "32-63", "64"]
            .iter()
            .zip(t["batches"].as_array().into_iter().flatten())
            .map(|(size, count)| format!("{size}:{}", cell(count)))
            .collect();
        out.push_str(&format!(
            "\nworker {i} (core {}, tid {}):\n\
             \x20 packets received {}, sent {}, handed off {} (dropped {}), tx ring full {}\n\
             \x20 kernel: rx ring full {}, no fill frame {}\n\
             \x20 flow cache: hits {}, misses {}, flows added {}; connections tracked {}\n\
             \x20 services: connections {}, refused with RST {}, source ports remapped {}; masqueraded connections {}\n\
             \x20 polls busy {}, idle {}; busy {} of the time\n\
             \x20 ns per packet: rx {}, pipeline {}, tx {}, hand-off {}\n\
             \x20 bursts: {}\n",
            cell(&w["core"]),
            cell(&w["tid"]),
            cell(&w["rx_packets"]),
            cell(&w["tx_packets"]),
            cell(&w["handed_off"]),
            cell(&w["handoff_drops"]),
            cell(&w["tx_ring_full"]),
            cell(&w["sockets"]["rx_ring_full"]),
            cell(&w["sockets"]["rx_fill_ring_empty"]),
            cell(&w["flow_hits"]),
            cell(&w["flow_misses"]),
            cell(&w["flows_added"]),
            cell(&w["ct_created"]),
            cell(&w["svc_connections"]),
            cell(&w["tcp_resets"]),
            cell(&w["nat_port_remaps"]),
            cell(&w["snat_connections"]),
            cell(&t["busy_polls"]),
            cell(&t["idle_polls"]),
            share(busy, total),
            per_packet("rx_ns"),
            per_packet("pipeline_ns"),
            per_packet("tx_ns"),
            per_packet("handoff_ns"),
            bursts.join(" "),
        ));
    }
    let drops: Vec<Vec<String>> = v["drops"]
        .as_object()
        .map(|m| m.iter().map(|(k, c)| vec![k.clone(), cell(c)]).collect())
        .unwrap_or_default();
    out.push('\n');
    if drops.is_empty() {
        out.push_str("no drops\n");
    } else {
        out.push_str(&table(&["DROP REASON", "PACKETS"], &drops));
    }
    out
}

/// The elements of the array `v` (none if it is not one).
fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// A Service's ports as `kubectl get services` prints them:
/// `80:30080/TCP,53/UDP` (what `ServiceSpec::ports_text` makes of the
/// struct).
fn service_ports_text(s: &Value) -> String {
    items(&s["ports"])
        .iter()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match &p["node_port"] {
                Value::Null => format!("{}/{proto}", cell(&p["port"])),
                np => format!("{}:{}/{proto}", cell(&p["port"]), cell(np)),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `a,b`, or `<none>` as kubectl writes an empty list.
fn addresses_text(addresses: &[&Value]) -> String {
    let all: Vec<String> = addresses.iter().flat_map(|a| items(a)).map(cell).collect();
    if all.is_empty() {
        "<none>".into()
    } else {
        all.join(",")
    }
}

/// An endpoint's conditions as `EndpointSpec::conditions` writes them,
/// from its JSON, where defaults are left out (`ready` true, `serving` as
/// `ready`, `terminating` false).
fn endpoint_conditions(e: &Value) -> String {
    let ready = e["ready"].as_bool().unwrap_or(true);
    let serving = e["serving"].as_bool().unwrap_or(ready);
    let terminating = e["terminating"].as_bool().unwrap_or(false);
    let c: Vec<&str> = [
        (ready, "ready"),
        (serving, "serving"),
        (terminating, "terminating"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, name)| *name)
    .collect();
    if c.is_empty() {
        "none".into()
    } else {
        c.join(",")
    }
}

/// `usable/all`: endpoints that take new connections of those listed.
fn endpoints_count(s: &Value) -> String {
    format!(
        "{}/{}",
        s["usable_endpoints"].as_u64().unwrap_or(0),
        items(&s["endpoints"]).len()
    )
}

/// A field spelled as in Kubernetes, with the default a JSON leaves out.
fn or_default<'a>(v: &'a Value, default: &'a str) -> &'a str {
    v.as_str().unwrap_or(default)
}

/// Services as `kubectl get services` lists them, and how many were left
/// out when xvsd cut the list.
fn service_list_table(v: &Value) -> String {
    let services = items(&v["services"]);
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| {
            vec![
                cell(&s["name"]),
                or_default(&s["type"], "ClusterIP").to_string(),
                cell(&s["cluster_ip"]),
                addresses_text(&[&s["external_ips"], &s["load_balancer_ips"]]),
                service_ports_text(s),
                endpoints_count(s),
                or_default(&s["session_affinity"], "None").to_string(),
            ]
        })
        .collect();
    let mut out = if rows.is_empty() {
        "no services\n".to_string()
    } else {
        table(
            &[
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "ENDPOINTS",
                "AFFINITY",
            ],
            &rows,
        )
    };
    let total = v["total"].as_u64().unwrap_or(0);
    let shown = services.len() as u64;
    if total > shown {
        out += &format!("{shown} of {total} services (list one namespace with NAMESPACE/)\n");
    }
    out
}

/// Each Service of a `service-list` answer in full.
fn service_show_text(v: &Value) -> String {
    let shown: Vec<String> = items(&v["services"]).iter().map(service_text).collect();
    shown.join("\n")
}

/// One Service in full: settings, a port table, an endpoint table.
fn service_text(s: &Value) -> String {
    let affinity = match or_default(&s["session_affinity"], "None") {
        "ClientIP" => format!(
            "ClientIP, timeout {}s",
            s["session_affinity_timeout"]
                .as_u64()
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECS.into())
        ),
        other => other.to_string(),
    };
    let settings = [
        ("name", cell(&s["name"])),
        ("type", or_default(&s["type"], "ClusterIP").to_string()),
        ("cluster IP", cell(&s["cluster_ip"])),
        ("external IPs", addresses_text(&[&s["external_ips"]])),
        (
            "load balancer IPs",
            addresses_text(&[&s["load_balancer_ips"]]),
        ),
        ("session affinity", affinity),
        (
            "external traffic policy",
            or_default(&s["external_traffic_policy"], "Cluster").to_string(),
        ),
        (
            "internal traffic policy",
            or_default(&s["internal_traffic_policy"], "Cluster").to_string(),
        ),
        ("endpoints", format!("{} usable", endpoints_count(s))),
    ];
    let width = settings.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (key, value) in &settings {
        out += &format!("{:<width$} {value}\n", format!("{key}:"));
    }
    let ports: Vec<Vec<String>> = items(&s["ports"])
        .iter()
        .map(|p| {
            vec![
                cell(&p["name"]),
                format!("{}/{}", cell(&p["port"]), or_default(&p["protocol"], "TCP")),
                match &p["target_port"] {
                    Value::Null => cell(&p["port"]),
                    t => cell(t),
                },
                cell(&p["node_port"]),
            ]
        })
        .collect();
    out.push('\n');
    out += &table(&["PORT NAME", "PORT", "TARGET", "NODE PORT"], &ports);
    let endpoints: Vec<Vec<String>> = items(&s["endpoints"])
        .iter()
        .map(|e| {
            vec![
                cell(&e["ip"]),
                endpoint_conditions(e),
                e["weight"].as_u64().unwrap_or(1).to_string(),
            ]
        })
        .collect();
    out.push('\n');
    if endpoints.is_empty() {
        out += "no endpoints\n";
    } else {
        out += &table(&["ENDPOINT", "CONDITIONS", "WEIGHT"], &endpoints);
    }
    out
}

/// What a change did: its diff lines, then the generation.
fn changes_text(v: &Value) -> String {
    let changes: Vec<String> = v["changes"]
        .as_array()
        .map(|a| a.iter().map(cell).collect())
        .unwrap_or_default();
    let mut out = String::new();
    for c in &changes {
        out.push_str(c);
        out.push('\n');
    }
    let dry = v["dry_run"].as_bool() == Some(true);
    out.push_str(&match (changes.is_empty(), dry) {
        (true, _) => format!("no change (generation {})\n", cell(&v["generation"])),
        (false, true) => "dry run: nothing changed\n".to_string(),
        (false, false) => format!("now at generation {}\n", cell(&v["generation"])),
    });
    out
}

/// "12 packets captured on pod1 to /tmp/x.pcap", with drops and an early
/// end if any.
fn capture_text(v: &Value) -> String {
    let packets = v["packets"].as_u64().unwrap_or(0);
    let mut out = format!(
        "{packets} packet{} captured on {} to {}\n",
        if packets == 1 { "" } else { "s" },
        cell(&v["port"]),
        cell(&v["path"]),
    );
    match v["dropped"].as_u64() {
        Some(0) | None => {}
        Some(n) => out.push_str(&format!(
            "{n} packets dropped (not copied: xvsd's capture queue was full)\n"
        )),
    }
    if v["interrupted"].as_bool() == Some(true) {
        out.push_str("capture ended early: the switch was reconfigured\n");
    }
    out
}

/// A trace as xvsd's golden tests print it (the same `Display`).
fn trace_text(v: &Value) -> String {
    match serde_json::from_value::<Trace>(v.clone()) {
        Ok(trace) => trace.to_string(),
        // An xvsd of another version: show what it sent.
        Err(_) => format!("{v:#}\n"),
    }
}

fn conntrack_text(v: &Value) -> String {
    let mut out = String::new();
    for line in v["connections"].as_array().into_iter().flatten() {
        out += &format!("{}\n", cell(line));
    }
    out + &format!(
        "{} connections (capacity {}){}\n",
        cell(&v["live"]),
        cell(&v["capacity"]),
        more(v, "connections")
    )
}

/// A note when a dump was cut short: how many matched and were not shown.
fn more(v: &Value, list: &str) -> String {
    let shown = v[list].as_array().map_or(0, Vec::len) as u64;
    match v["matched"].as_u64() {
        Some(matched) if matched > shown => format!(
            "; {} more not shown (narrow with --addr or --port)",
            matched - shown
        ),
        _ => String::new(),
    }
}

fn deleted_text(v: &Value) -> String {
    format!("{} cached flows deleted\n", cell(&v["removed"]))
}

/// One rule per line, as ovs-ofctl dump-flows prints them.
fn dump_rules_text(v: &Value) -> String {
    let mut out = format!("generation {}\n", cell(&v["generation"]));
    for r in v["rules"].as_array().into_iter().flatten() {
        out += &format!(
            " cached_flows={}, n_packets={}, n_bytes={}, {}\n",
            cell(&r["cached_flows"]),
            cell(&r["packets"]),
            cell(&r["bytes"]),
            cell(&r["rule"])
        );
    }
    out
}

/// Seconds with one decimal, from nanoseconds.
fn secs(v: &Value) -> String {
    #[allow(clippy::cast_precision_loss)] // display only
    let s = v.as_u64().unwrap_or(0) as f64 / 1e9;
    format!("{s:.1}s")
}

/// One cached flow per line, as ovs-appctl dpctl/dump-flows prints them.
fn dump_flows_text(v: &Value) -> String {
    let flows = v["flows"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = format!(
        "{} flows cached (capacity {}), generation {}{}\n",
        cell(&v["cached"]),
        cell(&v["capacity"]),
        cell(&v["generation"]),
        more(v, "flows")
    );
    for f in flows {
        let rule = match &f["rule"] {
            Value::String(r) => format!(", rule({r})"),
            _ => String::new(),
        };
        out += &format!(
            "{}, packets:{}, bytes:{}, age:{}, idle:{}{rule}, actions:{}\n",
            cell(&f["match"]),
            cell(&f["packets"]),
            cell(&f["bytes"]),
            secs(&f["age_ns"]),
            secs(&f["idle_ns"]),
            cell(&f["actions"])
        );
    }
    out
}

fn version_table(v: &Value) -> String {
    format!(
        "xvsd {}, control protocol {}\n",
        cell(&v["xvsd"]),
        cell(&v["protocol"])
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trace_renders_the_datapaths_text() {
        let v = json!({
            "packet": "in_port=p1,icmp,nw_src=10.0.0.1,nw_dst=10.0.0.2",
            "stages": [{"stage": "ip4-forward", "note": "10.0.0.2: out p2 to 02:00:00:00:00:02"}],
            "verdicts": [{"verdict": "output", "port": "p2", "frame": "an echo"}],
        });
        assert_eq!(
            trace_text(&v),
            "packet: in_port=p1,icmp,nw_src=10.0.0.1,nw_dst=10.0.0.2\n\
             \n\
             ip4-forward: 10.0.0.2: out p2 to 02:00:00:00:00:02\n\
             \n\
             output to p2: an echo\n"
        );
        assert_eq!(trace_text(&json!({"other": 1})), "{\n  \"other\": 1\n}\n");
    }

    #[test]
    fn show_renders_aligned_tables() {
        let v = json!({
            "generation": 3,
            "pod_mtu": 1450,
            "missing": [],
            "ports": [
                {"name": "veth-pod1", "xdp": "native", "bind": "copy", "queues": 2, "workers": [0, 1]},
                {"name": "eth0", "xdp": "native", "bind": "zero-copy", "queues": 1, "workers": [1]},
            ],
            "workers": [{"worker": 0, "core": 0, "tid": 101}, {"worker": 1, "core": null, "tid": 102}],
        });
        assert_eq!(
            show_table(&v),
            "snapshot generation 3, pod MTU 1450\n\
             \n\
             NAME       XDP     BIND       QUEUES  WORKERS\n\
             veth-pod1  native  copy       2       0,1\n\
             eth0       native  zero-copy  1       1\n\
             \n\
             WORKER  CORE  TID\n\
             0       0     101\n\
             1       -     102\n"
        );
        assert_eq!(
            changes_text(&json!({"changes": ["- port a"], "generation": 4, "dry_run": false})),
            "- port a\nnow at generation 4\n"
        );
        assert_eq!(
            changes_text(&json!({"changes": [], "generation": 4, "dry_run": false})),
            "no change (generation 4)\n"
        );
        assert_eq!(
            port_list_table(
                &json!([{"name": "p1", "kind": {"pod": {"ip": "10.0.0.2", "mac": "02:00:00:00:00:02"}}, "mtu": 1500, "status": "up"}])
            ),
            "NAME  KIND                            MTU   STATUS\n\
             p1    pod 10.0.0.2 02:00:00:00:00:02  1500  up\n"
        );
        assert_eq!(
            capture_text(
                &json!({"port": "pod1", "path": "/tmp/x.pcap", "packets": 12,
                                 "dropped": 0, "interrupted": false})
            ),
            "12 packets captured on pod1 to /tmp/x.pcap\n"
        );
        assert_eq!(
            capture_text(&json!({"port": "pod1", "path": "/tmp/x.pcap", "packets": 1,
                                 "dropped": 3, "interrupted": true})),
            "1 packet captured on pod1 to /tmp/x.pcap\n\
             3 packets dropped (not copied: xvsd's capture queue was full)\n\
             capture ended early: the switch was reconfigured\n"
        );
        assert_eq!(
            version_table(&json!({"xvsd": "0.1.0", "protocol": 1})),
            "xvsd 0.1.0, control protocol 1\n"
        );
    }

    /// The request a command line makes.
    fn request_of(args: &[&str]) -> Result<(&'static str, Value, Render), String> {
        let cli = Cli::try_parse_from(std::iter::once("xvsctl").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        request(cli.command)
    }

    #[test]
    fn port_specs_parse() {
        let port = |name: Option<&str>, protocol, port, target_port, node_port| ServicePort {
            name: name.map(str::to_string),
            protocol,
            port,
            target_port,
            node_port,
        };
        let good = [
            ("80", port(None, Protocol::TCP, 80, None, None)),
            ("80:8080", port(None, Protocol::TCP, 80, Some(8080), None)),
            ("53/UDP", port(None, Protocol::UDP, 53, None, None)),
            (
                "dns=53/udp",
                port(Some("dns"), Protocol::UDP, 53, None, None),
            ),
            ("80@30080", port(None, Protocol::TCP, 80, None, Some(30080))),
            (
                "http=80:8080/TCP@30080",
                port(Some("http"), Protocol::TCP, 80, Some(8080), Some(30080)),
            ),
            (
                "metrics-2=9090:9100/tcp",
                port(Some("metrics-2"), Protocol::TCP, 9090, Some(9100), None),
            ),
        ];
        for (spec, want) in good {
            assert_eq!(parse_port_spec(spec), Ok(want), "{spec}");
        }
        let bad = [
            ("", "port \"\" is not a port number"),
            ("0", "port \"0\" is not a port number"),
            ("65536", "port \"65536\" is not a port number"),
            ("http", "port \"http\" is not a port number"),
            ("80:", "target port \"\""),
            ("80:0", "target port \"0\""),
            ("80:8080:9090", "target port \"8080:9090\""),
            ("80/SCTP", "protocol \"SCTP\": expected TCP or UDP"),
            ("80/", "protocol \"\""),
            ("80@", "node port \"\""),
            ("80@0", "node port \"0\""),
            ("80@30080/UDP", "write /PROTO before @NODEPORT"),
            ("=80", "port name \"\""),
            ("HTTP=80", "port name \"HTTP\""),
            ("-a=80", "port name \"-a\""),
            ("a=b=80", "port \"b=80\""),
        ];
        for (spec, want) in bad {
            let e = parse_port_spec(spec).expect_err(spec);
            assert!(e.contains(want), "{spec:?}: {e:?} should say {want:?}");
            assert!(
                e.contains(PORT_SPEC),
                "{spec:?}: {e:?} should show the syntax"
            );
        }
        // Through clap, the flag and value are named.
        let e = request_of(&[
            "service",
            "add",
            "web",
            "--cluster-ip",
            "10.96.0.1",
            "--port",
            "80/sctp",
        ])
        .expect_err("SCTP");
        assert!(e.contains("'80/sctp'") && e.contains("--port"), "{e}");
    }

    #[test]
    fn service_add_sends_a_valid_service() {
        let (method, params, _) = request_of(&[
            "service",
            "add",
            "web",
            "--type",
            "nodeport",
            "--cluster-ip",
            "10.96.0.10",
            "--port",
            "http=80:8080/TCP@30080",
            "--port",
            "dns=53/udp@30053",
            "--external-ip",
            "203.0.113.7",
            "--lb-ip",
            "198.51.100.1,198.51.100.2",
            "--affinity",
            "ClientIP",
            "--affinity-timeout",
            "60",
            "--external-traffic-policy",
            "Local",
            "--endpoint",
            "10.244.1.11,10.244.2.12",
            "--endpoint",
            "10.244.1.13",
            "--replace",
        ])
        .unwrap();
        assert_eq!(method, "service-add");
        assert_eq!(params["replace"], json!(true));
        let spec: ServiceSpec = serde_json::from_value(params["service"].clone()).unwrap();
        spec.validate().unwrap();
        assert_eq!(spec.name, "default/web");
        assert_eq!(spec.kind, ServiceType::NodePort);
        assert_eq!(spec.cluster_ip, Ipv4Addr::new(10, 96, 0, 10));
        assert_eq!(spec.external_ips, [Ipv4Addr::new(203, 0, 113, 7)]);
        assert_eq!(spec.load_balancer_ips.len(), 2);
        assert_eq!(spec.ports_text(), "80:30080/TCP,53:30053/UDP");
        assert_eq!(spec.ports[0].target(), 8080);
        assert_eq!(spec.session_affinity, SessionAffinity::ClientIP);
        assert_eq!(spec.session_affinity_timeout, 60);
        assert_eq!(spec.external_traffic_policy, TrafficPolicy::Local);
        assert_eq!(spec.internal_traffic_policy, TrafficPolicy::Cluster);
        let endpoints: Vec<EndpointSpec> = ["10.244.1.11", "10.244.2.12", "10.244.1.13"]
            .iter()
            .map(|ip| EndpointSpec::ready(ip.parse().unwrap()))
            .collect();
        assert_eq!(spec.endpoints, endpoints);

        // The least a Service needs; the defaults are Kubernetes'.
        let (_, params, _) = request_of(&[
            "service",
            "add",
            "kube-system/dns",
            "--cluster-ip",
            "10.96.0.53",
            "--port",
            "53/UDP",
        ])
        .unwrap();
        assert_eq!(params["replace"], json!(false));
        let spec: ServiceSpec = serde_json::from_value(params["service"].clone()).unwrap();
        spec.validate().unwrap();
        assert_eq!(spec.name, "kube-system/dns");
        assert_eq!(spec.kind, ServiceType::ClusterIP);
        assert_eq!(spec.session_affinity, SessionAffinity::None);
        assert!(spec.endpoints.is_empty());

        // What xvsd would refuse is refused here, saying which flag to use.
        let refused = |extra: &[&str], want: &str| {
            let mut args = vec!["service", "add", "web", "--cluster-ip", "10.96.0.10"];
            args.extend_from_slice(extra);
            let e = request_of(&args).expect_err(want);
            assert!(e.contains(want), "{e:?} should say {want:?}");
        };
        refused(&[], "--port <SPEC>");
        refused(&["--port", "80", "--port", "81"], "--port NAME=PORT");
        refused(&["--port", "80", "--type", "NodePort"], "@NODEPORT");
        refused(&["--port", "80@30080"], "--type NodePort");
        refused(
            &["--port", "80", "--affinity-timeout", "60"],
            "--affinity ClientIP",
        );
        refused(
            &[
                "--port",
                "80",
                "--affinity",
                "ClientIP",
                "--affinity-timeout",
                "0",
            ],
            "1..=86400",
        );
        refused(
            &["--port", "80", "--endpoint", "10.0.0.1,10.0.0.1"],
            "listed twice",
        );
        refused(&["--port", "80", "--type", "ExternalName"], "ExternalName");
    }

    #[test]
    fn service_and_endpoint_commands_name_services_in_full() {
        let check = |args: &[&str], method: &str, params: Value| {
            let (m, p, _) = request_of(args).unwrap();
            assert_eq!((m, p), (method, params), "{args:?}");
        };
        check(
            &["service", "del", "web"],
            "service-del",
            json!({"name": "default/web"}),
        );
        check(
            &["service", "del", "ns/web"],
            "service-del",
            json!({"name": "ns/web"}),
        );
        check(&["service", "list"], "service-list", json!({"name": null}));
        check(
            &["service", "list", "web"],
            "service-list",
            json!({"name": "default/web"}),
        );
        check(
            &["service", "list", "kube-system/"],
            "service-list",
            json!({"name": "kube-system/"}),
        );
        check(
            &["service", "show", "web"],
            "service-list",
            json!({"name": "default/web"}),
        );
        assert!(request_of(&["service", "show", "ns/"])
            .expect_err("a namespace")
            .contains("service list ns/"));
        check(
            &["endpoint", "del", "web", "10.244.1.11"],
            "endpoint-del",
            json!({"service": "default/web", "ip": "10.244.1.11"}),
        );
        check(
            &["endpoint", "add", "web", "10.244.1.11"],
            "endpoint-add",
            json!({"service": "default/web", "endpoint": {"ip": "10.244.1.11"}}),
        );
        let (_, p, _) = request_of(&[
            "endpoint",
            "add",
            "ns/web",
            "10.244.1.11",
            "--not-ready",
            "--serving",
            "true",
            "--terminating",
            "--weight",
            "3",
        ])
        .unwrap();
        assert_eq!(p["service"], json!("ns/web"));
        let e: EndpointSpec = serde_json::from_value(p["endpoint"].clone()).unwrap();
        assert_eq!(
            e,
            EndpointSpec {
                ip: Ipv4Addr::new(10, 244, 1, 11),
                ready: false,
                serving: Some(true),
                terminating: true,
                weight: 3,
            }
        );
        assert_eq!(e.conditions(), "serving,terminating");
    }

    #[test]
    fn command_line_definitions_hold_together() {
        Cli::command().debug_assert();
        let mut script = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "xvsctl",
            &mut script,
        );
        let script = String::from_utf8(script).unwrap();
        for word in ["service", "endpoint", "--affinity-timeout", "LoadBalancer"] {
            assert!(script.contains(word), "completions lack {word}");
        }
    }

    /// A `service-list` answer as xvsd makes it: each Service serialized,
    /// with its usable endpoint count.
    fn list_answer(services: &[(&ServiceSpec, u64)], total: u64) -> Value {
        let services: Vec<Value> = services
            .iter()
            .map(|(s, usable)| {
                let mut v = serde_json::to_value(s).unwrap();
                v["usable_endpoints"] = json!(usable);
                v
            })
            .collect();
        json!({"services": services, "total": total, "generation": 7})
    }

    fn services() -> (ServiceSpec, ServiceSpec) {
        let web: ServiceSpec = serde_json::from_value(json!({
            "name": "default/web", "type": "LoadBalancer", "cluster_ip": "10.96.0.10",
            "external_ips": ["203.0.113.7"], "load_balancer_ips": ["198.51.100.1"],
            "ports": [{"name": "http", "port": 80, "target_port": 8080, "node_port": 30080},
                      {"name": "dns", "protocol": "UDP", "port": 53}],
            "session_affinity": "ClientIP", "session_affinity_timeout": 60,
            "external_traffic_policy": "Local",
            "endpoints": [{"ip": "10.244.1.11"},
                          {"ip": "10.244.2.12", "ready": false, "terminating": true, "weight": 3},
                          {"ip": "10.244.2.13", "ready": false, "serving": true, "terminating": true}]
        }))
        .unwrap();
        let dns: ServiceSpec = serde_json::from_value(json!({
            "name": "kube-system/dns", "cluster_ip": "10.96.0.53",
            "ports": [{"port": 53, "protocol": "UDP"}]
        }))
        .unwrap();
        web.validate().unwrap();
        dns.validate().unwrap();
        (web, dns)
    }

    #[test]
    fn service_list_renders_like_kubectl() {
        let (web, dns) = services();
        // The JSON is read as the model reads it (the model as witness).
        let v = list_answer(&[(&web, 1)], 1);
        assert_eq!(service_ports_text(&v["services"][0]), web.ports_text());
        for e in &web.endpoints {
            assert_eq!(
                endpoint_conditions(&serde_json::to_value(e).unwrap()),
                e.conditions()
            );
        }
        assert_eq!(
            service_list_table(&list_answer(&[(&web, 1), (&dns, 0)], 2)),
            "NAME             TYPE          CLUSTER-IP  EXTERNAL-IP               PORT(S)              ENDPOINTS  AFFINITY\n\
             default/web      LoadBalancer  10.96.0.10  203.0.113.7,198.51.100.1  80:30080/TCP,53/UDP  1/3        ClientIP\n\
             kube-system/dns  ClusterIP     10.96.0.53  <none>                    53/UDP               0/0        None\n"
        );
        assert_eq!(
            service_list_table(&list_answer(&[(&dns, 0)], 1200)),
            "NAME             TYPE       CLUSTER-IP  EXTERNAL-IP  PORT(S)  ENDPOINTS  AFFINITY\n\
             kube-system/dns  ClusterIP  10.96.0.53  <none>       53/UDP   0/0        None\n\
             1 of 1200 services (list one namespace with NAMESPACE/)\n"
        );
        assert_eq!(service_list_table(&list_answer(&[], 0)), "no services\n");
    }

    #[test]
    fn service_show_renders_ports_and_endpoints() {
        let (web, dns) = services();
        assert_eq!(
            service_show_text(&list_answer(&[(&web, 1)], 1)),
            "name:                    default/web\n\
             type:                    LoadBalancer\n\
             cluster IP:              10.96.0.10\n\
             external IPs:            203.0.113.7\n\
             load balancer IPs:       198.51.100.1\n\
             session affinity:        ClientIP, timeout 60s\n\
             external traffic policy: Local\n\
             internal traffic policy: Cluster\n\
             endpoints:               1/3 usable\n\
             \n\
             PORT NAME  PORT    TARGET  NODE PORT\n\
             http       80/TCP  8080    30080\n\
             dns        53/UDP  53      -\n\
             \n\
             ENDPOINT     CONDITIONS           WEIGHT\n\
             10.244.1.11  ready,serving        1\n\
             10.244.2.12  terminating          3\n\
             10.244.2.13  serving,terminating  1\n"
        );
        assert_eq!(
            service_show_text(&list_answer(&[(&dns, 0)], 1)),
            "name:                    kube-system/dns\n\
             type:                    ClusterIP\n\
             cluster IP:              10.96.0.53\n\
             external IPs:            <none>\n\
             load balancer IPs:       <none>\n\
             session affinity:        None\n\
             external traffic policy: Cluster\n\
             internal traffic policy: Cluster\n\
             endpoints:               0/0 usable\n\
             \n\
             PORT NAME  PORT    TARGET  NODE PORT\n\
             -          53/UDP  53      -\n\
             \n\
             no endpoints\n"
        );
    }
}
