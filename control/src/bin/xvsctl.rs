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
//! xvsctl completions bash > /etc/bash_completion.d/xvsctl
//! ```

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use ipnet::Ipv4Net;
use serde_json::{json, Value};
use xvs_control::client::{Client, DEFAULT_SOCKET};
use xvs_control::state::{DesiredState, MacAddr, PortKind};

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
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
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
        Command::Completions { .. } => unreachable!("handled in main"),
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "xvsctl", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    let result = request(cli.command).and_then(|(method, params, render)| {
        Client::connect(&cli.socket)
            .and_then(|mut c| c.call(method, params))
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
        "snapshot generation {}\n{missing}\n{}\n{}",
        cell(&v["generation"]),
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
    fn show_renders_aligned_tables() {
        let v = json!({
            "generation": 3,
            "missing": [],
            "ports": [
                {"name": "veth-pod1", "xdp": "native", "bind": "copy", "queues": 2, "workers": [0, 1]},
                {"name": "eth0", "xdp": "native", "bind": "zero-copy", "queues": 1, "workers": [1]},
            ],
            "workers": [{"worker": 0, "core": 0, "tid": 101}, {"worker": 1, "core": null, "tid": 102}],
        });
        assert_eq!(
            show_table(&v),
            "snapshot generation 3\n\
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
            version_table(&json!({"xvsd": "0.1.0", "protocol": 1})),
            "xvsd 0.1.0, control protocol 1\n"
        );
    }
}
