//! xvs-pktgen: a traffic generator and a sink. The sink is an XDP program
//! (see `xvs_hw::pktgen`); the generator has two engines: XDP live frames
//! (the default: a BPF program writes and sends every frame in the kernel)
//! and AF_XDP (frames written in userspace with
//! `xvs_perf::frames::FrameWriter`, byte for byte the same, into a UMEM and
//! sent by an AF_XDP socket, zero-copy where the driver can).
//!
//! ```sh
//! ip netns exec sink xvs-pktgen sink --dev eth0 --flows 1024 --seconds 12 &
//! ip netns exec gen  xvs-pktgen gen --dev eth0 --dst-mac .. --src-ip .. --dst-ip .. \
//!     --flows 1024 --size 64 --rate max --seconds 10 --core 0
//! ```
//!
//! `gen` sends for the given time (or count) at the given rate from the
//! calling core and prints a JSON line with what it sent and how (with a
//! progress bar on stderr meanwhile, if that is a terminal or --progress
//! asks); `sink` counts until its time is up (or SIGINT/SIGTERM) and prints
//! a JSON line with packets, per-flow loss and reordering, and latency
//! percentiles. Stdout carries nothing but the JSON line.

use std::io::{IsTerminal, Write};
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
use serde_json::json;
use xvs_hw::pktgen::{
    bucket_floor_ns, check_traffic, monotonic_ns, FlowVary, FrameKind, LiveGenerator, Sink,
};
use xvs_hw::xsk::{SocketId, TxDesc, Xsk};
use xvs_perf::frames::{frame_len, template, Endpoints, FrameWriter, Outer, IMIX};

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

/// How `gen` transmits.
#[derive(Clone, Copy, ValueEnum)]
enum EngineKind {
    /// XDP live frames: BPF_PROG_RUN writes and sends every frame in the
    /// kernel, without a socket or an skb (the fastest on veth).
    Live,
    /// An AF_XDP socket on queue 0 sends frames written in userspace,
    /// zero-copy where the driver binds it so, else in copy mode. On veth
    /// (copy mode) the kernel builds an skb per frame in sendto(): expect
    /// about a quarter of live frames' rate (1 against 3.8 Mpps here).
    Afxdp,
}

#[derive(Subcommand)]
enum Command {
    /// Send traffic out of an interface (XDP live frames or AF_XDP).
    Gen(GenArgs),
    /// Count, check and time the traffic arriving on an interface.
    Sink(SinkArgs),
}

