//! kube-scheduler's `TestPreferredAffinity` and
//! `TestPreferredAffinityWithHardPodAffinitySymmetricWeight` (`scoring_test.go`), every case,
//! and keel's own checks of the score.
//!
//! Where kube expects PreScore to return Skip (nothing to score), keel's PreScore succeeds
//! with an empty state and every node scores 0, what a skipped plugin adds to the total.

use k8s_openapi::api::core::v1::{
    Affinity, Node, Pod, PodAffinity, PodAffinityTerm, PodAntiAffinity, WeightedPodAffinityTerm,
};

use super::tests_builders::*;
use super::*;
use crate::framework::{Code, MAX_NODE_SCORE};
use crate::testing::{cluster, score_all};

const MAX: i64 = MAX_NODE_SCORE;

const CHINA: &[(&str, &str)] = &[("region", "China")];
const INDIA: &[(&str, &str)] = &[("region", "India")];
const AZ1: &[(&str, &str)] = &[("az", "az1")];
const AZ2: &[(&str, &str)] = &[("az", "az2")];
const CHINA_AZ1: &[(&str, &str)] = &[("region", "China"), ("az", "az1")];
const S1: &[(&str, &str)] = &[("security", "S1")];
const S2: &[(&str, &str)] = &[("security", "S2")];

