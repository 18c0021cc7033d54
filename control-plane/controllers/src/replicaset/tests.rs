//! The cases of kube's `replica_set_test.go`, `replica_set_utils_test.go`,
//! `controller_utils_test.go` and `controller_ref_manager_test.go`, against the pure part.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{
    Container, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::decide::{self, Action, Diff, Input};

mod ordering;
mod status;

const RS_UID: &str = "3f1d1c0e-5c1b-4f59-9a51-0c6d2d2a9b01";

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn now() -> Timestamp {
    "2024-05-01T12:00:00Z".parse().expect("a timestamp")
}

fn ago(seconds: i64) -> Timestamp {
    now()
        .checked_sub(SignedDuration::from_secs(seconds))
        .expect("in range")
}

const MONTH: i64 = 30 * 24 * 3600;
const HOUR: i64 = 3600;

/// kube's `newReplicaSet`: template labels `name=foo,type=production`.
fn replica_set(replicas: i32, selector: &[(&str, &str)]) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some("foobar".into()),
            namespace: Some("default".into()),
            uid: Some(RS_UID.into()),
            resource_version: Some("18".into()),
            ..ObjectMeta::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(selector)),
                ..LabelSelector::default()
            },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&[("name", "foo"), ("type", "production")])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "c".into(),
                        image: Some("foo/bar".into()),
                        ..Container::default()
                    }],
                    node_selector: Some(labels(&[("baz", "blah")])),
                    ..PodSpec::default()
                }),
            }),
            ..ReplicaSetSpec::default()
        },
        status: None,
    }
}

fn ready_condition(since: Option<Timestamp>) -> PodCondition {
    PodCondition {
        type_: "Ready".into(),
        status: "True".into(),
        last_transition_time: since.map(Time),
        ..PodCondition::default()
    }
}

/// kube's `newPod`: the selector's labels; a Running pod is Ready (since `ready_since`).
fn rs_pod(
    name: &str,
    rs: &ReplicaSet,
    phase: &str,
    ready_since: Option<Timestamp>,
    owned: bool,
) -> Pod {
    let owner = OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: "foobar".into(),
        uid: RS_UID.into(),
        controller: Some(true),
        ..OwnerReference::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: rs.metadata.namespace.clone(),
            uid: Some(format!("uid-{name}")),
            labels: rs.spec.selector.match_labels.clone(),
            owner_references: owned.then(|| vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec::default()),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            conditions: (phase == "Running").then(|| vec![ready_condition(ready_since)]),
            ..PodStatus::default()
        }),
    }
}

fn on_node(mut pod: Pod, node: &str) -> Pod {
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = Some(node.into());
    }
    pod
}

fn deleting(mut pod: Pod) -> Pod {
    pod.metadata.deletion_timestamp = Some(Time(now()));
    pod
}

fn names(pods: &[Arc<Pod>]) -> Vec<String> {
    pods.iter()
        .map(|pod| pod.metadata.name.clone().unwrap_or_default())
        .collect()
}

fn shared(pods: Vec<Pod>) -> Vec<Arc<Pod>> {
    pods.into_iter().map(Arc::new).collect()
}

#[test]
fn slow_start_batch_sizes() {
    assert_eq!(decide::slow_start_batches(10, 1), [1, 2, 4, 3]);
    assert_eq!(decide::slow_start_batches(0, 1), Vec::<usize>::new());
    assert_eq!(decide::slow_start_batches(1, 1), [1]);
    assert_eq!(decide::slow_start_batches(7, 1), [1, 2, 4]);
    assert_eq!(
        decide::slow_start_batches(500, 1),
        [1, 2, 4, 8, 16, 32, 64, 128, 245]
    );
    assert_eq!(decide::slow_start_batches(10, 3), [3, 6, 1]);
}

/// Runs `slow_start(count, 1)` with calls failing past `limit`; returns (successes, failed,
/// calls made).
async fn slow_start_with_limit(count: usize, limit: usize) -> (usize, bool, usize) {
    let calls = AtomicUsize::new(0);
    let (successes, error) = decide::slow_start(count, 1, || {
        let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if call > limit {
                Err("fake error")
            } else {
                Ok(())
            }
        }
    })
    .await;
    (successes, error.is_some(), calls.load(Ordering::SeqCst))
}

// TestSlowStartBatch.
#[tokio::test]
async fn slow_start_stops_after_a_failing_batch() {
    // All fail: one call only.
    assert_eq!(slow_start_with_limit(10, 0).await, (0, true, 1));
    // All succeed: 1 + 2 + 4 + 3.
    assert_eq!(slow_start_with_limit(10, 10).await, (10, false, 10));
    // Some succeed: 1 + 2 + 4, the batch of 4 fails partly.
    assert_eq!(slow_start_with_limit(10, 5).await, (5, true, 7));
    // TestSyncReplicaSetCreateFailures: 100 wanted, a quota of 10, far fewer than 100 calls.
    let (successes, failed, calls) = slow_start_with_limit(100, 10).await;
    assert_eq!((successes, failed), (10, true));
    assert!(calls <= 15, "{calls} create calls");
}

