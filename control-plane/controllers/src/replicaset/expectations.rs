//! kube's `UIDTrackingControllerExpectations`: what a controller is still waiting to see.
//!
//! A controller acts on its cache, and its cache lags behind its own writes: right after
//! creating three pods, the pod store may hold none of them, and a second sync would create
//! three more. So after issuing creates or deletes, a ReplicaSet records how many it expects
//! to observe; the watch lowers the counts as the pods show up (or go), and the ReplicaSet
//! manages its replicas again only once they reach zero — or after [`EXPECTATIONS_TIMEOUT`],
//! should an event be lost. Status is still computed meanwhile.
//!
//! Deletions are tracked by pod key, not only counted: a pod being deleted gracefully is seen
//! twice (its `deletionTimestamp` set, then its removal), and must count once.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How long a ReplicaSet waits for the events of its own writes before acting anyway (kube's
/// `ExpectationsTimeout`): long enough for a slow watch, short enough that a lost event does
/// not stall the ReplicaSet for good.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Entry {
    /// Creations still to observe; may go below zero (a create seen after the count expired).
    add: i64,
    /// Deletions still to observe.
    del: i64,
    /// When the counts were last set (not lowered).
    set_at: Instant,
    /// Keys (`namespace/name`) of the pods whose deletion is awaited.
    deleting: HashSet<String>,
}

/// The expectations of every ReplicaSet, by its key.
#[derive(Debug, Default)]
pub struct Expectations {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Expectations {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // Each operation leaves the map consistent; a panic elsewhere does not poison it.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the ReplicaSet may create or delete pods: nothing expected, everything
    /// observed, or the expectations expired.
    pub fn satisfied(&self, key: &str, now: Instant) -> bool {
        match self.lock().get(key) {
            None => true,
            Some(entry) => {
                (entry.add <= 0 && entry.del <= 0)
                    || now.saturating_duration_since(entry.set_at) > EXPECTATIONS_TIMEOUT
            }
        }
    }

    /// Expects `count` creations (and no deletions), replacing earlier counts.
    pub fn expect_creations(&self, key: &str, count: usize, now: Instant) {
        let mut entries = self.lock();
        let entry = entries.entry(key.to_string()).or_insert_with(|| Entry {
            add: 0,
            del: 0,
            set_at: now,
            deleting: HashSet::new(),
        });
        entry.add = i64::try_from(count).unwrap_or(i64::MAX);
        entry.del = 0;
        entry.set_at = now;
    }

    /// Expects the deletion of the pods with `pod_keys` (and no creations), replacing earlier
    /// counts and keys.
    pub fn expect_deletions<I>(&self, key: &str, pod_keys: I, now: Instant)
    where
        I: IntoIterator<Item = String>,
    {
        let deleting: HashSet<String> = pod_keys.into_iter().collect();
        let mut entries = self.lock();
        if let Some(entry) = entries.get(key) {
            if !entry.deleting.is_empty() {
                // Only after the earlier ones expired: they are given up on.
                let waiting = entry.deleting.len();
                tracing::warn!(%key, waiting, "replacing pending deletion expectations");
            }
        }
        let entry = Entry {
            add: 0,
            del: i64::try_from(deleting.len()).unwrap_or(i64::MAX),
            set_at: now,
            deleting,
        };
        entries.insert(key.to_string(), entry);
    }

    /// A pod the ReplicaSet controls showed up.
    pub fn creation_observed(&self, key: &str) {
        self.lower_creations(key, 1);
    }

    /// `count` expected creations will not show up (their requests failed or were skipped).
    pub fn lower_creations(&self, key: &str, count: usize) {
        if let Some(entry) = self.lock().get_mut(key) {
            entry.add -= i64::try_from(count).unwrap_or(i64::MAX);
        }
    }

    /// The pod with `pod_key` went away or is going; counts once per awaited pod.
    pub fn deletion_observed(&self, key: &str, pod_key: &str) {
        if let Some(entry) = self.lock().get_mut(key) {
            if entry.deleting.remove(pod_key) {
                entry.del -= 1;
            }
        }
    }

    /// Forgets the ReplicaSet's expectations (it was deleted; a new one of the same name
    /// starts clean).
    pub fn delete(&self, key: &str) {
        self.lock().remove(key);
    }

    /// The creations and deletions still expected, if any were set.
    pub fn pending(&self, key: &str) -> Option<(i64, i64)> {
        self.lock().get(key).map(|entry| (entry.add, entry.del))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // kube's TestControllerExpectations.
    #[test]
    fn counts_are_lowered_until_satisfied_or_expired() {
        let expectations = Expectations::default();
        let start = Instant::now();
        let key = "default/foobar";
        let (adds, dels) = (10, 30);
        expectations.expect_creations(key, adds, start);
        // One more observation than expected: counts may go below zero.
        for _ in 0..=adds {
            expectations.creation_observed(key);
        }
        assert!(expectations.satisfied(key, start));
        assert_eq!(expectations.pending(key), Some((-1, 0)));

        let pods: Vec<String> = (0..dels).map(|i| format!("default/pod{i}")).collect();
        expectations.expect_deletions(key, pods.clone(), start);
        assert!(
            !expectations.satisfied(key, start),
            "synced before deletions were seen"
        );
        for pod in &pods {
            expectations.deletion_observed(key, pod);
        }
        // A second observation of the same pod does not count.
        expectations.deletion_observed(key, &pods[0]);
        assert_eq!(expectations.pending(key), Some((0, 0)));
        assert!(expectations.satisfied(key, start));

        // Fresh expectations are not satisfied until they expire.
        expectations.expect_creations(key, 1, start);
        assert!(!expectations.satisfied(key, start));
        assert!(!expectations.satisfied(key, start + EXPECTATIONS_TIMEOUT));
        assert!(expectations.satisfied(key, start + EXPECTATIONS_TIMEOUT + Duration::from_secs(1)));
    }

    // kube's TestUIDExpectations.
    #[test]
    fn deletions_are_tracked_by_pod() {
        let expectations = Expectations::default();
        let now = Instant::now();
        for replicas in [2, 1, 0, 5] {
            let key = format!("default/rc-{replicas}");
            let pods: Vec<String> = (0..5)
                .map(|i| format!("default/pod{i}-rc-{replicas}"))
                .collect();
            expectations.expect_deletions(&key, pods.clone(), now);
            assert!(!expectations.satisfied(&key, now));
            for pod in &pods {
                expectations.deletion_observed(&key, pod);
            }
            assert!(expectations.satisfied(&key, now));
            expectations.delete(&key);
            assert_eq!(expectations.pending(&key), None);
        }
    }

    #[test]
    fn an_unknown_replicaset_is_satisfied() {
        let expectations = Expectations::default();
        assert!(expectations.satisfied("default/none", Instant::now()));
        expectations.creation_observed("default/none");
        assert_eq!(expectations.pending("default/none"), None);
    }

    #[test]
    fn skipped_creations_lower_the_count() {
        let expectations = Expectations::default();
        let now = Instant::now();
        expectations.expect_creations("ns/rs", 7, now);
        expectations.lower_creations("ns/rs", 4);
        assert_eq!(expectations.pending("ns/rs"), Some((3, 0)));
        for _ in 0..3 {
            expectations.creation_observed("ns/rs");
        }
        assert!(expectations.satisfied("ns/rs", now));
    }
}
