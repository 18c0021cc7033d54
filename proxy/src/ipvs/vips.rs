//! The ClusterIPs as /32 addresses of the service interface (`keel-svc0`): IPVS only sees
//! packets addressed to the node itself (kube-proxy binds them to `kube-ipvs0` the same way).
//!
//! The proxy trait is synchronous and runs inside the daemon's runtime, so each change runs
//! rtnetlink on a short-lived thread with a runtime of its own.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};

use super::IpvsError;
use crate::{route::DUMMY_INTERFACE, tracker::Ipv4Cidr};

fn error(message: impl ToString) -> IpvsError {
    IpvsError::Vips {
        interface: DUMMY_INTERFACE.to_owned(),
        message: message.to_string(),
    }
}

/// Runs `job` on a thread of its own with a current-thread runtime.
fn on_own_runtime<T: Send>(
    job: impl FnOnce(rtnetlink::Handle) -> futures::future::BoxFuture<'static, Result<T, IpvsError>>
        + Send,
) -> Result<T, IpvsError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(error)?;
                runtime.block_on(async {
                    let (connection, handle, _) = rtnetlink::new_connection().map_err(error)?;
                    tokio::spawn(connection);
                    job(handle).await
                })
            })
            .join()
            .map_err(|_| error("the netlink thread panicked"))?
    })
}

/// The interface's index and its IPv4 addresses inside `cidr`.
async fn current(
    handle: &rtnetlink::Handle,
    cidr: Ipv4Cidr,
) -> Result<(u32, Vec<AddressMessage>), IpvsError> {
    let index = keel_host::link::find_link(handle, DUMMY_INTERFACE)
        .await
        .map_err(error)?
        .ok_or_else(|| error("the interface does not exist"))?;
    let messages: Vec<AddressMessage> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(error)?;
    let ours = messages
        .into_iter()
        .filter(|m| address(m).is_some_and(|a| cidr.contains(a)))
        .collect();
    Ok((index, ours))
}

fn address(message: &AddressMessage) -> Option<Ipv4Addr> {
    message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(IpAddr::V4(ip)) | AddressAttribute::Address(IpAddr::V4(ip)) => {
            Some(*ip)
        }
        _ => None,
    })
}

/// Adds every address of `vips` that the interface lacks.
pub fn bind(vips: &BTreeSet<Ipv4Addr>, cidr: Ipv4Cidr) -> Result<(), IpvsError> {
    let vips = vips.clone();
    on_own_runtime(move |handle| {
        Box::pin(async move {
            let (index, present) = current(&handle, cidr).await?;
            let present: BTreeSet<Ipv4Addr> = present.iter().filter_map(address).collect();
            for vip in vips.difference(&present) {
                handle
                    .address()
                    .add(index, IpAddr::V4(*vip), 32)
                    .replace()
                    .execute()
                    .await
                    .map_err(|e| error(format!("adding {vip}: {e}")))?;
            }
            Ok(())
        })
    })
}

/// Removes the interface's addresses in `cidr` that are not in `keep`.
pub fn unbind_except(keep: &BTreeSet<Ipv4Addr>, cidr: Ipv4Cidr) -> Result<(), IpvsError> {
    let keep = keep.clone();
    on_own_runtime(move |handle| {
        Box::pin(async move {
            let (_, present) = match current(&handle, cidr).await {
                Ok(found) => found,
                Err(_) if keep.is_empty() => return Ok(()), // no interface, nothing bound
                Err(error) => return Err(error),
            };
            for message in present {
                let Some(vip) = address(&message) else {
                    continue;
                };
                if !keep.contains(&vip) {
                    handle
                        .address()
                        .del(message)
                        .execute()
                        .await
                        .map_err(|e| error(format!("removing {vip}: {e}")))?;
                }
            }
            Ok(())
        })
    })
}
