//! One step of a rolling update, free of I/O (kube's `rolling.go`): scale the new ReplicaSet
//! up within `spec.replicas + maxSurge`, or else the old ones down while
//! `spec.replicas - maxUnavailable` pods stay available, unhealthy old replicas first.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use super::scale::Scale;
use super::util::{
    self, by_creation, max_unavailable, new_rs_new_replicas, replica_count, replicas, rs_available,
    rs_replicas, DeploymentError,
};

/// The new ReplicaSet's next size (`reconcileNewReplicaSet`): `spec.replicas` if it is above,
/// else as far up as the surge allows; `None` when it stays.
pub fn reconcile_new_replica_set(
    all: &[&ReplicaSet],
    new_rs: &ReplicaSet,
    d: &Deployment,
) -> Result<Option<i32>, DeploymentError> {
    let desired = replicas(d);
    let current = rs_replicas(new_rs);
    if current == desired {
        return Ok(None);
    }
    if current > desired {
        return Ok(Some(desired));
    }
    let target = new_rs_new_replicas(d, all, new_rs)?;
    Ok((target != current).then_some(target))
}

/// The old ReplicaSets' new sizes, and whether kube would report them scaled down.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OldScale {
    /// One entry per ReplicaSet that shrinks, oldest first, with its final size.
    pub plan: Vec<Scale>,
    pub scaled: bool,
}

/// The sizes that changed between `before` and `after`.
fn plan_of(before: &[&ReplicaSet], after: &[ReplicaSet]) -> Vec<Scale> {
    after
        .iter()
        .filter_map(|rs| {
            let original = before
                .iter()
                .find(|original| original.metadata.name == rs.metadata.name)?;
            let replicas = rs_replicas(rs);
            (replicas != rs_replicas(original)).then(|| Scale {
                name: rs.metadata.name.clone().unwrap_or_default(),
                replicas,
                refresh_annotations: false,
            })
        })
        .collect()
}

/// Scales the active old ReplicaSets `old` down (`reconcileOldReplicaSets`), by at most
/// `all pods - minAvailable - unavailable new pods`: unavailable new pods must not let old
/// available ones go (a crash-looping new template would take the Deployment down). Unhealthy
/// old replicas go first — they cost no availability and would otherwise block the rollout —
/// then available ones, as long as more than minAvailable pods stay available.
///
/// As kube, an impossible request (an old ReplicaSet with more available pods than wanted,
/// mid scale-down) stops the step without an error, keeping what was decided before it.
pub fn reconcile_old_replica_sets(
    all: &[&ReplicaSet],
    old: &[&ReplicaSet],
    new_rs: &ReplicaSet,
    d: &Deployment,
) -> OldScale {
    if replica_count(old) == 0 {
        return OldScale::default();
    }
    let min_available = replicas(d) - max_unavailable(d);
    let new_unavailable = rs_replicas(new_rs) - rs_available(new_rs);
    let max_scaled_down = replica_count(all) - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return OldScale::default();
    }
    let mut working: Vec<ReplicaSet> = old.iter().map(|rs| (*rs).clone()).collect();
    let cleaned = match cleanup_unhealthy_replicas(&mut working, max_scaled_down) {
        Ok(cleaned) => cleaned,
        Err(error) => {
            tracing::debug!(%error, "not scaling old replica sets down");
            return OldScale {
                plan: plan_of(old, &working),
                scaled: false,
            };
        }
    };
    // Sizes changed, availability did not: the count is the one read.
    let available = util::available_replica_count(old) + rs_available(new_rs);
    let scaled_down =
        match scale_down_old_replica_sets_for_rolling_update(available, &mut working, d) {
            Ok(scaled_down) => scaled_down,
            Err(error) => {
                tracing::debug!(%error, "not scaling old replica sets down");
                return OldScale {
                    plan: plan_of(old, &working),
                    scaled: false,
                };
            }
        };
    OldScale {
        plan: plan_of(old, &working),
        scaled: cleaned + scaled_down > 0,
    }
}

/// Scales old ReplicaSets down by their unavailable replicas, oldest first, by at most
/// `max_cleanup` in all (`cleanupUnhealthyReplicas`). The ReplicaSet controller deletes
/// not-ready pods first, so this costs no availability. Returns how many went.
pub fn cleanup_unhealthy_replicas(
    old: &mut [ReplicaSet],
    max_cleanup: i32,
) -> Result<i32, DeploymentError> {
    old.sort_by(by_creation);
    let mut total = 0;
    for rs in old.iter_mut() {
        if total >= max_cleanup {
            break;
        }
        let current = rs_replicas(rs);
        let available = rs_available(rs);
        if current == 0 || current == available {
            continue;
        }
        let count = (max_cleanup - total).min(current - available);
        let target = current - count;
        if target > current {
            return Err(DeploymentError::InvalidScaleDown {
                action: "cleaning up unhealthy replicas",
                replicaset: crate::replicaset::pods::object_key(&rs.metadata),
                from: current,
                to: target,
            });
        }
        rs.spec.replicas = Some(target);
        total += count;
    }
    Ok(total)
}

/// Scales old ReplicaSets down, oldest first, by as many pods as are available beyond
/// `spec.replicas - maxUnavailable` (`scaleDownOldReplicaSetsForRollingUpdate`), `available`
/// being the available pods of all the Deployment's ReplicaSets. Returns how many went.
pub fn scale_down_old_replica_sets_for_rolling_update(
    available: i32,
    old: &mut [ReplicaSet],
    d: &Deployment,
) -> Result<i32, DeploymentError> {
    let min_available = replicas(d) - max_unavailable(d);
    if available <= min_available {
        return Ok(0);
    }
    old.sort_by(by_creation);
    let wanted = available - min_available;
    let mut total = 0;
    for rs in old.iter_mut() {
        if total >= wanted {
            break;
        }
        let current = rs_replicas(rs);
        if current == 0 {
            continue;
        }
        let count = current.min(wanted - total);
        let target = current - count;
        if target > current {
            return Err(DeploymentError::InvalidScaleDown {
                action: "scaling down old RS",
                replicaset: crate::replicaset::pods::object_key(&rs.metadata),
                from: current,
                to: target,
            });
        }
        rs.spec.replicas = Some(target);
        total += count;
    }
    Ok(total)
}
