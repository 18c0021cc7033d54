//! core/v1 kinds other than pods: Namespace, ConfigMap, Secret, ServiceAccount, ResourceQuota,
//! LimitRange, Service, and what they carry.

use super::meta::{CONDITION, OBJECT_META};
use super::Ty::*;
use super::{field, omitempty, Message, CORE};

pub(super) static NAMESPACE: Message = Message::new(
    CORE,
    "Namespace",
    &[
        field(1, "metadata", Object(&OBJECT_META)),
        field(2, "spec", Object(&NAMESPACE_SPEC)),
        field(3, "status", Object(&NAMESPACE_STATUS)),
    ],
);

pub(super) static CONFIG_MAP: Message = Message::new(
    CORE,
    "ConfigMap",
    &[
        field(1, "metadata", Object(&OBJECT_META)),
        field(4, "immutable", Bool),
        field(2, "data", StringMap),
        field(3, "binaryData", BytesMap),
    ],
);

pub(super) static SECRET: Message = Message::new(
    CORE,
    "Secret",
    &[
        field(1, "metadata", Object(&OBJECT_META)),
        field(5, "immutable", Bool),
        field(2, "data", BytesMap),
        field(4, "stringData", StringMap),
        omitempty(3, "type", Str),
    ],
);

pub(super) static SERVICE_ACCOUNT: Message = Message::new(
    CORE,
    "ServiceAccount",
    &[
        field(1, "metadata", Object(&OBJECT_META)),
        field(2, "secrets", Objects(&OBJECT_REFERENCE)),
        field(3, "imagePullSecrets", Objects(&LOCAL_OBJECT_REFERENCE)),
        field(4, "automountServiceAccountToken", Bool),
    ],
);

pub(super) static RESOURCE_QUOTA: Message = Message::new(
    CORE,
    "ResourceQuota",
    &[
        field(1, "metadata", Object(&OBJECT_META)),
        field(2, "spec", Object(&RESOURCE_QUOTA_SPEC)),
        field(3, "status", Object(&RESOURCE_QUOTA_STATUS)),
    ],
);

pub(super) static LIMIT_RANGE: Message = Message::new(
    CORE,
    "LimitRange",
    &[
        field(1, "metadata", Object(&OBJECT_META)),
        field(2, "spec", Object(&LIMIT_RANGE_SPEC)),
    ],
);

pub(super) static LIMIT_RANGE_SPEC: Message = Message::new(
    CORE,
    "LimitRangeSpec",
    &[field(1, "limits", Objects(&LIMIT_RANGE_ITEM))],
);

/// `type` has no `omitempty` in Go: an empty one is written.
pub(super) static LIMIT_RANGE_ITEM: Message = Message::new(
    CORE,
    "LimitRangeItem",
    &[
        field(1, "type", Str),
        field(2, "max", QuantityMap),
        field(3, "min", QuantityMap),
        field(4, "default", QuantityMap),
        field(5, "defaultRequest", QuantityMap),
        field(6, "maxLimitRequestRatio", QuantityMap),
    ],
);

pub(super) static SERVICE: Message = Message::new(
    CORE,
    "Service",
    &[
        field(1, "metadata", Object(&OBJECT_META)),
        field(2, "spec", Object(&SERVICE_SPEC)),
        field(3, "status", Object(&SERVICE_STATUS)),
    ],
);

pub(super) static NAMESPACE_SPEC: Message =
    Message::new(CORE, "NamespaceSpec", &[field(1, "finalizers", Strings)]);

pub(super) static NAMESPACE_STATUS: Message = Message::new(
    CORE,
    "NamespaceStatus",
    &[
        omitempty(1, "phase", Str),
        field(2, "conditions", Objects(&NAMESPACE_CONDITION)),
    ],
);

pub(super) static OBJECT_REFERENCE: Message = Message::new(
    CORE,
    "ObjectReference",
    &[
        omitempty(1, "kind", Str),
        omitempty(2, "namespace", Str),
        omitempty(3, "name", Str),
        omitempty(4, "uid", Str),
        omitempty(5, "apiVersion", Str),
        omitempty(6, "resourceVersion", Str),
        omitempty(7, "fieldPath", Str),
    ],
);

pub(super) static LOCAL_OBJECT_REFERENCE: Message =
    Message::new(CORE, "LocalObjectReference", &[omitempty(1, "name", Str)]);

