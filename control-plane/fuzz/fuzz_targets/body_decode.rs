//! A create or update body, as the API server reads it: parse (JSON or YAML, with the duplicate
//! key scan, or Kubernetes protobuf, as kubectl's typed clients send), `apiVersion`/`kind` check, decode through the kind's schema under each
//! `fieldValidation`, metadata validation. The body is the attacker's: every step must answer
//! with an error, never a panic, an overflow or unbounded memory.
//!
//! Input: one byte choosing the content type (modulo 3) and the resource (the rest), then the
//! body.

#![no_main]

use std::hint::black_box;

use keel_apiserver::objects::{self, Body, FieldValidation};
use keel_apiserver::resources::RESOURCES;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let content_type = match pick % 3 {
        0 => "application/json",
        1 => "application/yaml",
        _ => "application/vnd.kubernetes.protobuf",
    };
    let info = &RESOURCES[usize::from(pick / 3) % RESOURCES.len()];
    let Ok(Body {
        value: mut object,
        duplicates,
    }) = objects::parse_body(bytes, content_type)
    else {
        return;
    };
    if objects::check_type(info, &mut object).is_err() {
        return;
    }
    let decode = |validation: FieldValidation| {
        objects::decode(info, object.clone(), &duplicates, validation)
    };
    let ignore = decode(FieldValidation::Ignore);
    let warn = decode(FieldValidation::Warn);
    let strict = decode(FieldValidation::Strict);

    // The three modes differ only in what they do with unknown and duplicate fields, after
    // one and the same decode: a client must get the same object whichever it asked for.
    match (&ignore, &warn) {
        (Ok((ignored, ignore_warnings)), Ok((warned, _))) => {
            assert!(ignore_warnings.is_empty(), "Ignore sent warnings");
            assert_eq!(ignored, warned, "Ignore and Warn decoded different objects");
        }
        (Err(_), Err(_)) => {}
        _ => panic!("Ignore and Warn disagree on whether the body decodes"),
    }
    // Strict refuses exactly what Warn warns about.
    let clean = matches!(&warn, Ok((_, warnings)) if warnings.is_empty());
    assert_eq!(
        strict.is_ok(),
        clean,
        "Strict and Warn disagree: {:?} / {:?}",
        strict.as_ref().err().map(ToString::to_string),
        warn.as_ref().ok().map(|(_, w)| w)
    );

    // Error messages quote the attacker's field names and values back in a Status.
    if let Err(error) = &strict {
        black_box(error.to_status());
    }
    if let Ok((decoded, _)) = &ignore {
        if let Err(error) = objects::validate_meta(info, decoded) {
            black_box(error.to_status());
        }
    }
});
