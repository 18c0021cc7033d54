//! A watch for a reader in the member's own process (the API server's watch cache on a
//! member), with the guarantees the gRPC Watch service gives — history replayed and the watch
//! registered in one critical section, then every later revision once and in order, progress
//! notifications after every event at or below them — without encoding anything.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::member::Member;
use crate::types::{Event, KeyRange};
use crate::watch_hub::{HubMessage, Received, StreamQueue, WatchFilter};

/// The watch's id within its hub stream: the stream carries this one watch only.
const WATCH_ID: i64 = 0;

/// What a local watch reports, in revision order.
#[derive(Debug, PartialEq, Eq)]
pub enum LocalMessage {
    /// The selected events of one revision.
    Events { revision: i64, events: Vec<Event> },
    /// Every event at or below `revision` was reported before this.
    Progress { revision: i64 },
}

/// One watch of a key range; dropping it unregisters it.
pub struct LocalWatch {
    member: Arc<Member>,
    stream: u64,
    start: i64,
    replay: VecDeque<(i64, Event)>,
    live: Arc<StreamQueue>,
}

impl LocalWatch {
    /// Watches `range` from `start` (inclusive; 0 or less: from the next revision). `Err` holds
    /// the compaction revision when `start` is older than the history kept.
    pub fn open(member: Arc<Member>, range: KeyRange, start: i64) -> Result<Self, i64> {
        let filter = WatchFilter {
            watch_id: WATCH_ID,
            range,
            no_put: false,
            no_delete: false,
            prev_kv: false,
        };
        let mut inner = member.sm.lock();
        let (stream, live) = inner.hub.open_stream();
        let registered = match inner.add_watch_from(stream, filter, start) {
            Ok(registered) => registered,
            Err((_, compacted)) => {
                inner.hub.close_stream(stream);
                return Err(compacted);
            }
        };
        drop(inner);
        Ok(Self {
            member,
            stream,
            start: registered.start,
            replay: registered.replay.into(),
            live,
        })
    }

    /// The next message; `None` when the watch ended: the hub dropped it because its reader
    /// fell too far behind, or the member installed a snapshot whose history does not reach
    /// back to what it delivered. Either way the reader watches again from the revision it has.
    pub async fn next(&mut self) -> Option<LocalMessage> {
        if let Some((revision, first)) = self.replay.pop_front() {
            // A revision's events travel together, as etcd never splits one.
            let mut events = vec![first];
            while self.replay.front().is_some_and(|(r, _)| *r == revision) {
                if let Some((_, event)) = self.replay.pop_front() {
                    events.push(event);
                }
            }
            return Some(LocalMessage::Events { revision, events });
        }
        loop {
            let message = match self.live.recv().await {
                Received::Message(message) => message,
                Received::Ended(_) => return None,
            };
            match message {
                HubMessage::Events { revision, matches } => {
                    // A watch starting in the future skips what precedes its start.
                    if revision < self.start {
                        continue;
                    }
                    let events: Vec<Event> = matches
                        .into_iter()
                        .filter(|(id, _)| *id == WATCH_ID)
                        .flat_map(|(_, selection)| Arc::unwrap_or_clone(selection).events)
                        .collect();
                    if !events.is_empty() {
                        return Some(LocalMessage::Events { revision, events });
                    }
                }
                HubMessage::Progress { revision, .. } => {
                    return Some(LocalMessage::Progress { revision })
                }
                // Queued only by the gRPC Watch service, for its streams.
                HubMessage::Created { .. }
                | HubMessage::Compacted { .. }
                | HubMessage::Refused { .. }
                | HubMessage::Cancelled { .. } => {}
            }
        }
    }

    /// Asks for a progress notification at the current revision: it comes after every event
    /// already queued for this watch (etcd's WatchProgressRequest).
    pub fn request_progress(&self) {
        // A watch the hub dropped ends at its next read; nothing to do here.
        let _ = self
            .member
            .sm
            .lock()
            .queue_now(self.stream, |revision| HubMessage::Progress {
                revision,
                requested: true,
            });
    }
}

impl Drop for LocalWatch {
    fn drop(&mut self) {
        self.member.sm.lock().hub.close_stream(self.stream);
    }
}
