//! `rolling_test.go`: a rolling update's step, with the pods' availability read from the
//! ReplicaSets' status as modern kube does.

use super::super::rolling::{self, OldScale};
use super::super::scale::Scale;
use super::{int, new_deployment, refs, rs, with_available};

// TestDeploymentController_reconcileNewReplicaSet
#[test]
fn new_replica_set_scales_within_the_surge() {
    // (replicas, maxSurge, old, new, expected new size)
    let cases = [
        (10, 0, 10, 0, None),
        (10, 2, 10, 0, Some(2)),
        (10, 2, 5, 0, Some(7)),
        (10, 2, 10, 2, None),
        // Above the desired count: down to it.
        (10, 2, 2, 11, Some(10)),
    ];
    for (i, (replicas, surge, old, new, expected)) in cases.into_iter().enumerate() {
        let new_rs = rs("foo-v2", new, &[], None);
        let old_rs = rs("foo-v1", old, &[], None);
        let d = new_deployment(
            "foo",
            replicas,
            None,
            Some(int(surge)),
            Some(int(0)),
            &[("foo", "bar")],
        );
        let got = rolling::reconcile_new_replica_set(&[&new_rs, &old_rs], &new_rs, &d);
        assert_eq!(got, Ok(expected), "case {i}");
    }
}

// TestDeploymentController_reconcileOldReplicaSets
#[test]
fn old_replica_sets_scale_down_within_availability() {
    // (replicas, maxUnavailable, old, new, available old, available new, expected old size)
    let cases = [
        (10, 0, 10, 0, 10, 0, Some(9)),
        (10, 2, 10, 0, 10, 0, Some(8)),
        // Unhealthy old replicas are cleaned up.
        (10, 2, 10, 0, 8, 0, Some(8)),
        // One unhealthy replica cleaned up, one available scaled down.
        (10, 2, 10, 0, 9, 0, Some(8)),
        // Unavailable new pods must not let old ones go.
        (10, 2, 8, 2, 8, 0, None),
    ];
    for (i, (replicas, unavailable, old, new, old_ready, new_ready, expected)) in
        cases.into_iter().enumerate()
    {
        let new_rs = with_available(rs("foo-new", new, &[("foo", "new")], None), new_ready);
        let old_rs = with_available(rs("foo-old", old, &[("foo", "old")], None), old_ready);
        let d = new_deployment(
            "foo",
            replicas,
            None,
            Some(int(0)),
            Some(int(unavailable)),
            &[("foo", "new")],
        );
        let got = rolling::reconcile_old_replica_sets(&[&old_rs, &new_rs], &[&old_rs], &new_rs, &d);
        let expected = match expected {
            Some(size) => OldScale {
                plan: vec![Scale {
                    name: "foo-old".to_string(),
                    replicas: size,
                    refresh_annotations: false,
                }],
                scaled: true,
            },
            None => OldScale::default(),
        };
        assert_eq!(got, expected, "case {i}");
    }
}

// kube's quirk: an old ReplicaSet with more available pods than wanted (mid scale-down)
// makes the clean-up refuse, and the step stops without scaling.
#[test]
fn impossible_clean_up_stops_the_step() {
    let new_rs = with_available(rs("foo-new", 0, &[], None), 0);
    let old_rs = with_available(rs("foo-old", 5, &[], None), 7);
    // 5 pods, minAvailable 3: 2 may go, but 5 - 7 unhealthy replicas is no request.
    let d = new_deployment(
        "foo",
        4,
        None,
        Some(int(0)),
        Some(int(1)),
        &[("foo", "new")],
    );
    let got = rolling::reconcile_old_replica_sets(&[&old_rs, &new_rs], &[&old_rs], &new_rs, &d);
    assert_eq!(got, OldScale::default());
}

// TestDeploymentController_cleanupUnhealthyReplicas
#[test]
fn unhealthy_replicas_are_cleaned_up_first() {
    // (old replicas, ready, max clean-up, expected clean-up)
    let cases = [(10, 8, 1, 1), (10, 8, 3, 2), (10, 8, 0, 0), (10, 10, 3, 0)];
    for (i, (old, ready, max, expected)) in cases.into_iter().enumerate() {
        let mut old_rss = vec![with_available(rs("foo-v2", old, &[], None), ready)];
        let got = rolling::cleanup_unhealthy_replicas(&mut old_rss, max);
        assert_eq!(got, Ok(expected), "case {i}");
        assert_eq!(old_rss[0].spec.replicas, Some(old - expected), "case {i}");
    }
}

// TestDeploymentController_scaleDownOldReplicaSetsForRollingUpdate
#[test]
fn old_replica_sets_scale_down_to_min_available() {
    // (replicas, maxUnavailable, ready, old replicas, expected old size)
    let cases = [
        (10, 0, 10, 10, Some(9)),
        (10, 2, 10, 10, Some(8)),
        (10, 2, 8, 10, None),
        (10, 2, 10, 0, None),
        (10, 2, 1, 10, None),
    ];
    for (i, (replicas, unavailable, ready, old, expected)) in cases.into_iter().enumerate() {
        let old_rs = with_available(rs("foo-v2", old, &[], None), ready);
        let d = new_deployment(
            "foo",
            replicas,
            None,
            Some(int(0)),
            Some(int(unavailable)),
            &[("foo", "bar")],
        );
        let mut old_rss = vec![old_rs.clone()];
        let available = super::super::util::available_replica_count(&refs(&[old_rs]));
        let got =
            rolling::scale_down_old_replica_sets_for_rolling_update(available, &mut old_rss, &d);
        match expected {
            Some(size) => {
                assert_eq!(got, Ok(old - size), "case {i}");
                assert_eq!(old_rss[0].spec.replicas, Some(size), "case {i}");
            }
            None => {
                assert_eq!(got, Ok(0), "case {i}");
                assert_eq!(old_rss[0].spec.replicas, Some(old), "case {i}");
            }
        }
    }
}

// Two old ReplicaSets: the oldest goes first, clean-up and scale-down merged into one write
// per ReplicaSet.
#[test]
fn oldest_replica_sets_go_first() {
    use k8s_openapi::jiff::Timestamp;
    let at = |text: &str| text.parse::<Timestamp>().ok();
    let older = with_available(rs("foo-v1", 3, &[], at("2024-01-01T00:00:00Z")), 2);
    let old = with_available(rs("foo-v2", 3, &[], at("2024-01-02T00:00:00Z")), 3);
    let new_rs = with_available(rs("foo-v3", 4, &[], at("2024-01-03T00:00:00Z")), 4);
    let d = new_deployment(
        "foo",
        8,
        None,
        Some(int(2)),
        Some(int(1)),
        &[("foo", "bar")],
    );
    // 10 pods, minAvailable 7, no unavailable new pod: 3 may go. The unhealthy one of v1
    // first, then 2 available ones: 9 available - 7 = 2, from v1 (2 left) first.
    let got =
        rolling::reconcile_old_replica_sets(&[&older, &old, &new_rs], &[&old, &older], &new_rs, &d);
    let expected = OldScale {
        plan: vec![Scale {
            name: "foo-v1".to_string(),
            replicas: 0,
            refresh_annotations: false,
        }],
        scaled: true,
    };
    assert_eq!(got, expected);
}
