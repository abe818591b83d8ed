//! ip4-nat: connection tracking, Service load balancing and masquerade of
//! routed traffic — kube-proxy's work, done once per connection.
//!
//! Every IPv4 packet ip4-input accepts (not VXLAN to our VTEP) comes here
//! before it is routed or delivered locally, as Linux's conntrack and NAT
//! hooks sit in PREROUTING:
//!
//! - **A packet of a tracked connection** (either direction) updates the
//!   connection's state and leaves with the tuple the connection's other
//!   key says, reversed (`Conntrack::counterpart`): one table lookup and one
//!   entry read per packet, however many Services there are. Without NAT
//!   the tuple is unchanged and nothing is written.
//! - **The first packet of a connection** to a Service frontend (ClusterIP,
//!   external or load-balancer address, node port on the node IP) picks an
//!   endpoint ([`crate::services`]), and the connection is created with the
//!   endpoint in its reply tuple: the DNAT binding, undone on the way back.
//!   The source is rewritten too (SNAT to the pod CIDR's network address,
//!   [`Snapshot::cluster_snat_ip`]) when the answer would otherwise not come
//!   back through this switch or not be accepted: traffic from outside the
//!   cluster sent to an endpoint on another node (as kube-proxy's Cluster
//!   policy masquerades), and hairpin, a pod reaching a Service whose
//!   chosen endpoint is the pod itself (a packet from its own address would
//!   be dropped by its kernel). A Service without usable endpoints is
//!   rejected (TCP RST from the Service address, ICMP port unreachable for
//!   UDP), as kube-proxy does; a `Local` policy without a local endpoint
//!   drops. A reply tuple that is already another connection's (one client
//!   port reaching the same endpoint through two Service ports) gets the
//!   connection another source port, as Linux's NAT does on a clash.
//! - **A pod's connection leaving the cluster CIDR** (when the node has one)
//!   is masqueraded: its source becomes the node IP and a port from the
//!   bounded SNAT allocator ([`xvs_flowtable::snat_ports`]); the port goes
//!   back when conntrack removes the connection. Running out of ports is a
//!   counted drop (`snat_ports_exhausted`) that xvsd also logs.
//! - **Anything else** is tracked as it is, as before this stage existed.
//!
//! A NATed connection created here invalidates the packet's cached next
//! hop: the flow cache's key is the tuple before NAT, and a new connection
//! on it may have picked another endpoint than the one the hop was cached
//! for (the endpoints changed since). The packet is routed afresh and, if
//! it came through the cache, its flow is removed; the next packet caches
//! it again with the new connection's hop.
//!
//! What is not NATed: fragments after the first (they carry no ports) to a
//! Service address or leaving for masquerade are dropped (`nat_fragment`;
//! Linux reassembles first, xvs does not reassemble); ICMP errors about a
//! NATed connection pass untranslated.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use smoltcp::wire::{Icmpv4Packet, Ipv4Packet, TcpPacket};
use xvs_control::flowrule::{IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP};
use xvs_flowtable::snat_ports::SnatPool;
use xvs_flowtable::{CtError, FlowKey, FlowTable, PacketInfo, Verdict};

use super::{Meta, Next, State, NO_HOP, NO_KEY};
use crate::drop::DropReason;
use crate::packet::FramePool;
use crate::port::Batch;
use crate::services::{Choice, NewConnection, Scope};
use crate::snapshot::{PortRole, Snapshot};
use crate::wire::{checksum, UDP_HEADER_LEN};

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMP_PORT_UNREACHABLE: u8 = 3;

/// Source ports tried when a Service connection's reply tuple clashes
/// with another connection's.
const CLASH_RETRIES: u32 = 8;

/// TCP flags byte offset in the TCP header.
const TCP_FLAGS: usize = 13;

/// The NAT state every worker shares: the SNAT port allocator of the
/// node's source addresses and the Service affinity table.
pub struct NatTables {
    pub snat: SnatPool,
    /// (client, Service port) -> endpoint, for `ClientIP` affinity.
    pub affinity: FlowTable,
    /// Connections refused because no SNAT port was free (xvsd logs it).
    pub snat_exhausted: AtomicU64,
}

/// A new connection's reply tuple and the SNAT port it holds.
type Plan = (FlowKey, Option<(Ipv4Addr, u16)>);

