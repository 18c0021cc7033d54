//! The keyspace's history: every event since the compaction point, in revision order, kept in
//! shared chunks.
//!
//! A snapshot copies the state under the state machine's lock, and history is most of it:
//! copied event by event (two keys allocated per event), 100,000 events held every apply for
//! 30–100 ms. Here a full chunk is frozen behind an `Arc`, so a copy shares every full chunk and
//! clones only the open one (at most [`CHUNK`] events). Growth no longer moves the whole
//! history either: a `VecDeque` of 200,000 events reallocated and copied 40 MB at each
//! doubling, under the same lock.
//!
//! Compaction drops whole chunks from the front and skips into the first one; a chunk's
//! memory goes when the last of its events is compacted. Serialized, history is the plain
//! sequence of `(revision, event)` it always was, so snapshots and backups do not change.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::types::Event;

/// Events per frozen chunk.
pub const CHUNK: usize = 1024;

/// One event with its revision.
pub type Revisioned = (i64, Event);

#[derive(Clone, Default)]
pub struct History {
    /// Full chunks, oldest first; never changed once frozen (shared with snapshots' copies).
    frozen: VecDeque<Arc<Vec<Revisioned>>>,
    /// Events of the first frozen chunk already compacted away.
    skip: usize,
    /// The chunk being filled.
    open: Vec<Revisioned>,
    /// [`event_bytes`] of every live event, kept as events come and go: `etcdctl endpoint
    /// status` and every scrape ask for it, and walking the history under the state
    /// machine's lock to answer would hold applies up for as long.
    bytes: usize,
}

/// An event's approximate share of the store's size: its key and value, and a fixed cost
/// for the revisions and bookkeeping around them.
pub fn event_bytes(event: &Event) -> usize {
    event.kv.key.len() + event.kv.value.len() + 64
}

