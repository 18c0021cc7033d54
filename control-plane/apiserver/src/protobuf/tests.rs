//! Bodies encoded by hand the way Go's encoder lays them out (every non-pointer field written,
//! zero or not), checked against the JSON kube-apiserver has for the same objects. Hostile input
//! is in `tests/hostile.rs`.

use serde_json::json;

use super::schema::field;
use super::*;

mod hostile;

/// A protobuf message under construction.
#[derive(Default, Clone)]
struct Pb(Vec<u8>);

impl Pb {
    fn new() -> Pb {
        Pb::default()
    }

    fn raw_varint(mut self, mut value: u64) -> Pb {
        loop {
            let low = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                self.0.push(low);
                return self;
            }
            self.0.push(low | 0x80);
        }
    }

    fn key(self, number: u32, wire_type: u8) -> Pb {
        self.raw_varint((u64::from(number) << 3) | u64::from(wire_type))
    }

    fn varint(self, number: u32, value: u64) -> Pb {
        self.key(number, 0).raw_varint(value)
    }

    fn bytes(self, number: u32, value: &[u8]) -> Pb {
        let mut pb = self.key(number, 2).raw_varint(value.len() as u64);
        pb.0.extend_from_slice(value);
        pb
    }

    fn string(self, number: u32, value: &str) -> Pb {
        self.bytes(number, value.as_bytes())
    }

    fn message(self, number: u32, value: Pb) -> Pb {
        self.bytes(number, &value.0)
    }

    /// One entry of a `map<string, string>` field.
    fn entry(self, number: u32, key: &str, value: &str) -> Pb {
        self.message(number, Pb::new().string(1, key).string(2, value))
    }

    /// One entry of a `map<string, Quantity>` field.
    fn quantity(self, number: u32, key: &str, value: &str) -> Pb {
        let quantity = Pb::new().string(1, value);
        self.message(number, Pb::new().string(1, key).message(2, quantity))
    }
}

/// A whole body: magic, then the envelope as Go writes it (contentEncoding and contentType
/// included, empty).
fn body(api_version: &str, kind: &str, object: Pb) -> Vec<u8> {
    let type_meta = Pb::new().string(1, api_version).string(2, kind);
    let envelope = Pb::new()
        .message(1, type_meta)
        .message(2, object)
        .string(3, "")
        .string(4, "");
    let mut body = MAGIC.to_vec();
    body.extend_from_slice(&envelope.0);
    body
}

/// ObjectMeta as kubectl's encoder writes it: every string, generation 0, and the zero
/// creationTimestamp as an empty message.
fn metadata(name: &str, namespace: &str) -> Pb {
    Pb::new()
        .string(1, name)
        .string(2, "")
        .string(3, namespace)
        .string(4, "")
        .string(5, "")
        .string(6, "")
        .varint(7, 0)
        .message(8, Pb::new())
}

/// An IntOrString holding an int.
fn int_val(value: u64) -> Pb {
    Pb::new().varint(1, 0).varint(2, value).string(3, "")
}

/// An IntOrString holding a string.
fn str_val(value: &str) -> Pb {
    Pb::new().varint(1, 1).varint(2, 0).string(3, value)
}

fn decoded(body: &[u8]) -> Value {
    match decode(body) {
        Ok(value) => value,
        Err(error) => panic!("decoding failed: {error}"),
    }
}

fn error(body: &[u8]) -> ProtobufError {
    match decode(body) {
        Ok(value) => panic!("decoded, though it should not have been: {value}"),
        Err(error) => error,
    }
}

#[test]
fn namespace_with_labels_and_finalizers() {
    let meta = metadata("team-a", "")
        .entry(11, "env", "prod")
        .entry(11, "tier", "")
        .string(14, "example.com/cleanup");
    let namespace = Pb::new()
        .message(1, meta)
        .message(2, Pb::new().string(1, "kubernetes"))
        .message(3, Pb::new().string(1, ""));
    assert_eq!(
        decoded(&body("v1", "Namespace", namespace)),
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": "team-a",
                "creationTimestamp": null,
                "labels": {"env": "prod", "tier": ""},
                "finalizers": ["example.com/cleanup"],
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {},
        })
    );
}

