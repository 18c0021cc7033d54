//! watch, served from the watch cache: newline-delimited `{"type":…,"object":…}` events, with
//! the resourceVersion semantics of kube-apiserver ("" and "0" start with the current state,
//! an exact version resumes after it, an expired one gets an ERROR event with a 410 Status),
//! selectors applied to both sides of a change (an object leaving a selector is a DELETED to
//! that watcher), bookmarks, and `sendInitialEvents` ending with the initial-events-end
//! bookmark.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::read::Filter;
use super::{Api, Request};
use crate::cache::{CacheError, CacheEvent, EventKind};
use crate::reply::{negotiate, Body, Format, Reply};
use crate::request::ResourceRequest;
use crate::resources::ResourceInfo;
use crate::status::ApiError;

/// How often a watcher that allowed bookmarks hears the current revision.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);
/// A watch without `timeoutSeconds` ends after this (kube-apiserver: --min-request-timeout
/// 1800 s, randomized up to twice that, so clients re-watch and reconnect to other servers).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// Encoded events buffered per watch connection before the sender waits on the client.
const CONNECTION_BUFFER: usize = 64;

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
    /// a Table is built per watcher (its columns depend on the request).
    fn encode(&mut self, kind: EventKind, event: &CacheEvent) -> Bytes {
        let object = &event.object;
        if self.format != Format::Table && self.info.stored_as.is_some() {
            // A converted resource: the cache's bytes are the stored form's.
            return line_of(kind.as_str(), &self.info.from_storage(object.value.clone()));
        }
        if self.format != Format::Table {
            return event.line(kind);
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
        let object = json!({"kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": metadata});
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
        Format::Table => Format::Table,
        _ => Format::Json,
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

    let (tx, rx) = mpsc::channel::<Bytes>(CONNECTION_BUFFER);
    let subscription = match cache.subscribe(&prefix, from) {
        Ok(s) => Some(s),
        Err(e @ CacheError::TooOld { .. }) => {
            // Kubernetes answers an expired version inside the stream, with 200 and an ERROR
            // event carrying 410, which is what reflectors look for to relist.
            let _ = tx.try_send(error_event(&ApiError::gone(e.to_string())));
            None
        }
        Err(e) => return Err(e.into()),
    };
    let mut state = Watch {
        info,
        filter,
        name: target.name.clone(),
        after: from.unwrap_or(0),
        format,
        first_table: true,
    };
    if let Some(mut subscription) = subscription {
        let metrics = api.metrics.clone();
        tokio::spawn(async move {
            let mut last_sent = subscription.revision;
            for event in &subscription.initial {
                if event.revision <= state.after && !initial_state {
                    continue;
                }
                if let Some(kind) = state.project(event) {
                    if tx.send(state.encode(kind, event)).await.is_err() {
                        return;
                    }
                }
                last_sent = last_sent.max(event.revision);
            }
            if initial_state {
                state.after = subscription.revision;
                if send_initial == Some(true) {
                    let mark = state.bookmark(subscription.revision, true);
                    if tx.send(mark).await.is_err() {
                        return;
                    }
                }
            }
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut tick = tokio::time::interval(BOOKMARK_INTERVAL);
            tick.tick().await;
            loop {
                tokio::select! {
                    event = subscription.events.recv() => {
                        let Some(event) = event else {
                            // The cache dropped this watcher (too slow, or it relisted):
                            // ending the stream makes the client re-watch.
                            metrics.dropped_watchers.inc();
                            return;
                        };
                        // Events that queued while this task waited go out as one write:
                        // under a burst a connection costs one wake-up and one send for
                        // many events instead of one each.
                        let mut batch = Batch::default();
                        let mut next = Some(event);
                        while let Some(event) = next.take() {
                            if event.revision > state.after {
                                last_sent = event.revision;
                                if let Some(kind) = state.project(&event) {
                                    batch.push(state.encode(kind, &event));
                                }
                            }
                            if batch.len() < BATCH_BYTES {
                                next = subscription.events.try_recv().ok();
                            }
                        }
                        if let Some(bytes) = batch.finish() {
                            if tx.send(bytes).await.is_err() {
                                return;
                            }
                        }
                    }
                    _ = tick.tick(), if bookmarks => {
                        let revision = cache.revision();
                        if revision > last_sent && revision > state.after {
                            last_sent = revision;
                            let mark = state.bookmark(revision, false);
                            if tx.send(mark).await.is_err() {
                                return;
                            }
                        }
                    }
                    _ = &mut deadline => return,
                    _ = tx.closed() => return,
                }
            }
        });
    }
    Ok(Reply {
        code: 200,
        body: Body::Stream(rx, "application/json"),
        headers: Vec::new(),
    })
}
