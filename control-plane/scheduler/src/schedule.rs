//! One scheduling decision: filter the nodes, score the feasible ones, pick the best
//! (kube-scheduler's `schedule_one.go`: `schedulePod`, `findNodesThatFitPod`,
//! `prioritizeNodes`, `selectHost`).
//!
//! Two things make it fast on big clusters, both kube-scheduler's:
//! - it stops filtering once it has found `numFeasibleNodesToFind` nodes (a share of the
//!   cluster that shrinks as the cluster grows, see [`num_feasible_nodes_to_find`]), and
//!   starts the next pod where this one stopped, so every node gets its turn;
//! - filters and scores run over the nodes in parallel, on a pool sized by `parallelism`.

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use rayon::prelude::*;

use crate::config::{Profile, WeightedScore};
use crate::framework::{
    run_filters, Code, CycleState, FilterPlugin, ScorePlugin, Status, CLUSTER_SUMMARY,
    MAX_NODE_SCORE,
};
use crate::metrics::Metrics;
use crate::node_info::{ClusterView, NodeInfo};
use crate::nominator::{nominated_node, run_filters_with_nominated, Nominator};

/// Below this many nodes every node is evaluated (kube-scheduler's `minFeasibleNodesToFind`).
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The smallest adaptive share (kube-scheduler's `minFeasibleNodesPercentageToFind`).
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;
/// The adaptive share starts here and drops by one point per 125 nodes.
const DEFAULT_PERCENTAGE_BASE: usize = 50;
/// Nodes given to one parallel task at least: evaluating a node takes about a microsecond,
/// less than handing it to another thread.
const MIN_NODES_PER_TASK: usize = 32;
/// Below this many nodes a pass runs on the scheduling thread alone: waking the pool's
/// threads costs more than the nodes take (measured: on two cores, SchedulingBasic spent 40%
/// of its time in thread wake-ups when every pass of 500 nodes went parallel).
const PARALLEL_MIN_NODES: usize = 2048;

/// A node chosen for the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleResult {
    pub node: String,
    /// Nodes the filters ran on.
    pub evaluated_nodes: usize,
    /// Of those, the nodes that passed.
    pub feasible_nodes: usize,
}

/// No node fits: each rejected node's status, for the `FailedScheduling` message and for
/// preemption (kube-scheduler's `FitError` and `Diagnosis`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FitError {
    pub num_all_nodes: usize,
    /// Node name → why it was refused.
    pub node_statuses: BTreeMap<String, Status>,
    /// Set when a PreFilter rejected the pod for every node at once.
    pub pre_filter_message: Option<String>,
    /// What preemption (the PostFilter) found, appended to the message.
    pub post_filter_message: Option<String>,
}

impl FitError {
    /// kube-scheduler's message: `0/5 nodes are available: 3 Insufficient cpu, 2 node(s) had
    /// untolerated taint {dedicated: gpu}.` — each reason counted over the nodes, the counts
    /// sorted as strings, then what preemption said.
    pub fn message(&self) -> String {
        let mut message = format!("0/{} nodes are available:", self.num_all_nodes);
        match &self.pre_filter_message {
            Some(pre_filter) => message.push_str(&format!(" {pre_filter}.")),
            None => {
                let mut histogram: BTreeMap<&str, usize> = BTreeMap::new();
                for status in self.node_statuses.values() {
                    for reason in &status.reasons {
                        *histogram.entry(reason.as_str()).or_default() += 1;
                    }
                }
                let mut reasons: Vec<String> = histogram
                    .into_iter()
                    .map(|(reason, count)| format!("{count} {reason}"))
                    .collect();
                reasons.sort();
                message.push_str(&format!(" {}.", reasons.join(", ")));
            }
        }
        if let Some(post_filter) = &self.post_filter_message {
            message.push_str(&format!(" {post_filter}"));
        }
        message
    }

