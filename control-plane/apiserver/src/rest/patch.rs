//! Patches, in the three formats Kubernetes defines: JSON patch (RFC 6902), JSON merge patch
//! (RFC 7396) and strategic merge patch (keel's `strategic-merge-patch` crate, with the merge
//! keys of the served kinds). A patch is applied to the newest stored object and the result
//! goes through the same checks as an update; a patch that sets `metadata.resourceVersion`
//! makes that version a precondition.

use std::sync::Arc;

use serde_json::Value;

use super::write::{admitted_update, guaranteed_update, patch_precondition};
use super::{dry_run, field_validation, name_of, namespace_of, object_reply, Api, Request};
use crate::reply::{Format, Reply};
use crate::request::ResourceRequest;
use crate::resources::ResourceInfo;
use crate::status::ApiError;

/// A patch as its content type says to read it.
pub(super) enum Patch {
    Json(json_patch::Patch),
    Merge(Value),
    Strategic(Value, &'static strategic_merge_patch::Schema),
}

pub(super) fn parse_patch(
    info: &ResourceInfo,
    request: &Request,
    kind: &str,
    group: &str,
) -> Result<Patch, ApiError> {
    let body = &request.body;
    if body.is_empty() {
        return Err(ApiError::bad_request("the patch is empty"));
    }
    match request.content_type.as_str() {
        "application/json-patch+json" => serde_json::from_slice::<json_patch::Patch>(body)
            .map(Patch::Json)
            .map_err(|e| {
                ApiError::bad_request(format!("the JSON patch could not be decoded: {e}"))
            }),
        "application/merge-patch+json" => {
            let value: Value = serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!("the merge patch could not be decoded: {e}"))
            })?;
            if !value.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            Ok(Patch::Merge(value))
        }
        "application/strategic-merge-patch+json" => {
            let schema =
                strategic_merge_patch::kubernetes::schema_for(group, kind).ok_or_else(|| {
                    ApiError::unsupported(format!(
                        "strategic merge patch is not supported for {}: use a JSON merge patch",
                        info.qualified()
                    ))
                })?;
            let value: Value = serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!(
                    "the strategic merge patch could not be decoded: {e}"
                ))
            })?;
            if !value.is_object() {
                return Err(ApiError::bad_request(
                    "a strategic merge patch must be a JSON object",
                ));
            }
            Ok(Patch::Strategic(value, schema))
        }
        // Served by `apply.rs` before it gets here; only the scale subresource asks.
        "application/apply-patch+yaml" => Err(ApiError::unsupported(format!(
            "server-side apply is not served for {}: use a merge patch",
            if kind == "Scale" {
                "the scale subresource"
            } else {
                info.kind
            }
        ))),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

pub(super) fn apply_patch(patch: &Patch, original: &Value) -> Result<Value, ApiError> {
    match patch {
        Patch::Json(ops) => {
            check_json_patch(original, &ops.0)?;
            let mut doc = original.clone();
            json_patch::patch(&mut doc, &ops.0).map_err(|e| {
                ApiError::bad_request(format!("the JSON patch could not be applied: {e}"))
            })?;
            Ok(doc)
        }
        Patch::Merge(value) => {
            let mut doc = original.clone();
            json_patch::merge(&mut doc, value);
            Ok(doc)
        }
        Patch::Strategic(value, schema) => strategic_merge_patch::apply(original, value, schema)
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "the strategic merge patch could not be applied: {e}"
                ))
            }),
    }
}

/// Operations one JSON patch may carry (kube-apiserver's limit).
const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;
/// Bytes all `copy` operations of one patch may copy together (kube-apiserver's
/// AccumulatedCopySizeLimit is of this order): each copy can double the document, so thirty
/// of them in a small body would otherwise ask for gigabytes.
const MAX_JSON_PATCH_COPY_BYTES: usize = 3 * 1024 * 1024;

