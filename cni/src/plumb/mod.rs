//! The network plumbing of one pod attachment: the veth pair, the pod end's
//! address, routes, MTU and offloads, and their removal.
//!
//! The pod end of the pair is configured the way Calico configures its
//! workload interfaces: one IPv4 address as a /32, a link-scope route to a
//! gateway address that exists nowhere ([`GATEWAY`], `169.254.1.1`) and the
//! default route through it. The pod therefore ARPs for the gateway on its
//! only link, and xvsd, which owns the host end through AF_XDP, answers with
//! its own MAC; nothing on the host end is routed by the kernel, so the host
//! end gets no address.
//!
//! [`attach`] works in this order, so that a failure at any step leaves
//! nothing behind:
//!
//! 1. refuse an interface name already taken inside the pod, before anything
//!    is created;
//! 2. create the pair in one request, the host end under its final name and
//!    the peer directly inside the pod's namespace under a temporary,
//!    process-unique name (the way `ip link add … peer name … netns …`
//!    does), with the requested MAC if there is one (the `mac` capability),
//!    so no half-made interface ever appears in the host namespace and an
//!    EEXIST can only be about the host name;
//! 3. inside the pod: rename the peer to its final name (an existing name
//!    now, from a race, is the same clear error as in step 1), disable TX
//!    checksum offload, bring it up, add the address and the routes;
//! 4. bring the host end up.
//!
//! From step 2 on, a failure deletes the host end, which destroys the pair
//! wherever its peer is. [`detach`] does the same and is idempotent.
//!
//! TX checksum offload must be off on the pod end: with it on, the pod's
//! kernel hands the veth packets with a partial checksum (to be finished by
//! "hardware"), and AF_XDP in copy mode on the host end receives them as they
//! are and cannot finish them, so TCP would carry bad checksums. The kernel's
//! only interface for device features is ethtool's (an ioctl, or a generic
//! netlink family that no safe Rust crate can set features through yet), so
//! we run the `ethtool` binary: spawned from the thread that has entered the
//! pod's namespace, it runs in that namespace, like `ip netns exec`.
//!
//! Namespace contract: everything that happens inside the pod's namespace
//! happens on a scoped thread that entered it with `setns(2)` and then ends
//! (see [`netns`]); the caller's thread never changes namespace. All of it
//! is synchronous and fit for a single-threaded, short-lived process: each
//! call makes its own current-thread tokio runtime for rtnetlink and drops
//! it before returning. Calls need `CAP_NET_ADMIN` and, to enter the pod's
//! namespace, `CAP_SYS_ADMIN`.

mod netns;
mod rtnl;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use ipnet::Ipv4Net;
use nix::errno::Errno;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{LinkUnspec, LinkVeth};
use xvs_control::state::MacAddr;

use netns::Netns;
use rtnl::{failed, LinkFacts, Rtnl};

/// The pods' gateway: link-local, configured on no interface; xvsd answers
/// ARP for it.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// The smallest MTU IPv4 allows (RFC 791).
pub const MIN_MTU: u32 = 68;

/// The largest MTU a veth accepts.
pub const MAX_MTU: u32 = 65535;

/// Prefix of every host-end name, so `ip link | grep xvs` finds the pods.
pub const HOST_IFNAME_PREFIX: &str = "xvs";

/// Linux's `IFNAMSIZ` minus the terminating NUL.
const IFNAME_MAX: usize = 15;

/// Everything [`attach`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachRequest {
    /// The host end's name; [`host_ifname`] derives it.
    pub host_ifname: String,
    /// The pod's network namespace (`CNI_NETNS`).
    pub netns: PathBuf,
    /// The pod end's name inside the pod (`CNI_IFNAME`, usually `eth0`).
    pub ifname: String,
    /// The pod's address, configured as a /32.
    pub address: Ipv4Addr,
    /// The gateway of the pod's routes, normally [`GATEWAY`].
    pub gateway: Ipv4Addr,
    /// The MTU of both ends.
    pub mtu: u32,
    /// The pod end's MAC (`runtimeConfig.mac`); `None` lets the kernel pick
    /// a random one. Must pass [`check_mac`].
    pub mac: Option<MacAddr>,
}

