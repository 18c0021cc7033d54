//! Pod volumes and the containers' `volumeMounts`: `emptyDir` and `hostPath`, which a node
//! provides alone, and the volumes whose files come from the API server (`secret`,
//! `configMap`, `downwardAPI`, `projected`: [`projected`]), which only pods from an API server
//! may use. Other types (persistent claims, …) are refused by name, never started with a
//! directory missing.

pub mod projected;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::quantity::Quantity;

pub use projected::{
    ApiVolume, ConfigMapVolumeSource, DownwardApiVolumeSource, ProjectedVolumeSource, Projection,
    SecretVolumeSource,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathVolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapVolumeSource>,
    #[serde(
        default,
        rename = "downwardAPI",
        skip_serializing_if = "Option::is_none"
    )]
    pub downward_api: Option<DownwardApiVolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projected: Option<ProjectedVolumeSource>,
}

/// A volume's one source, once validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeSource<'a> {
    EmptyDir(&'a EmptyDirVolumeSource),
    HostPath(&'a HostPathVolumeSource),
    /// Files from the API server (secret, configMap, downwardAPI, projected).
    Api(ApiVolume<'a>),
}

impl Volume {
    /// How many sources are set (validation allows exactly one).
    fn sources_set(&self) -> usize {
        [
            self.empty_dir.is_some(),
            self.host_path.is_some(),
            self.secret.is_some(),
            self.config_map.is_some(),
            self.downward_api.is_some(),
            self.projected.is_some(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count()
    }

    /// The source, if exactly one is set (validation guarantees it for admitted pods).
    pub fn source(&self) -> Option<VolumeSource<'_>> {
        if self.sources_set() != 1 {
            return None;
        }
        if let Some(empty_dir) = &self.empty_dir {
            return Some(VolumeSource::EmptyDir(empty_dir));
        }
        if let Some(host_path) = &self.host_path {
            return Some(VolumeSource::HostPath(host_path));
        }
        self.api_volume().map(VolumeSource::Api)
    }

    /// The volume's files from the API server, when it is of such a type.
    pub fn api_volume(&self) -> Option<ApiVolume<'_>> {
        if let Some(secret) = &self.secret {
            return Some(secret.api_volume());
        }
        if let Some(config_map) = &self.config_map {
            return Some(config_map.api_volume());
        }
        if let Some(downward_api) = &self.downward_api {
            return Some(downward_api.api_volume());
        }
        self.projected
            .as_ref()
            .map(ProjectedVolumeSource::api_volume)
    }

    /// The name of the volume's type, as the API spells it.
    pub fn type_name(&self) -> &'static str {
        match self.source() {
            Some(VolumeSource::EmptyDir(_)) => "emptyDir",
            Some(VolumeSource::HostPath(_)) => "hostPath",
            Some(VolumeSource::Api(_)) if self.secret.is_some() => "secret",
            Some(VolumeSource::Api(_)) if self.config_map.is_some() => "configMap",
            Some(VolumeSource::Api(_)) if self.downward_api.is_some() => "downwardAPI",
            Some(VolumeSource::Api(_)) => "projected",
            None => "unknown",
        }
    }
}

/// A directory that lives as long as the pod, shared by its containers and kept across their
/// restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDirVolumeSource {
    #[serde(default)]
    pub medium: StorageMedium,
    /// For `medium: Memory`, the tmpfs size (Kubernetes evicts the pod above it on disk; a
    /// tmpfs simply refuses to grow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<Quantity>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StorageMedium {
    /// The node's disk: a directory in the pod's state.
    #[default]
    #[serde(rename = "")]
    Disk,
    /// A tmpfs.
    Memory,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPathVolumeSource {
    pub path: String,
    #[serde(default, rename = "type")]
    pub kind: HostPathType,
}

/// What must be at a hostPath before a container starts, Kubernetes' `HostPathType`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostPathType {
    /// No check.
    #[default]
    #[serde(rename = "")]
    Unset,
    DirectoryOrCreate,
    Directory,
    FileOrCreate,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    #[serde(default)]
    pub read_only: bool,
    /// A path inside the volume to mount instead of its root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
}

