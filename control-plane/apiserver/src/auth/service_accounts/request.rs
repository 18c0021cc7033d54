//! `POST .../serviceaccounts/<name>/token`: the TokenRequest, validated and answered as
//! kube-apiserver answers it.

use serde_json::{json, Map, Value};

use super::signer::{bound_claim_key, json_type};
use super::*;
use crate::status::ApiError;

/// `"name"` as Go's `%q` prints it (for the names and values in Kubernetes' messages).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// 422 Invalid with one `FieldValueInvalid` cause, as `errors.NewInvalid` for a TokenRequest.
fn invalid(name: &str, field: &str, value: &str, detail: &str) -> ApiError {
    let cause = format!("Invalid value: {value}: {detail}");
    let mut details = json!({
        "group": TOKEN_REQUEST_GROUP,
        "kind": TOKEN_REQUEST_KIND,
        "causes": [{"reason": "FieldValueInvalid", "message": cause, "field": field}],
    });
    if !name.is_empty() {
        details["name"] = json!(name);
    }
    ApiError {
        code: 422,
        reason: "Invalid",
        message: format!(
            "{TOKEN_REQUEST_QUALIFIED} {} is invalid: {field}: {cause}",
            quoted(name)
        ),
        details: Some(details),
        retry_after: None,
    }
}

/// 409 Conflict, as `errors.NewConflict(GroupResource{group, resource}, name, why)`.
fn conflict(group: &str, resource: &str, name: &str, why: &str) -> ApiError {
    let qualified = if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    };
    ApiError {
        code: 409,
        reason: "Conflict",
        message: format!(
            "Operation cannot be fulfilled on {qualified} {}: {why}",
            quoted(name)
        ),
        details: Some(json!({"name": name, "group": group, "kind": resource})),
        retry_after: None,
    }
}

/// 400 for a field of the wrong JSON type, in the words of Kubernetes' decoder.
fn undecodable(found: &Value, field: &str, go_type: &str) -> ApiError {
    let found = match found {
        Value::Bool(_) => "bool".to_owned(),
        Value::Number(n) => format!("number {n}"),
        Value::String(_) => "string".to_owned(),
        Value::Array(_) => "array".to_owned(),
        Value::Object(_) => "object".to_owned(),
        Value::Null => "null".to_owned(),
    };
    ApiError::bad_request(format!(
        "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: json: cannot \
         unmarshal {found} into Go struct field {field} of type {go_type}"
    ))
}

/// An optional string field of a request object; absent and null are "".
fn request_string<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<&'a str, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(other) => Err(undecodable(other, field, "string")),
    }
}

/// An optional object field of a request object; absent and null are `None`.
fn request_object<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    field: &str,
    go_type: &str,
) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(object)) => Ok(Some(object)),
        Some(other) => Err(undecodable(other, field, go_type)),
    }
}

/// The ServiceAccount's namespace, name and uid.
fn service_account_identity(service_account: &Value) -> Result<(String, String, String), ApiError> {
    let field = |key: &str| {
        service_account
            .pointer(&format!("/metadata/{key}"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                ApiError::internal(format!("the stored ServiceAccount has no metadata.{key}"))
            })
    };
    Ok((field("namespace")?, field("name")?, field("uid")?))
}

/// `spec.boundObjectRef` of a TokenRequest.
#[derive(Clone, Debug, PartialEq, Eq)]
struct BoundReference {
    kind: String,
    name: String,
    uid: String,
}

/// A TokenRequest checked as kube-apiserver checks it before it looks the bound object up.
struct Prepared {
    namespace: String,
    sa_name: String,
    sa_uid: String,
    metadata: Map<String, Value>,
    spec: Map<String, Value>,
    /// `None` when the request names none (then the API audiences).
    audiences: Option<Vec<String>>,
    expiration_seconds: i64,
    bound: Option<BoundReference>,
}

