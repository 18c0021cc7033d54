//! The ServiceAccount admission plugin, on pod create — kube-apiserver's
//! `plugin/pkg/admission/serviceaccount`:
//!
//! 1. a pod that names no ServiceAccount runs as `default` (`spec.serviceAccountName`, and the
//!    deprecated `spec.serviceAccount` that kube's v1 conversion keeps equal to it);
//! 2. the ServiceAccount must exist, or the pod is refused (403) — `default` is looked for a
//!    little longer, since it is created just after its namespace;
//! 3. unless the pod or else its ServiceAccount opts out (`automountServiceAccountToken:
//!    false`), a `kube-api-access-xxxxx` projected volume (a bound token, the cluster CA from
//!    the `kube-root-ca.crt` ConfigMap, the namespace) is added and mounted read-only at
//!    `/var/run/secrets/kubernetes.io/serviceaccount` in every container and init container
//!    that has nothing mounted there yet — where in-cluster clients (client-go, kube-rs,
//!    the Python client) look for their credentials;
//! 4. a pod without `imagePullSecrets` gets its ServiceAccount's.
//!
//! Mirror pods (the API's view of a node's static pods) are left exactly as the node wrote
//! them: the kubelet deletes a mirror pod whose spec differs from its file. What they may not
//! reference (ServiceAccounts, secrets) NodeRestriction refuses already.
//!
//! The decisions are plain functions of the pod and the ServiceAccount ([`account_name`],
//! [`mutate`]); [`admit_pod`] adds the lookup.

use std::future::Future;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::rest::Api;
use crate::status::ApiError;

/// The ServiceAccount of a pod that names none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// The annotation that marks a mirror pod.
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Where the token, the CA and the namespace are mounted.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The prefix of the projected volume's name; a volume already named so is the one mounted.
pub const VOLUME_NAME_PREFIX: &str = "kube-api-access-";
/// The ConfigMap holding the cluster CA in every namespace (the root-ca-cert-publisher's).
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// The token's lifetime: kube's `WarnOnlyBoundTokenExpirationSeconds`, an hour and 7 s, a
/// value no client asks for, so the API server can tell tokens of this volume apart.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// kube's `SimpleNameGenerator` alphabet: no vowels (no words), no 0/1/3 (no look-alikes).
pub const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Random characters after [`VOLUME_NAME_PREFIX`].
const NAME_SUFFIX_LENGTH: usize = 5;
/// Lookups of `default` before the pod is refused (kube's).
const DEFAULT_ACCOUNT_ATTEMPTS: u32 = 10;

/// The ServiceAccount a pod being created runs as, written into its spec (`default` when it
/// names none; the deprecated `serviceAccount` is read as an alias, as kube's conversion
/// reads it). None for a mirror pod or a pod without a spec object, which this plugin leaves
/// alone (validation refuses the latter).
pub fn account_name(pod: &mut Value) -> Option<String> {
    if pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(MIRROR_POD_ANNOTATION))
    {
        return None;
    }
    let spec = pod.get_mut("spec")?.as_object_mut()?;
    let named = |key: &str| {
        spec.get(key)
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
    };
    let name = named("serviceAccountName")
        .or_else(|| named("serviceAccount"))
        .unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT.to_owned());
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));
    Some(name)
}

fn forbidden(pod: &Value, message: String) -> ApiError {
    ApiError::pod_forbidden(crate::objects::name_of(pod), message)
}

/// kube's refusal of a pod whose ServiceAccount does not exist.
pub fn missing_account(pod: &Value, namespace: &str, account: &str) -> ApiError {
    forbidden(
        pod,
        format!(
            "error looking up service account {namespace}/{account}: serviceaccount {} not found",
            keel_api::validation::go_quote(account)
        ),
    )
}

/// Whether the token is mounted: the pod's choice, else its ServiceAccount's, else yes.
fn should_automount(spec: &Map<String, Value>, account: &Value) -> bool {
    spec.get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| {
            account
                .get("automountServiceAccountToken")
                .and_then(Value::as_bool)
        })
        .unwrap_or(true)
}

/// The projected volume kube adds (`TokenVolumeSource`), with `defaultMode` written out as
/// kube writes it.
pub fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

/// The list at `key` of `spec`, made an empty one when absent or null; None when it is
/// something else (validation refuses that later).
fn list_mut<'a>(spec: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Vec<Value>> {
    let entry = spec.entry(key).or_insert_with(|| json!([]));
    if entry.is_null() {
        *entry = json!([]);
    }
    entry.as_array_mut()
}

