//! The collector's requests: one attempt to delete (kube's `attemptToDeleteItem`) or to orphan
//! (`attemptToOrphanWorker`) one node, carried out against the API server. The decisions are
//! [`super::decide`]'s and the graph is [`super::graph`]'s; this reads the live objects they
//! need and writes what they decide.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use keel_events::Recorder;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::Client;
use serde_json::Value;

use super::decide::{self, Decision, OwnerState, Propagation};
use super::graph::{Graph, Identity, Node, Work, FINALIZER_FOREGROUND, FINALIZER_ORPHAN};
use super::kinds::{self, Kind};
use crate::api_errors::{is_conflict, is_not_found};
use crate::workqueue::WorkQueue;

/// Writes of a finalizer list retried after a conflict, each on a fresh read (client-go's
/// `retry.DefaultBackoff` allows four tries; one more costs nothing).
const FINALIZER_UPDATE_ATTEMPTS: usize = 5;

/// What the watch tasks and the workers share.
pub(super) struct Context {
    pub(super) client: Client,
    pub(super) kinds: Vec<Kind>,
    pub(super) graph: Mutex<Graph>,
    pub(super) delete_queue: Arc<WorkQueue>,
    pub(super) orphan_queue: Arc<WorkQueue>,
    /// `OwnerRefInvalidNamespace` events, never waited for.
    pub(super) recorder: Recorder,
}

/// A failed attempt; the node is retried with the queue's backoff.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// An owner reference (or a virtual node) names a kind the collector does not serve.
    #[error("{kind} in {api_version} is not a kind the garbage collector knows")]
    UnknownKind { api_version: String, kind: String },
    /// A cluster-scoped object names a namespaced owner: invalid, and retrying does not help.
    #[error("cluster-scoped {item} cannot refer to the namespaced owner {owner}")]
    NamespacedOwner { item: String, owner: String },
    #[error("{operation} {object}: {source}")]
    Request {
        operation: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("orphaning the dependents of {owner} ({failed} failed): {source}")]
    Orphaning {
        owner: String,
        failed: usize,
        #[source]
        source: Box<GcError>,
    },
}

/// How an attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Done,
    /// The node is still virtual though its object exists: look again until a watch shows it,
    /// so that a virtual node added and removed while a watch was down cannot linger.
    Requeue,
}

impl Context {
    pub(super) fn graph(&self) -> MutexGuard<'_, Graph> {
        // Every critical section leaves the graph consistent, so a panic elsewhere while the
        // lock was held does not make it unusable.
        self.graph.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues what a change to the graph asks for.
    pub(super) fn queue(&self, work: Vec<Work>) {
        for item in work {
            match item {
                Work::Delete(uid) => self.delete_queue.add(&uid),
                Work::DeleteAfterBackoff(uid) => self.delete_queue.add_rate_limited(&uid),
                Work::Orphan(uid) => self.orphan_queue.add(&uid),
            }
        }
    }

    fn kind(&self, api_version: &str, kind: &str) -> Result<&Kind, GcError> {
        kinds::find(&self.kinds, api_version, kind).ok_or_else(|| GcError::UnknownKind {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        })
    }

    fn api_of(&self, kind: &Kind, namespace: &str) -> Api<DynamicObject> {
        if kind.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &kind.resource)
        } else {
            Api::all_with(self.client.clone(), &kind.resource)
        }
    }

    /// Where the object `identity` is served; `None` for a namespaced kind without a
    /// namespace (a virtual owner named by a cluster-scoped object), which cannot exist.
    fn api(&self, identity: &Identity) -> Result<Option<Api<DynamicObject>>, GcError> {
        let kind = self.kind(&identity.api_version, &identity.kind)?;
        if kind.namespaced && identity.namespace.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.api_of(kind, &identity.namespace)))
    }

    /// `identity` without a namespace when its kind is cluster-scoped: a virtual owner
    /// carries the namespace of the dependent that named it, which is no part of the name of a
    /// cluster-scoped object verified absent.
    fn scoped(&self, identity: &Identity) -> Identity {
        let mut scoped = identity.clone();
        if kinds::find(&self.kinds, &identity.api_version, &identity.kind)
            .is_some_and(|kind| !kind.namespaced)
        {
            scoped.namespace.clear();
        }
        scoped
    }

    /// The live metadata of the object named as `identity` names it (any uid), if any.
    async fn get_live(&self, identity: &Identity) -> Result<Option<ObjectMeta>, GcError> {
        let Some(api) = self.api(identity)? else {
            return Ok(None);
        };
        api.get_metadata_opt(&identity.name)
            .await
            .map(|found| found.map(|partial| partial.metadata))
            .map_err(|source| GcError::Request {
                operation: "getting",
                object: identity.to_string(),
                source,
            })
    }
}

