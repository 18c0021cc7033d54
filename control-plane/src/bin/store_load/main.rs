//! `keel-store-load`: one load generator for keel's store and for etcd alike. It speaks only
//! etcd's v3 gRPC API, so both systems are measured by the same client code (`cargo xtask bench
//! store` runs it against each): the closed loops (`write`, `read`) and the watchers through
//! tonic stubs of etcd's protos on shared HTTP/2 connections (`--connections` to each
//! endpoint), the range workload (and the read workload's one setup put) through the
//! `etcd-client` crate. It shares the machine's CPUs with the members it measures, so it is
//! kept lean: what it spends per request is taken from both systems alike. Prints one JSON
//! object.
//!
//! - `write`: clients put 256-byte values (by default) as fast as each one's previous put is
//!   acknowledged; writes/s and latency percentiles.
//! - `read`: clients do linearizable gets of one key.
//! - `watch`: watchers on one prefix, a writer putting at a steady rate; the latency from a
//!   put's acknowledgement to each watcher's receipt of its event.
//! - `range`: one client reads every key under `--prefix` in one linearizable range,
//!   `--rounds` times (beside an API server's list of the same keys).

mod threads;
mod watch;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use etcd_client::{Client, ConnectOptions, GetOptions};
use keel_store::pb::etcdserverpb::kv_client::KvClient;
use keel_store::pb::etcdserverpb::{PutRequest, RangeRequest};
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use threads::{single_thread_runtime, LoadThreads, Share};

/// The generator shares two CPUs with the members it measures, so every microsecond it spends
/// on a request is taken from them; glibc's malloc was a fifth of its CPU (perf).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Clone, Copy, Debug, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Workload {
    Write,
    Read,
    Watch,
    Range,
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "keel-store-load",
    about = "etcd v3 API load for keel's store and etcd alike"
)]
struct Args {
    /// Client URLs, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    #[arg(long, value_enum)]
    workload: Workload,
    /// Concurrent clients (each waits for its previous request).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Connections to each endpoint the clients share (at most one per client).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Distinct keys per writing client.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Watchers for the watch workload.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Puts the watch workload's writer makes (at `--watch-rate` per second).
    #[arg(long, default_value_t = 200)]
    watch_writes: usize,
    #[arg(long, default_value_t = 100.0)]
    watch_rate: f64,
    /// The key prefix the range workload reads.
    #[arg(long)]
    prefix: Option<String>,
    /// Ranges the range workload makes, one after another (after one untimed).
    #[arg(long, default_value_t = 20)]
    rounds: usize,
}

#[derive(Serialize)]
struct Figures {
    workload: Workload,
    clients: usize,
    operations: usize,
    errors: usize,
    /// Each distinct error message (up to `ERROR_KINDS`) and how often it came: a count alone
    /// cannot tell a refused write from a dead endpoint.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    error_kinds: BTreeMap<String, usize>,
    seconds: f64,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// The watch workload's latencies from each put's send rather than its acknowledgement:
    /// the put's answer can queue behind the fan-out it caused, and then the figures above
    /// say more about which of the two a member sends first than about the watchers.
    #[serde(skip_serializing_if = "Option::is_none")]
    from_sent_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from_sent_p99_ms: Option<f64>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[rank].as_secs_f64() * 1000.0
}

/// Distinct error messages kept per run; past them errors are only counted.
const ERROR_KINDS: usize = 8;

fn count_error_kind(kinds: &mut BTreeMap<String, usize>, kind: String, count: usize) {
    if kinds.len() < ERROR_KINDS || kinds.contains_key(&kind) {
        *kinds.entry(kind).or_default() += count;
    }
}

fn figures(
    workload: Workload,
    clients: usize,
    mut latencies: Vec<Duration>,
    errors: usize,
    error_kinds: BTreeMap<String, usize>,
    elapsed: Duration,
) -> Figures {
    latencies.sort_unstable();
    Figures {
        workload,
        clients,
        operations: latencies.len(),
        errors,
        error_kinds,
        seconds: elapsed.as_secs_f64(),
        per_second: latencies.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        from_sent_p50_ms: None,
        from_sent_p99_ms: None,
    }
}

