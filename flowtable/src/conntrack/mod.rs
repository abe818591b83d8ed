//! Connection tracking: one entry per connection, reachable from both of
//! its directions, with Linux's TCP state machine and timeouts, and the NAT
//! binding that both directions translate by.
//!
//! # What it tracks
//!
//! A connection is its ORIGINAL tuple (the first packet as it arrived) and
//! its REPLY tuple (what answers look like when they arrive: the original
//! reversed, then NATed — for a Service, `backend:8080 -> client`; for
//! masquerade, `server -> node:port`). From the two the [`NatBinding`] is
//! derived ([`nat`]), so it is immutable and both directions agree on it.
//! Per connection: the protocol state (TCP: the states of Linux's
//! `nf_conntrack_proto_tcp.c`, see [`tcp`]; UDP, ICMP, others: replied or
//! not), the flags SEEN_REPLY and ASSURED, the deadline, the creation and
//! last-seen times.
//!
//! # Layout
//!
//! - A **slab** of `capacity` connection entries of 128 bytes, allocated
//!   once, with a lock-free free stack. The first line holds what the fast
//!   path reads and writes: a sequence word, the protocol, and the **state
//!   word** — TCP state, flags, last packet's flag class and direction, 4
//!   bits of the entry's generation and the deadline (ms) packed in one
//!   `AtomicU64`, so a packet's whole effect (state, flags, timeout) is one
//!   compare-and-swap and two cores handling the two directions at once
//!   never lose an update. The keys and creation time follow; they never
//!   change while the entry is live.
//! - One [`FlowTable`] indexes both tuples of every connection: the
//!   original key maps to `FlowValue { action: index, generation: seq | 0 }`
//!   and the reply key to `seq | 1`, where `seq` is the entry's (even)
//!   sequence word when it was created. So a hit names the entry, the
//!   direction, and the incarnation of the entry it was made for: a lookup
//!   checks the entry's current `seq` against it and never has to compare
//!   keys — two cache lines of table and one of entry per lookup.
//!
//! # Lifecycle and concurrency contract
//!
//! All methods take `&self`; any number of worker cores and the control
//! plane call them at once.
//!
//! - **`lookup`, `update`, `view`, `for_each`** take no lock. `lookup`
//!   reads the table (lock-free, see [`crate::table`]) and checks the entry
//!   is live, not dying, and still the incarnation the key was inserted for.
//!   `update` applies a packet to the state word by CAS, retrying on
//!   contention; it refreshes the deadline only when it moves by a second
//!   or more (and `last_seen` likewise), so a busy flow does not write its
//!   line on every packet (Linux's `nf_ct_refresh` has the same intent).
//! - **`create` and removal** (`remove`, `expire`, eviction, the reaping
//!   of an expired or reopened connection by `update`) take two of a
//!   fixed set of striped spin locks, the stripes of the connection's two
//!   keys, in index order — as Linux's `nf_conntrack_double_lock` does for
//!   confirm and delete. They are needed because the table's insert is not
//!   insert-if-absent (two racing inserts of one key both succeed) and its
//!   remove removes every copy of a key: under the stripe locks, checking
//!   that neither key is tracked and inserting both is atomic with respect
//!   to every other create or removal touching those keys. Locks are held
//!   for two lookups and two inserts or removes, never across an
//!   allocation, an eviction or a callback, and never by the packet fast
//!   path of established flows.
//! - **Creation** writes the entry (keys, times; state word 0, i.e. not
//!   live) under its sequence word, then, under the stripe locks, checks
//!   both keys, inserts the reply key, then the original key, and only then
//!   stores the state word with LIVE set. So a reader never sees a
//!   half-published connection: while only one key (or both) is in the
//!   table, the entry is not live and a lookup of either key misses. A
//!   reply arriving in that window misses; if its core then tries to create
//!   a connection from it, that create waits on the stripe lock and returns
//!   [`CtError::Exists`] with the now-live connection's reference.
//! - **Two cores creating the same connection**: the second to take the
//!   stripe locks finds a tracked key and returns `Exists(r)`, `r` naming
//!   the winner's connection (and the direction the clashing key has in
//!   it). The loser inserted nothing, and gives its entry back to the free
//!   stack: nothing leaks and no key is half-inserted.
//! - **Removal** first claims the entry by CAS of its state word to DYING
//!   (exactly one of several removers wins; an `update` that races loses
//!   its CAS and reports [`Verdict::Stale`]), then, under the stripe locks,
//!   removes each key only if it still points at this incarnation, calls
//!   the `on_remove` hook, then bumps the sequence word and returns the
//!   entry to the free stack. A reader holding a stale [`CtRef`] sees the
//!   sequence word (or the generation bits of the state word) differ.
//! - **Reclamation**: entries are type-stable (never freed while the
//!   tracker lives), so stale references read valid memory and are rejected
//!   by the sequence check, as in [`crate::table`]. No epochs.
//! - **Defensive sweep**: the table never misses a key while it moves one
//!   between buckets (moves go from a key's primary bucket to its
//!   secondary, copy first), so a removal always finds both keys. Should a
//!   key ever be left pointing at a retired incarnation anyway, it is
//!   harmless (lookups reject it, a create replaces it) and the next
//!   `expire` sweeps it: it scans the table whenever a removal missed a key
//!   or the table holds more keys than twice the live connections.
//!
//! # Memory bound
//!
//! Fixed at `new`: `capacity` entries of 128 bytes and 4 bytes of free
//! stack each; a table for `2 × capacity` keys plus a 1/16 margin (room
//! for stale keys awaiting a sweep, so the table itself never has to
//! evict), at 132 bytes per table entry plus 16–32 bytes of index (its
//! buckets are a power of two); at most 1024 cache-line locks. About
//! 440–470 bytes per connection in all for large tables, a few fixed
//! kilobytes more for small ones ([`Conntrack::bytes_per_connection`]).
//! Nothing is allocated afterwards. When the slab is full, `create` evicts
//! (below) or fails with [`CtError::Full`].
//!
//! # Eviction
//!
//! Among a sample of entries under a clock hand (32 per round, up to 4
//! rounds; the whole slab when it is that small): first connections already
//! expired, then unreplied ones, then replied but not assured ones and TCP
//! connections that are closing (Linux's `tcp_can_early_drop`); within a
//! class, the one idle longest. Assured connections that are not closing
//! are never evicted, as in Linux's `early_drop`: a flood of new flows
//! cannot push out live connections (which, NATed, would break for good);
//! the new flow gets `Full` and its sender retries.
//!
//! # Timeouts
//!
//! Linux's defaults, all configurable in [`Timeouts`]; time is a `u64` of
//! nanoseconds from the caller's monotonic clock. A connection whose
//! deadline has passed is reaped by `expire`, or by the next `update` that
//! touches it (which then answers `Stale`, so the packet is looked up again
//! and starts a new connection, as Linux treats an expired entry as gone).
//! Deadlines are stored in milliseconds, rounded up, so a connection never
//! expires early except by the refresh slack above (under a second). Two
//! Linux rules are kept: a TCP connection ESTABLISHED without ever seeing a
//! reply (a loose pickup) gets `tcp_unacknowledged` (5 min), not 5 days;
//! UDP gets the stream timeout and ASSURED only if it still has traffic 2 s
//! after it started and has seen a reply, so a DNS query and its answer
//! hold an entry 30 s, not 120 s.

