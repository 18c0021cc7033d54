//! Checking a watch stream against etcd's watch guarantees.
//!
//! etcd promises of a watch that its events are *ordered* by revision, never *duplicated*,
//! *reliable* (no gap: a watcher never misses an event between two it saw), and that they
//! start at the revision asked for. Each event is a write that happened: its revision, key and
//! kind are those of the write. A fault test feeds [`check_watch`] what one watcher received
//! (streams resumed across reconnects concatenated, so it judges the resumption too) and the
//! writes the store acknowledged; writes of unknown outcome are left out of those, so an event
//! at a revision nobody saw acknowledged is accepted as such a write.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use super::{push_capped, show, Report};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    Put,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The event's `mod_revision`: the revision of the write.
    pub revision: i64,
    pub key: Vec<u8>,
    pub kind: EventKind,
    /// Not checked (the acknowledged writes do not carry values).
    pub value: Option<Vec<u8>>,
}

/// Checks one watcher's `stream`, asked to start at `start_revision` on keys beginning with
/// `watched_prefix` (empty: every key), against `acknowledged_writes` (revision, key, kind:
/// every write the store acknowledged, on any key; several at one revision for a transaction).
/// Every acknowledged write on the prefix from `start_revision` to `up_to_revision` (inclusive:
/// what the watcher had time to receive) must be in the stream.
///
/// The report's `operations` counts events, `linearizable` means every guarantee held, and
/// each anomaly names the event (`#n`: index in the stream) or the missing write:
/// - out of order: a revision below the one before (events of one revision, a transaction's,
///   may come in any order among themselves, but together: since revisions never decrease, a
///   revision once left never returns);
/// - duplicate: a (revision, key) delivered twice;
/// - before the start revision, or outside the prefix;
/// - unfaithful: at the revision of an acknowledged write, but not its key and kind;
/// - gap: an acknowledged write in range missing.
pub fn check_watch(
    stream: &[WatchEvent],
    start_revision: i64,
    acknowledged_writes: &[(i64, Vec<u8>, EventKind)],
    watched_prefix: &[u8],
    up_to_revision: i64,
) -> Report {
    let mut anomalies = Vec::new();

    let out_of_order = stream
        .windows(2)
        .enumerate()
        .filter(|(_, pair)| pair[1].revision < pair[0].revision)
        .map(|(i, pair)| {
            format!(
                "out of order: event #{} ({}) comes after event #{i} ({})",
                i + 1,
                describe(&pair[1]),
                describe(&pair[0])
            )
        })
        .collect();
    push_capped(&mut anomalies, out_of_order);

    let mut first: HashMap<(i64, &[u8]), usize> = HashMap::new();
    let mut duplicates = Vec::new();
    for (i, event) in stream.iter().enumerate() {
        match first.entry((event.revision, event.key.as_slice())) {
            Entry::Occupied(seen) => duplicates.push(format!(
                "duplicate: event #{i} ({}) repeats event #{}",
                describe(event),
                seen.get()
            )),
            Entry::Vacant(slot) => {
                slot.insert(i);
            }
        }
    }
    push_capped(&mut anomalies, duplicates);

    let early = stream
        .iter()
        .enumerate()
        .filter(|(_, event)| event.revision < start_revision)
        .map(|(i, event)| {
            format!(
                "event #{i} ({}) precedes the start revision {start_revision}",
                describe(event)
            )
        })
        .collect();
    push_capped(&mut anomalies, early);

    let outside = stream
        .iter()
        .enumerate()
        .filter(|(_, event)| !event.key.starts_with(watched_prefix))
        .map(|(i, event)| {
            format!(
                "event #{i} ({}) is outside the watched prefix {}",
                describe(event),
                show(watched_prefix)
            )
        })
        .collect();
    push_capped(&mut anomalies, outside);

    let mut by_revision: HashMap<i64, Vec<(&[u8], EventKind)>> = HashMap::new();
    for (revision, key, kind) in acknowledged_writes {
        by_revision
            .entry(*revision)
            .or_default()
            .push((key.as_slice(), *kind));
    }
    let mut unfaithful = Vec::new();
    for (i, event) in stream.iter().enumerate() {
        let Some(writes) = by_revision.get(&event.revision) else {
            continue;
        };
        if writes
            .iter()
            .any(|&(key, kind)| key == event.key.as_slice() && kind == event.kind)
        {
            continue;
        }
        let acknowledged: Vec<String> = writes
            .iter()
            .map(|&(key, kind)| format!("{kind:?} {}", show(key)))
            .collect();
        unfaithful.push(format!(
            "unfaithful: event #{i} ({}) is not the write acknowledged at revision {}: {}",
            describe(event),
            event.revision,
            acknowledged.join(", ")
        ));
    }
    push_capped(&mut anomalies, unfaithful);

    let delivered: HashSet<(i64, &[u8])> = stream
        .iter()
        .map(|event| (event.revision, event.key.as_slice()))
        .collect();
    let mut missing: Vec<(i64, &[u8], EventKind)> = acknowledged_writes
        .iter()
        .filter(|(revision, key, _)| {
            (start_revision..=up_to_revision).contains(revision)
                && key.starts_with(watched_prefix)
                && !delivered.contains(&(*revision, key.as_slice()))
        })
        .map(|(revision, key, kind)| (*revision, key.as_slice(), *kind))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    let gaps = missing
        .iter()
        .map(|(revision, key, kind)| {
            format!(
                "gap: the write acknowledged at revision {revision} ({kind:?} {}) is missing",
                show(key)
            )
        })
        .collect();
    push_capped(&mut anomalies, gaps);

    let keys: HashSet<&[u8]> = stream.iter().map(|event| event.key.as_slice()).collect();
    Report {
        operations: stream.len(),
        keys: keys.len(),
        linearizable: anomalies.is_empty(),
        undecided: 0,
        anomalies,
    }
}

