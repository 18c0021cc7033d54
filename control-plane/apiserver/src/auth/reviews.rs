//! The review resources: questions about the security chain that are answered, never stored.
//! `SelfSubjectAccessReview` is `kubectl auth can-i`, `SelfSubjectRulesReview` its `--list`,
//! `SelfSubjectReview` `kubectl auth whoami`; `SubjectAccessReview` and
//! `LocalSubjectAccessReview` ask the same for another user (for those allowed to ask).

use serde_json::{json, Map, Value};

use super::authz::{Authorizer, Request};
use super::UserInfo;
use crate::status::ApiError;

/// Which review a POST asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Review {
    SelfSubjectAccess,
    SelfSubjectRules,
    SelfSubject,
    SubjectAccess,
    LocalSubjectAccess,
}

impl Review {
    /// (group, resource, kind) as the URL and body name them.
    pub fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Review::SelfSubjectAccess => (
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                "SelfSubjectAccessReview",
            ),
            Review::SelfSubjectRules => (
                "authorization.k8s.io",
                "selfsubjectrulesreviews",
                "SelfSubjectRulesReview",
            ),
            Review::SubjectAccess => (
                "authorization.k8s.io",
                "subjectaccessreviews",
                "SubjectAccessReview",
            ),
            Review::LocalSubjectAccess => (
                "authorization.k8s.io",
                "localsubjectaccessreviews",
                "LocalSubjectAccessReview",
            ),
            Review::SelfSubject => (
                "authentication.k8s.io",
                "selfsubjectreviews",
                "SelfSubjectReview",
            ),
        }
    }

    pub const ALL: [Review; 5] = [
        Review::SelfSubjectAccess,
        Review::SelfSubjectRules,
        Review::SubjectAccess,
        Review::LocalSubjectAccess,
        Review::SelfSubject,
    ];

    pub fn lookup(group: &str, resource: &str) -> Option<Review> {
        Self::ALL.into_iter().find(|r| {
            let (g, res, _) = r.names();
            g == group && res == resource
        })
    }

    pub fn namespaced(self) -> bool {
        self == Review::LocalSubjectAccess
    }
}

fn field<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

fn text(value: &Value, path: &[&str]) -> Result<String, ApiError> {
    match field(value, path) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ApiError::bad_request(format!(
            "{}: must be a string",
            path.join(".")
        ))),
    }
}

fn strings(value: &Value, path: &[&str]) -> Result<Vec<String>, ApiError> {
    match field(value, path) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    ApiError::bad_request(format!("{}: must be a list of strings", path.join(".")))
                })
            })
            .collect(),
        Some(_) => Err(ApiError::bad_request(format!(
            "{}: must be a list of strings",
            path.join(".")
        ))),
    }
}

fn invalid(kind: &str, field: &str, message: &str) -> ApiError {
    ApiError {
        code: 422,
        reason: "Invalid",
        message: format!("{kind}.authorization.k8s.io \"\" is invalid: {field}: {message}"),
        details: Some(json!({"kind": kind, "group": "authorization.k8s.io",
            "causes": [{"reason": "FieldValueRequired", "message": message, "field": field}]})),
        retry_after: None,
    }
}

/// The attributes a `spec` asks about (`resourceAttributes` or `nonResourceAttributes`,
/// exactly one).
fn spec_request(body: &Value, kind: &str) -> Result<Request, ApiError> {
    let resource = field(body, &["spec", "resourceAttributes"]).filter(|v| !v.is_null());
    let non_resource = field(body, &["spec", "nonResourceAttributes"]).filter(|v| !v.is_null());
    match (resource, non_resource) {
        (Some(_), Some(_)) => Err(invalid(
            kind,
            "spec.nonResourceAttributes",
            "cannot be specified in combination with resourceAttributes",
        )),
        (None, None) => Err(invalid(
            kind,
            "spec.resourceAttributes",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        (Some(_), None) => {
            let at = |name: &str| text(body, &["spec", "resourceAttributes", name]);
            Ok(Request {
                verb: at("verb")?,
                resource_request: true,
                namespace: at("namespace")?,
                api_group: at("group")?,
                resource: at("resource")?,
                subresource: at("subresource")?,
                name: at("name")?,
                path: String::new(),
            })
        }
        (None, Some(_)) => Ok(Request {
            verb: text(body, &["spec", "nonResourceAttributes", "verb"])?,
            resource_request: false,
            path: text(body, &["spec", "nonResourceAttributes", "path"])?,
            ..Request::default()
        }),
    }
}

/// The user a SubjectAccessReview names in its spec.
fn spec_user(body: &Value) -> Result<UserInfo, ApiError> {
    let name = text(body, &["spec", "user"])?;
    let groups = strings(body, &["spec", "groups"])?;
    if name.is_empty() && groups.is_empty() {
        return Err(invalid(
            "SubjectAccessReview",
            "spec.user",
            "at least one of user or group must be specified",
        ));
    }
    let mut extra = std::collections::BTreeMap::new();
    if let Some(Value::Object(map)) = field(body, &["spec", "extra"]) {
        for key in map.keys() {
            extra.insert(key.clone(), strings(body, &["spec", "extra", key])?);
        }
    }
    Ok(UserInfo {
        name,
        uid: text(body, &["spec", "uid"])?,
        groups,
        extra,
    })
}

fn with_status(body: &Value, kind: &str, group: &str, status: Value) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), json!(kind));
    out.insert("apiVersion".into(), json!(format!("{group}/v1")));
    let mut metadata = body.get("metadata").cloned().unwrap_or_else(|| json!({}));
    if let Some(m) = metadata.as_object_mut() {
        m.insert(
            "creationTimestamp".into(),
            json!(crate::objects::now_rfc3339()),
        );
    }
    out.insert("metadata".into(), metadata);
    if let Some(spec) = body.get("spec") {
        out.insert("spec".into(), spec.clone());
    }
    out.insert("status".into(), status);
    Value::Object(out)
}

