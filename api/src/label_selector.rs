//! `metav1.LabelSelector` as a matcher: `matchLabels` and `matchExpressions` ANDed, as
//! apimachinery's `LabelSelectorAsSelector` builds them.
//!
//! The scheduler (affinity terms, topology spread), the ReplicaSet and EndpointSlice
//! controllers all ask the same question — does this object's label map satisfy that
//! selector? — and must answer it as Kubernetes does, including the two edge cases that differ
//! between callers: a *missing* selector matches nothing, an *empty* one (`{}`) everything.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::validation::{is_qualified_name, is_valid_label_value};

/// A selector that does not parse; the message names the field as Kubernetes' validation does.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SelectorError {
    pub field: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            // A label that is absent is not in any set.
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

/// A parsed label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    /// `None`: matches nothing (a missing selector); `Some(empty)`: matches everything.
    requirements: Option<Vec<Requirement>>,
}

impl Selector {
    /// Parses `selector`; an empty selector matches every label set.
    pub fn new(selector: &LabelSelector) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            let field = format!("matchLabels[{key}]");
            check(&field, is_qualified_name(key))?;
            check(&field, is_valid_label_value(value))?;
            requirements.push(Requirement {
                key: key.clone(),
                operator: Operator::In,
                values: vec![value.clone()],
            });
        }
        for (index, expression) in selector.match_expressions.iter().flatten().enumerate() {
            requirements.push(requirement(index, expression)?);
        }
        Ok(Selector {
            requirements: Some(requirements),
        })
    }

    /// Parses an optional selector: `None` matches nothing, as a nil `*LabelSelector` does.
    pub fn from_optional(selector: Option<&LabelSelector>) -> Result<Selector, SelectorError> {
        selector.map_or(Ok(Selector::nothing()), Selector::new)
    }

    /// Matches every label set.
    pub fn everything() -> Selector {
        Selector {
            requirements: Some(Vec::new()),
        }
    }

    /// Matches no label set.
    pub fn nothing() -> Selector {
        Selector { requirements: None }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements
            .as_ref()
            .is_some_and(|requirements| requirements.iter().all(|r| r.matches(labels)))
    }

    /// [`matches`](Selector::matches) for an object's optional labels.
    pub fn matches_optional(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        match labels {
            Some(labels) => self.matches(labels),
            None => self.matches(&BTreeMap::new()),
        }
    }

    pub fn is_everything(&self) -> bool {
        self.requirements.as_ref().is_some_and(Vec::is_empty)
    }

    pub fn is_nothing(&self) -> bool {
        self.requirements.is_none()
    }
}

fn check(field: &str, messages: Vec<String>) -> Result<(), SelectorError> {
    match messages.into_iter().next() {
        None => Ok(()),
        Some(message) => Err(SelectorError {
            field: field.to_string(),
            message,
        }),
    }
}

fn requirement(
    index: usize,
    expression: &LabelSelectorRequirement,
) -> Result<Requirement, SelectorError> {
    let field = format!("matchExpressions[{index}]");
    check(&format!("{field}.key"), is_qualified_name(&expression.key))?;
    let values = expression.values.clone().unwrap_or_default();
    let operator = match expression.operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => {
            return Err(SelectorError {
                field: format!("{field}.operator"),
                message: format!("{other:?} is not a valid label selector operator"),
            })
        }
    };
    let wants_values = matches!(operator, Operator::In | Operator::NotIn);
    if wants_values && values.is_empty() {
        return Err(SelectorError {
            field: format!("{field}.values"),
            message: "for 'in', 'notin' operators, values set can't be empty".to_string(),
        });
    }
    if !wants_values && !values.is_empty() {
        return Err(SelectorError {
            field: format!("{field}.values"),
            message: "values set must be empty for exists and does not exist".to_string(),
        });
    }
    for (i, value) in values.iter().enumerate() {
        check(&format!("{field}.values[{i}]"), is_valid_label_value(value))?;
    }
    Ok(Requirement {
        key: expression.key.clone(),
        operator,
        values,
    })
}

/// `selector` with `key In [value]` added for each of `keys` the pod has a label for: how
/// `matchLabelKeys` narrows a topology spread constraint or an affinity term to the pod's own
/// revision.
pub fn merge_match_label_keys(
    selector: &LabelSelector,
    keys: &[String],
    pod_labels: &BTreeMap<String, String>,
) -> LabelSelector {
    merge_keys(selector, keys, pod_labels, "In")
}

/// `selector` with `key NotIn [value]` added for each of `keys` the pod has a label for
/// (`mismatchLabelKeys` of an affinity term).
pub fn merge_mismatch_label_keys(
    selector: &LabelSelector,
    keys: &[String],
    pod_labels: &BTreeMap<String, String>,
) -> LabelSelector {
    merge_keys(selector, keys, pod_labels, "NotIn")
}

