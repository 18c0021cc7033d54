//! The node lifecycle controller: kube-controller-manager's `nodelifecycle` controller with
//! its NoExecute taint manager (`pkg/controller/nodelifecycle`, `pkg/controller/tainteviction`).
//!
//! - **Health.** A node is healthy while its Lease `kube-node-lease/<node>` (`spec.renewTime`)
//!   or its Ready condition's `lastHeartbeatTime` was *seen to change* within
//!   `node_monitor_grace_period`, on this controller's own clock (kube's `probeTimestamp`):
//!   a kubelet with a skewed clock is judged by when its posts arrive. A node silent for
//!   longer gets every condition (Ready, MemoryPressure, DiskPressure, PIDPressure) set to
//!   `Unknown` (`NodeStatusUnknown`, "Kubelet stopped posting node status.") through
//!   `nodes/{name}/status`. A node never seen with a Ready condition is given
//!   `node_startup_grace_period` instead (kube's `--node-startup-grace-period`).
//! - **Taints.** Ready=False → `node.kubernetes.io/not-ready:NoExecute`, Ready=Unknown →
//!   `node.kubernetes.io/unreachable:NoExecute` (the two are swapped at once when the other is
//!   there), Ready=True → both removed; other taints are kept. New taints go through a
//!   per-zone token bucket (kube's `zoneNoExecuteTainter`): `eviction_rate` a second, a burst
//!   of one.
//! - **Zones.** Per zone (the `topology.kubernetes.io/zone` label, "" without one; kube also
//!   folds the region in), kube's `ComputeZoneState`: a zone is fully disrupted when none of
//!   its nodes is Ready, partially when more than two are not and at least
//!   `unhealthy_zone_threshold` of them; partially disrupted zones taint at
//!   `secondary_eviction_rate` (0 in clusters of at most `large_cluster_size_threshold`
//!   nodes). When *every* zone is fully disrupted, kube assumes the control plane, not the
//!   nodes, is cut off: tainting stops and the controller's NoExecute taints are removed from
//!   every node, so nothing is evicted (kube's "master disruption mode"); leaving it, every
//!   node's probe time is reset so nodes get a full grace period.
//! - **Eviction** (the taint manager): a pod bound to a node with a NoExecute taint it does not
//!   tolerate is deleted at once; a pod tolerating every such taint is deleted after the least
//!   `tolerationSeconds` of the tolerations used, counted from the taint's `timeAdded` (from
//!   when the controller first saw it, for taints without one); a pod tolerating them without
//!   `tolerationSeconds` stays. Deletions carry a uid precondition.
//! - **Events** (see [`events`]): `RegisteredNode` and `RemovingNode` as nodes come and go,
//!   `NodeNotReady` when the controller marks a Ready node `Unknown` (from `node-controller`);
//!   `TaintManagerEviction` on a pod marked for deletion, and again when a pod's pending
//!   eviction is called off (from `taint-eviction-controller`).
//!
//! Not ported: NoSchedule condition taints (`node.kubernetes.io/memory-pressure`, …), marking
//! pods NotReady on an unhealthy node (and its `NodeNotReady` events on them), `node.kubernetes.io/exclude-disruption` and the
//! `node_collector_*` metrics.
//!
//! # Layout
//! - [`events`]: the events recorded on nodes and pods.
//! - [`health`]: observed heartbeats and the `Unknown` condition rewrite.
//! - [`taints`]: toleration matching, the controller's taints, eviction decisions.
//! - [`zones`]: zone states, the tainting rates, the token bucket and timed queue.
//! - `run`: [`start`] — reflector stores, the monitor loop, the tainting pass; `run/eviction`:
//!   the taint manager's eviction queue and its workers.

pub mod events;
pub mod health;
mod run;
pub mod taints;
#[cfg(test)]
mod tests;
pub mod zones;

pub use events::{COMPONENT, EVICTION_COMPONENT};
pub use run::{start, Options, QUEUE_NAME};
