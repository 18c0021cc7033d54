//! kube's `pkg/controller/deployment/util/deployment_util.go`, free of I/O: the API defaults a
//! controller relies on, surge and unavailability budgets, replica counts, the orders
//! ReplicaSets are scaled in, and proportions (the annotations are [`super::annotations`]).

use std::cmp::Ordering;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentStrategy, ReplicaSet, ReplicaSetStatus, RollingUpdateDeployment,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::annotations::{desired_replicas_annotation, max_replicas_annotation, revision};

/// The label telling a Deployment's ReplicaSets (and their pods) apart
/// (`apps.DefaultDeploymentUniqueLabelKey`).
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
pub const ROLLING_UPDATE: &str = "RollingUpdate";
pub const RECREATE: &str = "Recreate";
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
const DEFAULT_MAX_SURGE: &str = "25%";
const DEFAULT_MAX_UNAVAILABLE: &str = "25%";

/// A decision kube's helpers refuse to take.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeploymentError {
    #[error("nil value for IntOrString")]
    MissingIntOrString,
    #[error("invalid value for IntOrString: {0}")]
    InvalidIntOrString(String),
    #[error("deployment type {0:?} isn't supported")]
    UnsupportedStrategy(String),
    #[error("when {action}, got invalid request to scale down {replicaset} {from} -> {to}")]
    InvalidScaleDown {
        action: &'static str,
        replicaset: String,
        from: i32,
        to: i32,
    },
    #[error("failed to calculate terminating replicas")]
    UnknownTerminatingReplicas,
}

/// The API server's defaults for a Deployment (`SetDefaults_Deployment`). keel's API server
/// applies them on every write; the controller applies them again to what it reads so that an
/// object written around them (or a test) behaves as kube would.
pub fn set_defaults(d: &mut Deployment) {
    let spec = &mut d.spec;
    spec.replicas.get_or_insert(1);
    let strategy = spec
        .strategy
        .get_or_insert_with(DeploymentStrategy::default);
    let rolling = strategy
        .type_
        .get_or_insert_with(|| ROLLING_UPDATE.to_string())
        .as_str()
        == ROLLING_UPDATE;
    if rolling {
        let update = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        update
            .max_unavailable
            .get_or_insert_with(|| IntOrString::String(DEFAULT_MAX_UNAVAILABLE.to_string()));
        update
            .max_surge
            .get_or_insert_with(|| IntOrString::String(DEFAULT_MAX_SURGE.to_string()));
    }
    spec.revision_history_limit
        .get_or_insert(DEFAULT_REVISION_HISTORY_LIMIT);
    spec.progress_deadline_seconds
        .get_or_insert(DEFAULT_PROGRESS_DEADLINE_SECONDS);
}

/// `spec.replicas` (1 when unset, the API default).
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.replicas.unwrap_or(1)
}

/// A ReplicaSet's `spec.replicas` (1 when unset, the API default).
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(1)
}

fn rs_status(rs: &ReplicaSet) -> ReplicaSetStatus {
    rs.status.clone().unwrap_or_default()
}

/// `status.availableReplicas` of a ReplicaSet (0 when unset).
pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|status| status.available_replicas)
        .unwrap_or(0)
}

/// `status.replicas` of a ReplicaSet.
pub fn rs_actual(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |status| status.replicas)
}

pub fn strategy_type(d: &Deployment) -> &str {
    d.spec
        .strategy
        .as_ref()
        .and_then(|strategy| strategy.type_.as_deref())
        .unwrap_or_default()
}

pub fn is_rolling_update(d: &Deployment) -> bool {
    strategy_type(d) == ROLLING_UPDATE
}

fn rolling_update(d: &Deployment) -> Option<&RollingUpdateDeployment> {
    d.spec.strategy.as_ref()?.rolling_update.as_ref()
}

/// Whether the Deployment reports `ProgressDeadlineExceeded` (`HasProgressDeadline`): a
/// deadline is set and is not `MaxInt32`, which means none.
pub fn has_progress_deadline(d: &Deployment) -> bool {
    d.spec
        .progress_deadline_seconds
        .is_some_and(|seconds| seconds != i32::MAX)
}

/// Whether old ReplicaSets beyond a number are deleted (`HasRevisionHistoryLimit`).
pub fn has_revision_history_limit(d: &Deployment) -> bool {
    d.spec
        .revision_history_limit
        .is_some_and(|limit| limit != i32::MAX)
}