#[test]
fn configmap_data_and_binary_data() {
    let blob = Pb::new().string(1, "blob").bytes(2, &[0, 1, 2, 255]);
    let configmap = Pb::new()
        .message(1, metadata("game", "default"))
        .entry(2, "game.properties", "lives=3")
        .message(3, blob);
    assert_eq!(
        decoded(&body("v1", "ConfigMap", configmap)),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "game", "namespace": "default", "creationTimestamp": null},
            "data": {"game.properties": "lives=3"},
            "binaryData": {"blob": "AAEC/w=="},
        })
    );
}

#[test]
fn secret_data_is_base64() {
    let secret = Pb::new()
        .message(1, metadata("db", "default"))
        .message(2, Pb::new().string(1, "password").bytes(2, b"s3cr3t"))
        .message(2, Pb::new().string(1, "empty"))
        .string(3, "Opaque");
    assert_eq!(
        decoded(&body("v1", "Secret", secret)),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": "default", "creationTimestamp": null},
            "data": {"password": "czNjcjN0", "empty": ""},
            "type": "Opaque",
        })
    );
}

#[test]
fn limit_range_items_with_every_list() {
    // `kubectl create -f` of a LimitRange with a Container and a Pod item; Go writes every
    // item's `type`, empty or not, and each quantity map entry by entry.
    let container = Pb::new()
        .string(1, "Container")
        .quantity(2, "cpu", "2")
        .quantity(3, "cpu", "100m")
        .quantity(4, "cpu", "1")
        .quantity(4, "memory", "512Mi")
        .quantity(5, "cpu", "500m")
        .quantity(6, "cpu", "4");
    let pod = Pb::new().string(1, "Pod").quantity(2, "memory", "2Gi");
    let untyped = Pb::new().string(1, "");
    let spec = Pb::new()
        .message(1, container)
        .message(1, pod)
        .message(1, untyped);
    let range = Pb::new()
        .message(1, metadata("limits", "team"))
        .message(2, spec);
    assert_eq!(
        decoded(&body("v1", "LimitRange", range)),
        json!({
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": {"name": "limits", "namespace": "team", "creationTimestamp": null},
            "spec": {"limits": [
                {"type": "Container", "max": {"cpu": "2"}, "min": {"cpu": "100m"},
                 "default": {"cpu": "1", "memory": "512Mi"}, "defaultRequest": {"cpu": "500m"},
                 "maxLimitRequestRatio": {"cpu": "4"}},
                {"type": "Pod", "max": {"memory": "2Gi"}},
                {"type": ""},
            ]},
        })
    );
}

#[test]
fn rolebinding_subjects_and_role_ref() {
    let subject = Pb::new()
        .string(1, "ServiceAccount")
        .string(2, "")
        .string(3, "builder")
        .string(4, "ci");
    let role_ref = Pb::new()
        .string(1, "rbac.authorization.k8s.io")
        .string(2, "Role")
        .string(3, "reader");
    let binding = Pb::new()
        .message(1, metadata("read", "ci"))
        .message(2, subject)
        .message(3, role_ref);
    assert_eq!(
        decoded(&body(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            binding
        )),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "read", "namespace": "ci", "creationTimestamp": null},
            "subjects": [{"kind": "ServiceAccount", "name": "builder", "namespace": "ci"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        })
    );
}

#[test]
fn self_subject_access_review() {
    // `kubectl auth can-i create deployments.apps -n ci`
    let attributes = Pb::new()
        .string(1, "ci")
        .string(2, "create")
        .string(3, "apps")
        .string(4, "")
        .string(5, "deployments")
        .string(6, "")
        .string(7, "");
    let status = Pb::new()
        .varint(1, 0)
        .string(2, "")
        .string(3, "")
        .varint(4, 0);
    let review = Pb::new()
        .message(1, metadata("", ""))
        .message(2, Pb::new().message(1, attributes))
        .message(3, status);
    assert_eq!(
        decoded(&body(
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            review
        )),
        json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "metadata": {"creationTimestamp": null},
            "spec": {"resourceAttributes": {
                "namespace": "ci",
                "verb": "create",
                "group": "apps",
                "resource": "deployments",
            }},
            "status": {"allowed": false},
        })
    );
}

