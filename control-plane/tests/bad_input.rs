//! Hostile and broken clients against a store member: bytes that are not HTTP/2, gRPC bodies
//! that are not protobuf, transactions too big or too deep, a watcher that never reads, and
//! watch requests that register nothing. Each gets a clear error or is cut off with bounded
//! memory, and the member stays healthy. And a watch client that has sent its last request,
//! which keeps its watches as etcd's server keeps them.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, Txn, TxnOp, WatchOptions};
use support::{connect, runtime, wait_leader, Cluster};

async fn still_healthy(cluster: &Cluster) {
    let mut client = connect(&cluster.endpoints()).await.expect("client");
    client
        .put("/health/probe", "ok", None)
        .await
        .expect("the member still takes writes");
    let got = client.get("/health/probe", None).await.expect("and reads");
    assert_eq!(got.kvs().first().map(|kv| kv.value()), Some(&b"ok"[..]));
}

/// The `grpc-status` a gRPC POST of `body` to `url` ends with (from its headers or trailers).
fn grpc_status(url: &str, body: &[u8]) -> Option<u32> {
    let path = std::env::temp_dir().join(format!("keel-grpc-body-{}", std::process::id()));
    std::fs::write(&path, body).expect("body");
    let out = Command::new("curl")
        .args([
            "-s",
            "-i",
            "--http2-prior-knowledge",
            "-X",
            "POST",
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "--max-time",
            "5",
            "--data-binary",
        ])
        .arg(format!("@{}", path.display()))
        .arg(url)
        .output()
        .expect("curl");
    let _ = std::fs::remove_file(&path);
    let answer = String::from_utf8_lossy(&out.stdout).to_lowercase();
    answer
        .lines()
        .find_map(|l| l.strip_prefix("grpc-status:"))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn garbage_on_the_wire_is_dropped_and_the_member_serves_on() {
    let cluster = Cluster::loopback(1, &[]);
    let rt = runtime();
    rt.block_on(wait_leader(&cluster, Duration::from_secs(10)));
    // Not HTTP/2 at all.
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0xffu8; 4096][..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\xff\xff\xff\xff",
    ] {
        let mut s = TcpStream::connect(cluster.members[0].client).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let _ = s.write_all(garbage);
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf);
    }
    // gRPC framing around bodies that are not the message they claim to be, to a unary method
    // and to the Watch stream (whose service is keel's own code, not tonic's generated code).
    let client = cluster.members[0].client;
    for method in ["etcdserverpb.KV/Range", "etcdserverpb.Watch/Watch"] {
        for (what, body) in [
            ("a truncated frame", vec![0u8, 0, 0, 0, 50, 1, 2]),
            (
                "an invalid protobuf",
                vec![0u8, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff],
            ),
            ("a frame claiming 4 GiB", vec![0u8, 0xff, 0xff, 0xff, 0xff]),
        ] {
            let status = grpc_status(&format!("http://{client}/{method}"), &body);
            assert!(
                status.is_some_and(|s| s != 0),
                "{method}, {what}: expected a gRPC error status, got {status:?}"
            );
        }
    }
    // A method the Watch service does not have (answered by the layer that names what keel
    // does not serve, before the service).
    let status = grpc_status(&format!("http://{client}/etcdserverpb.Watch/Nope"), &[]);
    assert_eq!(status, Some(12), "an unknown Watch method is Unimplemented");
    // The peer port: a `Blob` whose payload is not the message the method reads (a membership
    // change, a probe) is refused, and changes nothing.
    let peer = cluster.members[0].peer;
    for method in ["keel.raft.Peer/MemberChange", "keel.raft.Peer/Probe"] {
        for payload in [&[0xffu8, 0xff, 0xff][..], &[0x01, 0xff][..]] {
            let mut blob = vec![0x0a, payload.len() as u8];
            blob.extend_from_slice(payload);
            let mut body = vec![0u8];
            body.extend_from_slice(&(blob.len() as u32).to_be_bytes());
            body.extend_from_slice(&blob);
            let status = grpc_status(&format!("http://{peer}/{method}"), &body);
            assert_eq!(
                status,
                Some(3),
                "{method} {payload:?}: expected InvalidArgument"
            );
        }
    }
    rt.block_on(async {
        let mut client = connect(&cluster.endpoints()).await.expect("client");
        let list = client.member_list().await.expect("member list");
        assert_eq!(list.members().len(), 1, "{list:?}");
    });
    rt.block_on(still_healthy(&cluster));
}

