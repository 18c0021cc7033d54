//! The scheduler as a client of the Kubernetes API: watches pods, nodes and namespaces, runs
//! the [`Core`] on a thread of its own, binds through `pods/binding`, and reports as
//! kube-scheduler does: a `Scheduled` event, and for a failure the `PodScheduled=False`
//! condition and a `FailedScheduling` event (events through [`keel_events`], which counts
//! repeats on one Event).
//!
//! It speaks the API through kube-rs, so the same scheduler runs against any conformant API
//! server, and never touches the store.
//!
//! # Threads and tasks
//! - one watch task per kind turns watch events into `Input`s on a channel;
//! - the scheduling thread owns the `Core`: it applies every queued input, then runs one
//!   cycle, and sleeps on the channel when no pod is ready (CPU-bound work stays off the async
//!   runtime that also serves the API);
//! - each binding is a task, at most `bind_parallelism` at once. The thread takes a binding's
//!   permit before it pops a pod, so it never runs ahead of the bindings: a pod waits in the
//!   active queue (where `scheduler_pending_pods` counts it and a cycle can still see its
//!   changes), not assumed behind a thousand bindings. A binding done, or refused, comes back
//!   to the thread as an input;
//! - one recorder task writes `PodScheduled=False` conditions, and the [`Recorder`]'s task
//!   writes events, each from a bounded channel that drops when full (as Kubernetes' event
//!   broadcaster does: a slow API server never holds up scheduling).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use keel_events::{reference, EventType, Recorder};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::config::{ConfigError, PluginEnv, SchedulerConfig};
use crate::core::{BindFailure, Core, Outcome, DEFAULT_SCHEDULER_NAME};
use crate::metrics::Metrics;
use crate::nominator::nominated_node_name;
use crate::preemption::REASON_PREEMPTION_BY_SCHEDULER;
use crate::queue::QueuedPod;

mod watch;
use watch::{watch_namespaces, watch_nodes, watch_pods};

/// Bindings in flight at once (kube-scheduler binds each pod in a goroutine of its own; a
/// bound keeps a burst from opening thousands of connections). Also how far scheduling runs
/// ahead of the bindings. On SchedulingBasic end to end (bench scheduler, 64 creators), 16
/// and 32 gave a lower attempt latency but 17% and 10% fewer pods/s: once the creators are
/// done, the remaining bindings are bound by their latency, not by the CPU.
pub const DEFAULT_BIND_PARALLELISM: usize = 64;
/// Conditions waiting to be written; more are dropped.
const RECORDER_QUEUE: usize = 4096;
/// The scheduler's name in its events' `source.component` (kube's default profile).
pub const COMPONENT: &str = "default-scheduler";
/// The loop's housekeeping period (queue gauges, the unschedulable pool's five-minute flush).
const TICK: Duration = Duration::from_secs(1);

/// What the watch tasks and bindings tell the scheduling thread.
enum Input {
    /// Objects are boxed: the other inputs are small, and a channel slot is as large as the
    /// largest.
    Pod(Box<Pod>),
    PodDeleted(String),
    /// A (re)list finished: the keys it held.
    PodsListed(HashSet<String>),
    Node(Box<Node>),
    NodeDeleted(String),
    NodesListed(HashSet<String>),
    BindFailed(QueuedPod, BindFailure),
    /// A binding was answered and its permit is free: a cycle may run again.
    BindingDone,
    Stop,
}

/// What the recorder task writes to the API: the `PodScheduled=False` condition, which only
/// changes with the message; a pod scheduled needs no condition remembered any more.
enum Record {
    Scheduled {
        key: String,
    },
    Unschedulable {
        namespace: String,
        name: String,
        message: String,
        /// Also clear `status.nominatedNodeName` (a stale nomination), in the same write.
        clear_nominated_node: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("scheduler configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("starting the scheduling thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// A running scheduler; dropping it stops it.
pub struct SchedulerHandle {
    inputs: mpsc::Sender<Input>,
    tasks: Vec<JoinHandle<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SchedulerHandle {
    /// Stops the watches and the thread, and waits for the thread to finish its cycle.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // The thread may be gone already (it stops when every sender is dropped).
        let _ = self.inputs.send(Input::Stop);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the scheduling thread panicked");
            }
        }
    }
}

impl Drop for SchedulerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Options of [`start`].
pub struct Options {
    /// A `KubeSchedulerConfiguration` (YAML or JSON); kube-scheduler's defaults when `None`.
    pub config_yaml: Option<String>,
    pub bind_parallelism: usize,
    pub metrics: Option<Arc<Metrics>>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            config_yaml: None,
            bind_parallelism: DEFAULT_BIND_PARALLELISM,
            metrics: None,
        }
    }
}

