//! `keel-scheduler-perf`: kube-scheduler's scheduler_perf workloads against keel's scheduler,
//! in two layers.
//!
//! - `in-process`: the scheduler's core against its in-memory cache, each decision confirmed at
//!   once: pure decision speed.
//! - `end-to-end`: through a running `control-plane` (API server, raft store, the in-process
//!   scheduler): nodes and pods created through the API, bindings persisted, each pod's
//!   binding observed through a watch.
//!
//! Both print one JSON object on stdout; `cargo xtask bench scheduler` runs them and writes
//! the report. Throughput is scheduler_perf's `SchedulingThroughput`: measured pods divided
//! by the time from the first measured pod's arrival to the last one's binding.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use keel_control_plane::scrape::{self, Target};
use keel_scheduler::config::{PluginEnv, SchedulerConfig};
use keel_scheduler::core::{Core, Outcome};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Pods requesting 100m CPU and 500Mi memory on plain nodes.
    SchedulingBasic,
    /// Every pod refuses a node that holds another pod of its kind (hostname anti-affinity).
    SchedulingPodAntiAffinity,
    /// Every pod requires nodes labelled zone1 (all are).
    SchedulingNodeAffinity,
    /// Pods spread over three zones with maxSkew 1 (DoNotSchedule).
    TopologySpreading,
    /// Basic pods while 200 pods that fit nowhere wait, some deleted and recreated as the
    /// measured pods arrive (each churn event moves the unschedulable pool back).
    Unschedulable,
}

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    layer: Layer,
}

#[derive(Subcommand)]
enum Layer {
    InProcess {
        #[arg(long, value_enum)]
        workload: Workload,
        #[arg(long, default_value_t = 5000)]
        nodes: usize,
        #[arg(long, default_value_t = 1000)]
        init_pods: usize,
        #[arg(long, default_value_t = 10000)]
        pods: usize,
    },
    EndToEnd {
        #[arg(long, value_enum)]
        workload: Workload,
        /// The API server's plain-HTTP loopback listener (`--insecure-listen-api`).
        #[arg(long)]
        api: String,
        #[arg(long, default_value_t = 5000)]
        nodes: usize,
        #[arg(long, default_value_t = 1000)]
        init_pods: usize,
        #[arg(long, default_value_t = 10000)]
        pods: usize,
        /// Concurrent creators: 30 is scheduler_perf's (kube's test/utils `CreatePod`
        /// creates with `workqueue.ParallelizeUntil(ctx, 30, ...)`).
        #[arg(long, default_value_t = 30)]
        clients: usize,
        /// The member's `/metrics` (`--metrics-addr`): read before and after the measured
        /// pods for the scheduler's own attempt durations, as scheduler_perf reads them.
        #[arg(long)]
        metrics: Option<String>,
    },
}

const ZONES: [&str; 3] = ["moon-1", "moon-2", "moon-3"];

fn node_json(i: usize) -> Value {
    let name = format!("node-{i}");
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": ZONES[i % ZONES.len()],
            "zone": "zone1",
        }},
        "status": {
            "capacity": {"pods": "110", "cpu": "4", "memory": "32Gi"},
            "allocatable": {"pods": "110", "cpu": "4", "memory": "32Gi"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    })
}

