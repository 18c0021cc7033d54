//! keel's API objects. Kubernetes objects are read as the `k8s-openapi` wire types (the ones
//! kube-rs uses: every field kept, see [`WireObject`]); keel's model of what it acts on
//! (the types below) is derived from them, one conversion per kind, and validated with
//! Kubernetes' rules ([`validation`]).
//!
//! # Layout
//! - [`meta`]: `apiVersion`/`kind` and `metadata`, common to every object.
//! - [`service`]: `v1` `Service`.
//! - [`endpoint_slice`]: `discovery.k8s.io/v1` `EndpointSlice`.
//! - [`label_selector`]: `metav1.LabelSelector` as a matcher.
//! - [`pod`]: `v1` `Pod`, spec and status; [`volume`]: its `emptyDir` and `hostPath` volumes;
//!   [`quantity`]: `500m`, `64Mi`.
//! - [`convert`]: the wire types → the model, one conversion per kind.
//! - [`manifest`]: multi-document YAML → [`Object`]s, with errors that name line and field.
//!
//! Types accept (and ignore) fields keel does not use, as `kubectl apply` would, but a field
//! keel does use is checked by its type: an IP that does not parse, a port out of range or an
//! unknown protocol is an error at that line, never a silent default.

pub mod convert;
pub mod endpoint_slice;
pub mod label_selector;
pub mod manifest;
pub mod meta;
pub mod pod;
pub mod quantity;
pub mod service;
pub mod validation;
pub mod volume;

pub use endpoint_slice::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
pub use manifest::{
    model_of, parse_manifests, parse_manifests_full, parse_manifests_with_warnings, ManifestError,
    Object, Warning, WireObject,
};
pub use meta::{ObjectMeta, TypeMeta};
pub use pod::{
    Container, ContainerState, ContainerStatus, Pod, PodPhase, PodSpec, PodStatus, RestartPolicy,
};
pub use quantity::Quantity;
pub use service::{
    IntOrString, Protocol, Service, ServicePort, ServiceSpec, ServiceType, SessionAffinity,
};
