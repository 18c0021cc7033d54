use super::*;
use crate::auth::rbac::{self, Attributes, Decision, Policy, UserInfo};
use k8s_openapi::api::rbac::v1::RoleBinding;

/// The bootstrap policy once aggregated, with `admin`, `edit` and `view` each bound in the
/// namespace "team" to the user of the same name.
fn cluster() -> Policy {
    let mut cluster_roles = cluster_roles();
    for updated in rbac::aggregate(&cluster_roles) {
        let slot = cluster_roles
            .iter_mut()
            .find(|role| role.metadata.name == updated.metadata.name)
            .expect("aggregate returns roles it was given");
        *slot = updated;
    }
    let team_binding = |role: &str| RoleBinding {
        metadata: ObjectMeta {
            name: Some(role.to_string()),
            namespace: Some("team".to_string()),
            ..Default::default()
        },
        role_ref: binding(role, Vec::new()).role_ref,
        subjects: Some(vec![user(role)]),
    };
    let role_bindings = ["admin", "edit", "view"].map(team_binding).to_vec();
    let cluster_role_bindings = cluster_role_bindings();
    Policy {
        roles: Vec::new(),
        cluster_roles,
        role_bindings,
        cluster_role_bindings,
    }
}

fn who(name: &str, groups: &[&str]) -> UserInfo {
    let groups = groups.iter().map(|g| g.to_string()).collect();
    UserInfo {
        name: name.to_string(),
        groups,
        ..Default::default()
    }
}

/// Checks rows of (verb, namespace, apiGroup, "resource[/subresource]", allowed) for `user`.
fn check(policy: &Policy, user: &UserInfo, rows: &[(&str, &str, &str, &str, bool)]) {
    for &(verb, namespace, api_group, resource, want) in rows {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        let (resource_request, name, path) = (true, "", "");
        let attrs = Attributes {
            user,
            verb,
            resource_request,
            namespace,
            api_group,
            resource,
            subresource,
            name,
            path,
        };
        let allowed = policy.authorize(&attrs) == Decision::Allow;
        assert_eq!(allowed, want, "{} {attrs:?}", user.name);
    }
}

/// Checks rows of (path, allowed) for GETs of non-resource URLs by `user`.
fn check_urls(policy: &Policy, user: &UserInfo, rows: &[(&str, bool)]) {
    for &(path, want) in rows {
        let (resource_request, namespace, api_group, resource, subresource, name) =
            (false, "", "", "", "", "");
        let attrs = Attributes {
            user,
            verb: "get",
            resource_request,
            namespace,
            api_group,
            resource,
            subresource,
            name,
            path,
        };
        let allowed = policy.authorize(&attrs) == Decision::Allow;
        assert_eq!(allowed, want, "{} GET {path}", user.name);
    }
}

fn rules_of(policy: &Policy, name: &str) -> Vec<PolicyRule> {
    let mut roles = policy.cluster_roles.iter();
    let role = roles.find(|role| role.metadata.name.as_deref() == Some(name));
    role.and_then(|role| role.rules.clone()).unwrap_or_default()
}

#[test]
fn every_binding_names_a_bootstrap_cluster_role() {
    let roles = cluster_roles();
    for binding in cluster_role_bindings() {
        let name = binding.role_ref.name.as_str();
        assert_eq!(binding.role_ref.kind, "ClusterRole", "{name}");
        assert_eq!(binding.role_ref.api_group.as_deref(), Some(RBAC), "{name}");
        let exists = roles
            .iter()
            .any(|role| role.metadata.name.as_deref() == Some(name));
        assert!(exists, "binding to missing role {name}");
    }
}

#[test]
fn every_object_is_a_reconcilable_default_named_once() {
    let roles = cluster_roles()
        .into_iter()
        .map(|r| ("ClusterRole", r.metadata));
    let bindings = cluster_role_bindings()
        .into_iter()
        .map(|b| ("ClusterRoleBinding", b.metadata));
    let mut seen = std::collections::BTreeSet::new();
    for (kind, metadata) in roles.chain(bindings) {
        let name = metadata.name.clone().unwrap_or_default();
        let labels = metadata.labels.unwrap_or_default();
        let label = labels.get(BOOTSTRAPPING_LABEL).map(String::as_str);
        assert_eq!(label, Some(BOOTSTRAPPING_VALUE), "{kind} {name}");
        let annotations = metadata.annotations.unwrap_or_default();
        let autoupdate = annotations.get(AUTOUPDATE_ANNOTATION).map(String::as_str);
        assert_eq!(autoupdate, Some("true"), "{kind} {name}");
        assert!(seen.insert((kind, name.clone())), "{kind} {name} twice");
    }
}

