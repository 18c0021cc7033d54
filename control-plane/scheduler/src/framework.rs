//! The plugin interfaces: what a filter and a score plugin answer, as kube-scheduler's
//! framework defines them.
//!
//! The extension points the plugins need, as kube-scheduler's framework has them: PreFilter
//! and PreScore see the whole cluster once per pod and leave what they computed in the
//! [`CycleState`] (counts per topology domain, the pod's parsed requests), so that Filter and
//! Score, which run once per node and in parallel, only look it up.

use std::any::Any;
use std::fmt;

use k8s_openapi::api::core::v1::Pod;

use crate::node_info::{ClusterSummary, NodeInfo};

/// The highest score a score plugin gives a node (after normalization).
pub const MAX_NODE_SCORE: i64 = 100;
/// The lowest score a score plugin gives a node.
pub const MIN_NODE_SCORE: i64 = 0;

/// The outcome of a plugin, as kube-scheduler's `framework.Code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Success,
    /// The pod does not fit now, but could if other pods left: preemption may help.
    Unschedulable,
    /// The pod cannot fit whatever is evicted (a taint, a selector, a node too small): the
    /// framework skips preemption on this node.
    UnschedulableAndUnresolvable,
    /// The plugin could not decide (a quantity it cannot read, a malformed term).
    Error,
    /// From PreFilter or PreScore: the pod gives the plugin nothing to check (no constraint,
    /// no term), so the framework leaves it out of this cycle's Filter or Score, as
    /// kube-scheduler's `framework.Skip`. Filter and Score still answer correctly if called.
    Skip,
}

impl Code {
    /// kube's `Code.String()`, the `status` label of the scheduler's metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Success => "Success",
            Code::Unschedulable => "Unschedulable",
            Code::UnschedulableAndUnresolvable => "UnschedulableAndUnresolvable",
            Code::Error => "Error",
            Code::Skip => "Skip",
        }
    }
}

/// A plugin's answer: a code and, unless it is a success, the reasons in kube-scheduler's
/// words (they are what `0/3 nodes are available: …` counts and prints).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<String>,
}

impl Status {
    pub fn success() -> Status {
        Status {
            code: Code::Success,
            reasons: Vec::new(),
        }
    }

    pub fn new<I, S>(code: Code, reasons: I) -> Status
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Status {
            code,
            reasons: reasons.into_iter().map(Into::into).collect(),
        }
    }

    pub fn unschedulable(reason: impl Into<String>) -> Status {
        Status::new(Code::Unschedulable, [reason])
    }

    pub fn unresolvable(reason: impl Into<String>) -> Status {
        Status::new(Code::UnschedulableAndUnresolvable, [reason])
    }

    pub fn error(message: impl Into<String>) -> Status {
        Status::new(Code::Error, [message])
    }

    pub fn skip() -> Status {
        Status::new(Code::Skip, Vec::<String>::new())
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    /// Success or Skip: the step went through.
    pub fn is_ok(&self) -> bool {
        matches!(self.code, Code::Success | Code::Skip)
    }

    /// Unschedulable or UnschedulableAndUnresolvable: the node was judged and refused.
    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable
        )
    }

    /// The reasons joined as kube-scheduler's `Status.Message()` joins them.
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }
}

impl Default for Status {
    fn default() -> Status {
        Status::success()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reasons.is_empty() {
            write!(f, "{:?}", self.code)
        } else {
            write!(f, "{:?}: {}", self.code, self.message())
        }
    }
}

/// What plugins computed once for the pod being scheduled, read by their per-node calls:
/// kube-scheduler's `CycleState`. Each plugin keys its slot by its own name; a value is
/// written before the parallel part of the cycle and only read during it.
#[derive(Default)]
pub struct CycleState {
    slots: Vec<(&'static str, Box<dyn Any + Send + Sync>)>,
}

impl CycleState {
    pub fn new() -> CycleState {
        CycleState::default()
    }

    /// Stores `value` under `key`, replacing what was there.
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        match self.slots.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = Box::new(value),
            None => self.slots.push((key, Box::new(value))),
        }
    }

    /// The value under `key`, if one of type `T` was written.
    pub fn read<T: Any>(&self, key: &'static str) -> Option<&T> {
        // Keys are constants: the address nearly always matches, and is cheaper to compare
        // than the text (read runs per plugin and node); the text decides otherwise.
        self.slots
            .iter()
            .find(|(k, _)| std::ptr::eq(*k, key) || *k == key)
            .and_then(|(_, value)| value.downcast_ref::<T>())
    }

    /// The cluster's summary, when the decision's nodes came with one: a plugin that would
    /// walk every node for something the summary counts as absent skips the walk.
    pub fn cluster_summary(&self) -> Option<ClusterSummary> {
        self.read::<ClusterSummary>(CLUSTER_SUMMARY).copied()
    }
}

/// The cycle state's slot for the [`ClusterSummary`].
pub const CLUSTER_SUMMARY: &str = "ClusterSummary";

impl fmt::Debug for CycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.slots.iter().map(|(k, _)| *k).collect();
        f.debug_struct("CycleState").field("slots", &keys).finish()
    }
}

/// A plugin that rules a node in or out for a pod.
pub trait FilterPlugin: Send + Sync {
    /// kube-scheduler's name for the plugin, as profiles and events name it.
    fn name(&self) -> &'static str;

    /// Runs once per pod before any filter, with every node of the cluster: computes what the
    /// filter needs from the whole cluster into `state`. A rejection here rejects every node
    /// (kube-scheduler's PreFilter).
    fn pre_filter(&self, _pod: &Pod, _nodes: &[NodeInfo], _state: &mut CycleState) -> Status {
        Status::success()
    }

