//! core/v1 volumes of a pod template: Volume, whose VolumeSource is inlined into it in JSON, and
//! every volume source Kubernetes 1.37 has.

use super::containers::{OBJECT_FIELD_SELECTOR, RESOURCE_FIELD_SELECTOR};
use super::meta::{LABEL_SELECTOR, OBJECT_META};
use super::objects::LOCAL_OBJECT_REFERENCE;
use super::Ty::*;
use super::{field, omitempty, Message, CORE};

pub(super) static VOLUME: Message = Message::new(
    CORE,
    "Volume",
    &[
        field(1, "name", Str),
        field(2, "volumeSource", Inline(&VOLUME_SOURCE)),
    ],
);

pub(super) static VOLUME_SOURCE: Message = Message::new(
    CORE,
    "VolumeSource",
    &[
        field(1, "hostPath", Object(&HOST_PATH_VOLUME_SOURCE)),
        field(2, "emptyDir", Object(&EMPTY_DIR_VOLUME_SOURCE)),
        field(
            3,
            "gcePersistentDisk",
            Object(&GCE_PERSISTENT_DISK_VOLUME_SOURCE),
        ),
        field(
            4,
            "awsElasticBlockStore",
            Object(&AWS_ELASTIC_BLOCK_STORE_VOLUME_SOURCE),
        ),
        field(5, "gitRepo", Object(&GIT_REPO_VOLUME_SOURCE)),
        field(6, "secret", Object(&SECRET_VOLUME_SOURCE)),
        field(7, "nfs", Object(&NFS_VOLUME_SOURCE)),
        field(8, "iscsi", Object(&ISCSI_VOLUME_SOURCE)),
        field(9, "glusterfs", Object(&GLUSTERFS_VOLUME_SOURCE)),
        field(
            10,
            "persistentVolumeClaim",
            Object(&PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE),
        ),
        field(11, "rbd", Object(&RBD_VOLUME_SOURCE)),
        field(12, "flexVolume", Object(&FLEX_VOLUME_SOURCE)),
        field(13, "cinder", Object(&CINDER_VOLUME_SOURCE)),
        field(14, "cephfs", Object(&CEPH_FS_VOLUME_SOURCE)),
        field(15, "flocker", Object(&FLOCKER_VOLUME_SOURCE)),
        field(16, "downwardAPI", Object(&DOWNWARD_API_VOLUME_SOURCE)),
        field(17, "fc", Object(&FC_VOLUME_SOURCE)),
        field(18, "azureFile", Object(&AZURE_FILE_VOLUME_SOURCE)),
        field(19, "configMap", Object(&CONFIG_MAP_VOLUME_SOURCE)),
        field(
            20,
            "vsphereVolume",
            Object(&VSPHERE_VIRTUAL_DISK_VOLUME_SOURCE),
        ),
        field(21, "quobyte", Object(&QUOBYTE_VOLUME_SOURCE)),
        field(22, "azureDisk", Object(&AZURE_DISK_VOLUME_SOURCE)),
        field(
            23,
            "photonPersistentDisk",
            Object(&PHOTON_PERSISTENT_DISK_VOLUME_SOURCE),
        ),
        field(26, "projected", Object(&PROJECTED_VOLUME_SOURCE)),
        field(24, "portworxVolume", Object(&PORTWORX_VOLUME_SOURCE)),
        field(25, "scaleIO", Object(&SCALE_IO_VOLUME_SOURCE)),
        field(27, "storageos", Object(&STORAGE_OS_VOLUME_SOURCE)),
        field(28, "csi", Object(&CSI_VOLUME_SOURCE)),
        field(29, "ephemeral", Object(&EPHEMERAL_VOLUME_SOURCE)),
        field(30, "image", Object(&IMAGE_VOLUME_SOURCE)),
    ],
);

pub(super) static HOST_PATH_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "HostPathVolumeSource",
    &[field(1, "path", Str), field(2, "type", Str)],
);

pub(super) static EMPTY_DIR_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "EmptyDirVolumeSource",
    &[
        omitempty(1, "medium", Str),
        field(2, "sizeLimit", Quantity),
        field(3, "mode", Int32),
    ],
);

pub(super) static GCE_PERSISTENT_DISK_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "GCEPersistentDiskVolumeSource",
    &[
        field(1, "pdName", Str),
        omitempty(2, "fsType", Str),
        omitempty(3, "partition", Int32),
        omitempty(4, "readOnly", Bool),
    ],
);

