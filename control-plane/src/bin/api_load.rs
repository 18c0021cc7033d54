//! `keel-api-load`: a load generator for a Kubernetes API server over plain HTTP/1.1, the
//! counterpart of `keel-store-load` one layer up (`cargo xtask bench api` runs both against the
//! same member). Every client task holds one keep-alive connection of its own (hyper's
//! connection API over a `TcpStream` with Nagle off), opened before the clock starts. Each
//! subcommand prints one JSON object on stdout; the first failed request's answer goes to stderr.
//!
//! - `create`: clients POST ~1 KiB Pods as fast as each one's previous create is answered;
//!   creates/s and latency percentiles (request sent → response body read).
//! - `fill`: creates `--count` Pods quickly (before `list`); existing names count as done.
//! - `list`: lists the namespace's Pods `--rounds` times, from the watch cache
//!   (`resourceVersion=0`), consistently (no resourceVersion), or in pages (`limit`, following
//!   `continue`); timed until the body is read, parsed afterwards (untimed) to count items.
//! - `watch`: watchers, each on its own connection, watch ConfigMaps; once all are connected a
//!   writer creates ConfigMaps at a steady rate, each carrying its send time; latency from that
//!   send time (and from the create's 201) to each watcher's receipt of the event.
//!
//! Percentiles are nearest-rank over the sorted samples, as `keel-store-load` computes them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};

#[derive(Parser)]
#[command(
    name = "keel-api-load",
    about = "Kubernetes API load over plain HTTP/1.1 keep-alive connections"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Clients create Pods as fast as they are answered, for a duration.
    Create(CreateArgs),
    /// Creates a number of Pods quickly (before `list`).
    Fill(FillArgs),
    /// Lists the namespace's Pods, round after round.
    List(ListArgs),
    /// Watch fan-out: watchers on ConfigMaps, a writer creating them at a steady rate.
    Watch(WatchArgs),
}

#[derive(clap::Args)]
struct Target {
    /// The API server, `http://host:port` (plain HTTP only).
    #[arg(long)]
    url: String,
    /// The namespace to work in (created if it does not exist, except by `list`).
    #[arg(long, default_value = "default")]
    namespace: String,
    /// A bearer token sent with every request: a user the authorizer must look up in RBAC.
    /// Without one, the plain listener's unauthenticated user is in `system:masters`, which
    /// skips RBAC (the bench measures both).
    #[arg(long)]
    token: Option<String>,
}

/// The `Authorization` header of every request, from `--token`.
static BEARER: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

#[derive(clap::Args)]
struct CreateArgs {
    #[command(flatten)]
    target: Target,
    /// Concurrent clients, one connection each.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Pod names are `<prefix>-<client>-<seq>` (default `load-<pid>`, so runs do not collide).
    #[arg(long)]
    prefix: Option<String>,
}

#[derive(clap::Args)]
struct FillArgs {
    #[command(flatten)]
    target: Target,
    /// Pods to create.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Concurrent clients, one connection each.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Pod names are `<prefix>-<index>`.
    #[arg(long, default_value = "fill")]
    prefix: String,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// `?resourceVersion=0`: whatever the server's cache holds.
    Cache,
    /// No resourceVersion: as fresh as a quorum read.
    Consistent,
    /// `?limit=N`, following `metadata.continue` to the end; one round is the whole walk.
    Paged,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Cache => "cache",
            Mode::Consistent => "consistent",
            Mode::Paged => "paged",
        }
    }
}

#[derive(clap::Args)]
struct ListArgs {
    #[command(flatten)]
    target: Target,
    /// Timed lists (one more, untimed, warms up first).
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    #[arg(long, value_enum, default_value_t = Mode::Cache)]
    mode: Mode,
    /// Page size of the paged mode.
    #[arg(long, default_value_t = 500)]
    limit: usize,
}

#[derive(clap::Args)]
struct WatchArgs {
    #[command(flatten)]
    target: Target,
    /// Watch connections.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// ConfigMaps the writer creates.
    #[arg(long, default_value_t = 200)]
    events: usize,
    /// Creates per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Watchers connecting at once (a thousand SYNs at once would overflow the accept queue).
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Seconds to wait for the last events after the last create.
    #[arg(long, default_value_t = 10.0)]
    grace: f64,
    /// 0: each watcher on a connection of its own (HTTP/1.1: a thousand clients, one watch
    /// each). N: the watchers share N HTTP/2 connections, as one client-go process's informers
    /// share one, and as the store bench's watchers share one gRPC connection.
    #[arg(long, default_value_t = 0)]
    connections: usize,
}

