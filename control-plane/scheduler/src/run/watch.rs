//! The scheduler's watches: pods (finished ones left out), nodes and namespaces, each a
//! kube-rs watcher whose events become [`Input`]s for the scheduling thread (namespace labels
//! go to a shared map instead: only affinity terms with a `namespaceSelector` read them).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;

use super::Input;
use crate::node_info::pod_key;

pub(super) async fn watch_pods(api: Api<Pod>, inputs: mpsc::Sender<Input>) {
    // kube-scheduler's informer leaves finished pods out: they hold nothing on their node.
    let config = watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed");
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut listing: HashSet<String> = HashSet::new();
    while let Some(event) = stream.next().await {
        let input = match event {
            Ok(Event::Apply(pod)) => Input::Pod(Box::new(pod)),
            Ok(Event::Delete(pod)) => Input::PodDeleted(pod_key(&pod)),
            Ok(Event::Init) => {
                listing.clear();
                continue;
            }
            Ok(Event::InitApply(pod)) => {
                listing.insert(pod_key(&pod));
                Input::Pod(Box::new(pod))
            }
            Ok(Event::InitDone) => Input::PodsListed(std::mem::take(&mut listing)),
            Err(error) => {
                tracing::warn!(%error, "watching pods");
                continue;
            }
        };
        if inputs.send(input).is_err() {
            return;
        }
    }
}

pub(super) async fn watch_nodes(api: Api<Node>, inputs: mpsc::Sender<Input>) {
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing: HashSet<String> = HashSet::new();
    while let Some(event) = stream.next().await {
        let input = match event {
            Ok(Event::Apply(node)) => Input::Node(Box::new(node)),
            Ok(Event::Delete(node)) => Input::NodeDeleted(node.metadata.name.unwrap_or_default()),
            Ok(Event::Init) => {
                listing.clear();
                continue;
            }
            Ok(Event::InitApply(node)) => {
                listing.insert(node.metadata.name.clone().unwrap_or_default());
                Input::Node(Box::new(node))
            }
            Ok(Event::InitDone) => Input::NodesListed(std::mem::take(&mut listing)),
            Err(error) => {
                tracing::warn!(%error, "watching nodes");
                continue;
            }
        };
        if inputs.send(input).is_err() {
            return;
        }
    }
}

/// Keeps the namespaces' labels for affinity terms with a `namespaceSelector`.
pub(super) async fn watch_namespaces(
    api: Api<Namespace>,
    labels: Arc<RwLock<HashMap<String, BTreeMap<String, String>>>>,
) {
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        let Ok(mut map) = labels.write() else {
            return;
        };
        match event {
            Ok(Event::Apply(ns) | Event::InitApply(ns)) => {
                let name = ns.metadata.name.unwrap_or_default();
                map.insert(name, ns.metadata.labels.unwrap_or_default());
            }
            Ok(Event::Delete(ns)) => {
                map.remove(ns.metadata.name.as_deref().unwrap_or_default());
            }
            Ok(Event::Init | Event::InitDone) => {}
            Err(error) => tracing::warn!(%error, "watching namespaces"),
        }
    }
}
