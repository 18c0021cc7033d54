//! etcd's Watch service: one bidirectional stream carries many watches.
//!
//! A watch is created under the state machine's lock: its history since the start revision is
//! copied out, its filter registered in the hub and its creation queued on the stream's hub
//! queue in one step, so replay and live events meet without a gap or an overlap. Events of one
//! revision are never split across responses (etcd's atomicity guarantee), and progress
//! notifications come through the same queue, after every event at or below their revision.
//!
//! The response body is [`WatchResponses`], which builds responses from the hub queue as the
//! connection polls it: an event reaches the wire with no task and no channel between the
//! apply and the HTTP/2 stream. Live events go out encoded once for every alike watch on the
//! member (`watch_wire`). A task per stream reads the client's requests (create, cancel,
//! progress) and answers them through the hub queue too, so every response has one order.

use std::collections::{HashMap, VecDeque};
use std::iter::Peekable;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use super::watch_wire::WatchReply;
use super::Api;
use crate::pb::etcdserverpb as pb;
use crate::state_machine::Registered;
use crate::types::{Event, KeyRange};
use crate::watch_hub::{End, HubMessage, Received, StreamQueue, WatchFilter};

/// Events per replay response (a revision is never split, so one may carry more).
const REPLAY_BATCH: usize = 1000;

/// How a stream ends when its member installed a snapshot whose history does not reach back to
/// what the stream delivered (otherwise the missed events are sent and the stream goes on).
/// Unavailable, because clientv3 (etcdctl, kube-apiserver) answers that code by opening the
/// stream again and resuming each watch after the last revision it received.
const RESET: &str =
    "etcdserver: this member installed a snapshot from the leader; watch again from the last revision received";

impl Api {
    /// Opens one Watch stream: its requests are read by a task of their own, its responses
    /// built from its hub queue as the connection polls them.
    pub fn watch(&self, request: Request<Streaming<pb::WatchRequest>>) -> Response<WatchResponses> {
        let inbound = request.into_inner();
        let (stream, queue) = self.member.sm.lock().hub.open_stream();
        let (gone, body_dropped) = oneshot::channel();
        let (failed, failure) = oneshot::channel();
        let api = self.clone();
        tokio::spawn(async move {
            api.serve_requests(inbound, stream, body_dropped, failed)
                .await
        });
        Response::new(WatchResponses {
            api: self.clone(),
            queue,
            watches: HashMap::new(),
            pending: VecDeque::new(),
            ended: false,
            failure,
            reset: false,
            _gone: gone,
        })
    }
}

struct WatchState {
    start_revision: i64,
    progress_notify: bool,
}

/// A response waiting in [`WatchResponses`], or a replay still to be cut into responses.
enum Pending {
    Reply(WatchReply),
    Replay {
        watch_id: i64,
        current: i64,
        events: Peekable<std::vec::IntoIter<(i64, Event)>>,
    },
}

impl Pending {
    fn reply(message: pb::WatchResponse) -> Self {
        Self::Reply(WatchReply::Message(message))
    }
}

/// One Watch stream's responses, built from its hub queue as they are polled.
pub struct WatchResponses {
    api: Api,
    queue: std::sync::Arc<StreamQueue>,
    /// The watches whose creation this stream has delivered, as of what it delivered.
    watches: HashMap<i64, WatchState>,
    pending: VecDeque<Pending>,
    ended: bool,
    /// Why the client's requests could not be read (a malformed message): the stream ends with
    /// it, as etcd's does, rather than with OK.
    failure: oneshot::Receiver<Status>,
    /// The member installed a snapshot: the stream ends with [`RESET`].
    reset: bool,
    /// Dropped with the body: ends the task that reads the client's requests.
    _gone: oneshot::Sender<()>,
}

impl Stream for WatchResponses {
    type Item = Result<WatchReply, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(response) = this.next_pending() {
                return Poll::Ready(Some(Ok(response)));
            }
            if this.ended {
                if std::mem::take(&mut this.reset) {
                    return Poll::Ready(Some(Err(Status::unavailable(RESET))));
                }
                // Set before the stream was closed, so present by the time the end is read.
                return Poll::Ready(this.failure.try_recv().ok().map(Err));
            }
            match ready!(this.queue.poll_recv(cx)) {
                Received::Message(message) => this.take(message),
                Received::Ended(End::Slow) => {
                    this.cancel_slow();
                    this.ended = true;
                }
                Received::Ended(End::Closed) => this.ended = true,
                Received::Ended(End::Reset) => {
                    this.ended = true;
                    this.reset = true;
                }
            }
        }
    }
}

impl WatchResponses {
    fn response(&self, watch_id: i64, revision: i64) -> pb::WatchResponse {
        pb::WatchResponse {
            header: Some(self.api.header(revision)),
            watch_id,
            ..Default::default()
        }
    }

