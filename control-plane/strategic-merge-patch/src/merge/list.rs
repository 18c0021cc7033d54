//! Merging a list whose field has the `merge` strategy: primitives as an ordered set, maps
//! element by element on the merge key, with `$patch: delete | replace` elements.

use std::collections::{HashMap, HashSet};
use std::mem;

use serde_json::{Map, Value};

use super::{merge_map, sub_schema};
use crate::directives::{clean_map, DELETE, MERGE, PATCH, REPLACE};
use crate::error::{check_depth, Error};
use crate::order::{element_kind, ident, normalize, partition, ElemKind};
use crate::path::Path;
use crate::schema::{Field, Schema};

/// A merged list, and the order `$setElementOrder` must interleave server-only elements by.
pub(crate) struct ListMerge {
    pub(crate) merged: Vec<Value>,
    /// The identities apimachinery sees in the live list once the merge is done. Go deletes
    /// and appends in place in the slice it decoded, so for a list of maps this is the live
    /// list with deletions compacted, appended elements written over the freed tail, and stale
    /// copies after that; the expected results of apimachinery's own tests depend on it.
    pub(crate) server_order: Vec<Option<Value>>,
}

/// Merges `patch` into `original` for a field whose strategy merges lists.
pub(crate) fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    field: Option<&Field>,
    path: &Path<'_>,
) -> Result<ListMerge, Error> {
    check_depth(path)?;
    if original.is_empty() && patch.is_empty() {
        return Ok(ListMerge {
            merged: original,
            server_order: Vec::new(),
        });
    }
    let key = field.and_then(|field| field.merge_key);
    match element_kind(original.iter().chain(patch), path)? {
        Some(ElemKind::Object) => {
            let key = key.ok_or_else(|| Error::NoMergeKey {
                path: path.render(),
            })?;
            merge_object_list(original, patch, key, sub_schema(field), path)
        }
        _ => merge_primitive_list(original, patch, key, path),
    }
}

/// Union of two lists of primitives: duplicates collapse to one, the patch's elements take the
/// patch's order, the others keep the server's.
fn merge_primitive_list(
    original: Vec<Value>,
    patch: &[Value],
    key: Option<&'static str>,
    path: &Path<'_>,
) -> Result<ListMerge, Error> {
    let mut seen: HashSet<&Value> = HashSet::with_capacity(original.len() + patch.len());
    let mut union = Vec::with_capacity(original.len() + patch.len());
    for item in original.iter().chain(patch) {
        if seen.insert(item) {
            union.push(item.clone());
        }
    }
    // A merge key on a list of primitives makes the partition refuse the list, as Go does.
    let patch_order: Vec<Option<&Value>> = patch.iter().map(|item| ident(item, key)).collect();
    let members: HashSet<Option<&Value>> = patch_order.iter().copied().collect();
    let (patch_items, server_only) = partition(union, &members, key, path)?;
    let server_order: Vec<Option<&Value>> = original.iter().map(|item| ident(item, key)).collect();
    let merged = normalize(patch_items, server_only, &patch_order, &server_order, key);
    let server_order = server_order.into_iter().map(|id| id.cloned()).collect();
    Ok(ListMerge {
        merged,
        server_order,
    })
}