/// Where a new connection to a Service goes.
struct Target {
    addr: Ipv4Addr,
    port: u16,
    /// The source address to SNAT to, if it must be.
    snat: Option<Ipv4Addr>,
}

/// What the stage decided for a packet.
enum Outcome {
    /// Routed (or delivered locally) with whatever tuple it now has.
    Route,
    /// Refused: a TCP RST or an ICMP port unreachable goes back.
    Reject,
    Drop(DropReason),
}

/// The parts of a packet tracking and NAT read.
#[derive(Clone, Copy)]
struct Conn {
    key: FlowKey,
    info: PacketInfo,
    /// May start a connection (an echo reply may not).
    opens: bool,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
}

impl State {
    pub(super) fn ip4_nat<P: FramePool>(
        &mut self,
        snap: &Snapshot,
        pool: &mut P,
        batch: &mut Batch,
    ) {
        for (i, pkt) in batch.iter().enumerate() {
            if self.meta[i].next != Next::Ip4Nat {
                continue;
            }
            let m = self.meta[i];
            let l3 = usize::from(m.l3);
            let ip = &mut pkt.data_mut(pool)[l3..];
            match self.nat_packet(snap, i, ip, &m) {
                Outcome::Route => {
                    let dst = Ipv4Packet::new_unchecked(&*ip).dst_addr();
                    let next = if snap.is_local(dst) {
                        Next::Ip4Local
                    } else {
                        Next::Ip4Forward
                    };
                    self.set_next(i, next);
                }
                Outcome::Reject => {
                    if ip.get(9) == Some(&IP_PROTO_TCP) {
                        self.meta[i].drop = DropReason::ServiceNoEndpoints;
                        self.set_next(i, Next::TcpReset);
                    } else {
                        self.refuse(
                            i,
                            DropReason::ServiceNoEndpoints,
                            ICMP_DEST_UNREACHABLE,
                            ICMP_PORT_UNREACHABLE,
                            0,
                        );
                    }
                }
                Outcome::Drop(reason) => self.drop_packet(i, reason),
            }
        }
    }

    /// Tracks and NATs one packet (`ip`, validated by ip4-input).
    #[inline]
    fn nat_packet(&mut self, snap: &Snapshot, i: usize, ip: &mut [u8], m: &Meta) -> Outcome {
        let Some(conn) = parse(ip) else {
            return self.untracked(snap, ip, m);
        };
        // Taken out for the call (a move, not a reference-count change).
        let Some(ct) = self.conntrack.take() else {
            return self.stateless(snap, i, ip, &conn, m);
        };
        let out = self.tracked(snap, i, ip, &conn, m, &ct);
        self.conntrack = Some(ct);
        out
    }

