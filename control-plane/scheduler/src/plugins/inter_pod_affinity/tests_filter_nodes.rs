//! kube-scheduler's `TestRequiredAffinityMultipleNodes` (`filtering_test.go`), every case.
//!
//! Where kube expects PreFilter to return Skip (nothing to check), keel's PreFilter succeeds
//! with an empty state and the filter lets every node through: the cases say `Fits`.

use k8s_openapi::api::core::v1::{Node, Pod};

use super::tests_builders::*;
use super::tests_filter::{kube_plugin, run, want_status, Want, Want::*};
use crate::framework::Status;

struct MultipleNodesCase {
    name: &'static str,
    pod: Pod,
    pods: Vec<Pod>,
    nodes: Vec<Node>,
    want: Vec<Want>,
}

#[test]
fn required_affinity_multiple_nodes() {
    let china: &[(&str, &str)] = &[("region", "China")];
    let china_az1: &[(&str, &str)] = &[("region", "China"), ("az", "az1")];
    let india: &[(&str, &str)] = &[("region", "India")];
    // The two or three nodes most cases use: one region, a zone each.
    let node_a = |zone: &str| {
        labeled_node(
            "nodeA",
            &[("region", "r1"), ("zone", zone), ("hostname", "nodeA")],
        )
    };
    let node_b = |zone: &str| {
        labeled_node(
            "nodeB",
            &[("region", "r1"), ("zone", zone), ("hostname", "nodeB")],
        )
    };

    let cases = vec![
        MultipleNodesCase {
            name: "A pod can be scheduled onto all the nodes that have the same topology key & label value with one of them has an existing pod that matches the affinity rules",
            pod: make_pod().required_affinity(term_in("foo", "region", &["bar"])).obj(),
            pods: vec![make_pod().name("p1").node("node1").labels(&[("foo", "bar")]).obj()],
            nodes: vec![
                labeled_node("node1", china),
                labeled_node("node2", china_az1),
                labeled_node("node3", india),
            ],
            want: vec![Fits, Fits, Affinity],
        },
        MultipleNodesCase {
            name: "The affinity rule is to schedule all of the pods of this collection to the same zone. The first pod of the collection should not be blocked from being scheduled onto any node, even there's no existing pod that matches the rule anywhere.",
            pod: make_pod()
                .labels(&[("foo", "bar"), ("service", "securityscan")])
                .required_affinity(term_in("foo", "zone", &["bar"]))
                .required_affinity(term_in("service", "zone", &["securityscan"]))
                .obj(),
            pods: vec![make_pod().name("p1").node("nodeA").labels(&[("foo", "bar")]).obj()],
            nodes: vec![
                labeled_node("nodeA", &[("zone", "az1"), ("hostname", "h1")]),
                labeled_node("nodeB", &[("zone", "az2"), ("hostname", "h2")]),
            ],
            want: vec![Fits, Fits],
        },
        MultipleNodesCase {
            name: "The first pod of the collection can only be scheduled on nodes labelled with the requested topology keys",
            pod: make_pod()
                .labels(&[("foo", "bar"), ("service", "securityscan")])
                .required_affinity(term_in("foo", "zone", &["bar"]))
                .required_affinity(term_in("service", "zone", &["securityscan"]))
                .obj(),
            pods: vec![make_pod().name("p1").node("nodeA").labels(&[("foo", "bar")]).obj()],
            nodes: vec![
                labeled_node("nodeA", &[("zoneLabel", "az1"), ("hostname", "h1")]),
                labeled_node("nodeB", &[("zoneLabel", "az2"), ("hostname", "h2")]),
            ],
            want: vec![Affinity, Affinity],
        },
        MultipleNodesCase {
            name: "NodeA and nodeB have same topologyKey and label value. NodeA has an existing pod that matches the inter pod affinity rule. The pod can not be scheduled onto nodeA and nodeB.",
            pod: make_pod().required_anti_affinity(term_in("foo", "region", &["abc"])).obj(),
            pods: vec![make_pod().node("nodeA").labels(&[("foo", "abc")]).obj()],
            nodes: vec![
                labeled_node("nodeA", &[("region", "r1"), ("hostname", "nodeA")]),
                labeled_node("nodeB", &[("region", "r1"), ("hostname", "nodeB")]),
            ],
            want: vec![AntiAffinity, AntiAffinity],
        },
        MultipleNodesCase {
            name: "This test ensures that anti-affinity matches a pod when any term of the anti-affinity rule matches a pod.",
            pod: make_pod()
                .required_anti_affinity(term_in("foo", "region", &["abc"]))
                .required_anti_affinity(term_in("service", "zone", &["securityscan"]))
                .obj(),
            pods: vec![make_pod()
                .node("nodeA")
                .labels(&[("foo", "abc"), ("service", "securityscan")])
                .obj()],
            nodes: vec![node_a("z1"), node_b("z2")],
            want: vec![AntiAffinity, AntiAffinity],
        },
        MultipleNodesCase {
            name: "NodeA and nodeB have same topologyKey and label value. NodeA has an existing pod that matches the inter pod affinity rule. The pod can not be scheduled onto nodeA and nodeB but can be scheduled onto nodeC",
            pod: make_pod().required_anti_affinity(term_in("foo", "region", &["abc"])).obj(),
            pods: vec![make_pod().node("nodeA").labels(&[("foo", "abc")]).obj()],
            nodes: vec![
                labeled_node("nodeA", china),
                labeled_node("nodeB", china_az1),
                labeled_node("nodeC", india),
            ],
            want: vec![AntiAffinity, AntiAffinity, Fits],
        },
        MultipleNodesCase {
            name: "NodeA and nodeB have same topologyKey and label value. NodeA has an existing pod that matches the inter pod affinity rule. The pod can not be scheduled onto nodeA, nodeB, but can be scheduled onto nodeC (NodeC has an existing pod that match the inter pod affinity rule but in different namespace)",
            pod: make_pod()
                .namespace("NS1")
                .labels(&[("foo", "123")])
                .required_anti_affinity(term_in("foo", "region", &["bar"]))
                .obj(),
            pods: vec![
                make_pod().node("nodeA").namespace("NS1").labels(&[("foo", "bar")]).obj(),
                make_pod()
                    .node("nodeC")
                    .namespace("NS2")
                    .required_anti_affinity(term_in("foo", "region", &["123"]))
                    .obj(),
            ],
            nodes: vec![
                labeled_node("nodeA", china),
                labeled_node("nodeB", china_az1),
                labeled_node("nodeC", india),
            ],
            want: vec![AntiAffinity, AntiAffinity, Fits],
        },
        MultipleNodesCase {
            name: "Test existing pod's anti-affinity: if an existing pod has a term with invalid topologyKey, labelSelector of the term is firstly checked, and then topologyKey of the term is also checked",
            pod: make_pod().label("foo", "").obj(),
            pods: vec![make_pod()
                .node("nodeA")
                .required_anti_affinity(term_exists("foo", "invalid-node-label"))
                .obj()],
            nodes: vec![node_a("z1"), node_b("z1")],
            want: vec![Fits, Fits],
        },
        MultipleNodesCase {
            name: "Test incoming pod's anti-affinity: even if labelSelector matches, we still check if topologyKey matches",
            pod: make_pod()
                .node("nodeA")
                .required_anti_affinity(term_exists("foo", "invalid-node-label"))
                .obj(),
            pods: vec![make_pod().node("nodeA").labels(&[("foo", "")]).obj()],
            nodes: vec![node_a("z1"), node_b("z1")],
            want: vec![Fits, Fits],
        },
        MultipleNodesCase {
            name: "Test existing pod's anti-affinity: incoming pod wouldn't considered as a fit as it violates each existingPod's terms on all nodes",
            pod: make_pod().label("foo", "").label("bar", "").obj(),
            pods: vec![
                make_pod()
                    .node("nodeA")
                    .required_anti_affinity(term_exists("foo", "zone"))
                    .obj(),
                make_pod()
                    .node("nodeA")
                    .required_anti_affinity(term_exists("bar", "region"))
                    .obj(),
            ],
            nodes: vec![node_a("z1"), node_b("z2")],
            want: vec![Existing, Existing],
        },
        MultipleNodesCase {
            name: "Test incoming pod's anti-affinity: incoming pod wouldn't considered as a fit as it at least violates one anti-affinity rule of existingPod",
            pod: make_pod()
                .required_anti_affinity(term_exists("foo", "zone"))
                .required_anti_affinity(term_exists("bar", "region"))
                .obj(),
            pods: vec![
                make_pod().node("nodeA").labels(&[("foo", "")]).obj(),
                make_pod().node("nodeB").labels(&[("bar", "")]).obj(),
            ],
            nodes: vec![node_a("z1"), node_b("z2")],
            want: vec![AntiAffinity, AntiAffinity],
        },
        MultipleNodesCase {
            name: "Test existing pod's anti-affinity: only when labelSelector and topologyKey both match, it's counted as a single term match - case when one term has invalid topologyKey",
            pod: make_pod().label("foo", "").label("bar", "").obj(),
            pods: vec![make_pod()
                .node("nodeA")
                .required_anti_affinity(term_exists("foo", "invalid-node-label"))
                .required_anti_affinity(term_exists("bar", "zone"))
                .obj()],
            nodes: vec![node_a("z1"), node_b("z2")],
            want: vec![Existing, Fits],
        },
        MultipleNodesCase {
            name: "Test incoming pod's anti-affinity: only when labelSelector and topologyKey both match, it's counted as a single term match - case when one term has invalid topologyKey",
            pod: make_pod()
                .required_anti_affinity(term_exists("foo", "invalid-node-label"))
                .required_anti_affinity(term_exists("bar", "zone"))
                .obj(),
            pods: vec![make_pod()
                .name("podA")
                .node("nodeA")
                .labels(&[("foo", ""), ("bar", "")])
                .obj()],
            nodes: vec![node_a("z1"), node_b("z2")],
            want: vec![AntiAffinity, Fits],
        },
        MultipleNodesCase {
            name: "Test existing pod's anti-affinity: only when labelSelector and topologyKey both match, it's counted as a single term match - case when all terms have valid topologyKey",
            pod: make_pod().label("foo", "").label("bar", "").obj(),
            pods: vec![make_pod()
                .node("nodeA")
                .required_anti_affinity(term_exists("foo", "region"))
                .required_anti_affinity(term_exists("bar", "zone"))
                .obj()],
            nodes: vec![node_a("z1"), node_b("z2")],
            want: vec![Existing, Existing],
        },
        MultipleNodesCase {
            name: "Test incoming pod's anti-affinity: only when labelSelector and topologyKey both match, it's counted as a single term match - case when all terms have valid topologyKey",
            pod: make_pod()
                .required_anti_affinity(term_exists("foo", "region"))
                .required_anti_affinity(term_exists("bar", "zone"))
                .obj(),
            pods: vec![make_pod()
                .node("nodeA")
                .labels(&[("foo", ""), ("bar", "")])
                .obj()],
            nodes: vec![node_a("z1"), node_b("z2")],
            want: vec![AntiAffinity, AntiAffinity],
        },
        MultipleNodesCase {
            name: "Test existing pod's anti-affinity: existingPod on nodeA and nodeB has at least one anti-affinity term matches incoming pod, so incoming pod can only be scheduled to nodeC",
            pod: make_pod().label("foo", "").label("bar", "").obj(),
            pods: vec![
                make_pod()
                    .node("nodeA")
                    .required_anti_affinity(term_exists("foo", "zone"))
                    .required_anti_affinity(term_exists("labelA", "zone"))
                    .obj(),
                make_pod()
                    .node("nodeB")
                    .required_anti_affinity(term_exists("bar", "zone"))
                    .required_anti_affinity(term_exists("labelB", "zone"))
                    .obj(),
            ],
            nodes: vec![
                node_a("z1"),
                node_b("z2"),
                labeled_node("nodeC", &[("region", "r1"), ("zone", "z3"), ("hostname", "nodeC")]),
            ],
            want: vec![Existing, Existing, Fits],
        },
        MultipleNodesCase {
            name: "Test incoming pod's affinity: firstly check if all affinityTerms match, and then check if all topologyKeys match",
            pod: make_pod()
                .required_affinity(term_exists("foo", "region"))
                .required_affinity(term_exists("bar", "zone"))
                .obj(),
            pods: vec![make_pod()
                .name("pod1")
                .labels(&[("foo", ""), ("bar", "")])
                .node("nodeA")
                .obj()],
            nodes: vec![node_a("z1"), node_b("z1")],
            want: vec![Fits, Fits],
        },
        MultipleNodesCase {
            name: "Test incoming pod's affinity: firstly check if all affinityTerms match, and then check if all topologyKeys match, and the match logic should be satisfied on the same pod",
            pod: make_pod()
                .required_affinity(term_exists("foo", "region"))
                .required_affinity(term_exists("bar", "zone"))
                .obj(),
            pods: vec![
                make_pod().node("nodeA").name("pod1").labels(&[("foo", "")]).obj(),
                make_pod().node("nodeB").name("pod2").labels(&[("bar", "")]).obj(),
            ],
            nodes: vec![node_a("z1"), node_b("z2")],
            want: vec![Affinity, Affinity],
        },
    ];

    let plugin = kube_plugin();
    for case in cases {
        let got = run(&plugin, &case.pod, case.nodes, case.pods);
        let want: Vec<Status> = case.want.into_iter().map(want_status).collect();
        assert_eq!(got, want, "{}", case.name);
    }
}
