use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;

const NO_METADATA: Value = Value::Null;

fn ids(level: Level, spec: &Value) -> Vec<&'static str> {
    evaluate(level, spec, &NO_METADATA)
        .into_iter()
        .map(|v| v.check)
        .collect()
}

/// `reason (detail)` of the one failure of `check`, panicking if there is none.
fn failure_with(level: Level, spec: &Value, metadata: &Value, check: &str) -> String {
    let found: Vec<Violation> = evaluate(level, spec, metadata)
        .into_iter()
        .filter(|v| v.check == check)
        .collect();
    assert_eq!(found.len(), 1, "{check} at {level}: {found:?}");
    forbidden_detail(&found)
}

fn failure(level: Level, spec: &Value, check: &str) -> String {
    failure_with(level, spec, &NO_METADATA, check)
}

fn passes(level: Level, spec: &Value, check: &str) -> bool {
    !ids(level, spec).contains(&check)
}

/// One container "c" with this securityContext.
fn with_context(security_context: Value) -> Value {
    json!({"containers": [{"name": "c", "image": "i", "securityContext": security_context}]})
}

fn restricted_pod() -> Value {
    json!({
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "c",
            "image": "i",
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
        }]
    })
}

#[test]
fn busybox_passes_baseline_and_fails_restricted_with_the_four_usual_reasons() {
    let spec = json!({"containers": [{"name": "busybox", "image": "busybox", "command": ["sleep", "1d"]}]});
    assert!(evaluate(Level::Privileged, &spec, &NO_METADATA).is_empty());
    assert!(evaluate(Level::Baseline, &spec, &NO_METADATA).is_empty());
    let violations = evaluate(Level::Restricted, &spec, &json!({"name": "busybox"}));
    assert_eq!(
        message(Level::Restricted, &violations),
        r#"violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "busybox" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "busybox" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "busybox" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "busybox" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
    );
    let checks: Vec<_> = violations.iter().map(|v| v.check).collect();
    assert_eq!(
        checks,
        [
            "allowPrivilegeEscalation",
            "capabilities_restricted",
            "runAsNonRoot",
            "seccompProfile_restricted"
        ]
    );
    assert!(warning(Level::Restricted, &violations)
        .starts_with(r#"would violate PodSecurity "restricted:latest": allowPrivilegeEscalation"#));
}

#[test]
fn host_network_and_privileged_fail_baseline_with_kubernetes_message() {
    let spec = json!({
        "hostNetwork": true,
        "containers": [{"name": "c", "image": "i", "securityContext": {"privileged": true}}]
    });
    let violations = evaluate(Level::Baseline, &spec, &NO_METADATA);
    assert_eq!(
        message(Level::Baseline, &violations),
        r#"violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true), privileged (container "c" must not set securityContext.privileged=true)"#
    );
    // Restricted includes baseline, baseline reasons first.
    let restricted = message(
        Level::Restricted,
        &evaluate(Level::Restricted, &spec, &NO_METADATA),
    );
    assert!(restricted.starts_with(
        r#"violates PodSecurity "restricted:latest": host namespaces (hostNetwork=true), privileged (container "c" must not set securityContext.privileged=true), allowPrivilegeEscalation != false"#
    ));
}

#[test]
fn a_compliant_pod_passes_restricted() {
    assert!(evaluate(Level::Restricted, &restricted_pod(), &NO_METADATA).is_empty());
    // Container-level settings instead of pod-level ones do as well.
    let spec = with_context(json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
        "runAsNonRoot": true,
        "runAsUser": 1000,
        "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}
    }));
    assert_eq!(ids(Level::Restricted, &spec), Vec::<&str>::new());
}

#[test]
fn host_namespaces() {
    let spec = json!({"hostNetwork": true, "hostPID": true, "hostIPC": true, "containers": []});
    assert_eq!(
        failure(Level::Baseline, &spec, "hostNamespaces"),
        "host namespaces (hostNetwork=true, hostPID=true, hostIPC=true)"
    );
    let spec = json!({"hostNetwork": false, "hostPID": false, "containers": []});
    assert!(passes(Level::Baseline, &spec, "hostNamespaces"));
}

