//! One pod as one endpoint, ports, labels and address types, against the cases of kube's
//! `utils_test.go`.

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ObjectReference, Pod, PodIP, PodSpec, Service, ServicePort,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::endpoints::{
    new_endpoint_slice, owner_reference, placeholder_equal, pod_endpoint_changes, slice_labels,
};
use super::test_support::{labels, new_pod, new_service, ready_condition, spec_mut, NS};
use super::{
    address_types, endpoint_ports, pod_to_endpoint, LABEL_HEADLESS, LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
};

const MANAGED: (&str, &str) = (LABEL_MANAGED_BY, "endpointslice-controller.k8s.io");
const NAMED: (&str, &str) = (LABEL_SERVICE_NAME, "foo");
const HEADLESS: (&str, &str) = (LABEL_HEADLESS, "");

fn endpoint(address: &str, conditions: (bool, bool, bool), hostname: Option<&str>) -> Endpoint {
    let (ready, serving, terminating) = conditions;
    Endpoint {
        addresses: vec![address.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname.map(str::to_string),
        node_name: Some("node-1".to_string()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".to_string()),
            namespace: Some(NS.to_string()),
            name: Some("pod1".to_string()),
            ..ObjectReference::default()
        }),
        ..Endpoint::default()
    }
}

#[test]
fn pod_to_endpoint_conditions() {
    let svc = new_service("foo");
    let mut publish = new_service("publishnotready");
    spec_mut(&mut publish).publish_not_ready_addresses = Some(true);

    let ready = new_pod(1, true, false);
    let unready = new_pod(1, false, false);
    let mut multi_ip = new_pod(1, true, false);
    if let Some(status) = multi_ip.status.as_mut() {
        status.pod_ips = Some(vec![
            PodIP {
                ip: "1.2.3.4".into(),
            },
            PodIP {
                ip: "1234::5678:0000:0000:9abc:def0".into(),
            },
        ]);
    }
    let mut hostname = new_pod(1, true, false);
    if let Some(spec) = hostname.spec.as_mut() {
        spec.subdomain = Some("foo".into());
        spec.hostname = Some("example-hostname".into());
    }
    let cases = [
        (
            "ready",
            &ready,
            &svc,
            endpoint("1.2.3.5", (true, true, false), None),
        ),
        (
            "ready, publishNotReadyAddresses",
            &ready,
            &publish,
            endpoint("1.2.3.5", (true, true, false), None),
        ),
        (
            "unready",
            &unready,
            &svc,
            endpoint("1.2.3.5", (false, false, false), None),
        ),
        (
            "unready, publishNotReadyAddresses",
            &unready,
            &publish,
            endpoint("1.2.3.5", (true, false, false), None),
        ),
        (
            "multi IP",
            &multi_ip,
            &svc,
            endpoint("1.2.3.4", (true, true, false), None),
        ),
        (
            "hostname",
            &hostname,
            &svc,
            endpoint("1.2.3.5", (true, true, false), Some("example-hostname")),
        ),
        (
            "ready terminating",
            &new_pod(1, true, true),
            &svc,
            endpoint("1.2.3.5", (false, true, true), None),
        ),
        (
            "unready terminating",
            &new_pod(1, false, true),
            &svc,
            endpoint("1.2.3.5", (false, false, true), None),
        ),
    ];
    for (name, pod, service, want) in cases {
        assert_eq!(pod_to_endpoint(pod, service, "IPv4"), want, "{name}");
    }
    // A hostname is only published under the service its subdomain names.
    assert_eq!(pod_to_endpoint(&hostname, &publish, "IPv4").hostname, None);
}

#[test]
fn addresses_are_canonical_and_of_the_slice_family() {
    let svc = new_service("foo");
    let with_ips = |ips: &[&str]| {
        let mut pod = new_pod(1, true, false);
        if let Some(status) = pod.status.as_mut() {
            status.pod_ips = Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect());
        }
        pod
    };
    let pod = with_ips(&["010.000.000.001", "1234::5678:0000:0000:9abc:def0"]);
    assert_eq!(
        pod_to_endpoint(&pod, &svc, "IPv4").addresses,
        vec!["10.0.0.1"]
    );
    assert_eq!(
        pod_to_endpoint(&pod, &svc, "IPv6").addresses,
        vec!["1234::5678:0:0:9abc:def0"]
    );
    let mapped = with_ips(&["::ffff:1.2.3.4"]);
    assert_eq!(
        pod_to_endpoint(&mapped, &svc, "IPv4").addresses,
        vec!["1.2.3.4"]
    );
    assert!(pod_to_endpoint(&mapped, &svc, "IPv6").addresses.is_empty());
    let garbage = with_ips(&["not-an-ip"]);
    assert!(pod_to_endpoint(&garbage, &svc, "IPv4").addresses.is_empty());
}

