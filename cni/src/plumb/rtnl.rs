//! The rtnetlink operations the plumbing needs, each one request, over a
//! connection opened in the namespace of the thread that calls
//! [`Rtnl::open`].
//!
//! rtnetlink is async; a CNI plugin is a short-lived single-threaded
//! process, so each [`Rtnl`] owns a current-thread tokio runtime (no worker
//! threads) that drives its connection only while [`Rtnl::run`] blocks on a
//! request. A netlink socket stays in the namespace it was created in, so
//! where `open` is called decides which namespace the requests act on.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use nix::errno::Errno;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteScope,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};
use xvs_control::state::MacAddr;

use super::{PlumbError, PodRoute};

/// An rtnetlink connection and the runtime that drives it.
pub(crate) struct Rtnl {
    runtime: tokio::runtime::Runtime,
    handle: Handle,
}

impl Rtnl {
    /// Opens a connection in the calling thread's network namespace.
    pub(crate) fn open() -> Result<Rtnl, PlumbError> {
        let io = |op: &str| {
            let op = op.to_string();
            move |source| PlumbError::Io { op, source }
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(io("starting the netlink runtime"))?;
        // The socket registers with the runtime's reactor as it is made.
        let (connection, handle, _) = {
            let _context = runtime.enter();
            rtnetlink::new_connection().map_err(io("opening a route netlink socket"))?
        };
        runtime.spawn(connection);
        Ok(Rtnl { runtime, handle })
    }

    /// Runs `request` with this connection's handle to completion.
    pub(crate) fn run<T, F, Fut>(&self, request: F) -> T
    where
        F: FnOnce(Handle) -> Fut,
        Fut: Future<Output = T>,
    {
        self.runtime.block_on(request(self.handle.clone()))
    }
}

/// The errno a netlink request was refused with, if it was.
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<Errno> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| Errno::from_raw(-c.get())),
        _ => None,
    }
}

/// Wraps a netlink failure with what we were doing.
pub(crate) fn failed(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> PlumbError {
    let op = op.into();
    move |source| PlumbError::Netlink { op, source }
}

/// The link called `name`, or `None` if there is none (ENODEV).
pub(crate) async fn link_by_name(
    handle: Handle,
    name: &str,
) -> Result<Option<LinkMessage>, PlumbError> {
    let found = handle
        .link()
        .get()
        .match_name(name)
        .execute()
        .try_next()
        .await;
    match found {
        Ok(link) => Ok(link),
        Err(e) if errno(&e) == Some(Errno::ENODEV) => Ok(None),
        Err(e) => Err(failed(format!("looking up interface {name}"))(e)),
    }
}

/// Deletes the link with `index`; one already gone is not an error.
pub(crate) async fn delete_link(handle: Handle, index: u32) -> Result<(), rtnetlink::Error> {
    match handle.link().del(index).execute().await {
        Err(e) if errno(&e) == Some(Errno::ENODEV) => Ok(()),
        other => other,
    }
}

/// Deletes the link called `name`; one already gone is not an error.
pub(crate) async fn delete_link_by_name(
    handle: Handle,
    name: &str,
) -> Result<(), rtnetlink::Error> {
    let link = LinkUnspec::new_with_name(name).build();
    match handle.link().del_with_message(link).execute().await {
        Err(e) if errno(&e) == Some(Errno::ENODEV) => Ok(()),
        other => other,
    }
}

/// Renames the link (it must be down: the kernel refuses to rename a link
/// that is up).
pub(crate) async fn rename(handle: Handle, index: u32, name: &str) -> Result<(), rtnetlink::Error> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).name(name).build())
        .execute()
        .await
}

/// Brings the link up.
pub(crate) async fn set_up(handle: Handle, index: u32) -> Result<(), rtnetlink::Error> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
}

/// `ip addr add <address>/32 dev <index>`.
pub(crate) async fn add_host_address(
    handle: Handle,
    index: u32,
    address: Ipv4Addr,
) -> Result<(), rtnetlink::Error> {
    handle
        .address()
        .add(index, IpAddr::V4(address), 32)
        .execute()
        .await
}

/// `ip route add <gateway>/32 dev <index> scope link`.
pub(crate) async fn add_link_route(
    handle: Handle,
    index: u32,
    gateway: Ipv4Addr,
) -> Result<(), rtnetlink::Error> {
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(gateway, 32)
        .output_interface(index)
        .scope(RouteScope::Link)
        .build();
    handle.route().add(route).execute().await
}

/// `ip route add default via <gateway> dev <index>`.
pub(crate) async fn add_default_route(
    handle: Handle,
    index: u32,
    gateway: Ipv4Addr,
) -> Result<(), rtnetlink::Error> {
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(index)
        .build();
    handle.route().add(route).execute().await
}

/// The IPv4 addresses on the link, with their prefix lengths.
pub(crate) async fn ipv4_addresses(
    handle: Handle,
    index: u32,
) -> Result<Vec<Ipv4Net>, rtnetlink::Error> {
    let messages: Vec<AddressMessage> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await?;
    let mut addresses = Vec::new();
    for msg in messages {
        if msg.header.family != AddressFamily::Inet || msg.header.index != index {
            continue;
        }
        // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the
        // peer's on point-to-point links and equal to it otherwise.
        let local = msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        let address = local.or_else(|| {
            msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            })
        });
        if let Some(ip) = address {
            if let Ok(net) = Ipv4Net::new(ip, msg.header.prefix_len) {
                addresses.push(net);
            }
        }
    }
    Ok(addresses)
}

/// The main table's IPv4 routes leaving through the link.
pub(crate) async fn ipv4_routes(
    handle: Handle,
    index: u32,
) -> Result<Vec<PodRoute>, rtnetlink::Error> {
    let messages: Vec<RouteMessage> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await?;
    let mut routes = Vec::new();
    for msg in messages {
        let table = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Table(t) => Some(*t),
                _ => None,
            })
            .unwrap_or(u32::from(msg.header.table));
        let oif = msg.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        if table != u32::from(RouteHeader::RT_TABLE_MAIN) || oif != Some(index) {
            continue;
        }
        let dst = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            })
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let gateway = msg.attributes.iter().find_map(|a| match a {
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
            _ => None,
        });
        let Ok(destination) = Ipv4Net::new(dst, msg.header.destination_prefix_length) else {
            continue;
        };
        routes.push(PodRoute {
            destination,
            gateway,
            link_scope: msg.header.scope == RouteScope::Link,
        });
    }
    Ok(routes)
}

/// What the plumbing reads off a link message.
pub(crate) struct LinkFacts {
    pub index: u32,
    pub mac: Option<MacAddr>,
    pub mtu: Option<u32>,
    pub up: bool,
    pub is_veth: bool,
}

impl LinkFacts {
    pub(crate) fn of(link: &LinkMessage) -> LinkFacts {
        let mut facts = LinkFacts {
            index: link.header.index,
            mac: None,
            mtu: None,
            up: link.header.flags.contains(LinkFlags::Up),
            is_veth: false,
        };
        for attr in &link.attributes {
            match attr {
                LinkAttribute::Address(bytes) => {
                    facts.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr);
                }
                LinkAttribute::Mtu(mtu) => facts.mtu = Some(*mtu),
                LinkAttribute::LinkInfo(infos) => {
                    facts.is_veth = infos
                        .iter()
                        .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth)));
                }
                _ => {}
            }
        }
        facts
    }
}