    /// Nodes refused for a reason evicting pods could fix (`Unschedulable`, not
    /// `UnschedulableAndUnresolvable`): the candidates preemption looks at.
    pub fn resolvable_nodes(&self) -> impl Iterator<Item = &str> {
        self.node_statuses
            .iter()
            .filter(|(_, status)| status.code == Code::Unschedulable)
            .map(|(name, _)| name.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// kube-scheduler's `ErrNoNodesAvailable`.
    #[error("no nodes available to schedule pods")]
    NoNodes,
    #[error("{}", .0.message())]
    Unschedulable(FitError),
    /// A plugin could not decide (kube-scheduler reports it and retries after backoff).
    #[error("running {extension_point} plugin {plugin:?}: {message}")]
    Plugin {
        extension_point: &'static str,
        plugin: &'static str,
        message: String,
    },
}

/// How many feasible nodes to look for before scoring, as kube-scheduler's
/// `numFeasibleNodesToFind`: every node in clusters under 100 nodes; otherwise `percentage`
/// of them (`0` meaning adaptive: 50% minus one point per 125 nodes, at least 5%), never
/// fewer than 100.
pub fn num_feasible_nodes_to_find(percentage: u32, num_all_nodes: usize) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all_nodes;
    }
    let mut percentage = percentage as usize;
    if percentage >= 100 {
        return num_all_nodes;
    }
    if percentage == 0 {
        percentage = DEFAULT_PERCENTAGE_BASE
            .saturating_sub(num_all_nodes / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
    }
    (num_all_nodes * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Where the filtering of the next pod starts, and the random choice among equal scores.
#[derive(Clone, Debug)]
pub struct Cursor {
    pub next_start: usize,
    rng: u64,
}

impl Cursor {
    pub fn new(seed: u64) -> Cursor {
        Cursor {
            next_start: 0,
            // xorshift must not start at zero.
            rng: seed | 1,
        }
    }

    /// xorshift64: ties between nodes need a fair coin, not a secure one.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

/// Where a cycle reports how long its plugins took (kube's metrics recorder).
#[derive(Clone, Copy)]
pub struct Timing<'a> {
    pub metrics: &'a Metrics,
    pub profile: &'a str,
    /// Whether this cycle times each plugin call: only a sample of the cycles does
    /// ([`PLUGIN_METRICS_SAMPLE_PERCENT`](crate::metrics::PLUGIN_METRICS_SAMPLE_PERCENT)).
    pub plugins: bool,
}

/// Runs one plugin call; in a cycle that times plugins, records its duration as `plugin` at
/// `point` with the code `code` reads off the result. The clock is read only then: two reads
/// per plugin and node in every cycle were a tenth of an unsampled cycle.
fn timed<T>(
    timing: Option<&Timing<'_>>,
    plugin: &'static str,
    point: &'static str,
    call: impl FnOnce() -> T,
    code: impl FnOnce(&T) -> Code,
) -> T {
    let Some(timing) = timing.filter(|timing| timing.plugins) else {
        return call();
    };
    let started = Instant::now();
    let result = call();
    let elapsed = started.elapsed();
    timing
        .metrics
        .plugin(plugin, point, code(&result).as_str(), elapsed);
    result
}

impl Timing<'_> {
    fn point(&self, point: &str, code: Code, started: Instant) {
        let elapsed = started.elapsed();
        self.metrics
            .extension_point(point, code.as_str(), self.profile, elapsed);
    }
}

/// The code an extension point ended with, for its duration's `status` label.
fn point_code<T>(result: &Result<T, ScheduleError>) -> Code {
    match result {
        Ok(_) => Code::Success,
        Err(ScheduleError::Plugin { .. }) => Code::Error,
        Err(_) => Code::UnschedulableAndUnresolvable,
    }
}

/// Chooses a node for `pod` among `cluster`'s nodes with `profile`'s plugins, keeping the
/// room of the pods `nominator` holds for their nodes; reports durations to `timing` if given.
pub fn schedule_pod(
    profile: &Profile,
    percentage: u32,
    pod: &Pod,
    cluster: ClusterView<'_>,
    nominator: &Nominator,
    cursor: &mut Cursor,
    timing: Option<Timing<'_>>,
) -> Result<ScheduleResult, ScheduleError> {
    let nodes = cluster.nodes;
    if nodes.is_empty() {
        return Err(ScheduleError::NoNodes);
    }
    let mut state = CycleState::new();
    if let Some(summary) = cluster.summary {
        state.write(CLUSTER_SUMMARY, summary);
    }
    let started = Instant::now();
    let filters = pre_filter(profile, pod, nodes, &mut state, timing);
    if let Some(timing) = &timing {
        timing.point("PreFilter", point_code(&filters), started);
    }
    let filters = filters?;

    let search = Search {
        filters: &filters,
        state: &state,
        pod,
        nodes,
        nominator,
        timing: timing.filter(|timing| timing.plugins),
    };
    // kube's `evaluateNominatedNode`: a pod that preempted for a node is tried there first,
    // and takes it without looking further when it fits — the room was made for it there.
    if let Some(i) = nominated_node(pod, nominator)
        .and_then(|name| nodes.iter().position(|node| node.name() == name))
    {
        let status = search.filter(i);
        if status.code == Code::Error {
            // As kube, a failed evaluation only logs: the full search follows.
            tracing::warn!(node = %nodes[i].name(), %status, "evaluating the nominated node");
        } else if status.is_ok() {
            return Ok(ScheduleResult {
                node: nodes[i].name().to_string(),
                evaluated_nodes: 1,
                feasible_nodes: 1,
            });
        }
    }
    let (feasible, rejected) = find_feasible(&search, percentage, cursor)?;
    if feasible.is_empty() {
        return Err(ScheduleError::Unschedulable(FitError {
            num_all_nodes: nodes.len(),
            node_statuses: rejected
                .into_iter()
                .map(|(i, status)| (nodes[i].name().to_string(), status))
                .collect(),
            pre_filter_message: None,
            post_filter_message: None,
        }));
    }
    let evaluated_nodes = feasible.len() + rejected.len();
    if feasible.len() == 1 {
        // Nothing to rank, as kube-scheduler skips scoring for a single feasible node.
        return Ok(ScheduleResult {
            node: nodes[feasible[0]].name().to_string(),
            evaluated_nodes,
            feasible_nodes: 1,
        });
    }
    let totals = score_nodes(profile, pod, nodes, &feasible, &mut state, timing)?;
    let chosen = select_host(&totals, cursor);
    Ok(ScheduleResult {
        node: nodes[feasible[chosen]].name().to_string(),
        evaluated_nodes,
        feasible_nodes: feasible.len(),
    })
}

/// The PreFilters; returns the filters that did not skip this pod, in the profile's order.
fn pre_filter<'p>(
    profile: &'p Profile,
    pod: &Pod,
    nodes: &[NodeInfo],
    state: &mut CycleState,
    timing: Option<Timing<'_>>,
) -> Result<Vec<&'p dyn FilterPlugin>, ScheduleError> {
    let mut filters: Vec<&dyn FilterPlugin> = Vec::with_capacity(profile.filters.len());
    for plugin in &profile.filters {
        let status = timed(
            timing.as_ref(),
            plugin.name(),
            "PreFilter",
            || plugin.pre_filter(pod, nodes, state),
            |status| status.code,
        );
        match status.code {
            Code::Success => filters.push(plugin.as_ref()),
            Code::Skip => {}
            Code::Error => {
                return Err(ScheduleError::Plugin {
                    extension_point: "PreFilter",
                    plugin: plugin.name(),
                    message: status.message(),
                })
            }
            Code::Unschedulable | Code::UnschedulableAndUnresolvable => {
                let message = status.message();
                let refused = Status::new(Code::UnschedulableAndUnresolvable, [message.clone()]);
                return Err(ScheduleError::Unschedulable(FitError {
                    num_all_nodes: nodes.len(),
                    node_statuses: nodes
                        .iter()
                        .map(|node| (node.name().to_string(), refused.clone()))
                        .collect(),
                    pre_filter_message: Some(message),
                    post_filter_message: None,
                }));
            }
        }
    }
    Ok(filters)
}

