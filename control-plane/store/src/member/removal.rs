//! A member removed from the cluster learns it and stops, as etcd's does.
//!
//! openraft's leader stops replicating to a member as soon as it appends the membership that
//! leaves it out, so the member mostly never applies its own removal: it would stay a
//! candidate (a removed learner, a follower) on a state that no longer changes, serving stale
//! serializable reads and watches that never hear of another write. etcd's peers answer a
//! removed member's messages with "the member has been permanently removed from the cluster",
//! and it stops. keel's probes carry that answer: every second a member probes each peer it
//! knows, naming the log id of the newest membership in its log that includes it
//! ([`ProbeFrom`]), and the leader (one a quorum acknowledged within an election timeout)
//! answers [`crate::peer_wire::MEMBER_REMOVED`] when the
//! membership it applied is newer and leaves the prober out, and so does the newest one it
//! appended. The leader's applied membership was committed, and its log holds every
//! committed entry: a newer membership without the prober there, and none with it since,
//! means the prober is not a member now.
//!
//! Only the leader answers so: a member's id is its peer URL's, so a member removed and added
//! back (on an empty data directory) has its old id and replays the log from the start,
//! applying memberships with itself, then its removal, then its new addition; a follower that
//! lags behind that addition would call it removed in between, the leader appended it first.
//!
//! A member that did apply its removal (a leader that removed itself, or a batch already on
//! its way when the leader stopped replicating) names the last applied membership that
//! included it, which its state machine notes at each apply, and the new leader tells it the
//! same. Once a member knows, it leaves [`REMOVED_MARKER`] in its data directory, and refuses
//! to start on it again ([`refuse_if_removed`]).

use std::path::Path;

use openraft::async_runtime::WatchReceiver;
use openraft::Instant as _;

use super::Member;
use crate::network::ProbeFrom;
use crate::types::TypeConfig;

/// The file a removed member leaves in its data directory, holding how it learnt it.
pub const REMOVED_MARKER: &str = "removed";

/// Refuses to start a member on a data directory whose member was removed from the cluster:
/// its state stopped at the removal, and its id (its peer URL's) belongs to the cluster's past.
pub fn refuse_if_removed(data_dir: &Path) -> anyhow::Result<()> {
    let marker = data_dir.join(REMOVED_MARKER);
    match std::fs::read_to_string(&marker) {
        Ok(how) => anyhow::bail!(
            "{}: this member was removed from the cluster ({}); remove its data directory {} \
             before it is added again",
            crate::peer_wire::MEMBER_REMOVED,
            how.trim(),
            data_dir.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", marker.display())),
    }
}

impl Member {
    /// What this member's probes say of it: the newest membership that includes it, the one
    /// appended last, else the one applied last, else the last applied one that did (its own
    /// removal applied since); nothing while none does (a member that joins first has
    /// memberships from before it was added, from a snapshot).
    ///
    /// The appended one first: a member restarted on its data may not apply what it has in
    /// its log until a leader tells it what is committed, which a removed member never hears.
    pub(crate) fn probe_from(&self) -> Option<ProbeFrom> {
        let includes = |membership: &crate::types::StoredMembership| {
            let log_id = (*membership.log_id())?;
            let included = membership.membership().get_node(&self.id).is_some();
            included.then_some(log_id)
        };
        let appended = self
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .clone();
        let membership = includes(&appended)
            .or_else(|| includes(&self.sm.lock().state.membership))
            .or_else(|| self.sm.member_last_included())?;
        Some(ProbeFrom {
            // None while provisional: it may not be the one the leader kept, and a leader
            // answers only a prober of its own cluster (or of none).
            cluster: self.cluster_id_to_share(),
            id: self.id,
            membership,
        })
    }

    /// Whether this member leads and a quorum acknowledged it within an election timeout. A
    /// leader cut off from the others still calls itself leader; one acknowledged so has
    /// every committed membership (a sole voter is its own quorum, and openraft notes no
    /// acknowledgement for it).
    pub(super) fn leads_acknowledged(&self, metrics: &openraft::RaftMetrics<TypeConfig>) -> bool {
        let sole_voter = metrics
            .membership_config
            .membership()
            .voter_ids()
            .all(|id| id == self.id);
        let acked = sole_voter
            || metrics
                .last_quorum_acked
                .as_ref()
                .is_some_and(|at| at.elapsed() < self.config.election_timeout);
        metrics.current_leader == Some(self.id) && acked
    }

    /// Whether this member, the leader (acknowledged by a quorum within an election timeout),
    /// knows `from` was removed: the membership it applied is newer than the one `from` names
    /// and leaves it out, and so does the newest it appended.
    pub fn knows_removed(&self, from: &ProbeFrom) -> bool {
        let own_cluster = self.cluster_id();
        let same_cluster = from.cluster == own_cluster || from.cluster == 0 || own_cluster == 0;
        if from.id == self.id || !same_cluster {
            return false;
        }
        let appended = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow_watched();
            if !self.leads_acknowledged(&metrics) {
                return false;
            }
            metrics.membership_config.clone()
        };
        if appended.membership().get_node(&from.id).is_some() {
            return false;
        }
        let inner = self.sm.lock();
        let applied = &inner.state.membership;
        applied.log_id().is_some_and(|mine| mine > from.membership)
            && applied.membership().get_node(&from.id).is_none()
    }

    /// Records that this member was removed from the cluster, and how it learnt it, in memory
    /// and in its data directory.
    pub(crate) fn removed_from_cluster(&self, how: String) {
        if self.removed.borrow().is_some() {
            return;
        }
        // Durable before the process acts on it: a member that stopped because it was removed
        // must refuse its data after a crash as well.
        let dir = &self.config.data_dir;
        if let Err(e) = super::replace_file(dir, REMOVED_MARKER, format!("{how}\n").as_bytes()) {
            let file = dir.join(REMOVED_MARKER);
            tracing::warn!(file = %file.display(), error = %e, "cannot record this member's removal");
        }
        self.removed.send_if_modified(|removed| {
            if removed.is_some() {
                return false;
            }
            *removed = Some(how);
            true
        });
    }

    /// Resolves, with how it learnt it, once this member knows it was removed from the
    /// cluster; nothing it serves changes after that, so its process should stop (etcd's does).
    pub async fn removed(&self) -> String {
        let mut removed = self.removed.subscribe();
        let how = match removed.wait_for(Option::is_some).await {
            Ok(how) => how.clone().unwrap_or_default(),
            // The sender lives as long as the member.
            Err(_) => return std::future::pending().await,
        };
        how
    }
}
