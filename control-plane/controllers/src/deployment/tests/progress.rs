//! `progress_test.go`: the deadline's requeue and the rollout status; the status counts and
//! pausing.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus, DeploymentStrategy,
    ReplicaSet, ReplicaSetCondition, ReplicaSetStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::super::progress::{
    self, Requeue, AVAILABLE, FALSE, NEW_RS_AVAILABLE_REASON, PAUSED_DEPLOY_REASON, PROGRESSING,
    REPLICA_FAILURE, REPLICA_SET_UPDATED_REASON, RESUMED_DEPLOY_REASON, TIMED_OUT_REASON, TRUE,
    UNKNOWN,
};
use super::{at, int, new_deployment, rs, rs_with_available};

pub(super) fn condition(
    kind: &str,
    status: &str,
    reason: &str,
    time: Option<Timestamp>,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: Some(kind.to_string()),
        status: Some(status.to_string()),
        reason: Some(reason.to_string()),
        last_update_time: time.map(Time),
        last_transition_time: time.map(Time),
        message: None,
    }
}

pub(super) fn counts(replicas: i32, updated: i32, available: i32) -> DeploymentStatus {
    DeploymentStatus {
        replicas: Some(replicas),
        updated_replicas: Some(updated),
        available_replicas: Some(available),
        ..DeploymentStatus::default()
    }
}

/// kube's `currentDeployment`: a Recreate Deployment with a status.
pub(super) fn current(
    deadline: Option<i32>,
    replicas: i32,
    status: DeploymentStatus,
    conditions: Vec<DeploymentCondition>,
) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("progress-test".to_string()),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            progress_deadline_seconds: deadline,
            replicas: Some(replicas),
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_string()),
                rolling_update: None,
            }),
            ..DeploymentSpec::default()
        },
        status: Some(DeploymentStatus {
            conditions: Some(conditions),
            ..status
        }),
    }
}

// TestRequeueStuckDeployment
#[test]
fn stuck_rollouts_are_looked_at_when_their_deadline_passes() {
    let failed = vec![condition(PROGRESSING, FALSE, TIMED_OUT_REASON, None)];
    let stuck = vec![condition(
        PROGRESSING,
        TRUE,
        "",
        Some(at("2017-02-15T18:49:00Z")),
    )];
    let pds = Some(60);
    let some_time = at("2017-02-15T18:49:30Z");
    let cases = [
        (
            "no deadline",
            current(None, 4, counts(3, 3, 2), vec![]),
            counts(3, 3, 2),
            some_time,
            Requeue::Never,
        ),
        (
            "no progressing condition",
            current(pds, 4, counts(3, 3, 2), vec![]),
            counts(3, 3, 2),
            some_time,
            Requeue::Never,
        ),
        (
            "complete",
            current(pds, 3, counts(3, 3, 3), vec![]),
            counts(3, 3, 3),
            some_time,
            Requeue::Never,
        ),
        (
            "already failed",
            current(pds, 3, counts(3, 3, 0), failed),
            counts(3, 3, 0),
            some_time,
            Requeue::Never,
        ),
        (
            "stuck - 30s",
            current(pds, 3, counts(3, 3, 1), stuck.clone()),
            counts(3, 3, 1),
            some_time,
            Requeue::After(Duration::from_secs(30)),
        ),
        (
            "stuck - 1s",
            current(pds, 3, counts(3, 3, 1), stuck.clone()),
            counts(3, 3, 1),
            at("2017-02-15T18:49:59Z"),
            Requeue::After(Duration::from_secs(1)),
        ),
        (
            "less than a second",
            current(pds, 3, counts(3, 3, 1), stuck.clone()),
            counts(3, 3, 1),
            at("2017-02-15T18:49:59.000000001Z"),
            Requeue::Now,
        ),
        (
            "now",
            current(pds, 3, counts(3, 3, 1), stuck.clone()),
            counts(3, 3, 1),
            at("2017-02-15T18:50:00Z"),
            Requeue::Now,
        ),
        (
            "1s after",
            current(pds, 3, counts(3, 3, 1), stuck.clone()),
            counts(3, 3, 1),
            at("2017-02-15T18:50:01Z"),
            Requeue::Now,
        ),
        (
            "60s after",
            current(pds, 3, counts(3, 3, 1), stuck),
            counts(3, 3, 1),
            at("2017-02-15T18:51:00Z"),
            Requeue::Now,
        ),
    ];
    for (name, d, status, now, expected) in cases {
        assert_eq!(
            progress::requeue_stuck_deployment(&d, &status, now),
            expected,
            "{name}"
        );
    }
}

