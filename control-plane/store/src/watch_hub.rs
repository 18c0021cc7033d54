//! Fan-out of applied events to watch streams.
//!
//! The hub lives inside the state machine's lock: events are published while the entry that
//! made them is applied, and a watch is registered (its history replayed) under the same lock.
//! So a watch sees every revision after its replay exactly once and in order, with no gap
//! between replay and live events.
//!
//! Each stream has one bounded queue ([`StreamQueue`]) that carries everything its watches
//! deliver, in one order: a watch's creation with its replay, its live events, progress
//! notifications, its cancellation. Its reader (a gRPC response body, or a watch in the
//! member's own process) pops from it directly, with no task or second channel between: at a
//! thousand watchers each event crosses that path a thousand times. A stream whose client does
//! not read fills its queue; the hub then empties it (freeing what it held at once, whether or
//! not the reader is ever polled again) and marks it slow, which cancels every watch on it.
//! Memory stays bounded and one slow client never slows the apply loop or the other watchers.
//!
//! Watches that select alike (the same range, filters and `prev_kv`) share one [`Selection`] of
//! each revision's events: a fan-out to a thousand alike watchers builds the events once, and
//! the API layer encodes them once, instead of once per watcher.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;

use crate::types::{Event, EventKind, KeyRange};

/// Messages a stream's queue carries, in revision order.
#[derive(Debug)]
pub enum HubMessage {
    /// The events of one revision that match each listed watch.
    Events {
        revision: i64,
        matches: Vec<(i64, Arc<Selection>)>,
    },
    /// Every event at or below `revision` was sent before this message (etcd's progress
    /// notification): to every watch that asked for them, or, `requested`, once to the
    /// stream, the answer to its reader's request.
    Progress { revision: i64, requested: bool },
    /// A watch was registered at revision `current`, from `start` on: `replay` is its history
    /// up to `current`, queued in the same critical section, so ahead of its first live event.
    Created {
        watch_id: i64,
        current: i64,
        start: i64,
        progress_notify: bool,
        replay: Vec<(i64, Event)>,
    },
    /// A watch asked to start at a revision compacted away (`compacted` is the oldest kept):
    /// it was not registered.
    Compacted {
        watch_id: i64,
        current: i64,
        compacted: i64,
    },
    /// A create request refused before anything was registered.
    Refused { revision: i64, reason: String },
    /// A watch removed at its reader's request.
    Cancelled { watch_id: i64, revision: i64 },
}

/// Why a stream's queue ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Its owner closed it (what was queued before is still read).
    Closed,
    /// Its reader fell [`STREAM_QUEUE`] messages behind; what was queued is gone.
    Slow,
    /// The member's state was replaced by a snapshot whose history does not reach back to what
    /// the stream delivered (what was queued is still read): its clients watch again from the
    /// last revision they received.
    Reset,
}

/// What a reader takes from its queue.
#[derive(Debug)]
pub enum Received {
    Message(HubMessage),
    Ended(End),
}

struct QueueState {
    messages: VecDeque<HubMessage>,
    end: Option<End>,
}

/// One stream's queue: the hub pushes under the state machine's lock, one reader pops.
pub struct StreamQueue {
    state: Mutex<QueueState>,
    reader: AtomicWaker,
}

impl StreamQueue {
    fn new() -> Self {
        Self {
            state: Mutex::new(QueueState {
                messages: VecDeque::new(),
                end: None,
            }),
            reader: AtomicWaker::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// False when the queue is full or ended; the message is not queued then.
    fn push(&self, message: HubMessage) -> bool {
        let mut state = self.state();
        if state.end.is_some() || state.messages.len() >= STREAM_QUEUE {
            return false;
        }
        state.messages.push_back(message);
        drop(state);
        self.reader.wake();
        true
    }

    /// Takes no more messages. The reader gets what is queued, then the end; except a slow
    /// one, whose queue is freed now: a reader that stopped reading may never be polled again.
    fn end(&self, why: End) {
        let mut state = self.state();
        state.end.get_or_insert(why);
        if why == End::Slow {
            state.messages = VecDeque::new();
        }
        drop(state);
        self.reader.wake();
    }

    /// The next message, or how the queue ended once it is empty.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Received> {
        let mut state = self.state();
        if let Some(message) = state.messages.pop_front() {
            return Poll::Ready(Received::Message(message));
        }
        if let Some(end) = state.end {
            return Poll::Ready(Received::Ended(end));
        }
        // Registered under the lock: a push after it wakes this waker.
        self.reader.register(cx.waker());
        Poll::Pending
    }

    pub async fn recv(&self) -> Received {
        poll_fn(|cx| self.poll_recv(cx)).await
    }
}

/// What one watch selects.
#[derive(Debug, Clone)]
pub struct WatchFilter {
    pub watch_id: i64,
    pub range: KeyRange,
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
}

impl WatchFilter {
    pub fn selects(&self, event: &Event) -> bool {
        let dropped = match event.kind {
            EventKind::Put => self.no_put,
            EventKind::Delete => self.no_delete,
        };
        !dropped && self.range.contains(&event.kv.key)
    }

