//! The scheduler without I/O: cluster events in, decisions out.
//!
//! [`Core`] owns the [`Cache`] and the [`SchedulingQueue`]; the loop that watches the API
//! server feeds it events and carries out its decisions (bind, or record why not), and the
//! in-process benchmark drives it directly. Keeping I/O out makes every decision testable
//! without a server and keeps the cycle free of locks.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::cache::Cache;
use crate::config::SchedulerConfig;
use crate::metrics::{Metrics, PLUGIN_METRICS_SAMPLE_PERCENT};
use crate::node_info::pod_key;
use crate::nominator::{nominated_node, Nominator};
use crate::preemption::{self, NoPreemption};
use crate::queue::{QueueCounts, QueuedPod, SchedulingQueue};
use crate::schedule::{schedule_pod, Cursor, ScheduleError, Timing};

/// The scheduler name of pods that name none (kube's default).
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// What one scheduling attempt decided.
#[derive(Debug)]
pub enum Outcome {
    /// The pod is assumed on `node`; the caller binds it and reports back with
    /// [`Core::binding_failed`] if the API server refuses. `cycle_started` is when the
    /// attempt began: the caller records the attempt's duration once the binding is done, as
    /// kube-scheduler's `scheduler_scheduling_attempt_duration_seconds` counts a scheduled
    /// pod's binding in its attempt.
    Assumed {
        pod: QueuedPod,
        node: String,
        profile: String,
        cycle_started: Instant,
    },
    /// No node fits; `message` is kube-scheduler's `FailedScheduling` message.
    /// `clear_nominated_node`: the pod was nominated to a node and no longer is (preemption
    /// found no candidate anywhere, or there are no nodes): the caller clears its
    /// `status.nominatedNodeName` with the condition, as kube's `updatePod` does.
    Unschedulable {
        pod: QueuedPod,
        message: String,
        profile: String,
        clear_nominated_node: bool,
    },
    /// No node fits, but evicting `victims` from `node` makes room: the caller nominates the
    /// node on the pod (`status.nominatedNodeName`) and deletes the victims; the pod waits in
    /// the unschedulable pool until their deletion moves it back.
    Preempting {
        pod: QueuedPod,
        message: String,
        node: String,
        victims: Vec<Pod>,
        profile: String,
    },
    /// A plugin failed; the pod is retried after its backoff. `clear_nominated_node` as for
    /// [`Outcome::Unschedulable`] (kube clears the nomination on errors too).
    Error {
        pod: QueuedPod,
        message: String,
        profile: String,
        clear_nominated_node: bool,
    },
}

/// Why the API server refused a binding, as the caller classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindFailure {
    /// The pod is gone or was bound by someone else: nothing to retry.
    Gone,
    /// Anything else: the pod is pending again, after its backoff.
    Retry,
}

pub struct Core {
    config: SchedulerConfig,
    cache: Cache,
    queue: SchedulingQueue,
    /// Pending pods that preemption made room for, whose room other pods must leave alone.
    nominator: Nominator,
    cursor: Cursor,
    metrics: Option<Arc<Metrics>>,
    /// Cycles so far: every tenth times its plugins one by one
    /// ([`PLUGIN_METRICS_SAMPLE_PERCENT`]). kube draws at random; a counter samples the same
    /// share, and makes which cycle is timed predictable in tests.
    cycles: u64,
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status
            .as_ref()
            .and_then(|status| status.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.node_name.as_deref())
        .filter(|name| !name.is_empty())
}

fn scheduler_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.scheduler_name.as_deref())
        .filter(|name| !name.is_empty())
        .unwrap_or(DEFAULT_SCHEDULER_NAME)
}