type Feasibility = (Vec<usize>, Vec<(usize, Status)>);

/// What the filtering of one pod reads.
struct Search<'a> {
    filters: &'a [&'a dyn FilterPlugin],
    state: &'a CycleState,
    pod: &'a Pod,
    nodes: &'a [NodeInfo],
    nominator: &'a Nominator,
    /// Set in the sampled cycles: each filter call is timed.
    timing: Option<Timing<'a>>,
}

impl Search<'_> {
    /// The filters on node `i`, twice where pods are nominated to it.
    fn filter(&self, i: usize) -> Status {
        let node = &self.nodes[i];
        // Nearly always empty: the common case costs one check, not a lookup per node.
        if self.nominator.is_empty() {
            return self.run_filters(node);
        }
        let nominated = self.nominator.pods_for_node(node.name());
        if nominated.is_empty() {
            return self.run_filters(node);
        }
        run_filters_with_nominated(self.filters, self.state, self.pod, self.nodes, i, nominated)
    }
}

impl Search<'_> {
    /// [`run_filters`], each call timed in a sampled cycle. (The two passes of a node with
    /// nominated pods are left untimed: they are rare, and would count the filters twice.)
    fn run_filters(&self, node: &NodeInfo) -> Status {
        let Some(timing) = &self.timing else {
            return run_filters(self.filters, self.state, self.pod, node);
        };
        for plugin in self.filters {
            let status = timed(
                Some(timing),
                plugin.name(),
                "Filter",
                || plugin.filter(self.state, self.pod, node),
                |status| status.code,
            );
            if !status.is_ok() {
                return status;
            }
        }
        Status::success()
    }
}

