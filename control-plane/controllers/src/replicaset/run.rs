//! The ReplicaSet controller as a client of the API: watches, event handlers and workers.
//!
//! # Tasks
//! - one watch task per kind (ReplicaSets, pods) applies each event to its kube-rs reflector
//!   store, then acts as kube's informer event handlers do: works out the ReplicaSets the
//!   change concerns, lowers their expectations, and queues their keys;
//! - `workers` tasks take keys from the [`WorkQueue`] and sync them ([`super::sync`]); they
//!   start once both stores hold a complete list, as kube's workers wait for their informers
//!   to sync (a partial pod list would look like missing replicas).
//!
//! A key is never synced by two workers at once (the queue's guarantee), and a failed sync
//! comes back with the queue's backoff.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use keel_events::Recorder;
use kube::api::Api;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher::{self, Event};
use kube::Client;

use super::decide::{self, BURST_REPLICAS, KIND};
use super::events::COMPONENT;
use super::expectations::Expectations;
use super::index::PodCache;
use super::pods;
use super::sync::{self, Context};
use crate::informer::relisted;
use crate::workqueue::{ControllerHandle, WorkQueue, WorkQueueMetrics};

/// Workers syncing ReplicaSets at once (kube-controller-manager's
/// `--concurrent-replicaset-syncs`).
pub const DEFAULT_WORKERS: usize = 5;
/// The queue's name in the `workqueue_*` metrics.
pub const QUEUE_NAME: &str = "replicaset";

/// Options of [`start`].
pub struct Options {
    pub workers: usize,
    /// The most pods one sync creates or deletes.
    pub burst_replicas: usize,
    /// Where the queue reports its metrics; unregistered ones when `None`.
    pub metrics: Option<Arc<WorkQueueMetrics>>,
    /// Where events go; a recorder of its own ([`COMPONENT`]) when `None`.
    pub recorder: Option<Recorder>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            workers: DEFAULT_WORKERS,
            burst_replicas: BURST_REPLICAS,
            metrics: None,
            recorder: None,
        }
    }
}

