//! The fields of a wire Pod that the conversion ([`super::pod`]) reads past: Kubernetes
//! defines them, keel keeps them on the wire object but does not act on them (a `lifecycle`
//! hook, `tolerations`, an env `valueFrom`…). A manifest names them, so that a hook or a
//! probe that is not in effect is never silent.
//!
//! The list is explicit: `READ` is the tree of fields the conversion reads, kept next to
//! it; every field of the wire object outside that tree is reported, with its path.

use k8s_openapi::api::core::v1 as wire;
use serde_json::Value;

/// How much of a field the conversion reads: all of it, or only the listed sub-fields
/// (lists are walked element by element with the same sub-fields).
enum Read {
    All,
    Only(Tree),
}

type Tree = &'static [(&'static str, Read)];

use Read::{All as ALL, Only};

const SECCOMP: (&str, Read) = ("seccompProfile", ALL);

const PROBE: Read = Only(&[
    (
        "httpGet",
        Only(&[
            ("path", ALL),
            ("port", ALL),
            ("host", ALL),
            ("scheme", ALL),
            ("httpHeaders", ALL),
        ]),
    ),
    ("tcpSocket", ALL),
    ("exec", ALL),
    ("grpc", Only(&[("port", ALL), ("service", ALL)])),
    ("initialDelaySeconds", ALL),
    ("periodSeconds", ALL),
    ("timeoutSeconds", ALL),
    ("successThreshold", ALL),
    ("failureThreshold", ALL),
]);

const RESOURCES: Read = Only(&[("cpu", ALL), ("memory", ALL)]);

const CONTAINER: Read = Only(&[
    ("name", ALL),
    ("image", ALL),
    ("command", ALL),
    ("args", ALL),
    ("env", Only(&[("name", ALL), ("value", ALL)])),
    ("workingDir", ALL),
    (
        "ports",
        Only(&[("name", ALL), ("containerPort", ALL), ("protocol", ALL)]),
    ),
    (
        "resources",
        Only(&[("requests", RESOURCES), ("limits", RESOURCES)]),
    ),
    (
        "securityContext",
        Only(&[
            ("runAsUser", ALL),
            ("runAsGroup", ALL),
            ("runAsNonRoot", ALL),
            SECCOMP,
            ("privileged", ALL),
            ("allowPrivilegeEscalation", ALL),
            ("readOnlyRootFilesystem", ALL),
            ("capabilities", ALL),
        ]),
    ),
    ("imagePullPolicy", ALL),
    ("livenessProbe", PROBE),
    ("readinessProbe", PROBE),
    ("startupProbe", PROBE),
    (
        "volumeMounts",
        Only(&[
            ("name", ALL),
            ("mountPath", ALL),
            ("readOnly", ALL),
            ("subPath", ALL),
        ]),
    ),
]);

const VOLUME: Read = Only(&[
    ("name", ALL),
    ("emptyDir", ALL),
    ("hostPath", ALL),
    ("secret", ALL),
    ("configMap", ALL),
    ("downwardAPI", ALL),
    (
        "projected",
        Only(&[
            ("defaultMode", ALL),
            (
                "sources",
                Only(&[
                    ("secret", ALL),
                    ("configMap", ALL),
                    ("downwardAPI", ALL),
                    ("serviceAccountToken", ALL),
                ]),
            ),
        ]),
    ),
]);

/// What [`super::pod`] reads of a Pod. `apiVersion` and `kind` were read to pick the type;
/// `status` is the node's to write.
const READ: Tree = &[
    ("apiVersion", ALL),
    ("kind", ALL),
    ("status", ALL),
    (
        "metadata",
        Only(&[("name", ALL), ("namespace", ALL), ("labels", ALL)]),
    ),
    (
        "spec",
        Only(&[
            ("containers", CONTAINER),
            ("restartPolicy", ALL),
            ("terminationGracePeriodSeconds", ALL),
            ("hostname", ALL),
            ("shareProcessNamespace", ALL),
            (
                "securityContext",
                Only(&[
                    ("runAsUser", ALL),
                    ("runAsGroup", ALL),
                    ("runAsNonRoot", ALL),
                    SECCOMP,
                ]),
            ),
            ("volumes", VOLUME),
        ]),
    ),
];

/// The paths (`spec.containers[0].lifecycle`) of the fields of `pod` keel does not act on.
pub fn fields_not_acted_on(pod: &wire::Pod) -> Vec<String> {
    let mut out = Vec::new();
    // The wire object's own serialisation lists exactly the fields it holds (k8s-openapi
    // leaves absent ones out); nothing is read back from it.
    if let Ok(value) = serde_json::to_value(pod) {
        walk(&value, READ, "", &mut out);
    }
    out
}

fn walk(value: &Value, tree: Tree, at: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields {
                let path = if at.is_empty() {
                    name.clone()
                } else {
                    format!("{at}.{name}")
                };
                match tree.iter().find(|(read, _)| read == name) {
                    None => out.push(path),
                    Some((_, ALL)) => {}
                    Some((_, Only(sub))) => walk(field, sub, &path, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, tree, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}
