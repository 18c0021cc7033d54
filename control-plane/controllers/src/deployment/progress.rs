//! A Deployment's status and conditions, as kube's `sync.go` (`calculateStatus`),
//! `progress.go` and `deployment_util.go` compute them: the replica counts, `Available`
//! (minimum availability), `Progressing` (a new ReplicaSet, progress, completion, the
//! progress deadline, pausing) and `ReplicaFailure` (promoted from the ReplicaSets).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::util::{self, has_progress_deadline, replicas};

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
pub const TRUE: &str = "True";
pub const FALSE: &str = "False";
pub const UNKNOWN: &str = "Unknown";

/// `Progressing`: a ReplicaSet of the rollout was scaled, or pods became ready or available.
pub const REPLICA_SET_UPDATED_REASON: &str = "ReplicaSetUpdated";
/// `Progressing=False`: the new ReplicaSet could not be created.
pub const FAILED_RS_CREATE_REASON: &str = "ReplicaSetCreateError";
/// `Progressing`: the new ReplicaSet was created.
pub const NEW_REPLICA_SET_REASON: &str = "NewReplicaSetCreated";
/// `Progressing`: an existing ReplicaSet was found to be the new one.
pub const FOUND_NEW_RS_REASON: &str = "FoundNewReplicaSet";
/// `Progressing`: the rollout completed.
pub const NEW_RS_AVAILABLE_REASON: &str = "NewReplicaSetAvailable";
/// `Progressing=False`: no progress within `progressDeadlineSeconds`.
pub const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";
/// `Progressing=Unknown` while paused: no progress is expected.
pub const PAUSED_DEPLOY_REASON: &str = "DeploymentPaused";
/// `Progressing=Unknown` once resumed: the deadline counts from the resumption.
pub const RESUMED_DEPLOY_REASON: &str = "DeploymentResumed";
pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// When to look at a Deployment again for its progress deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// Nothing to wait for.
    Never,
    /// The deadline is (about to be) past: now, rate limited.
    Now,
    /// The deadline is this far; kube queues one second later, against clock skew.
    After(Duration),
}

