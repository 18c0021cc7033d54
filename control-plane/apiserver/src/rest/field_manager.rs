//! Who a write is from, for `managedFields`: the `fieldManager` parameter, or the program name
//! of the client's `User-Agent` (kube's default for updates: `kubectl`, `python`, …). Updates
//! and non-apply patches of an object that has managedFields give their changes to that
//! manager (`server-side-apply`'s `track_update`); applies are in `apply.rs`.

use keel_api::validation::{go_is_print, go_quote};
use serde_json::Value;
use server_side_apply::{Manager, Scope};
use strategic_merge_patch::Schema;

use super::Request;
use crate::objects;
use crate::request::ResourceRequest;
use crate::resources::ResourceInfo;
use crate::status::{ApiError, Cause};

/// kube-apiserver's limit on a field manager's name.
const MAX_MANAGER_BYTES: usize = 128;

/// The `fieldManager` the request names, checked as kube's ValidateFieldManager does (422):
/// at most 128 bytes, printable characters only; None when it names none.
pub(super) fn named(request: &Request) -> Result<Option<String>, ApiError> {
    let Some(name) = request.query.get("fieldManager") else {
        return Ok(None);
    };
    if name.len() > MAX_MANAGER_BYTES {
        return Err(ApiError::invalid_options(
            "PatchOptions",
            "fieldManager",
            "FieldValueTooLong",
            &format!("Too long: may not be more than {MAX_MANAGER_BYTES} bytes"),
        ));
    }
    if let Some((at, c)) = name.char_indices().find(|(_, c)| !go_is_print(*c)) {
        return Err(ApiError::invalid_options(
            "PatchOptions",
            "fieldManager",
            "FieldValueInvalid",
            &format!(
                "Invalid value: {}: invalid character U+{:04X} (at position {at})",
                go_quote(name),
                u32::from(c)
            ),
        ));
    }
    Ok((!name.is_empty()).then(|| name.to_owned()))
}

/// The manager of an update: the one named, else the user agent's program name.
pub(super) fn of_update(request: &Request) -> Result<String, ApiError> {
    if let Some(name) = named(request)? {
        return Ok(name);
    }
    let agent = request.user_agent.as_deref().unwrap_or("");
    let program = agent.split('/').next().unwrap_or("");
    let mut name: String = program.chars().filter(|c| !c.is_control()).collect();
    while name.len() > MAX_MANAGER_BYTES {
        name.pop();
    }
    Ok(name)
}

/// What a write through `subresource` may set of an object of `info`.
pub(super) fn scope(info: &ResourceInfo, status_only: bool) -> Scope {
    if status_only {
        Scope::Status
    } else {
        Scope::Object {
            status_apart: info.has_subresource("status"),
        }
    }
}

/// The list and map semantics of `info`'s kind: the strategic merge patch tags where keel has
/// them, else ObjectMeta's (finalizers a set, ownerReferences by uid) over "every other list
/// atomic, every map granular".
pub(super) fn schema(info: &ResourceInfo) -> &'static Schema {
    strategic_merge_patch::kubernetes::schema_for(info.group, info.kind)
        .unwrap_or_else(strategic_merge_patch::kubernetes::metadata_only)
}

/// The subresource a status-only write goes through (recorded on its entry).
pub(super) fn subresource(target: &ResourceRequest, status_only: bool) -> Option<&str> {
    target.subresource.as_deref().filter(|_| status_only)
}

/// What the object a client sent says of the record.
#[derive(Debug, PartialEq)]
pub(super) enum SentRecord {
    /// Nothing the record would take: none, the live one unchanged, or one that does not
    /// decode (kube then keeps the live record, silently).
    Nothing,
    /// `[]` or `[{}]`: strip the record (kube's isResetManagedFields).
    Reset,
    /// A valid record other than the live one, which the update starts from (kube lets a
    /// client set managedFields directly, as kubectl's client-side apply upgrade does).
    Record(Value),
}

/// Reads the record `desired` carries against `old`'s.
pub(super) fn sent_record(old: &Value, desired: &Value) -> SentRecord {
    let Some(sent) = desired.pointer("/metadata/managedFields") else {
        return SentRecord::Nothing;
    };
    let live = old.pointer("/metadata/managedFields");
    match sent {
        Value::Array(entries) if entries.is_empty() || entries == &[serde_json::json!({})] => {
            SentRecord::Reset
        }
        // The usual case, the live record sent back as read: no copy made.
        _ if live == Some(sent) => SentRecord::Nothing,
        _ if server_side_apply::is_valid_record(sent) => match with_utc_times(sent) {
            Some(record) if live != Some(&record) => SentRecord::Record(record),
            _ => SentRecord::Nothing,
        },
        _ => SentRecord::Nothing,
    }
}

