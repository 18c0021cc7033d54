//! The ReplicaSet controller's decisions, free of I/O: which pods a ReplicaSet owns, how many
//! to create or which to delete, and the status to write — each as kube-controller-manager's
//! `replica_set.go`, `replica_set_utils.go` and `controller_ref_manager.go` compute it.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use keel_api::label_selector::{Selector, SelectorError};

use super::pods::{self, Ranked};

/// The most pods one sync creates or deletes (kube's `BurstReplicas`); the rest waits for the
/// next sync, after the watch has seen these.
pub const BURST_REPLICAS: usize = 500;
/// The first batch of creations; each successful batch doubles the next
/// (`controller.SlowStartInitialBatchSize`).
pub const SLOW_START_INITIAL_BATCH_SIZE: usize = 1;
/// The condition type set when pods cannot be created or deleted.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
pub const FAILED_CREATE: &str = "FailedCreate";
pub const FAILED_DELETE: &str = "FailedDelete";
pub const API_VERSION: &str = "apps/v1";
pub const KIND: &str = "ReplicaSet";
/// The longest object name (a DNS subdomain).
const MAX_NAME_LENGTH: usize = 253;

#[derive(Debug, thiserror::Error)]
#[error("ReplicaSet {key}: spec.selector: {source}")]
pub struct DecideError {
    pub key: String,
    #[source]
    pub source: SelectorError,
}

/// The ReplicaSet's selector (`metav1.LabelSelectorAsSelector`: `{}` selects every pod).
pub fn selector_of(rs: &ReplicaSet) -> Result<Selector, DecideError> {
    Selector::new(&rs.spec.selector).map_err(|source| DecideError {
        key: pods::object_key(&rs.metadata),
        source,
    })
}

/// `spec.replicas`; the API server defaults a missing one to 1.
pub fn desired_replicas(rs: &ReplicaSet) -> usize {
    usize::try_from(rs.spec.replicas.unwrap_or(1)).unwrap_or(0)
}

fn min_ready_seconds(rs: &ReplicaSet) -> i32 {
    rs.spec.min_ready_seconds.unwrap_or(0)
}

/// The outcome of kube's `ControllerRefManager.ClaimPods` over the active pods.
#[derive(Clone, Debug, Default)]
pub struct Claim {
    /// The ReplicaSet's pods, in the order given: those it controls that match its selector,
    /// and the orphans it adopts (as if every adoption succeeds).
    pub claimed: Vec<Arc<Pod>>,
    /// Orphans that match: to adopt (also in `claimed`).
    pub adopt: Vec<Arc<Pod>>,
    /// Pods it controls that no longer match: to release.
    pub release: Vec<Arc<Pod>>,
}

/// Claims pods for `rs`. A pod controlled by another object is never touched. A controlled pod
/// that no longer matches is released — unless the ReplicaSet is being deleted, then it is
/// left as it is. An orphan that matches is adopted — unless the ReplicaSet or the pod is being
/// deleted, or the pod is in another namespace.
pub fn claim_pods(rs: &ReplicaSet, selector: &Selector, pods: &[Arc<Pod>]) -> Claim {
    let uid = rs.metadata.uid.as_deref().unwrap_or_default();
    let namespace = rs.metadata.namespace.as_deref().unwrap_or_default();
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let mut claim = Claim::default();
    for pod in pods {
        let matches = selector.matches(pods::labels(&pod.metadata));
        match pods::controller_ref(&pod.metadata) {
            Some(owner) if owner.uid != uid => {}
            // Still claimed while the ReplicaSet is deleted: keeping it takes no action.
            Some(_) if matches => claim.claimed.push(pod.clone()),
            Some(_) if !deleting => claim.release.push(pod.clone()),
            Some(_) => {}
            None => {
                let pod_namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
                let adoptable = matches
                    && !deleting
                    && pod.metadata.deletion_timestamp.is_none()
                    && (namespace.is_empty() || namespace == pod_namespace);
                if adoptable {
                    claim.claimed.push(pod.clone());
                    claim.adopt.push(pod.clone());
                }
            }
        }
    }
    claim
}

