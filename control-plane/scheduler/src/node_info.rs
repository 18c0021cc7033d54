//! A node with the pods assigned (or assumed) to it, and the totals every plugin reads:
//! kube-scheduler's `framework.NodeInfo`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use crate::resources::{is_restartable, parse_list, pod_resource, QuantityError, Resources};

/// A host port in use or wanted: (host IP, protocol, port), with an empty IP read as
/// [`DEFAULT_BIND_ALL_HOST_IP`] and an empty protocol as TCP.
pub type HostPort = (String, String, i32);

/// The host IP a port binds when none is given: every address of the node.
pub const DEFAULT_BIND_ALL_HOST_IP: &str = "0.0.0.0";
const DEFAULT_PROTOCOL: &str = "TCP";

/// A quantity in the node or in one of its pods that keel could not read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NodeInfoError {
    #[error("node {node:?}: status.allocatable {source}")]
    Allocatable { node: String, source: QuantityError },
    #[error("pod {pod:?} on node {node:?}: requests {source}")]
    Pod {
        pod: String,
        node: String,
        source: QuantityError,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    /// Boxed: a `Node` is about 1.7 KB, and inline it spread every node's totals 1.7 KB apart,
    /// so that each of the hundreds of nodes a cycle filters and scores cost cache misses
    /// before any plugin ran (a third of a cycle on 5,000 nodes). What the per-node plugins
    /// read of it is copied beside the totals below.
    node: Box<Node>,
    /// `spec.taints`, for TaintToleration (and NodeUnschedulable's), read per node.
    taints: Vec<Taint>,
    /// `spec.unschedulable`, for NodeUnschedulable, read per node.
    unschedulable: bool,
    /// The pods bound or assumed to be bound to the node.
    pub pods: Vec<Pod>,
    /// The sum of the pods' requests ([`pod_requests`](crate::resources::pod_requests)): what
    /// NodeResourcesFit's filter subtracts from allocatable.
    pub requested: Resources,
    /// The pods' CPU and memory with 100m and 200MiB for containers that name none (only
    /// `milli_cpu` and `memory` are set): what the resource scorers count, so that pods
    /// requesting nothing still spread.
    pub non_zero_requested: Resources,
    /// The node's `status.allocatable`.
    pub allocatable: Resources,
    /// The host ports the pods bind (containers and sidecars), without duplicates.
    pub used_ports: Vec<HostPort>,
    /// `status.images`: the size in bytes of each image name the node holds.
    pub image_sizes: BTreeMap<String, i64>,
    /// Pods with any pod affinity or anti-affinity: InterPodAffinity skips the nodes without
    /// (kube-scheduler's `PodsWithAffinity`), which on most clusters is nearly all of them.
    pub pods_with_affinity: usize,
    /// Pods with required anti-affinity (`PodsWithRequiredAntiAffinity`).
    pub pods_with_required_anti_affinity: usize,
}

impl NodeInfo {
    pub fn new(node: Node, pods: Vec<Pod>) -> Result<NodeInfo, NodeInfoError> {
        let mut info = NodeInfo {
            allocatable: allocatable(&node)?,
            image_sizes: image_sizes(&node),
            taints: taints_of(&node),
            unschedulable: unschedulable_of(&node),
            node: Box::new(node),
            pods: Vec::with_capacity(pods.len()),
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            used_ports: Vec::new(),
            pods_with_affinity: 0,
            pods_with_required_anti_affinity: 0,
        };
        for pod in pods {
            info.add_pod(pod)?;
        }
        Ok(info)
    }

    /// The node object.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The node's `spec.taints`.
    pub fn taints(&self) -> &[Taint] {
        &self.taints
    }

    /// The node's `spec.unschedulable` (cordoned).
    pub fn unschedulable(&self) -> bool {
        self.unschedulable
    }

