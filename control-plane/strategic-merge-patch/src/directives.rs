//! The patch directives: recognising their keys, `$retainKeys`, and stripping directives from
//! values that are taken into the result without a merge.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::error::{check_depth, Error};
use crate::path::Path;

/// `$patch: replace | delete` in a map, or in an element of a merging list.
pub(crate) const PATCH: &str = "$patch";
pub(crate) const REPLACE: &str = "replace";
pub(crate) const DELETE: &str = "delete";
/// Valid only as a struct tag; apimachinery refuses it in a patch.
pub(crate) const MERGE: &str = "merge";
pub(crate) const RETAIN_KEYS: &str = "$retainKeys";
pub(crate) const SET_ELEMENT_ORDER: &str = "$setElementOrder";
pub(crate) const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// What a key of a patch map is.
pub(crate) enum KeyKind<'k> {
    /// An ordinary field.
    Field,
    /// `$patch`.
    Patch,
    /// `$retainKeys`.
    RetainKeys,
    /// `$setElementOrder/<field>`, with the field.
    SetElementOrder(&'k str),
    /// `$deleteFromPrimitiveList/<field>`, with the field.
    DeleteFromPrimitiveList(&'k str),
}

/// Classifies a patch key. As in apimachinery, any key starting with one of the list directive
/// prefixes must be that directive, well formed; `$retainKeys` and `$patch` match exactly.
pub(crate) fn classify<'k>(key: &'k str, path: &Path<'_>) -> Result<KeyKind<'k>, Error> {
    if key == PATCH {
        return Ok(KeyKind::Patch);
    }
    if key == RETAIN_KEYS {
        return Ok(KeyKind::RetainKeys);
    }
    if key.starts_with(SET_ELEMENT_ORDER) {
        return directive_field(key, SET_ELEMENT_ORDER, path).map(KeyKind::SetElementOrder);
    }
    if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
        return directive_field(key, DELETE_FROM_PRIMITIVE_LIST, path)
            .map(KeyKind::DeleteFromPrimitiveList);
    }
    Ok(KeyKind::Field)
}

fn directive_field<'k>(
    key: &'k str,
    prefix: &'static str,
    path: &Path<'_>,
) -> Result<&'k str, Error> {
    match key
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('/'))
    {
        Some(field) if !field.is_empty() => Ok(field),
        _ => Err(Error::MalformedDirectiveKey {
            path: path.render(),
            key: key.to_owned(),
            prefix,
        }),
    }
}

/// Whether a key is a directive rather than data, however malformed.
pub(crate) fn is_directive_key(key: &str) -> bool {
    key == PATCH
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// Applies `$retainKeys`: clears the fields of `original` that the list does not name, after
/// checking that the patch itself sets no field outside the list (apimachinery's check: a null
/// or a list directive does not count as setting a field).
pub(crate) fn apply_retain_keys(
    original: &mut Map<String, Value>,
    directive: &Value,
    patch: &Map<String, Value>,
    path: &Path<'_>,
) -> Result<(), Error> {
    let Value::Array(names) = directive else {
        return Err(Error::RetainKeysNotAList {
            path: path.render(),
        });
    };
    let mut retained: HashSet<&str> = HashSet::with_capacity(names.len());
    for name in names {
        match name.as_str() {
            Some(name) => {
                retained.insert(name);
            }
            None => {
                return Err(Error::RetainKeysNotAList {
                    path: path.render(),
                })
            }
        }
    }
    for (key, value) in patch {
        let exempt = key == RETAIN_KEYS
            || value.is_null()
            || key.starts_with(SET_ELEMENT_ORDER)
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST);
        if !exempt && !retained.contains(key.as_str()) {
            return Err(Error::RetainKeysMismatch {
                path: path.render(),
                field: key.clone(),
            });
        }
    }
    original.retain(|key, _| retained.contains(key.as_str()));
    Ok(())
}

/// A patch value taken into the result as it is (a new field, a replaced list or map, a new
/// list element), with the directives it carries removed, as apimachinery's `removeDirectives`
/// and `discardNullValuesFromPatch` do, so that no directive reaches the stored object:
///
/// - a map carrying `$patch: replace` or `$patch: delete` is dropped whole (`None`), as is an
///   element of a list that is such a map;
/// - any other `$patch` value is refused;
/// - keys naming list directives or `$retainKeys` are dropped (apimachinery leaves them in);
/// - null map values are dropped (a null means "absent"); null list elements are kept.
pub(crate) fn clean_value(value: &Value, path: &Path<'_>) -> Result<Option<Value>, Error> {
    check_depth(path)?;
    match value {
        Value::Object(map) => Ok(clean_map(map, path)?.map(Value::Object)),
        Value::Array(items) => Ok(Some(Value::Array(clean_list(items, path)?))),
        other => Ok(Some(other.clone())),
    }
}

/// [`clean_value`] for a map.
pub(crate) fn clean_map(
    map: &Map<String, Value>,
    path: &Path<'_>,
) -> Result<Option<Map<String, Value>>, Error> {
    if let Some(directive) = map.get(PATCH) {
        return match directive.as_str() {
            Some(REPLACE | DELETE) => Ok(None),
            _ => Err(Error::unknown_patch_type(path, directive, map)),
        };
    }
    clean_entries(map, path).map(Some)
}

/// The entries of a map, cleaned, ignoring any `$patch` key of the map itself.
pub(crate) fn clean_entries(
    map: &Map<String, Value>,
    path: &Path<'_>,
) -> Result<Map<String, Value>, Error> {
    let mut out = Map::new();
    for (key, value) in map {
        if value.is_null() || is_directive_key(key) {
            continue;
        }
        if let Some(value) = clean_value(value, &path.key(key))? {
            out.insert(key.clone(), value);
        }
    }
    Ok(out)
}

/// [`clean_value`] for the elements of a list.
pub(crate) fn clean_list(items: &[Value], path: &Path<'_>) -> Result<Vec<Value>, Error> {
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        if let Some(item) = clean_value(item, &path.index(index))? {
            out.push(item);
        }
    }
    Ok(out)
}
