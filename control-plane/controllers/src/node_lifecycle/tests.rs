//! Cases ported from kube's `node_lifecycle_controller_test.go` and `taint_eviction_test.go`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Node, NodeCondition, NodeStatus, Pod, PodSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use super::health::{self, Heartbeats, NodeHealth};
use super::taints::{self, Eviction, MinToleration};
use super::zones::{self, Rates, TaintQueue, TokenBucket, ZoneState};

fn at(seconds: i64) -> Timestamp {
    match Timestamp::from_second(1_700_000_000 + seconds) {
        Ok(time) => time,
        Err(error) => panic!("{error}"),
    }
}

fn condition(type_: &str, status: &str) -> NodeCondition {
    NodeCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        last_heartbeat_time: Some(Time(at(0))),
        last_transition_time: Some(Time(at(0))),
        ..NodeCondition::default()
    }
}

fn node_with(conditions: Vec<NodeCondition>) -> Node {
    let mut node = Node::default();
    node.metadata.name = Some("node0".to_string());
    node.metadata.creation_timestamp = Some(Time(at(-100)));
    node.status = Some(NodeStatus {
        conditions: Some(conditions),
        ..NodeStatus::default()
    });
    node
}

fn beats(heartbeat: Option<i64>, lease: Option<i64>) -> Heartbeats {
    Heartbeats {
        ready_heartbeat: heartbeat.map(at),
        has_ready: heartbeat.is_some(),
        lease_renew: lease.map(at),
    }
}

/// One step of `TestMonitorNodeHealthUpdateStatus`-style timelines: what the caches show
/// `after` seconds from the start, and whether the node is then judged stale.
struct Step {
    after: u64,
    seen: Heartbeats,
    stale: bool,
}

#[test]
fn health_is_judged_by_when_a_change_was_observed() {
    let grace = Duration::from_secs(40);
    let cases: Vec<(&str, Vec<Step>)> = vec![
        (
            "heartbeats keep coming",
            vec![
                Step {
                    after: 30,
                    seen: beats(Some(30), None),
                    stale: false,
                },
                Step {
                    after: 60,
                    seen: beats(Some(60), None),
                    stale: false,
                },
            ],
        ),
        (
            "heartbeat stopped",
            vec![
                Step {
                    after: 30,
                    seen: beats(Some(0), None),
                    stale: false,
                },
                Step {
                    after: 41,
                    seen: beats(Some(0), None),
                    stale: true,
                },
            ],
        ),
        (
            // The kubelet's clock does not matter: an old timestamp that changed counts.
            "skewed heartbeat that changes",
            vec![Step {
                after: 41,
                seen: beats(Some(-1000), None),
                stale: false,
            }],
        ),
        (
            "lease renewals keep the node healthy",
            vec![
                Step {
                    after: 30,
                    seen: beats(Some(0), Some(30)),
                    stale: false,
                },
                Step {
                    after: 60,
                    seen: beats(Some(0), Some(60)),
                    stale: false,
                },
                Step {
                    after: 101,
                    seen: beats(Some(0), Some(60)),
                    stale: true,
                },
            ],
        ),
        (
            "an older lease is no renewal",
            vec![
                Step {
                    after: 10,
                    seen: beats(Some(0), Some(10)),
                    stale: false,
                },
                Step {
                    after: 51,
                    seen: beats(Some(0), Some(5)),
                    stale: true,
                },
            ],
        ),
    ];
    for (name, steps) in cases {
        let start = Instant::now();
        let mut health = NodeHealth::first(beats(Some(0), Some(0)), start);
        for step in steps {
            let now = start + Duration::from_secs(step.after);
            health.observe(step.seen, now);
            assert_eq!(
                health.is_stale(now, grace),
                step.stale,
                "{name} at {}",
                step.after
            );
        }
    }
}

#[test]
fn exactly_the_grace_period_is_not_stale() {
    let start = Instant::now();
    let health = NodeHealth::first(beats(Some(0), None), start);
    assert!(!health.is_stale(start + Duration::from_secs(40), Duration::from_secs(40)));
    assert!(health.is_stale(start + Duration::from_secs(41), Duration::from_secs(40)));
}

