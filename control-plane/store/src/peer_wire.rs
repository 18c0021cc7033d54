//! What members say to each other in their gRPC calls, as bytes: openraft's messages and
//! keel's commands in postcard; and why a request forwarded to the leader did not happen
//! there. Below both the peer client and the forwarding of writes, which share it.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::pb::peer::Blob;

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
