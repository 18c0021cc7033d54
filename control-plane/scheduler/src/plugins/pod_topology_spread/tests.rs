//! Builders shared by the plugin's tests (kube's `st.MakePod().SpreadConstraint(…)` and
//! `st.MakeLabelSelector()`), kube-scheduler's `TestPreFilterState`, and the arguments'
//! validation (`TestValidatePodTopologySpreadArgs`).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity as NodeAffinitySpec, NodeSelector, NodeSelectorRequirement, Pod,
    PodSpec, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, Time,
};
use k8s_openapi::jiff::Timestamp;

use super::filtering::{PreFilterState, PRE_FILTER_STATE_KEY};
use super::*;
use crate::framework::{Code, CycleState, FilterPlugin, ScorePlugin};
use crate::label_selector::Selector;
use crate::node_info::NodeInfo;
use crate::testing::{cluster, expr, node, term, toleration};

pub(super) const ZONE: &str = "zone";
pub(super) const NODE: &str = "node";
/// `v1.TaintNodeUnschedulable`, the taint of kube's inclusion-policy cases.
pub(super) const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

pub(super) fn to_map(labels: &[(&str, &str)]) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// `st.MakeLabelSelector().Exists(key).Obj()`.
pub(super) fn exists(key: &str) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: key.to_string(),
            operator: "Exists".to_string(),
            values: None,
        }]),
        match_labels: None,
    }
}

/// kube's `fooSelector`.
pub(super) fn foo() -> Option<LabelSelector> {
    Some(exists("foo"))
}

/// kube's `barSelector`.
pub(super) fn bar() -> Option<LabelSelector> {
    Some(exists("bar"))
}

/// `st.MakeLabelSelector().Label(key, value)…Obj()`; no label is `{}`.
pub(super) fn labels_selector(labels: &[(&str, &str)]) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: (!labels.is_empty()).then(|| to_map(labels)),
        match_expressions: None,
    })
}

/// `SpreadConstraint(maxSkew, key, whenUnsatisfiable, selector, nil, nil, nil, nil)`.
pub(super) fn spread(
    max_skew: i32,
    key: &str,
    when_unsatisfiable: &str,
    selector: Option<LabelSelector>,
) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew,
        topology_key: key.to_string(),
        when_unsatisfiable: when_unsatisfiable.to_string(),
        label_selector: selector,
        ..Default::default()
    }
}

/// The optional arguments of kube's `SpreadConstraint`.
pub(super) trait ConstraintExt {
    fn with_min_domains(self, min_domains: i32) -> Self;
    fn with_affinity_policy(self, policy: &str) -> Self;
    fn with_taints_policy(self, policy: &str) -> Self;
    fn with_match_label_keys(self, keys: &[&str]) -> Self;
}

impl ConstraintExt for TopologySpreadConstraint {
    fn with_min_domains(self, min_domains: i32) -> Self {
        TopologySpreadConstraint {
            min_domains: Some(min_domains),
            ..self
        }
    }

    fn with_affinity_policy(self, policy: &str) -> Self {
        TopologySpreadConstraint {
            node_affinity_policy: Some(policy.to_string()),
            ..self
        }
    }

    fn with_taints_policy(self, policy: &str) -> Self {
        TopologySpreadConstraint {
            node_taints_policy: Some(policy.to_string()),
            ..self
        }
    }

    fn with_match_label_keys(self, keys: &[&str]) -> Self {
        TopologySpreadConstraint {
            match_label_keys: Some(keys.iter().map(|key| key.to_string()).collect()),
            ..self
        }
    }
}

/// A pod with the fields topology spreading reads (`st.MakePod()`).
pub(super) struct TestPod(Pod);

pub(super) fn make_pod(name: &str) -> TestPod {
    TestPod(Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        spec: Some(PodSpec::default()),
        ..Default::default()
    })
}

impl TestPod {
    fn spec(&mut self) -> &mut PodSpec {
        self.0.spec.get_or_insert_default()
    }

    pub(super) fn label(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_default()
            .insert(key.to_string(), value.to_string());
        self
    }

    pub(super) fn namespace(mut self, namespace: &str) -> Self {
        self.0.metadata.namespace = Some(namespace.to_string());
        self
    }

    /// Bound to `node` (`spec.nodeName`).
    pub(super) fn node(mut self, node: &str) -> Self {
        self.spec().node_name = Some(node.to_string());
        self
    }

    /// A deletion timestamp (`st.MakePod().Terminating()`).
    pub(super) fn terminating(mut self) -> Self {
        self.0.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        self
    }

    pub(super) fn spread(mut self, constraint: TopologySpreadConstraint) -> Self {
        self.spec()
            .topology_spread_constraints
            .get_or_insert_default()
            .push(constraint);
        self
    }

    pub(super) fn node_selector(mut self, labels: &[(&str, &str)]) -> Self {
        self.spec().node_selector = Some(to_map(labels));
        self
    }

    /// `NodeAffinityIn(key, values, st.NodeSelectorTypeMatchExpressions)`.
    pub(super) fn node_affinity_in(self, key: &str, values: &[&str]) -> Self {
        self.required(expr(key, "In", values))
    }

