//! The score: `ScheduleAnyway` constraints (kube-scheduler's `scoring.go`).
//!
//! A node's raw score sums, over the soft constraints, `matching pods in its domain × the
//! constraint's weight + (maxSkew − 1)`, rounded; the weight, `ln(domains + 2)`, keeps a
//! topology with few large domains (zones) from drowning one with many small ones (hosts), and
//! `maxSkew − 1` waters the differences down as the tolerated skew grows. Normalization then
//! reverses the scale, so that the emptiest domain scores 100.
//!
//! Domains are those of the feasible nodes; the pods are counted on every node of the cluster
//! in such a domain. For `kubernetes.io/hostname`, whose domain is the node itself, Score
//! counts the node's pods directly instead.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::Pod;

use super::constraints::{
    has_all_topology_keys, has_own_constraints, node_labels, pod_namespace, Constraint,
    NodeInclusion,
};
use super::{PodTopologySpread, LABEL_HOSTNAME, NAME, SCHEDULE_ANYWAY};
use crate::framework::{CycleState, ScorePlugin, Status, MAX_NODE_SCORE};
use crate::node_info::NodeInfo;

/// The slot of [`PreScoreState`] in the cycle state (kube's key).
pub(super) const PRE_SCORE_STATE_KEY: &str = "PreScorePodTopologySpread";

/// What PreScore leaves for Score and NormalizeScore. No constraint: kube skips the plugin,
/// which keel renders as every node scoring 0.
#[derive(Debug, Default)]
pub(super) struct PreScoreState {
    pub(super) constraints: Vec<Constraint>,
    /// The feasible nodes lacking one of the topology keys: they score 0 (kube's
    /// `IgnoredNodes`).
    pub(super) ignored_nodes: HashSet<String>,
    /// The same, by position among the feasible nodes: normalization sees scores, not names.
    pub(super) ignored_positions: Vec<bool>,
    /// Per constraint: topology value of a feasible node → matching pods in that domain
    /// (empty for `kubernetes.io/hostname`, counted per node by Score).
    pub(super) pod_counts: Vec<HashMap<String, i64>>,
    /// Per constraint: `ln(domains + 2)`.
    pub(super) weights: Vec<f64>,
}

impl PreScoreState {
    fn is_ignored(&self, position: usize) -> bool {
        self.ignored_positions
            .get(position)
            .copied()
            .unwrap_or(false)
    }
}

/// kube's `topologyNormalizingWeight`: the weight of a topology with `size` domains among the
/// feasible nodes, in [1.09, 8.52] for 1 to 5,000 domains (0 domains only happens when every
/// node scores 0, where the weight does not matter).
pub(super) fn topology_normalizing_weight(size: usize) -> f64 {
    // Exact: no cluster has 2^53 domains.
    (size as f64 + 2.0).ln()
}

/// kube's `scoreForCount`.
fn score_for_count(count: i64, max_skew: i32, weight: f64) -> f64 {
    count as f64 * weight + (f64::from(max_skew) - 1.0)
}

