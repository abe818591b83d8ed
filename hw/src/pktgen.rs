//! The kernel side of xvs-pktgen (`bpf/pktgen.bpf.c`): a generator that
//! injects frames with BPF_PROG_RUN in XDP live-frames mode, a sink that
//! counts and timestamps what arrives, and a pass-through program for the
//! far end of a generator's veth.
//!
//! Live frames (`BPF_F_TEST_XDP_LIVE_FRAMES`, Linux 5.18) run the
//! generator program once per packet on a page-pool frame initialised from
//! the given bytes and transmit what it returns XDP_TX for out of the
//! interface named in the context, without a socket or an skb: on veth
//! that is about four times what xvs-pktgen's AF_XDP engine reaches,
//! which pays for an skb per packet in `sendto()` (3.8 against 0.96 Mpps
//! of 64-byte frames into an XDP sink, on a 2-core VM). The program
//! rewrites every header of every frame, because recycled frames keep
//! whatever the receiver wrote into them; the AF_XDP engine writes the
//! same bytes (`xvs_perf::frames::FrameWriter`, tested against
//! [`LiveGenerator::dry_run`]).

use std::os::fd::AsFd;

use libbpf_rs::{MapCore, MapFlags, Object, ObjectBuilder, ProgramInput, Xdp, XdpFlags};

use crate::steer::ifindex;

static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pktgen.bpf.o"));

/// Bytes of header template (the VXLAN headers, the longest, are 92).
pub const TEMPLATE_LEN: usize = 96;
/// Frame lengths the generator cycles through, at most.
pub const MAX_SIZES: usize = 16;
/// Flows the sink keeps apart.
pub const MAX_FLOWS: u32 = 131_072;
/// Latency histogram buckets (see [`bucket_floor_ns`]).
pub const LATENCY_BUCKETS: u32 = 512;
/// BPF_F_TEST_XDP_LIVE_FRAMES.
const LIVE_FRAMES: u32 = 1 << 1;
/// What the generator returns for a frame to send.
const XDP_TX: u32 = 3;
/// Below this many frames, [`LiveGenerator::send`] makes runs of one: about
/// where they cost as much as one run (some 14 µs a run of one, against
/// 15 ms plus under 1 µs a frame, on a 2-core VM).
const SINGLE_RUNS: u32 = 1024;

/// What the generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum FrameKind {
    Udp = 0,
    TcpSyn = 1,
    Vxlan = 2,
}

impl FrameKind {
    /// Header bytes the template holds.
    pub fn header_len(self) -> usize {
        match self {
            FrameKind::Udp => 42,
            FrameKind::TcpSyn => 54,
            FrameKind::Vxlan => 92,
        }
    }

    /// The shortest frame that carries headers and stamp (Ethernet's 60
    /// bytes at least).
    pub fn min_frame_len(self) -> usize {
        match self {
            FrameKind::TcpSyn => 60,
            FrameKind::Udp | FrameKind::Vxlan => (self.header_len() + 12).max(60),
        }
    }
}

/// Which field of the innermost headers tells flows apart past 16384: flow
/// `f` always adds `f % 16384` to the source port, and `f / 16384` to
/// this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum FlowVary {
    /// The source address (the simplest spread for RSS and flow tables).
    #[default]
    SrcIp = 0,
    /// The destination port: every frame keeps the source address, as a
    /// switch port with an anti-spoofing check requires.
    DstPort = 1,
}

#[derive(Debug, thiserror::Error)]
pub enum PktgenError {
    #[error("no interface {0}")]
    NoInterface(String),
    #[error("loading the pktgen XDP object: {0}")]
    Load(libbpf_rs::Error),
    #[error("attaching to {ifname}: {source}")]
    Attach {
        ifname: String,
        source: libbpf_rs::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("BPF map or program run: {0}")]
    Bpf(#[from] libbpf_rs::Error),
}

impl PktgenError {
    /// The kernel refused to run the program (`EPERM`): a sandboxed or
    /// locked-down kernel that does not allow XDP live frames at all.
    pub fn is_refused(&self) -> bool {
        matches!(self, PktgenError::Bpf(e) if e.kind() == libbpf_rs::ErrorKind::PermissionDenied)
    }
}

fn load() -> Result<Object, PktgenError> {
    ObjectBuilder::default()
        .open_memory(OBJECT)
        .and_then(|o| o.load())
        .map_err(PktgenError::Load)
}

fn map<'o>(object: &'o Object, name: &str) -> libbpf_rs::Map<'o> {
    object
        .maps()
        .find(|m| m.name() == name)
        .expect("the pktgen object has all its maps")
}

fn prog<'o>(object: &'o Object, name: &str) -> libbpf_rs::Program<'o> {
    object
        .progs()
        .find(|p| p.name() == name)
        .expect("the pktgen object has all its programs")
}

