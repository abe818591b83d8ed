//! xvs-pktgen: a traffic generator and a sink, both XDP programs (see
//! `xvs_hw::pktgen`).
//!
//! ```sh
//! ip netns exec sink xvs-pktgen sink --dev eth0 --flows 1024 --seconds 12 &
//! ip netns exec gen  xvs-pktgen gen --dev eth0 --dst-mac .. --src-ip .. --dst-ip .. \
//!     --flows 1024 --size 64 --rate max --seconds 10 --core 0
//! ```
//!
//! `gen` sends for the given time (or count) at the given rate from the
//! calling core and prints a JSON line with what it sent; `sink` counts
//! until its time is up (or SIGINT/SIGTERM) and prints a JSON line with
//! packets, per-flow loss and reordering, and latency percentiles.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use xvs_hw::pktgen::{bucket_floor_ns, FlowVary, FrameKind, LiveGenerator, Sink};
use xvs_perf::frames::{frame_len, template, Endpoints, Outer, IMIX};

#[derive(Parser)]
#[command(name = "xvs-pktgen", version, about = "XDP traffic generator and sink")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Udp,
    TcpSyn,
    Vxlan,
}

/// What tells flows apart past 16384 (the source port counts the first
/// 16384).
#[derive(Clone, Copy, ValueEnum)]
enum Vary {
    /// The source address: flow f adds f / 16384 to it.
    SrcIp,
    /// The destination port: flow f adds f / 16384 to it, and every frame
    /// keeps --src-ip (for pod ports with an anti-spoofing check).
    DstPort,
}

#[derive(Subcommand)]
enum Command {
    /// Send traffic out of an interface (XDP live frames).
    Gen(GenArgs),
    /// Count, check and time the traffic arriving on an interface.
    Sink(SinkArgs),
}

#[derive(clap::Args)]
struct GenArgs {
    #[arg(long)]
    dev: String,
    #[arg(long, value_enum, default_value = "udp")]
    kind: Kind,
    /// Source MAC (default: the interface's).
    #[arg(long)]
    src_mac: Option<String>,
    #[arg(long)]
    dst_mac: String,
    #[arg(long)]
    src_ip: Ipv4Addr,
    #[arg(long)]
    dst_ip: Ipv4Addr,
    #[arg(long, default_value_t = 1024)]
    src_port: u16,
    #[arg(long, default_value_t = 5001)]
    dst_port: u16,
    /// Flows: source ports vary (and, past 16384, the field --vary names).
    #[arg(long, default_value_t = 1)]
    flows: u32,
    #[arg(long, value_enum, default_value = "src-ip")]
    vary: Vary,
    /// Wire size in bytes (64..1518), FCS included.
    #[arg(long, default_value_t = 64, conflicts_with = "imix")]
    size: u16,
    /// Simple IMIX (7:4:1 of 64, 594 and 1518 bytes) instead of --size.
    #[arg(long)]
    imix: bool,
    /// Packets per second, or "max". Paced against the clock; the live
    /// engine sends rates above some 50 kpps in bursts (see
    /// `LiveGenerator::send`).
    #[arg(long, default_value = "max")]
    rate: String,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Stop after this many packets instead.
    #[arg(long)]
    count: Option<u64>,
    /// CPU to send from.
    #[arg(long)]
    core: Option<usize>,
    /// VXLAN: outer source and destination (MACs, addresses), VNI, port.
    #[arg(long)]
    outer_src_mac: Option<String>,
    #[arg(long)]
    outer_dst_mac: Option<String>,
    #[arg(long)]
    outer_src_ip: Option<Ipv4Addr>,
    #[arg(long)]
    outer_dst_ip: Option<Ipv4Addr>,
    #[arg(long, default_value_t = 1)]
    vni: u32,
    #[arg(long, default_value_t = 4789)]
    vxlan_port: u16,
}

#[derive(clap::Args)]
struct SinkArgs {
    #[arg(long)]
    dev: String,
    /// As many as the generator sends (per-flow counters).
    #[arg(long, default_value_t = 1)]
    flows: u32,
    /// Look for the stamp inside VXLAN to this UDP port.
    #[arg(long)]
    vxlan_port: Option<u16>,
    /// Stop after this long (also on SIGINT/SIGTERM).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Stop once this many packets arrived.
    #[arg(long)]
    until: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Gen(a) => gen(&a),
        Command::Sink(a) => sink(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xvs-pktgen: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn mac(s: &str) -> Result<[u8; 6]> {
    let bytes: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| format!("{s}: not a MAC address"))?;
    bytes
        .try_into()
        .map_err(|_| format!("{s}: not a MAC address").into())
}

fn interface_mac(dev: &str) -> Result<[u8; 6]> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{dev}/address"))
        .map_err(|e| format!("{dev}: {e}"))?;
    mac(s.trim())
}

