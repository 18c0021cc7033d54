//! keel's API objects: Kubernetes-shaped types for the objects keel understands, and the
//! parser that reads them from ordinary multi-document YAML.
//!
//! # Layout
//! - [`meta`]: `apiVersion`/`kind` and `metadata`, common to every object.
//! - [`service`]: `v1` `Service`.
//! - [`endpoint_slice`]: `discovery.k8s.io/v1` `EndpointSlice`.
//! - [`manifest`]: multi-document YAML → [`Object`]s, with errors that name line and field.
//!
//! Types accept (and ignore) fields keel does not use, as `kubectl apply` would, but a field
//! keel does use is checked by its type: an IP that does not parse, a port out of range or an
//! unknown protocol is an error at that line, never a silent default.

pub mod endpoint_slice;
pub mod manifest;
pub mod meta;
pub mod service;

pub use endpoint_slice::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
pub use manifest::{parse_manifests, ManifestError, Object};
pub use meta::{ObjectMeta, TypeMeta};
pub use service::{
    IntOrString, Protocol, Service, ServicePort, ServiceSpec, ServiceType, SessionAffinity,
};
