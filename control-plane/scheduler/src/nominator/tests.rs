use super::*;
use crate::config::{PluginEnv, Profile, SchedulerConfig};
use crate::schedule::{schedule_pod, Cursor, ScheduleError};
use crate::testing::{cluster, node, pod, view};

fn profile() -> Profile {
    SchedulerConfig::default_config(&PluginEnv::default())
        .profiles
        .into_iter()
        .next()
        .expect("the default profile")
}

fn with_priority(mut pod: Pod, name: &str, priority: i32) -> Pod {
    pod.metadata.name = Some(name.into());
    pod.metadata.namespace = Some("default".into());
    pod.spec.get_or_insert_default().priority = Some(priority);
    pod
}

fn cpu_pod(name: &str, cpu: &str, priority: i32) -> Pod {
    with_priority(pod().req(&[("cpu", cpu)]).obj(), name, priority)
}

fn nominated(name: &str, cpu: &str, priority: i32, node: &str) -> Pod {
    let mut pod = cpu_pod(name, cpu, priority);
    pod.status.get_or_insert_default().nominated_node_name = Some(node.into());
    pod
}

fn worker(name: &str, cpu: &str) -> k8s_openapi::api::core::v1::Node {
    node(name)
        .capacity(&[("cpu", cpu), ("memory", "8Gi"), ("pods", "110")])
        .labels(&[("kubernetes.io/hostname", name)])
        .obj()
}

/// The node the pod lands on, or the FailedScheduling message.
fn schedule(pod: &Pod, nodes: &[NodeInfo], nominator: &Nominator) -> Result<String, String> {
    let mut cursor = Cursor::new(1);
    match schedule_pod(
        &profile(),
        0,
        pod,
        view(nodes),
        nominator,
        &mut cursor,
        None,
    ) {
        Ok(result) => Ok(result.node),
        Err(ScheduleError::Unschedulable(fit)) => Err(fit.message()),
        Err(other) => panic!("a plugin error: {other}"),
    }
}

/// kube's `RunFilterPluginsWithNominatedPods` (runtime/framework.go) and `addGENominatedPods`
/// as facts: nominated pods of priority ≥ the pod's count on their node, lower ones and the
/// pod itself do not, other nodes' nominations do not. Node `n1` has 2 CPUs, 1 taken by a
/// running pod; the pod asks for 1.
#[test]
fn nominated_pods_of_equal_or_higher_priority_hold_their_room() {
    struct Case {
        name: &'static str,
        pod_priority: i32,
        nominated: Vec<Pod>,
        want: Result<&'static str, &'static str>,
    }
    let insufficient = "0/1 nodes are available: 1 Insufficient cpu.";
    let cases = [
        Case {
            name: "node has no nominated pod",
            pod_priority: 0,
            nominated: vec![],
            want: Ok("n1"),
        },
        Case {
            name: "a higher-priority nominated pod takes the free CPU",
            pod_priority: 0,
            nominated: vec![nominated("high", "1", 1000, "n1")],
            want: Err(insufficient),
        },
        Case {
            name: "an equal-priority nominated pod takes it too (priority >= the pod's)",
            pod_priority: 5,
            nominated: vec![nominated("same", "1", 5, "n1")],
            want: Err(insufficient),
        },
        Case {
            name: "a lower-priority nominated pod yields its room",
            pod_priority: 1000,
            nominated: vec![nominated("low", "1", 0, "n1")],
            want: Ok("n1"),
        },
        Case {
            name: "a pod nominated to another node is not counted here",
            pod_priority: 0,
            nominated: vec![nominated("elsewhere", "1", 1000, "n2")],
            want: Ok("n1"),
        },
        Case {
            name: "the pod's own nomination is not in its way",
            pod_priority: 0,
            nominated: vec![nominated("incoming", "1", 0, "n1")],
            want: Ok("n1"),
        },
        Case {
            name: "a higher-priority nominated pod that leaves room is no obstacle",
            pod_priority: 0,
            nominated: vec![nominated("small", "0", 1000, "n1")],
            want: Ok("n1"),
        },
    ];
    for case in cases {
        let running = {
            let mut pod = cpu_pod("running", "1", 0);
            pod.spec.get_or_insert_default().node_name = Some("n1".into());
            pod
        };
        let nodes = cluster(vec![worker("n1", "2")], vec![running]);
        let mut nominator = Nominator::new();
        for pod in &case.nominated {
            nominator.update(None, pod);
        }
        let incoming = cpu_pod("incoming", "1", case.pod_priority);
        let got = schedule(&incoming, &nodes, &nominator);
        let want = case.want.map(str::to_string).map_err(str::to_string);
        assert_eq!(got, want, "{}", case.name);
    }
}

/// The second pass: a pod whose required affinity only a nominated pod satisfies passes with
/// the nominated pod counted, but the nominated pod may land elsewhere — the node must pass
/// without it too (kube's comment on "filters like pod affinity").
#[test]
fn a_node_must_also_pass_without_its_nominated_pods() {
    let nodes = cluster(vec![worker("n1", "4")], vec![]);
    let mut db = nominated("db", "1", 1000, "n1");
    db.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
    let mut nominator = Nominator::new();
    nominator.update(None, &db);
    let web: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c"}], "affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {"app": "db"}},
                "topologyKey": "kubernetes.io/hostname",
            }],
        }}},
    }))
    .expect("a pod");
    assert_eq!(
        schedule(&web, &nodes, &nominator),
        Err("0/1 nodes are available: 1 node(s) didn't match pod affinity rules.".to_string())
    );
    // Bound for real, the db pod satisfies the affinity.
    let mut bound = db.clone();
    bound.spec.get_or_insert_default().node_name = Some("n1".into());
    let nodes = cluster(vec![worker("n1", "4")], vec![bound]);
    assert_eq!(schedule(&web, &nodes, &Nominator::new()), Ok("n1".into()));
}

#[test]
fn a_nomination_follows_the_status_and_survives_a_stale_update() {
    let mut nominator = Nominator::new();
    let pending = cpu_pod("p", "1", 10);
    // Preemption nominates in memory; the watch then delivers a version from before the
    // status write, without a nomination: kept.
    nominator.nominate(&pending, "n1");
    nominator.update(Some(&pending), &pending);
    assert_eq!(nominator.node_of("default/p"), Some("n1"));
    // The status write comes back.
    let written = nominated("p", "1", 10, "n1");
    nominator.update(Some(&pending), &written);
    assert_eq!(nominator.pods_for_node("n1").len(), 1);
    // Someone moves it to another node.
    let moved = nominated("p", "1", 10, "n2");
    nominator.update(Some(&written), &moved);
    assert!(nominator.pods_for_node("n1").is_empty());
    assert_eq!(nominator.node_of("default/p"), Some("n2"));
    // The nomination is cleared in the status: gone.
    nominator.update(Some(&moved), &pending);
    assert_eq!(nominator.node_of("default/p"), None);
    assert!(nominator.is_empty());
}
