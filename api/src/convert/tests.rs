//! Each conversion refuses what keel's model cannot hold, by field path, and converts the
//! rest field by field.

use serde_json::json;

use crate::{
    endpoint_slice::AddressType, parse_manifests, service::ServiceType, EndpointSlice, Service,
};

fn service(spec: serde_json::Value) -> k8s_openapi::api::core::v1::Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": spec,
    }))
    .expect("a k8s-openapi Service")
}

fn slice(body: serde_json::Value) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    let mut object = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
    });
    if let (Some(fields), Some(extra)) = (object.as_object_mut(), body.as_object()) {
        fields.extend(extra.clone());
    }
    serde_json::from_value(object).expect("a k8s-openapi EndpointSlice")
}

fn refused_service(spec: serde_json::Value) -> String {
    match Service::try_from(&service(spec)) {
        Ok(model) => panic!("converted: {model:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn service_converts_field_by_field() {
    let model = Service::try_from(&service(json!({
        "clusterIP": "10.96.0.10", "type": "NodePort", "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
        "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": "web", "nodePort": 30080},
                  {"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"}],
    })))
    .expect("a valid service");
    assert_eq!(model.spec.cluster_ip, Some([10, 96, 0, 10].into()));
    assert_eq!(model.spec.service_type, ServiceType::NodePort);
    assert_eq!(model.spec.affinity_timeout(), Some(60));
    assert_eq!(
        model.spec.selector.get("app").map(String::as_str),
        Some("web")
    );
    assert_eq!(model.spec.ports[0].node_port.map(|p| p.get()), Some(30080));
    assert_eq!(model.spec.ports[1].protocol.to_string(), "UDP");
    assert_eq!(
        model.spec.ports[1]
            .target_port
            .as_ref()
            .map(|t| t.to_string()),
        Some("5353".into())
    );
    // Absent, empty and "None" are all headless.
    for headless in [
        json!({}),
        json!({"clusterIP": ""}),
        json!({"clusterIP": "None"}),
    ] {
        let model = Service::try_from(&service(headless)).expect("headless");
        assert_eq!(model.spec.cluster_ip, None);
    }
}

#[test]
fn hostile_service_values_are_refused_by_path() {
    let port = |p: i64| json!({"clusterIP": "10.96.0.10", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": p}]});
    for bad in [0, -1, 65_536, i64::from(i32::MAX)] {
        let error = refused_service(port(bad));
        assert!(
            error.starts_with(&format!(
                "spec.ports[1].port: Invalid value: {bad}: must be between 1 and 65535"
            )),
            "{error}"
        );
    }
    let long = "1".repeat(100_000);
    for ip in [
        "fd00::1",
        "10.96.0.300",
        "web\" -j ACCEPT",
        "",
        long.as_str(),
    ] {
        if ip.is_empty() {
            continue; // empty is headless, above
        }
        let error = refused_service(json!({"clusterIP": ip, "ports": [{"port": 80}]}));
        assert!(error.starts_with("spec.clusterIP: "), "{error}");
        assert!(error.contains("is not an IPv4 address"), "{error}");
    }
    for (spec, field) in [
        (
            json!({"type": "Tunnel"}),
            "spec.type: Unsupported value: \"Tunnel\"",
        ),
        (
            json!({"sessionAffinity": "Sticky"}),
            "spec.sessionAffinity: Unsupported value: \"Sticky\"",
        ),
        (
            json!({"ports": [{"port": 80, "protocol": "ICMP"}]}),
            "spec.ports[0].protocol: Unsupported value: \"ICMP\"",
        ),
        (
            json!({"ports": [{"port": 80, "nodePort": 70000}]}),
            "spec.ports[0].nodePort: Invalid value: 70000",
        ),
        (
            json!({"ports": [{"port": 80, "targetPort": 0}]}),
            "spec.ports[0].targetPort: Invalid value: 0",
        ),
        (
            json!({"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": -5}}}),
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: -5",
        ),
    ] {
        let error = refused_service(spec);
        assert!(error.starts_with(field), "{error}");
    }
}