    fn created(&self, watch_id: i64, revision: i64) -> pb::WatchResponse {
        pb::WatchResponse {
            created: true,
            ..self.response(watch_id, revision)
        }
    }

    fn events(
        &self,
        watch_id: i64,
        revision: i64,
        events: Vec<crate::pb::mvccpb::Event>,
    ) -> pb::WatchResponse {
        pb::WatchResponse {
            events,
            ..self.response(watch_id, revision)
        }
    }

    /// The next response queued here, cutting the next batch off a replay.
    fn next_pending(&mut self) -> Option<WatchReply> {
        match self.pending.pop_front()? {
            Pending::Reply(reply) => Some(reply),
            Pending::Replay {
                watch_id,
                current,
                mut events,
            } => {
                let mut batch = Vec::new();
                while let Some((revision, event)) = events.next() {
                    batch.push(convert::event(event));
                    let revision_ends = events.peek().is_none_or(|(next, _)| *next != revision);
                    if batch.len() >= REPLAY_BATCH && revision_ends {
                        break;
                    }
                }
                if events.peek().is_some() {
                    self.pending.push_front(Pending::Replay {
                        watch_id,
                        current,
                        events,
                    });
                }
                if batch.is_empty() {
                    // An empty replay sends nothing.
                    return self.next_pending();
                }
                Some(WatchReply::Message(self.events(watch_id, current, batch)))
            }
        }
    }

    /// Turns one hub message into the responses it makes.
    fn take(&mut self, message: HubMessage) {
        match message {
            HubMessage::Events { revision, matches } => {
                for (watch_id, selection) in matches {
                    // A watch cancelled meanwhile, or one starting in the future.
                    let Some(state) = self.watches.get(&watch_id) else {
                        continue;
                    };
                    if revision < state.start_revision {
                        continue;
                    }
                    self.pending.push_back(Pending::Reply(WatchReply::Events {
                        header: self.api.header(revision),
                        watch_id,
                        selection,
                    }));
                }
            }
            HubMessage::Progress {
                revision,
                requested: true,
            } => {
                // Answer to a WatchProgressRequest: one response for the whole stream.
                let response = self.response(-1, revision);
                self.pending.push_back(Pending::reply(response));
            }
            HubMessage::Progress {
                revision,
                requested: false,
            } => {
                let mut notify: Vec<i64> = self
                    .watches
                    .iter()
                    .filter(|(_, state)| state.progress_notify)
                    .map(|(id, _)| *id)
                    .collect();
                notify.sort_unstable();
                for watch_id in notify {
                    let response = self.response(watch_id, revision);
                    self.pending.push_back(Pending::reply(response));
                }
            }
            HubMessage::Created {
                watch_id,
                current,
                start,
                progress_notify,
                replay,
            } => {
                self.watches.insert(
                    watch_id,
                    WatchState {
                        start_revision: start,
                        progress_notify,
                    },
                );
                let created = self.created(watch_id, current);
                self.pending.push_back(Pending::reply(created));
                self.pending.push_back(Pending::Replay {
                    watch_id,
                    current,
                    events: replay.into_iter().peekable(),
                });
            }
            HubMessage::Compacted {
                watch_id,
                current,
                compacted,
            } => {
                // etcd creates the watch, then cancels it naming the compaction revision.
                let created = self.created(watch_id, current);
                let cancel = pb::WatchResponse {
                    canceled: true,
                    compact_revision: compacted,
                    cancel_reason: "etcdserver: mvcc: required revision has been compacted".into(),
                    ..self.response(watch_id, current)
                };
                self.pending.push_back(Pending::reply(created));
                self.pending.push_back(Pending::reply(cancel));
            }
            HubMessage::Refused { revision, reason } => {
                let refused = pb::WatchResponse {
                    created: true,
                    canceled: true,
                    cancel_reason: reason,
                    ..self.response(-1, revision)
                };
                self.pending.push_back(Pending::reply(refused));
            }
            HubMessage::Cancelled { watch_id, revision } => {
                self.watches.remove(&watch_id);
                let cancelled = pb::WatchResponse {
                    canceled: true,
                    ..self.response(watch_id, revision)
                };
                self.pending.push_back(Pending::reply(cancelled));
            }
        }
    }

    /// The hub dropped this stream because its client stopped reading: cancel every watch on
    /// it (the client learns why if it ever reads again); the stream ends after these.
    fn cancel_slow(&mut self) {
        self.pending.clear();
        let revision = self.api.current_revision();
        let mut ids: Vec<i64> = self.watches.keys().copied().collect();
        ids.sort_unstable();
        for watch_id in ids {
            let cancel = pb::WatchResponse {
                canceled: true,
                cancel_reason: "etcdserver: watch cancelled: the client did not read its events and fell too far behind".into(),
                ..self.response(watch_id, revision)
            };
            self.pending.push_back(Pending::reply(cancel));
        }
    }
}

