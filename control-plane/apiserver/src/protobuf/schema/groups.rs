//! The API groups keel decodes besides core/v1: apps/v1 Deployments, RBAC, scheduling.k8s.io
//! PriorityClasses, certificates.k8s.io CertificateSigningRequests (`kubectl certificate
//! approve` sends its approval as protobuf), and the review and token kinds of
//! authorization.k8s.io and authentication.k8s.io.

use super::meta::{
    FIELD_SELECTOR_REQUIREMENT, LABEL_SELECTOR, LABEL_SELECTOR_REQUIREMENT, OBJECT_META,
};
use super::pod::POD_TEMPLATE_SPEC;
use super::Ty::*;
use super::{
    field, omitempty, Message, APPS, AUTHENTICATION, AUTHORIZATION, CERTIFICATES, RBAC, SCHEDULING,
};

// apps/v1
pub(super) static DEPLOYMENT: Message = Message::new(
    APPS,
    "Deployment",
    &[
        field(1, "metadata", Object(&OBJECT_META)),
        field(2, "spec", Object(&DEPLOYMENT_SPEC)),
        field(3, "status", Object(&DEPLOYMENT_STATUS)),
    ],
);

pub(super) static DEPLOYMENT_SPEC: Message = Message::new(
    APPS,
    "DeploymentSpec",
    &[
        field(1, "replicas", Int32),
        field(2, "selector", Object(&LABEL_SELECTOR)),
        field(3, "template", Object(&POD_TEMPLATE_SPEC)),
        field(4, "strategy", Object(&DEPLOYMENT_STRATEGY)),
        omitempty(5, "minReadySeconds", Int32),
        field(6, "revisionHistoryLimit", Int32),
        omitempty(7, "paused", Bool),
        field(9, "progressDeadlineSeconds", Int32),
    ],
);

pub(super) static DEPLOYMENT_STATUS: Message = Message::new(
    APPS,
    "DeploymentStatus",
    &[
        omitempty(1, "observedGeneration", Int64),
        omitempty(2, "replicas", Int32),
        omitempty(3, "updatedReplicas", Int32),
        omitempty(7, "readyReplicas", Int32),
        omitempty(4, "availableReplicas", Int32),
        omitempty(5, "unavailableReplicas", Int32),
        field(9, "terminatingReplicas", Int32),
        field(6, "conditions", Objects(&DEPLOYMENT_CONDITION)),
        field(8, "collisionCount", Int32),
    ],
);

pub(super) static DEPLOYMENT_STRATEGY: Message = Message::new(
    APPS,
    "DeploymentStrategy",
    &[
        omitempty(1, "type", Str),
        field(2, "rollingUpdate", Object(&ROLLING_UPDATE_DEPLOYMENT)),
    ],
);

pub(super) static DEPLOYMENT_CONDITION: Message = Message::new(
    APPS,
    "DeploymentCondition",
    &[
        field(1, "type", Str),
        field(2, "status", Str),
        field(6, "lastUpdateTime", Time),
        field(7, "lastTransitionTime", Time),
        omitempty(4, "reason", Str),
        omitempty(5, "message", Str),
    ],
);

pub(super) static ROLLING_UPDATE_DEPLOYMENT: Message = Message::new(
    APPS,
    "RollingUpdateDeployment",
    &[
        field(1, "maxUnavailable", IntOrString),
        field(2, "maxSurge", IntOrString),
    ],
);

// rbac.authorization.k8s.io/v1
pub(super) static ROLE: Message = Message::new(
    RBAC,
    "Role",
    &[
        field(1, "metadata", Object(&OBJECT_META)),
        field(2, "rules", Objects(&POLICY_RULE)),
    ],
);

pub(super) static CLUSTER_ROLE: Message = Message::new(
    RBAC,
    "ClusterRole",
    &[
        field(1, "metadata", Object(&OBJECT_META)),
        field(2, "rules", Objects(&POLICY_RULE)),
        field(3, "aggregationRule", Object(&AGGREGATION_RULE)),
    ],
);

pub(super) static ROLE_BINDING: Message = Message::new(
    RBAC,
    "RoleBinding",
    &[
        field(1, "metadata", Object(&OBJECT_META)),
        field(2, "subjects", Objects(&SUBJECT)),
        field(3, "roleRef", Object(&ROLE_REF)),
    ],
);

pub(super) static CLUSTER_ROLE_BINDING: Message = Message::new(
    RBAC,
    "ClusterRoleBinding",
    &[
        field(1, "metadata", Object(&OBJECT_META)),
        field(2, "subjects", Objects(&SUBJECT)),
        field(3, "roleRef", Object(&ROLE_REF)),
    ],
);

pub(super) static POLICY_RULE: Message = Message::new(
    RBAC,
    "PolicyRule",
    &[
        field(1, "verbs", Strings),
        field(2, "apiGroups", Strings),
        field(3, "resources", Strings),
        field(4, "resourceNames", Strings),
        field(5, "nonResourceURLs", Strings),
    ],
);

