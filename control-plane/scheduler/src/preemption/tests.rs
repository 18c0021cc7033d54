use super::*;
use crate::config::{PluginEnv, SchedulerConfig};
use crate::schedule::{schedule_pod, Cursor, ScheduleError};
use crate::testing::{node, node_info, pod};

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
        nodes,
        &crate::nominator::Nominator::new(),
        &mut cursor,
        None,
    ) {
        Err(ScheduleError::Unschedulable(fit)) => fit,
        other => panic!("the pod should fit nowhere: {other:?}"),
    };
    preempt(&profile, pod, nodes, &fit, 0)
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
