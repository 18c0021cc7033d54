//! The Deployment controller as a client of the API: watches, event handlers and workers.
//!
//! # Tasks
//! - one watch task per kind (Deployments, ReplicaSets) applies each event to its kube-rs
//!   reflector store, then acts as kube's informer event handlers do: a Deployment's change
//!   queues it; a ReplicaSet's queues its controller, or the Deployments that may adopt it;
//! - `workers` tasks take keys from the [`WorkQueue`] and sync them ([`super::sync`]); they
//!   start once both stores hold a complete list, as kube's workers wait for their informers.
//!
//! Pods are not watched: kube needs them only to see a Recreate rollout's old pods gone, and
//! keel reads that from the old ReplicaSets' status (see [`super::scale::old_pods_running`]),
//! whose every change queues the Deployment.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use keel_events::Recorder;
use kube::api::Api;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher::{self, Event};
use kube::Client;

use super::events::COMPONENT;
use super::progress::Requeue;
use super::sync::{self, Context};
use super::template::{self, KIND};
use crate::informer::relisted;
use crate::replicaset::pods;
use crate::workqueue::{ControllerHandle, WorkQueue, WorkQueueMetrics};

/// Workers syncing Deployments at once (kube-controller-manager's
/// `--concurrent-deployment-syncs`).
pub const DEFAULT_WORKERS: usize = 5;
/// The queue's name in the `workqueue_*` metrics.
pub const QUEUE_NAME: &str = "deployment";
/// kube queues a Deployment one second after its progress deadline, against clock skew.
const DEADLINE_SLACK: Duration = Duration::from_secs(1);

/// Options of [`start`].
pub struct Options {
    pub workers: usize,
    /// Where the queue reports its metrics; unregistered ones when `None`.
    pub metrics: Option<Arc<WorkQueueMetrics>>,
    /// Where events go; a recorder of its own ([`COMPONENT`]) when `None`.
    pub recorder: Option<Recorder>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            workers: DEFAULT_WORKERS,
            metrics: None,
            recorder: None,
        }
    }
}

/// Starts the controller on the current tokio runtime.
pub fn start(client: Client, options: Options) -> ControllerHandle {
    let queue = WorkQueue::shared(QUEUE_NAME, options.metrics.as_deref());
    let (deployments, deployment_writer) = reflector::store::<Deployment>();
    let (replicasets, replicaset_writer) = reflector::store::<ReplicaSet>();
    let context = Arc::new(Context {
        client: client.clone(),
        deployments,
        replicasets,
        queue: queue.clone(),
        synced: Default::default(),
        recorder: options
            .recorder
            .unwrap_or_else(|| Recorder::new(client.clone(), COMPONENT)),
    });
    let mut tasks = vec![
        tokio::spawn(watch_deployments(
            context.clone(),
            Api::all(client.clone()),
            deployment_writer,
        )),
        tokio::spawn(watch_replicasets(
            context.clone(),
            Api::all(client),
            replicaset_writer,
        )),
    ];
    for _ in 0..options.workers.max(1) {
        tasks.push(tokio::spawn(worker(context.clone())));
    }
    ControllerHandle::new(vec![queue], tasks)
}

async fn worker(context: Arc<Context>) {
    // An error here means the watch task is gone: the controller is stopping.
    let listed = context
        .synced
        .wait(|| async {
            context.deployments.wait_until_ready().await.is_ok()
                && context.replicasets.wait_until_ready().await.is_ok()
        })
        .await;
    if !listed {
        return;
    }
    while let Some(key) = context.queue.get().await {
        match sync::sync(&context, &key).await {
            Ok(requeue) => {
                match requeue {
                    Requeue::Never => {}
                    // As kube: rate limited, then forgotten with the success.
                    Requeue::Now => context.queue.add_rate_limited(&key),
                    Requeue::After(after) => context.queue.add_after(&key, after + DEADLINE_SLACK),
                }
                context.queue.forget(&key);
            }
            Err(error) if error.namespace_terminating() => {
                tracing::debug!(%key, %error, "namespace terminating, not retrying");
                context.queue.forget(&key);
            }
            Err(error) => {
                tracing::warn!(%key, %error, "syncing Deployment");
                context.queue.add_rate_limited(&key);
            }
        }
        context.queue.done(&key);
    }
}

async fn watch_deployments(
    context: Arc<Context>,
    api: Api<Deployment>,
    mut writer: Writer<Deployment>,
) {
    let mut stream =
        crate::informer::watch_events(api, watcher::Config::default(), "watching Deployments");
    while let Some(event) = stream.next().await {
        // The store changes first: a queued key must find the object.
        match &event {
            Event::Apply(d) | Event::Delete(d) => {
                writer.apply_watcher_event(&event);
                context.enqueue(d);
            }
            Event::Init | Event::InitApply(_) => writer.apply_watcher_event(&event),
            Event::InitDone => {
                let before = context.deployments.state();
                writer.apply_watcher_event(&event);
                // Every Deployment is synced after a relist, as kube's resync does; one
                // gone is synced into nothing.
                relisted(
                    before,
                    &context.deployments.state(),
                    |_, current| context.enqueue(current),
                    |d| context.enqueue(d),
                    |d| context.enqueue(d),
                );
            }
        }
    }
}