/// `record` with each entry's time spelled as kube writes it (`2026-12-04T04:00:00Z`): a
/// client may send any RFC 3339 offset (the Python client writes `+00:00`), and the record is
/// read back, compared and sorted as text. None when a time does not parse.
fn with_utc_times(record: &Value) -> Option<Value> {
    let mut record = record.clone();
    for entry in record.as_array_mut()? {
        let Some(time) = entry.get_mut("time") else {
            continue;
        };
        if time.is_null() {
            continue;
        }
        let parsed: jiff::Timestamp = time.as_str()?.parse().ok()?;
        *time = Value::String(objects::rfc3339(parsed));
    }
    Some(record)
}

/// Records an update or non-apply patch from `old` to `new`. `sent`: what the client's object
/// says of the record ([`sent_record`]), which kube honours on the object itself and ignores
/// through a subresource.
pub(super) fn track(
    target: &ResourceRequest,
    request: &Request,
    status_only: bool,
    old: &Value,
    sent: SentRecord,
    new: &mut Value,
) -> Result<(), ApiError> {
    let info = target.info;
    let sent = if status_only {
        SentRecord::Nothing
    } else {
        sent
    };
    let with_sent;
    let old = match sent {
        SentRecord::Reset => {
            if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("managedFields");
            }
            return Ok(());
        }
        SentRecord::Record(record) => {
            let mut base = old.clone();
            objects::meta_mut(&mut base).insert("managedFields".into(), record);
            with_sent = base;
            &with_sent
        }
        SentRecord::Nothing if old.pointer("/metadata/managedFields").is_none() => {
            return Ok(());
        }
        SentRecord::Nothing => old,
    };
    let name = of_update(request)?;
    let api_version = info.api_version();
    let time = objects::now_rfc3339();
    let manager = Manager {
        name: &name,
        api_version: &api_version,
        subresource: subresource(target, status_only),
        time: &time,
    };
    server_side_apply::track_update(old, new, schema(info), &manager, scope(info, status_only))
        .map_err(|e| to_api_error(info, objects::name_of(old), e))
}

/// kube's answers: 409 with one cause per conflicting field, or 422 naming the bad field.
pub(super) fn to_api_error(
    info: &ResourceInfo,
    name: &str,
    error: server_side_apply::Error,
) -> ApiError {
    match error {
        server_side_apply::Error::Conflicts(ref conflicts) => {
            let causes = conflicts
                .iter()
                .map(|c| (format!("conflict with {}", c.manager), c.field.clone()))
                .collect();
            ApiError::apply_conflict(error.to_string(), causes)
        }
        server_side_apply::Error::Invalid { field, message } => ApiError::invalid(
            info,
            name,
            vec![Cause {
                reason: "FieldValueInvalid",
                message,
                field,
            }],
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{sent_record, SentRecord};

    fn with_record(record: serde_json::Value) -> serde_json::Value {
        json!({"metadata": {"name": "x", "managedFields": record}})
    }

    #[test]
    fn what_a_client_sends_of_the_record() {
        let entry = |manager: &str| {
            json!([{"manager": manager, "operation": "Apply", "apiVersion": "v1",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}}])
        };
        let live = with_record(entry("ci"));
        let none = json!({"metadata": {"name": "x"}});
        assert_eq!(sent_record(&live, &none), SentRecord::Nothing);
        assert_eq!(
            sent_record(&live, &live),
            SentRecord::Nothing,
            "sent back unchanged"
        );
        assert_eq!(
            sent_record(&live, &with_record(json!([]))),
            SentRecord::Reset
        );
        assert_eq!(
            sent_record(&live, &with_record(json!([{}]))),
            SentRecord::Reset
        );
        assert_eq!(
            sent_record(&live, &with_record(entry("other"))),
            SentRecord::Record(entry("other"))
        );
        // Also onto an object that had no record, as in kube.
        assert_eq!(
            sent_record(&none, &with_record(entry("other"))),
            SentRecord::Record(entry("other"))
        );
        // Times in another offset are spelled as kube spells them; sent back so, the live
        // record is unchanged.
        let mut python = entry("ci");
        python[0]["time"] = json!("2026-12-04T05:00:00+01:00");
        let mut utc = entry("ci");
        utc[0]["time"] = json!("2026-12-04T04:00:00Z");
        assert_eq!(
            sent_record(&with_record(utc.clone()), &with_record(python.clone())),
            SentRecord::Nothing
        );
        assert_eq!(
            sent_record(&live, &with_record(python)),
            SentRecord::Record(utc)
        );
        // Records that do not decode are ignored, never an error, never taken.
        for garbage in [
            json!("text"),
            json!([{"manager": "m", "fieldsV1": {"nonsense": 1}}]),
            json!([{"manager": "m", "fieldsType": "FieldsV2", "fieldsV1": {}}]),
            json!([{"manager": "m", "fieldsV1": "f:spec"}]),
            json!([{"manager": "m", "time": "yesterday", "fieldsV1": {"f:data": {}}}]),
        ] {
            assert_eq!(
                sent_record(&live, &with_record(garbage.clone())),
                SentRecord::Nothing,
                "{garbage}"
            );
        }
    }
}
