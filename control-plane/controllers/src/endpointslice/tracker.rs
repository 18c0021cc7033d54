//! The slices this controller wrote and has not yet seen back in its cache (kube's
//! `EndpointSliceTracker`).
//!
//! Workers read slices from a watch cache that lags the API server. Reconciling a service
//! against a cache that does not hold the controller's own last writes would create the same
//! slices twice, so a sync first checks that every write it made for the service is visible,
//! and fails (to be retried) when not. The same record tells the controller's own slice events
//! from everyone else's, so that its writes do not wake it up again.
//!
//! kube compares `metadata.generation`; keel does not keep a generation on EndpointSlices, so
//! the resourceVersion (a store revision, increasing) stands in for it. A version that does not
//! parse as a number is never taken as stale.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::LABEL_SERVICE_NAME;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expected {
    /// Written at this resourceVersion (`None`: one that does not parse).
    Version(Option<u64>),
    /// Deleted.
    Deletion,
}

#[derive(Debug, Default)]
pub struct Tracker {
    /// Service key (`namespace/name`) → slice UID → what the cache should show.
    by_service: HashMap<String, HashMap<String, Expected>>,
    /// The UID of the service the writes were made for, by key.
    service_uids: HashMap<String, String>,
}

/// `namespace/name` of the service a slice belongs to, from its label.
pub fn service_key_of(slice: &EndpointSlice) -> Option<String> {
    let name = slice.metadata.labels.as_ref()?.get(LABEL_SERVICE_NAME)?;
    if name.is_empty() {
        return None;
    }
    let namespace = slice.metadata.namespace.as_deref().unwrap_or_default();
    Some(format!("{namespace}/{name}"))
}

fn version(slice: &EndpointSlice) -> Option<u64> {
    slice.metadata.resource_version.as_deref()?.parse().ok()
}

fn uid(slice: &EndpointSlice) -> Option<&str> {
    slice.metadata.uid.as_deref().filter(|uid| !uid.is_empty())
}

/// `seen` is older than `wanted` (both known).
fn older(seen: Option<u64>, wanted: Option<u64>) -> bool {
    matches!((seen, wanted), (Some(seen), Some(wanted)) if seen < wanted)
}

impl Tracker {
    fn record(&mut self, slice: &EndpointSlice, expected: Expected) {
        let (Some(key), Some(uid)) = (service_key_of(slice), uid(slice)) else {
            return;
        };
        self.by_service
            .entry(key)
            .or_default()
            .insert(uid.to_string(), expected);
    }

    /// The controller wrote `slice` (as the API server returned it).
    pub fn written(&mut self, slice: &EndpointSlice) {
        self.record(slice, Expected::Version(version(slice)));
    }

    /// The controller deleted `slice`.
    pub fn deleted(&mut self, slice: &EndpointSlice) {
        self.record(slice, Expected::Deletion);
    }

    /// Whether an added or changed slice is news to the controller (`ShouldSync`): not one it
    /// wrote, or changed since.
    pub fn is_news(&self, slice: &EndpointSlice) -> bool {
        let expected = service_key_of(slice)
            .and_then(|key| self.by_service.get(&key))
            .zip(uid(slice))
            .and_then(|(slices, uid)| slices.get(uid).copied());
        match expected {
            Some(Expected::Version(wanted)) => match (version(slice), wanted) {
                (Some(seen), Some(wanted)) => seen > wanted,
                // Versions that cannot be ordered: a sync too many costs a read, not a write.
                _ => true,
            },
            Some(Expected::Deletion) | None => true,
        }
    }

    /// A slice left the cache; whether the controller expected it to (`HandleDeletion`).
    ///
    /// Unlike kube, a slice the controller does not track counts as unexpected: after a restart
    /// the tracker is empty, and a slice deleted by hand must still be put back.
    pub fn handle_deletion(&mut self, slice: &EndpointSlice) -> bool {
        let (Some(key), Some(uid)) = (service_key_of(slice), uid(slice)) else {
            return false;
        };
        let Some(slices) = self.by_service.get_mut(&key) else {
            return false;
        };
        let expected = slices.remove(uid);
        if slices.is_empty() {
            self.by_service.remove(&key);
        }
        expected == Some(Expected::Deletion)
    }