/// Starts the scheduler on the current tokio runtime.
pub fn start(client: Client, options: Options) -> Result<SchedulerHandle, RunError> {
    let namespaces: Arc<RwLock<HashMap<String, BTreeMap<String, String>>>> = Arc::default();
    let env = PluginEnv {
        namespace_labels: {
            let namespaces = namespaces.clone();
            Arc::new(move |name: &str| {
                namespaces
                    .read()
                    .ok()
                    .and_then(|map| map.get(name).cloned())
            })
        },
        ..PluginEnv::default()
    };
    let config = match &options.config_yaml {
        Some(text) => SchedulerConfig::from_yaml(text, &env)?,
        None => SchedulerConfig::default_config(&env),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.parallelism.max(1))
        .thread_name(|i| format!("scheduler-{i}"))
        .build()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let (inputs, receiver) = mpsc::channel();
    let (records, record_rx) = tokio::sync::mpsc::channel(RECORDER_QUEUE);
    let runtime = tokio::runtime::Handle::current();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let core = Core::new(config, options.metrics.clone(), seed);
    let tasks = vec![
        tokio::spawn(watch_pods(Api::all(client.clone()), inputs.clone())),
        tokio::spawn(watch_nodes(Api::all(client.clone()), inputs.clone())),
        tokio::spawn(watch_namespaces(Api::all(client.clone()), namespaces)),
        tokio::spawn(record(client.clone(), record_rx)),
    ];
    let binder = Binder {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        inputs: inputs.clone(),
        records,
        permits: Arc::new(Semaphore::new(options.bind_parallelism.max(1))),
        metrics: options.metrics,
        runtime,
    };
    let thread = std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || pool.install(|| schedule_loop(core, receiver, binder)))?;
    Ok(SchedulerHandle {
        inputs,
        tasks,
        thread: Some(thread),
    })
}

/// Carries decisions out: bindings and records, on the runtime.
struct Binder {
    client: Client,
    inputs: mpsc::Sender<Input>,
    records: tokio::sync::mpsc::Sender<Record>,
    recorder: Recorder,
    permits: Arc<Semaphore>,
    metrics: Option<Arc<Metrics>>,
    runtime: tokio::runtime::Handle,
}

impl Binder {
    /// Carries `outcome` out; `permit` goes with a binding, and is dropped otherwise.
    fn carry_out(&self, outcome: Outcome, permit: OwnedSemaphorePermit) {
        match outcome {
            Outcome::Assumed {
                pod,
                node,
                profile,
                cycle_started,
            } => {
                let client = self.client.clone();
                let inputs = self.inputs.clone();
                let reporter = Reporter {
                    records: self.records.clone(),
                    recorder: self.recorder.clone(),
                };
                let metrics = self.metrics.clone();
                self.runtime.spawn(async move {
                    let placed = Placed {
                        pod,
                        node,
                        profile,
                        cycle_started,
                        permit,
                    };
                    bind(client, placed, inputs, reporter, metrics).await;
                });
            }
            Outcome::Unschedulable {
                pod,
                message,
                clear_nominated_node,
                ..
            } => {
                tracing::debug!(pod = %pod.key, %message, "unschedulable");
                self.unschedulable(&pod.pod, message, clear_nominated_node);
            }
            Outcome::Preempting {
                pod,
                message,
                node,
                victims,
                ..
            } => {
                tracing::info!(pod = %pod.key, %node, victims = victims.len(), "preempting");
                let client = self.client.clone();
                let recorder = self.recorder.clone();
                let preemptor = pod.pod.clone();
                self.runtime.spawn(async move {
                    if let Err(error) =
                        preempt(&client, &recorder, &preemptor, &node, &victims).await
                    {
                        tracing::warn!(%error, "preemption");
                    }
                });
                self.unschedulable(&pod.pod, message, false);
            }
            Outcome::Error {
                pod,
                message,
                clear_nominated_node,
                ..
            } => {
                tracing::warn!(pod = %pod.key, %message, "scheduling failed");
                self.unschedulable(&pod.pod, message, clear_nominated_node);
            }
        }
    }

    /// A `FailedScheduling` event every attempt (the recorder counts repeats on one Event),
    /// and the condition, written by the recorder task when the message changed.
    /// Reads the pod only: the queue still holds it, so taking it would mean copying it.
    fn unschedulable(&self, pod: &Pod, message: String, clear_nominated_node: bool) {
        self.recorder.event(
            &reference(pod),
            EventType::Warning,
            "FailedScheduling",
            &message,
        );
        let record = Record::Unschedulable {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            message,
            clear_nominated_node,
        };
        queue_record(&self.records, record);
    }
}

/// What a binding reports once it is done.
struct Reporter {
    records: tokio::sync::mpsc::Sender<Record>,
    recorder: Recorder,
}

