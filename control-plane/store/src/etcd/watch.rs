//! etcd's Watch service: one bidirectional stream carries many watches.
//!
//! A watch is created under the state machine's lock: its history since the start revision is
//! copied out and its filter registered in the hub in one step, so replay and live events meet
//! without a gap or an overlap. Events of one revision are never split across responses (etcd's
//! atomicity guarantee), and progress notifications come through the hub's queue, after every
//! event at or below their revision.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use super::Api;
use crate::pb::etcdserverpb as pb;
use crate::pb::etcdserverpb::watch_server::Watch;
use crate::state_machine::Registered;
use crate::types::{Event, KeyRange};
use crate::watch_hub::{HubMessage, WatchFilter};

/// Responses queued towards one client before the stream handler waits for it.
const OUT_QUEUE: usize = 128;
/// Events per replay response (a revision is never split, so one may carry more).
const REPLAY_BATCH: usize = 1000;
/// A client that accepts no response for this long has stopped reading: its stream ends and
/// everything queued for it is freed (the hub has usually dropped it already).
const STALL: Duration = Duration::from_secs(5);

/// Sends one response unless the client stalls; false ends the stream. A stall counts as a
/// slow watcher cancelled, as does the hub dropping a stream whose queue filled.
async fn send(api: &Api, out: &Out, response: pb::WatchResponse) -> bool {
    // Room in the queue is the common case: no timer for it (arming and cancelling one per
    // response was a measurable part of a thousand-watcher fan-out).
    let response = match out.try_send(Ok(response)) {
        Ok(()) => return true,
        Err(mpsc::error::TrySendError::Closed(_)) => return false,
        Err(mpsc::error::TrySendError::Full(response)) => response,
    };
    match tokio::time::timeout(STALL, out.send(response)).await {
        Ok(sent) => sent.is_ok(),
        Err(_) => {
            api.member.metrics.slow_watchers_cancelled.inc();
            false
        }
    }
}

struct WatchState {
    start_revision: i64,
    progress_notify: bool,
}

#[tonic::async_trait]
impl Watch for Api {
    type WatchStream = ReceiverStream<Result<pb::WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let inbound = request.into_inner();
        let (out, rx) = mpsc::channel(OUT_QUEUE);
        let api = self.clone();
        tokio::spawn(async move { api.serve_watch_stream(inbound, out).await });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

type Out = mpsc::Sender<Result<pb::WatchResponse, Status>>;

impl Api {
    async fn serve_watch_stream(&self, mut inbound: Streaming<pb::WatchRequest>, out: Out) {
        let (stream, mut hub) = self.member.sm.lock().hub.open_stream();
        let mut watches: HashMap<i64, WatchState> = HashMap::new();
        let mut next_id: i64 = 0;
        let mut progress_requests = 0usize;
        let interval = self
            .member
            .config
            .progress_notify_interval
            .max(Duration::from_millis(100));
        let mut progress_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            tokio::select! {
                request = inbound.message() => {
                    let Ok(Some(request)) = request else { break };
                    let keep_going = self
                        .on_request(request, stream, &mut watches, &mut next_id, &mut progress_requests, &out)
                        .await;
                    if !keep_going {
                        break;
                    }
                }
                message = hub.recv() => {
                    let Some(message) = message else {
                        self.cancel_slow(&watches, &out);
                        break;
                    };
                    if !self.deliver(message, &watches, &mut progress_requests, &out).await {
                        break;
                    }
                }
                _ = progress_tick.tick() => {
                    if watches.values().any(|w| w.progress_notify) {
                        let revision = self.current_revision();
                        self.member.sm.lock().hub.progress(stream, revision);
                    }
                }
            }
        }
        self.member.sm.lock().hub.close_stream(stream);
    }

