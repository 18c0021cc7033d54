//! `discovery.k8s.io/v1` `EndpointSlice`: the addresses behind a service, and their state.

use std::{net::Ipv4Addr, num::NonZeroU16};

use crate::{meta::ObjectMeta, service::Protocol};

/// The label that ties a slice to its service (same namespace).
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSlice {
    pub metadata: ObjectMeta,
    pub address_type: AddressType,
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<EndpointPort>,
}

impl EndpointSlice {
    /// The service this slice belongs to, from its `kubernetes.io/service-name` label.
    pub fn service_name(&self) -> Option<&str> {
        self.metadata
            .labels
            .get(SERVICE_NAME_LABEL)
            .map(String::as_str)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AddressType {
    #[default]
    IPv4,
    IPv6,
    Fqdn,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub addresses: Vec<Ipv4Addr>,
    pub conditions: EndpointConditions,
}

/// Kubernetes semantics: an absent `ready` or `serving` means unknown, and consumers treat
/// unknown as true; an absent `terminating` means false.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointConditions {
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
}

impl EndpointConditions {
    pub fn is_ready(&self) -> bool {
        self.ready.unwrap_or(true)
    }

    pub fn is_serving(&self) -> bool {
        self.serving.unwrap_or(true)
    }

    pub fn is_terminating(&self) -> bool {
        self.terminating.unwrap_or(false)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndpointPort {
    pub name: String,
    pub port: NonZeroU16,
    pub protocol: Protocol,
}
