//! How apply treats each list and map, from the same Go struct tags strategic merge patch
//! reads: a list merged on a key is an associative list (`x-kubernetes-list-type: map`), a
//! merged list of primitives is a set, every other list is atomic (replaced whole, owned as
//! one field). Where Kubernetes' `listMapKeys` name more than the patch merge key, the table
//! below adds them.

use serde_json::{Map, Value};
use strategic_merge_patch::{Field, Schema, Strategy};

/// How a list's elements are told apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ListType {
    /// One value: applied and owned whole.
    Atomic,
    /// Primitives, each owned on its own (`metadata.finalizers`).
    Set,
    /// Objects told apart by these fields (`containers` by `name`).
    Map(Vec<&'static str>),
}

pub(crate) fn list_type(name: &str, field: Option<&Field>) -> ListType {
    // Merged on `ip` by strategic merge patch, but without a `+listType`: atomic to apply.
    if matches!(name, "podIPs" | "hostIPs") {
        return ListType::Atomic;
    }
    match field {
        Some(field) if matches!(field.strategy, Strategy::Merge | Strategy::MergeRetainKeys) => {
            match field.merge_key {
                Some(key) => ListType::Map(list_map_keys(name, key)),
                None => ListType::Set,
            }
        }
        _ => ListType::Atomic,
    }
}

/// Kubernetes' `+listMapKey`s where they are more than the `patchMergeKey`: two ports may share
/// a number with different protocols, two spread constraints a topology key.
fn list_map_keys(name: &str, key: &'static str) -> Vec<&'static str> {
    match (name, key) {
        ("ports", "containerPort") => vec!["containerPort", "protocol"],
        ("ports", "port") => vec!["port", "protocol"],
        ("topologySpreadConstraints", "topologyKey") => {
            vec!["topologyKey", "whenUnsatisfiable"]
        }
        _ => vec![key],
    }
}

/// A key field's value when an element leaves it out: the schema's default, which the API
/// server fills in later (ports are TCP unless they say otherwise).
pub(crate) fn key_default(key: &str) -> Option<Value> {
    (key == "protocol").then(|| Value::String("TCP".into()))
}

/// Maps Kubernetes marks `+mapType=atomic` / `+structType=atomic`, applied and owned whole:
/// selectors (a Service's and a pod's maps, every `LabelSelector`), and the references of env
/// vars and volumes that only make sense whole.
pub(crate) fn atomic_map(name: &str) -> bool {
    matches!(
        name,
        "selector"
            | "nodeSelector"
            | "labelSelector"
            | "namespaceSelector"
            | "podSelector"
            | "secretKeyRef"
            | "configMapKeyRef"
            | "fieldRef"
            | "resourceFieldRef"
    )
}

/// The schema of a field's value, or of its elements.
pub(crate) fn schema_of(field: Option<&Field>) -> Option<&'static Schema> {
    field.and_then(|field| field.schema)
}

/// The key of an associative list's element: each key field's value (or its default), in name
/// order, or the name of the first key field it lacks.
pub(crate) fn element_key<'k, S: AsRef<str>>(
    element: &Map<String, Value>,
    keys: &'k [S],
) -> Result<Vec<(&'k str, Value)>, &'k str> {
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let key = key.as_ref();
        match element
            .get(key)
            .filter(|v| !v.is_null())
            .cloned()
            .or_else(|| key_default(key))
        {
            Some(value) => out.push((key, value)),
            None => return Err(key),
        }
    }
    out.sort_by(|a, b| a.0.cmp(b.0));
    Ok(out)
}
