//! The EndpointSlice controller as a client of the Kubernetes API: kube-rs reflector stores
//! for Services, Pods and the controller's EndpointSlices, a work queue of service keys
//! (`namespace/name`), and workers that reconcile one service at a time and write the plan.
//!
//! # Events to keys
//! - a Service added, changed or deleted: its key;
//! - a Pod added or deleted: the services of its namespace that select it; changed: those that
//!   select it before or after, when something an endpoint shows changed (kube's
//!   `GetServicesToUpdateOnPodChange`);
//! - an EndpointSlice changed or deleted by someone else (the tracker knows the
//!   controller's own writes): the service named by its `kubernetes.io/service-name` label;
//! - a relist of any kind: every service, since deletions during the gap left no event.
//!
//! # Deleted services
//! kube leaves a deleted service's slices to the garbage collector (they name the service as
//! their controlling owner). keel has no garbage collector yet, so the sync of a service that
//! is gone deletes the Service-owned slices still labelled with its name.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keel_events::Recorder;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{self, store::Writer, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::Client;

use super::endpoints::{pod_endpoint_changes, service_selector};
use super::metrics::Metrics;
use super::reconcile::{reconcile, Plan};
use super::tracker::{service_key_of, Tracker};
use super::{
    CONTROLLER_NAME, DEFAULT_MAX_ENDPOINTS_PER_SLICE, LABEL_MANAGED_BY, LABEL_SERVICE_NAME,
};
use crate::api_errors::{message_of, namespace_terminating};
use crate::events::Note;
use crate::workqueue::{ControllerHandle, WorkQueue, WorkQueueMetrics};

/// kube-controller-manager's source component for the EndpointSlice controller.
pub const COMPONENT: &str = "endpoint-slice-controller";
/// The Warning recorded on a Service whose slices could not be written.
pub const FAILED_TO_UPDATE_ENDPOINT_SLICES: &str = "FailedToUpdateEndpointSlices";
/// kube-controller-manager's `--concurrent-service-endpoint-syncs`.
pub const DEFAULT_WORKERS: usize = 5;
/// The queue's name in the `workqueue_*` metrics (kube's).
pub const QUEUE_NAME: &str = "endpoint_slice";
/// Failed syncs of a service before it is dropped until its next change (kube's
/// `maxRetries`); with the queue's backoff that is about three minutes of retries.
const MAX_RETRIES: u32 = 15;
/// How long a slice change waits before its service syncs (kube's
/// `endpointSliceChangeMinSyncDelay`): a burst of slice events makes one sync.
const SLICE_CHANGE_DELAY: Duration = Duration::from_secs(1);

/// Options of [`start`].
#[derive(Clone)]
pub struct Options {
    /// Services synced at once (each service by one worker at a time).
    pub workers: usize,
    /// `--max-endpoints-per-slice`.
    pub max_endpoints_per_slice: usize,
    /// Where the queue reports its `workqueue_*` metrics; unregistered ones when `None`.
    pub queue_metrics: Option<Arc<WorkQueueMetrics>>,
    /// Where the controller counts its writes and syncs; nowhere when `None`.
    pub metrics: Option<Arc<Metrics>>,
    /// Where events go; a recorder of its own ([`COMPONENT`]) when `None`.
    pub recorder: Option<Recorder>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            workers: DEFAULT_WORKERS,
            max_endpoints_per_slice: DEFAULT_MAX_ENDPOINTS_PER_SLICE,
            queue_metrics: None,
            metrics: None,
            recorder: None,
        }
    }
}

/// A sync that failed; the service is retried with the queue's backoff.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The slice cache does not show the controller's last writes yet.
    #[error("the EndpointSlice cache of Service {0} is older than this controller's writes")]
    Stale(String),
    #[error("{operation} of EndpointSlice {slice:?} for Service {service}: {source}")]
    Write {
        operation: &'static str,
        service: String,
        slice: String,
        #[source]
        source: kube::Error,
    },
}

impl SyncError {
    /// The error as kube's reconciler words it (`failed to create EndpointSlice for Service
    /// ns/name: <error>`), for the event.
    pub fn kube_message(&self) -> String {
        match self {
            SyncError::Stale(_) => self.to_string(),
            SyncError::Write {
                operation: "create",
                service,
                source,
                ..
            } => format!(
                "failed to create EndpointSlice for Service {service}: {}",
                message_of(source)
            ),
            SyncError::Write {
                operation,
                service,
                slice,
                source,
            } => format!(
                "failed to {operation} {slice} EndpointSlice for Service {service}: {}",
                message_of(source)
            ),
        }
    }
}

