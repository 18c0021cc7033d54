//! The messages keel decodes, as static tables: for every field its number, its JSON name and
//! how its value becomes JSON.
//!
//! Field numbers and wire types are those of Kubernetes 1.37's `generated.proto`; JSON names,
//! and which fields drop a zero value (see [`omitempty`]), are those of the Go types in
//! `types.go`. The proto field names are already the JSON names, with two exceptions the
//! tables take care of: a struct embedded with `json:",inline"` (a Probe's `handler`, a
//! Volume's `volumeSource`) is flattened into its parent ([`Ty::Inline`]), and
//! BoundObjectReference's `uID` is `uid` in JSON. The names are written out rather than
//! computed from the snake_case of generated Rust bindings, which cannot restore
//! `clusterIPs`, `podIP` or `nonResourceURLs`.

mod containers;
mod groups;
mod meta;
mod objects;
mod pod;
mod volumes;

use std::fmt;

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";
const CORE: &str = "k8s.io.api.core.v1";
const APPS: &str = "k8s.io.api.apps.v1";
const RBAC: &str = "k8s.io.api.rbac.v1";
const SCHEDULING: &str = "k8s.io.api.scheduling.v1";
const AUTHORIZATION: &str = "k8s.io.api.authorization.v1";
const AUTHENTICATION: &str = "k8s.io.api.authentication.v1";
const CERTIFICATES: &str = "k8s.io.api.certificates.v1";

/// One protobuf message: its name (for errors) and its fields.
pub(super) struct Message {
    pub(super) package: &'static str,
    pub(super) name: &'static str,
    pub(super) fields: &'static [Field],
}

impl Message {
    pub(super) const fn new(
        package: &'static str,
        name: &'static str,
        fields: &'static [Field],
    ) -> Message {
        Message {
            package,
            name,
            fields,
        }
    }

    pub(super) fn field(&self, number: u32) -> Option<&'static Field> {
        let fields: &'static [Field] = self.fields;
        fields.iter().find(|field| field.number == number)
    }
}

/// The full protobuf name, `k8s.io.api.core.v1.PodSpec`, which is what errors show.
impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.package.is_empty() {
            f.write_str(self.name)
        } else {
            write!(f, "{}.{}", self.package, self.name)
        }
    }
}

/// One field of a [`Message`].
pub(super) struct Field {
    pub(super) number: u32,
    /// The key in the JSON object; for [`Ty::Inline`], whose fields land in the parent, only a
    /// name for errors.
    pub(super) json: &'static str,
    pub(super) ty: Ty,
    /// Whether a zero value (`""`, `0`, `false`, no bytes) is left out of the JSON.
    pub(super) omit_zero: bool,
}

/// A field that is written to JSON whenever it is on the wire, zero or not: Go pointers
/// (`*int32`, `*bool`, `*string`), fields without `omitempty`, and every message, list and map.
pub(super) const fn field(number: u32, json: &'static str, ty: Ty) -> Field {
    Field {
        number,
        json,
        ty,
        omit_zero: false,
    }
}

/// A Go non-pointer scalar tagged `omitempty`. Go's protobuf encoder writes such a field even
/// when it is zero (kubectl's bodies carry `generateName: ""`, `generation: 0`), and Go's JSON
/// encoder then leaves it out: dropping the zero gives the JSON Kubernetes would have written.
pub(super) const fn omitempty(number: u32, json: &'static str, ty: Ty) -> Field {
    Field {
        number,
        json,
        ty,
        omit_zero: true,
    }
}

