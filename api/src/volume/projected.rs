//! Volumes whose files come from the API server: `secret`, `configMap`, `downwardAPI` and
//! `projected` (which combines those with ServiceAccount tokens — the `kube-api-access-…`
//! volume every pod gets). The node fetches their contents and writes them into a tmpfs; this
//! module is their shape and Kubernetes' validation of it (`ValidateProjectedVolumeSource`
//! and friends in `pkg/apis/core/validation`), with the same field paths.
//!
//! Every source is normalized to [`Projection`]s: a `secret` volume is a projection of one
//! Secret, and so on, so the node has one way to fill them.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::validation::{check, is_config_map_key, is_dns1123_subdomain};

/// The mode of files a volume does not give one (`0644`, Kubernetes' 420).
pub const DEFAULT_FILE_MODE: u32 = 0o644;
/// The shortest token lifetime a projection may ask for (ten minutes, as Kubernetes).
pub const MIN_TOKEN_SECONDS: i64 = 600;
/// The longest (2^32 seconds, as Kubernetes).
pub const MAX_TOKEN_SECONDS: i64 = 1 << 32;
/// A projected token's lifetime when the projection gives none (an hour).
pub const DEFAULT_TOKEN_SECONDS: i64 = 3600;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyToPath {
    pub key: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretVolumeSource {
    #[serde(default)]
    pub secret_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<i32>,
    #[serde(default)]
    pub optional: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapVolumeSource {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<i32>,
    #[serde(default)]
    pub optional: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownwardApiVolumeSource {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<DownwardApiFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<i32>,
}

/// One file of a downwardAPI volume or projection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownwardApiFile {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<FieldRef>,
    /// Container resources as a file: keel does not provide them yet, and validation says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_field_ref: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    pub field_path: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectedVolumeSource {
    #[serde(default)]
    pub sources: Vec<VolumeProjection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<i32>,
}

/// One source of a projected volume: exactly one of the four.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeProjection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretProjection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<SecretProjection>,
    #[serde(
        default,
        rename = "downwardAPI",
        skip_serializing_if = "Option::is_none"
    )]
    pub downward_api: Option<DownwardApiVolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_token: Option<ServiceAccountTokenProjection>,
}

/// A Secret's or ConfigMap's keys in a projected volume (the two have the same shape).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretProjection {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    #[serde(default)]
    pub optional: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountTokenProjection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_seconds: Option<i64>,
    pub path: String,
}

/// What one part of an API-backed volume holds, whichever volume type named it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projection<'a> {
    Secret {
        name: &'a str,
        items: &'a [KeyToPath],
        optional: bool,
    },
    ConfigMap {
        name: &'a str,
        items: &'a [KeyToPath],
        optional: bool,
    },
    DownwardApi(&'a [DownwardApiFile]),
    ServiceAccountToken(&'a ServiceAccountTokenProjection),
}

/// An API-backed volume, normalized: its projections and the mode of files that name none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiVolume<'a> {
    pub projections: Vec<Projection<'a>>,
    pub default_mode: u32,
}

/// A `mode`/`defaultMode` as permission bits (validation keeps them within 0777).
pub(super) fn mode_of(mode: Option<i32>) -> u32 {
    mode.and_then(|m| u32::try_from(m).ok())
        .unwrap_or(DEFAULT_FILE_MODE)
}

impl SecretVolumeSource {
    pub fn api_volume(&self) -> ApiVolume<'_> {
        ApiVolume {
            projections: vec![Projection::Secret {
                name: &self.secret_name,
                items: &self.items,
                optional: self.optional,
            }],
            default_mode: mode_of(self.default_mode),
        }
    }
}

impl ConfigMapVolumeSource {
    pub fn api_volume(&self) -> ApiVolume<'_> {
        ApiVolume {
            projections: vec![Projection::ConfigMap {
                name: &self.name,
                items: &self.items,
                optional: self.optional,
            }],
            default_mode: mode_of(self.default_mode),
        }
    }
}

impl DownwardApiVolumeSource {
    pub fn api_volume(&self) -> ApiVolume<'_> {
        ApiVolume {
            projections: vec![Projection::DownwardApi(&self.items)],
            default_mode: mode_of(self.default_mode),
        }
    }
}

