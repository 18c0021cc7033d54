//! The documents are read here the way kubectl reads them: the query-parameter verifier's walk
//! over PATCH operations, explain's GVK lookup and field walk, and strategic merge patch's
//! `allOf[0]`-then-`$ref` resolution.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use serde_json::{json, Value};

use super::*;

const RESOURCES: &[OpenApiResource] = &[
    OpenApiResource {
        group: "",
        version: "v1",
        resource: "namespaces",
        kind: "Namespace",
        namespaced: false,
        subresources: &["status", "finalize"],
        schema: schema_of::<Namespace>,
    },
    OpenApiResource {
        group: "",
        version: "v1",
        resource: "pods",
        kind: "Pod",
        namespaced: true,
        subresources: &["status", "binding", "log", "eviction"],
        schema: schema_of::<Pod>,
    },
    OpenApiResource {
        group: "",
        version: "v1",
        resource: "services",
        kind: "Service",
        namespaced: true,
        subresources: &["status"],
        schema: schema_of::<Service>,
    },
    OpenApiResource {
        group: "apps",
        version: "v1",
        resource: "deployments",
        kind: "Deployment",
        namespaced: true,
        subresources: &["status", "scale"],
        schema: schema_of::<Deployment>,
    },
];

fn document(path: &str) -> Value {
    v3_group_version(RESOURCES, path).expect("a served group-version")
}

/// `strategicpatch.PatchMetaFromOpenAPIV3`'s `resolve`: the first `allOf`, then a local `$ref`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    let schema = schema
        .get("allOf")
        .and_then(|all| all.get(0))
        .unwrap_or(schema);
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference
                .strip_prefix(REF)
                .expect("a reference into components");
            let target = &doc["components"]["schemas"][name];
            assert!(target.is_object(), "{reference} resolves");
            target
        }
        None => schema,
    }
}

fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner.as_str()) {
                    ("$ref", Some(reference)) => out.push(reference),
                    _ => collect_refs(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|inner| collect_refs(inner, out)),
        _ => {}
    }
}

#[test]
fn index_lists_each_served_group_version() {
    let index = v3_index(RESOURCES);
    let paths = index["paths"].as_object().expect("paths");
    let mut served: Vec<&str> = paths.keys().map(String::as_str).collect();
    served.sort_unstable();
    assert_eq!(served, ["api/v1", "apis/apps/v1"]);
    for (path, entry) in paths {
        let url = entry["serverRelativeURL"]
            .as_str()
            .expect("serverRelativeURL");
        assert!(
            url.starts_with(&format!("/openapi/v3/{path}?hash=")),
            "{url}"
        );
    }

    // The prebuilt form serves the same index, and each document under the hash it advertises.
    let built = OpenApiV3::new(RESOURCES);
    let cached_index: Value = serde_json::from_slice(built.index()).expect("index JSON");
    assert_eq!(cached_index, index);
    let (bytes, hash) = built
        .group_version("/openapi/v3/apis/apps/v1?hash=stale")
        .expect("apps/v1");
    let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .expect("url");
    assert!(url.ends_with(&format!("?hash={hash}")), "{url} / {hash}");
    let parsed: Value = serde_json::from_slice(bytes).expect("document JSON");
    assert_eq!(parsed, document("apis/apps/v1"));
}

#[test]
fn pod_patch_operations_declare_field_validation() {
    let doc = document("/openapi/v3/api/v1");
    assert_eq!(doc["openapi"], "3.0.0");
    let pod = json!({ "group": "", "version": "v1", "kind": "Pod" });
    // query_param_verifier_v3.go decides on the first PATCH of the GVK it meets, in map order,
    // so every one of them must carry the parameter.
    let mut patches = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let Some(patch) = item.get("patch") else {
            continue;
        };
        if patch["x-kubernetes-group-version-kind"] != pod {
            continue;
        }
        patches.push(path.as_str());
        assert_eq!(patch["x-kubernetes-action"], "patch");
        let params = patch["parameters"].as_array().expect("parameters");
        let declared = params
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query");
        assert!(declared, "{path} declares fieldValidation");
        // patcher.go computes the apply patch from OpenAPI v3 only if this type is accepted.
        let content = &patch["requestBody"]["content"];
        assert!(
            content
                .get("application/strategic-merge-patch+json")
                .is_some(),
            "{path}"
        );
    }
    patches.sort_unstable();
    assert_eq!(
        patches,
        [
            "/api/v1/namespaces/{namespace}/pods/{name}",
            "/api/v1/namespaces/{namespace}/pods/{name}/status",
        ]
    );
    let item = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"];
    assert_eq!(item["patch"]["operationId"], "patchCoreV1NamespacedPod");
    assert_eq!(item["patch"]["tags"], json!(["core_v1"]));
    let collection = &doc["paths"]["/api/v1/namespaces/{namespace}/pods"];
    assert_eq!(
        collection["post"]["operationId"],
        "createCoreV1NamespacedPod"
    );
    assert_eq!(
        collection["delete"]["x-kubernetes-action"],
        "deletecollection"
    );
    let every = &doc["paths"]["/api/v1/pods"]["get"];
    assert_eq!(every["operationId"], "listCoreV1PodForAllNamespaces");
    let binding = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/binding"]["post"];
    assert_eq!(
        binding["x-kubernetes-group-version-kind"]["kind"],
        "Binding"
    );

    // patcher.go looks the kind's schema up by a GVK *array* on the component.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"],
        json!([pod])
    );
    let list = &schemas["io.k8s.api.core.v1.PodList"]["x-kubernetes-group-version-kind"];
    assert_eq!(
        list,
        &json!([{ "group": "", "version": "v1", "kind": "PodList" }])
    );
}

