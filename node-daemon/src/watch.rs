//! Wakes the daemon when the manifest directory changes.

use std::{path::Path, time::Duration};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// After the first event, further events within this window are folded into one reload: an
/// editor's save or `kubectl`-style write-and-rename is several events.
const SETTLE: Duration = Duration::from_millis(30);

/// Watches `dir` (not recursively). The watcher stops when the returned value is dropped.
pub fn watch_dir(dir: &Path) -> notify::Result<(RecommendedWatcher, DirChanges)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Errors are also worth a reload: a reload re-reads everything.
        let _ = tx.send(event.is_ok());
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok((watcher, DirChanges { rx }))
}

pub struct DirChanges {
    rx: mpsc::UnboundedReceiver<bool>,
}

impl DirChanges {
    /// Waits for a change, then for the burst it belongs to to settle. `None`: the watcher is gone.
    pub async fn next(&mut self) -> Option<()> {
        self.rx.recv().await?;
        tokio::time::sleep(SETTLE).await;
        while self.rx.try_recv().is_ok() {}
        Some(())
    }
}
