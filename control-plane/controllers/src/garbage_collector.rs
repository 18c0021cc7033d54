//! The garbage collector: kube-controller-manager's `pkg/controller/garbagecollector`.
//!
//! Objects name their owners in `metadata.ownerReferences`. The collector keeps a graph of
//! every watched object (uid → owners and dependents) and carries out the three deletion
//! propagation policies the API server records as finalizers:
//!
//! - **background** (no finalizer): once every owner of an object is gone — confirmed by a
//!   live GET of each owner by name, a different uid under that name counting as gone — the
//!   object is deleted (`propagationPolicy: Background`, its uid as a precondition), and so on
//!   down the chain;
//! - **foreground** (`foregroundDeletion` on an owner being deleted): its dependents are
//!   deleted — in the foreground themselves when they have dependents, so that the wait covers
//!   the whole subtree — and the finalizer is removed once no dependent with
//!   `blockOwnerDeletion: true` remains, after which the API server deletes the owner;
//! - **orphan** (`orphan` on an owner being deleted): the reference to the owner is removed
//!   from every dependent (a strategic merge patch with the dependent's uid as a
//!   precondition), then the finalizer.
//!
//! An object with a live owner keeps it, but loses its references to owners that are gone or
//! being deleted in the foreground. Owners named by references and not (yet) seen in a watch
//! are *virtual* nodes whose existence the collector verifies, as kube does.
//!
//! The API server's part: on `DELETE` with `propagationPolicy: Foreground` or `Orphan` it adds
//! the finalizer and sets `deletionTimestamp` instead of deleting, and it deletes an object
//! whose last finalizer is removed while `deletionTimestamp` is set.
//!
//! # Layout
//! - [`graph`]: the dependency graph and the work each change implies (pure).
//! - [`decide`]: what to do with one object given its owners' states, and the patches (pure).
//! - [`kinds`]: the kinds watched ([`kinds::served`]) and how a reference names one.
//! - `run`: [`start`] — one metadata watch per kind, the `attemptToDelete` and
//!   `attemptToOrphan` workers, and the `OwnerRefInvalidNamespace` Warning on a dependent
//!   naming an owner observed in another namespace ([`invalid_owner_ref_note`]).
//! - `sync`: one attempt against the API server ([`GcError`]).

pub mod decide;
pub mod graph;
pub mod kinds;
mod run;
mod sync;
#[cfg(test)]
mod tests;

pub use decide::{Decision, OwnerState, Propagation};
pub use graph::{
    Graph, Identity, InvalidOwnerRef, Node, Observation, Work, FINALIZER_FOREGROUND,
    FINALIZER_ORPHAN,
};
pub use kinds::{served, Kind};
pub use run::{
    invalid_owner_ref_note, start, Options, COMPONENT, DEFAULT_WORKERS, DELETE_QUEUE_NAME,
    ORPHAN_QUEUE_NAME,
};
pub use sync::GcError;
