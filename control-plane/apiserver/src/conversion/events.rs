//! events.k8s.io/v1 Event ↔ core/v1 Event, as k8s.io/kubernetes pkg/apis/events/v1
//! `conversion.go` converts them through the internal Event: the two versions are one
//! resource, stored once under `/registry/events/` in the core/v1 form.
//!
//! Every field has a partner in the other version; seven are renamed, the rest keep their
//! names (`metadata`, `related`, `reason`, `type`, `action`, `eventTime`, `series`,
//! `reportingInstance`). `count` and `source.component` are plain renames too: nothing in the
//! conversion derives one field from another (the `source` field selector falling back to the
//! reporting controller is the field set's doing, not the conversion's).
//!
//! The functions are total on any JSON: a value is moved under its new name as it is, never
//! parsed, so a wrong type or a huge note goes through unchanged and is the decoder's and the
//! validator's to refuse. A key neither version has is dropped: it is not a field of the
//! resource, and carrying it would store something no schema describes.

use serde_json::{Map, Value};

/// (events.k8s.io/v1 name, core/v1 name) of the renamed fields.
const RENAMED: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Fields both versions spell the same.
const SAME: &[&str] = &[
    "metadata",
    "related",
    "reason",
    "type",
    "action",
    "eventTime",
    "series",
    "reportingInstance",
];

pub const EVENTS_API_VERSION: &str = "events.k8s.io/v1";
pub const CORE_API_VERSION: &str = "v1";

/// The fields of `object` under the names `rename` gives them; `apiVersion`/`kind` set to the
/// target version's. A non-object converts to an Event with no fields.
fn convert(
    object: &Value,
    api_version: &str,
    rename: impl Fn(&str) -> Option<&'static str>,
) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    out.insert("kind".into(), Value::String("Event".into()));
    let Some(fields) = object.as_object() else {
        return out;
    };
    for (key, value) in fields {
        if let Some(name) = rename(key) {
            out.insert(name.into(), value.clone());
        }
    }
    out
}

fn same(key: &str) -> Option<&'static str> {
    SAME.iter().copied().find(|s| *s == key)
}

/// events.k8s.io/v1 → core/v1 (the storage form).
pub fn to_core(event: &Value) -> Value {
    let mut out = convert(event, CORE_API_VERSION, |key| {
        RENAMED
            .iter()
            .find(|(events, _)| *events == key)
            .map(|(_, core)| *core)
            .or_else(|| same(key))
    });
    // core/v1's involvedObject is not optional (Go writes `{}` for an empty one, and typed
    // clients of core/v1 fail on an Event without it).
    out.entry("involvedObject")
        .or_insert_with(|| Value::Object(Map::new()));
    Value::Object(out)
}

/// core/v1 (the storage form) → events.k8s.io/v1.
pub fn from_core(event: &Value) -> Value {
    let mut out = convert(event, EVENTS_API_VERSION, |key| {
        RENAMED
            .iter()
            .find(|(_, core)| *core == key)
            .map(|(events, _)| *events)
            .or_else(|| same(key))
    });
    // events.k8s.io/v1's series count is an int32 Go always writes; a core/v1 series may
    // leave it out (core/v1 validation does not look at series).
    if let Some(series) = out.get_mut("series").and_then(Value::as_object_mut) {
        series.entry("count").or_insert(Value::from(0));
        series.entry("lastObservedTime").or_insert(Value::Null);
    }
    Value::Object(out)
}

/// events.k8s.io/v1's field label conversion: its selector labels onto the core Event's
/// field set (`regarding.*` → `involvedObject.*`, `reportingController` →
/// `reportingComponent`; the others, `source` included, keep their names).
pub fn field_label(label: &str) -> &str {
    match label {
        "regarding.kind" => "involvedObject.kind",
        "regarding.namespace" => "involvedObject.namespace",
        "regarding.name" => "involvedObject.name",
        "regarding.uid" => "involvedObject.uid",
        "regarding.apiVersion" => "involvedObject.apiVersion",
        "regarding.resourceVersion" => "involvedObject.resourceVersion",
        "regarding.fieldPath" => "involvedObject.fieldPath",
        "reportingController" => "reportingComponent",
        other => other,
    }
}

#[cfg(test)]
mod tests;
