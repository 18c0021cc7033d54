//! A strategic merge patch (what `kubectl apply`, `edit` and `patch` send) applied to a stored
//! object, with the schema of a served kind and with no schema. The patch is the attacker's:
//! a malformed directive must be an error, never a panic; and no directive may reach the
//! result, where it would be stored and served back as if it were data.
//!
//! Input: one byte choosing the kind, then the original object and the patch as JSON,
//! separated by a 0xFF byte (which valid UTF-8, and so JSON, never contains).

#![no_main]

use keel_apiserver::resources::RESOURCES;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use strategic_merge_patch::{apply, kubernetes, Schema};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Some(at) = rest.iter().position(|&b| b == 0xFF) else {
        return;
    };
    let (Ok(original), Ok(patch)) = (
        serde_json::from_slice::<Value>(&rest[..at]),
        serde_json::from_slice::<Value>(&rest[at + 1..]),
    ) else {
        return;
    };
    let info = &RESOURCES[usize::from(pick) % RESOURCES.len()];
    // A directive-shaped key in the original (a ConfigMap's `data` may hold `$patch`) is data,
    // which the merge rightly keeps: the check is for directives that came from the patch.
    let check = !has_directive(&original);
    let schemas = [
        kubernetes::schema_for(info.group, info.kind),
        Some(Schema::empty()),
    ];
    for schema in schemas.into_iter().flatten() {
        if let Ok(result) = apply(&original, &patch, schema) {
            assert!(
                !check || !has_directive(&result),
                "a directive reached the result for {}: {result}",
                info.kind
            );
        }
    }
});

/// Whether a key anywhere in `value` is a patch directive, classified as the crate classifies
/// patch keys: `$patch` and `$retainKeys` exactly (`$patchX` is an ordinary field), the list
/// directives by prefix (a malformed `$setElementOrderX` is refused, so never data either).
fn has_directive(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(key, value)| {
            key == "$patch"
                || key == "$retainKeys"
                || key.starts_with("$setElementOrder")
                || key.starts_with("$deleteFromPrimitiveList")
                || has_directive(value)
        }),
        Value::Array(items) => items.iter().any(has_directive),
        _ => false,
    }
}
