//! Reading a request body into an object of the resource's kind, and the metadata the server
//! owns: what create sets, what update keeps, what every write validates.

use serde_json::{Map, Value};

use crate::resources::ResourceInfo;
use crate::status::{ApiError, Cause};
use keel_api::validation::{
    self, validate_annotations, validate_labels, validate_namespace_name, validate_object_name,
    FieldError,
};

/// What to do with fields the schema does not have (the `fieldValidation` parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

impl FieldValidation {
    pub fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            // kube-apiserver's default since 1.27.
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Strict") => Ok(Self::Strict),
            Some("Ignore") => Ok(Self::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}; must be one of Ignore, Warn, Strict"
            ))),
        }
    }
}

/// The request body as JSON (or YAML, by content type), with the duplicate keys it had.
pub struct Body {
    pub value: Value,
    pub duplicates: Vec<String>,
}

/// Parses a body; `content_type` is the request's media type without parameters.
pub fn parse_body(bytes: &[u8], content_type: &str) -> Result<Body, ApiError> {
    // kubectl's typed clients (`kubectl create namespace`, `create rolebinding`, `auth
    // can-i`, …) send Kubernetes protobuf and do not fall back to JSON: it is decoded into
    // the JSON it stands for, for the kinds keel serves. CBOR is refused with 415, after
    // which client-go retries in JSON.
    if content_type == "application/vnd.kubernetes.protobuf" {
        let value = crate::protobuf::decode(bytes).map_err(|e| {
            ApiError::bad_request(format!("the protobuf body could not be decoded: {e}"))
        })?;
        return Ok(Body {
            value,
            duplicates: Vec::new(),
        });
    }
    if !matches!(
        content_type,
        "application/json" | "application/yaml" | "application/apply-patch+yaml" | "*/*" | ""
    ) {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let value: Value = match content_type {
        "application/yaml" | "application/apply-patch+yaml" => {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| ApiError::bad_request(format!("the body is not valid UTF-8: {e}")))?;
            serde_yaml_ng::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))?
        }
        _ => {
            let (value, duplicates) = crate::duplicates::parse(bytes).map_err(|e| {
                ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
            })?;
            return Ok(Body { value, duplicates });
        }
    };
    let duplicates = Vec::new();
    Ok(Body { value, duplicates })
}

/// Checks `apiVersion`/`kind` against the resource and fills them in where absent.
pub fn check_type(info: &ResourceInfo, object: &mut Value) -> Result<(), ApiError> {
    let api_version = info.api_version();
    let Some(map) = object.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "the body must be a JSON object (a {})",
            info.kind
        )));
    };
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), Value::String(api_version));
        }
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )))
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), Value::String(info.kind.into()));
        }
        Some(k) if k == info.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                info.kind
            )))
        }
    }
    Ok(())
}

/// Decodes through the kind's schema; unknown and duplicate fields are refused, reported as
/// warnings, or ignored by `validation`. Returns the object and the warnings to send.
pub fn decode(
    info: &ResourceInfo,
    object: Value,
    duplicates: &[String],
    validation: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let decoded = (info.decode)(object).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {} at {}",
            info.kind,
            info.version,
            info.kind,
            e.message,
            if e.path.is_empty() { "." } else { &e.path }
        ))
    })?;
    let mut warnings = Vec::new();
    match validation {
        FieldValidation::Strict if !decoded.unknown.is_empty() || !duplicates.is_empty() => {
            return Err(ApiError::strict_decoding(&decoded.unknown, duplicates));
        }
        FieldValidation::Warn => {
            warnings.extend(
                decoded
                    .unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\"")),
            );
            warnings.extend(
                duplicates
                    .iter()
                    .map(|f| format!("duplicate field \"{f}\"")),
            );
        }
        _ => {}
    }
    Ok((decoded.object, warnings))
}

pub fn meta(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata").and_then(Value::as_object)
}

pub fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = Value::Object(Map::new());
    }
    match object.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(m) => m,
        None => unreachable!("metadata was just made an object"),
    }
}

/// The bytes of a `[]byte` field (base64 in JSON: a Secret's data, a certificate request).
pub fn bytes_of(value: Option<&Value>) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let text = value?.as_str()?;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    meta(object)?.get(field)?.as_str()
}

pub fn name_of(object: &Value) -> &str {
    meta_str(object, "name").unwrap_or("")
}

/// `metadata.resourceVersion` as the store revision it is; a value that is not a number is a
/// client error naming the field.
pub fn resource_version(object: &Value) -> Result<Option<i64>, ApiError> {
    match meta_str(object, "resourceVersion") {
        None | Some("") => Ok(None),
        Some(text) => text.parse::<i64>().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "metadata.resourceVersion: Invalid value: {text:?}: must be the resourceVersion of the object being updated"
            ))
        }),
    }
}

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// generateName's suffix: five characters from the alphabet Kubernetes uses (no vowels, no
/// look-alikes), so generated names never spell words.
pub fn generated_suffix() -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes
        .iter()
        .take(5)
        .map(|b| NAME_CHARS[*b as usize % NAME_CHARS.len()] as char)
        .collect()
}

