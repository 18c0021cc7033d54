//! The node's own object: its Node registration and its heartbeats, as the kubelet does them
//! (`pkg/kubelet/kubelet_node_status.go`, `pkg/kubelet/nodelease`).
//!
//! - **Facts** ([`gather`]): capacity (cpu, memory, pods, ephemeral-storage), allocatable,
//!   `nodeInfo` and the default labels, read from `/proc`, `/etc` and `statvfs("/")`.
//! - **Registration** ([`register`]): the kubelet's `tryRegisterWithAPIServer` — create the
//!   Node; if it already exists, take it over (our labels and status win, its spec — pod CIDR,
//!   taints, unschedulable — stays), retrying with backoff until the API server answers.
//! - **Heartbeats** ([`Heartbeat`]): the Lease `kube-node-lease/<node>` renewed every 10 s,
//!   which is what the node lifecycle controller watches, and the Node's conditions posted
//!   when one changes and at least every 5 minutes (`nodeStatusReportFrequency`), so the
//!   status subresource is not rewritten every 10 s by every node.
//!
//! keel's API server has no server-side apply and no strategic merge for this client: writes
//! are creates, replaces carrying the resourceVersion, and JSON merge patches. A merge patch
//! replaces a list whole, so the conditions posted are the stored ones with ours swapped in:
//! conditions other writers add (`NetworkUnavailable`, …) survive.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use keel_host::backoff::Backoff;

mod facts;
#[cfg(test)]
mod tests;

pub use facts::*;

/// Where the kubelet's node leases live.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The kubelet's `nodeLeaseDurationSeconds`: four renewals may be missed before the node
/// lifecycle controller calls the node unreachable.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// The kubelet's `nodeStatusUpdateFrequency`, the lease renewal period.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// The kubelet's `nodeStatusReportFrequency`: the status is posted at least this often even
/// when nothing changed.
pub const STATUS_REPORT_INTERVAL: Duration = Duration::from_secs(300);
/// The kubelet's registration backoff tops out at 7 s; it starts lower, but a control plane
/// that is still starting is not helped by requests every 100 ms.
const REGISTER_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const REGISTER_BACKOFF_MAX: Duration = Duration::from_secs(7);
/// How often [`wait_for_pod_cidr`] looks: the node IPAM controller assigns within a second
/// of seeing the Node.
const POD_CIDR_POLL: Duration = Duration::from_secs(1);
/// tokio's interval panics on a zero period; nothing useful renews faster than this anyway.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The kubelet's default hard eviction threshold `memory.available<100Mi`.
pub const MEMORY_AVAILABLE_THRESHOLD_BYTES: u64 = 100 * 1024 * 1024;
/// The kubelet's default hard eviction threshold `nodefs.available<10%`.
pub const DISK_AVAILABLE_THRESHOLD: f64 = 0.10;

pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
pub const LABEL_OS: &str = "kubernetes.io/os";
pub const LABEL_ARCH: &str = "kubernetes.io/arch";
/// The kubelet still sets the deprecated beta labels; old node selectors use them.
pub const LABEL_BETA_OS: &str = "beta.kubernetes.io/os";
pub const LABEL_BETA_ARCH: &str = "beta.kubernetes.io/arch";

pub const CONDITION_READY: &str = "Ready";
pub const CONDITION_MEMORY_PRESSURE: &str = "MemoryPressure";
pub const CONDITION_DISK_PRESSURE: &str = "DiskPressure";
pub const CONDITION_PID_PRESSURE: &str = "PIDPressure";

const TRUE: &str = "True";
const FALSE: &str = "False";