fn named(mut rs: ReplicaSet, name: &str) -> ReplicaSet {
    rs.metadata.name = Some(name.to_string());
    rs
}

// TestSyncRolloutStatus
#[test]
fn rollout_status_as_kube() {
    let test_time = at("2017-02-15T18:49:00Z");
    let now = at("2024-01-01T00:00:00Z");
    let pds = Some(60);
    let failed = condition(PROGRESSING, FALSE, TIMED_OUT_REASON, None);
    let available = condition(PROGRESSING, TRUE, NEW_RS_AVAILABLE_REASON, Some(test_time));
    let updated = condition(
        PROGRESSING,
        TRUE,
        REPLICA_SET_UPDATED_REASON,
        Some(test_time),
    );
    let bar = || named(rs_with_available("bar", 0, 1, 1), "bar");
    // (name, deployment, other ReplicaSets, new one, expected condition (status, reason),
    //  expected update time, expected transition time)
    type Case = (
        &'static str,
        Deployment,
        Vec<ReplicaSet>,
        Option<ReplicaSet>,
        Option<(&'static str, &'static str)>,
        Option<Timestamp>,
        Option<Timestamp>,
    );
    let cases: Vec<Case> = vec![
        (
            "no deadline: no Progressing condition",
            current(None, 3, counts(2, 2, 2), vec![updated.clone()]),
            vec![bar()],
            Some(rs_with_available("foo", 3, 2, 2)),
            None,
            None,
            None,
        ),
        (
            "one active ReplicaSet: no estimate",
            current(pds, 3, counts(3, 3, 3), vec![available.clone()]),
            vec![rs_with_available("bar", 3, 3, 3)],
            None,
            Some((TRUE, NEW_RS_AVAILABLE_REASON)),
            Some(test_time),
            Some(test_time),
        ),
        (
            "progressing, was True: transition kept",
            current(pds, 3, counts(2, 2, 2), vec![updated.clone()]),
            vec![bar()],
            Some(rs_with_available("foo", 3, 2, 2)),
            Some((TRUE, REPLICA_SET_UPDATED_REASON)),
            Some(now),
            Some(test_time),
        ),
        (
            "progressing, was False: all new",
            current(pds, 3, counts(2, 2, 2), vec![failed.clone()]),
            vec![bar()],
            Some(rs_with_available("foo", 3, 2, 2)),
            Some((TRUE, REPLICA_SET_UPDATED_REASON)),
            Some(now),
            Some(now),
        ),
        (
            "progressing, none before",
            current(pds, 3, counts(2, 2, 2), vec![]),
            vec![bar()],
            Some(rs_with_available("foo", 3, 2, 2)),
            Some((TRUE, REPLICA_SET_UPDATED_REASON)),
            Some(now),
            Some(now),
        ),
        (
            "complete, was True: transition kept",
            current(pds, 3, counts(2, 2, 2), vec![updated.clone()]),
            vec![],
            Some(rs_with_available("foo", 3, 3, 3)),
            Some((TRUE, NEW_RS_AVAILABLE_REASON)),
            Some(now),
            Some(test_time),
        ),
        (
            "complete, was False: all new",
            current(pds, 3, counts(2, 2, 2), vec![failed.clone()]),
            vec![],
            Some(rs_with_available("foo", 3, 3, 3)),
            Some((TRUE, NEW_RS_AVAILABLE_REASON)),
            Some(now),
            Some(now),
        ),
        (
            "complete, none before",
            current(pds, 3, counts(2, 2, 2), vec![]),
            vec![],
            Some(rs_with_available("foo", 3, 3, 3)),
            Some((TRUE, NEW_RS_AVAILABLE_REASON)),
            Some(now),
            Some(now),
        ),
        (
            "complete without a new ReplicaSet",
            current(pds, 0, counts(3, 3, 3), vec![updated.clone()]),
            vec![rs_with_available("foo", 0, 0, 0)],
            None,
            Some((TRUE, NEW_RS_AVAILABLE_REASON)),
            Some(now),
            Some(test_time),
        ),
        (
            "past the deadline",
            current(pds, 3, counts(2, 2, 2), vec![updated]),
            vec![],
            Some(rs_with_available("foo", 3, 2, 2)),
            Some((FALSE, TIMED_OUT_REASON)),
            Some(now),
            Some(now),
        ),
        (
            "timed out already: unchanged",
            current(pds, 3, counts(2, 2, 2), vec![failed]),
            vec![],
            Some(rs_with_available("foo", 3, 2, 2)),
            Some((FALSE, TIMED_OUT_REASON)),
            None,
            None,
        ),
    ];
    for (name, d, others, new_rs, expected, update, transition) in cases {
        let mut all: Vec<&ReplicaSet> = others.iter().collect();
        all.extend(new_rs.as_ref());
        let status = progress::rollout_status(&all, new_rs.as_ref(), &d, now);
        let got = progress::get_condition(&status, PROGRESSING);
        match expected {
            None => assert!(got.is_none(), "{name}: {got:?}"),
            Some((expected_status, reason)) => {
                let got = got.cloned().unwrap_or_default();
                assert_eq!(got.status.as_deref(), Some(expected_status), "{name}");
                assert_eq!(got.reason.as_deref(), Some(reason), "{name}");
                assert_eq!(got.last_update_time, update.map(Time), "{name}");
                assert_eq!(got.last_transition_time, transition.map(Time), "{name}");
            }
        }
    }
}

