//! The cluster id every response header carries (etcd's `cluster_id`), the same on every
//! member: the members that form the cluster derive it alike from the initial peer URLs, and
//! a member that joins later (`--initial-cluster-state existing`, which names no cluster)
//! learns it from the leader's answers to its probes, as etcd's joining member asks the
//! cluster for its id. Each member keeps it in its data directory (`cluster-id`), so a
//! restart does not depend on the flags it was started with.
//!
//! A data directory of an older keel has raft state and no `cluster-id`: the id its flags give
//! now is provisional (the flags may have changed since the cluster formed): a member teaches
//! none while its own is provisional, keeps its own once it leads with a quorum's
//! acknowledgement, and takes the leader's, kept once heard, otherwise.

use std::path::Path;
use std::sync::atomic::Ordering;

use anyhow::Context;
use openraft::async_runtime::WatchReceiver;

use super::{Member, MemberConfig};
use crate::network::Probed;
use crate::types::member_id;

const CLUSTER_ID_FILE: &str = "cluster-id";

/// The cluster id a member starts with, and whether it is provisional (see the module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AtStart {
    pub id: u64,
    pub provisional: bool,
}

/// The cluster id a member starts with: the one it kept, else the one its initial cluster
/// gives (kept, unless the directory already holds raft state), else 0 (a member that joins,
/// until it learns it). An empty file, as a crash while writing it can leave, counts as none.
pub(super) fn at_start(config: &MemberConfig) -> anyhow::Result<AtStart> {
    let file = config.data_dir.join(CLUSTER_ID_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) if !text.trim().is_empty() => {
            let id = u64::from_str_radix(text.trim(), 16)
                .ok()
                .filter(|id| *id != 0)
                .with_context(|| {
                    format!(
                        "{} holds {:?}, not a cluster id; the data directory is damaged",
                        file.display(),
                        text.trim()
                    )
                })?;
            return Ok(AtStart {
                id,
                provisional: false,
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
    if config.initial_cluster.is_empty() {
        return Ok(AtStart {
            id: 0,
            provisional: false,
        });
    }
    let mut urls: Vec<&str> = config
        .initial_cluster
        .iter()
        .map(|(_, u)| u.as_str())
        .collect();
    urls.sort_unstable();
    let id = member_id(&urls.join(","));
    let provisional = config.data_dir.join("raft-log").exists();
    if !provisional {
        keep(&config.data_dir, id)?;
    }
    Ok(AtStart { id, provisional })
}

/// Writes the id durably (a crash leaves the old file or the new one).
fn keep(data_dir: &Path, id: u64) -> anyhow::Result<()> {
    super::replace_file(data_dir, CLUSTER_ID_FILE, format!("{id:016x}\n").as_bytes())
        .with_context(|| format!("cannot write {}", data_dir.join(CLUSTER_ID_FILE).display()))
}

impl Member {
    /// The cluster id, 0 while a member that joined has yet to learn it.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id.load(Ordering::Relaxed)
    }

    /// The cluster id this member tells a peer that probes it: none (0) while its own is
    /// provisional, since a follower keeps what its leader tells it, and a provisional id
    /// taught and kept would outlive the leader that had it and could differ from the next
    /// leader's.
    pub(crate) fn cluster_id_to_share(&self) -> u64 {
        if self.cluster_id_provisional.load(Ordering::Relaxed) {
            0
        } else {
            self.cluster_id()
        }
    }

    /// Settles a provisional id once this member leads with a quorum's acknowledgement and
    /// every peer answered this round's probes (`probed`): an id a peer kept (a member with a
    /// provisional id teaches none, so any id answered was kept) is the cluster's, as an
    /// earlier leader settled it; with none, this leader keeps its own, and its followers
    /// learn it. So a cluster of older data directories settles on one id. Not agreed
    /// through the log: a leader that settles and is cut off before any follower learnt its
    /// id can be succeeded by one that settles another, and the two keep theirs.
    pub(super) fn settle_cluster_id_as_leader(&self, probed: &[Probed]) {
        if !self.cluster_id_provisional.load(Ordering::Relaxed) {
            return;
        }
        let leads = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow_watched();
            self.leads_acknowledged(&metrics)
        };
        if !leads || probed.iter().any(|p| matches!(p, Probed::Unanswered)) {
            return;
        }
        let kept_by_a_peer = probed.iter().find_map(|p| match p {
            Probed::Answered { cluster_id } if *cluster_id != 0 => Some(*cluster_id),
            _ => None,
        });
        if let Some(id) = kept_by_a_peer {
            // Provisional here, so never refused.
            let _ = self.learn_cluster_id(id);
            return;
        }
        let id = self.cluster_id();
        if self.keep_as_the_clusters(id) {
            tracing::info!(cluster_id = %format!("{id:016x}"), "kept this leader's cluster id as the cluster's");
        }
    }

    /// Makes `id` this member's cluster id and keeps it; whether it was kept (a failure to
    /// write is logged, and the id stays provisional, tried again at the next probe round).
    fn keep_as_the_clusters(&self, id: u64) -> bool {
        // The probe loop is the only writer: no other thread changes it meanwhile.
        self.cluster_id.store(id, Ordering::Relaxed);
        match keep(&self.config.data_dir, id) {
            Ok(()) => {
                self.cluster_id_provisional.store(false, Ordering::Relaxed);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "the cluster id is not kept for a restart");
                false
            }
        }
    }

    /// Takes the cluster id the leader answered, if this member has none yet or only a
    /// provisional one. Its own when that differs: the leader is another cluster's member at
    /// a URL this one lists.
    pub(super) fn learn_cluster_id(&self, id: u64) -> Result<(), u64> {
        if id == 0 {
            return Ok(());
        }
        let own = self.cluster_id();
        let provisional = self.cluster_id_provisional.load(Ordering::Relaxed);
        if own == id && !provisional {
            return Ok(());
        }
        if own != 0 && own != id && !provisional {
            return Err(own);
        }
        if self.keep_as_the_clusters(id) && own != id {
            tracing::info!(cluster_id = %format!("{id:016x}"), "learnt the cluster id from the leader");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    fn config(dir: &Path, initial: &[&str]) -> MemberConfig {
        let mut config = MemberConfig::new("m0", dir.to_owned(), "http://10.0.0.1:2380", "");
        config.initial_cluster = initial
            .iter()
            .enumerate()
            .map(|(i, url)| (format!("m{i}"), url.to_string()))
            .collect();
        config
    }

    #[test]
    fn the_members_that_form_a_cluster_agree_and_keep_it_and_a_joiner_starts_without() {
        let urls = ["http://10.0.0.1:2380", "http://10.0.0.2:2380"];
        let (a, b) = (tempdir(), tempdir());
        let first = at_start(&config(a.path(), &urls)).expect("first");
        let reversed = at_start(&config(b.path(), &[urls[1], urls[0]])).expect("second");
        assert_eq!(first, reversed);
        assert!(first.id != 0 && !first.provisional);
        // Kept: a restart with no initial cluster (or another) has the same.
        assert_eq!(at_start(&config(a.path(), &[])).expect("restart"), first);
        let joiner = tempdir();
        let joined = at_start(&config(joiner.path(), &[])).expect("joiner");
        assert_eq!(joined.id, 0);
        assert!(!joiner.path().join(CLUSTER_ID_FILE).exists());
    }

    /// An older keel's data directory (raft state, no file): the flags' id is provisional and
    /// not kept; an empty file (a crash while writing) counts as none.
    #[test]
    fn an_older_data_directory_gets_a_provisional_id_and_an_empty_file_counts_as_none() {
        let dir = tempdir();
        std::fs::create_dir(dir.path().join("raft-log")).expect("mkdir");
        let older = at_start(&config(dir.path(), &["http://10.0.0.1:2380"])).expect("older");
        assert!(older.id != 0 && older.provisional);
        assert!(!dir.path().join(CLUSTER_ID_FILE).exists());
        std::fs::write(dir.path().join(CLUSTER_ID_FILE), "\n").expect("write");
        assert_eq!(
            at_start(&config(dir.path(), &["http://10.0.0.1:2380"])).expect("empty"),
            older
        );
        keep(dir.path(), 0xabc).expect("keep");
        let kept = at_start(&config(dir.path(), &["http://10.0.0.1:2380"])).expect("kept");
        assert_eq!((kept.id, kept.provisional), (0xabc, false));
        assert!(!dir.path().join("cluster-id.tmp").exists());
    }

    #[test]
    fn a_damaged_cluster_id_file_is_refused_by_name() {
        for text in ["not hex\n", "0000000000000000\n", "1234567890abcdef0\n"] {
            let dir = tempdir();
            std::fs::write(dir.path().join(CLUSTER_ID_FILE), text).expect("write");
            let e = at_start(&config(dir.path(), &["http://10.0.0.1:2380"]))
                .expect_err(text)
                .to_string();
            assert!(e.contains(CLUSTER_ID_FILE) && e.contains("damaged"), "{e}");
        }
    }
}
