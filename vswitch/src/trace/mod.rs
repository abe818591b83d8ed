//! `xvsctl trace`: one described packet through the slow path, without
//! sending it, and each stage's decision about it (OVS's `ofproto/trace`,
//! VPP's `trace add`).
//!
//! A packet is described the way a flow rule matches one
//! ([`xvs_control::flowrule`], the text `add-flow` takes), with every
//! field naming one value rather than a set:
//!
//! ```text
//! in_port=pod1,tcp,nw_dst=10.244.1.12,tp_dst=80
//! in_port=pod1,icmp,nw_dst=169.254.1.1
//! in_port=uplink,udp,nw_src=172.16.0.9,nw_dst=10.244.1.12,tp_dst=53,nw_ttl=1
//! in_port=pod1,arp,arp_tpa=169.254.1.1
//! ```
//!
//! plus the fields a packet has and a match does not: `nw_ttl`,
//! `icmp_type` and `icmp_code`, `arp_op`, `arp_spa` and `arp_tpa`, and
//! `len` (the whole frame's length; the payload is zeros). `in_port` is
//! required and names a port of the switch; an address must be one
//! address, not a prefix. What is left out gets a default:
//!
//! | field | default |
//! |---|---|
//! | `dl_type` | `ip` when an `nw_` field is given (`ipv6` for `ipv6_`) |
//! | `dl_src` | the pod's MAC on a pod port, else 02:74:72:61:63:65 |
//! | `dl_dst` | the switch's MAC on the in-port; broadcast on a bridged port and for an ARP request |
//! | `nw_src`, `arp_spa` | the pod's address on a pod port (required elsewhere) |
//! | `nw_proto` | 0 for `ip` alone, as in OVS |
//! | `nw_ttl` | 64 |
//! | `tp_src` | 49152 (tcp and udp; `tp_dst` is required); a TCP packet is a SYN |
//! | `icmp_type`, `icmp_code` | echo request (8/0, icmp6 128/0), id 1 seq 1 |
//! | `arp_op`, `arp_tpa` | 1 (request), the pod gateway |
//! | `len` | the headers alone |
//!
//! The trace shows the description with every default filled in (it
//! traces the same frame again), then each stage's note, then the
//! verdicts: the drops, and every frame that would have left, with the
//! port.
//!
//! Design. The frame is built with etherparse (every checksum right) and
//! run through a pipeline of its own: a fresh [`Pipeline`] over the
//! snapshot the workers run, tracing on, an in-memory pool, and neither the
//! workers' flow cache nor their connection table
//! ([`Pipeline::set_flow_cache`] and `set_conntrack` are never called):
//! what it shows is the slow path (the decisions a cache entry would later
//! replay), and it leaves no state behind. Nothing is transmitted: the
//! transmit queues are emptied into the verdicts, each frame parsed back
//! with etherparse, independently of the smoltcp views the stages use, into
//! a one-line summary that says so if a checksum is wrong. Drops come from
//! the fresh pipeline's counters, so a drop no stage traced is reported
//! too. Being fresh, the pipeline has none of the workers' own state: no
//! learned MAC (a bridged frame is flooded where a worker might forward
//! it), a full ICMP rate-limit bucket. `packet.rs` reads a description and
//! builds its frame; `summary.rs` reads output frames back.
//!
//! Concurrency: a trace reads the shared, immutable snapshot and owns
//! everything else; it runs on the control thread and never touches a
//! worker.

mod packet;
mod summary;

use std::sync::Arc;

use xvs_control::flowrule::ParseFlowError;

pub use summary::describe;
pub use xvs_control::trace::{StageDecision, Trace, Verdict};

use crate::drop::DropReason;
use crate::l2::MacTableConfig;
use crate::packet::{FramePool, HeapFramePool, MAX_FRAME_LEN};
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::port::{Batch, PortId, BATCH_SIZE};
use crate::snapshot::Snapshot;
use packet::Described;

