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
                // A set's element is its value: one in both lists is the same, whole.
                let key = |item: &Value| Some(path::value(item));
                Value::Array(merge_in_order(live, items, key, |_, item| {
                    without_nulls(item)
                }))
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

/// Elements the configuration names merge into the live element with the same key; the
/// order is [`merge_in_order`]'s.
fn merge_associative(
    live: &[Value],
    config: &[Value],
    keys: &[&'static str],
    field: Option<&Field>,
) -> Value {
    let key = |item: &Value| path::element_of(item, Some(keys));
    Value::Array(merge_in_order(live, config, key, |live, item| {
        match (live, item) {
            (Some(Value::Object(live)), Value::Object(config)) => {
                Value::Object(merge_map(live, config, schema_of(field)))
            }
            (Some(_), Value::Object(config)) => Value::Object(config.clone()),
            _ => without_nulls(item),
        }
    }))
}

/// The merged elements of a keyed list (an associative list or a set) in structured-merge-diff's
/// order: the configuration's elements in the configuration's order, shared ones included, and
/// each element only the live list has where the walk over the live list meets it. Applying
/// `[b, a]` over `[a, x, b]` gives `[x, b, a]` (x is met before b); a new element lands where
/// the configuration puts it, which matters for env, where `$(VAR)` sees only the variables
/// before it.
///
/// `merge(live, config)` makes one element: `live` is the live element with the same key, if
/// any. A live element without a key, or with a key an earlier live element already has, stays
/// where it is. Elements are found by their key's spelling in maps: O(n) for n elements.
fn merge_in_order(
    live: &[Value],
    config: &[Value],
    key_of: impl Fn(&Value) -> Option<String>,
    merge: impl Fn(Option<&Value>, &Value) -> Value,
) -> Vec<Value> {
    let live_keys: Vec<Option<String>> = live.iter().map(&key_of).collect();
    let config_keys: Vec<Option<String>> = config.iter().map(&key_of).collect();
    let mut live_at: HashMap<&str, usize> = HashMap::with_capacity(live.len());
    for (position, key) in live_keys.iter().enumerate() {
        if let Some(key) = key {
            live_at.entry(key.as_str()).or_insert(position);
        }
    }
    let configured: HashSet<&str> = config_keys.iter().flatten().map(String::as_str).collect();
    // The live element at `position` is also configured (its first occurrence only).
    let shared_at = |position: usize| -> Option<&str> {
        let key = live_keys[position].as_deref()?;
        (configured.contains(key) && live_at.get(key) == Some(&position)).then_some(key)
    };
    // The shared elements in the configuration's order: the next one the walk may emit.
    let mut shared = config_keys
        .iter()
        .flatten()
        .map(String::as_str)
        .filter(|key| live_at.contains_key(key))
        .peekable();
    let mut emitted = vec![false; live.len()];
    let mut out = Vec::with_capacity(live.len().max(config.len()));
    let (mut l, mut r) = (0, 0);
    while l < live.len() || r < config.len() {
        if l < live.len() {
            match shared_at(l) {
                Some(key) if r < config.len() && config_keys[r].as_deref() == Some(key) => {
                    out.push(merge(Some(&live[l]), &config[r]));
                    emitted[l] = true;
                    (l, r) = (l + 1, r + 1);
                    if shared.peek() == Some(&key) {
                        shared.next();
                    }
                    continue;
                }
                // Emitted already, or its turn comes later in the configuration's order.
                Some(key) if emitted[l] || shared.peek() != Some(&key) => {
                    l += 1;
                    continue;
                }
                // The next shared element: the configuration's elements before it go first.
                Some(_) => {}
                None => {
                    out.push(live[l].clone());
                    l += 1;
                    continue;
                }
            }
        }
        if r < config.len() {
            let position = config_keys[r]
                .as_deref()
                .and_then(|key| live_at.get(key).copied());
            if let Some(position) = position {
                emitted[position] = true;
            }
            out.push(merge(position.map(|p| &live[p]), &config[r]));
            if let (Some(key), Some(next)) = (config_keys[r].as_deref(), shared.peek()) {
                if *next == key {
                    shared.next();
                }
            }
            r += 1;
        } else {
            // Only shared live elements are left, and their configured copies are out.
            l += 1;
        }
    }
    out
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