// controller_ref_manager_test.go's TestClaimPods, and namespaces.
#[test]
fn claiming_adopts_matching_orphans_and_releases_strays() {
    let rs = replica_set(1, &[("foo", "bar")]);
    let selector = decide::selector_of(&rs).expect("a valid selector");
    let mut other_labels = rs_pod("pod2", &rs, "Running", None, false);
    other_labels.metadata.labels = Some(labels(&[("foo", "bar2")]));
    let orphan = rs_pod("pod1", &rs, "Running", None, false);

    let claim = decide::claim_pods(
        &rs,
        &selector,
        &shared(vec![orphan.clone(), other_labels.clone()]),
    );
    assert_eq!(
        (names(&claim.claimed), names(&claim.adopt)),
        (vec!["pod1".to_string()], vec!["pod1".to_string()])
    );

    // Owned by someone else: untouched, even if it matches.
    let mut foreign = rs_pod("pod3", &rs, "Running", None, true);
    if let Some(owner) = foreign
        .metadata
        .owner_references
        .as_mut()
        .and_then(|refs| refs.first_mut())
    {
        owner.uid = "someone-else".into();
    }
    let claim = decide::claim_pods(&rs, &selector, &shared(vec![foreign]));
    assert!(claim.claimed.is_empty() && claim.release.is_empty());

    // Owned and no longer matching: released.
    let mut stray = rs_pod("pod4", &rs, "Running", None, true);
    stray.metadata.labels = Some(labels(&[("foo", "bar2")]));
    let claim = decide::claim_pods(&rs, &selector, &shared(vec![stray.clone()]));
    assert_eq!(
        (claim.claimed.len(), names(&claim.release)),
        (0, vec!["pod4".to_string()])
    );

    // An orphan being deleted, or in another namespace, is not adopted.
    let mut elsewhere = orphan.clone();
    elsewhere.metadata.namespace = Some("other".into());
    let claim = decide::claim_pods(
        &rs,
        &selector,
        &shared(vec![deleting(orphan.clone()), elsewhere]),
    );
    assert!(claim.claimed.is_empty());

    // A ReplicaSet being deleted keeps what it owns, adopts nothing and releases nothing.
    let mut dying = rs.clone();
    dying.metadata.deletion_timestamp = Some(Time(now()));
    let owned = rs_pod("pod5", &rs, "Running", None, true);
    let claim = decide::claim_pods(&dying, &selector, &shared(vec![owned, orphan, stray]));
    assert_eq!(names(&claim.claimed), ["pod5"]);
    assert!(claim.adopt.is_empty() && claim.release.is_empty());
}

fn input<'a>(rs: &'a ReplicaSet, pods: &'a [Arc<Pod>]) -> Input<'a> {
    Input {
        replica_set: rs,
        pods,
        related_pods: pods,
        expectations_satisfied: true,
        burst_replicas: decide::BURST_REPLICAS,
        now: now(),
    }
}

fn owned_pods(rs: &ReplicaSet, count: usize, phase: &str) -> Vec<Pod> {
    (0..count)
        .map(|i| rs_pod(&format!("pod{i}"), rs, phase, Some(ago(HOUR)), true))
        .collect()
}

// TestSyncReplicaSetDoesNothing, …Deletes, …Creates, burst, dormancy.
#[test]
fn a_sync_creates_or_deletes_toward_spec_replicas() {
    let rs = replica_set(2, &[("foo", "bar")]);
    let action = |rs: &ReplicaSet, pods: Vec<Pod>| {
        let pods = shared(pods);
        decide::decide(&input(rs, &pods)).expect("valid").action
    };
    assert!(matches!(
        action(&rs, owned_pods(&rs, 2, "Running")),
        Action::Nothing
    ));
    assert!(matches!(action(&rs, vec![]), Action::Create { count: 2 }));
    match action(&rs, owned_pods(&rs, 3, "Running")) {
        Action::Delete { victims } => assert_eq!(victims.len(), 1),
        other => panic!("expected a deletion, got {other:?}"),
    }
    // At most burstReplicas per sync.
    assert!(matches!(
        action(&replica_set(1000, &[("foo", "bar")]), vec![]),
        Action::Create { count: 500 }
    ));
    assert_eq!(
        decide::replica_diff(&replica_set(0, &[]), 600, 500),
        Diff::Delete(500)
    );
    // Finished pods are not replicas; a pod being deleted is replaced at once.
    let mut pods = owned_pods(&rs, 1, "Running");
    pods.push(rs_pod("failed", &rs, "Failed", None, true));
    pods.push(rs_pod("succeeded", &rs, "Succeeded", None, true));
    assert!(matches!(action(&rs, pods), Action::Create { count: 1 }));
    let mut pods = owned_pods(&rs, 2, "Running");
    pods[0] = deleting(pods[0].clone());
    assert!(matches!(action(&rs, pods), Action::Create { count: 1 }));
    // A matching orphan counts (it is adopted); an owned pod that no longer matches does not.
    let mut pods = owned_pods(&rs, 1, "Running");
    pods.push(rs_pod("orphan", &rs, "Running", None, false));
    assert!(matches!(action(&rs, pods), Action::Nothing));
    let mut pods = owned_pods(&rs, 2, "Running");
    pods[1].metadata.labels = Some(labels(&[("foo", "other")]));
    assert!(matches!(action(&rs, pods), Action::Create { count: 1 }));
}

