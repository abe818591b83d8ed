//! xvsctl: inspect (and, as the control protocol grows, program) a running
//! xvsd over its control socket. Tables for people, `-o json` for scripts.
//!
//! ```sh
//! xvsctl show            # ports (XDP and bind modes, queues, workers), workers
//! xvsctl -o json show
//! xvsctl version
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::Value;
use xvs_control::client::{Client, DEFAULT_SOCKET};

#[derive(Parser)]
#[command(name = "xvsctl", version, about = "Inspect a running xvsd")]
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
    /// Ports with their XDP and bind modes, queues and workers; workers.
    Show,
    /// xvsd's version and protocol version.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (method, render): (&str, fn(&Value) -> String) = match cli.command {
        Command::Show => ("show", show_table),
        Command::Version => ("version", version_table),
    };
    let result = Client::connect(&cli.socket).and_then(|mut c| c.call(method, Value::Null));
    match result {
        Ok(v) => {
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

fn show_table(v: &Value) -> String {
    let rows = |key: &str, fields: &[&str]| -> Vec<Vec<String>> {
        v[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|item| fields.iter().map(|f| cell(&item[*f])).collect())
                    .collect()
            })
            .unwrap_or_default()
    };
    format!(
        "{}\n{}",
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
            "ports": [
                {"name": "veth-pod1", "xdp": "native", "bind": "copy", "queues": 2, "workers": [0, 1]},
                {"name": "eth0", "xdp": "native", "bind": "zero-copy", "queues": 1, "workers": [1]},
            ],
            "workers": [{"worker": 0, "core": 0, "tid": 101}, {"worker": 1, "core": null, "tid": 102}],
        });
        assert_eq!(
            show_table(&v),
            "NAME       XDP     BIND       QUEUES  WORKERS\n\
             veth-pod1  native  copy       2       0,1\n\
             eth0       native  zero-copy  1       1\n\
             \n\
             WORKER  CORE  TID\n\
             0       0     101\n\
             1       -     102\n"
        );
        assert_eq!(
            version_table(&json!({"xvsd": "0.1.0", "protocol": 1})),
            "xvsd 0.1.0, control protocol 1\n"
        );
    }
}