/// Merges lists of maps on `key`.
fn merge_object_list(
    original: Vec<Value>,
    patch: &[Value],
    key: &'static str,
    elements: &Schema,
    path: &Path<'_>,
) -> Result<ListMerge, Error> {
    // Directive elements first, as Go does: deletions apply to the live list before any merge,
    // and one `$patch: replace` element makes the rest of the patch list the whole result.
    let mut deletions: Vec<&Value> = Vec::new();
    let mut replace = false;
    let mut rest: Vec<(usize, &Value, &Map<String, Value>)> = Vec::with_capacity(patch.len());
    for (index, item) in patch.iter().enumerate() {
        let here = path.index(index);
        let Value::Object(map) = item else {
            return Err(Error::wrong_type(&here, "map", item));
        };
        let Some(directive) = map.get(PATCH) else {
            rest.push((index, item, map));
            continue;
        };
        match directive.as_str() {
            Some(DELETE) => deletions.push(patch_merge_key(map, item, key, &here)?),
            Some(REPLACE) => replace = true,
            Some(MERGE) => {
                return Err(Error::MergeDirectiveInList {
                    path: path.render(),
                })
            }
            _ => return Err(Error::unknown_patch_type(&here, directive, map)),
        }
    }

    let (mut list, mut view) = delete_matching(original, &deletions, key);
    if replace {
        list = Vec::with_capacity(rest.len());
        for (index, _, map) in rest.drain(..) {
            if let Some(map) = clean_map(map, &path.index(index))? {
                list.push(Value::Object(map));
            }
        }
    }
    // The order Go's merge sorts server-only elements by: the live list after deletions.
    let after_deletions: Vec<Option<Value>> = list
        .iter()
        .map(|item| ident(item, Some(key)).cloned())
        .collect();

    // Merge each remaining patch element into the first live element with its key, or append it.
    let mut first_with_key: HashMap<Value, usize> = HashMap::with_capacity(list.len() + rest.len());
    for (at, item) in list.iter().enumerate() {
        if let Some(id) = ident(item, Some(key)) {
            first_with_key.entry(id.clone()).or_insert(at);
        }
    }
    for &(index, item, map) in &rest {
        let id = patch_merge_key(map, item, key, &path.index(index))?;
        let here = path.keyed(key, id);
        if let Some(at) = first_with_key.get(id).copied() {
            if let Some(Value::Object(target)) = list.get_mut(at) {
                let taken = mem::take(target);
                *target = merge_map(taken, map, elements, &here)?;
            }
            continue;
        }
        let Some(added) = clean_map(map, &here)? else {
            continue;
        };
        let at = list.len();
        // Go appends into the decoded slice: while it is shorter than the live list was, the
        // append lands in the live list's storage, where `$setElementOrder` later looks.
        if let Some(slot) = view.get_mut(at) {
            *slot = added.get(key).cloned();
        }
        first_with_key.insert(id.clone(), at);
        list.push(Value::Object(added));
    }

    let patch_order: Vec<Option<&Value>> = rest.iter().map(|(_, _, map)| map.get(key)).collect();
    let members: HashSet<Option<&Value>> = patch_order.iter().copied().collect();
    let (patch_items, server_only) = partition(list, &members, Some(key), path)?;
    let server_positions: Vec<Option<&Value>> =
        after_deletions.iter().map(Option::as_ref).collect();
    let merged = normalize(
        patch_items,
        server_only,
        &patch_order,
        &server_positions,
        Some(key),
    );
    Ok(ListMerge {
        merged,
        server_order: view,
    })
}

/// The merge key of a patch element; a null counts as missing (the element could match nothing
/// and would lose the key when its nulls are dropped).
fn patch_merge_key<'v>(
    map: &'v Map<String, Value>,
    item: &Value,
    key: &str,
    path: &Path<'_>,
) -> Result<&'v Value, Error> {
    match map.get(key) {
        Some(id) if !id.is_null() => Ok(id),
        _ => Err(Error::missing_merge_key(path, key, item)),
    }
}

/// Removes every live element whose merge key equals one of `deletions`, and reproduces what
/// Go's in-place `append(s[:i], s[i+1:]...)` leaves in the live list's storage: the survivors
/// compacted at the front, and behind them, for each removal, the element that was last at
/// that moment. Runs in O(n + deletions) where Go's loop is quadratic.
fn delete_matching(
    original: Vec<Value>,
    deletions: &[&Value],
    key: &str,
) -> (Vec<Value>, Vec<Option<Value>>) {
    let mut view: Vec<Option<Value>> = original
        .iter()
        .map(|item| ident(item, Some(key)).cloned())
        .collect();
    if deletions.is_empty() {
        return (original, view);
    }
    let mut removed = vec![false; original.len()];
    {
        let mut by_key: HashMap<&Value, Vec<usize>> = HashMap::new();
        for (at, item) in original.iter().enumerate() {
            if let Some(id) = ident(item, Some(key)) {
                by_key.entry(id).or_default().push(at);
            }
        }
        let mut live = original.len();
        // One past the last element not yet removed.
        let mut end = original.len();
        for target in deletions {
            let Some(hits) = by_key.remove(*target) else {
                continue;
            };
            for at in hits {
                while end > 0 && removed.get(end - 1).copied().unwrap_or(false) {
                    end -= 1;
                }
                let last = end.checked_sub(1).and_then(|last| original.get(last));
                if let (Some(slot), Some(last)) =
                    (live.checked_sub(1).and_then(|l| view.get_mut(l)), last)
                {
                    *slot = ident(last, Some(key)).cloned();
                }
                if let Some(flag) = removed.get_mut(at) {
                    *flag = true;
                }
                live = live.saturating_sub(1);
            }
        }
    }
    let survivors: Vec<Value> = original
        .into_iter()
        .zip(removed)
        .filter_map(|(item, gone)| (!gone).then_some(item))
        .collect();
    for (slot, item) in view.iter_mut().zip(&survivors) {
        *slot = ident(item, Some(key)).cloned();
    }
    (survivors, view)
}
