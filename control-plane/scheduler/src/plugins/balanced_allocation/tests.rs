use k8s_openapi::api::core::v1::Node;

use super::*;
use crate::testing::{cluster, node, pod, score_all, PodBuilder};

const GPU: &str = "nvidia.com/gpu";

/// kube's `makeNode(name, milliCPU, memory, extended)`.
fn make_node(name: &str, milli_cpu: i64, memory: i64, gpus: Option<&str>) -> Node {
    let cpu = format!("{milli_cpu}m");
    let memory = memory.to_string();
    let mut capacity = vec![("cpu", cpu.as_str()), ("memory", memory.as_str())];
    if let Some(gpus) = gpus {
        capacity.push((GPU, gpus));
    }
    node(name).capacity(&capacity).obj()
}

/// kube's `cpuAndMemory` spec: containers of 1000m/2000 and 2000m/3000.
fn cpu_and_memory() -> PodBuilder {
    pod()
        .req(&[("cpu", "1000m"), ("memory", "2000")])
        .req(&[("cpu", "2000m"), ("memory", "3000")])
}

/// kube's `cpuOnly` spec: containers of 1000m and 2000m CPU, memory written as 0.
fn cpu_only() -> PodBuilder {
    pod()
        .req(&[("cpu", "1000m"), ("memory", "0")])
        .req(&[("cpu", "2000m"), ("memory", "0")])
}

/// kube's `cpuAndMemoryAndGPU` spec: as `cpuAndMemory`, the second container with 3 GPUs.
fn cpu_and_memory_and_gpu() -> PodBuilder {
    pod().req(&[("cpu", "1000m"), ("memory", "2000")]).req(&[
        ("cpu", "2000m"),
        ("memory", "3000"),
        (GPU, "3"),
    ])
}

struct Case {
    name: &'static str,
    pod: Pod,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    with_gpu: bool,
    want: Vec<i64>,
}

/// kube-scheduler's `TestNodeResourcesBalancedAllocation`, every case but those of DRA
/// extended resources (keel has no DRA yet).
#[test]
fn balanced_allocation() {
    let cases = [
        Case {
            // A BestEffort pod is skipped at PreScore in kube: no node gains from it.
            name: "nothing scheduled, nothing requested",
            pod: pod().obj(),
            nodes: vec![
                make_node("node1", 4000, 10000, None),
                make_node("node2", 4000, 10000, None),
            ],
            pods: vec![],
            with_gpu: false,
            want: vec![0, 0],
        },
        Case {
            // node1: CPU 3000/4000, memory 5000/10000: σ = (0.75 - 0.5) / 2, score 87.
            name: "nothing scheduled, resources requested, differently sized nodes",
            pod: cpu_and_memory().obj(),
            nodes: vec![
                make_node("node1", 4000, 10000, None),
                make_node("node2", 6000, 10000, None),
            ],
            pods: vec![],
            with_gpu: false,
            want: vec![87, 100],
        },
        Case {
            // node1: 6000/10000 CPU, 5000/20000 memory: 82; node2: 60% and 50%: 95.
            name: "resources requested, pods scheduled with resources",
            pod: cpu_and_memory().obj(),
            nodes: vec![
                make_node("node1", 10000, 20000, None),
                make_node("node2", 10000, 20000, None),
            ],
            pods: vec![
                cpu_only().node("node1").obj(),
                cpu_and_memory().node("node2").obj(),
            ],
            with_gpu: false,
            want: vec![82, 95],
        },
        Case {
            name: "resources requested, pods scheduled with resources, differently sized nodes",
            pod: cpu_and_memory().obj(),
            nodes: vec![
                make_node("node1", 10000, 20000, None),
                make_node("node2", 10000, 50000, None),
            ],
            pods: vec![
                cpu_only().node("node1").obj(),
                cpu_and_memory().node("node2").obj(),
            ],
            with_gpu: false,
            want: vec![82, 80],
        },
        Case {
            // node1: CPU full, no memory: σ = 0.5, score 50; node2: 1 and 0.5: 75.
            name: "requested resources at node capacity",
            pod: cpu_only().obj(),
            nodes: vec![
                make_node("node1", 6000, 10000, None),
                make_node("node2", 6000, 10000, None),
            ],
            pods: vec![
                cpu_only().node("node1").obj(),
                cpu_and_memory().node("node2").obj(),
            ],
            with_gpu: false,
            want: vec![50, 75],
        },
        Case {
            // Three fractions: node1 0.857, 0.125 and 4/8: σ = 0.2989, score 70; node2 the
            // same CPU and memory, 1/8 GPU: σ = 0.345, score 65.
            name: "include scalar resource on a node for balanced resource allocation",
            pod: pod().req(&[("memory", "0"), (GPU, "1")]).obj(),
            nodes: vec![
                make_node("node1", 3500, 40000, Some("8")),
                make_node("node2", 3500, 40000, Some("8")),
            ],
            pods: vec![
                cpu_and_memory().node("node2").obj(),
                cpu_and_memory_and_gpu().node("node1").obj(),
            ],
            with_gpu: true,
            want: vec![70, 65],
        },
        Case {
            // The pod asks for no GPU: the GPU is left out on both nodes.
            name: "node without the scalar resource should skip the scalar resource",
            pod: cpu_and_memory().obj(),
            nodes: vec![
                make_node("node1", 3500, 40000, Some("8")),
                make_node("node2", 3500, 40000, None),
            ],
            pods: vec![],
            with_gpu: true,
            want: vec![63, 63],
        },
    ];
    for case in cases {
        let plugin = if case.with_gpu {
            BalancedAllocation::new(vec![
                ResourceSpec::new("cpu", 1),
                ResourceSpec::new("memory", 1),
                ResourceSpec::new(GPU, 1),
            ])
            .expect("valid args")
        } else {
            BalancedAllocation::default()
        };
        let nodes = cluster(case.nodes, case.pods);
        assert_eq!(
            score_all(&plugin, &case.pod, &nodes),
            case.want,
            "{}",
            case.name
        );
    }
}

#[test]
fn arguments_are_validated() {
    assert_eq!(
        BalancedAllocation::new(vec![
            ResourceSpec::new("cpu", 1),
            ResourceSpec::new("cpu", 1)
        ])
        .err(),
        Some(ArgsError::Duplicate {
            index: 1,
            name: "cpu".to_string()
        })
    );
    assert_eq!(
        BalancedAllocation::new(vec![ResourceSpec::new("memory", 2)]).err(),
        Some(ArgsError::BalancedWeight {
            index: 0,
            name: "memory".to_string()
        })
    );
}

#[test]
fn standard_deviation() {
    let score = |requested: &[i64], allocatable: &[i64]| {
        balanced_resource_score(requested.iter().copied().zip(allocatable.iter().copied()))
    };
    assert_eq!(score(&[], &[]), 100);
    assert_eq!(score(&[5], &[10]), 100);
    // Fractions over 1 count as 1.
    assert_eq!(score(&[30, 0], &[10, 10]), 50);
    // A resource the node lacks is left out.
    assert_eq!(score(&[3, 0, 5], &[4, 0, 10]), 87);
}