fn access_status(authorizer: &Authorizer, user: &UserInfo, request: &Request) -> Value {
    match authorizer.authorize(user, request) {
        Ok(()) => json!({"allowed": true}),
        // "No rule matched" is no reason, as kube-apiserver's RBAC gives none (kubectl prints
        // a bare "no"); a binding that could not be resolved is one worth telling.
        Err(reason) if reason.is_empty() || reason.starts_with(super::rbac::NO_RULES) => {
            json!({"allowed": false})
        }
        Err(reason) => json!({"allowed": false, "reason": reason}),
    }
}

/// Answers one review for `user` (the requester). `namespace` is the URL's, for the local
/// review.
pub fn answer(
    review: Review,
    authorizer: &Authorizer,
    user: &UserInfo,
    namespace: Option<&str>,
    body: &Value,
) -> Result<Value, ApiError> {
    let (group, _, kind) = review.names();
    if let Some(sent) = body.get("kind").and_then(Value::as_str) {
        if sent != kind {
            return Err(ApiError::bad_request(format!(
                "the body is a {sent}, this resource takes a {kind}"
            )));
        }
    }
    let status = match review {
        Review::SelfSubjectAccess => {
            let request = spec_request(body, kind)?;
            access_status(authorizer, user, &request)
        }
        Review::SubjectAccess => {
            let request = spec_request(body, kind)?;
            access_status(authorizer, &spec_user(body)?, &request)
        }
        Review::LocalSubjectAccess => {
            let request = spec_request(body, kind)?;
            if !request.resource_request {
                return Err(invalid(
                    kind,
                    "spec.nonResourceAttributes",
                    "disallowed on this kind of request",
                ));
            }
            let url_namespace = namespace.unwrap_or("");
            if request.namespace != url_namespace {
                return Err(invalid(
                    kind,
                    "spec.resourceAttributes.namespace",
                    &format!("must match metadata.namespace {url_namespace:?}"),
                ));
            }
            access_status(authorizer, &spec_user(body)?, &request)
        }
        Review::SelfSubjectRules => {
            let namespace = text(body, &["spec", "namespace"])?;
            rules_status(authorizer, user, &namespace)
        }
        Review::SelfSubject => {
            let mut info = json!({"username": user.name, "groups": user.groups});
            if !user.uid.is_empty() {
                info["uid"] = json!(user.uid);
            }
            if !user.extra.is_empty() {
                info["extra"] = json!(user.extra);
            }
            json!({"userInfo": info})
        }
    };
    Ok(with_status(body, kind, group, status))
}

fn rules_status(authorizer: &Authorizer, user: &UserInfo, namespace: &str) -> Value {
    let masters = user.groups.iter().any(|g| g == super::authz::MASTERS);
    let (rules, errors) = authorizer.policy().rules_for(user, namespace);
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    let star = |v: &Option<Vec<String>>| v.as_deref() == Some(&["*".to_owned()][..]);
    let rbac_grants_all = rules
        .iter()
        .any(|r| r.verbs == ["*"] && star(&r.api_groups) && star(&r.resources));
    if masters && !rbac_grants_all {
        // The privileged group is allowed everything whatever RBAC holds; say so as a rule
        // (unless RBAC already does, through cluster-admin's binding).
        resource_rules.push(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}));
        non_resource_rules.push(json!({"verbs": ["*"], "nonResourceURLs": ["*"]}));
    }
    for rule in rules {
        let urls = rule.non_resource_urls.clone().unwrap_or_default();
        if !urls.is_empty() {
            non_resource_rules.push(json!({"verbs": rule.verbs, "nonResourceURLs": urls}));
        } else {
            let mut r = json!({
                "verbs": rule.verbs,
                "apiGroups": rule.api_groups.clone().unwrap_or_default(),
                "resources": rule.resources.clone().unwrap_or_default(),
            });
            if let Some(names) = rule.resource_names.as_ref().filter(|n| !n.is_empty()) {
                r["resourceNames"] = json!(names);
            }
            resource_rules.push(r);
        }
    }
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": !errors.is_empty(),
    });
    if !errors.is_empty() {
        status["evaluationError"] = json!(errors.join(", "));
    }
    status
}
