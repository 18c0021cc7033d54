//! `metadata.managedFields`: who set which fields, by which operation. An entry is one manager
//! doing one operation (`Apply` or `Update`) on one subresource.

use serde_json::{Map, Value};

use crate::set::FieldSet;
use crate::{Error, Manager};

pub(crate) const APPLY: &str = "Apply";
pub(crate) const UPDATE: &str = "Update";

#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl Entry {
    pub fn new(manager: &Manager<'_>, operation: &str, fields: FieldSet) -> Entry {
        Entry {
            manager: manager.name.to_owned(),
            operation: operation.to_owned(),
            api_version: manager.api_version.to_owned(),
            time: Some(manager.time.to_owned()),
            subresource: manager.subresource.map(str::to_owned),
            fields,
        }
    }

    /// Whether this entry is `manager` doing `operation`.
    pub fn is(&self, manager: &Manager<'_>, operation: &str) -> bool {
        self.manager == manager.name
            && self.operation == operation
            && self.subresource.as_deref() == manager.subresource
    }

    /// The manager as kube names it in a conflict (its manager identifier, which carries no
    /// time): `"kubectl-edit" using apps/v1` for an updater, `"ci"` for an applier, either with
    /// ` with subresource "status"` when it wrote through one.
    pub fn describe(&self) -> String {
        let mut text = format!("{:?}", self.manager);
        if self.operation == UPDATE {
            text.push_str(&format!(" using {}", self.api_version));
        }
        if let Some(subresource) = &self.subresource {
            text.push_str(&format!(" with subresource {subresource:?}"));
        }
        text
    }

    fn to_value(&self) -> Value {
        let mut map = Map::new();
        map.insert("manager".into(), Value::String(self.manager.clone()));
        map.insert("operation".into(), Value::String(self.operation.clone()));
        map.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(time) = &self.time {
            map.insert("time".into(), Value::String(time.clone()));
        }
        map.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        map.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if let Some(subresource) = &self.subresource {
            map.insert("subresource".into(), Value::String(subresource.clone()));
        }
        Value::Object(map)
    }
}

/// The entries of `object`, or None when it has none (it was never applied to).
pub(crate) fn read(object: &Value) -> Result<Option<Vec<Entry>>, Error> {
    let Some(list) = object.pointer("/metadata/managedFields") else {
        return Ok(None);
    };
    let Value::Array(items) = list else {
        return Err(Error::invalid("metadata.managedFields", "must be a list"));
    };
    if items.is_empty() {
        return Ok(None);
    }
    let mut entries = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let what = format!("metadata.managedFields[{index}]");
        let text = |name: &str| item.get(name).and_then(Value::as_str).map(str::to_owned);
        match text("fieldsType").as_deref() {
            Some("FieldsV1") | None => {}
            Some(other) => {
                return Err(Error::invalid(
                    format!("{what}.fieldsType"),
                    format!("{other:?} is not supported: only \"FieldsV1\""),
                ))
            }
        }
        let fields = match item.get("fieldsV1") {
            Some(fields) => FieldSet::from_fields_v1(fields, &format!("{what}.fieldsV1"))?,
            None => FieldSet::default(),
        };
        entries.push(Entry {
            manager: text("manager").unwrap_or_default(),
            operation: text("operation").unwrap_or_else(|| UPDATE.to_owned()),
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time"),
            subresource: text("subresource").filter(|s| !s.is_empty()),
            fields,
        });
    }
    Ok(Some(entries))
}

/// Writes `entries` (those that own something) into `object`'s metadata; none at all removes
/// the field.
pub(crate) fn write(object: &mut Value, entries: &[Entry]) {
    // kube's order (sortEncodedManagedFields): appliers first, then by time, manager, version
    // and subresource; RFC 3339 times in one zone sort as text.
    let mut kept: Vec<&Entry> = entries
        .iter()
        .filter(|entry| !entry.fields.is_empty())
        .collect();
    kept.sort_by(|a, b| {
        (
            &a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let list: Vec<Value> = kept.into_iter().map(Entry::to_value).collect();
    let Some(root) = object.as_object_mut() else {
        return;
    };
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(meta) = meta.as_object_mut() {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}