#[derive(clap::Args)]
struct GenArgs {
    #[arg(long)]
    dev: String,
    #[arg(long, value_enum, default_value = "live")]
    engine: EngineKind,
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
    #[arg(long, default_value_t = 64, conflicts_with = "imix",
          value_parser = clap::value_parser!(u16).range(64..=1518))]
    size: u16,
    /// Simple IMIX (7:4:1 of 64, 594 and 1518 bytes) instead of --size.
    #[arg(long)]
    imix: bool,
    /// Packets per second, or "max". Paced against the clock; the live
    /// engine sends rates above some 50 kpps in bursts (see
    /// `LiveGenerator::send`), AF_XDP in batches of 32.
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
    /// Show the progress bar on stderr even when it is not a terminal
    /// (on a terminal it is always shown).
    #[arg(long)]
    progress: bool,
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
    let vary = match a.vary {
        Vary::SrcIp => FlowVary::SrcIp,
        Vary::DstPort => FlowVary::DstPort,
    };
    let duration = Duration::try_from_secs_f64(a.seconds)
        .map_err(|_| format!("--seconds {}: a duration in seconds", a.seconds))?;
    check_traffic(kind, &t, &sizes, a.flows)?;
    if let Some(core) = a.core {
        if !xvs_hw::cpu::pin_current_thread(core) {
            return Err(format!("cannot run on core {core}").into());
        }
    }
    // Declared before the engine, so dropped after it: the anchor outlives
    // the program attached to it.
    let anchor = match a.engine {
        EngineKind::Live => Anchor::create()
            .map_err(|e| {
                eprintln!(
                    "xvs-pktgen: no anchor veth ({e}); paced rates above ~50 kpps come in bursts"
                );
            })
            .ok(),
        EngineKind::Afxdp => None,
    };
    let mut engine = match a.engine {
        EngineKind::Live => {
            let mut generator = LiveGenerator::new(&a.dev, kind, &t, &sizes, a.flows, vary)?;
            if let Some(anchor) = &anchor {
                generator.anchor(&anchor.0)?;
            }
            Engine::Live(generator)
        }
        EngineKind::Afxdp => Engine::AfXdp(Box::new(AfXdp::new(
            &a.dev,
            FrameWriter::new(kind, &t, vary)?,
            &sizes,
            a.flows,
        )?)),
    };
    let limit = a.count.unwrap_or(u64::MAX);
    let mut progress = Progress::start(a.progress, a.count, duration);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < limit && start.elapsed() < duration {
        if let Some(p) = &mut progress {
            p.update(sent, start.elapsed());
        }
        let chunk = match rate {
            None => max_rate_chunk(sent, start.elapsed(), duration),
            Some(r) => {
                // What is due, paced against the clock (at most 100 ms
                // worth at a time). A run costs a system call: high rates
                // wait, spinning, for 50 µs worth (at most 64 frames).
                let due = u64::try_from(start.elapsed().as_nanos() * u128::from(r) / 1_000_000_000)
                    .unwrap_or(u64::MAX);
                let batch = (r / 20_000).clamp(1, 64);
                if due < sent + batch {
                    if r >= 100_000 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    continue;
                }
                (due - sent).min((r / 10).max(1))
            }
        };
        let chunk = u32::try_from(chunk.min(limit - sent)).unwrap_or(u32::MAX);
        match &mut engine {
            // Nothing went out yet: a kernel that refuses live frames
            // (seen on sandboxed kernels, EPERM) gets the AF_XDP engine.
            Engine::Live(g) if sent == 0 => match g.send(chunk) {
                Err(e) if e.is_refused() => {
                    eprintln!(
                        "xvs-pktgen: the kernel refuses XDP live frames ({e}); \
                         falling back to the AF_XDP engine (about a quarter of the rate on veth)"
                    );
                    engine = Engine::AfXdp(Box::new(AfXdp::new(
                        &a.dev,
                        FrameWriter::new(kind, &t, vary)?,
                        &sizes,
                        a.flows,
                    )?));
                    engine.send(chunk)?;
                }
                other => other?,
            },
            _ => engine.send(chunk)?,
        }
        sent += u64::from(chunk);
    }
    engine.finish()?;
    if let Some(p) = progress {
        p.finish(sent, start.elapsed());
    }
    let secs = start.elapsed().as_secs_f64();
    let (engine_name, bind, sent) = match &engine {
        Engine::Live(g) => ("live", None, g.sent()),
        Engine::AfXdp(x) => ("afxdp", Some(x.xsk.mode(x.socket).name()), x.completed),
    };
    println!(
        "{}",
        json!({
            "engine": engine_name,
            "bind": bind,
            "sent": sent,
            "seconds": secs,
            "pps": sent as f64 / secs,
            "sizes": sizes,
            "flows": a.flows,
            "vary": a.vary.to_possible_value().map(|v| v.get_name().to_owned()),
        })
    );
    Ok(())
}

/// An idle veth pair (down) the live generator's program is attached to, which
/// keeps it in the kernel's XDP dispatcher (see `LiveGenerator::anchor`);
/// removed on drop.
struct Anchor(String);

impl Anchor {
    fn create() -> Result<Anchor> {
        let name = format!("xvsgen{}", std::process::id());
        let ip = |args: &[&str]| -> Result<()> {
            let out = std::process::Command::new("ip").args(args).output()?;
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr)
                    .trim()
                    .to_string()
                    .into())
            }
        };
        // Left down: it must never receive a frame (the program would turn
        // it into one of ours).
        ip(&[
            "link",
            "add",
            &name,
            "type",
            "veth",
            "peer",
            "name",
            &format!("{name}p"),
        ])?;
        Ok(Anchor(name))
    }
}

impl Drop for Anchor {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .output();
    }
}

/// At max rate, the next run: some 200 ms worth at the rate so far (long
/// enough that the live engine's fixed cost per run, ~15 ms, stays small),
/// at most what fits in the time left.
fn max_rate_chunk(sent: u64, elapsed: Duration, duration: Duration) -> u64 {
    if sent == 0 {
        return 1 << 16;
    }
    let elapsed_ns = elapsed.as_nanos().max(1);
    let span = duration
        .saturating_sub(elapsed)
        .min(Duration::from_millis(200));
    let chunk = u128::from(sent) * span.as_nanos() / elapsed_ns;
    u64::try_from(chunk)
        .unwrap_or(u64::MAX)
        .clamp(1 << 12, 1 << 20)
}

