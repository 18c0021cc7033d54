//! watch, served from the watch cache: newline-delimited `{"type":…,"object":…}` events, with
//! the resourceVersion semantics of kube-apiserver ("" and "0" start with the current state,
//! an exact version resumes after it, an expired one gets an ERROR event with a 410 Status),
//! selectors applied to both sides of a change (an object leaving a selector is a DELETED to
//! that watcher), bookmarks, and `sendInitialEvents` ending with the initial-events-end
//! bookmark.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::read::Filter;
use super::{Api, Request};
use crate::cache::{CacheError, CacheEvent, EventKind};
use crate::reply::{negotiate, Body, ByteStream, Format, Reply};
use crate::request::ResourceRequest;
use crate::resources::ResourceInfo;
use crate::status::ApiError;

/// How often a watcher that allowed bookmarks hears the current revision.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);
/// A watch without `timeoutSeconds` ends after this (kube-apiserver: --min-request-timeout
/// 1800 s, randomized up to twice that, so clients re-watch and reconnect to other servers).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

struct Watch {
    info: &'static ResourceInfo,
    filter: Filter,
    name: Option<String>,
    /// Events at or before this revision were in the client's list (or initial state).
    after: i64,
    format: Format,
    first_table: bool,
}

impl Watch {
    fn selected(&self, object: &Value) -> bool {
        if let Some(name) = &self.name {
            if crate::objects::name_of(object) != name {
                return false;
            }
        }
        self.filter.matches(object)
    }

    /// The event type this watcher sees for a change, if any: selector transitions become
    /// ADDED or DELETED.
    fn project(&self, event: &CacheEvent) -> Option<EventKind> {
        let now = self.selected(&event.object);
        match event.kind {
            EventKind::Deleted => now.then_some(EventKind::Deleted),
            EventKind::Added => now.then_some(EventKind::Added),
            EventKind::Modified => {
                let before = event.previous.as_deref().is_some_and(|p| self.selected(p));
                match (before, now) {
                    (true, true) => Some(EventKind::Modified),
                    (false, true) => Some(EventKind::Added),
                    (true, false) => Some(EventKind::Deleted),
                    (false, false) => None,
                }
            }
        }
    }

    /// One event line. In JSON the line is the event's own, written once for every watcher;
    /// a Table is built per watcher (its columns depend on the request), and so is the
    /// metadata of a `PartialObjectMetadata` watch (kube's metadata informers: the garbage
    /// collector's).
    fn encode(&mut self, kind: EventKind, event: &CacheEvent) -> Bytes {
        let object = &event.object;
        if self.format != Format::Table {
            // A converted resource: the cache's bytes are the stored form's.
            let converted = (self.info.stored_as.is_some())
                .then(|| self.info.from_storage(object.value.clone()));
            return match (self.format, &converted) {
                (Format::Metadata, converted) => line_of(
                    kind.as_str(),
                    &super::partial_metadata(converted.as_ref().unwrap_or(&object.value)),
                ),
                (_, Some(converted)) => line_of(kind.as_str(), converted),
                (_, None) => event.line(kind),
            };
        }
        let mut table = crate::table::to_table(
            self.info.resource,
            std::slice::from_ref(&object.value),
            json!({}),
            crate::table::IncludeObject::Metadata,
            jiff::Timestamp::now(),
        );
        // Column definitions travel with the first event only, as kube-apiserver sends them.
        if !self.first_table {
            table["columnDefinitions"] = json!([]);
        }
        self.first_table = false;
        line_of(kind.as_str(), &table)
    }

    fn bookmark(&mut self, revision: i64, initial_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        // A metadata watch gets its bookmarks in its own representation too, as kube-apiserver
        // transforms every object of the stream.
        let object = if self.format == Format::Metadata {
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata})
        } else {
            json!({"kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": metadata})
        };
        line_of("BOOKMARK", &object)
    }
}

/// Bytes of queued events one send may carry; past it the rest wait for the next send, so a
/// watcher far behind still writes in bounded pieces.
const BATCH_BYTES: usize = 256 * 1024;

/// Lines going out in one send: one line is sent as it is (the event's shared bytes), more
/// are joined.
#[derive(Default)]
struct Batch {
    first: Option<Bytes>,
    joined: Vec<u8>,
}

