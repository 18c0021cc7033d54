//! The garbage collector's pure part against the cases of kube's `garbagecollector_test.go`
//! and `graph_builder_test.go`: chains, the three propagation policies, mismatched owners and
//! cycles.

use std::collections::HashSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde_json::json;

use super::decide::{self, Decision, OwnerState, Propagation};
use super::graph::{
    Graph, Identity, Observation, Work, ABSENT_OWNER_CACHE_SIZE, FINALIZER_FOREGROUND,
    FINALIZER_ORPHAN,
};
use super::kinds::{self, Kind};

fn kind(name: &str) -> Kind {
    kinds::served()
        .into_iter()
        .find(|kind| kind.resource.kind == name)
        .expect("a served kind")
}

fn meta(name: &str, uid: &str, owners: Vec<OwnerReference>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some("default".into()),
        uid: Some(uid.into()),
        owner_references: (!owners.is_empty()).then_some(owners),
        ..ObjectMeta::default()
    }
}

/// `meta` after a DELETE that left `finalizers` on it.
fn deleting(meta: &ObjectMeta, finalizers: &[&str]) -> ObjectMeta {
    ObjectMeta {
        deletion_timestamp: Some(Time("2024-05-01T12:00:00Z".parse().expect("a timestamp"))),
        finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
        ..meta.clone()
    }
}

/// A controller reference from a dependent to the `kind` object `name`/`uid`.
fn reference(kind_name: &str, name: &str, uid: &str, block: bool) -> OwnerReference {
    let kind = kind(kind_name);
    OwnerReference {
        api_version: kind.resource.api_version,
        kind: kind.resource.kind,
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(block),
    }
}

fn observe(graph: &mut Graph, kind_name: &str, meta: &ObjectMeta) -> Vec<Work> {
    graph.observe(Observation::of(&kind(kind_name), meta).expect("a uid"))
}

fn identity(kind_name: &str, meta: &ObjectMeta) -> Identity {
    Identity::of(&kind(kind_name), meta).expect("a uid")
}

fn deletes(uids: &[&str]) -> Vec<Work> {
    uids.iter()
        .map(|uid| Work::Delete(uid.to_string()))
        .collect()
}

fn uids(nodes: Vec<&super::graph::Node>) -> Vec<String> {
    nodes.into_iter().map(|n| n.identity.uid.clone()).collect()
}

#[test]
fn a_deployment_replicaset_pods_chain_is_collected_link_by_link() {
    let mut graph = Graph::default();
    let deployment = meta("web", "d1", vec![]);
    let rs_owner = reference("Deployment", "web", "d1", true);
    let rs = meta("web-1", "rs1", vec![rs_owner.clone()]);
    let pod_owner = reference("ReplicaSet", "web-1", "rs1", true);
    let pod_a = meta("web-1-a", "p1", vec![pod_owner.clone()]);
    let pod_b = meta("web-1-b", "p2", vec![pod_owner.clone()]);
    assert!(observe(&mut graph, "Deployment", &deployment).is_empty());
    assert!(observe(&mut graph, "ReplicaSet", &rs).is_empty());
    assert!(observe(&mut graph, "Pod", &pod_a).is_empty());
    assert!(observe(&mut graph, "Pod", &pod_b).is_empty());
    assert_eq!(uids(graph.dependents("d1")), ["rs1"]);
    assert_eq!(uids(graph.dependents("rs1")), ["p1", "p2"]);

    // Deleted in the background: the API server removes the deployment at once.
    let work = graph.observe_deleted(&identity("Deployment", &deployment));
    assert_eq!(work, deletes(&["rs1"]));
    assert!(graph.absent.contains(&identity("Deployment", &deployment)));
    let decision = decide::decide(&[], &[(rs_owner, OwnerState::Dangling)], 2, false);
    assert_eq!(decision, Decision::Delete(Propagation::Background));

    let work = graph.observe_deleted(&identity("ReplicaSet", &rs));
    assert_eq!(work, deletes(&["p1", "p2"]));
    let decision = decide::decide(&[], &[(pod_owner, OwnerState::Dangling)], 0, false);
    assert_eq!(decision, Decision::Delete(Propagation::Background));
    graph.observe_deleted(&identity("Pod", &pod_a));
    graph.observe_deleted(&identity("Pod", &pod_b));
    assert!(graph.is_empty());
}

