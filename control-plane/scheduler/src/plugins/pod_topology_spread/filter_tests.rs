//! kube-scheduler's `TestSingleConstraint`, `TestMultipleConstraints` and
//! `TestPreFilterDisabled` (filtering_test.go).

use k8s_openapi::api::core::v1::{Node, Pod};

use super::tests::{
    bar, foo, foo_pods, four_zone_nodes, list_plugin, make_node, make_pod, pod_on, pre_filter,
    spread, tainted_node, zone_node, ConstraintExt, NODE, ZONE,
};
use super::*;
use crate::framework::{Code, CycleState, FilterPlugin, Status};
use crate::testing::cluster;

const OK: Code = Code::Success;
const NO: Code = Code::Unschedulable;
const NEVER: Code = Code::UnschedulableAndUnresolvable;
const DNS: &str = DO_NOT_SCHEDULE;

struct Case {
    name: &'static str,
    pod: Pod,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    /// Each node's filter code.
    want: &'static [(&'static str, Code)],
}

fn case(
    name: &'static str,
    pod: Pod,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    want: &'static [(&'static str, Code)],
) -> Case {
    Case {
        name,
        pod,
        nodes,
        pods,
        want,
    }
}

/// As kube's tests: PreFilter over the cluster, then Filter on every node, alone (no other
/// plugin rules a node out, hence the cases where kube notes "in real case, it's false").
fn check(cases: Vec<Case>) {
    let plugin = list_plugin();
    for case in cases {
        let nodes = cluster(case.nodes, case.pods);
        let state = pre_filter(&plugin, &case.pod, &nodes);
        assert_eq!(
            nodes.len(),
            case.want.len(),
            "{}: one code per node",
            case.name
        );
        for node in &nodes {
            let want = case
                .want
                .iter()
                .find(|(name, _)| *name == node.name())
                .map(|(_, code)| *code);
            let got = plugin.filter(&state, &case.pod, node).code;
            assert_eq!(Some(got), want, "{}: {}", case.name, node.name());
        }
    }
}

fn foo_pod(name: &str) -> super::tests::TestPod {
    make_pod(name).label("foo", "")
}

/// The nodes of kube's inclusion-policy filter cases: node-a, node-b and node-x labelled
/// `foo`, node-y not (or tainted instead).
fn policy_nodes(taint_y: bool) -> Vec<Node> {
    let y = if taint_y {
        tainted_node("node-y", &[(NODE, "node-y")])
    } else {
        make_node("node-y", &[(NODE, "node-y")])
    };
    vec![
        make_node("node-a", &[(NODE, "node-a"), ("foo", "")]),
        make_node("node-b", &[(NODE, "node-b"), ("foo", "")]),
        make_node("node-x", &[(NODE, "node-x"), ("foo", "")]),
        y,
    ]
}

/// One `foo` pod on node-a, node-b and node-y.
fn a1_b1_y1() -> Vec<Pod> {
    foo_pods(&[("node-a", 1), ("node-b", 1), ("node-y", 1)])
}

