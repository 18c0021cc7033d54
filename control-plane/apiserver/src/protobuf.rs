//! Kubernetes protobuf request bodies, decoded into the JSON Kubernetes would have written for
//! the same object.
//!
//! kubectl's typed clients (`kubectl create namespace`, `create configmap`, `create secret`,
//! `create deployment`, `create role`, `create token`, `auth can-i`, `auth whoami`, ...) send
//! their bodies as `application/vnd.kubernetes.protobuf`. keel stores and validates JSON, so
//! [`decode`] turns such a body into a `serde_json::Value` of the shape kube-apiserver's JSON
//! encoding gives the same object, and everything after it (defaults, validation, storage) sees
//! what a JSON client would have sent.
//!
//! The body is the 4 magic bytes `k8s\0` and a `runtime.Unknown` envelope whose `typeMeta`
//! names the kind and whose `raw` is the object's own message. `schema` holds the messages of
//! the kinds keel decodes. A kind or a field number it does not know is refused with an error
//! that names it and asks for JSON, never skipped: a field dropped on the way in would be a
//! change to the object nobody asked for.
//!
//! Hostile input ends in an error, never a panic: a length is checked against what is left
//! before anything is read, nothing is allocated from a length on the wire, and messages nest at
//! most [`MAX_DEPTH`] deep.

mod schema;
mod wire;

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{Map, Value};

use schema::{Field, Message, Ty};
use wire::Reader;
pub use wire::{WireError, WireType};

/// How deep messages may nest. No message keel decodes contains itself, so the schema bounds
/// the depth already (a Deployment's projected volume is about a dozen levels down); this bound
/// keeps the recursion safe should a self-containing message (a CRD's JSON schema) be added.
pub const MAX_DEPTH: usize = 64;

/// The bytes every Kubernetes protobuf body starts with.
const MAGIC: &[u8] = b"k8s\x00";

const UNKNOWN: &str = "k8s.io.apimachinery.pkg.runtime.Unknown";
const TYPE_META: &str = "k8s.io.apimachinery.pkg.runtime.TypeMeta";

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// Go's zero time, 0001-01-01T00:00:00Z, in seconds from the Unix epoch: JSON writes it as null.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// Why a protobuf body could not be turned into JSON. Each names the message, and the field by
/// number and JSON name, where decoding stopped.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ProtobufError {
    #[error("not a Kubernetes protobuf body: it does not start with the bytes \"k8s\\x00\"")]
    MissingMagic,
    #[error(
        "keel does not decode kind {kind:?} of apiVersion {api_version:?} from protobuf; send JSON"
    )]
    UnknownKind { api_version: String, kind: String },
    #[error("{message}: field {number} is not known to keel; send JSON")]
    UnknownField { message: String, number: u32 },
    #[error("{field}: sent with wire type {found}, but it is {expected}")]
    WrongWireType {
        field: String,
        found: WireType,
        expected: &'static str,
    },
    /// The bytes are not well-formed protobuf; `at` is the message, or the field, being read.
    #[error("{at}: {problem}")]
    Malformed { at: String, problem: WireError },
    /// Well-formed protobuf whose value has no JSON form (a string that is not UTF-8, a time
    /// outside the years 0 to 9999, ...).
    #[error("{field}: {problem}")]
    InvalidValue { field: String, problem: String },
    #[error("{message}: messages nested more than {limit} deep")]
    TooDeep { message: String, limit: usize },
}

/// Decodes a Kubernetes protobuf body (magic, `runtime.Unknown` envelope, object) into the JSON
/// object Kubernetes' JSON encoding has for it, `apiVersion` and `kind` included.
pub fn decode(bytes: &[u8]) -> Result<Value, ProtobufError> {
    let body = bytes
        .strip_prefix(MAGIC)
        .ok_or(ProtobufError::MissingMagic)?;
    let envelope = Envelope::read(body)?;
    let Some(message) = schema::message_for(&envelope.api_version, &envelope.kind) else {
        return Err(ProtobufError::UnknownKind {
            api_version: envelope.api_version,
            kind: envelope.kind,
        });
    };
    let mut object = Map::new();
    decode_message(message, envelope.raw, &mut object, 1)?;
    // TypeMeta travels in the envelope, not in the object's own message.
    object.insert("apiVersion".to_owned(), Value::String(envelope.api_version));
    object.insert("kind".to_owned(), Value::String(envelope.kind));
    Ok(Value::Object(object))
}

