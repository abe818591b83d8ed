//! ethernet-input: parse the L2 header and pick the pipeline a frame enters.
//!
//! Bridged ports hand every frame to the learning bridge (tags and all).
//! Routed ports (pods, uplink) take untagged frames addressed to the
//! switch's MAC on that port, plus broadcast ARP; everything else is a
//! counted drop.

use smoltcp::wire::{EthernetFrame, EthernetProtocol};
use xvs_control::state::MacAddr;

use super::{Next, Pipeline};
use crate::drop::DropReason;
use crate::packet::{frame_u16, FramePool};
use crate::port::Batch;
use crate::snapshot::PortRole;
use crate::wire::vlan::{self, Tag};
use crate::wire::{ETHERNET_HEADER_LEN, ETHERTYPE_VLAN};

impl Pipeline {
    pub(super) fn ethernet_input<P: FramePool>(&mut self, pool: &mut P, batch: &mut Batch) {
        let Some(port) = self.snapshot.ports.get(usize::from(self.in_port)) else {
            return;
        };
        let (role, port_mac) = (port.role, port.mac);
        for (i, pkt) in batch.iter().enumerate() {
            if self.meta[i].next != Next::EthernetInput {
                continue;
            }
            let data = pkt.data(pool);
            let Ok(eth) = EthernetFrame::new_checked(data) else {
                self.drop_packet(i, DropReason::TruncatedEthernet);
                continue;
            };
            let src = MacAddr(eth.src_addr().0);
            let dst = MacAddr(eth.dst_addr().0);
            if src.is_multicast() {
                self.drop_packet(i, DropReason::BadSourceMac);
                continue;
            }
            let (ethertype, vid, l3) = if u16::from(eth.ethertype()) == ETHERTYPE_VLAN {
                let Ok(tag) = Tag::new_checked(eth.payload()) else {
                    self.drop_packet(i, DropReason::TruncatedVlan);
                    continue;
                };
                (
                    tag.ethertype(),
                    Some(tag.vid()),
                    ETHERNET_HEADER_LEN + vlan::TAG_LEN,
                )
            } else {
                (eth.ethertype(), None, ETHERNET_HEADER_LEN)
            };
            let m = &mut self.meta[i];
            m.l3 = frame_u16(l3);
            m.vid = vid.unwrap_or(0);

            let next = match role {
                PortRole::Bridged { .. } => Ok(Next::L2Bridge),
                PortRole::Pod { .. } | PortRole::Uplink => {
                    if vid.is_some() {
                        Err(DropReason::VlanOnRoutedPort)
                    } else if dst == port_mac {
                        match ethertype {
                            EthernetProtocol::Ipv4 => Ok(Next::Ip4Input),
                            EthernetProtocol::Arp => Ok(Next::Arp),
                            _ => Err(DropReason::UnsupportedEthertype),
                        }
                    } else if dst == MacAddr::BROADCAST && ethertype == EthernetProtocol::Arp {
                        Ok(Next::Arp)
                    } else if dst.is_multicast() {
                        Err(DropReason::UnsupportedEthertype)
                    } else {
                        Err(DropReason::NotOurMac)
                    }
                }
            };
            match next {
                Ok(next) => self.set_next(i, next),
                Err(reason) => self.drop_packet(i, reason),
            }
            self.trace(i, "ethernet-input", || {
                let tag = vid.map(|v| format!(" vlan {v}")).unwrap_or_default();
                format!("{src} > {dst}{tag} {ethertype} {}", super::decision(next))
            });
        }
    }
}