fn service_with_ports(ports: Vec<ServicePort>) -> Service {
    let mut svc = new_service("foo");
    spec_mut(&mut svc).ports = Some(ports);
    svc
}

fn service_port(
    name: &str,
    port: i32,
    target: Option<IntOrString>,
    app: Option<&str>,
) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        protocol: Some("TCP".to_string()),
        target_port: target,
        app_protocol: app.map(str::to_string),
        ..ServicePort::default()
    }
}

fn endpoint_port(name: &str, port: i32, app: Option<&str>) -> EndpointPort {
    EndpointPort {
        name: Some(name.to_string()),
        port: Some(port),
        protocol: Some("TCP".to_string()),
        app_protocol: app.map(str::to_string),
    }
}

fn pod_with_ports(
    containers: Vec<Vec<ContainerPort>>,
    init: Vec<(Option<&str>, Vec<ContainerPort>)>,
) -> Pod {
    let container = |ports: Vec<ContainerPort>| Container {
        name: "c".to_string(),
        ports: Some(ports),
        ..Container::default()
    };
    Pod {
        spec: Some(PodSpec {
            containers: containers.into_iter().map(container).collect(),
            init_containers: Some(
                init.into_iter()
                    .map(|(restart, ports)| Container {
                        restart_policy: restart.map(str::to_string),
                        ..container(ports)
                    })
                    .collect(),
            ),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

fn container_port(name: &str, number: i32, protocol: &str) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: number,
        protocol: Some(protocol.to_string()),
        ..ContainerPort::default()
    }
}

#[test]
fn endpoint_ports_resolve_per_pod() {
    let http = || service_port("http", 80, Some(IntOrString::Int(80)), None);
    let https = || {
        service_port(
            "https",
            443,
            Some(IntOrString::String("https".into())),
            Some("https"),
        )
    };

    let custom = service_with_ports(vec![service_port(
        "http",
        80,
        Some(IntOrString::Int(80)),
        Some("example.com/custom-protocol"),
    )]);
    let bare = pod_with_ports(vec![vec![]], vec![]);
    assert_eq!(
        endpoint_ports(&custom, &bare),
        vec![endpoint_port(
            "http",
            80,
            Some("example.com/custom-protocol")
        )]
    );

    let named = service_with_ports(vec![http(), https()]);
    let serving = pod_with_ports(vec![vec![container_port("https", 8443, "TCP")]], vec![]);
    assert_eq!(
        endpoint_ports(&named, &serving),
        vec![
            endpoint_port("http", 80, None),
            endpoint_port("https", 8443, Some("https"))
        ]
    );
    // No container declares the name: the port is left out for this pod only.
    assert_eq!(
        endpoint_ports(&named, &bare),
        vec![endpoint_port("http", 80, None)]
    );
    // The name matches only under the same protocol.
    let udp = pod_with_ports(vec![vec![container_port("https", 8443, "UDP")]], vec![]);
    assert_eq!(
        endpoint_ports(&named, &udp),
        vec![endpoint_port("http", 80, None)]
    );
    // Sidecars (restartPolicy Always) count; plain init containers do not.
    let sidecar = pod_with_ports(
        vec![vec![]],
        vec![(Some("Always"), vec![container_port("https", 9443, "TCP")])],
    );
    assert_eq!(
        endpoint_ports(&named, &sidecar)[1],
        endpoint_port("https", 9443, Some("https"))
    );
    let init = pod_with_ports(
        vec![vec![]],
        vec![(None, vec![container_port("https", 9443, "TCP")])],
    );
    assert_eq!(endpoint_ports(&named, &init).len(), 1);
    // Without a target port the API server's default applies: the port itself.
    let untargeted = service_with_ports(vec![service_port("web", 8080, None, None)]);
    assert_eq!(
        endpoint_ports(&untargeted, &bare),
        vec![endpoint_port("web", 8080, None)]
    );
}

fn cluster_ip_service(cluster_ip: &str, svc_labels: &[(&str, &str)]) -> Service {
    let mut svc = new_service("foo");
    svc.metadata.labels = (!svc_labels.is_empty()).then(|| labels(svc_labels));
    spec_mut(&mut svc).cluster_ip = Some(cluster_ip.to_string());
    svc
}

#[test]
fn slice_labels_follow_the_service() {
    let evil = [
        (LABEL_SERVICE_NAME, "bad"),
        (LABEL_MANAGED_BY, "actor"),
        (LABEL_HEADLESS, "invalid"),
    ];
    let evil_foo = [
        (LABEL_SERVICE_NAME, "bad"),
        (LABEL_MANAGED_BY, "actor"),
        ("foo", "bar"),
    ];
    type Case<'a> = (
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a [(&'a str, &'a str)],
        bool,
    );
    let cases: [Case<'_>; 13] = [
        (
            "no labels, empty slice",
            &[],
            "1.1.1.1",
            &[],
            &[NAMED, MANAGED],
            false,
        ),
        (
            "headless with labels",
            &[],
            "None",
            &[("foo", "bar")],
            &[NAMED, MANAGED, HEADLESS, ("foo", "bar")],
            true,
        ),
        (
            "headless without labels",
            &[],
            "None",
            &[],
            &[NAMED, MANAGED, HEADLESS],
            false,
        ),
        (
            "headless label on a ClusterIP service",
            &[],
            "1.1.1.1",
            &[HEADLESS],
            &[NAMED, MANAGED],
            false,
        ),
        (
            "now ClusterIP, with headless label",
            &[NAMED, MANAGED, HEADLESS],
            "1.1.1.1",
            &[HEADLESS],
            &[NAMED, MANAGED],
            false,
        ),
        (
            "now ClusterIP",
            &[NAMED, MANAGED, HEADLESS],
            "1.1.1.1",
            &[],
            &[NAMED, MANAGED],
            false,
        ),
        (
            "headless, same labels",
            &[NAMED, MANAGED, ("foo", "bar")],
            "None",
            &[("foo", "bar")],
            &[NAMED, MANAGED, HEADLESS, ("foo", "bar")],
            false,
        ),
        (
            "labels, empty slice",
            &[],
            "1.1.1.1",
            &[("foo", "bar")],
            &[NAMED, MANAGED, ("foo", "bar")],
            true,
        ),
        (
            "slice labels, service none",
            &[NAMED, MANAGED, ("foo", "bar")],
            "1.1.1.1",
            &[],
            &[NAMED, MANAGED],
            true,
        ),
        (
            "headless slice, ClusterIP service",
            &[NAMED, MANAGED, HEADLESS],
            "1.1.1.1",
            &[],
            &[NAMED, MANAGED],
            false,
        ),
        (
            "reserved slice labels, service labels",
            &[NAMED, MANAGED],
            "1.1.1.1",
            &[("foo", "bar")],
            &[NAMED, MANAGED, ("foo", "bar")],
            true,
        ),
        (
            "evil service, reserved only",
            &[NAMED, MANAGED],
            "1.1.1.1",
            &evil,
            &[NAMED, MANAGED],
            false,
        ),
        (
            "evil service with updates",
            &[NAMED, MANAGED],
            "1.1.1.1",
            &evil_foo,
            &[NAMED, MANAGED, ("foo", "bar")],
            true,
        ),
    ];
    for (name, current, cluster_ip, svc_labels, want, changed) in cases {
        let svc = cluster_ip_service(cluster_ip, svc_labels);
        let current = (!current.is_empty()).then(|| labels(current));
        assert_eq!(
            slice_labels(current.as_ref(), &svc),
            (labels(want), changed),
            "{name}"
        );
    }
}

#[test]
fn new_endpoint_slice_carries_labels_and_owner() {
    let ports = vec![EndpointPort {
        name: Some("foo".into()),
        protocol: Some("TCP".into()),
        ..EndpointPort::default()
    }];
    #[expect(
        clippy::type_complexity,
        reason = "a table of cases reads best with its types inline"
    )]
    let cases: [(&[(&str, &str)], &str, &[(&str, &str)]); 4] = [
        (&[], "1.1.1.1", &[NAMED, MANAGED]),
        (
            &[("foo", "bar")],
            "1.1.1.1",
            &[NAMED, MANAGED, ("foo", "bar")],
        ),
        (
            &[("foo", "bar")],
            "None",
            &[NAMED, MANAGED, HEADLESS, ("foo", "bar")],
        ),
        (
            &[
                (LABEL_SERVICE_NAME, "bad"),
                (LABEL_MANAGED_BY, "actor"),
                ("foo", "bar"),
            ],
            "1.1.1.1",
            &[NAMED, MANAGED, ("foo", "bar")],
        ),
    ];
    for (svc_labels, cluster_ip, want) in cases {
        let mut svc = cluster_ip_service(cluster_ip, svc_labels);
        svc.metadata.annotations = Some(labels(&[("foo", "bar")]));
        let want = EndpointSlice {
            metadata: ObjectMeta {
                labels: Some(labels(want)),
                generate_name: Some("foo-".into()),
                owner_references: Some(vec![owner_reference(&svc)]),
                namespace: Some(NS.into()),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints: Some(Vec::new()),
            ports: Some(ports.clone()),
        };
        assert_eq!(new_endpoint_slice(&svc, ports.clone(), "IPv4"), want);
    }
    let owner = owner_reference(&new_service("foo"));
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.api_version.as_str(),
            owner.uid.as_str()
        ),
        ("Service", "v1", "test-foo")
    );
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true))
    );
}

