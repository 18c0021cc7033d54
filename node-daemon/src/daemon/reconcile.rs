//! One pass of the reconcile loop: read the manifests and the cluster's objects, hand the
//! runtime its desired pods, and bring the kernel's service table in line.

use std::time::Instant;

use tokio::sync::watch;

use keel_proxy::{
    ebpf::counters::ServiceNames,
    service_table::{ServiceTable, TableChanges},
    tracker::{ChangeTracker, SourceId},
    ServiceProxy,
};
use keel_runtime::{self as runtime, DesiredPod, RuntimeConfig};

use crate::{
    cluster::Cluster,
    manifests::ManifestDir,
    metrics::{Metrics, SyncLabels},
};

/// What one reconcile did.
pub(super) struct Reconciled {
    /// False when the sync failed, so the caller retries (a full resync) after a backoff.
    pub ok: bool,
    /// The service table had changed and the proxy wrote it (or tried to): the work the sync
    /// limiter bounds.
    pub kernel_written: bool,
}

/// Reads the manifests and brings the kernel in line. Errors are logged and counted, never
/// fatal: a bad file keeps its last good state.
#[allow(clippy::too_many_arguments)]
pub(super) fn reconcile(
    manifests: Option<&mut ManifestDir>,
    cluster: Option<&mut Cluster>,
    tracker: &mut ChangeTracker,
    proxy: &mut dyn ServiceProxy,
    metrics: &Metrics,
    names: &ServiceNames,
    desired_pods: &watch::Sender<Option<Vec<DesiredPod>>>,
    pods: &RuntimeConfig,
) -> Reconciled {
    let unchanged = Reconciled {
        ok: true,
        kernel_written: false,
    };
    let mut no_manifests = ManifestDir::default();
    let (manifests, changed_files) = match manifests {
        Some(manifests) => {
            let Some(changed_files) = reload_manifests(manifests, metrics) else {
                return unchanged; // nothing to retry until the directory changes
            };
            (manifests, changed_files)
        }
        None => (&mut no_manifests, Vec::new()),
    };
    let cluster_changes = match cluster {
        Some(cluster) => {
            let intents = cluster.objects.desired_pods();
            let changes = cluster.objects.service_changes();
            let api_pods = intents.map(|intents| {
                cluster.refused.send_if_modified(|refused| {
                    let changed = *refused != intents.refused;
                    *refused = intents.refused;
                    changed
                });
                intents.run
            });
            let statics = static_pods(manifests);
            if api_pods.is_some() {
                cluster.statics.send_if_modified(|current| {
                    let changed = current.as_ref() != Some(&statics);
                    if changed {
                        *current = Some(statics.clone());
                    }
                    changed
                });
            }
            send_desired_pods(statics, api_pods, desired_pods);
            changes
        }
        None => {
            send_desired_pods(static_pods(manifests), Some(Vec::new()), desired_pods);
            Vec::new()
        }
    };
    // Read before the views: everything up to this change is in what is synced below.
    let pods_version = pods
        .endpoints_version
        .load(std::sync::atomic::Ordering::SeqCst);
    // A worker that panicked while holding the lock poisons it; the map it guards is only
    // ever changed by whole-entry inserts and removes, so it is still consistent. An empty
    // list instead would empty every selector Service on the node.
    let views = pods
        .views
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // The tracker is given what changed: the files read anew, the API objects the watches
    // saw change, and the slices of this node's pods (selectors of the manifests' Services
    // are resolved here; those of the API's Services by the EndpointSlice controller).
    let building = Instant::now();
    for file in changed_files {
        let (services, slices) = manifests.file_services_and_slices(&file);
        tracker.set_source(SourceId::File(file), services, slices);
    }
    for (source, services, slices) in cluster_changes {
        tracker.set_source(source, services, slices);
    }
    let pod_slices = runtime::endpoints::pod_endpoint_slices(manifests.selector_services(), &views);
    drop(views);
    tracker.set_source(SourceId::PodSlices, Vec::new(), pod_slices);
    let (update, skipped) = tracker.update();
    for skip in &skipped {
        tracing::warn!(object = %skip.object, "skipped: {}", skip.reason);
    }
    let Some(update) = update else {
        mark_endpoints_synced(pods, pods_version);
        return unchanged;
    };
    // `built`: the changed objects handed to the tracker, and the table brought up to them.
    let built = building.elapsed();
    // `took` is the proxy's own work (the kernel writes), not the bookkeeping after it.
    let started = Instant::now();
    let result = proxy.sync_changes(update.table, &update.changes);
    let took = started.elapsed();
    let unprogrammed = metrics.report_unprogrammed(proxy.unprogrammed());
    let synced = match result {
        Ok(stats) => {
            mark_endpoints_synced(pods, pods_version);
            update_names(names, update.table, &update.changes);
            metrics
                .syncs
                .get_or_create(&SyncLabels { result: "ok" })
                .inc();
            metrics
                .service_ports
                .set(update.table.services.len().saturating_sub(unprogrammed) as i64);
            metrics.backends.set(update.backends as i64);
            tracing::info!(
                service_ports = update.table.services.len(),
                backends = update.backends,
                changed = match &update.changes {
                    TableChanges::All => "all".to_string(),
                    TableChanges::Frontends(changed) => changed.len().to_string(),
                },
                written = stats.written,
                removed = stats.removed,
                built = ?built,
                took = ?took,
                "synced"
            );
            true
        }
        Err(error) => {
            metrics
                .syncs
                .get_or_create(&SyncLabels { result: "error" })
                .inc();
            tracing::error!("sync failed: {error}");
            // The next attempt resyncs the whole table, whatever the tracker last saw.
            tracker.invalidate();
            false
        }
    };
    metrics.sync_duration.observe(took.as_secs_f64());
    Reconciled {
        ok: synced,
        kernel_written: true,
    }
}