/// The four conditions the kubelet posts, with its reasons and messages, in its order
/// (kubectl describe shows them so): MemoryPressure, DiskPressure, PIDPressure, Ready.
///
/// `lastHeartbeatTime` is `now`; `lastTransitionTime` is kept from `previous` when that
/// condition's status is unchanged, else `now` — so it says when the node last *changed*,
/// across daemon restarts too when `previous` is the stored status.
pub fn conditions(
    now: Timestamp,
    ready: Result<(), String>,
    pressure: Pressure,
    previous: &[NodeCondition],
) -> Vec<NodeCondition> {
    let memory_pressure = pressure
        .memory_available_bytes
        .is_some_and(|bytes| bytes < MEMORY_AVAILABLE_THRESHOLD_BYTES);
    // A NaN fraction compares false: no pressure, as for an unmeasured disk.
    let disk_pressure = pressure
        .disk_available_fraction
        .is_some_and(|fraction| fraction < DISK_AVAILABLE_THRESHOLD);
    let memory = if memory_pressure {
        (
            TRUE,
            "KubeletHasInsufficientMemory",
            "keel node daemon has insufficient memory available".to_string(),
        )
    } else {
        (
            FALSE,
            "KubeletHasSufficientMemory",
            "keel node daemon has sufficient memory available".to_string(),
        )
    };
    let disk = if disk_pressure {
        (
            TRUE,
            "KubeletHasDiskPressure",
            "keel node daemon has disk pressure".to_string(),
        )
    } else {
        (
            FALSE,
            "KubeletHasNoDiskPressure",
            "keel node daemon has no disk pressure".to_string(),
        )
    };
    let pid = (
        FALSE,
        "KubeletHasSufficientPID",
        "keel node daemon has sufficient PID available".to_string(),
    );
    let ready = match ready {
        Ok(()) => (
            TRUE,
            "KubeletReady",
            "keel node daemon is posting ready status".to_string(),
        ),
        Err(message) if message.is_empty() => (
            FALSE,
            "KubeletNotReady",
            "keel node daemon is not ready".to_string(),
        ),
        Err(message) => (FALSE, "KubeletNotReady", message),
    };
    [
        (CONDITION_MEMORY_PRESSURE, memory),
        (CONDITION_DISK_PRESSURE, disk),
        (CONDITION_PID_PRESSURE, pid),
        (CONDITION_READY, ready),
    ]
    .into_iter()
    .map(|(type_, (status, reason, message))| {
        let last_transition_time = previous
            .iter()
            .find(|condition| condition.type_ == type_)
            .filter(|condition| condition.status == status)
            .and_then(|condition| condition.last_transition_time.clone())
            .unwrap_or(Time(now));
        NodeCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: Some(reason.to_string()),
            message: Some(message),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(last_transition_time),
        }
    })
    .collect()
}

/// Whether posting `ours` would tell the API server anything new beyond heartbeat times
/// (the kubelet's `nodeStatusHasChanged`, restricted to the conditions it owns).
fn conditions_changed(stored: &[NodeCondition], ours: &[NodeCondition]) -> bool {
    ours.iter().any(|condition| {
        stored
            .iter()
            .find(|seen| seen.type_ == condition.type_)
            .is_none_or(|seen| {
                seen.status != condition.status
                    || seen.reason != condition.reason
                    || seen.message != condition.message
            })
    })
}

/// The stored conditions with ours put in place of those of the same type (new types
/// appended). A merge patch replaces the list whole; this keeps other writers' conditions.
fn merge_conditions(stored: &[NodeCondition], ours: Vec<NodeCondition>) -> Vec<NodeCondition> {
    let mut merged = stored.to_vec();
    for condition in ours {
        match merged.iter_mut().find(|seen| seen.type_ == condition.type_) {
            Some(slot) => *slot = condition,
            None => merged.push(condition),
        }
    }
    merged
}

/// The Node object this host registers: metadata (name, labels), status (capacity,
/// allocatable, addresses InternalIP + Hostname, nodeInfo, conditions,
/// daemonEndpoints.kubeletEndpoint.Port = daemon_port). No spec: the pod CIDR comes from
/// the node IPAM controller, taints from admins and controllers.
///
/// Empty `conditions` and absent addresses or port are left out rather than written empty,
/// so the status doubles as a merge patch that leaves what it does not know alone.
pub fn node_object(facts: &NodeFacts, conditions: Vec<NodeCondition>) -> Node {
    let mut addresses = Vec::new();
    if let Some(ip) = facts.internal_ip {
        addresses.push(NodeAddress {
            type_: "InternalIP".to_string(),
            address: ip.to_string(),
        });
    }
    if !facts.hostname.is_empty() {
        addresses.push(NodeAddress {
            type_: "Hostname".to_string(),
            address: facts.hostname.clone(),
        });
    }
    Node {
        metadata: ObjectMeta {
            name: Some(facts.name.clone()),
            labels: Some(facts.labels.clone()),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(NodeStatus {
            capacity: Some(facts.capacity.clone()),
            allocatable: Some(facts.allocatable.clone()),
            addresses: (!addresses.is_empty()).then_some(addresses),
            node_info: Some(facts.node_info.clone()),
            conditions: (!conditions.is_empty()).then_some(conditions),
            daemon_endpoints: facts.daemon_port.map(|port| NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint {
                    port: i32::from(port),
                }),
            }),
            ..NodeStatus::default()
        }),
    }
}

