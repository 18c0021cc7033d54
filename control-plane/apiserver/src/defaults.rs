//! Defaulting, as kube-apiserver's `SetDefaults_*` fill fields a client left out, so that what
//! `kubectl get -o yaml` shows after a create matches Kubernetes and a re-apply computes no
//! spurious differences. Only fields left unset are filled.

use serde_json::{json, Map, Value};

fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.into(), value);
    }
}

fn object_at<'a>(value: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let map = value.as_object_mut()?;
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.into(), Value::Object(Map::new()));
    }
    map.get_mut(key)?.as_object_mut()
}

fn container_defaults(container: &mut Value) {
    let Some(c) = container.as_object_mut() else {
        return;
    };
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    // SetDefaults_Container: Always for :latest or an untagged image, else IfNotPresent.
    let last = image.rsplit('/').next().unwrap_or(image);
    let untagged = !last.contains(':') && !image.contains('@');
    let policy = if untagged || image.ends_with(":latest") {
        "Always"
    } else {
        "IfNotPresent"
    };
    set_default(c, "imagePullPolicy", json!(policy));
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            if let Some(p) = port.as_object_mut() {
                set_default(p, "protocol", json!("TCP"));
            }
        }
    }
    set_default(c, "resources", json!({}));
    // SetDefaults_Pod: a resource with a limit and no request requests the limit.
    if let Some(resources) = c.get_mut("resources").and_then(Value::as_object_mut) {
        if let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() {
            let requests = resources.entry("requests").or_insert_with(|| json!({}));
            if let Some(requests) = requests.as_object_mut() {
                for (name, amount) in limits {
                    requests.entry(name).or_insert(amount);
                }
            }
        }
    }
    // SetDefaults_Probe, and the HTTP and gRPC handlers' own defaults.
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            set_default(p, "timeoutSeconds", json!(1));
            set_default(p, "periodSeconds", json!(10));
            set_default(p, "successThreshold", json!(1));
            set_default(p, "failureThreshold", json!(3));
            if let Some(http) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
                set_default(http, "path", json!("/"));
                set_default(http, "scheme", json!("HTTP"));
            }
            if let Some(grpc) = p.get_mut("grpc").and_then(Value::as_object_mut) {
                set_default(grpc, "service", json!(""));
            }
        }
    }
}

/// The DefaultTolerationSeconds admission plugin, on pod create: a pod that does not
/// tolerate `not-ready` and `unreachable` nodes tolerates them for 300 s, so the node
/// lifecycle controller evicts it five minutes after its node goes away.
pub fn default_toleration_seconds(pod: &mut Value) {
    let Some(spec) = object_at(pod, "spec") else {
        return;
    };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if tolerations.is_null() {
        *tolerations = json!([]);
    }
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        // Kubernetes skips a key any toleration already covers for NoExecute (an empty key
        // with Exists tolerates every taint).
        let covered = list.iter().any(|t| {
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            let t_key = t.get("key").and_then(Value::as_str).unwrap_or("");
            let operator = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
            (effect.is_empty() || effect == "NoExecute")
                && (t_key == key || (t_key.is_empty() && operator == "Exists"))
        });
        if !covered {
            list.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300}),
            );
        }
    }
}

/// A downward API file's `fieldRef` names `v1` unless it says (SetDefaults_ObjectFieldSelector).
fn field_ref_defaults(items: Option<&mut Value>) {
    for item in items.and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(field_ref) = item.get_mut("fieldRef").and_then(Value::as_object_mut) {
            if field_ref
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                field_ref.insert("apiVersion".into(), json!("v1"));
            }
        }
    }
}