#[test]
fn deployment_with_resources_ports_and_rolling_update() {
    let port = Pb::new()
        .string(1, "")
        .varint(2, 0)
        .varint(3, 80)
        .string(4, "TCP")
        .string(5, "");
    let resources = Pb::new()
        .quantity(1, "cpu", "500m")
        .quantity(2, "memory", "64Mi");
    let container = Pb::new()
        .string(1, "web")
        .string(2, "nginx:1.27")
        .message(6, port)
        .message(8, resources)
        .string(13, "/dev/termination-log")
        .string(14, "IfNotPresent");
    let template = Pb::new()
        .message(1, metadata("", "").entry(11, "app", "web"))
        .message(2, Pb::new().message(2, container));
    let strategy = Pb::new().string(1, "RollingUpdate").message(
        2,
        Pb::new().message(1, int_val(1)).message(2, str_val("25%")),
    );
    let spec = Pb::new()
        .varint(1, 2)
        .message(2, Pb::new().entry(1, "app", "web"))
        .message(3, template)
        .message(4, strategy)
        .varint(5, 0)
        .varint(6, 10)
        .varint(7, 0)
        .varint(9, 600);
    let deployment = Pb::new()
        .message(1, metadata("web", "default"))
        .message(2, spec)
        .message(3, Pb::new());
    assert_eq!(
        decoded(&body("apps/v1", "Deployment", deployment)),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": null},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "web",
                        "image": "nginx:1.27",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}},
                        "terminationMessagePath": "/dev/termination-log",
                        "imagePullPolicy": "IfNotPresent",
                    }]},
                },
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"},
                },
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
            },
            "status": {},
        })
    );
}

#[test]
fn pointer_zeros_are_kept_and_omitempty_zeros_dropped() {
    // `replicas` is a *int32: 0 is a value. `minReadySeconds` is an omitempty int32: 0 is unset.
    let spec = Pb::new().varint(1, 0).varint(5, 0).varint(7, 0);
    let deployment = Pb::new().message(2, spec);
    let value = decoded(&body("apps/v1", "Deployment", deployment));
    assert_eq!(value["spec"], json!({"replicas": 0}));
}

#[test]
fn service_target_port_and_empty_load_balancer() {
    // `kubectl create service clusterip web --tcp=80:8080`
    let port = Pb::new()
        .string(1, "80-8080")
        .string(2, "TCP")
        .varint(3, 80)
        .message(4, int_val(8080))
        .varint(5, 0);
    let spec = Pb::new()
        .message(1, port)
        .entry(2, "app", "web")
        .string(3, "")
        .string(4, "ClusterIP")
        .string(7, "")
        .string(8, "")
        .string(10, "")
        .string(11, "")
        .varint(12, 0)
        .varint(13, 0);
    let status = Pb::new().message(1, Pb::new());
    let service = Pb::new()
        .message(1, metadata("web", ""))
        .message(2, spec)
        .message(3, status);
    let value = decoded(&body("v1", "Service", service));
    assert_eq!(
        value["spec"],
        json!({
            "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
            "selector": {"app": "web"},
            "type": "ClusterIP",
        })
    );
    assert_eq!(value["status"], json!({"loadBalancer": {}}));
}

#[test]
fn inline_structs_are_flattened() {
    // Probe embeds ProbeHandler, Volume embeds VolumeSource, ConfigMapVolumeSource embeds
    // LocalObjectReference: all `json:",inline"`.
    let http_get = Pb::new()
        .string(1, "/healthz")
        .message(2, int_val(8080))
        .string(3, "")
        .string(4, "");
    let probe = Pb::new()
        .message(1, Pb::new().message(2, http_get))
        .varint(4, 10);
    let container = Pb::new().string(1, "web").message(10, probe);
    let config_map = Pb::new()
        .message(1, Pb::new().string(1, "web-config"))
        .varint(3, 420);
    let volume = Pb::new()
        .string(1, "config")
        .message(2, Pb::new().message(19, config_map));
    let pod = Pb::new().message(1, volume).message(2, container);
    let template = Pb::new().message(2, pod);
    let deployment = Pb::new().message(2, Pb::new().message(3, template));
    let value = decoded(&body("apps/v1", "Deployment", deployment));
    assert_eq!(
        value["spec"]["template"]["spec"],
        json!({
            "volumes": [{"name": "config", "configMap": {"name": "web-config", "defaultMode": 420}}],
            "containers": [{
                "name": "web",
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10},
            }],
        })
    );
}

