//! Services (`printService`) and EndpointSlices (`printEndpointSlice`): where traffic goes in,
//! and the endpoints it goes to.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use super::columns::{Column, Printer, Row, AGE, NAME};
use super::duration::age;
use super::fields::{count, int_at, items_at, name, object_at, or_none, str_at};
use super::selector::format_labels;

pub(super) const SERVICES: Printer = Printer {
    columns: SERVICE_COLUMNS,
    row: service_row,
};

pub(super) const ENDPOINT_SLICES: Printer = Printer {
    columns: ENDPOINT_SLICE_COLUMNS,
    row: endpoint_slice_row,
};

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    Column::new("Type", "string", SERVICE_TYPE_DESCRIPTION),
    Column::new("Cluster-IP", "string", CLUSTER_IP_DESCRIPTION),
    Column::new(
        "External-IP",
        "string",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept \
         traffic for this service.  These IPs are not managed by Kubernetes.  The user is \
         responsible for ensuring that traffic arrives at a node with this IP.  A common example \
         is external load-balancers that are not part of the Kubernetes system.",
    ),
    Column::new(
        "Port(s)",
        "string",
        "The list of ports that are exposed by this service. More info: \
         https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies",
    ),
    AGE,
    Column::new(
        "Selector",
        "string",
        "Route service traffic to pods with label keys and values matching this selector. If \
         empty or not present, the service is assumed to have an external process managing its \
         endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, \
         and LoadBalancer. Ignored if type is ExternalName. More info: \
         https://kubernetes.io/docs/concepts/services-networking/service/",
    )
    .wide(),
];

/// `apiv1.ServiceSpec{}.SwaggerDoc()["type"]`.
const SERVICE_TYPE_DESCRIPTION: &str = "type determines how the Service is exposed. Defaults to \
    ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \
    \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. \
    Endpoints are determined by the selector or if that is not specified, by manual \
    construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no \
    virtual IP is allocated and the endpoints are published as a set of endpoints rather than a \
    virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes \
    to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an \
    external load-balancer (if supported in the current cloud) which routes to the same \
    endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified \
    externalName. Several other fields do not apply to ExternalName services. More info: \
    https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types";

/// `apiv1.ServiceSpec{}.SwaggerDoc()["clusterIP"]`.
const CLUSTER_IP_DESCRIPTION: &str = "clusterIP is the IP address of the service and is usually \
    assigned randomly. If an address is specified manually, is in-range (as per system \
    configuration), and is not in use, it will be allocated to the service; otherwise creation \
    of the service will fail. This field may not be changed through updates unless the type \
    field is also being changed to ExternalName (which requires this field to be blank) or the \
    type field is being changed from ExternalName (in which case this field may optionally be \
    specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid \
    IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is \
    useful when direct endpoint connections are preferred and proxying is not required.  Only \
    applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when \
    creating a Service of type ExternalName, creation will fail. This field will be wiped when \
    updating a Service to type ExternalName. More info: \
    https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";

const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    Column::new(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice. All addresses \
         in this slice must be the same type. This field is immutable after creation. The \
         following address types are currently supported: * IPv4: Represents an IPv4 Address. \
         * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name.",
    ),
    Column::new(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice. Each \
         port must have a unique name. When ports is empty, it indicates that there are no \
         defined ports. When a port is defined with a nil port value, it indicates \"all \
         ports\". Each slice may include a maximum of 100 ports.",
    ),
    Column::new(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum \
         of 1000 endpoints.",
    ),
    AGE,
];

fn service_row(service: &Value, now: Timestamp) -> Row {
    let kind = service_type(service);
    let ports = port_list(items_at(service, &["spec", "ports"]));
    Row::new(vec![
        name(service).into(),
        kind.into(),
        cluster_ip(service).into(),
        external_ip(service, kind).into(),
        or_none(&ports).into(),
        age(service, now).into(),
        format_labels(object_at(service, &["spec", "selector"])).into(),
    ])
}

/// `spec.type`, defaulted to ClusterIP as v1 defaulting does before the Go printer sees it.
fn service_type(service: &Value) -> &str {
    match str_at(service, &["spec", "type"]) {
        "" => "ClusterIP",
        kind => kind,
    }
}

