//! create, update and patch (delete and deletecollection have a module of their own). Every
//! write is a compare-and-swap on the object's revision: a client that sent a resourceVersion
//! gets 409 when it is stale; a write without one (a patch, an unconditional update) is
//! re-applied to the newest object, as kube-apiserver's GuaranteedUpdate does.

use std::sync::Arc;

use serde_json::Value;

use super::{
    decode_stored, dry_run, field_validation, name_of, namespace_of, object_reply, read_current,
    Api, Request,
};
use crate::objects::{self, meta_mut, meta_str, resource_version};
use crate::reply::{Format, Reply};
use crate::request::ResourceRequest;
use crate::resources::{self, ResourceInfo};
use crate::status::ApiError;
use crate::storage::StorageError;
use crate::{node_ports, service_ips};

/// Attempts of a write whose revision moved underneath it before the client hears 409.
pub(super) const UPDATE_ATTEMPTS: usize = 8;

/// Kinds whose `status` only the status subresource writes.
fn has_status_subresource(info: &ResourceInfo) -> bool {
    info.has_subresource("status")
}

pub(super) async fn create(
    api: &Arc<Api>,
    target: &ResourceRequest,
    request: &Request,
    format: Format,
) -> Result<Reply, ApiError> {
    if target.name.is_some() {
        return Err(ApiError::method_not_allowed(
            "POST is not allowed on a named object; use PUT to update it",
        ));
    }
    let body = objects::parse_body(&request.body, &request.content_type)?;
    create_object(
        api,
        target,
        request,
        body.value,
        &body.duplicates,
        None,
        format,
    )
    .await
}

/// Creates `object` (as a client sent it): a POST's body, or the first server-side apply of
/// an object, which brings its `managed_fields`.
pub(super) async fn create_object(
    api: &Arc<Api>,
    target: &ResourceRequest,
    request: &Request,
    object: Value,
    duplicates: &[String],
    managed_fields: Option<Value>,
    format: Format,
) -> Result<Reply, ApiError> {
    let info = target.info;
    let mut object = object;
    objects::check_type(info, &mut object)?;
    let (mut object, warnings) =
        objects::decode(info, object, duplicates, field_validation(&request.query)?)?;
    objects::prepare_create(info, &mut object, target.namespace.as_deref())?;
    if let Some(fields) = managed_fields {
        meta_mut(&mut object).insert("managedFields".into(), fields);
    }
    if info.kind == "CertificateSigningRequest" {
        crate::certificates::prepare_create(&request.user, &mut object);
    }
    if has_status_subresource(info) && info.kind != "Node" {
        if let Some(map) = object.as_object_mut() {
            map.remove("status");
        }
    }
    if info.kind == "Pod" {
        // NamespaceLifecycle comes first in kube's chain: a pod for a missing or terminating
        // namespace hears that, not that the namespace has no ServiceAccount.
        check_namespace_accepts(api, namespace_of(target)).await?;
        crate::service_account_admission::admit_pod(api, namespace_of(target), &mut object).await?;
        // Before the defaults, which give a pod without one priority 0 (for updates): the
        // Priority plugin must see what the user wrote.
        crate::priority::admit_pod(api, &mut object)?;
    }
    crate::defaults::apply(info.kind, &mut object);
    if info.kind == "Pod" {
        crate::defaults::default_toleration_seconds(&mut object);
        crate::defaults::scheduling_gated_condition(&mut object);
        // After the pod's own defaults, before quota admission counts the requests.
        crate::limit_ranger::admit_pod(api, namespace_of(target), &mut object)?;
    }
    objects::validate_meta(info, &object)?;
    crate::validation::validate_create(info, &object)?;
    let mut warnings = warnings;
    warnings.extend(super::admission::validate(
        api,
        &request.user,
        info,
        namespace_of(target),
        &object,
        None,
    )?);
    if info.namespaced {
        check_namespace_accepts(api, namespace_of(target)).await?;
    }
    let name = objects::name_of(&object).to_owned();
    let key = info.key(namespace_of(target), &name);
    let dry = dry_run(&request.query)?;
    if dry && api.storage.get(&key).await?.is_some() {
        return Err(ApiError::already_exists(info, &name));
    }
    if info.kind == "ResourceQuota" {
        crate::quota::initial_status(&api.storage, namespace_of(target), &mut object).await?;
    }
    // Quota admission and the create commit together; a quota that moved in between (another
    // create counted against it) is read again.
    let mut attempt = 0;
    // What was created: the object with what a Service's allocation added, or None for the
    // object as it is (no copy of it for the loop's sake); and the revision it was stored at.
    let (allocated, revision) = loop {
        attempt += 1;
        let guards = if info.namespaced {
            crate::quota::admit(
                &api.storage,
                api.cache_of("", "resourcequotas")?.as_ref(),
                info,
                namespace_of(target),
                &object,
            )
            .await?
        } else {
            Vec::new()
        };
        let created = if info.kind == "Service" {
            create_service(api, info, &key, object.clone(), dry, &guards)
                .await?
                .map(|(service, rv)| (Some(service), rv))
        } else if dry {
            Some((None, None))
        } else {
            let stored = super::stored_bytes(info, &object)?;
            let result = announced(api, info, &key, &object, stored, |stored| {
                api.storage.create_guarded(&key, stored, &[], &guards)
            })
            .await;
            match result {
                Ok(rv) => Some((None, Some(rv))),
                Err(StorageError::Exists) => return Err(ApiError::already_exists(info, &name)),
                Err(StorageError::Conflict) => None,
                Err(e) => return Err(e.into()),
            }
        };
        match created {
            Some(done) => break done,
            None if attempt < QUOTA_ATTEMPTS => continue,
            None => {
                return Err(ApiError::conflict(
                    info,
                    &name,
                    "the namespace's ResourceQuotas kept changing; try again",
                ))
            }
        }
    };
    let object = allocated.unwrap_or(object);
    let object = match revision {
        Some(rv) => objects::with_revision(object, rv),
        None => object,
    };
    Ok(object_reply(info, 201, object, format).with_warnings(&warnings))
}

