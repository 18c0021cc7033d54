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
    let err =
        parse_manifests(&SERVICE.replace("apiVersion: v1", "apiVersion: v2")).expect_err("version");
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

    let too_long = with("  sessionAffinityConfig:\n    clientIP:\n      timeoutSeconds: 86401\n");
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

/// What keel does not act on is kept, not dropped: the objects read back as they were
/// applied, field for field (an API server that loses a field a user applied is broken).
#[test]
fn fields_keel_does_not_act_on_round_trip_intact() -> Result<(), Box<dyn std::error::Error>> {
    let documents = [
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  annotations: {team: blue}\n\
         spec:\n  tolerations: [{key: k, operator: Exists}]\n  containers:\n  - name: app\n    \
         image: busybox\n    lifecycle: {preStop: {exec: {command: [sleep, '1']}}}\n    \
         terminationMessagePolicy: FallbackToLogsOnError\n",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  clusterIP: 10.96.0.10\n  \
         ipFamilies: [IPv4]\n  ipFamilyPolicy: SingleStack\n  internalTrafficPolicy: Cluster\n  \
         ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]\n",
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  \
         labels: {kubernetes.io/service-name: web}\naddressType: IPv4\n\
         ports: [{name: http, port: 8080}]\nendpoints:\n- addresses: [10.244.0.2]\n  \
         nodeName: node-a\n  zone: z1\n  hints: {forZones: [{name: z1}]}\n",
    ];
    let (parsed, warnings) = parse_manifests_full(&documents.join("---\n"))?;
    assert_eq!(parsed.len(), 3);
    for (text, (wire, _model)) in documents.iter().zip(&parsed) {
        let applied: serde_json::Value = serde_yaml_ng::from_str(text)?;
        assert_eq!(wire.to_json(), applied, "round trip of\n{text}");
    }
    // The Pod's fields keel does not act on are named, as kept (not as unknown).
    let pod_fields: Vec<(&str, bool)> = warnings
        .iter()
        .filter(|w| w.object == "Pod/web")
        .map(|w| (w.field.as_str(), w.unknown_to_kubernetes))
        .collect();
    assert!(
        pod_fields.contains(&("spec.containers[0].lifecycle", false)),
        "{pod_fields:?}"
    );
    assert!(
        pod_fields.contains(&("spec.tolerations", false)),
        "{pod_fields:?}"
    );
    Ok(())
}

/// A field Kubernetes does not define (a typo) is a warning naming it, and the object is kept.
#[test]
fn fields_unknown_to_kubernetes_are_warned_about() -> Result<(), Box<dyn std::error::Error>> {
    let text = SERVICE.replace("  clusterIP:", "  clusterIPz: 10.96.0.99\n  clusterIP:");
    let (objects, warnings) = parse_manifests_with_warnings(&text)?;
    assert_eq!(objects.len(), 1);
    let typo = warnings
        .iter()
        .find(|w| w.field == "spec.clusterIPz")
        .ok_or_else(|| format!("no warning for the typo: {warnings:?}"))?;
    assert!(typo.unknown_to_kubernetes);
    assert!(
        typo.to_string().contains("unknown field spec.clusterIPz"),
        "{typo}"
    );
    Ok(())
}

/// The kind read off top-level lines agrees with the parser's, and anything unusual is left
/// to the parser.
#[test]
fn kinds_are_read_off_top_level_lines_only_when_plain() {
    let meta = quick_type_meta(SERVICE).expect("block style");
    assert_eq!(
        (meta.api_version.as_str(), meta.kind.as_str()),
        ("v1", "Service")
    );
    for unusual in [
        "{apiVersion: v1, kind: Service, metadata: {name: web}}\n",
        "apiVersion: \"v1\"\nkind: Service\n",
        "apiVersion: v1\nkind: Service # a comment\n",
        "apiVersion: v1\nkind: Service\nkind: Pod\n",
        "apiVersion: v1\nmetadata:\n  kind: Service\n",
    ] {
        assert!(quick_type_meta(unusual).is_none(), "{unusual:?}");
    }
    // The parser still reads what the shortcut leaves to it.
    let flow = "{apiVersion: v1, kind: Service, metadata: {name: web}, spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80}]}}\n";
    assert_eq!(parse_manifests(flow).expect("flow style").len(), 1);
}

/// Objects from an API server go through the same conversion and checks as files: a Service
/// whose name would break a netfilter comment, or a port name that is not an IANA_SVC_NAME,
/// is refused with the field's path; a good one converts.
#[test]
fn api_objects_are_held_to_the_manifests_rules() {
    let wire = |value: serde_json::Value| {
        WireObject::Service(Box::new(
            serde_json::from_value(value).expect("a k8s-openapi Service"),
        ))
    };
    let good = wire(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "team", "uid": "u1", "resourceVersion": "9"},
        "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "type": "ClusterIP",
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
        "status": {"loadBalancer": {}},
    }));
    assert!(matches!(model_of(&good), Ok(Object::Service(s)) if s.metadata.namespace() == "team"));
    for (hostile, field) in [
        (
            serde_json::json!({"name": "web\" -j ACCEPT\n"}),
            "metadata.name",
        ),
        (
            serde_json::json!({"name": "x".repeat(300)}),
            "metadata.name",
        ),
    ] {
        let bad = wire(serde_json::json!({
            "apiVersion": "v1", "kind": "Service", "metadata": hostile,
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]},
        }));
        let error = model_of(&bad).expect_err("refused").to_string();
        assert!(error.contains(field), "{error}");
    }
    let bad_port = wire(serde_json::json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "HTTP_", "port": 80}]},
    }));
    let error = model_of(&bad_port).expect_err("refused").to_string();
    assert!(error.contains("spec.ports[0].name"), "{error}");
}
