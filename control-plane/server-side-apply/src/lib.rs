//! Kubernetes server-side apply, the server side: what `kubectl apply --server-side`, kube-rs'
//! `Patch::Apply` and client-go's apply configurations ask of an API server
//! (`application/apply-patch+yaml`), as `sigs.k8s.io/structured-merge-diff` does it in
//! kube-apiserver.
//!
//! An object remembers in `metadata.managedFields` which manager set which fields. Applying a
//! configuration as a manager:
//! - merges it over the live object (maps key by key, associative lists on their keys, sets by
//!   value, atomic values whole);
//! - refuses to change a field another manager owns ([`Error::Conflicts`], kube's 409), unless
//!   forced, which moves the field to the applier; the same value is shared, not a conflict;
//! - takes out the fields this manager applied last time and no longer does, when nobody else
//!   owns them (an env var removed from the file goes away);
//! - records the configuration's fields as the manager's.
//!
//! Every other write ([`track_update`]) gives the fields it changed to its manager (operation
//! `Update`) and takes them from everybody else, so that a later apply conflicts with it.
//! Objects never applied to carry no `managedFields` (keel's choice, not kube's); the first
//! apply gives their existing fields to `before-first-apply`, as kube does for objects whose
//! managedFields were stripped.
//!
//! ```
//! use serde_json::json;
//! use server_side_apply::{apply, Manager, Scope};
//!
//! let schema = strategic_merge_patch::kubernetes::schema_for("", "ConfigMap").unwrap();
//! let manager = Manager { name: "ci", api_version: "v1", subresource: None, time: "2026-12-03T22:00:00Z" };
//! let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
//! let created = apply(None, &config, schema, &manager, Scope::Object { status_apart: false }, false).unwrap();
//! assert_eq!(created["metadata"]["managedFields"][0]["fieldsV1"], json!({"f:data": {"f:a": {}}}));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod fields;
mod managed;
mod merge;
mod path;
mod schema;
mod set;
#[cfg(test)]
mod tests;

use serde_json::Value;
use strategic_merge_patch::Schema;

pub use path::display as display_path;
pub use set::FieldSet;

use managed::{Entry, APPLY, UPDATE};

/// Who writes: the `fieldManager`, the version it speaks, the subresource it writes through
/// and when (RFC 3339, seconds).
#[derive(Clone, Copy, Debug)]
pub struct Manager<'a> {
    /// The field manager's name.
    pub name: &'a str,
    /// `group/version` (or `v1`) of the request.
    pub api_version: &'a str,
    /// `status` for the status subresource.
    pub subresource: Option<&'a str>,
    /// The time recorded on the entry.
    pub time: &'a str,
}

/// Which part of an object a write may set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The object; with `status_apart` (a kind with a status subresource) its status is not.
    Object {
        /// Status is written through its own subresource.
        status_apart: bool,
    },
    /// The status subresource: status alone.
    Status,
}

/// A field another manager owns and the configuration would change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The owner as kube names it: `"kubectl-edit" using apps/v1 at <time>`, or `"ci"`.
    pub manager: String,
    /// The field, as kube prints it: `.spec.replicas`.
    pub field: String,
}

