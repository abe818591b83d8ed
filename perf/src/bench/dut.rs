//! The devices under test: how each is set up in the DUT namespace, what
//! traffic it is offered, and how it is stopped and its counters read.
//!
//! Every DUT forwards gen0 → sink0 on one core (`dut_core`), and the
//! split of the work is the same for all of them, as on a NIC whose
//! receive interrupt is served on another core than the forwarding:
//!
//! * gen0's receive runs in its NAPI poll on the generator's core (a veth
//!   runs its receiver's NAPI on the sender's CPU): for the AF_XDP DUTs
//!   (xvsd, testpmd, OVS) the XDP program and the copy into the socket's
//!   UMEM (veth has no zero-copy); for the kernel DUTs (bridge, routing,
//!   nftables DNAT) building the skb, which RPS then hands to the DUT
//!   core's backlog.
//! * Everything else runs on the DUT core: the DUT's poll thread or the
//!   kernel's forwarding path, the transmit to the sink (veth `sendto()` or
//!   `ndo_start_xmit`) and the sink's XDP counting program.
//!
//! (A threaded NAPI pinned to the DUT core would put the kernel's receive
//! there too, but on this VM its wake-ups are slow enough that gen0's
//! 256-frame ring overflows at 128 kpps: 10% loss at a rate the same
//! thread forwards without loss when flooded.)

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::Serialize;

use super::services;
use super::sh::{quietly, run, run_in};
use super::topology::{Topology, DUT_IN, DUT_NS, DUT_OUT, GEN_MAC, GEN_NS, SINK_MAC, SINK_NS};
use super::BenchError;
use xvs_control::state::DEFAULT_GATEWAY_MAC;

/// A device under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DutKind {
    /// xvsd, gen0 and sink0 bridged ports of one L2 domain.
    XvsdL2,
    /// xvsd, gen0 and sink0 pod ports: routed, TTL and MACs rewritten.
    XvsdL3,
    /// xvsd, gen0 a pod port, sink0 the uplink: VXLAN encapsulation to a
    /// remote node's pod.
    XvsdVxlan,
    /// xvsd, gen0 and sink0 pod ports, the traffic to a Service's
    /// ClusterIP, DNATed to the sink pod (conntrack on); among N Services.
    XvsdService,
    /// The Linux bridge.
    LinuxBridge,
    /// Linux IPv4 forwarding.
    LinuxRouting,
    /// Linux forwarding with kube-proxy's nftables-mode DNAT of a service
    /// IP (conntrack on); among N Services.
    NftDnat,
    /// DPDK testpmd io-forwarding between two net_af_xdp ports: the AF_XDP
    /// I/O ceiling, no work done on the packets.
    Testpmd,
    /// Open vSwitch's userspace datapath, a port-to-port flow.
    Ovs,
}

impl DutKind {
    pub const ALL: [DutKind; 9] = [
        DutKind::XvsdL2,
        DutKind::XvsdL3,
        DutKind::XvsdVxlan,
        DutKind::XvsdService,
        DutKind::LinuxBridge,
        DutKind::LinuxRouting,
        DutKind::NftDnat,
        DutKind::Testpmd,
        DutKind::Ovs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DutKind::XvsdL2 => "xvsd-l2",
            DutKind::XvsdL3 => "xvsd-l3",
            DutKind::XvsdVxlan => "xvsd-vxlan",
            DutKind::XvsdService => "xvsd-service",
            DutKind::LinuxBridge => "linux-bridge",
            DutKind::LinuxRouting => "linux-routing",
            DutKind::NftDnat => "nft-dnat",
            DutKind::Testpmd => "testpmd",
            DutKind::Ovs => "ovs",
        }
    }

    fn is_kernel(self) -> bool {
        matches!(
            self,
            DutKind::LinuxBridge | DutKind::LinuxRouting | DutKind::NftDnat
        )
    }

    pub fn is_xvsd(self) -> bool {
        matches!(
            self,
            DutKind::XvsdL2 | DutKind::XvsdL3 | DutKind::XvsdVxlan | DutKind::XvsdService
        )
    }

    /// Whether the DUT is measured with a number of Services programmed
    /// (`xvs-bench --services`).
    pub fn takes_services(self) -> bool {
        matches!(self, DutKind::XvsdService | DutKind::NftDnat)
    }
}

