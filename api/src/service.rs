//! `v1` `Service`: a stable virtual IP and ports in front of a set of endpoints.

use std::{fmt, net::Ipv4Addr, num::NonZeroU16};

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub metadata: ObjectMeta,
    pub spec: ServiceSpec,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// The virtual IP. `None` (absent, or the string `"None"` of a headless service) means
    /// there is nothing to translate.
    #[serde(default, rename = "clusterIP", with = "cluster_ip")]
    pub cluster_ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    #[serde(default, rename = "type")]
    pub service_type: ServiceType,
    /// `ClientIP`: a client keeps reaching the same backend for
    /// `sessionAffinityConfig.clientIP.timeoutSeconds` after its last connection.
    #[serde(default)]
    pub session_affinity: SessionAffinity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity_config: Option<SessionAffinityConfig>,
    /// The labels of the pods behind this service. A node keeps an EndpointSlice of its own
    /// pods for every service with a selector (EndpointSlices in the manifests work too).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
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

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionAffinity {
    #[default]
    None,
    #[serde(rename = "ClientIP")]
    ClientIp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionAffinityConfig {
    #[serde(default, rename = "clientIP", skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<ClientIpConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientIpConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Required when a service has several ports; matches `EndpointSlice.ports[].name`.
    #[serde(default)]
    pub name: String,
    pub port: NonZeroU16,
    /// Where backends listen. Kept for completeness: like kube-proxy, keel takes the backend
    /// port from the EndpointSlice port of the same name, which the endpoints controller
    /// resolved from this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    #[serde(default)]
    pub protocol: Protocol,
    /// The port this service also answers on at every node address (`type: NodePort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<NonZeroU16>,
}

/// The default NodePort range of Kubernetes (`--service-node-port-range`).
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30_000..=32_767;

/// `spec.type`. `LoadBalancer` is a NodePort service as far as a node is concerned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// A port given by number or by the name of a container port.
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

/// `clusterIP`: an IPv4 address, or `None`/`""` for a headless service.
///
/// The check runs inside a visitor, while the parser still points at the scalar, so that the
/// error carries the field's own path and line.
mod cluster_ip {
    use std::{fmt, net::Ipv4Addr};

    use serde::{de, Deserializer, Serializer};

    struct ClusterIpVisitor;

    impl<'de> de::Visitor<'de> for ClusterIpVisitor {
        type Value = Option<Ipv4Addr>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an IPv4 address or \"None\"")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            if text.is_empty() || text == "None" {
                return Ok(None);
            }
            text.parse()
                .map(Some)
                .map_err(|_| E::custom(format!("{text:?} is not an IPv4 address or \"None\"")))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv4Addr>, D::Error> {
        d.deserialize_any(ClusterIpVisitor)
    }

    pub fn serialize<S: Serializer>(ip: &Option<Ipv4Addr>, s: S) -> Result<S::Ok, S::Error> {
        match ip {
            Some(ip) => s.collect_str(ip),
            None => s.serialize_str("None"),
        }
    }
}
