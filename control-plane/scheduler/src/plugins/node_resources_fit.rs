//! NodeResourcesFit: a node fits a pod when its free allocatable (allocatable minus what the
//! pods on it request) covers the pod's requests, resource by resource, and it has room for
//! one more pod (filter); the nodes that fit are ranked by one of three strategies (score).
//!
//! - LeastAllocated (kube-scheduler's default) favours the emptiest nodes, spreading pods.
//! - MostAllocated favours the fullest nodes, packing pods so that others can be drained.
//! - RequestedToCapacityRatio scores each resource's utilization through a piecewise linear
//!   shape of the operator's choosing.
//!
//! The scores count the pods' non-zero requests (a container that requests nothing counts for
//! 100m CPU and 200MiB), so that pods which request nothing do not all land on one node.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{
    score_one, Code, CycleState, FilterPlugin, ScorePlugin, Status, MAX_NODE_SCORE,
};
use crate::node_info::NodeInfo;
use crate::plugins::resource_allocation::{
    default_resources, requested_and_allocatable, resolve, validate_weights, ArgsError,
    ResolvedRequest, ResourceSpec,
};
use crate::resources::{
    is_extended_resource_name, non_zero_pod_requests, pod_requests, QuantityError, Resources, CPU,
    EPHEMERAL_STORAGE, MEMORY, PODS,
};

pub const NAME: &str = "NodeResourcesFit";
/// The score's slot in the cycle state: the pod's non-zero requests, resolved against the
/// scored resources.
const PRE_SCORE_KEY: &str = "PreScoreNodeResourcesFit";
/// The filter's reason when the node already runs `allocatable.pods` pods.
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";

/// kube-scheduler's `config.MaxCustomPriorityScore`: shape scores are written 0–10 and scaled to
/// 0–[`MAX_NODE_SCORE`].
const MAX_CUSTOM_PRIORITY_SCORE: i64 = 10;
/// Utilization is a percentage.
const MAX_UTILIZATION: i64 = 100;

/// A point of RequestedToCapacityRatio's shape: at `utilization` percent, a resource scores
/// `score` (0–10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtilizationShapePoint {
    pub utilization: i32,
    pub score: i32,
}

/// How the nodes that fit are ranked (`NodeResourcesFitArgs.scoringStrategy.type`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ScoringStrategy {
    #[default]
    LeastAllocated,
    MostAllocated,
    RequestedToCapacityRatio {
        shape: Vec<UtilizationShapePoint>,
    },
}

/// `NodeResourcesFitArgs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FitArgs {
    /// Extended resources the filter does not check (another component accounts for them).
    pub ignored_resources: BTreeSet<String>,
    /// Extended resource groups (the part before `/`) the filter does not check.
    pub ignored_resource_groups: BTreeSet<String>,
    pub strategy: ScoringStrategy,
    /// The resources the score weighs; kube-scheduler's default is CPU and memory, weight 1.
    pub resources: Vec<ResourceSpec>,
}

impl Default for FitArgs {
    fn default() -> FitArgs {
        FitArgs {
            ignored_resources: BTreeSet::new(),
            ignored_resource_groups: BTreeSet::new(),
            strategy: ScoringStrategy::LeastAllocated,
            resources: default_resources(),
        }
    }
}

/// A point of the shape as the scorer uses it: the score scaled to 0–100.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionShapePoint {
    pub utilization: i64,
    pub score: i64,
}

#[derive(Clone, Debug, Default)]
pub struct NodeResourcesFit {
    args: FitArgs,
    /// RequestedToCapacityRatio's shape, scaled; empty for the other strategies.
    shape: Vec<FunctionShapePoint>,
}

