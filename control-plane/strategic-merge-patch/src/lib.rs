//! Kubernetes strategic merge patch, the server side: applying a patch
//! (`application/strategic-merge-patch+json`, what `kubectl apply`, `kubectl edit` and
//! `kubectl patch` send) to an object, as `k8s.io/apimachinery/pkg/util/strategicpatch`'s
//! `StrategicMergeMapPatch` does in the API server.
//!
//! A strategic merge patch is a JSON merge patch (RFC 7386) whose lists can merge instead of
//! being replaced: how each field merges comes from the `patchStrategy` and `patchMergeKey`
//! tags of the Go types, which a [`Schema`] carries here. [`kubernetes::schema_for`] has the
//! schemas of the kinds keel serves.
//!
//! ```
//! use serde_json::json;
//! use strategic_merge_patch::{apply, kubernetes};
//!
//! let pod = json!({"spec": {"containers": [
//!     {"name": "web", "image": "nginx:1.26", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
//!     {"name": "log", "image": "busybox"},
//! ]}});
//! let patch = json!({"spec": {"containers": [
//!     {"name": "web", "image": "nginx:1.27", "env": [{"name": "A", "$patch": "delete"}]},
//! ]}});
//! let schema = kubernetes::schema_for("", "Pod").unwrap();
//! let patched = apply(&pod, &patch, schema).unwrap();
//! assert_eq!(patched, json!({"spec": {"containers": [
//!     {"name": "web", "image": "nginx:1.27", "env": [{"name": "B", "value": "2"}]},
//!     {"name": "log", "image": "busybox"},
//! ]}}));
//! ```
//!
//! The input is treated as hostile: every malformed directive is refused with an [`Error`]
//! naming the field path, nesting deeper than [`MAX_DEPTH`] is refused, the cost stays
//! O(n log n) in the size of the lists, and nothing panics.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod directives;
mod error;
pub mod kubernetes;
mod merge;
mod order;
mod path;
mod schema;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

pub use error::Error;
pub use schema::{Field, Schema, Strategy};

use path::{kind_name, Path};

/// The deepest nesting of maps and lists a merge descends into (Kubernetes objects stay far
/// below it; each level costs a few stack frames).
pub const MAX_DEPTH: usize = 100;

/// Applies `patch` to `original` and returns the patched object.
///
/// Both must be JSON objects; `null` counts as an empty object. `schema` describes the object's
/// type ([`Schema::empty`] when nothing is known: maps then merge and lists are replaced).
pub fn apply(original: &Value, patch: &Value, schema: &Schema) -> Result<Value, Error> {
    // Check the patch first so that a refused patch costs no copy of the object.
    document(patch, "patch")?;
    document(original, "original")?;
    apply_owned(original.clone(), patch, schema)
}

/// [`apply`], consuming the original instead of copying it.
pub fn apply_owned(original: Value, patch: &Value, schema: &Schema) -> Result<Value, Error> {
    let original = match original {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => return Err(Error::not_an_object("original", &other)),
    };
    let empty = Map::new();
    let patch = match patch {
        Value::Object(map) => map,
        Value::Null => &empty,
        other => return Err(Error::not_an_object("patch", other)),
    };
    merge::merge_map(original, patch, schema, &Path::root()).map(Value::Object)
}

fn document(value: &Value, name: &'static str) -> Result<(), Error> {
    match value {
        Value::Object(_) | Value::Null => Ok(()),
        other => Err(Error::NotAnObject {
            document: name,
            found: kind_name(other),
        }),
    }
}
