//! `cargo xtask bench api`: keel's Kubernetes API server beside the store under it. A keel
//! member serves both, the API (`--insecure-listen-api`, plain HTTP on loopback) and etcd's
//! gRPC API (a fresh member for each client count of the creates, so that no cell runs on
//! the state an earlier one left; one for the security chain, one for the lists and
//! watches); each scenario runs through the API (`keel-api-load`, HTTP/1.1 keep-alive, one
//! connection per client) and then straight against the member's store (`keel-store-load`,
//! etcd's API), one after the other in one invocation:
//!
//! - creates of ~1 KiB Pods at each client count, beside puts of values the size of the stored
//!   Pod at the same count (goal: p99 through the API at most 1.2× the store's); then the same
//!   creates on fresh members whose API server reaches its store over loopback gRPC instead
//!   of in process, with the member's CPU per create on both;
//! - lists of `--pods` Pods from the watch cache, consistent and paged, beside one range of the
//!   same keys (goal: the cache list under 100 ms);
//! - watch fan-out to `--watchers` watchers, each on its own HTTP/1.1 connection and then
//!   multiplexed over 16 HTTP/2 connections, beside the store's own watch fan-out over 16 gRPC
//!   connections (goal: p99 under 10 ms from the create's send to the event's receipt).
//!
//! It builds nothing: the release binaries must be in `target/release` (the error says how).
//! The report goes to `bench-results/<date>/api.{md,json}` and `api-creates.svg`. The member
//! and the load generators share the machine's cores; the report says so.

use std::{
    fs,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::Args;
use keel_lab::{Child, Placement};
use serde_json::{json, Value};

use super::store::{free_port, load as store_load};
use crate::workspace_root;

/// One namespace per scenario, so that the list reads exactly the filled Pods.
const CREATE_NS: &str = "bench";
/// The security chain scenario's user: a developer with `edit` in the create namespace.
const BENCH_USER: &str = "bench-developer";
const BENCH_TOKEN: &str = "keel-bench-token-not-a-secret";
/// Client counts of the security chain scenario.
const CHAIN_CLIENTS: [usize; 2] = [1, 16];
const LIST_NS: &str = "bench-list";
/// Connections the watchers share in the multiplexed run (and the store's watchers share).
const WATCH_H2_CONNECTIONS: usize = 16;
const WATCH_NS: &str = "bench-watch";

/// p99 of a create through the API at most this many times a put's at the same client count.
const CREATE_P99_RATIO_GOAL: f64 = 1.2;
/// p99 of a list served from the watch cache.
const CACHE_LIST_GOAL_MS: f64 = 100.0;
/// p99 from a create's send to a watcher's receipt of its event.
const WATCH_P99_GOAL_MS: f64 = 10.0;

#[derive(Args, Clone)]
pub struct ApiArgs {
    /// Concurrent creating clients, each on its own connection (the store's writers run at the
    /// same counts).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Seconds per create measurement.
    #[arg(long, default_value_t = 8.0)]
    duration: f64,
    /// Watch connections for the fan-out measurement.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Pods in the listed namespace.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Timed lists per mode, and timed ranges of the store.
    #[arg(long, default_value_t = 20)]
    list_rounds: usize,
    /// Objects the watch writer creates.
    #[arg(long, default_value_t = 200)]
    watch_events: usize,
    /// Creates per second of the watch writer.
    #[arg(long, default_value_t = 100.0)]
    watch_rate: f64,
    /// gRPC connections of the store's writers (the API server holds one to its store).
    #[arg(long, default_value_t = 1)]
    store_connections: usize,
}

/// One request on a fresh connection, `Connection: close`; the status and the body as text.
/// For readiness and set-up only: the measuring is the load generators' job.
pub(super) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Accept: application/json\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .with_context(|| format!("reading the answer to {method} {path}"))?;
    let text = String::from_utf8_lossy(&answer);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{method} {path}: no HTTP status in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Loopback ports that are free now and differ from each other.
pub(super) fn distinct_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let mut ports = Vec::with_capacity(count);
    for _ in 0..100 {
        if ports.len() == count {
            break;
        }
        let port = free_port()?;
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    if ports.len() < count {
        bail!("could not find {count} distinct free loopback ports");
    }
    Ok(ports)
}

/// Raises this process's soft limit on open files (the member and the load generators inherit
/// it): a thousand watch connections are a thousand descriptors on each side.
fn raise_nofile(wanted: usize) {
    let wanted = wanted as libc::rlim_t;
    // SAFETY: getrlimit/setrlimit read and write a local struct.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= wanted {
            return;
        }
        let both = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: wanted.max(limit.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &both) != 0 {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            if limit.rlim_cur < wanted {
                println!(
                    "warning: open files limited to {} (wanted {wanted}); watch connections may fail",
                    limit.rlim_cur
                );
            }
        }
    }
}