#[test]
fn an_unknown_owner_is_a_virtual_node_until_verified_absent() {
    let mut graph = Graph::default();
    let pod = meta(
        "p",
        "p1",
        vec![reference("ReplicaSet", "gone", "rs9", false)],
    );
    assert_eq!(observe(&mut graph, "Pod", &pod), deletes(&["rs9"]));
    let owner = graph.get("rs9").expect("a virtual node").clone();
    assert!(!owner.observed);
    assert_eq!(owner.identity.namespace, "default");
    assert_eq!(owner.identity.name, "gone");
    assert_eq!(graph.virtual_delete(&owner.identity), deletes(&["p1"]));
    assert!(graph.get("rs9").is_none());
    assert!(graph.absent.contains(&owner.identity));
}

#[test]
fn a_cluster_scoped_owner_verified_absent_frees_every_namespace() {
    let mut graph = Graph::default();
    let owner = reference("Node", "n1", "node1", false);
    let here = meta("a", "p1", vec![owner.clone()]);
    let there = ObjectMeta {
        namespace: Some("other".into()),
        ..meta("b", "p2", vec![owner])
    };
    assert_eq!(observe(&mut graph, "Pod", &here), deletes(&["node1"]));
    // Named from another namespace than the virtual node's: checked, in case.
    assert_eq!(observe(&mut graph, "Pod", &there), deletes(&["p2"]));
    // Verified absent under its cluster-scoped name (no namespace).
    let mut absent = graph.get("node1").expect("virtual").identity.clone();
    absent.namespace.clear();
    assert_eq!(graph.virtual_delete(&absent), deletes(&["p1", "p2"]));
    assert!(graph.get("node1").is_none());
}

#[test]
fn a_virtual_owner_seen_at_last_becomes_a_real_node() {
    let mut graph = Graph::default();
    let rs = meta("web-1", "rs1", vec![]);
    let pod = meta(
        "p",
        "p1",
        vec![reference("ReplicaSet", "web-1", "rs1", true)],
    );
    assert_eq!(observe(&mut graph, "Pod", &pod), deletes(&["rs1"]));
    assert!(observe(&mut graph, "ReplicaSet", &rs).is_empty());
    let node = graph.get("rs1").expect("the owner");
    assert!(node.observed);
    assert_eq!(uids(graph.dependents("rs1")), ["p1"]);
}

#[test]
fn an_owner_of_the_same_name_with_another_uid_is_gone() {
    let mut graph = Graph::default();
    let current = meta("web-1", "rs-new", vec![]);
    let stale = reference("ReplicaSet", "web-1", "rs-old", true);
    let pod = meta("p", "p1", vec![stale.clone()]);
    assert!(observe(&mut graph, "ReplicaSet", &current).is_empty());
    assert_eq!(observe(&mut graph, "Pod", &pod), deletes(&["rs-old"]));
    // The live GET by name answers the namesake.
    assert_eq!(
        decide::owner_state(&stale, Some(&current)),
        OwnerState::Dangling
    );
    let virtual_owner = graph
        .get("rs-old")
        .expect("a virtual node")
        .identity
        .clone();
    assert_eq!(graph.virtual_delete(&virtual_owner), deletes(&["p1"]));
    assert_eq!(
        decide::decide(&[], &[(stale, OwnerState::Dangling)], 0, false),
        Decision::Delete(Propagation::Background)
    );
    // The namesake keeps its place.
    assert!(graph.get("rs-new").is_some_and(|n| n.dependents.is_empty()));
}

