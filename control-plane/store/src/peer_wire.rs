//! What members say to each other in their gRPC calls, as bytes: openraft's messages and
//! keel's commands in postcard; and why a request forwarded to the leader did not happen
//! there. Below both the peer client and the forwarding of writes, which share it.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::pb::peer::Blob;
use crate::types::{LogId, NodeId};

/// Why a forwarded request did not happen on the leader.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("{0}")]
    Other(String),
}

/// A raft answer that the peer's raft itself refused (it is shutting down, or fatal).
#[derive(Debug, Serialize, Deserialize)]
pub struct RemoteRaftError(pub String);

impl RemoteRaftError {
    /// What a peer sends back for its raft's answer.
    pub fn wrap<T, E: std::fmt::Display>(answer: Result<T, E>) -> Result<T, RemoteRaftError> {
        answer.map_err(|e| RemoteRaftError(e.to_string()))
    }
}

/// Who sends a probe (the peer service's `Probe`): the prober's cluster and id, and the log id
/// of the membership it last applied, sent only while that membership includes it. A leader
/// whose memberships are newer and leave the prober out knows it was removed, and says so
/// ([`MEMBER_REMOVED`]), as etcd's peers answer a removed member's messages.
///
/// A peer of an older version reads nothing of the probe's payload, and an older prober's
/// payload is empty, which the peer service reads as no `ProbeFrom` at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeFrom {
    /// The prober's cluster id, 0 if it has none yet: log ids of two clusters' logs say
    /// nothing of each other.
    pub cluster: u64,
    pub id: NodeId,
    pub membership: LogId,
}

/// A membership change a follower forwards to the leader (etcd's members take one on any
/// member); the leader answers the member's id and the index of the entry that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    Add { peer_url: String, learner: bool },
    Promote { id: NodeId },
    Remove { id: NodeId },
}

/// The answer to a removed member's probe: etcd's words for it (rafthttp's
/// `ErrMemberRemoved`), which the prober recognises with [`is_member_removed`].
pub const MEMBER_REMOVED: &str = "the member has been permanently removed from the cluster";

pub fn member_removed() -> Status {
    Status::failed_precondition(MEMBER_REMOVED)
}

pub fn is_member_removed(status: &Status) -> bool {
    status.code() == tonic::Code::FailedPrecondition && status.message() == MEMBER_REMOVED
}

pub fn encode<T: Serialize>(value: &T) -> Blob {
    Blob {
        // Every type sent here serializes infallibly (plain data, no maps with non-string keys
        // that postcard could refuse); an empty blob would fail to decode on the other side.
        data: postcard::to_stdvec(value).unwrap_or_default(),
    }
}

pub fn decode<T: DeserializeOwned>(blob: &Blob) -> Result<T, Status> {
    postcard::from_bytes(&blob.data)
        .map_err(|e| Status::invalid_argument(format!("undecodable peer message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::alias::LeaderIdOf;
    use openraft::vote::RaftLeaderId;

    fn probe_from() -> ProbeFrom {
        ProbeFrom {
            cluster: 9,
            id: 7,
            membership: LogId::new(
                <LeaderIdOf<crate::types::TypeConfig> as RaftLeaderId>::new(3, 1).to_committed(),
                42,
            ),
        }
    }

    /// Members of two versions probe each other during a rolling upgrade: an older prober's
    /// payload is empty (`()`), and the new one round-trips.
    #[test]
    fn a_probe_payload_is_readable_by_an_older_peer_and_round_trips() {
        for from in [Some(probe_from()), None] {
            let blob = encode(&from);
            assert_eq!(decode::<Option<ProbeFrom>>(&blob).expect("decode"), from);
        }
        assert!(encode(&()).data.is_empty());
    }

    #[test]
    fn a_malformed_probe_payload_is_refused_by_name_and_removal_is_recognised_exactly() {
        let status = decode::<Option<ProbeFrom>>(&Blob {
            data: vec![1, 0xff],
        })
        .expect_err("a truncated probe");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("undecodable peer message"));
        assert!(is_member_removed(&member_removed()));
        assert!(!is_member_removed(&Status::failed_precondition("other")));
        assert!(!is_member_removed(&Status::unavailable(MEMBER_REMOVED)));
    }
}