/// How a DUT is set up for a case besides its kind: the flows it is
/// offered and, for a DUT that [takes Services](DutKind::takes_services),
/// how many Services it has (the measured one and the others, see
/// [`services`](super::services)).
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub flows: u32,
    pub services: u32,
}

/// What the generator sends for a DUT, and how the sink reads it.
#[derive(Debug, Clone, Serialize)]
pub struct Traffic {
    pub dst_mac: String,
    pub src_ip: &'static str,
    pub dst_ip: &'static str,
    pub dst_port: u16,
    /// What varies past 16384 flows: "src-ip", or "dst-port" where the
    /// source address must stay a pod's own (xvsd's anti-spoofing; for a
    /// Service, the Service has a port per 16384 flows).
    pub vary: &'static str,
    /// The sink looks for the stamp inside VXLAN to this port.
    pub sink_vxlan_port: Option<u16>,
}

/// Addresses: an L2 subnet for the bridges, pods for the routers.
const L2_GEN_IP: &str = "10.99.0.1";
const L2_SINK_IP: &str = "10.99.0.2";
const POD_GEN_IP: &str = "10.244.1.10";
const POD_SINK_IP: &str = "10.244.1.20";
const REMOTE_POD_IP: &str = "10.244.2.20";
/// [`services::SERVICE_IP`].
const SERVICE_IP: &str = "10.96.0.10";

/// A DUT that is running.
pub struct RunningDut {
    pub kind: DutKind,
    pub traffic: Traffic,
    /// The DUT's process (xvsd, or the peer's script); none for the kernel.
    child: Option<Child>,
    /// Its stdout or stderr lines.
    lines: Option<mpsc::Receiver<String>>,
    /// Where xvsd writes its report at shutdown.
    report: Option<PathBuf>,
}

/// Where the runner finds its binaries and scripts.
pub struct Tools {
    pub bin_dir: PathBuf,
    pub scripts: PathBuf,
    pub work_dir: PathBuf,
}

