use super::*;
use crate::resources::lookup;
use serde_json::json;

/// Each cause of refusing `object` as `field: message`; none when it is valid.
pub(super) fn causes(group: &str, resource: &str, object: Value) -> Vec<String> {
    let info = lookup(group, "v1", resource).expect("served");
    match validate(info, &object) {
        Ok(()) => Vec::new(),
        Err(e) => e.details.expect("details")["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{}: {}",
                    c["field"].as_str().unwrap_or(""),
                    c["message"].as_str().unwrap_or("")
                )
            })
            .collect(),
    }
}

#[test]
fn pods_need_named_containers_with_images_and_sane_ports() {
    let ok = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "busybox", "ports": [{"containerPort": 80, "name": "http"}]}],
                     "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "x"}}]}});
    assert!(
        causes("", "pods", ok).is_empty(),
        "a configMap volume is valid Kubernetes even where keel cannot mount it yet"
    );
    assert_eq!(
        causes("", "pods", json!({"spec": {}})),
        ["spec.containers: Required value"]
    );
    let bad = json!({"spec": {"restartPolicy": "Sometimes", "containers": [
        {"name": "a", "image": "", "ports": [{"containerPort": 70000}, {"containerPort": 1, "protocol": "ICMP"}]},
        {"name": "a", "image": "x"},
        {"name": "Bad_Name", "image": "x"}],
        "volumes": [{"name": "v"}, {"name": "v"}]}});
    let got = causes("", "pods", bad);
    for want in [
        "spec.containers[0].image: Required value",
        "spec.containers[0].ports[0].containerPort: Invalid value: \"70000\": must be between 1 and 65535, inclusive",
        "spec.containers[0].ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
        "spec.containers[1].name: Duplicate value: \"a\"",
        "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        "spec.volumes[1].name: Duplicate value: \"v\"",
    ] {
        assert!(got.iter().any(|g| g == want), "{want} missing from {got:#?}");
    }
    assert!(
        got.iter()
            .any(|g| g.starts_with("spec.containers[2].name: Invalid value: \"Bad_Name\"")),
        "{got:#?}"
    );
}

#[test]
fn services_need_ports_unless_headless_and_named_ports_when_several() {
    assert_eq!(
        causes("", "services", json!({"spec": {}})),
        ["spec.ports: Required value"]
    );
    assert!(causes("", "services", json!({"spec": {"clusterIP": "None"}})).is_empty());
    assert!(causes(
        "",
        "services",
        json!({"spec": {"type": "ExternalName", "externalName": "a.b"}})
    )
    .is_empty());
    let got = causes(
        "",
        "services",
        json!({"spec": {"type": "Magic", "ports": [{"port": 0}, {"port": 80, "targetPort": "no way"}]}}),
    );
    assert!(
        got.iter()
            .any(|g| g.starts_with("spec.type: Unsupported value: \"Magic\"")),
        "{got:#?}"
    );
    assert!(
        got.iter().any(|g| g
            == "spec.ports[0].port: Invalid value: \"0\": must be between 1 and 65535, inclusive"),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|g| g == "spec.ports[0].name: Required value"),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|g| g.starts_with("spec.ports[1].targetPort: Invalid value: \"no way\"")),
        "{got:#?}"
    );
}

#[test]
fn node_ports_belong_to_their_types_and_addresses_to_theirs() {
    let service = |spec: Value| causes("", "services", json!({ "spec": spec }));
    assert_eq!(
        service(json!({"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30080}]})),
        ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
    );
    // 0 is unset, on any type.
    assert!(
        service(json!({"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 0}]})).is_empty()
    );
    assert!(
        service(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 0}]})).is_empty()
    );
    assert_eq!(
        service(
            json!({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30080},
            {"name": "b", "port": 81, "nodePort": 30080, "protocol": "TCP"},
            {"name": "c", "port": 82, "nodePort": 30080, "protocol": "UDP"}]})
        ),
        ["spec.ports[1].nodePort: Duplicate value: 30080"]
    );
    assert_eq!(
        service(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": -1}]})),
        ["spec.ports[0].nodePort: Invalid value: \"-1\": must be between 1 and 65535, inclusive"]
    );
    assert_eq!(
        service(
            json!({"type": "ExternalName", "externalName": "a.b", "clusterIP": "10.96.0.9",
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"})
        ),
        [
            "spec.clusterIPs: Forbidden: may not be set for ExternalName services",
            "spec.ipFamilies: Forbidden: may not be set for ExternalName services",
            "spec.ipFamilyPolicy: Forbidden: may not be set for ExternalName services"
        ]
    );
    assert!(service(
        json!({"type": "ExternalName", "externalName": "a.b", "clusterIP": "",
        "clusterIPs": [], "ports": [{"port": 80, "nodePort": 30080}]})
    )
    .is_empty());
}

#[test]
fn a_workload_must_select_its_own_template() {
    let info = "deployments";
    let good = json!({"spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    assert!(causes("apps", info, good).is_empty());
    let got = causes(
        "apps",
        info,
        json!({"spec": {"replicas": -1, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": []}}}}),
    );
    assert!(
        got.iter()
            .any(|g| g.starts_with("spec.replicas: Invalid value: \"-1\"")),
        "{got:#?}"
    );
    assert!(got.iter().any(|g| g == "spec.template.metadata.labels: Invalid value: \"map[app:api]\": `selector` does not match template `labels`"), "{got:#?}");
    assert!(
        got.iter()
            .any(|g| g == "spec.template.spec.containers: Required value"),
        "{got:#?}"
    );
    assert!(causes("apps", "replicasets", json!({"spec": {}}))
        .contains(&"spec.selector: Required value".to_owned()));
}

/// kube's `ValidatePodCreate`: nodeName and schedulingGates together are refused at
/// creation, with kube's words; either alone is fine.
#[test]
fn a_pod_may_not_be_created_both_gated_and_assigned() {
    let info = lookup("", "v1", "pods").expect("served");
    let pod = |spec: Value| {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "a", "image": "busybox"}]);
        json!({"metadata": {"name": "p"}, "spec": spec})
    };
    let both = pod(json!({"nodeName": "n1", "schedulingGates": [{"name": "example.com/wait"}]}));
    let error = validate_create(info, &both).expect_err("refused");
    assert_eq!(error.code, 422);
    assert_eq!(
        error.message,
        "Pod \"p\" is invalid: spec.nodeName: Forbidden: cannot be set until all \
         schedulingGates have been cleared"
    );
    for fine in [
        pod(json!({"nodeName": "n1"})),
        pod(json!({"schedulingGates": [{"name": "example.com/wait"}]})),
        pod(json!({"nodeName": "", "schedulingGates": [{"name": "example.com/wait"}]})),
        pod(json!({"nodeName": "n1", "schedulingGates": []})),
    ] {
        assert!(validate_create(info, &fine).is_ok(), "{fine}");
    }
}
