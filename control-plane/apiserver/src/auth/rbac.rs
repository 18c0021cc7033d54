//! Role-based access control, decided exactly as kube-apiserver's RBAC authorizer decides it.
//!
//! kubectl, controllers and operators are written against Kubernetes' answers: which request
//! gets a 403, what `kubectl auth can-i --list` prints, when creating a Role is an escalation.
//! So this module ports the rules rather than inventing its own: rule matching from
//! `pkg/apis/rbac/v1/evaluation_helpers.go` and `plugin/pkg/auth/authorizer/rbac/rbac.go`,
//! binding resolution from `pkg/registry/rbac/validation/rule.go`, the escalation check from
//! `component-helpers/auth/rbac/validation/policy_comparator.go`, and role aggregation from the
//! clusterrole-aggregation controller.
//!
//! Everything here is a pure function over k8s-openapi types. The API server snapshots its
//! watch caches into a [`Policy`]; deciding a request then takes no locks and no I/O, and the
//! semantics are testable without a server.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The authenticated user, as Kubernetes' `user.Info`: authentication's own type, so what it
/// established is exactly what RBAC reads.
pub use super::UserInfo;

/// The API group of the RBAC kinds, and of `User` and `Group` subjects.
pub const GROUP_NAME: &str = "rbac.authorization.k8s.io";
/// The wildcard of verbs, apiGroups, resources and nonResourceURLs.
pub const ALL: &str = "*";
/// Service account tokens authenticate as `system:serviceaccount:<namespace>:<name>`.
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// What a request asks, as Kubernetes' `authorizer.Attributes`.
#[derive(Clone, Copy, Debug)]
pub struct Attributes<'a> {
    pub user: &'a UserInfo,
    /// get list watch create update patch delete deletecollection, or impersonate/bind/escalate/
    /// use; for non-resource requests the lower-cased HTTP method (get, post, put, delete...).
    pub verb: &'a str,
    pub resource_request: bool,
    /// "" for cluster-scoped requests and requests across all namespaces.
    pub namespace: &'a str,
    pub api_group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub name: &'a str,
    /// The URL path of a non-resource request.
    pub path: &'a str,
}

/// RBAC's answer. Kubernetes' RBAC never denies outright, it has "no opinion"; with RBAC as
/// the last authorizer in the chain that is a 403.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Why nothing allowed the request. When bindings could not be resolved (a binding to a
    /// role that does not exist) this is Kubernetes' own reason, `RBAC: <errors>`, which
    /// kube-apiserver appends to the 403 message; otherwise a sentence for logs in the words
    /// of the RBAC authorizer's verbose log line (kube-apiserver's 403 carries no reason then).
    Deny(String),
}

/// A snapshot of the RBAC objects the authorizer evaluates against (the API server builds it
/// from its watch caches).
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub roles: Vec<Role>,
    pub cluster_roles: Vec<ClusterRole>,
    pub role_bindings: Vec<RoleBinding>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
}

/// One step of walking the rules that apply to a user: a rule, or a binding that could not be
/// resolved.
enum Visit<'p> {
    Rule(&'p PolicyRule),
    Error(String),
}

