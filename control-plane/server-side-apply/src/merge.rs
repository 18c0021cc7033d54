//! The apply merge (structured-merge-diff's `merge`): the configuration's values win; maps
//! merge key by key, associative lists element by element on their keys, sets by value, and
//! atomic values are replaced. Then what a manager stopped applying is taken out.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};
use strategic_merge_patch::{Field, Schema};

use crate::fields::tracked;
use crate::path;
use crate::schema::{atomic_map, list_type, schema_of, ListType};
use crate::set::FieldSet;
use crate::Scope;

/// `live` with `config` applied over it, within `scope` (fields out of scope keep their live
/// values; `apiVersion` and `kind` are the configuration's).
pub(crate) fn merge_object(
    live: &Value,
    config: &Value,
    schema: &'static Schema,
    scope: Scope,
) -> Value {
    let mut out = live.as_object().cloned().unwrap_or_default();
    if let Some(config) = config.as_object() {
        for (name, value) in config {
            if value.is_null() {
                continue;
            }
            let in_scope = tracked(scope, name)
                || matches!(name.as_str(), "apiVersion" | "kind")
                // Preconditions and the name ride along in metadata whatever the scope.
                || name == "metadata";
            if !in_scope {
                continue;
            }
            let field = schema.field(name);
            let merged = match out.get(name) {
                Some(live) => merge(name, live, value, field),
                None => without_nulls(value),
            };
            out.insert(name.clone(), merged);
        }
    }
    Value::Object(out)
}

fn merge(name: &str, live: &Value, config: &Value, field: Option<&Field>) -> Value {
    match (live, config) {
        (Value::Object(live), Value::Object(config)) if !atomic_map(name) => {
            Value::Object(merge_map(live, config, schema_of(field)))
        }
        (Value::Array(live), Value::Array(items)) => match list_type(name, field) {
            ListType::Map(keys) => merge_associative(live, items, &keys, field),
            ListType::Set => {
                // By each value's spelling: a long set merges in one pass.
                let mut out = live.clone();
                let mut present: HashSet<String> = out.iter().map(path::value).collect();
                for item in items {
                    if present.insert(path::value(item)) {
                        out.push(without_nulls(item));
                    }
                }
                Value::Array(out)
            }
            ListType::Atomic => without_nulls(config),
        },
        _ => without_nulls(config),
    }
}

fn merge_map(
    live: &Map<String, Value>,
    config: &Map<String, Value>,
    schema: Option<&'static Schema>,
) -> Map<String, Value> {
    let mut out = live.clone();
    for (name, value) in config {
        if value.is_null() {
            continue;
        }
        let field = schema.and_then(|s| s.field(name));
        let merged = match out.get(name) {
            Some(live) => merge(name, live, value, field),
            None => without_nulls(value),
        };
        out.insert(name.clone(), merged);
    }
    out
}

/// Elements the configuration names merge into the live element with the same key, in place;
/// new ones are appended in the configuration's order. Elements are found by their key's
/// spelling in a map, so a list of n elements costs O(n), not O(n²).
fn merge_associative(
    live: &[Value],
    config: &[Value],
    keys: &[&'static str],
    field: Option<&Field>,
) -> Value {
    let mut out: Vec<Value> = live.to_vec();
    let key_of = |item: &Value| path::element_of(item, Some(keys));
    let mut at: HashMap<String, usize> = HashMap::with_capacity(out.len());
    for (position, item) in out.iter().enumerate() {
        if let Some(key) = key_of(item) {
            at.entry(key).or_insert(position);
        }
    }
    for item in config {
        let found = key_of(item).and_then(|key| match at.get(&key) {
            Some(position) => Some(*position),
            None => {
                at.insert(key, out.len());
                None
            }
        });
        match (found, item) {
            (Some(position), Value::Object(config)) => {
                let merged = match &out[position] {
                    Value::Object(live) => merge_map(live, config, schema_of(field)),
                    _ => config.clone(),
                };
                out[position] = Value::Object(merged);
            }
            _ => out.push(without_nulls(item)),
        }
    }
    Value::Array(out)
}

/// A configuration's value without its `null`s: in an apply configuration a null sets
/// nothing.
pub(crate) fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Takes every member of `set` out of `value`: a field, or a whole element of a list. The
/// elements of one list are matched against the set once, by their spelling.
pub(crate) fn remove(value: &mut Value, set: &FieldSet) {
    match value {
        Value::Object(map) => {
            for (element, child) in &set.children {
                let Some(name) = element.strip_prefix("f:") else {
                    continue;
                };
                if child.member {
                    map.remove(name);
                } else if let Some(inner) = map.get_mut(name) {
                    // A map or list emptied by the removal goes with it, as in kube.
                    let had_content = !is_empty(inner);
                    remove(inner, child);
                    if had_content && is_empty(inner) {
                        map.remove(name);
                    }
                }
            }
        }
        Value::Array(items) => {
            let names = path::key_names(set.children.keys());
            items.retain_mut(|item| {
                let Some(element) = path::element_of(item, names.as_deref()) else {
                    return true;
                };
                match set.children.get(&element) {
                    Some(child) if child.member => false,
                    Some(child) => {
                        remove(item, child);
                        true
                    }
                    None => true,
                }
            });
        }
        _ => {}
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}
