//! The pod network across nodes, host-gw style (flannel's `host-gw` backend, kube-router's
//! direct routes): every other node's `spec.podCIDR` is routed through that node's
//! InternalIP. Nodes must share a layer-2 segment, as host-gw requires; what crosses is plain
//! pod-to-pod IP, no encapsulation.
//!
//! Routes carry keel's pod-route protocol number, so this node's set is read back from the
//! kernel and brought in line (added, replaced, removed) on every change of the Nodes and
//! every minute; a route an administrator added is never touched.

use std::{collections::BTreeMap, net::Ipv4Addr, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::{
    runtime::{
        reflector::{self, Store},
        watcher,
    },
    Api, Client, ResourceExt,
};
use tokio::sync::watch;

use super::watch_pacing::paced;

use keel_host::cidr::Ipv4Cidr;
use keel_proxy::route;

/// Keeps the routes until `stop`. `bridge` is this node's pod bridge (its own CIDR is
/// reached there and never routed elsewhere).
pub async fn run(
    client: Client,
    node_name: String,
    bridge: String,
    mut stop: watch::Receiver<bool>,
) {
    let (nodes, writer) = reflector::store::<Node>();
    let changed = std::sync::Arc::new(tokio::sync::Notify::new());
    let watch_task = tokio::spawn(watch_nodes(Api::all(client), writer, changed.clone()));
    let mut resync = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            () = changed.notified() => {}
            _ = resync.tick() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        if nodes.state().is_empty() {
            continue; // not listed yet: an empty list would remove every route
        }
        let wanted = wanted_routes(&nodes, &node_name);
        if let Err(error) = sync(&wanted).await {
            tracing::warn!(%bridge, "routes to other nodes' pods: {error}");
        }
    }
    watch_task.abort();
}

async fn watch_nodes(
    api: Api<Node>,
    mut writer: reflector::store::Writer<Node>,
    changed: std::sync::Arc<tokio::sync::Notify>,
) {
    let mut stream = paced(watcher::watcher(api, watcher::Config::default()).boxed()).boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => {
                writer.apply_watcher_event(&event);
                changed.notify_one();
            }
            Err(error) => tracing::warn!(%error, "watching nodes"),
        }
    }
}

/// Every other node's pod CIDR and the address to route it through.
fn wanted_routes(nodes: &Store<Node>, this_node: &str) -> BTreeMap<String, (Ipv4Cidr, Ipv4Addr)> {
    routes_for(nodes.state().iter().map(|n| n.as_ref()), this_node)
}

/// `wanted_routes` over any nodes (pure, for tests). A node without a pod CIDR or an
/// InternalIP, or with values that do not parse, has no route; two nodes claiming the same
/// CIDR (a broken allocator) get none either, rather than one chosen at random.
pub fn routes_for<'a>(
    nodes: impl Iterator<Item = &'a Node>,
    this_node: &str,
) -> BTreeMap<String, (Ipv4Cidr, Ipv4Addr)> {
    let mut by_cidr: BTreeMap<String, Vec<(Ipv4Cidr, Ipv4Addr)>> = BTreeMap::new();
    for node in nodes {
        if node.name_any() == this_node {
            continue;
        }
        let cidr = node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_deref())
            .and_then(|c| c.parse::<Ipv4Cidr>().ok());
        let address = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|addresses| {
                addresses
                    .iter()
                    .find(|a| a.type_ == "InternalIP")
                    .and_then(|a| a.address.parse::<Ipv4Addr>().ok())
            });
        if let (Some(cidr), Some(address)) = (cidr, address) {
            by_cidr
                .entry(cidr.to_string())
                .or_default()
                .push((cidr, address));
        }
    }
    by_cidr
        .into_iter()
        .filter_map(|(key, claims)| match claims.as_slice() {
            [one] => Some((key, *one)),
            _ => {
                tracing::warn!(cidr = %key, "several nodes claim this pod CIDR; not routed");
                None
            }
        })
        .collect()
}

async fn sync(wanted: &BTreeMap<String, (Ipv4Cidr, Ipv4Addr)>) -> Result<(), route::RouteError> {
    let current = route::pod_routes().await?;
    for (cidr, gateway) in &current {
        match wanted.get(&cidr.to_string()) {
            Some((_, want)) if Some(*want) == *gateway => {}
            Some(_) => {} // replaced below
            None => {
                route::remove_pod_route(*cidr).await?;
                tracing::info!(%cidr, "route to a departed node's pods removed");
            }
        }
    }
    for (cidr, gateway) in wanted.values() {
        let present = current
            .iter()
            .any(|(c, g)| c == cidr && *g == Some(*gateway));
        if !present {
            route::replace_pod_route(*cidr, *gateway).await?;
            tracing::info!(%cidr, via = %gateway, "route to another node's pods");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Node {
        let mut value = serde_json::json!({"metadata": {"name": name}, "spec": {}, "status": {}});
        if let Some(cidr) = cidr {
            value["spec"]["podCIDR"] = cidr.into();
        }
        if let Some(ip) = ip {
            value["status"]["addresses"] =
                serde_json::json!([{"type": "InternalIP", "address": ip}]);
        }
        serde_json::from_value(value).unwrap_or_default()
    }

    #[test]
    fn every_other_node_with_a_cidr_and_an_address_is_routed() {
        let nodes = [
            node("n1", Some("10.244.0.0/24"), Some("192.168.50.1")),
            node("n2", Some("10.244.1.0/24"), Some("192.168.50.2")),
            node("n3", None, Some("192.168.50.3")),
            node("n4", Some("10.244.3.0/24"), None),
            node("n5", Some("garbage"), Some("192.168.50.5")),
            node("n6", Some("10.244.6.0/24"), Some("not-an-ip")),
        ];
        let routes = routes_for(nodes.iter(), "n1");
        let got: Vec<String> = routes
            .values()
            .map(|(c, g)| format!("{c} via {g}"))
            .collect();
        assert_eq!(got, ["10.244.1.0/24 via 192.168.50.2"]);
    }

    #[test]
    fn a_cidr_claimed_twice_is_not_routed() {
        let nodes = [
            node("n2", Some("10.244.1.0/24"), Some("192.168.50.2")),
            node("n3", Some("10.244.1.0/24"), Some("192.168.50.3")),
        ];
        assert!(routes_for(nodes.iter(), "n1").is_empty());
    }
}
