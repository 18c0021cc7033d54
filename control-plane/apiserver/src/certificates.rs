//! CertificateSigningRequests as kube-apiserver keeps them: who asked is written by the server,
//! never by the requester; the spec never changes after creation; the approver's decision
//! (`/approval`) and the signer's certificate (`/status`) are separate writes, each allowed only
//! to those RBAC lets `approve` or `sign` for the request's signer (the CertificateApproval and
//! CertificateSigning admission plugins); and nobody gets a `system:masters` certificate from the
//! API server's client signer (CertificateSubjectRestriction).
//!
//! This is how a node joins with nothing but a bootstrap token: it asks for a certificate, the
//! controller manager's approver checks it is a node asking for its own name, and the signer
//! issues it from the cluster CA.

use serde_json::{json, Map, Value};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::auth::authz::{Authorizer, Request};
use crate::auth::UserInfo;
use crate::objects::bytes_of;
use crate::status::ApiError;

pub const GROUP: &str = "certificates.k8s.io";
/// The client signer whose certificates carry any user and group the request names.
const API_SERVER_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
const MASTERS: &str = "system:masters";
/// The conditions only `/approval` may set.
const APPROVAL_CONDITIONS: [&str; 2] = ["Approved", "Denied"];

/// Create: the requester's identity goes into the spec (whatever the body said), and the
/// request starts undecided.
pub fn prepare_create(user: &UserInfo, object: &mut Value) {
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    let spec = object
        .as_object_mut()
        .map(|o| o.entry("spec").or_insert_with(|| json!({})));
    let Some(Value::Object(spec)) = spec else {
        return;
    };
    spec.insert("username".into(), Value::String(user.name.clone()));
    spec.remove("uid");
    if !user.uid.is_empty() {
        spec.insert("uid".into(), Value::String(user.uid.clone()));
    }
    spec.remove("groups");
    if !user.groups.is_empty() {
        spec.insert("groups".into(), json!(user.groups));
    }
    spec.remove("extra");
    if !user.extra.is_empty() {
        spec.insert("extra".into(), json!(user.extra));
    }
}

fn condition_list(object: &Value) -> Vec<Value> {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn is_approval(condition: &Value) -> bool {
    condition
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| APPROVAL_CONDITIONS.contains(&t))
}

fn status_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    let map = object.as_object_mut()?;
    map.entry("status")
        .or_insert_with(|| json!({}))
        .as_object_mut()
}

/// kube's three update strategies. A plain update changes metadata only; `/status` changes the
/// certificate and the conditions other than Approved and Denied; `/approval` changes the
/// conditions only. Condition timestamps the writer left out are filled in.
pub fn update_scope(old: &Value, new: &mut Value, subresource: Option<&str>) {
    if let Some(spec) = old.get("spec") {
        new["spec"] = spec.clone();
    }
    match subresource {
        Some("status") => {
            let kept = condition_list(old).into_iter().filter(is_approval);
            let mine = condition_list(new).into_iter().filter(|c| !is_approval(c));
            let conditions: Vec<Value> = kept.chain(mine).collect();
            if let Some(status) = status_mut(new) {
                status.insert("conditions".into(), Value::Array(conditions));
            }
        }
        Some("approval") => {
            let conditions = condition_list(new);
            let mut status = old.get("status").cloned().unwrap_or_else(|| json!({}));
            status["conditions"] = Value::Array(conditions);
            new["status"] = status;
        }
        _ => match old.get("status") {
            Some(status) => new["status"] = status.clone(),
            None => {
                if let Some(map) = new.as_object_mut() {
                    map.remove("status");
                }
            }
        },
    }
    fill_condition_times(old, new);
    if let Some(status) = new.get_mut("status").and_then(Value::as_object_mut) {
        if status
            .get("conditions")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
        {
            status.remove("conditions");
        }
        if status.is_empty() {
            if let Some(map) = new.as_object_mut() {
                map.remove("status");
            }
        }
    }
}