pub mod nat;
pub mod tcp;

use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::key::{FlowKey, KEY_WORDS};
use crate::table::{huge_slice, FlowHit, FlowState, FlowTable, FlowValue, FreeStack};

pub use nat::{Endpoint, NatBinding, Rewrite};
pub use tcp::{flags as tcp_flags, TcpState};

use tcp::{FlagClass, Step};

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_UDPLITE: u8 = 136;

const NS_PER_MS: u64 = 1_000_000;
const NS_PER_SEC: u64 = 1_000_000_000;
/// A deadline moving forward by less than this is not written back.
const REFRESH_SLACK_MS: u64 = 1000;
/// `last_seen` is written back when it is at least this old.
const LAST_SEEN_SLACK_NS: u64 = NS_PER_SEC;
/// A replied UDP flow still active this long after creation is a stream:
/// assured, with the longer timeout (Linux: `stream_ts = jiffies + 2 s`).
const UDP_STREAM_AFTER_NS: u64 = 2 * NS_PER_SEC;
/// Entries an eviction round looks at.
const EVICT_SAMPLE: usize = 32;
const EVICT_ROUNDS: usize = 4;
/// Upper bound on the number of stripe locks.
const MAX_STRIPES: usize = 1024;

/// Which direction of its connection a packet travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Dir {
    /// As the first packet did.
    Original = 0,
    /// The answers.
    Reply = 1,
}

/// What conntrack needs of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    /// IP protocol number; must be the connection's.
    pub proto: u8,
    /// Byte 13 of the TCP header (see [`tcp_flags`]); ignored for other
    /// protocols.
    pub tcp_flags: u8,
    /// Length of the IP packet. Not used yet: kept for window tracking
    /// and per-connection accounting (the flow table counts bytes today).
    pub len: u32,
}

impl PacketInfo {
    pub const fn new(proto: u8, tcp_flags: u8, len: u32) -> Self {
        PacketInfo {
            proto,
            tcp_flags,
            len,
        }
    }

    pub const fn tcp(tcp_flags: u8, len: u32) -> Self {
        PacketInfo::new(IPPROTO_TCP, tcp_flags, len)
    }

    pub const fn udp(len: u32) -> Self {
        PacketInfo::new(IPPROTO_UDP, 0, len)
    }

    /// An ICMP (IPv4) query or answer. Conntrack trusts the caller to
    /// create connections only for queries (echo, timestamp, ...) whose
    /// keys carry the identifier in both ports; ICMP errors belong to the
    /// connection they quote, not to one of their own.
    pub const fn icmp(len: u32) -> Self {
        PacketInfo::new(IPPROTO_ICMP, 0, len)
    }
}

/// Per-state timeouts. `Default` is Linux's defaults
/// (`nf_conntrack_tcp_timeout_*`, `nf_conntrack_udp_timeout{,_stream}`,
/// `nf_conntrack_icmp_timeout`, `nf_conntrack_generic_timeout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn_sent: Duration,
    pub tcp_syn_recv: Duration,
    pub tcp_established: Duration,
    pub tcp_fin_wait: Duration,
    pub tcp_close_wait: Duration,
    pub tcp_last_ack: Duration,
    pub tcp_time_wait: Duration,
    pub tcp_close: Duration,
    pub tcp_syn_sent2: Duration,
    /// Linux's `nf_conntrack_tcp_timeout_unacknowledged`: the cap on the
    /// timeout of an ESTABLISHED connection that has never seen a reply
    /// (picked up mid-stream), instead of 5 days.
    pub tcp_unacknowledged: Duration,
    /// UDP, and UDP replied but not (yet) a stream.
    pub udp: Duration,
    /// UDP seen both ways and still active 2 s after it started.
    pub udp_stream: Duration,
    pub icmp: Duration,
    /// Any other protocol.
    pub generic: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let s = Duration::from_secs;
        Timeouts {
            tcp_syn_sent: s(120),
            tcp_syn_recv: s(60),
            tcp_established: s(5 * 24 * 3600),
            tcp_fin_wait: s(120),
            tcp_close_wait: s(60),
            tcp_last_ack: s(30),
            tcp_time_wait: s(120),
            tcp_close: s(10),
            tcp_syn_sent2: s(120),
            tcp_unacknowledged: s(300),
            udp: s(30),
            udp_stream: s(120),
            icmp: s(30),
            generic: s(600),
        }
    }
}

/// `Timeouts` in nanoseconds, indexed for the fast path.
#[derive(Debug, Clone)]
struct ResolvedTimeouts {
    /// By `TcpState as usize`.
    tcp: [u64; 10],
    tcp_unacknowledged: u64,
    udp: u64,
    udp_stream: u64,
    icmp: u64,
    generic: u64,
}