    /// `NodeAffinityNotIn(key, values)`.
    pub(super) fn node_affinity_not_in(self, key: &str, values: &[&str]) -> Self {
        self.required(expr(key, "NotIn", values))
    }

    fn required(mut self, requirement: NodeSelectorRequirement) -> Self {
        self.spec().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinitySpec {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![term(vec![requirement])],
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        self
    }

    /// `Toleration(key)`: Exists, NoSchedule.
    pub(super) fn tolerate(mut self, key: &str) -> Self {
        self.spec()
            .tolerations
            .get_or_insert_default()
            .push(toleration(key, "Exists", "", "NoSchedule"));
        self
    }

    pub(super) fn obj(self) -> Pod {
        self.0
    }
}

/// Pods labelled `foo: ""`, `count` of them bound to each node (`p-a1`, `p-a2`… in kube).
pub(super) fn foo_pods(per_node: &[(&str, usize)]) -> Vec<Pod> {
    per_node
        .iter()
        .flat_map(|(node, count)| {
            (1..=*count).map(move |i| {
                make_pod(&format!("p-{node}-{i}"))
                    .node(node)
                    .label("foo", "")
                    .obj()
            })
        })
        .collect()
}

/// A pod bound to `node` with `labels`.
pub(super) fn pod_on(name: &str, node: &str, labels: &[(&str, &str)]) -> Pod {
    labels
        .iter()
        .fold(make_pod(name).node(node), |pod, (key, value)| {
            pod.label(key, value)
        })
        .obj()
}

pub(super) fn make_node(name: &str, labels: &[(&str, &str)]) -> Node {
    node(name).labels(labels).obj()
}

/// A node with kube's `taints` (`node.kubernetes.io/unschedulable:NoSchedule`).
pub(super) fn tainted_node(name: &str, labels: &[(&str, &str)]) -> Node {
    node(name)
        .labels(labels)
        .taint(UNSCHEDULABLE_TAINT, "", "NoSchedule")
        .obj()
}

/// A node labelled `zone: <zone>` and `node: <name>`, the layout of most kube cases.
pub(super) fn zone_node(name: &str, zone: &str) -> Node {
    make_node(name, &[(ZONE, zone), (NODE, name)])
}

/// node-a and node-b in zone1, node-x and node-y in zone2.
pub(super) fn four_zone_nodes() -> Vec<Node> {
    vec![
        zone_node("node-a", "zone1"),
        zone_node("node-b", "zone1"),
        zone_node("node-x", "zone2"),
        zone_node("node-y", "zone2"),
    ]
}

/// kube's filter tests' plugin: List defaulting without default constraints.
pub(super) fn list_plugin() -> PodTopologySpread {
    list_plugin_with(Vec::new())
}

pub(super) fn list_plugin_with(defaults: Vec<TopologySpreadConstraint>) -> PodTopologySpread {
    PodTopologySpread::new(TopologySpreadArgs {
        default_constraints: defaults,
        defaulting_type: DefaultingType::List,
    })
    .expect("valid arguments")
}

/// A [`DefaultSelectorSource`] over Services with these selectors, as kube's
/// `helper.DefaultSelector` over a Service lister: the selectors of those whose every label
/// the pod carries, merged.
pub(super) fn services(
    selectors: &[&[(&str, &str)]],
) -> impl Fn(&Pod) -> LabelSelector + Send + Sync + 'static {
    let selectors: Vec<BTreeMap<String, String>> =
        selectors.iter().map(|selector| to_map(selector)).collect();
    move |pod: &Pod| {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let mut merged = BTreeMap::new();
        for selector in &selectors {
            if selector
                .iter()
                .all(|(key, value)| labels.get(key) == Some(value))
            {
                merged.extend(selector.clone());
            }
        }
        LabelSelector {
            match_labels: (!merged.is_empty()).then_some(merged),
            match_expressions: None,
        }
    }
}

/// A map of counts, sorted, for comparison.
pub(super) fn sorted(counts: &HashMap<String, i64>) -> Vec<(String, i64)> {
    let mut sorted: Vec<(String, i64)> = counts
        .iter()
        .map(|(value, count)| (value.clone(), *count))
        .collect();
    sorted.sort();
    sorted
}

pub(super) fn counts(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    let mut counts: Vec<(String, i64)> = list
        .iter()
        .map(|(value, count)| (value.to_string(), *count))
        .collect();
    counts.sort();
    counts
}

/// kube's `newCriticalPaths()`: the minimum of a constraint without any domain.
/// kube's state keeps `math.MaxInt32` for a constraint without any domain and applies
/// `minDomains` (fewer domains than it: the minimum reads 0) when filtering; keel stores the
/// minimum with `minDomains` applied, so zero domains (< the default `minDomains` of 1) read 0.
/// Filtering is the same either way: no node has the key, so every node is refused for it.
const NO_DOMAIN: i64 = 0;

/// One constraint of the expected PreFilter state.
struct Want {
    key: &'static str,
    max_skew: i32,
    counts: Vec<(String, i64)>,
    /// `TpKeyToCriticalPaths[key][0].MatchNum`.
    min: i64,
    honor_affinity: bool,
    honor_taints: bool,
}

fn want(key: &'static str, max_skew: i32, list: &[(&str, i64)], min: i64) -> Want {
    Want {
        key,
        max_skew,
        counts: counts(list),
        min,
        honor_affinity: true,
        honor_taints: false,
    }
}

