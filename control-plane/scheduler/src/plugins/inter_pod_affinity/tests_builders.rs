//! Builders for the ported cases, in the spirit of kube-scheduler's `st.MakePod()` affinity
//! helpers (`PodAffinityIn`, `PodAntiAffinityExists`, …), kept here rather than in
//! `crate::testing` since only this plugin reads pod affinity.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Affinity, Node, Pod, PodAffinityTerm, WeightedPodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::NamespaceLabels;
use crate::testing::{node, pod};

pub(super) fn labels(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A pod under construction (`st.MakePod()`).
pub(super) struct TestPod(Pod);

pub(super) fn make_pod() -> TestPod {
    TestPod(pod().obj())
}

impl TestPod {
    pub(super) fn name(mut self, name: &str) -> Self {
        self.0.metadata.name = Some(name.to_string());
        self
    }

    /// `""` leaves the namespace unset, as kube's tests' `defaultNamespace`.
    pub(super) fn namespace(mut self, namespace: &str) -> Self {
        self.0.metadata.namespace = (!namespace.is_empty()).then(|| namespace.to_string());
        self
    }

    /// Replaces the labels.
    pub(super) fn labels(mut self, list: &[(&str, &str)]) -> Self {
        self.0.metadata.labels = Some(labels(list));
        self
    }

    /// Adds one label.
    pub(super) fn label(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_default()
            .insert(key.to_string(), value.to_string());
        self
    }

    /// `spec.nodeName`.
    pub(super) fn node(mut self, node: &str) -> Self {
        self.0.spec.get_or_insert_default().node_name = Some(node.to_string());
        self
    }

    fn affinity(&mut self) -> &mut Affinity {
        self.0
            .spec
            .get_or_insert_default()
            .affinity
            .get_or_insert_default()
    }

    /// Sets the whole affinity (kube's scoring tests build `v1.Affinity` values).
    pub(super) fn with_affinity(mut self, affinity: Affinity) -> Self {
        self.0.spec.get_or_insert_default().affinity = Some(affinity);
        self
    }

    /// Appends a required pod affinity term.
    pub(super) fn required_affinity(mut self, term: PodAffinityTerm) -> Self {
        self.affinity()
            .pod_affinity
            .get_or_insert_default()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_default()
            .push(term);
        self
    }

    /// Appends a required pod anti-affinity term.
    pub(super) fn required_anti_affinity(mut self, term: PodAffinityTerm) -> Self {
        self.affinity()
            .pod_anti_affinity
            .get_or_insert_default()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_default()
            .push(term);
        self
    }

    pub(super) fn obj(self) -> Pod {
        self.0
    }
}

/// A label selector requirement; `values` empty leaves them unset (Exists, DoesNotExist).
pub(super) fn req(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.to_string(),
        operator: operator.to_string(),
        values: (!values.is_empty()).then(|| strings(values)),
    }
}

/// A selector of `matchExpressions`.
pub(super) fn selector(requirements: Vec<LabelSelectorRequirement>) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(requirements),
        match_labels: None,
    }
}

/// A term selecting pods by `requirements` in `topology_key`'s domains.
pub(super) fn term(
    topology_key: &str,
    requirements: Vec<LabelSelectorRequirement>,
) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(selector(requirements)),
        topology_key: topology_key.to_string(),
        ..Default::default()
    }
}

/// `st`'s `PodAffinityIn(key, topologyKey, values)` term.
pub(super) fn term_in(key: &str, topology_key: &str, values: &[&str]) -> PodAffinityTerm {
    term(topology_key, vec![req(key, "In", values)])
}

/// `st`'s `PodAffinityNotIn(key, topologyKey, values)` term.
pub(super) fn term_not_in(key: &str, topology_key: &str, values: &[&str]) -> PodAffinityTerm {
    term(topology_key, vec![req(key, "NotIn", values)])
}

/// `st`'s `PodAffinityExists(key, topologyKey)` term.
pub(super) fn term_exists(key: &str, topology_key: &str) -> PodAffinityTerm {
    term(topology_key, vec![req(key, "Exists", &[])])
}

/// Setters for the namespace and label-key fields of a term.
pub(super) trait TermExt {
    fn namespaces(self, namespaces: &[&str]) -> Self;
    fn namespace_selector(self, selector: LabelSelector) -> Self;
    fn match_label_keys(self, keys: &[&str]) -> Self;
    fn mismatch_label_keys(self, keys: &[&str]) -> Self;
}

impl TermExt for PodAffinityTerm {
    fn namespaces(self, namespaces: &[&str]) -> Self {
        PodAffinityTerm {
            namespaces: Some(strings(namespaces)),
            ..self
        }
    }

    fn namespace_selector(self, selector: LabelSelector) -> Self {
        PodAffinityTerm {
            namespace_selector: Some(selector),
            ..self
        }
    }

    fn match_label_keys(self, keys: &[&str]) -> Self {
        PodAffinityTerm {
            match_label_keys: Some(strings(keys)),
            ..self
        }
    }

    fn mismatch_label_keys(self, keys: &[&str]) -> Self {
        PodAffinityTerm {
            mismatch_label_keys: Some(strings(keys)),
            ..self
        }
    }
}

pub(super) fn weighted(weight: i32, term: PodAffinityTerm) -> WeightedPodAffinityTerm {
    WeightedPodAffinityTerm {
        weight,
        pod_affinity_term: term,
    }
}

/// A node with labels (kube's tests' `v1.Node{ObjectMeta: {Name, Labels}}`).
pub(super) fn labeled_node(name: &str, list: &[(&str, &str)]) -> Node {
    node(name).labels(list).obj()
}

/// The namespaces of kube's tests: `subteam{1,2}.team{1,2}` labelled `team: team{1,2}`, and
/// `NS1` without labels.
pub(super) fn test_namespaces() -> NamespaceLabels {
    Arc::new(|name: &str| match name {
        "subteam1.team1" | "subteam2.team1" => Some(labels(&[("team", "team1")])),
        "subteam1.team2" | "subteam2.team2" => Some(labels(&[("team", "team2")])),
        "NS1" => Some(BTreeMap::new()),
        _ => None,
    })
}
