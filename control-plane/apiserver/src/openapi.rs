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
//! [`PATCH_META`], taken from the struct tags of `k8s.io/api` and `k8s.io/apimachinery`.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::Binding;
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

#[cfg(test)]
mod tests;

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

#[derive(Clone, Copy)]
enum Verb {
    Read,
    List,
    Create,
    Replace,
    Patch,
    Delete,
    DeleteCollection,
}

/// Query parameters of each verb, as kube-apiserver derives them from `ListOptions`,
/// `CreateOptions`, `UpdateOptions`, `PatchOptions` and `DeleteOptions`.
const LIST_PARAMS: &str = "allowWatchBookmarks continue fieldSelector labelSelector limit \
    resourceVersion resourceVersionMatch sendInitialEvents timeoutSeconds watch";
const WRITE_PARAMS: &str = "dryRun fieldManager fieldValidation";
const PATCH_PARAMS: &str = "dryRun fieldManager fieldValidation force";
const DELETE_PARAMS: &str = "dryRun gracePeriodSeconds \
    ignoreStoreReadErrorWithClusterBreakingPotential orphanDependents propagationPolicy";
const DELETE_ALL_PARAMS: &str = "continue dryRun fieldSelector gracePeriodSeconds \
    ignoreStoreReadErrorWithClusterBreakingPotential labelSelector limit orphanDependents \
    propagationPolicy resourceVersion resourceVersionMatch sendInitialEvents timeoutSeconds";

impl Verb {
    /// (verb of the operation id, `x-kubernetes-action`, query parameters, success codes)
    fn spec(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Verb::Read => ("read", "get", "", "200"),
            Verb::List => ("list", "list", LIST_PARAMS, "200"),
            Verb::Create => ("create", "post", WRITE_PARAMS, "200 201 202"),
            Verb::Replace => ("replace", "put", WRITE_PARAMS, "200 201"),
            Verb::Patch => ("patch", "patch", PATCH_PARAMS, "200 201"),
            Verb::Delete => ("delete", "delete", DELETE_PARAMS, "200 202"),
            Verb::DeleteCollection => ("delete", "deletecollection", DELETE_ALL_PARAMS, "200"),
        }
    }
}

/// Query parameters: (name, type, description), descriptions shortened from kube-apiserver's.
const QUERY_PARAMS: &[(&str, &str, &str)] = &[
    ("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\". If this is not a watch, this field is ignored."),
    ("continue", "string", "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue)."),
    ("dryRun", "string", "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed"),
    ("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint."),
    ("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
    ("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict."),
    ("force", "boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests."),
    ("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately."),
    ("ignoreStoreReadErrorWithClusterBreakingPotential", "boolean", "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error."),
    ("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
    ("limit", "integer", "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata."),
    ("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned."),
    ("pretty", "string", "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget)."),
    ("propagationPolicy", "string", "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan', 'Background', 'Foreground'."),
    ("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset"),
    ("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset"),
    ("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection."),
    ("timeoutSeconds", "integer", "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity."),
    ("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion."),
];

fn query_param(name: &str) -> Value {
    let found = QUERY_PARAMS.iter().find(|(n, _, _)| *n == name);
    let (kind, description) = found.map_or(("string", ""), |(_, kind, text)| (*kind, *text));
    json!({
        "name": name, "in": "query", "description": description,
        "schema": { "type": kind, "uniqueItems": true },
    })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "name": name, "in": "path", "required": true, "description": description,
        "schema": { "type": "string", "uniqueItems": true },
    })
}

/// Responses in JSON, the only encoding keel speaks (kube-apiserver also lists YAML, protobuf
/// and CBOR); a list also streams watch events.
fn responses(schema: &str, codes: &str, watchable: bool) -> Value {
    let body = json!({ "schema": { "$ref": format!("{REF}{schema}") } });
    let mut content = json!({ "application/json": body });
    if watchable {
        content["application/json;stream=watch"] = body;
    }
    let mut out = json!({ "401": { "description": "Unauthorized" } });
    for code in codes.split_whitespace() {
        let description = match code {
            "201" => "Created",
            "202" => "Accepted",
            _ => "OK",
        };
        out[code] = json!({ "description": description, "content": content });
    }
    out
}

