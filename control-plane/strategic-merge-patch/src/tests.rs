//! Behaviour of the merge. Refusals and random hostile input are in `tests/hostile.rs`,
//! apimachinery's own tables in `tests/apimachinery.rs`, the Kubernetes schemas in
//! `tests/kubernetes.rs`.

use std::sync::LazyLock;

use serde_json::{json, Value};

use crate::{apply, apply_owned, kubernetes, Field, Schema};

fn pod() -> &'static Schema {
    kubernetes::schema_for("", "Pod").expect("Pod is served")
}

fn merged(original: Value, patch: Value, schema: &Schema) -> Value {
    apply(&original, &patch, schema).unwrap_or_else(|error| panic!("patch refused: {error}"))
}

/// Whether any map key in `value` starts with `$`.
fn has_directive(value: &Value) -> bool {
    match value {
        Value::Object(map) => map
            .iter()
            .any(|(key, value)| key.starts_with('$') || has_directive(value)),
        Value::Array(items) => items.iter().any(has_directive),
        _ => false,
    }
}

// --- merging without a schema -------------------------------------------------------------

#[test]
fn null_in_patch_deletes_the_key() {
    let result = merged(
        json!({"a": 1, "b": {"c": 2, "d": 3}}),
        json!({"a": null, "b": {"d": null}}),
        Schema::empty(),
    );
    assert_eq!(result, json!({"b": {"c": 2}}));
}

#[test]
fn maps_merge_and_lists_replace_without_schema() {
    let result = merged(
        json!({"x": {"list": [1, 2], "keep": true, "deep": {"a": 1}}}),
        json!({"x": {"list": [3], "deep": {"b": 2}, "new": "n"}}),
        Schema::empty(),
    );
    assert_eq!(
        result,
        json!({"x": {"list": [3], "keep": true, "deep": {"a": 1, "b": 2}, "new": "n"}})
    );
}

#[test]
fn null_documents_count_as_empty_objects() {
    assert_eq!(
        merged(Value::Null, json!({"a": 1}), Schema::empty()),
        json!({"a": 1})
    );
    assert_eq!(
        merged(json!({"a": 1}), Value::Null, Schema::empty()),
        json!({"a": 1})
    );
    let owned = apply_owned(json!({"a": 1}), &json!({"b": 2}), Schema::empty()).expect("merges");
    assert_eq!(owned, json!({"a": 1, "b": 2}));
}

#[test]
fn map_directive_replace_and_delete() {
    let original = json!({"spec": {"a": 1, "b": {"c": 2}}, "keep": 1});
    let replaced = merged(
        original.clone(),
        json!({"spec": {"$patch": "replace", "d": 4, "e": null}}),
        Schema::empty(),
    );
    assert_eq!(replaced, json!({"spec": {"d": 4}, "keep": 1}));
    let deleted = merged(
        original.clone(),
        json!({"spec": {"$patch": "delete"}}),
        Schema::empty(),
    );
    assert_eq!(deleted, json!({"spec": {}, "keep": 1}));
    assert_eq!(
        merged(
            original,
            json!({"$patch": "replace", "x": 1}),
            Schema::empty()
        ),
        json!({"x": 1})
    );
}

#[test]
fn patch_directives_never_reach_the_result() {
    let patch = json!({"spec": {"fresh": {
        "$retainKeys": ["a", "l", "nested"],
        "a": 1,
        "$setElementOrder/l": [1],
        "l": [1],
        "$deleteFromPrimitiveList/l": [2],
        "gone": {"$patch": "delete"},
        "nested": [{"x": 1, "$patch": "delete"}, {"y": null, "z": 2}],
    }}});
    let result = merged(json!({"spec": {}}), patch, pod());
    assert_eq!(
        result,
        json!({"spec": {"fresh": {"a": 1, "l": [1], "nested": [{"z": 2}]}}})
    );
    assert!(!has_directive(&result));
}

#[test]
fn a_list_where_the_patch_has_a_map_is_replaced_as_go_does() {
    let result = merged(
        json!({"spec": {"containers": [{"name": "a"}]}}),
        json!({"spec": {"containers": {"name": "b"}}}),
        pod(),
    );
    assert_eq!(result, json!({"spec": {"containers": {"name": "b"}}}));
}

// --- schemas -------------------------------------------------------------------------------

