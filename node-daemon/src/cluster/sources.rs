//! What the API server asks of this node: the pods bound to it (`spec.nodeName` field
//! selector), every Service and every EndpointSlice, each kept by a kube-rs reflector that
//! relists after a 410 and reconnects with backoff. While the API server is away the stores
//! keep their last contents, so the node goes on running what it was told (static stability).
//!
//! Objects are turned into keel's model by the same conversion and validation as manifests
//! ([`keel_api::model_of`]), once per resourceVersion.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use futures::StreamExt;
use k8s_openapi::api::{
    core::v1::{Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    runtime::{
        reflector::{self, Store},
        watcher::{self, Event},
        WatchStreamExt,
    },
    Api, Client, Resource, ResourceExt,
};
use tokio::sync::Notify;

use keel_api::{model_of, Object, WireObject};
use keel_runtime::DesiredPod;

/// The reflectors, and a notification for every change they see.
pub struct ClusterObjects {
    pub pods: Store<Pod>,
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
    /// Set once the pods bound to this node have been listed: before that, an empty store
    /// would tell the runtime to stop every pod it adopted at start-up.
    pods_listed: Arc<AtomicBool>,
    /// Woken on every change of any of the three stores: one for the daemon's sync loop, one
    /// for the status reporter (a `Notify` wakes one waiter).
    pub changed: Arc<Notify>,
    pub changed_for_status: Arc<Notify>,
    /// Woken when the pods bound here change, for the mirror pods' loop.
    pub changed_for_mirrors: Arc<Notify>,
    /// … and for the loop that fetches their volumes' files.
    pub changed_for_volumes: Arc<Notify>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Models of Services and EndpointSlices, and of pods (pruned separately: each pass sees
    /// only its own kinds).
    cache: ModelCache,
    pod_cache: ModelCache,
}

impl Drop for ClusterObjects {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl ClusterObjects {
    /// Starts the three watches.
    pub fn start(client: &Client, node_name: &str) -> Self {
        let changed = Arc::new(Notify::new());
        let changed_for_status = Arc::new(Notify::new());
        let changed_for_mirrors = Arc::new(Notify::new());
        let changed_for_volumes = Arc::new(Notify::new());
        let pods_changed = vec![
            changed.clone(),
            changed_for_status.clone(),
            changed_for_mirrors.clone(),
            changed_for_volumes.clone(),
        ];
        let pods_listed = Arc::new(AtomicBool::new(false));
        let (pods, pods_writer) = reflector::store::<Pod>();
        let (services, services_writer) = reflector::store::<Service>();
        let (slices, slices_writer) = reflector::store::<EndpointSlice>();
        let bound_here = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
        let tasks = vec![
            tokio::spawn(reflect(
                Api::<Pod>::all(client.clone()),
                bound_here,
                pods_writer,
                pods_changed,
                Some(pods_listed.clone()),
            )),
            tokio::spawn(reflect(
                Api::<Service>::all(client.clone()),
                watcher::Config::default(),
                services_writer,
                vec![changed.clone()],
                None,
            )),
            tokio::spawn(reflect(
                Api::<EndpointSlice>::all(client.clone()),
                watcher::Config::default(),
                slices_writer,
                vec![changed.clone()],
                None,
            )),
        ];
        Self {
            pods,
            services,
            slices,
            pods_listed,
            changed,
            changed_for_status,
            changed_for_mirrors,
            changed_for_volumes,
            tasks,
            cache: ModelCache::default(),
            pod_cache: ModelCache::default(),
        }
    }

    /// Whether the pods bound to this node have been listed at least once.
    pub fn pods_listed(&self) -> bool {
        self.pods_listed.load(Ordering::SeqCst)
    }

    /// keel's model of every Service and EndpointSlice; objects keel cannot act on are
    /// skipped with a log line (once per version).
    pub fn services_and_slices(
        &mut self,
    ) -> (Vec<keel_api::Service>, Vec<keel_api::EndpointSlice>) {
        let mut services = Vec::new();
        for service in self.services.state() {
            // The wire object is copied only for a version the cache has not converted yet.
            let wire = || WireObject::Service(Box::new(service.as_ref().clone()));
            if let Some(Object::Service(model)) = self.cache.model(service.as_ref(), wire) {
                services.push(model);
            }
        }
        let mut slices = Vec::new();
        for slice in self.slices.state() {
            let wire = || WireObject::EndpointSlice(Box::new(slice.as_ref().clone()));
            if let Some(Object::EndpointSlice(model)) = self.cache.model(slice.as_ref(), wire) {
                slices.push(model);
            }
        }
        self.cache.retain_seen();
        (services, slices)
    }

    /// The pods this node should run (bound here, not being deleted, not finished), and those
    /// it refuses, with why. `None` until the pods have been listed.
    pub fn desired_pods(&mut self) -> Option<PodIntents> {
        if !self.pods_listed() {
            return None;
        }
        let mut intents = PodIntents::default();
        for pod in self.pods.state() {
            let Some(uid) = pod.uid() else { continue };
            // Mirror pods show static pods (run from the manifests); they are never run.
            if pod.meta().deletion_timestamp.is_some()
                || super::mirror::mirrored_uid(&pod).is_some()
            {
                continue;
            }
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            let finished = matches!(phase, Some("Succeeded" | "Failed"));
            match self.pod_cache.pod_model(&pod) {
                Ok(mut model) => {
                    if finished {
                        // A finished pod never runs again (kubelet: terminal phases are
                        // final); its record on this node, if any, is left to be reaped.
                        continue;
                    }
                    if let Some(grace) = pod.meta().deletion_grace_period_seconds {
                        model.spec.termination_grace_period_seconds =
                            Some(u64::try_from(grace).unwrap_or(0));
                    }
                    intents.run.push(DesiredPod {
                        uid: uid.clone(),
                        pod: model,
                        source: PathBuf::from(format!(
                            "api:{}/{}",
                            pod.namespace().unwrap_or_default(),
                            pod.name_any()
                        )),
                    });
                }
                Err(message) => {
                    if !finished {
                        intents.refused.push(RefusedPod {
                            uid,
                            namespace: pod.namespace().unwrap_or_default(),
                            name: pod.name_any(),
                            message,
                        })
                    }
                }
            }
        }
        self.pod_cache.retain_seen();
        Some(intents)
    }
}

/// What the node does with the pods bound to it.
#[derive(Debug, Default)]
pub struct PodIntents {
    pub run: Vec<DesiredPod>,
    /// Pods whose spec keel cannot run: reported Failed, as the kubelet rejects a pod at
    /// admission.
    pub refused: Vec<RefusedPod>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedPod {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub message: String,
}

/// keel's model of each object, by uid, valid for one resourceVersion: a relist or an
/// unrelated change does not convert every object again.
#[derive(Default)]
struct ModelCache {
    models: HashMap<String, (String, Result<Object, String>)>,
    seen: std::collections::HashSet<String>,
}

impl ModelCache {
    fn entry<K: Resource>(
        &mut self,
        object: &K,
        wire: impl FnOnce() -> WireObject,
    ) -> &Result<Object, String> {
        use std::collections::hash_map::Entry;
        let meta = object.meta();
        let uid = meta.uid.clone().unwrap_or_default();
        let version = meta.resource_version.clone().unwrap_or_default();
        self.seen.insert(uid.clone());
        let convert = || {
            let converted = model_of(&wire()).map_err(|error| error.to_string());
            if let Err(error) = &converted {
                tracing::warn!(
                    object = %format!("{}/{}", meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or("")),
                    "keel cannot act on this object: {error}"
                );
            }
            (version.clone(), converted)
        };
        match self.models.entry(uid) {
            Entry::Occupied(mut slot) => {
                if slot.get().0 != version {
                    *slot.get_mut() = convert();
                }
                &slot.into_mut().1
            }
            Entry::Vacant(slot) => &slot.insert(convert()).1,
        }
    }

    fn model<K: Resource>(
        &mut self,
        object: &K,
        wire: impl FnOnce() -> WireObject,
    ) -> Option<Object> {
        self.entry(object, wire).as_ref().ok().cloned()
    }

    fn pod_model(&mut self, pod: &Pod) -> Result<keel_api::Pod, String> {
        match self.entry(pod, || WireObject::Pod(Box::new(pod.clone()))) {
            Ok(Object::Pod(model)) => Ok(model.as_ref().clone()),
            Ok(_) => Err("not a pod".into()),
            Err(message) => Err(message.clone()),
        }
    }

    /// Forgets objects not seen since the last call.
    fn retain_seen(&mut self) {
        let seen = std::mem::take(&mut self.seen);
        self.models.retain(|uid, _| seen.contains(uid));
    }
}

async fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    mut writer: reflector::store::Writer<K>,
    changed: Vec<Arc<Notify>>,
    listed: Option<Arc<AtomicBool>>,
) where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let kind = K::kind(&()).into_owned();
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                // The backoff is the stream's; the stores keep their contents meanwhile.
                tracing::warn!(%error, "watching {kind}");
                continue;
            }
        };
        writer.apply_watcher_event(&event);
        match event {
            Event::Init | Event::InitApply(_) => continue,
            Event::InitDone => {
                if let Some(listed) = &listed {
                    listed.store(true, Ordering::SeqCst);
                }
            }
            Event::Apply(_) | Event::Delete(_) => {}
        }
        for notify in &changed {
            notify.notify_one();
        }
    }
}