pub fn now_rfc3339() -> String {
    rfc3339(jiff::Timestamp::now())
}

/// `at` as kube writes a `metav1.Time`: RFC 3339 in UTC, whole seconds, `Z`.
pub fn rfc3339(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn causes(errors: Vec<FieldError>) -> Vec<Cause> {
    errors
        .into_iter()
        .map(|e| {
            let text = e.to_string();
            let message = text
                .strip_prefix(&format!("{}: ", e.field))
                .unwrap_or(&text)
                .to_owned();
            Cause {
                reason: match e.kind {
                    validation::ErrorType::Required => "FieldValueRequired",
                    validation::ErrorType::TooLong => "FieldValueTooLong",
                    validation::ErrorType::Invalid => "FieldValueInvalid",
                },
                message,
                field: e.field,
            }
        })
        .collect()
}

fn string_map(value: Option<&Value>) -> std::collections::BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// ObjectMeta as kube-apiserver validates it on every write: the name by the kind's rule,
/// the namespace, labels and annotations.
pub fn validate_meta(info: &ResourceInfo, object: &Value) -> Result<(), ApiError> {
    let name = name_of(object);
    let mut errors = validate_object_name("metadata.name", name, info.name_rule);
    if info.namespaced {
        errors.extend(validate_namespace_name(
            "metadata.namespace",
            meta_str(object, "namespace").unwrap_or(""),
        ));
    }
    let metadata = meta(object);
    errors.extend(validate_labels(
        "metadata.labels",
        &string_map(metadata.and_then(|m| m.get("labels"))),
    ));
    errors.extend(validate_annotations(
        "metadata.annotations",
        &string_map(metadata.and_then(|m| m.get("annotations"))),
    ));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(info, name, causes(errors)))
    }
}

/// Sets what the server owns on create: name from generateName, namespace, uid,
/// creationTimestamp, generation; clears what a client may not set.
pub fn prepare_create(
    info: &ResourceInfo,
    object: &mut Value,
    namespace: Option<&str>,
) -> Result<(), ApiError> {
    let has_generation = info.has_generation;
    let meta = meta_mut(object);
    let name_empty = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty();
    if name_empty {
        if let Some(prefix) = meta.get("generateName").and_then(Value::as_str) {
            if !prefix.is_empty() {
                let name = format!("{prefix}{}", generated_suffix());
                meta.insert("name".into(), Value::String(name));
            }
        }
    }
    if info.namespaced {
        let body_ns = meta.get("namespace").and_then(Value::as_str).unwrap_or("");
        let url_ns = namespace.unwrap_or("");
        if !body_ns.is_empty() && body_ns != url_ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        meta.insert("namespace".into(), Value::String(url_ns.to_owned()));
    } else {
        meta.remove("namespace");
    }
    meta.insert(
        "uid".into(),
        Value::String(uuid::Uuid::new_v4().to_string()),
    );
    meta.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
    for field in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    ] {
        meta.remove(field);
    }
    if has_generation {
        meta.insert("generation".into(), Value::from(1));
    } else {
        meta.remove("generation");
    }
    Ok(())
}

/// Carries the server-owned metadata of `old` into `new` on update, and bumps the
/// generation when the spec changed.
pub fn carry_over(info: &ResourceInfo, old: &Value, new: &mut Value) {
    let old_meta = meta(old).cloned().unwrap_or_default();
    let spec_changed = old.get("spec") != new.get("spec");
    let meta = meta_mut(new);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
        "generateName",
    ] {
        match old_meta.get(field) {
            Some(v) => {
                meta.insert(field.into(), v.clone());
            }
            None => {
                meta.remove(field);
            }
        }
    }
    // Who owns which field is the server's record: a write keeps it, and the field manager
    // (rest/field_manager.rs) then updates it for the write's own changes.
    match old_meta.get("managedFields") {
        Some(fields) => {
            meta.insert("managedFields".into(), fields.clone());
        }
        None => {
            meta.remove("managedFields");
        }
    }
    meta.remove("selfLink");
    if info.has_generation {
        let generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let next = if spec_changed {
            generation + 1
        } else {
            generation
        };
        meta.insert("generation".into(), Value::from(next));
    } else {
        meta.remove("generation");
    }
}

