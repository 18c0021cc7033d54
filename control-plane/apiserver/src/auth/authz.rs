//! Authorization: may this user do this? kube-apiserver's chain — members of `system:masters`
//! are allowed everything (its privileged-group authorizer, which no RBAC object can take
//! away), then RBAC over the Role, ClusterRole, RoleBinding and ClusterRoleBinding objects in
//! the watch caches — and its request attributes, impersonation and 403 messages.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::de::DeserializeOwned;

use super::rbac::{self, Decision, Policy};
use super::UserInfo;
use crate::cache::Cacher;

use crate::status::ApiError;

pub const MASTERS: &str = "system:masters";

pub use super::attributes::Request;

/// The RBAC objects as one snapshot, rebuilt only when one of the four caches moved, so a
/// request pays for a lookup, not for decoding every role.
pub struct Authorizer {
    /// The watch caches of Role, ClusterRole, RoleBinding and ClusterRoleBinding.
    caches: Vec<Arc<Cacher>>,
    /// Kubelets: the Node authorizer, before RBAC (kube-apiserver's `--authorization-mode=Node,RBAC`).
    node: super::node::NodeAuthorizer,
    snapshot: Mutex<Option<(Vec<i64>, Arc<Policy>)>>,
}

/// The RBAC resources, in the order `Authorizer::new` takes their caches.
pub const RBAC_RESOURCES: [&str; 4] = [
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
];

