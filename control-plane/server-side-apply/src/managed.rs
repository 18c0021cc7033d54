//! `metadata.managedFields`: who set which fields, by which operation. An entry is one manager
//! doing one operation (`Apply` or `Update`) on one subresource.

use serde_json::{Map, Value};

use crate::set::FieldSet;
use crate::{Error, Manager};

pub(crate) const APPLY: &str = "Apply";
pub(crate) const UPDATE: &str = "Update";

/// At most this many Update entries are kept apart (kube's `DefaultMaxUpdateManagers`): every
/// program that writes an object names a manager, and without a cap a busy object's record
/// grows with each new one.
pub(crate) const MAX_UPDATE_MANAGERS: usize = 10;

/// The Update entry the oldest updaters are folded into once there are too many, one per API
/// version (kube's name for it).
pub(crate) const ANCIENT_CHANGES: &str = "ancient-changes";

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
    match object.pointer("/metadata/managedFields") {
        Some(list) => read_list(list),
        None => Ok(None),
    }
}

/// The entries of a `managedFields` list, or None when it is empty.
pub(crate) fn read_list(list: &Value) -> Result<Option<Vec<Entry>>, Error> {
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
    let capped;
    let entries = if updaters(entries).count() > MAX_UPDATE_MANAGERS {
        capped = cap_update_managers(entries.to_vec());
        &capped[..]
    } else {
        entries
    };
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

/// Positions of the Update entries that own something.
fn updaters(entries: &[Entry]) -> impl Iterator<Item = usize> + '_ {
    entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.operation == UPDATE && !e.fields.is_empty())
        .map(|(position, _)| position)
}

/// kube's capManagersManager: while there are more than [`MAX_UPDATE_MANAGERS`] updaters, the
/// oldest are folded, per API version, into an [`ANCIENT_CHANGES`] entry that owns the union of
/// their fields and takes the newest folded time. The oldest updater of a version becomes that
/// entry when a second one of the version is folded (or folds into the entry an earlier cap
/// made), so a version seen once is never renamed.
fn cap_update_managers(mut entries: Vec<Entry>) -> Vec<Entry> {
    let mut oldest_first: Vec<usize> = updaters(&entries).collect();
    // No time sorts first; RFC 3339 times in one zone sort as text; the manager breaks ties.
    oldest_first.sort_by(|&a, &b| {
        let (a, b) = (&entries[a], &entries[b]);
        (a.time.is_some(), &a.time, &a.manager).cmp(&(b.time.is_some(), &b.time, &b.manager))
    });
    let mut left = oldest_first.len();
    let mut first_of_version: std::collections::HashMap<String, usize> = Default::default();
    let mut folded = vec![false; entries.len()];
    for position in oldest_first {
        if left <= MAX_UPDATE_MANAGERS {
            break;
        }
        let version = entries[position].api_version.clone();
        let Some(&first) = first_of_version.get(&version) else {
            first_of_version.insert(version, position);
            continue;
        };
        let bucket = entries
            .iter()
            .position(|e| {
                e.manager == ANCIENT_CHANGES
                    && e.operation == UPDATE
                    && e.subresource.is_none()
                    && e.api_version == version
            })
            .unwrap_or_else(|| {
                let entry = &mut entries[first];
                entry.manager = ANCIENT_CHANGES.to_owned();
                entry.subresource = None;
                first
            });
        // An entry an earlier cap made is never folded: when its own turn comes, the look-up
        // above finds it as the bucket.
        if bucket == position {
            continue;
        }
        let fields = std::mem::take(&mut entries[position].fields);
        let time = entries[position].time.take();
        entries[bucket].fields.union(&fields);
        entries[bucket].time = time;
        folded[position] = true;
        left -= 1;
    }
    entries
        .into_iter()
        .zip(folded)
        .filter(|(_, folded)| !folded)
        .map(|(entry, _)| entry)
        .collect()
}
