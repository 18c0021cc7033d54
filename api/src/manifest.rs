//! Reading objects from Kubernetes-style YAML: several documents per file, separated by `---`.
//!
//! Each document is parsed twice: once as [`TypeMeta`] to learn its kind, then as that kind.
//! Both passes read the document text itself (not an intermediate tree), so every error keeps
//! the line and column where it happened and the path of the field (`spec.ports[0].port`).

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta as WireMeta;
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::{
    convert::ConvertError,
    endpoint_slice::AddressType,
    meta::TypeMeta,
    pod::{validate_pod, Pod},
    service::{Protocol, Service, ServiceType, MAX_AFFINITY_TIMEOUT_SECONDS, NODE_PORT_RANGE},
    validation::{check, check_metadata, is_dns1123_label, NameRule},
    EndpointSlice,
};

/// An object as Kubernetes defines it, every field kept: what keel read, and what it writes
/// back (to a mirror, to the API server). The `k8s-openapi` types, as kube-rs uses them.
#[derive(Clone, Debug, PartialEq)]
pub enum WireObject {
    Service(Box<k8s_openapi::api::core::v1::Service>),
    EndpointSlice(Box<k8s_openapi::api::discovery::v1::EndpointSlice>),
    Pod(Box<k8s_openapi::api::core::v1::Pod>),
}

impl WireObject {
    /// The object as JSON, `apiVersion` and `kind` included.
    pub fn to_json(&self) -> serde_json::Value {
        let value = match self {
            WireObject::Service(o) => serde_json::to_value(o.as_ref()),
            WireObject::EndpointSlice(o) => serde_json::to_value(o.as_ref()),
            WireObject::Pod(o) => serde_json::to_value(o.as_ref()),
        };
        // Serialising these types cannot fail (no maps with non-string keys).
        value.unwrap_or(serde_json::Value::Null)
    }
}

/// keel's model of one object: the fields keel acts on, validated. Derived from the
/// [`WireObject`] by one conversion per kind ([`crate::convert`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    Service(Service),
    EndpointSlice(EndpointSlice),
    Pod(Box<Pod>),
}

/// A field keel read past without using it: accepted, but worth telling the author.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// Whether Kubernetes knows the field (keel does not act on it) or nobody does (a typo).
    pub unknown_to_kubernetes: bool,
    /// The line of the document the field is in.
    pub line: usize,
    /// `kind/name`, e.g. `Pod/web`.
    pub object: String,
    /// The field's path, e.g. `spec.containers[0].livenessProbe`.
    pub field: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.unknown_to_kubernetes {
            write!(
                f,
                "document at line {}: {}: unknown field {}, ignored",
                self.line, self.object, self.field
            )
        } else {
            write!(
                f,
                "document at line {}: {}: field {} is kept, but keel does not act on it",
                self.line, self.object, self.field
            )
        }
    }
}

/// Why a manifest was rejected. Lines are 1-based and count from the start of the file.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ManifestError {
    /// The YAML does not parse, or a field has the wrong type or value. `message` starts
    /// with the field's path when serde knows it.
    #[error("line {line}, column {column}: {message}")]
    Field {
        line: usize,
        column: usize,
        message: String,
    },
    /// The document parsed but says something keel cannot accept.
    #[error("document at line {line}: {field}: {message}")]
    Invalid {
        line: usize,
        field: String,
        message: String,
    },
}

impl ManifestError {
    /// The line the error points at.
    pub fn line(&self) -> usize {
        match self {
            ManifestError::Field { line, .. } | ManifestError::Invalid { line, .. } => *line,
        }
    }
}

/// Parses every document of `text`. Empty documents are skipped. The first error rejects the
/// whole text: a half-applied file is worse than a rejected one.
pub fn parse_manifests(text: &str) -> Result<Vec<Object>, ManifestError> {
    parse_manifests_with_warnings(text).map(|(objects, _)| objects)
}

/// [`parse_manifests`], also returning the fields of Pods that keel ignored.
pub fn parse_manifests_with_warnings(
    text: &str,
) -> Result<(Vec<Object>, Vec<Warning>), ManifestError> {
    let (parsed, warnings) = parse_manifests_full(text)?;
    Ok((
        parsed.into_iter().map(|(_, object)| object).collect(),
        warnings,
    ))
}

/// What a manifest holds: each object as Kubernetes' (all its fields) and as keel's model,
/// and the warnings.
pub type Parsed = (Vec<(WireObject, Object)>, Vec<Warning>);

