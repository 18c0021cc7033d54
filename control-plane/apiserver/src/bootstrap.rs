//! What a fresh cluster has before anyone writes to it, as kube-apiserver makes it at start:
//! the system namespaces and the default RBAC roles and bindings. Objects that exist are left
//! alone (an operator may have changed them); missing ones are created, so a deleted default
//! comes back at the next start, as kube-apiserver's bootstrap does.

use serde::Serialize;
use serde_json::Value;

use crate::auth::bootstrap_policy;
use crate::auth::rbac;
use crate::objects;
use crate::resources::{self, ResourceInfo};
use crate::rest::Api;
use crate::storage::StorageError;

/// The namespaces every Kubernetes cluster has.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{kind} {name}: {message}")]
    Object {
        kind: &'static str,
        name: String,
        message: String,
    },
    #[error("{0}")]
    Storage(#[from] StorageError),
}

async fn ensure(
    api: &Api,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    object: impl Serialize,
) -> Result<bool, BootstrapError> {
    ensure_reserving(api, info, namespace, object, None).await
}

/// `ensure`, for a Service holding `cluster_ip` (reserved in the same transaction, as every
/// ClusterIP is).
async fn ensure_reserving(
    api: &Api,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    object: impl Serialize,
    cluster_ip: Option<std::net::Ipv4Addr>,
) -> Result<bool, BootstrapError> {
    let mut value = serde_json::to_value(object).map_err(|e| BootstrapError::Object {
        kind: info.kind,
        name: String::new(),
        message: e.to_string(),
    })?;
    let name = objects::meta_str(&value, "name").unwrap_or("").to_owned();
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(info.api_version()));
        map.insert("kind".into(), Value::String(info.kind.into()));
    }
    objects::prepare_create(info, &mut value, namespace).map_err(|e| BootstrapError::Object {
        kind: info.kind,
        name: name.clone(),
        message: e.message,
    })?;
    crate::defaults::apply(info.kind, &mut value);
    let mut reservations = Vec::new();
    if let Some(ip) = cluster_ip {
        crate::service_ips::set(&mut value, Some(ip));
        reservations.push(crate::service_ips::reservation_key(ip));
    }
    let bytes = serde_json::to_vec(&value).map_err(|e| BootstrapError::Object {
        kind: info.kind,
        name: name.clone(),
        message: e.to_string(),
    })?;
    let key = info.key(namespace.unwrap_or(""), &name);
    match api
        .storage
        .create_reserving(&key, bytes, &reservations)
        .await
    {
        Ok(_) => Ok(true),
        Err(StorageError::Exists) => Ok(false),
        Err(StorageError::Taken) => Err(BootstrapError::Object {
            kind: info.kind,
            name,
            message: format!(
                "its ClusterIP {} is held by another Service",
                cluster_ip.map(|ip| ip.to_string()).unwrap_or_default()
            ),
        }),
        Err(e) => Err(e.into()),
    }
}

fn served(group: &str, resource: &'static str) -> Result<&'static ResourceInfo, BootstrapError> {
    resources::lookup(group, "v1", resource).ok_or(BootstrapError::Object {
        kind: resource,
        name: String::new(),
        message: "not in the resource table".into(),
    })
}

/// Creates what is missing; how many objects were created.
pub async fn ensure_defaults(api: &Api) -> Result<usize, BootstrapError> {
    let mut created = 0;
    let namespaces = served("", "namespaces")?;
    for name in SYSTEM_NAMESPACES {
        let namespace = k8s_openapi::api::core::v1::Namespace {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some((*name).into()),
                ..Default::default()
            },
            ..Default::default()
        };
        created += usize::from(ensure(api, namespaces, None, namespace).await?);
    }
    // Aggregated roles are stored with their rules filled in, as the aggregation controller
    // would write them, so `kubectl get clusterrole admin -o yaml` shows what it grants.
    let mut roles = bootstrap_policy::cluster_roles();
    for aggregated in rbac::aggregate(&roles) {
        if let Some(slot) = roles
            .iter_mut()
            .find(|r| r.metadata.name == aggregated.metadata.name)
        {
            *slot = aggregated;
        }
    }
    let cluster_roles = served("rbac.authorization.k8s.io", "clusterroles")?;
    for role in roles {
        created += usize::from(ensure(api, cluster_roles, None, role).await?);
    }
    let bindings = served("rbac.authorization.k8s.io", "clusterrolebindings")?;
    for binding in bootstrap_policy::cluster_role_bindings() {
        created += usize::from(ensure(api, bindings, None, binding).await?);
    }
    // The system PriorityClasses, as kube-apiserver's scheduling post-start hook makes them.
    let priority_classes = served("scheduling.k8s.io", "priorityclasses")?;
    for (name, value, description) in crate::validation::SYSTEM_PRIORITY_CLASSES {
        let class = k8s_openapi::api::scheduling::v1::PriorityClass {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            value: i32::try_from(value).ok(),
            description: Some(description.into()),
            ..Default::default()
        };
        created += usize::from(ensure(api, priority_classes, None, class).await?);
    }
    // The `kubernetes` Service, on the first address of the service range (which the serving
    // certificate names), so in-cluster clients find the API where Kubernetes puts it.
    let services = served("", "services")?;
    let first = match api.config.service_ip_range.first_address() {
        std::net::IpAddr::V4(ip) => ip,
        std::net::IpAddr::V6(_) => {
            return Err(BootstrapError::Object {
                kind: "Service",
                name: "kubernetes".into(),
                message: "the service range is IPv4 only".into(),
            })
        }
    };
    let service = serde_json::json!({
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "sessionAffinity": "None",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                            "targetPort": api.config.api_port}]},
    });
    created +=
        usize::from(ensure_reserving(api, services, Some("default"), service, Some(first)).await?);
    Ok(created)
}

/// Every namespace has a `default` ServiceAccount, as kube-controller-manager's serviceaccount
/// controller keeps it (pods that name none run as it). This loop follows the namespaces in
/// the watch cache and creates what is missing; it runs in the API server until the
/// controllers of the control plane take it over.
pub async fn keep_default_service_accounts(api: std::sync::Arc<Api>) {
    let (Ok(namespaces), Ok(accounts)) = (
        api.cache_of("", "namespaces"),
        api.cache_of("", "serviceaccounts"),
    ) else {
        return;
    };
    loop {
        let mut subscription = match namespaces.subscribe("", None) {
            Ok(s) => s,
            Err(_) => {
                // Not listed yet.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut pending: Vec<std::sync::Arc<crate::cache::CacheEvent>> =
            std::mem::take(&mut subscription.initial);
        loop {
            for event in pending.drain(..) {
                if event.kind == crate::cache::EventKind::Deleted
                    || objects::meta_str(&event.object, "deletionTimestamp").is_some()
                {
                    continue;
                }
                let namespace = objects::name_of(&event.object).to_owned();
                if accounts
                    .get(&accounts.info.key(&namespace, "default"))
                    .is_some()
                {
                    continue;
                }
                let account = serde_json::json!({"metadata": {"name": "default"}});
                if let Err(e) = ensure(&api, accounts.info, Some(&namespace), account).await {
                    tracing::warn!(%namespace, error = %e, "creating the default ServiceAccount");
                }
            }
            match subscription.events.recv().await {
                Some(event) => pending.push(event),
                // Dropped as too slow, or the cache relisted: subscribe again.
                None => break,
            }
        }
    }
}