/// `schema.FromAPIVersionAndKind(apiVersion, kind)`: the group and version.
fn group_version(api_version: &str) -> (&str, &str) {
    if api_version.is_empty() || api_version == "/" {
        return ("", "");
    }
    match api_version.matches('/').count() {
        0 => ("", api_version),
        1 => api_version.split_once('/').unwrap_or(("", api_version)),
        _ => ("", ""),
    }
}

fn prepare(service_account: &Value, request: &Value) -> Result<Prepared, ApiError> {
    let (namespace, sa_name, sa_uid) = service_account_identity(service_account)?;
    let Value::Object(body) = request else {
        return Err(ApiError::bad_request(format!(
            "the TokenRequest is a JSON {}, not an object",
            json_type(request)
        )));
    };
    let metadata = request_object(body, "metadata", "TokenRequest.metadata", "v1.ObjectMeta")?
        .cloned()
        .unwrap_or_default();
    let spec = request_object(body, "spec", "TokenRequest.spec", "v1.TokenRequestSpec")?
        .cloned()
        .unwrap_or_default();

    // The name and namespace in the body, if any, must be the URL's.
    let name = request_string(&metadata, "name", "TokenRequest.metadata.name")?;
    if !name.is_empty() && name != sa_name {
        return Err(invalid(
            &sa_name,
            "metadata.name",
            &quoted(name),
            "must match the service account name if specified",
        ));
    }
    let request_namespace =
        request_string(&metadata, "namespace", "TokenRequest.metadata.namespace")?;
    if !request_namespace.is_empty() && request_namespace != namespace {
        return Err(invalid(
            &sa_name,
            "metadata.namespace",
            &quoted(request_namespace),
            "must match the service account namespace if specified",
        ));
    }
    let uid = request_string(&metadata, "uid", "TokenRequest.metadata.uid")?;
    if !uid.is_empty() && uid != sa_uid {
        return Err(conflict(
            TOKEN_REQUEST_GROUP,
            TOKEN_REQUEST_KIND,
            &sa_name,
            &format!(
                "the UID in the token request ({uid}) does not match the UID of the service \
                 account ({sa_uid})"
            ),
        ));
    }

    let audiences = match spec.get("audiences") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let audiences = items
                .iter()
                .map(|item| match item {
                    Value::String(aud) => Ok(aud.clone()),
                    other => Err(undecodable(
                        other,
                        "TokenRequestSpec.spec.audiences",
                        "string",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            (!audiences.is_empty()).then_some(audiences)
        }
        Some(other) => {
            return Err(undecodable(
                other,
                "TokenRequestSpec.spec.audiences",
                "[]string",
            ))
        }
    };

    let expiration_seconds = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
            undecodable(
                &Value::Number(n.clone()),
                "TokenRequestSpec.spec.expirationSeconds",
                "int64",
            )
        })?,
        Some(other) => {
            return Err(undecodable(
                other,
                "TokenRequestSpec.spec.expirationSeconds",
                "int64",
            ))
        }
    };
    // ValidateTokenRequest; Kubernetes reports it for the name "".
    if expiration_seconds < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            "",
            "spec.expirationSeconds",
            &expiration_seconds.to_string(),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration_seconds > MAX_EXPIRATION_SECONDS {
        return Err(invalid(
            "",
            "spec.expirationSeconds",
            &expiration_seconds.to_string(),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }

    let bound = match request_object(
        &spec,
        "boundObjectRef",
        "TokenRequestSpec.spec.boundObjectRef",
        "v1.BoundObjectReference",
    )? {
        None => None,
        Some(reference) => {
            let field = |key: &str| {
                request_string(
                    reference,
                    key,
                    &format!("BoundObjectReference.spec.boundObjectRef.{key}"),
                )
            };
            let kind = field("kind")?;
            let api_version = field("apiVersion")?;
            let (group, version) = group_version(api_version);
            if !group.is_empty() || bound_claim_key(kind).is_none() {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token to object of type {group}/{version}, Kind={kind}"
                )));
            }
            let name = field("name")?;
            if name.is_empty() {
                return Err(ApiError::bad_request("Name parameter required."));
            }
            Some(BoundReference {
                kind: kind.to_owned(),
                name: name.to_owned(),
                uid: field("uid")?.to_owned(),
            })
        }
    };

    Ok(Prepared {
        namespace,
        sa_name,
        sa_uid,
        metadata,
        spec,
        audiences,
        expiration_seconds,
        bound,
    })
}

