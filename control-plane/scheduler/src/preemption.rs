//! Preemption: when a pod fits nowhere, find the node where evicting the fewest, least
//! important pods makes room (kube-scheduler's DefaultPreemption PostFilter,
//! `framework/preemption/preemption.go` and `plugins/defaultpreemption`).
//!
//! For each node refused for a reason eviction can fix (`Unschedulable`, never
//! `UnschedulableAndUnresolvable`): take off every pod of lower priority; if the pod then
//! passes the filters, put the victims back one by one, most important first, keeping back
//! each whose return still leaves room (the *reprieve*). The node is chosen among those
//! candidates by kube's order: the lowest highest-victim priority, then the smallest sum of
//! victim priorities, then the fewest victims, then the latest-started most important victim.
//!
//! A pod preempts once and then waits: while a lower-priority pod it evicted is still
//! terminating on its nominated node, it is not eligible to preempt again ([`eligible`]); the
//! scheduling cycle tries that node first (`schedule`); and when no node would fit it
//! whatever is evicted, its nomination is stale and dropped ([`NoPreemption::NoCandidates`]).
//!
//! PodDisruptionBudgets are not consulted (keel does not serve them yet). Filters that look
//! at the whole cluster (PodTopologySpread, InterPodAffinity) are judged with the candidate
//! node changed and every other node as it is, which is what kube's AddPod/RemovePod
//! extensions compute incrementally; keel recomputes them, so a pod that needs those plugins
//! considers at most [`MAX_CANDIDATES_WHOLE_CLUSTER`] candidates.

use std::cmp::Ordering;

use k8s_openapi::api::core::v1::Pod;

use crate::config::Profile;
use crate::framework::run_filters;
use crate::framework::{Code, CycleState, FilterPlugin};
use crate::node_info::{pod_key, NodeInfo};
use crate::schedule::FitError;

/// Candidates evaluated when only per-node filters are active: kube's
/// `minCandidateNodesAbsolute`, and 10% of the cluster above that
/// (`minCandidateNodesPercentage`).
const MIN_CANDIDATES: usize = 100;
const CANDIDATES_PERCENTAGE: usize = 10;
/// Candidates evaluated when a whole-cluster filter is active (each costs a cluster copy).
pub const MAX_CANDIDATES_WHOLE_CLUSTER: usize = 10;

/// kube's reasons, as the `preemption: …` part of the FailedScheduling message counts them.
pub const REASON_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const REASON_NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// The node chosen and the pods to evict there.
#[derive(Clone, Debug)]
pub struct Preemption {
    pub node: String,
    pub victims: Vec<Pod>,
}

pub use crate::nominator::priority;

fn start_time(pod: &Pod) -> Option<k8s_openapi::jiff::Timestamp> {
    pod.status
        .as_ref()
        .and_then(|status| status.start_time.as_ref())
        .map(|time| time.0)
}

/// Why preemption did not choose a node; each carries the `preemption: …` message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoPreemption {
    /// The pod may not preempt now (kube's `PodEligibleToPreemptOthers`): its nomination, if
    /// any, stands — it waits for the victims it already chose.
    NotEligible(String),
    /// No node would fit the pod whatever is evicted: a nomination it had is stale, and kube
    /// clears it (`NominatingInfo` in override mode with no node).
    NoCandidates(String),
}

impl NoPreemption {
    pub fn message(&self) -> &str {
        match self {
            NoPreemption::NotEligible(message) | NoPreemption::NoCandidates(message) => message,
        }
    }
}

/// The DisruptionTarget condition's reason on a victim the scheduler evicts (kube's
/// `PodReasonPreemptionByScheduler`).
pub const REASON_PREEMPTION_BY_SCHEDULER: &str = "PreemptionByScheduler";

/// Whether the pod is being deleted by a preemption (kube's `podTerminatingByPreemption`):
/// a deletion timestamp and `DisruptionTarget=True` with reason `PreemptionByScheduler`.
pub fn terminating_by_preemption(pod: &Pod) -> bool {
    if pod.metadata.deletion_timestamp.is_none() {
        return false;
    }
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .and_then(|conditions| {
            conditions
                .iter()
                .find(|condition| condition.type_ == "DisruptionTarget")
        })
        .is_some_and(|condition| {
            condition.status == "True"
                && condition.reason.as_deref() == Some(REASON_PREEMPTION_BY_SCHEDULER)
        })
}

