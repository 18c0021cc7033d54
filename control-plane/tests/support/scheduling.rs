//! Cluster objects the scheduler tests create through kube-rs: nodes registered as a node
//! daemon would, pods, and waiting for their bindings.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

pub const ZONE: &str = "topology.kubernetes.io/zone";
pub const HOSTNAME: &str = "kubernetes.io/hostname";

/// Registers a node as a node daemon would: the object, then its status (capacity).
pub async fn add_node(nodes: &Api<Node>, name: &str, zone: &str, cpu: &str, extra: Value) {
    let mut labels = json!({ZONE: zone, HOSTNAME: name});
    if let (Some(labels), Some(more)) = (labels.as_object_mut(), extra.pointer("/labels")) {
        for (k, v) in more.as_object().into_iter().flatten() {
            labels.insert(k.clone(), v.clone());
        }
    }
    let mut object = json!({"metadata": {"name": name, "labels": labels}, "spec": {}});
    if let Some(taints) = extra.pointer("/taints") {
        object["spec"]["taints"] = taints.clone();
    }
    if extra.pointer("/unschedulable").is_some() {
        object["spec"]["unschedulable"] = json!(true);
    }
    let node: Node = serde_json::from_value(object).expect("a Node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .unwrap_or_else(|e| panic!("node {name} created: {e}"));
    let capacity = json!({"cpu": cpu, "memory": "16Gi", "pods": "110"});
    let status = json!({"status": {
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [{"type": "Ready", "status": "True"}],
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap_or_else(|e| panic!("node {name} status: {e}"));
}

pub async fn create_pod(pods: &Api<Pod>, object: Value) {
    let pod: Pod = serde_json::from_value(object).expect("a Pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("pod created");
}

pub fn container(cpu: &str) -> Value {
    json!([{"name": "c", "image": "registry.invalid/pause:1", "resources": {"requests": {"cpu": cpu}}}])
}

/// Waits until each of `names` is bound; returns name → node.
pub async fn wait_bound(pods: &Api<Pod>, names: &[String]) -> BTreeMap<String, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = pods.list(&ListParams::default()).await.expect("list pods");
        let placed: BTreeMap<String, String> = list
            .items
            .iter()
            .filter_map(|pod| {
                let name = pod.metadata.name.clone()?;
                let node = pod.spec.as_ref()?.node_name.clone()?;
                names.contains(&name).then_some((name, node))
            })
            .collect();
        if placed.len() == names.len() {
            return placed;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("not every pod was bound in 30 s: {placed:?} of {names:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
