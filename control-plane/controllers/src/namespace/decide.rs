//! The namespace controller's decisions as pure functions: what one deletion pass left behind
//! and how long to wait for it (kube's `deleteAllContentForGroupVersionResource` and
//! `estimateGracefulTermination`), the status conditions kube sets from it
//! (`status_condition_utils.go`), and the finalizers that remain once the namespace is empty.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition, NamespaceStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Discovery failed, so some kinds may not have been emptied.
pub const DELETION_DISCOVERY_FAILURE: &str = "NamespaceDeletionDiscoveryFailure";
/// A discovered group-version could not be parsed (never, with kube-rs' typed discovery).
pub const DELETION_GV_PARSING_FAILURE: &str = "NamespaceDeletionGroupVersionParsingFailure";
/// Deleting or listing some kind failed.
pub const DELETION_CONTENT_FAILURE: &str = "NamespaceDeletionContentFailure";
/// Objects are left in the namespace.
pub const CONTENT_REMAINING: &str = "NamespaceContentRemaining";
/// Objects are left, held by finalizers.
pub const FINALIZERS_REMAINING: &str = "NamespaceFinalizersRemaining";

/// The conditions the controller maintains, in kube's order.
pub const CONDITION_TYPES: [&str; 5] = [
    DELETION_DISCOVERY_FAILURE,
    DELETION_GV_PARSING_FAILURE,
    DELETION_CONTENT_FAILURE,
    CONTENT_REMAINING,
    FINALIZERS_REMAINING,
];

/// How long objects held by finalizers are assumed to need (kube's `finalizerEstimateSeconds`).
pub const FINALIZER_ESTIMATE_SECONDS: i64 = 15;

const PHASE_SUCCEEDED: &str = "Succeeded";
const PHASE_FAILED: &str = "Failed";

/// The reason and message of a condition that is not failing (`okReasons`, `okMessages`).
fn ok_condition(type_: &str) -> (&'static str, &'static str) {
    match type_ {
        DELETION_DISCOVERY_FAILURE => (
            "ResourcesDiscovered",
            "All resources successfully discovered",
        ),
        DELETION_GV_PARSING_FAILURE => (
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        ),
        DELETION_CONTENT_FAILURE => (
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        ),
        CONTENT_REMAINING => ("ContentRemoved", "All content successfully removed"),
        _ => (
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished",
        ),
    }
}

/// What one kind left after a deletion pass (`gvrDeletionMetadata`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Seconds to wait before looking again; 0 is no estimate, not "all gone".
    pub estimate: i64,
    /// Objects left.
    pub remaining: usize,
    /// Objects left per finalizer they carry.
    pub finalizers: BTreeMap<String, usize>,
}

/// What a whole deletion pass over the namespace found (`allGVRDeletionMetadata`, with the
/// errors kube collects beside it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// The longest estimate of any kind.
    pub estimate: i64,
    /// Objects left per resource, named as kube names them: `{resource}.{group}`.
    pub remaining: BTreeMap<String, usize>,
    /// Objects left per finalizer.
    pub finalizers: BTreeMap<String, usize>,
    pub discovery_error: Option<String>,
    pub content_errors: Vec<String>,
}

impl Pass {
    /// Adds the outcome for `resource` (`{resource}.{group}`).
    pub fn add(&mut self, resource: &str, leftovers: Leftovers, error: Option<String>) {
        self.content_errors.extend(error);
        self.estimate = self.estimate.max(leftovers.estimate);
        if leftovers.remaining == 0 {
            return;
        }
        self.remaining
            .insert(resource.to_string(), leftovers.remaining);
        for (finalizer, count) in leftovers.finalizers {
            if count > 0 {
                *self.finalizers.entry(finalizer).or_default() += count;
            }
        }
    }

    /// Why the pass failed, if it did: the messages of the failing conditions.
    pub fn error_message(&self) -> Option<String> {
        let mut messages: Vec<String> = self.discovery_error.iter().cloned().collect();
        messages.extend(content_failure_message(&self.content_errors));
        (!messages.is_empty()).then(|| messages.join("; "))
    }
}

/// What `left` (the kind's objects still listed after deleting them) means, with `estimate`
/// the kind's own estimate; `true` when objects remain for no known reason, which kube
/// reports as an error.
pub fn leftovers(estimate: i64, left: &[ObjectMeta]) -> (Leftovers, bool) {
    if left.is_empty() {
        return (Leftovers::default(), false);
    }
    let mut finalizers = BTreeMap::new();
    for finalizer in left
        .iter()
        .flat_map(|meta| meta.finalizers.iter().flatten())
    {
        *finalizers.entry(finalizer.clone()).or_default() += 1;
    }
    let remaining = left.len();
    if estimate != 0 {
        return (
            Leftovers {
                estimate,
                remaining,
                finalizers,
            },
            false,
        );
    }
    if !finalizers.is_empty() {
        // Finalizers are a normal reason to wait, for a while.
        let estimate = FINALIZER_ESTIMATE_SECONDS;
        return (
            Leftovers {
                estimate,
                remaining,
                finalizers,
            },
            false,
        );
    }
    let leftovers = Leftovers {
        estimate,
        remaining,
        finalizers: BTreeMap::new(),
    };
    (leftovers, true)
}