// ----- the connection -------------------------------------------------------------------------

/// `host:port` of an `http://host:port[/...]` URL.
fn authority(url: &str) -> anyhow::Result<Arc<str>> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--url {url:?}: only plain http:// URLs are supported"))?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        bail!("--url {url:?} names no host:port");
    }
    Ok(authority.into())
}

/// One HTTP/1.1 keep-alive connection. A connection the server closed is reopened on the next
/// request.
struct Conn {
    authority: Arc<str>,
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn open(authority: &Arc<str>) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(&**authority)
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        // Runs until the server closes or the sender is dropped; its errors surface on the
        // requests in flight.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            authority: authority.clone(),
            sender,
        })
    }

    /// Sends a request and returns the response with its body unread.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<Response<Incoming>> {
        if self.sender.is_closed() {
            let authority = self.authority.clone();
            *self = Self::open(&authority).await?;
        }
        self.sender.ready().await.context("the connection closed")?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &*self.authority)
            .header(header::ACCEPT, "application/json");
        if !body.is_empty() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = BEARER.get().and_then(Option::as_deref) {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(body))
            .with_context(|| format!("building a request for {path}"))?;
        self.sender
            .send_request(request)
            .await
            .with_context(|| format!("request {path}"))
    }

    /// Sends a request and reads the whole response body.
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let response = self.send(method, path, body).await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the answer to {path}"))?
            .to_bytes();
        Ok((status, body))
    }
}

/// Set once the first failed request has been printed: one is enough to see what went wrong,
/// and printing every one would load the machine being measured.
static REPORTED: AtomicBool = AtomicBool::new(false);

fn report_first_error(what: impl FnOnce() -> String) {
    if !REPORTED.swap(true, Ordering::Relaxed) {
        eprintln!("keel-api-load: first error: {}", what());
    }
}

/// Creates the namespace unless it exists.
async fn ensure_namespace(conn: &mut Conn, namespace: &str) -> anyhow::Result<()> {
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
    let (status, answer) = conn
        .call(
            Method::POST,
            "/api/v1/namespaces",
            Bytes::from(serde_json::to_vec(&body)?),
        )
        .await?;
    // 403: a user who may not create namespaces (a `--token` developer) works in one an
    // administrator made; if it is missing, the creates fail and are counted as errors.
    if ![
        StatusCode::CREATED,
        StatusCode::CONFLICT,
        StatusCode::FORBIDDEN,
    ]
    .contains(&status)
    {
        bail!(
            "creating namespace {namespace}: {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    Ok(())
}

// ----- figures --------------------------------------------------------------------------------

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[rank].as_secs_f64() * 1000.0
}

/// p50, p99 and max in ms of unsorted samples.
fn spread(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort_unstable();
    (
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    )
}

/// Wall-clock nanoseconds since the epoch: the writer and the watchers are one process on one
/// clock, so differences are exact up to the clock's resolution.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Raises the soft limit on open files to `wanted` (or as far as the hard limit allows).
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
        // Raising the hard limit takes CAP_SYS_RESOURCE; without it, go as far as it allows.
        if libc::setrlimit(libc::RLIMIT_NOFILE, &both) != 0 {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            if limit.rlim_cur < wanted {
                eprintln!(
                    "keel-api-load: open files limited to {} (wanted {wanted})",
                    limit.rlim_cur
                );
            }
        }
    }
}

// ----- the objects ----------------------------------------------------------------------------

