//! NodeAffinity: `nodeSelector` and required node affinity rule nodes out (filter); preferred
//! node affinity ranks the rest by the weights of the terms they match (score).
//!
//! Terms are matched as Kubernetes' component-helpers `nodeaffinity` package matches them:
//! terms are ORed, a term's requirements ANDed; an empty term matches nothing; a term that does
//! not parse (an unknown operator, a value that is no label value) matches nothing, without
//! hiding the terms that do. `matchFields` knows one field, `metadata.name`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeAffinity as NodeAffinitySpec, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, Pod, PreferredSchedulingTerm,
};

use crate::framework::{
    default_normalize_score, CycleState, FilterPlugin, ScorePlugin, Status, MAX_NODE_SCORE,
};
use crate::labels::{is_qualified_name, is_valid_label_value};
use crate::node_info::NodeInfo;

pub const NAME: &str = "NodeAffinity";
/// The filter's reason when the pod's node selector or required affinity does not match.
pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";
/// The filter's reason when the scheduler-wide added affinity does not match.
pub const ERR_REASON_ENFORCED: &str = "node(s) didn't match scheduler-enforced node affinity";
/// The one field `matchFields` may name.
pub const OBJECT_NAME_FIELD: &str = "metadata.name";

/// The plugin, with the affinity a scheduler profile may add to every pod
/// (`NodeAffinityArgs.addedAffinity`); none by default.
#[derive(Clone, Debug, Default)]
pub struct NodeAffinity {
    added_required: Option<Selector>,
    added_preferred: Vec<(i64, Term)>,
}

/// An added affinity that does not parse, which kube-scheduler refuses at startup.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("addedAffinity: {0}")]
pub struct AddedAffinityError(pub String);