    /// Whether the pod may run on `node`. Plugins fall back to computing what their
    /// `pre_filter` would have stored when `state` lacks it, so a single-node question needs
    /// no cycle.
    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status;
}

/// A plugin that ranks the nodes that passed the filters.
pub trait ScorePlugin: Send + Sync {
    /// kube-scheduler's name for the plugin, as profiles and events name it.
    fn name(&self) -> &'static str;

    /// Runs once per pod before any score, with the feasible nodes and the whole cluster
    /// (kube-scheduler's PreScore). An error fails the cycle.
    fn pre_score(
        &self,
        _pod: &Pod,
        _feasible: &[&NodeInfo],
        _all: &[NodeInfo],
        _state: &mut CycleState,
    ) -> Status {
        Status::success()
    }

    /// The node's raw score; an `Err` status is a plugin error, never a rejection.
    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status>;

    /// The raw scores of `nodes`, into `scores` (same length, same order); the first error
    /// ends the call. The cycle calls this once per plugin for each run of nodes, so a plugin
    /// can read what it keeps in `state` once rather than once per node (and the call is not
    /// dynamic per node). Overrides must score exactly as `score` does; by default they are
    /// the same calls.
    fn score_nodes(
        &self,
        state: &CycleState,
        pod: &Pod,
        nodes: &[&NodeInfo],
        scores: &mut [i64],
    ) -> Result<(), Status> {
        for (node, score) in nodes.iter().zip(scores) {
            *score = self.score(state, pod, node)?;
        }
        Ok(())
    }

    /// Rescales the raw scores of all the feasible nodes (in the order they were scored) to
    /// `[0, MAX_NODE_SCORE]`; plugins whose raw scores already are in that range keep them.
    fn normalize(&self, _state: &CycleState, _pod: &Pod, _scores: &mut [i64]) {}
}

/// `ScorePlugin::score` of a plugin whose `score_nodes` does the work: a run of one node.
pub fn score_one<P: ScorePlugin + ?Sized>(
    plugin: &P,
    state: &CycleState,
    pod: &Pod,
    node: &NodeInfo,
) -> Result<i64, Status> {
    let mut score = [0];
    plugin.score_nodes(state, pod, &[node], &mut score)?;
    Ok(score[0])
}

/// The filters on one node; the first refusal decides.
pub fn run_filters(
    filters: &[&dyn FilterPlugin],
    state: &CycleState,
    pod: &Pod,
    node: &NodeInfo,
) -> Status {
    for plugin in filters {
        let status = plugin.filter(state, pod, node);
        // A Skip from Filter (only Pre* may skip) counts as a pass.
        if !status.is_ok() {
            return status;
        }
    }
    Status::success()
}

/// Scales scores from `[0, max(scores)]` to `[0, max_priority]`, reversed (`max_priority -
/// score`) when a high raw score is bad, as kube-scheduler's `helper.DefaultNormalizeScore`.
///
/// Scores are assumed non-negative; when they are all zero they stay zero, or all become
/// `max_priority` when reversed.
pub fn default_normalize_score(max_priority: i64, reverse: bool, scores: &mut [i64]) {
    let max_count = scores.iter().copied().fold(0, i64::max);
    if max_count == 0 {
        if reverse {
            scores.fill(max_priority);
        }
        return;
    }
    for score in scores.iter_mut() {
        // Truncating division, as kube's int64 arithmetic.
        let scaled = max_priority * *score / max_count;
        *score = if reverse {
            max_priority - scaled
        } else {
            scaled
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kube-scheduler's `TestDefaultNormalizeScore`, every case.
    #[test]
    fn default_normalize_score_matches_kube() {
        let cases: [(bool, [i64; 4], [i64; 4]); 7] = [
            (false, [1, 2, 3, 4], [25, 50, 75, 100]),
            (true, [1, 2, 3, 4], [75, 50, 25, 0]),
            (false, [1000, 10, 20, 30], [100, 1, 2, 3]),
            (true, [1000, 10, 20, 30], [0, 99, 98, 97]),
            (false, [1, 1, 1, 1], [100, 100, 100, 100]),
            (false, [1000, 1, 1, 1], [100, 0, 0, 0]),
            (true, [0, 1, 1, 1], [100, 0, 0, 0]),
        ];
        for (reverse, scores, want) in cases {
            let mut got = scores;
            default_normalize_score(MAX_NODE_SCORE, reverse, &mut got);
            assert_eq!(got, want, "reverse={reverse} scores={scores:?}");
        }
    }

    #[test]
    fn all_zero_scores_stay_zero_unless_reversed() {
        let mut scores = [0, 0];
        default_normalize_score(MAX_NODE_SCORE, false, &mut scores);
        assert_eq!(scores, [0, 0]);
        default_normalize_score(MAX_NODE_SCORE, true, &mut scores);
        assert_eq!(scores, [100, 100]);
    }

    #[test]
    fn status_helpers() {
        let status = Status::new(
            Code::Unschedulable,
            ["Insufficient cpu", "Insufficient memory"],
        );
        assert!(status.is_rejected());
        assert!(!status.is_success());
        assert_eq!(status.message(), "Insufficient cpu, Insufficient memory");
        assert_eq!(
            status.to_string(),
            "Unschedulable: Insufficient cpu, Insufficient memory"
        );
        assert!(Status::default().is_success());
        assert!(!Status::error("boom").is_rejected());
        assert_eq!(
            Status::unresolvable("x").code,
            Code::UnschedulableAndUnresolvable
        );
    }
}
