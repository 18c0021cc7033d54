//! Fan-out of applied events to watch streams.
//!
//! The hub lives inside the state machine's lock: events are published while the entry that
//! made them is applied, and a watch is registered (its history replayed) under the same lock.
//! So a watch sees every revision after its replay exactly once and in order, with no gap
//! between replay and live events.
//!
//! Each client stream has one bounded channel. A stream whose client does not read fills it;
//! the hub then drops the stream's sender, which cancels every watch on it. Memory stays
//! bounded and one slow client never slows the apply loop or the other watchers.

use std::collections::HashMap;

use tokio::sync::mpsc;

use crate::types::{Event, EventKind, KeyRange};

/// Messages a stream's channel carries, in revision order.
#[derive(Debug)]
pub enum HubMessage {
    /// The events of one revision that match each listed watch.
    Events {
        revision: i64,
        matches: Vec<(i64, Vec<Event>)>,
    },
    /// Every event at or below `revision` was sent before this message (etcd's progress
    /// notification).
    Progress { revision: i64 },
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

struct Stream {
    tx: mpsc::Sender<HubMessage>,
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
    pub fn open_stream(&mut self) -> (u64, mpsc::Receiver<HubMessage>) {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        self.next_stream += 1;
        let id = self.next_stream;
        self.streams.insert(
            id,
            Stream {
                tx,
                watches: Vec::new(),
            },
        );
        (id, rx)
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
        self.streams.remove(&stream);
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
        let mut slow = Vec::new();
        for (id, stream) in &self.streams {
            let matches: Vec<(i64, Vec<Event>)> = stream
                .watches
                .iter()
                .filter_map(|w| {
                    let selected: Vec<Event> = events
                        .iter()
                        .filter(|e| w.selects(e))
                        .map(|e| w.shape(e))
                        .collect();
                    (!selected.is_empty()).then_some((w.watch_id, selected))
                })
                .collect();
            if matches.is_empty() {
                continue;
            }
            if stream
                .tx
                .try_send(HubMessage::Events { revision, matches })
                .is_err()
            {
                slow.push(*id);
            }
        }
        for id in &slow {
            self.streams.remove(id);
        }
        slow.len()
    }

    /// Queues a progress notification on one stream (in order after every event it was sent).
    pub fn progress(&mut self, stream: u64, revision: i64) -> bool {
        let Some(s) = self.streams.get(&stream) else {
            return false;
        };
        if s.tx.try_send(HubMessage::Progress { revision }).is_err() {
            self.streams.remove(&stream);
            return false;
        }
        true
    }
}