/// The four patch types; kubectl apply needs the strategic one listed to compute its patch from
/// these schemas.
const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

fn request_body(types: &[&str], schema: &str, required: bool) -> Value {
    let mut content = Map::new();
    for media_type in types {
        let body = json!({ "schema": { "$ref": format!("{REF}{schema}") } });
        content.insert((*media_type).to_owned(), body);
    }
    let mut body = json!({ "content": content });
    if required {
        body["required"] = Value::Bool(true);
    }
    body
}

/// What an operation acts on. Operation ids follow the installer (`apiserver/pkg/endpoints/
/// installer.go`): `<verb><GroupVersion>[Collection]<scope><kind><Sub><suffix>`, with `scope`
/// `Namespaced` or empty and `suffix` `ForAllNamespaces` on the every-namespace list; `kind` is
/// the resource's even on a subresource of another kind, whose definition (`schema`, the list's
/// for a list) and `gvk` (`Scale`, `Binding`, `Eviction`) the operation reads and writes.
#[derive(Clone, Copy)]
struct Target<'a> {
    kind: &'a str,
    sub: &'a str,
    scope: &'a str,
    suffix: &'a str,
    schema: &'a str,
    gvk: &'a Value,
}

fn operation(gv: &GroupVersion, verb: Verb, t: &Target) -> (&'static str, Value) {
    let (id_verb, action, params, codes) = verb.spec();
    let method = match action {
        "list" => "get",
        "deletecollection" => "delete",
        other => other,
    };
    // `deletecollection` names its operation `delete<GroupVersion>Collection…`.
    let collection = title(action.strip_prefix("delete").unwrap_or_default());
    let (scope, kind, sub, suffix) = (t.scope, t.kind, title(t.sub), t.suffix);
    let id = format!("{id_verb}{}{collection}{scope}{kind}{sub}{suffix}", gv.id);
    let of = if t.sub.is_empty() {
        String::new()
    } else {
        format!("{} of ", t.sub)
    };
    let description = match verb {
        Verb::Read => format!("read {of}the specified {kind}"),
        Verb::List => format!("list or watch objects of kind {kind}"),
        Verb::Create if t.sub.is_empty() => format!("create a {kind}"),
        Verb::Create => format!("create {} of a {kind}", t.sub),
        Verb::Replace => format!("replace {of}the specified {kind}"),
        Verb::Patch => format!("partially update {of}the specified {kind}"),
        Verb::Delete => format!("delete a {kind}"),
        Verb::DeleteCollection => format!("delete collection of {kind}"),
    };
    let delete_options = format!("{META}DeleteOptions");
    let (body, returns) = match verb {
        Verb::Read | Verb::List => (None, t.schema.to_owned()),
        Verb::Create | Verb::Replace => (
            Some(request_body(&["*/*"], t.schema, true)),
            t.schema.to_owned(),
        ),
        Verb::Patch => {
            let patch = request_body(PATCH_TYPES, &format!("{META}Patch"), true);
            (Some(patch), t.schema.to_owned())
        }
        Verb::Delete | Verb::DeleteCollection => {
            let options = request_body(&["*/*"], &delete_options, false);
            (Some(options), format!("{META}Status"))
        }
    };
    let mut op = json!({
        "description": description,
        "operationId": id,
        "tags": [gv.tag],
        "responses": responses(&returns, codes, action == "list"),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": t.gvk,
    });
    if !params.is_empty() {
        op["parameters"] = params.split_whitespace().map(query_param).collect();
    }
    if let Some(body) = body {
        op["requestBody"] = body;
    }
    (method, op)
}

/// `cases.Title` of a subresource name, as the installer names operations: `status` → `Status`.
fn title(s: &str) -> String {
    let mut chars = s.chars();
    let first = chars.next().map(|c| c.to_uppercase().collect::<String>());
    first.unwrap_or_default() + chars.as_str()
}

