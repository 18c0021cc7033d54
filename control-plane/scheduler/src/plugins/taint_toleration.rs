//! TaintToleration: a node's NoSchedule and NoExecute taints keep off the pods that do not
//! tolerate them (filter); its PreferNoSchedule taints make it less preferred, the more of
//! them the pod does not tolerate (score).

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};

use crate::framework::{
    default_normalize_score, CycleState, FilterPlugin, ScorePlugin, Status, MAX_NODE_SCORE,
};
use crate::node_info::NodeInfo;

pub const NAME: &str = "TaintToleration";
pub const EFFECT_NO_SCHEDULE: &str = "NoSchedule";
pub const EFFECT_PREFER_NO_SCHEDULE: &str = "PreferNoSchedule";
pub const EFFECT_NO_EXECUTE: &str = "NoExecute";

#[derive(Clone, Copy, Debug, Default)]
pub struct TaintToleration;

/// Whether `toleration` tolerates `taint`, as the API's `Toleration.ToleratesTaint`: an empty
/// effect or key matches any, `Exists` matches any value, `Equal` (or no operator) the same
/// value.
///
/// The `Gt`/`Lt` operators of the TaintTolerationComparisonOperators feature (alpha in 1.35,
/// off by default) tolerate nothing, as kube-scheduler with the feature off.
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

pub fn tolerations_tolerate_taint(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations
        .iter()
        .any(|toleration| tolerates(toleration, taint))
}

/// The first NoSchedule or NoExecute taint of the node the pod does not tolerate.
pub fn untolerated_taint<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints.iter().find(|taint| {
        (taint.effect == EFFECT_NO_SCHEDULE || taint.effect == EFFECT_NO_EXECUTE)
            && !tolerations_tolerate_taint(tolerations, taint)
    })
}

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.tolerations.as_deref())
        .unwrap_or_default()
}

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        match untolerated_taint(node.taints(), tolerations(pod)) {
            None => Status::success(),
            // Kubernetes 1.26–1.34 wording (newer releases write "node(s) had untolerated
            // taint(s)"): the key tells the reader which toleration is missing.
            Some(taint) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or_default()
            )),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    /// The number of PreferNoSchedule taints not tolerated by the pod's tolerations for that
    /// effect (or for every effect); fewer is better, hence the reversed normalization.
    fn score(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        // Filtered in place, not collected: this runs for every feasible node, and nearly
        // every node has no PreferNoSchedule taint at all.
        let for_prefer_no_schedule = || {
            tolerations(pod).iter().filter(|toleration| {
                let effect = toleration.effect.as_deref().unwrap_or_default();
                effect.is_empty() || effect == EFFECT_PREFER_NO_SCHEDULE
            })
        };
        let untolerated = node
            .taints()
            .iter()
            .filter(|taint| {
                taint.effect == EFFECT_PREFER_NO_SCHEDULE
                    && !for_prefer_no_schedule().any(|toleration| tolerates(toleration, taint))
            })
            .count();
        Ok(i64::try_from(untolerated).unwrap_or(i64::MAX))
    }

    fn normalize(&self, _state: &CycleState, _pod: &Pod, scores: &mut [i64]) {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
    }
}

#[cfg(test)]
mod tests;
