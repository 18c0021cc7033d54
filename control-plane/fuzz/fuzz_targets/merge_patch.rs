//! A JSON merge patch (RFC 7396, `application/merge-patch+json`) applied to a stored object,
//! as the API server applies it. The patch is the attacker's: no panic, no overflow.
//!
//! Input: the document and the patch as JSON, separated by a 0xFF byte (never in JSON).

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some(at) = data.iter().position(|&b| b == 0xFF) else {
        return;
    };
    let (Ok(mut document), Ok(patch)) = (
        serde_json::from_slice::<Value>(&data[..at]),
        serde_json::from_slice::<Value>(&data[at + 1..]),
    ) else {
        return;
    };
    // The server answers 400 to a merge patch that is not an object.
    if !patch.is_object() {
        return;
    }
    json_patch::merge(&mut document, &patch);
    // A merge patch is idempotent (RFC 7396): a client retrying a PATCH whose first answer it
    // lost must get the object the first attempt made.
    let once = document.clone();
    json_patch::merge(&mut document, &patch);
    assert_eq!(
        document, once,
        "a merge patch applied twice changed the object again"
    );
});
