//! What the ReplicaSet controller reads from a pod, as kube's `pkg/api/v1/pod` and
//! `pkg/controller/controller_utils.go` define it: active, terminating, ready, available, and
//! the order in which surplus pods are deleted.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The annotation by which users rank pods for deletion (lower goes first).
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

const PHASE_UNKNOWN: &str = "Unknown";
const PHASE_RUNNING: &str = "Running";
const PHASE_SUCCEEDED: &str = "Succeeded";
const PHASE_FAILED: &str = "Failed";

/// `namespace/name`, the key client-go's `MetaNamespaceKeyFunc` gives an object (`name` for
/// cluster-scoped ones).
pub fn object_key(meta: &ObjectMeta) -> String {
    let name = meta.name.as_deref().unwrap_or_default();
    match meta.namespace.as_deref() {
        Some(namespace) if !namespace.is_empty() => format!("{namespace}/{name}"),
        _ => name.to_string(),
    }
}

/// The owner reference marked `controller: true`, as `metav1.GetControllerOf`.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|owner| owner.controller == Some(true))
}

/// Whether `meta`'s controller is the object with `uid` (`metav1.IsControlledBy`).
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_ref(meta).is_some_and(|owner| owner.uid == uid)
}

/// The labels of an object; a missing map is an empty one.
pub fn labels(meta: &ObjectMeta) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    meta.labels.as_ref().unwrap_or(&EMPTY)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|status| status.phase.as_deref())
        .unwrap_or_default()
}

/// The pod's node, `""` while unscheduled.
pub fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.node_name.as_deref())
        .unwrap_or_default()
}

/// Succeeded or Failed: its containers will not run again.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), PHASE_SUCCEEDED | PHASE_FAILED)
}

/// Neither terminal nor being deleted (`controller.IsPodActive`): counts as a replica.
pub fn is_active(pod: &Pod) -> bool {
    !is_terminal(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// Being deleted but still running (`controller.IsPodTerminating`): counted apart, in
/// `status.terminatingReplicas`.
pub fn is_terminating(pod: &Pod) -> bool {
    !is_terminal(pod) && pod.metadata.deletion_timestamp.is_some()
}

/// The pod's first `Ready` condition (`podutil.GetPodReadyCondition`).
pub fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|condition| condition.type_ == "Ready")
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|condition| condition.status == "True")
}

/// Ready for more than `min_ready_seconds` at `now` (`podutil.IsPodAvailable`). With
/// `min_ready_seconds` above zero, a ready pod without a transition time never is.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds == 0 {
        return true;
    }
    ready_condition(pod)
        .and_then(|condition| condition.last_transition_time.as_ref())
        .and_then(|since| {
            since
                .0
                .checked_add(SignedDuration::from_secs(i64::from(min_ready_seconds)))
                .ok()
        })
        .is_some_and(|available_at| available_at < now)
}

/// When the pod last became ready (`podReadyTime`); `None` (Go's zero time) when it is not
/// ready or the condition has no transition time.
fn ready_since(pod: &Pod) -> Option<Timestamp> {
    if !is_ready(pod) {
        return None;
    }
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|condition| condition.type_ == "Ready" && condition.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|time| time.0)
}

/// The most restarts of any of the pod's containers.
fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|status| status.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|container| container.restart_count)
        .max()
        .unwrap_or(0)
}

/// The pod's deletion cost (`helper.GetDeletionCostFromPodAnnotations`): an int32 written
/// without `+` or leading zeros; anything else counts as 0.
pub fn deletion_cost(pod: &Pod) -> i32 {
    let Some(value) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(POD_DELETION_COST))
    else {
        return 0;
    };
    let valid_start = match value.as_bytes().first() {
        Some(b'-' | b'1'..=b'9') => true,
        Some(b'0') => value == "0",
        _ => false,
    };
    if !valid_start {
        return 0;
    }
    value.parse().unwrap_or(0)
}

/// Pending < Unknown < Running; any other phase ranks with Pending (kube looks the phase up
/// in a map, and a missing entry reads as 0, Pending's ordinal).
fn phase_ordinal(pod: &Pod) -> u8 {
    match phase(pod) {
        PHASE_UNKNOWN => 1,
        PHASE_RUNNING => 2,
        _ => 0,
    }
}

/// Go's `afterOrZero`: a zero time first, otherwise the later one first.
fn after_or_zero(first: Option<Timestamp>, second: Option<Timestamp>) -> bool {
    match (first, second) {
        (Some(first), Some(second)) => first > second,
        (first, _) => first.is_none(),
    }
}

/// ⌊log2(now − time in nanoseconds)⌋, −1 for a time not before `now`.
fn log_rank(time: Timestamp, now: Timestamp) -> i64 {
    let nanos = now.duration_since(time).as_nanos();
    if nanos > 0 {
        // As kube: through a float, truncated.
        (nanos as f64).log2() as i64
    } else {
        -1
    }
}

