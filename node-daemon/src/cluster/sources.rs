//! What the API server asks of this node: the pods bound to it (`spec.nodeName` field
//! selector), every Service and every EndpointSlice, each kept by a kube-rs reflector that
//! relists after a 410 and reconnects with backoff. While the API server is away the stores
//! keep their last contents, so the node goes on running what it was told (static stability).
//!
//! Objects are turned into keel's model by the same conversion and validation as manifests
//! ([`keel_api::model_of`]): pods once per resourceVersion, Services and EndpointSlices once
//! per change the watch reports (and all of them again after a relist).

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
};

use futures::StreamExt;
use k8s_openapi::api::{
    core::v1::{Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    runtime::{
        reflector::{self, ObjectRef, Store},
        watcher::{self, Event},
    },
    Api, Client, Resource, ResourceExt,
};
use tokio::sync::Notify;

use super::watch_pacing::paced;

use keel_api::{model_of, Object, WireObject};
use keel_proxy::tracker::SourceId;
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
    /// The Services and EndpointSlices changed since the change tracker was last given them.
    service_changes: Arc<Mutex<Changed>>,
    slice_changes: Arc<Mutex<Changed>>,
    /// The ones the change tracker holds, to withdraw those a relist no longer has.
    given_services: HashSet<(String, String)>,
    given_slices: HashSet<(String, String)>,
    /// Models of the pods bound here, by resourceVersion.
    pod_cache: ModelCache,
}

/// The (namespace, name) of the objects of one kind the watch saw change, for the change
/// tracker: one endpoint's change converts and resolves one object, not every object of the
/// cluster.
#[derive(Debug, Default)]
struct Changed {
    /// A (re)list replaced the store: every object may have changed, and some may be gone.
    relisted: bool,
    keys: HashSet<(String, String)>,
}

