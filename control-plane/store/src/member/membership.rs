//! Membership changes (etcd's MemberAdd as a learner, MemberPromote, MemberRemove), each a
//! raft membership change proposed by the leader.

use openraft::ChangeMembers;

use super::{Member, RequestError};
use crate::types::{member_id, Member as MemberNode, NodeId, StoredMembership};

impl Member {
    /// The membership as this member knows it: the newer of the one raft has appended (its
    /// metrics, which openraft publishes a little late: right after a promote they may still
    /// show the learner) and the one this member applied. Empty only on a member that has
    /// received no log yet.
    pub fn known_membership(&self) -> StoredMembership {
        let appended = self.raft_metrics().membership_config;
        let applied = self.sm.lock().state.membership.clone();
        if applied.log_id() > appended.log_id() {
            applied
        } else {
            (*appended).clone()
        }
    }

    /// Adds a member as a learner (it replicates but does not vote until promoted).
    pub async fn add_learner(&self, peer_url: &str) -> Result<NodeId, RequestError> {
        let id = member_id(peer_url);
        let node = MemberNode {
            name: String::new(),
            peer_url: peer_url.to_owned(),
        };
        self.raft
            .add_learner(id, node, false)
            .await
            .map_err(|e| membership_error(&e))?;
        Ok(id)
    }

    /// Promotes a learner once it has caught up with the leader's log.
    pub async fn promote(&self, id: NodeId) -> Result<(), RequestError> {
        let metrics = self.raft_metrics();
        let last = metrics.last_log_index.unwrap_or(0);
        let matched = metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map_or(0, |l| l.index);
        if last.saturating_sub(matched) > 1_000 {
            return Err(RequestError::Internal(
                "can only promote a learner member which is in sync with leader".into(),
            ));
        }
        self.raft
            .change_membership(ChangeMembers::AddVoterIds([id].into()), false)
            .await
            .map_err(|e| membership_error(&e))?;
        Ok(())
    }

    pub async fn remove_member(&self, id: NodeId) -> Result<(), RequestError> {
        let known = self.known_membership();
        let is_voter = known.membership().voter_ids().any(|v| v == id);
        let change = if is_voter {
            ChangeMembers::RemoveVoters([id].into())
        } else {
            ChangeMembers::RemoveNodes([id].into())
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| membership_error(&e))?;
        Ok(())
    }
}

fn membership_error(e: &impl std::fmt::Display) -> RequestError {
    let text = e.to_string();
    if text.contains("forward") || text.contains("leader") {
        RequestError::NotLeader
    } else {
        RequestError::Internal(text)
    }
}