    fn tracked(
        &mut self,
        snap: &Snapshot,
        i: usize,
        ip: &mut [u8],
        c: &Conn,
        m: &Meta,
        ct: &xvs_flowtable::Conntrack,
    ) -> Outcome {
        let now = self.now_ns;
        for _ in 0..2 {
            let Some(r) = ct.lookup(&c.key) else { break };
            match ct.update(&r, &c.info, now) {
                Verdict::Stale => continue,
                Verdict::Reopen => break,
                Verdict::Invalid => self.counters.ct_invalid += 1,
                Verdict::Accept { .. } => {}
            }
            return match ct.counterpart(&r) {
                Some(other) => {
                    rewrite(ip, c, &other.reversed());
                    Outcome::Route
                }
                // Removed since the update: handled as a new packet next
                // time; this one goes as it is.
                None => Outcome::Route,
            };
        }
        if !c.opens {
            self.counters.ct_untracked += 1;
            return Outcome::Route;
        }
        // A new connection: where does it go?
        let (reply, snat) = match self.new_connection(snap, i, c, m) {
            Ok(Some(plan)) => plan,
            Ok(None) => return Outcome::Route,
            Err(out) => return out,
        };
        let nat = reply != c.key.reversed();
        let mut reply = reply;
        for attempt in 0..=CLASH_RETRIES {
            let e = match ct.create(c.key, reply, &c.info, now) {
                Ok(_) => {
                    self.counters.ct_created += 1;
                    if reply != c.key.reversed() {
                        self.forget_cached_hop(i);
                        rewrite(ip, c, &reply.reversed());
                    }
                    return Outcome::Route;
                }
                Err(e) => e,
            };
            // Another core created this very connection first: use it.
            if let (CtError::Exists(_), Some(r)) = (e, ct.lookup(&c.key)) {
                if let Some((addr, port)) = snat {
                    self.release_snat(addr, port);
                }
                if ct.update(&r, &c.info, now) == Verdict::Invalid {
                    self.counters.ct_invalid += 1;
                }
                if let Some(other) = ct.counterpart(&r) {
                    if other.reversed() != c.key {
                        self.forget_cached_hop(i);
                    }
                    rewrite(ip, c, &other.reversed());
                }
                return Outcome::Route;
            }
            // The reply tuple is another connection's: the same client
            // port reached the same endpoint through another Service
            // port or address (Linux reuses a source port toward
            // different destinations). As Linux's NAT does on a clash,
            // the connection gets another source port. (A port from the
            // SNAT pool never clashes: the pool hands each out once.)
            if matches!(e, CtError::Exists(_)) && nat && snat.is_none() && attempt < CLASH_RETRIES {
                let t = reply.tuple();
                let (IpAddr::V4(addr), IpAddr::V4(client)) = (t.src, t.dst) else {
                    break;
                };
                let h = c.key.hash(u64::from(attempt) + 1);
                let port = u16::try_from(1024 + h % (65536 - 1024)).unwrap_or(1024);
                reply = FlowKey::v4(0, c.proto, addr, t.src_port, client, port);
                self.counters.nat_port_remaps += 1;
                continue;
            }
            if let Some((addr, port)) = snat {
                self.release_snat(addr, port);
            }
            return match e {
                CtError::Exists(_) if nat => Outcome::Drop(DropReason::NatClash),
                CtError::Full if nat => Outcome::Drop(DropReason::ConntrackFull),
                CtError::Invalid if nat => Outcome::Drop(DropReason::NatInvalid),
                _ => {
                    self.counters.ct_untracked += 1;
                    Outcome::Route
                }
            };
        }
        Outcome::Drop(DropReason::NatClash)
    }

    /// The reply tuple of a new connection `c` (and the SNAT port it
    /// holds), `Ok(None)` for one not to track (to the switch itself), or
    /// the outcome that ends it here.
    fn new_connection(
        &mut self,
        snap: &Snapshot,
        i: usize,
        c: &Conn,
        m: &Meta,
    ) -> Result<Option<Plan>, Outcome> {
        if let Some(Target { addr, port, snat }) = self.service_target(snap, i, c)? {
            let (src, sport, snat) = match snat {
                Some(snat_ip) => {
                    let p = self.allocate_snat(snat_ip, c)?;
                    (snat_ip, p, Some((snat_ip, p)))
                }
                None => (c.src, c.sport, None),
            };
            self.counters.svc_connections += 1;
            let reply = FlowKey::v4(0, c.proto, addr, port, src, sport);
            return Ok(Some((reply, snat)));
        }
        if masquerades(snap, self.in_port.role, c.dst, m) {
            let p = self.allocate_snat(snap.node_ip, c)?;
            self.counters.snat_connections += 1;
            self.trace(i, "ip4-nat", || {
                format!(
                    "masquerade: {}:{} leaves as {}:{p}",
                    c.src, c.sport, snap.node_ip
                )
            });
            // An echo's identifier is both "ports" of its key.
            let dport = if c.proto == IP_PROTO_ICMP { p } else { c.dport };
            let reply = FlowKey::v4(0, c.proto, c.dst, dport, snap.node_ip, p);
            return Ok(Some((reply, Some((snap.node_ip, p)))));
        }
        if snap.is_local(c.dst) {
            return Ok(None);
        }
        Ok(Some((c.key.reversed(), None)))
    }

