//! Wakes the daemon when the manifest directory changes.

use std::{path::Path, time::Duration};

use notify::{
    event::{AccessKind, AccessMode},
    EventKind, RecommendedWatcher, RecursiveMode, Watcher,
};
use tokio::sync::mpsc;

/// After the first event, further events within this window are folded into one reload: an
/// editor's save or `kubectl`-style write-and-rename is several events.
const SETTLE: Duration = Duration::from_millis(30);

/// Watches `dir` (not recursively). The watcher stops when the returned value is dropped.
pub fn watch_dir(dir: &Path) -> notify::Result<(RecommendedWatcher, DirChanges)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Errors are also worth a reload: a reload re-reads everything.
        let worth_a_reload = event.as_ref().map_or(true, |e| changes_content(&e.kind));
        if worth_a_reload {
            let _ = tx.send(event.is_ok());
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok((watcher, DirChanges { rx }))
}

/// Whether an event can mean a manifest changed. Opening a file, or closing one that was only
/// read, cannot — and notify reports both: the daemon's own reads would wake it for another
/// reload, whose reads would wake it again, every settle period, forever.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Real inotify: reading a manifest is not a change (else every reload would trigger the
    /// next), writing one is.
    #[tokio::test]
    async fn reading_a_manifest_is_not_a_change_and_writing_one_is() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("web.yaml");
        std::fs::write(&file, "kind: Service\n")?;
        let (_watcher, mut changes) = watch_dir(dir.path())?;
        let quiet = Duration::from_millis(300);
        for _ in 0..3 {
            std::fs::read_to_string(&file)?;
        }
        assert!(
            tokio::time::timeout(quiet, changes.next()).await.is_err(),
            "reading the file woke the watcher"
        );
        std::fs::write(&file, "kind: Pod\n")?;
        let woke = tokio::time::timeout(Duration::from_secs(5), changes.next()).await;
        assert_eq!(
            woke.ok(),
            Some(Some(())),
            "writing the file did not wake the watcher"
        );
        Ok(())
    }
}
