//! kube-scheduler's `TestLeastAllocatedScoringStrategy`, `TestMostAllocatedScoringStrategy`
//! and `TestFitScore`, transcribed, and the helpers the RequestedToCapacityRatio tests share.
//! Capacities like `"4000"` are cores, as in kube's tests; only the ratios matter.

use k8s_openapi::api::core::v1::Node;

use super::*;
use crate::testing::{cluster, node, pod, score_all};

const EXTENDED: &str = "abc.com/xyz";

pub(super) fn cpu_memory(name: &str, cpu: &str, memory: &str) -> Node {
    node(name)
        .capacity(&[("cpu", cpu), ("memory", memory)])
        .obj()
}

fn with_extended(name: &str, cpu: &str, memory: &str, extended: &str) -> Node {
    node(name)
        .capacity(&[("cpu", cpu), ("memory", memory), (EXTENDED, extended)])
        .obj()
}

/// A pod on `node` with one container requesting `cpu` and `memory`.
pub(super) fn on(node: &str, cpu: &str, memory: &str) -> Pod {
    pod()
        .node(node)
        .req(&[("cpu", cpu), ("memory", memory)])
        .obj()
}

/// kube's usual incoming pod: containers of 1000/2000 and 2000/3000.
pub(super) fn two_containers() -> Pod {
    pod()
        .req(&[("cpu", "1000"), ("memory", "2000")])
        .req(&[("cpu", "2000"), ("memory", "3000")])
        .obj()
}

pub(super) fn weights(resources: &[(&str, i64)]) -> Vec<ResourceSpec> {
    resources
        .iter()
        .map(|(name, weight)| ResourceSpec::new(*name, *weight))
        .collect()
}

pub(super) struct Case {
    pub(super) name: &'static str,
    pub(super) pod: Pod,
    pub(super) nodes: Vec<Node>,
    pub(super) existing: Vec<Pod>,
    pub(super) resources: Vec<ResourceSpec>,
    pub(super) want: Vec<i64>,
}

impl Default for Case {
    fn default() -> Case {
        Case {
            name: "",
            pod: pod().obj(),
            nodes: Vec::new(),
            existing: Vec::new(),
            resources: default_resources(),
            want: Vec::new(),
        }
    }
}

pub(super) fn run(strategy: &ScoringStrategy, cases: Vec<Case>) {
    for case in cases {
        let plugin = NodeResourcesFit::new(FitArgs {
            strategy: strategy.clone(),
            resources: case.resources,
            ..FitArgs::default()
        })
        .expect("valid args");
        let nodes = cluster(case.nodes, case.existing);
        assert_eq!(
            score_all(&plugin, &case.pod, &nodes),
            case.want,
            "{}",
            case.name
        );
    }
}

/// kube's `extendedResourceSet`: CPU, memory and abc.com/xyz, weight 1 each.
fn extended_resource_set() -> Vec<ResourceSpec> {
    weights(&[("cpu", 1), ("memory", 1), (EXTENDED, 1)])
}