/// Filters nodes from the cursor on, in parallel chunks, until enough feasible nodes are
/// found or every node was tried; returns the feasible nodes' indices and the refusals.
fn find_feasible(
    search: &Search<'_>,
    percentage: u32,
    cursor: &mut Cursor,
) -> Result<Feasibility, ScheduleError> {
    let nodes = search.nodes;
    let total = nodes.len();
    let wanted = num_feasible_nodes_to_find(percentage, total);
    let start = cursor.next_start % total;
    let mut feasible = Vec::with_capacity(wanted);
    let mut rejected = Vec::new();
    let mut processed = 0;
    while feasible.len() < wanted && processed < total {
        let chunk = (wanted - feasible.len())
            .max(MIN_NODES_PER_TASK)
            .min(total - processed);
        let filter = |offset: usize| {
            let i = (start + offset) % total;
            (i, search.filter(i))
        };
        let range = processed..processed + chunk;
        let results: Vec<(usize, Status)> = if chunk < PARALLEL_MIN_NODES {
            range.map(filter).collect()
        } else {
            range
                .into_par_iter()
                .with_min_len(MIN_NODES_PER_TASK)
                .map(filter)
                .collect()
        };
        processed += chunk;
        for (i, status) in results {
            match status.code {
                Code::Success | Code::Skip if feasible.len() < wanted => feasible.push(i),
                // Found more than needed in the last chunk: left for the next pod, as
                // kube-scheduler cancels the rest of the search.
                Code::Success | Code::Skip => {}
                Code::Error => {
                    return Err(ScheduleError::Plugin {
                        extension_point: "Filter",
                        plugin: "",
                        message: format!("node {:?}: {}", nodes[i].name(), status.message()),
                    })
                }
                Code::Unschedulable | Code::UnschedulableAndUnresolvable => {
                    rejected.push((i, status))
                }
            }
        }
    }
    cursor.next_start = (start + feasible.len() + rejected.len()) % total;
    Ok((feasible, rejected))
}

/// Each feasible node's weighted sum of normalized plugin scores.
fn score_nodes(
    profile: &Profile,
    pod: &Pod,
    nodes: &[NodeInfo],
    feasible: &[usize],
    state: &mut CycleState,
    timing: Option<Timing<'_>>,
) -> Result<Vec<i64>, ScheduleError> {
    let feasible_nodes: Vec<&NodeInfo> = feasible.iter().map(|&i| &nodes[i]).collect();
    let started = Instant::now();
    let scores = pre_score(profile, pod, nodes, &feasible_nodes, state, timing);
    if let Some(timing) = &timing {
        timing.point("PreScore", point_code(&scores), started);
    }
    let scores = scores?;
    let started = Instant::now();
    let totals = score(&scores, pod, &feasible_nodes, state, timing);
    if let Some(timing) = &timing {
        timing.point("Score", point_code(&totals), started);
    }
    totals
}

/// The PreScores; returns the score plugins that did not skip this pod.
fn pre_score<'p>(
    profile: &'p Profile,
    pod: &Pod,
    nodes: &[NodeInfo],
    feasible_nodes: &[&NodeInfo],
    state: &mut CycleState,
    timing: Option<Timing<'_>>,
) -> Result<Vec<&'p WeightedScore>, ScheduleError> {
    // The scores that did not skip this pod: a skipped plugin adds nothing to any node.
    let mut scores: Vec<&WeightedScore> = Vec::with_capacity(profile.scores.len());
    for weighted in &profile.scores {
        let status = timed(
            timing.as_ref(),
            weighted.plugin.name(),
            "PreScore",
            || weighted.plugin.pre_score(pod, feasible_nodes, nodes, state),
            |status| status.code,
        );
        if status.code == Code::Skip {
            continue;
        }
        scores.push(weighted);
        if !status.is_success() {
            return Err(ScheduleError::Plugin {
                extension_point: "PreScore",
                plugin: weighted.plugin.name(),
                message: status.message(),
            });
        }
    }
    Ok(scores)
}

