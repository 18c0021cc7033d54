//! Deployments (`printDeployment`) and ReplicaSets (`printReplicaSet`): replica counts, and in
//! the wide columns the pod template's containers and the selector.

use jiff::Timestamp;
use serde_json::Value;

use super::columns::{Column, Printer, Row, AGE, CONTAINERS, IMAGES, NAME};
use super::duration::age;
use super::fields::{at, container_cells, int_at, items_at, name};
use super::selector::{format_label_selector, selector_string};

pub(super) const DEPLOYMENTS: Printer = Printer {
    columns: DEPLOYMENT_COLUMNS,
    row: deployment_row,
};

pub(super) const REPLICA_SETS: Printer = Printer {
    columns: REPLICA_SET_COLUMNS,
    row: replica_set_row,
};

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    Column::new("Ready", "string", "Number of the pod with ready state"),
    Column::new(
        "Up-to-date",
        "string",
        "Total number of non-terminating pods targeted by this deployment that have the desired \
         template spec.",
    ),
    Column::new(
        "Available",
        "string",
        "Total number of available non-terminating pods (ready for at least minReadySeconds) \
         targeted by this deployment.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    Column::new(
        "Selector",
        "string",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be \
         the ones affected by this deployment.",
    )
    .wide(),
];

const REPLICA_SET_COLUMNS: &[Column] = &[
    NAME,
    Column::new(
        "Desired",
        "integer",
        "Replicas is the number of desired pods. This is a pointer to distinguish between \
         explicit zero and unspecified. Defaults to 1. More info: \
         https://kubernetes.io/docs/concepts/workloads/controllers/replicaset",
    ),
    Column::new(
        "Current",
        "integer",
        "Replicas is the most recently observed number of non-terminating pods. More info: \
         https://kubernetes.io/docs/concepts/workloads/controllers/replicaset",
    ),
    Column::new(
        "Ready",
        "integer",
        "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    Column::new(
        "Selector",
        "string",
        "Selector is a label query over pods that should match the replica count. If the \
         selector is empty, it is defaulted to the labels present on the pod template. Label \
         keys and values that must match in order to be controlled by this replica set. More \
         info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
    )
    .wide(),
];

fn deployment_row(deployment: &Value, now: Timestamp) -> Row {
    let desired = desired_replicas(deployment);
    let ready = status_count(deployment, "readyReplicas");
    let (containers, images) = template_containers(deployment);
    // printDeployment writes the selector itself rather than through FormatLabelSelector, so
    // an empty selector is an empty cell and an invalid one `<invalid>`.
    let selector = selector_string(at(deployment, &["spec", "selector"]))
        .unwrap_or_else(|_| "<invalid>".to_string());
    Row::new(vec![
        name(deployment).into(),
        format!("{ready}/{desired}").into(),
        status_count(deployment, "updatedReplicas").into(),
        status_count(deployment, "availableReplicas").into(),
        age(deployment, now).into(),
        containers.into(),
        images.into(),
        selector.into(),
    ])
}

fn replica_set_row(replica_set: &Value, now: Timestamp) -> Row {
    let (containers, images) = template_containers(replica_set);
    Row::new(vec![
        name(replica_set).into(),
        desired_replicas(replica_set).into(),
        status_count(replica_set, "replicas").into(),
        status_count(replica_set, "readyReplicas").into(),
        age(replica_set, now).into(),
        containers.into(),
        images.into(),
        format_label_selector(at(replica_set, &["spec", "selector"])).into(),
    ])
}

/// `spec.replicas`; apps/v1 defaults an unset count to 1, and kube-apiserver prints the
/// defaulted object.
fn desired_replicas(obj: &Value) -> i64 {
    int_at(obj, &["spec", "replicas"]).unwrap_or(1)
}

fn status_count(obj: &Value, field: &str) -> i64 {
    int_at(obj, &["status", field]).unwrap_or(0)
}

fn template_containers(obj: &Value) -> (String, String) {
    container_cells(items_at(obj, &["spec", "template", "spec", "containers"]))
}
