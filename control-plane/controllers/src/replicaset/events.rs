//! The events the ReplicaSet controller records on a ReplicaSet, as kube's `RealPodControl`
//! (`pkg/controller/controller_utils.go`) records them around each pod it creates or deletes.

use crate::api_errors::{message_of, namespace_terminating, status_of};
use crate::events::Note;

/// kube-controller-manager's source component for the ReplicaSet controller.
pub const COMPONENT: &str = "replicaset-controller";
pub const SUCCESSFUL_CREATE: &str = "SuccessfulCreate";
pub const FAILED_CREATE: &str = "FailedCreate";
pub const SUCCESSFUL_DELETE: &str = "SuccessfulDelete";
pub const FAILED_DELETE: &str = "FailedDelete";

/// A pod created: `Created pod: <name>`.
pub fn created(pod: &str) -> Note {
    Note::normal(SUCCESSFUL_CREATE, format!("Created pod: {pod}"))
}

/// A create refused: `Error creating: <error>`, except in a namespace being deleted, where
/// every create fails and kube says nothing.
pub fn create_failed(error: &kube::Error) -> Option<Note> {
    if namespace_terminating(error) {
        return None;
    }
    Some(Note::warning(
        FAILED_CREATE,
        format!("Error creating: {}", message_of(error)),
    ))
}

/// A pod deleted: `Deleted pod: <name>`.
pub fn deleted(pod: &str) -> Note {
    Note::normal(SUCCESSFUL_DELETE, format!("Deleted pod: {pod}"))
}

/// A delete refused: `Error deleting: <error>`, except for a pod already gone (or, with the
/// uid precondition, replaced by a namesake), which is no failure.
pub fn delete_failed(error: &kube::Error) -> Option<Note> {
    let gone = status_of(error).is_some_and(|status| status.is_not_found() || status.is_conflict());
    if gone {
        return None;
    }
    Some(Note::warning(
        FAILED_DELETE,
        format!("Error deleting: {}", message_of(error)),
    ))
}
