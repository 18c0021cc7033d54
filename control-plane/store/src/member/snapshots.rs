//! When a member takes a snapshot.
//!
//! keel's snapshot is a full copy of the state machine (etcd's is the database file its backend
//! already keeps on disk), so what one costs grows with the state — history included — and not
//! with the entries since the last one. Triggered on the entry count alone, as openraft's
//! `LogsSinceLast` and etcd's `--snapshot-count` do, a store holding 100 MB wrote 100 MB every
//! `--snapshot-count` entries: under 256 clients that was every 8 s on each member, copying,
//! encoding and writing 60–170 MB each time, and it cost a quarter of the cluster's writes/s
//! and tripled its p99 (`cargo xtask bench store`, 3 members, 2026-12-05).
//!
//! So a snapshot waits for two things: `--snapshot-count` entries applied since the last one
//! (etcd's rule, which alone decides while the state is small), and as many bytes of raft log
//! written since then as the last snapshot took — Redis's rule for rewriting its append-only
//! file once it doubled. The snapshot's cost per byte written stays bounded however large the
//! state grows, and the log behind a snapshot never holds much more than the snapshot would,
//! so a restart replays at most about as much as it loads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Member;

/// How often the policy is checked.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// How long a triggered snapshot may take before the policy asks again (openraft ignores a
/// trigger while a snapshot is being built, and drops one it could not build).
const BUILD_PATIENCE: Duration = Duration::from_secs(30);

/// Where the log stands against the last snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Entries applied since the last snapshot.
    pub entries: u64,
    /// Bytes of log written since the last snapshot.
    pub log_bytes: u64,
    /// The last snapshot's size (0: none yet).
    pub snapshot_bytes: u64,
}

/// Whether a snapshot is due: `snapshot_count` entries and at least the last snapshot's size
/// in log bytes since it.
pub fn due(progress: Progress, snapshot_count: u64) -> bool {
    progress.entries >= snapshot_count.max(1) && progress.log_bytes >= progress.snapshot_bytes
}

/// Triggers snapshots by [`due`].
pub(super) async fn snapshotter(member: Arc<Member>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let applied = member.sm.applied();
    // The snapshot last seen, and the count of bytes appended when it was first seen: the log
    // written since then is what the next snapshot is weighed against. The snapshot loaded at
    // start also has the log written before the restart behind it (`carried`): without it, a
    // member restarted more often than it writes a snapshot's worth of log would never take
    // one, and its log and replay at start would grow without end.
    let (mut seen, _) = member.sm.last_snapshot().unwrap_or((0, 0));
    let mut log_at_snapshot = member.log.appended_bytes();
    let log = member.log.clone();
    let weighed = tokio::task::spawn_blocking(move || log.bytes_after(seen))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    let mut carried = weighed.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot weigh the raft log behind the snapshot; counting from now");
        0
    });
    let mut triggered: Option<Instant> = None;
    loop {
        tick.tick().await;
        let (index, snapshot_bytes) = member.sm.last_snapshot().unwrap_or((0, 0));
        if seen != index {
            seen = index;
            log_at_snapshot = member.log.appended_bytes();
            carried = 0;
            triggered = None;
        }
        if triggered.is_some_and(|at| at.elapsed() < BUILD_PATIENCE) {
            continue;
        }
        let applied_index = (*applied.borrow()).max(0) as u64;
        let progress = Progress {
            entries: applied_index.saturating_sub(index),
            log_bytes: member
                .log
                .appended_bytes()
                .saturating_sub(log_at_snapshot)
                .saturating_add(carried),
            snapshot_bytes,
        };
        if !due(progress, member.config.snapshot_count) {
            continue;
        }
        tracing::debug!(?progress, "a snapshot is due");
        match member.raft.trigger().snapshot().await {
            Ok(()) => triggered = Some(Instant::now()),
            Err(e) => {
                tracing::warn!(error = %e, "triggering a snapshot failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(entries: u64, log_bytes: u64, snapshot_bytes: u64) -> Progress {
        Progress {
            entries,
            log_bytes,
            snapshot_bytes,
        }
    }

    #[test]
    fn the_first_snapshot_comes_after_snapshot_count_entries() {
        assert!(!due(progress(99, 1 << 30, 0), 100));
        assert!(due(progress(100, 0, 0), 100));
        assert!(due(progress(101, 10, 0), 100));
    }

    #[test]
    fn a_large_state_waits_for_as_much_log_as_its_last_snapshot() {
        // 100 MB of state: 100,000 small entries (about 30 MB of log) are not enough.
        let snapshot = 100 << 20;
        assert!(!due(progress(100_000, 30 << 20, snapshot), 100_000));
        assert!(!due(progress(300_000, snapshot - 1, snapshot), 100_000));
        assert!(due(progress(340_000, snapshot, snapshot), 100_000));
    }

    #[test]
    fn a_small_state_snapshots_by_the_count_alone() {
        // A 1 KB snapshot and 100 entries of 64 bytes: the count decides.
        assert!(!due(progress(99, 99 * 64, 1024), 100));
        assert!(due(progress(100, 100 * 64, 1024), 100));
    }

    #[test]
    fn a_count_of_zero_means_every_entry() {
        assert!(!due(progress(0, 0, 0), 0));
        assert!(due(progress(1, 0, 0), 0));
    }
}
