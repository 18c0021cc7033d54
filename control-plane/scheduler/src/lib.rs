//! keel's scheduler: kube-scheduler's semantics — its queue, its cache with assumed pods, its
//! filter and score plugins, its preemption — as a client of the API server.
//!
//! Each plugin answers one question about one pod and one node, exactly as kube-scheduler's
//! plugin of the same name does: a filter says whether the pod may run there (and, when not,
//! the reason `kubectl describe pod` shows), a score says how much the node is preferred.
//! Formulas, integer truncations and reasons are kube-scheduler's, and the unit tests carry
//! kube-scheduler's own test cases, so that a cluster moved from Kubernetes to keel places its
//! pods where it placed them before.
//!
//! The decisions are free of I/O ([`core::Core`]: events in, decisions out), so each is
//! tested as a table and the in-process benchmark drives the same code the scheduler runs;
//! [`run`] is the part that watches the API server and posts bindings.
//!
//! # Layout
//! - [`framework`]: [`Status`], [`CycleState`], [`FilterPlugin`], [`ScorePlugin`], score
//!   normalization.
//! - [`node_info`]: [`NodeInfo`], a node and the totals of the pods on it; [`resources`]: a
//!   pod's requests as kube-scheduler counts them; [`labels`]: label syntax rules.
//! - [`plugins`]: NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts,
//!   NodeResourcesFit, VolumeRestrictions, NodeResourcesBalancedAllocation, ImageLocality,
//!   PodTopologySpread, InterPodAffinity.
//! - [`config`]: [`SchedulerConfig`](config::SchedulerConfig), read from kube-scheduler's
//!   `KubeSchedulerConfiguration` file: profiles and their plugin lists, with kube's defaults.
//! - [`schedule`]: one decision (filter with `numFeasibleNodesToFind`, score, select);
//!   [`preemption`]: the victims when nothing fits.
//! - [`nominator`]: pods nominated by preemption, and the filter that keeps their room.
//! - [`cache`]: nodes with bound and assumed pods; [`queue`]: active, backoff, unschedulable.
//! - [`core`]: the scheduler without I/O; [`run`]: the scheduler against the API server;
//!   [`metrics`]: kube-scheduler's metric names.

pub mod cache;
pub mod config;
pub mod core;
pub mod framework;
pub mod metrics;
pub mod queue;
pub mod run;
pub mod schedule;
/// Label selectors as Kubernetes matches them (keel-api's, shared with the controllers).
pub use keel_api::label_selector;
pub mod labels;
pub mod node_info;
pub mod nominator;
pub mod plugins;
pub mod preemption;
pub mod resources;

#[cfg(test)]
mod testing;

pub use framework::{
    default_normalize_score, Code, CycleState, FilterPlugin, ScorePlugin, Status, MAX_NODE_SCORE,
    MIN_NODE_SCORE,
};
pub use node_info::{NodeInfo, NodeInfoError};
pub use plugins::{
    ArgsError, BalancedAllocation, FitArgs, ImageLocality, NodeAffinity, NodeName, NodePorts,
    NodeResourcesFit, NodeUnschedulable, ResourceSpec, ScoringStrategy, TaintToleration,
    UtilizationShapePoint, VolumeRestrictions,
};
pub use resources::{QuantityError, Resources};
