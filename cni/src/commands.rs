//! ADD, DEL, CHECK, STATUS and GC: IPAM, plumbing and xvsd put together.
//!
//! **Addresses** come from one of two places, behind one small type,
//! [`AddressSource`], so each command has a single path: the built-in
//! host-local-style allocator ([`HostLocal`]), or the IPAM plugin `ipam.type`
//! names ([`Delegate`]), run the way the reference plugins (bridge, ptp)
//! run theirs. The source does five things: acquire an address (ADD),
//! give it back (DEL, and a failed ADD), check it (CHECK), GC and STATUS.
//!
//! **ADD** connects to xvsd first (unreachable: code 11, nothing done), then
//! acquires the address, plumbs the veth ([`plumb::attach`]) and registers
//! the host end with `port-add` (name = host ifname, kind pod with the
//! address and the pod end's MAC, the MTU, and the attachment). A failure
//! undoes what this ADD did, in reverse order: detach, then give the address
//! back — the delegate's DEL, or releasing the built-in lease unless it was
//! already held before this ADD (a repeated ADD without DEL, which the spec
//! forbids: plumbing then fails with code 102 and must not take the address
//! from the pod that has it).
//!
//! The address: with the built-in IPAM the first IPv4 address of
//! `runtimeConfig.ips`, else of `args.cni.ips`, if any is asked for
//! ([`HostLocal::allocate_requested`]), else the next free one; with a
//! delegate, the first IPv4 address of its result (none: code 7), the
//! requested ones being its business (they are in its stdin). Either way the
//! pod gets it as a /32 behind our gateway: a delegate's prefix, gateway and
//! routes are not used. The result's `dns` is the configuration's, or, if
//! that is empty, the delegate's. `runtimeConfig.mac`, if given, is the pod
//! end's MAC.
//!
//! The pod MTU is the configuration's `mtu`, else what xvsd reports (`show`'s
//! `pod_mtu`: its smallest uplink's MTU minus the 50 bytes of VXLAN
//! encapsulation), else, on a switch without an uplink, [`DEFAULT_MTU`]:
//! 1450, a 1500-byte uplink's.
//!
//! **DEL** never fails for something already gone: `port-del` (a missing
//! port is fine, an unreachable xvsd is logged and skipped — its ports
//! vanish with their interface anyway), detach (idempotent), then the
//! address: the built-in release, or the delegate's DEL, whose error is
//! returned (as the reference plugins do).
//!
//! **CHECK** runs the delegate's CHECK first (its error is returned), then
//! compares the pod interface, the built-in lease and xvsd's port with
//! `prevResult` and lists every difference (code 105).
//!
//! **STATUS** is xvsd answering `version` (code 50 otherwise), then the
//! delegate's STATUS.
//!
//! **GC** frees leases (or runs the delegate's GC), and deletes ports (and
//! their veths) that xvsd holds for attachments not in
//! `cni.dev/valid-attachments`; ports without an attachment (uplinks, ports
//! added by hand) are never touched. A delegate from before CNI 1.1.0
//! answering GC or STATUS with code 1 or 4 is logged and skipped
//! ([`Delegate::run_if_known`]).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net};
use serde_json::{json, Value};
use xvs_control::state::{Attachment as PortAttachment, PortKind, PortSpec};

use crate::delegate::Delegate;
use crate::error::CniError;
use crate::ipam::HostLocal;
use crate::plumb::{self, AttachRequest};
use crate::spec::{Attachment, Command, Env, Ipam, NetConf};
use crate::version::{CniResult, Dns, Interface, IpConfig, Route};
use crate::xvsd::Xvsd;

/// The pod MTU when neither the configuration nor xvsd (which has no
/// uplink) says: 1500 minus VXLAN's 50.
pub const DEFAULT_MTU: u32 = 1450;

/// Where the pod's address comes from: the one thing in which built-in and
/// delegated IPAM differ.
enum AddressSource<'a> {
    /// The built-in allocator.
    BuiltIn(HostLocal),
    /// The IPAM plugin `ipam.type`.
    Delegated(Delegate<'a>),
}

/// What ADD got from an [`AddressSource`].
struct Acquired {
    /// The pod's address.
    address: Ipv4Addr,
    /// DNS settings from a delegate's result (empty otherwise).
    dns: Dns,
    /// Whether a failed ADD gives the address back: not a built-in lease the
    /// attachment held before this ADD.
    give_back: bool,
}

