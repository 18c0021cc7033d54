use k8s_openapi::api::core::v1::Node;

use super::*;
use crate::framework::Code;
use crate::testing::{node, node_info, pod, score_all, toleration};

fn with_tolerations(tolerations: Vec<Toleration>) -> Pod {
    tolerations
        .into_iter()
        .fold(pod(), |pod, toleration| pod.toleration(toleration))
        .obj()
}

fn with_taints(name: &str, taints: &[(&str, &str, &str)]) -> Node {
    taints
        .iter()
        .fold(node(name), |node, (key, value, effect)| {
            node.taint(key, value, effect)
        })
        .obj()
}

struct FilterCase {
    name: &'static str,
    pod: Pod,
    node: Node,
    /// The untolerated taint's `{key: value}`, or None when the pod fits.
    untolerated: Option<&'static str>,
}

/// kube-scheduler's `TestTaintTolerationFilter`, every case but those of the comparison
/// operators (an alpha feature kube-scheduler leaves off). The reason names the taint as
/// Kubernetes 1.26–1.34 did; newer kube-scheduler writes "node(s) had untolerated taint(s)".
#[test]
fn filter() {
    let cases = [
        FilterCase {
            name: "a pod having no tolerations can't be scheduled onto a node with nonempty taints",
            pod: with_tolerations(vec![]),
            node: with_taints("nodeA", &[("dedicated", "user1", "NoSchedule")]),
            untolerated: Some("{dedicated: user1}"),
        },
        FilterCase {
            name: "a pod which can be scheduled on a dedicated node assigned to user1 with effect NoSchedule",
            pod: with_tolerations(vec![toleration("dedicated", "", "user1", "NoSchedule")]),
            node: with_taints("nodeA", &[("dedicated", "user1", "NoSchedule")]),
            untolerated: None,
        },
        FilterCase {
            name: "a pod which can't be scheduled on a dedicated node assigned to user2 with effect NoSchedule",
            pod: with_tolerations(vec![toleration("dedicated", "Equal", "user2", "NoSchedule")]),
            node: with_taints("nodeA", &[("dedicated", "user1", "NoSchedule")]),
            untolerated: Some("{dedicated: user1}"),
        },
        FilterCase {
            name: "a toleration with operator Exists tolerates the taint",
            pod: with_tolerations(vec![toleration("foo", "Exists", "", "NoSchedule")]),
            node: with_taints("nodeA", &[("foo", "bar", "NoSchedule")]),
            untolerated: None,
        },
        FilterCase {
            name: "multiple tolerations, multiple taints, all tolerated",
            pod: with_tolerations(vec![
                toleration("dedicated", "Equal", "user2", "NoSchedule"),
                toleration("foo", "Exists", "", "NoSchedule"),
            ]),
            node: with_taints(
                "nodeA",
                &[
                    ("dedicated", "user2", "NoSchedule"),
                    ("foo", "bar", "NoSchedule"),
                ],
            ),
            untolerated: None,
        },
        FilterCase {
            name: "key and value match but the (non-empty) effect doesn't",
            pod: with_tolerations(vec![toleration("foo", "Equal", "bar", "PreferNoSchedule")]),
            node: with_taints("nodeA", &[("foo", "bar", "NoSchedule")]),
            untolerated: Some("{foo: bar}"),
        },
        FilterCase {
            name: "key and value match, the toleration's effect is empty",
            pod: with_tolerations(vec![toleration("foo", "Equal", "bar", "")]),
            node: with_taints("nodeA", &[("foo", "bar", "NoSchedule")]),
            untolerated: None,
        },
        FilterCase {
            name: "key and value don't match, but the taint is only PreferNoSchedule",
            pod: with_tolerations(vec![toleration("dedicated", "Equal", "user2", "NoSchedule")]),
            node: with_taints("nodeA", &[("dedicated", "user1", "PreferNoSchedule")]),
            untolerated: None,
        },
        FilterCase {
            name: "no toleration, but the taint is only PreferNoSchedule",
            pod: with_tolerations(vec![]),
            node: with_taints("nodeA", &[("dedicated", "user1", "PreferNoSchedule")]),
            untolerated: None,
        },
        // Not from kube's table: NoExecute taints filter too, and a valueless taint shows an
        // empty value (the control plane's taint, the most common message in practice).
        FilterCase {
            name: "NoExecute taints are filtered too",
            pod: with_tolerations(vec![]),
            node: with_taints(
                "nodeA",
                &[("node-role.kubernetes.io/control-plane", "", "NoExecute")],
            ),
            untolerated: Some("{node-role.kubernetes.io/control-plane: }"),
        },
        FilterCase {
            name: "an empty key with Exists tolerates every taint",
            pod: with_tolerations(vec![toleration("", "Exists", "", "")]),
            node: with_taints(
                "nodeA",
                &[("a", "1", "NoSchedule"), ("b", "2", "NoExecute")],
            ),
            untolerated: None,
        },
    ];
    for case in cases {
        let status = TaintToleration.filter(
            &CycleState::new(),
            &case.pod,
            &node_info(case.node, Vec::new()),
        );
        match case.untolerated {
            None => assert!(status.is_success(), "{}: {status}", case.name),
            Some(taint) => assert_eq!(
                status,
                Status::new(
                    Code::UnschedulableAndUnresolvable,
                    [format!("node(s) had untolerated taint {taint}")]
                ),
                "{}",
                case.name
            ),
        }
    }
}

