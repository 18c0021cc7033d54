//! `sync_test.go`: proportional scaling (`TestScale`), the history clean-up
//! (`TestDeploymentController_cleanupDeployment`, `…Order`); Recreate's decisions; claiming.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use keel_api::label_selector::Selector;

use super::super::annotations;
use super::super::scale;
use super::super::template;
use super::super::util;
use super::{at, int, new_deployment, new_replica_set, new_rs_with_status, refs, rs};

struct ScaleCase {
    name: &'static str,
    deployment: Deployment,
    old_deployment: Deployment,
    new_rs: Option<ReplicaSet>,
    old_rss: Vec<ReplicaSet>,
    expected_new: Option<i32>,
    expected_old: Vec<i32>,
    wasnt_updated: &'static [&'static str],
    desired_annotations: &'static [(&'static str, i32)],
}

fn case(
    name: &'static str,
    deployment: Deployment,
    old_deployment: Deployment,
    new_rs: Option<ReplicaSet>,
    old_rss: Vec<ReplicaSet>,
    expected_new: Option<i32>,
    expected_old: Vec<i32>,
) -> ScaleCase {
    ScaleCase {
        name,
        deployment,
        old_deployment,
        new_rs,
        old_rss,
        expected_new,
        expected_old,
        wasnt_updated: &[],
        desired_annotations: &[],
    }
}

fn d(replicas: i32) -> Deployment {
    new_deployment("foo", replicas, None, None, None, &[])
}

fn d_surge(replicas: i32, surge: i32) -> Deployment {
    new_deployment("foo", replicas, None, Some(int(surge)), None, &[])
}

