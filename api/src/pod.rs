//! `v1` `Pod`: the spec keel runs (the fields the node honours) and the status it reports,
//! with Kubernetes' field names and defaults.

use std::{collections::BTreeSet, fmt, num::NonZeroU16};

use serde::{Deserialize, Serialize};

use crate::{
    meta::ObjectMeta,
    quantity::Quantity,
    service::{IntOrString, Protocol},
    volume::{validate_mounts, validate_volumes, Volume, VolumeMount},
};

/// Kubernetes' default `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE_PERIOD_SECONDS: u64 = 30;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub containers: Vec<Container>,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<u64>,
    /// The pod's hostname; the pod's name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// One PID namespace for all containers, with the pause process as its PID 1.
    #[serde(default)]
    pub share_process_namespace: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
}

impl PodSpec {
    pub fn grace_period_seconds(&self) -> u64 {
        self.termination_grace_period_seconds
            .unwrap_or(DEFAULT_GRACE_PERIOD_SECONDS)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub image: String,
    /// Replaces the image's entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Replaces the image's cmd.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    #[serde(default)]
    pub resources: ResourceRequirements,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// Accepted for compatibility; keel never pulls (images are imported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
}

/// A health check, with Kubernetes' fields and defaults. Exactly one handler is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
}