struct ScoreCase {
    name: &'static str,
    pod: Pod,
    nodes: Vec<Node>,
    want: Vec<i64>,
}

/// kube-scheduler's `TestTaintTolerationScore`, every case but those of the comparison
/// operators: the raw scores count untolerated PreferNoSchedule taints, then are normalized
/// reversed.
#[test]
fn score() {
    let cases = [
        ScoreCase {
            name: "node with taints tolerated by the pod gets a higher score",
            pod: with_tolerations(vec![toleration("foo", "Equal", "bar", "PreferNoSchedule")]),
            nodes: vec![
                with_taints("nodeA", &[("foo", "bar", "PreferNoSchedule")]),
                with_taints("nodeB", &[("foo", "blah", "PreferNoSchedule")]),
            ],
            want: vec![100, 0],
        },
        ScoreCase {
            name: "nodes whose taints are all tolerated get the same score, however many",
            pod: with_tolerations(vec![
                toleration("cpu-type", "Equal", "arm64", "PreferNoSchedule"),
                toleration("disk-type", "Equal", "ssd", "PreferNoSchedule"),
            ]),
            nodes: vec![
                with_taints("nodeA", &[]),
                with_taints("nodeB", &[("cpu-type", "arm64", "PreferNoSchedule")]),
                with_taints(
                    "nodeC",
                    &[
                        ("cpu-type", "arm64", "PreferNoSchedule"),
                        ("disk-type", "ssd", "PreferNoSchedule"),
                    ],
                ),
            ],
            want: vec![100, 100, 100],
        },
        ScoreCase {
            name: "the more intolerable taints a node has, the lower its score",
            pod: with_tolerations(vec![toleration("foo", "Equal", "bar", "PreferNoSchedule")]),
            nodes: vec![
                with_taints("nodeA", &[]),
                with_taints("nodeB", &[("cpu-type", "arm64", "PreferNoSchedule")]),
                with_taints(
                    "nodeC",
                    &[
                        ("cpu-type", "arm64", "PreferNoSchedule"),
                        ("disk-type", "ssd", "PreferNoSchedule"),
                    ],
                ),
            ],
            want: vec![100, 50, 0],
        },
        ScoreCase {
            name: "only PreferNoSchedule taints and tolerations count",
            pod: with_tolerations(vec![
                toleration("cpu-type", "Equal", "arm64", "NoSchedule"),
                toleration("disk-type", "Equal", "ssd", "NoSchedule"),
            ]),
            nodes: vec![
                with_taints("nodeA", &[]),
                with_taints("nodeB", &[("cpu-type", "arm64", "NoSchedule")]),
                with_taints(
                    "nodeC",
                    &[
                        ("cpu-type", "arm64", "PreferNoSchedule"),
                        ("disk-type", "ssd", "PreferNoSchedule"),
                    ],
                ),
            ],
            want: vec![100, 100, 0],
        },
        ScoreCase {
            name: "no taints and no tolerations: lands on the node with no taints",
            pod: with_tolerations(vec![]),
            nodes: vec![
                with_taints("nodeA", &[]),
                with_taints("nodeB", &[("cpu-type", "arm64", "PreferNoSchedule")]),
            ],
            want: vec![100, 0],
        },
    ];
    for case in cases {
        let nodes: Vec<NodeInfo> = case
            .nodes
            .into_iter()
            .map(|node| node_info(node, Vec::new()))
            .collect();
        assert_eq!(
            score_all(&TaintToleration, &case.pod, &nodes),
            case.want,
            "{}",
            case.name
        );
    }
}

#[test]
fn tolerations_match_as_the_api_defines() {
    let taint = Taint {
        key: "foo".to_string(),
        value: Some("bar".to_string()),
        effect: EFFECT_NO_SCHEDULE.to_string(),
        ..Default::default()
    };
    assert!(tolerates(&toleration("foo", "", "bar", ""), &taint));
    assert!(tolerates(&toleration("", "Exists", "", ""), &taint));
    assert!(!tolerates(&toleration("foo", "", "baz", ""), &taint));
    assert!(!tolerates(
        &toleration("foo", "Exists", "", EFFECT_NO_EXECUTE),
        &taint
    ));
    // Comparison operators are an alpha feature kube-scheduler leaves off.
    assert!(!tolerates(&toleration("foo", "Gt", "1", ""), &taint));
}