pub(super) static RESOURCE_QUOTA_SPEC: Message = Message::new(
    CORE,
    "ResourceQuotaSpec",
    &[
        field(1, "hard", QuantityMap),
        field(2, "scopes", Strings),
        field(3, "scopeSelector", Object(&SCOPE_SELECTOR)),
    ],
);

pub(super) static RESOURCE_QUOTA_STATUS: Message = Message::new(
    CORE,
    "ResourceQuotaStatus",
    &[field(1, "hard", QuantityMap), field(2, "used", QuantityMap)],
);

pub(super) static SERVICE_SPEC: Message = Message::new(
    CORE,
    "ServiceSpec",
    &[
        field(1, "ports", Objects(&SERVICE_PORT)),
        field(2, "selector", StringMap),
        omitempty(3, "clusterIP", Str),
        field(18, "clusterIPs", Strings),
        omitempty(4, "type", Str),
        field(5, "externalIPs", Strings),
        omitempty(7, "sessionAffinity", Str),
        omitempty(8, "loadBalancerIP", Str),
        field(9, "loadBalancerSourceRanges", Strings),
        omitempty(10, "externalName", Str),
        omitempty(11, "externalTrafficPolicy", Str),
        omitempty(12, "healthCheckNodePort", Int32),
        omitempty(13, "publishNotReadyAddresses", Bool),
        field(
            14,
            "sessionAffinityConfig",
            Object(&SESSION_AFFINITY_CONFIG),
        ),
        field(19, "ipFamilies", Strings),
        field(17, "ipFamilyPolicy", Str),
        field(20, "allocateLoadBalancerNodePorts", Bool),
        field(21, "loadBalancerClass", Str),
        field(22, "internalTrafficPolicy", Str),
        field(23, "trafficDistribution", Str),
    ],
);

pub(super) static SERVICE_STATUS: Message = Message::new(
    CORE,
    "ServiceStatus",
    &[
        field(1, "loadBalancer", Object(&LOAD_BALANCER_STATUS)),
        field(2, "conditions", Objects(&CONDITION)),
    ],
);

pub(super) static NAMESPACE_CONDITION: Message = Message::new(
    CORE,
    "NamespaceCondition",
    &[
        field(1, "type", Str),
        field(2, "status", Str),
        field(4, "lastTransitionTime", Time),
        omitempty(5, "reason", Str),
        omitempty(6, "message", Str),
    ],
);

pub(super) static SCOPE_SELECTOR: Message = Message::new(
    CORE,
    "ScopeSelector",
    &[field(
        1,
        "matchExpressions",
        Objects(&SCOPED_RESOURCE_SELECTOR_REQUIREMENT),
    )],
);

pub(super) static SERVICE_PORT: Message = Message::new(
    CORE,
    "ServicePort",
    &[
        omitempty(1, "name", Str),
        omitempty(2, "protocol", Str),
        field(6, "appProtocol", Str),
        field(3, "port", Int32),
        field(4, "targetPort", IntOrString),
        omitempty(5, "nodePort", Int32),
    ],
);

pub(super) static SESSION_AFFINITY_CONFIG: Message = Message::new(
    CORE,
    "SessionAffinityConfig",
    &[field(1, "clientIP", Object(&CLIENT_IP_CONFIG))],
);

pub(super) static LOAD_BALANCER_STATUS: Message = Message::new(
    CORE,
    "LoadBalancerStatus",
    &[field(1, "ingress", Objects(&LOAD_BALANCER_INGRESS))],
);

pub(super) static SCOPED_RESOURCE_SELECTOR_REQUIREMENT: Message = Message::new(
    CORE,
    "ScopedResourceSelectorRequirement",
    &[
        field(1, "scopeName", Str),
        field(2, "operator", Str),
        field(3, "values", Strings),
    ],
);

pub(super) static CLIENT_IP_CONFIG: Message =
    Message::new(CORE, "ClientIPConfig", &[field(1, "timeoutSeconds", Int32)]);

pub(super) static LOAD_BALANCER_INGRESS: Message = Message::new(
    CORE,
    "LoadBalancerIngress",
    &[
        omitempty(1, "ip", Str),
        omitempty(2, "hostname", Str),
        field(3, "ipMode", Str),
        field(4, "ports", Objects(&PORT_STATUS)),
    ],
);

pub(super) static PORT_STATUS: Message = Message::new(
    CORE,
    "PortStatus",
    &[
        field(1, "port", Int32),
        field(2, "protocol", Str),
        field(3, "error", Str),
    ],
);