// TestSyncReplicaSetDormancy: waiting for expectations, or being deleted, only status moves.
#[test]
fn unmet_expectations_or_deletion_hold_creates_back() {
    let rs = replica_set(2, &[("foo", "bar")]);
    let pods = shared(owned_pods(&rs, 1, "Running"));
    let mut waiting = input(&rs, &pods);
    waiting.expectations_satisfied = false;
    let decision = decide::decide(&waiting).expect("valid");
    assert!(matches!(decision.action, Action::Nothing));
    assert_eq!(decision.status.replicas, 1);
    let mut dying = rs.clone();
    dying.metadata.deletion_timestamp = Some(Time(now()));
    assert!(matches!(
        decide::decide(&input(&dying, &pods)).expect("valid").action,
        Action::Nothing
    ));
}

// TestGetPodsToDelete.
#[test]
fn victims_are_the_least_valuable_pods() {
    let rs = replica_set(1, &[("name", "foo")]);
    let unscheduled_pending = rs_pod("unscheduled-pending", &rs, "Pending", None, true);
    let scheduled_pending = on_node(
        rs_pod("scheduled-pending", &rs, "Pending", None, true),
        "fake-node",
    );
    let mut not_ready = on_node(
        rs_pod("running-not-ready", &rs, "Running", None, true),
        "fake-node",
    );
    if let Some(status) = not_ready.status.as_mut() {
        status.conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "False".into(),
            ..PodCondition::default()
        }]);
    }
    let ready_1 = on_node(
        rs_pod("ready-on-node-1", &rs, "Running", None, true),
        "fake-node-1",
    );
    let ready_2 = on_node(
        rs_pod("ready-on-node-2", &rs, "Running", None, true),
        "fake-node-2",
    );
    let all = shared(vec![
        ready_2.clone(),
        ready_1.clone(),
        not_ready.clone(),
        scheduled_pending,
        unscheduled_pending,
    ]);
    let victims = |pods: &[Arc<Pod>], related: &[Arc<Pod>], count| {
        names(&decide::pods_to_delete(pods, related, count, now()))
    };

    assert!(victims(&[], &[], 0).is_empty());
    assert_eq!(victims(&all, &all, 5).len(), 5);
    assert_eq!(victims(&all, &all, 1), ["unscheduled-pending"]);
    assert_eq!(
        victims(&all, &all, 3),
        [
            "unscheduled-pending",
            "scheduled-pending",
            "running-not-ready"
        ]
    );
    let pair = shared(vec![ready_1.clone(), not_ready.clone()]);
    assert_eq!(victims(&pair, &pair, 1), ["running-not-ready"]);
    // Among ready pods, the one doubled up with a related pod goes first.
    let pair = shared(vec![ready_1.clone(), ready_2.clone()]);
    let mut related = pair.clone();
    related.push(Arc::new(on_node(
        rs_pod("related-on-node-2", &rs, "Running", None, true),
        "fake-node-2",
    )));
    assert_eq!(victims(&pair, &related, 1), ["ready-on-node-2"]);
    let mut related = pair.clone();
    related.push(Arc::new(on_node(
        rs_pod("related-on-node-1", &rs, "Running", None, true),
        "fake-node-1",
    )));
    assert_eq!(victims(&pair, &related, 1), ["ready-on-node-1"]);
}