/// The keel member under test; killed when dropped (before the scratch directory goes).
struct Member {
    child: Child,
    api: SocketAddr,
    /// The member's etcd-API client URL.
    endpoint: String,
}

impl Member {
    /// `store_client`: the member's `--api-store-client` (`in-process` or `grpc`).
    fn start(bin: &Path, dir: &Path, store_client: &str) -> anyhow::Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ports = distinct_ports(4)?;
        let (client, peer, api, secure) = (ports[0], ports[1], ports[2], ports[3]);
        let tokens = dir.join("tokens.csv");
        std::fs::write(&tokens, format!("{BENCH_TOKEN},{BENCH_USER},1000\n"))
            .context("writing the bench's token file")?;
        let mut command = Command::new(bin.join("control-plane"));
        command
            .args(["--name", "m0"])
            .arg("--data-dir")
            .arg(dir.join("keel-m0"))
            .args(["--listen-client", &format!("127.0.0.1:{client}")])
            .args(["--listen-peer", &format!("127.0.0.1:{peer}")])
            .args(["--initial-cluster", &format!("m0=http://127.0.0.1:{peer}")])
            .args(["--listen-api", &format!("127.0.0.1:{secure}")])
            // The load generator speaks plain HTTP/1.1 to the loopback listener, as the
            // anchor (the store bench) speaks plain gRPC.
            .args(["--insecure-listen-api", &format!("127.0.0.1:{api}")])
            // The security chain scenario's user, whom RBAC authorizes.
            .arg("--token-auth-file")
            .arg(&tokens)
            // The API server alone is measured: a scheduler or controllers would add writes.
            .arg("--disable-scheduler")
            .arg("--disable-controllers")
            .args(["--api-store-client", store_client])
            .env("RUST_LOG", "warn")
            .current_dir(dir);
        let child = Child::spawn("keel", command, &Placement::default())
            .context("starting keel's control-plane")?;
        let member = Self {
            child,
            api: SocketAddr::from(([127, 0, 0, 1], api)),
            endpoint: format!("http://127.0.0.1:{client}"),
        };
        // Ready when /readyz answers 200: the store serves and every watch cache has listed.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            super::check_stop()?;
            if let Ok((200, _)) = http(member.api, "GET", "/readyz", "") {
                return Ok(member);
            }
            if Instant::now() > deadline {
                bail!(
                    "keel did not answer /readyz with 200 within 60 s:\n{}",
                    member.child.output().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.api)
    }

    fn cpu_seconds(&self) -> anyhow::Result<f64> {
        super::process_cpu_seconds(self.child.pid())
    }

    /// Binds `edit` in `namespace` to the bench's token user, as an admin would for a
    /// developer.
    fn bind_developer(&self, namespace: &str) -> anyhow::Result<()> {
        let body = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "bench-developer-edit", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": BENCH_USER}]})
        .to_string();
        let path =
            format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings");
        let (status, answer) = http(self.api, "POST", &path, &body)?;
        if status != 201 && status != 409 {
            bail!("binding edit to {BENCH_USER}: {status}: {answer}");
        }
        Ok(())
    }

    fn create_namespace(&self, name: &str) -> anyhow::Result<()> {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
            .to_string();
        let (status, answer) = http(self.api, "POST", "/api/v1/namespaces", &body)?;
        if status != 201 && status != 409 {
            bail!("creating namespace {name}: {status}: {answer}");
        }
        Ok(())
    }
}

