//! kube-scheduler's `TestEnoughRequests`, `TestNotEnoughRequests`, `TestStorageRequests` and
//! `TestRestartableInitContainers`, transcribed.

use super::*;
use crate::testing::{node, node_info, pod, PodBuilder};

const EXTENDED_A: &str = "example.com/aaa";
const EXTENDED_B: &str = "example.com/bbb";
const KUBERNETES_IO_A: &str = "kubernetes.io/something";
const KUBERNETES_IO_B: &str = "subdomain.kubernetes.io/something";
const HUGEPAGES_A: &str = "hugepages-2Mi";

/// One container's requests, as kube's `newResourcePod(framework.Resource{…})` writes them:
/// CPU, memory and ephemeral storage always (0 included), and some scalars.
#[derive(Clone, Copy)]
struct Usage {
    milli_cpu: i64,
    memory: i64,
    ephemeral_storage: i64,
    scalars: &'static [(&'static str, i64)],
}

fn usage(milli_cpu: i64, memory: i64) -> Usage {
    Usage {
        milli_cpu,
        memory,
        ephemeral_storage: 0,
        scalars: &[],
    }
}

fn scalars(milli_cpu: i64, memory: i64, scalars: &'static [(&'static str, i64)]) -> Usage {
    Usage {
        scalars,
        ..usage(milli_cpu, memory)
    }
}

fn storage(ephemeral_storage: i64) -> Usage {
    Usage {
        ephemeral_storage,
        ..usage(0, 0)
    }
}

fn add_usage(builder: PodBuilder, usage: Usage, init: bool) -> PodBuilder {
    let mut values = vec![
        (CPU, format!("{}m", usage.milli_cpu)),
        (MEMORY, usage.memory.to_string()),
        (EPHEMERAL_STORAGE, usage.ephemeral_storage.to_string()),
    ];
    values.extend(
        usage
            .scalars
            .iter()
            .map(|(name, value)| (*name, value.to_string())),
    );
    let list: Vec<(&str, &str)> = values
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    if init {
        builder.init_req(&list)
    } else {
        builder.req(&list)
    }
}

/// `newResourcePod(containers…)`.
fn resource_pod(containers: &[Usage]) -> PodBuilder {
    containers
        .iter()
        .fold(pod(), |builder, usage| add_usage(builder, *usage, false))
}

/// `newResourceInitPod(pod, initContainers…)`.
fn with_init(builder: PodBuilder, init_containers: &[Usage]) -> PodBuilder {
    init_containers
        .iter()
        .fold(builder, |builder, usage| add_usage(builder, *usage, true))
}

/// kube's `makeAllocatableResources(10, 20, 32, 5, 20, 5)`: 10m CPU, 20 bytes, 32 pods, 5 of
/// example.com/aaa, 20 bytes of ephemeral storage, 5 of hugepages-2Mi.
fn roomy_node(pods_on_it: Vec<Pod>) -> NodeInfo {
    node_info(
        node("node")
            .capacity(&[
                ("cpu", "10m"),
                ("memory", "20"),
                ("pods", "32"),
                (EXTENDED_A, "5"),
                ("ephemeral-storage", "20"),
                (HUGEPAGES_A, "5"),
            ])
            .obj(),
        pods_on_it,
    )
}