impl Policy {
    /// Decides `attrs`: allowed as soon as one rule that applies to the user in the request's
    /// namespace allows it; rules are additive, there is no deny rule.
    pub fn authorize(&self, attrs: &Attributes<'_>) -> Decision {
        let mut allowed = false;
        let mut errors = Vec::new();
        self.visit_rules_for(
            attrs.user,
            attrs.namespace,
            &mut |visit: Visit<'_>| match visit {
                Visit::Rule(rule) if rule_allows(attrs, rule) => {
                    allowed = true;
                    false
                }
                Visit::Rule(_) => true,
                Visit::Error(err) => {
                    errors.push(err);
                    true
                }
            },
        );
        if allowed {
            Decision::Allow
        } else if errors.is_empty() {
            Decision::Deny(describe_denial(attrs))
        } else {
            Decision::Deny(format!("RBAC: {}", aggregate_errors(&errors)))
        }
    }

    /// The rules that apply to `user` in `namespace` (for SelfSubjectRulesReview): the rules of
    /// every cluster role binding naming the user, then, when `namespace` is non-empty, those
    /// of that namespace's role bindings naming the user; and the bindings that could not be
    /// resolved. As Kubernetes' `RulesFor`, the rules are still valid when there are errors,
    /// only perhaps incomplete.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        self.visit_rules_for(user, namespace, &mut |visit: Visit<'_>| {
            match visit {
                Visit::Rule(rule) => rules.push(rule.clone()),
                Visit::Error(err) => errors.push(err),
            }
            true
        });
        (rules, errors)
    }

    /// Walks the rules that apply to `user` in `namespace`, cluster role bindings first, until
    /// `visitor` returns false (the DefaultRuleResolver's `VisitRulesFor`).
    fn visit_rules_for<'p>(
        &'p self,
        user: &UserInfo,
        namespace: &str,
        visitor: &mut dyn FnMut(Visit<'p>) -> bool,
    ) {
        for binding in &self.cluster_role_bindings {
            // A cluster role binding has no namespace to default a ServiceAccount subject's to.
            if applies_to(user, items(&binding.subjects), "")
                && !self.visit_role_ref(&binding.role_ref, "", visitor)
            {
                return;
            }
        }
        // Role bindings grant only within their own namespace, so they never count for
        // cluster-scoped, all-namespaces or non-resource requests.
        if namespace.is_empty() {
            return;
        }
        let in_namespace = self
            .role_bindings
            .iter()
            .filter(|binding| binding.metadata.namespace.as_deref() == Some(namespace));
        for binding in in_namespace {
            if applies_to(user, items(&binding.subjects), namespace)
                && !self.visit_role_ref(&binding.role_ref, namespace, visitor)
            {
                return;
            }
        }
    }

    /// Visits the rules `role_ref` names; false when the visitor asked to stop.
    fn visit_role_ref<'p>(
        &'p self,
        role_ref: &RoleRef,
        namespace: &str,
        visitor: &mut dyn FnMut(Visit<'p>) -> bool,
    ) -> bool {
        match self.role_ref_rules(role_ref, namespace) {
            Ok(rules) => rules.iter().all(|rule| visitor(Visit::Rule(rule))),
            Err(err) => visitor(Visit::Error(err)),
        }
    }

    /// The rules of the role a binding in `namespace` ("" for a cluster role binding) refers
    /// to. A Role is looked up in the binding's namespace; a ClusterRole referenced from a
    /// RoleBinding contributes its rules, which then apply in that namespace only.
    fn role_ref_rules(&self, role_ref: &RoleRef, namespace: &str) -> Result<&[PolicyRule], String> {
        let name = role_ref.name.as_str();
        match role_ref.kind.as_str() {
            "Role" => self
                .roles
                .iter()
                .find(|role| {
                    !namespace.is_empty()
                        && role.metadata.namespace.as_deref() == Some(namespace)
                        && role.metadata.name.as_deref() == Some(name)
                })
                .map(|role| items(&role.rules))
                .ok_or_else(|| format!("role.{GROUP_NAME} \"{name}\" not found")),
            "ClusterRole" => self
                .cluster_roles
                .iter()
                .find(|role| role.metadata.name.as_deref() == Some(name))
                .map(|role| items(&role.rules))
                .ok_or_else(|| format!("clusterrole.{GROUP_NAME} \"{name}\" not found")),
            kind => Err(format!("unsupported role reference kind: \"{kind}\"")),
        }
    }
}

/// Whether `rule` allows the request (Kubernetes' `RuleAllows`). A rule with only
/// nonResourceURLs never matches a resource request (it has no resources) and a rule with
/// only resources never matches a non-resource request (it has no URLs).
pub fn rule_allows(attrs: &Attributes<'_>, rule: &PolicyRule) -> bool {
    if !rule
        .verbs
        .iter()
        .any(|verb| verb == ALL || verb == attrs.verb)
    {
        return false;
    }
    if !attrs.resource_request {
        return items(&rule.non_resource_urls)
            .iter()
            .any(|url| url_matches(url, attrs.path));
    }
    items(&rule.api_groups)
        .iter()
        .any(|group| group == ALL || group == attrs.api_group)
        && resource_matches(rule, attrs.resource, attrs.subresource)
        && resource_name_matches(rule, attrs.name)
}