/// The server's `apiserver_request_filter_duration_seconds` sums and counts, by filter.
fn filter_times(member: &Member) -> anyhow::Result<std::collections::HashMap<String, (f64, f64)>> {
    let (status, text) = http(member.api, "GET", "/metrics", "")?;
    if status != 200 {
        bail!("/metrics answered {status}");
    }
    let mut times: std::collections::HashMap<String, (f64, f64)> = Default::default();
    for line in text.lines() {
        for (suffix, is_sum) in [("_sum{", true), ("_count{", false)] {
            let Some(rest) = line.strip_prefix(&format!(
                "apiserver_request_filter_duration_seconds{suffix}"
            )) else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let Some(filter) = labels
                .strip_prefix("filter=\"")
                .and_then(|l| l.strip_suffix('"'))
            else {
                continue;
            };
            let value: f64 = value.trim().parse().unwrap_or(0.0);
            let entry = times.entry(filter.to_owned()).or_default();
            if is_sum {
                entry.0 = value;
            } else {
                entry.1 = value;
            }
        }
    }
    Ok(times)
}

/// `keel-api-load create` at `clients` for `duration` s, with the CPU the member spent per
/// create (`member_cpu_ms_per_create`): what the run cost the server, apart from the load
/// generator that shares the cores.
fn creates_through(
    bin: &Path,
    member: &Member,
    clients: usize,
    duration: f64,
    prefix: &str,
) -> anyhow::Result<Value> {
    let before = member.cpu_seconds()?;
    let mut api = api_load(
        bin,
        member,
        "create",
        &[
            format!("--clients={clients}"),
            format!("--duration={duration}"),
            format!("--namespace={CREATE_NS}"),
            format!("--prefix={prefix}{clients}"),
        ],
    )?;
    let spent = member.cpu_seconds()? - before;
    let done = num(&api, "ops");
    api["member_cpu_ms_per_create"] = json!(if done > 0.0 { spent * 1e3 / done } else { 0.0 });
    Ok(api)
}

/// One run of the API load generator; its JSON line. What it printed on stderr (the first
/// failed request) is shown.
fn api_load(bin: &Path, member: &Member, op: &str, args: &[String]) -> anyhow::Result<Value> {
    let out = Command::new(bin.join("keel-api-load"))
        .arg(op)
        .arg(format!("--url={}", member.url()))
        .args(args)
        .output()
        .context("running keel-api-load")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "keel-api-load {op} {args:?} failed ({}): {stderr}",
            out.status
        );
    }
    for line in stderr.lines() {
        println!("    {line}");
    }
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "keel-api-load {op}'s JSON: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn num(v: &Value, field: &str) -> f64 {
    v[field].as_f64().unwrap_or(0.0)
}

fn count(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or(0)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**not met**"
    }
}

