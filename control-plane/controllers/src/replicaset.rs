//! The ReplicaSet controller: keeps `spec.replicas` pods of each ReplicaSet running, as
//! kube-controller-manager's `pkg/controller/replicaset` does.
//!
//! Each sync of a ReplicaSet:
//! 1. claims its pods among the active ones (neither finished nor being deleted): those it
//!    controls and still selects, plus the orphans it selects, which it adopts; it releases
//!    the pods it controls and no longer selects;
//! 2. if its expectations are met — the watch has shown every pod its last sync created or
//!    deleted — creates the missing pods in slow-start batches (1, 2, 4, …, at most 500 per
//!    sync), or deletes the surplus, least valuable first (unscheduled, pending, not ready,
//!    cheap to delete, doubled up on a node, recently ready, restarting, young);
//! 3. writes the status kube computes (replicas, fully labeled, ready, available after
//!    `minReadySeconds`, terminating, `ReplicaFailure` on a failed create or delete), only
//!    when it changed.
//!
//! Each pod created or deleted, or refused, is an event on the ReplicaSet
//! (`SuccessfulCreate`, `FailedCreate`, `SuccessfulDelete`, `FailedDelete`; see [`events`]).
//!
//! # Layout
//! - [`decide`](mod@decide): the decisions as pure functions of the ReplicaSet and the cached pods
//!   ([`decide::decide`] for a whole sync).
//! - [`pods`]: pod predicates (active, ready, available) and kube's deletion order.
//! - [`expectations`]: creations and deletions a ReplicaSet waits to observe.
//! - [`events`]: the events recorded around creates and deletes.
//! - `run`: [`start`] — reflector stores, event handlers, workers.
//! - `sync`: one sync carried out against the API server ([`SyncError`]).
//! - `index`: the pod store indexed by controller.

pub mod decide;
pub mod events;
pub mod expectations;
mod index;
pub mod pods;
mod run;
mod sync;
#[cfg(test)]
mod tests;

pub use decide::{decide, Action, Claim, Decision, Input, BURST_REPLICAS};
pub use events::COMPONENT;
pub use expectations::{Expectations, EXPECTATIONS_TIMEOUT};
pub use run::{start, Options, DEFAULT_WORKERS, QUEUE_NAME};
pub use sync::SyncError;