#[test]
fn a_reference_disagreeing_with_the_observed_owner_is_checked() {
    let mut graph = Graph::default();
    let rs = meta("web-1", "x", vec![]);
    assert!(observe(&mut graph, "ReplicaSet", &rs).is_empty());
    // Same uid, named as a Deployment.
    let pod = meta("p", "p1", vec![reference("Deployment", "web", "x", false)]);
    assert_eq!(observe(&mut graph, "Pod", &pod), deletes(&["p1"]));

    // The other order: the bad reference first, then the owner seen as it really is.
    let pod = meta("q", "p2", vec![reference("Deployment", "web", "y", false)]);
    assert_eq!(observe(&mut graph, "Pod", &pod), deletes(&["y"]));
    let rs = meta("web-2", "y", vec![]);
    assert_eq!(observe(&mut graph, "ReplicaSet", &rs), deletes(&["p2"]));
    assert_eq!(
        graph.get("y").expect("observed").identity.kind,
        "ReplicaSet"
    );
}

#[test]
fn a_virtual_owner_named_two_ways_is_verified_under_each_name() {
    let mut graph = Graph::default();
    let as_deployment = meta("a", "p1", vec![reference("Deployment", "web", "z", false)]);
    let as_replicaset = meta(
        "b",
        "p2",
        vec![reference("ReplicaSet", "web-1", "z", false)],
    );
    assert_eq!(
        observe(&mut graph, "ConfigMap", &as_deployment),
        deletes(&["z"])
    );
    assert_eq!(
        observe(&mut graph, "ConfigMap", &as_replicaset),
        deletes(&["p2"])
    );
    let first = graph.get("z").expect("virtual").identity.clone();
    assert_eq!(first.kind, "Deployment");
    let work = graph.virtual_delete(&first);
    assert_eq!(
        work,
        vec![
            Work::Delete("p1".into()),
            Work::DeleteAfterBackoff("z".into())
        ]
    );
    let second = graph.get("z").expect("kept").identity.clone();
    assert_eq!(
        (second.kind.as_str(), second.name.as_str()),
        ("ReplicaSet", "web-1")
    );
}

#[test]
fn foreground_deletion_waits_for_blocking_dependents_only() {
    let mut graph = Graph::default();
    let owner = meta("web", "d1", vec![]);
    let blocking = reference("Deployment", "web", "d1", true);
    let rs_a = meta("web-a", "rsa", vec![blocking.clone()]);
    let rs_b = meta(
        "web-b",
        "rsb",
        vec![reference("Deployment", "web", "d1", false)],
    );
    observe(&mut graph, "Deployment", &owner);
    observe(&mut graph, "ReplicaSet", &rs_a);
    observe(&mut graph, "ReplicaSet", &rs_b);

    let owner = deleting(&owner, &[FINALIZER_FOREGROUND]);
    let work = observe(&mut graph, "Deployment", &owner);
    assert_eq!(work, deletes(&["rsa", "rsb", "d1"]));
    assert!(graph.get("d1").is_some_and(|n| n.deleting_dependents));
    assert_eq!(uids(graph.blocking_dependents("d1")), ["rsa"]);
    // Seen again (a relist): nothing starts twice.
    assert!(observe(&mut graph, "Deployment", &owner).is_empty());

    // Both dependents go (background: they have no dependents of their own).
    assert_eq!(
        decide::owner_state(&blocking, Some(&owner)),
        OwnerState::WaitingForDependentsDeletion
    );
    let waiting = [(blocking, OwnerState::WaitingForDependentsDeletion)];
    assert_eq!(
        decide::decide(&[], &waiting, 0, false),
        Decision::Delete(Propagation::Background)
    );
    // The owner looks again when a blocking dependent is gone, and nothing blocks it then.
    assert_eq!(
        graph.observe_deleted(&identity("ReplicaSet", &rs_a)),
        deletes(&["d1"])
    );
    assert!(graph.blocking_dependents("d1").is_empty());
}

