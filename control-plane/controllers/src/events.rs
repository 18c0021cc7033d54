//! What the controllers record as Events: each controller decides, in pure code, the [`Note`]
//! an outcome calls for (kube's reason and message, word for word), and the code around the
//! request hands it to its [`Recorder`], which never waits.
//!
//! Also kube's two node events shared by the node lifecycle and node IPAM controllers
//! (`RecordNodeEvent`, `RecordNodeStatusChange` of `pkg/controller/util/node`).

use k8s_openapi::api::core::v1::{Node, ObjectReference};
use keel_events::{EventType, Recorder};

/// One event to record: type, kube's reason, and the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
}

impl Note {
    pub fn normal(reason: &'static str, message: String) -> Note {
        Note {
            type_: EventType::Normal,
            reason,
            message,
        }
    }

    pub fn warning(reason: &'static str, message: String) -> Note {
        Note {
            type_: EventType::Warning,
            reason,
            message,
        }
    }

    /// Hands the note to `recorder` as an event about `involved` (never waits).
    pub fn record(&self, recorder: &Recorder, involved: &ObjectReference) {
        recorder.event(involved, self.type_, self.reason, &self.message);
    }
}

/// The reference kube's node events name a node by: apiVersion, kind, name and uid, no
/// namespace (the Event goes to `default`).
pub fn node_reference(node: &Node) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_string()),
        kind: Some("Node".to_string()),
        name: node.metadata.name.clone(),
        uid: node.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// `RecordNodeEvent`: `Node <name> event: <event>`, under `reason`.
pub fn node_event(name: &str, reason: &'static str, event: &str) -> Note {
    Note::normal(reason, format!("Node {name} event: {event}"))
}

/// `RecordNodeStatusChange`: a Normal event whose reason is the new status,
/// `Node <name> status is now: <status>`.
pub fn node_status_change(name: &str, status: &'static str) -> Note {
    Note::normal(status, format!("Node {name} status is now: {status}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_events_read_as_kubes() {
        assert_eq!(
            node_status_change("n1", "NodeNotReady"),
            Note {
                type_: EventType::Normal,
                reason: "NodeNotReady",
                message: "Node n1 status is now: NodeNotReady".into(),
            }
        );
        let registered = node_event("n1", "RegisteredNode", "Registered Node n1 in Controller");
        assert_eq!(
            registered.message,
            "Node n1 event: Registered Node n1 in Controller"
        );
        let mut node = Node::default();
        node.metadata.name = Some("n1".into());
        node.metadata.uid = Some("u".into());
        node.metadata.resource_version = Some("9".into());
        let reference = node_reference(&node);
        assert_eq!(reference.kind.as_deref(), Some("Node"));
        assert_eq!(reference.uid.as_deref(), Some("u"));
        assert_eq!(reference.namespace, None);
        assert_eq!(reference.resource_version, None);
    }
}
