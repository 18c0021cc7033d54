//! kube's deletion order and pod predicates: `TestSortingActivePods`,
//! `TestSortingActivePodsWithRanks` (controller_utils_test.go) and `podutil` cases.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::super::pods::{self, Ranked};
use super::{ago, labels, names, now, ready_condition, replica_set, rs_pod, HOUR, MONTH};

/// kube's `pod` helper of TestSortingActivePodsWithRanks; `None` times are Go's zero time.
#[expect(clippy::too_many_arguments, reason = "mirrors kube's table helper")]
fn sort_pod(
    name: &str,
    node: &str,
    phase: &str,
    ready: bool,
    restarts: i32,
    ready_since: Option<Timestamp>,
    created: Option<Timestamp>,
    cost: Option<&str>,
) -> Arc<Pod> {
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            creation_timestamp: created.map(Time),
            annotations: cost.map(|cost| labels(&[(pods::POD_DELETION_COST, cost)])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            conditions: ready.then(|| vec![ready_condition(ready_since)]),
            container_statuses: ready.then(|| {
                vec![ContainerStatus {
                    restart_count: restarts,
                    ..ContainerStatus::default()
                }]
            }),
            ..PodStatus::default()
        }),
    })
}

fn ranked(pod: &Arc<Pod>, rank: usize) -> Ranked {
    Ranked {
        pod: pod.clone(),
        rank,
    }
}

// TestSortingActivePods: without a reference time, ages compare exactly.
#[test]
fn sorting_active_pods() {
    let then = Some(ago(MONTH));
    let current = Some(now());
    let pod = |name: &str,
               node: &str,
               phase: &str,
               ready: Option<Option<Timestamp>>,
               restarts: &[i32],
               created: Option<Timestamp>| {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: created.map(Time),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready.map(|since| vec![ready_condition(since)]),
                container_statuses: Some(
                    restarts
                        .iter()
                        .map(|&restart_count| ContainerStatus {
                            restart_count,
                            ..ContainerStatus::default()
                        })
                        .collect(),
                ),
                ..PodStatus::default()
            }),
        })
    };
    let sorted_pods = vec![
        pod("unscheduled", "", "Pending", None, &[], None),
        pod("scheduledButPending", "bar", "Pending", None, &[], None),
        pod("unknownPhase", "foo", "Unknown", None, &[], None),
        pod("runningButNotReady", "foo", "Running", None, &[], None),
        pod(
            "runningNoLastTransitionTime",
            "foo",
            "Running",
            Some(None),
            &[3, 0],
            None,
        ),
        pod(
            "runningWithLastTransitionTime",
            "foo",
            "Running",
            Some(current),
            &[3, 0],
            None,
        ),
        pod(
            "runningLongerTime",
            "foo",
            "Running",
            Some(then),
            &[3, 0],
            None,
        ),
        pod(
            "lowerContainerRestartCount",
            "foo",
            "Running",
            Some(then),
            &[2, 1],
            current,
        ),
        pod("oldest", "foo", "Running", Some(then), &[2, 1], then),
    ];
    let want = names(&sorted_pods);
    // Twenty shuffles (a fixed linear congruential sequence: reproducible).
    let mut seed: u64 = 42;
    for _ in 0..20 {
        let mut shuffled = sorted_pods.clone();
        for i in (1..shuffled.len()).rev() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let j = usize::try_from(seed >> 33).unwrap_or(0) % (i + 1);
            shuffled.swap(i, j);
        }
        let input: Vec<Ranked> = shuffled.iter().map(|pod| ranked(pod, 0)).collect();
        let got: Vec<Arc<Pod>> = pods::sort_for_deletion(&input, None)
            .into_iter()
            .map(|ranked| ranked.pod)
            .collect();
        assert_eq!(names(&got), want);
    }
}

