//! Links: the member-to-member connections that are not gRPC. Two carry every write, so they
//! skip HTTP/2: the leader's replication to a follower (`replication_link`) and a follower's
//! forwarding of client writes to the leader (`forwarding`). Through hyper's HTTP/2 each
//! message crossed two more tasks on either side (the body pump and the connection task)
//! before it reached a socket or raft; a link's frames ([`crate::peer_frames`]) are written and
//! read by the tasks that make and use them. etcd's rafthttp keeps its raft
//! streams off gRPC likewise.
//!
//! A link is a TCP connection to the peer port that opens with its lane's preamble, which the
//! other end echoes: the peer listener tells links from gRPC by it ([`classify`]), and a member
//! that does not speak links (one of an older version) closes the connection instead of
//! echoing, which the opener reports as such.
//!
//! A partition must still end a link within seconds, as the gRPC connections' HTTP/2 pings end
//! theirs: both ends set TCP keep-alive probes and `TCP_USER_TIMEOUT`, so the kernel gives up
//! on a peer that stops acknowledging, without a wake-up of ours while the link is healthy.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{self, BoxStream, Stream, StreamExt};
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::peer_frames::{self, FrameError};

/// What a link carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// openraft's pipelined AppendEntries, leader to follower.
    Replication,
    /// Client writes a follower forwards, follower to leader.
    Forwarding,
}

impl Lane {
    const ALL: [Lane; 2] = [Lane::Replication, Lane::Forwarding];

    /// What the opening end sends first, and the other end echoes. An HTTP/2 connection
    /// begins with `PRI * HTTP/2.0`.
    pub fn preamble(self) -> &'static [u8] {
        match self {
            Lane::Replication => b"KEEL-REPLICATION/1\n",
            Lane::Forwarding => b"KEEL-FORWARDING/1\n",
        }
    }
}

/// Largest frame either end of a link reads: a batch of raft entries (openraft's
/// `max_payload_entries`, 300) or of forwarded writes (256), each at most a client request
/// (1.5 MiB), fits well inside. A larger one is refused before its body is read.
pub const MAX_FRAME: usize = 1 << 30;

/// Frames ready together are written together, up to this many bytes a write.
pub const WRITE_BATCH: usize = 1 << 20;

/// The longest preamble: what [`classify`] looks at.
const LONGEST_PREAMBLE: usize = 19;

/// How long a new connection to the peer port may take to show which protocol it speaks.
pub const CLASSIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// Keep-alive and unacknowledged-data limits on a link's socket: a peer cut off is given up
/// within about three seconds, like the gRPC connections' HTTP/2 pings.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(1);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_PROBES: u32 = 2;
const USER_TIMEOUT: Duration = Duration::from_secs(3);

/// Which protocol a connection to the peer port speaks.
#[derive(Debug, PartialEq, Eq)]
pub enum Protocol {
    Link(Lane),
    /// Anything else, gRPC included: hand it to the gRPC server, which refuses what is not.
    Other,
}

/// Looks at a new connection's first bytes without taking them.
pub async fn classify(socket: &TcpStream, timeout: Duration) -> Protocol {
    let mut first = [0u8; LONGEST_PREAMBLE];
    crate::first_bytes::peek_until(socket, timeout, &mut first, told)
        .await
        .unwrap_or(Protocol::Other)
}

/// The protocol `first` (a connection's first bytes) begins, or `None` while it could still be
/// part of a preamble.
fn told(first: &[u8]) -> Option<Protocol> {
    let mut waiting = false;
    for lane in Lane::ALL {
        let preamble = lane.preamble();
        let compared = first.len().min(preamble.len());
        if first[..compared] != preamble[..compared] {
            continue;
        }
        if first.len() >= preamble.len() {
            return Some(Protocol::Link(lane));
        }
        waiting = true;
    }
    if waiting {
        None
    } else {
        Some(Protocol::Other)
    }
}

/// Nagle off (every frame is latency-bound), keep-alive probes and a user timeout on.
pub fn configure(socket: &TcpStream) {
    if let Err(e) = socket.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY on a peer link");
    }
    let socket = socket2::SockRef::from(socket);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    if let Err(e) = socket
        .set_tcp_keepalive(&keepalive)
        .and_then(|()| socket.set_tcp_user_timeout(Some(USER_TIMEOUT)))
    {
        tracing::debug!(error = %e, "keep-alive on a peer link");
    }
}

