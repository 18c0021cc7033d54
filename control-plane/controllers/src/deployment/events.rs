//! The events the Deployment controller records on a Deployment (`pkg/controller/deployment`:
//! `sync.go`'s `getNewReplicaSet` and `scaleReplicaSet`, `deployment_controller.go`'s
//! `syncDeployment`).
//!
//! kube also records `DeploymentRollback` events, but only for the deprecated `rollbackTo`
//! of `extensions/v1beta1`, which keel does not serve (kubectl rolls back client-side, by a
//! template change that scales like any other). `ProgressDeadlineExceeded` is a condition
//! reason only: kube records no event for it, nor does keel.

use super::progress::FAILED_RS_CREATE_REASON;
use crate::api_errors::{message_of, namespace_terminating, status_of};
use crate::events::Note;

/// kube-controller-manager's source component for the Deployment controller.
pub const COMPONENT: &str = "deployment-controller";
pub const SCALING_REPLICA_SET: &str = "ScalingReplicaSet";
pub const SELECTING_ALL: &str = "SelectingAll";

/// A ReplicaSet scaled from `from` to `to` replicas: `Scaled up replica set <name> from 2
/// to 3` (or `down`); nothing when the size did not change (kube records only a size change,
/// not an annotation refresh).
pub fn scaled(replicaset: &str, from: i32, to: i32) -> Option<Note> {
    let direction = match from.cmp(&to) {
        std::cmp::Ordering::Less => "up",
        std::cmp::Ordering::Greater => "down",
        std::cmp::Ordering::Equal => return None,
    };
    Some(Note::normal(
        SCALING_REPLICA_SET,
        format!("Scaled {direction} replica set {replicaset} from {from} to {to}"),
    ))
}

/// The new ReplicaSet created with `replicas`: `Scaled up replica set <name> from 0 to <n>`,
/// unless it existed already (its creation was not this sync's) or starts empty.
pub fn created(replicaset: &str, replicas: i32, already_existed: bool) -> Option<Note> {
    if already_existed || replicas <= 0 {
        return None;
    }
    scaled(replicaset, 0, replicas)
}

/// The new ReplicaSet refused: `Failed to create new replica set "<name>": <error>`. Not for
/// a name taken (a slow cache or a hash collision, retried) nor in a namespace being deleted.
pub fn create_failed(replicaset: &str, error: &kube::Error) -> Option<Note> {
    let taken = status_of(error).is_some_and(|status| status.is_already_exists());
    if taken || namespace_terminating(error) {
        return None;
    }
    Some(Note::warning(
        FAILED_RS_CREATE_REASON,
        format!(
            "Failed to create new replica set {replicaset:?}: {}",
            message_of(error)
        ),
    ))
}

/// A Deployment with an empty selector, at each sync.
pub fn selecting_all() -> Note {
    Note::warning(
        SELECTING_ALL,
        "This deployment is selecting all pods. A non-empty selector is required.".to_string(),
    )
}