#[test]
fn rollout_messages_name_the_new_replica_set() {
    let now = at("2024-01-01T00:00:00Z");
    let d = current(Some(600), 3, counts(2, 2, 2), vec![]);
    let new_rs = named(rs_with_available("web-5d4f", 3, 3, 3), "web-5d4f");
    let status = progress::rollout_status(&[&new_rs], Some(&new_rs), &d, now);
    let got = progress::get_condition(&status, PROGRESSING)
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        got.message.as_deref(),
        Some("ReplicaSet \"web-5d4f\" has successfully progressed.")
    );
    let status = progress::rollout_status(
        &[],
        None,
        &current(Some(600), 0, counts(1, 0, 0), vec![]),
        now,
    );
    let got = progress::get_condition(&status, PROGRESSING)
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        got.message.as_deref(),
        Some("Deployment \"progress-test\" has successfully progressed.")
    );
}

#[test]
fn status_counts_the_replica_sets() {
    let now = at("2024-01-01T00:00:00Z");
    let mut d = new_deployment("foo", 4, None, Some(int(1)), Some(int(1)), &[]);
    d.metadata.generation = Some(3);
    d.status = Some(DeploymentStatus {
        collision_count: Some(2),
        ..DeploymentStatus::default()
    });
    let mut old = rs("old", 2, &[], None);
    old.status = Some(ReplicaSetStatus {
        replicas: 3,
        ready_replicas: Some(3),
        available_replicas: Some(2),
        terminating_replicas: Some(1),
        observed_generation: Some(1),
        ..ReplicaSetStatus::default()
    });
    let mut new_rs = rs("new", 3, &[], None);
    new_rs.status = Some(ReplicaSetStatus {
        replicas: 2,
        ready_replicas: Some(1),
        available_replicas: Some(1),
        terminating_replicas: Some(0),
        observed_generation: Some(1),
        conditions: Some(vec![ReplicaSetCondition {
            type_: Some(REPLICA_FAILURE.to_string()),
            status: Some(TRUE.to_string()),
            reason: Some("FailedCreate".to_string()),
            message: Some("quota".to_string()),
            last_transition_time: Some(Time(now)),
        }]),
        ..ReplicaSetStatus::default()
    });
    let status = progress::rollout_status(&[&old, &new_rs], Some(&new_rs), &d, now);
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(status.replicas, Some(5));
    assert_eq!(status.updated_replicas, Some(2));
    assert_eq!(status.ready_replicas, Some(4));
    assert_eq!(status.available_replicas, Some(3));
    // 5 wanted, 3 available.
    assert_eq!(status.unavailable_replicas, Some(2));
    assert_eq!(status.terminating_replicas, Some(1));
    assert_eq!(status.collision_count, Some(2));
    // 3 available of 4 with maxUnavailable 1.
    let available = progress::get_condition(&status, AVAILABLE)
        .cloned()
        .unwrap_or_default();
    assert_eq!(available.status.as_deref(), Some(TRUE));
    assert_eq!(
        available.message.as_deref(),
        Some("Deployment has minimum availability.")
    );
    let failure = progress::get_condition(&status, REPLICA_FAILURE)
        .cloned()
        .unwrap_or_default();
    assert_eq!(failure.message.as_deref(), Some("quota"));
    assert_eq!(failure.last_update_time, Some(Time(now)));
    // Written once, the same again is no change.
    let mut written = d.clone();
    written.status = Some(status.clone());
    assert!(progress::status_equal(written.status.as_ref(), &status));
    let mut zeros = status.clone();
    zeros.conditions = None;
    let mut explicit = zeros.clone();
    explicit.ready_replicas = None;
    zeros.ready_replicas = Some(0);
    assert!(progress::status_equal(Some(&zeros), &explicit));
}