/// `*`, the exact `resource` or `resource/subresource`, or `*/subresource`: that subresource
/// of any resource. `pods` does not match `pods/status`, nor `pods/*` anything.
fn resource_matches(rule: &PolicyRule, resource: &str, subresource: &str) -> bool {
    items(&rule.resources).iter().any(|listed| {
        if listed == ALL {
            return true;
        }
        if subresource.is_empty() {
            return listed == resource;
        }
        listed
            .strip_prefix(resource)
            .and_then(|rest| rest.strip_prefix('/'))
            == Some(subresource)
            || listed.strip_prefix("*/") == Some(subresource)
    })
}

/// No resourceNames means every name. Otherwise the name must be listed, so such a rule never
/// allows a request without a name (list, watch, create, deletecollection).
fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    let names = items(&rule.resource_names);
    names.is_empty() || names.iter().any(|listed| listed == name)
}

/// A nonResourceURL pattern: `*`, an exact path, or a prefix ending in `*` (`/healthz/*`
/// matches `/healthz/etcd` but not `/healthz`). Both matching and covering use this.
fn url_matches(pattern: &str, path: &str) -> bool {
    pattern == path || (pattern.ends_with('*') && path.starts_with(pattern.trim_end_matches('*')))
}

/// Whether any subject names the user (`appliesTo`); `namespace` is the role binding's, or ""
/// for a cluster role binding. Subjects' apiGroup is not consulted, as in Kubernetes.
fn applies_to(user: &UserInfo, subjects: &[Subject], namespace: &str) -> bool {
    subjects.iter().any(|subject| match subject.kind.as_str() {
        // "*" is a name like any other: no subject matches every user.
        "User" => user.name == subject.name,
        "Group" => user.groups.contains(&subject.name),
        "ServiceAccount" => {
            // A role binding's ServiceAccount subject without a namespace means the binding's
            // namespace; in a cluster role binding there is none to default to, so no match.
            let sa_namespace = match subject.namespace.as_deref() {
                Some(ns) if !ns.is_empty() => ns,
                _ => namespace,
            };
            !sa_namespace.is_empty()
                && user
                    .name
                    .strip_prefix(SERVICE_ACCOUNT_PREFIX)
                    .and_then(|rest| rest.strip_prefix(sa_namespace))
                    .and_then(|rest| rest.strip_prefix(':'))
                    == Some(subject.name.as_str())
        }
        _ => false,
    })
}

/// The RBAC authorizer's verbose log line for a denial.
/// How a denial without evaluation errors begins (reviews leave such a reason out).
pub const NO_RULES: &str = "RBAC: no rules authorize";

fn describe_denial(attrs: &Attributes<'_>) -> String {
    let operation = if attrs.resource_request {
        let mut target = attrs.resource.to_string();
        if !attrs.api_group.is_empty() {
            target = format!("{target}.{}", attrs.api_group);
        }
        if !attrs.subresource.is_empty() {
            target = format!("{target}/{}", attrs.subresource);
        }
        let mut operation = format!("{:?} resource {target:?}", attrs.verb);
        if !attrs.name.is_empty() {
            operation = format!("{operation} named {:?}", attrs.name);
        }
        operation
    } else {
        format!("{:?} nonResourceURL {:?}", attrs.verb, attrs.path)
    };
    let scope = if attrs.namespace.is_empty() {
        "cluster-wide".to_string()
    } else {
        format!("in namespace {:?}", attrs.namespace)
    };
    let groups: Vec<String> = attrs.user.groups.iter().map(|g| format!("{g:?}")).collect();
    format!(
        "{NO_RULES} user {:?} with groups [{}] to {operation} {scope}",
        attrs.user.name,
        groups.join(" ")
    )
}

/// Errors joined as apimachinery's aggregate error prints them: one message alone, several
/// deduplicated in brackets.
fn aggregate_errors(errors: &[String]) -> String {
    let mut unique: Vec<&str> = Vec::new();
    for err in errors {
        if !unique.contains(&err.as_str()) {
            unique.push(err);
        }
    }
    match unique.as_slice() {
        [only] => only.to_string(),
        all => format!("[{}]", all.join(", ")),
    }
}

