//! core/v1 containers of a pod template, with every field Kubernetes 1.37 has: ports, env,
//! resources, mounts, probes, lifecycle hooks and security contexts.

use super::objects::LOCAL_OBJECT_REFERENCE;
use super::Ty::*;
use super::{field, omitempty, Message, CORE};

pub(super) static CONTAINER: Message = Message::new(
    CORE,
    "Container",
    &[
        field(1, "name", Str),
        omitempty(2, "image", Str),
        field(3, "command", Strings),
        field(4, "args", Strings),
        omitempty(5, "workingDir", Str),
        field(6, "ports", Objects(&CONTAINER_PORT)),
        field(19, "envFrom", Objects(&ENV_FROM_SOURCE)),
        field(7, "env", Objects(&ENV_VAR)),
        field(8, "resources", Object(&RESOURCE_REQUIREMENTS)),
        field(23, "resizePolicy", Objects(&CONTAINER_RESIZE_POLICY)),
        field(24, "restartPolicy", Str),
        field(25, "restartPolicyRules", Objects(&CONTAINER_RESTART_RULE)),
        field(9, "volumeMounts", Objects(&VOLUME_MOUNT)),
        field(21, "volumeDevices", Objects(&VOLUME_DEVICE)),
        field(10, "livenessProbe", Object(&PROBE)),
        field(11, "readinessProbe", Object(&PROBE)),
        field(22, "startupProbe", Object(&PROBE)),
        field(12, "lifecycle", Object(&LIFECYCLE)),
        omitempty(13, "terminationMessagePath", Str),
        omitempty(20, "terminationMessagePolicy", Str),
        omitempty(14, "imagePullPolicy", Str),
        field(15, "securityContext", Object(&SECURITY_CONTEXT)),
        omitempty(16, "stdin", Bool),
        omitempty(17, "stdinOnce", Bool),
        omitempty(18, "tty", Bool),
    ],
);

pub(super) static EPHEMERAL_CONTAINER: Message = Message::new(
    CORE,
    "EphemeralContainer",
    &[
        field(
            1,
            "ephemeralContainerCommon",
            Inline(&EPHEMERAL_CONTAINER_COMMON),
        ),
        omitempty(2, "targetContainerName", Str),
    ],
);

pub(super) static CONTAINER_PORT: Message = Message::new(
    CORE,
    "ContainerPort",
    &[
        omitempty(1, "name", Str),
        omitempty(2, "hostPort", Int32),
        field(3, "containerPort", Int32),
        omitempty(4, "protocol", Str),
        omitempty(5, "hostIP", Str),
    ],
);

pub(super) static ENV_FROM_SOURCE: Message = Message::new(
    CORE,
    "EnvFromSource",
    &[
        omitempty(1, "prefix", Str),
        field(2, "configMapRef", Object(&CONFIG_MAP_ENV_SOURCE)),
        field(3, "secretRef", Object(&SECRET_ENV_SOURCE)),
    ],
);

pub(super) static ENV_VAR: Message = Message::new(
    CORE,
    "EnvVar",
    &[
        field(1, "name", Str),
        omitempty(2, "value", Str),
        field(3, "valueFrom", Object(&ENV_VAR_SOURCE)),
    ],
);

pub(super) static RESOURCE_REQUIREMENTS: Message = Message::new(
    CORE,
    "ResourceRequirements",
    &[
        field(1, "limits", QuantityMap),
        field(2, "requests", QuantityMap),
        field(3, "claims", Objects(&RESOURCE_CLAIM)),
    ],
);

pub(super) static CONTAINER_RESIZE_POLICY: Message = Message::new(
    CORE,
    "ContainerResizePolicy",
    &[
        field(1, "resourceName", Str),
        field(2, "restartPolicy", Str),
    ],
);

pub(super) static CONTAINER_RESTART_RULE: Message = Message::new(
    CORE,
    "ContainerRestartRule",
    &[
        omitempty(1, "action", Str),
        field(
            2,
            "exitCodes",
            Object(&CONTAINER_RESTART_RULE_ON_EXIT_CODES),
        ),
    ],
);

pub(super) static VOLUME_MOUNT: Message = Message::new(
    CORE,
    "VolumeMount",
    &[
        field(1, "name", Str),
        omitempty(2, "readOnly", Bool),
        field(7, "recursiveReadOnly", Str),
        field(3, "mountPath", Str),
        omitempty(4, "subPath", Str),
        field(5, "mountPropagation", Str),
        omitempty(6, "subPathExpr", Str),
        field(8, "bindMountOptions", Strings),
    ],
);

pub(super) static VOLUME_DEVICE: Message = Message::new(
    CORE,
    "VolumeDevice",
    &[field(1, "name", Str), field(2, "devicePath", Str)],
);