// TestScale
#[test]
fn scaling_is_proportional_as_kube() {
    let new_time = Some(at("2016-05-20T02:00:00Z"));
    let old_time = Some(at("2016-05-20T01:00:00Z"));
    let older_time = Some(at("2016-05-20T00:00:00Z"));
    let r = |name: &str, replicas: i32, time: Option<Timestamp>| rs(name, replicas, &[], time);
    let mut updated_template = new_deployment("foo", 14, None, None, None, &[("foo", "bar")]);
    if let Some(meta) = updated_template.spec.template.metadata.as_mut() {
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert("another".to_string(), "label".to_string());
    }
    let mut broken = r("foo-v2", 2, new_time);
    broken.status = Some(ReplicaSetStatus::default());
    let mut cases = vec![
        case(
            "normal scaling event: 10 -> 12",
            d(12),
            d(10),
            Some(r("foo-v1", 10, new_time)),
            vec![],
            Some(12),
            vec![],
        ),
        case(
            "normal scaling event: 10 -> 5",
            d(5),
            d(10),
            Some(r("foo-v1", 10, new_time)),
            vec![],
            Some(5),
            vec![],
        ),
        case(
            "proportional scaling: 5 -> 10",
            d(10),
            d(5),
            Some(r("foo-v2", 2, new_time)),
            vec![r("foo-v1", 3, old_time)],
            Some(4),
            vec![6],
        ),
        case(
            "proportional scaling: 5 -> 3",
            d(3),
            d(5),
            Some(r("foo-v2", 2, new_time)),
            vec![r("foo-v1", 3, old_time)],
            Some(1),
            vec![2],
        ),
        case(
            "proportional scaling: 9 -> 4",
            d(4),
            d(9),
            Some(r("foo-v2", 8, new_time)),
            vec![r("foo-v1", 1, old_time)],
            Some(4),
            vec![0],
        ),
        case(
            "proportional scaling: 7 -> 10",
            d(10),
            d(7),
            Some(r("foo-v3", 2, new_time)),
            vec![r("foo-v2", 3, old_time), r("foo-v1", 2, older_time)],
            Some(3),
            vec![4, 3],
        ),
        case(
            "proportional scaling: 13 -> 8",
            d(8),
            d(13),
            Some(r("foo-v3", 2, new_time)),
            vec![r("foo-v2", 8, old_time), r("foo-v1", 3, older_time)],
            Some(1),
            vec![5, 2],
        ),
        // Scales up the new replica set.
        case(
            "leftover distribution: 3 -> 4",
            d(4),
            d(3),
            Some(r("foo-v3", 1, new_time)),
            vec![r("foo-v2", 1, old_time), r("foo-v1", 1, older_time)],
            Some(2),
            vec![1, 1],
        ),
        // Scales down the older replica set.
        case(
            "leftover distribution: 3 -> 2",
            d(2),
            d(3),
            Some(r("foo-v3", 1, new_time)),
            vec![r("foo-v2", 1, old_time), r("foo-v1", 1, older_time)],
            Some(1),
            vec![1, 0],
        ),
        // Scales up the latest replica set first.
        case(
            "proportional scaling (no new rs): 4 -> 5",
            d(5),
            d(4),
            None,
            vec![r("foo-v2", 2, old_time), r("foo-v1", 2, older_time)],
            None,
            vec![3, 2],
        ),
        case(
            "proportional scaling: 6 -> 0",
            d(0),
            d(6),
            Some(r("foo-v3", 3, new_time)),
            vec![r("foo-v2", 2, old_time), r("foo-v1", 1, older_time)],
            Some(0),
            vec![0, 0],
        ),
        case(
            "proportional scaling: 0 -> 6",
            d(6),
            d(6),
            Some(r("foo-v3", 0, new_time)),
            vec![r("foo-v2", 0, old_time), r("foo-v1", 0, older_time)],
            Some(6),
            vec![0, 0],
        ),
        case(
            "failed rs update",
            d(5),
            d(5),
            Some(r("foo-v3", 2, new_time)),
            vec![r("foo-v2", 1, old_time), r("foo-v1", 1, older_time)],
            Some(2),
            vec![2, 1],
        ),
        case(
            "deployment with surge pods",
            d_surge(20, 2),
            d_surge(10, 2),
            Some(r("foo-v2", 6, new_time)),
            vec![r("foo-v1", 6, old_time)],
            Some(11),
            vec![11],
        ),
        case(
            "change both surge and size",
            d_surge(50, 6),
            d_surge(10, 3),
            Some(r("foo-v2", 5, new_time)),
            vec![r("foo-v1", 8, old_time)],
            Some(22),
            vec![34],
        ),
        case(
            "change both size and template",
            updated_template,
            new_deployment("foo", 10, None, None, None, &[("foo", "bar")]),
            None,
            vec![r("foo-v2", 7, new_time), r("foo-v1", 3, old_time)],
            None,
            vec![10, 4],
        ),
        case(
            "saturated but broken new replica set does not affect old pods",
            new_deployment("foo", 2, None, Some(int(1)), Some(int(1)), &[]),
            new_deployment("foo", 2, None, Some(int(1)), Some(int(1)), &[]),
            Some(broken),
            vec![r("foo-v1", 1, old_time)],
            Some(2),
            vec![1],
        ),
    ];
    cases[11].wasnt_updated = &["foo-v2", "foo-v1"];
    cases[12].wasnt_updated = &["foo-v3", "foo-v1"];
    cases[12].desired_annotations = &[("foo-v2", 3)];

    for mut case in cases {
        let desired_of = |rs: &ReplicaSet, old: &Deployment| {
            let name = rs.metadata.name.as_deref().unwrap_or_default();
            case.desired_annotations
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(util::replicas(old), |(_, desired)| *desired)
        };
        for rs in case.new_rs.iter_mut().chain(case.old_rss.iter_mut()) {
            let desired = desired_of(&*rs, &case.old_deployment);
            let max = desired + util::max_surge(&case.old_deployment);
            annotations::set_replicas_annotations(rs, desired, max);
        }
        let old = refs(&case.old_rss);
        let plan = scale::scale(&case.deployment, case.new_rs.as_ref(), &old);

        let mut sizes: HashMap<String, i32> = case
            .new_rs
            .iter()
            .chain(case.old_rss.iter())
            .map(|rs| {
                (
                    rs.metadata.name.clone().unwrap_or_default(),
                    util::rs_replicas(rs),
                )
            })
            .collect();
        let mut all = old.clone();
        all.extend(case.new_rs.as_ref());
        for step in &plan {
            let Some(rs) = all
                .iter()
                .find(|rs| rs.metadata.name.as_deref() == Some(step.name.as_str()))
            else {
                panic!(
                    "{}: {} is no replica set of the deployment",
                    case.name, step.name
                );
            };
            // Only what is written counts, as kube's test reads the update actions.
            let written = scale::scaled_replica_set(
                rs,
                &case.deployment,
                step.replicas,
                step.refresh_annotations,
            );
            if written.is_some() && !case.wasnt_updated.contains(&step.name.as_str()) {
                sizes.insert(step.name.clone(), step.replicas);
            }
        }
        if let (Some(expected), Some(new_rs)) = (case.expected_new, &case.new_rs) {
            let name = new_rs.metadata.name.clone().unwrap_or_default();
            assert_eq!(sizes.get(&name), Some(&expected), "{}: new", case.name);
        }
        assert_eq!(case.expected_old.len(), case.old_rss.len(), "{}", case.name);
        for (rs, expected) in case.old_rss.iter().zip(&case.expected_old) {
            let name = rs.metadata.name.clone().unwrap_or_default();
            assert_eq!(
                sizes.get(&name),
                Some(expected),
                "{}: old {name}",
                case.name
            );
        }
    }
}