/// A Pod as a Deployment would stamp it (labels, two containers with ports, env, resources and
/// a probe), serialized once; each create splices its name in. About 1.1 KiB as sent.
struct PodTemplate {
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl PodTemplate {
    const MARK: &'static str = "@@NAME@@";

    fn new() -> Self {
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": Self::MARK,
                "labels": {
                    "app": "bench-web",
                    "tier": "frontend",
                    "release": "stable",
                    "pod-template-hash": "7d4b9c8f6d",
                },
                "annotations": {"bench.keel.dev/owner": "keel-api-load"},
            },
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "registry.k8s.io/nginx-slim:0.27",
                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                        "env": [
                            {"name": "LISTEN_ADDR", "value": "0.0.0.0:8080"},
                            {"name": "LOG_LEVEL", "value": "info"},
                            {"name": "CACHE_SIZE", "value": "256Mi"},
                            {"name": "UPSTREAM", "value": "http://backend.bench.svc.cluster.local:9000"},
                        ],
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "128Mi"},
                            "limits": {"cpu": "500m", "memory": "256Mi"},
                        },
                        "readinessProbe": {
                            "httpGet": {"path": "/healthz", "port": 8080},
                            "periodSeconds": 5,
                        },
                    },
                    {
                        "name": "metrics",
                        "image": "registry.k8s.io/pause:3.10",
                        "ports": [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
                        "env": [
                            {"name": "SCRAPE_INTERVAL", "value": "15s"},
                            {"name": "TARGET", "value": "127.0.0.1:8080"},
                        ],
                        "resources": {
                            "requests": {"cpu": "10m", "memory": "16Mi"},
                            "limits": {"cpu": "50m", "memory": "32Mi"},
                        },
                    },
                ],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
            },
        });
        let text = pod.to_string();
        let (head, tail) = text
            .split_once(Self::MARK)
            .expect("the template holds the name mark");
        Self {
            head: head.as_bytes().to_vec(),
            tail: tail.as_bytes().to_vec(),
        }
    }

    fn render(&self, name: &str) -> Bytes {
        let mut body = Vec::with_capacity(self.head.len() + name.len() + self.tail.len());
        body.extend_from_slice(&self.head);
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(&self.tail);
        Bytes::from(body)
    }
}

fn configmap(name: &str, sent_ns: u64) -> Bytes {
    let object = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "bench-watch"}},
        "data": {"sent": sent_ns.to_string()},
    });
    Bytes::from(object.to_string())
}

// ----- create and fill ------------------------------------------------------------------------

async fn open_all(authority: &Arc<str>, count: usize) -> anyhow::Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(count);
    for _ in 0..count {
        conns.push(Conn::open(authority).await?);
    }
    Ok(conns)
}