/// `spec.volumes`: names are unique DNS labels, each volume has one source keel supports,
/// paths are absolute and sizes are quantities. Returns the names.
pub(crate) fn validate_volumes(volumes: &[Volume]) -> Result<BTreeSet<&str>, (String, String)> {
    let mut names = BTreeSet::new();
    for (i, volume) in volumes.iter().enumerate() {
        let at = |field: &str| format!("spec.volumes[{i}]{field}");
        crate::validation::check_dns_label(&at(".name"), &volume.name)?;
        if !names.insert(volume.name.as_str()) {
            return Err((
                at(".name"),
                format!("duplicate volume name {:?}", volume.name),
            ));
        }
        match volume.source() {
            Some(VolumeSource::EmptyDir(empty_dir)) => {
                if let Some(limit) = &empty_dir.size_limit {
                    limit
                        .bytes()
                        .map_err(|message| (at(".emptyDir.sizeLimit"), message))?;
                }
            }
            Some(VolumeSource::HostPath(host_path)) => {
                if !host_path.path.starts_with('/') {
                    return Err((
                        at(".hostPath.path"),
                        format!("{:?} is not an absolute path", host_path.path),
                    ));
                }
            }
            Some(VolumeSource::Api(_)) => {
                if let Some(secret) = &volume.secret {
                    projected::check_secret(&at(".secret"), secret)?;
                }
                if let Some(config_map) = &volume.config_map {
                    projected::check_config_map(&at(".configMap"), config_map)?;
                }
                if let Some(downward_api) = &volume.downward_api {
                    projected::check_downward_api(&at(".downwardAPI"), downward_api)?;
                }
                if let Some(projected) = &volume.projected {
                    projected::check_projected(&at(".projected"), projected)?;
                }
            }
            None if volume.sources_set() > 1 => {
                return Err((at(""), "may have only one of emptyDir, hostPath, secret, configMap, downwardAPI, projected".into()))
            }
            None => {
                return Err((
                    at(""),
                    "needs emptyDir, hostPath, secret, configMap, downwardAPI or projected, the volume types keel provides (persistent claims and the rest need storage keel does not have)".into(),
                ))
            }
        }
    }
    Ok(names)
}

/// A pod from a manifest (a static pod) may not use volumes whose files come from the API
/// server: the node alone has no such objects, and its mirror pod could not name them (the
/// kubelet refuses the same).
pub(crate) fn check_static(volumes: &[Volume]) -> Result<(), (String, String)> {
    match volumes
        .iter()
        .enumerate()
        .find(|(_, v)| v.api_volume().is_some())
    {
        Some((i, volume)) => Err((
            format!("spec.volumes[{i}].{}", volume.type_name()),
            format!(
                "a static pod cannot use {} volumes: their files come from an API server, which pods from manifests do not have",
                volume.type_name()
            ),
        )),
        None => Ok(()),
    }
}

/// A container's `volumeMounts`: each names a volume of the pod, at an absolute path of its
/// own, with a `subPath` that stays inside the volume.
pub(crate) fn validate_mounts(
    mounts: &[VolumeMount],
    volumes: &BTreeSet<&str>,
    at: &dyn Fn(&str) -> String,
) -> Result<(), (String, String)> {
    let mut paths = BTreeSet::new();
    for (j, mount) in mounts.iter().enumerate() {
        let field = |name: &str| at(&format!("volumeMounts[{j}].{name}"));
        if !volumes.contains(mount.name.as_str()) {
            return Err((
                field("name"),
                format!("no volume named {:?} in spec.volumes", mount.name),
            ));
        }
        let path = &mount.mount_path;
        if !path.starts_with('/') || path == "/" || has_dot_dot(path) {
            return Err((
                field("mountPath"),
                format!("{path:?} must be an absolute path below / without \"..\""),
            ));
        }
        if !paths.insert(path.trim_end_matches('/')) {
            return Err((
                field("mountPath"),
                format!("{path:?} is mounted twice in this container"),
            ));
        }
        if let Some(sub_path) = &mount.sub_path {
            if sub_path.starts_with('/') || has_dot_dot(sub_path) {
                return Err((
                    field("subPath"),
                    format!("{sub_path:?} must be a relative path without \"..\""),
                ));
            }
        }
    }
    Ok(())
}