#[test]
fn scaling_writes_the_deployments_replica_annotations() {
    let deployment = d_surge(20, 2);
    let mut rs = rs("foo-v1", 10, &[], None);
    annotations::set_replicas_annotations(&mut rs, 10, 12);
    let written = scale::scaled_replica_set(&rs, &deployment, 20, false).expect("a write");
    assert_eq!(written.spec.replicas, Some(20));
    let annotations = written.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations
            .get(annotations::DESIRED_REPLICAS_ANNOTATION)
            .map(String::as_str),
        Some("20")
    );
    assert_eq!(
        annotations
            .get(annotations::MAX_REPLICAS_ANNOTATION)
            .map(String::as_str),
        Some("22")
    );
    // Same size: only proportional scaling refreshes the annotations alone.
    assert_eq!(scale::scaled_replica_set(&rs, &deployment, 10, false), None);
    assert!(scale::scaled_replica_set(&rs, &deployment, 10, true).is_some());
    // And a scaling event is one the annotations do not match.
    assert!(scale::is_scaling_event(&deployment, Some(&rs), &[]));
    assert!(!scale::is_scaling_event(&d(10), Some(&rs), &[]));
    // Inactive ReplicaSets do not count.
    let mut idle = rs.clone();
    idle.spec.replicas = Some(0);
    assert!(!scale::is_scaling_event(&deployment, Some(&idle), &[]));
}

fn deleted_names(old: &[ReplicaSet], limit: i32) -> HashSet<String> {
    let d = new_deployment("foo", 1, Some(limit), None, None, &[("foo", "bar")]);
    scale::cleanup_deployment(&refs(old), &d)
        .into_iter()
        .filter_map(|rs| rs.metadata.name.clone())
        .collect()
}

// TestDeploymentController_cleanupDeployment
#[test]
fn history_beyond_the_limit_is_deleted() {
    let selector = [("foo", "bar")];
    let s = |name: &str, spec: i32, status: i32| new_rs_with_status(name, spec, status, &selector);
    let mut already_deleted = s("foo-1", 0, 0);
    already_deleted.metadata.deletion_timestamp = Some(Time(at("2024-01-01T00:00:00Z")));
    let cases = [
        (
            vec![s("foo-1", 0, 0), s("foo-2", 0, 0), s("foo-3", 0, 0)],
            1,
            2,
        ),
        // Only a ReplicaSet with no replicas, wanted or running.
        (
            vec![
                s("foo-1", 0, 0),
                s("foo-2", 0, 1),
                s("foo-3", 1, 0),
                s("foo-4", 1, 1),
            ],
            0,
            1,
        ),
        (vec![s("foo-1", 0, 0), s("foo-2", 0, 0)], 0, 2),
        (vec![s("foo-1", 1, 1), s("foo-2", 1, 1)], 0, 0),
        (vec![already_deleted], 0, 0),
        // Unlimited history.
        (
            vec![s("foo-1", 0, 0), s("foo-2", 0, 0), s("foo-3", 0, 0)],
            i32::MAX,
            0,
        ),
    ];
    for (i, (old, limit, expected)) in cases.into_iter().enumerate() {
        assert_eq!(deleted_names(&old, limit).len(), expected, "case {i}");
    }
    // Not yet observed by its controller: kept.
    let mut unobserved = s("foo-1", 0, 0);
    unobserved.metadata.generation = Some(2);
    assert!(deleted_names(&[unobserved], 0).is_empty());
}