/// Why a description cannot be traced. Every message names what was wrong
/// and what would do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error(transparent)]
    Parse(#[from] ParseFlowError),
    #[error(
        "unknown field `{token}`: expected a match field (in_port, dl_src, dl_dst, dl_vlan, \
         dl_type, nw_src, nw_dst, ipv6_src, ipv6_dst, nw_proto, tp_src, tp_dst) or a packet \
         field (nw_ttl, icmp_type, icmp_code, arp_op, arp_spa, arp_tpa, len)"
    )]
    UnknownField { token: String },
    #[error(
        "no in_port: say which port the packet arrives on, e.g. \
         `in_port=pod1,icmp,nw_dst=10.244.1.12`"
    )]
    NoInPort,
    #[error("in_port={0}: the switch has no such port (`xvsctl port list` shows them)")]
    UnknownPort(String),
    #[error("`{token}`: a traced packet has one address there, not a prefix")]
    NotAnAddress { token: String },
    #[error("`{token}`: expected {expected}")]
    BadValue {
        token: String,
        expected: &'static str,
    },
    #[error("`{token}` contradicts the value given earlier in the description")]
    Conflict { token: String },
    #[error("{token} needs {needs}")]
    MissingPrerequisite { token: String, needs: &'static str },
    #[error("{0}")]
    Missing(&'static str),
    #[error("len={len}: the headers alone take {min} bytes")]
    TooShort { len: usize, min: usize },
    #[error("len={len}: a frame holds at most {max} bytes")]
    TooLong { len: usize, max: usize },
    #[error("cannot build the frame: {0}")]
    Build(String),
}

/// Traces the packet `description` describes through `snapshot`'s
/// pipeline (see the module documentation).
pub fn trace(snapshot: &Arc<Snapshot>, description: &str) -> Result<Trace, TraceError> {
    let packet = Described::parse(snapshot, description)?;
    let frame = packet.frame()?;
    let (stages, verdicts) = run(snapshot, packet.in_port, &frame)?;
    Ok(Trace {
        packet: packet.to_string(),
        stages,
        verdicts,
    })
}

/// Runs `frame` in on `in_port` through a fresh pipeline on `snapshot`:
/// the stage decisions and the verdicts.
fn run(
    snapshot: &Arc<Snapshot>,
    in_port: PortId,
    frame: &[u8],
) -> Result<(Vec<StageDecision>, Vec<Verdict>), TraceError> {
    // One frame, plus a copy per extra port a bridged frame floods to or
    // a rule outputs to (a batch's worth covers both).
    let mut pool = HeapFramePool::new(u32::try_from(BATCH_SIZE + 2).unwrap_or(u32::MAX));
    let config = PipelineConfig {
        mac_table: MacTableConfig {
            capacity: 16,
            ..MacTableConfig::default()
        },
        ..PipelineConfig::default()
    };
    let mut pipeline = Pipeline::new(Arc::clone(snapshot), config);
    pipeline.enable_trace();

    let mut batch = Batch::new();
    // `Described::frame` keeps within a frame and the pool has room.
    batch.push(pool.alloc_with(frame).ok_or(TraceError::TooLong {
        len: frame.len(),
        max: MAX_FRAME_LEN,
    })?);
    pipeline.process(&mut pool, in_port, &mut batch, 0);

    // The output stage's drop notes say what the drop verdicts say.
    let stages = pipeline
        .take_trace()
        .into_iter()
        .filter(|e| e.stage != "drop")
        .map(|e| StageDecision {
            stage: e.stage.to_string(),
            note: e.note,
        })
        .collect();

    let mut verdicts = Vec::new();
    for &reason in DropReason::ALL {
        for _ in 0..pipeline.counters().drops_of(reason) {
            verdicts.push(Verdict::Dropped {
                reason: reason.name().to_string(),
            });
        }
    }
    let vxlan_port = snapshot.overlay.as_ref().map(|o| o.udp_port);
    let mut sent = Vec::new();
    for (port, queue) in pipeline.tx_queues() {
        for pkt in queue.drain(..) {
            sent.push((port, pkt.data(&pool).to_vec()));
            pool.free(pkt.frame);
        }
    }
    for (port, bytes) in sent {
        let port = snapshot
            .ports
            .get(usize::from(port))
            .map_or_else(|| format!("port {port}"), |p| p.name.clone());
        verdicts.push(Verdict::Output {
            port,
            frame: describe(&bytes, vxlan_port),
        });
    }
    Ok((stages, verdicts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    use proptest::prelude::*;
    use xvs_control::state::{DesiredState, MacAddr};

    /// pod1 (10.244.1.11), pod2 (10.244.1.12), the uplink, a bridged port.
    fn snapshot() -> Arc<Snapshot> {
        let state: DesiredState = serde_json::from_value(serde_json::json!({
            "node": {"node_ip": "192.168.50.1", "pod_cidr": "10.244.1.0/24"},
            "ports": [
                {"name": "pod1", "kind": {"pod": {"ip": "10.244.1.11", "mac": "02:00:00:00:01:01"}}},
                {"name": "pod2", "kind": {"pod": {"ip": "10.244.1.12", "mac": "02:00:00:00:01:02"}}},
                {"name": "uplink", "kind": {"uplink": {"mac": "02:00:00:00:ff:01"}}},
                {"name": "br1", "kind": {"bridged": {"domain": 7}}},
            ],
        }))
        .expect("test state parses");
        Arc::new(Snapshot::compile(&state, 1).expect("test state compiles"))
    }

    fn err(description: &str) -> TraceError {
        match trace(&snapshot(), description) {
            Ok(t) => panic!("{description:?} should be refused, traced as\n{t}"),
            Err(e) => e,
        }
    }

    fn packet(description: &str) -> String {
        trace(&snapshot(), description)
            .unwrap_or_else(|e| panic!("{description:?} should trace: {e}"))
            .packet
    }

    #[test]
    fn defaults_are_filled_in_and_printed() {
        assert_eq!(
            packet("in_port=pod1 icmp nw_dst=10.244.1.12"),
            "in_port=pod1,dl_src=02:00:00:00:01:01,dl_dst=ee:ee:ee:ee:ee:ee,icmp,\
             nw_src=10.244.1.11,nw_dst=10.244.1.12,nw_ttl=64,icmp_type=8,icmp_code=0,len=42"
        );
        // An nw_ field alone means IPv4, with OVS's nw_proto 0.
        assert_eq!(
            packet("in_port=pod1,nw_dst=10.244.1.12"),
            "in_port=pod1,dl_src=02:00:00:00:01:01,dl_dst=ee:ee:ee:ee:ee:ee,ip,nw_proto=0,\
             nw_src=10.244.1.11,nw_dst=10.244.1.12,nw_ttl=64,len=34"
        );
        assert_eq!(
            packet("in_port=uplink,udp,nw_src=172.16.0.9,nw_dst=10.244.1.12,tp_dst=53,len=100"),
            "in_port=uplink,dl_src=02:74:72:61:63:65,dl_dst=02:00:00:00:ff:01,udp,\
             nw_src=172.16.0.9,nw_dst=10.244.1.12,tp_src=49152,tp_dst=53,nw_ttl=64,len=100"
        );
        assert_eq!(
            packet("in_port=pod1,arp"),
            "in_port=pod1,dl_src=02:00:00:00:01:01,dl_dst=ff:ff:ff:ff:ff:ff,arp,\
             arp_op=1,arp_spa=10.244.1.11,arp_tpa=169.254.1.1,len=42"
        );
        assert_eq!(
            packet("in_port=br1,dl_vlan=5,dl_type=0x88b5"),
            "in_port=br1,dl_vlan=5,dl_src=02:74:72:61:63:65,dl_dst=ff:ff:ff:ff:ff:ff,\
             dl_type=0x88b5,len=18"
        );
        assert_eq!(
            packet("in_port=pod1,tcp6,ipv6_src=fd00::1,ipv6_dst=fd00::2,tp_dst=80,nw_ttl=7"),
            "in_port=pod1,dl_src=02:00:00:00:01:01,dl_dst=ee:ee:ee:ee:ee:ee,tcp6,\
             ipv6_src=fd00::1,ipv6_dst=fd00::2,tp_src=49152,tp_dst=80,nw_ttl=7,len=74"
        );
    }

    #[test]
    fn the_printed_packet_traces_the_same() {
        let snap = snapshot();
        for d in [
            "in_port=pod1,icmp,nw_dst=10.244.1.12,icmp_type=13,icmp_code=0,len=100",
            "in_port=pod1,tcp,nw_dst=10.244.1.12,tp_src=1,tp_dst=2",
            "in_port=uplink,arp,arp_op=2,arp_spa=192.168.50.9,arp_tpa=192.168.50.1",
            "in_port=br1,dl_vlan=0xffff,dl_dst=02:00:00:00:00:09,ip,nw_proto=47,nw_src=192.0.2.1,nw_dst=192.0.2.2",
            "in_port=pod1,icmp6,ipv6_src=fd00::1,ipv6_dst=fd00::2",
        ] {
            let first = trace(&snap, d).unwrap_or_else(|e| panic!("{d}: {e}"));
            let again = trace(&snap, &first.packet).unwrap_or_else(|e| panic!("{d}: {e}"));
            assert_eq!(again, first, "{d}");
        }
    }

    #[test]
    fn bad_descriptions_are_refused_with_the_reason() {
        let cases: &[(&str, TraceError)] = &[
            ("", TraceError::NoInPort),
            ("icmp,nw_dst=10.244.1.12", TraceError::NoInPort),
            (
                "in_port=pod9,icmp,nw_dst=10.244.1.12",
                TraceError::UnknownPort("pod9".into()),
            ),
            (
                "in_port=pod1,icmp,nw_dst=10.244.1.0/24",
                TraceError::NotAnAddress {
                    token: "nw_dst=10.244.1.0/24".into(),
                },
            ),
            (
                "in_port=pod1,icmp6,ipv6_src=fd00::/64,ipv6_dst=fd00::2",
                TraceError::NotAnAddress {
                    token: "ipv6_src=fd00::/64".into(),
                },
            ),
            (
                "in_port=pod1",
                TraceError::Missing(
                    "no protocol: say what the packet is (ip, tcp, udp, icmp, arp, ipv6, tcp6, \
                     udp6, icmp6 or dl_type=ETHERTYPE)",
                ),
            ),
            (
                "in_port=pod1,icmp",
                TraceError::Missing("no destination address: give nw_dst=ADDRESS"),
            ),
            (
                "in_port=uplink,icmp,nw_dst=10.244.1.12",
                TraceError::Missing(
                    "no source address: give nw_src=ADDRESS (only a pod port has a default, \
                     the pod's address)",
                ),
            ),
            (
                "in_port=pod1,icmp6,ipv6_dst=fd00::2",
                TraceError::Missing("no source address: give ipv6_src=ADDRESS"),
            ),
            (
                "in_port=pod1,tcp,nw_dst=10.244.1.12",
                TraceError::Missing("no destination port: a tcp or udp packet needs tp_dst=PORT"),
            ),
            (
                "in_port=uplink,arp",
                TraceError::Missing(
                    "no sender address: give arp_spa=ADDRESS (only a pod port has a default, \
                     the pod's address)",
                ),
            ),
            (
                "in_port=pod1,icmp,nw_dst=10.244.1.12,nw_ttl=256",
                TraceError::BadValue {
                    token: "nw_ttl=256".into(),
                    expected: "a TTL 0..=255",
                },
            ),
            (
                "in_port=pod1,arp,arp_tpa=10.0.0.0/8",
                TraceError::BadValue {
                    token: "arp_tpa=10.0.0.0/8".into(),
                    expected: "an IPv4 address like 10.244.1.11",
                },
            ),
            (
                "in_port=pod1,icmp,nw_dst=10.244.1.12,len=-1",
                TraceError::BadValue {
                    token: "len=-1".into(),
                    expected: "a frame length in bytes",
                },
            ),
            (
                "in_port=pod1,icmp,nw_dst=10.244.1.12,nw_ttl=1,nw_ttl=2",
                TraceError::Conflict {
                    token: "nw_ttl=2".into(),
                },
            ),
            (
                "in_port=pod1,tcp,nw_dst=10.244.1.12,tp_dst=80,icmp_type=3",
                TraceError::MissingPrerequisite {
                    token: "icmp_type=3".into(),
                    needs: "icmp or icmp6",
                },
            ),
            (
                "in_port=pod1,arp,nw_ttl=3",
                TraceError::MissingPrerequisite {
                    token: "nw_ttl=3".into(),
                    needs: "ip or ipv6 (dl_type=0x0800 or 0x86dd)",
                },
            ),
            (
                "in_port=pod1,icmp,nw_dst=10.244.1.12,arp_op=2",
                TraceError::MissingPrerequisite {
                    token: "arp_op=2".into(),
                    needs: "arp (dl_type=0x0806)",
                },
            ),
            (
                "in_port=pod1,icmp,nw_dst=10.244.1.12,len=41",
                TraceError::TooShort { len: 41, min: 42 },
            ),
            (
                "in_port=pod1,icmp,nw_dst=10.244.1.12,len=1793",
                TraceError::TooLong {
                    len: 1793,
                    max: MAX_FRAME_LEN,
                },
            ),
            (
                "in_port=pod1,icmp,nw_dst=10.244.1.12,nw_tos=4",
                TraceError::UnknownField {
                    token: "nw_tos=4".into(),
                },
            ),
            // The flow-rule parser's own refusals come through unchanged.
            (
                "in_port=pod1,tp_dst=80,nw_dst=10.244.1.12",
                TraceError::Parse(ParseFlowError::MissingPrerequisite {
                    token: "tp_dst=80".into(),
                    needs: "tcp or udp (nw_proto=6 or 17)",
                }),
            ),
            (
                "priority=5,in_port=pod1,icmp,nw_dst=10.244.1.12",
                TraceError::Parse(ParseFlowError::PriorityInMatch {
                    token: "priority=5".into(),
                }),
            ),
            (
                "in_port=pod1,icmp,nw_dst=10.244.1.12,bogus",
                TraceError::Parse(ParseFlowError::UnknownKeyword {
                    token: "bogus".into(),
                }),
            ),
        ];
        for (description, want) in cases {
            assert_eq!(&err(description), want, "{description:?}");
        }
        // Messages quote the offending token.
        assert_eq!(
            err("in_port=pod1,icmp,nw_dst=10.244.1.0/24").to_string(),
            "`nw_dst=10.244.1.0/24`: a traced packet has one address there, not a prefix"
        );
        assert_eq!(
            err("in_port=pod9,icmp,nw_dst=10.244.1.12").to_string(),
            "in_port=pod9: the switch has no such port (`xvsctl port list` shows them)"
        );
        assert!(err("in_port=pod1,nw_tos=4")
            .to_string()
            .contains("nw_ttl, icmp_type, icmp_code, arp_op, arp_spa, arp_tpa, len"));
    }

    proptest! {
        #[test]
        fn any_text_is_answered(text in "\\PC{0,80}") {
            let _ = trace(&snapshot(), &text);
        }

        #[test]
        fn any_mix_of_fields_is_answered(tokens in proptest::collection::vec(prop_oneof![
            Just("in_port=pod1".to_string()),
            Just("in_port=uplink".to_string()),
            Just("in_port=br1".to_string()),
            prop_oneof![Just("ip"), Just("tcp"), Just("udp"), Just("icmp"), Just("arp"),
                        Just("ipv6"), Just("tcp6"), Just("icmp6")].prop_map(String::from),
            any::<u16>().prop_map(|t| format!("dl_type={t}")),
            any::<u16>().prop_map(|v| format!("dl_vlan={v}")),
            any::<[u8; 4]>().prop_map(|a| format!("nw_dst={}", Ipv4Addr::from(a))),
            any::<[u8; 4]>().prop_map(|a| format!("nw_src={}", Ipv4Addr::from(a))),
            any::<u8>().prop_map(|p| format!("nw_proto={p}")),
            any::<u16>().prop_map(|p| format!("tp_dst={p}")),
            any::<u8>().prop_map(|t| format!("nw_ttl={t}")),
            any::<u8>().prop_map(|t| format!("icmp_type={t}")),
            (0usize..2000).prop_map(|l| format!("len={l}")),
            any::<[u8; 6]>().prop_map(|m| format!("dl_dst={}", MacAddr(m))),
            any::<[u8; 6]>().prop_map(|m| format!("dl_src={}", MacAddr(m))),
        ], 0..8)) {
            let _ = trace(&snapshot(), &tokens.join(","));
        }
    }
}
