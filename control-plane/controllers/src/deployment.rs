//! The Deployment controller: rolls each Deployment's pod template out through ReplicaSets,
//! as kube-controller-manager's `pkg/controller/deployment` does.
//!
//! Each sync of a Deployment:
//! 1. claims its ReplicaSets by label: those it controls and still selects, plus the orphans
//!    it selects, which it adopts; it releases those it no longer selects;
//! 2. finds the *new* ReplicaSet — the oldest whose template equals the Deployment's but for
//!    `pod-template-hash` — gives it a revision above every old one (a rollback, which
//!    modern kubectl does by copying an old ReplicaSet's template into the Deployment, thus
//!    reuses that ReplicaSet under a new revision) and copies the revision to the Deployment;
//! 3. paused, or with `spec.replicas` changed since the ReplicaSets were last scaled: scales
//!    them (proportionally mid-rollout, by the `desired-replicas`/`max-replicas`
//!    annotations) without rolling out;
//! 4. otherwise takes one step of its strategy, creating the new ReplicaSet
//!    (`<name>-<hash>`) when missing:
//!    - RollingUpdate: scale the new ReplicaSet up within `replicas + maxSurge`, or else the
//!      old ones down — unhealthy replicas first — while `replicas - maxUnavailable` stay
//!      available;
//!    - Recreate: scale the old ReplicaSets to 0, wait until none of their pods runs, then
//!      scale the new one up;
//!
//!    and once the rollout is complete deletes the oldest old ReplicaSets beyond
//!    `revisionHistoryLimit`;
//! 5. writes the status kube computes — counts from the ReplicaSets' status, `Available`,
//!    `Progressing` (new ReplicaSet, progress, completion, paused/resumed, and
//!    `ProgressDeadlineExceeded` after `progressDeadlineSeconds` without progress, looked at
//!    again when the deadline runs out), `ReplicaFailure` from the ReplicaSets — only when it
//!    changed. `kubectl rollout status` reads it.
//!
//! Each ReplicaSet scaled is a `ScalingReplicaSet` event on the Deployment, a refused new
//! ReplicaSet a `ReplicaSetCreateError` one (see [`events`]).
//!
//! Not ported: the deprecated `rollbackTo` (kubectl rolls back client-side), `podReplacementPolicy` (not in the API keel serves), and the pod informer (see
//! [`scale::old_pods_running`]). The template hash differs from kube's (see [`template`]).
//!
//! # Layout
//! - [`util`]: kube's `deployment_util.go` — API defaults, surge and unavailability,
//!   replica counts, orders, proportions.
//! - [`annotations`]: revisions and the annotations kept on ReplicaSets.
//! - [`events`]: the events recorded on the Deployment.
//! - [`template`]: template equality and hash, new and old ReplicaSets, claiming.
//! - [`rolling`]: a rolling update's step (`rolling.go`).
//! - [`scale`]: proportional scaling, scaling events, the history clean-up, Recreate's
//!   decisions (`sync.go`, `recreate.go`).
//! - [`progress`]: status and conditions (`calculateStatus`, `progress.go`).
//! - `run`: [`start`] — reflector stores, event handlers, workers.
//! - `sync`: one sync carried out against the API server ([`SyncError`]); `writes`: its
//!   requests.

pub mod annotations;
pub mod events;
pub mod progress;
pub mod rolling;
mod run;
pub mod scale;
mod sync;
pub mod template;
#[cfg(test)]
mod tests;
pub mod util;
mod writes;

pub use events::COMPONENT;
pub use progress::Requeue;
pub use run::{start, Options, DEFAULT_WORKERS, QUEUE_NAME};
pub use sync::SyncError;
pub use util::DeploymentError;