impl Core {
    pub fn new(config: SchedulerConfig, metrics: Option<Arc<Metrics>>, seed: u64) -> Core {
        let queue = SchedulingQueue::new(config.pod_initial_backoff, config.pod_max_backoff);
        Core {
            config,
            cache: Cache::new(),
            queue,
            nominator: Nominator::new(),
            cursor: Cursor::new(seed),
            metrics,
            cycles: 0,
        }
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    pub fn queue_counts(&self) -> QueueCounts {
        self.queue.counts()
    }

    pub fn nominator(&self) -> &Nominator {
        &self.nominator
    }

    /// Whether a pod is pending in the queue.
    pub fn is_queued(&self, key: &str) -> bool {
        self.queue.contains(key)
    }

    /// A pod was added or changed. Bound pods are counted on their node; pending pods of one
    /// of this scheduler's profiles are queued; pods that finished or are being deleted
    /// before they were placed are dropped.
    pub fn upsert_pod(&mut self, pod: Pod, now: Instant) {
        let key = pod_key(&pod);
        if is_terminal(&pod) {
            self.delete_pod(&key, now);
            return;
        }
        if node_name(&pod).is_some() {
            self.queue.remove(&key);
            self.nominator.remove(&key);
            if let Err(error) = self.cache.upsert_bound_pod(pod) {
                tracing::warn!(pod = %key, %error, "a bound pod the scheduler cannot count");
            }
            return;
        }
        if self.cache.is_assumed(&key) {
            // The binding is on its way; this is an older version of the pod.
            return;
        }
        if pod.metadata.deletion_timestamp.is_some()
            || self.config.profile(scheduler_name(&pod)).is_none()
        {
            self.queue.remove(&key);
            self.nominator.remove(&key);
        } else {
            self.nominator.update(self.queue.pod(&key), &pod);
            self.queue.add_or_update(pod, now);
        }
    }

    /// A pod was deleted: what it held on its node is free, which may let pending pods fit.
    pub fn delete_pod(&mut self, key: &str, now: Instant) {
        self.queue.remove(key);
        self.nominator.remove(key);
        if self.cache.remove_pod(key).is_some() {
            self.queue.move_all_to_active_or_backoff(now);
        }
    }

    /// A node was added or changed: pending pods may fit now.
    pub fn upsert_node(&mut self, node: Node, now: Instant) {
        let name = node.metadata.name.clone().unwrap_or_default();
        match self.cache.upsert_node(node) {
            Ok(()) => self.queue.move_all_to_active_or_backoff(now),
            Err(error) => tracing::warn!(node = %name, %error, "a node the scheduler cannot use"),
        }
    }

    pub fn delete_node(&mut self, name: &str) {
        self.cache.remove_node(name);
    }

    /// After a relist: forgets the pods the list no longer holds (deleted while the watch was
    /// down) — except assumed ones, whose binding may still be in flight.
    pub fn retain_pods(&mut self, listed: &HashSet<String>, now: Instant) {
        let mut gone = Vec::new();
        for node in self.cache.nodes() {
            for pod in &node.pods {
                let key = pod_key(pod);
                if !listed.contains(&key) && !self.cache.is_assumed(&key) {
                    gone.push(key);
                }
            }
        }
        for key in gone {
            self.delete_pod(&key, now);
        }
    }

    /// After a relist: forgets the nodes the list no longer holds.
    pub fn retain_nodes(&mut self, listed: &HashSet<String>) {
        let gone: Vec<String> = self
            .cache
            .nodes()
            .iter()
            .map(|node| node.name().to_string())
            .filter(|name| !listed.contains(name))
            .collect();
        for name in gone {
            self.cache.remove_node(&name);
        }
    }

    /// Periodic housekeeping: pods that sat unschedulable for five minutes are retried.
    pub fn tick(&mut self, now: Instant) {
        self.queue.flush_unschedulable_leftover(now);
        self.update_gauges();
    }

    /// When the earliest backoff ends.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.queue.next_backoff_expiry()
    }

