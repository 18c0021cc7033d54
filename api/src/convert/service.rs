//! `v1` `Service` → [`Service`]: the virtual IP, ports, type, session affinity and selector.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1 as wire;

use super::{enumerated, int_or_string, meta, non_negative, port, protocol, ConvertError, Result};
use crate::service::{
    ClientIpConfig, Service, ServicePort, ServiceSpec, ServiceType, SessionAffinity,
    SessionAffinityConfig,
};

impl TryFrom<&wire::Service> for Service {
    type Error = ConvertError;

    fn try_from(wire: &wire::Service) -> Result<Self> {
        let empty = wire::ServiceSpec::default();
        let spec = wire.spec.as_ref().unwrap_or(&empty);
        Ok(Service {
            metadata: meta(&wire.metadata),
            spec: ServiceSpec {
                cluster_ip: cluster_ip(spec.cluster_ip.as_deref())?,
                ports: spec
                    .ports
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(i, p)| service_port(&format!("spec.ports[{i}]"), p))
                    .collect::<Result<_>>()?,
                service_type: enumerated(
                    "spec.type",
                    spec.type_.as_deref(),
                    ServiceType::ClusterIP,
                    &[
                        ("ClusterIP", ServiceType::ClusterIP),
                        ("NodePort", ServiceType::NodePort),
                        ("LoadBalancer", ServiceType::LoadBalancer),
                    ],
                )?,
                session_affinity: enumerated(
                    "spec.sessionAffinity",
                    spec.session_affinity.as_deref(),
                    SessionAffinity::None,
                    &[
                        ("None", SessionAffinity::None),
                        ("ClientIP", SessionAffinity::ClientIp),
                    ],
                )?,
                session_affinity_config: spec
                    .session_affinity_config
                    .as_ref()
                    .map(affinity_config)
                    .transpose()?,
                selector: super::map(&spec.selector),
            },
        })
    }
}

/// `clusterIP`: an IPv4 address; absent, empty or `None` (headless) is no virtual IP.
fn cluster_ip(value: Option<&str>) -> Result<Option<Ipv4Addr>> {
    match value.unwrap_or_default() {
        "" | "None" => Ok(None),
        text => text.parse().map(Some).map_err(|_| {
            ConvertError::new(
                "spec.clusterIP",
                format!("{text:?} is not an IPv4 address or \"None\""),
            )
        }),
    }
}

fn service_port(at: &str, wire: &wire::ServicePort) -> Result<ServicePort> {
    Ok(ServicePort {
        name: wire.name.clone().unwrap_or_default(),
        port: port(&format!("{at}.port"), wire.port)?,
        target_port: wire
            .target_port
            .as_ref()
            .map(|t| int_or_string(&format!("{at}.targetPort"), t))
            .transpose()?,
        protocol: protocol(&format!("{at}.protocol"), wire.protocol.as_deref())?,
        node_port: wire
            .node_port
            .map(|p| port(&format!("{at}.nodePort"), p))
            .transpose()?,
    })
}

fn affinity_config(wire: &wire::SessionAffinityConfig) -> Result<SessionAffinityConfig> {
    Ok(SessionAffinityConfig {
        client_ip: wire
            .client_ip
            .as_ref()
            .map(|c| {
                Ok(ClientIpConfig {
                    timeout_seconds: c
                        .timeout_seconds
                        .map(|t| {
                            non_negative("spec.sessionAffinityConfig.clientIP.timeoutSeconds", t)
                        })
                        .transpose()?,
                })
            })
            .transpose()?,
    })
}