/// The lease object for `name` at `now`. The ownerReference to the Node lets the garbage
/// collector remove the Lease with the Node; without the Node's uid there is none (the
/// kubelet, too, creates the Lease unowned when it cannot get its Node).
pub fn lease_object(
    name: &str,
    node_uid: Option<&str>,
    now: Timestamp,
    duration_seconds: i32,
) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(LEASE_NAMESPACE.to_string()),
            owner_references: node_uid.map(|uid| vec![node_owner(name, uid)]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.to_string()),
            lease_duration_seconds: Some(duration_seconds),
            renew_time: Some(MicroTime(now)),
            ..LeaseSpec::default()
        }),
    }
}

fn node_owner(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".to_string(),
        kind: "Node".to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
        ..OwnerReference::default()
    }
}

/// `lease` renewed at `now` (the kubelet's `newLease` on an existing one): holder and
/// duration reasserted, and the Node made its owner if nobody owns it yet.
fn renewed_lease(
    mut lease: Lease,
    name: &str,
    node_uid: Option<&str>,
    now: Timestamp,
    duration_seconds: i32,
) -> Lease {
    let mut spec = lease.spec.take().unwrap_or_default();
    spec.holder_identity = Some(name.to_string());
    spec.lease_duration_seconds = Some(duration_seconds);
    spec.renew_time = Some(MicroTime(now));
    lease.spec = Some(spec);
    let unowned = lease
        .metadata
        .owner_references
        .as_ref()
        .is_none_or(|owners| owners.is_empty());
    if let (true, Some(uid)) = (unowned, node_uid) {
        lease.metadata.owner_references = Some(vec![node_owner(name, uid)]);
    }
    lease
}

/// A registration that failed, naming the API call.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("{call} Node {name}: {source}")]
    Api {
        call: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("stopped before Node {0} was registered")]
    Stopped(String),
}

impl RegisterError {
    fn api(call: &'static str, name: &str, source: kube::Error) -> Self {
        RegisterError::Api {
            call,
            name: name.to_string(),
            source,
        }
    }
}

fn api_status(error: &kube::Error) -> Option<&kube::core::Status> {
    match error {
        kube::Error::Api(status) => Some(&**status),
        _ => None,
    }
}

/// A 409 on create: the object is there (keel may answer with the reason `AlreadyExists` or
/// only the code).
fn is_already_exists(error: &kube::Error) -> bool {
    api_status(error).is_some_and(|status| status.is_already_exists() || status.code == 409)
}

fn is_conflict(error: &kube::Error) -> bool {
    api_status(error).is_some_and(|status| status.is_conflict() || status.code == 409)
}

/// Registers the Node as the kubelet's `tryRegisterWithAPIServer`: create; if it exists,
/// take it over: merge-patch the labels keel owns and patch status with the current facts
/// (keep existing spec: podCIDR, taints; and existing conditions, which the [`Heartbeat`]
/// refreshes). Retries with backoff (1 s doubling to 7 s, as the kubelet) until it succeeds
/// or `stop` fires (or its sender is dropped); returns the Node as stored.
pub async fn register(
    client: &Client,
    facts: &NodeFacts,
    stop: &watch::Receiver<bool>,
) -> Result<Node, RegisterError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut stop = stop.clone();
    let mut backoff = Backoff::new(REGISTER_BACKOFF_INITIAL, REGISTER_BACKOFF_MAX);
    loop {
        if *stop.borrow_and_update() {
            return Err(RegisterError::Stopped(facts.name.clone()));
        }
        match try_register(&nodes, facts).await {
            Ok(node) => return Ok(node),
            Err(error) => {
                tracing::warn!(node = %facts.name, %error, "registering the node; retrying");
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    return Err(RegisterError::Stopped(facts.name.clone()));
                }
            }
        }
    }
}

async fn try_register(nodes: &Api<Node>, facts: &NodeFacts) -> Result<Node, RegisterError> {
    let name = facts.name.as_str();
    // The kubelet registers without conditions; the first heartbeat posts them, once the
    // caller knows whether the node is ready.
    let node = node_object(facts, Vec::new());
    let error = match nodes.create(&PostParams::default(), &node).await {
        Ok(created) => {
            tracing::info!(node = name, "registered the Node");
            return Ok(created);
        }
        Err(error) => error,
    };
    if !is_already_exists(&error) {
        return Err(RegisterError::api("create", name, error));
    }
    // It is ours from an earlier run (or an admin made it): our labels and status replace
    // what it says; spec, annotations and other labels stay.
    let labels = json!({ "metadata": { "labels": facts.labels } });
    nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(&labels))
        .await
        .map_err(|error| RegisterError::api("patch", name, error))?;
    let status = serde_json::to_value(&node.status).map_err(|error| {
        RegisterError::api("patch status", name, kube::Error::SerdeError(error))
    })?;
    let patch = json!({ "status": status });
    let stored = nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|error| RegisterError::api("patch status", name, error))?;
    tracing::info!(node = name, "took over the existing Node");
    Ok(stored)
}