/// SetDefaults_ProjectedVolumeSource, _ServiceAccountTokenProjection (an hour) and
/// _DownwardAPIVolumeSource: the fields the volume validation reads.
fn volume_defaults(volume: &mut Value) {
    let Some(volume) = volume.as_object_mut() else {
        return;
    };
    if let Some(projected) = volume.get_mut("projected").and_then(Value::as_object_mut) {
        set_default(projected, "defaultMode", json!(420));
        let sources = projected.get_mut("sources").and_then(Value::as_array_mut);
        for source in sources.into_iter().flatten() {
            if let Some(token) = source
                .get_mut("serviceAccountToken")
                .and_then(Value::as_object_mut)
            {
                set_default(token, "expirationSeconds", json!(3600));
            }
            if let Some(downward) = source.get_mut("downwardAPI") {
                field_ref_defaults(downward.get_mut("items"));
            }
        }
    }
    if let Some(downward) = volume.get_mut("downwardAPI").and_then(Value::as_object_mut) {
        set_default(downward, "defaultMode", json!(420));
        field_ref_defaults(downward.get_mut("items"));
    }
}

/// kube's `applySchedulingGatedCondition` (the pod strategy's PrepareForCreate): a new pod
/// with scheduling gates reads `PodScheduled=False` `SchedulingGated` from the start, so
/// `kubectl get` shows why it waits while no scheduler looks at it.
pub fn scheduling_gated_condition(pod: &mut Value) {
    let gated = pod
        .pointer("/spec/schedulingGates")
        .and_then(Value::as_array)
        .is_some_and(|gates| !gates.is_empty());
    if !gated {
        return;
    }
    let Some(status) = object_at(pod, "status") else {
        return;
    };
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    if conditions.is_null() {
        *conditions = json!([]);
    }
    let Some(list) = conditions.as_array_mut() else {
        return;
    };
    if list
        .iter()
        .any(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
    {
        return;
    }
    list.push(json!({
        "type": "PodScheduled",
        "status": "False",
        "reason": "SchedulingGated",
        "message": "Scheduling is blocked due to non-empty scheduling gates",
        "lastProbeTime": null,
        "lastTransitionTime": crate::objects::now_rfc3339(),
    }));
}

/// SetDefaults_PodSpec and its containers.
pub fn pod_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "enableServiceLinks", json!(true));
    for list in ["containers", "initContainers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            containers.iter_mut().for_each(container_defaults);
        }
    }
    if let Some(volumes) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        volumes.iter_mut().for_each(volume_defaults);
    }
}

