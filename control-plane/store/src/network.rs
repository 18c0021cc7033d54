//! Member-to-member transport: openraft's RPCs and the requests a follower forwards to the
//! leader, each a postcard payload in gRPC over a channel kept per peer. Replication to a
//! follower is one long pipelined stream on a link of its own ([`crate::replication_link`]),
//! and writes forwarded to the leader share another ([`crate::forwarding`]); heartbeats go one
//! at a time on a link kept open for them (`HeartbeatLink`); everything else is a unary
//! gRPC call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, Stream, StreamExt};
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetworkV2};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::forwarding::Forwarder;
use crate::metrics::{PeerMetrics, PeerSeries};
use crate::pb::peer::peer_client::PeerClient as GrpcPeerClient;
use crate::pb::peer::Blob;
use crate::peer_wire::is_member_removed;
pub use crate::peer_wire::{
    decode, encode, ForwardError, MembershipChange, ProbeFrom, RemoteRaftError,
};
use crate::replication_link::{self, AppendAnswer, LinkOptions};
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

/// A lazily connected client of one peer.
#[derive(Clone)]
pub struct Peer {
    target: NodeId,
    client: Option<GrpcPeerClient<Channel>>,
    forwarder: Option<Arc<Forwarder>>,
    url: String,
    /// Where links connect (see [`crate::peer_link`]): the peer URL's `host:port`.
    link_addr: Option<String>,
    metrics: PeerSeries,
    /// The link heartbeats travel on, opened by the first.
    heartbeats: Arc<tokio::sync::Mutex<Option<HeartbeatLink>>>,
}

/// A replication link kept open for heartbeats, one request out at a time.
///
/// A heartbeat is what a linearizable read waits for (openraft's ReadIndex confirms the
/// leadership with a heartbeat round): as a unary gRPC call each cost an HTTP/2 stream
/// opened, its headers encoded and decoded, and a task on either end, which put a lone
/// linearizable read on the leader behind etcd's. On a link it is one frame each way.
struct HeartbeatLink {
    requests: tokio::sync::mpsc::Sender<AppendEntriesRequest<TypeConfig>>,
    answers: BoxStream<'static, AppendAnswer>,
    /// A request was sent and its answer not taken: the call that sent it was dropped
    /// (openraft times a heartbeat out). Its answer would be read as the next heartbeat's, and
    /// a late "yes" taken for a fresh one could confirm a leadership already lost, so such a
    /// link is closed and another opened.
    owed: bool,
}

/// The `host:port` a peer URL names, the scheme's port if it names none.
fn link_addr(url: &str) -> Option<String> {
    let uri = url.parse::<http::Uri>().ok()?;
    let authority = uri.authority()?;
    Some(match authority.port_u16() {
        Some(_) => authority.as_str().to_owned(),
        None if uri.scheme_str() == Some("https") => format!("{}:443", authority.as_str()),
        None => format!("{}:80", authority.as_str()),
    })
}

/// The least time a replication link is given to connect and hear the preamble echoed (the
/// gRPC channel's connect timeout).
const LINK_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

impl Peer {
    pub fn new(target: NodeId, url: &str, metrics: PeerMetrics) -> Self {
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
        let link_addr = link_addr(url);
        Self {
            target,
            forwarder: link_addr.clone().map(|addr| Arc::new(Forwarder::new(addr))),
            client,
            link_addr,
            url: url.to_owned(),
            metrics: metrics.of(target),
            heartbeats: Arc::default(),
        }
    }

