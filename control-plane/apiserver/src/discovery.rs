//! Discovery: `/version`, the legacy documents (`/api`, `/apis`, per group-version resource
//! lists) and aggregated discovery (apidiscovery.k8s.io/v2), which kubectl asks for first and
//! picks by the response's Content-Type.

use serde_json::{json, Value};

use crate::auth::reviews::Review;
use crate::resources::{self, ResourceInfo, RESOURCES};

/// The served group-versions: the stored kinds', then the review groups (create-only kinds
/// answered by the security chain).
fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out = resources::group_versions();
    for review in Review::ALL {
        let (group, _, _) = review.names();
        if !out.contains(&(group, "v1")) {
            out.push((group, "v1"));
        }
    }
    out
}

/// The reviews of a group, as discovery lists them: create-only, not stored.
fn reviews_of(group: &str) -> impl Iterator<Item = (&'static str, &'static str, bool)> + '_ {
    Review::ALL.into_iter().filter_map(move |review| {
        let (g, resource, kind) = review.names();
        (g == group).then_some((resource, kind, review.namespaced()))
    })
}

pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// The Kubernetes version whose API keel serves.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "37",
        "gitVersion": concat!("v1.37.0-keel+", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a }),
    })
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// (kind group, kind version, kind, verbs) of a subresource.
fn subresource_kind(
    info: &ResourceInfo,
    sub: &str,
) -> (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
) {
    match sub {
        "scale" => ("autoscaling", "v1", "Scale", &["get", "patch", "update"]),
        "binding" => ("", "v1", "Binding", &["create"]),
        "eviction" => ("policy", "v1", "Eviction", &["create"]),
        "log" => ("", "v1", "Pod", &["get"]),
        "finalize" => ("", "v1", "Namespace", &["update"]),
        "token" => ("authentication.k8s.io", "v1", "TokenRequest", &["create"]),
        _ => (
            info.group,
            info.version,
            info.kind,
            &["get", "patch", "update"],
        ),
    }
}

fn wants_aggregated(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|media| {
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            params.contains(&"g=apidiscovery.k8s.io")
                && params.contains(&"v=v2")
                && params.contains(&"as=APIGroupDiscoveryList")
        })
    })
}

fn aggregated_resource(info: &ResourceInfo) -> Value {
    let subresources: Vec<Value> = info
        .subresources
        .iter()
        .map(|sub| {
            let (group, version, kind, verbs) = subresource_kind(info, sub);
            json!({"subresource": sub, "responseKind": {"group": group, "version": version, "kind": kind}, "verbs": verbs})
        })
        .collect();
    let mut resource = json!({
        "resource": info.resource,
        "responseKind": {"group": info.group, "version": info.version, "kind": info.kind},
        "scope": if info.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": info.singular,
        "verbs": VERBS,
    });
    if !info.short_names.is_empty() {
        resource["shortNames"] = json!(info.short_names);
    }
    if !info.categories.is_empty() {
        resource["categories"] = json!(info.categories);
    }
    if !subresources.is_empty() {
        resource["subresources"] = json!(subresources);
    }
    resource
}