struct Case {
    name: &'static str,
    pod: Pod,
    /// The pods already on the node.
    on_node: Vec<Pod>,
    args: FitArgs,
    /// (resource, requested, used, capacity, unresolvable) of each insufficient resource.
    want: Vec<(&'static str, i64, i64, i64, bool)>,
}

fn case(
    name: &'static str,
    pod: PodBuilder,
    on_node: Usage,
    want: Vec<(&'static str, i64, i64, i64, bool)>,
) -> Case {
    Case {
        name,
        pod: pod.obj(),
        on_node: vec![resource_pod(&[on_node]).obj()],
        args: FitArgs::default(),
        want,
    }
}

/// (resource, requested, used, capacity, unresolvable).
type Shortfall = (String, i64, i64, i64, bool);

fn run(cases: Vec<Case>, node: fn(Vec<Pod>) -> NodeInfo) {
    for case in cases {
        let node = node(case.on_node);
        let plugin = NodeResourcesFit::new(case.args).expect("valid args");
        let request = Resources::from_list(&pod_requests(&case.pod).expect("parse"));
        let got: Vec<Shortfall> = fits_request(
            &request,
            &node,
            &plugin.args().ignored_resources,
            &plugin.args().ignored_resource_groups,
        )
        .into_iter()
        .map(|r| {
            (
                r.resource_name,
                r.requested,
                r.used,
                r.capacity,
                r.unresolvable,
            )
        })
        .collect();
        let want: Vec<Shortfall> = case
            .want
            .iter()
            .map(|&(name, requested, used, capacity, unresolvable)| {
                (name.to_string(), requested, used, capacity, unresolvable)
            })
            .collect();
        assert_eq!(got, want, "{}", case.name);

        let status = plugin.filter(&CycleState::new(), &case.pod, &node);
        if case.want.is_empty() {
            assert!(status.is_success(), "{}: {status}", case.name);
        } else {
            let code = if case.want.iter().any(|want| want.4) {
                Code::UnschedulableAndUnresolvable
            } else {
                Code::Unschedulable
            };
            let reasons = case.want.iter().map(|want| match want.0 {
                PODS => REASON_TOO_MANY_PODS.to_string(),
                name => format!("Insufficient {name}"),
            });
            assert_eq!(status, Status::new(code, reasons), "{}", case.name);
        }
    }
}

#[test]
fn enough_requests() {
    let cases =
        vec![
        case("no resources requested always fits", pod(), usage(10, 20), vec![]),
        case(
            "too many resources fails",
            resource_pod(&[usage(1, 1)]),
            usage(10, 20),
            vec![("cpu", 1, 10, 10, false), ("memory", 1, 20, 20, false)],
        ),
        case(
            "too many resources fails due to init container cpu",
            with_init(resource_pod(&[usage(1, 1)]), &[usage(3, 1)]),
            usage(8, 19),
            vec![("cpu", 3, 8, 10, false)],
        ),
        case(
            "too many resources fails due to highest init container cpu",
            with_init(resource_pod(&[usage(1, 1)]), &[usage(3, 1), usage(2, 1)]),
            usage(8, 19),
            vec![("cpu", 3, 8, 10, false)],
        ),
        case(
            "too many resources fails due to init container memory",
            with_init(resource_pod(&[usage(1, 1)]), &[usage(1, 3)]),
            usage(9, 19),
            vec![("memory", 3, 19, 20, false)],
        ),
        case(
            "too many resources fails due to highest init container memory",
            with_init(resource_pod(&[usage(1, 1)]), &[usage(1, 3), usage(1, 2)]),
            usage(9, 19),
            vec![("memory", 3, 19, 20, false)],
        ),
        case(
            "init container fits because it's the max, not sum, of containers and init containers",
            with_init(resource_pod(&[usage(1, 1)]), &[usage(1, 1)]),
            usage(9, 19),
            vec![],
        ),
        case(
            "multiple init containers fit because it's the max, not sum",
            with_init(resource_pod(&[usage(1, 1)]), &[usage(1, 1), usage(1, 1)]),
            usage(9, 19),
            vec![],
        ),
        case(
            "both resources fit",
            resource_pod(&[usage(1, 1)]),
            usage(5, 5),
            vec![],
        ),
        case(
            "one resource memory fits",
            resource_pod(&[usage(2, 1)]),
            usage(9, 5),
            vec![("cpu", 2, 9, 10, false)],
        ),
        case(
            "one resource cpu fits",
            resource_pod(&[usage(1, 2)]),
            usage(5, 19),
            vec![("memory", 2, 19, 20, false)],
        ),
        case(
            "equal edge case",
            resource_pod(&[usage(5, 1)]),
            usage(5, 19),
            vec![],
        ),
        case(
            "equal edge case for init container",
            with_init(resource_pod(&[usage(4, 1)]), &[usage(5, 1)]),
            usage(5, 19),
            vec![],
        ),
        case(
            "extended resource fits",
            resource_pod(&[scalars(0, 0, &[(EXTENDED_A, 1)])]),
            usage(0, 0),
            vec![],
        ),
        case(
            "extended resource fits for init container",
            with_init(resource_pod(&[usage(0, 0)]), &[scalars(0, 0, &[(EXTENDED_A, 1)])]),
            usage(0, 0),
            vec![],
        ),
        case(
            "extended resource capacity enforced",
            resource_pod(&[scalars(1, 1, &[(EXTENDED_A, 10)])]),
            scalars(0, 0, &[(EXTENDED_A, 0)]),
            vec![(EXTENDED_A, 10, 0, 5, true)],
        ),
        case(
            "extended resource capacity enforced for init container",
            with_init(resource_pod(&[usage(0, 0)]), &[scalars(1, 1, &[(EXTENDED_A, 10)])]),
            scalars(0, 0, &[(EXTENDED_A, 0)]),
            vec![(EXTENDED_A, 10, 0, 5, true)],
        ),
        case(
            "extended resource allocatable enforced",
            resource_pod(&[scalars(1, 1, &[(EXTENDED_A, 1)])]),
            scalars(0, 0, &[(EXTENDED_A, 5)]),
            vec![(EXTENDED_A, 1, 5, 5, false)],
        ),
        case(
            "extended resource allocatable enforced for init container",
            with_init(resource_pod(&[usage(0, 0)]), &[scalars(1, 1, &[(EXTENDED_A, 1)])]),
            scalars(0, 0, &[(EXTENDED_A, 5)]),
            vec![(EXTENDED_A, 1, 5, 5, false)],
        ),
        case(
            "extended resource allocatable enforced for multiple containers",
            resource_pod(&[
                scalars(1, 1, &[(EXTENDED_A, 3)]),
                scalars(1, 1, &[(EXTENDED_A, 3)]),
            ]),
            scalars(0, 0, &[(EXTENDED_A, 2)]),
            vec![(EXTENDED_A, 6, 2, 5, true)],
        ),
        case(
            "extended resource allocatable admits multiple init containers",
            with_init(
                resource_pod(&[usage(0, 0)]),
                &[
                    scalars(1, 1, &[(EXTENDED_A, 3)]),
                    scalars(1, 1, &[(EXTENDED_A, 3)]),
                ],
            ),
            scalars(0, 0, &[(EXTENDED_A, 2)]),
            vec![],
        ),
        case(
            "extended resource allocatable enforced for multiple init containers",
            with_init(
                resource_pod(&[usage(0, 0)]),
                &[
                    scalars(1, 1, &[(EXTENDED_A, 6)]),
                    scalars(1, 1, &[(EXTENDED_A, 3)]),
                ],
            ),
            scalars(0, 0, &[(EXTENDED_A, 2)]),
            vec![(EXTENDED_A, 6, 2, 5, true)],
        ),
        case(
            "extended resource allocatable enforced for unknown resource",
            resource_pod(&[scalars(1, 1, &[(EXTENDED_B, 1)])]),
            usage(0, 0),
            vec![(EXTENDED_B, 1, 0, 0, true)],
        ),
        case(
            "extended resource allocatable enforced for unknown resource for init container",
            with_init(resource_pod(&[usage(0, 0)]), &[scalars(1, 1, &[(EXTENDED_B, 1)])]),
            usage(0, 0),
            vec![(EXTENDED_B, 1, 0, 0, true)],
        ),
        case(
            "kubernetes.io resource capacity enforced",
            resource_pod(&[scalars(1, 1, &[(KUBERNETES_IO_A, 10)])]),
            usage(0, 0),
            vec![(KUBERNETES_IO_A, 10, 0, 0, true)],
        ),
        case(
            "kubernetes.io resource capacity enforced for init container",
            with_init(
                resource_pod(&[usage(0, 0)]),
                &[scalars(1, 1, &[(KUBERNETES_IO_B, 10)])],
            ),
            usage(0, 0),
            vec![(KUBERNETES_IO_B, 10, 0, 0, true)],
        ),
        case(
            "hugepages resource capacity enforced",
            resource_pod(&[scalars(1, 1, &[(HUGEPAGES_A, 10)])]),
            scalars(0, 0, &[(HUGEPAGES_A, 0)]),
            vec![(HUGEPAGES_A, 10, 0, 5, true)],
        ),
        case(
            "hugepages resource capacity enforced for init container",
            with_init(resource_pod(&[usage(0, 0)]), &[scalars(1, 1, &[(HUGEPAGES_A, 10)])]),
            scalars(0, 0, &[(HUGEPAGES_A, 0)]),
            vec![(HUGEPAGES_A, 10, 0, 5, true)],
        ),
        case(
            "hugepages resource allocatable enforced for multiple containers",
            resource_pod(&[
                scalars(1, 1, &[(HUGEPAGES_A, 3)]),
                scalars(1, 1, &[(HUGEPAGES_A, 3)]),
            ]),
            scalars(0, 0, &[(HUGEPAGES_A, 2)]),
            vec![(HUGEPAGES_A, 6, 2, 5, true)],
        ),
        Case {
            args: FitArgs {
                ignored_resources: BTreeSet::from([EXTENDED_B.to_string()]),
                ..FitArgs::default()
            },
            ..case(
                "skip checking ignored extended resource",
                resource_pod(&[scalars(1, 1, &[(EXTENDED_B, 1)])]),
                usage(0, 0),
                vec![],
            )
        },
        case(
            "resources + pod overhead fits",
            resource_pod(&[usage(1, 1)]).overhead(&[("cpu", "3m"), ("memory", "13")]),
            usage(5, 5),
            vec![],
        ),
        case(
            "requests + overhead does not fit for memory",
            resource_pod(&[usage(1, 1)]).overhead(&[("cpu", "1m"), ("memory", "15")]),
            usage(5, 5),
            vec![("memory", 16, 5, 20, false)],
        ),
        Case {
            args: FitArgs {
                ignored_resource_groups: BTreeSet::from(["example.com".to_string()]),
                ..FitArgs::default()
            },
            ..case(
                "skip checking ignored extended resource via resource groups",
                resource_pod(&[scalars(1, 1, &[(EXTENDED_B, 1), (KUBERNETES_IO_A, 1)])]),
                usage(0, 0),
                vec![(KUBERNETES_IO_A, 1, 0, 0, true)],
            )
        },
        case(
            "skip checking extended resource request with quantity zero",
            resource_pod(&[scalars(1, 1, &[(EXTENDED_A, 0)])]),
            scalars(0, 0, &[(EXTENDED_A, 6)]),
            vec![],
        ),
        case(
            "skip checking resource request with quantity zero",
            resource_pod(&[scalars(0, 0, &[(EXTENDED_A, 1)])]),
            scalars(20, 30, &[(EXTENDED_A, 1)]),
            vec![],
        ),
        case(
            "both pod-level and container-level resources fit",
            resource_pod(&[usage(1, 1)]).pod_level(&[("cpu", "1m"), ("memory", "2")]),
            usage(5, 5),
            vec![],
        ),
        case(
            "pod-level cpu resource not fit",
            resource_pod(&[usage(1, 1)]).pod_level(&[("cpu", "7m"), ("memory", "2")]),
            usage(5, 5),
            vec![("cpu", 7, 5, 10, false)],
        ),
        case(
            "pod-level memory resource not fit",
            resource_pod(&[usage(1, 1)]).pod_level(&[("cpu", "3m"), ("memory", "2")]),
            usage(5, 19),
            vec![("memory", 2, 19, 20, false)],
        ),
        Case {
            on_node: vec![],
            ..case(
                "pod-level hugepages resource fit",
                pod().pod_level(&[("cpu", "3m"), ("memory", "2"), (HUGEPAGES_A, "5")]),
                usage(0, 0),
                vec![],
            )
        },
        Case {
            on_node: vec![],
            ..case(
                "both pod-level and container-level hugepages resource fit",
                resource_pod(&[scalars(1, 1, &[(HUGEPAGES_A, 3)])]).pod_level(&[
                    ("cpu", "3m"),
                    ("memory", "2"),
                    (HUGEPAGES_A, "5"),
                ]),
                usage(0, 0),
                vec![],
            )
        },
        Case {
            on_node: vec![],
            ..case(
                "pod-level hugepages resource not fit",
                pod().pod_level(&[("cpu", "3m"), ("memory", "2"), (HUGEPAGES_A, "10")]),
                usage(0, 0),
                vec![(HUGEPAGES_A, 10, 0, 5, true)],
            )
        },
        case(
            "one pod-level cpu resource fits and all init and non-init containers resources fit",
            with_init(
                resource_pod(&[usage(1, 1)]).pod_level(&[("cpu", "3m"), ("memory", "2")]),
                &[usage(1, 1)],
            ),
            usage(5, 19),
            vec![("memory", 2, 19, 20, false)],
        ),
    ];
    run(cases, roomy_node);
}

/// `makeAllocatableResources(10, 20, 1, 0, 0, 0)`: room for one pod, which is taken.
fn one_pod_node(pods_on_it: Vec<Pod>) -> NodeInfo {
    node_info(
        node("node")
            .capacity(&[("cpu", "10m"), ("memory", "20"), ("pods", "1")])
            .obj(),
        pods_on_it,
    )
}

#[test]
fn not_enough_pods() {
    let too_many = || vec![(PODS, 1, 1, 1, false)];
    let cases = vec![
        case(
            "even without specified resources, predicate fails when there's no space for additional pod",
            pod(),
            usage(10, 20),
            too_many(),
        ),
        case(
            "even if both resources fit, predicate fails when there's no space for additional pod",
            resource_pod(&[usage(1, 1)]),
            usage(5, 5),
            too_many(),
        ),
        case(
            "even for equal edge case, predicate fails when there's no space for additional pod",
            resource_pod(&[usage(5, 1)]),
            usage(5, 19),
            too_many(),
        ),
        case(
            "even for equal edge case, predicate fails when there's no space for additional pod due to init container",
            with_init(resource_pod(&[usage(5, 1)]), &[usage(5, 1)]),
            usage(5, 19),
            too_many(),
        ),
    ];
    run(cases, one_pod_node);
}

#[test]
fn storage_requests() {
    let cases = vec![
        case(
            "empty storage requested, and pod fits",
            resource_pod(&[usage(1, 1)]),
            usage(2, 10),
            vec![],
        ),
        case(
            "storage ephemeral local storage request exceeds allocatable",
            resource_pod(&[storage(25)]),
            usage(2, 2),
            vec![(EPHEMERAL_STORAGE, 25, 0, 20, true)],
        ),
        case(
            "ephemeral local storage is sufficient",
            resource_pod(&[storage(5)]),
            Usage {
                ephemeral_storage: 10,
                ..usage(2, 2)
            },
            vec![],
        ),
        case(
            "pod fits",
            resource_pod(&[storage(10)]),
            usage(2, 2),
            vec![],
        ),
    ];
    run(cases, roomy_node);
}

/// `makeAllocatableResources(2, 0, 1, 0, 0, 0)`: 2m CPU, no memory, one pod.
fn small_node(pods_on_it: Vec<Pod>) -> NodeInfo {
    node_info(
        node("node")
            .capacity(&[("cpu", "2m"), ("memory", "0"), ("pods", "1")])
            .obj(),
        pods_on_it,
    )
}

/// Sidecars count beside the regular containers (SidecarContainers is GA).
#[test]
fn restartable_init_containers() {
    let empty_node = |name, pod: PodBuilder, want| Case {
        on_node: vec![],
        ..case(name, pod, usage(0, 0), want)
    };
    let cases = vec![
        empty_node(
            "allow pod without restartable init containers",
            pod().container(),
            vec![],
        ),
        empty_node(
            "allow pod with restartable init containers",
            pod().sidecar_req(&[]).container(),
            vec![],
        ),
        empty_node(
            "allow pod if the total requested resources do not exceed the node's allocatable resources",
            pod().req(&[("cpu", "1m")]).sidecar_req(&[("cpu", "1m")]),
            vec![],
        ),
        empty_node(
            "not allow pod if the total requested resources do exceed the node's allocatable resources",
            pod().req(&[("cpu", "1m")]).sidecar_req(&[("cpu", "2m")]),
            vec![(CPU, 3, 0, 2, true)],
        ),
    ];
    run(cases, small_node);
}

#[test]
fn fits_reports_every_shortfall() {
    let node = roomy_node(vec![resource_pod(&[usage(10, 20)]).obj()]);
    let insufficient = fits(&resource_pod(&[usage(1, 1)]).obj(), &node).expect("parse");
    assert_eq!(
        insufficient
            .iter()
            .map(|r| r.reason.as_str())
            .collect::<Vec<_>>(),
        ["Insufficient cpu", "Insufficient memory"]
    );
}

#[test]
fn unreadable_requests_are_errors() {
    let pod = pod().req(&[("cpu", "a few")]).obj();
    let status = NodeResourcesFit::default().filter(&CycleState::new(), &pod, &roomy_node(vec![]));
    assert_eq!(status.code, Code::Error);
}