impl Want {
    fn ignore_affinity(self) -> Want {
        Want {
            honor_affinity: false,
            ..self
        }
    }

    fn honor_taints(self) -> Want {
        Want {
            honor_taints: true,
            ..self
        }
    }
}

struct StateCase {
    name: &'static str,
    pod: Pod,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    plugin: PodTopologySpread,
    /// Empty: kube's PreFilter returns Skip (no hard constraint).
    want: Vec<Want>,
}

fn state_case(
    name: &'static str,
    pod: Pod,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    want: Vec<Want>,
) -> StateCase {
    StateCase {
        name,
        pod,
        nodes,
        pods,
        plugin: list_plugin(),
        want,
    }
}

pub(super) fn pre_filter(plugin: &PodTopologySpread, pod: &Pod, nodes: &[NodeInfo]) -> CycleState {
    let mut state = CycleState::new();
    let status = plugin.pre_filter(pod, nodes, &mut state);
    assert!(status.is_ok(), "pre_filter: {status}");
    state
}

fn check_states(cases: Vec<StateCase>) {
    for case in cases {
        let nodes = cluster(case.nodes, case.pods);
        let state = pre_filter(&case.plugin, &case.pod, &nodes);
        let got = state
            .read::<PreFilterState>(PRE_FILTER_STATE_KEY)
            .expect("pre_filter writes its state");
        assert_eq!(
            got.constraints.len(),
            case.want.len(),
            "{}: constraints",
            case.name
        );
        for (i, want) in case.want.iter().enumerate() {
            let constraint = &got.constraints[i];
            assert_eq!(
                (
                    constraint.topology_key.as_str(),
                    constraint.max_skew,
                    constraint.min_domains,
                    constraint.honor_node_affinity,
                    constraint.honor_node_taints,
                ),
                (
                    want.key,
                    want.max_skew,
                    1,
                    want.honor_affinity,
                    want.honor_taints
                ),
                "{}: constraint {i}",
                case.name
            );
            assert_eq!(
                sorted(&got.match_counts[i]),
                want.counts,
                "{}: counts of {}",
                case.name,
                want.key
            );
            assert_eq!(
                got.min_match[i], want.min,
                "{}: minimum of {}",
                case.name, want.key
            );
        }
    }
}

/// The pods of most of kube's zone cases: 2 on node-a, 1 on node-b, 2 on node-y.
fn a2_b1_y2() -> Vec<Pod> {
    foo_pods(&[("node-a", 2), ("node-b", 1), ("node-y", 2)])
}

fn a2_b1_y4() -> Vec<Pod> {
    foo_pods(&[("node-a", 2), ("node-b", 1), ("node-y", 4)])
}

/// The nodes of kube's inclusion-policy cases: node-a and node-b labelled `foo`, node-c
/// labelled `bar`.
fn policy_nodes(taint_c: bool) -> Vec<Node> {
    let (a, b) = if taint_c {
        (
            make_node("node-a", &[(NODE, "node-a")]),
            make_node("node-b", &[(NODE, "node-b")]),
        )
    } else {
        (
            make_node("node-a", &[(NODE, "node-a"), ("foo", "")]),
            make_node("node-b", &[(NODE, "node-b"), ("foo", "")]),
        )
    };
    let c = if taint_c {
        tainted_node("node-c", &[(NODE, "node-c"), ("bar", "")])
    } else {
        make_node("node-c", &[(NODE, "node-c"), ("bar", "")])
    };
    vec![a, b, c]
}

/// 1 `bar` pod on node-a, 2 on node-b, an unlabelled one on node-c.
fn policy_pods() -> Vec<Pod> {
    vec![
        pod_on("p-a", "node-a", &[("bar", "")]),
        pod_on("p-b", "node-b", &[("bar", "")]),
        pod_on("p-c", "node-b", &[("bar", "")]),
        pod_on("p-d", "node-c", &[]),
    ]
}

fn foo_pod(name: &str) -> TestPod {
    make_pod(name).label("foo", "")
}