#[test]
fn least_allocated() {
    let small = || {
        vec![
            cpu_memory("node1", "4000", "10000"),
            cpu_memory("node2", "4000", "10000"),
        ]
    };
    let differently_sized = || {
        vec![
            cpu_memory("node1", "4000", "10000"),
            cpu_memory("node2", "6000", "10000"),
        ]
    };
    let big = || {
        vec![
            cpu_memory("node1", "10000", "20000"),
            cpu_memory("node2", "10000", "20000"),
        ]
    };
    let cases = vec![
        Case {
            name: "nothing scheduled, nothing requested",
            nodes: small(),
            want: vec![100, 100],
            ..Case::default()
        },
        Case {
            // CPU (4000 - 3000) * 100 / 4000 = 25, memory (10000 - 5000) * 100 / 10000 = 50:
            // (25 + 50) / 2 = 37; node2 (50 + 50) / 2 = 50.
            name: "nothing scheduled, resources requested, differently sized nodes",
            pod: two_containers(),
            nodes: differently_sized(),
            want: vec![37, 50],
            ..Case::default()
        },
        Case {
            name: "no resources requested, pods scheduled",
            nodes: small(),
            existing: vec![
                pod().node("node1").obj(),
                pod().node("node1").obj(),
                pod().node("node2").obj(),
                pod().node("node2").obj(),
            ],
            want: vec![100, 100],
            ..Case::default()
        },
        Case {
            // An explicit memory request of 0 stays 0: node1 (40 + 100) / 2, node2 (40 + 75) / 2.
            name: "no resources requested, pods scheduled with resources",
            nodes: big(),
            existing: vec![
                on("node1", "3000", "0"),
                on("node1", "3000", "0"),
                on("node2", "3000", "0"),
                on("node2", "3000", "5000"),
            ],
            want: vec![70, 57],
            ..Case::default()
        },
        Case {
            name: "resources requested, pods scheduled with resources",
            pod: two_containers(),
            nodes: big(),
            existing: vec![on("node1", "3000", "0"), on("node2", "3000", "5000")],
            want: vec![57, 45],
            ..Case::default()
        },
        Case {
            name: "resources requested, pods scheduled with resources, differently sized nodes",
            pod: two_containers(),
            nodes: vec![
                cpu_memory("node1", "10000", "20000"),
                cpu_memory("node2", "10000", "50000"),
            ],
            existing: vec![on("node1", "3000", "0"), on("node2", "3000", "5000")],
            want: vec![57, 60],
            ..Case::default()
        },
        Case {
            name: "requested resources exceed node capacity",
            pod: pod().req(&[("cpu", "3000"), ("memory", "0")]).obj(),
            nodes: small(),
            existing: vec![on("node1", "3000", "0"), on("node2", "3000", "5000")],
            want: vec![50, 25],
            ..Case::default()
        },
        Case {
            name: "zero node resources, pods scheduled with resources",
            nodes: vec![node("node1").obj(), node("node2").obj()],
            existing: vec![on("node1", "3000", "0"), on("node2", "3000", "5000")],
            want: vec![0, 0],
            ..Case::default()
        },
        Case {
            // (25 * 1 + 50 * 2) / 3 = 41; (50 * 1 + 50 * 2) / 3 = 50.
            name: "resources requested with different weight on CPU and memory",
            pod: two_containers(),
            nodes: differently_sized(),
            resources: weights(&[("memory", 2), ("cpu", 1)]),
            want: vec![41, 50],
            ..Case::default()
        },
        Case {
            name: "bypass extended resource if the pod does not request",
            pod: two_containers(),
            nodes: vec![
                cpu_memory("node1", "6000", "10000"),
                with_extended("node2", "6000", "10000", "4"),
            ],
            resources: extended_resource_set(),
            want: vec![50, 50],
            ..Case::default()
        },
        Case {
            // abc.com/xyz: (4 - 2) / 4 = 50 and (10 - 2) / 10 = 80.
            name: "honor extended resource if the pod requests",
            pod: pod()
                .req(&[("cpu", "3000"), ("memory", "5000"), (EXTENDED, "2")])
                .obj(),
            nodes: vec![
                with_extended("node1", "6000", "10000", "4"),
                with_extended("node2", "6000", "10000", "10"),
            ],
            resources: extended_resource_set(),
            want: vec![50, 60],
            ..Case::default()
        },
        Case {
            name: "if the node doesn't have a resource",
            pod: pod().req(&[("cpu", "3000"), ("memory", "4000")]).obj(),
            nodes: vec![
                cpu_memory("node1", "6000", "10000"),
                with_extended("node2", "6000", "10000", "4"),
            ],
            resources: weights(&[(EXTENDED, 2), ("cpu", 1), ("memory", 1)]),
            want: vec![55, 55],
            ..Case::default()
        },
        // TestFitScore's LeastAllocated cases, sidecar included.
        Case {
            name: "fit score: LeastAllocated",
            pod: on("", "1000", "2000"),
            nodes: differently_sized(),
            existing: vec![on("node1", "2000", "4000"), on("node2", "1000", "2000")],
            want: vec![32, 63],
            ..Case::default()
        },
        Case {
            name: "fit score: LeastAllocated with sidecar container",
            pod: on("", "1000", "2000"),
            nodes: small(),
            existing: vec![
                pod()
                    .node("node1")
                    .req(&[("cpu", "1000"), ("memory", "2000")])
                    .sidecar_req(&[("cpu", "1000"), ("memory", "2000")])
                    .obj(),
                on("node2", "1000", "2000"),
            ],
            want: vec![32, 55],
            ..Case::default()
        },
    ];
    run(&ScoringStrategy::LeastAllocated, cases);
}