#[test]
fn oversized_and_overdeep_requests_are_refused_by_name() {
    let cluster = Cluster::loopback(1, &[]);
    let rt = runtime();
    rt.block_on(async {
        wait_leader(&cluster, Duration::from_secs(10)).await;
        let mut client = connect(&cluster.endpoints()).await.expect("client");
        // etcd's limit: 1.5 MiB per request.
        let err = client
            .put("/big", vec![b'x'; 1_600_000], None)
            .await
            .expect_err("a 1.6 MB put");
        assert!(err.to_string().contains("request is too large"), "{err}");
        // Past the gRPC limit too: refused before it is decoded.
        let err = client
            .put("/huge", vec![b'x'; 3 << 20], None)
            .await
            .expect_err("a 3 MiB put");
        assert!(
            err.to_string().to_lowercase().contains("too large")
                || err.to_string().contains("OutOfRange")
                || err.to_string().contains("out of range"),
            "{err}"
        );
        // More operations than etcd's --max-txn-ops.
        let ops: Vec<TxnOp> = (0..129)
            .map(|i| TxnOp::put(format!("/t/{i}"), "v", None))
            .collect();
        let err = client
            .txn(Txn::new().and_then(ops))
            .await
            .expect_err("129 ops");
        assert!(
            err.to_string()
                .contains("too many operations in txn request"),
            "{err}"
        );
        // Two writes of one key in one transaction.
        let dup = Txn::new().and_then([TxnOp::put("/d", "1", None), TxnOp::put("/d", "2", None)]);
        let err = client.txn(dup).await.expect_err("a duplicate key");
        assert!(
            err.to_string()
                .contains("duplicate key given in txn request"),
            "{err}"
        );
        // Nested transactions deep enough to cost: refused, not recursed into without bound.
        let mut nested = Txn::new().and_then([TxnOp::put("/n", "v", None)]);
        for _ in 0..200 {
            nested = Txn::new()
                .when([Compare::version("/n", CompareOp::Greater, -1)])
                .and_then([TxnOp::txn(nested)]);
        }
        let err = client
            .txn(nested)
            .await
            .expect_err("200 nested transactions");
        println!("200 nested transactions: {err}");
        // A lease longer than etcd allows, and an empty key.
        let err = client
            .lease_grant(9_000_000_001, None)
            .await
            .expect_err("a huge TTL");
        assert!(err.to_string().contains("too large lease TTL"), "{err}");
        let err = client.put("", "v", None).await.expect_err("an empty key");
        assert!(err.to_string().contains("key is not provided"), "{err}");
        still_healthy(&cluster).await;
    });
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Writes `writes` events of 8 KiB on 100 keys under `/slow/` with 8 writers, and waits until
/// `reader` saw them all.
async fn write_and_read_all(
    client: &etcd_client::Client,
    reader: &mut etcd_client::WatchStream,
    writes: usize,
) {
    let value = vec![b'x'; 8 * 1024];
    let mut tasks = Vec::new();
    for w in 0..8 {
        let mut c = client.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..writes).step_by(8) {
                c.put(format!("/slow/{}", i % 100), value.clone(), None)
                    .await
                    .expect("put");
            }
        }));
    }
    // Read while the writes go on: a watcher that stops reading for long is cut off.
    let reading = async {
        let mut seen = 0usize;
        while seen < writes {
            match tokio::time::timeout(Duration::from_secs(30), reader.message()).await {
                Ok(Ok(Some(r))) => seen += r.events().len(),
                other => {
                    panic!("the reading watcher stopped after {seen} of {writes} events: {other:?}")
                }
            }
        }
    };
    let writing = async {
        for t in tasks {
            t.await.expect("writer");
        }
    };
    tokio::join!(reading, writing);
}

