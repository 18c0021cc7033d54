//! kube-scheduler's `TestRequestedToCapacityRatioScoringStrategy`, `TestResourceBinPacking*`,
//! the RequestedToCapacityRatio cases of `TestFitScore` and `TestBrokenLinearFunction`,
//! transcribed.

use k8s_openapi::api::core::v1::Node;

use super::score_tests::{cpu_memory, on, run, shape, two_containers, weights, Case};
use super::*;
use crate::testing::{node, pod};

#[test]
fn requested_to_capacity_ratio() {
    let least_requested_first = shape(&[(0, 10), (100, 0)]);
    let differently_sized = || {
        vec![
            cpu_memory("node1", "4000", "10000"),
            cpu_memory("node2", "6000", "10000"),
        ]
    };
    let cases = vec![
        Case {
            name: "nothing scheduled, nothing requested",
            nodes: vec![
                cpu_memory("node1", "4000", "10000"),
                cpu_memory("node2", "4000", "10000"),
            ],
            existing: vec![pod().node("node1").obj(), pod().node("node1").obj()],
            want: vec![100, 100],
            ..Case::default()
        },
        Case {
            // 75% CPU scores 25, 50% memory 50: round(37.5) = 38, the one rounding in kube.
            name: "nothing scheduled, resources requested, differently sized nodes",
            pod: two_containers(),
            nodes: differently_sized(),
            existing: vec![pod().node("node1").obj(), pod().node("node1").obj()],
            want: vec![38, 50],
            ..Case::default()
        },
        Case {
            name: "no resources requested, pods scheduled with resources",
            nodes: differently_sized(),
            existing: vec![on("node1", "3000", "5000"), on("node2", "3000", "5000")],
            want: vec![38, 50],
            ..Case::default()
        },
        Case {
            // node1: CPU over capacity scores 0 and is left out; memory 90% scores 10.
            name: "fit score: RequestedToCapacityRatio case1",
            pod: on("", "3000", "5000"),
            nodes: differently_sized(),
            existing: vec![on("node1", "2000", "4000"), on("node2", "1000", "2000")],
            want: vec![10, 32],
            ..Case::default()
        },
    ];
    run(&least_requested_first, cases);

    // node2: CPU 4000/6000 is 66% (truncated), memory 70%: round(68) = 68.
    run(
        &shape(&[(0, 0), (100, 10)]),
        vec![Case {
            name: "fit score: RequestedToCapacityRatio case2",
            pod: on("", "3000", "5000"),
            nodes: differently_sized(),
            existing: vec![on("node1", "2000", "4000"), on("node2", "1000", "2000")],
            want: vec![95, 68],
            ..Case::default()
        }],
    );
}

fn gadget_node(name: &str, gadgets: &[(&str, &str)]) -> Node {
    let mut capacity = vec![("cpu", "4"), ("memory", "10000Mi")];
    capacity.extend_from_slice(gadgets);
    node(name).capacity(&capacity).obj()
}

#[test]
fn resource_bin_packing_single_extended() {
    let bin_packing = shape(&[(0, 0), (100, 1)]);
    let foo = "intel.com/foo";
    let nodes = || {
        vec![
            gadget_node("node1", &[(foo, "8")]),
            gadget_node("node2", &[(foo, "4")]),
        ]
    };
    let cases = vec![
        Case {
            name: "nothing scheduled, nothing requested",
            nodes: nodes(),
            existing: vec![pod().obj()],
            want: vec![0, 0],
            ..Case::default()
        },
        Case {
            // 2/8 = 25% scores 2 (2.5 truncated), 2/4 = 50% scores 5.
            name: "resources requested, pods scheduled with less resources",
            pod: pod().req(&[(foo, "2")]).obj(),
            nodes: nodes(),
            existing: vec![pod().obj()],
            want: vec![2, 5],
            ..Case::default()
        },
        Case {
            name: "resources requested, pods scheduled with resources, on node with existing pod running",
            pod: pod().req(&[(foo, "2")]).obj(),
            nodes: nodes(),
            existing: vec![pod().node("node2").req(&[(foo, "2")]).obj()],
            want: vec![2, 10],
            ..Case::default()
        },
        Case {
            name: "resources requested, pods scheduled with more resources",
            pod: pod().req(&[(foo, "4")]).obj(),
            nodes: nodes(),
            existing: vec![pod().obj()],
            want: vec![5, 10],
            ..Case::default()
        },
    ];
    let resources = weights(&[(foo, 1)]);
    let cases = cases
        .into_iter()
        .map(|case| Case {
            resources: resources.clone(),
            ..case
        })
        .collect();
    run(&bin_packing, cases);
}

