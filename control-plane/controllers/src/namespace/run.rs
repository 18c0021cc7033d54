//! The namespace controller as a client of the API: a watch of namespaces, a work queue of
//! names, and workers that empty and finalize one terminating namespace at a time.
//!
//! A sync reads the namespace live (several controllers edit a terminating namespace), marks
//! it `Terminating`, deletes its content ([`super::content`]), writes the conditions, and once
//! nothing is left removes the `kubernetes` finalizer through `namespaces/{name}/finalize`;
//! the API server then deletes the namespace. Content still going away brings the namespace
//! back after half its estimate; a failure, with the queue's backoff capped at a minute.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::Client;

use super::decide::{self, Pass};
use super::{content, FINALIZER_KUBERNETES, PHASE_TERMINATING};
use crate::workqueue::{backoff, ControllerHandle, WorkQueue, WorkQueueMetrics};

/// Workers syncing namespaces at once (kube-controller-manager's
/// `--concurrent-namespace-syncs`).
pub const DEFAULT_WORKERS: usize = 10;
/// The queue's name in the `workqueue_*` metrics (kube's).
pub const QUEUE_NAME: &str = "namespace";
/// How long a namespace event waits before its namespace is synced (kube's
/// `namespaceDeletionGracePeriod`): other API servers see the deletion and refuse new content,
/// and creations racing with it land, before the namespace is emptied.
pub const DELETION_GRACE_PERIOD: Duration = Duration::from_secs(5);
/// The longest delay between failed syncs (kube's namespace queue caps its backoff there,
/// not at the default 1000 s).
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);
/// Writes retried after a conflict, each on a fresh read.
const UPDATE_ATTEMPTS: usize = 5;

/// Options of [`start`].
#[derive(Clone)]
pub struct Options {
    pub workers: usize,
    /// How long after an event a terminating namespace is synced.
    pub deletion_grace_period: Duration,
    /// Where the queue reports its metrics; unregistered ones when `None`.
    pub metrics: Option<Arc<WorkQueueMetrics>>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            workers: DEFAULT_WORKERS,
            deletion_grace_period: DELETION_GRACE_PERIOD,
            metrics: None,
        }
    }
}

/// A failed sync; the namespace is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("{operation} namespace {namespace}: {source}")]
    Request {
        operation: &'static str,
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("namespace {0} was replaced (its uid changed) while it was being deleted")]
    UidChanged(String),
    #[error("deleting the content of namespace {namespace}: {message}")]
    Content { namespace: String, message: String },
}

struct Context {
    client: Client,
    queue: Arc<WorkQueue>,
}

/// Starts the controller on the current tokio runtime.
pub fn start(client: Client, options: Options) -> ControllerHandle {
    let queue = WorkQueue::shared(QUEUE_NAME, options.metrics.as_deref());
    let context = Arc::new(Context {
        client,
        queue: queue.clone(),
    });
    let mut tasks = vec![tokio::spawn(watch_namespaces(
        context.clone(),
        options.deletion_grace_period,
    ))];
    for _ in 0..options.workers.max(1) {
        tasks.push(tokio::spawn(worker(context.clone())));
    }
    ControllerHandle::new(vec![queue], tasks)
}

/// Queues every namespace seen with a `deletionTimestamp`, after `delay`.
async fn watch_namespaces(context: Arc<Context>, delay: Duration) {
    let api: Api<Namespace> = Api::all(context.client.clone());
    let mut stream =
        crate::informer::watch_events(api, watcher::Config::default(), "watching namespaces");
    while let Some(event) = stream.next().await {
        let namespace = match event {
            Event::Apply(namespace) | Event::InitApply(namespace) => namespace,
            Event::Delete(_) | Event::Init | Event::InitDone => continue,
        };
        if namespace.metadata.deletion_timestamp.is_none() {
            continue;
        }
        if let Some(name) = &namespace.metadata.name {
            context.queue.add_after(name, delay);
        }
    }
}

async fn worker(context: Arc<Context>) {
    while let Some(name) = context.queue.get().await {
        match sync(&context, &name).await {
            Ok(None) => context.queue.forget(&name),
            Ok(Some(after)) => {
                tracing::debug!(%name, ?after, "content remaining in namespace");
                context.queue.forget(&name);
                context.queue.add_after(&name, after);
            }
            Err(error) => {
                tracing::warn!(%name, %error, "deleting namespace");
                if backoff(context.queue.num_requeues(&name)) >= MAX_RETRY_DELAY {
                    context.queue.add_after(&name, MAX_RETRY_DELAY);
                } else {
                    context.queue.add_rate_limited(&name);
                }
            }
        }
        context.queue.done(&name);
    }
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.is_not_found())
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.is_conflict())
}

/// Maps a failed request on the namespace `name`.
fn failed<'a>(
    operation: &'static str,
    name: &'a str,
) -> impl FnOnce(kube::Error) -> NamespaceError + 'a {
    move |source| NamespaceError::Request {
        operation,
        namespace: name.to_string(),
        source,
    }
}

