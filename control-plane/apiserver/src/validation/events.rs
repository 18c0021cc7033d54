//! Events, as k8s.io/kubernetes pkg/apis/core/validation/events.go validates them: on the
//! stored (core) form, with the internal Event's field paths (`message`, `involvedObject`,
//! `reportingController`) whichever version the request came in, and by that version. Every
//! Event passes the legacy checks; one created or updated through events.k8s.io/v1 passes the
//! strict ones too.

use serde_json::Value;

use super::Errors;
use crate::resources::ResourceInfo;

const REPORTING_INSTANCE_LENGTH_LIMIT: usize = 128;
const ACTION_LENGTH_LIMIT: usize = 128;
const REASON_LENGTH_LIMIT: usize = 128;
const NOTE_LENGTH_LIMIT: usize = 1024;

/// The strict rules apply to requests in events.k8s.io/v1 (kube: any version but core/v1
/// and events.k8s.io/v1beta1).
fn strict(info: &ResourceInfo) -> bool {
    info.group == "events.k8s.io"
}

fn text<'v>(event: &'v Value, pointer: &str) -> &'v str {
    event.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// A Go zero time: absent, null or empty.
fn unset(event: &Value, pointer: &str) -> bool {
    match event.pointer(pointer) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    }
}

/// `legacyValidateEvent`: the namespace agrees with the involved object's; an Event with an
/// `eventTime` (a new-style one) names its reporter, action and reason, within their limits.
fn legacy(errors: &mut Errors, event: &Value) {
    let namespace = text(event, "/metadata/namespace");
    let involved_namespace = text(event, "/involvedObject/namespace");
    let mismatch = |errors: &mut Errors| {
        errors.invalid(
            "involvedObject.namespace",
            involved_namespace,
            "does not match event.namespace",
        )
    };
    if unset(event, "/eventTime") {
        if involved_namespace.is_empty() {
            // An Event about a cluster-scoped object lives in no namespace or in `default`.
            if !namespace.is_empty() && namespace != "default" {
                mismatch(errors);
            }
        } else if namespace != involved_namespace {
            mismatch(errors);
        }
        return;
    }
    if involved_namespace.is_empty() && namespace != "default" && namespace != "kube-system" {
        mismatch(errors);
    }
    let controller = text(event, "/reportingComponent");
    if controller.is_empty() {
        errors.required("reportingController");
    }
    for message in keel_api::validation::is_qualified_name(controller) {
        errors.invalid("reportingController", controller, &message);
    }
    let limited = [
        (
            "reportingInstance",
            "/reportingInstance",
            REPORTING_INSTANCE_LENGTH_LIMIT,
        ),
        ("action", "/action", ACTION_LENGTH_LIMIT),
        ("reason", "/reason", REASON_LENGTH_LIMIT),
    ];
    for (field, pointer, limit) in limited {
        let value = text(event, pointer);
        if value.is_empty() {
            errors.required(field);
        }
        // Go's len: bytes, not characters.
        if value.len() > limit {
            errors.invalid(field, "", &format!("can have at most {limit} characters"));
        }
    }
    if text(event, "/message").len() > NOTE_LENGTH_LIMIT {
        errors.invalid(
            "message",
            "",
            &format!("can have at most {NOTE_LENGTH_LIMIT} characters"),
        );
    }
}

/// Go's DeepEqual of two fields of a typed Event: absent, null and a zero value are the same.
fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    fn zero(v: Option<&Value>) -> bool {
        match v {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(Value::Number(n)) => n.as_f64() == Some(0.0),
            Some(Value::Object(o)) => o.values().all(|v| zero(Some(v))),
            Some(_) => false,
        }
    }
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            x.keys().chain(y.keys()).all(|k| same(x.get(k), y.get(k)))
        }
        _ => (zero(a) && zero(b)) || a == b,
    }
}

/// `validateV1EventSeries`.
fn series(errors: &mut Errors, event: &Value) {
    let Some(series) = event.get("series").filter(|s| !s.is_null()) else {
        return;
    };
    if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
        errors.invalid("series.count", "", "should be at least 2");
    }
    if unset(series, "/lastObservedTime") {
        errors.required("series.lastObservedTime");
    }
}

/// Every Event, created or updated, in either version (`event`: the stored form).
pub(super) fn validate(errors: &mut Errors, event: &Value) {
    legacy(errors, event);
}

/// `ValidateEventCreate` beyond the legacy checks: an events.k8s.io/v1 Event is new-style,
/// and its deprecated fields stay unset. (The object meta is checked with every kind's.)
pub(super) fn validate_create(errors: &mut Errors, info: &ResourceInfo, event: &Value) {
    if !strict(info) {
        return;
    }
    series(errors, event);
    if unset(event, "/eventTime") {
        errors.required("eventTime");
    }
    let kind = text(event, "/type");
    if kind != "Normal" && kind != "Warning" {
        errors.invalid("type", "", &format!("has invalid value: {kind}"));
    }
    for field in ["firstTimestamp", "lastTimestamp"] {
        if !unset(event, &format!("/{field}")) {
            errors.invalid(field, "", "needs to be unset");
        }
    }
    if event.get("count").and_then(Value::as_i64).unwrap_or(0) != 0 {
        errors.invalid("count", "", "needs to be unset");
    }
    if !text(event, "/source/component").is_empty() || !text(event, "/source/host").is_empty() {
        errors.invalid("source", "", "needs to be unset");
    }
}

/// `ValidateEventUpdate` beyond the legacy checks: through events.k8s.io/v1 an Event changes
/// only its series (and metadata). `old` and `new` are in the stored form.
pub(super) fn validate_update(errors: &mut Errors, info: &ResourceInfo, old: &Value, new: &Value) {
    if !strict(info) {
        return;
    }
    if old.get("series") != new.get("series") {
        series(errors, new);
    }
    // (internal field path, core/v1 JSON name), in kube's order (reason twice, as there).
    const IMMUTABLE: &[(&str, &str)] = &[
        ("involvedObject", "involvedObject"),
        ("reason", "reason"),
        ("message", "message"),
        ("source", "source"),
        ("firstTimestamp", "firstTimestamp"),
        ("lastTimestamp", "lastTimestamp"),
        ("count", "count"),
        ("reason", "reason"),
        ("type", "type"),
        ("eventTime", "eventTime"),
        ("action", "action"),
        ("related", "related"),
        ("reportingController", "reportingComponent"),
        ("reportingInstance", "reportingInstance"),
    ];
    for (field, name) in IMMUTABLE {
        if !same(old.get(*name), new.get(*name)) {
            errors.immutable(field, new.get(*name));
        }
    }
}

#[cfg(test)]
mod tests;
