//! The watch workload: watchers on one prefix, each a gRPC watch stream of its own, and a
//! writer putting under it at a steady rate; the latency from each put's acknowledgement (and
//! from its send) to each watcher's receipt of its event.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use keel_store::pb::etcdserverpb::kv_client::KvClient;
use keel_store::pb::etcdserverpb::watch_client::WatchClient;
use keel_store::pb::etcdserverpb::watch_request::RequestUnion;
use keel_store::pb::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest, WatchResponse};
use tonic::transport::Channel;

use crate::threads::{single_thread_runtime, LoadThreads, Share};
use crate::{
    channels, count_error_kind, figures, kv_channels, percentile, Args, Figures, Workload,
};

/// One watcher's receipts: each event's revision and the instant it arrived.
type Receipts = Vec<(i64, Instant)>;

/// Watchers on one prefix and a writer putting under it at a steady rate. The watchers run on
/// the load threads as the closed loops do (`--connections` to each endpoint, shared out),
/// each watcher a gRPC watch stream of its own on the endpoints in turn. Through `etcd-client` on tokio's work-stealing
/// runtime, with receipts kept under one lock, the generator spent ~6 µs of CPU on each event
/// it received: a put's thousand events took it milliseconds of the two CPUs to take in,
/// time the watch latency then counted against the system it measured.
pub(crate) fn watch(args: &Args) -> anyhow::Result<Figures> {
    let prefix = format!("/bench/watch/{}/", std::process::id()).into_bytes();
    let watchers = args.watchers;
    let share = Share::new(watchers, args.connections);
    // When the writer is done (or nothing will be written), how long the watchers still wait
    // for events in flight.
    let (stop, stopped) = tokio::sync::watch::channel(None::<Duration>);
    let (opening, watch_prefix) = (args.clone(), prefix.clone());
    let expected = args.watch_writes;
    let threads = LoadThreads::spawn(
        "watch",
        share,
        move |thread, runtime| {
            let (own, ids) = (share.connections(thread), share.items(thread));
            runtime.block_on(open_watches(&opening, thread, own, &ids, &watch_prefix))
        },
        move |_, runtime, streams| Ok(runtime.block_on(receive(streams, expected, stopped))),
    )?;
    // The writer connects before the clock starts, as the watchers have.
    let writer = single_thread_runtime().and_then(|runtime| {
        let routes = runtime.block_on(kv_channels(args, 1))?.concat();
        Ok((runtime, routes))
    });
    let prepared = threads.start();
    // Every watch was created before the first put, so every watcher can see every write.
    let started = Instant::now();
    let acked = match writer {
        Ok(_) if !prepared => Ok(Vec::new()),
        Ok((runtime, routes)) => runtime.block_on(write_steadily(args, routes, &prefix)),
        Err(e) => Err(e),
    };
    let elapsed = started.elapsed();
    // Events still on their way get a while; when nothing was written, none are.
    let grace = match &acked {
        Ok(acked) if !acked.is_empty() => IN_FLIGHT_WAIT,
        _ => Duration::ZERO,
    };
    let _ = stop.send(Some(grace));
    let mut received = Vec::with_capacity(watchers);
    let mut ended = BTreeMap::new();
    for (receipts, kinds) in threads.join()? {
        received.extend(receipts);
        for (why, streams) in kinds {
            count_error_kind(&mut ended, why, streams);
        }
    }
    let acked = acked?;
    let mut latencies = Vec::with_capacity(acked.len() * received.len());
    let mut from_sent = Vec::with_capacity(acked.len() * received.len());
    let mut missing = 0;
    for receipts in &received {
        let at: HashMap<i64, Instant> = receipts.iter().copied().collect();
        for (revision, sent_at, acked_at) in &acked {
            match at.get(revision) {
                // An event can beat the put's own response; that counts as zero.
                Some(at) => {
                    latencies.push(at.saturating_duration_since(*acked_at));
                    from_sent.push(at.saturating_duration_since(*sent_at));
                }
                None => missing += 1,
            }
        }
    }
    from_sent.sort_unstable();
    let mut f = figures(
        Workload::Watch,
        watchers,
        latencies,
        missing,
        ended,
        elapsed,
    );
    f.per_second = acked.len() as f64 / elapsed.as_secs_f64().max(1e-9);
    f.from_sent_p50_ms = Some(percentile(&from_sent, 0.50));
    f.from_sent_p99_ms = Some(percentile(&from_sent, 0.99));
    Ok(f)
}

/// The end of the range holding every key that starts with `prefix` (etcd's `--prefix`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: to the end of the keyspace.
    vec![0]
}

/// How long a watch may take to be created before the run fails.
const CREATE_WAIT: Duration = Duration::from_secs(10);

/// How long the watchers wait for the events of the writer's last puts after it is done.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(10);

