//! One sync of one ReplicaSet (kube's `syncReplicaSet`): read the caches, claim pods, create or
//! delete, write status. The decisions are [`super::decide`](mod@super::decide)'s; this carries them out.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::jiff::Timestamp;
use keel_events::Recorder;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Client;
use serde_json::json;
use tokio::time::Instant;

use super::decide::{self, Claim, Diff, SLOW_START_INITIAL_BATCH_SIZE};
use super::events;
use super::expectations::Expectations;
use super::index::PodCache;
use super::pods;
use crate::api_errors::{is_not_found, namespace_terminating, status_of};
use crate::workqueue::WorkQueue;

/// What the watch tasks and workers share.
pub(super) struct Context {
    pub(super) client: Client,
    pub(super) replicasets: Store<ReplicaSet>,
    pub(super) pods: PodCache,
    pub(super) expectations: Expectations,
    pub(super) queue: Arc<WorkQueue>,
    pub(super) burst_replicas: usize,
    /// One wait for the caches, shared by the workers.
    pub(super) synced: crate::informer::CachesSynced,
    /// Events about the ReplicaSets, never waited for.
    pub(super) recorder: Recorder,
}

/// Status writes retried after a conflict, with the ReplicaSet read afresh
/// (`statusUpdateRetries`).
const STATUS_UPDATE_RETRIES: usize = 1;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("creating a pod for {replicaset}: {source}")]
    Create {
        replicaset: String,
        #[source]
        source: kube::Error,
    },
    /// kube's message, word for word: it ends up in the `ReplicaFailure` condition.
    #[error("unable to create pods, no labels")]
    NoLabels,
    #[error("deleting pod {pod}: {source}")]
    Delete {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("can't adopt pods for {replicaset}: {reason}")]
    CannotAdopt { replicaset: String, reason: String },
    #[error("adopting pod {pod}: {source}")]
    Adopt {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("releasing pod {pod}: {source}")]
    Release {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating the status of {replicaset}: {source}")]
    Status {
        replicaset: String,
        #[source]
        source: kube::Error,
    },
}

impl SyncError {
    /// The message of the `ReplicaFailure` condition: the API server's own for a refused
    /// request (as kube writes `err.Error()` of a status error), this error's otherwise.
    pub fn condition_message(&self) -> String {
        match self {
            SyncError::Create { source, .. } | SyncError::Delete { source, .. } => match source {
                kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
                other => other.to_string(),
            },
            other => other.to_string(),
        }
    }
}

/// Syncs the ReplicaSet with `key`; on success, the delay after which to sync it again, if
/// any (pods becoming available).
pub(super) async fn sync(context: &Context, key: &str) -> Result<Option<Duration>, SyncError> {
    let Some((namespace, name)) = key.split_once('/') else {
        tracing::warn!(%key, "not a namespace/name key");
        return Ok(None);
    };
    let Some(rs) = context
        .replicasets
        .get(&ObjectRef::new(name).within(namespace))
    else {
        // Deleted: nothing to wait for any more.
        context.expectations.delete(key);
        return Ok(None);
    };
    let needs_sync = context.expectations.satisfied(key, Instant::now());
    let selector = match decide::selector_of(&rs) {
        Ok(selector) => selector,
        Err(error) => {
            // Retrying does not fix a selector; its next update will be synced.
            tracing::warn!(%error, "ReplicaSet not synced");
            return Ok(None);
        }
    };
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let pods = context.pods.controlled_or_orphan(&uid, namespace);
    let active: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|pod| pods::is_active(pod))
        .cloned()
        .collect();
    let claim = decide::claim_pods(&rs, &selector, &active);
    let claimed = carry_out_claim(context, &rs, claim).await?;
    let terminating = decide::claimed_terminating(&rs, &selector, &pods).len();

    let mut manage_error = None;
    if needs_sync && rs.metadata.deletion_timestamp.is_none() {
        manage_error = manage_replicas(context, key, &rs, &claimed).await.err();
    }

    let now = Timestamp::now();
    let message = manage_error.as_ref().map(SyncError::condition_message);
    let status = decide::calculate_status(&rs, &claimed, terminating, message.as_deref(), now);
    update_status(context, &rs, status).await?;
    match manage_error {
        Some(error) => Err(error),
        None => Ok(decide::next_availability_check(&rs, &claimed, now)),
    }
}

