//! The patch extensions (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`) that
//! `k8s-openapi`'s schemas lack, from the struct tags of `k8s.io/api` and `k8s.io/apimachinery`.

use super::*;

/// Patch strategies and merge keys of `k8s.io/api` (GA versions) and `meta/v1`, from the
/// `patchStrategy`/`patchMergeKey` struct tags that kube-openapi turns into
/// `x-kubernetes-patch-strategy`/`x-kubernetes-patch-merge-key`; k8s-openapi drops them.
/// One definition a line (`io.k8s.api.` is implied unless the name starts with `io.`), then
/// `property:strategy:mergeKey` entries. Properties a definition lacks are skipped, so the table
/// can run ahead of the k8s-openapi version. `EphemeralContainer` inlines
/// `EphemeralContainerCommon` in Go and carries its tags.
pub(super) const PATCH_META: &str = "\
admissionregistration.v1.ValidatingAdmissionPolicySpec matchConditions:merge:name variables:merge:name
admissionregistration.v1.ValidatingWebhookConfiguration webhooks:merge:name
admissionregistration.v1.MutatingWebhookConfiguration webhooks:merge:name
admissionregistration.v1.ValidatingWebhook matchConditions:merge:name
admissionregistration.v1.MutatingWebhook matchConditions:merge:name
admissionregistration.v1.MutatingAdmissionPolicySpec matchConditions:merge:name
apps.v1.StatefulSetStatus conditions:merge:type
apps.v1.DeploymentSpec strategy:retainKeys:
apps.v1.DeploymentStatus conditions:merge:type
apps.v1.DaemonSetStatus conditions:merge:type
apps.v1.ReplicaSetStatus conditions:merge:type
autoscaling.v2.HorizontalPodAutoscalerStatus conditions:merge:type
batch.v1.JobSchedulingConfiguration resourceClaims:merge:name
batch.v1.JobStatus conditions:merge:type
certificates.v1.PodCertificateRequestStatus conditions:merge:type
core.v1.VolumeHealthStatus healthConditions:merge:status
core.v1.PodVolumeHealth healthConditions:merge:status
core.v1.PersistentVolumeClaimStatus conditions:merge:type
core.v1.Container ports:merge:containerPort env:merge:name volumeMounts:merge:mountPath volumeDevices:merge:devicePath
core.v1.ContainerStatus volumeMounts:merge:mountPath allocatedResourcesStatus:merge:name
core.v1.PodSpec volumes:merge,retainKeys:name initContainers:merge:name containers:merge:name ephemeralContainers:merge:name imagePullSecrets:merge:name hostAliases:merge:ip topologySpreadConstraints:merge:topologyKey schedulingGates:merge:name resourceClaims:merge,retainKeys:name evictionResponders:merge:name
core.v1.EphemeralContainer ports:merge:containerPort env:merge:name volumeMounts:merge:mountPath volumeDevices:merge:devicePath
core.v1.PodStatus conditions:merge:type hostIPs:merge:ip podIPs:merge:ip resourceClaimStatuses:merge,retainKeys:name nodeAllocatableResourceClaimStatuses:merge:resourceClaimName
core.v1.ReplicationControllerStatus conditions:merge:type
core.v1.ServiceStatus conditions:merge:type
core.v1.ServiceSpec ports:merge:port
core.v1.ServiceAccount secrets:merge:name
core.v1.NodeSpec podCIDRs:merge:
core.v1.NodeStatus conditions:merge:type addresses:merge:type
core.v1.NamespaceStatus conditions:merge:type
core.v1.ComponentStatus conditions:merge:type
core.v1.NodeAllocatableResourceClaimStatus mapping:merge:name overhead:merge:name
flowcontrol.v1.FlowSchemaStatus conditions:merge:type
flowcontrol.v1.PriorityLevelConfigurationStatus conditions:merge:type
networking.v1.ServiceCIDRStatus conditions:merge:type
policy.v1.PodDisruptionBudgetSpec selector:replace:
policy.v1.PodDisruptionBudgetStatus conditions:merge:type
resource.v1.DeviceTaintRuleStatus conditions:merge:type
resource.v1.ResourceClaimStatus reservedFor:merge:uid
storage.v1.CSINodeSpec drivers:merge:name
storage.v1.CSINodeStatus storageHealth:merge:name
storagemigration.v1.StorageVersionMigrationStatus conditions:merge:type
io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta ownerReferences:merge:uid finalizers:merge:
";

pub(super) fn apply_patch_meta(schemas: &mut Map<String, Value>) {
    for line in PATCH_META.lines() {
        let mut words = line.split_whitespace();
        let Some(short) = words.next() else { continue };
        let name = if short.starts_with("io.") {
            short.to_owned()
        } else {
            format!("io.k8s.api.{short}")
        };
        let properties = schemas.get_mut(&name).and_then(|s| s.get_mut("properties"));
        let Some(properties) = properties.and_then(Value::as_object_mut) else {
            continue;
        };
        for entry in words {
            let mut parts = entry.splitn(3, ':');
            let (Some(field), Some(strategy), Some(key)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Some(field) = properties.get_mut(field).and_then(Value::as_object_mut) else {
                continue;
            };
            field.insert("x-kubernetes-patch-strategy".into(), strategy.into());
            if !key.is_empty() {
                field.insert("x-kubernetes-patch-merge-key".into(), key.into());
            }
        }
    }
}