impl ResolvedTimeouts {
    fn new(t: &Timeouts) -> Self {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        ResolvedTimeouts {
            tcp: [
                ns(t.tcp_syn_sent), // NONE: never armed
                ns(t.tcp_syn_sent),
                ns(t.tcp_syn_recv),
                ns(t.tcp_established),
                ns(t.tcp_fin_wait),
                ns(t.tcp_close_wait),
                ns(t.tcp_last_ack),
                ns(t.tcp_time_wait),
                ns(t.tcp_close),
                ns(t.tcp_syn_sent2),
            ],
            tcp_unacknowledged: ns(t.tcp_unacknowledged),
            udp: ns(t.udp),
            udp_stream: ns(t.udp_stream),
            icmp: ns(t.icmp),
            generic: ns(t.generic),
        }
    }
}

/// A connection's protocol state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtState {
    Tcp(TcpState),
    /// Not TCP, seen in the original direction only.
    Unreplied,
    /// Not TCP, seen both ways.
    Replied,
}

/// What an update did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The packet belongs to the connection, which is now in `state`.
    Accept {
        state: CtState,
        new_state_changed: bool,
    },
    /// Not valid in the connection's state (e.g. a SYN/ACK from the side
    /// that sent the SYN): the caller counts and drops it; the connection
    /// is untouched.
    Invalid,
    /// The connection is gone: removed, evicted, expired (reaped just now)
    /// or its entry reused since the lookup. Look the packet up again.
    Stale,
    /// A SYN reopens a connection that had closed (TIME_WAIT or CLOSE): the
    /// old entry has been removed; create a new connection for this packet
    /// (Linux's `-NF_REPEAT`).
    Reopen,
}

/// Why a connection could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CtError {
    /// No entry free and none evictable (all assured): count a drop.
    #[error("conntrack table full and nothing evictable")]
    Full,
    /// The packet cannot start a connection (TCP without SYN in strict
    /// mode, SYN/ACK, FIN, RST, invalid flags), or the tuples are
    /// inconsistent (same tuple both ways, protocols differ).
    #[error("packet cannot start a connection")]
    Invalid,
    /// A tuple is already tracked; the reference names the connection that
    /// holds it (the original tuple is checked first) and in which
    /// direction. If that is this packet's connection (another core created
    /// it first), use it; if the reply tuple clashed with another
    /// connection, pick another NAT port.
    #[error("tuple already tracked")]
    Exists(CtRef),
}

/// A reference to a connection as of a lookup: its entry, the direction of
/// the key that found it, and the entry's sequence word, so that a
/// reference outliving its connection is detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CtRef {
    pub index: u32,
    pub dir: Dir,
    seq: u32,
}

/// A consistent copy of a connection, for dumps and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtView {
    pub index: u32,
    pub orig: FlowKey,
    pub reply: FlowKey,
    pub proto: u8,
    pub state: CtState,
    pub seen_reply: bool,
    pub assured: bool,
    /// Times in the caller's clock (ns).
    pub created: u64,
    /// Last accepted packet, to within a second.
    pub last_seen: u64,
    /// When the connection times out.
    pub expires: u64,
}

impl CtView {
    /// The connection's NAT, derived from its tuples.
    pub fn nat(&self) -> NatBinding {
        NatBinding::from_keys(&self.orig, &self.reply)
    }

    /// Nanoseconds until the connection times out (0 if it has).
    pub fn timeout_remaining(&self, now: u64) -> u64 {
        self.expires.saturating_sub(now)
    }

    /// A `conntrack -L`-style line, for `xvsctl dump-conntrack`.
    pub fn display(&self, now: u64) -> CtLine<'_> {
        CtLine { view: self, now }
    }
}

/// See [`CtView::display`].
pub struct CtLine<'a> {
    view: &'a CtView,
    now: u64,
}

impl std::fmt::Display for CtLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.view;
        let name = match v.proto {
            IPPROTO_TCP => "tcp",
            IPPROTO_UDP => "udp",
            IPPROTO_ICMP => "icmp",
            IPPROTO_ICMPV6 => "icmpv6",
            IPPROTO_UDPLITE => "udplite",
            _ => "unknown",
        };
        write!(
            f,
            "{name:<8} {} {} ",
            v.proto,
            v.timeout_remaining(self.now) / NS_PER_SEC
        )?;
        if let CtState::Tcp(s) = v.state {
            write!(f, "{s} ")?;
        }
        let icmp = matches!(v.proto, IPPROTO_ICMP | IPPROTO_ICMPV6);
        let tuple = |f: &mut std::fmt::Formatter<'_>, k: &FlowKey| {
            let t = k.tuple();
            if icmp {
                write!(f, "src={} dst={} id={}", t.src, t.dst, t.src_port)
            } else {
                write!(
                    f,
                    "src={} dst={} sport={} dport={}",
                    t.src, t.dst, t.src_port, t.dst_port
                )
            }
        };
        tuple(f, &v.orig)?;
        if !v.seen_reply {
            f.write_str(" [UNREPLIED]")?;
        }
        f.write_str(" ")?;
        tuple(f, &v.reply)?;
        if v.assured {
            f.write_str(" [ASSURED]")?;
        }
        let t = v.orig.tuple();
        if t.zone != 0 {
            write!(f, " zone={}", t.zone)?;
        }
        if t.vni != 0 {
            write!(f, " vni={}", t.vni)?;
        }
        Ok(())
    }
}

/// Event counters (rare, slow-path events; shared atomics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CtStats {
    /// Connections live now.
    pub live: usize,
    pub capacity: usize,
    /// Connections evicted to make room.
    pub evicted: u64,
    /// Creates refused with `Full`.
    pub full: u64,
    /// Creates refused with `Exists`.
    pub clashes: u64,
    /// Keys the flow table evicted on its own (both buckets full): each
    /// leaves a connection reachable from one direction only until it
    /// expires. Expected to stay 0 at the table's load.
    pub table_evictions: u64,
    /// Stale keys removed by `expire`'s sweep.
    pub stale_keys_swept: u64,
}

#[derive(Default)]
struct Counters {
    evicted: AtomicU64,
    full: AtomicU64,
    clashes: AtomicU64,
    table_evictions: AtomicU64,
    stale_keys_swept: AtomicU64,
}

