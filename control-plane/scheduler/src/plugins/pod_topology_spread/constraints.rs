//! A topology spread constraint as the plugin applies it (kube-scheduler's `common.go`): the
//! selector parsed with `matchLabelKeys` folded in, the policies resolved, and the questions
//! both halves of the plugin ask of a node and of its pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{PodTopologySpread, DO_NOT_SCHEDULE};
use crate::label_selector::{merge_match_label_keys, Selector};
use crate::plugins::node_affinity::required_node_affinity_matches;
use crate::plugins::taint_toleration::untolerated_taint;

type Labels = BTreeMap<String, String>;

/// What objects without labels read as.
static NO_LABELS: Labels = BTreeMap::new();

/// `nodeAffinityPolicy` / `nodeTaintsPolicy` value that makes the policy count.
const POLICY_HONOR: &str = "Honor";

pub(super) fn pod_labels(pod: &Pod) -> &Labels {
    pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

pub(super) fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or_default()
}

pub(super) fn node_labels(node: &Node) -> &Labels {
    node.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

/// Whether the pod names constraints of its own (then the default constraints never apply,
/// even when none of the pod's is of the kind asked for).
pub(super) fn has_own_constraints(pod: &Pod) -> bool {
    !own_constraints(pod).is_empty()
}

fn own_constraints(pod: &Pod) -> &[TopologySpreadConstraint] {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.topology_spread_constraints.as_deref())
        .unwrap_or_default()
}

/// One constraint of the kind being evaluated (kube's `topologySpreadConstraint`).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Constraint {
    pub(super) max_skew: i32,
    pub(super) topology_key: String,
    pub(super) selector: Selector,
    /// 1 when unset: with fewer eligible domains than this, the global minimum reads as 0.
    pub(super) min_domains: i32,
    /// `nodeAffinityPolicy: Honor` (the default): only nodes matching the pod's node selector
    /// and required node affinity are counted.
    pub(super) honor_node_affinity: bool,
    /// `nodeTaintsPolicy: Honor` (`Ignore` is the default): only nodes whose NoSchedule and
    /// NoExecute taints the pod tolerates are counted.
    pub(super) honor_node_taints: bool,
}

impl Constraint {
    /// `constraint` for a pod labelled `pod_labels`: a missing `labelSelector` selects no pod
    /// (kube's `labels.Nothing()`, which `matchLabelKeys` leaves as it is); otherwise
    /// `matchLabelKeys` adds `key In (value)` for each key the pod has.
    fn parse(constraint: &TopologySpreadConstraint, pod_labels: &Labels) -> Result<Self, String> {
        let selector = match &constraint.label_selector {
            None => Selector::nothing(),
            Some(selector) => {
                let keys = constraint.match_label_keys.as_deref().unwrap_or_default();
                let parsed = if keys.is_empty() {
                    Selector::new(selector)
                } else {
                    Selector::new(&merge_match_label_keys(selector, keys, pod_labels))
                };
                parsed.map_err(|err| err.to_string())?
            }
        };
        Ok(Constraint {
            max_skew: constraint.max_skew,
            topology_key: constraint.topology_key.clone(),
            selector,
            min_domains: constraint.min_domains.unwrap_or(1),
            // Any value but Honor ignores, as kube compares with Honor only.
            honor_node_affinity: constraint
                .node_affinity_policy
                .as_deref()
                .is_none_or(|policy| policy == POLICY_HONOR),
            honor_node_taints: constraint.node_taints_policy.as_deref() == Some(POLICY_HONOR),
        })
    }

    /// The pods among `pods` this constraint counts: those of `namespace` that are not
    /// terminating (their replacements are on their way, see kubernetes#87621) and that the
    /// selector matches.
    pub(super) fn count_matching(&self, pods: &[Pod], namespace: &str) -> i64 {
        // A missing labelSelector matches no pod: skip the walk (kube's null-selector shortcut).
        if self.selector.is_nothing() {
            return 0;
        }
        let count = pods
            .iter()
            .filter(|pod| {
                pod.metadata.deletion_timestamp.is_none()
                    && pod_namespace(pod) == namespace
                    && self.selector.matches(pod_labels(pod))
            })
            .count();
        i64::try_from(count).unwrap_or(i64::MAX)
    }
}

