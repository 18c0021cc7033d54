//! ResourceQuotas (`printResourceQuota`): each hard limit with its usage, `used/hard`, the
//! `limits.*` resources in LIMIT and all others in REQUEST. LimitRanges (`printLimitRange`):
//! their name and when they were created.

use jiff::Timestamp;
use serde_json::Value;

use super::columns::{Column, Printer, Row, AGE, CREATION_TIMESTAMP_DESCRIPTION, NAME};
use super::duration::age;
use super::fields::{name, object_at, str_at};

pub(super) const PRINTER: Printer = Printer {
    columns: COLUMNS,
    row,
};

pub(super) const LIMIT_RANGES: Printer = Printer {
    columns: &[
        NAME,
        Column::new("Created At", "date", CREATION_TIMESTAMP_DESCRIPTION),
    ],
    row: limit_range_row,
};

/// The timestamp as stored (RFC 3339), which is how a `metav1.Time` cell encodes.
fn limit_range_row(range: &Value, _now: Timestamp) -> Row {
    Row::new(vec![
        name(range).into(),
        str_at(range, &["metadata", "creationTimestamp"]).into(),
    ])
}

/// Kubernetes 1.33 moved AGE after REQUEST and LIMIT (kubernetes#129419).
const COLUMNS: &[Column] = &[
    NAME,
    Column::new(
        "Request",
        "string",
        "Request represents a minimum amount of cpu/memory that a container may consume.",
    ),
    Column::new(
        "Limit",
        "string",
        "Limits control the maximum amount of cpu/memory that a container may use independent \
         of contention on the node.",
    ),
    AGE,
];

fn row(quota: &Value, now: Timestamp) -> Row {
    let hard = object_at(quota, &["status", "hard"]);
    let used = object_at(quota, &["status", "used"]);
    let mut resources: Vec<&String> = hard.into_iter().flat_map(|hard| hard.keys()).collect();
    resources.sort();

    let mut requests = Vec::new();
    let mut limits = Vec::new();
    for resource in resources {
        let entry = format!(
            "{resource}: {}/{}",
            quantity(used.and_then(|used| used.get(resource.as_str()))),
            quantity(hard.and_then(|hard| hard.get(resource.as_str()))),
        );
        // `limits.cpu` and the like; a bare `limits` is a request like any other name.
        if resource
            .split_once('.')
            .is_some_and(|(prefix, _)| prefix == "limits")
        {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    Row::new(vec![
        name(quota).into(),
        requests.join(", ").into(),
        limits.join(", ").into(),
        age(quota, now).into(),
    ])
}

/// A quantity as stored; an absent one is Go's zero Quantity, "0". (kube-apiserver writes the
/// canonical form, e.g. "1" for "1000m"; the stored text is printed unchanged.)
fn quantity(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => "0".to_string(),
    }
}
