//! The root CA certificate publisher: kube-controller-manager's `root-ca-cert-publisher`
//! (`pkg/controller/certificates/rootcacertpublisher`).
//!
//! Every namespace gets a ConfigMap `kube-root-ca.crt` whose `ca.crt` is the cluster CA
//! certificate, so that a pod's `kube-api-access-` volume (the ServiceAccount admission
//! plugin's) can project it next to the token: in-cluster clients verify the API server with
//! it. The ConfigMap is created in each new namespace, created again when deleted, and its
//! data and `kubernetes.io/description` annotation put back when changed. Labels and other
//! annotations are kept; keys added beside `ca.crt` go, the data being replaced whole, as kube
//! replaces it. Terminating namespaces get nothing: the API server would refuse it.
//!
//! # Layout
//! - [`decide`]: what to write given the cached ConfigMap (pure, tested);
//! - [`start`]: a namespace watch, a watch of the `kube-root-ca.crt` ConfigMaps, a work queue
//!   of namespace names.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::Client;

use crate::api_errors;
use crate::workqueue::{ControllerHandle, WorkQueue, WorkQueueMetrics};

/// The ConfigMap's name in every namespace (kube's `RootCACertConfigMapName`).
pub const CONFIG_MAP_NAME: &str = "kube-root-ca.crt";
/// Its one key.
pub const DATA_KEY: &str = "ca.crt";
/// The annotation saying what it is for (kube's `DescriptionAnnotation`).
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
/// kube's `Description`, word for word.
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";
/// The queue's name in the `workqueue_*` metrics (kube's).
pub const QUEUE_NAME: &str = "root_ca_cert_publisher";
/// Workers (kube-controller-manager runs the publisher with one).
pub const DEFAULT_WORKERS: usize = 1;

/// Options of [`start`].
pub struct Options {
    /// The PEM certificate(s) to publish: the cluster CA.
    pub root_ca: String,
    pub workers: usize,
    /// Where the queue reports its metrics; unregistered ones when `None`.
    pub metrics: Option<Arc<WorkQueueMetrics>>,
}

/// What one sync of a namespace writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The ConfigMap is as it should be.
    Nothing,
    Create(ConfigMap),
    /// The cached ConfigMap with the data and the description put back (its
    /// `resourceVersion` kept, so a concurrent change is a conflict, retried).
    Update(ConfigMap),
}

/// kube's `syncNamespace`, given the namespace's cached ConfigMap (`None`: there is none).
pub fn decide(existing: Option<&ConfigMap>, root_ca: &str) -> Action {
    let data = BTreeMap::from([(DATA_KEY.to_string(), root_ca.to_string())]);
    let Some(existing) = existing else {
        return Action::Create(ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIG_MAP_NAME.to_string()),
                annotations: Some(BTreeMap::from([(
                    DESCRIPTION_ANNOTATION.to_string(),
                    DESCRIPTION.to_string(),
                )])),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        });
    };
    let described = existing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
        .is_some_and(|d| !d.is_empty());
    if existing.data.as_ref() == Some(&data) && described {
        return Action::Nothing;
    }
    let mut updated = existing.clone();
    updated.data = Some(data);
    updated
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(DESCRIPTION_ANNOTATION.to_string(), DESCRIPTION.to_string());
    Action::Update(updated)
}

/// A namespace that takes new content (kube queues a namespace on add, and on update only
/// while `Active`; a terminating one refuses the create anyway).
pub fn is_active(namespace: &Namespace) -> bool {
    let phase = namespace
        .status
        .as_ref()
        .and_then(|status| status.phase.as_deref());
    namespace.metadata.deletion_timestamp.is_none() && phase != Some("Terminating")
}

/// A refused create not worth retrying: the namespace is gone or going (kube's), or the
/// ConfigMap exists already — the cache has not seen it yet, and its event queues the
/// namespace again.
pub fn create_is_settled(error: &kube::Error) -> bool {
    api_errors::is_not_found(error)
        || api_errors::namespace_terminating(error)
        || api_errors::status_of(error).is_some_and(|status| status.reason == "AlreadyExists")
}

struct Context {
    client: Client,
    config_maps: Store<ConfigMap>,
    root_ca: String,
    synced: crate::informer::CachesSynced,
}

