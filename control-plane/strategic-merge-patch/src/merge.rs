//! Merging a patch map into an object map: apimachinery's `mergeMap` with the options the API
//! server uses (`MergeParallelList` and `IgnoreUnmatchedNulls` both on).

use std::collections::HashSet;
use std::mem;

use serde_json::{Map, Value};

use crate::directives::{
    apply_retain_keys, classify, clean_entries, clean_list, clean_value, KeyKind, DELETE, PATCH,
    REPLACE, RETAIN_KEYS,
};
use crate::error::{check_depth, Error};
mod list;

use crate::order::{
    element_kind, ident, normalize, order_idents, partition, validate_order, ElemKind,
};
use crate::path::Path;
use crate::schema::{Field, Schema};
use list::merge_list;

type Object = Map<String, Value>;

/// The schema of a field's value (or elements); an undeclared field knows nothing.
pub(crate) fn sub_schema(field: Option<&Field>) -> &'static Schema {
    field
        .and_then(|field| field.schema)
        .unwrap_or_else(Schema::empty)
}

/// Merges `patch` into `original`, in apimachinery's order: a `$patch` directive of the map
/// itself, then `$retainKeys`, then each `$setElementOrder` list with its list, then the other
/// keys.
pub(crate) fn merge_map(
    mut original: Object,
    patch: &Object,
    schema: &Schema,
    path: &Path<'_>,
) -> Result<Object, Error> {
    check_depth(path)?;
    if let Some(directive) = patch.get(PATCH) {
        return match directive.as_str() {
            Some(REPLACE) => clean_entries(patch, path),
            Some(DELETE) => Ok(Object::new()),
            // `merge` included: apimachinery accepts it only as a struct tag.
            _ => Err(Error::unknown_patch_type(path, directive, patch)),
        };
    }

    if let Some(retain) = patch.get(RETAIN_KEYS) {
        apply_retain_keys(&mut original, retain, patch, path)?;
    }

    let mut ordered: HashSet<&str> = HashSet::new();
    for (key, value) in patch {
        if let KeyKind::SetElementOrder(field) = classify(key, path)? {
            set_element_order(&mut original, patch, field, value, schema, path)?;
            ordered.insert(field);
        }
    }

    for (key, value) in patch {
        match classify(key, path)? {
            KeyKind::Field if !ordered.contains(key.as_str()) => {
                merge_field(&mut original, key, value, schema, path)?;
            }
            KeyKind::DeleteFromPrimitiveList(field) => {
                delete_from_primitive_list(&mut original, field, value, path)?;
            }
            KeyKind::Field | KeyKind::Patch | KeyKind::RetainKeys | KeyKind::SetElementOrder(_) => {
            }
        }
    }
    Ok(original)
}

/// One ordinary key of the patch.
fn merge_field(
    original: &mut Object,
    key: &str,
    patch_value: &Value,
    schema: &Schema,
    path: &Path<'_>,
) -> Result<(), Error> {
    if patch_value.is_null() {
        original.remove(key);
        return Ok(());
    }
    let here = path.key(key);
    let field = schema.field(key);
    if let Some(current) = original.get_mut(key) {
        match (current, patch_value) {
            (Value::Object(current), Value::Object(patch_map))
                if !field.is_some_and(|field| field.strategy.replaces_maps()) =>
            {
                let taken = mem::take(current);
                *current = merge_map(taken, patch_map, sub_schema(field), &here)?;
                return Ok(());
            }
            (Value::Array(current), Value::Array(patch_list))
                if field.is_some_and(|field| field.strategy.merges_lists()) =>
            {
                let taken = mem::take(current);
                *current = merge_list(taken, patch_list, field, &here)?.merged;
                return Ok(());
            }
            // Different JSON types, primitives, and replacing strategies: the patch wins.
            _ => {}
        }
    }
    match clean_value(patch_value, &here)? {
        Some(value) => {
            original.insert(key.to_owned(), value);
        }
        None => {
            original.remove(key);
        }
    }
    Ok(())
}