pub(super) static AWS_ELASTIC_BLOCK_STORE_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "AWSElasticBlockStoreVolumeSource",
    &[
        field(1, "volumeID", Str),
        omitempty(2, "fsType", Str),
        omitempty(3, "partition", Int32),
        omitempty(4, "readOnly", Bool),
    ],
);

pub(super) static GIT_REPO_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "GitRepoVolumeSource",
    &[
        field(1, "repository", Str),
        omitempty(2, "revision", Str),
        omitempty(3, "directory", Str),
    ],
);

pub(super) static SECRET_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "SecretVolumeSource",
    &[
        omitempty(1, "secretName", Str),
        field(2, "items", Objects(&KEY_TO_PATH)),
        field(3, "defaultMode", Int32),
        field(4, "optional", Bool),
        field(5, "defaultUser", Int64),
    ],
);

pub(super) static NFS_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "NFSVolumeSource",
    &[
        field(1, "server", Str),
        field(2, "path", Str),
        omitempty(3, "readOnly", Bool),
    ],
);

pub(super) static ISCSI_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "ISCSIVolumeSource",
    &[
        field(1, "targetPortal", Str),
        field(2, "iqn", Str),
        field(3, "lun", Int32),
        omitempty(4, "iscsiInterface", Str),
        omitempty(5, "fsType", Str),
        omitempty(6, "readOnly", Bool),
        field(7, "portals", Strings),
        omitempty(8, "chapAuthDiscovery", Bool),
        omitempty(11, "chapAuthSession", Bool),
        field(10, "secretRef", Object(&LOCAL_OBJECT_REFERENCE)),
        field(12, "initiatorName", Str),
    ],
);

pub(super) static GLUSTERFS_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "GlusterfsVolumeSource",
    &[
        field(1, "endpoints", Str),
        field(2, "path", Str),
        omitempty(3, "readOnly", Bool),
    ],
);

pub(super) static PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "PersistentVolumeClaimVolumeSource",
    &[field(1, "claimName", Str), omitempty(2, "readOnly", Bool)],
);

pub(super) static RBD_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "RBDVolumeSource",
    &[
        field(1, "monitors", Strings),
        field(2, "image", Str),
        omitempty(3, "fsType", Str),
        omitempty(4, "pool", Str),
        omitempty(5, "user", Str),
        omitempty(6, "keyring", Str),
        field(7, "secretRef", Object(&LOCAL_OBJECT_REFERENCE)),
        omitempty(8, "readOnly", Bool),
    ],
);

pub(super) static FLEX_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "FlexVolumeSource",
    &[
        field(1, "driver", Str),
        omitempty(2, "fsType", Str),
        field(3, "secretRef", Object(&LOCAL_OBJECT_REFERENCE)),
        omitempty(4, "readOnly", Bool),
        field(5, "options", StringMap),
    ],
);

pub(super) static CINDER_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "CinderVolumeSource",
    &[
        field(1, "volumeID", Str),
        omitempty(2, "fsType", Str),
        omitempty(3, "readOnly", Bool),
        field(4, "secretRef", Object(&LOCAL_OBJECT_REFERENCE)),
    ],
);

pub(super) static CEPH_FS_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "CephFSVolumeSource",
    &[
        field(1, "monitors", Strings),
        omitempty(2, "path", Str),
        omitempty(3, "user", Str),
        omitempty(4, "secretFile", Str),
        field(5, "secretRef", Object(&LOCAL_OBJECT_REFERENCE)),
        omitempty(6, "readOnly", Bool),
    ],
);

pub(super) static FLOCKER_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "FlockerVolumeSource",
    &[
        omitempty(1, "datasetName", Str),
        omitempty(2, "datasetUUID", Str),
    ],
);

pub(super) static DOWNWARD_API_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "DownwardAPIVolumeSource",
    &[
        field(1, "items", Objects(&DOWNWARD_API_VOLUME_FILE)),
        field(2, "defaultMode", Int32),
        field(3, "defaultUser", Int64),
    ],
);

pub(super) static FC_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "FCVolumeSource",
    &[
        field(1, "targetWWNs", Strings),
        field(2, "lun", Int32),
        omitempty(3, "fsType", Str),
        omitempty(4, "readOnly", Bool),
        field(5, "wwids", Strings),
    ],
);

pub(super) static AZURE_FILE_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "AzureFileVolumeSource",
    &[
        field(1, "secretName", Str),
        field(2, "shareName", Str),
        omitempty(3, "readOnly", Bool),
    ],
);

pub(super) static CONFIG_MAP_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "ConfigMapVolumeSource",
    &[
        field(1, "localObjectReference", Inline(&LOCAL_OBJECT_REFERENCE)),
        field(2, "items", Objects(&KEY_TO_PATH)),
        field(3, "defaultMode", Int32),
        field(4, "optional", Bool),
        field(5, "defaultUser", Int64),
    ],
);

