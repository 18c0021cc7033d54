//! kube-scheduler's `TestPreScoreSkip`, `TestPreScoreStateEmptyNodes` and
//! `TestPodTopologySpreadScore` (scoring_test.go).

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::scoring::{topology_normalizing_weight, PreScoreState, PRE_SCORE_STATE_KEY};
use super::tests::{
    bar, counts, exists, foo, foo_pods, labels_selector, list_plugin, list_plugin_with, make_node,
    make_pod, pod_on, services, sorted, spread, tainted_node, ConstraintExt, TestPod, NODE, ZONE,
};
use super::*;
use crate::framework::{Code, CycleState, ScorePlugin};
use crate::node_info::NodeInfo;
use crate::testing::cluster;

const SA: &str = SCHEDULE_ANYWAY;
const HOST: &str = LABEL_HOSTNAME;

fn foo_pod(name: &str) -> TestPod {
    make_pod(name).label("foo", "")
}

fn host_node(name: &str) -> Node {
    make_node(name, &[(HOST, name)])
}

fn zone_host_node(name: &str, zone: &str) -> Node {
    make_node(name, &[(ZONE, zone), (HOST, name)])
}

/// PreScore with `nodes` feasible among `nodes` + `failed`, Score on each feasible node, then
/// NormalizeScore, as the framework runs them.
fn run(
    plugin: &PodTopologySpread,
    pod: &Pod,
    nodes: Vec<Node>,
    failed: Vec<Node>,
    pods: Vec<Pod>,
) -> Vec<(String, i64)> {
    let feasible_count = nodes.len();
    let all = cluster([nodes, failed].concat(), pods);
    let feasible: Vec<&NodeInfo> = all.iter().take(feasible_count).collect();
    let mut state = CycleState::new();
    let status = plugin.pre_score(pod, &feasible, &all, &mut state);
    assert!(status.is_ok(), "pre_score: {status}");
    let mut scores: Vec<i64> = feasible
        .iter()
        .map(|node| plugin.score(&state, pod, node).expect("score"))
        .collect();
    plugin.normalize(&state, pod, &mut scores);
    feasible
        .iter()
        .map(|node| node.name().to_string())
        .zip(scores)
        .collect()
}

struct Case {
    name: &'static str,
    pod: Pod,
    pods: Vec<Pod>,
    /// The feasible nodes.
    nodes: Vec<Node>,
    /// The nodes the filters ruled out: their pods count, they are not scored.
    failed: Vec<Node>,
    /// The selectors of the Services in the cluster (kube's `objs`).
    services: &'static [&'static [(&'static str, &'static str)]],
    want: &'static [(&'static str, i64)],
}

fn case(
    name: &'static str,
    pod: Pod,
    pods: Vec<Pod>,
    nodes: Vec<Node>,
    failed: Vec<Node>,
    want: &'static [(&'static str, i64)],
) -> Case {
    Case {
        name,
        pod,
        pods,
        nodes,
        failed,
        services: &[],
        want,
    }
}

fn four_host_nodes() -> Vec<Node> {
    ["node-a", "node-b", "node-c", "node-d"]
        .into_iter()
        .map(host_node)
        .collect()
}

/// zone1: node-a, node-b; zone2: node-x, node-y (each with its hostname).
fn zone_host_nodes(names: &[(&str, &str)]) -> Vec<Node> {
    names
        .iter()
        .map(|(name, zone)| zone_host_node(name, zone))
        .collect()
}

/// The nodes of kube's inclusion-policy score cases: node-a and node-b labelled `foo`, or
/// node-c tainted.
fn policy_nodes(taint_c: bool) -> Vec<Node> {
    if taint_c {
        vec![
            make_node("node-a", &[(NODE, "node-a")]),
            make_node("node-b", &[(NODE, "node-b")]),
            tainted_node("node-c", &[(NODE, "node-c")]),
        ]
    } else {
        vec![
            make_node("node-a", &[(NODE, "node-a"), ("foo", "")]),
            make_node("node-b", &[(NODE, "node-b"), ("foo", "")]),
            make_node("node-c", &[(NODE, "node-c")]),
        ]
    }
}