impl<'a> AddressSource<'a> {
    fn of(env: &'a Env, conf: &'a NetConf) -> AddressSource<'a> {
        match &conf.ipam {
            Ipam::BuiltIn { pool, data_dir } => {
                AddressSource::BuiltIn(HostLocal::new(data_dir, pool.clone()))
            }
            Ipam::Delegate { plugin } => AddressSource::Delegated(Delegate::new(plugin, env, conf)),
        }
    }

    /// ADD: the address for `attachment`.
    fn acquire(
        &self,
        attachment: &Attachment,
        conf: &NetConf,
        log: &mut String,
    ) -> Result<Acquired, CniError> {
        match self {
            AddressSource::BuiltIn(ipam) => {
                let requested = requested_ipv4(conf)?;
                let held_before = ipam.find(attachment)?.is_some();
                let lease = match requested {
                    Some(ip) => ipam.allocate_requested(attachment, IpAddr::V4(ip))?,
                    None => ipam.allocate(attachment)?,
                };
                let IpAddr::V4(address) = lease.ip else {
                    if !held_before {
                        self.give_back(attachment, log);
                    }
                    return Err(CniError::invalid_config(
                        "ipam.subnet",
                        "xvs pods are IPv4-only; use an IPv4 subnet",
                    ));
                };
                Ok(Acquired {
                    address,
                    dns: Dns::default(),
                    give_back: !held_before,
                })
            }
            AddressSource::Delegated(delegate) => {
                let result = delegate.add()?;
                let address = result.ips.iter().find_map(|ip| match ip.address {
                    IpNet::V4(net) => Some(net.addr()),
                    IpNet::V6(_) => None,
                });
                let Some(address) = address else {
                    self.give_back(attachment, log);
                    return Err(CniError::invalid_config(
                        "ipam",
                        format!(
                            "IPAM plugin {} returned no IPv4 address (ips: {:?}); \
                             xvs pods are IPv4-only",
                            delegate.plugin(),
                            result
                                .ips
                                .iter()
                                .map(|ip| ip.address.to_string())
                                .collect::<Vec<_>>()
                        ),
                    ));
                };
                Ok(Acquired {
                    address,
                    dns: result.dns,
                    give_back: true,
                })
            }
        }
    }

    /// DEL: frees whatever `attachment` holds; holding nothing is success.
    fn release(&self, attachment: &Attachment) -> Result<(), CniError> {
        match self {
            AddressSource::BuiltIn(ipam) => ipam.release(attachment).map(drop)?,
            AddressSource::Delegated(delegate) => delegate.run(Command::Del)?,
        }
        Ok(())
    }

    /// Undoing a failed ADD: [`AddressSource::release`], failures logged.
    fn give_back(&self, attachment: &Attachment, log: &mut String) {
        if let Err(e) = self.release(attachment) {
            let _ = writeln!(log, "xvs-cni: undoing ADD: releasing the address: {e}");
        }
    }

    /// CHECK: how the address source differs from `address`; a delegate's
    /// CHECK failing is its error.
    fn check(&self, attachment: &Attachment, address: Ipv4Addr) -> Result<Vec<String>, CniError> {
        match self {
            AddressSource::BuiltIn(ipam) => Ok(match ipam.find(attachment)? {
                Some(lease) if lease.ip == IpAddr::V4(address) => vec![],
                Some(lease) => vec![format!(
                    "the lease of this attachment is {}, not {address}",
                    lease.ip
                )],
                None => vec![format!(
                    "no lease for this attachment in {}",
                    ipam.dir().display()
                )],
            }),
            AddressSource::Delegated(delegate) => delegate.run(Command::Check).map(|()| vec![]),
        }
    }

    /// GC: frees what attachments not in `valid` hold.
    fn gc(&self, valid: &[Attachment], log: &mut String) -> Result<(), CniError> {
        match self {
            AddressSource::BuiltIn(ipam) => {
                let freed = ipam.gc(valid)?;
                if !freed.is_empty() {
                    let _ = writeln!(log, "xvs-cni: GC freed leases {freed:?}");
                }
                Ok(())
            }
            AddressSource::Delegated(delegate) => delegate.run_if_known(Command::Gc, log),
        }
    }

    /// STATUS: whether addresses can be served.
    fn status(&self, log: &mut String) -> Result<(), CniError> {
        match self {
            AddressSource::BuiltIn(_) => Ok(()),
            AddressSource::Delegated(delegate) => delegate.run_if_known(Command::Status, log),
        }
    }
}

/// The address asked for with the built-in IPAM: the first IPv4 address of
/// `runtimeConfig.ips`, else of `args.cni.ips`; a list with no IPv4 address
/// is code 7.
fn requested_ipv4(conf: &NetConf) -> Result<Option<Ipv4Addr>, CniError> {
    let lists = [
        ("runtimeConfig.ips", &conf.runtime_config.ips),
        ("args.cni.ips", &conf.args_ips),
    ];
    let Some((field, ips)) = lists.into_iter().find(|(_, ips)| !ips.is_empty()) else {
        return Ok(None);
    };
    ips.iter()
        .find_map(|ip| match ip {
            IpNet::V4(net) => Some(net.addr()),
            IpNet::V6(_) => None,
        })
        .map(Some)
        .ok_or_else(|| {
            CniError::invalid_config(field, "no IPv4 address in it; xvs pods are IPv4-only")
        })
}

