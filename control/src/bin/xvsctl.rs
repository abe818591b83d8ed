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
//! xvsctl apply -f state.yaml       # converge to exactly this state; prints the diff
//! xvsctl trace in_port=veth1,tcp,nw_dst=10.244.1.3,tp_dst=80   # each stage's decision, nothing sent
//! xvsctl capture veth1 -w /tmp/veth1.pcap -c 10   # xvsd writes a pcap (tshark -r)
//! xvsctl completions bash > /etc/bash_completion.d/xvsctl
//! ```

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use ipnet::Ipv4Net;
use serde_json::{json, Value};
use xvs_control::client::{Client, DEFAULT_SOCKET};
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
    let result = request(cli.command).and_then(|(method, params, render)| {
        Client::connect(&cli.socket)
            .and_then(|mut c| {
                if let Some(wait) = wait {
                    c.set_timeout(wait)?;
                }
                c.call(method, params)
            })
            .map(|v| (v, render))
            .map_err(|e| e.to_string())
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
}