/// What [`attach`] made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    /// The host end's name.
    pub host_ifname: String,
    /// The host end's index in the host namespace.
    pub host_ifindex: u32,
    /// The host end's MAC.
    pub host_mac: MacAddr,
    /// The pod end's MAC (the pod's address on the wire).
    pub pod_mac: MacAddr,
    /// The pod end's index inside the pod's namespace.
    pub pod_ifindex: u32,
}

/// The state of a pod's interface, as [`inspect`] finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodLink {
    /// Its index inside the pod's namespace.
    pub ifindex: u32,
    /// Its MAC.
    pub mac: MacAddr,
    /// Its MTU.
    pub mtu: u32,
    /// Whether it is administratively up.
    pub up: bool,
    /// Its IPv4 addresses with their prefix lengths.
    pub addresses: Vec<Ipv4Net>,
    /// The main table's IPv4 routes through it.
    pub routes: Vec<PodRoute>,
}

/// One IPv4 route through a pod's interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodRoute {
    /// The destination; `0.0.0.0/0` for the default route.
    pub destination: Ipv4Net,
    /// The next hop, if the route has one.
    pub gateway: Option<Ipv4Addr>,
    /// Whether the route has link scope (the destination is on the link).
    pub link_scope: bool,
}

impl PodLink {
    /// Whether `address` is configured as a /32.
    pub fn has_address(&self, address: Ipv4Addr) -> bool {
        self.addresses
            .iter()
            .any(|net| net.addr() == address && net.prefix_len() == 32)
    }

    /// Whether the link-scope route to `gateway`/32 is there.
    pub fn has_link_route_to(&self, gateway: Ipv4Addr) -> bool {
        self.routes.iter().any(|r| {
            r.destination.addr() == gateway
                && r.destination.prefix_len() == 32
                && r.gateway.is_none()
                && r.link_scope
        })
    }

    /// Whether the default route goes through `gateway`.
    pub fn has_default_via(&self, gateway: Ipv4Addr) -> bool {
        self.routes
            .iter()
            .any(|r| r.destination.prefix_len() == 0 && r.gateway == Some(gateway))
    }
}