impl NodeResourcesFit {
    /// Validates the arguments as kube-scheduler's `ValidateNodeResourcesFitArgs`.
    pub fn new(args: FitArgs) -> Result<NodeResourcesFit, ArgsError> {
        validate_weights(&args.resources)?;
        let shape = match &args.strategy {
            ScoringStrategy::RequestedToCapacityRatio { shape } => {
                validate_shape(shape)?;
                shape
                    .iter()
                    .map(|point| FunctionShapePoint {
                        utilization: i64::from(point.utilization),
                        score: i64::from(point.score)
                            * (MAX_NODE_SCORE / MAX_CUSTOM_PRIORITY_SCORE),
                    })
                    .collect()
            }
            ScoringStrategy::LeastAllocated | ScoringStrategy::MostAllocated => Vec::new(),
        };
        Ok(NodeResourcesFit { args, shape })
    }

    pub fn args(&self) -> &FitArgs {
        &self.args
    }
}

fn validate_shape(shape: &[UtilizationShapePoint]) -> Result<(), ArgsError> {
    if shape.is_empty() {
        return Err(ArgsError::NoShape);
    }
    for (index, pair) in shape.windows(2).enumerate() {
        if pair[0].utilization >= pair[1].utilization {
            return Err(ArgsError::UnsortedShape { index: index + 1 });
        }
    }
    for (index, point) in shape.iter().enumerate() {
        let utilization_ok = (0..=100).contains(&point.utilization);
        let score_ok = (0..=10).contains(&point.score);
        if !(utilization_ok && score_ok) {
            return Err(ArgsError::ShapeOutOfRange { index });
        }
    }
    Ok(())
}

/// A resource the pod asks for more of than the node has free (kube-scheduler's
/// `InsufficientResource`, which the cluster autoscaler reads too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InsufficientResource {
    pub resource_name: String,
    pub reason: String,
    pub requested: i64,
    pub used: i64,
    pub capacity: i64,
    /// The pod asks for more than the node's whole allocatable: evicting pods cannot help.
    pub unresolvable: bool,
}

/// The resources the node lacks for the pod, none ignored (kube-scheduler's `Fits`).
pub fn fits(pod: &Pod, node: &NodeInfo) -> Result<Vec<InsufficientResource>, QuantityError> {
    let request = Resources::from_list(&pod_requests(pod)?);
    Ok(fits_request(
        &request,
        node,
        &BTreeSet::new(),
        &BTreeSet::new(),
    ))
}

fn fits_request(
    request: &Resources,
    node: &NodeInfo,
    ignored_resources: &BTreeSet<String>,
    ignored_resource_groups: &BTreeSet<String>,
) -> Vec<InsufficientResource> {
    let mut insufficient = Vec::new();
    let allowed_pod_number = node.allocatable.allowed_pod_number;
    let pods = i64::try_from(node.pods.len()).unwrap_or(i64::MAX);
    if pods.saturating_add(1) > allowed_pod_number {
        insufficient.push(InsufficientResource {
            resource_name: PODS.to_string(),
            reason: REASON_TOO_MANY_PODS.to_string(),
            requested: 1,
            used: pods,
            capacity: allowed_pod_number,
            unresolvable: false,
        });
    }

    if request.milli_cpu == 0
        && request.memory == 0
        && request.ephemeral_storage == 0
        && request.scalar.is_empty()
    {
        return insufficient;
    }

    let allocatable = &node.allocatable;
    let requested = &node.requested;
    let core = [
        (
            CPU,
            request.milli_cpu,
            requested.milli_cpu,
            allocatable.milli_cpu,
        ),
        (MEMORY, request.memory, requested.memory, allocatable.memory),
        (
            EPHEMERAL_STORAGE,
            request.ephemeral_storage,
            requested.ephemeral_storage,
            allocatable.ephemeral_storage,
        ),
    ];
    for (name, wanted, used, capacity) in core {
        if wanted > 0 {
            insufficient.extend(shortfall(name, wanted, used, capacity));
        }
    }

    for (name, &wanted) in &request.scalar {
        if wanted == 0 {
            continue;
        }
        if is_extended_resource_name(name) {
            let group = name.split('/').next().unwrap_or_default();
            if ignored_resources.contains(name) || ignored_resource_groups.contains(group) {
                continue;
            }
        }
        let used = requested.scalar.get(name).copied().unwrap_or(0);
        let capacity = allocatable.scalar.get(name).copied().unwrap_or(0);
        insufficient.extend(shortfall(name, wanted, used, capacity));
    }
    insufficient
}