/// The pod of `workload` named `name` (scheduler_perf's templates, in keel's words).
fn pod_json(workload: Workload, name: &str, unschedulable: bool) -> Value {
    let cpu = if unschedulable { "9" } else { "100m" };
    let mut spec = json!({
        "containers": [{
            "name": "pause",
            "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": cpu, "memory": "500Mi"}},
        }],
    });
    let mut labels = json!({"app": "perf"});
    match workload {
        Workload::SchedulingBasic | Workload::Unschedulable => {}
        Workload::SchedulingPodAntiAffinity => {
            labels = json!({"color": "green"});
            spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {"color": "green"}},
                "topologyKey": "kubernetes.io/hostname",
            }]}});
        }
        Workload::SchedulingNodeAffinity => {
            spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["zone1", "zone2"]}]}],
            }}});
        }
        Workload::TopologySpreading => {
            spec["topologySpreadConstraints"] = json!([{
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "perf"}},
            }]);
        }
    }
    if unschedulable {
        labels = json!({"app": "too-big"});
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": spec,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(
    workload: Workload,
    layer: &str,
    pods: usize,
    elapsed: Duration,
    mut latencies: Vec<f64>,
) -> Value {
    latencies.sort_by(f64::total_cmp);
    json!({
        "workload": format!("{workload:?}"),
        "layer": layer,
        "pods": pods,
        "seconds": elapsed.as_secs_f64(),
        "pods_per_second": pods as f64 / elapsed.as_secs_f64().max(1e-9),
        "latency_ms_p50": percentile(&latencies, 50.0),
        "latency_ms_p99": percentile(&latencies, 99.0),
    })
}

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> anyhow::Result<T> {
    serde_json::from_value(value).context("a workload object")
}

/// The in-process layer: every pod's latency is its attempt (pop to decision).
fn in_process(
    workload: Workload,
    nodes: usize,
    init_pods: usize,
    pods: usize,
) -> anyhow::Result<Value> {
    let config = SchedulerConfig::default_config(&PluginEnv::default());
    let mut core = Core::new(config, None, 7);
    let now = Instant::now();
    for i in 0..nodes {
        core.upsert_node(typed::<Node>(node_json(i))?, now);
    }
    // The initial pods are scheduled first, unmeasured, as scheduler_perf's createPods step.
    let init_unschedulable = workload == Workload::Unschedulable;
    for i in 0..init_pods {
        core.upsert_pod(
            typed(pod_json(workload, &format!("init-{i}"), init_unschedulable))?,
            now,
        );
    }
    drain(&mut core, None, None)?;
    // Decoding the pods is the watch's work, not the scheduler's: done before the clock starts.
    let measured: Vec<Pod> = (0..pods)
        .map(|i| typed(pod_json(workload, &format!("pod-{i}"), false)))
        .collect::<anyhow::Result<_>>()?;
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(pods);
    for pod in measured {
        core.upsert_pod(pod, started);
    }
    let churn = init_unschedulable.then_some(Churn {
        workload,
        pending: init_pods,
        round: 0,
    });
    let scheduled = drain(&mut core, Some(&mut latencies), churn)?;
    let elapsed = started.elapsed();
    if scheduled != pods {
        bail!("{scheduled} of {pods} measured pods were scheduled");
    }
    Ok(summary(workload, "in-process", pods, elapsed, latencies))
}

/// Pods that fit nowhere, deleted and recreated one by one as the measured pods are placed:
/// every churn event moves the unschedulable pool back to active, and the pods fail again,
/// costing cycles (scheduler_perf's Unschedulable workload).
struct Churn {
    workload: Workload,
    /// How many `init-N` pods wait unschedulable.
    pending: usize,
    round: usize,
}

/// Schedules until the queue has nothing ready, confirming each decision as the watch would;
/// records each placed pod's attempt in `latencies` when given, and churns every 100
/// placements when asked.
fn drain(
    core: &mut Core,
    mut latencies: Option<&mut Vec<f64>>,
    mut churn: Option<Churn>,
) -> anyhow::Result<usize> {
    let mut scheduled = 0;
    loop {
        let attempt = Instant::now();
        let Some(outcome) = core.schedule_next(Instant::now()) else {
            return Ok(scheduled);
        };
        let Outcome::Assumed { pod, node, .. } = outcome else {
            continue;
        };
        // The queue let go of the pod when it was assumed: this takes it without a copy.
        let mut bound = std::sync::Arc::unwrap_or_clone(pod.pod);
        bound.spec.get_or_insert_default().node_name = Some(node);
        core.upsert_pod(bound, Instant::now());
        scheduled += 1;
        if let Some(latencies) = latencies.as_deref_mut() {
            latencies.push(attempt.elapsed().as_secs_f64() * 1000.0);
        }
        if let Some(churn) = churn
            .as_mut()
            .filter(|c| c.pending > 0 && scheduled % 100 == 0)
        {
            let name = format!("init-{}", churn.round % churn.pending);
            churn.round += 1;
            core.delete_pod(&format!("default/{name}"), Instant::now());
            core.upsert_pod(
                typed(pod_json(churn.workload, &name, true))?,
                Instant::now(),
            );
        }
    }
}

