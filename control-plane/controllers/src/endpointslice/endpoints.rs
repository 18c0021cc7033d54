//! One pod as one endpoint, the ports it serves, and the labels and owner of a slice: kube's
//! `staging/src/k8s.io/endpointslice/utils.go` and `util/controller_utils.go`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keel_api::label_selector::Selector;

use super::{
    ADDRESS_TYPE_IPV4, ADDRESS_TYPE_IPV6, CONTROLLER_NAME, LABEL_HEADLESS, LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
};

/// The protocol the API server defaults ports to; a port read without one means TCP.
const DEFAULT_PROTOCOL: &str = "TCP";

/// The pod selector of a service this controller writes slices for, or `None` when it writes
/// none: no selector (slices are the user's), type ExternalName (kube issue 105986), or a
/// selector that does not parse (the API server's validation keeps those out).
///
/// An empty selector counts as none: it cannot survive the API server's storage round trip as
/// anything but an absent one, and kube only selects pods when the map is non-nil.
pub fn service_selector(service: &Service) -> Option<Selector> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let labels = spec.selector.as_ref().filter(|labels| !labels.is_empty())?;
    Selector::new(&LabelSelector {
        match_labels: Some(labels.clone()),
        ..LabelSelector::default()
    })
    .ok()
}

/// Whether `pod` belongs in any slice at all (`ShouldPodBeInEndpoints` with terminating pods
/// included, as the EndpointSlice controller calls it): not finished, and holding an IP.
pub fn should_be_in_endpoints(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return false;
    }
    status.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
        || status.pod_ips.as_ref().is_some_and(|ips| !ips.is_empty())
}

/// The pod's `Ready` condition is `True`.
pub fn is_pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|condition| condition.status == "True")
}

/// The address types a service's slices carry (`getAddressTypesForService`): its IP families;
/// without families (an object written before dual-stack), the family of its cluster IP, and
/// both for a headless service.
pub fn address_types(service: &Service) -> Vec<&'static str> {
    let spec = service.spec.as_ref();
    let mut types = Vec::new();
    for family in spec
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
    {
        let address_type = match family.as_str() {
            "IPv4" => ADDRESS_TYPE_IPV4,
            "IPv6" => ADDRESS_TYPE_IPV6,
            _ => continue,
        };
        if !types.contains(&address_type) {
            types.push(address_type);
        }
    }
    if !types.is_empty() {
        return types;
    }
    match spec.and_then(|s| s.cluster_ip.as_deref()) {
        Some(ip) if !ip.is_empty() && ip != "None" => {
            let v6 = parse_ip_sloppy(ip).is_some_and(|ip| ip.is_ipv6());
            vec![if v6 {
                ADDRESS_TYPE_IPV6
            } else {
                ADDRESS_TYPE_IPV4
            }]
        }
        _ => vec![ADDRESS_TYPE_IPV4, ADDRESS_TYPE_IPV6],
    }
}

/// Parses an IP as Go's `netutils.ParseIPSloppy` does (IPv4 octets may carry leading zeros)
/// and folds IPv4-mapped IPv6 addresses to IPv4, as Go's `net.IP` does.
fn parse_ip_sloppy(text: &str) -> Option<IpAddr> {
    let ip = text.parse::<IpAddr>().ok().or_else(|| {
        let octets: Vec<u8> = text
            .split('.')
            .map(|part| {
                let digits = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
                if digits {
                    part.parse::<u8>().ok()
                } else {
                    None
                }
            })
            .collect::<Option<_>>()?;
        let octets: [u8; 4] = octets.try_into().ok()?;
        Some(IpAddr::V4(Ipv4Addr::from(octets)))
    })?;
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    })
}

/// The pod's addresses of `address_type`, in canonical form (kube re-formats them so that an
/// irregular spelling compares equal).
fn endpoint_addresses(pod: &Pod, address_type: &str) -> Vec<String> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let mut ips: Vec<&str> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|ip| ip.ip.as_str())
        .collect();
    // kube reads podIPs only; the API server mirrors podIP into it, but a status written by a
    // client that sets podIP alone would otherwise leave a running pod out of every slice.
    if ips.is_empty() {
        ips.extend(status.pod_ip.as_deref());
    }
    let want_v6 = address_type == ADDRESS_TYPE_IPV6;
    ips.into_iter()
        .filter_map(parse_ip_sloppy)
        .filter(|ip| ip.is_ipv6() == want_v6 && (want_v6 || address_type == ADDRESS_TYPE_IPV4))
        .map(|ip| ip.to_string())
        .collect()
}

fn non_empty(value: Option<&String>) -> Option<String> {
    value.filter(|v| !v.is_empty()).cloned()
}

