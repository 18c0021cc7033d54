//! The watch cache, one per resource, as kube-apiserver's cacher: the resource's objects and
//! a window of recent events in memory, fed by one store watch. Lists and watches are served
//! from here, so a thousand watchers cost the store one watch; each watcher gets a bounded
//! queue and is dropped when it falls behind, so one slow reader cannot slow the others or grow
//! memory.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, watch, Notify};

use crate::resources::ResourceInfo;
use crate::storage::backend::{Change, ChangeKind, WatchMessage};
use crate::storage::{Storage, StorageError};

/// Events kept for watches that resume from an older resourceVersion, by default (kube-apiserver
/// sizes its window by time; a fixed count keeps memory bounded and predictable).
pub const DEFAULT_HISTORY: usize = 10_000;
/// Events queued per watcher before it counts as too slow and is dropped.
const WATCHER_QUEUE: usize = 1_024;
/// How long a request that needs a newer revision than the cache has waits for it.
const FRESHNESS_WAIT: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// An object as the cache keeps it: its JSON value, for selectors and tables, and its bytes,
/// encoded once when it entered the cache, so a list copies bytes and a watch event costs one
/// encoding however many watchers receive it (kube-apiserver's cacher caches serializations
/// for the same reason).
#[derive(Debug)]
pub struct Cached {
    pub value: Value,
    pub json: bytes::Bytes,
}

impl Cached {
    pub fn new(value: Value) -> Self {
        let json = bytes::Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
        Self { value, json }
    }
}

impl std::ops::Deref for Cached {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.value
    }
}

/// A change to one object. `object` carries `metadata.resourceVersion` = `revision`;
/// for a deletion it is the last state of the object.
#[derive(Debug)]
pub struct CacheEvent {
    pub kind: EventKind,
    pub key: String,
    pub object: Arc<Cached>,
    pub previous: Option<Arc<Cached>>,
    pub revision: i64,
    /// The watch line of this event as each type a watcher may see it (`ADDED`, `MODIFIED`,
    /// `DELETED`), written by the first watcher that needs it and shared by the rest: a
    /// thousand watchers cost one copy of the object, not a thousand.
    lines: [OnceLock<Bytes>; 3],
}

impl CacheEvent {
    pub fn new(
        kind: EventKind,
        key: String,
        object: Arc<Cached>,
        previous: Option<Arc<Cached>>,
        revision: i64,
    ) -> Self {
        Self {
            kind,
            key,
            object,
            previous,
            revision,
            lines: Default::default(),
        }
    }

    /// `{"type":"<kind>","object":<the object's cached JSON>}\n`, made once per type.
    pub fn line(&self, kind: EventKind) -> Bytes {
        let slot = match kind {
            EventKind::Added => 0,
            EventKind::Modified => 1,
            EventKind::Deleted => 2,
        };
        self.lines[slot]
            .get_or_init(|| {
                let json = &self.object.json;
                let mut line = Vec::with_capacity(json.len() + 32);
                line.extend_from_slice(b"{\"type\":\"");
                line.extend_from_slice(kind.as_str().as_bytes());
                line.extend_from_slice(b"\",\"object\":");
                line.extend_from_slice(json);
                line.extend_from_slice(b"}\n");
                Bytes::from(line)
            })
            .clone()
    }
}

struct Watcher {
    prefix: String,
    sender: mpsc::Sender<Arc<CacheEvent>>,
}

struct State {
    objects: BTreeMap<String, Arc<Cached>>,
    history: VecDeque<Arc<CacheEvent>>,
    /// Events after this revision are all in `history` (a watch from older gets 410).
    oldest: i64,
    revision: i64,
    watchers: HashMap<u64, Watcher>,
    next_watcher: u64,
    /// False until the first list completed.
    ready: bool,
}

