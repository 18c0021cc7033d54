//! `keel-engine-bench DIR`: the two embedded engines the store's raft log could sit on (redb,
//! fjall), side by side, doing what the log will do. Each client appends 256-byte entries and
//! waits until its entry is on disk; one writer thread takes everything queued, writes it as
//! one batch, syncs once (`fdatasync`) and acknowledges the whole batch (group commit). The
//! figures: appends per second, p50/p99 from append to acknowledgement, entries per sync.
//! Prints one JSON array; `cargo xtask bench engines` runs it and writes the report.

use std::{
    path::{Path, PathBuf},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::Context;
use serde::Serialize;

/// What a client waits for: its entry is durable.
type Ack = mpsc::SyncSender<()>;

/// A raft log on one engine: append a batch at consecutive indexes, make it durable.
trait Log: Send {
    fn append(&mut self, first_index: u64, entries: &[Vec<u8>]) -> anyhow::Result<()>;
}

const REDB_LOG: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("log");

/// redb: one write transaction per batch, committed with `Durability::Immediate` (one
/// `fdatasync` per commit; copy-on-write B-tree pages).
struct Redb(redb::Database);

impl Log for Redb {
    fn append(&mut self, first_index: u64, entries: &[Vec<u8>]) -> anyhow::Result<()> {
        let mut txn = self.0.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        {
            let mut table = txn.open_table(REDB_LOG)?;
            for (i, entry) in entries.iter().enumerate() {
                table.insert(first_index + i as u64, entry.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// fjall: one write batch per batch, then the journal persisted with `SyncData`.
struct Fjall {
    db: fjall::Database,
    log: fjall::Keyspace,
}

impl Log for Fjall {
    fn append(&mut self, first_index: u64, entries: &[Vec<u8>]) -> anyhow::Result<()> {
        let mut batch = self.db.batch();
        for (i, entry) in entries.iter().enumerate() {
            batch.insert(
                &self.log,
                (first_index + i as u64).to_be_bytes(),
                entry.as_slice(),
            );
        }
        batch.commit()?;
        self.db.persist(fjall::PersistMode::SyncData)?;
        Ok(())
    }
}

fn open(engine: &str, dir: &Path) -> anyhow::Result<Box<dyn Log>> {
    std::fs::create_dir_all(dir)?;
    Ok(match engine {
        "redb" => Box::new(Redb(redb::Database::create(dir.join("log.redb"))?)),
        "fjall" => {
            let db = fjall::Database::builder(dir.join("fjall"))
                .manual_journal_persist(true)
                .open()?;
            let log = db.keyspace("log", fjall::KeyspaceCreateOptions::default)?;
            Box::new(Fjall { db, log })
        }
        other => anyhow::bail!("unknown engine {other:?}"),
    })
}

#[derive(Serialize)]
struct Cell {
    engine: String,
    clients: usize,
    appends_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    entries_per_sync: f64,
}

/// The largest batch one sync takes (a raft append of many entries is one message anyway).
const MAX_BATCH: usize = 4096;
const ENTRY_BYTES: usize = 256;

fn measure(engine: &str, dir: &Path, clients: usize, run: Duration) -> anyhow::Result<Cell> {
    let mut log = open(engine, dir)?;
    let (submit, queue) = mpsc::channel::<Ack>();
    let writer = thread::spawn(move || -> anyhow::Result<(u64, u64)> {
        let entry = vec![0x5a_u8; ENTRY_BYTES];
        let (mut next_index, mut syncs) = (1_u64, 0_u64);
        while let Ok(first) = queue.recv() {
            let mut waiting = vec![first];
            while waiting.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(ack) => waiting.push(ack),
                    Err(_) => break,
                }
            }
            let batch = vec![entry.clone(); waiting.len()];
            log.append(next_index, &batch)?;
            next_index += batch.len() as u64;
            syncs += 1;
            for ack in waiting {
                let _ = ack.send(());
            }
        }
        Ok((next_index - 1, syncs))
    });
    let deadline = Instant::now() + run;
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let submit = submit.clone();
            thread::spawn(move || {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let (ack, acked) = mpsc::sync_channel(1);
                    let started = Instant::now();
                    if submit.send(ack).is_err() || acked.recv().is_err() {
                        break;
                    }
                    latencies.push(started.elapsed());
                }
                latencies
            })
        })
        .collect();
    drop(submit);
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a client panicked"))?,
        );
    }
    let (appended, syncs) = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the writer panicked"))??;
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(Cell {
        engine: engine.to_owned(),
        clients,
        appends_per_second: appended as f64 / run.as_secs_f64(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        entries_per_sync: appended as f64 / syncs.max(1) as f64,
    })
}

fn main() -> anyhow::Result<()> {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: keel-engine-bench DIR (a scratch directory on the disk to measure)")?;
    let seconds: u64 = std::env::var("KEEL_ENGINE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mut cells = Vec::new();
    for clients in [1, 16, 64, 256] {
        // Alternating, so that neither engine always runs on a warmer disk.
        for engine in ["redb", "fjall"] {
            let scratch = dir.join(format!("{engine}-{clients}"));
            let cell = measure(engine, &scratch, clients, Duration::from_secs(seconds))?;
            std::fs::remove_dir_all(&scratch)?;
            eprintln!(
                "{engine:>5} {clients:>3} clients: {:>8.0} appends/s, p50 {:.2} ms, p99 {:.2} ms, {:.1} entries/sync",
                cell.appends_per_second, cell.p50_ms, cell.p99_ms, cell.entries_per_sync
            );
            cells.push(cell);
        }
    }
    println!("{}", serde_json::to_string(&cells)?);
    Ok(())
}
