//! The raft log and vote on fjall, with group commit.
//!
//! `append` writes its entries into fjall's journal without syncing (they are readable at once,
//! as openraft requires) and hands the completion callback to one flusher thread. The flusher
//! takes every callback queued so far, makes the journal durable with a single `fdatasync`
//! (through [`JournalSync`], which does not hold fjall's journal lock meanwhile, so the next
//! batch is appended while this one syncs) and only then completes them all: many clients'
//! entries share one sync, and none is acknowledged before it is on disk. The vote is synced
//! before `save_vote` returns, so a member never grants a vote it could forget. fjall's journal
//! is one ordered file, so syncing a later write makes every earlier one durable too: vote and
//! log writes cannot be reordered on disk.
//!
//! A follower syncs a lone append (one entry, nothing left with the flusher) in `append`
//! itself instead (see [`LogStore::append`]): it has nothing to do until its entries are
//! durable, and the hand-off to the flusher and back cost two thread wake-ups on every write's
//! path.
//!
//! A torn last record (a crash mid-write) is cut off by fjall's journal recovery, which keeps
//! the longest valid prefix; such a record was never synced, hence never acknowledged.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};

use crate::journal_sync::JournalSync;
use crate::metrics::StoreMetrics;
use crate::types::{Entry, LogId, NodeId, TypeConfig, Vote};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn encode<T: serde::Serialize>(v: &T) -> io::Result<Vec<u8>> {
    postcard::to_stdvec(v).map_err(io_err)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the raft log's {what} does not decode ({e}): the data directory is damaged"),
        )
    })
}

struct Inner {
    db: Database,
    log: Keyspace,
    meta: Keyspace,
    flusher: mpsc::Sender<IOFlushed<TypeConfig>>,
    /// Callbacks handed to the flusher and not yet completed: a follower's append syncs
    /// itself only when none is, so completions stay in the order of the appends.
    flushing: Arc<AtomicU64>,
    /// This member's id: entries another leader made are a follower's, synced in `append`.
    own_id: NodeId,
    metrics: StoreMetrics,
    /// Bytes of entries appended since the process started, for the snapshot policy.
    appended: AtomicU64,
    journal: Arc<JournalSync>,
}

/// The log store; clones share one database (a clone is also the log reader).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

impl LogStore {
    /// Opens (or creates) the log of member `own_id` in `dir`.
    pub fn open(dir: &Path, own_id: NodeId, metrics: StoreMetrics) -> io::Result<Self> {
        let db = Database::builder(dir)
            // Syncs happen only where this module says: after an append batch, and for the vote.
            .manual_journal_persist(true)
            .open()
            .map_err(|e| {
                io_err(format!(
                    "cannot open the raft log in {}: {e}",
                    dir.display()
                ))
            })?;
        let log = db
            .keyspace("log", KeyspaceCreateOptions::default)
            .map_err(io_err)?;
        let meta = db
            .keyspace("meta", KeyspaceCreateOptions::default)
            .map_err(io_err)?;
        let (tx, rx) = mpsc::channel::<IOFlushed<TypeConfig>>();
        let journal = Arc::new(JournalSync::new(dir)?);
        let flush_db = db.clone();
        let flush_journal = journal.clone();
        let flush_metrics = metrics.clone();
        let flushing = Arc::new(AtomicU64::new(0));
        let flush_pending = flushing.clone();
        std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || flush_loop(flush_db, flush_journal, rx, flush_pending, flush_metrics))?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                log,
                meta,
                flusher: tx,
                flushing,
                own_id,
                metrics,
                appended: AtomicU64::new(0),
                journal,
            }),
        })
    }

    fn sync(&self) -> io::Result<()> {
        timed_sync(&self.inner.journal, &self.inner.db, &self.inner.metrics)
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> io::Result<Option<T>> {
        match self.inner.meta.get(key).map_err(io_err)? {
            Some(v) => decode(&v, std::str::from_utf8(key).unwrap_or("meta")).map(Some),
            None => Ok(None),
        }
    }

    fn last_entry_id(&self) -> io::Result<Option<LogId>> {
        match self.inner.log.last_key_value() {
            Some(guard) => {
                let value = guard.value().map_err(io_err)?;
                let entry: Entry = decode(&value, "last entry")?;
                Ok(Some(entry.log_id))
            }
            None => Ok(None),
        }
    }

    /// Bytes of encoded entries this process appended to the log (from 0 at start): the
    /// snapshot policy weighs the log written since a snapshot against the snapshot's size.
    pub fn appended_bytes(&self) -> u64 {
        self.inner.appended.load(Ordering::Relaxed)
    }

    /// Bytes of the encoded entries after `index` (the log behind a snapshot at `index`): a
    /// restarted member weighs its next snapshot against the log written before the restart
    /// too. Reads those entries once; the snapshot policy keeps them about a snapshot's size.
    pub fn bytes_after(&self, index: u64) -> io::Result<u64> {
        let Some(first) = index.checked_add(1) else {
            return Ok(0);
        };
        let mut bytes = 0u64;
        for guard in self.inner.log.range::<[u8; 8], _>(index_key(first)..) {
            bytes = bytes.saturating_add(guard.value().map_err(io_err)?.len() as u64);
        }
        Ok(bytes)
    }

    /// Bytes the raft log takes on disk, for etcd's `dbSize`.
    pub fn disk_space(&self) -> u64 {
        self.inner.db.disk_space().unwrap_or(0)
    }
}