async fn watch_replicasets(
    context: Arc<Context>,
    api: Api<ReplicaSet>,
    mut writer: Writer<ReplicaSet>,
) {
    let mut stream =
        crate::informer::watch_events(api, watcher::Config::default(), "watching ReplicaSets");
    while let Some(event) = stream.next().await {
        match &event {
            Event::Apply(rs) => {
                let old = context.replicasets.get(&ObjectRef::from_obj(rs));
                writer.apply_watcher_event(&event);
                match old {
                    Some(old) => context.replicaset_updated(&old, rs),
                    None => context.replicaset_added(rs),
                }
            }
            Event::Delete(rs) => {
                writer.apply_watcher_event(&event);
                context.replicaset_deleted(rs);
            }
            Event::Init | Event::InitApply(_) => writer.apply_watcher_event(&event),
            Event::InitDone => {
                let before = context.replicasets.state();
                writer.apply_watcher_event(&event);
                relisted(
                    before,
                    &context.replicasets.state(),
                    |old, current| context.replicaset_updated(old, current),
                    |rs| context.replicaset_added(rs),
                    |rs| context.replicaset_deleted(rs),
                );
            }
        }
    }
}

/// kube's informer event handlers (`addReplicaSet`, `updateReplicaSet`, …).
impl Context {
    fn enqueue(&self, d: &Deployment) {
        self.queue.add(&pods::object_key(&d.metadata));
    }

    /// The Deployment `owner` refers to, if it is a Deployment that still exists with that
    /// uid (`resolveControllerRef`).
    fn resolve(&self, namespace: &str, owner: &OwnerReference) -> Option<Arc<Deployment>> {
        if owner.kind != KIND {
            return None;
        }
        let d = self
            .deployments
            .get(&ObjectRef::new(&owner.name).within(namespace))?;
        (d.metadata.uid.as_deref() == Some(owner.uid.as_str())).then_some(d)
    }

    /// Queues every Deployment that may adopt the orphan `rs`.
    fn queue_adopters(&self, rs: &ReplicaSet) {
        let namespace = rs.metadata.namespace.as_deref().unwrap_or_default();
        let candidates = self
            .deployments
            .state_filter(|d| d.metadata.namespace.as_deref() == Some(namespace));
        let adopters = template::deployments_selecting(&candidates, rs);
        if adopters.len() > 1 {
            // Claiming keeps this safe (the first adopter wins), but it is a user error.
            let replicaset = pods::object_key(&rs.metadata);
            let count = adopters.len();
            tracing::info!(%replicaset, count, "more than one deployment selects the replica set");
        }
        for d in adopters {
            self.enqueue(&d);
        }
    }

    fn replicaset_added(&self, rs: &ReplicaSet) {
        if rs.metadata.deletion_timestamp.is_some() {
            // A restarted controller may list a ReplicaSet already being deleted.
            self.replicaset_deleted(rs);
            return;
        }
        let namespace = rs.metadata.namespace.as_deref().unwrap_or_default();
        match pods::controller_ref(&rs.metadata) {
            Some(owner) => {
                if let Some(d) = self.resolve(namespace, owner) {
                    self.enqueue(&d);
                }
            }
            None => self.queue_adopters(rs),
        }
    }

    fn replicaset_updated(&self, old: &ReplicaSet, current: &ReplicaSet) {
        // A relist brings every ReplicaSet again; an unchanged one changes nothing.
        if old.metadata.resource_version == current.metadata.resource_version {
            return;
        }
        let namespace = current.metadata.namespace.as_deref().unwrap_or_default();
        let current_owner = pods::controller_ref(&current.metadata);
        let old_owner = pods::controller_ref(&old.metadata);
        let owner_changed = current_owner != old_owner;
        if owner_changed {
            if let Some(d) = old_owner.and_then(|owner| self.resolve(namespace, owner)) {
                self.enqueue(&d);
            }
        }
        if let Some(owner) = current_owner {
            // Status changes included: availability is what moves a rollout on.
            if let Some(d) = self.resolve(namespace, owner) {
                self.enqueue(&d);
            }
            return;
        }
        let labels_changed = pods::labels(&old.metadata) != pods::labels(&current.metadata);
        if labels_changed || owner_changed {
            self.queue_adopters(current);
        }
    }

    fn replicaset_deleted(&self, rs: &ReplicaSet) {
        // No Deployment cares about an orphan going away.
        let Some(owner) = pods::controller_ref(&rs.metadata) else {
            return;
        };
        let namespace = rs.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(d) = self.resolve(namespace, owner) {
            self.enqueue(&d);
        }
    }
}
