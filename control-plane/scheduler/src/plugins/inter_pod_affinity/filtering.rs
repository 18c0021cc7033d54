//! The filter: the incoming pod's required affinity and anti-affinity, and the required
//! anti-affinity of the pods already placed, as kube-scheduler's `filtering.go`.
//!
//! PreFilter walks every pod of the cluster once and counts, per topology domain (a topology
//! key and one of its values), the pods that matter; Filter then only looks the node's domains
//! up in those counts, so its cost per node is that of the pod's terms.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use super::terms::{
    has_required_anti_affinity, matches_all, node_labels, pod_namespace,
    required_anti_affinity_terms, AffinityTerm, IncomingTerms, KnownNamespaces, Labels,
};
use crate::framework::Status;
use crate::node_info::{ClusterSummary, NodeInfo};

/// The filter's slot in the cycle state.
pub(super) const STATE_KEY: &str = "InterPodAffinity";

/// The reason when a node is not in a domain with the pods the incoming pod's affinity asks
/// for. Unresolvable: evicting pods cannot bring the wanted ones.
pub const ERR_REASON_AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod affinity rules";
/// The reason when the node's domain holds a pod the incoming pod's anti-affinity refuses.
pub const ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't match pod anti-affinity rules";
/// The reason when a pod in the node's domain refuses the incoming pod (its own
/// anti-affinity).
pub const ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Pods counted per topology domain: topology key → value → count. Nested so that a look-up
/// borrows the node's label strings instead of building a key.
#[derive(Debug, Default)]
pub(super) struct TopologyCounts(HashMap<String, HashMap<String, i64>>);

impl TopologyCounts {
    /// Counts one more pod in the domain `key` has on a node with `node_labels`; a node
    /// without the key is in no domain of it and counts nowhere.
    fn add(&mut self, node_labels: &Labels, key: &str) {
        let Some(value) = node_labels.get(key) else {
            return;
        };
        // Look up before inserting: a topology key is allocated once, not once per pod.
        if !self.0.contains_key(key) {
            self.0.insert(key.to_string(), HashMap::new());
        }
        let Some(values) = self.0.get_mut(key) else {
            return;
        };
        match values.get_mut(value) {
            Some(count) => *count += 1,
            None => {
                values.insert(value.clone(), 1);
            }
        }
    }

