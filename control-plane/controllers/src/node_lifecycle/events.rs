//! The events of the node lifecycle controller (`node-controller`, on Nodes:
//! `RegisteredNode`, `RemovingNode`, `NodeNotReady`) and of its taint manager
//! (`taint-eviction-controller`, on Pods: `TaintManagerEviction`), as kube's
//! `monitorNodeHealth` and `tainteviction` controller record them.
//!
//! Not recorded: kube's `NodeNotReady` Warning on each pod of a node gone NotReady, which
//! follows `MarkPodsNotReady`, not ported.

use crate::events::{node_event, node_status_change, Note};

/// kube-controller-manager's source component for the node lifecycle controller.
pub const COMPONENT: &str = "node-controller";
/// kube's source component for the taint eviction controller (a controller of its own since
/// Kubernetes 1.29; here it runs inside the node lifecycle controller).
pub const EVICTION_COMPONENT: &str = "taint-eviction-controller";
pub const TAINT_MANAGER_EVICTION: &str = "TaintManagerEviction";
pub const NODE_NOT_READY: &str = "NodeNotReady";

/// A node seen for the first time by this controller (every node, after a restart or a
/// change of leader, as kube's `knownNodeSet` starts empty).
pub fn registered(node: &str) -> Note {
    node_event(
        node,
        "RegisteredNode",
        &format!("Registered Node {node} in Controller"),
    )
}

/// A node gone from the cache.
pub fn removing(node: &str) -> Note {
    node_event(
        node,
        "RemovingNode",
        &format!("Removing Node {node} from Controller"),
    )
}

/// The controller turned a Ready node's status to not Ready (it stopped posting): kube records
/// the change once, when Ready was `True` before the controller's own write and is not after.
pub fn not_ready(node: &str, ready_before: Option<&str>, ready_after: &str) -> Option<Note> {
    (ready_before == Some("True") && ready_after != "True")
        .then(|| node_status_change(node, NODE_NOT_READY))
}

/// A pod about to be deleted by the taint manager; `pod` is `namespace/name`.
pub fn marking_for_deletion(pod: &str) -> Note {
    Note::normal(
        TAINT_MANAGER_EVICTION,
        format!("Marking for deletion Pod {pod}"),
    )
}

/// A pod's scheduled eviction called off (the taint went, or is now tolerated for good).
pub fn cancelling_deletion(pod: &str) -> Note {
    Note::normal(
        TAINT_MANAGER_EVICTION,
        format!("Cancelling deletion of Pod {pod}"),
    )
}
