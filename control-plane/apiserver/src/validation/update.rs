//! What an update may not change, as kube-apiserver's `ValidateUpdate` of each kind refuses
//! it: a pod's spec beyond its images, deadline, added tolerations, removed scheduling gates
//! and grace period; a
//! Deployment's or ReplicaSet's selector; the data of a ConfigMap or Secret marked
//! `immutable`.

use serde_json::{json, Value};

use super::Errors;
use crate::resources::ResourceInfo;
use crate::status::{ApiError, Cause};

fn forbidden(errors: &mut Errors, field: &str, detail: &str) {
    errors.0.push(Cause {
        reason: "FieldValueForbidden",
        message: format!("Forbidden: {detail}"),
        field: field.into(),
    });
}

fn immutable(errors: &mut Errors, field: &str, value: Option<&Value>) {
    errors.immutable(field, value);
}

const POD_UPDATE: &str = "pod updates may not change fields other than `spec.containers[*].image`,\
`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to \
existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was \
previously negative)";

/// The pod spec with what an update may change taken from `old`: if the two then differ,
/// something else changed.
fn masked_pod_spec(old: &Value, new: &Value) -> Value {
    let mut masked = new.clone();
    for list in ["containers", "initContainers"] {
        let old_list = old.get(list).and_then(Value::as_array);
        if let (Some(old_list), Some(new_list)) =
            (old_list, masked.get_mut(list).and_then(Value::as_array_mut))
        {
            if old_list.len() == new_list.len() {
                for (o, n) in old_list.iter().zip(new_list.iter_mut()) {
                    if let (Some(image), Some(n)) = (o.get("image"), n.as_object_mut()) {
                        n.insert("image".into(), image.clone());
                    }
                }
            }
        }
    }
    if let Some(m) = masked.as_object_mut() {
        for field in ["activeDeadlineSeconds", "terminationGracePeriodSeconds"] {
            match old.get(field) {
                Some(v) => {
                    m.insert(field.into(), v.clone());
                }
                None => {
                    m.remove(field);
                }
            }
        }
        // Tolerations may only be added: if every old one is still there, take the old list.
        let old_tolerations = old.get("tolerations").and_then(Value::as_array);
        let new_tolerations = m.get("tolerations").and_then(Value::as_array);
        let only_added = match (old_tolerations, new_tolerations) {
            (None, _) => true,
            (Some(o), Some(n)) => o.iter().all(|t| n.contains(t)),
            (Some(o), None) => o.is_empty(),
        };
        // Scheduling gates are judged on their own (only deletions), as kube's munged spec
        // takes the old list.
        match old.get("schedulingGates") {
            Some(v) => {
                m.insert("schedulingGates".into(), v.clone());
            }
            None => {
                m.remove("schedulingGates");
            }
        }
        if only_added {
            match old.get("tolerations") {
                Some(v) => {
                    m.insert("tolerations".into(), v.clone());
                }
                None => {
                    m.remove("tolerations");
                }
            }
        }
    }
    masked
}