/// The pods of kube's different-labelSelectors cases: `P{foo}` on node-a, `P{foo, bar}` on
/// node-b, `P{foo}` and `P{bar}` on node-y.
fn mixed_pods() -> Vec<Pod> {
    vec![
        pod_on("p-a1", "node-a", &[("foo", "")]),
        pod_on("p-b1", "node-b", &[("foo", ""), ("bar", "")]),
        pod_on("p-y1", "node-y", &[("foo", "")]),
        pod_on("p-y2", "node-y", &[("bar", "")]),
    ]
}

/// kube-scheduler's `TestPodTopologySpreadScore`, but the two cases with MatchLabelKeys
/// disabled (on by default since 1.27; keel has no switch). kube runs it with System
/// defaulting, hence `PodTopologySpread::default()`.
#[test]
fn pod_topology_spread_score() {
    let host_foo = |max_skew| spread(max_skew, HOST, SA, foo());
    let node_policy_pods = || foo_pods(&[("node-a", 2), ("node-b", 1), ("node-c", 1)]);
    let cases = vec![
        case(
            "one constraint on node, no existing pods",
            foo_pod("p").spread(host_foo(1)).obj(),
            vec![],
            vec![host_node("node-a"), host_node("node-b")],
            vec![],
            &[("node-a", 100), ("node-b", 100)],
        ),
        // A single candidate scores 100.
        case(
            "one constraint on node, only one node is candidate",
            foo_pod("p").spread(host_foo(1)).obj(),
            foo_pods(&[("node-a", 2), ("node-b", 1)]),
            vec![host_node("node-a")],
            vec![host_node("node-b")],
            &[("node-a", 100)],
        ),
        case(
            "one constraint on node, all nodes have the same number of matching pods",
            foo_pod("p").spread(host_foo(1)).obj(),
            foo_pods(&[("node-a", 1), ("node-b", 1)]),
            vec![host_node("node-a"), host_node("node-b")],
            vec![],
            &[("node-a", 100), ("node-b", 100)],
        ),
        // Matching pods spread as 2/1/0/3.
        case(
            "one constraint on node, all 4 nodes are candidates",
            foo_pod("p").spread(host_foo(1)).obj(),
            foo_pods(&[("node-a", 2), ("node-b", 1), ("node-d", 3)]),
            four_host_nodes(),
            vec![],
            &[("node-a", 20), ("node-b", 60), ("node-c", 100), ("node-d", 0)],
        ),
        case(
            "one constraint on node, null selector",
            foo_pod("p").spread(spread(1, HOST, SA, None)).obj(),
            foo_pods(&[("node-a", 2), ("node-b", 1), ("node-d", 3)]),
            four_host_nodes(),
            vec![],
            &[
                ("node-a", 100),
                ("node-b", 100),
                ("node-c", 100),
                ("node-d", 100),
            ],
        ),
        case(
            "one constraint on node, all 4 nodes are candidates, maxSkew=2",
            foo_pod("p").spread(host_foo(2)).obj(),
            foo_pods(&[("node-a", 2), ("node-b", 1), ("node-d", 3)]),
            four_host_nodes(),
            vec![],
            &[("node-a", 33), ("node-b", 66), ("node-c", 100), ("node-d", 16)],
        ),
        // Matching pods spread as 4/3/2/1.
        case(
            "one constraint on node, all 4 nodes are candidates, maxSkew=3",
            foo_pod("p").spread(host_foo(3)).obj(),
            foo_pods(&[("node-a", 4), ("node-b", 3), ("node-c", 2), ("node-d", 1)]),
            four_host_nodes(),
            vec![],
            &[("node-a", 44), ("node-b", 66), ("node-c", 77), ("node-d", 100)],
        ),
        // The same scores as one hostname constraint with maxSkew 3: nodes without a zone
        // keep spreading by hostname under the System defaults.
        Case {
            name: "system defaulting, nodes don't have zone, pods match service",
            pod: foo_pod("p").obj(),
            pods: foo_pods(&[("node-a", 4), ("node-b", 3), ("node-c", 2), ("node-d", 1)]),
            nodes: four_host_nodes(),
            failed: vec![],
            services: &[&[("foo", "")]],
            want: &[("node-a", 44), ("node-b", 66), ("node-c", 77), ("node-d", 100)],
        },
        // Matching pods spread as 4/2/1/~3~ (node-y is not a candidate).
        case(
            "one constraint on node, 3 out of 4 nodes are candidates",
            foo_pod("p").spread(host_foo(1)).obj(),
            foo_pods(&[("node-a", 4), ("node-b", 2), ("node-x", 1), ("node-y", 3)]),
            vec![host_node("node-a"), host_node("node-b"), host_node("node-x")],
            vec![host_node("node-y")],
            &[("node-a", 33), ("node-b", 83), ("node-x", 100)],
        ),
        // Matching pods spread as 4/?2?/1/~3~: node-b lacks the hostname label and scores 0.
        case(
            "one constraint on node, 3 out of 4 nodes are candidates, one node doesn't match topology key",
            foo_pod("p").spread(host_foo(1)).obj(),
            foo_pods(&[("node-a", 4), ("node-b", 2), ("node-x", 1), ("node-y", 3)]),
            vec![
                host_node("node-a"),
                make_node("node-b", &[("n", "node-b")]),
                host_node("node-x"),
            ],
            vec![host_node("node-y")],
            &[("node-a", 16), ("node-b", 0), ("node-x", 100)],
        ),
        // Matching pods spread as 4/2/1/~3~.
        case(
            "one constraint on zone, 3 out of 4 nodes are candidates",
            foo_pod("p").spread(spread(1, ZONE, SA, foo())).obj(),
            foo_pods(&[("node-a", 4), ("node-b", 2), ("node-x", 1), ("node-y", 3)]),
            zone_host_nodes(&[("node-a", "zone1"), ("node-b", "zone1"), ("node-x", "zone2")]),
            zone_host_nodes(&[("node-y", "zone2")]),
            &[("node-a", 75), ("node-b", 75), ("node-x", 100)],
        ),
        // Matching pods spread as 2/~1~/2/~4~.
        case(
            "two Constraints on zone and node, 2 out of 4 nodes are candidates",
            foo_pod("p")
                .spread(spread(1, ZONE, SA, foo()))
                .spread(host_foo(1))
                .obj(),
            foo_pods(&[("node-a", 2), ("node-b", 1), ("node-x", 2), ("node-y", 4)]),
            zone_host_nodes(&[("node-a", "zone1"), ("node-x", "zone2")]),
            zone_host_nodes(&[("node-b", "zone1"), ("node-y", "zone2")]),
            &[("node-a", 100), ("node-x", 63)],
        ),
        // zone (foo): the matching pods spread as 2/2/1/1 over the nodes; node (bar): 0/1/0/1.
        case(
            "two Constraints on zone and node, with different labelSelectors",
            foo_pod("p")
                .label("bar", "")
                .spread(spread(1, ZONE, SA, foo()))
                .spread(spread(1, HOST, SA, bar()))
                .obj(),
            mixed_pods(),
            zone_host_nodes(&[
                ("node-a", "zone1"),
                ("node-b", "zone1"),
                ("node-x", "zone2"),
                ("node-y", "zone2"),
            ]),
            vec![],
            &[("node-a", 60), ("node-b", 20), ("node-x", 100), ("node-y", 60)],
        ),
        // zone: 0/0/2/2; node: 0/1/0/1.
        case(
            "two Constraints on zone and node, with different labelSelectors, some nodes have 0 pods",
            foo_pod("p")
                .label("bar", "")
                .spread(spread(1, ZONE, SA, foo()))
                .spread(spread(1, HOST, SA, bar()))
                .obj(),
            vec![
                pod_on("p-b1", "node-b", &[("bar", "")]),
                pod_on("p-x1", "node-x", &[("foo", "")]),
                pod_on("p-y1", "node-y", &[("foo", ""), ("bar", "")]),
            ],
            zone_host_nodes(&[
                ("node-a", "zone1"),
                ("node-b", "zone1"),
                ("node-x", "zone2"),
                ("node-y", "zone2"),
            ]),
            vec![],
            &[("node-a", 100), ("node-b", 60), ("node-x", 40), ("node-y", 0)],
        ),
        // zone: 2/2/1/~1~; node: 0/1/0/~1~.
        case(
            "two Constraints on zone and node, with different labelSelectors, 3 out of 4 nodes are candidates",
            foo_pod("p")
                .label("bar", "")
                .spread(spread(1, ZONE, SA, foo()))
                .spread(spread(1, HOST, SA, bar()))
                .obj(),
            mixed_pods(),
            zone_host_nodes(&[("node-a", "zone1"), ("node-b", "zone1"), ("node-x", "zone2")]),
            zone_host_nodes(&[("node-y", "zone2")]),
            &[("node-a", 50), ("node-b", 25), ("node-x", 100)],
        ),
        case(
            "existing pods in a different namespace do not count",
            foo_pod("p").spread(host_foo(1)).obj(),
            vec![
                foo_pod("p-a1").namespace("ns1").node("node-a").obj(),
                foo_pod("p-a2").node("node-a").obj(),
                foo_pod("p-b1").node("node-b").obj(),
                foo_pod("p-b2").node("node-b").obj(),
            ],
            vec![host_node("node-a"), host_node("node-b")],
            vec![],
            &[("node-a", 100), ("node-b", 33)],
        ),
        case(
            "terminating Pods should be excluded",
            foo_pod("p").spread(host_foo(1)).obj(),
            vec![
                foo_pod("p-a").node("node-a").terminating().obj(),
                foo_pod("p-b").node("node-b").obj(),
            ],
            vec![host_node("node-a"), host_node("node-b")],
            vec![],
            &[("node-a", 100), ("node-b", 0)],
        ),
        // Artificial: the API server refuses minDomains with ScheduleAnyway.
        case(
            "minDomains has no effect when ScheduleAnyway",
            foo_pod("p")
                .spread(spread(2, NODE, SA, foo()).with_min_domains(10))
                .obj(),
            foo_pods(&[("node-a", 2), ("node-b", 2), ("node-c", 1)]),
            vec![
                make_node("node-a", &[(NODE, "node-a")]),
                make_node("node-b", &[(NODE, "node-b")]),
                make_node("node-c", &[(NODE, "node-c")]),
            ],
            vec![],
            &[("node-a", 75), ("node-b", 75), ("node-c", 100)],
        ),
        case(
            "NodeAffinityPolicy honoed with labelSelectors",
            foo_pod("p")
                .node_selector(&[("foo", "")])
                .spread(spread(1, NODE, SA, foo()))
                .obj(),
            node_policy_pods(),
            policy_nodes(false),
            vec![],
            &[("node-a", 0), ("node-b", 33), ("node-c", 100)],
        ),
        case(
            "NodeAffinityPolicy ignored with labelSelectors",
            foo_pod("p")
                .node_selector(&[("foo", "")])
                .spread(spread(1, NODE, SA, foo()).with_affinity_policy("Ignore"))
                .obj(),
            node_policy_pods(),
            policy_nodes(false),
            vec![],
            &[("node-a", 66), ("node-b", 100), ("node-c", 100)],
        ),
        case(
            "NodeAffinityPolicy honoed with nodeAffinity",
            foo_pod("p")
                .node_affinity_in("foo", &[""])
                .spread(spread(1, NODE, SA, foo()))
                .obj(),
            node_policy_pods(),
            policy_nodes(false),
            vec![],
            &[("node-a", 0), ("node-b", 33), ("node-c", 100)],
        ),
        case(
            "NodeAffinityPolicy ignored with nodeAffinity",
            foo_pod("p")
                .node_affinity_in("foo", &[""])
                .spread(spread(1, NODE, SA, foo()).with_affinity_policy("Ignore"))
                .obj(),
            node_policy_pods(),
            policy_nodes(false),
            vec![],
            &[("node-a", 66), ("node-b", 100), ("node-c", 100)],
        ),
        case(
            "NodeTaintsPolicy honored",
            foo_pod("p")
                .spread(spread(1, NODE, SA, foo()).with_taints_policy("Honor"))
                .obj(),
            node_policy_pods(),
            policy_nodes(true),
            vec![],
            &[("node-a", 0), ("node-b", 33), ("node-c", 100)],
        ),
        case(
            "NodeTaintsPolicy ignored",
            foo_pod("p").spread(spread(1, NODE, SA, foo())).obj(),
            node_policy_pods(),
            policy_nodes(true),
            vec![],
            &[("node-a", 66), ("node-b", 100), ("node-c", 100)],
        ),
        case(
            "matchLabelKeys ANDed with LabelSelector when LabelSelector is empty",
            foo_pod("p")
                .label("bar", "")
                .spread(spread(1, ZONE, SA, labels_selector(&[])).with_match_label_keys(&["foo"]))
                .spread(spread(1, HOST, SA, labels_selector(&[])).with_match_label_keys(&["bar"]))
                .obj(),
            vec![
                pod_on("p-a1", "node-a", &[("foo", "")]),
                pod_on("p-b1", "node-b", &[("foo", ""), ("bar", "")]),
                pod_on("p-y1", "node-c", &[("foo", "")]),
                pod_on("p-y2", "node-c", &[("bar", "")]),
            ],
            zone_host_nodes(&[
                ("node-a", "zone1"),
                ("node-b", "zone1"),
                ("node-c", "zone2"),
                ("node-d", "zone2"),
            ]),
            vec![],
            &[("node-a", 60), ("node-b", 20), ("node-c", 60), ("node-d", 100)],
        ),
        case(
            "matchLabelKeys ANDed with LabelSelector when LabelSelector isn't empty",
            foo_pod("p")
                .label("bar", "")
                .label("baz", "")
                .spread(spread(1, ZONE, SA, foo()))
                .spread(spread(1, HOST, SA, bar()).with_match_label_keys(&["baz"]))
                .obj(),
            vec![
                pod_on("p-a1", "node-a", &[("foo", "")]),
                pod_on("p-b1", "node-b", &[("foo", ""), ("bar", ""), ("baz", "")]),
                pod_on("p-c1", "node-c", &[("foo", "")]),
                pod_on("p-c2", "node-c", &[("bar", "")]),
                pod_on("p-d3", "node-c", &[("bar", ""), ("baz", "")]),
            ],
            zone_host_nodes(&[
                ("node-a", "zone1"),
                ("node-b", "zone1"),
                ("node-c", "zone2"),
                ("node-d", "zone2"),
            ]),
            vec![],
            &[("node-a", 60), ("node-b", 20), ("node-c", 60), ("node-d", 100)],
        ),
    ];
    for case in cases {
        let plugin = PodTopologySpread::default().with_default_selector(services(case.services));
        let got = run(&plugin, &case.pod, case.nodes, case.failed, case.pods);
        let want: Vec<(String, i64)> = case
            .want
            .iter()
            .map(|(name, score)| (name.to_string(), *score))
            .collect();
        assert_eq!(got, want, "{}", case.name);
    }
}

