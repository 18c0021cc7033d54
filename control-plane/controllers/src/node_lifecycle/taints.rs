//! Taints and tolerations: the controller's NoExecute taints (`SwapNodeControllerTaint`) and
//! the taint manager's eviction decisions (`processPodOnNode`, `getMinTolerationTime`).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

pub const NO_EXECUTE: &str = "NoExecute";
pub const NO_SCHEDULE: &str = "NoSchedule";
/// Ready=False (`NotReadyTaintTemplate`).
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Ready=Unknown (`UnreachableTaintTemplate`).
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// kube's `Toleration.ToleratesTaint`: an empty effect matches every effect, an empty key
/// (with `Exists`) every key; `Equal` (the default) also compares the values.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

/// kube's `GetMatchingTolerations`: for every taint the first toleration tolerating it, or
/// `None` when some taint is not tolerated.
pub fn matching_tolerations<'a>(
    taints: &[&Taint],
    tolerations: &'a [Toleration],
) -> Option<Vec<&'a Toleration>> {
    taints
        .iter()
        .map(|taint| {
            tolerations
                .iter()
                .find(|toleration| tolerates(toleration, taint))
        })
        .collect()
}

/// How long the tolerations used let a pod stay (`getMinTolerationTime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinToleration {
    /// Some toleration has no `tolerationSeconds`… and none has any: forever.
    Forever,
    /// The least positive `tolerationSeconds`; zero when none are used or one is ≤ 0.
    After(Duration),
}

pub fn min_toleration_time(tolerations: &[&Toleration]) -> MinToleration {
    if tolerations.is_empty() {
        return MinToleration::After(Duration::ZERO);
    }
    let mut least: Option<i64> = None;
    for seconds in tolerations.iter().filter_map(|t| t.toleration_seconds) {
        if seconds <= 0 {
            return MinToleration::After(Duration::ZERO);
        }
        least = Some(least.map_or(seconds, |least| least.min(seconds)));
    }
    match least {
        None => MinToleration::Forever,
        Some(seconds) => MinToleration::After(Duration::from_secs(seconds.unsigned_abs())),
    }
}

/// The node's NoExecute taints.
pub fn no_execute_taints(taints: &[Taint]) -> Vec<&Taint> {
    taints
        .iter()
        .filter(|taint| taint.effect == NO_EXECUTE)
        .collect()
}

/// What the taint manager does with a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// No NoExecute taint, or all tolerated forever.
    Keep,
    /// Delete at this time (now or in the past: at once).
    At(Timestamp),
}

/// The eviction of a pod on a node with `taints`: at once for a taint not tolerated, else
/// after the least `tolerationSeconds` counted from the latest `timeAdded` of the taints
/// (`first_seen` for a taint without one).
pub fn eviction(pod: &Pod, taints: &[Taint], first_seen: Timestamp, now: Timestamp) -> Eviction {
    let taints = no_execute_taints(taints);
    if taints.is_empty() {
        return Eviction::Keep;
    }
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.tolerations.as_deref())
        .unwrap_or_default();
    let Some(used) = matching_tolerations(&taints, tolerations) else {
        return Eviction::At(now);
    };
    let MinToleration::After(wait) = min_toleration_time(&used) else {
        return Eviction::Keep;
    };
    let start = taints
        .iter()
        .map(|taint| taint.time_added.as_ref().map_or(first_seen, |time| time.0))
        .max()
        .unwrap_or(now);
    let wait = SignedDuration::try_from(wait).unwrap_or(SignedDuration::MAX);
    Eviction::At(start.checked_add(wait).unwrap_or(Timestamp::MAX))
}

/// The taint the Ready status calls for: not-ready for `False`, unreachable for `Unknown`,
/// none for `True`.
pub fn taint_for_ready(status: &str) -> Option<&'static str> {
    match status {
        "False" => Some(NOT_READY),
        "True" => None,
        _ => Some(UNREACHABLE),
    }
}

fn is_controller_taint(taint: &Taint, key: &str) -> bool {
    taint.key == key && taint.effect == NO_EXECUTE
}

/// The node's taints with `add` present (stamped `now`, unless already there) and the
/// controller's other NoExecute taint removed; with `add` `None`, both removed. Other taints
/// are kept. `None` when nothing changes.
pub fn swap_taints(taints: &[Taint], add: Option<&str>, now: Timestamp) -> Option<Vec<Taint>> {
    let mut result: Vec<Taint> = taints
        .iter()
        .filter(|taint| {
            [NOT_READY, UNREACHABLE]
                .iter()
                .all(|key| Some(*key) == add || !is_controller_taint(taint, key))
        })
        .cloned()
        .collect();
    if let Some(key) = add {
        if !result.iter().any(|taint| is_controller_taint(taint, key)) {
            result.push(Taint {
                key: key.to_string(),
                effect: NO_EXECUTE.to_string(),
                value: None,
                time_added: Some(Time(now)),
            });
        }
    }
    (result != taints).then_some(result)
}

/// Whether the node carries the controller's taint `key`.
/// The node's taints with the NoSchedule taint for its Ready status (`not-ready` for False,
/// `unreachable` for Unknown, none for True) and without the other — kube's
/// TaintNodesByCondition, applied at once (not rate-limited): the scheduler must stop placing
/// pods there before any eviction starts. `None` when nothing changes.
pub fn swap_no_schedule_taints(taints: &[Taint], ready: &str) -> Option<Vec<Taint>> {
    let wanted = taint_for_ready(ready);
    let is_ours = |taint: &Taint| {
        taint.effect == NO_SCHEDULE && (taint.key == NOT_READY || taint.key == UNREACHABLE)
    };
    let already = taints
        .iter()
        .filter(|taint| is_ours(taint))
        .map(|taint| taint.key.as_str())
        .collect::<Vec<_>>();
    if already == wanted.into_iter().collect::<Vec<_>>() {
        return None;
    }
    let mut result: Vec<Taint> = taints.iter().filter(|t| !is_ours(t)).cloned().collect();
    if let Some(key) = wanted {
        result.push(Taint {
            key: key.to_string(),
            effect: NO_SCHEDULE.to_string(),
            ..Taint::default()
        });
    }
    Some(result)
}

pub fn has_taint(taints: &[Taint], key: &str) -> bool {
    taints.iter().any(|taint| is_controller_taint(taint, key))
}