/// kube-scheduler's `TestPreFilterState`, but the cases of disabled feature gates
/// (NodeInclusionPolicy is GA, MatchLabelKeys on by default: keel has no switch). kube
/// compares critical paths; their minimum is what Filter uses, and what keel stores.
#[test]
fn pre_filter_state() {
    let dns = DO_NOT_SCHEDULE;
    let sa = SCHEDULE_ANYWAY;
    let cases = vec![
        state_case(
            "clean cluster with one spreadConstraint",
            foo_pod("p")
                .spread(spread(5, ZONE, dns, labels_selector(&[("foo", "bar")])))
                .obj(),
            four_zone_nodes(),
            vec![],
            vec![want(ZONE, 5, &[("zone1", 0), ("zone2", 0)], 0)],
        ),
        state_case(
            "normal case with one spreadConstraint",
            foo_pod("p").spread(spread(1, ZONE, dns, foo())).obj(),
            four_zone_nodes(),
            a2_b1_y2(),
            vec![want(ZONE, 1, &[("zone1", 3), ("zone2", 2)], 2)],
        ),
        state_case(
            "normal case with null label selector",
            foo_pod("p").spread(spread(1, ZONE, dns, None)).obj(),
            four_zone_nodes(),
            a2_b1_y2(),
            vec![want(ZONE, 1, &[("zone1", 0), ("zone2", 0)], 0)],
        ),
        state_case(
            "normal case with one spreadConstraint, on a 3-zone cluster",
            foo_pod("p").spread(spread(1, ZONE, dns, foo())).obj(),
            [
                four_zone_nodes(),
                vec![zone_node("node-o", "zone3"), zone_node("node-p", "zone3")],
            ]
            .concat(),
            a2_b1_y2(),
            vec![want(
                ZONE,
                1,
                &[("zone1", 3), ("zone2", 2), ("zone3", 0)],
                0,
            )],
        ),
        state_case(
            "namespace mismatch doesn't count",
            foo_pod("p").spread(spread(1, ZONE, dns, foo())).obj(),
            four_zone_nodes(),
            vec![
                foo_pod("p-a1").node("node-a").obj(),
                foo_pod("p-a2").namespace("ns1").node("node-a").obj(),
                foo_pod("p-b1").node("node-b").obj(),
                foo_pod("p-y1").namespace("ns2").node("node-y").obj(),
                foo_pod("p-y2").node("node-y").obj(),
            ],
            vec![want(ZONE, 1, &[("zone1", 2), ("zone2", 1)], 1)],
        ),
        state_case(
            "normal case with two spreadConstraints",
            foo_pod("p")
                .spread(spread(1, ZONE, dns, foo()))
                .spread(spread(1, NODE, dns, foo()))
                .obj(),
            four_zone_nodes(),
            a2_b1_y4(),
            vec![
                want(ZONE, 1, &[("zone1", 3), ("zone2", 4)], 3),
                want(
                    NODE,
                    1,
                    &[("node-a", 2), ("node-b", 1), ("node-x", 0), ("node-y", 4)],
                    0,
                ),
            ],
        ),
        state_case(
            "soft spreadConstraints should be bypassed",
            foo_pod("p")
                .spread(spread(1, ZONE, sa, foo()))
                .spread(spread(1, ZONE, dns, foo()))
                .spread(spread(1, NODE, sa, foo()))
                .spread(spread(1, NODE, dns, foo()))
                .obj(),
            vec![
                zone_node("node-a", "zone1"),
                zone_node("node-b", "zone1"),
                zone_node("node-y", "zone2"),
            ],
            a2_b1_y4(),
            vec![
                want(ZONE, 1, &[("zone1", 3), ("zone2", 4)], 3),
                want(NODE, 1, &[("node-a", 2), ("node-b", 1), ("node-y", 4)], 1),
            ],
        ),
        state_case(
            "different labelSelectors - simple version",
            foo_pod("p")
                .label("bar", "")
                .spread(spread(1, ZONE, dns, foo()))
                .spread(spread(1, NODE, dns, bar()))
                .obj(),
            vec![
                zone_node("node-a", "zone1"),
                zone_node("node-b", "zone1"),
                zone_node("node-y", "zone2"),
            ],
            vec![
                pod_on("p-a", "node-a", &[("foo", "")]),
                pod_on("p-b", "node-b", &[("bar", "")]),
            ],
            vec![
                want(ZONE, 1, &[("zone1", 1), ("zone2", 0)], 0),
                want(NODE, 1, &[("node-a", 0), ("node-b", 1), ("node-y", 0)], 0),
            ],
        ),
        state_case(
            "different labelSelectors - complex pods",
            foo_pod("p")
                .label("bar", "")
                .spread(spread(1, ZONE, dns, foo()))
                .spread(spread(1, NODE, dns, bar()))
                .obj(),
            vec![
                zone_node("node-a", "zone1"),
                zone_node("node-b", "zone1"),
                zone_node("node-y", "zone2"),
            ],
            vec![
                pod_on("p-a1", "node-a", &[("foo", "")]),
                pod_on("p-a2", "node-a", &[("foo", ""), ("bar", "")]),
                pod_on("p-b1", "node-b", &[("foo", "")]),
                pod_on("p-y1", "node-y", &[("foo", "")]),
                pod_on("p-y2", "node-y", &[("foo", ""), ("bar", "")]),
                pod_on("p-y3", "node-y", &[("foo", "")]),
                pod_on("p-y4", "node-y", &[("foo", ""), ("bar", "")]),
            ],
            vec![
                want(ZONE, 1, &[("zone1", 3), ("zone2", 4)], 3),
                want(NODE, 1, &[("node-a", 1), ("node-b", 0), ("node-y", 2)], 0),
            ],
        ),
        state_case(
            "two spreadConstraints, and with podAffinity",
            foo_pod("p")
                .node_affinity_not_in(NODE, &["node-x"])
                .spread(spread(1, ZONE, dns, foo()))
                .spread(spread(1, NODE, dns, foo()))
                .obj(),
            four_zone_nodes(),
            a2_b1_y4(),
            vec![
                want(ZONE, 1, &[("zone1", 3), ("zone2", 4)], 3),
                want(NODE, 1, &[("node-a", 2), ("node-b", 1), ("node-y", 4)], 1),
            ],
        ),
        StateCase {
            name: "default constraints and a service",
            pod: make_pod("p").label("foo", "bar").label("baz", "kar").obj(),
            nodes: vec![],
            pods: vec![],
            plugin: list_plugin_with(vec![
                spread(3, NODE, dns, None),
                spread(2, NODE, sa, None),
                spread(5, "rack", dns, None),
            ])
            .with_default_selector(services(&[&[("foo", "bar")]])),
            want: vec![
                want(NODE, 3, &[], NO_DOMAIN),
                want("rack", 5, &[], NO_DOMAIN),
            ],
        },
        StateCase {
            name: "default constraints and a service that doesn't match",
            pod: make_pod("p").label("foo", "bar").obj(),
            nodes: vec![],
            pods: vec![],
            plugin: list_plugin_with(vec![spread(3, NODE, dns, None)])
                .with_default_selector(services(&[&[("baz", "kep")]])),
            want: vec![],
        },
        StateCase {
            name: "default constraints and a service, but pod has constraints",
            pod: make_pod("p")
                .label("foo", "bar")
                .label("baz", "tar")
                .spread(spread(1, ZONE, dns, labels_selector(&[("baz", "tar")])))
                .spread(spread(2, "planet", sa, labels_selector(&[("fot", "rok")])))
                .obj(),
            nodes: vec![],
            pods: vec![],
            plugin: list_plugin_with(vec![spread(2, NODE, dns, None)])
                .with_default_selector(services(&[&[("foo", "bar")]])),
            want: vec![want(ZONE, 1, &[], NO_DOMAIN)],
        },
        StateCase {
            name: "default soft constraints and a service",
            pod: make_pod("p").label("foo", "bar").obj(),
            nodes: vec![],
            pods: vec![],
            plugin: list_plugin_with(vec![spread(2, NODE, sa, None)])
                .with_default_selector(services(&[&[("foo", "bar")]])),
            want: vec![],
        },
        state_case(
            "TpKeyToDomainsNum is calculated when MinDomains is enabled",
            foo_pod("p")
                .spread(spread(1, ZONE, dns, foo()))
                .spread(spread(1, NODE, dns, foo()))
                .obj(),
            four_zone_nodes(),
            a2_b1_y4(),
            vec![
                want(ZONE, 1, &[("zone1", 3), ("zone2", 4)], 3),
                want(
                    NODE,
                    1,
                    &[("node-a", 2), ("node-b", 1), ("node-x", 0), ("node-y", 4)],
                    0,
                ),
            ],
        ),
        state_case(
            "NodeAffinityPolicy honored with labelSelectors",
            foo_pod("p")
                .node_selector(&[("foo", "")])
                .spread(spread(1, NODE, dns, bar()))
                .obj(),
            policy_nodes(false),
            policy_pods(),
            vec![want(NODE, 1, &[("node-a", 1), ("node-b", 2)], 1)],
        ),
        state_case(
            "NodeAffinityPolicy ignored with labelSelectors",
            foo_pod("p")
                .node_selector(&[("foo", "")])
                .spread(spread(1, NODE, dns, bar()).with_affinity_policy("Ignore"))
                .obj(),
            policy_nodes(false),
            policy_pods(),
            vec![
                want(NODE, 1, &[("node-a", 1), ("node-b", 2), ("node-c", 0)], 0).ignore_affinity(),
            ],
        ),
        state_case(
            "NodeAffinityPolicy honored with nodeAffinity",
            foo_pod("p")
                .node_affinity_in("foo", &[""])
                .spread(spread(1, NODE, dns, bar()))
                .obj(),
            policy_nodes(false),
            policy_pods(),
            vec![want(NODE, 1, &[("node-a", 1), ("node-b", 2)], 1)],
        ),
        state_case(
            "NodeAffinityPolicy ignored with nodeAffinity",
            foo_pod("p")
                .node_affinity_in("foo", &[""])
                .spread(spread(1, NODE, dns, bar()).with_affinity_policy("Ignore"))
                .obj(),
            policy_nodes(false),
            policy_pods(),
            vec![
                want(NODE, 1, &[("node-a", 1), ("node-b", 2), ("node-c", 0)], 0).ignore_affinity(),
            ],
        ),
        state_case(
            "NodeTaintsPolicy ignored",
            foo_pod("p").spread(spread(1, NODE, dns, bar())).obj(),
            policy_nodes(true),
            policy_pods(),
            vec![want(
                NODE,
                1,
                &[("node-a", 1), ("node-b", 2), ("node-c", 0)],
                0,
            )],
        ),
        state_case(
            "NodeTaintsPolicy honored",
            foo_pod("p")
                .spread(spread(1, NODE, dns, bar()).with_taints_policy("Honor"))
                .obj(),
            policy_nodes(true),
            policy_pods(),
            vec![want(NODE, 1, &[("node-a", 1), ("node-b", 2)], 1).honor_taints()],
        ),
        state_case(
            "NodeTaintsPolicy honored with tolerated taints",
            foo_pod("p")
                .tolerate(UNSCHEDULABLE_TAINT)
                .spread(spread(1, NODE, dns, bar()).with_taints_policy("Honor"))
                .obj(),
            policy_nodes(true),
            policy_pods(),
            vec![want(NODE, 1, &[("node-a", 1), ("node-b", 2), ("node-c", 0)], 0).honor_taints()],
        ),
        state_case(
            "two node inclusion Constraints, zone: honor/ignore, node: ignore/ignore",
            foo_pod("p")
                .node_selector(&[("foo", "")])
                .spread(spread(1, ZONE, dns, foo()))
                .spread(spread(1, NODE, dns, foo()).with_affinity_policy("Ignore"))
                .obj(),
            vec![
                make_node("node-a", &[(ZONE, "zone1"), (NODE, "node-a"), ("foo", "")]),
                make_node("node-b", &[(ZONE, "zone1"), (NODE, "node-b")]),
                make_node("node-x", &[(ZONE, "zone2"), (NODE, "node-x"), ("foo", "")]),
            ],
            foo_pods(&[("node-b", 2), ("node-x", 1)]),
            vec![
                want(ZONE, 1, &[("zone1", 0), ("zone2", 1)], 0),
                want(NODE, 1, &[("node-a", 0), ("node-b", 2), ("node-x", 1)], 0).ignore_affinity(),
            ],
        ),
        state_case(
            "two node inclusion Constraints, zone: honor/honor, node: honor/ignore",
            foo_pod("p")
                .spread(spread(1, ZONE, dns, foo()).with_taints_policy("Honor"))
                .spread(spread(1, NODE, dns, foo()))
                .obj(),
            vec![
                make_node("node-a", &[(ZONE, "zone1"), (NODE, "node-a"), ("foo", "")]),
                tainted_node("node-b", &[(ZONE, "zone1"), (NODE, "node-b")]),
                make_node("node-x", &[(ZONE, "zone2"), (NODE, "node-x"), ("foo", "")]),
            ],
            foo_pods(&[("node-b", 2), ("node-x", 1)]),
            vec![
                want(ZONE, 1, &[("zone1", 0), ("zone2", 1)], 0).honor_taints(),
                want(NODE, 1, &[("node-a", 0), ("node-b", 2), ("node-x", 1)], 0),
            ],
        ),
        state_case(
            "two node inclusion Constraints, zone: honor/ignore, node: honor/ignore",
            foo_pod("p")
                .node_selector(&[("foo", "")])
                .spread(spread(1, ZONE, dns, foo()))
                .spread(spread(1, NODE, dns, foo()))
                .obj(),
            vec![
                make_node("node-a", &[(ZONE, "zone1"), (NODE, "node-a")]),
                tainted_node("node-b", &[(ZONE, "zone1"), (NODE, "node-b"), ("foo", "")]),
                make_node("node-x", &[(ZONE, "zone2"), (NODE, "node-x"), ("foo", "")]),
                make_node("node-y", &[(ZONE, "zone2"), (NODE, "node-y")]),
            ],
            foo_pods(&[("node-a", 2), ("node-x", 1), ("node-y", 1)]),
            vec![
                want(ZONE, 1, &[("zone1", 0), ("zone2", 1)], 0),
                want(NODE, 1, &[("node-b", 0), ("node-x", 1)], 0),
            ],
        ),
        state_case(
            "two node inclusion Constraints, zone: ignore/ignore, node: honor/honor",
            foo_pod("p")
                .node_selector(&[("foo", "")])
                .spread(spread(1, ZONE, dns, foo()).with_affinity_policy("Ignore"))
                .spread(spread(1, NODE, dns, foo()).with_taints_policy("Honor"))
                .obj(),
            vec![
                make_node("node-a", &[(ZONE, "zone1"), (NODE, "node-a")]),
                tainted_node("node-b", &[(ZONE, "zone1"), (NODE, "node-b"), ("foo", "")]),
                make_node("node-x", &[(ZONE, "zone2"), (NODE, "node-x"), ("foo", "")]),
                make_node("node-y", &[(ZONE, "zone2"), (NODE, "node-y"), ("foo", "")]),
            ],
            foo_pods(&[("node-a", 2), ("node-x", 2), ("node-y", 1)]),
            vec![
                want(ZONE, 1, &[("zone1", 2), ("zone2", 3)], 2).ignore_affinity(),
                want(NODE, 1, &[("node-x", 2), ("node-y", 1)], 1).honor_taints(),
            ],
        ),
        state_case(
            "matchLabelKeys ANDed with LabelSelector when LabelSelector isn't empty",
            foo_pod("p")
                .label("bar", "a")
                .spread(spread(1, ZONE, dns, foo()).with_match_label_keys(&["bar"]))
                .obj(),
            four_zone_nodes(),
            vec![
                pod_on("p-a1", "node-a", &[("foo", "")]),
                pod_on("p-a2", "node-a", &[("foo", ""), ("bar", "a")]),
                pod_on("p-b1", "node-b", &[("foo", "")]),
                pod_on("p-y1", "node-y", &[("foo", ""), ("bar", "a")]),
                pod_on("p-y2", "node-y", &[("bar", "")]),
            ],
            vec![want(ZONE, 1, &[("zone1", 1), ("zone2", 1)], 1)],
        ),
        state_case(
            "matchLabelKeys ANDed with LabelSelector when LabelSelector is empty",
            make_pod("p")
                .label("foo", "a")
                .spread(spread(1, ZONE, dns, labels_selector(&[])).with_match_label_keys(&["foo"]))
                .obj(),
            four_zone_nodes(),
            foo_a_pods(),
            vec![want(ZONE, 1, &[("zone1", 3), ("zone2", 2)], 2)],
        ),
        state_case(
            "key in matchLabelKeys is ignored when LabelSelector is nil when feature gate enabled",
            foo_pod("p")
                .spread(spread(1, ZONE, dns, None).with_match_label_keys(&["bar"]))
                .obj(),
            four_zone_nodes(),
            foo_a_pods(),
            vec![want(ZONE, 1, &[("zone1", 0), ("zone2", 0)], 0)],
        ),
        state_case(
            "key in matchLabelKeys is ignored when it isn't exist in pod.labels",
            foo_pod("p")
                .spread(spread(1, ZONE, dns, foo()).with_match_label_keys(&["bar"]))
                .obj(),
            four_zone_nodes(),
            foo_a_pods(),
            vec![want(ZONE, 1, &[("zone1", 3), ("zone2", 2)], 2)],
        ),
        state_case(
            "skip if not specified",
            foo_pod("p").obj(),
            vec![zone_node("node-a", "zone1")],
            vec![],
            vec![],
        ),
        // Not in kube's table: `labelSelector: {}` selects every pod of the namespace. From
        // Kubernetes 1.27 until kubernetes#141340 (2026) kube's counting skipped such a
        // selector, which made the constraint a no-op (kubernetes#141339); keel counts as the
        // fix does.
        state_case(
            "an empty labelSelector counts every pod",
            foo_pod("p")
                .spread(spread(1, ZONE, dns, labels_selector(&[])))
                .obj(),
            four_zone_nodes(),
            [a2_b1_y2(), vec![pod_on("p-y3", "node-y", &[("bar", "")])]].concat(),
            vec![want(ZONE, 1, &[("zone1", 3), ("zone2", 3)], 3)],
        ),
    ];
    check_states(cases);
}

