//! ethernet-input: parse the L2 header and pick the pipeline a frame enters.
//!
//! Bridged ports hand every frame to the learning bridge (tags and all),
//! except link-local IEEE 802.1D reserved groups, which a bridge must not
//! forward. Routed ports (pods, uplink) take untagged frames addressed to
//! the switch's MAC on that port, plus broadcast ARP; everything else is a
//! counted drop.

use smoltcp::wire::{EthernetFrame, EthernetProtocol};
use xvs_control::state::MacAddr;

use super::{Next, State};
use crate::drop::DropReason;
use crate::packet::{frame_u16, FramePool};
use crate::port::Batch;
use crate::snapshot::{PortRole, Snapshot};
use crate::wire::vlan::{self, Tag};
use crate::wire::{ETHERNET_HEADER_LEN, ETHERTYPE_VLAN};

impl State {
    pub(super) fn ethernet_input<P: FramePool>(
        &mut self,
        _snap: &Snapshot,
        pool: &mut P,
        batch: &mut Batch,
    ) {
        let (role, port_mac) = (self.in_port.role, self.in_port.mac);
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
            if src.is_multicast() || src == MacAddr::default() {
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
            self.meta[i].l3 = frame_u16(l3);
            self.meta[i].vid = vid.unwrap_or(0);

            let next = match role {
                PortRole::Bridged { .. } if is_8021d_reserved(dst) => Err(DropReason::L2Reserved),
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

/// 01:80:c2:00:00:00 through 01:80:c2:00:00:0f (IEEE 802.1D table 7-10).
fn is_8021d_reserved(mac: MacAddr) -> bool {
    matches!(mac.0, [0x01, 0x80, 0xc2, 0x00, 0x00, last] if last <= 0x0f)
}