/// Defaults for a new or updated object of `kind`.
pub fn apply(kind: &str, object: &mut Value) {
    match kind {
        "Pod" => {
            if let Some(spec) = object_at(object, "spec") {
                pod_spec(spec);
                spec.entry("priority").or_insert(json!(0));
            }
            if let Some(status) = object_at(object, "status") {
                set_default(status, "phase", json!("Pending"));
            }
        }
        "Deployment" | "ReplicaSet" => {
            let is_deployment = kind == "Deployment";
            if let Some(spec) = object_at(object, "spec") {
                set_default(spec, "replicas", json!(1));
                if is_deployment {
                    set_default(spec, "revisionHistoryLimit", json!(10));
                    set_default(spec, "progressDeadlineSeconds", json!(600));
                    set_default(
                        spec,
                        "strategy",
                        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
                    );
                }
                if let Some(template_spec) =
                    spec.get_mut("template").and_then(|t| object_at(t, "spec"))
                {
                    pod_spec(template_spec);
                }
            }
        }
        "Service" => {
            if let Some(spec) = object_at(object, "spec") {
                set_default(spec, "type", json!("ClusterIP"));
                set_default(spec, "sessionAffinity", json!("None"));
                set_default(spec, "internalTrafficPolicy", json!("Cluster"));
                if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                    for port in ports {
                        if let Some(p) = port.as_object_mut() {
                            set_default(p, "protocol", json!("TCP"));
                            // An IntOrString of 0 or "" is unset (Go's JSON and protobuf
                            // encoders write the zero value): it targets the port itself.
                            if matches!(p.get("targetPort"), Some(v) if v == &json!(0) || v == &json!(""))
                            {
                                p.remove("targetPort");
                            }
                            if let Some(number) = p.get("port").cloned() {
                                set_default(p, "targetPort", number);
                            }
                        }
                    }
                }
            }
        }
        "Secret" => {
            // stringData is write-only: kube-apiserver folds it into data (base64) and drops it,
            // its keys winning over data's.
            if let Some(map) = object.as_object_mut() {
                if let Some(Value::Object(strings)) = map.remove("stringData") {
                    use base64::Engine as _;
                    let data = map.entry("data").or_insert_with(|| json!({}));
                    if data.is_null() {
                        *data = json!({});
                    }
                    if let Some(data) = data.as_object_mut() {
                        for (key, value) in strings {
                            let text = value.as_str().unwrap_or_default();
                            data.insert(
                                key,
                                json!(base64::engine::general_purpose::STANDARD.encode(text)),
                            );
                        }
                    }
                }
                set_default(map, "type", json!("Opaque"));
            }
        }
        "Namespace" => {
            if let Some(spec) = object_at(object, "spec") {
                set_default(spec, "finalizers", json!(["kubernetes"]));
            }
            if let Some(status) = object_at(object, "status") {
                set_default(status, "phase", json!("Active"));
            }
            // The namespace lifecycle admission labels every namespace with its own name.
            let name = crate::objects::name_of(object).to_owned();
            let meta = crate::objects::meta_mut(object);
            if let Some(labels) = object_at_map(meta, "labels") {
                labels.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
        "LimitRange" => limit_range(object),
        _ => {}
    }
}

/// SetDefaults_LimitRangeItem: a Container item's `default` limit comes from `max`, and its
/// `defaultRequest` from `default`, else from `min` — so that a LimitRange with only a `max`
/// still gives every container that limit. An empty list stays absent (`omitempty`).
fn limit_range(object: &mut Value) {
    let Some(items) = object
        .pointer_mut("/spec/limits")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for item in items.iter_mut().filter_map(Value::as_object_mut) {
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            continue;
        }
        let list = |item: &Map<String, Value>, key: &str| -> Map<String, Value> {
            item.get(key)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let mut default = list(item, "default");
        for (name, amount) in list(item, "max") {
            default.entry(name).or_insert(amount);
        }
        let mut request = list(item, "defaultRequest");
        for (name, amount) in default.iter().chain(&list(item, "min")) {
            request.entry(name.clone()).or_insert(amount.clone());
        }
        for (key, filled) in [("default", default), ("defaultRequest", request)] {
            if !filled.is_empty() {
                item.insert(key.into(), Value::Object(filled));
            }
        }
    }
}

fn object_at_map<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.into(), Value::Object(Map::new()));
    }
    map.get_mut(key)?.as_object_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kube's `TestSchedulingGatedCondition` (pod strategy_test.go), and a condition the
    /// client wrote is kept.
    #[test]
    fn a_gated_pod_is_created_with_the_scheduling_gated_condition() {
        let mut plain = json!({"spec": {"containers": []}});
        scheduling_gated_condition(&mut plain);
        assert_eq!(plain.pointer("/status/conditions"), None);
        let mut gated = json!({"spec": {"schedulingGates": [{"name": "foo"}]}});
        scheduling_gated_condition(&mut gated);
        let condition = &gated["status"]["conditions"][0];
        assert_eq!(condition["type"], "PodScheduled");
        assert_eq!(condition["status"], "False");
        assert_eq!(condition["reason"], "SchedulingGated");
        assert_eq!(
            condition["message"],
            "Scheduling is blocked due to non-empty scheduling gates"
        );
        let mut written = json!({"spec": {"schedulingGates": [{"name": "foo"}]},
            "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}});
        scheduling_gated_condition(&mut written);
        assert_eq!(
            written["status"]["conditions"],
            json!([{"type": "PodScheduled", "status": "True"}])
        );
    }

    #[test]
    fn a_container_limit_range_item_defaults_from_max_and_min() {
        let mut range = json!({"spec": {"limits": [
            {"type": "Container", "max": {"cpu": "2", "memory": "1Gi"}, "min": {"cpu": "100m", "ephemeral-storage": "1Gi"},
             "default": {"cpu": "1"}, "defaultRequest": {"memory": "256Mi"}},
            {"type": "Pod", "max": {"cpu": "4"}},
            {"type": "Container"},
            "hostile",
        ]}});
        apply("LimitRange", &mut range);
        let container = &range["spec"]["limits"][0];
        // default: its own cpu, memory from max; defaultRequest: its own memory, cpu from
        // default (not min), ephemeral-storage from min.
        assert_eq!(container["default"], json!({"cpu": "1", "memory": "1Gi"}));
        assert_eq!(
            container["defaultRequest"],
            json!({"cpu": "1", "memory": "256Mi", "ephemeral-storage": "1Gi"})
        );
        assert_eq!(
            range["spec"]["limits"][1],
            json!({"type": "Pod", "max": {"cpu": "4"}})
        );
        assert_eq!(
            range["spec"]["limits"][2],
            json!({"type": "Container"}),
            "nothing to fill, nothing added"
        );
        assert_eq!(range["spec"]["limits"][3], json!("hostile"));
    }

    #[test]
    fn fills_only_what_is_unset() {
        let mut deployment = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [
            {"name": "a", "image": "nginx"}, {"name": "b", "image": "busybox:1.36", "imagePullPolicy": "Never",
             "ports": [{"containerPort": 80}]}
        ]}}}});
        apply("Deployment", &mut deployment);
        let spec = &deployment["spec"];
        assert_eq!(spec["replicas"], 3);
        assert_eq!(spec["strategy"]["type"], "RollingUpdate");
        let containers = &spec["template"]["spec"]["containers"];
        assert_eq!(containers[0]["imagePullPolicy"], "Always");
        assert_eq!(containers[1]["imagePullPolicy"], "Never");
        assert_eq!(containers[1]["ports"][0]["protocol"], "TCP");
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");
    }

    #[test]
    fn secrets_fold_string_data_into_data() {
        let mut secret =
            json!({"data": {"a": "eA==", "b": "eQ=="}, "stringData": {"b": "new", "c": "z"}});
        apply("Secret", &mut secret);
        assert_eq!(
            secret,
            json!({"data": {"a": "eA==", "b": "bmV3", "c": "eg=="}, "type": "Opaque"})
        );
    }

    #[test]
    fn probes_requests_and_default_tolerations() {
        let mut pod = json!({"spec": {"containers": [{"name": "c", "image": "i:1",
            "resources": {"limits": {"cpu": "1"}, "requests": {"memory": "1Mi"}},
            "livenessProbe": {"httpGet": {"port": 80}}}]}});
        apply("Pod", &mut pod);
        let c = &pod["spec"]["containers"][0];
        assert_eq!(
            c["resources"]["requests"],
            json!({"cpu": "1", "memory": "1Mi"})
        );
        assert_eq!(c["livenessProbe"]["periodSeconds"], 10);
        assert_eq!(c["livenessProbe"]["httpGet"]["scheme"], "HTTP");
        default_toleration_seconds(&mut pod);
        let tolerations = pod["spec"]["tolerations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(tolerations.len(), 2);
        assert_eq!(tolerations[1]["tolerationSeconds"], 300);
        let mut tolerant = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        default_toleration_seconds(&mut tolerant);
        assert_eq!(
            tolerant["spec"]["tolerations"].as_array().map(Vec::len),
            Some(1)
        );
        let mut own = json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unreachable",
            "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]}});
        default_toleration_seconds(&mut own);
        assert_eq!(own["spec"]["tolerations"][0]["tolerationSeconds"], 5);
        assert_eq!(own["spec"]["tolerations"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn services_target_their_port_and_namespaces_label_themselves() {
        let mut service = json!({"spec": {"ports": [{"port": 80}, {"port": 81, "targetPort": 0},
            {"port": 82, "targetPort": ""}, {"port": 83, "targetPort": "http"}]}});
        apply("Service", &mut service);
        assert_eq!(service["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(service["spec"]["ports"][1]["targetPort"], 81);
        assert_eq!(service["spec"]["ports"][2]["targetPort"], 82);
        assert_eq!(service["spec"]["ports"][3]["targetPort"], "http");
        assert_eq!(service["spec"]["type"], "ClusterIP");
        let mut namespace = json!({"metadata": {"name": "team-a"}});
        apply("Namespace", &mut namespace);
        assert_eq!(
            namespace["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team-a"
        );
        assert_eq!(namespace["status"]["phase"], "Active");
        apply("Pod", &mut json!("not an object"));
    }
}