/// 2 pods labelled `foo: a` on node-a, 1 on node-b, 2 on node-y.
fn foo_a_pods() -> Vec<Pod> {
    [("node-a", 2), ("node-b", 1), ("node-y", 2)]
        .iter()
        .flat_map(|(node, count)| {
            (1..=*count).map(move |i| pod_on(&format!("p-{node}-{i}"), node, &[("foo", "a")]))
        })
        .collect()
}

/// A missing selector parses to "nothing" and the default constraints take the selector of
/// the Services selecting the pod.
#[test]
fn selectors_of_the_state() {
    let nodes = cluster(four_zone_nodes(), vec![]);
    let pod = foo_pod("p")
        .spread(spread(1, ZONE, DO_NOT_SCHEDULE, None))
        .obj();
    let state = pre_filter(&list_plugin(), &pod, &nodes);
    let got = state
        .read::<PreFilterState>(PRE_FILTER_STATE_KEY)
        .expect("state");
    assert!(got.constraints[0].selector.is_nothing());
    assert_eq!(
        got.self_match,
        vec![0],
        "nothing matches the pod itself either"
    );

    let plugin = list_plugin_with(vec![spread(3, NODE, DO_NOT_SCHEDULE, None)])
        .with_default_selector(services(&[&[("foo", "bar")]]));
    let pod = make_pod("p").label("foo", "bar").label("baz", "kar").obj();
    let state = pre_filter(&plugin, &pod, &nodes);
    let got = state
        .read::<PreFilterState>(PRE_FILTER_STATE_KEY)
        .expect("state");
    let service = Selector::new(&LabelSelector {
        match_labels: Some(to_map(&[("foo", "bar")])),
        match_expressions: None,
    })
    .expect("selector parses");
    assert_eq!(got.constraints[0].selector, service);
    assert_eq!(got.self_match, vec![1]);
}

