//! delete and deletecollection: at once, or by setting `deletionTimestamp` while finalizers,
//! a pod's grace period or a namespace's content hold the object; with kube's preconditions
//! (uid, resourceVersion) and propagation policies recorded as the garbage collector's
//! finalizers.

use std::sync::Arc;

use serde_json::{json, Value};

use super::write::UPDATE_ATTEMPTS;
use super::{
    decode_stored, dry_run, name_of, namespace_of, object_reply, read_current, Api, Request,
};
use crate::objects::{self, meta_mut, meta_str, now_rfc3339};
use crate::reply::{Format, Reply};
use crate::request::ResourceRequest;
use crate::resources::ResourceInfo;
use crate::service_ips;
use crate::status::ApiError;
use crate::storage::StorageError;

/// What DeleteOptions (body or query) ask for.
struct DeleteOptions {
    grace_period: Option<i64>,
    propagation: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    dry_run: bool,
}

fn delete_options(request: &Request) -> Result<DeleteOptions, ApiError> {
    let body: Value = if request.body.is_empty() {
        Value::Null
    } else {
        objects::parse_body(&request.body, &request.content_type)?.value
    };
    let grace_period = match body.get("gracePeriodSeconds") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::Null) | None => request.query.int("gracePeriodSeconds")?,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "gracePeriodSeconds: Invalid value: {other}: must be an integer"
            )))
        }
    };
    if grace_period.is_some_and(|g| g < 0) {
        return Err(ApiError::bad_request(
            "gracePeriodSeconds: Invalid value: must be greater than or equal to 0",
        ));
    }
    let propagation = body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or(request.query.get("propagationPolicy"))
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    if let Some(p) = &propagation {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
    }
    let preconditions = body.get("preconditions");
    let body_dry_run = body
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v == "All"));
    Ok(DeleteOptions {
        grace_period,
        propagation,
        uid: preconditions
            .and_then(|p| p.get("uid"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        resource_version: preconditions
            .and_then(|p| p.get("resourceVersion"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        dry_run: body_dry_run || dry_run(&request.query)?,
    })
}

/// Deletes one object: at once, or by setting `deletionTimestamp` when finalizers or a pod's
/// grace period hold it. Returns the object as it was last seen.
async fn delete_one(
    api: &Arc<Api>,
    info: &ResourceInfo,
    namespace: &str,
    name: &str,
    options: &DeleteOptions,
) -> Result<Value, ApiError> {
    let key = info.key(namespace, name);
    for _ in 0..UPDATE_ATTEMPTS {
        let (old, revision) = read_current(api, info, namespace, name).await?;
        if let Some(uid) = &options.uid {
            let actual = meta_str(&old, "uid").unwrap_or("");
            if uid != actual {
                return Err(ApiError::conflict(
                    info,
                    name,
                    &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
                ));
            }
        }
        if let Some(rv) = &options.resource_version {
            if *rv != revision.to_string() {
                return Err(ApiError::conflict(
                    info,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        revision
                    ),
                ));
            }
        }
        let mut new = old.clone();
        let mut finalizers = objects::finalizers(&old);
        let wanted = match options.propagation.as_deref() {
            Some("Foreground") => Some("foregroundDeletion"),
            Some("Orphan") => Some("orphan"),
            _ => None,
        };
        if let Some(f) = wanted {
            if !finalizers.iter().any(|x| x == f) {
                finalizers.push(f.to_owned());
            }
        }
        // A pod on a node gets its grace period: the node stops it, then deletes it.
        let pod_grace = if info.kind == "Pod"
            && old
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty())
        {
            let grace = options.grace_period.unwrap_or_else(|| {
                old.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(30)
            });
            (grace > 0).then_some(grace)
        } else {
            None
        };
        // A namespace goes once the controllers named in `spec.finalizers` emptied it: until
        // then it is `Terminating`, and the namespace controller finalizes it.
        let namespace_held =
            info.kind == "Namespace" && !objects::namespace_finalizers(&old).is_empty();
        if namespace_held && meta_str(&old, "deletionTimestamp").is_some() {
            return Err(ApiError::conflict(
                info,
                name,
                "The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system.",
            ));
        }
        if finalizers.is_empty() && pod_grace.is_none() && !namespace_held {
            if options.dry_run {
                return Ok(old);
            }
            let released = service_ips::released_by(info, &old);
            match api
                .storage
                .delete_releasing(&key, revision, &released)
                .await
            {
                Ok(_) => return Ok(old),
                Err(StorageError::Conflict) => continue,
                Err(StorageError::NotFound) => return Err(ApiError::not_found(info, name)),
                Err(e) => return Err(e.into()),
            }
        }
        let meta = meta_mut(&mut new);
        if meta.get("deletionTimestamp").is_none() {
            let at = match pod_grace {
                Some(g) => crate::objects::rfc3339(
                    jiff::Timestamp::now()
                        .checked_add(jiff::SignedDuration::from_secs(g))
                        .unwrap_or_else(|_| jiff::Timestamp::now()),
                ),
                None => now_rfc3339(),
            };
            meta.insert("deletionTimestamp".into(), json!(at));
            meta.insert(
                "deletionGracePeriodSeconds".into(),
                json!(pod_grace.unwrap_or(0)),
            );
        }
        if !finalizers.is_empty() {
            meta.insert("finalizers".into(), json!(finalizers));
        }
        if namespace_held {
            new["status"]["phase"] = json!("Terminating");
        }
        if new == old || options.dry_run {
            return Ok(new);
        }
        match api
            .storage
            .update(&key, super::stored_bytes(info, &new)?, revision)
            .await
        {
            Ok(revision) => return Ok(objects::with_revision(new, revision)),
            Err(StorageError::Conflict) => continue,
            Err(StorageError::NotFound) => return Err(ApiError::not_found(info, name)),
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(
        info,
        name,
        "the object kept changing while it was being deleted; try again",
    ))
}

pub(super) async fn delete(
    api: &Arc<Api>,
    target: &ResourceRequest,
    request: &Request,
    format: Format,
) -> Result<Reply, ApiError> {
    let info = target.info;
    let name = name_of(target)?;
    let options = delete_options(request)?;
    // NamespaceLifecycle: the namespaces every cluster relies on are never deleted.
    if info.kind == "Namespace" && IMMORTAL_NAMESPACES.contains(&name) {
        return Err(ApiError::forbidden(
            format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted"),
            name,
            "",
            "namespaces",
        ));
    }
    let object = delete_one(api, info, namespace_of(target), name, &options).await?;
    Ok(object_reply(info, 200, object, format))
}

/// kube-apiserver's immortal namespaces (kube-node-lease is not among them).
const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

pub(super) async fn delete_collection(
    api: &Arc<Api>,
    target: &ResourceRequest,
    request: &Request,
    format: Format,
) -> Result<Reply, ApiError> {
    let info = target.info;
    let options = delete_options(request)?;
    let filter = super::read::Filter::parse(info, request)?;
    let page = api
        .storage
        .list(&info.list_prefix(target.namespace.as_deref()), None, 0, 0)
        .await?;
    let mut deleted = Vec::new();
    for stored in page.items {
        // Selected in the stored form, which the field selector was converted to.
        let object = decode_stored(&stored)?;
        if !filter.matches(&object) {
            continue;
        }
        let name = objects::name_of(&object).to_owned();
        let namespace = meta_str(&object, "namespace").unwrap_or("").to_owned();
        match delete_one(api, info, &namespace, &name, &options).await {
            Ok(object) => deleted.push(object),
            Err(e) if e.code == 404 => {}
            // A namespace already terminating is on its way: deleting it again is no error
            // when it is one of many.
            Err(e) if e.code == 409 && info.kind == "Namespace" => {}
            Err(e) => return Err(e),
        }
    }
    let list = json!({
        "kind": info.list_kind,
        "apiVersion": info.api_version(),
        "metadata": {"resourceVersion": page.revision.to_string()},
        "items": deleted,
    });
    Ok(match format {
        Format::Yaml => object_reply(info, 200, list, Format::Yaml),
        _ => Reply::json(200, list),
    })
}