#[test]
fn pausing_and_resuming_are_recorded() {
    let now = at("2024-01-01T00:00:00Z");
    let mut d = current(Some(600), 1, counts(1, 1, 1), vec![]);
    d.spec.paused = Some(true);
    assert!(progress::check_paused_conditions(&mut d, now));
    let reason = |d: &Deployment| {
        let status = d.status.clone().unwrap_or_default();
        progress::get_condition(&status, PROGRESSING).and_then(|c| c.reason.clone())
    };
    assert_eq!(reason(&d).as_deref(), Some(PAUSED_DEPLOY_REASON));
    let paused = progress::get_condition(
        d.status.as_ref().unwrap_or(&DeploymentStatus::default()),
        PROGRESSING,
    )
    .and_then(|c| c.status.clone());
    assert_eq!(paused.as_deref(), Some(UNKNOWN));
    assert!(
        !progress::check_paused_conditions(&mut d, now),
        "recorded once"
    );
    d.spec.paused = Some(false);
    assert!(progress::check_paused_conditions(&mut d, now));
    assert_eq!(reason(&d).as_deref(), Some(RESUMED_DEPLOY_REASON));
    // A timed-out rollout keeps saying so; without a deadline nothing is recorded.
    let mut timed_out = current(
        Some(600),
        1,
        counts(1, 1, 1),
        vec![condition(PROGRESSING, FALSE, TIMED_OUT_REASON, None)],
    );
    timed_out.spec.paused = Some(true);
    assert!(!progress::check_paused_conditions(&mut timed_out, now));
    let mut no_deadline = current(None, 1, counts(1, 1, 1), vec![]);
    no_deadline.spec.paused = Some(true);
    assert!(!progress::check_paused_conditions(&mut no_deadline, now));
}