pub(super) static AGGREGATION_RULE: Message = Message::new(
    RBAC,
    "AggregationRule",
    &[field(1, "clusterRoleSelectors", Objects(&LABEL_SELECTOR))],
);

pub(super) static SUBJECT: Message = Message::new(
    RBAC,
    "Subject",
    &[
        field(1, "kind", Str),
        omitempty(2, "apiGroup", Str),
        field(3, "name", Str),
        omitempty(4, "namespace", Str),
    ],
);

pub(super) static ROLE_REF: Message = Message::new(
    RBAC,
    "RoleRef",
    &[
        field(1, "apiGroup", Str),
        field(2, "kind", Str),
        field(3, "name", Str),
    ],
);

// scheduling.k8s.io/v1
pub(super) static PRIORITY_CLASS: Message = Message::new(
    SCHEDULING,
    "PriorityClass",
    &[
        field(1, "metadata", Object(&OBJECT_META)),
        field(2, "value", Int32),
        omitempty(3, "globalDefault", Bool),
        omitempty(4, "description", Str),
        omitempty(5, "preemptionPolicy", Str),
    ],
);

// authorization.k8s.io/v1
pub(super) static SELF_SUBJECT_ACCESS_REVIEW: Message = Message::new(
    AUTHORIZATION,
    "SelfSubjectAccessReview",
    &[
        field(1, "metadata", Object(&OBJECT_META)),
        field(2, "spec", Object(&SELF_SUBJECT_ACCESS_REVIEW_SPEC)),
        field(3, "status", Object(&SUBJECT_ACCESS_REVIEW_STATUS)),
    ],
);

pub(super) static SELF_SUBJECT_RULES_REVIEW: Message = Message::new(
    AUTHORIZATION,
    "SelfSubjectRulesReview",
    &[
        field(1, "metadata", Object(&OBJECT_META)),
        field(2, "spec", Object(&SELF_SUBJECT_RULES_REVIEW_SPEC)),
        field(3, "status", Object(&SUBJECT_RULES_REVIEW_STATUS)),
    ],
);

pub(super) static SELF_SUBJECT_ACCESS_REVIEW_SPEC: Message = Message::new(
    AUTHORIZATION,
    "SelfSubjectAccessReviewSpec",
    &[
        field(1, "resourceAttributes", Object(&RESOURCE_ATTRIBUTES)),
        field(2, "nonResourceAttributes", Object(&NON_RESOURCE_ATTRIBUTES)),
    ],
);

pub(super) static SUBJECT_ACCESS_REVIEW_STATUS: Message = Message::new(
    AUTHORIZATION,
    "SubjectAccessReviewStatus",
    &[
        field(1, "allowed", Bool),
        omitempty(4, "denied", Bool),
        omitempty(2, "reason", Str),
        omitempty(3, "evaluationError", Str),
    ],
);

pub(super) static SELF_SUBJECT_RULES_REVIEW_SPEC: Message = Message::new(
    AUTHORIZATION,
    "SelfSubjectRulesReviewSpec",
    &[omitempty(1, "namespace", Str)],
);

pub(super) static SUBJECT_RULES_REVIEW_STATUS: Message = Message::new(
    AUTHORIZATION,
    "SubjectRulesReviewStatus",
    &[
        field(1, "resourceRules", Objects(&RESOURCE_RULE)),
        field(2, "nonResourceRules", Objects(&NON_RESOURCE_RULE)),
        field(3, "incomplete", Bool),
        omitempty(4, "evaluationError", Str),
    ],
);

pub(super) static RESOURCE_ATTRIBUTES: Message = Message::new(
    AUTHORIZATION,
    "ResourceAttributes",
    &[
        omitempty(1, "namespace", Str),
        omitempty(2, "verb", Str),
        omitempty(3, "group", Str),
        omitempty(4, "version", Str),
        omitempty(5, "resource", Str),
        omitempty(6, "subresource", Str),
        omitempty(7, "name", Str),
        field(8, "fieldSelector", Object(&FIELD_SELECTOR_ATTRIBUTES)),
        field(9, "labelSelector", Object(&LABEL_SELECTOR_ATTRIBUTES)),
    ],
);

pub(super) static NON_RESOURCE_ATTRIBUTES: Message = Message::new(
    AUTHORIZATION,
    "NonResourceAttributes",
    &[omitempty(1, "path", Str), omitempty(2, "verb", Str)],
);

pub(super) static RESOURCE_RULE: Message = Message::new(
    AUTHORIZATION,
    "ResourceRule",
    &[
        field(1, "verbs", Strings),
        field(2, "apiGroups", Strings),
        field(3, "resources", Strings),
        field(4, "resourceNames", Strings),
    ],
);

