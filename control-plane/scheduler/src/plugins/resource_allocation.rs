//! What the resource scorers share (kube-scheduler's `resource_allocation.go`): the resources
//! they weigh, and how a node's allocatable and requested amounts are read for each.

use crate::node_info::NodeInfo;
use crate::resources::{is_scalar_resource_name, ResourceList, CPU, EPHEMERAL_STORAGE, MEMORY};

/// A resource a scorer weighs, and its weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceSpec {
    pub name: String,
    pub weight: i64,
}

impl ResourceSpec {
    pub fn new(name: impl Into<String>, weight: i64) -> ResourceSpec {
        ResourceSpec {
            name: name.into(),
            weight,
        }
    }
}

/// CPU and memory, weight 1 each: kube-scheduler's default for both NodeResourcesFit and
/// NodeResourcesBalancedAllocation.
pub fn default_resources() -> Vec<ResourceSpec> {
    vec![ResourceSpec::new(CPU, 1), ResourceSpec::new(MEMORY, 1)]
}

/// Plugin arguments kube-scheduler's validation refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error("resources[{index}].weight: resource weight of {name} not in valid range (0, 100]")]
    Weight { index: usize, name: String },
    #[error("resources[{index}].weight: resource weight of {name} must be 1")]
    BalancedWeight { index: usize, name: String },
    #[error("resources[{index}].name: duplicate resource {name}")]
    Duplicate { index: usize, name: String },
    #[error("requestedToCapacityRatio.shape: at least one point must be specified")]
    NoShape,
    #[error(
        "requestedToCapacityRatio.shape[{index}].utilization: should be greater than prior element"
    )]
    UnsortedShape { index: usize },
    #[error("requestedToCapacityRatio.shape[{index}]: utilization must be in [0, 100] and score in [0, 10]")]
    ShapeOutOfRange { index: usize },
}

/// One resource a scorer weighs, resolved against the pod once per cycle: which of the
/// node's amounts to read, and what the pod asks of it. Scoring then compares no names and
/// looks nothing up for CPU and memory, on every feasible node of every pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResolvedRequest {
    resource: Resolved,
    pod_request: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Resolved {
    Cpu,
    Memory,
    EphemeralStorage,
    /// Any other resource, read from the node's scalar maps by name.
    Named(String),
    /// A scalar the pod does not ask for: it would only reward nodes for lacking it (or
    /// punish nodes for having it), so it is left out of the score.
    Ignored,
}

/// `resources` resolved against `pod_requests` (kube-scheduler's
/// `calculateResourceAllocatableRequest`, the part that depends only on the pod).
pub(crate) fn resolve(
    resources: &[ResourceSpec],
    pod_requests: &ResourceList,
) -> Vec<ResolvedRequest> {
    resources
        .iter()
        .map(|spec| {
            let pod_request = pod_requests.get(&spec.name).copied().unwrap_or(0);
            let resource = match spec.name.as_str() {
                _ if pod_request == 0 && is_scalar_resource_name(&spec.name) => Resolved::Ignored,
                CPU => Resolved::Cpu,
                MEMORY => Resolved::Memory,
                EPHEMERAL_STORAGE => Resolved::EphemeralStorage,
                name => Resolved::Named(name.to_string()),
            };
            ResolvedRequest {
                resource,
                pod_request,
            }
        })
        .collect()
}

/// Whether the pod asks for none of the resources (BalancedAllocation scores such a pod 0).
pub(crate) fn requests_nothing(resolved: &[ResolvedRequest]) -> bool {
    resolved.iter().all(|request| request.pod_request == 0)
}

/// For each resolved resource, the amount requested once the pod is added and the node's
/// allocatable amount; both 0 for a resource the node does not have, which the scorers then
/// skip. An iterator, not two vectors: the scorers call it for every feasible node of every
/// pod.
///
/// `use_requested` picks the pods' actual CPU and memory requests (BalancedAllocation) rather
/// than the non-zero ones (the NodeResourcesFit strategies); ephemeral storage and scalars are
/// always the actual ones.
pub(crate) fn requested_and_allocatable<'a>(
    node: &'a NodeInfo,
    resolved: &'a [ResolvedRequest],
    use_requested: bool,
) -> impl Iterator<Item = (i64, i64)> + Clone + 'a {
    resolved.iter().map(move |request| {
        let (allocatable, requested) = allocatable_and_requested(node, request, use_requested);
        if allocatable == 0 {
            (0, 0)
        } else {
            (requested, allocatable)
        }
    })
}

/// kube-scheduler's `calculateResourceAllocatableRequest`, for one node.
fn allocatable_and_requested(
    node: &NodeInfo,
    request: &ResolvedRequest,
    use_requested: bool,
) -> (i64, i64) {
    let pod_request = request.pod_request;
    let requested = if use_requested {
        &node.requested
    } else {
        &node.non_zero_requested
    };
    match &request.resource {
        Resolved::Ignored => (0, 0),
        Resolved::Cpu => (
            node.allocatable.milli_cpu,
            requested.milli_cpu.saturating_add(pod_request),
        ),
        Resolved::Memory => (
            node.allocatable.memory,
            requested.memory.saturating_add(pod_request),
        ),
        Resolved::EphemeralStorage => (
            node.allocatable.ephemeral_storage,
            node.requested.ephemeral_storage.saturating_add(pod_request),
        ),
        Resolved::Named(resource) => match node.allocatable.scalar.get(resource) {
            Some(allocatable) => (
                *allocatable,
                node.requested
                    .scalar
                    .get(resource)
                    .copied()
                    .unwrap_or(0)
                    .saturating_add(pod_request),
            ),
            None => (0, 0),
        },
    }
}

/// Weights must be in (0, 100], as kube-scheduler's `validateResources`.
pub(crate) fn validate_weights(resources: &[ResourceSpec]) -> Result<(), ArgsError> {
    for (index, resource) in resources.iter().enumerate() {
        if !(1..=100).contains(&resource.weight) {
            return Err(ArgsError::Weight {
                index,
                name: resource.name.clone(),
            });
        }
    }
    Ok(())
}