/// The longest grace period of the pods still running (`estimateGracefulTerminationForPods`).
pub fn pod_grace_estimate(pods: &[Pod]) -> i64 {
    pods.iter()
        .filter(|pod| {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some(PHASE_SUCCEEDED | PHASE_FAILED))
        })
        .filter_map(|pod| pod.spec.as_ref()?.termination_grace_period_seconds)
        .fold(0, i64::max)
}

/// `estimate` seconds counted from the namespace's deletion: none left once they have passed.
pub fn estimate_left(estimate: i64, deleted_at: Timestamp, now: Timestamp) -> i64 {
    if now.duration_since(deleted_at) >= SignedDuration::from_secs(estimate) {
        0
    } else {
        estimate
    }
}

/// When to look again at a namespace whose content needs `estimate` more seconds (half of
/// it, and a second: kube's controller).
pub fn requeue_after(estimate: i64) -> Duration {
    Duration::from_secs(u64::try_from(estimate / 2 + 1).unwrap_or(1))
}

/// Whether `token` is among the namespace's `spec.finalizers`.
pub fn has_finalizer(namespace: &Namespace, token: &str) -> bool {
    namespace
        .spec
        .as_ref()
        .and_then(|spec| spec.finalizers.as_ref())
        .is_some_and(|finalizers| finalizers.iter().any(|f| f == token))
}

/// `finalizers` without `token`, as the sorted set kube writes (`finalizeNamespace`).
pub fn finalizers_without(finalizers: &[String], token: &str) -> Vec<String> {
    let kept: BTreeSet<&String> = finalizers.iter().filter(|f| *f != token).collect();
    kept.into_iter().cloned().collect()
}

fn failing(type_: &str, reason: &str, message: String, now: Timestamp) -> NamespaceCondition {
    NamespaceCondition {
        type_: type_.to_string(),
        status: "True".to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_transition_time: Some(Time(now)),
    }
}

fn content_failure_message(errors: &[String]) -> Option<String> {
    if errors.is_empty() {
        return None;
    }
    let mut sorted = errors.to_vec();
    sorted.sort();
    Some(format!(
        "Failed to delete all resource types, {} remaining: {}",
        errors.len(),
        sorted.join(", ")
    ))
}

/// The conditions `pass` makes fail (kube's `newConditions`); the others are fine.
pub fn failing_conditions(pass: &Pass, now: Timestamp) -> Vec<NamespaceCondition> {
    let mut conditions = Vec::new();
    if let Some(error) = &pass.discovery_error {
        conditions.push(failing(
            DELETION_DISCOVERY_FAILURE,
            "DiscoveryFailed",
            error.clone(),
            now,
        ));
    }
    if !pass.remaining.is_empty() {
        let mut remaining: Vec<String> = pass
            .remaining
            .iter()
            .map(|(resource, count)| format!("{resource} has {count} resource instances"))
            .collect();
        remaining.sort();
        let message = format!("Some resources are remaining: {}", remaining.join(", "));
        conditions.push(failing(
            CONTENT_REMAINING,
            "SomeResourcesRemain",
            message,
            now,
        ));
    }
    if !pass.finalizers.is_empty() {
        let mut held: Vec<String> = pass
            .finalizers
            .iter()
            .map(|(finalizer, count)| format!("{finalizer} in {count} resource instances"))
            .collect();
        held.sort();
        let message = format!(
            "Some content in the namespace has finalizers remaining: {}",
            held.join(", ")
        );
        conditions.push(failing(
            FINALIZERS_REMAINING,
            "SomeFinalizersRemain",
            message,
            now,
        ));
    }
    if let Some(message) = content_failure_message(&pass.content_errors) {
        conditions.push(failing(
            DELETION_CONTENT_FAILURE,
            "ContentDeletionFailed",
            message,
            now,
        ));
    }
    conditions
}

/// Brings the controller's conditions in `status` in line with `pass` (`updateConditions`):
/// each failing one set, each other one set to its `False` variant; a condition's transition
/// time moves only when its status changes. Returns whether anything changed.
pub fn update_conditions(status: &mut NamespaceStatus, pass: &Pass, now: Timestamp) -> bool {
    let failed = failing_conditions(pass, now);
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let mut changed = false;
    for type_ in CONDITION_TYPES {
        let wanted = failed
            .iter()
            .find(|condition| condition.type_ == type_)
            .cloned()
            .unwrap_or_else(|| {
                let (reason, message) = ok_condition(type_);
                NamespaceCondition {
                    type_: type_.to_string(),
                    status: "False".to_string(),
                    reason: Some(reason.to_string()),
                    message: Some(message.to_string()),
                    last_transition_time: Some(Time(now)),
                }
            });
        match conditions
            .iter_mut()
            .find(|condition| condition.type_ == type_)
        {
            None => {
                conditions.push(wanted);
                changed = true;
            }
            Some(old) => {
                if old.status == wanted.status
                    && old.reason == wanted.reason
                    && old.message == wanted.message
                {
                    continue;
                }
                if old.status != wanted.status {
                    old.last_transition_time = Some(Time(now));
                }
                old.status = wanted.status;
                old.reason = wanted.reason;
                old.message = wanted.message;
                changed = true;
            }
        }
    }
    changed
}