/// How many of each object an end-to-end run creates, and with how many clients.
struct Shape {
    nodes: usize,
    init_pods: usize,
    pods: usize,
    clients: usize,
}

/// The series of kube-scheduler's attempt duration for placed pods.
const ATTEMPT_DURATION: &str = "scheduler_scheduling_attempt_duration_seconds";
const SCHEDULED: &str = "result=\"scheduled\"";

/// The end-to-end layer, against a running control-plane with its scheduler.
async fn end_to_end(
    workload: Workload,
    api: &str,
    shape: Shape,
    metrics: Option<&Target>,
) -> anyhow::Result<Value> {
    let Shape {
        nodes,
        init_pods,
        pods,
        clients,
    } = shape;
    let config = kube::Config::new(api.parse().context("--api is a URL")?);
    let client = kube::Client::try_from(config)?;
    let node_api: kube::Api<Node> = kube::Api::all(client.clone());
    let pod_api: kube::Api<Pod> = kube::Api::namespaced(client.clone(), "default");
    let pp = kube::api::PostParams::default();
    // Nodes, then the initial pods (scheduled, unmeasured).
    futures::stream::iter(0..nodes)
        .map(|i| {
            let node_api = node_api.clone();
            let pp = pp.clone();
            async move {
                node_api
                    .create(&pp, &typed::<Node>(node_json(i))?)
                    .await
                    .context("creating a node")
            }
        })
        .buffer_unordered(clients)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    let init_unschedulable = workload == Workload::Unschedulable;
    create_pods(
        &pod_api,
        workload,
        "init",
        init_pods,
        init_unschedulable,
        clients,
        None,
    )
    .await?;
    if !init_unschedulable {
        wait_bound(&pod_api, "init-", init_pods, Duration::from_secs(300)).await?;
    }

    // The measured pods: a watch sees each binding; latency is create-returned → bound-seen.
    let bound_at: Arc<tokio::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch_config = kube::runtime::watcher::Config::default();
    let mut stream = kube::runtime::watcher::watcher(pod_api.clone(), watch_config).boxed();
    // Let the watch list before the first create.
    while let Some(event) = stream.next().await {
        if matches!(event, Ok(kube::runtime::watcher::Event::InitDone)) {
            break;
        }
    }
    let seen = bound_at.clone();
    let total = pods;
    let watch = tokio::spawn(async move {
        while let Some(event) = stream.next().await {
            if let Ok(kube::runtime::watcher::Event::Apply(pod)) = event {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let bound = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_ref())
                    .is_some();
                if bound && name.starts_with("pod-") {
                    let mut seen = seen.lock().await;
                    seen.entry(name).or_insert_with(Instant::now);
                    if seen.len() >= total {
                        return;
                    }
                }
            }
        }
    });
    let created_at: Arc<tokio::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let attempts_before = match metrics {
        Some(target) => scheduled_attempts(target).await?,
        None => Vec::new(),
    };
    let started = Instant::now();
    create_pods(
        &pod_api,
        workload,
        "pod",
        pods,
        false,
        clients,
        Some(created_at.clone()),
    )
    .await?;
    if tokio::time::timeout(Duration::from_secs(600), watch)
        .await
        .is_err()
    {
        bail!("not every measured pod was bound within 10 minutes");
    }
    let attempts = match metrics {
        Some(target) => Some(attempts_since(target, &attempts_before, pods).await?),
        None => None,
    };
    let seen = bound_at.lock().await;
    let last = seen.values().max().copied().unwrap_or(started);
    let created = created_at.lock().await;
    let latencies: Vec<f64> = seen
        .iter()
        .filter_map(|(name, at)| {
            let created = created.get(name)?;
            Some(at.saturating_duration_since(*created).as_secs_f64() * 1000.0)
        })
        .collect();
    let mut result = summary(workload, "end-to-end", pods, last - started, latencies);
    if let Some(attempts) = attempts {
        let ms = |q: f64| scrape::quantile(&attempts, q).map(|seconds| seconds * 1000.0);
        result["attempt_ms_p50"] = json!(ms(0.5));
        result["attempt_ms_p99"] = json!(ms(0.99));
        result["attempts"] = json!(attempts.last().map_or(0.0, |(_, count)| *count));
    }
    Ok(result)
}

