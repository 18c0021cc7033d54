//! kube's `OwnerRefInvalidNamespace`: a dependent naming an owner seen in another namespace.

use keel_events::EventType;

use super::*;
use crate::garbage_collector::invalid_owner_ref_note;

fn elsewhere(name: &str, uid: &str, owners: Vec<OwnerReference>) -> ObjectMeta {
    ObjectMeta {
        namespace: Some("other".into()),
        ..meta(name, uid, owners)
    }
}

#[test]
fn a_dependent_seen_after_its_owner_is_reported() {
    let mut graph = Graph::default();
    let rs = meta("web-1", "rs1", vec![]);
    observe(&mut graph, "ReplicaSet", &rs);
    let pod = elsewhere(
        "p",
        "p1",
        vec![reference("ReplicaSet", "web-1", "rs1", true)],
    );
    assert_eq!(observe(&mut graph, "Pod", &pod), deletes(&["p1"]));
    let invalid = graph.take_invalid_owner_refs();
    assert_eq!(invalid.len(), 1);
    assert_eq!(invalid[0].dependent, identity("Pod", &pod));
    let note = invalid_owner_ref_note(&invalid[0]);
    assert_eq!(note.type_, EventType::Warning);
    assert_eq!(note.reason, "OwnerRefInvalidNamespace");
    assert_eq!(
        note.message,
        "ownerRef [apps/v1/ReplicaSet, namespace: other, name: web-1, uid: rs1] does not \
         exist in namespace \"other\""
    );
    // Taken: reported once.
    assert!(graph.take_invalid_owner_refs().is_empty());
}

#[test]
fn a_dependent_seen_before_its_owner_is_reported_when_the_owner_shows() {
    let mut graph = Graph::default();
    let pod = elsewhere(
        "p",
        "p1",
        vec![reference("ReplicaSet", "web-1", "rs1", true)],
    );
    observe(&mut graph, "Pod", &pod);
    // The owner is only virtual so far: nothing known to be wrong.
    assert!(graph.take_invalid_owner_refs().is_empty());
    observe(&mut graph, "ReplicaSet", &meta("web-1", "rs1", vec![]));
    let invalid = graph.take_invalid_owner_refs();
    assert_eq!(invalid.len(), 1);
    assert_eq!(invalid[0].owner.namespace, "other");
    assert_eq!(invalid[0].owner.uid, "rs1");
}

#[test]
fn same_namespace_and_cluster_scoped_owners_are_fine() {
    let mut graph = Graph::default();
    observe(&mut graph, "ReplicaSet", &meta("web-1", "rs1", vec![]));
    let pod = meta(
        "p",
        "p1",
        vec![reference("ReplicaSet", "web-1", "rs1", true)],
    );
    observe(&mut graph, "Pod", &pod);
    let node = ObjectMeta {
        namespace: None,
        ..meta("n1", "node1", vec![])
    };
    observe(&mut graph, "Node", &node);
    let on_node = elsewhere("q", "p2", vec![reference("Node", "n1", "node1", false)]);
    observe(&mut graph, "Pod", &on_node);
    assert!(graph.take_invalid_owner_refs().is_empty());
}
