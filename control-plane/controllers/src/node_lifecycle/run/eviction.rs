//! The taint manager (kube's `tainteviction` controller): which pods on NoExecute-tainted
//! nodes are due for eviction, the timed queue of their keys, and the workers that delete
//! them — with its `TaintManagerEviction` events.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::reflector::ObjectRef;

use super::{taints_of, Context, EVICTION_PERIOD};
use crate::node_lifecycle::events;
use crate::node_lifecycle::taints::{self, Eviction};

fn pod_key(pod: &Pod) -> String {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    format!("{namespace}/{name}")
}

/// The eviction of `pod` given its node's current taints; `None` for a pod not bound, being
/// deleted, or on an unknown node.
fn pod_eviction(context: &Context, pod: &Pod, now: Timestamp) -> Option<Eviction> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let node_name = pod.spec.as_ref()?.node_name.as_deref()?;
    let node = context.nodes.get(&ObjectRef::new(node_name))?;
    let taints = taints_of(&node);
    let mut state = context.state();
    if state.all_disrupted {
        return None;
    }
    // For taints without `timeAdded`: the first time this controller saw them.
    let first_seen = taints::no_execute_taints(taints)
        .iter()
        .filter(|taint| taint.time_added.is_none())
        .map(|taint| {
            *state
                .first_seen
                .entry((node_name.to_string(), taint.key.clone()))
                .or_insert(now)
        })
        .max()
        .unwrap_or(now);
    Some(taints::eviction(pod, taints, first_seen, now))
}

/// Queues every pod due for eviction now or later (the taint manager's timed workers).
pub(super) async fn evictions(context: Arc<Context>) {
    if !context.ready().await {
        return;
    }
    let mut ticker = tokio::time::interval(EVICTION_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The pods with an eviction pending at the last pass: one whose eviction is called off
    // gets kube's cancellation event (`cancelWorkWithEvent`).
    let mut pending: HashSet<String> = HashSet::new();
    loop {
        ticker.tick().await;
        let now = Timestamp::now();
        let mut still_pending = HashSet::new();
        for pod in context.pods.state() {
            let at = match pod_eviction(&context, &pod, now) {
                Some(Eviction::At(at)) => at,
                Some(Eviction::Keep) => {
                    let key = pod_key(&pod);
                    if pending.contains(&key) {
                        let involved = keel_events::reference(&*pod);
                        events::cancelling_deletion(&key)
                            .record(&context.eviction_recorder, &involved);
                    }
                    continue;
                }
                None => continue,
            };
            let key = pod_key(&pod);
            still_pending.insert(key.clone());
            let wait = now.duration_until(at);
            match Duration::try_from(wait) {
                Ok(delay) if !delay.is_zero() => context.queue.add_after(&key, delay),
                // Due, or past due.
                _ => context.queue.add(&key),
            }
        }
        pending = still_pending;
    }
}

pub(super) async fn worker(context: Arc<Context>) {
    if !context.ready().await {
        return;
    }
    while let Some(key) = context.queue.get().await {
        match evict(&context, &key).await {
            Ok(()) => context.queue.forget(&key),
            Err(error) => {
                tracing::warn!(pod = %key, %error, "evicting pod");
                context.queue.add_rate_limited(&key);
            }
        }
        context.queue.done(&key);
    }
}

/// Deletes the pod `key` if it is still due (its node's taints may have gone meanwhile).
async fn evict(context: &Context, key: &str) -> Result<(), kube::Error> {
    let Some((namespace, name)) = key.split_once('/') else {
        return Ok(());
    };
    let Some(pod) = context.pods.get(&ObjectRef::new(name).within(namespace)) else {
        return Ok(());
    };
    let now = Timestamp::now();
    match pod_eviction(context, &pod, now) {
        Some(Eviction::At(at)) if at <= now => {}
        _ => return Ok(()),
    }
    tracing::info!("TaintManagerEviction: Marking for deletion Pod {key}");
    events::marking_for_deletion(key)
        .record(&context.eviction_recorder, &keel_events::reference(&*pod));
    let params = DeleteParams {
        // Only this pod: not a new one that took its name meanwhile.
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let api: Api<Pod> = Api::namespaced(context.client.clone(), namespace);
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        // Gone already, or replaced by a namesake: nothing to evict.
        Err(kube::Error::Api(status)) if status.is_not_found() || status.is_conflict() => Ok(()),
        Err(error) => Err(error),
    }
}
