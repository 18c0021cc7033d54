//! Member-to-member transport: openraft's RPCs and the requests a follower forwards to the
//! leader, each a postcard payload in one unary gRPC call over a channel kept per peer.

use std::time::Duration;

use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::RaftNetworkV2;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};

use crate::pb::peer::peer_client::PeerClient as GrpcPeerClient;
use crate::pb::peer::Blob;
use crate::state_machine::Snapshot;
use crate::types::{Command, CommandResult, Member, NodeId, TypeConfig, Vote};

/// Largest message between members: a snapshot travels in one.
pub const MAX_PEER_MESSAGE: usize = 1 << 30;

/// How often either end of a peer connection pings the other when it has heard nothing, and
/// how long it waits for the answer before it closes the connection. A partition thus ends
/// the connections across it within three seconds, inside a request's 5 s: bytes a member
/// sent into it — a write forwarded to the leader, whose sender has since answered "timed
/// out" — are refused by the closed socket when the network returns, instead of being
/// delivered by TCP's retransmissions and committed long after the client gave up (etcd's
/// rafthttp gets the same from its connections' read timeout).
pub const PEER_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
pub const PEER_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

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

pub fn decode<T: DeserializeOwned>(blob: &Blob) -> Result<T, tonic::Status> {
    postcard::from_bytes(&blob.data)
        .map_err(|e| tonic::Status::invalid_argument(format!("undecodable peer message: {e}")))
}

/// A lazily connected client of one peer.
#[derive(Clone)]
pub struct Peer {
    target: NodeId,
    client: Option<GrpcPeerClient<Channel>>,
    url: String,
}

impl Peer {
    pub fn new(target: NodeId, url: &str) -> Self {
        let client = Endpoint::from_shared(url.to_owned()).ok().map(|e| {
            let channel = e
                .connect_timeout(Duration::from_millis(500))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(PEER_KEEPALIVE_INTERVAL)
                .keep_alive_timeout(PEER_KEEPALIVE_TIMEOUT)
                .keep_alive_while_idle(true)
                .connect_lazy();
            GrpcPeerClient::new(channel)
                .max_decoding_message_size(MAX_PEER_MESSAGE)
                .max_encoding_message_size(MAX_PEER_MESSAGE)
        });
        Self {
            target,
            client,
            url: url.to_owned(),
        }
    }

    fn client(&self) -> Result<GrpcPeerClient<Channel>, tonic::Status> {
        self.client.clone().ok_or_else(|| {
            tonic::Status::invalid_argument(format!(
                "member {:x} has an invalid peer URL {:?}",
                self.target, self.url
            ))
        })
    }

    /// One call: encode, send with a deadline, decode.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: Method,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, tonic::Status> {
        let mut client = self.client()?;
        let mut request = tonic::Request::new(encode(req));
        request.set_timeout(timeout);
        let response = match method {
            Method::Append => client.append_entries(request).await?,
            Method::Vote => client.vote(request).await?,
            Method::PreVote => client.pre_vote(request).await?,
            Method::Snapshot => client.install_snapshot(request).await?,
            Method::Propose => client.propose(request).await?,
            Method::ReadIndex => client.read_index(request).await?,
            Method::KeepAlive => client.lease_keep_alive(request).await?,
            Method::TimeToLive => client.lease_time_to_live(request).await?,
        };
        decode(response.get_ref())
    }

    pub async fn propose(
        &self,
        cmd: &Command,
        timeout: Duration,
    ) -> Result<Result<CommandResult, ForwardError>, tonic::Status> {
        self.call(Method::Propose, cmd, timeout).await
    }

    pub async fn read_index(
        &self,
        timeout: Duration,
    ) -> Result<Result<u64, ForwardError>, tonic::Status> {
        self.call(Method::ReadIndex, &(), timeout).await
    }

    pub async fn lease_keep_alive(
        &self,
        id: i64,
        timeout: Duration,
    ) -> Result<Result<i64, ForwardError>, tonic::Status> {
        self.call(Method::KeepAlive, &id, timeout).await
    }

    pub async fn lease_time_to_live(
        &self,
        id: i64,
        timeout: Duration,
    ) -> Result<Result<Option<(i64, i64)>, ForwardError>, tonic::Status> {
        self.call(Method::TimeToLive, &id, timeout).await
    }
}

#[derive(Clone, Copy)]
enum Method {
    Append,
    Vote,
    PreVote,
    Snapshot,
    Propose,
    ReadIndex,
    KeepAlive,
    TimeToLive,
}

/// Maps a transport failure to what openraft should do: back off from an unreachable peer,
/// retry after other failures. A peer answering with an error status is a network error too
/// (openraft's own errors travel inside the payload).
fn rpc_error(status: tonic::Status) -> RPCError<TypeConfig> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            RPCError::Unreachable(Unreachable::from_string(status.message()))
        }
        _ => RPCError::Network(NetworkError::from_string(status.message())),
    }
}

/// A raft answer that the peer's raft itself refused (it is shutting down, or fatal).
#[derive(Debug, Serialize, Deserialize)]
pub struct RemoteRaftError(pub String);

impl Peer {
    /// One raft RPC: the transport's failure tells openraft whether to back off; an error the
    /// peer's raft answered travels in the payload.
    async fn raft_call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: Method,
        rpc: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let answer: Result<Resp, RemoteRaftError> = self
            .call(method, rpc, option.hard_ttl())
            .await
            .map_err(rpc_error)?;
        answer.map_err(|e| RPCError::Network(NetworkError::from_string(e.0)))
    }
}

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(Method::Append, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(Method::Vote, &rpc, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(Method::PreVote, &rpc, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let request = (
            vote,
            snapshot.meta,
            serde_bytes::ByteBuf::from(snapshot.snapshot),
        );
        // A snapshot can be large: give it the install timeout times a generous factor.
        let timeout = option.hard_ttl().max(Duration::from_secs(60));
        let call = self.call::<_, Result<SnapshotResponse<TypeConfig>, RemoteRaftError>>(
            Method::Snapshot,
            &request,
            timeout,
        );
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            answer = call => match answer {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(e)) => Err(StreamingError::Network(NetworkError::from_string(e.0))),
                Err(status) => Err(match rpc_error(status) {
                    RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                    RPCError::Network(n) => StreamingError::Network(n),
                    other => StreamingError::Network(NetworkError::from_string(other.to_string())),
                }),
            },
        }
    }
}

/// Makes a [`Peer`] per target; openraft keeps it for the replication stream's life.
#[derive(Clone, Default)]
pub struct PeerNetwork;

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Peer {
        Peer::new(target, &node.peer_url)
    }
}
