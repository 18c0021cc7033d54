//! keel's scheduler plugins: kube-scheduler's filter and score plugins, as pure functions.
//!
//! Each plugin answers one question about one pod and one node, exactly as kube-scheduler's
//! plugin of the same name does: a filter says whether the pod may run there (and, when not,
//! the reason `kubectl describe pod` shows), a score says how much the node is preferred.
//! Formulas, integer truncations and reasons are kube-scheduler's, and the unit tests carry
//! kube-scheduler's own test cases, so that a cluster moved from Kubernetes to keel places its
//! pods where it placed them before.
//!
//! They are pure functions of a [`Pod`](k8s_openapi::api::core::v1::Pod) and a [`NodeInfo`]
//! (the node with the pods already on it) because the parts around them come next: the
//! framework that runs filters and scores over every node and picks one, the scheduling queue,
//! and the end-to-end scheduler that watches the API server and posts bindings. Keeping the
//! decisions free of I/O lets each be tested as a table, and lets preemption and what-if
//! questions ("would it fit if this pod were gone?") reuse them on a modified `NodeInfo`.
//!
//! # Layout
//! - [`framework`]: [`Status`], [`FilterPlugin`], [`ScorePlugin`], score normalization.
//! - [`node_info`]: [`NodeInfo`], a node and the totals of the pods on it.
//! - [`resources`]: a pod's requests as kube-scheduler counts them ([`Resources`]).
//! - [`labels`]: Kubernetes' rules for label keys and values.
//! - [`config`]: [`SchedulerConfig`](config::SchedulerConfig), read from kube-scheduler's
//!   `KubeSchedulerConfiguration` file: profiles and their plugin lists, with kube's defaults.
//! - [`plugins`]: NodeUnschedulable, NodeName, TaintToleration, NodeAffinity,
//!   NodeResourcesFit, NodeResourcesBalancedAllocation, NodePorts, ImageLocality.

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
pub mod plugins;
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
    UtilizationShapePoint,
};
pub use resources::{QuantityError, Resources};
