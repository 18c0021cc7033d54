//! client-go's `EventSourceObjectSpamFilter`: a token bucket per component and involved
//! object, so that one object cannot make a component write Events without end.
//!
//! The correlator already folds repeats of one event into patches of one Event, but every
//! patch is still a write through the API server and the store. A pod the scheduler retries
//! for hours, or 200 pending pods moved back to the active queue by every cluster change, would
//! otherwise patch their `FailedScheduling` Events on every attempt. client-go lets each
//! source and object write a burst of [`BURST`] events, then one per [`REFILL`] — the same
//! figures here. What is filtered is still counted by the correlator, so the next Event that
//! is written carries the whole count.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::bounded;

/// Events one component may write about one object at once (`defaultSpamBurst`).
pub const BURST: u32 = 25;
/// The time it takes to earn one more (`defaultSpamQPS` = 1/300).
pub const REFILL: SignedDuration = SignedDuration::from_secs(300);

/// What one bucket is kept by (client-go's `getSpamKey`): the object, not the reason or the
/// message, so that an object cannot escape the limit by failing in ever new ways.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SpamKey {
    api_version: Option<String>,
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
}

impl SpamKey {
    fn of(involved: &ObjectReference) -> SpamKey {
        SpamKey {
            api_version: involved.api_version.clone(),
            kind: involved.kind.clone(),
            namespace: involved.namespace.clone(),
            name: involved.name.clone(),
            uid: involved.uid.clone(),
        }
    }
}

/// Tokens left, as of `updated`.
#[derive(Clone, Debug)]
struct Bucket {
    tokens: f64,
    updated: Timestamp,
}

impl Bucket {
    /// The tokens at `now`: what was left plus what the time since earned, at most a burst. A
    /// clock stepped back earns nothing.
    fn tokens_at(&self, now: Timestamp) -> f64 {
        let elapsed = now.duration_since(self.updated).as_secs_f64().max(0.0);
        (self.tokens + elapsed / REFILL.as_secs_f64()).min(f64::from(BURST))
    }
}

/// One component's buckets, one per object it wrote about lately, at most `capacity`.
#[derive(Debug)]
pub struct SpamFilter {
    capacity: usize,
    buckets: HashMap<SpamKey, Bucket>,
}

impl SpamFilter {
    pub fn with_capacity(capacity: usize) -> SpamFilter {
        SpamFilter {
            capacity: capacity.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Objects with a bucket.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Whether an event about `involved` may be written at `now`; when it may, its token is
    /// spent.
    pub fn allow(&mut self, involved: &ObjectReference, now: Timestamp) -> bool {
        let key = SpamKey::of(involved);
        let (tokens, updated) = match self.buckets.get(&key) {
            // A clock stepped back keeps the later time, or it would earn its step again.
            Some(bucket) => (bucket.tokens_at(now), bucket.updated.max(now)),
            None => {
                self.make_room(now);
                (f64::from(BURST), now)
            }
        };
        let allowed = tokens >= 1.0;
        let bucket = Bucket {
            tokens: if allowed { tokens - 1.0 } else { tokens },
            updated,
        };
        self.buckets.insert(key, bucket);
        allowed
    }

    /// Keeps the buckets under capacity before a new one goes in. A bucket that has refilled
    /// is worth nothing (a new one would be the same), so those go first, then the one least
    /// recently used — which forgives that object early, the cheaper mistake. The scan is
    /// linear but runs only when the map is full.
    fn make_room(&mut self, now: Timestamp) {
        bounded::make_room(
            &mut self.buckets,
            self.capacity,
            |bucket| bucket.tokens_at(now) >= f64::from(BURST),
            |bucket| bucket.updated,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        match Timestamp::from_second(1_800_000_000 + seconds) {
            Ok(time) => time,
            Err(error) => panic!("{error}"),
        }
    }

    fn pod(name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some("default".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..ObjectReference::default()
        }
    }

    #[test]
    fn a_burst_then_one_per_five_minutes() {
        let mut filter = SpamFilter::with_capacity(16);
        let web = pod("web");
        let allowed = (0..40).filter(|_| filter.allow(&web, at(0))).count();
        assert_eq!(allowed, BURST as usize);
        // 299 s earn less than one token; 300 earn exactly one, and only one.
        assert!(!filter.allow(&web, at(299)));
        assert!(filter.allow(&web, at(300)));
        assert!(!filter.allow(&web, at(300)));
        // Refused attempts do not spend: the next token is due 300 s after the last.
        assert!(filter.allow(&web, at(600)));
        // A long quiet time refills no more than a burst.
        let allowed = (0..40)
            .filter(|_| filter.allow(&web, at(1_000_000)))
            .count();
        assert_eq!(allowed, BURST as usize);
    }

    #[test]
    fn objects_have_buckets_of_their_own() {
        let mut filter = SpamFilter::with_capacity(16);
        let (web, db) = (pod("web"), pod("db"));
        for _ in 0..BURST {
            assert!(filter.allow(&web, at(0)));
        }
        assert!(!filter.allow(&web, at(0)));
        assert!(filter.allow(&db, at(0)));
        // The same name with another uid is another object (a pod deleted and made again).
        let mut again = web.clone();
        again.uid = Some("uid-web-2".into());
        assert!(filter.allow(&again, at(0)));
        // The resource version is not part of the key (the object changes between events).
        let mut later = web.clone();
        later.resource_version = Some("42".into());
        assert!(!filter.allow(&later, at(0)));
    }

    #[test]
    fn a_clock_stepped_back_earns_nothing() {
        let mut filter = SpamFilter::with_capacity(16);
        let web = pod("web");
        for _ in 0..BURST {
            assert!(filter.allow(&web, at(1000)));
        }
        assert!(!filter.allow(&web, at(0)));
        assert!(!filter.allow(&web, at(1000)));
    }

    #[test]
    fn the_buckets_stay_bounded_and_refilled_ones_go_first() {
        let mut filter = SpamFilter::with_capacity(3);
        let (a, b, c, d) = (pod("a"), pod("b"), pod("c"), pod("d"));
        for _ in 0..BURST {
            assert!(filter.allow(&a, at(0)));
        }
        filter.allow(&b, at(1));
        filter.allow(&c, at(2));
        // Full: b and c have refilled by then and go; a, still empty, stays.
        assert!(filter.allow(&d, at(399)));
        assert_eq!(filter.len(), 2);
        assert!(filter.allow(&a, at(400)));
        assert!(!filter.allow(&a, at(400)));
        for _ in 0..BURST {
            filter.allow(&b, at(401));
        }
        assert_eq!(filter.len(), 3);
        // Nothing has refilled now: the least recently used, d, goes, and a keeps its debt.
        assert!(filter.allow(&c, at(402)));
        assert_eq!(filter.len(), 3);
        assert!(!filter.allow(&a, at(402)));
        assert!(!filter.allow(&b, at(402)));
    }
}
