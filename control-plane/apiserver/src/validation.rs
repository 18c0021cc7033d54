//! Validation of the specs keel's components act on, with kube-apiserver's field paths and
//! words: what Kubernetes itself refuses (a pod without containers, a port out of range, a
//! Deployment whose selector does not select its own template) is refused here, before any
//! scheduler, controller or node reads it. What Kubernetes accepts is accepted, even where a
//! keel node cannot run it yet: the node reports that on the object.

use std::collections::HashSet;

use serde_json::Value;

use crate::resources::ResourceInfo;
use crate::status::{ApiError, Cause};

mod certificates;
mod events;
mod finalizers;
mod limit_range;
mod update;
mod volumes;
use keel_api::validation::{go_quote, is_dns1123_label, is_valid_port_name};
pub use update::validate_update;

#[derive(Default)]
struct Errors(Vec<Cause>);

impl Errors {
    /// 422 Invalid naming `object`, with every cause, if there is any.
    fn into_result(self, info: &ResourceInfo, object: &Value) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(
                info,
                crate::objects::name_of(object),
                self.0,
            ))
        }
    }

    fn required(&mut self, field: &str) {
        self.0.push(Cause {
            reason: "FieldValueRequired",
            message: "Required value".into(),
            field: field.into(),
        });
    }

    fn invalid(&mut self, field: &str, value: &str, detail: &str) {
        self.0.push(Cause {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {}: {detail}", go_quote(value)),
            field: field.into(),
        });
    }

    fn duplicate(&mut self, field: &str, value: &str) {
        self.0.push(Cause {
            reason: "FieldValueDuplicate",
            message: format!("Duplicate value: {}", go_quote(value)),
            field: field.into(),
        });
    }

    /// kube's `ValidateImmutableField`, the new value shown as JSON.
    fn immutable(&mut self, field: &str, value: Option<&Value>) {
        let shown = value.map(Value::to_string).unwrap_or_else(|| "null".into());
        self.0.push(Cause {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {shown}: field is immutable"),
            field: field.into(),
        });
    }

    fn forbidden(&mut self, field: &str, detail: &str) {
        self.0.push(Cause {
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {detail}"),
            field: field.into(),
        });
    }

    fn unsupported(&mut self, field: &str, value: &str, supported: &[&str]) {
        let list: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
        self.0.push(Cause {
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {}: supported values: {}",
                go_quote(value),
                list.join(", ")
            ),
            field: field.into(),
        });
    }

    fn dns_label(&mut self, field: &str, value: &str) {
        for message in is_dns1123_label(value) {
            self.invalid(field, value, &message);
        }
    }
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(other) if !other.is_null() => other.to_string(),
        _ => String::new(),
    }
}

fn items(value: Option<&Value>) -> &[Value] {
    value
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn port_number(errors: &mut Errors, field: &str, value: Option<&Value>, required: bool) {
    match value.and_then(Value::as_i64) {
        Some(n) if (1..=65535).contains(&n) => {}
        Some(n) => errors.invalid(
            field,
            &n.to_string(),
            "must be between 1 and 65535, inclusive",
        ),
        None if required => errors.required(field),
        None => {}
    }
}

/// ValidatePodSpec, for what schedulers, controllers and nodes read.
fn pod_spec(errors: &mut Errors, path: &str, spec: Option<&Value>) {
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        errors.required(path);
        return;
    };
    let mut names = HashSet::new();
    let containers = items(spec.get("containers"));
    if containers.is_empty() {
        errors.required(&format!("{path}.containers"));
    }
    for (list, entries) in [
        ("initContainers", items(spec.get("initContainers"))),
        ("containers", containers),
    ] {
        for (i, container) in entries.iter().enumerate() {
            let at = format!("{path}.{list}[{i}]");
            let name = text(container.get("name"));
            if name.is_empty() {
                errors.required(&format!("{at}.name"));
            } else {
                errors.dns_label(&format!("{at}.name"), &name);
                if !names.insert(name.clone()) {
                    errors.duplicate(&format!("{at}.name"), &name);
                }
            }
            if text(container.get("image")).trim().is_empty() {
                errors.required(&format!("{at}.image"));
            }
            let mut port_names = HashSet::new();
            for (j, port) in items(container.get("ports")).iter().enumerate() {
                let port_at = format!("{at}.ports[{j}]");
                port_number(
                    errors,
                    &format!("{port_at}.containerPort"),
                    port.get("containerPort"),
                    true,
                );
                port_number(
                    errors,
                    &format!("{port_at}.hostPort"),
                    port.get("hostPort").filter(|p| p.as_i64() != Some(0)),
                    false,
                );
                let port_name = text(port.get("name"));
                if !port_name.is_empty() {
                    for message in is_valid_port_name(&port_name) {
                        errors.invalid(&format!("{port_at}.name"), &port_name, &message);
                    }
                    if !port_names.insert(port_name.clone()) {
                        errors.duplicate(&format!("{port_at}.name"), &port_name);
                    }
                }
                let protocol = text(port.get("protocol"));
                if !protocol.is_empty() && !["TCP", "UDP", "SCTP"].contains(&protocol.as_str()) {
                    errors.unsupported(
                        &format!("{port_at}.protocol"),
                        &protocol,
                        &["SCTP", "TCP", "UDP"],
                    );
                }
            }
        }
    }
    let policy = text(spec.get("restartPolicy"));
    if !policy.is_empty() && !["Always", "OnFailure", "Never"].contains(&policy.as_str()) {
        errors.unsupported(
            &format!("{path}.restartPolicy"),
            &policy,
            &["Always", "OnFailure", "Never"],
        );
    }
    let mut volumes = HashSet::new();
    for (i, volume) in items(spec.get("volumes")).iter().enumerate() {
        let at = format!("{path}.volumes[{i}].name");
        let name = text(volume.get("name"));
        if name.is_empty() {
            errors.required(&at);
            continue;
        }
        errors.dns_label(&at, &name);
        if !volumes.insert(name.clone()) {
            errors.duplicate(&at, &name);
        }
    }
    volumes::validate(errors, path, items(spec.get("volumes")));
    if let Some(grace) = spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
    {
        if grace < 0 {
            errors.invalid(
                &format!("{path}.terminationGracePeriodSeconds"),
                &grace.to_string(),
                "must be greater than or equal to 0",
            );
        }
    }
}