impl Batch {
    fn push(&mut self, line: Bytes) {
        match self.first.take() {
            None if self.joined.is_empty() => self.first = Some(line),
            None => self.joined.extend_from_slice(&line),
            Some(first) => {
                self.joined.extend_from_slice(&first);
                self.joined.extend_from_slice(&line);
            }
        }
    }

    fn len(&self) -> usize {
        self.first.as_ref().map_or(self.joined.len(), Bytes::len)
    }

    fn finish(self) -> Option<Bytes> {
        match self.first {
            Some(first) => Some(first),
            None if self.joined.is_empty() => None,
            None => Some(Bytes::from(self.joined)),
        }
    }
}

fn line_of(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn error_event(error: &ApiError) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": "ERROR", "object": error.to_status()}))
        .unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

pub(super) async fn watch(
    api: &Arc<Api>,
    target: &ResourceRequest,
    request: &Request,
) -> Result<Reply, ApiError> {
    let info = target.info;
    let query = &request.query;
    let format = match negotiate(request.accept.as_deref())? {
        format @ (Format::Table | Format::Metadata) => format,
        Format::Json | Format::Yaml => Format::Json,
    };
    let filter = Filter::parse(info, request)?;
    let bookmarks = query.flag("allowWatchBookmarks")?;
    let send_initial = match query.get("sendInitialEvents") {
        None | Some("") => None,
        Some(_) => Some(query.flag("sendInitialEvents")?),
    };
    let rv_match = query.get("resourceVersionMatch").unwrap_or("");
    if send_initial.is_some() && rv_match != "NotOlderThan" {
        return Err(ApiError::bad_request(
            "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan",
        ));
    }
    if !matches!(rv_match, "" | "NotOlderThan") {
        return Err(ApiError::bad_request(format!(
            "resourceVersionMatch: Forbidden: resourceVersionMatch {rv_match:?} is forbidden for watch"
        )));
    }
    let requested = match query.get("resourceVersion").unwrap_or("") {
        "" => None,
        text => Some(text.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!(
                "resourceVersion: Invalid value: {text:?}: must be an integer"
            ))
        })?),
    };
    let timeout = match query.int("timeoutSeconds")? {
        Some(s) if s > 0 => Duration::from_secs(s as u64),
        Some(_) => {
            return Err(ApiError::bad_request(
                "timeoutSeconds: Invalid value: must be positive",
            ))
        }
        None => DEFAULT_TIMEOUT,
    };
    let cache = api.cache(info).clone();
    let prefix = info.list_prefix(target.namespace.as_deref());

    // Which history the watcher starts with.
    let initial_state = match (send_initial, requested) {
        (Some(initial), _) => initial,
        (None, None) | (None, Some(0)) => true,
        (None, Some(_)) => false,
    };
    match requested {
        Some(0) => {}
        Some(rv) => cache.wait_for(rv).await?,
        None => cache.wait_for(api.storage.revision().await?).await?,
    }
    let from = if initial_state {
        None
    } else {
        requested.or(Some(cache.revision()))
    };

    let subscription = match cache.subscribe(&prefix, from) {
        Ok(s) => s,
        Err(e @ CacheError::TooOld { .. }) => {
            // Kubernetes answers an expired version inside the stream, with 200 and an ERROR
            // event carrying 410, which is what reflectors look for to relist.
            let line = error_event(&ApiError::gone(e.to_string()));
            return Ok(stream_reply(Box::pin(futures::stream::once(async {
                line
            }))));
        }
        Err(e) => return Err(e.into()),
    };
    let watch = Watch {
        info,
        filter,
        name: target.name.clone(),
        after: from.unwrap_or(0),
        format,
        first_table: true,
    };
    let mut tick = tokio::time::interval(BOOKMARK_INTERVAL);
    // Bookmarks go out every interval after the start, not at it.
    tick.reset();
    let stream = WatchStream {
        last_sent: subscription.revision,
        revision_at_start: subscription.revision,
        initial: subscription.initial.into_iter(),
        events: subscription.events,
        initial_state,
        initial_end_bookmark: send_initial == Some(true),
        watch,
        cache,
        bookmarks,
        tick,
        deadline: Box::pin(tokio::time::sleep(timeout)),
        metrics: api.metrics.clone(),
        ended: false,
    };
    Ok(stream_reply(Box::pin(stream)))
}

