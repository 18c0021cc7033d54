//! `cargo xtask bench cluster`: pod startup latency and service propagation over a real keel
//! cluster — a `control-plane` member and node daemons, each in a network namespace of its own
//! on the lab's bridge (`keel_lab::cluster`) — at 1 and 3 nodes.
//!
//! The load comes from `keel-cluster-bench`, run in the lab's switch namespace as any API
//! client: pods one at a time, then a burst (left running while each node daemon's memory is
//! read), then Services one at a time, each timed until every node's datapath counts it. It
//! builds nothing: the release binaries must be in `target/release`. The report goes to
//! `bench-results/<date>/cluster.{md,json}` and `cluster-startup.svg`.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context};
use clap::Args;
use keel_lab::cluster::{ClusterLab, ClusterSpec, NODE_METRICS_PORT};
use serde_json::{json, Value};

use crate::workspace_root;

const NAMESPACE: &str = "cluster-bench";
const BINARIES: [&str; 4] = [
    "control-plane",
    "node-daemon",
    "keelctl",
    "keel-cluster-bench",
];
const SEQUENTIAL_P99_GOAL_MS: f64 = 500.0;
const BURST_P99_GOAL_MS: f64 = 2000.0;
const PROPAGATION_P99_GOAL_MS: f64 = 100.0;
const RSS_GOAL_MB: f64 = 40.0;

#[derive(Args, Clone)]
pub struct ClusterArgs {
    /// Pods of each startup run (one at a time, then a burst).
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Services created one at a time for the propagation measurement.
    #[arg(long, default_value_t = 50)]
    services: usize,
    /// Cluster sizes to measure, in nodes.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 3])]
    nodes: Vec<usize>,
}

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let bin = workspace_root().join("target/release");
    for name in BINARIES {
        if !bin.join(name).exists() {
            bail!(
                "target/release/{name} is missing: run `cargo build --release -p keel-control-plane \
                 -p keel-node-daemon -p keel-keelctl` first"
            );
        }
    }
    let mut runs = Vec::new();
    for &nodes in &args.nodes {
        super::check_stop()?;
        runs.push(measure(&bin, nodes, &args)?);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let results = json!({
        "pods": args.pods, "services": args.services, "cores": cores, "proxy_mode": "ebpf",
        "goals": {
            "sequential_p99_ms": SEQUENTIAL_P99_GOAL_MS, "burst_p99_ms": BURST_P99_GOAL_MS,
            "propagation_p99_ms": PROPAGATION_P99_GOAL_MS, "node_daemon_rss_mb": RSS_GOAL_MB,
        },
        "runs": runs,
    });
    let markdown = report(&args, &results);
    println!("\n{markdown}");
    let dir = super::results_dir()?;
    fs::write(dir.join("cluster.md"), &markdown)?;
    fs::write(
        dir.join("cluster.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    let series: Vec<(String, Vec<(f64, f64)>)> = results["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|run| {
            let points = run["sequential"]["latencies_ms"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, ms)| ((i + 1) as f64, ms.as_f64().unwrap_or(0.0)))
                .collect();
            (
                format!("one at a time, {} node(s), ms", run["nodes"]),
                points,
            )
        })
        .collect();
    // `lines_over`, not `lines`: the x axis is the pod's index, not a service count.
    super::plot::lines_over(
        &dir.join("cluster-startup.svg"),
        "Pod startup one at a time: latency by pod",
        "pod (creation order)",
        &series,
    )?;
    println!("results: {}", dir.join("cluster.md").display());
    Ok(())
}