/// The endpoint of `pod` in a slice of `address_type` (`podToEndpoint`, without the zone).
///
/// `serving` is the pod's readiness; `ready` is that and not terminating, since consumers
/// written before `serving` existed read `ready` alone; `publishNotReadyAddresses` makes every
/// endpoint ready.
pub fn pod_to_endpoint(pod: &Pod, service: &Service, address_type: &str) -> Endpoint {
    let serving = is_pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let publish_not_ready = service
        .spec
        .as_ref()
        .and_then(|spec| spec.publish_not_ready_addresses)
        .unwrap_or(false);
    let ready = publish_not_ready || (serving && !terminating);
    let spec = pod.spec.as_ref();
    let hostname = spec
        .and_then(|spec| spec.hostname.as_ref())
        .filter(|hostname| !hostname.is_empty())
        .filter(|_| {
            spec.and_then(|spec| spec.subdomain.as_ref()) == service.metadata.name.as_ref()
                && pod.metadata.namespace == service.metadata.namespace
        })
        .cloned();
    Endpoint {
        addresses: endpoint_addresses(pod, address_type),
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname,
        node_name: non_empty(spec.and_then(|spec| spec.node_name.as_ref())),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".to_string()),
            namespace: non_empty(pod.metadata.namespace.as_ref()),
            name: non_empty(pod.metadata.name.as_ref()),
            uid: non_empty(pod.metadata.uid.as_ref()),
            ..ObjectReference::default()
        }),
        ..Endpoint::default()
    }
}

/// The ports `pod` serves for `service` (`getEndpointPorts`): each service port resolved
/// against the pod; a named target port the pod does not declare drops that port for this pod.
pub fn endpoint_ports(service: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let ports = service.spec.as_ref().and_then(|spec| spec.ports.as_ref());
    ports
        .into_iter()
        .flatten()
        .filter_map(|service_port| {
            let protocol = service_port
                .protocol
                .clone()
                .unwrap_or_else(|| DEFAULT_PROTOCOL.to_string());
            let number = find_port(pod, service_port, &protocol)?;
            Some(EndpointPort {
                name: Some(service_port.name.clone().unwrap_or_default()),
                port: Some(number),
                protocol: Some(protocol),
                app_protocol: service_port.app_protocol.clone(),
            })
        })
        .collect()
}

/// `FindPort`: a numeric target port as is; a name looked up among the containers' ports of
/// the same protocol, then among sidecars' (init containers with `restartPolicy: Always`).
fn find_port(pod: &Pod, service_port: &ServicePort, protocol: &str) -> Option<i32> {
    let name = match &service_port.target_port {
        // The API server defaults an absent (or zero) target port to the port.
        None => return Some(service_port.port),
        Some(IntOrString::Int(0)) => return Some(service_port.port),
        Some(IntOrString::Int(number)) => return Some(*number),
        Some(IntOrString::String(name)) if name.is_empty() => return Some(service_port.port),
        Some(IntOrString::String(name)) => name,
    };
    let spec = pod.spec.as_ref()?;
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|container| container.ports.iter().flatten())
        .find(|port| {
            port.name.as_ref() == Some(name)
                && port.protocol.as_deref().unwrap_or(DEFAULT_PROTOCOL) == protocol
        })
        .map(|port| port.container_port)
}

/// A set of ports as the reconciler groups slices by (kube's `PortMapKey`): order does not
/// matter, and the fields the API server defaults compare as defaulted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey(Vec<PortKeyEntry>);

type PortKeyEntry = (String, Option<i32>, String, Option<String>);

fn port_key_entry(port: &EndpointPort) -> PortKeyEntry {
    (
        port.name.clone().unwrap_or_default(),
        port.port,
        port.protocol
            .clone()
            .unwrap_or_else(|| DEFAULT_PROTOCOL.to_string()),
        port.app_protocol.clone(),
    )
}

pub fn port_key(ports: &[EndpointPort]) -> PortKey {
    let mut entries: Vec<PortKeyEntry> = ports.iter().map(port_key_entry).collect();
    entries.sort();
    PortKey(entries)
}

/// Puts `ports` in [`PortKey`] order, so that the slices of one port set list them alike.
pub fn sort_ports(ports: &mut [EndpointPort]) {
    ports.sort_by_key(port_key_entry);
}

/// What identifies an endpoint across syncs (kube's `endpointHash`): its addresses, hostname
/// and pod. Everything else (conditions, node) may change in place. The field order makes
/// new slices list their endpoints by pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndpointKey {
    namespace: String,
    name: String,
    addresses: Vec<String>,
    hostname: String,
}

pub fn endpoint_key(endpoint: &Endpoint) -> EndpointKey {
    let mut addresses = endpoint.addresses.clone();
    addresses.sort();
    let target = endpoint.target_ref.as_ref();
    EndpointKey {
        namespace: target.and_then(|t| t.namespace.clone()).unwrap_or_default(),
        name: target.and_then(|t| t.name.clone()).unwrap_or_default(),
        addresses,
        hostname: endpoint.hostname.clone().unwrap_or_default(),
    }
}

