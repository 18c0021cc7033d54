//! Schemas of the Kubernetes kinds keel's API server serves, from the `patchStrategy` and
//! `patchMergeKey` tags of the Go types in `k8s.io/api` and `k8s.io/apimachinery` at
//! Kubernetes 1.37 (checked against the sources, not against the OpenAPI documents).
//!
//! Only what changes the merge is declared: tagged fields, and the untagged structs that lead
//! to them. Untagged lists behave as declared `replace` whether listed or not; a few are listed
//! anyway (tolerations, taints, container statuses) so that the choice is visible.
//!
//! Known Kubernetes quirks kept as they are: Node `status.addresses` merges on `type`, so two
//! addresses of one type collapse; Namespace `spec.finalizers` is untagged (replaced) while
//! `metadata.finalizers` merges.

use crate::schema::{Field, Schema};

/// The schema of `kind` in API group `group` (`""` for the core group), if keel serves it.
pub fn schema_for(group: &str, kind: &str) -> Option<&'static Schema> {
    let schema = match (group, kind) {
        ("", "Pod") => &POD,
        ("", "Node") => &NODE,
        ("", "Service") => &SERVICE,
        ("", "Namespace") => &NAMESPACE,
        ("", "ConfigMap" | "Secret" | "Event" | "ResourceQuota" | "LimitRange") => &METADATA_ONLY,
        ("apps", "Deployment") => &DEPLOYMENT,
        ("apps", "ReplicaSet") => &REPLICA_SET,
        ("discovery.k8s.io", "EndpointSlice")
        | ("coordination.k8s.io", "Lease")
        | ("events.k8s.io", "Event")
        | ("autoscaling", "Scale") => &METADATA_ONLY,
        _ => return None,
    };
    Some(schema)
}

/// The schema of a kind keel has no tags for: its `metadata` is still ObjectMeta (finalizers
/// merge as a set, ownerReferences on `uid`), and everything else merges untagged.
pub fn metadata_only() -> &'static Schema {
    &METADATA_ONLY
}

// meta/v1 ObjectMeta: `finalizers` patchStrategy:"merge"; `ownerReferences`
// patchStrategy:"merge" patchMergeKey:"uid".
static OBJECT_META_FIELDS: &[(&str, Field)] = &[
    ("finalizers", Field::set()),
    ("ownerReferences", Field::merge_list("uid")),
];
static OBJECT_META: Schema = Schema::new(OBJECT_META_FIELDS);

// ConfigMap, Secret, core/v1 Event, ResourceQuota, LimitRange (`spec.limits` is atomic),
// EndpointSlice (its `endpoints` and `ports` are untagged), Lease, events.k8s.io/v1 Event,
// autoscaling/v1 Scale: no tag outside metadata.
static METADATA_ONLY_FIELDS: &[(&str, Field)] = &[("metadata", Field::object(&OBJECT_META))];
static METADATA_ONLY: Schema = Schema::new(METADATA_ONLY_FIELDS);

// core/v1 Container, and EphemeralContainerCommon (inlined into EphemeralContainer) which
// carries the same four tags. `resources` (ResourceRequirements) is an untagged struct: its
// maps merge key by key and its `claims` list is replaced, which is what undeclared means.
static CONTAINER_FIELDS: &[(&str, Field)] = &[
    ("ports", Field::merge_list("containerPort")),
    ("env", Field::merge_list("name")),
    ("volumeMounts", Field::merge_list("mountPath")),
    ("volumeDevices", Field::merge_list("devicePath")),
];
static CONTAINER: Schema = Schema::new(CONTAINER_FIELDS);

// core/v1 PodSpec.
static POD_SPEC_FIELDS: &[(&str, Field)] = &[
    // Volume is a union (VolumeSource inlined): "merge,retainKeys" on name.
    ("volumes", Field::merge_list_retain_keys("name")),
    (
        "initContainers",
        Field::merge_list("name").with_schema(&CONTAINER),
    ),
    (
        "containers",
        Field::merge_list("name").with_schema(&CONTAINER),
    ),
    (
        "ephemeralContainers",
        Field::merge_list("name").with_schema(&CONTAINER),
    ),
    ("imagePullSecrets", Field::merge_list("name")),
    ("hostAliases", Field::merge_list("ip")),
    ("tolerations", Field::replace()),
    (
        "topologySpreadConstraints",
        Field::merge_list("topologyKey"),
    ),
    ("schedulingGates", Field::merge_list("name")),
    ("resourceClaims", Field::merge_list_retain_keys("name")),
    ("evictionResponders", Field::merge_list("name")),
];
static POD_SPEC: Schema = Schema::new(POD_SPEC_FIELDS);

// core/v1 ContainerStatus. Its lists are replaced with it (PodStatus's status lists are
// untagged); listed for completeness.
static CONTAINER_STATUS_FIELDS: &[(&str, Field)] = &[
    ("volumeMounts", Field::merge_list("mountPath")),
    ("allocatedResourcesStatus", Field::merge_list("name")),
];
static CONTAINER_STATUS: Schema = Schema::new(CONTAINER_STATUS_FIELDS);

// core/v1 NodeAllocatableResourceClaimStatus.
static NODE_ALLOCATABLE_CLAIM_STATUS_FIELDS: &[(&str, Field)] = &[
    ("mapping", Field::merge_list("name")),
    ("overhead", Field::merge_list("name")),
];
static NODE_ALLOCATABLE_CLAIM_STATUS: Schema = Schema::new(NODE_ALLOCATABLE_CLAIM_STATUS_FIELDS);

