//! The kinds keel serves: one static table that discovery, routing, storage keys, decoding,
//! OpenAPI and printing all read, so that adding a kind is one entry here.

use keel_api::validation::NameRule;

use crate::conversion::StoredAs;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// An object decoded through its `k8s-openapi` type and encoded again: only fields of the
/// Kubernetes schema survive, each with its schema type; `unknown` lists the JSON paths of
/// fields the schema does not have (for fieldValidation).
#[derive(Debug)]
pub struct Decoded {
    pub object: Value,
    pub unknown: Vec<String>,
}

/// A body that does not fit the kind's schema: the JSON path of the field and serde's words.
#[derive(Debug)]
pub struct DecodeError {
    pub path: String,
    pub message: String,
}

/// How a served resource is named, stored and decoded.
pub struct ResourceInfo {
    /// `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    /// The plural, as in the URL: `pods`.
    pub resource: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Subresources served beside the resource (`status`, `scale`, …).
    pub subresources: &'static [&'static str],
    pub name_rule: NameRule,
    /// Where objects live in the store, as kube-apiserver lays out etcd: `/registry/pods/`.
    pub storage_prefix: &'static str,
    /// `spec` changes bump `metadata.generation` (kinds with a spec the user writes).
    pub has_generation: bool,
    /// Set when the objects are another resource's, kept in its form (under its
    /// `storage_prefix`, which this one repeats) and converted on every path; None for a
    /// resource stored in its own form.
    pub stored_as: Option<&'static StoredAs>,
    pub decode: fn(Value) -> Result<Decoded, DecodeError>,
    /// The kind's OpenAPI schema (from `k8s-openapi`'s schemars support).
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
}

impl std::fmt::Debug for ResourceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.qualified())
    }
}

impl ResourceInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `deployments.apps`, as kube-apiserver names a resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.contains(&name)
    }

    /// The store key of one object; `namespace` is ignored for cluster-scoped kinds.
    pub fn key(&self, namespace: &str, name: &str) -> String {
        if self.namespaced {
            format!("{}{}/{}", self.storage_prefix, namespace, name)
        } else {
            format!("{}{}", self.storage_prefix, name)
        }
    }

    /// `object` (in this resource's version) in the form it is stored in.
    pub fn to_storage<'v>(&self, object: &'v Value) -> std::borrow::Cow<'v, Value> {
        match self.stored_as {
            Some(stored) => std::borrow::Cow::Owned((stored.to_storage)(object)),
            None => std::borrow::Cow::Borrowed(object),
        }
    }

    /// A stored object in this resource's version.
    pub fn from_storage(&self, stored: Value) -> Value {
        match self.stored_as {
            Some(as_) => (as_.from_storage)(&stored),
            None => stored,
        }
    }

    /// The resource whose form the objects are stored in (itself unless `stored_as`): the
    /// one watch cache both read.
    pub fn storage_resource(&'static self) -> &'static ResourceInfo {
        self.stored_as
            .and_then(|s| lookup(s.group, "v1", s.resource))
            .unwrap_or(self)
    }

    /// The store prefix a list covers: one namespace, or every object of the kind.
    pub fn list_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{}/", self.storage_prefix, ns),
            _ => self.storage_prefix.to_owned(),
        }
    }
}

