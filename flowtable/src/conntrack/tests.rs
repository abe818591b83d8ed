//! Conntrack driven by real packet sequences (TCP flag bytes as on the
//! wire), NAT bindings, eviction, expiry, and cores racing each other.

// Test data is made by narrowing counters on purpose.
#![allow(clippy::cast_possible_truncation)]

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use super::*;
use crate::snat_ports::SnatPorts;

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
const T0: u64 = 1_000 * S;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 7);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 9);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
const NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
const EXT: Ipv4Addr = Ipv4Addr::new(93, 184, 216, 34);

fn tcp_key(s: Ipv4Addr, sp: u16, d: Ipv4Addr, dp: u16) -> FlowKey {
    FlowKey::v4(0, 6, s, sp, d, dp)
}

fn udp_key(s: Ipv4Addr, sp: u16, d: Ipv4Addr, dp: u16) -> FlowKey {
    FlowKey::v4(0, 17, s, sp, d, dp)
}

/// A plain (no NAT) TCP connection from the client, port `n`.
fn plain(n: u16) -> (FlowKey, FlowKey) {
    let o = tcp_key(CLIENT, n, SERVER, 80);
    (o, o.reversed())
}

fn ct(capacity: usize) -> Conntrack {
    Conntrack::new(capacity, Timeouts::default())
}

fn tcp(flags: u8) -> PacketInfo {
    PacketInfo::tcp(flags, 60)
}

#[track_caller]
fn tcp_state(v: Verdict) -> TcpState {
    match v {
        Verdict::Accept {
            state: CtState::Tcp(s),
            ..
        } => s,
        other => panic!("expected a TCP accept, got {other:?}"),
    }
}

#[track_caller]
fn changed(v: Verdict) -> bool {
    match v {
        Verdict::Accept {
            new_state_changed, ..
        } => new_state_changed,
        other => panic!("expected an accept, got {other:?}"),
    }
}

/// Sends `flags` in the direction `key` is in, looking the key up first as
/// a worker does.
#[track_caller]
fn send(ct: &Conntrack, key: &FlowKey, flags: u8, now: u64) -> Verdict {
    let r = ct.lookup(key).expect("tracked");
    ct.update(&r, &tcp(flags), now)
}

/// SYN, SYN/ACK, ACK at `now`.
#[track_caller]
fn handshake(ct: &Conntrack, orig: FlowKey, reply: FlowKey, now: u64) -> CtRef {
    let r = ct.create(orig, reply, &tcp(SYN), now).unwrap();
    assert_eq!(
        tcp_state(send(ct, &reply, SYN | ACK, now)),
        TcpState::SynRecv
    );
    assert_eq!(tcp_state(send(ct, &orig, ACK, now)), TcpState::Established);
    r
}

fn views(ct: &Conntrack) -> Vec<CtView> {
    let mut v = Vec::new();
    ct.for_each(|x| v.push(*x));
    v
}

#[test]
fn memory_per_connection_is_as_documented() {
    for cap in [100_000, 300_000] {
        let b = Conntrack::new(cap, Timeouts::default()).bytes_per_connection();
        eprintln!("{cap}: {b:.0} bytes per connection");
        assert!((430.0..=475.0).contains(&b), "{cap}: {b} bytes");
    }
}

#[test]
fn three_way_handshake_establishes_and_assures() {
    let ct = ct(16);
    let (o, r) = plain(40000);
    let c = ct.create(o, r, &tcp(SYN), T0).unwrap();
    assert_eq!(c.dir, Dir::Original);
    let v = ct.view(&c).unwrap();
    assert_eq!(v.state, CtState::Tcp(TcpState::SynSent));
    assert!(!v.seen_reply && !v.assured);
    assert_eq!(v.expires, T0 + 120 * S);

    let back = ct.lookup(&r).unwrap();
    assert_eq!((back.index, back.dir), (c.index, Dir::Reply));
    let verdict = ct.update(&back, &tcp(SYN | ACK), T0 + S);
    assert_eq!(tcp_state(verdict), TcpState::SynRecv);
    assert!(changed(verdict));
    let v = ct.view(&c).unwrap();
    assert!(v.seen_reply && !v.assured, "assured only once established");
    assert_eq!(v.expires, T0 + S + 60 * S);

    let verdict = send(&ct, &o, ACK, T0 + 2 * S);
    assert_eq!(tcp_state(verdict), TcpState::Established);
    assert!(changed(verdict));
    let v = ct.view(&c).unwrap();
    assert!(v.assured);
    assert_eq!(v.expires, T0 + 2 * S + 5 * 24 * 3600 * S);

    let verdict = send(&ct, &o, ACK | PSH, T0 + 3 * S);
    assert_eq!(tcp_state(verdict), TcpState::Established);
    assert!(!changed(verdict));
    assert_eq!(ct.len(), 1);
}

