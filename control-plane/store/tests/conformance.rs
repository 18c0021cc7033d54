//! openraft's storage conformance suite (`openraft::testing`) against keel's real on-disk log
//! store and state machine: every sub-test gets a fresh data directory. It runs twice: as the
//! member that made the suite's entries (the leader's path, which syncs on the flusher
//! thread) and as one that made none of them (a follower's, which syncs in `append`).

use std::sync::Arc;

use keel_store::log_store::LogStore;
use keel_store::metrics::StoreMetrics;
use keel_store::state_machine::StateMachine;
use keel_store::types::TypeConfig;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError};

fn io_to_storage(e: std::io::Error) -> StorageError<TypeConfig> {
    StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Read, e)
}

/// Builds stores of the member with this id.
struct OnDisk(u64);

impl StoreBuilder<TypeConfig, LogStore, Arc<StateMachine>, tempfile::TempDir> for OnDisk {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, Arc<StateMachine>), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().map_err(io_to_storage)?;
        let metrics = StoreMetrics::default();
        let log = LogStore::open(&dir.path().join("log"), self.0, metrics.clone())
            .map_err(io_to_storage)?;
        let sm = StateMachine::open(&dir.path().join("snap"), metrics).map_err(io_to_storage)?;
        Ok((dir, log, sm))
    }
}

/// The suite's entries are nearly all made by node 0 (a few by others).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes_on_disk_as_a_leader() {
    Suite::test_all(OnDisk(0))
        .await
        .expect("openraft's storage suite");
}

/// No entry of the suite is this member's own: every append syncs in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes_on_disk_as_a_follower() {
    Suite::test_all(OnDisk(u64::MAX))
        .await
        .expect("openraft's storage suite");
}