/// A source for a pod owned by a ReplicaSet whose selector is `foo` exists.
fn replica_set_foo() -> impl Fn(&Pod) -> LabelSelector + Send + Sync + 'static {
    |_: &Pod| exists("foo")
}

struct StateCase {
    name: &'static str,
    pod: Pod,
    nodes: Vec<Node>,
    plugin: PodTopologySpread,
    /// Each constraint's (topology key, maxSkew).
    constraints: &'static [(&'static str, i32)],
    ignored: &'static [&'static str],
    /// Per constraint, the registered domains (all at 0: the cluster has no pod).
    domains: &'static [&'static [&'static str]],
    /// Per constraint, the size of the topology for its weight.
    sizes: &'static [usize],
}

/// kube-scheduler's `TestPreScoreStateEmptyNodes` (PreScore on a cluster without pods, every
/// node feasible), but the cases of disabled gates.
#[test]
fn pre_score_state_empty_nodes() {
    let two_zones = || {
        zone_host_nodes(&[
            ("node-a", "zone1"),
            ("node-b", "zone1"),
            ("node-x", "zone2"),
        ])
    };
    let cases = vec![
        StateCase {
            name: "normal case",
            pod: foo_pod("p")
                .spread(spread(1, ZONE, SA, foo()))
                .spread(spread(1, HOST, SA, foo()))
                .obj(),
            nodes: two_zones(),
            plugin: list_plugin(),
            constraints: &[(ZONE, 1), (HOST, 1)],
            ignored: &[],
            domains: &[&["zone1", "zone2"], &[]],
            sizes: &[2, 3],
        },
        StateCase {
            name: "null selector",
            pod: foo_pod("p").spread(spread(1, ZONE, SA, None)).obj(),
            nodes: two_zones(),
            plugin: list_plugin(),
            constraints: &[(ZONE, 1)],
            ignored: &[],
            domains: &[&["zone1", "zone2"]],
            sizes: &[2],
        },
        StateCase {
            name: "node-x doesn't have label zone",
            pod: foo_pod("p")
                .spread(spread(1, ZONE, SA, foo()))
                .spread(spread(1, HOST, SA, bar()))
                .obj(),
            nodes: vec![
                zone_host_node("node-a", "zone1"),
                zone_host_node("node-b", "zone1"),
                host_node("node-x"),
            ],
            plugin: list_plugin(),
            constraints: &[(ZONE, 1), (HOST, 1)],
            ignored: &["node-x"],
            domains: &[&["zone1"], &[]],
            sizes: &[1, 2],
        },
        // Nodes without a zone are not excluded: they are the zone "".
        StateCase {
            name: "system default constraints and a replicaset",
            pod: make_pod("p").label("foo", "tar").label("baz", "sup").obj(),
            nodes: vec![
                make_node("node-a", &[(HOST, "node-a"), (LABEL_TOPOLOGY_ZONE, "mars")]),
                make_node("node-b", &[(HOST, "node-b"), (LABEL_TOPOLOGY_ZONE, "mars")]),
                host_node("node-c"),
                host_node("node-d"),
            ],
            plugin: PodTopologySpread::default().with_default_selector(replica_set_foo()),
            constraints: &[(HOST, 3), (LABEL_TOPOLOGY_ZONE, 5)],
            ignored: &[],
            domains: &[&[], &["mars", ""]],
            sizes: &[4, 2],
        },
        StateCase {
            name: "default constraints and a replicaset",
            pod: make_pod("p").label("foo", "tar").label("baz", "sup").obj(),
            nodes: vec![make_node(
                "node-a",
                &[("rack", "rack1"), (HOST, "node-a"), ("planet", "mars")],
            )],
            plugin: list_plugin_with(vec![
                spread(1, HOST, SA, None),
                spread(2, "rack", DO_NOT_SCHEDULE, None),
                spread(2, "planet", SA, None),
            ])
            .with_default_selector(replica_set_foo()),
            constraints: &[(HOST, 1), ("planet", 2)],
            ignored: &[],
            domains: &[&[], &["mars"]],
            sizes: &[1, 1],
        },
        StateCase {
            name: "default constraints and a replicaset, but pod has constraints",
            pod: make_pod("p")
                .label("foo", "bar")
                .label("baz", "sup")
                .spread(spread(1, ZONE, DO_NOT_SCHEDULE, bar()))
                .spread(spread(2, "planet", SA, labels_selector(&[("baz", "sup")])))
                .obj(),
            nodes: vec![make_node(
                "node-a",
                &[("planet", "mars"), ("galaxy", "andromeda")],
            )],
            plugin: list_plugin_with(vec![spread(2, "galaxy", SA, None)])
                .with_default_selector(replica_set_foo()),
            constraints: &[("planet", 2)],
            ignored: &[],
            domains: &[&["mars"]],
            sizes: &[1],
        },
        StateCase {
            name: "NodeAffinityPolicy honored with labelSelectors",
            pod: foo_pod("p")
                .node_selector(&[("foo", "")])
                .spread(spread(1, ZONE, SA, bar()))
                .obj(),
            nodes: vec![
                make_node("node-a", &[(ZONE, "zone1"), ("foo", ""), (HOST, "node-a")]),
                make_node("node-b", &[(ZONE, "zone1"), ("foo", ""), (HOST, "node-b")]),
                zone_host_node("node-x", "zone2"),
            ],
            plugin: list_plugin(),
            constraints: &[(ZONE, 1)],
            ignored: &[],
            domains: &[&["zone1", "zone2"]],
            sizes: &[2],
        },
        StateCase {
            name: "NodeTaintsPolicy honored",
            pod: foo_pod("p")
                .spread(spread(1, ZONE, SA, bar()).with_taints_policy("Honor"))
                .obj(),
            nodes: vec![
                make_node("node-a", &[(ZONE, "zone1"), ("foo", ""), (HOST, "node-a")]),
                make_node("node-b", &[(ZONE, "zone1"), ("foo", ""), (HOST, "node-b")]),
                tainted_node("node-x", &[(ZONE, "zone2"), (HOST, "node-x")]),
            ],
            plugin: list_plugin(),
            constraints: &[(ZONE, 1)],
            ignored: &[],
            domains: &[&["zone1", "zone2"]],
            sizes: &[2],
        },
    ];
    for case in cases {
        let all = cluster(case.nodes, vec![]);
        let feasible: Vec<&NodeInfo> = all.iter().collect();
        let mut state = CycleState::new();
        let status = case
            .plugin
            .pre_score(&case.pod, &feasible, &all, &mut state);
        assert!(status.is_ok(), "{}: {status}", case.name);
        let got = state
            .read::<PreScoreState>(PRE_SCORE_STATE_KEY)
            .expect("pre_score writes its state");
        let constraints: Vec<(&str, i32)> = got
            .constraints
            .iter()
            .map(|c| (c.topology_key.as_str(), c.max_skew))
            .collect();
        assert_eq!(constraints, case.constraints, "{}: constraints", case.name);
        let mut ignored: Vec<&str> = got.ignored_nodes.iter().map(String::as_str).collect();
        ignored.sort_unstable();
        assert_eq!(ignored, case.ignored, "{}: ignored nodes", case.name);
        let domains: Vec<Vec<(String, i64)>> = got.pod_counts.iter().map(sorted).collect();
        let want_domains: Vec<Vec<(String, i64)>> = case
            .domains
            .iter()
            .map(|values| {
                let zeros: Vec<(&str, i64)> = values.iter().map(|value| (*value, 0)).collect();
                counts(&zeros)
            })
            .collect();
        assert_eq!(domains, want_domains, "{}: domains", case.name);
        let weights: Vec<f64> = case
            .sizes
            .iter()
            .map(|size| topology_normalizing_weight(*size))
            .collect();
        assert_eq!(got.weights, weights, "{}: weights", case.name);
    }
}