/// The state word of an entry:
///
/// ```text
/// bits  0-3   TCP state (TcpState; 0 for other protocols)
/// bits  4-6   flag class of the last packet (Linux's last_index)
/// bit   7     direction of the last packet (Linux's last_dir)
/// bits  8-14  LIVE DYING SEEN_REPLY ASSURED CLOSE_INIT SIMULTANEOUS_OPEN
///             CHALLENGE_ACK
/// bits 16-19  generation: bits 2-5 of the entry's sequence word (which
///             moves by 4 per reuse: retire, then write)
/// bits 20-63  deadline, in ms of the caller's clock, rounded up
/// ```
///
/// 0 is a free (or not yet published) entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Word(u64);

impl Word {
    const STATE_MASK: u64 = 0xf;
    const INDEX_SHIFT: u32 = 4;
    const INDEX_MASK: u64 = 0x7 << Self::INDEX_SHIFT;
    const LAST_DIR_REPLY: u64 = 1 << 7;
    const LIVE: u64 = 1 << 8;
    const DYING: u64 = 1 << 9;
    const SEEN_REPLY: u64 = 1 << 10;
    const ASSURED: u64 = 1 << 11;
    const CLOSE_INIT: u64 = 1 << 12;
    const SIMULTANEOUS_OPEN: u64 = 1 << 13;
    const CHALLENGE_ACK: u64 = 1 << 14;
    const GEN_SHIFT: u32 = 16;
    const GEN_MASK: u64 = 0xf << Self::GEN_SHIFT;
    const DEADLINE_SHIFT: u32 = 20;
    const DEADLINE_MAX: u64 = (1 << (64 - Self::DEADLINE_SHIFT)) - 1;
    const BELOW_DEADLINE: u64 = (1 << Self::DEADLINE_SHIFT) - 1;

    /// A connection before its first packet: TCP state NONE, last packet
    /// of no class (Linux's `tcp_new` sets `last_index = TCP_NONE_SET`).
    fn fresh() -> Word {
        Word(0).with_last(FlagClass::None, Dir::Original)
    }

    #[allow(clippy::cast_possible_truncation)] // masked to 4 bits
    fn tcp_state(self) -> TcpState {
        TcpState::from_bits((self.0 & Self::STATE_MASK) as u8)
    }

    fn with_tcp_state(self, s: TcpState) -> Word {
        Word(self.0 & !Self::STATE_MASK | s as u64)
    }

    #[allow(clippy::cast_possible_truncation)] // masked to 3 bits
    fn last_index(self) -> FlagClass {
        FlagClass::from_bits(((self.0 & Self::INDEX_MASK) >> Self::INDEX_SHIFT) as u8)
    }

    fn last_dir(self) -> Dir {
        if self.0 & Self::LAST_DIR_REPLY != 0 {
            Dir::Reply
        } else {
            Dir::Original
        }
    }

    fn with_last(self, index: FlagClass, dir: Dir) -> Word {
        let mut w = self.0 & !(Self::INDEX_MASK | Self::LAST_DIR_REPLY);
        w |= (index as u64) << Self::INDEX_SHIFT;
        if dir == Dir::Reply {
            w |= Self::LAST_DIR_REPLY;
        }
        Word(w)
    }

    fn has(self, flag: u64) -> bool {
        self.0 & flag != 0
    }

    fn with(self, flag: u64) -> Word {
        Word(self.0 | flag)
    }

    fn without(self, flag: u64) -> Word {
        Word(self.0 & !flag)
    }

    fn generation(seq: u32) -> u64 {
        (u64::from(seq) >> 2 << Self::GEN_SHIFT) & Self::GEN_MASK
    }

    fn with_generation(self, seq: u32) -> Word {
        Word(self.0 & !Self::GEN_MASK | Self::generation(seq))
    }

    /// Live, not being removed, and the incarnation `seq` names.
    fn is_current(self, seq: u32) -> bool {
        self.has(Self::LIVE)
            && !self.has(Self::DYING)
            && self.0 & Self::GEN_MASK == Self::generation(seq)
    }

    fn deadline_ms(self) -> u64 {
        self.0 >> Self::DEADLINE_SHIFT
    }

    fn deadline_ns(self) -> u64 {
        self.deadline_ms().saturating_mul(NS_PER_MS)
    }

    /// The word with its deadline set to `now + timeout`, rounded up to
    /// the millisecond (a connection never expires early).
    fn with_deadline(self, now: u64, timeout: u64) -> Word {
        let ms = now
            .saturating_add(timeout)
            .div_ceil(NS_PER_MS)
            .min(Self::DEADLINE_MAX);
        Word(self.0 & Self::BELOW_DEADLINE | ms << Self::DEADLINE_SHIFT)
    }

    fn expired(self, now: u64) -> bool {
        (now / NS_PER_MS).min(Self::DEADLINE_MAX) >= self.deadline_ms()
    }

    /// Whether `self` differs from `old` only by a deadline a little later:
    /// not worth a write.
    fn is_small_refresh_of(self, old: Word) -> bool {
        (self.0 ^ old.0) & Self::BELOW_DEADLINE == 0
            && self.deadline_ms() >= old.deadline_ms()
            && self.deadline_ms() - old.deadline_ms() < REFRESH_SLACK_MS
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Udp,
    Icmp,
    Other,
}

impl Kind {
    fn of(proto: u8) -> Kind {
        match proto {
            IPPROTO_TCP => Kind::Tcp,
            IPPROTO_UDP | IPPROTO_UDPLITE => Kind::Udp,
            IPPROTO_ICMP | IPPROTO_ICMPV6 => Kind::Icmp,
            _ => Kind::Other,
        }
    }

