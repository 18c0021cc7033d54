//! Tests of forwarding: the leader's side alone, and both sides over a real link on loopback.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use super::*;
use crate::peer_link::MAX_FRAME;

fn compact(revision: i64) -> Command {
    Command::Compact { revision }
}

/// A leader that answers a compaction with its revision, the higher ones sooner.
async fn leader(command: Command) -> Answer {
    let Command::Compact { revision } = command else {
        return Err(ForwardError::Other("not a compaction".into()));
    };
    tokio::time::sleep(Duration::from_millis(40 - revision as u64 * 10)).await;
    Ok(CommandResult {
        revision,
        outcome: Ok(crate::types::Outcome::Compacted),
    })
}

#[tokio::test]
async fn every_proposal_is_answered_under_its_own_number() {
    let batch = vec![
        Proposal {
            id: 7,
            command: compact(1),
        },
        Proposal {
            id: 9,
            command: compact(3),
        },
    ];
    let incoming = stream::iter(vec![
        batch,
        vec![Proposal {
            id: 11,
            command: compact(2),
        }],
    ]);
    let mut seen = Vec::new();
    for message in answer(incoming, leader).collect::<Vec<_>>().await {
        for Answered { id, answer } in message {
            seen.push((id, answer.expect("answered").revision));
        }
    }
    // Each proposal keeps its number, whatever order they were answered in.
    seen.sort_unstable();
    assert_eq!(seen, vec![(7, 1), (9, 3), (11, 2)]);
}

/// Opens a forwarding link to `addr` as a follower would, without a [`Forwarder`].
async fn raw_link(addr: &str) -> TcpStream {
    peer_link::open(addr, Lane::Forwarding)
        .await
        .expect("the link opens")
}

/// Every frame a leader sends until it closes.
async fn frames_until_closed(socket: &mut TcpStream) -> Vec<FromLeader> {
    peer_link::frames_until_closed(socket).await
}

#[tokio::test]
async fn a_frame_that_does_not_decode_ends_the_link_with_a_clear_refusal() {
    let (addr, _) = leader_at(leader).await;
    let mut socket = raw_link(&addr).await;
    let good = vec![Proposal {
        id: 1,
        command: compact(3),
    }];
    let mut bytes = Vec::new();
    peer_frames::put(&mut bytes, &good);
    bytes.extend_from_slice(&5u32.to_be_bytes());
    bytes.extend_from_slice(&[0xff; 5]);
    peer_frames::put(&mut bytes, &good);
    socket.write_all(&bytes).await.expect("write");
    let frames = frames_until_closed(&mut socket).await;
    let (last, before) = frames.split_last().expect("an answer and a refusal");
    let answered: Vec<u64> = before
        .iter()
        .flat_map(|frame| match frame {
            FromLeader::Answered(answered) => answered.iter().map(|a| a.id).collect::<Vec<_>>(),
            FromLeader::Refused(why) => panic!("refused before the bad frame: {why}"),
        })
        .collect();
    // The proposal before the bad frame is answered; the one after it is never read.
    assert_eq!(answered, vec![1]);
    match last {
        FromLeader::Refused(why) => {
            assert!(why.contains("undecodable peer message"), "{why}")
        }
        FromLeader::Answered(_) => panic!("the link ends refused"),
    }
}

#[tokio::test]
async fn a_frame_over_the_limit_is_refused_unread() {
    let (addr, _) = leader_at(leader).await;
    let mut socket = raw_link(&addr).await;
    socket
        .write_all(&(MAX_FRAME as u32 + 1).to_be_bytes())
        .await
        .expect("write");
    match frames_until_closed(&mut socket).await.as_slice() {
        [FromLeader::Refused(why)] => assert!(why.contains("over the"), "{why}"),
        _ => panic!("expected one refusal"),
    }
}

#[tokio::test]
async fn a_follower_gone_mid_frame_ends_the_link_quietly() {
    let (addr, _) = leader_at(leader).await;
    let mut socket = raw_link(&addr).await;
    let mut bytes = Vec::new();
    peer_frames::put(
        &mut bytes,
        &vec![Proposal {
            id: 1,
            command: compact(3),
        }],
    );
    bytes.truncate(bytes.len() - 1);
    socket.write_all(&bytes).await.expect("write");
    socket.shutdown().await.expect("shutdown");
    assert!(frames_until_closed(&mut socket).await.is_empty());
}

