//! Membership changes (etcd's MemberAdd, MemberPromote, MemberRemove), each a raft
//! membership change proposed by the leader; a follower forwards them to it.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;

use super::{Member, RequestError};
use crate::network::{ForwardError, MembershipChange};
use crate::types::{member_id, Member as MemberNode, NodeId, StoredMembership, TypeConfig};

/// etcd's refusals of a membership change, which the leader sends a follower as text and the
/// API answers with etcd's codes (the etcd module's `request_status`).
pub const MEMBER_NOT_FOUND: &str = "member not found";
pub const ONLY_LEARNERS_PROMOTE: &str = "can only promote a learner member";
pub const BAD_PEER_URL: &str = "peerURLs:";
pub const PEER_URL_EXISTS: &str = "Peer URLs already exists";
/// The prefix of raft's own refusals of a change (one already under way, one that would
/// leave no voter): the cluster's state forbids it now, which gRPC calls a failed
/// precondition.
pub const CHANGE_REFUSED: &str = "membership change refused:";

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

    /// Adds a member (a learner, which replicates but does not vote until promoted, unless
    /// `learner` is false); its id.
    pub async fn add_member(
        self: &Arc<Self>,
        peer_url: &str,
        learner: bool,
    ) -> Result<NodeId, RequestError> {
        self.change_membership(MembershipChange::Add {
            peer_url: peer_url.to_owned(),
            learner,
        })
        .await
    }

    /// Promotes a learner once it has caught up with the leader's log.
    pub async fn promote(self: &Arc<Self>, id: NodeId) -> Result<(), RequestError> {
        self.change_membership(MembershipChange::Promote { id })
            .await
            .map(|_| ())
    }

    pub async fn remove_member(self: &Arc<Self>, id: NodeId) -> Result<(), RequestError> {
        self.change_membership(MembershipChange::Remove { id })
            .await
            .map(|_| ())
    }

    /// Makes `change` here if this member leads, else asks the leader, once (a change is not
    /// retried: the first may have been made), and waits until this member applied it, so its
    /// answer — the member list from its own view — shows it, as etcd's member answers after
    /// its own apply. etcd's members take a change on any member; keel's did only on the leader.
    ///
    /// A member that removes itself through itself does not wait: the leader no longer
    /// replicates to it, so it never applies its removal (it learns of it from its probes, and
    /// stops a second later, after this answer is out).
    async fn change_membership(
        self: &Arc<Self>,
        change: MembershipChange,
    ) -> Result<NodeId, RequestError> {
        if self.is_leader() {
            return self.change_to_the_end(change).await.map(|(id, _)| id);
        }
        let peer = self.leader_peer().ok_or(RequestError::NoLeader)?;
        tracing::info!(?change, "forwarding a membership change to the leader");
        let own_removal = change == MembershipChange::Remove { id: self.id };
        match peer.member_change(&change, super::REQUEST_TIMEOUT).await {
            Ok(Ok((id, _))) if own_removal => Ok(id),
            Ok(Ok((id, index))) => {
                // A budget of its own: the change is made, a timeout now would say otherwise.
                let deadline = std::time::Instant::now() + super::REQUEST_TIMEOUT;
                self.wait_applied(index, deadline).await?;
                Ok(id)
            }
            Ok(Err(e)) => Err(e.into()),
            // A leader of an older keel does not take changes from a follower.
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                Err(RequestError::NotLeader)
            }
            // Sent, perhaps made: the outcome is unknown, as etcd's "timed out" says.
            Err(_) => Err(RequestError::Timeout),
        }
    }

    /// The leader's side of a change a follower forwarded: the member's id and the index of
    /// the membership entry that made it.
    pub async fn change_membership_as_leader(
        self: &Arc<Self>,
        change: MembershipChange,
    ) -> Result<(NodeId, u64), ForwardError> {
        if !self.is_leader() {
            return Err(ForwardError::NotLeader);
        }
        self.change_to_the_end(change)
            .await
            .map_err(ForwardError::from)
    }

    /// Makes `change` in a task of its own, which finishes whatever becomes of the request
    /// that asked for it: openraft drives a change's second step (from the joint membership to
    /// the new one, or a voter after the learner) from the caller's future, and a client or a
    /// forwarding follower that gives up would otherwise leave the cluster halfway.
    async fn change_to_the_end(
        self: &Arc<Self>,
        change: MembershipChange,
    ) -> Result<(NodeId, u64), RequestError> {
        let member = self.clone();
        tokio::spawn(async move { member.change_here(change).await })
            .await
            .map_err(|e| RequestError::Internal(format!("the membership change failed: {e}")))?
    }

    /// Makes `change` through this member's raft (it must lead).
    async fn change_here(&self, change: MembershipChange) -> Result<(NodeId, u64), RequestError> {
        match change {
            MembershipChange::Add { peer_url, learner } => {
                // The member that took the request checked it; so does the leader, which
                // takes it from a follower.
                check_peer_url(&peer_url)?;
                let id = member_id(&peer_url);
                // An id is its peer URL's: adding a URL again would change nothing, or, asked
                // for a voter, promote a learner past the check that it caught up.
                if self.known_membership().membership().get_node(&id).is_some() {
                    return Err(RequestError::Internal(PEER_URL_EXISTS.into()));
                }
                let node = MemberNode {
                    name: String::new(),
                    peer_url,
                };
                let mut written = self
                    .raft
                    .add_learner(id, node, false)
                    .await
                    .map_err(|e| membership_error(&e))?;
                if !learner {
                    written = self
                        .raft
                        .change_membership(ChangeMembers::AddVoterIds([id].into()), false)
                        .await
                        .map_err(|e| {
                            // Half made: say so, rather than "not leader" (nothing happened).
                            RequestError::Internal(format!(
                                "member {id:x} was added as a learner but not made a voter \
                                 ({e}); promote it"
                            ))
                        })?;
                }
                Ok((id, written.log_id.index))
            }
            MembershipChange::Promote { id } => {
                let known = self.known_membership();
                if known.membership().voter_ids().any(|v| v == id) {
                    return Err(RequestError::Internal(ONLY_LEARNERS_PROMOTE.into()));
                }
                if known.membership().get_node(&id).is_none() {
                    return Err(RequestError::Internal(MEMBER_NOT_FOUND.into()));
                }
                let metrics = self.raft_metrics();
                let last = metrics.last_log_index.unwrap_or(0);
                let matched = metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .map_or(0, |l| l.index);
                if last.saturating_sub(matched) > 1_000 {
                    return Err(RequestError::Internal(format!(
                        "{ONLY_LEARNERS_PROMOTE} which is in sync with leader"
                    )));
                }
                let written = self
                    .raft
                    .change_membership(ChangeMembers::AddVoterIds([id].into()), false)
                    .await
                    .map_err(|e| membership_error(&e))?;
                Ok((id, written.log_id.index))
            }
            MembershipChange::Remove { id } => self.remove_here(id).await.map(|index| (id, index)),
        }
    }

    async fn remove_here(&self, id: NodeId) -> Result<u64, RequestError> {
        let known = self.known_membership();
        if known.membership().get_node(&id).is_none() {
            return Err(RequestError::Internal(MEMBER_NOT_FOUND.into()));
        }
        let is_voter = known.membership().voter_ids().any(|v| v == id);
        let change = if is_voter {
            ChangeMembers::RemoveVoters([id].into())
        } else {
            ChangeMembers::RemoveNodes([id].into())
        };
        let before = *known.log_id();
        match self.raft.change_membership(change, false).await {
            Ok(written) => Ok(written.log_id.index),
            // A leader that removes itself steps down as the membership without it commits,
            // and openraft may answer the change with "forward to the leader" then; the
            // change is done, and etcd answers it so. Only when its log already holds a
            // membership without it, and it applies one newer than the one it knew.
            Err(e) if id == self.id => match self.applies_own_removal(before).await {
                Some(index) => {
                    tracing::info!(error = %e, "this member, the leader, removed itself");
                    Ok(index)
                }
                None => Err(membership_error(&e)),
            },
            Err(e) => Err(membership_error(&e)),
        }
    }

    /// The index of a membership newer than `before` that leaves this member out, once it
    /// applies one within a request's time; at once `None` unless its log holds one.
    async fn applies_own_removal(&self, before: Option<crate::types::LogId>) -> Option<u64> {
        let leaves_out = |membership: &StoredMembership| {
            *membership.log_id() > before && membership.membership().get_node(&self.id).is_none()
        };
        if !leaves_out(&self.raft_metrics().membership_config) {
            return None;
        }
        let deadline = tokio::time::Instant::now() + super::REQUEST_TIMEOUT;
        let mut applied = self.sm.applied();
        loop {
            {
                let inner = self.sm.lock();
                let membership = &inner.state.membership;
                if leaves_out(membership) {
                    return membership.log_id().map(|id| id.index);
                }
            }
            if !matches!(
                tokio::time::timeout_at(deadline, applied.changed()).await,
                Ok(Ok(()))
            ) {
                return None;
            }
        }
    }
}