/// The `runtime.Unknown` around every protobuf body: 1 typeMeta (1 apiVersion, 2 kind),
/// 2 raw (the object's message), 3 contentEncoding, 4 contentType.
#[derive(Default)]
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
}

impl<'a> Envelope<'a> {
    fn read(body: &'a [u8]) -> Result<Envelope<'a>, ProtobufError> {
        let mut envelope = Envelope::default();
        let mut reader = Reader::new(body);
        while let Some((number, wire_type)) = next_key(&mut reader, &UNKNOWN)? {
            let name = match number {
                1 => "typeMeta",
                2 => "raw",
                3 => "contentEncoding",
                4 => "contentType",
                _ => return Err(unknown_field(&UNKNOWN, number)),
            };
            let value = read_len(&mut reader, &UNKNOWN, number, name, wire_type)?;
            match number {
                1 => envelope.read_type_meta(value)?,
                2 => envelope.raw = value,
                // Go's decoder ignores both: what a client sends in `raw` is plain protobuf.
                _ => {}
            }
        }
        Ok(envelope)
    }

    fn read_type_meta(&mut self, bytes: &[u8]) -> Result<(), ProtobufError> {
        let mut reader = Reader::new(bytes);
        while let Some((number, wire_type)) = next_key(&mut reader, &TYPE_META)? {
            let (name, slot) = match number {
                1 => ("apiVersion", &mut self.api_version),
                2 => ("kind", &mut self.kind),
                _ => return Err(unknown_field(&TYPE_META, number)),
            };
            let value = read_len(&mut reader, &TYPE_META, number, name, wire_type)?;
            let text = std::str::from_utf8(value).map_err(|error| ProtobufError::InvalidValue {
                field: describe(&TYPE_META, number, name),
                problem: format!("not UTF-8: {error}"),
            })?;
            *slot = text.to_owned();
        }
        Ok(())
    }
}

/// Decodes `bytes` as `message` into `object`. Fields already in `object` are merged into or
/// replaced, as protobuf does with a message's fields that occur more than once.
fn decode_message(
    message: &Message,
    bytes: &[u8],
    object: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep {
            message: message.to_string(),
            limit: MAX_DEPTH,
        });
    }
    let mut reader = Reader::new(bytes);
    while let Some((number, wire_type)) = next_key(&mut reader, message)? {
        let Some(field) = message.field(number) else {
            return Err(unknown_field(message, number));
        };
        match wire_type {
            WireType::Varint => {
                let raw = reader
                    .varint()
                    .map_err(|problem| malformed(message, field, problem))?;
                if !store_varint(field, raw, object) {
                    return Err(wrong_wire_type(message, field, wire_type));
                }
            }
            WireType::Len => {
                let bytes = reader
                    .len_delimited()
                    .map_err(|problem| malformed(message, field, problem))?;
                decode_len(message, field, bytes, object, depth)?;
            }
            _ => return Err(wrong_wire_type(message, field, wire_type)),
        }
    }
    Ok(())
}

/// Stores a varint field's value; false if the field does not take a varint.
fn store_varint(field: &Field, raw: u64, object: &mut Map<String, Value>) -> bool {
    // Go's generated decoder truncates a varint to the field's width in the same way.
    let (value, zero) = match field.ty {
        Ty::Int32 | Ty::Int32s => (Value::from(raw as i32), raw as i32 == 0),
        Ty::Int64 | Ty::Int64s => (Value::from(raw as i64), raw == 0),
        Ty::Bool => (Value::Bool(raw != 0), raw == 0),
        _ => return false,
    };
    if matches!(field.ty, Ty::Int32s | Ty::Int64s) {
        push(object, field.json, value);
    } else {
        set_scalar(object, field, value, zero);
    }
    true
}