#[test]
fn pods_are_made_from_the_template() {
    let mut rs = replica_set(1, &[("name", "foo")]);
    if let Some(meta) = rs
        .spec
        .template
        .as_mut()
        .and_then(|template| template.metadata.as_mut())
    {
        meta.annotations = Some(labels(&[("a", "b")]));
        meta.finalizers = Some(vec!["example.com/f".into()]);
        meta.name = Some("ignored".into());
    }
    let pod = decide::pod_from_template(&rs);
    let template = rs.spec.template.clone().unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    assert_eq!(pod.metadata.generate_name.as_deref(), Some("foobar-"));
    assert_eq!(pod.metadata.name, None);
    assert_eq!(pod.metadata.labels, meta.labels);
    assert_eq!(pod.metadata.annotations, meta.annotations);
    assert_eq!(pod.metadata.finalizers, meta.finalizers);
    assert_eq!(pod.spec, template.spec);
    let owner = OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: "foobar".into(),
        uid: RS_UID.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    assert_eq!(pod.metadata.owner_references, Some(vec![owner]));
    // A name that leaves no room for the dash is used bare.
    rs.metadata.name = Some("a".repeat(253));
    assert_eq!(
        decide::pod_from_template(&rs).metadata.generate_name,
        rs.metadata.name
    );
    rs.metadata.name = Some("a".repeat(252));
    assert_eq!(
        decide::pod_from_template(&rs)
            .metadata
            .generate_name
            .map(|n| n.len()),
        Some(253)
    );
}

// TestPodControllerLookup.
#[test]
fn orphans_are_offered_to_the_replicasets_selecting_them() {
    let with = |name: &str, namespace: &str, selector: &[(&str, &str)]| {
        let mut rs = replica_set(1, selector);
        rs.metadata.name = Some(name.into());
        rs.metadata.namespace = Some(namespace.into());
        Arc::new(rs)
    };
    let pod = |namespace: &str, pod_labels: &[(&str, &str)]| Pod {
        metadata: ObjectMeta {
            name: Some("pod".into()),
            namespace: Some(namespace.into()),
            labels: Some(labels(pod_labels)),
            ..ObjectMeta::default()
        },
        ..Pod::default()
    };
    let found = |rss: &[Arc<ReplicaSet>], pod: &Pod| {
        decide::replicasets_selecting(rss, pod)
            .iter()
            .map(|rs| rs.metadata.name.clone().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    let foo_bar = [("foo", "bar")];
    // Without labels, in another namespace, or before an empty selector: nobody.
    assert!(found(&[with("basic", "ns", &foo_bar)], &pod("ns", &[])).is_empty());
    assert!(found(&[with("foo", "other", &foo_bar)], &pod("ns", &foo_bar)).is_empty());
    assert!(found(&[with("all", "ns", &[])], &pod("ns", &foo_bar)).is_empty());
    assert_eq!(
        found(&[with("bar", "ns", &foo_bar)], &pod("ns", &foo_bar)),
        ["bar"]
    );
}

/// The events `RealPodControl` records around creates and deletes.
mod recorded_events {
    use keel_events::EventType;

    use crate::api_errors::{refused, refused_terminating};
    use crate::replicaset::events;

    #[test]
    fn creates_are_recorded_as_kube_words_them() {
        let created = events::created("web-5d9f-abcde");
        assert_eq!(created.type_, EventType::Normal);
        assert_eq!(created.reason, "SuccessfulCreate");
        assert_eq!(created.message, "Created pod: web-5d9f-abcde");
        let quota = refused(
            403,
            "Forbidden",
            "pods \"web-5d9f-x\" is forbidden: exceeded quota: q",
        );
        let failed = events::create_failed(&quota).expect("a Warning");
        assert_eq!(failed.type_, EventType::Warning);
        assert_eq!(failed.reason, "FailedCreate");
        assert_eq!(
            failed.message,
            "Error creating: pods \"web-5d9f-x\" is forbidden: exceeded quota: q"
        );
        // Every create fails in a namespace being deleted: kube stays silent.
        assert_eq!(events::create_failed(&refused_terminating()), None);
    }

    #[test]
    fn deletes_are_recorded_unless_the_pod_was_gone() {
        let deleted = events::deleted("web-1");
        assert_eq!(deleted.type_, EventType::Normal);
        assert_eq!(deleted.reason, "SuccessfulDelete");
        assert_eq!(deleted.message, "Deleted pod: web-1");
        assert_eq!(
            events::delete_failed(&refused(404, "NotFound", "pods \"web-1\" not found")),
            None
        );
        // The uid precondition failed: a namesake, not ours to count.
        assert_eq!(
            events::delete_failed(&refused(409, "Conflict", "uid mismatch")),
            None
        );
        let failed = events::delete_failed(&refused(500, "InternalError", "etcd timed out"))
            .expect("a Warning");
        assert_eq!(failed.type_, EventType::Warning);
        assert_eq!(failed.reason, "FailedDelete");
        assert_eq!(failed.message, "Error deleting: etcd timed out");
    }
}