/// Refuses a peer URL a member could not be dialled at, in etcd's words (InvalidArgument
/// through `request_status`).
pub fn check_peer_url(peer_url: &str) -> Result<(), RequestError> {
    if peer_url.starts_with("http://") || peer_url.starts_with("https://") {
        Ok(())
    } else {
        Err(RequestError::Internal(format!(
            "{BAD_PEER_URL} {peer_url:?} is not an http(s) URL"
        )))
    }
}

/// What raft's refusal of a change means to the client that asked for it.
fn membership_error(e: &RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> RequestError {
    match e {
        // Refused before anything was appended: the leader moved.
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => RequestError::NotLeader,
        // Appended and then lost to another leader's log: it may yet commit.
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => RequestError::LeaderFailed,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(refused)) => {
            RequestError::Internal(format!("{CHANGE_REFUSED} {refused}"))
        }
        RaftError::APIError(other) => RequestError::Internal(other.to_string()),
        RaftError::Fatal(fatal) => RequestError::Internal(format!("raft stopped: {fatal}")),
    }
}

#[cfg(test)]
mod tests {
    use openraft::error::{ChangeMembershipError, EmptyMembership, ForwardToLeader, InProgress};

    use super::*;

    fn api(e: ClientWriteError<TypeConfig>) -> RaftError<TypeConfig, ClientWriteError<TypeConfig>> {
        RaftError::APIError(e)
    }