impl Api {
    /// Reads one stream's requests and sends its progress notifications until the body is
    /// dropped (the client went away), a request is malformed, or the hub drops the stream.
    /// A client that has sent its last request (half-closed its side) keeps its watches, as
    /// etcd's server keeps them: the events flow until the client cancels the call.
    async fn serve_requests(
        &self,
        mut inbound: Streaming<pb::WatchRequest>,
        stream: u64,
        mut body_dropped: oneshot::Receiver<()>,
        failed: oneshot::Sender<Status>,
    ) {
        // Watch id → whether it asked for progress notifications.
        let mut watches: HashMap<i64, bool> = HashMap::new();
        let mut next_id: i64 = 0;
        let interval = self
            .member
            .config
            .progress_notify_interval
            .max(Duration::from_millis(100));
        let mut progress_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut reading = true;
        loop {
            let queued = tokio::select! {
                _ = &mut body_dropped => break,
                request = inbound.message(), if reading => {
                    let request = match request {
                        Ok(Some(request)) => request,
                        Ok(None) => {
                            reading = false;
                            continue;
                        }
                        Err(status) => {
                            let _ = failed.send(status);
                            break;
                        }
                    };
                    // A watch from "now" starts after every write this member acknowledged.
                    // A member that cannot catch up within the request timeout (cut off from
                    // the leader) serves what it has, as it serves the rest of the stream. A
                    // client gone meanwhile ends the stream now, not after that wait.
                    tokio::select! {
                        _ = &mut body_dropped => break,
                        _ = self.member.caught_up() => {}
                    }
                    self.on_request(request, stream, &mut watches, &mut next_id)
                }
                _ = progress_tick.tick() => {
                    if !watches.values().any(|notify| *notify) {
                        continue;
                    }
                    self.member.sm.lock().queue_now(stream, |revision| HubMessage::Progress {
                        revision,
                        requested: false,
                    })
                }
            };
            match queued {
                Ok(()) => {}
                Err(End::Slow) => {
                    self.member.metrics.slow_watchers_cancelled.inc();
                    break;
                }
                Err(End::Closed | End::Reset) => break,
            }
        }
        self.member.sm.lock().hub.close_stream(stream);
    }

    /// Handles one client request, its answer queued on the stream's hub queue.
    fn on_request(
        &self,
        request: pb::WatchRequest,
        stream: u64,
        watches: &mut HashMap<i64, bool>,
        next_id: &mut i64,
    ) -> Result<(), End> {
        use pb::watch_request::RequestUnion;
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => {
                self.create(create, stream, watches, next_id)
            }
            Some(RequestUnion::CancelRequest(cancel)) => {
                watches.remove(&cancel.watch_id);
                let mut inner = self.member.sm.lock();
                inner.hub.remove_watch(stream, cancel.watch_id);
                inner.queue_now(stream, |revision| HubMessage::Cancelled {
                    watch_id: cancel.watch_id,
                    revision,
                })
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                self.member
                    .sm
                    .lock()
                    .queue_now(stream, |revision| HubMessage::Progress {
                        revision,
                        requested: true,
                    })
            }
            None => Ok(()),
        }
    }

    fn create(
        &self,
        create: pb::WatchCreateRequest,
        stream: u64,
        watches: &mut HashMap<i64, bool>,
        next_id: &mut i64,
    ) -> Result<(), End> {
        let refuse = |reason: String| {
            self.member
                .sm
                .lock()
                .queue_now(stream, |revision| HubMessage::Refused { revision, reason })
        };
        if create.key.is_empty() {
            return refuse("etcdserver: key is not provided".into());
        }
        let watch_id = if create.watch_id != 0 {
            create.watch_id
        } else {
            while watches.contains_key(next_id) {
                *next_id += 1;
            }
            *next_id
        };
        if watch_id < 0 || watches.contains_key(&watch_id) {
            return refuse(format!(
                "etcdserver: watch_id {watch_id} is already in use on this stream"
            ));
        }
        let filter = WatchFilter {
            watch_id,
            range: KeyRange {
                key: create.key,
                range_end: create.range_end,
            },
            no_put: create
                .filters
                .contains(&(pb::watch_create_request::FilterType::Noput as i32)),
            no_delete: create
                .filters
                .contains(&(pb::watch_create_request::FilterType::Nodelete as i32)),
            prev_kv: create.prev_kv,
        };
        // Registered and queued under one lock: the creation and its replay are ahead of the
        // first live event the hub queues for it.
        let mut inner = self.member.sm.lock();
        let message = match inner.add_watch_from(stream, filter, create.start_revision) {
            Err((current, compacted)) => HubMessage::Compacted {
                watch_id,
                current,
                compacted,
            },
            Ok(Registered {
                current,
                start,
                replay,
            }) => {
                watches.insert(watch_id, create.progress_notify);
                HubMessage::Created {
                    watch_id,
                    current,
                    start,
                    progress_notify: create.progress_notify,
                    replay,
                }
            }
        };
        inner.hub.send(stream, message)
    }
}
