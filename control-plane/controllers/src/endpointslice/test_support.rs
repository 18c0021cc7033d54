//! Builders shared by the reconciler's tests: kube's test helpers (`newPod`,
//! `newServiceAndEndpointMeta`, `newEmptyEndpointSlice`) and a stand-in API server that
//! carries a plan out on a list of slices.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::{
    Container, Pod, PodCondition, PodIP, PodSpec, PodStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::endpoints::owner_reference;
use super::{pod_to_endpoint, reconcile, Plan};

pub(super) const NS: &str = "test";

pub(super) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// kube's `newServiceAndEndpointMeta`: one TCP port named after the service, target 80,
/// selector `foo=bar`, IPv4, no cluster IP (so headless).
pub(super) fn new_service(name: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(NS.to_string()),
            uid: Some(format!("{NS}-{name}")),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some(name.to_string()),
                port: 80,
                protocol: Some("TCP".to_string()),
                target_port: Some(IntOrString::Int(80)),
                ..ServicePort::default()
            }]),
            selector: Some(labels(&[("foo", "bar")])),
            ip_families: Some(vec!["IPv4".to_string()]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The ports of [`new_service`]'s slices.
pub(super) fn service_ports(name: &str) -> Vec<EndpointPort> {
    vec![EndpointPort {
        name: Some(name.to_string()),
        port: Some(80),
        protocol: Some("TCP".to_string()),
        app_protocol: None,
    }]
}

pub(super) fn spec_mut(service: &mut Service) -> &mut ServiceSpec {
    service.spec.get_or_insert_with(ServiceSpec::default)
}

/// kube's `newPod`: `pod<n>` labelled `foo=bar` on node-1. kube's IPs run past 1.2.3.255 for
/// the large cases (and become `<nil>` in Go); these stay valid and equal kube's below that.
pub(super) fn new_pod(n: usize, ready: bool, terminating: bool) -> Pod {
    let ip = format!("1.2.{}.{}", 3 + (4 + n) / 256, (4 + n) % 256);
    Pod {
        metadata: ObjectMeta {
            namespace: Some(NS.to_string()),
            name: Some(format!("pod{n}")),
            labels: Some(labels(&[("foo", "bar")])),
            deletion_timestamp: terminating.then_some(Time(Timestamp::UNIX_EPOCH)),
            resource_version: Some(n.to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "container-1".to_string(),
                ..Container::default()
            }],
            node_name: Some("node-1".to_string()),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            pod_ip: Some(ip.clone()),
            pod_ips: Some(vec![PodIP { ip }]),
            conditions: Some(vec![ready_condition(ready)]),
            ..PodStatus::default()
        }),
    }
}

pub(super) fn ready_condition(ready: bool) -> PodCondition {
    PodCondition {
        type_: "Ready".to_string(),
        status: if ready { "True" } else { "False" }.to_string(),
        ..PodCondition::default()
    }
}

pub(super) fn pods(count: usize) -> Vec<Pod> {
    (0..count).map(|i| new_pod(i, i % 3 != 0, false)).collect()
}

/// kube's `newEmptyEndpointSlice`: named `<service>-<n>`, owned by the service, no labels.
pub(super) fn new_empty_slice(
    n: usize,
    ports: Vec<EndpointPort>,
    service: &Service,
) -> EndpointSlice {
    let name = service.metadata.name.as_deref().unwrap_or_default();
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{n}")),
            namespace: Some(NS.to_string()),
            owner_references: Some(vec![owner_reference(service)]),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".to_string(),
        endpoints: Some(Vec::new()),
        ports: Some(ports),
    }
}

pub(super) fn with_endpoints(
    mut slice: EndpointSlice,
    pods: &[Pod],
    service: &Service,
) -> EndpointSlice {
    let endpoints = slice.endpoints.get_or_insert_with(Vec::new);
    endpoints.extend(pods.iter().map(|pod| pod_to_endpoint(pod, service, "IPv4")));
    slice
}

pub(super) fn run(service: &Service, pods: &[Pod], existing: &[EndpointSlice]) -> Plan {
    reconcile(service, pods, existing, 100)
}

/// The slices after the API server carried `plan` out on `existing`.
pub(super) fn apply(existing: &[EndpointSlice], plan: &Plan) -> Vec<EndpointSlice> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = |s: &EndpointSlice| s.metadata.name.clone().unwrap_or_default();
    let mut slices: Vec<EndpointSlice> = existing
        .iter()
        .filter(|s| !plan.delete.iter().any(|d| name(d) == name(s)))
        .map(|s| {
            let updated = plan.update.iter().find(|u| name(u) == name(s));
            updated.unwrap_or(s).clone()
        })
        .collect();
    for created in &plan.create {
        let mut created = created.clone();
        let prefix = created.metadata.generate_name.clone().unwrap_or_default();
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        created.metadata.name = Some(format!("{prefix}{id:05}"));
        slices.push(created);
    }
    slices
}

pub(super) fn len(slice: &EndpointSlice) -> usize {
    slice.endpoints.as_ref().map_or(0, Vec::len)
}

pub(super) fn lengths(slices: &[EndpointSlice]) -> Vec<usize> {
    let mut lengths: Vec<usize> = slices.iter().map(len).collect();
    lengths.sort_unstable();
    lengths
}

pub(super) fn counts(plan: &Plan) -> (usize, usize, usize) {
    (plan.create.len(), plan.update.len(), plan.delete.len())
}
