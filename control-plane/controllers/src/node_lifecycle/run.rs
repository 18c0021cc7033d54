//! The node lifecycle controller as a client of the API: caches, the monitor loop
//! (`monitorNodeHealth`), the tainting pass (`doNoExecuteTaintingPass`); the taint manager's
//! eviction queue is in `eviction`.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Taint};
use k8s_openapi::jiff::Timestamp;
use keel_events::Recorder;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde_json::json;
use tokio::time::Instant;

use super::events::{self, COMPONENT, EVICTION_COMPONENT};
use super::health::{self, Heartbeats, NodeHealth};
use super::taints;
use super::zones::{self, Rates, TaintQueue, ZoneState};
use crate::events::node_reference;
use crate::informer::CachesSynced;
use crate::workqueue::{ControllerHandle, WorkQueue, WorkQueueMetrics};

mod eviction;

/// The eviction queue's name in the `workqueue_*` metrics.
pub const QUEUE_NAME: &str = "node_lifecycle_eviction";
/// Where kubelets keep their node leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How often queued nodes are tainted (`scheduler.NodeEvictionPeriod`).
const TAINTING_PERIOD: Duration = Duration::from_millis(100);
/// How often pods on NoExecute-tainted nodes are looked at.
const EVICTION_PERIOD: Duration = Duration::from_secs(1);
/// Workers deleting pods.
const EVICTION_WORKERS: usize = 2;

/// Options of [`start`] (kube-controller-manager's flags of the same names).
pub struct Options {
    pub node_monitor_grace_period: Duration,
    /// `--node-startup-grace-period`: the grace of a node never seen with a Ready condition.
    pub node_startup_grace_period: Duration,
    pub node_monitor_period: Duration,
    pub eviction_rate: f64,
    pub secondary_eviction_rate: f64,
    pub unhealthy_zone_threshold: f64,
    pub large_cluster_size_threshold: usize,
    /// Where the eviction queue reports its metrics; unregistered ones when `None`.
    pub metrics: Option<Arc<WorkQueueMetrics>>,
    /// Where the node events go; a recorder of its own ([`COMPONENT`]) when `None`.
    pub recorder: Option<Recorder>,
    /// Where the taint manager's events go; its own ([`EVICTION_COMPONENT`]) when `None`.
    pub eviction_recorder: Option<Recorder>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            node_monitor_grace_period: Duration::from_secs(40),
            node_startup_grace_period: Duration::from_secs(60),
            node_monitor_period: Duration::from_secs(5),
            eviction_rate: 0.1,
            secondary_eviction_rate: 0.01,
            unhealthy_zone_threshold: 0.55,
            large_cluster_size_threshold: 50,
            metrics: None,
            recorder: None,
            eviction_recorder: None,
        }
    }
}

/// The monitor's memory between passes.
#[derive(Default)]
struct State {
    health: HashMap<String, NodeHealth>,
    zone_states: HashMap<String, ZoneState>,
    tainters: HashMap<String, TaintQueue>,
    /// When a NoExecute taint without `timeAdded` was first seen, by (node, taint key).
    first_seen: HashMap<(String, String), Timestamp>,
    /// Every zone fully disrupted: no evictions.
    all_disrupted: bool,
    /// The nodes seen, by name (kube's `knownNodeSet`), for `RegisteredNode` and
    /// `RemovingNode`.
    known: HashMap<String, ObjectReference>,
}

struct Context {
    client: Client,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    queue: Arc<WorkQueue>,
    state: Mutex<State>,
    options: Options,
    synced: CachesSynced,
    /// Events about nodes (`node-controller`) and about evicted pods
    /// (`taint-eviction-controller`), never waited for.
    recorder: Recorder,
    eviction_recorder: Recorder,
}

impl Context {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn rates(&self) -> Rates {
        Rates {
            eviction_rate: self.options.eviction_rate,
            secondary_eviction_rate: self.options.secondary_eviction_rate,
            large_cluster_size_threshold: self.options.large_cluster_size_threshold,
        }
    }