impl RunningDut {
    /// Sets `kind` up on `topology` for `scale`, with its work on
    /// `dut_core`.
    pub fn start(
        kind: DutKind,
        topology: &Topology,
        scale: Scale,
        dut_core: usize,
        tools: &Tools,
    ) -> Result<RunningDut, BenchError> {
        let l2 = Traffic {
            dst_mac: SINK_MAC.into(),
            src_ip: L2_GEN_IP,
            dst_ip: L2_SINK_IP,
            dst_port: 5001,
            vary: "src-ip",
            sink_vxlan_port: None,
        };
        let routed = |dst_mac: &str| Traffic {
            dst_mac: dst_mac.into(),
            src_ip: POD_GEN_IP,
            dst_ip: POD_SINK_IP,
            dst_port: 5001,
            vary: "dst-port",
            sink_vxlan_port: None,
        };
        let gateway = DEFAULT_GATEWAY_MAC.to_string();
        let mut dut = RunningDut {
            kind,
            traffic: l2,
            child: None,
            lines: None,
            report: None,
        };
        match kind {
            DutKind::XvsdL2 | DutKind::LinuxBridge => {
                for (ns, ip) in [(GEN_NS, L2_GEN_IP), (SINK_NS, L2_SINK_IP)] {
                    run(&format!("ip -n {ns} addr add {ip}/24 dev eth0"))?;
                }
                if kind == DutKind::LinuxBridge {
                    run_in(
                        DUT_NS,
                        &[
                            "ip link add br0 type bridge",
                            &format!("ip link set {DUT_IN} master br0"),
                            &format!("ip link set {DUT_OUT} master br0"),
                            "ip link set br0 up",
                        ],
                    )?;
                } else {
                    dut.start_xvsd(
                        &[
                            "--bridged".into(),
                            DUT_IN.into(),
                            "--bridged".into(),
                            DUT_OUT.into(),
                        ],
                        None,
                        dut_core,
                        tools,
                    )?;
                }
            }
            DutKind::XvsdL3 | DutKind::XvsdService => {
                dut.traffic = routed(&gateway);
                let state = if kind == DutKind::XvsdService {
                    // To the ClusterIP; the source address must stay the
                    // pod's, so flows past 16384 take the Service's next
                    // ports.
                    dut.traffic.dst_ip = SERVICE_IP;
                    dut.traffic.dst_port = services::SERVICE_PORT;
                    let ports = services::service_ports(scale.flows).map_err(BenchError::Dut)?;
                    let dir = tools.work_dir.join("xvsd-state");
                    let _ = std::fs::remove_dir_all(&dir);
                    std::fs::create_dir_all(&dir)?;
                    let state = services::xvsd_state(scale.services, ports);
                    std::fs::write(dir.join("state.json"), serde_json::to_vec(&state)?)?;
                    Some(dir)
                } else {
                    None
                };
                dut.start_xvsd(
                    &[
                        "--pod".into(),
                        format!("{DUT_IN},{POD_GEN_IP},{GEN_MAC}"),
                        "--pod".into(),
                        format!("{DUT_OUT},{POD_SINK_IP},{SINK_MAC}"),
                    ],
                    state.as_deref(),
                    dut_core,
                    tools,
                )?;
            }
            DutKind::XvsdVxlan => {
                dut.traffic = Traffic {
                    dst_ip: REMOTE_POD_IP,
                    sink_vxlan_port: Some(4789),
                    ..routed(&gateway)
                };
                dut.start_xvsd(
                    &[
                        "--pod".into(),
                        format!("{DUT_IN},{POD_GEN_IP},{GEN_MAC}"),
                        "--uplink".into(),
                        DUT_OUT.into(),
                        "--vni".into(),
                        "1".into(),
                        "--remote".into(),
                        format!("node2,10.244.2.0/24,192.168.50.2,{SINK_MAC},{SINK_MAC}"),
                    ],
                    None,
                    dut_core,
                    tools,
                )?;
            }
            DutKind::LinuxRouting | DutKind::NftDnat => {
                dut.traffic = routed(&topology.dut_in_mac);
                run_in(
                    DUT_NS,
                    &[
                        "sysctl -qw net.ipv4.ip_forward=1",
                        "sysctl -qw net.ipv4.conf.all.rp_filter=0",
                        &format!("sysctl -qw net.ipv4.conf.{DUT_IN}.rp_filter=0"),
                        &format!("ip route add {POD_GEN_IP}/32 dev {DUT_IN}"),
                        &format!("ip route add {POD_SINK_IP}/32 dev {DUT_OUT}"),
                        &format!(
                            "ip neigh replace {POD_SINK_IP} lladdr {SINK_MAC} dev {DUT_OUT} nud permanent"
                        ),
                    ],
                )?;
                if kind == DutKind::NftDnat {
                    // The source address varies with the flows; the
                    // service's address and port must not.
                    dut.traffic.dst_ip = SERVICE_IP;
                    dut.traffic.dst_port = services::SERVICE_PORT;
                    dut.traffic.vary = "src-ip";
                    let rules = tools.work_dir.join("kube-proxy.nft");
                    std::fs::write(&rules, services::kube_proxy_nft(scale.services))?;
                    run_in(DUT_NS, &[&format!("nft -f {}", rules.display())])?;
                }
            }
            DutKind::Testpmd | DutKind::Ovs => {
                let script = tools.scripts.join(format!("perf-dut-{}.sh", kind.name()));
                dut.spawn_ready(
                    Command::new(&script).args([DUT_NS, DUT_IN, DUT_OUT, &dut_core.to_string()]),
                    "READY",
                    true,
                )?;
            }
        }
        if kind.is_kernel() {
            // A kernel DUT needs NAPI on gen0 for the generator's XDP_TX to
            // land at all (GRO turns it on), and RPS to forward on its core.
            run_in(
                DUT_NS,
                &[
                    &format!("ethtool -K {DUT_IN} gro on"),
                    &format!(
                        "sh -c 'echo {:x} > /sys/class/net/{DUT_IN}/queues/rx-0/rps_cpus'",
                        1u64 << dut_core
                    ),
                ],
            )?;
        }
        if matches!(kind, DutKind::XvsdL2 | DutKind::LinuxBridge) {
            // Teach the bridge where the sink is, as any sender would.
            run_in(SINK_NS, &[&format!("ping -c 1 -W 2 {L2_GEN_IP}")])?;
        }
        Ok(dut)
    }