/// The volume the ServiceAccount admission plugin adds, in a template copied from a pod of a
/// Kubernetes cluster: every projection kind it uses decodes.
#[test]
fn the_service_account_token_volume() {
    let token = Pb::new().string(1, "").varint(2, 3607).string(3, "token");
    let config_map = Pb::new()
        .message(1, Pb::new().string(1, "kube-root-ca.crt"))
        .message(2, Pb::new().string(1, "ca.crt").string(2, "ca.crt"));
    let field_ref = Pb::new().string(1, "v1").string(2, "metadata.namespace");
    let downward = Pb::new().message(1, Pb::new().string(1, "namespace").message(2, field_ref));
    let projected = Pb::new()
        .message(1, Pb::new().message(4, token))
        .message(1, Pb::new().message(3, config_map))
        .message(1, Pb::new().message(2, downward))
        .varint(2, 420);
    let volume = Pb::new()
        .string(1, "kube-api-access-b2x4z")
        .message(2, Pb::new().message(26, projected));
    let template = Pb::new().message(2, Pb::new().message(1, volume));
    let deployment = Pb::new().message(2, Pb::new().message(3, template));
    let value = decoded(&body("apps/v1", "Deployment", deployment));
    assert_eq!(
        value["spec"]["template"]["spec"]["volumes"],
        json!([crate::service_account_admission::token_volume(
            "kube-api-access-b2x4z"
        )])
    );
}

#[test]
fn repeated_varints_packed_or_not_and_negative_int32() {
    let unpacked = Pb::new().varint(4, 1000).varint(4, 2000);
    let packed = Pb::new().bytes(4, &Pb::new().raw_varint(1000).raw_varint(2000).0);
    for security_context in [unpacked, packed] {
        // priority -5: Go writes a negative int32 as a 10-byte varint.
        let pod = Pb::new()
            .message(14, security_context)
            .varint(25, (-5_i64) as u64);
        let template = Pb::new().message(2, pod);
        let deployment = Pb::new().message(2, Pb::new().message(3, template));
        let value = decoded(&body("apps/v1", "Deployment", deployment));
        assert_eq!(
            value["spec"]["template"]["spec"],
            json!({"securityContext": {"supplementalGroups": [1000, 2000]}, "priority": -5})
        );
    }
}

#[test]
fn creation_timestamp_is_rfc3339_to_the_second() {
    // 2024-01-02T03:04:05Z; Go drops the nanoseconds, which its JSON cannot carry.
    let time = Pb::new().varint(1, 1_704_164_645).varint(2, 999);
    let namespace = Pb::new().message(1, Pb::new().string(1, "a").message(8, time));
    let value = decoded(&body("v1", "Namespace", namespace));
    assert_eq!(
        value["metadata"],
        json!({"name": "a", "creationTimestamp": "2024-01-02T03:04:05Z"})
    );
}

static WITH_MICRO_TIME: Message = Message {
    package: "test",
    name: "WithMicroTime",
    fields: &[field(1, "eventTime", Ty::MicroTime)],
};

#[test]
fn micro_time_has_six_fractional_digits() {
    let cases = [
        (
            Pb::new().varint(1, 1_704_164_645).varint(2, 123_456_789),
            json!("2024-01-02T03:04:05.123456Z"),
        ),
        (
            Pb::new().varint(1, 1_704_164_645),
            json!("2024-01-02T03:04:05.000000Z"),
        ),
        (Pb::new(), Value::Null),
    ];
    for (time, want) in cases {
        let mut object = Map::new();
        let bytes = Pb::new().message(1, time).0;
        let result = decode_message(&WITH_MICRO_TIME, &bytes, &mut object, 1);
        assert_eq!(result, Ok(()));
        assert_eq!(object.get("eventTime"), Some(&want));
    }
}

#[test]
fn delete_options_under_any_group_version() {
    let options = Pb::new().varint(1, 0).string(4, "Foreground");
    let value = decoded(&body("apps/v1", "DeleteOptions", options));
    assert_eq!(
        value,
        json!({
            "apiVersion": "apps/v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "propagationPolicy": "Foreground",
        })
    );
}