/// Endpoints of one [`EndpointKey`] that need no write (`EndpointsEqualBeyondHash`): same
/// node, zone, conditions and target (its resourceVersion aside).
pub fn equal_beyond_key(a: &Endpoint, b: &Endpoint) -> bool {
    let conditions = |e: &Endpoint| e.conditions.clone().unwrap_or_default();
    let target = |e: &Endpoint| {
        e.target_ref.clone().map(|mut t| {
            t.resource_version = None;
            t
        })
    };
    a.node_name == b.node_name
        && a.zone == b.zone
        && conditions(a) == conditions(b)
        && target(a) == target(b)
}

/// `v1.Service` as the controlling owner of its slices (`metav1.NewControllerRef`).
pub fn owner_reference(service: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".to_string(),
        kind: "Service".to_string(),
        name: service.metadata.name.clone().unwrap_or_default(),
        uid: service.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The slice names this service (this incarnation of it, by UID) as an owner.
pub fn owned_by(slice: &EndpointSlice, service: &Service) -> bool {
    let uid = service.metadata.uid.as_deref().unwrap_or_default();
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.kind == "Service" && o.api_version == "v1")
}

fn reserved_label(key: &str) -> bool {
    key == LABEL_SERVICE_NAME || key == LABEL_MANAGED_BY || key == LABEL_HEADLESS
}

/// A slice's labels for `service` and whether they differ from `current`
/// (`setEndpointSliceLabels`): the service's labels, then the reserved ones set by the
/// controller. Only the copied labels count as a difference — kube does not rewrite a slice
/// for the headless label alone.
pub fn slice_labels(
    current: Option<&BTreeMap<String, String>>,
    service: &Service,
) -> (BTreeMap<String, String>, bool) {
    let copied = |labels: Option<&BTreeMap<String, String>>| -> BTreeMap<String, String> {
        labels
            .into_iter()
            .flatten()
            .filter(|(key, _)| !reserved_label(key))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let mut labels = copied(service.metadata.labels.as_ref());
    let changed = copied(current) != labels;
    let cluster_ip = service
        .spec
        .as_ref()
        .and_then(|spec| spec.cluster_ip.as_deref());
    if !matches!(cluster_ip, Some(ip) if !ip.is_empty() && ip != "None") {
        labels.insert(LABEL_HEADLESS.to_string(), String::new());
    }
    labels.insert(
        LABEL_SERVICE_NAME.to_string(),
        service.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(LABEL_MANAGED_BY.to_string(), CONTROLLER_NAME.to_string());
    (labels, changed)
}

/// A new, empty slice of `service` for `ports` and `address_type` (`newEndpointSlice`).
pub fn new_endpoint_slice(
    service: &Service,
    ports: Vec<EndpointPort>,
    address_type: &str,
) -> EndpointSlice {
    let (labels, _) = slice_labels(None, service);
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!(
                "{}-",
                service.metadata.name.as_deref().unwrap_or_default()
            )),
            namespace: service.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![owner_reference(service)]),
            ..ObjectMeta::default()
        },
        address_type: address_type.to_string(),
        endpoints: Some(Vec::new()),
        ports: Some(ports),
    }
}

/// Whether `existing` already is the placeholder kube would create (`placeholderSliceCompare`):
/// of the metadata only namespace, labels and owners count; absent lists equal empty ones.
pub fn placeholder_equal(existing: &EndpointSlice, placeholder: &EndpointSlice) -> bool {
    fn list<T>(items: &Option<Vec<T>>) -> &[T] {
        items.as_deref().unwrap_or(&[])
    }
    let labels = |s: &EndpointSlice| s.metadata.labels.clone().unwrap_or_default();
    existing.metadata.namespace == placeholder.metadata.namespace
        && labels(existing) == labels(placeholder)
        && list(&existing.metadata.owner_references) == list(&placeholder.metadata.owner_references)
        && existing.address_type == placeholder.address_type
        && list(&existing.ports) == list(&placeholder.ports)
        && list(&existing.endpoints) == list(&placeholder.endpoints)
}

/// Why a pod update may change which services select it or what its endpoint says
/// (`podEndpointsChanged`), as `(endpoint changed, labels changed)`.
pub fn pod_endpoint_changes(old: &Pod, new: &Pod) -> (bool, bool) {
    let labels_changed = old.metadata.labels != new.metadata.labels;
    let spec = |p: &Pod| {
        p.spec
            .as_ref()
            .map(|s| (s.hostname.clone(), s.subdomain.clone(), s.node_name.clone()))
    };
    let ips = |p: &Pod| {
        p.status
            .as_ref()
            .map(|s| (s.pod_ip.clone(), s.pod_ips.clone()))
    };
    // Hostname and subdomain change the endpoint (its hostname); kube files them under
    // "labels changed", which skips the services that select the pod both before and after.
    let endpoint_changed = old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
        || is_pod_ready(old) != is_pod_ready(new)
        || should_be_in_endpoints(old) != should_be_in_endpoints(new)
        || ips(old) != ips(new)
        || spec(old) != spec(new);
    (endpoint_changed, labels_changed)
}