fn gen(a: &GenArgs) -> Result<()> {
    let kind = match a.kind {
        Kind::Udp => FrameKind::Udp,
        Kind::TcpSyn => FrameKind::TcpSyn,
        Kind::Vxlan => FrameKind::Vxlan,
    };
    let own_mac = match &a.src_mac {
        Some(m) => mac(m)?,
        None => interface_mac(&a.dev)?,
    };
    let endpoints = Endpoints {
        src_mac: own_mac,
        dst_mac: mac(&a.dst_mac)?,
        src_ip: a.src_ip,
        dst_ip: a.dst_ip,
        src_port: a.src_port,
        dst_port: a.dst_port,
    };
    let outer = match kind {
        FrameKind::Vxlan => Some(Outer {
            src_mac: a.outer_src_mac.as_deref().map_or(Ok(own_mac), mac)?,
            dst_mac: mac(a.outer_dst_mac.as_deref().ok_or("--outer-dst-mac")?)?,
            src_ip: a.outer_src_ip.ok_or("--outer-src-ip")?,
            dst_ip: a.outer_dst_ip.ok_or("--outer-dst-ip")?,
            vni: a.vni,
            port: a.vxlan_port,
        }),
        _ => None,
    };
    let t = template(kind, &endpoints, outer.as_ref())?;
    let sizes: Vec<u16> = if a.imix {
        IMIX.iter().map(|&s| frame_len(s)).collect()
    } else {
        vec![frame_len(a.size)]
    };
    let rate: Option<u64> = match a.rate.as_str() {
        "max" => None,
        r => Some(
            r.parse()
                .ok()
                .filter(|&r| r > 0)
                .ok_or_else(|| format!("--rate {r}: packets per second or \"max\""))?,
        ),
    };
    if let Some(core) = a.core {
        if !xvs_hw::cpu::pin_current_thread(core) {
            return Err(format!("cannot run on core {core}").into());
        }
    }
    let vary = match a.vary {
        Vary::SrcIp => FlowVary::SrcIp,
        Vary::DstPort => FlowVary::DstPort,
    };
    let mut generator = LiveGenerator::new(&a.dev, kind, &t, &sizes, a.flows, vary)?;
    let limit = a.count.unwrap_or(u64::MAX);
    let duration = Duration::from_secs_f64(a.seconds);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < limit && start.elapsed() < duration {
        // Max rate: large runs (one syscall each); a set rate: what is due,
        // paced against the clock (at most 100 ms worth at a time).
        let chunk = match rate {
            None => 1 << 16,
            Some(r) => {
                let due = u64::try_from(start.elapsed().as_nanos() * u128::from(r) / 1_000_000_000)
                    .unwrap_or(u64::MAX);
                if due <= sent {
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
                (due - sent).min((r / 10).max(1))
            }
        };
        let chunk = u32::try_from(chunk.min(limit - sent)).unwrap_or(u32::MAX);
        generator.send(chunk)?;
        sent += u64::from(chunk);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "sent": generator.sent(),
            "seconds": secs,
            "pps": generator.sent() as f64 / secs,
            "sizes": sizes,
            "flows": a.flows,
            "vary": a.vary.to_possible_value().map(|v| v.get_name().to_owned()),
        })
    );
    Ok(())
}

fn sink(a: &SinkArgs) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let sink = Sink::attach(&a.dev, a.flows, a.vxlan_port)?;
    eprintln!("xvs-pktgen: sink ready on {}", a.dev);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.seconds);
    let mut first_packet: Option<Instant> = None;
    let mut last_change = (0u64, Instant::now());
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let packets = sink.totals()?.packets;
        if packets > 0 && first_packet.is_none() {
            first_packet = Some(Instant::now());
        }
        if packets != last_change.0 {
            last_change = (packets, Instant::now());
        }
        if a.until.is_some_and(|n| packets >= n) {
            break;
        }
    }
    let totals = sink.totals()?;
    let flows = sink.flows()?;
    let hist = sink.latency()?;
    let active = match first_packet {
        Some(t) => last_change.1.saturating_duration_since(t).as_secs_f64(),
        None => 0.0,
    };
    let percentile = |q: f64| -> Option<u64> {
        let total: u64 = hist.iter().sum();
        if total == 0 {
            return None;
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &n) in hist.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bucket_floor_ns(u32::try_from(b).unwrap_or(0)));
            }
        }
        None
    };
    let max = hist
        .iter()
        .rposition(|&n| n > 0)
        .map(|b| bucket_floor_ns(u32::try_from(b).unwrap_or(0)));
    println!(
        "{}",
        json!({
            "received": totals.packets,
            "bytes": totals.bytes,
            "unstamped": totals.unstamped,
            "active_seconds": active,
            "flows_seen": flows.iter().filter(|f| f.packets > 0).count(),
            "per_flow_packets": flows.iter().map(|f| f.packets).collect::<Vec<_>>(),
            "reordered": flows.iter().map(|f| u64::from(f.reordered)).sum::<u64>(),
            "latency_ns": {
                "p50": percentile(0.50), "p90": percentile(0.90), "p99": percentile(0.99),
                "p99.9": percentile(0.999), "max": max,
            },
        })
    );
    Ok(())
}