#[test]
fn fin_both_ways_goes_through_time_wait_and_expires() {
    let ct = ct(16);
    let (o, r) = plain(40001);
    handshake(&ct, o, r, T0);
    let t = T0 + 10 * S;
    assert_eq!(tcp_state(send(&ct, &o, FIN | ACK, t)), TcpState::FinWait);
    assert_eq!(tcp_state(send(&ct, &r, ACK, t)), TcpState::CloseWait);
    assert_eq!(tcp_state(send(&ct, &r, FIN | ACK, t)), TcpState::LastAck);
    assert_eq!(tcp_state(send(&ct, &o, ACK, t)), TcpState::TimeWait);
    // A retransmitted last ACK stays in TIME_WAIT.
    assert_eq!(tcp_state(send(&ct, &o, ACK, t)), TcpState::TimeWait);
    assert_eq!(views(&ct)[0].expires, t + 120 * S);

    assert_eq!(ct.expire(t + 120 * S - MS), 0);
    assert_eq!(ct.len(), 1);
    assert_eq!(ct.expire(t + 120 * S), 1);
    assert_eq!(ct.len(), 0);
    assert!(ct.lookup(&o).is_none() && ct.lookup(&r).is_none());
    assert_eq!(ct.table.len(), 0);
}

#[test]
fn rst_closes_and_expires_after_ten_seconds() {
    let ct = ct(16);
    let (o, r) = plain(40002);
    handshake(&ct, o, r, T0);
    let t = T0 + 5 * S;
    let v = send(&ct, &r, RST | ACK, t);
    assert_eq!(tcp_state(v), TcpState::Close);
    assert!(changed(v));
    assert_eq!(views(&ct)[0].expires, t + 10 * S);
    // Stragglers in CLOSE stay CLOSE.
    assert_eq!(tcp_state(send(&ct, &o, ACK, t)), TcpState::Close);
    assert_eq!(ct.expire(t + 10 * S - MS), 0);
    assert_eq!(ct.expire(t + 10 * S), 1);
    assert!(ct.is_empty());
}

#[test]
fn rst_before_any_reply_removes_at_once() {
    // "Connection refused": the only answer is an RST (Linux kills the
    // entry immediately).
    let ct = ct(16);
    let (o, r) = plain(40003);
    ct.create(o, r, &tcp(SYN), T0).unwrap();
    let v = send(&ct, &r, RST | ACK, T0 + MS);
    assert_eq!(tcp_state(v), TcpState::Close);
    assert!(ct.lookup(&o).is_none() && ct.lookup(&r).is_none());
    assert!(ct.is_empty());
}

#[test]
fn retransmitted_syn_stays_syn_sent_and_refreshes_the_timeout() {
    let ct = ct(16);
    let (o, r) = plain(40004);
    ct.create(o, r, &tcp(SYN), T0).unwrap();
    let v = send(&ct, &o, SYN, T0 + 3 * S);
    assert_eq!(tcp_state(v), TcpState::SynSent);
    assert!(!changed(v));
    assert_eq!(views(&ct)[0].expires, T0 + 123 * S);
    assert_eq!(ct.expire(T0 + 121 * S), 0, "the first SYN's deadline moved");
    assert_eq!(ct.expire(T0 + 123 * S), 1);
}

#[test]
fn synack_from_the_original_side_is_invalid() {
    let ct = ct(16);
    let (o, r) = plain(40005);
    // As the first packet: cannot start a connection.
    assert_eq!(ct.create(o, r, &tcp(SYN | ACK), T0), Err(CtError::Invalid));
    for f in [FIN | ACK, RST, RST | ACK, SYN | FIN, 0] {
        assert_eq!(
            ct.create(o, r, &tcp(f), T0),
            Err(CtError::Invalid),
            "{f:#x}"
        );
    }
    assert!(ct.is_empty());
    // After our own SYN: the client cannot send SYN then SYN/ACK; nor ACK
    // or FIN before the SYN/ACK.
    ct.create(o, r, &tcp(SYN), T0).unwrap();
    for f in [SYN | ACK, ACK, FIN | ACK] {
        assert_eq!(send(&ct, &o, f, T0 + S), Verdict::Invalid, "{f:#x}");
    }
    let v = views(&ct)[0];
    assert_eq!(v.state, CtState::Tcp(TcpState::SynSent));
    assert_eq!(v.expires, T0 + 120 * S, "an invalid packet changes nothing");
}

#[test]
fn a_reply_before_the_original_finds_nothing() {
    let ct = ct(16);
    let (o, r) = plain(40006);
    assert!(ct.lookup(&r).is_none());
    // The SYN/ACK, taken as the first packet of a connection of its own,
    // cannot start one.
    assert_eq!(
        ct.create(r, r.reversed(), &tcp(SYN | ACK), T0),
        Err(CtError::Invalid)
    );
    // Another connection's tuples do not answer for this one.
    ct.create(o, r, &tcp(SYN), T0).unwrap();
    let (o2, r2) = plain(40007);
    assert!(ct.lookup(&o2).is_none() && ct.lookup(&r2).is_none());
}