    /// The event as this watch delivers it (without the previous version unless asked for).
    pub fn shape(&self, event: &Event) -> Event {
        Event {
            kind: event.kind,
            kv: event.kv.clone(),
            prev: if self.prev_kv {
                event.prev.clone()
            } else {
                None
            },
        }
    }
}

/// One revision's events as a watch delivers them, shared by every watch that selects alike.
#[derive(Debug, Clone)]
pub struct Selection {
    pub events: Vec<Event>,
    /// The API layer's wire encoding of `events`, made by the first stream that sends them and
    /// copied by the rest.
    encoded: OnceLock<bytes::Bytes>,
}

impl Selection {
    pub fn new(events: Vec<Event>) -> Self {
        Self {
            events,
            encoded: OnceLock::new(),
        }
    }

    /// `events` encoded by `encode`, which runs once: every caller must pass the same one (there
    /// is one API layer, with one encoding).
    pub fn encoded(&self, encode: impl FnOnce(&[Event]) -> bytes::Bytes) -> &[u8] {
        self.encoded.get_or_init(|| encode(&self.events))
    }
}

/// What makes two watches select alike: the same events, in the same shape.
#[derive(PartialEq, Eq, Hash)]
struct Alike<'a> {
    key: &'a [u8],
    range_end: &'a [u8],
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
}

impl<'a> From<&'a WatchFilter> for Alike<'a> {
    fn from(w: &'a WatchFilter) -> Self {
        Self {
            key: &w.range.key,
            range_end: &w.range.range_end,
            no_put: w.no_put,
            no_delete: w.no_delete,
            prev_kv: w.prev_kv,
        }
    }
}

struct Stream {
    queue: Arc<StreamQueue>,
    watches: Vec<WatchFilter>,
}

#[derive(Default)]
pub struct WatchHub {
    streams: HashMap<u64, Stream>,
    next_stream: u64,
}

/// Messages a stream may have queued before it counts as too slow.
pub const STREAM_QUEUE: usize = 4096;

impl WatchHub {
    /// Opens a stream; its watches are added with [`WatchHub::add_watch`].
    pub fn open_stream(&mut self) -> (u64, Arc<StreamQueue>) {
        let queue = Arc::new(StreamQueue::new());
        self.next_stream += 1;
        let id = self.next_stream;
        self.streams.insert(
            id,
            Stream {
                queue: queue.clone(),
                watches: Vec::new(),
            },
        );
        (id, queue)
    }

    /// False when the stream was dropped for being slow.
    pub fn add_watch(&mut self, stream: u64, filter: WatchFilter) -> bool {
        match self.streams.get_mut(&stream) {
            Some(s) => {
                s.watches.push(filter);
                true
            }
            None => false,
        }
    }