#[test]
fn explain_finds_pod_spec_containers() {
    let doc = document("api/v1");
    // plaintext.tmpl: the GVK of an operation on /api/v1/pods (the first path it tries)...
    let gvk = &doc["paths"]["/api/v1/pods"]["get"]["x-kubernetes-group-version-kind"];
    // ...then the first component (in key order) whose GVK list contains exactly that object.
    let (name, pod) = doc["components"]["schemas"]
        .as_object()
        .expect("schemas")
        .iter()
        .find(|(_, s)| {
            s["x-kubernetes-group-version-kind"]
                .as_array()
                .is_some_and(|l| l.contains(gvk))
        })
        .expect("a schema for the GVK");
    assert_eq!(name, "io.k8s.api.core.v1.Pod");

    // A field that names another definition is `allOf: [{$ref}]` beside its own description,
    // as kube-apiserver serves it.
    let spec_field = &pod["properties"]["spec"];
    assert!(spec_field["description"].is_string());
    assert_eq!(
        spec_field["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.PodSpec"
    );
    let spec = resolve(&doc, spec_field);
    let containers = &spec["properties"]["containers"];
    assert_eq!(containers["type"], "array");
    assert!(containers["description"].is_string());
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");

    let container = resolve(&doc, &containers["items"]);
    let description = container["description"]
        .as_str()
        .expect("Container's description");
    assert!(description.contains("container"), "{description}");
    assert!(container["properties"]["image"]["description"].is_string());
    let ports = &container["properties"]["ports"];
    assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
    let env = &container["properties"]["env"];
    assert_eq!(env["x-kubernetes-patch-merge-key"], "name");
    let volumes = &spec["properties"]["volumes"];
    assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
    let metadata = resolve(&doc, &pod["properties"]["metadata"]);
    let owners = &metadata["properties"]["ownerReferences"];
    assert_eq!(owners["x-kubernetes-patch-merge-key"], "uid");
}

#[test]
fn service_ports_merge_on_port() {
    let doc = document("api/v1");
    let service = &doc["components"]["schemas"]["io.k8s.api.core.v1.Service"];
    let spec = resolve(&doc, &service["properties"]["spec"]);
    assert_eq!(
        spec["properties"]["ports"]["x-kubernetes-patch-merge-key"],
        "port"
    );
    let status = resolve(&doc, &service["properties"]["status"]);
    assert_eq!(
        status["properties"]["conditions"]["x-kubernetes-patch-merge-key"],
        "type"
    );
}

#[test]
fn deployment_scale_is_the_autoscaling_kind() {
    let doc = document("apis/apps/v1");
    let path = "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale";
    let patch = &doc["paths"][path]["patch"];
    assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeploymentScale");
    let scale = json!({ "group": "autoscaling", "version": "v1", "kind": "Scale" });
    assert_eq!(patch["x-kubernetes-group-version-kind"], scale);
    let schemas = &doc["components"]["schemas"];
    let scale_schema = &schemas["io.k8s.api.autoscaling.v1.Scale"];
    assert_eq!(
        scale_schema["x-kubernetes-group-version-kind"],
        json!([scale])
    );
    let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
    let spec = resolve(&doc, &deployment["properties"]["spec"]);
    assert_eq!(
        spec["properties"]["strategy"]["x-kubernetes-patch-strategy"],
        "retainKeys"
    );
    // Core kinds are not in the apps document.
    assert!(schemas.get("io.k8s.api.core.v1.Pod").is_none());
}

#[test]
fn every_reference_resolves() {
    for path in ["api/v1", "apis/apps/v1"] {
        let doc = document(path);
        assert_eq!(doc["info"]["title"], "Kubernetes");
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(!refs.is_empty());
        for reference in refs {
            let name = reference
                .strip_prefix(REF)
                .unwrap_or_else(|| panic!("{reference}"));
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{path}: {reference}"
            );
        }
    }
}

#[test]
fn unknown_group_version_is_none() {
    assert!(v3_group_version(RESOURCES, "apis/batch/v1").is_none());
    assert!(v3_group_version(RESOURCES, "/openapi/v3/apis/apps/v2").is_none());
    assert!(v3_group_version(RESOURCES, "/openapi/v3").is_none());
    assert!(v3_group_version(RESOURCES, "apis/apps/v1/").is_some());
    assert!(OpenApiV3::new(RESOURCES)
        .group_version("apis/batch/v1")
        .is_none());
}

#[test]
fn operation_names_follow_kube_apiserver() {
    let gv = GroupVersion::new("flowcontrol.apiserver.k8s.io", "v1beta3");
    assert_eq!(gv.id, "FlowcontrolApiserverV1beta3");
    assert_eq!(gv.tag, "flowcontrolApiserver_v1beta3");
    assert_eq!(gv.prefix, "/apis/flowcontrol.apiserver.k8s.io/v1beta3");
    let core = GroupVersion::new("", "v1");
    assert_eq!((core.id.as_str(), core.tag.as_str()), ("CoreV1", "core_v1"));
    assert_eq!(
        operation_id_part("rbac.authorization", true),
        "RbacAuthorization"
    );
}