/// An int or a percentage of `total` (`intstr.GetScaledValueFromIntOrPercent`): percentages
/// round up for a surge, down for unavailability.
pub fn scaled_value(
    value: Option<&IntOrString>,
    total: i32,
    round_up: bool,
) -> Result<i32, DeploymentError> {
    match value.ok_or(DeploymentError::MissingIntOrString)? {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(text) => {
            let Some(number) = text.strip_suffix('%') else {
                return Err(DeploymentError::InvalidIntOrString(
                    "invalid type: string is not a percentage".to_string(),
                ));
            };
            let percent: i64 = number.parse().map_err(|_| {
                DeploymentError::InvalidIntOrString(format!("invalid value {text:?}"))
            })?;
            // As Go: through a float, then rounded the way asked.
            let scaled = percent as f64 * f64::from(total) / 100.0;
            let rounded = if round_up {
                scaled.ceil()
            } else {
                scaled.floor()
            };
            Ok(rounded as i32)
        }
    }
}

/// maxSurge and maxUnavailable resolved against `desired` together (`ResolveFenceposts`): an
/// unset one is 0, and when both come to 0 (a small percentage rounded down), maxUnavailable
/// is 1, on the theory that surge might not work because of a quota.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), DeploymentError> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(Some(max_surge.unwrap_or(&zero)), desired, true)?;
    let mut unavailable = scaled_value(Some(max_unavailable.unwrap_or(&zero)), desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let update = rolling_update(d);
    // Invalid values are refused by validation; kube reads them as 0 here.
    resolve_fenceposts(
        update.and_then(|u| u.max_surge.as_ref()),
        update.and_then(|u| u.max_unavailable.as_ref()),
        replicas(d),
    )
    .unwrap_or((0, 0))
}

/// The most pods above `spec.replicas` a rolling Deployment may run (`MaxSurge`).
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling_update(d) {
        return 0;
    }
    fenceposts(d).0
}

/// The most unavailable pods a rolling Deployment may have, at most `spec.replicas`
/// (`MaxUnavailable`).
pub fn max_unavailable(d: &Deployment) -> i32 {
    let desired = replicas(d);
    if !is_rolling_update(d) || desired == 0 {
        return 0;
    }
    fenceposts(d).1.min(desired)
}

/// The desired and max replicas a new ReplicaSet's annotations record: `spec.replicas` and
/// `spec.replicas + maxSurge`.
pub fn replica_annotations(d: &Deployment) -> (i32, i32) {
    let desired = replicas(d);
    (desired, desired + max_surge(d))
}

/// The fewest available pods a rolling Deployment keeps (`MinAvailable`).
pub fn min_available(d: &Deployment) -> i32 {
    if !is_rolling_update(d) {
        return 0;
    }
    replicas(d) - max_unavailable(d)
}

/// The sum of `spec.replicas` (`GetReplicaCountForReplicaSets`).
pub fn replica_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_replicas(rs)).sum()
}

/// The sum of `status.replicas` (`GetActualReplicaCountForReplicaSets`).
pub fn actual_replica_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_actual(rs)).sum()
}

/// The sum of `status.readyReplicas`.
pub fn ready_replica_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter()
        .map(|rs| rs_status(rs).ready_replicas.unwrap_or(0))
        .sum()
}

/// The sum of `status.availableReplicas`.
pub fn available_replica_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_available(rs)).sum()
}

/// The sum of `status.terminatingReplicas` (`GetTerminatingReplicaCountForReplicaSets`): a
/// ReplicaSet its controller has not observed yet counts 0; one observed without the count
/// makes the sum unknown.
pub fn terminating_replica_count(rss: &[&ReplicaSet]) -> Option<i32> {
    let mut total = 0;
    for rs in rss {
        let status = rs_status(rs);
        match status.terminating_replicas {
            Some(terminating) => total += terminating,
            None if status.observed_generation.unwrap_or(0) == 0 => {}
            None => return None,
        }
    }
    Some(total)
}

/// The ReplicaSets with pods wanted (`FilterActiveReplicaSets`).
pub fn active<'a>(rss: &[&'a ReplicaSet]) -> Vec<&'a ReplicaSet> {
    rss.iter()
        .copied()
        .filter(|rs| rs_replicas(rs) > 0)
        .collect()
}

/// Older first, then by name (`ReplicaSetsByCreationTimestamp`). A missing timestamp is Go's
/// zero time, the oldest.
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    created(a)
        .cmp(&created(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Larger first; among equals, newer first (`ReplicaSetsBySizeNewer`): where replicas are
/// added.
pub fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(b, a))
}

/// Larger first; among equals, older first (`ReplicaSetsBySizeOlder`): where replicas are
/// removed.
pub fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(a, b))
}