/// The insufficiency, if `wanted` exceeds what `capacity` leaves beside `used`.
fn shortfall(name: &str, wanted: i64, used: i64, capacity: i64) -> Option<InsufficientResource> {
    (wanted > capacity.saturating_sub(used)).then(|| InsufficientResource {
        resource_name: name.to_string(),
        reason: format!("Insufficient {name}"),
        requested: wanted,
        used,
        capacity,
        unresolvable: wanted > capacity,
    })
}

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Reads the pod's requests once per cycle: quantities are strings, and parsing them for
    /// each of thousands of nodes would cost more than the comparison.
    fn pre_filter(&self, pod: &Pod, _nodes: &[NodeInfo], state: &mut CycleState) -> Status {
        match pod_requests(pod) {
            Ok(requests) => {
                state.write(NAME, Resources::from_list(&requests));
                Status::success()
            }
            Err(error) => Status::unresolvable(error.to_string()),
        }
    }

    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let computed;
        let request = match state.read::<Resources>(NAME) {
            Some(request) => request,
            None => match pod_requests(pod) {
                Ok(requests) => {
                    computed = Resources::from_list(&requests);
                    &computed
                }
                Err(error) => return Status::error(error.to_string()),
            },
        };
        let insufficient = fits_request(
            request,
            node,
            &self.args.ignored_resources,
            &self.args.ignored_resource_groups,
        );
        if insufficient.is_empty() {
            return Status::success();
        }
        let code = if insufficient.iter().any(|resource| resource.unresolvable) {
            Code::UnschedulableAndUnresolvable
        } else {
            Code::Unschedulable
        };
        Status::new(
            code,
            insufficient.into_iter().map(|resource| resource.reason),
        )
    }
}

impl ScorePlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_score(
        &self,
        pod: &Pod,
        _feasible: &[&NodeInfo],
        _all: &[NodeInfo],
        state: &mut CycleState,
    ) -> Status {
        match non_zero_pod_requests(pod) {
            Ok(requests) => {
                state.write(PRE_SCORE_KEY, resolve(&self.args.resources, &requests));
                Status::success()
            }
            Err(error) => Status::error(error.to_string()),
        }
    }

    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        score_one(self, state, pod, node)
    }

    /// Reads the resolved requests and picks the strategy once for all the nodes.
    fn score_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        nodes: &[&NodeInfo],
        scores: &mut [i64],
    ) -> Result<(), Status> {
        let resources = &self.args.resources;
        if resources.is_empty() {
            return Err(Status::error("resources not found"));
        }
        let computed;
        let resolved = match state.read::<Vec<ResolvedRequest>>(PRE_SCORE_KEY) {
            Some(resolved) => resolved,
            None => {
                let requests =
                    non_zero_pod_requests(pod).map_err(|error| Status::error(error.to_string()))?;
                computed = resolve(resources, &requests);
                &computed
            }
        };
        let pairs = |node| requested_and_allocatable(node, resolved, false);
        let each = nodes.iter().zip(scores);
        match self.args.strategy {
            ScoringStrategy::LeastAllocated => each.for_each(|(node, score)| {
                *score = weighted_average(pairs(node), resources, least_requested_score);
            }),
            ScoringStrategy::MostAllocated => each.for_each(|(node, score)| {
                *score = weighted_average(pairs(node), resources, most_requested_score);
            }),
            ScoringStrategy::RequestedToCapacityRatio { .. } => each.for_each(|(node, score)| {
                *score = requested_to_capacity_ratio(pairs(node), resources, &self.shape);
            }),
        }
        Ok(())
    }
}