fn gateway_v4(conf: &NetConf) -> Result<Ipv4Addr, CniError> {
    match conf.gateway {
        IpAddr::V4(gw) => Ok(gw),
        IpAddr::V6(_) => Err(CniError::invalid_config(
            "gateway",
            "xvs pods are IPv4-only; the gateway must be an IPv4 address",
        )),
    }
}

fn netns_of(env: &Env) -> PathBuf {
    env.netns.clone().unwrap_or_default()
}

/// ADD; returns the result JSON.
pub fn add(env: &Env, conf: &NetConf, log: &mut String) -> Result<String, CniError> {
    let attachment = env.attachment();
    let netns = netns_of(env);
    let gateway = gateway_v4(conf)?;
    let addresses = AddressSource::of(env, conf);
    let mut xvsd = Xvsd::connect(&conf.socket)?;
    let mtu = match conf.mtu {
        Some(mtu) => mtu,
        None => xvsd.pod_mtu()?.unwrap_or(DEFAULT_MTU),
    };

    let acquired = addresses.acquire(&attachment, conf, log)?;
    let address = acquired.address;
    let release = |log: &mut String| {
        if acquired.give_back {
            addresses.give_back(&attachment, log);
        }
    };
    let host_ifname = plumb::host_ifname(&attachment.container_id, &attachment.ifname);
    let attached = match plumb::attach(&AttachRequest {
        host_ifname: host_ifname.clone(),
        netns: netns.clone(),
        ifname: attachment.ifname.clone(),
        address,
        gateway,
        mtu,
        mac: conf.runtime_config.mac,
    }) {
        Ok(attached) => attached,
        Err(e) => {
            release(log);
            return Err(e.into());
        }
    };
    let port = PortSpec {
        name: host_ifname.clone(),
        kind: PortKind::Pod {
            ip: address,
            mac: attached.pod_mac,
        },
        mtu: u16::try_from(mtu).unwrap_or(u16::MAX),
        attachment: Some(PortAttachment {
            container_id: attachment.container_id.clone(),
            ifname: attachment.ifname.clone(),
            netns: netns.display().to_string(),
        }),
    };
    let params = serde_json::to_value(&port).unwrap_or_default();
    if let Err(e) = xvsd.call("port-add", params) {
        if let Err(d) = plumb::detach(&host_ifname, &netns, &attachment.ifname) {
            let _ = writeln!(log, "xvs-cni: undoing ADD: detaching: {d}");
        }
        release(log);
        return Err(e);
    }

    let result = CniResult {
        interfaces: vec![
            Interface {
                name: host_ifname,
                mac: Some(attached.host_mac.to_string()),
                ..Interface::default()
            },
            Interface {
                name: attachment.ifname.clone(),
                mac: Some(attached.pod_mac.to_string()),
                mtu: Some(mtu),
                sandbox: Some(netns.display().to_string()),
                ..Interface::default()
            },
        ],
        ips: vec![IpConfig {
            interface: Some(1),
            address: IpNet::V4(Ipv4Net::from(address)),
            gateway: Some(IpAddr::V4(gateway)),
        }],
        routes: vec![Route::new(
            IpNet::V4(Ipv4Net::default()),
            Some(IpAddr::V4(gateway)),
        )],
        dns: if conf.dns.is_empty() {
            acquired.dns.clone()
        } else {
            conf.dns.clone()
        },
    };
    Ok(format!("{}\n", result.to_json(conf.cni_version)))
}

/// DEL: succeeds whenever nothing of the attachment is left.
pub fn del(env: &Env, conf: &NetConf, log: &mut String) -> Result<(), CniError> {
    let attachment = env.attachment();
    let host_ifname = plumb::host_ifname(&attachment.container_id, &attachment.ifname);
    match Xvsd::connect(&conf.socket).and_then(|mut x| x.port_del(&host_ifname)) {
        Ok(_) => {}
        // xvsd drops a port whose interface is gone; DEL must not wait for it.
        Err(e) => {
            let _ = writeln!(
                log,
                "xvs-cni: DEL {}/{}: port-del {host_ifname} skipped: {e}",
                attachment.container_id, attachment.ifname
            );
        }
    }
    plumb::detach(&host_ifname, &netns_of(env), &attachment.ifname)?;
    AddressSource::of(env, conf).release(&attachment)
}

