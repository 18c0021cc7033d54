//! Deployment and ReplicaSet rows, cell for cell as `kubectl get -o wide` shows them.

use serde_json::{json, Value};

use super::{cells, column_names, object};

#[test]
fn deployment() {
    assert_eq!(
        column_names("deployments"),
        [
            "Name",
            "Ready",
            "Up-to-date",
            "Available",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
    let deployment = object(
        "apps/v1",
        "Deployment",
        "web",
        12_000,
        json!({
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [
                    {"name": "nginx", "image": "nginx:1.27"},
                    {"name": "sidecar", "image": "busybox"},
                ]}},
            },
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        }),
    );
    assert_eq!(
        cells("deployments", deployment),
        json!([
            "web",
            "2/3",
            3,
            2,
            "3h20m",
            "nginx,sidecar",
            "nginx:1.27,busybox",
            "app=web"
        ])
    );
}

#[test]
fn deployment_defaults_and_selectors() {
    // No replicas means the default of 1; no selector prints as nothing at all.
    let bare = object("apps/v1", "Deployment", "web", 60, json!({}));
    assert_eq!(
        cells("deployments", bare),
        json!(["web", "0/1", 0, 0, "60s", "", "", ""])
    );

    let selector = |selector: Value| {
        cells(
            "deployments",
            object(
                "apps/v1",
                "Deployment",
                "web",
                60,
                json!({"spec": {"selector": selector}}),
            ),
        )[7]
        .clone()
    };
    assert_eq!(
        selector(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["web", "api"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "track", "operator": "NotIn", "values": ["beta"]},
            ],
        })),
        "app=web,!canary,tier in (api,web),track notin (beta)"
    );
    assert_eq!(
        selector(json!({"matchExpressions": [{"key": "tier", "operator": "Bogus"}]})),
        "<invalid>"
    );
    assert_eq!(
        selector(json!({"matchLabels": {"bad key!": "x"}})),
        "<invalid>"
    );
}

#[test]
fn replica_set() {
    assert_eq!(
        column_names("replicasets"),
        [
            "Name",
            "Desired",
            "Current",
            "Ready",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
    let replica_set = object(
        "apps/v1",
        "ReplicaSet",
        "web-5d4f8",
        12_000,
        json!({
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d4f8"}},
                "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}},
            },
            "status": {"replicas": 3, "readyReplicas": 2},
        }),
    );
    assert_eq!(
        cells("replicasets", replica_set),
        json!([
            "web-5d4f8",
            3,
            3,
            2,
            "3h20m",
            "nginx",
            "nginx:1.27",
            "app=web,pod-template-hash=5d4f8"
        ])
    );
    let bare = object("apps/v1", "ReplicaSet", "web", 60, json!({}));
    assert_eq!(
        cells("replicasets", bare),
        json!(["web", 1, 0, 0, "60s", "", "", "<none>"])
    );
    let invalid = object(
        "apps/v1",
        "ReplicaSet",
        "web",
        60,
        json!({
            "spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": []}]}},
        }),
    );
    assert_eq!(cells("replicasets", invalid)[7], "<error>");
}