fn service(errors: &mut Errors, spec: Option<&Value>) {
    let Some(spec) = spec else { return };
    let kind = text(spec.get("type"));
    let kinds = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
    if !kind.is_empty() && !kinds.contains(&kind.as_str()) {
        errors.unsupported("spec.type", &kind, &kinds);
    }
    let headless = text(spec.get("clusterIP")) == "None";
    let ports = items(spec.get("ports"));
    if ports.is_empty() && kind != "ExternalName" && !headless {
        errors.required("spec.ports");
    }
    let mut names = HashSet::new();
    let mut node_ports = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        port_number(errors, &format!("{at}.port"), port.get("port"), true);
        let name = text(port.get("name"));
        if ports.len() > 1 && name.is_empty() {
            errors.required(&format!("{at}.name"));
        }
        if !name.is_empty() {
            errors.dns_label(&format!("{at}.name"), &name);
            if !names.insert(name.clone()) {
                errors.duplicate(&format!("{at}.name"), &name);
            }
        }
        let protocol = text(port.get("protocol"));
        if !protocol.is_empty() && !["TCP", "UDP", "SCTP"].contains(&protocol.as_str()) {
            errors.unsupported(
                &format!("{at}.protocol"),
                &protocol,
                &["SCTP", "TCP", "UDP"],
            );
        }
        match port.get("targetPort") {
            Some(Value::Number(n)) => port_number(
                errors,
                &format!("{at}.targetPort"),
                Some(&Value::Number(n.clone())),
                false,
            ),
            Some(Value::String(s)) => {
                for message in is_valid_port_name(s) {
                    errors.invalid(&format!("{at}.targetPort"), s, &message);
                }
            }
            _ => {}
        }
        // 0 is unset: the allocator's to fill.
        let node_port = port.get("nodePort").filter(|v| v.as_i64() != Some(0));
        if kind == "NodePort" || kind == "LoadBalancer" {
            port_number(errors, &format!("{at}.nodePort"), node_port, false);
        } else if kind == "ClusterIP" && node_port.is_some() {
            errors.forbidden(
                &format!("{at}.nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            );
        }
        // One node port per protocol (TCP and UDP may share one).
        if let Some(n) = node_port.and_then(Value::as_i64) {
            let protocol = if protocol.is_empty() {
                "TCP".into()
            } else {
                protocol
            };
            if !node_ports.insert((protocol, n)) {
                errors.0.push(Cause {
                    reason: "FieldValueDuplicate",
                    message: format!("Duplicate value: {n}"),
                    field: format!("{at}.nodePort"),
                });
            }
        }
    }
    if kind == "ExternalName" {
        let forbidden = "may not be set for ExternalName services";
        if !text(spec.get("clusterIP")).is_empty() || !items(spec.get("clusterIPs")).is_empty() {
            errors.forbidden("spec.clusterIPs", forbidden);
        }
        if !items(spec.get("ipFamilies")).is_empty() {
            errors.forbidden("spec.ipFamilies", forbidden);
        }
        if spec.get("ipFamilyPolicy").is_some_and(|p| !p.is_null()) {
            errors.forbidden("spec.ipFamilyPolicy", forbidden);
        }
    }
}

/// A Deployment or ReplicaSet: replicas, a selector that selects its own template, the
/// template's pod spec.
fn workload(errors: &mut Errors, spec: Option<&Value>) {
    let Some(spec) = spec else {
        errors.required("spec");
        return;
    };
    if let Some(replicas) = spec.get("replicas").and_then(Value::as_i64) {
        if replicas < 0 {
            errors.invalid(
                "spec.replicas",
                &replicas.to_string(),
                "must be greater than or equal to 0",
            );
        }
    }
    let selector = spec.get("selector");
    let match_labels = selector
        .and_then(|s| s.get("matchLabels"))
        .and_then(Value::as_object);
    let expressions = items(selector.and_then(|s| s.get("matchExpressions")));
    if match_labels.is_none_or(|m| m.is_empty()) && expressions.is_empty() {
        errors.required("spec.selector");
    }
    let template_labels = spec
        .pointer("/template/metadata/labels")
        .and_then(Value::as_object);
    if let Some(wanted) = match_labels {
        let selects = wanted
            .iter()
            .all(|(k, v)| template_labels.and_then(|l| l.get(k)) == Some(v));
        if !selects {
            let shown = template_labels
                .map(|l| {
                    l.iter()
                        .map(|(k, v)| format!("{k}:{}", text(Some(v))))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            errors.invalid(
                "spec.template.metadata.labels",
                &format!("map[{shown}]"),
                "`selector` does not match template `labels`",
            );
        }
    }
    pod_spec(errors, "spec.template.spec", spec.pointer("/template/spec"));
}

/// Refuses an object of `info`'s kind whose spec Kubernetes would refuse (422, every cause).
pub fn validate(info: &ResourceInfo, object: &Value) -> Result<(), ApiError> {
    let mut errors = Errors::default();
    checks(&mut errors, info, object);
    errors.into_result(info, object)
}

/// [`validate`] and, in the same 422, the rules Kubernetes applies to a create alone (an
/// events.k8s.io Event's strict ones, a pod's nodeName beside scheduling gates).
pub fn validate_create(info: &ResourceInfo, object: &Value) -> Result<(), ApiError> {
    let mut errors = Errors::default();
    checks(&mut errors, info, object);
    match info.kind {
        "Event" => events::validate_create(&mut errors, info, &info.to_storage(object)),
        "Pod" => pod_create(&mut errors, object.get("spec")),
        _ => {}
    }
    errors.into_result(info, object)
}

/// kube's `ValidatePodCreate`: a pod created already assigned to a node may not carry
/// scheduling gates. The gates hold a pod back from the scheduler, and a pod with
/// `spec.nodeName` never goes through it; accepted, it would run while reported gated.
/// (Updates cannot add either: gates may only be removed, and `nodeName` is immutable.)
fn pod_create(errors: &mut Errors, spec: Option<&Value>) {
    let Some(spec) = spec else {
        return;
    };
    let assigned = spec
        .get("nodeName")
        .and_then(Value::as_str)
        .is_some_and(|name| !name.is_empty());
    let gated = !items(spec.get("schedulingGates")).is_empty();
    if assigned && gated {
        errors.forbidden(
            "spec.nodeName",
            "cannot be set until all schedulingGates have been cleared",
        );
    }
}

fn checks(errors: &mut Errors, info: &ResourceInfo, object: &Value) {
    finalizers::metadata(errors, object);
    match info.kind {
        "Namespace" => finalizers::namespace(errors, object),
        "Pod" => pod_spec(errors, "spec", object.get("spec")),
        "Service" => service(errors, object.get("spec")),
        "Deployment" | "ReplicaSet" => workload(errors, object.get("spec")),
        "PriorityClass" => priority_class(errors, object),
        "LimitRange" => limit_range::validate(errors, object),
        "CertificateSigningRequest" => certificates::validate(errors, object),
        "Event" => events::validate(errors, &info.to_storage(object)),
        _ => {}
    }
}

/// The highest `value` a user's PriorityClass may have; above it are the system classes
/// (kube's `HighestUserDefinablePriority`).
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;
/// Names with this prefix belong to the system classes the API server creates.
pub const SYSTEM_PRIORITY_CLASS_PREFIX: &str = "system-";
/// The system classes and their values (kube's `SystemPriorityClasses`).
pub const SYSTEM_PRIORITY_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// kube's `ValidatePriorityClass`: a value (at most 1e9 unless a system class), a known
/// preemption policy, and the `system-` prefix only for the system classes.
fn priority_class(errors: &mut Errors, object: &Value) {
    let name = crate::objects::name_of(object);
    let value = object.get("value").and_then(Value::as_i64);
    let system = SYSTEM_PRIORITY_CLASSES
        .iter()
        .find(|(system, _, _)| *system == name);
    match (system, value) {
        (Some((_, want, _)), Some(value)) if value != *want => errors.invalid(
            "value",
            &value.to_string(),
            &format!("value of {name} PriorityClass must be {want}"),
        ),
        (None, _) if name.starts_with(SYSTEM_PRIORITY_CLASS_PREFIX) => errors.invalid(
            "metadata.name",
            name,
            "priority class names with 'system-' prefix are reserved",
        ),
        (None, Some(value)) if value > HIGHEST_USER_DEFINABLE_PRIORITY => errors.invalid(
            "value",
            &value.to_string(),
            &format!("must be no greater than {HIGHEST_USER_DEFINABLE_PRIORITY}"),
        ),
        _ => {}
    }
    if let Some(policy) = object.get("preemptionPolicy").and_then(Value::as_str) {
        let supported = ["Never", "PreemptLowerPriority"];
        if !supported.contains(&policy) {
            errors.unsupported("preemptionPolicy", policy, &supported);
        }
    }
}

#[cfg(test)]
mod tests;
