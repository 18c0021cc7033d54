//! `deployment_util_test.go`: fenceposts, budgets, replica counts, annotations, proportions,
//! and the API defaults.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStatus, DeploymentStrategy, ReplicaSet, ReplicaSetStatus,
    RollingUpdateDeployment,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::super::annotations::{self, AnnotationError};
use super::super::util::{self, DeploymentError};
use super::{int, labels, new_deployment, new_replica_set, percent};

// TestResolveFenceposts
#[test]
fn fenceposts_resolve_as_kube() {
    let cases = [
        (Some("0%"), Some("0%"), 0, Ok((0, 1))),
        (Some("39%"), Some("39%"), 10, Ok((4, 3))),
        (Some("oops"), Some("39%"), 10, Err(())),
        (Some("55%"), Some("urg"), 10, Err(())),
        (None, Some("39%"), 10, Ok((0, 3))),
        (Some("39%"), None, 10, Ok((4, 0))),
        (None, None, 10, Ok((0, 1))),
    ];
    for (i, (surge, unavailable, desired, expected)) in cases.into_iter().enumerate() {
        let surge = surge.map(percent);
        let unavailable = unavailable.map(percent);
        let got = util::resolve_fenceposts(surge.as_ref(), unavailable.as_ref(), desired);
        assert_eq!(got.map_err(|_| ()), expected, "case {i}");
    }
}

#[test]
fn int_or_percent_rounds_surge_up_and_unavailability_down() {
    assert_eq!(util::scaled_value(Some(&percent("25%")), 10, true), Ok(3));
    assert_eq!(util::scaled_value(Some(&percent("25%")), 10, false), Ok(2));
    assert_eq!(util::scaled_value(Some(&int(7)), 10, false), Ok(7));
    assert_eq!(
        util::scaled_value(None, 10, true),
        Err(DeploymentError::MissingIntOrString)
    );
    assert!(util::scaled_value(Some(&percent("25")), 10, true).is_err());
}