/// The event on a Service whose slices a sync failed to write (`syncService`'s
/// `FailedToUpdateEndpointSlices`); `service` is `namespace/name`.
pub fn failed_to_update(service: &str, error: &SyncError) -> Note {
    Note::warning(
        FAILED_TO_UPDATE_ENDPOINT_SLICES,
        format!(
            "Error updating Endpoint Slices for Service {service}: {}",
            error.kube_message()
        ),
    )
}

/// What the watch tasks and the workers share.
struct Shared {
    client: Client,
    queue: Arc<WorkQueue>,
    services: Store<Service>,
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
    tracker: Mutex<Tracker>,
    max_endpoints_per_slice: usize,
    metrics: Option<Arc<Metrics>>,
    /// One wait for the caches, shared by the workers.
    synced: crate::informer::CachesSynced,
    /// Events about the Services, never waited for.
    recorder: Recorder,
}

impl Shared {
    fn tracker(&self) -> MutexGuard<'_, Tracker> {
        // The tracker holds no invariant a panicking holder could break half-way.
        self.tracker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enqueue_all_services(&self) {
        for service in self.services.state() {
            self.queue.add(&object_key(&service.metadata));
        }
    }

    /// Keys of the services of `pod`'s namespace whose selector matches it.
    fn services_selecting(&self, pod: &Pod) -> BTreeSet<String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let services = self
            .services
            .state_filter(|service| service.metadata.namespace.as_deref() == Some(namespace));
        services
            .iter()
            .filter(|service| {
                service_selector(service)
                    .is_some_and(|selector| selector.matches_optional(pod.metadata.labels.as_ref()))
            })
            .map(|service| object_key(&service.metadata))
            .collect()
    }

    /// The services to sync after `new` replaced `old` in the pod cache.
    fn services_for_pod_change(&self, old: Option<&Pod>, new: &Pod) -> BTreeSet<String> {
        let Some(old) = old else {
            return self.services_selecting(new);
        };
        if old.metadata.resource_version == new.metadata.resource_version {
            return BTreeSet::new();
        }
        let (endpoint_changed, labels_changed) = pod_endpoint_changes(old, new);
        if !labels_changed {
            return if endpoint_changed {
                self.services_selecting(new)
            } else {
                BTreeSet::new()
            };
        }
        let before = self.services_selecting(old);
        let after = self.services_selecting(new);
        if endpoint_changed {
            before.union(&after).cloned().collect()
        } else {
            // Only the labels changed: the services that select the pod both before and after
            // show the same endpoint.
            before.symmetric_difference(&after).cloned().collect()
        }
    }
}

fn object_key(metadata: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        metadata.namespace.as_deref().unwrap_or_default(),
        metadata.name.as_deref().unwrap_or_default()
    )
}

/// Starts the controller on the current tokio runtime.
pub fn start(client: Client, options: Options) -> ControllerHandle {
    let queue = WorkQueue::shared(QUEUE_NAME, options.queue_metrics.as_deref());
    let (services, service_writer) = reflector::store::<Service>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let recorder = options
        .recorder
        .unwrap_or_else(|| Recorder::new(client.clone(), COMPONENT));
    let shared = Arc::new(Shared {
        client,
        recorder,
        queue: queue.clone(),
        services,
        pods,
        slices,
        tracker: Mutex::default(),
        max_endpoints_per_slice: options.max_endpoints_per_slice.max(1),
        metrics: options.metrics,
        synced: Default::default(),
    });
    let mut tasks = vec![
        tokio::spawn(watch_services(shared.clone(), service_writer)),
        tokio::spawn(watch_pods(shared.clone(), pod_writer)),
        tokio::spawn(watch_slices(shared.clone(), slice_writer)),
    ];
    for _ in 0..options.workers.max(1) {
        tasks.push(tokio::spawn(worker(shared.clone())));
    }
    ControllerHandle::new(vec![queue], tasks)
}

/// The event, with what no sync reads dropped (managed fields are half of a small object).
fn trimmed<K: kube::Resource>(event: Event<K>) -> Event<K> {
    event.modify(|object| object.meta_mut().managed_fields = None)
}

async fn watch_services(shared: Arc<Shared>, mut writer: Writer<Service>) {
    let api: Api<Service> = Api::all(shared.client.clone());
    let mut events = crate::informer::watch_events(
        api,
        watcher::Config::default(),
        "endpointslice controller: watching services",
    );
    while let Some(event) = events.next().await {
        let event = trimmed(event);
        writer.apply_watcher_event(&event);
        match &event {
            Event::Apply(service) | Event::Delete(service) => {
                shared.queue.add(&object_key(&service.metadata));
            }
            Event::InitDone => shared.enqueue_all_services(),
            Event::Init | Event::InitApply(_) => {}
        }
    }
}

