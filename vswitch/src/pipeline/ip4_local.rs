//! ip4-local: packets addressed to the switch itself.
//!
//! The pod gateway answers ICMP echo, so `ping 169.254.1.1` from a pod works
//! as it does with Calico. The reply is built in the request's frame (swap
//! the addresses, flip the type, patch both checksums) and routed back like
//! any packet. An echo request carrying IP options is not answered: RFC 1122
//! 3.2.2.6 would have a reply reverse a source route and update a record
//! route, which the in-place reply does not do. Everything else addressed to
//! the switch (other protocols; the node and VTEP addresses, whose traffic
//! belongs to the node's own stack) is counted and dropped.

use smoltcp::wire::{Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet};

use super::{Next, State, ORIGINATED_TTL};
use crate::drop::DropReason;
use crate::packet::FramePool;
use crate::port::Batch;
use crate::snapshot::Snapshot;
use crate::wire::{checksum, IPV4_HEADER_LEN};

impl State {
    #[cold]
    pub(super) fn ip4_local<P: FramePool>(
        &mut self,
        snap: &Snapshot,
        pool: &mut P,
        batch: &mut Batch,
    ) {
        for (i, pkt) in batch.iter().enumerate() {
            if self.meta[i].next != Next::Ip4Local {
                continue;
            }
            let l3 = usize::from(self.meta[i].l3);
            let data = pkt.data_mut(pool);
            let mut ip = Ipv4Packet::new_unchecked(&mut data[l3..]);
            if ip.dst_addr() != snap.gateway_ip
                || ip.next_header() != IpProtocol::Icmp
                || usize::from(ip.header_len()) != IPV4_HEADER_LEN
                || ip.more_frags()
                || ip.frag_offset() != 0
            {
                self.drop_packet(i, DropReason::LocalUnsupported);
                continue;
            }
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            let Ok(mut icmp) = Icmpv4Packet::new_checked(ip.payload_mut()) else {
                self.drop_packet(i, DropReason::MalformedIcmp);
                continue;
            };
            if !icmp.verify_checksum() {
                self.drop_packet(i, DropReason::MalformedIcmp);
                continue;
            }
            if icmp.msg_type() != Icmpv4Message::EchoRequest || icmp.msg_code() != 0 {
                self.drop_packet(i, DropReason::LocalUnsupported);
                continue;
            }
            let old = u16::from_be_bytes([u8::from(Icmpv4Message::EchoRequest), 0]);
            let new = u16::from_be_bytes([u8::from(Icmpv4Message::EchoReply), 0]);
            let sum = checksum::update_u16(icmp.checksum(), old, new);
            icmp.set_msg_type(Icmpv4Message::EchoReply);
            icmp.set_checksum(sum);
            let mut ip = Ipv4Packet::new_unchecked(&mut data[l3..]);
            ip.set_src_addr(dst);
            ip.set_dst_addr(src);
            ip.set_hop_limit(ORIGINATED_TTL);
            ip.fill_checksum();
            self.counters.echo_replies += 1;
            self.meta[i].originated = true;
            self.set_next(i, Next::Ip4Forward);
            self.trace(i, "ip4-local", || {
                format!("echo request {src} > {dst}: reply")
            });
        }
    }
}