pub(super) static VSPHERE_VIRTUAL_DISK_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "VsphereVirtualDiskVolumeSource",
    &[
        field(1, "volumePath", Str),
        omitempty(2, "fsType", Str),
        omitempty(3, "storagePolicyName", Str),
        omitempty(4, "storagePolicyID", Str),
    ],
);

pub(super) static QUOBYTE_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "QuobyteVolumeSource",
    &[
        field(1, "registry", Str),
        field(2, "volume", Str),
        omitempty(3, "readOnly", Bool),
        omitempty(4, "user", Str),
        omitempty(5, "group", Str),
        omitempty(6, "tenant", Str),
    ],
);

pub(super) static AZURE_DISK_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "AzureDiskVolumeSource",
    &[
        field(1, "diskName", Str),
        field(2, "diskURI", Str),
        field(3, "cachingMode", Str),
        field(4, "fsType", Str),
        field(5, "readOnly", Bool),
        field(6, "kind", Str),
    ],
);

pub(super) static PHOTON_PERSISTENT_DISK_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "PhotonPersistentDiskVolumeSource",
    &[field(1, "pdID", Str), omitempty(2, "fsType", Str)],
);

pub(super) static PROJECTED_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "ProjectedVolumeSource",
    &[
        field(1, "sources", Objects(&VOLUME_PROJECTION)),
        field(2, "defaultMode", Int32),
        field(3, "defaultUser", Int64),
    ],
);

pub(super) static PORTWORX_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "PortworxVolumeSource",
    &[
        field(1, "volumeID", Str),
        omitempty(2, "fsType", Str),
        omitempty(3, "readOnly", Bool),
    ],
);

pub(super) static SCALE_IO_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "ScaleIOVolumeSource",
    &[
        field(1, "gateway", Str),
        field(2, "system", Str),
        field(3, "secretRef", Object(&LOCAL_OBJECT_REFERENCE)),
        omitempty(4, "sslEnabled", Bool),
        omitempty(5, "protectionDomain", Str),
        omitempty(6, "storagePool", Str),
        omitempty(7, "storageMode", Str),
        omitempty(8, "volumeName", Str),
        omitempty(9, "fsType", Str),
        omitempty(10, "readOnly", Bool),
    ],
);

pub(super) static STORAGE_OS_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "StorageOSVolumeSource",
    &[
        omitempty(1, "volumeName", Str),
        omitempty(2, "volumeNamespace", Str),
        omitempty(3, "fsType", Str),
        omitempty(4, "readOnly", Bool),
        field(5, "secretRef", Object(&LOCAL_OBJECT_REFERENCE)),
    ],
);

pub(super) static CSI_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "CSIVolumeSource",
    &[
        field(1, "driver", Str),
        field(2, "readOnly", Bool),
        field(3, "fsType", Str),
        field(4, "volumeAttributes", StringMap),
        field(5, "nodePublishSecretRef", Object(&LOCAL_OBJECT_REFERENCE)),
    ],
);

pub(super) static EPHEMERAL_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "EphemeralVolumeSource",
    &[field(
        1,
        "volumeClaimTemplate",
        Object(&PERSISTENT_VOLUME_CLAIM_TEMPLATE),
    )],
);

pub(super) static IMAGE_VOLUME_SOURCE: Message = Message::new(
    CORE,
    "ImageVolumeSource",
    &[
        omitempty(1, "reference", Str),
        omitempty(2, "pullPolicy", Str),
    ],
);

pub(super) static KEY_TO_PATH: Message = Message::new(
    CORE,
    "KeyToPath",
    &[
        field(1, "key", Str),
        field(2, "path", Str),
        field(3, "mode", Int32),
        field(4, "user", Int64),
    ],
);

pub(super) static DOWNWARD_API_VOLUME_FILE: Message = Message::new(
    CORE,
    "DownwardAPIVolumeFile",
    &[
        field(1, "path", Str),
        field(2, "fieldRef", Object(&OBJECT_FIELD_SELECTOR)),
        field(3, "resourceFieldRef", Object(&RESOURCE_FIELD_SELECTOR)),
        field(4, "mode", Int32),
        field(5, "user", Int64),
    ],
);

