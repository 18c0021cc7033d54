//! What a member serves from its own state machine must be as new as the request needs: a
//! linearizable read waits for the leader's read index (confirmed with a quorum) to be applied
//! here, and a serializable read, a watch from "now", a lease read or a backup waits for every
//! write this member acknowledged.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::ReadPolicy;

use super::{forwarded, Forwarded, Member, RequestError, REQUEST_TIMEOUT};
use crate::network::ForwardError;
use crate::types::{Member as MemberNode, TypeConfig};

impl Member {
    /// The leader's side of a read index: confirm leadership with a quorum and answer the
    /// index a linearizable read must see applied. openraft's own wait for the apply goes
    /// through its metrics channel, which is published lazily (tens of milliseconds); the
    /// state machine's own watch says it at once.
    pub async fn read_index_as_leader(&self) -> Result<u64, ForwardError> {
        match tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.raft.get_read_log_id(ReadPolicy::ReadIndex),
        )
        .await
        {
            Ok(Ok((read, _))) => Ok(self.read_floor(&read)),
            Ok(Err(e)) if e.forward_to_leader().is_some() => Err(ForwardError::NotLeader),
            Ok(Err(e)) => Err(ForwardError::Other(e.to_string())),
            Err(_) => Err(ForwardError::Timeout),
        }
    }

    /// Waits until this member may serve a linearizable read from its own state machine: the
    /// leader confirms it still leads (ReadIndex) and this member applied up to that index.
    pub async fn linearizable_barrier(&self) -> Result<(), RequestError> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        // Why the attempt before failed: the answer if the last attempt runs out of time (it
        // may start with microseconds left, too few for raft's core to answer).
        let mut failed_before = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt =
                tokio::time::timeout(left, self.raft.get_read_log_id(ReadPolicy::ReadIndex)).await;
            let retry = match attempt {
                Err(_) => return Err(failed_before.unwrap_or(RequestError::Timeout)),
                Ok(Ok((read, _))) => {
                    let index = self.read_floor(&read);
                    return self.wait_applied(index, deadline).await;
                }
                Ok(Err(e)) => match e.forward_to_leader() {
                    None => return Err(RequestError::Timeout),
                    Some(f) => match &f.leader_node {
                        None => RequestError::NoLeader,
                        Some(leader) => {
                            match forwarded(self.leaders_read_index(leader, left).await) {
                                Forwarded::Answer(index) => {
                                    return self.wait_applied(index, deadline).await
                                }
                                Forwarded::Retry(why) => why,
                                Forwarded::Failed(e) => return Err(e),
                            }
                        }
                    },
                },
            };
            if Instant::now() >= deadline {
                return Err(retry);
            }
            failed_before = Some(retry);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The leader's read index for a read on this follower, from the first round of
    /// [`read_rounds`](super::read_rounds) that starts from now on (at most `timeout` from now).
    async fn leaders_read_index(
        &self,
        leader: &MemberNode,
        timeout: Duration,
    ) -> Result<Result<u64, ForwardError>, tonic::Status> {
        let peer = self.peer(leader);
        let round = self
            .read_rounds
            .join(move || async move { peer.read_index(timeout).await });
        match tokio::time::timeout(timeout, round).await {
            Ok(outcome) => outcome,
            Err(_) => Err(tonic::Status::deadline_exceeded(
                "the leader's read index did not come in time",
            )),
        }
    }

    /// The index a linearizable read must see applied: openraft's read index, but never below
    /// the last entry this member's log held when it first served a read as this leader.
    ///
    /// openraft's read index is the larger of the leader's commit index and the first entry of
    /// its term. A member restarted as the leader of the term it led before (openraft resumes
    /// a leadership whose vote it persisted) takes that first entry from long ago, and the
    /// commit index it saved, which is not synced and can be older than writes it already
    /// acknowledged: after every member was killed, a read then missed the last acknowledged
    /// key. Every entry the leader's log holds when it begins serving reads will commit if the
    /// leadership holds, so waiting for them is always safe, and for a leader elected afresh
    /// it is its blank entry and whatever came right after it.
    fn read_floor(&self, read: &openraft::raft::linearizable_read::ReadLogId<TypeConfig>) -> u64 {
        let mut floor = self.read_floor.lock().unwrap_or_else(|p| p.into_inner());
        let leader = *read.committed_leader_id();
        let index = match *floor {
            Some((known, index)) if known == leader => index,
            _ => {
                let last = self
                    .raft
                    .metrics()
                    .borrow_watched()
                    .last_log_index
                    .unwrap_or(0);
                *floor = Some((leader, last));
                last
            }
        };
        read.index().max(index)
    }

    /// Waits until this member has applied every write it has acknowledged to a client, which
    /// whatever it serves from its own state must include (a serializable read, a watch from
    /// "now", a lease's time to live and keys, a backup).
    ///
    /// etcd gets this by answering a write sent to a follower only after the follower applied
    /// it. Here the leader answers a forwarded write after its own apply, and the follower
    /// relays that at once: its apply, which waits for the leader's commit notice, can come
    /// later (a client's serializable read right after its put missed it in one of eight
    /// tries with the leader busy), and waiting for it before answering took about a tenth
    /// off the forwarded writes' rate in hand runs at one and sixteen clients. The wait moves
    /// to the reads, which rarely find anything to wait for.
    pub async fn caught_up(&self) -> Result<(), RequestError> {
        let acknowledged = self.acknowledged.load(Ordering::Acquire);
        if self.sm.applied_revision() >= acknowledged {
            return Ok(());
        }
        self.wait_applied(acknowledged.max(0) as u64, Instant::now() + REQUEST_TIMEOUT)
            .await
    }

    pub(super) async fn wait_applied(
        &self,
        index: u64,
        deadline: Instant,
    ) -> Result<(), RequestError> {
        let mut applied = self.sm.applied();
        let left = deadline.saturating_duration_since(Instant::now());
        let reached = tokio::time::timeout(left, applied.wait_for(|rev| *rev >= index as i64))
            .await
            .is_ok_and(|r| r.is_ok());
        if reached {
            Ok(())
        } else {
            Err(RequestError::Timeout)
        }
    }
}
