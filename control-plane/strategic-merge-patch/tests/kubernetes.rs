//! The Kubernetes schemas with the patches kubectl sends.

use serde_json::{json, Value};
use strategic_merge_patch::{apply, kubernetes::schema_for, Schema};

fn schema(group: &str, kind: &str) -> &'static Schema {
    schema_for(group, kind).unwrap_or_else(|| panic!("{group}/{kind} is served"))
}

fn merged(original: Value, patch: Value, schema: &Schema) -> Value {
    apply(&original, &patch, schema).unwrap_or_else(|error| panic!("patch refused: {error}"))
}

#[test]
fn every_served_kind_has_a_schema() {
    let served = [
        ("", "Namespace"),
        ("", "Node"),
        ("", "Pod"),
        ("", "Service"),
        ("", "ConfigMap"),
        ("", "Secret"),
        ("", "Event"),
        ("", "ResourceQuota"),
        ("", "LimitRange"),
        ("discovery.k8s.io", "EndpointSlice"),
        ("apps", "Deployment"),
        ("apps", "ReplicaSet"),
        ("coordination.k8s.io", "Lease"),
        ("events.k8s.io", "Event"),
        ("autoscaling", "Scale"),
    ];
    for (group, kind) in served {
        let found = schema(group, kind);
        let metadata = found.field("metadata").and_then(|field| field.schema);
        let owners = metadata.and_then(|meta| meta.field("ownerReferences"));
        assert_eq!(
            owners.and_then(|field| field.merge_key),
            Some("uid"),
            "{group}/{kind}"
        );
    }
    assert!(schema_for("", "Deployment").is_none());
    assert!(schema_for("apps", "StatefulSet").is_none());
}

#[test]
fn kubectl_removes_an_env_var() {
    let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "web", "image": "nginx", "env": [
        {"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"},
    ]}]}});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "web"}],
        "containers": [{
            "name": "web",
            "$setElementOrder/env": [{"name": "A"}, {"name": "C"}],
            "env": [{"name": "B", "$patch": "delete"}],
        }],
    }});
    let expected = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "web", "image": "nginx", "env": [
        {"name": "A", "value": "1"}, {"name": "C", "value": "3"},
    ]}]}});
    assert_eq!(merged(pod, patch, schema("", "Pod")), expected);
}

#[test]
fn kubectl_removes_a_container_port() {
    let pod = json!({"spec": {"containers": [{"name": "web", "image": "nginx", "ports": [
        {"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "protocol": "TCP"},
    ]}]}});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "web"}],
        "containers": [{
            "name": "web",
            "$setElementOrder/ports": [{"containerPort": 443}],
            "ports": [{"containerPort": 80, "$patch": "delete"}],
        }],
    }});
    let expected = json!({"spec": {"containers": [{"name": "web", "image": "nginx", "ports": [
        {"containerPort": 443, "protocol": "TCP"},
    ]}]}});
    assert_eq!(merged(pod, patch, schema("", "Pod")), expected);
}

#[test]
fn set_element_order_reorders_containers() {
    let pod = json!({"spec": {"containers": [{"name": "a", "image": "a"}, {"name": "b", "image": "b"}, {"name": "c", "image": "c"}]}});
    let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}});
    let expected = json!({"spec": {"containers": [{"name": "c", "image": "c"}, {"name": "a", "image": "a"}, {"name": "b", "image": "b"}]}});
    assert_eq!(merged(pod, patch, schema("", "Pod")), expected);
}

#[test]
fn kubectl_apply_changes_an_image_and_inserts_a_container() {
    // The live object has a field the server defaulted, which the patch must keep.
    let pod = json!({"spec": {"containers": [
        {"name": "web", "image": "nginx:1.26", "terminationMessagePath": "/dev/termination-log"},
        {"name": "sidecar", "image": "envoy"},
    ]}});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "metrics"}, {"name": "sidecar"}],
        "containers": [{"name": "web", "image": "nginx:1.27"}, {"name": "metrics", "image": "prom"}],
    }});
    let expected = json!({"spec": {"containers": [
        {"name": "web", "image": "nginx:1.27", "terminationMessagePath": "/dev/termination-log"},
        {"name": "metrics", "image": "prom"},
        {"name": "sidecar", "image": "envoy"},
    ]}});
    assert_eq!(merged(pod, patch, schema("", "Pod")), expected);
}

#[test]
fn tolerations_are_replaced() {
    let pod = json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists"}]}});
    let patch = json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}});
    let expected = json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}});
    assert_eq!(merged(pod, patch, schema("", "Pod")), expected);
}

#[test]
fn a_volume_changes_source_through_retain_keys() {
    let pod = json!({"spec": {"volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c1"}}]}});
    let patch = json!({"spec": {"volumes": [{"$retainKeys": ["configMap", "name"], "name": "data", "configMap": {"name": "c2"}}]}});
    let expected = json!({"spec": {"volumes": [{"name": "data", "configMap": {"name": "c2"}}, {"name": "cfg", "configMap": {"name": "c1"}}]}});
    assert_eq!(merged(pod, patch, schema("", "Pod")), expected);
}

