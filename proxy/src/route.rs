//! The blackhole route for the service CIDR.
//!
//! ClusterIPs are virtual: only keel's programs give them meaning. Whenever a translation does
//! not happen (a process outside keel's cgroup, the daemon stopped, a service deleted), a packet
//! to a ClusterIP must die on this host instead of following the default route off the machine.
//! The route is tagged with keel's routing protocol number so that cleanup removes keel's route
//! and nothing an administrator installed.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::{
    packet_route::{
        address::{AddressAttribute, AddressMessage},
        route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType},
    },
    Handle, LinkDummy, LinkIfb, RouteMessageBuilder,
};
use thiserror::Error;

use keel_host::cidr::Ipv4Cidr;

/// `rtm_protocol` of keel's routes (`ip route` shows `proto 202`). Values above
/// `RTPROT_STATIC` (4) are free for routing daemons; 202 is not in /etc/iproute2/rt_protos.
pub const KEEL_ROUTE_PROTOCOL: u8 = 202;

#[derive(Debug, Error)]
pub enum RouteError {
    #[error("interface {name}: {source}")]
    Link {
        name: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("interface {name} was created but cannot be found")]
    MissingLink { name: &'static str },
    #[error("listing the node's addresses: {0}")]
    Addresses(#[source] rtnetlink::Error),
    #[error("cannot open a netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    #[error("{operation} blackhole route {cidr}: {source}")]
    Netlink {
        operation: &'static str,
        cidr: Ipv4Cidr,
        #[source]
        source: rtnetlink::Error,
    },
}

/// Names the operation and the CIDR on a netlink failure.
fn netlink_error(
    operation: &'static str,
    cidr: Ipv4Cidr,
) -> impl FnOnce(rtnetlink::Error) -> RouteError {
    move |source| RouteError::Netlink {
        operation,
        cidr,
        source,
    }
}

async fn handle() -> Result<Handle, RouteError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(RouteError::Connect)?;
    tokio::spawn(connection);
    Ok(handle)
}

fn blackhole(cidr: Ipv4Cidr) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(cidr.addr, cidr.prefix_len)
        .kind(RouteType::BlackHole)
        .protocol(RouteProtocol::Other(KEEL_ROUTE_PROTOCOL))
        .build()
}

/// Installs (or replaces) the blackhole route for `cidr` in the current network namespace.
pub async fn install_blackhole(cidr: Ipv4Cidr) -> Result<(), RouteError> {
    handle()
        .await?
        .route()
        .add(blackhole(cidr))
        .replace()
        .execute()
        .await
        .map_err(netlink_error("installing", cidr))
}

/// The dummy interface that catches untranslated ClusterIPs in the netfilter proxy modes.
pub const DUMMY_INTERFACE: &str = "keel-svc0";

/// Routes the service CIDR into a dummy interface, which drops whatever it is given.
///
/// The iptables and nftables modes translate locally made connections in the `OUTPUT` hook,
/// which runs *after* the route lookup: a blackhole route would fail the connect before any
/// rule is seen. A route into a dummy device lets the lookup succeed, the rules rewrite the
/// destination, and anything untranslated still dies on the node (kube-proxy's IPVS mode uses
/// a dummy device the same way).
pub async fn install_dummy_route(cidr: Ipv4Cidr) -> Result<(), RouteError> {
    let handle = handle().await?;
    let index = match link_index(&handle, DUMMY_INTERFACE).await? {
        Some(index) => index,
        None => {
            // `dummy` where the kernel has it; else `ifb`, which likewise frees whatever is
            // sent to it that tc did not redirect there (some kernels, this one among them,
            // build IFB but not DUMMY).
            let dummy = handle
                .link()
                .add(LinkDummy::new(DUMMY_INTERFACE).up().build())
                .execute()
                .await;
            if dummy.is_err() {
                handle
                    .link()
                    .add(LinkIfb::new(DUMMY_INTERFACE).up().build())
                    .execute()
                    .await
                    .map_err(netlink_error(
                        "creating the dummy (or ifb) interface for",
                        cidr,
                    ))?;
            }
            link_index(&handle, DUMMY_INTERFACE)
                .await?
                .ok_or(RouteError::MissingLink {
                    name: DUMMY_INTERFACE,
                })?
        }
    };
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(cidr.addr, cidr.prefix_len)
        .output_interface(index)
        .protocol(RouteProtocol::Other(KEEL_ROUTE_PROTOCOL))
        .build();
    handle
        .route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(netlink_error("installing", cidr))
}

async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, RouteError> {
    keel_host::link::find_link(handle, name)
        .await
        .map_err(|source| RouteError::Link {
            name: name.to_owned(),
            source,
        })
}

/// Removes the dummy interface of the netfilter modes, if present (its route goes with it).
/// Returns whether there was one.
pub async fn remove_dummy_interface() -> Result<bool, RouteError> {
    let handle = handle().await?;
    keel_host::link::delete_link(&handle, DUMMY_INTERFACE)
        .await
        .map_err(|source| RouteError::Link {
            name: DUMMY_INTERFACE.to_owned(),
            source,
        })
}