fn rolling(replicas: Option<i32>, max_unavailable: IntOrString) -> Deployment {
    Deployment {
        spec: DeploymentSpec {
            replicas,
            strategy: Some(DeploymentStrategy {
                type_: Some(util::ROLLING_UPDATE.to_string()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(int(1)),
                    max_unavailable: Some(max_unavailable),
                }),
            }),
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

fn recreate(replicas: Option<i32>) -> Deployment {
    Deployment {
        spec: DeploymentSpec {
            replicas,
            strategy: Some(DeploymentStrategy {
                type_: Some(util::RECREATE.to_string()),
                rolling_update: None,
            }),
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

// TestMaxUnavailable
#[test]
fn max_unavailable_as_kube() {
    let cases = [
        ("less than replicas", rolling(Some(10), int(5)), 5),
        ("equal replicas", rolling(Some(10), int(10)), 10),
        ("greater than replicas", rolling(Some(5), int(10)), 5),
        ("replicas is 0", rolling(Some(0), int(10)), 0),
        ("Recreate", recreate(None), 0),
        (
            "less than replicas, percent",
            rolling(Some(10), percent("50%")),
            5,
        ),
        (
            "equal replicas, percent",
            rolling(Some(10), percent("100%")),
            10,
        ),
        (
            "greater than replicas, percent",
            rolling(Some(5), percent("100%")),
            5,
        ),
    ];
    for (name, d, expected) in cases {
        assert_eq!(util::max_unavailable(&d), expected, "{name}");
    }
}

// TestMinAvailable
#[test]
fn min_available_as_kube() {
    let cases = [
        (
            "replicas greater than maxUnavailable",
            rolling(Some(10), int(5)),
            5,
        ),
        (
            "replicas equal maxUnavailable",
            rolling(Some(10), int(10)),
            0,
        ),
        (
            "replicas less than maxUnavailable",
            rolling(Some(5), int(10)),
            0,
        ),
        ("replicas is 0", rolling(Some(0), int(10)), 0),
        ("Recreate", recreate(Some(10)), 0),
        ("percent, greater", rolling(Some(10), percent("60%")), 4),
        ("percent, equal", rolling(Some(10), percent("100%")), 0),
        ("percent, less", rolling(Some(5), percent("100%")), 0),
    ];
    for (name, d, expected) in cases {
        assert_eq!(util::min_available(&d), expected, "{name}");
    }
}

// TestNewRSNewReplicas
#[test]
fn new_replica_set_sizes_as_kube() {
    let cases = [
        (
            "can not scale up - to newRSReplicas",
            util::ROLLING_UPDATE,
            1,
            5,
            1,
            5,
        ),
        (
            "scale up - to depReplicas",
            util::ROLLING_UPDATE,
            6,
            2,
            10,
            6,
        ),
        ("recreate - to depReplicas", util::RECREATE, 3, 1, 1, 3),
    ];
    let base = new_deployment("nginx", 1, None, None, None, &[("name", "nginx")]);
    let rs5 = new_replica_set(&base, "rs5", 5);
    for (name, strategy, desired, new_replicas, surge, expected) in cases {
        let mut d = base.clone();
        d.spec.replicas = Some(desired);
        d.spec.strategy = Some(DeploymentStrategy {
            type_: Some(strategy.to_string()),
            rolling_update: Some(RollingUpdateDeployment {
                max_unavailable: Some(int(1)),
                max_surge: Some(int(surge)),
            }),
        });
        let new_rs = new_replica_set(&base, "new", new_replicas);
        let got = util::new_rs_new_replicas(&d, &[&rs5], &new_rs);
        assert_eq!(got, Ok(expected), "{name}");
    }
}

fn with_status(
    mut rs: ReplicaSet,
    observed: i64,
    replicas: i32,
    terminating: Option<i32>,
) -> ReplicaSet {
    rs.status = Some(ReplicaSetStatus {
        observed_generation: (observed != 0).then_some(observed),
        replicas,
        terminating_replicas: terminating,
        ..ReplicaSetStatus::default()
    });
    rs
}

// TestGetReplicaCountForReplicaSets (with kube's quirk: rs2 is never observed, yet counts,
// having a terminating count).
#[test]
fn replica_counts_as_kube() {
    let d = |name: &str| new_deployment(name, 1, None, None, None, &[("name", name)]);
    let rs1 = with_status(new_replica_set(&d("foo-rs"), "rs1", 1), 1, 2, Some(3));
    let rs2 = with_status(new_replica_set(&d("bar-rs"), "rs2", 2), 0, 3, Some(1));
    let rs3 = with_status(new_replica_set(&d("unsynced-rs"), "rs3", 3), 0, 0, None);
    let rs4 = with_status(new_replica_set(&d("dropped-rs"), "rs4", 1), 1, 1, None);
    let cases = [
        ("scaling down rs1", vec![&rs1], 1, 2, Some(3)),
        ("scaling down rs1 and rs2", vec![&rs1, &rs2], 3, 5, Some(4)),
        ("scaling up rs3", vec![&rs3], 3, 0, Some(0)),
        ("rs1, rs2 and rs3", vec![&rs1, &rs2, &rs3], 6, 5, Some(4)),
        ("unknown terminating for rs4", vec![&rs4], 1, 1, None),
        (
            "rs4 with rs1, rs2 and rs3",
            vec![&rs1, &rs2, &rs3, &rs4],
            7,
            6,
            None,
        ),
    ];
    for (name, sets, count, actual, terminating) in cases {
        assert_eq!(util::replica_count(&sets), count, "{name}");
        assert_eq!(util::actual_replica_count(&sets), actual, "{name}");
        assert_eq!(
            util::terminating_replica_count(&sets),
            terminating,
            "{name}"
        );
    }
}

fn annotated(pairs: &[(&str, &str)]) -> ReplicaSet {
    let d = new_deployment("nginx", 1, None, None, None, &[("name", "nginx")]);
    let mut rs = new_replica_set(&d, "nginx-rs", 0);
    rs.metadata.annotations = Some(labels(pairs));
    rs
}

// TestGetNonNegativeInt32FromAnnotation
#[test]
fn integer_annotations_as_kube() {
    let max = i32::MAX.to_string();
    let above = (u64::from(u32::try_from(i32::MAX).unwrap_or(0)) + 1).to_string();
    let above_u32 = (u64::from(u32::MAX) + 1).to_string();
    let cases = vec![
        ("invalid empty", vec![], Ok(None)),
        (
            "invalid",
            vec![("test", "invalid"), ("foo", "2")],
            Err("invalid syntax"),
        ),
        (
            "invalid negative",
            vec![("test", "-1"), ("foo", "2")],
            Err("invalid syntax"),
        ),
        ("valid zero", vec![("test", "0"), ("foo", "2")], Ok(Some(0))),
        ("valid", vec![("test", "13"), ("foo", "2")], Ok(Some(13))),
        (
            "valid max",
            vec![("test", max.as_str()), ("foo", "2")],
            Ok(Some(i32::MAX)),
        ),
        (
            "out of range",
            vec![("test", above.as_str()), ("foo", "2")],
            Err("out of range"),
        ),
        (
            "out of range 2",
            vec![("test", above_u32.as_str()), ("foo", "2")],
            Err("out of range"),
        ),
    ];
    for (name, pairs, expected) in cases {
        let rs = annotated(&pairs);
        let got = annotations::non_negative_i32_annotation(&rs, "test");
        match expected {
            Ok(value) => assert_eq!(got, Ok(value), "{name}"),
            Err(text) => {
                let error: AnnotationError = got.expect_err(name);
                assert!(error.to_string().contains(text), "{name}: {error}");
            }
        }
    }
    assert_eq!(
        annotations::desired_replicas_annotation(&annotated(&[("x", "1")])),
        None
    );
}

// TestAnnotationUtils
#[test]
fn new_replica_set_annotations_keep_a_bounded_history() {
    let mut d = new_deployment("nginx", 1, None, None, None, &[("name", "nginx")]);
    d.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(
            annotations::REVISION_ANNOTATION.to_string(),
            "1".to_string(),
        );
    let mut rs = new_replica_set(&d, "nginx-rs", 0);
    for i in 10..20 {
        let next = (i + 1).to_string();
        annotations::set_new_replica_set_annotations(
            &d,
            &mut rs,
            &next,
            true,
            5,
            super::super::util::replica_annotations(&d),
        );
        let map = rs.metadata.annotations.clone().unwrap_or_default();
        if i >= 12 {
            let history = format!("{},{}", i - 1, i);
            assert_eq!(
                map.get(annotations::REVISION_HISTORY_ANNOTATION),
                Some(&history)
            );
        }
        assert_eq!(map.get(annotations::REVISION_ANNOTATION), Some(&next));
    }
    assert!(annotations::set_replicas_annotations(&mut rs, 10, 11));
    let map = rs.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        map.get(annotations::DESIRED_REPLICAS_ANNOTATION)
            .map(String::as_str),
        Some("10")
    );
    assert_eq!(
        map.get(annotations::MAX_REPLICAS_ANNOTATION)
            .map(String::as_str),
        Some("11")
    );
    // IsSaturated
    rs.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(
            annotations::DESIRED_REPLICAS_ANNOTATION.to_string(),
            "1".to_string(),
        );
    rs.spec.replicas = Some(1);
    rs.status = Some(ReplicaSetStatus {
        available_replicas: Some(1),
        ..ReplicaSetStatus::default()
    });
    assert!(util::is_saturated(&d, Some(&rs)));
}

#[test]
fn deployment_annotations_are_copied_but_not_the_controllers() {
    let mut d = new_deployment("nginx", 3, None, Some(int(1)), None, &[("name", "nginx")]);
    let map = d.metadata.annotations.get_or_insert_with(BTreeMap::new);
    map.insert("kubernetes.io/change-cause".to_string(), "v2".to_string());
    map.insert(
        annotations::LAST_APPLIED_CONFIG_ANNOTATION.to_string(),
        "{}".to_string(),
    );
    map.insert(
        annotations::REVISION_ANNOTATION.to_string(),
        "7".to_string(),
    );
    let mut rs = new_replica_set(&d, "nginx-rs", 0);
    assert!(annotations::set_new_replica_set_annotations(
        &d,
        &mut rs,
        "3",
        false,
        2000,
        super::super::util::replica_annotations(&d)
    ));
    let got = rs.metadata.annotations.clone().unwrap_or_default();
    let expected = labels(&[
        ("kubernetes.io/change-cause", "v2"),
        (annotations::REVISION_ANNOTATION, "3"),
        (annotations::DESIRED_REPLICAS_ANNOTATION, "3"),
        (annotations::MAX_REPLICAS_ANNOTATION, "4"),
    ]);
    assert_eq!(got, expected);
    // Nothing new: nothing changes; a lower revision does not lower it.
    assert!(!annotations::set_new_replica_set_annotations(
        &d,
        &mut rs,
        "2",
        true,
        2000,
        super::super::util::replica_annotations(&d)
    ));
}

// TestReplicasAnnotationsNeedUpdate
#[test]
fn replicas_annotations_need_update_as_kube() {
    let mut none = annotated(&[]);
    none.metadata.annotations = None;
    let cases = [
        ("annotations nil", none, true),
        (
            "desiredReplicas update",
            annotated(&[
                (annotations::DESIRED_REPLICAS_ANNOTATION, "8"),
                (annotations::MAX_REPLICAS_ANNOTATION, "20"),
            ]),
            true,
        ),
        (
            "maxReplicas update",
            annotated(&[
                (annotations::DESIRED_REPLICAS_ANNOTATION, "10"),
                (annotations::MAX_REPLICAS_ANNOTATION, "16"),
            ]),
            true,
        ),
        (
            "needn't update",
            annotated(&[
                (annotations::DESIRED_REPLICAS_ANNOTATION, "10"),
                (annotations::MAX_REPLICAS_ANNOTATION, "20"),
            ]),
            false,
        ),
    ];
    for (name, rs, expected) in cases {
        assert_eq!(
            annotations::replicas_annotations_need_update(&rs, 10, 20),
            expected,
            "{name}"
        );
    }
}

// TestGetReplicaSetFraction
#[test]
fn replica_set_fractions_as_kube() {
    let cases = [
        (
            "empty deployment always scales to 0",
            0,
            0,
            0,
            10,
            None,
            -10,
        ),
        ("unsynced, max-replicas missing", 10, 0, 0, 5, None, 0),
        ("unsynced, max-replicas 0", 10, 0, 0, 5, Some("0"), 0),
        ("up 1/5, max-replicas missing", 120, 100, 0, 50, None, 10),
        ("up 1/5, max-replicas 0", 120, 100, 0, 50, Some("0"), 10),
        ("up 1/5", 120, 0, 0, 50, Some("100"), 10),
        ("up 1/5 with maxSurge", 120, 0, 10, 50, Some("110"), 9),
        ("down 1/6", 10, 0, 0, 6, Some("12"), -1),
        ("down 1/6 with maxSurge", 100, 0, 10, 50, Some("130"), -8),
    ];
    for (name, replicas, status_replicas, surge, rs_replicas, max, expected) in cases {
        let mut d = new_deployment(
            "nginx",
            replicas,
            None,
            Some(int(surge)),
            Some(int(1)),
            &[("name", "nginx")],
        );
        d.status = Some(DeploymentStatus {
            replicas: Some(status_replicas),
            ..DeploymentStatus::default()
        });
        let mut rs = new_replica_set(&d, "nginx-rs", rs_replicas);
        rs.metadata.annotations =
            max.map(|max| labels(&[(annotations::MAX_REPLICAS_ANNOTATION, max)]));
        assert_eq!(util::replica_set_fraction(&rs, &d), expected, "{name}");
    }
}

#[test]
fn api_defaults_as_kube() {
    let mut d = Deployment::default();
    util::set_defaults(&mut d);
    assert_eq!(d.spec.replicas, Some(1));
    assert_eq!(d.spec.revision_history_limit, Some(10));
    assert_eq!(d.spec.progress_deadline_seconds, Some(600));
    let strategy = d.spec.strategy.unwrap_or_default();
    assert_eq!(strategy.type_.as_deref(), Some(util::ROLLING_UPDATE));
    let update = strategy.rolling_update.unwrap_or_default();
    assert_eq!(update.max_surge, Some(percent("25%")));
    assert_eq!(update.max_unavailable, Some(percent("25%")));
    // Recreate gets no rolling parameters.
    let mut d = recreate(Some(2));
    util::set_defaults(&mut d);
    assert_eq!(d.spec.strategy.and_then(|s| s.rolling_update), None);
}
