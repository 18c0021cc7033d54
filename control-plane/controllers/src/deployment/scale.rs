//! The sizes a Deployment gives its ReplicaSets outside a rollout step, free of I/O: kube's
//! `sync.go` (proportional scaling, `isScalingEvent`, the revision history clean-up) and the
//! decisions of `recreate.go`.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use super::annotations::{
    desired_replicas_annotation, replicas_annotations_need_update, set_replicas_annotations,
};
use super::util::{
    self, active, find_active_or_latest, has_revision_history_limit, is_rolling_update,
    is_saturated, replica_count, replica_set_proportion, rs_replicas, DeploymentError,
};

/// A size to give a ReplicaSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scale {
    /// The ReplicaSet's name.
    pub name: String,
    pub replicas: i32,
    /// Whether stale desired/max replicas annotations alone are worth a write (kube's
    /// `scaleReplicaSet`, used by proportional scaling) or only a size change is
    /// (`scaleReplicaSetAndRecordEvent`).
    pub refresh_annotations: bool,
}

impl Scale {
    fn of(rs: &ReplicaSet, replicas: i32, refresh_annotations: bool) -> Scale {
        Scale {
            name: rs.metadata.name.clone().unwrap_or_default(),
            replicas,
            refresh_annotations,
        }
    }
}

/// The ReplicaSet to write to give `rs` `replicas` (`scaleReplicaSet`): the size, and the
/// Deployment's current `desired-replicas` and `max-replicas`; `None` when that changes
/// nothing worth writing.
pub fn scaled_replica_set(
    rs: &ReplicaSet,
    d: &Deployment,
    replicas: i32,
    refresh_annotations: bool,
) -> Option<ReplicaSet> {
    let size_changed = rs_replicas(rs) != replicas;
    if !size_changed && !refresh_annotations {
        return None;
    }
    let desired = util::replicas(d);
    let max = desired + util::max_surge(d);
    if !size_changed && !replicas_annotations_need_update(rs, desired, max) {
        return None;
    }
    let mut updated = rs.clone();
    updated.spec.replicas = Some(replicas);
    set_replicas_annotations(&mut updated, desired, max);
    Some(updated)
}

/// Scales a Deployment whose `spec.replicas` changed, or that is paused (kube's `scale`):
/// - one active ReplicaSet (or none: the newest) takes every replica;
/// - a saturated new ReplicaSet leaves the old ones none;
/// - otherwise a rolling Deployment spreads the change over its active ReplicaSets in
///   proportion to their sizes (replicas added to the larger and newer first, removed from
///   the larger and older first), the rounding leftover going to the first, so that scaling
///   neither hastens nor slows a rollout; a Recreate one waits for its rollout.
pub fn scale(d: &Deployment, new_rs: Option<&ReplicaSet>, old: &[&ReplicaSet]) -> Vec<Scale> {
    let desired = util::replicas(d);
    if let Some(rs) = find_active_or_latest(new_rs, old) {
        if rs_replicas(rs) == desired {
            return Vec::new();
        }
        return vec![Scale::of(rs, desired, false)];
    }
    if is_saturated(d, new_rs) {
        return active(old)
            .into_iter()
            .map(|rs| Scale::of(rs, 0, false))
            .collect();
    }
    if !is_rolling_update(d) {
        return Vec::new();
    }
    let mut all = old.to_vec();
    all.extend(new_rs);
    let mut all = active(&all);
    let allowed = if desired > 0 {
        desired + util::max_surge(d)
    } else {
        0
    };
    let to_add = allowed - replica_count(&all);
    match to_add.cmp(&0) {
        std::cmp::Ordering::Greater => all.sort_by(|a, b| util::by_size_newer(a, b)),
        std::cmp::Ordering::Less => all.sort_by(|a, b| util::by_size_older(a, b)),
        std::cmp::Ordering::Equal => {}
    }
    let mut added = 0;
    let mut sizes = Vec::with_capacity(all.len());
    for rs in &all {
        let mut size = rs_replicas(rs);
        if to_add != 0 {
            let proportion = replica_set_proportion(Some(*rs), d, to_add, added);
            size += proportion;
            added += proportion;
        }
        sizes.push(size);
    }
    if to_add != 0 {
        if let Some(first) = sizes.first_mut() {
            *first = (*first + to_add - added).max(0);
        }
    }
    all.iter()
        .zip(sizes)
        .map(|(rs, size)| Scale::of(rs, size, true))
        .collect()
}

/// Whether `spec.replicas` changed since the active ReplicaSets were last scaled
/// (`isScalingEvent`): then the Deployment is scaled, not rolled.
pub fn is_scaling_event(d: &Deployment, new_rs: Option<&ReplicaSet>, old: &[&ReplicaSet]) -> bool {
    let mut all = old.to_vec();
    all.extend(new_rs);
    let desired = util::replicas(d);
    active(&all)
        .into_iter()
        .filter_map(desired_replicas_annotation)
        .any(|annotated| annotated != desired)
}

/// The old ReplicaSets to delete beyond `revisionHistoryLimit` (`cleanupDeployment`): the
/// lowest revisions among those not being deleted, skipping any with pods, pods wanted, or a
/// spec its controller has not seen yet.
pub fn cleanup_deployment<'a>(old: &[&'a ReplicaSet], d: &Deployment) -> Vec<&'a ReplicaSet> {
    if !has_revision_history_limit(d) {
        return Vec::new();
    }
    let cleanable: Vec<&ReplicaSet> = old
        .iter()
        .copied()
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .collect();
    let limit = i64::from(d.spec.revision_history_limit.unwrap_or(i32::MAX));
    let diff = i64::try_from(cleanable.len()).unwrap_or(i64::MAX) - limit;
    if diff <= 0 {
        return Vec::new();
    }
    util::sort_by_revision(&cleanable)
        .into_iter()
        .take(usize::try_from(diff).unwrap_or(usize::MAX))
        .filter(|rs| {
            let observed = rs
                .status
                .as_ref()
                .and_then(|status| status.observed_generation)
                .unwrap_or(0);
            util::rs_actual(rs) == 0
                && rs_replicas(rs) == 0
                && rs.metadata.generation.unwrap_or(0) <= observed
                && rs.metadata.deletion_timestamp.is_none()
        })
        .collect()
}

/// Recreate's first step (`scaleDownOldReplicaSetsForRecreate`): every old ReplicaSet to 0.
pub fn scale_down_old_replica_sets_for_recreate(old_active: &[&ReplicaSet]) -> Vec<Scale> {
    old_active
        .iter()
        .filter(|rs| rs_replicas(rs) != 0)
        .map(|rs| Scale::of(rs, 0, false))
        .collect()
}

/// Whether old pods still run, so that Recreate must wait before creating new ones. kube
/// looks at the pods themselves (`oldPodsRunning`); keel reads the old ReplicaSets' status,
/// as kube does with a `podReplacementPolicy`: pods counted in `status.replicas`, or in
/// `status.terminatingReplicas` (still running their grace period). Unknown when a
/// ReplicaSet's controller observed it without counting its terminating pods.
pub fn old_pods_running(old: &[&ReplicaSet]) -> Result<bool, DeploymentError> {
    if util::actual_replica_count(old) > 0 {
        return Ok(true);
    }
    util::terminating_replica_count(old)
        .map(|terminating| terminating > 0)
        .ok_or(DeploymentError::UnknownTerminatingReplicas)
}