/// Group commit: block for one callback, take every other one queued meanwhile, sync once,
/// complete them all.
fn flush_loop(
    db: Database,
    journal: Arc<JournalSync>,
    rx: mpsc::Receiver<IOFlushed<TypeConfig>>,
    flushing: Arc<AtomicU64>,
    metrics: StoreMetrics,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let completed = batch.len() as u64;
        sync_and_complete(&journal, &db, &metrics, batch);
        flushing.fetch_sub(completed, Ordering::AcqRel);
    }
}

/// One sync for the appends whose callbacks these are (their batch size recorded), then
/// completes them all with its outcome.
fn sync_and_complete(
    journal: &JournalSync,
    db: &Database,
    metrics: &StoreMetrics,
    callbacks: Vec<IOFlushed<TypeConfig>>,
) {
    let synced = timed_sync(journal, db, metrics);
    metrics.wal_batch_size.observe(callbacks.len() as f64);
    match synced {
        Ok(()) => callbacks.into_iter().for_each(|cb| cb.io_completed(Ok(()))),
        Err(e) => {
            tracing::error!(error = %e, "syncing the raft log failed; the entries are not acknowledged");
            for cb in callbacks {
                cb.io_completed(Err(io_err(format!("syncing the raft log: {e}"))));
            }
        }
    }
}

/// One sync of the journal, timed into `etcd_disk_wal_fsync_duration_seconds` (group commits,
/// votes and truncations alike).
fn timed_sync(journal: &JournalSync, db: &Database, metrics: &StoreMetrics) -> io::Result<()> {
    let started = Instant::now();
    let result = journal.sync(db);
    metrics
        .wal_fsync_duration
        .observe(started.elapsed().as_secs_f64());
    result
}

