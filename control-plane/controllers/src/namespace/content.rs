//! Deleting what is in a namespace, kind by kind (kube's `namespacedResourcesDeleter`).
//!
//! The kinds come from discovery at every pass, as kube's controller asks for the server's
//! preferred namespaced resources each time: whatever keel serves, now or later, is emptied
//! without a list to keep in step here. Each kind is deleted as a collection when it supports
//! `deletecollection`, one object at a time otherwise, always with `propagationPolicy:
//! Background` (so that no `orphan` finalizer can hold an object back), then listed again to
//! see what is left.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams};
use kube::discovery::{verbs, Discovery, Scope};
use kube::Client;

use super::decide::{self, Leftovers, Pass};

/// A namespaced kind that supports `delete`, and what else it supports.
#[derive(Clone, Debug)]
struct Deletable {
    resource: ApiResource,
    list: bool,
    delete_collection: bool,
}

/// Method not allowed or not found: the kind does not offer the operation after all (kube
/// treats both alike).
fn unsupported(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 405 || status.is_not_found())
}

/// `{resource}.{group}`, as kube names a kind in the namespace's conditions.
fn resource_name(resource: &ApiResource) -> String {
    format!("{}.{}", resource.plural, resource.group)
}

/// A kind as Go prints a `GroupVersionResource`.
fn gvr(resource: &ApiResource) -> String {
    format!(
        "{}/{}, Resource={}",
        resource.group, resource.version, resource.plural
    )
}

/// The namespaced kinds the server serves and lets delete, in their preferred versions.
async fn discover(client: &Client) -> Result<Vec<Deletable>, kube::Error> {
    // Aggregated discovery is two requests; the per-group documents are the fallback kube-rs
    // recommends for servers without it.
    let discovery = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(discovery) => discovery,
        Err(error) => {
            tracing::debug!(%error, "aggregated discovery failed, asking group by group");
            Discovery::new(client.clone()).run().await?
        }
    };
    let mut deletable = Vec::new();
    for group in discovery.groups() {
        for (resource, capabilities) in group.recommended_resources() {
            if capabilities.scope != Scope::Namespaced
                || !capabilities.supports_operation(verbs::DELETE)
            {
                continue;
            }
            deletable.push(Deletable {
                list: capabilities.supports_operation(verbs::LIST),
                delete_collection: capabilities.supports_operation(verbs::DELETE_COLLECTION),
                resource,
            });
        }
    }
    Ok(deletable)
}

/// Deletes everything in `namespace`, deleted at `deleted_at`, and reports what is left
/// (`deleteAllContent`). A kind that fails does not stop the others.
pub(super) async fn delete_all(client: &Client, namespace: &str, deleted_at: Timestamp) -> Pass {
    let mut pass = Pass::default();
    let kinds = match discover(client).await {
        Ok(kinds) => kinds,
        Err(error) => {
            pass.discovery_error = Some(error.to_string());
            return pass;
        }
    };
    for kind in &kinds {
        let (leftovers, error) = delete_kind(client, kind, namespace, deleted_at).await;
        pass.add(&resource_name(&kind.resource), leftovers, error);
    }
    pass
}

/// Deletes the objects of one kind in `namespace` (`deleteAllContentForGroupVersionResource`).
async fn delete_kind(
    client: &Client,
    kind: &Deletable,
    namespace: &str,
    deleted_at: Timestamp,
) -> (Leftovers, Option<String>) {
    let resource = &kind.resource;
    // Pods get their grace period: their remaining objects are expected for that long.
    let estimate = if resource.group.is_empty() && resource.plural == "pods" {
        match pods_estimate(client, namespace, deleted_at).await {
            Ok(estimate) => estimate,
            Err(error) => {
                let error = format!("estimating the grace period of pods: {error}");
                return (Leftovers::default(), Some(error));
            }
        }
    } else {
        0
    };
    let with_estimate = Leftovers {
        estimate,
        ..Leftovers::default()
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    let mut deleted = false;
    if kind.delete_collection {
        match api
            .delete_collection(&DeleteParams::background(), &ListParams::default())
            .await
        {
            Ok(_) => deleted = true,
            Err(error) if unsupported(&error) => {}
            Err(error) => {
                let error = format!("deleting the collection of {}: {error}", gvr(resource));
                return (with_estimate, Some(error));
            }
        }
    }
    if !deleted && kind.list {
        if let Err(error) = delete_each(&api).await {
            let error = format!("deleting the objects of {}: {error}", gvr(resource));
            return (with_estimate, Some(error));
        }
    }
    if !kind.list {
        // Nothing to verify with.
        return (with_estimate, None);
    }
    let left: Vec<_> = match api.list_metadata(&ListParams::default()).await {
        Ok(list) => list.items.into_iter().map(|item| item.metadata).collect(),
        Err(error) if unsupported(&error) => return (with_estimate, None),
        Err(error) => {
            let error = format!("listing the remaining {}: {error}", gvr(resource));
            return (with_estimate, Some(error));
        }
    };
    let (leftovers, unexpected) = decide::leftovers(estimate, &left);
    let error = unexpected.then(|| {
        format!(
            "unexpected items still remain in namespace: {namespace} for gvr: {}",
            gvr(resource)
        )
    });
    (leftovers, error)
}

/// Lists the kind and deletes each object (`deleteEachItem`).
async fn delete_each(api: &Api<DynamicObject>) -> Result<(), kube::Error> {
    let list = match api.list_metadata(&ListParams::default()).await {
        Ok(list) => list,
        Err(error) if unsupported(&error) => return Ok(()),
        Err(error) => return Err(error),
    };
    for item in list.items {
        let name = item.metadata.name.unwrap_or_default();
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(error) if unsupported(&error) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// How much longer the namespace's pods may take to stop (`estimateGracefulTermination`).
async fn pods_estimate(
    client: &Client,
    namespace: &str,
    deleted_at: Timestamp,
) -> Result<i64, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods.list(&ListParams::default()).await?;
    let estimate = decide::pod_grace_estimate(&list.items);
    Ok(decide::estimate_left(
        estimate,
        deleted_at,
        Timestamp::now(),
    ))
}
