//! The batch pipeline: what the switch does to each packet.
//!
//! A batch (up to [`BATCH_SIZE`] packets from one in-port) walks a fixed
//! sequence of stages, as a vector walks VPP's node graph. Each packet
//! carries a small metadata record ([`Meta`], VPP's buffer opaque) whose
//! `next` field names the stage it waits for; each stage loops over the
//! whole batch and handles the packets waiting for it, then sets their next
//! step. There are no per-packet function-pointer chains and no
//! allocation: metadata lives in a fixed array, outputs go to per-port
//! transmit queues of fixed size.
//!
//! ```text
//!          (with flow rules: ethernet-input ─► rules ─┬─ output / vxlan-encap / drop
//!                                                      └─ normal ─► ethernet-input ...)
//!
//! ethernet-input ─┬─ bridged port ─────────────────────────────► l2-bridge ─► output
//!                 ├─ ARP ► arp-reply ──────────────────────────────────────► output
//!                 └─ IPv4 ► ip4-input ─┬─ VXLAN to our VTEP ► vxlan-decap ─► ip4-input (inner)
//!                                      └─ ip4-nat (conntrack, Services, masquerade)
//!                                          ├─ no endpoints ► tcp-reset / icmp-error ─► ip4-forward
//!                                          ├─ to the switch itself ► ip4-local (echo) ─► ip4-forward
//!                                          └─ ip4-forward ─┬─ port ──────────────────► output
//!                                                          ├─ overlay ► vxlan-encap ─► output
//!                                                          └─ TTL/no route/MTU ► icmp-error ─► ip4-forward
//! ```
//!
//! Three stages run twice in [`STAGE_ORDER`]: ethernet-input (a flow rule
//! that says `normal` hands the packet back to it), ip4-input (the inner
//! packet of a decapsulated frame re-enters it) and ip4-forward (replies and
//! ICMP errors the switch generates are routed like any other packet).
//!
//! The flow cache ([`crate::flow_cache`]) sits in ethernet-input: a frame
//! it may hold is looked up there (a whole batch at once), and a hit skips
//! the rule lookup and the route lookup: the packet goes straight to the
//! rule's actions, or to ip4-input and ip4-forward with its next hop
//! known. A miss takes the slow path, and the stage that decides (rules for
//! a rule's own actions, ip4-forward for a route) adds the flow. A packet never
//! loops: generated packets are marked `originated` and are never answered
//! with another ICMP error, and a decapsulated packet is never decapsulated
//! again.
//!
//! Every drop is a [`DropReason`] counted in the worker's [`Counters`];
//! nothing in here returns an error or panics on any input.
//!
//! Tracing (`xvsctl trace`, `make demo`) records each stage's decision per
//! packet. It is off on the fast path, where it costs one branch per
//! decision.

mod arp;
mod ethernet_input;
mod icmp_error;
mod ip4_forward;
mod ip4_input;
mod ip4_local;
mod ip4_nat;
mod l2_bridge;
mod rules;
mod tcp_reset;
mod vxlan_decap;
mod vxlan_encap;

use std::sync::Arc;

use xvs_flowtable::{Conntrack, FlowHit, FlowKey, FlowTable};

use crate::drop::{Counters, DropReason};
use crate::l2::{MacTable, MacTableConfig};
use crate::packet::{FramePool, Packet};
use crate::port::{Batch, PortId, BATCH_SIZE};
use crate::snapshot::{PortRole, Snapshot};
use xvs_control::state::MacAddr;

pub use ip4_nat::NatTables;

/// The stage a packet waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Next {
    EthernetInput,
    /// The user's flow rules.
    Rules,
    Arp,
    Ip4Input,
    VxlanDecap,
    /// Conntrack, Service load balancing, masquerade.
    Ip4Nat,
    Ip4Local,
    Ip4Forward,
    /// Refuse a TCP segment with a RST.
    TcpReset,
    IcmpError,
    VxlanEncap,
    L2Bridge,
    /// Ready to transmit on `Meta::out_port`.
    Output,
    /// To be counted under `Meta::drop` and freed.
    Drop,
    /// Already handed on (a flooded packet's descriptor went to a tx queue).
    Done,
}