    /// Schedules the next pending pod, if there is one ready.
    pub fn schedule_next(&mut self, now: Instant) -> Option<Outcome> {
        let queued = self.queue.pop(now)?;
        let started = Instant::now();
        let profile_name = scheduler_name(&queued.pod).to_string();
        let Some(profile) = self.config.profile(&profile_name) else {
            // The profile list is fixed at start, and upsert_pod queues only pods it names.
            self.queue.remove(&queued.key);
            return None;
        };
        let percentage = profile
            .percentage_of_nodes_to_score
            .unwrap_or(self.config.percentage_of_nodes_to_score);
        let sampled = self
            .cycles
            .is_multiple_of(100 / PLUGIN_METRICS_SAMPLE_PERCENT);
        self.cycles = self.cycles.wrapping_add(1);
        let timing = self.metrics.as_deref().map(|metrics| Timing {
            metrics,
            profile: &profile_name,
            plugins: sampled,
        });
        let decision = schedule_pod(
            profile,
            percentage,
            &queued.pod,
            self.cache.view(),
            &self.nominator,
            &mut self.cursor,
            timing,
        );
        // The nomination the pod had going in: kept only while preemption still stands by it.
        let nominated = nominated_node(&queued.pod, &self.nominator).map(str::to_owned);
        let outcome = match decision {
            Ok(result) => {
                let mut assumed = Pod::clone(&queued.pod);
                assumed.spec.get_or_insert_default().node_name = Some(result.node.clone());
                match self.cache.assume(assumed, &result.node) {
                    Ok(()) => {
                        self.queue.scheduled(&queued.key);
                        // Its room is counted on the node now, nominated or not.
                        self.nominator.remove(&queued.key);
                        Outcome::Assumed {
                            pod: queued,
                            node: result.node,
                            profile: profile_name,
                            cycle_started: started,
                        }
                    }
                    Err(error) => {
                        self.queue.failed(&queued.key, now);
                        Outcome::Error {
                            pod: queued,
                            message: error.to_string(),
                            profile: profile_name,
                            clear_nominated_node: false,
                        }
                    }
                }
            }
            Err(ScheduleError::Unschedulable(mut fit)) => {
                self.queue.unschedulable(&queued.key, now);
                let start = self.cursor.next_start;
                let post_filter = Instant::now();
                let chosen = preemption::preempt(
                    profile,
                    &queued.pod,
                    self.cache.nodes(),
                    &fit,
                    start,
                    nominated.as_deref(),
                );
                if let Some(metrics) = &self.metrics {
                    let status = if chosen.is_ok() {
                        "Success"
                    } else {
                        "Unschedulable"
                    };
                    metrics.extension_point(
                        "PostFilter",
                        status,
                        &profile_name,
                        post_filter.elapsed(),
                    );
                }
                match chosen {
                    Ok(chosen) => {
                        // Held at once, as kube does: the status write comes back later, and
                        // the room the victims leave must not go to a pod popped meanwhile.
                        self.nominator.nominate(&queued.pod, &chosen.node);
                        Outcome::Preempting {
                            pod: queued,
                            message: fit.message(),
                            node: chosen.node,
                            victims: chosen.victims,
                            profile: profile_name,
                        }
                    }
                    Err(post_filter) => {
                        // Not eligible: the pod waits for the room it already made, nominated.
                        // No candidates: whatever it was nominated to is stale.
                        let stale = matches!(post_filter, NoPreemption::NoCandidates(_))
                            && nominated.is_some();
                        if stale {
                            self.nominator.remove(&queued.key);
                        }
                        fit.post_filter_message = Some(post_filter.message().to_string());
                        Outcome::Unschedulable {
                            pod: queued,
                            message: fit.message(),
                            profile: profile_name,
                            clear_nominated_node: stale,
                        }
                    }
                }
            }
            // kube's `clearNominatedNode` for both: no preemption ran to stand by the node.
            Err(error @ ScheduleError::NoNodes) => {
                self.queue.unschedulable(&queued.key, now);
                self.nominator.remove(&queued.key);
                Outcome::Unschedulable {
                    pod: queued,
                    message: error.to_string(),
                    profile: profile_name,
                    clear_nominated_node: nominated.is_some(),
                }
            }
            Err(error @ ScheduleError::Plugin { .. }) => {
                self.queue.failed(&queued.key, now);
                self.nominator.remove(&queued.key);
                Outcome::Error {
                    pod: queued,
                    message: error.to_string(),
                    profile: profile_name,
                    clear_nominated_node: nominated.is_some(),
                }
            }
        };
        if let Some(metrics) = &self.metrics {
            let (result, profile) = match &outcome {
                // Recorded by whoever binds it, when the binding is done.
                Outcome::Assumed { .. } => return Some(outcome),
                Outcome::Unschedulable { profile, .. } | Outcome::Preempting { profile, .. } => {
                    ("unschedulable", profile)
                }
                Outcome::Error { profile, .. } => ("error", profile),
            };
            metrics.attempt(result, profile, started.elapsed());
        }
        Some(outcome)
    }

    /// The API server refused the binding of an assumed pod.
    pub fn binding_failed(&mut self, pod: QueuedPod, failure: BindFailure, now: Instant) {
        self.cache.forget(&pod.key);
        // The node it was assumed on has room again.
        self.queue.move_all_to_active_or_backoff(now);
        if failure == BindFailure::Retry {
            self.queue.requeue_failed(pod, now);
        }
    }

    /// Counting the queue walks it: done on the loop's periodic tick, not per event.
    fn update_gauges(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.pending(self.queue.counts());
        }
    }
}

#[cfg(test)]
mod tests;