fn generator_program(object: &mut Object) -> libbpf_rs::ProgramMut<'_> {
    object
        .progs_mut()
        .find(|p| p.name() == "xvs_gen")
        .expect("the pktgen object has the generator")
}

const ZERO: [u8; 4] = [0; 4];

/// Checks what a generator is asked to send (any engine): a template of
/// `kind`'s headers, 1 to [`MAX_SIZES`] frame lengths (no FCS) a `kind`
/// frame fits in, 1 to [`MAX_FLOWS`] flows.
pub fn check_traffic(
    kind: FrameKind,
    template: &[u8],
    sizes: &[u16],
    flows: u32,
) -> Result<(), PktgenError> {
    if template.len() < kind.header_len() || template.len() > TEMPLATE_LEN {
        return Err(PktgenError::Invalid(format!(
            "a {kind:?} template has {} bytes, not {}",
            template.len(),
            kind.header_len()
        )));
    }
    if sizes.is_empty() || sizes.len() > MAX_SIZES {
        return Err(PktgenError::Invalid(format!(
            "1 to {MAX_SIZES} frame sizes, not {}",
            sizes.len()
        )));
    }
    if let Some(s) = sizes
        .iter()
        .find(|&&s| usize::from(s) < kind.min_frame_len() || s > 1518)
    {
        return Err(PktgenError::Invalid(format!(
            "frame size {s}: a {kind:?} frame takes {} to 1518 bytes",
            kind.min_frame_len()
        )));
    }
    if flows == 0 || flows > MAX_FLOWS {
        return Err(PktgenError::Invalid(format!(
            "flows {flows}: 1 to {MAX_FLOWS}"
        )));
    }
    Ok(())
}

/// Now on CLOCK_MONOTONIC, in ns: the clock `bpf_ktime_get_ns` reads, so a
/// send time stamped in userspace compares with the sink's receive time.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for clock_gettime to write; it
    // cannot fail for CLOCK_MONOTONIC on Linux (and would leave 0 if it
    // did).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs * 1_000_000_000 + nanos
}

/// A generator bound to one interface.
pub struct LiveGenerator {
    object: Object,
    ifindex: i32,
    /// What the kernel initialises its frames from (zeroes of the longest
    /// size; the program shortens them).
    frame: Vec<u8>,
    /// Where the program is attached to stay in the dispatcher.
    anchor: Option<i32>,
}

impl Drop for LiveGenerator {
    fn drop(&mut self) {
        if let Some(index) = self.anchor {
            let _ = Xdp::new(generator_program(&mut self.object).as_fd())
                .detach(index, XdpFlags::DRV_MODE);
        }
    }
}

impl LiveGenerator {
    /// `template` holds `kind.header_len()` bytes of headers (lengths and
    /// checksums are rewritten per frame); frames take the lengths of
    /// `sizes` in turn; flow `f` adds `f % 16384` to the innermost source
    /// port and `f / 16384` to the field `vary` names.
    pub fn new(
        ifname: &str,
        kind: FrameKind,
        template: &[u8],
        sizes: &[u16],
        flows: u32,
        vary: FlowVary,
    ) -> Result<Self, PktgenError> {
        let ifindex = ifindex(ifname).ok_or_else(|| PktgenError::NoInterface(ifname.into()))?;
        check_traffic(kind, template, sizes, flows)?;
        // struct gen_config: kind, flows, nsizes, vary, sizes[16], template[96].
        let mut config = Vec::with_capacity(16 + 2 * MAX_SIZES + TEMPLATE_LEN);
        config.extend_from_slice(&(kind as u32).to_ne_bytes());
        config.extend_from_slice(&flows.to_ne_bytes());
        config.extend_from_slice(&u32::try_from(sizes.len()).unwrap_or(0).to_ne_bytes());
        config.extend_from_slice(&(vary as u32).to_ne_bytes());
        for i in 0..MAX_SIZES {
            config.extend_from_slice(&sizes.get(i).copied().unwrap_or(0).to_ne_bytes());
        }
        let mut t = [0u8; TEMPLATE_LEN];
        t[..template.len()].copy_from_slice(template);
        config.extend_from_slice(&t);
        let object = load()?;
        map(&object, "gen_config").update(&ZERO, &config, MapFlags::ANY)?;
        let max_len = usize::from(sizes.iter().copied().max().unwrap_or(60));
        Ok(LiveGenerator {
            object,
            ifindex,
            frame: vec![0; max_len],
            anchor: None,
        })
    }