    /// Starts xvsd with `ports`, and the state in `state_dir` (its
    /// `state.json`) if any, else none.
    fn start_xvsd(
        &mut self,
        ports: &[String],
        state_dir: Option<&Path>,
        dut_core: usize,
        tools: &Tools,
    ) -> Result<(), BenchError> {
        let report = tools.work_dir.join("xvsd-report.json");
        let _ = std::fs::remove_file(&report);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", DUT_NS])
            .arg(tools.bin_dir.join("xvsd"))
            .arg("--state-dir")
            .arg(state_dir.map_or_else(|| "none".into(), |d| d.as_os_str().to_owned()))
            .arg("--node-ip")
            .arg(services::NODE_IP.to_string())
            .args(["--pod-cidr", services::POD_CIDR])
            .args(["--cores", &dut_core.to_string()])
            .arg("--report-json")
            .arg(&report)
            .args(ports)
            .env("RUST_LOG", "info");
        self.spawn_ready(&mut cmd, "ready:", false)?;
        self.report = Some(report);
        Ok(())
    }

    /// Starts `cmd` and waits for a line containing `ready` on its stdout
    /// (or stderr).
    fn spawn_ready(
        &mut self,
        cmd: &mut Command,
        ready: &str,
        stdout: bool,
    ) -> Result<(), BenchError> {
        let (out, err) = if stdout {
            (Stdio::piped(), Stdio::inherit())
        } else {
            (Stdio::null(), Stdio::piped())
        };
        let mut child = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn()?;
        let stream: Box<dyn std::io::Read + Send> = match (child.stdout.take(), child.stderr.take())
        {
            (Some(o), _) => Box::new(o),
            (_, Some(e)) => Box::new(e),
            _ => unreachable!("one stream is piped"),
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.child = Some(child);
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.contains(ready) => break,
                Ok(line) => seen.push(line),
                Err(_) => {
                    return Err(BenchError::Dut(format!(
                        "{} did not get ready: {}",
                        self.kind.name(),
                        seen.join("\n")
                    )))
                }
            }
        }
        self.lines = Some(rx);
        Ok(())
    }

    /// The thread id of xvsd's worker (for `perf stat -t`).
    pub fn worker_tid(&self) -> Option<u32> {
        let pid = self.child.as_ref()?.id();
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        tasks.filter_map(Result::ok).find_map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            (comm.trim() == "xvs-worker-0")
                .then(|| t.file_name().to_str()?.parse().ok())
                .flatten()
        })
    }

    /// Stops the DUT; what it reported about itself (xvsd's report, a
    /// peer's STATS line), if anything.
    pub fn stop(mut self) -> Result<Option<serde_json::Value>, BenchError> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        quietly(&format!("kill -TERM {}", child.id()));
        let mut waited = 0;
        while child.try_wait()?.is_none() {
            if waited == 200 {
                let _ = child.kill();
                let _ = child.wait();
                return Err(BenchError::Dut(format!(
                    "{} did not stop in 20 s; killed",
                    self.kind.name()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
            waited += 1;
        }
        if let Some(path) = self.report.take() {
            let text = std::fs::read_to_string(&path)?;
            return Ok(Some(serde_json::from_str(&text)?));
        }
        let stats = self.lines.take().and_then(|rx| {
            rx.try_iter()
                .find_map(|l| l.strip_prefix("STATS ").map(str::to_string))
        });
        Ok(stats.and_then(|s| serde_json::from_str(&s).ok()))
    }
}

impl Drop for RunningDut {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where the runner's own scripts are: next to the workspace's target dir.
pub fn scripts_dir(bin_dir: &Path) -> PathBuf {
    bin_dir
        .ancestors()
        .find(|d| d.join("scripts").is_dir())
        .map_or_else(|| PathBuf::from("scripts"), |d| d.join("scripts"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traffic_goes_to_the_services_and_their_endpoint() {
        assert_eq!(SERVICE_IP.parse(), Ok(services::SERVICE_IP));
        assert_eq!(POD_SINK_IP.parse(), Ok(services::ENDPOINT_IP));
    }
}