pub(super) static VOLUME_PROJECTION: Message = Message::new(
    CORE,
    "VolumeProjection",
    &[
        field(1, "secret", Object(&SECRET_PROJECTION)),
        field(2, "downwardAPI", Object(&DOWNWARD_API_PROJECTION)),
        field(3, "configMap", Object(&CONFIG_MAP_PROJECTION)),
        field(
            4,
            "serviceAccountToken",
            Object(&SERVICE_ACCOUNT_TOKEN_PROJECTION),
        ),
        field(
            5,
            "clusterTrustBundle",
            Object(&CLUSTER_TRUST_BUNDLE_PROJECTION),
        ),
        field(6, "podCertificate", Object(&POD_CERTIFICATE_PROJECTION)),
    ],
);

pub(super) static PERSISTENT_VOLUME_CLAIM_TEMPLATE: Message = Message::new(
    CORE,
    "PersistentVolumeClaimTemplate",
    &[
        field(1, "metadata", Object(&OBJECT_META)),
        field(2, "spec", Object(&PERSISTENT_VOLUME_CLAIM_SPEC)),
    ],
);

pub(super) static SECRET_PROJECTION: Message = Message::new(
    CORE,
    "SecretProjection",
    &[
        field(1, "localObjectReference", Inline(&LOCAL_OBJECT_REFERENCE)),
        field(2, "items", Objects(&KEY_TO_PATH)),
        field(4, "optional", Bool),
    ],
);

pub(super) static DOWNWARD_API_PROJECTION: Message = Message::new(
    CORE,
    "DownwardAPIProjection",
    &[field(1, "items", Objects(&DOWNWARD_API_VOLUME_FILE))],
);

pub(super) static CONFIG_MAP_PROJECTION: Message = Message::new(
    CORE,
    "ConfigMapProjection",
    &[
        field(1, "localObjectReference", Inline(&LOCAL_OBJECT_REFERENCE)),
        field(2, "items", Objects(&KEY_TO_PATH)),
        field(4, "optional", Bool),
    ],
);

pub(super) static SERVICE_ACCOUNT_TOKEN_PROJECTION: Message = Message::new(
    CORE,
    "ServiceAccountTokenProjection",
    &[
        omitempty(1, "audience", Str),
        field(2, "expirationSeconds", Int64),
        field(3, "path", Str),
        field(4, "user", Int64),
    ],
);

pub(super) static CLUSTER_TRUST_BUNDLE_PROJECTION: Message = Message::new(
    CORE,
    "ClusterTrustBundleProjection",
    &[
        field(1, "name", Str),
        field(2, "signerName", Str),
        field(3, "labelSelector", Object(&LABEL_SELECTOR)),
        field(5, "optional", Bool),
        field(4, "path", Str),
        field(6, "user", Int64),
    ],
);

pub(super) static POD_CERTIFICATE_PROJECTION: Message = Message::new(
    CORE,
    "PodCertificateProjection",
    &[
        omitempty(1, "signerName", Str),
        omitempty(2, "keyType", Str),
        field(3, "maxExpirationSeconds", Int32),
        omitempty(4, "credentialBundlePath", Str),
        omitempty(5, "keyPath", Str),
        omitempty(6, "certificateChainPath", Str),
        field(7, "userAnnotations", StringMap),
        field(8, "user", Int64),
    ],
);

pub(super) static PERSISTENT_VOLUME_CLAIM_SPEC: Message = Message::new(
    CORE,
    "PersistentVolumeClaimSpec",
    &[
        field(1, "accessModes", Strings),
        field(4, "selector", Object(&LABEL_SELECTOR)),
        field(2, "resources", Object(&VOLUME_RESOURCE_REQUIREMENTS)),
        omitempty(3, "volumeName", Str),
        field(5, "storageClassName", Str),
        field(6, "volumeMode", Str),
        field(7, "dataSource", Object(&TYPED_LOCAL_OBJECT_REFERENCE)),
        field(8, "dataSourceRef", Object(&TYPED_OBJECT_REFERENCE)),
        field(9, "volumeAttributesClassName", Str),
    ],
);

pub(super) static VOLUME_RESOURCE_REQUIREMENTS: Message = Message::new(
    CORE,
    "VolumeResourceRequirements",
    &[
        field(1, "limits", QuantityMap),
        field(2, "requests", QuantityMap),
    ],
);

pub(super) static TYPED_LOCAL_OBJECT_REFERENCE: Message = Message::new(
    CORE,
    "TypedLocalObjectReference",
    &[
        field(1, "apiGroup", Str),
        field(2, "kind", Str),
        field(3, "name", Str),
    ],
);

pub(super) static TYPED_OBJECT_REFERENCE: Message = Message::new(
    CORE,
    "TypedObjectReference",
    &[
        field(1, "apiGroup", Str),
        field(2, "kind", Str),
        field(3, "name", Str),
        field(4, "namespace", Str),
    ],
);
