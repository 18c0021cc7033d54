//! What members say to each other, as bytes: openraft's messages and keel's commands in
//! postcard, and why a request forwarded to the leader did not happen there. Below both the
//! peer client and the forwarding of writes, which share it.

use std::sync::{Arc, Mutex};

use futures::stream::{self, BoxStream, Stream, StreamExt};
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

/// Why a peer stream stopped being read, when that was a message that did not decode: the
/// side answering the stream sends it as its last word, after the answers it owes.
#[derive(Clone, Default)]
pub struct Refusal(Arc<Mutex<Option<Status>>>);

impl Refusal {
    fn keep(&self, status: Status) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
    }

    /// The refusal, once: whoever takes it sends it.
    pub fn take(&self) -> Option<Status> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// `answers`, then the refusal if reading was refused.
    pub fn after<S>(self, answers: S) -> BoxStream<'static, Result<Blob, Status>>
    where
        S: Stream<Item = Result<Blob, Status>> + Send + 'static,
    {
        let last = stream::once(async move { self.take() })
            .filter_map(|refusal| async move { refusal.map(Err) });
        answers.chain(last).boxed()
    }
}

/// The messages off a peer stream, decoded, in order. It ends at a transport error, quietly
/// (the sender that could read an answer is gone), or at the first message that does not
/// decode, which `refusal` keeps.
pub fn decoded<T, S>(incoming: S, refusal: Refusal) -> BoxStream<'static, T>
where
    T: DeserializeOwned + Send + 'static,
    S: Stream<Item = Result<Blob, Status>> + Send + Unpin + 'static,
{
    stream::unfold(incoming, move |mut incoming| {
        let refusal = refusal.clone();
        async move {
            let blob = incoming.next().await?.ok()?;
            match decode(&blob) {
                Ok(message) => Some((message, incoming)),
                Err(status) => {
                    refusal.keep(status);
                    None
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_peer_stream_stops_at_the_first_message_that_does_not_decode() {
        let refused = Refusal::default();
        let incoming = stream::iter(vec![
            Ok(encode(&1u64)),
            Ok(Blob {
                data: vec![0xff, 0xff, 0xff],
            }),
            Ok(encode(&2u64)),
        ]);
        let taken: Vec<u64> = decoded::<u64, _>(incoming, refused.clone()).collect().await;
        assert_eq!(taken, vec![1]);
        let refusal = refused.take().expect("a refusal is kept");
        assert_eq!(refusal.code(), tonic::Code::InvalidArgument);
        assert!(
            refusal.message().contains("undecodable peer message"),
            "{refusal:?}"
        );
    }

    #[tokio::test]
    async fn a_peer_stream_the_sender_broke_ends_without_a_refusal() {
        let refused = Refusal::default();
        let incoming = stream::iter(vec![
            Ok(encode(&1u64)),
            Err(Status::unknown("connection reset")),
            Ok(encode(&2u64)),
        ]);
        let taken: Vec<u64> = decoded::<u64, _>(incoming, refused.clone()).collect().await;
        assert_eq!(taken, vec![1]);
        assert!(refused.take().is_none());
    }
}