#[tokio::test]
async fn the_leader_stops_reading_a_stream_with_too_many_proposals_in_raft() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let read = Arc::new(AtomicUsize::new(0));
    let counted = read.clone();
    let messages = (IN_RAFT * 2 / BATCH) as u64;
    let incoming = stream::iter(0..messages).map(move |m| {
        counted.fetch_add(BATCH, Ordering::SeqCst);
        let batch: Vec<Proposal> = (0..BATCH as u64)
            .map(|i| Proposal {
                id: m * BATCH as u64 + i,
                command: compact(1),
            })
            .collect();
        batch
    });
    // Raft holds every proposal until released.
    let (release, released) = tokio::sync::watch::channel(false);
    let slow = move |_command: Command| {
        let mut released = released.clone();
        async move {
            let _ = released.wait_for(|r| *r).await;
            Ok(CommandResult {
                revision: 1,
                outcome: Ok(crate::types::Outcome::Compacted),
            })
        }
    };
    let mut answers = std::pin::pin!(answer(incoming, slow));
    let early = tokio::time::timeout(Duration::from_millis(50), answers.next()).await;
    assert!(early.is_err(), "an answer before raft answered anything");
    let taken = read.load(Ordering::SeqCst);
    assert!(
        (IN_RAFT..IN_RAFT + BATCH).contains(&taken),
        "{taken} proposals read with none answered (cap {IN_RAFT})"
    );
    release.send_replace(true);
    let mut answered = 0;
    while let Some(message) = answers.next().await {
        answered += message.len();
    }
    assert_eq!(
        answered,
        IN_RAFT * 2,
        "every proposal answered once released"
    );
}

/// A leader on a loopback port whose forwarded proposals `answer` answers: its address, and
/// a forwarder to it.
async fn leader_at<F, Fut>(answer: F) -> (String, Arc<Forwarder>)
where
    F: Fn(Command) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Answer> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address").to_string();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                match peer_link::classify(&socket, peer_link::CLASSIFY_TIMEOUT).await {
                    peer_link::Protocol::Link(Lane::Forwarding) => serve_link(socket, answer).await,
                    other => panic!("a forwarding link expected, not {other:?}"),
                }
            });
        }
    });
    (addr.clone(), Arc::new(Forwarder::new(addr)))
}

async fn forwarder_to<F, Fut>(answer: F) -> Arc<Forwarder>
where
    F: Fn(Command) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Answer> + Send + 'static,
{
    leader_at(answer).await.1
}

fn big_proposal(n: usize) -> Command {
    Command::PublishMember {
        id: n as u64,
        attributes: crate::types::MemberAttributes {
            name: "p".repeat(16 << 10),
            client_urls: Vec::new(),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_proposals_and_large_answers_all_come_back() {
    // 2,000 proposals and answers of 16 KiB each: 32 MiB each way through the sockets'
    // buffers on one link. (It passes against a loop that sent inside its select too: it does
    // not reproduce the deadlock `room` prevents, which needs the outgoing channel full while
    // answers wait; it guards large traffic both ways.)
    let forwarder =
        forwarder_to(|_| async { Err(ForwardError::Other("a".repeat(16 << 10))) }).await;
    let calls: Vec<_> = (0..2000)
        .map(|n| {
            let forwarder = forwarder.clone();
            tokio::spawn(async move {
                forwarder
                    .propose(big_proposal(n), Duration::from_secs(20))
                    .await
            })
        })
        .collect();
    for call in calls {
        let answer = call.await.expect("no panic").expect("the leader answered");
        assert!(
            matches!(answer, Err(ForwardError::Other(ref text)) if text.len() == 16 << 10),
            "the wrong answer came back"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_keeps_at_most_in_flight_proposals_unanswered() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let received = Arc::new(AtomicUsize::new(0));
    let counted = received.clone();
    // A leader whose raft never answers.
    let forwarder = forwarder_to(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<Answer>()
    })
    .await;
    for n in 0..IN_FLIGHT + 300 {
        let forwarder = forwarder.clone();
        tokio::spawn(async move {
            let _ = forwarder
                .propose(compact(n as i64), Duration::from_secs(30))
                .await;
        });
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::SeqCst) < IN_FLIGHT {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} proposals reached the leader",
            received.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        received.load(Ordering::SeqCst),
        IN_FLIGHT,
        "the follower sent more than it may have unanswered"
    );
}

#[tokio::test]
async fn an_empty_stream_of_proposals_ends_at_once() {
    let none: Vec<Vec<Proposal>> = Vec::new();
    assert!(answer(stream::iter(none), leader)
        .collect::<Vec<_>>()
        .await
        .is_empty());
}

#[tokio::test]
async fn a_proposal_to_a_peer_nobody_listens_on_fails_as_never_sent() {
    // A port bound and dropped: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let forwarder = Forwarder::new(format!("127.0.0.1:{port}"));
    for _ in 0..2 {
        let refused = forwarder
            .propose(compact(1), Duration::from_secs(5))
            .await
            .expect_err("nobody answers");
        // Unavailable is what tells the member the leader never saw it, so it may retry.
        assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    }
}
