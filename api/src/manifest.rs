//! Reading objects from Kubernetes-style YAML: several documents per file, separated by `---`.
//!
//! Each document is parsed twice: once as [`TypeMeta`] to learn its kind, then as that kind.
//! Both passes read the document text itself (not an intermediate tree), so every error keeps
//! the line and column where it happened and the path of the field (`spec.ports[0].port`).

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::{
    endpoint_slice::AddressType,
    meta::TypeMeta,
    pod::{validate_pod, Pod},
    service::{Protocol, Service, ServiceType, MAX_AFFINITY_TIMEOUT_SECONDS, NODE_PORT_RANGE},
    validation::{check, check_metadata, is_dns1123_label, NameRule},
    EndpointSlice,
};

/// One object read from a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    Service(Service),
    EndpointSlice(EndpointSlice),
    Pod(Box<Pod>),
}

/// A field keel read past without using it: accepted, but worth telling the author.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The line of the document the field is in.
    pub line: usize,
    /// `kind/name`, e.g. `Pod/web`.
    pub object: String,
    /// The field's path, e.g. `spec.containers[0].livenessProbe`.
    pub field: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "document at line {}: {}: unknown field {}, ignored",
            self.line, self.object, self.field
        )
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
    let mut objects = Vec::new();
    let mut warnings = Vec::new();
    for doc in split_documents(text) {
        if let Some(object) = parse_document(&doc, &mut warnings)? {
            objects.push(object);
        }
    }
    Ok((objects, warnings))
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
) -> Result<Option<Object>, ManifestError> {
    // Every pass parses the whole document, so the common case takes two: the kind, then the
    // object. A document without a kind is parsed a third time, to tell an empty one (only
    // comments: skipped) from a broken one.
    let type_meta = from_doc::<TypeMeta>(doc);
    let has_kind =
        matches!(&type_meta, Ok(meta) if !meta.kind.is_empty() || !meta.api_version.is_empty());
    if !has_kind && from_doc::<serde_yaml::Value>(doc)?.is_null() {
        return Ok(None);
    }
    let type_meta = type_meta?;
    let object = match (type_meta.kind.as_str(), type_meta.api_version.as_str()) {
        ("Service", "v1") => Object::Service(from_doc(doc)?),
        ("EndpointSlice", "discovery.k8s.io/v1") => Object::EndpointSlice(from_doc(doc)?),
        ("Pod", "v1") => Object::Pod(Box::new(pod_from_doc(doc, warnings)?)),
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
    validate(&object).map_err(|(field, message)| invalid(doc, &field, message))?;
    Ok(Some(object))
}

fn from_doc<T: DeserializeOwned>(doc: &Document) -> Result<T, ManifestError> {
    serde_yaml::from_str(&doc.text).map_err(|err| yaml_error(doc, err))
}

fn yaml_error(doc: &Document, err: serde_yaml::Error) -> ManifestError {
    let (line, column) = err.location().map_or((0, 0), |at| (at.line(), at.column()));
    // serde_yaml appends " at line L column C" relative to the document; the location is
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

/// A Pod, noting every field keel skipped (Kubernetes has many keel does not implement; a
/// silent skip would hide that a probe or volume is not in effect).
fn pod_from_doc(doc: &Document, warnings: &mut Vec<Warning>) -> Result<Pod, ManifestError> {
    let mut ignored = Vec::new();
    let deserializer = serde_yaml::Deserializer::from_str(&doc.text);
    let pod: Pod = serde_ignored::deserialize(deserializer, |path| {
        ignored.push(field_path(&path.to_string()))
    })
    .map_err(|err| yaml_error(doc, err))?;
    let object = format!("Pod/{}", pod.metadata.name);
    warnings.extend(
        ignored
            .into_iter()
            // apiVersion and kind were read by the first pass.
            .filter(|field| field != "apiVersion" && field != "kind" && field != "status")
            .map(|field| Warning {
                line: doc.first_line,
                object: object.clone(),
                field,
            }),
    );
    Ok(pod)
}

/// serde_ignored writes `spec.containers.0.x`; Kubernetes writes `spec.containers[0].x`.
fn field_path(dotted: &str) -> String {
    let mut path = String::new();
    for part in dotted.split('.') {
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

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: 10.96.0.10
  ports:
  - name: http
    port: 80
    targetPort: 8080
";

    const SLICE: &str = "\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
- name: http
  port: 8080
endpoints:
- addresses: [10.244.0.2]
  conditions: {ready: true}
- addresses: [10.244.0.3]
  conditions: {ready: false}
- addresses: [10.244.0.4]
";

    #[test]
    fn reads_several_documents() {
        let text = format!("{SERVICE}---\n{SLICE}---\n# only a comment\n");
        let objects = parse_manifests(&text).expect("valid manifests");
        assert_eq!(objects.len(), 2);
        let Object::EndpointSlice(slice) = &objects[1] else {
            panic!("second object should be a slice: {objects:?}");
        };
        let ready: Vec<bool> = slice
            .endpoints
            .iter()
            .map(|e| e.conditions.is_ready())
            .collect();
        // An absent `ready` means unknown, which consumers treat as ready.
        assert_eq!(ready, [true, false, true]);
        assert_eq!(slice.service_name(), Some("web"));
    }

    #[test]
    fn headless_service_has_no_cluster_ip() {
        let text = SERVICE.replace("10.96.0.10", "None");
        let objects = parse_manifests(&text).expect("valid manifest");
        let Object::Service(service) = &objects[0] else {
            panic!()
        };
        assert_eq!(service.spec.cluster_ip, None);
    }

    #[test]
    fn bad_field_names_file_line_and_field() {
        // The slice starts on line 12; its bad port is on line 11 of the slice.
        let text = format!(
            "{SERVICE}---\n{}",
            SLICE.replace("port: 8080", "port: eighty")
        );
        let err = parse_manifests(&text).expect_err("port is not a number");
        let ManifestError::Field { line, message, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*line, 21, "{err}");
        assert!(message.starts_with("ports[0].port"), "{message}");
    }

    #[test]
    fn bad_ip_is_rejected_with_its_line() {
        let text = SERVICE.replace("10.96.0.10", "10.96.0.300");
        let err = parse_manifests(&text).expect_err("bad IP");
        assert_eq!(err.line(), 6, "{err}");
        assert!(err.to_string().contains("spec.clusterIP"), "{err}");
    }

    #[test]
    fn broken_yaml_is_a_syntax_error() {
        let err = parse_manifests("kind: Service\n  metadata: [\n").expect_err("not YAML");
        assert!(err.line() >= 1, "{err}");
    }

    #[test]
    fn unknown_kind_and_version_are_named() {
        let err = parse_manifests("apiVersion: v1\nkind: Deployment\nmetadata: {name: x}\n")
            .expect_err("kind");
        assert!(err.to_string().contains("kind"), "{err}");
        let err = parse_manifests(&SERVICE.replace("apiVersion: v1", "apiVersion: v2"))
            .expect_err("version");
        assert!(err.to_string().contains("apiVersion"), "{err}");
    }

    #[test]
    fn session_affinity_defaults_and_limits() {
        let with = |extra: &str| format!("{SERVICE}  sessionAffinity: ClientIP\n{extra}");
        let objects = parse_manifests(&with("")).expect("valid");
        let Object::Service(service) = &objects[0] else {
            panic!()
        };
        assert_eq!(service.spec.affinity_timeout(), Some(10_800));
        let custom = with("  sessionAffinityConfig:\n    clientIP:\n      timeoutSeconds: 60\n");
        let Object::Service(service) = &parse_manifests(&custom).expect("valid")[0] else {
            panic!()
        };
        assert_eq!(service.spec.affinity_timeout(), Some(60));
        let Object::Service(plain) = &parse_manifests(SERVICE).expect("valid")[0] else {
            panic!()
        };
        assert_eq!(plain.spec.affinity_timeout(), None);

        let too_long =
            with("  sessionAffinityConfig:\n    clientIP:\n      timeoutSeconds: 86401\n");
        let err = parse_manifests(&too_long).expect_err("over a day");
        assert!(err.to_string().contains("timeoutSeconds"), "{err}");
        let bad = format!("{SERVICE}  sessionAffinity: Sticky\n");
        let err = parse_manifests(&bad).expect_err("unknown affinity");
        assert!(err.to_string().contains("sessionAffinity"), "{err}");
    }

    #[test]
    fn node_ports_need_the_type_and_the_range() {
        let node_port = SERVICE.replace(
            "    targetPort: 8080\n",
            "    targetPort: 8080\n    nodePort: 30080\n",
        );
        let err = parse_manifests(&node_port).expect_err("ClusterIP type");
        assert!(err.to_string().contains("spec.ports[0].nodePort"), "{err}");
        let typed = node_port.replace("spec:\n", "spec:\n  type: NodePort\n");
        let Object::Service(service) = &parse_manifests(&typed).expect("valid")[0] else {
            panic!()
        };
        assert_eq!(
            service.spec.ports[0].node_port.map(|p| p.get()),
            Some(30080)
        );
        let low = typed.replace("30080", "8080");
        assert!(parse_manifests(&low)
            .expect_err("range")
            .to_string()
            .contains("30000-32767"));
        let bad_type = typed.replace("type: NodePort", "type: Tunnel");
        assert!(parse_manifests(&bad_type)
            .expect_err("type")
            .to_string()
            .contains("type"));
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let two_ports = format!("{SERVICE}  - port: 81\n");
        let err = parse_manifests(&two_ports).expect_err("unnamed second port");
        assert!(err.to_string().contains("spec.ports[1].name"), "{err}");

        let unlabeled = SLICE.replace("  labels:\n    kubernetes.io/service-name: web\n", "");
        let err = parse_manifests(&unlabeled).expect_err("no service label");
        assert!(err.to_string().contains("metadata.labels"), "{err}");

        let zero = SERVICE.replace("port: 80\n", "port: 0\n");
        assert!(parse_manifests(&zero).is_err());
        let udp_sctp = SERVICE.replace("targetPort: 8080", "protocol: SCTP");
        assert!(parse_manifests(&udp_sctp)
            .expect_err("sctp")
            .to_string()
            .contains("protocol"));
    }

    /// Names end up in iptables comments, nft and ipvsadm input, DNS and file names: each
    /// field refuses what Kubernetes refuses, by path, with Kubernetes' words.
    #[test]
    fn hostile_names_are_refused_by_field() {
        let long = "a".repeat(300);
        let hostile = [
            "web\" -j ACCEPT",
            "web\n-A KUBE-SERVICES -j ACCEPT",
            "-j ACCEPT",
            long.as_str(),
            "wеb",
            "名前",
            "Web",
        ];
        for name in hostile {
            let quoted = format!("{name:?}");
            let cases = [
                (
                    SERVICE.replace("name: web\n", &format!("name: {quoted}\n")),
                    "metadata.name",
                ),
                (
                    SERVICE.replace(
                        "name: web\n",
                        &format!("name: web\n  namespace: {quoted}\n"),
                    ),
                    "metadata.namespace",
                ),
                (
                    SERVICE.replace(
                        "name: web\n",
                        &format!("name: web\n  labels: {{{quoted}: x}}\n"),
                    ),
                    "metadata.labels",
                ),
                (
                    SERVICE.replace(
                        "name: web\n",
                        &format!("name: web\n  labels: {{app: {quoted}}}\n"),
                    ),
                    "metadata.labels",
                ),
                (
                    SERVICE.replace("- name: http", &format!("- name: {quoted}")),
                    "spec.ports[0].name",
                ),
                (
                    SLICE.replace("name: web-1", &format!("name: {quoted}")),
                    "metadata.name",
                ),
            ];
            for (text, field) in cases {
                if name == "Web" && field == "metadata.labels" {
                    continue; // label keys and values may have capitals
                }
                let err = parse_manifests(&text).expect_err(field);
                let message = err.to_string();
                assert!(
                    message.contains(&format!("{field}: ")),
                    "{name:?} at {field}: {message}"
                );
                assert!(
                    !message.contains('\n'),
                    "one line whatever the name: {message:?}"
                );
            }
        }
        let err =
            parse_manifests(&SERVICE.replace("name: web\n", "name: 1web\n")).expect_err("dns-1035");
        assert!(
            err.to_string().contains(
                "metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case \
                 alphanumeric characters or '-', start with an alphabetic character, and end with an \
                 alphanumeric character"
            ),
            "{err}"
        );
    }
}