#[test]
fn deployment_strategy_and_template() {
    let deployment = json!({"spec": {
        "replicas": 1,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "app", "image": "a:1"}]}},
    }});
    let patch = json!({"spec": {
        "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null},
        "template": {"spec": {"containers": [{"name": "app", "image": "a:2"}]}},
    }});
    let expected = json!({"spec": {
        "replicas": 1,
        "strategy": {"type": "Recreate"},
        "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "app", "image": "a:2"}]}},
    }});
    assert_eq!(
        merged(deployment, patch, schema("apps", "Deployment")),
        expected
    );
}

#[test]
fn replica_set_template_containers_merge() {
    let replica_set = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}}}});
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "2"}]}}}});
    let expected = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}}}});
    assert_eq!(
        merged(replica_set, patch, schema("apps", "ReplicaSet")),
        expected
    );
}

#[test]
fn node_status_merges_by_type() {
    let node = json!({
        "spec": {"podCIDRs": ["10.0.0.0/24"]},
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "MemoryPressure", "status": "False"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}, {"type": "Hostname", "address": "n1"}],
        },
    });
    let patch = json!({
        "spec": {"podCIDRs": ["fd00::/64"]},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "addresses": [{"type": "ExternalIP", "address": "1.2.3.4"}],
        },
    });
    // Elements the server does not know yet come first when the patch gives no order, as in Go.
    let expected = json!({
        "spec": {"podCIDRs": ["fd00::/64", "10.0.0.0/24"]},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}, {"type": "MemoryPressure", "status": "False"}],
            "addresses": [
                {"type": "ExternalIP", "address": "1.2.3.4"},
                {"type": "InternalIP", "address": "10.0.0.5"},
                {"type": "Hostname", "address": "n1"},
            ],
        },
    });
    assert_eq!(merged(node, patch, schema("", "Node")), expected);
}

#[test]
fn service_ports_merge_by_port() {
    let service = json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "https", "port": 443, "targetPort": 8443}]}});
    let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 8443, "name": "alt"}]}});
    let expected = json!({"spec": {"ports": [
        {"name": "http", "port": 80, "targetPort": 9090},
        {"port": 8443, "name": "alt"},
        {"name": "https", "port": 443, "targetPort": 8443},
    ]}});
    assert_eq!(merged(service, patch, schema("", "Service")), expected);
}

#[test]
fn metadata_labels_finalizers_and_owners() {
    let config_map = json!({"metadata": {
        "labels": {"a": "1", "b": "2"},
        "finalizers": ["x", "y"],
        "ownerReferences": [{"uid": "u1", "kind": "ReplicaSet", "name": "rs1"}],
    }, "data": {"k": "v"}});
    let patch = json!({"metadata": {
        "labels": {"a": null, "c": "3"},
        "finalizers": ["z"],
        "$deleteFromPrimitiveList/finalizers": ["x"],
        "ownerReferences": [{"uid": "u2", "kind": "ReplicaSet", "name": "rs2"}, {"uid": "u1", "controller": true}],
    }, "data": {"k": null, "k2": "v2"}});
    let expected = json!({"metadata": {
        "labels": {"b": "2", "c": "3"},
        "finalizers": ["z", "y"],
        "ownerReferences": [
            {"uid": "u2", "kind": "ReplicaSet", "name": "rs2"},
            {"uid": "u1", "kind": "ReplicaSet", "name": "rs1", "controller": true},
        ],
    }, "data": {"k2": "v2"}});
    assert_eq!(merged(config_map, patch, schema("", "ConfigMap")), expected);
}

#[test]
fn namespace_spec_finalizers_are_replaced_but_metadata_finalizers_merge() {
    let namespace =
        json!({"metadata": {"finalizers": ["a"]}, "spec": {"finalizers": ["kubernetes"]}});
    let patch = json!({"metadata": {"finalizers": ["b"]}, "spec": {"finalizers": ["other"]}});
    let expected =
        json!({"metadata": {"finalizers": ["b", "a"]}, "spec": {"finalizers": ["other"]}});
    assert_eq!(merged(namespace, patch, schema("", "Namespace")), expected);
}

#[test]
fn pod_status_conditions_merge_and_container_statuses_are_replaced() {
    let pod = json!({"status": {
        "conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [{"name": "a", "ready": false}, {"name": "b", "ready": false}],
    }});
    let patch = json!({"status": {
        "$setElementOrder/conditions": [{"type": "Ready"}, {"type": "PodScheduled"}],
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "a", "ready": true}],
    }});
    let expected = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [{"name": "a", "ready": true}],
    }});
    assert_eq!(merged(pod, patch, schema("", "Pod")), expected);
}