/// kube-scheduler's `TestPreScoreSkip`: no soft constraint, kube skips the plugin; keel
/// leaves an empty state and every node scores 0.
#[test]
fn pre_score_skip() {
    let cases: Vec<(&str, Pod, Vec<Node>, PodTopologySpread)> = vec![
        (
            "the pod doesn't have soft topology spread Constraints",
            make_pod("p").namespace("default").obj(),
            vec![host_node("node-a"), host_node("node-b")],
            list_plugin(),
        ),
        (
            "default constraints and a replicaset that doesn't match",
            make_pod("p")
                .namespace("default")
                .label("foo", "bar")
                .label("baz", "sup")
                .obj(),
            vec![make_node("node-a", &[("planet", "mars")])],
            // The pod's owner rs2 does not exist: no selector.
            list_plugin_with(vec![spread(2, "planet", SA, None)])
                .with_default_selector(|_: &Pod| LabelSelector::default()),
        ),
    ];
    for (name, pod, nodes, plugin) in cases {
        let all = cluster(nodes, vec![]);
        let feasible: Vec<&NodeInfo> = all.iter().collect();
        let mut state = CycleState::new();
        // kube's TestPreScoreSkip wants Skip.
        assert_eq!(
            plugin.pre_score(&pod, &feasible, &all, &mut state).code,
            crate::framework::Code::Skip,
            "{name}"
        );
        let got = state
            .read::<PreScoreState>(PRE_SCORE_STATE_KEY)
            .expect("pre_score writes its state");
        assert!(got.constraints.is_empty(), "{name}");
        let mut scores: Vec<i64> = feasible
            .iter()
            .map(|node| plugin.score(&state, &pod, node).expect("score"))
            .collect();
        plugin.normalize(&state, &pod, &mut scores);
        assert!(scores.iter().all(|score| *score == 0), "{name}: {scores:?}");
    }
}

