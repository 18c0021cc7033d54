//! The volume sources whose fields name files inside a container — `projected`,
//! `downwardAPI`, `configMap`, `secret` — as kube-apiserver's `validateProjectedVolumeSource`,
//! `validateDownwardAPIVolumeSource`, `validateConfigMapVolumeSource` and
//! `validateSecretVolumeSource` check them, field paths and words included (kube's quirks too:
//! a downward API file's errors name its source, not its index; a token's path errors name
//! `projected.path`).
//!
//! The node writes these files under the volume's directory: a path that is absolute or
//! climbs out with `..` would write elsewhere on the node, and a mode beyond 0777 would set
//! setuid bits. Both are refused here, before any node reads the pod.

use std::collections::HashSet;

use serde_json::Value;

use super::{items, text, Cause, Errors};
use keel_api::validation::is_qualified_name;

/// kube's `fileModeErrorMsg`.
const FILE_MODE: &str = "must be a number between 0 and 0777 (octal), both inclusive";
/// The shortest bound token a pod may ask for (kube: 10 minutes).
const MIN_TOKEN_SECONDS: i64 = 10 * 60;
/// The longest (kube: 2^32 s).
const MAX_TOKEN_SECONDS: i64 = 1 << 32;
/// `fieldRef` paths a downward API volume file may project (kube's
/// `validVolumeDownwardAPIFieldPathExpressions`, sorted as kube lists them).
const VOLUME_FIELD_PATHS: [&str; 5] = [
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];
/// `resourceFieldRef` resources (kube's `validContainerResourceFieldPathExpressions`).
const RESOURCE_FIELDS: [&str; 6] = [
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];
/// Field labels kube's `ConvertDownwardAPIFieldLabel` knows for v1 pods.
const POD_FIELD_LABELS: [&str; 15] = [
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
    "spec.host",
];

impl Errors {
    /// `field.Invalid` of a number: Go prints it unquoted.
    fn invalid_number(&mut self, field: &str, value: i64, detail: &str) {
        self.0.push(Cause {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {value}: {detail}"),
            field: field.into(),
        });
    }

    /// `field.Required` with a detail.
    fn required_because(&mut self, field: &str, detail: &str) {
        self.0.push(Cause {
            reason: "FieldValueRequired",
            message: format!("Required value: {detail}"),
            field: field.into(),
        });
    }
}

/// The sources of every volume of a pod spec at `path` (`<path>.volumes[i]`).
pub(super) fn validate(errors: &mut Errors, path: &str, volumes: &[Value]) {
    for (i, volume) in volumes.iter().enumerate() {
        let at = format!("{path}.volumes[{i}]");
        if let Some(projected) = volume.get("projected").filter(|v| v.is_object()) {
            projected_source(errors, &format!("{at}.projected"), projected);
        }
        if let Some(downward) = volume.get("downwardAPI").filter(|v| v.is_object()) {
            let at = format!("{at}.downwardAPI");
            file_mode(
                errors,
                &format!("{at}.defaultMode"),
                downward.get("defaultMode"),
            );
            for file in items(downward.get("items")) {
                downward_api_file(errors, &at, file);
            }
        }
        for (source, name_field) in [("configMap", "name"), ("secret", "secretName")] {
            let Some(object) = volume.get(source).filter(|v| v.is_object()) else {
                continue;
            };
            let at = format!("{at}.{source}");
            if text(object.get(name_field)).is_empty() {
                errors.required(&format!("{at}.{name_field}"));
            }
            file_mode(
                errors,
                &format!("{at}.defaultMode"),
                object.get("defaultMode"),
            );
            for (k, item) in items(object.get("items")).iter().enumerate() {
                key_to_path(errors, &format!("{at}.items[{k}]"), item);
            }
        }
    }
}

/// A mode, if set, is within 0..=0777.
fn file_mode(errors: &mut Errors, field: &str, mode: Option<&Value>) {
    if let Some(mode) = mode.and_then(Value::as_i64) {
        if !(0..=0o777).contains(&mode) {
            errors.invalid_number(field, mode, FILE_MODE);
        }
    }
}

