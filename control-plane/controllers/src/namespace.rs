//! The namespace controller: kube-controller-manager's `pkg/controller/namespace`.
//!
//! Deleting a namespace does not delete it at once: the API server sets its
//! `deletionTimestamp` and `status.phase: Terminating`, refuses new content in it, and keeps
//! it while `spec.finalizers` holds `kubernetes`. This controller then:
//!
//! 1. deletes every namespaced object of every kind the server serves (found by discovery),
//!    a collection at a time, with `propagationPolicy: Background`;
//! 2. lists each kind again and, while objects remain — pods within their grace period,
//!    objects held by finalizers — comes back later (half the estimate, and a second);
//! 3. records progress in the namespace's conditions as kube does
//!    (`NamespaceContentRemaining`, `NamespaceFinalizersRemaining`,
//!    `NamespaceDeletionContentFailure`, `NamespaceDeletionDiscoveryFailure`, …);
//! 4. once nothing is left, removes `kubernetes` from `spec.finalizers` through
//!    `PUT namespaces/{name}/finalize`, after which the API server deletes the namespace.
//!
//! # Layout
//! - [`decide`]: leftovers, estimates, conditions and finalizers (pure).
//! - `content`: discovery and the deletion of a namespace's content, kind by kind.
//! - `run`: [`start`] — the namespace watch, the workers, one sync ([`NamespaceError`]).

mod content;
pub mod decide;
mod run;
#[cfg(test)]
mod tests;

pub use run::{start, NamespaceError, Options, DEFAULT_WORKERS, DELETION_GRACE_PERIOD, QUEUE_NAME};

/// The finalizer this controller owns in `spec.finalizers` (`v1.FinalizerKubernetes`).
pub const FINALIZER_KUBERNETES: &str = "kubernetes";
/// The phase of a namespace being deleted (`v1.NamespaceTerminating`).
pub const PHASE_TERMINATING: &str = "Terminating";