pub fn run(args: ApiArgs) -> anyhow::Result<()> {
    if args.clients.is_empty() || args.clients.contains(&0) {
        bail!("--clients must list client counts of at least 1");
    }
    if args.watchers == 0 || args.pods == 0 || args.list_rounds == 0 || args.watch_events == 0 {
        bail!("--watchers, --pods, --list-rounds and --watch-events must be at least 1");
    }
    let target = workspace_root().join("target");
    let bin: PathBuf = target.join("release");
    let missing: Vec<&str> = ["control-plane", "keel-api-load", "keel-store-load"]
        .into_iter()
        .filter(|name| !bin.join(name).exists())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} missing in {}: build them first with\n  cargo build --release -p keel-control-plane \
             --bin control-plane --bin keel-api-load --bin keel-store-load",
            missing.join(", "),
            bin.display()
        );
    }
    raise_nofile(args.watchers * 2 + 1024);
    // On the workspace's disk, where a member's data directory would be; never a tmpfs.
    // Declared before the member, so it is removed after the member is killed.
    let scratch = tempfile::Builder::new()
        .prefix("keel-bench-api-")
        .tempdir_in(&target)
        .context("a scratch directory under target/")?;
    // Creates: at each client count a fresh member, first through the API, then the store's
    // puts at the same count. On one member for every count, each cell ran on what the cells
    // before it left (at 64 clients, some 80,000 pods in the watch cache and snapshots of
    // 150,000 keys), which the store's cell at the same count did not pay the same way.
    let mut creates = Vec::new();
    for &clients in &args.clients {
        super::check_stop()?;
        let dir = scratch.path().join(format!("creates-{clients}"));
        println!("starting a fresh keel member for {clients} client(s)");
        let member = Member::start(&bin, &dir, "in-process")?;
        member.create_namespace(CREATE_NS)?;
        let endpoints = vec![member.endpoint.clone()];
        let api = creates_through(&bin, &member, clients, args.duration, "c")?;
        // Values the size of the Pod as stored (the create's answer), each put a new key as
        // each create is; the keys (/bench/w/...) are outside the API's /registry/.
        let value_size = api["object_bytes"]
            .as_u64()
            .filter(|&b| b > 0)
            .unwrap_or(1024);
        super::check_stop()?;
        let store = store_load(
            &bin,
            &endpoints,
            &[
                "--workload=write".into(),
                format!("--clients={clients}"),
                format!("--duration-secs={}", args.duration),
                format!("--value-size={value_size}"),
                format!("--connections={}", args.store_connections),
                "--keys=1000000000".into(),
            ],
        )?;
        println!(
            "  create  clients {clients:>4}: API {:>7.0}/s p50 {:>7.2} ms p99 {:>7.2} ms ({} errors) | store {:>7.0}/s p50 {:>7.2} ms p99 {:>7.2} ms",
            num(&api, "ops_per_sec"),
            num(&api, "p50_ms"),
            num(&api, "p99_ms"),
            count(&api, "errors"),
            num(&store, "per_second"),
            num(&store, "p50_ms"),
            num(&store, "p99_ms"),
        );
        creates.push(json!({"clients": clients, "api": api, "store": store}));
        drop(member);
        // A member's log and snapshots run to hundreds of MB: gone before the next starts.
        let _ = fs::remove_dir_all(&dir);
    }

    // The security chain: the same creates as a user RBAC must authorize (a bearer token,
    // then the RoleBinding that grants `edit`) beside the plain listener's unauthenticated
    // user, whom `system:masters` lets past RBAC; back to back at each client count, on a
    // member of its own (its 200,000 creates would otherwise be the lists' background).
    let chain_dir = scratch.path().join("chain");
    println!("starting a fresh keel member for the security chain");
    let member = Member::start(&bin, &chain_dir, "in-process")?;
    member.create_namespace(CREATE_NS)?;
    member.bind_developer(CREATE_NS)?;
    // The binding reaches the authorizer's cache through the watch: let it arrive.
    std::thread::sleep(Duration::from_millis(500));
    let mut chain = Vec::new();
    for clients in CHAIN_CLIENTS {
        let mut pair = serde_json::Map::new();
        for (label, token) in [("masters", None), ("rbac", Some(BENCH_TOKEN))] {
            super::check_stop()?;
            let mut load_args = vec![
                format!("--clients={clients}"),
                format!("--duration={}", args.duration),
                format!("--namespace={CREATE_NS}"),
                format!("--prefix=chain-{label}-{clients}"),
            ];
            if let Some(token) = token {
                load_args.push(format!("--token={token}"));
            }
            let before = filter_times(&member)?;
            let mut run = api_load(&bin, &member, "create", &load_args)?;
            let after = filter_times(&member)?;
            // Mean time per request in each step, from the server's own histograms.
            for step in ["authentication", "authorization"] {
                let (sum0, n0) = before.get(step).copied().unwrap_or((0.0, 0.0));
                let (sum1, n1) = after.get(step).copied().unwrap_or((0.0, 0.0));
                let mean_us = if n1 > n0 {
                    (sum1 - sum0) / (n1 - n0) * 1e6
                } else {
                    0.0
                };
                run[format!("{step}_mean_us")] = json!(mean_us);
            }
            println!(
                "  chain {label:<8} clients {clients:>3}: {:>7.0}/s p50 {:>6.2} ms p99 {:>6.2} ms ({} errors); authn {:.1} µs authz {:.1} µs (mean)",
                num(&run, "ops_per_sec"),
                num(&run, "p50_ms"),
                num(&run, "p99_ms"),
                count(&run, "errors"),
                num(&run, "authentication_mean_us"),
                num(&run, "authorization_mean_us"),
            );
            pair.insert(label.into(), run);
        }
        chain.push(
            json!({"clients": clients, "masters": pair.get("masters"), "rbac": pair.get("rbac")}),
        );
    }
    drop(member);
    let _ = fs::remove_dir_all(&chain_dir);

    println!("starting a fresh keel member for the lists and the watches");
    let member = Member::start(&bin, &scratch.path().join("main"), "in-process")?;
    for namespace in [LIST_NS, WATCH_NS] {
        member.create_namespace(namespace)?;
    }
    let endpoints = vec![member.endpoint.clone()];

    // Lists of the filled namespace, then the store's range of the same keys.
    super::check_stop()?;
    println!("filling {LIST_NS} with {} pods", args.pods);
    let fill = api_load(
        &bin,
        &member,
        "fill",
        &[
            format!("--count={}", args.pods),
            "--clients=16".into(),
            format!("--namespace={LIST_NS}"),
        ],
    )?;
    let filled = count(&fill, "created") + count(&fill, "existing");
    if filled != args.pods as u64 {
        bail!("the fill stored {filled} of {} pods: {fill}", args.pods);
    }
    let mut lists = serde_json::Map::new();
    for mode in ["cache", "consistent", "paged"] {
        super::check_stop()?;
        let list = api_load(
            &bin,
            &member,
            "list",
            &[
                format!("--mode={mode}"),
                format!("--rounds={}", args.list_rounds),
                format!("--namespace={LIST_NS}"),
            ],
        )?;
        println!(
            "  list {mode:<10}: {} items, {} bytes, p50 {:.1} ms p99 {:.1} ms",
            count(&list, "items"),
            count(&list, "bytes"),
            num(&list, "p50_ms"),
            num(&list, "p99_ms")
        );
        lists.insert(mode.into(), list);
    }
    super::check_stop()?;
    let range = store_load(
        &bin,
        &endpoints,
        &[
            "--workload=range".into(),
            format!("--prefix=/registry/pods/{LIST_NS}/"),
            format!("--rounds={}", args.list_rounds),
        ],
    )?;
    println!(
        "  store range      : {} keys, {} bytes, p50 {:.1} ms p99 {:.1} ms",
        count(&range, "items"),
        count(&range, "bytes"),
        num(&range, "p50_ms"),
        num(&range, "p99_ms")
    );

    // Watch fan-out through the API (each watcher on its own connection, then the same
    // watchers multiplexed over 16 HTTP/2 connections, as the store's watchers share 16 gRPC
    // connections below and as client-go's informers share one per process), then the
    // store's own.
    let watch_through_api = |connections: Option<usize>| -> anyhow::Result<Value> {
        super::check_stop()?;
        let mut load = vec![
            format!("--watchers={}", args.watchers),
            format!("--events={}", args.watch_events),
            format!("--rate={}", args.watch_rate),
            format!("--namespace={WATCH_NS}"),
        ];
        let how = match connections {
            Some(n) => {
                load.push(format!("--connections={n}"));
                format!("over {n} HTTP/2 connections")
            }
            None => "a connection each".to_owned(),
        };
        let watch = api_load(&bin, &member, "watch", &load)?;
        println!(
            "  watch API ({how}): {} of {} delivered, p50 {:.2} ms p99 {:.2} ms max {:.2} ms (from send)",
            count(&watch, "delivered"),
            count(&watch, "expected"),
            num(&watch, "p50_ms"),
            num(&watch, "p99_ms"),
            num(&watch, "max_ms")
        );
        Ok(watch)
    };
    let watch_api = watch_through_api(None)?;
    let watch_api_h2 = watch_through_api(Some(WATCH_H2_CONNECTIONS))?;
    let watch_value = watch_api["object_bytes"]
        .as_u64()
        .filter(|&b| b > 0)
        .unwrap_or(256);
    super::check_stop()?;
    let watch_store = store_load(
        &bin,
        &endpoints,
        &[
            "--workload=watch".into(),
            format!("--watchers={}", args.watchers),
            format!("--watch-writes={}", args.watch_events),
            format!("--watch-rate={}", args.watch_rate),
            format!("--connections={WATCH_H2_CONNECTIONS}"),
            format!("--value-size={watch_value}"),
        ],
    )?;
    println!(
        "  watch store: {} delivered, {} missing, p50 {:.2} ms p99 {:.2} ms max {:.2} ms (from ack)",
        count(&watch_store, "operations"),
        count(&watch_store, "errors"),
        num(&watch_store, "p50_ms"),
        num(&watch_store, "p99_ms"),
        num(&watch_store, "max_ms")
    );
    drop(member);

    // The same creates again with the API server reaching its store over loopback gRPC (the
    // path before the in-process one), each client count on a fresh member as above.
    let mut creates_grpc = Vec::new();
    for &clients in &args.clients {
        super::check_stop()?;
        let dir = scratch.path().join(format!("grpc-{clients}"));
        println!("starting a fresh keel member whose API server reaches its store over gRPC");
        let over_grpc = Member::start(&bin, &dir, "grpc")?;
        over_grpc.create_namespace(CREATE_NS)?;
        let api = creates_through(&bin, &over_grpc, clients, args.duration, "g")?;
        creates_grpc.push(json!({"clients": clients, "api": api}));
        drop(over_grpc);
        let _ = fs::remove_dir_all(&dir);
    }
    drop(scratch);

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let results = json!({
        "cores": cores,
        "args": {
            "clients": args.clients,
            "duration": args.duration,
            "watchers": args.watchers,
            "pods": args.pods,
            "list_rounds": args.list_rounds,
            "watch_events": args.watch_events,
            "watch_rate": args.watch_rate,
            "store_connections": args.store_connections,
        },
        "goals": {
            "create_p99_ratio_max": CREATE_P99_RATIO_GOAL,
            "cache_list_p99_ms_max": CACHE_LIST_GOAL_MS,
            "watch_p99_ms_max": WATCH_P99_GOAL_MS,
        },
        "create": creates,
        "create_store_over_grpc": creates_grpc,
        "security_chain": chain,
        "fill": fill,
        "list": {
            "cache": lists.get("cache"),
            "consistent": lists.get("consistent"),
            "paged": lists.get("paged"),
            "store_range": range,
        },
        "watch": {"api": watch_api, "api_http2": watch_api_h2, "store": watch_store},
    });
    let markdown = report(&args, &results, cores);
    println!("\n{markdown}");
    let dir = super::results_dir()?;
    fs::write(dir.join("api.md"), &markdown)?;
    fs::write(dir.join("api.json"), serde_json::to_vec_pretty(&results)?)?;
    let series: Vec<(String, Vec<(f64, f64)>)> =
        [("keel API create", "api"), ("store put", "store")]
            .into_iter()
            .map(|(name, side)| {
                let points = creates_of(&results)
                    .iter()
                    .map(|c| (num(c, "clients"), num(&c[side], "p99_ms")))
                    .collect();
                (format!("{name}, p99 ms"), points)
            })
            .collect();
    super::plot::lines_over(
        &dir.join("api-creates.svg"),
        "create p99 (ms) by concurrent clients: keel's API beside its store",
        "concurrent clients",
        &series,
    )?;
    println!("results: {}", dir.join("api.md").display());
    Ok(())
}

