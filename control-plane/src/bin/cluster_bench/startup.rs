//! `pod-startup` and `cleanup`: Kubernetes' pod startup SLI, one pod at a time and in a burst.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::ValueEnum;
use futures::{stream::BoxStream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    api::{Api, DeleteParams, ListParams, PostParams},
    runtime::{watcher, WatchStreamExt},
    Client,
};
use serde_json::json;
use tokio::sync::mpsc;

use super::{ensure_namespace, merge, millis, summary, LABEL_KEY, LABEL_VALUE, SELECTOR};

/// Creates in flight during a burst.
const BURST_CONCURRENCY: usize = 16;
const WATCH_LIST_LIMIT: Duration = Duration::from_secs(30);
const ONE_POD_LIMIT: Duration = Duration::from_secs(60);
const BURST_LIMIT: Duration = Duration::from_secs(300);
const CLEANUP_LIMIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum StartupMode {
    /// One pod at a time: create, wait for Ready, then the next.
    Sequential,
    /// All pods as fast as the API takes them, then wait for all.
    Burst,
}

fn pod(name: &str, image: &str) -> anyhow::Result<Pod> {
    // No probe: Ready follows Running, so the figure is the platform's, not a probe period's.
    // The shell exits on SIGTERM (a PID 1 without a handler ignores it), so a deleted pod
    // stops at once and its one-second grace period lets the node confirm the deletion:
    // `cleanup` returns only once the nodes have really stopped the pods.
    let value = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {LABEL_KEY: LABEL_VALUE}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "sleep",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
            }],
        },
    });
    serde_json::from_value(value).context("the bench's pod")
}

fn running_and_ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .as_ref()
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A pod seen Running and Ready, when the watch event arrived, and where it runs.
struct Ready {
    name: String,
    at: Instant,
    node: Option<String>,
}

type PodEvents = BoxStream<'static, Result<watcher::Event<Pod>, watcher::Error>>;

/// Lists the bench's pods through a watch, then follows it in a task that reports each pod
/// the first time it is Running and Ready. Returns once the list is done, so that nothing the
/// caller creates afterwards can become Ready unseen.
async fn ready_watch(pods: &Api<Pod>) -> anyhow::Result<mpsc::UnboundedReceiver<Ready>> {
    let config = watcher::Config::default().labels(SELECTOR);
    let mut events: PodEvents = watcher(pods.clone(), config).default_backoff().boxed();
    tokio::time::timeout(WATCH_LIST_LIMIT, listed(&mut events))
        .await
        .with_context(|| format!("the pod watch did not list within {WATCH_LIST_LIMIT:?}"))??;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut seen = HashSet::new();
        while let Some(event) = events.next().await {
            // The SLI's end: the instant the event reaches the client.
            let at = Instant::now();
            let pod = match event {
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => pod,
                Ok(_) => continue,
                Err(error) => {
                    eprintln!("pod watch: {error} (retrying)");
                    continue;
                }
            };
            if !running_and_ready(&pod) {
                continue;
            }
            let Some(name) = pod.metadata.name.clone() else {
                continue;
            };
            if seen.insert(name.clone()) {
                let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
                if tx.send(Ready { name, at, node }).is_err() {
                    return; // nobody listens any more
                }
            }
        }
    });
    Ok(rx)
}

async fn listed(events: &mut PodEvents) -> anyhow::Result<()> {
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::InitDone) => return Ok(()),
            Ok(_) => {}
            // The backoff retries; a server that never answers runs into the caller's limit.
            Err(error) => eprintln!("pod watch: {error} (retrying)"),
        }
    }
    bail!("the pod watch ended before it had listed")
}

/// Receives Ready reports into `got` until every name in `want` is there, or `deadline`.
async fn await_ready(
    rx: &mut mpsc::UnboundedReceiver<Ready>,
    got: &mut HashMap<String, Ready>,
    want: &[String],
    deadline: tokio::time::Instant,
) -> anyhow::Result<()> {
    while want.iter().any(|name| !got.contains_key(name)) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ready)) => {
                got.insert(ready.name.clone(), ready);
            }
            Ok(None) => bail!("the pod watch stopped"),
            Err(_) => {
                let missing: Vec<&String> = want.iter().filter(|n| !got.contains_key(*n)).collect();
                bail!(
                    "{} pod(s) not Running and Ready in time, e.g. {:?}",
                    missing.len(),
                    missing.iter().take(5).collect::<Vec<_>>()
                );
            }
        }
    }
    Ok(())
}

/// What a pod that did not become Ready looks like, for the error message.
async fn describe(pods: &Api<Pod>, name: &str) -> String {
    match pods.get(name).await {
        Ok(pod) => {
            let status = pod.status.unwrap_or_default();
            format!(
                "{name}: node {:?}, phase {:?}, conditions {:?}, containers {:?}",
                pod.spec.and_then(|s| s.node_name),
                status.phase,
                status
                    .conditions
                    .unwrap_or_default()
                    .iter()
                    .map(|c| format!("{}={}", c.type_, c.status))
                    .collect::<Vec<_>>(),
                status
                    .container_statuses
                    .unwrap_or_default()
                    .iter()
                    .map(|c| format!("{:?}", c.state))
                    .collect::<Vec<_>>(),
            )
        }
        Err(error) => format!("{name}: {error}"),
    }
}

