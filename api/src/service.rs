//! `v1` `Service`: a stable virtual IP and ports in front of a set of endpoints.

use std::{fmt, net::Ipv4Addr, num::NonZeroU16};

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub metadata: ObjectMeta,
    pub spec: ServiceSpec,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The virtual IP. `None` (absent, or the string `"None"` of a headless service) means
    /// there is nothing to translate.
    pub cluster_ip: Option<Ipv4Addr>,
    pub ports: Vec<ServicePort>,
    pub service_type: ServiceType,
    /// `ClientIP`: a client keeps reaching the same backend for
    /// `sessionAffinityConfig.clientIP.timeoutSeconds` after its last connection.
    pub session_affinity: SessionAffinity,
    pub session_affinity_config: Option<SessionAffinityConfig>,
    /// The labels of the pods behind this service. A node keeps an EndpointSlice of its own
    /// pods for every service with a selector (EndpointSlices in the manifests work too).
    pub selector: std::collections::BTreeMap<String, String>,
}

impl ServiceSpec {
    /// The affinity timeout in seconds when `sessionAffinity: ClientIP`, defaulted as in
    /// Kubernetes (10800 s, three hours).
    pub fn affinity_timeout(&self) -> Option<u32> {
        (self.session_affinity == SessionAffinity::ClientIp).then(|| {
            self.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS)
        })
    }
}

/// Kubernetes' default `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10_800;
/// Kubernetes' maximum (one day).
pub const MAX_AFFINITY_TIMEOUT_SECONDS: u32 = 86_400;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionAffinity {
    #[default]
    None,
    ClientIp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionAffinityConfig {
    pub client_ip: Option<ClientIpConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIpConfig {
    pub timeout_seconds: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// Required when a service has several ports; matches `EndpointSlice.ports[].name`.
    pub name: String,
    pub port: NonZeroU16,
    /// Where backends listen. Kept for completeness: like kube-proxy, keel takes the backend
    /// port from the EndpointSlice port of the same name, which the endpoints controller
    /// resolved from this field.
    pub target_port: Option<IntOrString>,
    pub protocol: Protocol,
    /// The port this service also answers on at every node address (`type: NodePort`).
    pub node_port: Option<NonZeroU16>,
}

/// The default NodePort range of Kubernetes (`--service-node-port-range`).
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30_000..=32_767;

/// `spec.type`. `LoadBalancer` is a NodePort service as far as a node is concerned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// A port given by number or by the name of a container port.
/// `Deserialize` only because keel's Pod model (probes) is read back from the runtime's
/// `pod.json`; Kubernetes objects are converted (module `convert`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(NonZeroU16),
    String(String),
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(n) => write!(f, "{n}"),
            IntOrString::String(name) => f.write_str(name),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}