/// Each feasible node's weighted sum of the normalized scores of `scores`.
fn score(
    scores: &[&WeightedScore],
    pod: &Pod,
    feasible: &[&NodeInfo],
    state: &CycleState,
    timing: Option<Timing<'_>>,
) -> Result<Vec<i64>, ScheduleError> {
    let plugins = scores.len();
    let count = feasible.len();
    if plugins == 0 || count == 0 {
        return Ok(vec![0; count]);
    }
    // The nodes go in runs, one per parallel task (a single run below PARALLEL_MIN_NODES, so
    // a cycle wakes the pool at most once). Within a run each plugin scores every node in one
    // call (`score_nodes`); its scores fill the run's block of `raw`, plugin after plugin.
    let run_len = if count < PARALLEL_MIN_NODES {
        count
    } else {
        count
            .div_ceil(rayon::current_num_threads().max(1))
            .max(MIN_NODES_PER_TASK)
    };
    let plugin_error = |plugin: &dyn ScorePlugin, status: Status| ScheduleError::Plugin {
        extension_point: "Score",
        plugin: plugin.name(),
        message: status.message(),
    };
    let timing_plugins = timing.as_ref().filter(|timing| timing.plugins);
    let score_run = |run: &[&NodeInfo], block: &mut [i64]| -> Result<(), ScheduleError> {
        for (weighted, out) in scores.iter().zip(block.chunks_mut(run.len())) {
            let plugin = weighted.plugin.as_ref();
            if timing_plugins.is_none() {
                plugin
                    .score_nodes(state, pod, run, out)
                    .map_err(|status| plugin_error(plugin, status))?;
                continue;
            }
            // A sampled cycle times every call, as kube-scheduler's plugin metrics do.
            for (node, slot) in run.iter().zip(out.iter_mut()) {
                let score = timed(
                    timing_plugins,
                    plugin.name(),
                    "Score",
                    || plugin.score(state, pod, node),
                    |score| {
                        score
                            .as_ref()
                            .map_or_else(|status| status.code, |_| Code::Success)
                    },
                );
                *slot = score.map_err(|status| plugin_error(plugin, status))?;
            }
        }
        Ok(())
    };
    let mut raw = vec![0i64; count * plugins];
    if run_len >= count {
        score_run(feasible, &mut raw)?;
    } else {
        feasible
            .par_chunks(run_len)
            .zip(raw.par_chunks_mut(run_len * plugins))
            .try_for_each(|(run, block)| score_run(run, block))?;
    }
    let mut totals = vec![0i64; count];
    let mut column = vec![0i64; count];
    for (p, weighted) in scores.iter().enumerate() {
        let plugin = &weighted.plugin;
        // Plugin p's scores, run after run (the last run may be shorter).
        let mut filled = 0;
        for (run, block) in feasible.chunks(run_len).zip(raw.chunks(run_len * plugins)) {
            let n = run.len();
            column[filled..filled + n].copy_from_slice(&block[p * n..(p + 1) * n]);
            filled += n;
        }
        timed(
            timing.as_ref(),
            plugin.name(),
            "ScoreExtensionNormalize",
            || plugin.normalize(state, pod, &mut column),
            |_| Code::Success,
        );
        for (total, score) in totals.iter_mut().zip(&column) {
            if !(0..=MAX_NODE_SCORE).contains(score) {
                return Err(ScheduleError::Plugin {
                    extension_point: "NormalizeScore",
                    plugin: plugin.name(),
                    message: format!(
                        "plugin returns an invalid score {score}, it should in the range of [0, {MAX_NODE_SCORE}] after normalizing"
                    ),
                });
            }
            *total += score * weighted.weight;
        }
    }
    Ok(totals)
}

/// The index of the highest total; among equal totals each has the same chance, by reservoir
/// sampling as kube-scheduler's `selectHost`.
pub fn select_host(totals: &[i64], cursor: &mut Cursor) -> usize {
    let mut best = 0;
    let mut ties = 0u64;
    for (i, &total) in totals.iter().enumerate() {
        if total > totals[best] {
            best = i;
            ties = 1;
        } else if total == totals[best] {
            ties += 1;
            if ties > 1 && cursor.next_random().is_multiple_of(ties) {
                best = i;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests;