/// Stores a length-delimited field's value.
fn decode_len(
    message: &Message,
    field: &Field,
    bytes: &[u8],
    object: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), ProtobufError> {
    let key = field.json;
    match field.ty {
        Ty::Str => {
            let text = utf8(message, field, bytes)?;
            set_scalar(
                object,
                field,
                Value::String(text.to_owned()),
                text.is_empty(),
            );
        }
        Ty::Bytes => {
            let encoded = Value::String(BASE64.encode(bytes));
            set_scalar(object, field, encoded, bytes.is_empty());
        }
        Ty::Json => {
            let value: Value = serde_json::from_slice(bytes)
                .map_err(|error| invalid(message, field, format!("does not hold JSON: {error}")))?;
            object.insert(key.to_owned(), value);
        }
        Ty::Int32 | Ty::Int64 | Ty::Bool => {
            return Err(wrong_wire_type(message, field, WireType::Len));
        }
        Ty::Strings => {
            let text = utf8(message, field, bytes)?;
            push(object, key, Value::String(text.to_owned()));
        }
        Ty::Int32s | Ty::Int64s => {
            // Packed: the varints back to back. Go's encoder writes them one field each, and
            // its decoder takes either.
            let mut packed = Reader::new(bytes);
            while !packed.is_empty() {
                let raw = packed
                    .varint()
                    .map_err(|problem| malformed(message, field, problem))?;
                store_varint(field, raw, object);
            }
        }
        Ty::Object(inner) => {
            // A second occurrence merges into the first, as protobuf merges a singular message.
            let mut nested = match object.remove(key) {
                Some(Value::Object(nested)) => nested,
                _ => Map::new(),
            };
            decode_message(inner, bytes, &mut nested, depth + 1)?;
            object.insert(key.to_owned(), Value::Object(nested));
        }
        Ty::Inline(inner) => decode_message(inner, bytes, object, depth + 1)?,
        Ty::Objects(inner) => {
            let mut nested = Map::new();
            decode_message(inner, bytes, &mut nested, depth + 1)?;
            push(object, key, Value::Object(nested));
        }
        Ty::StringMap | Ty::BytesMap => {
            let entry = match field.ty {
                Ty::StringMap => &schema::STRING_ENTRY,
                _ => &schema::BYTES_ENTRY,
            };
            let (entry_key, value) = map_entry(entry, bytes, depth)?;
            // Go decodes a missing value as "" or as no bytes, which JSON writes as "".
            let value = value.unwrap_or_else(|| Value::String(String::new()));
            insert_entry(object, key, entry_key, value);
        }
        Ty::QuantityMap => {
            let (entry_key, value) = map_entry(&schema::QUANTITY_ENTRY, bytes, depth)?;
            let value = value.unwrap_or_else(zero_quantity);
            insert_entry(object, key, entry_key, value);
        }
        Ty::StringsMap => {
            let (entry_key, value) = map_entry(&schema::STRINGS_ENTRY, bytes, depth)?;
            // The list is wrapped in a message of its own on the wire and bare in JSON. Go
            // decodes a missing one as an empty, non-nil slice: `[]`.
            let items = match value {
                Some(Value::Object(mut wrapper)) => wrapper.remove("items"),
                _ => None,
            };
            let items = items.unwrap_or_else(|| Value::Array(Vec::new()));
            insert_entry(object, key, entry_key, items);
        }
        Ty::Time => {
            let value = time(message, field, bytes, depth, false)?;
            object.insert(key.to_owned(), value);
        }
        Ty::MicroTime => {
            let value = time(message, field, bytes, depth, true)?;
            object.insert(key.to_owned(), value);
        }
        Ty::Quantity => {
            let mut fields = read_fields(&schema::QUANTITY, bytes, depth)?;
            // Passed on as sent: keel checks the string as it would check it in JSON.
            let value = fields.remove("string").unwrap_or_else(zero_quantity);
            object.insert(key.to_owned(), value);
        }
        Ty::IntOrString => {
            let value = int_or_string(message, field, bytes, depth)?;
            object.insert(key.to_owned(), value);
        }
        Ty::FieldsV1 => {
            let mut fields = read_fields(&schema::FIELDS_V1, bytes, depth)?;
            // Go writes a FieldsV1 without raw bytes as null.
            let value = fields.remove("raw").unwrap_or(Value::Null);
            object.insert(key.to_owned(), value);
        }
    }
    Ok(())
}

