//! EndpointSlices for this node's pods, as the EndpointSlice controller writes them: for
//! every Service with a selector, the pods whose labels match, with `ready` from the pod's
//! Ready condition (probes included) and `terminating` once the pod is being stopped. The
//! change tracker takes them beside the slices of the manifests, so readiness drives the
//! datapath without any file being written.

use std::{collections::BTreeMap, net::Ipv4Addr, num::NonZeroU16};

use keel_api::{
    endpoint_slice::{AddressType, SERVICE_NAME_LABEL},
    Endpoint, EndpointConditions, EndpointPort, EndpointSlice, IntOrString, ObjectMeta, Service,
};

use super::PodView;

/// The slices for `services` from `pods` (keyed by uid).
pub fn pod_endpoint_slices<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    pods: &BTreeMap<String, PodView>,
) -> Vec<EndpointSlice> {
    let mut slices = Vec::new();
    for service in services {
        if service.spec.selector.is_empty() {
            continue;
        }
        let namespace = service.metadata.namespace();
        // Pods are grouped by the ports they resolve to: a named targetPort may be a
        // different number in different pods, and a slice has one port list.
        let mut groups: BTreeMap<Vec<EndpointPort>, Vec<Endpoint>> = BTreeMap::new();
        for pod in pods.values() {
            let matches = pod.namespace == namespace
                && service
                    .spec
                    .selector
                    .iter()
                    .all(|(k, v)| pod.labels.get(k) == Some(v));
            let Some(ip) = pod
                .status
                .pod_ip
                .as_ref()
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            if !matches || pod.finished() {
                continue;
            }
            let ports = resolve_ports(service, pod);
            if ports.is_empty() {
                continue;
            }
            let ready = pod.is_ready();
            groups.entry(ports).or_default().push(Endpoint {
                addresses: vec![ip],
                conditions: EndpointConditions {
                    ready: Some(ready && !pod.terminating),
                    serving: Some(ready),
                    terminating: Some(pod.terminating),
                },
            });
        }
        for (index, (ports, endpoints)) in groups.into_iter().enumerate() {
            let name = &service.metadata.name;
            slices.push(EndpointSlice {
                metadata: ObjectMeta {
                    name: format!("{name}-keel-{index}"),
                    namespace: Some(namespace.to_owned()),
                    labels: BTreeMap::from([(SERVICE_NAME_LABEL.to_owned(), name.clone())]),
                },
                address_type: AddressType::IPv4,
                endpoints,
                ports: ports_sorted(ports),
            });
        }
    }
    slices
}

fn ports_sorted(mut ports: Vec<EndpointPort>) -> Vec<EndpointPort> {
    ports.sort_by(|a, b| a.name.cmp(&b.name));
    ports
}

/// The service's ports as this pod serves them: `targetPort` by number, by the name of a
/// container port, or (absent) the service port itself. A name the pod lacks drops the port
/// for this pod, as in Kubernetes.
fn resolve_ports(service: &Service, pod: &PodView) -> Vec<EndpointPort> {
    service
        .spec
        .ports
        .iter()
        .filter_map(|port| {
            let number = match &port.target_port {
                None => port.port,
                Some(IntOrString::Int(n)) => *n,
                Some(IntOrString::String(name)) => pod
                    .ports
                    .iter()
                    .find(|p| {
                        p.name.as_deref() == Some(name.as_str()) && p.protocol == port.protocol
                    })
                    .map(|p| p.container_port)?,
            };
            Some(EndpointPort {
                name: port.name.clone(),
                port: NonZeroU16::new(number.get())?,
                protocol: port.protocol,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use keel_api::{
        parse_manifests,
        pod::{ContainerPort, PodCondition},
        Object, PodPhase, PodStatus, Protocol,
    };

    use super::*;

    fn service(text: &str) -> Service {
        match parse_manifests(text).expect("service").remove(0) {
            Object::Service(service) => service,
            other => panic!("{other:?}"),
        }
    }

    fn pod(name: &str, ip: &str, ready: bool, terminating: bool) -> PodView {
        PodView {
            namespace: "default".into(),
            name: name.into(),
            labels: BTreeMap::from([("app".into(), "web".into())]),
            status: PodStatus {
                phase: PodPhase::Running,
                pod_ip: Some(ip.into()),
                conditions: vec![PodCondition {
                    condition_type: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    last_transition_time: None,
                }],
                ..Default::default()
            },
            pids: BTreeMap::new(),
            ports: vec![ContainerPort {
                name: Some("http".into()),
                container_port: NonZeroU16::new(8080).expect("port"),
                protocol: Protocol::Tcp,
            }],
            terminating,
        }
    }

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  clusterIP: 10.96.0.9\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: http}]\n";

    #[test]
    fn selected_pods_become_endpoints_with_their_readiness() {
        let pods = BTreeMap::from([
            ("a".to_owned(), pod("a", "10.244.1.2", true, false)),
            ("b".to_owned(), pod("b", "10.244.1.3", false, false)),
            ("c".to_owned(), pod("c", "10.244.1.4", true, true)),
        ]);
        let slices = pod_endpoint_slices([&service(SERVICE)], &pods);
        assert_eq!(slices.len(), 1);
        let slice = &slices[0];
        assert_eq!(slice.service_name(), Some("web"));
        assert_eq!(slice.ports[0].port.get(), 8080, "named targetPort resolved");
        let conditions: Vec<(bool, bool, bool)> = slice
            .endpoints
            .iter()
            .map(|e| {
                (
                    e.conditions.is_ready(),
                    e.conditions.is_serving(),
                    e.conditions.is_terminating(),
                )
            })
            .collect();
        assert_eq!(
            conditions,
            [
                (true, true, false),
                (false, false, false),
                (false, true, true)
            ]
        );
    }

    #[test]
    fn unselected_and_unresolvable_pods_are_left_out() {
        let mut other = pod("x", "10.244.1.9", true, false);
        other.labels.insert("app".into(), "db".into());
        let mut portless = pod("y", "10.244.1.8", true, false);
        portless.ports.clear();
        let pods = BTreeMap::from([("x".to_owned(), other), ("y".to_owned(), portless)]);
        assert!(pod_endpoint_slices([&service(SERVICE)], &pods).is_empty());
        let no_selector = service(&SERVICE.replace("  selector: {app: web}\n", ""));
        let pods = BTreeMap::from([("a".to_owned(), pod("a", "10.244.1.2", true, false))]);
        assert!(pod_endpoint_slices([&no_selector], &pods).is_empty());
    }
}
