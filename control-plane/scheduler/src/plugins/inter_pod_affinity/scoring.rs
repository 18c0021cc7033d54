//! The score: preferred affinity and anti-affinity, both the incoming pod's and, symmetrically,
//! the existing pods', as kube-scheduler's `scoring.go`.
//!
//! PreScore walks the cluster's pods once and sums, per topology domain, the weights of the
//! terms that hold between the incoming pod and each existing pod (anti-affinity counting
//! negative); a node's score is the sum over its domains, and normalization maps the lowest
//! score to 0 and the highest to 100.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use super::terms::{
    has_pod_affinity, has_preferred_terms, node_labels, pod_namespace, preferred_affinity_terms,
    preferred_anti_affinity_terms, required_affinity_terms, AffinityTerm, IncomingTerms,
    KnownNamespaces, Labels, WeightedTerm,
};
use super::InterPodAffinityArgs;
use crate::framework::{Status, MAX_NODE_SCORE};
use crate::node_info::{ClusterSummary, NodeInfo};

/// The score's slot in the cycle state.
pub(super) const STATE_KEY: &str = "PreScoreInterPodAffinity";

/// What PreScore leaves for Score and NormalizeScore (kube's `preScoreState`): topology key →
/// value → summed weight. Empty when kube's PreScore would have returned Skip (every node then
/// scores 0, as a skipped plugin).
#[derive(Debug, Default)]
pub(super) struct PreScoreState {
    topology_score: HashMap<String, HashMap<String, i64>>,
}

impl PreScoreState {
    /// No term counted anywhere: every node scores 0 (kube's PreScore returns Skip).
    pub(super) fn is_empty(&self) -> bool {
        self.topology_score.values().all(HashMap::is_empty)
    }

    /// Adds `weight` to the domain `term` has on a node with `labels`, when `pod` matches the
    /// term (kube's `scoreMap.processTerm`). The entry is made even when the sum comes to 0,
    /// as kube's map: its presence is what turns normalization on.
    fn process_term(
        &mut self,
        term: &AffinityTerm,
        weight: i64,
        pod: &Pod,
        namespace_labels: Option<&Labels>,
        labels: &Labels,
    ) {
        if !term.matches(pod, namespace_labels) {
            return;
        }
        let Some(value) = labels.get(&term.topology_key) else {
            return;
        };
        // Look up before inserting: a topology key is cloned once, not once per pod.
        if !self.topology_score.contains_key(&term.topology_key) {
            self.topology_score
                .insert(term.topology_key.clone(), HashMap::new());
        }
        let Some(values) = self.topology_score.get_mut(&term.topology_key) else {
            return;
        };
        match values.get_mut(value) {
            Some(score) => *score += weight,
            None => {
                values.insert(value.clone(), weight);
            }
        }
    }

    /// `sign` is 1 for affinity, -1 for anti-affinity.
    fn process_terms(
        &mut self,
        terms: &[WeightedTerm],
        sign: i64,
        pod: &Pod,
        namespace_labels: Option<&Labels>,
        labels: &Labels,
    ) {
        for weighted in terms {
            let weight = weighted.weight * sign;
            self.process_term(&weighted.term, weight, pod, namespace_labels, labels);
        }
    }

    /// The sum of the weights of the node's domains (kube's Score).
    pub(super) fn score(&self, node: &NodeInfo) -> i64 {
        let labels = node_labels(node);
        self.topology_score
            .iter()
            .filter_map(|(key, values)| values.get(labels.get(key)?))
            .sum()
    }

    /// kube's NormalizeScore: nothing when no term held anywhere; otherwise the scores are
    /// mapped linearly from `[min, max]` onto `[0, MAX_NODE_SCORE]` (all 0 when they are
    /// equal), through a float and truncated, as kube computes it.
    pub(super) fn normalize(&self, scores: &mut [i64]) {
        if self.topology_score.is_empty() {
            return;
        }
        let (Some(&min), Some(&max)) = (scores.iter().min(), scores.iter().max()) else {
            return;
        };
        let spread = max - min;
        for score in scores.iter_mut() {
            *score = if spread > 0 {
                // Same operations, in the same order, as kube's float64 arithmetic.
                (MAX_NODE_SCORE as f64 * ((*score - min) as f64 / spread as f64)) as i64
            } else {
                0
            };
        }
    }
}

