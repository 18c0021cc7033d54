//! Pod volumes keel can provide on a node without a control plane: `emptyDir` and `hostPath`,
//! and the containers' `volumeMounts`. Other volume types (configMap, secret, persistent
//! claims…) need objects keel does not have; a pod asking for one is refused by name, never
//! started with a directory missing.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::quantity::Quantity;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathVolumeSource>,
}

/// A volume's one source, once validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeSource<'a> {
    EmptyDir(&'a EmptyDirVolumeSource),
    HostPath(&'a HostPathVolumeSource),
}

impl Volume {
    /// The source, if exactly one is set (validation guarantees it for admitted pods).
    pub fn source(&self) -> Option<VolumeSource<'_>> {
        match (&self.empty_dir, &self.host_path) {
            (Some(empty_dir), None) => Some(VolumeSource::EmptyDir(empty_dir)),
            (None, Some(host_path)) => Some(VolumeSource::HostPath(host_path)),
            _ => None,
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
            None if volume.empty_dir.is_some() => {
                return Err((at(""), "may have only one of emptyDir, hostPath".into()))
            }
            None => {
                return Err((
                    at(""),
                    "needs emptyDir or hostPath, the volume types keel provides (configMap, secret and claims need objects a node alone does not have)".into(),
                ))
            }
        }
    }
    Ok(names)
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
                "spec.volumes[0]: needs emptyDir or hostPath",
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
                "unknown variant `Folder`",
            ),
            (
                "[{name: a, emptyDir: {medium: Disk}}]",
                "[]",
                "unknown variant `Disk`",
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
        let text = pod("[{name: a, emptyDir: {}, secret: {secretName: s}}]", "[]");
        let err = parse_manifests_with_warnings(&text);
        // The secret is an unknown field (warned) and the volume still has a source: the pod
        // is admitted with the emptyDir, and the warning says what was left out.
        let (_, warnings) = err.expect("admitted");
        assert!(
            warnings
                .iter()
                .any(|w| w.to_string().contains("spec.volumes[0].secret")),
            "{warnings:?}"
        );
    }
}