/// Every document of `text` as Kubernetes' object and as keel's model, with the warnings.
pub fn parse_manifests_full(text: &str) -> Result<Parsed, ManifestError> {
    let mut objects = Vec::new();
    let mut warnings = Vec::new();
    for doc in split_documents(text) {
        if let Some(object) = parse_document(&doc, &mut warnings)? {
            objects.push(object);
        }
    }
    Ok((objects, warnings))
}

/// keel's model of an object that came from an API server rather than a file: the same
/// conversion and validation as a manifest's, so the node acts on API objects exactly as on
/// files. Errors name the field; there is no text, so their line is 1.
pub fn model_of(wire: &WireObject) -> Result<Object, ManifestError> {
    // Converted straight from the wire object: no text is made of it.
    let doc = Document {
        first_line: 1,
        text: String::new(),
    };
    let object = match wire {
        WireObject::Service(o) => Object::Service(
            Service::try_from(o.as_ref()).map_err(|e| invalid(&doc, &e.field, e.message))?,
        ),
        WireObject::EndpointSlice(o) => Object::EndpointSlice(
            EndpointSlice::try_from(o.as_ref()).map_err(|e| invalid(&doc, &e.field, e.message))?,
        ),
        WireObject::Pod(o) => Object::Pod(Box::new(
            Pod::try_from(o.as_ref()).map_err(|e| invalid(&doc, &e.field, e.message))?,
        )),
    };
    validate(&object).map_err(|(field, message)| invalid(&doc, &field, message))?;
    Ok(object)
}

/// One YAML document and the file line its first line is on.
struct Document {
    first_line: usize,
    text: String,
}

/// Splits on `---` document markers. Kubernetes manifests never use a marker inside a block
/// scalar, so a line-based split is exact for them and keeps line numbers trivially right.
fn split_documents(text: &str) -> Vec<Document> {
    let mut docs = vec![Document {
        first_line: 1,
        text: String::new(),
    }];
    for (index, line) in text.lines().enumerate() {
        if line == "---" || line.starts_with("--- ") {
            docs.push(Document {
                first_line: index + 2,
                text: String::new(),
            });
            continue;
        }
        if let Some(doc) = docs.last_mut() {
            doc.text.push_str(line);
            doc.text.push('\n');
        }
    }
    docs
}

fn parse_document(
    doc: &Document,
    warnings: &mut Vec<Warning>,
) -> Result<Option<(WireObject, Object)>, ManifestError> {
    // Every pass parses the whole document, so the common case takes two: the kind, then the
    // object. A document without a kind is parsed a third time, to tell an empty one (only
    // comments: skipped) from a broken one.
    // Block-style documents (all that kubectl and people write) name their kind on top-level
    // lines: read there, it spares a whole YAML pass. Anything else takes the parser.
    let type_meta = match quick_type_meta(&doc.text) {
        Some(meta) => Ok(meta),
        None => from_doc::<TypeMeta>(doc),
    };
    let has_kind =
        matches!(&type_meta, Ok(meta) if !meta.kind.is_empty() || !meta.api_version.is_empty());
    if !has_kind && from_doc::<serde_yaml_ng::Value>(doc)?.is_null() {
        return Ok(None);
    }
    let type_meta = type_meta?;
    let parsed = match (type_meta.kind.as_str(), type_meta.api_version.as_str()) {
        ("Service", "v1") => {
            let wire: k8s_openapi::api::core::v1::Service =
                wire_from_doc(doc, "Service", warnings)?;
            let model = Service::try_from(&wire).map_err(|e| refused(doc, e))?;
            (WireObject::Service(Box::new(wire)), Object::Service(model))
        }
        ("EndpointSlice", "discovery.k8s.io/v1") => {
            let wire: k8s_openapi::api::discovery::v1::EndpointSlice =
                wire_from_doc(doc, "EndpointSlice", warnings)?;
            let model = EndpointSlice::try_from(&wire).map_err(|e| refused(doc, e))?;
            (
                WireObject::EndpointSlice(Box::new(wire)),
                Object::EndpointSlice(model),
            )
        }
        ("Pod", "v1") => {
            let wire: k8s_openapi::api::core::v1::Pod = wire_from_doc(doc, "Pod", warnings)?;
            let model = Pod::try_from(&wire).map_err(|e| refused(doc, e))?;
            let object = format!("Pod/{}", model.metadata.name);
            warnings.extend(
                crate::convert::pod_fields::fields_not_acted_on(&wire)
                    .into_iter()
                    .map(|field| Warning {
                        unknown_to_kubernetes: false,
                        line: doc.first_line,
                        object: object.clone(),
                        field,
                    }),
            );
            crate::volume::check_static(&model.spec.volumes)
                .map_err(|(field, message)| invalid(doc, &field, message))?;
            (
                WireObject::Pod(Box::new(wire)),
                Object::Pod(Box::new(model)),
            )
        }
        ("Service" | "EndpointSlice" | "Pod", other) => {
            return Err(invalid(
                doc,
                "apiVersion",
                format!(
                    "{other:?} is not a version keel reads for {}",
                    type_meta.kind
                ),
            ))
        }
        ("", _) => return Err(invalid(doc, "kind", "missing".into())),
        (other, _) => {
            return Err(invalid(
                doc,
                "kind",
                format!("{other:?} is not supported (keel reads Service, EndpointSlice and Pod)"),
            ))
        }
    };
    validate(&parsed.1).map_err(|(field, message)| invalid(doc, &field, message))?;
    Ok(Some(parsed))
}