/// Opens thread `thread`'s watchers' streams (`ids`) on `own` connections to each endpoint,
/// and waits until every watch is created. Over all threads the watchers take the endpoints in
/// turn, and on each endpoint a thread's watchers take its connections in turn.
async fn open_watches(
    args: &Args,
    thread: usize,
    own: usize,
    ids: &[usize],
    prefix: &[u8],
) -> anyhow::Result<Vec<tonic::Streaming<WatchResponse>>> {
    let endpoints = channels(args, own).await?;
    let mut streams = Vec::with_capacity(ids.len());
    for (slot, &w) in ids.iter().enumerate() {
        let channels = &endpoints[(thread + slot) % endpoints.len()];
        let connection = (slot / endpoints.len()) % channels.len();
        let mut client = WatchClient::new(channels[connection].clone());
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: prefix.to_vec(),
                range_end: prefix_end(prefix),
                ..Default::default()
            })),
        };
        // The request side stays open, as clientv3 keeps it (a member serves a half-closed
        // stream on, as etcd does, but a generator should not depend on that).
        let requests = futures::stream::iter([create]).chain(futures::stream::pending());
        let created = async {
            let mut stream = client
                .watch(requests)
                .await
                .map_err(|e| anyhow::anyhow!("{:?}: {}", e.code(), e.message()))
                .with_context(|| format!("watcher {w}"))?
                .into_inner();
            loop {
                match stream.message().await {
                    // etcd refuses a watch with `created` and `canceled` both set.
                    Ok(Some(r)) if r.canceled => {
                        bail!("watcher {w} was refused: {:?}", r.cancel_reason)
                    }
                    Ok(Some(r)) if r.created => return Ok(stream),
                    Ok(Some(_)) => continue,
                    Ok(None) => {
                        bail!("watcher {w}: the stream ended before the watch was created")
                    }
                    Err(e) => bail!(
                        "watcher {w} was not created: {:?}: {}",
                        e.code(),
                        e.message()
                    ),
                }
            }
        };
        let stream = tokio::time::timeout(CREATE_WAIT, created)
            .await
            .map_err(|_| anyhow::anyhow!("watcher {w} was not created within {CREATE_WAIT:?}"))??;
        streams.push(stream);
    }
    Ok(streams)
}

/// Takes in every stream's events until each has `expected` of them, or until the wait that
/// `stopped` gives has passed since it gave it: each watcher's receipts, in the order of
/// `streams`, and why streams ended before their events were in (each reason and how many
/// streams it ended).
async fn receive(
    streams: Vec<tonic::Streaming<WatchResponse>>,
    expected: usize,
    mut stopped: tokio::sync::watch::Receiver<Option<Duration>>,
) -> (Vec<Receipts>, BTreeMap<String, usize>) {
    let count = streams.len();
    let receipts: Rc<RefCell<Vec<Receipts>>> = Rc::new(RefCell::new(
        (0..count).map(|_| Vec::with_capacity(expected)).collect(),
    ));
    let ended: Rc<RefCell<BTreeMap<String, usize>>> = Rc::default();
    let local = tokio::task::LocalSet::new();
    let mut tasks = Vec::with_capacity(count);
    for (slot, mut stream) in streams.into_iter().enumerate() {
        let (receipts, ended) = (receipts.clone(), ended.clone());
        tasks.push(local.spawn_local(async move {
            let mut seen = 0;
            while seen < expected {
                let why = match stream.message().await {
                    Ok(Some(r)) if r.canceled => format!("cancelled: {}", r.cancel_reason),
                    Ok(Some(response)) => {
                        let now = Instant::now();
                        let mut receipts = receipts.borrow_mut();
                        for event in &response.events {
                            if let Some(kv) = &event.kv {
                                receipts[slot].push((kv.mod_revision, now));
                                seen += 1;
                            }
                        }
                        continue;
                    }
                    Ok(None) => "the stream ended".to_owned(),
                    Err(e) => format!("{:?}: {}", e.code(), e.message()),
                };
                count_error_kind(&mut ended.borrow_mut(), why, 1);
                return;
            }
        }));
    }
    local
        .run_until(async move {
            let all = async {
                for task in tasks {
                    let _ = task.await;
                }
            };
            let cut = async {
                let grace = match stopped.wait_for(Option::is_some).await {
                    Ok(grace) => grace.unwrap_or_default(),
                    // The sender is gone: nothing more will be written.
                    Err(_) => Duration::ZERO,
                };
                tokio::time::sleep(grace).await;
            };
            tokio::select! {
                () = all => {}
                () = cut => {}
            }
        })
        .await;
    (receipts.take(), ended.take())
}

/// Puts `--watch-writes` values under `prefix` at `--watch-rate` a second, to `routes` (one
/// stub per endpoint) in turn; each put's revision, when it was sent and when its answer came.
async fn write_steadily(
    args: &Args,
    mut routes: Vec<KvClient<Channel>>,
    prefix: &[u8],
) -> anyhow::Result<Vec<(i64, Instant, Instant)>> {
    let value = vec![b'v'; args.value_size];
    let gap = Duration::from_secs_f64(1.0 / args.watch_rate.max(0.1));
    let mut acked = Vec::with_capacity(args.watch_writes);
    let mut next = Instant::now();
    for n in 0..args.watch_writes {
        tokio::time::sleep_until(next.into()).await;
        next += gap;
        let mut key = prefix.to_vec();
        key.extend_from_slice(n.to_string().as_bytes());
        let request = PutRequest {
            key,
            value: value.clone(),
            ..Default::default()
        };
        let route = n % routes.len();
        let sent = Instant::now();
        let response = routes[route]
            .put(request)
            .await
            .map_err(|e| anyhow::anyhow!("{:?}: {}", e.code(), e.message()))
            .context("the watch workload's writer")?
            .into_inner();
        let revision = response.header.map_or(0, |h| h.revision);
        acked.push((revision, sent, Instant::now()));
    }
    Ok(acked)
}
