//! `discovery.k8s.io/v1` `EndpointSlice` → [`EndpointSlice`]: address type, endpoints with
//! their conditions, ports.

use k8s_openapi::api::discovery::v1 as wire;

use super::{enumerated, meta, port, protocol, ConvertError, Result};
use crate::endpoint_slice::{
    AddressType, Endpoint, EndpointConditions, EndpointPort, EndpointSlice,
};

impl TryFrom<&wire::EndpointSlice> for EndpointSlice {
    type Error = ConvertError;

    fn try_from(wire: &wire::EndpointSlice) -> Result<Self> {
        Ok(EndpointSlice {
            metadata: meta(&wire.metadata),
            // Required by Kubernetes; k8s-openapi reads an absent one as "". keel's default
            // (IPv4) is what a slice that names none means to it.
            address_type: enumerated(
                "addressType",
                Some(wire.address_type.as_str()),
                AddressType::IPv4,
                &[
                    ("IPv4", AddressType::IPv4),
                    ("IPv6", AddressType::IPv6),
                    ("FQDN", AddressType::Fqdn),
                ],
            )?,
            endpoints: wire
                .endpoints
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, e)| endpoint(&format!("endpoints[{i}]"), e))
                .collect::<Result<_>>()?,
            ports: wire
                .ports
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, p)| endpoint_port(&format!("ports[{i}]"), p))
                .collect::<Result<_>>()?,
        })
    }
}

fn endpoint(at: &str, wire: &wire::Endpoint) -> Result<Endpoint> {
    let conditions = wire.conditions.clone().unwrap_or_default();
    Ok(Endpoint {
        addresses: wire
            .addresses
            .iter()
            .enumerate()
            .map(|(i, address)| {
                address.parse().map_err(|_| {
                    ConvertError::new(
                        format!("{at}.addresses[{i}]"),
                        format!("{address:?} is not an IPv4 address"),
                    )
                })
            })
            .collect::<Result<_>>()?,
        conditions: EndpointConditions {
            ready: conditions.ready,
            serving: conditions.serving,
            terminating: conditions.terminating,
        },
    })
}

fn endpoint_port(at: &str, wire: &wire::EndpointPort) -> Result<EndpointPort> {
    let field = format!("{at}.port");
    Ok(EndpointPort {
        name: wire.name.clone().unwrap_or_default(),
        // Kubernetes allows an absent port ("all ports"); keel's model forwards to a port, so
        // it needs one.
        port: port(
            &field,
            wire.port.ok_or_else(|| ConvertError::required(&field))?,
        )?,
        protocol: protocol(&format!("{at}.protocol"), wire.protocol.as_deref())?,
    })
}
