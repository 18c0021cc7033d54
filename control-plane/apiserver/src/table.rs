//! Server-side printing: the `meta.k8s.io/v1` `Table` kube-apiserver answers
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` with, which is what `kubectl get`
//! renders. kubectl prints whatever columns the server sends, so the columns and cells here are
//! what users see.
//!
//! The printers port Kubernetes 1.37's `pkg/printers/internalversion/printers.go` for the
//! resources keel serves; any other resource gets the NAME/AGE table a custom resource without
//! printer columns gets. Like kube-apiserver (whose printer storage always generates with
//! `Wide: true`) every row carries the `-o wide` cells too: those columns have priority 1 and
//! kubectl hides them unless asked.
//!
//! Objects arrive as stored wire-form JSON and are not trusted: a missing or mistyped field
//! prints as the zero value Kubernetes would print for it, never a panic. Where kube-apiserver
//! would see a defaulted field (it decodes stored objects with defaulting), the printers apply
//! that default themselves, so an object stored without it prints the same.

mod apps;
mod columns;
// Public: `keelctl describe` prints its events' ages with the same functions.
pub mod duration;
mod events;
mod fields;
mod network;
mod nodes;
mod pods;
mod quotas;
mod rbac;
pub(crate) mod selector;
mod simple;

#[cfg(test)]
mod tests;

use jiff::Timestamp;
use serde_json::{json, Map, Value};

use columns::{Column, Printer, Row, CREATION_TIMESTAMP_DESCRIPTION, NAME};

/// What each row's `object` holds: Kubernetes' `includeObject` table option.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object: `"object": null`.
    None,
    /// The object's metadata as a `meta.k8s.io/v1` `PartialObjectMetadata`; Kubernetes' default.
    #[default]
    Metadata,
    /// The whole object as stored.
    Object,
}

impl IncludeObject {
    /// Reads the `includeObject` query parameter; empty (absent) means the default, `Metadata`.
    /// `None` for any other value, which kube-apiserver rejects with 400 Bad Request.
    pub fn from_param(value: &str) -> Option<IncludeObject> {
        match value {
            "None" => Some(IncludeObject::None),
            "" | "Metadata" => Some(IncludeObject::Metadata),
            "Object" => Some(IncludeObject::Object),
            _ => None,
        }
    }
}

/// The `Table` for `items` of `resource` (the plural resource name: "pods", "deployments", ...).
/// `list_meta` is the list's metadata, whose `resourceVersion`, `continue` and
/// `remainingItemCount` the table carries; `now` is the time AGE and the other "how long ago"
/// cells count from.
pub fn to_table(
    resource: &str,
    items: &[Value],
    list_meta: Value,
    include: IncludeObject,
    now: Timestamp,
) -> Value {
    let printer = printer_for(resource);
    let columns: Vec<Value> = printer.columns.iter().map(Column::definition).collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|item| row_json((printer.row)(item, now), embedded_object(item, include)))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": table_metadata(&list_meta),
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn printer_for(resource: &str) -> Printer {
    match resource {
        "pods" => pods::PRINTER,
        "deployments" => apps::DEPLOYMENTS,
        "replicasets" => apps::REPLICA_SETS,
        "services" => network::SERVICES,
        "endpointslices" => network::ENDPOINT_SLICES,
        "nodes" => nodes::PRINTER,
        // core/v1 and events.k8s.io/v1 share the plural; the printer tells them apart per item.
        "events" => events::PRINTER,
        "namespaces" => simple::NAMESPACES,
        "configmaps" => simple::CONFIG_MAPS,
        "secrets" => simple::SECRETS,
        "leases" => simple::LEASES,
        "certificatesigningrequests" => simple::CERTIFICATE_SIGNING_REQUESTS,
        "resourcequotas" => quotas::PRINTER,
        "limitranges" => quotas::LIMIT_RANGES,
        "roles" | "clusterroles" => rbac::ROLES,
        "rolebindings" | "clusterrolebindings" => rbac::BINDINGS,
        "serviceaccounts" => rbac::SERVICE_ACCOUNTS,
        _ => DEFAULT,
    }
}

/// The table of a resource without a printer: what apiextensions gives a custom resource that
/// declares no printer columns (NAME, then an AGE column of type `date` from
/// `.metadata.creationTimestamp`).
const DEFAULT: Printer = Printer {
    columns: &[
        NAME,
        Column::new("Age", "date", CREATION_TIMESTAMP_DESCRIPTION),
    ],
    row: default_row,
};

fn default_row(obj: &Value, now: Timestamp) -> Row {
    Row::new(vec![
        fields::name(obj).into(),
        duration::age(obj, now).into(),
    ])
}

/// A `TableRow`: `conditions` is omitted when empty, `object` is always present (Go's
/// `RawExtension` ignores `omitempty`, so "no object" encodes as null).
fn row_json(row: Row, object: Value) -> Value {
    let mut out = Map::new();
    out.insert("cells".into(), Value::Array(row.cells));
    if !row.conditions.is_empty() {
        out.insert("conditions".into(), Value::Array(row.conditions));
    }
    out.insert("object".into(), object);
    Value::Object(out)
}

/// The row's `object` as kube-apiserver's `asTable` fills it in for each `includeObject`.
fn embedded_object(item: &Value, include: IncludeObject) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => item.clone(),
        IncludeObject::Metadata => {
            let metadata = item
                .get("metadata")
                .filter(|metadata| metadata.is_object())
                .cloned()
                .unwrap_or_else(|| Value::Object(Map::new()));
            json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": metadata,
            })
        }
    }
}

/// The table's `ListMeta`: the list's resourceVersion, continue token and remaining item count,
/// each omitted when unset as Go's `omitempty` omits it.
fn table_metadata(list_meta: &Value) -> Value {
    let mut out = Map::new();
    for key in ["resourceVersion", "continue"] {
        let value = list_meta.get(key).and_then(Value::as_str);
        if let Some(value) = value.filter(|value| !value.is_empty()) {
            out.insert(key.into(), value.into());
        }
    }
    if let Some(count) = list_meta.get("remainingItemCount").and_then(Value::as_i64) {
        out.insert("remainingItemCount".into(), count.into());
    }
    Value::Object(out)
}