impl History {
    pub fn len(&self) -> usize {
        // Every frozen chunk holds exactly CHUNK events: `push` is the only way in.
        self.frozen.len() * CHUNK - self.skip + self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The approximate bytes of the live events (see [`event_bytes`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends an event; revisions must not decrease.
    pub fn push(&mut self, revision: i64, event: Event) {
        if self.open.capacity() == 0 {
            self.open.reserve_exact(CHUNK);
        }
        self.bytes += event_bytes(&event);
        self.open.push((revision, event));
        if self.open.len() >= CHUNK {
            let full = std::mem::take(&mut self.open);
            self.frozen.push_back(Arc::new(full));
        }
    }

    /// The live part of every chunk, oldest first.
    fn slices(&self) -> impl DoubleEndedIterator<Item = &[Revisioned]> {
        self.frozen
            .iter()
            .enumerate()
            .map(|(i, c)| if i == 0 { &c[self.skip..] } else { &c[..] })
            .chain(std::iter::once(&self.open[..]))
    }

    /// Every event, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Revisioned> {
        self.slices().flatten()
    }

    /// The events with a revision at or above `revision`, oldest first (reversible: a read
    /// at an older revision walks them newest first).
    pub fn from_revision(&self, revision: i64) -> impl DoubleEndedIterator<Item = &Revisioned> {
        // Revisions only grow: every chunk before the first whose last event reaches
        // `revision` is wholly older, and within that one the older part is a prefix.
        let first = self
            .frozen
            .partition_point(|c| c.last().is_some_and(|(last, _)| *last < revision));
        let skip = self.skip;
        let newer = move |s: &'_ [Revisioned]| s.partition_point(|(rev, _)| *rev < revision);
        let frozen = self.frozen.range(first..).enumerate().map(move |(i, c)| {
            let live = if first + i == 0 { &c[skip..] } else { &c[..] };
            if i == 0 {
                &live[newer(live)..]
            } else {
                live
            }
        });
        let open = if first == self.frozen.len() {
            &self.open[newer(&self.open)..]
        } else {
            &self.open[..]
        };
        frozen.chain(std::iter::once(open)).flatten()
    }

    /// Drops every event below `revision`.
    pub fn compact_below(&mut self, revision: i64) {
        let dropped =
            |events: &[Revisioned]| -> usize { events.iter().map(|(_, e)| event_bytes(e)).sum() };
        while let Some(first) = self.frozen.front() {
            let live = &first[self.skip..];
            match live.last() {
                Some((last, _)) if *last < revision => {
                    self.bytes -= dropped(live);
                    self.frozen.pop_front();
                    self.skip = 0;
                }
                _ => {
                    let older = live.partition_point(|(rev, _)| *rev < revision);
                    self.bytes -= dropped(&live[..older]);
                    self.skip += older;
                    return;
                }
            }
        }
        let keep = self.open.partition_point(|(rev, _)| *rev < revision);
        self.bytes -= dropped(&self.open[..keep]);
        self.open.drain(..keep);
    }
}

impl PartialEq for History {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for History {}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for History {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        // The length first, as a `VecDeque` writes it (a flattened iterator cannot say it).
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for event in self.iter() {
            seq.serialize_element(event)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for History {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Decoded as the sequence it is written as; an out-of-order sequence (a damaged or
        // hostile snapshot) is refused rather than breaking the searches above.
        let events = Vec::<Revisioned>::deserialize(deserializer)?;
        if events.windows(2).any(|w| w[1].0 < w[0].0) {
            return Err(serde::de::Error::custom("history: revisions out of order"));
        }
        let mut history = History::default();
        for (revision, event) in events {
            history.push(revision, event);
        }
        Ok(history)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{EventKind, KeyValue};

    fn event(key: &str) -> Event {
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.as_bytes().to_vec(),
                ..KeyValue::default()
            },
            prev: None,
        }
    }

    /// History and the plain deque it replaces, fed the same.
    fn both(revisions: impl IntoIterator<Item = i64>) -> (History, VecDeque<Revisioned>) {
        let mut history = History::default();
        let mut plain = VecDeque::new();
        for rev in revisions {
            history.push(rev, event(&format!("k{rev}")));
            plain.push_back((rev, event(&format!("k{rev}"))));
        }
        (history, plain)
    }

    fn revisions<'a>(it: impl Iterator<Item = &'a Revisioned>) -> Vec<i64> {
        it.map(|(r, _)| *r).collect()
    }

    #[test]
    fn behaves_as_a_deque_across_chunk_boundaries() {
        for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7] {
            // Gaps and repeats, as a transaction's several events share one revision.
            let revs: Vec<i64> = (0..n as i64).map(|i| 10 + i / 2 * 3).collect();
            let (history, plain) = both(revs.iter().copied());
            assert_eq!(history.len(), plain.len());
            assert_eq!(revisions(history.iter()), revisions(plain.iter()));
            for probe in [0, 9, 10, 11, 12, 13, 10 + (n as i64) * 3 / 2, i64::MAX] {
                let first = plain.partition_point(|(r, _)| *r < probe);
                assert_eq!(
                    revisions(history.from_revision(probe)),
                    revisions(plain.range(first..)),
                    "from {probe} with {n} events"
                );
                assert_eq!(
                    revisions(history.from_revision(probe).rev()),
                    revisions(plain.range(first..).rev()),
                    "from {probe} reversed with {n} events"
                );
            }
        }
    }

    #[test]
    fn compaction_drops_exactly_the_older_events() {
        let n = 4 * CHUNK + 5;
        for cut in [
            0,
            1,
            500,
            CHUNK as i64,
            CHUNK as i64 + 1,
            3000,
            n as i64,
            n as i64 + 10,
        ] {
            let (mut history, mut plain) = both(0..n as i64);
            history.compact_below(cut);
            let keep = plain.partition_point(|(r, _)| *r < cut);
            plain.drain(..keep);
            assert_eq!(history.len(), plain.len(), "compacted below {cut}");
            assert_eq!(revisions(history.iter()), revisions(plain.iter()));
            assert_eq!(
                revisions(history.from_revision(cut + 3)),
                revisions(plain.iter().filter(|(r, _)| *r >= cut + 3))
            );
            // It goes on growing after a compaction, and compacts again.
            history.push(n as i64, event("again"));
            let again = cut + CHUNK as i64;
            history.compact_below(again);
            assert_eq!(
                history.iter().next().map(|(r, _)| *r),
                (again <= n as i64).then_some(again),
                "the first event left after compacting below {again}"
            );
        }
    }

    #[test]
    fn a_copy_shares_frozen_chunks_and_is_independent() {
        let (mut history, _) = both(0..3 * CHUNK as i64 + 10);
        let copy = history.clone();
        assert!(Arc::ptr_eq(&history.frozen[0], &copy.frozen[0]));
        history.push(10_000, event("later"));
        history.compact_below(2 * CHUNK as i64);
        assert_eq!(copy.len(), 3 * CHUNK + 10);
        assert_eq!(copy.iter().next().map(|(r, _)| *r), Some(0));
        assert_eq!(history.len(), CHUNK + 11);
    }

    #[test]
    fn serializes_as_the_plain_sequence() {
        let (history, plain) = both(0..CHUNK as i64 + 3);
        let encoded = postcard::to_stdvec(&history).expect("encode");
        assert_eq!(encoded, postcard::to_stdvec(&plain).expect("encode plain"));
        let decoded: History = postcard::from_bytes(&encoded).expect("decode");
        assert_eq!(decoded, history);
        let out_of_order: VecDeque<Revisioned> = [(5, event("a")), (4, event("b"))].into();
        // (postcard keeps no message for a custom error; the refusal itself is the point.)
        postcard::from_bytes::<History>(&postcard::to_stdvec(&out_of_order).expect("encode"))
            .expect_err("a history out of order is refused");
    }
}