#[test]
fn foreground_deletion_covers_dependents_of_dependents() {
    let mut graph = Graph::default();
    let deployment = meta("web", "d1", vec![]);
    let rs_owner = reference("Deployment", "web", "d1", true);
    let rs = meta("web-1", "rs1", vec![rs_owner.clone()]);
    let pod_owner = reference("ReplicaSet", "web-1", "rs1", true);
    let pod = meta("web-1-a", "p1", vec![pod_owner.clone()]);
    observe(&mut graph, "Deployment", &deployment);
    observe(&mut graph, "ReplicaSet", &rs);
    observe(&mut graph, "Pod", &pod);

    let work = observe(
        &mut graph,
        "Deployment",
        &deleting(&deployment, &[FINALIZER_FOREGROUND]),
    );
    assert_eq!(work, deletes(&["rs1", "d1"]));
    // The ReplicaSet has pods: it goes in the foreground too.
    let waiting = [(rs_owner, OwnerState::WaitingForDependentsDeletion)];
    assert_eq!(
        decide::decide(&[], &waiting, 1, false),
        Decision::DeleteForeground {
            unblock_first: false
        }
    );
    let work = observe(
        &mut graph,
        "ReplicaSet",
        &deleting(&rs, &[FINALIZER_FOREGROUND]),
    );
    assert_eq!(work, deletes(&["p1", "rs1"]));
    assert_eq!(uids(graph.blocking_dependents("d1")), ["rs1"]);
    assert_eq!(uids(graph.blocking_dependents("rs1")), ["p1"]);

    // The pod goes; the ReplicaSet's wait ends, then the Deployment's.
    let waiting = [(pod_owner, OwnerState::WaitingForDependentsDeletion)];
    assert_eq!(
        decide::decide(&[], &waiting, 0, false),
        Decision::Delete(Propagation::Background)
    );
    assert_eq!(
        graph.observe_deleted(&identity("Pod", &pod)),
        deletes(&["rs1"])
    );
    assert!(graph.blocking_dependents("rs1").is_empty());
    assert_eq!(
        graph.observe_deleted(&identity("ReplicaSet", &rs)),
        deletes(&["d1"])
    );
    assert!(graph.blocking_dependents("d1").is_empty());
}

#[test]
fn orphaning_starts_once_and_unhooks_the_dependents() {
    let mut graph = Graph::default();
    let owner = meta("web", "d1", vec![]);
    let rs_a = meta(
        "web-a",
        "rsa",
        vec![reference("Deployment", "web", "d1", true)],
    );
    let rs_b = meta(
        "web-b",
        "rsb",
        vec![reference("Deployment", "web", "d1", false)],
    );
    observe(&mut graph, "Deployment", &owner);
    observe(&mut graph, "ReplicaSet", &rs_a);
    observe(&mut graph, "ReplicaSet", &rs_b);

    let owner = deleting(&owner, &[FINALIZER_ORPHAN]);
    assert_eq!(
        observe(&mut graph, "Deployment", &owner),
        vec![Work::Orphan("d1".into())]
    );
    assert!(observe(&mut graph, "Deployment", &owner).is_empty());
    assert_eq!(
        decide::delete_owner_references_patch("rsa", &["d1".to_string()]),
        json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": "d1"}], "uid": "rsa"}})
    );
    // The patched dependents come back without the reference; a blocking one dropped
    // unblocks the owner.
    assert_eq!(
        observe(&mut graph, "ReplicaSet", &meta("web-a", "rsa", vec![])),
        deletes(&["d1"])
    );
    assert!(observe(&mut graph, "ReplicaSet", &meta("web-b", "rsb", vec![])).is_empty());
    assert!(graph.dependents("d1").is_empty());
}

