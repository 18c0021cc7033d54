//! Making fjall's journal durable without holding fjall's journal lock through the sync.
//!
//! `Database::persist(SyncData)` holds the journal writer's mutex for the whole `fdatasync`, so
//! every write to the journal meanwhile (the raft core's next append, its record of the commit
//! index) blocks the thread it runs on: the raft core, and the tokio worker under it, stopped
//! for as long as the disk took. Here the lock is held only to move fjall's buffered bytes
//! into the kernel (`PersistMode::Buffer`, one `write`), and the sync runs on a descriptor of
//! our own for the same file, so the core keeps appending the next batch while the last one
//! reaches the disk, as group commit means to.
//!
//! Which file: fjall writes into the newest journal (`<N>.jnl`, numbered upwards in the log's
//! directory) and, before it starts journal N+1, syncs journal N whole under its lock
//! (`Writer::rotate` persists with `SyncAll` first). So after the buffer flush every byte
//! written so far is either in the newest journal, which we sync, or in an older one that fjall
//! has already synced. The layout is fjall's (the dependency is pinned to its minor version, and
//! a test here fails if the journal is not where this module looks).
//!
//! A failed sync leaves the page cache's state unknown (a later sync may report success for
//! pages whose write-back failed), so after one every later sync fails too, as fjall poisons
//! its database.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fjall::{Database, PersistMode};

/// The journal's name for number `n`.
fn journal_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n}.jnl"))
}

/// The newest journal in `dir`, if any.
fn newest_journal(dir: &Path) -> io::Result<Option<u64>> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let number = name
            .to_str()
            .and_then(|n| n.strip_suffix(".jnl"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = number {
            newest = newest.max(Some(n));
        }
    }
    Ok(newest)
}

struct Open {
    number: u64,
    file: File,
}

/// Syncs a fjall database's journal; one per database, shared by everything that syncs it.
pub struct JournalSync {
    dir: PathBuf,
    state: Mutex<SyncState>,
}

struct SyncState {
    open: Option<Open>,
    failed: Option<String>,
}

impl JournalSync {
    /// For the database whose directory is `dir` (opened already, so its journal exists).
    pub fn new(dir: &Path) -> io::Result<Self> {
        let sync = Self {
            dir: dir.to_owned(),
            state: Mutex::new(SyncState {
                open: None,
                failed: None,
            }),
        };
        // Fail at open, not at the first write, if fjall's layout is not what this expects.
        let mut state = sync.lock();
        sync.current(&mut state)?;
        drop(state);
        Ok(sync)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest journal, opened (again, once fjall has moved on to a newer one).
    fn current<'s>(&self, state: &'s mut SyncState) -> io::Result<&'s File> {
        let known = state.open.as_ref().map(|o| o.number);
        // The one known, unless fjall has deleted it (it moved on twice or more meanwhile and
        // dropped one between): then look at the directory again.
        let linked = match &state.open {
            Some(open) => open.file.metadata()?.nlink() > 0,
            None => false,
        };
        let mut number = match known {
            Some(n) if linked => n,
            _ => newest_journal(&self.dir)?.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no fjall journal (<N>.jnl) in {}", self.dir.display()),
                )
            })?,
        };
        // fjall numbers journals upwards by one.
        while journal_path(&self.dir, number + 1).exists() {
            number += 1;
        }
        if known != Some(number) {
            let file = File::open(journal_path(&self.dir, number))?;
            // The one left behind is synced once more: fjall syncs a journal before it starts
            // the next, but if starting the next failed half way it writes on into the old one.
            if let Some(old) = state.open.take() {
                if linked {
                    old.file.sync_data()?;
                }
            }
            state.open = Some(Open { number, file });
        }
        match &state.open {
            Some(open) => Ok(&open.file),
            None => Err(io::Error::other("the journal was not opened")),
        }
    }

    /// Makes everything written to `db` so far durable.
    pub fn sync(&self, db: &Database) -> io::Result<()> {
        // Into the kernel under fjall's lock: a `write` of what its buffer holds.
        db.persist(PersistMode::Buffer)
            .map_err(|e| io::Error::other(format!("flushing the journal's buffer: {e}")))?;
        let mut state = self.lock();
        if let Some(failed) = &state.failed {
            return Err(io::Error::other(format!(
                "an earlier sync of the raft log failed ({failed}); nothing written since is trusted to be durable"
            )));
        }
        let result = self.current(&mut state).and_then(File::sync_data);
        if let Err(e) = &result {
            state.failed = Some(e.to_string());
        }
        result?;
        // fjall marks itself failed (a background worker's error) after it lets go of its
        // lock; asking it once more (an empty buffer: no write) sees that before the caller
        // acknowledges anything.
        db.persist(PersistMode::Buffer)
            .map_err(|e| io::Error::other(format!("the journal failed while syncing: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjall::KeyspaceCreateOptions;

    #[test]
    fn the_journal_is_where_this_module_syncs_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::builder(dir.path())
            .manual_journal_persist(true)
            .open()
            .expect("open");
        let ks = db
            .keyspace("log", KeyspaceCreateOptions::default)
            .expect("keyspace");
        let sync = JournalSync::new(dir.path()).expect("the journal is found");
        // Bytes that do not compress, in case the journal compresses values.
        let mut x = 0x2545_f491_u32;
        let value: Vec<u8> = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        ks.insert(b"k", value.clone()).expect("insert");
        // The bytes reach the file this module syncs: its page cache holds them after `sync`.
        sync.sync(&db).expect("sync");
        let newest = newest_journal(dir.path())
            .expect("list")
            .expect("a journal");
        let bytes = std::fs::read(journal_path(dir.path(), newest)).expect("read");
        let probe = &value[1000..1064];
        assert!(
            bytes.windows(probe.len()).any(|w| w == probe),
            "the value is not in journal {newest}"
        );
    }

    #[test]
    fn a_newer_journal_is_followed_even_past_a_deleted_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(journal_path(dir.path(), 3), b"").expect("journal 3");
        let sync = JournalSync::new(dir.path()).expect("journal 3 found");
        let number = |sync: &JournalSync| {
            let mut state = sync.lock();
            sync.current(&mut state).expect("current");
            state.open.as_ref().map(|o| o.number)
        };
        assert_eq!(number(&sync), Some(3));
        std::fs::write(journal_path(dir.path(), 4), b"").expect("journal 4");
        assert_eq!(number(&sync), Some(4));
        // fjall moved on to 6 and deleted 4 and 5 between two syncs.
        std::fs::write(journal_path(dir.path(), 6), b"").expect("journal 6");
        std::fs::remove_file(journal_path(dir.path(), 4)).expect("remove 4");
        assert_eq!(number(&sync), Some(6));
    }

    #[test]
    fn a_directory_without_a_journal_is_refused_clearly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = match JournalSync::new(dir.path()) {
            Ok(_) => panic!("an empty directory was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("no fjall journal"), "{err}");
    }

    #[test]
    fn a_failed_sync_fails_every_later_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::builder(dir.path())
            .manual_journal_persist(true)
            .open()
            .expect("open");
        let sync = JournalSync::new(dir.path()).expect("journal");
        sync.lock().failed = Some("EIO".into());
        let err = sync.sync(&db).expect_err("a sync after a failure");
        assert!(err.to_string().contains("earlier sync"), "{err}");
    }
}
