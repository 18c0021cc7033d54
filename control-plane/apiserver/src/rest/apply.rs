//! Server-side apply (`PATCH` with `application/apply-patch+yaml`): what `kubectl apply
//! --server-side` and kube-rs' `Patch::Apply` send. The merge, the ownership record and the
//! conflicts are the `server-side-apply` crate's; here the configuration is checked, an
//! object that does not exist yet is created from it, and the result goes through the same
//! checks as any update.

use std::sync::Arc;

use serde_json::Value;
use server_side_apply::Manager;

use super::field_manager::{self, to_api_error};
use super::write::{admitted_update, create_object, guaranteed_update, patch_precondition};
use super::{
    dry_run, field_validation, name_of, namespace_of, object_reply, read_current, Api, Request,
};
use crate::objects::{self, meta_str};
use crate::reply::{Format, Reply};
use crate::request::ResourceRequest;
use crate::status::ApiError;

/// Creates that lose a race with another create before the apply becomes an update.
const CREATE_ATTEMPTS: usize = 3;

pub(super) async fn apply(
    api: &Arc<Api>,
    target: &ResourceRequest,
    request: &Request,
    format: Format,
    status_only: bool,
) -> Result<Reply, ApiError> {
    let info = target.info;
    let name = name_of(target)?;
    let Some(manager_name) = field_manager::named(request)? else {
        return Err(ApiError::invalid_options(
            "PatchOptions",
            "fieldManager",
            "FieldValueRequired",
            "Required value: is required for apply patch",
        ));
    };
    let force = request.query.flag("force")?;
    let validation = field_validation(&request.query)?;
    let config = configuration(target, request, name)?;
    // Unknown or mistyped fields are refused (or warned of) as in any write, naming the field.
    let (_, warnings) = objects::decode(info, config.clone(), &[], validation)?;

    let api_version = info.api_version();
    let time = objects::now_rfc3339();
    let manager = Manager {
        name: &manager_name,
        api_version: &api_version,
        subresource: field_manager::subresource(target, status_only),
        time: &time,
    };
    let schema = field_manager::schema(info);
    let scope = field_manager::scope(info, status_only);

    for _ in 0..CREATE_ATTEMPTS {
        match read_current(api, info, namespace_of(target), name).await {
            Ok(_) => break,
            Err(e) if e.code == 404 && !status_only => {
                let object =
                    server_side_apply::apply(None, &config, schema, &manager, scope, force)
                        .map_err(|e| to_api_error(info, name, e))?;
                let managed = object.pointer("/metadata/managedFields").cloned();
                match create_object(api, target, request, object, &[], managed, format).await {
                    Err(e) if e.reason == "AlreadyExists" => continue,
                    created => return created.map(|reply| reply.with_warnings(&warnings)),
                }
            }
            Err(e) => return Err(e),
        }
    }

    let (object, mut update_warnings) = guaranteed_update(
        api,
        info,
        namespace_of(target),
        name,
        dry_run(&request.query)?,
        |old| {
            let merged =
                server_side_apply::apply(Some(old), &config, schema, &manager, scope, force)
                    .map_err(|e| to_api_error(info, name, e))?;
            let managed = merged.pointer("/metadata/managedFields").cloned();
            let precondition = patch_precondition(old, &merged)?;
            let (mut new, warnings) = admitted_update(
                api,
                target,
                request,
                old,
                merged,
                &[],
                validation,
                status_only,
            )?;
            if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                match managed.clone() {
                    Some(fields) => meta.insert("managedFields".into(), fields),
                    None => meta.remove("managedFields"),
                };
            }
            Ok((new, warnings, precondition))
        },
    )
    .await?;
    update_warnings.extend(warnings);
    Ok(object_reply(info, 200, object, format).with_warnings(&update_warnings))
}

/// The apply configuration from the body: an object of the URL's kind and name, without
/// `managedFields` (kube's rule: the record is the server's). Its namespace is checked against
/// the URL's where every create and update checks it (`prepare_create`, `prepare_update`).
fn configuration(
    target: &ResourceRequest,
    request: &Request,
    name: &str,
) -> Result<Value, ApiError> {
    let info = target.info;
    let body = objects::parse_body(&request.body, "application/apply-patch+yaml")?;
    let mut config = body.value;
    if !config.is_object() {
        return Err(ApiError::bad_request(format!(
            "an apply configuration must be an object (a {})",
            info.kind
        )));
    }
    objects::check_type(info, &mut config)?;
    if config
        .pointer("/metadata/managedFields")
        .is_some_and(|fields| !fields.is_null())
    {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    match meta_str(&config, "name") {
        None | Some("") => {
            objects::meta_mut(&mut config).insert("name".into(), Value::String(name.to_owned()));
        }
        Some(given) if given == name => {}
        Some(given) => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )))
        }
    }
    Ok(config)
}