/// The bytes stored: the object without its resourceVersion (the store's revision is the
/// truth; kube-apiserver stores it cleared too).
pub fn to_stored(object: &Value) -> Result<Vec<u8>, ApiError> {
    let written = match object.as_object() {
        // Serialized as it stands, leaving the revision out on the way: a copy of the object
        // only to remove one field was a tenth of a create's CPU.
        Some(fields) if fields.get("metadata").is_some_and(Value::is_object) => {
            serde_json::to_vec(&WithoutResourceVersion(fields))
        }
        // No metadata object (validation refuses such objects before they are stored): the
        // stored form gets an empty one.
        _ => {
            let mut copy = object.clone();
            meta_mut(&mut copy).remove("resourceVersion");
            serde_json::to_vec(&copy)
        }
    };
    written.map_err(|e| ApiError::internal(e.to_string()))
}

/// An object's fields, serialized with `metadata.resourceVersion` left out.
struct WithoutResourceVersion<'v>(&'v Map<String, Value>);

impl serde::Serialize for WithoutResourceVersion<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut fields = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            match value {
                Value::Object(metadata) if name == "metadata" => {
                    fields.serialize_entry(name, &MetadataWithoutResourceVersion(metadata))?
                }
                _ => fields.serialize_entry(name, value)?,
            }
        }
        fields.end()
    }
}

struct MetadataWithoutResourceVersion<'v>(&'v Map<String, Value>);

impl serde::Serialize for MetadataWithoutResourceVersion<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let kept = self.0.len() - usize::from(self.0.contains_key("resourceVersion"));
        let mut fields = serializer.serialize_map(Some(kept))?;
        for (name, value) in self.0.iter().filter(|(name, _)| *name != "resourceVersion") {
            fields.serialize_entry(name, value)?;
        }
        fields.end()
    }
}

pub fn with_revision(mut object: Value, revision: i64) -> Value {
    meta_mut(&mut object).insert(
        "resourceVersion".into(),
        Value::String(revision.to_string()),
    );
    object
}

/// Whether `new`, given `revision` as its resourceVersion, equals `old`: an update that
/// changes nothing (kube writes nothing then). Compared in place: the copy of `new` it
/// replaced was a whole object cloned for every update.
pub fn unchanged_at(new: &Value, old: &Value, revision: i64) -> bool {
    let (Some(new), Some(old)) = (new.as_object(), old.as_object()) else {
        return false;
    };
    if new.len() != old.len()
        || !new
            .iter()
            .filter(|(key, _)| *key != "metadata")
            .all(|(key, value)| old.get(key) == Some(value))
    {
        return false;
    }
    let (Some(new_meta), Some(old_meta)) = (
        new.get("metadata").and_then(Value::as_object),
        old.get("metadata").and_then(Value::as_object),
    ) else {
        return false;
    };
    let revision = revision.to_string();
    if old_meta.get("resourceVersion").and_then(Value::as_str) != Some(revision.as_str()) {
        return false;
    }
    let others =
        |meta: &Map<String, Value>| meta.len() - usize::from(meta.contains_key("resourceVersion"));
    others(new_meta) == others(old_meta)
        && new_meta
            .iter()
            .filter(|(key, _)| *key != "resourceVersion")
            .all(|(key, value)| old_meta.get(key) == Some(value))
}