/// A path item: its operations and the path-level parameters (`name`, `namespace`, `pretty`).
fn path_item(gv: &GroupVersion, ops: &[(Verb, &Target)], name_of: Option<&str>) -> Value {
    let mut item = Map::new();
    let mut namespaced = false;
    for (verb, target) in ops {
        let (method, op) = operation(gv, *verb, target);
        item.insert(method.to_owned(), op);
        namespaced |= !target.scope.is_empty();
    }
    let mut params = Vec::new();
    if let Some(kind) = name_of {
        params.push(path_param("name", &format!("name of the {kind}")));
    }
    if namespaced {
        let description = "object name and auth scope, such as for teams and projects";
        params.push(path_param("namespace", description));
    }
    params.push(query_param("pretty"));
    item.insert("parameters".into(), Value::Array(params));
    Value::Object(item)
}

/// The collection, item, every-namespace and subresource paths of one resource.
fn resource_paths(
    gv: &GroupVersion,
    r: &OpenApiResource,
    schema: &str,
    paths: &mut Map<String, Value>,
) {
    use Verb::{Create, Delete, DeleteCollection, List, Patch, Read, Replace};
    let own_gvk = gvk(gv.group, gv.version, r.kind);
    let list_schema = format!("{schema}List");
    let scope = if r.namespaced { "Namespaced" } else { "" };
    let this = Target {
        kind: r.kind,
        sub: "",
        scope,
        suffix: "",
        schema,
        gvk: &own_gvk,
    };
    let mut listing = this;
    listing.schema = &list_schema;
    let base = if r.namespaced {
        format!("{}/namespaces/{{namespace}}/{}", gv.prefix, r.resource)
    } else {
        format!("{}/{}", gv.prefix, r.resource)
    };
    let ops = [(List, &listing), (Create, &this), (DeleteCollection, &this)];
    paths.insert(base.clone(), path_item(gv, &ops, None));
    let item = format!("{base}/{{name}}");
    let ops = [Read, Replace, Patch, Delete].map(|verb| (verb, &this));
    paths.insert(item.clone(), path_item(gv, &ops, Some(r.kind)));
    if r.namespaced {
        // kube-apiserver lists a namespaced kind across namespaces at `<prefix>/<resource>`;
        // explain looks there first for the kind's GVK.
        let mut every = listing;
        (every.scope, every.suffix) = ("", "ForAllNamespaces");
        let every_path = format!("{}/{}", gv.prefix, r.resource);
        paths.insert(every_path, path_item(gv, &[(List, &every)], None));
    }
    for &sub in r.subresources {
        let verbs: &[Verb] = match sub {
            "status" | "scale" | "ephemeralcontainers" | "resize" => &[Read, Replace, Patch],
            "finalize" => &[Replace],
            "binding" | "eviction" => &[Create],
            _ => continue,
        };
        let other = SUBRESOURCE_KINDS.iter().find(|(name, ..)| *name == sub);
        let (definition, sub_gvk) = match other {
            Some((_, group, kind, _)) => {
                (subresource_definition(group, kind), gvk(group, "v1", kind))
            }
            None => (schema.to_owned(), own_gvk.clone()),
        };
        let mut target = this;
        (target.sub, target.schema, target.gvk) = (sub, &definition, &sub_gvk);
        let ops: Vec<(Verb, &Target)> = verbs.iter().map(|verb| (*verb, &target)).collect();
        let named = sub_gvk["kind"].as_str().unwrap_or(r.kind);
        paths.insert(format!("{item}/{sub}"), path_item(gv, &ops, Some(named)));
    }
}

