//! The raft state machine: the keyspace, leases and published member attributes, in memory,
//! made durable by snapshots on disk plus the raft log.
//!
//! After a restart the state machine loads its last snapshot and openraft re-applies the
//! committed entries after it (the log store persists the committed id), so nothing that was
//! acknowledged is lost while apply never waits for a disk. A snapshot is written to a
//! temporary file, synced, renamed over the previous one and the directory synced: a crash
//! leaves either the old snapshot or the new one, never a torn one.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::keyspace::Keyspace;
use crate::metrics::StoreMetrics;
use crate::types::{
    Command, CommandResult, Entry, Event, LogId, MemberAttributes, NodeId, Outcome, SnapshotMeta,
    StoredMembership, TypeConfig,
};
use crate::watch_hub::{End, HubMessage, WatchFilter, WatchHub, STREAM_QUEUE};
use crate::writeback::{self, Writeback};

pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, Vec<u8>>;

/// What a snapshot holds: everything the state machine knows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub kv: Keyspace,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub members: BTreeMap<NodeId, MemberAttributes>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

/// [`SnapshotFile`] borrowed, to write one without copying the state's bytes into it (the
/// same encoding).
#[derive(Serialize)]
struct SnapshotFileRef<'a> {
    meta: &'a SnapshotMeta,
    #[serde(with = "serde_bytes")]
    data: &'a [u8],
}

pub struct Inner {
    pub state: State,
    pub hub: WatchHub,
}

/// Revisions a snapshot install sends its watches at most to catch them up: each is a message
/// on every stream that selects it, and a stream's queue holds [`STREAM_QUEUE`].
const CATCH_UP_REVISIONS: usize = STREAM_QUEUE / 2;

/// What became of the watches when the state jumped to a snapshot.
#[derive(Debug, PartialEq, Eq)]
pub enum CaughtUp {
    /// Sent every event they missed, `revisions` revisions' worth; `slow` streams overflowed.
    Sent { revisions: usize, slow: usize },
    /// Ended ([`End::Reset`]): the snapshot's history does not reach back to what they saw, or
    /// too far to queue.
    Reset,
}

/// A watch registered by [`Inner::add_watch_from`].
pub struct Registered {
    /// The revision when it was registered.
    pub current: i64,
    /// Its first revision (the next one when it asked for none).
    pub start: i64,
    /// The history it selects from `start` to `current`, shaped for it.
    pub replay: Vec<(i64, Event)>,
}

impl Inner {
    /// Queues on hub stream `stream` the message `make` builds for the current revision, after
    /// everything already queued there (the hub's [`WatchHub::send`]).
    pub fn queue_now(
        &mut self,
        stream: u64,
        make: impl FnOnce(i64) -> HubMessage,
    ) -> Result<(), End> {
        let revision = self.state.kv.revision();
        self.hub.send(stream, make(revision))
    }

    /// After the state jumped from revision `seen` to a snapshot's, sends every watch the
    /// events it missed, one revision at a time as they were applied, so its stream goes on as
    /// if the entries had been applied here (etcd re-syncs its watchers after a restore the same
    /// way). The snapshot carries the history; where that no longer reaches back to `seen`, or
    /// holds more revisions than a queue takes, the streams end instead, and their clients
    /// watch again from the last revision they received (and learn of a compaction then).
    pub fn catch_up_watches(&mut self, seen: i64) -> CaughtUp {
        let Inner { state, hub } = self;
        if hub.watch_count() == 0 {
            // A restore, or a member nobody watches: nothing to send, and no reason to walk
            // the history under the lock (a stream with no watch yet registers its first
            // against the new state).
            return CaughtUp::Sent {
                revisions: 0,
                slow: 0,
            };
        }
        // openraft installs only a snapshot newer than what was applied; were the state ever
        // behind what the watches saw, catching up would send them revisions again.
        let history = match state.kv.events_since(seen + 1) {
            Ok(history) if state.kv.revision() >= seen => history,
            // Behind, or compacted past `seen`.
            _ => {
                hub.reset();
                return CaughtUp::Reset;
            }
        };
        // The missed events by revision, copied only up to the cap: a member far behind must
        // not walk its whole history under the lock to learn that it is too far.
        let mut missed: Vec<(i64, Vec<Event>)> = Vec::new();
        for (revision, event) in history {
            if let Some((_, events)) = missed.last_mut().filter(|(last, _)| last == revision) {
                events.push(event.clone());
            } else if missed.len() == CATCH_UP_REVISIONS {
                hub.reset();
                return CaughtUp::Reset;
            } else {
                missed.push((*revision, vec![event.clone()]));
            }
        }
        let mut slow = 0;
        for (revision, events) in &missed {
            slow += hub.publish(*revision, events);
        }
        CaughtUp::Sent {
            revisions: missed.len(),
            slow,
        }
    }