/// Whether `owner_rules` allow everything `requested` allows (`validation.Covers`): the
/// escalation check. A user may create or update a Role only if they hold its permissions (or
/// have `escalate`), and bind one only if they hold its permissions (or have `bind`).
pub fn covers(owner_rules: &[PolicyRule], requested: &[PolicyRule]) -> bool {
    uncovered_rules(owner_rules, requested).is_empty()
}

/// The atoms of `requested` (see [`breakdown_rule`]) no owner rule covers, for the
/// "attempting to grant RBAC permissions not currently held" message.
pub fn uncovered_rules(owner_rules: &[PolicyRule], requested: &[PolicyRule]) -> Vec<PolicyRule> {
    requested
        .iter()
        .flat_map(breakdown_rule)
        .filter(|atom| !owner_rules.iter().any(|owner| rule_covers(owner, atom)))
        .collect()
}

/// Splits a rule into rules of one apiGroup, one resource, one verb and at most one
/// resourceName, plus one rule per nonResourceURL and verb. Each atom is then covered by a
/// single owner rule or not at all, which a whole rule need not be.
pub fn breakdown_rule(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut atoms = Vec::new();
    let names = items(&rule.resource_names);
    for group in items(&rule.api_groups) {
        for resource in items(&rule.resources) {
            for verb in &rule.verbs {
                let atom = |resource_names: Option<Vec<String>>| PolicyRule {
                    api_groups: Some(vec![group.clone()]),
                    resources: Some(vec![resource.clone()]),
                    verbs: vec![verb.clone()],
                    resource_names,
                    non_resource_urls: None,
                };
                if names.is_empty() {
                    atoms.push(atom(None));
                } else {
                    atoms.extend(names.iter().map(|name| atom(Some(vec![name.clone()]))));
                }
            }
        }
    }
    for url in items(&rule.non_resource_urls) {
        for verb in &rule.verbs {
            atoms.push(PolicyRule {
                non_resource_urls: Some(vec![url.clone()]),
                verbs: vec![verb.clone()],
                ..Default::default()
            });
        }
    }
    atoms
}

/// Whether `owner` covers the atom `sub`. Wildcards are literal on the requested side: only
/// `*` covers `*`, however many verbs or groups the owner enumerates.
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let has = |set: &[String], value: &str| set.iter().any(|s| s == value);
    let has_all = |set: &[String], values: &[String]| values.iter().all(|v| has(set, v));

    let verbs = has(&owner.verbs, ALL) || has_all(&owner.verbs, &sub.verbs);
    let owner_groups = items(&owner.api_groups);
    let groups = has(owner_groups, ALL) || has_all(owner_groups, items(&sub.api_groups));
    let owner_resources = items(&owner.resources);
    let resources = has(owner_resources, ALL)
        || items(&sub.resources).iter().all(|wanted| {
            has(owner_resources, wanted)
                || wanted.split_once('/').is_some_and(|(_, subresource)| {
                    has(owner_resources, &format!("*/{subresource}"))
                })
        });
    let urls = items(&sub.non_resource_urls).iter().all(|wanted| {
        items(&owner.non_resource_urls)
            .iter()
            .any(|pattern| url_matches(pattern, wanted))
    });
    // An owner limited to names never covers "every name"; an unlimited owner covers any.
    let owner_names = items(&owner.resource_names);
    let sub_names = items(&sub.resource_names);
    let names =
        owner_names.is_empty() || (!sub_names.is_empty() && has_all(owner_names, sub_names));

    verbs && groups && resources && urls && names
}

