//! What a request asks for, read off its path, method and query as kube-apiserver's
//! RequestInfoFactory reads them.

use std::collections::HashMap;

use crate::resources::{self, ResourceInfo};
use crate::status::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    /// The verb as `apiserver_request_total` labels it.
    pub fn metric_label(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::List => "LIST",
            Verb::Watch => "WATCH",
            Verb::Create => "POST",
            Verb::Update => "PUT",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
            Verb::DeleteCollection => "DELETE",
        }
    }

    pub fn is_mutating(self) -> bool {
        matches!(
            self,
            Verb::Create | Verb::Update | Verb::Patch | Verb::Delete | Verb::DeleteCollection
        )
    }
}

/// A request for a served resource.
#[derive(Debug)]
pub struct ResourceRequest {
    pub info: &'static ResourceInfo,
    pub verb: Verb,
    /// Namespace from the path, if any (`None` for cluster-scoped kinds and all-namespace lists).
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Where a request goes.
#[derive(Debug)]
pub enum Route {
    Resource(ResourceRequest),
    /// `/api`, `/apis`, `/api/v1`, `/apis/<group>`, `/apis/<group>/<version>`.
    Discovery(Vec<String>),
    Version,
    Health(String),
    OpenApiV3(Option<String>),
    OpenApiV2,
    Metrics,
    /// `/.well-known/openid-configuration` and `/openid/v1/jwks`: ServiceAccount token issuer
    /// discovery, so other systems can verify keel's tokens (kube's
    /// ServiceAccountIssuerDiscovery).
    OpenIdConfiguration,
    Jwks,
    /// A POST of a review (`kubectl auth can-i`, `whoami`): answered, never stored.
    Review {
        review: crate::auth::reviews::Review,
        namespace: Option<String>,
    },
}

/// Query parameters; a repeated parameter keeps its first value, as Go's `url.Values.Get`.
#[derive(Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: &str) -> Self {
        let mut map = HashMap::new();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        Query(map)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A boolean parameter as Go's strconv.ParseBool reads it; an unparsable value is an error
    /// naming the parameter.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(false),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid value for query parameter {name}: {other:?} is not a boolean"
            ))),
        }
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(text) => text.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid value for query parameter {name}: {text:?} is not an integer"
                ))
            }),
        }
    }
}

/// Subresources of a namespace itself, which sit where a namespaced resource's name would.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

fn segment_ok(segment: &str) -> bool {
    !segment.is_empty() && segment != "." && segment != ".."
}

