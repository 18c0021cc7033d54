//! The three-way JSON merge patch of client-side apply: what `apply` sends to turn the live
//! object into the one in the files, as kubectl's `jsonmergepatch.CreateThreeWayJSONMergePatch`
//! computes it from three objects:
//!
//! - *original*: the configuration the previous apply recorded in the
//!   `kubectl.kubernetes.io/last-applied-configuration` annotation (none on an object nobody
//!   applied);
//! - *modified*: the configuration being applied now (with its new annotation);
//! - *live*: the object as the server has it, with its defaults and everyone else's fields.
//!
//! The patch deletes (sets to null) what the original had and the modified no longer has, and
//! sets what the modified has and the live object lacks or holds differently. A field the
//! configuration never held (status, uid, a label another client added, a server default) is
//! in none of the three roles that reach the patch, so it is left alone.
//!
//! # Why JSON merge patch (RFC 7386) and not strategic merge patch
//!
//! A merge patch means the same for every kind, custom resources included, with nothing to
//! know about the kind; a strategic merge patch needs each field's merge key and strategy,
//! which exist only for the built-in kinds (kubectl itself falls back to merge patch for
//! custom resources). The price: a merge patch replaces a list whole. Where kubectl would
//! merge a list by its merge key (containers by `name`, ports by `containerPort`), an apply
//! here that changes such a list also drops the items another client added to it since.
//!
//! Because lists are replaced whole, comparing them naively would send every list again: the
//! server fills defaults into list items (a container's `terminationMessagePath`, a port's
//! `protocol`), so the live list never equals the configured one. A list therefore counts as
//! unchanged when the configuration's list is the one last applied and the live list
//! *contains* it: same length, and each configured item found in the live item at the same
//! place, objects compared on the configured item's keys only. A list edited in the files
//! (which differs from the last applied one) is always sent, so removing a field from a list
//! item takes effect even though the live item still contains the rest.
//!
//! The input is hostile: nesting is bounded by [`MAX_DEPTH`], past which the merge fails
//! instead of exhausting the stack.

use serde_json::{Map, Number, Value};

