//! Pods nominated to a node by preemption, and the filter that keeps their room for them
//! (kube-scheduler's `PodNominator` and `RunFilterPluginsWithNominatedPods`).
//!
//! Preemption evicts pods so that the preemptor fits on a node, and writes that node in the
//! preemptor's `status.nominatedNodeName`. Until the preemptor is bound, the freed room is
//! not yet counted on the node: without care, a lower-priority pod popped first would take it
//! and the preemptor would preempt again. So a node's filter runs twice when pods of equal or
//! higher priority are nominated to it: once with those pods added to the node, once without,
//! and the node passes only if both pass. Both, because resource and anti-affinity filters
//! fail more easily with the nominated pods counted, affinity filters more easily without
//! them — and the nominated pods may still land elsewhere.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{run_filters, CycleState, FilterPlugin, Status};
use crate::node_info::{pod_key, NodeInfo};

/// Whether a filter plugin reads the whole cluster in its PreFilter (counts per topology
/// domain, the pods with affinity terms): its state must be recomputed when pods are added to
/// a node. kube updates such state incrementally (PreFilter's AddPod extension); keel
/// recomputes it over a copy of the cluster, which only the rare nodes with nominated pods pay.
pub fn reads_whole_cluster(plugin: &dyn FilterPlugin) -> bool {
    matches!(plugin.name(), "PodTopologySpread" | "InterPodAffinity")
}

/// A pod's `spec.priority` (0 when unset, as kube reads it).
pub fn priority(pod: &Pod) -> i32 {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.priority)
        .unwrap_or(0)
}

/// The node in a pod's `status.nominatedNodeName`, if any.
pub fn nominated_node_name(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()
        .and_then(|status| status.nominated_node_name.as_deref())
        .filter(|name| !name.is_empty())
}

/// The node `pod` was nominated to: its `status.nominatedNodeName` (kube reads only that), or
/// else the nomination `nominator` holds in memory, whose status write may not have come back
/// through the watch yet.
pub fn nominated_node<'a>(pod: &'a Pod, nominator: &'a Nominator) -> Option<&'a str> {
    nominated_node_name(pod).or_else(|| {
        if nominator.is_empty() {
            None
        } else {
            nominator.node_of(&pod_key(pod))
        }
    })
}

/// Pending pods nominated to a node, by node.
#[derive(Debug, Default)]
pub struct Nominator {
    /// Node name → the pods nominated to it (the latest version seen of each).
    by_node: HashMap<String, Vec<Pod>>,
    /// Pod key → its node in `by_node`.
    node_of: HashMap<String, String>,
}

impl Nominator {
    pub fn new() -> Nominator {
        Nominator::default()
    }

    pub fn is_empty(&self) -> bool {
        self.node_of.is_empty()
    }

    /// The node a pod is nominated to, as the scheduler knows it.
    pub fn node_of(&self, key: &str) -> Option<&str> {
        self.node_of.get(key).map(String::as_str)
    }

    /// The pods nominated to `node`.
    pub fn pods_for_node(&self, node: &str) -> &[Pod] {
        self.by_node.get(node).map_or(&[], Vec::as_slice)
    }

    /// A newer version of a pending pod: its nomination follows `status.nominatedNodeName`.
    /// One exception, kube's: a version without a nomination that follows another without
    /// one keeps a nomination made in memory, as the status write carrying it may not have
    /// come back through the watch yet.
    pub fn update(&mut self, old: Option<&Pod>, pod: &Pod) {
        let key = pod_key(pod);
        let node = match nominated_node_name(pod) {
            Some(node) => Some(node.to_string()),
            None if old.is_none_or(|old| nominated_node_name(old).is_none()) => {
                self.node_of.get(&key).cloned()
            }
            None => None,
        };
        self.remove(&key);
        if let Some(node) = node {
            self.insert(key, node, pod.clone());
        }
    }

    /// Preemption chose `node` for `pod`: counted there at once, before the status write.
    pub fn nominate(&mut self, pod: &Pod, node: &str) {
        let key = pod_key(pod);
        self.remove(&key);
        self.insert(key, node.to_string(), pod.clone());
    }

    /// The pod is bound, assumed, deleted or no longer ours.
    pub fn remove(&mut self, key: &str) {
        let Some(node) = self.node_of.remove(key) else {
            return;
        };
        if let Some(pods) = self.by_node.get_mut(&node) {
            pods.retain(|pod| pod_key(pod) != key);
            if pods.is_empty() {
                self.by_node.remove(&node);
            }
        }
    }

    fn insert(&mut self, key: String, node: String, pod: Pod) {
        self.by_node.entry(node.clone()).or_default().push(pod);
        self.node_of.insert(key, node);
    }
}

/// The filters on `nodes[i]` with the pods nominated there of priority at least the pod's
/// counted, then without them; the first refusal decides (kube's
/// `RunFilterPluginsWithNominatedPods`). `filters` are the ones that did not skip the pod and
/// `state` their PreFilter state over `nodes`.
pub fn run_filters_with_nominated(
    filters: &[&dyn FilterPlugin],
    state: &CycleState,
    pod: &Pod,
    nodes: &[NodeInfo],
    i: usize,
    nominated: &[Pod],
) -> Status {
    let node = &nodes[i];
    let own = pod_key(pod);
    let threshold = priority(pod);
    let mut added = None::<NodeInfo>;
    for other in nominated {
        // The pod itself may be nominated here (it preempted before): it is not in its way.
        if priority(other) < threshold || pod_key(other) == own {
            continue;
        }
        let with = added.get_or_insert_with(|| node.clone());
        if let Err(error) = with.add_pod(other.clone()) {
            return Status::error(error.to_string());
        }
    }
    let Some(with) = added else {
        return run_filters(filters, state, pod, node);
    };
    let first = if filters.iter().any(|plugin| reads_whole_cluster(*plugin)) {
        let mut cluster = nodes.to_vec();
        cluster[i] = with.clone();
        let mut recomputed = CycleState::new();
        for plugin in filters {
            let status = plugin.pre_filter(pod, &cluster, &mut recomputed);
            if !status.is_ok() {
                return status;
            }
        }
        run_filters(filters, &recomputed, pod, &with)
    } else {
        run_filters(filters, state, pod, &with)
    };
    if !first.is_ok() {
        return first;
    }
    run_filters(filters, state, pod, node)
}

#[cfg(test)]
mod tests;