fn merge_keys(
    selector: &LabelSelector,
    keys: &[String],
    pod_labels: &BTreeMap<String, String>,
    operator: &str,
) -> LabelSelector {
    let mut merged = selector.clone();
    for key in keys {
        if let Some(value) = pod_labels.get(key) {
            merged
                .match_expressions
                .get_or_insert_default()
                .push(LabelSelectorRequirement {
                    key: key.clone(),
                    operator: operator.to_string(),
                    values: Some(vec![value.clone()]),
                });
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_string(),
            operator: operator.to_string(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn selector(
        match_labels: &[(&str, &str)],
        expressions: Vec<LabelSelectorRequirement>,
    ) -> LabelSelector {
        LabelSelector {
            match_labels: (!match_labels.is_empty()).then(|| labels(match_labels)),
            match_expressions: (!expressions.is_empty()).then_some(expressions),
        }
    }

    #[test]
    fn empty_matches_everything_missing_matches_nothing() {
        let empty = Selector::new(&LabelSelector::default()).expect("parses");
        assert!(empty.matches(&labels(&[])));
        assert!(empty.matches(&labels(&[("a", "b")])));
        assert!(empty.is_everything());
        let missing = Selector::from_optional(None).expect("parses");
        assert!(!missing.matches(&labels(&[])));
        assert!(missing.is_nothing());
    }

    #[test]
    fn operators_match_as_kubernetes() {
        let cases = [
            (
                expression("app", "In", &["web", "db"]),
                &[("app", "web")][..],
                true,
            ),
            (
                expression("app", "In", &["web"]),
                &[("app", "db")][..],
                false,
            ),
            (expression("app", "In", &["web"]), &[][..], false),
            (expression("app", "NotIn", &["web"]), &[][..], true),
            (
                expression("app", "NotIn", &["web"]),
                &[("app", "web")][..],
                false,
            ),
            (
                expression("app", "NotIn", &["web"]),
                &[("app", "db")][..],
                true,
            ),
            (expression("app", "Exists", &[]), &[("app", "")][..], true),
            (expression("app", "Exists", &[]), &[][..], false),
            (expression("app", "DoesNotExist", &[]), &[][..], true),
            (
                expression("app", "DoesNotExist", &[]),
                &[("app", "x")][..],
                false,
            ),
        ];
        for (expr, set, want) in cases {
            let parsed = Selector::new(&selector(&[], vec![expr.clone()])).expect("parses");
            assert_eq!(parsed.matches(&labels(set)), want, "{expr:?} on {set:?}");
        }
    }

    #[test]
    fn match_labels_and_expressions_are_anded() {
        let parsed = Selector::new(&selector(
            &[("app", "web")],
            vec![expression("tier", "In", &["front"])],
        ))
        .expect("parses");
        assert!(parsed.matches(&labels(&[("app", "web"), ("tier", "front")])));
        assert!(!parsed.matches(&labels(&[("app", "web")])));
        assert!(!parsed.matches(&labels(&[("tier", "front")])));
    }

    #[test]
    fn malformed_selectors_name_the_field() {
        let cases = [
            (
                selector(&[], vec![expression("app", "Near", &["x"])]),
                "matchExpressions[0].operator: \"Near\" is not a valid label selector operator",
            ),
            (
                selector(&[], vec![expression("app", "In", &[])]),
                "matchExpressions[0].values: for 'in', 'notin' operators, values set can't be empty",
            ),
            (
                selector(&[], vec![expression("app", "Exists", &["x"])]),
                "matchExpressions[0].values: values set must be empty for exists and does not exist",
            ),
        ];
        for (input, want) in cases {
            let err = Selector::new(&input).expect_err("refused");
            assert_eq!(err.to_string(), want);
        }
        let bad_key = Selector::new(&selector(&[("-bad key", "v")], vec![])).expect_err("refused");
        assert_eq!(bad_key.field, "matchLabels[-bad key]");
        let bad_value = Selector::new(&selector(
            &[],
            vec![expression("k", "In", &["\"; rm -rf /"])],
        ))
        .expect_err("refused");
        assert_eq!(bad_value.field, "matchExpressions[0].values[0]");
        let long = "x".repeat(300);
        assert!(Selector::new(&selector(&[(&long, "v")], vec![])).is_err());
    }

    #[test]
    fn label_keys_merge_the_pods_values() {
        let base = selector(&[("app", "web")], vec![]);
        let pod = labels(&[("pod-template-hash", "abc"), ("app", "web")]);
        let keys = vec!["pod-template-hash".to_string(), "absent".to_string()];
        let merged = merge_match_label_keys(&base, &keys, &pod);
        let parsed = Selector::new(&merged).expect("parses");
        assert!(parsed.matches(&pod));
        assert!(!parsed.matches(&labels(&[("app", "web"), ("pod-template-hash", "old")])));
        let mismatch = merge_mismatch_label_keys(&base, &keys, &pod);
        let parsed = Selector::new(&mismatch).expect("parses");
        assert!(!parsed.matches(&pod));
        assert!(parsed.matches(&labels(&[("app", "web"), ("pod-template-hash", "old")])));
    }
}
