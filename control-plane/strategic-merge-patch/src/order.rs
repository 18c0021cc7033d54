//! The order of a merged list, as apimachinery computes it (see the design proposal
//! "preserve order in strategic merge patch"): the elements the patch names keep the patch's
//! order (or the `$setElementOrder` order), the elements only the server has keep theirs, and
//! the two runs are interleaved by the server's positions where both are known.
//!
//! Elements are compared by identity: the merge key's value for maps, the value itself for
//! primitives. Lookups go through hash maps so that hostile lists cost O(n log n), not O(n²).

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::directives::{DELETE, PATCH};
use crate::error::Error;
use crate::path::Path;

/// The JSON type shared by the elements of a list that is merged or ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ElemKind {
    Null,
    Bool,
    Number,
    String,
    Object,
}

/// The common element type of `items`, `None` when there are none. Refuses nested lists and
/// mixed types, as apimachinery's `sliceElementType` does (its integers and floats are
/// different types; here all numbers are one).
pub(crate) fn element_kind<'v>(
    items: impl IntoIterator<Item = &'v Value>,
    path: &Path<'_>,
) -> Result<Option<ElemKind>, Error> {
    let mut seen = None;
    for item in items {
        let kind = match item {
            Value::Array(_) => {
                return Err(Error::ListOfLists {
                    path: path.render(),
                })
            }
            Value::Null => ElemKind::Null,
            Value::Bool(_) => ElemKind::Bool,
            Value::Number(_) => ElemKind::Number,
            Value::String(_) => ElemKind::String,
            Value::Object(_) => ElemKind::Object,
        };
        match seen {
            None => seen = Some(kind),
            Some(previous) if previous != kind => {
                return Err(Error::MixedElementTypes {
                    path: path.render(),
                })
            }
            Some(_) => {}
        }
    }
    Ok(seen)
}

/// What an element is compared by: its merge key's value (`None` when it has none or is not a
/// map), or itself when the list has no merge key.
pub(crate) fn ident<'v>(item: &'v Value, key: Option<&str>) -> Option<&'v Value> {
    match key {
        Some(key) => item.as_object().and_then(|map| map.get(key)),
        None => Some(item),
    }
}

/// The merge key's value of an element that must be a map holding it.
pub(crate) fn merge_key_of<'v>(
    item: &'v Value,
    key: &str,
    path: &Path<'_>,
) -> Result<&'v Value, Error> {
    match item {
        Value::Object(map) => map
            .get(key)
            .ok_or_else(|| Error::missing_merge_key(path, key, item)),
        other => Err(Error::wrong_type(path, "map", other)),
    }
}

/// Identities of the elements of a list that orders others (a patch list, a `$setElementOrder`
/// list). With a merge key every element must be a map holding it.
pub(crate) fn order_idents<'v>(
    items: &'v [Value],
    key: Option<&str>,
    path: &Path<'_>,
) -> Result<Vec<Option<&'v Value>>, Error> {
    items
        .iter()
        .enumerate()
        .map(|(index, item)| match key {
            Some(key) => merge_key_of(item, key, &path.index(index)).map(Some),
            None => Ok(Some(item)),
        })
        .collect()
}

/// Splits `list` into the elements whose identity is in `members` and the others, keeping the
/// order of each. With a merge key every element must be a map holding it.
pub(crate) fn partition(
    list: Vec<Value>,
    members: &HashSet<Option<&Value>>,
    key: Option<&str>,
    path: &Path<'_>,
) -> Result<(Vec<Value>, Vec<Value>), Error> {
    let mut inside = Vec::new();
    let mut outside = Vec::new();
    for (index, item) in list.into_iter().enumerate() {
        let found = match key {
            Some(key) => members.contains(&Some(merge_key_of(&item, key, &path.index(index))?)),
            None => members.contains(&Some(&item)),
        };
        if found {
            inside.push(item);
        } else {
            outside.push(item);
        }
    }
    Ok((inside, outside))
}