    /// The node's name (`""` for a node without one).
    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or_default()
    }

    /// Counts one more pod on the node, as kube-scheduler's `NodeInfo.AddPod`: a pod the
    /// scheduler assumed, or one a what-if question (preemption) puts back.
    pub fn add_pod(&mut self, pod: Pod) -> Result<(), NodeInfoError> {
        let resource = pod_resource(&pod).map_err(|source| NodeInfoError::Pod {
            pod: pod.metadata.name.clone().unwrap_or_default(),
            node: self.name().to_string(),
            source,
        })?;
        let requested = &mut self.requested;
        requested.milli_cpu = requested
            .milli_cpu
            .saturating_add(resource.requests.milli_cpu);
        requested.memory = requested.memory.saturating_add(resource.requests.memory);
        requested.ephemeral_storage = requested
            .ephemeral_storage
            .saturating_add(resource.requests.ephemeral_storage);
        for (name, value) in &resource.requests.scalar {
            let amount = requested.scalar.entry(name.clone()).or_insert(0);
            *amount = amount.saturating_add(*value);
        }
        let non_zero = &mut self.non_zero_requested;
        non_zero.milli_cpu = non_zero
            .milli_cpu
            .saturating_add(resource.non_zero_milli_cpu);
        non_zero.memory = non_zero.memory.saturating_add(resource.non_zero_memory);

        for port in pod_host_ports(&pod) {
            if !self.used_ports.contains(&port) {
                self.used_ports.push(port);
            }
        }
        let affinity = pod.spec.as_ref().and_then(|spec| spec.affinity.as_ref());
        let pod_affinity = affinity.and_then(|a| a.pod_affinity.as_ref());
        let anti_affinity = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        if pod_affinity.is_some() || anti_affinity.is_some() {
            self.pods_with_affinity += 1;
        }
        let required_anti = anti_affinity
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_some_and(|terms| !terms.is_empty());
        if required_anti {
            self.pods_with_required_anti_affinity += 1;
        }
        self.pods.push(pod);
        Ok(())
    }

    /// Puts `pod` in the place of the counted pod of its key when both have the same spec:
    /// everything the node counts of a pod (requests, host ports, affinity) comes from its
    /// spec, so nothing needs recounting. This is a binding's confirmation, which differs from
    /// the assumed pod in metadata and status only. Gives `pod` back otherwise (boxed: the
    /// rare path pays for the move, not every call).
    pub fn replace_pod_of_same_spec(&mut self, key: &str, pod: Pod) -> Result<(), Box<Pod>> {
        match self.pods.iter_mut().find(|counted| pod_key(counted) == key) {
            Some(counted) if counted.spec == pod.spec => {
                *counted = pod;
                Ok(())
            }
            _ => Err(Box::new(pod)),
        }
    }

    /// Takes the pod `key` (`namespace/name`) off the node and recounts the totals from the
    /// pods that remain (kube-scheduler subtracts; recounting cannot drift, and a node holds
    /// at most a few hundred pods).
    pub fn remove_pod(&mut self, key: &str) -> Option<Pod> {
        let index = self.pods.iter().position(|pod| pod_key(pod) == key)?;
        let removed = self.pods.swap_remove(index);
        let remaining = std::mem::take(&mut self.pods);
        self.requested = Resources::default();
        self.non_zero_requested = Resources::default();
        self.used_ports.clear();
        self.pods_with_affinity = 0;
        self.pods_with_required_anti_affinity = 0;
        for pod in remaining {
            // Every remaining pod was added once, so its quantities parse.
            if let Err(error) = self.add_pod(pod) {
                debug_assert!(false, "a pod that was counted no longer parses: {error}");
            }
        }
        Some(removed)
    }

    /// Replaces the node object (labels, taints, allocatable changed), keeping its pods.
    /// A node whose allocatable does not parse is refused and the old one kept.
    pub fn set_node(&mut self, node: Node) -> Result<(), NodeInfoError> {
        self.allocatable = allocatable(&node)?;
        self.image_sizes = image_sizes(&node);
        self.taints = taints_of(&node);
        self.unschedulable = unschedulable_of(&node);
        *self.node = node;
        Ok(())
    }
}

fn taints_of(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|spec| spec.taints.clone())
        .unwrap_or_default()
}

fn unschedulable_of(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|spec| spec.unschedulable)
        .unwrap_or(false)
}