fn describe(event: &WatchEvent) -> String {
    format!(
        "{:?} {} at revision {}",
        event.kind,
        show(&event.key),
        event.revision
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(revision: i64, key: &str, kind: EventKind) -> WatchEvent {
        let value = (kind == EventKind::Put).then(|| format!("at {revision}").into_bytes());
        WatchEvent {
            revision,
            key: key.as_bytes().to_vec(),
            kind,
            value,
        }
    }

    /// From revision 5 on `/a/`: a put, a transaction (two keys at revision 6), a delete; a
    /// write before the start and one on another prefix, both not to be delivered.
    fn writes() -> Vec<(i64, Vec<u8>, EventKind)> {
        [
            (4, "/a/x", EventKind::Put),
            (5, "/a/x", EventKind::Put),
            (6, "/a/y", EventKind::Put),
            (6, "/a/z", EventKind::Delete),
            (7, "/b/x", EventKind::Put),
            (8, "/a/x", EventKind::Delete),
        ]
        .into_iter()
        .map(|(revision, key, kind)| (revision, key.as_bytes().to_vec(), kind))
        .collect()
    }

    fn complete() -> Vec<WatchEvent> {
        vec![
            event(5, "/a/x", EventKind::Put),
            event(6, "/a/z", EventKind::Delete),
            event(6, "/a/y", EventKind::Put),
            event(8, "/a/x", EventKind::Delete),
        ]
    }

    fn check(stream: &[WatchEvent]) -> Report {
        check_watch(stream, 5, &writes(), b"/a/", 8)
    }

    fn rejected(stream: &[WatchEvent], needle: &str) -> Report {
        let report = check(stream);
        assert!(!report.linearizable, "accepted: {stream:#?}");
        assert!(
            report
                .anomalies
                .iter()
                .any(|anomaly| anomaly.contains(needle)),
            "no {needle:?} in {report}"
        );
        report
    }

    #[test]
    fn complete_stream_is_accepted() {
        let report = check(&complete());
        assert!(report.linearizable && report.ok(), "{report}");
        assert_eq!((report.operations, report.keys), (4, 3));
        // An event at a revision not acknowledged (a write of unknown outcome) is fine, and so
        // is one past `up_to_revision`.
        let mut stream = complete();
        stream.push(event(9, "/a/w", EventKind::Put));
        stream.push(event(12, "/a/x", EventKind::Put));
        let report = check(&stream);
        assert!(report.ok(), "{report}");
        // Only what happened up to `up_to_revision` must have arrived.
        let report = check_watch(&complete()[..1], 5, &writes(), b"/a/", 5);
        assert!(report.ok(), "{report}");
    }

    /// A watcher resumed at the wrong revision after a reconnect skips writes.
    #[test]
    fn gap_is_reported() {
        let mut stream = complete();
        stream.remove(2);
        let report = rejected(
            &stream,
            "gap: the write acknowledged at revision 6 (Put \"/a/y\") is missing",
        );
        assert_eq!(report.anomalies.len(), 1, "{report}");
    }

    /// A watcher resumed at a revision it had already seen gets events twice.
    #[test]
    fn duplicate_is_reported() {
        let mut stream = complete();
        stream.insert(1, event(5, "/a/x", EventKind::Put));
        let report = rejected(&stream, "duplicate: event #1");
        assert_eq!(report.anomalies.len(), 1, "{report}");
        // Replayed from further back, it also goes out of order.
        let mut stream = complete();
        stream.extend(complete());
        rejected(&stream, "duplicate");
        rejected(&stream, "out of order: event #4");
    }

    #[test]
    fn reordering_is_reported() {
        let mut stream = complete();
        stream.swap(0, 3);
        rejected(&stream, "out of order");
        // Within one revision (a transaction) any order is fine: `complete` has z before y.
        let mut stream = complete();
        stream.swap(1, 2);
        assert!(check(&stream).ok());
    }

    #[test]
    fn events_before_the_start_outside_the_prefix_or_unlike_the_write_are_reported() {
        let mut stream = complete();
        stream.insert(0, event(4, "/a/x", EventKind::Put));
        rejected(&stream, "precedes the start revision 5");

        let mut stream = complete();
        stream.insert(3, event(7, "/b/x", EventKind::Put));
        rejected(&stream, "outside the watched prefix \"/a/\"");

        let mut stream = complete();
        stream[3].kind = EventKind::Put;
        rejected(&stream, "unfaithful: event #3 (Put \"/a/x\" at revision 8)");

        let mut stream = complete();
        stream[0].key = b"/a/q".to_vec();
        let report = rejected(&stream, "unfaithful: event #0");
        // The write itself was not delivered either.
        assert!(
            report
                .anomalies
                .iter()
                .any(|anomaly| anomaly.starts_with("gap")),
            "{report}"
        );
    }
}
