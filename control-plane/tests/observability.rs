//! What operators watch: a real Prometheus (Debian's) scraping a member's /metrics without
//! errors, and etcd's watch progress notifications, periodic and on request.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use etcd_client::WatchOptions;
use keel_lab::{Child, Placement};
use support::{connect, free_port, runtime, wait_leader, Cluster};

fn curl(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", url])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_real_prometheus_scrapes_the_store_without_errors() {
    let metrics_port = free_port();
    let cluster = Cluster::loopback(1, &["--metrics-addr", &format!("127.0.0.1:{metrics_port}")]);
    let rt = runtime();
    rt.block_on(async {
        wait_leader(&cluster, Duration::from_secs(10)).await;
        let mut client = connect(&cluster.endpoints()).await.expect("client");
        client.put("/m", "v", None).await.expect("put");
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
    drop(prometheus);
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