/// Adopts and releases as `claim` says; returns the pods the ReplicaSet owns after.
async fn carry_out_claim(
    context: &Context,
    rs: &ReplicaSet,
    claim: Claim,
) -> Result<Vec<Arc<Pod>>, SyncError> {
    let namespace = rs.metadata.namespace.as_deref().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(context.client.clone(), namespace);
    let mut first_error = None;
    // Pods that vanished before they could be adopted.
    let mut gone = HashSet::new();
    if !claim.adopt.is_empty() {
        // Checked once, before the first adoption.
        match recheck_deletion(context, rs).await {
            Err(error) => first_error = Some(error),
            Ok(()) => {
                for pod in &claim.adopt {
                    match adopt(&api, rs, pod).await {
                        Ok(()) => {}
                        Err(error) if is_not_found(&error) => {
                            gone.insert(pods::object_key(&pod.metadata));
                        }
                        Err(source) => {
                            first_error.get_or_insert(SyncError::Adopt {
                                pod: pods::object_key(&pod.metadata),
                                source,
                            });
                        }
                    }
                }
            }
        }
    }
    for pod in &claim.release {
        if let Err(source) = release(&api, rs, pod).await {
            first_error.get_or_insert(SyncError::Release {
                pod: pods::object_key(&pod.metadata),
                source,
            });
        }
    }
    // As kube: any failure fails the sync before replicas are managed, since the count of
    // owned pods is not known.
    if let Some(error) = first_error {
        return Err(error);
    }
    Ok(claim
        .claimed
        .into_iter()
        .filter(|pod| !gone.contains(&pods::object_key(&pod.metadata)))
        .collect())
}

/// Re-reads the ReplicaSet from the API server, not the cache, before adopting
/// (`RecheckDeletionTimestamp`): a ReplicaSet deleted a moment ago must not adopt pods that
/// the garbage collector would then delete with it.
async fn recheck_deletion(context: &Context, rs: &ReplicaSet) -> Result<(), SyncError> {
    let key = pods::object_key(&rs.metadata);
    let namespace = rs.metadata.namespace.as_deref().unwrap_or_default();
    let name = rs.metadata.name.as_deref().unwrap_or_default();
    let api: Api<ReplicaSet> = Api::namespaced(context.client.clone(), namespace);
    let cannot = |reason: String| SyncError::CannotAdopt {
        replicaset: key.clone(),
        reason,
    };
    let fresh = api
        .get(name)
        .await
        .map_err(|error| cannot(format!("can't recheck DeletionTimestamp: {error}")))?;
    if fresh.metadata.uid != rs.metadata.uid {
        return Err(cannot(format!(
            "original ReplicaSet {key} is gone: got uid {}, wanted {}",
            fresh.metadata.uid.as_deref().unwrap_or_default(),
            rs.metadata.uid.as_deref().unwrap_or_default(),
        )));
    }
    if let Some(deleted) = &fresh.metadata.deletion_timestamp {
        return Err(cannot(format!(
            "{key} has just been deleted at {}",
            deleted.0
        )));
    }
    Ok(())
}

/// Makes `rs` the controller of the orphan `pod`. The pod's uid in the patch is a
/// precondition: a pod deleted and created again under the same name is refused.
async fn adopt(api: &Api<Pod>, rs: &ReplicaSet, pod: &Pod) -> Result<(), kube::Error> {
    let patch = json!({"metadata": {
        "ownerReferences": [decide::controller_reference(rs)],
        "uid": pod.metadata.uid,
    }});
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    // Strategic: `ownerReferences` merge by uid, the pod's other owners stay.
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .map(|_| ())
}

