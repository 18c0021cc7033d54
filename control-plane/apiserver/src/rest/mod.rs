//! The REST verbs on served resources. `Api` holds the storage client and the watch caches;
//! each verb lives in its own module.

mod admission;
mod apply;
mod delete;
mod field_manager;
mod patch;
pub mod pod_exec;
pub mod pod_logs;
mod read;
mod service_write;
mod subresource;
mod watch;
mod write;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::cache::{CacheError, Cacher};
use crate::metrics::Metrics;
use crate::objects::{self, FieldValidation};
use crate::reply::{negotiate, Format, Reply};
use crate::request::{Query, ResourceRequest, Verb};
use crate::resources::{ResourceInfo, RESOURCES};
use crate::status::ApiError;
use crate::storage::{Storage, StorageError};

/// A request as the handlers see it.
pub struct Request {
    pub query: Query,
    pub accept: Option<String>,
    /// The media type of the body, without parameters.
    pub content_type: String,
    pub body: Bytes,
    /// Who asks (authenticated, impersonation applied, already authorized).
    pub user: crate::auth::UserInfo,
    /// A connection upgrade the client asked for (`pods/exec` over WebSocket), with the
    /// headers that negotiate it; None for every other request.
    pub upgrade: Option<pod_exec::Upgrade>,
    /// The `User-Agent` header: the default field manager of a write that names none.
    pub user_agent: Option<String>,
}

pub struct Api {
    pub storage: Storage,
    caches: Vec<Arc<Cacher>>,
    /// RBAC over the RBAC caches: the front authorizes with it, the write path checks
    /// escalation with it.
    pub authorizer: Arc<crate::auth::authz::Authorizer>,
    pub metrics: Arc<Metrics>,
    pub config: ApiConfig,
}

/// What the operator sets about the API's behaviour.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Events each watch cache keeps for resuming watches.
    pub watch_cache_size: usize,
    /// Where ClusterIPs come from.
    pub service_ip_range: crate::service_ips::ServiceIpRange,
    /// Where node ports come from.
    pub node_port_range: crate::node_ports::NodePortRange,
    /// The port of the TLS listener, which the `kubernetes` Service targets.
    pub api_port: u16,
    /// Signs ServiceAccount tokens (TokenRequest); None serves no tokens.
    pub token_signer: Option<Arc<crate::auth::service_accounts::TokenSigner>>,
    /// How this server dials nodes for `pods/log` (its client certificate); None serves no
    /// logs.
    pub kubelet_tls: Option<Arc<rustls::ClientConfig>>,
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Compacted { requested } => ApiError::gone(format!(
                "The resourceVersion for the provided list is too old ({requested})."
            )),
            other => ApiError::unavailable(format!("storage: {other}")),
        }
    }
}

impl From<CacheError> for ApiError {
    fn from(error: CacheError) -> Self {
        match error {
            CacheError::TooOld { .. } => ApiError::gone(error.to_string()),
            CacheError::TooNew { .. } => ApiError::timeout(error.to_string()),
            CacheError::NotReady(_) => ApiError::unavailable(error.to_string()),
        }
    }
}

impl Api {
    /// Starts one watch cache per served resource, fed from `storage`.
    pub fn start(storage: Storage, metrics: Arc<Metrics>, config: ApiConfig) -> Arc<Self> {
        // One cache per stored resource: a resource kept in another's form (events.k8s.io
        // Events) reads that resource's cache, as its objects are that resource's.
        let own: Vec<Option<Arc<Cacher>>> = RESOURCES
            .iter()
            .map(|info| {
                info.stored_as
                    .is_none()
                    .then(|| Cacher::new(info, config.watch_cache_size))
            })
            .collect();
        let caches: Vec<Arc<Cacher>> = RESOURCES
            .iter()
            .zip(&own)
            .map(|(info, cache)| match cache {
                Some(cache) => cache.clone(),
                None => {
                    let storage_info = info.storage_resource();
                    RESOURCES
                        .iter()
                        .zip(&own)
                        .find(|(r, _)| std::ptr::eq(*r, storage_info))
                        .and_then(|(_, c)| c.clone())
                        // A conversion naming no served resource: a cache of its own, in
                        // the stored form, so nothing is served from an empty one.
                        .unwrap_or_else(|| Cacher::new(storage_info, config.watch_cache_size))
                }
            })
            .collect();
        for (info, cache) in RESOURCES.iter().zip(&caches) {
            if std::ptr::eq(cache.info, info) {
                tokio::spawn(cache.clone().run(storage.clone()));
            }
        }
        let rbac_caches = crate::auth::authz::RBAC_RESOURCES
            .iter()
            .filter_map(|resource| {
                caches
                    .iter()
                    .find(|c| {
                        c.info.group == "rbac.authorization.k8s.io" && c.info.resource == *resource
                    })
                    .cloned()
            })
            .collect();
        // Pods are in the table; were they not, the Node authorizer would see no pods (an
        // empty cache that is never fed) and grant nodes nothing it narrows.
        let pods = caches
            .iter()
            .find(|c| c.info.group.is_empty() && c.info.resource == "pods")
            .cloned()
            .unwrap_or_else(|| Cacher::new(&RESOURCES[0], 1));
        Arc::new(Self {
            authorizer: Arc::new(crate::auth::authz::Authorizer::new(rbac_caches, pods)),
            storage,
            caches,
            metrics,
            config,
        })
    }

    pub fn cache(&self, info: &ResourceInfo) -> &Arc<Cacher> {
        let index = RESOURCES
            .iter()
            .position(|r| std::ptr::eq(r, info))
            .unwrap_or(0);
        &self.caches[index]
    }

