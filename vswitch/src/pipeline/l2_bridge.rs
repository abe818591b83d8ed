//! l2-bridge: a MAC learning bridge per bridge domain.
//!
//! Learns the source MAC on the in-port, then sends a unicast frame to the
//! port its destination was learned on; broadcast, multicast and unknown
//! unicast are flooded to every other port of the domain, never back out of
//! the in-port. A frame whose destination was learned on its own in-port is
//! filtered (it already reached its segment). Frames keep their VLAN tag;
//! learning is per (domain, VLAN), like the Linux bridge's FDB.
//!
//! Flooding to N ports copies the frame N-1 times into fresh frames from
//! the pool (the last port gets the original); when the pool runs dry the
//! missing copies are counted as drops.

use smoltcp::wire::EthernetFrame;
use xvs_control::state::MacAddr;

use super::{Next, State};
use crate::drop::DropReason;
use crate::l2::mac_table::Learned;
use crate::packet::{FramePool, Packet};
use crate::port::Batch;
use crate::snapshot::{PortRole, Snapshot};

impl State {
    pub(super) fn l2_bridge<P: FramePool>(
        &mut self,
        snap: &Snapshot,
        pool: &mut P,
        batch: &mut Batch,
    ) {
        let in_port = self.in_port.id;
        let PortRole::Bridged { domain } = self.in_port.role else {
            return;
        };
        let members = snap
            .bridge_domains
            .get(&domain)
            .map_or(&[][..], Vec::as_slice);
        for (i, pkt) in batch.iter().enumerate() {
            if self.meta[i].next != Next::L2Bridge {
                continue;
            }
            let vid = self.meta[i].vid;
            let eth = EthernetFrame::new_unchecked(pkt.data(pool));
            let (src, dst) = (MacAddr(eth.src_addr().0), MacAddr(eth.dst_addr().0));
            match self.mac_table.learn(domain, vid, src, in_port, self.now_ns) {
                Learned::New => self.counters.mac_learned += 1,
                Learned::Refreshed => {}
                Learned::Full => self.counters.mac_table_full += 1,
            }
            let known = if dst.is_multicast() {
                None
            } else {
                self.mac_table.lookup(domain, vid, dst, self.now_ns)
            };
            // A learned port that left the domain (new snapshot) is not a
            // destination any more: flood instead.
            let in_domain = |p: &u16| {
                snap.ports
                    .get(usize::from(*p))
                    .is_some_and(|p| p.role == PortRole::Bridged { domain })
            };
            match known.filter(in_domain) {
                Some(port) if port == in_port => {
                    self.drop_packet(i, DropReason::L2SameSegment);
                    self.trace(i, "l2-bridge", || {
                        format!("{dst} is on the in-port: filtered")
                    });
                }
                Some(port) => {
                    self.counters.bridged += 1;
                    self.output_to(i, port);
                    self.trace(i, "l2-bridge", || {
                        format!(
                            "{dst} learned on {}: forward",
                            snap.ports[usize::from(port)].name
                        )
                    });
                }
                None => self.flood(pool, i, *pkt, members),
            }
        }
    }

    /// Sends packet `i` to every member of its domain but the in-port.
    #[cold]
    fn flood<P: FramePool>(&mut self, pool: &mut P, i: usize, pkt: Packet, members: &[u16]) {
        let in_port = self.in_port.id;
        let mut targets = members.iter().copied().filter(|&p| p != in_port);
        let Some(last) = targets.next_back() else {
            self.drop_packet(i, DropReason::L2NoFloodTarget);
            return;
        };
        for port in targets {
            let Some(frame) = pool.alloc() else {
                self.counters.count_drop(DropReason::PoolExhausted);
                continue;
            };
            let copy = pool.copy_packet(&pkt, frame);
            self.enqueue(pool, port, copy);
        }
        self.counters.flooded += 1;
        self.output_to(i, last);
        self.trace(i, "l2-bridge", || {
            format!("flood to {} ports", members.len() - 1)
        });
    }
}