/// One create: Ok(Some(body length)) on 201, Ok(None) on 409 (the name exists), Err otherwise
/// (after reporting it if it is the first).
async fn create_pod(conn: &mut Conn, path: &str, body: Bytes) -> Result<Option<usize>, ()> {
    match conn.call(Method::POST, path, body).await {
        Ok((StatusCode::CREATED, answer)) => Ok(Some(answer.len())),
        Ok((StatusCode::CONFLICT, _)) => Ok(None),
        Ok((status, answer)) => {
            report_first_error(|| format!("{status}: {}", String::from_utf8_lossy(&answer)));
            Err(())
        }
        Err(e) => {
            report_first_error(|| format!("{e:#}"));
            // A refused or reset connection fails at once; do not spin on it.
            tokio::time::sleep(Duration::from_millis(10)).await;
            Err(())
        }
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<Value> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let authority = authority(&args.target.url)?;
    let namespace = args.target.namespace;
    ensure_namespace(&mut Conn::open(&authority).await?, &namespace).await?;
    let prefix = args
        .prefix
        .unwrap_or_else(|| format!("load-{}", std::process::id()));
    let template = Arc::new(PodTemplate::new());
    let body_bytes = template.render(&format!("{prefix}-0-0")).len();
    let path: Arc<str> = format!("/api/v1/namespaces/{namespace}/pods").into();
    let conns = open_all(&authority, args.clients).await?;

    let started = Instant::now();
    let until = started + Duration::from_secs_f64(args.duration);
    let mut tasks = Vec::with_capacity(args.clients);
    for (id, mut conn) in conns.into_iter().enumerate() {
        let (template, path, prefix) = (template.clone(), path.clone(), prefix.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut object_bytes = 0;
            let mut seq = 0u64;
            while Instant::now() < until {
                let body = template.render(&format!("{prefix}-{id}-{seq}"));
                seq += 1;
                let began = Instant::now();
                match create_pod(&mut conn, &path, body).await {
                    Ok(Some(len)) => {
                        latencies.push(began.elapsed());
                        object_bytes = len;
                    }
                    // A name that exists is not a create: an error here.
                    Ok(None) => {
                        report_first_error(|| format!("409: pod {prefix}-{id}-{} exists", seq - 1));
                        errors += 1;
                    }
                    Err(()) => errors += 1,
                }
            }
            (latencies, errors, object_bytes)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut object_bytes = 0;
    for task in tasks {
        let (l, e, b) = task.await.context("a client task")?;
        latencies.extend(l);
        errors += e;
        object_bytes = object_bytes.max(b);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ops = latencies.len();
    let (p50, p99, max) = spread(latencies);
    Ok(json!({
        "op": "create",
        "clients": args.clients,
        "ops": ops,
        "ops_per_sec": ops as f64 / elapsed.max(1e-9),
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": max,
        "errors": errors,
        "seconds": elapsed,
        "body_bytes": body_bytes,
        "object_bytes": object_bytes,
    }))
}

async fn fill(args: FillArgs) -> anyhow::Result<Value> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let authority = authority(&args.target.url)?;
    let namespace = args.target.namespace;
    ensure_namespace(&mut Conn::open(&authority).await?, &namespace).await?;
    let template = Arc::new(PodTemplate::new());
    let path: Arc<str> = format!("/api/v1/namespaces/{namespace}/pods").into();
    let conns = open_all(&authority, args.clients.min(args.count.max(1))).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (template, path, next) = (template.clone(), path.clone(), next.clone());
        let (prefix, count) = (args.prefix.clone(), args.count);
        tasks.push(tokio::spawn(async move {
            let (mut created, mut existing, mut errors) = (0usize, 0usize, 0usize);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let body = template.render(&format!("{prefix}-{i:06}"));
                match create_pod(&mut conn, &path, body).await {
                    Ok(Some(_)) => created += 1,
                    Ok(None) => existing += 1,
                    Err(()) => errors += 1,
                }
            }
            (created, existing, errors)
        }));
    }
    let (mut created, mut existing, mut errors) = (0, 0, 0);
    for task in tasks {
        let (c, x, e) = task.await.context("a fill task")?;
        created += c;
        existing += x;
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(json!({
        "op": "fill",
        "count": args.count,
        "clients": args.clients,
        "created": created,
        "existing": existing,
        "errors": errors,
        "seconds": elapsed,
        "ops_per_sec": created as f64 / elapsed.max(1e-9),
    }))
}

// ----- list -----------------------------------------------------------------------------------

/// What a list's body is parsed for: its items are counted, never built.
#[derive(Deserialize)]
struct ListBody {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<serde::de::IgnoredAny>,
}

#[derive(Deserialize, Default)]
struct ListMeta {
    #[serde(default, rename = "resourceVersion")]
    resource_version: Option<String>,
    #[serde(default, rename = "continue")]
    continue_token: Option<String>,
}

/// Percent-encodes a query value (a continue token is base64 and may end in `=`).
fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn list(args: ListArgs) -> anyhow::Result<Value> {
    if args.rounds == 0 || args.limit == 0 {
        bail!("--rounds and --limit must be at least 1");
    }
    let authority = authority(&args.target.url)?;
    let base = format!("/api/v1/namespaces/{}/pods", args.target.namespace);
    let mut conn = Conn::open(&authority).await?;
    let mut latencies = Vec::with_capacity(args.rounds);
    let (mut items, mut bytes, mut pages) = (0usize, 0usize, 0usize);
    // Round 0 warms up (the server's first list of a size allocates) and is not counted.
    for round in 0..=args.rounds {
        let mut elapsed = Duration::ZERO;
        let (mut round_items, mut round_bytes, mut round_pages) = (0usize, 0usize, 0usize);
        let mut token: Option<String> = None;
        loop {
            let path = match (args.mode, &token) {
                (Mode::Cache, _) => format!("{base}?resourceVersion=0"),
                (Mode::Consistent, _) => base.clone(),
                (Mode::Paged, None) => format!("{base}?limit={}", args.limit),
                (Mode::Paged, Some(t)) => {
                    format!("{base}?limit={}&continue={}", args.limit, query_value(t))
                }
            };
            let began = Instant::now();
            let (status, body) = conn.call(Method::GET, &path, Bytes::new()).await?;
            elapsed += began.elapsed();
            if status != StatusCode::OK {
                bail!("GET {path}: {status}: {}", String::from_utf8_lossy(&body));
            }
            let page: ListBody =
                serde_json::from_slice(&body).with_context(|| format!("the JSON of {path}"))?;
            round_items += page.items.len();
            round_bytes += body.len();
            round_pages += 1;
            token = page.metadata.continue_token.filter(|t| !t.is_empty());
            if !matches!(args.mode, Mode::Paged) || token.is_none() {
                break;
            }
        }
        if round > 0 {
            latencies.push(elapsed);
        }
        items = round_items;
        bytes = round_bytes;
        pages = round_pages;
    }
    let rounds = latencies.len();
    let min = latencies
        .iter()
        .min()
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    let (p50, p99, max) = spread(latencies);
    Ok(json!({
        "op": "list",
        "mode": args.mode.name(),
        "rounds": rounds,
        "items": items,
        "bytes": bytes,
        "pages": pages,
        "min_ms": min,
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": max,
    }))
}

// ----- watch ----------------------------------------------------------------------------------

/// What one watcher saw: (sent ns, received ns) per event, and its failures.
#[derive(Default)]
struct Seen {
    samples: Vec<(u64, u64)>,
    errors: usize,
}

const SENT: &[u8] = b"\"sent\":\"";

/// The `data.sent` value of an event line, found by a plain scan (the server writes compact
/// JSON, and no other field of these ConfigMaps holds that text).
fn sent_value(line: &[u8]) -> Option<u64> {
    let at = line.windows(SENT.len()).position(|w| w == SENT)? + SENT.len();
    let digits = &line[at..];
    let end = digits.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// Calls `each` on every complete line of `data`, joining a line split across chunks through
/// `partial`.
fn for_each_line(partial: &mut Vec<u8>, data: &[u8], mut each: impl FnMut(&[u8])) {
    let mut rest = data;
    while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
        let (line, tail) = rest.split_at(newline);
        if partial.is_empty() {
            each(line);
        } else {
            partial.extend_from_slice(line);
            each(partial.as_slice());
            partial.clear();
        }
        rest = &tail[1..];
    }
    partial.extend_from_slice(rest);
}

/// A line without a send time: an ERROR event (a 410, say) counts as an error; anything else
/// (a bookmark, another client's ConfigMap) is not this bench's.
fn other_line(line: &[u8], seen: &mut Seen) {
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let kind = serde_json::from_slice::<Value>(line)
        .ok()
        .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned));
    if matches!(kind.as_deref(), Some("ERROR") | None) {
        seen.errors += 1;
        report_first_error(|| format!("watch event: {}", String::from_utf8_lossy(line)));
    }
}

