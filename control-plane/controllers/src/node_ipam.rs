//! The node IPAM controller: gives every Node a pod CIDR out of the cluster CIDR, as
//! kube-controller-manager's `pkg/controller/nodeipam` does with its `RangeAllocator`
//! (`--allocate-node-cidrs`, `--cluster-cidr`, `--node-cidr-mask-size`).
//!
//! - The cluster CIDR (default `10.244.0.0/16`) is cut into subnets of `node_cidr_mask_size`
//!   bits (default /24); a bitmap records which are taken (kube's `cidrset`).
//! - At start, once the node list is complete, the CIDRs nodes already carry are marked used,
//!   before any node is given a new one (kube occupies them in `NewCIDRRangeAllocator`).
//!   Malformed CIDRs and CIDRs outside the cluster range are logged and ignored (kube refuses
//!   to start on a malformed one; a controller that cannot start helps nobody here).
//! - A node without `spec.podCIDR` gets the next free subnet, searched from just after the
//!   last one handed out and wrapping around (kube's `nextCandidate`), written with a merge
//!   patch of `spec.podCIDR` and `spec.podCIDRs`.
//! - A deleted node's CIDR is released; a full range writes nothing but kube's
//!   `CIDRNotAvailable` event on the node, a refused patch a `CIDRAssignmentFailed` one (both
//!   Normal, as kube's `RecordNodeStatusChange` writes them, from `cidrAllocator`); the node
//!   is retried with backoff.
//!
//! IPv4 only: no dual-stack, no IPv6 cluster CIDR.
//!
//! # Layout
//! - [`CidrSet`]: the pure allocator (tested below);
//! - [`start`]: a node watch, a work queue of node names, one worker (allocations are
//!   serialized, as kube's are under its lock).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use keel_events::Recorder;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::Client;
use serde_json::json;

use crate::events::{node_reference, node_status_change, Note};
use crate::workqueue::{ControllerHandle, WorkQueue, WorkQueueMetrics};

/// kube's source component for the range allocator's events.
pub const COMPONENT: &str = "cidrAllocator";
/// The node status kube records when the cluster CIDR has no subnet left.
pub const CIDR_NOT_AVAILABLE: &str = "CIDRNotAvailable";
/// The node status kube records when the node could not be given its subnet.
pub const CIDR_ASSIGNMENT_FAILED: &str = "CIDRAssignmentFailed";
/// The queue's name in the `workqueue_*` metrics.
pub const QUEUE_NAME: &str = "node_ipam";
/// kube's `cidrset` refuses more than 2^16 subnets (`maxPrefixLength` − cluster prefix > 16).
const MAX_SUBNET_BITS: u8 = 16;

/// Options of [`start`].
pub struct Options {
    /// `--cluster-cidr`: the network address and prefix length.
    pub cluster_cidr: (Ipv4Addr, u8),
    /// `--node-cidr-mask-size`: the prefix length of each node's CIDR.
    pub node_cidr_mask_size: u8,
    /// Where the queue reports its metrics; unregistered ones when `None`.
    pub metrics: Option<Arc<WorkQueueMetrics>>,
    /// Where events go; a recorder of its own ([`COMPONENT`]) when `None`.
    pub recorder: Option<Recorder>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            cluster_cidr: (Ipv4Addr::new(10, 244, 0, 0), 16),
            node_cidr_mask_size: 24,
            metrics: None,
            recorder: None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    #[error("invalid cluster CIDR prefix length {0}")]
    ClusterPrefix(u8),
    #[error("node CIDR mask size {mask} must be between the cluster prefix {cluster} and 32")]
    MaskSize { mask: u8, cluster: u8 },
    #[error(
        "node CIDR mask size {mask} cuts the /{cluster} cluster CIDR into more than 2^16 subnets"
    )]
    TooManySubnets { mask: u8, cluster: u8 },
    #[error("malformed CIDR {0:?}")]
    Malformed(String),
    #[error("CIDR {0} is out of the cluster CIDR's range")]
    OutOfRange(String),
}

