//! NodeUnschedulable: keeps pods off cordoned nodes (`spec.unschedulable`, what `kubectl
//! cordon` sets), unless they tolerate the taint a cordon stands for.

use k8s_openapi::api::core::v1::{Pod, Taint};

use crate::framework::{CycleState, FilterPlugin, Status};
use crate::node_info::NodeInfo;
use crate::plugins::taint_toleration::tolerations_tolerate_taint;

pub const NAME: &str = "NodeUnschedulable";
pub const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// The taint the node lifecycle controller puts on a cordoned node; a pod tolerating it
/// (DaemonSet pods do) also tolerates `spec.unschedulable`.
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

#[derive(Clone, Copy, Debug, Default)]
pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        if !node.unschedulable() {
            return Status::success();
        }
        let cordon = Taint {
            key: TAINT_NODE_UNSCHEDULABLE.to_string(),
            effect: "NoSchedule".to_string(),
            ..Default::default()
        };
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|spec| spec.tolerations.as_deref())
            .unwrap_or_default();
        if tolerations_tolerate_taint(tolerations, &cordon) {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON_UNSCHEDULABLE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{node, node_info, pod, toleration};

    /// kube-scheduler's `TestNodeUnschedulable`, every case, and an unset field.
    #[test]
    fn cordoned_nodes_refuse_pods_that_do_not_tolerate_it() {
        let cases = [
            (
                "does not schedule pod to unschedulable node",
                pod().obj(),
                node("n1").unschedulable(true).obj(),
                Some(ERR_REASON_UNSCHEDULABLE),
            ),
            (
                "schedule pod to normal node",
                pod().obj(),
                node("n1").unschedulable(false).obj(),
                None,
            ),
            (
                "schedule pod with toleration to unschedulable node",
                pod()
                    .toleration(toleration(TAINT_NODE_UNSCHEDULABLE, "", "", "NoSchedule"))
                    .obj(),
                node("n1").unschedulable(true).obj(),
                None,
            ),
            ("unset is schedulable", pod().obj(), node("n1").obj(), None),
        ];
        for (name, pod, node, reason) in cases {
            let status =
                NodeUnschedulable.filter(&CycleState::new(), &pod, &node_info(node, Vec::new()));
            match reason {
                Some(reason) => assert_eq!(
                    status,
                    Status::new(Code::UnschedulableAndUnresolvable, [reason]),
                    "{name}"
                ),
                None => assert!(status.is_success(), "{name}: {status}"),
            }
        }
    }
}