    fn state(self, w: Word) -> CtState {
        match self {
            Kind::Tcp => CtState::Tcp(w.tcp_state()),
            _ if w.has(Word::SEEN_REPLY) => CtState::Replied,
            _ => CtState::Unreplied,
        }
    }
}

/// One connection. The first line is what the fast path touches.
#[repr(C, align(64))]
struct Conn {
    /// Even when stable, odd while the entry is being written; bumped by 2
    /// when the entry is retired.
    seq: AtomicU32,
    proto: AtomicU32,
    word: AtomicU64,
    last_seen: AtomicU64,
    created: AtomicU64,
    /// Original and reply keys.
    keys: [[AtomicU64; KEY_WORDS]; 2],
}

const _: () = assert!(std::mem::size_of::<Conn>() == 128);
const _: () = assert!(std::mem::offset_of!(Conn, keys) < 64);

impl Conn {
    fn new() -> Self {
        Conn {
            seq: AtomicU32::new(0),
            proto: AtomicU32::new(0),
            word: AtomicU64::new(0),
            last_seen: AtomicU64::new(0),
            created: AtomicU64::new(0),
            keys: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }

    /// Writes a new connection into an entry this thread owns (off the free
    /// stack or evicted); its state word stays 0 (not live). Returns the new
    /// sequence word.
    fn write(&self, orig: &FlowKey, reply: &FlowKey, proto: u8, now: u64) -> u32 {
        let odd = self.seq.load(Ordering::Relaxed).wrapping_add(1) | 1;
        self.seq.store(odd, Ordering::Relaxed);
        fence(Ordering::Release);
        for (slots, key) in self.keys.iter().zip([orig, reply]) {
            for (slot, w) in slots.iter().zip(key.words()) {
                slot.store(*w, Ordering::Relaxed);
            }
        }
        self.proto.store(u32::from(proto), Ordering::Relaxed);
        self.created.store(now, Ordering::Relaxed);
        self.last_seen.store(now, Ordering::Relaxed);
        let even = odd.wrapping_add(1);
        self.seq.store(even, Ordering::Release);
        even
    }

    fn key(&self, dir: Dir) -> FlowKey {
        FlowKey::from_words(std::array::from_fn(|i| {
            self.keys[dir as usize][i].load(Ordering::Relaxed)
        }))
    }

    /// Marks the entry free: its word 0, its sequence word moved on.
    fn retire(&self, seq: u32) {
        self.word.store(0, Ordering::Release);
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// Refreshes `last_seen` if it is a second old or more.
    fn touch(&self, now: u64) {
        if now.saturating_sub(self.last_seen.load(Ordering::Relaxed)) >= LAST_SEEN_SLACK_NS {
            self.last_seen.store(now, Ordering::Relaxed);
        }
    }
}

/// A spin lock on its own cache line.
#[repr(align(64))]
struct StripeLock(AtomicBool);

impl StripeLock {
    fn lock(&self) {
        let mut spins = 0u32;
        while self
            .0
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.0.load(Ordering::Relaxed) {
                spins += 1;
                if spins < 256 {
                    std::hint::spin_loop();
                } else {
                    // The holder may have been preempted: let it run.
                    std::thread::yield_now();
                }
            }
        }
    }

    fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Holds one or two stripe locks; releases them when dropped.
struct StripeGuard<'a> {
    first: &'a StripeLock,
    second: Option<&'a StripeLock>,
}

impl Drop for StripeGuard<'_> {
    fn drop(&mut self) {
        if let Some(l) = self.second {
            l.unlock();
        }
        self.first.unlock();
    }
}

type RemoveHook = Box<dyn Fn(&CtView) + Send + Sync>;

/// The connection tracker. See the module documentation for the contract.
pub struct Conntrack {
    conns: Box<[Conn]>,
    free: FreeStack,
    table: FlowTable,
    locks: Box<[StripeLock]>,
    lock_seed: u64,
    t: ResolvedTimeouts,
    timeouts: Timeouts,
    tcp_loose: bool,
    /// Connections live now.
    live: AtomicUsize,
    evict_hand: AtomicUsize,
    /// A removal could not find one of its keys: sweep the table.
    suspect: AtomicBool,
    counters: Counters,
    on_remove: Option<RemoveHook>,
}

/// The table value of a connection's key.
fn key_value(index: u32, seq: u32, dir: Dir) -> FlowValue {
    FlowValue::new(index, seq | dir as u32)
}

/// (index, seq, dir) of a table value.
fn unpack(v: FlowValue) -> (u32, u32, Dir) {
    let g = v.generation();
    let dir = if g & 1 == 1 {
        Dir::Reply
    } else {
        Dir::Original
    };
    (v.action(), g & !1, dir)
}

impl Conntrack {
    /// A tracker for `capacity` connections (at least 1, at most 2^30),
    /// with all its memory allocated now. TCP pickup of connections already
    /// established is on (Linux's `nf_conntrack_tcp_loose = 1`).
    pub fn new(capacity: usize, timeouts: Timeouts) -> Self {
        let capacity = capacity.clamp(1, 1 << 30);
        let stripes = capacity.next_power_of_two().clamp(16, MAX_STRIPES);
        Conntrack {
            conns: huge_slice(capacity, |_| Conn::new()),
            free: FreeStack::full(u32::try_from(capacity).unwrap_or(u32::MAX)),
            table: FlowTable::with_capacity(2 * capacity + capacity / 16 + 64),
            locks: (0..stripes)
                .map(|_| StripeLock(AtomicBool::new(false)))
                .collect(),
            lock_seed: random_seed(),
            t: ResolvedTimeouts::new(&timeouts),
            timeouts,
            tcp_loose: true,
            live: AtomicUsize::new(0),
            evict_hand: AtomicUsize::new(0),
            suspect: AtomicBool::new(false),
            counters: Counters::default(),
            on_remove: None,
        }
    }

    /// Whether a TCP connection may start with a packet other than a SYN
    /// (an ACK: a connection that was established before we saw it, e.g.
    /// across a restart). Linux's `nf_conntrack_tcp_loose`; on by default.
    pub fn with_tcp_loose(mut self, loose: bool) -> Self {
        self.tcp_loose = loose;
        self
    }

    /// Calls `hook` with every connection removed, whichever way (`remove`,
    /// `expire`, eviction, reaping by `update`), after its keys have left
    /// the table and before its entry is reused: the place to release its
    /// SNAT port ([`crate::snat_ports`]). Runs on the removing thread, with
    /// no lock held; it must not block.
    pub fn with_on_remove(mut self, hook: impl Fn(&CtView) + Send + Sync + 'static) -> Self {
        self.on_remove = Some(Box::new(hook));
        self
    }

    pub fn capacity(&self) -> usize {
        self.conns.len()
    }