// TestSortingActivePodsWithRanks, with PodDeletionCost and LogarithmicScaleDown on.
#[test]
fn sorting_active_pods_with_ranks() {
    let (current, month, h2, h5, h8) = (
        Some(now()),
        Some(ago(MONTH)),
        Some(ago(2 * HOUR)),
        Some(ago(5 * HOUR)),
        Some(ago(8 * HOUR)),
    );
    let unscheduled = sort_pod("unscheduled", "", "Pending", false, 0, None, None, None);
    let scheduled_pending = sort_pod("pending", "node", "Pending", false, 0, None, None, None);
    let unknown_phase = sort_pod(
        "unknown-phase",
        "node",
        "Unknown",
        false,
        0,
        None,
        None,
        None,
    );
    let not_ready = sort_pod("not-ready", "node", "Running", false, 0, None, None, None);
    let ready_no_time = sort_pod(
        "ready-no-last-transition-time",
        "node",
        "Running",
        true,
        0,
        None,
        None,
        None,
    );
    let ready_now = sort_pod(
        "ready-now",
        "node",
        "Running",
        true,
        0,
        current,
        current,
        None,
    );
    let ready_then = sort_pod("ready-then", "node", "Running", true, 0, month, month, None);
    let high_restarts = sort_pod(
        "ready-high-restarts",
        "node",
        "Running",
        true,
        9001,
        current,
        current,
        None,
    );
    let created_then = sort_pod(
        "ready-now-created-then",
        "node",
        "Running",
        true,
        0,
        current,
        month,
        None,
    );
    let low_cost = sort_pod(
        "low-deletion-cost",
        "node",
        "Running",
        true,
        0,
        current,
        month,
        Some("10"),
    );
    let high_cost = sort_pod(
        "high-deletion-cost",
        "node",
        "Running",
        true,
        0,
        current,
        month,
        Some("100"),
    );
    let unscheduled_5h = sort_pod("unscheduled-5-hours", "", "Pending", false, 0, h5, h5, None);
    let unscheduled_8h = sort_pod(
        "unscheduled-10-hours",
        "",
        "Pending",
        false,
        0,
        h8,
        h8,
        None,
    );
    let ready_2h = sort_pod("ready-2-hours", "", "Running", true, 0, h2, month, None);
    let ready_5h = sort_pod("ready-5-hours", "", "Running", true, 0, h5, month, None);
    let ready_8h = sort_pod("ready-10-hours", "", "Running", true, 0, h8, month, None);
    let reference = Some(now());

    let equal = [
        (&unscheduled, &unscheduled),
        (&scheduled_pending, &scheduled_pending),
        (&unknown_phase, &unknown_phase),
        (&not_ready, &not_ready),
        (&created_then, &created_then),
        (&ready_now, &ready_now),
        (&ready_then, &ready_then),
        (&high_restarts, &high_restarts),
        // Ages within the same power of two are equivalent.
        (&unscheduled_5h, &unscheduled_8h),
        (&ready_5h, &ready_8h),
    ];
    for (a, b) in equal {
        let (a, b) = (ranked(a, 1), ranked(b, 1));
        assert!(
            !pods::deletes_before(&a, &b, reference) && !pods::deletes_before(&b, &a, reference),
            "{:?} and {:?} should be equivalent",
            a.pod.metadata.name,
            b.pod.metadata.name
        );
    }

    let less = [
        ((&unscheduled, 1), (&scheduled_pending, 2)),
        ((&unscheduled, 2), (&scheduled_pending, 1)),
        ((&scheduled_pending, 1), (&unknown_phase, 2)),
        ((&unknown_phase, 1), (&not_ready, 2)),
        ((&not_ready, 1), (&ready_no_time, 1)),
        ((&ready_no_time, 1), (&ready_now, 1)),
        ((&ready_now, 2), (&ready_no_time, 1)),
        ((&ready_now, 1), (&ready_then, 1)),
        ((&ready_now, 2), (&ready_then, 1)),
        ((&high_restarts, 1), (&ready_now, 1)),
        ((&ready_now, 2), (&high_restarts, 1)),
        ((&ready_now, 1), (&created_then, 1)),
        ((&created_then, 2), (&ready_now, 1)),
        ((&low_cost, 2), (&high_cost, 1)),
        ((&ready_2h, 1), (&ready_5h, 1)),
    ];
    for ((lesser, lesser_rank), (greater, greater_rank)) in less {
        let (a, b) = (ranked(lesser, lesser_rank), ranked(greater, greater_rank));
        let which = (&a.pod.metadata.name, a.rank, &b.pod.metadata.name, b.rank);
        assert!(
            pods::deletes_before(&a, &b, reference),
            "{which:?}: first should go first"
        );
        assert!(
            !pods::deletes_before(&b, &a, reference),
            "{which:?}: second should not"
        );
    }
}

#[test]
fn deletion_cost_is_an_int32_without_sign_or_leading_zeros() {
    for (value, cost) in [
        ("10", 10),
        ("-5", -5),
        ("0", 0),
        ("+10", 0),
        ("008", 0),
        ("", 0),
        ("x", 0),
        ("2147483648", 0),
    ] {
        let pod = sort_pod("p", "n", "Running", true, 0, None, None, Some(value));
        assert_eq!(pods::deletion_cost(&pod), cost, "{value:?}");
    }
}

#[test]
fn availability_needs_min_ready_seconds_strictly_past() {
    let rs = replica_set(1, &[("foo", "bar")]);
    let ready_for = |seconds| rs_pod("p", &rs, "Running", Some(ago(seconds)), true);
    assert!(pods::is_available(&ready_for(0), 0, now()));
    assert!(pods::is_available(&ready_for(11), 10, now()));
    assert!(!pods::is_available(&ready_for(10), 10, now()));
    assert!(!pods::is_available(
        &rs_pod("p", &rs, "Running", None, true),
        10,
        now()
    ));
    assert!(!pods::is_available(
        &rs_pod("p", &rs, "Pending", None, true),
        0,
        now()
    ));
}