/// kube's `validateOnlyDeletedSchedulingGates`: a gate may be removed (that is how a pod is
/// released to the scheduler), never added once the pod exists — the scheduler may already
/// have placed it.
fn only_deleted_scheduling_gates(errors: &mut Errors, old_spec: &Value, new_spec: &Value) {
    let names = |spec: &Value| -> Vec<String> {
        spec.get("schedulingGates")
            .and_then(Value::as_array)
            .map(|gates| {
                gates
                    .iter()
                    .map(|gate| {
                        gate.get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string()
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = names(old_spec);
    for (i, name) in names(new_spec).iter().enumerate() {
        if !before.contains(name) {
            forbidden(
                errors,
                &format!("spec.schedulingGates[{i}].name"),
                &format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            );
        }
    }
}

/// Refuses an update of `old` into `new` that changes what Kubernetes keeps immutable.
pub fn validate_update(info: &ResourceInfo, old: &Value, new: &Value) -> Result<(), ApiError> {
    let mut errors = Errors::default();
    match info.kind {
        "Pod" => {
            let old_spec = old.get("spec").cloned().unwrap_or(json!({}));
            let new_spec = new.get("spec").cloned().unwrap_or(json!({}));
            only_deleted_scheduling_gates(&mut errors, &old_spec, &new_spec);
            if masked_pod_spec(&old_spec, &new_spec) != old_spec {
                forbidden(&mut errors, "spec", POD_UPDATE);
            }
        }
        "PriorityClass" => {
            // Pods carry the value they were admitted with; changing it would split them.
            for field in ["value", "preemptionPolicy"] {
                if old.get(field) != new.get(field) {
                    immutable(&mut errors, field, new.get(field));
                }
            }
        }
        "CertificateSigningRequest" => super::certificates::validate_update(&mut errors, old, new),
        "Event" => super::events::validate_update(
            &mut errors,
            info,
            &info.to_storage(old),
            &info.to_storage(new),
        ),
        "Deployment" | "ReplicaSet" => {
            let before = old.pointer("/spec/selector");
            let after = new.pointer("/spec/selector");
            if before != after {
                immutable(&mut errors, "spec.selector", after);
            }
        }
        "ConfigMap" | "Secret" if old.get("immutable") == Some(&Value::Bool(true)) => {
            if new.get("immutable") != Some(&Value::Bool(true)) {
                forbidden(
                    &mut errors,
                    "immutable",
                    "field is immutable when `immutable` is set",
                );
            }
            for field in ["data", "binaryData"] {
                if old.get(field) != new.get(field) {
                    forbidden(
                        &mut errors,
                        field,
                        "field is immutable when `immutable` is set",
                    );
                }
            }
        }
        _ => {}
    }
    errors.into_result(info, new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup;

    fn refused(group: &str, resource: &str, old: Value, new: Value) -> Vec<String> {
        let info = lookup(group, "v1", resource).expect("served");
        match validate_update(info, &old, &new) {
            Ok(()) => Vec::new(),
            Err(e) => vec![e.message],
        }
    }

    #[test]
    fn pods_change_images_deadlines_and_added_tolerations_only() {
        let old = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "a:1"}],
            "tolerations": [{"key": "k", "operator": "Exists"}], "terminationGracePeriodSeconds": 30}});
        let mut image = old.clone();
        image["spec"]["containers"][0]["image"] = json!("a:2");
        assert!(refused("", "pods", old.clone(), image).is_empty());
        let mut added = old.clone();
        added["spec"]["tolerations"]
            .as_array_mut()
            .expect("list")
            .push(json!({"key": "x", "operator": "Exists"}));
        assert!(refused("", "pods", old.clone(), added).is_empty());
        let mut removed = old.clone();
        removed["spec"]["tolerations"] = json!([]);
        assert!(!refused("", "pods", old.clone(), removed).is_empty());
        let mut env = old.clone();
        env["spec"]["containers"][0]["env"] = json!([{"name": "A", "value": "1"}]);
        let said = refused("", "pods", old.clone(), env);
        assert!(
            said.first()
                .is_some_and(|m| m.contains("spec: Forbidden: pod updates may not change fields")),
            "{said:?}"
        );
        let mut more = old.clone();
        more["spec"]["containers"]
            .as_array_mut()
            .expect("list")
            .push(json!({"name": "d", "image": "b"}));
        assert!(!refused("", "pods", old, more).is_empty());
    }

    /// kube's `validateOnlyDeletedSchedulingGates` cases (validation_test.go): removing one or
    /// all gates is allowed, adding one is refused naming it and its index.
    #[test]
    fn scheduling_gates_may_only_be_removed() {
        let gated = |gates: &[&str]| {
            let gates: Vec<Value> = gates.iter().map(|g| json!({"name": g})).collect();
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "a"}],
                "schedulingGates": gates}})
        };
        let old = gated(&["foo", "bar"]);
        assert!(refused("", "pods", old.clone(), gated(&["bar"])).is_empty());
        assert!(refused("", "pods", old.clone(), gated(&[])).is_empty());
        let mut none = old.clone();
        none["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("schedulingGates");
        assert!(refused("", "pods", old.clone(), none).is_empty());
        assert_eq!(
            refused("", "pods", old.clone(), gated(&["foo", "bar", "baz"])),
            [
                "Pod \"p\" is invalid: spec.schedulingGates[2].name: Forbidden: only deletion is \
              allowed, but found new scheduling gate 'baz'"
            ]
        );
        let plain = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "a"}]}});
        assert_eq!(
            refused("", "pods", plain, gated(&["x"])),
            [
                "Pod \"p\" is invalid: spec.schedulingGates[0].name: Forbidden: only deletion is \
              allowed, but found new scheduling gate 'x'"
            ]
        );
    }

    #[test]
    fn selectors_and_immutable_data_stay() {
        let old =
            json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "a"}}}});
        let mut new = old.clone();
        new["spec"]["selector"]["matchLabels"]["app"] = json!("b");
        let said = refused("apps", "deployments", old.clone(), new);
        assert!(
            said.first().is_some_and(|m| m.contains("spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"b\"}}: field is immutable")),
            "{said:?}"
        );
        let map = json!({"metadata": {"name": "m"}, "immutable": true, "data": {"a": "1"}});
        let mut changed = map.clone();
        changed["data"]["a"] = json!("2");
        assert!(!refused("", "configmaps", map.clone(), changed).is_empty());
        let mut unset = map.clone();
        unset["immutable"] = json!(false);
        assert!(!refused("", "configmaps", map.clone(), unset).is_empty());
        let mut labelled = map.clone();
        labelled["metadata"]["labels"] = json!({"x": "y"});
        assert!(refused("", "configmaps", map, labelled).is_empty());
    }
}