pub(super) static PROBE: Message = Message::new(
    CORE,
    "Probe",
    &[
        field(1, "handler", Inline(&PROBE_HANDLER)),
        omitempty(2, "initialDelaySeconds", Int32),
        omitempty(3, "timeoutSeconds", Int32),
        omitempty(4, "periodSeconds", Int32),
        omitempty(5, "successThreshold", Int32),
        omitempty(6, "failureThreshold", Int32),
        field(7, "terminationGracePeriodSeconds", Int64),
    ],
);

pub(super) static LIFECYCLE: Message = Message::new(
    CORE,
    "Lifecycle",
    &[
        field(1, "postStart", Object(&LIFECYCLE_HANDLER)),
        field(2, "preStop", Object(&LIFECYCLE_HANDLER)),
        field(3, "stopSignal", Str),
    ],
);

pub(super) static SECURITY_CONTEXT: Message = Message::new(
    CORE,
    "SecurityContext",
    &[
        field(1, "capabilities", Object(&CAPABILITIES)),
        field(2, "privileged", Bool),
        field(3, "seLinuxOptions", Object(&SE_LINUX_OPTIONS)),
        field(
            10,
            "windowsOptions",
            Object(&WINDOWS_SECURITY_CONTEXT_OPTIONS),
        ),
        field(4, "runAsUser", Int64),
        field(8, "runAsGroup", Int64),
        field(5, "runAsNonRoot", Bool),
        field(6, "readOnlyRootFilesystem", Bool),
        field(7, "allowPrivilegeEscalation", Bool),
        field(9, "procMount", Str),
        field(11, "seccompProfile", Object(&SECCOMP_PROFILE)),
        field(12, "appArmorProfile", Object(&APP_ARMOR_PROFILE)),
    ],
);

pub(super) static EPHEMERAL_CONTAINER_COMMON: Message = Message::new(
    CORE,
    "EphemeralContainerCommon",
    &[
        field(1, "name", Str),
        omitempty(2, "image", Str),
        field(3, "command", Strings),
        field(4, "args", Strings),
        omitempty(5, "workingDir", Str),
        field(6, "ports", Objects(&CONTAINER_PORT)),
        field(19, "envFrom", Objects(&ENV_FROM_SOURCE)),
        field(7, "env", Objects(&ENV_VAR)),
        field(8, "resources", Object(&RESOURCE_REQUIREMENTS)),
        field(23, "resizePolicy", Objects(&CONTAINER_RESIZE_POLICY)),
        field(24, "restartPolicy", Str),
        field(25, "restartPolicyRules", Objects(&CONTAINER_RESTART_RULE)),
        field(9, "volumeMounts", Objects(&VOLUME_MOUNT)),
        field(21, "volumeDevices", Objects(&VOLUME_DEVICE)),
        field(10, "livenessProbe", Object(&PROBE)),
        field(11, "readinessProbe", Object(&PROBE)),
        field(22, "startupProbe", Object(&PROBE)),
        field(12, "lifecycle", Object(&LIFECYCLE)),
        omitempty(13, "terminationMessagePath", Str),
        omitempty(20, "terminationMessagePolicy", Str),
        omitempty(14, "imagePullPolicy", Str),
        field(15, "securityContext", Object(&SECURITY_CONTEXT)),
        omitempty(16, "stdin", Bool),
        omitempty(17, "stdinOnce", Bool),
        omitempty(18, "tty", Bool),
    ],
);

pub(super) static CONFIG_MAP_ENV_SOURCE: Message = Message::new(
    CORE,
    "ConfigMapEnvSource",
    &[
        field(1, "localObjectReference", Inline(&LOCAL_OBJECT_REFERENCE)),
        field(2, "optional", Bool),
    ],
);

pub(super) static SECRET_ENV_SOURCE: Message = Message::new(
    CORE,
    "SecretEnvSource",
    &[
        field(1, "localObjectReference", Inline(&LOCAL_OBJECT_REFERENCE)),
        field(2, "optional", Bool),
    ],
);

pub(super) static ENV_VAR_SOURCE: Message = Message::new(
    CORE,
    "EnvVarSource",
    &[
        field(1, "fieldRef", Object(&OBJECT_FIELD_SELECTOR)),
        field(2, "resourceFieldRef", Object(&RESOURCE_FIELD_SELECTOR)),
        field(3, "configMapKeyRef", Object(&CONFIG_MAP_KEY_SELECTOR)),
        field(4, "secretKeyRef", Object(&SECRET_KEY_SELECTOR)),
        field(5, "fileKeyRef", Object(&FILE_KEY_SELECTOR)),
    ],
);

pub(super) static RESOURCE_CLAIM: Message = Message::new(
    CORE,
    "ResourceClaim",
    &[field(1, "name", Str), omitempty(2, "request", Str)],
);

pub(super) static CONTAINER_RESTART_RULE_ON_EXIT_CODES: Message = Message::new(
    CORE,
    "ContainerRestartRuleOnExitCodes",
    &[omitempty(1, "operator", Str), field(2, "values", Int32s)],
);