/// apimachinery's `normalizeElementOrder`: sorts `patch_items` by `patch_order` and
/// `server_only` by `server_order` (stably, by first occurrence), then interleaves them.
pub(crate) fn normalize(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Option<&Value>],
    server_order: &[Option<&Value>],
    key: Option<&str>,
) -> Vec<Value> {
    let patch_positions = positions(patch_order);
    let server_positions = positions(server_order);
    let patch_items = sort_by_position(patch_items, &patch_positions, key);
    let server_only = sort_by_position(server_only, &server_positions, key);
    interleave(server_only, patch_items, &server_positions, key)
}

fn positions<'v>(order: &[Option<&'v Value>]) -> HashMap<Option<&'v Value>, usize> {
    let mut positions = HashMap::with_capacity(order.len());
    for (index, id) in order.iter().enumerate() {
        positions.entry(*id).or_insert(index);
    }
    positions
}

fn position<'v>(
    positions: &HashMap<Option<&'v Value>, usize>,
    id: Option<&'v Value>,
) -> Option<usize> {
    positions.get(&id).copied()
}

/// Stable sort by position. Elements missing from the order go last in their own order: Go's
/// comparator is not a strict order for them and its result depends on its sort algorithm;
/// patches that kubectl builds never reach that case.
fn sort_by_position(
    items: Vec<Value>,
    positions: &HashMap<Option<&Value>, usize>,
    key: Option<&str>,
) -> Vec<Value> {
    let mut keyed: Vec<(usize, Value)> = items
        .into_iter()
        .map(|item| {
            (
                position(positions, ident(&item, key)).unwrap_or(usize::MAX),
                item,
            )
        })
        .collect();
    keyed.sort_by_key(|(at, _)| *at);
    keyed.into_iter().map(|(_, item)| item).collect()
}

/// apimachinery's `mergeSortedSlice`: walks both runs, taking the server-only element first
/// only when the server order knows both candidates and puts it earlier.
fn interleave(
    server_only: Vec<Value>,
    patch_items: Vec<Value>,
    server_positions: &HashMap<Option<&Value>, usize>,
    key: Option<&str>,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(server_only.len() + patch_items.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (position(server_positions, ident(l, key)), position(server_positions, ident(r, key))),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// apimachinery's `validatePatchWithSetOrderList`: the elements of the patch list (deletions
/// and other directive elements aside) must appear in the `$setElementOrder` list, in the same
/// relative order.
pub(crate) fn validate_order(
    patch_list: &[Value],
    order: &[Value],
    key: Option<&str>,
    path: &Path<'_>,
) -> Result<(), Error> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let mut candidates: Vec<&Value> = Vec::with_capacity(patch_list.len());
    for (index, item) in patch_list.iter().enumerate() {
        if key.is_some() {
            let Value::Object(map) = item else {
                return Err(Error::wrong_type(&path.index(index), "map", item));
            };
            if map.get(PATCH).and_then(Value::as_str) == Some(DELETE) {
                continue;
            }
        }
        candidates.push(item);
    }
    let (mut at_patch, mut at_order) = (0, 0);
    while let (Some(item), Some(wanted)) = (candidates.get(at_patch), order.get(at_order)) {
        if item.as_object().is_some_and(|map| map.contains_key(PATCH)) {
            at_patch += 1;
            continue;
        }
        let same = match key {
            Some(key) => {
                merge_key_of(item, key, &path.index(at_patch))?
                    == merge_key_of(wanted, key, &path.index(at_order))?
            }
            None => *item == wanted,
        };
        if same {
            at_patch += 1;
        }
        at_order += 1;
    }
    if at_patch < candidates.len() && at_order >= order.len() {
        return Err(Error::SetElementOrderMismatch {
            path: path.render(),
        });
    }
    Ok(())
}