    /// Each of raft's refusals says what it means: a change already under way is not "not
    /// leader" (its text names a leader id, which an earlier match on words took for one), and
    /// an entry lost to another leader's log may still commit.
    #[test]
    fn raft_refusals_keep_their_meaning() {
        let moved = ForwardToLeader::<TypeConfig>::empty();
        let in_progress = ChangeMembershipError::InProgress(InProgress {
            committed: Some(openraft::testing::log_id::<TypeConfig>(1, 1, 3)),
            membership_log_id: Some(openraft::testing::log_id::<TypeConfig>(1, 1, 4)),
        });
        let empty = ChangeMembershipError::EmptyMembership(EmptyMembership {});
        assert!(matches!(
            membership_error(&api(ClientWriteError::ForwardToLeader(moved.clone()))),
            RequestError::NotLeader
        ));
        assert!(matches!(
            membership_error(&api(ClientWriteError::LogEntryDiscarded(moved))),
            RequestError::LeaderFailed
        ));
        for refused in [in_progress, empty] {
            let mapped = membership_error(&api(ClientWriteError::ChangeMembershipError(refused)));
            let RequestError::Internal(text) = &mapped else {
                panic!("{mapped:?}");
            };
            assert!(text.starts_with(CHANGE_REFUSED), "{text}");
        }
    }
}