/// Queues `record` for the recorder task. Dropped when the task is behind: conditions, like
/// events, must not hold up scheduling, and the next attempt writes the condition again.
fn queue_record(records: &tokio::sync::mpsc::Sender<Record>, record: Record) {
    if records.try_send(record).is_err() {
        tracing::debug!("the condition recorder is behind; a condition was dropped");
    }
}

fn schedule_loop(mut core: Core, receiver: mpsc::Receiver<Input>, binder: Binder) {
    let mut pods_listed = false;
    let mut nodes_listed = false;
    let mut last_tick = Instant::now();
    loop {
        // Every input already waiting is applied before the next cycle, so that a cycle sees
        // the freshest cluster the watches have delivered.
        let mut next = receiver.try_recv().ok();
        while let Some(input) = next.take() {
            match input {
                Input::Stop => return,
                Input::PodsListed(keys) => {
                    core.retain_pods(&keys, Instant::now());
                    pods_listed = true;
                }
                Input::NodesListed(names) => {
                    core.retain_nodes(&names);
                    nodes_listed = true;
                }
                input => apply(&mut core, input),
            }
            next = receiver.try_recv().ok();
        }
        let now = Instant::now();
        if now.duration_since(last_tick) >= TICK {
            core.tick(now);
            last_tick = now;
        }
        // Scheduling waits for the first complete lists, as kube-scheduler waits for its
        // informers to sync: a node not yet listed looks like a full cluster. And for a
        // binding's permit: without one, the next `BindingDone` wakes the loop.
        if pods_listed && nodes_listed {
            if let Ok(permit) = binder.permits.clone().try_acquire_owned() {
                if let Some(outcome) = core.schedule_next(now) {
                    binder.carry_out(outcome, permit);
                    continue;
                }
            }
        }
        let wake = core
            .next_wakeup()
            .map_or(TICK, |at| at.saturating_duration_since(now))
            .min(TICK);
        match receiver.recv_timeout(wake) {
            Ok(Input::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Ok(Input::PodsListed(keys)) => {
                core.retain_pods(&keys, Instant::now());
                pods_listed = true;
            }
            Ok(Input::NodesListed(names)) => {
                core.retain_nodes(&names);
                nodes_listed = true;
            }
            Ok(input) => apply(&mut core, input),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}

fn apply(core: &mut Core, input: Input) {
    let now = Instant::now();
    match input {
        Input::Pod(pod) => core.upsert_pod(*pod, now),
        Input::PodDeleted(key) => core.delete_pod(&key, now),
        Input::Node(node) => core.upsert_node(*node, now),
        Input::NodeDeleted(name) => core.delete_node(&name),
        Input::BindFailed(pod, failure) => core.binding_failed(pod, failure, now),
        Input::BindingDone | Input::PodsListed(_) | Input::NodesListed(_) | Input::Stop => {}
    }
}

/// A pod assumed on `node`, to bind under `permit`; the binding ends the attempt of
/// `profile` whose cycle began at `cycle_started`.
struct Placed {
    pod: QueuedPod,
    node: String,
    profile: String,
    cycle_started: Instant,
    permit: OwnedSemaphorePermit,
}

async fn bind(
    client: Client,
    placed: Placed,
    inputs: mpsc::Sender<Input>,
    reporter: Reporter,
    metrics: Option<Arc<Metrics>>,
) {
    let Placed {
        pod,
        node,
        profile,
        cycle_started,
        permit,
    } = placed;
    let namespace = pod.pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.pod.metadata.name.clone().unwrap_or_default();
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": namespace, "uid": pod.pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let api: Api<Pod> = Api::namespaced(client, &namespace);
    let started = Instant::now();
    let result: Result<serde_json::Value, kube::Error> = api
        .create_subresource("binding", &name, &PostParams::default(), &binding)
        .await;
    let ok = result.is_ok();
    // Free before the thread hears of it, so that it finds the permit when it wakes.
    drop(permit);
    if let Some(metrics) = &metrics {
        metrics.bound(ok, pod.attempts, started.elapsed(), pod.initial.elapsed());
        // kube-scheduler's attempt of a placed pod ends with its binding; a refused binding
        // makes it an `error` attempt.
        let result = if ok { "scheduled" } else { "error" };
        metrics.attempt(result, &profile, cycle_started.elapsed());
    }
    match result {
        Ok(_) => {
            if nominated_node_name(&pod.pod).is_some() {
                // Bound (on its nominated node or elsewhere): the nomination has served, and
                // a stale one would keep other pods off that node's room.
                let clear = json!({"status": {"nominatedNodeName": null}});
                if let Err(error) = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(clear))
                    .await
                {
                    tracing::debug!(pod = %pod.key, %error, "clearing nominatedNodeName");
                }
            }
            let _ = inputs.send(Input::BindingDone);
            let message = format!("Successfully assigned {} to {node}", pod.key);
            let involved = reference(pod.pod.as_ref());
            let recorder = &reporter.recorder;
            recorder.event(&involved, EventType::Normal, "Scheduled", &message);
            queue_record(&reporter.records, Record::Scheduled { key: pod.key });
        }
        Err(error) => {
            let failure = match &error {
                // Deleted, or recreated under the same name (the uid precondition), or bound
                // by someone else: the watch brings the truth.
                kube::Error::Api(status) if status.code == 404 || status.code == 409 => {
                    BindFailure::Gone
                }
                _ => BindFailure::Retry,
            };
            tracing::info!(pod = %pod.key, %node, %error, "binding refused");
            let _ = inputs.send(Input::BindFailed(pod, failure));
        }
    }
}

/// Carries a preemption out as kube-scheduler does: the preemptor's
/// `status.nominatedNodeName`, then each victim deleted gracefully (with a uid precondition,
/// so a pod recreated under the same name is spared) and told why by an event.
async fn preempt(
    client: &Client,
    recorder: &Recorder,
    preemptor: &Pod,
    node: &str,
    victims: &[Pod],
) -> Result<(), kube::Error> {
    let namespace = preemptor.metadata.namespace.clone().unwrap_or_default();
    let name = preemptor.metadata.name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let nominate = json!({"status": {"nominatedNodeName": node}});
    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(nominate))
        .await?;
    let uid = preemptor.metadata.uid.clone().unwrap_or_default();
    let scheduler = preemptor
        .spec
        .as_ref()
        .and_then(|spec| spec.scheduler_name.as_deref())
        .unwrap_or(DEFAULT_SCHEDULER_NAME);
    // kube's DisruptionTarget condition: it tells the victim's owner why it goes, and tells
    // this scheduler, while the victim terminates, that the preemptor's room is on its way
    // (`preemption::terminating_by_preemption`).
    let disruption = json!({"status": {"conditions": [{
        "type": "DisruptionTarget",
        "status": "True",
        "reason": REASON_PREEMPTION_BY_SCHEDULER,
        "message": format!("{scheduler}: preempting to accommodate a higher priority pod"),
        "lastTransitionTime": now_rfc3339(),
    }]}});
    for victim in victims {
        let namespace = victim.metadata.namespace.clone().unwrap_or_default();
        let victim_name = victim.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        match api
            .patch_status(
                &victim_name,
                &PatchParams::default(),
                &Patch::Strategic(disruption.clone()),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(error) => return Err(error),
        }
        let params = kube::api::DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: victim.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&victim_name, &params).await {
            Ok(_) => {}
            // Already gone, or replaced: nothing of it is left to evict.
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => continue,
            Err(error) => return Err(error),
        }
        let message = format!("Preempted by pod {uid} on node {node}");
        recorder.event(&reference(victim), EventType::Normal, "Preempted", &message);
    }
    Ok(())
}