impl Probe {
    pub fn initial_delay(&self) -> u32 {
        self.initial_delay_seconds.unwrap_or(0)
    }
    pub fn period(&self) -> u32 {
        self.period_seconds.unwrap_or(10)
    }
    pub fn timeout(&self) -> u32 {
        self.timeout_seconds.unwrap_or(1)
    }
    pub fn success_threshold(&self) -> u32 {
        self.success_threshold.unwrap_or(1)
    }
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold.unwrap_or(3)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpGetAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub port: IntOrString,
    /// Defaults to the pod's IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default)]
    pub scheme: Scheme,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpSocketAction {
    pub port: IntOrString,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecAction {
    pub command: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrpcAction {
    pub port: NonZeroU16,
    /// The service name asked about; empty asks about the server as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

impl Container {
    /// The port a probe names: a number, or the name of one of this container's ports.
    pub fn resolve_port(&self, port: &IntOrString) -> Option<u16> {
        match port {
            IntOrString::Int(n) => Some(n.get()),
            IntOrString::String(name) => self
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port.get()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub container_port: NonZeroU16,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRequirements {
    #[serde(default)]
    pub requests: ResourceList,
    #[serde(default)]
    pub limits: ResourceList,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
}

/// `spec.securityContext`: what applies to every container of the pod unless the
/// container's own says otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<SeccompProfile>,
}

/// `spec.containers[].securityContext`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<SeccompProfile>,
    /// All capabilities, no masked paths, no seccomp filter, a writable `/sys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// `false` sets `no_new_privs`. keel sets it unless this is `true` (or the container is
    /// privileged): stricter than Kubernetes, whose default lets setuid programs escalate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
}

/// Capability names as Kubernetes writes them (`NET_ADMIN`, or `ALL`), without `CAP_`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeccompProfile {
    #[serde(rename = "type")]
    pub kind: SeccompProfileType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub localhost_profile: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeccompProfileType {
    RuntimeDefault,
    Unconfined,
    Localhost,
}

/// The Linux capabilities a container may name (`capability(7)`, Linux 6.x).
pub const CAPABILITY_NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The effective settings of one container: its own security context over the pod's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EffectiveSecurity {
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    pub run_as_non_root: bool,
    /// `RuntimeDefault` unless `Unconfined` is asked for (keel's default is the filter,
    /// as the kubelet's `--seccomp-default` makes it).
    pub seccomp_unconfined: bool,
    pub privileged: bool,
    pub no_new_privs: bool,
    pub read_only_root_filesystem: bool,
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
}

impl Container {
    /// The user and group the container runs as when the pod says: its own security context
    /// over the pod's; `None` leaves it to the image.
    pub fn run_as(&self, pod: &PodSpec) -> (Option<u32>, Option<u32>) {
        let security = self.effective_security(pod);
        (security.run_as_user, security.run_as_group)
    }

    pub fn effective_security(&self, pod: &PodSpec) -> EffectiveSecurity {
        let own = self.security_context.clone().unwrap_or_default();
        let shared = pod.security_context.clone().unwrap_or_default();
        let privileged = own.privileged == Some(true);
        let seccomp = own.seccomp_profile.or(shared.seccomp_profile);
        let capabilities = own.capabilities.unwrap_or_default();
        EffectiveSecurity {
            run_as_user: own.run_as_user.or(shared.run_as_user),
            run_as_group: own.run_as_group.or(shared.run_as_group),
            run_as_non_root: own.run_as_non_root.or(shared.run_as_non_root) == Some(true),
            seccomp_unconfined: privileged
                || seccomp.is_some_and(|p| p.kind == SeccompProfileType::Unconfined),
            privileged,
            no_new_privs: !privileged && own.allow_privilege_escalation != Some(true),
            read_only_root_filesystem: own.read_only_root_filesystem == Some(true),
            add_capabilities: capabilities.add,
            drop_capabilities: capabilities.drop,
        }
    }
}

fn validate_seccomp(at: &str, profile: &Option<SeccompProfile>) -> Result<(), (String, String)> {
    let Some(profile) = profile else {
        return Ok(());
    };
    match profile.kind {
        SeccompProfileType::Localhost => Err((
            format!("{at}.seccompProfile.type"),
            "Localhost profiles are not supported by keel: use RuntimeDefault or Unconfined".into(),
        )),
        _ if profile.localhost_profile.is_some() => Err((
            format!("{at}.seccompProfile.localhostProfile"),
            "can only be set for type Localhost".into(),
        )),
        _ => Ok(()),
    }
}

/// Kubernetes' rules for a container's security context, and keel's: capability names must
/// be ones the kernel knows.
fn validate_security_context(at: &str, context: &SecurityContext) -> Result<(), (String, String)> {
    validate_seccomp(at, &context.seccomp_profile)?;
    if context.privileged == Some(true) && context.allow_privilege_escalation == Some(false) {
        return Err((
            format!("{at}.allowPrivilegeEscalation"),
            "cannot set `allowPrivilegeEscalation` to false and `privileged` to true".into(),
        ));
    }
    if let Some(capabilities) = &context.capabilities {
        for (list, names) in [("add", &capabilities.add), ("drop", &capabilities.drop)] {
            for (i, name) in names.iter().enumerate() {
                let bare = name.strip_prefix("CAP_").unwrap_or(name);
                if bare != "ALL" && !CAPABILITY_NAMES.contains(&bare) {
                    return Err((
                        format!("{at}.capabilities.{list}[{i}]"),
                        format!("{name:?} is not a Linux capability"),
                    ));
                }
            }
        }
        let adds_sys_admin = capabilities
            .add
            .iter()
            .any(|c| matches!(c.as_str(), "SYS_ADMIN" | "CAP_SYS_ADMIN"));
        if adds_sys_admin && context.allow_privilege_escalation == Some(false) {
            return Err((
                format!("{at}.allowPrivilegeEscalation"),
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// Checks what the types cannot. Returns the field path and the reason.
pub(crate) fn validate_pod(pod: &Pod) -> Result<(), (String, String)> {
    // A DNS-1123 label, not Kubernetes' subdomain: the name is the pod's hostname unless
    // spec.hostname says otherwise.
    crate::validation::check_metadata(&pod.metadata, crate::validation::NameRule::Dns1123Label)?;
    let spec = &pod.spec;
    if spec.containers.is_empty() {
        return Err(("spec.containers".into(), "must not be empty".into()));
    }
    if let Some(hostname) = &spec.hostname {
        check_dns_label("spec.hostname", hostname)?;
    }
    let volumes = validate_volumes(&spec.volumes)?;
    if let Some(context) = &spec.security_context {
        validate_seccomp("spec.securityContext", &context.seccomp_profile)?;
    }
    let mut names = BTreeSet::new();
    for (i, container) in spec.containers.iter().enumerate() {
        let at = |field: &str| format!("spec.containers[{i}].{field}");
        validate_mounts(container, &volumes, &at)?;
        if let Some(context) = &container.security_context {
            validate_security_context(&at("securityContext"), context)?;
        }
        check_dns_label(&at("name"), &container.name)?;
        if !names.insert(container.name.as_str()) {
            return Err((
                at("name"),
                format!("duplicate container name {:?}", container.name),
            ));
        }
        if container.image.trim().is_empty() {
            return Err((at("image"), "must not be empty".into()));
        }
        for (j, var) in container.env.iter().enumerate() {
            let field = at(&format!("env[{j}].name"));
            if var.name.is_empty() {
                return Err((field, "Required value".into()));
            }
            crate::validation::check(
                &field,
                &var.name,
                crate::validation::is_env_var_name(&var.name),
            )?;
        }
        if let Some(dir) = &container.working_dir {
            if !dir.starts_with('/') {
                return Err((at("workingDir"), format!("{dir:?} is not an absolute path")));
            }
        }
        let mut ports = BTreeSet::new();
        for (j, port) in container.ports.iter().enumerate() {
            if let Some(name) = &port.name {
                crate::validation::check(
                    &at(&format!("ports[{j}].name")),
                    name,
                    crate::validation::is_valid_port_name(name),
                )?;
            }
            if !ports.insert((port.container_port, port.protocol)) {
                return Err((
                    at(&format!("ports[{j}].containerPort")),
                    format!("duplicate port {}/{}", port.container_port, port.protocol),
                ));
            }
        }
        validate_resources(&container.resources, &at("resources"))?;
        for (probe, name, single_success) in [
            (&container.liveness_probe, "livenessProbe", true),
            (&container.readiness_probe, "readinessProbe", false),
            (&container.startup_probe, "startupProbe", true),
        ] {
            if let Some(probe) = probe {
                validate_probe(container, probe, &at(name), single_success)?;
            }
        }
    }
    Ok(())
}

/// Kubernetes' probe validation: one handler, positive timings, a success threshold of 1
/// for liveness and startup probes, ports that exist.
fn validate_probe(
    container: &Container,
    probe: &Probe,
    at: &str,
    single_success: bool,
) -> Result<(), (String, String)> {
    let handlers = [
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
        probe.exec.is_some(),
        probe.grpc.is_some(),
    ];
    match handlers.iter().filter(|h| **h).count() {
        1 => {}
        0 => {
            return Err((
                at.to_owned(),
                "needs one of httpGet, tcpSocket, exec, grpc".into(),
            ))
        }
        _ => {
            return Err((
                at.to_owned(),
                "may have only one of httpGet, tcpSocket, exec, grpc".into(),
            ))
        }
    }
    for (value, field) in [
        (probe.period_seconds, "periodSeconds"),
        (probe.timeout_seconds, "timeoutSeconds"),
        (probe.success_threshold, "successThreshold"),
        (probe.failure_threshold, "failureThreshold"),
    ] {
        if value == Some(0) {
            return Err((format!("{at}.{field}"), "must be at least 1".into()));
        }
    }
    if single_success && probe.success_threshold() != 1 {
        return Err((
            format!("{at}.successThreshold"),
            format!(
                "must be 1 for liveness and startup probes (got {})",
                probe.success_threshold()
            ),
        ));
    }
    let port = probe
        .http_get
        .as_ref()
        .map(|h| (&h.port, "httpGet.port"))
        .or(probe
            .tcp_socket
            .as_ref()
            .map(|t| (&t.port, "tcpSocket.port")));
    if let Some((port, field)) = port {
        if container.resolve_port(port).is_none() {
            return Err((
                format!("{at}.{field}"),
                match port {
                    IntOrString::String(name) => format!("{name:?} names no port of the container"),
                    IntOrString::Int(n) => format!("port {n} is not valid"),
                },
            ));
        }
    }
    if let Some(exec) = &probe.exec {
        if exec.command.is_empty() {
            return Err((format!("{at}.exec.command"), "must not be empty".into()));
        }
    }
    if let Some(http) = &probe.http_get {
        if let Some(path) = &http.path {
            if !path.starts_with('/') {
                return Err((
                    format!("{at}.httpGet.path"),
                    format!("{path:?} must start with /"),
                ));
            }
        }
        for (i, header) in http.http_headers.iter().enumerate() {
            let valid = !header.name.is_empty()
                && header
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b':');
            if !valid {
                return Err((
                    format!("{at}.httpGet.httpHeaders[{i}].name"),
                    format!("{:?} is not a valid header name", header.name),
                ));
            }
        }
    }
    Ok(())
}

fn validate_resources(resources: &ResourceRequirements, at: &str) -> Result<(), (String, String)> {
    for (list, name) in [
        (&resources.requests, "requests"),
        (&resources.limits, "limits"),
    ] {
        if let Some(cpu) = &list.cpu {
            cpu.millicores()
                .map_err(|reason| (format!("{at}.{name}.cpu"), reason))?;
        }
        if let Some(memory) = &list.memory {
            memory
                .bytes()
                .map_err(|reason| (format!("{at}.{name}.memory"), reason))?;
        }
    }
    let (requests, limits) = (&resources.requests, &resources.limits);
    if let (Some(request), Some(limit)) = (&requests.cpu, &limits.cpu) {
        if request.millicores() > limit.millicores() {
            return Err((
                format!("{at}.requests.cpu"),
                format!("{request} must be less than or equal to the cpu limit {limit}"),
            ));
        }
    }
    if let (Some(request), Some(limit)) = (&requests.memory, &limits.memory) {
        if request.bytes() > limit.bytes() {
            return Err((
                format!("{at}.requests.memory"),
                format!("{request} must be less than or equal to the memory limit {limit}"),
            ));
        }
    }
    Ok(())
}

/// RFC 1123 label: what Kubernetes requires of pod names, container names and hostnames.
pub(crate) fn check_dns_label(field: &str, value: &str) -> Result<(), (String, String)> {
    let valid = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err((
            field.to_owned(),
            format!(
                "{value:?} must be 1-63 lowercase letters, digits or '-', starting and ending \
                 with a letter or digit"
            ),
        ))
    }
}

// ---- status ---------------------------------------------------------------------------------

/// `status` of a pod, as the kubelet reports it. Times are RFC 3339.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub phase: PodPhase,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<PodCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    #[serde(default, rename = "podIP", skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    #[serde(default, rename = "podIPs", skip_serializing_if = "Vec::is_empty")]
    pub pod_ips: Vec<PodIp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default)]
    pub container_statuses: Vec<ContainerStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodIp {
    pub ip: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodPhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl fmt::Display for PodPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodCondition {
    /// `PodScheduled`, `Initialized`, `ContainersReady`, `Ready`.
    #[serde(rename = "type")]
    pub condition_type: String,
    /// `True` or `False`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    pub state: ContainerState,
    #[serde(default)]
    pub last_state: ContainerState,
    pub ready: bool,
    pub restart_count: u32,
    pub image: String,
    #[serde(default, rename = "imageID")]
    pub image_id: String,
    #[serde(
        default,
        rename = "containerID",
        skip_serializing_if = "Option::is_none"
    )]
    pub container_id: Option<String>,
    #[serde(default)]
    pub started: bool,
}

/// Exactly one of the three is set (none for an empty `lastState`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<ContainerStateWaiting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<ContainerStateRunning>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated: Option<ContainerStateTerminated>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStateWaiting {
    /// `ContainerCreating`, `CrashLoopBackOff`, `ErrImageNeverPull`, …
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStateRunning {
    pub started_at: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStateTerminated {
    pub exit_code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled`, `StartError`.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub started_at: String,
    pub finished_at: String,
    #[serde(
        default,
        rename = "containerID",
        skip_serializing_if = "Option::is_none"
    )]
    pub container_id: Option<String>,
}

impl ContainerState {
    /// `Waiting`, `Running` or `Terminated`, with the reason where there is one.
    pub fn summary(&self) -> String {
        match (&self.waiting, &self.running, &self.terminated) {
            (Some(waiting), _, _) => format!("Waiting ({})", waiting.reason),
            (_, Some(_), _) => "Running".to_owned(),
            (_, _, Some(t)) => format!("Terminated ({}, exit {})", t.reason, t.exit_code),
            _ => "-".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{parse_manifests, parse_manifests_with_warnings, Object};

    use super::*;

    const POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 5
  containers:
  - name: server
    image: busybox
    command: [httpd, -f]
    env:
    - {name: MODE, value: fast}
    ports:
    - containerPort: 8080
    resources:
      requests: {cpu: 100m, memory: 32Mi}
      limits: {cpu: 1, memory: 64Mi}
";

    fn pod(text: &str) -> Pod {
        match parse_manifests(text).expect("valid pod").remove(0) {
            Object::Pod(pod) => *pod,
            other => panic!("not a pod: {other:?}"),
        }
    }

    #[test]
    fn reads_the_fields_keel_honours() {
        let pod = pod(POD);
        assert_eq!(pod.spec.restart_policy, RestartPolicy::OnFailure);
        assert_eq!(pod.spec.grace_period_seconds(), 5);
        let container = &pod.spec.containers[0];
        assert_eq!(
            container
                .resources
                .limits
                .cpu
                .as_ref()
                .map(|q| q.millicores()),
            Some(Ok(1000))
        );
        assert_eq!(
            container
                .resources
                .limits
                .memory
                .as_ref()
                .map(|q| q.bytes()),
            Some(Ok(64 << 20))
        );
        assert_eq!(container.run_as(&pod.spec), (None, None));
        let defaults = self::pod(&POD.replace("  restartPolicy: OnFailure\n", ""));
        assert_eq!(defaults.spec.restart_policy, RestartPolicy::Always);
    }

    #[test]
    fn security_contexts_merge_and_are_checked_by_field() {
        let with = |pod_level: &str, container_level: &str| {
            POD.replace(
                "  containers:\n",
                &format!("  securityContext: {pod_level}\n  containers:\n"),
            )
            .replace(
                "    image: busybox\n",
                &format!("    image: busybox\n    securityContext: {container_level}\n"),
            )
        };
        let pod = pod(&with(
            "{runAsUser: 1000, runAsNonRoot: true, seccompProfile: {type: Unconfined}}",
            "{runAsGroup: 7, readOnlyRootFilesystem: true, capabilities: {add: [NET_ADMIN], drop: [ALL]}}",
        ));
        let security = pod.spec.containers[0].effective_security(&pod.spec);
        assert_eq!(
            (security.run_as_user, security.run_as_group),
            (Some(1000), Some(7))
        );
        assert!(security.run_as_non_root && security.seccomp_unconfined);
        assert!(security.no_new_privs && security.read_only_root_filesystem);
        assert!(!security.privileged);
        assert_eq!(security.add_capabilities, ["NET_ADMIN"]);
        assert_eq!(security.drop_capabilities, ["ALL"]);

        let defaults = self::pod(POD);
        let security = defaults.spec.containers[0].effective_security(&defaults.spec);
        assert!(security.no_new_privs && !security.seccomp_unconfined && !security.privileged);

        for (pod_level, container_level, field) in [
            (
                "{}",
                "{capabilities: {add: [\"NET_ADMIN\\n-j ACCEPT\"]}}",
                "spec.containers[0].securityContext.capabilities.add[0]",
            ),
            (
                "{}",
                "{capabilities: {drop: [EVERYTHING]}}",
                "spec.containers[0].securityContext.capabilities.drop[0]",
            ),
            (
                "{}",
                "{privileged: true, allowPrivilegeEscalation: false}",
                "spec.containers[0].securityContext.allowPrivilegeEscalation",
            ),
            (
                "{}",
                "{seccompProfile: {type: Localhost, localhostProfile: x.json}}",
                "spec.containers[0].securityContext.seccompProfile.type",
            ),
            (
                "{seccompProfile: {type: Unconfined, localhostProfile: x}}",
                "{}",
                "spec.securityContext.seccompProfile.localhostProfile",
            ),
        ] {
            let err = parse_manifests(&with(pod_level, container_level)).expect_err(field);
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
        let err = parse_manifests(&with("{}", "{privileged: yes}")).expect_err("not a bool");
        assert!(err.to_string().contains("privileged"), "{err}");
    }

    #[test]
    fn unknown_fields_are_warned_about_with_their_path() {
        let text = POD.replace(
            "    image: busybox\n",
            "    image: busybox\n    lifecycle: {preStop: {exec: {command: [sleep, '1']}}}\n",
        );
        let (_, warnings) = parse_manifests_with_warnings(&text).expect("still valid");
        let fields: Vec<&str> = warnings.iter().map(|w| w.field.as_str()).collect();
        assert_eq!(fields, ["spec.containers[0].lifecycle"]);
        assert!(
            warnings[0].to_string().contains("Pod/web"),
            "{}",
            warnings[0]
        );
    }

    #[test]
    fn invalid_fields_are_named() {
        let cases = [
            ("name: server", "name: Server_1", "spec.containers[0].name"),
            ("image: busybox", "image: ''", "spec.containers[0].image"),
            (
                "memory: 64Mi",
                "memory: 64MB",
                "spec.containers[0].resources.limits.memory",
            ),
            (
                "cpu: 100m",
                "cpu: 2",
                "spec.containers[0].resources.requests.cpu",
            ),
            (
                "restartPolicy: OnFailure",
                "restartPolicy: Sometimes",
                "spec.restartPolicy",
            ),
            (
                "containerPort: 8080",
                "containerPort: 0",
                "spec.containers[0].ports[0].containerPort",
            ),
            (
                "terminationGracePeriodSeconds: 5",
                "terminationGracePeriodSeconds: -1",
                "spec.terminationGracePeriodSeconds",
            ),
            ("name: MODE", "name: ''", "spec.containers[0].env[0].name"),
            ("name: web\n", "name: ''\n", "metadata.name"),
        ];
        for (from, to, field) in cases {
            let text = POD.replacen(from, to, 1);
            assert_ne!(text, POD, "{from} not in the fixture");
            let err = parse_manifests(&text).expect_err(to);
            assert!(err.to_string().contains(field), "{to}: {err}");
        }
        let duplicate = format!("{POD}  - name: server\n    image: busybox\n");
        let err = parse_manifests(&duplicate).expect_err("duplicate");
        assert!(err.to_string().contains("spec.containers[1].name"), "{err}");
        let none = "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: []}\n";
        assert!(parse_manifests(none)
            .expect_err("empty")
            .to_string()
            .contains("spec.containers"));
    }

    fn with_probe(kind: &str, probe: &str) -> String {
        POD.replace(
            "    ports:\n",
            &format!("    {kind}: {probe}\n    ports:\n"),
        )
        .replace(
            "- containerPort: 8080",
            "- {containerPort: 8080, name: http}",
        )
    }

    #[test]
    fn probes_default_like_kubernetes() {
        let pod = pod(&with_probe(
            "readinessProbe",
            "{httpGet: {port: http, path: /ready}}",
        ));
        let probe = pod.spec.containers[0]
            .readiness_probe
            .clone()
            .expect("probe");
        let defaults = (
            probe.initial_delay(),
            probe.period(),
            probe.timeout(),
            probe.success_threshold(),
            probe.failure_threshold(),
        );
        assert_eq!(defaults, (0, 10, 1, 1, 3));
        let port = &probe.http_get.as_ref().expect("httpGet").port;
        assert_eq!(pod.spec.containers[0].resolve_port(port), Some(8080));
    }

    #[test]
    fn invalid_probes_are_named() {
        let cases = [
            (
                "livenessProbe",
                "{tcpSocket: {port: 8080}, successThreshold: 2}",
                "livenessProbe.successThreshold",
            ),
            (
                "startupProbe",
                "{exec: {command: [true]}, successThreshold: 3}",
                "startupProbe.successThreshold",
            ),
            ("readinessProbe", "{periodSeconds: 5}", "readinessProbe"),
            (
                "readinessProbe",
                "{exec: {command: [true]}, tcpSocket: {port: 1}}",
                "readinessProbe",
            ),
            (
                "readinessProbe",
                "{tcpSocket: {port: metrics}}",
                "readinessProbe.tcpSocket.port",
            ),
            (
                "livenessProbe",
                "{exec: {command: []}}",
                "livenessProbe.exec.command",
            ),
            (
                "livenessProbe",
                "{httpGet: {port: 8080, path: health}}",
                "livenessProbe.httpGet.path",
            ),
            (
                "livenessProbe",
                "{exec: {command: [true]}, periodSeconds: 0}",
                "livenessProbe.periodSeconds",
            ),
            (
                "livenessProbe",
                "{httpGet: {port: 8080, scheme: FTP}}",
                "scheme",
            ),
            (
                "livenessProbe",
                "{httpGet: {port: 8080, scheme: https}}",
                "scheme",
            ),
        ];
        for (kind, probe, field) in cases {
            let err = parse_manifests(&with_probe(kind, probe)).expect_err(probe);
            assert!(err.to_string().contains(field), "{probe}: {err}");
        }
        // Readiness may ask for several successes.
        parse_manifests(&with_probe(
            "readinessProbe",
            "{tcpSocket: {port: 8080}, successThreshold: 2}",
        ))
        .expect("valid");
    }
}
