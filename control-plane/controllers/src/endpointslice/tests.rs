//! The reconciler against the cases of kube's `reconciler_test.go` (the fake clientset's
//! writes replaced by the plan, applied to a list of slices).

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::core::v1::{ContainerPort, Pod, PodIP, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::endpoints::new_endpoint_slice;
use super::test_support::{
    apply, counts, labels, lengths, new_empty_slice, new_pod, new_service, pods, ready_condition,
    run, service_ports, spec_mut, with_endpoints, NS,
};
use super::{reconcile, LABEL_HEADLESS, LABEL_MANAGED_BY};

#[test]
fn empty_service_gets_a_placeholder() {
    let svc = new_service("foo");
    let plan = run(&svc, &[], &[]);
    assert_eq!(counts(&plan), (1, 0, 0));
    let slice = &plan.create[0];
    assert_eq!(slice.metadata.generate_name.as_deref(), Some("foo-"));
    assert_eq!(slice.ports, Some(Vec::new()));
    assert_eq!(slice.endpoints, Some(Vec::new()));
    let want = labels(&[
        (LABEL_MANAGED_BY, "endpointslice-controller.k8s.io"),
        ("kubernetes.io/service-name", "foo"),
        (LABEL_HEADLESS, ""),
    ]);
    assert_eq!(slice.metadata.labels, Some(want));
}

#[test]
fn one_pod_per_service_variant() {
    let mut pod = new_pod(1, true, false);
    if let Some(status) = pod.status.as_mut() {
        status.pod_ips = Some(vec![
            PodIP {
                ip: "1.2.3.4".into(),
            },
            PodIP {
                ip: "1234::5678:0000:0000:9abc:def0".into(),
            },
        ]);
    }
    if let Some(spec) = pod.spec.as_mut() {
        spec.hostname = Some("example-hostname".into());
    }
    let service = |families: Option<&[&str]>, cluster_ip: Option<&str>, svc_labels| {
        let mut svc = new_service("foo");
        svc.metadata.labels = svc_labels;
        let spec = spec_mut(&mut svc);
        spec.ip_families = families.map(|f| f.iter().map(|s| s.to_string()).collect());
        spec.cluster_ip = cluster_ip.map(str::to_string);
        svc
    };
    let reserved = Some(labels(&[
        ("kubernetes.io/service-name", "bad"),
        (LABEL_MANAGED_BY, "actor"),
        (LABEL_HEADLESS, "invalid"),
    ]));
    let v4 = Some(&["IPv4"][..]);
    let v6 = Some(&["IPv6"][..]);
    #[expect(
        clippy::type_complexity,
        reason = "a table of cases reads best with its types inline"
    )]
    let cases: [(&str, Service, &[&str], bool, Option<(&str, &str)>); 8] = [
        (
            "no-family-service",
            service(None, Some("10.0.0.10"), None),
            &["IPv4"],
            false,
            None,
        ),
        ("ipv4", service(v4, None, None), &["IPv4"], true, None),
        (
            "ipv4-clusterip",
            service(v4, Some("1.1.1.1"), None),
            &["IPv4"],
            false,
            None,
        ),
        (
            "ipv4-labels",
            service(v4, None, Some(labels(&[("foo", "bar")]))),
            &["IPv4"],
            true,
            Some(("foo", "bar")),
        ),
        (
            "ipv4-bad-labels",
            service(v4, None, reserved),
            &["IPv4"],
            true,
            None,
        ),
        ("ipv6", service(v6, None, None), &["IPv6"], true, None),
        (
            "ipv6-clusterip",
            service(v6, Some("1234::5678:0:0:9abc:def1"), None),
            &["IPv6"],
            false,
            None,
        ),
        (
            "dualstack-service",
            service(Some(&["IPv4", "IPv6"][..]), Some("10.0.0.10"), None),
            &["IPv4", "IPv6"],
            false,
            None,
        ),
    ];
    for (name, svc, types, headless, extra) in cases {
        let plan = run(&svc, std::slice::from_ref(&pod), &[]);
        assert_eq!(counts(&plan), (types.len(), 0, 0), "{name}");
        let mut want_labels = labels(&[
            (LABEL_MANAGED_BY, "endpointslice-controller.k8s.io"),
            ("kubernetes.io/service-name", "foo"),
        ]);
        if headless {
            want_labels.insert(LABEL_HEADLESS.into(), String::new());
        }
        if let Some((k, v)) = extra {
            want_labels.insert(k.into(), v.into());
        }
        for (slice, address_type) in plan.create.iter().zip(types) {
            assert_eq!(&slice.address_type, address_type, "{name}");
            assert_eq!(slice.metadata.labels.as_ref(), Some(&want_labels), "{name}");
            let endpoints = slice.endpoints.as_deref().unwrap_or_default();
            assert_eq!(endpoints.len(), 1, "{name}");
            let endpoint = &endpoints[0];
            let address = if *address_type == "IPv4" {
                "1.2.3.4"
            } else {
                "1234::5678:0:0:9abc:def0"
            };
            assert_eq!(endpoint.addresses, vec![address.to_string()], "{name}");
            assert_eq!(endpoint.node_name.as_deref(), Some("node-1"), "{name}");
            // The pod's subdomain is not the service: no hostname.
            assert_eq!(endpoint.hostname, None, "{name}");
            let conditions = endpoint.conditions.clone().unwrap_or_default();
            assert_eq!(
                (conditions.ready, conditions.serving, conditions.terminating),
                (Some(true), Some(true), Some(false)),
                "{name}"
            );
            let target = endpoint.target_ref.clone().unwrap_or_default();
            assert_eq!(target.kind.as_deref(), Some("Pod"));
            assert_eq!(target.namespace.as_deref(), Some(NS));
            assert_eq!(target.name.as_deref(), Some("pod1"));
        }
    }
}