/// Checks a TokenRequest as kube-apiserver does before it looks its bound object up, and
/// returns the object it asks its token be bound to (`spec.boundObjectRef`: kind `Pod`,
/// `Secret` or `Node`, with its name and the uid the request gives, "" for none).
///
/// The caller looks that object up (a Pod or Secret in the ServiceAccount's namespace; a Node
/// has none), answers 404 if it is absent, and passes it to [`token_request_bound`].
pub fn requested_binding(
    service_account: &Value,
    request: &Value,
) -> Result<Option<BoundObject>, ApiError> {
    Ok(prepare(service_account, request)?
        .bound
        .map(|reference| BoundObject {
            kind: reference.kind,
            name: reference.name,
            uid: reference.uid,
        }))
}

/// How the bound object's uid is known.
enum Binding<'a> {
    /// From the request, unchecked.
    Requested,
    /// From the object as stored, which the caller looked up.
    Stored(Option<&'a Value>),
}

/// Answers `POST .../serviceaccounts/<name>/token`: `service_account` is the stored
/// ServiceAccount (JSON), `request` the TokenRequest body (`authentication.k8s.io/v1`).
/// Checks the request as Kubernetes does (`metadata.name`/`namespace`/`uid`, if given, must
/// be the ServiceAccount's; `spec.expirationSeconds`, 3600 by default, between 600 and 2^32;
/// `spec.audiences` default to the issuer; `spec.boundObjectRef` of kind Pod, Secret or Node
/// with a name), issues the token, and returns the TokenRequest with its `metadata`
/// (`creationTimestamp` set) and `status: {token, expirationTimestamp}`.
///
/// The bound object's uid is taken from the request as given, unchecked; to check it against
/// the store as kube-apiserver does (and that a pod runs as this ServiceAccount), look the
/// object up and use [`token_request_bound`].
pub fn token_request(
    signer: &TokenSigner,
    service_account: &serde_json::Value,
    request: &serde_json::Value,
    now_unix: i64,
) -> Result<serde_json::Value, ApiError> {
    answer(
        signer,
        service_account,
        request,
        Binding::Requested,
        now_unix,
    )
}

/// [`token_request`] for a request whose bound object (see [`requested_binding`]) the caller
/// looked up: `bound_object` is that object as stored. The token is bound to its uid; a uid
/// in the request that differs is a 409 Conflict, and a pod that runs as another
/// ServiceAccount a 400, as in Kubernetes. `bound_object` is ignored when the request binds
/// to nothing, and required when it does.
pub fn token_request_bound(
    signer: &TokenSigner,
    service_account: &Value,
    request: &Value,
    bound_object: Option<&Value>,
    now_unix: i64,
) -> Result<Value, ApiError> {
    answer(
        signer,
        service_account,
        request,
        Binding::Stored(bound_object),
        now_unix,
    )
}