/// Sets a scalar field, leaving it out if it is zero and Go's JSON would omit it. A later
/// occurrence replaces an earlier one, as the last occurrence of a protobuf scalar wins.
fn set_scalar(object: &mut Map<String, Value>, field: &Field, value: Value, zero: bool) {
    if zero && field.omit_zero {
        object.remove(field.json);
    } else {
        object.insert(field.json.to_owned(), value);
    }
}

/// Appends one element of a repeated field.
fn push(object: &mut Map<String, Value>, key: &str, value: Value) {
    if let Some(Value::Array(items)) = object.get_mut(key) {
        items.push(value);
        return;
    }
    object.insert(key.to_owned(), Value::Array(vec![value]));
}

/// Adds one entry of a map field; a later entry with the same key replaces an earlier one, as
/// Go's decoder does.
fn insert_entry(object: &mut Map<String, Value>, key: &str, entry_key: String, value: Value) {
    if let Some(Value::Object(entries)) = object.get_mut(key) {
        entries.insert(entry_key, value);
        return;
    }
    let mut entries = Map::new();
    entries.insert(entry_key, value);
    object.insert(key.to_owned(), Value::Object(entries));
}

/// One entry of a protobuf map: its key ("" when missing, as in Go) and its value, if sent.
fn map_entry(
    entry: &Message,
    bytes: &[u8],
    depth: usize,
) -> Result<(String, Option<Value>), ProtobufError> {
    let mut fields = read_fields(entry, bytes, depth)?;
    let key = match fields.remove("key") {
        Some(Value::String(key)) => key,
        _ => String::new(),
    };
    Ok((key, fields.remove("value")))
}

/// The fields of a message that becomes something other than a JSON object (a Time, a
/// Quantity, a map entry), for the caller to turn into its JSON.
fn read_fields(
    message: &Message,
    bytes: &[u8],
    depth: usize,
) -> Result<Map<String, Value>, ProtobufError> {
    let mut fields = Map::new();
    decode_message(message, bytes, &mut fields, depth + 1)?;
    Ok(fields)
}

/// An integer field of [`read_fields`]' result; 0, protobuf's default, when it was not sent.
fn number(fields: &Map<String, Value>, name: &str) -> i64 {
    fields.get(name).and_then(Value::as_i64).unwrap_or(0)
}

/// Go's zero Quantity, which JSON writes as "0".
fn zero_quantity() -> Value {
    Value::String("0".to_owned())
}

/// A meta/v1 Time or MicroTime (1 seconds, 2 nanos) as its JSON: RFC 3339 in UTC, to the second
/// for Time and to the microsecond for MicroTime, as Go's MarshalJSON writes them.
fn time(
    message: &Message,
    field: &Field,
    bytes: &[u8],
    depth: usize,
    micro: bool,
) -> Result<Value, ProtobufError> {
    // Go writes the zero time (an unset creationTimestamp) as an empty message, and as null in
    // JSON.
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    let time_message = if micro {
        &schema::MICRO_TIME
    } else {
        &schema::TIME
    };
    let fields = read_fields(time_message, bytes, depth)?;
    let seconds = number(&fields, "seconds");
    // Go's Time reads only the seconds (its JSON has no fraction); MicroTime truncates the
    // nanoseconds to microseconds, toward zero.
    let nanos = if micro {
        let nanos = number(&fields, "nanos");
        nanos - nanos % 1000
    } else {
        0
    };
    let instant = i128::from(seconds) * NANOS_PER_SECOND + i128::from(nanos);
    rfc3339(instant, micro).ok_or_else(|| {
        invalid(
            message,
            field,
            format!("{seconds} seconds from 1970 is outside the years 0 to 9999"),
        )
    })
}

