//! core/v1 pod template (a Deployment's `spec.template`): PodSpec with every field Kubernetes
//! 1.37 has, so nothing kubectl sends is refused, and the scheduling types it carries. Containers
//! are in `containers.rs`, volumes in `volumes.rs`.

use super::containers::{
    APP_ARMOR_PROFILE, CONTAINER, EPHEMERAL_CONTAINER, RESOURCE_REQUIREMENTS, SECCOMP_PROFILE,
    SE_LINUX_OPTIONS, WINDOWS_SECURITY_CONTEXT_OPTIONS,
};
use super::meta::{LABEL_SELECTOR, OBJECT_META};
use super::objects::LOCAL_OBJECT_REFERENCE;
use super::volumes::VOLUME;
use super::Ty::*;
use super::{field, omitempty, Message, CORE};

pub(super) static POD_TEMPLATE_SPEC: Message = Message::new(
    CORE,
    "PodTemplateSpec",
    &[
        field(1, "metadata", Object(&OBJECT_META)),
        field(2, "spec", Object(&POD_SPEC)),
    ],
);

pub(super) static POD_SPEC: Message = Message::new(
    CORE,
    "PodSpec",
    &[
        field(1, "volumes", Objects(&VOLUME)),
        field(20, "initContainers", Objects(&CONTAINER)),
        field(2, "containers", Objects(&CONTAINER)),
        field(34, "ephemeralContainers", Objects(&EPHEMERAL_CONTAINER)),
        omitempty(3, "restartPolicy", Str),
        field(4, "terminationGracePeriodSeconds", Int64),
        field(5, "activeDeadlineSeconds", Int64),
        omitempty(6, "dnsPolicy", Str),
        field(7, "nodeSelector", StringMap),
        omitempty(8, "serviceAccountName", Str),
        omitempty(9, "serviceAccount", Str),
        field(21, "automountServiceAccountToken", Bool),
        omitempty(10, "nodeName", Str),
        omitempty(11, "hostNetwork", Bool),
        omitempty(12, "hostPID", Bool),
        omitempty(13, "hostIPC", Bool),
        field(27, "shareProcessNamespace", Bool),
        field(14, "securityContext", Object(&POD_SECURITY_CONTEXT)),
        field(15, "imagePullSecrets", Objects(&LOCAL_OBJECT_REFERENCE)),
        omitempty(16, "hostname", Str),
        omitempty(17, "subdomain", Str),
        field(18, "affinity", Object(&AFFINITY)),
        omitempty(19, "schedulerName", Str),
        field(22, "tolerations", Objects(&TOLERATION)),
        field(23, "hostAliases", Objects(&HOST_ALIAS)),
        omitempty(24, "priorityClassName", Str),
        field(25, "priority", Int32),
        field(26, "dnsConfig", Object(&POD_DNS_CONFIG)),
        field(28, "readinessGates", Objects(&POD_READINESS_GATE)),
        field(29, "runtimeClassName", Str),
        field(30, "enableServiceLinks", Bool),
        field(31, "preemptionPolicy", Str),
        field(32, "overhead", QuantityMap),
        field(
            33,
            "topologySpreadConstraints",
            Objects(&TOPOLOGY_SPREAD_CONSTRAINT),
        ),
        field(35, "setHostnameAsFQDN", Bool),
        field(36, "os", Object(&POD_OS)),
        field(37, "hostUsers", Bool),
        field(38, "schedulingGates", Objects(&POD_SCHEDULING_GATE)),
        field(39, "resourceClaims", Objects(&POD_RESOURCE_CLAIM)),
        field(40, "resources", Object(&RESOURCE_REQUIREMENTS)),
        field(41, "hostnameOverride", Str),
        field(43, "schedulingGroup", Object(&POD_SCHEDULING_GROUP)),
        field(44, "evictionResponders", Objects(&EVICTION_RESPONDER)),
    ],
);

pub(super) static POD_SECURITY_CONTEXT: Message = Message::new(
    CORE,
    "PodSecurityContext",
    &[
        field(1, "seLinuxOptions", Object(&SE_LINUX_OPTIONS)),
        field(
            8,
            "windowsOptions",
            Object(&WINDOWS_SECURITY_CONTEXT_OPTIONS),
        ),
        field(2, "runAsUser", Int64),
        field(6, "runAsGroup", Int64),
        field(3, "runAsNonRoot", Bool),
        field(4, "supplementalGroups", Int64s),
        field(12, "supplementalGroupsPolicy", Str),
        field(5, "fsGroup", Int64),
        field(7, "sysctls", Objects(&SYSCTL)),
        field(9, "fsGroupChangePolicy", Str),
        field(10, "seccompProfile", Object(&SECCOMP_PROFILE)),
        field(11, "appArmorProfile", Object(&APP_ARMOR_PROFILE)),
        field(13, "seLinuxChangePolicy", Str),
    ],
);

pub(super) static AFFINITY: Message = Message::new(
    CORE,
    "Affinity",
    &[
        field(1, "nodeAffinity", Object(&NODE_AFFINITY)),
        field(2, "podAffinity", Object(&POD_AFFINITY)),
        field(3, "podAntiAffinity", Object(&POD_ANTI_AFFINITY)),
    ],
);

pub(super) static TOLERATION: Message = Message::new(
    CORE,
    "Toleration",
    &[
        omitempty(1, "key", Str),
        omitempty(2, "operator", Str),
        omitempty(3, "value", Str),
        omitempty(4, "effect", Str),
        field(5, "tolerationSeconds", Int64),
    ],
);

