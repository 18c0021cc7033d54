use super::*;
use crate::framework::Code;
use crate::testing::{cluster, expr, field_term, node, node_info, pod, score_all, term};

fn name_in(name: &str) -> NodeSelectorRequirement {
    expr(OBJECT_NAME_FIELD, "In", &[name])
}

struct FilterCase {
    name: &'static str,
    pod: Pod,
    node: Node,
    /// A scheduler-wide `addedAffinity`.
    added: Option<NodeAffinitySpec>,
    /// The filter's reason, or None when the node fits.
    want: Option<&'static str>,
}

fn case(name: &'static str, pod: Pod, node: Node, want: Option<&'static str>) -> FilterCase {
    FilterCase {
        name,
        pod,
        node,
        added: None,
        want,
    }
}

fn added_required(terms: Vec<NodeSelectorTerm>) -> Option<NodeAffinitySpec> {
    Some(NodeAffinitySpec {
        required_during_scheduling_ignored_during_execution: Some(NodeSelector {
            node_selector_terms: terms,
        }),
        ..Default::default()
    })
}

/// kube-scheduler's `TestNodeAffinity`, every case but the PreFilter-only expectations (the
/// PreFilter's node-name shortcut is the framework's business); a few more at the end.
#[test]
fn filter() {
    const POD: Option<&str> = Some(ERR_REASON_POD);
    let gpu = [("GPU", "NVIDIA-GRID-K1")];
    let cases = [
        case(
            "missing labels",
            pod().node_selector(&[("foo", "bar")]).obj(),
            node("").obj(),
            POD,
        ),
        case(
            "same labels",
            pod().node_selector(&[("foo", "bar")]).obj(),
            node("").labels(&[("foo", "bar")]).obj(),
            None,
        ),
        case(
            "node labels are superset",
            pod().node_selector(&[("foo", "bar")]).obj(),
            node("").labels(&[("foo", "bar"), ("baz", "blah")]).obj(),
            None,
        ),
        case(
            "node labels are subset",
            pod()
                .node_selector(&[("foo", "bar"), ("baz", "blah")])
                .obj(),
            node("").labels(&[("foo", "bar")]).obj(),
            POD,
        ),
        case(
            "matchExpressions using In operator that matches the existing node",
            pod()
                .required(vec![term(vec![expr("foo", "In", &["bar", "value2"])])])
                .obj(),
            node("").labels(&[("foo", "bar")]).obj(),
            None,
        ),
        case(
            "matchExpressions using Gt operator that matches the existing node",
            pod()
                .required(vec![term(vec![expr("kernel-version", "Gt", &["0204"])])])
                .obj(),
            node("").labels(&[("kernel-version", "0206")]).obj(),
            None,
        ),
        case(
            "matchExpressions using NotIn operator that matches the existing node",
            pod()
                .required(vec![term(vec![expr(
                    "mem-type",
                    "NotIn",
                    &["DDR", "DDR2"],
                )])])
                .obj(),
            node("").labels(&[("mem-type", "DDR3")]).obj(),
            None,
        ),
        case(
            "matchExpressions using Exists operator that matches the existing node",
            pod()
                .required(vec![term(vec![expr("GPU", "Exists", &[])])])
                .obj(),
            node("").labels(&gpu).obj(),
            None,
        ),
        case(
            "affinity that doesn't match node's labels won't schedule onto the node",
            pod()
                .required(vec![term(vec![expr("foo", "In", &["value1", "value2"])])])
                .obj(),
            node("").labels(&[("foo", "bar")]).obj(),
            POD,
        ),
        case(
            "empty MatchExpressions match no objects",
            pod().required(vec![term(vec![])]).obj(),
            node("").labels(&[("foo", "bar")]).obj(),
            POD,
        ),
        case(
            "no Affinity will schedule onto a node",
            pod().obj(),
            node("").labels(&[("foo", "bar")]).obj(),
            None,
        ),
        case(
            "Affinity but nil NodeSelector will schedule onto a node",
            pod().empty_node_affinity().obj(),
            node("").labels(&[("foo", "bar")]).obj(),
            None,
        ),
        case(
            "multiple matchExpressions ANDed that matches the existing node",
            pod()
                .required(vec![term(vec![
                    expr("GPU", "Exists", &[]),
                    expr("GPU", "NotIn", &["AMD", "INTER"]),
                ])])
                .obj(),
            node("").labels(&gpu).obj(),
            None,
        ),
        case(
            "multiple matchExpressions ANDed that doesn't match the existing node",
            pod()
                .required(vec![term(vec![
                    expr("GPU", "Exists", &[]),
                    expr("GPU", "In", &["AMD", "INTER"]),
                ])])
                .obj(),
            node("").labels(&gpu).obj(),
            POD,
        ),
        case(
            "multiple NodeSelectorTerms ORed in affinity, one matches",
            pod()
                .required(vec![
                    term(vec![expr("foo", "In", &["bar", "value2"])]),
                    term(vec![expr("diffkey", "In", &["wrong", "value2"])]),
                ])
                .obj(),
            node("").labels(&[("foo", "bar")]).obj(),
            None,
        ),
        case(
            "an Affinity and a PodSpec.NodeSelector, both satisfied",
            pod()
                .node_selector(&[("foo", "bar")])
                .required(vec![term(vec![expr("foo", "Exists", &[])])])
                .obj(),
            node("").labels(&[("foo", "bar")]).obj(),
            None,
        ),
        case(
            "an Affinity matches but the PodSpec.NodeSelector is not satisfied",
            pod()
                .node_selector(&[("foo", "bar")])
                .required(vec![term(vec![expr("foo", "Exists", &[])])])
                .obj(),
            node("").labels(&[("foo", "barrrrrr")]).obj(),
            POD,
        ),
        case(
            "an invalid value in an Affinity term won't be scheduled onto the node",
            pod()
                .required(vec![term(vec![expr(
                    "foo",
                    "NotIn",
                    &["invalid value: ___@#$%^"],
                )])])
                .obj(),
            node("").labels(&[("foo", "bar")]).obj(),
            POD,
        ),
        case(
            "matchFields using In operator that matches the existing node",
            pod()
                .required(vec![field_term(vec![name_in("node1")])])
                .obj(),
            node("node1").obj(),
            None,
        ),
        case(
            "matchFields using In operator that does not match the existing node",
            pod()
                .required(vec![field_term(vec![name_in("node1")])])
                .obj(),
            node("node2").obj(),
            POD,
        ),
        case(
            "two terms: matchFields does not match, but matchExpressions matches",
            pod()
                .required(vec![
                    field_term(vec![name_in("node1"), name_in("node2")]),
                    term(vec![expr("foo", "In", &["bar"])]),
                ])
                .obj(),
            node("node2").labels(&[("foo", "bar")]).obj(),
            None,
        ),
        case(
            "one term: matchFields does not match, but matchExpressions matches",
            pod()
                .required(vec![NodeSelectorTerm {
                    match_fields: Some(vec![name_in("node1")]),
                    match_expressions: Some(vec![expr("foo", "In", &["bar"])]),
                }])
                .obj(),
            node("node2").labels(&[("foo", "bar")]).obj(),
            POD,
        ),
        case(
            "one term: both matchFields and matchExpressions match",
            pod()
                .required(vec![NodeSelectorTerm {
                    match_fields: Some(vec![name_in("node1")]),
                    match_expressions: Some(vec![expr("foo", "In", &["bar"])]),
                }])
                .obj(),
            node("node1").labels(&[("foo", "bar")]).obj(),
            None,
        ),
        case(
            "two terms: both matchFields and matchExpressions do not match",
            pod()
                .required(vec![
                    field_term(vec![name_in("node1")]),
                    term(vec![expr("foo", "In", &["not-match-to-bar"])]),
                ])
                .obj(),
            node("node2").labels(&[("foo", "bar")]).obj(),
            POD,
        ),
        case(
            "two terms of node.Name affinity",
            pod()
                .required(vec![
                    field_term(vec![name_in("node1")]),
                    field_term(vec![name_in("node2")]),
                ])
                .obj(),
            node("node2").obj(),
            None,
        ),
        case(
            "two conflicting match field requirements",
            pod()
                .required(vec![field_term(vec![name_in("node1"), name_in("node2")])])
                .obj(),
            node("node2").labels(&[("foo", "bar")]).obj(),
            POD,
        ),
        FilterCase {
            added: added_required(vec![field_term(vec![name_in("node2")])]),
            ..case(
                "matches added affinity and Pod's node affinity",
                pod()
                    .required(vec![term(vec![expr("zone", "In", &["foo"])])])
                    .obj(),
                node("node2").labels(&[("zone", "foo")]).obj(),
                None,
            )
        },
        FilterCase {
            added: added_required(vec![field_term(vec![name_in("node2")])]),
            ..case(
                "matches added affinity but not Pod's node affinity",
                pod()
                    .required(vec![term(vec![expr("zone", "In", &["bar"])])])
                    .obj(),
                node("node2").labels(&[("zone", "foo")]).obj(),
                POD,
            )
        },
        FilterCase {
            added: added_required(vec![term(vec![expr("zone", "In", &["bar"])])]),
            ..case(
                "doesn't match added affinity",
                pod().obj(),
                node("node2").labels(&[("zone", "foo")]).obj(),
                Some(ERR_REASON_ENFORCED),
            )
        },
        // Beyond kube's table: the other operators, and what does not parse.
        case(
            "Lt compares integers",
            pod()
                .required(vec![term(vec![expr("kernel-version", "Lt", &["0204"])])])
                .obj(),
            node("").labels(&[("kernel-version", "0206")]).obj(),
            POD,
        ),
        case(
            "Gt never matches a label that is no integer",
            pod()
                .required(vec![term(vec![expr("version", "Gt", &["1"])])])
                .obj(),
            node("").labels(&[("version", "v2")]).obj(),
            POD,
        ),
        case(
            "DoesNotExist",
            pod()
                .required(vec![term(vec![expr("GPU", "DoesNotExist", &[])])])
                .obj(),
            node("").labels(&[("foo", "bar")]).obj(),
            None,
        ),
        case(
            "a term that does not parse hides no other term",
            pod()
                .required(vec![
                    term(vec![expr("foo", "Matches", &["bar"])]),
                    term(vec![expr("foo", "In", &["bar"])]),
                ])
                .obj(),
            node("").labels(&[("foo", "bar")]).obj(),
            None,
        ),
        case(
            "no terms at all select no node",
            pod().required(vec![]).obj(),
            node("").labels(&[("foo", "bar")]).obj(),
            POD,
        ),
    ];
    for case in cases {
        let plugin = NodeAffinity::new(case.added.as_ref()).expect("added affinity parses");
        let status = plugin.filter(
            &CycleState::new(),
            &case.pod,
            &node_info(case.node, Vec::new()),
        );
        match case.want {
            None => assert!(status.is_success(), "{}: {status}", case.name),
            Some(reason) => assert_eq!(
                status,
                Status::new(Code::UnschedulableAndUnresolvable, [reason]),
                "{}",
                case.name
            ),
        }
    }
}

