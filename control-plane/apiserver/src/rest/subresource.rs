//! The subresources: `status`, `scale`
//! (autoscaling/v1 Scale, which `kubectl scale` patches), `binding` (how a scheduler places a
//! pod). `log` and `eviction` need the nodes joined to the control plane and answer 503 until
//! then.

use std::sync::Arc;

use serde_json::{json, Value};

use super::patch::{apply_patch, parse_patch, patch};
use super::write::{guaranteed_update, patch_precondition};
use super::{dry_run, name_of, namespace_of, read, Api, Request};
use crate::objects::{self, meta_str};
use crate::reply::{Format, Reply};
use crate::request::{ResourceRequest, Verb};
use crate::status::ApiError;

fn to_scale(object: &Value) -> Value {
    let meta = object.get("metadata").cloned().unwrap_or(json!({}));
    let pick = |k: &str| meta.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": pick("name"),
            "namespace": pick("namespace"),
            "uid": pick("uid"),
            "resourceVersion": pick("resourceVersion"),
            "creationTimestamp": pick("creationTimestamp"),
        },
        "spec": {"replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            // kube-apiserver's `LabelSelectorAsSelector(…).String()`: requirements sorted by key.
            "selector": crate::table::selector::selector_string(object.pointer("/spec/selector")).unwrap_or_default(),
        },
    })
}

fn replicas_of(scale: &Value) -> Result<i64, ApiError> {
    match scale.pointer("/spec/replicas") {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(r) if (0..=i32::MAX as i64).contains(&r) => Ok(r),
            _ => Err(ApiError::bad_request(format!(
                "spec.replicas: Invalid value: {n}: must be greater than or equal to 0"
            ))),
        },
        None | Some(Value::Null) => Ok(0),
        Some(other) => Err(ApiError::bad_request(format!(
            "spec.replicas: Invalid value: {other}: must be an integer"
        ))),
    }
}

async fn scale(
    api: &Arc<Api>,
    target: &ResourceRequest,
    request: &Request,
) -> Result<Reply, ApiError> {
    let info = target.info;
    let name = name_of(target)?;
    let scale_patch = match target.verb {
        Verb::Get => {
            let reply = read_object(api, target).await?;
            return Ok(Reply::json(200, to_scale(&reply)));
        }
        Verb::Patch => Some(parse_patch(info, request, "Scale", "autoscaling")?),
        Verb::Update => None,
        _ => {
            return Err(ApiError::method_not_allowed(
                "scale supports get, update and patch",
            ))
        }
    };
    let body = if scale_patch.is_none() {
        Some(objects::parse_body(&request.body, &request.content_type)?.value)
    } else {
        None
    };
    let (object, _) = guaranteed_update(
        api,
        info,
        namespace_of(target),
        name,
        dry_run(&request.query)?,
        |old| {
            let current = to_scale(old);
            let desired = match (&scale_patch, &body) {
                (Some(p), _) => apply_patch(p, &current)?,
                (None, Some(b)) => b.clone(),
                (None, None) => current.clone(),
            };
            let precondition = patch_precondition(&current, &desired)?;
            let replicas = replicas_of(&desired)?;
            let mut new = old.clone();
            new["spec"]["replicas"] = json!(replicas);
            objects::carry_over(info, old, &mut new);
            Ok((new, Vec::new(), precondition))
        },
    )
    .await?;
    Ok(Reply::json(200, to_scale(&object)))
}

async fn read_object(api: &Arc<Api>, target: &ResourceRequest) -> Result<Value, ApiError> {
    let info = target.info;
    let name = name_of(target)?;
    Ok(super::read_current(api, info, namespace_of(target), name)
        .await?
        .0)
}

/// POST pods/NAME/binding: assigns the pod to a node once.
async fn binding(
    api: &Arc<Api>,
    target: &ResourceRequest,
    request: &Request,
) -> Result<Reply, ApiError> {
    let info = target.info;
    let name = name_of(target)?;
    if target.verb != Verb::Create {
        return Err(ApiError::method_not_allowed("binding supports create only"));
    }
    let body = objects::parse_body(&request.body, &request.content_type)?.value;
    let node = body
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("target.name: Required value: the node to bind to"))?
        .to_owned();
    if let Some(kind) = body.pointer("/target/kind").and_then(Value::as_str) {
        if !kind.is_empty() && kind != "Node" {
            return Err(ApiError::bad_request(format!(
                "target.kind: Unsupported value: {kind:?}: supported values: \"Node\""
            )));
        }
    }
    let uid_precondition = body
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .map(str::to_owned);
    guaranteed_update(
        api,
        info,
        namespace_of(target),
        name,
        dry_run(&request.query)?,
        |old| {
            if let Some(uid) = &uid_precondition {
                if meta_str(old, "uid") != Some(uid.as_str()) {
                    return Err(ApiError::conflict(
                        info,
                        name,
                        "the pod's UID does not match the binding's",
                    ));
                }
            }
            if meta_str(old, "deletionTimestamp").is_some() {
                return Err(ApiError::conflict(
                    info,
                    name,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            if let Some(current) = old
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                return Err(ApiError::conflict(
                    info,
                    name,
                    &format!("pod {name} is already assigned to node \"{current}\""),
                ));
            }
            let mut new = old.clone();
            new["spec"]["nodeName"] = json!(node);
            let condition = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                               "lastTransitionTime": objects::now_rfc3339()});
            let conditions = new["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut conditions: Vec<Value> = conditions
                .into_iter()
                .filter(|c| c["type"] != "PodScheduled")
                .collect();
            conditions.push(condition);
            new["status"]["conditions"] = json!(conditions);
            Ok((new, Vec::new(), None))
        },
    )
    .await?;
    Ok(Reply::json(
        201,
        crate::status::success(json!({"name": name, "kind": "pods"})),
    ))
}