    /// Whether the three caches have been listed (one wait shared by every loop, see
    /// [`CachesSynced`]).
    async fn ready(&self) -> bool {
        self.synced
            .wait(|| async {
                // An error means a watch task is gone: the controller is stopping.
                self.nodes.wait_until_ready().await.is_ok()
                    && self.leases.wait_until_ready().await.is_ok()
                    && self.pods.wait_until_ready().await.is_ok()
            })
            .await
    }
}

/// Starts the controller on the current tokio runtime.
pub fn start(client: Client, mut options: Options) -> ControllerHandle {
    let queue = WorkQueue::shared(QUEUE_NAME, options.metrics.as_deref());
    let (nodes, node_writer) = reflector::store::<Node>();
    let (leases, lease_writer) = reflector::store::<Lease>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let config = watcher::Config::default;
    let node_stream = watcher::watcher(Api::<Node>::all(client.clone()), config())
        .default_backoff()
        .reflect(node_writer);
    let lease_api = Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE);
    let lease_stream = watcher::watcher(lease_api, config())
        .default_backoff()
        .reflect(lease_writer);
    let pod_stream = watcher::watcher(Api::<Pod>::all(client.clone()), config())
        .default_backoff()
        .reflect(pod_writer);
    let recorder = options
        .recorder
        .take()
        .unwrap_or_else(|| Recorder::new(client.clone(), COMPONENT));
    let eviction_recorder = options
        .eviction_recorder
        .take()
        .unwrap_or_else(|| Recorder::new(client.clone(), EVICTION_COMPONENT));
    let context = Arc::new(Context {
        recorder,
        eviction_recorder,
        client,
        nodes,
        leases,
        pods,
        queue: queue.clone(),
        state: Mutex::new(State::default()),
        options,
        synced: CachesSynced::default(),
    });
    let mut tasks = vec![
        tokio::spawn(drain(node_stream, "nodes")),
        tokio::spawn(drain(lease_stream, "leases")),
        tokio::spawn(drain(pod_stream, "pods")),
        tokio::spawn(monitor(context.clone())),
        tokio::spawn(tainting(context.clone())),
        tokio::spawn(eviction::evictions(context.clone())),
    ];
    for _ in 0..EVICTION_WORKERS {
        tasks.push(tokio::spawn(eviction::worker(context.clone())));
    }
    ControllerHandle::new(vec![queue], tasks)
}

/// Runs a reflecting watch; the stores are all the loops read.
async fn drain<S, K>(stream: S, what: &'static str)
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        if let Err(error) = event {
            tracing::warn!(%error, what, "watching");
        }
    }
}

fn name_of(node: &Node) -> String {
    node.metadata.name.clone().unwrap_or_default()
}

fn taints_of(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|spec| spec.taints.as_deref())
        .unwrap_or_default()
}

async fn monitor(context: Arc<Context>) {
    if !context.ready().await {
        return;
    }
    tracing::info!(
        grace = ?context.options.node_monitor_grace_period,
        period = ?context.options.node_monitor_period,
        "node lifecycle controller monitoring node health"
    );
    // `interval` refuses a zero period.
    let period = context
        .options
        .node_monitor_period
        .max(Duration::from_millis(1));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        monitor_once(&context).await;
    }
}