/// kube's `ValidateLocalNonReservedPath`: relative, no `..` element, not starting with `..`.
fn local_path(errors: &mut Errors, field: &str, path: &str) {
    if path.starts_with('/') {
        errors.invalid(field, path, "must be a relative path");
    }
    if path.split('/').any(|part| part == "..") {
        errors.invalid(field, path, "must not contain '..'");
    }
    // kube means not to say it twice, but a lone ".." gets both messages there too.
    if path.starts_with("..") && !path.starts_with("../") {
        errors.invalid(field, path, "must not start with '..'");
    }
}

/// kube's `validateKeyToPath`: a key, a local path, a sane mode.
fn key_to_path(errors: &mut Errors, at: &str, item: &Value) {
    if text(item.get("key")).is_empty() {
        errors.required(&format!("{at}.key"));
    }
    let path = text(item.get("path"));
    if path.is_empty() {
        errors.required(&format!("{at}.path"));
    }
    local_path(errors, &format!("{at}.path"), &path);
    file_mode(errors, &format!("{at}.mode"), item.get("mode"));
}

/// kube's `fieldpath.SplitMaybeSubscriptedPath`: `metadata.labels['key']` → path and key.
fn split_subscript(field_path: &str) -> Option<(&str, &str)> {
    let inner = field_path.strip_suffix("']")?;
    let (path, key) = inner.split_once("['")?;
    (!path.is_empty()).then_some((path, key))
}

/// kube's `validateObjectFieldSelector` for a volume file's `fieldRef` at `at`.
fn object_field_selector(errors: &mut Errors, at: &str, selector: &Value) {
    let api_version = text(selector.get("apiVersion"));
    let field_path = text(selector.get("fieldPath"));
    if api_version.is_empty() {
        return errors.required(&format!("{at}.apiVersion"));
    }
    if field_path.is_empty() {
        return errors.required(&format!("{at}.fieldPath"));
    }
    // ConvertDownwardAPIFieldLabel.
    let converted = if api_version != "v1" {
        Err(format!("unsupported pod version: {api_version}"))
    } else if let Some((path, _)) = split_subscript(&field_path) {
        match path {
            "metadata.annotations" | "metadata.labels" => Ok(()),
            _ => Err(format!(
                "field label does not support subscript: {field_path}"
            )),
        }
    } else if POD_FIELD_LABELS.contains(&field_path.as_str()) {
        Ok(())
    } else {
        Err(format!("field label not supported: {field_path}"))
    };
    if let Err(why) = converted {
        return errors.invalid(
            &format!("{at}.fieldPath"),
            &field_path,
            &format!("error converting fieldPath: {why}"),
        );
    }
    // `spec.host` converts to `spec.nodeName`, which volumes do not project either.
    let internal = if field_path == "spec.host" {
        "spec.nodeName"
    } else {
        field_path.as_str()
    };
    match split_subscript(internal) {
        Some((path, key)) => {
            let key = if path == "metadata.annotations" {
                key.to_lowercase()
            } else {
                key.to_owned()
            };
            for message in is_qualified_name(&key) {
                errors.invalid(at, &key, &message);
            }
        }
        None if !VOLUME_FIELD_PATHS.contains(&internal) => {
            errors.unsupported(&format!("{at}.fieldPath"), internal, &VOLUME_FIELD_PATHS);
        }
        None => {}
    }
}

/// kube's `validateContainerResourceFieldSelector` for a volume file (the container must be
/// named).
fn resource_field_selector(errors: &mut Errors, at: &str, selector: &Value) {
    let resource = text(selector.get("resource"));
    if text(selector.get("containerName")).is_empty() {
        errors.required(&format!("{at}.containerName"));
    } else if resource.is_empty() {
        errors.required(&format!("{at}.resource"));
    } else if !RESOURCE_FIELDS.contains(&resource.as_str())
        && !resource.starts_with("limits.hugepages-")
        && !resource.starts_with("requests.hugepages-")
    {
        errors.unsupported(&format!("{at}.resource"), &resource, &RESOURCE_FIELDS);
    }
}