/// How many times a create reads the namespace's quotas again after one moved under it.
const QUOTA_ATTEMPTS: u32 = 64;

/// How many addresses a create tries before it reports the range full (each try that loses a
/// race moves to the next address).
const ALLOCATION_ATTEMPTS: u32 = 64;

/// Creates a Service with its ClusterIP and node ports reserved in the same transaction (and
/// the quota `guards`); None when a guarded quota moved and admission must run again.
async fn create_service(
    api: &Arc<Api>,
    info: &ResourceInfo,
    key: &str,
    mut object: Value,
    dry: bool,
    guards: &[crate::storage::Guard],
) -> Result<Option<(Value, Option<i64>)>, ApiError> {
    let name = objects::name_of(&object).to_owned();
    let range = api.config.service_ip_range;
    let ports_range = api.config.node_port_range;
    let seed = || {
        u32::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..4]
                .try_into()
                .unwrap_or_default(),
        )
    };
    // The address candidates, in order (None: headless or ExternalName, no address).
    let (ip_candidates, ip_chosen): (Vec<Option<std::net::Ipv4Addr>>, bool) =
        match service_ips::wanted(info, &object, &range)? {
            service_ips::Wanted::Nothing => (vec![None], false),
            service_ips::Wanted::Exactly(ip) => (vec![Some(ip)], true),
            service_ips::Wanted::Any => {
                let start = seed();
                (
                    (0..ALLOCATION_ATTEMPTS.min(range.usable()))
                        .map(|attempt| Some(range.candidate(start, attempt)))
                        .collect(),
                    false,
                )
            }
        };
    let node_ports = node_ports::wanted(info, &object, &ports_range)?;
    for attempt in 0..ALLOCATION_ATTEMPTS {
        // An address is retried only when it was taken; node ports are drawn again each time.
        let ip = ip_candidates
            .get(attempt as usize)
            .or(ip_candidates.last())
            .copied()
            .flatten();
        service_ips::set(&mut object, ip);
        let chosen: Vec<u16> = node_ports
            .iter()
            .map(|asked| asked.unwrap_or_else(|| ports_range.pick(seed())))
            .collect();
        node_ports::set(&mut object, &chosen);
        if dry {
            return Ok(Some((object, None)));
        }
        // Two ports drawn the same: draw again.
        let drawn_twice = node_ports.iter().zip(&chosen).any(|(asked, port)| {
            asked.is_none() && chosen.iter().filter(|p| *p == port).count() > 1
        });
        if drawn_twice {
            continue;
        }
        let mut reservations: Vec<String> =
            ip.map(service_ips::reservation_key).into_iter().collect();
        reservations.extend(node_ports::held(&object));
        match api
            .storage
            .create_guarded(key, objects::to_stored(&object)?, &reservations, guards)
            .await
        {
            Ok(rv) => return Ok(Some((object, Some(rv)))),
            Err(StorageError::Exists) => return Err(ApiError::already_exists(info, &name)),
            Err(StorageError::Conflict) => return Ok(None),
            Err(StorageError::Taken) => {
                // Which one? A taken address or port the client asked for is refused; one the
                // allocator picked is picked again.
                if let Some(ip) = ip.filter(|_| ip_chosen) {
                    if api
                        .storage
                        .get(&service_ips::reservation_key(ip))
                        .await?
                        .is_some()
                    {
                        return Err(ApiError::invalid(
                            info,
                            &name,
                            vec![crate::status::Cause {
                                reason: "FieldValueInvalid",
                                message: format!("Invalid value: [\"{ip}\"]: failed to allocate IP {ip}: provided IP is already allocated"),
                                field: "spec.clusterIPs".into(),
                            }],
                        ));
                    }
                }
                for (i, asked) in node_ports.iter().enumerate() {
                    let Some(port) = asked else { continue };
                    if api
                        .storage
                        .get(&node_ports::reservation_key(*port))
                        .await?
                        .is_some()
                    {
                        return Err(ApiError::invalid(
                            info,
                            &name,
                            vec![crate::status::Cause {
                                reason: "FieldValueInvalid",
                                message: format!(
                                    "Invalid value: {port}: provided port is already allocated"
                                ),
                                field: format!("spec.ports[{i}].nodePort"),
                            }],
                        ));
                    }
                }
                if ip_candidates.len() == 1 && node_ports.iter().all(Option::is_some) {
                    // Nothing left to vary: the only candidate went between our reads.
                    continue;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::internal(format!(
        "failed to allocate a serviceIP or nodePort: range {range} or {ports_range} is full"
    )))
}

/// The namespace lifecycle rule: objects are created only in a namespace that exists and is
/// not being deleted.
async fn check_namespace_accepts(api: &Arc<Api>, namespace: &str) -> Result<(), ApiError> {
    let namespaces = resources::lookup("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not served"))?;
    let key = namespaces.key("", namespace);
    // The watch cache answers as kube-apiserver's admission answers from its informer; a miss
    // (a namespace created a moment ago) is checked in the store before it is refused.
    let object = match api.cache(namespaces).get(&key) {
        Some(cached) => cached.value.clone(),
        None => match api.storage.get(&key).await? {
            Some(stored) => decode_stored(&stored)?,
            None => return Err(ApiError::not_found(namespaces, namespace)),
        },
    };
    if meta_str(&object, "deletionTimestamp").is_some() {
        return Err(ApiError {
            code: 403,
            reason: "Forbidden",
            message: format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            ),
            // kube's cause, which controllers read to stop retrying such a create.
            details: Some(serde_json::json!({"causes": [{"reason": "NamespaceTerminating",
                "message": format!("namespace {namespace} is being terminated"),
                "field": "metadata.namespace"}]})),
            retry_after: None,
        });
    }
    Ok(())
}