/// kube's `cidrset.CidrSet`: the subnets of the cluster CIDR and which are taken.
#[derive(Debug, Clone)]
pub struct CidrSet {
    /// The cluster CIDR's network address.
    base: u32,
    cluster_prefix: u8,
    mask: u8,
    used: Vec<bool>,
    /// Where the next search starts: just after the last subnet handed out.
    next_candidate: usize,
}

/// `a.b.c.d/n` as address and prefix length.
pub fn parse_cidr(text: &str) -> Result<(Ipv4Addr, u8), IpamError> {
    let malformed = || IpamError::Malformed(text.to_string());
    let (address, prefix) = text.split_once('/').ok_or_else(malformed)?;
    let address: Ipv4Addr = address.parse().map_err(|_| malformed())?;
    let prefix: u8 = prefix.parse().map_err(|_| malformed())?;
    if prefix > 32 {
        return Err(malformed());
    }
    Ok((address, prefix))
}

/// The netmask of a prefix length (≤ 32) as a number.
fn netmask(prefix: u8) -> u32 {
    // u64 so that a /0 shift by 32 stays defined.
    let bits = (u64::from(u32::MAX) << (32 - u32::from(prefix.min(32)))) & u64::from(u32::MAX);
    u32::try_from(bits).unwrap_or(u32::MAX)
}

impl CidrSet {
    pub fn new(cluster: (Ipv4Addr, u8), mask: u8) -> Result<CidrSet, IpamError> {
        let (address, cluster_prefix) = cluster;
        if cluster_prefix > 32 {
            return Err(IpamError::ClusterPrefix(cluster_prefix));
        }
        if mask < cluster_prefix || mask > 32 {
            return Err(IpamError::MaskSize {
                mask,
                cluster: cluster_prefix,
            });
        }
        if mask - cluster_prefix > MAX_SUBNET_BITS {
            return Err(IpamError::TooManySubnets {
                mask,
                cluster: cluster_prefix,
            });
        }
        Ok(CidrSet {
            base: u32::from(address) & netmask(cluster_prefix),
            cluster_prefix,
            mask,
            used: vec![false; 1 << (mask - cluster_prefix)],
            next_candidate: 0,
        })
    }

    /// The number of subnets.
    pub fn len(&self) -> usize {
        self.used.len()
    }

    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }

    /// Subnets taken.
    pub fn used(&self) -> usize {
        self.used.iter().filter(|used| **used).count()
    }

    /// The CIDR of subnet `index`, as kube writes it (`10.244.3.0/24`).
    pub fn subnet(&self, index: usize) -> String {
        let step = 1u64 << (32 - u32::from(self.mask));
        let offset = u64::try_from(index).unwrap_or(0) * step;
        let address = u64::from(self.base) + offset;
        let address = Ipv4Addr::from(u32::try_from(address).unwrap_or(u32::MAX));
        format!("{address}/{}", self.mask)
    }

    /// Takes the next free subnet after the last one handed out, wrapping around
    /// (`AllocateNext`); `None` when every subnet is taken.
    pub fn allocate_next(&mut self) -> Option<String> {
        let count = self.used.len();
        for step in 0..count {
            let candidate = (self.next_candidate + step) % count;
            if !self.used[candidate] {
                self.used[candidate] = true;
                self.next_candidate = (candidate + 1) % count;
                return Some(self.subnet(candidate));
            }
        }
        None
    }

    /// The subnet indices `cidr` overlaps (`getBeginningAndEndIndices`).
    fn indices(&self, cidr: &str) -> Result<std::ops::RangeInclusive<usize>, IpamError> {
        let (address, prefix) = parse_cidr(cidr)?;
        let begin = u32::from(address) & netmask(prefix);
        let end = begin | !netmask(prefix);
        let cluster_end = self.base | !netmask(self.cluster_prefix);
        if prefix < self.cluster_prefix || begin < self.base || end > cluster_end {
            return Err(IpamError::OutOfRange(cidr.to_string()));
        }
        let shift = 32 - u32::from(self.mask);
        // Within the cluster range, so the offsets fit the bitmap.
        let first = usize::try_from((begin - self.base) >> shift).unwrap_or(usize::MAX);
        let last = usize::try_from((end - self.base) >> shift).unwrap_or(usize::MAX);
        Ok(first..=last)
    }

    /// Marks the subnets `cidr` overlaps as taken (`Occupy`).
    pub fn occupy(&mut self, cidr: &str) -> Result<(), IpamError> {
        for index in self.indices(cidr)? {
            if let Some(used) = self.used.get_mut(index) {
                *used = true;
            }
        }
        Ok(())
    }

    /// Frees the subnets `cidr` overlaps (`Release`).
    pub fn release(&mut self, cidr: &str) -> Result<(), IpamError> {
        for index in self.indices(cidr)? {
            if let Some(used) = self.used.get_mut(index) {
                *used = false;
            }
        }
        Ok(())
    }
}

