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

/// `Serialize`/`Deserialize` (here and in the types under it) only for the runtime's own
/// state: `pod.json` holds the pod as applied and is read back by a daemon that adopts it.
/// Kubernetes objects are never read into it with serde: they are converted from the
/// `k8s-openapi` types (module `convert::pod`).
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
        crate::validation::check_dns_label("spec.hostname", hostname)?;
    }
    let volumes = validate_volumes(&spec.volumes)?;
    if let Some(context) = &spec.security_context {
        validate_seccomp("spec.securityContext", &context.seccomp_profile)?;
    }
    let mut names = BTreeSet::new();
    for (i, container) in spec.containers.iter().enumerate() {
        let at = |field: &str| format!("spec.containers[{i}].{field}");
        validate_mounts(&container.volume_mounts, &volumes, &at)?;
        if let Some(context) = &container.security_context {
            validate_security_context(&at("securityContext"), context)?;
        }
        crate::validation::check_dns_label(&at("name"), &container.name)?;
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

mod security;

use security::{validate_seccomp, validate_security_context};
pub use security::{
    Capabilities, EffectiveSecurity, PodSecurityContext, SeccompProfile, SeccompProfileType,
    SecurityContext, CAPABILITY_NAMES,
};

#[cfg(test)]
mod tests;
