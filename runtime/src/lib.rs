//! The pod runtime: static pods from the manifest directory, run the way the kubelet, a CRI
//! runtime and a bridge CNI plugin run them.
//!
//! # Layout
//! - manager-level code here: desired pods in, one [`worker`] task per pod out.
//! - [`worker`]: a pod's life: sandbox, containers, restarts, graceful stop.
//! - [`lifecycle`]: the pure rules (restart policy, back-off, phase), tested without a kernel.
//! - [`sandbox`], [`pause`]: the namespaces a pod keeps while its containers come and go.
//! - [`shim`], [`rootfs`]: one process per container that starts, logs and reaps it;
//!   [`command`]: its command line and environment by Kubernetes' rules.
//! - [`network`], [`ipam`]: the node bridge, veth pairs, addresses.
//! - [`prober`]: liveness, readiness and startup probes; [`nsexec`]: commands in containers.
//! - [`cgroups`]: limits on cgroup v2 or v1/hybrid hosts; [`image`]: the image store.
//! - [`state`]: the on-disk state that lets a restarted daemon adopt running pods.
//! - [`cli`]: `node-daemon pods`, `logs`, `image`; [`metrics`]: per-container usage.

pub mod cgroups;
pub mod cli;
pub mod command;
pub mod endpoints;
pub mod events;
pub mod image;
pub mod inroot;
pub mod ipam;
pub mod lifecycle;
pub mod metrics;
pub mod network;
pub mod nsexec;
pub mod oom;
pub mod pause;
pub mod prober;
pub mod process;
pub mod rootfs;
pub mod sandbox;
pub mod seccomp;
pub mod security;
pub mod shim;
pub mod spec;
pub mod state;
pub mod tls;
pub mod volumes;
pub mod worker;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::PathBuf,
    sync::{Arc, RwLock},
};

use keel_api::{Pod, PodStatus};
use serde::{Deserialize, Serialize};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use self::{
    cgroups::CgroupLayout, image::ImageStore, ipam::Ipam, lifecycle::BackoffPolicy, state::StateDir,
};

/// Everything a pod worker needs of the node.
pub struct RuntimeConfig {
    pub state: StateDir,
    pub images: ImageStore,
    pub ipam: Ipam,
    pub cgroups: CgroupLayout,
    pub bridge: String,
    /// The `node-daemon` executable: pause and shim processes are this binary.
    pub exe: PathBuf,
    pub backoff: BackoffPolicy,
    /// Whether overlayfs is available (else containers get a copy of the image).
    pub overlay: bool,
    /// Log rotation: the size a log file may reach and the files kept per container.
    pub log_max_size: u64,
    pub log_max_files: u32,
    /// Containers being prepared (root file system, volumes, cgroups) at once, at most. Each
    /// preparation blocks a thread of its own, so this bounds the threads a burst of pod
    /// starts spawns, with their stacks and allocator caches.
    pub preparations: tokio::sync::Semaphore,
    pub node_ip: Option<Ipv4Addr>,
    /// The node's resolver configuration, copied into pods.
    pub resolv_conf: PathBuf,
    /// The latest status of every pod, for metrics and the pods' endpoints.
    pub views: PodViews,
    /// Woken when a pod's address, readiness or termination changes: its endpoints change.
    pub endpoints_changed: Arc<tokio::sync::Notify>,
    /// Woken whenever a pod's status is published or its worker ends: the node daemon's
    /// reporter to an API server follows it (any change, not only the endpoints').
    pub status_changed: Arc<tokio::sync::Notify>,
    /// Counts those changes; each change is numbered.
    pub endpoints_version: std::sync::atomic::AtomicU64,
    /// The highest numbered change the proxy has written into the kernel. A stopping pod
    /// waits for its own change here before its containers get SIGTERM, so no new
    /// connection is sent to a process that is shutting down.
    pub endpoints_synced: watch::Sender<u64>,
    /// OOM kills as the kernel reports them (see [`oom`]).
    pub oom_events: tokio::sync::broadcast::Sender<keel_common::OomEvent>,
    /// The files of secret, configMap, downwardAPI and projected volumes, fetched by whoever
    /// talks to the API server; None on a node without one (such volumes cannot start).
    pub volume_contents: Option<Arc<dyn volumes::VolumeContents>>,
}