/// kube's PreScore. `any_feasible` false (nothing to score) leaves an empty state, as do an
/// incoming pod without preferred terms when `ignore_preferred_terms_of_existing_pods` is set.
/// A pod whose terms do not parse is an error (PreFilter refuses it before).
pub(super) fn pre_score(
    args: &InterPodAffinityArgs,
    namespace_labels: &dyn Fn(&str) -> Option<Labels>,
    pod: &Pod,
    any_feasible: bool,
    nodes: &[NodeInfo],
    summary: Option<ClusterSummary>,
) -> Result<PreScoreState, Status> {
    let mut state = PreScoreState::default();
    if !any_feasible {
        return Ok(state);
    }
    let has_constraints = has_preferred_terms(pod);
    if args.ignore_preferred_terms_of_existing_pods && !has_constraints {
        return Ok(state);
    }
    // Without preferences of its own, the pod is scored only by pods with affinity terms:
    // when the cache counts none anywhere, there is nothing to walk.
    if !has_constraints && summary.is_some_and(|summary| summary.nodes_with_pod_affinity == 0) {
        return Ok(state);
    }
    let IncomingTerms {
        preferred_affinity: mut affinity,
        preferred_anti_affinity: mut anti_affinity,
        ..
    } = IncomingTerms::parse(pod)
        .map_err(|error| Status::error(format!("failed to parse pod: {error}")))?;
    let known = KnownNamespaces::for_terms(
        affinity.iter().chain(&anti_affinity).map(|w| &w.term),
        pod,
        nodes,
        namespace_labels,
    );
    if let Some(known) = known {
        for weighted in affinity.iter_mut().chain(anti_affinity.iter_mut()) {
            weighted.term.resolve_namespaces(&known);
        }
    }
    // Existing pods' terms select namespaces by the incoming pod's namespace labels; an
    // unknown namespace has none, as kube's snapshot of it.
    let own_namespace_labels = namespace_labels(pod_namespace(pod)).unwrap_or_default();
    let hard_weight = i64::from(args.hard_pod_affinity_weight);

    for node in nodes {
        // Without constraints of its own, the pod is only scored by pods with affinity terms.
        if !has_constraints && node.pods_with_affinity == 0 {
            continue;
        }
        let labels = node_labels(node);
        // A node without labels is in no domain: none of its pods can count.
        if labels.is_empty() {
            continue;
        }
        for existing in &node.pods {
            if has_constraints {
                // The incoming pod's preferred terms, resolved: no namespace lookup.
                state.process_terms(&affinity, 1, existing, None, labels);
                state.process_terms(&anti_affinity, -1, existing, None, labels);
            }
            // Without constraints of its own, the incoming pod is only scored by the pods that
            // have affinity terms (kube walks `PodsWithAffinity` then).
            if !has_pod_affinity(existing) {
                continue;
            }
            let own = Some(&own_namespace_labels);
            // A placed pod keeps none of a kind of terms when one of them does not parse
            // (kube's NodeInfo ignores the error), hence `unwrap_or_default`.
            if hard_weight > 0 {
                for term in required_affinity_terms(existing).unwrap_or_default() {
                    state.process_term(&term, hard_weight, pod, own, labels);
                }
            }
            let preferred = preferred_affinity_terms(existing).unwrap_or_default();
            state.process_terms(&preferred, 1, pod, own, labels);
            let preferred_anti = preferred_anti_affinity_terms(existing).unwrap_or_default();
            state.process_terms(&preferred_anti, -1, pod, own, labels);
        }
    }
    Ok(state)
}
