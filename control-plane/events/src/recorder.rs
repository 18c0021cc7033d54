//! The recorder a component holds, and the task that writes what it records.

use k8s_openapi::api::core::v1::{Event, ObjectReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::correlate::{Correlator, Decision, EventType, Key, Request};

/// Events waiting to be written; more are dropped (client-go's `maxQueuedEvents`).
pub const QUEUE_LENGTH: usize = 1000;

/// Records Events from one component (`source.component`), such as `replicaset-controller`
/// or `default-scheduler`. Cheap to clone; every clone feeds the same writer, which ends when
/// the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Recorder {
    sender: mpsc::Sender<Request>,
}

#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("creating Event {name}: {source}")]
    Create {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating the count of Event {name}: {source}")]
    Patch {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl Recorder {
    /// A recorder for `component`, its writer spawned on the current tokio runtime. Outside
    /// of one, a recorder that drops everything (and says so once): events are never worth a
    /// panic.
    pub fn new(client: Client, component: &str) -> Recorder {
        let (sender, receiver) = mpsc::channel(QUEUE_LENGTH);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(write(client, Correlator::new(component), receiver));
            }
            Err(_) => {
                tracing::warn!(
                    component,
                    "no tokio runtime: this component's events are dropped"
                );
            }
        }
        Recorder { sender }
    }

    /// Records an event about `involved`. Never waits: when the writer is behind (the channel
    /// is full) the event is dropped with a debug log, as client-go's broadcaster drops — a
    /// reconcile loop or the scheduling thread must never stall on the API server's pace of
    /// taking Events, which are for people and may be lost.
    pub fn event(&self, involved: &ObjectReference, type_: EventType, reason: &str, message: &str) {
        let request = Request::new(involved, type_, reason, message);
        match self.sender.try_send(request) {
            Ok(()) => {}
            Err(TrySendError::Full(request)) => tracing::debug!(
                reason = %request.reason,
                object = request.involved.name.as_deref().unwrap_or_default(),
                "the event recorder is behind; an event was dropped"
            ),
            Err(TrySendError::Closed(request)) => tracing::debug!(
                reason = %request.reason,
                "the event writer has stopped; an event was dropped"
            ),
        }
    }
}

/// The reference an Event names its object by: apiVersion, kind, namespace, name, uid and
/// resourceVersion, as client-go's `GetReference` fills it.
pub fn reference<K: Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    let mut reference = object.object_ref(&());
    reference.resource_version = object.meta().resource_version.clone();
    reference
}

/// Writes the events of one recorder, one at a time, until every sender is gone.
async fn write(client: Client, mut correlator: Correlator, mut receiver: mpsc::Receiver<Request>) {
    while let Some(request) = receiver.recv().await {
        if let Err(error) = write_one(&client, &mut correlator, &request).await {
            // Not retried: the next sighting of the event writes it again.
            tracing::debug!(
                component = correlator.component(),
                reason = %request.reason,
                %error,
                "writing an event"
            );
        }
    }
}

async fn write_one(
    client: &Client,
    correlator: &mut Correlator,
    request: &Request,
) -> Result<(), WriteError> {
    let now = Timestamp::now();
    let (key, decision) = correlator.decide(request, now);
    let (namespace, name, count, last_timestamp) = match decision {
        Decision::Skip => return Ok(()),
        Decision::Create(event) => return create(client, correlator, &key, &event).await,
        Decision::Patch {
            namespace,
            name,
            count,
            last_timestamp,
        } => (namespace, name, count, last_timestamp),
    };
    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    // `Time` in whole seconds displays as RFC 3339 (`2026-01-01T00:00:00Z`), as it serializes.
    let patch = json!({"count": count, "lastTimestamp": last_timestamp.0.to_string()});
    match events
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        // Expired (Events live an hour) or deleted: write the event afresh.
        Err(kube::Error::Api(status)) if status.is_not_found() => {
            correlator.forget(&key);
            match correlator.decide(request, now) {
                (key, Decision::Create(event)) => create(client, correlator, &key, &event).await,
                // Forgotten just above, so a new Event (or none, filtered as spam).
                (_, Decision::Patch { .. } | Decision::Skip) => Ok(()),
            }
        }
        Err(source) => Err(WriteError::Patch { name, source }),
    }
}

async fn create(
    client: &Client,
    correlator: &mut Correlator,
    key: &Key,
    event: &Event,
) -> Result<(), WriteError> {
    let namespace = event.metadata.namespace.as_deref().unwrap_or_default();
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    match events.create(&PostParams::default(), event).await {
        Ok(_) => Ok(()),
        Err(source) => {
            // Never written: a repeat must create it, not patch it.
            correlator.forget(key);
            Err(WriteError::Create {
                name: event.metadata.name.clone().unwrap_or_default(),
                source,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn references_name_the_object_with_its_resource_version() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("web-1".into());
        pod.metadata.namespace = Some("team-a".into());
        pod.metadata.uid = Some("u1".into());
        pod.metadata.resource_version = Some("42".into());
        let reference = reference(&pod);
        assert_eq!(reference.api_version.as_deref(), Some("v1"));
        assert_eq!(reference.kind.as_deref(), Some("Pod"));
        assert_eq!(reference.namespace.as_deref(), Some("team-a"));
        assert_eq!(reference.name.as_deref(), Some("web-1"));
        assert_eq!(reference.uid.as_deref(), Some("u1"));
        assert_eq!(reference.resource_version.as_deref(), Some("42"));
        let deployment = k8s_openapi::api::apps::v1::Deployment::default();
        assert_eq!(
            super::reference(&deployment).api_version.as_deref(),
            Some("apps/v1")
        );
    }

    #[test]
    fn a_full_queue_drops_instead_of_waiting() {
        // No writer drains this channel: the second event must return at once, dropped.
        let (sender, mut receiver) = mpsc::channel(1);
        let recorder = Recorder { sender };
        let involved = ObjectReference::default();
        recorder.event(&involved, EventType::Normal, "First", "kept");
        recorder.event(&involved, EventType::Normal, "Second", "dropped");
        let kept = receiver.try_recv().expect("the first event");
        assert_eq!(kept.reason, "First");
        assert!(receiver.try_recv().is_err());
        // A writer gone: still no panic, no wait.
        drop(receiver);
        recorder.event(&involved, EventType::Warning, "Third", "dropped");
    }
}