#[test]
fn slice_converts_and_refuses_by_path() {
    let model = EndpointSlice::try_from(&slice(json!({
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": ["10.244.0.2"], "conditions": {"ready": false}}],
    })))
    .expect("valid");
    // addressType left out: k8s-openapi reads "", the model's default applies.
    assert_eq!(model.address_type, AddressType::IPv4);
    assert!(!model.endpoints[0].conditions.is_ready());
    assert!(model.endpoints[0].conditions.is_serving());

    for (body, field) in [
        (
            json!({"addressType": "IPv5"}),
            "addressType: Unsupported value: \"IPv5\"",
        ),
        (
            json!({"ports": [{"name": "http"}]}),
            "ports[0].port: Required value",
        ),
        (
            json!({"ports": [{"port": 65_536}]}),
            "ports[0].port: Invalid value: 65536",
        ),
        (
            json!({"ports": [{"port": -80}]}),
            "ports[0].port: Invalid value: -80",
        ),
        (
            json!({"endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "fd00::2"]}]}),
            "endpoints[1].addresses[1]: \"fd00::2\" is not an IPv4 address",
        ),
        (
            json!({"endpoints": [{"addresses": ["10.0.0.1; rm -rf /"]}]}),
            "endpoints[0].addresses[0]: ",
        ),
    ] {
        let error = EndpointSlice::try_from(&slice(body.clone()))
            .expect_err(&body.to_string())
            .to_string();
        assert!(error.starts_with(field), "{error}");
    }
}

/// A missing name converts to an empty one, which validation refuses by path.
#[test]
fn missing_names_are_refused_by_path() {
    for text in [
        "apiVersion: v1\nkind: Service\nmetadata: {}\nspec: {ports: [{port: 80}]}\n",
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  labels: {kubernetes.io/service-name: web}\naddressType: IPv4\n",
    ] {
        let error = parse_manifests(text).expect_err("no name").to_string();
        assert!(error.contains("metadata.name: Required value"), "{error}");
    }
}

/// In a manifest, a refused value is reported at its own line, found from the path.
#[test]
fn refused_values_point_at_their_line() {
    let text =
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  clusterIP: 10.96.0.10\n  \
                ports:\n  - name: a\n    port: 80\n  - name: b\n    port: 65536\n";
    let error = parse_manifests(text).expect_err("65536");
    assert_eq!(error.line(), 10, "{error}");
    assert!(
        error
            .to_string()
            .contains("spec.ports[1].port: Invalid value: 65536"),
        "{error}"
    );
    let text = format!(
        "{text}---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: s\n  \
         labels: {{kubernetes.io/service-name: web}}\nendpoints:\n- addresses:\n  - 10.0.0.1\n  - nope\n"
    )
    .replace("65536", "81");
    let error = parse_manifests(&text).expect_err("not an address");
    assert_eq!(error.line(), 20, "{error}");
    assert!(
        error.to_string().contains("endpoints[0].addresses[1]"),
        "{error}"
    );
}

fn pod(spec: serde_json::Value) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": spec,
    }))
    .expect("a k8s-openapi Pod")
}

