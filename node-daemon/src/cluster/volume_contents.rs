//! The files of the secret, configMap, downwardAPI and projected volumes of the pods bound to
//! this node, fetched from the API server as the kubelet's volume plugins fetch them, and kept
//! for the runtime ([`keel_runtime::volumes::VolumeContents`]), which writes them into each
//! volume's tmpfs before a container starts and again when they change.
//!
//! - Secrets and ConfigMaps are read with the node's own credentials; the Node authorizer lets
//!   a node read only those its pods name.
//! - A ServiceAccount token is requested for the pod (`serviceaccounts/<name>/token`, bound to
//!   the pod's uid, so it stops working when the pod goes) and requested again once 80% of its
//!   lifetime has passed, or after 24 hours, as the kubelet's token manager does.
//! - Everything is read again every [`RESYNC`]; a volume that could not be filled is tried again
//!   after [`RETRY`].

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::api::{
    authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec},
    core::v1::{ConfigMap, Pod, Secret, ServiceAccount},
};
use kube::{api::PostParams, runtime::reflector::Store, Api, Client, Resource, ResourceExt};
use tokio::sync::{watch, Notify};

use keel_api::volume::{
    projected::{subscripted, DownwardApiFile, KeyToPath, ServiceAccountTokenProjection},
    ApiVolume, Projection, Volume,
};
use keel_runtime::volumes::{VolumeContents, VolumeFile};

/// How often the contents of every volume are read again (Secrets and ConfigMaps edited
/// meanwhile reach running pods within this, plus the runtime's own refresh period).
pub const RESYNC: Duration = Duration::from_secs(30);
/// How soon a volume that could not be filled is tried again.
pub const RETRY: Duration = Duration::from_secs(2);
/// Volumes filled at the same time.
const CONCURRENT_FETCHES: usize = 16;
/// A token is requested again after this share of its lifetime (the kubelet's 80%).
const TOKEN_REFRESH_SHARE: f64 = 0.8;
/// … or after this long, whichever comes first.
const TOKEN_REFRESH_MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// One volume's files, and when to read them again.
struct Entry {
    files: Result<Vec<VolumeFile>, String>,
    due: Instant,
    /// Tokens of this volume: kept until they need refreshing, by projection index.
    tokens: HashMap<usize, Token>,
}

#[derive(Clone)]
struct Token {
    value: String,
    refresh_at: Instant,
}

/// What the runtime reads: (pod uid, volume name) → files.
#[derive(Default)]
pub struct ApiVolumeContents {
    entries: Mutex<HashMap<(String, String), Entry>>,
}

impl VolumeContents for ApiVolumeContents {
    fn files(&self, pod_uid: &str, volume: &str) -> Option<Result<Vec<VolumeFile>, String>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(&(pod_uid.to_owned(), volume.to_owned()))
            .map(|entry| entry.files.clone())
    }
}

impl ApiVolumeContents {
    fn due(&self, key: &(String, String), now: Instant) -> bool {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(key).is_none_or(|entry| entry.due <= now)
    }

    fn tokens(&self, key: &(String, String)) -> HashMap<usize, Token> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(key)
            .map(|entry| entry.tokens.clone())
            .unwrap_or_default()
    }

    fn set(&self, key: (String, String), entry: Entry) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.insert(key, entry);
    }

    /// Forgets the volumes of pods no longer bound here.
    fn retain(&self, live: &HashSet<(String, String)>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|key, _| live.contains(key));
    }

    /// The soonest moment any volume is due.
    fn next_due(&self) -> Option<Instant> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.values().map(|entry| entry.due).min()
    }
}

