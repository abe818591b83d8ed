//! NAT bindings, derived from a connection's two tuples.
//!
//! A connection stores its ORIGINAL tuple (the first packet as it arrived)
//! and its REPLY tuple (what answers look like when they arrive, after
//! NAT). Without NAT the reply tuple is the original reversed; every
//! difference between the two is a rewrite, and both directions read the
//! same difference, so they cannot disagree:
//!
//! ```text
//! original  c:x  -> vip:80        DNAT: reply source b:8080 != original
//! reply     b:8080 -> c:x               destination vip:80
//!
//! original  p:x  -> e:y           SNAT: reply destination n:z != original
//! reply     e:y  -> n:z                 source p:x
//! ```
//!
//! Original-direction packets get the DNAT destination and the SNAT source;
//! reply-direction packets get the inverse (source back to the VIP,
//! destination back to the pod). The binding is immutable: it is a function
//! of the tuples, which never change while the connection lives.

use std::net::IpAddr;

use crate::key::{FlowKey, FlowTuple};

use super::Dir;

/// An address and port (for ICMP echo, the echo identifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port),
        }
    }
}

/// One rewrite: `from` is what the original direction carries before NAT,
/// `to` what it carries after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rewrite {
    pub from: Endpoint,
    pub to: Endpoint,
}

/// The NAT of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NatBinding {
    /// Destination NAT (a Service VIP to a backend): original-direction
    /// packets go to `to` instead of `from`; reply-direction packets come
    /// back from `from` instead of `to`.
    pub dnat: Option<Rewrite>,
    /// Source NAT (masquerade, a pod to the node address): original
    /// packets leave from `to` instead of `from`; replies, addressed to
    /// `to`, are delivered to `from`.
    pub snat: Option<Rewrite>,
}

impl NatBinding {
    /// The binding implied by an original and a reply tuple.
    pub fn from_keys(orig: &FlowKey, reply: &FlowKey) -> NatBinding {
        let o = orig.tuple();
        let r = reply.tuple();
        let o_src = Endpoint {
            addr: o.src,
            port: o.src_port,
        };
        let o_dst = Endpoint {
            addr: o.dst,
            port: o.dst_port,
        };
        let r_src = Endpoint {
            addr: r.src,
            port: r.src_port,
        };
        let r_dst = Endpoint {
            addr: r.dst,
            port: r.dst_port,
        };
        NatBinding {
            dnat: (r_src != o_dst).then_some(Rewrite {
                from: o_dst,
                to: r_src,
            }),
            snat: (r_dst != o_src).then_some(Rewrite {
                from: o_src,
                to: r_dst,
            }),
        }
    }

    /// No rewrite in either direction.
    pub fn is_identity(&self) -> bool {
        self.dnat.is_none() && self.snat.is_none()
    }

    /// The tuple a packet of direction `dir` leaves with, given the tuple it
    /// arrived with. For the original tuple this gives the reply tuple
    /// reversed, and for the reply tuple the original reversed: each side
    /// sees the addresses it expects. Zone, VNI and protocol are kept.
    pub fn translate(&self, dir: Dir, t: &FlowTuple) -> FlowTuple {
        let mut out = *t;
        match dir {
            Dir::Original => {
                if let Some(d) = self.dnat {
                    out.dst = d.to.addr;
                    out.dst_port = d.to.port;
                }
                if let Some(s) = self.snat {
                    out.src = s.to.addr;
                    out.src_port = s.to.port;
                }
            }
            Dir::Reply => {
                if let Some(d) = self.dnat {
                    out.src = d.from.addr;
                    out.src_port = d.from.port;
                }
                if let Some(s) = self.snat {
                    out.dst = s.from.addr;
                    out.dst_port = s.from.port;
                }
            }
        }
        out
    }
}

impl std::fmt::Display for NatBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_identity() {
            return f.write_str("none");
        }
        let mut sep = "";
        if let Some(d) = self.dnat {
            write!(f, "dnat {}->{}", d.from, d.to)?;
            sep = " ";
        }
        if let Some(s) = self.snat {
            write!(f, "{sep}snat {}->{}", s.from, s.to)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const C: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 7);
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
    const N: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
    const E: Ipv4Addr = Ipv4Addr::new(93, 184, 216, 34);

    fn k(s: Ipv4Addr, sp: u16, d: Ipv4Addr, dp: u16) -> FlowKey {
        FlowKey::v4(0, 6, s, sp, d, dp)
    }

    fn check_round_trip(orig: FlowKey, reply: FlowKey) -> NatBinding {
        let nat = NatBinding::from_keys(&orig, &reply);
        assert_eq!(
            nat.translate(Dir::Original, &orig.tuple()),
            reply.reversed().tuple()
        );
        assert_eq!(
            nat.translate(Dir::Reply, &reply.tuple()),
            orig.reversed().tuple()
        );
        nat
    }

    #[test]
    fn no_nat_is_identity() {
        let o = k(C, 40000, B, 80);
        let nat = check_round_trip(o, o.reversed());
        assert!(nat.is_identity());
        assert_eq!(nat.to_string(), "none");
    }

    #[test]
    fn dnat_snat_and_both_translate_both_ways() {
        let o = k(C, 40000, VIP, 80);
        let nat = check_round_trip(o, k(B, 8080, C, 40000));
        assert_eq!(nat.snat, None);
        assert_eq!(nat.to_string(), "dnat 10.96.0.10:80->10.0.0.5:8080");

        let o = k(C, 40000, E, 443);
        let nat = check_round_trip(o, k(E, 443, N, 61000));
        assert_eq!(nat.dnat, None);
        assert_eq!(nat.to_string(), "snat 10.244.1.7:40000->192.168.1.10:61000");

        let o = k(C, 40000, VIP, 80);
        let nat = check_round_trip(o, k(B, 8080, N, 61000));
        assert!(nat.dnat.is_some() && nat.snat.is_some());
    }
}
