//! A JSON patch (RFC 6902, `application/json-patch+json`) applied to a stored object, as the
//! API server applies it. The operations are the attacker's: no panic, and no memory beyond
//! libFuzzer's RSS limit (`copy` can double the document per operation).
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
        serde_json::from_slice::<json_patch::Patch>(&data[at + 1..]),
    ) else {
        return;
    };
    let _ = json_patch::patch(&mut document, &patch.0);
});