/// `apiVersion` and `kind` from a document's top-level lines (`kind: Service` at column 0),
/// when both are there as plain words; `None` leaves the document to the YAML parser (flow
/// style, quotes, anchors, a missing field: whatever is unusual is the parser's to judge).
fn quick_type_meta(text: &str) -> Option<TypeMeta> {
    let (mut api_version, mut kind) = (None, None);
    for line in text.lines() {
        let (field, value) = if let Some(value) = line.strip_prefix("apiVersion:") {
            (&mut api_version, value.trim())
        } else if let Some(value) = line.strip_prefix("kind:") {
            (&mut kind, value.trim())
        } else {
            continue;
        };
        let plain = !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b'-'));
        if !plain || field.is_some() {
            return None; // quoted, commented, anchored, or named twice
        }
        *field = Some(value.to_owned());
    }
    Some(TypeMeta {
        api_version: api_version?,
        kind: kind?,
    })
}

/// The document as Kubernetes' type, read from the text itself (so a wrong type is reported
/// at its line and column, with its path). A field Kubernetes does not define is a warning
/// (as `fieldValidation=Warn`), never silently dropped.
fn wire_from_doc<T>(
    doc: &Document,
    kind: &str,
    warnings: &mut Vec<Warning>,
) -> Result<T, ManifestError>
where
    T: DeserializeOwned + k8s_openapi::Metadata<Ty = WireMeta>,
{
    let mut unknown = Vec::new();
    let deserializer = serde_yaml_ng::Deserializer::from_str(&doc.text);
    let wire: T = serde_ignored::deserialize(deserializer, |path| {
        unknown.push(field_path(&path.to_string()))
    })
    .map_err(|err| yaml_error(doc, err))?;
    let object = format!("{kind}/{}", wire.metadata().name.as_deref().unwrap_or(""));
    warnings.extend(unknown.into_iter().map(|field| Warning {
        unknown_to_kubernetes: true,
        line: doc.first_line,
        object: object.clone(),
        field,
    }));
    Ok(wire)
}

fn from_doc<T: DeserializeOwned>(doc: &Document) -> Result<T, ManifestError> {
    serde_yaml_ng::from_str(&doc.text).map_err(|err| yaml_error(doc, err))
}

fn yaml_error(doc: &Document, err: serde_yaml_ng::Error) -> ManifestError {
    let (line, column) = err.location().map_or((0, 0), |at| (at.line(), at.column()));
    // serde_yaml_ng appends " at line L column C" relative to the document; the location is
    // re-stated relative to the file instead.
    let text = err.to_string();
    let message = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(message, _)| message)
        .to_owned();
    ManifestError::Field {
        line: doc.first_line + line.saturating_sub(1),
        column,
        message,
    }
}