impl Next {
    /// This stage's bit in [`Pipeline::pending`].
    #[inline]
    const fn bit(self) -> u16 {
        1 << self as u16
    }

    /// The stage's name in traces (VPP-style node names).
    pub fn name(self) -> &'static str {
        match self {
            Next::EthernetInput => "ethernet-input",
            Next::Rules => "rules",
            Next::Arp => "arp-reply",
            Next::Ip4Input => "ip4-input",
            Next::VxlanDecap => "vxlan-decap",
            Next::Ip4Nat => "ip4-nat",
            Next::Ip4Local => "ip4-local",
            Next::Ip4Forward => "ip4-forward",
            Next::TcpReset => "tcp-reset",
            Next::IcmpError => "icmp-error",
            Next::VxlanEncap => "vxlan-encap",
            Next::L2Bridge => "l2-bridge",
            Next::Output => "output",
            Next::Drop => "drop",
            Next::Done => "done",
        }
    }
}

/// A stage's decision for the trace: the next stage, or the drop reason.
fn decision(next: Result<Next, DropReason>) -> String {
    match next {
        Ok(next) => format!("-> {}", next.name()),
        Err(reason) => format!("drop: {}", reason.name()),
    }
}

/// The order in which stages run over a batch.
pub const STAGE_ORDER: [Next; 15] = [
    Next::EthernetInput,
    Next::Rules,
    Next::EthernetInput,
    Next::Arp,
    Next::Ip4Input,
    Next::VxlanDecap,
    Next::Ip4Input,
    Next::Ip4Nat,
    Next::Ip4Local,
    Next::Ip4Forward,
    Next::TcpReset,
    Next::IcmpError,
    Next::Ip4Forward,
    Next::VxlanEncap,
    Next::L2Bridge,
];

/// TTL of packets the switch originates (Linux's default).
pub(super) const ORIGINATED_TTL: u8 = 64;

/// ICMP error to send back in place of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpReply {
    pub ty: u8,
    pub code: u8,
    /// Next-hop MTU for "fragmentation needed" (RFC 1191), else 0.
    pub mtu: u16,
}

/// Per-packet state carried between stages.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub next: Next,
    /// Offset of the L3 header from the packet's head.
    pub l3: u16,
    /// VLAN id of a tagged frame (bridged ports only).
    pub vid: u16,
    pub out_port: PortId,
    /// Remote node for `VxlanEncap`.
    pub remote: u16,
    /// Generated by the switch (echo reply, ICMP error): not TTL-checked,
    /// never answered with an ICMP error.
    pub originated: bool,
    /// Came out of a VXLAN tunnel: never decapsulated again.
    pub decapped: bool,
    pub drop: DropReason,
    pub icmp: IcmpReply,
    /// While the packet's flow may still be cached (a cache miss so far):
    /// the index of its key in `State::keys`; else [`NO_KEY`].
    pub key: u8,
    /// The flow rule that decided the packet (its index in the snapshot's
    /// rule table), or [`NO_RULE`].
    pub rule: u16,
    /// Rules are done with the packet (it hit the cache, or a rule said
    /// `normal`): ethernet-input takes the default path.
    pub rules_done: bool,
    /// The next hop (index into `Snapshot::hops`) the flow cache gave, for
    /// ip4-forward, or [`NO_HOP`].
    pub hop: u16,
    /// The index in `State::keys` of the key whose cached flow the packet
    /// hit, or [`NO_KEY`]: ip4-nat removes that flow when the packet
    /// starts a new NATed connection (its hop may be another endpoint's).
    pub hit_key: u8,
}

pub const NO_KEY: u8 = u8::MAX;
pub const NO_RULE: u16 = u16::MAX;
pub const NO_HOP: u16 = u16::MAX;

impl Meta {
    const fn new() -> Self {
        Meta {
            next: Next::EthernetInput,
            l3: 0,
            vid: 0,
            out_port: 0,
            remote: 0,
            originated: false,
            decapped: false,
            drop: DropReason::UnknownPort,
            icmp: IcmpReply {
                ty: 0,
                code: 0,
                mtu: 0,
            },
            key: NO_KEY,
            rule: NO_RULE,
            rules_done: false,
            hop: NO_HOP,
            hit_key: NO_KEY,
        }
    }
}

