//! What operators watch: a real Prometheus (Debian's) scraping a member's /metrics without
//! errors and evaluating what etcd's dashboards and alerts ask of it, the database-size
//! series, the peer network's series on a leader, and etcd's watch progress notifications,
//! periodic and on request.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use etcd_client::{GetOptions, WatchOptions};
use keel_lab::{Child, Placement};
use support::{connect, eventually, free_port, runtime, wait_leader, Cluster};

fn curl(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", url])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Prometheus' answer to an instant query of `expr`.
fn prometheus_query(web_port: u16, expr: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "-G"])
        .arg(format!("http://127.0.0.1:{web_port}/api/v1/query"))
        .arg("--data-urlencode")
        .arg(format!("query={expr}"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asks Prometheus `expr` until its answer contains `expected` (scrapes come every second),
/// for at most 15 s.
fn prometheus_answers(web_port: u16, expr: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = prometheus_query(web_port, expr);
        if answer.contains(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus answers {expr}\nwith {answer}\nnot containing {expected}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The value Prometheus' `answer` (JSON) gives for the series of one gRPC method.
fn value_of_method(answer: &serde_json::Value, method: &str) -> Option<String> {
    answer["data"]["result"]
        .as_array()
        .and_then(|r| r.iter().find(|s| s["metric"]["grpc_method"] == method))
        .and_then(|s| s["value"][1].as_str())
        .map(str::to_owned)
}

/// The value of the first line of a Prometheus text exposition that starts with `series`.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|rest| rest.trim().parse().ok())
}

#[test]
fn a_real_prometheus_scrapes_the_store_without_errors() {
    let metrics_port = free_port();
    let cluster = Cluster::loopback(1, &["--metrics-addr", &format!("127.0.0.1:{metrics_port}")]);
    let rt = runtime();
    // A watch held open while Prometheus looks, and a read that fails (a future revision:
    // OutOfRange), for the gRPC series.
    let (_client, _watch) = rt.block_on(async {
        wait_leader(&cluster, Duration::from_secs(10)).await;
        let mut client = connect(&cluster.endpoints()).await.expect("client");
        client.put("/m", "v", None).await.expect("put");
        let future = client
            .get("/m", Some(GetOptions::new().with_revision(1_000_000)))
            .await;
        assert!(future.is_err(), "a read at a future revision succeeded");
        let mut watch = client.watch("/w", None).await.expect("watch");
        watch.message().await.expect("the watch's creation");
        (client, watch)
    });
    let dir = tempfile::tempdir().expect("a directory for Prometheus");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: keel-store\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
        ),
    )
    .expect("config");
    let web_port = free_port();
    let mut command = Command::new("prometheus");
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web_port}"));
    let prometheus = Child::spawn("prometheus", command, &Placement::default())
        .expect("prometheus (Debian's, installed by `cargo xtask setup`)");
    let deadline = Instant::now() + Duration::from_secs(30);
    let targets = loop {
        let targets = curl(&format!("http://127.0.0.1:{web_port}/api/v1/targets"));
        if targets.contains("\"health\":\"up\"") {
            break targets;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the member successfully: {targets}\n{}",
            prometheus.output().join("\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        targets.contains("\"lastError\":\"\""),
        "the scrape reported an error: {targets}"
    );
    let query = curl(&format!(
        "http://127.0.0.1:{web_port}/api/v1/query?query=etcd_server_has_leader"
    ));
    assert!(
        query.contains("\"1\"]"),
        "etcd_server_has_leader is not 1 in Prometheus: {query}"
    );
    let fsyncs = curl(&format!(
        "http://127.0.0.1:{web_port}/api/v1/query?query=etcd_disk_wal_fsync_duration_seconds_count"
    ));
    assert!(
        fsyncs.contains("\"result\":[{"),
        "no fsync histogram in Prometheus: {fsyncs}"
    );
    // What etcd's dashboard and alerts (its mixin) ask of the gRPC series.
    prometheus_answers(
        web_port,
        r#"grpc_server_handled_total{job="keel-store",grpc_service="etcdserverpb.KV",grpc_method="Put",grpc_code="OK",grpc_type="unary"}"#,
        r#""1"]"#,
    );
    prometheus_answers(
        web_port,
        r#"grpc_server_handled_total{job="keel-store",grpc_method="Range",grpc_code="OutOfRange"}"#,
        r#""1"]"#,
    );
    // The dashboard's open watch streams: started minus handled.
    prometheus_answers(
        web_port,
        r#"sum(grpc_server_started_total{job="keel-store",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"}) - sum(grpc_server_handled_total{job="keel-store",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"})"#,
        r#""1"]"#,
    );
    // etcdHighNumberOfFailedGRPCRequests' ratio (over the counters, not their rate): Put has
    // failed none of its calls; the failed read's code is not one the alert counts.
    let failed = r#"100 * sum(grpc_server_handled_total{job="keel-store", grpc_code=~"Unknown|FailedPrecondition|ResourceExhausted|Internal|Unavailable|DataLoss|DeadlineExceeded"}) without (grpc_type, grpc_code) / sum(grpc_server_handled_total{job="keel-store"}) without (grpc_type, grpc_code)"#;
    prometheus_answers(web_port, failed, r#""grpc_method":"Put""#);
    let answer: serde_json::Value =
        serde_json::from_str(&prometheus_query(web_port, failed)).expect("Prometheus' JSON");
    assert_eq!(
        value_of_method(&answer, "Put").as_deref(),
        Some("0"),
        "{answer}"
    );
    assert_eq!(
        value_of_method(&answer, "Range").as_deref(),
        Some("0"),
        "{answer}"
    );
    // etcdGRPCRequestsSlow's quantile (over the buckets, not their rate): Put's is a time.
    let slow = r#"histogram_quantile(0.99, sum(grpc_server_handling_seconds_bucket{job="keel-store", grpc_method!="Defragment", grpc_type="unary"}) without(grpc_type))"#;
    prometheus_answers(web_port, slow, r#""grpc_method":"Put""#);
    let answer: serde_json::Value =
        serde_json::from_str(&prometheus_query(web_port, slow)).expect("Prometheus' JSON");
    let put = value_of_method(&answer, "Put").and_then(|v| v.parse::<f64>().ok());
    assert!(
        put.is_some_and(|seconds| seconds.is_finite() && seconds > 0.0 && seconds < 5.0),
        "Put's 99th percentile is {put:?}: {answer}"
    );
    drop(prometheus);
}

/// etcd's database-size series (the mixin's dashboard plots them, `etcdctl endpoint status`
/// prints them): they follow what is written, what compaction frees, and agree with Status.
#[test]
fn the_store_size_follows_writes_and_compaction_and_agrees_with_status() {
    const VALUE: usize = 100_000;
    let metrics_port = free_port();
    let cluster = Cluster::loopback(1, &["--metrics-addr", &format!("127.0.0.1:{metrics_port}")]);
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let in_use = || {
        sample(&curl(&url), "etcd_mvcc_db_total_size_in_use_in_bytes").expect("the in-use series")
    };
    runtime().block_on(async {
        wait_leader(&cluster, Duration::from_secs(10)).await;
        let mut client = connect(&cluster.endpoints()).await.expect("client");
        let before = in_use();
        client
            .put("/big", vec![b'x'; VALUE], None)
            .await
            .expect("put");
        // The value is live and in history: counted in both.
        let written = in_use();
        assert!(
            written >= before + 2.0 * VALUE as f64,
            "in use {before} → {written} after a {VALUE}-byte put"
        );
        let total = sample(&curl(&url), "etcd_mvcc_db_total_size_in_bytes").expect("the total");
        assert!(total >= written, "total {total} below in use {written}");
        let status = client.status().await.expect("status");
        assert_eq!(
            status.raft_used_db_size() as f64,
            written,
            "Status and the scrape"
        );
        assert!(status.db_size() as f64 >= written);
        // Deleted, then history compacted past both events: the bytes are freed.
        let deleted = client.delete("/big", None).await.expect("delete");
        let revision = deleted.header().map_or(0, |h| h.revision());
        client.compact(revision, None).await.expect("compact");
        let freed = in_use();
        assert!(
            freed < before + 1_000.0,
            "in use {before} → {written} → {freed} after delete and compaction"
        );
    });
}

#[test]
fn members_time_probes_to_each_peer_and_count_what_fails_to_reach_one() {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut cluster = Cluster::loopback_each(3, &[], |i| {
        vec!["--metrics-addr".into(), format!("127.0.0.1:{}", ports[i])]
    });
    let rt = runtime();
    let leader = rt.block_on(wait_leader(&cluster, Duration::from_secs(15)));
    let ids: Vec<(String, u64)> = rt.block_on(async {
        let mut client = connect(&cluster.endpoints()).await.expect("client");
        let list = client.member_list().await.expect("member list");
        list.members()
            .iter()
            .map(|m| (m.name().to_owned(), m.id()))
            .collect()
    });
    let hex: Vec<String> = cluster
        .members
        .iter()
        .map(|m| {
            ids.iter()
                .find(|(n, _)| *n == m.name)
                .map(|(_, id)| format!("{id:x}"))
                .unwrap_or_else(|| panic!("{} is not in the member list {ids:?}", m.name))
        })
        .collect();
    let id_of = |i: usize| hex[i].clone();
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let metrics_url = format!("http://127.0.0.1:{}/metrics", ports[leader]);
    // Every member probes every other one each second; each round trip is timed.
    for &f in &followers {
        let series = format!(
            "etcd_network_peer_round_trip_time_seconds_count{{To=\"{}\"}}",
            id_of(f)
        );
        rt.block_on(eventually(&series.clone(), Duration::from_secs(10), || {
            let exposition = curl(&metrics_url);
            let series = series.clone();
            async move { sample(&exposition, &series).filter(|n| *n >= 2.0) }
        }));
    }
    let exposition = curl(&metrics_url);
    assert!(
        !exposition.contains(&format!("To=\"{}\"", id_of(leader))),
        "the leader timed itself: {exposition}"
    );
    // A follower gone: what the leader sends it fails, and is counted against it.
    let gone = followers[0];
    let failures = format!(
        "etcd_network_peer_sent_failures_total{{To=\"{}\"}}",
        id_of(gone)
    );
    let still = followers[1];
    let healthy = format!(
        "etcd_network_peer_sent_failures_total{{To=\"{}\"}}",
        id_of(still)
    );
    let exposition = curl(&metrics_url);
    // Each peer's series exist from the start (so a `rate()` sees the first failure too).
    let before = sample(&exposition, &failures).expect("the failures series of each peer");
    let healthy_before = sample(&exposition, &healthy).expect("the failures series of each peer");
    cluster.members[gone].kill();
    rt.block_on(eventually(
        &failures.clone(),
        Duration::from_secs(10),
        || {
            let exposition = curl(&metrics_url);
            let failures = failures.clone();
            async move { sample(&exposition, &failures).filter(|n| *n > before) }
        },
    ));
    // Two more probe rounds: nothing more fails against the member still up.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        sample(&curl(&metrics_url), &healthy).unwrap_or(0.0),
        healthy_before,
        "failures counted against the member still up"
    );
}

#[test]
fn watches_get_progress_notifications_periodically_and_on_request() {
    let cluster = Cluster::loopback(1, &["--watch-progress-notify-interval", "1s"]);
    runtime().block_on(async {
        wait_leader(&cluster, Duration::from_secs(10)).await;
        let mut client = connect(&cluster.endpoints()).await.expect("client");
        let put = client.put("/p/a", "1", None).await.expect("put");
        let revision = put.header().map_or(0, |h| h.revision());
        let mut stream = client
            .watch(
                "/p/",
                Some(WatchOptions::new().with_prefix().with_progress_notify()),
            )
            .await
            .expect("watch");
        while !stream
            .message()
            .await
            .expect("created")
            .is_some_and(|r| r.created())
        {}
        // Periodic: an empty response whose header revision covers everything so far.
        let started = Instant::now();
        let periodic = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("a progress notification within 5 s")
            .expect("stream")
            .expect("a response");
        assert!(periodic.events().is_empty());
        assert!(periodic.header().map_or(0, |h| h.revision()) >= revision);
        println!(
            "periodic progress notification after {:?}",
            started.elapsed()
        );
        // On request (WatchProgressRequest): answered for the whole stream.
        stream.request_progress().await.expect("progress request");
        let answer = tokio::time::timeout(Duration::from_secs(3), stream.message())
            .await
            .expect("an answer to the progress request")
            .expect("stream")
            .expect("a response");
        assert!(answer.events().is_empty());
        assert!(answer.header().map_or(0, |h| h.revision()) >= revision);
    });
}

/// Sends `bytes` on a new connection to `addr` and returns what comes back before the member
/// closes it or 3 s pass.
fn exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(addr).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    socket.write_all(bytes).expect("send");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = socket.read(&mut chunk) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    answer
}

/// etcd serves `/version`, `/health` and `/metrics` over HTTP/1.1 on its client port beside
/// gRPC (what `curl http://host:2379/version`, Prometheus set-ups and `etcdctl check perf`
/// use); so does a keel member. A connection that is neither, or says nothing, gets no
/// answer it could mistake and holds up nobody.
#[test]
fn the_client_port_answers_etcds_http_endpoints_beside_grpc() {
    let cluster = Cluster::loopback(1, &[]);
    let rt = runtime();
    rt.block_on(wait_leader(&cluster, Duration::from_secs(10)));
    let endpoint = cluster.members[0].endpoint();
    let addr = endpoint.trim_start_matches("http://").to_string();
    // Connections that say nothing, stay open, and must hold up no one.
    let silent: Vec<_> = (0..3)
        .map(|_| std::net::TcpStream::connect(&addr).expect("connect"))
        .collect();
    // A request head trickled and never finished is cut off (10 s), meanwhile the rest runs.
    let trickled = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut socket = std::net::TcpStream::connect(&addr).expect("connect");
            socket
                .write_all(b"GET /version HTTP/1.1\r\nHost: x\r\n")
                .expect("send");
            socket
                .set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            let began = Instant::now();
            let mut rest = Vec::new();
            let _ = socket.read_to_end(&mut rest);
            (began.elapsed(), rest)
        })
    };

    let version: serde_json::Value =
        serde_json::from_str(&curl(&format!("{endpoint}/version"))).expect("/version is JSON");
    assert!(
        version["etcdserver"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.4.")),
        "{version}"
    );
    assert_eq!(version["etcdcluster"], "3.4.0", "{version}");
    assert_eq!(curl(&format!("{endpoint}/health")), r#"{"health":"true"}"#);
    let metrics = curl(&format!("{endpoint}/metrics"));
    assert_eq!(
        sample(&metrics, "etcd_server_has_leader"),
        Some(1.0),
        "{metrics:.300}"
    );
    // The process series, which `etcdctl check datascale` reads from the endpoint it loads.
    let resident = sample(&metrics, "process_resident_memory_bytes").unwrap_or(0.0);
    assert!(resident > 1e6, "process_resident_memory_bytes {resident}");

    // An unknown path, a malformed request and a TLS hello on this plain-text port.
    let missing = exchange(
        &addr,
        b"GET /v2/keys HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        missing.starts_with(b"HTTP/1.1 404"),
        "{}",
        String::from_utf8_lossy(&missing)
    );
    let malformed = exchange(&addr, b"GET \x00\x01 HTTP/9\r\n\r\n");
    assert!(
        malformed.is_empty() || malformed.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&malformed)
    );
    let tls = exchange(&addr, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03");
    assert!(
        !tls.starts_with(b"HTTP/1"),
        "a TLS hello was answered as HTTP/1: {}",
        String::from_utf8_lossy(&tls)
    );

    // gRPC on the same port, and etcdctl's own per-endpoint call.
    rt.block_on(async {
        let mut client = connect(std::slice::from_ref(&endpoint))
            .await
            .expect("client");
        client.put("/http/k", "v", None).await.expect("put");
        let got = client.get("/http/k", None).await.expect("get");
        assert_eq!(got.kvs().first().map(|kv| kv.value()), Some(&b"v"[..]));
    });
    let status = support::etcdctl(&endpoint, &["endpoint", "health"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    drop(silent);
    let (waited, answer) = trickled.join().expect("the trickling client");
    assert!(
        waited < Duration::from_secs(20),
        "an unfinished request head held its connection {waited:?}"
    );
    assert!(
        !String::from_utf8_lossy(&answer).contains("etcdserver"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}