/// Keeps `contents` filled for the pods in `pods` (those bound to this node), woken by
/// `changed` when they change, until `stop`.
pub async fn run(
    client: Client,
    pods: Store<Pod>,
    contents: Arc<ApiVolumeContents>,
    changed: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let fetcher = Fetcher { client };
    loop {
        let now = Instant::now();
        let mut live = HashSet::new();
        let mut due = Vec::new();
        for pod in pods.state() {
            let finished = matches!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            );
            let Some(uid) = pod.uid() else { continue };
            if finished {
                continue;
            }
            for volume in api_volumes(&pod) {
                let key = (uid.clone(), volume.name.clone());
                live.insert(key.clone());
                if contents.due(&key, now) {
                    due.push((pod.clone(), volume, key));
                }
            }
        }
        // Several at once: a burst of new pods waits for their tokens, not for each other's.
        futures::stream::iter(due)
            .for_each_concurrent(CONCURRENT_FETCHES, |(pod, volume, key)| {
                let (fetcher, contents) = (&fetcher, &contents);
                async move {
                    let Some(api) = volume.api_volume() else {
                        return;
                    };
                    let mut tokens = contents.tokens(&key);
                    let files = fetcher.files(&pod, &api, &mut tokens).await;
                    if let Err(message) = &files {
                        tracing::warn!(pod = %format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any()), volume = volume.name, "cannot fill the volume: {message}");
                    }
                    let due = Instant::now() + if files.is_ok() { RESYNC } else { RETRY };
                    let due = tokens
                        .values()
                        .map(|token| token.refresh_at)
                        .fold(due, Instant::min);
                    contents.set(key, Entry { files, due, tokens });
                }
            })
            .await;
        contents.retain(&live);
        let wake = contents
            .next_due()
            .unwrap_or_else(|| Instant::now() + RESYNC);
        tokio::select! {
            _ = stop.changed() => return,
            () = changed.notified() => {}
            () = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

/// The pod's volumes whose files come from the API server, in keel's model (the same
/// conversion the node converts pods with; a volume it refuses was refused with the pod).
fn api_volumes(pod: &Pod) -> Vec<Volume> {
    let Some(volumes) = pod.spec.as_ref().and_then(|s| s.volumes.as_ref()) else {
        return Vec::new();
    };
    volumes
        .iter()
        .filter(|v| {
            v.secret.is_some()
                || v.config_map.is_some()
                || v.downward_api.is_some()
                || v.projected.is_some()
        })
        .filter_map(|v| keel_api::convert::volume::volume("spec.volumes[]", v).ok())
        .collect()
}

struct Fetcher {
    client: Client,
}

impl Fetcher {
    /// Every file of one volume, or why it cannot be filled.
    async fn files(
        &self,
        pod: &Pod,
        volume: &ApiVolume<'_>,
        tokens: &mut HashMap<usize, Token>,
    ) -> Result<Vec<VolumeFile>, String> {
        let namespace = pod.namespace().unwrap_or_default();
        let mut files = Vec::new();
        for (index, projection) in volume.projections.iter().enumerate() {
            match *projection {
                Projection::Secret {
                    name,
                    items,
                    optional,
                } => {
                    let data = self
                        .data_of::<Secret>(&namespace, name, |secret| {
                            let mut data: BTreeMap<String, Vec<u8>> = secret
                                .data
                                .unwrap_or_default()
                                .into_iter()
                                .map(|(k, v)| (k, v.0))
                                .collect();
                            // stringData is folded into data by the API server; a server
                            // that kept it is read too.
                            for (k, v) in secret.string_data.unwrap_or_default() {
                                data.entry(k).or_insert_with(|| v.into_bytes());
                            }
                            data
                        })
                        .await?;
                    let made =
                        keyed_files("secret", name, data, items, optional, volume.default_mode);
                    files.extend(made?);
                }
                Projection::ConfigMap {
                    name,
                    items,
                    optional,
                } => {
                    let data = self
                        .data_of::<ConfigMap>(&namespace, name, |config_map| {
                            let mut data: BTreeMap<String, Vec<u8>> = config_map
                                .data
                                .unwrap_or_default()
                                .into_iter()
                                .map(|(k, v)| (k, v.into_bytes()))
                                .collect();
                            for (k, v) in config_map.binary_data.unwrap_or_default() {
                                data.insert(k, v.0);
                            }
                            data
                        })
                        .await?;
                    let made = keyed_files(
                        "configmap",
                        name,
                        data,
                        items,
                        optional,
                        volume.default_mode,
                    );
                    files.extend(made?);
                }
                Projection::DownwardApi(items) => {
                    files.extend(downward_files(pod, items, volume.default_mode));
                }
                Projection::ServiceAccountToken(projection) => {
                    let now = Instant::now();
                    let token = match tokens.get(&index) {
                        Some(token) if token.refresh_at > now => token.clone(),
                        _ => {
                            let token = self.request_token(pod, projection).await?;
                            tokens.insert(index, token.clone());
                            token
                        }
                    };
                    files.push(VolumeFile {
                        path: projection.path.clone(),
                        data: token.value.into_bytes(),
                        mode: volume.default_mode,
                    });
                }
            }
        }
        Ok(files)
    }

    /// The keys of the Secret or ConfigMap `name`, as bytes (`data` reads them off the
    /// object); None when it does not exist.
    async fn data_of<K>(
        &self,
        namespace: &str,
        name: &str,
        data: impl FnOnce(K) -> BTreeMap<String, Vec<u8>>,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
    {
        match Api::<K>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
        {
            Ok(found) => Ok(found.map(data)),
            Err(error) => Err(format!("{} {name:?}: {error}", K::kind(&()).to_lowercase())),
        }
    }

    /// A token for the pod's ServiceAccount, bound to the pod.
    async fn request_token(
        &self,
        pod: &Pod,
        projection: &ServiceAccountTokenProjection,
    ) -> Result<Token, String> {
        let namespace = pod.namespace().unwrap_or_default();
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        let seconds = projection
            .expiration_seconds
            .unwrap_or(keel_api::volume::projected::DEFAULT_TOKEN_SECONDS);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(projection.audience.iter().cloned().collect()),
                expiration_seconds: Some(seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(pod.name_any()),
                    uid: pod.uid(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let accounts = Api::<ServiceAccount>::namespaced(self.client.clone(), &namespace);
        let issued = accounts
            .create_token_request(&account, &PostParams::default(), &request)
            .await
            .map_err(|error| {
                format!("requesting a token for serviceaccount {account:?}: {error}")
            })?;
        let status = issued.status.ok_or_else(|| {
            format!("the token request for {account:?} was answered without a token")
        })?;
        // The lifetime the server granted, which may be shorter than the one asked for.
        let token = status
            .token
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                format!("the token request for {account:?} was answered without a token")
            })?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let granted = status
            .expiration_timestamp
            .map_or(seconds, |expires| expires.0.as_second() - now);
        let lifetime = Duration::from_secs(u64::try_from(granted.max(60)).unwrap_or(60));
        let refresh_in = lifetime.mul_f64(TOKEN_REFRESH_SHARE).min(TOKEN_REFRESH_MAX);
        Ok(Token {
            value: token,
            refresh_at: Instant::now() + refresh_in,
        })
    }
}

/// The files of a Secret's or ConfigMap's keys: every key when `items` names none, else the
/// keys named, at their paths. A missing object or key is an error unless `optional`.
fn keyed_files(
    kind: &str,
    name: &str,
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: &[KeyToPath],
    optional: bool,
    default_mode: u32,
) -> Result<Vec<VolumeFile>, String> {
    let Some(mut data) = data else {
        return if optional {
            Ok(Vec::new())
        } else {
            Err(format!("{kind} {name:?} not found"))
        };
    };
    if items.is_empty() {
        return Ok(data
            .into_iter()
            .map(|(key, bytes)| VolumeFile {
                path: key,
                data: bytes,
                mode: default_mode,
            })
            .collect());
    }
    let mut files = Vec::new();
    for item in items {
        match data.remove(&item.key) {
            Some(bytes) => files.push(VolumeFile {
                path: item.path.clone(),
                data: bytes,
                mode: item
                    .mode
                    .and_then(|m| u32::try_from(m).ok())
                    .unwrap_or(default_mode),
            }),
            None if optional => {}
            None => {
                return Err(format!(
                    "{kind} {name:?}: references non-existent {kind} key: {}",
                    item.key
                ))
            }
        }
    }
    Ok(files)
}

/// The downward API's files: the pod's own metadata.
fn downward_files(pod: &Pod, items: &[DownwardApiFile], default_mode: u32) -> Vec<VolumeFile> {
    let meta = pod.meta();
    let empty = BTreeMap::new();
    let labels = meta.labels.as_ref().unwrap_or(&empty);
    let annotations = meta.annotations.as_ref().unwrap_or(&empty);
    items
        .iter()
        .filter_map(|item| {
            let field = item.field_ref.as_ref()?;
            let text = match (field.field_path.as_str(), subscripted(&field.field_path)) {
                (_, Some(("metadata.labels", key))) => labels.get(key).cloned().unwrap_or_default(),
                (_, Some((_, key))) => annotations.get(key).cloned().unwrap_or_default(),
                ("metadata.name", _) => meta.name.clone().unwrap_or_default(),
                ("metadata.namespace", _) => meta.namespace.clone().unwrap_or_default(),
                ("metadata.uid", _) => meta.uid.clone().unwrap_or_default(),
                ("metadata.labels", _) => format_map(labels),
                ("metadata.annotations", _) => format_map(annotations),
                _ => return None,
            };
            Some(VolumeFile {
                path: item.path.clone(),
                data: text.into_bytes(),
                mode: item
                    .mode
                    .and_then(|m| u32::try_from(m).ok())
                    .unwrap_or(default_mode),
            })
        })
        .collect()
}

/// Labels or annotations as the kubelet writes them: `key="value"` lines, sorted, the value
/// quoted as Go's `%q`.
fn format_map(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(key, value)| format!("{key}={}", keel_api::validation::go_quote(value)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1",
                "labels": {"app": "web", "tier": "front"},
                "annotations": {"note": "say \"hi\"\n"}},
            "spec": {"containers": [{"name": "app", "image": "busybox"}], "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "tls", "secret": {"secretName": "tls"}},
                {"name": "info", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "sub/app", "fieldRef": {"fieldPath": "metadata.labels['app']"}, "mode": 256},
                    {"path": "note", "fieldRef": {"fieldPath": "metadata.annotations['note']"}},
                    {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}},
                    {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}}]}}]}
        }))
        .expect("a pod")
    }

    #[test]
    fn only_volumes_from_the_api_server_are_fetched() {
        let names: Vec<String> = api_volumes(&pod()).into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["tls", "info"]);
    }

    #[test]
    fn downward_api_files_hold_the_pods_metadata_as_the_kubelet_writes_it() {
        let pod = pod();
        let volumes = api_volumes(&pod);
        let Some(ApiVolume {
            projections,
            default_mode,
        }) = volumes[1].api_volume()
        else {
            panic!("{volumes:?}")
        };
        let Projection::DownwardApi(items) = projections[0] else {
            panic!("{projections:?}")
        };
        let files = downward_files(&pod, items, default_mode);
        let text = |path: &str| {
            files
                .iter()
                .find(|f| f.path == path)
                .map(|f| String::from_utf8_lossy(&f.data).into_owned())
        };
        assert_eq!(
            text("labels").as_deref(),
            Some("app=\"web\"\ntier=\"front\"")
        );
        assert_eq!(text("sub/app").as_deref(), Some("web"));
        assert_eq!(text("note").as_deref(), Some("say \"hi\"\n"));
        assert_eq!(text("ns").as_deref(), Some("shop"));
        assert_eq!(text("uid").as_deref(), Some("u-1"));
        assert_eq!(
            files.iter().find(|f| f.path == "sub/app").map(|f| f.mode),
            Some(0o400)
        );
        assert_eq!(
            files.iter().find(|f| f.path == "ns").map(|f| f.mode),
            Some(0o644)
        );
    }

    #[test]
    fn keys_become_files_and_missing_ones_are_errors_unless_optional() {
        let data = || {
            Some(BTreeMap::from([
                ("a".to_owned(), b"1".to_vec()),
                ("b".to_owned(), b"2".to_vec()),
            ]))
        };
        let all = keyed_files("secret", "s", data(), &[], false, 0o600).expect("all keys");
        assert_eq!(
            all.iter()
                .map(|f| (f.path.as_str(), f.mode))
                .collect::<Vec<_>>(),
            [("a", 0o600), ("b", 0o600)]
        );
        let item = |key: &str, path: &str| KeyToPath {
            key: key.into(),
            path: path.into(),
            mode: None,
        };
        let picked = keyed_files(
            "configmap",
            "c",
            data(),
            &[item("b", "dir/b.txt")],
            false,
            0o644,
        )
        .expect("one key");
        assert_eq!(picked.len(), 1);
        assert_eq!(
            (picked[0].path.as_str(), picked[0].data.as_slice()),
            ("dir/b.txt", &b"2"[..])
        );
        let missing_key = keyed_files("configmap", "c", data(), &[item("z", "z")], false, 0o644)
            .expect_err("no key z");
        assert!(
            missing_key.contains("non-existent configmap key: z"),
            "{missing_key}"
        );
        assert_eq!(
            keyed_files("configmap", "c", data(), &[item("z", "z")], true, 0o644),
            Ok(Vec::new())
        );
        let missing =
            keyed_files("secret", "gone", None, &[], false, 0o644).expect_err("no secret");
        assert_eq!(missing, "secret \"gone\" not found");
        assert_eq!(
            keyed_files("secret", "gone", None, &[], true, 0o644),
            Ok(Vec::new())
        );
    }
}
