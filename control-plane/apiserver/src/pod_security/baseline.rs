//! The baseline checks: what a pod may not do at `baseline` (and so at `restricted`).

use std::collections::BTreeSet;

use serde_json::Value;

use super::{
    child, containers_phrase, fail, flag, go_quote, join_quote, list, plural, strings, text,
    volume_name, CheckFn, Failure, Pod,
};

/// The baseline checks by id, in byte order: Kubernetes sorts them so messages are stable.
pub(super) const CHECKS: &[(&str, CheckFn)] = &[
    ("appArmorProfile", app_armor_profile),
    ("capabilities_baseline", capabilities_baseline),
    ("hostNamespaces", host_namespaces),
    ("hostPathVolumes", host_path_volumes),
    ("hostPorts", host_ports),
    ("hostProbesAndHostLifecycle", host_probes_and_host_lifecycle),
    ("privileged", privileged),
    ("procMount", proc_mount_baseline),
    ("seLinuxOptions", se_linux_options),
    ("seccompProfile_baseline", seccomp_profile_baseline),
    ("sysctls", sysctls),
    ("windowsHostProcess", windows_host_process),
];

const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// AppArmor: fields may only be RuntimeDefault or Localhost, the deprecated annotations only
/// empty, `runtime/default` or `localhost/*`.
fn app_armor_profile(pod: &Pod<'_>) -> Option<Failure> {
    let allowed = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    let mut setters = Vec::new();
    let mut bad_types = BTreeSet::new();
    if let Some(profile) = child(pod.security_context, "appArmorProfile") {
        let t = text(Some(profile), "type").unwrap_or("");
        if !allowed(t) {
            setters.push("pod".to_owned());
            bad_types.insert(t);
        }
    }
    let mut bad_containers = Vec::new();
    for c in &pod.containers {
        if let Some(profile) = child(c.security_context, "appArmorProfile") {
            let t = text(Some(profile), "type").unwrap_or("");
            if !allowed(t) {
                bad_containers.push(c.name);
                bad_types.insert(t);
            }
        }
    }
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(&bad_containers));
    }
    let mut values: Vec<String> = bad_types.into_iter().map(str::to_owned).collect();
    let mut annotations = Vec::new();
    for (key, value) in pod.annotations.into_iter().flatten() {
        let Some(value) = value.as_str() else {
            continue;
        };
        let allowed =
            value.is_empty() || value == "runtime/default" || value.starts_with("localhost/");
        if key.starts_with(APPARMOR_ANNOTATION_PREFIX) && !allowed {
            annotations.push(format!("{key}={}", go_quote(value)));
        }
    }
    if !annotations.is_empty() {
        annotations.sort();
        setters.push(plural("annotation", "annotations", annotations.len()).to_owned());
        values.extend(annotations);
    }
    if setters.is_empty() {
        return None;
    }
    fail(
        plural(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            values.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&values)
        ),
    )
}

const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn capabilities_baseline(pod: &Pod<'_>) -> Option<Failure> {
    let mut bad_containers = Vec::new();
    let mut added = BTreeSet::new();
    for c in &pod.containers {
        let capabilities = child(c.security_context, "capabilities");
        let mut valid = true;
        for capability in strings(capabilities, "add") {
            if !BASELINE_CAPABILITIES.contains(&capability) {
                valid = false;
                added.insert(capability);
            }
        }
        if !valid {
            bad_containers.push(c.name);
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    fail(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad_containers),
            join_quote(&added)
        ),
    )
}

fn host_namespaces(pod: &Pod<'_>) -> Option<Failure> {
    let set: Vec<&str> = [
        ("hostNetwork", "hostNetwork=true"),
        ("hostPID", "hostPID=true"),
        ("hostIPC", "hostIPC=true"),
    ]
    .into_iter()
    .filter(|(key, _)| flag(pod.spec, key) == Some(true))
    .map(|(_, setting)| setting)
    .collect();
    if set.is_empty() {
        return None;
    }
    fail("host namespaces", set.join(", "))
}

fn host_path_volumes(pod: &Pod<'_>) -> Option<Failure> {
    let mut names = Vec::new();
    for volume in list(pod.spec, "volumes") {
        if child(Some(volume), "hostPath").is_some() {
            names.push(volume_name(volume));
        }
    }
    if names.is_empty() {
        return None;
    }
    fail(
        "hostPath volumes",
        format!(
            "{} {}",
            plural("volume", "volumes", names.len()),
            join_quote(&names)
        ),
    )
}