/// Patch strategies and merge keys of `k8s.io/api` (GA versions) and `meta/v1`, from the
/// `patchStrategy`/`patchMergeKey` struct tags that kube-openapi turns into
/// `x-kubernetes-patch-strategy`/`x-kubernetes-patch-merge-key`; k8s-openapi drops them.
/// One definition a line (`io.k8s.api.` is implied unless the name starts with `io.`), then
/// `property:strategy:mergeKey` entries. Properties a definition lacks are skipped, so the table
/// can run ahead of the k8s-openapi version. `EphemeralContainer` inlines
/// `EphemeralContainerCommon` in Go and carries its tags.
const PATCH_META: &str = "\
admissionregistration.v1.ValidatingAdmissionPolicySpec matchConditions:merge:name variables:merge:name
admissionregistration.v1.ValidatingWebhookConfiguration webhooks:merge:name
admissionregistration.v1.MutatingWebhookConfiguration webhooks:merge:name
admissionregistration.v1.ValidatingWebhook matchConditions:merge:name
admissionregistration.v1.MutatingWebhook matchConditions:merge:name
admissionregistration.v1.MutatingAdmissionPolicySpec matchConditions:merge:name
apps.v1.StatefulSetStatus conditions:merge:type
apps.v1.DeploymentSpec strategy:retainKeys:
apps.v1.DeploymentStatus conditions:merge:type
apps.v1.DaemonSetStatus conditions:merge:type
apps.v1.ReplicaSetStatus conditions:merge:type
autoscaling.v2.HorizontalPodAutoscalerStatus conditions:merge:type
batch.v1.JobSchedulingConfiguration resourceClaims:merge:name
batch.v1.JobStatus conditions:merge:type
certificates.v1.PodCertificateRequestStatus conditions:merge:type
core.v1.VolumeHealthStatus healthConditions:merge:status
core.v1.PodVolumeHealth healthConditions:merge:status
core.v1.PersistentVolumeClaimStatus conditions:merge:type
core.v1.Container ports:merge:containerPort env:merge:name volumeMounts:merge:mountPath volumeDevices:merge:devicePath
core.v1.ContainerStatus volumeMounts:merge:mountPath allocatedResourcesStatus:merge:name
core.v1.PodSpec volumes:merge,retainKeys:name initContainers:merge:name containers:merge:name ephemeralContainers:merge:name imagePullSecrets:merge:name hostAliases:merge:ip topologySpreadConstraints:merge:topologyKey schedulingGates:merge:name resourceClaims:merge,retainKeys:name evictionResponders:merge:name
core.v1.EphemeralContainer ports:merge:containerPort env:merge:name volumeMounts:merge:mountPath volumeDevices:merge:devicePath
core.v1.PodStatus conditions:merge:type hostIPs:merge:ip podIPs:merge:ip resourceClaimStatuses:merge,retainKeys:name nodeAllocatableResourceClaimStatuses:merge:resourceClaimName
core.v1.ReplicationControllerStatus conditions:merge:type
core.v1.ServiceStatus conditions:merge:type
core.v1.ServiceSpec ports:merge:port
core.v1.ServiceAccount secrets:merge:name
core.v1.NodeSpec podCIDRs:merge:
core.v1.NodeStatus conditions:merge:type addresses:merge:type
core.v1.NamespaceStatus conditions:merge:type
core.v1.ComponentStatus conditions:merge:type
core.v1.NodeAllocatableResourceClaimStatus mapping:merge:name overhead:merge:name
flowcontrol.v1.FlowSchemaStatus conditions:merge:type
flowcontrol.v1.PriorityLevelConfigurationStatus conditions:merge:type
networking.v1.ServiceCIDRStatus conditions:merge:type
policy.v1.PodDisruptionBudgetSpec selector:replace:
policy.v1.PodDisruptionBudgetStatus conditions:merge:type
resource.v1.DeviceTaintRuleStatus conditions:merge:type
resource.v1.ResourceClaimStatus reservedFor:merge:uid
storage.v1.CSINodeSpec drivers:merge:name
storage.v1.CSINodeStatus storageHealth:merge:name
storagemigration.v1.StorageVersionMigrationStatus conditions:merge:type
io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta ownerReferences:merge:uid finalizers:merge:
";

fn apply_patch_meta(schemas: &mut Map<String, Value>) {
    for line in PATCH_META.lines() {
        let mut words = line.split_whitespace();
        let Some(short) = words.next() else { continue };
        let name = if short.starts_with("io.") {
            short.to_owned()
        } else {
            format!("io.k8s.api.{short}")
        };
        let properties = schemas.get_mut(&name).and_then(|s| s.get_mut("properties"));
        let Some(properties) = properties.and_then(Value::as_object_mut) else {
            continue;
        };
        for entry in words {
            let mut parts = entry.splitn(3, ':');
            let (Some(field), Some(strategy), Some(key)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Some(field) = properties.get_mut(field).and_then(Value::as_object_mut) else {
                continue;
            };
            field.insert("x-kubernetes-patch-strategy".into(), strategy.into());
            if !key.is_empty() {
                field.insert("x-kubernetes-patch-merge-key".into(), key.into());
            }
        }
    }
}