/// Starts the controller on the current tokio runtime.
pub fn start(client: Client, options: Options) -> ControllerHandle {
    let queue = WorkQueue::shared(QUEUE_NAME, options.metrics.as_deref());
    let (replicasets, replicaset_writer) = reflector::store::<ReplicaSet>();
    let (pod_store, pod_writer) = reflector::store::<Pod>();
    let context = Arc::new(Context {
        client: client.clone(),
        replicasets,
        pods: PodCache::new(pod_store),
        expectations: Expectations::default(),
        queue: queue.clone(),
        burst_replicas: options.burst_replicas.max(1),
        synced: Default::default(),
        recorder: options
            .recorder
            .unwrap_or_else(|| Recorder::new(client.clone(), COMPONENT)),
    });
    let mut tasks = vec![
        tokio::spawn(watch_replicasets(
            context.clone(),
            Api::all(client.clone()),
            replicaset_writer,
        )),
        tokio::spawn(watch_pods(context.clone(), Api::all(client), pod_writer)),
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
            context.replicasets.wait_until_ready().await.is_ok()
                && context.pods.store.wait_until_ready().await.is_ok()
        })
        .await;
    if !listed {
        return;
    }
    while let Some(key) = context.queue.get().await {
        match sync::sync(&context, &key).await {
            Ok(again) => {
                context.queue.forget(&key);
                if let Some(after) = again {
                    context.queue.add_after(&key, after);
                }
            }
            Err(error) => {
                tracing::warn!(%key, %error, "syncing ReplicaSet");
                context.queue.add_rate_limited(&key);
            }
        }
        context.queue.done(&key);
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
        // The store changes first: a handler's queued key must find the object.
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

async fn watch_pods(context: Arc<Context>, api: Api<Pod>, mut writer: Writer<Pod>) {
    let mut stream =
        crate::informer::watch_events(api, watcher::Config::default(), "watching pods");
    while let Some(event) = stream.next().await {
        // Store and index change together, before the handlers: expectations are lowered
        // only once a sync can see the pod they were waiting for.
        match &event {
            Event::Apply(pod) => {
                let key = ObjectRef::from_obj(pod);
                let old = {
                    let mut index = context.pods.write();
                    let old = context.pods.store.get(&key);
                    writer.apply_watcher_event(&event);
                    index.file(pod);
                    old
                };
                match old {
                    Some(old) => context.pod_updated(&old, pod),
                    None => context.pod_added(pod),
                }
            }
            Event::Delete(pod) => {
                {
                    let mut index = context.pods.write();
                    writer.apply_watcher_event(&event);
                    index.unfile(&ObjectRef::from_obj(pod));
                }
                context.pod_deleted(pod);
            }
            Event::Init | Event::InitApply(_) => writer.apply_watcher_event(&event),
            Event::InitDone => {
                let (before, after) = {
                    let mut index = context.pods.write();
                    let before = context.pods.store.state();
                    writer.apply_watcher_event(&event);
                    let after = context.pods.store.state();
                    index.rebuild(&after);
                    (before, after)
                };
                relisted(
                    before,
                    &after,
                    |old, current| context.pod_updated(old, current),
                    |pod| context.pod_added(pod),
                    |pod| context.pod_deleted(pod),
                );
            }
        }
    }
}

/// kube's informer event handlers (`addRS`, `updatePod`, …).
impl Context {
    fn replicaset_added(&self, rs: &ReplicaSet) {
        self.queue.add(&pods::object_key(&rs.metadata));
    }

    fn replicaset_updated(&self, old: &ReplicaSet, current: &ReplicaSet) {
        // Deleted and created again under the same name between two events: the old one's
        // expectations must not hold the new one back.
        if old.metadata.uid != current.metadata.uid {
            self.replicaset_deleted(old);
        }
        // Every update, not only spec changes: a resync must retry a ReplicaSet whose creates
        // failed, and syncs that find nothing to do only read the cache.
        self.queue.add(&pods::object_key(&current.metadata));
    }

    fn replicaset_deleted(&self, rs: &ReplicaSet) {
        let key = pods::object_key(&rs.metadata);
        // A new ReplicaSet of the same name starts clean.
        self.expectations.delete(&key);
        self.queue.add(&key);
    }

    /// The ReplicaSet `owner` refers to, if it is a ReplicaSet that still exists with that
    /// uid (`resolveControllerRef`).
    fn resolve(&self, namespace: &str, owner: &OwnerReference) -> Option<Arc<ReplicaSet>> {
        if owner.kind != KIND {
            return None;
        }
        let rs = self
            .replicasets
            .get(&ObjectRef::new(&owner.name).within(namespace))?;
        (rs.metadata.uid.as_deref() == Some(owner.uid.as_str())).then_some(rs)
    }

    /// Queues every ReplicaSet that may adopt the orphan `pod`.
    fn queue_adopters(&self, pod: &Pod) {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let candidates = self
            .replicasets
            .state_filter(|rs| rs.metadata.namespace.as_deref() == Some(namespace));
        let adopters = decide::replicasets_selecting(&candidates, pod);
        if adopters.len() > 1 {
            // Claiming keeps this safe (the first adopter wins), but it is a user error.
            let pod = pods::object_key(&pod.metadata);
            let count = adopters.len();
            tracing::info!(%pod, count, "more than one ReplicaSet selects the pod");
        }
        for rs in adopters {
            self.queue.add(&pods::object_key(&rs.metadata));
        }
    }

    fn pod_added(&self, pod: &Pod) {
        if pod.metadata.deletion_timestamp.is_some() {
            // A restarted controller may list a pod already being deleted: that is not the
            // creation a ReplicaSet waits for.
            self.pod_deleted(pod);
            return;
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        match pods::controller_ref(&pod.metadata) {
            Some(owner) => {
                if let Some(rs) = self.resolve(namespace, owner) {
                    let key = pods::object_key(&rs.metadata);
                    self.expectations.creation_observed(&key);
                    self.queue.add(&key);
                }
            }
            // An orphan: whoever selects it may adopt it. No expectation is lowered, none
            // waits for an orphan.
            None => self.queue_adopters(pod),
        }
    }

    fn pod_updated(&self, old: &Pod, current: &Pod) {
        // A relist brings every pod again; an unchanged one changes nothing.
        if old.metadata.resource_version == current.metadata.resource_version {
            return;
        }
        let labels_changed = pods::labels(&old.metadata) != pods::labels(&current.metadata);
        if current.metadata.deletion_timestamp.is_some() {
            // A graceful deletion starts: count it now, so the replacement is created without
            // waiting out the grace period. With its labels changed, the old owner may have
            // been waiting for it too.
            self.pod_deleted(current);
            if labels_changed {
                self.pod_deleted(old);
            }
            return;
        }
        let namespace = current.metadata.namespace.as_deref().unwrap_or_default();
        let current_owner = pods::controller_ref(&current.metadata);
        let old_owner = pods::controller_ref(&old.metadata);
        let owner_changed = current_owner != old_owner;
        if owner_changed {
            if let Some(rs) = old_owner.and_then(|owner| self.resolve(namespace, owner)) {
                self.queue.add(&pods::object_key(&rs.metadata));
            }
        }
        if let Some(owner) = current_owner {
            let Some(rs) = self.resolve(namespace, owner) else {
                return;
            };
            let key = pods::object_key(&rs.metadata);
            self.queue.add(&key);
            // Availability is not an event of its own: look again once the newly ready pod
            // has been ready for minReadySeconds (and a second, against rounding).
            let min_ready = rs.spec.min_ready_seconds.unwrap_or(0);
            if min_ready > 0 && !pods::is_ready(old) && pods::is_ready(current) {
                let after = Duration::from_secs(u64::try_from(min_ready).unwrap_or(0) + 1);
                self.queue.add_after(&key, after);
            }
            return;
        }
        if labels_changed || owner_changed {
            self.queue_adopters(current);
        }
    }

    fn pod_deleted(&self, pod: &Pod) {
        // No ReplicaSet cares about an orphan going away.
        let Some(owner) = pods::controller_ref(&pod.metadata) else {
            return;
        };
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let Some(rs) = self.resolve(namespace, owner) else {
            return;
        };
        let key = pods::object_key(&rs.metadata);
        self.expectations
            .deletion_observed(&key, &pods::object_key(&pod.metadata));
        self.queue.add(&key);
    }
}