#[test]
fn placeholder_is_kept_or_rewritten() {
    let svc = new_service("foo");
    let mut same = new_endpoint_slice(&svc, Vec::new(), "IPv4");
    same.metadata.name = Some("foo-abc".into());
    assert!(run(&svc, &[], &[same]).is_empty());

    let mut different = new_empty_slice(1, service_ports("foo"), &svc);
    different.metadata.labels = Some(labels(&[("bar", "baz")]));
    different.metadata.resource_version = Some("7".into());
    let plan = run(&svc, &[], &[different]);
    assert_eq!(counts(&plan), (0, 1, 0));
    let updated = &plan.update[0];
    assert_eq!(updated.metadata.name.as_deref(), Some("foo-1"));
    assert_eq!(updated.metadata.resource_version.as_deref(), Some("7"));
    assert_eq!(updated.ports, Some(Vec::new()));
    assert_eq!(updated.endpoints, Some(Vec::new()));
}

#[test]
fn dual_stack_service_gets_a_placeholder_per_family() {
    let mut svc = new_service("foo");
    spec_mut(&mut svc).ip_families = Some(vec!["IPv4".into(), "IPv6".into()]);
    let plan = run(&svc, &[], &[]);
    let types: Vec<&str> = plan
        .create
        .iter()
        .map(|s| s.address_type.as_str())
        .collect();
    assert_eq!(types, vec!["IPv4", "IPv6"]);
}

#[test]
fn publish_not_ready_addresses_makes_every_endpoint_ready() {
    let mut svc = new_service("foo");
    spec_mut(&mut svc).publish_not_ready_addresses = Some(true);
    let plan = run(&svc, &pods(50), &[]);
    assert_eq!(counts(&plan), (1, 0, 0));
    assert_eq!(lengths(&plan.create), vec![50]);
    for endpoint in plan.create[0].endpoints.iter().flatten() {
        assert_eq!(
            endpoint.conditions.as_ref().and_then(|c| c.ready),
            Some(true)
        );
    }
}