async fn watch_pods(shared: Arc<Shared>, mut writer: Writer<Pod>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let mut events = crate::informer::watch_events(
        api,
        watcher::Config::default(),
        "endpointslice controller: watching pods",
    );
    while let Some(event) = events.next().await {
        let event = trimmed(event);
        // Read before the cache takes the event: the pod as it was decides which services
        // may have to drop it.
        let keys = match &event {
            Event::Apply(pod) => {
                let old = shared.pods.get(&ObjectRef::from_obj(pod));
                shared.services_for_pod_change(old.as_deref(), pod)
            }
            Event::Delete(pod) => shared.services_selecting(pod),
            Event::Init | Event::InitApply(_) | Event::InitDone => BTreeSet::new(),
        };
        writer.apply_watcher_event(&event);
        if matches!(event, Event::InitDone) {
            shared.enqueue_all_services();
        }
        for key in &keys {
            shared.queue.add(key);
        }
    }
}

async fn watch_slices(shared: Arc<Shared>, mut writer: Writer<EndpointSlice>) {
    let api: Api<EndpointSlice> = Api::all(shared.client.clone());
    let config =
        watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={CONTROLLER_NAME}"));
    let mut events = crate::informer::watch_events(
        api,
        config,
        "endpointslice controller: watching endpointslices",
    );
    while let Some(event) = events.next().await {
        let event = trimmed(event);
        let keys: Vec<String> = match &event {
            Event::Apply(slice) => {
                let old = shared.slices.get(&ObjectRef::from_obj(slice));
                let key = service_key_of(slice);
                match old.as_deref().map(service_key_of) {
                    // Someone moved the slice to another service: both must sync.
                    Some(old_key) if old_key != key => old_key.into_iter().chain(key).collect(),
                    _ if shared.tracker().is_news(slice) => key.into_iter().collect(),
                    _ => Vec::new(),
                }
            }
            Event::Delete(slice) if !shared.tracker().handle_deletion(slice) => {
                service_key_of(slice).into_iter().collect()
            }
            _ => Vec::new(),
        };
        writer.apply_watcher_event(&event);
        if matches!(event, Event::InitDone) {
            let present: HashSet<String> = shared
                .slices
                .state()
                .iter()
                .filter_map(|slice| slice.metadata.uid.clone())
                .collect();
            shared.tracker().retain_present(&present);
            shared.enqueue_all_services();
        }
        for key in &keys {
            shared.queue.add_after(key, SLICE_CHANGE_DELAY);
        }
    }
}

async fn worker(shared: Arc<Shared>) {
    // kube's WaitForCacheSync: a sync against a half-listed pod cache would drop the
    // endpoints of the pods not listed yet.
    let listed = shared
        .synced
        .wait(|| async {
            shared.services.wait_until_ready().await.is_ok()
                && shared.pods.wait_until_ready().await.is_ok()
                && shared.slices.wait_until_ready().await.is_ok()
        })
        .await;
    if !listed {
        return;
    }
    while let Some(key) = shared.queue.get().await {
        match sync(&shared, &key).await {
            Ok(()) => {
                if let Some(metrics) = &shared.metrics {
                    metrics.sync("success");
                }
                shared.queue.forget(&key);
            }
            Err(error) => {
                let result = match error {
                    SyncError::Stale(_) => "stale",
                    SyncError::Write { .. } => "error",
                };
                if let Some(metrics) = &shared.metrics {
                    metrics.sync(result);
                }
                if shared.queue.num_requeues(&key) < MAX_RETRIES {
                    tracing::info!(%key, %error, "endpointslice controller: sync failed, retrying");
                    shared.queue.add_rate_limited(&key);
                } else {
                    tracing::warn!(%key, %error, "endpointslice controller: retry budget exceeded, dropping the service");
                    shared.queue.forget(&key);
                }
            }
        }
        shared.queue.done(&key);
    }
}

