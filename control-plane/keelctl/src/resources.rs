//! What a user may type for a kind (`pods`, `po`, `pod`, `Pod`, `deployments.apps`), resolved
//! against the server's own discovery documents, as kubectl's RESTMapper does: whatever the
//! server serves can be named, with the short names it publishes, and nothing is listed here.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIGroupList, APIResourceList};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// One served kind, in the version its group prefers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    /// The plural, as in URLs (`deployments`).
    pub name: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub verbs: Vec<String>,
}

impl Resource {
    /// `pods`, `deployments.apps`: kubectl's name for the kind.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.name.clone()
        } else {
            format!("{}.{}", self.name, self.group)
        }
    }

    /// `pod`, `deployment.apps`: what `-o name` prints before the slash.
    pub fn name_prefix(&self) -> String {
        let kind = self.kind.to_lowercase();
        if self.group.is_empty() {
            kind
        } else {
            format!("{kind}.{}", self.group)
        }
    }

    /// `/api/v1` or `/apis/apps/v1`.
    pub fn group_version_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The URL path of the collection, or of one object when `name` is given.
    pub fn path(&self, namespace: Option<&str>, name: Option<&str>) -> String {
        let mut path = self.group_version_path();
        if let (true, Some(namespace)) = (self.namespaced, namespace) {
            path.push_str(&format!("/namespaces/{}", segment(namespace)));
        }
        path.push('/');
        path.push_str(&self.name);
        if let Some(name) = name {
            path.push('/');
            path.push_str(&segment(name));
        }
        path
    }

    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }
}

/// Everything but RFC 3986's unreserved characters.
const RESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// User input as one URL component (a path segment, a query value): percent-encoded but for
/// unreserved characters.
pub fn encode(text: &str) -> String {
    utf8_percent_encode(text, RESERVED).to_string()
}

/// A path segment from user input: a name such as `../x` or `a?b` stays one segment naming
/// one object (dots alone would still climb, so they are encoded too).
pub(crate) fn segment(text: &str) -> String {
    let out = encode(text);
    if out == "." || out == ".." {
        return out.replace('.', "%2E");
    }
    out
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    /// kubectl's words for a kind nobody serves.
    #[error("the server doesn't have a resource type \"{0}\"")]
    Unknown(String),
    #[error("\"{input}\" is ambiguous: it names {}", .candidates.join(", "))]
    Ambiguous {
        input: String,
        candidates: Vec<String>,
    },
}

/// The served kinds of one group-version's discovery document (subresources left out).
pub fn from_list(list: &APIResourceList) -> Vec<Resource> {
    let (group, version) = match list.group_version.split_once('/') {
        Some((group, version)) => (group.to_owned(), version.to_owned()),
        None => (String::new(), list.group_version.clone()),
    };
    list.resources
        .iter()
        .filter(|r| !r.name.contains('/'))
        .map(|r| Resource {
            group: group.clone(),
            version: version.clone(),
            name: r.name.clone(),
            singular: r.singular_name.clone(),
            kind: r.kind.clone(),
            namespaced: r.namespaced,
            short_names: r.short_names.clone().unwrap_or_default(),
            verbs: r.verbs.clone(),
        })
        .collect()
}

/// The Accept header of a plain JSON answer.
pub(crate) const JSON: &str = "application/json";

/// Every served kind: the core group, then each group in its preferred version.
pub async fn discover(client: &kube::Client) -> Result<Vec<Resource>, kube::Error> {
    let core: APIResourceList = get_json(client, "/api/v1", JSON).await?;
    let mut resources = from_list(&core);
    let groups: APIGroupList = get_json(client, "/apis", JSON).await?;
    for group in &groups.groups {
        let Some(preferred) = group
            .preferred_version
            .as_ref()
            .or_else(|| group.versions.first())
        else {
            continue;
        };
        let list: APIResourceList =
            get_json(client, &format!("/apis/{}", preferred.group_version), JSON).await?;
        resources.extend(from_list(&list));
    }
    Ok(resources)
}

/// GETs `path` as `accept` and decodes the JSON answer.
pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
    client: &kube::Client,
    path: &str,
    accept: &str,
) -> Result<T, kube::Error> {
    let request = http::Request::get(path)
        .header(http::header::ACCEPT, accept)
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    client.request(request).await
}