#[test]
fn mid_stream_ack_is_picked_up_only_in_loose_mode() {
    let (o, r) = plain(40008);
    let loose = ct(16);
    assert!(loose.tcp_loose());
    let c = loose.create(o, r, &tcp(ACK | PSH), T0).unwrap();
    let v = loose.view(&c).unwrap();
    assert_eq!(v.state, CtState::Tcp(TcpState::Established));
    assert!(!v.assured);
    assert_eq!(
        v.expires,
        T0 + 300 * S,
        "unreplied pickups get the unacknowledged timeout, not 5 days"
    );
    assert_eq!(
        tcp_state(send(&loose, &r, ACK, T0 + S)),
        TcpState::Established
    );
    assert_eq!(
        tcp_state(send(&loose, &o, ACK, T0 + 2 * S)),
        TcpState::Established
    );
    let v = loose.view(&c).unwrap();
    assert!(v.seen_reply && v.assured);
    assert_eq!(v.expires, T0 + 2 * S + 5 * 24 * 3600 * S);

    let strict = ct(16).with_tcp_loose(false);
    assert_eq!(
        strict.create(o, r, &tcp(ACK | PSH), T0),
        Err(CtError::Invalid)
    );
    assert!(strict.create(o, r, &tcp(SYN), T0).is_ok());
}

#[test]
fn simultaneous_open_goes_through_syn_sent2() {
    let ct = ct(16);
    let (o, r) = plain(40009);
    ct.create(o, r, &tcp(SYN), T0).unwrap();
    assert_eq!(tcp_state(send(&ct, &r, SYN, T0)), TcpState::SynSent2);
    assert_eq!(tcp_state(send(&ct, &o, SYN | ACK, T0)), TcpState::SynRecv);
    // The other side's SYN/ACK is a retransmission as far as we know.
    let v = send(&ct, &r, SYN | ACK, T0);
    assert_eq!(tcp_state(v), TcpState::SynRecv);
    assert!(!changed(v));
    assert_eq!(tcp_state(send(&ct, &r, ACK, T0)), TcpState::Established);
}

#[test]
fn syn_on_a_closed_connection_reopens_it() {
    let ct = ct(16);
    let (o, r) = plain(40010);
    handshake(&ct, o, r, T0);
    // A SYN on an established connection is let through, ignored: no state
    // change and no refresh.
    let before = views(&ct)[0].expires;
    let v = send(&ct, &o, SYN, T0 + 5 * S);
    assert_eq!(tcp_state(v), TcpState::Established);
    assert_eq!(views(&ct)[0].expires, before);

    for (k, f) in [(o, FIN | ACK), (r, ACK), (r, FIN | ACK), (o, ACK)] {
        send(&ct, &k, f, T0 + 6 * S);
    }
    assert_eq!(views(&ct)[0].state, CtState::Tcp(TcpState::TimeWait));
    assert_eq!(send(&ct, &o, SYN, T0 + 7 * S), Verdict::Reopen);
    assert!(ct.lookup(&o).is_none() && ct.is_empty());
    let c = ct.create(o, r, &tcp(SYN), T0 + 7 * S).unwrap();
    let v = ct.view(&c).unwrap();
    assert_eq!(v.state, CtState::Tcp(TcpState::SynSent));
    assert!(!v.seen_reply && !v.assured, "a new connection starts clean");
}

#[test]
fn rfc5961_challenge_ack_does_not_close_last_ack() {
    let ct = ct(16);
    let (o, r) = plain(40011);
    handshake(&ct, o, r, T0);
    for (k, f) in [(r, FIN | ACK), (o, ACK), (o, FIN | ACK)] {
        send(&ct, &k, f, T0);
    }
    assert_eq!(views(&ct)[0].state, CtState::Tcp(TcpState::LastAck));
    // The client SYNs (ignored), the server answers with a challenge ACK:
    // that ACK does not acknowledge the last FIN.
    assert_eq!(tcp_state(send(&ct, &o, SYN, T0)), TcpState::LastAck);
    assert_eq!(tcp_state(send(&ct, &r, ACK, T0)), TcpState::LastAck);
    assert_eq!(tcp_state(send(&ct, &r, ACK, T0)), TcpState::TimeWait);
}

