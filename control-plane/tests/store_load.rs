//! `keel-store-load`, the store bench's load generator, against three keel members: its closed
//! loops (tonic stubs on connections to every endpoint, taken in turn; followers forwarding
//! to the leader) really write and read what they count, its watchers take in every put, and
//! bad arguments are refused by name.

mod support;

use std::process::{Command, Output};

use futures::StreamExt;
use keel_store::pb::etcdserverpb::watch_server::{Watch, WatchServer};
use keel_store::pb::etcdserverpb::{WatchRequest, WatchResponse};
use support::{etcdctl, free_port, Cluster};

const LOAD: &str = env!("CARGO_BIN_EXE_keel-store-load");

fn load(args: &[&str]) -> Output {
    Command::new(LOAD)
        .args(args)
        .output()
        .expect("running keel-store-load")
}

fn figures(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "keel-store-load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("keel-store-load prints one JSON object")
}

fn refused(args: &[&str], expected: &str) {
    let out = load(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail: {stderr}");
    assert!(
        stderr.contains(expected),
        "{args:?}: expected {expected:?} in {stderr}"
    );
}

/// The keys the write workload wrote, as etcdctl reads them (keys and values in base64).
fn written(endpoint: &str) -> Vec<serde_json::Value> {
    let out = etcdctl(endpoint, &["get", "/bench/w/", "--prefix", "-w", "json"]);
    let range: serde_json::Value = serde_json::from_slice(&out.stdout).expect("etcdctl's JSON");
    range["kvs"].as_array().cloned().unwrap_or_default()
}

/// A key or value of etcdctl's JSON, decoded.
fn decoded(field: &serde_json::Value) -> String {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(field.as_str().expect("a base64 string"))
        .expect("base64");
    String::from_utf8(bytes).expect("UTF-8")
}

#[test]
fn closed_loops_write_and_read_what_they_count() {
    let cluster = Cluster::loopback(3, &[]);
    let endpoints = format!("--endpoints={}", cluster.endpoints().join(","));
    let ep = cluster.endpoints()[0].clone();

    // Six clients share one connection to each member and send their puts to the members in
    // turn: two in three reach a follower, which forwards them to the leader.
    let write = figures(&load(&[
        &endpoints,
        "--workload=write",
        "--clients=6",
        "--connections=1",
        "--keys=2",
        "--value-size=40",
        "--duration-secs=1",
    ]));
    assert_eq!(write["errors"], 0, "{write}");
    let writes = write["operations"].as_u64().expect("operations");
    assert!(writes >= 6, "{write}");
    assert!(write["p99_ms"].as_f64().expect("p99") > 0.0, "{write}");

    // Every client wrote its own keys, each holds the value the generator sent, and a key's
    // version counts the puts to it, so their sum is every put the store made: each one the
    // generator counted was made, and none it did not count.
    let kvs = written(&ep);
    let keys: Vec<String> = kvs.iter().map(|kv| decoded(&kv["key"])).collect();
    for client in 0..6 {
        let key = format!("/bench/w/{client}/0");
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    for kv in &kvs {
        assert_eq!(decoded(&kv["value"]), "v".repeat(40), "{kv}");
    }
    let made: u64 = kvs
        .iter()
        .map(|kv| kv["version"].as_u64().expect("a version"))
        .sum();
    assert_eq!(made, writes, "{write}");

    // Refused puts are counted as errors, by status code and message, and never as writes.
    let refused = figures(&load(&[
        &endpoints,
        "--workload=write",
        "--clients=2",
        "--value-size=2000000",
        "--duration-secs=0.5",
    ]));
    assert_eq!(refused["operations"], 0, "{refused}");
    assert!(
        refused["errors"].as_u64().expect("errors") >= 2,
        "{refused}"
    );
    let kinds = refused["error_kinds"].as_object().expect("error kinds");
    assert!(
        kinds
            .keys()
            .all(|kind| kind.starts_with("InvalidArgument: etcdserver: request is too large")),
        "{refused}"
    );

    let read = figures(&load(&[
        &endpoints,
        "--workload=read",
        "--clients=3",
        "--duration-secs=1",
    ]));
    assert_eq!(read["errors"], 0, "{read}");
    assert!(
        read["operations"].as_u64().expect("operations") >= 3,
        "{read}"
    );
}

/// How many Watch streams a member's client port has opened, from its `/metrics`.
fn watch_streams_started(endpoint: &str) -> u64 {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", &format!("{endpoint}/metrics")])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| {
            l.starts_with("grpc_server_started_total{") && l.contains("grpc_method=\"Watch\"")
        })
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[test]
fn every_watcher_receives_every_put_and_the_watchers_share_out_the_members() {
    let cluster = Cluster::loopback(3, &[]);
    let endpoints = cluster.endpoints();
    let before: Vec<u64> = endpoints.iter().map(|e| watch_streams_started(e)).collect();
    let watchers = 30;
    let puts = 20;
    let watch = figures(&load(&[
        &format!("--endpoints={}", endpoints.join(",")),
        "--workload=watch",
        &format!("--watchers={watchers}"),
        &format!("--watch-writes={puts}"),
        "--watch-rate=200",
        "--connections=2",
        "--value-size=16",
    ]));
    // Each watcher took in each put's event once: one latency each, none missing.
    assert_eq!(watch["errors"], 0, "{watch}");
    assert_eq!(watch["operations"], watchers * puts, "{watch}");
    assert_eq!(watch["clients"], watchers, "{watch}");
    assert!(
        watch["from_sent_p99_ms"].as_f64().expect("from sent") > 0.0,
        "{watch}"
    );
    // The writer really put that many keys under the watched prefix.
    let out = etcdctl(
        &endpoints[0],
        &[
            "get",
            "/bench/watch/",
            "--prefix",
            "--keys-only",
            "-w",
            "json",
        ],
    );
    let range: serde_json::Value = serde_json::from_slice(&out.stdout).expect("etcdctl's JSON");
    assert_eq!(range["count"], puts, "{range}");
    // One stream per watcher, the watchers on the members in turn: a third on each.
    for (endpoint, before) in endpoints.iter().zip(before) {
        let opened = watch_streams_started(endpoint) - before;
        assert_eq!(opened, watchers / 3, "Watch streams opened on {endpoint}");
    }
}

/// A watch run against `url` on two threads (where there are two CPUs) fails with `expected`
/// in its error, in less than `within_secs`.
fn watch_run_fails(url: &str, expected: &str, within_secs: u64) {
    let started = std::time::Instant::now();
    refused(
        &[
            &format!("--endpoints={url}"),
            "--workload=watch",
            "--watchers=4",
            "--connections=2",
        ],
        expected,
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(within_secs));
}

#[test]
fn an_endpoint_that_never_answers_fails_the_watch_run_by_name() {
    // Accepts connections and reads nothing back: no HTTP/2 settings, no response.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for socket in listener.incoming().flatten() {
            held.push(socket);
        }
    });
    // Every thread's watch runs out at 10 s; nothing is then waited for.
    watch_run_fails(&url, "was not created within 10s", 20);
}

