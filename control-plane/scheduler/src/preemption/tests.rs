use super::*;
use crate::config::{PluginEnv, SchedulerConfig};
use crate::nominator::nominated_node_name;
use crate::schedule::{schedule_pod, Cursor, ScheduleError};
use crate::testing::{node, node_info, pod, view};

fn profile() -> Profile {
    let config = SchedulerConfig::default_config(&PluginEnv::default());
    config
        .profiles
        .into_iter()
        .next()
        .expect("the default profile")
}

fn running(name: &str, node_name: &str, cpu: &str, priority: i32) -> Pod {
    let mut pod = pod().name(name).req(&[("cpu", cpu)]).node(node_name).obj();
    pod.metadata.namespace = Some("default".into());
    pod.spec.get_or_insert_default().priority = Some(priority);
    pod
}

fn preemptor(cpu: &str, priority: i32) -> Pod {
    let mut pod = pod().name("preemptor").req(&[("cpu", cpu)]).obj();
    pod.metadata.namespace = Some("default".into());
    pod.spec.get_or_insert_default().priority = Some(priority);
    pod
}

fn worker(name: &str, cpu: &str, pods: Vec<Pod>) -> NodeInfo {
    node_info(
        node(name)
            .capacity(&[("cpu", cpu), ("memory", "8Gi"), ("pods", "110")])
            .obj(),
        pods,
    )
}

/// Runs the pod through a scheduling cycle (which must fail) and then preemption.
fn run(pod: &Pod, nodes: &[NodeInfo]) -> Result<Preemption, String> {
    let profile = profile();
    let mut cursor = Cursor::new(1);
    let fit = match schedule_pod(
        &profile,
        0,
        pod,
        view(nodes),
        &crate::nominator::Nominator::new(),
        &mut cursor,
        None,
    ) {
        Err(ScheduleError::Unschedulable(fit)) => fit,
        other => panic!("the pod should fit nowhere: {other:?}"),
    };
    preempt(&profile, pod, nodes, &fit, 0, nominated_node_name(pod))
        .map_err(|no| no.message().to_string())
}

fn names(pods: &[Pod]) -> Vec<String> {
    let mut names: Vec<String> = pods
        .iter()
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect();
    names.sort();
    names
}

#[test]
fn the_node_with_the_least_important_victims_is_chosen() {
    let nodes = [
        worker("node1", "2", vec![running("p1", "node1", "2", 10)]),
        worker("node2", "2", vec![running("p2", "node2", "2", 5)]),
    ];
    let chosen = run(&preemptor("1", 100), &nodes).expect("preempts");
    assert_eq!(chosen.node, "node2");
    assert_eq!(names(&chosen.victims), ["p2"]);
}

#[test]
fn fewer_victims_win_at_equal_priority() {
    let nodes = [
        worker(
            "node1",
            "2",
            vec![running("a", "node1", "1", 5), running("b", "node1", "1", 5)],
        ),
        worker("node2", "2", vec![running("c", "node2", "2", 5)]),
    ];
    let chosen = run(&preemptor("2", 100), &nodes).expect("preempts");
    assert_eq!(chosen.node, "node2");
    assert_eq!(names(&chosen.victims), ["c"]);
}

#[test]
fn the_reprieve_spares_every_pod_it_can_most_important_first() {
    let nodes = [worker(
        "node1",
        "3",
        vec![
            running("low", "node1", "1", 1),
            running("mid", "node1", "1", 5),
            running("high", "node1", "1", 9),
        ],
    )];
    let chosen = run(&preemptor("1", 100), &nodes).expect("preempts");
    assert_eq!(names(&chosen.victims), ["low"]);
}