#[test]
fn udp_unreplied_30s_replied_stream_120s() {
    let ct = ct(16);
    let dns = udp_key(CLIENT, 53000, SERVER, 53);
    let c = ct
        .create(dns, dns.reversed(), &PacketInfo::udp(60), T0)
        .unwrap();
    assert_eq!(ct.view(&c).unwrap().state, CtState::Unreplied);
    assert_eq!(ct.view(&c).unwrap().expires, T0 + 30 * S);
    // A query and its answer: replied, but neither a stream nor assured.
    let back = ct.lookup(&dns.reversed()).unwrap();
    let v = ct.update(&back, &PacketInfo::udp(120), T0 + 10 * MS);
    assert_eq!(
        v,
        Verdict::Accept {
            state: CtState::Replied,
            new_state_changed: true
        }
    );
    let view = ct.view(&c).unwrap();
    assert!(view.seen_reply && !view.assured);
    assert_eq!(view.expires, T0 + 10 * MS + 30 * S);

    // A flow still going after 2 s, seen both ways: a stream.
    let stream = udp_key(CLIENT, 4789, SERVER, 4789);
    let s = ct
        .create(stream, stream.reversed(), &PacketInfo::udp(60), T0)
        .unwrap();
    let back = ct.lookup(&stream.reversed()).unwrap();
    ct.update(&back, &PacketInfo::udp(60), T0 + S / 2);
    ct.update(&s, &PacketInfo::udp(60), T0 + 3 * S);
    let view = ct.view(&s).unwrap();
    assert!(view.assured);
    assert_eq!(view.expires, T0 + 123 * S);

    assert_eq!(ct.expire(T0 + 31 * S), 1, "the DNS exchange is gone");
    assert!(ct.view(&s).is_some());
    assert_eq!(ct.expire(T0 + 123 * S), 1);
}

#[test]
fn icmp_echo_is_tracked_both_ways() {
    let ct = ct(16);
    let id = 0x1234;
    let echo = FlowKey::v4(0, 1, CLIENT, id, SERVER, id);
    let c = ct
        .create(echo, echo.reversed(), &PacketInfo::icmp(84), T0)
        .unwrap();
    let back = ct.lookup(&echo.reversed()).unwrap();
    assert_eq!((back.index, back.dir), (c.index, Dir::Reply));
    assert_eq!(
        ct.update(&back, &PacketInfo::icmp(84), T0 + MS),
        Verdict::Accept {
            state: CtState::Replied,
            new_state_changed: true
        }
    );
    assert_eq!(ct.view(&c).unwrap().expires, T0 + MS + 30 * S);
    let other_id = FlowKey::v4(0, 1, SERVER, id + 1, CLIENT, id + 1);
    assert!(ct.lookup(&other_id).is_none());
    // A TCP packet on an ICMP connection is not its.
    assert_eq!(ct.update(&c, &tcp(ACK), T0 + MS), Verdict::Invalid);
    assert_eq!(ct.expire(T0 + MS + 30 * S), 1);
}

#[test]
fn dnat_reply_from_the_backend_finds_the_connection_and_unnats() {
    let ct = ct(16);
    let orig = tcp_key(CLIENT, 40000, VIP, 80);
    let reply = tcp_key(BACKEND, 8080, CLIENT, 40000);
    let c = ct.create(orig, reply, &tcp(SYN), T0).unwrap();
    let back = ct.lookup(&reply).unwrap();
    assert_eq!((back.index, back.dir), (c.index, Dir::Reply));
    assert_eq!(
        tcp_state(ct.update(&back, &tcp(SYN | ACK), T0)),
        TcpState::SynRecv
    );

    let nat = ct.nat(&back).unwrap();
    assert_eq!(nat.snat, None);
    let d = nat.dnat.unwrap();
    assert_eq!((d.from.addr, d.from.port), (VIP.into(), 80));
    assert_eq!((d.to.addr, d.to.port), (BACKEND.into(), 8080));
    // The reply leaves from the VIP, to the client.
    let out = nat.translate(Dir::Reply, &reply.tuple());
    assert_eq!((out.src, out.src_port), (VIP.into(), 80));
    assert_eq!((out.dst, out.dst_port), (CLIENT.into(), 40000));
    // The client's packets go to the backend.
    let out = nat.translate(Dir::Original, &orig.tuple());
    assert_eq!((out.dst, out.dst_port), (BACKEND.into(), 8080));
    // Nobody else answers for it: not the VIP directly, not another port.
    assert!(ct.lookup(&orig.reversed()).is_none());
    assert!(ct.lookup(&tcp_key(BACKEND, 8081, CLIENT, 40000)).is_none());
}

#[test]
fn snat_reply_from_outside_finds_the_connection() {
    let ct = ct(16);
    let orig = tcp_key(CLIENT, 40000, EXT, 443);
    let reply = tcp_key(EXT, 443, NODE, 61000);
    let c = ct.create(orig, reply, &tcp(SYN), T0).unwrap();
    let back = ct.lookup(&reply).unwrap();
    assert_eq!((back.index, back.dir), (c.index, Dir::Reply));
    let nat = ct.nat(&c).unwrap();
    assert_eq!(nat.dnat, None);
    let s = nat.snat.unwrap();
    assert_eq!((s.from.addr, s.from.port), (CLIENT.into(), 40000));
    assert_eq!((s.to.addr, s.to.port), (NODE.into(), 61000));
    let out = nat.translate(Dir::Reply, &reply.tuple());
    assert_eq!((out.dst, out.dst_port), (CLIENT.into(), 40000));
    assert_eq!((out.src, out.src_port), (EXT.into(), 443));
}

