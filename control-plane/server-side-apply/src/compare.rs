//! Comparing objects over a field set, walking the set and the objects' value trees side by
//! side (structured-merge-diff's compare and prune), so no field's path is ever copied out.

use crate::fields::Tree;
use crate::path;
use crate::set::FieldSet;

/// The members of `set` whose value differs between `before` and `after`: an element of an
/// associative list (`k:`) by being there or not, anything else by its value. With
/// `added_parents`, a map or element `set` reaches into that `before` lacks is a member too
/// (the `.` kube records for what an update added).
pub(crate) fn changed(
    set: &FieldSet,
    before: Option<&Tree<'_>>,
    after: Option<&Tree<'_>>,
    element: bool,
    added_parents: bool,
) -> FieldSet {
    let mut out = FieldSet::default();
    if set.member {
        out.member = if element {
            before.is_some() != after.is_some()
        } else {
            before.map(|t| t.value) != after.map(|t| t.value)
        };
    } else if added_parents && before.is_none() && after.is_some() && !set.children.is_empty() {
        out.member = true;
    }
    for (key, child) in &set.children {
        let below = changed(
            child,
            before.and_then(|t| t.children.get(key)),
            after.and_then(|t| t.children.get(key)),
            key.starts_with("k:"),
            added_parents,
        );
        if !below.is_empty() {
            out.children.insert(key.clone(), below);
        }
    }
    out
}

/// What of `stopped` (fields a manager applied before and no longer does) leaves the object,
/// given what `others` own: a field goes unless somebody else sets it or something under it;
/// an element of a list goes unless somebody else owns the element itself (what others set
/// inside it goes with it, as in kube); the fields naming a kept element stay.
pub(crate) fn to_remove(
    stopped: &FieldSet,
    others: Option<&FieldSet>,
    element: Option<&str>,
) -> FieldSet {
    let mut out = FieldSet::default();
    for (key, child) in &stopped.children {
        let other = others.and_then(|o| o.children.get(key));
        if child.member {
            let item = key.starts_with("k:") || key.starts_with("v:");
            let kept = if item {
                other.is_some_and(|o| o.member)
            } else {
                other.is_some_and(|o| !o.is_empty())
            };
            let names_element = element.is_some_and(|e| path::is_key_field_of(e, key));
            if !kept && !names_element {
                out.child_mut(key.clone()).member = true;
                continue;
            }
        }
        let nested = key.starts_with("k:").then_some(key.as_str());
        let below = to_remove(child, other, nested);
        if !below.is_empty() {
            out.children.insert(key.clone(), below);
        }
    }
    out
}
