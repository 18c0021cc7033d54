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
