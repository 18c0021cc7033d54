//! The scheduler's view of the cluster: every node with the pods bound or assumed to it
//! (kube-scheduler's `internal/cache`).
//!
//! A pod is *assumed* on a node the moment the scheduler decides, before the binding reaches
//! the API server: the next pod is then scheduled against a node that already counts it, so a
//! burst of pods does not all pick the emptiest node. The watch later confirms the binding (the
//! pod arrives with `spec.nodeName` set); a failed binding forgets the assumption.
//!
//! The cache has a single owner, the scheduling loop, which applies watch events between
//! cycles; a cycle therefore reads the nodes without locks or snapshots.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::node_info::{pod_key, ClusterSummary, ClusterView, NodeInfo, NodeInfoError};

/// Where a pod the cache counts is, and whether only the scheduler believes it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Placement {
    node: String,
    assumed: bool,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    #[error("node {0:?} is not in the scheduler's cache")]
    UnknownNode(String),
    #[error("pod {0} is already in the scheduler's cache")]
    AlreadyCounted(String),
    #[error(transparent)]
    NodeInfo(#[from] NodeInfoError),
}

#[derive(Debug, Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    /// Node name → position in `nodes`.
    index: HashMap<String, usize>,
    /// Every counted pod (`namespace/name`) → its node.
    placements: HashMap<String, Placement>,
    /// Pods bound to a node the cache does not know (the pod watch ran ahead of the node
    /// watch, or the node was deleted first), counted once the node arrives.
    waiting: HashMap<String, Vec<Pod>>,
    /// Kept with every change to `nodes`, so a decision never counts it from scratch.
    summary: ClusterSummary,
}

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    /// The nodes, in a stable order between changes (scheduling rotates through it).
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The nodes with their summary, for a decision.
    pub fn view(&self) -> ClusterView<'_> {
        ClusterView {
            nodes: &self.nodes,
            summary: Some(self.summary),
        }
    }

    pub fn summary(&self) -> ClusterSummary {
        self.summary
    }

    /// Changes node `i` through `change`, keeping the summary.
    fn change_node<R>(&mut self, i: usize, change: impl FnOnce(&mut NodeInfo) -> R) -> R {
        self.summary.remove(&self.nodes[i]);
        let result = change(&mut self.nodes[i]);
        self.summary.add(&self.nodes[i]);
        result
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Pods counted on some node (bound or assumed).
    pub fn pod_count(&self) -> usize {
        self.placements.len()
    }

    pub fn is_assumed(&self, key: &str) -> bool {
        self.placements.get(key).is_some_and(|p| p.assumed)
    }

    /// The node a pod is counted on, if any.
    pub fn node_of(&self, key: &str) -> Option<&str> {
        self.placements.get(key).map(|p| p.node.as_str())
    }

    /// Adds a node or replaces it, keeping its pods. A node whose allocatable does not parse
    /// is refused (and an older version of it kept).
    pub fn upsert_node(&mut self, node: Node) -> Result<(), CacheError> {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(&i) = self.index.get(&name) {
            self.change_node(i, |info| info.set_node(node))?;
            return Ok(());
        }
        let mut info = NodeInfo::new(node, Vec::new())?;
        for pod in self.waiting.remove(&name).unwrap_or_default() {
            // Its quantities parsed when it was first counted.
            if info.add_pod(pod).is_err() {
                continue;
            }
        }
        self.index.insert(name, self.nodes.len());
        self.summary.add(&info);
        self.nodes.push(info);
        Ok(())
    }

    /// Removes a node; its pods stay counted (waiting) until they are deleted, as a node can
    /// come back with them.
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let info = self.nodes.swap_remove(i);
        self.summary.remove(&info);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name().to_string(), i);
        }
        if !info.pods.is_empty() {
            self.waiting.insert(name.to_string(), info.pods);
        }
    }

    /// Counts a pod the API says is bound to `spec.nodeName`: confirms an assumption, or adds
    /// it, or moves it if it was counted elsewhere.
    pub fn upsert_bound_pod(&mut self, pod: Pod) -> Result<(), CacheError> {
        let key = pod_key(&pod);
        let node = pod
            .spec
            .as_ref()
            .and_then(|spec| spec.node_name.clone())
            .unwrap_or_default();
        // The common case: the binding of a pod assumed on this node. Its counts stand; only
        // the object (now with its resourceVersion and status) is replaced.
        let pod = match (self.placements.get_mut(&key), self.index.get(&node)) {
            (Some(placement), Some(&i)) if placement.node == node => {
                match self.nodes[i].replace_pod_of_same_spec(&key, pod) {
                    Ok(()) => {
                        placement.assumed = false;
                        return Ok(());
                    }
                    Err(pod) => *pod,
                }
            }
            _ => pod,
        };
        if self.placements.contains_key(&key) {
            self.remove_pod(&key);
        }
        self.place(key, node, pod, false)
    }

    /// Counts `pod` on `node` before the binding is confirmed.
    pub fn assume(&mut self, pod: Pod, node: &str) -> Result<(), CacheError> {
        let key = pod_key(&pod);
        if self.placements.contains_key(&key) {
            return Err(CacheError::AlreadyCounted(key));
        }
        if !self.index.contains_key(node) {
            return Err(CacheError::UnknownNode(node.to_string()));
        }
        self.place(key, node.to_string(), pod, true)
    }

    /// Drops an assumption whose binding failed; a confirmed pod is left alone.
    pub fn forget(&mut self, key: &str) {
        if self.is_assumed(key) {
            self.remove_pod(key);
        }
    }

    /// Stops counting a pod (deleted, or finished).
    pub fn remove_pod(&mut self, key: &str) -> Option<Pod> {
        let placement = self.placements.remove(key)?;
        if let Some(&i) = self.index.get(&placement.node) {
            return self.change_node(i, |info| info.remove_pod(key));
        }
        let waiting = self.waiting.get_mut(&placement.node)?;
        let position = waiting.iter().position(|pod| pod_key(pod) == key)?;
        let pod = waiting.swap_remove(position);
        if waiting.is_empty() {
            self.waiting.remove(&placement.node);
        }
        Some(pod)
    }

    fn place(
        &mut self,
        key: String,
        node: String,
        pod: Pod,
        assumed: bool,
    ) -> Result<(), CacheError> {
        match self.index.get(&node) {
            Some(&i) => self.change_node(i, |info| info.add_pod(pod))?,
            None => {
                // Check the quantities now, so a pod counted later never fails to parse.
                crate::resources::pod_resource(&pod).map_err(|source| NodeInfoError::Pod {
                    pod: key.clone(),
                    node: node.clone(),
                    source,
                })?;
                self.waiting.entry(node.clone()).or_default().push(pod);
            }
        }
        self.placements.insert(key, Placement { node, assumed });
        Ok(())
    }
}

#[cfg(test)]
mod tests;
