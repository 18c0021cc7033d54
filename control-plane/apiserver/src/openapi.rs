//! OpenAPI v3 as kube-apiserver publishes it: the index at `/openapi/v3` and one document per
//! served group-version at `/openapi/v3/api/v1`, `/openapi/v3/apis/<group>/<version>`.
//!
//! The stock `kubectl` reads these documents in three places, and each dictates part of the shape:
//! - `apply`/`create` validation (`cli-runtime/pkg/resource/query_param_verifier_v3.go`): the
//!   first PATCH operation whose `x-kubernetes-group-version-kind` (an object) is the object's GVK
//!   must list a query parameter named `fieldValidation`; otherwise kubectl validates client-side
//!   against OpenAPI v2, which keel does not serve.
//! - `apply`'s patch (`kubectl/pkg/cmd/apply/patcher.go`): a PATCH operation of the GVK must
//!   accept `application/strategic-merge-patch+json`; then the component schema whose
//!   `x-kubernetes-group-version-kind` (an array) holds the GVK is walked with
//!   `strategicpatch.PatchMetaFromOpenAPIV3`, which reads `x-kubernetes-patch-strategy` and
//!   `x-kubernetes-patch-merge-key` on properties and follows `allOf[0]`, then `$ref`.
//! - `explain` (`kubectl/pkg/explain/v2/templates/plaintext.tmpl`): the GVK of a get, post, put,
//!   patch or delete operation on `<prefix>/<resource>`, `.../{name}` or the namespaced forms,
//!   then the component schema whose GVK array contains that exact `{group, kind, version}`.
//!
//! Schemas come from `k8s-openapi`'s `schemars` implementations, which carry Kubernetes'
//! definition names and descriptions but not the patch extensions; those are added from
//! `patch_meta::PATCH_META`, taken from the struct tags of `k8s.io/api` and `k8s.io/apimachinery`.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::Binding;
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

mod patch_meta;
mod paths;
#[cfg(test)]
mod tests;

use patch_meta::*;
use paths::*;

const REF: &str = "#/components/schemas/";
const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.";

/// Registers a schema with a generator and returns it (a `$ref` for named types).
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// One served kind, as the resource registry describes it.
#[derive(Clone, Copy)]
pub struct OpenApiResource {
    /// `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    /// The plural in the URL: `pods`.
    pub resource: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// `status`, `scale`, `binding`, `eviction`, `finalize`, `ephemeralcontainers`, `resize` are
    /// documented; others (`log` and the connect ones: `exec`, `attach`, `portforward`, `proxy`)
    /// read or write no object and are left out, which no kubectl lookup needs.
    pub subresources: &'static [&'static str],
    /// The kind's schema: normally [`schema_of::<T>`](schema_of), a `$ref` whose name is the
    /// Kubernetes definition name (`io.k8s.api.core.v1.Pod`), which kubectl looks the kind up by.
    pub schema: SchemaFn,
}

/// The `schema` of an [`OpenApiResource`] for a `k8s-openapi` type: `schema: schema_of::<Pod>`.
pub fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// The index: `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=…"}}}`.
/// The hash is of the document's JSON (`serde_json::to_vec`), so a client's cache key changes
/// exactly when the document does. Builds every document; a server keeps an [`OpenApiV3`].
pub fn v3_index(resources: &[OpenApiResource]) -> Value {
    serde_json::from_slice(OpenApiV3::new(resources).index()).unwrap_or_default()
}

/// The document of one group-version; `gv_path` is `api/v1`, `apis/apps/v1` or the request path
/// `/openapi/v3/apis/apps/v1` (a `?hash=` query is ignored). `None` if nothing of it is served.
pub fn v3_group_version(resources: &[OpenApiResource], gv_path: &str) -> Option<Value> {
    let wanted = normalize(gv_path);
    let members: Vec<&OpenApiResource> = resources
        .iter()
        .filter(|r| group_version_path(r.group, r.version) == wanted)
        .collect();
    (!members.is_empty()).then(|| group_version_document(&members))
}

/// Every document built once and kept as bytes: the documents are hundreds of kilobytes and the
/// resource table is static, so the server builds this at start and serves slices of it.
pub struct OpenApiV3 {
    index: Vec<u8>,
    documents: BTreeMap<String, (Vec<u8>, String)>,
}