/// RFC 3339 in UTC of a time in nanoseconds from the Unix epoch; `None` outside the years 0 to
/// 9999, which have no such form.
fn rfc3339(nanoseconds: i128, micro: bool) -> Option<Value> {
    if nanoseconds == i128::from(GO_ZERO_TIME_SECONDS) * NANOS_PER_SECOND {
        return Some(Value::Null);
    }
    let timestamp = jiff::Timestamp::from_nanosecond(nanoseconds).ok()?;
    let utc = jiff::tz::Offset::UTC.to_datetime(timestamp);
    if !(0..=9999).contains(&utc.year()) {
        return None;
    }
    let seconds = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        utc.year(),
        utc.month(),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second()
    );
    Some(Value::String(if micro {
        format!("{seconds}.{:06}Z", utc.subsec_nanosecond() / 1000)
    } else {
        format!("{seconds}Z")
    }))
}

/// An intstr.IntOrString (1 type: 0 int, 1 string; 2 intVal; 3 strVal) as a number or a string.
fn int_or_string(
    message: &Message,
    field: &Field,
    bytes: &[u8],
    depth: usize,
) -> Result<Value, ProtobufError> {
    let mut fields = read_fields(&schema::INT_OR_STRING, bytes, depth)?;
    match number(&fields, "type") {
        0 => Ok(Value::from(number(&fields, "intVal"))),
        1 => Ok(fields
            .remove("strVal")
            .unwrap_or_else(|| Value::String(String::new()))),
        other => Err(invalid(
            message,
            field,
            format!("IntOrString type {other} is neither 0 (int) nor 1 (string)"),
        )),
    }
}

fn utf8<'a>(message: &Message, field: &Field, bytes: &'a [u8]) -> Result<&'a str, ProtobufError> {
    std::str::from_utf8(bytes)
        .map_err(|error| invalid(message, field, format!("not UTF-8: {error}")))
}

/// The next key of `message`, with a malformed key blamed on the message.
fn next_key(
    reader: &mut Reader<'_>,
    message: &dyn fmt::Display,
) -> Result<Option<(u32, WireType)>, ProtobufError> {
    reader.key().map_err(|problem| ProtobufError::Malformed {
        at: message.to_string(),
        problem,
    })
}

/// A length-delimited field of the hand-read envelope.
fn read_len<'a>(
    reader: &mut Reader<'a>,
    message: &dyn fmt::Display,
    number: u32,
    name: &str,
    wire_type: WireType,
) -> Result<&'a [u8], ProtobufError> {
    if wire_type != WireType::Len {
        return Err(ProtobufError::WrongWireType {
            field: describe(message, number, name),
            found: wire_type,
            expected: "length-delimited",
        });
    }
    reader
        .len_delimited()
        .map_err(|problem| ProtobufError::Malformed {
            at: describe(message, number, name),
            problem,
        })
}

/// `k8s.io.api.core.v1.Container field 1 (name)`: how errors name a field.
fn describe(message: &dyn fmt::Display, number: u32, name: &str) -> String {
    format!("{message} field {number} ({name})")
}

fn unknown_field(message: &dyn fmt::Display, number: u32) -> ProtobufError {
    ProtobufError::UnknownField {
        message: message.to_string(),
        number,
    }
}

fn malformed(message: &Message, field: &Field, problem: WireError) -> ProtobufError {
    ProtobufError::Malformed {
        at: describe(message, field.number, field.json),
        problem,
    }
}

fn wrong_wire_type(message: &Message, field: &Field, found: WireType) -> ProtobufError {
    let expected = match field.ty {
        Ty::Int32 | Ty::Int64 | Ty::Bool => "a varint",
        Ty::Int32s | Ty::Int64s => "a varint or a packed list of them",
        _ => "length-delimited",
    };
    ProtobufError::WrongWireType {
        field: describe(message, field.number, field.json),
        found,
        expected,
    }
}

fn invalid(message: &Message, field: &Field, problem: String) -> ProtobufError {
    ProtobufError::InvalidValue {
        field: describe(message, field.number, field.json),
        problem,
    }
}

#[cfg(test)]
mod tests;