fn slow_watchers_cancelled(metrics: &str) -> u64 {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", metrics])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("etcd_mvcc_slow_watchers_cancelled_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[test]
fn a_watcher_that_never_reads_is_cancelled_with_bounded_memory() {
    // History is compacted to the last 2,000 revisions, so that the member's memory settles
    // after a first round of writes; the second round's growth is what a stalled watcher costs.
    let metrics_port = support::free_port();
    let cluster = Cluster::loopback(
        1,
        &[
            "--auto-compaction-revisions",
            "2000",
            "--auto-compaction-retention",
            "1s",
            "--metrics-addr",
            &format!("127.0.0.1:{metrics_port}"),
        ],
    );
    let metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    let pid = cluster.members[0].pid().expect("a running member");
    let writes = 8_000usize;
    let rt = runtime();
    rt.block_on(async {
        wait_leader(&cluster, Duration::from_secs(10)).await;
        let mut client = connect(&cluster.endpoints()).await.expect("client");
        // A reading watcher sees every event, stalled neighbour or not.
        let mut reader = client.watch("/slow/", Some(WatchOptions::new().with_prefix())).await.expect("watch");
        while !reader.message().await.expect("created").is_some_and(|r| r.created()) {}
        // Two rounds without a stalled watcher: the first warms the member up (log, history,
        // allocator), the second is the baseline growth of a round.
        write_and_read_all(&client, &mut reader, writes).await;
        let warm = rss_kib(pid);
        write_and_read_all(&client, &mut reader, writes).await;
        let settled = rss_kib(pid);
        let baseline = settled.saturating_sub(warm) / 1024;

        // The stalled watcher: created, then never read while 94 MiB of events go by. On a
        // connection of its own: HTTP/2 flow control is per connection too, so an unread stream
        // stalls every stream sharing its connection (with etcd as well).
        let mut stalled_client = connect(&cluster.endpoints()).await.expect("client");
        let mut stalled = stalled_client.watch("/slow/", Some(WatchOptions::new().with_prefix())).await.expect("watch");
        while !stalled.message().await.expect("created").is_some_and(|r| r.created()) {}
        write_and_read_all(&client, &mut reader, writes).await;
        let deadline = Instant::now() + Duration::from_secs(15);
        while slow_watchers_cancelled(&metrics) == 0 {
            assert!(Instant::now() < deadline, "the stalled watcher was never cancelled");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let grown = rss_kib(pid).saturating_sub(settled) / 1024;
        let total = (writes * 8 / 1024) as u64;
        println!(
            "stalled watcher: cancelled; the member grew by {grown} MiB in the round with it, {baseline} MiB in the round before without it, while {total} MiB of events passed"
        );
        // Unbounded, the stalled stream would hold every event of the round.
        assert!(
            grown < baseline + total / 2,
            "the member grew by {grown} MiB (baseline {baseline} MiB) holding events for a watcher that never reads"
        );
        // Read at last, the stalled stream ends early: it does not deliver everything.
        let mut delivered = 0usize;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), stalled.message()).await {
                Ok(Ok(Some(r))) if !r.canceled() => delivered += r.events().len(),
                _ => break,
            }
        }
        assert!(delivered < writes, "the stalled watcher got every event ({delivered}): nothing was bounded");
        still_healthy(&cluster).await;
    });
}

/// The next response a watch stream's `message()` gives (etcd-client's or tonic's), within 5 s.
async fn within_5s<T, E: std::fmt::Debug>(
    message: impl std::future::Future<Output = Result<Option<T>, E>>,
) -> T {
    tokio::time::timeout(Duration::from_secs(5), message)
        .await
        .expect("a response within 5 s")
        .expect("the stream")
        .expect("a response, not the end")
}

