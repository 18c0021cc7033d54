//! Pod networking, like a bridge CNI plugin: a node bridge holding the gateway address, and
//! per pod a veth pair with one end on the bridge and the other, `eth0`, made in the pod's
//! network namespace with the pod's address and a default route via the gateway.
//!
//! All through rtnetlink. The pod's side is configured over a netlink socket opened inside
//! the pod's namespace (a socket stays in the namespace it was created in).

use std::{
    fs,
    net::{IpAddr, Ipv4Addr},
};

use rtnetlink::{
    packet_route::link::{InfoData, InfoVeth, LinkAttribute},
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};
use thiserror::Error;

use keel_host::cidr::Ipv4Cidr;

/// The node bridge unless `--pod-bridge` says otherwise.
pub const DEFAULT_BRIDGE: &str = "keel0";
/// The interface name inside every pod.
pub const POD_INTERFACE: &str = "eth0";

#[derive(Debug, Error)]
pub enum NetworkError {
    #[error("cannot open a netlink socket{0}: {1}")]
    Connect(&'static str, #[source] std::io::Error),
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("interface {0} was created but cannot be found")]
    Missing(String),
}

fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    let what = what.into();
    move |source| NetworkError::Netlink { what, source }
}

/// The host end of a pod's veth pair: `kv` and the start of the pod's uid (IFNAMSIZ allows
/// 15 characters).
pub fn host_veth_name(uid: &str) -> String {
    format!("kv{}", &uid[..uid.len().min(12)])
}

/// The host-side name earlier keel versions gave the pod's end before moving it into the pod:
/// only looked for, to remove a pair such a version left half-made.
fn peer_veth_name(uid: &str) -> String {
    format!("kp{}", &uid[..uid.len().min(12)])
}

async fn host_handle() -> Result<Handle, NetworkError> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| NetworkError::Connect("", e))?;
    tokio::spawn(connection);
    Ok(handle)
}

/// A netlink handle bound to the network namespace of process `pid`.
async fn handle_in(pid: i32) -> Result<Handle, NetworkError> {
    let runtime = tokio::runtime::Handle::current();
    let ns_path = format!("/proc/{pid}/ns/net");
    // setns affects only the calling thread: a throwaway thread enters the namespace and
    // opens the socket there.
    let opened = std::thread::spawn(move || -> std::io::Result<_> {
        let ns = fs::File::open(&ns_path)?;
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
        let _guard = runtime.enter();
        rtnetlink::new_connection()
    })
    .join()
    .map_err(|_| NetworkError::Connect(" in the pod", std::io::Error::other("thread panicked")))?;
    let (connection, handle, _) = opened.map_err(|e| NetworkError::Connect(" in the pod", e))?;
    tokio::spawn(connection);
    Ok(handle)
}

async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, NetworkError> {
    keel_host::link::find_link(handle, name)
        .await
        .map_err(netlink(format!("looking up {name}")))
}

/// Creates the bridge if needed, gives it the gateway address and brings it up.
pub async fn ensure_bridge(
    name: &str,
    gateway: Ipv4Addr,
    cidr: Ipv4Cidr,
) -> Result<u32, NetworkError> {
    let handle = host_handle().await?;
    let index = match link_index(&handle, name).await? {
        Some(index) => index,
        None => {
            let created = handle
                .link()
                .add(LinkBridge::new(name).up().build())
                .execute()
                .await;
            // Pods starting together race to create the bridge: the losers find it made.
            match created {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(message))
                    if message.raw_code() == -libc::EEXIST => {}
                Err(error) => return Err(netlink(format!("creating bridge {name}"))(error)),
            }
            link_index(&handle, name)
                .await?
                .ok_or_else(|| NetworkError::Missing(name.to_owned()))?
        }
    };
    handle
        .address()
        .add(index, IpAddr::V4(gateway), cidr.prefix_len)
        .replace()
        .execute()
        .await
        .map_err(netlink(format!(
            "adding {gateway}/{} to {name}",
            cidr.prefix_len
        )))?;
    // A bridge without an address of its own takes the lowest MAC of its ports, and
    // changes it when that port leaves: pods would keep sending to the old MAC (from their
    // ARP caches) until their entries expired — seconds of lost packets whenever a pod is
    // deleted. A fixed address, derived from the gateway, keeps it stable.
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(index)
                .address(bridge_mac(gateway).to_vec())
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(netlink(format!("bringing {name} up")))?;
    Ok(index)
}

