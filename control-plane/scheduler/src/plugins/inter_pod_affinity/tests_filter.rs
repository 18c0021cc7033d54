//! kube-scheduler's `TestRequiredAffinitySingleNode` (`filtering_test.go`), every case, the
//! harness the filter tests share, and keel's own checks of the filter.
//!
//! Where kube expects PreFilter to return Skip (nothing to check), keel's PreFilter succeeds
//! with an empty state and the filter lets the node through: the cases say `Fits`.

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::tests_builders::*;
use super::*;
use crate::framework::Code;
use crate::testing::cluster;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Want {
    Fits,
    /// The incoming pod's affinity (UnschedulableAndUnresolvable).
    Affinity,
    /// The incoming pod's anti-affinity (Unschedulable).
    AntiAffinity,
    /// An existing pod's anti-affinity (Unschedulable).
    Existing,
}
use Want::*;

pub(super) fn want_status(want: Want) -> Status {
    match want {
        Fits => Status::success(),
        Affinity => Status::unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH),
        AntiAffinity => Status::unschedulable(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH),
        Existing => Status::unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH),
    }
}

/// PreFilter over the cluster, then Filter on each node, as kube's test loop.
pub(super) fn run(
    plugin: &InterPodAffinity,
    pod: &Pod,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
) -> Vec<Status> {
    let infos = cluster(nodes, pods);
    let mut state = CycleState::new();
    let pre_filter = plugin.pre_filter(pod, &infos, &mut state);
    assert!(pre_filter.is_ok(), "pre_filter: {pre_filter}");
    infos
        .iter()
        .map(|node| plugin.filter(&state, pod, node))
        .collect()
}

pub(super) fn kube_plugin() -> InterPodAffinity {
    InterPodAffinity::new(InterPodAffinityArgs::default(), test_namespaces())
        .expect("default args are valid")
}

struct SingleNodeCase {
    name: &'static str,
    pod: Pod,
    pods: Vec<Pod>,
    want: Want,
}