impl ProjectedVolumeSource {
    pub fn api_volume(&self) -> ApiVolume<'_> {
        let projections = self
            .sources
            .iter()
            .filter_map(|source| match source {
                VolumeProjection {
                    secret: Some(s), ..
                } => Some(Projection::Secret {
                    name: &s.name,
                    items: &s.items,
                    optional: s.optional,
                }),
                VolumeProjection {
                    config_map: Some(c),
                    ..
                } => Some(Projection::ConfigMap {
                    name: &c.name,
                    items: &c.items,
                    optional: c.optional,
                }),
                VolumeProjection {
                    downward_api: Some(d),
                    ..
                } => Some(Projection::DownwardApi(&d.items)),
                VolumeProjection {
                    service_account_token: Some(t),
                    ..
                } => Some(Projection::ServiceAccountToken(t)),
                _ => None,
            })
            .collect();
        ApiVolume {
            projections,
            default_mode: mode_of(self.default_mode),
        }
    }
}

/// The downward API fields a volume file may hold (Kubernetes' `validVolumeDownwardAPIFieldPathExpressions`
/// plus the subscripted label and annotation forms).
const DOWNWARD_FIELDS: [&str; 5] = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels",
    "metadata.annotations",
];

/// A downward API field path's subscripted key: `metadata.labels['app']` → (`metadata.labels`, `app`).
pub fn subscripted(field_path: &str) -> Option<(&str, &str)> {
    let (base, rest) = field_path.split_once("['")?;
    let key = rest.strip_suffix("']")?;
    matches!(base, "metadata.labels" | "metadata.annotations").then_some((base, key))
}

type Checked = Result<(), (String, String)>;

fn invalid(field: String, message: String) -> Checked {
    Err((field, message))
}

/// `mode`/`defaultMode`: 0 to 0777, in Kubernetes' words.
fn check_mode(field: String, mode: Option<i32>) -> Checked {
    match mode {
        Some(m) if !(0..=0o777).contains(&m) => invalid(
            field,
            format!(
                "Invalid value: {m}: must be a number between 0 and 0777 (octal), both inclusive"
            ),
        ),
        _ => Ok(()),
    }
}

/// A file's path inside the volume: relative, no `..` element, not starting with `..`
/// (Kubernetes' `validateLocalDescendingPath` and `validateVolumeFilePath`). Paths become
/// file names on the node, so this is the check that keeps them inside the volume.
fn check_file_path(field: String, path: &str) -> Checked {
    if path.is_empty() {
        return invalid(field, "Required value".into());
    }
    if path.starts_with('/') {
        return invalid(
            field,
            format!("Invalid value: {path:?}: must be a relative path"),
        );
    }
    if path.split('/').any(|part| part == "..") {
        return invalid(
            field,
            format!("Invalid value: {path:?}: must not contain '..'"),
        );
    }
    if path.starts_with("..") {
        return invalid(
            field,
            format!("Invalid value: {path:?}: must not start with '..'"),
        );
    }
    if path.contains('\0') {
        return invalid(
            field,
            format!("Invalid value: {path:?}: must not contain NUL"),
        );
    }
    Ok(())
}

fn check_items(at: &str, items: &[KeyToPath], paths: &mut BTreeSet<String>) -> Checked {
    for (i, item) in items.iter().enumerate() {
        let field = |name: &str| format!("{at}.items[{i}].{name}");
        if item.key.is_empty() {
            return invalid(field("key"), "Required value".into());
        }
        check(&field("key"), &item.key, is_config_map_key(&item.key))?;
        check_file_path(field("path"), &item.path)?;
        check_mode(field("mode"), item.mode)?;
        claim_path(field("path"), &item.path, paths)?;
    }
    Ok(())
}

/// Two sources of one projected volume may not write the same file.
fn claim_path(field: String, path: &str, paths: &mut BTreeSet<String>) -> Checked {
    if !paths.insert(path.trim_end_matches('/').to_owned()) {
        return invalid(
            field,
            format!("Invalid value: {path:?}: conflicting duplicate paths"),
        );
    }
    Ok(())
}

fn check_object_name(field: String, name: &str) -> Checked {
    if name.is_empty() {
        return invalid(field, "Required value".into());
    }
    check(&field, name, is_dns1123_subdomain(name))
}