#[test]
#[rustfmt::skip]
fn view_reads_the_namespace_but_never_secrets() {
    check(&cluster(), &who("view", &[AUTHENTICATED]), &[
        ("get", "team", CORE, "pods", true),
        ("get", "team", CORE, "pods/log", true),
        ("list", "team", APPS, "deployments", true),
        ("watch", "team", DISCOVERY, "endpointslices", true),
        ("get", "team", CORE, "secrets", false),
        ("list", "team", CORE, "secrets", false),
        ("watch", "team", CORE, "secrets", false),
        ("create", "team", CORE, "pods", false),
        ("get", "other", CORE, "pods", false),
        ("list", "", CORE, "pods", false),
    ]);
}

#[test]
#[rustfmt::skip]
fn limit_ranges_are_read_by_every_namespace_role_and_written_by_none() {
    // kube's bootstrap policy: `view` (and so `edit` and `admin`) reads limitranges; writing
    // them is the cluster administrator's, like resourcequotas.
    let policy = cluster();
    for role in ["view", "edit", "admin"] {
        let user = who(role, &[AUTHENTICATED]);
        check(&policy, &user, &[
            ("get", "team", CORE, "limitranges", true),
            ("list", "team", CORE, "limitranges", true),
            ("watch", "team", CORE, "limitranges", true),
            ("list", "other", CORE, "limitranges", false),
        ]);
        for verb in ["create", "update", "patch", "delete", "deletecollection"] {
            check(&policy, &user, &[(verb, "team", CORE, "limitranges", false)]);
        }
    }
}

#[test]
#[rustfmt::skip]
fn edit_changes_workloads_but_not_permissions() {
    check(&cluster(), &who("edit", &[AUTHENTICATED]), &[
        ("create", "team", APPS, "deployments", true),
        ("patch", "team", APPS, "deployments/scale", true),
        ("create", "team", CORE, "pods/eviction", true),
        ("get", "team", CORE, "secrets", true),
        // Reading comes through view, which edit aggregates.
        ("get", "team", APPS, "deployments", true),
        ("create", "team", RBAC, "roles", false),
        ("create", "team", RBAC, "rolebindings", false),
        ("get", "team", RBAC, "rolebindings", false),
        // Status is the system's to write.
        ("update", "team", APPS, "deployments/status", false),
        ("create", "team", AUTHORIZATION, "localsubjectaccessreviews", false),
    ]);
}

#[test]
#[rustfmt::skip]
fn admin_grants_permissions_within_its_namespace() {
    let policy = cluster();
    let admin = who("admin", &[AUTHENTICATED]);
    for resource in ["roles", "rolebindings"] {
        for &verb in READ_WRITE {
            check(&policy, &admin, &[(verb, "team", RBAC, resource, true)]);
        }
    }
    check(&policy, &admin, &[
        ("create", "team", AUTHORIZATION, "localsubjectaccessreviews", true),
        ("delete", "team", APPS, "replicasets", true),
        ("create", "other", RBAC, "rolebindings", false),
        ("create", "", RBAC, "clusterrolebindings", false),
        ("update", "team", CORE, "resourcequotas", false),
    ]);
}

#[test]
fn the_aggregated_roles_nest_and_settle() {
    let policy = cluster();
    let admin = rules_of(&policy, "admin");
    let edit = rules_of(&policy, "edit");
    let view = rules_of(&policy, "view");
    assert!(!view.is_empty());
    assert!(rbac::covers(&admin, &edit));
    assert!(rbac::covers(&edit, &view));
    assert!(!rbac::covers(&view, &edit));
    assert!(!rbac::covers(&edit, &admin));
    assert!(rbac::aggregate(&policy.cluster_roles).is_empty());
}

#[test]
#[rustfmt::skip]
fn cluster_admin_can_do_anything() {
    let policy = cluster();
    let root = who("root", &["system:masters", AUTHENTICATED]);
    check(&policy, &root, &[
        ("delete", "", CORE, "nodes", true),
        ("deletecollection", "team", CORE, "secrets", true),
        ("escalate", "", RBAC, "clusterroles", true),
        ("impersonate", "", CORE, "users", true),
        ("frobnicate", "any", "example.com", "widgets/status", true),
    ]);
    check_urls(&policy, &root, &[("/metrics", true), ("/anything/at/all", true)]);
    // So it may create and bind every other role without escalating.
    let everything = rules_of(&policy, "cluster-admin");
    for role in &policy.cluster_roles {
        let rules = role.rules.clone().unwrap_or_default();
        assert!(rbac::covers(&everything, &rules), "{:?}", role.metadata.name);
    }
}