pub(super) static PROBE_HANDLER: Message = Message::new(
    CORE,
    "ProbeHandler",
    &[
        field(1, "exec", Object(&EXEC_ACTION)),
        field(2, "httpGet", Object(&HTTP_GET_ACTION)),
        field(3, "tcpSocket", Object(&TCP_SOCKET_ACTION)),
        field(4, "grpc", Object(&GRPC_ACTION)),
    ],
);

pub(super) static LIFECYCLE_HANDLER: Message = Message::new(
    CORE,
    "LifecycleHandler",
    &[
        field(1, "exec", Object(&EXEC_ACTION)),
        field(2, "httpGet", Object(&HTTP_GET_ACTION)),
        field(3, "tcpSocket", Object(&TCP_SOCKET_ACTION)),
        field(4, "sleep", Object(&SLEEP_ACTION)),
    ],
);

pub(super) static CAPABILITIES: Message = Message::new(
    CORE,
    "Capabilities",
    &[field(1, "add", Strings), field(2, "drop", Strings)],
);

pub(super) static SE_LINUX_OPTIONS: Message = Message::new(
    CORE,
    "SELinuxOptions",
    &[
        omitempty(1, "user", Str),
        omitempty(2, "role", Str),
        omitempty(3, "type", Str),
        omitempty(4, "level", Str),
    ],
);

pub(super) static WINDOWS_SECURITY_CONTEXT_OPTIONS: Message = Message::new(
    CORE,
    "WindowsSecurityContextOptions",
    &[
        field(1, "gmsaCredentialSpecName", Str),
        field(2, "gmsaCredentialSpec", Str),
        field(3, "runAsUserName", Str),
        field(4, "hostProcess", Bool),
    ],
);

pub(super) static SECCOMP_PROFILE: Message = Message::new(
    CORE,
    "SeccompProfile",
    &[field(1, "type", Str), field(2, "localhostProfile", Str)],
);

pub(super) static APP_ARMOR_PROFILE: Message = Message::new(
    CORE,
    "AppArmorProfile",
    &[field(1, "type", Str), field(2, "localhostProfile", Str)],
);

pub(super) static OBJECT_FIELD_SELECTOR: Message = Message::new(
    CORE,
    "ObjectFieldSelector",
    &[omitempty(1, "apiVersion", Str), field(2, "fieldPath", Str)],
);

pub(super) static RESOURCE_FIELD_SELECTOR: Message = Message::new(
    CORE,
    "ResourceFieldSelector",
    &[
        omitempty(1, "containerName", Str),
        field(2, "resource", Str),
        field(3, "divisor", Quantity),
    ],
);

pub(super) static CONFIG_MAP_KEY_SELECTOR: Message = Message::new(
    CORE,
    "ConfigMapKeySelector",
    &[
        field(1, "localObjectReference", Inline(&LOCAL_OBJECT_REFERENCE)),
        field(2, "key", Str),
        field(3, "optional", Bool),
    ],
);

pub(super) static SECRET_KEY_SELECTOR: Message = Message::new(
    CORE,
    "SecretKeySelector",
    &[
        field(1, "localObjectReference", Inline(&LOCAL_OBJECT_REFERENCE)),
        field(2, "key", Str),
        field(3, "optional", Bool),
    ],
);

pub(super) static FILE_KEY_SELECTOR: Message = Message::new(
    CORE,
    "FileKeySelector",
    &[
        field(1, "volumeName", Str),
        field(2, "path", Str),
        field(3, "key", Str),
        field(4, "optional", Bool),
    ],
);

pub(super) static EXEC_ACTION: Message =
    Message::new(CORE, "ExecAction", &[field(1, "command", Strings)]);

pub(super) static HTTP_GET_ACTION: Message = Message::new(
    CORE,
    "HTTPGetAction",
    &[
        omitempty(1, "path", Str),
        field(2, "port", IntOrString),
        omitempty(3, "host", Str),
        omitempty(4, "scheme", Str),
        field(5, "httpHeaders", Objects(&HTTP_HEADER)),
        field(6, "protocol", Str),
    ],
);

pub(super) static TCP_SOCKET_ACTION: Message = Message::new(
    CORE,
    "TCPSocketAction",
    &[field(1, "port", IntOrString), omitempty(2, "host", Str)],
);

pub(super) static GRPC_ACTION: Message = Message::new(
    CORE,
    "GRPCAction",
    &[
        field(1, "port", Int32),
        field(2, "service", Str),
        field(3, "mode", Str),
    ],
);

pub(super) static SLEEP_ACTION: Message =
    Message::new(CORE, "SleepAction", &[field(1, "seconds", Int64)]);

pub(super) static HTTP_HEADER: Message = Message::new(
    CORE,
    "HTTPHeader",
    &[field(1, "name", Str), field(2, "value", Str)],
);
