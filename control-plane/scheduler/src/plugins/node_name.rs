//! NodeName: a pod that names its node (`spec.nodeName` set before scheduling) fits only there.

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{CycleState, FilterPlugin, Status};
use crate::node_info::NodeInfo;

pub const NAME: &str = "NodeName";
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

#[derive(Clone, Copy, Debug, Default)]
pub struct NodeName;

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let wanted = pod
            .spec
            .as_ref()
            .and_then(|spec| spec.node_name.as_deref())
            .unwrap_or_default();
        if wanted.is_empty() || wanted == node.name() {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, node_info, pod};

    /// kube-scheduler's `TestNodeName`, every case.
    #[test]
    fn a_pod_naming_a_node_fits_only_there() {
        let cases = [
            ("no host specified", pod().obj(), true),
            ("host matches", pod().node("foo").obj(), true),
            ("host doesn't match", pod().node("bar").obj(), false),
        ];
        for (name, pod, fits) in cases {
            let status = NodeName.filter(
                &CycleState::new(),
                &pod,
                &node_info(node("foo").obj(), Vec::new()),
            );
            if fits {
                assert!(status.is_success(), "{name}: {status}");
            } else {
                assert_eq!(status, Status::unresolvable(ERR_REASON), "{name}");
            }
        }
    }
}
