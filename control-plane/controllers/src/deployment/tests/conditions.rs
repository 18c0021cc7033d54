//! The condition cases of `deployment_util_test.go`: setting and removing conditions,
//! completion, progress and the deadline.

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentStatus, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::super::progress::{
    self, AVAILABLE, FALSE, NEW_RS_AVAILABLE_REASON, PROGRESSING, REPLICA_FAILURE, TRUE,
};
use super::progress::{condition, counts, current};
use super::{at, int, new_deployment};

// TestGetCondition, TestSetCondition, TestRemoveCondition
#[test]
fn conditions_are_set_and_removed_as_kube() {
    let progressing = condition(PROGRESSING, FALSE, "ForSomeReason", None);
    let progressing2 = condition(PROGRESSING, TRUE, "BecauseItIs", None);
    let available = condition(AVAILABLE, TRUE, "AwesomeController", None);
    let both = DeploymentStatus {
        conditions: Some(vec![progressing.clone(), available.clone()]),
        ..DeploymentStatus::default()
    };
    assert!(progress::get_condition(&both, AVAILABLE).is_some());
    assert!(progress::get_condition(&both, REPLICA_FAILURE).is_none());

    let mut status = DeploymentStatus::default();
    progress::set_condition(&mut status, available.clone());
    assert_eq!(status.conditions, Some(vec![available.clone()]));
    let mut status = DeploymentStatus {
        conditions: Some(vec![progressing.clone()]),
        ..DeploymentStatus::default()
    };
    progress::set_condition(&mut status, available.clone());
    assert_eq!(status, both);
    let mut status = DeploymentStatus {
        conditions: Some(vec![progressing.clone()]),
        ..DeploymentStatus::default()
    };
    progress::set_condition(&mut status, progressing2.clone());
    assert_eq!(status.conditions, Some(vec![progressing2]));

    let mut status = DeploymentStatus::default();
    progress::remove_condition(&mut status, PROGRESSING);
    assert_eq!(status, DeploymentStatus::default());
    let mut status = DeploymentStatus {
        conditions: Some(vec![progressing]),
        ..DeploymentStatus::default()
    };
    progress::remove_condition(&mut status, PROGRESSING);
    assert_eq!(status, DeploymentStatus::default());
    let mut status = both.clone();
    progress::remove_condition(&mut status, REPLICA_FAILURE);
    assert_eq!(status, both);
}

#[test]
fn a_condition_with_the_same_status_keeps_its_transition_time() {
    let then = at("2024-01-01T00:00:00Z");
    let now = at("2024-01-01T01:00:00Z");
    let mut status = DeploymentStatus {
        conditions: Some(vec![condition(PROGRESSING, TRUE, "A", Some(then))]),
        ..DeploymentStatus::default()
    };
    progress::set_condition(
        &mut status,
        progress::new_condition(PROGRESSING, TRUE, "B", "m", now),
    );
    let got = progress::get_condition(&status, PROGRESSING)
        .cloned()
        .unwrap_or_default();
    assert_eq!(got.last_transition_time, Some(Time(then)));
    assert_eq!(got.last_update_time, Some(Time(now)));
    assert_eq!(got.message.as_deref(), Some("m"));
}

fn rolling(
    desired: i32,
    status: DeploymentStatus,
    max_unavailable: i32,
    max_surge: i32,
) -> Deployment {
    let mut d = new_deployment(
        "foo",
        desired,
        None,
        Some(int(max_surge)),
        Some(int(max_unavailable)),
        &[],
    );
    d.spec.strategy = Some(DeploymentStrategy {
        type_: Some("RollingUpdate".to_string()),
        rolling_update: Some(RollingUpdateDeployment {
            max_unavailable: Some(int(max_unavailable)),
            max_surge: Some(int(max_surge)),
        }),
    });
    d.status = Some(status);
    d
}

// TestDeploymentComplete
#[test]
fn completion_as_kube() {
    let cases = [
        (
            "min but not all pods available",
            rolling(5, counts(5, 5, 4), 1, 0),
            false,
        ),
        (
            "min availability not honored",
            rolling(5, counts(5, 5, 3), 1, 0),
            false,
        ),
        ("complete", rolling(5, counts(5, 5, 5), 0, 0), true),
        (
            "available but not updated",
            rolling(5, counts(5, 4, 5), 0, 0),
            false,
        ),
        (
            "still running old pods",
            rolling(1, counts(2, 1, 1), 0, 1),
            false,
        ),
        (
            "one replica never comes up",
            rolling(1, counts(1, 1, 0), 1, 1),
            false,
        ),
    ];
    for (name, d, expected) in cases {
        let status = d.status.clone().unwrap_or_default();
        assert_eq!(
            progress::deployment_complete(&d, &status),
            expected,
            "{name}"
        );
    }
}

// TestDeploymentProgressing
#[test]
fn progress_as_kube() {
    let with = |replicas: i32, updated: i32, ready: i32, available: i32| DeploymentStatus {
        replicas: Some(replicas),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        ..DeploymentStatus::default()
    };
    let cases = [
        ("updated pods", with(10, 4, 4, 4), with(10, 6, 4, 4), true),
        (
            "not progressing",
            with(10, 4, 4, 4),
            with(10, 4, 4, 4),
            false,
        ),
        (
            "old pods removed",
            with(10, 4, 6, 6),
            with(8, 4, 6, 6),
            true,
        ),
        ("less new pods", with(10, 7, 3, 3), with(10, 6, 3, 3), false),
        (
            "less overall but more new pods",
            with(10, 4, 7, 7),
            with(8, 8, 5, 5),
            true,
        ),
        (
            "more ready pods",
            with(10, 10, 9, 8),
            with(10, 10, 10, 8),
            true,
        ),
        (
            "more available pods",
            with(10, 10, 10, 9),
            with(10, 10, 10, 10),
            true,
        ),
    ];
    for (name, old, new, expected) in cases {
        let d = Deployment {
            status: Some(old),
            ..Deployment::default()
        };
        assert_eq!(
            progress::deployment_progressing(&d, &new),
            expected,
            "{name}"
        );
    }
}

// TestDeploymentTimedOut
#[test]
fn deadline_as_kube() {
    let time = |minute: u32, second: u32| at(&format!("2016-01-01T00:{minute:02}:{second:02}Z"));
    let d = |reason: &str, deadline: Option<i32>, from: Option<Timestamp>| {
        current(
            deadline,
            1,
            DeploymentStatus::default(),
            vec![condition(PROGRESSING, TRUE, reason, from)],
        )
    };
    let cases = [
        (
            "no deadline",
            d("", None, Some(time(1, 9))),
            time(1, 20),
            false,
        ),
        (
            "infinite deadline",
            d("", Some(i32::MAX), Some(time(1, 9))),
            time(1, 20),
            false,
        ),
        (
            "10s, 11s passed",
            d("", Some(10), Some(time(1, 9))),
            time(1, 20),
            true,
        ),
        (
            "10s, 9s passed",
            d("", Some(10), Some(time(1, 11))),
            time(1, 20),
            false,
        ),
        (
            "previous rollout complete",
            d(NEW_RS_AVAILABLE_REASON, None, None),
            time(1, 20),
            false,
        ),
    ];
    for (name, d, now, expected) in cases {
        let status = d.status.clone().unwrap_or_default();
        assert_eq!(
            progress::deployment_timed_out(&d, &status, now),
            expected,
            "{name}"
        );
    }
}