/// A non-zero `hostPort`, as Kubernetes prints it.
fn host_port(port: &Value) -> Option<String> {
    let number = port.get("hostPort")?;
    match number.as_i64() {
        Some(n) => (n != 0).then(|| n.to_string()),
        None => number.as_f64().filter(|f| *f != 0.0).map(|f| f.to_string()),
    }
}

fn host_ports(pod: &Pod<'_>) -> Option<Failure> {
    let mut bad_containers = Vec::new();
    // Kubernetes keeps the ports as strings in a sorted set: "443" sorts before "80".
    let mut ports = BTreeSet::new();
    for c in &pod.containers {
        let mut valid = true;
        for port in list(Some(c.value), "ports") {
            if let Some(port) = host_port(port) {
                valid = false;
                ports.insert(port);
            }
        }
        if !valid {
            bad_containers.push(c.name);
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    let port_list: Vec<&str> = ports.iter().map(String::as_str).collect();
    fail(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad_containers),
            plural("uses", "use", bad_containers.len()),
            plural("hostPort", "hostPorts", ports.len()),
            port_list.join(", ")
        ),
    )
}

/// Non-empty `host`s of a probe or lifecycle handler's `httpGet` and `tcpSocket`.
fn handler_hosts<'a>(handler: Option<&'a Value>, out: &mut Vec<&'a str>) {
    for kind in ["httpGet", "tcpSocket"] {
        if let Some(host) = text(child(handler, kind), "host") {
            if !host.is_empty() {
                out.push(host);
            }
        }
    }
}

fn host_probes_and_host_lifecycle(pod: &Pod<'_>) -> Option<Failure> {
    let mut bad_containers = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    for c in &pod.containers {
        let mut found = Vec::new();
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            handler_hosts(child(Some(c.value), probe), &mut found);
        }
        let lifecycle = child(Some(c.value), "lifecycle");
        for hook in ["postStart", "preStop"] {
            handler_hosts(child(lifecycle, hook), &mut found);
        }
        if !found.is_empty() {
            bad_containers.insert(c.name);
            hosts.extend(found);
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    fail(
        "probe or lifecycle host",
        format!(
            "{} {} {} {} {}",
            plural("container", "containers", bad_containers.len()),
            join_quote(&bad_containers),
            plural("uses", "use", bad_containers.len()),
            plural(
                "probe or lifecycle host",
                "probe or lifecycle hosts",
                hosts.len()
            ),
            join_quote(&hosts)
        ),
    )
}

fn privileged(pod: &Pod<'_>) -> Option<Failure> {
    let bad: Vec<&str> = pod
        .containers
        .iter()
        .filter(|c| flag(c.security_context, "privileged") == Some(true))
        .map(|c| c.name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    fail(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&bad)
        ),
    )
}

/// procMount at baseline: any value in a user namespace, else as at restricted.
fn proc_mount_baseline(pod: &Pod<'_>) -> Option<Failure> {
    if pod.user_namespace {
        return None;
    }
    proc_mount(pod)
}

/// procMount must be unset or `Default`.
pub(super) fn proc_mount(pod: &Pod<'_>) -> Option<Failure> {
    let mut bad_containers = Vec::new();
    let mut types = BTreeSet::new();
    for c in &pod.containers {
        if let Some(t) = text(c.security_context, "procMount") {
            if t != "Default" {
                bad_containers.push(c.name);
                types.insert(t);
            }
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    fail(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad_containers),
            join_quote(&types)
        ),
    )
}

const SELINUX_TYPES: [&str; 5] = [
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

#[derive(Default)]
struct SeLinuxFindings<'a> {
    types: BTreeSet<&'a str>,
    user: bool,
    role: bool,
}

impl<'a> SeLinuxFindings<'a> {
    /// Whether `options` is allowed, noting what is not.
    fn allowed(&mut self, options: &'a Value) -> bool {
        let mut allowed = true;
        let t = text(Some(options), "type").unwrap_or("");
        if !SELINUX_TYPES.contains(&t) {
            allowed = false;
            self.types.insert(t);
        }
        if text(Some(options), "user").is_some_and(|u| !u.is_empty()) {
            allowed = false;
            self.user = true;
        }
        if text(Some(options), "role").is_some_and(|r| !r.is_empty()) {
            allowed = false;
            self.role = true;
        }
        allowed
    }
}