#[test]
fn many_pods_fill_three_slices() {
    let plan = run(&new_service("foo"), &pods(250), &[]);
    assert_eq!(counts(&plan), (3, 0, 0));
    assert_eq!(lengths(&plan.create), vec![50, 100, 100]);
}

#[test]
fn max_endpoints_per_slice() {
    let svc = new_service("foo");
    let pods = pods(250);
    for (max, want) in [
        (50, &[50, 50, 50, 50, 50][..]),
        (80, &[10, 80, 80, 80][..]),
        (150, &[100, 150][..]),
        (250, &[250][..]),
        (500, &[250][..]),
    ] {
        let plan = reconcile(&svc, &pods, &[] as &[EndpointSlice], max);
        assert_eq!(lengths(&plan.create), want, "max {max}");
    }
}

/// Two slices hold every fourth pod each (62 and 61); of the 127 left, 100 go into a new slice
/// and 27 into the slice they fill best: one create and one update, not two updates.
#[test]
fn some_preexisting() {
    let svc = new_service("foo");
    let pods = pods(250);
    let every_fourth = |from: usize| -> Vec<Pod> {
        (from..pods.len() - 4)
            .step_by(4)
            .map(|i| pods[i].clone())
            .collect()
    };
    let slice1 = with_endpoints(
        new_empty_slice(1, service_ports("foo"), &svc),
        &every_fourth(1),
        &svc,
    );
    let slice2 = with_endpoints(
        new_empty_slice(2, service_ports("foo"), &svc),
        &every_fourth(3),
        &svc,
    );
    let existing = vec![slice1, slice2];
    let plan = run(&svc, &pods, &existing);
    assert_eq!(counts(&plan), (1, 1, 0));
    assert_eq!(plan.update[0].metadata.name.as_deref(), Some("foo-1"));
    assert_eq!(lengths(&apply(&existing, &plan)), vec![61, 89, 100]);
}

/// 74 and 74 exist, 152 to add: 100 and 52 in new slices rather than splitting the 52.
#[test]
fn some_preexisting_worse_allocation() {
    let svc = new_service("foo");
    let pods = pods(300);
    let every_fourth = |from: usize| -> Vec<Pod> {
        (from..pods.len() - 4)
            .step_by(4)
            .map(|i| pods[i].clone())
            .collect()
    };
    let slice1 = with_endpoints(
        new_empty_slice(1, service_ports("foo"), &svc),
        &every_fourth(1),
        &svc,
    );
    let slice2 = with_endpoints(
        new_empty_slice(2, service_ports("foo"), &svc),
        &every_fourth(3),
        &svc,
    );
    let existing = vec![slice1, slice2];
    let plan = run(&svc, &pods, &existing);
    assert_eq!(counts(&plan), (2, 0, 0));
    assert_eq!(lengths(&apply(&existing, &plan)), vec![52, 74, 74, 100]);
}

/// A port change touches every slice: they are rewritten in place, not deleted and created.
#[test]
fn port_change_updates_in_place() {
    let mut svc = new_service("foo");
    let pods = pods(250);
    let slices = apply(&[], &run(&svc, &pods, &[]));
    if let Some(port) = spec_mut(&mut svc)
        .ports
        .as_mut()
        .and_then(|p| p.first_mut())
    {
        port.target_port = Some(IntOrString::Int(81));
    }
    let plan = run(&svc, &pods, &slices);
    assert_eq!(counts(&plan), (0, 3, 0));
    for slice in &plan.update {
        let ports = slice.ports.as_deref().unwrap_or_default();
        assert_eq!(ports[0].port, Some(81));
    }
    assert_eq!(lengths(&apply(&slices, &plan)), vec![50, 100, 100]);
}