/// `metav1.Now()` as it is written: whole seconds.
pub fn whole_seconds(now: Timestamp) -> Timestamp {
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

fn int(value: Option<i32>) -> i32 {
    value.unwrap_or(0)
}

/// Go's `omitempty`: a zero count is not written.
fn nonzero(value: i32) -> Option<i32> {
    (value != 0).then_some(value)
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

/// A condition set now (`NewDeploymentCondition`).
pub fn new_condition(
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> DeploymentCondition {
    let now = Time(whole_seconds(now));
    DeploymentCondition {
        type_: Some(kind.to_string()),
        status: Some(status.to_string()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
        reason: non_empty(reason),
        message: non_empty(message),
    }
}

pub fn get_condition<'a>(
    status: &'a DeploymentStatus,
    kind: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|condition| condition.type_.as_deref() == Some(kind))
}

fn reason_of(condition: Option<&DeploymentCondition>) -> Option<&str> {
    condition.and_then(|condition| condition.reason.as_deref())
}

/// Removes the conditions of `kind`; none left is no list at all.
pub fn remove_condition(status: &mut DeploymentStatus, kind: &str) {
    let kept: Vec<DeploymentCondition> = status
        .conditions
        .take()
        .into_iter()
        .flatten()
        .filter(|condition| condition.type_.as_deref() != Some(kind))
        .collect();
    status.conditions = (!kept.is_empty()).then_some(kept);
}

/// Sets `condition` (`SetDeploymentCondition`): nothing changes when one of its type has the
/// same status and reason; one with the same status keeps its `lastTransitionTime`.
pub fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    let kind = condition.type_.clone().unwrap_or_default();
    if let Some(current) = get_condition(status, &kind) {
        if current.status == condition.status && current.reason == condition.reason {
            return;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &kind);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(condition);
}

/// A ReplicaSet's failure as the Deployment's (`ReplicaSetToDeploymentCondition`).
pub fn replica_set_to_deployment_condition(condition: &ReplicaSetCondition) -> DeploymentCondition {
    DeploymentCondition {
        type_: condition.type_.clone(),
        status: condition.status.clone(),
        last_transition_time: condition.last_transition_time.clone(),
        last_update_time: condition.last_transition_time.clone(),
        reason: condition.reason.clone(),
        message: condition.message.clone(),
    }
}

/// All desired replicas are updated and available, none is old, and the status is of the
/// current generation (`DeploymentComplete`).
pub fn deployment_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let desired = replicas(d);
    int(status.updated_replicas) == desired
        && int(status.replicas) == desired
        && int(status.available_replicas) == desired
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Whether `status` shows progress over the Deployment's current one: more updated, fewer
/// old, more ready or more available replicas (`DeploymentProgressing`).
pub fn deployment_progressing(d: &Deployment, status: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = int(old.replicas) - int(old.updated_replicas);
    let new_old = int(status.replicas) - int(status.updated_replicas);
    int(status.updated_replicas) > int(old.updated_replicas)
        || new_old < old_old
        || int(status.ready_replicas) > int(old.ready_replicas)
        || int(status.available_replicas) > int(old.available_replicas)
}

/// When the deadline of the Progressing condition `condition` runs out; `None` (Go's zero
/// time) when it has no update time.
fn deadline(d: &Deployment, condition: &DeploymentCondition) -> Option<Timestamp> {
    let seconds = d.spec.progress_deadline_seconds.unwrap_or(0);
    condition
        .last_update_time
        .as_ref()?
        .0
        .checked_add(SignedDuration::from_secs(i64::from(seconds)))
        .ok()
}

/// Whether the rollout made no progress within `progressDeadlineSeconds` of the last
/// recorded progress (`DeploymentTimedOut`). A completed rollout never times out; a timed
/// out one stays so.
pub fn deployment_timed_out(d: &Deployment, status: &DeploymentStatus, now: Timestamp) -> bool {
    if !has_progress_deadline(d) {
        return false;
    }
    let Some(condition) = get_condition(status, PROGRESSING) else {
        return false;
    };
    match condition.reason.as_deref() {
        Some(NEW_RS_AVAILABLE_REASON) => false,
        Some(TIMED_OUT_REASON) => true,
        _ => deadline(d, condition).is_none_or(|deadline| deadline < now),
    }
}

/// The status of a Deployment with ReplicaSets `all` (the new one included), `new_rs`
/// among them (`calculateStatus`): counts, `collisionCount` and conditions carried over,
/// and `Available`.
pub fn calculate_status(
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    d: &Deployment,
    now: Timestamp,
) -> DeploymentStatus {
    let old = d.status.clone().unwrap_or_default();
    let available = util::available_replica_count(all);
    let unavailable = (util::replica_count(all) - available).max(0);
    let updated: Vec<&ReplicaSet> = new_rs.into_iter().collect();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation.filter(|generation| *generation != 0),
        replicas: nonzero(util::actual_replica_count(all)),
        updated_replicas: nonzero(util::actual_replica_count(&updated)),
        ready_replicas: nonzero(util::ready_replica_count(all)),
        available_replicas: nonzero(available),
        unavailable_replicas: nonzero(unavailable),
        // DeploymentReplicaSetTerminatingReplicas is on (beta since 1.35).
        terminating_replicas: util::terminating_replica_count(all),
        collision_count: old.collision_count,
        conditions: old.conditions,
    };
    let condition = if available >= replicas(d) - util::max_unavailable(d) {
        new_condition(
            AVAILABLE,
            TRUE,
            MINIMUM_REPLICAS_AVAILABLE,
            "Deployment has minimum availability.",
            now,
        )
    } else {
        new_condition(
            AVAILABLE,
            FALSE,
            MINIMUM_REPLICAS_UNAVAILABLE,
            "Deployment does not have minimum availability.",
            now,
        )
    };
    set_condition(&mut status, condition);
    status
}

/// The failure conditions of the ReplicaSets, the new one's first (`getReplicaFailures`).
fn replica_failures(all: &[&ReplicaSet], new_rs: Option<&ReplicaSet>) -> Vec<DeploymentCondition> {
    let failures = |rs: &ReplicaSet| -> Vec<DeploymentCondition> {
        rs.status
            .iter()
            .flat_map(|status| status.conditions.iter().flatten())
            .filter(|condition| condition.type_.as_deref() == Some(REPLICA_FAILURE))
            .map(replica_set_to_deployment_condition)
            .collect()
    };
    let from_new = new_rs.map(failures).unwrap_or_default();
    if !from_new.is_empty() {
        return from_new;
    }
    all.iter().flat_map(|rs| failures(rs)).collect()
}

/// Names the new ReplicaSet in a message, or the Deployment without one.
fn subject(d: &Deployment, new_rs: Option<&ReplicaSet>) -> String {
    match new_rs {
        Some(rs) => format!(
            "ReplicaSet {:?}",
            rs.metadata.name.as_deref().unwrap_or_default()
        ),
        None => format!(
            "Deployment {:?}",
            d.metadata.name.as_deref().unwrap_or_default()
        ),
    }
}

/// The status during a rollout (`syncRolloutStatus`): [`calculate_status`], then the
/// Progressing condition — complete, progressing (its update time moves on every progress)
/// or timed out — unless the last rollout completed and nothing changed since, and the
/// ReplicaSets' failures.
pub fn rollout_status(
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    d: &Deployment,
    now: Timestamp,
) -> DeploymentStatus {
    let mut status = calculate_status(all, new_rs, d, now);
    let deadline = has_progress_deadline(d);
    if !deadline {
        remove_condition(&mut status, PROGRESSING);
    }
    let old = d.status.clone().unwrap_or_default();
    let current = get_condition(&old, PROGRESSING);
    let complete_before = int(status.replicas) == int(status.updated_replicas)
        && reason_of(current) == Some(NEW_RS_AVAILABLE_REASON);
    if deadline && !complete_before {
        let subject = subject(d, new_rs);
        if deployment_complete(d, &status) {
            let message = format!("{subject} has successfully progressed.");
            let condition =
                new_condition(PROGRESSING, TRUE, NEW_RS_AVAILABLE_REASON, &message, now);
            set_condition(&mut status, condition);
        } else if deployment_progressing(d, &status) {
            let message = format!("{subject} is progressing.");
            let mut condition =
                new_condition(PROGRESSING, TRUE, REPLICA_SET_UPDATED_REASON, &message, now);
            // Unlike other conditions, the same reason is set again: its update time records
            // the progress. The transition time stays while it stays True.
            if let Some(current) = current {
                if current.status.as_deref() == Some(TRUE) {
                    condition.last_transition_time = current.last_transition_time.clone();
                }
                remove_condition(&mut status, PROGRESSING);
            }
            set_condition(&mut status, condition);
        } else if deployment_timed_out(d, &status, now) {
            let message = format!("{subject} has timed out progressing.");
            let condition = new_condition(PROGRESSING, FALSE, TIMED_OUT_REASON, &message, now);
            set_condition(&mut status, condition);
        }
    }
    match replica_failures(all, new_rs).into_iter().next() {
        Some(failure) => set_condition(&mut status, failure),
        None => remove_condition(&mut status, REPLICA_FAILURE),
    }
    status
}

/// When to sync a Deployment whose status did not change, to notice its deadline
/// (`requeueStuckDeployment`): never without a deadline or a Progressing condition, or once
/// complete or timed out.
pub fn requeue_stuck_deployment(
    d: &Deployment,
    status: &DeploymentStatus,
    now: Timestamp,
) -> Requeue {
    let old = d.status.clone().unwrap_or_default();
    let Some(current) = get_condition(&old, PROGRESSING) else {
        return Requeue::Never;
    };
    if !has_progress_deadline(d) {
        return Requeue::Never;
    }
    if deployment_complete(d, status) || reason_of(Some(current)) == Some(TIMED_OUT_REASON) {
        return Requeue::Never;
    }
    let Some(deadline) = deadline(d, current) else {
        return Requeue::Now;
    };
    let after = deadline.duration_since(now);
    if after < SignedDuration::from_secs(1) {
        return Requeue::Now;
    }
    let nanos = u64::try_from(after.as_nanos()).unwrap_or(u64::MAX);
    Requeue::After(Duration::from_nanos(nanos))
}

/// Records pausing and resuming in the Progressing condition (`checkPausedConditions`), so
/// that the time spent paused does not count against the deadline. Returns whether the
/// status changed. A timed-out rollout keeps saying so.
pub fn check_paused_conditions(d: &mut Deployment, now: Timestamp) -> bool {
    if !has_progress_deadline(d) {
        return false;
    }
    let paused = d.spec.paused.unwrap_or(false);
    let status = d.status.get_or_insert_with(DeploymentStatus::default);
    let reason = reason_of(get_condition(status, PROGRESSING)).map(str::to_string);
    if reason.as_deref() == Some(TIMED_OUT_REASON) {
        return false;
    }
    let paused_recorded = reason.as_deref() == Some(PAUSED_DEPLOY_REASON);
    let condition = match (paused, paused_recorded) {
        (true, false) => new_condition(
            PROGRESSING,
            UNKNOWN,
            PAUSED_DEPLOY_REASON,
            "Deployment is paused",
            now,
        ),
        (false, true) => new_condition(
            PROGRESSING,
            UNKNOWN,
            RESUMED_DEPLOY_REASON,
            "Deployment is resumed",
            now,
        ),
        _ => return false,
    };
    set_condition(status, condition);
    true
}

/// `status` as Go holds it: a count of 0 and no count are the same (`omitempty` int fields;
/// `terminatingReplicas` and `collisionCount` are pointers and stay as they are), as are no
/// conditions and an empty list.
fn normalized(status: &DeploymentStatus) -> DeploymentStatus {
    let nonzero32 = |value: Option<i32>| value.filter(|n| *n != 0);
    DeploymentStatus {
        available_replicas: nonzero32(status.available_replicas),
        collision_count: status.collision_count,
        conditions: status.conditions.clone().filter(|list| !list.is_empty()),
        observed_generation: status.observed_generation.filter(|n| *n != 0),
        ready_replicas: nonzero32(status.ready_replicas),
        replicas: nonzero32(status.replicas),
        terminating_replicas: status.terminating_replicas,
        unavailable_replicas: nonzero32(status.unavailable_replicas),
        updated_replicas: nonzero32(status.updated_replicas),
    }
}

/// Whether writing `status` over `current` would change nothing (kube's `DeepEqual` check).
pub fn status_equal(current: Option<&DeploymentStatus>, status: &DeploymentStatus) -> bool {
    normalized(&current.cloned().unwrap_or_default()) == normalized(status)
}
