//! keel's Kubernetes API server: the REST API, watch, discovery and OpenAPI of the kinds keel
//! runs, over an etcd v3 store (keel's own raft store or an external etcd), for the `kubectl`
//! and client libraries platform engineers already have.
//!
//! # Layout
//! - [`resources`]: the served kinds, one table everything reads.
//! - [`request`]: path, method and query → what is asked; [`reply`]: representations.
//! - [`rest`]: the verbs; [`cache`]: the watch cache lists and watches are served from.
//! - [`objects`], [`defaults`], [`duplicates`], [`validation`]: bodies into objects,
//!   server-owned metadata, the specs Kubernetes would refuse; [`priority`]: the Priority
//!   admission plugin; [`service_account_admission`]: the ServiceAccount admission plugin;
//!   [`limit_ranger`]: the LimitRanger admission plugin.
//! - [`conversion`]: resources served in one version and stored in another's form
//!   (events.k8s.io/v1 Events are core/v1 Events).
//! - [`storage`]: the etcd v3 seam; [`status`]: errors as `metav1.Status`.
//! - [`selector`], [`table`], [`discovery`], [`openapi`], [`metrics`], [`server`].

pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod cache;
pub mod certificates;
pub mod conversion;
pub mod defaults;
pub mod discovery;
pub mod duplicates;
pub mod limit_ranger;
pub mod metrics;
pub mod node_ports;
pub mod objects;
pub mod openapi;
pub mod pod_security;
pub mod priority;
pub mod protobuf;
pub mod quota;
pub mod reply;
pub mod request;
pub mod resources;
pub mod rest;
pub mod selector;
pub mod server;
pub mod service_account_admission;
pub mod service_ips;
pub mod service_update;
pub mod status;
pub mod storage;
pub mod table;
pub mod validation;

/// The served kinds as the OpenAPI builder wants them.
pub fn openapi_resources() -> Vec<openapi::OpenApiResource> {
    resources::RESOURCES
        .iter()
        .map(|r| openapi::OpenApiResource {
            group: r.group,
            version: r.version,
            resource: r.resource,
            kind: r.kind,
            namespaced: r.namespaced,
            subresources: r.subresources,
            schema: r.schema,
        })
        .collect()
}