#[test]
fn pod_converts_field_by_field() {
    let model = crate::Pod::try_from(&pod(json!({
        "restartPolicy": "OnFailure", "terminationGracePeriodSeconds": 5,
        "securityContext": {"runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "data", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}],
        "containers": [{
            "name": "app", "image": "busybox", "command": ["sleep"], "args": ["9"],
            "env": [{"name": "A", "value": "1"}, {"name": "B"}],
            "ports": [{"name": "http", "containerPort": 8080}],
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
            "readinessProbe": {"httpGet": {"port": "http", "path": "/ok"}, "periodSeconds": 2},
            "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true}],
        }],
    })))
    .expect("a valid pod");
    let spec = &model.spec;
    assert_eq!(spec.restart_policy, crate::RestartPolicy::OnFailure);
    assert_eq!(spec.grace_period_seconds(), 5);
    assert_eq!(
        spec.security_context.as_ref().and_then(|c| c.run_as_user),
        Some(1000)
    );
    let app = &spec.containers[0];
    assert_eq!((app.command.len(), app.args.len()), (1, 1));
    assert_eq!(app.env[1].value, "");
    assert_eq!(app.ports[0].container_port.get(), 8080);
    assert_eq!(
        app.resources.limits.memory.as_ref().map(|q| q.bytes()),
        Some(Ok(64 << 20))
    );
    let probe = app.readiness_probe.as_ref().expect("a probe");
    assert_eq!(probe.period(), 2);
    assert_eq!(
        app.resolve_port(&probe.http_get.as_ref().expect("httpGet").port),
        Some(8080)
    );
    assert!(app.volume_mounts[0].read_only);
    assert_eq!(spec.volumes[0].name, "data");
}

#[test]
fn hostile_pod_values_are_refused_by_path() {
    let container = |extra: serde_json::Value| {
        let mut c = json!({"name": "app", "image": "busybox"});
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(extra.clone());
        }
        json!({"containers": [{"name": "first", "image": "busybox"}, c]})
    };
    for (spec, expected) in [
        (
            container(json!({"ports": [{"containerPort": 0}]})),
            "spec.containers[1].ports[0].containerPort: Invalid value: 0",
        ),
        (
            container(json!({"ports": [{"containerPort": 65_536}]})),
            "spec.containers[1].ports[0].containerPort: Invalid value: 65536",
        ),
        (
            container(json!({"ports": [{"containerPort": 80, "protocol": "tcp"}]})),
            "spec.containers[1].ports[0].protocol: Unsupported value: \"tcp\"",
        ),
        (
            container(json!({"livenessProbe": {"grpc": {"port": -1}}})),
            "spec.containers[1].livenessProbe.grpc.port: Invalid value: -1",
        ),
        (
            container(json!({"livenessProbe": {"tcpSocket": {"port": 70_000}}})),
            "spec.containers[1].livenessProbe.tcpSocket.port: Invalid value: 70000",
        ),
        (
            container(
                json!({"readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": -3}}),
            ),
            "spec.containers[1].readinessProbe.periodSeconds: Invalid value: -3",
        ),
        (
            container(json!({"readinessProbe": {"httpGet": {"port": 80, "scheme": "FTP"}}})),
            "spec.containers[1].readinessProbe.httpGet.scheme: Unsupported value: \"FTP\"",
        ),
        (
            container(json!({"securityContext": {"runAsUser": -1}})),
            "spec.containers[1].securityContext.runAsUser: Invalid value: -1",
        ),
        (
            container(json!({"securityContext": {"runAsGroup": 1_i64 << 40}})),
            "spec.containers[1].securityContext.runAsGroup: Invalid value: 1099511627776",
        ),
        (
            json!({"restartPolicy": "Sometimes", "containers": []}),
            "spec.restartPolicy: Unsupported value: \"Sometimes\"",
        ),
        (
            json!({"terminationGracePeriodSeconds": -1, "containers": []}),
            "spec.terminationGracePeriodSeconds: Invalid value: -1",
        ),
        (
            json!({"securityContext": {"seccompProfile": {"type": ""}}, "containers": []}),
            "spec.securityContext.seccompProfile.type: Required value",
        ),
        (
            json!({"volumes": [{"name": "a", "hostPath": {"path": "/x", "type": "Folder"}}], "containers": []}),
            "spec.volumes[0].hostPath.type: Unsupported value: \"Folder\"",
        ),
    ] {
        let error = crate::Pod::try_from(&pod(spec.clone()))
            .expect_err(&spec.to_string())
            .to_string();
        assert!(error.starts_with(expected), "{error}");
    }
    // A missing name and a huge one convert, and validation refuses them by path.
    let long = "a".repeat(100_000);
    for (name, field) in [
        ("", "spec.containers[0].name"),
        (long.as_str(), "spec.containers[0].name"),
    ] {
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec:\n  containers:\n  - name: {name:?}\n    image: busybox\n"
        );
        let error = parse_manifests(&text).expect_err(field).to_string();
        assert!(error.contains(field), "{}", &error[..error.len().min(200)]);
    }
}

/// The fields keel reads past are listed from the wire object, by path; what it reads is not.
#[test]
fn pod_fields_keel_does_not_act_on_are_listed() {
    let wire = pod(json!({
        "tolerations": [{"key": "k", "operator": "Exists"}],
        "securityContext": {"runAsUser": 1, "fsGroup": 2},
        "containers": [{
            "name": "app", "image": "busybox", "tty": true,
            "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "resources": {"limits": {"cpu": "1", "nvidia.com/gpu": "1"}},
            "livenessProbe": {"exec": {"command": ["true"]}, "terminationGracePeriodSeconds": 3},
        }],
    }));
    let fields = crate::convert::pod_fields::fields_not_acted_on(&wire);
    assert_eq!(
        fields,
        [
            "spec.containers[0].env[0].valueFrom",
            "spec.containers[0].livenessProbe.terminationGracePeriodSeconds",
            "spec.containers[0].resources.limits.nvidia.com/gpu",
            "spec.containers[0].tty",
            "spec.securityContext.fsGroup",
            "spec.tolerations",
        ]
    );
}