// TestDeploymentController_cleanupDeploymentOrder
#[test]
fn lowest_revisions_are_deleted_first() {
    let rev = |name: &str, replicas: i32, minutes: i64, revision: &str| {
        let created = at("2024-01-01T00:00:00Z")
            .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(minutes * 60))
            .expect("in range");
        let mut rs = rs(name, replicas, &[("foo", "bar")], Some(created));
        if !revision.is_empty() {
            rs.metadata.annotations = Some(BTreeMap::from([(
                annotations::REVISION_ANNOTATION.to_string(),
                revision.to_string(),
            )]));
        }
        rs.status = Some(ReplicaSetStatus {
            replicas,
            ..ReplicaSetStatus::default()
        });
        rs
    };
    let set = |names: &[&str]| -> HashSet<String> { names.iter().map(|n| n.to_string()).collect() };
    let cases = [
        (
            vec![rev("foo-1", 0, -1, "1"), rev("foo-2", 0, 0, "2")],
            1,
            set(&["foo-1"]),
        ),
        (
            vec![rev("foo-1", 0, -1, "2"), rev("foo-2", 0, 0, "1")],
            1,
            set(&["foo-2"]),
        ),
        (
            vec![rev("foo-1", 0, -1, "1"), rev("foo-2", 0, 0, "")],
            1,
            set(&["foo-2"]),
        ),
        (
            vec![rev("foo-1", 0, -1, ""), rev("foo-2", 0, 0, "2")],
            1,
            set(&["foo-1"]),
        ),
        (
            vec![
                rev("foo-1", 1, -1, "1"),
                rev("foo-2", 0, 0, "2"),
                rev("foo-3", 0, 1, "3"),
            ],
            1,
            set(&["foo-2"]),
        ),
        (
            vec![
                rev("foo-1", 1, -1, "1"),
                rev("foo-2", 1, 0, "2"),
                rev("foo-3", 0, 1, "3"),
            ],
            1,
            set(&[]),
        ),
        (
            vec![
                rev("foo-1", 0, -1, "3"),
                rev("foo-2", 0, 0, "1"),
                rev("foo-3", 0, 1, "4"),
                rev("foo-4", 0, 2, "2"),
            ],
            2,
            set(&["foo-2", "foo-4"]),
        ),
    ];
    for (i, (old, limit, expected)) in cases.into_iter().enumerate() {
        assert_eq!(deleted_names(&old, limit), expected, "case {i}");
    }
}

#[test]
fn recreate_waits_for_old_pods() {
    let a = rs("foo-v1", 3, &[], None);
    let b = rs("foo-v2", 0, &[], None);
    let plan = scale::scale_down_old_replica_sets_for_recreate(&[&a, &b]);
    assert_eq!(plan.len(), 1);
    assert_eq!((plan[0].name.as_str(), plan[0].replicas), ("foo-v1", 0));

    let status = |replicas: i32, terminating: Option<i32>, observed: Option<i64>| {
        let mut rs = rs("foo-v1", 0, &[], None);
        rs.status = Some(ReplicaSetStatus {
            replicas,
            terminating_replicas: terminating,
            observed_generation: observed,
            ..ReplicaSetStatus::default()
        });
        rs
    };
    let running = status(2, Some(0), Some(1));
    let terminating = status(0, Some(1), Some(1));
    let gone = status(0, Some(0), Some(1));
    let unobserved = status(0, None, None);
    let unknown = status(0, None, Some(1));
    assert_eq!(scale::old_pods_running(&[&running]), Ok(true));
    assert_eq!(scale::old_pods_running(&[&terminating]), Ok(true));
    assert_eq!(scale::old_pods_running(&[&gone, &unobserved]), Ok(false));
    assert_eq!(
        scale::old_pods_running(&[&unknown]),
        Err(util::DeploymentError::UnknownTerminatingReplicas)
    );
}

#[test]
fn replica_sets_are_claimed_by_label() {
    let d = new_deployment("foo", 1, None, None, None, &[("app", "foo")]);
    let selector = Selector::new(&d.spec.selector).expect("a selector");
    let owned = new_replica_set(&d, "owned", 1);
    let mut orphan = new_replica_set(&d, "orphan", 1);
    orphan.metadata.owner_references = None;
    let mut strayed = new_replica_set(&d, "strayed", 1);
    strayed.metadata.labels = Some(BTreeMap::from([("app".to_string(), "bar".to_string())]));
    let other = new_deployment("bar", 1, None, None, None, &[("app", "foo")]);
    let foreign = new_replica_set(&other, "foreign", 1);
    let all: Vec<Arc<ReplicaSet>> = [owned, orphan, strayed, foreign]
        .into_iter()
        .map(Arc::new)
        .collect();
    let claim = template::claim_replica_sets(&d, &selector, &all);
    let names = |rss: &[Arc<ReplicaSet>]| -> Vec<String> {
        rss.iter()
            .filter_map(|rs| rs.metadata.name.clone())
            .collect()
    };
    assert_eq!(names(&claim.claimed), ["owned", "orphan"]);
    assert_eq!(names(&claim.adopt), ["orphan"]);
    assert_eq!(names(&claim.release), ["strayed"]);
    // The Deployments that may adopt an orphan.
    let deployments = [Arc::new(d.clone()), Arc::new(other)];
    let orphan = &all[1];
    assert_eq!(
        template::deployments_selecting(&deployments, orphan).len(),
        2
    );
    // Without labels, none.
    let bare = rs("bare", 1, &[], None);
    assert!(template::deployments_selecting(&deployments, &bare).is_empty());
}