#[test]
fn resource_bin_packing_multiple_extended() {
    let bin_packing = shape(&[(0, 0), (100, 1)]);
    let (foo, bar) = ("intel.com/foo", "intel.com/bar");
    let nodes = || {
        vec![
            gadget_node("node1", &[(foo, "8"), (bar, "4")]),
            gadget_node("node2", &[(foo, "4"), (bar, "8")]),
        ]
    };
    let cases = vec![
        Case {
            name: "nothing scheduled, nothing requested",
            nodes: nodes(),
            want: vec![0, 0],
            ..Case::default()
        },
        Case {
            // node1: foo 25% scores 2, bar 50% scores 5: round((2 * 3 + 5 * 5) / 8) = 4;
            // node2: foo 5, bar 2: round((5 * 3 + 2 * 5) / 8) = 3.
            name: "resources requested, pods scheduled with less resources",
            pod: pod().req(&[(foo, "2"), (bar, "2")]).obj(),
            nodes: nodes(),
            existing: vec![pod().obj()],
            want: vec![4, 3],
            ..Case::default()
        },
        Case {
            // node2: foo 6 of 4 scores 10, bar 4 of 8 scores 5: round(55 / 8) = 7.
            name: "resources requested, pods scheduled with resources, on node with existing pod running",
            pod: pod().req(&[(foo, "2"), (bar, "2")]).obj(),
            nodes: nodes(),
            existing: vec![pod().node("node2").req(&[(foo, "4"), (bar, "2")]).obj()],
            want: vec![4, 7],
            ..Case::default()
        },
        Case {
            name: "resources requested, pods scheduled with more resources",
            pod: pod().req(&[(foo, "4"), (bar, "2")]).obj(),
            nodes: nodes(),
            existing: vec![pod().obj()],
            want: vec![5, 5],
            ..Case::default()
        },
    ];
    let resources = weights(&[(foo, 3), (bar, 5)]);
    let cases = cases
        .into_iter()
        .map(|case| Case {
            resources: resources.clone(),
            ..case
        })
        .collect();
    run(&bin_packing, cases);
}

/// kube-scheduler's `TestBrokenLinearFunction`, every assertion.
#[test]
fn broken_linear_function_matches_kube() {
    let points = |points: &[(i64, i64)]| -> Vec<FunctionShapePoint> {
        points
            .iter()
            .map(|&(utilization, score)| FunctionShapePoint { utilization, score })
            .collect()
    };
    let cases = [
        (
            points(&[(10, 1), (90, 9)]),
            vec![
                (-10, 1),
                (0, 1),
                (9, 1),
                (10, 1),
                (15, 1),
                (19, 1),
                (20, 2),
                (89, 8),
                (90, 9),
                (99, 9),
                (100, 9),
                (110, 9),
            ],
        ),
        (
            points(&[(0, 2), (40, 10), (100, 0)]),
            vec![
                (-10, 2),
                (0, 2),
                (20, 6),
                (30, 8),
                (40, 10),
                (70, 5),
                (100, 0),
                (110, 0),
            ],
        ),
        (
            points(&[(0, 2), (40, 2), (100, 2)]),
            vec![
                (-10, 2),
                (0, 2),
                (20, 2),
                (30, 2),
                (40, 2),
                (70, 2),
                (100, 2),
                (110, 2),
            ],
        ),
    ];
    for (shape, assertions) in cases {
        for (p, want) in assertions {
            assert_eq!(
                broken_linear_function(&shape, p),
                want,
                "p={p} shape={shape:?}"
            );
        }
    }
}