// core/v1 PodStatus.
static POD_STATUS_FIELDS: &[(&str, Field)] = &[
    ("conditions", Field::merge_list("type")),
    ("hostIPs", Field::merge_list("ip")),
    ("podIPs", Field::merge_list("ip")),
    (
        "initContainerStatuses",
        Field::replace().with_schema(&CONTAINER_STATUS),
    ),
    (
        "containerStatuses",
        Field::replace().with_schema(&CONTAINER_STATUS),
    ),
    (
        "ephemeralContainerStatuses",
        Field::replace().with_schema(&CONTAINER_STATUS),
    ),
    (
        "resourceClaimStatuses",
        Field::merge_list_retain_keys("name"),
    ),
    (
        "nodeAllocatableResourceClaimStatuses",
        Field::merge_list("resourceClaimName").with_schema(&NODE_ALLOCATABLE_CLAIM_STATUS),
    ),
];
static POD_STATUS: Schema = Schema::new(POD_STATUS_FIELDS);

static POD_FIELDS: &[(&str, Field)] = &[
    ("metadata", Field::object(&OBJECT_META)),
    ("spec", Field::object(&POD_SPEC)),
    ("status", Field::object(&POD_STATUS)),
];
static POD: Schema = Schema::new(POD_FIELDS);

// core/v1 PodTemplateSpec, the `template` of Deployments and ReplicaSets.
static POD_TEMPLATE_SPEC_FIELDS: &[(&str, Field)] = &[
    ("metadata", Field::object(&OBJECT_META)),
    ("spec", Field::object(&POD_SPEC)),
];
static POD_TEMPLATE_SPEC: Schema = Schema::new(POD_TEMPLATE_SPEC_FIELDS);

// core/v1 ServiceSpec and ServiceStatus (conditions are metav1.Condition).
static SERVICE_SPEC_FIELDS: &[(&str, Field)] = &[("ports", Field::merge_list("port"))];
static SERVICE_SPEC: Schema = Schema::new(SERVICE_SPEC_FIELDS);
static CONDITIONS_FIELDS: &[(&str, Field)] = &[("conditions", Field::merge_list("type"))];
/// Any status whose only tagged field is `conditions` merged on `type`: ServiceStatus,
/// NamespaceStatus, DeploymentStatus, ReplicaSetStatus.
static CONDITIONS: Schema = Schema::new(CONDITIONS_FIELDS);

static SERVICE_FIELDS: &[(&str, Field)] = &[
    ("metadata", Field::object(&OBJECT_META)),
    ("spec", Field::object(&SERVICE_SPEC)),
    ("status", Field::object(&CONDITIONS)),
];
static SERVICE: Schema = Schema::new(SERVICE_FIELDS);

// core/v1 NodeSpec (`podCIDRs` patchStrategy:"merge", a set of strings; `taints` untagged)
// and NodeStatus.
static NODE_SPEC_FIELDS: &[(&str, Field)] =
    &[("podCIDRs", Field::set()), ("taints", Field::replace())];
static NODE_SPEC: Schema = Schema::new(NODE_SPEC_FIELDS);
static NODE_STATUS_FIELDS: &[(&str, Field)] = &[
    ("conditions", Field::merge_list("type")),
    ("addresses", Field::merge_list("type")),
];
static NODE_STATUS: Schema = Schema::new(NODE_STATUS_FIELDS);
static NODE_FIELDS: &[(&str, Field)] = &[
    ("metadata", Field::object(&OBJECT_META)),
    ("spec", Field::object(&NODE_SPEC)),
    ("status", Field::object(&NODE_STATUS)),
];
static NODE: Schema = Schema::new(NODE_FIELDS);

// core/v1 Namespace: NamespaceSpec's `finalizers` is untagged.
static NAMESPACE_SPEC_FIELDS: &[(&str, Field)] = &[("finalizers", Field::replace())];
static NAMESPACE_SPEC: Schema = Schema::new(NAMESPACE_SPEC_FIELDS);
static NAMESPACE_FIELDS: &[(&str, Field)] = &[
    ("metadata", Field::object(&OBJECT_META)),
    ("spec", Field::object(&NAMESPACE_SPEC)),
    ("status", Field::object(&CONDITIONS)),
];
static NAMESPACE: Schema = Schema::new(NAMESPACE_FIELDS);

// apps/v1 DeploymentSpec: `strategy` patchStrategy:"retainKeys" (a union of Recreate and
// RollingUpdate), `template` untagged.
static DEPLOYMENT_SPEC_FIELDS: &[(&str, Field)] = &[
    ("template", Field::object(&POD_TEMPLATE_SPEC)),
    ("strategy", Field::retain_keys()),
];
static DEPLOYMENT_SPEC: Schema = Schema::new(DEPLOYMENT_SPEC_FIELDS);
static DEPLOYMENT_FIELDS: &[(&str, Field)] = &[
    ("metadata", Field::object(&OBJECT_META)),
    ("spec", Field::object(&DEPLOYMENT_SPEC)),
    ("status", Field::object(&CONDITIONS)),
];
static DEPLOYMENT: Schema = Schema::new(DEPLOYMENT_FIELDS);

// apps/v1 ReplicaSetSpec: only `template` leads to tags.
static REPLICA_SET_SPEC_FIELDS: &[(&str, Field)] =
    &[("template", Field::object(&POD_TEMPLATE_SPEC))];
static REPLICA_SET_SPEC: Schema = Schema::new(REPLICA_SET_SPEC_FIELDS);
static REPLICA_SET_FIELDS: &[(&str, Field)] = &[
    ("metadata", Field::object(&OBJECT_META)),
    ("spec", Field::object(&REPLICA_SET_SPEC)),
    ("status", Field::object(&CONDITIONS)),
];
static REPLICA_SET: Schema = Schema::new(REPLICA_SET_FIELDS);