fn preferred(terms: Vec<WeightedPodAffinityTerm>) -> Affinity {
    Affinity {
        pod_affinity: Some(PodAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(terms),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn preferred_anti(terms: Vec<WeightedPodAffinityTerm>) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(terms),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn required(terms: Vec<PodAffinityTerm>) -> Affinity {
    Affinity {
        pod_affinity: Some(PodAffinity {
            required_during_scheduling_ignored_during_execution: Some(terms),
            ..Default::default()
        }),
        ..Default::default()
    }
}

// kube's named affinities of `TestPreferredAffinity`.

fn stay_with_s1_in_region() -> Affinity {
    preferred(vec![weighted(5, term_in("security", "region", &["S1"]))])
}

fn stay_with_s2_in_region() -> Affinity {
    preferred(vec![weighted(6, term_in("security", "region", &["S2"]))])
}

fn affinity3() -> Affinity {
    preferred(vec![
        weighted(
            8,
            term(
                "region",
                vec![
                    req("security", "NotIn", &["S1"]),
                    req("security", "In", &["S2"]),
                ],
            ),
        ),
        weighted(
            2,
            term(
                "region",
                vec![
                    req("security", "Exists", &[]),
                    req("wrongkey", "DoesNotExist", &[]),
                ],
            ),
        ),
    ])
}

fn hard_affinity() -> Affinity {
    required(vec![
        term_in("security", "region", &["S1", "value2"]),
        term(
            "region",
            vec![
                req("security", "Exists", &[]),
                req("wrongkey", "DoesNotExist", &[]),
            ],
        ),
    ])
}

fn away_from_s1_in_az() -> Affinity {
    preferred_anti(vec![weighted(5, term_in("security", "az", &["S1"]))])
}

fn away_from_s2_in_az() -> Affinity {
    preferred_anti(vec![weighted(5, term_in("security", "az", &["S2"]))])
}

fn stay_with_s1_in_region_away_from_s2_in_az() -> Affinity {
    Affinity {
        pod_affinity: preferred(vec![weighted(8, term_in("security", "region", &["S1"]))])
            .pod_affinity,
        pod_anti_affinity: away_from_s2_in_az().pod_anti_affinity,
        ..Default::default()
    }
}

/// S1 pods in `subteam2.team2` or in a namespace labelled `team: team1`.
fn namespace_selector_term() -> PodAffinityTerm {
    term_in("security", "region", &["S1"])
        .namespaces(&["subteam2.team2"])
        .namespace_selector(selector(vec![req("team", "In", &["team1"])]))
}

fn affinity_namespace_selector() -> Affinity {
    preferred(vec![weighted(5, namespace_selector_term())])
}

fn anti_affinity_namespace_selector() -> Affinity {
    preferred_anti(vec![weighted(5, namespace_selector_term())])
}

/// A pod on `node` with labels and, if given, an affinity.
fn placed(node: &str, labels: &[(&str, &str)], affinity: Option<Affinity>) -> Pod {
    let pod = make_pod().node(node).labels(labels);
    match affinity {
        Some(affinity) => pod.with_affinity(affinity).obj(),
        None => pod.obj(),
    }
}

/// A pod on `node` in `namespace`, labelled S1.
fn placed_in(namespace: &str, node: &str) -> Pod {
    make_pod().node(node).namespace(namespace).labels(S1).obj()
}

/// The incoming pod.
fn incoming(namespace: &str, labels: &[(&str, &str)], affinity: Option<Affinity>) -> Pod {
    let pod = make_pod().namespace(namespace).labels(labels);
    match affinity {
        Some(affinity) => pod.with_affinity(affinity).obj(),
        None => pod.obj(),
    }
}

fn nodes(list: &[(&str, &[(&str, &str)])]) -> Vec<Node> {
    list.iter()
        .map(|(name, labels)| labeled_node(name, labels))
        .collect()
}

struct ScoreCase {
    name: &'static str,
    pod: Pod,
    pods: Vec<Pod>,
    nodes: Vec<Node>,
    want: Vec<i64>,
    ignore_preferred_terms_of_existing_pods: bool,
}

fn case(
    name: &'static str,
    pod: Pod,
    pods: Vec<Pod>,
    nodes: Vec<Node>,
    want: Vec<i64>,
) -> ScoreCase {
    ScoreCase {
        name,
        pod,
        pods,
        nodes,
        want,
        ignore_preferred_terms_of_existing_pods: false,
    }
}

#[test]
fn preferred_affinity() {
    let three_nodes = || nodes(&[("node1", CHINA), ("node2", INDIA), ("node3", AZ1)]);
    let cases = vec![
        // kube: PreScore Skip.
        case(
            "all nodes are same priority as Affinity is nil",
            incoming("", S1, None),
            vec![],
            three_nodes(),
            vec![0, 0, 0],
        ),
        case(
            "Affinity: pod that matches topology key & pods in nodes will get high score comparing to otherswhich doesn't match either pods in nodes or in topology key",
            incoming("", S1, Some(stay_with_s1_in_region())),
            vec![
                placed("node1", S1, None),
                placed("node2", S2, None),
                placed("node3", S1, None),
            ],
            three_nodes(),
            vec![MAX, 0, 0],
        ),
        case(
            "All the nodes that have the same topology key & label value with one of them has an existing pod that match the affinity rules, have the same score",
            incoming("", &[], Some(stay_with_s1_in_region())),
            vec![placed("node1", S1, None)],
            nodes(&[("node1", CHINA), ("node2", CHINA_AZ1), ("node3", INDIA)]),
            vec![MAX, MAX, 0],
        ),
        case(
            "Affinity: nodes in one region has more matching pods comparing to other region, so the region which has more matches will get high score",
            incoming("", S1, Some(stay_with_s2_in_region())),
            vec![
                placed("node1", S2, None),
                placed("node1", S2, None),
                placed("node2", S2, None),
                placed("node3", S2, None),
                placed("node4", S2, None),
                placed("node5", S2, None),
            ],
            nodes(&[
                ("node1", CHINA),
                ("node2", INDIA),
                ("node3", CHINA),
                ("node4", CHINA),
                ("node5", INDIA),
            ]),
            vec![MAX, 0, MAX, MAX, 0],
        ),
        case(
            "Affinity: different Label operators and values for pod affinity scheduling preference, including some match failures ",
            incoming("", S1, Some(affinity3())),
            vec![
                placed("node1", S1, None),
                placed("node2", S2, None),
                placed("node3", S1, None),
            ],
            three_nodes(),
            vec![20, MAX, 0],
        ),
        case(
            "Affinity symmetry: considered only the preferredDuringSchedulingIgnoredDuringExecution in pod affinity symmetry",
            incoming("", S2, None),
            vec![
                placed("node1", S1, Some(stay_with_s1_in_region())),
                placed("node2", S2, Some(stay_with_s2_in_region())),
            ],
            three_nodes(),
            vec![0, MAX, 0],
        ),
        case(
            "Affinity symmetry with namespace selector",
            incoming("subteam1.team1", S1, None),
            vec![
                placed("node1", S1, Some(affinity_namespace_selector())),
                placed("node2", S2, Some(stay_with_s2_in_region())),
            ],
            three_nodes(),
            vec![MAX, 0, 0],
        ),
        case(
            "AntiAffinity symmetry with namespace selector",
            incoming("subteam1.team1", S1, None),
            vec![
                placed("node1", S1, Some(anti_affinity_namespace_selector())),
                placed("node2", S2, Some(stay_with_s2_in_region())),
            ],
            three_nodes(),
            vec![0, MAX, MAX],
        ),
        case(
            "Affinity symmetry: considered RequiredDuringSchedulingIgnoredDuringExecution in pod affinity symmetry",
            incoming("", S1, None),
            vec![
                placed("node1", S1, Some(hard_affinity())),
                placed("node2", S2, Some(hard_affinity())),
            ],
            three_nodes(),
            vec![MAX, MAX, 0],
        ),
        case(
            "Anti Affinity: pod that does not match existing pods in node will get high score ",
            incoming("", S1, Some(away_from_s1_in_az())),
            vec![placed("node1", S1, None), placed("node2", S2, None)],
            nodes(&[("node1", AZ1), ("node2", CHINA)]),
            vec![0, MAX],
        ),
        case(
            "Anti Affinity: pod that does not match topology key & match the pods in nodes will get higher score comparing to others ",
            incoming("", S1, Some(away_from_s1_in_az())),
            vec![placed("node1", S1, None), placed("node2", S1, None)],
            nodes(&[("node1", AZ1), ("node2", CHINA)]),
            vec![0, MAX],
        ),
        case(
            "Anti Affinity: one node has more matching pods comparing to other node, so the node which has more unmatches will get high score",
            incoming("", S1, Some(away_from_s1_in_az())),
            vec![
                placed("node1", S1, None),
                placed("node1", S1, None),
                placed("node2", S2, None),
            ],
            nodes(&[("node1", AZ1), ("node2", INDIA)]),
            vec![0, MAX],
        ),
        case(
            "Anti Affinity symmetry: the existing pods in node which has anti affinity match will get high score",
            incoming("", S2, None),
            vec![
                placed("node1", S1, Some(away_from_s2_in_az())),
                placed("node2", S2, Some(away_from_s1_in_az())),
            ],
            nodes(&[("node1", AZ1), ("node2", AZ2)]),
            vec![0, MAX],
        ),
        case(
            "Affinity and Anti Affinity: considered only preferredDuringSchedulingIgnoredDuringExecution in both pod affinity & anti affinity",
            incoming("", S1, Some(stay_with_s1_in_region_away_from_s2_in_az())),
            vec![placed("node1", S1, None), placed("node2", S1, None)],
            nodes(&[("node1", CHINA), ("node2", AZ1)]),
            vec![MAX, 0],
        ),
        case(
            "Affinity and Anti Affinity: considering both affinity and anti-affinity, the pod to schedule and existing pods have the same labels",
            incoming("", S1, Some(stay_with_s1_in_region_away_from_s2_in_az())),
            vec![
                placed("node1", S1, None),
                placed("node1", S1, None),
                placed("node2", S1, None),
                placed("node3", S1, None),
                placed("node3", S1, None),
                placed("node4", S1, None),
                placed("node5", S1, None),
            ],
            nodes(&[
                ("node1", CHINA_AZ1),
                ("node2", INDIA),
                ("node3", CHINA),
                ("node4", CHINA),
                ("node5", INDIA),
            ]),
            vec![MAX, 0, MAX, MAX, 0],
        ),
        // Affinity 8, 0, 0, 0; anti-affinity 0, -5, 0, 0; affinity symmetry 0, 0, 8, 0;
        // anti-affinity symmetry 0, 0, 0, -5.
        case(
            "Affinity and Anti Affinity and symmetry: considered only preferredDuringSchedulingIgnoredDuringExecution in both pod affinity & anti affinity & symmetry",
            incoming("", S1, Some(stay_with_s1_in_region_away_from_s2_in_az())),
            vec![
                placed("node1", S1, None),
                placed("node2", S2, None),
                placed("node3", &[], Some(stay_with_s1_in_region_away_from_s2_in_az())),
                placed("node4", &[], Some(away_from_s1_in_az())),
            ],
            nodes(&[("node1", CHINA), ("node2", AZ1), ("node3", INDIA), ("node4", AZ2)]),
            vec![MAX, 0, MAX, 0],
        ),
        // kubernetes/kubernetes#82796: some nodes of a domain have pods with affinity, others
        // not, and the incoming pod has none.
        case(
            "Avoid panic when partial nodes in a topology don't have pods with affinity",
            incoming("", S1, None),
            vec![
                placed("node1", S1, None),
                placed("node2", &[], Some(stay_with_s1_in_region_away_from_s2_in_az())),
            ],
            nodes(&[("node1", CHINA), ("node2", CHINA)]),
            vec![0, 0],
        ),
        case(
            "Affinity with pods matching NamespaceSelector",
            incoming("subteam1.team1", S1, Some(affinity_namespace_selector())),
            vec![
                placed_in("subteam1.team1", "node1"),
                placed_in("subteam1.team1", "node1"),
                placed_in("subteam1.team2", "node1"),
                placed_in("subteam2.team1", "node2"),
            ],
            nodes(&[("node1", CHINA), ("node2", INDIA)]),
            vec![MAX, 0],
        ),
        case(
            "Affinity with pods matching both NamespaceSelector and Namespaces fields",
            incoming("subteam1.team1", S1, Some(affinity_namespace_selector())),
            vec![
                placed_in("subteam1.team1", "node1"),
                placed_in("subteam1.team1", "node1"),
                placed_in("subteam2.team2", "node1"),
                placed_in("subteam2.team1", "node2"),
            ],
            nodes(&[("node1", CHINA), ("node2", INDIA)]),
            vec![MAX, 0],
        ),
        // kube names this anti-affinity case as the affinity one above.
        case(
            "Affinity with pods matching NamespaceSelector",
            incoming("subteam1.team1", S1, Some(anti_affinity_namespace_selector())),
            vec![
                placed_in("subteam1.team1", "node1"),
                placed_in("subteam1.team1", "node1"),
                placed_in("subteam1.team2", "node1"),
                placed_in("subteam2.team1", "node2"),
            ],
            nodes(&[("node1", CHINA), ("node2", INDIA)]),
            vec![0, MAX],
        ),
        case(
            "Affinity with pods matching both NamespaceSelector and Namespaces fields",
            incoming("subteam1.team1", S1, Some(anti_affinity_namespace_selector())),
            vec![
                placed_in("subteam1.team1", "node1"),
                placed_in("subteam1.team1", "node1"),
                placed_in("subteam2.team2", "node1"),
                placed_in("subteam2.team1", "node2"),
            ],
            nodes(&[("node1", CHINA), ("node2", INDIA)]),
            vec![0, MAX],
        ),
        // kube: PreScore Skip.
        ScoreCase {
            ignore_preferred_terms_of_existing_pods: true,
            ..case(
                "Ignore preferred terms of existing pods",
                incoming("", S2, None),
                vec![
                    placed("node1", S1, Some(stay_with_s1_in_region_away_from_s2_in_az())),
                    placed("node2", S2, Some(stay_with_s2_in_region())),
                ],
                nodes(&[("node1", CHINA), ("node2", INDIA)]),
                vec![0, 0],
            )
        },
        case(
            "Do not ignore preferred terms of existing pods",
            incoming("", S2, None),
            vec![
                placed("node1", S1, Some(stay_with_s1_in_region_away_from_s2_in_az())),
                placed("node2", S2, Some(stay_with_s2_in_region())),
            ],
            nodes(&[("node1", CHINA), ("node2", INDIA)]),
            vec![0, MAX],
        ),
        // kube: PreScore Skip.
        case(
            "No nodes to score",
            incoming("", S2, None),
            vec![],
            vec![],
            vec![],
        ),
    ];

    for case in cases {
        let args = InterPodAffinityArgs {
            hard_pod_affinity_weight: 1,
            ignore_preferred_terms_of_existing_pods: case.ignore_preferred_terms_of_existing_pods,
        };
        let plugin = InterPodAffinity::new(args, test_namespaces()).expect("valid args");
        let infos = cluster(case.nodes, case.pods);
        assert_eq!(
            score_all(&plugin, &case.pod, &infos),
            case.want,
            "{}",
            case.name
        );
    }
}

/// The PreScore cases of `TestPreferredAffinity` whose pod has a label value no selector
/// accepts: an error. kube's message contains Go's validation text; keel's its own.
#[test]
fn preferred_affinity_invalid_terms() {
    let cases = [
        (
            "invalid Affinity fails PreScore",
            preferred(vec![weighted(
                8,
                term_in("security", "region", &["{{.bad-value.}}"]),
            )]),
        ),
        (
            "invalid AntiAffinity fails PreScore",
            preferred_anti(vec![weighted(
                5,
                term_in("security", "az", &["{{.bad-value.}}"]),
            )]),
        ),
    ];
    let plugin = InterPodAffinity::new(InterPodAffinityArgs::default(), test_namespaces())
        .expect("valid args");
    for (name, affinity) in cases {
        let pod = incoming("", &[], Some(affinity));
        let infos = cluster(nodes(&[("node1", CHINA), ("node2", CHINA)]), vec![]);
        let feasible: Vec<&NodeInfo> = infos.iter().collect();
        let status = plugin.pre_score(&pod, &feasible, &infos, &mut CycleState::new());
        assert_eq!(status.code, Code::Error, "{name}");
        assert!(
            status.message().starts_with("failed to parse pod: "),
            "{name}: {status}"
        );
    }
}

#[test]
fn preferred_affinity_with_hard_pod_affinity_symmetric_weight() {
    let hard_pod_affinity = || {
        required(vec![term_in("service", "region", &["S1"])
            .namespaces(&["", "subteam2.team2"])
            .namespace_selector(selector(vec![req(
                "team",
                "In",
                &["team1"],
            )]))])
    };
    let service_s1: &[(&str, &str)] = &[("service", "S1")];
    let cases = [
        (
            "with default weight",
            "",
            DEFAULT_HARD_POD_AFFINITY_WEIGHT,
            vec![MAX, MAX, 0],
        ),
        // kube: PreScore Skip.
        ("with zero weight", "", 0, vec![0, 0, 0]),
        // kube: PreScore Skip.
        (
            "with no matching namespace",
            "subteam1.team2",
            DEFAULT_HARD_POD_AFFINITY_WEIGHT,
            vec![0, 0, 0],
        ),
        (
            "with matching NamespaceSelector",
            "subteam1.team1",
            DEFAULT_HARD_POD_AFFINITY_WEIGHT,
            vec![MAX, MAX, 0],
        ),
        (
            "with matching Namespaces",
            "subteam2.team2",
            DEFAULT_HARD_POD_AFFINITY_WEIGHT,
            vec![MAX, MAX, 0],
        ),
    ];
    for (name, namespace, weight, want) in cases {
        let args = InterPodAffinityArgs {
            hard_pod_affinity_weight: weight,
            ..InterPodAffinityArgs::default()
        };
        let plugin = InterPodAffinity::new(args, test_namespaces()).expect("valid args");
        let pod = incoming(namespace, service_s1, None);
        let pods = vec![
            placed("node1", &[], Some(hard_pod_affinity())),
            placed("node2", &[], Some(hard_pod_affinity())),
        ];
        let infos = cluster(
            nodes(&[("node1", CHINA), ("node2", INDIA), ("node3", AZ1)]),
            pods,
        );
        assert_eq!(score_all(&plugin, &pod, &infos), want, "{name}");
    }
}

/// Not from kube's tables: the weights add up per domain, and the normalization spans the
/// lowest to the highest score, negative ones included.
#[test]
fn raw_scores_and_normalization() {
    let plugin = InterPodAffinity::default();
    let pod = incoming("", S1, Some(stay_with_s1_in_region_away_from_s2_in_az()));
    let infos = cluster(
        nodes(&[
            ("node1", CHINA_AZ1),
            ("node2", CHINA),
            ("node3", AZ1),
            ("node4", INDIA),
        ]),
        vec![
            placed("node1", S1, None),
            placed("node2", S1, None),
            placed("node3", S2, None),
        ],
    );
    let mut state = CycleState::new();
    let feasible: Vec<&NodeInfo> = infos.iter().collect();
    assert!(plugin
        .pre_score(&pod, &feasible, &infos, &mut state)
        .is_success());
    let raw: Vec<i64> = infos
        .iter()
        .map(|node| plugin.score(&state, &pod, node).expect("score"))
        .collect();
    // China: two S1 pods, 8 each; az1: one S2 pod, -5.
    assert_eq!(raw, vec![16 - 5, 16, -5, 0]);
    let mut normalized = raw.clone();
    plugin.normalize(&state, &pod, &mut normalized);
    // (x + 5) / 21 * 100, truncated.
    assert_eq!(normalized, vec![76, MAX, 0, 23]);
}

#[test]
fn score_without_pre_score_is_an_error() {
    let plugin = InterPodAffinity::default();
    let infos = cluster(nodes(&[("node1", CHINA)]), vec![]);
    let got = plugin.score(&CycleState::new(), &make_pod().obj(), &infos[0]);
    assert_eq!(
        got,
        Err(Status::error(
            "error reading \"PreScoreInterPodAffinity\" from cycleState: not found"
        ))
    );
}

/// kube's `ValidateHardPodAffinityWeight`.
#[test]
fn hard_pod_affinity_weight_must_be_in_range() {
    let with_weight = |hard_pod_affinity_weight| {
        let args = InterPodAffinityArgs {
            hard_pod_affinity_weight,
            ..InterPodAffinityArgs::default()
        };
        InterPodAffinity::new(args, test_namespaces()).map(|plugin| *plugin.args())
    };
    for weight in [0, 1, 100] {
        assert!(with_weight(weight).is_ok(), "{weight}");
    }
    for weight in [-1, 101] {
        let error = with_weight(weight).expect_err("out of range");
        assert_eq!(
            error.to_string(),
            format!("hardPodAffinityWeight: Invalid value: {weight}: not in valid range [0-100]")
        );
    }
    assert_eq!(InterPodAffinityArgs::default().hard_pod_affinity_weight, 1);
    assert!(!InterPodAffinityArgs::default().ignore_preferred_terms_of_existing_pods);
}
