//! Node rows, cell for cell as `kubectl get -o wide` shows them.

use serde_json::json;

use super::{cells, column_names, object};

#[test]
fn node() {
    assert_eq!(
        column_names("nodes"),
        [
            "Name",
            "Status",
            "Roles",
            "Age",
            "Version",
            "Internal-IP",
            "External-IP",
            "OS-Image",
            "Kernel-Version",
            "Container-Runtime"
        ]
    );
    let node = object(
        "v1",
        "Node",
        "node-1",
        2 * 86_400,
        json!({
            "spec": {},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "node-1"}],
                "nodeInfo": {
                    "kubeletVersion": "v1.37.0",
                    "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "kernelVersion": "6.1.0-28-amd64",
                    "containerRuntimeVersion": "containerd://2.0.0",
                },
            },
        }),
    );
    let mut node = node;
    node["metadata"]["labels"] =
        json!({"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "node-1"});
    assert_eq!(
        cells("nodes", node),
        json!([
            "node-1",
            "Ready",
            "control-plane",
            "2d",
            "v1.37.0",
            "10.0.0.1",
            "<none>",
            "Debian GNU/Linux 12 (bookworm)",
            "6.1.0-28-amd64",
            "containerd://2.0.0"
        ])
    );
}

#[test]
fn cordoned_and_unreported_nodes() {
    let mut cordoned = object(
        "v1",
        "Node",
        "node-2",
        600,
        json!({
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}],
                       "addresses": [{"type": "ExternalIP", "address": "203.0.113.9"}]},
        }),
    );
    cordoned["metadata"]["labels"] =
        json!({"kubernetes.io/role": "worker", "node-role.kubernetes.io/infra": ""});
    let row = cells("nodes", cordoned);
    assert_eq!(row[1], "NotReady,SchedulingDisabled");
    assert_eq!(row[2], "infra,worker");
    assert_eq!(row[5], "<none>");
    assert_eq!(row[6], "203.0.113.9");

    // Kubernetes' own TestPrintNodeInternalIP expectation for a node with nothing reported.
    assert_eq!(
        cells("nodes", json!({"metadata": {"name": "foo1"}})),
        json!([
            "foo1",
            "Unknown",
            "<none>",
            "<unknown>",
            "",
            "<none>",
            "<none>",
            "<unknown>",
            "<unknown>",
            "<unknown>"
        ])
    );
}
