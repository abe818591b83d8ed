//! The TCP state machine of conntrack: Linux's `tcp_conntracks` table and
//! the special cases `nf_conntrack_tcp_packet` wraps around it.
//!
//! Source: Linux `net/netfilter/nf_conntrack_proto_tcp.c` (mainline as of
//! v5.x–v6.x: the version whose state list ends in `SYN_SENT2` and whose
//! REPLY/SYN row reads `sTW -> sSS` "server may have switched role"). The
//! table below is that file's `tcp_conntracks[2][6][TCP_CONNTRACK_MAX]`,
//! row for row, with its comments shortened; `FlagClass::of` is its
//! `get_conntrack_index`, `valid_flags` its `tcp_valid_flags`, and `step`
//! follows `nf_conntrack_tcp_packet` case by case. Older kernels (2.6.2x)
//! had a different table without simultaneous open; do not mix them.
//!
//! # What is left out, and what that changes
//!
//! Linux also tracks sequence numbers and windows (`tcp_in_window`). We do
//! not: `PacketInfo` carries flags, not sequence numbers. So:
//! - every packet is taken as in-window (Linux's `nf_conntrack_tcp_be_liberal`
//!   goes halfway there);
//! - an RST closes the connection whatever its sequence number (Linux keeps
//!   ESTABLISHED for an RST that does not match exactly, to allow a
//!   challenge ACK);
//! - the re-sync on a SYN/ACK answering an ignored SYN (case b of
//!   `TCP_CONNTRACK_IGNORE`) does not check that the SYN/ACK acknowledges
//!   that SYN's sequence number;
//! - the shorter timeouts Linux arms for retransmissions and for
//!   unacknowledged data (`TCP_CONNTRACK_RETRANS`, `TCP_CONNTRACK_UNACK`,
//!   5 min) are not armed for those reasons; the unacknowledged timeout is
//!   used where Linux also uses it without window data: an ESTABLISHED
//!   connection that has never seen a reply (a mid-stream pickup) gets
//!   `tcp_unacknowledged` instead of 5 days.
//!
//! The state, the flags and the last-packet bookkeeping all live in one
//! 64-bit word (see `Word` in the parent module), so `step` is a pure
//! function from (word, direction, TCP flags, time) to a new word, and the
//! caller publishes the result with one compare-and-swap.

use super::{Dir, ResolvedTimeouts, Word};

/// TCP header flag bits, as they appear in byte 13 of the header.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

use flags::{ACK, CWR, ECE, FIN, PSH, RST, SYN, URG};

/// A TCP connection's state, numbered as Linux's `enum tcp_conntrack` (so
/// dumps and `conntrack -L` agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum TcpState {
    None = 0,
    SynSent = 1,
    SynRecv = 2,
    Established = 3,
    FinWait = 4,
    CloseWait = 5,
    LastAck = 6,
    TimeWait = 7,
    Close = 8,
    /// A SYN seen from the reply direction while in SYN_SENT: simultaneous
    /// open (Linux reuses the obsolete LISTEN number for it).
    SynSent2 = 9,
}

impl TcpState {
    const ALL: [TcpState; 10] = [
        TcpState::None,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::SynSent2,
    ];

    /// The state numbered `n`; numbers we never store read as `Close`.
    pub(super) fn from_bits(n: u8) -> TcpState {
        TcpState::ALL
            .get(usize::from(n))
            .copied()
            .unwrap_or(TcpState::Close)
    }

    /// The name `conntrack -L` prints.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }

    /// States a connection is closing in: Linux's `tcp_can_early_drop`
    /// lets eviction take these even from assured connections.
    pub fn is_closing(self) -> bool {
        matches!(
            self,
            TcpState::FinWait
                | TcpState::CloseWait
                | TcpState::LastAck
                | TcpState::TimeWait
                | TcpState::Close
        )
    }
}

impl std::fmt::Display for TcpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which of the table's six rows a packet selects (Linux's
/// `enum tcp_bit_set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum FlagClass {
    Syn = 0,
    SynAck = 1,
    Fin = 2,
    Ack = 3,
    Rst = 4,
    None = 5,
}

