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