/// One `monitorNodeHealth` pass.
async fn monitor_once(context: &Context) {
    let nodes = context.nodes.state();
    let now = Instant::now();
    let rates = context.rates();
    let mut zone_ready: HashMap<String, Vec<Option<String>>> = HashMap::new();
    {
        // Forget nodes that are gone; greet the new ones.
        let mut state = context.state();
        let names: HashSet<String> = nodes.iter().map(|n| name_of(n)).collect();
        state.known.retain(|name, reference| {
            let present = names.contains(name);
            if !present {
                events::removing(name).record(&context.recorder, reference);
            }
            present
        });
        for node in &nodes {
            let name = name_of(node);
            if let Entry::Vacant(entry) = state.known.entry(name) {
                let reference = node_reference(node);
                events::registered(entry.key()).record(&context.recorder, &reference);
                entry.insert(reference);
            }
        }
        state.health.retain(|name, _| names.contains(name));
        state.first_seen.retain(|(name, _), _| names.contains(name));
        for queue in state.tainters.values_mut() {
            queue.retain(|name| names.contains(name));
        }
    }
    for node in &nodes {
        let name = name_of(node);
        let lease = context
            .leases
            .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE));
        let renew =
            lease.and_then(|lease| lease.spec.as_ref()?.renew_time.as_ref().map(|time| time.0));
        let heartbeats = Heartbeats::of(node, renew);
        let grace = if heartbeats.has_ready {
            context.options.node_monitor_grace_period
        } else {
            context.options.node_startup_grace_period
        };
        let stale = {
            let mut state = context.state();
            let zone = zones::zone_of(node);
            if !state.zone_states.contains_key(&zone) {
                state.zone_states.insert(zone.clone(), ZoneState::Initial);
                let qps = rates.eviction_rate;
                state.tainters.insert(zone, TaintQueue::new(qps, now));
            }
            let health = state
                .health
                .entry(name.clone())
                .and_modify(|health| health.observe(heartbeats.clone(), now))
                .or_insert_with(|| NodeHealth::first(heartbeats.clone(), now));
            health.is_stale(now, grace)
        };
        let mut ready = health::ready_condition(node).map(|ready| ready.status.clone());
        let ready_before = ready.clone();
        if stale {
            if let Some(conditions) = health::unknown_conditions(node, Timestamp::now()) {
                let patch = json!({ "status": { "conditions": conditions } });
                let api: Api<Node> = Api::all(context.client.clone());
                let params = PatchParams::default();
                if let Err(error) = api
                    .patch_status(&name, &params, &Patch::Merge(&patch))
                    .await
                {
                    tracing::warn!(node = %name, %error, "marking the node's status Unknown");
                    continue;
                }
                tracing::info!(node = %name, "node stopped posting status: conditions Unknown");
                let note = events::not_ready(&name, ready_before.as_deref(), health::UNKNOWN);
                if let Some(note) = note {
                    note.record(&context.recorder, &node_reference(node));
                }
            }
            ready = Some(health::UNKNOWN.to_string());
        }
        zone_ready
            .entry(zones::zone_of(node))
            .or_default()
            .push(ready.clone());
        // Without a Ready condition (a node still starting) kube takes no taint decision.
        if let Some(ready) = ready {
            write_no_schedule_taints(context, node, &ready).await;
            taint_decision(context, node, &ready).await;
        }
    }
    handle_disruption(context, &nodes, &zone_ready).await;
}

/// The NoSchedule taint of the node's Ready status, written at once (guarded by the node's
/// resourceVersion; a conflict is retried on the next pass).
async fn write_no_schedule_taints(context: &Context, node: &Node, ready: &str) {
    let Some(taints) = taints::swap_no_schedule_taints(taints_of(node), ready) else {
        return;
    };
    let name = name_of(node);
    let patch = json!({
        "metadata": { "resourceVersion": node.metadata.resource_version },
        "spec": { "taints": taints },
    });
    let api: Api<Node> = Api::all(context.client.clone());
    if let Err(error) = api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::debug!(node = %name, %error, "updating the node's NoSchedule taints");
    }
}

/// `processTaintBaseEviction`: swap at once between the two taints, queue a first taint for
/// the zone's limiter, remove both when Ready.
async fn taint_decision(context: &Context, node: &Node, ready: &str) {
    let name = name_of(node);
    let taints = taints_of(node);
    match taints::taint_for_ready(ready) {
        Some(key) => {
            let other = if key == taints::NOT_READY {
                taints::UNREACHABLE
            } else {
                taints::NOT_READY
            };
            if taints::has_taint(taints, other) {
                write_taints(context, node, Some(key)).await;
            } else if !taints::has_taint(taints, key) {
                let mut state = context.state();
                if let Some(queue) = state.tainters.get_mut(&zones::zone_of(node)) {
                    queue.add(&name);
                }
            }
        }
        None => {
            {
                let mut state = context.state();
                for queue in state.tainters.values_mut() {
                    queue.remove(&name);
                }
            }
            write_taints(context, node, None).await;
        }
    }
}

