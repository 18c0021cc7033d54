//! Events an older keel stored apart: before the two Event versions were one resource, an
//! events.k8s.io/v1 Event was kept in its own form under `/registry/events.k8s.io/events/`,
//! which nothing reads any more. At start they are moved to `/registry/events/`, converted
//! to the core/v1 form, so no recorded Event is lost by the upgrade.

use serde_json::Value;

use crate::storage::{Storage, StorageError};

/// Where keel kept events.k8s.io/v1 Events before they were stored as core/v1 ones.
pub const LEGACY_PREFIX: &str = "/registry/events.k8s.io/events/";
/// Where every Event lives now (kube-apiserver's layout).
pub const EVENTS_PREFIX: &str = "/registry/events/";

/// What a start found under the legacy prefix.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Relocated {
    /// Moved to the core prefix, in the core form.
    pub moved: usize,
    /// Left where they are: not JSON, or a different Event already has the name (logged).
    pub kept: usize,
}

fn uid_of(value: &Value) -> Option<&str> {
    value.pointer("/metadata/uid").and_then(Value::as_str)
}

/// Moves every legacy Event: created under the core prefix (unless it is already there, from
/// an interrupted earlier move, recognised by its uid), then deleted where it was, if it did
/// not change meanwhile. An Event whose name is taken by another one is kept and reported
/// rather than dropped.
pub async fn legacy_events(storage: &Storage) -> Result<Relocated, StorageError> {
    let mut done = Relocated::default();
    let page = storage.list(LEGACY_PREFIX, None, 0, 0).await?;
    for item in page.items {
        let Some(rest) = item.key.strip_prefix(LEGACY_PREFIX) else {
            continue;
        };
        let legacy: Value = match serde_json::from_slice(&item.value) {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!(key = %item.key, error = %e, "a stored events.k8s.io Event is not JSON; left where it is");
                done.kept += 1;
                continue;
            }
        };
        let core = super::events::to_core(&legacy);
        let key = format!("{EVENTS_PREFIX}{rest}");
        let bytes = serde_json::to_vec(&core).map_err(|e| {
            StorageError::Unavailable(format!("encoding the Event of {}: {e}", item.key))
        })?;
        match storage.create(&key, bytes).await {
            Ok(_) => {}
            Err(StorageError::Exists) => {
                let existing = storage.get(&key).await?;
                let same = existing
                    .as_ref()
                    .and_then(|s| serde_json::from_slice::<Value>(&s.value).ok())
                    .is_some_and(|v| uid_of(&v).is_some() && uid_of(&v) == uid_of(&legacy));
                if !same {
                    tracing::warn!(key = %item.key, taken = %key, "an events.k8s.io Event's name is taken by a core Event; left where it is");
                    done.kept += 1;
                    continue;
                }
            }
            Err(e) => return Err(e),
        }
        match storage.delete(&item.key, item.mod_revision).await {
            // Gone already: another server moved it. Changed: nothing serves this prefix any
            // more, so only a hand-written value could; the next start finds the copy by
            // its uid and removes the original then.
            Ok(_) | Err(StorageError::NotFound) => done.moved += 1,
            Err(StorageError::Conflict) => done.kept += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
