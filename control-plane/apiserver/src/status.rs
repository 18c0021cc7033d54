//! Errors as Kubernetes answers them: a `metav1.Status` with the reason, code and causes that
//! clients branch on (`kubectl` prints the message; client-go's `IsNotFound`, `IsConflict`,
//! `IsAlreadyExists` read the reason; `kubectl apply` retries on 409 Conflict).

use serde_json::{json, Value};

use crate::resources::ResourceInfo;

/// One `details.causes[]` entry.
#[derive(Debug, Clone)]
pub struct Cause {
    pub reason: &'static str,
    pub message: String,
    pub field: String,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds a client should wait before retrying (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn not_found(info: &ResourceInfo, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", info.qualified()),
        )
        .with_details(json!({"name": name, "group": info.group, "kind": info.resource}))
    }

    /// A path that names no resource keel serves.
    pub fn path_not_found(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    pub fn already_exists(info: &ResourceInfo, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", info.qualified()),
        )
        .with_details(json!({"name": name, "group": info.group, "kind": info.resource}))
    }

    pub fn conflict(info: &ResourceInfo, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                info.qualified()
            ),
        )
        .with_details(json!({"name": name, "group": info.group, "kind": info.resource}))
    }

    pub fn stale(info: &ResourceInfo, name: &str) -> Self {
        Self::conflict(
            info,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 for a server-side apply that would change fields other managers own: kube's
    /// message, and one `FieldManagerConflict` cause per field.
    pub fn apply_conflict(message: String, causes: Vec<(String, String)>) -> Self {
        let causes: Vec<Value> = causes
            .into_iter()
            .map(|(message, field)| {
                json!({"reason": "FieldManagerConflict", "message": message, "field": field})
            })
            .collect();
        Self::new(409, "Conflict", message).with_details(json!({"causes": causes}))
    }

    /// 422 for a request option that is wrong (`PatchOptions.meta.k8s.io "" is invalid:
    /// fieldManager: Required value: …`), as kube words it; `reason` is the cause's.
    pub fn invalid_options(kind: &str, field: &str, reason: &str, message: &str) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("{kind}.meta.k8s.io \"\" is invalid: {field}: {message}"),
        )
        .with_details(json!({"group": "meta.k8s.io", "kind": kind,
            "causes": [{"reason": reason, "message": message, "field": field}]}))
    }

    /// 422 with one cause per field error, as `field.ErrorList.ToAggregate()` prints them.
    pub fn invalid(info: &ResourceInfo, name: &str, causes: Vec<Cause>) -> Self {
        let list = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect::<Vec<_>>();
        let joined = if list.len() == 1 {
            list[0].clone()
        } else {
            format!("[{}]", list.join(", "))
        };
        let causes_json: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {joined}", info.kind),
        )
        .with_details(
            json!({"name": name, "group": info.group, "kind": info.kind, "causes": causes_json}),
        )
    }

    /// 400 for fields the schema does not have, under fieldValidation=Strict; kube-apiserver's
    /// words and one cause per field.
    pub fn strict_decoding(fields: &[String], duplicates: &[String]) -> Self {
        let mut parts: Vec<String> = fields
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        parts.extend(
            duplicates
                .iter()
                .map(|f| format!("duplicate field \"{f}\"")),
        );
        let causes: Vec<Value> = fields
            .iter()
            .map(|f| json!({"reason": "FieldValueInvalid", "message": format!("unknown field \"{f}\""), "field": f}))
            .chain(duplicates.iter().map(|f| {
                json!({"reason": "FieldValueDuplicate", "message": format!("duplicate field \"{f}\""), "field": f})
            }))
            .collect();
        Self::new(
            400,
            "BadRequest",
            format!("strict decoding error: {}", parts.join(", ")),
        )
        .with_details(json!({"causes": causes}))
    }

    /// No credentials, or wrong ones: kube-apiserver answers only "Unauthorized" (saying
    /// which check failed would help an attacker).
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// The authorizer said no. `resource` is the resource as Kubernetes names it in
    /// `details.kind` (`pods`), `group` its API group.
    pub fn forbidden(message: String, name: &str, group: &str, resource: &str) -> Self {
        let mut error = Self::new(403, "Forbidden", message);
        if !resource.is_empty() {
            error.details = Some(json!({"name": name, "group": group, "kind": resource}));
        }
        error
    }

    /// An admission plugin's refusal of a pod, in kube's words:
    /// `pods "<name>" is forbidden: <message>`.
    pub fn pod_forbidden(name: &str, message: impl std::fmt::Display) -> Self {
        Self::forbidden(
            format!(
                "pods {} is forbidden: {message}",
                keel_api::validation::go_quote(name)
            ),
            name,
            "",
            "pods",
        )
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf ({content_type:?} given)"),
        )
    }

    /// 415 with a message of its own (a patch type keel does not serve).
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    pub fn too_many_requests(retry_after: u64) -> Self {
        let mut e = Self::new(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
        );
        e.retry_after = Some(retry_after);
        e.details = Some(json!({"retryAfterSeconds": retry_after}));
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(503, "ServiceUnavailable", message);
        e.retry_after = Some(1);
        e
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        let mut e = Self::new(504, "Timeout", message);
        e.retry_after = Some(1);
        e
    }

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// A `Status` reporting success (delete of a collection, delete without an object to return).
pub fn success(details: Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}