fn check_downward(at: &str, files: &[DownwardApiFile], paths: &mut BTreeSet<String>) -> Checked {
    for (i, file) in files.iter().enumerate() {
        let field = |name: &str| format!("{at}.items[{i}].{name}");
        check_file_path(field("path"), &file.path)?;
        check_mode(field("mode"), file.mode)?;
        claim_path(field("path"), &file.path, paths)?;
        match (&file.field_ref, &file.resource_field_ref) {
            (Some(field_ref), None) => {
                let path = field_ref.field_path.as_str();
                let known = DOWNWARD_FIELDS.contains(&path) || subscripted(path).is_some();
                if !known {
                    return invalid(
                        field("fieldRef.fieldPath"),
                        format!(
                            "Unsupported value: {path:?}: supported values: \"metadata.annotations\", \"metadata.labels\", \"metadata.name\", \"metadata.namespace\", \"metadata.uid\""
                        ),
                    );
                }
                if let Some(version) = field_ref.api_version.as_deref() {
                    if !version.is_empty() && version != "v1" {
                        return invalid(
                            field("fieldRef.apiVersion"),
                            format!("Unsupported value: {version:?}: supported values: \"v1\""),
                        );
                    }
                }
            }
            (None, Some(_)) => {
                return invalid(
                    field("resourceFieldRef"),
                    "Forbidden: keel does not provide container resources as files yet".into(),
                )
            }
            (Some(_), Some(_)) => return invalid(
                field("fieldRef"),
                "Invalid value: fieldRef and resourceFieldRef can not be specified simultaneously"
                    .into(),
            ),
            (None, None) => {
                return invalid(
                    field("fieldRef"),
                    "Required value: one of fieldRef and resourceFieldRef is required".into(),
                )
            }
        }
    }
    Ok(())
}

pub(super) fn check_secret(at: &str, source: &SecretVolumeSource) -> Checked {
    check_object_name(format!("{at}.secretName"), &source.secret_name)?;
    check_mode(format!("{at}.defaultMode"), source.default_mode)?;
    check_items(at, &source.items, &mut BTreeSet::new())
}

pub(super) fn check_config_map(at: &str, source: &ConfigMapVolumeSource) -> Checked {
    check_object_name(format!("{at}.name"), &source.name)?;
    check_mode(format!("{at}.defaultMode"), source.default_mode)?;
    check_items(at, &source.items, &mut BTreeSet::new())
}

pub(super) fn check_downward_api(at: &str, source: &DownwardApiVolumeSource) -> Checked {
    check_mode(format!("{at}.defaultMode"), source.default_mode)?;
    check_downward(at, &source.items, &mut BTreeSet::new())
}

pub(super) fn check_projected(at: &str, source: &ProjectedVolumeSource) -> Checked {
    check_mode(format!("{at}.defaultMode"), source.default_mode)?;
    let mut paths = BTreeSet::new();
    for (i, projection) in source.sources.iter().enumerate() {
        let at = format!("{at}.sources[{i}]");
        let set = [
            projection.secret.is_some(),
            projection.config_map.is_some(),
            projection.downward_api.is_some(),
            projection.service_account_token.is_some(),
        ]
        .into_iter()
        .filter(|s| *s)
        .count();
        if set != 1 {
            return invalid(
                at,
                "Forbidden: may not specify more than 1 volume type per source".into(),
            );
        }
        if let Some(secret) = &projection.secret {
            check_object_name(format!("{at}.secret.name"), &secret.name)?;
            check_items(&format!("{at}.secret"), &secret.items, &mut paths)?;
        }
        if let Some(config_map) = &projection.config_map {
            check_object_name(format!("{at}.configMap.name"), &config_map.name)?;
            check_items(&format!("{at}.configMap"), &config_map.items, &mut paths)?;
        }
        if let Some(downward) = &projection.downward_api {
            check_downward(&format!("{at}.downwardAPI"), &downward.items, &mut paths)?;
        }
        if let Some(token) = &projection.service_account_token {
            let field = |name: &str| format!("{at}.serviceAccountToken.{name}");
            let seconds = token.expiration_seconds.unwrap_or(DEFAULT_TOKEN_SECONDS);
            if seconds < MIN_TOKEN_SECONDS {
                return invalid(
                    field("expirationSeconds"),
                    format!(
                        "Invalid value: {seconds}: may not specify a duration less than 10 minutes"
                    ),
                );
            }
            if seconds > MAX_TOKEN_SECONDS {
                return invalid(
                    field("expirationSeconds"),
                    format!("Invalid value: {seconds}: may not specify a duration larger than 2^32 seconds"),
                );
            }
            check_file_path(field("path"), &token.path)?;
            claim_path(field("path"), &token.path, &mut paths)?;
        }
    }
    Ok(())
}