    /// Where a new connection to a Service goes: the endpoint, and the
    /// address to SNAT the source to if it must be; `Ok(None)` if `c` is
    /// not for a Service.
    fn service_target(
        &mut self,
        snap: &Snapshot,
        i: usize,
        c: &Conn,
    ) -> Result<Option<Target>, Outcome> {
        if c.proto != IP_PROTO_TCP && c.proto != IP_PROTO_UDP {
            return Ok(None);
        }
        let Some(front) = snap.services.lookup(c.proto, c.dst, c.dport, snap.node_ip) else {
            return Ok(None);
        };
        let affinity = self.nat.as_deref().map(|n| &n.affinity);
        let now_secs = u32::try_from(self.now_ns / 1_000_000_000).unwrap_or(u32::MAX);
        let conn = NewConnection {
            proto: c.proto,
            client: c.src,
            client_port: c.sport,
            dst: c.dst,
            dst_port: c.dport,
        };
        let choice = front.choose(&conn, affinity, now_secs);
        let name = front.service.name();
        match choice {
            Choice::Backend {
                ip,
                port,
                local,
                sticky,
            } => {
                let hairpin = ip == c.src;
                let snat = (hairpin || (front.scope == Scope::External && !local))
                    .then_some(snap.cluster_snat_ip);
                self.trace(i, "ip4-nat", || {
                    format!(
                        "service {name}: {}:{} -> {ip}:{port}{}{}",
                        c.dst,
                        c.dport,
                        if sticky { " (affinity)" } else { "" },
                        match (snat, hairpin) {
                            (Some(s), true) => format!(", hairpin snat to {s}"),
                            (Some(s), false) => format!(", snat to {s}"),
                            (None, _) => String::new(),
                        }
                    )
                });
                Ok(Some(Target {
                    addr: ip,
                    port,
                    snat,
                }))
            }
            Choice::NoEndpoints => {
                self.trace(i, "ip4-nat", || {
                    format!("service {name}: no endpoints, rejected")
                });
                Err(Outcome::Reject)
            }
            Choice::NoLocalEndpoints => {
                self.trace(i, "ip4-nat", || {
                    format!("service {name}: no local endpoint")
                });
                Err(Outcome::Drop(DropReason::ServiceNoLocalEndpoints))
            }
        }
    }

    /// Routes packet `i` afresh and removes the cached flow it hit, if any
    /// (see the module documentation).
    fn forget_cached_hop(&mut self, i: usize) {
        let m = &mut self.meta[i];
        m.hop = NO_HOP;
        let k = std::mem::replace(&mut m.hit_key, NO_KEY);
        if let (Some(flows), Some(key)) = (&self.flows, self.keys.get(usize::from(k))) {
            flows.remove(key);
        }
    }

    /// A port of `addr` for the new connection `c`.
    fn allocate_snat(&mut self, addr: Ipv4Addr, c: &Conn) -> Result<u16, Outcome> {
        let Some(nat) = self.nat.as_deref() else {
            // No allocator (a pipeline without NAT tables): keep the port.
            return Ok(c.sport);
        };
        match nat.snat.allocate(addr, c.key.hash(0)) {
            Some(p) => Ok(p),
            None => {
                nat.snat_exhausted.fetch_add(1, Ordering::Relaxed);
                Err(Outcome::Drop(DropReason::SnatPortsExhausted))
            }
        }
    }

    fn release_snat(&self, addr: Ipv4Addr, port: u16) {
        if let Some(nat) = self.nat.as_deref() {
            nat.snat.release(addr, port);
        }
    }

    /// Without conntrack (`xvsctl trace`): what a new connection would get,
    /// applied to the packet, with nothing remembered.
    fn stateless(
        &mut self,
        snap: &Snapshot,
        i: usize,
        ip: &mut [u8],
        c: &Conn,
        m: &Meta,
    ) -> Outcome {
        match self.new_connection(snap, i, c, m) {
            Ok(Some((reply, _))) => {
                if reply != c.key.reversed() {
                    self.forget_cached_hop(i);
                    rewrite(ip, c, &reply.reversed());
                }
                Outcome::Route
            }
            Ok(None) => Outcome::Route,
            Err(out) => out,
        }
    }

    /// A packet conntrack does not follow: ICMP other than echo, or a
    /// fragment after the first. Such a fragment of a datagram that would
    /// be NATed cannot be (it has no ports), so it is dropped.
    fn untracked(&mut self, snap: &Snapshot, ip: &[u8], m: &Meta) -> Outcome {
        let p = Ipv4Packet::new_unchecked(ip);
        let dst = p.dst_addr();
        if p.frag_offset() != 0
            && (snap.services.is_service_address(dst)
                || masquerades(snap, self.in_port.role, dst, m))
        {
            return Outcome::Drop(DropReason::NatFragment);
        }
        Outcome::Route
    }
}