/// CHECK: every difference from `prevResult`, or success.
pub fn check(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let Some(prev) = &conf.prev_result else {
        return Err(CniError::invalid_config(
            "prevResult",
            "missing; CHECK needs the result of the ADD",
        ));
    };
    let attachment = env.attachment();
    let netns = netns_of(env);
    let gateway = gateway_v4(conf)?;
    let host_ifname = plumb::host_ifname(&attachment.container_id, &attachment.ifname);
    let Some(address) = prev.ips.iter().find_map(|ip| match ip.address {
        IpNet::V4(net) => Some(net.addr()),
        IpNet::V6(_) => None,
    }) else {
        return Err(CniError::invalid_config(
            "prevResult.ips",
            "no IPv4 address; this is not the result of an xvs-cni ADD",
        ));
    };
    let mut differences = AddressSource::of(env, conf).check(&attachment, address)?;

    let link = plumb::inspect(&netns, &attachment.ifname)?;
    if !link.up {
        differences.push(format!("{} is down in the pod", attachment.ifname));
    }
    if !link.has_address(address) {
        differences.push(format!(
            "{} does not have {address}/32 (has {:?})",
            attachment.ifname,
            link.addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        ));
    }
    if !link.has_link_route_to(gateway) {
        differences.push(format!(
            "no route {gateway} dev {} scope link",
            attachment.ifname
        ));
    }
    if !link.has_default_via(gateway) {
        differences.push(format!(
            "no route default via {gateway} dev {}",
            attachment.ifname
        ));
    }
    if let Some(mac) = prev
        .interfaces
        .iter()
        .find(|i| i.sandbox.is_some() && i.name == attachment.ifname)
        .and_then(|i| i.mac.as_deref())
    {
        if !mac.eq_ignore_ascii_case(&link.mac.to_string()) {
            differences.push(format!(
                "{} has MAC {}, prevResult says {mac}",
                attachment.ifname, link.mac
            ));
        }
    }

    let ports = Xvsd::connect(&conf.socket)?.port_list()?;
    match ports.iter().find(|p| p["name"] == host_ifname.as_str()) {
        None => differences.push(format!("xvsd has no port {host_ifname}")),
        Some(port) => differences.extend(port_differences(port, &attachment, &netns, address)),
    }

    if differences.is_empty() {
        Ok(())
    } else {
        Err(CniError::CheckFailed { differences })
    }
}

/// How xvsd's `port` differs from what ADD registered.
fn port_differences(
    port: &Value,
    attachment: &Attachment,
    netns: &Path,
    address: Ipv4Addr,
) -> Vec<String> {
    let name = port["name"].as_str().unwrap_or_default();
    let mut out = Vec::new();
    let expected = json!({
        "container_id": attachment.container_id,
        "ifname": attachment.ifname,
        "netns": netns.display().to_string(),
    });
    if port["attachment"] != expected {
        out.push(format!(
            "xvsd's port {name} has attachment {}, expected {expected}",
            port["attachment"]
        ));
    }
    let ip = port["kind"]["pod"]["ip"].as_str().unwrap_or_default();
    if ip != address.to_string() {
        out.push(format!(
            "xvsd's port {name} is for pod IP {ip:?}, expected {address}"
        ));
    }
    if port["status"] != "up" {
        out.push(format!("xvsd's port {name} is {}", port["status"]));
    }
    out
}

/// STATUS: xvsd answers `version` (else code 50), and the address source
/// is fine.
pub fn status(env: &Env, conf: &NetConf, log: &mut String) -> Result<(), CniError> {
    Xvsd::connect(&conf.socket)
        .and_then(|mut x| x.call("version", Value::Null))
        .map_err(|e| CniError::NotAvailable {
            reason: e.to_string(),
        })?;
    AddressSource::of(env, conf).status(log)
}

/// GC: addresses and xvsd ports of attachments not in the valid list.
pub fn gc(env: &Env, conf: &NetConf, log: &mut String) -> Result<(), CniError> {
    let valid = conf.valid_attachments.clone().unwrap_or_default();
    AddressSource::of(env, conf).gc(&valid, log)?;
    let mut xvsd = Xvsd::connect(&conf.socket)?;
    for port in xvsd.port_list()? {
        let Ok(spec) = serde_json::from_value::<PortSpec>(strip_status(port)) else {
            continue;
        };
        let Some(a) = spec.attachment else { continue };
        if valid
            .iter()
            .any(|v| v.container_id == a.container_id && v.ifname == a.ifname)
        {
            continue;
        }
        xvsd.port_del(&spec.name)?;
        plumb::detach(&spec.name, Path::new(&a.netns), &a.ifname)?;
        let _ = writeln!(
            log,
            "xvs-cni: GC removed port {} of {}/{}",
            spec.name, a.container_id, a.ifname
        );
    }
    Ok(())
}

/// A `port-list` entry without its `status`, as a [`PortSpec`] decodes.
fn strip_status(mut port: Value) -> Value {
    if let Some(map) = port.as_object_mut() {
        map.remove("status");
    }
    port
}