/// `POST .../serviceaccounts/<name>/token` (`kubectl create token`): a token for the
/// ServiceAccount, bound to a Pod, Secret or Node if asked, which is read here so the token
/// carries its real uid and dies with it.
async fn token(
    api: &Arc<Api>,
    target: &ResourceRequest,
    request: &Request,
) -> Result<Reply, ApiError> {
    use crate::auth::service_accounts;
    let Some(signer) = api.config.token_signer.clone() else {
        return Err(ApiError::unavailable(
            "this API server has no ServiceAccount token signer",
        ));
    };
    let namespace = namespace_of(target);
    let name = name_of(target)?;
    let (account, _) = super::read_current(api, target.info, namespace, name).await?;
    let body = objects::parse_body(&request.body, &request.content_type)?.value;
    let bound = match service_accounts::requested_binding(&account, &body)? {
        None => None,
        Some(reference) => {
            let (resource, in_namespace) = match reference.kind.as_str() {
                "Pod" => ("pods", namespace),
                "Secret" => ("secrets", namespace),
                _ => ("nodes", ""),
            };
            let info = crate::resources::lookup("", "v1", resource)
                .ok_or_else(|| ApiError::internal(format!("{resource} are not served")))?;
            Some(
                super::read_current(api, info, in_namespace, &reference.name)
                    .await?
                    .0,
            )
        }
    };
    let now = jiff::Timestamp::now().as_second();
    let answer =
        service_accounts::token_request_bound(&signer, &account, &body, bound.as_ref(), now)?;
    Ok(Reply::json(201, answer))
}

pub(super) async fn handle(
    api: &Arc<Api>,
    target: &ResourceRequest,
    sub: &str,
    request: &Request,
    format: Format,
) -> Result<Reply, ApiError> {
    match (sub, target.verb) {
        ("status", Verb::Get) => read::get(api, target, request, format).await,
        ("status", Verb::Update) => super::write::update(api, target, request, format, true).await,
        ("status", Verb::Patch) => patch(api, target, request, format, true).await,
        // A CertificateSigningRequest's decision: written like status, scoped to its conditions
        // (`certificates::update_scope`), allowed to approvers of its signer.
        ("approval", Verb::Get) => read::get(api, target, request, format).await,
        ("approval", Verb::Update) => {
            super::write::update(api, target, request, format, true).await
        }
        ("approval", Verb::Patch) => patch(api, target, request, format, true).await,
        ("finalize", Verb::Update) => {
            super::write::update(api, target, request, format, false).await
        }
        ("scale", _) => scale(api, target, request).await,
        ("binding", _) => binding(api, target, request).await,
        ("token", Verb::Create) => token(api, target, request).await,
        ("log", _) => super::pod_logs::logs(api, target, request).await,
        ("eviction", _) => {
            // No Retry-After: client-go retries a 503 that has one (ten times), and this one will
            // not go away by waiting.
            let mut error = ApiError::unavailable(format!(
                "pods/{sub} is served once nodes join the control plane (not yet in this version of keel)"
            ));
            error.retry_after = None;
            Err(error)
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "{} is not allowed on {}/{sub}",
            target.verb.metric_label(),
            target.info.resource
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_carries_replicas_and_the_selector_string() {
        let deployment = json!({"metadata": {"name": "web", "namespace": "a", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"tier": "fe", "app": "web"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["a", "b"]}, {"key": "x", "operator": "DoesNotExist"}]}},
            "status": {"replicas": 2}});
        let scale = to_scale(&deployment);
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(scale["status"]["replicas"], 2);
        assert_eq!(
            scale["status"]["selector"],
            "app=web,env in (a,b),tier=fe,!x"
        );
        assert_eq!(scale["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn replicas_must_be_a_non_negative_int32() {
        assert_eq!(replicas_of(&json!({"spec": {"replicas": 4}})).ok(), Some(4));
        for bad in [
            json!({"spec": {"replicas": -1}}),
            json!({"spec": {"replicas": "3"}}),
            json!({"spec": {"replicas": 3_000_000_000i64}}),
        ] {
            assert!(replicas_of(&bad).is_err(), "{bad}");
        }
    }
}