#[test]
fn dnat_and_snat_at_once() {
    // A client outside reaches a NodePort; the backend's answer must go back
    // through this node (externalTrafficPolicy: Cluster), so both are NATed.
    let ct = ct(16);
    let orig = tcp_key(EXT, 50000, NODE, 30080);
    let reply = tcp_key(BACKEND, 8080, NODE, 62000);
    let c = ct.create(orig, reply, &tcp(SYN), T0).unwrap();
    let back = ct.lookup(&reply).unwrap();
    assert_eq!((back.index, back.dir), (c.index, Dir::Reply));
    let nat = ct.nat(&c).unwrap();
    assert!(nat.dnat.is_some() && nat.snat.is_some());
    assert_eq!(
        nat.translate(Dir::Original, &orig.tuple()),
        reply.reversed().tuple()
    );
    assert_eq!(
        nat.translate(Dir::Reply, &reply.tuple()),
        orig.reversed().tuple()
    );
    // The fast path's shortcut says the same: the other key, reversed.
    assert_eq!(ct.counterpart(&c), Some(reply));
    assert_eq!(ct.counterpart(&back), Some(orig));
    // A removed connection has none.
    assert!(ct.remove(&c));
    assert_eq!(ct.counterpart(&back), None);
}

#[test]
fn creating_a_tracked_tuple_names_its_holder() {
    let ct = ct(16);
    let orig = tcp_key(CLIENT, 40000, VIP, 80);
    let reply = tcp_key(BACKEND, 8080, CLIENT, 40000);
    let c = ct.create(orig, reply, &tcp(SYN), T0).unwrap();
    let other = tcp_key(BACKEND, 8080, CLIENT, 40001);
    let Err(CtError::Exists(e)) = ct.create(orig, other, &tcp(SYN), T0) else {
        panic!()
    };
    assert_eq!((e.index, e.dir), (c.index, Dir::Original));
    // A NAT choice clashing with another connection's reply tuple.
    let Err(CtError::Exists(e)) = ct.create(tcp_key(CLIENT, 40001, VIP, 80), reply, &tcp(SYN), T0)
    else {
        panic!()
    };
    assert_eq!((e.index, e.dir), (c.index, Dir::Reply));
    // The backend's packet, taken by another core for a new connection.
    let Err(CtError::Exists(e)) = ct.create(reply, reply.reversed(), &tcp(SYN), T0) else {
        panic!()
    };
    assert_eq!((e.index, e.dir), (c.index, Dir::Reply));
    assert_eq!(ct.len(), 1);
    assert_eq!(ct.stats().clashes, 3);
    assert_eq!(ct.create(orig, orig, &tcp(SYN), T0), Err(CtError::Invalid));
}

#[test]
fn full_table_evicts_unreplied_first_then_says_full() {
    let ct = ct(4);
    for n in 0..3 {
        let (o, r) = plain(41000 + n);
        handshake(&ct, o, r, T0);
    }
    let (o3, r3) = plain(41003);
    ct.create(o3, r3, &tcp(SYN), T0).unwrap();
    assert_eq!(ct.len(), 4);

    // Full: the unreplied connection goes, however recent.
    let (o4, r4) = plain(41004);
    ct.create(o4, r4, &tcp(SYN), T0 + S).unwrap();
    assert_eq!(ct.stats().evicted, 1);
    assert!(ct.lookup(&o3).is_none() && ct.lookup(&r3).is_none());
    for n in 0..3 {
        assert!(ct.lookup(&plain(41000 + n).0).is_some());
    }
    // Now every connection is assured: nothing may go.
    assert_eq!(
        tcp_state(send(&ct, &r4, SYN | ACK, T0 + S)),
        TcpState::SynRecv
    );
    assert_eq!(
        tcp_state(send(&ct, &o4, ACK, T0 + S)),
        TcpState::Established
    );
    let (o5, r5) = plain(41005);
    assert_eq!(ct.create(o5, r5, &tcp(SYN), T0 + 2 * S), Err(CtError::Full));
    assert_eq!(ct.stats().full, 1);
    assert_eq!(ct.len(), 4);
    // A closing connection may go, even assured.
    let (o0, _) = plain(41000);
    assert_eq!(
        tcp_state(send(&ct, &o0, FIN | ACK, T0 + 3 * S)),
        TcpState::FinWait
    );
    ct.create(o5, r5, &tcp(SYN), T0 + 4 * S).unwrap();
    assert!(ct.lookup(&o0).is_none());
    assert_eq!(ct.stats().evicted, 2);
    assert_eq!(ct.table.len(), 8);
}