    /// One heartbeat on the heartbeat link, opened (again) if there is none or the last
    /// heartbeat's answer is owed; a link that fails is dropped, the next heartbeat opens
    /// another.
    async fn heartbeat(
        &self,
        request: AppendEntriesRequest<TypeConfig>,
        option: &RPCOption,
    ) -> AppendAnswer {
        let closed = || {
            RPCError::Unreachable(Unreachable::from_string(format!(
                "the heartbeat link to {} closed",
                self.link_addr.as_deref().unwrap_or(&self.url)
            )))
        };
        let mut slot = self.heartbeats.lock().await;
        if slot.as_ref().is_some_and(|link| link.owed) {
            *slot = None;
        }
        let link = match slot.as_mut() {
            Some(link) => {
                if link.requests.send(request).await.is_err() {
                    // The link's writer ended (its socket broke): the request never left.
                    *slot = None;
                    return Err(closed());
                }
                link
            }
            None => {
                let (requests, queued) = tokio::sync::mpsc::channel(1);
                // Room for one: this send does not wait. `open` connects once it is taken.
                let _ = requests.try_send(request);
                let queued = tokio_stream::wrappers::ReceiverStream::new(queued);
                let answers = self.open_link(queued, option).await?;
                slot.insert(HeartbeatLink {
                    requests,
                    answers,
                    owed: false,
                })
            }
        };
        link.owed = true;
        let answer = link.answers.next().await;
        link.owed = false;
        match answer {
            Some(Ok(answer)) => Ok(answer),
            Some(Err(e)) => {
                *slot = None;
                Err(e)
            }
            None => {
                *slot = None;
                Err(closed())
            }
        }
    }

    /// Opens a replication link to this peer for `input` (see [`replication_link::open`]),
    /// with openraft's timeout for one request stretched for a pipeline.
    async fn open_link<S>(
        &self,
        input: S,
        option: &RPCOption,
    ) -> Result<BoxStream<'static, AppendAnswer>, RPCError<TypeConfig>>
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
    {
        let Some(addr) = self.link_addr.as_deref() else {
            self.metrics.sent_failures.inc();
            return Err(rpc_error(self.invalid_url()));
        };
        let options = LinkOptions {
            connect_timeout: option.hard_ttl().max(LINK_CONNECT_TIMEOUT),
            stall: option.hard_ttl() * APPEND_STREAM_STALL_HEARTBEATS,
        };
        replication_link::open(addr, input, options, self.metrics.clone()).await
    }

    fn client(&self) -> Result<GrpcPeerClient<Channel>, tonic::Status> {
        self.client.clone().ok_or_else(|| self.invalid_url())
    }

    /// What every request to a peer whose URL does not parse fails with.
    fn invalid_url(&self) -> tonic::Status {
        tonic::Status::invalid_argument(format!(
            "member {:x} has an invalid peer URL {:?}",
            self.target, self.url
        ))
    }