    /// Connections live now.
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of memory per connection of capacity, everything included.
    pub fn bytes_per_connection(&self) -> f64 {
        let own = std::mem::size_of_val(&*self.conns)
            + std::mem::size_of_val(&*self.locks)
            + 4 * self.conns.len();
        let table = self.table.bytes_per_entry() * self.table.capacity() as f64;
        (own as f64 + table) / self.capacity() as f64
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    pub fn tcp_loose(&self) -> bool {
        self.tcp_loose
    }

    pub fn stats(&self) -> CtStats {
        let c = &self.counters;
        CtStats {
            live: self.len(),
            capacity: self.capacity(),
            evicted: c.evicted.load(Ordering::Relaxed),
            full: c.full.load(Ordering::Relaxed),
            clashes: c.clashes.load(Ordering::Relaxed),
            table_evictions: c.table_evictions.load(Ordering::Relaxed),
            stale_keys_swept: c.stale_keys_swept.load(Ordering::Relaxed),
        }
    }

    /// The connection `key` belongs to, and in which direction. Never
    /// blocks. A connection being created or removed is not found.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<CtRef> {
        self.table.lookup(key).and_then(|hit| self.resolve(&hit))
    }

    #[inline]
    fn resolve(&self, hit: &FlowHit) -> Option<CtRef> {
        let (index, seq, dir) = unpack(hit.value);
        let c = self.conns.get(index as usize)?;
        if c.seq.load(Ordering::Acquire) != seq {
            return None;
        }
        let w = Word(c.word.load(Ordering::Acquire));
        w.is_current(seq).then_some(CtRef { index, dir, seq })
    }

    /// Starts tracking a connection whose first packet `first` came as
    /// `orig` and whose answers will come as `reply` (see the module
    /// documentation for NAT). The first packet's effect on the state is
    /// applied here: do not `update` with it again.
    pub fn create(
        &self,
        orig: FlowKey,
        reply: FlowKey,
        first: &PacketInfo,
        now: u64,
    ) -> Result<CtRef, CtError> {
        let proto = orig.tuple().proto;
        if orig == reply || reply.tuple().proto != proto || first.proto != proto {
            return Err(CtError::Invalid);
        }
        let start = self.first_word(proto, first, now)?;
        // Cheap early answer for the common clash, before taking an entry;
        // the authoritative check is under the locks below.
        if let Some(r) = self.lookup(&orig).or_else(|| self.lookup(&reply)) {
            self.counters.clashes.fetch_add(1, Ordering::Relaxed);
            return Err(CtError::Exists(r));
        }
        let Some(index) = self.allocate(now) else {
            self.counters.full.fetch_add(1, Ordering::Relaxed);
            return Err(CtError::Full);
        };
        let c = &self.conns[index as usize];
        let seq = c.write(&orig, &reply, proto, now);

        let guard = self.lock_pair(&orig, &reply);
        if let Some(r) = self.lookup(&orig).or_else(|| self.lookup(&reply)) {
            drop(guard);
            c.retire(seq);
            self.free.push(index);
            self.counters.clashes.fetch_add(1, Ordering::Relaxed);
            return Err(CtError::Exists(r));
        }
        // Reply key first, then original; neither is visible to lookups
        // before the state word below says LIVE.
        let inserted = self.insert_key(&reply, index, seq, Dir::Reply, now)
            && self.insert_key(&orig, index, seq, Dir::Original, now);
        if !inserted {
            // The table had nothing to evict for us (cannot happen at its
            // size, but never leave half a connection behind).
            for (key, dir) in [(reply, Dir::Reply), (orig, Dir::Original)] {
                if self.table.lookup(&key).map(|h| h.value) == Some(key_value(index, seq, dir)) {
                    self.table.remove(&key);
                }
            }
            drop(guard);
            c.retire(seq);
            self.free.push(index);
            self.counters.full.fetch_add(1, Ordering::Relaxed);
            return Err(CtError::Full);
        }
        self.live.fetch_add(1, Ordering::Relaxed);
        c.word.store(
            start.with(Word::LIVE).with_generation(seq).0,
            Ordering::Release,
        );
        drop(guard);
        Ok(CtRef {
            index,
            dir: Dir::Original,
            seq,
        })
    }

    /// The state word after a connection's first packet.
    fn first_word(&self, proto: u8, first: &PacketInfo, now: u64) -> Result<Word, CtError> {
        let w = Word::fresh();
        match Kind::of(proto) {
            Kind::Tcp => match tcp::step(w, Dir::Original, first.tcp_flags, now, &self.t) {
                Step::Accept(w) if w.tcp_state() == TcpState::SynSent || self.tcp_loose => Ok(w),
                _ => Err(CtError::Invalid),
            },
            Kind::Udp => Ok(w.with_deadline(now, self.t.udp)),
            Kind::Icmp => Ok(w.with_deadline(now, self.t.icmp)),
            Kind::Other => Ok(w.with_deadline(now, self.t.generic)),
        }
    }

    fn insert_key(&self, key: &FlowKey, index: u32, seq: u32, dir: Dir, now: u64) -> bool {
        match self
            .table
            .insert(key, key_value(index, seq, dir), FlowState::Established, now)
        {
            Some(ins) => {
                if ins.evicted {
                    self.counters
                        .table_evictions
                        .fetch_add(1, Ordering::Relaxed);
                }
                true
            }
            None => false,
        }
    }