pub(super) static NON_RESOURCE_RULE: Message = Message::new(
    AUTHORIZATION,
    "NonResourceRule",
    &[
        field(1, "verbs", Strings),
        field(2, "nonResourceURLs", Strings),
    ],
);

pub(super) static FIELD_SELECTOR_ATTRIBUTES: Message = Message::new(
    AUTHORIZATION,
    "FieldSelectorAttributes",
    &[
        omitempty(1, "rawSelector", Str),
        field(2, "requirements", Objects(&FIELD_SELECTOR_REQUIREMENT)),
    ],
);

pub(super) static LABEL_SELECTOR_ATTRIBUTES: Message = Message::new(
    AUTHORIZATION,
    "LabelSelectorAttributes",
    &[
        omitempty(1, "rawSelector", Str),
        field(2, "requirements", Objects(&LABEL_SELECTOR_REQUIREMENT)),
    ],
);

// authentication.k8s.io/v1
pub(super) static SELF_SUBJECT_REVIEW: Message = Message::new(
    AUTHENTICATION,
    "SelfSubjectReview",
    &[
        field(1, "metadata", Object(&OBJECT_META)),
        field(2, "status", Object(&SELF_SUBJECT_REVIEW_STATUS)),
    ],
);

pub(super) static TOKEN_REQUEST: Message = Message::new(
    AUTHENTICATION,
    "TokenRequest",
    &[
        field(1, "metadata", Object(&OBJECT_META)),
        field(2, "spec", Object(&TOKEN_REQUEST_SPEC)),
        field(3, "status", Object(&TOKEN_REQUEST_STATUS)),
    ],
);

pub(super) static SELF_SUBJECT_REVIEW_STATUS: Message = Message::new(
    AUTHENTICATION,
    "SelfSubjectReviewStatus",
    &[field(1, "userInfo", Object(&USER_INFO))],
);

pub(super) static TOKEN_REQUEST_SPEC: Message = Message::new(
    AUTHENTICATION,
    "TokenRequestSpec",
    &[
        field(1, "audiences", Strings),
        field(4, "expirationSeconds", Int64),
        field(3, "boundObjectRef", Object(&BOUND_OBJECT_REFERENCE)),
        field(5, "attestations", StringsMap),
    ],
);

pub(super) static TOKEN_REQUEST_STATUS: Message = Message::new(
    AUTHENTICATION,
    "TokenRequestStatus",
    &[
        field(1, "token", Str),
        field(2, "expirationTimestamp", Time),
    ],
);

pub(super) static USER_INFO: Message = Message::new(
    AUTHENTICATION,
    "UserInfo",
    &[
        omitempty(1, "username", Str),
        omitempty(2, "uid", Str),
        field(3, "groups", Strings),
        field(4, "extra", StringsMap),
    ],
);

pub(super) static BOUND_OBJECT_REFERENCE: Message = Message::new(
    AUTHENTICATION,
    "BoundObjectReference",
    &[
        omitempty(1, "kind", Str),
        omitempty(2, "apiVersion", Str),
        omitempty(3, "name", Str),
        omitempty(4, "uid", Str),
    ],
);

// certificates.k8s.io/v1
pub(super) static CERTIFICATE_SIGNING_REQUEST: Message = Message::new(
    CERTIFICATES,
    "CertificateSigningRequest",
    &[
        field(1, "metadata", Object(&OBJECT_META)),
        field(2, "spec", Object(&CERTIFICATE_SIGNING_REQUEST_SPEC)),
        field(3, "status", Object(&CERTIFICATE_SIGNING_REQUEST_STATUS)),
    ],
);

pub(super) static CERTIFICATE_SIGNING_REQUEST_SPEC: Message = Message::new(
    CERTIFICATES,
    "CertificateSigningRequestSpec",
    &[
        field(1, "request", Bytes),
        omitempty(7, "signerName", Str),
        field(8, "expirationSeconds", Int32),
        field(5, "usages", Strings),
        omitempty(2, "username", Str),
        omitempty(3, "uid", Str),
        field(4, "groups", Strings),
        field(6, "extra", StringsMap),
    ],
);

pub(super) static CERTIFICATE_SIGNING_REQUEST_STATUS: Message = Message::new(
    CERTIFICATES,
    "CertificateSigningRequestStatus",
    &[
        field(
            1,
            "conditions",
            Objects(&CERTIFICATE_SIGNING_REQUEST_CONDITION),
        ),
        field(2, "certificate", Bytes),
    ],
);

pub(super) static CERTIFICATE_SIGNING_REQUEST_CONDITION: Message = Message::new(
    CERTIFICATES,
    "CertificateSigningRequestCondition",
    &[
        field(1, "type", Str),
        field(6, "status", Str),
        omitempty(2, "reason", Str),
        omitempty(3, "message", Str),
        field(4, "lastUpdateTime", Time),
        field(5, "lastTransitionTime", Time),
    ],
);