/// Whether the node carries the topology key of every constraint (kube's
/// `nodeLabelsMatchSpreadConstraints`): a node missing one is counted for none of them.
pub(super) fn has_all_topology_keys(labels: &Labels, constraints: &[Constraint]) -> bool {
    constraints
        .iter()
        .all(|constraint| labels.contains_key(&constraint.topology_key))
}

/// Whether a node passes a constraint's inclusion policies for the pod (kube's
/// `matchNodeInclusionPolicies`), each policy's answer computed once per node whatever the
/// number of constraints.
pub(super) struct NodeInclusion<'a> {
    pod: &'a Pod,
    node: &'a Node,
    affinity: Option<bool>,
    taints: Option<bool>,
}

impl<'a> NodeInclusion<'a> {
    pub(super) fn new(pod: &'a Pod, node: &'a Node) -> NodeInclusion<'a> {
        NodeInclusion {
            pod,
            node,
            affinity: None,
            taints: None,
        }
    }

    pub(super) fn includes(&mut self, constraint: &Constraint) -> bool {
        let (pod, node) = (self.pod, self.node);
        // A term that does not parse matches no node, as kube ignores the parse error here.
        if constraint.honor_node_affinity
            && !*self
                .affinity
                .get_or_insert_with(|| required_node_affinity_matches(pod, node))
        {
            return false;
        }
        if constraint.honor_node_taints
            && !*self
                .taints
                .get_or_insert_with(|| tolerates_node_taints(pod, node))
        {
            return false;
        }
        true
    }
}

/// Whether the pod tolerates every NoSchedule and NoExecute taint of the node (kube's
/// `FindMatchingUntoleratedTaint` with `DoNotScheduleTaintsFilterFunc`).
fn tolerates_node_taints(pod: &Pod, node: &Node) -> bool {
    let taints = node
        .spec
        .as_ref()
        .and_then(|spec| spec.taints.as_deref())
        .unwrap_or_default();
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.tolerations.as_deref())
        .unwrap_or_default();
    untolerated_taint(taints, tolerations).is_none()
}

/// Whether a default selector has no requirement (kube's `Selector.Empty()`): no Service or
/// controller selects the pod, and the default constraints do not apply.
fn is_empty_selector(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

fn parse_all(
    constraints: &[TopologySpreadConstraint],
    pod_labels: &Labels,
    action: &str,
) -> Result<Vec<Constraint>, String> {
    constraints
        .iter()
        .filter(|constraint| constraint.when_unsatisfiable == action)
        .map(|constraint| Constraint::parse(constraint, pod_labels))
        .collect()
}

impl PodTopologySpread {
    /// The pod's constraints whose `whenUnsatisfiable` is `action` (kube's `getConstraints`,
    /// `filterTopologySpreadConstraints`): its own when it has any, else the defaults. The
    /// error is kube's message.
    pub(super) fn constraints(&self, pod: &Pod, action: &str) -> Result<Vec<Constraint>, String> {
        let kind = if action == DO_NOT_SCHEDULE {
            "hard"
        } else {
            "soft"
        };
        let labels = pod_labels(pod);
        let own = own_constraints(pod);
        if !own.is_empty() {
            return parse_all(own, labels, action).map_err(|err| {
                format!("obtaining pod's {kind} topology spread constraints: {err}")
            });
        }
        self.defaults_for(pod, labels, action)
            .map_err(|err| format!("setting default {kind} topology spread constraints: {err}"))
    }

    /// The default constraints of kind `action`, counting the pods of the Services and
    /// controllers that select the pod (kube's `buildDefaultConstraints`); none when nothing
    /// selects it, or when the plugin was given no source to ask (see [`PodTopologySpread`]).
    fn defaults_for(
        &self,
        pod: &Pod,
        labels: &Labels,
        action: &str,
    ) -> Result<Vec<Constraint>, String> {
        let Some(source) = &self.default_selector else {
            return Ok(Vec::new());
        };
        let mut constraints = parse_all(&self.default_constraints, labels, action)?;
        if constraints.is_empty() {
            return Ok(constraints);
        }
        let selector = source.default_selector(pod);
        if is_empty_selector(&selector) {
            return Ok(Vec::new());
        }
        let selector = Selector::new(&selector).map_err(|err| err.to_string())?;
        for constraint in &mut constraints {
            constraint.selector = selector.clone();
        }
        Ok(constraints)
    }
}
