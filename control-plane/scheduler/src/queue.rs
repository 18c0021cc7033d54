//! The scheduling queue: which pending pod is tried next (kube-scheduler's
//! `internal/queue/scheduling_queue.go`).
//!
//! Four places a pending pod can wait:
//! - **gated**: the pod has `spec.schedulingGates` (kube's SchedulingGates PreEnqueue plugin):
//!   it is never tried until an update removes its last gate, and then goes to active;
//! - **active**: ready to be tried, highest `spec.priority` first, then the earliest arrival;
//! - **backoff**: failed recently; waits `initial × 2^(attempts-1)`, at most `max`, so one
//!   unschedulable pod does not spin the scheduler;
//! - **unschedulable**: no node fits and nothing has changed since; moved back (to backoff, or
//!   straight to active once its backoff has passed) when a cluster event could help — a node
//!   added or changed, a pod deleted — or after five minutes regardless.
//!
//! A pod being scheduled is *in flight*. If a cluster event arrives during its cycle, a
//! failure sends it to backoff rather than to the unschedulable pool: the event it would wait
//! for has already happened.
//!
//! Heaps use lazy deletion: an entry records the sequence number of its live heap item, and
//! stale items are skipped when they surface.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use crate::node_info::pod_key;

/// How long a pod stays in the unschedulable pool without any event before it is tried again
/// (kube-scheduler's `podMaxInUnschedulablePodsDuration`).
pub const MAX_IN_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);

/// A pending pod as the queue hands it out.
#[derive(Clone, Debug)]
pub struct QueuedPod {
    pub key: String,
    /// Shared with the queue's entry: handing a pod to a cycle copies a pointer, not the
    /// object (a deep copy of a Pod was a large part of a cycle on SchedulingBasic).
    pub pod: Arc<Pod>,
    /// Scheduling attempts so far, this one included once popped.
    pub attempts: u32,
    /// When the pod first entered the queue (for the end-to-end scheduling latency).
    pub initial: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// Held by scheduling gates; in no heap.
    Gated,
    Active,
    Backoff(Instant),
    Unschedulable(Instant),
    /// Being scheduled; `move_cycle` is the queue's move counter when it was popped.
    InFlight {
        move_cycle: u64,
    },
}

#[derive(Debug)]
struct Entry {
    info: QueuedPod,
    place: Place,
    /// The sequence number of the pod's live heap item (active or backoff).
    seq: u64,
    /// When the last attempt failed (the backoff counts from there).
    failed_at: Option<Instant>,
}

#[derive(Debug, PartialEq, Eq)]
struct ActiveItem {
    priority: i32,
    seq: u64,
    key: String,
}

impl Ord for ActiveItem {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap pops the greatest: higher priority, then the earlier arrival.
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for ActiveItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// How many pods wait where (kube-scheduler's `scheduler_pending_pods{queue}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub gated: usize,
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
}

#[derive(Debug)]
pub struct SchedulingQueue {
    initial_backoff: Duration,
    max_backoff: Duration,
    entries: HashMap<String, Entry>,
    active: BinaryHeap<ActiveItem>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    seq: u64,
    move_cycle: u64,
}

/// Whether the pod waits for its scheduling gates to be removed.
pub fn is_gated(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.scheduling_gates.as_ref())
        .is_some_and(|gates| !gates.is_empty())
}

fn priority(pod: &Pod) -> i32 {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.priority)
        .unwrap_or(0)
}