/// `syncService`: reconciles one service's slices with its pods.
async fn sync(shared: &Shared, key: &str) -> Result<(), SyncError> {
    let Some((namespace, name)) = key.split_once('/') else {
        tracing::warn!(%key, "endpointslice controller: not a namespace/name key");
        return Ok(());
    };
    let slices = shared.slices.state_filter(|slice| {
        let labels = slice.metadata.labels.as_ref();
        slice.metadata.namespace.as_deref() == Some(namespace)
            && labels
                .and_then(|l| l.get(LABEL_SERVICE_NAME))
                .map(String::as_str)
                == Some(name)
            && labels
                .and_then(|l| l.get(LABEL_MANAGED_BY))
                .map(String::as_str)
                == Some(CONTROLLER_NAME)
    });
    let service = shared.services.get(&ObjectRef::new(name).within(namespace));
    if service
        .as_ref()
        .is_some_and(|service| service_selector(service).is_none())
    {
        // Without a selector the slices are the user's; kube leaves them be.
        return Ok(());
    }
    let live: Vec<&EndpointSlice> = slices
        .iter()
        .map(|slice| &**slice)
        .filter(|slice| slice.metadata.deletion_timestamp.is_none())
        .collect();
    // Also before deleting a gone service's slices: one it created that the cache does not
    // show yet would otherwise be left behind for good.
    let service_uid = service.as_ref().and_then(|s| s.metadata.uid.as_deref());
    let stale = shared.tracker().stale(key, service_uid, &live);
    if stale {
        return Err(SyncError::Stale(key.to_string()));
    }
    let Some(service) = service else {
        return delete_orphans(shared, key, namespace, &live).await;
    };
    let pods = shared
        .pods
        .state_filter(|pod| pod.metadata.namespace.as_deref() == Some(namespace));
    let plan = reconcile(
        &service,
        pods.iter().map(|pod| &**pod),
        live.iter().copied(),
        shared.max_endpoints_per_slice,
    );
    if plan.is_empty() {
        return Ok(());
    }
    let written = write(shared, key, namespace, plan).await;
    if let Err(error) = &written {
        failed_to_update(key, error).record(&shared.recorder, &keel_events::reference(&*service));
    }
    written
}

/// In place of the garbage collector: the slices a Service owned (those not being deleted
/// already), once no Service of their name is left.
async fn delete_orphans(
    shared: &Shared,
    key: &str,
    namespace: &str,
    slices: &[&EndpointSlice],
) -> Result<(), SyncError> {
    let api: Api<EndpointSlice> = Api::namespaced(shared.client.clone(), namespace);
    for slice in slices {
        let service_owned = slice
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|owner| owner.kind == "Service" && owner.api_version == "v1");
        if service_owned {
            delete(shared, &api, key, slice).await?;
        }
    }
    shared.tracker().forget_service(key);
    Ok(())
}

/// kube's `finalize`, second half: creates, then replaces, then deletes, stopping at the first
/// failure (the retry plans again from the cache).
async fn write(shared: &Shared, key: &str, namespace: &str, plan: Plan) -> Result<(), SyncError> {
    let api: Api<EndpointSlice> = Api::namespaced(shared.client.clone(), namespace);
    let failed =
        |operation: &'static str, slice: &EndpointSlice, source: kube::Error| SyncError::Write {
            operation,
            service: key.to_string(),
            slice: slice_name(slice),
            source,
        };
    for slice in &plan.create {
        match api.create(&PostParams::default(), slice).await {
            Ok(created) => {
                shared.tracker().written(&created);
                count(shared, "create");
            }
            // Creates fail until a terminating namespace is gone; kube drops the sync.
            Err(error) if namespace_terminating(&error) => return Ok(()),
            Err(error) => return Err(failed("create", slice, error)),
        }
    }
    for slice in &plan.update {
        let name = slice.metadata.name.as_deref().unwrap_or_default();
        match api.replace(name, &PostParams::default(), slice).await {
            Ok(updated) => {
                shared.tracker().written(&updated);
                count(shared, "update");
            }
            Err(error) => return Err(failed("update", slice, error)),
        }
    }
    for slice in &plan.delete {
        delete(shared, &api, key, slice).await?;
    }
    Ok(())
}

/// Deletes one slice; one already gone is no failure.
async fn delete(
    shared: &Shared,
    api: &Api<EndpointSlice>,
    key: &str,
    slice: &EndpointSlice,
) -> Result<(), SyncError> {
    let name = slice.metadata.name.as_deref().unwrap_or_default();
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            shared.tracker().deleted(slice);
            count(shared, "delete");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(source) => Err(SyncError::Write {
            operation: "delete",
            service: key.to_string(),
            slice: slice_name(slice),
            source,
        }),
    }
}

fn count(shared: &Shared, operation: &str) {
    if let Some(metrics) = &shared.metrics {
        metrics.change(operation);
    }
}

fn slice_name(slice: &EndpointSlice) -> String {
    let metadata = &slice.metadata;
    metadata
        .name
        .clone()
        .or_else(|| metadata.generate_name.clone())
        .unwrap_or_default()
}
