use super::*;
use crate::resources::DEFAULT_MEMORY_REQUEST;
use crate::testing::{node, node_info, pod, MB};

/// kube-scheduler's `TestNewNodeInfo`: two pods with requests and a host port each.
#[test]
fn totals_of_the_pods_on_a_node() {
    let info = node_info(
        node("test-node").obj(),
        vec![
            pod()
                .node("test-node")
                .req(&[("cpu", "100m"), ("memory", "500")])
                .and_ports(&["TCP/127.0.0.1/80"])
                .obj(),
            pod()
                .node("test-node")
                .req(&[("cpu", "200m"), ("memory", "1Ki")])
                .and_ports(&["TCP/127.0.0.1/8080"])
                .obj(),
        ],
    );
    assert_eq!(info.name(), "test-node");
    assert_eq!(info.pods.len(), 2);
    assert_eq!(
        (info.requested.milli_cpu, info.requested.memory),
        (300, 1524)
    );
    assert_eq!(
        (
            info.non_zero_requested.milli_cpu,
            info.non_zero_requested.memory
        ),
        (300, 1524)
    );
    assert_eq!(
        info.used_ports,
        [
            ("127.0.0.1".to_string(), "TCP".to_string(), 80),
            ("127.0.0.1".to_string(), "TCP".to_string(), 8080),
        ]
    );
}

#[test]
fn pods_without_requests_count_only_in_non_zero_totals() {
    let info = node_info(
        node("n1").obj(),
        vec![pod().container().obj(), pod().container().container().obj()],
    );
    assert_eq!(info.requested, Resources::default());
    assert_eq!(info.non_zero_requested.milli_cpu, 300);
    assert_eq!(info.non_zero_requested.memory, 3 * DEFAULT_MEMORY_REQUEST);
}

#[test]
fn allocatable_scalars_and_images() {
    let info = node_info(
        node("n1")
            .capacity(&[
                ("cpu", "4"),
                ("memory", "8Gi"),
                ("pods", "110"),
                ("ephemeral-storage", "100Gi"),
                ("nvidia.com/gpu", "8"),
                ("hugepages-2Mi", "1Gi"),
            ])
            .image(&["gcr.io/40:latest", "gcr.io/40:v1"], 40 * MB)
            .obj(),
        vec![
            pod().req(&[("nvidia.com/gpu", "3")]).obj(),
            pod()
                .req(&[("nvidia.com/gpu", "1"), ("ephemeral-storage", "1Gi")])
                .obj(),
        ],
    );
    assert_eq!(info.allocatable.milli_cpu, 4000);
    assert_eq!(info.allocatable.memory, 8 << 30);
    assert_eq!(info.allocatable.allowed_pod_number, 110);
    assert_eq!(info.allocatable.ephemeral_storage, 100 << 30);
    assert_eq!(info.allocatable.scalar.get("nvidia.com/gpu"), Some(&8));
    assert_eq!(
        info.allocatable.scalar.get("hugepages-2Mi"),
        Some(&(1 << 30))
    );
    assert_eq!(info.requested.scalar.get("nvidia.com/gpu"), Some(&4));
    assert_eq!(info.requested.ephemeral_storage, 1 << 30);
    assert_eq!(info.image_sizes.get("gcr.io/40:latest"), Some(&(40 * MB)));
    assert_eq!(info.image_sizes.get("gcr.io/40:v1"), Some(&(40 * MB)));
}

/// HostPortInfo's sanitizing: no IP is every IP, no protocol is TCP; sidecars bind their ports
/// for the pod's life, plain init containers and ports without a hostPort bind none.
#[test]
fn used_ports() {
    let info = node_info(
        node("n1").obj(),
        vec![pod()
            .ports(&["//8000", "UDP/10.0.0.1/53", "UDP/10.0.0.1/53"])
            .sidecar_ports(&["TCP/0.0.0.0/9000"])
            .init_ports(&["TCP/0.0.0.0/9100"])
            .obj()],
    );
    assert_eq!(
        info.used_ports,
        [
            ("0.0.0.0".to_string(), "TCP".to_string(), 9000),
            ("0.0.0.0".to_string(), "TCP".to_string(), 8000),
            ("10.0.0.1".to_string(), "UDP".to_string(), 53),
        ]
    );
}

#[test]
fn unreadable_quantities_name_the_node_and_the_pod() {
    let bad_node = node("n1").capacity(&[("cpu", "fast")]).obj();
    assert!(matches!(
        NodeInfo::new(bad_node, Vec::new()),
        Err(NodeInfoError::Allocatable { node, .. }) if node == "n1"
    ));

    let bad_pod = pod().name("p1").req(&[("memory", "a lot")]).obj();
    let error = NodeInfo::new(node("n1").obj(), vec![bad_pod]).expect_err("memory must parse");
    assert!(matches!(
        &error,
        NodeInfoError::Pod { pod, node, source } if pod == "p1" && node == "n1" && source.resource == "memory"
    ));
    assert!(error
        .to_string()
        .starts_with("pod \"p1\" on node \"n1\": requests memory: "));
}

/// The taints and the cordon the filters read per node are copies, kept with the node.
#[test]
fn taints_and_cordon_follow_the_node() {
    let mut info = node_info(node("n1").obj(), vec![]);
    assert!(info.taints().is_empty());
    assert!(!info.unschedulable());
    let cordoned = node("n1")
        .taint("dedicated", "gpu", "NoSchedule")
        .unschedulable(true)
        .obj();
    assert_eq!(info.set_node(cordoned.clone()), Ok(()));
    assert_eq!(info.node(), &cordoned);
    assert_eq!(
        info.taints()
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect::<Vec<_>>(),
        [("dedicated", "NoSchedule")]
    );
    assert!(info.unschedulable());
    // Uncordoned and untainted again: nothing stale is left behind.
    assert_eq!(info.set_node(node("n1").obj()), Ok(()));
    assert!(info.taints().is_empty());
    assert!(!info.unschedulable());
    // A node refused for its allocatable keeps the old copies with the old node.
    let mut unreadable = node("n1").taint("k", "v", "NoExecute").obj();
    unreadable
        .status
        .get_or_insert_default()
        .allocatable
        .get_or_insert_default()
        .insert(
            "cpu".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("lots".into()),
        );
    assert!(info.set_node(unreadable).is_err());
    assert!(info.taints().is_empty());
}
