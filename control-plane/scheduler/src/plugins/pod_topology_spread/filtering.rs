//! The filter: `DoNotSchedule` constraints (kube-scheduler's `filtering.go`).
//!
//! PreFilter counts, once per pod over the whole cluster, the matching pods of every eligible
//! domain of every hard constraint, and the global minimum; Filter then judges a node in
//! O(constraints): `pods in the node's domain + 1 if the pod matches its own selector −
//! global minimum` must not exceed `maxSkew`.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use super::constraints::{
    has_all_topology_keys, node_labels, pod_labels, pod_namespace, Constraint, NodeInclusion,
};
use super::{
    PodTopologySpread, DO_NOT_SCHEDULE, ERR_REASON_CONSTRAINTS_NOT_MATCH,
    ERR_REASON_NODE_LABEL_NOT_MATCH, NAME,
};
use crate::framework::{CycleState, FilterPlugin, Status};
use crate::node_info::NodeInfo;

/// The slot of [`PreFilterState`] in the cycle state: the plugin's name.
pub(super) const PRE_FILTER_STATE_KEY: &str = NAME;
/// What kube-scheduler calls that state, in the error of a filter run without PreFilter.
const KUBE_PRE_FILTER_STATE_KEY: &str = "PreFilterPodTopologySpread";

/// The global minimum of a constraint with no eligible domain at all: kube's critical paths
/// start at MaxInt32, so that (with `minDomains` ≤ 0, which validation forbids) no node fails.
const NO_DOMAIN_MINIMUM: i64 = i32::MAX as i64;

/// What PreFilter leaves for Filter. No constraint: every node passes.
///
/// kube keeps the two smallest domains per constraint ("critical paths") so that preemption
/// can add and remove pods without a recount; keel has no such incremental update yet and
/// stores the minimum itself.
pub(super) struct PreFilterState {
    pub(super) constraints: Vec<Constraint>,
    /// Per constraint: topology value → matching pods, for every eligible domain.
    pub(super) match_counts: Vec<HashMap<String, i64>>,
    /// Per constraint: the global minimum, 0 when there are fewer domains than `minDomains`.
    pub(super) min_match: Vec<i64>,
    /// Per constraint: 1 if the incoming pod matches the constraint's selector (placing it
    /// adds one to the domain), else 0.
    pub(super) self_match: Vec<i64>,
}

impl PreFilterState {
    fn judge(&self, node: &NodeInfo) -> Status {
        let labels = node_labels(node.node());
        let per_constraint = self
            .constraints
            .iter()
            .zip(&self.match_counts)
            .zip(self.min_match.iter().zip(&self.self_match));
        for ((constraint, counts), (min_match, self_match)) in per_constraint {
            let Some(value) = labels.get(&constraint.topology_key) else {
                return Status::unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH);
            };
            // A domain no eligible node belongs to holds no counted pod.
            let match_num = counts.get(value).copied().unwrap_or(0);
            let skew = match_num + self_match - min_match;
            if skew > i64::from(constraint.max_skew) {
                return Status::unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::success()
    }
}

impl PodTopologySpread {
    /// kube's `calPreFilterState`; the error is kube's message.
    pub(super) fn pre_filter_state(
        &self,
        pod: &Pod,
        nodes: &[NodeInfo],
    ) -> Result<PreFilterState, String> {
        let constraints = self
            .constraints(pod, DO_NOT_SCHEDULE)
            .map_err(|err| format!("get constraints from pod: {err}"))?;
        let namespace = pod_namespace(pod);
        let mut match_counts: Vec<HashMap<String, i64>> =
            constraints.iter().map(|_| HashMap::new()).collect();
        if !constraints.is_empty() {
            for node in nodes {
                let labels = node_labels(node.node());
                if !has_all_topology_keys(labels, &constraints) {
                    continue;
                }
                let mut inclusion = NodeInclusion::new(pod, node.node());
                for (constraint, counts) in constraints.iter().zip(match_counts.iter_mut()) {
                    if !inclusion.includes(constraint) {
                        continue;
                    }
                    let Some(value) = labels.get(&constraint.topology_key) else {
                        continue;
                    };
                    let count = constraint.count_matching(&node.pods, namespace);
                    // The domain exists once an eligible node is in it, even with no pod.
                    match counts.get_mut(value.as_str()) {
                        Some(total) => *total += count,
                        None => {
                            counts.insert(value.clone(), count);
                        }
                    }
                }
            }
        }
        let min_match = constraints
            .iter()
            .zip(&match_counts)
            .map(|(constraint, counts)| {
                let domains = i64::try_from(counts.len()).unwrap_or(i64::MAX);
                if domains < i64::from(constraint.min_domains) {
                    // Too few eligible domains: the global minimum reads as 0.
                    0
                } else {
                    counts.values().copied().min().unwrap_or(NO_DOMAIN_MINIMUM)
                }
            })
            .collect();
        let labels = pod_labels(pod);
        let self_match = constraints
            .iter()
            .map(|constraint| i64::from(constraint.selector.matches(labels)))
            .collect();
        Ok(PreFilterState {
            constraints,
            match_counts,
            min_match,
            self_match,
        })
    }
}

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Counts the hard constraints' domains; an error when a constraint's selector does not
    /// parse. A pod without hard constraints leaves an empty state (kube returns Skip and never
    /// calls Filter; keel's Filter passes every node).
    fn pre_filter(&self, pod: &Pod, nodes: &[NodeInfo], state: &mut CycleState) -> Status {
        match self.pre_filter_state(pod, nodes) {
            Ok(computed) => {
                let skip = computed.constraints.is_empty();
                state.write(PRE_FILTER_STATE_KEY, computed);
                if skip {
                    Status::skip()
                } else {
                    Status::success()
                }
            }
            Err(message) => Status::error(message),
        }
    }

    /// Judges the node from what PreFilter counted (the pod's own match included there); an
    /// error without it, as kube: counting the whole cluster per node would defeat the point.
    fn filter(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Status {
        match state.read::<PreFilterState>(PRE_FILTER_STATE_KEY) {
            Some(computed) => computed.judge(node),
            None => Status::error(format!(
                "reading {KUBE_PRE_FILTER_STATE_KEY:?} from cycleState: not found"
            )),
        }
    }
}