/// The weighted average of the per-resource scores, over the resources the node has,
/// truncated (`nodeScore / weightSum` in int64).
fn weighted_average(
    pairs: impl Iterator<Item = (i64, i64)>,
    resources: &[ResourceSpec],
    resource_score: fn(i64, i64) -> i64,
) -> i64 {
    let mut node_score = 0;
    let mut weight_sum = 0;
    for ((requested, allocatable), resource) in pairs.zip(resources) {
        if allocatable == 0 {
            continue;
        }
        node_score += resource_score(requested, allocatable) * resource.weight;
        weight_sum += resource.weight;
    }
    if weight_sum == 0 {
        0
    } else {
        node_score / weight_sum
    }
}

/// The share left free, on 0–100: more free, higher score.
fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    scale(capacity - requested, MAX_NODE_SCORE, capacity)
}

/// The share used, on 0–100: fuller, higher score. Non-zero requests can exceed capacity;
/// they count as full.
fn most_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 {
        return 0;
    }
    scale(requested.min(capacity), MAX_NODE_SCORE, capacity)
}

/// `value * max / capacity`, truncated as kube's int64 division; in 128 bits when the product
/// overflows 64 (bytes of memory times 100 can), so the result is exact. The 64-bit path is the
/// common one, and 128-bit division is a library call several times slower.
fn scale(value: i64, max: i64, capacity: i64) -> i64 {
    if let Some(product) = value.checked_mul(max) {
        return product.checked_div(capacity).unwrap_or(0);
    }
    let scaled = (i128::from(value) * i128::from(max))
        .checked_div(i128::from(capacity))
        .unwrap_or(0);
    i64::try_from(scaled).unwrap_or(i64::MAX)
}

/// RequestedToCapacityRatio: each resource's utilization through the shape, averaged over
/// the resources that score above 0, rounded (the one place kube rounds).
fn requested_to_capacity_ratio(
    pairs: impl Iterator<Item = (i64, i64)>,
    resources: &[ResourceSpec],
    shape: &[FunctionShapePoint],
) -> i64 {
    let resource_score = |requested: i64, capacity: i64| {
        let utilization = if capacity == 0 || requested > capacity {
            MAX_UTILIZATION
        } else {
            scale(requested, MAX_UTILIZATION, capacity)
        };
        broken_linear_function(shape, utilization)
    };
    let mut node_score = 0;
    let mut weight_sum = 0;
    for ((requested, allocatable), resource) in pairs.zip(resources) {
        if allocatable == 0 {
            continue;
        }
        let score = resource_score(requested, allocatable);
        if score > 0 {
            node_score += score * resource.weight;
            weight_sum += resource.weight;
        }
    }
    if weight_sum == 0 {
        return 0;
    }
    (node_score as f64 / weight_sum as f64).round() as i64
}

/// The piecewise linear function through `shape` (points sorted by utilization): the first
/// point's score below it, the last one's above it, linear in between with kube's truncating
/// integer division (kube-scheduler's `helper.BuildBrokenLinearFunction`).
pub fn broken_linear_function(shape: &[FunctionShapePoint], p: i64) -> i64 {
    let mut previous: Option<&FunctionShapePoint> = None;
    for point in shape {
        if p <= point.utilization {
            return match previous {
                None => point.score,
                Some(previous) => ((point.score - previous.score) * (p - previous.utilization))
                    // Validated shapes strictly increase; an unvalidated flat step jumps.
                    .checked_div(point.utilization - previous.utilization)
                    .map_or(point.score, |step| previous.score + step),
            };
        }
        previous = Some(point);
    }
    shape.last().map_or(0, |point| point.score)
}

#[cfg(test)]
mod filter_tests;
#[cfg(test)]
mod ratio_tests;
#[cfg(test)]
mod score_tests;
