//! The validating admission plugins that need the requester or other objects, run on every
//! create and update after defaulting and schema validation, in kube-apiserver's order:
//! LimitRanger (pod creates), NodeRestriction, PodSecurity, then RBAC's escalation check
//! (RBAC's storage). Mutations (defaults, DefaultTolerationSeconds, LimitRanger's) happened
//! before; ResourceQuota runs last, in the same transaction as the write (`write::create`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::Api;
use crate::auth::UserInfo;
use crate::pod_security::{self, Level};
use crate::resources::{self, ResourceInfo};
use crate::status::{ApiError, Cause};

/// Namespaces without PodSecurity labels are `privileged`, kube-apiserver's default.
const DEFAULT_LEVEL: Level = Level::Privileged;

fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default()
}

fn namespace_labels(api: &Api, namespace: &str) -> BTreeMap<String, String> {
    let Some(namespaces) = resources::lookup("", "v1", "namespaces") else {
        return BTreeMap::new();
    };
    api.cache(namespaces)
        .get(&namespaces.key("", namespace))
        .map(|n| labels_of(&n))
        .unwrap_or_default()
}

/// PodSecurity: a pod that violates its namespace's `enforce` level is refused; one that
/// violates `warn` (or a workload whose template does) is admitted with a warning. A
/// namespace is refused malformed PodSecurity labels. `old` is the stored object of an update.
fn pod_security(
    api: &Api,
    info: &ResourceInfo,
    namespace: &str,
    object: &Value,
    old: Option<&Value>,
) -> Result<Vec<String>, ApiError> {
    if info.kind == "Namespace" {
        return match pod_security::policy_of(&labels_of(object), DEFAULT_LEVEL) {
            Ok(_) => Ok(Vec::new()),
            Err(message) => {
                let (field, rest) = message.split_once(": ").unwrap_or(("metadata.labels", ""));
                Err(ApiError::invalid(
                    info,
                    crate::objects::name_of(object),
                    vec![Cause {
                        reason: "FieldValueInvalid",
                        message: rest.to_owned(),
                        field: field.trim_start_matches('[').to_owned(),
                    }],
                ))
            }
        };
    }
    let Some((spec, metadata)) = pod_security::pod_template_of(info.resource, object) else {
        return Ok(Vec::new());
    };
    if info.kind == "Pod" {
        if let Some(old_spec) = old.and_then(|o| o.get("spec")) {
            if !pod_security::is_significant_pod_update(spec, old_spec) {
                return Ok(Vec::new());
            }
        }
    }
    let (policy, _) =
        pod_security::policy_to_evaluate(&namespace_labels(api, namespace), DEFAULT_LEVEL);
    let mut warnings = Vec::new();
    if info.kind == "Pod" {
        let violations = pod_security::evaluate(policy.enforce, spec, metadata);
        if !violations.is_empty() {
            return Err(ApiError::pod_forbidden(
                crate::objects::name_of(object),
                pod_security::message(policy.enforce, &violations),
            ));
        }
    } else if policy.enforce > Level::Privileged {
        // Workloads are not refused (their pods will be), but told.
        let violations = pod_security::evaluate(policy.enforce, spec, metadata);
        if !violations.is_empty() {
            warnings.push(pod_security::warning(policy.enforce, &violations));
        }
    }
    if policy.warn > policy.enforce {
        let violations = pod_security::evaluate(policy.warn, spec, metadata);
        if !violations.is_empty() {
            warnings.push(pod_security::warning(policy.warn, &violations));
        }
    }
    Ok(warnings)
}

/// Runs the plugins on `object` (the object to store); the warnings to send back.
pub(super) fn validate(
    api: &Arc<Api>,
    user: &UserInfo,
    info: &ResourceInfo,
    namespace: &str,
    object: &Value,
    old: Option<&Value>,
) -> Result<Vec<String>, ApiError> {
    if let Some(old) = old {
        crate::auth::node::admit_update(user, info.kind, old, object)?;
    }
    if old.is_none() {
        if info.kind == "Pod" {
            crate::limit_ranger::validate_pod(api, namespace, object)?;
        }
        crate::auth::node::admit_create(user, info.kind, object)?;
        if info.kind == "CertificateSigningRequest" {
            crate::certificates::admit(&api.authorizer, user, None, object, None)?;
        }
    }
    let warnings = pod_security(api, info, namespace, object, old)?;
    crate::auth::escalation::check(&api.authorizer, user, info.kind, namespace, object)?;
    Ok(warnings)
}
