//! NodeResourcesBalancedAllocation: favours nodes whose resources would be used in equal
//! shares once the pod is placed, so that no node runs out of CPU while its memory sits idle.
//!
//! Score = (1 − σ) × 100, σ the standard deviation of the requested fractions (each capped
//! at one) of the resources the node has; for two resources σ is half their difference. Unlike
//! NodeResourcesFit it counts actual requests, and a pod that requests none of the resources
//! (BestEffort) is not scored at all (0 everywhere), lest it pile onto one node.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{CycleState, ScorePlugin, Status, MAX_NODE_SCORE};
use crate::node_info::NodeInfo;
use crate::plugins::resource_allocation::{
    default_resources, requested_and_allocatable, ArgsError, ResourceSpec,
};
use crate::resources::{pod_requests, ResourceList};

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
                state.write(NAME, requests);
                Status::success()
            }
            Err(error) => Status::error(error.to_string()),
        }
    }

    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let computed;
        let requests = match state.read::<ResourceList>(NAME) {
            Some(requests) => requests,
            None => {
                computed = pod_requests(pod).map_err(|error| Status::error(error.to_string()))?;
                &computed
            }
        };
        let best_effort = self
            .resources
            .iter()
            .all(|resource| requests.get(&resource.name).copied().unwrap_or(0) == 0);
        if best_effort {
            return Ok(0);
        }
        let (requested, allocatable) =
            requested_and_allocatable(node, &self.resources, requests, true);
        Ok(balanced_resource_score(&requested, &allocatable))
    }
}

/// kube-scheduler's `balancedResourceScorer`, float arithmetic and final truncation included.
fn balanced_resource_score(requested: &[i64], allocatable: &[i64]) -> i64 {
    let fractions: Vec<f64> = requested
        .iter()
        .zip(allocatable)
        .filter(|(_, allocatable)| **allocatable != 0)
        .map(|(&requested, &allocatable)| (requested as f64 / allocatable as f64).min(1.0))
        .collect();
    let std = match fractions.as_slice() {
        [first, second] => ((first - second) / 2.0).abs(),
        [_, _, _, ..] => {
            let count = fractions.len() as f64;
            let mean = fractions.iter().sum::<f64>() / count;
            let mut sum = 0.0;
            for fraction in &fractions {
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
