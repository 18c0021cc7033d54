//! The replication link over real loopback connections: a leader end from [`open`] against a
//! follower end from [`serve`] whose raft is a stand-in that answers each request with its
//! `prev_log_id`, so order and pipelining are visible; and both ends against hostile peers.

use super::*;
use crate::metrics::PeerMetrics;
use crate::peer_link::MAX_FRAME;
use crate::types::Vote;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// An empty AppendEntries whose `prev_log_id` is at `index` (what the stand-ins echo).
pub(crate) fn request(index: u64) -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: Vote::new_committed(1, 1),
        prev_log_id: Some(openraft::testing::log_id::<TypeConfig>(1, 1, index)),
        leader_commit: None,
        entries: Vec::new(),
    }
}

/// The follower's raft, standing in: answers every request with its `prev_log_id`.
fn echo_prev(
    requests: BoxStream<'static, AppendEntriesRequest<TypeConfig>>,
) -> impl Stream<Item = Result<StreamAppendResult<TypeConfig>, String>> {
    requests.map(|r| Ok(Ok(r.prev_log_id)))
}

fn options(stall: Duration) -> LinkOptions {
    LinkOptions {
        connect_timeout: Duration::from_secs(2),
        stall,
    }
}

/// A follower end on a loopback port, serving every connection with `echo_prev`.
async fn follower() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                assert_eq!(
                    peer_link::classify(&socket, peer_link::CLASSIFY_TIMEOUT).await,
                    peer_link::Protocol::Link(Lane::Replication)
                );
                serve(socket, echo_prev).await;
            });
        }
    });
    addr
}

fn index_of(answer: &AppendAnswer) -> u64 {
    match answer {
        Ok(Ok(Some(log_id))) => log_id.index,
        other => panic!("unexpected answer {other:?}"),
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_once_each_in_order() {
    let addr = follower().await;
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let metrics = PeerMetrics::default().of(2);
    // A thousand requests out before the first answer is read.
    for index in 0..1000 {
        tx.unbounded_send(request(index)).expect("send");
    }
    let mut answers = open(&addr, rx, options(Duration::from_secs(5)), metrics.clone())
        .await
        .expect("the link opens");
    for index in 0..1000 {
        let answer = answers.next().await.expect("an answer per request");
        assert_eq!(index_of(&answer), index);
    }
    // Openraft ends its input: the follower answers what it owes and closes, cleanly.
    tx.unbounded_send(request(1000)).expect("send");
    drop(tx);
    assert_eq!(
        index_of(&answers.next().await.expect("the last answer")),
        1000
    );
    assert!(answers.next().await.is_none(), "the link ends cleanly");
    assert_eq!(metrics.sent_failures.get(), 0);
}

/// Connects as a leader would, past the preamble, and returns the socket.
async fn raw_link(addr: &str) -> TcpStream {
    peer_link::open(addr, Lane::Replication)
        .await
        .expect("the link opens")
}

/// Every reply a follower sends until it closes.
async fn replies(socket: &mut TcpStream) -> Vec<Reply> {
    peer_link::frames_until_closed(socket).await
}

#[tokio::test]
async fn a_follower_answers_what_it_owes_then_refuses_a_frame_that_does_not_decode() {
    let addr = follower().await;
    let mut socket = raw_link(&addr).await;
    let mut bytes = Vec::new();
    peer_frames::put(&mut bytes, &request(7));
    bytes.extend_from_slice(&3u32.to_be_bytes());
    bytes.extend_from_slice(&[0xff, 0xff, 0xff]);
    // Never read: the follower stops at the garbage.
    peer_frames::put(&mut bytes, &request(8));
    socket.write_all(&bytes).await.expect("write");
    let replies = replies(&mut socket).await;
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert!(
        matches!(&replies[0], Reply::Answer(Ok(Ok(Some(id)))) if id.index == 7),
        "{replies:?}"
    );
    match &replies[1] {
        Reply::Refused(why) => assert!(why.starts_with("undecodable peer message"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_follower_refuses_a_frame_over_the_limit_without_reading_it() {
    let addr = follower().await;
    let mut socket = raw_link(&addr).await;
    socket
        .write_all(&(MAX_FRAME as u32 + 1).to_be_bytes())
        .await
        .expect("write");
    match replies(&mut socket).await.as_slice() {
        [Reply::Refused(why)] => assert!(why.contains("over the"), "{why}"),
        other => panic!("expected one refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_follower_drops_a_connection_whose_preamble_is_wrong() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accept");
        serve(socket, echo_prev).await;
    });
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    socket
        .write_all(b"KEEL-REPLICATION/9\n")
        .await
        .expect("write");
    let mut rest = Vec::new();
    socket.read_to_end(&mut rest).await.expect("closed");
    assert!(rest.is_empty(), "no echo, no answers: {rest:?}");
    served.await.expect("serve returns");
}

#[tokio::test]
async fn a_leader_finds_a_dead_address_unreachable() {
    // Bound and closed again: nothing listens there.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr")
        .to_string();
    let (tx, rx) = futures::channel::mpsc::unbounded();
    tx.unbounded_send(request(1)).expect("send");
    let error = open(
        &addr,
        rx,
        options(Duration::from_secs(5)),
        PeerMetrics::default().of(2),
    )
    .await
    .err()
    .expect("unreachable");
    assert!(matches!(error, RPCError::Unreachable(_)), "{error:?}");
}

#[tokio::test]
async fn a_follower_that_stops_answering_ends_the_link_after_the_stall() {
    // Echoes the preamble, then reads and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                assert!(peer_link::accept(&mut socket, Lane::Replication).await);
                let mut sink = Vec::new();
                let _ = socket.read_to_end(&mut sink).await;
            });
        }
    });
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let metrics = PeerMetrics::default().of(2);
    let stall = Duration::from_millis(300);
    tx.unbounded_send(request(1)).expect("send");
    let started = Instant::now();
    let mut answers = open(&addr, rx, options(stall), metrics.clone())
        .await
        .expect("opens");
    let answer = answers.next().await.expect("an error");
    assert!(
        matches!(&answer, Err(RPCError::Unreachable(u)) if u.to_string().contains("no AppendEntries answer")),
        "{answer:?}"
    );
    assert!(started.elapsed() >= stall);
    assert!(
        answers.next().await.is_none(),
        "the stream ends after its error"
    );
    assert_eq!(metrics.sent_failures.get(), 1);
}

