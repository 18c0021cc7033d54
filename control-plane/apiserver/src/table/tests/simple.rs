//! Namespace, ConfigMap, Secret, Lease, ResourceQuota and LimitRange rows, cell for cell as
//! `kubectl get` shows them.

use serde_json::json;

use super::{cells, column_names, object};

#[test]
fn namespace() {
    assert_eq!(column_names("namespaces"), ["Name", "Status", "Age"]);
    let active = object(
        "v1",
        "Namespace",
        "default",
        3 * 86_400,
        json!({"status": {"phase": "Active"}}),
    );
    assert_eq!(
        cells("namespaces", active),
        json!(["default", "Active", "3d"])
    );
    let deleting = object(
        "v1",
        "Namespace",
        "old",
        60,
        json!({"status": {"phase": "Terminating"}}),
    );
    assert_eq!(
        cells("namespaces", deleting),
        json!(["old", "Terminating", "60s"])
    );
    let unset = object("v1", "Namespace", "new", 60, json!({}));
    assert_eq!(cells("namespaces", unset), json!(["new", "Active", "60s"]));
}

#[test]
fn config_map() {
    assert_eq!(column_names("configmaps"), ["Name", "Data", "Age"]);
    let config = object(
        "v1",
        "ConfigMap",
        "settings",
        600,
        json!({
            "data": {"mode": "fast", "level": "3"},
            "binaryData": {"logo.png": "iVBORw0KGgo="},
        }),
    );
    assert_eq!(cells("configmaps", config), json!(["settings", 3, "10m"]));
    assert_eq!(
        cells(
            "configmaps",
            object("v1", "ConfigMap", "empty", 600, json!({}))
        ),
        json!(["empty", 0, "10m"])
    );
}

#[test]
fn secret() {
    assert_eq!(column_names("secrets"), ["Name", "Type", "Data", "Age"]);
    let tls = object(
        "v1",
        "Secret",
        "tls",
        600,
        json!({
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"},
        }),
    );
    assert_eq!(
        cells("secrets", tls),
        json!(["tls", "kubernetes.io/tls", 2, "10m"])
    );
    assert_eq!(
        cells("secrets", object("v1", "Secret", "bare", 600, json!({}))),
        json!(["bare", "Opaque", 0, "10m"])
    );
}

#[test]
fn lease() {
    assert_eq!(column_names("leases"), ["Name", "Holder", "Age"]);
    let held = object(
        "coordination.k8s.io/v1",
        "Lease",
        "kube-scheduler",
        600,
        json!({
            "spec": {"holderIdentity": "node-1_5f3a", "leaseDurationSeconds": 15},
        }),
    );
    assert_eq!(
        cells("leases", held),
        json!(["kube-scheduler", "node-1_5f3a", "10m"])
    );
    let free = object(
        "coordination.k8s.io/v1",
        "Lease",
        "free",
        600,
        json!({"spec": {}}),
    );
    assert_eq!(cells("leases", free), json!(["free", "", "10m"]));
}

#[test]
fn resource_quota() {
    assert_eq!(
        column_names("resourcequotas"),
        ["Name", "Request", "Limit", "Age"]
    );
    let quota = object(
        "v1",
        "ResourceQuota",
        "compute",
        600,
        json!({
            "spec": {"hard": {"requests.cpu": "1", "requests.memory": "1Gi", "limits.cpu": "2", "pods": "10"}},
            "status": {
                "hard": {"requests.cpu": "1", "requests.memory": "1Gi", "limits.cpu": "2", "pods": "10"},
                "used": {"requests.cpu": "500m", "limits.cpu": "1", "pods": "3"},
            },
        }),
    );
    assert_eq!(
        cells("resourcequotas", quota),
        json!([
            "compute",
            "pods: 3/10, requests.cpu: 500m/1, requests.memory: 0/1Gi",
            "limits.cpu: 1/2",
            "10m"
        ])
    );
    let unset = object(
        "v1",
        "ResourceQuota",
        "new",
        600,
        json!({"spec": {"hard": {"pods": "10"}}}),
    );
    assert_eq!(
        cells("resourcequotas", unset),
        json!(["new", "", "", "10m"])
    );
}

#[test]
fn limit_range() {
    assert_eq!(column_names("limitranges"), ["Name", "Created At"]);
    let table = super::table_of("limitranges", &[], super::IncludeObject::None);
    assert_eq!(table["columnDefinitions"][1]["type"], "date");
    let range = json!({
        "apiVersion": "v1", "kind": "LimitRange",
        "metadata": {"name": "limits", "namespace": "team", "creationTimestamp": "2026-12-01T10:00:00Z"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}}]},
    });
    assert_eq!(
        cells("limitranges", range),
        json!(["limits", "2026-12-01T10:00:00Z"])
    );
    // No timestamp, or a hostile one: an empty cell, never a panic.
    let odd = json!({"metadata": {"name": "odd", "creationTimestamp": 5}});
    assert_eq!(cells("limitranges", odd), json!(["odd", ""]));
}
