//! Nodes (`printNode`): readiness, roles from the role labels, and what the kubelet reports
//! about the machine.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use super::columns::{Column, Printer, Row, AGE, NAME};
use super::duration::age;
use super::fields::{bool_at, items_at, name, object_at, str_at};

pub(super) const PRINTER: Printer = Printer {
    columns: COLUMNS,
    row,
};

const COLUMNS: &[Column] = &[
    NAME,
    Column::new("Status", "string", "The status of the node"),
    Column::new("Roles", "string", "The roles of the node"),
    AGE,
    Column::new("Version", "string", "Kubelet Version reported by the node."),
    Column::new("Internal-IP", "string", ADDRESSES_DESCRIPTION).wide(),
    Column::new("External-IP", "string", ADDRESSES_DESCRIPTION).wide(),
    Column::new(
        "OS-Image",
        "string",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    )
    .wide(),
    Column::new(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    )
    .wide(),
    Column::new(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. \
         containerd://1.4.2).",
    )
    .wide(),
];

/// `apiv1.NodeStatus{}.SwaggerDoc()["addresses"]`, the description of both IP columns.
const ADDRESSES_DESCRIPTION: &str = "List of addresses reachable to the node. Queried from \
    cloud provider, if available. More info: \
    https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is \
    declared as mergeable, but the merge key is not sufficiently unique, which can cause data \
    corruption when it is merged. Callers should instead use a full-replacement patch. See \
    https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change \
    during the lifetime of a Node. However, there are some exceptions where this may not be \
    possible, such as Pods that inherit a Node's address in its own status or consumers of the \
    downward API (status.hostIP).";

/// `node-role.kubernetes.io/<role>` labels name a role each...
const ROLE_LABEL_PREFIX: &str = "node-role.kubernetes.io/";
/// ...and the older `kubernetes.io/role=<role>` label names one by its value.
const ROLE_LABEL: &str = "kubernetes.io/role";

fn row(node: &Value, now: Timestamp) -> Row {
    Row::new(vec![
        name(node).into(),
        status(node).into(),
        roles(node).into(),
        age(node, now).into(),
        node_info(node, "kubeletVersion").into(),
        address(node, "InternalIP").into(),
        address(node, "ExternalIP").into(),
        or_unknown(node_info(node, "osImage")).into(),
        or_unknown(node_info(node, "kernelVersion")).into(),
        or_unknown(node_info(node, "containerRuntimeVersion")).into(),
    ])
}

/// A field of what the kubelet reports about the machine (`status.nodeInfo`).
fn node_info<'a>(node: &'a Value, field: &str) -> &'a str {
    str_at(node, &["status", "nodeInfo", field])
}

fn or_unknown(value: &str) -> &str {
    if value.is_empty() {
        "<unknown>"
    } else {
        value
    }
}

/// STATUS: `Ready` or `NotReady` from the Ready condition (`Unknown` without one), then
/// `SchedulingDisabled` when the node is cordoned.
fn status(node: &Value) -> String {
    // Go indexes the conditions by type, so of repeated Ready conditions the last one counts.
    let ready = items_at(node, &["status", "conditions"])
        .iter()
        .rev()
        .find(|condition| str_at(condition, &["type"]) == "Ready");
    let mut parts = vec![match ready {
        Some(ready) if str_at(ready, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if bool_at(node, &["spec", "unschedulable"]) {
        parts.push("SchedulingDisabled");
    }
    parts.join(",")
}

/// `findNodeRoles`: the roles named by the role labels, sorted, comma-joined; `<none>` when
/// there are none.
fn roles(node: &Value) -> String {
    let mut roles = BTreeSet::new();
    for (key, value) in object_at(node, &["metadata", "labels"])
        .into_iter()
        .flatten()
    {
        if let Some(role) = key.strip_prefix(ROLE_LABEL_PREFIX) {
            if !role.is_empty() {
                roles.insert(role);
            }
        } else if key == ROLE_LABEL {
            let role = value.as_str().unwrap_or("");
            if !role.is_empty() {
                roles.insert(role);
            }
        }
    }
    if roles.is_empty() {
        return "<none>".to_string();
    }
    roles.into_iter().collect::<Vec<_>>().join(",")
}

/// The first address of the type (`InternalIP`, `ExternalIP`), `<none>` without one.
fn address<'a>(node: &'a Value, kind: &str) -> &'a str {
    items_at(node, &["status", "addresses"])
        .iter()
        .find(|address| str_at(address, &["type"]) == kind)
        .map_or("<none>", |address| str_at(address, &["address"]))
}
