//! The Node authorizer and NodeRestriction, as kube-apiserver runs them for kubelets: a node
//! (`system:node:<name>` in `system:nodes`) holds the `system:node` rules, narrowed to
//! itself — it reads only the Secrets, ConfigMaps, PersistentVolumeClaims and
//! ServiceAccounts that pods bound to it use (one by one, never by list), requests tokens
//! only for those ServiceAccounts, and writes only its own Node, its own Lease, the status of
//! its own pods, and mirror pods bound to itself.
//!
//! kube-apiserver keeps a graph of pod → secret edges; keel asks the pod cache, which holds
//! the same facts, on each such request (pods are few per node, the requests rare: a kubelet
//! reads a secret when it starts a pod).

use std::sync::Arc;

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::Value;

use super::attributes::Request;
use super::{rbac, UserInfo};
use crate::cache::Cacher;
use crate::status::ApiError;

pub const NODES_GROUP: &str = "system:nodes";
const NODE_PREFIX: &str = "system:node:";

/// The node a user is, if it is one.
pub fn node_of(user: &UserInfo) -> Option<&str> {
    let name = user.name.strip_prefix(NODE_PREFIX)?;
    (!name.is_empty() && user.groups.iter().any(|g| g == NODES_GROUP)).then_some(name)
}