/// The CIDRs a node carries: `spec.podCIDRs`, or the older `spec.podCIDR`.
fn node_cidrs(node: &Node) -> Vec<String> {
    let Some(spec) = &node.spec else {
        return Vec::new();
    };
    match &spec.pod_cidrs {
        Some(cidrs) if !cidrs.is_empty() => cidrs.clone(),
        _ => spec
            .pod_cidr
            .iter()
            .filter(|c| !c.is_empty())
            .cloned()
            .collect(),
    }
}

/// The allocator and what this controller wrote and has not seen back yet.
struct Allocator {
    cidrs: CidrSet,
    /// Node name → (uid, CIDR) patched onto it: a stale cache copy without a CIDR must not
    /// make the worker give the node a second one.
    assigned: HashMap<String, (Option<String>, String)>,
}

impl Allocator {
    fn occupy_node(&mut self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        for cidr in node_cidrs(node) {
            if let Err(error) = self.cidrs.occupy(&cidr) {
                tracing::warn!(node = %name, %error, "ignoring the node's pod CIDR");
            }
        }
        if !node_cidrs(node).is_empty() {
            self.assigned.remove(&name);
        }
    }

    fn release_node(&mut self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let mut cidrs = node_cidrs(node);
        if let Some((_, cidr)) = self.assigned.remove(&name) {
            cidrs.push(cidr);
        }
        for cidr in cidrs {
            if let Err(error) = self.cidrs.release(&cidr) {
                tracing::warn!(node = %name, %error, "not releasing the node's pod CIDR");
            }
        }
    }
}

struct Context {
    client: Client,
    nodes: Store<Node>,
    queue: Arc<WorkQueue>,
    allocator: Mutex<Allocator>,
    /// One wait for the cache, shared by the workers.
    synced: crate::informer::CachesSynced,
    /// Events about the nodes, never waited for.
    recorder: Recorder,
}