/// Compares two times for step 6 and 8 of [`deletes_before`]: `Some(true)` if `first` goes
/// first, `None` when they do not decide. With `now`, times within the same power of two of
/// age are equivalent and the uids break the tie (LogarithmicScaleDown, on since 1.22).
fn compare_times(
    first: Option<Timestamp>,
    second: Option<Timestamp>,
    now: Option<Timestamp>,
    uids: (&str, &str),
) -> Option<bool> {
    if first == second {
        return None;
    }
    let (Some(now), Some(first_time), Some(second_time)) = (now, first, second) else {
        return Some(after_or_zero(first, second));
    };
    let diff = log_rank(first_time, now) - log_rank(second_time, now);
    if diff == 0 {
        return Some(uids.0 < uids.1);
    }
    Some(diff < 0)
}

/// A pod and its rank: how many active pods of its owner's family share its node.
#[derive(Clone, Debug)]
pub struct Ranked {
    pub pod: Arc<Pod>,
    pub rank: usize,
}

/// Whether `a` should be deleted before `b` (`controller.ActivePodsWithRanks.Less`):
/// 1. unassigned before assigned;
/// 2. Pending before Unknown before Running;
/// 3. not ready before ready;
/// 4. lower `controller.kubernetes.io/pod-deletion-cost` first;
/// 5. higher rank (more pods of the family on the same node) first;
/// 6. both ready: ready for a shorter time first (a missing time first of all);
/// 7. more container restarts first;
/// 8. created more recently first (a missing time first of all).
///
/// With `now`, 6 and 8 compare ages on a log2 scale, ties broken by uid, so that among
/// equivalent pods the victims are spread pseudo-randomly; without it, exactly (as
/// `controller.ActivePods`).
pub fn deletes_before(a: &Ranked, b: &Ranked, now: Option<Timestamp>) -> bool {
    let (pa, pb) = (&*a.pod, &*b.pod);
    let (node_a, node_b) = (node_name(pa), node_name(pb));
    if node_a != node_b && (node_a.is_empty() || node_b.is_empty()) {
        return node_a.is_empty();
    }
    let (phase_a, phase_b) = (phase_ordinal(pa), phase_ordinal(pb));
    if phase_a != phase_b {
        return phase_a < phase_b;
    }
    let (ready_a, ready_b) = (is_ready(pa), is_ready(pb));
    if ready_a != ready_b {
        return !ready_a;
    }
    let (cost_a, cost_b) = (deletion_cost(pa), deletion_cost(pb));
    if cost_a != cost_b {
        return cost_a < cost_b;
    }
    if a.rank != b.rank {
        return a.rank > b.rank;
    }
    let uids = (
        pa.metadata.uid.as_deref().unwrap_or_default(),
        pb.metadata.uid.as_deref().unwrap_or_default(),
    );
    if ready_a && ready_b {
        if let Some(first) = compare_times(ready_since(pa), ready_since(pb), now, uids) {
            return first;
        }
    }
    let (restarts_a, restarts_b) = (max_restarts(pa), max_restarts(pb));
    if restarts_a != restarts_b {
        return restarts_a > restarts_b;
    }
    let created = |pod: &Pod| pod.metadata.creation_timestamp.as_ref().map(|time| time.0);
    compare_times(created(pa), created(pb), now, uids).unwrap_or(false)
}

/// Sorts `pods` so that the first are the first to delete.
///
/// A merge sort of its own rather than `sort_by`: kube's comparison is not a strict weak order
/// in corner cases (equal ready times fall through to later rules, different ones within a
/// log2 bucket go by uid), and the standard library's sorts may panic on such a comparison.
pub fn sort_for_deletion(pods: &[Ranked], now: Option<Timestamp>) -> Vec<Ranked> {
    merge_sort(pods, &|a: &Ranked, b: &Ranked| deletes_before(a, b, now))
}

fn merge_sort<T: Clone, F: Fn(&T, &T) -> bool>(items: &[T], less: &F) -> Vec<T> {
    if items.len() <= 1 {
        return items.to_vec();
    }
    let (left, right) = items.split_at(items.len() / 2);
    let left = merge_sort(left, less);
    let right = merge_sort(right, less);
    let mut merged = Vec::with_capacity(items.len());
    let (mut i, mut j) = (0, 0);
    while i < left.len() && j < right.len() {
        // Stable: the right one goes first only when strictly before.
        if less(&right[j], &left[i]) {
            merged.push(right[j].clone());
            j += 1;
        } else {
            merged.push(left[i].clone());
            i += 1;
        }
    }
    merged.extend_from_slice(&left[i..]);
    merged.extend_from_slice(&right[j..]);
    merged
}