    /// Registers `filter` on hub stream `stream` from revision `start` (0 or less: the next
    /// one) and copies out the history it selects since then, in one step under the lock, so
    /// that replay and live events meet without a gap or an overlap. `Err((current,
    /// compacted))` when `start` is older than the history kept; nothing is registered then.
    pub fn add_watch_from(
        &mut self,
        stream: u64,
        filter: WatchFilter,
        start: i64,
    ) -> Result<Registered, (i64, i64)> {
        let current = self.state.kv.revision();
        let start = if start <= 0 { current + 1 } else { start };
        let replay = match self.state.kv.events_since(start) {
            Ok(history) => history
                .filter(|(_, e)| filter.selects(e))
                .map(|(rev, e)| (*rev, filter.shape(e)))
                .collect(),
            Err(compacted) => return Err((current, compacted)),
        };
        self.hub.add_watch(stream, filter);
        Ok(Registered {
            current,
            start,
            replay,
        })
    }
}

pub struct StateMachine {
    inner: Mutex<Inner>,
    dir: PathBuf,
    /// The last snapshot, for followers that need it; shared, since it is as large as the
    /// state.
    current: Mutex<Option<(SnapshotMeta, Arc<Vec<u8>>)>>,
    /// Held by a save from its first byte to `current`: openraft builds a snapshot in a task
    /// of its own while its state-machine worker may install one from the leader, and the two
    /// would otherwise write the same temporary file, or the older finish last and replace
    /// the newer on disk (whose log openraft has purged: the member could not restart).
    saving: Mutex<()>,
    applied: watch::Sender<i64>,
    metrics: StoreMetrics,
    /// The member whose state this is, once told ([`StateMachine::track_member`]), and the
    /// log id of the newest membership applied since that included it: a member that applied
    /// its own removal still names that one in its probes (see `member::removal`). Noted at
    /// each apply, since a removal right after the start falls between two looks from outside.
    member: OnceLock<NodeId>,
    member_last_included: Mutex<Option<LogId>>,
}

