//! The replication link: openraft's pipelined AppendEntries stream from a leader to one
//! follower, as length-prefixed postcard frames ([`crate::peer_frames`]) on a link
//! ([`crate::peer_link`]) of its own to the follower's peer port. The leader's writer task
//! writes what openraft hands it straight to the socket, the follower's raft reads straight
//! from it, and the answers are read in the replication task that waits for them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{self, BoxStream, Stream, StreamExt};
use futures::FutureExt;
use openraft::error::{NetworkError, RPCError, Unreachable};
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

use crate::metrics::PeerSeries;
use crate::peer_frames::{self, FrameError};
use crate::peer_link::{self, AbortOnDrop, Lane, OpenError, Refusal, WRITE_BATCH};
use crate::peer_wire::RemoteRaftError;
use crate::types::TypeConfig;

/// What the follower end sends back for each request, in order.
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Answer(Result<StreamAppendResult<TypeConfig>, RemoteRaftError>),
    /// The follower stopped reading: the last request did not decode or was too large. Its
    /// last frame.
    Refused(String),
}

/// What one AppendEntries answer carries back to openraft.
pub type AppendAnswer = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;

/// The follower's end of a link [`peer_link::classify`] found: echoes the preamble, feeds
/// the requests to `append` (the local raft's `stream_append`) and writes its answers back in
/// order. A request that does not decode ends the link, with a refusal frame naming why
/// after the answers owed for the requests before it.
pub async fn serve<F, A, E>(mut socket: TcpStream, append: F)
where
    F: FnOnce(BoxStream<'static, AppendEntriesRequest<TypeConfig>>) -> A,
    A: Stream<Item = Result<StreamAppendResult<TypeConfig>, E>>,
    E: std::fmt::Display,
{
    if !peer_link::accept(&mut socket, Lane::Replication).await {
        return;
    }
    let (read, write) = socket.into_split();
    let refusal = Refusal::default();
    let requests = peer_link::requests(read, Lane::Replication, refusal.clone());
    let answers = append(requests).map(|answer| Reply::Answer(RemoteRaftError::wrap(answer)));
    peer_link::answer(answers, || refusal.take().map(Reply::Refused), write).await;
}

/// How a link's leader end is set up.
pub struct LinkOptions {
    /// How long connecting, and the follower's echo of the preamble, may take.
    pub connect_timeout: Duration,
    /// How long the link may go without an answer while it has requests out.
    pub stall: Duration,
}

/// The leader's end: once `input` yields its first request, connects to the follower at
/// `addr` (`host:port`), writes the requests as openraft makes them, without waiting for the
/// answers to earlier ones, and returns the answers, one per request, in order. The stream
/// ends after its first error, as openraft expects.
///
/// Openraft sleeps out its backoff after a failed session inside `input`, before it yields
/// the next request: a link that connected before taking one would be retried at once after
/// each refused connection, and a follower that is down on a reachable host would keep the
/// leader's replication task in a busy loop (a core and tens of thousands of log lines a
/// second). So nothing is dialled until there is a request to send.
pub async fn open<S>(
    addr: &str,
    mut input: S,
    options: LinkOptions,
    metrics: PeerSeries,
) -> Result<BoxStream<'static, AppendAnswer>, RPCError<TypeConfig>>
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    let Some(first) = input.next().await else {
        return Ok(stream::empty().boxed());
    };
    let input = stream::iter([first]).chain(input);
    let socket = tokio::time::timeout(
        options.connect_timeout,
        peer_link::open(addr, Lane::Replication),
    )
    .await
    .map_err(|_| {
        RPCError::Unreachable(Unreachable::from_string(format!(
            "opening the replication link to {addr} timed out"
        )))
    })
    .and_then(|opened| {
        opened.map_err(|e| match e {
            OpenError::Unreachable { .. } => {
                RPCError::Unreachable(Unreachable::from_string(e.to_string()))
            }
            OpenError::NotALink { .. } => {
                RPCError::Network(NetworkError::from_string(e.to_string()))
            }
        })
    })
    .inspect_err(|_| {
        metrics.sent_failures.inc();
    })?;
    let (read, write) = socket.into_split();
    let unanswered = Arc::new(Mutex::new(VecDeque::new()));
    let writer = AbortOnDrop(tokio::spawn(send_requests(
        input,
        write,
        unanswered.clone(),
    )));
    let answers = Answers {
        replies: peer_link::frames(read),
        unanswered,
        last_progress: Instant::now(),
        stall: options.stall,
        metrics,
        _writer: writer,
    };
    Ok(stream::unfold(Some(answers), |answers| async move {
        let mut answers = answers?;
        match answers.next().await {
            Ok(Some(answer)) => Some((Ok(answer), Some(answers))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed())
}

/// The writer task: each request's send time is queued for the stall deadline as it is
/// taken; requests that are ready together go out in one write.
async fn send_requests<S>(
    mut input: S,
    mut socket: OwnedWriteHalf,
    unanswered: Arc<Mutex<VecDeque<Instant>>>,
) where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Unpin,
{
    let mut batch = Vec::new();
    let mut ended = false;
    while !ended {
        let Some(first) = input.next().await else {
            break;
        };
        batch.clear();
        let mut next = Some(first);
        while let Some(request) = next.take() {
            unanswered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_back(Instant::now());
            peer_frames::put(&mut batch, &request);
            if batch.len() < WRITE_BATCH {
                match input.next().now_or_never() {
                    Some(Some(request)) => next = Some(request),
                    Some(None) => ended = true,
                    None => {}
                }
            }
        }
        if socket.write_all(&batch).await.is_err() {
            return;
        }
    }
    // No more requests: the follower's raft sees its input end, answers what it owes, and
    // closes its side.
    let _ = socket.shutdown().await;
}

/// The answers of one link, read against a stall deadline.
struct Answers {
    replies: BoxStream<'static, Result<Reply, FrameError>>,
    unanswered: Arc<Mutex<VecDeque<Instant>>>,
    last_progress: Instant,
    stall: Duration,
    metrics: PeerSeries,
    _writer: AbortOnDrop,
}

impl Answers {
    async fn next(
        &mut self,
    ) -> Result<Option<StreamAppendResult<TypeConfig>>, RPCError<TypeConfig>> {
        loop {
            let oldest = self
                .unanswered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .front()
                .copied();
            let deadline = match oldest {
                Some(sent) => sent.max(self.last_progress) + self.stall,
                // Nothing out: look again after a while (a request sent meanwhile is then
                // judged from its own send time).
                None => Instant::now() + self.stall,
            };
            // `replies` keeps a frame read half way across the timeout: nothing is lost.
            let reply = tokio::time::timeout_at(deadline.into(), self.replies.next()).await;
            let reply = match reply {
                Ok(Some(reply)) => reply,
                Ok(None) => return Ok(None),
                Err(_) if oldest.is_none() => continue,
                Err(_) => {
                    self.metrics.sent_failures.inc();
                    return Err(RPCError::Unreachable(Unreachable::from_string(format!(
                        "no AppendEntries answer for {:?}",
                        self.stall
                    ))));
                }
            };
            match reply {
                Ok(Reply::Answer(answer)) => {
                    self.unanswered
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .pop_front();
                    self.last_progress = Instant::now();
                    return answer
                        .map(Some)
                        .map_err(|e| RPCError::Network(NetworkError::from_string(e.0)));
                }
                Ok(Reply::Refused(why)) => {
                    self.metrics.sent_failures.inc();
                    return Err(RPCError::Network(NetworkError::from_string(format!(
                        "the follower refused the replication link: {why}"
                    ))));
                }
                Err(e) if e.is_refusal() => {
                    self.metrics.sent_failures.inc();
                    return Err(RPCError::Network(NetworkError::from_string(e.to_string())));
                }
                Err(e) => {
                    self.metrics.sent_failures.inc();
                    return Err(RPCError::Unreachable(Unreachable::from_string(
                        e.to_string(),
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "replication_link_tests.rs"]
pub(crate) mod tests;
