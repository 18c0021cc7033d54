//! The RBAC roles and bindings a fresh keel cluster starts with: kube-apiserver's bootstrap
//! policy (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go`), limited to the
//! resources keel serves.
//!
//! Why the same names and rules: kubectl users expect `cluster-admin`, `admin`, `edit` and
//! `view`; installers and charts bind to `system:` roles by name; and keel's scheduler and
//! controller manager authenticate as `system:kube-scheduler` and
//! `system:kube-controller-manager`, as Kubernetes' do. Every object carries the label
//! `kubernetes.io/bootstrapping: rbac-defaults` and the annotation
//! `rbac.authorization.kubernetes.io/autoupdate: "true"`: the API server reconciles such
//! objects at start-up, restoring what was removed, and an operator opts one out by setting the
//! annotation to "false".
//!
//! `admin`, `edit` and `view` hold no rules of their own. They aggregate, by label, the
//! `system:aggregate-to-*` roles and each other (`edit` is labelled into `admin`, `view` into
//! `edit`), so that roles for custom resources can join them; their rules appear once
//! `rbac::aggregate` has run, as the clusterrole-aggregation controller runs it.
//!
//! Verbs, groups and resources of each rule are sorted and deduplicated, as Kubernetes' rule
//! builder leaves them, so `kubectl get clusterrole -o yaml` reads the same as on Kubernetes.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

pub const BOOTSTRAPPING_LABEL: &str = "kubernetes.io/bootstrapping";
pub const BOOTSTRAPPING_VALUE: &str = "rbac-defaults";
pub const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";
pub const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
pub const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
pub const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

// Kubernetes' verb sets.
const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
const READ_WRITE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

const CORE: &str = "";
const APPS: &str = "apps";
const AUTHENTICATION: &str = "authentication.k8s.io";
const AUTHORIZATION: &str = "authorization.k8s.io";
const CERTIFICATES: &str = "certificates.k8s.io";
const COORDINATION: &str = "coordination.k8s.io";
const DISCOVERY: &str = "discovery.k8s.io";
const EVENTS: &str = "events.k8s.io";
const RBAC: &str = "rbac.authorization.k8s.io";

const AUTHENTICATED: &str = "system:authenticated";
const UNAUTHENTICATED: &str = "system:unauthenticated";

/// The resources and subresources keel serves, by group: what the controller manager manages.
#[rustfmt::skip]
const SERVED: &[(&str, &[&str])] = &[
    (CORE, &[
        "pods", "pods/status", "pods/eviction", "services", "services/status", "endpoints",
        "configmaps", "secrets", "serviceaccounts", "serviceaccounts/token", "namespaces",
        "namespaces/status", "namespaces/finalize", "nodes", "nodes/status", "events",
        "resourcequotas", "resourcequotas/status", "persistentvolumeclaims", "limitranges",
    ]),
    (APPS, &[
        "deployments", "deployments/scale", "deployments/status",
        "replicasets", "replicasets/scale", "replicasets/status",
    ]),
    (DISCOVERY, &["endpointslices"]),
    (COORDINATION, &["leases"]),
    (EVENTS, &["events"]),
    ("scheduling.k8s.io", &["priorityclasses"]),
    (CERTIFICATES, &[
        "certificatesigningrequests", "certificatesigningrequests/approval",
        "certificatesigningrequests/status",
    ]),
];

/// The group a node's join token (`keelctl join-token`) adds to `system:bootstrappers`, as
/// kubeadm's tokens add `system:bootstrappers:kubeadm:default-node-token`.
pub const NODE_TOKEN_GROUP: &str = "system:bootstrappers:keel:default-node-token";
/// The signer of kubelets' client certificates.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The signer of other clients' certificates, each approved by an administrator.
pub const API_SERVER_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";