/// serde_ignored writes `spec.containers.0.x` (and `?` for an `Option`'s content);
/// Kubernetes writes `spec.containers[0].x`.
fn field_path(dotted: &str) -> String {
    let mut path = String::new();
    for part in dotted.split('.').filter(|p| *p != "?") {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            path.push_str(&format!("[{part}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(part);
        }
    }
    path
}

/// A value the conversion refused, at its line when the document's text has the field (a
/// manifest), else at the document's.
fn refused(doc: &Document, error: ConvertError) -> ManifestError {
    match locate::locate(&doc.text, &error.field) {
        Some((line, column)) => ManifestError::Field {
            line: doc.first_line + line.saturating_sub(1),
            column,
            message: error.to_string(),
        },
        None => invalid(doc, &error.field, error.message),
    }
}

fn invalid(doc: &Document, field: &str, message: String) -> ManifestError {
    ManifestError::Invalid {
        line: doc.first_line,
        field: field.to_owned(),
        message,
    }
}

/// Checks what types cannot: names that must be unique, combinations keel does not support.
/// Returns the field path and the reason.
fn validate(object: &Object) -> Result<(), (String, String)> {
    match object {
        Object::Service(service) => validate_service(service),
        Object::EndpointSlice(slice) => validate_slice(slice),
        Object::Pod(pod) => validate_pod(pod),
    }
}

fn validate_service(service: &Service) -> Result<(), (String, String)> {
    // Service names become DNS names and environment variable prefixes: DNS-1035 labels.
    check_metadata(&service.metadata, NameRule::Dns1035Label)?;
    let ports = &service.spec.ports;
    if service.spec.cluster_ip.is_some() && ports.is_empty() {
        return Err((
            "spec.ports".into(),
            "a service with a clusterIP needs at least one port".into(),
        ));
    }
    if let Some(timeout) = service.spec.affinity_timeout() {
        if timeout == 0 || timeout > MAX_AFFINITY_TIMEOUT_SECONDS {
            return Err((
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds".into(),
                format!("{timeout} is outside 1..={MAX_AFFINITY_TIMEOUT_SECONDS}"),
            ));
        }
    }
    let mut names = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        if !port.name.is_empty() {
            check(
                &format!("spec.ports[{i}].name"),
                &port.name,
                is_dns1123_label(&port.name),
            )?;
        }
        if ports.len() > 1 && port.name.is_empty() {
            return Err((
                format!("spec.ports[{i}].name"),
                "required when a service has more than one port".into(),
            ));
        }
        if !names.insert(port.name.as_str()) {
            return Err((
                format!("spec.ports[{i}].name"),
                format!("duplicate port name {:?}", port.name),
            ));
        }
        if !numbers.insert((port.port, port.protocol)) {
            return Err((
                format!("spec.ports[{i}].port"),
                format!("duplicate port {}/{}", port.port, port.protocol),
            ));
        }
        if let Some(node_port) = port.node_port {
            if service.spec.service_type == ServiceType::ClusterIP {
                return Err((
                    format!("spec.ports[{i}].nodePort"),
                    "needs spec.type NodePort or LoadBalancer".into(),
                ));
            }
            if !NODE_PORT_RANGE.contains(&node_port.get()) {
                return Err((
                    format!("spec.ports[{i}].nodePort"),
                    format!(
                        "{node_port} is outside {}-{}",
                        NODE_PORT_RANGE.start(),
                        NODE_PORT_RANGE.end()
                    ),
                ));
            }
        }
        if port.protocol == Protocol::Sctp {
            return Err((
                format!("spec.ports[{i}].protocol"),
                "SCTP is not supported by keel".into(),
            ));
        }
    }
    Ok(())
}

fn validate_slice(slice: &EndpointSlice) -> Result<(), (String, String)> {
    check_metadata(&slice.metadata, NameRule::Dns1123Subdomain)?;
    for (i, port) in slice.ports.iter().enumerate() {
        if !port.name.is_empty() {
            check(
                &format!("ports[{i}].name"),
                &port.name,
                is_dns1123_label(&port.name),
            )?;
        }
    }
    if slice.service_name().is_none() {
        return Err((
            "metadata.labels".into(),
            format!(
                "needs the label {:?} naming its service",
                crate::endpoint_slice::SERVICE_NAME_LABEL
            ),
        ));
    }
    if slice.address_type != AddressType::IPv4 {
        return Err((
            "addressType".into(),
            "only IPv4 is supported by keel".into(),
        ));
    }
    for (i, endpoint) in slice.endpoints.iter().enumerate() {
        if endpoint.addresses.is_empty() {
            return Err((
                format!("endpoints[{i}].addresses"),
                "must not be empty".into(),
            ));
        }
    }
    Ok(())
}

mod locate;

#[cfg(test)]
mod tests;