#[test]
fn eviction_takes_the_idlest_within_a_class() {
    let ct = ct(3);
    let k = |n: u16| udp_key(CLIENT, 5000 + n, SERVER, 53);
    let create = |n: u16, t: u64| {
        ct.create(k(n), k(n).reversed(), &PacketInfo::udp(60), t)
            .unwrap()
    };
    // Replied (not assured) at T0: the later class.
    create(0, T0);
    let back = ct.lookup(&k(0).reversed()).unwrap();
    ct.update(&back, &PacketInfo::udp(60), T0);
    create(1, T0 + 2 * S);
    create(2, T0 + S);
    create(3, T0 + 10 * S);
    assert!(ct.lookup(&k(2)).is_none(), "unreplied and idlest");
    create(4, T0 + 11 * S);
    assert!(ct.lookup(&k(1)).is_none(), "unreplied");
    let c5 = create(5, T0 + 12 * S);
    assert!(ct.view(&c5).is_some());
    assert!(ct.lookup(&k(3)).is_none(), "unreplied go before replied");
    assert!(ct.lookup(&k(0)).is_some());
    assert_eq!(ct.stats().evicted, 3);
}

#[test]
fn expire_removes_exactly_the_timed_out() {
    let ct = ct(16);
    let syn_sent = plain(42000);
    ct.create(syn_sent.0, syn_sent.1, &tcp(SYN), T0).unwrap(); // +120 s
    let established = plain(42001);
    handshake(&ct, established.0, established.1, T0); // +5 days
    let u1 = udp_key(CLIENT, 42002, SERVER, 53);
    ct.create(u1, u1.reversed(), &PacketInfo::udp(60), T0)
        .unwrap(); // +30 s
    let u2 = udp_key(CLIENT, 42003, SERVER, 53);
    ct.create(u2, u2.reversed(), &PacketInfo::udp(60), T0 + 25 * S)
        .unwrap(); // +55 s
    let ping = FlowKey::v4(0, 1, CLIENT, 7, SERVER, 7);
    ct.create(ping, ping.reversed(), &PacketInfo::icmp(84), T0 + 10 * S)
        .unwrap(); // +40 s

    assert_eq!(ct.expire(T0 + 29 * S), 0);
    assert_eq!(ct.expire(T0 + 45 * S), 2);
    let mut left: Vec<FlowKey> = views(&ct).iter().map(|v| v.orig).collect();
    left.sort_by_key(|k| k.tuple().src_port);
    assert_eq!(left, vec![syn_sent.0, established.0, u2]);
    assert!(ct.lookup(&u1.reversed()).is_none() && ct.lookup(&ping).is_none());
    assert_eq!(ct.expire(T0 + 120 * S), 2);
    assert_eq!(ct.len(), 1);
    assert_eq!(ct.table.len(), 2);
}

#[test]
fn update_reaps_an_expired_connection() {
    let ct = ct(16);
    let u = udp_key(CLIENT, 43000, SERVER, 53);
    let c = ct
        .create(u, u.reversed(), &PacketInfo::udp(60), T0)
        .unwrap();
    assert_eq!(
        ct.update(&c, &PacketInfo::udp(60), T0 + 31 * S),
        Verdict::Stale
    );
    assert!(ct.lookup(&u).is_none() && ct.is_empty());
    ct.create(u, u.reversed(), &PacketInfo::udp(60), T0 + 31 * S)
        .unwrap();
}

#[test]
fn a_stale_reference_is_rejected_after_its_entry_is_reused() {
    let ct = ct(1);
    let (o, r) = plain(44000);
    let old = ct.create(o, r, &tcp(SYN), T0).unwrap();
    assert!(ct.remove(&old));
    assert!(!ct.remove(&old), "removed once");
    let (o2, r2) = plain(44001);
    let new = ct.create(o2, r2, &tcp(SYN), T0).unwrap();
    assert_eq!(new.index, old.index, "one entry, reused");
    assert_eq!(ct.update(&old, &tcp(SYN), T0 + S), Verdict::Stale);
    assert!(ct.view(&old).is_none() && ct.nat(&old).is_none());
    assert!(!ct.remove(&old));
    assert_eq!(
        tcp_state(ct.update(&new, &tcp(SYN), T0 + S)),
        TcpState::SynSent
    );
    assert!(ct.lookup(&o).is_none());
}

