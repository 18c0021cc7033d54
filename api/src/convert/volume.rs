//! `spec.volumes[]` and `volumeMounts[]` → keel's [`Volume`] and [`VolumeMount`]: emptyDir,
//! hostPath, and the sources whose files come from the API server.

use k8s_openapi::api::core::v1 as wire;

use super::{enumerated, Result};
use crate::{
    quantity::Quantity,
    volume::{
        projected::{
            ConfigMapVolumeSource, DownwardApiFile, DownwardApiVolumeSource, FieldRef, KeyToPath,
            ProjectedVolumeSource, SecretProjection, SecretVolumeSource,
            ServiceAccountTokenProjection, VolumeProjection,
        },
        EmptyDirVolumeSource, HostPathType, HostPathVolumeSource, StorageMedium, Volume,
        VolumeMount,
    },
};

/// One volume, at `at` (`spec.volumes[0]`). Sources keel does not support convert to none
/// of its own: validation names the volume, and the manifest warns of the field.
pub fn volume(at: &str, wire: &wire::Volume) -> Result<Volume> {
    Ok(Volume {
        name: wire.name.clone(),
        empty_dir: wire
            .empty_dir
            .as_ref()
            .map(|e| empty_dir(&format!("{at}.emptyDir"), e))
            .transpose()?,
        host_path: wire
            .host_path
            .as_ref()
            .map(|h| host_path(&format!("{at}.hostPath"), h))
            .transpose()?,
        secret: wire.secret.as_ref().map(|s| SecretVolumeSource {
            secret_name: s.secret_name.clone().unwrap_or_default(),
            items: items(&s.items),
            default_mode: s.default_mode,
            optional: s.optional.unwrap_or(false),
        }),
        config_map: wire.config_map.as_ref().map(|c| ConfigMapVolumeSource {
            name: c.name.clone(),
            items: items(&c.items),
            default_mode: c.default_mode,
            optional: c.optional.unwrap_or(false),
        }),
        downward_api: wire.downward_api.as_ref().map(|d| DownwardApiVolumeSource {
            items: downward_files(&d.items),
            default_mode: d.default_mode,
        }),
        projected: wire.projected.as_ref().map(projected),
    })
}

fn empty_dir(at: &str, wire: &wire::EmptyDirVolumeSource) -> Result<EmptyDirVolumeSource> {
    Ok(EmptyDirVolumeSource {
        medium: enumerated(
            &format!("{at}.medium"),
            wire.medium.as_deref(),
            StorageMedium::Disk,
            &[("Memory", StorageMedium::Memory)],
        )?,
        size_limit: wire.size_limit.as_ref().map(|q| Quantity::new(q.0.clone())),
    })
}

fn host_path(at: &str, wire: &wire::HostPathVolumeSource) -> Result<HostPathVolumeSource> {
    use HostPathType as T;
    Ok(HostPathVolumeSource {
        path: wire.path.clone(),
        kind: enumerated(
            &format!("{at}.type"),
            wire.type_.as_deref(),
            T::Unset,
            &[
                ("DirectoryOrCreate", T::DirectoryOrCreate),
                ("Directory", T::Directory),
                ("FileOrCreate", T::FileOrCreate),
                ("File", T::File),
                ("Socket", T::Socket),
                ("CharDevice", T::CharDevice),
                ("BlockDevice", T::BlockDevice),
            ],
        )?,
    })
}

fn items(wire: &Option<Vec<wire::KeyToPath>>) -> Vec<KeyToPath> {
    wire.iter()
        .flatten()
        .map(|k| KeyToPath {
            key: k.key.clone(),
            path: k.path.clone(),
            mode: k.mode,
        })
        .collect()
}

fn downward_files(wire: &Option<Vec<wire::DownwardAPIVolumeFile>>) -> Vec<DownwardApiFile> {
    wire.iter()
        .flatten()
        .map(|f| DownwardApiFile {
            path: f.path.clone(),
            field_ref: f.field_ref.as_ref().map(|r| FieldRef {
                api_version: r.api_version.clone(),
                field_path: r.field_path.clone(),
            }),
            // The model keeps it opaque (validation only refuses it): its JSON is enough.
            resource_field_ref: f
                .resource_field_ref
                .as_ref()
                .and_then(|r| serde_json::to_value(r).ok()),
            mode: f.mode,
        })
        .collect()
}

fn projected(wire: &wire::ProjectedVolumeSource) -> ProjectedVolumeSource {
    ProjectedVolumeSource {
        sources: wire
            .sources
            .iter()
            .flatten()
            .map(|s| VolumeProjection {
                secret: s.secret.as_ref().map(|p| SecretProjection {
                    name: p.name.clone(),
                    items: items(&p.items),
                    optional: p.optional.unwrap_or(false),
                }),
                config_map: s.config_map.as_ref().map(|p| SecretProjection {
                    name: p.name.clone(),
                    items: items(&p.items),
                    optional: p.optional.unwrap_or(false),
                }),
                downward_api: s.downward_api.as_ref().map(|d| DownwardApiVolumeSource {
                    items: downward_files(&d.items),
                    default_mode: None,
                }),
                service_account_token: s.service_account_token.as_ref().map(|t| {
                    ServiceAccountTokenProjection {
                        audience: t.audience.clone(),
                        expiration_seconds: t.expiration_seconds,
                        path: t.path.clone(),
                    }
                }),
            })
            .collect(),
        default_mode: wire.default_mode,
    }
}

pub fn mount(wire: &wire::VolumeMount) -> VolumeMount {
    VolumeMount {
        name: wire.name.clone(),
        mount_path: wire.mount_path.clone(),
        read_only: wire.read_only.unwrap_or(false),
        sub_path: wire.sub_path.clone(),
    }
}