#[tokio::test]
async fn a_leader_dials_only_once_it_has_a_request_and_an_idle_link_stays_open() {
    // Openraft's backoff after a failed session runs inside the request stream, before its
    // first request: dialling before that would retry a dead follower in a busy loop.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let stall = Duration::from_millis(300);
    let opening = tokio::spawn({
        let addr = addr.clone();
        async move { open(&addr, rx, options(stall), PeerMetrics::default().of(2)).await }
    });
    let early = tokio::time::timeout(stall, listener.accept()).await;
    assert!(early.is_err(), "dialled with nothing to send: {early:?}");
    assert!(!opening.is_finished(), "open returned with nothing to send");

    tx.unbounded_send(request(7)).expect("send");
    let (socket, _) = listener
        .accept()
        .await
        .expect("dialled once a request came");
    tokio::spawn(async move {
        assert_eq!(
            peer_link::classify(&socket, peer_link::CLASSIFY_TIMEOUT).await,
            peer_link::Protocol::Link(Lane::Replication)
        );
        serve(socket, echo_prev).await;
    });
    let mut answers = opening.await.expect("joins").expect("the link opens");
    assert_eq!(index_of(&answers.next().await.expect("its answer")), 7);
    // Answered and idle, with nothing out, is not a stall.
    let idle = tokio::time::timeout(stall * 2, answers.next()).await;
    assert!(idle.is_err(), "an idle link stays open: {idle:?}");
    tx.unbounded_send(request(8)).expect("send");
    assert_eq!(index_of(&answers.next().await.expect("its answer")), 8);
}

#[tokio::test]
async fn an_input_that_ends_before_its_first_request_dials_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let mut answers = open(
        &addr,
        stream::empty(),
        options(Duration::from_secs(5)),
        PeerMetrics::default().of(2),
    )
    .await
    .expect("nothing to open");
    assert!(answers.next().await.is_none());
    let dialled = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(dialled.is_err(), "dialled with nothing to send");
}