#[test]
fn required_affinity_single_node() {
    let pod_label: &[(&str, &str)] = &[("service", "securityscan")];
    let pod_label2: &[(&str, &str)] = &[("security", "S1")];
    let existing = || make_pod().labels(pod_label).node("node1").obj();
    let node1 = || labeled_node("node1", &[("region", "r1"), ("zone", "z11")]);
    let team1 = || selector(vec![req("team", "In", &["team1"])]);

    let cases = vec![
        SingleNodeCase {
            name: "A pod that has no required pod affinity scheduling rules can schedule onto a node with no existing pods",
            pod: make_pod().obj(),
            pods: vec![],
            want: Fits,
        },
        SingleNodeCase {
            name: "satisfies with requiredDuringSchedulingIgnoredDuringExecution in PodAffinity using In operator that matches the existing pod",
            pod: make_pod()
                .labels(pod_label2)
                .required_affinity(term_in("service", "region", &["securityscan", "value2"]))
                .obj(),
            pods: vec![existing()],
            want: Fits,
        },
        SingleNodeCase {
            name: "satisfies the pod with requiredDuringSchedulingIgnoredDuringExecution in PodAffinity using not in operator in labelSelector that matches the existing pod",
            pod: make_pod()
                .labels(pod_label2)
                .required_affinity(term_not_in("service", "region", &["securityscan3", "value3"]))
                .obj(),
            pods: vec![existing()],
            want: Fits,
        },
        SingleNodeCase {
            name: "Does not satisfy the PodAffinity with labelSelector because of diff Namespace",
            pod: make_pod()
                .labels(pod_label2)
                .required_affinity(
                    term_in("service", "", &["securityscan", "value2"])
                        .namespaces(&["DiffNameSpace"]),
                )
                .obj(),
            pods: vec![make_pod()
                .namespace("ns")
                .label("service", "securityscan")
                .node("node1")
                .obj()],
            want: Affinity,
        },
        SingleNodeCase {
            name: "Doesn't satisfy the PodAffinity because of unmatching labelSelector with the existing pod",
            pod: make_pod()
                .labels(pod_label)
                .required_affinity(term_in("service", "", &["antivirusscan", "value2"]))
                .obj(),
            pods: vec![existing()],
            want: Affinity,
        },
        SingleNodeCase {
            name: "satisfies the PodAffinity with different label Operators in multiple RequiredDuringSchedulingIgnoredDuringExecution ",
            pod: make_pod()
                .labels(pod_label2)
                .required_affinity(term(
                    "region",
                    vec![req("service", "Exists", &[]), req("wrongkey", "DoesNotExist", &[])],
                ))
                .required_affinity(term(
                    "region",
                    vec![
                        req("service", "In", &["securityscan"]),
                        req("service", "NotIn", &["WrongValue"]),
                    ],
                ))
                .obj(),
            pods: vec![existing()],
            want: Fits,
        },
        SingleNodeCase {
            name: "The labelSelector requirements(items of matchExpressions) are ANDed, the pod cannot schedule onto the node because one of the matchExpression item don't match.",
            pod: make_pod()
                .labels(pod_label2)
                .required_affinity(term(
                    "region",
                    vec![req("service", "Exists", &[]), req("wrongkey", "DoesNotExist", &[])],
                ))
                .required_affinity(term(
                    "region",
                    vec![
                        req("service", "In", &["securityscan2"]),
                        req("service", "NotIn", &["WrongValue"]),
                    ],
                ))
                .obj(),
            pods: vec![existing()],
            want: Affinity,
        },
        SingleNodeCase {
            name: "satisfies the PodAffinity and PodAntiAffinity with the existing pod",
            pod: make_pod()
                .labels(pod_label2)
                .required_affinity(term_in("service", "region", &["securityscan", "value2"]))
                .required_anti_affinity(term_in("service", "node", &["antivirusscan", "value2"]))
                .obj(),
            pods: vec![existing()],
            want: Fits,
        },
        SingleNodeCase {
            name: "satisfies the PodAffinity and PodAntiAffinity and PodAntiAffinity symmetry with the existing pod",
            pod: make_pod()
                .labels(pod_label2)
                .required_affinity(term_in("service", "region", &["securityscan", "value2"]))
                .required_anti_affinity(term_in("service", "node", &["antivirusscan", "value2"]))
                .obj(),
            pods: vec![make_pod()
                .node("node1")
                .labels(pod_label)
                .required_anti_affinity(term_in("service", "node", &["antivirusscan", "value2"]))
                .obj()],
            want: Fits,
        },
        SingleNodeCase {
            name: "satisfies the PodAffinity but doesn't satisfy the PodAntiAffinity with the existing pod",
            pod: make_pod()
                .labels(pod_label2)
                .required_affinity(term_in("service", "region", &["securityscan", "value2"]))
                .required_anti_affinity(term_in("service", "zone", &["securityscan", "value2"]))
                .obj(),
            pods: vec![existing()],
            want: AntiAffinity,
        },
        SingleNodeCase {
            name: "satisfies the PodAffinity and PodAntiAffinity but doesn't satisfy PodAntiAffinity symmetry with the existing pod",
            pod: make_pod()
                .labels(pod_label)
                .required_affinity(term_in("service", "region", &["securityscan", "value2"]))
                .required_anti_affinity(term_in("service", "node", &["antivirusscan", "value2"]))
                .obj(),
            pods: vec![make_pod()
                .labels(pod_label)
                .node("node1")
                .required_anti_affinity(term_in("service", "zone", &["securityscan", "value2"]))
                .obj()],
            want: Existing,
        },
        SingleNodeCase {
            name: "pod matches its own Label in PodAffinity and that matches the existing pod Labels",
            pod: make_pod()
                .labels(pod_label)
                .required_affinity(term_not_in("service", "region", &["securityscan", "value2"]))
                .obj(),
            // On node2, which is not in the cluster.
            pods: vec![make_pod().label("service", "securityscan").node("node2").obj()],
            want: Affinity,
        },
        SingleNodeCase {
            name: "verify that PodAntiAffinity from existing pod is respected when pod has no AntiAffinity constraints. doesn't satisfy PodAntiAffinity symmetry with the existing pod",
            pod: make_pod().labels(pod_label).obj(),
            pods: vec![make_pod()
                .node("node1")
                .labels(pod_label)
                .required_anti_affinity(term_in("service", "zone", &["securityscan", "value2"]))
                .obj()],
            want: Existing,
        },
        SingleNodeCase {
            name: "verify that PodAntiAffinity from existing pod is respected when pod has no AntiAffinity constraints. satisfy PodAntiAffinity symmetry with the existing pod",
            pod: make_pod().labels(pod_label).obj(),
            pods: vec![make_pod()
                .node("node1")
                .labels(pod_label)
                .required_anti_affinity(term_not_in("service", "zone", &["securityscan", "value2"]))
                .obj()],
            want: Fits,
        },
        SingleNodeCase {
            name: "satisfies the PodAntiAffinity with existing pod but doesn't satisfy PodAntiAffinity symmetry with incoming pod",
            pod: make_pod()
                .labels(pod_label)
                .required_anti_affinity(term_exists("service", "region"))
                .required_anti_affinity(term_exists("security", "region"))
                .obj(),
            pods: vec![make_pod()
                .node("node1")
                .labels(pod_label2)
                .required_anti_affinity(term_exists("security", "zone"))
                .obj()],
            want: AntiAffinity,
        },
        SingleNodeCase {
            name: "PodAntiAffinity symmetry check a1: incoming pod and existing pod partially match each other on AffinityTerms",
            pod: make_pod()
                .labels(pod_label)
                .required_anti_affinity(term_exists("service", "zone"))
                .required_anti_affinity(term_exists("security", "zone"))
                .obj(),
            pods: vec![make_pod()
                .node("node1")
                .labels(pod_label2)
                .required_anti_affinity(term_exists("security", "zone"))
                .obj()],
            want: AntiAffinity,
        },
        SingleNodeCase {
            name: "PodAntiAffinity symmetry check a2: incoming pod and existing pod partially match each other on AffinityTerms",
            pod: make_pod()
                .labels(pod_label2)
                .required_anti_affinity(term_exists("security", "zone"))
                .obj(),
            pods: vec![make_pod()
                .node("node1")
                .labels(pod_label)
                .required_anti_affinity(term_exists("service", "zone"))
                .required_anti_affinity(term_exists("security", "zone"))
                .obj()],
            want: Existing,
        },
        SingleNodeCase {
            name: "PodAntiAffinity symmetry check b1: incoming pod and existing pod partially match each other on AffinityTerms",
            pod: make_pod()
                .labels(&[("abc", ""), ("xyz", "")])
                .required_anti_affinity(term_exists("abc", "zone"))
                .required_anti_affinity(term_exists("def", "zone"))
                .obj(),
            pods: vec![make_pod()
                .node("node1")
                .labels(&[("def", ""), ("xyz", "")])
                .required_anti_affinity(term_exists("abc", "zone"))
                .required_anti_affinity(term_exists("def", "zone"))
                .obj()],
            want: AntiAffinity,
        },
        SingleNodeCase {
            name: "PodAntiAffinity symmetry check b2: incoming pod and existing pod partially match each other on AffinityTerms",
            pod: make_pod()
                .labels(&[("def", ""), ("xyz", "")])
                .required_anti_affinity(term_exists("abc", "zone"))
                .required_anti_affinity(term_exists("def", "zone"))
                .obj(),
            pods: vec![make_pod()
                .node("node1")
                .labels(&[("abc", ""), ("xyz", "")])
                .required_anti_affinity(term_exists("abc", "zone"))
                .required_anti_affinity(term_exists("def", "zone"))
                .obj()],
            want: AntiAffinity,
        },
        SingleNodeCase {
            name: "affinity with NamespaceSelector",
            pod: make_pod()
                .labels(pod_label2)
                .required_affinity(
                    term_in("service", "region", &["securityscan", "value2"])
                        .namespace_selector(team1()),
                )
                .obj(),
            pods: vec![make_pod()
                .node("node1")
                .namespace("subteam1.team1")
                .labels(pod_label)
                .obj()],
            want: Fits,
        },
        SingleNodeCase {
            name: "affinity with non-matching NamespaceSelector",
            pod: make_pod()
                .labels(pod_label2)
                .required_affinity(
                    term_in("service", "region", &["securityscan", "value2"])
                        .namespace_selector(team1()),
                )
                .obj(),
            pods: vec![make_pod()
                .node("node1")
                .namespace("subteam1.team2")
                .labels(pod_label)
                .obj()],
            want: Affinity,
        },
        SingleNodeCase {
            name: "anti-affinity with matching NamespaceSelector",
            pod: make_pod()
                .namespace("subteam1.team1")
                .labels(pod_label2)
                .required_anti_affinity(
                    term_in("service", "zone", &["securityscan", "value2"])
                        .namespace_selector(team1()),
                )
                .obj(),
            pods: vec![make_pod()
                .node("node1")
                .namespace("subteam2.team1")
                .labels(pod_label)
                .obj()],
            want: AntiAffinity,
        },
        SingleNodeCase {
            name: "anti-affinity with matching all NamespaceSelector",
            pod: make_pod()
                .namespace("subteam1.team1")
                .labels(pod_label2)
                .required_anti_affinity(
                    term_in("service", "zone", &["securityscan", "value2"])
                        .namespace_selector(LabelSelector::default()),
                )
                .obj(),
            pods: vec![make_pod()
                .node("node1")
                .namespace("subteam2.team1")
                .labels(pod_label)
                .obj()],
            want: AntiAffinity,
        },
        SingleNodeCase {
            name: "anti-affinity with non-matching NamespaceSelector",
            pod: make_pod()
                .namespace("subteam1.team1")
                .labels(pod_label2)
                .required_anti_affinity(
                    term_in("service", "zone", &["securityscan", "value2"])
                        .namespace_selector(team1()),
                )
                .obj(),
            pods: vec![make_pod()
                .node("node1")
                .namespace("subteam1.team2")
                .labels(pod_label)
                .obj()],
            want: Fits,
        },
    ];

    let plugin = kube_plugin();
    for case in cases {
        let got = run(&plugin, &case.pod, vec![node1()], case.pods);
        assert_eq!(got, vec![want_status(case.want)], "{}", case.name);
    }
}