/// How a field's value is read off the wire and written as JSON.
#[derive(Clone, Copy)]
pub(super) enum Ty {
    /// `string` → JSON string (must be UTF-8).
    Str,
    /// `bytes` → base64 (standard, padded), as Go's JSON writes `[]byte`.
    Bytes,
    /// `bytes` that hold JSON text (FieldsV1's raw) → that JSON, embedded.
    Json,
    /// `int32` varint → number (a 10-byte negative varint is truncated to 32 bits, as Go does).
    Int32,
    /// `int64` varint → number.
    Int64,
    /// `bool` varint → `true` for anything but 0.
    Bool,
    /// `repeated string` → array of strings.
    Strings,
    /// `repeated int32`, packed or not → array of numbers.
    Int32s,
    /// `repeated int64`, packed or not → array of numbers.
    Int64s,
    /// A nested message → JSON object; a second occurrence merges into the first, as protobuf
    /// merges repeated occurrences of a singular message field.
    Object(&'static Message),
    /// A Go struct embedded with `json:",inline"`: its fields are written into the parent object.
    Inline(&'static Message),
    /// `repeated` message → array of objects.
    Objects(&'static Message),
    /// `map<string, string>` → object of strings.
    StringMap,
    /// `map<string, bytes>` (Secret `data`, ConfigMap `binaryData`) → object of base64 strings.
    BytesMap,
    /// `map<string, Quantity>` (a ResourceList) → object of quantity strings.
    QuantityMap,
    /// `map<string, ExtraValue>` (UserInfo `extra`, TokenRequest `attestations`) → object of
    /// string arrays.
    StringsMap,
    /// meta/v1 Time → RFC 3339 in seconds, or `null` when empty.
    Time,
    /// meta/v1 MicroTime → RFC 3339 with six fractional digits, or `null` when empty. No kind
    /// keel decodes has one today (Events and Leases do); it is here for when one does.
    #[allow(dead_code)]
    MicroTime,
    /// resource.Quantity → its string.
    Quantity,
    /// intstr.IntOrString → number or string.
    IntOrString,
    /// meta/v1 FieldsV1 (managedFields' `fieldsV1`) → the JSON it holds.
    FieldsV1,
}

/// The message of a kind's `raw` bytes in the envelope, by the envelope's apiVersion and kind.
pub(super) fn message_for(api_version: &str, kind: &str) -> Option<&'static Message> {
    let message = match (api_version, kind) {
        ("v1", "Namespace") => &objects::NAMESPACE,
        ("v1", "ConfigMap") => &objects::CONFIG_MAP,
        ("v1", "Secret") => &objects::SECRET,
        ("v1", "ServiceAccount") => &objects::SERVICE_ACCOUNT,
        ("v1", "ResourceQuota") => &objects::RESOURCE_QUOTA,
        ("v1", "LimitRange") => &objects::LIMIT_RANGE,
        ("v1", "Service") => &objects::SERVICE,
        ("apps/v1", "Deployment") => &groups::DEPLOYMENT,
        ("rbac.authorization.k8s.io/v1", "Role") => &groups::ROLE,
        ("scheduling.k8s.io/v1", "PriorityClass") => &groups::PRIORITY_CLASS,
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => &groups::CLUSTER_ROLE,
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => &groups::ROLE_BINDING,
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => &groups::CLUSTER_ROLE_BINDING,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => {
            &groups::SELF_SUBJECT_ACCESS_REVIEW
        }
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => &groups::SELF_SUBJECT_RULES_REVIEW,
        ("authentication.k8s.io/v1", "SelfSubjectReview") => &groups::SELF_SUBJECT_REVIEW,
        ("authentication.k8s.io/v1", "TokenRequest") => &groups::TOKEN_REQUEST,
        ("certificates.k8s.io/v1", "CertificateSigningRequest") => {
            &groups::CERTIFICATE_SIGNING_REQUEST
        }
        // Kubernetes registers DeleteOptions in every group version (and in meta.k8s.io/v1),
        // and client-go sends it under the group version of the resource being deleted.
        (_, "DeleteOptions") => &meta::DELETE_OPTIONS,
        _ => return None,
    };
    Some(message)
}

// The apimachinery messages whose JSON is not an object. The decoder reads them with the same
// field tables as everything else, so their wire errors read the same way, and then turns the
// fields into the one JSON value Go's MarshalJSON writes.

pub(super) static TIME: Message = Message::new(
    META,
    "Time",
    &[field(1, "seconds", Ty::Int64), field(2, "nanos", Ty::Int32)],
);

pub(super) static MICRO_TIME: Message = Message::new(
    META,
    "MicroTime",
    &[field(1, "seconds", Ty::Int64), field(2, "nanos", Ty::Int32)],
);

pub(super) static QUANTITY: Message = Message::new(
    "k8s.io.apimachinery.pkg.api.resource",
    "Quantity",
    &[field(1, "string", Ty::Str)],
);

pub(super) static INT_OR_STRING: Message = Message::new(
    "k8s.io.apimachinery.pkg.util.intstr",
    "IntOrString",
    &[
        field(1, "type", Ty::Int64),
        field(2, "intVal", Ty::Int32),
        field(3, "strVal", Ty::Str),
    ],
);

pub(super) static FIELDS_V1: Message = Message::new(META, "FieldsV1", &[field(1, "raw", Ty::Json)]);

// Protobuf maps are repeated entry messages (1 key, 2 value). The decoder reads an entry with
// these tables and puts `value` under `key`.

pub(super) static STRING_ENTRY: Message = Message::new(
    "",
    "map<string, string> entry",
    &[field(1, "key", Ty::Str), field(2, "value", Ty::Str)],
);

pub(super) static BYTES_ENTRY: Message = Message::new(
    "",
    "map<string, bytes> entry",
    &[field(1, "key", Ty::Str), field(2, "value", Ty::Bytes)],
);

pub(super) static QUANTITY_ENTRY: Message = Message::new(
    "",
    "map<string, Quantity> entry",
    &[field(1, "key", Ty::Str), field(2, "value", Ty::Quantity)],
);

pub(super) static STRINGS_ENTRY: Message = Message::new(
    "",
    "map<string, ExtraValue> entry",
    &[
        field(1, "key", Ty::Str),
        field(2, "value", Ty::Object(&EXTRA_VALUE)),
    ],
);

/// authentication/v1 ExtraValue and AttestationValue: a `[]string` wrapped in a message because
/// a protobuf map's value cannot be repeated.
static EXTRA_VALUE: Message = Message::new(
    AUTHENTICATION,
    "ExtraValue",
    &[field(1, "items", Ty::Strings)],
);