/// The bound object a token gets, from the request and, when the caller looked it up, the
/// stored object.
fn resolve_binding(
    prepared: &Prepared,
    binding: Binding<'_>,
) -> Result<Option<BoundObject>, ApiError> {
    let Some(reference) = &prepared.bound else {
        return Ok(None);
    };
    let object = match binding {
        Binding::Requested => {
            return Ok(Some(BoundObject {
                kind: reference.kind.clone(),
                name: reference.name.clone(),
                uid: reference.uid.clone(),
            }))
        }
        Binding::Stored(None) => {
            return Err(ApiError::internal(format!(
                "the {} {:?} the token is to be bound to was not looked up",
                reference.kind, reference.name
            )))
        }
        Binding::Stored(Some(object)) => object,
    };
    let stored_name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if stored_name != reference.name {
        return Err(ApiError::internal(format!(
            "the {} looked up is {:?}, not {:?}",
            reference.kind, stored_name, reference.name
        )));
    }
    if reference.kind == "Pod" {
        let spec = object.get("spec");
        let pod_account = spec
            .and_then(|s| s.get("serviceAccountName"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or_else(|| {
                spec.and_then(|s| s.get("serviceAccount"))
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or("default");
        if pod_account != prepared.sa_name {
            return Err(ApiError::bad_request(format!(
                "cannot bind token for serviceaccount {} to pod running with different \
                 serviceaccount name.",
                quoted(&prepared.sa_name)
            )));
        }
    }
    let uid = object
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .filter(|uid| !uid.is_empty())
        .ok_or_else(|| {
            ApiError::internal(format!(
                "the stored {} {:?} has no metadata.uid",
                reference.kind, reference.name
            ))
        })?;
    if !reference.uid.is_empty() && reference.uid != uid {
        return Err(conflict(
            "",
            &reference.kind,
            &reference.name,
            &format!(
                "the UID in the bound object reference ({}) does not match the UID in record. \
                 The object might have been deleted and then recreated",
                reference.uid
            ),
        ));
    }
    Ok(Some(BoundObject {
        kind: reference.kind.clone(),
        name: reference.name.clone(),
        uid: uid.to_owned(),
    }))
}

fn rfc3339(seconds: i64) -> Result<String, ApiError> {
    jiff::Timestamp::from_second(seconds)
        .map(crate::objects::rfc3339)
        .map_err(|e| ApiError::internal(format!("the time {seconds}: {e}")))
}

fn set_if_empty(map: &mut Map<String, Value>, key: &str, value: &str) {
    let empty = match map.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    };
    if empty {
        map.insert(key.to_owned(), json!(value));
    }
}

fn answer(
    signer: &TokenSigner,
    service_account: &Value,
    request: &Value,
    binding: Binding<'_>,
    now_unix: i64,
) -> Result<Value, ApiError> {
    let prepared = prepare(service_account, request)?;
    let bound = resolve_binding(&prepared, binding)?;
    let expires = now_unix.saturating_add(prepared.expiration_seconds);
    let created_at = rfc3339(now_unix)?;
    let expires_at = rfc3339(expires)?;
    let audiences = prepared
        .audiences
        .clone()
        .unwrap_or_else(|| vec![signer.issuer().to_owned()]);
    let claims = Claims {
        issuer: signer.issuer().to_owned(),
        audiences: audiences.clone(),
        issued_at: now_unix,
        not_before: now_unix,
        expires,
        namespace: prepared.namespace.clone(),
        service_account: prepared.sa_name.clone(),
        service_account_uid: prepared.sa_uid.clone(),
        bound,
        token_id: uuid::Uuid::new_v4().to_string(),
    };
    let token = signer
        .issue(&claims)
        .map_err(|e| ApiError::internal(format!("failed to generate token: {e}")))?;

    let mut metadata = prepared.metadata;
    set_if_empty(&mut metadata, "name", &prepared.sa_name);
    set_if_empty(&mut metadata, "namespace", &prepared.namespace);
    set_if_empty(&mut metadata, "uid", &prepared.sa_uid);
    metadata.insert("creationTimestamp".into(), json!(created_at));
    let mut spec = prepared.spec;
    spec.insert("audiences".into(), json!(audiences));
    spec.insert(
        "expirationSeconds".into(),
        json!(prepared.expiration_seconds),
    );
    spec.entry("boundObjectRef").or_insert(Value::Null);
    Ok(json!({
        "kind": TOKEN_REQUEST_KIND,
        "apiVersion": TOKEN_REQUEST_API_VERSION,
        "metadata": metadata,
        "spec": spec,
        "status": {"token": token, "expirationTimestamp": expires_at},
    }))
}