/// The objects of one source of the change tracker: an API object (none when it is gone or
/// keel cannot act on it).
pub type SourceChange = (
    SourceId,
    Vec<keel_api::Service>,
    Vec<keel_api::EndpointSlice>,
);

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
        let service_changes = Arc::new(Mutex::new(Changed::default()));
        let slice_changes = Arc::new(Mutex::new(Changed::default()));
        let bound_here = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
        let tasks = vec![
            tokio::spawn(reflect(
                Api::<Pod>::all(client.clone()),
                bound_here,
                pods_writer,
                pods_changed,
                Some(pods_listed.clone()),
                None,
            )),
            tokio::spawn(reflect(
                Api::<Service>::all(client.clone()),
                watcher::Config::default(),
                services_writer,
                vec![changed.clone()],
                None,
                Some(service_changes.clone()),
            )),
            tokio::spawn(reflect(
                Api::<EndpointSlice>::all(client.clone()),
                watcher::Config::default(),
                slices_writer,
                vec![changed.clone()],
                None,
                Some(slice_changes.clone()),
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
            service_changes,
            slice_changes,
            given_services: HashSet::new(),
            given_slices: HashSet::new(),
            pod_cache: ModelCache::default(),
        }
    }

    /// Whether the pods bound to this node have been listed at least once.
    pub fn pods_listed(&self) -> bool {
        self.pods_listed.load(Ordering::SeqCst)
    }

    /// The Services and EndpointSlices that changed since the last call, as sources of the
    /// change tracker, converted to keel's model; objects keel cannot act on are withdrawn,
    /// with a log line. After a relist, every object is given again and those gone are
    /// withdrawn.
    pub fn service_changes(&mut self) -> Vec<SourceChange> {
        let services = changed_models(
            &self.services,
            &self.service_changes,
            &mut self.given_services,
            |s| WireObject::Service(Box::new(s.clone())),
        );
        let slices = changed_models(
            &self.slices,
            &self.slice_changes,
            &mut self.given_slices,
            |s| WireObject::EndpointSlice(Box::new(s.clone())),
        );
        services
            .into_iter()
            .chain(slices)
            .map(|(source, model)| match model {
                Some(Object::Service(service)) => (source, vec![service], Vec::new()),
                Some(Object::EndpointSlice(slice)) => (source, Vec::new(), vec![slice]),
                // Gone, or refused: the source holds nothing.
                _ => (source, Vec::new(), Vec::new()),
            })
            .collect()
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

/// The objects of `store` that `changes` names (all of them after a relist, and those
/// `given` holds that it no longer has), by source, with keel's model of each.
fn changed_models<K>(
    store: &Store<K>,
    changes: &Mutex<Changed>,
    given: &mut HashSet<(String, String)>,
    wire: impl Fn(&K) -> WireObject,
) -> Vec<(SourceId, Option<Object>)>
where
    K: Resource<DynamicType = ()> + Clone,
{
    // A panicked watch task poisons the lock; the set it guards is still a set of keys.
    let Changed { relisted, keys } =
        std::mem::take(&mut *changes.lock().unwrap_or_else(PoisonError::into_inner));
    let keys = if relisted {
        let mut all = std::mem::take(given);
        all.extend(store.state().iter().map(|object| key_of(object.as_ref())));
        all
    } else {
        keys
    };
    let kind = K::kind(&());
    let mut models = Vec::with_capacity(keys.len());
    for (namespace, name) in keys {
        let object = store.get(&ObjectRef::new(&name).within(&namespace));
        let model = object.as_ref().and_then(|object| {
            model_of(&wire(object))
                .map_err(|error| {
                    tracing::warn!(object = %format!("{namespace}/{name}"), "keel cannot act on this object: {error}");
                })
                .ok()
        });
        let source = SourceId::Api(format!("{kind}/{namespace}/{name}"));
        if object.is_some() {
            given.insert((namespace, name));
        } else {
            given.remove(&(namespace, name));
        }
        models.push((source, model));
    }
    models
}

/// Notes in `changes` what a watch event changed in the store.
fn note_change<K: Resource>(changes: &Mutex<Changed>, event: &Event<K>) {
    let mut changes = changes.lock().unwrap_or_else(PoisonError::into_inner);
    match event {
        // A list is in the store once it is done; then anything may have changed.
        Event::InitDone => changes.relisted = true,
        Event::Apply(object) | Event::Delete(object) => {
            changes.keys.insert(key_of(object));
        }
        Event::Init | Event::InitApply(_) => {}
    }
}

fn key_of<K: Resource>(object: &K) -> (String, String) {
    let meta = object.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
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
    keys: Option<Arc<Mutex<Changed>>>,
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
    let mut stream = paced(watcher::watcher(api, config).boxed()).boxed();
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                // `paced` waits before the next attempt; the stores keep their contents.
                tracing::warn!(%error, "watching {kind}");
                continue;
            }
        };
        writer.apply_watcher_event(&event);
        // Recorded after the store holds the change and before anyone is woken: a reader
        // that takes the key finds the object as it is now.
        if let Some(keys) = &keys {
            note_change(keys, &event);
        }
        match &event {
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

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use kube::api::ObjectMeta;

    use super::*;

    fn service(name: &str, version: &str, port: i32) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.96.0.10".into()),
                ports: Some(vec![ServicePort {
                    port,
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    /// What the tracker is given: source name → the port of its Service (none: withdrawn).
    fn taken(
        store: &Store<Service>,
        changes: &Mutex<Changed>,
        given: &mut HashSet<(String, String)>,
    ) -> std::collections::BTreeMap<String, Option<u16>> {
        changed_models(store, changes, given, |s| {
            WireObject::Service(Box::new(s.clone()))
        })
        .into_iter()
        .map(|(source, model)| {
            let SourceId::Api(name) = source else {
                panic!("an API object's source is Api: {source:?}");
            };
            let port = match model {
                Some(Object::Service(s)) => Some(s.spec.ports[0].port.get()),
                _ => None,
            };
            (name, port)
        })
        .collect()
    }

    fn record(
        writer: &mut reflector::store::Writer<Service>,
        changes: &Mutex<Changed>,
        event: Event<Service>,
    ) {
        writer.apply_watcher_event(&event);
        note_change(changes, &event);
    }

    #[test]
    fn only_changed_objects_are_given_and_a_relist_withdraws_the_vanished() {
        let (store, mut writer) = reflector::store::<Service>();
        let changes = Mutex::new(Changed::default());
        let mut given = HashSet::new();
        let list = |writer: &mut reflector::store::Writer<Service>, services: Vec<Service>| {
            record(writer, &changes, Event::Init);
            for s in services {
                record(writer, &changes, Event::InitApply(s));
            }
            record(writer, &changes, Event::InitDone);
        };
        list(
            &mut writer,
            vec![service("a", "1", 80), service("b", "1", 81)],
        );
        let first = taken(&store, &changes, &mut given);
        assert_eq!(
            first,
            [
                ("Service/default/a".to_string(), Some(80)),
                ("Service/default/b".to_string(), Some(81))
            ]
            .into()
        );
        assert!(
            taken(&store, &changes, &mut given).is_empty(),
            "nothing changed"
        );

        record(&mut writer, &changes, Event::Apply(service("a", "2", 90)));
        assert_eq!(
            taken(&store, &changes, &mut given),
            [("Service/default/a".to_string(), Some(90))].into()
        );
        // A port keel cannot take (0) is withdrawn, not kept at its last version.
        record(&mut writer, &changes, Event::Apply(service("b", "2", 0)));
        assert_eq!(
            taken(&store, &changes, &mut given),
            [("Service/default/b".to_string(), None)].into()
        );
        // A relist (after a 410, say) that no longer has `a`: `a` is withdrawn, `c` is new.
        list(
            &mut writer,
            vec![service("b", "3", 82), service("c", "1", 83)],
        );
        assert_eq!(
            taken(&store, &changes, &mut given),
            [
                ("Service/default/a".to_string(), None),
                ("Service/default/b".to_string(), Some(82)),
                ("Service/default/c".to_string(), Some(83)),
            ]
            .into()
        );
        record(&mut writer, &changes, Event::Delete(service("c", "1", 83)));
        assert_eq!(
            taken(&store, &changes, &mut given),
            [("Service/default/c".to_string(), None)].into()
        );
        assert_eq!(given, [("default".to_string(), "b".to_string())].into());
    }
}
