//! The restricted checks: what a pod must do at `restricted`, on top of baseline.

use std::collections::BTreeSet;

use serde_json::Value;

use super::baseline::{proc_mount, seccomp};
use super::{
    child, containers_phrase, fail, flag, join_quote, list, plural, strings, volume_name, CheckFn,
    Failure, Pod,
};

/// The restricted checks by id, in byte order; at restricted they follow the baseline checks.
pub(super) const CHECKS: &[(&str, CheckFn)] = &[
    ("allowPrivilegeEscalation", allow_privilege_escalation),
    ("capabilities_restricted", capabilities_restricted),
    ("procMount_restricted", proc_mount),
    ("restrictedVolumes", restricted_volumes),
    ("runAsNonRoot", run_as_non_root),
    ("runAsUser", run_as_user),
    ("seccompProfile_restricted", seccomp_profile_restricted),
];

/// Baseline checks a stricter restricted check replaces at restricted: `capabilities_restricted`,
/// `restrictedVolumes`, `procMount_restricted` (no user-namespace relaxation) and
/// `seccompProfile_restricted`.
pub(super) const OVERRIDES: [&str; 4] = [
    "capabilities_baseline",
    "hostPathVolumes",
    "procMount",
    "seccompProfile_baseline",
];

fn allow_privilege_escalation(pod: &Pod<'_>) -> Option<Failure> {
    if pod.windows {
        return None;
    }
    let bad: Vec<&str> = pod
        .containers
        .iter()
        .filter(|c| flag(c.security_context, "allowPrivilegeEscalation") != Some(false))
        .map(|c| c.name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    fail(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
    )
}

fn capabilities_restricted(pod: &Pod<'_>) -> Option<Failure> {
    if pod.windows {
        return None;
    }
    let mut missing_drop_all = Vec::new();
    let mut adding_forbidden = Vec::new();
    let mut forbidden = BTreeSet::new();
    for c in &pod.containers {
        let Some(capabilities) = child(c.security_context, "capabilities") else {
            missing_drop_all.push(c.name);
            continue;
        };
        if !strings(Some(capabilities), "drop").any(|d| d == "ALL") {
            missing_drop_all.push(c.name);
        }
        let mut added_forbidden = false;
        for capability in strings(Some(capabilities), "add") {
            if capability != "NET_BIND_SERVICE" {
                added_forbidden = true;
                forbidden.insert(capability);
            }
        }
        if added_forbidden {
            adding_forbidden.push(c.name);
        }
    }
    let mut details = Vec::new();
    if !missing_drop_all.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop_all)
        ));
    }
    if !adding_forbidden.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding_forbidden),
            join_quote(&forbidden)
        ));
    }
    if details.is_empty() {
        return None;
    }
    fail("unrestricted capabilities", details.join("; "))
}

/// Volume sources the restricted level allows.
const ALLOWED_VOLUME_SOURCES: [&str; 9] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Volume sources Kubernetes names when refusing them, in the order it looks for them.
const NAMED_VOLUME_SOURCES: [&str; 21] = [
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
];

fn restricted_volumes(pod: &Pod<'_>) -> Option<Failure> {
    let mut bad_volumes = Vec::new();
    let mut bad_types = BTreeSet::new();
    for volume in list(pod.spec, "volumes") {
        if !volume.is_object() {
            continue;
        }
        let has = |source: &str| child(Some(volume), source).is_some();
        if ALLOWED_VOLUME_SOURCES.iter().any(|&source| has(source)) {
            continue;
        }
        bad_volumes.push(volume_name(volume));
        let source = NAMED_VOLUME_SOURCES
            .iter()
            .copied()
            .find(|&source| has(source));
        bad_types.insert(source.unwrap_or("unknown"));
    }
    if bad_volumes.is_empty() {
        return None;
    }
    fail(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            plural("volume", "volumes", bad_volumes.len()),
            join_quote(&bad_volumes),
            plural("uses", "use", bad_volumes.len()),
            plural(
                "restricted volume type",
                "restricted volume types",
                bad_types.len()
            ),
            join_quote(&bad_types)
        ),
    )
}

fn run_as_non_root(pod: &Pod<'_>) -> Option<Failure> {
    if pod.user_namespace {
        return None;
    }
    let mut setters = Vec::new();
    let pod_non_root = match flag(pod.security_context, "runAsNonRoot") {
        Some(false) => {
            setters.push("pod".to_owned());
            false
        }
        Some(true) => true,
        None => false,
    };
    let mut explicitly_bad = Vec::new();
    let mut implicitly_bad = Vec::new();
    for c in &pod.containers {
        match flag(c.security_context, "runAsNonRoot") {
            Some(false) => explicitly_bad.push(c.name),
            Some(true) => {}
            None if !pod_non_root => implicitly_bad.push(c.name),
            None => {}
        }
    }
    if !explicitly_bad.is_empty() {
        setters.push(containers_phrase(&explicitly_bad));
    }
    if !setters.is_empty() {
        return fail(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        );
    }
    if !implicitly_bad.is_empty() {
        return fail(
            "runAsNonRoot != true",
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_phrase(&implicitly_bad)
            ),
        );
    }
    None
}

fn run_as_user(pod: &Pod<'_>) -> Option<Failure> {
    if pod.user_namespace {
        return None;
    }
    let root = |security_context: Option<&Value>| {
        security_context
            .and_then(|sc| sc.get("runAsUser"))
            .and_then(Value::as_f64)
            == Some(0.0)
    };
    let mut setters = Vec::new();
    if root(pod.security_context) {
        setters.push("pod".to_owned());
    }
    let bad: Vec<&str> = pod
        .containers
        .iter()
        .filter(|c| root(c.security_context))
        .map(|c| c.name)
        .collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    fail(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", setters.join(" and ")),
    )
}

fn seccomp_profile_restricted(pod: &Pod<'_>) -> Option<Failure> {
    if pod.windows {
        return None;
    }
    seccomp(pod, true)
}