/// kube-scheduler's `TestSingleConstraint`, every case (kube runs some with the
/// NodeInclusionPolicy gate off; with no node selector or taint involved the answer is the
/// same with it on, which is keel's only mode).
#[test]
fn single_constraint() {
    let zone_foo = |max_skew| spread(max_skew, ZONE, DNS, foo());
    let node_foo = |max_skew| spread(max_skew, NODE, DNS, foo());
    let nodes_abc = || {
        vec![
            make_node("node-a", &[(NODE, "node-a")]),
            make_node("node-b", &[(NODE, "node-b")]),
            make_node("node-c", &[(NODE, "node-c")]),
        ]
    };
    let cases = vec![
        case(
            "no existing pods",
            foo_pod("p").spread(zone_foo(1)).obj(),
            four_zone_nodes(),
            vec![],
            &[("node-a", OK), ("node-b", OK), ("node-x", OK), ("node-y", OK)],
        ),
        case(
            "no existing pods, incoming pod doesn't match itself",
            foo_pod("p").spread(spread(1, ZONE, DNS, bar())).obj(),
            four_zone_nodes(),
            vec![],
            &[("node-a", OK), ("node-b", OK), ("node-x", OK), ("node-y", OK)],
        ),
        case(
            "existing pods in a different namespace do not count",
            foo_pod("p").spread(zone_foo(1)).obj(),
            four_zone_nodes(),
            vec![
                foo_pod("p-a1").namespace("ns1").node("node-a").obj(),
                foo_pod("p-b1").namespace("ns2").node("node-a").obj(),
                foo_pod("p-x1").node("node-x").obj(),
                foo_pod("p-y1").node("node-y").obj(),
            ],
            &[("node-a", OK), ("node-b", OK), ("node-x", NO), ("node-y", NO)],
        ),
        case(
            "existing pods do not match null selector",
            foo_pod("p").spread(spread(1, ZONE, DNS, None)).obj(),
            four_zone_nodes(),
            foo_pods(&[("node-x", 1), ("node-y", 1)]),
            &[("node-a", OK), ("node-b", OK), ("node-x", OK), ("node-y", OK)],
        ),
        case(
            "pods spread across zones as 3/3, all nodes fit",
            foo_pod("p").spread(zone_foo(1)).obj(),
            four_zone_nodes(),
            foo_pods(&[("node-a", 2), ("node-b", 1), ("node-y", 3)]),
            &[("node-a", OK), ("node-b", OK), ("node-x", OK), ("node-y", OK)],
        ),
        case(
            "pods spread across zones as 1/2 due to absence of label 'zone' on node-b",
            foo_pod("p").spread(zone_foo(1)).obj(),
            vec![
                zone_node("node-a", "zone1"),
                make_node("node-b", &[("zon", "zone1"), (NODE, "node-b")]),
                zone_node("node-x", "zone2"),
                zone_node("node-y", "zone2"),
            ],
            foo_pods(&[("node-a", 1), ("node-b", 1), ("node-x", 1), ("node-y", 1)]),
            &[
                ("node-a", OK),
                ("node-b", NEVER),
                ("node-x", NO),
                ("node-y", NO),
            ],
        ),
        case(
            "pod cannot be scheduled as all nodes don't have label 'rack'",
            foo_pod("p").spread(spread(1, "rack", DNS, foo())).obj(),
            vec![zone_node("node-a", "zone1"), zone_node("node-x", "zone2")],
            vec![],
            &[("node-a", NEVER), ("node-x", NEVER)],
        ),
        case(
            "pods spread across nodes as 2/1/0/3, only node-x fits",
            foo_pod("p").spread(node_foo(1)).obj(),
            four_zone_nodes(),
            foo_pods(&[("node-a", 2), ("node-b", 1), ("node-y", 3)]),
            &[("node-a", NO), ("node-b", NO), ("node-x", OK), ("node-y", NO)],
        ),
        case(
            "pods spread across nodes as 2/1/0/3, maxSkew is 2, node-b and node-x fit",
            foo_pod("p").spread(node_foo(2)).obj(),
            four_zone_nodes(),
            foo_pods(&[("node-a", 2), ("node-b", 1), ("node-y", 3)]),
            &[("node-a", NO), ("node-b", OK), ("node-x", OK), ("node-y", NO)],
        ),
        // The incoming pod lacks `foo`: placing it changes no count.
        case(
            "pods spread across nodes as 2/1/0/3, but pod doesn't match itself",
            make_pod("p").label("bar", "").spread(node_foo(1)).obj(),
            four_zone_nodes(),
            foo_pods(&[("node-a", 2), ("node-b", 1), ("node-y", 3)]),
            &[("node-a", NO), ("node-b", OK), ("node-x", OK), ("node-y", NO)],
        ),
        // Only node-a and node-y are counted (2/~1~/~0~/3); node-b and node-x pass here,
        // NodeAffinity rules them out in a real cycle.
        case(
            "incoming pod has nodeAffinity, pods spread as 2/~1~/~0~/3, hence node-a fits",
            foo_pod("p")
                .node_affinity_in(NODE, &["node-a", "node-y"])
                .spread(node_foo(1))
                .obj(),
            four_zone_nodes(),
            foo_pods(&[("node-a", 2), ("node-b", 1), ("node-y", 3)]),
            &[("node-a", OK), ("node-b", OK), ("node-x", OK), ("node-y", NO)],
        ),
        case(
            "terminating Pods should be excluded",
            foo_pod("p").spread(node_foo(1)).obj(),
            vec![
                make_node("node-a", &[(NODE, "node-a")]),
                make_node("node-b", &[(NODE, "node-b")]),
            ],
            vec![
                foo_pod("p-a").node("node-a").terminating().obj(),
                foo_pod("p-b").node("node-b").obj(),
            ],
            &[("node-a", OK), ("node-b", NO)],
        ),
        case(
            "incoming pod has nodeAffinity, pods spread as 0/~2~/0/1, hence node-a fits",
            foo_pod("p")
                .node_affinity_not_in(NODE, &["node-b"])
                .spread(zone_foo(1))
                .obj(),
            four_zone_nodes(),
            foo_pods(&[("node-b", 2), ("node-y", 1)]),
            &[("node-a", OK), ("node-b", OK), ("node-x", NO), ("node-y", NO)],
        ),
        case(
            "pods spread across nodes as 2/2/1, maxSkew is 2, and the number of domains < minDomains, then the third node fits",
            foo_pod("p").spread(node_foo(2).with_min_domains(4)).obj(),
            nodes_abc(),
            foo_pods(&[("node-a", 2), ("node-b", 2), ("node-c", 1)]),
            &[("node-a", NO), ("node-b", NO), ("node-c", OK)],
        ),
        case(
            "pods spread across nodes as 2/2/1, maxSkew is 2, and the number of domains > minDomains, then the all nodes fit",
            foo_pod("p").spread(node_foo(2).with_min_domains(2)).obj(),
            nodes_abc(),
            foo_pods(&[("node-a", 2), ("node-b", 2), ("node-c", 1)]),
            &[("node-a", OK), ("node-b", OK), ("node-c", OK)],
        ),
        case(
            "pods spread across zone as 2/1, maxSkew is 2 and the number of domains < minDomains, then the third and fourth nodes fit",
            foo_pod("p").spread(zone_foo(2).with_min_domains(3)).obj(),
            four_zone_nodes(),
            foo_pods(&[("node-a", 1), ("node-b", 1), ("node-y", 1)]),
            &[("node-a", NO), ("node-b", NO), ("node-x", OK), ("node-y", OK)],
        ),
        case(
            "pods spread across zone as 2/1, maxSkew is 2 and the number of domains > minDomains, then the all nodes fit",
            foo_pod("p").spread(zone_foo(2).with_min_domains(1)).obj(),
            four_zone_nodes(),
            foo_pods(&[("node-a", 1), ("node-b", 1), ("node-y", 1)]),
            &[("node-a", OK), ("node-b", OK), ("node-x", OK), ("node-y", OK)],
        ),
        // Pods spread as 1/1/0/~0~; node-y passes here, NodeAffinity rules it out.
        case(
            "NodeAffinityPolicy honored with labelSelectors",
            foo_pod("p")
                .node_selector(&[("foo", "")])
                .spread(node_foo(1))
                .obj(),
            policy_nodes(false),
            a1_b1_y1(),
            &[("node-a", NO), ("node-b", NO), ("node-x", OK), ("node-y", OK)],
        ),
        // Pods spread as 1/1/0/1.
        case(
            "NodeAffinityPolicy ignored with labelSelectors",
            foo_pod("p")
                .node_selector(&[("foo", "")])
                .spread(node_foo(1).with_affinity_policy("Ignore"))
                .obj(),
            policy_nodes(false),
            a1_b1_y1(),
            &[("node-a", NO), ("node-b", NO), ("node-x", OK), ("node-y", NO)],
        ),
        case(
            "NodeAffinityPolicy honored with nodeAffinity",
            foo_pod("p")
                .node_affinity_in("foo", &[""])
                .spread(node_foo(1))
                .obj(),
            policy_nodes(false),
            a1_b1_y1(),
            &[("node-a", NO), ("node-b", NO), ("node-x", OK), ("node-y", OK)],
        ),
        // kube names this case like the second one; it is the nodeAffinity variant.
        case(
            "NodeAffinityPolicy ignored with labelSelectors",
            foo_pod("p")
                .node_affinity_in("foo", &[""])
                .spread(node_foo(1).with_affinity_policy("Ignore"))
                .obj(),
            policy_nodes(false),
            a1_b1_y1(),
            &[("node-a", NO), ("node-b", NO), ("node-x", OK), ("node-y", NO)],
        ),
        // Pods spread as 1/1/0/~0~; node-y passes here, TaintToleration rules it out.
        case(
            "NodeTaintsPolicy honored",
            foo_pod("p")
                .spread(node_foo(1).with_taints_policy("Honor"))
                .obj(),
            policy_nodes(true),
            a1_b1_y1(),
            &[("node-a", NO), ("node-b", NO), ("node-x", OK), ("node-y", OK)],
        ),
        case(
            "NodeTaintsPolicy ignored",
            foo_pod("p").spread(node_foo(1)).obj(),
            policy_nodes(true),
            a1_b1_y1(),
            &[("node-a", NO), ("node-b", NO), ("node-x", OK), ("node-y", NO)],
        ),
        // Not in kube's table: `labelSelector: {}` counts every pod (kubernetes#141340), so
        // the constraint spreads all the namespace's pods, whatever their labels.
        case(
            "an empty labelSelector spreads every pod of the namespace",
            make_pod("p")
                .spread(spread(1, ZONE, DNS, super::tests::labels_selector(&[])))
                .obj(),
            four_zone_nodes(),
            vec![
                pod_on("p-a1", "node-a", &[("app", "web")]),
                pod_on("p-b1", "node-b", &[]),
            ],
            &[("node-a", NO), ("node-b", NO), ("node-x", OK), ("node-y", OK)],
        ),
    ];
    check(cases);
}