pub(super) static HOST_ALIAS: Message = Message::new(
    CORE,
    "HostAlias",
    &[field(1, "ip", Str), field(2, "hostnames", Strings)],
);

pub(super) static POD_DNS_CONFIG: Message = Message::new(
    CORE,
    "PodDNSConfig",
    &[
        field(1, "nameservers", Strings),
        field(2, "searches", Strings),
        field(3, "options", Objects(&POD_DNS_CONFIG_OPTION)),
    ],
);

pub(super) static POD_READINESS_GATE: Message =
    Message::new(CORE, "PodReadinessGate", &[field(1, "conditionType", Str)]);

pub(super) static TOPOLOGY_SPREAD_CONSTRAINT: Message = Message::new(
    CORE,
    "TopologySpreadConstraint",
    &[
        field(1, "maxSkew", Int32),
        field(2, "topologyKey", Str),
        field(3, "whenUnsatisfiable", Str),
        field(4, "labelSelector", Object(&LABEL_SELECTOR)),
        field(5, "minDomains", Int32),
        field(6, "nodeAffinityPolicy", Str),
        field(7, "nodeTaintsPolicy", Str),
        field(8, "matchLabelKeys", Strings),
    ],
);

pub(super) static POD_OS: Message = Message::new(CORE, "PodOS", &[field(1, "name", Str)]);

pub(super) static POD_SCHEDULING_GATE: Message =
    Message::new(CORE, "PodSchedulingGate", &[field(1, "name", Str)]);

pub(super) static POD_RESOURCE_CLAIM: Message = Message::new(
    CORE,
    "PodResourceClaim",
    &[
        field(1, "name", Str),
        field(3, "resourceClaimName", Str),
        field(4, "resourceClaimTemplateName", Str),
    ],
);

pub(super) static POD_SCHEDULING_GROUP: Message =
    Message::new(CORE, "PodSchedulingGroup", &[field(1, "podGroupName", Str)]);

pub(super) static EVICTION_RESPONDER: Message = Message::new(
    CORE,
    "EvictionResponder",
    &[field(1, "name", Str), field(2, "priority", Int32)],
);

pub(super) static SYSCTL: Message = Message::new(
    CORE,
    "Sysctl",
    &[field(1, "name", Str), field(2, "value", Str)],
);

pub(super) static NODE_AFFINITY: Message = Message::new(
    CORE,
    "NodeAffinity",
    &[
        field(
            1,
            "requiredDuringSchedulingIgnoredDuringExecution",
            Object(&NODE_SELECTOR),
        ),
        field(
            2,
            "preferredDuringSchedulingIgnoredDuringExecution",
            Objects(&PREFERRED_SCHEDULING_TERM),
        ),
    ],
);

pub(super) static POD_AFFINITY: Message = Message::new(
    CORE,
    "PodAffinity",
    &[
        field(
            1,
            "requiredDuringSchedulingIgnoredDuringExecution",
            Objects(&POD_AFFINITY_TERM),
        ),
        field(
            2,
            "preferredDuringSchedulingIgnoredDuringExecution",
            Objects(&WEIGHTED_POD_AFFINITY_TERM),
        ),
    ],
);

pub(super) static POD_ANTI_AFFINITY: Message = Message::new(
    CORE,
    "PodAntiAffinity",
    &[
        field(
            1,
            "requiredDuringSchedulingIgnoredDuringExecution",
            Objects(&POD_AFFINITY_TERM),
        ),
        field(
            2,
            "preferredDuringSchedulingIgnoredDuringExecution",
            Objects(&WEIGHTED_POD_AFFINITY_TERM),
        ),
    ],
);

pub(super) static POD_DNS_CONFIG_OPTION: Message = Message::new(
    CORE,
    "PodDNSConfigOption",
    &[omitempty(1, "name", Str), field(2, "value", Str)],
);

pub(super) static NODE_SELECTOR: Message = Message::new(
    CORE,
    "NodeSelector",
    &[field(1, "nodeSelectorTerms", Objects(&NODE_SELECTOR_TERM))],
);

pub(super) static PREFERRED_SCHEDULING_TERM: Message = Message::new(
    CORE,
    "PreferredSchedulingTerm",
    &[
        field(1, "weight", Int32),
        field(2, "preference", Object(&NODE_SELECTOR_TERM)),
    ],
);

pub(super) static POD_AFFINITY_TERM: Message = Message::new(
    CORE,
    "PodAffinityTerm",
    &[
        field(1, "labelSelector", Object(&LABEL_SELECTOR)),
        field(2, "namespaces", Strings),
        field(3, "topologyKey", Str),
        field(4, "namespaceSelector", Object(&LABEL_SELECTOR)),
        field(5, "matchLabelKeys", Strings),
        field(6, "mismatchLabelKeys", Strings),
    ],
);

pub(super) static WEIGHTED_POD_AFFINITY_TERM: Message = Message::new(
    CORE,
    "WeightedPodAffinityTerm",
    &[
        field(1, "weight", Int32),
        field(2, "podAffinityTerm", Object(&POD_AFFINITY_TERM)),
    ],
);

pub(super) static NODE_SELECTOR_TERM: Message = Message::new(
    CORE,
    "NodeSelectorTerm",
    &[
        field(1, "matchExpressions", Objects(&NODE_SELECTOR_REQUIREMENT)),
        field(2, "matchFields", Objects(&NODE_SELECTOR_REQUIREMENT)),
    ],
);

pub(super) static NODE_SELECTOR_REQUIREMENT: Message = Message::new(
    CORE,
    "NodeSelectorRequirement",
    &[
        field(1, "key", Str),
        field(2, "operator", Str),
        field(3, "values", Strings),
    ],
);