fn se_linux_options(pod: &Pod<'_>) -> Option<Failure> {
    let mut findings = SeLinuxFindings::default();
    let mut setters = Vec::new();
    if let Some(options) = child(pod.security_context, "seLinuxOptions") {
        if !findings.allowed(options) {
            setters.push("pod".to_owned());
        }
    }
    let mut bad_containers = Vec::new();
    for c in &pod.containers {
        if let Some(options) = child(c.security_context, "seLinuxOptions") {
            if !findings.allowed(options) {
                bad_containers.push(c.name);
            }
        }
    }
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(&bad_containers));
    }
    if setters.is_empty() {
        return None;
    }
    let mut what = Vec::new();
    if !findings.types.is_empty() {
        what.push(format!(
            "{} {}",
            plural("type", "types", findings.types.len()),
            join_quote(&findings.types)
        ));
    }
    if findings.user {
        what.push("user may not be set".to_owned());
    }
    if findings.role {
        what.push("role may not be set".to_owned());
    }
    fail(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            what.join("; ")
        ),
    )
}

/// seccomp: explicitly set profiles must be RuntimeDefault or Localhost; when `required`
/// (restricted), every container must also have one, its own or the pod's.
pub(super) fn seccomp(pod: &Pod<'_>, required: bool) -> Option<Failure> {
    let valid = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    let mut setters = Vec::new();
    let mut bad_types = BTreeSet::new();
    let mut pod_set = false;
    if let Some(profile) = child(pod.security_context, "seccompProfile") {
        let t = text(Some(profile), "type").unwrap_or("");
        if valid(t) {
            pod_set = true;
        } else {
            setters.push("pod".to_owned());
            bad_types.insert(t);
        }
    }
    let mut explicitly_bad = Vec::new();
    let mut implicitly_bad = Vec::new();
    for c in &pod.containers {
        match child(c.security_context, "seccompProfile") {
            Some(profile) => {
                let t = text(Some(profile), "type").unwrap_or("");
                if !valid(t) {
                    explicitly_bad.push(c.name);
                    bad_types.insert(t);
                }
            }
            None if !pod_set => implicitly_bad.push(c.name),
            None => {}
        }
    }
    if !explicitly_bad.is_empty() {
        setters.push(containers_phrase(&explicitly_bad));
    }
    if !setters.is_empty() {
        return fail(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters.join(" and "),
                join_quote(&bad_types)
            ),
        );
    }
    if required && !implicitly_bad.is_empty() {
        return fail(
            "seccompProfile",
            format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers_phrase(&implicitly_bad)
            ),
        );
    }
    None
}

/// seccomp at baseline. Kubernetes checked the deprecated `seccomp.security.alpha.kubernetes.io`
/// annotations only in policy versions before v1.19; `latest` checks the fields alone.
fn seccomp_profile_baseline(pod: &Pod<'_>) -> Option<Failure> {
    seccomp(pod, false)
}

/// The sysctls Kubernetes v1.37 deems safe (namespaced and isolated from other pods).
pub(super) const SAFE_SYSCTLS: [&str; 14] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    // v1.27
    "net.ipv4.ip_local_reserved_ports",
    // v1.29
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    // v1.32
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    // v1.37
    "net.ipv4.tcp_slow_start_after_idle",
    "net.ipv4.tcp_notsent_lowat",
];

fn sysctls(pod: &Pod<'_>) -> Option<Failure> {
    let forbidden: Vec<&str> = list(pod.security_context, "sysctls")
        .iter()
        .filter(|sysctl| sysctl.is_object())
        .map(|sysctl| text(Some(sysctl), "name").unwrap_or(""))
        .filter(|name| !SAFE_SYSCTLS.contains(name))
        .collect();
    if forbidden.is_empty() {
        return None;
    }
    fail("forbidden sysctls", forbidden.join(", "))
}

fn windows_host_process(pod: &Pod<'_>) -> Option<Failure> {
    let host_process = |security_context: Option<&Value>| {
        flag(child(security_context, "windowsOptions"), "hostProcess") == Some(true)
    };
    let mut setters = Vec::new();
    if host_process(pod.security_context) {
        setters.push("pod".to_owned());
    }
    let bad: Vec<&str> = pod
        .containers
        .iter()
        .filter(|c| host_process(c.security_context))
        .map(|c| c.name)
        .collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    fail(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
    )
}