#[test]
fn address_types_of_a_service() {
    let service = |families: Option<&[&str]>, cluster_ip: Option<&str>| {
        let mut svc = new_service("foo");
        let spec = spec_mut(&mut svc);
        spec.ip_families = families.map(|f| f.iter().map(|s| s.to_string()).collect());
        spec.cluster_ip = cluster_ip.map(str::to_string);
        svc
    };
    #[expect(
        clippy::type_complexity,
        reason = "a table of cases reads best with its types inline"
    )]
    let cases: [(Option<&[&str]>, Option<&str>, &[&str]); 8] = [
        (None, Some("10.0.0.10"), &["IPv4"]),
        (None, Some("2000::1"), &["IPv6"]),
        (Some(&["IPv4"]), None, &["IPv4"]),
        (Some(&["IPv6"]), None, &["IPv6"]),
        (Some(&["IPv4", "IPv6"]), None, &["IPv4", "IPv6"]),
        (Some(&["IPv6", "IPv4"]), None, &["IPv6", "IPv4"]),
        (None, Some("None"), &["IPv4", "IPv6"]),
        (Some(&["IPv4", "IPv6"]), Some("None"), &["IPv4", "IPv6"]),
    ];
    for (families, cluster_ip, want) in cases {
        assert_eq!(
            address_types(&service(families, cluster_ip)),
            want,
            "{families:?} {cluster_ip:?}"
        );
    }
}