async fn connections(args: &Args, count: usize) -> anyhow::Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(30));
        clients.push(
            Client::connect(&args.endpoints, Some(options))
                .await
                .with_context(|| format!("cannot connect to {:?}", args.endpoints))?,
        );
    }
    Ok(clients)
}

/// KV stubs on `count` connections to each endpoint (plain tonic channels), for the closed
/// loops and the watch workload's writer. A client sends its requests to the endpoints in
/// turn, as etcd's own client balances them (so with three members two requests in three
/// reach a follower, which forwards writes), whichever member leads. `etcd-client` puts every
/// request through a balancing buffer of its own in front of tonic's, and clones a stub per
/// service with each `Client`: at 256 clients the generator then took 28% of the two CPUs,
/// 44–63 µs a put, CPU the members it measures did not get (33–36 µs since, with the threads
/// of `closed_loop`).
async fn kv_channels(args: &Args, count: usize) -> anyhow::Result<Vec<Vec<KvClient<Channel>>>> {
    Ok(channels(args, count)
        .await?
        .into_iter()
        .map(|endpoint| endpoint.into_iter().map(KvClient::new).collect())
        .collect())
}

/// `count` connections to each endpoint, by endpoint.
async fn channels(args: &Args, count: usize) -> anyhow::Result<Vec<Vec<Channel>>> {
    let mut endpoints = Vec::with_capacity(args.endpoints.len());
    for url in &args.endpoints {
        let mut channels = Vec::with_capacity(count);
        for _ in 0..count {
            channels.push(connect(url).await?);
        }
        endpoints.push(channels);
    }
    Ok(endpoints)
}

/// One HTTP/2 connection to `url`.
async fn connect(url: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("endpoint {url:?}"))?
        .connect_timeout(Duration::from_secs(5))
        // Until a response's head: a watch stream's body is not cut by it.
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))
}

/// One client loop's outcome: the latencies of its successes, its errors and their kinds.
type Outcome = (Vec<Duration>, usize, BTreeMap<String, usize>);

/// Runs `clients` loops of `op` for the duration on the load threads ([`threads`]); the clock
/// starts when every thread has connected.
fn closed_loop<F, Fut>(args: &Args, op: F) -> anyhow::Result<Figures>
where
    F: Fn(KvClient<Channel>, usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + 'static,
{
    let share = Share::new(args.clients, args.connections);
    let connecting = args.clone();
    let duration = Duration::from_secs_f64(args.duration_secs);
    let threads = LoadThreads::spawn(
        "load",
        share,
        move |thread, runtime| {
            runtime.block_on(kv_channels(&connecting, share.connections(thread)))
        },
        move |thread, runtime, conns| {
            let until = Instant::now() + duration;
            runtime.block_on(client_loops(share.items(thread), conns, op, until))
        },
    )?;
    // A thread that failed to connect ends with its error, which `join` returns.
    threads.start();
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut error_kinds = BTreeMap::new();
    for outcomes in threads.join()? {
        for (l, e, kinds) in outcomes {
            latencies.extend(l);
            errors += e;
            for (kind, count) in kinds {
                count_error_kind(&mut error_kinds, kind, count);
            }
        }
    }
    Ok(figures(
        args.workload,
        args.clients,
        latencies,
        errors,
        error_kinds,
        started.elapsed(),
    ))
}

/// The runtime of the range workload (tokio's work-stealing one).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("the runtime")
}