    /// The watch cache of a core or grouped v1 resource, by name.
    pub fn cache_of(&self, group: &str, resource: &str) -> Result<Arc<Cacher>, ApiError> {
        crate::resources::lookup(group, "v1", resource)
            .map(|info| self.cache(info).clone())
            .ok_or_else(|| ApiError::internal(format!("{resource} are not served")))
    }

    /// True once every watch cache has listed its resource.
    pub fn ready(&self) -> bool {
        self.caches.iter().all(|c| c.list("").is_ok())
    }

    /// Refreshes the gauges that mirror the caches.
    pub fn refresh_gauges(&self) {
        for (served, cache) in RESOURCES.iter().zip(&self.caches) {
            let info = cache.info;
            // A cache two resources share counts its objects (and watchers) once, under the
            // stored resource.
            if !std::ptr::eq(info, served) {
                continue;
            }
            self.metrics
                .objects
                .get_or_create(&crate::metrics::ResourceLabels {
                    resource: info.qualified(),
                })
                .set(cache.object_count() as i64);
            self.metrics
                .watchers
                .get_or_create(&crate::metrics::KindLabels {
                    group: info.group.into(),
                    version: info.version.into(),
                    kind: info.kind.into(),
                })
                .set(cache.watcher_count() as i64);
        }
    }

    pub async fn handle(self: &Arc<Self>, target: ResourceRequest, request: Request) -> Reply {
        match self.dispatch(&target, request).await {
            Ok(reply) => reply,
            Err(error) => Reply::error(&error),
        }
    }

    async fn dispatch(
        self: &Arc<Self>,
        target: &ResourceRequest,
        request: Request,
    ) -> Result<Reply, ApiError> {
        let format = negotiate(request.accept.as_deref())?;
        if let Some(sub) = target.subresource.as_deref() {
            if sub == "exec" {
                // Owns the request: the client's connection is handed to the node.
                return pod_exec::exec(self, target, request).await;
            }
            return subresource::handle(self, target, sub, &request, format).await;
        }
        match target.verb {
            Verb::Get => read::get(self, target, &request, format).await,
            Verb::List => read::list(self, target, &request, format).await,
            Verb::Watch => watch::watch(self, target, &request).await,
            Verb::Create => write::create(self, target, &request, format).await,
            Verb::Update => write::update(self, target, &request, format, false).await,
            Verb::Patch => patch::patch(self, target, &request, format, false).await,
            Verb::Delete => delete::delete(self, target, &request, format).await,
            Verb::DeleteCollection => {
                delete::delete_collection(self, target, &request, format).await
            }
        }
    }
}

/// A stored object with `resourceVersion` = its mod revision, in the stored form (see
/// [`ResourceInfo::from_storage`] for the version a request asked for).
fn decode_stored(stored: &crate::storage::Stored) -> Result<Value, ApiError> {
    let object: Value = serde_json::from_slice(&stored.value)
        .map_err(|e| ApiError::internal(format!("stored object {}: {e}", stored.key)))?;
    Ok(objects::with_revision(object, stored.mod_revision))
}

/// One object read from the store (not the cache), in `info`'s version, and the revision a
/// write must compare against; 404 when it does not exist.
async fn read_current(
    api: &Api,
    info: &ResourceInfo,
    namespace: &str,
    name: &str,
) -> Result<(Value, i64), ApiError> {
    let stored = api
        .storage
        .get(&info.key(namespace, name))
        .await?
        .ok_or_else(|| ApiError::not_found(info, name))?;
    Ok((
        info.from_storage(decode_stored(&stored)?),
        stored.mod_revision,
    ))
}

/// `object` (in `info`'s version) as the bytes the store keeps: in the stored form, without
/// `resourceVersion`.
fn stored_bytes(info: &ResourceInfo, object: &Value) -> Result<Vec<u8>, ApiError> {
    objects::to_stored(&info.to_storage(object))
}

/// The namespace a request works in ("" for cluster-scoped kinds).
fn namespace_of(target: &ResourceRequest) -> &str {
    target.namespace.as_deref().unwrap_or("")
}

fn name_of(target: &ResourceRequest) -> Result<&str, ApiError> {
    target
        .name
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("a name is required"))
}

/// `dryRun=All` (the only value Kubernetes defines); anything else is refused by name.
fn dry_run(query: &Query) -> Result<bool, ApiError> {
    match query.get("dryRun") {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "dryRun: Unsupported value: {other:?}: supported values: \"All\""
        ))),
    }
}

fn field_validation(query: &Query) -> Result<FieldValidation, ApiError> {
    FieldValidation::parse(query.get("fieldValidation"))
}

/// An object in the representation asked for (a single object: JSON, YAML, a one-row Table,
/// or its metadata).
fn object_reply(info: &ResourceInfo, code: u16, object: Value, format: Format) -> Reply {
    match format {
        Format::Json => Reply::json(code, object),
        Format::Yaml => match serde_yaml_ng::to_string(&object) {
            Ok(text) => Reply::raw(code, text.into_bytes(), "application/yaml"),
            Err(e) => Reply::error(&ApiError::internal(e.to_string())),
        },
        Format::Table => {
            let rv = objects::meta_str(&object, "resourceVersion")
                .unwrap_or("")
                .to_owned();
            Reply::json(
                code,
                crate::table::to_table(
                    info.resource,
                    std::slice::from_ref(&object),
                    serde_json::json!({"resourceVersion": rv}),
                    crate::table::IncludeObject::Metadata,
                    jiff::Timestamp::now(),
                ),
            )
        }
        Format::Metadata => Reply::json(code, partial_metadata(&object)),
    }
}

/// An object's `PartialObjectMetadata` (`as=PartialObjectMetadata;g=meta.k8s.io;v=v1`).
pub(super) fn partial_metadata(object: &Value) -> Value {
    serde_json::json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or(Value::Null),
    })
}
