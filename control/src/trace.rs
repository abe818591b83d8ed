//! What `xvsctl trace` answers: the path one described packet takes
//! through the switch's slow path, stage by stage, and what would have left
//! the switch because of it.
//!
//! The datapath fills a [`Trace`] (`vswitch::trace`), xvsd sends it as
//! JSON, and xvsctl reads it back and prints it with the [`fmt::Display`]
//! below, the one the datapath's golden tests check. So there is one text
//! form, and what a person sees is what the tests pin down. Like
//! [`crate::flowrule`], this is pure data and text.
//!
//! ```text
//! packet: in_port=pod1,dl_src=02:00:00:00:01:01,dl_dst=ee:ee:ee:ee:ee:ee,icmp,...
//!
//! ethernet-input: 02:00:00:00:01:01 > ee:ee:ee:ee:ee:ee IPv4 -> ip4-input
//! ip4-input: 10.244.1.11 > 10.244.1.12 icmp -> ip4-forward
//! ip4-forward: 10.244.1.12: out pod2 to 02:00:00:00:01:02
//!
//! output to pod2: 02:00:00:00:01:01 > 02:00:00:00:01:02, 10.244.1.11 > ...
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

/// One traced packet: the packet, each stage's decision, the verdicts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// The packet as traced: the description with every default filled
    /// in, in canonical order. Tracing this text again builds the same
    /// frame.
    pub packet: String,
    /// Each decision the stages recorded, in the order they made them
    /// (the packet, then any reply or ICMP error the switch generated).
    pub stages: Vec<StageDecision>,
    /// Every drop (in drop-reason order), then every frame that would
    /// have been sent (in port order). A switch-generated answer (echo
    /// reply, ICMP error) is an output of its own.
    pub verdicts: Vec<Verdict>,
}

/// One stage's decision about the packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageDecision {
    /// The stage's node name (`ethernet-input`, `ip4-forward`, ...).
    pub stage: String,
    pub note: String,
}

/// What became of a packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// A frame would have been sent out of `port`; `frame` summarises it
    /// as a parser independent of the datapath reads it back.
    Output { port: String, frame: String },
    /// A packet was dropped; `reason` is the drop counter's name (as in
    /// `xvsctl stats`).
    Dropped { reason: String },
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "packet: {}", self.packet)?;
        writeln!(f)?;
        for s in &self.stages {
            writeln!(f, "{}: {}", s.stage, s.note)?;
        }
        writeln!(f)?;
        for v in &self.verdicts {
            writeln!(f, "{v}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Output { port, frame } => write!(f, "output to {port}: {frame}"),
            Verdict::Dropped { reason } => write!(f, "dropped: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Trace {
        Trace {
            packet: "in_port=p1,icmp,nw_src=10.0.0.1,nw_dst=10.0.0.2".into(),
            stages: vec![
                StageDecision {
                    stage: "ip4-input".into(),
                    note: "10.0.0.1 > 10.0.0.2 icmp -> ip4-forward".into(),
                },
                StageDecision {
                    stage: "ip4-forward".into(),
                    note: "10.0.0.2: ttl 1 expired".into(),
                },
            ],
            verdicts: vec![
                Verdict::Dropped {
                    reason: "ttl_expired".into(),
                },
                Verdict::Output {
                    port: "p1".into(),
                    frame: "icmp time exceeded".into(),
                },
            ],
        }
    }

    #[test]
    fn text_form() {
        assert_eq!(
            sample().to_string(),
            "packet: in_port=p1,icmp,nw_src=10.0.0.1,nw_dst=10.0.0.2\n\
             \n\
             ip4-input: 10.0.0.1 > 10.0.0.2 icmp -> ip4-forward\n\
             ip4-forward: 10.0.0.2: ttl 1 expired\n\
             \n\
             dropped: ttl_expired\n\
             output to p1: icmp time exceeded\n"
        );
    }

    #[test]
    fn json_form_round_trips() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["verdicts"][0]["verdict"], "dropped");
        assert_eq!(v["verdicts"][0]["reason"], "ttl_expired");
        assert_eq!(v["verdicts"][1]["verdict"], "output");
        assert_eq!(v["verdicts"][1]["port"], "p1");
        assert_eq!(v["stages"][1]["stage"], "ip4-forward");
        let back: Trace = serde_json::from_value(v).unwrap();
        assert_eq!(back, sample());
    }
}
