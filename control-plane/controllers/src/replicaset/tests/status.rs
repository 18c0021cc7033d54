//! Status as kube computes it: `TestCalculateStatus`, `TestCalculateStatusConditions`
//! (replica_set_utils_test.go), the steady-state check, and availability requeues.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::super::decide;
use super::{ago, deleting, now, owned_pods, replica_set, rs_pod, shared};

fn counts(
    replicas: i32,
    fully: i32,
    ready: i32,
    available: i32,
    terminating: i32,
) -> ReplicaSetStatus {
    let nonzero = |n: i32| (n != 0).then_some(n);
    ReplicaSetStatus {
        replicas,
        fully_labeled_replicas: nonzero(fully),
        ready_replicas: nonzero(ready),
        available_replicas: nonzero(available),
        terminating_replicas: Some(terminating),
        ..ReplicaSetStatus::default()
    }
}

// TestCalculateStatus (DeploymentReplicaSetTerminatingReplicas on).
#[test]
fn status_counts_as_kube_does() {
    let full = [("name", "foo"), ("type", "production")];
    let not_fully = replica_set(1, &[("name", "foo")]);
    let fully = replica_set(2, &full);
    let mut long_min_ready = replica_set(1, &full);
    long_min_ready.spec.min_ready_seconds = Some(3600);
    let running = |name: &str, rs: &ReplicaSet| rs_pod(name, rs, "Running", None, true);
    #[expect(
        clippy::type_complexity,
        reason = "a table of cases reads best with its types inline"
    )]
    let cases: Vec<(&str, &ReplicaSet, Vec<Pod>, Vec<Pod>, ReplicaSetStatus)> = vec![
        (
            "1 fully labelled pod",
            &fully,
            vec![running("pod1", &fully)],
            vec![],
            counts(1, 1, 1, 1, 0),
        ),
        (
            "1 not fully labelled pod",
            &not_fully,
            vec![running("pod1", &not_fully)],
            vec![],
            counts(1, 0, 1, 1, 0),
        ),
        (
            "2 fully labelled pods",
            &fully,
            vec![running("pod1", &fully), running("pod2", &fully)],
            vec![],
            counts(2, 2, 2, 2, 0),
        ),
        (
            "2 not fully labelled pods",
            &not_fully,
            vec![running("pod1", &not_fully), running("pod2", &not_fully)],
            vec![],
            counts(2, 0, 2, 2, 0),
        ),
        (
            "1 fully, 1 not fully labelled",
            &not_fully,
            vec![running("pod1", &not_fully), running("pod2", &fully)],
            vec![],
            counts(2, 1, 2, 2, 0),
        ),
        (
            "1 non-ready pod",
            &fully,
            vec![rs_pod("pod1", &fully, "Pending", None, true)],
            vec![],
            counts(1, 1, 0, 0, 0),
        ),
        (
            "1 ready but non-available pod",
            &long_min_ready,
            vec![running("pod1", &long_min_ready)],
            vec![],
            counts(1, 1, 1, 0, 0),
        ),
        (
            "1 fully labelled pod and 2 terminating",
            &fully,
            vec![running("pod1", &fully)],
            vec![
                deleting(running("pod2", &fully)),
                deleting(running("pod3", &fully)),
            ],
            counts(1, 1, 1, 1, 2),
        ),
    ];
    for (name, rs, active, terminating, want) in cases {
        let got = decide::calculate_status(rs, &shared(active), terminating.len(), None, now());
        assert_eq!(got, want, "{name}");
    }
}

// TestCalculateStatusConditions.
#[test]
fn replica_failure_condition() {
    let rs = replica_set(2, &[("name", "foo")]);
    let mut failing = replica_set(10, &[("name", "foo")]);
    failing.status = Some(ReplicaSetStatus {
        conditions: Some(vec![ReplicaSetCondition {
            type_: Some("ReplicaFailure".into()),
            status: Some("True".into()),
            ..ReplicaSetCondition::default()
        }]),
        ..ReplicaSetStatus::default()
    });
    let pods = |rs: &ReplicaSet, n: usize| shared(owned_pods(rs, n, "Running"));
    let condition = |reason: &str| ReplicaSetCondition {
        type_: Some("ReplicaFailure".into()),
        status: Some("True".into()),
        reason: Some(reason.into()),
        message: Some("fake manageReplicasErr".into()),
        last_transition_time: Some(Time(now())),
    };
    let error = Some("fake manageReplicasErr");
    let conditions = |rs: &ReplicaSet, n, error| {
        decide::calculate_status(rs, &pods(rs, n), 0, error, now()).conditions
    };
    assert_eq!(
        conditions(&rs, 1, error),
        Some(vec![condition("FailedCreate")])
    );
    assert_eq!(
        conditions(&rs, 3, error),
        Some(vec![condition("FailedDelete")])
    );
    assert_eq!(conditions(&failing, 1, None), None);
    // A failure already reported stays as it was.
    let kept = failing
        .status
        .as_ref()
        .and_then(|status| status.conditions.clone());
    assert_eq!(conditions(&failing, 1, error), kept);
    assert_eq!(conditions(&rs, 1, None), None);
}

#[test]
fn status_is_written_only_when_it_changed() {
    let mut rs = replica_set(1, &[("name", "foo")]);
    rs.metadata.generation = Some(3);
    let pods = shared(owned_pods(&rs, 1, "Running"));
    let mut status = decide::calculate_status(&rs, &pods, 0, None, now());
    assert!(decide::status_needs_update(&rs, &status));
    status.observed_generation = Some(3);
    rs.status = Some(status.clone());
    assert!(!decide::status_needs_update(
        &rs,
        &decide::calculate_status(&rs, &pods, 0, None, now())
    ));
    // A new generation is observed even with the same counts.
    rs.metadata.generation = Some(4);
    assert!(decide::status_needs_update(
        &rs,
        &decide::calculate_status(&rs, &pods, 0, None, now())
    ));
    rs.metadata.generation = Some(3);
    assert!(decide::status_needs_update(
        &rs,
        &decide::calculate_status(&rs, &pods, 1, None, now())
    ));
}

#[test]
fn availability_is_checked_again_when_due() {
    let mut rs = replica_set(2, &[("name", "foo")]);
    let pods = shared(vec![
        rs_pod("a", &rs, "Running", Some(ago(4)), true),
        rs_pod("b", &rs, "Running", Some(ago(7)), true),
    ]);
    assert_eq!(decide::next_availability_check(&rs, &pods, now()), None);
    rs.spec.min_ready_seconds = Some(10);
    // "b" is available 3 s from now, plus kube's second.
    assert_eq!(
        decide::next_availability_check(&rs, &pods, now()),
        Some(Duration::from_secs(4))
    );
    rs.spec.min_ready_seconds = Some(5);
    assert_eq!(
        decide::next_availability_check(&rs, &pods, now()),
        Some(Duration::from_secs(2))
    );
    rs.spec.min_ready_seconds = Some(3);
    assert_eq!(decide::next_availability_check(&rs, &pods, now()), None);
}