/// kube's default profile (System defaulting) adds no constraint while no source of default
/// selectors is given: keel cannot tell which pods belong with the pod.
#[test]
fn system_defaults_need_a_selector_source() {
    let nodes = cluster(
        vec![make_node(
            "node-a",
            &[(LABEL_HOSTNAME, "node-a"), (LABEL_TOPOLOGY_ZONE, "z")],
        )],
        vec![],
    );
    let pod = foo_pod("p").obj();
    let plugin = PodTopologySpread::default();
    let mut state = CycleState::new();
    assert!(ScorePlugin::pre_score(&plugin, &pod, &[&nodes[0]], &nodes, &mut state).is_ok());
    let got = state
        .read::<super::scoring::PreScoreState>(super::scoring::PRE_SCORE_STATE_KEY)
        .expect("state");
    assert!(got.constraints.is_empty());

    let plugin = plugin.with_default_selector(services(&[&[("foo", "")]]));
    let mut state = CycleState::new();
    assert!(ScorePlugin::pre_score(&plugin, &pod, &[&nodes[0]], &nodes, &mut state).is_ok());
    let got = state
        .read::<super::scoring::PreScoreState>(super::scoring::PRE_SCORE_STATE_KEY)
        .expect("state");
    let keys: Vec<(&str, i32)> = got
        .constraints
        .iter()
        .map(|c| (c.topology_key.as_str(), c.max_skew))
        .collect();
    assert_eq!(keys, vec![(LABEL_HOSTNAME, 3), (LABEL_TOPOLOGY_ZONE, 5)]);
}