/// The first of `clusterIPs` (`None` for a headless service). Older objects may carry only
/// `clusterIP`, which the dual-stack fields mirror, so that is the fallback.
fn cluster_ip(service: &Value) -> &str {
    if let Some(first) = items_at(service, &["spec", "clusterIPs"]).first() {
        return first.as_str().unwrap_or("");
    }
    match str_at(service, &["spec", "clusterIP"]) {
        "" => "<none>",
        ip => ip,
    }
}

/// `getServiceExternalIP`, wide as the server prints it: a load balancer's addresses are not
/// shortened to 16 characters.
fn external_ip(service: &Value, kind: &str) -> String {
    let external: Vec<&str> = items_at(service, &["spec", "externalIPs"])
        .iter()
        .map(|ip| ip.as_str().unwrap_or(""))
        .collect();
    match kind {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            let balancer = load_balancer_addresses(service);
            if !external.is_empty() {
                let all: Vec<&str> = balancer.into_iter().chain(external).collect();
                all.join(",")
            } else if !balancer.is_empty() {
                balancer.into_iter().collect::<Vec<_>>().join(",")
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => str_at(service, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// The load balancer's ingress points, each its IP or else its hostname, sorted and without
/// repeats (Go collects them in a string set).
fn load_balancer_addresses(service: &Value) -> BTreeSet<&str> {
    items_at(service, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|ingress| {
            [str_at(ingress, &["ip"]), str_at(ingress, &["hostname"])]
                .into_iter()
                .find(|address| !address.is_empty())
        })
        .collect()
}

/// `makePortString`: `port/protocol`, or `port:nodePort/protocol` when a node port is
/// allocated. The protocol defaults to TCP, as v1 defaulting sets it.
fn port_list(ports: &[Value]) -> String {
    let pieces: Vec<String> = ports
        .iter()
        .map(|port| {
            let number = int_at(port, &["port"]).unwrap_or(0);
            let protocol = match str_at(port, &["protocol"]) {
                "" => "TCP",
                protocol => protocol,
            };
            match int_at(port, &["nodePort"]).unwrap_or(0) {
                node_port if node_port > 0 => format!("{number}:{node_port}/{protocol}"),
                _ => format!("{number}/{protocol}"),
            }
        })
        .collect();
    pieces.join(",")
}

fn endpoint_slice_row(slice: &Value, now: Timestamp) -> Row {
    Row::new(vec![
        name(slice).into(),
        str_at(slice, &["addressType"]).into(),
        discovery_ports(items_at(slice, &["ports"])).into(),
        discovery_endpoints(items_at(slice, &["endpoints"])).into(),
        age(slice, now).into(),
    ])
}

/// How many entries the PORTS and ENDPOINTS cells list before summarising the rest.
const LIST_LIMIT: usize = 3;

/// `formatDiscoveryPorts`: each port's number, else its name. (Go's `*` for a port with
/// neither cannot show: discovery defaulting sets an unset name to "".)
fn discovery_ports(ports: &[Value]) -> String {
    let shown: Vec<String> = ports
        .iter()
        .take(LIST_LIMIT)
        .map(|port| match int_at(port, &["port"]) {
            Some(number) => number.to_string(),
            None => str_at(port, &["name"]).to_string(),
        })
        .collect();
    list_with_more(&shown, ports.len())
}

/// `formatDiscoveryEndpoints`: the addresses of all endpoints.
fn discovery_endpoints(endpoints: &[Value]) -> String {
    let addresses: Vec<&str> = endpoints
        .iter()
        .flat_map(|endpoint| items_at(endpoint, &["addresses"]))
        .map(|address| address.as_str().unwrap_or(""))
        .collect();
    let shown: Vec<String> = addresses
        .iter()
        .take(LIST_LIMIT)
        .map(|address| address.to_string())
        .collect();
    list_with_more(&shown, addresses.len())
}

/// `listWithMoreString`: the first entries, `+ N more...` for the rest, `<unset>` for none.
fn list_with_more(shown: &[String], total: usize) -> String {
    let listed = shown.join(",");
    if total > LIST_LIMIT {
        return format!("{listed} + {} more...", count(total - LIST_LIMIT));
    }
    if listed.is_empty() {
        return "<unset>".to_string();
    }
    listed
}