/// What the clusterrole-aggregation controller would write: every cluster role with an
/// aggregationRule whose rules are not yet the union of the roles its selectors pick, with its
/// rules replaced by that union. Selectors are taken in order, the roles each picks in name
/// order (never the role itself), their rules in order, skipping rules already taken. Roles
/// that already hold their union are not returned; a role whose selector is invalid is left
/// alone, as the controller leaves it.
///
/// Aggregated roles may select aggregated roles (`admin` picks `edit`, which picks `view`).
/// The controller converges by reacting to its own writes; this recomputes in memory until
/// nothing changes, so one call returns the converged roles.
pub fn aggregate(cluster_roles: &[ClusterRole]) -> Vec<ClusterRole> {
    let mut roles = cluster_roles.to_vec();
    let mut by_name: Vec<usize> = (0..roles.len()).collect();
    by_name.sort_by(|&a, &b| roles[a].metadata.name.cmp(&roles[b].metadata.name));
    let aggregating: Vec<usize> = by_name
        .iter()
        .copied()
        .filter(|&i| roles[i].aggregation_rule.is_some())
        .collect();

    // A chain of n aggregated roles settles within n passes; a selection cycle that never
    // settles stops there too rather than looping.
    for _ in 0..=aggregating.len() {
        let mut changed = false;
        for &i in &aggregating {
            let Ok(rules) = aggregated_rules(&roles, &by_name, i) else {
                continue;
            };
            if !same_rules(&rules, items(&roles[i].rules)) {
                // The controller applies an empty list, which reads back as `rules: null`.
                roles[i].rules = if rules.is_empty() { None } else { Some(rules) };
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    aggregating
        .into_iter()
        .filter(|&i| !same_rules(items(&roles[i].rules), items(&cluster_roles[i].rules)))
        .map(|i| roles[i].clone())
        .collect()
}

/// The union of the rules of the roles `roles[target]`'s selectors pick.
fn aggregated_rules(
    roles: &[ClusterRole],
    by_name: &[usize],
    target: usize,
) -> Result<Vec<PolicyRule>, String> {
    let role = &roles[target];
    let selectors = role
        .aggregation_rule
        .as_ref()
        .map(|rule| items(&rule.cluster_role_selectors))
        .unwrap_or(&[]);
    let mut rules: Vec<PolicyRule> = Vec::new();
    for selector in selectors {
        for &j in by_name {
            let candidate = &roles[j];
            // A role may carry the very label it selects; it never aggregates itself.
            if candidate.metadata.name == role.metadata.name
                || !selector_matches(selector, candidate.metadata.labels.as_ref())?
            {
                continue;
            }
            for rule in items(&candidate.rules) {
                if !rules.iter().any(|taken| same_rule(taken, rule)) {
                    rules.push(rule.clone());
                }
            }
        }
    }
    Ok(rules)
}

/// Whether a metav1.LabelSelector selects an object with `labels`: matchLabels and
/// matchExpressions ANDed, an empty selector selecting everything. An invalid selector is an
/// error even when an earlier requirement already failed, as converting it first would be.
pub fn selector_matches(
    selector: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<bool, String> {
    let mut matches = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| label(labels, key) == Some(value.as_str()));
    for requirement in items(&selector.match_expressions) {
        let values = items(&requirement.values);
        let current = label(labels, &requirement.key);
        let listed = current.is_some_and(|value| values.iter().any(|v| v == value));
        let matched = match requirement.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!(
                    "{}: for 'In', 'NotIn' operators, values set can't be empty",
                    requirement.key
                ))
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!(
                    "{}: values set must be empty for 'Exists', 'DoesNotExist'",
                    requirement.key
                ))
            }
            "In" => listed,
            // NotIn also selects objects without the label at all.
            "NotIn" => !listed,
            "Exists" => current.is_some(),
            "DoesNotExist" => current.is_none(),
            operator => {
                return Err(format!(
                    "{operator:?} is not a valid label selector operator"
                ))
            }
        };
        matches &= matched;
    }
    Ok(matches)
}

fn label<'a>(labels: Option<&'a BTreeMap<String, String>>, key: &str) -> Option<&'a str> {
    labels
        .and_then(|labels| labels.get(key))
        .map(String::as_str)
}

/// Rule equality as apimachinery's semantic DeepEqual: an absent list equals an empty one.
fn same_rule(a: &PolicyRule, b: &PolicyRule) -> bool {
    a.verbs == b.verbs
        && items(&a.api_groups) == items(&b.api_groups)
        && items(&a.resources) == items(&b.resources)
        && items(&a.resource_names) == items(&b.resource_names)
        && items(&a.non_resource_urls) == items(&b.non_resource_urls)
}

fn same_rules(a: &[PolicyRule], b: &[PolicyRule]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_rule(a, b))
}

/// An optional list as a slice: absent and empty mean the same in RBAC.
fn items<T>(list: &Option<Vec<T>>) -> &[T] {
    list.as_deref().unwrap_or(&[])
}

#[cfg(test)]
mod tests;