/// Why plumbing failed. Messages say what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PlumbError {
    /// A name the kernel would refuse.
    #[error("invalid interface name {name:?}: {why}")]
    InvalidIfname { name: String, why: &'static str },
    /// An MTU outside [`MIN_MTU`]..=[`MAX_MTU`].
    #[error("invalid MTU {mtu}: a veth MTU must be between {MIN_MTU} and {MAX_MTU}")]
    InvalidMtu { mtu: u32 },
    /// A pod MAC an interface cannot have (multicast or all zeros).
    #[error("invalid pod MAC {mac}: {why}")]
    InvalidMac { mac: MacAddr, why: &'static str },
    /// The namespace path does not exist.
    #[error("network namespace {} does not exist (has the container already stopped?)", netns.display())]
    NetnsNotFound { netns: PathBuf },
    /// The namespace path exists but could not be opened.
    #[error("cannot open network namespace {}: {source}", netns.display())]
    NetnsOpen {
        netns: PathBuf,
        source: std::io::Error,
    },
    /// The path is not a network namespace (e.g. an unmounted bind mount).
    #[error("{} is not a network namespace", netns.display())]
    NotANetns { netns: PathBuf },
    /// The pod already has an interface with the requested name.
    #[error("interface {ifname} already exists in network namespace {}: choose another CNI_IFNAME, or DEL the attachment that made it", netns.display())]
    IfnameExists { netns: PathBuf, ifname: String },
    /// The host namespace already has a link with the host end's name.
    #[error("host interface {host_ifname} already exists: an earlier ADD for this container and interface was not cleaned up; run DEL for it first")]
    HostIfnameExists { host_ifname: String },
    /// [`inspect`] found no interface with that name.
    #[error("interface {ifname} does not exist in network namespace {}", netns.display())]
    LinkNotFound { netns: PathBuf, ifname: String },
    /// `ethtool` failed or is missing.
    #[error("disabling TX checksum offload on {ifname} with ethtool: {detail}")]
    Ethtool { ifname: String, detail: String },
    /// The kernel refused a netlink request.
    #[error("{op}: {}", describe(source))]
    Netlink {
        op: String,
        source: rtnetlink::Error,
    },
    /// A system call outside netlink failed.
    #[error("{op}: {source}")]
    Io { op: String, source: std::io::Error },
}

/// The kernel's errno as words, else rtnetlink's own message.
fn describe(e: &rtnetlink::Error) -> String {
    match rtnl::errno(e) {
        Some(errno) => format!("{} ({errno:?})", errno.desc()),
        None => e.to_string(),
    }
}

/// The host end's name for an attachment: `xvs` and 11 hex digits of the
/// 64-bit FNV-1a hash of the container id, a NUL, and the pod's interface
/// name. Deterministic (DEL recomputes it from the same CNI parameters) and
/// 14 characters, within Linux's 15. FNV-1a is written out rather than taken
/// from std's `Hasher`s, whose output may change between Rust releases. 44
/// bits make a collision between two pods on one node negligible (about one
/// in 10^6 at 6,000 pods), and one would show as
/// [`PlumbError::HostIfnameExists`], never as a shared interface.
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let bytes = container_id
        .bytes()
        .chain(std::iter::once(0))
        .chain(ifname.bytes());
    let hash = bytes.fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    format!("{HOST_IFNAME_PREFIX}{:011x}", hash >> 20)
}

/// Checks a name the way the kernel's `dev_valid_name` does.
pub fn check_ifname(name: &str) -> Result<(), PlumbError> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > IFNAME_MAX {
        Some("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("`.` and `..` are not interface names")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
    {
        Some("it contains `/`, `:`, a NUL or whitespace")
    } else {
        None
    };
    match why {
        Some(why) => Err(PlumbError::InvalidIfname {
            name: name.to_string(),
            why,
        }),
        None => Ok(()),
    }
}

/// Checks a MAC for a pod interface: the kernel refuses a multicast or
/// all-zero address on an Ethernet device (`is_valid_ether_addr`), and so
/// do we, before anything is created.
pub fn check_mac(mac: MacAddr) -> Result<(), PlumbError> {
    let why = if mac.is_multicast() {
        Some("multicast (the lowest bit of the first byte is set); a pod needs a unicast MAC")
    } else if mac.0 == [0; 6] {
        Some("00:00:00:00:00:00 is no interface's address")
    } else {
        None
    };
    match why {
        Some(why) => Err(PlumbError::InvalidMac { mac, why }),
        None => Ok(()),
    }
}

/// A name for the peer between its creation and its rename, unique among
/// concurrent attachments into one namespace: pid and a per-process
/// counter.
fn temporary_ifname() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) & 0xff_ffff;
    format!("xvt{:06x}{n:06x}", std::process::id() & 0xff_ffff)
}