/// The deepest nesting the merge follows. Deeper than anything serde_json and serde_yaml_ng
/// parse (both stop at 128 levels), so only a value built in memory can reach it.
pub const MAX_DEPTH: usize = 160;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MergeError {
    #[error("the object nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("the {0} object is not a JSON object")]
    NotAnObject(&'static str),
}

/// The merge patch that turns `live` into `modified`, deleting what `original` (the last
/// applied configuration, if any) had and `modified` dropped. Empty when nothing would change.
pub fn three_way(
    original: Option<&Value>,
    modified: &Value,
    live: &Value,
) -> Result<Map<String, Value>, MergeError> {
    let modified = modified
        .as_object()
        .ok_or(MergeError::NotAnObject("applied"))?;
    let live = live.as_object().ok_or(MergeError::NotAnObject("live"))?;
    // A last-applied configuration that is not an object (hand-edited, or written by a broken
    // client) cannot say what was applied: nothing is deleted, as when there is none.
    let original = original.and_then(Value::as_object);
    diff(original, modified, live, 0)
}

fn diff(
    original: Option<&Map<String, Value>>,
    modified: &Map<String, Value>,
    live: &Map<String, Value>,
    depth: usize,
) -> Result<Map<String, Value>, MergeError> {
    if depth > MAX_DEPTH {
        return Err(MergeError::TooDeep);
    }
    let mut patch = Map::new();
    // Deletions: fields the last apply set that this one no longer does. A field already gone
    // from the live object needs no null.
    if let Some(original) = original {
        for key in original.keys() {
            if !modified.contains_key(key) && live.contains_key(key) {
                patch.insert(key.clone(), Value::Null);
            }
        }
    }
    for (key, wanted) in modified {
        let applied = original.and_then(|o| o.get(key));
        let current = live.get(key);
        match wanted {
            // An explicit null asks for the field to be removed; kubectl sends it unless the
            // last apply already held that null.
            Value::Null => {
                if !matches!(applied, Some(Value::Null)) && current.is_some_and(|c| !c.is_null()) {
                    patch.insert(key.clone(), Value::Null);
                }
            }
            Value::Object(wanted_map) => match current {
                Some(Value::Object(current_map)) => {
                    let nested = diff(
                        applied.and_then(Value::as_object),
                        wanted_map,
                        current_map,
                        depth + 1,
                    )?;
                    if !nested.is_empty() {
                        patch.insert(key.clone(), Value::Object(nested));
                    }
                }
                // Absent, or of another type: the whole map, whose nulls would delete nothing.
                _ => {
                    patch.insert(
                        key.clone(),
                        Value::Object(without_nulls(wanted_map, depth + 1)?),
                    );
                }
            },
            Value::Array(wanted_items) => {
                let edited = match applied {
                    Some(applied) => !same(applied, wanted, depth + 1)?,
                    None => false,
                };
                let in_place = match current {
                    Some(Value::Array(current_items)) => {
                        contained_items(wanted_items, current_items, depth + 1)?
                    }
                    _ => false,
                };
                if edited || !in_place {
                    patch.insert(key.clone(), wanted.clone());
                }
            }
            scalar => {
                if !current.is_some_and(|c| same_scalar(c, scalar)) {
                    patch.insert(key.clone(), scalar.clone());
                }
            }
        }
    }
    Ok(patch)
}

/// A map with its null fields dropped, recursively through maps (kubectl's
/// `keepOrDeleteNullInObj`); lists are kept as they are, being replaced whole.
fn without_nulls(map: &Map<String, Value>, depth: usize) -> Result<Map<String, Value>, MergeError> {
    if depth > MAX_DEPTH {
        return Err(MergeError::TooDeep);
    }
    let mut out = Map::new();
    for (key, value) in map {
        match value {
            Value::Null => {}
            Value::Object(inner) => {
                out.insert(key.clone(), Value::Object(without_nulls(inner, depth + 1)?));
            }
            other => {
                out.insert(key.clone(), other.clone());
            }
        }
    }
    Ok(out)
}

/// Whether `wanted` is found in `current`: scalars equal, lists of the same length holding
/// the wanted items in order, maps holding every wanted key (a wanted null: the key absent
/// or null) with a value that contains the wanted one. Extra keys in `current` are what the
/// server or others added.
fn contained(wanted: &Value, current: &Value, depth: usize) -> Result<bool, MergeError> {
    if depth > MAX_DEPTH {
        return Err(MergeError::TooDeep);
    }
    match (wanted, current) {
        (Value::Object(wanted), Value::Object(current)) => {
            for (key, value) in wanted {
                let found = match (value, current.get(key)) {
                    (Value::Null, None | Some(Value::Null)) => true,
                    (_, None) => false,
                    (value, Some(current)) => contained(value, current, depth + 1)?,
                };
                if !found {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        (Value::Array(wanted), Value::Array(current)) => contained_items(wanted, current, depth),
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => {
            Ok(false)
        }
        (wanted, current) => Ok(same_scalar(wanted, current)),
    }
}

fn contained_items(wanted: &[Value], current: &[Value], depth: usize) -> Result<bool, MergeError> {
    if wanted.len() != current.len() {
        return Ok(false);
    }
    for (w, c) in wanted.iter().zip(current) {
        if !contained(w, c, depth + 1)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Deep equality, numbers compared by value (`1` and `1.0` are the same number, as they are
/// once Go decodes them).
fn same(a: &Value, b: &Value, depth: usize) -> Result<bool, MergeError> {
    if depth > MAX_DEPTH {
        return Err(MergeError::TooDeep);
    }
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            if a.len() != b.len() {
                return Ok(false);
            }
            for (key, value) in a {
                match b.get(key) {
                    Some(other) if same(value, other, depth + 1)? => {}
                    _ => return Ok(false),
                }
            }
            Ok(true)
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Ok(false);
            }
            for (x, y) in a.iter().zip(b) {
                if !same(x, y, depth + 1)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        (a, b) => Ok(same_scalar(a, b)),
    }
}

fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => same_number(a, b),
        (a, b) => a == b,
    }
}

fn same_number(a: &Number, b: &Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(original: Option<Value>, modified: Value, live: Value) -> Value {
        Value::Object(three_way(original.as_ref(), &modified, &live).expect("a patch"))
    }

    #[test]
    fn the_same_configuration_again_patches_nothing() {
        let config = json!({"kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}});
        let mut live = config.clone();
        live["metadata"]["uid"] = json!("u1");
        live["metadata"]["resourceVersion"] = json!("7");
        assert_eq!(patch(Some(config.clone()), config, live), json!({}));
    }

    #[test]
    fn fields_dropped_from_the_configuration_are_deleted_recursively() {
        let original =
            json!({"data": {"a": "1", "b": "2"}, "metadata": {"labels": {"x": "1", "y": "2"}}});
        let modified = json!({"data": {"a": "10"}, "metadata": {"labels": {"x": "1"}}});
        let live = json!({"data": {"a": "1", "b": "2"},
                          "metadata": {"labels": {"x": "1", "y": "2", "other": "kept"}, "uid": "u"}});
        assert_eq!(
            patch(Some(original), modified, live),
            json!({"data": {"a": "10", "b": null}, "metadata": {"labels": {"y": null}}})
        );
    }

    #[test]
    fn a_whole_map_dropped_is_one_null_and_a_field_gone_already_needs_none() {
        let original = json!({"spec": {"a": 1}, "extra": {"x": 1}, "gone": 1});
        let modified = json!({"spec": {"a": 1}});
        let live = json!({"spec": {"a": 1}, "extra": {"x": 1, "defaulted": 2}});
        assert_eq!(
            patch(Some(original), modified, live),
            json!({"extra": null})
        );
    }

    #[test]
    fn what_the_server_or_others_set_is_left_alone() {
        let config =
            json!({"metadata": {"name": "a", "labels": {"app": "web"}}, "spec": {"replicas": 3}});
        let live = json!({
            "metadata": {"name": "a", "uid": "u", "labels": {"app": "web", "team": "other"}},
            "spec": {"replicas": 3, "revisionHistoryLimit": 10},
            "status": {"readyReplicas": 3},
        });
        assert_eq!(
            patch(Some(config.clone()), config.clone(), live.clone()),
            json!({})
        );
        // Nobody applied it before: the same, without deletions to find.
        assert_eq!(patch(None, config, live), json!({}));
    }

    #[test]
    fn changes_and_additions_are_sent_and_without_an_original_nothing_is_deleted() {
        let modified = json!({"spec": {"replicas": 2, "paused": true}, "data": {"new": "x"}});
        let live = json!({"spec": {"replicas": 3, "minReadySeconds": 5}, "other": 1});
        assert_eq!(
            patch(None, modified, live),
            json!({"spec": {"replicas": 2, "paused": true}, "data": {"new": "x"}})
        );
    }

    #[test]
    fn a_map_the_live_object_lacks_is_sent_whole_without_its_nulls() {
        let modified =
            json!({"spec": {"selector": {"a": "1", "b": null, "deep": {"c": null, "d": 1}}}});
        let live = json!({"spec": {"selector": "was a string"}});
        assert_eq!(
            patch(None, modified, live),
            json!({"spec": {"selector": {"a": "1", "deep": {"d": 1}}}})
        );
    }

    #[test]
    fn lists_with_server_defaults_in_their_items_are_unchanged() {
        let config = json!({"spec": {"containers": [
            {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]},
        ]}});
        let live = json!({"spec": {"containers": [
            {"name": "web", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent",
             "terminationMessagePath": "/dev/termination-log",
             "ports": [{"containerPort": 80, "protocol": "TCP"}]},
        ]}});
        assert_eq!(
            patch(Some(config.clone()), config.clone(), live.clone()),
            json!({})
        );
        assert_eq!(patch(None, config, live), json!({}));
    }

    #[test]
    fn lists_not_contained_in_the_live_list_are_sent_whole() {
        let config = json!({"spec": {"args": ["a", "b"], "ports": [{"port": 80}]}});
        for live in [
            json!({"spec": {"args": ["a"], "ports": [{"port": 80}]}}),
            json!({"spec": {"args": ["a", "c"], "ports": [{"port": 80}]}}),
            json!({"spec": {"args": ["a", "b", "c"], "ports": [{"port": 80}]}}),
            json!({"spec": {"args": "a b", "ports": [{"port": 80}]}}),
            json!({"spec": {"ports": [{"port": 80}]}}),
        ] {
            assert_eq!(
                patch(Some(config.clone()), config.clone(), live.clone()),
                json!({"spec": {"args": ["a", "b"]}}),
                "{live}"
            );
        }
        let live =
            json!({"spec": {"args": ["a", "b"], "ports": [{"port": 81, "protocol": "TCP"}]}});
        assert_eq!(
            patch(None, config, live),
            json!({"spec": {"ports": [{"port": 80}]}})
        );
    }

    #[test]
    fn a_list_edited_since_the_last_apply_is_sent_even_when_the_live_one_contains_it() {
        // A field removed from a list item: the live item still contains the rest, but the
        // configuration changed, so the list goes out and the field is gone.
        let original = json!({"env": [{"name": "A", "value": "1"}]});
        let modified = json!({"env": [{"name": "A"}]});
        let live = json!({"env": [{"name": "A", "value": "1"}]});
        assert_eq!(
            patch(Some(original), modified, live),
            json!({"env": [{"name": "A"}]})
        );
    }

    #[test]
    fn nulls_in_the_configuration_delete_what_the_live_object_holds() {
        let modified = json!({"spec": {"a": null, "b": null, "c": null}});
        let live = json!({"spec": {"a": 1, "b": null}});
        // `a` is removed; `b` is already null and `c` absent: nothing to do for them.
        assert_eq!(
            patch(None, modified.clone(), live.clone()),
            json!({"spec": {"a": null}})
        );
        // The last apply held the same null: kubectl sends nothing for it.
        assert_eq!(patch(Some(modified.clone()), modified, live), json!({}));
        // A null inside a list item is contained by an item without the key.
        let config = json!({"items": [{"a": null, "b": 1}]});
        let live = json!({"items": [{"b": 1}]});
        assert_eq!(patch(Some(config.clone()), config, live), json!({}));
    }

    #[test]
    fn numbers_compare_by_value_and_types_by_kind() {
        let modified = json!({"a": 1.0, "b": 2, "c": "2", "d": true, "e": [1]});
        let live = json!({"a": 1, "b": 2.0, "c": 2, "d": "true", "e": [1.0]});
        assert_eq!(patch(None, modified, live), json!({"c": "2", "d": true}));
    }

    #[test]
    fn a_changed_annotation_is_carried_with_the_rest() {
        let annotation = "kubectl.kubernetes.io/last-applied-configuration";
        let modified = json!({"metadata": {"annotations": {annotation: "{\"new\":1}\n"}}});
        let live =
            json!({"metadata": {"annotations": {annotation: "{\"old\":1}\n", "other": "x"}}});
        assert_eq!(
            patch(None, modified, live),
            json!({"metadata": {"annotations": {annotation: "{\"new\":1}\n"}}})
        );
    }

    #[test]
    fn non_objects_are_refused() {
        assert_eq!(
            three_way(None, &json!([1]), &json!({})),
            Err(MergeError::NotAnObject("applied"))
        );
        assert_eq!(
            three_way(None, &json!({}), &json!("x")),
            Err(MergeError::NotAnObject("live"))
        );
        // A last-applied configuration that is not an object deletes nothing.
        assert_eq!(
            patch(
                Some(json!("garbage")),
                json!({"a": 1}),
                json!({"a": 1, "b": 2})
            ),
            json!({})
        );
    }

    /// `{"a": {"a": … {"a": leaf}}}`, `depth` maps deep, built without recursion.
    fn nested(depth: usize, leaf: Value) -> Value {
        let mut value = leaf;
        for _ in 0..depth {
            value = json!({ "a": value });
        }
        value
    }

    /// `[[…[leaf]…]]`, `depth` lists deep.
    fn nested_lists(depth: usize, leaf: Value) -> Value {
        let mut value = leaf;
        for _ in 0..depth {
            value = Value::Array(vec![value]);
        }
        value
    }

    #[test]
    fn hostile_nesting_fails_instead_of_exhausting_the_stack() {
        // Deep maps on every path the merge walks: into live maps, into a map sent whole,
        // through lists compared for containment and for equality.
        let deep = MAX_DEPTH + 50;
        let cases = [
            (None, nested(deep, json!(1)), nested(deep, json!(2))),
            (None, nested(deep, json!(1)), json!({})),
            (
                None,
                json!({"l": nested_lists(deep, json!(1))}),
                json!({"l": nested_lists(deep, json!(1))}),
            ),
            (
                Some(json!({"l": nested_lists(deep, json!(1))})),
                json!({"l": nested_lists(deep, json!(1))}),
                json!({}),
            ),
        ];
        for (original, modified, live) in cases {
            assert_eq!(
                three_way(original.as_ref(), &modified, &live),
                Err(MergeError::TooDeep)
            );
        }
        // Ordinary depths merge.
        let fine = nested(100, json!(1));
        assert_eq!(
            three_way(Some(&fine), &fine, &nested(100, json!(1))),
            Ok(Map::new())
        );
    }
}
