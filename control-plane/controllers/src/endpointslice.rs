//! The EndpointSlice controller: kube-controller-manager's `endpointslice-controller.k8s.io`.
//!
//! For every Service with a selector it keeps `discovery.k8s.io/v1` EndpointSlices that list
//! the selected pods' addresses, their readiness and the ports they serve, as kube's controller
//! does (`pkg/controller/endpointslice` and `staging/src/k8s.io/endpointslice`):
//!
//! - endpoints are grouped by address type (the service's IP families) and by the *set of
//!   ports* a pod resolves (a named `targetPort` can map to different numbers on different
//!   pods), at most `maxEndpointsPerSlice` (100) to a slice;
//! - writes are kept to a minimum with kube's reconciler: a slice is rewritten only when one
//!   of its endpoints changed or left, new endpoints go first into slices being rewritten
//!   anyway, then into the unchanged slice they fill best, and only then into new slices;
//!   a slice that would be deleted while another is created is rewritten in place instead;
//! - a service that selects nothing keeps one empty placeholder slice per address type;
//! - a sync whose writes fail records kube's `FailedToUpdateEndpointSlices` Warning on the
//!   Service.
//!
//! # Layout
//! - `endpoints`: one pod as one endpoint, its ports, the slice labels
//!   (kube's `utils.go`);
//! - `reconcile`: the pure reconciler, `(service, pods, existing slices) → Plan`;
//! - `tracker`: the writes this controller expects to see back in its slice cache;
//! - [`run`]: the kube-rs loop — reflector stores, a work queue of service keys,
//!   workers that carry plans out.
//!
//! Not ported: topology hints and `trafficDistribution` (no hints are written), endpoint
//! `zone` (it needs the Node informer), the `last-change-trigger-time` annotation, and the
//! per-sync batching delay (`--endpoint-updates-batch-period`, 0 by default in kube).

mod endpoints;
pub mod metrics;
mod reconcile;
pub mod run;
mod tracker;

#[cfg(test)]
mod churn_tests;
#[cfg(test)]
mod endpoints_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

pub use endpoints::{address_types, endpoint_ports, pod_to_endpoint, service_selector};
pub use metrics::Metrics;
pub use reconcile::{reconcile, Plan};
pub use run::{start, Options, COMPONENT, DEFAULT_WORKERS, QUEUE_NAME};

/// The label naming the Service a slice belongs to (`discovery.LabelServiceName`).
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming the controller that manages a slice (`discovery.LabelManagedBy`).
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's name, the value of [`LABEL_MANAGED_BY`] on the slices it owns.
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// Set (empty) on the slices of a headless Service (`v1.IsHeadlessService`).
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// kube's default `--max-endpoints-per-slice`.
pub const DEFAULT_MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// `discovery.AddressTypeIPv4`.
pub const ADDRESS_TYPE_IPV4: &str = "IPv4";
/// `discovery.AddressTypeIPv6`.
pub const ADDRESS_TYPE_IPV6: &str = "IPv6";
