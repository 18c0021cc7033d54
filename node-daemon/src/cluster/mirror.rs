//! Mirror pods, as the kubelet makes them: every static pod this node runs from its manifest
//! directory is shown in the API as a pod bound to the node, so `kubectl get pods` lists what
//! really runs here. The mirror is read-only in effect: deleting it does not stop the static
//! pod (a new mirror appears), and its status is the static pod's, reported by the status
//! reporter through the `kubernetes.io/config.mirror` annotation.
//!
//! A mirror is named `<name>-<node>` (the kubelet's name for a static pod, so the same
//! manifest on two nodes gives two pods), carries the kubelet's annotations —
//! `kubernetes.io/config.mirror` and `kubernetes.io/config.hash` (the static pod's uid, which
//! changes with its content) and `kubernetes.io/config.source: file` — and is owned by its
//! Node, so the garbage collector removes it with the node. A mirror whose static pod changed
//! or went away is deleted; the API server lets a node create mirror pods only, bound to itself.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{
    api::{DeleteParams, PostParams, Preconditions},
    runtime::reflector::Store,
    Api, Client, ResourceExt,
};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use keel_runtime::DesiredPod;

pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
/// How often a failed round is tried again (a namespace created later, the API back).
const RETRY: Duration = Duration::from_secs(5);

/// The static pod a mirror stands for (its `config.mirror` annotation), if it is one.
pub fn mirrored_uid(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(MIRROR_ANNOTATION)
        .map(String::as_str)
}

/// The kubelet's name for a static pod on `node`: `<name>-<node>`.
pub fn mirror_name(name: &str, node: &str) -> String {
    format!("{name}-{node}")
}

/// The mirror of `desired` on `node` (uid `node_uid`), as the API should hold it.
pub fn mirror_object(desired: &DesiredPod, node: &str, node_uid: &str) -> Result<Pod, String> {
    let mut object =
        serde_json::to_value(&desired.pod).map_err(|e| format!("the static pod: {e}"))?;
    let name = mirror_name(&desired.pod.metadata.name, node);
    let metadata = object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or("the static pod has no metadata")?;
    metadata.insert("name".into(), Value::String(name.clone()));
    for server_owned in ["uid", "resourceVersion", "creationTimestamp", "generation"] {
        metadata.remove(server_owned);
    }
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or("the static pod's annotations are not a map")?;
    annotations.insert(MIRROR_ANNOTATION.into(), Value::String(desired.uid.clone()));
    annotations.insert(HASH_ANNOTATION.into(), Value::String(desired.uid.clone()));
    annotations.insert(SOURCE_ANNOTATION.into(), Value::String("file".into()));
    metadata.insert(
        "ownerReferences".into(),
        json!([{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid,
                "controller": true}]),
    );
    object["spec"]["nodeName"] = Value::String(node.to_owned());
    let errors = keel_api::validation::validate_object_name(
        "metadata.name",
        &name,
        keel_api::validation::NameRule::Dns1123Subdomain,
    );
    if let Some(error) = errors.first() {
        return Err(format!("mirror pod name {name:?}: {error}"));
    }
    serde_json::from_value(object).map_err(|e| format!("the mirror pod {name:?}: {e}"))
}

/// What one round does to the API's pods.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Mirrors to create: (namespace, object).
    pub create: Vec<(String, Pod)>,
    /// Mirrors to delete: (namespace, name, uid) — of a changed or removed static pod.
    pub delete: Vec<(String, String, String)>,
}