/// The terminating pods `rs` controls and selects (`FilterClaimedPods` over
/// `FilterTerminatingPods`): `status.terminatingReplicas`. Orphans are not adopted for this.
pub fn claimed_terminating(
    rs: &ReplicaSet,
    selector: &Selector,
    pods: &[Arc<Pod>],
) -> Vec<Arc<Pod>> {
    let uid = rs.metadata.uid.as_deref().unwrap_or_default();
    pods.iter()
        .filter(|pod| pods::is_terminating(pod))
        .filter(|pod| pods::is_controlled_by(&pod.metadata, uid))
        .filter(|pod| selector.matches(pods::labels(&pod.metadata)))
        .cloned()
        .collect()
}

/// What `manageReplicas` does about the count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Diff {
    None,
    Create(usize),
    Delete(usize),
}

/// How many pods to create or delete with `active` claimed, at most `burst` at once.
pub fn replica_diff(rs: &ReplicaSet, active: usize, burst: usize) -> Diff {
    let desired = desired_replicas(rs);
    if active < desired {
        Diff::Create((desired - active).min(burst))
    } else if active > desired {
        Diff::Delete((active - desired).min(burst))
    } else {
        Diff::None
    }
}

/// The `count` pods of `active` to delete first (`getPodsToDelete`). Each is ranked by how
/// many active pods of `related` — the pods of every ReplicaSet with the same controller,
/// usually a Deployment — share its node, so that doubled-up nodes are thinned first.
pub fn pods_to_delete(
    active: &[Arc<Pod>],
    related: &[Arc<Pod>],
    count: usize,
    now: Timestamp,
) -> Vec<Arc<Pod>> {
    // All go: no need to rank them.
    if count >= active.len() {
        return active.to_vec();
    }
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for pod in related.iter().filter(|pod| pods::is_active(pod)) {
        *on_node.entry(pods::node_name(pod)).or_default() += 1;
    }
    let ranked: Vec<Ranked> = active
        .iter()
        .map(|pod| Ranked {
            pod: pod.clone(),
            rank: on_node.get(pods::node_name(pod)).copied().unwrap_or(0),
        })
        .collect();
    pods::sort_for_deletion(&ranked, Some(now))
        .into_iter()
        .take(count)
        .map(|ranked| ranked.pod)
        .collect()
}

/// The batch sizes in which `count` pods are created: `initial`, then doubling, the last one
/// cut to what remains (1, 2, 4, 8, … for kube's initial size of 1).
pub fn slow_start_batches(count: usize, initial: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let mut remaining = count;
    let mut size = remaining.min(initial);
    while size > 0 {
        batches.push(size);
        remaining -= size;
        size = size.saturating_mul(2).min(remaining);
    }
    batches
}

/// Calls `call` `count` times in [`slow_start_batches`], each batch's calls concurrently, and
/// stops after the first batch with a failure (`slowStartBatch`): a request that fails — a
/// quota, an admission webhook — likely fails for every pod, and trying them all would flood
/// the API server. Returns the successes and the first error.
pub async fn slow_start<F, Fut, E>(count: usize, initial: usize, mut call: F) -> (usize, Option<E>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut successes = 0;
    for size in slow_start_batches(count, initial) {
        let results = futures::future::join_all((0..size).map(|_| call())).await;
        let mut errors = results.into_iter().filter_map(Result::err);
        match errors.next() {
            None => successes += size,
            Some(error) => {
                successes += size - 1 - errors.count();
                return (successes, Some(error));
            }
        }
    }
    (successes, None)
}