/// Creates the veth pair for `req` and configures its pod end; see the
/// module doc for the steps. On error nothing is left behind.
pub fn attach(req: &AttachRequest) -> Result<Attached, PlumbError> {
    check_ifname(&req.host_ifname)?;
    check_ifname(&req.ifname)?;
    if !(MIN_MTU..=MAX_MTU).contains(&req.mtu) {
        return Err(PlumbError::InvalidMtu { mtu: req.mtu });
    }
    if let Some(mac) = req.mac {
        check_mac(mac)?;
    }
    let netns = Netns::open(&req.netns)?;

    // 1. The pod's name must be free before we create anything.
    netns.run(|| {
        let pod = Rtnl::open()?;
        match pod.run(|h| rtnl::link_by_name(h, &req.ifname))? {
            Some(_) => Err(ifname_exists(&netns, &req.ifname)),
            None => Ok(()),
        }
    })?;

    // 2. The pair, the peer born inside the pod under a temporary name.
    let host = Rtnl::open()?;
    let temporary = temporary_ifname();
    let mut peer = LinkUnspec::new_with_name(&temporary).mtu(req.mtu);
    if let Some(mac) = req.mac {
        peer = peer.address(mac.0.to_vec());
    }
    let peer = peer
        .setns_by_fd(std::os::fd::AsRawFd::as_raw_fd(netns.file()))
        .build();
    let pair = LinkVeth::new(&req.host_ifname, &temporary)
        .mtu(req.mtu)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    if let Err(e) = host.run(|h| async move { h.link().add(pair).execute().await }) {
        if rtnl::errno(&e) == Some(Errno::EEXIST) {
            return Err(PlumbError::HostIfnameExists {
                host_ifname: req.host_ifname.clone(),
            });
        }
        return Err(failed(format!(
            "creating veth pair {} (host) / {} (pod)",
            req.host_ifname, req.ifname
        ))(e));
    }

    // 3 and 4; from here on a failure destroys the pair.
    let finished = configure(req, &netns, &host, &temporary);
    if finished.is_err() {
        let _ = host.run(|h| rtnl::delete_link_by_name(h, &req.host_ifname));
    }
    finished
}