impl std::fmt::Debug for RuntimeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeConfig")
            .field("state", &self.state)
            .field("bridge", &self.bridge)
            .field("node_ip", &self.node_ip)
            .field("volume_contents", &self.volume_contents.is_some())
            .finish_non_exhaustive()
    }
}

/// What the metrics collector sees of a pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub status: PodStatus,
    /// The host pid of each running container's process.
    pub pids: BTreeMap<String, i32>,
    /// Every container's ports (for Services' named target ports).
    pub ports: Vec<keel_api::pod::ContainerPort>,
    /// The pod is being stopped.
    pub terminating: bool,
}

impl PodView {
    /// The pod's Ready condition.
    pub fn is_ready(&self) -> bool {
        self.status
            .conditions
            .iter()
            .any(|c| c.condition_type == "Ready" && c.status == "True")
    }

    /// Succeeded or Failed: the pod will not run again.
    pub fn finished(&self) -> bool {
        matches!(
            self.status.phase,
            keel_api::PodPhase::Succeeded | keel_api::PodPhase::Failed
        )
    }

    /// What the pod's endpoints depend on: a change here means a new EndpointSlice.
    pub fn endpoint_key(&self) -> (Option<String>, bool, bool, bool) {
        (
            self.status.pod_ip.clone(),
            self.is_ready(),
            self.terminating,
            self.finished(),
        )
    }
}

/// The latest view of every pod, by uid.
///
/// Changed only by whole-entry inserts and removes, so a lock poisoned by a panicking holder
/// still guards a consistent map: readers and writers recover it rather than skip it.
pub type PodViews = Arc<RwLock<BTreeMap<String, PodView>>>;

/// A pod the manifests ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredPod {
    /// Derived from the pod's content, as the kubelet derives static pods' uids: a changed
    /// manifest is a new pod (the old one is stopped), an unchanged one the same pod.
    pub uid: String,
    pub pod: Pod,
    pub source: PathBuf,
}

/// `pod.json`: the pod as applied, for the CLI and for a daemon that finds it at start-up.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRecord {
    pub uid: String,
    pub pod: Pod,
    pub source: PathBuf,
    pub creation_timestamp: String,
}

impl DesiredPod {
    pub fn new(pod: Pod, source: PathBuf) -> Self {
        let content = serde_json::to_vec(&pod).unwrap_or_default();
        let uid = format!("{:016x}", keel_host::hash::fnv1a(&content, 0));
        Self { uid, pod, source }
    }

    fn key(&self) -> (String, String) {
        (
            self.pod.metadata.namespace().to_owned(),
            self.pod.metadata.name.clone(),
        )
    }

    pub fn record(&self) -> PodRecord {
        PodRecord {
            uid: self.uid.clone(),
            pod: self.pod.clone(),
            source: self.source.clone(),
            creation_timestamp: shim::now_rfc3339(),
        }
    }
}