/// A locally administered unicast MAC for the bridge: `02:6b:` ("k") and the gateway's
/// address, so that each node's bridge has its own.
pub fn bridge_mac(gateway: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = gateway.octets();
    [0x02, 0x6b, a, b, c, d]
}

/// Wires the pod whose pause process is `pause_pid` to the bridge with address `ip`.
/// Idempotent: a half-made pair from an earlier attempt is removed first.
pub async fn attach_pod(
    bridge: &str,
    uid: &str,
    pause_pid: i32,
    ip: Ipv4Addr,
    cidr: Ipv4Cidr,
    gateway: Ipv4Addr,
) -> Result<(), NetworkError> {
    let host = host_handle().await?;
    let host_name = host_veth_name(uid);
    let peer_name = peer_veth_name(uid);
    for stale in [&host_name, &peer_name] {
        if let Some(index) = link_index(&host, stale).await? {
            let _ = host.link().del(index).execute().await;
        }
    }
    let bridge_index = link_index(&host, bridge)
        .await?
        .ok_or_else(|| NetworkError::Missing(bridge.to_owned()))?;
    // One message makes the pair: the host end on the bridge and up, the peer already in
    // the pod's namespace under its final name, both with one queue each. Each step this
    // saves would hold the kernel's rtnl lock through an RCU grace period — moving a device
    // between namespaces (a barrier and a grace period), a veth trimming its per-CPU queues
    // to one (veth_init_queues) — and so serialise every pod a node starts at once.
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(POD_INTERFACE.to_owned())
        .setns_by_pid(pause_pid as u32)
        .append_extra_attribute(LinkAttribute::NumTxQueues(1))
        .append_extra_attribute(LinkAttribute::NumRxQueues(1))
        .build();
    host.link()
        .add(
            LinkVeth::new(&host_name, POD_INTERFACE)
                .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                .append_extra_attribute(LinkAttribute::NumTxQueues(1))
                .append_extra_attribute(LinkAttribute::NumRxQueues(1))
                .controller(bridge_index)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(netlink(format!("creating veth {host_name}")))?;
    let host_index = link_index(&host, &host_name)
        .await?
        .ok_or_else(|| NetworkError::Missing(host_name.clone()))?;
    // Hairpin: a pod calling its own Service in a netfilter mode is DNATed on the node back
    // to itself, so the frame must leave by the port it came in on, which a bridge port
    // refuses by default (the kubelet's --hairpin-mode=hairpin-veth does the same).
    // Port options go in RTM_NEWLINK: RTM_SETLINK ignores them without an error.
    host.link()
        .set_port(LinkBridgePort::new(host_index).hairpin(true).build())
        .execute()
        .await
        .map_err(netlink(format!("setting hairpin mode on {host_name}")))?;

    let pod = handle_in(pause_pid).await?;
    let lo = link_index(&pod, "lo")
        .await?
        .ok_or_else(|| NetworkError::Missing("lo".into()))?;
    pod.link()
        .set(LinkUnspec::new_with_index(lo).up().build())
        .execute()
        .await
        .map_err(netlink("bringing lo up in the pod"))?;
    let eth = link_index(&pod, POD_INTERFACE)
        .await?
        .ok_or_else(|| NetworkError::Missing(POD_INTERFACE.to_owned()))?;
    pod.address()
        .add(eth, IpAddr::V4(ip), cidr.prefix_len)
        .execute()
        .await
        .map_err(netlink(format!("adding {ip} in the pod")))?;
    pod.link()
        .set(LinkUnspec::new_with_index(eth).up().build())
        .execute()
        .await
        .map_err(netlink("bringing eth0 up in the pod"))?;
    pod.route()
        .add(
            RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gateway)
                .build(),
        )
        .execute()
        .await
        .map_err(netlink(format!(
            "adding the default route via {gateway} in the pod"
        )))?;
    Ok(())
}

/// Removes the pod's host-side veth (its peer goes with it). A missing one is fine.
pub async fn detach_pod(uid: &str) -> Result<(), NetworkError> {
    let handle = host_handle().await?;
    let name = host_veth_name(uid);
    if let Some(index) = link_index(&handle, &name).await? {
        handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(netlink(format!("removing {name}")))?;
    }
    Ok(())
}

/// Removes the node bridge (at cleanup). Returns whether there was one.
pub async fn remove_bridge(name: &str) -> Result<bool, NetworkError> {
    let handle = host_handle().await?;
    keel_host::link::delete_link(&handle, name)
        .await
        .map_err(netlink(format!("removing bridge {name}")))
}