/// A namespace's `spec.finalizers`: the controllers that must empty it before it goes.
pub fn namespace_finalizers(namespace: &Value) -> Vec<&str> {
    namespace
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The finalizers of an object.
pub fn finalizers(object: &Value) -> Vec<String> {
    meta(object)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup;
    use serde_json::json;

    #[test]
    fn an_update_is_unchanged_only_if_all_but_its_revision_is_equal() {
        let old = json!({"metadata": {"name": "p", "resourceVersion": "7", "labels": {"a": "1"}},
            "spec": {"nodeName": "n1"}});
        // The object as read, its revision dropped or kept: nothing to write.
        let mut same = old.clone();
        meta_mut(&mut same).remove("resourceVersion");
        assert!(unchanged_at(&same, &old, 7));
        assert!(unchanged_at(&old, &old, 7));
        // A stale revision in the client's copy is not a change either (the write's
        // precondition is checked apart).
        let mut stale = old.clone();
        meta_mut(&mut stale).insert("resourceVersion".into(), json!("3"));
        assert!(unchanged_at(&stale, &old, 7));
        // Read at another revision than the old object says: a change.
        assert!(!unchanged_at(&same, &old, 8));
        // A field changed, added or dropped, in metadata or beside it.
        let mut label = same.clone();
        label["metadata"]["labels"]["a"] = json!("2");
        assert!(!unchanged_at(&label, &old, 7));
        let mut annotated = same.clone();
        annotated["metadata"]["annotations"] = json!({});
        assert!(!unchanged_at(&annotated, &old, 7));
        let mut unlabelled = same.clone();
        meta_mut(&mut unlabelled).remove("labels");
        assert!(!unchanged_at(&unlabelled, &old, 7));
        let mut status = same.clone();
        status["status"] = json!({});
        assert!(!unchanged_at(&status, &old, 7));
        let mut spec = same.clone();
        spec["spec"] = json!({"nodeName": "n2"});
        assert!(!unchanged_at(&spec, &old, 7));
        // Not objects, or without metadata: never taken for unchanged.
        assert!(!unchanged_at(&json!([]), &old, 7));
        assert!(!unchanged_at(
            &json!({"spec": {"nodeName": "n1"}, "x": 1}),
            &old,
            7
        ));
    }

    #[test]
    fn create_sets_server_fields_and_refuses_a_foreign_namespace() {
        let pods = lookup("", "v1", "pods").expect("served");
        let mut pod =
            json!({"metadata": {"generateName": "web-", "resourceVersion": "9", "uid": "mine"}});
        prepare_create(pods, &mut pod, Some("default")).expect("prepared");
        let name = name_of(&pod);
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        assert_eq!(meta_str(&pod, "namespace"), Some("default"));
        assert_ne!(meta_str(&pod, "uid"), Some("mine"));
        assert_eq!(meta_str(&pod, "resourceVersion"), None);
        assert_eq!(pod["metadata"]["generation"], 1);
        let mut other = json!({"metadata": {"name": "a", "namespace": "kube-system"}});
        let error = prepare_create(pods, &mut other, Some("default")).expect_err("refused");
        assert_eq!(error.code, 400);
    }

    #[test]
    fn hostile_names_are_invalid_with_their_field() {
        let services = lookup("", "v1", "services").expect("served");
        for name in ["a\"b", "x\n-j ACCEPT", &"a".repeat(300), "ünï", "UPPER", ""] {
            let object = json!({"metadata": {"name": name, "namespace": "default"}});
            let error = validate_meta(services, &object).expect_err("refused");
            assert_eq!(error.code, 422, "{name:?}");
            let cause = &error.details.as_ref().expect("details")["causes"][0];
            assert_eq!(cause["field"], "metadata.name", "{name:?}");
        }
        let object =
            json!({"metadata": {"name": "ok", "namespace": "default", "labels": {"a b": "c"}}});
        let error = validate_meta(services, &object).expect_err("label refused");
        assert_eq!(
            error.details.expect("details")["causes"][0]["field"],
            "metadata.labels"
        );
    }

    #[test]
    fn the_stored_form_is_the_object_without_its_resource_version() {
        // What to_stored wrote when it removed the field from a copy.
        let by_copy = |object: &Value| {
            let mut copy = object.clone();
            meta_mut(&mut copy).remove("resourceVersion");
            serde_json::to_vec(&copy).expect("serialized")
        };
        let objects = [
            json!({"kind": "Pod", "metadata": {"name": "p", "resourceVersion": "42", "uid": "u"},
                   "spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "resourceVersion"}]}]}}),
            // Only metadata's resourceVersion goes, not a field of that name elsewhere.
            json!({"metadata": {"name": "p"}, "spec": {"resourceVersion": "1"}, "resourceVersion": "2"}),
            json!({"metadata": {"resourceVersion": "7"}}),
            json!({"metadata": {}, "data": {"k": "\"quoted\"\n\u{1}"}, "n": 1.5e300, "m": -3}),
            json!({"metadata": "not an object", "spec": {}}),
            json!({"spec": {}}),
            json!({}),
        ];
        for object in &objects {
            let stored = to_stored(object).expect("stored");
            assert_eq!(
                String::from_utf8_lossy(&stored),
                String::from_utf8_lossy(&by_copy(object)),
                "{object}"
            );
            let back: Value = serde_json::from_slice(&stored).expect("JSON");
            assert!(back["metadata"].get("resourceVersion").is_none(), "{back}");
        }
        // The object itself is left as it was.
        assert_eq!(objects[0]["metadata"]["resourceVersion"], "42");
    }

    #[test]
    fn generation_moves_with_the_spec_only() {
        let deployments = lookup("apps", "v1", "deployments").expect("served");
        let old = json!({"metadata": {"name": "d", "uid": "u", "generation": 3, "creationTimestamp": "t"}, "spec": {"replicas": 1}});
        let mut same =
            json!({"metadata": {"name": "d", "labels": {"a": "b"}}, "spec": {"replicas": 1}});
        carry_over(deployments, &old, &mut same);
        assert_eq!(same["metadata"]["generation"], 3);
        assert_eq!(same["metadata"]["uid"], "u");
        let mut changed =
            json!({"metadata": {"name": "d", "uid": "forged"}, "spec": {"replicas": 2}});
        carry_over(deployments, &old, &mut changed);
        assert_eq!(changed["metadata"]["generation"], 4);
        assert_eq!(changed["metadata"]["uid"], "u");
    }
}