#[test]
fn a_silent_node_gets_every_condition_unknown() {
    let node = node_with(vec![
        condition("Ready", "True"),
        condition("MemoryPressure", "False"),
        condition("NetworkUnavailable", "False"),
    ]);
    let conditions = health::unknown_conditions(&node, at(50)).unwrap_or_default();
    let find = |type_: &str| conditions.iter().find(|c| c.type_ == type_).cloned();
    let ready = find("Ready").unwrap_or_default();
    assert_eq!(ready.status, "Unknown");
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    // The heartbeat is the kubelet's last; the transition is now.
    assert_eq!(ready.last_heartbeat_time, Some(Time(at(0))));
    assert_eq!(ready.last_transition_time, Some(Time(at(50))));
    assert_eq!(
        find("MemoryPressure").map(|c| c.status),
        Some("Unknown".to_string())
    );
    for missing in ["DiskPressure", "PIDPressure"] {
        let added = find(missing).unwrap_or_default();
        assert_eq!(added.status, "Unknown");
        assert_eq!(added.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        assert_eq!(added.last_heartbeat_time, Some(Time(at(-100))));
    }
    // Conditions the controller does not own are left alone.
    assert_eq!(
        find("NetworkUnavailable").map(|c| c.status),
        Some("False".to_string())
    );
    // Already Unknown: nothing to write.
    let node = node_with(conditions);
    assert_eq!(health::unknown_conditions(&node, at(60)), None);
}

fn taint(key: &str, effect: &str, value: Option<&str>) -> Taint {
    Taint {
        key: key.to_string(),
        effect: effect.to_string(),
        value: value.map(str::to_string),
        time_added: None,
    }
}

fn toleration(
    key: &str,
    operator: &str,
    value: &str,
    effect: &str,
    seconds: Option<i64>,
) -> Toleration {
    let some = |text: &str| (!text.is_empty()).then(|| text.to_string());
    Toleration {
        key: some(key),
        operator: some(operator),
        value: some(value),
        effect: some(effect),
        toleration_seconds: seconds,
    }
}

#[test]
fn tolerations_match_as_kube_matches_them() {
    let foo = taint("foo", "NoExecute", Some("bar"));
    let cases = [
        (toleration("", "Exists", "", "", None), true),
        (toleration("foo", "Exists", "", "", None), true),
        (toleration("foo", "Equal", "bar", "NoExecute", None), true),
        (toleration("foo", "", "bar", "", None), true),
        (toleration("foo", "Equal", "baz", "", None), false),
        (toleration("foo", "Exists", "", "NoSchedule", None), false),
        (toleration("other", "Exists", "", "", None), false),
        (toleration("foo", "Lt", "1", "", None), false),
    ];
    for (toleration, expected) in cases {
        assert_eq!(
            taints::tolerates(&toleration, &foo),
            expected,
            "{toleration:?}"
        );
    }
}

#[test]
fn min_toleration_time_as_get_min_toleration_time() {
    let with = |seconds: Option<i64>| toleration("", "Exists", "", "", seconds);
    let (one, two, none, zero) = (with(Some(1)), with(Some(2)), with(None), with(Some(0)));
    let second = MinToleration::After(Duration::from_secs(1));
    assert_eq!(
        taints::min_toleration_time(&[]),
        MinToleration::After(Duration::ZERO)
    );
    assert_eq!(
        taints::min_toleration_time(&[&none]),
        MinToleration::Forever
    );
    assert_eq!(taints::min_toleration_time(&[&one, &two]), second);
    assert_eq!(taints::min_toleration_time(&[&one, &none]), second);
    assert_eq!(taints::min_toleration_time(&[&none, &one]), second);
    assert_eq!(
        taints::min_toleration_time(&[&two, &zero]),
        MinToleration::After(Duration::ZERO)
    );
}

fn pod(tolerations: Vec<Toleration>) -> Pod {
    Pod {
        spec: Some(PodSpec {
            node_name: Some("node0".to_string()),
            tolerations: Some(tolerations),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

#[test]
fn pods_are_evicted_as_the_taint_manager_decides() {
    let mut unreachable = taint(taints::UNREACHABLE, "NoExecute", None);
    unreachable.time_added = Some(Time(at(100)));
    let no_schedule = taint("foo", "NoSchedule", None);
    let now = at(110);
    let tolerate = |seconds| toleration(taints::UNREACHABLE, "Exists", "", "NoExecute", seconds);
    // TestCreatePod / TestUpdateNode style decisions.
    let cases = [
        ("no taints", pod(vec![]), vec![], Eviction::Keep),
        (
            "NoSchedule only",
            pod(vec![]),
            vec![no_schedule.clone()],
            Eviction::Keep,
        ),
        (
            "not tolerated",
            pod(vec![]),
            vec![unreachable.clone()],
            Eviction::At(now),
        ),
        (
            "tolerated forever",
            pod(vec![tolerate(None)]),
            vec![unreachable.clone()],
            Eviction::Keep,
        ),
        (
            "tolerated 300 s",
            pod(vec![tolerate(Some(300))]),
            vec![unreachable.clone()],
            Eviction::At(at(400)),
        ),
        (
            "least of the matching tolerations",
            pod(vec![
                tolerate(Some(300)),
                toleration("", "Exists", "", "", Some(5)),
            ]),
            vec![unreachable.clone(), taint("other", "NoExecute", None)],
            Eviction::At(at(105)),
        ),
    ];
    for (name, pod, node_taints, expected) in cases {
        assert_eq!(
            taints::eviction(&pod, &node_taints, at(90), now),
            expected,
            "{name}"
        );
    }
    // A taint without timeAdded counts from when it was first seen.
    let untimed = taint(taints::NOT_READY, "NoExecute", None);
    let pod = pod(vec![toleration("", "Exists", "", "", Some(60))]);
    assert_eq!(
        taints::eviction(&pod, &[untimed], at(90), now),
        Eviction::At(at(150))
    );
}

#[test]
fn controller_taints_are_swapped_and_removed() {
    let other = taint("dedicated", "NoSchedule", Some("gpu"));
    let now = at(7);
    let added = taints::swap_taints(std::slice::from_ref(&other), Some(taints::UNREACHABLE), now)
        .unwrap_or_default();
    assert_eq!(added.len(), 2);
    assert_eq!(added[0], other);
    assert_eq!(added[1].key, taints::UNREACHABLE);
    assert_eq!(added[1].effect, "NoExecute");
    assert_eq!(added[1].time_added, Some(Time(now)));
    // Already there: no write.
    assert_eq!(
        taints::swap_taints(&added, Some(taints::UNREACHABLE), at(8)),
        None
    );
    // Ready=False swaps unreachable for not-ready.
    let swapped = taints::swap_taints(&added, Some(taints::NOT_READY), at(9)).unwrap_or_default();
    let keys: Vec<&str> = swapped.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["dedicated", taints::NOT_READY]);
    // Healthy again: only the user's taint stays.
    assert_eq!(
        taints::swap_taints(&swapped, None, at(10)),
        Some(vec![other.clone()])
    );
    assert_eq!(taints::swap_taints(&[other], None, at(10)), None);
    assert_eq!(taints::taint_for_ready("False"), Some(taints::NOT_READY));
    assert_eq!(
        taints::taint_for_ready("Unknown"),
        Some(taints::UNREACHABLE)
    );
    assert_eq!(taints::taint_for_ready("True"), None);
}

#[test]
fn zone_states_as_compute_zone_state() {
    let t = Some("True");
    let f = Some("False");
    let u = Some("Unknown");
    let cases = [
        ("all ready", vec![t, t, t], 0, ZoneState::Normal),
        ("none ready", vec![f, u], 2, ZoneState::FullDisruption),
        (
            "no Ready condition",
            vec![None],
            1,
            ZoneState::FullDisruption,
        ),
        (
            "two of three not ready is too few",
            vec![t, f, f],
            2,
            ZoneState::Normal,
        ),
        (
            "three of four",
            vec![t, f, f, u],
            3,
            ZoneState::PartialDisruption,
        ),
        (
            "three of six is under 55%",
            vec![t, t, t, f, f, f],
            3,
            ZoneState::Normal,
        ),
        ("no nodes", vec![], 0, ZoneState::Normal),
    ];
    for (name, ready, not_ready, state) in cases {
        assert_eq!(
            zones::compute_zone_state(&ready, 0.55),
            (not_ready, state),
            "{name}"
        );
    }
}

#[test]
fn tainting_rates_follow_the_zone_state() {
    let rates = Rates {
        eviction_rate: 0.1,
        secondary_eviction_rate: 0.01,
        large_cluster_size_threshold: 50,
    };
    assert!((rates.qps(ZoneState::Normal, 10) - 0.1).abs() < 1e-9);
    assert!((rates.qps(ZoneState::FullDisruption, 10) - 0.1).abs() < 1e-9);
    assert!((rates.qps(ZoneState::PartialDisruption, 51) - 0.01).abs() < 1e-9);
    assert!(rates.qps(ZoneState::PartialDisruption, 50).abs() < 1e-9);
}

#[test]
fn the_bucket_lets_one_node_through_every_ten_seconds() {
    let start = Instant::now();
    let mut bucket = TokenBucket::new(0.1, 1, start);
    assert!(bucket.try_accept(start));
    assert!(!bucket.try_accept(start + Duration::from_secs(5)));
    assert!(bucket.try_accept(start + Duration::from_secs(10)));
    // The burst caps what a long quiet period saves up.
    assert!(bucket.try_accept(start + Duration::from_secs(100)));
    assert!(!bucket.try_accept(start + Duration::from_secs(100)));
    bucket.set_qps(0.0, start);
    assert!(!bucket.try_accept(start + Duration::from_secs(1000)));
}

#[test]
fn the_taint_queue_hands_out_nodes_at_the_limiter_rate() {
    let start = Instant::now();
    let mut queue = TaintQueue::new(0.1, start);
    assert!(queue.add("a"));
    assert!(queue.add("b"));
    assert!(!queue.add("a"));
    assert_eq!(queue.take_allowed(start), ["a"]);
    assert!(queue
        .take_allowed(start + Duration::from_secs(1))
        .is_empty());
    assert_eq!(queue.take_allowed(start + Duration::from_secs(11)), ["b"]);
    queue.add("c");
    queue.remove("c");
    assert!(queue.is_empty());
    queue.add("d");
    queue.retain(|name| name != "d");
    assert!(!queue.contains("d"));
}

#[test]
fn zone_is_the_zone_label() {
    let mut node = Node::default();
    assert_eq!(zones::zone_of(&node), "");
    node.metadata.labels = Some([(zones::ZONE_LABEL.to_string(), "z1".to_string())].into());
    assert_eq!(zones::zone_of(&node), "z1");
}

#[test]
fn no_schedule_taints_follow_the_ready_status() {
    use super::taints::{swap_no_schedule_taints, NOT_READY, NO_SCHEDULE, UNREACHABLE};
    let other = Taint {
        key: "dedicated".into(),
        value: Some("gpu".into()),
        effect: NO_SCHEDULE.into(),
        ..Taint::default()
    };
    let unknown =
        swap_no_schedule_taints(std::slice::from_ref(&other), "Unknown").expect("tainted");
    assert_eq!(unknown.len(), 2);
    assert!(unknown
        .iter()
        .any(|t| t.key == UNREACHABLE && t.effect == NO_SCHEDULE));
    assert_eq!(
        swap_no_schedule_taints(&unknown, "Unknown"),
        None,
        "nothing to change"
    );
    let not_ready = swap_no_schedule_taints(&unknown, "False").expect("swapped");
    assert!(not_ready.iter().any(|t| t.key == NOT_READY));
    assert!(!not_ready.iter().any(|t| t.key == UNREACHABLE));
    let ready = swap_no_schedule_taints(&not_ready, "True").expect("removed");
    assert_eq!(ready, vec![other]);
}

/// The node controller's and the taint manager's events.
mod recorded_events {
    use keel_events::EventType;

    use crate::node_lifecycle::events;

    #[test]
    fn nodes_coming_and_going_are_greeted_as_kube_does() {
        let registered = events::registered("n1");
        assert_eq!(registered.type_, EventType::Normal);
        assert_eq!(registered.reason, "RegisteredNode");
        assert_eq!(
            registered.message,
            "Node n1 event: Registered Node n1 in Controller"
        );
        let removing = events::removing("n1");
        assert_eq!(removing.reason, "RemovingNode");
        assert_eq!(
            removing.message,
            "Node n1 event: Removing Node n1 from Controller"
        );
    }

    #[test]
    fn not_ready_is_recorded_once_when_ready_turns() {
        let note = events::not_ready("n1", Some("True"), "Unknown").expect("turned");
        assert_eq!(note.type_, EventType::Normal);
        assert_eq!(note.reason, "NodeNotReady");
        assert_eq!(note.message, "Node n1 status is now: NodeNotReady");
        // Already not Ready (the kubelet said so, or a previous pass): no second event.
        assert_eq!(events::not_ready("n1", Some("False"), "Unknown"), None);
        assert_eq!(events::not_ready("n1", Some("Unknown"), "Unknown"), None);
        // A node that never posted Ready was never Ready.
        assert_eq!(events::not_ready("n1", None, "Unknown"), None);
        assert_eq!(events::not_ready("n1", Some("True"), "True"), None);
    }

    #[test]
    fn evictions_and_their_cancellation_name_the_pod() {
        let marked = events::marking_for_deletion("default/web-1");
        assert_eq!(marked.type_, EventType::Normal);
        assert_eq!(marked.reason, "TaintManagerEviction");
        assert_eq!(marked.message, "Marking for deletion Pod default/web-1");
        let cancelled = events::cancelling_deletion("default/web-1");
        assert_eq!(cancelled.reason, "TaintManagerEviction");
        assert_eq!(
            cancelled.message,
            "Cancelling deletion of Pod default/web-1"
        );
    }
}
