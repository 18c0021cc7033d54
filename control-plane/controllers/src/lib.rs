//! keel's controllers: kube-controller-manager's control loops, as clients of the Kubernetes API.
//!
//! Each controller watches the objects it cares about through kube-rs reflector stores, turns
//! every change into the key of the object to reconcile, and reconciles keys on a few worker
//! tasks fed by a rate-limited [`workqueue`] — the shape of kube-controller-manager's
//! controllers, so that their semantics (which pods get deleted first, when status is written,
//! how failures back off) carry over unchanged. The decisions themselves are pure functions of
//! the cached objects, tested with the cases of Kubernetes' own unit tests; the I/O around them
//! is kept thin.
//!
//! # Layout
//! - [`events`]: the [`events::Note`] a controller decides to record, and kube's node events;
//!   each controller records through a [`keel_events::Recorder`] under kube's component name.
//! - [`workqueue`]: client-go's rate-limited work queue of keys (dedup, one worker per key at a
//!   time, per-key exponential backoff) with kube's `workqueue_*` metrics.
//! - [`certificates`]: the CSR approver and signer — a joining node's client certificate
//!   approved after a SubjectAccessReview and issued from the cluster CA.
//! - [`deployment`]: the Deployment controller — rolling and Recreate rollouts through
//!   ReplicaSets, proportional scaling, revisions and history, and the Progressing and
//!   Available conditions `kubectl rollout status` reads.
//! - [`endpointslice`]: the EndpointSlice controller — a Service's selected pods as slices of
//!   at most 100 endpoints, rewritten with minimal churn.
//! - [`garbage_collector`]: the garbage collector — a graph of owner references over every
//!   served kind; dependents of gone owners deleted, foreground and orphan propagation
//!   finished through their finalizers.
//! - [`namespace`]: the namespace controller — a deleted namespace's content deleted kind by
//!   kind (found by discovery), its progress in the namespace's conditions, and the
//!   `kubernetes` finalizer removed once nothing is left.
//! - [`node_ipam`]: the node IPAM controller — a pod CIDR for every node out of the cluster
//!   CIDR (kube's range allocator, IPv4).
//! - [`node_lifecycle`]: the node lifecycle controller — nodes whose Lease stops are marked
//!   `Unknown` and tainted unreachable (rate-limited per zone), and the taint manager evicts
//!   the pods that do not tolerate it.
//! - [`replicaset`]: the ReplicaSet controller — adoption and release of pods, slow-start
//!   creation, kube's deletion ranking, expectations, and the status kube computes.
//! - [`root_ca_cert_publisher`]: the `kube-root-ca.crt` ConfigMap (the cluster CA) in every
//!   namespace, for the token volume pods mount.

mod api_errors;
pub mod certificates;
pub mod deployment;
pub mod endpointslice;
pub mod events;
pub mod garbage_collector;
mod informer;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod replicaset;
pub mod root_ca_cert_publisher;
pub mod workqueue;

pub use workqueue::ControllerHandle;
