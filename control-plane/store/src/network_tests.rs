//! Heartbeats on their link, over real loopback connections to a follower end whose raft is a
//! stand-in answering each request with its `prev_log_id` (after a delay it is told), so
//! which answer went to which heartbeat is visible.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use futures::stream::BoxStream;
use openraft::raft::StreamAppendResult;
use tokio::net::TcpListener;

use super::*;
use crate::peer_link::{self, Lane, Protocol};
use crate::replication_link::tests::request;

/// A follower end: counts the links it accepts, answers each request with its `prev_log_id`
/// after `delay_ms` (read at each request), and ends a link after `answers_per_link` answers.
struct Follower {
    addr: String,
    links: Arc<AtomicUsize>,
    delay_ms: Arc<AtomicU64>,
}

async fn follower(answers_per_link: usize) -> Follower {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let links = Arc::new(AtomicUsize::new(0));
    let delay_ms = Arc::new(AtomicU64::new(0));
    let (counted, delay) = (links.clone(), delay_ms.clone());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let delay = delay.clone();
            tokio::spawn(async move {
                assert_eq!(
                    peer_link::classify(&socket, peer_link::CLASSIFY_TIMEOUT).await,
                    Protocol::Link(Lane::Replication)
                );
                let answer =
                    move |requests: BoxStream<'static, AppendEntriesRequest<TypeConfig>>| {
                        requests.take(answers_per_link).then(move |r| {
                            let delay = Duration::from_millis(delay.load(Ordering::SeqCst));
                            async move {
                                tokio::time::sleep(delay).await;
                                Ok::<StreamAppendResult<TypeConfig>, String>(Ok(r.prev_log_id))
                            }
                        })
                    };
                replication_link::serve(socket, answer).await;
            });
        }
    });
    Follower {
        addr,
        links,
        delay_ms,
    }
}

fn peer(addr: &str) -> Peer {
    Peer::new(2, &format!("http://{addr}"), PeerMetrics::default())
}

/// One heartbeat as openraft's heartbeat worker sends it: a stream of one request, under the
/// heartbeat's timeout; the index its answer names, or why there is none.
async fn heartbeat(peer: &mut Peer, index: u64, timeout: Duration) -> Result<u64, String> {
    let option = RPCOption::new(Duration::from_millis(100));
    let input = Box::pin(stream::once(async move { request(index) }));
    let call = async {
        let mut answers = peer.stream_append(input, option).await?;
        let answer = answers.next().await.expect("one answer")?;
        assert!(answers.next().await.is_none(), "one answer only");
        Ok::<_, RPCError<TypeConfig>>(answer)
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(Ok(Some(log_id)))) => Ok(log_id.index),
        Ok(Ok(other)) => Err(format!("answer {other:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

#[tokio::test]
async fn heartbeats_share_one_link_each_answered_by_its_own_reply() {
    let follower = follower(usize::MAX).await;
    let mut peer = peer(&follower.addr);
    for index in 0..50 {
        assert_eq!(
            heartbeat(&mut peer, index, Duration::from_secs(5)).await,
            Ok(index)
        );
    }
    assert_eq!(follower.links.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_heartbeat_given_up_on_never_answers_the_next() {
    let follower = follower(usize::MAX).await;
    let mut peer = peer(&follower.addr);
    assert_eq!(heartbeat(&mut peer, 1, Duration::from_secs(5)).await, Ok(1));
    // The follower is slow: the caller gives up before the answer comes...
    follower.delay_ms.store(300, Ordering::SeqCst);
    assert_eq!(
        heartbeat(&mut peer, 2, Duration::from_millis(50)).await,
        Err("timed out".to_owned())
    );
    // ...and the late answer to 2 is not taken for 3's: 3 goes on a new link.
    follower.delay_ms.store(0, Ordering::SeqCst);
    assert_eq!(heartbeat(&mut peer, 3, Duration::from_secs(5)).await, Ok(3));
    assert_eq!(follower.links.load(Ordering::SeqCst), 2);
    assert_eq!(heartbeat(&mut peer, 4, Duration::from_secs(5)).await, Ok(4));
    assert_eq!(follower.links.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_closed_link_fails_one_heartbeat_and_the_next_opens_another() {
    // Every link ends after two answers.
    let follower = follower(2).await;
    let mut peer = peer(&follower.addr);
    assert_eq!(heartbeat(&mut peer, 1, Duration::from_secs(5)).await, Ok(1));
    assert_eq!(heartbeat(&mut peer, 2, Duration::from_secs(5)).await, Ok(2));
    assert!(heartbeat(&mut peer, 3, Duration::from_secs(5))
        .await
        .is_err());
    assert_eq!(heartbeat(&mut peer, 4, Duration::from_secs(5)).await, Ok(4));
    assert_eq!(follower.links.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_heartbeat_to_nobody_fails_at_once_and_one_to_a_bad_url_is_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let mut peer = peer(&addr);
    let started = Instant::now();
    let failed = heartbeat(&mut peer, 1, Duration::from_secs(5)).await;
    assert!(failed.is_err(), "{failed:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let mut bad = Peer::new(2, "not a url", PeerMetrics::default());
    let refused = heartbeat(&mut bad, 1, Duration::from_secs(5)).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("invalid peer URL")),
        "{refused:?}"
    );
}