#[test]
fn pods_of_equal_or_higher_priority_are_never_victims() {
    let nodes = [worker(
        "node1",
        "2",
        vec![running("peer", "node1", "2", 100)],
    )];
    assert_eq!(
        run(&preemptor("1", 100), &nodes).expect_err("no victims"),
        "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
}

#[test]
fn unresolvable_nodes_are_not_helpful() {
    let tainted = node_info(
        node("tainted")
            .capacity(&[("cpu", "8"), ("memory", "8Gi"), ("pods", "110")])
            .taint("dedicated", "gpu", "NoSchedule")
            .obj(),
        vec![running("x", "tainted", "1", 0)],
    );
    let nodes = [
        tainted,
        worker("small", "2", vec![running("y", "small", "2", 0)]),
    ];
    assert_eq!(
        run(&preemptor("4", 100), &nodes).expect_err("nothing to do"),
        "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    // Too small even when empty: unresolvable too, whatever runs there.
}

#[test]
fn preemption_policy_never_is_respected() {
    let nodes = [worker("node1", "2", vec![running("p", "node1", "2", 0)])];
    let mut never = preemptor("1", 100);
    never.spec.get_or_insert_default().preemption_policy = Some("Never".into());
    assert_eq!(
        run(&never, &nodes).expect_err("not eligible"),
        "preemption: not eligible due to preemptionPolicy=Never."
    );
}

#[test]
fn terminating_pods_are_not_victims() {
    let mut leaving = running("leaving", "node1", "2", 0);
    leaving.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    let nodes = [worker("node1", "2", vec![leaving])];
    assert!(run(&preemptor("1", 100), &nodes).is_err());
}

/// A victim an earlier preemption is evicting: deleted, with kube's DisruptionTarget
/// condition (`by_preemption`) or without it (a deletion for another reason).
fn terminating(mut pod: Pod, by_preemption: bool) -> Pod {
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    pod.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    ));
    if by_preemption {
        pod.status = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some(REASON_PREEMPTION_BY_SCHEDULER.into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
    }
    pod
}

fn nominated_to(mut pod: Pod, node: &str) -> Pod {
    pod.status.get_or_insert_default().nominated_node_name = Some(node.into());
    pod
}

/// kube's `PodEligibleToPreemptOthers`: the preemptor's victim on node1 is still
/// terminating, so it waits rather than evict `other` on node2 as well.
#[test]
fn a_pod_waiting_for_its_victims_does_not_preempt_again() {
    let nodes = [
        worker(
            "node1",
            "2",
            vec![terminating(running("victim", "node1", "2", 0), true)],
        ),
        worker("node2", "2", vec![running("other", "node2", "2", 0)]),
    ];
    let waiting = nominated_to(preemptor("2", 100), "node1");
    assert_eq!(
        run(&waiting, &nodes).expect_err("not eligible"),
        "preemption: not eligible due to a terminating pod on the nominated node."
    );
    // Without a nomination the same cluster is preempted on node2.
    let chosen = run(&preemptor("2", 100), &nodes).expect("preempts");
    assert_eq!(chosen.node, "node2");
}

/// Only a lower-priority pod evicted by preemption holds the preemptor back: one deleted for
/// another reason, or one of equal priority, does not.
#[test]
fn other_terminating_pods_do_not_hold_a_preemptor_back() {
    for (name, leaving) in [
        (
            "not by preemption",
            terminating(running("leaving", "node1", "2", 0), false),
        ),
        (
            "equal priority",
            terminating(running("leaving", "node1", "2", 100), true),
        ),
    ] {
        let nodes = [
            worker("node1", "2", vec![leaving]),
            worker("node2", "2", vec![running("other", "node2", "2", 0)]),
        ];
        let chosen = run(&nominated_to(preemptor("2", 100), "node1"), &nodes)
            .unwrap_or_else(|message| panic!("{name}: {message}"));
        assert_eq!(chosen.node, "node2", "{name}");
    }
}

/// A nominated node the filters now refuse for good (a taint since) no longer holds the
/// preemptor: it may preempt elsewhere, as kube's UnschedulableAndUnresolvable exception.
#[test]
fn an_unresolvable_nominated_node_does_not_hold_a_preemptor_back() {
    let tainted = node_info(
        node("node1")
            .capacity(&[("cpu", "2"), ("memory", "8Gi"), ("pods", "110")])
            .taint("dedicated", "gpu", "NoSchedule")
            .obj(),
        vec![terminating(running("victim", "node1", "2", 0), true)],
    );
    let nodes = [
        tainted,
        worker("node2", "2", vec![running("other", "node2", "2", 0)]),
    ];
    let chosen = run(&nominated_to(preemptor("2", 100), "node1"), &nodes).expect("preempts");
    assert_eq!(chosen.node, "node2");
}
