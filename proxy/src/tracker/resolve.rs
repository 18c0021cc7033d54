//! One Service's share of the table: the frontends it asks for and the backends behind each,
//! from the slices of its name. Both the incremental tracker and [`super::build_table`] ask
//! this, so the two cannot disagree on what a Service means.

use std::net::{Ipv4Addr, SocketAddrV4};

use keel_api::{EndpointConditions, EndpointSlice, Protocol, Service, ServiceType};

use super::{Ipv4Cidr, Skipped};
use crate::service_table::{Frontend, L4Protocol, ServicePortEntry};

/// What `service` asks of the table, in port order (a NodePort port asks twice: its ClusterIP
/// frontend, then its node-port frontend); empty for a headless service; `Err` when its
/// clusterIP is outside the service CIDR. Which claim wins a frontend two of them ask for is
/// the caller's rule.
pub(super) fn service_claims(
    service_cidr: Ipv4Cidr,
    service: &Service,
    slices: &[&EndpointSlice],
) -> Result<Vec<(Frontend, ServicePortEntry)>, Skipped> {
    let (namespace, name) = (service.metadata.namespace(), service.metadata.name.as_str());
    let Some(vip) = service.spec.cluster_ip else {
        return Ok(Vec::new()); // headless: nothing to translate
    };
    if !service_cidr.contains(vip) {
        return Err(Skipped {
            object: format!("Service {namespace}/{name}"),
            reason: format!("clusterIP {vip} is outside the service CIDR {service_cidr}"),
        });
    }
    let mut claims = Vec::with_capacity(service.spec.ports.len());
    for port in &service.spec.ports {
        let protocol = match port.protocol {
            Protocol::Tcp => L4Protocol::Tcp,
            Protocol::Udp => L4Protocol::Udp,
            Protocol::Sctp => continue, // rejected by the manifest parser already
        };
        let entry = ServicePortEntry {
            name: format!("{namespace}/{name}:{}", port.name),
            backends: ready_backends(slices, &port.name, port.protocol),
            affinity_timeout: service.spec.affinity_timeout(),
        };
        let cluster_ip = Frontend {
            vip,
            port: port.port.get(),
            protocol,
        };
        // A NodePort answers on every node address: its frontend has the wildcard address,
        // which the datapath matches for destinations that are the node's own.
        let node_port = port
            .node_port
            .filter(|_| service.spec.service_type != ServiceType::ClusterIP)
            .map(|p| Frontend {
                vip: Ipv4Addr::UNSPECIFIED,
                port: p.get(),
                protocol,
            });
        match node_port {
            Some(node_port) => {
                claims.push((cluster_ip, entry.clone()));
                claims.push((node_port, entry));
            }
            None => claims.push((cluster_ip, entry)),
        }
    }
    Ok(claims)
}

/// Ready addresses of `slices` at the slice port named `port_name` with `protocol`.
fn ready_backends(
    slices: &[&EndpointSlice],
    port_name: &str,
    protocol: Protocol,
) -> Vec<SocketAddrV4> {
    let ready = backends_where(slices, port_name, protocol, |c| c.is_ready());
    if !ready.is_empty() {
        return ready;
    }
    // Like kube-proxy (KEP-1669): with no ready endpoint left, endpoints that are shutting down
    // but still serving take new connections, rather than refusing them during a rollout.
    backends_where(slices, port_name, protocol, |c| {
        c.is_serving() && c.is_terminating()
    })
}

/// Addresses of `slices` at the slice port named `port_name` with `protocol`, for endpoints
/// whose conditions pass `wanted`, sorted and without duplicates.
fn backends_where(
    slices: &[&EndpointSlice],
    port_name: &str,
    protocol: Protocol,
    wanted: impl Fn(&EndpointConditions) -> bool,
) -> Vec<SocketAddrV4> {
    let mut backends = Vec::new();
    for slice in slices {
        let Some(port) = slice
            .ports
            .iter()
            .find(|p| p.name == port_name && p.protocol == protocol)
        else {
            continue;
        };
        for endpoint in slice.endpoints.iter().filter(|e| wanted(&e.conditions)) {
            for addr in &endpoint.addresses {
                backends.push(SocketAddrV4::new(*addr, port.port.get()));
            }
        }
    }
    backends.sort_unstable();
    backends.dedup();
    backends
}
