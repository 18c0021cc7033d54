//! The garbage collector as a client of the API: one metadata watch per kind feeding the
//! graph, and workers on two queues of uids.
//!
//! # Tasks
//! - one watch task per [`Kind`] applies each event to the shared [`Graph`] (a short critical
//!   section without I/O, which serialises changes as kube's single `processGraphChanges`
//!   loop does) and queues the work the change implies;
//! - `workers` tasks on each queue — `attemptToDelete` and `attemptToOrphan` — start once
//!   every watch has listed its kind once, as kube's workers wait for the graph to sync: a
//!   half-built graph would only cost needless requests, but kube does not pay them either.
//!
//! One metadata watch per kind (`PartialObjectMetadata`, as kube's metadata informers): the
//! collector reads names, uids, owner references, finalizers and deletion timestamps, never a
//! spec, so one code path serves every kind where typed watchers would need one monomorphised
//! watch per kind for no benefit, and the API server sends metadata alone.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keel_events::Recorder;
use kube::api::{Api, DynamicObject, PartialObjectMeta};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use tokio::sync::watch;

use super::graph::{Graph, Identity, InvalidOwnerRef, Observation, Work};
use super::kinds::{self, Kind};
use super::sync::{self, Context, Outcome};
use crate::events::Note;
use crate::workqueue::{ControllerHandle, WorkQueue, WorkQueueMetrics};

/// kube-controller-manager's source component for the garbage collector.
pub const COMPONENT: &str = "garbage-collector-controller";

/// Workers per queue (kube-controller-manager's `--concurrent-gc-syncs`).
pub const DEFAULT_WORKERS: usize = 20;
/// The `attemptToDelete` queue's name in the `workqueue_*` metrics (kube's).
pub const DELETE_QUEUE_NAME: &str = "garbage_collector_attempt_to_delete";
/// The `attemptToOrphan` queue's name in the `workqueue_*` metrics (kube's).
pub const ORPHAN_QUEUE_NAME: &str = "garbage_collector_attempt_to_orphan";

/// Options of [`start`].
#[derive(Clone)]
pub struct Options {
    /// Workers on each of the two queues.
    pub workers: usize,
    /// The kinds watched, and the only ones owner references are resolved against: a
    /// reference to any other kind is retried with backoff and never decided.
    pub kinds: Vec<Kind>,
    /// Where the queues report their metrics; unregistered ones when `None`.
    pub metrics: Option<Arc<WorkQueueMetrics>>,
    /// Where events go; a recorder of its own ([`COMPONENT`]) when `None`.
    pub recorder: Option<Recorder>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            workers: DEFAULT_WORKERS,
            kinds: kinds::served(),
            metrics: None,
            recorder: None,
        }
    }
}

/// Starts the garbage collector on the current tokio runtime.
pub fn start(client: Client, options: Options) -> ControllerHandle {
    let queue = |name: &str| WorkQueue::shared(name, options.metrics.as_deref());
    let recorder = options
        .recorder
        .clone()
        .unwrap_or_else(|| Recorder::new(client.clone(), COMPONENT));
    let context = Arc::new(Context {
        recorder,
        client,
        kinds: options.kinds.clone(),
        graph: Mutex::new(Graph::default()),
        delete_queue: queue(DELETE_QUEUE_NAME),
        orphan_queue: queue(ORPHAN_QUEUE_NAME),
    });
    // How many kinds have been listed once; the workers wait for all of them.
    let (listed, _) = watch::channel(0usize);
    let listed = Arc::new(listed);
    let kinds = options.kinds.len();
    let mut tasks = Vec::new();
    for kind in options.kinds {
        tasks.push(tokio::spawn(watch_kind(
            context.clone(),
            kind,
            listed.clone(),
        )));
    }
    for _ in 0..options.workers.max(1) {
        tasks.push(tokio::spawn(delete_worker(
            context.clone(),
            listed.subscribe(),
            kinds,
        )));
        tasks.push(tokio::spawn(orphan_worker(
            context.clone(),
            listed.subscribe(),
            kinds,
        )));
    }
    let queues = [context.delete_queue.clone(), context.orphan_queue.clone()];
    ControllerHandle::new(queues.into(), tasks)
}

/// Waits until every kind was listed once; false when the controller is stopping (the watch
/// tasks, which hold the sender, are gone).
async fn wait_for_sync(listed: &mut watch::Receiver<usize>, kinds: usize) -> bool {
    listed.wait_for(|count| *count >= kinds).await.is_ok()
}