impl FlagClass {
    /// Linux's `get_conntrack_index`: RST wins, then SYN (with or without
    /// ACK), then FIN, then ACK.
    pub(super) fn of(f: u8) -> FlagClass {
        if f & RST != 0 {
            FlagClass::Rst
        } else if f & SYN != 0 {
            if f & ACK != 0 {
                FlagClass::SynAck
            } else {
                FlagClass::Syn
            }
        } else if f & FIN != 0 {
            FlagClass::Fin
        } else if f & ACK != 0 {
            FlagClass::Ack
        } else {
            FlagClass::None
        }
    }

    pub(super) fn from_bits(n: u8) -> FlagClass {
        match n {
            0 => FlagClass::Syn,
            1 => FlagClass::SynAck,
            2 => FlagClass::Fin,
            3 => FlagClass::Ack,
            4 => FlagClass::Rst,
            _ => FlagClass::None,
        }
    }
}

/// Linux's `tcp_valid_flags` (in `tcp_error`): the flag combinations a TCP
/// segment may carry, PSH, ECE and CWR aside. Anything else (SYN|FIN, a
/// bare FIN, no flags, Christmas tree) is invalid before the state machine
/// sees it.
pub(super) fn valid_flags(f: u8) -> bool {
    matches!(
        f & !(ECE | CWR | PSH),
        x if x == SYN
            || x == SYN | URG
            || x == SYN | ACK
            || x == RST
            || x == RST | ACK
            || x == FIN | ACK
            || x == FIN | ACK | URG
            || x == ACK
            || x == ACK | URG
    )
}

/// A cell of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    To(TcpState),
    /// sIG: may be valid or not; let it through without changing state.
    Ignore,
    /// sIV: invalid in this state.
    Invalid,
}

const SS: Next = Next::To(TcpState::SynSent);
const SR: Next = Next::To(TcpState::SynRecv);
const ES: Next = Next::To(TcpState::Established);
const FW: Next = Next::To(TcpState::FinWait);
const CW: Next = Next::To(TcpState::CloseWait);
const LA: Next = Next::To(TcpState::LastAck);
const TW: Next = Next::To(TcpState::TimeWait);
const CL: Next = Next::To(TcpState::Close);
const S2: Next = Next::To(TcpState::SynSent2);
const IV: Next = Next::Invalid;
const IG: Next = Next::Ignore;