/// Waits until the Node has `spec.podCIDR` (the node IPAM controller assigns it), polling
/// every second until `timeout`; returns it, or `None` when none came in time. Failed polls
/// are retried; only when the last one before the deadline failed is its error returned, so
/// the caller can tell "no IPAM controller" (`None`) from "no API server" (`Err`).
pub async fn wait_for_pod_cidr(
    client: &Client,
    name: &str,
    timeout: Duration,
) -> Result<Option<String>, RegisterError> {
    let nodes: Api<Node> = Api::all(client.clone());
    // Instant + Duration panics on overflow; nobody waits a year for a CIDR.
    let deadline = Instant::now() + timeout.min(Duration::from_secs(365 * 24 * 3600));
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let last_error = match tokio::time::timeout(remaining, nodes.get(name)).await {
            Ok(Ok(node)) => {
                let cidr = node
                    .spec
                    .and_then(|spec| spec.pod_cidr)
                    .filter(|cidr| !cidr.is_empty());
                if cidr.is_some() {
                    return Ok(cidr);
                }
                None
            }
            Ok(Err(error)) => {
                tracing::debug!(node = name, %error, "waiting for the pod CIDR");
                Some(error)
            }
            // The deadline passed inside the call; the loop ends below.
            Err(_) => None,
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return match last_error {
                Some(error) => Err(RegisterError::api("get", name, error)),
                None => Ok(None),
            };
        }
        tokio::time::sleep(remaining.min(POD_CIDR_POLL)).await;
    }
}

/// The heartbeats: the Lease `kube-node-lease/<name>` renewed every `renew_interval` (10 s;
/// leaseDurationSeconds 40; holderIdentity = name; an ownerReference to the Node so the
/// garbage collector removes it with the Node), created if missing, replaced with its
/// resourceVersion (on conflict: re-got and retried once); and the Node's status conditions
/// patched (a merge patch of `status.conditions` through the status subresource) when a
/// condition changes, and at least every `status_report_interval` (the kubelet's
/// `nodeStatusReportFrequency`, 5 min).
///
/// The Node is read every tick to compare against what is *stored*: when the node lifecycle
/// controller has marked the node Unknown (say, after the control plane was away), the next
/// tick puts Ready back at once instead of up to 5 minutes later.
pub struct Heartbeat {
    nodes: Api<Node>,
    leases: Api<Lease>,
    facts: NodeFacts,
    renew_interval: Duration,
    status_report_interval: Duration,
}

/// What the heartbeats remember between ticks.
#[derive(Default)]
struct HeartbeatState {
    /// The Lease as last written: its resourceVersion makes the next replace a
    /// compare-and-swap without a read first.
    lease: Option<Lease>,
    /// The Node's uid, for the Lease's ownerReference.
    node_uid: Option<String>,
    last_report: Option<Instant>,
}

impl Heartbeat {
    pub fn new(
        client: Client,
        facts: NodeFacts,
        renew_interval: Duration,
        status_report_interval: Duration,
    ) -> Self {
        Heartbeat {
            nodes: Api::all(client.clone()),
            leases: Api::namespaced(client, LEASE_NAMESPACE),
            facts,
            renew_interval: renew_interval.max(MIN_INTERVAL),
            status_report_interval,
        }
    }