    /// Keeps the generator program in the kernel's XDP dispatcher by
    /// attaching it (native mode) to `anchor`, an interface that carries
    /// no traffic (an idle veth pair of the caller's): a BPF_PROG_RUN of
    /// many frames then no longer adds it to the dispatcher and takes it
    /// out again, which costs two RCU grace periods (some 15 ms on a small
    /// VM) per run. With it, runs of any length are cheap and a paced rate
    /// goes out smoothly. Detached when the generator is dropped.
    pub fn anchor(&mut self, anchor: &str) -> Result<(), PktgenError> {
        let index = ifindex(anchor).ok_or_else(|| PktgenError::NoInterface(anchor.into()))?;
        Xdp::new(generator_program(&mut self.object).as_fd())
            .attach(index, XdpFlags::DRV_MODE)
            .map_err(|source| PktgenError::Attach {
                ifname: anchor.into(),
                source,
            })?;
        self.anchor = Some(index);
        Ok(())
    }

    /// Sends `count` frames on the calling thread's CPU; returns once they
    /// are handed to the device.
    ///
    /// Without an [anchor](Self::anchor), a run of many frames costs some
    /// 15 ms on top of the frames and a run of one does not, so a few
    /// frames go as runs of one (a low paced rate, sent smoothly), many as
    /// one run (a higher paced rate then comes in bursts). Anchored, every
    /// call is one run.
    pub fn send(&mut self, count: u32) -> Result<(), PktgenError> {
        if count < SINGLE_RUNS && self.anchor.is_none() {
            (0..count).try_for_each(|_| self.run(1))
        } else {
            self.run(count)
        }
    }

    /// One BPF_PROG_RUN of `repeat` (at least 1) frames.
    fn run(&mut self, repeat: u32) -> Result<(), PktgenError> {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex; the kernel wants data_end to be
        // the length of the data.
        let mut ctx = [0u8; 24];
        let len = u32::try_from(self.frame.len()).unwrap_or(0);
        ctx[4..8].copy_from_slice(&len.to_ne_bytes());
        ctx[12..16].copy_from_slice(&self.ifindex.to_ne_bytes());
        let input = ProgramInput {
            data_in: Some(&self.frame),
            context_in: Some(&mut ctx),
            flags: LIVE_FRAMES,
            repeat,
            ..Default::default()
        };
        generator_program(&mut self.object).test_run(input)?;
        Ok(())
    }

    /// The frame the program writes as packet `seq`, without sending it (a
    /// BPF_PROG_RUN without live frames, on zeroes); leaves the sequence
    /// counter at `seq + 1`. A witness for other writers of these frames.
    pub fn dry_run(&mut self, seq: u32) -> Result<Vec<u8>, PktgenError> {
        map(&self.object, "gen_seq").update(&ZERO, &u64::from(seq).to_ne_bytes(), MapFlags::ANY)?;
        let mut out = vec![0u8; self.frame.len()];
        let input = ProgramInput {
            data_in: Some(&self.frame),
            data_out: Some(&mut out),
            repeat: 1,
            ..Default::default()
        };
        let output = generator_program(&mut self.object).test_run(input)?;
        if output.return_value != XDP_TX {
            return Err(PktgenError::Invalid(format!(
                "the generator returned {} for packet {seq}, not XDP_TX",
                output.return_value
            )));
        }
        Ok(output.data.map(|d| d.to_vec()).unwrap_or_default())
    }

    /// Frames sent so far (the sequence counter).
    pub fn sent(&self) -> u64 {
        read_u64(&self.object, "gen_seq", 0)
    }
}

fn read_u64(object: &Object, name: &str, key: u32) -> u64 {
    map(object, name)
        .lookup(&key.to_ne_bytes(), MapFlags::ANY)
        .ok()
        .flatten()
        .and_then(|v| v.get(..8).and_then(|b| b.try_into().ok()))
        .map_or(0, u64::from_ne_bytes)
}

/// An XDP program attached natively to an interface, detached on drop.
struct Attached {
    object: Object,
    ifindex: i32,
    program: &'static str,
}

impl Attached {
    fn new(ifname: &str, object: Object, program: &'static str) -> Result<Self, PktgenError> {
        let ifindex = ifindex(ifname).ok_or_else(|| PktgenError::NoInterface(ifname.into()))?;
        let p = prog(&object, program);
        Xdp::new(p.as_fd())
            .attach(ifindex, XdpFlags::DRV_MODE | XdpFlags::UPDATE_IF_NOEXIST)
            .map_err(|source| PktgenError::Attach {
                ifname: ifname.into(),
                source,
            })?;
        Ok(Attached {
            object,
            ifindex,
            program,
        })
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let p = prog(&self.object, self.program);
        let _ = Xdp::new(p.as_fd()).detach(self.ifindex, XdpFlags::DRV_MODE);
    }
}

/// Lets frames through to the kernel: the far end of a generator's veth
/// needs a program for XDP_TX into the veth to deliver.
pub struct PassProgram(#[allow(dead_code)] Attached);

impl PassProgram {
    pub fn attach(ifname: &str) -> Result<Self, PktgenError> {
        Ok(PassProgram(Attached::new(ifname, load()?, "xvs_pass")?))
    }
}

/// One flow's counters at the sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub packets: u64,
    pub bytes: u64,
    pub reordered: u32,
}