static ITEM_FIELDS: &[(&str, Field)] = &[("ports", Field::merge_list("port"))];
static ITEM: Schema = Schema::new(ITEM_FIELDS);
static BY_NAME: Schema = Schema::map_values(&ITEM);
static HOLDER_FIELDS: &[(&str, Field)] = &[
    ("items", Field::object(&BY_NAME)),
    ("raw", Field::replace()),
];
static HOLDER: Schema = Schema::new(HOLDER_FIELDS);
static BUILT: LazyLock<Schema> = LazyLock::new(|| {
    [
        ("finalizers", Field::set()),
        ("owners", Field::merge_list("uid")),
    ]
    .into_iter()
    .collect()
});

#[test]
fn map_values_schema_applies_to_every_key() {
    let result = merged(
        json!({"items": {"x": {"ports": [{"port": 1, "p": "a"}]}}}),
        json!({"items": {"x": {"ports": [{"port": 2}]}, "y": {"ports": [{"port": 3}]}}}),
        &HOLDER,
    );
    // New elements come before the server's when no order is given, as in Go.
    assert_eq!(
        result,
        json!({"items": {"x": {"ports": [{"port": 2}, {"port": 1, "p": "a"}]}, "y": {"ports": [{"port": 3}]}}})
    );
}

#[test]
fn replace_strategy_replaces_a_map() {
    let result = merged(
        json!({"raw": {"a": 1}}),
        json!({"raw": {"b": 2, "c": null}}),
        &HOLDER,
    );
    assert_eq!(result, json!({"raw": {"b": 2}}));
}

#[test]
fn schemas_built_at_run_time_work() {
    let result = merged(
        json!({"finalizers": ["a"], "owners": [{"uid": "1", "n": 1}]}),
        json!({"finalizers": ["a", "b"], "owners": [{"uid": "1", "m": 2}]}),
        &BUILT,
    );
    assert_eq!(
        result,
        json!({"finalizers": ["a", "b"], "owners": [{"uid": "1", "n": 1, "m": 2}]})
    );
    assert!(BUILT
        .field("owners")
        .is_some_and(|field| field.merge_key == Some("uid")));
    assert!(Schema::empty().field("anything").is_none());
}

// --- list directives -----------------------------------------------------------------------

#[test]
fn primitive_set_union_and_delete() {
    let original = json!({"metadata": {"finalizers": ["a", "b"]}});
    let union = merged(
        original.clone(),
        json!({"metadata": {"finalizers": ["b", "c"]}}),
        pod(),
    );
    assert_eq!(union, json!({"metadata": {"finalizers": ["a", "b", "c"]}}));
    let deleted = merged(
        original,
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zzz"]}}),
        pod(),
    );
    assert_eq!(deleted, json!({"metadata": {"finalizers": ["b"]}}));
}

#[test]
fn set_element_order_reorders_primitives() {
    let result = merged(
        json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
        json!({"metadata": {"$setElementOrder/finalizers": ["c", "a", "b"]}}),
        pod(),
    );
    assert_eq!(result, json!({"metadata": {"finalizers": ["c", "a", "b"]}}));
}

#[test]
fn element_replace_directive_replaces_the_list() {
    let result = merged(
        json!({"spec": {"containers": [{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]}}),
        json!({"spec": {"containers": [{"name": "c", "image": "c"}, {"$patch": "replace"}]}}),
        pod(),
    );
    assert_eq!(
        result,
        json!({"spec": {"containers": [{"name": "c", "image": "c"}]}})
    );
}

#[test]
fn retain_keys_clears_other_fields() {
    let result = merged(
        json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}, "x": 1}]}}),
        json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/p"}, "emptyDir": null}]}}),
        pod(),
    );
    assert_eq!(
        result,
        json!({"spec": {"volumes": [{"name": "v", "hostPath": {"path": "/p"}}]}})
    );
}

#[test]
fn many_elements_merge_without_quadratic_cost() {
    let count = 5_000;
    let containers: Vec<Value> = (0..count)
        .map(|i| json!({"name": format!("c{i}"), "image": "x"}))
        .collect();
    let deletions: Vec<Value> = (0..count)
        .step_by(2)
        .map(|i| json!({"name": format!("c{i}"), "$patch": "delete"}))
        .collect();
    let order: Vec<Value> = (1..count)
        .step_by(2)
        .rev()
        .map(|i| json!({"name": format!("c{i}")}))
        .collect();
    let result = merged(
        json!({"spec": {"containers": containers}}),
        json!({"spec": {"containers": deletions, "$setElementOrder/containers": order}}),
        pod(),
    );
    let names: Vec<&str> = result["spec"]["containers"]
        .as_array()
        .map(|list| list.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names.len(), count / 2);
    assert_eq!(names.first().copied(), Some("c4999"));
    assert_eq!(names.last().copied(), Some("c1"));
}