#[test]
fn a_finalizer_is_removed_with_the_resource_version_as_precondition() {
    let mut object = deleting(
        &meta("web", "d1", vec![]),
        &[FINALIZER_ORPHAN, "example.com/keep"],
    );
    object.resource_version = Some("7".into());
    assert_eq!(
        decide::remove_finalizer_patch(&object, FINALIZER_ORPHAN),
        Some(json!({"metadata": {"resourceVersion": "7", "finalizers": ["example.com/keep"]}}))
    );
    object.finalizers = Some(vec![FINALIZER_ORPHAN.into()]);
    assert_eq!(
        decide::remove_finalizer_patch(&object, FINALIZER_ORPHAN),
        Some(json!({"metadata": {"resourceVersion": "7", "finalizers": null}}))
    );
    assert_eq!(
        decide::remove_finalizer_patch(&object, FINALIZER_FOREGROUND),
        None
    );
}

#[test]
fn references_cycles_end() {
    let mut graph = Graph::default();
    let a_to_b = reference("ConfigMap", "b", "b", true);
    let b_to_a = reference("ConfigMap", "a", "a", true);
    let a = meta("a", "a", vec![a_to_b]);
    let b = meta("b", "b", vec![b_to_a.clone()]);
    assert_eq!(observe(&mut graph, "ConfigMap", &a), deletes(&["b"]));
    assert!(observe(&mut graph, "ConfigMap", &b).is_empty());
    assert_eq!(uids(graph.dependents("a")), ["b"]);
    assert_eq!(uids(graph.dependents("b")), ["a"]);

    let a_deleting = deleting(&a, &[FINALIZER_FOREGROUND]);
    assert_eq!(
        observe(&mut graph, "ConfigMap", &a_deleting),
        deletes(&["b", "a"])
    );
    // b's owner waits, and b's dependent (a) deletes its dependents: unblock, then delete.
    let waiting = [(b_to_a.clone(), OwnerState::WaitingForDependentsDeletion)];
    assert_eq!(
        decide::decide(&[], &waiting, 1, true),
        Decision::DeleteForeground {
            unblock_first: true
        }
    );
    let patch = decide::unblock_owner_references_patch("b", std::slice::from_ref(&b_to_a));
    assert_eq!(
        patch,
        Some(json!({"metadata": {"ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "a", "uid": "a",
            "controller": true, "blockOwnerDeletion": false,
        }], "uid": "b"}}))
    );
    // Unblocked, b no longer holds a back.
    let unblocked = reference("ConfigMap", "a", "a", false);
    let b = meta("b", "b", vec![unblocked.clone()]);
    assert_eq!(observe(&mut graph, "ConfigMap", &b), deletes(&["a"]));
    assert!(graph.blocking_dependents("a").is_empty());
    assert_eq!(
        decide::unblock_owner_references_patch("b", &[unblocked]),
        None
    );
    // b in the foreground waits for a, which is already on its way.
    let work = observe(
        &mut graph,
        "ConfigMap",
        &deleting(&b, &[FINALIZER_FOREGROUND]),
    );
    assert_eq!(work, deletes(&["a", "b"]));
    assert!(graph
        .blocking_dependents("b")
        .iter()
        .all(|dependent| dependent.deleting_dependents));
    let work = graph.observe_deleted(&identity("ConfigMap", &a));
    assert!(work.iter().all(|w| *w == Work::Delete("b".into())) && !work.is_empty());
    assert!(graph.blocking_dependents("b").is_empty());
    graph.relisted(&kind("ConfigMap"), &HashSet::new());
    assert!(graph.is_empty());
}