pub struct Cacher {
    pub info: &'static ResourceInfo,
    history_size: usize,
    state: Mutex<State>,
    /// The cache's revision, for requests waiting for it to catch up.
    revision: watch::Sender<i64>,
    /// Asks the store watch for a progress notification (to learn the current revision when
    /// this resource has no new events).
    progress_wanted: Notify,
    /// Objects this server is writing, by key, with the bytes it stores each as. When the
    /// store's event brings those very bytes back, the cache takes the object rather than
    /// parsing the bytes again (the parse was a tenth of a create's CPU). The bytes decide:
    /// another writer's value, or an entry a failed write left, is parsed as before.
    written: Mutex<HashMap<String, (Vec<u8>, Value)>>,
}

/// Writes awaiting their event, at most; beyond, writes are parsed from the event as before.
const WRITTEN_MAX: usize = 4_096;

/// What a new watch starts with: the events to send first, and the live queue.
pub struct Subscription {
    pub initial: Vec<Arc<CacheEvent>>,
    /// The cache's revision when the watch was registered.
    pub revision: i64,
    pub events: mpsc::Receiver<Arc<CacheEvent>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("too old resource version: {requested} ({oldest})")]
    TooOld { requested: i64, oldest: i64 },
    #[error("Too large resource version: {requested}, current resource version: {current}")]
    TooNew { requested: i64, current: i64 },
    #[error("the watch cache of {0} is not ready yet")]
    NotReady(&'static str),
}

fn with_revision(mut object: Value, revision: i64) -> Value {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
    object
}

/// Decodes a stored value; a value that is not JSON (written by someone else into the
/// registry prefix) is logged and skipped rather than served.
fn decode(key: &str, bytes: &[u8], revision: i64) -> Option<Value> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => Some(with_revision(v, revision)),
        Err(e) => {
            tracing::warn!(key, error = %e, "skipping a stored value that is not JSON");
            None
        }
    }
}

impl Cacher {
    pub fn new(info: &'static ResourceInfo, history_size: usize) -> Arc<Self> {
        Arc::new(Self {
            info,
            history_size: history_size.max(1),
            state: Mutex::new(State {
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                oldest: 0,
                revision: 0,
                watchers: HashMap::new(),
                next_watcher: 0,
                ready: false,
            }),
            revision: watch::channel(0).0,
            progress_wanted: Notify::new(),
            written: Mutex::new(HashMap::new()),
        })
    }

    /// Tells the cache that `object` is being stored under `key` as `stored` (its
    /// serialization): the event of that write need not be parsed.
    pub fn expect_write(&self, key: &str, stored: &[u8], mut object: Value) {
        // As the parsed bytes would be: the revision comes from the event.
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if written.len() < WRITTEN_MAX || written.contains_key(key) {
            written.insert(key.to_owned(), (stored.to_vec(), object));
        }
    }

