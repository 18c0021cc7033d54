//! openraft's storage conformance suite (`openraft::testing`) against keel's real on-disk log
//! store and state machine: every sub-test gets a fresh data directory.

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

struct OnDisk;

impl StoreBuilder<TypeConfig, LogStore, Arc<StateMachine>, tempfile::TempDir> for OnDisk {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, Arc<StateMachine>), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().map_err(io_to_storage)?;
        let metrics = StoreMetrics::default();
        let log =
            LogStore::open(&dir.path().join("log"), metrics.clone()).map_err(io_to_storage)?;
        let sm = StateMachine::open(&dir.path().join("snap"), metrics).map_err(io_to_storage)?;
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes_on_disk() {
    Suite::test_all(OnDisk)
        .await
        .expect("openraft's storage suite");
}