const SNAPSHOT: &str = "snapshot";
const SNAPSHOT_TMP: &str = "snapshot.tmp";

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl StateMachine {
    /// Opens the state machine whose snapshots live in `dir`, restoring the last one.
    pub fn open(dir: &Path, metrics: StoreMetrics) -> io::Result<Arc<Self>> {
        fs::create_dir_all(dir)?;
        let _ = fs::remove_file(dir.join(SNAPSHOT_TMP));
        let (state, current) = match fs::read(dir.join(SNAPSHOT)) {
            Ok(bytes) => {
                let file: SnapshotFile = postcard::from_bytes(&bytes).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "the snapshot {} does not decode ({e}); the data directory is damaged",
                            dir.join(SNAPSHOT).display()
                        ),
                    )
                })?;
                let state: State = decode_state(&file.data)?;
                (state, Some((file.meta, Arc::new(file.data))))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (State::default(), None),
            Err(e) => return Err(e),
        };
        let (applied, _) = watch::channel(state.kv.revision());
        let sm = Self {
            inner: Mutex::new(Inner {
                state,
                hub: WatchHub::default(),
            }),
            dir: dir.to_owned(),
            current: Mutex::new(current),
            saving: Mutex::new(()),
            applied,
            metrics,
            member: OnceLock::new(),
            member_last_included: Mutex::new(None),
        };
        sm.mirror(&sm.lock());
        Ok(Arc::new(sm))
    }

    /// Sets the gauges that mirror the state (`etcd_debugging_mvcc_keys_total`, the applied
    /// index, the revision, the compacted revision, the watchers) from `inner`, under its
    /// lock: at start from the snapshot, after each apply and after a snapshot's install, so
    /// none of them shows a state the member has left.
    fn mirror(&self, inner: &Inner) {
        let kv = &inner.state.kv;
        let metrics = &self.metrics;
        metrics.keys.set(kv.len() as i64);
        metrics.applied_index.set(kv.revision());
        metrics.revision.set(kv.revision());
        metrics.compact_revision.set(kv.compact_revision());
        metrics.watchers.set(inner.hub.watch_count() as i64);
    }

    /// `(last log index, bytes)` of the current snapshot, if there is one.
    pub fn last_snapshot(&self) -> Option<(u64, u64)> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current
            .as_ref()
            .map(|(meta, data)| (meta.last_log_id.map_or(0, |id| id.index), data.len() as u64))
    }

    /// The state under its lock. Never held across an await.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while applying leaves state of unknown shape: keep serving what is there
        // rather than poisoning every later request.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The applied revision, watchable (a follower waits on it for a read index).
    pub fn applied(&self) -> watch::Receiver<i64> {
        self.applied.subscribe()
    }

    /// Notes from now on whether an applied membership includes member `id` (the state's
    /// own member; set once, before raft replays the log into it).
    pub fn track_member(&self, id: NodeId) {
        let _ = self.member.set(id);
        self.note_membership(&self.lock().state.membership);
    }

    /// The log id of the newest membership applied since [`StateMachine::track_member`] that
    /// included the member.
    pub fn member_last_included(&self) -> Option<LogId> {
        *self
            .member_last_included
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn note_membership(&self, membership: &StoredMembership) {
        let Some(id) = self.member.get() else {
            return;
        };
        if membership.membership().get_node(id).is_some() {
            *self
                .member_last_included
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = *membership.log_id();
        }
    }

    /// The applied revision now.
    pub fn applied_revision(&self) -> i64 {
        *self.applied.borrow()
    }

    fn apply_one(&self, inner: &mut Inner, entry: &Entry) -> CommandResult {
        let index = entry.log_id.index as i64;
        let state = &mut inner.state;
        state.last_applied = Some(entry.log_id);
        let outcome = match &entry.payload {
            EntryPayload::Blank => {
                state.kv.advance(index);
                Ok(Outcome::Noop)
            }
            EntryPayload::Membership(m) => {
                state.kv.advance(index);
                state.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                self.note_membership(&state.membership);
                Ok(Outcome::Noop)
            }
            EntryPayload::Normal(cmd) => {
                let mut events = Vec::new();
                let outcome = match cmd {
                    Command::Txn(t) => state.kv.apply_txn(t, index, &mut events).map(Outcome::Txn),
                    Command::Compact { revision } => state
                        .kv
                        .compact(*revision, index)
                        .map(|_| Outcome::Compacted),
                    Command::LeaseGrant { id, ttl } => {
                        let id = if *id == 0 { index } else { *id };
                        state
                            .kv
                            .grant_lease(id, *ttl, index)
                            .map(|_| Outcome::LeaseGranted { id, ttl: *ttl })
                    }
                    Command::LeaseRevoke { id } => state
                        .kv
                        .revoke_lease(*id, index, &mut events)
                        .map(|_| Outcome::LeaseRevoked),
                    Command::PublishMember { id, attributes } => {
                        state.members.insert(*id, attributes.clone());
                        Ok(Outcome::Published)
                    }
                };
                // A failed command still consumed its index: the revision moves on.
                state.kv.advance(index);
                let slow = inner.hub.publish(index, &events);
                if slow > 0 {
                    self.metrics.slow_watchers_cancelled.inc_by(slow as u64);
                }
                outcome
            }
        };
        CommandResult {
            revision: inner.state.kv.revision(),
            outcome,
        }
    }

    /// Makes `snapshot` the state: decodes it, writes it durably, and swaps it in. Blocks for
    /// as long as that takes; raft's install runs it on the blocking pool, a restore (which
    /// has no runtime) calls it as it is.
    pub fn install(&self, meta: &SnapshotMeta, snapshot: Vec<u8>) -> io::Result<()> {
        let state = decode_state(&snapshot)?;
        // openraft installs only a snapshot newer than what this member applied, so one at
        // least as new on disk can only be this member's own build of the same state.
        self.save(meta, Arc::new(snapshot))?;
        let (seen, revision, caught_up) = {
            let mut inner = self.lock();
            let seen = inner.state.kv.revision();
            inner.state = state;
            inner.state.last_applied = meta.last_log_id;
            inner.state.membership = meta.last_membership.clone();
            self.note_membership(&inner.state.membership);
            // Under the same lock as the swap: no apply or new watch comes between.
            let caught_up = inner.catch_up_watches(seen);
            self.mirror(&inner);
            (seen, inner.state.kv.revision(), caught_up)
        };
        if let CaughtUp::Sent { slow, .. } = caught_up {
            self.metrics.slow_watchers_cancelled.inc_by(slow as u64);
        }
        tracing::info!(
            from = seen,
            to = revision,
            watches = ?caught_up,
            "installed a snapshot"
        );
        self.applied.send_replace(revision);
        Ok(())
    }

    fn build(&self) -> io::Result<Snapshot> {
        // Applies wait while the lock is held, so only the copy happens under it: values are
        // shared, so the copy is the maps' structure and the keys, not the data. Encoding the
        // state under the lock stalled every write for as long as the encoding of all the data
        // took (hundreds of ms at 100,000 pods).
        let started = Instant::now();
        let (meta, state) = {
            let inner = self.lock();
            let meta = SnapshotMeta {
                last_log_id: inner.state.last_applied,
                last_membership: inner.state.membership.clone(),
            };
            (meta, inner.state.clone())
        };
        let copied = started.elapsed();
        let data = postcard::to_stdvec(&state).map_err(io_err)?;
        drop(state);
        let encoded = started.elapsed();
        let data = Arc::new(data);
        let index = meta.last_log_id.map_or(0, |id| id.index);
        if self.save(&meta, data.clone())? {
            tracing::info!(
                index,
                bytes = data.len(),
                copy_under_lock_ms = copied.as_millis() as u64,
                encode_ms = (encoded - copied).as_millis() as u64,
                write_ms = (started.elapsed() - encoded).as_millis() as u64,
                "saved a snapshot"
            );
        } else {
            // A newer snapshot (installed from the leader meanwhile) stays current; openraft
            // ignores a built snapshot older than the one it has.
            tracing::info!(
                index,
                "a snapshot built was older than the current one; not saved"
            );
        }
        // openraft keeps only the metadata of what a builder returns; whoever needs the data
        // (a follower being sent it, a backup) asks `get_current_snapshot`, which shares the
        // copy saved above. Returning the bytes would mean a second copy of the whole state.
        Ok(Snapshot {
            meta,
            snapshot: Vec::new(),
        })
    }

    /// Writes a snapshot durably and makes it the current one; `false` (and nothing written)
    /// when the current one is at least as new.
    fn save(&self, meta: &SnapshotMeta, data: Arc<Vec<u8>>) -> io::Result<bool> {
        let _saving = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        let newer_exists = {
            let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            current
                .as_ref()
                .is_some_and(|(have, _)| have.last_log_id >= meta.last_log_id)
        };
        if newer_exists {
            return Ok(false);
        }
        let started = Instant::now();
        let tmp = self.dir.join(SNAPSHOT_TMP);
        let size = {
            let file = fs::File::create(&tmp)?;
            // Sent to the disk as it is written, so that the raft log's syncs meanwhile do not
            // wait for the whole snapshot (see `writeback`).
            let mut out = Writeback::new(file, writeback::CHUNK);
            let written = SnapshotFileRef { meta, data: &data };
            postcard::to_io(&written, &mut out).map_err(io_err)?;
            let file = out.finish()?;
            file.sync_data()?;
            file.metadata()?.len()
        };
        fs::rename(&tmp, self.dir.join(SNAPSHOT))?;
        fs::File::open(&self.dir)?.sync_all()?;
        self.metrics
            .snapshot_save_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.snapshot_size_bytes.observe(size as f64);
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((meta.clone(), data));
        Ok(true)
    }
}