#[test]
fn most_allocated() {
    let differently_sized = || {
        vec![
            cpu_memory("node1", "4000", "10000"),
            cpu_memory("node2", "6000", "10000"),
        ]
    };
    let big = || {
        vec![
            cpu_memory("node1", "10000", "20000"),
            cpu_memory("node2", "10000", "20000"),
        ]
    };
    let cases = vec![
        Case {
            name: "nothing scheduled, nothing requested",
            nodes: vec![
                cpu_memory("node1", "4000", "10000"),
                cpu_memory("node2", "4000", "10000"),
            ],
            want: vec![0, 0],
            ..Case::default()
        },
        Case {
            // (75 + 50) / 2 = 62; (50 + 50) / 2 = 50.
            name: "nothing scheduled, resources requested, differently sized nodes",
            pod: two_containers(),
            nodes: differently_sized(),
            want: vec![62, 50],
            ..Case::default()
        },
        Case {
            name: "no resources requested, pods scheduled with resources",
            nodes: big(),
            existing: vec![
                on("node1", "3000", "0"),
                on("node1", "3000", "0"),
                on("node2", "3000", "0"),
                on("node2", "3000", "5000"),
            ],
            want: vec![30, 42],
            ..Case::default()
        },
        Case {
            name: "resources requested, pods scheduled with resources",
            pod: two_containers(),
            nodes: big(),
            existing: vec![on("node1", "3000", "0"), on("node2", "3000", "5000")],
            want: vec![42, 55],
            ..Case::default()
        },
        Case {
            name: "resources requested equal node capacity",
            pod: pod()
                .req(&[("cpu", "2000"), ("memory", "4000")])
                .req(&[("cpu", "3000"), ("memory", "5000")])
                .obj(),
            nodes: vec![
                cpu_memory("node1", "5000", "10000"),
                cpu_memory("node2", "10000", "9000"),
            ],
            want: vec![95, 75],
            ..Case::default()
        },
        Case {
            // (75 * 1 + 50 * 2) / 3 = 58; (50 * 1 + 50 * 2) / 3 = 50.
            name: "resources requested with different weight on CPU and memory",
            pod: two_containers(),
            nodes: differently_sized(),
            resources: weights(&[("memory", 2), ("cpu", 1)]),
            want: vec![58, 50],
            ..Case::default()
        },
        Case {
            // Containers requesting nothing count 100m and 200MiB: node1 holds three such
            // (300m of 250m is full, 600Mi of 1000Mi is 60%), node2 the incoming one only.
            name: "no resources requested, pods scheduled, nonzero request for resource",
            pod: pod().container().obj(),
            nodes: vec![
                cpu_memory("node1", "250m", "1000Mi"),
                cpu_memory("node2", "250m", "1000Mi"),
            ],
            existing: vec![
                pod().node("node1").container().obj(),
                pod().node("node1").container().obj(),
            ],
            want: vec![80, 30],
            ..Case::default()
        },
        Case {
            name: "bypass extended resource if the pod does not request",
            pod: two_containers(),
            nodes: vec![
                cpu_memory("node1", "6000", "10000"),
                with_extended("node2", "6000", "10000", "4"),
            ],
            resources: extended_resource_set(),
            want: vec![50, 50],
            ..Case::default()
        },
        Case {
            // abc.com/xyz: 2 / 4 = 50 and 2 / 10 = 20.
            name: "honor extended resource if the pod requests",
            pod: pod()
                .req(&[("cpu", "3000"), ("memory", "5000"), (EXTENDED, "2")])
                .obj(),
            nodes: vec![
                with_extended("node1", "6000", "10000", "4"),
                with_extended("node2", "6000", "10000", "10"),
            ],
            resources: extended_resource_set(),
            want: vec![50, 40],
            ..Case::default()
        },
        Case {
            name: "if the node doesn't have a resource",
            pod: pod().req(&[("cpu", "3000"), ("memory", "4000")]).obj(),
            nodes: vec![
                cpu_memory("node1", "6000", "10000"),
                with_extended("node2", "6000", "10000", "4"),
            ],
            resources: weights(&[(EXTENDED, 2), ("cpu", 1), ("memory", 1)]),
            want: vec![45, 45],
            ..Case::default()
        },
        Case {
            name: "fit score: MostAllocated",
            pod: on("", "1000", "2000"),
            nodes: differently_sized(),
            existing: vec![on("node1", "2000", "4000"), on("node2", "1000", "2000")],
            want: vec![67, 36],
            ..Case::default()
        },
        Case {
            name: "fit score: MostAllocated with sidecar container",
            pod: on("", "1000", "2000"),
            nodes: vec![
                cpu_memory("node1", "4000", "10000"),
                cpu_memory("node2", "4000", "10000"),
            ],
            existing: vec![
                pod()
                    .node("node1")
                    .req(&[("cpu", "1000"), ("memory", "2000")])
                    .sidecar_req(&[("cpu", "1000"), ("memory", "2000")])
                    .obj(),
                on("node2", "1000", "2000"),
            ],
            want: vec![67, 45],
            ..Case::default()
        },
    ];
    run(&ScoringStrategy::MostAllocated, cases);
}

