//! The recorder's decisions, as pure functions of what was asked, what was seen and the time:
//! client-go's `EventCorrelator` (its `EventLogger` part) and `makeEvent`.
//!
//! The [`Correlator`] remembers, per correlation [`Key`], the Event it last wrote and how many
//! times the event was seen. An event seen again within [`REPEAT_WINDOW`] of its last sighting
//! becomes a [`Decision::Patch`] of that Event's `count` and `lastTimestamp`; anything else a
//! [`Decision::Create`] of a new Event — unless the [`SpamFilter`] says the component has
//! written enough about that object lately ([`Decision::Skip`]; the sighting is still
//! counted). The clock is a parameter, so the windows are tested without waiting minutes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::bounded;
use crate::spam::SpamFilter;

/// How long after its last sighting an event still counts as a repeat. client-go's logger
/// counts repeats for as long as its cache holds them, and aggregates similar events over ten
/// minutes (`defaultAggregateIntervalInSeconds`); ten minutes here bounds both how stale a
/// patched Event can be and how long a key need be kept.
pub const REPEAT_WINDOW: SignedDuration = SignedDuration::from_secs(600);
/// The keys remembered at most (client-go's `maxLruCacheEntries`).
pub const CACHE_CAPACITY: usize = 4096;
/// The longest message written, in bytes. The core/v1 API takes any length, but
/// `events.k8s.io/v1` refuses a note over 1 KiB (`NoteLengthLimit`) and client-go's newer
/// recorder truncates to it; a message past that is a dump nobody reads in `kubectl describe`,
/// and kube-scheduler's per-node diagnoses can grow that long in a large cluster.
pub const MESSAGE_LIMIT: usize = 1024;
/// The longest reason written, in bytes (`ReasonLengthLimit`): reasons are short CamelCase
/// words; this only guards against a caller passing text.
pub const REASON_LIMIT: usize = 128;
/// The namespace of the Events of cluster-scoped objects (`metav1.NamespaceDefault`).
pub const CLUSTER_SCOPED_NAMESPACE: &str = "default";

/// An Event's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One event a component asked to record, reason and message already truncated.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub involved: ObjectReference,
    pub type_: EventType,
    pub reason: String,
    pub message: String,
}

impl Request {
    pub fn new(
        involved: &ObjectReference,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> Request {
        Request {
            involved: involved.clone(),
            type_,
            reason: truncate(reason, REASON_LIMIT).to_string(),
            message: truncate(message, MESSAGE_LIMIT).to_string(),
        }
    }
}

/// `text` cut to at most `limit` bytes, on a character boundary (never inside a UTF-8
/// sequence, whatever the text).
pub fn truncate(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// What makes two events the same (client-go's `getEventKey`): the involved object, the type,
/// reason and message, and the component. The object's resourceVersion is left out, as
/// client-go leaves it out: an object changes between two failures of the same kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    component: String,
    api_version: String,
    kind: String,
    namespace: String,
    name: String,
    uid: String,
    field_path: String,
    type_: EventType,
    reason: String,
    message: String,
}

impl Key {
    pub fn of(component: &str, request: &Request) -> Key {
        let involved = &request.involved;
        let field = |value: &Option<String>| value.clone().unwrap_or_default();
        Key {
            component: component.to_string(),
            api_version: field(&involved.api_version),
            kind: field(&involved.kind),
            namespace: field(&involved.namespace),
            name: field(&involved.name),
            uid: field(&involved.uid),
            field_path: field(&involved.field_path),
            type_: request.type_,
            reason: request.reason.clone(),
            message: request.message.clone(),
        }
    }
}

/// The Event last written for a key.
#[derive(Clone, Debug)]
struct Seen {
    namespace: String,
    name: String,
    count: i32,
    last: Timestamp,
}

/// What to write for one event.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// A new Event.
    Create(Box<Event>),
    /// The same event again: a merge patch of the Event written before.
    Patch {
        namespace: String,
        name: String,
        count: i32,
        last_timestamp: Time,
    },
    /// Nothing: the component wrote its share about this object lately (client-go's spam
    /// filter). A repeat is still counted, so the next patch carries the whole count.
    Skip,
}

/// The events a component wrote recently, by [`Key`], at most `capacity` of them, and what
/// it may still write about each object.
#[derive(Debug)]
pub struct Correlator {
    component: String,
    capacity: usize,
    seen: HashMap<Key, Seen>,
    spam: SpamFilter,
}

impl Correlator {
    pub fn new(component: &str) -> Correlator {
        Correlator::with_capacity(component, CACHE_CAPACITY)
    }

    pub fn with_capacity(component: &str, capacity: usize) -> Correlator {
        Correlator {
            component: component.to_string(),
            capacity: capacity.max(1),
            seen: HashMap::new(),
            spam: SpamFilter::with_capacity(capacity),
        }
    }