fn preferred(terms: &[(i32, Vec<NodeSelectorRequirement>)]) -> Vec<(i32, NodeSelectorTerm)> {
    terms
        .iter()
        .map(|(weight, expressions)| (*weight, term(expressions.clone())))
        .collect()
}

/// kube-scheduler's `TestNodeAffinityPriority`, every case: raw scores are the summed weights
/// of the matching preferred terms, normalized to the highest.
#[test]
fn score() {
    let label1 = [("foo", "bar")];
    let label2 = [("key", "value")];
    let label3 = [("az", "az1")];
    let label4 = [("abc", "az11"), ("def", "az22")];
    let label5 = [("foo", "bar"), ("key", "value"), ("az", "az1")];
    let affinity1 = preferred(&[(2, vec![expr("foo", "In", &["bar"])])]);
    let affinity2 = preferred(&[
        (2, vec![expr("foo", "In", &["bar"])]),
        (4, vec![expr("key", "In", &["value"])]),
        (
            5,
            vec![
                expr("foo", "In", &["bar"]),
                expr("key", "In", &["value"]),
                expr("az", "In", &["az1"]),
            ],
        ),
    ]);
    let added_preferred = |terms: Vec<(i32, NodeSelectorTerm)>| NodeAffinitySpec {
        preferred_during_scheduling_ignored_during_execution: Some(
            terms
                .into_iter()
                .map(|(weight, preference)| PreferredSchedulingTerm { weight, preference })
                .collect(),
        ),
        ..Default::default()
    };

    let cases = [
        (
            "all nodes are same priority as NodeAffinity is nil",
            pod().obj(),
            vec![
                node("node1").labels(&label1).obj(),
                node("node2").labels(&label2).obj(),
                node("node3").labels(&label3).obj(),
            ],
            None,
            vec![0, 0, 0],
        ),
        (
            "no node matches preferred scheduling requirements",
            pod().preferred(affinity1.clone()).obj(),
            vec![
                node("node1").labels(&label4).obj(),
                node("node2").labels(&label2).obj(),
                node("node3").labels(&label3).obj(),
            ],
            None,
            vec![0, 0, 0],
        ),
        (
            "only node1 matches the preferred scheduling requirements of pod",
            pod().preferred(affinity1.clone()).obj(),
            vec![
                node("node1").labels(&label1).obj(),
                node("node2").labels(&label2).obj(),
                node("node3").labels(&label3).obj(),
            ],
            None,
            vec![100, 0, 0],
        ),
        (
            // 2, 2 + 4 + 5 and 4, normalized to 11.
            "all nodes match the preferred scheduling requirements but with different priorities",
            pod().preferred(affinity2).obj(),
            vec![
                node("node1").labels(&label1).obj(),
                node("node5").labels(&label5).obj(),
                node("node2").labels(&label2).obj(),
            ],
            None,
            vec![18, 100, 36],
        ),
        (
            "added affinity",
            pod().obj(),
            vec![
                node("node1").labels(&label1).obj(),
                node("node2").labels(&label2).obj(),
            ],
            Some(added_preferred(affinity1.clone())),
            vec![100, 0],
        ),
        (
            // 2, 3 and 2 + 3, normalized to 5.
            "added affinity and pod has default affinity",
            pod().preferred(affinity1).obj(),
            vec![
                node("node1").labels(&label1).obj(),
                node("node2").labels(&label2).obj(),
                node("node3").labels(&label5).obj(),
            ],
            Some(added_preferred(preferred(&[(
                3,
                vec![expr("key", "In", &["value"])],
            )]))),
            vec![40, 60, 100],
        ),
    ];
    for (name, pod, nodes, added, want) in cases {
        let plugin = NodeAffinity::new(added.as_ref()).expect("added affinity parses");
        let nodes = cluster(nodes, Vec::new());
        assert_eq!(score_all(&plugin, &pod, &nodes), want, "{name}");
    }
}

#[test]
fn score_skips_weightless_terms_and_refuses_terms_that_do_not_parse() {
    let node = node_info(node("n1").labels(&[("foo", "bar")]).obj(), Vec::new());
    let weightless = pod()
        .preferred(vec![(0, term(vec![expr("foo", "In", &["bar"])]))])
        .obj();
    assert_eq!(
        NodeAffinity::default().score(&CycleState::new(), &weightless, &node),
        Ok(0)
    );

    let malformed = pod()
        .preferred(vec![(1, term(vec![expr("foo", "In", &[])]))])
        .obj();
    let error = NodeAffinity::default()
        .score(&CycleState::new(), &malformed, &node)
        .expect_err("an In without values does not parse");
    assert_eq!(error.code, Code::Error);
}

#[test]
fn added_affinity_must_parse() {
    let malformed = added_required(vec![term(vec![expr("zone", "Near", &["a"])])]);
    assert!(NodeAffinity::new(malformed.as_ref()).is_err());
}
