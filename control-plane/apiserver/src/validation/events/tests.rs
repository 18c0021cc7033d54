use serde_json::json;

use super::*;
use crate::resources::lookup;

fn causes(errors: &Errors) -> Vec<String> {
    errors
        .0
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect()
}

fn new_style() -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "e", "namespace": "team"},
        "regarding": {"kind": "Pod", "name": "web", "namespace": "team"},
        "eventTime": "2026-01-02T03:04:05.000000Z",
        "reportingController": "example.com/controller", "reportingInstance": "c-1",
        "action": "Scale", "reason": "Scaled", "type": "Normal", "note": "ok"
    })
}

fn create(info: &ResourceInfo, object: &Value) -> Vec<String> {
    let mut errors = Errors::default();
    let event = info.to_storage(object);
    validate(&mut errors, &event);
    validate_create(&mut errors, info, &event);
    causes(&errors)
}

#[test]
fn a_complete_events_v1_event_passes_both_rule_sets() {
    let events = lookup("events.k8s.io", "v1", "events").expect("served");
    assert_eq!(create(events, &new_style()), Vec::<String>::new());
}

#[test]
fn an_events_v1_event_without_its_reporter_is_refused_with_kubes_paths() {
    let events = lookup("events.k8s.io", "v1", "events").expect("served");
    let mut event = new_style();
    event
        .as_object_mut()
        .map(|m| m.remove("reportingController"));
    let found = create(events, &event);
    assert_eq!(found[0], "reportingController: Required value");
    assert!(
        found
            .iter()
            .skip(1)
            .all(|c| c.starts_with("reportingController: Invalid value: \"\"")),
        "{found:?}"
    );

    let found = create(
        events,
        &json!({"metadata": {"name": "e", "namespace": "team"}}),
    );
    for expected in [
        "eventTime: Required value",
        "type: Invalid value: \"\": has invalid value: ",
        "involvedObject.namespace: Invalid value: \"\": does not match event.namespace",
    ] {
        assert!(
            found.iter().any(|c| c == expected),
            "{expected} not in {found:?}"
        );
    }
}

#[test]
fn limits_and_deprecated_fields_of_the_strict_version() {
    let events = lookup("events.k8s.io", "v1", "events").expect("served");
    let mut event = new_style();
    event["note"] = json!("n".repeat(1025));
    event["action"] = json!("a".repeat(129));
    event["deprecatedCount"] = json!(3);
    event["deprecatedSource"] = json!({"component": "x"});
    event["deprecatedFirstTimestamp"] = json!("2026-01-02T03:04:05Z");
    event["series"] = json!({"count": 1});
    let found = create(events, &event);
    for expected in [
        "message: Invalid value: \"\": can have at most 1024 characters",
        "action: Invalid value: \"\": can have at most 128 characters",
        "count: Invalid value: \"\": needs to be unset",
        "source: Invalid value: \"\": needs to be unset",
        "firstTimestamp: Invalid value: \"\": needs to be unset",
        "series.count: Invalid value: \"\": should be at least 2",
        "series.lastObservedTime: Required value",
    ] {
        assert!(
            found.iter().any(|c| c == expected),
            "{expected} not in {found:?}"
        );
    }
    // A note of exactly 1 KiB is fine.
    let mut event = new_style();
    event["note"] = json!("n".repeat(1024));
    assert_eq!(create(events, &event), Vec::<String>::new());
}

#[test]
fn core_v1_keeps_the_loose_rules_of_old_style_events() {
    let core = lookup("", "v1", "events").expect("served");
    let old_style = json!({
        "metadata": {"name": "n.1", "namespace": "default"},
        "involvedObject": {"kind": "Node", "name": "n1"},
        "message": "m".repeat(4096), "count": 3, "source": {"component": "kubelet"}
    });
    assert_eq!(create(core, &old_style), Vec::<String>::new());
    let mut elsewhere = old_style.clone();
    elsewhere["involvedObject"]["namespace"] = json!("other");
    assert_eq!(
        create(core, &elsewhere),
        vec!["involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"]
    );
    // A new-style Event through core/v1 still names its reporter.
    let mut new = old_style;
    new["eventTime"] = json!("2026-01-02T03:04:05.000000Z");
    assert!(create(core, &new)
        .iter()
        .any(|c| c == "reportingController: Required value"));
}

#[test]
fn an_events_v1_update_may_change_only_the_series() {
    let events = lookup("events.k8s.io", "v1", "events").expect("served");
    let old = new_style();
    let mut new = old.clone();
    new["series"] = json!({"count": 2, "lastObservedTime": "2026-01-02T03:05:05.000000Z"});
    let mut errors = Errors::default();
    validate_update(
        &mut errors,
        events,
        &events.to_storage(&old),
        &events.to_storage(&new),
    );
    assert_eq!(causes(&errors), Vec::<String>::new());
    new["note"] = json!("changed");
    new["reportingController"] = json!("other");
    let mut errors = Errors::default();
    validate_update(
        &mut errors,
        events,
        &events.to_storage(&old),
        &events.to_storage(&new),
    );
    let found = causes(&errors);
    assert!(
        found
            .iter()
            .any(|c| c.starts_with("message: Invalid value: \"changed\"")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|c| c.starts_with("reportingController: ")),
        "{found:?}"
    );
    // Through core/v1 the same change is allowed.
    let core = lookup("", "v1", "events").expect("served");
    let mut errors = Errors::default();
    validate_update(
        &mut errors,
        core,
        &events.to_storage(&old),
        &events.to_storage(&new),
    );
    assert!(errors.0.is_empty());
}
