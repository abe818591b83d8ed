//! ADD, DEL, CHECK, STATUS and GC: IPAM, plumbing and xvsd put together.
//!
//! **ADD** connects to xvsd first (unreachable: code 11, nothing done), then
//! allocates the address, plumbs the veth ([`plumb::attach`]) and registers
//! the host end with `port-add` (name = host ifname, kind pod with the
//! address and the pod end's MAC, the MTU, and the attachment). A failure
//! undoes what this ADD did, in reverse order: detach, then release the
//! lease — unless the lease was already held before this ADD (a repeated
//! ADD without DEL, which the spec forbids: plumbing then fails with code
//! 102 and must not take the address from the pod that has it).
//!
//! The pod MTU is the configuration's `mtu`, else [`DEFAULT_MTU`]: 1450,
//! a 1500-byte uplink minus the 50 bytes of VXLAN encapsulation. (Deriving
//! it from the actual uplink needs xvsd to report it; not done yet.)
//!
//! **DEL** never fails for something already gone: `port-del` (a missing
//! port is fine, an unreachable xvsd is logged and skipped — its ports
//! vanish with their interface anyway), detach (idempotent), release.
//!
//! **CHECK** compares the pod interface, the lease and xvsd's port with
//! `prevResult` and lists every difference (code 105).
//!
//! **STATUS** is xvsd answering `version` (code 50 otherwise).
//!
//! **GC** frees leases, and deletes ports (and their veths) that xvsd holds
//! for attachments not in `cni.dev/valid-attachments`; ports without an
//! attachment (uplinks, ports added by hand) are never touched.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net};
use serde_json::{json, Value};
use xvs_control::state::{Attachment as PortAttachment, PortKind, PortSpec};

use crate::error::CniError;
use crate::ipam::HostLocal;
use crate::plumb::{self, AttachRequest};
use crate::spec::{Attachment, Env, Ipam, NetConf};
use crate::version::{CniResult, Interface, IpConfig, Route};
use crate::xvsd::Xvsd;

/// The pod MTU when the configuration has none: 1500 minus VXLAN's 50.
pub const DEFAULT_MTU: u32 = 1450;

/// The built-in allocator, or code 2 for a delegated one (not yet supported).
fn host_local(conf: &NetConf) -> Result<HostLocal, CniError> {
    match &conf.ipam {
        Ipam::BuiltIn { pool, data_dir } => Ok(HostLocal::new(data_dir, pool.clone())),
        Ipam::Delegate { plugin } => Err(CniError::UnsupportedField {
            key: "ipam.type".into(),
            value: format!("{plugin:?} (delegated IPAM is not supported yet)"),
        }),
    }
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
    let mtu = conf.mtu.unwrap_or(DEFAULT_MTU);
    let ipam = host_local(conf)?;
    let mut xvsd = Xvsd::connect(&conf.socket)?;

    let held_before = ipam.find(&attachment)?.is_some();
    let lease = ipam.allocate(&attachment)?;
    let release = |log: &mut String| {
        if !held_before {
            if let Err(e) = ipam.release(&attachment) {
                let _ = writeln!(log, "xvs-cni: undoing ADD: releasing the lease: {e}");
            }
        }
    };
    let IpAddr::V4(address) = lease.ip else {
        release(log);
        return Err(CniError::invalid_config(
            "ipam.subnet",
            "xvs pods are IPv4-only; use an IPv4 subnet",
        ));
    };
    let host_ifname = plumb::host_ifname(&attachment.container_id, &attachment.ifname);
    let attached = match plumb::attach(&AttachRequest {
        host_ifname: host_ifname.clone(),
        netns: netns.clone(),
        ifname: attachment.ifname.clone(),
        address,
        gateway,
        mtu,
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
        dns: conf.dns.clone(),
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
    // Nothing of ours to release with a delegated IPAM (not supported).
    if let Ok(ipam) = host_local(conf) {
        ipam.release(&attachment)?;
    }
    Ok(())
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
    let mut differences = Vec::new();

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

    if let Ok(ipam) = host_local(conf) {
        match ipam.find(&attachment)? {
            Some(lease) if lease.ip == IpAddr::V4(address) => {}
            Some(lease) => differences.push(format!(
                "the lease of this attachment is {}, not {address}",
                lease.ip
            )),
            None => differences.push(format!(
                "no lease for this attachment in {}",
                ipam.dir().display()
            )),
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

/// STATUS: xvsd answers `version`, or code 50.
pub fn status(conf: &NetConf) -> Result<(), CniError> {
    Xvsd::connect(&conf.socket)
        .and_then(|mut x| x.call("version", Value::Null))
        .map(drop)
        .map_err(|e| CniError::NotAvailable {
            reason: e.to_string(),
        })
}

/// GC: leases and xvsd ports of attachments not in the valid list.
pub fn gc(conf: &NetConf, log: &mut String) -> Result<(), CniError> {
    let valid = conf.valid_attachments.clone().unwrap_or_default();
    if let Ok(ipam) = host_local(conf) {
        let freed = ipam.gc(&valid)?;
        if !freed.is_empty() {
            let _ = writeln!(log, "xvs-cni: GC freed leases {freed:?}");
        }
    }
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