/// kube's populateConditionTimestamps: a new or changed condition gets `lastUpdateTime`, and
/// `lastTransitionTime` when its status changed (or it is new).
fn fill_condition_times(old: &Value, new: &mut Value) {
    let before = condition_list(old);
    let now = crate::objects::now_rfc3339();
    let Some(conditions) = new
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for condition in conditions {
        let kind = condition.get("type").cloned();
        let previous = before.iter().find(|c| c.get("type") == kind.as_ref());
        let Some(map) = condition.as_object_mut() else {
            continue;
        };
        let unset = |map: &Map<String, Value>, key: &str| {
            map.get(key).is_none_or(|v| v.is_null() || v == "")
        };
        if unset(map, "lastUpdateTime") {
            map.insert("lastUpdateTime".into(), Value::String(now.clone()));
        }
        if unset(map, "lastTransitionTime") {
            let carried = previous
                .filter(|p| p.get("status") == map.get("status"))
                .and_then(|p| p.get("lastTransitionTime"))
                .filter(|t| !t.is_null());
            let time = carried.cloned().unwrap_or(Value::String(now.clone()));
            map.insert("lastTransitionTime".into(), time);
        }
    }
}

fn signer_of(object: &Value) -> &str {
    object
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// May `user` `verb` (approve, sign) for `signer`: the signer by name, or its domain's
/// wildcard `example.com/*`, as kube's `IsAuthorizedForSignerName` asks.
fn authorized_for_signer(
    authorizer: &Authorizer,
    user: &UserInfo,
    verb: &str,
    signer: &str,
) -> bool {
    let ask = |name: &str| {
        authorizer
            .authorize(
                user,
                &Request {
                    verb: verb.into(),
                    resource_request: true,
                    api_group: GROUP.into(),
                    resource: "signers".into(),
                    name: name.into(),
                    ..Request::default()
                },
            )
            .is_ok()
    };
    ask(signer)
        || signer
            .split_once('/')
            .is_some_and(|(domain, _)| ask(&format!("{domain}/*")))
}

fn forbidden(object: &Value, message: String) -> ApiError {
    let name = crate::objects::name_of(object);
    ApiError::forbidden(
        format!("certificatesigningrequests.{GROUP} {name:?} is forbidden: {message}"),
        name,
        GROUP,
        "certificatesigningrequests",
    )
}

/// The three admission plugins. `old` is None on create.
pub fn admit(
    authorizer: &Authorizer,
    user: &UserInfo,
    old: Option<&Value>,
    new: &Value,
    subresource: Option<&str>,
) -> Result<(), ApiError> {
    let signer = signer_of(new);
    match (old, subresource) {
        (None, _) => subject_restriction(new, signer),
        (Some(_), Some("approval")) => {
            if authorized_for_signer(authorizer, user, "approve", signer) {
                Ok(())
            } else {
                Err(forbidden(
                    new,
                    format!("user not permitted to approve requests with signerName {signer:?}"),
                ))
            }
        }
        (Some(old), Some("status")) => {
            let certificate = |o: &Value| o.pointer("/status/certificate").cloned();
            if certificate(old) == certificate(new)
                || authorized_for_signer(authorizer, user, "sign", signer)
            {
                Ok(())
            } else {
                Err(forbidden(
                    new,
                    format!("user not permitted to sign requests with signerName {signer:?}"),
                ))
            }
        }
        _ => Ok(()),
    }
}

/// CertificateSubjectRestriction: the API server's client signer would make a cluster
/// administrator of anyone approved for `O=system:masters`.
fn subject_restriction(object: &Value, signer: &str) -> Result<(), ApiError> {
    if signer != API_SERVER_CLIENT_SIGNER {
        return Ok(());
    }
    // Validation ran first and checked the request's signature; one that does not parse was
    // refused there, so there is nothing to restrict.
    let Some(pem) = bytes_of(object.pointer("/spec/request")) else {
        return Ok(());
    };
    let Ok((_, block)) = x509_parser::pem::parse_x509_pem(&pem) else {
        return Ok(());
    };
    let Ok((_, request)) = X509CertificationRequest::from_der(&block.contents) else {
        return Ok(());
    };
    let masters = request
        .certification_request_info
        .subject
        .iter_organization()
        .any(|o| o.as_str().is_ok_and(|o| o == MASTERS));
    if masters {
        return Err(forbidden(
            object,
            format!("use of {API_SERVER_CLIENT_SIGNER} signer with {MASTERS} group is not allowed"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