    /// Applies packet `pkt`, travelling in direction `r.dir`, to its
    /// connection.
    pub fn update(&self, r: &CtRef, pkt: &PacketInfo, now: u64) -> Verdict {
        let Some(c) = self.conns.get(r.index as usize) else {
            return Verdict::Stale;
        };
        if c.seq.load(Ordering::Acquire) != r.seq {
            return Verdict::Stale;
        }
        if c.proto.load(Ordering::Relaxed) != u32::from(pkt.proto) {
            return Verdict::Invalid;
        }
        let kind = Kind::of(pkt.proto);
        loop {
            let w = Word(c.word.load(Ordering::Acquire));
            if !w.is_current(r.seq) {
                return Verdict::Stale;
            }
            if w.expired(now) {
                // Gone already, only not reaped yet: reap it, and let the
                // packet start afresh.
                self.reap(r.index, w, w);
                continue;
            }
            let step = match kind {
                Kind::Tcp => tcp::step(w, r.dir, pkt.tcp_flags, now, &self.t),
                Kind::Udp => Step::Accept(self.udp_step(w, r.dir, c, now)),
                Kind::Icmp => Step::Accept(simple_step(w, r.dir, now, self.t.icmp)),
                Kind::Other => Step::Accept(simple_step(w, r.dir, now, self.t.generic)),
            };
            match step {
                Step::Invalid => return Verdict::Invalid,
                Step::Reopen => {
                    if self.reap(r.index, w, w) {
                        return Verdict::Reopen;
                    }
                }
                Step::Kill(last) => {
                    if self.reap(r.index, w, last) {
                        return Verdict::Accept {
                            state: kind.state(last),
                            new_state_changed: kind.state(last) != kind.state(w),
                        };
                    }
                }
                Step::Accept(next) => {
                    let write = next != w && !next.is_small_refresh_of(w);
                    if !write
                        || c.word
                            .compare_exchange(w.0, next.0, Ordering::AcqRel, Ordering::Acquire)
                            .is_ok()
                    {
                        c.touch(now);
                        return Verdict::Accept {
                            state: kind.state(next),
                            new_state_changed: kind.state(next) != kind.state(w),
                        };
                    }
                }
            }
        }
    }

    /// UDP, as Linux's `nf_conntrack_udp_packet`: 30 s until a reply has
    /// been seen and the flow is still going 2 s after it started; then it
    /// is a stream, assured, with 120 s. A DNS query and its answer stay at
    /// 30 s and unassured, so lookups do not fill the table for 2 minutes.
    fn udp_step(&self, w: Word, dir: Dir, c: &Conn, now: u64) -> Word {
        let mut out = w;
        let mut timeout = self.t.udp;
        if w.has(Word::SEEN_REPLY)
            && now.saturating_sub(c.created.load(Ordering::Relaxed)) >= UDP_STREAM_AFTER_NS
        {
            timeout = self.t.udp_stream;
            out = out.with(Word::ASSURED);
        }
        if dir == Dir::Reply {
            out = out.with(Word::SEEN_REPLY);
        }
        out.with_deadline(now, timeout)
    }

    /// Removes a connection. Returns whether this call removed it (false if
    /// it was already gone or being removed).
    pub fn remove(&self, r: &CtRef) -> bool {
        let Some(c) = self.conns.get(r.index as usize) else {
            return false;
        };
        loop {
            if c.seq.load(Ordering::Acquire) != r.seq {
                return false;
            }
            let w = Word(c.word.load(Ordering::Acquire));
            if !w.is_current(r.seq) {
                return false;
            }
            if self.reap(r.index, w, w) {
                return true;
            }
        }
    }

    /// Removes every connection whose deadline is `now` or earlier; returns
    /// how many. Also sweeps the table of stale keys when there is reason
    /// to (see the module documentation). Runs alongside everything else.
    pub fn expire(&self, now: u64) -> usize {
        let mut removed = 0;
        for (i, c) in self.conns.iter().enumerate() {
            let Ok(index) = u32::try_from(i) else { break };
            loop {
                let w = Word(c.word.load(Ordering::Acquire));
                if !w.has(Word::LIVE) || w.has(Word::DYING) || !w.expired(now) {
                    break;
                }
                if self.reap(index, w, w) {
                    removed += 1;
                    break;
                }
            }
        }
        self.sweep_if_needed();
        removed
    }

    /// Calls `f` with a consistent copy of every live connection. Runs
    /// alongside everything else; connections created or removed meanwhile
    /// may or may not be seen.
    pub fn for_each(&self, mut f: impl FnMut(&CtView)) {
        for i in 0..self.conns.len() {
            if let Some((_, v)) = self.read(i) {
                f(&v);
            }
        }
    }

    /// A copy of the connection `r` names, if it is still that connection.
    pub fn view(&self, r: &CtRef) -> Option<CtView> {
        self.read(r.index as usize)
            .and_then(|(seq, v)| (seq == r.seq).then_some(v))
    }

    /// The key of the other direction of the connection `r` names, if it
    /// is still that connection: reversed, it is the tuple a packet of
    /// `r.dir` leaves with after NAT (see [`nat`]). The fast path's NAT
    /// reads this instead of a whole [`CtView`]: keys never change while a
    /// connection lives, so only the sequence word is checked around the
    /// read.
    pub fn counterpart(&self, r: &CtRef) -> Option<FlowKey> {
        let c = self.conns.get(r.index as usize)?;
        if c.seq.load(Ordering::Acquire) != r.seq {
            return None;
        }
        let other = match r.dir {
            Dir::Original => Dir::Reply,
            Dir::Reply => Dir::Original,
        };
        let key = c.key(other);
        fence(Ordering::Acquire);
        let w = Word(c.word.load(Ordering::Relaxed));
        (c.seq.load(Ordering::Relaxed) == r.seq && w.is_current(r.seq)).then_some(key)
    }

    /// The NAT binding of the connection `r` names.
    pub fn nat(&self, r: &CtRef) -> Option<NatBinding> {
        self.view(r).map(|v| v.nat())
    }

    /// Reads entry `i` under its sequence word, if live.
    fn read(&self, i: usize) -> Option<(u32, CtView)> {
        let c = self.conns.get(i)?;
        let s1 = c.seq.load(Ordering::Acquire);
        if s1 & 1 == 1 {
            return None;
        }
        let w = Word(c.word.load(Ordering::Relaxed));
        let orig = c.key(Dir::Original);
        let reply = c.key(Dir::Reply);
        let proto = c.proto.load(Ordering::Relaxed);
        let created = c.created.load(Ordering::Relaxed);
        let last_seen = c.last_seen.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if c.seq.load(Ordering::Relaxed) != s1 || !w.is_current(s1) {
            return None;
        }
        let index = u32::try_from(i).ok()?;
        Some((
            s1,
            make_view(index, w, orig, reply, proto, created, last_seen),
        ))
    }