/// kube-scheduler's `TestMultipleConstraints`, every case.
#[test]
fn multiple_constraints() {
    let zone_and_node = |pod: super::tests::TestPod| {
        pod.spread(spread(1, ZONE, DNS, foo()))
            .spread(spread(1, NODE, DNS, foo()))
    };
    let zone_foo_node_bar = |pod: super::tests::TestPod| {
        pod.spread(spread(1, ZONE, DNS, foo()))
            .spread(spread(1, NODE, DNS, bar()))
    };
    let cases = vec![
        // zone: any node; node: node-x.
        case(
            "two Constraints on zone and node, spreads = [3/3, 2/1/0/3]",
            zone_and_node(foo_pod("p")).obj(),
            four_zone_nodes(),
            foo_pods(&[("node-a", 2), ("node-b", 1), ("node-y", 3)]),
            &[("node-a", NO), ("node-b", NO), ("node-x", OK), ("node-y", NO)],
        ),
        // zone: zone1; node: node-x; no node is both.
        case(
            "two Constraints on zone and node, spreads = [3/4, 2/1/0/4]",
            zone_and_node(foo_pod("p")).obj(),
            four_zone_nodes(),
            foo_pods(&[("node-a", 2), ("node-b", 1), ("node-y", 4)]),
            &[("node-a", NO), ("node-b", NO), ("node-x", NO), ("node-y", NO)],
        ),
        // zone: zone2; node: node-a, node-b or node-x.
        case(
            "Constraints hold different labelSelectors, spreads = [1/0, 1/0/0/1]",
            zone_foo_node_bar(foo_pod("p").label("bar", "")).obj(),
            four_zone_nodes(),
            vec![
                pod_on("p-a1", "node-a", &[("foo", "")]),
                pod_on("p-y1", "node-y", &[("bar", "")]),
            ],
            &[("node-a", NO), ("node-b", NO), ("node-x", OK), ("node-y", NO)],
        ),
        // zone: zone2; node: node-a or node-b.
        case(
            "Constraints hold different labelSelectors, spreads = [1/0, 0/0/1/1]",
            zone_foo_node_bar(foo_pod("p").label("bar", "")).obj(),
            four_zone_nodes(),
            vec![
                pod_on("p-a1", "node-a", &[("foo", "")]),
                pod_on("p-x1", "node-x", &[("bar", "")]),
                pod_on("p-y1", "node-y", &[("bar", "")]),
            ],
            &[("node-a", NO), ("node-b", NO), ("node-x", NO), ("node-y", NO)],
        ),
        // zone: zone1; node: node-b or node-x.
        case(
            "Constraints hold different labelSelectors, spreads = [2/3, 1/0/0/1]",
            zone_foo_node_bar(foo_pod("p").label("bar", "")).obj(),
            four_zone_nodes(),
            vec![
                pod_on("p-a1", "node-a", &[("foo", "")]),
                pod_on("p-a2", "node-a", &[("foo", ""), ("bar", "")]),
                pod_on("p-y1", "node-y", &[("foo", "")]),
                pod_on("p-y2", "node-y", &[("foo", ""), ("bar", "")]),
                pod_on("p-y3", "node-y", &[("foo", "")]),
            ],
            &[("node-a", NO), ("node-b", OK), ("node-x", NO), ("node-y", NO)],
        ),
        // zone: the pod does not match itself, any zone; node: node-a or node-b.
        case(
            "Constraints hold different labelSelectors but pod doesn't match itself on 'zone' constraint",
            zone_foo_node_bar(make_pod("p").label("bar", "")).obj(),
            four_zone_nodes(),
            vec![
                pod_on("p-a1", "node-a", &[("foo", "")]),
                pod_on("p-x1", "node-x", &[("bar", "")]),
                pod_on("p-y1", "node-y", &[("bar", "")]),
            ],
            &[("node-a", OK), ("node-b", OK), ("node-x", NO), ("node-y", NO)],
        ),
        // zone: any node; node: node-b (node-x lacks the label).
        case(
            "two Constraints on zone and node, absence of label 'node' on node-x, spreads = [1/1, 1/0/0/1]",
            zone_and_node(foo_pod("p")).obj(),
            vec![
                zone_node("node-a", "zone1"),
                zone_node("node-b", "zone1"),
                make_node("node-x", &[(ZONE, "zone2")]),
                zone_node("node-y", "zone2"),
            ],
            foo_pods(&[("node-a", 1), ("node-y", 1)]),
            &[("node-a", NO), ("node-b", OK), ("node-x", NEVER), ("node-y", NO)],
        ),
        // zone: 2/~0~; node: 1/1/0/~1~.
        case(
            "two node inclusion Constraints, zone: honor/ignore, node: ignore/ignore",
            foo_pod("p")
                .node_selector(&[("foo", "")])
                .spread(spread(1, ZONE, DNS, foo()))
                .spread(spread(1, NODE, DNS, foo()).with_affinity_policy("Ignore"))
                .obj(),
            vec![
                make_node("node-a", &[(ZONE, "zone1"), (NODE, "node-a"), ("foo", "")]),
                make_node("node-b", &[(ZONE, "zone1"), (NODE, "node-b"), ("foo", "")]),
                make_node("node-x", &[(ZONE, "zone2"), (NODE, "node-x"), ("foo", "")]),
                make_node("node-y", &[(ZONE, "zone2"), (NODE, "node-y")]),
            ],
            a1_b1_y1(),
            &[("node-a", NO), ("node-b", NO), ("node-x", OK), ("node-y", NO)],
        ),
        // zone: 2/0; node: 1/1/0/~1~.
        case(
            "two node inclusion Constraints, zone: honor/honor, node: honor/ignore",
            foo_pod("p")
                .spread(spread(1, ZONE, DNS, foo()).with_taints_policy("Honor"))
                .spread(spread(1, NODE, DNS, foo()))
                .obj(),
            vec![
                make_node("node-a", &[(ZONE, "zone1"), (NODE, "node-a"), ("foo", "")]),
                make_node("node-b", &[(ZONE, "zone1"), (NODE, "node-b"), ("foo", "")]),
                make_node("node-x", &[(ZONE, "zone2"), (NODE, "node-x"), ("foo", "")]),
                tainted_node("node-y", &[(ZONE, "zone2"), (NODE, "node-y")]),
            ],
            a1_b1_y1(),
            &[("node-a", NO), ("node-b", NO), ("node-x", OK), ("node-y", NO)],
        ),
        // zone: 1/~1~; node: 1/0/0/~1~.
        case(
            "two node inclusion Constraints, zone: honor/ignore, node: honor/ignore",
            foo_pod("p")
                .node_selector(&[("foo", "")])
                .spread(spread(1, ZONE, DNS, foo()))
                .spread(spread(1, NODE, DNS, foo()))
                .obj(),
            vec![
                make_node("node-a", &[(ZONE, "zone1"), (NODE, "node-a"), ("foo", "")]),
                make_node("node-b", &[(ZONE, "zone1"), (NODE, "node-b")]),
                make_node("node-x", &[(ZONE, "zone2"), (NODE, "node-x"), ("foo", "")]),
                tainted_node("node-y", &[(ZONE, "zone2"), (NODE, "node-y"), ("foo", "")]),
            ],
            a1_b1_y1(),
            &[("node-a", NO), ("node-b", OK), ("node-x", OK), ("node-y", NO)],
        ),
        // zone: 1/0; node: 1/~1~/0/~1~.
        case(
            "two node inclusion Constraints, zone: honor/honor, node: ignore/ignore",
            foo_pod("p")
                .node_selector(&[("foo", "")])
                .spread(spread(1, ZONE, DNS, foo()).with_taints_policy("Honor"))
                .spread(spread(1, NODE, DNS, foo()).with_affinity_policy("Ignore"))
                .obj(),
            vec![
                make_node("node-a", &[(ZONE, "zone1"), (NODE, "node-a"), ("foo", "")]),
                make_node("node-b", &[(ZONE, "zone1"), (NODE, "node-b")]),
                make_node("node-x", &[(ZONE, "zone2"), (NODE, "node-x"), ("foo", "")]),
                tainted_node("node-y", &[(ZONE, "zone2"), (NODE, "node-y"), ("foo", "")]),
            ],
            a1_b1_y1(),
            &[("node-a", NO), ("node-b", NO), ("node-x", OK), ("node-y", NO)],
        ),
    ];
    check(cases);
}