/// How many nodes hold what makes a PreFilter or PreScore walk the whole cluster (kube's
/// snapshot lists `havePodsWithAffinityNodeInfoList` and
/// `havePodsWithRequiredAntiAffinityNodeInfoList`, and its image states): when a count is
/// zero the plugin skips the walk, which on a 5,000-node cluster cost more than filtering and
/// scoring the 500 nodes a pod is decided among.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterSummary {
    /// Nodes with a pod that has any pod affinity or anti-affinity.
    pub nodes_with_pod_affinity: usize,
    /// Nodes with a pod that has required anti-affinity.
    pub nodes_with_required_anti_affinity: usize,
    /// Nodes that report images in `status.images`.
    pub nodes_with_images: usize,
}

impl ClusterSummary {
    /// The summary of `nodes`, counted from scratch.
    pub fn of(nodes: &[NodeInfo]) -> ClusterSummary {
        let mut summary = ClusterSummary::default();
        for node in nodes {
            summary.add(node);
        }
        summary
    }

    /// Counts `node` in.
    pub fn add(&mut self, node: &NodeInfo) {
        let [affinity, anti_affinity, images] = Self::flags(node);
        self.nodes_with_pod_affinity += usize::from(affinity);
        self.nodes_with_required_anti_affinity += usize::from(anti_affinity);
        self.nodes_with_images += usize::from(images);
    }

    /// Counts `node` out; it must have been counted in as it is now.
    pub fn remove(&mut self, node: &NodeInfo) {
        let [affinity, anti_affinity, images] = Self::flags(node);
        let count_out = |count: &mut usize, flag: bool| {
            debug_assert!(*count >= usize::from(flag), "a node counted out twice");
            *count = count.saturating_sub(usize::from(flag));
        };
        count_out(&mut self.nodes_with_pod_affinity, affinity);
        count_out(&mut self.nodes_with_required_anti_affinity, anti_affinity);
        count_out(&mut self.nodes_with_images, images);
    }

    fn flags(node: &NodeInfo) -> [bool; 3] {
        [
            node.pods_with_affinity > 0,
            node.pods_with_required_anti_affinity > 0,
            !node.image_sizes.is_empty(),
        ]
    }
}

/// The nodes a decision reads, and their summary when whoever holds them keeps one (the
/// cache does; a what-if question over changed nodes passes none, and plugins walk).
#[derive(Clone, Copy, Debug)]
pub struct ClusterView<'a> {
    pub nodes: &'a [NodeInfo],
    pub summary: Option<ClusterSummary>,
}

/// A pod's identity in the scheduler: `namespace/name`.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The host ports a pod binds: those of its containers and of its sidecars (init containers
/// with `restartPolicy: Always`, which run as long as the pod), ports without a `hostPort`
/// left out. Kube-scheduler's `schedutil.GetHostPorts`, sanitized as `HostPortInfo` stores them.
pub fn pod_host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|container| is_restartable(container));
    sidecars
        .chain(&spec.containers)
        .flat_map(|container| container.ports.iter().flatten())
        .filter_map(|port| {
            let host_port = port.host_port.unwrap_or(0);
            if host_port <= 0 {
                return None;
            }
            let host_ip = match port.host_ip.as_deref() {
                None | Some("") => DEFAULT_BIND_ALL_HOST_IP,
                Some(ip) => ip,
            };
            let protocol = match port.protocol.as_deref() {
                None | Some("") => DEFAULT_PROTOCOL,
                Some(protocol) => protocol,
            };
            Some((host_ip.to_string(), protocol.to_string(), host_port))
        })
        .collect()
}

/// The node's `status.allocatable`, read.
fn allocatable(node: &Node) -> Result<Resources, NodeInfoError> {
    let list = node
        .status
        .as_ref()
        .and_then(|status| status.allocatable.as_ref());
    let list = parse_list(list).map_err(|source| NodeInfoError::Allocatable {
        node: node.metadata.name.clone().unwrap_or_default(),
        source,
    })?;
    Ok(Resources::from_list(&list))
}

/// Image name → size. A name listed twice keeps its first size, as kube-scheduler's
/// per-node summary does.
fn image_sizes(node: &Node) -> BTreeMap<String, i64> {
    let mut sizes = BTreeMap::new();
    let images = node
        .status
        .as_ref()
        .and_then(|status| status.images.as_ref());
    for image in images.into_iter().flatten() {
        for name in image.names.iter().flatten() {
            sizes
                .entry(name.clone())
                .or_insert(image.size_bytes.unwrap_or(0));
        }
    }
    sizes
}

#[cfg(test)]
mod tests;