/// Starts the publisher on the current tokio runtime. An empty `root_ca` publishes nothing
/// (an empty `ca.crt` would make every in-cluster client trust nothing, silently).
pub fn start(client: Client, options: Options) -> ControllerHandle {
    let queue = WorkQueue::shared(QUEUE_NAME, options.metrics.as_deref());
    if options.root_ca.trim().is_empty() {
        tracing::error!("no cluster CA certificate: root-ca-cert-publisher not started");
        return ControllerHandle::new(vec![queue], Vec::new());
    }
    let (config_maps, writer) = reflector::store::<ConfigMap>();
    let context = Arc::new(Context {
        client: client.clone(),
        config_maps,
        root_ca: options.root_ca,
        synced: Default::default(),
    });
    let mut tasks = vec![
        tokio::spawn(watch_config_maps(
            Api::all(client.clone()),
            writer,
            queue.clone(),
        )),
        tokio::spawn(watch_namespaces(Api::all(client), queue.clone())),
    ];
    for _ in 0..options.workers.max(1) {
        tasks.push(tokio::spawn(worker(context.clone(), queue.clone())));
    }
    ControllerHandle::new(vec![queue], tasks)
}

/// The `kube-root-ca.crt` ConfigMaps (only those: a field selector), into the store; a change
/// or deletion queues the namespace.
async fn watch_config_maps(
    api: Api<ConfigMap>,
    mut writer: reflector::store::Writer<ConfigMap>,
    queue: Arc<WorkQueue>,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={CONFIG_MAP_NAME}"));
    let mut stream = crate::informer::watch_events(api, config, "watching kube-root-ca.crt");
    while let Some(event) = stream.next().await {
        writer.apply_watcher_event(&event);
        match &event {
            Event::Apply(config_map) | Event::Delete(config_map) => {
                if config_map.metadata.name.as_deref() == Some(CONFIG_MAP_NAME) {
                    if let Some(namespace) = &config_map.metadata.namespace {
                        queue.add(namespace);
                    }
                }
            }
            Event::Init | Event::InitApply(_) | Event::InitDone => {}
        }
    }
}

/// Every active namespace, as listed and as it changes, queued.
async fn watch_namespaces(api: Api<Namespace>, queue: Arc<WorkQueue>) {
    let mut stream =
        crate::informer::watch_events(api, watcher::Config::default(), "watching namespaces");
    while let Some(event) = stream.next().await {
        match &event {
            Event::Apply(namespace) | Event::InitApply(namespace) if is_active(namespace) => {
                if let Some(name) = &namespace.metadata.name {
                    queue.add(name);
                }
            }
            _ => {}
        }
    }
}

async fn worker(context: Arc<Context>, queue: Arc<WorkQueue>) {
    // Only the ConfigMap cache is waited for, as kube waits: a namespace queued before it is
    // listed would otherwise look like one without its ConfigMap.
    let listed = context
        .synced
        .wait(|| async { context.config_maps.wait_until_ready().await.is_ok() })
        .await;
    if !listed {
        return;
    }
    let context = &context;
    queue
        .work("publishing kube-root-ca.crt", |namespace| async move {
            sync(context, &namespace).await
        })
        .await;
}

/// One namespace: its ConfigMap created or put back.
async fn sync(context: &Context, namespace: &str) -> Result<(), kube::Error> {
    let cached = context
        .config_maps
        .get(&ObjectRef::new(CONFIG_MAP_NAME).within(namespace));
    let api: Api<ConfigMap> = Api::namespaced(context.client.clone(), namespace);
    match decide(cached.as_deref(), &context.root_ca) {
        Action::Nothing => Ok(()),
        Action::Create(config_map) => match api.create(&PostParams::default(), &config_map).await {
            Ok(_) => {
                tracing::debug!(%namespace, "published kube-root-ca.crt");
                Ok(())
            }
            Err(error) if create_is_settled(&error) => Ok(()),
            Err(error) => Err(error),
        },
        Action::Update(config_map) => api
            .replace(CONFIG_MAP_NAME, &PostParams::default(), &config_map)
            .await
            .map(|_| tracing::info!(%namespace, "restored kube-root-ca.crt")),
    }
}

#[cfg(test)]
mod tests;