#[test]
#[rustfmt::skip]
fn everyone_discovers_and_anonymous_sees_only_health() {
    let policy = cluster();
    let someone = who("someone", &[AUTHENTICATED]);
    check_urls(&policy, &someone, &[
        ("/api", true), ("/api/v1", true), ("/apis/apps/v1", true), ("/openapi/v3", true),
        ("/version", true), ("/healthz", true), ("/metrics", false),
    ]);
    check(&policy, &someone, &[
        ("create", "", AUTHORIZATION, "selfsubjectaccessreviews", true),
        ("create", "", AUTHORIZATION, "selfsubjectrulesreviews", true),
        ("create", "", AUTHENTICATION, "selfsubjectreviews", true),
        ("list", "team", CORE, "pods", false),
    ]);
    let anonymous = who("system:anonymous", &[UNAUTHENTICATED]);
    check_urls(&policy, &anonymous, &[
        ("/healthz", true), ("/livez", true), ("/readyz", true), ("/version", true),
        ("/api", false), ("/apis", false), ("/openapi/v2", false), ("/metrics", false),
    ]);
    check(&policy, &anonymous, &[
        ("create", "", AUTHORIZATION, "selfsubjectaccessreviews", false),
    ]);
}

#[test]
#[rustfmt::skip]
fn components_get_what_they_need() {
    let policy = cluster();
    check(&policy, &who("system:kube-scheduler", &[AUTHENTICATED]), &[
        ("create", "team", CORE, "pods/binding", true),
        ("patch", "team", CORE, "pods/status", true),
        ("watch", "", CORE, "nodes", true),
        ("list", "", APPS, "replicasets", true),
        ("create", "team", EVENTS, "events", true),
        ("create", "team", CORE, "pods", false),
        ("get", "team", CORE, "secrets", false),
    ]);
    check(&policy, &who("system:kube-controller-manager", &[AUTHENTICATED]), &[
        ("update", "team", APPS, "deployments/status", true),
        ("create", "team", APPS, "replicasets", true),
        ("deletecollection", "team", CORE, "pods", true),
        ("update", "", CORE, "namespaces/finalize", true),
        ("delete", "team", RBAC, "rolebindings", true),
        ("escalate", "", RBAC, "clusterroles", true),
        ("create", "team", RBAC, "rolebindings", false),
        ("bind", "", RBAC, "clusterroles", false),
    ]);
    let prometheus = who("prometheus", &["system:monitoring", AUTHENTICATED]);
    check_urls(&policy, &prometheus, &[("/metrics", true), ("/readyz/etcd", true)]);
    check(&policy, &who("system:bootstrap:abcdef", &["system:bootstrappers"]), &[
        ("create", "", CERTIFICATES, "certificatesigningrequests", true),
        ("get", "", CORE, "nodes", false),
    ]);
}

#[test]
#[rustfmt::skip]
fn kubelets_are_left_to_the_node_authorizer() {
    let policy = cluster();
    let kubelet = who("system:node:node-1", &["system:nodes", AUTHENTICATED]);
    check(&policy, &kubelet, &[
        ("get", "team", CORE, "secrets", false),
        ("create", "", CORE, "nodes", false),
    ]);
    let mut bindings = policy.cluster_role_bindings.iter();
    let node = bindings.find(|b| b.metadata.name.as_deref() == Some("system:node"));
    assert_eq!(node.map(|binding| &binding.subjects), Some(&None));
    // Bound on purpose, the role covers what a kubelet does.
    let mut bound = policy.clone();
    bound.cluster_role_bindings.push(binding("system:node", vec![group("system:nodes")]));
    check(&bound, &kubelet, &[
        ("create", "", CORE, "nodes", true),
        ("patch", "", CORE, "nodes/status", true),
        ("update", "team", CORE, "pods/status", true),
        ("create", "team", CORE, "serviceaccounts/token", true),
        ("update", "kube-node-lease", COORDINATION, "leases", true),
        ("delete", "", CORE, "nodes", false),
    ]);
}