/// The group and version of an object's `apiVersion`: `v1` is the core group's, `apps/v1`
/// the `apps` group's. `None` for anything else (empty parts, more slashes, spaces or
/// control characters), which names no group-version a server could serve.
pub fn split_api_version(api_version: &str) -> Option<(&str, &str)> {
    let well_formed = |part: &str| {
        !part.is_empty()
            && !part.contains('/')
            && !part.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    match api_version.split_once('/') {
        None => well_formed(api_version).then_some(("", api_version)),
        Some((group, version)) => {
            (well_formed(group) && well_formed(version)).then_some((group, version))
        }
    }
}

/// The kind an object's `apiVersion` and `kind` name, matched exactly (case and all) as
/// kubectl's RESTMapper matches a manifest's kind.
pub fn find_kind<'a>(
    resources: &'a [Resource],
    group: &str,
    version: &str,
    kind: &str,
) -> Option<&'a Resource> {
    resources
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// The kinds of one group-version, from its own discovery document: `apply` names versions
/// explicitly, and [`discover`] only reads each group's preferred one. Empty when the server
/// does not serve that group-version (404).
pub async fn discover_version(
    client: &kube::Client,
    group: &str,
    version: &str,
) -> Result<Vec<Resource>, kube::Error> {
    let path = if group.is_empty() {
        format!("/api/{}", segment(version))
    } else {
        format!("/apis/{}/{}", segment(group), segment(version))
    };
    match get_json::<APIResourceList>(client, &path, JSON).await {
        Ok(list) => Ok(from_list(&list)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
        Err(other) => Err(other),
    }
}

/// Sends `body` (JSON, as `content_type` says) with `method` to `path` and decodes the JSON
/// answer: the object the server created or patched.
pub(crate) async fn send_json(
    client: &kube::Client,
    method: http::Method,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<serde_json::Value, kube::Error> {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::ACCEPT, JSON)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(body)
        .map_err(kube::Error::HttpError)?;
    client.request(request).await
}

/// The kind `input` names: by plural, singular, short name or kind (any case), optionally
/// qualified by its group (`deployments.apps`, `deploy.apps`).
pub fn resolve<'a>(resources: &'a [Resource], input: &str) -> Result<&'a Resource, ResolveError> {
    let wanted = input.to_lowercase();
    let matches = |r: &Resource, name: &str| {
        r.name == name
            || r.singular == name
            || r.kind.to_lowercase() == name
            || r.short_names.iter().any(|s| s == name)
    };
    let mut found: Vec<&Resource> = resources.iter().filter(|r| matches(r, &wanted)).collect();
    if found.is_empty() {
        if let Some((name, group)) = wanted.split_once('.') {
            found = resources
                .iter()
                .filter(|r| r.group == group && matches(r, name))
                .collect();
        }
    }
    match found.as_slice() {
        [] => Err(ResolveError::Unknown(input.to_owned())),
        [one] => Ok(one),
        // The core group wins a tie, as kubectl prefers it (`events` over events.k8s.io).
        many => match many.iter().find(|r| r.group.is_empty()) {
            Some(core) => Ok(core),
            None => Err(ResolveError::Ambiguous {
                input: input.to_owned(),
                candidates: many.iter().map(|r| r.qualified()).collect(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn served() -> Vec<Resource> {
        let core: APIResourceList = serde_json::from_value(json!({
            "groupVersion": "v1",
            "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
                 "verbs": ["get", "list", "delete"], "shortNames": ["po"]},
                {"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]},
                {"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace",
                 "verbs": ["get", "list"], "shortNames": ["ns"]},
                {"name": "events", "singularName": "event", "namespaced": true, "kind": "Event",
                 "verbs": ["get", "list"], "shortNames": ["ev"]},
            ]}))
        .expect("a core list");
        let apps: APIResourceList = serde_json::from_value(json!({
        "groupVersion": "apps/v1",
        "resources": [
            {"name": "deployments", "singularName": "deployment", "namespaced": true,
             "kind": "Deployment", "verbs": ["get", "list"], "shortNames": ["deploy"]},
        ]}))
        .expect("an apps list");
        let events: APIResourceList = serde_json::from_value(json!({
        "groupVersion": "events.k8s.io/v1",
        "resources": [
            {"name": "events", "singularName": "event", "namespaced": true, "kind": "Event",
             "verbs": ["get", "list"], "shortNames": ["ev"]},
        ]}))
        .expect("an events list");
        let mut all = from_list(&core);
        all.extend(from_list(&apps));
        all.extend(from_list(&events));
        all
    }

    #[test]
    fn every_name_kubectl_takes_resolves() {
        let served = served();
        for input in ["pods", "pod", "po", "Pod", "PODS"] {
            assert_eq!(resolve(&served, input).expect(input).name, "pods");
        }
        for input in ["deploy", "deployments.apps", "deploy.apps", "Deployment"] {
            let found = resolve(&served, input).expect(input);
            assert_eq!(
                (found.group.as_str(), found.name.as_str()),
                ("apps", "deployments")
            );
        }
        // Subresources are not kinds.
        assert!(resolve(&served, "pods/log").is_err());
        // The core group wins a tie.
        assert_eq!(resolve(&served, "events").expect("events").group, "");
        assert_eq!(
            resolve(&served, "events.events.k8s.io")
                .expect("qualified")
                .group,
            "events.k8s.io"
        );
    }

    #[test]
    fn unknown_kinds_are_named_in_kubectls_words() {
        let served = served();
        for input in ["widgets", "", "po\nd", "../pods", "pods.nope"] {
            let error = resolve(&served, input).expect_err(input);
            assert_eq!(
                error.to_string(),
                format!("the server doesn't have a resource type \"{input}\"")
            );
        }
    }

    #[test]
    fn manifests_kinds_match_group_version_and_kind_exactly() {
        let served = served();
        assert_eq!(split_api_version("v1"), Some(("", "v1")));
        assert_eq!(split_api_version("apps/v1"), Some(("apps", "v1")));
        for bad in ["", "/v1", "apps/", "a/b/c", "v 1", "apps/v1\n"] {
            assert_eq!(split_api_version(bad), None, "{bad:?}");
        }
        // `../v1` splits, but names a group no server has, and its path encodes it into one
        // segment.
        assert_eq!(split_api_version("../v1"), Some(("..", "v1")));
        let deploy = find_kind(&served, "apps", "v1", "Deployment").expect("deployments");
        assert_eq!(deploy.name, "deployments");
        assert_eq!(
            find_kind(&served, "", "v1", "Pod").map(|r| r.name.as_str()),
            Some("pods")
        );
        // The kind a user would type is not the kind a manifest names.
        assert!(find_kind(&served, "apps", "v1", "deployment").is_none());
        assert!(find_kind(&served, "apps", "v1beta1", "Deployment").is_none());
        assert!(find_kind(&served, "", "v1", "Deployment").is_none());
        // Both event kinds, each in its own group.
        assert_eq!(
            find_kind(&served, "events.k8s.io", "v1", "Event").map(|r| r.group.as_str()),
            Some("events.k8s.io")
        );
        assert_eq!(
            find_kind(&served, "", "v1", "Event").map(|r| r.group.as_str()),
            Some("")
        );
    }

    #[test]
    fn paths_keep_hostile_names_in_one_segment() {
        let served = served();
        let pods = resolve(&served, "pods").expect("pods");
        assert_eq!(
            pods.path(Some("a"), Some("web")),
            "/api/v1/namespaces/a/pods/web"
        );
        assert_eq!(
            pods.path(Some("a"), Some("../../secrets?x=1")),
            "/api/v1/namespaces/a/pods/..%2F..%2Fsecrets%3Fx%3D1"
        );
        assert_eq!(
            pods.path(Some(".."), None),
            "/api/v1/namespaces/%2E%2E/pods"
        );
        let namespaces = resolve(&served, "ns").expect("ns");
        // A cluster-scoped kind ignores the namespace.
        assert_eq!(
            namespaces.path(Some("a"), Some("b")),
            "/api/v1/namespaces/b"
        );
        let deploy = resolve(&served, "deploy").expect("deploy");
        assert_eq!(deploy.path(None, None), "/apis/apps/v1/deployments");
        assert_eq!(deploy.name_prefix(), "deployment.apps");
    }
}
