//! Handing leadership to a chosen member (etcd's MoveLeader, `etcdctl move-leader`), as
//! operators do before taking the leader's machine down.

use std::time::Duration;

use openraft::async_runtime::WatchReceiver;

use super::Member;
use crate::types::NodeId;

/// Why a transfer was refused or did not finish; each is etcd's error for the case.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TransferError {
    #[error("etcdserver: not leader")]
    NotLeader,
    /// Not a member, or a learner (which may not lead).
    #[error("etcdserver: bad leader transferee")]
    BadTransferee,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    Timeout,
    #[error("etcdserver: {0}")]
    Stopped(String),
}

impl Member {
    /// Asks raft to hand leadership to `target` and waits until this member sees `target`
    /// lead. Only the leader can; `target` must be a voter. The leader stops taking proposals
    /// while it hands over, and the other members stop honouring its lease, so `target`'s
    /// election does not wait for the lease to run out.
    pub async fn transfer_leadership(
        &self,
        target: NodeId,
        timeout: Duration,
    ) -> Result<(), TransferError> {
        let (leader, voter) = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow_watched();
            let voter = metrics
                .membership_config
                .membership()
                .voter_ids()
                .any(|id| id == target);
            (metrics.current_leader, voter)
        };
        if leader != Some(self.id) {
            return Err(TransferError::NotLeader);
        }
        if !voter {
            return Err(TransferError::BadTransferee);
        }
        if target == self.id {
            // Already there, as etcd answers.
            return Ok(());
        }
        self.raft
            .trigger()
            .transfer_leader(target)
            .await
            .map_err(|e| TransferError::Stopped(e.to_string()))?;
        let mut metrics = self.raft.metrics();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                if metrics.borrow_watched().current_leader == Some(target) {
                    return Ok(());
                }
                if metrics.changed().await.is_err() {
                    return Err(TransferError::Stopped("raft stopped".into()));
                }
            }
        })
        .await;
        waited.unwrap_or(Err(TransferError::Timeout))
    }
}