/// A path as Kubernetes prints field paths: `spec.containers[0].name`.
fn kube_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", kube_path(parent)),
        Path::Map { parent, key } => {
            let head = kube_path(parent);
            if head.is_empty() {
                key.clone()
            } else {
                format!("{head}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => kube_path(parent),
    }
}

fn decode_as<T: DeserializeOwned + Serialize>(value: Value) -> Result<Decoded, DecodeError> {
    let mut unknown = Vec::new();
    let mut note = |path: serde_ignored::Path<'_>| unknown.push(kube_path(&path));
    let ignored = serde_ignored::Deserializer::new(value, &mut note);
    let typed: T = serde_path_to_error::deserialize(ignored).map_err(|e| DecodeError {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })?;
    let object = serde_json::to_value(&typed).map_err(|e| DecodeError {
        path: ".".into(),
        message: e.to_string(),
    })?;
    // `apiVersion` and `kind` are not fields of the Rust types (k8s-openapi writes them from
    // constants), so serde_ignored reports them; they are part of every schema.
    unknown.retain(|p| p != "apiVersion" && p != "kind");
    Ok(Decoded { object, unknown })
}

use k8s_openapi::api::{
    apps, certificates, coordination, core, discovery, events, rbac, scheduling,
};

const STATUS: &[&str] = &["status"];

/// events.k8s.io/v1 Events are core/v1 Events.
static EVENTS_AS_CORE: StoredAs = StoredAs {
    group: "",
    resource: "events",
    to_storage: crate::conversion::events::to_core,
    from_storage: crate::conversion::events::from_core,
    field_label: crate::conversion::events::field_label,
};

/// Every served resource. Subresources `log`, `eviction`, `binding` are listed where
/// Kubernetes has them so discovery and `kubectl` see them; those wired by later issues answer
/// 503 until then.
pub static RESOURCES: &[ResourceInfo] = &[
    ResourceInfo {
        group: "",
        version: "v1",
        resource: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        list_kind: "NamespaceList",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        subresources: &["status", "finalize"],
        name_rule: NameRule::Dns1123Label,
        storage_prefix: "/registry/namespaces/",
        has_generation: false,
        stored_as: None,
        decode: decode_as::<core::v1::Namespace>,
        schema: crate::openapi::schema_of::<core::v1::Namespace>,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        resource: "nodes",
        singular: "node",
        kind: "Node",
        list_kind: "NodeList",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        subresources: STATUS,
        name_rule: NameRule::Dns1123Subdomain,
        storage_prefix: "/registry/minions/",
        has_generation: false,
        stored_as: None,
        decode: decode_as::<core::v1::Node>,
        schema: crate::openapi::schema_of::<core::v1::Node>,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        resource: "pods",
        singular: "pod",
        kind: "Pod",
        list_kind: "PodList",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        subresources: &["status", "binding", "log", "exec", "eviction"],
        name_rule: NameRule::Dns1123Subdomain,
        storage_prefix: "/registry/pods/",
        has_generation: true,
        stored_as: None,
        decode: decode_as::<core::v1::Pod>,
        schema: crate::openapi::schema_of::<core::v1::Pod>,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        resource: "services",
        singular: "service",
        kind: "Service",
        list_kind: "ServiceList",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
        subresources: STATUS,
        name_rule: NameRule::Dns1035Label,
        storage_prefix: "/registry/services/specs/",
        has_generation: false,
        stored_as: None,
        decode: decode_as::<core::v1::Service>,
        schema: crate::openapi::schema_of::<core::v1::Service>,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        resource: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        list_kind: "ConfigMapList",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        subresources: &[],
        name_rule: NameRule::Dns1123Subdomain,
        storage_prefix: "/registry/configmaps/",
        has_generation: false,
        stored_as: None,
        decode: decode_as::<core::v1::ConfigMap>,
        schema: crate::openapi::schema_of::<core::v1::ConfigMap>,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        resource: "secrets",
        singular: "secret",
        kind: "Secret",
        list_kind: "SecretList",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        name_rule: NameRule::Dns1123Subdomain,
        storage_prefix: "/registry/secrets/",
        has_generation: false,
        stored_as: None,
        decode: decode_as::<core::v1::Secret>,
        schema: crate::openapi::schema_of::<core::v1::Secret>,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        resource: "events",
        singular: "event",
        kind: "Event",
        list_kind: "EventList",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
        name_rule: NameRule::Dns1123Subdomain,
        storage_prefix: "/registry/events/",
        has_generation: false,
        stored_as: None,
        decode: decode_as::<core::v1::Event>,
        schema: crate::openapi::schema_of::<core::v1::Event>,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        resource: "resourcequotas",
        singular: "resourcequota",
        kind: "ResourceQuota",
        list_kind: "ResourceQuotaList",
        namespaced: true,
        short_names: &["quota"],
        categories: &[],
        subresources: STATUS,
        name_rule: NameRule::Dns1123Subdomain,
        storage_prefix: "/registry/resourcequotas/",
        has_generation: false,
        stored_as: None,
        decode: decode_as::<core::v1::ResourceQuota>,
        schema: crate::openapi::schema_of::<core::v1::ResourceQuota>,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        resource: "limitranges",
        singular: "limitrange",
        kind: "LimitRange",
        list_kind: "LimitRangeList",
        namespaced: true,
        short_names: &["limits"],
        categories: &[],
        subresources: &[],
        name_rule: NameRule::Dns1123Subdomain,
        storage_prefix: "/registry/limitranges/",
        has_generation: false,
        stored_as: None,
        decode: decode_as::<core::v1::LimitRange>,
        schema: crate::openapi::schema_of::<core::v1::LimitRange>,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        resource: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        list_kind: "ServiceAccountList",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        subresources: &["token"],
        name_rule: NameRule::Dns1123Subdomain,
        storage_prefix: "/registry/serviceaccounts/",
        has_generation: false,
        stored_as: None,
        decode: decode_as::<core::v1::ServiceAccount>,
        schema: crate::openapi::schema_of::<core::v1::ServiceAccount>,
    },
    ResourceInfo {
        group: "discovery.k8s.io",
        version: "v1",
        resource: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        list_kind: "EndpointSliceList",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        name_rule: NameRule::Dns1123Subdomain,
        storage_prefix: "/registry/endpointslices/",
        has_generation: false,
        stored_as: None,
        decode: decode_as::<discovery::v1::EndpointSlice>,
        schema: crate::openapi::schema_of::<discovery::v1::EndpointSlice>,
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        resource: "deployments",
        singular: "deployment",
        kind: "Deployment",
        list_kind: "DeploymentList",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        subresources: &["status", "scale"],
        name_rule: NameRule::Dns1123Subdomain,
        storage_prefix: "/registry/deployments/",
        has_generation: true,
        stored_as: None,
        decode: decode_as::<apps::v1::Deployment>,
        schema: crate::openapi::schema_of::<apps::v1::Deployment>,
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        resource: "replicasets",
        singular: "replicaset",
        kind: "ReplicaSet",
        list_kind: "ReplicaSetList",
        namespaced: true,
        short_names: &["rs"],
        categories: &["all"],
        subresources: &["status", "scale"],
        name_rule: NameRule::Dns1123Subdomain,
        storage_prefix: "/registry/replicasets/",
        has_generation: true,
        stored_as: None,
        decode: decode_as::<apps::v1::ReplicaSet>,
        schema: crate::openapi::schema_of::<apps::v1::ReplicaSet>,
    },
    ResourceInfo {
        group: "coordination.k8s.io",
        version: "v1",
        resource: "leases",
        singular: "lease",
        kind: "Lease",
        list_kind: "LeaseList",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        name_rule: NameRule::Dns1123Subdomain,
        storage_prefix: "/registry/leases/",
        has_generation: false,
        stored_as: None,
        decode: decode_as::<coordination::v1::Lease>,
        schema: crate::openapi::schema_of::<coordination::v1::Lease>,
    },
    ResourceInfo {
        group: "scheduling.k8s.io",
        version: "v1",
        resource: "priorityclasses",
        singular: "priorityclass",
        kind: "PriorityClass",
        list_kind: "PriorityClassList",
        namespaced: false,
        short_names: &["pc"],
        categories: &[],
        subresources: &[],
        name_rule: NameRule::Dns1123Subdomain,
        storage_prefix: "/registry/priorityclasses/",
        has_generation: false,
        stored_as: None,
        decode: decode_as::<scheduling::v1::PriorityClass>,
        schema: crate::openapi::schema_of::<scheduling::v1::PriorityClass>,
    },
    ResourceInfo {
        group: "certificates.k8s.io",
        version: "v1",
        resource: "certificatesigningrequests",
        singular: "certificatesigningrequest",
        kind: "CertificateSigningRequest",
        list_kind: "CertificateSigningRequestList",
        namespaced: false,
        short_names: &["csr"],
        categories: &[],
        // `approval` carries the Approved/Denied conditions (the approver's), `status` the
        // certificate and the Failed condition (the signer's), each under its own permission.
        subresources: &["status", "approval"],
        name_rule: NameRule::PathSegment,
        storage_prefix: "/registry/certificatesigningrequests/",
        has_generation: false,
        stored_as: None,
        decode: decode_as::<certificates::v1::CertificateSigningRequest>,
        schema: crate::openapi::schema_of::<certificates::v1::CertificateSigningRequest>,
    },
    ResourceInfo {
        group: "events.k8s.io",
        version: "v1",
        resource: "events",
        singular: "event",
        kind: "Event",
        list_kind: "EventList",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
        name_rule: NameRule::Dns1123Subdomain,
        // One resource with core/v1 Events, as in Kubernetes: stored once, in the core/v1
        // form, and converted on the way in and out.
        storage_prefix: "/registry/events/",
        has_generation: false,
        stored_as: Some(&EVENTS_AS_CORE),
        decode: decode_as::<events::v1::Event>,
        schema: crate::openapi::schema_of::<events::v1::Event>,
    },
    ResourceInfo {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        resource: "roles",
        singular: "role",
        kind: "Role",
        list_kind: "RoleList",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        name_rule: NameRule::PathSegment,
        storage_prefix: "/registry/roles/",
        has_generation: false,
        stored_as: None,
        decode: decode_as::<rbac::v1::Role>,
        schema: crate::openapi::schema_of::<rbac::v1::Role>,
    },
    ResourceInfo {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        resource: "clusterroles",
        singular: "clusterrole",
        kind: "ClusterRole",
        list_kind: "ClusterRoleList",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        name_rule: NameRule::PathSegment,
        storage_prefix: "/registry/clusterroles/",
        has_generation: false,
        stored_as: None,
        decode: decode_as::<rbac::v1::ClusterRole>,
        schema: crate::openapi::schema_of::<rbac::v1::ClusterRole>,
    },
    ResourceInfo {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        resource: "rolebindings",
        singular: "rolebinding",
        kind: "RoleBinding",
        list_kind: "RoleBindingList",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        name_rule: NameRule::PathSegment,
        storage_prefix: "/registry/rolebindings/",
        has_generation: false,
        stored_as: None,
        decode: decode_as::<rbac::v1::RoleBinding>,
        schema: crate::openapi::schema_of::<rbac::v1::RoleBinding>,
    },
    ResourceInfo {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        resource: "clusterrolebindings",
        singular: "clusterrolebinding",
        kind: "ClusterRoleBinding",
        list_kind: "ClusterRoleBindingList",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        name_rule: NameRule::PathSegment,
        storage_prefix: "/registry/clusterrolebindings/",
        has_generation: false,
        stored_as: None,
        decode: decode_as::<rbac::v1::ClusterRoleBinding>,
        schema: crate::openapi::schema_of::<rbac::v1::ClusterRoleBinding>,
    },
];

/// The resource at `group`/`version`/`resource` (plural), if served.
pub fn lookup(group: &str, version: &str, resource: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.resource == resource)
}

/// The served group-versions in discovery order (core first, then groups as listed).
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests;