/// Entries in a follower's append small enough to sync in place. A larger batch means
/// writes are queueing at the leader: there the flusher's overlap of one batch's sync with
/// taking in the next is worth more than the hand-off it costs.
const LONE_APPEND: usize = 1;

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(i) => Bound::Included(index_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(index_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut entries = Vec::new();
        for guard in self.inner.log.range::<[u8; 8], _>((start, end)) {
            let value = guard.value().map_err(io_err)?;
            entries.push(decode(&value, "entry")?);
        }
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.get_meta(VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged: Option<LogId> = self.get_meta(LAST_PURGED)?;
        let last = self.last_entry_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.inner
            .meta
            .insert(VOTE, encode(vote)?)
            .map_err(io_err)?;
        // Durable before the vote is granted.
        self.sync()
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not synced on its own: it rides on the next append or vote sync. The keyspace's own
        // `insert` hands it to the kernel at once, so a member that is killed (not crashed)
        // restarts knowing its newest commit. A stale one (a power cut) is safe: the leader's
        // read index does not trust it (`Member::read_floor`).
        self.inner
            .meta
            .insert(COMMITTED, encode(&committed)?)
            .map_err(io_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.get_meta::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = self.inner.db.batch();
        let mut bytes = 0;
        let mut from_another_leader = false;
        let mut count = 0usize;
        for entry in entries {
            count += 1;
            let encoded = encode(&entry)?;
            bytes += encoded.len() as u64;
            from_another_leader |= entry.log_id.leader_id.node_id != self.inner.own_id;
            batch.insert(&self.inner.log, index_key(entry.log_id.index), encoded);
        }
        batch.commit().map_err(io_err)?;
        self.inner.appended.fetch_add(bytes, Ordering::Relaxed);
        // A follower has nothing to do until its entries are durable: its answer to the
        // leader waits for them. So a lone entry is synced here, sparing the hand-off to the
        // flusher thread and back (entries that arrive meanwhile queue in raft and go to the
        // flusher together). A leader hands the sync off: it replicates, and takes new proposals,
        // while its own copy syncs. Callbacks complete in the order of the appends: a
        // follower that still has some with the flusher (it led a moment ago) queues too.
        if from_another_leader
            && count <= LONE_APPEND
            && self.inner.flushing.load(Ordering::Acquire) == 0
        {
            let inner = &self.inner;
            sync_and_complete(&inner.journal, &inner.db, &inner.metrics, vec![callback]);
            return Ok(());
        }
        self.inner.flushing.fetch_add(1, Ordering::AcqRel);
        self.inner.flusher.send(callback).map_err(|_| {
            self.inner.flushing.fetch_sub(1, Ordering::AcqRel);
            io_err("the raft log's sync thread is gone")
        })
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        let mut batch = self.inner.db.batch();
        for guard in self.inner.log.range::<[u8; 8], _>(index_key(from)..) {
            batch.remove(&self.inner.log, guard.key().map_err(io_err)?);
        }
        batch.commit().map_err(io_err)?;
        // A truncation must not be undone by a crash while later appends survive; fjall's one
        // ordered journal guarantees that, and this sync makes the truncation itself durable.
        self.sync()
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // From the previous purge point on: a range from the start would walk every tombstone
        // left by earlier purges, a scan that grows with the log's whole history.
        let from = self
            .get_meta::<LogId>(LAST_PURGED)?
            .map_or(0, |previous| previous.index + 1);
        let mut batch = self.inner.db.batch();
        batch.insert(&self.inner.meta, LAST_PURGED, encode(&log_id)?);
        for guard in self
            .inner
            .log
            .range::<[u8; 8], _>(index_key(from)..=index_key(log_id.index))
        {
            batch.remove(&self.inner.log, guard.key().map_err(io_err)?);
        }
        // Atomic with `last_purged`: after a crash either both happened or neither did.
        batch.commit().map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::entry::RaftEntry;
    use openraft::type_config::TypeConfigExt;

    fn entry(leader: NodeId, index: u64) -> Entry {
        Entry::new_blank(openraft::testing::log_id::<TypeConfig>(1, leader, index))
    }

    /// Appends `entries` and says whether their callback had completed when `append` returned,
    /// then waits for it and returns its outcome.
    async fn append(log: &mut LogStore, entries: Vec<Entry>) -> (bool, io::Result<()>) {
        let (tx, mut rx) = TypeConfig::oneshot();
        log.append(entries, IOFlushed::signal(tx))
            .await
            .expect("append");
        let at_once = rx.try_recv().ok();
        let done = at_once.is_some();
        let outcome = match at_once {
            Some(outcome) => outcome,
            None => rx.await.expect("the flusher completes every callback"),
        };
        (done, outcome)
    }

    #[tokio::test]
    async fn a_followers_lone_append_is_synced_in_place_and_a_leaders_by_the_flusher() {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = StoreMetrics::default();
        let mut log = LogStore::open(dir.path(), 1, metrics.clone()).expect("open");
        // Another leader's single entry: durable before `append` returns.
        let (in_place, outcome) = append(&mut log, vec![entry(2, 1)]).await;
        assert!(in_place, "a follower's lone append went to the flusher");
        outcome.expect("synced");
        // Its own entries, and another leader's batch: the flusher's, completed all the same.
        let (_, outcome) = append(&mut log, vec![entry(1, 2)]).await;
        outcome.expect("synced by the flusher");
        let (_, outcome) = append(&mut log, vec![entry(2, 3), entry(2, 4)]).await;
        outcome.expect("synced by the flusher");
        // The flusher completes its callbacks before it counts them done (so a follower's
        // in-place sync can never complete ahead of them): the count reaches zero just after.
        let drained = async {
            while log.inner.flushing.load(Ordering::Acquire) != 0 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), drained)
            .await
            .expect("the flusher counts every callback it completed");
        let indexes: Vec<u64> = log
            .try_get_log_entries(1..5)
            .await
            .expect("read")
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        assert_eq!(indexes, [1, 2, 3, 4]);
        // Every append was synced: in place or by the flusher, one sync each here.
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains("etcd_disk_wal_fsync_duration_seconds_count 3"),
            "{text}"
        );
    }

    #[test]
    fn the_log_behind_a_snapshot_is_weighed_by_its_entries_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogStore::open(dir.path(), 1, StoreMetrics::default()).expect("open");
        assert_eq!(log.bytes_after(0).expect("empty"), 0);
        for index in 1..=10u64 {
            log.inner
                .log
                .insert(index_key(index), vec![0u8; index as usize * 100])
                .expect("insert");
        }
        assert_eq!(log.bytes_after(0).expect("all"), 5500);
        assert_eq!(log.bytes_after(7).expect("after 7"), 800 + 900 + 1000);
        assert_eq!(log.bytes_after(10).expect("none after"), 0);
        assert_eq!(log.bytes_after(u64::MAX).expect("the end"), 0);
    }
}