async fn delete_worker(context: Arc<Context>, mut listed: watch::Receiver<usize>, kinds: usize) {
    let synced = wait_for_sync(&mut listed, kinds).await;
    if !synced {
        return;
    }
    while let Some(uid) = context.delete_queue.get().await {
        match sync::attempt_to_delete(&context, &uid).await {
            Ok(Outcome::Done) => context.delete_queue.forget(&uid),
            Ok(Outcome::Requeue) => context.delete_queue.add_rate_limited(&uid),
            Err(error) => {
                tracing::warn!(%uid, %error, "garbage collecting");
                context.delete_queue.add_rate_limited(&uid);
            }
        }
        context.delete_queue.done(&uid);
    }
}

async fn orphan_worker(context: Arc<Context>, mut listed: watch::Receiver<usize>, kinds: usize) {
    let synced = wait_for_sync(&mut listed, kinds).await;
    if !synced {
        return;
    }
    while let Some(uid) = context.orphan_queue.get().await {
        match sync::attempt_to_orphan(&context, &uid).await {
            Ok(()) => context.orphan_queue.forget(&uid),
            Err(error) => {
                tracing::warn!(%uid, %error, "orphaning dependents");
                context.orphan_queue.add_rate_limited(&uid);
            }
        }
        context.orphan_queue.done(&uid);
    }
}

fn observe(context: &Context, kind: &Kind, meta: &ObjectMeta) -> Vec<Work> {
    let Some(observation) = Observation::of(kind, meta) else {
        return Vec::new();
    };
    let (work, invalid) = {
        let mut graph = context.graph();
        let work = graph.observe(observation);
        (work, graph.take_invalid_owner_refs())
    };
    for invalid in &invalid {
        let involved = object_reference(&invalid.dependent);
        invalid_owner_ref_note(invalid).record(&context.recorder, &involved);
    }
    work
}

/// kube's Warning on a dependent naming an owner of another namespace:
/// `ownerRef [v1/Kind, namespace: ns, name: n, uid: u] does not exist in namespace "ns"`.
pub fn invalid_owner_ref_note(invalid: &InvalidOwnerRef) -> Note {
    Note::warning(
        "OwnerRefInvalidNamespace",
        format!(
            "ownerRef {} does not exist in namespace {:?}",
            invalid.owner, invalid.dependent.namespace
        ),
    )
}

/// The object `identity` names, as an Event refers to it.
fn object_reference(identity: &Identity) -> ObjectReference {
    let field = |value: &str| (!value.is_empty()).then(|| value.to_string());
    ObjectReference {
        api_version: field(&identity.api_version),
        kind: field(&identity.kind),
        namespace: field(&identity.namespace),
        name: field(&identity.name),
        uid: field(&identity.uid),
        ..ObjectReference::default()
    }
}

/// Feeds the graph from a metadata watch of `kind`.
async fn watch_kind(context: Arc<Context>, kind: Kind, listed: Arc<watch::Sender<usize>>) {
    // kube-rs asks for `as=PartialObjectMetadata` for an `Api` of `PartialObjectMeta`.
    let api: Api<PartialObjectMeta<DynamicObject>> =
        Api::all_with(context.client.clone(), &kind.resource);
    // Metadata only, as kube's garbage collector watches through metadata informers: the
    // graph reads nothing else, and a whole pod decoded per event for every kind's watch
    // was the collector's main cost under a burst of writes.
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    // The uids of the list in progress, to tell what went away while the watch was down.
    let mut listing: Option<HashSet<String>> = None;
    let mut listed_once = false;
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                let kind = &kind.resource.kind;
                tracing::warn!(%kind, %error, "watching for the garbage collector");
                continue;
            }
        };
        let work = match event {
            Event::Apply(object) => observe(&context, &kind, &object.metadata),
            Event::InitApply(object) => {
                if let (Some(seen), Some(uid)) = (listing.as_mut(), &object.metadata.uid) {
                    seen.insert(uid.clone());
                }
                observe(&context, &kind, &object.metadata)
            }
            Event::Delete(object) => match Identity::of(&kind, &object.metadata) {
                Some(identity) => context.graph().observe_deleted(&identity),
                None => Vec::new(),
            },
            Event::Init => {
                listing = Some(HashSet::new());
                Vec::new()
            }
            Event::InitDone => {
                let seen = listing.take().unwrap_or_default();
                let work = context.graph().relisted(&kind, &seen);
                if !listed_once {
                    listed_once = true;
                    listed.send_modify(|count| *count += 1);
                }
                work
            }
        };
        context.queue(work);
    }
}