fn aggregated(core: bool) -> Value {
    let items: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(group, version)| {
            let mut resources: Vec<Value> = RESOURCES
                .iter()
                .filter(|r| r.group == group && r.version == version)
                .map(aggregated_resource)
                .collect();
            for (resource, kind, namespaced) in reviews_of(group) {
                resources.push(json!({
                    "resource": resource,
                    "responseKind": {"group": group, "version": "v1", "kind": kind},
                    "scope": if namespaced { "Namespaced" } else { "Cluster" },
                    "singularResource": resource.trim_end_matches('s'),
                    "verbs": ["create"],
                }));
            }
            json!({"metadata": {"name": group, "creationTimestamp": null},
                   "versions": [{"version": version, "resources": resources, "freshness": "Current"}]})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

fn resource_list(group: &str, version: &str) -> Option<Value> {
    let served: Vec<&ResourceInfo> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    let mut resources = Vec::new();
    if version == "v1" {
        for (resource, kind, namespaced) in reviews_of(group) {
            resources.push(json!({
                "name": resource,
                "singularName": resource.trim_end_matches('s'),
                "namespaced": namespaced,
                "kind": kind,
                "verbs": ["create"],
            }));
        }
    }
    if served.is_empty() && resources.is_empty() {
        return None;
    }
    for info in served {
        let mut entry = json!({
            "name": info.resource,
            "singularName": info.singular,
            "namespaced": info.namespaced,
            "kind": info.kind,
            "verbs": VERBS,
        });
        if !info.short_names.is_empty() {
            entry["shortNames"] = json!(info.short_names);
        }
        if !info.categories.is_empty() {
            entry["categories"] = json!(info.categories);
        }
        resources.push(entry);
        for sub in info.subresources {
            let (g, v, kind, verbs) = subresource_kind(info, sub);
            let mut sub_entry = json!({
                "name": format!("{}/{sub}", info.resource),
                "singularName": "",
                "namespaced": info.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if g != info.group || v != info.version {
                sub_entry["group"] = json!(g);
                sub_entry["version"] = json!(v);
            }
            resources.push(sub_entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

fn api_group(group: &str) -> Option<Value> {
    let versions: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first()?.clone();
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions, "preferredVersion": preferred}),
    )
}

/// The discovery document at `parts` (the path's segments), and its content type; None for
/// a group or version keel does not serve.
pub fn document(parts: &[String], accept: Option<&str>) -> Option<(Value, &'static str)> {
    let p: Vec<&str> = parts.iter().map(String::as_str).collect();
    let json = "application/json";
    match p.as_slice() {
        ["api"] if wants_aggregated(accept) => Some((aggregated(true), AGGREGATED_CONTENT_TYPE)),
        ["apis"] if wants_aggregated(accept) => Some((aggregated(false), AGGREGATED_CONTENT_TYPE)),
        ["api"] => Some((
            json!({"kind": "APIVersions", "versions": ["v1"],
                   "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}),
            json,
        )),
        ["apis"] => {
            let mut groups: Vec<&str> = Vec::new();
            for (g, _) in group_versions() {
                if !g.is_empty() && !groups.contains(&g) {
                    groups.push(g);
                }
            }
            let groups: Vec<Value> = groups.into_iter().filter_map(api_group).collect();
            Some((
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
                json,
            ))
        }
        ["api", "v1"] => resource_list("", "v1").map(|d| (d, json)),
        ["apis", group] => api_group(group).map(|d| (d, json)),
        ["apis", group, version] => resource_list(group, version).map(|d| (d, json)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(path: &[&str], accept: Option<&str>) -> (Value, &'static str) {
        let parts: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        document(&parts, accept).expect("served")
    }

    #[test]
    fn legacy_documents_list_resources_and_subresources() {
        let (core, _) = doc(&["api", "v1"], None);
        let names: Vec<&str> = core["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert!(
            names.contains(&"pods")
                && names.contains(&"pods/status")
                && names.contains(&"pods/binding")
        );
        let (apps, _) = doc(&["apis", "apps", "v1"], None);
        let scale = apps["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["name"] == "deployments/scale")
            .cloned();
        assert_eq!(scale.expect("scale listed")["kind"], "Scale");
        let (groups, _) = doc(&["apis"], Some("application/json"));
        assert!(groups["groups"]
            .as_array()
            .is_some_and(|g| g.iter().any(|x| x["name"] == "coordination.k8s.io")));
        assert!(document(&["apis".into(), "batch".into(), "v1".into()], None).is_none());
    }

    #[test]
    fn aggregated_discovery_when_asked_first() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        let (list, content_type) = doc(&["apis"], Some(kubectl));
        assert_eq!(content_type, AGGREGATED_CONTENT_TYPE);
        let apps = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["metadata"]["name"] == "apps")
            .cloned()
            .expect("apps");
        let deployments = &apps["versions"][0]["resources"][0];
        assert_eq!(deployments["resource"], "deployments");
        assert_eq!(
            deployments["subresources"][1]["responseKind"]["kind"],
            "Scale"
        );
        let (_, plain) = doc(&["api"], Some("application/json"));
        assert_eq!(plain, "application/json");
    }
}
