//! `v1` `Pod` → [`Pod`]: the spec the node runs. The status is the node's to write, never
//! read from a manifest.

use k8s_openapi::api::core::v1 as wire;

use super::{
    enumerated, int_or_string, meta, non_negative, port, protocol, volume, ConvertError, Result,
};
use crate::{
    pod::{
        Capabilities, Container, ContainerPort, EnvVar, ExecAction, GrpcAction, HttpGetAction,
        HttpHeader, Pod, PodSecurityContext, PodSpec, Probe, ResourceList, ResourceRequirements,
        RestartPolicy, Scheme, SeccompProfile, SeccompProfileType, SecurityContext,
        TcpSocketAction,
    },
    quantity::Quantity,
};

impl TryFrom<&wire::Pod> for Pod {
    type Error = ConvertError;

    fn try_from(wire: &wire::Pod) -> Result<Self> {
        let empty = wire::PodSpec::default();
        let spec = wire.spec.as_ref().unwrap_or(&empty);
        Ok(Pod {
            metadata: meta(&wire.metadata),
            spec: PodSpec {
                containers: spec
                    .containers
                    .iter()
                    .enumerate()
                    .map(|(i, c)| container(&format!("spec.containers[{i}]"), c))
                    .collect::<Result<_>>()?,
                restart_policy: enumerated(
                    "spec.restartPolicy",
                    spec.restart_policy.as_deref(),
                    RestartPolicy::Always,
                    &[
                        ("Always", RestartPolicy::Always),
                        ("OnFailure", RestartPolicy::OnFailure),
                        ("Never", RestartPolicy::Never),
                    ],
                )?,
                termination_grace_period_seconds: spec
                    .termination_grace_period_seconds
                    .map(|s| {
                        u64::try_from(s).map_err(|_| {
                            ConvertError::new(
                                "spec.terminationGracePeriodSeconds",
                                format!("Invalid value: {s}: must be greater than or equal to 0"),
                            )
                        })
                    })
                    .transpose()?,
                hostname: spec.hostname.clone(),
                share_process_namespace: spec.share_process_namespace.unwrap_or(false),
                security_context: spec
                    .security_context
                    .as_ref()
                    .map(|c| {
                        let at = "spec.securityContext";
                        Ok(PodSecurityContext {
                            run_as_user: id(&format!("{at}.runAsUser"), c.run_as_user)?,
                            run_as_group: id(&format!("{at}.runAsGroup"), c.run_as_group)?,
                            run_as_non_root: c.run_as_non_root,
                            seccomp_profile: c
                                .seccomp_profile
                                .as_ref()
                                .map(|p| seccomp(&format!("{at}.seccompProfile"), p))
                                .transpose()?,
                        })
                    })
                    .transpose()?,
                volumes: spec
                    .volumes
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(i, v)| volume::volume(&format!("spec.volumes[{i}]"), v))
                    .collect::<Result<_>>()?,
            },
        })
    }
}

fn container(at: &str, wire: &wire::Container) -> Result<Container> {
    let field = |name: &str| format!("{at}.{name}");
    let probe = |name: &str, p: &Option<wire::Probe>| {
        p.as_ref().map(|p| probe(&field(name), p)).transpose()
    };
    Ok(Container {
        name: wire.name.clone(),
        image: wire.image.clone().unwrap_or_default(),
        command: wire.command.clone().unwrap_or_default(),
        args: wire.args.clone().unwrap_or_default(),
        env: wire
            .env
            .iter()
            .flatten()
            .map(|e| EnvVar {
                name: e.name.clone(),
                value: e.value.clone().unwrap_or_default(),
            })
            .collect(),
        working_dir: wire.working_dir.clone(),
        ports: wire
            .ports
            .iter()
            .flatten()
            .enumerate()
            .map(|(j, p)| {
                let at = field(&format!("ports[{j}]"));
                Ok(ContainerPort {
                    name: p.name.clone(),
                    container_port: port(&format!("{at}.containerPort"), p.container_port)?,
                    protocol: protocol(&format!("{at}.protocol"), p.protocol.as_deref())?,
                })
            })
            .collect::<Result<_>>()?,
        resources: wire
            .resources
            .as_ref()
            .map(|r| ResourceRequirements {
                requests: resource_list(&r.requests),
                limits: resource_list(&r.limits),
            })
            .unwrap_or_default(),
        security_context: wire
            .security_context
            .as_ref()
            .map(|c| security_context(&field("securityContext"), c))
            .transpose()?,
        image_pull_policy: wire.image_pull_policy.clone(),
        liveness_probe: probe("livenessProbe", &wire.liveness_probe)?,
        readiness_probe: probe("readinessProbe", &wire.readiness_probe)?,
        startup_probe: probe("startupProbe", &wire.startup_probe)?,
        volume_mounts: wire
            .volume_mounts
            .iter()
            .flatten()
            .map(volume::mount)
            .collect(),
    })
}

