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

mod compare;
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

/// Conflicts a 409 lists one by one; past this it says how many more (each listed conflict
/// is a copy of its path, and a hostile configuration could make millions).
const LISTED_CONFLICTS: usize = 1_000;

/// The annotation client-side `kubectl apply` keeps its last configuration in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Applies `config` as `manager` to `live` (None: the object does not exist yet) and returns the
/// object to store, with its `managedFields`. The caller checks `apiVersion`, `kind`, the name,
/// and that the configuration carries no `managedFields`; the result still goes through
/// defaulting, validation and admission like any write. Applying what is already there
/// returns `live` unchanged, record and times included, so the caller writes nothing.
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
        None => vec![Entry {
            manager: BEFORE_FIRST_APPLY.to_owned(),
            ..Entry::new(
                manager,
                UPDATE,
                fields::fields_of(live, schema, scope, false)?,
            )
        }],
    };
    let mut object = merge::merge_object(live, config, schema, scope);

    // Upgrading from client-side apply: what the last client-side configuration set is the
    // applier's to take from the client-side managers, as kube's lastAppliedManager allows.
    let upgradable = last_applied_fields(live, schema, scope);
    let client_side = |entry: &Entry| {
        matches!(
            entry.manager.as_str(),
            BEFORE_FIRST_APPLY | "kubectl-client-side-apply"
        )
    };

    // Fields other managers own that this configuration changes.
    let conflicts: Vec<(usize, FieldSet)> = {
        let (_, before) = fields::indexed(live, schema, scope)?;
        let (_, after) = fields::indexed(&object, schema, scope)?;
        entries
            .iter()
            .enumerate()
            .filter(|(_, entry)| !entry.is(manager, APPLY))
            .filter_map(|(index, entry)| {
                let shared = entry.fields.intersection(&applied);
                let mut changed =
                    compare::changed(&shared, Some(&before), Some(&after), false, false);
                if let Some(upgradable) = upgradable.as_ref().filter(|_| client_side(entry)) {
                    changed.subtract(upgradable);
                }
                (!changed.is_empty()).then_some((index, changed))
            })
            .collect()
    };
    if !conflicts.is_empty() && !force {
        return Err(Error::Conflicts(describe(&entries, &conflicts)));
    }
    for (index, fields) in &conflicts {
        entries[*index].fields.subtract(fields);
    }
    if let Some(upgradable) = &upgradable {
        let taken = applied.intersection(upgradable);
        for entry in entries.iter_mut().filter(|entry| client_side(entry)) {
            entry.fields.subtract(&taken);
        }
    }

    // What this manager applied last time and no longer does goes, unless others keep it.
    let mine = entries.iter().position(|entry| entry.is(manager, APPLY));
    let mut others = FieldSet::default();
    for (index, entry) in entries.iter().enumerate() {
        if Some(index) != mine {
            others.union(&entry.fields);
        }
    }
    match mine {
        Some(mine) => {
            let mut stopped = entries[mine].fields.clone();
            stopped.subtract(&applied);
            merge::remove(
                &mut object,
                &compare::to_remove(&stopped, Some(&others), None),
            );
            // The same fields as before keep their time: re-applying what is there changes
            // nothing, and must write nothing.
            let unchanged = entries[mine].fields == applied;
            let time = entries[mine].time.clone();
            entries[mine] = Entry::new(manager, APPLY, applied);
            if unchanged {
                entries[mine].time = time;
            }
        }
        None => entries.push(Entry::new(manager, APPLY, applied)),
    }
    managed::write(&mut object, &entries);
    if without_record(&object) == without_record(live)
        && object.pointer("/metadata/managedFields") == live.pointer("/metadata/managedFields")
    {
        return Ok(live.clone());
    }
    Ok(object)
}

/// The fields of the client-side `kubectl apply` configuration the object carries, if any.
fn last_applied_fields(live: &Value, schema: &'static Schema, scope: Scope) -> Option<FieldSet> {
    let text = live
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    let config: Value = serde_json::from_str(text).ok()?;
    fields::fields_of(&config, schema, scope, false).ok()
}

/// The object without its `managedFields`, to compare contents.
fn without_record(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    copy
}

/// The conflicts as kube reports them, at most [`LISTED_CONFLICTS`] by path and then a count.
fn describe(entries: &[Entry], conflicts: &[(usize, FieldSet)]) -> Vec<Conflict> {
    let mut out = Vec::new();
    let total: usize = conflicts.iter().map(|(_, fields)| fields.len()).sum();
    for (index, fields) in conflicts {
        let room = LISTED_CONFLICTS.saturating_sub(out.len());
        for field in fields.members(room) {
            out.push(Conflict {
                manager: entries[*index].describe(),
                field: path::display(&field),
            });
        }
    }
    if total > out.len() {
        let more = total - out.len();
        if let Some(last) = out.last_mut() {
            last.field
                .push_str(&format!(" (and {more} more conflicts)"));
        }
    }
    out
}

/// Whether `list` is a `managedFields` record this crate reads: a client may send one in an
/// update to set the record directly, and kube takes it when it decodes (else keeps the live
/// one).
pub fn is_valid_record(list: &Value) -> bool {
    matches!(managed::read_list(list), Ok(Some(_)))
}

/// Records an update (`PUT`, or a patch that is not an apply) by `manager`: the fields that
/// `new` adds or changes against `old` become the manager's and nobody else's, and removed
/// fields are nobody's. An object without managedFields stays without; a write that sets
/// `managedFields` to `[]` or `[{}]` strips them, as in kube (the caller allows that on the
/// object itself, not through a subresource).
pub fn track_update(
    old: &Value,
    new: &mut Value,
    schema: &'static Schema,
    manager: &Manager<'_>,
    scope: Scope,
) -> Result<(), Error> {
    let reset = new
        .pointer("/metadata/managedFields")
        .is_some_and(|fields| {
            *fields == serde_json::json!([{}]) || *fields == serde_json::json!([])
        });
    let entries = if reset { None } else { managed::read(old)? };
    let Some(mut entries) = entries else {
        managed::write(new, &[]);
        return Ok(());
    };
    let (modified, removed) = {
        let (before, old_tree) = fields::indexed(old, schema, scope)?;
        let (after, new_tree) = fields::indexed(new, schema, scope)?;
        let modified = compare::changed(&after, Some(&old_tree), Some(&new_tree), false, true);
        let mut removed = before;
        removed.subtract(&after);
        (modified, removed)
    };
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
