//! The kinds the garbage collector watches, and how an owner reference names one of them.
//!
//! kube's collector finds its kinds by discovery (every resource that supports `delete`, `list`
//! and `watch`, events aside) and re-runs discovery to pick up new ones. keel serves a fixed set
//! of built-in kinds and no custom resources, so the set is fixed here too: [`served`] lists
//! every kind keel stores except events (which kube ignores as well). A kind named by an owner
//! reference and missing from the list is an error retried with backoff, as kube retries a
//! reference its REST mapper does not know yet.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, Node, Pod, ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::ApiResource;

/// A kind the collector watches: where its objects are served, and whether they live in a
/// namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kind {
    pub resource: ApiResource,
    pub namespaced: bool,
}

impl Kind {
    /// A namespaced built-in kind.
    pub fn namespaced<K>() -> Kind
    where
        K: kube::Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        Kind {
            resource: ApiResource::erase::<K>(&()),
            namespaced: true,
        }
    }

    /// A cluster-scoped built-in kind.
    pub fn cluster<K>() -> Kind
    where
        K: kube::Resource<DynamicType = (), Scope = ClusterResourceScope>,
    {
        Kind {
            resource: ApiResource::erase::<K>(&()),
            namespaced: false,
        }
    }

    /// Whether `api_version` and `kind` (an owner reference's) name this kind. The version is
    /// not compared: an object is the same object in every version of its group, and keel
    /// serves one version per group.
    pub fn is(&self, api_version: &str, kind: &str) -> bool {
        self.resource.kind == kind && self.resource.group == group_of(api_version)
    }
}

/// The group of an `apiVersion`: `""` for `v1`, `apps` for `apps/v1`.
pub fn group_of(api_version: &str) -> &str {
    api_version
        .split_once('/')
        .map_or("", |(group, _version)| group)
}

/// Every kind keel serves that can be an owner or a dependent (all but events).
pub fn served() -> Vec<Kind> {
    vec![
        Kind::namespaced::<Pod>(),
        Kind::namespaced::<ReplicaSet>(),
        Kind::namespaced::<Deployment>(),
        Kind::namespaced::<Service>(),
        Kind::namespaced::<EndpointSlice>(),
        Kind::namespaced::<ConfigMap>(),
        Kind::namespaced::<Secret>(),
        Kind::namespaced::<ServiceAccount>(),
        Kind::namespaced::<ResourceQuota>(),
        Kind::namespaced::<LimitRange>(),
        Kind::namespaced::<Lease>(),
        Kind::namespaced::<Role>(),
        Kind::namespaced::<RoleBinding>(),
        Kind::cluster::<Namespace>(),
        Kind::cluster::<Node>(),
        Kind::cluster::<PriorityClass>(),
        Kind::cluster::<ClusterRole>(),
        Kind::cluster::<ClusterRoleBinding>(),
    ]
}

/// The kind among `kinds` that `api_version`/`kind` names.
pub fn find<'a>(kinds: &'a [Kind], api_version: &str, kind: &str) -> Option<&'a Kind> {
    kinds
        .iter()
        .find(|candidate| candidate.is(api_version, kind))
}
