//! What the controllers' watch loops share beyond kube-rs' reflector.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::runtime::reflector::{Lookup, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};

/// The events of a watch of `api`, with kube-rs' default backoff. An error is logged under
/// `what` and skipped: the watcher relists and reconnects by itself, so a controller's loop
/// sees only events.
pub(crate) fn watch_events<K>(
    api: Api<K>,
    config: watcher::Config,
    what: &'static str,
) -> BoxStream<'static, watcher::Event<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher::watcher(api, config)
        .default_backoff()
        .filter_map(move |event| async move {
            match event {
                Ok(event) => Some(event),
                Err(error) => {
                    tracing::warn!(%error, "{what}");
                    None
                }
            }
        })
        .boxed()
}

/// Calls the handlers a relist implies (as client-go's `Replace`): an update for what was
/// cached and is listed, an add for what is new, a delete for what is gone.
pub(crate) fn relisted<K>(
    before: Vec<Arc<K>>,
    after: &[Arc<K>],
    mut updated: impl FnMut(&K, &K),
    mut added: impl FnMut(&K),
    mut deleted: impl FnMut(&K),
) where
    K: Lookup<DynamicType = ()> + Clone + 'static,
{
    let mut before: HashMap<ObjectRef<K>, Arc<K>> = before
        .into_iter()
        .map(|object| (ObjectRef::from_obj(&*object), object))
        .collect();
    for current in after {
        match before.remove(&ObjectRef::from_obj(&**current)) {
            Some(old) => updated(&old, current),
            None => added(current),
        }
    }
    for gone in before.values() {
        deleted(gone);
    }
}

/// One wait for a controller's caches to be listed, shared by all its tasks (kube's
/// `WaitForCacheSync`, once per controller).
///
/// kube-runtime's `Store::wait_until_ready` wakes only one of several tasks waiting on a store
/// at once (its `DelayedInit` polls one oneshot receiver, which keeps the last waker only): a
/// controller's other workers would wait forever — the node lifecycle controller's monitor
/// never started. The first task to arrive waits on the stores; the others wait for it.
#[derive(Debug, Default)]
pub struct CachesSynced(tokio::sync::OnceCell<bool>);

impl CachesSynced {
    /// Runs `wait` once (it says whether every cache was listed; false means a watch task is
    /// gone and the controller is stopping) and gives every caller its answer.
    pub async fn wait<F>(&self, wait: impl FnOnce() -> F) -> bool
    where
        F: std::future::Future<Output = bool>,
    {
        *self.0.get_or_init(wait).await
    }
}

#[cfg(test)]
mod caches_synced_tests {
    use super::*;

    /// Five tasks wait on one store at once; all of them go on once it is listed.
    #[tokio::test]
    async fn every_waiting_task_goes_on_once_the_caches_are_listed() {
        use kube::runtime::{reflector, watcher};
        let (store, mut writer) = reflector::store::<k8s_openapi::api::core::v1::Node>();
        let synced = std::sync::Arc::new(CachesSynced::default());
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let (store, synced) = (store.clone(), synced.clone());
                tokio::spawn(async move {
                    synced
                        .wait(|| async { store.wait_until_ready().await.is_ok() })
                        .await
                })
            })
            .collect();
        tokio::task::yield_now().await;
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        for task in tasks {
            let done = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
            assert!(matches!(done, Ok(Ok(true))), "a task was left waiting");
        }
    }
}