/// One sync of the namespace `name` (kube's `namespacedResourcesDeleter.Delete`): `None` when
/// done (or nothing to do), the delay after which to look again while content is going away.
async fn sync(context: &Context, name: &str) -> Result<Option<Duration>, NamespaceError> {
    let api: Api<Namespace> = Api::all(context.client.clone());
    let Some(namespace) = api.get_opt(name).await.map_err(failed("getting", name))? else {
        return Ok(None);
    };
    let Some(deleted_at) = namespace.metadata.deletion_timestamp.clone() else {
        return Ok(None);
    };
    let Some(namespace) = mark_terminating(&api, name, namespace).await? else {
        return Ok(None);
    };
    // Finalized by this controller already (or never its to finalize): other finalizers are
    // other controllers' business.
    if !decide::has_finalizer(&namespace, FINALIZER_KUBERNETES) {
        return Ok(None);
    }
    let pass = content::delete_all(&context.client, name, deleted_at.0).await;
    let namespace = write_conditions(&api, name, namespace, &pass).await;
    if let Some(message) = pass.error_message() {
        return Err(NamespaceError::Content {
            namespace: name.to_string(),
            message,
        });
    }
    if pass.estimate > 0 {
        return Ok(Some(decide::requeue_after(pass.estimate)));
    }
    finalize(&api, name, namespace).await?;
    tracing::info!(%name, "namespace emptied and finalized");
    Ok(None)
}

/// Reads the namespace again after a conflict: `None` once it is gone; an error if another
/// namespace took its name.
async fn refetch(
    api: &Api<Namespace>,
    name: &str,
    previous: &Namespace,
) -> Result<Option<Namespace>, NamespaceError> {
    let Some(current) = api.get_opt(name).await.map_err(failed("getting", name))? else {
        return Ok(None);
    };
    if current.metadata.uid != previous.metadata.uid {
        return Err(NamespaceError::UidChanged(name.to_string()));
    }
    Ok(Some(current))
}

/// Sets `status.phase: Terminating` unless it is set (`updateNamespaceStatusFunc`); `None`
/// once the namespace is gone.
async fn mark_terminating(
    api: &Api<Namespace>,
    name: &str,
    namespace: Namespace,
) -> Result<Option<Namespace>, NamespaceError> {
    let mut current = namespace;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let phase = current
            .status
            .as_ref()
            .and_then(|status| status.phase.as_deref());
        if current.metadata.deletion_timestamp.is_none() || phase == Some(PHASE_TERMINATING) {
            return Ok(Some(current));
        }
        let mut terminating = current.clone();
        terminating
            .status
            .get_or_insert_with(Default::default)
            .phase = Some(PHASE_TERMINATING.to_string());
        match api
            .replace_status(name, &PostParams::default(), &terminating)
            .await
        {
            Ok(written) => return Ok(Some(written)),
            Err(error) if is_not_found(&error) => return Ok(None),
            Err(error) if is_conflict(&error) && attempt < UPDATE_ATTEMPTS => {
                let fresh = refetch(api, name, &current).await?;
                let Some(fresh) = fresh else {
                    return Ok(None);
                };
                current = fresh;
            }
            Err(error) => return Err(failed("marking terminating", name)(error)),
        }
    }
}

/// Writes the conditions `pass` implies when they changed; a failed write is only logged, as
/// kube does, the next pass writes them again. Returns the namespace as last known.
async fn write_conditions(
    api: &Api<Namespace>,
    name: &str,
    namespace: Namespace,
    pass: &Pass,
) -> Namespace {
    let mut updated = namespace.clone();
    let status = updated.status.get_or_insert_with(Default::default);
    if !decide::update_conditions(status, pass, Timestamp::now()) {
        return namespace;
    }
    match api
        .replace_status(name, &PostParams::default(), &updated)
        .await
    {
        Ok(written) => written,
        Err(error) => {
            tracing::warn!(%name, %error, "updating the conditions of namespace");
            namespace
        }
    }
}

/// Removes the `kubernetes` finalizer from `spec.finalizers` through the `finalize`
/// subresource (`finalizeNamespace`). The whole namespace is sent, status included: kube's
/// finalize takes only `spec.finalizers` from it, and a server that took more keeps the rest
/// as it is.
async fn finalize(
    api: &Api<Namespace>,
    name: &str,
    namespace: Namespace,
) -> Result<(), NamespaceError> {
    let mut current = namespace;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut finalizing = current.clone();
        let finalizers = current
            .spec
            .as_ref()
            .and_then(|spec| spec.finalizers.as_deref())
            .unwrap_or_default();
        finalizing
            .spec
            .get_or_insert_with(Default::default)
            .finalizers = Some(decide::finalizers_without(finalizers, FINALIZER_KUBERNETES));
        match api
            .replace_subresource("finalize", name, &PostParams::default(), &finalizing)
            .await
        {
            Ok(_) => return Ok(()),
            // Finalized and deleted by someone else.
            Err(error) if is_not_found(&error) => return Ok(()),
            Err(error) if is_conflict(&error) && attempt < UPDATE_ATTEMPTS => {
                let fresh = refetch(api, name, &current).await?;
                let Some(fresh) = fresh else {
                    return Ok(());
                };
                current = fresh;
            }
            Err(error) => return Err(failed("finalizing", name)(error)),
        }
    }
}