/// Steps 3 and 4 of [`attach`].
fn configure(
    req: &AttachRequest,
    netns: &Netns,
    host: &Rtnl,
    temporary: &str,
) -> Result<Attached, PlumbError> {
    let pod = netns.run(|| {
        let pod = Rtnl::open()?;
        let ifname = req.ifname.as_str();
        let Some(link) = pod.run(|h| rtnl::link_by_name(h, temporary))? else {
            return Err(PlumbError::Io {
                op: format!("finding the new veth peer {temporary} in the pod"),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        };
        let index = link.header.index;
        pod.run(|h| rtnl::rename(h, index, ifname)).map_err(|e| {
            if rtnl::errno(&e) == Some(Errno::EEXIST) {
                ifname_exists(netns, ifname)
            } else {
                failed(format!("renaming the pod end {temporary} to {ifname}"))(e)
            }
        })?;
        disable_tx_checksum(ifname)?;
        pod.run(|h| rtnl::set_up(h, index))
            .map_err(failed(format!("bringing {ifname} up in the pod")))?;
        pod.run(|h| rtnl::add_host_address(h, index, req.address))
            .map_err(failed(format!("adding {}/32 to {ifname}", req.address)))?;
        pod.run(|h| rtnl::add_link_route(h, index, req.gateway))
            .map_err(route_failed(format!(
                "adding the route {} dev {ifname} scope link in the pod",
                req.gateway
            )))?;
        pod.run(|h| rtnl::add_default_route(h, index, req.gateway))
            .map_err(route_failed(format!(
                "adding the route default via {} dev {ifname} in the pod",
                req.gateway
            )))?;
        let link = pod.run(|h| rtnl::link_by_name(h, ifname))?.ok_or_else(|| {
            PlumbError::LinkNotFound {
                netns: netns.path().to_path_buf(),
                ifname: ifname.to_string(),
            }
        })?;
        Ok(LinkFacts::of(&link))
    })?;

    let host_link = host
        .run(|h| rtnl::link_by_name(h, &req.host_ifname))?
        .ok_or_else(|| PlumbError::Io {
            op: format!("finding the new host end {}", req.host_ifname),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
    let host_facts = LinkFacts::of(&host_link);
    host.run(|h| rtnl::set_up(h, host_facts.index))
        .map_err(failed(format!("bringing host end {} up", req.host_ifname)))?;

    Ok(Attached {
        host_ifname: req.host_ifname.clone(),
        host_ifindex: host_facts.index,
        host_mac: host_facts.mac.unwrap_or_default(),
        pod_mac: pod.mac.unwrap_or_default(),
        pod_ifindex: pod.index,
    })
}

/// Like [`failed`], with a hint when the pod already has the route.
fn route_failed(op: String) -> impl FnOnce(rtnetlink::Error) -> PlumbError {
    move |e| {
        let op = if rtnl::errno(&e) == Some(Errno::EEXIST) {
            format!("{op} (the pod already has this route through another interface; does it have a second xvs attachment?)")
        } else {
            op
        };
        failed(op)(e)
    }
}

fn ifname_exists(netns: &Netns, ifname: &str) -> PlumbError {
    PlumbError::IfnameExists {
        netns: netns.path().to_path_buf(),
        ifname: ifname.to_string(),
    }
}

/// `ethtool -K <ifname> tx off`, in the calling thread's namespace. CNI
/// runtimes do not all pass a `PATH` with `sbin` in it, so the usual places
/// are tried after `PATH`.
fn disable_tx_checksum(ifname: &str) -> Result<(), PlumbError> {
    let ethtool_error = |detail: String| PlumbError::Ethtool {
        ifname: ifname.to_string(),
        detail,
    };
    for program in ["ethtool", "/usr/sbin/ethtool", "/sbin/ethtool"] {
        let output = match Command::new(program)
            .args(["-K", ifname, "tx", "off"])
            .output()
        {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ethtool_error(format!("cannot run {program}: {e}"))),
        };
        if output.status.success() {
            return Ok(());
        }
        return Err(ethtool_error(format!(
            "{program} exited with {}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim(),
        )));
    }
    Err(ethtool_error(
        "no ethtool binary in PATH, /usr/sbin or /sbin; install the ethtool package".into(),
    ))
}

/// Removes an attachment; idempotent. Deleting the host end destroys the
/// pair. When the host end is already gone, `ifname` in `netns` is deleted
/// if it is a veth (the reference plugins' DEL does the same; a veth that
/// is not ours cannot be there under the attachment's name, and a physical
/// NIC, should `netns` wrongly be the host's, is never touched). A missing
/// namespace, a path that is no longer a namespace, a missing link, and
/// names the kernel could not have created are all success: there is
/// nothing left to remove.
pub fn detach(host_ifname: &str, netns: &Path, ifname: &str) -> Result<(), PlumbError> {
    if check_ifname(host_ifname).is_ok() {
        let host = Rtnl::open()?;
        host.run(|h| rtnl::delete_link_by_name(h, host_ifname))
            .map_err(failed(format!("deleting host end {host_ifname}")))?;
    }
    if check_ifname(ifname).is_err() {
        return Ok(());
    }
    let netns = match Netns::open(netns) {
        Err(PlumbError::NetnsNotFound { .. }) => return Ok(()),
        other => other?,
    };
    let removed = netns.run(|| {
        let pod = Rtnl::open()?;
        let Some(link) = pod.run(|h| rtnl::link_by_name(h, ifname))? else {
            return Ok(());
        };
        let facts = LinkFacts::of(&link);
        if facts.is_veth {
            pod.run(|h| rtnl::delete_link(h, facts.index))
                .map_err(failed(format!("deleting {ifname} in the pod")))?;
        }
        Ok(())
    });
    match removed {
        Err(PlumbError::NotANetns { .. }) => Ok(()),
        other => other,
    }
}

/// Reads the state of `ifname` in `netns`, for CHECK.
pub fn inspect(netns: &Path, ifname: &str) -> Result<PodLink, PlumbError> {
    check_ifname(ifname)?;
    let netns = Netns::open(netns)?;
    netns.run(|| {
        let pod = Rtnl::open()?;
        let link = pod.run(|h| rtnl::link_by_name(h, ifname))?.ok_or_else(|| {
            PlumbError::LinkNotFound {
                netns: netns.path().to_path_buf(),
                ifname: ifname.to_string(),
            }
        })?;
        let facts = LinkFacts::of(&link);
        let addresses = pod
            .run(|h| rtnl::ipv4_addresses(h, facts.index))
            .map_err(failed(format!("listing the addresses of {ifname}")))?;
        let routes = pod
            .run(|h| rtnl::ipv4_routes(h, facts.index))
            .map_err(failed(format!("listing the routes through {ifname}")))?;
        Ok(PodLink {
            ifindex: facts.index,
            mac: facts.mac.unwrap_or_default(),
            mtu: facts.mtu.unwrap_or_default(),
            up: facts.up,
            addresses,
            routes,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ifname_is_deterministic_short_and_distinct() {
        let a = host_ifname("0123456789abcdef", "eth0");
        assert_eq!(a, host_ifname("0123456789abcdef", "eth0"));
        assert_eq!(a.len(), 14);
        assert!(a.starts_with("xvs"));
        assert!(a[3..].chars().all(|c| c.is_ascii_hexdigit()));
        check_ifname(&a).unwrap();
        assert_ne!(a, host_ifname("0123456789abcdef", "net1"));
        assert_ne!(a, host_ifname("0123456789abcdee", "eth0"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(host_ifname("ab", "c"), host_ifname("a", "bc"));
    }

    #[test]
    fn host_ifname_is_stable_across_releases() {
        // Pinned (computed independently with Python), so a change to the
        // derivation, which would orphan existing pods' host ends, fails.
        assert_eq!(host_ifname("", ""), "xvsaf63bd4c860");
        assert_eq!(host_ifname("4b1a6a4d0c3e", "eth0"), "xvs3f6ff369ec6");
    }

    #[test]
    fn ifname_rules_follow_the_kernel() {
        for good in ["eth0", "a", "xvs0123456789ab", "net-1_x.y"] {
            check_ifname(good).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "0123456789abcdef"] {
            assert!(
                matches!(check_ifname(bad), Err(PlumbError::InvalidIfname { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn pod_macs_must_be_unicast_and_non_zero() {
        let mac = |s: &str| s.parse::<MacAddr>().unwrap();
        for good in [
            "02:12:34:56:78:9a",
            "0a:58:0a:f4:01:05",
            "fe:ff:ff:ff:ff:ff",
        ] {
            check_mac(mac(good)).unwrap();
        }
        for bad in [
            "00:00:00:00:00:00",
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
            "03:12:34:56:78:9a",
        ] {
            let err = check_mac(mac(bad)).unwrap_err();
            assert!(matches!(err, PlumbError::InvalidMac { .. }), "{bad}");
            assert_eq!(crate::CniError::from(err).code(), 7, "{bad}");
        }
    }

    #[test]
    fn an_invalid_mac_is_refused_before_anything_is_made() {
        // No root needed: refused before the namespace is opened.
        let err = attach(&AttachRequest {
            host_ifname: "xvs0test".into(),
            netns: "/nonexistent/netns".into(),
            ifname: "eth0".into(),
            address: Ipv4Addr::new(10, 0, 0, 2),
            gateway: GATEWAY,
            mtu: 1450,
            mac: Some(MacAddr([0x01, 0, 0x5e, 0, 0, 1])),
        })
        .unwrap_err();
        assert!(matches!(err, PlumbError::InvalidMac { .. }), "{err}");
    }

    #[test]
    fn temporary_names_are_unique_and_valid() {
        let (a, b) = (temporary_ifname(), temporary_ifname());
        assert_ne!(a, b);
        check_ifname(&a).unwrap();
        assert_eq!(a.len(), IFNAME_MAX);
    }
}