    pub fn remove_watch(&mut self, stream: u64, watch_id: i64) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.watches.retain(|w| w.watch_id != watch_id);
        }
    }

    pub fn close_stream(&mut self, stream: u64) {
        if let Some(s) = self.streams.remove(&stream) {
            s.queue.end(End::Closed);
        }
    }

    /// Ends every stream with [`End::Reset`] (their readers still get what was queued). Stream
    /// ids keep counting up: a request task of an ended stream must never reach a new one.
    pub fn reset(&mut self) {
        for (_, s) in self.streams.drain() {
            s.queue.end(End::Reset);
        }
    }

    fn drop_slow(&mut self, stream: u64) {
        if let Some(s) = self.streams.remove(&stream) {
            s.queue.end(End::Slow);
        }
    }

    pub fn watch_count(&self) -> usize {
        self.streams.values().map(|s| s.watches.len()).sum()
    }

    /// Sends one revision's events to every watch that selects some of them; returns how many
    /// streams were dropped for being full.
    pub fn publish(&mut self, revision: i64, events: &[Event]) -> usize {
        if events.is_empty() || self.streams.is_empty() {
            return 0;
        }
        // What each kind of watch selects of this revision, built once.
        let mut selections: HashMap<Alike<'_>, Arc<Selection>> = HashMap::new();
        let mut slow = Vec::new();
        for (id, stream) in &self.streams {
            let matches: Vec<(i64, Arc<Selection>)> = stream
                .watches
                .iter()
                .filter_map(|w| {
                    // Most watches select nothing of a revision: they cost no hashing.
                    if !events.iter().any(|e| w.selects(e)) {
                        return None;
                    }
                    let selection = selections.entry(Alike::from(w)).or_insert_with(|| {
                        let selected = events
                            .iter()
                            .filter(|e| w.selects(e))
                            .map(|e| w.shape(e))
                            .collect();
                        Arc::new(Selection::new(selected))
                    });
                    Some((w.watch_id, selection.clone()))
                })
                .collect();
            if matches.is_empty() {
                continue;
            }
            if !stream.queue.push(HubMessage::Events { revision, matches }) {
                slow.push(*id);
            }
        }
        drop(selections);
        for id in &slow {
            self.drop_slow(*id);
        }
        slow.len()
    }

    /// Queues `message` on `stream`, after everything already published to it. `Err(Slow)`
    /// when the queue was full (the stream is dropped, its watches cancelled), `Err(Closed)`
    /// when the stream is not open.
    pub fn send(&mut self, stream: u64, message: HubMessage) -> Result<(), End> {
        let Some(s) = self.streams.get(&stream) else {
            return Err(End::Closed);
        };
        if !s.queue.push(message) {
            self.drop_slow(stream);
            return Err(End::Slow);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(revision: i64) -> HubMessage {
        HubMessage::Progress {
            revision,
            requested: false,
        }
    }

    fn revision_of(received: Received) -> i64 {
        match received {
            Received::Message(HubMessage::Progress { revision, .. }) => revision,
            other => panic!("expected a progress message, got {other:?}"),
        }
    }

    fn filter(watch_id: i64, key: &str, range_end: &str, prev_kv: bool) -> WatchFilter {
        WatchFilter {
            watch_id,
            range: KeyRange {
                key: key.as_bytes().to_vec(),
                range_end: range_end.as_bytes().to_vec(),
            },
            no_put: false,
            no_delete: false,
            prev_kv,
        }
    }

    fn put(key: &str, revision: i64) -> Event {
        let kv = crate::types::KeyValue {
            key: key.as_bytes().to_vec(),
            value: bytes::Bytes::from_static(b"v"),
            create_revision: 2,
            mod_revision: revision,
            version: 2,
            lease: 0,
        };
        Event {
            kind: EventKind::Put,
            prev: Some(crate::types::KeyValue {
                mod_revision: 2,
                ..kv.clone()
            }),
            kv,
        }
    }

    /// Each watch's selection from the next message on `queue`, by watch id.
    fn selections(received: Received) -> Vec<(i64, Arc<Selection>)> {
        match received {
            Received::Message(HubMessage::Events { matches, .. }) => matches,
            other => panic!("expected events, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn alike_watches_share_one_selection_and_the_rest_get_their_own() {
        let mut hub = WatchHub::default();
        let (a, a_queue) = hub.open_stream();
        let (b, b_queue) = hub.open_stream();
        assert!(hub.add_watch(a, filter(0, "/p/", "/p0", false)));
        assert!(hub.add_watch(b, filter(0, "/p/", "/p0", false)));
        // Same range, but with the previous versions: its own selection.
        assert!(hub.add_watch(b, filter(1, "/p/", "/p0", true)));
        // Only one of the two keys.
        assert!(hub.add_watch(b, filter(2, "/p/x", "", false)));
        // Neither key: not sent anything.
        assert!(hub.add_watch(b, filter(3, "/q/", "/q0", false)));
        assert_eq!(hub.publish(9, &[put("/p/x", 9), put("/p/y", 9)]), 0);

        let on_a = selections(a_queue.recv().await);
        let on_b = selections(b_queue.recv().await);
        assert_eq!(on_a.len(), 1);
        let ids: Vec<i64> = on_b.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [0, 1, 2]);
        assert!(Arc::ptr_eq(&on_a[0].1, &on_b[0].1), "alike watches share");
        assert!(!Arc::ptr_eq(&on_b[0].1, &on_b[1].1));
        let keys = |s: &Selection| -> Vec<(Vec<u8>, bool)> {
            s.events
                .iter()
                .map(|e| (e.kv.key.clone(), e.prev.is_some()))
                .collect()
        };
        let both = vec![(b"/p/x".to_vec(), false), (b"/p/y".to_vec(), false)];
        assert_eq!(keys(&on_a[0].1), both);
        assert_eq!(
            keys(&on_b[1].1),
            [(b"/p/x".to_vec(), true), (b"/p/y".to_vec(), true)]
        );
        assert_eq!(keys(&on_b[2].1), [(b"/p/x".to_vec(), false)]);
    }

    #[tokio::test]
    async fn a_reset_ends_every_stream_after_what_it_queued_and_ids_are_never_reused() {
        let mut hub = WatchHub::default();
        let (old, queue) = hub.open_stream();
        assert!(hub.add_watch(old, filter(0, "/p/", "/p0", false)));
        hub.send(old, progress(4)).expect("queued");
        hub.reset();
        assert_eq!(revision_of(queue.recv().await), 4);
        assert!(matches!(queue.recv().await, Received::Ended(End::Reset)));
        // The old stream's request task finds its stream gone, not a newcomer's.
        let (new, _new_queue) = hub.open_stream();
        assert_ne!(new, old);
        assert!(!hub.add_watch(old, filter(1, "/p/", "/p0", false)));
        assert_eq!(hub.send(old, progress(5)).unwrap_err(), End::Closed);
        assert_eq!(hub.watch_count(), 0);
    }

    #[tokio::test]
    async fn a_closed_stream_is_read_to_its_end() {
        let mut hub = WatchHub::default();
        let (stream, queue) = hub.open_stream();
        hub.send(stream, progress(1)).expect("queued");
        hub.send(stream, progress(2)).expect("queued");
        hub.close_stream(stream);
        assert_eq!(hub.send(stream, progress(3)).unwrap_err(), End::Closed);
        assert_eq!(revision_of(queue.recv().await), 1);
        assert_eq!(revision_of(queue.recv().await), 2);
        assert!(matches!(queue.recv().await, Received::Ended(End::Closed)));
    }

    #[tokio::test]
    async fn a_full_queue_is_freed_and_its_reader_told_it_was_slow() {
        let mut hub = WatchHub::default();
        let (stream, queue) = hub.open_stream();
        let (other, other_queue) = hub.open_stream();
        for revision in 0..STREAM_QUEUE as i64 {
            hub.send(stream, progress(revision)).expect("room");
        }
        assert_eq!(hub.send(stream, progress(-1)).unwrap_err(), End::Slow);
        // Dropped from the hub: nothing more is queued, and what was is gone already.
        assert_eq!(hub.send(stream, progress(-2)).unwrap_err(), End::Closed);
        assert!(queue.state().messages.is_empty());
        assert!(matches!(queue.recv().await, Received::Ended(End::Slow)));
        // Its neighbour is untouched.
        hub.send(other, progress(9)).expect("queued");
        assert_eq!(revision_of(other_queue.recv().await), 9);
    }

    #[tokio::test]
    async fn a_waiting_reader_is_woken_by_the_next_message() {
        let mut hub = WatchHub::default();
        let (stream, queue) = hub.open_stream();
        let reader = tokio::spawn(async move { revision_of(queue.recv().await) });
        tokio::task::yield_now().await;
        hub.send(stream, progress(5)).expect("queued");
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
            .await
            .expect("woken")
            .expect("reader");
        assert_eq!(got, 5);
    }
}