/// The two PreFilter cases of `TestRequiredAffinitySingleNode` whose pod has a label value no
/// selector accepts: the pod is refused everywhere. kube's message ends with Go's validation
/// text; keel's with its own selector error.
#[test]
fn required_affinity_single_node_invalid_terms() {
    let node1 = labeled_node("node1", &[("region", "r1"), ("zone", "z11")]);
    let cases = [
        (
            "PodAffinity fails PreFilter with an invalid affinity label syntax",
            make_pod()
                .labels(&[("service", "securityscan")])
                .required_affinity(term_in("service", "region", &["{{.bad-value.}}"]))
                .required_affinity(term_in("service", "node", &["antivirusscan", "value2"]))
                .obj(),
        ),
        (
            "PodAntiAffinity fails PreFilter with an invalid antiaffinity label syntax",
            make_pod()
                .labels(&[("service", "securityscan")])
                .required_affinity(term_in("service", "region", &["foo"]))
                .required_affinity(term_in("service", "node", &["{{.bad-value.}}"]))
                .obj(),
        ),
    ];
    let plugin = kube_plugin();
    for (name, pod) in cases {
        let infos = cluster(vec![node1.clone()], vec![]);
        let mut state = CycleState::new();
        let status = plugin.pre_filter(&pod, &infos, &mut state);
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable, "{name}");
        assert!(
            status
                .message()
                .starts_with("parsing pod: requiredAffinityTerms: "),
            "{name}: {status}"
        );
    }
}