fn stream_reply(body: ByteStream) -> Reply {
    Reply {
        code: 200,
        body: Body::Stream(body, "application/json"),
        headers: Vec::new(),
    }
}

/// One watcher's stream, polled by its connection: the initial events (encoded as the
/// connection takes them, so a large initial state is never all encoded at once), then the
/// live queue from the cache, bookmarks, and the end at the timeout.
struct WatchStream {
    watch: Watch,
    initial: std::vec::IntoIter<Arc<CacheEvent>>,
    initial_state: bool,
    /// `sendInitialEvents=true`: the initial events end with a bookmark saying so.
    initial_end_bookmark: bool,
    /// The cache's revision when the watch registered.
    revision_at_start: i64,
    events: mpsc::Receiver<Arc<CacheEvent>>,
    last_sent: i64,
    cache: Arc<crate::cache::Cacher>,
    bookmarks: bool,
    tick: tokio::time::Interval,
    deadline: Pin<Box<tokio::time::Sleep>>,
    metrics: Arc<crate::metrics::Metrics>,
    ended: bool,
}

impl WatchStream {
    /// The next piece of the initial state, up to [`BATCH_BYTES`], and then its end.
    fn next_initial(&mut self) -> Option<Bytes> {
        let mut batch = Batch::default();
        for event in self.initial.by_ref() {
            if event.revision <= self.watch.after && !self.initial_state {
                continue;
            }
            if let Some(kind) = self.watch.project(&event) {
                batch.push(self.watch.encode(kind, &event));
            }
            self.last_sent = self.last_sent.max(event.revision);
            if batch.len() >= BATCH_BYTES {
                return batch.finish();
            }
        }
        if self.initial_state {
            self.initial_state = false;
            self.watch.after = self.revision_at_start;
            if std::mem::take(&mut self.initial_end_bookmark) {
                batch.push(self.watch.bookmark(self.revision_at_start, true));
            }
        }
        batch.finish()
    }
}

impl futures::Stream for WatchStream {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        // Read before the queue is drained: the cache queues an event before it publishes its
        // revision, so every event up to this revision is queued by now. A bookmark at a
        // revision read after the drain could run ahead of an event queued meanwhile; were
        // the stream to end then (its deadline), the client would resume past that event.
        let settled = this.cache.revision();
        if this.initial.len() > 0 || this.initial_state {
            if let Some(bytes) = this.next_initial() {
                return Poll::Ready(Some(bytes));
            }
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.ended = true;
            return Poll::Ready(None);
        }
        loop {
            match this.events.poll_recv(cx) {
                Poll::Ready(None) => {
                    // The cache dropped this watcher (too slow, or it relisted): ending the
                    // stream makes the client re-watch.
                    this.metrics.dropped_watchers.inc();
                    this.ended = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(event)) => {
                    // Events that queued since the connection last asked go out as one
                    // write: under a burst a watcher costs one poll and one frame for many
                    // events instead of one each.
                    let mut batch = Batch::default();
                    let mut next = Some(event);
                    while let Some(event) = next.take() {
                        if event.revision > this.watch.after {
                            this.last_sent = event.revision;
                            if let Some(kind) = this.watch.project(&event) {
                                batch.push(this.watch.encode(kind, &event));
                            }
                        }
                        if batch.len() < BATCH_BYTES {
                            next = this.events.try_recv().ok();
                        }
                    }
                    if let Some(bytes) = batch.finish() {
                        return Poll::Ready(Some(bytes));
                    }
                    // Nothing this watcher selects: look at the queue again (and register
                    // for its next event).
                }
                Poll::Pending => break,
            }
        }
        if this.bookmarks {
            while this.tick.poll_tick(cx).is_ready() {
                if settled > this.last_sent && settled > this.watch.after {
                    this.last_sent = settled;
                    return Poll::Ready(Some(this.watch.bookmark(settled, false)));
                }
            }
        }
        Poll::Pending
    }
}