#[test]
fn placeholder_comparison_ignores_all_but_labels_and_owners() {
    let named = |name: &str| EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..EndpointSlice::default()
    };
    assert!(placeholder_equal(
        &EndpointSlice::default(),
        &EndpointSlice::default()
    ));
    assert!(placeholder_equal(&named("foo"), &named("bar")));
    let mut created = named("foo");
    created.metadata.creation_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
    assert!(placeholder_equal(&created, &named("foo")));
    let mut foo = named("x");
    foo.metadata.labels = Some(labels(&[("foo", "true")]));
    let mut bar = named("x");
    bar.metadata.labels = Some(labels(&[("bar", "true")]));
    assert!(!placeholder_equal(&foo, &bar));
    let v4 = EndpointSlice {
        address_type: "IPv4".into(),
        ..EndpointSlice::default()
    };
    let v6 = EndpointSlice {
        address_type: "IPv6".into(),
        ..EndpointSlice::default()
    };
    assert!(!placeholder_equal(&v4, &v6));
    // Absent lists read back from the API server equal the empty ones written.
    let written = EndpointSlice {
        endpoints: Some(Vec::new()),
        ports: Some(Vec::new()),
        ..v4.clone()
    };
    assert!(placeholder_equal(&v4, &written));
}

#[test]
fn pod_changes_that_matter_to_endpoints() {
    let old = new_pod(1, true, false);
    let mut relabelled = old.clone();
    relabelled.metadata.labels = Some(labels(&[("foo", "baz")]));
    assert_eq!(pod_endpoint_changes(&old, &relabelled), (false, true));
    let mut unready = old.clone();
    if let Some(status) = unready.status.as_mut() {
        status.conditions = Some(vec![ready_condition(false)]);
    }
    assert_eq!(pod_endpoint_changes(&old, &unready), (true, false));
    let mut bumped = old.clone();
    bumped.metadata.resource_version = Some("99".into());
    assert_eq!(pod_endpoint_changes(&old, &bumped), (false, false));
    assert_eq!(
        pod_endpoint_changes(&old, &new_pod(1, true, true)),
        (true, false)
    );
}