/// Refuses JSON patches whose cost is out of proportion to their size: too many operations, or
/// copies that add up past the limit (measured on the document as each copy finds it).
fn check_json_patch(original: &Value, ops: &[json_patch::PatchOperation]) -> Result<(), ApiError> {
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(ApiError::bad_request(format!(
            "the JSON patch has {} operations; at most {MAX_JSON_PATCH_OPERATIONS} are allowed",
            ops.len()
        )));
    }
    if !ops
        .iter()
        .any(|op| matches!(op, json_patch::PatchOperation::Copy(_)))
    {
        return Ok(());
    }
    // Replay on a scratch copy so each copy is measured on the document it really copies from.
    let mut doc = original.clone();
    let mut copied = 0usize;
    for op in ops {
        if let json_patch::PatchOperation::Copy(copy) = op {
            let size = doc
                .pointer(copy.from.as_str())
                .map(|v| serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX))
                .unwrap_or(0);
            copied = copied.saturating_add(size);
            if copied > MAX_JSON_PATCH_COPY_BYTES {
                return Err(ApiError::bad_request(format!(
                    "the JSON patch copies more than {MAX_JSON_PATCH_COPY_BYTES} bytes in all"
                )));
            }
        }
        if json_patch::patch(&mut doc, std::slice::from_ref(op)).is_err() {
            // The real application reports the error with its context.
            return Ok(());
        }
    }
    Ok(())
}

pub(super) async fn patch(
    api: &Arc<Api>,
    target: &ResourceRequest,
    request: &Request,
    format: Format,
    status_only: bool,
) -> Result<Reply, ApiError> {
    let info = target.info;
    let name = name_of(target)?;
    if request.content_type == "application/apply-patch+yaml" {
        return super::apply::apply(api, target, request, format, status_only).await;
    }
    if request.query.get("force").is_some() {
        return Err(ApiError::invalid_options(
            "PatchOptions",
            "force",
            "FieldValueForbidden",
            "Forbidden: may not be specified for non-apply patch",
        ));
    }
    let patch = parse_patch(info, request, info.kind, info.group)?;
    let validation = field_validation(&request.query)?;
    let duplicates = crate::duplicates::find(&request.body);
    let (object, warnings) = guaranteed_update(
        api,
        info,
        namespace_of(target),
        name,
        dry_run(&request.query)?,
        |old| {
            let patched = apply_patch(&patch, old)?;
            let precondition = patch_precondition(old, &patched)?;
            let sent = super::field_manager::sent_record(old, &patched);
            let (mut new, warnings) = admitted_update(
                api,
                target,
                request,
                old,
                patched,
                &duplicates,
                validation,
                status_only,
            )?;
            super::field_manager::track(target, request, status_only, old, sent, &mut new)?;
            Ok((new, warnings, precondition))
        },
    )
    .await?;
    Ok(object_reply(info, 200, object, format).with_warnings(&warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_doubling_copy_patch_is_refused_before_it_grows() {
        let original = json!({"data": {"a": "x".repeat(1000)}});
        let mut ops = Vec::new();
        for i in 0..40 {
            ops.push(json!({"op": "copy", "from": "/data", "path": format!("/data/c{i}")}));
        }
        let patch: json_patch::Patch = serde_json::from_value(json!(ops)).expect("a patch");
        let error = check_json_patch(&original, &patch.0).expect_err("refused");
        assert!(
            error.message.contains("copies more than"),
            "{}",
            error.message
        );
        let small: json_patch::Patch =
            serde_json::from_value(json!([{"op": "copy", "from": "/data/a", "path": "/data/b"}]))
                .expect("a patch");
        assert!(check_json_patch(&original, &small.0).is_ok());
        let many: json_patch::Patch = serde_json::from_value(json!(vec![
            json!({"op": "test", "path": "/data", "value": 1});
            10_001
        ]))
        .expect("a patch");
        assert!(check_json_patch(&original, &many.0).is_err());
    }
}
