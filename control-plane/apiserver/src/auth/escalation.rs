//! RBAC's escalation prevention, as kube-apiserver's RBAC storage enforces it: a user may
//! write a Role or ClusterRole only with rules they already hold (or the `escalate` verb), and
//! bind a role only if they hold its rules (or the `bind` verb on it). Without this, anyone
//! allowed to write RoleBindings in a namespace could bind `cluster-admin` to themselves.

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role, RoleBinding, RoleRef};
use serde_json::Value;

use super::authz::{Authorizer, Request, MASTERS};
use super::rbac;
use super::UserInfo;
use crate::status::ApiError;

const GROUP: &str = "rbac.authorization.k8s.io";

fn quoted(items: &Option<Vec<String>>) -> String {
    items
        .iter()
        .flatten()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A rule as kube-apiserver prints it in the refusal (`PolicyRule.CompactString`).
fn compact(rule: &PolicyRule) -> String {
    let mut parts = Vec::new();
    if rule.api_groups.as_ref().is_some_and(|g| !g.is_empty()) {
        parts.push(format!("APIGroups:[{}]", quoted(&rule.api_groups)));
    }
    if rule.resources.as_ref().is_some_and(|r| !r.is_empty()) {
        parts.push(format!("Resources:[{}]", quoted(&rule.resources)));
    }
    if rule.resource_names.as_ref().is_some_and(|r| !r.is_empty()) {
        parts.push(format!("ResourceNames:[{}]", quoted(&rule.resource_names)));
    }
    if rule
        .non_resource_urls
        .as_ref()
        .is_some_and(|u| !u.is_empty())
    {
        parts.push(format!(
            "NonResourceURLs:[{}]",
            quoted(&rule.non_resource_urls)
        ));
    }
    parts.push(format!("Verbs:[{}]", quoted(&Some(rule.verbs.clone()))));
    format!("{{{}}}", parts.join(", "))
}

fn forbidden(resource: &str, name: &str, message: String) -> ApiError {
    ApiError::forbidden(
        format!("{resource}.{GROUP} {name:?} is forbidden: {message}"),
        name,
        GROUP,
        resource,
    )
}

/// ConfirmNoEscalation: the user's own rules in `namespace` cover `rules`.
fn confirm_no_escalation(
    authorizer: &Authorizer,
    user: &UserInfo,
    namespace: &str,
    rules: &[PolicyRule],
    resource: &str,
    name: &str,
) -> Result<(), ApiError> {
    let (owned, errors) = authorizer.policy().rules_for(user, namespace);
    let missing = rbac::uncovered_rules(&owned, rules);
    if missing.is_empty() {
        return Ok(());
    }
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    let mut message = format!(
        "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        groups.join(" "),
        missing.iter().map(compact).collect::<Vec<_>>().join("\n")
    );
    if !errors.is_empty() {
        message.push_str(&format!("; resolution errors: [{}]", errors.join(", ")));
    }
    Err(forbidden(resource, name, message))
}

fn allowed(
    authorizer: &Authorizer,
    user: &UserInfo,
    verb: &str,
    namespace: &str,
    resource: &str,
    name: &str,
) -> bool {
    let request = Request {
        verb: verb.into(),
        resource_request: true,
        namespace: namespace.into(),
        api_group: GROUP.into(),
        resource: resource.into(),
        name: name.into(),
        ..Request::default()
    };
    authorizer.authorize(user, &request).is_ok()
}

/// The rules a binding's `roleRef` grants, as the authorizer would resolve them.
fn referenced_rules(
    authorizer: &Authorizer,
    role_ref: &RoleRef,
    namespace: &str,
) -> Option<Vec<PolicyRule>> {
    let policy = authorizer.policy();
    match role_ref.kind.as_str() {
        "ClusterRole" => policy
            .cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(role_ref.name.as_str()))
            .map(|r| r.rules.clone().unwrap_or_default()),
        "Role" => policy
            .roles
            .iter()
            .find(|r| {
                r.metadata.name.as_deref() == Some(role_ref.name.as_str())
                    && r.metadata.namespace.as_deref() == Some(namespace)
            })
            .map(|r| r.rules.clone().unwrap_or_default()),
        _ => None,
    }
}

fn decode<T: serde::de::DeserializeOwned>(object: &Value) -> Result<T, ApiError> {
    serde_json::from_value(object.clone())
        .map_err(|e| ApiError::bad_request(format!("the object does not decode: {e}")))
}

/// Refuses a write of an RBAC object that would grant `user` more than they hold. `kind` is
/// the object's kind; other kinds pass.
pub fn check(
    authorizer: &Authorizer,
    user: &UserInfo,
    kind: &str,
    namespace: &str,
    object: &Value,
) -> Result<(), ApiError> {
    // EscalationAllowed: the privileged group may grant anything.
    if user.groups.iter().any(|g| g == MASTERS) {
        return Ok(());
    }
    let name = crate::objects::name_of(object).to_owned();
    match kind {
        "Role" => {
            if allowed(authorizer, user, "escalate", namespace, "roles", &name) {
                return Ok(());
            }
            let role: Role = decode(object)?;
            let rules = role.rules.unwrap_or_default();
            confirm_no_escalation(authorizer, user, namespace, &rules, "roles", &name)
        }
        "ClusterRole" => {
            if allowed(authorizer, user, "escalate", "", "clusterroles", &name) {
                return Ok(());
            }
            let role: ClusterRole = decode(object)?;
            if role.aggregation_rule.is_some() {
                return Err(forbidden(
                    "clusterroles",
                    &name,
                    "must have cluster-admin privileges to use the aggregationRule".into(),
                ));
            }
            let rules = role.rules.unwrap_or_default();
            confirm_no_escalation(authorizer, user, "", &rules, "clusterroles", &name)
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let binding: RoleBinding = decode(object)?;
            let role_ref = binding.role_ref;
            let (resource, binding_namespace) = if kind == "RoleBinding" {
                ("rolebindings", namespace)
            } else {
                ("clusterrolebindings", "")
            };
            let role_resource = if role_ref.kind == "Role" {
                "roles"
            } else {
                "clusterroles"
            };
            if allowed(
                authorizer,
                user,
                "bind",
                binding_namespace,
                role_resource,
                &role_ref.name,
            ) {
                return Ok(());
            }
            let Some(rules) = referenced_rules(authorizer, &role_ref, binding_namespace) else {
                return Err(forbidden(
                    resource,
                    &name,
                    format!(
                        "user {:?} cannot bind {} {:?}: it does not exist, so its rules cannot be checked",
                        user.name, role_ref.kind, role_ref.name
                    ),
                ));
            };
            confirm_no_escalation(authorizer, user, binding_namespace, &rules, resource, &name)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_print_as_kube_apiserver_prints_them() {
        let rule = PolicyRule {
            api_groups: Some(vec!["apps".into()]),
            resources: Some(vec!["deployments".into()]),
            verbs: vec!["create".into(), "delete".into()],
            ..Default::default()
        };
        assert_eq!(
            compact(&rule),
            "{APIGroups:[\"apps\"], Resources:[\"deployments\"], Verbs:[\"create\", \"delete\"]}"
        );
        let rule = PolicyRule {
            non_resource_urls: Some(vec!["/metrics".into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        };
        assert_eq!(
            compact(&rule),
            "{NonResourceURLs:[\"/metrics\"], Verbs:[\"get\"]}"
        );
    }
}