impl NodeAffinity {
    pub fn new(added: Option<&NodeAffinitySpec>) -> Result<NodeAffinity, AddedAffinityError> {
        let Some(added) = added else {
            return Ok(NodeAffinity::default());
        };
        let added_required = match &added.required_during_scheduling_ignored_during_execution {
            Some(selector) => Some(Selector::strict(selector).map_err(AddedAffinityError)?),
            None => None,
        };
        let added_preferred = match &added.preferred_during_scheduling_ignored_during_execution {
            Some(terms) => preferred_terms(terms).map_err(AddedAffinityError)?,
            None => Vec::new(),
        };
        Ok(NodeAffinity {
            added_required,
            added_preferred,
        })
    }
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Nothing to match without a node selector, required affinity or an added affinity
    /// (kube's PreFilter returns Skip then).
    fn pre_filter(&self, pod: &Pod, _nodes: &[NodeInfo], _state: &mut CycleState) -> Status {
        let spec = pod.spec.as_ref();
        let selector = spec
            .and_then(|spec| spec.node_selector.as_ref())
            .is_some_and(|selector| !selector.is_empty());
        let required = spec
            .and_then(|spec| spec.affinity.as_ref())
            .and_then(|affinity| affinity.node_affinity.as_ref())
            .is_some_and(|affinity| {
                affinity
                    .required_during_scheduling_ignored_during_execution
                    .is_some()
            });
        if selector || required || self.added_required.is_some() {
            Status::success()
        } else {
            Status::skip()
        }
    }

    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        if self
            .added_required
            .as_ref()
            .is_some_and(|added| !added.matches(node.node()))
        {
            return Status::unresolvable(ERR_REASON_ENFORCED);
        }
        if required_node_affinity_matches(pod, node.node()) {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON_POD)
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    /// No preferred term, the pod's or added: every node would score 0 (kube skips).
    fn pre_score(
        &self,
        pod: &Pod,
        _feasible: &[&NodeInfo],
        _all: &[NodeInfo],
        _state: &mut CycleState,
    ) -> Status {
        let preferred = pod
            .spec
            .as_ref()
            .and_then(|spec| spec.affinity.as_ref())
            .and_then(|affinity| affinity.node_affinity.as_ref())
            .and_then(|affinity| {
                affinity
                    .preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_some_and(|terms| !terms.is_empty());
        if preferred || !self.added_preferred.is_empty() {
            Status::success()
        } else {
            Status::skip()
        }
    }

    /// The sum of the weights of the preferred terms (the pod's and the added ones) the node
    /// matches; an error when one of the pod's preferred terms does not parse.
    fn score(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let preferred = pod
            .spec
            .as_ref()
            .and_then(|spec| spec.affinity.as_ref())
            .and_then(|affinity| affinity.node_affinity.as_ref())
            .and_then(|affinity| {
                affinity
                    .preferred_during_scheduling_ignored_during_execution
                    .as_deref()
            });
        let pod_terms = match preferred {
            Some(terms) => preferred_terms(terms).map_err(Status::error)?,
            None => Vec::new(),
        };
        Ok(self
            .added_preferred
            .iter()
            .chain(&pod_terms)
            .filter(|(_, term)| term.matches(node.node()))
            .map(|(weight, _)| weight)
            .sum())
    }

    fn normalize(&self, _state: &CycleState, _pod: &Pod, scores: &mut [i64]) {
        default_normalize_score(MAX_NODE_SCORE, false, scores);
    }
}

/// Whether the node satisfies the pod's `nodeSelector` (every label, with its value) and its
/// required node affinity (kube's `RequiredNodeAffinity.Match`).
pub fn required_node_affinity_matches(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let labels = node_labels(node);
    let selector_matches = spec.node_selector.as_ref().is_none_or(|selector| {
        selector
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
    });
    let required = spec
        .affinity
        .as_ref()
        .and_then(|affinity| affinity.node_affinity.as_ref())
        .and_then(|affinity| {
            affinity
                .required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    selector_matches && required.is_none_or(|required| Selector::lenient(required).matches(node))
}

fn node_labels(node: &Node) -> &BTreeMap<String, String> {
    static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
    node.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

/// Required node selector terms, ORed.
#[derive(Clone, Debug)]
struct Selector {
    /// The non-empty terms; None for one that does not parse.
    terms: Vec<Option<Term>>,
}

impl Selector {
    /// A pod's terms: one that does not parse never matches (kube's `LazyErrorNodeSelector`,
    /// kept for the pods the API server accepted before it validated terms).
    fn lenient(selector: &NodeSelector) -> Selector {
        Selector {
            terms: non_empty_terms(selector)
                .map(|term| Term::parse(term).ok())
                .collect(),
        }
    }

    /// The scheduler's own terms, all of which must parse (kube's `NewNodeSelector`).
    fn strict(selector: &NodeSelector) -> Result<Selector, String> {
        let terms = non_empty_terms(selector)
            .map(|term| Term::parse(term).map(Some))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Selector { terms })
    }

    fn matches(&self, node: &Node) -> bool {
        self.terms.iter().flatten().any(|term| term.matches(node))
    }
}

fn non_empty_terms(selector: &NodeSelector) -> impl Iterator<Item = &NodeSelectorTerm> {
    selector
        .node_selector_terms
        .iter()
        .filter(|term| !is_empty_term(term))
}

/// A term with neither expressions nor fields selects nothing, and is skipped.
fn is_empty_term(term: &NodeSelectorTerm) -> bool {
    term.match_expressions.as_ref().is_none_or(Vec::is_empty)
        && term.match_fields.as_ref().is_none_or(Vec::is_empty)
}

/// Preferred terms with a weight and a non-empty preference, parsed; the first error if one
/// does not parse.
fn preferred_terms(terms: &[PreferredSchedulingTerm]) -> Result<Vec<(i64, Term)>, String> {
    terms
        .iter()
        .filter(|term| term.weight != 0 && !is_empty_term(&term.preference))
        .map(|term| -> Result<(i64, Term), String> {
            Ok((i64::from(term.weight), Term::parse(&term.preference)?))
        })
        .collect()
}

/// A parsed term: label requirements and field requirements, each ANDed; None when the term
/// has none of that kind.
#[derive(Clone, Debug)]
struct Term {
    labels: Option<Vec<LabelRequirement>>,
    fields: Option<Vec<FieldRequirement>>,
}

impl Term {
    fn parse(term: &NodeSelectorTerm) -> Result<Term, String> {
        let labels = match term.match_expressions.as_deref() {
            Some(expressions) if !expressions.is_empty() => Some(
                expressions
                    .iter()
                    .map(LabelRequirement::parse)
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            _ => None,
        };
        let fields = match term.match_fields.as_deref() {
            Some(fields) if !fields.is_empty() => Some(
                fields
                    .iter()
                    .map(FieldRequirement::parse)
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            _ => None,
        };
        Ok(Term { labels, fields })
    }

    fn matches(&self, node: &Node) -> bool {
        let labels = node_labels(node);
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let labels_match = self
            .labels
            .as_ref()
            .is_none_or(|requirements| requirements.iter().all(|r| r.matches(labels)));
        // A node without a name has no fields, and kube then ignores matchFields.
        let fields_match = self.fields.as_ref().is_none_or(|requirements| {
            name.is_empty() || requirements.iter().all(|r| r.matches(name))
        });
        labels_match && fields_match
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

/// A `matchExpressions` entry, validated as apimachinery's `labels.NewRequirement` validates.
#[derive(Clone, Debug)]
struct LabelRequirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl LabelRequirement {
    fn parse(requirement: &NodeSelectorRequirement) -> Result<LabelRequirement, String> {
        let key = &requirement.key;
        let operator = match requirement.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            "Gt" => Operator::Gt,
            "Lt" => Operator::Lt,
            other => return Err(format!("{key}: operator {other:?} is not supported")),
        };
        let values = requirement.values.clone().unwrap_or_default();
        if !is_qualified_name(key) {
            return Err(format!("{key:?} is not a valid label key"));
        }
        let values_fit = match operator {
            Operator::In | Operator::NotIn => !values.is_empty(),
            Operator::Exists | Operator::DoesNotExist => values.is_empty(),
            Operator::Gt | Operator::Lt => {
                values.len() == 1 && values.iter().all(|value| value.parse::<i64>().is_ok())
            }
        };
        if !values_fit {
            return Err(format!(
                "{key}: values {values:?} do not suit operator {operator:?}"
            ));
        }
        if let Some(value) = values.iter().find(|value| !is_valid_label_value(value)) {
            return Err(format!("{key}: {value:?} is not a valid label value"));
        }
        Ok(LabelRequirement {
            key: key.clone(),
            operator,
            values,
        })
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|value| self.values.contains(value)),
            Operator::NotIn => value.is_none_or(|value| !self.values.contains(value)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Gt | Operator::Lt => {
                // Both sides are integers or the requirement does not match (a label value
                // such as "v1.2" never does).
                let label = value.and_then(|value| value.parse::<i64>().ok());
                let bound = self
                    .values
                    .first()
                    .and_then(|bound| bound.parse::<i64>().ok());
                match (label, bound) {
                    (Some(label), Some(bound)) if self.operator == Operator::Gt => label > bound,
                    (Some(label), Some(bound)) => label < bound,
                    _ => false,
                }
            }
        }
    }
}

/// A `matchFields` entry: `In` or `NotIn` with exactly one value.
#[derive(Clone, Debug)]
enum FieldRequirement {
    Equals { field: String, value: String },
    NotEquals { field: String, value: String },
}

impl FieldRequirement {
    fn parse(requirement: &NodeSelectorRequirement) -> Result<FieldRequirement, String> {
        let field = requirement.key.clone();
        let values = requirement.values.as_deref().unwrap_or_default();
        let [value] = values else {
            return Err(format!("{field}: values must have one element"));
        };
        let value = value.clone();
        match requirement.operator.as_str() {
            "In" => Ok(FieldRequirement::Equals { field, value }),
            "NotIn" => Ok(FieldRequirement::NotEquals { field, value }),
            other => Err(format!(
                "{field}: operator {other:?} is not supported for fields"
            )),
        }
    }

    /// The node's only field is its name; any other field reads as empty.
    fn matches(&self, node_name: &str) -> bool {
        let (field, value, equal) = match self {
            FieldRequirement::Equals { field, value } => (field, value, true),
            FieldRequirement::NotEquals { field, value } => (field, value, false),
        };
        let actual = if field == OBJECT_NAME_FIELD {
            node_name
        } else {
            ""
        };
        (actual == value.as_str()) == equal
    }
}

#[cfg(test)]
mod tests;