    /// Runs until `stop` is true (or its sender is dropped). API errors are logged and
    /// retried at the next tick: a control plane that is away must never stop the node
    /// (static stability). A change of `ready` is posted at once rather than at the next
    /// tick.
    pub async fn run(
        self,
        mut stop: watch::Receiver<bool>,
        mut ready: watch::Receiver<Result<(), String>>,
    ) {
        let mut ticks = tokio::time::interval(self.renew_interval);
        // After a slow tick (an API server timing out), renew once, not in a burst.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut state = HeartbeatState::default();
        let mut ready_open = true;
        loop {
            if *stop.borrow_and_update() {
                return;
            }
            tokio::select! {
                _ = ticks.tick() => {
                    let now_ready = ready.borrow_and_update().clone();
                    self.post_status(&mut state, now_ready).await;
                    self.renew(&mut state).await;
                }
                changed = ready.changed(), if ready_open => {
                    match changed {
                        Ok(()) => {
                            let now_ready = ready.borrow_and_update().clone();
                            self.post_status(&mut state, now_ready).await;
                        }
                        // Nobody will say otherwise any more: the last value stands.
                        Err(_) => ready_open = false,
                    }
                }
                changed = stop.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Each call is bounded by the renewal period, so a hung request delays the Lease by
    /// one period at most, well inside its 40 s.
    async fn post_status(&self, state: &mut HeartbeatState, ready: Result<(), String>) {
        let name = &self.facts.name;
        match tokio::time::timeout(self.renew_interval, self.try_post_status(state, ready)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(node = %name, %error, "posting the node status"),
            Err(_) => tracing::warn!(node = %name, "posting the node status timed out"),
        }
    }

    async fn renew(&self, state: &mut HeartbeatState) {
        let name = &self.facts.name;
        match tokio::time::timeout(self.renew_interval, self.try_renew(state)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(node = %name, %error, "renewing the node lease"),
            Err(_) => tracing::warn!(node = %name, "renewing the node lease timed out"),
        }
    }

    async fn try_post_status(
        &self,
        state: &mut HeartbeatState,
        ready: Result<(), String>,
    ) -> Result<(), kube::Error> {
        let name = self.facts.name.as_str();
        let Some(node) = self.nodes.get_opt(name).await? else {
            // As the kubelet: a deleted Node is not recreated behind the admin's back.
            state.node_uid = None;
            tracing::warn!(
                node = name,
                "the Node is gone; restart the node daemon to register it again"
            );
            return Ok(());
        };
        state.node_uid = node.metadata.uid.clone();
        let stored = node
            .status
            .and_then(|status| status.conditions)
            .unwrap_or_default();
        let ours = conditions(Timestamp::now(), ready, measure_pressure(), &stored);
        let due = state
            .last_report
            .is_none_or(|at| at.elapsed() >= self.status_report_interval);
        if !due && !conditions_changed(&stored, &ours) {
            return Ok(());
        }
        let merged = merge_conditions(&stored, ours);
        let conditions = serde_json::to_value(&merged).map_err(kube::Error::SerdeError)?;
        let patch = json!({ "status": { "conditions": conditions } });
        self.nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        state.last_report = Some(Instant::now());
        Ok(())
    }

    async fn try_renew(&self, state: &mut HeartbeatState) -> Result<(), kube::Error> {
        let name = self.facts.name.as_str();
        // Taken, not borrowed: if this call fails or is cancelled, the next one starts from
        // a fresh read unless it is put back below.
        let current = match state.lease.take() {
            Some(lease) => lease,
            None => match self.leases.get_opt(name).await? {
                Some(lease) => lease,
                None => return self.create_lease(state).await,
            },
        };
        let renewed = self.renewed(current.clone(), state);
        match self
            .leases
            .replace(name, &PostParams::default(), &renewed)
            .await
        {
            Ok(written) => {
                state.lease = Some(written);
                Ok(())
            }
            Err(error) if is_conflict(&error) => {
                // Written by someone else since (an earlier run of this daemon, an admin):
                // once more on what is stored now.
                let Some(fresh) = self.leases.get_opt(name).await? else {
                    return self.create_lease(state).await;
                };
                let renewed = self.renewed(fresh, state);
                let written = self
                    .leases
                    .replace(name, &PostParams::default(), &renewed)
                    .await?;
                state.lease = Some(written);
                Ok(())
            }
            Err(error) => {
                // A deleted Lease is re-read (and recreated) next tick; anything else is
                // retried with the copy we have.
                let gone = api_status(&error).is_some_and(|status| status.is_not_found());
                if !gone {
                    state.lease = Some(current);
                }
                Err(error)
            }
        }
    }

    async fn create_lease(&self, state: &mut HeartbeatState) -> Result<(), kube::Error> {
        let lease = lease_object(
            &self.facts.name,
            state.node_uid.as_deref(),
            Timestamp::now(),
            LEASE_DURATION_SECONDS,
        );
        let created = self.leases.create(&PostParams::default(), &lease).await?;
        state.lease = Some(created);
        Ok(())
    }

    fn renewed(&self, lease: Lease, state: &HeartbeatState) -> Lease {
        renewed_lease(
            lease,
            &self.facts.name,
            state.node_uid.as_deref(),
            Timestamp::now(),
            LEASE_DURATION_SECONDS,
        )
    }
}