struct RunningWorker {
    key: (String, String),
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// Runs pod workers so that the pods on the node equal the latest desired set. Pods found in
/// the state directory but no longer desired are stopped (they may have been removed while
/// the daemon was down). `None` means the manifests have not been read yet: nothing is
/// decided before they have, or a restarting daemon would stop every pod it should adopt.
pub async fn run_manager(
    config: Arc<RuntimeConfig>,
    mut desired: watch::Receiver<Option<Vec<DesiredPod>>>,
) {
    let mut workers: BTreeMap<String, RunningWorker> = BTreeMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut orphans_checked = false;
    loop {
        let Some(wanted) = desired.borrow_and_update().clone() else {
            if desired.changed().await.is_err() {
                return;
            }
            continue;
        };
        let wanted_uids: BTreeSet<&str> = wanted.iter().map(|p| p.uid.as_str()).collect();
        // Stop what is no longer wanted.
        for (uid, worker) in &workers {
            if !wanted_uids.contains(uid.as_str()) && !*worker.stop.borrow() {
                tracing::info!(pod = %format!("{}/{}", worker.key.0, worker.key.1), uid, "pod no longer in the manifests; stopping it");
                let _ = worker.stop.send(true);
            }
        }
        if !orphans_checked {
            orphans_checked = true;
            for (uid, pod) in orphans(&config, &wanted_uids) {
                tracing::info!(
                    uid,
                    "pod left by an earlier daemon is no longer in the manifests; stopping it"
                );
                spawn_worker(&config, &mut workers, &done_tx, pod, true);
            }
        }
        // Start what is new, unless an older pod of the same name is still stopping (a
        // changed manifest replaces its pod: old one out, then new one in).
        for pod in wanted {
            if workers.contains_key(&pod.uid) {
                continue;
            }
            let key = pod.key();
            if workers.values().any(|w| w.key == key) {
                continue;
            }
            spawn_worker(&config, &mut workers, &done_tx, pod, false);
        }
        tokio::select! {
            changed = desired.changed() => {
                if changed.is_err() {
                    // The daemon is shutting down: pods keep running without it.
                    for worker in workers.values() {
                        worker.handle.abort();
                    }
                    return;
                }
            }
            Some(uid) = done_rx.recv() => {
                workers.remove(&uid);
            }
        }
    }
}

fn spawn_worker(
    config: &Arc<RuntimeConfig>,
    workers: &mut BTreeMap<String, RunningWorker>,
    done: &mpsc::UnboundedSender<String>,
    pod: DesiredPod,
    stop_now: bool,
) {
    let (stop_tx, stop_rx) = watch::channel(stop_now);
    let uid = pod.uid.clone();
    let key = pod.key();
    let worker = worker::Worker::new(config.clone(), pod);
    let done = done.clone();
    let task_uid = uid.clone();
    let handle = tokio::spawn(async move {
        worker.run(stop_rx).await;
        let _ = done.send(task_uid);
    });
    workers.insert(
        uid,
        RunningWorker {
            key,
            stop: stop_tx,
            handle,
        },
    );
}

/// Pods in the state directory that the manifests no longer name.
fn orphans(config: &RuntimeConfig, wanted: &BTreeSet<&str>) -> Vec<(String, DesiredPod)> {
    let Ok(uids) = config.state.pod_uids() else {
        return Vec::new();
    };
    uids.into_iter()
        .filter(|uid| !wanted.contains(uid.as_str()))
        .filter_map(|uid| {
            let record: PodRecord = state::read_json(&config.state.pod(&uid).pod_json()).ok()??;
            let pod = DesiredPod {
                uid: record.uid,
                pod: record.pod,
                source: record.source,
            };
            Some((uid, pod))
        })
        .collect()
}

/// Whether the kernel has overlayfs.
pub fn overlay_available() -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .map(|fs| {
            fs.lines()
                .any(|l| l.split_whitespace().last() == Some("overlay"))
        })
        .unwrap_or(false)
}

/// Stops every pod in the state directory (for `--cleanup`): containers get SIGTERM then
/// SIGKILL after their grace period, sandboxes are removed, addresses released.
pub async fn stop_all(config: Arc<RuntimeConfig>) -> usize {
    let pods = orphans(&config, &BTreeSet::new());
    let count = pods.len();
    let mut handles = Vec::new();
    for (_, pod) in pods {
        let (_stop_tx, stop_rx) = watch::channel(true);
        let worker = worker::Worker::new(config.clone(), pod);
        handles.push(tokio::spawn(async move {
            let _keep = _stop_tx;
            worker.run(stop_rx).await
        }));
    }
    for handle in handles {
        let _ = handle.await;
    }
    count
}
