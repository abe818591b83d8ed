//! Why a packet was dropped, and the per-worker counters.
//!
//! On the datapath a drop is a reason, never a panic or an error that
//! bubbles: each stage sets the packet's next step to drop with one of these
//! reasons, and the output stage counts it and frees the frame (VPP's
//! `*_error.def` counters, OVS's coverage counters). `xvsctl stats` shows
//! them by name.

macro_rules! drop_reasons {
    ($($(#[doc = $doc:literal])* $name:ident = $text:literal,)*) => {
        /// Why the pipeline dropped a packet.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $($(#[doc = $doc])* $name,)*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
            /// Number of reasons (size of a counter array).
            pub const COUNT: usize = Self::ALL.len();

            /// Short snake_case name, stable for scripts and metrics.
            pub fn name(self) -> &'static str {
                match self {
                    $(DropReason::$name => $text,)*
                }
            }
        }
    };
}

drop_reasons! {
    /// Shorter than an Ethernet header.
    TruncatedEthernet = "truncated_ethernet",
    /// 802.1Q tag cut short.
    TruncatedVlan = "truncated_vlan",
    /// An ethertype this port does not handle (e.g. IPv6 on a routed port).
    UnsupportedEthertype = "unsupported_ethertype",
    /// A tagged frame on a routed port.
    VlanOnRoutedPort = "vlan_on_routed_port",
    /// A routed port received a frame not addressed to the switch: unicast
    /// for another MAC, or multicast/broadcast that is not ARP (e.g. a pod's
    /// DHCP or IPv6 neighbour discovery).
    NotOurMac = "not_our_mac",
    /// The source MAC is multicast, broadcast or all zeroes.
    BadSourceMac = "bad_source_mac",
    /// An IEEE 802.1D reserved group address (01:80:c2:00:00:0x: STP,
    /// PAUSE, LACP, 802.1X, LLDP): link-local, never bridged.
    L2Reserved = "l2_reserved",
    /// ARP that is not Ethernet/IPv4 or is cut short.
    MalformedArp = "malformed_arp",
    /// ARP the switch does not answer (not a request, or not for an address
    /// it proxies).
    ArpNotForUs = "arp_not_for_us",
    /// IPv4 header shorter than 20 bytes, IHL < 5, or lengths that lie.
    MalformedIpv4 = "malformed_ipv4",
    /// IPv4 header checksum does not verify.
    BadIpv4Checksum = "bad_ipv4_checksum",
    /// A pod sent from an address that is not its own.
    SpoofedSource = "spoofed_source",
    /// Broadcast, multicast or otherwise unroutable destination.
    NotRoutable = "not_routable",
    /// A source or destination address that must never appear on a wire
    /// (0/8, 127/8, 240/4, multicast source; RFC 1812 5.3.7), or a source in
    /// this node's pod CIDR arriving from the uplink (reverse-path check).
    MartianAddress = "martian_address",
    /// No route to the destination (an ICMP unreachable may have been sent).
    NoRoute = "no_route",
    /// An address of this node's pod CIDR that no pod has (an ICMP host
    /// unreachable may have been sent).
    HostUnreachable = "host_unreachable",
    /// TTL ran out (an ICMP time exceeded may have been sent).
    TtlExpired = "ttl_expired",
    /// Larger than the egress MTU (an ICMP fragmentation needed may have
    /// been sent when DF was set; xvs does not fragment).
    MtuExceeded = "mtu_exceeded",
    /// Addressed to the switch (gateway, node or VTEP address), but not
    /// something it answers: only ICMP echo to the gateway is. Delivery to
    /// the node's own stack arrives with the AF_XDP daemon.
    LocalUnsupported = "local_unsupported",
    /// ICMP cut short or with a bad checksum.
    MalformedIcmp = "malformed_icmp",
    /// VXLAN to our VTEP with a header cut short, a UDP length that lies, or
    /// a bad non-zero UDP checksum. (VXLAN arriving on a pod port is plain
    /// UDP to the switch: never decapsulated.)
    MalformedVxlan = "malformed_vxlan",
    /// VXLAN for a VNI we do not serve, or without the I flag.
    VxlanWrongVni = "vxlan_wrong_vni",
    /// VXLAN from an outer source that is not a known remote VTEP.
    VxlanUnknownPeer = "vxlan_unknown_peer",
    /// An inner source address that the sending node does not own (outside
    /// its pod CIDR and not its VTEP address).
    VxlanSpoofedInner = "vxlan_spoofed_inner",
    /// Outer packet marked CE but the inner one not ECN-capable (RFC 6040
    /// section 4.2: drop).
    VxlanEcnDrop = "vxlan_ecn_drop",
    /// The outer packet of a tunnel is an IP fragment (no reassembly).
    VxlanFragmented = "vxlan_fragmented",
    /// Inner frame cut short, or not IPv4 to our VTEP MAC.
    VxlanBadInner = "vxlan_bad_inner",
    /// Route points into the overlay but the node has no VXLAN configured.
    NoOverlay = "no_overlay",
    /// Not enough headroom in the frame to prepend headers.
    NoHeadroom = "no_headroom",
    /// The frame pool was empty when a copy was needed (flooding).
    PoolExhausted = "pool_exhausted",
    /// A bridged frame whose destination sits on the port it came from.
    L2SameSegment = "l2_same_segment",
    /// Flooding found no other port in the bridge domain.
    L2NoFloodTarget = "l2_no_flood_target",
    /// The in-port is not in the snapshot (removed while packets were in
    /// flight).
    UnknownPort = "unknown_port",
    /// The output port's transmit queue was full.
    TxQueueFull = "tx_queue_full",
    /// A flow rule said `drop` (or had no actions).
    RuleDrop = "rule_drop",
    /// A flow rule's `vxlan:` action on a frame that is not untagged IPv4
    /// (the overlay carries routed IPv4 only).
    RuleEncapNotIpv4 = "rule_encap_not_ipv4",
    /// A flow rule would push a VLAN tag but the frame has no headroom, or
    /// would make it longer than a frame holds.
    RuleVlanNoRoom = "rule_vlan_no_room",
    /// A Service without a usable endpoint: refused with a TCP RST or an
    /// ICMP port unreachable.
    ServiceNoEndpoints = "service_no_endpoints",
    /// A `Local` traffic policy and no endpoint on this node.
    ServiceNoLocalEndpoints = "service_no_local_endpoints",
    /// Every SNAT port of the source address is in use.
    SnatPortsExhausted = "snat_ports_exhausted",
    /// A connection that needs NAT found conntrack full.
    ConntrackFull = "conntrack_full",
    /// The NATed reply tuple is another connection's, whatever source port
    /// was tried.
    NatClash = "nat_clash",
    /// A packet that cannot start a connection (a TCP RST or FIN) to a
    /// Service or leaving for masquerade, with no connection to belong to.
    NatInvalid = "nat_invalid",
    /// A fragment after the first of a datagram that would be NATed.
    NatFragment = "nat_fragment",
    /// A stage left a packet undecided: a bug, counted rather than leaked.
    Internal = "internal",
}