/// A selector that does not parse fails the cycle with kube's message.
#[test]
fn invalid_selector_is_an_error() {
    let nodes = cluster(four_zone_nodes(), vec![]);
    let bad = LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "foo".to_string(),
            operator: "Near".to_string(),
            values: None,
        }]),
        match_labels: None,
    };
    let pod = foo_pod("p")
        .spread(spread(1, ZONE, DO_NOT_SCHEDULE, Some(bad)))
        .obj();
    let mut state = CycleState::new();
    let status = list_plugin().pre_filter(&pod, &nodes, &mut state);
    assert_eq!(status.code, Code::Error);
    assert!(
        status.message().starts_with(
            "get constraints from pod: obtaining pod's hard topology spread constraints: "
        ),
        "{status}"
    );
}

/// kube-scheduler's `TestValidatePodTopologySpreadArgs`, but "wrong constraints" (an unknown
/// defaulting type, which keel's enum cannot hold).
#[test]
fn args_validation() {
    use TopologySpreadArgsError as E;
    let list = |constraints: Vec<TopologySpreadConstraint>| TopologySpreadArgs {
        default_constraints: constraints,
        defaulting_type: DefaultingType::List,
    };
    let cases: Vec<(&str, TopologySpreadArgs, Option<E>)> = vec![
        (
            "valid config",
            list(vec![
                spread(1, NODE, DO_NOT_SCHEDULE, None),
                spread(2, ZONE, SCHEDULE_ANYWAY, None),
            ]),
            None,
        ),
        (
            "maxSkew less than zero",
            list(vec![spread(-1, NODE, DO_NOT_SCHEDULE, None)]),
            Some(E::MaxSkew {
                index: 0,
                max_skew: -1,
            }),
        ),
        (
            "empty topology key",
            list(vec![spread(1, "", DO_NOT_SCHEDULE, None)]),
            Some(E::EmptyTopologyKey { index: 0 }),
        ),
        (
            "whenUnsatisfiable is empty",
            list(vec![spread(1, NODE, "", None)]),
            Some(E::EmptyWhenUnsatisfiable { index: 0 }),
        ),
        (
            "whenUnsatisfiable contains unsupported action",
            list(vec![spread(1, NODE, "unknown action", None)]),
            Some(E::UnsupportedWhenUnsatisfiable {
                index: 0,
                value: "unknown action".to_string(),
            }),
        ),
        (
            "duplicated constraints",
            list(vec![
                spread(1, NODE, DO_NOT_SCHEDULE, None),
                spread(2, NODE, DO_NOT_SCHEDULE, None),
            ]),
            Some(E::Duplicate {
                index: 1,
                key: NODE.to_string(),
                when_unsatisfiable: DO_NOT_SCHEDULE.to_string(),
            }),
        ),
        (
            "label selector present",
            list(vec![spread(
                1,
                "key",
                DO_NOT_SCHEDULE,
                labels_selector(&[("a", "b")]),
            )]),
            Some(E::LabelSelector { index: 0 }),
        ),
        (
            "list default constraints, no constraints",
            list(vec![]),
            None,
        ),
        (
            "system default constraints",
            TopologySpreadArgs::default(),
            None,
        ),
        (
            "system default constraints, but has constraints",
            TopologySpreadArgs {
                default_constraints: vec![spread(1, "key", DO_NOT_SCHEDULE, None)],
                defaulting_type: DefaultingType::System,
            },
            Some(E::SystemWithConstraints),
        ),
    ];
    for (name, args, want) in cases {
        let got = PodTopologySpread::new(args).err();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn args_errors_read_as_kube_writes_them() {
    let duplicate = TopologySpreadArgsError::Duplicate {
        index: 1,
        key: NODE.to_string(),
        when_unsatisfiable: DO_NOT_SCHEDULE.to_string(),
    };
    assert_eq!(
        duplicate.to_string(),
        "defaultConstraints[1]: Duplicate value: \"{node, DoNotSchedule}\""
    );
    let max_skew = TopologySpreadArgsError::MaxSkew {
        index: 0,
        max_skew: -1,
    };
    assert_eq!(
        max_skew.to_string(),
        "defaultConstraints[0].maxSkew: Invalid value: -1: not in valid range (0, inf)"
    );
    let invalid_key = PodTopologySpread::new(TopologySpreadArgs {
        default_constraints: vec![spread(1, "a/b/c", DO_NOT_SCHEDULE, None)],
        defaulting_type: DefaultingType::List,
    })
    .err()
    .map(|err| err.to_string())
    .unwrap_or_default();
    assert!(
        invalid_key.starts_with("defaultConstraints[0].topologyKey: Invalid value: \"a/b/c\": "),
        "{invalid_key}"
    );
}

#[test]
fn default_is_system_defaulting() {
    assert_eq!(
        TopologySpreadArgs::default().defaulting_type,
        DefaultingType::System
    );
    let plugin = PodTopologySpread::default();
    assert!(plugin.system_defaulted);
    assert_eq!(plugin.default_constraints, system_default_constraints());
    let from_args = PodTopologySpread::new(TopologySpreadArgs::default()).expect("valid");
    assert_eq!(from_args.default_constraints, system_default_constraints());
    assert_eq!(FilterPlugin::name(&plugin), "PodTopologySpread");
}