fn has_dot_dot(path: &str) -> bool {
    path.split('/').any(|part| part == "..")
}

#[cfg(test)]
mod tests {
    use crate::{parse_manifests, parse_manifests_with_warnings, Object};

    use super::*;

    fn pod(volumes: &str, mounts: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec:\n  volumes: {volumes}\n  containers:\n  - name: app\n    image: busybox\n    volumeMounts: {mounts}\n"
        )
    }

    #[test]
    fn empty_dirs_and_host_paths_are_read_with_kubernetes_defaults() {
        let text = pod(
            "[{name: cache, emptyDir: {}}, {name: scratch, emptyDir: {medium: Memory, sizeLimit: 16Mi}}, {name: logs, hostPath: {path: /var/log, type: Directory}}]",
            "[{name: cache, mountPath: /cache}, {name: logs, mountPath: /host/logs, readOnly: true, subPath: keel}]",
        );
        let objects = parse_manifests(&text).expect("a valid pod");
        let Object::Pod(pod) = &objects[0] else {
            panic!("{objects:?}")
        };
        let volumes = &pod.spec.volumes;
        assert_eq!(
            volumes[0].source(),
            Some(VolumeSource::EmptyDir(&EmptyDirVolumeSource::default()))
        );
        let Some(VolumeSource::EmptyDir(memory)) = volumes[1].source() else {
            panic!("{volumes:?}")
        };
        assert_eq!(memory.medium, StorageMedium::Memory);
        assert_eq!(
            memory.size_limit.as_ref().map(|q| q.bytes()),
            Some(Ok(16 << 20))
        );
        let Some(VolumeSource::HostPath(host)) = volumes[2].source() else {
            panic!("{volumes:?}")
        };
        assert_eq!(
            (host.path.as_str(), host.kind),
            ("/var/log", HostPathType::Directory)
        );
        let mounts = &pod.spec.containers[0].volume_mounts;
        assert!(!mounts[0].read_only && mounts[0].sub_path.is_none());
        assert!(mounts[1].read_only);
        assert_eq!(mounts[1].sub_path.as_deref(), Some("keel"));
    }

    #[test]
    fn bad_volumes_and_mounts_are_refused_by_field() {
        let cases = [
            (
                "[{name: a, configMap: {name: x}}]",
                "[]",
                "spec.volumes[0].configMap: a static pod cannot use configMap volumes",
            ),
            (
                "[{name: a, persistentVolumeClaim: {claimName: x}}]",
                "[]",
                "spec.volumes[0]: needs emptyDir, hostPath",
            ),
            (
                "[{name: a, emptyDir: {}, hostPath: {path: /tmp}}]",
                "[]",
                "spec.volumes[0]: may have only one",
            ),
            (
                "[{name: a, emptyDir: {}}, {name: a, emptyDir: {}}]",
                "[]",
                "spec.volumes[1].name",
            ),
            ("[{name: A_b, emptyDir: {}}]", "[]", "spec.volumes[0].name"),
            (
                "[{name: a, hostPath: {path: tmp}}]",
                "[]",
                "spec.volumes[0].hostPath.path",
            ),
            (
                "[{name: a, hostPath: {path: /tmp, type: Folder}}]",
                "[]",
                "spec.volumes[0].hostPath.type: Unsupported value: \"Folder\"",
            ),
            (
                "[{name: a, emptyDir: {medium: Disk}}]",
                "[]",
                "spec.volumes[0].emptyDir.medium: Unsupported value: \"Disk\"",
            ),
            (
                "[{name: a, emptyDir: {sizeLimit: lots}}]",
                "[]",
                "sizeLimit",
            ),
            (
                "[{name: a, emptyDir: {}}]",
                "[{name: b, mountPath: /b}]",
                "spec.containers[0].volumeMounts[0].name: no volume named \"b\"",
            ),
            (
                "[{name: a, emptyDir: {}}]",
                "[{name: a, mountPath: data}]",
                "volumeMounts[0].mountPath",
            ),
            (
                "[{name: a, emptyDir: {}}]",
                "[{name: a, mountPath: /}]",
                "volumeMounts[0].mountPath",
            ),
            (
                "[{name: a, emptyDir: {}}]",
                "[{name: a, mountPath: /x/../etc}]",
                "volumeMounts[0].mountPath",
            ),
            (
                "[{name: a, emptyDir: {}}]",
                "[{name: a, mountPath: /x}, {name: a, mountPath: /x/}]",
                "volumeMounts[1].mountPath: \"/x/\" is mounted twice",
            ),
            (
                "[{name: a, emptyDir: {}}]",
                "[{name: a, mountPath: /x, subPath: ../up}]",
                "volumeMounts[0].subPath",
            ),
            (
                "[{name: a, emptyDir: {}}]",
                "[{name: a, mountPath: /x, subPath: /abs}]",
                "volumeMounts[0].subPath",
            ),
        ];
        for (volumes, mounts, expected) in cases {
            let err = parse_manifests(&pod(volumes, mounts)).expect_err(volumes);
            assert!(
                err.to_string().contains(expected),
                "{volumes} {mounts}: {err}"
            );
        }
    }

    #[test]
    fn an_unsupported_volume_type_is_named_in_a_warning_too() {
        let text = pod(
            "[{name: a, emptyDir: {}, nfs: {server: files, path: /}}]",
            "[]",
        );
        let err = parse_manifests_with_warnings(&text);
        // nfs is an unknown field (warned) and the volume still has a source: the pod is
        // admitted with the emptyDir, and the warning says what was left out.
        let (_, warnings) = err.expect("admitted");
        assert!(
            warnings
                .iter()
                .any(|w| w.to_string().contains("spec.volumes[0].nfs")),
            "{warnings:?}"
        );
    }

    /// A pod as an API server sends it, through the node's conversion.
    fn api_pod(volumes: serde_json::Value) -> Result<crate::Pod, String> {
        let wire: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"volumes": volumes, "containers": [{"name": "app", "image": "busybox",
                "volumeMounts": [{"name": "v", "mountPath": "/v", "readOnly": true}]}]},
        }))
        .map_err(|e| e.to_string())?;
        match crate::model_of(&crate::WireObject::Pod(Box::new(wire))) {
            Ok(Object::Pod(pod)) => Ok(*pod),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn the_service_account_volume_of_every_pod_is_read_as_projections() {
        let pod = api_pod(serde_json::json!([{"name": "v", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
        ]}}]))
        .expect("kube's kube-api-access volume");
        let Some(VolumeSource::Api(volume)) = pod.spec.volumes[0].source() else {
            panic!("{:?}", pod.spec.volumes)
        };
        assert_eq!(volume.default_mode, 0o644);
        assert_eq!(volume.projections.len(), 3);
        assert!(
            matches!(volume.projections[0], Projection::ServiceAccountToken(t) if t.expiration_seconds == Some(3607) && t.path == "token")
        );
        assert!(matches!(
            volume.projections[1],
            Projection::ConfigMap {
                name: "kube-root-ca.crt",
                ..
            }
        ));
        assert!(
            matches!(volume.projections[2], Projection::DownwardApi(files) if files[0].path == "namespace")
        );
        assert_eq!(pod.spec.volumes[0].type_name(), "projected");

        let secret = api_pod(serde_json::json!([{"name": "v", "secret": {"secretName": "tls", "defaultMode": 256, "optional": true}}]))
            .expect("a secret volume");
        let Some(VolumeSource::Api(volume)) = secret.spec.volumes[0].source() else {
            panic!("{:?}", secret.spec.volumes)
        };
        assert_eq!(volume.default_mode, 0o400);
        assert_eq!(
            volume.projections,
            vec![Projection::Secret {
                name: "tls",
                items: &[],
                optional: true
            }]
        );
    }

    #[test]
    fn hostile_api_volumes_are_refused_by_field() {
        let cases = [
            (serde_json::json!({"secret": {"secretName": "s", "items": [{"key": "k", "path": "../../etc/passwd"}]}}), "spec.volumes[0].secret.items[0].path: Invalid value: \"../../etc/passwd\": must not contain '..'"),
            (serde_json::json!({"secret": {"secretName": "s", "items": [{"key": "k", "path": "/etc/passwd"}]}}), "spec.volumes[0].secret.items[0].path: Invalid value: \"/etc/passwd\": must be a relative path"),
            (serde_json::json!({"secret": {"secretName": "s", "items": [{"key": "k", "path": "..data"}]}}), "must not start with '..'"),
            (serde_json::json!({"secret": {"secretName": "s", "items": [{"key": "../k", "path": "k"}]}}), "spec.volumes[0].secret.items[0].key"),
            (serde_json::json!({"secret": {"secretName": "S_3"}}), "spec.volumes[0].secret.secretName"),
            (serde_json::json!({"secret": {}}), "spec.volumes[0].secret.secretName: Required value"),
            (serde_json::json!({"configMap": {"name": "c", "defaultMode": 512}}), "spec.volumes[0].configMap.defaultMode: Invalid value: 512"),
            (serde_json::json!({"configMap": {"name": "c", "items": [{"key": "a", "path": "x", "mode": -1}]}}), "spec.volumes[0].configMap.items[0].mode"),
            (serde_json::json!({"configMap": {"name": "c", "items": [{"key": "a", "path": "x"}, {"key": "b", "path": "x"}]}}), "spec.volumes[0].configMap.items[1].path: Invalid value: \"x\": conflicting duplicate paths"),
            (serde_json::json!({"downwardAPI": {"items": [{"path": "x", "fieldRef": {"fieldPath": "spec.nodeName"}}]}}), "spec.volumes[0].downwardAPI.items[0].fieldRef.fieldPath: Unsupported value"),
            (serde_json::json!({"downwardAPI": {"items": [{"path": "x"}]}}), "spec.volumes[0].downwardAPI.items[0].fieldRef: Required value"),
            (serde_json::json!({"downwardAPI": {"items": [{"path": "x", "resourceFieldRef": {"resource": "limits.cpu"}}]}}), "resourceFieldRef: Forbidden"),
            (serde_json::json!({"projected": {"sources": [{"secret": {"name": "a"}, "configMap": {"name": "b"}}]}}), "spec.volumes[0].projected.sources[0]: Forbidden: may not specify more than 1 volume type per source"),
            (serde_json::json!({"projected": {"sources": [{}]}}), "spec.volumes[0].projected.sources[0]: Forbidden"),
            (serde_json::json!({"projected": {"sources": [{"serviceAccountToken": {"path": "t", "expirationSeconds": 10}}]}}), "spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds: Invalid value: 10"),
            (serde_json::json!({"projected": {"sources": [{"serviceAccountToken": {"path": "t", "expirationSeconds": 1_i64 << 40}}]}}), "larger than 2^32 seconds"),
            (serde_json::json!({"projected": {"sources": [{"serviceAccountToken": {"path": "t"}}, {"downwardAPI": {"items": [{"path": "t", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}}), "spec.volumes[0].projected.sources[1].downwardAPI.items[0].path: Invalid value: \"t\": conflicting duplicate paths"),
            (serde_json::json!({"projected": {"sources": [{"serviceAccountToken": {"path": ""}}]}}), "serviceAccountToken.path: Required value"),
            (serde_json::json!({"secret": {"secretName": "s"}, "configMap": {"name": "c"}}), "spec.volumes[0]: may have only one"),
        ];
        for (source, expected) in cases {
            let mut volume = source.clone();
            volume["name"] = serde_json::json!("v");
            let error = api_pod(serde_json::json!([volume])).expect_err(&source.to_string());
            assert!(error.contains(expected), "{source}: {error}");
        }
        // Labels and annotations, whole or by key, are the downward API's volume fields.
        for path in [
            "metadata.labels",
            "metadata.annotations['a.b/c']",
            "metadata.uid",
        ] {
            let volume = serde_json::json!([{"name": "v", "downwardAPI": {"items": [{"path": "f", "fieldRef": {"fieldPath": path}}]}}]);
            api_pod(volume).expect(path);
        }
    }
}
