//! arp-reply: the switch answers ARP for the pod gateway (and the proxy-ARP
//! list) on pod ports with its own MAC, the way Calico's proxy ARP does.
//!
//! The reply is written into the request's own frame and sent back out of
//! the port it came in on. ARP on the uplink belongs to the node's kernel
//! (the XDP steering program passes it there), so here it is counted and
//! dropped.

use std::net::Ipv4Addr;

use smoltcp::wire::{
    ArpHardware, ArpOperation, ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol,
};

use super::{Next, State};
use crate::drop::DropReason;
use crate::packet::{frame_u16, FramePool};
use crate::port::Batch;
use crate::snapshot::{PortRole, Snapshot};
use crate::wire::{ARP_IPV4_LEN, ETHERNET_HEADER_LEN};

impl State {
    #[cold]
    pub(super) fn arp_reply<P: FramePool>(
        &mut self,
        snap: &Snapshot,
        pool: &mut P,
        batch: &mut Batch,
    ) {
        let (role, our_mac) = (self.in_port.role, self.in_port.mac);
        for (i, pkt) in batch.iter_mut().enumerate() {
            if self.meta[i].next != Next::Arp {
                continue;
            }
            let PortRole::Pod { ip: pod_ip } = role else {
                self.drop_packet(i, DropReason::ArpNotForUs);
                continue;
            };
            let data = pkt.data_mut(pool);
            let (_, payload) = data.split_at_mut(ETHERNET_HEADER_LEN);
            let Ok(arp) = ArpPacket::new_checked(&payload[..]) else {
                self.drop_packet(i, DropReason::MalformedArp);
                continue;
            };
            if arp.hardware_type() != ArpHardware::Ethernet
                || arp.protocol_type() != EthernetProtocol::Ipv4
                || arp.hardware_len() != 6
                || arp.protocol_len() != 4
            {
                self.drop_packet(i, DropReason::MalformedArp);
                continue;
            }
            let mut arp = ArpPacket::new_unchecked(&mut payload[..ARP_IPV4_LEN]);
            let target = ipv4(arp.target_protocol_addr());
            let sender = ipv4(arp.source_protocol_addr());
            // A pod probing or announcing its own address (RFC 5227) is not
            // asking us anything.
            if arp.operation() != ArpOperation::Request
                || target == pod_ip
                || !snap.proxy_arp.contains(&target)
            {
                self.drop_packet(i, DropReason::ArpNotForUs);
                self.trace(i, "arp-reply", || {
                    format!("who-has {target} tell {sender}: not ours")
                });
                continue;
            }
            let requester = EthernetAddress::from_bytes(arp.source_hardware_addr());
            let ours = EthernetAddress(our_mac.0);
            arp.set_operation(ArpOperation::Reply);
            arp.set_target_hardware_addr(requester.as_bytes());
            arp.set_target_protocol_addr(&sender.octets());
            arp.set_source_hardware_addr(ours.as_bytes());
            arp.set_source_protocol_addr(&target.octets());
            let mut eth = EthernetFrame::new_unchecked(&mut data[..]);
            eth.set_dst_addr(requester);
            eth.set_src_addr(ours);
            pkt.len = frame_u16(ETHERNET_HEADER_LEN + ARP_IPV4_LEN);
            self.counters.arp_replies += 1;
            let in_port = self.in_port.id;
            self.output_to(i, in_port);
            self.trace(i, "arp-reply", || {
                format!("who-has {target} tell {sender}: reply {target} is-at {our_mac}")
            });
        }
    }
}

fn ipv4(bytes: &[u8]) -> Ipv4Addr {
    match bytes {
        [a, b, c, d] => Ipv4Addr::new(*a, *b, *c, *d),
        _ => Ipv4Addr::UNSPECIFIED,
    }
}
