//! The paths and operations of a group-version document: one per verb kube-apiserver
//! installs, with its query parameters, request bodies and responses.

use super::*;

#[derive(Clone, Copy)]
pub(super) enum Verb {
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
pub(super) const LIST_PARAMS: &str =
    "allowWatchBookmarks continue fieldSelector labelSelector limit \
    resourceVersion resourceVersionMatch sendInitialEvents timeoutSeconds watch";
pub(super) const WRITE_PARAMS: &str = "dryRun fieldManager fieldValidation";
pub(super) const PATCH_PARAMS: &str = "dryRun fieldManager fieldValidation force";
pub(super) const DELETE_PARAMS: &str = "dryRun gracePeriodSeconds \
    ignoreStoreReadErrorWithClusterBreakingPotential orphanDependents propagationPolicy";
pub(super) const DELETE_ALL_PARAMS: &str = "continue dryRun fieldSelector gracePeriodSeconds \
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
pub(super) const QUERY_PARAMS: &[(&str, &str, &str)] = &[
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

pub(super) fn query_param(name: &str) -> Value {
    let found = QUERY_PARAMS.iter().find(|(n, _, _)| *n == name);
    let (kind, description) = found.map_or(("string", ""), |(_, kind, text)| (*kind, *text));
    json!({
        "name": name, "in": "query", "description": description,
        "schema": { "type": kind, "uniqueItems": true },
    })
}

pub(super) fn path_param(name: &str, description: &str) -> Value {
    json!({
        "name": name, "in": "path", "required": true, "description": description,
        "schema": { "type": "string", "uniqueItems": true },
    })
}

/// Responses in JSON, the only encoding keel speaks (kube-apiserver also lists YAML, protobuf
/// and CBOR); a list also streams watch events.
pub(super) fn responses(schema: &str, codes: &str, watchable: bool) -> Value {
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
pub(super) const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

pub(super) fn request_body(types: &[&str], schema: &str, required: bool) -> Value {
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
pub(super) struct Target<'a> {
    kind: &'a str,
    sub: &'a str,
    scope: &'a str,
    suffix: &'a str,
    schema: &'a str,
    gvk: &'a Value,
}

pub(super) fn operation(gv: &GroupVersion, verb: Verb, t: &Target) -> (&'static str, Value) {
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
pub(super) fn title(s: &str) -> String {
    let mut chars = s.chars();
    let first = chars.next().map(|c| c.to_uppercase().collect::<String>());
    first.unwrap_or_default() + chars.as_str()
}

/// A path item: its operations and the path-level parameters (`name`, `namespace`, `pretty`).
pub(super) fn path_item(
    gv: &GroupVersion,
    ops: &[(Verb, &Target)],
    name_of: Option<&str>,
) -> Value {
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
pub(super) fn resource_paths(
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
            "status" | "approval" | "scale" | "ephemeralcontainers" | "resize" => {
                &[Read, Replace, Patch]
            }
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