#[test]
fn every_removal_releases_its_snat_port() {
    let ports = Arc::new(SnatPorts::new(61000..=61009));
    let removed = Arc::new(AtomicUsize::new(0));
    let (p, n) = (ports.clone(), removed.clone());
    let ct = Conntrack::new(2, Timeouts::default()).with_on_remove(move |v| {
        if let Some(s) = v.nat().snat {
            assert!(p.release(s.to.port), "released once");
        }
        n.fetch_add(1, Ordering::Relaxed);
    });
    let masq = |sport: u16, t: u64| {
        let port = ports.allocate(u64::from(sport)).unwrap();
        let orig = tcp_key(CLIENT, sport, EXT, 443);
        let reply = tcp_key(EXT, 443, NODE, port);
        (ct.create(orig, reply, &tcp(SYN), t).unwrap(), orig, reply)
    };
    // Expiry.
    masq(1, T0);
    assert_eq!(ct.expire(T0 + 120 * S), 1);
    // Explicit removal.
    let (c, _, _) = masq(2, T0);
    assert!(ct.remove(&c));
    // An RST before any reply.
    let (_, _, reply) = masq(3, T0);
    send(&ct, &reply, RST | ACK, T0);
    // Eviction: two unreplied, then a third.
    masq(4, T0);
    masq(5, T0);
    masq(6, T0 + S);
    assert_eq!(ct.stats().evicted, 1);
    // Reaped by update (after one more eviction to make room for it).
    let (c, _, _) = masq(7, T0 + 2 * S);
    assert_eq!(ct.stats().evicted, 2);
    assert_eq!(ct.update(&c, &tcp(SYN), T0 + 500 * S), Verdict::Stale);
    assert_eq!(removed.load(Ordering::Relaxed), 6);
    assert_eq!(ports.in_use(), 1);
    assert_eq!(ct.expire(u64::MAX), 1);
    assert_eq!(ports.in_use(), 0);
}

#[test]
fn dump_lines_look_like_conntrack_l() {
    let ct = ct(16);
    let orig = tcp_key(CLIENT, 40000, VIP, 80);
    let reply = tcp_key(BACKEND, 8080, CLIENT, 40000);
    handshake(&ct, orig, reply, T0);
    let dns = udp_key(CLIENT, 53000, SERVER, 53);
    ct.create(dns, dns.reversed(), &PacketInfo::udp(60), T0)
        .unwrap();
    let mut lines: Vec<String> = views(&ct)
        .iter()
        .map(|v| v.display(T0 + S).to_string())
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            "tcp      6 431999 ESTABLISHED src=10.244.1.7 dst=10.96.0.10 sport=40000 dport=80 \
             src=10.0.0.5 dst=10.244.1.7 sport=8080 dport=40000 [ASSURED]",
            "udp      17 29 src=10.244.1.7 dst=10.244.2.9 sport=53000 dport=53 [UNREPLIED] \
             src=10.244.2.9 dst=10.244.1.7 sport=53 dport=53000",
        ]
    );
}

/// xorshift64*: enough randomness for a stress test, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Checks, with nothing running: every live connection is reachable from
/// both its tuples, `len` counts them, and the table holds their keys and
/// nothing else. Then expires everything and checks nothing is left and
/// every entry can be had again without evicting.
fn check_quiescent(ct: &Conntrack, now: u64) {
    let mut n = 0;
    ct.for_each(|v| {
        n += 1;
        let o = ct.lookup(&v.orig).expect("original tuple reachable");
        assert_eq!((o.index, o.dir), (v.index, Dir::Original));
        let r = ct.lookup(&v.reply).expect("reply tuple reachable");
        assert_eq!((r.index, r.dir), (v.index, Dir::Reply));
    });
    assert_eq!(n, ct.len());
    ct.sweep_if_needed();
    assert_eq!(ct.table.len(), 2 * ct.len(), "no stray keys");
    assert_eq!(ct.stats().table_evictions, 0);

    assert_eq!(ct.expire(u64::MAX), n);
    assert_eq!(ct.len(), 0);
    assert_eq!(ct.table.len(), 0);
    let evicted = ct.stats().evicted;
    for i in 0..ct.capacity() {
        let o = udp_key(EXT, (i % 60000) as u16, NODE, 1 + (i / 60000) as u16);
        ct.create(o, o.reversed(), &PacketInfo::udp(60), now)
            .expect("every entry free again");
    }
    assert_eq!(ct.stats().evicted, evicted, "without evicting");
    assert_eq!(ct.len(), ct.capacity());
}

/// Four threads, even on fewer cores: preemption inside a critical section
/// is one of the interleavings worth having.
fn threads() -> usize {
    4
}