/// The `ownerReferences` entry that makes `rs` its pods' controller.
pub fn controller_reference(rs: &ReplicaSet) -> OwnerReference {
    OwnerReference {
        api_version: API_VERSION.to_string(),
        kind: KIND.to_string(),
        name: rs.metadata.name.clone().unwrap_or_default(),
        uid: rs.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// `<name>-`, the prefix of the pods' generated names; the bare name when the dash would make
/// it too long (`getPodsPrefix`).
fn pod_name_prefix(name: &str) -> String {
    if name.len() < MAX_NAME_LENGTH {
        format!("{name}-")
    } else {
        name.to_string()
    }
}

/// The pod `rs` creates (`GetPodFromTemplate`): the template's labels, annotations,
/// finalizers and spec, a generated name, and `rs` as controller. The namespace comes from
/// the request.
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs.spec.template.clone().unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            generate_name: Some(pod_name_prefix(
                rs.metadata.name.as_deref().unwrap_or_default(),
            )),
            owner_references: Some(vec![controller_reference(rs)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        ..Pod::default()
    }
}

fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Go's `omitempty`: a zero count is not written, and reads back as absent.
fn nonzero(n: usize) -> Option<i32> {
    (n != 0).then(|| to_i32(n))
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

fn has_condition(status: &ReplicaSetStatus, kind: &str) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|condition| condition.type_.as_deref() == Some(kind))
}

/// A condition list with nothing in it is written as none.
fn conditions_or_none(conditions: Vec<ReplicaSetCondition>) -> Option<Vec<ReplicaSetCondition>> {
    (!conditions.is_empty()).then_some(conditions)
}

/// The status kube writes (`calculateStatus`) for `rs` with `active` claimed pods and
/// `terminating` claimed terminating ones. `manage_error` is the message of the failure to
/// create or delete pods in this sync: it sets the `ReplicaFailure` condition unless one is
/// there already; a sync without failure removes it. `observedGeneration` is left as it was:
/// it is set when the status is written.
pub fn calculate_status(
    rs: &ReplicaSet,
    active: &[Arc<Pod>],
    terminating: usize,
    manage_error: Option<&str>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let mut status = rs.status.clone().unwrap_or_default();
    let empty = BTreeMap::new();
    let template_labels = rs
        .spec
        .template
        .as_ref()
        .and_then(|template| template.metadata.as_ref())
        .and_then(|meta| meta.labels.as_ref())
        .unwrap_or(&empty);
    let min_ready = min_ready_seconds(rs);
    let (mut fully_labeled, mut ready, mut available) = (0, 0, 0);
    for pod in active {
        // The template's labels are a superset of the selector's: a pod may match the
        // selector without carrying all of them.
        let labels = pods::labels(&pod.metadata);
        if template_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
        {
            fully_labeled += 1;
        }
        if pods::is_ready(pod) {
            ready += 1;
            if pods::is_available(pod, min_ready, now) {
                available += 1;
            }
        }
    }

    let failing = has_condition(&status, REPLICA_FAILURE);
    match manage_error {
        Some(message) if !failing => {
            let desired = desired_replicas(rs);
            let reason = match active.len().cmp(&desired) {
                std::cmp::Ordering::Less => FAILED_CREATE,
                std::cmp::Ordering::Greater => FAILED_DELETE,
                std::cmp::Ordering::Equal => "",
            };
            let mut conditions = status.conditions.take().unwrap_or_default();
            conditions.push(ReplicaSetCondition {
                type_: Some(REPLICA_FAILURE.to_string()),
                status: Some("True".to_string()),
                reason: non_empty(reason),
                message: non_empty(message),
                // `metav1.Time` is written in whole seconds.
                last_transition_time: Some(Time(
                    Timestamp::from_second(now.as_second()).unwrap_or(now),
                )),
            });
            status.conditions = Some(conditions);
        }
        None if failing => {
            let conditions = status.conditions.take().unwrap_or_default();
            status.conditions = conditions_or_none(
                conditions
                    .into_iter()
                    .filter(|condition| condition.type_.as_deref() != Some(REPLICA_FAILURE))
                    .collect(),
            );
        }
        _ => {}
    }

    status.replicas = to_i32(active.len());
    status.fully_labeled_replicas = nonzero(fully_labeled);
    status.ready_replicas = nonzero(ready);
    status.available_replicas = nonzero(available);
    // DeploymentReplicaSetTerminatingReplicas is on (beta since 1.35): always written.
    status.terminating_replicas = Some(to_i32(terminating));
    status
}

/// Whether `status` differs from what `rs` carries, or `rs`'s generation is not observed yet
/// (`updateReplicaSetStatus`'s steady-state check).
pub fn status_needs_update(rs: &ReplicaSet, status: &ReplicaSetStatus) -> bool {
    let old = rs.status.clone().unwrap_or_default();
    let zero = |n: Option<i32>| n.unwrap_or(0);
    let conditions = |s: &ReplicaSetStatus| s.conditions.clone().unwrap_or_default();
    let steady = old.replicas == status.replicas
        && zero(old.fully_labeled_replicas) == zero(status.fully_labeled_replicas)
        && zero(old.ready_replicas) == zero(status.ready_replicas)
        && zero(old.available_replicas) == zero(status.available_replicas)
        && old.terminating_replicas == status.terminating_replicas
        && rs.metadata.generation.unwrap_or(0) == old.observed_generation.unwrap_or(0)
        && conditions(&old) == conditions(status);
    !steady
}

/// When to look again at a ReplicaSet whose ready pods are not all available yet: just after
/// the first of them has been ready for `minReadySeconds`. kube adds a second against clock
/// skew and millisecond rounding, and so does this.
pub fn next_availability_check(
    rs: &ReplicaSet,
    active: &[Arc<Pod>],
    now: Timestamp,
) -> Option<Duration> {
    let min_ready = min_ready_seconds(rs);
    if min_ready <= 0 {
        return None;
    }
    active
        .iter()
        .filter(|pod| pods::is_ready(pod) && !pods::is_available(pod, min_ready, now))
        .filter_map(|pod| pods::ready_condition(pod)?.last_transition_time.as_ref())
        .filter_map(|since| {
            since
                .0
                .checked_add(SignedDuration::from_secs(i64::from(min_ready)))
                .ok()
        })
        .map(|available_at| {
            let nanos = available_at.duration_since(now).as_nanos();
            if nanos <= 0 {
                Duration::ZERO
            } else {
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
        })
        .min()
        .map(|wait| wait + Duration::from_secs(1))
}

/// The ReplicaSets among `candidates` that would adopt `pod` (`GetPodReplicaSets`): same
/// namespace, a selector that parses, is not empty and matches. An empty selector matches
/// nothing here, not everything: no stray ReplicaSet adopts every orphan.
pub fn replicasets_selecting<'a, I>(candidates: I, pod: &Pod) -> Vec<Arc<ReplicaSet>>
where
    I: IntoIterator<Item = &'a Arc<ReplicaSet>>,
{
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    candidates
        .into_iter()
        .filter(|rs| rs.metadata.namespace.as_deref().unwrap_or_default() == namespace)
        .filter(|rs| {
            Selector::new(&rs.spec.selector).is_ok_and(|selector| {
                !selector.is_everything() && selector.matches(pods::labels(&pod.metadata))
            })
        })
        .cloned()
        .collect()
}

/// What a sync would do to the pods' count.
#[derive(Clone, Debug)]
pub enum Action {
    Nothing,
    Create { count: usize },
    Delete { victims: Vec<Arc<Pod>> },
}

/// The inputs of one sync.
pub struct Input<'a> {
    pub replica_set: &'a ReplicaSet,
    /// The pods of the ReplicaSet's namespace (or at least those it controls and the orphans).
    pub pods: &'a [Arc<Pod>],
    /// The pods of every ReplicaSet with the same controller, to rank deletions; empty for a
    /// ReplicaSet without controller (kube ranks all its pods 0 then).
    pub related_pods: &'a [Arc<Pod>],
    /// Whether the ReplicaSet's expectations are satisfied; if not, only status is computed.
    pub expectations_satisfied: bool,
    pub burst_replicas: usize,
    pub now: Timestamp,
}

/// Everything one sync decides, assuming adoptions and creates succeed.
#[derive(Clone, Debug)]
pub struct Decision {
    pub claim: Claim,
    pub action: Action,
    pub status: ReplicaSetStatus,
}

/// One sync's decisions (`syncReplicaSet` without its requests).
pub fn decide(input: &Input<'_>) -> Result<Decision, DecideError> {
    let rs = input.replica_set;
    let selector = selector_of(rs)?;
    let active: Vec<Arc<Pod>> = input
        .pods
        .iter()
        .filter(|pod| pods::is_active(pod))
        .cloned()
        .collect();
    let claim = claim_pods(rs, &selector, &active);
    let terminating = claimed_terminating(rs, &selector, input.pods).len();
    let mut action = Action::Nothing;
    if input.expectations_satisfied && rs.metadata.deletion_timestamp.is_none() {
        action = match replica_diff(rs, claim.claimed.len(), input.burst_replicas) {
            Diff::None => Action::Nothing,
            Diff::Create(count) => Action::Create { count },
            Diff::Delete(count) => Action::Delete {
                victims: pods_to_delete(&claim.claimed, input.related_pods, count, input.now),
            },
        };
    }
    let status = calculate_status(rs, &claim.claimed, terminating, None, input.now);
    Ok(Decision {
        claim,
        action,
        status,
    })
}