/// One recorded decision of a traced packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// Index of the packet in its input batch.
    pub packet: usize,
    pub stage: &'static str,
    pub note: String,
}

/// Tunables of a pipeline.
#[derive(Debug, Clone, Copy)]
pub struct PipelineConfig {
    pub mac_table: MacTableConfig,
    /// ICMP errors per second (Linux `icmp_msgs_per_sec` default 1000).
    pub icmp_rate: u32,
    /// ICMP error burst (Linux `icmp_msgs_burst` default 50).
    pub icmp_burst: u32,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            mac_table: MacTableConfig::default(),
            icmp_rate: 1000,
            icmp_burst: 50,
        }
    }
}

/// A token bucket in whole tokens, refilled from the batch timestamp.
#[derive(Debug, Clone)]
struct TokenBucket {
    tokens: u32,
    burst: u32,
    ns_per_token: u64,
    last_ns: u64,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> Self {
        TokenBucket {
            tokens: burst,
            burst,
            ns_per_token: (1_000_000_000 / u64::from(rate.max(1))).max(1),
            last_ns: 0,
        }
    }

    fn take(&mut self, now_ns: u64) -> bool {
        let earned = now_ns.saturating_sub(self.last_ns) / self.ns_per_token;
        if earned > 0 {
            self.tokens = u32::try_from(u64::from(self.tokens) + earned)
                .unwrap_or(u32::MAX)
                .min(self.burst);
            self.last_ns += earned * self.ns_per_token;
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}

/// The packet pipeline of one worker: the snapshot it reads and the state
/// it changes.
pub struct Pipeline {
    /// Shared, immutable; stages borrow it for a whole batch without
    /// touching its reference count (a write other cores would see).
    snapshot: Arc<Snapshot>,
    state: State,
}

/// The in-port of the batch being processed, resolved once per batch.
#[derive(Debug, Clone, Copy)]
struct InPort {
    id: PortId,
    role: PortRole,
    /// The switch's MAC on this port.
    mac: MacAddr,
}

/// Everything a pipeline changes while it runs. Owned by one worker and
/// never shared, so no field needs an atomic. Hot fields (touched for every
/// batch) come first; the whole struct starts on a cache line.
#[repr(C, align(64))]
struct State {
    meta: [Meta; BATCH_SIZE],
    /// One bit per stage ([`Next::bit`]) that some packet of the batch may
    /// wait for: set by every assignment of `Meta::next` (all go through
    /// [`State::set_next`]), cleared when the stage runs. Stages nobody
    /// waits for are skipped without looking at the batch.
    pending: u16,
    in_port: InPort,
    now_ns: u64,
    counters: Counters,
    /// Transmit queues, indexed by port, flushed after every batch. Each
    /// input packet produces at most one packet per port, except under a
    /// rule that outputs to one port more than once: what a full queue
    /// cannot take is counted as `tx_queue_full`.
    tx: Vec<Batch>,
    mac_table: MacTable,
    icmp_limiter: TokenBucket,
    trace: Option<Vec<TraceEvent>>,
    /// The flow cache, if the pipeline has one (`xvsctl trace` runs
    /// without, to show the slow path).
    flows: Option<Arc<FlowTable>>,
    /// Keys of the batch's cacheable packets (`Meta::key` indexes them),
    /// and what the cache said for each.
    keys: [FlowKey; BATCH_SIZE],
    hits: [Option<FlowHit>; BATCH_SIZE],
    /// Connection tracking of routed traffic, if the pipeline has it.
    conntrack: Option<Arc<Conntrack>>,
    /// SNAT ports and Service affinity, if the pipeline has them.
    nat: Option<Arc<NatTables>>,
}

impl Pipeline {
    pub fn new(snapshot: Arc<Snapshot>, config: PipelineConfig) -> Self {
        let tx = (0..snapshot.ports.len()).map(|_| Batch::new()).collect();
        let state = State {
            meta: [Meta::new(); BATCH_SIZE],
            pending: 0,
            in_port: InPort {
                id: 0,
                role: PortRole::Uplink,
                mac: MacAddr::default(),
            },
            now_ns: 0,
            counters: Counters::default(),
            tx,
            mac_table: MacTable::new(config.mac_table),
            icmp_limiter: TokenBucket::new(config.icmp_rate, config.icmp_burst),
            trace: None,
            flows: None,
            keys: [FlowKey::from_words([0; xvs_flowtable::key::KEY_WORDS]); BATCH_SIZE],
            hits: [None; BATCH_SIZE],
            conntrack: None,
            nat: None,
        };
        Pipeline { snapshot, state }
    }

    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// This worker's counters.
    pub fn counters(&self) -> &Counters {
        &self.state.counters
    }

    /// Switches to a new snapshot between batches. MAC entries learned on a
    /// port id whose port is gone or changed are forgotten.
    ///
    /// # Panics
    /// If a transmit queue still holds packets: the worker flushes them
    /// after every batch, so this is a caller bug, not an input.
    pub fn set_snapshot(&mut self, snapshot: Arc<Snapshot>) {
        let st = &mut self.state;
        assert!(
            st.tx.iter().all(|q| q.is_empty()),
            "set_snapshot with unflushed queues"
        );
        for (idx, old) in self.snapshot.ports.iter().enumerate() {
            let same = snapshot
                .ports
                .get(idx)
                .is_some_and(|new| new.name == old.name && new.role == old.role);
            if let (false, Ok(id)) = (same, PortId::try_from(idx)) {
                st.mac_table.flush_port(id);
            }
        }
        st.tx.resize_with(snapshot.ports.len(), Batch::new);
        self.snapshot = snapshot;
    }

    /// Caches flows in `flows` (shared with the other workers) from now on.
    pub fn set_flow_cache(&mut self, flows: Arc<FlowTable>) {
        self.state.flows = Some(flows);
    }

    /// Tracks the connections of routed traffic in `conntrack` (shared
    /// with the other workers) from now on.
    pub fn set_conntrack(&mut self, conntrack: Arc<Conntrack>) {
        self.state.conntrack = Some(conntrack);
    }

    /// Takes SNAT ports from and remembers Service affinity in `nat`
    /// (shared with the other workers) from now on.
    pub fn set_nat(&mut self, nat: Arc<NatTables>) {
        self.state.nat = Some(nat);
    }

    /// Starts recording every stage decision (for `trace` and the demo).
    pub fn enable_trace(&mut self) {
        self.state.trace = Some(Vec::new());
    }

    /// Takes the decisions recorded since the last call.
    pub fn take_trace(&mut self) -> Vec<TraceEvent> {
        self.state
            .trace
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The transmit queue of each port that has packets, to be flushed by
    /// the worker.
    pub fn tx_queues(&mut self) -> impl Iterator<Item = (PortId, &mut Batch)> {
        self.state
            .tx
            .iter_mut()
            .enumerate()
            .filter(|(_, q)| !q.is_empty())
            .filter_map(|(i, q)| Some((PortId::try_from(i).ok()?, q)))
    }

    /// Runs every packet of `batch`, received on `in_port` at `now_ns`,
    /// through the pipeline. Afterwards `batch` is empty: each packet is in
    /// a transmit queue or was dropped (counted, frame returned to `pool`).
    pub fn process<P: FramePool>(
        &mut self,
        pool: &mut P,
        in_port: PortId,
        batch: &mut Batch,
        now_ns: u64,
    ) {
        let snap: &Snapshot = &self.snapshot;
        let st = &mut self.state;
        st.now_ns = now_ns;
        let n = batch.len();
        for m in &mut st.meta[..n] {
            *m = Meta::new();
        }
        st.pending = Next::EthernetInput.bit();
        match snap.ports.get(usize::from(in_port)) {
            Some(port) => {
                st.in_port = InPort {
                    id: in_port,
                    role: port.role,
                    mac: port.mac,
                }
            }
            None => {
                for i in 0..n {
                    st.drop_packet(i, DropReason::UnknownPort);
                }
            }
        }
        for stage in STAGE_ORDER {
            if st.pending & stage.bit() == 0 {
                continue;
            }
            st.pending &= !stage.bit();
            match stage {
                Next::EthernetInput => st.ethernet_input(snap, pool, batch),
                Next::Rules => st.rules(snap, pool, batch),
                Next::Arp => st.arp_reply(snap, pool, batch),
                Next::Ip4Input => st.ip4_input(snap, pool, batch),
                Next::VxlanDecap => st.vxlan_decap(snap, pool, batch),
                Next::Ip4Nat => st.ip4_nat(snap, pool, batch),
                Next::Ip4Local => st.ip4_local(snap, pool, batch),
                Next::Ip4Forward => st.ip4_forward(snap, pool, batch),
                Next::TcpReset => st.tcp_reset(pool, batch),
                Next::IcmpError => st.icmp_error(snap, pool, batch),
                Next::VxlanEncap => st.vxlan_encap(snap, pool, batch),
                Next::L2Bridge => st.l2_bridge(snap, pool, batch),
                // Not stages: handled by `output` below.
                Next::Output | Next::Drop | Next::Done => {}
            }
        }
        st.output(pool, batch);
    }
}

impl State {
    /// Last stage: queue what is ready, count and free the rest.
    fn output<P: FramePool>(&mut self, pool: &mut P, batch: &mut Batch) {
        for (i, pkt) in batch.drain(..).enumerate() {
            let meta = self.meta[i];
            match meta.next {
                Next::Output => self.enqueue(pool, meta.out_port, pkt),
                Next::Done => {}
                Next::Drop => {
                    self.counters.count_drop(meta.drop);
                    pool.free(pkt.frame);
                    self.trace(i, "drop", || meta.drop.name().to_string());
                }
                stuck => {
                    // A stage forgot to decide. Count it rather than leak.
                    debug_assert!(false, "packet {i} left waiting for {stuck:?}");
                    self.counters.count_drop(DropReason::Internal);
                    pool.free(pkt.frame);
                }
            }
        }
    }

    /// Puts `pkt` on `port`'s transmit queue, or drops it if that is full.
    fn enqueue<P: FramePool>(&mut self, pool: &mut P, port: PortId, pkt: Packet) {
        match self.tx.get_mut(usize::from(port)) {
            Some(q) if !q.is_full() => q.push(pkt),
            Some(_) => {
                self.counters.count_drop(DropReason::TxQueueFull);
                pool.free(pkt.frame);
            }
            None => {
                self.counters.count_drop(DropReason::UnknownPort);
                pool.free(pkt.frame);
            }
        }
    }

    /// Sends packet `i` to stage `next`. The only way `Meta::next` changes.
    #[inline]
    fn set_next(&mut self, i: usize, next: Next) {
        self.meta[i].next = next;
        self.pending |= next.bit();
    }

    /// Marks packet `i` to be dropped for `reason`.
    #[inline]
    fn drop_packet(&mut self, i: usize, reason: DropReason) {
        self.meta[i].drop = reason;
        self.set_next(i, Next::Drop);
    }

    /// Marks packet `i` ready to go out of `port`.
    #[inline]
    fn output_to(&mut self, i: usize, port: PortId) {
        self.meta[i].out_port = port;
        self.set_next(i, Next::Output);
    }

    /// Records a trace note for packet `i` when tracing is on. `note` is
    /// only evaluated then, so formatting costs nothing on the fast path.
    #[inline]
    fn trace(&mut self, i: usize, stage: &'static str, note: impl FnOnce() -> String) {
        if let Some(t) = &mut self.trace {
            t.push(TraceEvent {
                packet: i,
                stage,
                note: note(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TokenBucket;

    #[test]
    fn token_bucket_bursts_then_refills_at_rate() {
        let mut b = TokenBucket::new(1000, 3);
        assert!((0..3).all(|_| b.take(0)));
        assert!(!b.take(0));
        assert!(!b.take(999_999), "less than one token's worth of time");
        assert!(b.take(1_000_000));
        assert!(!b.take(1_000_000));
        // A long pause refills only up to the burst.
        assert_eq!((0..10).filter(|_| b.take(10_000_000_000)).count(), 3);
    }
}