    /// Handles one client request; false ends the stream.
    async fn on_request(
        &self,
        request: pb::WatchRequest,
        stream: u64,
        watches: &mut HashMap<i64, WatchState>,
        next_id: &mut i64,
        progress_requests: &mut usize,
        out: &Out,
    ) -> bool {
        use pb::watch_request::RequestUnion;
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => {
                self.create(create, stream, watches, next_id, out).await
            }
            Some(RequestUnion::CancelRequest(cancel)) => {
                watches.remove(&cancel.watch_id);
                self.member
                    .sm
                    .lock()
                    .hub
                    .remove_watch(stream, cancel.watch_id);
                let response = pb::WatchResponse {
                    header: Some(self.header(self.current_revision())),
                    watch_id: cancel.watch_id,
                    canceled: true,
                    ..Default::default()
                };
                send(self, out, response).await
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                *progress_requests += 1;
                let revision = self.current_revision();
                self.member.sm.lock().hub.progress(stream, revision);
                true
            }
            None => true,
        }
    }

    async fn create(
        &self,
        create: pb::WatchCreateRequest,
        stream: u64,
        watches: &mut HashMap<i64, WatchState>,
        next_id: &mut i64,
        out: &Out,
    ) -> bool {
        let refuse = |reason: String| pb::WatchResponse {
            header: Some(self.header(self.current_revision())),
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..Default::default()
        };
        if create.key.is_empty() {
            return send(self, out, refuse("etcdserver: key is not provided".into())).await;
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
            let reason =
                format!("etcdserver: watch_id {watch_id} is already in use on this stream");
            return send(self, out, refuse(reason)).await;
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
        let registered =
            self.member
                .sm
                .lock()
                .add_watch_from(stream, filter, create.start_revision);
        let created = |current: i64| pb::WatchResponse {
            header: Some(self.header(current)),
            watch_id,
            created: true,
            ..Default::default()
        };
        match registered {
            Err((current, compacted)) => {
                // etcd creates the watch, then cancels it naming the compaction revision.
                let cancel = pb::WatchResponse {
                    header: Some(self.header(current)),
                    watch_id,
                    canceled: true,
                    compact_revision: compacted,
                    cancel_reason: "etcdserver: mvcc: required revision has been compacted".into(),
                    ..Default::default()
                };
                send(self, out, created(current)).await && send(self, out, cancel).await
            }
            Ok(Registered {
                current,
                start,
                replay,
            }) => {
                watches.insert(
                    watch_id,
                    WatchState {
                        start_revision: start,
                        progress_notify: create.progress_notify,
                    },
                );
                if !send(self, out, created(current)).await {
                    return false;
                }
                self.send_replay(watch_id, current, replay, out).await
            }
        }
    }

    async fn send_replay(
        &self,
        watch_id: i64,
        current: i64,
        replay: Vec<(i64, Event)>,
        out: &Out,
    ) -> bool {
        let mut batch: Vec<crate::pb::mvccpb::Event> = Vec::new();
        let mut last_revision = 0;
        for (revision, event) in replay {
            if batch.len() >= REPLAY_BATCH && revision != last_revision {
                let events = std::mem::take(&mut batch);
                if !self.send_events(watch_id, current, events, out).await {
                    return false;
                }
            }
            last_revision = revision;
            batch.push(convert::event(event));
        }
        batch.is_empty() || self.send_events(watch_id, current, batch, out).await
    }

    async fn send_events(
        &self,
        watch_id: i64,
        revision: i64,
        events: Vec<crate::pb::mvccpb::Event>,
        out: &Out,
    ) -> bool {
        let response = pb::WatchResponse {
            header: Some(self.header(revision)),
            watch_id,
            events,
            ..Default::default()
        };
        send(self, out, response).await
    }

    async fn deliver(
        &self,
        message: HubMessage,
        watches: &HashMap<i64, WatchState>,
        progress_requests: &mut usize,
        out: &Out,
    ) -> bool {
        match message {
            HubMessage::Events { revision, matches } => {
                for (watch_id, events) in matches {
                    // A watch cancelled meanwhile, or one starting in the future.
                    let Some(state) = watches.get(&watch_id) else {
                        continue;
                    };
                    if revision < state.start_revision {
                        continue;
                    }
                    let events = events.into_iter().map(convert::event).collect();
                    if !self.send_events(watch_id, revision, events, out).await {
                        return false;
                    }
                }
                true
            }
            HubMessage::Progress { revision } => {
                if *progress_requests > 0 {
                    // Answer to a WatchProgressRequest: one response for the whole stream.
                    *progress_requests -= 1;
                    return self.send_events(-1, revision, Vec::new(), out).await;
                }
                for (watch_id, state) in watches {
                    if state.progress_notify
                        && !self.send_events(*watch_id, revision, Vec::new(), out).await
                    {
                        return false;
                    }
                }
                true
            }
        }
    }

    /// The hub dropped this stream because its client stopped reading: cancel every watch on
    /// it (the client learns why if it ever reads again) and end the stream.
    fn cancel_slow(&self, watches: &HashMap<i64, WatchState>, out: &Out) {
        for watch_id in watches.keys() {
            let _ = out.try_send(Ok(pb::WatchResponse {
                header: Some(self.header(self.current_revision())),
                watch_id: *watch_id,
                canceled: true,
                cancel_reason: "etcdserver: watch cancelled: the client did not read its events and fell too far behind".into(),
                ..Default::default()
            }));
        }
    }
}