/// kube's `validateDownwardAPIVolumeFile`; `at` is the source's path (kube names no index).
fn downward_api_file(errors: &mut Errors, at: &str, file: &Value) {
    let path = text(file.get("path"));
    if path.is_empty() {
        errors.required(&format!("{at}.path"));
    }
    local_path(errors, &format!("{at}.path"), &path);
    let field_ref = file.get("fieldRef").filter(|v| !v.is_null());
    let resource_ref = file.get("resourceFieldRef").filter(|v| !v.is_null());
    match (field_ref, resource_ref) {
        (Some(field_ref), resource_ref) => {
            object_field_selector(errors, &format!("{at}.fieldRef"), field_ref);
            if resource_ref.is_some() {
                errors.invalid(
                    at,
                    "resource",
                    "fieldRef and resourceFieldRef can not be specified simultaneously",
                );
            }
        }
        (None, Some(resource_ref)) => {
            resource_field_selector(errors, &format!("{at}.resourceFieldRef"), resource_ref);
        }
        (None, None) => {
            errors.required_because(at, "one of fieldRef and resourceFieldRef is required")
        }
    }
    file_mode(errors, &format!("{at}.mode"), file.get("mode"));
}

/// kube's `validateProjectedVolumeSource` at `at` (`…volumes[i].projected`).
fn projected_source(errors: &mut Errors, at: &str, projected: &Value) {
    file_mode(
        errors,
        &format!("{at}.defaultMode"),
        projected.get("defaultMode"),
    );
    // Paths already projected, across sources: two files at one path would overwrite.
    let mut paths: HashSet<String> = HashSet::new();
    let mut claim = |errors: &mut Errors, path: String, shown: &str| {
        if !path.is_empty() && !paths.insert(path) {
            errors.invalid(at, shown, "conflicting duplicate paths");
        }
    };
    for (j, source) in items(projected.get("sources")).iter().enumerate() {
        let source_at = format!("{at}.sources[{j}]");
        let set = |key: &str| source.get(key).filter(|v| !v.is_null());
        let mut kinds = 0;
        for kind in ["secret", "configMap"] {
            let Some(object) = set(kind) else { continue };
            kinds += 1;
            let kind_at = format!("{source_at}.{kind}");
            let name = text(object.get("name"));
            if name.is_empty() {
                errors.required(&format!("{kind_at}.name"));
            }
            for (k, item) in items(object.get("items")).iter().enumerate() {
                key_to_path(errors, &format!("{kind_at}.items[{k}]"), item);
                claim(errors, text(item.get("path")), &name);
            }
        }
        if let Some(downward) = set("downwardAPI") {
            kinds += 1;
            let kind_at = format!("{source_at}.downwardAPI");
            for file in items(downward.get("items")) {
                downward_api_file(errors, &kind_at, file);
                let path = text(file.get("path"));
                claim(errors, path.clone(), &path);
            }
        }
        if let Some(token) = set("serviceAccountToken") {
            kinds += 1;
            let field = format!("{source_at}.serviceAccountToken.expirationSeconds");
            // Defaulted to 3600 when unset.
            let seconds = token
                .get("expirationSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(3600);
            if seconds < MIN_TOKEN_SECONDS {
                errors.invalid_number(
                    &field,
                    seconds,
                    "may not specify a duration less than 10 minutes",
                );
            }
            if seconds > MAX_TOKEN_SECONDS {
                errors.invalid_number(
                    &field,
                    seconds,
                    "may not specify a duration larger than 2^32 seconds",
                );
            }
            let path = text(token.get("path"));
            if path.is_empty() {
                errors.required(&format!("{at}.path"));
            } else {
                local_path(errors, &format!("{at}.path"), &path);
            }
        }
        if let Some(bundle) = set("clusterTrustBundle") {
            kinds += 1;
            let kind_at = format!("{source_at}.clusterTrustBundlePEM");
            let name = bundle.get("name").filter(|v| !v.is_null());
            let signer = bundle.get("signerName").filter(|v| !v.is_null());
            match (name, signer) {
                (Some(_), Some(_)) => errors.invalid(
                    &kind_at,
                    &bundle.to_string(),
                    "only one of name and signerName may be used",
                ),
                (None, None) => {
                    errors.required_because(&kind_at, "either name or signerName must be specified")
                }
                _ => {}
            }
            let path = text(bundle.get("path"));
            if path.is_empty() {
                errors.required(&format!("{kind_at}.path"));
            }
            local_path(errors, &format!("{kind_at}.path"), &path);
            claim(errors, path.clone(), &path);
        }
        if set("podCertificate").is_some() {
            kinds += 1;
        }
        if kinds > 1 {
            errors.forbidden(&source_at, "may not specify more than 1 volume type");
        }
    }
}

#[cfg(test)]
mod tests;