/// Routes a request. `path` is the URL path (percent-decoded segment by segment here).
pub fn route(method: &str, path: &str, query: &Query) -> Result<Route, ApiError> {
    let trimmed = path.trim_matches('/');
    let parts: Vec<String> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed
            .split('/')
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| ApiError::bad_request("the request path is not valid UTF-8"))
            })
            .collect::<Result<_, _>>()?
    };
    let p: Vec<&str> = parts.iter().map(String::as_str).collect();
    match p.as_slice() {
        ["version"] => return Ok(Route::Version),
        ["metrics"] => return Ok(Route::Metrics),
        [".well-known", "openid-configuration"] => return Ok(Route::OpenIdConfiguration),
        ["openid", "v1", "jwks"] => return Ok(Route::Jwks),
        [h @ ("healthz" | "livez" | "readyz"), ..] => return Ok(Route::Health((*h).to_owned())),
        ["openapi", "v2"] => return Ok(Route::OpenApiV2),
        ["openapi", "v3"] => return Ok(Route::OpenApiV3(None)),
        ["openapi", "v3", rest @ ..] => return Ok(Route::OpenApiV3(Some(rest.join("/")))),
        _ => {}
    }
    let (group, version, rest): (&str, &str, &[&str]) = match p.as_slice() {
        ["api"] | ["apis"] | ["apis", _] | ["api", "v1"] | ["apis", _, _] => {
            return Ok(Route::Discovery(parts.clone()))
        }
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::path_not_found(path)),
    };
    if rest.iter().any(|s| !segment_ok(s)) {
        return Err(ApiError::path_not_found(path));
    }
    // A `%2F` decodes into a name or namespace; no object can have one, and a store key built
    // from it must never reach another object's path.
    if let Some(bad) = rest.iter().find(|s| s.contains(['/', '%'])) {
        return Err(ApiError::bad_request(format!(
            "{bad:?}: a name or namespace may not contain '/' or '%'"
        )));
    }
    // /namespaces/<ns>/<resource>/... unless the third segment is a namespace subresource.
    let (namespace, rest): (Option<&str>, &[&str]) = match rest {
        ["namespaces", ns, next, ..] if !NAMESPACE_SUBRESOURCES.contains(next) => {
            (Some(*ns), &rest[2..])
        }
        _ => (None, rest),
    };
    let (resource, name, subresource) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => return Err(ApiError::path_not_found(path)),
    };
    if let Some(review) = crate::auth::reviews::Review::lookup(group, resource) {
        if version != "v1" || name.is_some() || namespace.is_some() != review.namespaced() {
            return Err(ApiError::path_not_found(path));
        }
        if method != "POST" {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method} {path})"
            )));
        }
        return Ok(Route::Review {
            review,
            namespace: namespace.map(str::to_owned),
        });
    }
    let info = resources::lookup(group, version, resource)
        .ok_or_else(|| ApiError::path_not_found(path))?;
    if namespace.is_some() && !info.namespaced {
        return Err(ApiError::path_not_found(path));
    }
    if let Some(sub) = subresource {
        if !info.has_subresource(sub) {
            return Err(ApiError::path_not_found(path));
        }
    }
    // A namespaced object is addressed inside its namespace; only lists go across them.
    if info.namespaced && namespace.is_none() && name.is_some() {
        return Err(ApiError::path_not_found(path));
    }
    let verb = match (method, name.is_some()) {
        ("GET", true) => {
            if query.flag("watch")? {
                Verb::Watch
            } else {
                Verb::Get
            }
        }
        ("GET", false) => {
            if query.flag("watch")? {
                Verb::Watch
            } else {
                Verb::List
            }
        }
        ("POST", _) => Verb::Create,
        ("PUT", true) => Verb::Update,
        ("PATCH", true) => Verb::Patch,
        ("DELETE", true) => Verb::Delete,
        ("DELETE", false) => Verb::DeleteCollection,
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method} {path})"
            )))
        }
    };
    if verb == Verb::Create && namespace.is_none() && info.namespaced && name.is_none() {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {path})"
        )));
    }
    Ok(Route::Resource(ResourceRequest {
        info,
        verb,
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(method: &str, path: &str, query: &str) -> ResourceRequest {
        match route(method, path, &Query::parse(query)) {
            Ok(Route::Resource(r)) => r,
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    #[test]
    fn routes_namespaced_cluster_and_subresource_paths() {
        let r = resource("GET", "/api/v1/namespaces/default/pods/web", "");
        assert_eq!((r.info.resource, r.verb), ("pods", Verb::Get));
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.name.as_deref(), Some("web"));
        let r = resource("GET", "/api/v1/pods", "watch=1");
        assert_eq!((r.verb, r.namespace), (Verb::Watch, None));
        let r = resource(
            "PATCH",
            "/apis/apps/v1/namespaces/a/deployments/d/scale",
            "",
        );
        assert_eq!(r.subresource.as_deref(), Some("scale"));
        let r = resource("GET", "/api/v1/namespaces/kube-system", "");
        assert_eq!(
            (r.info.resource, r.name.as_deref()),
            ("namespaces", Some("kube-system"))
        );
        let r = resource("PUT", "/api/v1/namespaces/x/status", "");
        assert_eq!(
            (r.info.resource, r.subresource.as_deref()),
            ("namespaces", Some("status"))
        );
        let r = resource("DELETE", "/api/v1/namespaces/x/configmaps", "");
        assert_eq!(r.verb, Verb::DeleteCollection);
    }

    #[test]
    fn refuses_what_is_not_served() {
        for (method, path) in [
            ("GET", "/api/v1/widgets"),
            ("GET", "/apis/apps/v2/deployments"),
            ("GET", "/api/v1/namespaces/a/nodes/n"),
            ("GET", "/api/v1/namespaces/a/pods/p/attach"),
            ("GET", "/api/v1/pods/p"),
            ("GET", "/api/v1/namespaces/a/pods/p/status/extra"),
            ("GET", "/api/v1/namespaces/../pods"),
            ("PUT", "/api/v1/namespaces/a/pods"),
            ("POST", "/api/v1/pods"),
            ("GET", "/nonsense"),
            ("GET", "/api/v1/namespaces/a%2Fb/pods"),
            ("GET", "/api/v1/namespaces/a/pods/x%2F..%2Fy"),
        ] {
            let result = route(method, path, &Query::default());
            assert!(
                result.is_err(),
                "{method} {path} should be refused: {result:?}"
            );
        }
        let bad = route("GET", "/api/v1/pods", &Query::parse("watch=maybe"));
        assert_eq!(bad.err().map(|e| e.code), Some(400));
    }
}