/// Writes the `PodScheduled=False` condition of unschedulable pods, only when the message
/// changed since the last one written for the pod (a repeat leaves it as it is).
async fn record(client: Client, mut records: tokio::sync::mpsc::Receiver<Record>) {
    // Pod key → the message of the condition last written.
    let mut last: HashMap<String, String> = HashMap::new();
    while let Some(record) = records.recv().await {
        match record {
            Record::Scheduled { key } => {
                last.remove(&key);
            }
            Record::Unschedulable {
                namespace,
                name,
                message,
                clear_nominated_node,
            } => {
                let key = format!("{namespace}/{name}");
                if last.get(&key) == Some(&message) && !clear_nominated_node {
                    continue;
                }
                let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
                match write_unschedulable(&pods, &name, &message, clear_nominated_node).await {
                    Ok(()) => {
                        last.insert(key, message);
                    }
                    // Not remembered: the next attempt writes it again.
                    Err(error) => tracing::debug!(pod = %key, %error, "writing PodScheduled"),
                }
            }
        }
        // Pods come and go; the messages of old ones need not live forever.
        if last.len() > 100_000 {
            last.clear();
        }
    }
}

async fn write_unschedulable(
    pods: &Api<Pod>,
    name: &str,
    message: &str,
    clear_nominated_node: bool,
) -> Result<(), kube::Error> {
    let mut condition = json!({"status": {"conditions": [{
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": now_rfc3339(),
    }]}});
    if clear_nominated_node {
        // null deletes the field in a strategic merge patch, as kube's updatePod empties it.
        condition["status"]["nominatedNodeName"] = serde_json::Value::Null;
    }
    pods.patch_status(name, &PatchParams::default(), &Patch::Strategic(condition))
        .await?;
    Ok(())
}

/// RFC 3339 in UTC, seconds precision, as Kubernetes writes `metav1.Time`.
fn now_rfc3339() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    // Whole seconds: `metav1.Time` drops the fraction.
    k8s_openapi::jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}