/// How long the stress test runs: `XVS_STRESS_SECS`, default 1.
fn stress_time() -> Duration {
    let secs = std::env::var("XVS_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    Duration::from_secs_f64(secs)
}

#[test]
fn racing_creates_of_one_connection_leave_exactly_one() {
    const ROUNDS: u16 = 300;
    let ct = Arc::new(ct(512));
    let n = threads();
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|t| {
            let (ct, barrier) = (ct.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut won = Vec::new();
                for round in 0..ROUNDS {
                    let orig = tcp_key(CLIENT, 20000 + round, VIP, 80);
                    let reply = tcp_key(BACKEND, 8080, CLIENT, 20000 + round);
                    barrier.wait();
                    // Odd threads are cores that see the backend's side
                    // first and, not knowing the NAT, start a connection
                    // from it: it clashes on the same reply tuple.
                    let got = if t % 2 == 0 {
                        ct.create(orig, reply, &tcp(SYN), T0)
                    } else {
                        ct.create(reply, reply.reversed(), &tcp(SYN), T0)
                    };
                    match got {
                        Ok(r) => won.push((round, r.index)),
                        Err(CtError::Exists(_)) => {}
                        Err(e) => panic!("{e:?}"),
                    }
                }
                won
            })
        })
        .collect();
    let mut winners = vec![0; usize::from(ROUNDS)];
    for h in handles {
        for (round, _) in h.join().unwrap() {
            winners[usize::from(round)] += 1;
        }
    }
    assert!(winners.iter().all(|&w| w == 1), "{winners:?}");
    assert_eq!(ct.len(), usize::from(ROUNDS));
    check_quiescent(&ct, T0);
}

#[test]
fn cores_creating_updating_and_removing_keep_both_directions() {
    const CONNS: u16 = 600;
    let timeouts = Timeouts {
        tcp_syn_sent: Duration::from_millis(300),
        tcp_established: Duration::from_secs(2),
        tcp_time_wait: Duration::from_millis(200),
        tcp_close: Duration::from_millis(100),
        tcp_unacknowledged: Duration::from_millis(500),
        ..Timeouts::default()
    };
    let ct = Arc::new(Conntrack::new(512, timeouts));
    // Connection i: plain, DNAT, SNAT or both, by i % 4.
    let tuples = |i: u16| {
        let sport = 30000 + i;
        match i % 4 {
            0 => plain(sport),
            1 => (
                tcp_key(CLIENT, sport, VIP, 80),
                tcp_key(BACKEND, 8080, CLIENT, sport),
            ),
            2 => (
                tcp_key(CLIENT, sport, EXT, 443),
                tcp_key(EXT, 443, NODE, 10000 + i),
            ),
            _ => (
                tcp_key(EXT, sport, NODE, 30080),
                tcp_key(BACKEND, 8080, NODE, 10000 + i),
            ),
        }
    };
    let clock = Arc::new(AtomicU64::new(T0));
    let stop = Arc::new(AtomicBool::new(false));
    let n = threads();
    let workers: Vec<_> = (0..n)
        .map(|t| {
            let (ct, clock, stop) = (ct.clone(), clock.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((t as u64 + 1) * 0x1234_5678_9abc));
                let mut ops = 0u64;
                const FLAGS: [u8; 6] = [SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK, RST | ACK];
                while !stop.load(Ordering::Relaxed) {
                    ops += 1;
                    let now = clock.fetch_add(20 * 1000, Ordering::Relaxed);
                    let i = rng.below(u64::from(CONNS)) as u16;
                    let (orig, reply) = tuples(i);
                    let reply_side = rng.below(2) == 1;
                    let key = if reply_side { reply } else { orig };
                    let flags = FLAGS[rng.below(FLAGS.len() as u64) as usize];
                    match ct.lookup(&key) {
                        Some(r) => {
                            if rng.below(50) == 0 {
                                ct.remove(&r);
                                continue;
                            }
                            let _ = ct.view(&r);
                            if ct.update(&r, &tcp(flags), now) == Verdict::Reopen {
                                let _ = ct.create(orig, reply, &tcp(SYN), now);
                            }
                        }
                        None if reply_side => {
                            // A core that does not know the NAT takes the
                            // reply for a new connection.
                            let _ = ct.create(reply, reply.reversed(), &tcp(flags), now);
                        }
                        None => {
                            let _ = ct.create(orig, reply, &tcp(flags), now);
                        }
                    }
                }
                ops
            })
        })
        .collect();
    // The control plane: expiry and dumps, concurrently.
    let control = {
        let (ct, clock, stop) = (ct.clone(), clock.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut expired = 0;
            while !stop.load(Ordering::Relaxed) {
                expired += ct.expire(clock.load(Ordering::Relaxed));
                let mut dumped = 0;
                ct.for_each(|v| {
                    assert_ne!(v.orig, v.reply);
                    dumped += 1;
                });
                assert!(dumped <= ct.capacity());
                std::thread::sleep(Duration::from_millis(2));
            }
            expired
        })
    };
    let started = Instant::now();
    std::thread::sleep(stress_time());
    stop.store(true, Ordering::Relaxed);
    let ops: u64 = workers.into_iter().map(|h| h.join().unwrap()).sum();
    let expired = control.join().unwrap();
    let stats = ct.stats();
    eprintln!(
        "{ops} ops in {:?} on {n} threads; {expired} expired; {stats:?}",
        started.elapsed()
    );
    assert!(ops > 1000);
    check_quiescent(&ct, clock.load(Ordering::Relaxed));
}