    pub fn component(&self) -> &str {
        &self.component
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Decides what to write for `request` at `now`, and remembers it as written: the caller
    /// [`forget`](Self::forget)s the key when the write fails, so that the next sighting
    /// writes a new Event rather than patch one that does not exist.
    pub fn decide(&mut self, request: &Request, now: Timestamp) -> (Key, Decision) {
        let key = Key::of(&self.component, request);
        if let Some(seen) = self.seen.get_mut(&key) {
            // A clock stepped back gives a negative span: still a recent repeat.
            if now.duration_since(seen.last) <= REPEAT_WINDOW {
                seen.count = seen.count.saturating_add(1);
                seen.last = now;
                if !self.spam.allow(&request.involved, now) {
                    return (key, Decision::Skip);
                }
                let decision = Decision::Patch {
                    namespace: seen.namespace.clone(),
                    name: seen.name.clone(),
                    count: seen.count,
                    last_timestamp: Time(whole_seconds(now)),
                };
                return (key, decision);
            }
        }
        if !self.spam.allow(&request.involved, now) {
            // Never written, so nothing to remember: the next sighting creates it.
            return (key, Decision::Skip);
        }
        let event = make_event(&self.component, request, now);
        let seen = Seen {
            namespace: event.metadata.namespace.clone().unwrap_or_default(),
            name: event.metadata.name.clone().unwrap_or_default(),
            count: 1,
            last: now,
        };
        self.make_room(&key, now);
        self.seen.insert(key.clone(), seen);
        (key, Decision::Create(Box::new(event)))
    }

    /// Forgets `key`: its Event was not written, or is gone.
    pub fn forget(&mut self, key: &Key) {
        self.seen.remove(key);
    }

    /// Keeps the cache under its capacity before `key` goes in: keys past the window go
    /// first (they would not be repeats any more), then the least recently seen one, as an
    /// LRU would evict it. The scan is linear, but only runs when the cache is full.
    fn make_room(&mut self, key: &Key, now: Timestamp) {
        if self.seen.contains_key(key) {
            return;
        }
        bounded::make_room(
            &mut self.seen,
            self.capacity,
            |seen| now.duration_since(seen.last) > REPEAT_WINDOW,
            |seen| seen.last,
        );
    }
}

/// `metav1.Time` keeps whole seconds.
pub fn whole_seconds(time: Timestamp) -> Timestamp {
    Timestamp::from_second(time.as_second()).unwrap_or(time)
}

/// The namespace of an Event about `involved`: its own, or `default` for a cluster-scoped
/// object (where the API server expects it).
pub fn event_namespace(involved: &ObjectReference) -> &str {
    match involved.namespace.as_deref() {
        Some(namespace) if !namespace.is_empty() => namespace,
        _ => CLUSTER_SCOPED_NAMESPACE,
    }
}

/// Tells apart the fallback names of one process.
static FALLBACK_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// `<name>.<hex nanoseconds>`, Kubernetes' name for an Event about `name` at `now`. Where that
/// is no valid object name (an involved name too long for the suffix, or not a DNS subdomain)
/// a name of the time and a sequence number is used instead, as client-go's
/// `GenerateEventName` falls back to a UUID: an Event must never be refused for its name.
pub fn event_name(involved_name: &str, now: Timestamp) -> String {
    let nanos = u128::try_from(now.as_nanosecond()).unwrap_or(0);
    let name = format!("{involved_name}.{nanos:x}");
    if is_dns_subdomain(&name) {
        return name;
    }
    let sequence = FALLBACK_SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}.{sequence:x}")
}

/// Kubernetes' `IsDNS1123Subdomain`, the rule of an Event's name (keel-api's port of it).
pub fn is_dns_subdomain(name: &str) -> bool {
    keel_api::validation::is_dns1123_subdomain(name).is_empty()
}

/// The Event written for `request` the first time it is seen (`makeEvent`).
pub fn make_event(component: &str, request: &Request, now: Timestamp) -> Event {
    let involved = &request.involved;
    let time = Time(whole_seconds(now));
    Event {
        metadata: ObjectMeta {
            name: Some(event_name(
                involved.name.as_deref().unwrap_or_default(),
                now,
            )),
            namespace: Some(event_namespace(involved).to_string()),
            ..ObjectMeta::default()
        },
        involved_object: involved.clone(),
        type_: Some(request.type_.as_str().to_string()),
        reason: Some(request.reason.clone()),
        message: Some(request.message.clone()),
        source: Some(EventSource {
            component: Some(component.to_string()),
            host: None,
        }),
        reporting_component: Some(component.to_string()),
        reporting_instance: Some(component.to_string()),
        first_timestamp: Some(time.clone()),
        last_timestamp: Some(time),
        count: Some(1),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests;