impl OpenApiV3 {
    pub fn new(resources: &[OpenApiResource]) -> Self {
        let mut groups: BTreeMap<String, Vec<&OpenApiResource>> = BTreeMap::new();
        for r in resources {
            let path = group_version_path(r.group, r.version);
            groups.entry(path).or_default().push(r);
        }
        let mut documents = BTreeMap::new();
        let mut paths = Map::new();
        for (path, members) in groups {
            // A `Value` has only string keys, so serializing it cannot fail.
            let bytes = serde_json::to_vec(&group_version_document(&members)).unwrap_or_default();
            let hash = fnv1a_hex(&bytes);
            let url = format!("/openapi/v3/{path}?hash={hash}");
            paths.insert(path.clone(), json!({ "serverRelativeURL": url }));
            documents.insert(path, (bytes, hash));
        }
        let index = serde_json::to_vec(&json!({ "paths": paths })).unwrap_or_default();
        OpenApiV3 { index, documents }
    }

    /// The `/openapi/v3` body (`application/json`).
    pub fn index(&self) -> &[u8] {
        &self.index
    }

    /// A group-version's JSON and its hash. kube-apiserver answers a request whose `hash` query
    /// matches with `Cache-Control: public, immutable` and a year's `Expires` (kubectl's HTTP
    /// cache then keeps it), and a stale `hash` with a 301 to the current `serverRelativeURL`.
    pub fn group_version(&self, gv_path: &str) -> Option<(&[u8], &str)> {
        let (bytes, hash) = self.documents.get(normalize(gv_path))?;
        Some((bytes.as_slice(), hash.as_str()))
    }
}

/// FNV-1a, 64 bits: the hash only has to change with the bytes (kube-apiserver's is SHA-512;
/// clients treat it as opaque).
fn fnv1a_hex(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016X}")
}

fn normalize(gv_path: &str) -> &str {
    let path = gv_path.split('?').next().unwrap_or_default();
    let path = path.trim_matches('/');
    path.strip_prefix("openapi/v3/")
        .unwrap_or(path)
        .trim_end_matches('/')
}

/// kubectl's key for a group-version in the index (`openapi3/root.go` `gvToAPIPath`).
fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Names kube-apiserver derives from a group-version for paths, operation ids and tags.
struct GroupVersion<'a> {
    group: &'a str,
    version: &'a str,
    /// `/api/v1`, `/apis/apps/v1`.
    prefix: String,
    /// `CoreV1`, `AppsV1`, `RbacAuthorizationV1`: follows the verb in an operation id.
    id: String,
    /// `core_v1`, `apps_v1`.
    tag: String,
}

impl<'a> GroupVersion<'a> {
    /// As `apiserver/pkg/endpoints/openapi` `GetOperationIDAndTags` does: the core group is
    /// `core`, `.k8s.io` is dropped, and the rest is camel-cased at every non-letter.
    fn new(group: &'a str, version: &'a str) -> Self {
        let short = match group {
            "" => "core",
            _ => group.trim_end_matches(".k8s.io"),
        };
        let (id, tag) = (
            operation_id_part(short, true),
            operation_id_part(short, false),
        );
        GroupVersion {
            group,
            version,
            prefix: format!("/{}", group_version_path(group, version)),
            id: id + &operation_id_part(version, true),
            tag: tag + "_" + &operation_id_part(version, false),
        }
    }
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    // Exactly these three keys: explain compares an operation's GVK with a schema's entries by
    // deep equality.
    json!({ "group": group, "kind": kind, "version": version })
}

/// Port of `ToValidOperationID`: letters, `_` and (not first) digits are kept, anything else
/// capitalizes the next kept character.
fn operation_id_part(s: &str, capitalize_first: bool) -> String {
    let mut out = String::new();
    let mut capitalize = capitalize_first;
    for (i, c) in s.chars().enumerate() {
        if c.is_alphabetic() || c == '_' || (i != 0 && c.is_numeric()) {
            if capitalize {
                out.extend(c.to_uppercase());
            } else {
                out.push(c);
            }
            capitalize = false;
        } else {
            capitalize = true;
        }
    }
    out
}

/// Subresources that read and write another kind: (subresource, group, kind, schema), all `v1`.
const SUBRESOURCE_KINDS: &[(&str, &str, &str, SchemaFn)] = &[
    ("scale", "autoscaling", "Scale", schema_of::<Scale>),
    ("binding", "", "Binding", schema_of::<Binding>),
    ("eviction", "policy", "Eviction", schema_of::<Eviction>),
];

/// The definition name of a [`SUBRESOURCE_KINDS`] kind: `io.k8s.api.autoscaling.v1.Scale`.
fn subresource_definition(group: &str, kind: &str) -> String {
    let package = if group.is_empty() { "core" } else { group };
    format!("io.k8s.api.{package}.v1.{kind}")
}