/// Compares the static pods with the mirrors in the API (`existing`, the pods bound here).
pub fn plan(
    statics: &[DesiredPod],
    existing: &[Arc<Pod>],
    node: &str,
    node_uid: &str,
) -> (Plan, Vec<String>) {
    let mut plan = Plan::default();
    let mut problems = Vec::new();
    let mirrors: BTreeMap<(String, String), &Pod> = existing
        .iter()
        .filter(|p| mirrored_uid(p).is_some())
        .map(|p| {
            (
                (p.namespace().unwrap_or_default(), p.name_any()),
                p.as_ref(),
            )
        })
        .collect();
    let mut wanted = std::collections::BTreeSet::new();
    for desired in statics {
        let namespace = desired.pod.metadata.namespace().to_owned();
        let name = mirror_name(&desired.pod.metadata.name, node);
        wanted.insert((namespace.clone(), name.clone()));
        match mirrors.get(&(namespace.clone(), name.clone())) {
            Some(mirror) if mirrored_uid(mirror) == Some(desired.uid.as_str()) => {}
            // Being deleted (by someone, or by us): a new one follows once it is gone.
            Some(mirror) if mirror.metadata.deletion_timestamp.is_some() => {}
            Some(mirror) => plan.delete.push((
                namespace,
                name,
                mirror.uid().unwrap_or_default(),
            )),
            None => match existing
                .iter()
                .find(|p| p.namespace().as_deref() == Some(namespace.as_str()) && p.name_any() == name)
            {
                // A pod of that name that is not a mirror (bound here by someone else): left
                // alone, and said so.
                Some(_) => problems.push(format!(
                    "pod {namespace}/{name} exists and is not a mirror pod; no mirror for the static pod"
                )),
                None => match mirror_object(desired, node, node_uid) {
                    Ok(object) => plan.create.push((namespace, object)),
                    Err(error) => problems.push(error),
                },
            },
        }
    }
    for ((namespace, name), mirror) in &mirrors {
        if !wanted.contains(&(namespace.clone(), name.clone()))
            && mirror.metadata.deletion_timestamp.is_none()
        {
            plan.delete.push((
                namespace.clone(),
                name.clone(),
                mirror.uid().unwrap_or_default(),
            ));
        }
    }
    (plan, problems)
}

/// Keeps the mirrors in line with `statics` until `stop`. `wake` is notified by the watch of
/// the pods bound here.
pub async fn run(
    client: Client,
    node: String,
    pods: Store<Pod>,
    mut statics: watch::Receiver<Option<Vec<DesiredPod>>>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut node_uid: Option<String> = None;
    loop {
        // Cloned out: the watch's lock is not held across the round's requests.
        let current = statics.borrow_and_update().clone();
        let ok = match current {
            // Not listed yet: nothing decided (a restart must not delete every mirror).
            None => true,
            Some(current) => round(&client, &node, &mut node_uid, &pods, &current).await,
        };
        let retry = async {
            if ok {
                std::future::pending::<()>().await;
            } else {
                tokio::time::sleep(RETRY).await;
            }
        };
        tokio::select! {
            () = wake.notified() => {}
            changed = statics.changed() => if changed.is_err() { return },
            () = retry => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// One round; false when something failed and should be tried again.
async fn round(
    client: &Client,
    node: &str,
    node_uid: &mut Option<String>,
    pods: &Store<Pod>,
    statics: &[DesiredPod],
) -> bool {
    let existing = pods.state();
    if existing.is_empty() && statics.is_empty() {
        return true;
    }
    let uid = match node_uid {
        Some(uid) => uid.clone(),
        None => match Api::<Node>::all(client.clone()).get(node).await {
            Ok(object) => {
                let uid = object.uid().unwrap_or_default();
                *node_uid = Some(uid.clone());
                uid
            }
            Err(error) => {
                tracing::warn!(%error, "reading this node's uid for its mirror pods");
                return false;
            }
        },
    };
    let (plan, problems) = plan(statics, &existing, node, &uid);
    for problem in &problems {
        tracing::warn!("{problem}");
    }
    let mut ok = problems.is_empty();
    for (namespace, name, pod_uid) in plan.delete {
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(pod_uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => tracing::info!(pod = %format!("{namespace}/{name}"), "mirror pod deleted"),
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            Err(error) => {
                tracing::warn!(pod = %format!("{namespace}/{name}"), %error, "deleting a mirror pod");
                ok = false;
            }
        }
    }
    for (namespace, object) in plan.create {
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let name = object.name_any();
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => tracing::info!(pod = %format!("{namespace}/{name}"), "mirror pod created"),
            // Created meanwhile (the watch has not shown it yet): the next round sees it.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => {
                tracing::warn!(pod = %format!("{namespace}/{name}"), %error, "creating a mirror pod");
                ok = false;
            }
        }
    }
    ok
}

#[cfg(test)]
mod tests;