/// Everything the sink counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkTotals {
    pub packets: u64,
    pub bytes: u64,
    /// Frames without a stamp (not the generator's).
    pub unstamped: u64,
}

/// The sink on one interface.
pub struct Sink {
    attached: Attached,
    flows: u32,
}

impl Sink {
    /// Attaches the sink; `vxlan_port` (if any) is where it looks inside
    /// VXLAN for the stamp.
    pub fn attach(ifname: &str, flows: u32, vxlan_port: Option<u16>) -> Result<Self, PktgenError> {
        if flows == 0 || flows > MAX_FLOWS {
            return Err(PktgenError::Invalid(format!(
                "flows {flows}: 1 to {MAX_FLOWS}"
            )));
        }
        let object = load()?;
        // struct sink_config: flows, vxlan_port (network order), pad.
        let mut config = Vec::with_capacity(8);
        config.extend_from_slice(&flows.to_ne_bytes());
        config.extend_from_slice(&vxlan_port.unwrap_or(0).to_be_bytes());
        config.extend_from_slice(&[0, 0]);
        map(&object, "sink_config").update(&ZERO, &config, MapFlags::ANY)?;
        Ok(Sink {
            attached: Attached::new(ifname, object, "xvs_sink")?,
            flows,
        })
    }

    fn object(&self) -> &Object {
        &self.attached.object
    }

    pub fn totals(&self) -> Result<SinkTotals, PktgenError> {
        let per_cpu = map(self.object(), "sink_totals")
            .lookup_percpu(&ZERO, MapFlags::ANY)?
            .unwrap_or_default();
        let mut t = SinkTotals::default();
        for v in per_cpu {
            let word = |i: usize| {
                v.get(i * 8..i * 8 + 8)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u64::from_ne_bytes)
            };
            t.packets += word(0);
            t.bytes += word(1);
            t.unstamped += word(2);
        }
        Ok(t)
    }

    /// Per-flow counters, flow 0 first.
    pub fn flows(&self) -> Result<Vec<FlowStats>, PktgenError> {
        let m = map(self.object(), "sink_flows");
        (0..self.flows)
            .map(|f| {
                let v = m
                    .lookup(&f.to_ne_bytes(), MapFlags::ANY)?
                    .unwrap_or_default();
                let u64_at = |i: usize| {
                    v.get(i..i + 8)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, u64::from_ne_bytes)
                };
                let reordered = v
                    .get(20..24)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u32::from_ne_bytes);
                Ok(FlowStats {
                    packets: u64_at(0),
                    bytes: u64_at(8),
                    reordered,
                })
            })
            .collect()
    }

    /// Packets per latency bucket (summed over CPUs); bucket `b` counts
    /// latencies from [`bucket_floor_ns`]`(b)` to that of `b + 1`.
    pub fn latency(&self) -> Result<Vec<u64>, PktgenError> {
        let m = map(self.object(), "sink_latency");
        (0..LATENCY_BUCKETS)
            .map(|b| {
                let per_cpu = m
                    .lookup_percpu(&b.to_ne_bytes(), MapFlags::ANY)?
                    .unwrap_or_default();
                Ok(per_cpu
                    .iter()
                    .filter_map(|v| v.get(..8).and_then(|b| b.try_into().ok()))
                    .map(u64::from_ne_bytes)
                    .sum())
            })
            .collect()
    }
}

/// The lowest latency (ns) bucket `b` holds: buckets 0..16 are 0..16 ns
/// exactly, then each power of two is split in eight steps.
pub fn bucket_floor_ns(b: u32) -> u64 {
    if b < 16 {
        return u64::from(b);
    }
    let msb = (b + 16) / 8;
    let step = u64::from((b + 16) % 8);
    (8 + step) << (msb - 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sink's bucket function, as the BPF program computes it.
    fn bucket(v: u64) -> u32 {
        if v < 8 {
            return u32::try_from(v).unwrap();
        }
        let msb = 63 - v.leading_zeros();
        msb * 8 + u32::try_from((v >> (msb - 3)) & 7).unwrap() - 16
    }

    #[test]
    fn bucket_floors_invert_the_bucket_function() {
        for v in (0..100_000u64).chain([1 << 20, 123_456_789, u64::MAX >> 1, u64::MAX]) {
            let b = bucket(v);
            assert!(b < LATENCY_BUCKETS, "{v}");
            assert!(bucket_floor_ns(b) <= v, "{v}: floor {}", bucket_floor_ns(b));
            if b + 1 < LATENCY_BUCKETS && v < u64::MAX >> 4 {
                assert!(v < bucket_floor_ns(b + 1), "{v}");
            }
        }
    }
}