/// One cluster of `nodes` nodes, every measurement on it; the lab is removed on return.
fn measure(bin: &Path, nodes: usize, args: &ClusterArgs) -> anyhow::Result<Value> {
    let dir = super::tempdir()?;
    let layout = keel_lab::oci::write_busybox_layout(&dir.path().join("busybox"))
        .context("writing the busybox image")?;
    let spec = ClusterSpec {
        members: 1,
        nodes,
        proxy_mode: "ebpf".into(),
        dir: dir.path().join("cluster"),
        bin_dir: bin.to_owned(),
        // Imported into every node before it starts: startup never includes a pull.
        image_layout: Some(layout),
        member_args: Vec::new(),
        node_args: Vec::new(),
    };
    println!("{nodes} node(s): starting the cluster");
    let lab = ClusterLab::start(&spec).context("starting the lab cluster")?;
    let load = Load {
        lab: &lab,
        program: bin.join("keel-cluster-bench"),
        kubeconfig: lab.admin_kubeconfig.display().to_string(),
    };
    let count = nodes.to_string();
    load.run(&["wait-nodes", "--count", &count], Duration::from_secs(240))?;
    let cpu_start = cpu_seconds(&lab)?;

    super::check_stop()?;
    println!("  pod startup, one at a time: {} pods", args.pods);
    let pods = args.pods.to_string();
    let pods: &str = &pods;
    let startup = move |mode: &'static str| {
        [
            "pod-startup",
            "--pods",
            pods,
            "--mode",
            mode,
            "--namespace",
            NAMESPACE,
            "--image",
            keel_lab::oci::BUSYBOX_IMAGE,
        ]
    };
    // Backstops only: keel-cluster-bench caps each pod at 60 s and its cleanup at 120 s,
    // and says which wait failed; these kill it only if it hangs outright.
    let sequential_budget = Duration::from_secs(180 + 61 * args.pods as u64);
    let sequential = load.run(&startup("sequential"), sequential_budget)?;

    super::check_stop()?;
    println!("  pod startup, burst of {}", args.pods);
    let cpu_before_burst = cpu_seconds(&lab)?;
    let mut burst_args = startup("burst").to_vec();
    burst_args.push("--keep");
    let burst = load.run(&burst_args, Duration::from_secs(600))?;
    let cpu_after_burst = cpu_seconds(&lab)?;
    // Read while the burst's pods still run: each daemon's memory with its share of N pods,
    // at once (what the burst left: threads, buffers) and once the daemons have been idle.
    let at_burst = memory(&lab)?;
    std::thread::sleep(SETTLE);
    let settled = memory(&lab)?;
    load.run(
        &["cleanup", "--namespace", NAMESPACE],
        Duration::from_secs(180),
    )?;

    super::check_stop()?;
    println!("  service propagation: {} services", args.services);
    let urls: Vec<String> = lab
        .nodes
        .iter()
        .map(|n| format!("http://{}:{NODE_METRICS_PORT}/metrics", n.addr))
        .collect();
    let services = args.services.to_string();
    // Twice: changes spaced beyond the nodes' --min-sync-interval (200 ms), each synced on its
    // own — the propagation itself; and back to back, where the nodes' rate limit folds them.
    let mut runs = Vec::new();
    for spacing in ["300", "0"] {
        let mut propagation_args = vec![
            "service-propagation",
            "--services",
            services.as_str(),
            "--namespace",
            NAMESPACE,
            "--spacing-ms",
            spacing,
        ];
        for url in &urls {
            propagation_args.extend(["--node-metrics", url.as_str()]);
        }
        runs.push(load.run(
            &propagation_args,
            Duration::from_secs(60 + 31 * args.services as u64),
        )?);
    }
    let back_to_back = runs.pop().unwrap_or_default();
    let propagation = runs.pop().unwrap_or_default();
    let cpu_end = cpu_seconds(&lab)?;

    let daemons: Vec<Value> = lab
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            json!({
                "node": node.name,
                "pods_at_burst": burst["pods_per_node"][&node.name].as_u64().unwrap_or(0),
                "rss_mb_at_burst": at_burst[i].rss_mb,
                "rss_anon_mb_at_burst": at_burst[i].anon_mb,
                "rss_file_mb_at_burst": at_burst[i].file_mb,
                "threads_at_burst": at_burst[i].threads,
                "rss_mb_settled": settled[i].rss_mb,
                "threads_settled": settled[i].threads,
                "cpu_s_burst": cpu_after_burst[i] - cpu_before_burst[i],
                "cpu_s_run": cpu_end[i] - cpu_start[i],
            })
        })
        .collect();
    Ok(json!({
        "nodes": nodes,
        "sequential": sequential,
        "burst": burst,
        "service_propagation": propagation,
        "service_propagation_back_to_back": back_to_back,
        "node_daemons": daemons,
    }))
}

/// keel-cluster-bench against one lab, from its switch namespace (where m0 and every node's
/// metrics are reachable).
struct Load<'a> {
    lab: &'a ClusterLab,
    program: PathBuf,
    kubeconfig: String,
}