/// `$setElementOrder/<field>`: merges the field's patch list (if any) and orders the result.
/// The elements the order names come in its order; the server-only ones keep their relative
/// order and are interleaved by their positions in the live list.
fn set_element_order(
    original: &mut Object,
    patch: &Object,
    field_name: &str,
    order_value: &Value,
    schema: &Schema,
    path: &Path<'_>,
) -> Result<(), Error> {
    let Value::Array(order) = order_value else {
        return Err(Error::SetElementOrderNotAList {
            path: path.render(),
            field: field_name.to_owned(),
        });
    };
    let here = path.key(field_name);
    let field = schema.field(field_name);
    let key = field.and_then(|field| field.merge_key);

    let patch_list: Option<&Vec<Value>> = match patch.get(field_name) {
        None => None,
        Some(Value::Array(list)) => Some(list),
        Some(other) => return Err(Error::wrong_type(&here, "list", other)),
    };
    let current: Option<Vec<Value>> = match original.get_mut(field_name) {
        None => None,
        Some(Value::Array(list)) => Some(mem::take(list)),
        Some(other) => return Err(Error::wrong_type(&here, "list", other)),
    };
    validate_order(
        patch_list.map(Vec::as_slice).unwrap_or_default(),
        order,
        key,
        &here,
    )?;

    let kind = element_kind(
        current
            .iter()
            .flatten()
            .chain(patch_list.into_iter().flatten()),
        &here,
    )?;
    if kind == Some(ElemKind::Object) && key.is_none() {
        return Err(Error::NoMergeKey {
            path: here.render(),
        });
    }
    let (merged, server_order) = match (current, patch_list) {
        (None, None) => return Ok(()),
        (Some(list), None) => {
            let server_order = idents(&list, key);
            (list, server_order)
        }
        (None, Some(patch_list)) => (clean_list(patch_list, &here)?, Vec::new()),
        (Some(list), Some(patch_list)) => {
            if field.is_some_and(|field| field.strategy.merges_lists()) {
                let merge = merge_list(list, patch_list, field, &here)?;
                (merge.merged, merge.server_order)
            } else {
                let server_order = idents(&list, key);
                (clean_list(patch_list, &here)?, server_order)
            }
        }
    };
    if merged.is_empty() {
        // apimachinery refuses to order when both lists are empty ("no elements"); an empty
        // result needs no order.
        original.insert(field_name.to_owned(), Value::Array(merged));
        return Ok(());
    }

    let order_ids = order_idents(order, key, &here)?;
    let members: HashSet<Option<&Value>> = order_ids.iter().copied().collect();
    let (named, server_only) = partition(merged, &members, key, &here)?;
    let server_ids: Vec<Option<&Value>> = server_order.iter().map(Option::as_ref).collect();
    let result = normalize(named, server_only, &order_ids, &server_ids, key);
    original.insert(field_name.to_owned(), Value::Array(result));
    Ok(())
}

fn idents(list: &[Value], key: Option<&str>) -> Vec<Option<Value>> {
    list.iter().map(|item| ident(item, key).cloned()).collect()
}

/// `$deleteFromPrimitiveList/<field>`: removes every occurrence of the listed values. A field
/// that is absent or not a list is left alone, as apimachinery does.
fn delete_from_primitive_list(
    original: &mut Object,
    field_name: &str,
    value: &Value,
    path: &Path<'_>,
) -> Result<(), Error> {
    let Value::Array(doomed) = value else {
        return Err(Error::PrimitiveListNotAList {
            path: path.render(),
            field: field_name.to_owned(),
        });
    };
    let Some(Value::Array(current)) = original.get_mut(field_name) else {
        return Ok(());
    };
    let here = path.key(field_name);
    if element_kind(current.iter().chain(doomed), &here)? == Some(ElemKind::Object) {
        return Err(Error::PrimitiveListOfMaps {
            path: path.render(),
            field: field_name.to_owned(),
        });
    }
    let doomed: HashSet<&Value> = doomed.iter().collect();
    current.retain(|item| !doomed.contains(item));
    Ok(())
}
