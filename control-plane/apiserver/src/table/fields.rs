//! Reading stored wire-form JSON without trusting its shape. Any field may be missing, null or
//! of the wrong type; every read here degrades to the zero value Go's decoder leaves for an
//! unset field (empty string, no number, false, no items) instead of failing.

use serde_json::{Map, Value};

/// The value at `path`, following object keys; `None` when a step is missing or not an object.
pub(super) fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(value, |current, key| current.as_object()?.get(*key))
}

/// A string field, `""` when unset or not a string.
pub(super) fn str_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    at(value, path).and_then(Value::as_str).unwrap_or("")
}

/// An integer field; `None` when unset, so callers choose Go's zero or Kubernetes' default.
pub(super) fn int_at(value: &Value, path: &[&str]) -> Option<i64> {
    at(value, path).and_then(Value::as_i64)
}

pub(super) fn bool_at(value: &Value, path: &[&str]) -> bool {
    at(value, path).and_then(Value::as_bool).unwrap_or(false)
}

/// A list field; no items when unset or not a list.
pub(super) fn items_at<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    at(value, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub(super) fn object_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    at(value, path).and_then(Value::as_object)
}

/// Go's `len` of a map field: 0 when unset.
pub(super) fn len_at(value: &Value, path: &[&str]) -> i64 {
    object_at(value, path).map_or(0, |map| count(map.len()))
}

/// A length as the integer Kubernetes prints it.
pub(super) fn count(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}

pub(super) fn name(obj: &Value) -> &str {
    str_at(obj, &["metadata", "name"])
}

/// `"<none>"` for an empty value, as the printers show unset optional fields.
pub(super) fn or_none(value: &str) -> &str {
    if value.is_empty() {
        "<none>"
    } else {
        value
    }
}

/// `layoutContainerCells`: the containers' names and their images, each comma-joined in spec
/// order (a container without a name or image still takes its place in the list).
pub(super) fn container_cells(containers: &[Value]) -> (String, String) {
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, &["image"])).collect();
    (names.join(","), images.join(","))
}
