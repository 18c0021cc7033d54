//! A pod's inter-pod affinity terms, parsed once per scheduling cycle: kube-scheduler's
//! `framework.AffinityTerm` and the `PodInfo` fields that hold them.
//!
//! A term names the pods it is about by a label selector and a set of namespaces:
//! - `labelSelector` absent selects no pod; `{}` selects every pod. `matchLabelKeys` and
//!   `mismatchLabelKeys` add `key In (value)` / `key NotIn (value)` with the values of the
//!   term's own pod (see [`AffinityTerm::parse`]).
//! - `namespaces` lists namespaces by name; `namespaceSelector` selects them by their labels
//!   (`{}` selects all of them). With neither, the term is about the pod's own namespace.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use k8s_openapi::api::core::v1::{
    Pod, PodAffinity as PodAffinitySpec, PodAffinityTerm, PodAntiAffinity as PodAntiAffinitySpec,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::label_selector::{merge_match_label_keys, merge_mismatch_label_keys, Selector};
use crate::node_info::NodeInfo;

pub(super) type Labels = BTreeMap<String, String>;

/// What objects without labels read as.
static NO_LABELS: Labels = BTreeMap::new();

pub(super) fn pod_labels(pod: &Pod) -> &Labels {
    pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

pub(super) fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or_default()
}