/// kube's `TestPreFilterDisabled`: Filter without PreFilter's state is an error.
#[test]
fn filter_without_pre_filter_is_an_error() {
    let plugin = InterPodAffinity::default();
    let infos = cluster(vec![labeled_node("node1", &[])], vec![]);
    let status = plugin.filter(&CycleState::new(), &make_pod().obj(), &infos[0]);
    assert_eq!(
        status,
        Status::error("error reading \"InterPodAffinity\" from cycleState: not found")
    );
}

/// Not from kube's tables (kube-apiserver merges the keys, see `terms.rs`):
/// `matchLabelKeys` narrows an anti-affinity term to the pods with the incoming pod's value,
/// `mismatchLabelKeys` an affinity term to the pods with another value.
#[test]
fn match_label_keys_and_mismatch_label_keys() {
    let nodes = || {
        vec![
            labeled_node("nodeA", &[("hostname", "nodeA")]),
            labeled_node("nodeB", &[("hostname", "nodeB")]),
        ]
    };
    let pods = || {
        vec![
            make_pod()
                .node("nodeA")
                .labels(&[("app", "web"), ("version", "v2")])
                .obj(),
            make_pod()
                .node("nodeB")
                .labels(&[("app", "web"), ("version", "v1")])
                .obj(),
        ]
    };
    let plugin = InterPodAffinity::default();

    // Away from the pods of the same version only.
    let anti = make_pod()
        .labels(&[("app", "web"), ("version", "v1")])
        .required_anti_affinity(term_in("app", "hostname", &["web"]).match_label_keys(&["version"]))
        .obj();
    let got = run(&plugin, &anti, nodes(), pods());
    assert_eq!(got, vec![want_status(Fits), want_status(AntiAffinity)]);

    // With the pods of another version only.
    let with_others = make_pod()
        .labels(&[("app", "web"), ("version", "v1")])
        .required_affinity(term_in("app", "hostname", &["web"]).mismatch_label_keys(&["version"]))
        .obj();
    let got = run(&plugin, &with_others, nodes(), pods());
    assert_eq!(got, vec![want_status(Fits), want_status(Affinity)]);

    // A key the pod does not have adds nothing.
    let unlabelled = make_pod()
        .labels(&[("app", "web")])
        .required_anti_affinity(term_in("app", "hostname", &["web"]).match_label_keys(&["version"]))
        .obj();
    let got = run(&plugin, &unlabelled, nodes(), pods());
    assert_eq!(
        got,
        vec![want_status(AntiAffinity), want_status(AntiAffinity)]
    );
}