impl Load<'_> {
    fn run(&self, args: &[&str], timeout: Duration) -> anyhow::Result<Value> {
        let mut full = vec!["--kubeconfig", self.kubeconfig.as_str()];
        full.extend_from_slice(args);
        let output = self
            .lab
            .run_on_switch_for(&self.program, &full, timeout)
            .context("running keel-cluster-bench")?;
        let text = String::from_utf8_lossy(&output.stdout);
        let what = args.join(" ");
        if !output.status.success() {
            bail!(
                "keel-cluster-bench {what} failed (or ran past {timeout:?}):\n{text}\n\
                 --- the cluster's logs ---\n{}",
                self.lab.logs()
            );
        }
        // stdout and stderr come back interleaved: the result is the last line that is a
        // JSON object.
        text.lines()
            .rev()
            .filter(|line| line.starts_with('{'))
            .find_map(|line| serde_json::from_str::<Value>(line).ok())
            .with_context(|| format!("keel-cluster-bench {what} printed no JSON result:\n{text}"))
    }
}

fn daemon_pids(lab: &ClusterLab) -> anyhow::Result<Vec<u32>> {
    lab.nodes
        .iter()
        .map(|node| {
            node.pid()
                .with_context(|| format!("node daemon {} is not running", node.name))
        })
        .collect()
}

/// How long after the burst the second memory reading is taken: past tokio's 10 s keep-alive
/// of idle blocking threads.
const SETTLE: Duration = Duration::from_secs(15);

/// A node daemon's memory, from `/proc/<pid>/status`.
struct Memory {
    /// `VmRSS`: what the goal is about.
    rss_mb: f64,
    /// `RssAnon` (heap, stacks) and `RssFile` (the binary's and libraries' touched pages).
    anon_mb: f64,
    file_mb: f64,
    threads: u64,
}

/// Each node daemon's memory.
fn memory(lab: &ClusterLab) -> anyhow::Result<Vec<Memory>> {
    daemon_pids(lab)?
        .into_iter()
        .map(|pid| -> anyhow::Result<Memory> {
            let path = format!("/proc/{pid}/status");
            let status = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
            let field = |name: &str| -> anyhow::Result<f64> {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                    .and_then(|value| value.split_whitespace().next())
                    .and_then(|value| value.parse().ok())
                    .with_context(|| format!("no {name} in {path}"))
            };
            Ok(Memory {
                rss_mb: field("VmRSS")? / 1024.0,
                anon_mb: field("RssAnon")? / 1024.0,
                file_mb: field("RssFile")? / 1024.0,
                threads: field("Threads")? as u64,
            })
        })
        .collect()
}

/// Each node daemon's CPU time so far (user + system), in seconds.
fn cpu_seconds(lab: &ClusterLab) -> anyhow::Result<Vec<f64>> {
    daemon_pids(lab)?
        .into_iter()
        .map(super::process_cpu_seconds)
        .collect()
}

fn num(value: &Value, key: &str) -> f64 {
    value[key].as_f64().unwrap_or(0.0)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "not met"
    }
}