/// Counters of one worker. Only that worker writes them; readers (stats,
/// metrics) read a copy, so there are no atomics on the hot path. Summing
/// across workers happens on read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    pub drops: [u64; DropReason::COUNT],
    pub arp_replies: u64,
    pub echo_replies: u64,
    /// ICMP errors generated. Each is then routed like any packet, and is
    /// counted as a drop if it cannot be delivered either.
    pub icmp_errors: u64,
    /// ICMP errors that were due but held back by the rate limit.
    pub icmp_rate_limited: u64,
    pub routed: u64,
    pub bridged: u64,
    pub flooded: u64,
    pub vxlan_encap: u64,
    pub vxlan_decap: u64,
    pub mac_learned: u64,
    pub mac_table_full: u64,
    /// Packets whose flow was in the flow cache (under the current
    /// snapshot), and packets that looked and missed.
    pub flow_hits: u64,
    pub flow_misses: u64,
    /// Flows this worker added to the cache.
    pub flows_added: u64,
    /// Connections this worker started tracking; packets invalid in their
    /// connection's state (forwarded all the same); packets that could not
    /// be tracked (table full, or an answer without a connection).
    pub ct_created: u64,
    pub ct_invalid: u64,
    pub ct_untracked: u64,
    /// New connections to a Service, load-balanced.
    pub svc_connections: u64,
    /// New connections masqueraded to the node IP.
    pub snat_connections: u64,
    /// TCP RSTs sent for Services without endpoints.
    pub tcp_resets: u64,
    /// Service connections given another source port because their reply
    /// tuple was another connection's.
    pub nat_port_remaps: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            drops: [0; DropReason::COUNT],
            arp_replies: 0,
            echo_replies: 0,
            icmp_errors: 0,
            icmp_rate_limited: 0,
            routed: 0,
            bridged: 0,
            flooded: 0,
            vxlan_encap: 0,
            vxlan_decap: 0,
            mac_learned: 0,
            mac_table_full: 0,
            flow_hits: 0,
            flow_misses: 0,
            flows_added: 0,
            ct_created: 0,
            ct_invalid: 0,
            ct_untracked: 0,
            svc_connections: 0,
            snat_connections: 0,
            tcp_resets: 0,
            nat_port_remaps: 0,
        }
    }
}

impl Counters {
    #[inline]
    pub fn count_drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    pub fn drops_of(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// The non-zero drop counters, by name.
    pub fn nonzero_drops(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (r.name(), self.drops[*r as usize]))
            .filter(|(_, n)| *n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indices_dense() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
