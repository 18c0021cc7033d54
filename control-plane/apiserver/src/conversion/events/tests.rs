use k8s_openapi::api::{core, events};
use serde_json::json;

use super::*;

fn full_events_v1() -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web.1", "namespace": "team", "labels": {"a": "b"}},
        "regarding": {"kind": "Pod", "name": "web", "namespace": "team", "uid": "u-1",
                      "apiVersion": "v1", "resourceVersion": "7", "fieldPath": "spec.containers{c}"},
        "related": {"kind": "Node", "name": "n1"},
        "note": "pulled the image",
        "reason": "Pulled", "type": "Normal", "action": "Pull",
        "eventTime": "2026-01-02T03:04:05.123456Z",
        "series": {"count": 3, "lastObservedTime": "2026-01-02T03:05:05.000000Z"},
        "reportingController": "kubelet", "reportingInstance": "kubelet-n1",
        "deprecatedSource": {"component": "kubelet", "host": "n1"},
        "deprecatedFirstTimestamp": "2026-01-02T03:04:05Z",
        "deprecatedLastTimestamp": "2026-01-02T03:06:05Z",
        "deprecatedCount": 4
    })
}

#[test]
fn every_field_moves_to_its_core_name_and_back() {
    let original = full_events_v1();
    let core = to_core(&original);
    assert_eq!(core["apiVersion"], "v1");
    assert_eq!(core["involvedObject"], original["regarding"]);
    assert_eq!(core["message"], "pulled the image");
    assert_eq!(core["reportingComponent"], "kubelet");
    assert_eq!(core["reportingInstance"], "kubelet-n1");
    assert_eq!(
        core["source"],
        json!({"component": "kubelet", "host": "n1"})
    );
    assert_eq!(core["firstTimestamp"], "2026-01-02T03:04:05Z");
    assert_eq!(core["lastTimestamp"], "2026-01-02T03:06:05Z");
    assert_eq!(core["count"], 4);
    assert_eq!(core["series"], original["series"]);
    for gone in [
        "regarding",
        "note",
        "reportingController",
        "deprecatedCount",
    ] {
        assert!(core.get(gone).is_none(), "{gone} left in the core form");
    }
    // Both forms are what the typed clients read.
    serde_json::from_value::<core::v1::Event>(core.clone()).expect("a core/v1 Event");
    assert_eq!(from_core(&core), original);
}

#[test]
fn a_core_event_converts_and_comes_back_unchanged() {
    let core = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "n.1", "namespace": "default"},
        "involvedObject": {"kind": "Node", "name": "n1"},
        "message": "m", "reason": "NodeReady", "type": "Normal", "count": 2,
        "source": {"component": "node-controller"},
        "firstTimestamp": "2026-01-02T03:04:05Z", "lastTimestamp": "2026-01-02T03:04:06Z",
        "reportingComponent": "node-controller", "reportingInstance": ""
    });
    let served = from_core(&core);
    assert_eq!(served["apiVersion"], "events.k8s.io/v1");
    assert_eq!(served["regarding"]["kind"], "Node");
    assert_eq!(served["deprecatedCount"], 2);
    assert_eq!(served["deprecatedSource"]["component"], "node-controller");
    assert!(served.get("eventTime").is_none());
    serde_json::from_value::<events::v1::Event>(served.clone()).expect("an events/v1 Event");
    assert_eq!(to_core(&served), core);
}

#[test]
fn missing_fields_stay_missing_except_the_reference_core_requires() {
    let core = to_core(&json!({"metadata": {"name": "x"}}));
    assert_eq!(
        core,
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "x"}, "involvedObject": {}})
    );
    serde_json::from_value::<core::v1::Event>(core).expect("a core/v1 Event");
    let served = from_core(&json!({"metadata": {"name": "x"}, "series": {}}));
    assert_eq!(
        served["series"],
        json!({"count": 0, "lastObservedTime": null})
    );
}

#[test]
fn hostile_input_converts_without_panicking_and_keeps_what_it_was_given() {
    for value in [json!(null), json!(7), json!("Event"), json!([1, 2])] {
        assert_eq!(
            to_core(&value),
            json!({"apiVersion": "v1", "kind": "Event", "involvedObject": {}})
        );
        assert_eq!(
            from_core(&value),
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event"})
        );
    }
    // Wrong types move as they are: the decoder of the version refuses them by name.
    let core = to_core(&json!({"regarding": "Pod/web", "deprecatedCount": "many", "series": 3}));
    assert_eq!(core["involvedObject"], "Pod/web");
    assert_eq!(core["count"], "many");
    assert_eq!(from_core(&core)["series"], 3);
    // A huge note is not cut here (validation caps notes of new-style events at 1 KiB).
    let note = "x".repeat(1 << 20);
    assert_eq!(
        to_core(&json!({"note": note}))["message"]
            .as_str()
            .map(str::len),
        Some(1 << 20)
    );
    // Keys of the other version, or of neither, are not fields of the source: dropped.
    let core =
        to_core(&json!({"message": "sneaked", "involvedObject": {"kind": "Secret"}, "bogus": 1}));
    assert!(core.get("message").is_none());
    assert_eq!(core["involvedObject"], json!({}));
    assert!(core.get("bogus").is_none());
    let served = from_core(&json!({"note": "sneaked", "regarding": {}}));
    assert!(served.get("note").is_none() && served.get("regarding").is_none());
}

#[test]
fn field_labels_map_onto_the_core_field_set() {
    assert_eq!(field_label("regarding.kind"), "involvedObject.kind");
    assert_eq!(
        field_label("regarding.fieldPath"),
        "involvedObject.fieldPath"
    );
    assert_eq!(field_label("reportingController"), "reportingComponent");
    assert_eq!(field_label("source"), "source");
    assert_eq!(field_label("type"), "type");
    assert_eq!(field_label("metadata.name"), "metadata.name");
}
