//! A server-side apply configuration (what `kubectl apply --server-side` and kube-rs'
//! `Patch::Apply` send) applied to a stored object, with the schema of a served kind, then an
//! update tracked against the result. The configuration is the attacker's: malformed input
//! must be an error, never a panic; the record written must read back; and applying the same
//! configuration again as the same manager must not conflict (nothing changes).
//!
//! Input: one byte choosing the kind (its low bit: force), then the stored object and the
//! configuration as JSON, separated by a 0xFF byte.

#![no_main]

use keel_apiserver::resources::RESOURCES;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use server_side_apply::{apply, track_update, FieldSet, Manager, Scope};
use strategic_merge_patch::{kubernetes, Schema};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Some(at) = rest.iter().position(|&b| b == 0xFF) else {
        return;
    };
    let (Ok(live), Ok(config)) = (
        serde_json::from_slice::<Value>(&rest[..at]),
        serde_json::from_slice::<Value>(&rest[at + 1..]),
    ) else {
        return;
    };
    let info = &RESOURCES[usize::from(pick >> 1) % RESOURCES.len()];
    let schema = kubernetes::schema_for(info.group, info.kind).unwrap_or_else(Schema::empty);
    let force = pick & 1 == 1;
    let manager = Manager {
        name: "fuzz",
        api_version: "v1",
        subresource: None,
        time: "2026-12-03T00:00:00Z",
    };
    let scope = Scope::Object { status_apart: true };
    let _ = apply(None, &config, schema, &manager, scope, force);
    let Ok(applied) = apply(Some(&live), &config, schema, &manager, scope, force) else {
        return;
    };
    if let Some(Value::Array(entries)) = applied.pointer("/metadata/managedFields") {
        for entry in entries {
            let fields = entry.get("fieldsV1").expect("every entry has fieldsV1");
            FieldSet::from_fields_v1(fields, "fieldsV1").expect("the record reads back");
        }
    }
    if let Err(e) = apply(Some(&applied), &config, schema, &manager, scope, false) {
        assert!(
            !matches!(e, server_side_apply::Error::Conflicts(_)),
            "re-applying the same configuration conflicts: {e}"
        );
    }
    let mut updated = live.clone();
    let _ = track_update(&applied, &mut updated, schema, &manager, scope);
});