/// Turns the object a client wants (`desired`) into the object to store, given the stored one.
pub(super) fn prepare_update(
    info: &ResourceInfo,
    old: &Value,
    desired: Value,
    duplicates: &[String],
    validation: objects::FieldValidation,
    subresource: Option<&str>,
) -> Result<(Value, Vec<String>), ApiError> {
    // `approval` is a CertificateSigningRequest's second status-like subresource.
    let status_only = matches!(subresource, Some("status" | "approval"));
    let mut desired = desired;
    objects::check_type(info, &mut desired)?;
    let name = objects::name_of(old).to_owned();
    let desired_name = objects::name_of(&desired);
    if desired_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({desired_name}) does not match the name on the URL ({name})"
        )));
    }
    if info.namespaced {
        let ns = meta_str(&desired, "namespace").unwrap_or("");
        if !ns.is_empty() && Some(ns) != meta_str(old, "namespace") {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let (decoded, warnings) = objects::decode(info, desired, duplicates, validation)?;
    let mut new = if status_only {
        // The status subresource changes status alone.
        let mut merged = old.clone();
        merged["status"] = decoded.get("status").cloned().unwrap_or(Value::Null);
        if merged["status"].is_null() {
            if let Some(map) = merged.as_object_mut() {
                map.remove("status");
            }
        }
        merged
    } else {
        let mut new = decoded;
        if has_status_subresource(info) {
            match old.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    if let Some(map) = new.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
        }
        new
    };
    objects::carry_over(info, old, &mut new);
    if info.kind == "CertificateSigningRequest" {
        crate::certificates::update_scope(old, &mut new, subresource);
    }
    if info.kind == "Service" && !status_only {
        crate::service_update::prepare(info, old, &mut new)?;
    }
    crate::defaults::apply(info.kind, &mut new);
    objects::validate_meta(info, &new)?;
    crate::validation::validate(info, &new)?;
    // A request's decision and certificate live in its status, and may not be taken back.
    if !status_only || info.kind == "CertificateSigningRequest" {
        crate::validation::validate_update(info, old, &new)?;
    }
    Ok((new, warnings))
}

/// `prepare_update`, then (for a change of more than status) the admission plugins that read
/// the requester: the object to store and every warning.
#[allow(clippy::too_many_arguments)]
pub(super) fn admitted_update(
    api: &Arc<Api>,
    target: &ResourceRequest,
    request: &Request,
    old: &Value,
    desired: Value,
    duplicates: &[String],
    validation: objects::FieldValidation,
    status_only: bool,
) -> Result<(Value, Vec<String>), ApiError> {
    let info = target.info;
    let subresource = target.subresource.as_deref();
    let (mut new, mut warnings) = prepare_update(
        info,
        old,
        desired,
        duplicates,
        validation,
        subresource.filter(|_| status_only),
    )?;
    if info.kind == "Namespace" {
        namespace_update_scope(old, &mut new, subresource);
    }
    if info.kind == "CertificateSigningRequest" {
        crate::certificates::admit(&api.authorizer, &request.user, Some(old), &new, subresource)?;
    }
    if !status_only {
        warnings.extend(super::admission::validate(
            api,
            &request.user,
            info,
            namespace_of(target),
            &new,
            Some(old),
        )?);
    }
    Ok((new, warnings))
}

/// Runs `write` of `object`, stored as `stored`, with the watch cache told first: it takes
/// the object as it is instead of parsing the write's event (creates, bindings, status
/// patches, updates). Kinds stored in another resource's form are parsed as before, and a
/// write that fails is forgotten.
async fn announced<T, Fut>(
    api: &Arc<Api>,
    info: &ResourceInfo,
    key: &str,
    object: &Value,
    stored: Vec<u8>,
    write: impl FnOnce(Vec<u8>) -> Fut,
) -> Result<T, StorageError>
where
    Fut: std::future::Future<Output = Result<T, StorageError>>,
{
    let cache = info.stored_as.is_none().then(|| api.cache(info));
    if let Some(cache) = cache {
        cache.expect_write(key, &stored, object.clone());
    }
    let result = write(stored).await;
    if let (Err(_), Some(cache)) = (&result, cache) {
        cache.forget_write(key);
    }
    result
}

/// Reads, transforms and writes one object until the write lands on the revision it read.
/// `precondition`: the client's resourceVersion; a mismatch is 409 at once.
pub(super) async fn guaranteed_update<F>(
    api: &Arc<Api>,
    info: &ResourceInfo,
    namespace: &str,
    name: &str,
    dry_run: bool,
    mut transform: F,
) -> Result<(Value, Vec<String>), ApiError>
where
    F: FnMut(&Value) -> Result<(Value, Vec<String>, Option<i64>), ApiError>,
{
    let key = info.key(namespace, name);
    for _ in 0..UPDATE_ATTEMPTS {
        let (old, revision) = read_current(api, info, namespace, name).await?;
        let (new, warnings, precondition) = transform(&old)?;
        if let Some(rv) = precondition {
            if rv != revision {
                return Err(ApiError::stale(info, name));
            }
        }
        if objects::unchanged_at(&new, &old, revision) {
            // Nothing changed: no write, no new revision, as Kubernetes.
            return Ok((old, warnings));
        }
        // The last finalizer of an object being deleted went away: the object goes.
        let finalized = meta_str(&new, "deletionTimestamp").is_some()
            && objects::finalizers(&new).is_empty()
            && (info.kind != "Namespace" || objects::namespace_finalizers(&new).is_empty());
        // A Service takes and gives back its address and node ports in its write.
        let service = info.kind == "Service" && !finalized;
        if dry_run {
            let new = if service {
                super::service_write::preview(api, info, &old, new).await?
            } else {
                new
            };
            return Ok((objects::with_revision(new, revision), warnings));
        }
        let written = if finalized {
            let released = service_ips::released_by(info, &old);
            api.storage
                .delete_releasing(&key, revision, &released)
                .await
                .map(|rv| (new, rv))
        } else if service {
            super::service_write::write(api, info, &key, &old, new, revision).await?
        } else {
            let value = super::stored_bytes(info, &new)?;
            announced(api, info, &key, &new, value, |value| {
                api.storage.update(&key, value, revision)
            })
            .await
            .map(|rv| (new, rv))
        };
        match written {
            Ok((new, revision)) => return Ok((objects::with_revision(new, revision), warnings)),
            Err(StorageError::Conflict) if precondition.is_none() => continue,
            Err(StorageError::Conflict) => return Err(ApiError::stale(info, name)),
            Err(StorageError::NotFound) => return Err(ApiError::not_found(info, name)),
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(
        info,
        name,
        "the object kept changing while it was being updated; try again",
    ))
}

pub(super) async fn update(
    api: &Arc<Api>,
    target: &ResourceRequest,
    request: &Request,
    format: Format,
    status_only: bool,
) -> Result<Reply, ApiError> {
    let info = target.info;
    let name = name_of(target)?;
    let body = objects::parse_body(&request.body, &request.content_type)?;
    let validation = field_validation(&request.query)?;
    let precondition = resource_version(&body.value)?;
    let desired = body.value;
    let (object, warnings) = guaranteed_update(
        api,
        info,
        namespace_of(target),
        name,
        dry_run(&request.query)?,
        |old| {
            let (mut new, warnings) = admitted_update(
                api,
                target,
                request,
                old,
                desired.clone(),
                &body.duplicates,
                validation,
                status_only,
            )?;
            let sent = super::field_manager::sent_record(old, &desired);
            super::field_manager::track(target, request, status_only, old, sent, &mut new)?;
            Ok((new, warnings, precondition))
        },
    )
    .await?;
    Ok(object_reply(info, 200, object, format).with_warnings(&warnings))
}

/// kube's namespace strategies: a plain update keeps `spec.finalizers` (only
/// `namespaces/{name}/finalize` changes them, and only the namespace controller may), while
/// `status` and `finalize` each change their part alone.
fn namespace_update_scope(old: &Value, new: &mut Value, subresource: Option<&str>) {
    if subresource == Some("finalize") || subresource == Some("status") {
        return;
    }
    match old.pointer("/spec/finalizers") {
        Some(finalizers) => new["spec"]["finalizers"] = finalizers.clone(),
        None => {
            if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("finalizers");
            }
        }
    }
}

/// The resourceVersion a patch wrote into the object, if it changed it (a precondition).
pub(super) fn patch_precondition(old: &Value, patched: &Value) -> Result<Option<i64>, ApiError> {
    let before = meta_str(old, "resourceVersion");
    let after = meta_str(patched, "resourceVersion");
    if after.is_some() && after != before {
        return objects::resource_version(patched);
    }
    Ok(None)
}