/// The cluster roles kube-apiserver creates, as keel serves them.
#[rustfmt::skip]
pub fn cluster_roles() -> Vec<ClusterRole> {
    vec![
        // The "root" role: everything, including every non-resource URL.
        role("cluster-admin", &[], vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])]),
        // A namespace's administrator: edit, plus granting permissions within the namespace.
        aggregated("admin", &[], AGGREGATE_TO_ADMIN),
        // A namespace's editor: every user-level action, but not permissions, nor the status
        // and quota objects that are the system's to write.
        aggregated("edit", &[AGGREGATE_TO_ADMIN], AGGREGATE_TO_EDIT),
        // Read-only access to what does not escalate.
        aggregated("view", &[AGGREGATE_TO_EDIT], AGGREGATE_TO_VIEW),
        role("system:aggregate-to-admin", &[AGGREGATE_TO_ADMIN], aggregate_to_admin()),
        role("system:aggregate-to-edit", &[AGGREGATE_TO_EDIT], aggregate_to_edit()),
        role("system:aggregate-to-view", &[AGGREGATE_TO_VIEW], aggregate_to_view()),
        // Enough to learn about oneself.
        role("system:basic-user", &[], vec![
            rule(&["create"], &[AUTHORIZATION], &[
                "selfsubjectaccessreviews", "selfsubjectrulesreviews",
            ]),
            rule(&["create"], &[AUTHENTICATION], &["selfsubjectreviews"]),
        ]),
        // Enough to tell whether the server is up and to discover API versions.
        role("system:discovery", &[], vec![urls(&["get"], &[
            "/livez", "/readyz", "/healthz", "/version", "/version/",
            "/openapi", "/openapi/*", "/api", "/api/*", "/apis", "/apis/*",
        ])]),
        // What is safe to show even to unauthenticated clients: health and version, not the
        // API's shape (Kubernetes stopped showing discovery to anonymous clients in 1.14).
        role("system:public-info-viewer", &[], vec![urls(&["get"], &[
            "/livez", "/readyz", "/healthz", "/version", "/version/",
        ])]),
        // ServiceAccount issuer discovery: who may read where tokens' keys are.
        role("system:service-account-issuer-discovery", &[], vec![urls(&["get"], &[
            "/.well-known/openid-configuration", "/.well-known/openid-configuration/",
            "/openid/v1/jwks", "/openid/v1/jwks/",
        ])]),
        role("system:monitoring", &[], vec![urls(&["get"], &[
            "/metrics", "/metrics/slis", "/livez", "/readyz", "/healthz",
            "/livez/*", "/readyz/*", "/healthz/*",
        ])]),
        role("system:node", &[], node_rules()),
        // What a joining kubelet's bootstrap token may do: ask for its client certificate.
        role("system:node-bootstrapper", &[], vec![rule(
            &["create", "get", "list", "watch"], &[CERTIFICATES], &["certificatesigningrequests"],
        )]),
        // What the CSR approver asks before it approves a node's client certificate: a new
        // node's (the requester is a bootstrap token), or a node renewing its own.
        role("system:certificates.k8s.io:certificatesigningrequests:nodeclient", &[], vec![rule(
            &["create"], &[CERTIFICATES], &["certificatesigningrequests/nodeclient"],
        )]),
        role("system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", &[], vec![rule(
            &["create"], &[CERTIFICATES], &["certificatesigningrequests/selfnodeclient"],
        )]),
        // Who may approve kubelets' client certificates by hand (`kubectl certificate approve`).
        role("system:certificates.k8s.io:kube-apiserver-client-kubelet-approver", &[], vec![
            named_rule(&["approve"], &[CERTIFICATES], &["signers"], &[KUBELET_CLIENT_SIGNER]),
        ]),
        role("system:kube-scheduler", &[], scheduler_rules()),
        role("system:kube-controller-manager", &[], controller_manager_rules()),
    ]
}

/// The cluster role bindings kube-apiserver creates.
pub fn cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    vec![
        binding("cluster-admin", vec![group("system:masters")]),
        binding("system:basic-user", vec![group(AUTHENTICATED)]),
        binding("system:discovery", vec![group(AUTHENTICATED)]),
        binding(
            "system:public-info-viewer",
            vec![group(AUTHENTICATED), group(UNAUTHENTICATED)],
        ),
        binding("system:kube-scheduler", vec![user("system:kube-scheduler")]),
        binding(
            "system:kube-controller-manager",
            vec![user("system:kube-controller-manager")],
        ),
        binding("system:monitoring", vec![group("system:monitoring")]),
        // kube's default: every ServiceAccount may read the issuer's discovery documents.
        binding(
            "system:service-account-issuer-discovery",
            vec![group("system:serviceaccounts")],
        ),
        binding(
            "system:node-bootstrapper",
            vec![group("system:bootstrappers")],
        ),
        // kubeadm's two auto-approval bindings, for keel's join tokens and for every node.
        named_binding(
            "keel:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![group(NODE_TOKEN_GROUP)],
        ),
        named_binding(
            "keel:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![group("system:nodes")],
        ),
        // Kubelets are authorized by the Node authorizer, which limits each to its own node's
        // pods, secrets and volumes; binding system:node to the system:nodes group would let
        // every kubelet read every secret. kube-apiserver keeps this binding without subjects,
        // so the role can still be bound on purpose.
        binding("system:node", Vec::new()),
    ]
}

#[rustfmt::skip]
fn aggregate_to_admin() -> Vec<PolicyRule> {
    vec![
        rule(&["create"], &[AUTHORIZATION], &["localsubjectaccessreviews"]),
        // Roles and bindings within the namespace; the escalation check still keeps an admin
        // from granting what they do not hold.
        rule(READ_WRITE, &[RBAC], &["roles", "rolebindings"]),
    ]
}