fn creates_of(results: &Value) -> &[Value] {
    results["create"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The creates through the API over its two paths to the store: in process (the default)
/// and over loopback gRPC (as to an external etcd), with the member's CPU per create.
fn store_path_report(creates: &[Value], results: &Value) -> String {
    let over_grpc = results["create_store_over_grpc"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut md = String::from(
        "\n#### The API server's path to its store\n\n\
         The creates above had the API server hand its reads, writes and watches to the member \
         in its own process (`--api-store-client in-process`, the default). The same creates, \
         on fresh members (one per client count) whose API server reaches its store over \
         loopback gRPC as it would \
         an external etcd (`--api-store-client grpc`). CPU: \
         the member process's user + system time over the run (`/proc/<pid>/stat`) divided by \
         the creates it answered.\n\n\
         | clients | in process: creates/s | p50 ms | p99 ms | member CPU ms per create | over gRPC: creates/s | p50 ms | p99 ms | member CPU ms per create |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for c in creates {
        let clients = count(c, "clients");
        let Some(g) = over_grpc.iter().find(|g| count(g, "clients") == clients) else {
            continue;
        };
        let (local, remote) = (&c["api"], &g["api"]);
        md.push_str(&format!(
            "| {clients} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} |\n",
            num(local, "ops_per_sec"),
            num(local, "p50_ms"),
            num(local, "p99_ms"),
            num(local, "member_cpu_ms_per_create"),
            num(remote, "ops_per_sec"),
            num(remote, "p50_ms"),
            num(remote, "p99_ms"),
            num(remote, "member_cpu_ms_per_create"),
        ));
    }
    md
}

fn report(args: &ApiArgs, results: &Value, cores: usize) -> String {
    let creates = creates_of(results);
    let sent_bytes = creates
        .first()
        .map_or(0, |c| count(&c["api"], "body_bytes"));
    let stored_bytes = creates
        .first()
        .map_or(0, |c| count(&c["api"], "object_bytes"));
    let mut md = format!(
        "### Kubernetes API: keel's API server beside the store under it\n\n\
         keel members (`control-plane --insecure-listen-api`), fsync on, data under `target/`, on \
         loopback: a fresh one for each client count of the creates, one for the security chain \
         and one for the lists and watches. Each scenario runs through the API with `keel-api-load` (HTTP/1.1 keep-alive, \
         JSON, one connection per client) and then straight against the member's store with \
         `keel-store-load` (etcd's gRPC API; the API server itself reaches the store in \
         process, or over the same API with `--api-store-client grpc`), one after the other in \
         one invocation. The load generators share the \
         machine's {cores} cores with the member they measure; percentiles are nearest-rank.\n\n\
         #### Creates\n\n\
         Pods of {sent_bytes} bytes as sent ({stored_bytes} as stored, with the server's \
         defaults) for {} s per client count, each client waiting for its previous create; \
         beside puts of {stored_bytes}-byte values to new keys at the same client count over \
         {} gRPC connection(s). Goal: p99 through the API at most {CREATE_P99_RATIO_GOAL}× the \
         store's.\n\n\
         | clients | API creates/s | API p50 ms | API p99 ms | API errors | store puts/s | store p50 ms | store p99 ms | p99 API ÷ store | goal |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        args.duration, args.store_connections
    );
    for c in creates {
        let (api, store) = (&c["api"], &c["store"]);
        let ratio = if num(store, "p99_ms") > 0.0 {
            num(api, "p99_ms") / num(store, "p99_ms")
        } else {
            f64::INFINITY
        };
        md.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.2} | {} | {:.0} | {:.2} | {:.2} | {ratio:.2} | {} |\n",
            count(c, "clients"),
            num(api, "ops_per_sec"),
            num(api, "p50_ms"),
            num(api, "p99_ms"),
            count(api, "errors"),
            num(store, "per_second"),
            num(store, "p50_ms"),
            num(store, "p99_ms"),
            verdict(ratio <= CREATE_P99_RATIO_GOAL && count(api, "errors") == 0),
        ));
    }

    md.push_str(&store_path_report(creates, results));

    md.push_str(
        "\n#### The security chain per request\n\n\
         The same creates, back to back: as the plain listener's unauthenticated user (in \
         `system:masters`, which skips RBAC: no authentication work, the authorizer's first \
         check answers), then as a developer with a bearer token from the token file and \
         `edit` granted by a RoleBinding in the namespace (token lookup, RBAC over the bootstrap \
         roles and the binding, then the admission plugins that read the requester: escalation \
         and NodeRestriction pass at once for a Pod). Beside the creates' own figures, the mean \
         time each request spent in authentication and in authorization, from the server's \
         `apiserver_request_filter_duration_seconds` (scraped before and after each run); the \
         end-to-end difference between the two users is within this machine's run-to-run noise \
         (±30%), which is why the steps are timed where they run.\n\n\
         | clients | user | creates/s | p50 ms | p99 ms | errors | authentication µs (mean) | authorization µs (mean) |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for c in results["security_chain"].as_array().into_iter().flatten() {
        for (label, key) in [
            ("system:masters (no RBAC)", "masters"),
            ("token + RBAC (`edit`)", "rbac"),
        ] {
            let v = &c[key];
            md.push_str(&format!(
                "| {} | {label} | {:.0} | {:.2} | {:.2} | {} | {:.1} | {:.1} |\n",
                count(c, "clients"),
                num(v, "ops_per_sec"),
                num(v, "p50_ms"),
                num(v, "p99_ms"),
                count(v, "errors"),
                num(v, "authentication_mean_us"),
                num(v, "authorization_mean_us"),
            ));
        }
    }

    let lists = &results["list"];
    let paged = &lists["paged"];
    md.push_str(&format!(
        "\n#### Lists of {} Pods\n\n\
         {} timed rounds each after an untimed one, on one connection, timed from the request \
         to the last byte of the body. Cache: `resourceVersion=0`; consistent: no \
         resourceVersion (the cache, once it has caught up with the store's current revision); \
         paged: `limit=500` following `continue` to the end ({} pages), read from the store \
         and timed as the whole walk. Beside them, one linearizable range of the same keys in \
         the store. Goal: the cache list's p99 under {CACHE_LIST_GOAL_MS} ms.\n\n\
         | request | items | MiB | p50 ms | p99 ms | max ms | goal |\n\
         |---|---|---|---|---|---|---|\n",
        args.pods,
        args.list_rounds,
        count(paged, "pages"),
    ));
    let mib = |v: &Value| count(v, "bytes") as f64 / (1024.0 * 1024.0);
    for (label, key) in [
        ("API, watch cache (`resourceVersion=0`)", "cache"),
        ("API, consistent (no resourceVersion)", "consistent"),
        ("API, paged (`limit=500`, whole walk)", "paged"),
        ("store, one range of the prefix", "store_range"),
    ] {
        let v = &lists[key];
        let goal = if key == "cache" {
            format!(
                "p99 < {CACHE_LIST_GOAL_MS} ms: {}",
                verdict(num(v, "p99_ms") < CACHE_LIST_GOAL_MS)
            )
        } else {
            "—".to_owned()
        };
        md.push_str(&format!(
            "| {label} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {goal} |\n",
            count(v, "items"),
            mib(v),
            num(v, "p50_ms"),
            num(v, "p99_ms"),
            num(v, "max_ms"),
        ));
    }

    let (api, api_h2, store) = (
        &results["watch"]["api"],
        &results["watch"]["api_http2"],
        &results["watch"]["store"],
    );
    let store_expected = count(store, "operations") + count(store, "errors");
    md.push_str(&format!(
        "\n#### Watch fan-out\n\n\
         {} watchers on the namespace's ConfigMaps, all connected before a writer creates {} \
         ConfigMaps at {}/s (achieved: {:.0}/s; create p99 {:.2} ms), twice: each watcher on an \
         HTTP/1.1 connection of its own (a thousand clients), then the watchers multiplexed over \
         {WATCH_H2_CONNECTIONS} HTTP/2 connections (as client-go's informers share a process's \
         connection; achieved {:.0}/s, create p99 {:.2} ms). Each ConfigMap carries its send \
         time; a watcher notes the time each event arrives. Beside it, the store's fan-out: as \
         many watchers on one prefix over {WATCH_H2_CONNECTIONS} gRPC connections, a writer \
         putting at the same rate (achieved: {:.0}/s), latency from the put's acknowledgement. \
         Goal: p99 from the create's send under {WATCH_P99_GOAL_MS} ms.\n\n\
         | latency | delivered | p50 ms | p99 ms | max ms | goal |\n\
         |---|---|---|---|---|---|\n",
        args.watchers,
        args.watch_events,
        args.watch_rate,
        num(api, "write_per_sec"),
        num(api, "write_p99_ms"),
        num(api_h2, "write_per_sec"),
        num(api_h2, "write_p99_ms"),
        num(store, "per_second"),
    ));
    for (side, how) in [
        (api, "a connection each"),
        (
            api_h2,
            &*format!("{WATCH_H2_CONNECTIONS} HTTP/2 connections"),
        ),
    ] {
        let delivered = format!(
            "{} of {}",
            count(side, "delivered"),
            count(side, "expected")
        );
        md.push_str(&format!(
            "| API ({how}), create sent → event received | {delivered} | {:.2} | {:.2} | {:.2} | p99 < {WATCH_P99_GOAL_MS} ms: {} |\n",
            num(side, "p50_ms"),
            num(side, "p99_ms"),
            num(side, "max_ms"),
            verdict(num(side, "p99_ms") < WATCH_P99_GOAL_MS && count(side, "missing") == 0),
        ));
        md.push_str(&format!(
            "| API ({how}), create answered (201) → event received | {delivered} | {:.2} | {:.2} | {:.2} | — |\n",
            num(side, "from_ack_p50_ms"),
            num(side, "from_ack_p99_ms"),
            num(side, "from_ack_max_ms"),
        ));
    }
    md.push_str(&format!(
        "| store, put acknowledged → event received | {} of {store_expected} | {:.2} | {:.2} | {:.2} | — |\n",
        count(store, "operations"),
        num(store, "p50_ms"),
        num(store, "p99_ms"),
        num(store, "max_ms"),
    ));
    md.push_str(
        "\nAn event can arrive before its create's (or put's) answer does; that counts as zero in \
         the rows measured from the answer. Every raw figure is in api.json.\n",
    );
    md
}