/// Removes `rs` from `pod`'s owners. A pod gone, or recreated (the uid precondition fails as
/// an invalid patch), needs no release.
async fn release(api: &Api<Pod>, rs: &ReplicaSet, pod: &Pod) -> Result<(), kube::Error> {
    let patch = json!({"metadata": {
        "ownerReferences": [{"$patch": "delete", "uid": rs.metadata.uid}],
        "uid": pod.metadata.uid,
    }});
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    match api
        .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(error)
            if status_of(&error)
                .is_some_and(|status| status.is_not_found() || status.is_invalid()) =>
        {
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// Creates or deletes pods toward `spec.replicas` (`manageReplicas`).
async fn manage_replicas(
    context: &Context,
    key: &str,
    rs: &ReplicaSet,
    claimed: &[Arc<Pod>],
) -> Result<(), SyncError> {
    match decide::replica_diff(rs, claimed.len(), context.burst_replicas) {
        Diff::None => Ok(()),
        Diff::Create(count) => create_pods(context, key, rs, count).await,
        Diff::Delete(count) => delete_pods(context, key, rs, claimed, count).await,
    }
}

async fn create_pods(
    context: &Context,
    key: &str,
    rs: &ReplicaSet,
    count: usize,
) -> Result<(), SyncError> {
    tracing::debug!(%key, count, "too few replicas, creating");
    // Expected before any request is sent: a pod may show up in the watch before its create
    // returns.
    context
        .expectations
        .expect_creations(key, count, Instant::now());
    let pod = decide::pod_from_template(rs);
    let namespace = rs.metadata.namespace.as_deref().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(context.client.clone(), namespace);
    let involved = keel_events::reference(rs);
    let (created, error) = decide::slow_start(count, SLOW_START_INITIAL_BATCH_SIZE, || {
        create_pod(&api, &pod, key, &context.recorder, &involved)
    })
    .await;
    // The pods never created (failed or skipped) will not be observed: stop waiting for them.
    let missing = count - created;
    if missing > 0 {
        tracing::debug!(%key, missing, "slow-start failure, lowering expectations");
        context.expectations.lower_creations(key, missing);
    }
    error.map_or(Ok(()), Err)
}

/// Creates one pod of the ReplicaSet `key` and records the outcome on it (`involved`).
async fn create_pod(
    api: &Api<Pod>,
    pod: &Pod,
    key: &str,
    recorder: &Recorder,
    involved: &ObjectReference,
) -> Result<(), SyncError> {
    if pod
        .metadata
        .labels
        .as_ref()
        .is_none_or(|labels| labels.is_empty())
    {
        return Err(SyncError::NoLabels);
    }
    let result = api.create(&PostParams::default(), pod).await;
    match &result {
        Ok(created) => {
            let name = created.metadata.name.as_deref().unwrap_or_default();
            events::created(name).record(recorder, involved);
        }
        Err(error) => {
            if let Some(note) = events::create_failed(error) {
                note.record(recorder, involved);
            }
        }
    }
    match result {
        Ok(_) => Ok(()),
        // Every create in a namespace being deleted fails; kube does not count that as a
        // failure of the ReplicaSet.
        Err(error) if namespace_terminating(&error) => Ok(()),
        Err(source) => Err(SyncError::Create {
            replicaset: key.to_string(),
            source,
        }),
    }
}

/// The pods of every ReplicaSet with the same controller as `rs` (`getIndirectlyRelatedPods`),
/// to rank deletion victims by co-location; none when `rs` has no controller.
fn related_pods(context: &Context, rs: &ReplicaSet) -> Vec<Arc<Pod>> {
    let Some(owner) = pods::controller_ref(&rs.metadata) else {
        return Vec::new();
    };
    let namespace = rs.metadata.namespace.clone();
    let siblings = context.replicasets.state_filter(|other| {
        other.metadata.namespace == namespace && pods::is_controlled_by(&other.metadata, &owner.uid)
    });
    let mut seen = HashSet::new();
    let mut related = Vec::new();
    for sibling in siblings {
        let uid = sibling.metadata.uid.as_deref().unwrap_or_default();
        for pod in context.pods.controlled_by(uid) {
            if seen.insert(pod.metadata.uid.clone()) {
                related.push(pod);
            }
        }
    }
    related
}

async fn delete_pods(
    context: &Context,
    key: &str,
    rs: &ReplicaSet,
    claimed: &[Arc<Pod>],
    count: usize,
) -> Result<(), SyncError> {
    tracing::debug!(%key, count, "too many replicas, deleting");
    let related = related_pods(context, rs);
    let victims = decide::pods_to_delete(claimed, &related, count, Timestamp::now());
    // By key, so that the deletion is counted once whether the watch first shows the
    // deletionTimestamp or the removal.
    context.expectations.expect_deletions(
        key,
        victims.iter().map(|pod| pods::object_key(&pod.metadata)),
        Instant::now(),
    );
    let namespace = rs.metadata.namespace.as_deref().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(context.client.clone(), namespace);
    let results = futures::future::join_all(victims.iter().map(|pod| delete_pod(&api, pod))).await;
    let involved = keel_events::reference(rs);
    let mut first_error = None;
    for (pod, result) in victims.iter().zip(results) {
        let note = match &result {
            Ok(()) => Some(events::deleted(
                pod.metadata.name.as_deref().unwrap_or_default(),
            )),
            Err(error) => events::delete_failed(error),
        };
        if let Some(note) = note {
            note.record(&context.recorder, &involved);
        }
        let Err(source) = result else {
            continue;
        };
        let pod_key = pods::object_key(&pod.metadata);
        // The watch will not show this deletion: stop waiting for it.
        context.expectations.deletion_observed(key, &pod_key);
        // Gone already (or replaced by a namesake, the uid precondition): not a failure.
        let gone =
            status_of(&source).is_some_and(|status| status.is_not_found() || status.is_conflict());
        if !gone {
            first_error.get_or_insert(SyncError::Delete {
                pod: pod_key,
                source,
            });
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn delete_pod(api: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    let params = DeleteParams {
        // Only this pod: not a new one that took its name meanwhile.
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    api.delete(name, &params).await.map(|_| ())
}

/// Writes `status` through the `status` subresource unless nothing changed
/// (`updateReplicaSetStatus`). On a conflict, reads the ReplicaSet again and retries once; a
/// further failure requeues the ReplicaSet.
async fn update_status(
    context: &Context,
    rs: &ReplicaSet,
    status: ReplicaSetStatus,
) -> Result<(), SyncError> {
    if !decide::status_needs_update(rs, &status) {
        return Ok(());
    }
    let mut status = status;
    // The generation acted on, not a newer one a retry may read.
    status.observed_generation = rs.metadata.generation;
    let namespace = rs.metadata.namespace.as_deref().unwrap_or_default();
    let name = rs.metadata.name.as_deref().unwrap_or_default();
    let api: Api<ReplicaSet> = Api::namespaced(context.client.clone(), namespace);
    let failed = |source: kube::Error| SyncError::Status {
        replicaset: pods::object_key(&rs.metadata),
        source,
    };
    let mut current = rs.clone();
    let mut attempt = 0;
    loop {
        current.status = Some(status.clone());
        match api
            .replace_status(name, &PostParams::default(), &current)
            .await
        {
            Ok(_) => return Ok(()),
            Err(error) if attempt >= STATUS_UPDATE_RETRIES => return Err(failed(error)),
            Err(error) => {
                tracing::debug!(%name, %error, "status update refused, retrying");
                attempt += 1;
                current = api.get(name).await.map_err(failed)?;
            }
        }
    }
}