/// Brings the frontend → service name map (the per-service counters' labels) up to `table`,
/// touching only what changed.
fn update_names(names: &ServiceNames, table: &ServiceTable, changes: &TableChanges) {
    // A panicked reader poisons the lock; every change below is a whole-entry insert or
    // remove, so what it guards is still consistent.
    let mut names = names
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match changes {
        TableChanges::All => {
            *names = table
                .services
                .iter()
                .map(|(f, s)| (*f, s.name.clone()))
                .collect();
        }
        TableChanges::Frontends(changed) => {
            for frontend in changed {
                match table.services.get(frontend) {
                    Some(entry) => names.insert(*frontend, entry.name.clone()),
                    None => names.remove(frontend),
                };
            }
        }
    }
}

/// Re-reads the manifest directory and returns the files whose objects may have changed;
/// `None` when it cannot be read (the current state stays).
fn reload_manifests(
    manifests: &mut ManifestDir,
    metrics: &Metrics,
) -> Option<Vec<std::path::PathBuf>> {
    match manifests.reload() {
        Ok(reload) => {
            for (file, warning) in &reload.warnings {
                tracing::warn!("{}: {warning}", file.display());
            }
            for error in &reload.new_errors {
                tracing::error!("rejected manifest, keeping its last good version: {error}");
                metrics.manifest_errors.inc();
            }
            metrics
                .manifest_files_rejected
                .set(reload.rejected_files as i64);
            Some(reload.changed_files)
        }
        Err(error) => {
            tracing::error!("{error}; keeping the current state");
            metrics.manifest_errors.inc();
            None
        }
    }
}

/// Tells stopping pods that their endpoint changes up to `version` are in the kernel.
fn mark_endpoints_synced(pods: &RuntimeConfig, version: u64) {
    pods.endpoints_synced.send_if_modified(|synced| {
        let newer = version > *synced;
        if newer {
            *synced = version;
        }
        newer
    });
}

/// Hands the pods of the manifests and of the API server to the pod manager (only when they
/// changed). A pod named twice (same namespace and name) runs once: the first file wins, as
/// file order is stable, and a static pod wins over an API pod of its name. `api_pods` is
/// `None` until the API's pods have been listed: nothing is decided before then.
fn send_desired_pods(
    statics: Vec<DesiredPod>,
    api_pods: Option<Vec<DesiredPod>>,
    desired: &watch::Sender<Option<Vec<DesiredPod>>>,
) {
    let Some(api_pods) = api_pods else {
        return;
    };
    let mut pods = statics;
    let mut seen: std::collections::BTreeSet<(String, String)> = pods
        .iter()
        .map(|p| {
            (
                p.pod.metadata.namespace().to_owned(),
                p.pod.metadata.name.clone(),
            )
        })
        .collect();
    for pod in api_pods {
        let key = (
            pod.pod.metadata.namespace().to_owned(),
            pod.pod.metadata.name.clone(),
        );
        if !seen.insert(key.clone()) {
            tracing::warn!(
                "pod {}/{} from the API has the name of a static pod; not run",
                key.0,
                key.1
            );
            continue;
        }
        pods.push(pod);
    }
    desired.send_if_modified(|current| {
        if current.as_ref() == Some(&pods) {
            false
        } else {
            *current = Some(pods);
            true
        }
    });
}

/// The static pods of the manifests: a pod named twice (same namespace and name) runs once,
/// the first file's, as file order is stable.
fn static_pods(manifests: &ManifestDir) -> Vec<DesiredPod> {
    let mut seen = std::collections::BTreeSet::new();
    let mut pods = Vec::new();
    for (file, pod) in manifests.pods() {
        let key = (
            pod.metadata.namespace().to_owned(),
            pod.metadata.name.clone(),
        );
        if !seen.insert(key.clone()) {
            tracing::warn!(file = %file.display(), "pod {}/{} is already defined in another file; ignored", key.0, key.1);
            continue;
        }
        pods.push(DesiredPod::new(pod.clone(), file.to_owned()));
    }
    pods
}