    fn get(&self, key: &str, value: &str) -> i64 {
        self.0
            .get(key)
            .and_then(|values| values.get(value))
            .copied()
            .unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any domain of the node has a positive count.
    fn any_domain_of(&self, node_labels: &Labels) -> bool {
        self.0.iter().any(|(key, values)| {
            node_labels
                .get(key)
                .and_then(|value| values.get(value))
                .is_some_and(|count| *count > 0)
        })
    }
}

/// What PreFilter leaves for Filter (kube's `preFilterState`).
#[derive(Debug, Default)]
pub(super) struct PreFilterState {
    /// Existing pods whose required anti-affinity terms match the incoming pod, per domain of
    /// each such term.
    existing_anti_affinity_counts: TopologyCounts,
    /// Existing pods that match all of the incoming pod's required affinity terms, per domain
    /// of each term.
    affinity_counts: TopologyCounts,
    /// Existing pods that match one of the incoming pod's required anti-affinity terms, per
    /// domain of that term.
    anti_affinity_counts: TopologyCounts,
    /// The topology keys of the incoming pod's required affinity terms, in order.
    affinity_keys: Vec<String>,
    /// The topology keys of its required anti-affinity terms.
    anti_affinity_keys: Vec<String>,
    /// Whether the incoming pod matches all of its own affinity terms: the first pod of a group
    /// that wants to be together may go anywhere the keys exist.
    matches_own_affinity: bool,
}

/// kube's PreFilter: parses the incoming pod's terms and counts, over every pod of the cluster,
/// the existing pods that its terms match and those whose anti-affinity matches it. A pod
/// whose terms do not parse is refused everywhere (UnschedulableAndUnresolvable).
///
/// With the cluster's `summary` (the cache keeps one), a pod without required terms of its
/// own skips the walk when no node holds a pod with required anti-affinity.
pub(super) fn pre_filter(
    pod: &Pod,
    nodes: &[NodeInfo],
    summary: Option<ClusterSummary>,
    namespace_labels: &dyn Fn(&str) -> Option<Labels>,
) -> Result<PreFilterState, Status> {
    let IncomingTerms {
        required_affinity: mut affinity,
        required_anti_affinity: mut anti_affinity,
        ..
    } = IncomingTerms::parse(pod)
        .map_err(|error| Status::unresolvable(format!("parsing pod: {error}")))?;
    let known = KnownNamespaces::for_terms(
        affinity.iter().chain(&anti_affinity),
        pod,
        nodes,
        namespace_labels,
    );
    if let Some(known) = known {
        for term in affinity.iter_mut().chain(anti_affinity.iter_mut()) {
            term.resolve_namespaces(&known);
        }
    }
    // Existing pods' terms select namespaces by the incoming pod's namespace labels; an
    // unknown namespace has none, as kube's snapshot of it.
    let own_namespace_labels = namespace_labels(pod_namespace(pod)).unwrap_or_default();

    let mut state = PreFilterState {
        affinity_keys: affinity.iter().map(|t| t.topology_key.clone()).collect(),
        anti_affinity_keys: anti_affinity
            .iter()
            .map(|t| t.topology_key.clone())
            .collect(),
        matches_own_affinity: matches_all(&affinity, pod),
        ..PreFilterState::default()
    };
    let incoming_terms = !affinity.is_empty() || !anti_affinity.is_empty();
    let nothing_to_meet =
        summary.is_some_and(|summary| summary.nodes_with_required_anti_affinity == 0);
    if !incoming_terms && nothing_to_meet {
        return Ok(state);
    }
    for node in nodes {
        // Without terms of its own, the pod only meets existing pods' anti-affinity.
        if !incoming_terms && node.pods_with_required_anti_affinity == 0 {
            continue;
        }
        let labels = node_labels(node);
        for existing in &node.pods {
            if has_required_anti_affinity(existing) {
                // A placed pod whose terms do not parse has none (kube's NodeInfo drops them).
                for term in required_anti_affinity_terms(existing).unwrap_or_default() {
                    if term.matches(pod, Some(&own_namespace_labels)) {
                        state
                            .existing_anti_affinity_counts
                            .add(labels, &term.topology_key);
                    }
                }
            }
            count_incoming(&mut state, &affinity, &anti_affinity, existing, labels);
        }
    }
    Ok(state)
}

/// Counts `existing` (on a node with `labels`) for the incoming pod's terms: for affinity only
/// when it matches all of them, for anti-affinity per term it matches.
fn count_incoming(
    state: &mut PreFilterState,
    affinity: &[AffinityTerm],
    anti_affinity: &[AffinityTerm],
    existing: &Pod,
    labels: &Labels,
) {
    if matches_all(affinity, existing) {
        for term in affinity {
            state.affinity_counts.add(labels, &term.topology_key);
        }
    }
    for term in anti_affinity {
        if term.matches(existing, None) {
            state.anti_affinity_counts.add(labels, &term.topology_key);
        }
    }
}

impl PreFilterState {
    /// Nothing to check: the pod has no required terms and no placed pod's anti-affinity
    /// matches it, so every node passes (kube's PreFilter returns Skip).
    pub(super) fn is_trivial(&self) -> bool {
        self.affinity_keys.is_empty()
            && self.anti_affinity_keys.is_empty()
            && self.existing_anti_affinity_counts.is_empty()
    }

    /// kube's Filter: the incoming pod's affinity, then its anti-affinity, then the existing
    /// pods' anti-affinity, the first unmet one giving the reason.
    pub(super) fn filter(&self, node: &NodeInfo) -> Status {
        let labels = node_labels(node);
        if !self.satisfies_affinity(labels) {
            return Status::unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH);
        }
        if !self.satisfies_anti_affinity(labels) {
            return Status::unschedulable(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH);
        }
        if self.existing_anti_affinity_counts.any_domain_of(labels) {
            return Status::unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH);
        }
        Status::success()
    }

    /// Every affinity term's topology key is on the node, and each of the node's domains
    /// holds a pod matching all the terms, unless no pod anywhere does and the pod matches its
    /// own terms (it is the first of its group).
    fn satisfies_affinity(&self, labels: &Labels) -> bool {
        let mut pods_exist = true;
        for key in &self.affinity_keys {
            match labels.get(key) {
                Some(value) => {
                    if self.affinity_counts.get(key, value) <= 0 {
                        pods_exist = false;
                    }
                }
                // All topology labels must exist on the node.
                None => return false,
            }
        }
        pods_exist || (self.affinity_counts.is_empty() && self.matches_own_affinity)
    }

    /// No anti-affinity term's domain on the node holds a pod the term matches.
    fn satisfies_anti_affinity(&self, labels: &Labels) -> bool {
        if self.anti_affinity_counts.is_empty() {
            return true;
        }
        self.anti_affinity_keys.iter().all(|key| {
            labels
                .get(key)
                .is_none_or(|value| self.anti_affinity_counts.get(key, value) <= 0)
        })
    }
}
