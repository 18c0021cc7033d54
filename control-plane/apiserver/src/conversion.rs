//! Conversion between the versions of one stored resource. Kubernetes keeps a resource
//! served in several API versions in one place, in one storage version, and converts every
//! request body in and every object out; keel does the same for the kinds listed here.
//!
//! - [`events`]: events.k8s.io/v1 Event ↔ core/v1 Event (the storage form).
//! - [`relocate`]: the events.k8s.io Events an older keel stored apart, moved at start.

pub mod events;
pub mod relocate;

use serde_json::Value;

/// How a served resource's objects are kept in another resource's form: under that
/// resource's storage prefix, converted on every path in and out.
#[derive(Debug)]
pub struct StoredAs {
    /// The resource whose form is stored: its group and plural (version v1).
    pub group: &'static str,
    pub resource: &'static str,
    /// The served form → the stored form. Total on any JSON: fields are moved, never parsed.
    pub to_storage: fn(&Value) -> Value,
    /// The stored form → the served form.
    pub from_storage: fn(&Value) -> Value,
    /// The field label conversion (kube's `AddFieldLabelConversionFunc`): a field selector's
    /// label in the served version → the label of the stored form's field set. Only called
    /// with labels the served version accepts.
    pub field_label: fn(&str) -> &str,
}