type WireQuantities = Option<
    std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
>;

/// `cpu` and `memory`, as written (validation parses them); other resources are kept on the
/// wire object and named in the manifest's warnings.
fn resource_list(wire: &WireQuantities) -> ResourceList {
    let get = |name: &str| {
        wire.as_ref()
            .and_then(|m| m.get(name))
            .map(|q| Quantity::new(q.0.clone()))
    };
    ResourceList {
        cpu: get("cpu"),
        memory: get("memory"),
    }
}

/// A user or group id: Kubernetes' `int64`, keel's `u32` (Linux ids).
fn id(field: &str, value: Option<i64>) -> Result<Option<u32>> {
    value
        .map(|v| {
            u32::try_from(v).map_err(|_| {
                ConvertError::new(
                    field,
                    format!("Invalid value: {v}: must be between 0 and 4294967295, inclusive"),
                )
            })
        })
        .transpose()
}

fn seccomp(at: &str, wire: &wire::SeccompProfile) -> Result<SeccompProfile> {
    let field = format!("{at}.type");
    if wire.type_.is_empty() {
        return Err(ConvertError::required(field));
    }
    Ok(SeccompProfile {
        kind: enumerated(
            &field,
            Some(wire.type_.as_str()),
            SeccompProfileType::RuntimeDefault,
            &[
                ("RuntimeDefault", SeccompProfileType::RuntimeDefault),
                ("Unconfined", SeccompProfileType::Unconfined),
                ("Localhost", SeccompProfileType::Localhost),
            ],
        )?,
        localhost_profile: wire.localhost_profile.clone(),
    })
}

fn security_context(at: &str, wire: &wire::SecurityContext) -> Result<SecurityContext> {
    Ok(SecurityContext {
        run_as_user: id(&format!("{at}.runAsUser"), wire.run_as_user)?,
        run_as_group: id(&format!("{at}.runAsGroup"), wire.run_as_group)?,
        run_as_non_root: wire.run_as_non_root,
        seccomp_profile: wire
            .seccomp_profile
            .as_ref()
            .map(|p| seccomp(&format!("{at}.seccompProfile"), p))
            .transpose()?,
        privileged: wire.privileged,
        allow_privilege_escalation: wire.allow_privilege_escalation,
        read_only_root_filesystem: wire.read_only_root_filesystem,
        capabilities: wire.capabilities.as_ref().map(|c| Capabilities {
            add: c.add.clone().unwrap_or_default(),
            drop: c.drop.clone().unwrap_or_default(),
        }),
    })
}

fn probe(at: &str, wire: &wire::Probe) -> Result<Probe> {
    let count = |name: &str, value: Option<i32>| {
        value
            .map(|v| non_negative(&format!("{at}.{name}"), v))
            .transpose()
    };
    Ok(Probe {
        http_get: wire
            .http_get
            .as_ref()
            .map(|h| {
                Ok(HttpGetAction {
                    path: h.path.clone(),
                    port: int_or_string(&format!("{at}.httpGet.port"), &h.port)?,
                    host: h.host.clone(),
                    scheme: enumerated(
                        &format!("{at}.httpGet.scheme"),
                        h.scheme.as_deref(),
                        Scheme::Http,
                        &[("HTTP", Scheme::Http), ("HTTPS", Scheme::Https)],
                    )?,
                    http_headers: h
                        .http_headers
                        .iter()
                        .flatten()
                        .map(|h| HttpHeader {
                            name: h.name.clone(),
                            value: h.value.clone(),
                        })
                        .collect(),
                })
            })
            .transpose()?,
        tcp_socket: wire
            .tcp_socket
            .as_ref()
            .map(|t| {
                Ok(TcpSocketAction {
                    port: int_or_string(&format!("{at}.tcpSocket.port"), &t.port)?,
                    host: t.host.clone(),
                })
            })
            .transpose()?,
        exec: wire.exec.as_ref().map(|e| ExecAction {
            command: e.command.clone().unwrap_or_default(),
        }),
        grpc: wire
            .grpc
            .as_ref()
            .map(|g| {
                Ok(GrpcAction {
                    port: port(&format!("{at}.grpc.port"), g.port)?,
                    service: g.service.clone(),
                })
            })
            .transpose()?,
        initial_delay_seconds: count("initialDelaySeconds", wire.initial_delay_seconds)?,
        period_seconds: count("periodSeconds", wire.period_seconds)?,
        timeout_seconds: count("timeoutSeconds", wire.timeout_seconds)?,
        success_threshold: count("successThreshold", wire.success_threshold)?,
        failure_threshold: count("failureThreshold", wire.failure_threshold)?,
    })
}