/// The reasons `kubectl describe pod` shows, in kube's words.
#[test]
fn reasons() {
    let pod = foo_pod("p").spread(spread(1, NODE, DNS, foo())).obj();
    let nodes = cluster(
        vec![
            make_node("node-a", &[(NODE, "node-a")]),
            make_node("node-b", &[(NODE, "node-b")]),
            make_node("no-label", &[]),
        ],
        foo_pods(&[("node-a", 1)]),
    );
    let plugin = list_plugin();
    let state = pre_filter(&plugin, &pod, &nodes);
    assert_eq!(
        plugin.filter(&state, &pod, &nodes[0]),
        Status::unschedulable("node(s) didn't match pod topology spread constraints")
    );
    assert!(plugin.filter(&state, &pod, &nodes[1]).is_success());
    assert_eq!(
        plugin.filter(&state, &pod, &nodes[2]),
        Status::unresolvable(
            "node(s) didn't match pod topology spread constraints (missing required label)"
        )
    );
}

/// A pod without hard constraints passes every node (kube skips the plugin).
#[test]
fn no_hard_constraint_passes_every_node() {
    let pod = foo_pod("p")
        .spread(spread(1, NODE, SCHEDULE_ANYWAY, foo()))
        .obj();
    let nodes = cluster(
        vec![make_node("no-label", &[])],
        foo_pods(&[("no-label", 3)]),
    );
    let plugin = list_plugin();
    let state = pre_filter(&plugin, &pod, &nodes);
    assert!(plugin.filter(&state, &pod, &nodes[0]).is_success());
}

/// kube-scheduler's `TestPreFilterDisabled`: Filter without PreFilter's state is an error
/// naming the state, in kube's words.
#[test]
fn pre_filter_disabled() {
    let pod = Pod::default();
    let node = crate::testing::node_info(Node::default(), vec![]);
    let status = list_plugin().filter(&CycleState::new(), &pod, &node);
    assert_eq!(
        status,
        Status::error(r#"reading "PreFilterPodTopologySpread" from cycleState: not found"#)
    );
}