/// The loops of clients `ids` on this thread's connections until `until`.
async fn client_loops<F, Fut>(
    ids: Vec<usize>,
    conns: Vec<Vec<KvClient<Channel>>>,
    op: F,
    until: Instant,
) -> anyhow::Result<Vec<Outcome>>
where
    F: Fn(KvClient<Channel>, usize, u64) -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + 'static,
{
    let local = tokio::task::LocalSet::new();
    let mut tasks = Vec::with_capacity(ids.len());
    for (slot, id) in ids.into_iter().enumerate() {
        // This client's connection to each endpoint.
        let routes: Vec<KvClient<Channel>> = conns
            .iter()
            .map(|channels| channels[slot % channels.len()].clone())
            .collect();
        let op = op.clone();
        tasks.push(local.spawn_local(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut kinds = BTreeMap::new();
            let mut n = 0u64;
            while Instant::now() < until {
                let began = Instant::now();
                let route = &routes[(id + n as usize) % routes.len()];
                match op(route.clone(), id, n).await {
                    Ok(()) => latencies.push(began.elapsed()),
                    Err(e) => {
                        errors += 1;
                        // The code too: a refused write and a dead endpoint can share a message.
                        count_error_kind(&mut kinds, format!("{:?}: {}", e.code(), e.message()), 1);
                    }
                }
                n += 1;
            }
            (latencies, errors, kinds)
        }));
    }
    local
        .run_until(async move {
            let mut outcomes = Vec::with_capacity(tasks.len());
            for task in tasks {
                outcomes.push(task.await.context("a client task")?);
            }
            Ok(outcomes)
        })
        .await
}

fn write(args: &Args) -> anyhow::Result<Figures> {
    let value = vec![b'v'; args.value_size];
    let keys = args.keys.max(1) as u64;
    closed_loop(args, move |mut client, id, n| {
        let request = PutRequest {
            key: format!("/bench/w/{id}/{}", n % keys).into_bytes(),
            value: value.clone(),
            ..Default::default()
        };
        async move { client.put(request).await.map(|_| ()) }
    })
}

fn read(args: &Args) -> anyhow::Result<Figures> {
    single_thread_runtime()?.block_on(async {
        let mut setup = connections(args, 1).await?.remove(0);
        setup
            .put("/bench/r", vec![b'v'; args.value_size], None)
            .await
            .context("writing the key the read workload reads")
    })?;
    closed_loop(args, |mut client, _, _| async move {
        let request = RangeRequest {
            key: b"/bench/r".to_vec(),
            ..Default::default()
        };
        client.range(request).await.map(|_| ())
    })
}

/// Ranges over every key under `--prefix`, one range at a time after an untimed one; the
/// figures plus the keys and bytes of the last range.
async fn range(args: &Args) -> anyhow::Result<serde_json::Value> {
    let prefix = args
        .prefix
        .clone()
        .context("the range workload needs --prefix")?;
    let client = connections(args, 1).await?.remove(0);
    // Ten thousand objects of a kibibyte or two are far over tonic's default 4 MiB limit.
    let mut kv = client.kv_client().max_decoding_message_size(1 << 30);
    let options = GetOptions::new().with_prefix();
    kv.get(prefix.as_str(), Some(options.clone()))
        .await
        .with_context(|| format!("a range over {prefix}"))?;
    let mut latencies = Vec::with_capacity(args.rounds);
    let (mut items, mut bytes) = (0usize, 0usize);
    let started = Instant::now();
    for _ in 0..args.rounds.max(1) {
        let began = Instant::now();
        let response = kv
            .get(prefix.as_str(), Some(options.clone()))
            .await
            .with_context(|| format!("a range over {prefix}"))?;
        latencies.push(began.elapsed());
        items = response.kvs().len();
        bytes = response
            .kvs()
            .iter()
            .map(|pair| pair.key().len() + pair.value().len())
            .sum();
    }
    let mut value = serde_json::to_value(figures(
        Workload::Range,
        1,
        latencies,
        0,
        BTreeMap::new(),
        started.elapsed(),
    ))?;
    value["items"] = items.into();
    value["bytes"] = bytes.into();
    Ok(value)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.clients == 0 || args.connections == 0 || args.watchers == 0 {
        bail!("--clients, --connections and --watchers must be at least 1");
    }
    let figures = match args.workload {
        Workload::Write => write(&args)?,
        Workload::Read => read(&args)?,
        Workload::Watch => watch::watch(&args)?,
        Workload::Range => {
            println!("{}", runtime()?.block_on(range(&args))?);
            return Ok(());
        }
    };
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}
