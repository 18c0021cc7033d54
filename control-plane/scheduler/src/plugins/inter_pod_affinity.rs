//! InterPodAffinity: pods placed by the pods already in the cluster.
//!
//! - Filter: a node passes when it is in a domain (the nodes sharing its value of the term's
//!   topology key) with pods matching all the incoming pod's required affinity terms, in no
//!   domain with pods its required anti-affinity terms refuse, and in no domain whose pods'
//!   required anti-affinity refuses the incoming pod.
//! - Score: the weights of the preferred terms that hold between the incoming pod and the pods
//!   in the node's domains, both ways (anti-affinity negative), plus
//!   `hardPodAffinityWeight` for each existing pod's required affinity term the incoming pod
//!   matches; normalized from the lowest to the highest score.
//!
//! As kube-scheduler's `interpodaffinity` plugin, with three keel-specific points:
//! - Namespace labels, for `namespaceSelector`, come from a lookup given to the plugin (kube
//!   reads its namespace informer); a namespace the lookup does not know has no labels.
//! - `matchLabelKeys`/`mismatchLabelKeys` are merged into the selector here (kube-apiserver
//!   does it at admission), see `inter_pod_affinity/terms.rs`.
//! - kube's PreFilter and PreScore "Skip" (nothing to check) leave an empty state instead:
//!   Filter then passes every node and Score gives every node 0, which is what a skipped
//!   plugin amounts to.
//!
//! Pods being deleted still count, as in kube-scheduler: they hold their place until they are
//! gone from the node.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{CycleState, FilterPlugin, ScorePlugin, Status};
use crate::node_info::NodeInfo;

mod filtering;
mod scoring;
mod terms;

pub use filtering::{
    ERR_REASON_AFFINITY_RULES_NOT_MATCH, ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH,
    ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH,
};

pub const NAME: &str = "InterPodAffinity";
/// kube-scheduler's default `hardPodAffinityWeight`.
pub const DEFAULT_HARD_POD_AFFINITY_WEIGHT: i32 = 1;
/// The range `hardPodAffinityWeight` must be in.
pub const MIN_HARD_POD_AFFINITY_WEIGHT: i32 = 0;
pub const MAX_HARD_POD_AFFINITY_WEIGHT: i32 = 100;

/// The labels of a namespace by its name, or None for a namespace the scheduler does not know.
pub type NamespaceLabels = Arc<dyn Fn(&str) -> Option<BTreeMap<String, String>> + Send + Sync>;

/// `InterPodAffinityArgs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterPodAffinityArgs {
    /// The score an existing pod's required affinity term adds when the incoming pod matches
    /// it (0 turns that off), in `0..=100`.
    pub hard_pod_affinity_weight: i32,
    /// Leaves existing pods' preferred terms out when the incoming pod has none of its own,
    /// sparing PreScore the walk over the cluster.
    pub ignore_preferred_terms_of_existing_pods: bool,
}

impl Default for InterPodAffinityArgs {
    fn default() -> InterPodAffinityArgs {
        InterPodAffinityArgs {
            hard_pod_affinity_weight: DEFAULT_HARD_POD_AFFINITY_WEIGHT,
            ignore_preferred_terms_of_existing_pods: false,
        }
    }
}

/// Args kube-scheduler refuses at startup.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InterPodAffinityArgsError {
    #[error("hardPodAffinityWeight: Invalid value: {0}: not in valid range [0-100]")]
    HardPodAffinityWeight(i32),
}

/// The plugin: its args and the namespace label lookup.
#[derive(Clone)]
pub struct InterPodAffinity {
    args: InterPodAffinityArgs,
    namespace_labels: NamespaceLabels,
}

impl InterPodAffinity {
    pub fn new(
        args: InterPodAffinityArgs,
        namespace_labels: NamespaceLabels,
    ) -> Result<InterPodAffinity, InterPodAffinityArgsError> {
        let weight = args.hard_pod_affinity_weight;
        if !(MIN_HARD_POD_AFFINITY_WEIGHT..=MAX_HARD_POD_AFFINITY_WEIGHT).contains(&weight) {
            return Err(InterPodAffinityArgsError::HardPodAffinityWeight(weight));
        }
        Ok(InterPodAffinity {
            args,
            namespace_labels,
        })
    }

    pub fn args(&self) -> &InterPodAffinityArgs {
        &self.args
    }
}

/// Default args and no namespace labels known: a `namespaceSelector` then only ever matches
/// as `{}` does (every namespace) or not at all.
impl Default for InterPodAffinity {
    fn default() -> InterPodAffinity {
        InterPodAffinity {
            args: InterPodAffinityArgs::default(),
            namespace_labels: Arc::new(no_namespace_labels),
        }
    }
}

fn no_namespace_labels(_namespace: &str) -> Option<BTreeMap<String, String>> {
    None
}

impl fmt::Debug for InterPodAffinity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InterPodAffinity")
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

impl FilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, pod: &Pod, nodes: &[NodeInfo], state: &mut CycleState) -> Status {
        let summary = state.cluster_summary();
        match filtering::pre_filter(pod, nodes, summary, &*self.namespace_labels) {
            Ok(computed) => {
                let skip = computed.is_trivial();
                state.write(filtering::STATE_KEY, computed);
                if skip {
                    Status::skip()
                } else {
                    Status::success()
                }
            }
            Err(status) => status,
        }
    }

    /// Needs what `pre_filter` computed over the whole cluster, as kube-scheduler: without it
    /// the answer is an error, not a guess from one node.
    fn filter(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Status {
        match state.read::<filtering::PreFilterState>(filtering::STATE_KEY) {
            Some(computed) => computed.filter(node),
            None => Status::error(missing_state(filtering::STATE_KEY)),
        }
    }
}

impl ScorePlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_score(
        &self,
        pod: &Pod,
        feasible: &[&NodeInfo],
        all: &[NodeInfo],
        state: &mut CycleState,
    ) -> Status {
        let computed = scoring::pre_score(
            &self.args,
            &*self.namespace_labels,
            pod,
            !feasible.is_empty(),
            all,
            state.cluster_summary(),
        );
        match computed {
            Ok(computed) => {
                let skip = computed.is_empty();
                state.write(scoring::STATE_KEY, computed);
                if skip {
                    Status::skip()
                } else {
                    Status::success()
                }
            }
            Err(status) => status,
        }
    }

    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        match state.read::<scoring::PreScoreState>(scoring::STATE_KEY) {
            Some(computed) => Ok(computed.score(node)),
            None => Err(Status::error(missing_state(scoring::STATE_KEY))),
        }
    }

    fn normalize(&self, state: &CycleState, _pod: &Pod, scores: &mut [i64]) {
        // Without a state Score failed already; the scores are left as they are.
        if let Some(computed) = state.read::<scoring::PreScoreState>(scoring::STATE_KEY) {
            computed.normalize(scores);
        }
    }
}

/// kube's wording when PreFilter or PreScore did not run.
fn missing_state(key: &str) -> String {
    format!("error reading {key:?} from cycleState: not found")
}

#[cfg(test)]
mod tests_builders;
#[cfg(test)]
mod tests_filter;
#[cfg(test)]
mod tests_filter_nodes;
#[cfg(test)]
mod tests_score;