#[test]
fn a_relist_drops_what_went_away_unseen() {
    let mut graph = Graph::default();
    let rs = meta("web-1", "rs1", vec![]);
    let pod_owner = reference("ReplicaSet", "web-1", "rs1", true);
    observe(&mut graph, "ReplicaSet", &rs);
    observe(&mut graph, "Pod", &meta("a", "p1", vec![pod_owner.clone()]));
    observe(&mut graph, "Pod", &meta("b", "p2", vec![pod_owner]));
    let work = graph.relisted(&kind("ReplicaSet"), &HashSet::new());
    assert_eq!(work, deletes(&["p1", "p2"]));
    // Pods listed again keep their place; the relist of another kind leaves them alone.
    let listed = HashSet::from(["p1".to_string()]);
    assert!(graph.relisted(&kind("Pod"), &listed).is_empty());
    assert!(graph.get("p1").is_some() && graph.get("p2").is_none());
}

#[test]
fn decisions_follow_the_owners_states() {
    let solid = reference("Deployment", "a", "u1", true);
    let gone = reference("Deployment", "b", "u2", true);
    let waiting = reference("Deployment", "c", "u3", true);
    assert_eq!(decide::decide(&[], &[], 0, false), Decision::Keep);
    assert_eq!(
        decide::decide(&[], &[(solid.clone(), OwnerState::Solid)], 0, false),
        Decision::Keep
    );
    let mixed = [
        (waiting.clone(), OwnerState::WaitingForDependentsDeletion),
        (solid, OwnerState::Solid),
        (gone.clone(), OwnerState::Dangling),
    ];
    assert_eq!(
        decide::decide(&[], &mixed, 3, true),
        Decision::RemoveReferences(vec!["u2".into(), "u3".into()])
    );
    let dangling = [(gone, OwnerState::Dangling)];
    let with = |finalizer: &str| decide::decide(&[finalizer.to_string()], &dangling, 0, false);
    assert_eq!(
        with(FINALIZER_ORPHAN),
        Decision::Delete(Propagation::Orphan)
    );
    assert_eq!(
        with(FINALIZER_FOREGROUND),
        Decision::Delete(Propagation::Foreground)
    );
    assert_eq!(
        with("example.com/other"),
        Decision::Delete(Propagation::Background)
    );
    let all_waiting = [(waiting, OwnerState::WaitingForDependentsDeletion)];
    assert_eq!(
        decide::decide(&[], &all_waiting, 0, false),
        Decision::Delete(Propagation::Background)
    );
}

#[test]
fn owner_states_read_the_live_owner() {
    let owner = meta("web", "d1", vec![]);
    let named = reference("Deployment", "web", "d1", true);
    assert_eq!(decide::owner_state(&named, None), OwnerState::Dangling);
    assert_eq!(decide::owner_state(&named, Some(&owner)), OwnerState::Solid);
    // Being deleted, but not in the foreground: still an owner.
    let orphaning = deleting(&owner, &[FINALIZER_ORPHAN]);
    assert_eq!(
        decide::owner_state(&named, Some(&orphaning)),
        OwnerState::Solid
    );
}

#[test]
fn the_absent_owner_cache_is_bounded() {
    let mut graph = Graph::default();
    let owner = |n: usize| Identity {
        uid: format!("u{n}"),
        ..Identity::default()
    };
    for n in 0..=ABSENT_OWNER_CACHE_SIZE {
        graph.absent.add(owner(n));
    }
    assert!(!graph.absent.contains(&owner(0)));
    assert!(graph.absent.contains(&owner(1)));
    assert!(graph.absent.contains(&owner(ABSENT_OWNER_CACHE_SIZE)));
}

#[test]
fn owner_references_match_by_group_not_version() {
    let rs = kind("ReplicaSet");
    assert!(rs.is("apps/v1", "ReplicaSet"));
    assert!(rs.is("apps/v1beta2", "ReplicaSet"));
    assert!(!rs.is("v1", "ReplicaSet"));
    assert!(kind("Pod").is("v1", "Pod"));
    assert_eq!(kinds::group_of("v1"), "");
    assert_eq!(kinds::group_of("discovery.k8s.io/v1"), "discovery.k8s.io");
}

mod invalid_namespace;