#[rustfmt::skip]
fn aggregate_to_edit() -> Vec<PolicyRule> {
    vec![
        // Secrets hold service account tokens: reading them escalates, so edit has it, not view.
        rule(READ, &[CORE], &["secrets"]),
        rule(&["impersonate"], &[CORE], &["serviceaccounts"]),
        rule(WRITE, &[CORE], &["pods"]),
        // Running commands in pods (`kubectl exec`): create, and get for the clients that
        // still authorize a WebSocket GET, as Kubernetes' edit role.
        rule(WRITE, &[CORE], &["pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
        rule(READ, &[CORE], &["pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
        rule(&["create"], &[CORE], &["pods/eviction"]),
        // Not endpoints nor endpointslices: Kubernetes took those writes away (CVE-2021-25740).
        rule(WRITE, &[CORE], &[
            "configmaps", "events", "persistentvolumeclaims", "secrets", "serviceaccounts",
            "services",
        ]),
        rule(&["create"], &[CORE], &["serviceaccounts/token"]),
        rule(WRITE, &[APPS], &[
            "deployments", "deployments/scale", "replicasets", "replicasets/scale",
        ]),
        rule(READ_WRITE, &[COORDINATION], &["leases"]),
    ]
}

#[rustfmt::skip]
fn aggregate_to_view() -> Vec<PolicyRule> {
    vec![
        rule(READ, &[CORE], &[
            "configmaps", "endpoints", "persistentvolumeclaims", "pods", "serviceaccounts",
            "services", "services/status",
        ]),
        rule(READ, &[CORE], &[
            "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
            "resourcequotas", "resourcequotas/status",
        ]),
        // Reading namespaces at namespace scope reads *this* namespace: it tells a user which
        // namespaces they may use.
        rule(READ, &[CORE], &["namespaces"]),
        rule(READ, &[DISCOVERY], &["endpointslices"]),
        rule(READ, &[APPS], &[
            "deployments", "deployments/scale", "deployments/status",
            "replicasets", "replicasets/scale", "replicasets/status",
        ]),
    ]
}

/// What a kubelet needs; the Node authorizer and NodeRestriction admission narrow each rule to
/// the kubelet's own node and the pods bound to it.
#[rustfmt::skip]
pub fn node_rules() -> Vec<PolicyRule> {
    vec![
        // Delegated authentication and authorization of the kubelet's own API.
        rule(&["create"], &[AUTHENTICATION], &["tokenreviews"]),
        rule(&["create"], &[AUTHORIZATION], &["subjectaccessreviews", "localsubjectaccessreviews"]),
        rule(READ, &[CORE], &["services", "endpoints"]),
        rule(READ, &[DISCOVERY], &["endpointslices"]),
        // Registering its Node object and reporting its status.
        rule(&["create", "get", "list", "watch"], &[CORE], &["nodes"]),
        rule(&["update", "patch"], &[CORE], &["nodes/status"]),
        rule(&["update", "patch"], &[CORE], &["nodes"]),
        rule(&["create", "update", "patch"], &[CORE], &["events"]),
        rule(READ, &[CORE], &["pods"]),
        // Mirror pods of static pods.
        rule(&["create", "delete"], &[CORE], &["pods"]),
        rule(&["update", "patch"], &[CORE], &["pods/status"]),
        rule(&["create"], &[CORE], &["pods/eviction"]),
        // Volumes, environment and image pull secrets of its pods.
        rule(READ, &[CORE], &["configmaps", "secrets", "serviceaccounts"]),
        rule(&["get"], &[CORE], &["persistentvolumeclaims"]),
        rule(&["create"], &[CORE], &["serviceaccounts/token"]),
        rule(&["create", "get", "list", "watch"], &[CERTIFICATES], &["certificatesigningrequests"]),
        // Node heartbeats.
        rule(&["get", "create", "update", "patch", "delete"], &[COORDINATION], &["leases"]),
    ]
}

#[rustfmt::skip]
fn scheduler_rules() -> Vec<PolicyRule> {
    vec![
        rule(&["create", "patch", "update"], &[CORE, EVENTS], &["events"]),
        // Leader election: it may create the lease, then hold only its own.
        rule(&["create"], &[COORDINATION], &["leases"]),
        named_rule(&["get", "update"], &[COORDINATION], &["leases"], &["kube-scheduler"]),
        rule(READ, &[CORE], &["nodes", "namespaces", "services"]),
        // Preemption deletes the pods it evicts.
        rule(&["get", "list", "watch", "delete"], &[CORE], &["pods"]),
        rule(&["create"], &[CORE], &["pods/binding"]),
        rule(&["patch", "update"], &[CORE], &["pods/status"]),
        rule(READ, &[APPS], &["replicasets"]),
        rule(READ, &[CORE], &["persistentvolumeclaims"]),
        rule(&["create"], &[AUTHENTICATION], &["tokenreviews"]),
        rule(&["create"], &[AUTHORIZATION], &["subjectaccessreviews"]),
    ]
}

/// keel's controller manager runs every controller under its one identity (Kubernetes gives
/// each controller a service account), so it holds what they need together: every
/// read/write verb on the served kinds.
#[rustfmt::skip]
fn controller_manager_rules() -> Vec<PolicyRule> {
    let mut rules: Vec<PolicyRule> = SERVED
        .iter()
        .map(|&(group, resources)| rule(READ_WRITE, &[group], resources))
        .collect();
    rules.extend([
        // The namespace controller empties a namespace of its RBAC objects; creating and
        // binding roles stays with administrators.
        rule(&["get", "list", "watch", "delete", "deletecollection"], &[RBAC], &[
            "roles", "rolebindings",
        ]),
        // The clusterrole-aggregation controller writes rules it need not hold itself.
        rule(&["get", "list", "watch", "update", "patch", "escalate"], &[RBAC], &["clusterroles"]),
        rule(&["create"], &[AUTHENTICATION], &["tokenreviews"]),
        rule(&["create"], &[AUTHORIZATION], &["subjectaccessreviews"]),
        // The CSR approver approves nodes' client certificates only; the signer issues them
        // and the client certificates an administrator approved.
        named_rule(&["approve"], &[CERTIFICATES], &["signers"], &[KUBELET_CLIENT_SIGNER]),
        named_rule(&["sign"], &[CERTIFICATES], &["signers"], &[
            KUBELET_CLIENT_SIGNER, API_SERVER_CLIENT_SIGNER,
        ]),
        // The garbage collector and quota read whatever exists.
        rule(READ, &["*"], &["*"]),
    ]);
    rules
}

/// A rule as Kubernetes' `NewRule(verbs...).Groups(...).Resources(...)` builds it.
fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: sorted(verbs),
        api_groups: Some(sorted(groups)),
        resources: Some(sorted(resources)),
        ..Default::default()
    }
}

fn named_rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
    PolicyRule {
        resource_names: Some(sorted(names)),
        ..rule(verbs, groups, resources)
    }
}

fn urls(verbs: &[&str], urls: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: sorted(verbs),
        non_resource_urls: Some(sorted(urls)),
        ..Default::default()
    }
}

