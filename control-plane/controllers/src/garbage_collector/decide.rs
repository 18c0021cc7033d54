//! What the garbage collector does with one object, as pure functions of what the API server
//! answered about it and its owners (kube's `classifyReferences` and `attemptToDeleteItem`), and
//! the patches it sends.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::{json, Value};

use super::graph::{FINALIZER_FOREGROUND, FINALIZER_ORPHAN};

/// What an owner reference points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// The owner exists and is not waiting for its dependents.
    Solid,
    /// No object with that name and uid exists.
    Dangling,
    /// The owner is being deleted in the foreground (`waitingForDependentsDeletion`).
    WaitingForDependentsDeletion,
}

/// How a deletion treats the deleted object's dependents (`metav1.DeletionPropagation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

/// What to do with an object that has owner references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// An owner exists and nothing dangles: leave it.
    Keep,
    /// An owner exists: drop the references to owners that are gone or waiting for their
    /// dependents (by uid; a waiting owner would otherwise wait for this object forever).
    RemoveReferences(Vec<String>),
    /// An owner waits for its dependents and this object has dependents of its own: delete it
    /// in the foreground too, so that the owner waits for the whole subtree. With
    /// `unblock_first`, one of its dependents is itself deleting dependents (a possible
    /// cycle): its own owner references are made non-blocking first.
    DeleteForeground { unblock_first: bool },
    /// No owner exists: delete it.
    Delete(Propagation),
}

pub fn has_finalizer(finalizers: &[String], finalizer: &str) -> bool {
    finalizers.iter().any(|f| f == finalizer)
}

/// What `reference` points at, given the object the API server returned for its name
/// (`None` when there is none). Another uid under the same name is a different object: the
/// owner is gone.
pub fn owner_state(reference: &OwnerReference, owner: Option<&ObjectMeta>) -> OwnerState {
    let Some(owner) = owner else {
        return OwnerState::Dangling;
    };
    if owner.uid.as_deref() != Some(reference.uid.as_str()) {
        return OwnerState::Dangling;
    }
    let finalizers = owner.finalizers.as_deref().unwrap_or_default();
    if owner.deletion_timestamp.is_some() && has_finalizer(finalizers, FINALIZER_FOREGROUND) {
        OwnerState::WaitingForDependentsDeletion
    } else {
        OwnerState::Solid
    }
}

/// kube's `attemptToDeleteItem` once the references are classified: `finalizers` are the
/// object's own, `dependents` how many it has in the graph, and `dependent_deleting_dependents`
/// whether one of them is itself deleting its dependents.
pub fn decide(
    finalizers: &[String],
    references: &[(OwnerReference, OwnerState)],
    dependents: usize,
    dependent_deleting_dependents: bool,
) -> Decision {
    if references.is_empty() {
        return Decision::Keep;
    }
    let with = |state: OwnerState| {
        references
            .iter()
            .filter(move |(_, s)| *s == state)
            .map(|(reference, _)| reference.uid.clone())
    };
    let solid = with(OwnerState::Solid).next().is_some();
    let waiting: Vec<String> = with(OwnerState::WaitingForDependentsDeletion).collect();
    if solid {
        // Dangling first, then waiting, as kube lists them.
        let mut remove: Vec<String> = with(OwnerState::Dangling).collect();
        remove.extend(waiting);
        return if remove.is_empty() {
            Decision::Keep
        } else {
            Decision::RemoveReferences(remove)
        };
    }
    if !waiting.is_empty() && dependents > 0 {
        return Decision::DeleteForeground {
            unblock_first: dependent_deleting_dependents,
        };
    }
    // No owner left: a finalizer already on the object says how, background otherwise.
    let propagation = if has_finalizer(finalizers, FINALIZER_ORPHAN) {
        Propagation::Orphan
    } else if has_finalizer(finalizers, FINALIZER_FOREGROUND) {
        Propagation::Foreground
    } else {
        Propagation::Background
    };
    Decision::Delete(propagation)
}

/// A strategic merge patch removing the references to `owners` (uids) from the object with
/// `uid` (`GenerateDeleteOwnerRefStrategicMergeBytes`). The uid is a precondition: a namesake
/// created meanwhile is refused.
pub fn delete_owner_references_patch(uid: &str, owners: &[String]) -> Value {
    let deletions: Vec<Value> = owners
        .iter()
        .map(|owner| json!({"$patch": "delete", "uid": owner}))
        .collect();
    json!({"metadata": {"ownerReferences": deletions, "uid": uid}})
}

/// A strategic merge patch setting `blockOwnerDeletion: false` on every blocking reference
/// among `owners` of the object with `uid` (`unblockOwnerReferencesStrategicMergePatch`);
/// `None` when none blocks. References merge by uid; whole references are sent so that the
/// result is valid whatever the merge keeps.
pub fn unblock_owner_references_patch(uid: &str, owners: &[OwnerReference]) -> Option<Value> {
    let unblocked: Vec<OwnerReference> = owners
        .iter()
        .filter(|owner| owner.block_owner_deletion == Some(true))
        .map(|owner| OwnerReference {
            block_owner_deletion: Some(false),
            ..owner.clone()
        })
        .collect();
    if unblocked.is_empty() {
        return None;
    }
    Some(json!({"metadata": {"ownerReferences": unblocked, "uid": uid}}))
}

/// A JSON merge patch removing `finalizer` from the object `meta` describes, with its
/// resourceVersion as a precondition (`removeFinalizer`); `None` when it is not there. The list
/// is replaced whole (finalizers merge as a set in strategic merge, which cannot drop one
/// without a directive keel may not take); an empty list is sent as `null`, as kube does.
pub fn remove_finalizer_patch(meta: &ObjectMeta, finalizer: &str) -> Option<Value> {
    let finalizers = meta.finalizers.as_deref().unwrap_or_default();
    if !has_finalizer(finalizers, finalizer) {
        return None;
    }
    let kept: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
    let kept = if kept.is_empty() {
        Value::Null
    } else {
        json!(kept)
    };
    Some(json!({"metadata": {
        "resourceVersion": meta.resource_version,
        "finalizers": kept,
    }}))
}