/// A Watch service that refuses every watch as etcd does (`created` and `canceled` both set,
/// with a reason).
struct Refusing;

#[tonic::async_trait]
impl Watch for Refusing {
    type WatchStream = futures::stream::BoxStream<'static, Result<WatchResponse, tonic::Status>>;

    async fn watch(
        &self,
        _: tonic::Request<tonic::Streaming<WatchRequest>>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        let refusal = WatchResponse {
            created: true,
            canceled: true,
            cancel_reason: "refused for the test".into(),
            ..Default::default()
        };
        let stream = futures::stream::iter([Ok(refusal)]).chain(futures::stream::pending());
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}

#[test]
fn a_refused_watch_fails_the_run_by_name() {
    let runtime = support::runtime();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(WatchServer::new(Refusing))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    // Both refused: the run ends at once, by name.
    watch_run_fails(&url, "was refused: \"refused for the test\"", 10);
}

#[test]
fn bad_arguments_are_refused_by_name() {
    refused(
        &["--endpoints=not a url", "--workload=write"],
        "endpoint \"not a url\"",
    );
    let dead = format!("http://127.0.0.1:{}", free_port());
    refused(
        &[&format!("--endpoints={dead}"), "--workload=write"],
        &format!("cannot connect to {dead}"),
    );
    refused(
        &[
            "--endpoints=http://127.0.0.1:1",
            "--workload=write",
            "--clients=0",
        ],
        "--clients, --connections and --watchers must be at least 1",
    );
    refused(
        &[
            "--endpoints=http://127.0.0.1:1",
            "--workload=watch",
            "--watchers=0",
        ],
        "--clients, --connections and --watchers must be at least 1",
    );
    refused(
        &[&format!("--endpoints={dead}"), "--workload=watch"],
        &format!("cannot connect to {dead}"),
    );
    refused(
        &["--endpoints=http://127.0.0.1:1", "--workload=delete"],
        "delete",
    );
    refused(&["--workload=write"], "--endpoints");
}
