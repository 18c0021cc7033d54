use super::*;
use crate::testing::pod;

fn requests_of(pod: &Pod) -> ResourceList {
    pod_requests(pod).expect("the test's quantities parse")
}

fn list(entries: &[(&str, i64)]) -> ResourceList {
    entries
        .iter()
        .map(|(name, value)| (name.to_string(), *value))
        .collect()
}

/// The example in kube-scheduler's `computePodResourceRequest` comment: init containers of
/// 2 CPU/1G and 2 CPU/3G, containers of 2 CPU/1G and 1 CPU/1G: 3 CPU (the containers' sum),
/// 3G (the largest init container).
#[test]
fn containers_are_summed_init_containers_are_a_high_water_mark() {
    let pod = pod()
        .init_req(&[("cpu", "2"), ("memory", "1G")])
        .init_req(&[("cpu", "2"), ("memory", "3G")])
        .req(&[("cpu", "2"), ("memory", "1G")])
        .req(&[("cpu", "1"), ("memory", "1G")])
        .obj();
    assert_eq!(
        requests_of(&pod),
        list(&[("cpu", 3000), ("memory", 3_000_000_000)])
    );
}

/// KEP-753: a sidecar runs beside the containers and beside every init container after it.
#[test]
fn sidecars_add_to_containers_and_to_later_init_containers() {
    let sidecar_then_container = pod()
        .sidecar_req(&[("cpu", "1")])
        .req(&[("cpu", "1")])
        .obj();
    assert_eq!(requests_of(&sidecar_then_container), list(&[("cpu", 2000)]));

    // The init container runs alone, before the sidecar starts: 5.
    let init_before_sidecar = pod()
        .init_req(&[("cpu", "5")])
        .sidecar_req(&[("cpu", "1")])
        .req(&[("cpu", "1")])
        .obj();
    assert_eq!(requests_of(&init_before_sidecar), list(&[("cpu", 5000)]));

    // The init container runs beside the sidecar started before it: 5 + 1.
    let init_after_sidecar = pod()
        .sidecar_req(&[("cpu", "1")])
        .init_req(&[("cpu", "5")])
        .req(&[("cpu", "1")])
        .obj();
    assert_eq!(requests_of(&init_after_sidecar), list(&[("cpu", 6000)]));
}

/// kube's fit tests "resources + pod overhead fits": 1m + 3m CPU, 1 + 13 bytes.
#[test]
fn overhead_is_added() {
    let pod = pod()
        .req(&[("cpu", "1m"), ("memory", "1")])
        .overhead(&[("cpu", "3m"), ("memory", "13")])
        .obj();
    assert_eq!(requests_of(&pod), list(&[("cpu", 4), ("memory", 14)]));
}

/// Pod-level requests replace the containers' CPU, memory and hugepages, not the rest; the
/// overhead still comes on top.
#[test]
fn pod_level_requests_replace_container_requests() {
    let pod = pod()
        .req(&[("cpu", "1m"), ("memory", "1"), ("example.com/aaa", "2")])
        .pod_level(&[("cpu", "7m"), ("hugepages-2Mi", "5")])
        .overhead(&[("cpu", "1m")])
        .obj();
    assert_eq!(
        requests_of(&pod),
        list(&[
            ("cpu", 8),
            ("example.com/aaa", 2),
            ("hugepages-2Mi", 5),
            ("memory", 1)
        ])
    );
}

#[test]
fn scorers_count_containers_without_requests_at_the_defaults() {
    let pod = pod()
        .container()
        .req(&[("memory", "0")])
        .req(&[("cpu", "250m")])
        .obj();
    assert_eq!(requests_of(&pod), list(&[("cpu", 250), ("memory", 0)]));
    // An explicit 0 is a request: only the unnamed ones get 100m and 200MiB.
    assert_eq!(
        non_zero_pod_requests(&pod).expect("parse"),
        list(&[
            ("cpu", 100 + 100 + 250),
            ("memory", DEFAULT_MEMORY_REQUEST * 2)
        ])
    );
}

#[test]
fn a_pods_resource_for_its_node() {
    let two_containers = pod()
        .container()
        .req(&[("cpu", "1"), ("example.com/aaa", "2")])
        .obj();
    let resource = pod_resource(&two_containers).expect("parse");
    assert_eq!(resource.requests.milli_cpu, 1000);
    assert_eq!(resource.requests.memory, 0);
    assert_eq!(resource.requests.scalar, list(&[("example.com/aaa", 2)]));
    assert_eq!(resource.non_zero_milli_cpu, 1100);
    assert_eq!(resource.non_zero_memory, 2 * DEFAULT_MEMORY_REQUEST);

    // With pod-level CPU, CPU gets no default; memory, named nowhere, still does.
    let pod_level = pod().container().pod_level(&[("cpu", "2")]).obj();
    let resource = pod_resource(&pod_level).expect("parse");
    assert_eq!(resource.non_zero_milli_cpu, 2000);
    assert_eq!(resource.non_zero_memory, DEFAULT_MEMORY_REQUEST);
}

#[test]
fn unreadable_quantities_are_errors_unless_nothing_counts_them() {
    let bad_cpu = pod().req(&[("cpu", "lots")]).obj();
    let error = pod_requests(&bad_cpu).expect_err("cpu must parse");
    assert_eq!(error.resource, "cpu");

    // `storage` is no resource a pod requests from a node: never read, never an error.
    let unrelated = pod().req(&[("storage", "lots"), ("memory", "1Ki")]).obj();
    assert_eq!(requests_of(&unrelated), list(&[("memory", 1024)]));
}

#[test]
fn scalar_resource_names() {
    for scalar in [
        "example.com/aaa",
        "nvidia.com/gpu",
        "kubernetes.io/something",
        "subdomain.kubernetes.io/something",
        "hugepages-2Mi",
        "attachable-volumes-aws-ebs",
    ] {
        assert!(is_scalar_resource_name(scalar), "{scalar}");
    }
    for other in [
        "cpu",
        "memory",
        "pods",
        "storage",
        "requests.example.com/aaa",
    ] {
        assert!(!is_scalar_resource_name(other), "{other}");
    }
    assert!(is_extended_resource_name("example.com/aaa"));
    assert!(!is_extended_resource_name("kubernetes.io/something"));
    assert!(!is_extended_resource_name("hugepages-2Mi"));
}

#[test]
fn resources_keep_what_kube_scheduler_keeps() {
    let resources = Resources::from_list(&list(&[
        ("cpu", 4000),
        ("memory", 1024),
        ("pods", 110),
        ("ephemeral-storage", 7),
        ("example.com/aaa", 3),
        ("storage", 9),
    ]));
    assert_eq!(resources.milli_cpu, 4000);
    assert_eq!(resources.memory, 1024);
    assert_eq!(resources.allowed_pod_number, 110);
    assert_eq!(resources.ephemeral_storage, 7);
    assert_eq!(resources.scalar, list(&[("example.com/aaa", 3)]));
    assert_eq!(resources.get("example.com/aaa"), 3);
    assert_eq!(resources.get("pods"), 110);
    assert_eq!(resources.get("storage"), 0);
}