fn decoded<T: DeserializeOwned>(caches: &[Arc<Cacher>], resource: &str) -> Vec<T> {
    let Some(cache) = caches.iter().find(|c| c.info.resource == resource) else {
        return Vec::new();
    };
    match cache.list("") {
        // An object that no longer decodes (it was validated on the way in) is skipped: it
        // can grant nothing, which is the safe side.
        Ok((items, _)) => items
            .iter()
            .filter_map(|c| serde_json::from_value(c.value.clone()).ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

impl Authorizer {
    /// `caches`: the watch caches of the four RBAC resources (rbac.authorization.k8s.io);
    /// `pods`: the pod cache, which says what each node's pods use.
    pub fn new(caches: Vec<Arc<Cacher>>, pods: Arc<Cacher>) -> Self {
        Self {
            caches,
            node: super::node::NodeAuthorizer::new(super::bootstrap_policy::node_rules(), pods),
            snapshot: Mutex::new(None),
        }
    }

    fn revisions(&self) -> Vec<i64> {
        self.caches.iter().map(|c| c.revision()).collect()
    }

    /// The current policy (aggregated ClusterRoles already expanded).
    pub fn policy(&self) -> Arc<Policy> {
        let revisions = self.revisions();
        let mut guard = self
            .snapshot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((seen, policy)) = guard.as_ref() {
            if *seen == revisions {
                return policy.clone();
            }
        }
        let mut cluster_roles: Vec<ClusterRole> = decoded(&self.caches, "clusterroles");
        for aggregated in rbac::aggregate(&cluster_roles) {
            if let Some(slot) = cluster_roles
                .iter_mut()
                .find(|r| r.metadata.name == aggregated.metadata.name)
            {
                *slot = aggregated;
            }
        }
        let policy = Arc::new(Policy {
            roles: decoded::<Role>(&self.caches, "roles"),
            cluster_roles,
            role_bindings: decoded::<RoleBinding>(&self.caches, "rolebindings"),
            cluster_role_bindings: decoded::<ClusterRoleBinding>(
                &self.caches,
                "clusterrolebindings",
            ),
        });
        *guard = Some((revisions, policy.clone()));
        policy
    }

    /// Allowed, or the reason it is not.
    pub fn authorize(&self, user: &UserInfo, request: &Request) -> Result<(), String> {
        if user.groups.iter().any(|g| g == MASTERS) {
            return Ok(());
        }
        // The Node authorizer allows or has no opinion; RBAC may still grant a node more.
        if let Some(node) = super::node::node_of(user) {
            if self.node.authorize(user, node, request).is_ok() {
                return Ok(());
            }
        }
        match self.policy().authorize(&request.as_rbac(user)) {
            Decision::Allow => Ok(()),
            Decision::Deny(reason) => Err(reason),
        }
    }

    /// `authorize` with kube-apiserver's 403 on refusal. RBAC's own reason is not shown (as
    /// kube-apiserver, whose RBAC denial carries none): it would list the bindings looked at.
    pub fn check(&self, user: &UserInfo, request: &Request) -> Result<(), ApiError> {
        self.authorize(user, request)
            .map_err(|_| request.forbidden(user, ""))
    }
}

/// The `Impersonate-*` headers of a request.
#[derive(Debug, Default)]
pub struct Impersonation {
    pub user: Option<String>,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl Impersonation {
    pub fn is_empty(&self) -> bool {
        self.user.is_none() && self.uid.is_none() && self.groups.is_empty() && self.extra.is_empty()
    }
}

/// Checks that `actor` may impersonate what the headers ask (verb `impersonate` on users,
/// groups, serviceaccounts, uids and userextras, as kube-apiserver checks it) and returns the
/// user the request then runs as.
pub fn impersonate(
    authorizer: &Authorizer,
    actor: &UserInfo,
    asked: &Impersonation,
) -> Result<UserInfo, ApiError> {
    let Some(name) = asked.user.clone() else {
        return Err(ApiError::bad_request(
            "impersonating groups, a uid or extra fields needs Impersonate-User",
        ));
    };
    let check = |request: Request| authorizer.check(actor, &request);
    let impersonate = |group: &str, resource: &str, namespace: &str, name: &str| Request {
        verb: "impersonate".into(),
        resource_request: true,
        namespace: namespace.into(),
        api_group: group.into(),
        resource: resource.into(),
        name: name.into(),
        ..Request::default()
    };
    let mut groups = Vec::new();
    match name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
    {
        Some((namespace, account)) => {
            check(impersonate("", "serviceaccounts", namespace, account))?;
            groups.push("system:serviceaccounts".to_owned());
            groups.push(format!("system:serviceaccounts:{namespace}"));
        }
        None => check(impersonate("", "users", "", &name))?,
    }
    for group in &asked.groups {
        check(impersonate("", "groups", "", group))?;
        if !groups.contains(group) {
            groups.push(group.clone());
        }
    }
    if let Some(uid) = &asked.uid {
        check(impersonate("authentication.k8s.io", "uids", "", uid))?;
    }
    for (key, values) in &asked.extra {
        for value in values {
            let mut request = impersonate("authentication.k8s.io", "userextras", "", value);
            request.subresource = key.clone();
            check(request)?;
        }
    }
    // Everyone but the anonymous user is authenticated, as kube-apiserver adds it.
    if name != super::authn::ANONYMOUS && !groups.iter().any(|g| g == super::authn::AUTHENTICATED) {
        groups.push(super::authn::AUTHENTICATED.into());
    }
    Ok(UserInfo {
        name,
        uid: asked.uid.clone().unwrap_or_default(),
        groups,
        extra: asked.extra.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserInfo {
        UserInfo {
            name: name.into(),
            uid: String::new(),
            groups: vec![],
            extra: Default::default(),
        }
    }

    #[test]
    fn forbidden_messages_are_kube_apiservers() {
        let request = Request {
            verb: "list".into(),
            resource_request: true,
            namespace: "default".into(),
            resource: "pods".into(),
            ..Request::default()
        };
        let error = request.forbidden(&user("alice"), "");
        assert_eq!(error.code, 403);
        assert_eq!(
            error.message,
            "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        let request = Request {
            verb: "get".into(),
            resource_request: true,
            api_group: "apps".into(),
            resource: "deployments".into(),
            subresource: "scale".into(),
            name: "web".into(),
            namespace: "team".into(),
            ..Request::default()
        };
        assert_eq!(
            request.forbidden(&user("bob"), "").message,
            "deployments.apps \"web\" is forbidden: User \"bob\" cannot get resource \"deployments/scale\" in API group \"apps\" in the namespace \"team\""
        );
        let request = Request {
            verb: "create".into(),
            resource_request: true,
            api_group: "rbac.authorization.k8s.io".into(),
            resource: "clusterroles".into(),
            ..Request::default()
        };
        assert!(request
            .forbidden(&user("x"), "")
            .message
            .ends_with("at the cluster scope"));
        let request = Request::non_resource("GET", "/metrics");
        assert_eq!(
            request.forbidden(&user("anon"), "").message,
            "forbidden: User \"anon\" cannot get path \"/metrics\""
        );
    }
}