impl Context {
    fn allocator(&self) -> MutexGuard<'_, Allocator> {
        // Every critical section leaves the allocator consistent.
        self.allocator
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Starts the controller on the current tokio runtime. Invalid options are logged and
/// start nothing.
pub fn start(client: Client, options: Options) -> ControllerHandle {
    let queue = WorkQueue::shared(QUEUE_NAME, options.metrics.as_deref());
    let cidrs = match CidrSet::new(options.cluster_cidr, options.node_cidr_mask_size) {
        Ok(cidrs) => cidrs,
        Err(error) => {
            tracing::error!(%error, "node IPAM controller not started");
            return ControllerHandle::new(vec![queue], Vec::new());
        }
    };
    let (nodes, writer) = reflector::store::<Node>();
    let recorder = options
        .recorder
        .unwrap_or_else(|| Recorder::new(client.clone(), COMPONENT));
    let context = Arc::new(Context {
        recorder,
        client: client.clone(),
        nodes,
        queue: queue.clone(),
        allocator: Mutex::new(Allocator {
            cidrs,
            assigned: HashMap::new(),
        }),
        synced: Default::default(),
    });
    let tasks = vec![
        tokio::spawn(watch_nodes(context.clone(), Api::all(client), writer)),
        tokio::spawn(worker(context)),
    ];
    ControllerHandle::new(vec![queue], tasks)
}

fn node_name(node: &Node) -> String {
    node.metadata.name.clone().unwrap_or_default()
}

async fn watch_nodes(
    context: Arc<Context>,
    api: Api<Node>,
    mut writer: reflector::store::Writer<Node>,
) {
    let mut stream =
        crate::informer::watch_events(api, watcher::Config::default(), "watching nodes");
    while let Some(event) = stream.next().await {
        writer.apply_watcher_event(&event);
        match &event {
            Event::Apply(node) => {
                if node_cidrs(node).is_empty() {
                    context.queue.add(&node_name(node));
                } else {
                    context.allocator().occupy_node(node);
                }
            }
            Event::Delete(node) => context.allocator().release_node(node),
            Event::Init | Event::InitApply(_) => {}
            Event::InitDone => {
                // Every CIDR in use is marked before any node is queued for a new one.
                let nodes = context.nodes.state();
                {
                    let mut allocator = context.allocator();
                    for node in &nodes {
                        allocator.occupy_node(node);
                    }
                }
                for node in nodes.iter().filter(|node| node_cidrs(node).is_empty()) {
                    context.queue.add(&node_name(node));
                }
            }
        }
    }
}

async fn worker(context: Arc<Context>) {
    // An error here means the watch task is gone: the controller is stopping.
    let listed = context
        .synced
        .wait(|| async { context.nodes.wait_until_ready().await.is_ok() })
        .await;
    if !listed {
        return;
    }
    let context = &context;
    context
        .queue
        .work("allocating a pod CIDR", |name| async move {
            allocate(context, &name).await
        })
        .await;
}

#[derive(Debug, thiserror::Error)]
enum AllocateError {
    /// kube's `CIDRNotAvailable`.
    #[error("no remaining CIDRs in the cluster CIDR")]
    Full,
    #[error("patching the node's pod CIDR: {0}")]
    Patch(#[source] kube::Error),
}

/// Gives node `name` a CIDR unless it has one (`AllocateOrOccupyCIDR`).
async fn allocate(context: &Context, name: &str) -> Result<(), AllocateError> {
    let Some(node) = context.nodes.get(&ObjectRef::new(name)) else {
        return Ok(());
    };
    if !node_cidrs(&node).is_empty() {
        context.allocator().occupy_node(&node);
        return Ok(());
    }
    let cidr = {
        let mut allocator = context.allocator();
        if let Some((uid, _)) = allocator.assigned.get(name) {
            if *uid == node.metadata.uid {
                // Patched already; the cache has not caught up.
                return Ok(());
            }
        }
        let Some(cidr) = allocator.cidrs.allocate_next() else {
            drop(allocator);
            failure_note(&AllocateError::Full, name)
                .record(&context.recorder, &node_reference(&node));
            return Err(AllocateError::Full);
        };
        allocator
            .assigned
            .insert(name.to_string(), (node.metadata.uid.clone(), cidr.clone()));
        cidr
    };
    let patch = json!({ "spec": { "podCIDR": cidr, "podCIDRs": [cidr] } });
    let api: Api<Node> = Api::all(context.client.clone());
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(node = %name, %cidr, "allocated the node's pod CIDR");
            Ok(())
        }
        Err(error) => {
            // Nothing written: the subnet is free again (`updateCIDRsAllocation`).
            let mut allocator = context.allocator();
            allocator.assigned.remove(name);
            if let Err(release) = allocator.cidrs.release(&cidr) {
                tracing::warn!(%release, "releasing an unused CIDR");
            }
            drop(allocator);
            let error = AllocateError::Patch(error);
            failure_note(&error, name).record(&context.recorder, &node_reference(&node));
            Err(error)
        }
    }
}

/// The event kube records on a node it could not give a CIDR (`RecordNodeStatusChange`).
fn failure_note(error: &AllocateError, node: &str) -> Note {
    let status = match error {
        AllocateError::Full => CIDR_NOT_AVAILABLE,
        AllocateError::Patch(_) => CIDR_ASSIGNMENT_FAILED,
    };
    node_status_change(node, status)
}

#[cfg(test)]
mod tests;
