//! keel's event recorder: what `kubectl describe` and `kubectl get events` show of the
//! scheduler and the controllers, written as client-go's `record.EventRecorder` and its
//! `EventCorrelator` write it.
//!
//! One recorder serves every component that reports to people through Events — the scheduler
//! (`Scheduled`, `FailedScheduling`, `Preempted`) and kube-controller-manager's controllers
//! (`SuccessfulCreate`, `ScalingReplicaSet`, `TaintManagerEviction`, …) — so that naming,
//! repeat counting, truncation and the never-block rule are decided once. Of keel's crates it
//! uses only keel-api (Kubernetes' name rules); the scheduler and the controllers use it,
//! never the other way round.
//!
//! It writes **core/v1** Events, which keel's API server also serves as `events.k8s.io/v1`
//! (one stored form, converted); the readers people use — `kubectl describe`, `kubectl get
//! events` — read core/v1.
//!
//! # What an Event looks like
//! - named `<involved object's name>.<hex nanoseconds>` as Kubernetes names them, in the
//!   involved object's namespace, or `default` for a cluster-scoped object (a Node);
//! - `involvedObject`, `type` (`Normal`/`Warning`), `reason`, `message`, `source.component`,
//!   `reportingComponent` and `reportingInstance` (the component), `firstTimestamp`,
//!   `lastTimestamp` (whole seconds) and `count`;
//! - the same event again (same object, type, reason, message and component) within ten
//!   minutes raises `count` and `lastTimestamp` of the Event already written instead of
//!   writing another: a pod retried every few seconds shows one `FailedScheduling` with a
//!   count, not hundreds;
//! - at most 25 Events written (created or patched) by one component about one object at
//!   once, then one per five minutes, as client-go's spam filter allows: the scheduler retrying
//!   200 pending pods after every cluster change would otherwise write through the API server
//!   and the store as often as it places pods.
//!
//! # Never in the way
//! [`Recorder::event`] only puts the event on a bounded channel; one task per recorder writes
//! them. When the channel is full the event is dropped (with a debug log), as client-go's
//! broadcaster drops: an event is a courtesy to the reader, and a controller must not slow
//! down because the API server is slow to take its events. When the last clone of a recorder
//! is dropped, the task writes what is queued and ends.
//!
//! # Layout
//! - [`correlate`]: the pure part — correlation keys, repeat or new, the bounded cache, names,
//!   truncation, the Event object — tested without a server.
//! - [`spam`]: the token bucket per component and object that bounds what is written.
//! - `bounded`: the eviction both keep their caches bounded with.
//! - `recorder`: [`Recorder`], [`reference`](fn@reference) and the writing task.

mod bounded;
pub mod correlate;
mod recorder;
pub mod spam;

pub use correlate::EventType;
pub use recorder::{reference, Recorder, QUEUE_LENGTH};