#[test]
fn service_labels_are_copied_but_reserved_ones_ignored() {
    let mut svc = new_service("foo");
    let pods = pods(250);
    let slices = apply(&[], &run(&svc, &pods, &[]));
    assert!(run(&svc, &pods, &slices).is_empty());

    svc.metadata.labels = Some(labels(&[("foo", "bar")]));
    let plan = run(&svc, &pods, &slices);
    assert_eq!(counts(&plan), (0, 3, 0));
    for slice in &plan.update {
        let slice_labels = slice.metadata.labels.clone().unwrap_or_default();
        assert_eq!(slice_labels.get("foo").map(String::as_str), Some("bar"));
    }

    svc.metadata.labels = Some(labels(&[
        ("kubernetes.io/service-name", "bad"),
        (LABEL_MANAGED_BY, "actor"),
        (LABEL_HEADLESS, "invalid"),
    ]));
    assert!(run(&svc, &pods, &slices).is_empty());
}

/// Ten slices of 30: left alone while nothing changes; a port change repacks them into three
/// (three rewritten, seven deleted).
#[test]
fn recycling_repacks() {
    let mut svc = new_service("foo");
    let pods = pods(300);
    let existing: Vec<EndpointSlice> = pods
        .chunks(30)
        .enumerate()
        .map(|(i, chunk)| {
            with_endpoints(new_empty_slice(i, service_ports("foo"), &svc), chunk, &svc)
        })
        .collect();
    assert!(run(&svc, &pods, &existing).is_empty());
    if let Some(port) = spec_mut(&mut svc)
        .ports
        .as_mut()
        .and_then(|p| p.first_mut())
    {
        port.target_port = Some(IntOrString::Int(81));
    }
    let plan = run(&svc, &pods, &existing);
    assert_eq!(counts(&plan), (0, 3, 7));
    assert_eq!(lengths(&apply(&existing, &plan)), vec![100, 100, 100]);
}

/// New endpoints go into the fullest of the slices being rewritten anyway.
#[test]
fn update_packing() {
    let svc = new_service("foo");
    let mut pods: Vec<Pod> = (0..80)
        .chain(100..120)
        .map(|i| new_pod(i, true, false))
        .collect();
    let slice1 = with_endpoints(
        new_empty_slice(1, service_ports("foo"), &svc),
        &pods[..80],
        &svc,
    );
    let slice2 = with_endpoints(
        new_empty_slice(2, service_ports("foo"), &svc),
        &pods[80..],
        &svc,
    );
    let existing = vec![slice1, slice2];
    for pod in pods.iter_mut().step_by(10) {
        if let Some(status) = pod.status.as_mut() {
            status.conditions = Some(vec![ready_condition(false)]);
        }
    }
    pods.extend((200..215).map(|i| new_pod(i, true, false)));
    let plan = run(&svc, &pods, &existing);
    assert_eq!(counts(&plan), (0, 2, 0));
    assert_eq!(lengths(&apply(&existing, &plan)), vec![20, 95]);
}

/// Slices of the deprecated "IP" address type are replaced by IPv4 ones, perfectly packed.
#[test]
fn replace_deprecated_address_type() {
    let svc = new_service("foo");
    let pods: Vec<Pod> = (0..80)
        .chain(100..150)
        .map(|i| new_pod(i, true, false))
        .collect();
    let mut slice1 = with_endpoints(
        new_empty_slice(1, service_ports("foo"), &svc),
        &pods[..80],
        &svc,
    );
    let mut slice2 = with_endpoints(
        new_empty_slice(2, service_ports("foo"), &svc),
        &pods[80..],
        &svc,
    );
    slice1.address_type = "IP".into();
    slice2.address_type = "IP".into();
    let existing = vec![slice1, slice2];
    let plan = run(&svc, &pods, &existing);
    assert_eq!(counts(&plan), (2, 0, 2));
    let after = apply(&existing, &plan);
    assert_eq!(lengths(&after), vec![30, 100]);
    assert!(after.iter().all(|s| s.address_type == "IPv4"));
}