/// Score without PreScore's state is an error naming the state, in kube's words.
#[test]
fn score_without_pre_score() {
    let pod = foo_pod("p").spread(spread(1, HOST, SA, foo())).obj();
    let node = crate::testing::node_info(host_node("node-a"), vec![]);
    let status = list_plugin()
        .score(&CycleState::new(), &pod, &node)
        .expect_err("no state");
    assert_eq!(status.code, Code::Error);
    assert_eq!(
        status.message(),
        r#"error reading "PreScorePodTopologySpread" from cycleState: not found"#
    );
}

/// The raw scores before normalization: `round(Σ count × ln(domains + 2) + maxSkew − 1)`.
#[test]
fn raw_scores() {
    let pod = foo_pod("p").spread(spread(3, HOST, SA, foo())).obj();
    let all = cluster(
        vec![host_node("node-a"), host_node("node-b")],
        foo_pods(&[("node-a", 4)]),
    );
    let feasible: Vec<&NodeInfo> = all.iter().collect();
    let plugin = list_plugin();
    let mut state = CycleState::new();
    assert!(plugin
        .pre_score(&pod, &feasible, &all, &mut state)
        .is_success());
    // ln(4) = 1.386…: 4 × 1.386 + 2 = 7.55 → 8; 0 + 2 = 2.
    assert_eq!(plugin.score(&state, &pod, &all[0]), Ok(8));
    assert_eq!(plugin.score(&state, &pod, &all[1]), Ok(2));
}