/// Whether the pod may preempt now (kube's `PodEligibleToPreemptOthers`); the reason when
/// not (the message's `preemption:` part). `nominated` is the node the pod was nominated to
/// by an earlier preemption: while a lower-priority pod there is still terminating because
/// of it, preempting again would evict more pods for room already on its way. Unless the
/// filters now refuse that node for good (UnschedulableAndUnresolvable: a taint, a label),
/// then the pod looks elsewhere.
pub fn eligible(
    pod: &Pod,
    nodes: &[NodeInfo],
    fit: &FitError,
    nominated: Option<&str>,
) -> Result<(), String> {
    let policy = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.preemption_policy.as_deref());
    if policy == Some("Never") {
        return Err("preemption: not eligible due to preemptionPolicy=Never.".to_string());
    }
    let Some(nominated) = nominated else {
        return Ok(());
    };
    // A node the search did not judge counts as unresolvable, as kube's absent-node status.
    let resolvable = fit
        .node_statuses
        .get(nominated)
        .is_some_and(|status| status.code != Code::UnschedulableAndUnresolvable);
    if !resolvable {
        return Ok(());
    }
    let threshold = priority(pod);
    let waiting = nodes
        .iter()
        .find(|node| node.name() == nominated)
        .is_some_and(|node| {
            node.pods
                .iter()
                .any(|other| priority(other) < threshold && terminating_by_preemption(other))
        });
    if waiting {
        return Err(
            "preemption: not eligible due to a terminating pod on the nominated node.".to_string(),
        );
    }
    Ok(())
}

/// Looks for a node where evictions let `pod` run; `nominated` is the node an earlier
/// preemption chose for it, if any.
pub fn preempt(
    profile: &Profile,
    pod: &Pod,
    nodes: &[NodeInfo],
    fit: &FitError,
    start: usize,
    nominated: Option<&str>,
) -> Result<Preemption, NoPreemption> {
    eligible(pod, nodes, fit, nominated).map_err(NoPreemption::NotEligible)?;
    find_candidate(profile, pod, nodes, fit, start).map_err(NoPreemption::NoCandidates)
}

/// kube's `findCandidates` and `SelectCandidate`; `Err` carries the `preemption: …` message.
fn find_candidate(
    profile: &Profile,
    pod: &Pod,
    nodes: &[NodeInfo],
    fit: &FitError,
    start: usize,
) -> Result<Preemption, String> {
    let total = fit.num_all_nodes;
    // Which filters look beyond the node for this pod.
    let mut state = CycleState::new();
    let mut whole_cluster = false;
    let mut filters: Vec<&dyn FilterPlugin> = Vec::new();
    for plugin in &profile.filters {
        let status = plugin.pre_filter(pod, nodes, &mut state);
        match status.code {
            Code::Skip => {}
            Code::Success => {
                filters.push(plugin.as_ref());
                whole_cluster |= matches!(plugin.name(), "PodTopologySpread" | "InterPodAffinity");
            }
            _ => return Err(no_candidates(total, 0, total)),
        }
    }
    let candidates: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, node)| {
            fit.node_statuses
                .get(node.name())
                .is_some_and(|status| status.code == Code::Unschedulable)
        })
        .map(|(i, _)| i)
        .collect();
    let unresolvable = total.saturating_sub(candidates.len());
    if candidates.is_empty() {
        return Err(no_candidates(total, 0, unresolvable));
    }
    let limit = if whole_cluster {
        MAX_CANDIDATES_WHOLE_CLUSTER
    } else {
        (total * CANDIDATES_PERCENTAGE / 100).max(MIN_CANDIDATES)
    };
    let offset = start % candidates.len();
    let mut found: Vec<(usize, Vec<Pod>)> = Vec::new();
    for k in 0..candidates.len().min(limit) {
        let i = candidates[(offset + k) % candidates.len()];
        let fits = |node: &NodeInfo| -> bool {
            if whole_cluster {
                let mut cluster = nodes.to_vec();
                cluster[i] = node.clone();
                let mut state = CycleState::new();
                for plugin in &filters {
                    if !plugin.pre_filter(pod, &cluster, &mut state).is_ok() {
                        return false;
                    }
                }
                run_filters(&filters, &state, pod, node).is_ok()
            } else {
                let mut state = CycleState::new();
                for plugin in &filters {
                    if !plugin
                        .pre_filter(pod, std::slice::from_ref(node), &mut state)
                        .is_ok()
                    {
                        return false;
                    }
                }
                run_filters(&filters, &state, pod, node).is_ok()
            }
        };
        if let Some(victims) = select_victims(pod, &nodes[i], fits) {
            found.push((i, victims));
        }
    }
    let no_victims = candidates.len().min(limit) - found.len();
    let Some(best) = pick(&found) else {
        return Err(no_candidates(total, no_victims, unresolvable));
    };
    let (i, victims) = found.swap_remove(best);
    Ok(Preemption {
        node: nodes[i].name().to_string(),
        victims,
    })
}