#[test]
fn one_watch_stream_answers_refused_creates_and_cancels_in_order_and_serves_on() {
    let cluster = Cluster::loopback(1, &[]);
    runtime().block_on(async {
        wait_leader(&cluster, Duration::from_secs(10)).await;
        let mut client = connect(&cluster.endpoints()).await.expect("client");
        // 2,500 revisions to replay: more than one replay response holds (1,000 events each).
        let first = client.put("/o/0", "v", None).await.expect("put");
        let first = first.header().map_or(0, |h| h.revision());
        for i in 1..2500 {
            client.put(format!("/o/{i}"), "v", None).await.expect("put");
        }
        let mut stream = client
            .watch(
                "/o/",
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(first)
                        .with_watch_id(7),
                ),
            )
            .await
            .expect("watch");
        let created = within_5s(stream.message()).await;
        assert!(created.created() && created.watch_id() == 7, "{created:?}");
        let (mut replayed, mut responses, mut last) = (0, 0, first - 1);
        while replayed < 2500 {
            let r = within_5s(stream.message()).await;
            assert_eq!(r.watch_id(), 7);
            assert!(
                !r.events().is_empty() && r.events().len() <= 1000,
                "{} events",
                r.events().len()
            );
            // In order, each once: the i-th event is the i-th put (revisions may skip an
            // index raft used for something else).
            for (i, event) in r.events().iter().enumerate() {
                let kv = event.kv().expect("a key-value");
                assert!(
                    kv.mod_revision() > last,
                    "revision {} after {last}",
                    kv.mod_revision()
                );
                last = kv.mod_revision();
                let expected = format!("/o/{}", replayed + i);
                assert_eq!(kv.key(), expected.as_bytes(), "replayed out of order");
            }
            replayed += r.events().len();
            responses += 1;
        }
        assert_eq!((replayed, responses), (2500, 3));

        // Refused: an id in use, an empty key. Nothing is registered; the stream goes on.
        stream
            .watch("/o/", Some(WatchOptions::new().with_watch_id(7)))
            .await
            .expect("send");
        let refused = within_5s(stream.message()).await;
        assert!(
            refused.created() && refused.canceled() && refused.watch_id() == -1,
            "{refused:?}"
        );
        assert!(
            refused.cancel_reason().contains("already in use"),
            "{}",
            refused.cancel_reason()
        );
        stream.watch("", None).await.expect("send");
        let refused = within_5s(stream.message()).await;
        assert!(refused.canceled(), "{refused:?}");
        assert!(
            refused.cancel_reason().contains("key is not provided"),
            "{}",
            refused.cancel_reason()
        );

        // A second watch on the stream, then the first cancelled: a put reaches the second only.
        stream
            .watch(
                "/o/",
                Some(WatchOptions::new().with_prefix().with_watch_id(8)),
            )
            .await
            .expect("send");
        let created = within_5s(stream.message()).await;
        assert!(created.created() && created.watch_id() == 8, "{created:?}");
        stream.cancel(7).await.expect("send");
        let cancelled = within_5s(stream.message()).await;
        assert!(
            cancelled.canceled() && cancelled.watch_id() == 7,
            "{cancelled:?}"
        );
        let put = client.put("/o/last", "v", None).await.expect("put");
        let event = within_5s(stream.message()).await;
        assert_eq!(event.watch_id(), 8, "{event:?}");
        assert_eq!(event.events().len(), 1);
        // Then only the answer to a progress request: no event for the cancelled watch.
        stream.request_progress().await.expect("send");
        let progress = within_5s(stream.message()).await;
        assert!(
            progress.events().is_empty() && progress.watch_id() == -1,
            "{progress:?}"
        );
        assert!(
            progress.header().map_or(0, |h| h.revision())
                >= put.header().map_or(0, |h| h.revision())
        );
        still_healthy(&cluster).await;
    });
}

#[test]
fn a_watch_whose_client_sent_its_last_request_still_delivers_events() {
    use keel_store::pb::etcdserverpb::kv_client::KvClient;
    use keel_store::pb::etcdserverpb::watch_client::WatchClient;
    use keel_store::pb::etcdserverpb::watch_request::RequestUnion;
    use keel_store::pb::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest};

    let cluster = Cluster::loopback(1, &[]);
    runtime().block_on(async {
        wait_leader(&cluster, Duration::from_secs(10)).await;
        let channel = tonic::transport::Endpoint::from_shared(cluster.members[0].endpoint())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let create = |prev_kv| WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: b"/half/".to_vec(),
                range_end: b"/half0".to_vec(),
                prev_kv,
                ..Default::default()
            })),
        };
        // Two requests (watches 0 and 1, the second with previous values), then the end of the
        // client's half of the stream (as `grpcurl -d` sends a watch): etcd keeps serving the
        // watches until the call is cancelled.
        let mut replies = WatchClient::new(channel.clone())
            .watch(futures::stream::iter([create(false), create(true)]))
            .await
            .expect("watch")
            .into_inner();
        for watch_id in [0, 1] {
            let created = within_5s(replies.message()).await;
            assert!(
                created.created && created.watch_id == watch_id,
                "{created:?}"
            );
        }
        let mut kv = KvClient::new(channel);
        let mut previous: Option<&str> = None;
        for value in ["1", "2"] {
            kv.put(PutRequest {
                key: b"/half/a".to_vec(),
                value: value.into(),
                ..Default::default()
            })
            .await
            .expect("put");
            for watch_id in [0, 1] {
                let reply = within_5s(replies.message()).await;
                assert_eq!(reply.watch_id, watch_id);
                let events: Vec<(&[u8], Option<&[u8]>)> = reply
                    .events
                    .iter()
                    .filter_map(|e| {
                        let prev = e.prev_kv.as_ref().map(|kv| &kv.value[..]);
                        e.kv.as_ref().map(|kv| (&kv.value[..], prev))
                    })
                    .collect();
                let prev = if watch_id == 1 { previous } else { None };
                let want = [(value.as_bytes(), prev.map(str::as_bytes))];
                assert_eq!(events, want, "watch {watch_id}, put {value}");
            }
            previous = Some(value);
        }
    });
}