/// Why a link did not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{addr}: {error}")]
    Unreachable { addr: String, error: std::io::Error },
    #[error(
        "the member at {addr} did not answer the {lane:?} link's preamble (not a keel member, \
         or one of a version without it)"
    )]
    NotALink { addr: String, lane: Lane },
}

/// Opens a link of `lane` to the peer port at `addr` (`host:port`).
pub async fn open(addr: &str, lane: Lane) -> Result<TcpStream, OpenError> {
    let unreachable = |error| OpenError::Unreachable {
        addr: addr.to_owned(),
        error,
    };
    let mut socket = TcpStream::connect(addr).await.map_err(unreachable)?;
    configure(&socket);
    let preamble = lane.preamble();
    socket.write_all(preamble).await.map_err(unreachable)?;
    let mut echo = vec![0u8; preamble.len()];
    match socket.read_exact(&mut echo).await {
        Ok(_) if echo == preamble => Ok(socket),
        // Closed without an echo: a member that does not speak links (an older keel, whose
        // gRPC server drops a connection that is not HTTP/2) or one shutting down.
        Ok(_) => Err(OpenError::NotALink {
            addr: addr.to_owned(),
            lane,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(OpenError::NotALink {
            addr: addr.to_owned(),
            lane,
        }),
        Err(e) => Err(unreachable(e)),
    }
}

/// The accepting end, once [`classify`] named the lane: takes the preamble and echoes it.
/// False if the connection broke or did not open with `lane`'s preamble after all.
pub async fn accept(socket: &mut TcpStream, lane: Lane) -> bool {
    configure(socket);
    let preamble = lane.preamble();
    let mut first = vec![0u8; preamble.len()];
    socket.read_exact(&mut first).await.is_ok()
        && first == preamble
        && socket.write_all(preamble).await.is_ok()
}

/// The frames arriving on a link, decoded, in order; an error is the last item. A frame read
/// half way is kept across a dropped `next()`: reading it under a timeout loses nothing.
pub fn frames<T>(read: OwnedReadHalf) -> BoxStream<'static, Result<T, FrameError>>
where
    T: DeserializeOwned + Send + 'static,
{
    stream::unfold(Some(BufReader::new(read)), |reader| async move {
        let mut reader = reader?;
        match peer_frames::read::<T, _>(&mut reader, MAX_FRAME).await {
            Ok(Some(frame)) => Some((Ok(frame), Some(reader))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}

/// Why the answering end of a link stopped reading, when the other end sent what it refuses
/// (a frame too large, or one that does not decode): its last word, after the answers owed.
#[derive(Clone, Default)]
pub struct Refusal(Arc<Mutex<Option<String>>>);

impl Refusal {
    pub fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// What the answering end of a link reads: the requests, until the link ends, breaks, or
/// brings what `refusal` then keeps.
pub fn requests<T>(read: OwnedReadHalf, lane: Lane, refusal: Refusal) -> BoxStream<'static, T>
where
    T: DeserializeOwned + Send + 'static,
{
    frames::<T>(read)
        .scan((), move |(), frame| {
            let request = match frame {
                Ok(request) => Some(request),
                Err(e) => {
                    if e.is_refusal() {
                        tracing::warn!(error = %e, ?lane, "refusing a peer link");
                        *refusal.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    }
                    None
                }
            };
            futures::future::ready(request)
        })
        .boxed()
}

/// The answering end's writing: each answer a frame, those ready together in one write; then
/// `last` (a refusal), if there is one; then its side of the link closes.
pub async fn answer<T, S>(answers: S, last: impl FnOnce() -> Option<T>, mut write: OwnedWriteHalf)
where
    T: Serialize,
    S: Stream<Item = T>,
{
    let mut answers = std::pin::pin!(answers.fuse());
    let mut bytes = Vec::new();
    while let Some(first) = answers.next().await {
        bytes.clear();
        peer_frames::put(&mut bytes, &first);
        while bytes.len() < WRITE_BATCH {
            match answers.next().now_or_never() {
                Some(Some(answer)) => peer_frames::put(&mut bytes, &answer),
                _ => break,
            }
        }
        if write.write_all(&bytes).await.is_err() {
            return;
        }
    }
    if let Some(last) = last() {
        bytes.clear();
        peer_frames::put(&mut bytes, &last);
        let _ = write.write_all(&bytes).await;
    }
    let _ = write.shutdown().await;
}

/// Every frame the other end of a link sends until it closes: what the links' tests read.
#[cfg(test)]
pub(crate) async fn frames_until_closed<T: DeserializeOwned>(socket: &mut TcpStream) -> Vec<T> {
    let mut frames = Vec::new();
    while let Some(frame) = peer_frames::read::<T, _>(socket, MAX_FRAME)
        .await
        .expect("well-formed frames")
    {
        frames.push(frame);
    }
    frames
}

/// Aborts a link's helper task (its writer) when the link's user drops it.
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn the_longest_preamble_is_what_classify_looks_at() {
        let longest = Lane::ALL.iter().map(|l| l.preamble().len()).max();
        assert_eq!(longest, Some(LONGEST_PREAMBLE));
    }

    #[tokio::test]
    async fn the_peer_port_tells_links_from_grpc_by_the_first_bytes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let cases: Vec<(&[u8], Protocol)> = vec![
            (
                Lane::Replication.preamble(),
                Protocol::Link(Lane::Replication),
            ),
            (
                Lane::Forwarding.preamble(),
                Protocol::Link(Lane::Forwarding),
            ),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Protocol::Other),
            (b"KEEL-REPLICATION/2\n", Protocol::Other),
            (b"GET / HTTP/1.1\r\n\r\n", Protocol::Other),
        ];
        for (first, want) in cases {
            let mut client = TcpStream::connect(addr).await.expect("connect");
            let (server, _) = listener.accept().await.expect("accept");
            client.write_all(first).await.expect("write");
            assert_eq!(
                classify(&server, CLASSIFY_TIMEOUT).await,
                want,
                "{:?}",
                String::from_utf8_lossy(first)
            );
            // Nothing was taken: the whole opening is still there for whoever serves it.
            let mut seen = vec![0u8; first.len()];
            let mut server = server;
            server.read_exact(&mut seen).await.expect("read");
            assert_eq!(seen, first);
        }
        // A preamble in two pieces, the second late.
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let preamble = Lane::Forwarding.preamble();
        client.write_all(&preamble[..5]).await.expect("write");
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            client.write_all(&preamble[5..]).await.expect("write");
            client
        });
        assert_eq!(
            classify(&server, CLASSIFY_TIMEOUT).await,
            Protocol::Link(Lane::Forwarding)
        );
        let _client = late.await.expect("writer");
        // A connection that says nothing is handed on when the wait is over, and one that
        // closes at once as well.
        let _silent = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        assert_eq!(
            classify(&server, Duration::from_millis(100)).await,
            Protocol::Other
        );
        drop(TcpStream::connect(addr).await.expect("connect"));
        let (server, _) = listener.accept().await.expect("accept");
        assert_eq!(classify(&server, CLASSIFY_TIMEOUT).await, Protocol::Other);
    }

    #[tokio::test]
    async fn an_end_that_does_not_echo_the_preamble_is_named_as_such() {
        // A peer that reads the preamble and closes, as a gRPC server does with what is not
        // HTTP/2.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 64];
                let _ = socket.read(&mut buf).await;
            }
        });
        let error = open(&addr, Lane::Forwarding).await.expect_err("refused");
        assert!(matches!(error, OpenError::NotALink { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .contains("did not answer the Forwarding link's preamble"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn accept_takes_only_its_own_lanes_preamble() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        for (sent, lane, want) in [
            (Lane::Forwarding, Lane::Forwarding, true),
            (Lane::Replication, Lane::Forwarding, false),
        ] {
            let mut client = TcpStream::connect(addr).await.expect("connect");
            let (mut server, _) = listener.accept().await.expect("accept");
            client.write_all(sent.preamble()).await.expect("write");
            assert_eq!(accept(&mut server, lane).await, want);
        }
    }
}