/// Creates `name` and returns the instant just before the call (the SLI's start).
async fn create_pod(pods: &Api<Pod>, name: &str, image: &str) -> anyhow::Result<Instant> {
    let pod = pod(name, image)?;
    let at = Instant::now();
    pods.create(&PostParams::default(), &pod)
        .await
        .with_context(|| format!("creating pod {name}"))?;
    Ok(at)
}

pub(super) async fn pod_startup(
    client: Client,
    count: usize,
    mode: StartupMode,
    namespace: &str,
    image: &str,
    keep: bool,
) -> anyhow::Result<serde_json::Value> {
    ensure_namespace(&client, namespace).await?;
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let mut rx = ready_watch(&pods).await?;
    // Names unique to this run: a pod of an earlier run still terminating cannot be mistaken
    // for one of ours.
    let prefix = match mode {
        StartupMode::Sequential => format!("seq-{}", std::process::id()),
        StartupMode::Burst => format!("burst-{}", std::process::id()),
    };
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    let mut created: HashMap<String, Instant> = HashMap::new();
    let mut got: HashMap<String, Ready> = HashMap::new();
    let started = Instant::now();
    match mode {
        StartupMode::Sequential => {
            for name in &names {
                let at = create_pod(&pods, name, image).await?;
                created.insert(name.clone(), at);
                let deadline = tokio::time::Instant::from_std(at + ONE_POD_LIMIT);
                if let Err(error) =
                    await_ready(&mut rx, &mut got, std::slice::from_ref(name), deadline).await
                {
                    let detail = describe(&pods, name).await;
                    bail!("{error} ({ONE_POD_LIMIT:?} after its creation): {detail}");
                }
            }
        }
        StartupMode::Burst => {
            let results: Vec<anyhow::Result<(String, Instant)>> = futures::stream::iter(&names)
                .map(|name| {
                    let pods = pods.clone();
                    async move { anyhow::Ok((name.clone(), create_pod(&pods, name, image).await?)) }
                })
                .buffer_unordered(BURST_CONCURRENCY)
                .collect()
                .await;
            for result in results {
                let (name, at) = result?;
                created.insert(name, at);
            }
            let deadline = tokio::time::Instant::from_std(started + BURST_LIMIT);
            if let Err(error) = await_ready(&mut rx, &mut got, &names, deadline).await {
                let first_missing = names.iter().find(|n| !got.contains_key(*n));
                let detail = match first_missing {
                    Some(name) => describe(&pods, name).await,
                    None => String::new(),
                };
                bail!(
                    "burst of {count}: {error} ({BURST_LIMIT:?} after the first create): {detail}"
                );
            }
        }
    }
    let mut latencies = Vec::with_capacity(count);
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    let mut last_ready = started;
    // In creation order, so the caller can plot latency by pod index.
    for name in &names {
        let (Some(ready), Some(at)) = (got.get(name), created.get(name)) else {
            bail!("pod {name}: no creation or Ready instant recorded");
        };
        latencies.push(millis(ready.at.saturating_duration_since(*at)));
        last_ready = last_ready.max(ready.at);
        *per_node
            .entry(ready.node.clone().unwrap_or_else(|| "?".into()))
            .or_default() += 1;
    }
    eprintln!(
        "{count} pods {mode:?}: all Ready after {:.2} s",
        (last_ready - started).as_secs_f64()
    );
    let result = merge(
        json!({
            "mode": format!("{mode:?}").to_lowercase(),
            "pods": count,
            "total_s": (last_ready - started).as_secs_f64(),
            "pods_per_node": per_node,
        }),
        summary(&latencies),
    );
    let result = merge(result, json!({ "latencies_ms": latencies }));
    if !keep {
        delete_pods(&pods).await?;
    }
    Ok(result)
}

/// Deletes the bench's pods (their grace period lets each node stop the pod and confirm) and
/// waits until none is left, so the next run starts on quiet nodes. Returns how many there were.
pub(super) async fn delete_pods(pods: &Api<Pod>) -> anyhow::Result<usize> {
    let selector = ListParams::default().labels(SELECTOR);
    let before = pods
        .list(&selector)
        .await
        .context("listing the bench's pods")?
        .items
        .len();
    if before == 0 {
        return Ok(0);
    }
    pods.delete_collection(&DeleteParams::default(), &selector)
        .await
        .context("deleting the bench's pods")?;
    let started = Instant::now();
    loop {
        let left = pods
            .list(&selector)
            .await
            .context("listing the bench's pods")?
            .items;
        if left.is_empty() {
            return Ok(before);
        }
        if started.elapsed() > CLEANUP_LIMIT {
            bail!(
                "{} of {before} deleted pods still present {CLEANUP_LIMIT:?} after the delete, e.g. {}",
                left.len(),
                left[0].metadata.name.as_deref().unwrap_or("?")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