/// `tcp_conntracks[dir][flag class][old state]`, transcribed from Linux
/// `net/netfilter/nf_conntrack_proto_tcp.c` (see the module doc).
#[rustfmt::skip]
const TRANSITIONS: [[[Next; 10]; 6]; 2] = [
    // ORIGINAL
    [
    //            sNO sSS sSR sES sFW sCW sLA sTW sCL sS2
    /* syn    */ [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
    //  sSS->sSS retransmitted SYN; sS2->sS2 late retransmitted SYN;
    //  sSR..sLA->sIG SYN in window outside SYN_SENT: receiver will RST,
    //  or we hold a dead connection; sTW,sCL->sSS reopened (RFC 1122).
    /* synack */ [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
    //  sNO->sIV too late; sSS->sIV client can't send SYN then SYN/ACK;
    //  sS2->sSR SYN/ACK to SYN2 in simultaneous open; sSR->sSR late
    //  retransmitted SYN/ACK in simultaneous open; rest: client SYN/ACK
    //  is invalid.
    /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
    //  sSS->sIV client must wait for SYN/ACK before FIN; sFW->sLA FIN
    //  both ways, waiting for the last ACK; sLA->sLA retransmitted FIN.
    /* ack    */ [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
    //  sNO->sES assumed (pickup); sSS->sIV no SYN/ACK seen yet;
    //  sSR->sES established; sFW->sCW close answered by ACK;
    //  sLA->sTW last ACK (RFC 5961 challenged); sTW->sTW retransmitted.
    /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
    /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
    // REPLY
    [
    //            sNO sSS sSR sES sFW sCW sLA sTW sCL sS2
    /* syn    */ [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],
    //  sNO->sIV never reached; sSS->sS2 simultaneous open; sS2->sS2
    //  retransmitted simultaneous SYN; sTW->sSS reopened, the server may
    //  have switched role.
    /* synack */ [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
    //  sSS->sSR standard open; sS2->sSR simultaneous open; sSR->sIG
    //  retransmitted SYN/ACK; sES..->sIG late SYN/ACK, or answering an
    //  ignored SYN.
    /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
    /* ack    */ [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
    //  sSS->sIG might be a half-open connection; sSR->sSR might answer a
    //  late resent SYN.
    /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
    /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
];

/// What a packet does to a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Invalid for the connection's state: the connection is untouched.
    Invalid,
    /// Accepted; publish this word (it may equal the old one).
    Accept(Word),
    /// Accepted, and the connection is over at once: an RST before any
    /// reply (Linux: "if only reply is a RST ... delete the conntrack
    /// immediately"). The word is the connection's last state.
    Kill(Word),
    /// A SYN reopening a closed connection (TIME_WAIT or CLOSE after a FIN,
    /// or after an RST from the same side): remove the old entry and
    /// create a new one for this packet (Linux's `-NF_REPEAT`).
    Reopen,
}

/// One packet of flags `f` in direction `dir` at time `now`, on a
/// connection whose word is `w` (a word in state `None` for the first
/// packet of a new connection). Follows `nf_conntrack_tcp_packet`.
pub(super) fn step(w: Word, dir: Dir, f: u8, now: u64, t: &ResolvedTimeouts) -> Step {
    if !valid_flags(f) {
        return Step::Invalid;
    }
    let index = FlagClass::of(f);
    let mut old = w.tcp_state();
    let mut new = TRANSITIONS[dir as usize][index as usize][old as usize];
    let mut out = w;

    let ignore = match new {
        Next::Invalid => return Step::Invalid,
        Next::Ignore => true,
        Next::To(TcpState::SynSent) if matches!(old, TcpState::TimeWait | TcpState::Close) => {
            // RFC 1122 reopening from TIME_WAIT, or an aborted connection
            // the client starts anew: only if the old one really closed.
            if w.has(Word::CLOSE_INIT) || (w.last_dir() == dir && w.last_index() == FlagClass::Rst)
            {
                return Step::Reopen;
            }
            true
        }
        Next::To(TcpState::TimeWait)
            if old == TcpState::LastAck
                && index == FlagClass::Ack
                && w.last_dir() != dir
                && w.last_index() == FlagClass::Syn
                && w.has(Word::CHALLENGE_ACK) =>
        {
            // An RFC 5961 challenge ACK answering a SYN we let through in
            // LAST_ACK: it does not acknowledge the last FIN.
            let mut out = w.without(Word::CHALLENGE_ACK);
            if dir == Dir::Reply {
                out = out.with(Word::SEEN_REPLY);
            }
            return Step::Accept(out);
        }
        Next::To(TcpState::SynSent2) => {
            out = out.with(Word::SIMULTANEOUS_OPEN);
            false
        }
        Next::To(TcpState::SynRecv)
            if dir == Dir::Reply && index == FlagClass::Ack && w.has(Word::SIMULTANEOUS_OPEN) =>
        {
            new = ES;
            false
        }
        Next::To(_) => false,
    };

    if ignore {
        if index == FlagClass::SynAck && w.last_index() == FlagClass::Syn && w.last_dir() != dir {
            // Case b): a SYN/ACK answering a SYN we ignored: client and
            // server are in sync and we are not; take the handshake from
            // there (Linux also checks the SYN/ACK acks that SYN's sequence
            // number, which we do not track).
            old = TcpState::SynSent;
            new = SR;
            out = out.without(Word::CHALLENGE_ACK);
        } else {
            // Let it through, remember it, change nothing else: no state
            // change and no timeout refresh.
            out = out.with_last(index, dir);
            if index == FlagClass::Syn && dir == Dir::Original {
                out = if old == TcpState::LastAck {
                    out.with(Word::CHALLENGE_ACK)
                } else {
                    out.without(Word::CHALLENGE_ACK)
                };
            }
            if dir == Dir::Reply {
                out = out.with(Word::SEEN_REPLY);
            }
            return Step::Accept(out);
        }
    }

    let Next::To(new) = new else {
        return Step::Invalid;
    };
    out = out.with_last(index, dir).with_tcp_state(new);
    if old != new && new == TcpState::FinWait {
        out = out.with(Word::CLOSE_INIT);
    }
    let mut timeout = if index == FlagClass::Rst {
        t.tcp[TcpState::Close as usize]
    } else {
        t.tcp[new as usize]
    };
    // SEEN_REPLY as it was before this packet: Linux sets it after the
    // protocol handler has run.
    if !w.has(Word::SEEN_REPLY) {
        if index == FlagClass::Rst {
            return Step::Kill(out);
        }
        if new == TcpState::Established && timeout > t.tcp_unacknowledged {
            timeout = t.tcp_unacknowledged;
        }
    } else if !w.has(Word::ASSURED)
        && matches!(old, TcpState::SynRecv | TcpState::Established)
        && new == TcpState::Established
    {
        out = out.with(Word::ASSURED);
    }
    if dir == Dir::Reply {
        out = out.with(Word::SEEN_REPLY);
    }
    Step::Accept(out.with_deadline(now, timeout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::Timeouts;

    fn t() -> ResolvedTimeouts {
        ResolvedTimeouts::new(&Timeouts::default())
    }

    fn cell(dir: Dir, f: u8, s: TcpState) -> Next {
        TRANSITIONS[dir as usize][FlagClass::of(f) as usize][s as usize]
    }

    #[test]
    fn flag_classes_follow_get_conntrack_index() {
        assert_eq!(FlagClass::of(SYN), FlagClass::Syn);
        assert_eq!(FlagClass::of(SYN | ACK), FlagClass::SynAck);
        assert_eq!(FlagClass::of(RST | ACK), FlagClass::Rst);
        assert_eq!(FlagClass::of(FIN | ACK | PSH), FlagClass::Fin);
        assert_eq!(FlagClass::of(ACK | PSH), FlagClass::Ack);
        assert_eq!(FlagClass::of(0), FlagClass::None);
        assert_eq!(FlagClass::of(SYN | RST), FlagClass::Rst);
    }

    #[test]
    fn valid_flags_follow_tcp_valid_flags() {
        for ok in [
            SYN,
            SYN | ACK,
            SYN | ECE | CWR,
            ACK,
            ACK | PSH,
            FIN | ACK,
            FIN | ACK | PSH,
            RST,
            RST | ACK,
            ACK | URG,
        ] {
            assert!(valid_flags(ok), "{ok:#04x}");
        }
        for bad in [0, FIN, SYN | FIN, SYN | RST, FIN | PSH | URG, 0xff, PSH] {
            assert!(!valid_flags(bad), "{bad:#04x}");
        }
    }

    #[test]
    fn spot_checks_against_the_linux_table() {
        use Dir::{Original as O, Reply as R};
        use TcpState::*;
        assert_eq!(cell(O, SYN, None), SS);
        assert_eq!(cell(O, SYN, SynSent), SS);
        assert_eq!(cell(O, SYN, Established), IG);
        assert_eq!(cell(O, SYN, TimeWait), SS);
        assert_eq!(cell(O, SYN | ACK, SynSent), IV);
        assert_eq!(cell(O, SYN | ACK, SynSent2), SR);
        assert_eq!(cell(O, ACK, None), ES);
        assert_eq!(cell(O, ACK, SynSent), IV);
        assert_eq!(cell(O, FIN | ACK, SynSent), IV);
        assert_eq!(cell(O, FIN | ACK, FinWait), LA);
        assert_eq!(cell(O, RST, None), IV);
        assert_eq!(cell(R, SYN, SynSent), S2);
        assert_eq!(cell(R, SYN, TimeWait), SS);
        assert_eq!(cell(R, SYN, Close), IV);
        assert_eq!(cell(R, SYN | ACK, SynSent), SR);
        assert_eq!(cell(R, SYN | ACK, SynRecv), IG);
        assert_eq!(cell(R, ACK, SynSent), IG);
        assert_eq!(cell(R, ACK, SynRecv), SR);
        assert_eq!(cell(R, ACK, LastAck), TW);
        for s in TcpState::ALL {
            assert_eq!(cell(O, 0, s), IV);
            assert_eq!(cell(R, 0, s), IV);
        }
    }

    #[test]
    fn first_packet_of_a_connection() {
        let none = Word::default();
        let t = t();
        let Step::Accept(w) = step(none, Dir::Original, SYN, 0, &t) else {
            panic!()
        };
        assert_eq!(w.tcp_state(), TcpState::SynSent);
        let Step::Accept(w) = step(none, Dir::Original, ACK, 0, &t) else {
            panic!()
        };
        assert_eq!(w.tcp_state(), TcpState::Established);
        assert_eq!(
            w.deadline_ns(),
            t.tcp_unacknowledged,
            "a pickup without reply gets the unacknowledged timeout"
        );
        for f in [SYN | ACK, FIN | ACK, RST, RST | ACK, SYN | FIN] {
            assert_eq!(step(none, Dir::Original, f, 0, &t), Step::Invalid, "{f:#x}");
        }
    }
}