    /// The write of `key` announced by `expect_write` did not happen.
    pub fn forget_write(&self, key: &str) {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// The object announced for `key`, if `stored` is the very bytes it was announced with.
    fn take_written(&self, key: &str, stored: &[u8]) -> Option<Value> {
        let (bytes, object) = self
            .written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key)?;
        if bytes != stored {
            return None;
        }
        // serde_json's float_roundtrip makes parsing what it serialized exact; the debug
        // builds (every test) check that the object is what the parse would have given.
        debug_assert_eq!(
            serde_json::from_slice::<Value>(stored).ok().as_ref(),
            Some(&object),
            "an announced write differs from its stored bytes at {key}"
        );
        Some(object)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; serving it is safe.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn revision(&self) -> i64 {
        *self.revision.borrow()
    }

    pub fn watcher_count(&self) -> usize {
        self.lock().watchers.len()
    }

    pub fn object_count(&self) -> usize {
        self.lock().objects.len()
    }

    /// Waits until the cache has seen `revision`, asking the store for progress meanwhile.
    pub async fn wait_for(&self, revision: i64) -> Result<(), CacheError> {
        let mut seen = self.revision.subscribe();
        let deadline = tokio::time::Instant::now() + FRESHNESS_WAIT;
        loop {
            let current = *seen.borrow_and_update();
            if current >= revision && self.lock().ready {
                return Ok(());
            }
            self.progress_wanted.notify_one();
            let wait = tokio::time::timeout_at(deadline, seen.changed()).await;
            match wait {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => {
                    let current = *seen.borrow();
                    if !self.lock().ready {
                        return Err(CacheError::NotReady(self.info.resource));
                    }
                    return Err(CacheError::TooNew {
                        requested: revision,
                        current,
                    });
                }
            }
        }
    }

    /// Every object under `prefix`, and the revision they are current at.
    pub fn list(&self, prefix: &str) -> Result<(Vec<Arc<Cached>>, i64), CacheError> {
        let state = self.lock();
        if !state.ready {
            return Err(CacheError::NotReady(self.info.resource));
        }
        let items = state
            .objects
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        Ok((items, state.revision))
    }

    /// One object by key, if the cache holds it.
    pub fn get(&self, key: &str) -> Option<Arc<Cached>> {
        self.lock().objects.get(key).cloned()
    }

    /// Registers a watcher of keys under `prefix`. `from`: None starts with the current state
    /// as ADDED events; Some(rv) starts with the retained events after `rv`.
    pub fn subscribe(&self, prefix: &str, from: Option<i64>) -> Result<Subscription, CacheError> {
        let mut state = self.lock();
        if !state.ready {
            return Err(CacheError::NotReady(self.info.resource));
        }
        let initial: Vec<Arc<CacheEvent>> = match from {
            None => state
                .objects
                .range(prefix.to_owned()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| {
                    Arc::new(CacheEvent::new(
                        EventKind::Added,
                        k.clone(),
                        v.clone(),
                        None,
                        state.revision,
                    ))
                })
                .collect(),
            Some(rv) if rv < state.oldest => {
                return Err(CacheError::TooOld {
                    requested: rv,
                    oldest: state.oldest,
                })
            }
            Some(rv) => state
                .history
                .iter()
                .filter(|e| e.revision > rv && e.key.starts_with(prefix))
                .cloned()
                .collect(),
        };
        let (sender, events) = mpsc::channel(WATCHER_QUEUE);
        let id = state.next_watcher;
        state.next_watcher += 1;
        state.watchers.insert(
            id,
            Watcher {
                prefix: prefix.to_owned(),
                sender,
            },
        );
        Ok(Subscription {
            initial,
            revision: state.revision,
            events,
        })
    }

    /// Records one change in `state` (under its lock) and queues it to the watchers of its
    /// key; the caller publishes the revision once every change of it is recorded.
    fn record(
        &self,
        state: &mut State,
        kind: EventKind,
        key: String,
        object: Arc<Cached>,
        previous: Option<Arc<Cached>>,
        revision: i64,
    ) {
        match kind {
            EventKind::Deleted => {
                state.objects.remove(&key);
            }
            _ => {
                state.objects.insert(key.clone(), object.clone());
            }
        }
        let event = Arc::new(CacheEvent::new(kind, key, object, previous, revision));
        state.history.push_back(event.clone());
        while state.history.len() > self.history_size {
            if let Some(dropped) = state.history.pop_front() {
                state.oldest = dropped.revision;
            }
        }
        // A watcher whose queue is full is too slow: dropping its sender ends its stream, and
        // its client re-watches from the last revision it saw, as after any disconnect.
        state.watchers.retain(|_, w| {
            if !event.key.starts_with(&w.prefix) {
                return !w.sender.is_closed();
            }
            w.sender.try_send(event.clone()).is_ok()
        });
    }

    /// Applies one response of the store's watch. A transaction writes several objects at one
    /// revision (a pod and its namespace's quotas), and the store never splits a revision
    /// across responses: every change is recorded under one lock and the revision published
    /// after the last, so no list, subscription or bookmark sees a revision half applied.
    fn apply_changes(&self, changes: Vec<Change>) {
        // Decoded and serialized outside the lock; a delete's last state needs the cached
        // object, which is read under it.
        let prepared: Vec<(String, Option<Arc<Cached>>, i64)> = changes
            .into_iter()
            .filter_map(|change| {
                let Change {
                    kind,
                    key,
                    value,
                    mod_revision: rev,
                } = change;
                let object = match kind {
                    ChangeKind::Delete => None,
                    ChangeKind::Put => {
                        let object = match self.take_written(&key, &value) {
                            Some(object) => with_revision(object, rev),
                            None => decode(&key, &value, rev)?,
                        };
                        Some(Arc::new(Cached::new(object)))
                    }
                };
                Some((key, object, rev))
            })
            .collect();
        let mut state = self.lock();
        let before = state.revision;
        let mut published = before;
        for (key, object, rev) in prepared {
            let previous = state.objects.get(&key).cloned();
            match (object, previous) {
                (Some(object), previous) => {
                    let kind = if previous.is_some() {
                        EventKind::Modified
                    } else {
                        EventKind::Added
                    };
                    self.record(&mut state, kind, key, object, previous, rev);
                }
                (None, Some(previous)) => {
                    let last = with_revision(previous.value.clone(), rev);
                    let last = Arc::new(Cached::new(last));
                    self.record(
                        &mut state,
                        EventKind::Deleted,
                        key,
                        last,
                        Some(previous),
                        rev,
                    );
                }
                // A delete of what the cache never held (it did not decode).
                (None, None) => continue,
            }
            published = published.max(rev);
        }
        state.revision = published;
        drop(state);
        if published > before {
            self.revision.send_replace(published);
        }
    }

    fn progress(&self, revision: i64) {
        let mut state = self.lock();
        if revision > state.revision {
            state.revision = revision;
            drop(state);
            self.revision.send_replace(revision);
        }
    }

    /// Fills the cache from a list at one revision; every existing watcher is dropped (their
    /// clients re-watch and may get 410 if they were behind).
    async fn relist(&self, storage: &Storage) -> Result<i64, StorageError> {
        let prefix = self.info.storage_prefix;
        let mut objects = BTreeMap::new();
        let mut revision = 0;
        let mut after: Option<String> = None;
        loop {
            let page = storage
                .list(prefix, after.as_deref(), 1000, revision)
                .await?;
            revision = page.revision;
            for item in &page.items {
                if let Some(v) = decode(&item.key, &item.value, item.mod_revision) {
                    objects.insert(item.key.clone(), Arc::new(Cached::new(v)));
                }
            }
            match page.items.last() {
                Some(last) if page.remaining > 0 => after = Some(last.key.clone()),
                _ => break,
            }
        }
        let mut state = self.lock();
        state.objects = objects;
        state.history.clear();
        state.oldest = revision;
        state.revision = revision;
        state.watchers.clear();
        state.ready = true;
        drop(state);
        self.revision.send_replace(revision);
        Ok(revision)
    }

    /// Keeps the cache in step with the store until the process ends: list, then watch from
    /// the list's revision; a compacted watch relists, a broken one resumes.
    pub async fn run(self: Arc<Self>, storage: Storage) {
        let mut from: Option<i64> = None;
        loop {
            let start = match from {
                Some(rv) => rv,
                None => match self.relist(&storage).await {
                    Ok(rv) => rv,
                    Err(e) => {
                        tracing::warn!(resource = self.info.resource, error = %e, "watch cache list failed");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                },
            };
            match self.follow(&storage, start).await {
                Ok(()) => from = Some(self.revision()),
                Err(StorageError::Compacted { .. }) => from = None,
                Err(e) => {
                    tracing::warn!(resource = self.info.resource, error = %e, "watch cache stream broke; resuming");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    from = Some(self.revision());
                }
            }
        }
    }

    /// Applies the store's events after `revision` until the stream ends.
    async fn follow(&self, storage: &Storage, revision: i64) -> Result<(), StorageError> {
        let mut stream = storage
            .watch(self.info.storage_prefix, revision + 1)
            .await?;
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            let message = tokio::select! {
                m = stream.next() => m,
                _ = self.progress_wanted.notified() => {
                    stream.request_progress().await?;
                    continue;
                }
                // A periodic progress request keeps bookmarks and consistent reads current
                // when this resource is idle.
                _ = tick.tick() => {
                    stream.request_progress().await?;
                    continue;
                }
            };
            let changes = match message? {
                None => return Ok(()),
                Some(WatchMessage::Progress(revision)) => {
                    self.progress(revision);
                    continue;
                }
                Some(WatchMessage::Changes(changes)) => changes,
            };
            self.apply_changes(changes);
        }
    }
}

#[cfg(test)]
mod tests;