/// Mounts the token volume in every container without a mount at [`TOKEN_MOUNT_PATH`], and
/// adds the volume if one did and the pod has no `kube-api-access-` volume yet
/// (`mountServiceAccountToken`).
fn mount_token(spec: &mut Map<String, Value>, volume_name: impl FnOnce() -> String) {
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .find(|name| name.starts_with(VOLUME_NAME_PREFIX))
        .map(str::to_owned);
    let name = existing.clone().unwrap_or_else(volume_name);
    let mount = json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needs_volume = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers.iter_mut().filter_map(Value::as_object_mut) {
            let Some(mounts) = list_mut(container, "volumeMounts") else {
                continue;
            };
            let mounted = mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH));
            if !mounted {
                mounts.push(mount.clone());
                needs_volume = true;
            }
        }
    }
    if existing.is_none() && needs_volume {
        if let Some(volumes) = list_mut(spec, "volumes") {
            volumes.push(token_volume(&name));
        }
    }
}

/// What the plugin does to a pod once its ServiceAccount is known (`account` None: it does
/// not exist, and the pod is refused). `volume_name` makes the name of a new token volume.
pub fn mutate(
    pod: &mut Value,
    namespace: &str,
    account_name: &str,
    account: Option<&Value>,
    volume_name: impl FnOnce() -> String,
) -> Result<(), ApiError> {
    let Some(account) = account else {
        return Err(missing_account(pod, namespace, account_name));
    };
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if should_automount(spec, account) {
        mount_token(spec, volume_name);
    }
    let has_pull_secrets = spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    if !has_pull_secrets {
        // Names only, as kube copies them.
        let inherited: Vec<Value> = account
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|s| json!({"name": s.get("name").and_then(Value::as_str).unwrap_or("")}))
            .collect();
        if !inherited.is_empty() {
            spec.insert("imagePullSecrets".into(), Value::Array(inherited));
        }
    }
    Ok(())
}

/// `kube-api-access-` and five characters of [`NAME_ALPHABET`].
pub fn random_volume_name() -> String {
    let mut name = String::from(VOLUME_NAME_PREFIX);
    let mut drawn = 0;
    while drawn < NAME_SUFFIX_LENGTH {
        // A v4 UUID's bytes but the version (6) and variant (8) ones are random; bytes at or
        // above the largest multiple of the alphabet's size are skipped, so every character
        // is equally likely.
        let bytes = *uuid::Uuid::new_v4().as_bytes();
        let limit = 256 / NAME_ALPHABET.len() * NAME_ALPHABET.len();
        for (i, byte) in bytes.into_iter().enumerate() {
            if drawn == NAME_SUFFIX_LENGTH {
                break;
            }
            if i == 6 || i == 8 || usize::from(byte) >= limit {
                continue;
            }
            name.push(char::from(
                NAME_ALPHABET[usize::from(byte) % NAME_ALPHABET.len()],
            ));
            drawn += 1;
        }
    }
    name
}

/// Looks the ServiceAccount `name` up with `lookup`, once, or `DEFAULT_ACCOUNT_ATTEMPTS`
/// times `interval` apart for `default`, which its namespace's creation is about to bring
/// (`getServiceAccount`). None when it is still missing.
pub async fn find_account<F, Fut>(
    name: &str,
    interval: Duration,
    mut lookup: F,
) -> Result<Option<Value>, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<Value>, ApiError>>,
{
    let attempts = if name == DEFAULT_SERVICE_ACCOUNT {
        DEFAULT_ACCOUNT_ATTEMPTS
    } else {
        1
    };
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(interval).await;
        }
        if let Some(account) = lookup().await? {
            return Ok(Some(account));
        }
    }
    Ok(None)
}

/// The ServiceAccount from the watch cache, or from the store when the cache has not seen it
/// (created a moment ago).
async fn lookup(api: &Api, namespace: &str, name: &str) -> Result<Option<Value>, ApiError> {
    let cache = api.cache_of("", "serviceaccounts")?;
    let key = cache.info.key(namespace, name);
    if let Some(cached) = cache.get(&key) {
        return Ok(Some(cached.value.clone()));
    }
    match api.storage.get(&key).await? {
        Some(stored) => serde_json::from_slice(&stored.value)
            .map(Some)
            .map_err(|e| ApiError::internal(format!("stored object {key}: {e}"))),
        None => Ok(None),
    }
}

/// Runs the plugin on a pod being created in `namespace`: defaults and checks its
/// ServiceAccount, mounts its token, copies its pull secrets; 403 when the ServiceAccount
/// does not exist or cannot be read.
pub async fn admit_pod(api: &Api, namespace: &str, pod: &mut Value) -> Result<(), ApiError> {
    let Some(name) = account_name(pod) else {
        return Ok(());
    };
    // kube's retry interval: one draw of 100-199 ms for all the attempts.
    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 100;
    let interval = Duration::from_millis(100 + jitter);
    let account = find_account(&name, interval, || lookup(api, namespace, &name))
        .await
        .map_err(|e| {
            forbidden(
                pod,
                format!(
                    "error looking up service account {namespace}/{name}: {}",
                    e.message
                ),
            )
        })?;
    mutate(pod, namespace, &name, account.as_ref(), random_volume_name)
}

#[cfg(test)]
mod tests;