/// One attempt on the node `uid`: verify a virtual node, finish a foreground deletion, or
/// delete an object whose owners are all gone.
pub(super) async fn attempt_to_delete(context: &Context, uid: &str) -> Result<Outcome, GcError> {
    let item = context.graph().get(uid).cloned();
    let Some(item) = item else {
        // Removed from the graph meanwhile (its deletion was observed).
        return Ok(Outcome::Done);
    };
    // Being deleted is a one-way trip: its dependents are looked at when it is gone.
    if item.being_deleted && !item.deleting_dependents {
        return Ok(Outcome::Done);
    }
    let latest = context.get_live(&item.identity).await?;
    let Some(latest) = latest.filter(|meta| meta.uid.as_deref() == Some(uid)) else {
        // Gone, or a namesake with another uid: this uid leaves the graph and its dependents
        // are looked at again.
        let absent = context.scoped(&item.identity);
        let work = context.graph().virtual_delete(&absent);
        context.queue(work);
        return Ok(Outcome::Done);
    };
    let outcome = if item.observed {
        Outcome::Done
    } else {
        Outcome::Requeue
    };
    if item.deleting_dependents {
        process_deleting_dependents(context, &item).await?;
        return Ok(outcome);
    }
    let references = latest.owner_references.clone().unwrap_or_default();
    if references.is_empty() {
        return Ok(outcome);
    }
    let mut classified = Vec::with_capacity(references.len());
    for reference in references {
        match owner_state(context, &item.identity, &reference).await {
            Ok(state) => classified.push((reference, state)),
            Err(error @ GcError::NamespacedOwner { .. }) => {
                // Invalid for good: no retry fixes it.
                tracing::info!(%error, "not garbage collecting");
                return Ok(Outcome::Done);
            }
            Err(error) => return Err(error),
        }
    }
    let (dependents, dependent_deleting_dependents) = {
        let graph = context.graph();
        let dependents = graph.dependents(uid);
        let deleting = dependents.iter().any(|dep| dep.deleting_dependents);
        (dependents.len(), deleting)
    };
    let finalizers = latest.finalizers.as_deref().unwrap_or_default();
    let decision = decide::decide(
        finalizers,
        &classified,
        dependents,
        dependent_deleting_dependents,
    );
    tracing::debug!(item = %item.identity, ?decision, "garbage collector decision");
    match decision {
        Decision::Keep => {}
        Decision::RemoveReferences(owners) => {
            let patch = decide::delete_owner_references_patch(uid, &owners);
            patch_references(context, &item.identity, patch).await?;
        }
        Decision::DeleteForeground { unblock_first } => {
            if unblock_first {
                if let Some(patch) = decide::unblock_owner_references_patch(uid, &item.owners) {
                    patch_references(context, &item.identity, patch).await?;
                }
            }
            delete_object(context, &item.identity, Propagation::Foreground).await?;
        }
        Decision::Delete(propagation) => {
            delete_object(context, &item.identity, propagation).await?;
        }
    }
    Ok(outcome)
}

/// What `reference`, held by `item`, points at (`isDangling` and `classifyReferences`).
async fn owner_state(
    context: &Context,
    item: &Identity,
    reference: &OwnerReference,
) -> Result<OwnerState, GcError> {
    // Remembered absent, as a cluster-scoped owner or in the item's namespace.
    let mut key = Identity::of_owner(reference, "");
    let absent = context.graph().absent.contains(&key);
    if absent {
        return Ok(OwnerState::Dangling);
    }
    key.namespace.clone_from(&item.namespace);
    let absent = context.graph().absent.contains(&key);
    if absent {
        return Ok(OwnerState::Dangling);
    }
    let kind = context.kind(&reference.api_version, &reference.kind)?;
    if !kind.namespaced {
        key.namespace.clear();
    }
    if item.namespace.is_empty() && kind.namespaced {
        return Err(GcError::NamespacedOwner {
            item: item.to_string(),
            owner: key.to_string(),
        });
    }
    let api = context.api_of(kind, &key.namespace);
    let owner = api
        .get_metadata_opt(&reference.name)
        .await
        .map_err(|source| GcError::Request {
            operation: "getting owner",
            object: key.to_string(),
            source,
        })?
        .map(|partial| partial.metadata);
    let state = decide::owner_state(reference, owner.as_ref());
    if state == OwnerState::Dangling {
        context.graph().absent.add(key);
    }
    Ok(state)
}