impl PodTopologySpread {
    /// kube's `PreScore` and `initPreScoreState`; the error is kube's message.
    pub(super) fn pre_score_state(
        &self,
        pod: &Pod,
        feasible: &[&NodeInfo],
        all: &[NodeInfo],
    ) -> Result<PreScoreState, String> {
        if all.is_empty() {
            return Ok(PreScoreState::default());
        }
        let constraints = self
            .constraints(pod, SCHEDULE_ANYWAY)
            .map_err(|err| format!("calculating preScoreState: {err}"))?;
        if constraints.is_empty() {
            return Ok(PreScoreState::default());
        }
        // Nodes must carry every topology key unless the constraints are the System defaults:
        // nodes without a zone label then still spread by hostname.
        let require_all_keys = has_own_constraints(pod) || !self.system_defaulted;

        let mut ignored_nodes = HashSet::new();
        let mut ignored_positions = Vec::with_capacity(feasible.len());
        let mut pod_counts: Vec<HashMap<String, i64>> =
            constraints.iter().map(|_| HashMap::new()).collect();
        for node in feasible {
            let labels = node_labels(node.node());
            if require_all_keys && !has_all_topology_keys(labels, &constraints) {
                ignored_nodes.insert(node.name().to_string());
                ignored_positions.push(true);
                continue;
            }
            ignored_positions.push(false);
            for (constraint, counts) in constraints.iter().zip(pod_counts.iter_mut()) {
                if constraint.topology_key == LABEL_HOSTNAME {
                    continue;
                }
                // Without the key (System defaults only), the node is in the domain "".
                let value = labels
                    .get(&constraint.topology_key)
                    .map(String::as_str)
                    .unwrap_or_default();
                if !counts.contains_key(value) {
                    counts.insert(value.to_string(), 0);
                }
            }
        }
        let scored_nodes = feasible.len().saturating_sub(ignored_nodes.len());
        let weights = constraints
            .iter()
            .zip(&pod_counts)
            .map(|(constraint, counts)| {
                let size = if constraint.topology_key == LABEL_HOSTNAME {
                    scored_nodes
                } else {
                    counts.len()
                };
                topology_normalizing_weight(size)
            })
            .collect();

        let namespace = pod_namespace(pod);
        for node in all {
            let labels = node_labels(node.node());
            if require_all_keys && !has_all_topology_keys(labels, &constraints) {
                continue;
            }
            let mut inclusion = NodeInclusion::new(pod, node.node());
            for (constraint, counts) in constraints.iter().zip(pod_counts.iter_mut()) {
                let value = labels
                    .get(&constraint.topology_key)
                    .map(String::as_str)
                    .unwrap_or_default();
                // Only the domains of feasible nodes are scored (hostname ones never are
                // here); checked first, as it is cheaper than the policies.
                let Some(total) = counts.get_mut(value) else {
                    continue;
                };
                if !inclusion.includes(constraint) {
                    continue;
                }
                *total += constraint.count_matching(&node.pods, namespace);
            }
        }

        Ok(PreScoreState {
            constraints,
            ignored_nodes,
            ignored_positions,
            pod_counts,
            weights,
        })
    }
}

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Counts the soft constraints' domains; an error when a constraint's selector does not
    /// parse.
    fn pre_score(
        &self,
        pod: &Pod,
        feasible: &[&NodeInfo],
        all: &[NodeInfo],
        state: &mut CycleState,
    ) -> Status {
        match self.pre_score_state(pod, feasible, all) {
            Ok(computed) => {
                let skip = computed.constraints.is_empty();
                state.write(PRE_SCORE_STATE_KEY, computed);
                if skip {
                    Status::skip()
                } else {
                    Status::success()
                }
            }
            Err(message) => Status::error(message),
        }
    }

    /// The node's raw score, higher for more matching pods (reversed by `normalize`); 0 for a
    /// node lacking a topology key.
    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let computed = state
            .read::<PreScoreState>(PRE_SCORE_STATE_KEY)
            .ok_or_else(|| {
                Status::error(format!(
                    "error reading {PRE_SCORE_STATE_KEY:?} from cycleState: not found"
                ))
            })?;
        if computed.constraints.is_empty() || computed.ignored_nodes.contains(node.name()) {
            return Ok(0);
        }
        let labels = node_labels(node.node());
        let namespace = pod_namespace(pod);
        let mut score = 0.0;
        let per_constraint = computed
            .constraints
            .iter()
            .zip(&computed.pod_counts)
            .zip(&computed.weights);
        for ((constraint, counts), weight) in per_constraint {
            let Some(value) = labels.get(&constraint.topology_key) else {
                continue;
            };
            let count = if constraint.topology_key == LABEL_HOSTNAME {
                constraint.count_matching(&node.pods, namespace)
            } else {
                // Every feasible node's domain was registered by PreScore.
                counts.get(value).copied().unwrap_or(0)
            };
            score += score_for_count(count, constraint.max_skew, *weight);
        }
        // Go's math.Round and Rust's round both round half away from zero; the score is far
        // below i64::MAX, and `as` saturates anyway.
        Ok(score.round() as i64)
    }

    /// kube's NormalizeScore: `100 × (max + min − score) / max` over the nodes not ignored
    /// (truncating), 100 for all when every score is 0, 0 for the ignored nodes.
    fn normalize(&self, state: &CycleState, _pod: &Pod, scores: &mut [i64]) {
        let Some(computed) = state.read::<PreScoreState>(PRE_SCORE_STATE_KEY) else {
            return;
        };
        if computed.constraints.is_empty() {
            // kube skipped the plugin: its scores stay 0.
            return;
        }
        let mut min_score = i64::MAX;
        let mut max_score = 0;
        for (position, &score) in scores.iter().enumerate() {
            if computed.is_ignored(position) {
                continue;
            }
            min_score = min_score.min(score);
            max_score = max_score.max(score);
        }
        for (position, score) in scores.iter_mut().enumerate() {
            *score = if computed.is_ignored(position) {
                0
            } else if max_score == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max_score + min_score - *score) / max_score
            };
        }
    }
}
