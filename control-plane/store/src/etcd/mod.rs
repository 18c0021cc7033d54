//! etcd's v3 gRPC API (keel's subset) on a member: KV, Watch, Lease, Cluster and Maintenance,
//! answering with etcd's error codes and messages so that clientv3-based tools (etcdctl) and the
//! `etcd-client` crate behave as they do against etcd.

pub mod cluster;
pub mod convert;
pub mod kv;
pub mod lease;
pub mod watch;
pub mod watch_service;
pub mod watch_wire;

use std::sync::Arc;

use tonic::Status;

use crate::member::{
    Member, RequestError, BAD_PEER_URL, CHANGE_REFUSED, MEMBER_NOT_FOUND, ONLY_LEARNERS_PROMOTE,
    PEER_URL_EXISTS,
};
use crate::pb::etcdserverpb as pb;
use crate::types::ApplyError;

/// etcd's `--max-request-bytes` default: the largest request raft will carry.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// What the gRPC layer accepts before refusing to decode (etcd adds 512 KiB of headroom so
/// that an oversized request gets etcd's own error rather than a transport one).
pub const MAX_GRPC_MESSAGE: usize = MAX_REQUEST_BYTES + 512 * 1024;

/// The shared handle every service holds.
#[derive(Clone)]
pub struct Api {
    pub member: Arc<Member>,
}

impl Api {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }

    /// Every response carries one: clientv3 dereferences it unconditionally.
    pub fn header(&self, revision: i64) -> pb::ResponseHeader {
        pb::ResponseHeader {
            cluster_id: self.member.cluster_id(),
            member_id: self.member.id,
            revision,
            raft_term: self.member.term(),
        }
    }

    pub fn current_revision(&self) -> i64 {
        self.member.sm.lock().state.kv.revision()
    }
}

pub fn apply_status(e: ApplyError) -> Status {
    let message = e.to_string();
    match e {
        ApplyError::Compacted | ApplyError::FutureRevision => Status::out_of_range(message),
        ApplyError::LeaseNotFound | ApplyError::KeyNotFound => Status::not_found(message),
        ApplyError::LeaseExists => Status::failed_precondition(message),
        ApplyError::EmptyKey | ApplyError::DuplicateKey => Status::invalid_argument(message),
    }
}

pub fn request_status(e: RequestError) -> Status {
    let message = e.to_string();
    match e {
        RequestError::NoLeader | RequestError::Timeout | RequestError::LeaderFailed => {
            Status::unavailable(message)
        }
        RequestError::NotLeader => Status::failed_precondition(message),
        // A membership change the leader refused, in etcd's words and with its codes.
        RequestError::Internal(text) if text == MEMBER_NOT_FOUND => Status::not_found(message),
        RequestError::Internal(text)
            if text.starts_with(ONLY_LEARNERS_PROMOTE)
                || text == PEER_URL_EXISTS
                || text.starts_with(CHANGE_REFUSED) =>
        {
            Status::failed_precondition(message)
        }
        RequestError::Internal(text) if text.starts_with(BAD_PEER_URL) => {
            Status::invalid_argument(message)
        }
        RequestError::Internal(_) => Status::internal(message),
    }
}

/// Refuses what raft should not carry: etcd's "request is too large".
pub fn check_size(encoded_len: usize) -> Result<(), Status> {
    if encoded_len > MAX_REQUEST_BYTES {
        return Err(Status::invalid_argument(format!(
            "etcdserver: request is too large ({encoded_len} bytes; the limit is {MAX_REQUEST_BYTES})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A membership change the leader refused reaches the client with etcd's code, also when
    /// a follower forwarded it and got the refusal back as text.
    #[test]
    fn a_refused_membership_change_has_etcds_code() {
        let cases = [
            (MEMBER_NOT_FOUND.to_owned(), tonic::Code::NotFound),
            (
                ONLY_LEARNERS_PROMOTE.to_owned(),
                tonic::Code::FailedPrecondition,
            ),
            (
                format!("{ONLY_LEARNERS_PROMOTE} which is in sync with leader"),
                tonic::Code::FailedPrecondition,
            ),
            (
                format!("{BAD_PEER_URL} \"ftp://x\" is not an http(s) URL"),
                tonic::Code::InvalidArgument,
            ),
            (PEER_URL_EXISTS.to_owned(), tonic::Code::FailedPrecondition),
            (
                format!("{CHANGE_REFUSED} the membership is in a joint state"),
                tonic::Code::FailedPrecondition,
            ),
            ("disk on fire".to_owned(), tonic::Code::Internal),
        ];
        for (text, code) in cases {
            let status = request_status(RequestError::Internal(text.clone()));
            assert_eq!(status.code(), code, "{text}");
            assert_eq!(status.message(), format!("etcdserver: {text}"));
        }
    }
}