pub(super) fn node_labels(node: &NodeInfo) -> &Labels {
    node.node().metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

fn pod_affinity(pod: &Pod) -> Option<&PodAffinitySpec> {
    pod.spec.as_ref()?.affinity.as_ref()?.pod_affinity.as_ref()
}

fn pod_anti_affinity(pod: &Pod) -> Option<&PodAntiAffinitySpec> {
    pod.spec
        .as_ref()?
        .affinity
        .as_ref()?
        .pod_anti_affinity
        .as_ref()
}

/// Whether the pod has a `podAffinity` or a `podAntiAffinity` (kube's `PodsWithAffinity`):
/// only such pods can contribute terms of their own.
pub(super) fn has_pod_affinity(pod: &Pod) -> bool {
    pod_affinity(pod).is_some() || pod_anti_affinity(pod).is_some()
}

/// Whether the pod has required anti-affinity terms (kube's
/// `PodsWithRequiredAntiAffinity`), checked before parsing anything.
pub(super) fn has_required_anti_affinity(pod: &Pod) -> bool {
    pod_anti_affinity(pod)
        .and_then(|anti| {
            anti.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_some_and(|terms| !terms.is_empty())
}

/// Whether the pod has preferred affinity or anti-affinity terms: kube's "the incoming pod has
/// scoring constraints".
pub(super) fn has_preferred_terms(pod: &Pod) -> bool {
    let affinity = pod_affinity(pod)
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_some_and(|terms| !terms.is_empty());
    let anti_affinity = pod_anti_affinity(pod)
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_some_and(|terms| !terms.is_empty());
    affinity || anti_affinity
}

/// How a term selects namespaces by their labels.
#[derive(Clone, Debug)]
enum NamespaceSelector {
    /// No `namespaceSelector`: only the listed namespaces.
    Nothing,
    /// `namespaceSelector: {}`: every namespace, known to the scheduler or not.
    Everything,
    Matching(Selector),
}

/// A parsed `PodAffinityTerm`.
#[derive(Clone, Debug)]
pub(super) struct AffinityTerm {
    pub(super) topology_key: String,
    namespaces: BTreeSet<String>,
    namespace_selector: NamespaceSelector,
    selector: Selector,
}

/// Whether a label selector has no requirement at all, which selects everything (as
/// apimachinery's `LabelSelectorAsSelector` reads it).
fn selects_everything(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

impl AffinityTerm {
    /// Parses `term`, a term of `owner`'s affinity.
    ///
    /// kube-apiserver merges `matchLabelKeys` and `mismatchLabelKeys` into the label selector
    /// when it admits the pod, and kube-scheduler only reads the merged selector; keel's API
    /// server leaves the selector as written, so the merge happens here, with the owner's
    /// labels, and only when there is a selector to merge into (an absent selector selects
    /// nothing either way). Should the API server merge too, the requirements merged twice
    /// are the same ones and select the same pods.
    pub(super) fn parse(owner: &Pod, term: &PodAffinityTerm) -> Result<AffinityTerm, String> {
        let selector = match &term.label_selector {
            None => Selector::nothing(),
            Some(selector) => {
                let match_keys = term.match_label_keys.as_deref().unwrap_or_default();
                let mismatch_keys = term.mismatch_label_keys.as_deref().unwrap_or_default();
                let parsed = if match_keys.is_empty() && mismatch_keys.is_empty() {
                    Selector::new(selector)
                } else {
                    let labels = pod_labels(owner);
                    let merged = merge_match_label_keys(selector, match_keys, labels);
                    let merged = merge_mismatch_label_keys(&merged, mismatch_keys, labels);
                    Selector::new(&merged)
                };
                parsed.map_err(|error| error.to_string())?
            }
        };
        let listed = term.namespaces.as_deref().unwrap_or_default();
        let namespaces = if listed.is_empty() && term.namespace_selector.is_none() {
            BTreeSet::from([pod_namespace(owner).to_string()])
        } else {
            listed.iter().cloned().collect()
        };
        let namespace_selector = match &term.namespace_selector {
            None => NamespaceSelector::Nothing,
            Some(selector) if selects_everything(selector) => NamespaceSelector::Everything,
            Some(selector) => NamespaceSelector::Matching(
                Selector::new(selector).map_err(|error| error.to_string())?,
            ),
        };
        Ok(AffinityTerm {
            topology_key: term.topology_key.clone(),
            namespaces,
            namespace_selector,
            selector,
        })
    }

    /// Whether the term is about `pod` (kube's `AffinityTerm.Matches`): the pod is in one of
    /// the term's namespaces and its labels match the selector.
    ///
    /// `namespace_labels` are the labels of the pod's namespace, for a `namespaceSelector`:
    /// pass the incoming pod's namespace labels (empty when unknown, as kube's snapshot) when
    /// matching an existing pod's term against it, and None when matching the incoming pod's
    /// own terms, whose selector [`resolve_namespaces`](Self::resolve_namespaces) has folded
    /// into the namespace list.
    pub(super) fn matches(&self, pod: &Pod, namespace_labels: Option<&Labels>) -> bool {
        let in_namespace = self.namespaces.contains(pod_namespace(pod))
            || match &self.namespace_selector {
                NamespaceSelector::Nothing => false,
                NamespaceSelector::Everything => true,
                NamespaceSelector::Matching(selector) => {
                    namespace_labels.is_some_and(|labels| selector.matches(labels))
                }
            };
        in_namespace && self.selector.matches(pod_labels(pod))
    }

    fn selects_namespaces_by_labels(&self) -> bool {
        matches!(self.namespace_selector, NamespaceSelector::Matching(_))
    }

    /// Adds the namespaces the `namespaceSelector` selects to the namespace list and drops the
    /// selector (kube's `mergeAffinityTermNamespacesIfNotEmpty`, done for the incoming pod's
    /// terms): matching an existing pod then needs no namespace lookup. `{}` is kept, as it
    /// selects namespaces the scheduler does not know of too.
    pub(super) fn resolve_namespaces(&mut self, namespaces: &KnownNamespaces) {
        if let NamespaceSelector::Matching(selector) = &self.namespace_selector {
            for (name, labels) in &namespaces.0 {
                if selector.matches(labels) {
                    self.namespaces.insert(name.clone());
                }
            }
            self.namespace_selector = NamespaceSelector::Nothing;
        }
    }
}

/// A preferred term and its weight.
#[derive(Clone, Debug)]
pub(super) struct WeightedTerm {
    pub(super) term: AffinityTerm,
    pub(super) weight: i64,
}

/// Whether `pod` matches every term, and there is at least one (kube's
/// `podMatchesAllAffinityTerms`, for the incoming pod's resolved terms).
pub(super) fn matches_all(terms: &[AffinityTerm], pod: &Pod) -> bool {
    !terms.is_empty() && terms.iter().all(|term| term.matches(pod, None))
}

fn parse_required(
    owner: &Pod,
    terms: Option<&Vec<PodAffinityTerm>>,
) -> Result<Vec<AffinityTerm>, String> {
    terms
        .into_iter()
        .flatten()
        .map(|term| AffinityTerm::parse(owner, term))
        .collect()
}

fn parse_preferred(
    owner: &Pod,
    terms: Option<&Vec<WeightedPodAffinityTerm>>,
) -> Result<Vec<WeightedTerm>, String> {
    terms
        .into_iter()
        .flatten()
        .map(|weighted| {
            Ok(WeightedTerm {
                term: AffinityTerm::parse(owner, &weighted.pod_affinity_term)?,
                weight: i64::from(weighted.weight),
            })
        })
        .collect()
}

/// The pod's required affinity terms. For a pod already placed, kube keeps none of them when
/// one does not parse (its `NodeInfo.AddPod` ignores the parse error), hence callers' use of
/// `unwrap_or_default` for existing pods.
pub(super) fn required_affinity_terms(pod: &Pod) -> Result<Vec<AffinityTerm>, String> {
    let terms = pod_affinity(pod).and_then(|affinity| {
        affinity
            .required_during_scheduling_ignored_during_execution
            .as_ref()
    });
    parse_required(pod, terms)
}

pub(super) fn required_anti_affinity_terms(pod: &Pod) -> Result<Vec<AffinityTerm>, String> {
    let terms = pod_anti_affinity(pod).and_then(|anti| {
        anti.required_during_scheduling_ignored_during_execution
            .as_ref()
    });
    parse_required(pod, terms)
}

pub(super) fn preferred_affinity_terms(pod: &Pod) -> Result<Vec<WeightedTerm>, String> {
    let terms = pod_affinity(pod).and_then(|affinity| {
        affinity
            .preferred_during_scheduling_ignored_during_execution
            .as_ref()
    });
    parse_preferred(pod, terms)
}

pub(super) fn preferred_anti_affinity_terms(pod: &Pod) -> Result<Vec<WeightedTerm>, String> {
    let terms = pod_anti_affinity(pod).and_then(|anti| {
        anti.preferred_during_scheduling_ignored_during_execution
            .as_ref()
    });
    parse_preferred(pod, terms)
}

/// The incoming pod's four kinds of terms (kube's `framework.NewPodInfo`), all of which must
/// parse: kube-scheduler refuses a pod with any term it cannot read, in PreFilter and PreScore
/// alike.
pub(super) struct IncomingTerms {
    pub(super) required_affinity: Vec<AffinityTerm>,
    pub(super) required_anti_affinity: Vec<AffinityTerm>,
    pub(super) preferred_affinity: Vec<WeightedTerm>,
    pub(super) preferred_anti_affinity: Vec<WeightedTerm>,
}

impl IncomingTerms {
    /// The terms, or the errors worded as kube's aggregate error: each prefixed with the kind
    /// of term, one alone as is, several as `[first, second]`.
    pub(super) fn parse(pod: &Pod) -> Result<IncomingTerms, String> {
        let mut errors = Vec::new();
        let required_affinity = keep(
            &mut errors,
            "requiredAffinityTerms",
            required_affinity_terms(pod),
        );
        let required_anti_affinity = keep(
            &mut errors,
            "requiredAntiAffinityTerms",
            required_anti_affinity_terms(pod),
        );
        let preferred_affinity = keep(
            &mut errors,
            "preferredAffinityTerms",
            preferred_affinity_terms(pod),
        );
        let preferred_anti_affinity = keep(
            &mut errors,
            "preferredAntiAffinityTerms",
            preferred_anti_affinity_terms(pod),
        );
        match errors.len() {
            0 => Ok(IncomingTerms {
                required_affinity,
                required_anti_affinity,
                preferred_affinity,
                preferred_anti_affinity,
            }),
            1 => Err(errors.concat()),
            _ => Err(format!("[{}]", errors.join(", "))),
        }
    }
}

/// The terms of one kind, or none with the error noted, prefixed with the kind.
fn keep<T>(errors: &mut Vec<String>, kind: &str, result: Result<Vec<T>, String>) -> Vec<T> {
    result.unwrap_or_else(|error| {
        errors.push(format!("{kind}: {error}"));
        Vec::new()
    })
}

/// The namespaces a `namespaceSelector` of the incoming pod can select, with their labels: the
/// namespaces of the pods in the cluster and the pod's own, those the lookup knows.
///
/// kube-scheduler lists every namespace of its informer; a namespace without pods cannot make
/// a term match anything but the incoming pod itself, so the namespaces of the pods (and the
/// pod's own) are all that matters, and keel only needs a lookup by name.
pub(super) struct KnownNamespaces(Vec<(String, Labels)>);

impl KnownNamespaces {
    /// Looks up each namespace once, and only when one of `terms` selects namespaces by
    /// labels (None otherwise: nothing to resolve).
    pub(super) fn for_terms<'a>(
        terms: impl IntoIterator<Item = &'a AffinityTerm>,
        pod: &Pod,
        nodes: &[NodeInfo],
        lookup: &dyn Fn(&str) -> Option<Labels>,
    ) -> Option<KnownNamespaces> {
        if !terms
            .into_iter()
            .any(AffinityTerm::selects_namespaces_by_labels)
        {
            return None;
        }
        let mut names: HashSet<&str> = HashSet::new();
        names.insert(pod_namespace(pod));
        for node in nodes {
            for existing in &node.pods {
                names.insert(pod_namespace(existing));
            }
        }
        let known = names
            .into_iter()
            .filter_map(|name| lookup(name).map(|labels| (name.to_string(), labels)))
            .collect();
        Some(KnownNamespaces(known))
    }
}