/// Why an apply or an update could not be done.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Something in the configuration or the stored object is malformed.
    #[error("{field}: {message}")]
    Invalid {
        /// Where (`.spec.containers[0]`, `metadata.managedFields[1].fieldsV1`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Fields owned by other managers would change (kube's message in `Display`).
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// kube-apiserver's wording: `Apply failed with 1 conflict: conflict with "m": .spec.x`, or one
/// block per manager (in name order) listing its fields.
fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [one] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            one.manager, one.field
        );
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort_unstable();
    managers.dedup();
    let mut lines = Vec::new();
    for manager in managers {
        lines.push(format!("conflicts with {manager}:"));
        for conflict in conflicts.iter().filter(|c| c.manager == manager) {
            lines.push(format!("- {}", conflict.field));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// The manager kube gives the fields of an object first applied to without managedFields.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Applies `config` as `manager` to `live` (None: the object does not exist yet) and returns the
/// object to store, with its `managedFields`. The caller checks `apiVersion`, `kind`, the name,
/// and that the configuration carries no `managedFields`; the result still goes through
/// defaulting, validation and admission like any write.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    schema: &'static Schema,
    manager: &Manager<'_>,
    scope: Scope,
    force: bool,
) -> Result<Value, Error> {
    if !config.is_object() {
        return Err(Error::invalid(
            ".",
            "an apply configuration must be an object",
        ));
    }
    let applied = fields::fields_of(config, schema, scope, true)?;
    let Some(live) = live else {
        let mut object = merge::without_nulls(config);
        managed::write(&mut object, &[Entry::new(manager, APPLY, applied)]);
        return Ok(object);
    };
    let mut entries = match managed::read(live)? {
        Some(entries) => entries,
        None => {
            let existing = fields::fields_of(live, schema, scope, false)?;
            vec![Entry {
                manager: BEFORE_FIRST_APPLY.to_owned(),
                operation: UPDATE.to_owned(),
                api_version: manager.api_version.to_owned(),
                time: None,
                subresource: manager.subresource.map(str::to_owned),
                fields: existing,
            }]
        }
    };
    let mut object = merge::merge_object(live, config, schema, scope);

    let (conflicts, taken) = {
        let (_, before) = fields::indexed(live, schema, scope)?;
        let (_, after) = fields::indexed(&object, schema, scope)?;
        let mut conflicts = Vec::new();
        let mut taken: Vec<(usize, Vec<String>)> = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            if entry.is(manager, APPLY) {
                continue;
            }
            for field in entry.fields.intersection(&applied).members() {
                if changes(&before, &after, &field) {
                    conflicts.push(Conflict {
                        manager: entry.describe(),
                        field: path::display(&field),
                    });
                    taken.push((index, field));
                }
            }
        }
        (conflicts, taken)
    };
    if !conflicts.is_empty() && !force {
        return Err(Error::Conflicts(conflicts));
    }
    for (index, field) in taken {
        entries[index].fields.subtract(&FieldSet::of_path(&field));
    }

    // What this manager applied last time and no longer does goes, unless somebody else also
    // owns it (or something inside it).
    let mine = entries.iter().position(|entry| entry.is(manager, APPLY));
    if let Some(mine) = mine {
        let mut stopped = entries[mine].fields.clone();
        stopped.subtract(&applied);
        let mut others = FieldSet::default();
        for (index, entry) in entries.iter().enumerate() {
            if index != mine {
                others.union(&entry.fields);
            }
        }
        let mut gone = FieldSet::default();
        for field in stopped.members() {
            // An element somebody else still sets stays, and keeps the fields that name it.
            if !others.touches(&field) && !path::is_key_field(&field) {
                gone.union(&FieldSet::of_path(&field));
            }
        }
        merge::remove(&mut object, &gone);
        entries[mine] = Entry::new(manager, APPLY, applied);
    } else {
        entries.push(Entry::new(manager, APPLY, applied));
    }
    managed::write(&mut object, &entries);
    Ok(object)
}

/// Records an update (`PUT`, or a patch that is not an apply) by `manager`: the fields that
/// `new` adds or changes against `old` become the manager's and nobody else's, and removed
/// fields are nobody's. An object without managedFields stays without; a write that sets
/// `managedFields: [{}]` strips them, as in kube.
pub fn track_update(
    old: &Value,
    new: &mut Value,
    schema: &'static Schema,
    manager: &Manager<'_>,
    scope: Scope,
) -> Result<(), Error> {
    let reset = new
        .pointer("/metadata/managedFields")
        .is_some_and(|fields| *fields == serde_json::json!([{}]));
    let entries = if reset { None } else { managed::read(old)? };
    let Some(mut entries) = entries else {
        managed::write(new, &[]);
        return Ok(());
    };
    let (before, old_index) = fields::indexed(old, schema, scope)?;
    let (after, new_index) = fields::indexed(new, schema, scope)?;
    let mut modified = FieldSet::default();
    for field in after.members() {
        if changes(&old_index, &new_index, &field) {
            modified.union(&FieldSet::of_path(&field));
        }
    }
    drop(new_index);
    let mut removed = before;
    removed.subtract(&after);
    for entry in &mut entries {
        entry.fields.subtract(&modified);
        entry.fields.subtract(&removed);
    }
    if !modified.is_empty() {
        match entries.iter_mut().find(|entry| entry.is(manager, UPDATE)) {
            Some(entry) => {
                entry.fields.union(&modified);
                entry.time = Some(manager.time.to_owned());
                entry.api_version = manager.api_version.to_owned();
            }
            None => entries.push(Entry::new(manager, UPDATE, modified)),
        }
    }
    managed::write(new, &entries);
    Ok(())
}

/// Whether going from `before` to `after` (their indexes) changes the field: an element of an
/// associative list by being added or removed, anything else by its value.
fn changes(before: &fields::Index<'_>, after: &fields::Index<'_>, field: &[String]) -> bool {
    if path::is_element(field) {
        before.contains_key(field) != after.contains_key(field)
    } else {
        before.get(field) != after.get(field)
    }
}
