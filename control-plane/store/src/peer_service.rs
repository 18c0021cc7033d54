//! The member-to-member gRPC service: raft's RPCs into the local raft, and what followers
//! forward to the leader.

use std::sync::Arc;

use futures::stream::{BoxStream, StreamExt};
use openraft::raft::AppendEntriesRequest;
use tonic::{Request, Response, Status, Streaming};

use crate::forwarding;
use crate::member::Member;
use crate::network::{decode, encode, RemoteRaftError};
use crate::pb::peer::peer_server::Peer;
use crate::pb::peer::Blob;
use crate::peer_wire::{decoded, Refusal};
use crate::state_machine::Snapshot;
use crate::types::{SnapshotMeta, TypeConfig, Vote};

pub struct PeerService {
    member: Arc<Member>,
}

impl PeerService {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }
}

fn remote<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, RemoteRaftError> {
    r.map_err(|e| RemoteRaftError(e.to_string()))
}

#[tonic::async_trait]
impl Peer for PeerService {
    type AppendStreamStream = BoxStream<'static, Result<Blob, Status>>;

    /// Hands the leader's stream to openraft, which appends the requests in order and answers
    /// each once its entries are durable here; the answers go back in the same order.
    async fn append_stream(
        &self,
        request: Request<Streaming<Blob>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        let refusal = Refusal::default();
        let requests: BoxStream<'static, AppendEntriesRequest<TypeConfig>> =
            decoded(request.into_inner(), refusal.clone());
        let answers = self
            .member
            .raft
            .stream_append(requests)
            .map(|answer| Ok(encode(&remote(answer))));
        Ok(Response::new(refusal.after(answers)))
    }

    async fn append_entries(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc = decode(request.get_ref())?;
        let answer = remote(self.member.raft.append_entries(rpc).await);
        Ok(Response::new(encode(&answer)))
    }

    async fn vote(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc = decode(request.get_ref())?;
        let answer = remote(self.member.raft.vote(rpc).await);
        Ok(Response::new(encode(&answer)))
    }

    async fn pre_vote(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc = decode(request.get_ref())?;
        let answer = remote(self.member.raft.pre_vote(rpc).await);
        Ok(Response::new(encode(&answer)))
    }

    async fn transfer_leader(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc = decode(request.get_ref())?;
        let answer = remote(self.member.raft.handle_transfer_leader(rpc).await);
        Ok(Response::new(encode(&answer)))
    }

    async fn install_snapshot(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        let (vote, meta, data): (Vote, SnapshotMeta, serde_bytes::ByteBuf) =
            decode(request.get_ref())?;
        let snapshot = Snapshot {
            meta,
            snapshot: data.into_vec(),
        };
        let answer = remote(self.member.raft.install_full_snapshot(vote, snapshot).await);
        Ok(Response::new(encode(&answer)))
    }

    type ProposeStreamStream = BoxStream<'static, Result<Blob, Status>>;

    async fn propose_stream(
        &self,
        request: Request<Streaming<Blob>>,
    ) -> Result<Response<Self::ProposeStreamStream>, Status> {
        let member = self.member.clone();
        Ok(Response::new(forwarding::serve(
            request.into_inner(),
            move |command| {
                let member = member.clone();
                async move { member.propose_as_leader(command).await }
            },
        )))
    }

    async fn read_index(&self, _request: Request<Blob>) -> Result<Response<Blob>, Status> {
        let answer = self.member.read_index_as_leader().await;
        Ok(Response::new(encode(&answer)))
    }

    async fn lease_keep_alive(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        let id: i64 = decode(request.get_ref())?;
        Ok(Response::new(encode(&self.member.keep_alive_as_leader(id))))
    }

    async fn probe(&self, _request: Request<Blob>) -> Result<Response<Blob>, Status> {
        Ok(Response::new(Blob::default()))
    }

    async fn lease_time_to_live(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        let id: i64 = decode(request.get_ref())?;
        Ok(Response::new(encode(
            &self.member.time_to_live_as_leader(id),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::encode;
    use futures::stream;

    fn heartbeat(term: u64) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(term, 1),
            prev_log_id: None,
            leader_commit: None,
            entries: Vec::new(),
        }
    }

    #[tokio::test]
    async fn an_append_stream_stops_at_the_first_message_that_does_not_decode() {
        let refused = Refusal::default();
        let incoming = stream::iter(vec![
            Ok(encode(&heartbeat(1))),
            Ok(Blob {
                data: vec![0xff, 0xff, 0xff],
            }),
            Ok(encode(&heartbeat(2))),
        ]);
        let taken: Vec<AppendEntriesRequest<TypeConfig>> =
            decoded(incoming, refused.clone()).collect().await;
        let terms: Vec<u64> = taken.iter().map(|r| r.vote.leader_id().term).collect();
        assert_eq!(terms, vec![1]);
        let refusal = refused.take().expect("a refusal is kept");
        assert_eq!(refusal.code(), tonic::Code::InvalidArgument);
        assert!(
            refusal.message().contains("undecodable peer message"),
            "{refusal:?}"
        );
    }

    #[tokio::test]
    async fn an_append_stream_the_leader_broke_ends_without_a_refusal() {
        let refused = Refusal::default();
        let incoming = stream::iter(vec![
            Ok(encode(&heartbeat(1))),
            Err(Status::unknown("connection reset")),
            Ok(encode(&heartbeat(2))),
        ]);
        let taken: Vec<AppendEntriesRequest<TypeConfig>> =
            decoded(incoming, refused.clone()).collect().await;
        let terms: Vec<u64> = taken.iter().map(|r| r.vote.leader_id().term).collect();
        assert_eq!(terms, vec![1]);
        assert!(refused.take().is_none());
    }
}