/// A foreground deletion in progress (`processDeletingDependentsItem`): once no dependent
/// blocks it, its `foregroundDeletion` finalizer goes (and the API server deletes it);
/// until then, its blocking dependents are deleted.
async fn process_deleting_dependents(context: &Context, item: &Node) -> Result<(), GcError> {
    let blocking: Vec<(String, bool)> = context
        .graph()
        .blocking_dependents(&item.identity.uid)
        .into_iter()
        .map(|dependent| {
            (
                dependent.identity.uid.clone(),
                dependent.deleting_dependents,
            )
        })
        .collect();
    if blocking.is_empty() {
        return remove_finalizer(context, &item.identity, FINALIZER_FOREGROUND).await;
    }
    for (dependent, deleting_dependents) in blocking {
        // One deleting its own dependents is already on its way.
        if !deleting_dependents {
            context.delete_queue.add(&dependent);
        }
    }
    Ok(())
}

/// Orphans the dependents of the node `uid`, then removes its `orphan` finalizer
/// (`attemptToOrphanWorker`).
pub(super) async fn attempt_to_orphan(context: &Context, uid: &str) -> Result<(), GcError> {
    let (owner, dependents) = {
        let graph = context.graph();
        let Some(owner) = graph.get(uid) else {
            return Ok(());
        };
        let dependents: Vec<Identity> = graph
            .dependents(uid)
            .into_iter()
            .map(|dependent| dependent.identity.clone())
            .collect();
        (owner.identity.clone(), dependents)
    };
    let results = futures::future::join_all(dependents.iter().map(|dependent| {
        let patch = decide::delete_owner_references_patch(&dependent.uid, &[uid.to_string()]);
        patch_references(context, dependent, patch)
    }))
    .await;
    let mut failures = results.into_iter().filter_map(Result::err);
    if let Some(first) = failures.next() {
        return Err(GcError::Orphaning {
            owner: owner.to_string(),
            failed: 1 + failures.count(),
            source: Box::new(first),
        });
    }
    remove_finalizer(context, &owner, FINALIZER_ORPHAN).await
}

/// Sends a strategic merge patch of owner references; an object gone meanwhile needs none.
async fn patch_references(
    context: &Context,
    identity: &Identity,
    patch: Value,
) -> Result<(), GcError> {
    let Some(api) = context.api(identity)? else {
        return Ok(());
    };
    match api
        .patch(
            &identity.name,
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(source) => Err(GcError::Request {
            operation: "patching the owner references of",
            object: identity.to_string(),
            source,
        }),
    }
}

/// Deletes the object `identity` names, that uid only.
async fn delete_object(
    context: &Context,
    identity: &Identity,
    propagation: Propagation,
) -> Result<(), GcError> {
    let Some(api) = context.api(identity)? else {
        return Ok(());
    };
    let params = DeleteParams {
        propagation_policy: Some(match propagation {
            Propagation::Orphan => PropagationPolicy::Orphan,
            Propagation::Background => PropagationPolicy::Background,
            Propagation::Foreground => PropagationPolicy::Foreground,
        }),
        preconditions: Some(Preconditions {
            uid: Some(identity.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    tracing::info!(object = %identity, ?propagation, "garbage collector deleting");
    match api.delete(&identity.name, &params).await {
        Ok(_) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        // A conflict (another uid under the name) is retried: the next attempt finds the
        // namesake and drops this uid from the graph.
        Err(source) => Err(GcError::Request {
            operation: "deleting",
            object: identity.to_string(),
            source,
        }),
    }
}

/// Removes `finalizer` from the object `identity` names, on a fresh read each time, retrying
/// conflicts (`removeFinalizer`). Gone, replaced or without it: nothing to do.
async fn remove_finalizer(
    context: &Context,
    identity: &Identity,
    finalizer: &str,
) -> Result<(), GcError> {
    let Some(api) = context.api(identity)? else {
        return Ok(());
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(meta) = context.get_live(identity).await? else {
            return Ok(());
        };
        if meta.uid.as_deref() != Some(identity.uid.as_str()) {
            return Ok(());
        }
        let Some(patch) = decide::remove_finalizer_patch(&meta, finalizer) else {
            return Ok(());
        };
        match api
            .patch(
                &identity.name,
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => {
                tracing::debug!(object = %identity, finalizer, "finalizer removed");
                return Ok(());
            }
            Err(error) if is_not_found(&error) => return Ok(()),
            Err(error) if is_conflict(&error) && attempt < FINALIZER_UPDATE_ATTEMPTS => {
                tracing::debug!(object = %identity, %error, "finalizer update conflicted, retrying");
            }
            Err(source) => {
                return Err(GcError::Request {
                    operation: "removing a finalizer of",
                    object: identity.to_string(),
                    source,
                })
            }
        }
    }
}