    /// Claims connection `index` (state word `expected`) for removal,
    /// recording `last` as its final state, then removes it and frees its
    /// entry. False if the word changed meanwhile (someone updated or
    /// claimed it).
    fn reap(&self, index: u32, expected: Word, last: Word) -> bool {
        let dying = last.with(Word::DYING);
        if !self.claim(index, expected, dying) {
            return false;
        }
        self.unlink(index, dying);
        self.free.push(index);
        true
    }

    fn claim(&self, index: u32, expected: Word, dying: Word) -> bool {
        self.conns[index as usize]
            .word
            .compare_exchange(expected.0, dying.0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes a claimed (DYING) connection's keys out of the table, tells the
    /// hook, and retires the entry. The caller owns the entry afterwards.
    fn unlink(&self, index: u32, dying: Word) {
        let c = &self.conns[index as usize];
        let seq = c.seq.load(Ordering::Acquire);
        let keys = [c.key(Dir::Original), c.key(Dir::Reply)];
        {
            let _guard = self.lock_pair(&keys[0], &keys[1]);
            for (key, dir) in keys.iter().zip([Dir::Original, Dir::Reply]) {
                match self.table.lookup(key) {
                    Some(hit) if hit.value == key_value(index, seq, dir) => {
                        self.table.remove(key);
                    }
                    // Missed while the table moved it, or taken over by a
                    // newer connection: let the sweep check.
                    _ => self.suspect.store(true, Ordering::Relaxed),
                }
            }
        }
        if let Some(hook) = &self.on_remove {
            hook(&make_view(
                index,
                dying,
                keys[0],
                keys[1],
                c.proto.load(Ordering::Relaxed),
                c.created.load(Ordering::Relaxed),
                c.last_seen.load(Ordering::Relaxed),
            ));
        }
        c.retire(seq);
        self.live.fetch_sub(1, Ordering::Relaxed);
    }

    /// An entry for a new connection: a free one, or an evicted one.
    fn allocate(&self, now: u64) -> Option<u32> {
        self.free.pop().or_else(|| self.evict(now))
    }

    /// Evicts a connection (see the module documentation) and returns its
    /// entry, now owned by the caller.
    fn evict(&self, now: u64) -> Option<u32> {
        let cap = self.conns.len();
        let sample = EVICT_SAMPLE.min(cap);
        for _ in 0..EVICT_ROUNDS {
            let start = self.evict_hand.fetch_add(sample, Ordering::Relaxed);
            let mut best: Option<((u8, u64), u32, Word)> = None;
            for k in 0..sample {
                let i = (start.wrapping_add(k)) % cap;
                let Ok(index) = u32::try_from(i) else {
                    continue;
                };
                let c = &self.conns[i];
                let w = Word(c.word.load(Ordering::Relaxed));
                let Some(class) = evict_class(w, now) else {
                    continue;
                };
                let rank = (class, c.last_seen.load(Ordering::Relaxed));
                if best.is_none_or(|(r, _, _)| rank < r) {
                    best = Some((rank, index, w));
                }
            }
            if let Some((_, index, w)) = best {
                let dying = w.with(Word::DYING);
                if self.claim(index, w, dying) {
                    self.unlink(index, dying);
                    self.counters.evicted.fetch_add(1, Ordering::Relaxed);
                    return Some(index);
                }
            }
            if let Some(index) = self.free.pop() {
                return Some(index);
            }
        }
        None
    }

    #[allow(clippy::cast_possible_truncation)] // masked to the stripe count
    fn stripe(&self, key: &FlowKey) -> usize {
        key.hash(self.lock_seed) as usize & (self.locks.len() - 1)
    }

    /// Locks the stripes of two keys, lower index first.
    fn lock_pair(&self, a: &FlowKey, b: &FlowKey) -> StripeGuard<'_> {
        let (x, y) = (self.stripe(a), self.stripe(b));
        let (lo, hi) = (x.min(y), x.max(y));
        self.locks[lo].lock();
        let second = (hi != lo).then(|| {
            self.locks[hi].lock();
            &self.locks[hi]
        });
        StripeGuard {
            first: &self.locks[lo],
            second,
        }
    }

    /// Removes table keys that name no current incarnation of their entry,
    /// when a removal missed a key or the table holds more keys than the
    /// live connections account for.
    fn sweep_if_needed(&self) {
        let suspect = self.suspect.swap(false, Ordering::AcqRel);
        if !suspect && self.table.len() <= 2 * self.len() {
            return;
        }
        let swept = self.table.retain(|v| {
            let (index, seq, _) = unpack(v.value);
            self.conns
                .get(index as usize)
                .is_some_and(|c| c.seq.load(Ordering::Acquire) == seq)
        });
        self.counters
            .stale_keys_swept
            .fetch_add(swept as u64, Ordering::Relaxed);
    }
}

/// ICMP and other protocols: one timeout, and whether a reply was seen.
fn simple_step(w: Word, dir: Dir, now: u64, timeout: u64) -> Word {
    let out = if dir == Dir::Reply {
        w.with(Word::SEEN_REPLY)
    } else {
        w
    };
    out.with_deadline(now, timeout)
}

/// Eviction class of a connection (lower goes first), or `None` if it may
/// not be evicted.
fn evict_class(w: Word, now: u64) -> Option<u8> {
    if !w.has(Word::LIVE) || w.has(Word::DYING) {
        None
    } else if w.expired(now) {
        Some(0)
    } else if !w.has(Word::SEEN_REPLY) {
        Some(1)
    } else if !w.has(Word::ASSURED) || w.tcp_state().is_closing() {
        Some(2)
    } else {
        None
    }
}

#[allow(clippy::cast_possible_truncation)] // protocol numbers are bytes
fn make_view(
    index: u32,
    w: Word,
    orig: FlowKey,
    reply: FlowKey,
    proto: u32,
    created: u64,
    last_seen: u64,
) -> CtView {
    let proto = proto as u8;
    CtView {
        index,
        orig,
        reply,
        proto,
        state: Kind::of(proto).state(w),
        seen_reply: w.has(Word::SEEN_REPLY),
        assured: w.has(Word::ASSURED),
        created,
        last_seen,
        expires: w.deadline_ns(),
    }
}

/// A random seed, from the standard library's per-process random keys.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0xc0_22_7a_c4);
    h.finish()
}

#[cfg(test)]
mod tests;