#[test]
fn no_resources_is_an_error() {
    let plugin = NodeResourcesFit::new(FitArgs {
        resources: Vec::new(),
        ..FitArgs::default()
    })
    .expect("no resources is valid, as in kube");
    let nodes = cluster(vec![cpu_memory("node1", "4000", "10000")], Vec::new());
    let error = plugin
        .score(&CycleState::new(), &two_containers(), &nodes[0])
        .expect_err("resources not found");
    assert_eq!(error, Status::error("resources not found"));
}

pub(super) fn shape(points: &[(i32, i32)]) -> ScoringStrategy {
    ScoringStrategy::RequestedToCapacityRatio {
        shape: points
            .iter()
            .map(|&(utilization, score)| UtilizationShapePoint { utilization, score })
            .collect(),
    }
}

/// kube's weight validation cases (negative, zero, above MaxNodeScore) and its shape rules.
#[test]
fn arguments_are_validated() {
    let weight = |resources: &[(&str, i64)]| {
        NodeResourcesFit::new(FitArgs {
            resources: weights(resources),
            ..FitArgs::default()
        })
        .err()
    };
    assert_eq!(
        weight(&[("memory", -1), ("cpu", 1)]),
        Some(ArgsError::Weight {
            index: 0,
            name: "memory".to_string()
        })
    );
    assert_eq!(
        weight(&[("memory", 1), ("cpu", 0)]),
        Some(ArgsError::Weight {
            index: 1,
            name: "cpu".to_string()
        })
    );
    assert_eq!(
        weight(&[("memory", 1), ("cpu", 101)]),
        Some(ArgsError::Weight {
            index: 1,
            name: "cpu".to_string()
        })
    );
    assert_eq!(weight(&[("memory", 100), ("cpu", 1)]), None);

    let with_shape = |points: &[(i32, i32)]| {
        NodeResourcesFit::new(FitArgs {
            strategy: shape(points),
            ..FitArgs::default()
        })
        .err()
    };
    assert_eq!(with_shape(&[]), Some(ArgsError::NoShape));
    assert_eq!(
        with_shape(&[(50, 1), (50, 2)]),
        Some(ArgsError::UnsortedShape { index: 1 })
    );
    assert_eq!(
        with_shape(&[(0, 1), (101, 2)]),
        Some(ArgsError::ShapeOutOfRange { index: 1 })
    );
    assert_eq!(
        with_shape(&[(0, 11)]),
        Some(ArgsError::ShapeOutOfRange { index: 0 })
    );
    assert_eq!(with_shape(&[(0, 0), (100, 10)]), None);
}

/// The share is exact on both paths: 64-bit while the product fits, 128-bit beyond (bytes of
/// memory near i64::MAX times 100), truncated as kube's int64 division.
#[test]
fn scale_is_exact_with_and_without_overflow() {
    assert_eq!(scale(3, 100, 7), 42);
    assert_eq!(scale(1 << 62, 100, i64::MAX), 50);
    assert_eq!(scale(i64::MAX, 100, i64::MAX), 100);
    assert_eq!(scale(5, 100, 0), 0);
}