/// A `gen` run's progress on stderr: a bar of the time (or, with --count,
/// the frames) so far, the rate since the last redraw and the total sent.
/// The send loop calls [`Progress::update`] between runs; it redraws at
/// most every 100 ms.
struct Progress {
    bar: ProgressBar,
    /// Drawn by [`AnsiStderr`], which ends the last line itself.
    ansi: bool,
    count: Option<u64>,
    duration: Duration,
    last: Instant,
    last_sent: u64,
}

impl Progress {
    /// A bar if stderr is a terminal or `forced`.
    fn start(forced: bool, count: Option<u64>, duration: Duration) -> Option<Progress> {
        let ansi = !std::io::stderr().is_terminal();
        let target = if !ansi {
            ProgressDrawTarget::stderr_with_hz(10)
        } else if forced {
            ProgressDrawTarget::term_like_with_hz(Box::new(AnsiStderr), 10)
        } else {
            return None;
        };
        let bar = ProgressBar::with_draw_target(Some(count.unwrap_or(millis(duration))), target);
        if let Ok(style) = ProgressStyle::with_template("{spinner} [{bar:30}] {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        Some(Progress {
            bar,
            ansi,
            count,
            duration,
            last: Instant::now(),
            last_sent: 0,
        })
    }

    fn update(&mut self, sent: u64, elapsed: Duration) {
        let now = Instant::now();
        let since = now.duration_since(self.last);
        if since < Duration::from_millis(100) {
            return;
        }
        let mpps = (sent - self.last_sent) as f64 / since.as_secs_f64() / 1e6;
        (self.last, self.last_sent) = (now, sent);
        self.draw(sent, elapsed, mpps);
    }

    /// The last state, left on the screen.
    fn finish(mut self, sent: u64, elapsed: Duration) {
        let mpps = sent as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6;
        self.last_sent = sent;
        self.draw(sent, elapsed, mpps);
        self.bar.finish();
        if self.ansi {
            let _ = AnsiStderr::write("\n");
        }
    }

    fn draw(&mut self, sent: u64, elapsed: Duration, mpps: f64) {
        let secs = elapsed.as_secs_f64();
        self.bar.set_message(match self.count {
            Some(count) => format!(
                "{} / {} sent  {mpps:.3} Mpps  {secs:.1} s",
                HumanCount(sent),
                HumanCount(count)
            ),
            None => format!(
                "{secs:.1} / {:.1} s  {mpps:.3} Mpps  {} sent",
                self.duration.as_secs_f64(),
                HumanCount(sent)
            ),
        });
        self.bar.set_position(match self.count {
            Some(_) => sent,
            None => millis(elapsed),
        });
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Stderr that is not a terminal but asked for a bar (--progress): the
/// escape sequences a terminal understands, for whatever shows it later.
#[derive(Debug)]
struct AnsiStderr;

impl AnsiStderr {
    fn write(s: &str) -> std::io::Result<()> {
        std::io::stderr().write_all(s.as_bytes())
    }

    /// `ESC [ n c`, a cursor movement (none for 0).
    fn cursor(n: usize, c: char) -> std::io::Result<()> {
        match n {
            0 => Ok(()),
            n => Self::write(&format!("\x1b[{n}{c}")),
        }
    }
}

impl TermLike for AnsiStderr {
    fn width(&self) -> u16 {
        100
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        Self::cursor(n, 'A')
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        Self::cursor(n, 'B')
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        Self::cursor(n, 'C')
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        Self::cursor(n, 'D')
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        Self::write(&format!("{s}\n"))
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        Self::write(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Self::write("\r\x1b[2K")
    }
    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// A transmit engine (`--engine`).
enum Engine {
    Live(LiveGenerator),
    AfXdp(Box<AfXdp>),
}

impl Engine {
    /// Sends `count` frames; returns once they are handed to the kernel.
    fn send(&mut self, count: u32) -> Result<()> {
        match self {
            Engine::Live(g) => Ok(g.send(count)?),
            Engine::AfXdp(x) => x.send(count),
        }
    }

    /// Waits until every frame sent has left.
    fn finish(&mut self) -> Result<()> {
        match self {
            Engine::Live(_) => Ok(()),
            Engine::AfXdp(x) => x.finish(),
        }
    }
}

/// UMEM frames, and descriptors per ring: the tx ring has room for every
/// frame, so a batch is always taken whole, and no more frames are in
/// flight (written but not yet sent, which adds to the latency measured)
/// than this.
const UMEM_FRAMES: u32 = 512;
/// Frames written and queued at a time: what one sendto() sends in copy
/// mode (the kernel's default XDP_MAX_TX_SKB_BUDGET).
const TX_BATCH: usize = 32;
/// How long without a completion before a run gives up.
const STALL: Duration = Duration::from_secs(1);

/// The AF_XDP engine: one socket on queue 0 and its UMEM. Frames cycle
/// free → written → tx ring → completion ring → free; each is written
/// whole (headers, flow, lengths, checksums, stamp) just before it is
/// queued.
struct AfXdp {
    xsk: Xsk,
    socket: SocketId,
    dev: String,
    writer: FrameWriter,
    sizes: Vec<u16>,
    flows: u32,
    /// The next frame's sequence number (a u32 that wraps, as the live
    /// engine's).
    seq: u32,
    /// Frames the kernel finished sending.
    completed: u64,
    batch: Vec<TxDesc>,
}

impl AfXdp {
    fn new(dev: &str, writer: FrameWriter, sizes: &[u16], flows: u32) -> Result<Self> {
        let mut xsk = Xsk::new(UMEM_FRAMES, UMEM_FRAMES)?;
        let socket = xsk.add_socket(dev, 0, UMEM_FRAMES, false)?;
        Ok(AfXdp {
            xsk,
            socket,
            dev: dev.to_owned(),
            writer,
            sizes: sizes.to_vec(),
            flows,
            seq: 0,
            completed: 0,
            batch: Vec::with_capacity(TX_BATCH),
        })
    }

    fn send(&mut self, count: u32) -> Result<()> {
        let mut left = count as usize;
        let mut idle_since = None;
        while left > 0 {
            let reaped = self.reap();
            self.batch.clear();
            while self.batch.len() < TX_BATCH.min(left) {
                let Some(frame) = self.xsk.alloc() else {
                    break;
                };
                let size = self.sizes[self.seq as usize % self.sizes.len()];
                let flow = self.seq % self.flows;
                let len = self
                    .writer
                    .write(
                        self.xsk.frame_mut(frame),
                        size,
                        flow,
                        self.seq,
                        monotonic_ns(),
                    )
                    .ok_or_else(|| format!("a frame of {size} bytes does not fit"))?;
                let len = u16::try_from(len)?;
                self.batch.push(TxDesc {
                    frame,
                    offset: 0,
                    len,
                });
                self.seq = self.seq.wrapping_add(1);
            }
            // With an empty batch (every frame in flight) this only wakes
            // the kernel to send what the ring holds.
            let queued = self.xsk.transmit(self.socket, &self.batch);
            if queued < self.batch.len() {
                return Err("the AF_XDP tx ring refused frames it has room for".into());
            }
            left -= queued;
            self.stalled(reaped + queued, &mut idle_since)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        let mut idle_since = None;
        while self.xsk.free_count() < self.xsk.capacity() {
            self.xsk.transmit(self.socket, &[]);
            let reaped = self.reap();
            self.stalled(reaped, &mut idle_since)?;
        }
        Ok(())
    }

    /// Frees what the kernel sent; returns how many.
    fn reap(&mut self) -> usize {
        let n = self.xsk.reap(self.socket);
        self.completed += n as u64;
        n
    }

    /// An error once nothing has moved (`progress` frames) for [`STALL`].
    fn stalled(&self, progress: usize, idle_since: &mut Option<Instant>) -> Result<()> {
        if progress > 0 {
            *idle_since = None;
            return Ok(());
        }
        if idle_since.get_or_insert_with(Instant::now).elapsed() > STALL {
            let stats = self.xsk.stats(self.socket);
            return Err(format!(
                "{}: no AF_XDP transmit completion for {STALL:?} (interface down? \
                 {} failed wakeups, {} invalid descriptors)",
                self.dev, stats.tx_wakeup_errors, stats.tx_invalid_descs
            )
            .into());
        }
        Ok(())
    }
}

fn sink(a: &SinkArgs) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let sink = Sink::attach(&a.dev, a.flows, a.vxlan_port)?;
    eprintln!("xvs-pktgen: sink ready on {}", a.dev);
    let start = Instant::now();
    let deadline = start
        + Duration::try_from_secs_f64(a.seconds)
            .map_err(|_| format!("--seconds {}: a duration in seconds", a.seconds))?;
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
            // [bucket floor ns, packets] of every non-empty bucket.
            "latency_histogram": hist
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(|(b, &n)| (bucket_floor_ns(u32::try_from(b).unwrap_or(0)), n))
                .collect::<Vec<_>>(),
        })
    );
    Ok(())
}
