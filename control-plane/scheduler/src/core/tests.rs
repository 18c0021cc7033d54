use std::time::Duration;

use super::*;
use crate::config::PluginEnv;
use crate::testing::{node, pod, with_required_anti_affinity};

fn core() -> Core {
    Core::new(
        SchedulerConfig::default_config(&PluginEnv::default()),
        None,
        42,
    )
}

fn worker(name: &str, cpu: &str) -> Node {
    node(name)
        .capacity(&[("cpu", cpu), ("memory", "16Gi"), ("pods", "110")])
        .obj()
}

fn pending(name: &str, cpu: &str) -> Pod {
    let mut pod = pod().name(name).req(&[("cpu", cpu)]).obj();
    pod.metadata.namespace = Some("default".into());
    pod
}

fn assumed_node(outcome: Option<Outcome>) -> String {
    match outcome {
        Some(Outcome::Assumed { node, .. }) => node,
        other => panic!("not assumed: {other:?}"),
    }
}

#[test]
fn a_burst_spreads_because_each_decision_is_assumed() {
    let now = Instant::now();
    let mut core = core();
    core.upsert_node(worker("a", "2"), now);
    core.upsert_node(worker("b", "2"), now);
    for i in 0..4 {
        core.upsert_pod(pending(&format!("p{i}"), "1"), now);
    }
    let mut placed = Vec::new();
    for _ in 0..4 {
        placed.push(assumed_node(core.schedule_next(now)));
    }
    placed.sort();
    assert_eq!(placed, ["a", "a", "b", "b"]);
    // The fifth does not fit anywhere while the four are assumed.
    core.upsert_pod(pending("p4", "1"), now);
    match core.schedule_next(now) {
        Some(Outcome::Unschedulable { message, .. }) => {
            assert_eq!(
                message,
                "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are \
                 available: 2 No preemption victims found for incoming pod."
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(core.queue_counts().unschedulable, 1);
}

#[test]
fn a_new_node_lets_an_unschedulable_pod_in() {
    let now = Instant::now();
    let mut core = core();
    core.upsert_pod(pending("p", "4"), now);
    match core.schedule_next(now) {
        Some(Outcome::Unschedulable { message, .. }) => {
            assert_eq!(message, "no nodes available to schedule pods")
        }
        other => panic!("{other:?}"),
    }
    let later = now + Duration::from_secs(2);
    core.upsert_node(worker("big", "8"), later);
    assert_eq!(assumed_node(core.schedule_next(later)), "big");
}

#[test]
fn a_refused_binding_frees_the_node_and_retries_the_pod() {
    let now = Instant::now();
    let mut core = core();
    core.upsert_node(worker("a", "1"), now);
    core.upsert_pod(pending("p", "1"), now);
    let Some(Outcome::Assumed { pod, .. }) = core.schedule_next(now) else {
        panic!("assumed");
    };
    assert_eq!(core.cache().node("a").expect("a").requested.milli_cpu, 1000);
    core.binding_failed(pod, BindFailure::Retry, now);
    assert_eq!(core.cache().node("a").expect("a").requested.milli_cpu, 0);
    assert!(core.schedule_next(now).is_none(), "backing off");
    let later = now + Duration::from_secs(1);
    assert_eq!(assumed_node(core.schedule_next(later)), "a");
}

#[test]
fn a_binding_refused_for_a_gone_pod_is_not_retried() {
    let now = Instant::now();
    let mut core = core();
    core.upsert_node(worker("a", "1"), now);
    core.upsert_pod(pending("p", "1"), now);
    let Some(Outcome::Assumed { pod, .. }) = core.schedule_next(now) else {
        panic!("assumed");
    };
    core.binding_failed(pod, BindFailure::Gone, now);
    assert!(!core.is_queued("default/p"));
    assert!(core.schedule_next(now + Duration::from_secs(60)).is_none());
}

#[test]
fn the_confirming_watch_event_keeps_the_pod_counted() {
    let now = Instant::now();
    let mut core = core();
    core.upsert_node(worker("a", "2"), now);
    core.upsert_pod(pending("p", "1"), now);
    assumed_node(core.schedule_next(now));
    // An older version of the pod (no nodeName yet) arrives after the decision: ignored.
    core.upsert_pod(pending("p", "1"), now);
    assert!(!core.is_queued("default/p"));
    let mut bound = pending("p", "1");
    bound.spec.get_or_insert_default().node_name = Some("a".into());
    core.upsert_pod(bound, now);
    assert!(!core.cache().is_assumed("default/p"));
    assert_eq!(core.cache().node("a").expect("a").requested.milli_cpu, 1000);
    // Deleting it frees the node.
    core.delete_pod("default/p", now);
    assert_eq!(core.cache().node("a").expect("a").requested.milli_cpu, 0);
}

#[test]
fn pods_of_other_schedulers_and_finished_or_deleting_pods_are_left_alone() {
    let now = Instant::now();
    let mut core = core();
    core.upsert_node(worker("a", "2"), now);
    let mut other = pending("other", "1");
    other.spec.get_or_insert_default().scheduler_name = Some("my-scheduler".into());
    core.upsert_pod(other, now);
    let mut deleting = pending("deleting", "1");
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    core.upsert_pod(deleting, now);
    let mut done = pending("done", "1");
    done.status = Some(k8s_openapi::api::core::v1::PodStatus {
        phase: Some("Succeeded".into()),
        ..Default::default()
    });
    core.upsert_pod(done, now);
    assert!(core.schedule_next(now).is_none());
}

#[test]
fn a_relist_forgets_pods_deleted_while_the_watch_was_down() {
    let now = Instant::now();
    let mut core = core();
    core.upsert_node(worker("a", "4"), now);
    for name in ["kept", "gone"] {
        let mut bound = pending(name, "1");
        bound.spec.get_or_insert_default().node_name = Some("a".into());
        core.upsert_pod(bound, now);
    }
    let listed: HashSet<String> = ["default/kept".to_string()].into();
    core.retain_pods(&listed, now);
    assert_eq!(core.cache().node("a").expect("a").pods.len(), 1);
    core.retain_nodes(&HashSet::new());
    assert_eq!(core.cache().node_count(), 0);
}

#[test]
fn a_more_important_pod_that_fits_nowhere_preempts() {
    let now = Instant::now();
    let mut core = core();
    core.upsert_node(worker("a", "1"), now);
    let mut low = pending("low", "1");
    low.spec.get_or_insert_default().node_name = Some("a".into());
    low.spec.get_or_insert_default().priority = Some(1);
    core.upsert_pod(low, now);
    let mut high = pending("high", "1");
    high.spec.get_or_insert_default().priority = Some(100);
    core.upsert_pod(high, now);
    match core.schedule_next(now) {
        Some(Outcome::Preempting {
            node,
            victims,
            message,
            ..
        }) => {
            assert_eq!(node, "a");
            assert_eq!(victims.len(), 1);
            assert_eq!(message, "0/1 nodes are available: 1 Insufficient cpu.");
        }
        other => panic!("{other:?}"),
    }
    // The victim's deletion moves the preemptor back; it then fits.
    core.delete_pod("default/low", now + Duration::from_secs(2));
    assert_eq!(
        assumed_node(core.schedule_next(now + Duration::from_secs(2))),
        "a"
    );
}

/// The room preemption frees is held for the preemptor: a lower-priority pod that is popped
/// while the preemptor still waits out its backoff does not take it.
#[test]
fn a_lower_priority_pod_does_not_take_the_room_a_preemption_freed() {
    let now = Instant::now();
    let mut core = core();
    core.upsert_node(worker("a", "1"), now);
    let mut victim = pending("victim", "1");
    victim.spec.get_or_insert_default().node_name = Some("a".into());
    victim.spec.get_or_insert_default().priority = Some(1);
    core.upsert_pod(victim, now);
    let mut high = pending("high", "1");
    high.spec.get_or_insert_default().priority = Some(100);
    core.upsert_pod(high, now);
    assert!(matches!(
        core.schedule_next(now),
        Some(Outcome::Preempting { .. })
    ));
    assert_eq!(core.nominator().node_of("default/high"), Some("a"));
    // A latecomer arrives and the victim is gone, while the preemptor's 1 s backoff runs.
    core.upsert_pod(pending("latecomer", "1"), now);
    core.delete_pod("default/victim", now);
    match core.schedule_next(now) {
        Some(Outcome::Unschedulable { pod, message, .. }) => {
            assert_eq!(pod.key, "default/latecomer");
            assert!(message.starts_with("0/1 nodes are available: 1 Insufficient cpu."));
        }
        other => panic!("the latecomer must not take the preemptor's room: {other:?}"),
    }
    let later = now + Duration::from_secs(2);
    assert_eq!(assumed_node(core.schedule_next(later)), "a");
    assert_eq!(core.nominator().node_of("default/high"), None);
}

/// A nominated pod that preemption can no longer help anywhere loses its stale nomination:
/// in the nominator at once, and the caller is told to clear `status.nominatedNodeName`.
#[test]
fn no_candidates_clear_a_stale_nomination() {
    let now = Instant::now();
    let mut core = core();
    core.upsert_node(worker("a", "1"), now);
    let mut peer = pending("peer", "1");
    peer.spec.get_or_insert_default().node_name = Some("a".into());
    peer.spec.get_or_insert_default().priority = Some(100);
    core.upsert_pod(peer, now);
    let mut high = pending("high", "1");
    high.spec.get_or_insert_default().priority = Some(100);
    high.status.get_or_insert_default().nominated_node_name = Some("a".into());
    core.upsert_pod(high, now);
    assert_eq!(core.nominator().node_of("default/high"), Some("a"));
    match core.schedule_next(now) {
        Some(Outcome::Unschedulable {
            message,
            clear_nominated_node,
            ..
        }) => {
            assert!(message.contains("No preemption victims found"), "{message}");
            assert!(clear_nominated_node);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(core.nominator().node_of("default/high"), None);
}

/// A pod waiting for its victims to terminate keeps its nomination (kube's Noop).
#[test]
fn a_pod_not_eligible_to_preempt_keeps_its_nomination() {
    use k8s_openapi::api::core::v1::PodCondition;
    let now = Instant::now();
    let mut core = core();
    core.upsert_node(worker("a", "1"), now);
    let mut victim = pending("victim", "1");
    victim.spec.get_or_insert_default().node_name = Some("a".into());
    victim.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    victim.status.get_or_insert_default().conditions = Some(vec![PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("PreemptionByScheduler".into()),
        ..Default::default()
    }]);
    core.upsert_pod(victim, now);
    let mut high = pending("high", "1");
    high.spec.get_or_insert_default().priority = Some(100);
    high.status.get_or_insert_default().nominated_node_name = Some("a".into());
    core.upsert_pod(high, now);
    match core.schedule_next(now) {
        Some(Outcome::Unschedulable {
            message,
            clear_nominated_node,
            ..
        }) => {
            assert!(
                message.ends_with(
                    "preemption: not eligible due to a terminating pod on the nominated node."
                ),
                "{message}"
            );
            assert!(!clear_nominated_node);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(core.nominator().node_of("default/high"), Some("a"));
}

/// A placed pod's required anti-affinity keeps off a pod with no terms of its own: the walk
/// the cache's summary lets InterPodAffinity skip when no node holds such a pod must still
/// happen when one does, and stop mattering once that pod is gone.
#[test]
fn a_placed_pods_anti_affinity_repels_a_pod_without_terms() {
    let web = |mut pod: Pod| {
        pod.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        pod
    };
    let now = Instant::now();
    let mut core = core();
    for name in ["a", "b"] {
        let mut node = worker(name, "8");
        node.metadata.labels =
            Some([("kubernetes.io/hostname".to_string(), name.to_string())].into());
        core.upsert_node(node, now);
    }
    let mut guard = with_required_anti_affinity(web(pending("guard", "1")), "web");
    guard.spec.get_or_insert_default().node_name = Some("a".into());
    core.upsert_pod(guard, now);
    assert_eq!(core.cache().summary().nodes_with_required_anti_affinity, 1);
    for i in 0..4 {
        core.upsert_pod(web(pending(&format!("web-{i}"), "1")), now);
        assert_eq!(assumed_node(core.schedule_next(now)), "b", "web-{i}");
    }
    // Without the guard, a is the emptier node again.
    core.delete_pod("default/guard", now);
    assert_eq!(core.cache().summary().nodes_with_required_anti_affinity, 0);
    core.upsert_pod(web(pending("web-after", "1")), now);
    assert_eq!(assumed_node(core.schedule_next(now)), "a");
}
