//! Hostile input: malformed wire data, unknown kinds and fields, nesting past the bound, and
//! random bytes. Each must end in an error that says what is wrong, and none in a panic.

use serde_json::Map;

use super::{body, decoded, error, metadata, str_val, Pb};
use crate::protobuf::schema::{field, Message, Ty};
use crate::protobuf::{
    decode, decode_message, ProtobufError, WireError, WireType, MAGIC, MAX_DEPTH, UNKNOWN,
};

#[test]
fn missing_magic() {
    assert_eq!(error(b""), ProtobufError::MissingMagic);
    assert_eq!(
        error(br#"{"kind":"Namespace"}"#),
        ProtobufError::MissingMagic
    );
}

#[test]
fn truncated_varints() {
    let mut key_cut = MAGIC.to_vec();
    key_cut.push(0x80);
    assert_eq!(
        error(&key_cut),
        ProtobufError::Malformed {
            at: UNKNOWN.to_owned(),
            problem: WireError::TruncatedVarint,
        }
    );
    let mut length_cut = MAGIC.to_vec();
    length_cut.extend_from_slice(&[0x0a, 0x80]);
    assert_eq!(
        error(&length_cut),
        ProtobufError::Malformed {
            at: format!("{UNKNOWN} field 1 (typeMeta)"),
            problem: WireError::TruncatedVarint,
        }
    );
    let mut too_long = MAGIC.to_vec();
    too_long.extend_from_slice(&[0xff; 11]);
    assert_eq!(
        error(&too_long),
        ProtobufError::Malformed {
            at: UNKNOWN.to_owned(),
            problem: WireError::VarintTooLong,
        }
    );
}

#[test]
fn length_beyond_input() {
    let mut short = MAGIC.to_vec();
    short.extend_from_slice(&[0x12, 100, 1, 2, 3]);
    assert_eq!(
        error(&short),
        ProtobufError::Malformed {
            at: format!("{UNKNOWN} field 2 (raw)"),
            problem: WireError::LengthBeyondInput {
                length: 100,
                remaining: 3,
            },
        }
    );
    // A length near 2^64 is refused before anything is allocated or sliced.
    let huge = Pb::new().key(2, 2).raw_varint(u64::MAX).0;
    let mut body = MAGIC.to_vec();
    body.extend_from_slice(&huge);
    assert!(matches!(
        error(&body),
        ProtobufError::Malformed {
            problem: WireError::LengthBeyondInput { .. },
            ..
        }
    ));
}

#[test]
fn unknown_field_is_refused_by_name() {
    let pod = Pb::new().varint(57, 1);
    let template = Pb::new().message(2, pod);
    let deployment = Pb::new().message(2, Pb::new().message(3, template));
    let refused = error(&body("apps/v1", "Deployment", deployment));
    assert_eq!(
        refused.to_string(),
        "k8s.io.api.core.v1.PodSpec: field 57 is not known to keel; send JSON"
    );
    let envelope_field = Pb::new().string(9, "x");
    let mut body = MAGIC.to_vec();
    body.extend_from_slice(&envelope_field.0);
    assert_eq!(
        error(&body),
        ProtobufError::UnknownField {
            message: UNKNOWN.to_owned(),
            number: 9,
        }
    );
}

#[test]
fn wrong_wire_types() {
    let namespace = Pb::new().message(1, Pb::new().varint(1, 5));
    assert_eq!(
        error(&body("v1", "Namespace", namespace)),
        ProtobufError::WrongWireType {
            field: "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta field 1 (name)".to_owned(),
            found: WireType::Varint,
            expected: "length-delimited",
        }
    );
    let generation = Pb::new().string(7, "1");
    let namespace = Pb::new().message(1, generation);
    assert!(matches!(
        error(&body("v1", "Namespace", namespace)),
        ProtobufError::WrongWireType {
            found: WireType::Len,
            expected: "a varint",
            ..
        }
    ));
    // A 32-bit value where a varint belongs.
    let fixed = Pb::new().key(7, 5).0;
    let namespace = Pb::new().message(1, Pb(fixed));
    assert!(matches!(
        error(&body("v1", "Namespace", namespace)),
        ProtobufError::WrongWireType {
            found: WireType::Fixed32,
            ..
        }
    ));
    // Wire type 7 does not exist; field number 0 is not allowed.
    let namespace = Pb::new().message(1, Pb::new().key(1, 7));
    assert!(matches!(
        error(&body("v1", "Namespace", namespace)),
        ProtobufError::Malformed {
            problem: WireError::UnknownWireType(7),
            ..
        }
    ));
    let namespace = Pb::new().message(1, Pb::new().key(0, 0).raw_varint(0));
    assert!(matches!(
        error(&body("v1", "Namespace", namespace)),
        ProtobufError::Malformed {
            problem: WireError::InvalidFieldNumber(0),
            ..
        }
    ));
}

#[test]
fn values_without_a_json_form() {
    let namespace = Pb::new().message(1, Pb::new().bytes(1, &[0xff, 0xfe]));
    assert!(matches!(
        error(&body("v1", "Namespace", namespace)),
        ProtobufError::InvalidValue { .. }
    ));
    let bad_int_or_string = Pb::new().varint(1, 2);
    let strategy = Pb::new().message(2, Pb::new().message(2, bad_int_or_string));
    let deployment = Pb::new().message(2, Pb::new().message(4, strategy));
    assert_eq!(
        error(&body("apps/v1", "Deployment", deployment)).to_string(),
        "k8s.io.api.apps.v1.RollingUpdateDeployment field 2 (maxSurge): \
         IntOrString type 2 is neither 0 (int) nor 1 (string)"
    );
    // The year 10000 has no RFC 3339 form.
    let time = Pb::new().varint(1, 253_402_300_800);
    let namespace = Pb::new().message(1, Pb::new().message(8, time));
    assert!(matches!(
        error(&body("v1", "Namespace", namespace)),
        ProtobufError::InvalidValue { .. }
    ));
}

#[test]
fn unknown_kind() {
    assert_eq!(
        error(&body("v1", "Pod", Pb::new())),
        ProtobufError::UnknownKind {
            api_version: "v1".to_owned(),
            kind: "Pod".to_owned(),
        }
    );
    assert_eq!(
        error(&body("apps/v1", "Namespace", Pb::new())).to_string(),
        "keel does not decode kind \"Namespace\" of apiVersion \"apps/v1\" from protobuf; send JSON"
    );
}

/// A message that contains itself, which no schema message does, to reach the depth bound.
static NESTED: Message = Message {
    package: "test",
    name: "Nested",
    fields: &[field(1, "child", Ty::Object(&NESTED))],
};

fn nested(levels: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for _ in 0..levels {
        bytes = Pb::new().bytes(1, &bytes).0;
    }
    bytes
}

#[test]
fn nesting_is_bounded() {
    let mut object = Map::new();
    assert_eq!(
        decode_message(&NESTED, &nested(MAX_DEPTH - 1), &mut object, 1),
        Ok(())
    );
    let too_deep = ProtobufError::TooDeep {
        message: "test.Nested".to_owned(),
        limit: MAX_DEPTH,
    };
    for levels in [MAX_DEPTH, 1000] {
        let result = decode_message(&NESTED, &nested(levels), &mut Map::new(), 1);
        assert_eq!(result, Err(too_deep.clone()));
    }
}

/// xorshift64: the same "random" bytes on every run.
struct XorShift(u64);

impl XorShift {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    let noise: Vec<u8> = (0..100 * 1024).map(|_| random.next_u64() as u8).collect();
    // All of it at once, behind the magic, and as a Deployment's raw bytes.
    let _ = decode(&noise);
    let mut magic_noise = MAGIC.to_vec();
    magic_noise.extend_from_slice(&noise);
    let _ = decode(&magic_noise);
    let _ = decode(&body("apps/v1", "Deployment", Pb(noise.clone())));
    // Then in pieces of up to 1 KiB, each behind the magic and as the raw bytes of a kind.
    let kinds = [
        ("v1", "Namespace"),
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
    ];
    let mut rest = noise.as_slice();
    while !rest.is_empty() {
        let length = (random.next_u64() % 1024) as usize + 1;
        let (piece, after) = rest.split_at(length.min(rest.len()));
        rest = after;
        let mut behind_magic = MAGIC.to_vec();
        behind_magic.extend_from_slice(piece);
        let _ = decode(&behind_magic);
        let (api_version, kind) = kinds[(random.next_u64() % 3) as usize];
        let _ = decode(&body(api_version, kind, Pb(piece.to_vec())));
    }
}

#[test]
fn corrupted_deployments_never_panic() {
    // A valid body with a few bytes changed reaches deeper than noise does.
    let container = Pb::new()
        .string(1, "web")
        .message(8, Pb::new().quantity(1, "cpu", "500m"))
        .message(6, Pb::new().varint(3, 80));
    let template = Pb::new()
        .message(1, metadata("", "").entry(11, "app", "web"))
        .message(2, Pb::new().message(2, container));
    let strategy = Pb::new().message(2, Pb::new().message(2, str_val("25%")));
    let spec = Pb::new()
        .varint(1, 2)
        .message(3, template)
        .message(4, strategy);
    let valid = body(
        "apps/v1",
        "Deployment",
        Pb::new()
            .message(1, metadata("web", "default"))
            .message(2, spec),
    );
    decoded(&valid);
    let mut random = XorShift(42);
    for _ in 0..2000 {
        let mut corrupted = valid.clone();
        for _ in 0..(random.next_u64() % 4 + 1) {
            let at = (random.next_u64() % corrupted.len() as u64) as usize;
            corrupted[at] = random.next_u64() as u8;
        }
        let _ = decode(&corrupted);
    }
}