/// The fewest pods to evict from `node` so that `fits` holds, or `None`.
fn select_victims(
    pod: &Pod,
    node: &NodeInfo,
    fits: impl Fn(&NodeInfo) -> bool,
) -> Option<Vec<Pod>> {
    let preemptor = priority(pod);
    let mut potential: Vec<Pod> = node
        .pods
        .iter()
        .filter(|p| priority(p) < preemptor && p.metadata.deletion_timestamp.is_none())
        .cloned()
        .collect();
    if potential.is_empty() {
        return None;
    }
    let mut reduced = node.clone();
    for victim in &potential {
        reduced.remove_pod(&pod_key(victim));
    }
    if !fits(&reduced) {
        return None;
    }
    // Most important first: they are the ones most worth sparing.
    potential.sort_by(more_important);
    let mut victims = Vec::new();
    for candidate in potential {
        if reduced.add_pod(candidate.clone()).is_err() {
            victims.push(candidate);
            continue;
        }
        if !fits(&reduced) {
            reduced.remove_pod(&pod_key(&candidate));
            victims.push(candidate);
        }
    }
    Some(victims)
}

/// kube's `MoreImportantPod`: higher priority, then the earlier start.
fn more_important(a: &Pod, b: &Pod) -> Ordering {
    priority(b)
        .cmp(&priority(a))
        .then_with(|| match (start_time(a), start_time(b)) {
            (Some(a), Some(b)) => a.cmp(&b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
}

/// kube's `pickOneNodeForPreemption`, without PDB violations (always 0 here).
fn pick(found: &[(usize, Vec<Pod>)]) -> Option<usize> {
    // Offset so that negative priorities sum correctly, as kube adds MaxInt32 + 1.
    let offset = i64::from(i32::MAX) + 1;
    let key = |victims: &Vec<Pod>| {
        let highest = victims.iter().map(priority).max().unwrap_or(i32::MIN);
        let sum: i64 = victims
            .iter()
            .map(|v| i64::from(priority(v)) + offset)
            .sum();
        // The latest start among the most important victims: evicting younger pods loses less.
        let latest = victims
            .iter()
            .filter(|v| priority(v) == highest)
            .filter_map(start_time)
            .max();
        (highest, sum, victims.len(), std::cmp::Reverse(latest))
    };
    found
        .iter()
        .enumerate()
        .min_by(|(_, (_, a)), (_, (_, b))| key(a).cmp(&key(b)))
        .map(|(index, _)| index)
}

/// `preemption: 0/N nodes are available: …` — kube's count of why no candidate was found.
fn no_candidates(total: usize, no_victims: usize, not_helpful: usize) -> String {
    let mut reasons = Vec::new();
    if no_victims > 0 {
        reasons.push(format!("{no_victims} {REASON_NO_VICTIMS}"));
    }
    if not_helpful > 0 {
        reasons.push(format!("{not_helpful} {REASON_NOT_HELPFUL}"));
    }
    reasons.sort();
    format!(
        "preemption: 0/{total} nodes are available: {}.",
        reasons.join(", ")
    )
}

#[cfg(test)]
mod tests;
