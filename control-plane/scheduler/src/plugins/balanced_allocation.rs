//! NodeResourcesBalancedAllocation: favours nodes whose resources would be used in equal
//! shares once the pod is placed, so that no node runs out of CPU while its memory sits idle.
//!
//! Score = (1 − σ) × 100, σ the standard deviation of the requested fractions (each capped
//! at one) of the resources the node has; for two resources σ is half their difference. Unlike
//! NodeResourcesFit it counts actual requests, and a pod that requests none of the resources
//! (BestEffort) is not scored at all (0 everywhere), lest it pile onto one node.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{score_one, CycleState, ScorePlugin, Status, MAX_NODE_SCORE};
use crate::node_info::NodeInfo;
use crate::plugins::resource_allocation::{
    default_resources, requested_and_allocatable, requests_nothing, resolve, ArgsError,
    ResolvedRequest, ResourceSpec,
};
use crate::resources::pod_requests;

pub const NAME: &str = "NodeResourcesBalancedAllocation";

#[derive(Clone, Debug)]
pub struct BalancedAllocation {
    resources: Vec<ResourceSpec>,
}

impl Default for BalancedAllocation {
    /// CPU and memory, as kube-scheduler's default `NodeResourcesBalancedAllocationArgs`.
    fn default() -> BalancedAllocation {
        BalancedAllocation {
            resources: default_resources(),
        }
    }
}

impl BalancedAllocation {
    /// Validates as kube-scheduler's `ValidateNodeResourcesBalancedAllocationArgs`: each
    /// resource once, each with weight 1 (the deviation weighs them equally).
    pub fn new(resources: Vec<ResourceSpec>) -> Result<BalancedAllocation, ArgsError> {
        let mut seen = BTreeSet::new();
        for (index, resource) in resources.iter().enumerate() {
            if !seen.insert(resource.name.as_str()) {
                return Err(ArgsError::Duplicate {
                    index,
                    name: resource.name.clone(),
                });
            }
            if resource.weight != 1 {
                return Err(ArgsError::BalancedWeight {
                    index,
                    name: resource.name.clone(),
                });
            }
        }
        Ok(BalancedAllocation { resources })
    }
}

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Reads the pod's requests once per cycle rather than once per node.
    fn pre_score(
        &self,
        pod: &Pod,
        _feasible: &[&NodeInfo],
        _all: &[NodeInfo],
        state: &mut CycleState,
    ) -> Status {
        match pod_requests(pod) {
            Ok(requests) => {
                state.write(NAME, resolve(&self.resources, &requests));
                Status::success()
            }
            Err(error) => Status::error(error.to_string()),
        }
    }

    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        score_one(self, state, pod, node)
    }

    /// Reads the resolved requests once for all the nodes.
    fn score_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        nodes: &[&NodeInfo],
        scores: &mut [i64],
    ) -> Result<(), Status> {
        let computed;
        let resolved = match state.read::<Vec<ResolvedRequest>>(NAME) {
            Some(resolved) => resolved,
            None => {
                let requests =
                    pod_requests(pod).map_err(|error| Status::error(error.to_string()))?;
                computed = resolve(&self.resources, &requests);
                &computed
            }
        };
        if requests_nothing(resolved) {
            scores.fill(0);
            return Ok(());
        }
        for (node, score) in nodes.iter().zip(scores) {
            *score = balanced_resource_score(requested_and_allocatable(node, resolved, true));
        }
        Ok(())
    }
}

/// kube-scheduler's `balancedResourceScorer`, float arithmetic and final truncation included,
/// over (requested, allocatable) pairs. Two passes over the pairs rather than a vector of
/// fractions: this runs for every feasible node of every pod.
fn balanced_resource_score(pairs: impl Iterator<Item = (i64, i64)> + Clone) -> i64 {
    let fractions = pairs
        .filter(|&(_, allocatable)| allocatable != 0)
        .map(|(requested, allocatable)| (requested as f64 / allocatable as f64).min(1.0));
    let (count, total) = fractions
        .clone()
        .fold((0usize, 0.0f64), |(count, total), fraction| {
            (count + 1, total + fraction)
        });
    let std = match count {
        2 => {
            let mut two = fractions;
            match (two.next(), two.next()) {
                (Some(first), Some(second)) => ((first - second) / 2.0).abs(),
                _ => 0.0,
            }
        }
        3.. => {
            let count = count as f64;
            let mean = total / count;
            let mut sum = 0.0;
            for fraction in fractions {
                sum += (fraction - mean) * (fraction - mean);
            }
            (sum / count).sqrt()
        }
        _ => 0.0,
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

#[cfg(test)]
mod tests;
