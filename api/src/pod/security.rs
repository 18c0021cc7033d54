//! `securityContext`, pod and container: the types, how the container's own settings override
//! the pod's, and Kubernetes' rules for them. What the runtime does with them is in
//! `keel-runtime`'s `security` module.

use serde::{Deserialize, Serialize};

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

impl super::Container {
    /// The user and group the container runs as when the pod says: its own security context
    /// over the pod's; `None` leaves it to the image.
    pub fn run_as(&self, pod: &super::PodSpec) -> (Option<u32>, Option<u32>) {
        let security = self.effective_security(pod);
        (security.run_as_user, security.run_as_group)
    }

    pub fn effective_security(&self, pod: &super::PodSpec) -> EffectiveSecurity {
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

pub(super) fn validate_seccomp(
    at: &str,
    profile: &Option<SeccompProfile>,
) -> Result<(), (String, String)> {
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
pub(super) fn validate_security_context(
    at: &str,
    context: &SecurityContext,
) -> Result<(), (String, String)> {
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