/// A list as the rule builder's string sets leave it: sorted, without duplicates.
fn sorted(items: &[&str]) -> Vec<String> {
    let mut items: Vec<String> = items.iter().map(|item| item.to_string()).collect();
    items.sort();
    items.dedup();
    items
}

/// Bootstrap metadata, with the labels that aggregate the object into the named roles.
fn metadata(name: &str, aggregate_to: &[&str]) -> ObjectMeta {
    let mut labels = BTreeMap::from([(
        BOOTSTRAPPING_LABEL.to_string(),
        BOOTSTRAPPING_VALUE.to_string(),
    )]);
    labels.extend(
        aggregate_to
            .iter()
            .map(|key| (key.to_string(), "true".to_string())),
    );
    let annotations = BTreeMap::from([(AUTOUPDATE_ANNOTATION.to_string(), "true".to_string())]);
    ObjectMeta {
        name: Some(name.to_string()),
        labels: Some(labels),
        annotations: Some(annotations),
        ..Default::default()
    }
}

fn role(name: &str, aggregate_to: &[&str], rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: metadata(name, aggregate_to),
        rules: Some(rules),
        aggregation_rule: None,
    }
}

/// A role whose rules are those of the roles labelled `selects: "true"`; until aggregated it
/// has none (`rules: null`, as kube-apiserver creates it).
fn aggregated(name: &str, aggregate_to: &[&str], selects: &str) -> ClusterRole {
    let selector = LabelSelector {
        match_labels: Some(BTreeMap::from([(selects.to_string(), "true".to_string())])),
        match_expressions: None,
    };
    ClusterRole {
        metadata: metadata(name, aggregate_to),
        rules: None,
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: Some(vec![selector]),
        }),
    }
}

/// A binding of the cluster role of the same name; no subjects is `subjects: null`.
fn binding(role: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    named_binding(role, role, subjects)
}

fn named_binding(name: &str, role: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: metadata(name, &[]),
        role_ref: RoleRef {
            api_group: Some(RBAC.to_string()),
            kind: "ClusterRole".to_string(),
            name: role.to_string(),
        },
        subjects: (!subjects.is_empty()).then_some(subjects),
    }
}

fn group(name: &str) -> Subject {
    subject("Group", name)
}

fn user(name: &str) -> Subject {
    subject("User", name)
}

fn subject(kind: &str, name: &str) -> Subject {
    Subject {
        kind: kind.to_string(),
        name: name.to_string(),
        api_group: Some(RBAC.to_string()),
        namespace: None,
    }
}

#[cfg(test)]
mod tests;