    /// One call: encode, send with a deadline, decode. A call the peer could not be reached
    /// for, or answered with what does not decode, is counted in
    /// `etcd_network_peer_sent_failures_total`; one that ran out of time is not (a slow peer
    /// — a heartbeat behind a long fsync — is not a member down; the probes, which involve no
    /// raft, count a peer that stops answering), nor one its caller gave up.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: Method,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, tonic::Status> {
        let answer = self.call_once(method, req, timeout).await;
        if let Err(status) = &answer {
            if !matches!(
                status.code(),
                tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
            ) {
                self.metrics.sent_failures.inc();
            }
        }
        answer
    }

    async fn call_once<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: Method,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, tonic::Status> {
        decode(&self.call_raw(method, req, timeout).await?)
    }

    async fn call_raw<Req: Serialize>(
        &self,
        method: Method,
        req: &Req,
        timeout: Duration,
    ) -> Result<Blob, tonic::Status> {
        let mut client = self.client()?;
        let mut request = tonic::Request::new(encode(req));
        request.set_timeout(timeout);
        let response = match method {
            Method::Append => client.append_entries(request).await?,
            Method::Vote => client.vote(request).await?,
            Method::PreVote => client.pre_vote(request).await?,
            Method::Snapshot => client.install_snapshot(request).await?,
            Method::TransferLeader => client.transfer_leader(request).await?,
            Method::ReadIndex => client.read_index(request).await?,
            Method::KeepAlive => client.lease_keep_alive(request).await?,
            Method::TimeToLive => client.lease_time_to_live(request).await?,
            Method::Probe => client.probe(request).await?,
            Method::MemberChange => client.member_change(request).await?,
        };
        Ok(response.into_inner())
    }

    /// A client write forwarded to this peer as leader (see [`crate::forwarding`]).
    pub async fn propose(
        &self,
        cmd: Command,
        timeout: Duration,
    ) -> Result<Result<CommandResult, ForwardError>, tonic::Status> {
        // Not counted per proposal: one broken stream fails every proposal on it, and a full
        // queue or a slow commit is not the peer's failure; the probes count a peer that is
        // gone.
        match &self.forwarder {
            Some(forwarder) => forwarder.propose(cmd, timeout).await,
            None => Err(self.invalid_url()),
        }
    }

    /// Times one probe's round trip into `etcd_network_peer_round_trip_time_seconds`, or
    /// counts it failed (not answered within `timeout` too). A peer of an older version,
    /// which does not know the call, answers it all the same: a rolling upgrade is not a
    /// member down. The answer names the peer's cluster id, when it knows it (an older peer's
    /// is empty). A peer that knows this member was removed from the cluster says so
    /// ([`Probed::Removed`]; see [`ProbeFrom`]).
    pub async fn probe(&self, from: Option<ProbeFrom>, timeout: Duration) -> Probed {
        let started = Instant::now();
        let probed = match self.call_raw(Method::Probe, &from, timeout).await {
            Ok(answer) => Probed::Answered {
                cluster_id: decode::<u64>(&answer).unwrap_or(0),
            },
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                Probed::Answered { cluster_id: 0 }
            }
            Err(status) if is_member_removed(&status) => Probed::Removed,
            Err(_) => Probed::Unanswered,
        };
        if probed == Probed::Unanswered {
            self.metrics.sent_failures.inc();
        } else {
            self.metrics
                .round_trip
                .observe(started.elapsed().as_secs_f64());
        }
        probed
    }

    /// A membership change forwarded to this peer as leader: the member's id and the index
    /// of the membership entry that made it.
    pub async fn member_change(
        &self,
        change: &MembershipChange,
        timeout: Duration,
    ) -> Result<Result<(NodeId, u64), ForwardError>, tonic::Status> {
        self.call(Method::MemberChange, change, timeout).await
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

/// What became of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probed {
    /// With the peer's cluster id, 0 when it does not know it (yet).
    Answered { cluster_id: u64 },
    /// No answer in time, or an error.
    Unanswered,
    /// The peer answered that the prober has been removed from the cluster.
    Removed,
}

#[derive(Clone, Copy)]
enum Method {
    Append,
    Vote,
    PreVote,
    Snapshot,
    TransferLeader,
    ReadIndex,
    KeepAlive,
    TimeToLive,
    Probe,
    MemberChange,
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

/// How long a replication link may go without an answer while it has requests out before the
/// leader gives up on it and opens another: ten heartbeats (one second at etcd's default). A
/// follower that is merely slow (a long fsync under load) answers within that; one cut off is
/// also found by the link's keep-alive. Openraft's own timeout is one heartbeat per request,
/// meant for a unary call; applied to a pipeline, where a request also waits for those ahead
/// of it, it would end healthy links under load.
const APPEND_STREAM_STALL_HEARTBEATS: u32 = 10;

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = Vec<u8>;

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, AppendAnswer>, RPCError<TypeConfig>>>
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        // A heartbeat is a stream that says it holds one request: it goes on the heartbeat
        // link, without a link (or an HTTP/2 stream) opened and closed each time.
        if input.size_hint().1 == Some(1) {
            let mut input = input;
            return Box::pin(async move {
                let Some(request) = input.next().await else {
                    return Ok(stream::empty().boxed());
                };
                let answer = self.heartbeat(request, &option).await;
                Ok(stream::once(std::future::ready(answer)).boxed())
            });
        }
        Box::pin(async move {
            let answers = self.open_link(input, &option).await?;
            Ok(answers as BoxStream<'s, AppendAnswer>)
        })
    }

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

    async fn transfer_leader(
        &mut self,
        rpc: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(Method::TransferLeader, &rpc, &option).await
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
pub struct PeerNetwork {
    pub metrics: PeerMetrics,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Peer {
        Peer::new(target, &node.peer_url, self.metrics.clone())
    }
}

#[cfg(test)]
#[path = "network_tests.rs"]
mod tests;