/// Not from kube's tables: without namespace labels (the default lookup), a
/// `namespaceSelector` with requirements selects no namespace, `{}` every namespace, and an
/// existing pod's selector is matched against the incoming pod's (empty) namespace labels.
#[test]
fn namespace_selector_without_known_namespaces() {
    let plugin = InterPodAffinity::default();
    let nodes = || vec![labeled_node("nodeA", &[("zone", "z1")])];
    let other = || {
        make_pod()
            .node("nodeA")
            .namespace("other")
            .label("app", "db")
            .obj()
    };

    let by_labels = make_pod()
        .namespace("mine")
        .required_anti_affinity(
            term_exists("app", "zone").namespace_selector(selector(vec![req(
                "team",
                "In",
                &["team1"],
            )])),
        )
        .obj();
    assert_eq!(
        run(&plugin, &by_labels, nodes(), vec![other()]),
        vec![want_status(Fits)]
    );

    let everything = make_pod()
        .namespace("mine")
        .required_anti_affinity(
            term_exists("app", "zone").namespace_selector(LabelSelector::default()),
        )
        .obj();
    assert_eq!(
        run(&plugin, &everything, nodes(), vec![other()]),
        vec![want_status(AntiAffinity)]
    );

    // `team NotIn (team1)` holds for a namespace without labels.
    let existing = make_pod()
        .node("nodeA")
        .namespace("other")
        .required_anti_affinity(
            term_exists("app", "zone").namespace_selector(selector(vec![req(
                "team",
                "NotIn",
                &["team1"],
            )])),
        )
        .obj();
    let incoming = make_pod().namespace("mine").label("app", "web").obj();
    assert_eq!(
        run(&plugin, &incoming, nodes(), vec![existing]),
        vec![want_status(Existing)]
    );
}
