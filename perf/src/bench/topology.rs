//! The benchmark topology: generator netns → device under test → sink
//! netns, over two veth pairs.
//!
//! ```text
//!  xb-gen            xb-dut                       xb-sink
//!  eth0 ──veth── gen0 [ device under test ] sink0 ──veth── eth0
//!  (xvs-pktgen gen)                                 (xvs-pktgen sink)
//! ```
//!
//! Made fresh for every device under test and removed when dropped (the
//! veths go with their namespaces), so no DUT inherits another's XDP
//! programs, bridges or nftables rules.

use super::sh::{quietly, run, run_in};
use super::BenchError;

pub const GEN_NS: &str = "xb-gen";
pub const DUT_NS: &str = "xb-dut";
pub const SINK_NS: &str = "xb-sink";
/// The generator's and the sink's interface MACs.
pub const GEN_MAC: &str = "02:00:00:b0:00:01";
pub const SINK_MAC: &str = "02:00:00:b0:00:02";
/// The DUT's interfaces toward the generator and toward the sink.
pub const DUT_IN: &str = "gen0";
pub const DUT_OUT: &str = "sink0";

/// The three namespaces, removed on drop.
pub struct Topology {
    /// MAC of the DUT's `gen0` (the next hop of a routing DUT).
    pub dut_in_mac: String,
}

impl Topology {
    pub fn create() -> Result<Topology, BenchError> {
        remove();
        // Built first, so a failure below removes what was made.
        let mut topology = Topology {
            dut_in_mac: String::new(),
        };
        for ns in [GEN_NS, DUT_NS, SINK_NS] {
            run(&format!("ip netns add {ns}"))?;
            run(&format!("ip -n {ns} link set lo up"))?;
        }
        run(&format!(
            "ip link add eth0 netns {GEN_NS} address {GEN_MAC} type veth peer name {DUT_IN} netns {DUT_NS}"
        ))?;
        run(&format!(
            "ip link add eth0 netns {SINK_NS} address {SINK_MAC} type veth peer name {DUT_OUT} netns {DUT_NS}"
        ))?;
        for (ns, dev) in [
            (GEN_NS, "eth0"),
            (SINK_NS, "eth0"),
            (DUT_NS, DUT_IN),
            (DUT_NS, DUT_OUT),
        ] {
            run(&format!("ip -n {ns} link set {dev} up"))?;
        }
        // The namespaces' own chatter (IPv6 router solicitations) would
        // count as DUT traffic.
        for ns in [GEN_NS, SINK_NS, DUT_NS] {
            run_in(ns, &["sysctl -qw net.ipv6.conf.all.disable_ipv6=1"])?;
        }
        let mac = run(&format!(
            "ip netns exec {DUT_NS} cat /sys/class/net/{DUT_IN}/address"
        ))?;
        topology.dut_in_mac = mac.trim().to_string();
        Ok(topology)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        remove();
    }
}

fn remove() {
    for ns in [GEN_NS, DUT_NS, SINK_NS] {
        quietly(&format!("ip netns del {ns}"));
    }
}