/// Where a watcher's stream comes from: a connection of its own, or a stream of a shared
/// HTTP/2 connection.
#[derive(Clone)]
enum Via {
    Own,
    Shared(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// An HTTP/2 connection without TLS (prior knowledge, which the API server's listener
/// detects), for watchers to share.
async fn open_h2(authority: &Arc<str>) -> anyhow::Result<Via> {
    let stream = TcpStream::connect(&**authority)
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    let (sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            // A thousand streams on one connection, as kube-apiserver allows (its default is 250 per
            // client; keel's server takes hyper's default of 200 unless told, so ask for what we use).
            .initial_max_send_streams(4096)
            .handshake(TokioIo::new(stream))
            .await
            .context("HTTP/2 handshake")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Via::Shared(sender))
}

async fn open_watch(
    authority: &Arc<str>,
    path: &str,
    slots: &Semaphore,
    via: Via,
) -> anyhow::Result<(Option<Conn>, Incoming)> {
    let _slot = slots.acquire().await.context("the connect semaphore")?;
    let (conn, response) = match via {
        Via::Own => {
            let mut conn = Conn::open(authority).await?;
            let response = conn.send(Method::GET, path, Bytes::new()).await?;
            (Some(conn), response)
        }
        Via::Shared(mut sender) => {
            sender
                .ready()
                .await
                .context("the shared connection closed")?;
            let mut request = Request::builder()
                .method(Method::GET)
                .uri(format!("http://{authority}{path}"))
                .header(header::ACCEPT, "application/json");
            if let Some(token) = BEARER.get().and_then(Option::as_deref) {
                request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
            let request = request
                .body(Full::new(Bytes::new()))
                .with_context(|| format!("building a request for {path}"))?;
            let response = sender
                .send_request(request)
                .await
                .with_context(|| format!("request {path}"))?;
            (None, response)
        }
    };
    let status = response.status();
    if status != StatusCode::OK {
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        bail!(
            "watch answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok((conn, response.into_body()))
}

/// One watcher: connects, reports that its headers arrived, then records a (sent, received)
/// pair per event until it has `expected` of them or is told to stop.
async fn watcher(
    authority: Arc<str>,
    path: Arc<str>,
    expected: usize,
    slots: Arc<Semaphore>,
    ready: mpsc::Sender<anyhow::Result<()>>,
    mut stop: watch::Receiver<bool>,
    via: Via,
) -> Seen {
    let (_conn, mut body) = match open_watch(&authority, &path, &slots, via).await {
        Ok(opened) => {
            let _ = ready.send(Ok(())).await;
            opened
        }
        Err(e) => {
            let _ = ready.send(Err(e)).await;
            return Seen::default();
        }
    };
    drop(ready);
    let mut seen = Seen {
        samples: Vec::with_capacity(expected),
        errors: 0,
    };
    let mut partial = Vec::new();
    while seen.samples.len() < expected {
        let frame = tokio::select! {
            biased;
            frame = body.frame() => frame,
            _ = stop.changed() => break,
        };
        // One clock read per chunk: every line in it arrived together.
        let received = now_ns();
        let data = match frame {
            None => break,
            Some(Err(e)) => {
                seen.errors += 1;
                report_first_error(|| format!("watch stream: {e}"));
                break;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
        };
        for_each_line(&mut partial, &data, |line| match sent_value(line) {
            Some(sent) => seen.samples.push((sent, received)),
            None => other_line(line, &mut seen),
        });
    }
    seen
}

async fn watch_fanout(args: WatchArgs) -> anyhow::Result<Value> {
    if args.watchers == 0 || args.events == 0 {
        bail!("--watchers and --events must be at least 1");
    }
    raise_nofile(args.watchers + 256);
    let authority = authority(&args.target.url)?;
    let namespace = args.target.namespace;
    let mut writer = Conn::open(&authority).await?;
    ensure_namespace(&mut writer, &namespace).await?;
    let collection = format!("/api/v1/namespaces/{namespace}/configmaps");

    // Watch from the revision of a list, so every watcher sees exactly the creates that follow.
    let (status, body) = writer.call(Method::GET, &collection, Bytes::new()).await?;
    if status != StatusCode::OK {
        bail!(
            "GET {collection}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let listed: ListBody = serde_json::from_slice(&body).context("the ConfigMap list's JSON")?;
    let revision = listed
        .metadata
        .resource_version
        .context("the ConfigMap list has no resourceVersion")?;
    let path: Arc<str> = format!("{collection}?watch=1&resourceVersion={revision}").into();

    let slots = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let (ready_tx, mut ready_rx) = mpsc::channel(args.watchers);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shared = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        shared.push(open_h2(&authority).await?);
    }
    let mut tasks = Vec::with_capacity(args.watchers);
    for n in 0..args.watchers {
        let via = if shared.is_empty() {
            Via::Own
        } else {
            shared[n % shared.len()].clone()
        };
        tasks.push(tokio::spawn(watcher(
            authority.clone(),
            path.clone(),
            args.events,
            slots.clone(),
            ready_tx.clone(),
            stop_rx.clone(),
            via,
        )));
    }
    drop(ready_tx);
    let connect_deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for connected in 0..args.watchers {
        match tokio::time::timeout_at(connect_deadline, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => return Err(e.context(format!("watcher {}", connected + 1))),
            Ok(None) => bail!("the watchers ended before all connected"),
            Err(_) => bail!(
                "only {connected} of {} watchers connected within 120 s",
                args.watchers
            ),
        }
    }

    let run = std::process::id();
    let gap = Duration::from_secs_f64(1.0 / args.rate.max(0.1));
    // (sent ns, acknowledged ns) per successful create.
    let mut acks: Vec<(u64, u64)> = Vec::with_capacity(args.events);
    let mut write_latencies = Vec::with_capacity(args.events);
    let mut write_errors = 0usize;
    let mut object_bytes = 0usize;
    let started = Instant::now();
    let mut next = Instant::now();
    for n in 0..args.events {
        tokio::time::sleep_until(next.into()).await;
        next += gap;
        let sent = now_ns();
        let began = Instant::now();
        let body = configmap(&format!("watch-{run}-{n}"), sent);
        match writer.call(Method::POST, &collection, body).await {
            Ok((StatusCode::CREATED, answer)) => {
                acks.push((sent, now_ns()));
                write_latencies.push(began.elapsed());
                object_bytes = answer.len();
            }
            Ok((status, answer)) => {
                write_errors += 1;
                report_first_error(|| format!("{status}: {}", String::from_utf8_lossy(&answer)));
            }
            Err(e) => {
                write_errors += 1;
                report_first_error(|| format!("{e:#}"));
            }
        }
    }
    let writing = started.elapsed();

    // Give the last events time to arrive, then stop the watchers still waiting.
    let grace = Duration::from_secs_f64(args.grace.max(0.0));
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        let _ = stop_tx.send(true);
    });
    let mut seen = Vec::with_capacity(tasks.len());
    for task in tasks {
        seen.push(task.await.context("a watcher task")?);
    }

    let acked: HashMap<u64, u64> = acks.iter().copied().collect();
    let total: usize = seen.iter().map(|s| s.samples.len()).sum();
    let mut from_send = Vec::with_capacity(total);
    let mut from_ack = Vec::with_capacity(total);
    let mut watch_errors = 0;
    for watcher in &seen {
        watch_errors += watcher.errors;
        for &(sent, received) in &watcher.samples {
            from_send.push(Duration::from_nanos(received.saturating_sub(sent)));
            if let Some(&ack) = acked.get(&sent) {
                // An event can beat the create's own answer; that counts as zero.
                from_ack.push(Duration::from_nanos(received.saturating_sub(ack)));
            }
        }
    }
    let delivered = from_send.len();
    let expected = acks.len() * args.watchers;
    let (p50, p99, max) = spread(from_send);
    let (ack_p50, ack_p99, ack_max) = spread(from_ack);
    let (write_p50, write_p99, _) = spread(write_latencies);
    Ok(json!({
        "op": "watch",
        "watchers": args.watchers,
        "connections": if args.connections == 0 { args.watchers } else { args.connections },
        "protocol": if args.connections == 0 { "HTTP/1.1" } else { "HTTP/2" },
        "events": args.events,
        "rate": args.rate,
        "written": acks.len(),
        "write_errors": write_errors,
        "write_per_sec": acks.len() as f64 / writing.as_secs_f64().max(1e-9),
        "write_p50_ms": write_p50,
        "write_p99_ms": write_p99,
        "delivered": delivered,
        "expected": expected,
        "missing": expected.saturating_sub(delivered),
        "errors": watch_errors,
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": max,
        "from_ack_p50_ms": ack_p50,
        "from_ack_p99_ms": ack_p99,
        "from_ack_max_ms": ack_max,
        "object_bytes": object_bytes,
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let token = match &args.command {
        Command::Create(a) => a.target.token.clone(),
        Command::Fill(a) => a.target.token.clone(),
        Command::List(a) => a.target.token.clone(),
        Command::Watch(a) => a.target.token.clone(),
    };
    let _ = BEARER.set(token);
    let output = match args.command {
        Command::Create(args) => create(args).await?,
        Command::Fill(args) => fill(args).await?,
        Command::List(args) => list(args).await?,
        Command::Watch(args) => watch_fanout(args).await?,
    };
    println!("{}", serde_json::to_string(&output)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let mut partial = Vec::new();
        let mut lines = Vec::new();
        let chunks: [&[u8]; 3] = [b"{\"a\":1}\n{\"b\"", b":2}", b"\n\n{\"c\":3}\n"];
        for chunk in chunks {
            for_each_line(&mut partial, chunk, |l| lines.push(l.to_vec()));
        }
        assert_eq!(
            lines,
            vec![
                b"{\"a\":1}".to_vec(),
                b"{\"b\":2}".to_vec(),
                Vec::new(),
                b"{\"c\":3}".to_vec()
            ]
        );
        assert!(partial.is_empty());
    }

    #[test]
    fn the_send_time_is_found_in_an_event() {
        let line = br#"{"object":{"apiVersion":"v1","data":{"sent":"1700000000123456789"},"kind":"ConfigMap"},"type":"ADDED"}"#;
        assert_eq!(sent_value(line), Some(1_700_000_000_123_456_789));
        assert_eq!(sent_value(br#"{"type":"BOOKMARK"}"#), None);
    }

    #[test]
    fn the_pod_template_is_about_a_kibibyte_and_valid_json() {
        let body = PodTemplate::new().render("load-1-2-3");
        let pod: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(pod["metadata"]["name"], "load-1-2-3");
        assert!((900..1400).contains(&body.len()), "{}", body.len());
    }

    #[test]
    fn continue_tokens_are_percent_encoded() {
        assert_eq!(query_value("eyJ2Ijo=="), "eyJ2Ijo%3D%3D");
    }
}