/// A slice of an earlier service of the same name (another UID) is replaced, not rewritten.
#[test]
fn recreated_service() {
    let svc = new_service("foo");
    let pod = new_pod(1, true, false);
    let slice = with_endpoints(
        new_empty_slice(1, service_ports("foo"), &svc),
        std::slice::from_ref(&pod),
        &svc,
    );
    assert!(run(
        &svc,
        std::slice::from_ref(&pod),
        std::slice::from_ref(&slice)
    )
    .is_empty());

    let mut foreign = slice;
    if let Some(owner) = foreign
        .metadata
        .owner_references
        .as_mut()
        .and_then(|o| o.first_mut())
    {
        owner.uid = "different".into();
    }
    let plan = run(&svc, std::slice::from_ref(&pod), &[foreign]);
    assert_eq!(counts(&plan), (1, 0, 1));
}

/// A named target port resolving to five numbers: five slices of 60.
#[test]
fn named_ports_group_pods_by_resolved_ports() {
    let mut svc = new_service("named-port-example");
    spec_mut(&mut svc).ports = Some(vec![ServicePort {
        port: 80,
        protocol: Some("TCP".into()),
        target_port: Some(IntOrString::String("http".into())),
        ..ServicePort::default()
    }]);
    let mut pods = pods(300);
    for (i, pod) in pods.iter_mut().enumerate() {
        if let Some(spec) = pod.spec.as_mut() {
            spec.containers[0].ports = Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080 + (i % 5) as i32,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            }]);
        }
    }
    let plan = run(&svc, &pods, &[]);
    assert_eq!(counts(&plan), (5, 0, 0));
    assert_eq!(lengths(&plan.create), vec![60; 5]);
    let mut numbers: Vec<i32> = plan
        .create
        .iter()
        .map(|slice| {
            let ports = slice.ports.clone().unwrap_or_default();
            assert_eq!(ports.len(), 1);
            assert_eq!(ports[0].name.as_deref(), Some(""));
            assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
            ports[0].port.unwrap_or_default()
        })
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, vec![8080, 8081, 8082, 8083, 8084]);
}

/// A service being deleted gets no new slice, but rewrites and deletions go through.
#[test]
fn service_pending_deletion_creates_nothing() {
    let mut svc = new_service("foo");
    svc.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
    let pod = new_pod(1, true, false);
    assert!(run(&svc, std::slice::from_ref(&pod), &[]).is_empty());

    let mut other_ports = service_ports("foo");
    other_ports[0].port = Some(81);
    let old = new_empty_slice(1, other_ports, &svc);
    let plan = run(&svc, std::slice::from_ref(&pod), &[old]);
    assert_eq!(counts(&plan), (0, 1, 0));
}

/// kube's `FailedToUpdateEndpointSlices`, with the reconciler's own wording of the failure.
mod recorded_events {
    use keel_events::EventType;

    use crate::api_errors::refused;
    use crate::endpointslice::run::{failed_to_update, SyncError};

    fn write(operation: &'static str) -> SyncError {
        SyncError::Write {
            operation,
            service: "default/web".into(),
            slice: "web-abc12".into(),
            source: refused(403, "Forbidden", "exceeded quota: slices"),
        }
    }

    #[test]
    fn a_failed_write_is_a_warning_on_the_service() {
        let note = failed_to_update("default/web", &write("create"));
        assert_eq!(note.type_, EventType::Warning);
        assert_eq!(note.reason, "FailedToUpdateEndpointSlices");
        assert_eq!(
            note.message,
            "Error updating Endpoint Slices for Service default/web: failed to create \
             EndpointSlice for Service default/web: exceeded quota: slices"
        );
        for operation in ["update", "delete"] {
            let note = failed_to_update("default/web", &write(operation));
            assert_eq!(
                note.message,
                format!(
                    "Error updating Endpoint Slices for Service default/web: failed to \
                     {operation} web-abc12 EndpointSlice for Service default/web: exceeded \
                     quota: slices"
                )
            );
        }
    }
}