fn report(args: &ClusterArgs, results: &Value) -> String {
    let mut text = format!(
        "# keel cluster: pod startup and service propagation\n\n\
         One control-plane member and {} node daemon(s) (proxy mode ebpf), each in a network \
         namespace of its own on one lab bridge, release build. {} cores shared by everything: \
         the member, the node daemons, their pods and the load generator.\n\n",
        args.nodes
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(" or "),
        results["cores"]
    );
    for run in results["runs"].as_array().into_iter().flatten() {
        let (sequential, burst, propagation) = (
            &run["sequential"],
            &run["burst"],
            &run["service_propagation"],
        );
        let daemons: Vec<&Value> = run["node_daemons"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        let largest = daemons
            .iter()
            .copied()
            .max_by(|a, b| num(a, "rss_mb_at_burst").total_cmp(&num(b, "rss_mb_at_burst")));
        let busiest = daemons
            .iter()
            .copied()
            .max_by(|a, b| num(a, "cpu_s_run").total_cmp(&num(b, "cpu_s_run")));
        text.push_str(&format!(
            "## {} node(s)\n\n| measure | result | goal | |\n|---|---:|---|---|\n",
            run["nodes"]
        ));
        let seq_p99 = num(sequential, "p99_ms");
        text.push_str(&format!(
            "| pod startup, one at a time ({} pods): p50 / p99 | {:.0} / {seq_p99:.0} ms | p99 < {SEQUENTIAL_P99_GOAL_MS:.0} ms | {} |\n",
            args.pods,
            num(sequential, "p50_ms"),
            verdict(seq_p99 < SEQUENTIAL_P99_GOAL_MS)
        ));
        let burst_p99 = num(burst, "p99_ms");
        text.push_str(&format!(
            "| pod startup, burst of {}: p50 / p99 / all Ready | {:.0} / {burst_p99:.0} ms / {:.2} s | p99 < {:.0} s (burst of 100) | {} |\n",
            args.pods,
            num(burst, "p50_ms"),
            num(burst, "total_s"),
            BURST_P99_GOAL_MS / 1000.0,
            verdict(burst_p99 < BURST_P99_GOAL_MS)
        ));
        let prop_p99 = num(propagation, "p99_ms");
        text.push_str(&format!(
            "| Service created → every node's datapath ({} services, 300 ms apart): p50 / p99 | {:.1} / {prop_p99:.1} ms | p99 < {PROPAGATION_P99_GOAL_MS:.0} ms | {} |\n",
            args.services,
            num(propagation, "p50_ms"),
            verdict(prop_p99 < PROPAGATION_P99_GOAL_MS)
        ));
        let back_to_back = &run["service_propagation_back_to_back"];
        text.push_str(&format!(
            "| the same, back to back (the nodes' --min-sync-interval folds them): p50 / p99 | {:.1} / {:.1} ms | — | |\n",
            num(back_to_back, "p50_ms"),
            num(back_to_back, "p99_ms"),
        ));
        if let Some(d) = largest {
            let rss = num(d, "rss_mb_at_burst");
            text.push_str(&format!(
                "| node daemon RSS, largest ({}, running {} of the burst's pods) | {rss:.1} MB | < {RSS_GOAL_MB:.0} MB at 100 pods | {} |\n",
                d["node"].as_str().unwrap_or("?"),
                d["pods_at_burst"],
                verdict(rss < RSS_GOAL_MB)
            ));
            if d.get("rss_anon_mb_at_burst").is_some() {
                text.push_str(&format!(
                    "| the same: anonymous / file-backed, threads; {} s later: RSS, threads | {:.1} / {:.1} MB, {}; {:.1} MB, {} | — | |\n",
                    SETTLE.as_secs(),
                    num(d, "rss_anon_mb_at_burst"),
                    num(d, "rss_file_mb_at_burst"),
                    d["threads_at_burst"],
                    num(d, "rss_mb_settled"),
                    d["threads_settled"],
                ));
            }
        }
        if let Some(d) = busiest {
            text.push_str(&format!(
                "| node daemon CPU, busiest ({}): burst / whole run | {:.2} s / {:.2} s | — | |\n",
                d["node"].as_str().unwrap_or("?"),
                num(d, "cpu_s_burst"),
                num(d, "cpu_s_run")
            ));
        }
        text.push('\n');
    }
    text.push_str(
        "## How it was measured\n\n\
         - **Pod startup** is Kubernetes' pod startup SLI: from the pod's creation (the client's \
         instant just before its create call) to the first watch event showing it Running with \
         its Ready condition True. The busybox image was imported into every node before the \
         node started, so no pull is included; the pod has no probe, so Ready follows Running. \
         The watch has listed before the first create, and each instant is taken when its event \
         reaches the client.\n\
         - **One at a time**: each pod is created once the previous one is Ready. **Burst**: all \
         pods created as fast as the API takes them (16 creates in flight), then awaited; \
         \"all Ready\" runs from the first create to the last Ready. Pods are deleted between \
         runs, and a run starts only once the nodes have stopped the previous one's.\n\
         - **Service propagation**: Services (ClusterIP allocated by the API, a selector that \
         matches no pod) created one at a time; each timed from its create call until every \
         node's `keel_service_ports` gauge (`/metrics`, polled every 5 ms) counts it. The \
         polling adds up to ~5 ms. First with 300 ms between one service's arrival and the \
         next create (longer than the nodes' `--min-sync-interval`, 200 ms, so each change is \
         synced at once: the propagation itself), then back to back, where the node's sync \
         limiter — kube-proxy's `--min-sync-period` — folds changes that come faster.\n\
         - **Node daemon RSS**: `VmRSS` of each node daemon while the burst's pods still run \
         (with several nodes each holds its share of them). **CPU**: the daemon's user + system \
         time (`/proc/<pid>/stat`) over the burst and over the whole run.\n\n\
         Every raw figure, each pod's and each service's latency included, is in cluster.json; \
         cluster-startup.svg plots the one-at-a-time latencies by pod.\n",
    );
    text
}
