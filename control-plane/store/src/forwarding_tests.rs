//! Tests of forwarding: the leader's side alone, and both sides over a real gRPC server.

use std::sync::Arc;

use super::*;

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

async fn answers(
    stream: BoxStream<'static, Result<Blob, Status>>,
) -> Vec<Result<Vec<Answered>, Status>> {
    stream
        .map(|message| message.and_then(|blob| decode::<Vec<Answered>>(&blob)))
        .collect()
        .await
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
        Ok(encode(&batch)),
        Ok(encode(&vec![Proposal {
            id: 11,
            command: compact(2),
        }])),
    ]);
    let mut seen = Vec::new();
    for message in answers(serve(incoming, leader)).await {
        for Answered { id, answer } in message.expect("no refusal") {
            seen.push((id, answer.expect("answered").revision));
        }
    }
    // Each proposal keeps its number, whatever order they were answered in.
    seen.sort_unstable();
    assert_eq!(seen, vec![(7, 1), (9, 3), (11, 2)]);
}

#[tokio::test]
async fn a_message_that_does_not_decode_ends_the_stream_with_a_clear_refusal() {
    let good = vec![Proposal {
        id: 1,
        command: compact(3),
    }];
    let incoming = stream::iter(vec![
        Ok(encode(&good)),
        Ok(Blob {
            data: vec![0xff; 5],
        }),
        Ok(encode(&good)),
    ]);
    let messages = answers(serve(incoming, leader)).await;
    let (last, before) = messages.split_last().expect("an answer and a refusal");
    let answered: Vec<u64> = before
        .iter()
        .flat_map(|m| {
            m.as_ref()
                .expect("answers before the refusal")
                .iter()
                .map(|a| a.id)
        })
        .collect();
    // The proposal before the bad message is answered; the one after it is never read.
    assert_eq!(answered, vec![1]);
    let refusal = last.as_ref().err().expect("the stream ends refused");
    assert_eq!(refusal.code(), tonic::Code::InvalidArgument);
    assert!(
        refusal.message().contains("undecodable peer message"),
        "{refusal:?}"
    );
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
        Ok(encode(&batch))
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
    let mut answers = serve(incoming, slow);
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
        answered += decode::<Vec<Answered>>(&message.expect("no refusal"))
            .expect("answers")
            .len();
    }
    assert_eq!(
        answered,
        IN_RAFT * 2,
        "every proposal answered once released"
    );
}

/// A leader on a real gRPC server whose forwarded proposals `answer` answers; every other
/// peer call is refused.
struct TestLeader<F> {
    answer: F,
}

#[tonic::async_trait]
impl<F, Fut> crate::pb::peer::peer_server::Peer for TestLeader<F>
where
    F: Fn(Command) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Answer> + Send + 'static,
{
    type ProposeStreamStream = BoxStream<'static, Result<Blob, Status>>;

    async fn append_entries(
        &self,
        _: tonic::Request<Blob>,
    ) -> Result<tonic::Response<Blob>, Status> {
        Err(Status::unimplemented("test leader"))
    }
    async fn vote(&self, _: tonic::Request<Blob>) -> Result<tonic::Response<Blob>, Status> {
        Err(Status::unimplemented("test leader"))
    }
    async fn pre_vote(&self, _: tonic::Request<Blob>) -> Result<tonic::Response<Blob>, Status> {
        Err(Status::unimplemented("test leader"))
    }
    async fn transfer_leader(
        &self,
        _: tonic::Request<Blob>,
    ) -> Result<tonic::Response<Blob>, Status> {
        Err(Status::unimplemented("test leader"))
    }
    async fn install_snapshot(
        &self,
        _: tonic::Request<Blob>,
    ) -> Result<tonic::Response<Blob>, Status> {
        Err(Status::unimplemented("test leader"))
    }
    async fn propose_stream(
        &self,
        request: tonic::Request<tonic::Streaming<Blob>>,
    ) -> Result<tonic::Response<Self::ProposeStreamStream>, Status> {
        let answer = self.answer.clone();
        Ok(tonic::Response::new(serve(request.into_inner(), answer)))
    }
    async fn read_index(&self, _: tonic::Request<Blob>) -> Result<tonic::Response<Blob>, Status> {
        Err(Status::unimplemented("test leader"))
    }
    async fn probe(&self, _: tonic::Request<Blob>) -> Result<tonic::Response<Blob>, Status> {
        Err(Status::unimplemented("test leader"))
    }
    async fn lease_keep_alive(
        &self,
        _: tonic::Request<Blob>,
    ) -> Result<tonic::Response<Blob>, Status> {
        Err(Status::unimplemented("test leader"))
    }
    async fn lease_time_to_live(
        &self,
        _: tonic::Request<Blob>,
    ) -> Result<tonic::Response<Blob>, Status> {
        Err(Status::unimplemented("test leader"))
    }
}

/// Serves `answer` as a leader on a loopback port; a forwarder to it.
async fn forwarder_to<F, Fut>(answer: F) -> Arc<Forwarder>
where
    F: Fn(Command) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Answer> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let port = listener.local_addr().expect("its address").port();
    let server = crate::pb::peer::peer_server::PeerServer::new(TestLeader { answer })
        .max_decoding_message_size(64 << 20);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("a valid URL")
        .connect_lazy();
    Arc::new(Forwarder::new(
        PeerClient::new(channel).max_decoding_message_size(64 << 20),
    ))
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
    // 2,000 proposals and answers of 16 KiB each: 32 MiB each way through HTTP/2's flow
    // control windows on one stream. (It passes against the loop that sent inside its select
    // too: it does not reproduce the window deadlock, which needs the outgoing channel full
    // while answers wait; it guards large traffic both ways.)
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
async fn an_empty_stream_and_a_broken_one_end_quietly() {
    assert!(answers(serve(stream::iter(Vec::new()), leader))
        .await
        .is_empty());
    let broken = stream::iter(vec![Err(Status::unknown("connection reset"))]);
    assert!(answers(serve(broken, leader)).await.is_empty());
}

#[tokio::test]
async fn a_proposal_to_a_peer_nobody_listens_on_fails_as_never_sent() {
    // A port bound and dropped: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("a valid URL")
        .connect_lazy();
    let forwarder = Forwarder::new(PeerClient::new(channel));
    for _ in 0..2 {
        let refused = forwarder
            .propose(compact(1), Duration::from_secs(5))
            .await
            .expect_err("nobody answers");
        // Unavailable is what tells the member the leader never saw it, so it may retry.
        assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    }
}