/// Whether a new connection to `dst` from a port of `role` leaves the
/// cluster and must be masqueraded.
fn masquerades(snap: &Snapshot, role: PortRole, dst: Ipv4Addr, m: &Meta) -> bool {
    matches!(role, PortRole::Pod { .. })
        && !m.decapped
        && snap.cluster_prefix.is_some_and(|c| !c.contains(dst))
        && !snap.is_local(dst)
}

/// The tracking view of an IPv4 packet, `None` for what is not tracked:
/// fragments after the first, ICMP other than echo, L4 headers cut short.
fn parse(bytes: &[u8]) -> Option<Conn> {
    let ip = Ipv4Packet::new_checked(bytes).ok()?;
    if ip.frag_offset() != 0 {
        return None;
    }
    let proto = u8::from(ip.next_header());
    let len = u32::from(ip.total_len());
    let l4 = ip.payload();
    let (sport, dport, info, opens) = match proto {
        IP_PROTO_TCP => {
            let tcp = TcpPacket::new_checked(l4).ok()?;
            let flags = *l4.get(TCP_FLAGS)?;
            (
                tcp.src_port(),
                tcp.dst_port(),
                PacketInfo::tcp(flags, len),
                true,
            )
        }
        IP_PROTO_UDP => {
            let h = l4.get(..UDP_HEADER_LEN)?;
            (
                u16::from_be_bytes([h[0], h[1]]),
                u16::from_be_bytes([h[2], h[3]]),
                PacketInfo::udp(len),
                true,
            )
        }
        IP_PROTO_ICMP => {
            let icmp = Icmpv4Packet::new_checked(l4).ok()?;
            let ty = u8::from(icmp.msg_type());
            if ty != ICMP_ECHO_REQUEST && ty != ICMP_ECHO_REPLY {
                return None;
            }
            let id = icmp.echo_ident();
            (id, id, PacketInfo::icmp(len), ty == ICMP_ECHO_REQUEST)
        }
        _ => (0, 0, PacketInfo::new(proto, 0, len), true),
    };
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    Some(Conn {
        key: FlowKey::v4(0, proto, src, sport, dst, dport),
        info,
        opens,
        proto,
        src,
        dst,
        sport,
        dport,
    })
}