    /// Whether the cache lags the controller's writes for the service at `key` (`StaleSlices`),
    /// given its slices in the cache (those pending deletion left out): a slice older than
    /// written, one deleted but still there, or one written but not there yet. `service_uid`:
    /// the service's UID, `None` once it is gone.
    pub fn stale(
        &mut self,
        key: &str,
        service_uid: Option<&str>,
        cached: &[&EndpointSlice],
    ) -> bool {
        // Writes made for an earlier service of the same name are not waited for.
        if let Some(service_uid) = service_uid.filter(|uid| !uid.is_empty()) {
            let previous = self
                .service_uids
                .insert(key.to_string(), service_uid.to_string());
            if previous.is_some_and(|previous| !previous.is_empty() && previous != service_uid) {
                self.by_service.remove(key);
            }
        }
        let Some(slices) = self.by_service.get(key) else {
            return false;
        };
        let mut present = HashSet::new();
        for slice in cached {
            let Some(slice_uid) = uid(slice) else {
                continue;
            };
            present.insert(slice_uid);
            match slices.get(slice_uid) {
                Some(Expected::Deletion) => return true,
                Some(Expected::Version(wanted)) if older(version(slice), *wanted) => return true,
                _ => {}
            }
        }
        slices.iter().any(|(slice_uid, expected)| {
            *expected != Expected::Deletion && !present.contains(slice_uid.as_str())
        })
    }

    /// Forgets a service (deleted): its slices' delete events are still expected, so only the
    /// recorded UID goes.
    pub fn forget_service(&mut self, key: &str) {
        self.service_uids.remove(key);
    }

    /// After a relist: forgets what the cache can no longer show — slices absent from it were
    /// deleted while the watch was down, and their delete events will never come.
    pub fn retain_present(&mut self, present: &HashSet<String>) {
        self.by_service.retain(|_, slices| {
            slices.retain(|uid, _| present.contains(uid));
            !slices.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::Tracker;
    use crate::endpointslice::LABEL_SERVICE_NAME;

    const KEY: &str = "ns/svc";

    fn slice(uid: &str, version: &str) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some(format!("svc-{uid}")),
                uid: Some(uid.into()),
                resource_version: Some(version.into()),
                labels: Some(BTreeMap::from([(
                    LABEL_SERVICE_NAME.to_string(),
                    "svc".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            ..EndpointSlice::default()
        }
    }

    #[test]
    fn own_writes_are_waited_for_and_not_news() {
        let mut tracker = Tracker::default();
        let svc = Some("u1");
        assert!(!tracker.stale(KEY, svc, &[]));
        tracker.written(&slice("a", "10"));
        // Written but not in the cache yet, then in it at an older version, then caught up.
        assert!(tracker.stale(KEY, svc, &[]));
        assert!(tracker.stale(KEY, svc, &[&slice("a", "9")]));
        assert!(!tracker.stale(KEY, svc, &[&slice("a", "10")]));
        assert!(!tracker.is_news(&slice("a", "10")));
        assert!(tracker.is_news(&slice("a", "11")));
        assert!(tracker.is_news(&slice("b", "1")));
    }

    #[test]
    fn deletions_are_expected_until_seen() {
        let mut tracker = Tracker::default();
        let svc = Some("u1");
        tracker.deleted(&slice("a", "10"));
        assert!(tracker.stale(KEY, svc, &[&slice("a", "10")]));
        assert!(!tracker.stale(KEY, svc, &[]));
        assert!(tracker.handle_deletion(&slice("a", "10")));
        // Nobody expected this one: the service must put it back.
        assert!(!tracker.handle_deletion(&slice("b", "3")));
    }

    #[test]
    fn a_recreated_service_does_not_wait_for_the_old_writes() {
        let mut tracker = Tracker::default();
        assert!(!tracker.stale(KEY, Some("u1"), &[]));
        tracker.written(&slice("a", "10"));
        assert!(tracker.stale(KEY, Some("u1"), &[]));
        assert!(!tracker.stale(KEY, Some("u2"), &[]));
    }

    #[test]
    fn a_relist_forgets_what_is_gone() {
        let mut tracker = Tracker::default();
        let svc = Some("u1");
        tracker.written(&slice("a", "10"));
        tracker.written(&slice("b", "11"));
        tracker.retain_present(&HashSet::from(["b".to_string()]));
        assert!(!tracker.stale(KEY, svc, &[&slice("b", "11")]));
    }
}