#[test]
fn privileged_in_init_and_ephemeral_containers() {
    let spec = json!({
        "initContainers": [{"name": "init", "securityContext": {"privileged": true}}],
        "containers": [{"name": "c", "securityContext": {"privileged": false}}],
        "ephemeralContainers": [
            {"name": "debug", "targetContainerName": "c", "securityContext": {"privileged": true}}
        ]
    });
    assert_eq!(
        failure(Level::Baseline, &spec, "privileged"),
        r#"privileged (containers "init", "debug" must not set securityContext.privileged=true)"#
    );
    assert!(passes(
        Level::Baseline,
        &with_context(json!({"privileged": false})),
        "privileged"
    ));
    // Ephemeral containers count at restricted too.
    let mut spec = restricted_pod();
    spec["ephemeralContainers"] = json!([{"name": "debug", "image": "busybox"}]);
    assert_eq!(
        failure(Level::Restricted, &spec, "allowPrivilegeEscalation"),
        r#"allowPrivilegeEscalation != false (container "debug" must set securityContext.allowPrivilegeEscalation=false)"#
    );
}

#[test]
fn capabilities_at_baseline_and_restricted() {
    let spec = with_context(json!({"capabilities": {"add": ["SYS_ADMIN", "NET_RAW", "CHOWN"]}}));
    assert_eq!(
        failure(Level::Baseline, &spec, "capabilities_baseline"),
        r#"non-default capabilities (container "c" must not include "NET_RAW", "SYS_ADMIN" in securityContext.capabilities.add)"#
    );
    let spec = with_context(json!({"capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"]}}));
    assert!(passes(Level::Baseline, &spec, "capabilities_baseline"));
    // Restricted replaces the baseline check with its own.
    assert!(passes(Level::Restricted, &spec, "capabilities_baseline"));
    assert_eq!(
        failure(Level::Restricted, &spec, "capabilities_restricted"),
        r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]; container "c" must not include "CHOWN" in securityContext.capabilities.add)"#
    );
    let spec = with_context(json!({"capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}));
    assert_eq!(
        failure(Level::Restricted, &spec, "capabilities_restricted"),
        r#"unrestricted capabilities (container "c" must not include "SYS_ADMIN" in securityContext.capabilities.add)"#
    );
    let spec =
        with_context(json!({"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}));
    assert!(passes(Level::Restricted, &spec, "capabilities_restricted"));
}

#[test]
fn host_path_volumes() {
    let spec = json!({"containers": [], "volumes": [
        {"name": "a", "hostPath": {"path": "/etc"}},
        {"name": "b", "hostPath": {"path": "/var"}},
        {"name": "e", "emptyDir": {}}
    ]});
    assert_eq!(
        failure(Level::Baseline, &spec, "hostPathVolumes"),
        r#"hostPath volumes (volumes "a", "b")"#
    );
    assert!(passes(Level::Restricted, &spec, "hostPathVolumes"));
    assert_eq!(
        failure(Level::Restricted, &spec, "restrictedVolumes"),
        r#"restricted volume types (volumes "a", "b" use restricted volume type "hostPath")"#
    );
    let spec = json!({"containers": [], "volumes": [{"name": "e", "emptyDir": {}}]});
    assert!(passes(Level::Baseline, &spec, "hostPathVolumes"));
}

#[test]
fn host_ports() {
    let spec = json!({"containers": [
        {"name": "a", "ports": [{"containerPort": 80, "hostPort": 80}]},
        {"name": "b", "ports": [{"containerPort": 443, "hostPort": 443}, {"containerPort": 9}]}
    ]});
    // Kubernetes sorts the ports as strings.
    assert_eq!(
        failure(Level::Baseline, &spec, "hostPorts"),
        r#"hostPort (containers "a", "b" use hostPorts 443, 80)"#
    );
    let spec = json!({"containers": [{"name": "web", "ports": [{"hostPort": 8080}]}]});
    assert_eq!(
        failure(Level::Baseline, &spec, "hostPorts"),
        r#"hostPort (container "web" uses hostPort 8080)"#
    );
    let spec =
        json!({"containers": [{"name": "web", "ports": [{"containerPort": 80, "hostPort": 0}]}]});
    assert!(passes(Level::Baseline, &spec, "hostPorts"));
}

#[test]
fn app_armor_fields_and_annotations() {
    let spec = json!({
        "securityContext": {"appArmorProfile": {"type": "Unconfined"}},
        "containers": [{"name": "c", "securityContext": {"appArmorProfile": {"type": "Localhost", "localhostProfile": "p"}}}]
    });
    assert_eq!(
        failure(Level::Baseline, &spec, "appArmorProfile"),
        r#"forbidden AppArmor profile (pod must not set AppArmor profile type to "Unconfined")"#
    );
    let key = "container.apparmor.security.beta.kubernetes.io/c";
    let spec = with_context(json!({"appArmorProfile": {"type": "Unconfined"}}));
    assert_eq!(
        failure_with(
            Level::Baseline,
            &spec,
            &json!({"annotations": {key: "unconfined"}}),
            "appArmorProfile"
        ),
        r#"forbidden AppArmor profiles (container "c" and annotation must not set AppArmor profile type to "Unconfined", "container.apparmor.security.beta.kubernetes.io/c="unconfined"")"#
    );
    let spec = with_context(json!({"appArmorProfile": {"type": "RuntimeDefault"}}));
    for allowed in ["runtime/default", "localhost/my-profile", ""] {
        let metadata = json!({"annotations": {key: allowed}});
        assert!(
            evaluate(Level::Baseline, &spec, &metadata).is_empty(),
            "{allowed}"
        );
    }
}

#[test]
fn se_linux_options() {
    let spec = json!({
        "securityContext": {"seLinuxOptions": {"type": "spc_t", "user": "system_u"}},
        "containers": [{"name": "c", "securityContext": {"seLinuxOptions": {"role": "sysadm_r"}}}]
    });
    assert_eq!(
        failure(Level::Baseline, &spec, "seLinuxOptions"),
        r#"seLinuxOptions (pod and container "c" set forbidden securityContext.seLinuxOptions: type "spc_t"; user may not be set; role may not be set)"#
    );
    for allowed in [
        "container_t",
        "container_init_t",
        "container_kvm_t",
        "container_engine_t",
        "",
    ] {
        let spec = with_context(json!({"seLinuxOptions": {"type": allowed, "level": "s0:c1,c2"}}));
        assert!(
            passes(Level::Baseline, &spec, "seLinuxOptions"),
            "{allowed}"
        );
    }
}

#[test]
fn proc_mount_and_user_namespaces() {
    let spec = with_context(json!({"procMount": "Unmasked"}));
    assert_eq!(
        failure(Level::Baseline, &spec, "procMount"),
        r#"procMount (container "c" must not set securityContext.procMount to "Unmasked")"#
    );
    assert!(passes(
        Level::Baseline,
        &with_context(json!({"procMount": "Default"})),
        "procMount"
    ));
    // A pod in a user namespace may unmask /proc at baseline, not at restricted.
    let mut spec = spec;
    spec["hostUsers"] = json!(false);
    assert!(passes(Level::Baseline, &spec, "procMount"));
    assert!(passes(Level::Restricted, &spec, "procMount"));
    assert_eq!(
        failure(Level::Restricted, &spec, "procMount_restricted"),
        r#"procMount (container "c" must not set securityContext.procMount to "Unmasked")"#
    );
}

#[test]
fn seccomp_profiles() {
    let spec = json!({
        "securityContext": {"seccompProfile": {"type": "Unconfined"}},
        "containers": [{"name": "c", "securityContext": {"seccompProfile": {"type": "Unconfined"}}}]
    });
    assert_eq!(
        failure(Level::Baseline, &spec, "seccompProfile_baseline"),
        r#"seccompProfile (pod and container "c" must not set securityContext.seccompProfile.type to "Unconfined")"#
    );
    let spec = with_context(json!({"seccompProfile": {"type": "RuntimeDefault"}}));
    assert!(passes(Level::Baseline, &spec, "seccompProfile_baseline"));
    // `latest` no longer reads the alpha annotations (Kubernetes checks them only before v1.19).
    let metadata =
        json!({"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}});
    assert!(evaluate(Level::Baseline, &json!({"containers": []}), &metadata).is_empty());
    // Restricted: a valid pod profile covers containers that set none, not ones that set a bad one.
    let mut spec = restricted_pod();
    spec["containers"][0]["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"});
    spec["initContainers"] = json!([{"name": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]);
    assert_eq!(
        failure(Level::Restricted, &spec, "seccompProfile_restricted"),
        r#"seccompProfile (container "c" must not set securityContext.seccompProfile.type to "Unconfined")"#
    );
}

#[test]
fn sysctls() {
    let spec = json!({"containers": [], "securityContext": {"sysctls": [
        {"name": "kernel.msgmax", "value": "1"},
        {"name": "net.ipv4.tcp_syncookies", "value": "1"},
        {"name": "kernel.sem", "value": "1"}
    ]}});
    assert_eq!(
        failure(Level::Baseline, &spec, "sysctls"),
        "forbidden sysctls (kernel.msgmax, kernel.sem)"
    );
    let safe: Vec<Value> = baseline::SAFE_SYSCTLS
        .iter()
        .map(|name| json!({"name": name, "value": "1"}))
        .collect();
    let spec = json!({"containers": [], "securityContext": {"sysctls": safe}});
    assert!(passes(Level::Baseline, &spec, "sysctls"));
}

#[test]
fn windows_host_process() {
    let spec = json!({
        "securityContext": {"windowsOptions": {"hostProcess": true}},
        "containers": [{"name": "c", "securityContext": {"windowsOptions": {"hostProcess": true}}}]
    });
    assert_eq!(
        failure(Level::Baseline, &spec, "windowsHostProcess"),
        r#"hostProcess (pod and container "c" must not set securityContext.windowsOptions.hostProcess=true)"#
    );
    let spec = with_context(json!({"windowsOptions": {"hostProcess": false}}));
    assert!(passes(Level::Baseline, &spec, "windowsHostProcess"));
}

#[test]
fn probe_and_lifecycle_hosts() {
    let spec = json!({"containers": [
        {"name": "b", "lifecycle": {"preStop": {"tcpSocket": {"host": "evil", "port": 1}}}},
        {"name": "a", "livenessProbe": {"httpGet": {"host": "10.0.0.1", "port": 80}},
                      "readinessProbe": {"httpGet": {"host": "10.0.0.1", "port": 80}}}
    ]});
    assert_eq!(
        failure(Level::Baseline, &spec, "hostProbesAndHostLifecycle"),
        r#"probe or lifecycle host (containers "a", "b" use probe or lifecycle hosts "10.0.0.1", "evil")"#
    );
    let spec = json!({"containers": [{"name": "a", "startupProbe": {"httpGet": {"host": "", "port": 80}}}]});
    assert!(passes(Level::Baseline, &spec, "hostProbesAndHostLifecycle"));
}

#[test]
fn restricted_volume_types() {
    let mut spec = restricted_pod();
    spec["volumes"] = json!([
        {"name": "n", "nfs": {"server": "s", "path": "/"}},
        {"name": "x"},
        {"name": "ok", "configMap": {"name": "cm"}},
        {"name": "img", "image": {"reference": "r"}},
        {"name": "pvc", "persistentVolumeClaim": {"claimName": "c"}}
    ]);
    assert_eq!(
        failure(Level::Restricted, &spec, "restrictedVolumes"),
        r#"restricted volume types (volumes "n", "x" use restricted volume types "nfs", "unknown")"#
    );
    assert!(passes(Level::Baseline, &spec, "restrictedVolumes"));
}

#[test]
fn run_as_non_root_and_run_as_user() {
    let mut spec = restricted_pod();
    spec["securityContext"]["runAsNonRoot"] = json!(false);
    assert_eq!(
        failure(Level::Restricted, &spec, "runAsNonRoot"),
        "runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)"
    );
    let mut spec = restricted_pod();
    spec["securityContext"]["runAsNonRoot"] = Value::Null;
    spec["containers"] = json!([
        {"name": "a", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": true}},
        {"name": "b", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}
    ]);
    assert_eq!(
        failure(Level::Restricted, &spec, "runAsNonRoot"),
        r#"runAsNonRoot != true (pod or container "b" must set securityContext.runAsNonRoot=true)"#
    );
    let mut spec = restricted_pod();
    spec["securityContext"]["runAsUser"] = json!(0);
    spec["containers"][0]["securityContext"]["runAsUser"] = json!(0);
    assert_eq!(
        failure(Level::Restricted, &spec, "runAsUser"),
        r#"runAsUser=0 (pod and container "c" must not set runAsUser=0)"#
    );
    assert!(passes(Level::Baseline, &spec, "runAsUser"));
    // In a user namespace root is not root on the host.
    spec["hostUsers"] = json!(false);
    spec["securityContext"]["runAsNonRoot"] = json!(false);
    assert!(evaluate(Level::Restricted, &spec, &NO_METADATA).is_empty());
}

#[test]
fn windows_pods_are_exempt_from_linux_only_restricted_checks() {
    let spec = json!({"os": {"name": "windows"}, "containers": [{"name": "c", "image": "i"}]});
    assert_eq!(ids(Level::Restricted, &spec), ["runAsNonRoot"]);
}

#[test]
fn checks_are_ordered_as_kubernetes_orders_them() {
    assert!(baseline::CHECKS.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(restricted::CHECKS.windows(2).all(|w| w[0].0 < w[1].0));
    for id in restricted::OVERRIDES {
        assert!(baseline::CHECKS.iter().any(|c| c.0 == id), "{id}");
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn policy_from_labels() {
    let policy = policy_of(&BTreeMap::new(), Level::Privileged).unwrap();
    assert_eq!(policy, Policy::uniform(Level::Privileged));
    assert!(policy.fully_privileged());
    assert_eq!(
        policy_of(&labels(&[("app", "x")]), Level::Baseline).unwrap(),
        Policy::uniform(Level::Baseline)
    );
    // warn follows a stricter enforce unless set; audit does not.
    let policy = policy_of(&labels(&[(ENFORCE_LABEL, "baseline")]), Level::Privileged).unwrap();
    assert_eq!(
        policy,
        Policy {
            enforce: Level::Baseline,
            warn: Level::Baseline,
            audit: Level::Privileged
        }
    );
    let set = labels(&[
        (ENFORCE_LABEL, "restricted"),
        (ENFORCE_VERSION_LABEL, "v1.30"),
        (WARN_LABEL, "baseline"),
        (WARN_VERSION_LABEL, "latest"),
        (AUDIT_LABEL, "restricted"),
        (AUDIT_VERSION_LABEL, "v1.0"),
    ]);
    assert_eq!(
        policy_of(&set, Level::Privileged).unwrap(),
        Policy {
            enforce: Level::Restricted,
            warn: Level::Baseline,
            audit: Level::Restricted
        }
    );
    // A laxer enforce does not lower the default warn.
    let policy = policy_of(&labels(&[(ENFORCE_LABEL, "privileged")]), Level::Baseline).unwrap();
    assert_eq!(policy.warn, Level::Baseline);
}

#[test]
fn malformed_labels() {
    let bad = labels(&[(ENFORCE_LABEL, "Restricted")]);
    assert_eq!(
        policy_of(&bad, Level::Privileged).unwrap_err(),
        r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "Restricted": must be one of privileged, baseline, restricted"#
    );
    // Pods in such a namespace are held to restricted; warn is not raised by a bad enforce.
    let (policy, errors) = policy_to_evaluate(&bad, Level::Privileged);
    assert_eq!(errors.len(), 1);
    assert_eq!(
        policy,
        Policy {
            enforce: Level::Restricted,
            warn: Level::Privileged,
            audit: Level::Privileged
        }
    );
    // Malformed warn and audit fail open; malformed versions are errors too.
    let bad = labels(&[
        (WARN_LABEL, "strict"),
        (AUDIT_LABEL, ""),
        (ENFORCE_LABEL, "baseline"),
        (ENFORCE_VERSION_LABEL, "1.30"),
    ]);
    let (policy, errors) = policy_to_evaluate(&bad, Level::Restricted);
    assert_eq!(
        policy,
        Policy {
            enforce: Level::Baseline,
            warn: Level::Privileged,
            audit: Level::Privileged
        }
    );
    assert_eq!(
        errors,
        [
            r#"metadata.labels[pod-security.kubernetes.io/enforce-version]: Invalid value: "1.30": must be "latest" or "v1.x""#,
            r#"metadata.labels[pod-security.kubernetes.io/audit]: Invalid value: "": must be one of privileged, baseline, restricted"#,
            r#"metadata.labels[pod-security.kubernetes.io/warn]: Invalid value: "strict": must be one of privileged, baseline, restricted"#,
        ]
    );
    let message = policy_of(&bad, Level::Restricted).unwrap_err();
    assert!(message.starts_with("[metadata.labels[pod-security.kubernetes.io/enforce-version]"));
    assert!(message.ends_with("\"strict\": must be one of privileged, baseline, restricted]"));
    for version in ["v1.05", "v2.1", "v1.", "latest ", "v1.99999999999999999999"] {
        assert!(!valid_version(version), "{version}");
    }
    for version in ["latest", "v1.0", "v1.9", "v1.37", "v1.100"] {
        assert!(valid_version(version), "{version}");
    }
    assert_eq!(go_quote("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\x01""#);
}

#[test]
fn hostile_input_never_panics_and_counts_as_unset() {
    let everything = [Level::Privileged, Level::Baseline, Level::Restricted];
    for spec in [
        json!(null),
        json!("spec"),
        json!(42),
        json!([1, 2]),
        json!({"containers": "busybox"}),
        json!({"containers": {"name": "c"}}),
        json!({"containers": [1, "c", null, []], "initContainers": true}),
        json!({"securityContext": "root", "volumes": "all", "hostNetwork": "true", "hostPID": 1}),
        json!({"securityContext": {"sysctls": ["kernel.msgmax", 1, null], "seccompProfile": "Unconfined",
               "appArmorProfile": [], "seLinuxOptions": "spc_t", "windowsOptions": {"hostProcess": "true"},
               "runAsUser": "0", "runAsNonRoot": "true"}}),
    ] {
        for level in everything {
            let found = evaluate(level, &spec, &json!("metadata"));
            assert!(found.is_empty(), "{spec} at {level}: {found:?}");
        }
    }
    // Containers whose fields have the wrong types: unset, so baseline passes and restricted
    // asks for what is missing.
    let spec = json!({"containers": [{
        "name": 7,
        "securityContext": {"privileged": "true", "capabilities": {"add": "SYS_ADMIN", "drop": "ALL"},
                            "procMount": 1, "allowPrivilegeEscalation": "false", "runAsUser": 0.5},
        "ports": [{"hostPort": "80"}, "80", null],
        "livenessProbe": {"httpGet": "http://x"},
        "lifecycle": []
    }], "volumes": ["v", {"name": "h", "hostPath": "/"}]});
    let metadata = json!({"annotations": {"container.apparmor.security.beta.kubernetes.io/": 5}});
    assert!(evaluate(Level::Baseline, &spec, &metadata).is_empty());
    assert_eq!(
        failure(Level::Restricted, &spec, "capabilities_restricted"),
        r#"unrestricted capabilities (container "" must set securityContext.capabilities.drop=["ALL"])"#
    );
    assert_eq!(
        failure(Level::Restricted, &spec, "restrictedVolumes"),
        r#"restricted volume types (volume "h" uses restricted volume type "unknown")"#
    );
    assert!(evaluate(Level::Restricted, &json!({}), &json!({"annotations": []})).is_empty());
}

#[test]
fn pod_templates_and_updates() {
    let deployment = json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"hostPID": true}}}});
    let (spec, metadata) = pod_template_of("deployments", &deployment).unwrap();
    assert_eq!(spec["hostPID"], json!(true));
    assert_eq!(metadata["labels"]["a"], json!("b"));
    let cronjob =
        json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"hostIPC": true}}}}}});
    let (spec, metadata) = pod_template_of("cronjobs", &cronjob).unwrap();
    assert_eq!(spec["hostIPC"], json!(true));
    assert!(metadata.is_null());
    let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": []}});
    assert_eq!(pod_template_of("pods", &pod).unwrap().1["name"], json!("p"));
    assert!(pod_template_of("services", &pod).is_none());
    assert!(pod_template_of("replicationcontrollers", &json!({"spec": {}})).is_none());

    let old = json!({"containers": [{"name": "c", "image": "a"}]});
    let relabelled = json!({"containers": [{"name": "c", "image": "a", "env": []}]});
    assert!(!is_significant_pod_update(&relabelled, &old));
    assert!(is_significant_pod_update(
        &json!({"containers": [{"name": "c", "image": "b"}]}),
        &old
    ));
    let debug = json!({"containers": [{"name": "c", "image": "a"}], "ephemeralContainers": [{"name": "d", "image": "busybox"}]});
    assert!(is_significant_pod_update(&debug, &old));
    assert!(!is_significant_pod_update(&debug, &debug));
}