impl SchedulingQueue {
    pub fn new(initial_backoff: Duration, max_backoff: Duration) -> SchedulingQueue {
        SchedulingQueue {
            initial_backoff,
            max_backoff: max_backoff.max(initial_backoff),
            entries: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            seq: 0,
            move_cycle: 0,
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The version of a queued pod the queue holds.
    pub fn pod(&self, key: &str) -> Option<&Pod> {
        self.entries.get(key).map(|entry| entry.info.pod.as_ref())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A new pending pod, or a newer version of one already queued. An update to a pod in the
    /// unschedulable pool may have made it schedulable (a toleration added, a request
    /// lowered): it is moved back. A gated pod waits among the gated until an update removes
    /// its last gate.
    pub fn add_or_update(&mut self, pod: Pod, now: Instant) {
        let key = pod_key(&pod);
        let gated = is_gated(&pod);
        let Some(entry) = self.entries.get_mut(&key) else {
            let info = QueuedPod {
                key: key.clone(),
                pod: Arc::new(pod),
                attempts: 0,
                initial: now,
            };
            self.entries.insert(
                key.clone(),
                Entry {
                    info,
                    place: if gated { Place::Gated } else { Place::Active },
                    seq: 0,
                    failed_at: None,
                },
            );
            if !gated {
                self.push_active(&key);
            }
            return;
        };
        let priority_changed = priority(&entry.info.pod) != priority(&pod);
        let spec_changed = entry.info.pod.spec != pod.spec
            || entry.info.pod.metadata.labels != pod.metadata.labels;
        entry.info.pod = Arc::new(pod);
        match entry.place {
            Place::Gated if gated => {}
            Place::Gated => {
                // The time spent gated is the user's, not the scheduler's: the latency SLI
                // counts from here, as kube's does.
                entry.info.initial = now;
                self.push_active(&key);
            }
            Place::Unschedulable(_) if spec_changed => self.requeue(&key, now),
            // Re-pushed with its new priority; the old heap item goes stale.
            Place::Active if priority_changed => self.push_active(&key),
            _ => {}
        }
    }

    /// The pod is gone (deleted, or bound by someone else).
    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// The next pod to try, if any is active (backoffs that ended are moved in first).
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPod> {
        self.flush_backoff(now);
        while let Some(item) = self.active.pop() {
            let Some(entry) = self.entries.get_mut(&item.key) else {
                continue;
            };
            if entry.place != Place::Active || entry.seq != item.seq {
                continue;
            }
            entry.place = Place::InFlight {
                move_cycle: self.move_cycle,
            };
            entry.info.attempts = entry.info.attempts.saturating_add(1);
            return Some(entry.info.clone());
        }
        None
    }

    /// The cycle found no node: to the unschedulable pool, or to backoff if the cluster
    /// changed while the pod was in flight.
    pub fn unschedulable(&mut self, key: &str, now: Instant) {
        let move_cycle = self.move_cycle;
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        let Place::InFlight { move_cycle: popped } = entry.place else {
            return;
        };
        entry.failed_at = Some(now);
        if popped != move_cycle {
            self.send_to_backoff(key);
        } else {
            entry.place = Place::Unschedulable(now);
        }
    }

    /// The cycle or the binding failed for a reason other than fit (an API error): retried
    /// after the backoff.
    pub fn failed(&mut self, key: &str, now: Instant) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        entry.failed_at = Some(now);
        self.send_to_backoff(key);
    }

    /// A binding failed for a pod the queue had let go: it is pending again.
    pub fn requeue_failed(&mut self, info: QueuedPod, now: Instant) {
        let key = info.key.clone();
        self.entries.insert(
            key.clone(),
            Entry {
                info,
                place: Place::InFlight { move_cycle: 0 },
                seq: 0,
                failed_at: Some(now),
            },
        );
        self.send_to_backoff(&key);
    }

    /// The pod was assumed on a node: the queue lets it go.
    pub fn scheduled(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// A cluster event that could make pending pods schedulable (a node added or changed, a
    /// pod deleted): the unschedulable pool is moved back.
    pub fn move_all_to_active_or_backoff(&mut self, now: Instant) {
        self.move_cycle += 1;
        let waiting: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, entry)| matches!(entry.place, Place::Unschedulable(_)))
            .map(|(key, _)| key.clone())
            .collect();
        for key in waiting {
            self.requeue(&key, now);
        }
    }

    /// Moves back the pods that sat in the unschedulable pool longer than
    /// [`MAX_IN_UNSCHEDULABLE`] (kube-scheduler's periodic flush).
    pub fn flush_unschedulable_leftover(&mut self, now: Instant) {
        let stale: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, entry)| {
                matches!(entry.place, Place::Unschedulable(since) if now.saturating_duration_since(since) >= MAX_IN_UNSCHEDULABLE)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            self.requeue(&key, now);
        }
    }

    /// When the earliest backoff ends, for a loop that sleeps until there is work (a stale
    /// heap item may wake it early, never late).
    pub fn next_backoff_expiry(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((until, _, _))| *until)
    }

    pub fn counts(&self) -> QueueCounts {
        let mut counts = QueueCounts::default();
        for entry in self.entries.values() {
            match entry.place {
                Place::Gated => counts.gated += 1,
                Place::Active => counts.active += 1,
                Place::Backoff(_) => counts.backoff += 1,
                Place::Unschedulable(_) => counts.unschedulable += 1,
                Place::InFlight { .. } => {}
            }
        }
        counts
    }

    /// The backoff a pod with `attempts` failed attempts waits.
    pub fn backoff_duration(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        self.initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }

    /// Back to backoff if its backoff has not ended, else straight to active.
    fn requeue(&mut self, key: &str, now: Instant) {
        let Some(entry) = self.entries.get(key) else {
            return;
        };
        let until = entry
            .failed_at
            .map(|failed| failed + self.backoff_duration(entry.info.attempts));
        match until {
            Some(until) if until > now => self.send_to_backoff(key),
            _ => {
                if let Some(entry) = self.entries.get_mut(key) {
                    entry.place = Place::Active;
                }
                self.push_active(key);
            }
        }
    }

    fn send_to_backoff(&mut self, key: &str) {
        let duration = match self.entries.get(key) {
            Some(entry) => self.backoff_duration(entry.info.attempts),
            None => return,
        };
        self.seq += 1;
        let seq = self.seq;
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        let until = entry.failed_at.unwrap_or_else(Instant::now) + duration;
        entry.place = Place::Backoff(until);
        entry.seq = seq;
        self.backoff.push(Reverse((until, seq, key.to_string())));
    }

    fn push_active(&mut self, key: &str) {
        self.seq += 1;
        let seq = self.seq;
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        entry.place = Place::Active;
        entry.seq = seq;
        let priority = priority(&entry.info.pod);
        self.active.push(ActiveItem {
            priority,
            seq,
            key: key.to_string(),
        });
    }

    fn flush_backoff(&mut self, now: Instant) {
        while let Some(Reverse((until, seq, key))) = self.backoff.peek().cloned() {
            if until > now {
                break;
            }
            self.backoff.pop();
            let live = self
                .entries
                .get(&key)
                .is_some_and(|entry| entry.seq == seq && matches!(entry.place, Place::Backoff(_)));
            if live {
                self.push_active(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests;
