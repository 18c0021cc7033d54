//! `keel-cluster-bench`: load and measurements against a running keel cluster, through the
//! Kubernetes API as any client sees it. `cargo xtask bench cluster` runs it from the lab's
//! switch namespace and writes the report.
//!
//! - `wait-nodes --count N`: until N nodes are Ready and schedulable.
//! - `pod-startup --pods N --mode sequential|burst`: Kubernetes' pod startup SLI — from the
//!   pod's creation (the client's instant just before the create call) to the first watch
//!   event showing it Running with its Ready condition True, the image already on the node.
//!   A watch is listed before anything is created, and each instant is taken when the event
//!   arrives, so polling adds nothing to the figure.
//! - `cleanup`: deletes the bench's pods and waits until the nodes have stopped them.
//! - `service-propagation --services N --node-metrics URL...`: from a Service's create call
//!   until every node's `/metrics` shows one more service port programmed in its kernel.
//!
//! Each prints one JSON object on stdout; progress and errors go to stderr, and an error
//! (every wait is capped and says what did not happen) exits 1.

use std::{
    path::Path,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::{
    api::{Api, ListParams, PostParams},
    Client,
};
use serde_json::{json, Value};

use propagation::service_propagation;
use startup::{delete_pods, pod_startup, StartupMode};

// The two measurements, each a module of its own.
mod propagation;
mod startup;

/// Every object the bench makes carries this label, so cleanup and the watch see only those.
const LABEL_KEY: &str = "keel-bench";
const LABEL_VALUE: &str = "cluster";
const SELECTOR: &str = "keel-bench=cluster";
const NODES_LIMIT: Duration = Duration::from_secs(180);

#[derive(Parser)]
#[command(name = "keel-cluster-bench")]
struct Cli {
    /// The kubeconfig to connect with (its current context).
    #[arg(long, global = true, default_value = "")]
    kubeconfig: String,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    WaitNodes {
        #[arg(long)]
        count: usize,
    },
    PodStartup {
        #[arg(long, default_value_t = 100)]
        pods: usize,
        #[arg(long, value_enum)]
        mode: StartupMode,
        #[arg(long, default_value = "cluster-bench")]
        namespace: String,
        /// The image, already imported on every node (keel_lab::oci::BUSYBOX_IMAGE; this crate
        /// does not depend on the lab, hence the literal).
        #[arg(long, default_value = "keel.local/busybox:latest")]
        image: String,
        /// Leave the pods running (the caller measures the nodes with them, then `cleanup`).
        #[arg(long)]
        keep: bool,
    },
    Cleanup {
        #[arg(long, default_value = "cluster-bench")]
        namespace: String,
    },
    ServicePropagation {
        #[arg(long, default_value_t = 50)]
        services: usize,
        #[arg(long, default_value = "cluster-bench")]
        namespace: String,
        /// A node's metrics URL (`http://10.244.0.5:10249/metrics`); once per node.
        #[arg(long = "node-metrics", required = true)]
        node_metrics: Vec<String>,
        /// Wait this long after each service has landed before creating the next: longer
        /// than the nodes' --min-sync-interval, every change is synced on its own.
        #[arg(long, default_value_t = 0)]
        spacing_ms: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")
        .and_then(|runtime| runtime.block_on(run(cli)));
    match result {
        Ok(value) => {
            println!("{value}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("keel-cluster-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<Value> {
    if cli.kubeconfig.is_empty() {
        bail!("--kubeconfig FILE is required");
    }
    let client = client(Path::new(&cli.kubeconfig)).await?;
    match cli.mode {
        Mode::WaitNodes { count } => wait_nodes(client, count).await,
        Mode::PodStartup {
            pods,
            mode,
            namespace,
            image,
            keep,
        } => pod_startup(client, pods, mode, &namespace, &image, keep).await,
        Mode::Cleanup { namespace } => {
            let deleted = delete_pods(&Api::namespaced(client, &namespace)).await?;
            Ok(json!({ "deleted": deleted }))
        }
        Mode::ServicePropagation {
            services,
            namespace,
            node_metrics,
            spacing_ms,
        } => {
            let spacing = Duration::from_millis(spacing_ms);
            service_propagation(client, services, &namespace, &node_metrics, spacing).await
        }
    }
}

/// A kube-rs client from a kubeconfig file (as node-daemon/src/cluster/mod.rs builds its own).
async fn client(kubeconfig: &Path) -> anyhow::Result<Client> {
    let text = std::fs::read_to_string(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let parsed = kube::config::Kubeconfig::from_yaml(&text)
        .with_context(|| format!("{} is not a kubeconfig", kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(parsed, &kube::config::KubeConfigOptions::default())
            .await
            .with_context(|| format!("the client configuration in {}", kubeconfig.display()))?;
    Client::try_from(config).context("building the API client")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50/p90/p99/max of `latencies` (ms), in the output's field names.
fn summary(latencies: &[f64]) -> Value {
    let mut sorted = latencies.to_vec();
    sorted.sort_by(f64::total_cmp);
    json!({
        "p50_ms": percentile(&sorted, 50.0),
        "p90_ms": percentile(&sorted, 90.0),
        "p99_ms": percentile(&sorted, 99.0),
        "max_ms": sorted.last().copied().unwrap_or(0.0),
    })
}

fn merge(mut into: Value, more: Value) -> Value {
    if let (Some(into), Value::Object(more)) = (into.as_object_mut(), more) {
        into.extend(more);
    }
    into
}

// ---------------------------------------------------------------------------------------------
// Nodes

fn schedulable_and_ready(node: &Node) -> bool {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let spec = node.spec.as_ref();
    let cordoned = spec.and_then(|s| s.unschedulable).unwrap_or(false);
    // The node lifecycle controller's not-ready taints linger a moment after Ready turns True.
    let tainted = spec.and_then(|s| s.taints.as_ref()).is_some_and(|t| {
        t.iter()
            .any(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
    });
    let has_cidr = spec.and_then(|s| s.pod_cidr.as_ref()).is_some();
    ready && !cordoned && !tainted && has_cidr
}

async fn wait_nodes(client: Client, count: usize) -> anyhow::Result<Value> {
    let nodes: Api<Node> = Api::all(client);
    let started = Instant::now();
    loop {
        let last = match nodes.list(&ListParams::default()).await {
            Ok(list) => {
                let ready = list
                    .items
                    .iter()
                    .filter(|n| schedulable_and_ready(n))
                    .count();
                if ready >= count {
                    return Ok(
                        json!({ "nodes": ready, "waited_s": started.elapsed().as_secs_f64() }),
                    );
                }
                format!(
                    "{ready} of {} listed nodes Ready and schedulable",
                    list.items.len()
                )
            }
            Err(error) => format!("listing nodes: {error}"),
        };
        if started.elapsed() > NODES_LIMIT {
            bail!("{count} nodes were not Ready and schedulable within {NODES_LIMIT:?} ({last})");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn ensure_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )?;
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(error).with_context(|| format!("creating namespace {name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 50.0), 50.0);
        assert_eq!(percentile(&sorted, 99.0), 99.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
    }
}