pub struct NodeAuthorizer {
    rules: Vec<PolicyRule>,
    pods: Arc<Cacher>,
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Whether `pod` uses the object `resource`/`name` (volumes, projected sources, environment,
/// image pull secrets, its ServiceAccount).
fn pod_uses(pod: &Value, resource: &str, name: &str) -> bool {
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    let items = |v: &Value, key: &str| -> Vec<Value> {
        v.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    match resource {
        // A mirror pod runs under no ServiceAccount (the static pod it shows has none): it
        // must not let its node mint tokens for its namespace's `default`.
        "serviceaccounts" if is_mirror(pod) => false,
        "serviceaccounts" => {
            let account = match text(&spec, "/serviceAccountName") {
                "" => "default",
                named => named,
            };
            account == name
        }
        "persistentvolumeclaims" => items(&spec, "volumes")
            .iter()
            .any(|v| text(v, "/persistentVolumeClaim/claimName") == name),
        "secrets" | "configmaps" => {
            let (volume_key, volume_name, env_key, projection) = if resource == "secrets" {
                ("secret", "/secret/secretName", "secretKeyRef", "secret")
            } else {
                (
                    "configMap",
                    "/configMap/name",
                    "configMapKeyRef",
                    "configMap",
                )
            };
            let volumes = items(&spec, "volumes");
            let in_volumes = volumes.iter().any(|v| {
                (v.get(volume_key).is_some() && text(v, volume_name) == name)
                    || items(v.get("projected").unwrap_or(&Value::Null), "sources")
                        .iter()
                        .any(|s| text(s, &format!("/{projection}/name")) == name)
            });
            let pull = resource == "secrets"
                && items(&spec, "imagePullSecrets")
                    .iter()
                    .any(|s| text(s, "/name") == name);
            let containers: Vec<Value> = ["containers", "initContainers", "ephemeralContainers"]
                .iter()
                .flat_map(|k| items(&spec, k))
                .collect();
            let ref_key = if resource == "secrets" {
                "secretRef"
            } else {
                "configMapRef"
            };
            let in_env = containers.iter().any(|c| {
                items(c, "env")
                    .iter()
                    .any(|e| text(e, &format!("/valueFrom/{env_key}/name")) == name)
                    || items(c, "envFrom")
                        .iter()
                        .any(|e| text(e, &format!("/{ref_key}/name")) == name)
            });
            in_volumes || pull || in_env
        }
        _ => false,
    }
}

fn is_mirror(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_some()
}

/// What a mirror pod may not reference, as NodeRestriction refuses it: a node that could create
/// a pod naming a Secret, ConfigMap, claim or ServiceAccount would be granted that object by
/// the Node authorizer. The first reference found.
fn mirror_reference(pod: &Value) -> Option<&'static str> {
    let spec = pod.get("spec")?;
    let list = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    if !text(spec, "/serviceAccountName").is_empty() {
        return Some("service accounts");
    }
    if !list(spec, "imagePullSecrets").is_empty() {
        return Some("secrets");
    }
    for volume in list(spec, "volumes") {
        if volume.get("secret").is_some() {
            return Some("secrets");
        }
        if volume.get("configMap").is_some() {
            return Some("configmaps");
        }
        if volume.get("persistentVolumeClaim").is_some() || volume.get("ephemeral").is_some() {
            return Some("persistentvolumeclaims");
        }
        for source in list(volume.get("projected").unwrap_or(&Value::Null), "sources") {
            if source.get("secret").is_some() {
                return Some("secrets");
            }
            if source.get("configMap").is_some() {
                return Some("configmaps");
            }
            if source.get("serviceAccountToken").is_some() {
                return Some("service accounts");
            }
        }
    }
    for kind in ["containers", "initContainers", "ephemeralContainers"] {
        for container in list(spec, kind) {
            for env in list(&container, "env") {
                if env.pointer("/valueFrom/secretKeyRef").is_some() {
                    return Some("secrets");
                }
                if env.pointer("/valueFrom/configMapKeyRef").is_some() {
                    return Some("configmaps");
                }
            }
            for from in list(&container, "envFrom") {
                if from.get("secretRef").is_some() {
                    return Some("secrets");
                }
                if from.get("configMapRef").is_some() {
                    return Some("configmaps");
                }
            }
        }
    }
    None
}

impl NodeAuthorizer {
    pub fn new(rules: Vec<PolicyRule>, pods: Arc<Cacher>) -> Self {
        Self { rules, pods }
    }

    fn pods_on(&self, node: &str, namespace: &str) -> Vec<Arc<crate::cache::Cached>> {
        let prefix = self.pods.info.list_prefix(Some(namespace));
        self.pods
            .list(&prefix)
            .map(|(pods, _)| pods)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| text(p, "/spec/nodeName") == node)
            .collect()
    }

    /// Whether a node may write the pod: it is bound to the node — or it does not exist, so
    /// that the request is answered 404 as kube's NodeRestriction lets it be (a kubelet
    /// finishing a graceful deletion that already finished must learn the pod is gone, not
    /// be told it is forbidden).
    fn pod_bound_to(&self, node: &str, namespace: &str, name: &str) -> bool {
        self.pods
            .get(&self.pods.info.key(namespace, name))
            .is_none_or(|p| text(&p, "/spec/nodeName") == node)
    }

    /// Allowed, or why not. Only for node users (see [`node_of`]).
    pub fn authorize(&self, user: &UserInfo, node: &str, request: &Request) -> Result<(), String> {
        let attributes = request.as_rbac(user);
        if !self.rules.iter().any(|r| rbac::rule_allows(&attributes, r)) {
            return Err(format!("node {node:?} holds no rule for this"));
        }
        let narrowed_group =
            request.api_group.is_empty() || request.api_group == "coordination.k8s.io";
        if !request.resource_request || !narrowed_group {
            return Ok(());
        }
        let resource = request.resource.as_str();
        let sub = request.subresource.as_str();
        match (resource, sub) {
            // Objects its pods use: one by one, and only those.
            ("secrets" | "configmaps" | "persistentvolumeclaims" | "serviceaccounts", "") => {
                if request.verb != "get" || request.name.is_empty() {
                    return Err(format!("node {node:?} can only get individual {resource}"));
                }
                if self
                    .pods_on(node, &request.namespace)
                    .iter()
                    .any(|p| pod_uses(p, resource, &request.name))
                {
                    Ok(())
                } else {
                    Err(format!(
                        "no relationship found between node {node:?} and this object"
                    ))
                }
            }
            ("serviceaccounts", "token") => {
                if self
                    .pods_on(node, &request.namespace)
                    .iter()
                    .any(|p| pod_uses(p, "serviceaccounts", &request.name))
                {
                    Ok(())
                } else {
                    Err(format!(
                        "no pod on node {node:?} runs as this ServiceAccount"
                    ))
                }
            }
            // NodeRestriction: its own Node object, its own Lease.
            ("nodes", _) | ("leases", _)
                if matches!(request.verb.as_str(), "update" | "patch" | "delete")
                    && request.name != node =>
            {
                Err(format!("node {node:?} may only modify its own {resource}"))
            }
            // …and pods bound to it.
            ("pods", "status") | ("pods", "") | ("pods", "eviction")
                if matches!(request.verb.as_str(), "update" | "patch" | "delete")
                    || (sub == "eviction" && request.verb == "create") =>
            {
                if self.pod_bound_to(node, &request.namespace, &request.name) {
                    Ok(())
                } else {
                    Err(format!("node {node:?} may only modify pods bound to it"))
                }
            }
            _ => Ok(()),
        }
    }
}

/// NodeRestriction on creates by a node: its own Node object (no labels under
/// `node-restriction.kubernetes.io/`, which only administrators set), its own Lease, and
/// mirror pods bound to itself.
pub fn admit_create(user: &UserInfo, kind: &str, object: &Value) -> Result<(), ApiError> {
    let Some(node) = node_of(user) else {
        return Ok(());
    };
    let name = crate::objects::name_of(object);
    let refuse = |why: String| {
        Err(ApiError::forbidden(
            format!("{kind} {name:?} is forbidden: {why}"),
            name,
            "",
            "",
        ))
    };
    match kind {
        "Node" => {
            if name != node {
                return refuse(format!(
                    "node {node:?} is not allowed to create node {name:?}"
                ));
            }
            let labels = object
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if let Some(label) = labels
                .keys()
                .find(|k| k.starts_with("node-restriction.kubernetes.io/"))
            {
                return refuse(format!(
                    "is not allowed to modify labels: {label} (node-restriction.kubernetes.io/ is reserved for administrators)"
                ));
            }
            Ok(())
        }
        "Lease" if name != node => {
            refuse("can only access node lease with the same name as the requesting node".into())
        }
        "Pod" => {
            let mirror = object
                .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
                .is_some();
            if !mirror {
                return refuse(format!(
                    "pod does not have \"kubernetes.io/config.mirror\" annotation, node {node:?} can only create mirror pods"
                ));
            }
            if text(object, "/spec/nodeName") != node {
                return refuse(format!(
                    "node {node:?} can only create pods with spec.nodeName set to itself"
                ));
            }
            if let Some(owners) = object
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .filter(|o| !o.is_empty())
            {
                let own_node = owners.len() == 1
                    && text(&owners[0], "/apiVersion") == "v1"
                    && text(&owners[0], "/kind") == "Node"
                    && text(&owners[0], "/name") == node;
                if !own_node {
                    return refuse(format!(
                        "node {node:?} can only create pods with a single owner reference set to itself"
                    ));
                }
            }
            if let Some(what) = mirror_reference(object) {
                return refuse(format!(
                    "node {node:?} can not create pods that reference {what}"
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// NodeRestriction on a node's update of its own Node: labels under
/// `node-restriction.kubernetes.io/` stay as administrators set them (they are what workloads
/// trust to place themselves on chosen nodes), and taints are not the node's to change: a
/// kubelet that could untaint itself would take pods an administrator kept away.
pub fn admit_update(user: &UserInfo, kind: &str, old: &Value, new: &Value) -> Result<(), ApiError> {
    let Some(node) = node_of(user) else {
        return Ok(());
    };
    if kind != "Node" {
        return Ok(());
    }
    let name = crate::objects::name_of(new);
    let refuse = |why: String| {
        Err(ApiError::forbidden(
            format!("Node {name:?} is forbidden: {why}"),
            name,
            "",
            "",
        ))
    };
    let restricted = |object: &Value| -> Vec<(String, Value)> {
        object
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|labels| {
                labels
                    .iter()
                    .filter(|(k, _)| k.starts_with("node-restriction.kubernetes.io/"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (before, after) = (restricted(old), restricted(new));
    if before != after {
        let changed = before
            .iter()
            .chain(after.iter())
            .find(|label| !(before.contains(label) && after.contains(label)))
            .map(|(k, _)| k.clone())
            .unwrap_or_default();
        return refuse(format!(
            "is not allowed to modify labels: {changed} (node-restriction.kubernetes.io/ is reserved for administrators)"
        ));
    }
    let taints = |object: &Value| {
        object
            .pointer("/spec/taints")
            .cloned()
            .unwrap_or(Value::Null)
    };
    let empty = |v: &Value| v.is_null() || v.as_array().is_some_and(Vec::is_empty);
    let (old_taints, new_taints) = (taints(old), taints(new));
    if old_taints != new_taints && !(empty(&old_taints) && empty(&new_taints)) {
        return refuse(format!("node {node:?} is not allowed to modify taints"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_a_pod_uses() {
        let pod = json!({"spec": {
            "serviceAccountName": "robot",
            "imagePullSecrets": [{"name": "pull"}],
            "volumes": [
                {"name": "a", "secret": {"secretName": "vol-secret"}},
                {"name": "b", "configMap": {"name": "vol-map"}},
                {"name": "c", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "d", "projected": {"sources": [{"secret": {"name": "proj-secret"}},
                                                         {"configMap": {"name": "proj-map"}}]}}
            ],
            "containers": [{"name": "x",
                "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}}],
                "envFrom": [{"configMapRef": {"name": "env-map"}}]}]
        }});
        for (resource, name) in [
            ("secrets", "vol-secret"),
            ("secrets", "proj-secret"),
            ("secrets", "env-secret"),
            ("secrets", "pull"),
            ("configmaps", "vol-map"),
            ("configmaps", "proj-map"),
            ("configmaps", "env-map"),
            ("persistentvolumeclaims", "data"),
            ("serviceaccounts", "robot"),
        ] {
            assert!(pod_uses(&pod, resource, name), "{resource}/{name}");
        }
        for (resource, name) in [
            ("secrets", "vol-map"),
            ("configmaps", "vol-secret"),
            ("secrets", "other"),
            ("serviceaccounts", "default"),
        ] {
            assert!(!pod_uses(&pod, resource, name), "{resource}/{name}");
        }
        assert!(pod_uses(&json!({"spec": {}}), "serviceaccounts", "default"));
        let mirror =
            json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "h"}}, "spec": {}});
        assert!(
            !pod_uses(&mirror, "serviceaccounts", "default"),
            "a mirror pod has none"
        );
    }

    #[test]
    fn node_users_and_restrictions() {
        let node = UserInfo {
            name: "system:node:n1".into(),
            groups: vec![NODES_GROUP.into()],
            ..UserInfo::default()
        };
        assert_eq!(node_of(&node), Some("n1"));
        let impostor = UserInfo {
            name: "system:node:n1".into(),
            ..UserInfo::default()
        };
        assert_eq!(node_of(&impostor), None);
        assert!(admit_create(&node, "Node", &json!({"metadata": {"name": "n1"}})).is_ok());
        assert!(admit_create(&node, "Node", &json!({"metadata": {"name": "n2"}})).is_err());
        assert!(admit_create(
            &node,
            "Node",
            &json!({"metadata": {"name": "n1", "labels": {"node-restriction.kubernetes.io/x": "y"}}})
        )
        .is_err());
        let mirror = json!({"metadata": {"name": "p", "annotations": {"kubernetes.io/config.mirror": "h"}},
                            "spec": {"nodeName": "n1"}});
        assert!(admit_create(&node, "Pod", &mirror).is_ok());
        for (field, value) in [
            ("/spec/serviceAccountName", json!("robot")),
            (
                "/spec/volumes",
                json!([{"name": "s", "secret": {"secretName": "db"}}]),
            ),
            (
                "/spec/volumes",
                json!([{"name": "p", "projected": {"sources": [{"configMap": {"name": "c"}}]}}]),
            ),
            (
                "/spec/containers",
                json!([{"name": "c", "envFrom": [{"secretRef": {"name": "db"}}]}]),
            ),
            (
                "/metadata/ownerReferences",
                json!([{"apiVersion": "v1", "kind": "Node", "name": "n2", "uid": "u"}]),
            ),
        ] {
            let mut hostile = mirror.clone();
            let (parent, key) = field.rsplit_once('/').expect("a path");
            hostile.pointer_mut(parent).expect("parent")[key] = value;
            assert!(
                admit_create(&node, "Pod", &hostile).is_err(),
                "{field}: {hostile}"
            );
        }
        let mut owned = mirror.clone();
        owned["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u"}]);
        assert!(admit_create(&node, "Pod", &owned).is_ok());
        let old = json!({"metadata": {"name": "n1", "labels": {"node-restriction.kubernetes.io/pool": "gpu", "a": "1"}},
                         "spec": {"taints": [{"key": "dedicated", "effect": "NoSchedule"}]}});
        let mut relabelled = old.clone();
        relabelled["metadata"]["labels"]["a"] = json!("2");
        assert!(
            admit_update(&node, "Node", &old, &relabelled).is_ok(),
            "its own labels"
        );
        for (pointer, value) in [
            (
                "/metadata/labels/node-restriction.kubernetes.io~1pool",
                json!("cpu"),
            ),
            ("/spec/taints", json!([])),
        ] {
            let mut changed = old.clone();
            *changed.pointer_mut(pointer).expect("field") = value;
            assert!(
                admit_update(&node, "Node", &old, &changed).is_err(),
                "{pointer}"
            );
        }
        let mut unlabelled = old.clone();
        if let Some(labels) = unlabelled["metadata"]["labels"].as_object_mut() {
            labels.remove("node-restriction.kubernetes.io/pool");
        }
        assert!(
            admit_update(&node, "Node", &old, &unlabelled).is_err(),
            "removing one"
        );
        let admin = UserInfo {
            name: "admin".into(),
            ..UserInfo::default()
        };
        assert!(
            admit_update(&admin, "Node", &old, &unlabelled).is_ok(),
            "administrators may"
        );
        let mut elsewhere = mirror.clone();
        elsewhere["spec"]["nodeName"] = json!("n2");
        assert!(admit_create(&node, "Pod", &elsewhere).is_err());
        assert!(admit_create(
            &node,
            "Pod",
            &json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}})
        )
        .is_err());
        assert!(admit_create(&node, "Lease", &json!({"metadata": {"name": "n2"}})).is_err());
    }
}