fn decode_state(data: &[u8]) -> io::Result<State> {
    postcard::from_bytes(data).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a snapshot's state does not decode: {e}"),
        )
    })
}

impl RaftSnapshotBuilder<TypeConfig> for Arc<StateMachine> {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let sm = self.clone();
        tokio::task::spawn_blocking(move || sm.build())
            .await
            .map_err(io_err)?
    }
}

impl RaftStateMachine<TypeConfig> for Arc<StateMachine> {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let inner = self.lock();
        Ok((inner.state.last_applied, inner.state.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let result = {
                let mut inner = self.lock();
                let result = self.apply_one(&mut inner, &entry);
                self.mirror(&inner);
                result
            };
            self.applied.send_replace(result.revision);
            if let Some(responder) = responder {
                responder.send(result);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        // Decoding and writing a large snapshot take hundreds of ms at 100 MB: on the blocking
        // pool, as a build is, not on a runtime worker that raft's core and the links share.
        let sm = self.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || sm.install(&meta, snapshot))
            .await
            .map_err(io_err)?
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        Ok(current.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: data.to_vec(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::alias::LeaderIdOf;
    use openraft::vote::RaftLeaderId;

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(LogId::new(
                <LeaderIdOf<TypeConfig> as RaftLeaderId>::new(1, 1).to_committed(),
                index,
            )),
            last_membership: StoredMembership::default(),
        }
    }

    fn data(index: u64) -> Arc<Vec<u8>> {
        let mut state = State::default();
        state.kv.advance(index as i64);
        Arc::new(postcard::to_stdvec(&state).expect("encode"))
    }

    fn on_disk(dir: &Path) -> (u64, i64) {
        let sm = StateMachine::open(dir, StoreMetrics::default()).expect("reopen");
        let (index, _) = sm.last_snapshot().expect("a snapshot");
        let revision = sm.lock().state.kv.revision();
        (index, revision)
    }

    /// A state whose keyspace put `key`s at each of `revisions`, compacted at `compacted`.
    fn state_with(puts: &[(&str, i64)], compacted: Option<i64>) -> Vec<u8> {
        use crate::types::{PutRequest, TxnOp, TxnRequest};
        let mut state = State::default();
        for (key, revision) in puts {
            let put = TxnRequest {
                compare: Vec::new(),
                success: vec![TxnOp::Put(PutRequest {
                    key: key.as_bytes().to_vec(),
                    value: b"v".to_vec(),
                    ..PutRequest::default()
                })],
                failure: Vec::new(),
            };
            state
                .kv
                .apply_txn(&put, *revision, &mut Vec::new())
                .expect("put");
        }
        if let Some(revision) = compacted {
            let last = puts.last().map_or(0, |(_, r)| *r);
            state.kv.compact(revision, last + 1).expect("compact");
            state.kv.advance(last + 1);
        }
        postcard::to_stdvec(&state).expect("encode")
    }

    fn watch_on(sm: &StateMachine, prefix: &str) -> (u64, Arc<crate::watch_hub::StreamQueue>) {
        let mut inner = sm.lock();
        let (stream, queue) = inner.hub.open_stream();
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let filter = WatchFilter {
            watch_id: 0,
            range: crate::types::KeyRange {
                key: prefix.as_bytes().to_vec(),
                range_end: end,
            },
            no_put: false,
            no_delete: false,
            prev_kv: false,
        };
        assert!(inner.hub.add_watch(stream, filter));
        (stream, queue)
    }

    async fn received(queue: &crate::watch_hub::StreamQueue) -> crate::watch_hub::Received {
        tokio::time::timeout(std::time::Duration::from_secs(5), queue.recv())
            .await
            .expect("a message within 5 s")
    }

    /// The next messages on `queue` are the events of these revisions, one key each.
    async fn expect_events(queue: &crate::watch_hub::StreamQueue, expected: &[(i64, &str)]) {
        use crate::watch_hub::Received;
        for (revision, key) in expected {
            match received(queue).await {
                Received::Message(HubMessage::Events {
                    revision: r,
                    matches,
                }) => {
                    assert_eq!(r, *revision);
                    let keys: Vec<&[u8]> =
                        matches[0].1.events.iter().map(|e| &e.kv.key[..]).collect();
                    assert_eq!(keys, [key.as_bytes()]);
                }
                other => panic!("expected the events of {revision}, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_snapshot_install_sends_each_watch_the_events_it_missed_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sm = StateMachine::open(dir.path(), StoreMetrics::default()).expect("open");
        let (_, queue) = watch_on(&sm, "/k/");
        let snapshot = state_with(&[("/k/a", 3), ("/other", 4), ("/k/b", 5)], None);
        sm.install(&meta(5), snapshot).expect("install");
        expect_events(&queue, &[(3, "/k/a"), (5, "/k/b")]).await;
        // Still open: the next apply reaches it as usual.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), queue.recv())
                .await
                .is_err()
        );
        assert_eq!(sm.lock().hub.watch_count(), 1);
    }

    #[tokio::test]
    async fn a_catch_up_sends_nothing_twice_and_the_oldest_revision_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sm = StateMachine::open(dir.path(), StoreMetrics::default()).expect("open");
        // The member had applied up to 3 (its watches saw /k/a at 3).
        sm.lock().state = decode_state(&state_with(&[("/k/a", 3)], None)).expect("state");
        let (_, queue) = watch_on(&sm, "/k/");
        // The leader's history from 4 on: kept exactly from the revision after the member's.
        let snapshot = state_with(&[("/k/a", 3), ("/k/b", 4), ("/k/c", 5)], Some(4));
        sm.install(&meta(6), snapshot).expect("install");
        // Not 3 again, and 4 (the oldest kept) not skipped.
        expect_events(&queue, &[(4, "/k/b"), (5, "/k/c")]).await;
        assert_eq!(sm.lock().hub.watch_count(), 1);
    }

    #[tokio::test]
    async fn a_snapshot_whose_history_was_compacted_ends_every_watch_stream() {
        use crate::watch_hub::Received;
        let dir = tempfile::tempdir().expect("tempdir");
        let sm = StateMachine::open(dir.path(), StoreMetrics::default()).expect("open");
        let (stream, queue) = watch_on(&sm, "/k/");
        let snapshot = state_with(&[("/k/a", 3), ("/k/b", 5)], Some(5));
        sm.install(&meta(6), snapshot).expect("install");
        // Ended, not left waiting for events of a history that jumped.
        assert!(matches!(
            received(&queue).await,
            Received::Ended(End::Reset)
        ));
        assert_ne!(sm.lock().hub.open_stream().0, stream, "a stream id reused");
    }

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sm = StateMachine::open(dir.path(), StoreMetrics::default()).expect("open");
        // Installed from the leader while this member was building an older one.
        assert!(sm.save(&meta(20), data(20)).expect("install"));
        assert!(!sm.save(&meta(10), data(10)).expect("the late build"));
        assert!(!sm.save(&meta(20), data(20)).expect("the same again"));
        assert_eq!(sm.last_snapshot().map(|(i, _)| i), Some(20));
        assert_eq!(on_disk(dir.path()), (20, 20));
        assert!(sm.save(&meta(30), data(30)).expect("a newer one"));
        assert_eq!(on_disk(dir.path()), (30, 30));
    }

    #[test]
    fn saves_at_once_leave_the_newest_whole_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sm = StateMachine::open(dir.path(), StoreMetrics::default()).expect("open");
        let saves: Vec<_> = (1..=8u64)
            .map(|i| {
                let sm = sm.clone();
                std::thread::spawn(move || sm.save(&meta(i * 10), data(i * 10)))
            })
            .collect();
        for save in saves {
            save.join().expect("no panic").expect("saved or skipped");
        }
        assert_eq!(on_disk(dir.path()), (80, 80));
        assert!(
            !dir.path().join(SNAPSHOT_TMP).exists(),
            "a temporary file was left"
        );
    }

    /// The gauges follow the state wherever it comes from: a snapshot restored at start and
    /// one installed from the leader, not only applies (they showed the state from before an
    /// install until the next write, and nothing at all after a restart).
    #[test]
    fn the_state_gauges_follow_a_restored_and_an_installed_snapshot() {
        let gauges = |metrics: &StoreMetrics| {
            (
                metrics.keys.get(),
                metrics.revision.get(),
                metrics.applied_index.get(),
                metrics.compact_revision.get(),
            )
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = StoreMetrics::default();
        let sm = StateMachine::open(dir.path(), metrics.clone()).expect("open");
        assert_eq!(gauges(&metrics), (0, 0, 0, 0));
        let snapshot = state_with(&[("/a", 3), ("/b", 4), ("/a", 6), ("/c", 7)], Some(6));
        sm.install(&meta(8), snapshot).expect("install");
        assert_eq!(gauges(&metrics), (3, 8, 8, 6));
        drop(sm);
        let restarted = StoreMetrics::default();
        let _sm = StateMachine::open(dir.path(), restarted.clone()).expect("reopen");
        assert_eq!(gauges(&restarted), (3, 8, 8, 6));
    }
}