/// Writes the node's taints with `add` (and the other controller taint removed), guarded by
/// its resourceVersion; `false` when the write failed (retried next pass).
async fn write_taints(context: &Context, node: &Node, add: Option<&str>) -> bool {
    let Some(taints) = taints::swap_taints(taints_of(node), add, Timestamp::now()) else {
        return true;
    };
    let name = name_of(node);
    let patch = json!({
        "metadata": { "resourceVersion": node.metadata.resource_version },
        "spec": { "taints": taints },
    });
    let api: Api<Node> = Api::all(context.client.clone());
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(node = %name, taint = ?add, "node's NoExecute taints updated");
            true
        }
        Err(error) => {
            tracing::warn!(node = %name, %error, "updating the node's taints");
            false
        }
    }
}

/// `handleDisruption`: new zone states, the limiters they call for, and kube's master
/// disruption mode when every zone is fully disrupted.
async fn handle_disruption(
    context: &Context,
    nodes: &[Arc<Node>],
    zone_ready: &HashMap<String, Vec<Option<String>>>,
) {
    let rates = context.rates();
    let threshold = context.options.unhealthy_zone_threshold;
    let now = Instant::now();
    let new_states: HashMap<&String, ZoneState> = zone_ready
        .iter()
        .map(|(zone, ready)| {
            let ready: Vec<Option<&str>> = ready.iter().map(Option::as_deref).collect();
            (zone, zones::compute_zone_state(&ready, threshold).1)
        })
        .collect();
    let all_are = new_states.values().all(|s| *s == ZoneState::FullDisruption);
    let all_were = {
        let mut state = context.state();
        state
            .zone_states
            .retain(|zone, _| zone_ready.contains_key(zone));
        state
            .tainters
            .retain(|zone, _| zone_ready.contains_key(zone));
        state
            .zone_states
            .values()
            .all(|s| *s == ZoneState::FullDisruption)
    };
    if all_are {
        if !all_were {
            tracing::warn!("every node is not Ready: stopping evictions (master disruption mode)");
        }
        {
            let mut state = context.state();
            state.all_disrupted = true;
            for queue in state.tainters.values_mut() {
                queue.limiter.set_qps(0.0, now);
            }
            for zone_state in state.zone_states.values_mut() {
                *zone_state = ZoneState::FullDisruption;
            }
        }
        // `markNodeAsReachable` for every node: nothing is evicted for a control plane cut off.
        for node in nodes {
            write_taints(context, node, None).await;
        }
        return;
    }
    let mut state = context.state();
    state.all_disrupted = false;
    if all_were {
        tracing::info!("leaving master disruption mode: every node gets a fresh grace period");
        for health in state.health.values_mut() {
            health.reset(now);
        }
    }
    for (zone, new_state) in new_states {
        let size = zone_ready.get(zone).map_or(0, Vec::len);
        let changed = state.zone_states.get(zone) != Some(&new_state);
        if changed || all_were {
            if let Some(queue) = state.tainters.get_mut(zone) {
                queue.limiter.set_qps(rates.qps(new_state, size), now);
            }
            state.zone_states.insert(zone.clone(), new_state);
        }
    }
}

/// `doNoExecuteTaintingPass`: taints the queued nodes each zone's limiter lets through.
async fn tainting(context: Arc<Context>) {
    if !context.ready().await {
        return;
    }
    let mut ticker = tokio::time::interval(TAINTING_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let allowed: Vec<(String, String)> = {
            let mut state = context.state();
            let now = Instant::now();
            state
                .tainters
                .iter_mut()
                .flat_map(|(zone, queue)| {
                    let zone = zone.clone();
                    queue
                        .take_allowed(now)
                        .into_iter()
                        .map(move |name| (zone.clone(), name))
                })
                .collect()
        };
        for (zone, name) in allowed {
            let Some(node) = context.nodes.get(&ObjectRef::new(&name)) else {
                continue;
            };
            // Ready again since it was queued: nothing to taint.
            let Some(key) = taints::taint_for_ready(health::ready_status(&node)) else {
                continue;
            };
            if !write_taints(&context, &node, Some(key)).await {
                if let Some(queue) = context.state().tainters.get_mut(&zone) {
                    queue.add(&name);
                }
            }
        }
    }
}