/// kube's `ReplicaSetsByRevision.Less`: lower revision first, by creation when either does
/// not parse or they are equal.
fn revision_less(a: &ReplicaSet, b: &ReplicaSet) -> bool {
    match (revision(&a.metadata), revision(&b.metadata)) {
        (Ok(first), Ok(second)) if first != second => first < second,
        _ => by_creation(a, b) == Ordering::Less,
    }
}

/// Sorts oldest revision first (`ReplicaSetsByRevision`). A merge sort of its own: falling
/// back to creation order for unparsable revisions is not a total order, and the standard
/// library's sorts may panic on one.
pub fn sort_by_revision<'a>(rss: &[&'a ReplicaSet]) -> Vec<&'a ReplicaSet> {
    if rss.len() <= 1 {
        return rss.to_vec();
    }
    let (left, right) = rss.split_at(rss.len() / 2);
    let (left, right) = (sort_by_revision(left), sort_by_revision(right));
    let mut merged = Vec::with_capacity(rss.len());
    let (mut i, mut j) = (0, 0);
    while i < left.len() && j < right.len() {
        if revision_less(right[j], left[i]) {
            merged.push(right[j]);
            j += 1;
        } else {
            merged.push(left[i]);
            i += 1;
        }
    }
    merged.extend_from_slice(&left[i..]);
    merged.extend_from_slice(&right[j..]);
    merged
}

/// The one active ReplicaSet, or the newest when none is active; `None` when several are
/// (then they scale proportionally) (`FindActiveOrLatest`).
pub fn find_active_or_latest<'a>(
    new_rs: Option<&'a ReplicaSet>,
    old: &[&'a ReplicaSet],
) -> Option<&'a ReplicaSet> {
    if new_rs.is_none() && old.is_empty() {
        return None;
    }
    let mut old = old.to_vec();
    old.sort_by(|a, b| by_creation(b, a));
    let mut all = old.clone();
    all.extend(new_rs);
    let all = active(&all);
    match all.len() {
        0 => new_rs.or_else(|| old.first().copied()),
        1 => all.first().copied(),
        _ => None,
    }
}

/// How many replicas the new ReplicaSet should have now (`NewRSNewReplicas`): for a rolling
/// update, as many more as the surge allows, at most `spec.replicas`; for Recreate, all.
pub fn new_rs_new_replicas(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: &ReplicaSet,
) -> Result<i32, DeploymentError> {
    let desired = replicas(d);
    match strategy_type(d) {
        ROLLING_UPDATE => {
            let surge = scaled_value(
                rolling_update(d).and_then(|u| u.max_surge.as_ref()),
                desired,
                true,
            )?;
            let current = replica_count(all);
            let max_total = desired + surge;
            let new_replicas = rs_replicas(new_rs);
            if current >= max_total {
                return Ok(new_replicas);
            }
            let scale_up = (max_total - current).min(desired - new_replicas);
            Ok(new_replicas + scale_up)
        }
        RECREATE => Ok(desired),
        other => Err(DeploymentError::UnsupportedStrategy(other.to_string())),
    }
}

/// Whether the new ReplicaSet holds every replica, all available (`IsSaturated`).
pub fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else {
        return false;
    };
    let Some(desired) = desired_replicas_annotation(rs) else {
        return false;
    };
    let wanted = replicas(d);
    rs_replicas(rs) == wanted && desired == wanted && rs_available(rs) == wanted
}

/// Go's `integer.RoundToInt32`: halves away from zero, then truncated.
fn round_to_i32(value: f64) -> i32 {
    if value < 0.0 {
        (value - 0.5) as i32
    } else {
        (value + 0.5) as i32
    }
}

/// How many replicas `rs` gains (or loses) when the Deployment is scaled: its share of the
/// new maximum, against the maximum recorded when it was last scaled
/// (`getReplicaSetFraction`).
pub fn replica_set_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    let current = rs_replicas(rs);
    if replicas(d) == 0 {
        return -current;
    }
    let max_now = replicas(d) + max_surge(d);
    let max_before = match max_replicas_annotation(rs) {
        Some(max) if max != 0 => max,
        // The annotation removed or zeroed by someone else: the Deployment's current size
        // is the best estimate; the proportions are clamped by the caller anyway.
        _ => {
            let status = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            if status == 0 {
                return 0;
            }
            status
        }
    };
    let scaled = f64::from(current) * f64::from(max_now) / f64::from(max_before);
    round_to_i32(scaled) - current
}

/// The replicas `rs` gains or loses in a proportional scaling, never more than what is left
/// to distribute (`GetReplicaSetProportion`).
pub fn replica_set_proportion(
    rs: Option<&ReplicaSet>,
    d: &Deployment,
    to_add: i32,
    added: i32,
) -> i32 {
    let Some(rs) = rs else {
        return 0;
    };
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}