/// Removes keel's service route for `cidr` (blackhole or dummy) and the dummy interface.
/// Returns whether anything was removed.
pub async fn remove_service_route(cidr: Ipv4Cidr) -> Result<bool, RouteError> {
    let route = remove_route(cidr).await?;
    let interface = remove_dummy_interface().await?;
    Ok(route || interface)
}

/// Removes keel's route for `cidr`, of whatever type.
async fn remove_route(cidr: Ipv4Cidr) -> Result<bool, RouteError> {
    remove_route_of(KEEL_ROUTE_PROTOCOL, cidr, "removing").await
}

/// Every route of `protocol` (one of keel's); `cidr` names the listing in errors.
async fn routes_of(
    handle: &Handle,
    protocol: u8,
    cidr: Ipv4Cidr,
) -> Result<Vec<RouteMessage>, RouteError> {
    let routes: Vec<RouteMessage> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(netlink_error("listing routes for", cidr))?;
    Ok(routes
        .into_iter()
        .filter(|r| r.header.protocol == RouteProtocol::Other(protocol))
        .collect())
}

/// Removes keel's route of `protocol` for `cidr`; returns whether there was one.
async fn remove_route_of(
    protocol: u8,
    cidr: Ipv4Cidr,
    operation: &'static str,
) -> Result<bool, RouteError> {
    let handle = handle().await?;
    let ours = routes_of(&handle, protocol, cidr)
        .await?
        .into_iter()
        .find(|r| {
            r.header.destination_prefix_length == cidr.prefix_len
                && destination(r) == Some(cidr.addr)
        });
    let Some(route) = ours else {
        return Ok(false);
    };
    handle
        .route()
        .del(route)
        .execute()
        .await
        .map_err(netlink_error(operation, cidr))?;
    Ok(true)
}

/// The IPv4 addresses of this network namespace's interfaces (loopback excepted): where
/// NodePorts answer.
pub async fn node_addresses() -> Result<Vec<Ipv4Addr>, RouteError> {
    let handle = handle().await?;
    let messages: Vec<AddressMessage> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(RouteError::Addresses)?;
    let mut addresses: Vec<Ipv4Addr> = messages
        .iter()
        .flat_map(|m| m.attributes.iter())
        .filter_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(ip)) | AddressAttribute::Address(IpAddr::V4(ip)) => {
                Some(*ip)
            }
            _ => None,
        })
        .filter(|ip| !ip.is_loopback())
        .collect();
    addresses.sort();
    addresses.dedup();
    Ok(addresses)
}

fn destination(route: &RouteMessage) -> Option<Ipv4Addr> {
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(addr)) => Some(*addr),
        _ => None,
    })
}

/// `rtm_protocol` of the routes to other nodes' pod CIDRs (host-gw): apart from the service
/// route's, so that each set is listed and removed on its own.
pub const KEEL_POD_ROUTE_PROTOCOL: u8 = 203;

/// Routes `cidr` (another node's pods) through `gateway` (that node's address), replacing
/// any route of keel's for it.
pub async fn replace_pod_route(cidr: Ipv4Cidr, gateway: Ipv4Addr) -> Result<(), RouteError> {
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(cidr.addr, cidr.prefix_len)
        .gateway(gateway)
        .protocol(RouteProtocol::Other(KEEL_POD_ROUTE_PROTOCOL))
        .build();
    handle()
        .await?
        .route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(netlink_error("installing the pod route", cidr))
}

/// keel's routes to other nodes' pod CIDRs, with their gateways.
pub async fn pod_routes() -> Result<Vec<(Ipv4Cidr, Option<Ipv4Addr>)>, RouteError> {
    let all = Ipv4Cidr {
        addr: Ipv4Addr::UNSPECIFIED,
        prefix_len: 0,
    };
    let handle = handle().await?;
    Ok(routes_of(&handle, KEEL_POD_ROUTE_PROTOCOL, all)
        .await?
        .iter()
        .filter_map(|route| {
            let cidr = Ipv4Cidr {
                addr: destination(route)?,
                prefix_len: route.header.destination_prefix_length,
            };
            let gateway = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(addr)) => Some(*addr),
                _ => None,
            });
            Some((cidr, gateway))
        })
        .collect())
}

/// Removes keel's pod route for `cidr`; returns whether there was one.
pub async fn remove_pod_route(cidr: Ipv4Cidr) -> Result<bool, RouteError> {
    remove_route_of(KEEL_POD_ROUTE_PROTOCOL, cidr, "removing the pod route").await
}

/// Removes every pod route of keel's (cleanup); returns how many there were.
pub async fn remove_pod_routes() -> Result<usize, RouteError> {
    let mut removed = 0;
    for (cidr, _) in pod_routes().await? {
        if remove_pod_route(cidr).await? {
            removed += 1;
        }
    }
    Ok(removed)
}