/// Rewrites packet `ip` (tracked as `c`) to leave as `to`: addresses,
/// ports (an echo's identifier), and every checksum they are in, each by
/// RFC 1624's incremental update. Nothing is written if nothing changes.
fn rewrite(ip: &mut [u8], c: &Conn, to: &FlowKey) {
    let t = to.tuple();
    let (std::net::IpAddr::V4(src), std::net::IpAddr::V4(dst)) = (t.src, t.dst) else {
        return;
    };
    // An echo request carries its sender's identifier, a reply its
    // receiver's: the key's source and destination "port" respectively.
    let (sport, dport) = match c.info.proto {
        IP_PROTO_ICMP if c.opens => (t.src_port, t.src_port),
        IP_PROTO_ICMP => (t.dst_port, t.dst_port),
        _ => (t.src_port, t.dst_port),
    };
    if (src, dst, sport, dport) == (c.src, c.dst, c.sport, c.dport) {
        return;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let (old_src, old_dst) = (u32::from(c.src), u32::from(c.dst));
    let (new_src, new_dst) = (u32::from(src), u32::from(dst));
    let mut sum = u16::from_be_bytes([ip[10], ip[11]]);
    sum = checksum::update_u32(sum, old_src, new_src);
    sum = checksum::update_u32(sum, old_dst, new_dst);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let Some(l4) = ip.get_mut(ihl..) else { return };
    // Where the L4 checksum is, and whether the addresses (the pseudo
    // header) are in it. UDP's 0 means "none" and stays so.
    let (at, pseudo) = match c.proto {
        IP_PROTO_TCP => (16, true),
        IP_PROTO_UDP => (6, true),
        IP_PROTO_ICMP => (2, false),
        _ => return,
    };
    let Some(field) = l4.get(at..at + 2) else {
        return;
    };
    let mut sum = u16::from_be_bytes([field[0], field[1]]);
    let udp_none = c.proto == IP_PROTO_UDP && sum == 0;
    if pseudo {
        sum = checksum::update_u32(sum, old_src, new_src);
        sum = checksum::update_u32(sum, old_dst, new_dst);
    }
    if c.proto == IP_PROTO_ICMP {
        // The identifier, at offset 4.
        sum = checksum::update_u16(sum, c.sport, sport);
        l4[4..6].copy_from_slice(&sport.to_be_bytes());
    } else {
        sum = checksum::update_u16(sum, c.sport, sport);
        sum = checksum::update_u16(sum, c.dport, dport);
        l4[0..2].copy_from_slice(&sport.to_be_bytes());
        l4[2..4].copy_from_slice(&dport.to_be_bytes());
    }
    if udp_none {
        return;
    }
    if c.proto == IP_PROTO_UDP && sum == 0 {
        // RFC 768: a computed 0 is sent as all ones.
        sum = 0xffff;
    }
    l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    fn built(proto: u8, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4([10, 244, 1, 11], [10, 96, 0, 10], 64);
        let mut out = Vec::new();
        match proto {
            IP_PROTO_TCP => b.tcp(40000, 80, 7, 1000).syn().write(&mut out, payload),
            IP_PROTO_UDP => b.udp(40000, 80).write(&mut out, payload),
            _ => b.icmpv4_echo_request(0x1234, 1).write(&mut out, payload),
        }
        .unwrap();
        out
    }

    /// Checksums verified by etherparse's own computation.
    fn assert_checksums(ip: &[u8]) {
        let p = SlicedPacket::from_ip(ip).unwrap();
        let net = p.net.as_ref().unwrap();
        let etherparse::NetSlice::Ipv4(v4) = net else {
            panic!()
        };
        let h = v4.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let (src, dst) = (v4.header().source(), v4.header().destination());
        match p.transport.unwrap() {
            TransportSlice::Tcp(t) => {
                let want = t
                    .to_header()
                    .calc_checksum_ipv4_raw(src, dst, t.payload())
                    .unwrap();
                assert_eq!(t.checksum(), want);
            }
            TransportSlice::Udp(u) => {
                let want = u
                    .to_header()
                    .calc_checksum_ipv4_raw(src, dst, u.payload())
                    .unwrap();
                assert_eq!(u.checksum(), want);
            }
            TransportSlice::Icmpv4(i) => {
                let want = i.header().icmp_type.calc_checksum(i.payload());
                assert_eq!(i.checksum(), want);
            }
            _ => panic!("unexpected transport"),
        }
    }

    #[test]
    fn rewrite_keeps_every_checksum_right() {
        for proto in [IP_PROTO_TCP, IP_PROTO_UDP, IP_PROTO_ICMP] {
            let mut ip = built(proto, b"hello, service");
            let c = parse(&ip).unwrap();
            let to = FlowKey::v4(
                0,
                proto,
                [10, 244, 1, 0].into(),
                61234,
                [10, 244, 2, 13].into(),
                8080,
            );
            rewrite(&mut ip, &c, &to);
            assert_checksums(&ip);
            let again = parse(&ip).unwrap();
            assert_eq!(
                (again.src, again.dst),
                (Ipv4Addr::new(10, 244, 1, 0), Ipv4Addr::new(10, 244, 2, 13))
            );
            if proto == IP_PROTO_ICMP {
                assert_eq!(again.sport, 61234, "the echo identifier");
            } else {
                assert_eq!((again.sport, again.dport), (61234, 8080));
            }
        }
    }

    #[test]
    fn udp_without_checksum_stays_without() {
        let mut ip = built(IP_PROTO_UDP, b"x");
        let ihl = 20;
        ip[ihl + 6..ihl + 8].copy_from_slice(&[0, 0]);
        let c = parse(&ip).unwrap();
        let to = FlowKey::v4(
            0,
            IP_PROTO_UDP,
            [10, 244, 1, 11].into(),
            40000,
            [10, 244, 1, 12].into(),
            53,
        );
        rewrite(&mut ip, &c, &to);
        assert_eq!(&ip[ihl + 6..ihl + 8], &[0, 0]);
        assert_eq!(&ip[16..20], &[10, 244, 1, 12]);
    }
}