fn group_version_document(members: &[&OpenApiResource]) -> Value {
    let Some(first) = members.first() else {
        return Value::Null;
    };
    let gv = GroupVersion::new(first.group, first.version);
    // The OpenAPI 3.0 settings put definitions under `#/components/schemas/` and rewrite a `$ref`
    // with siblings (a field's description) to `allOf: [{$ref}]`, as kube-apiserver serves them
    // (kube-openapi `builder3/util.WrapRefs`); explain then prints the field's own description.
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut names = Vec::new();
    for r in members {
        names.push(register(&mut generator, r));
    }
    generator.subschema_for::<meta::DeleteOptions>();
    generator.subschema_for::<meta::Status>();
    generator.subschema_for::<meta::Patch>();
    generator.subschema_for::<meta::ListMeta>();
    generator.subschema_for::<meta::APIResourceList>();
    // kube-apiserver tags these meta kinds with their GVKs too (DeleteOptions with every group's).
    let meta_kinds = ["Status", "APIResourceList", "DeleteOptions"]
        .map(|kind| (format!("{META}{kind}"), gvk("", "v1", kind)));
    let mut gvks = Vec::from(meta_kinds);
    let delete_options = gvk(gv.group, gv.version, "DeleteOptions");
    gvks.push((format!("{META}DeleteOptions"), delete_options));
    for (sub, group, kind, schema) in SUBRESOURCE_KINDS {
        if members.iter().any(|r| r.subresources.contains(sub)) {
            schema(&mut generator);
            gvks.push((subresource_definition(group, kind), gvk(group, "v1", kind)));
        }
    }
    let mut schemas = generator.take_definitions(true);
    for (r, name) in members.iter().zip(&names) {
        let list = list_schema(&schemas, name, r.kind);
        schemas.insert(format!("{name}List"), list);
        gvks.push((name.clone(), gvk(gv.group, gv.version, r.kind)));
        let list_kind = format!("{}List", r.kind);
        gvks.push((format!("{name}List"), gvk(gv.group, gv.version, &list_kind)));
    }
    for (name, entry) in gvks {
        add_gvk(&mut schemas, &name, entry);
    }
    apply_patch_meta(&mut schemas);

    let mut paths = Map::new();
    let api_resources = json!({
        "description": "get available resources",
        "operationId": format!("get{}APIResources", gv.id),
        "tags": [gv.tag],
        "responses": responses(&format!("{META}APIResourceList"), "200", false),
    });
    paths.insert(format!("{}/", gv.prefix), json!({ "get": api_resources }));
    for (r, name) in members.iter().zip(&names) {
        resource_paths(&gv, r, name, &mut paths);
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "unversioned" },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": { "BearerToken": {
                "type": "apiKey", "in": "header", "name": "authorization",
                "description": "Bearer Token authentication",
            } },
        },
        "security": [{ "BearerToken": [] }],
    })
}

/// Registers a kind's schema and returns its definition name.
fn register(generator: &mut SchemaGenerator, r: &OpenApiResource) -> String {
    let schema = (r.schema)(generator);
    let named = schema.get("$ref").and_then(Value::as_str);
    if let Some(name) = named.and_then(|s| s.strip_prefix(REF)).map(str::to_owned) {
        return name;
    }
    // An inline schema: file it under a Kubernetes-like name so that it can be referenced.
    let name = ["io.k8s.keel", r.group, r.version, r.kind].join(".");
    generator
        .definitions_mut()
        .insert(name.clone(), schema.to_value());
    name
}

/// Appends a GVK to a definition's `x-kubernetes-group-version-kind` array (kube-apiserver
/// annotates component schemas with an array, operations with a single object).
fn add_gvk(schemas: &mut Map<String, Value>, name: &str, entry: Value) {
    let Some(schema) = schemas.get_mut(name).and_then(Value::as_object_mut) else {
        return;
    };
    let key = "x-kubernetes-group-version-kind";
    if let Value::Array(list) = schema.entry(key).or_insert_with(|| json!([])) {
        if !list.contains(&entry) {
            list.push(entry);
        }
    }
}

/// `<Kind>List`: k8s-openapi's generic `List<T>` has no schema, so it is written here as
/// kube-apiserver publishes it.
fn list_schema(schemas: &Map<String, Value>, name: &str, kind: &str) -> Value {
    // apiVersion and kind are described alike in every kind; borrow the kind's words.
    let field = |key: &str| {
        let pointer = format!("/properties/{key}");
        let found = schemas.get(name).and_then(|s| s.pointer(&pointer));
        found
            .cloned()
            .unwrap_or_else(|| json!({ "type": "string" }))
    };
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": field("apiVersion"),
            "kind": field("kind"),
            "items": {
                "description": format!("List of {kind} objects."),
                "type": "array",
                "items": { "$ref": format!("{REF}{name}") },
            },
            "metadata": {
                "allOf": [{ "$ref": format!("{REF}{META}ListMeta") }],
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
            },
        },
    })
}