/// The buckets of the attempt durations of placed pods, as `target` shows them now.
async fn scheduled_attempts(target: &Target) -> anyhow::Result<Vec<(f64, f64)>> {
    Ok(scrape::buckets(
        &target.fetch().await?,
        ATTEMPT_DURATION,
        &[SCHEDULED],
    ))
}

/// The attempts for placed pods recorded since `before`. The scheduler records one when its
/// binding's answer reaches it, which can be after the bench's watch saw the pod bound: the
/// page is read again until it holds all `pods` (or for two seconds).
async fn attempts_since(
    target: &Target,
    before: &[(f64, f64)],
    pods: usize,
) -> anyhow::Result<Vec<(f64, f64)>> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let after = scheduled_attempts(target).await?;
        if after.is_empty() {
            bail!(
                "{}: no {ATTEMPT_DURATION} series for placed pods",
                target.url
            );
        }
        let between = scrape::delta(before, &after);
        let recorded = between.last().map_or(0.0, |(_, count)| *count);
        if recorded >= pods as f64 || Instant::now() > deadline {
            return Ok(between);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_pods(
    pods: &kube::Api<Pod>,
    workload: Workload,
    prefix: &str,
    count: usize,
    unschedulable: bool,
    clients: usize,
    created_at: Option<Arc<tokio::sync::Mutex<HashMap<String, Instant>>>>,
) -> anyhow::Result<()> {
    let pp = kube::api::PostParams::default();
    futures::stream::iter(0..count)
        .map(|i| {
            let pods = pods.clone();
            let pp = pp.clone();
            let created_at = created_at.clone();
            async move {
                let name = format!("{prefix}-{i}");
                let pod: Pod = typed(pod_json(workload, &name, unschedulable))?;
                pods.create(&pp, &pod)
                    .await
                    .with_context(|| format!("creating {name}"))?;
                if let Some(created_at) = created_at {
                    created_at.lock().await.insert(name, Instant::now());
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(clients)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

async fn wait_bound(
    pods: &kube::Api<Pod>,
    prefix: &str,
    count: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let list = pods.list(&kube::api::ListParams::default()).await?;
        let bound = list
            .items
            .iter()
            .filter(|p| {
                p.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
            .count();
        if bound >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{bound} of {count} initial pods bound after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Anti-affinity pods each need a node of their own: scheduler_perf measures 1,000 of them
/// beside 1,000 initial ones on 5,000 nodes; more than the free nodes could never all fit.
fn measured(workload: Workload, nodes: usize, init_pods: usize, pods: usize) -> usize {
    match workload {
        Workload::SchedulingPodAntiAffinity => pods.min(1000).min(nodes.saturating_sub(init_pods)),
        _ => pods,
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let result = match cli.layer {
        Layer::InProcess {
            workload,
            nodes,
            init_pods,
            pods,
        } => in_process(
            workload,
            nodes,
            init_pods,
            measured(workload, nodes, init_pods, pods),
        )?,
        Layer::EndToEnd {
            workload,
            api,
            nodes,
            init_pods,
            pods,
            clients,
            metrics,
        } => {
            let metrics = metrics
                .as_deref()
                .map(|url| Target::parse(url).with_context(|| format!("--metrics {url}")))
                .transpose()?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let pods = measured(workload, nodes, init_pods, pods);
            let shape = Shape {
                nodes,
                init_pods,
                pods,
                clients,
            };
            runtime.block_on(end_to_end(workload, &api, shape, metrics.as_ref()))?
        }
    };
    println!("{result}");
    Ok(())
}
