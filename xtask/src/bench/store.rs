//! `cargo xtask bench store`: keel's store beside etcd 3.4 (Debian's `etcd`), same member
//! count, data on the same disk, fsync on for both, driven by the same load generator
//! (`keel-store-load`, which speaks etcd's gRPC API through the `etcd-client` crate). For each
//! member count the two systems run one after the other, alternating, each on a fresh data
//! directory: writes/s and p50/p99 at each client count, linearizable reads/s, and watch
//! fan-out latency (write acknowledged → event received). The report goes to
//! `bench-results/<date>/store.{md,json}` and `store-writes.svg`.
//!
//! The load generator runs on the same two cores as the members it measures; that costs both
//! systems alike, and is said in the report.

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::Args;
use keel_lab::{Child, Placement};
use serde::{Deserialize, Serialize};

use crate::{cargo, run_step, workspace_root};

#[derive(Args, Clone)]
pub struct StoreArgs {
    /// Member counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    members: Vec<usize>,
    /// Concurrent writing clients.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    clients: Vec<usize>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 8.0)]
    duration: f64,
    /// Watchers for the fan-out measurement.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Rounds per member count; in each, every cell runs on keel and etcd back to back (who
    /// goes first alternates by round).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum System {
    Keel,
    Etcd,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Keel => "keel",
            System::Etcd => "etcd",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Row {
    system: System,
    members: usize,
    round: usize,
    workload: String,
    clients: usize,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    operations: u64,
    /// CPU time (user + system) all members used during the run, per operation, in
    /// microseconds: what a system spends for its figures.
    #[serde(default)]
    member_cpu_us_per_op: f64,
    /// Watch rows: p50 and p99 ms from each put's send, not its acknowledgement, under the
    /// load generator's names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from_sent_p50_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from_sent_p99_ms: Option<f64>,
}

impl Row {
    /// Whether this row is `system`'s run of one cell (any round).
    fn is_cell(&self, system: System, members: usize, workload: &str, clients: usize) -> bool {
        self.system == system
            && self.members == members
            && self.workload == workload
            && self.clients == clients
    }
}

pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running cluster of one system; its processes are killed when dropped.
struct Cluster {
    endpoints: Vec<String>,
    children: Vec<Child>,
}

impl Cluster {
    /// CPU time the members have used so far, in microseconds (the children are the
    /// members themselves, not wrappers).
    fn cpu_us(&self) -> anyhow::Result<f64> {
        let mut seconds = 0.0;
        for child in &self.children {
            seconds += super::process_cpu_seconds(child.pid())?;
        }
        Ok(seconds * 1e6)
    }

    /// Waits until the members spend less than [`QUIET_US`] in a [`SETTLE_WINDOW`], or
    /// [`SETTLE_MAX`] has passed.
    fn settle(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + SETTLE_MAX;
        let mut before = self.cpu_us()?;
        loop {
            std::thread::sleep(SETTLE_WINDOW);
            let now = self.cpu_us()?;
            if now - before < QUIET_US || Instant::now() >= deadline {
                return Ok(());
            }
            before = now;
        }
    }
}

fn start(system: System, members: usize, dir: &Path, bin: &Path) -> anyhow::Result<Cluster> {
    let ports: Vec<(u16, u16)> = (0..members)
        .map(|_| Ok((free_port()?, free_port()?)))
        .collect::<anyhow::Result<_>>()?;
    let initial: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
        .collect();
    let initial = initial.join(",");
    let mut children = Vec::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        let data = dir.join(format!("{}-m{i}", system.name()));
        let mut command = match system {
            System::Keel => {
                let mut c = Command::new(bin.join("control-plane"));
                c.args(["--name", &format!("m{i}")])
                    .arg("--data-dir")
                    .arg(&data)
                    .args(["--listen-client", &format!("127.0.0.1:{client}")])
                    .args(["--listen-peer", &format!("127.0.0.1:{peer}")])
                    .args(["--initial-cluster", &initial])
                    .env("RUST_LOG", "warn");
                c
            }
            System::Etcd => {
                let mut c = Command::new("etcd");
                c.args(["--name", &format!("m{i}")])
                    .arg("--data-dir")
                    .arg(&data)
                    .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
                    .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
                    .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
                    .arg(format!(
                        "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
                    ))
                    .arg(format!("--initial-cluster={initial}"))
                    .args([
                        "--initial-cluster-state=new",
                        "--initial-cluster-token=keel-bench",
                        "--logger=zap",
                        "--log-level=error",
                    ]);
                c
            }
        };
        command.current_dir(dir);
        children.push(
            Child::spawn(
                &format!("{}-m{i}", system.name()),
                command,
                &Placement::default(),
            )
            .with_context(|| format!("starting {} member {i}", system.name()))?,
        );
    }
    let endpoints: Vec<String> = ports
        .iter()
        .map(|(client, _)| format!("http://127.0.0.1:{client}"))
        .collect();
    // Ready when a write through every member is acknowledged.
    let deadline = Instant::now() + Duration::from_secs(30);
    for endpoint in &endpoints {
        loop {
            let out = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={endpoint}"))
                .args(["--command-timeout=2s", "put", "/bench/ready", "x"])
                .output()
                .context("etcdctl (installed by `cargo xtask setup`)")?;
            if out.status.success() {
                break;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = children.iter().flat_map(|c| c.output()).collect();
                bail!(
                    "{} with {members} members did not serve within 30 s:\n{}",
                    system.name(),
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(Cluster {
        endpoints,
        children,
    })
}

/// One run of the load generator; its JSON line.
pub(super) fn load(
    bin: &Path,
    endpoints: &[String],
    args: &[String],
) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(bin.join("keel-store-load"))
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .args(args)
        .output()
        .context("running keel-store-load")?;
    if !out.status.success() {
        bail!(
            "keel-store-load {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("keel-store-load's JSON")
}

fn row(
    system: System,
    members: usize,
    round: usize,
    v: &serde_json::Value,
    member_cpu_us: f64,
) -> Row {
    let operations = v["operations"].as_u64().unwrap_or(0);
    Row {
        system,
        members,
        round,
        workload: v["workload"].as_str().unwrap_or("?").to_owned(),
        clients: v["clients"].as_u64().unwrap_or(0) as usize,
        per_second: v["per_second"].as_f64().unwrap_or(0.0),
        p50_ms: v["p50_ms"].as_f64().unwrap_or(0.0),
        p99_ms: v["p99_ms"].as_f64().unwrap_or(0.0),
        errors: v["errors"].as_u64().unwrap_or(0),
        operations,
        member_cpu_us_per_op: if operations > 0 {
            member_cpu_us / operations as f64
        } else {
            0.0
        },
        from_sent_p50_ms: v["from_sent_p50_ms"].as_f64(),
        from_sent_p99_ms: v["from_sent_p99_ms"].as_f64(),
    }
}

/// How often a system that has just run is asked whether it is quiet again.
const SETTLE_WINDOW: Duration = Duration::from_millis(250);

/// CPU time the members may spend in one [`SETTLE_WINDOW`] and count as quiet: 5% of one CPU.
/// Idle, three members of either system use about 1.5% (heartbeats, timers).
const QUIET_US: f64 = 12_500.0;

/// Longest wait for a system to settle after a run.
const SETTLE_MAX: Duration = Duration::from_secs(10);

/// The load generator's arguments for each cell of a round, in order: writes at each client
/// count, linearizable reads, the watch fan-out.
fn cells(args: &StoreArgs) -> Vec<Vec<String>> {
    let duration = format!("--duration-secs={}", args.duration);
    let mut cells: Vec<Vec<String>> = args
        .clients
        .iter()
        .map(|clients| {
            vec![
                "--workload=write".into(),
                format!("--clients={clients}"),
                duration.clone(),
                "--value-size=256".into(),
            ]
        })
        .collect();
    cells.push(vec![
        "--workload=read".into(),
        "--clients=64".into(),
        duration,
    ]);
    cells.push(vec![
        "--workload=watch".into(),
        format!("--watchers={}", args.watchers),
        "--watch-writes=200".into(),
        "--watch-rate=100".into(),
        "--connections=16".into(),
    ]);
    cells
}

/// Which system runs first in each cell of `round` (counted from 0; the report and the
/// progress lines count from 1): keel in rounds 0, 2, 4…, etcd in 1, 3, 5…, so that over two
/// rounds neither always follows the other's run.
fn order(round: usize) -> [System; 2] {
    if round.is_multiple_of(2) {
        [System::Keel, System::Etcd]
    } else {
        [System::Etcd, System::Keel]
    }
}

/// One round for one member count: both systems' clusters start on fresh data directories
/// and stay up together, and each cell runs on one and then at once on the other, so every
/// keel ÷ etcd ratio comes from two runs made back to back. This machine's speed drifts over
/// minutes; a whole pass of one system, then of the other, put several minutes between the
/// two halves of a ratio. Each system still carries its own history from cell to cell (the
/// 256-client writes land on a store that took the earlier cells' writes), as before.
fn measure_round(
    members: usize,
    round: usize,
    args: &StoreArgs,
    bin: &Path,
    scratch: &Path,
) -> anyhow::Result<Vec<Row>> {
    let mut clusters = Vec::new();
    for system in order(round) {
        let dir = scratch.join(format!("{}-{members}-{round}", system.name()));
        fs::create_dir_all(&dir)?;
        clusters.push((system, start(system, members, &dir, bin)?, dir));
    }
    let mut rows = Vec::new();
    for cell in cells(args) {
        for (system, cluster, _) in &clusters {
            let cpu_before = cluster.cpu_us()?;
            let result = load(bin, &cluster.endpoints, &cell)?;
            let cpu = cluster.cpu_us()? - cpu_before;
            let r = row(*system, members, round, &result, cpu);
            // For a watch row the clients are the watchers, and the errors are events that
            // never arrived.
            println!(
                "  {} x{members} {:<5} clients {:>4}: {:>8.0}/s p50 {:>7.2} ms p99 {:>7.2} ms, {} errors, members' CPU {:.0} µs/op",
                system.name(),
                r.workload,
                r.clients,
                r.per_second,
                r.p50_ms,
                r.p99_ms,
                r.errors,
                r.member_cpu_us_per_op
            );
            if let (Some(p50), Some(p99)) = (r.from_sent_p50_ms, r.from_sent_p99_ms) {
                println!("    from each put's send: p50 {p50:>7.2} ms p99 {p99:>7.2} ms");
            }
            rows.push(r);
            // A snapshot or compaction the run left behind would land in the other system's
            // run.
            cluster.settle()?;
        }
    }
    for (_, cluster, dir) in clusters {
        drop(cluster);
        let _ = fs::remove_dir_all(&dir);
    }
    Ok(rows)
}

pub fn run(args: StoreArgs) -> anyhow::Result<()> {
    if !Path::new("/usr/bin/etcd").exists() {
        bail!("etcd is missing: `cargo xtask setup` installs Debian's etcd-server");
    }
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "keel-control-plane",
        "--bin",
        "control-plane",
        "--bin",
        "keel-store-load",
    ]);
    run_step(build)?;
    let target = workspace_root().join("target");
    let bin: PathBuf = target.join("release");
    // On the workspace's disk, where a member's data directory would be; never a tmpfs.
    let scratch = tempfile::Builder::new()
        .prefix("keel-bench-store-")
        .tempdir_in(&target)
        .context("a scratch directory under target/")?;
    let etcd_version = Command::new("etcd")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default();
    let mut rows = Vec::new();
    for &members in &args.members {
        for round in 0..args.rounds {
            let [first, second] = order(round);
            println!(
                "{members} member(s), round {}: {} and {} side by side, {} first in each cell",
                round + 1,
                first.name(),
                second.name(),
                first.name()
            );
            rows.extend(measure_round(members, round, &args, &bin, scratch.path())?);
        }
    }
    let markdown = report(&args, &rows, &etcd_version);
    println!("\n{markdown}");
    let dir = super::results_dir()?;
    fs::write(dir.join("store.md"), &markdown)?;
    fs::write(dir.join("store.json"), serde_json::to_vec_pretty(&rows)?)?;
    let mut series = Vec::new();
    for &members in &args.members {
        for system in [System::Keel, System::Etcd] {
            let points = args
                .clients
                .iter()
                .map(|&c| {
                    (
                        c as f64,
                        best(&rows, system, members, "write", c).map_or(0.0, |r| r.per_second),
                    )
                })
                .collect();
            series.push((format!("{} x{members}", system.name()), points));
        }
    }
    super::plot::lines_over(
        &dir.join("store-writes.svg"),
        "store writes/s by concurrent clients (256-byte values, fsync)",
        "concurrent clients",
        &series,
    )?;
    println!("results: {}", dir.join("store.md").display());
    Ok(())
}

/// The best round of one cell (rounds only repeat the measurement; noise only slows a run).
fn best<'a>(
    rows: &'a [Row],
    system: System,
    members: usize,
    workload: &str,
    clients: usize,
) -> Option<&'a Row> {
    rows.iter()
        .filter(|r| r.is_cell(system, members, workload, clients))
        .max_by(|a, b| a.per_second.total_cmp(&b.per_second))
}

/// The report's cells for one member count, in order (writes by clients, reads, and the watch
/// fan-out if asked for), each with keel's and etcd's best round; a cell either lacks is left out.
fn paired_cells<'a>(
    args: &StoreArgs,
    rows: &'a [Row],
    members: usize,
    watch: bool,
) -> Vec<(&'static str, usize, &'a Row, &'a Row)> {
    let mut cells: Vec<(&'static str, usize)> =
        args.clients.iter().map(|&c| ("write", c)).collect();
    cells.push(("read", 64));
    if watch {
        cells.push(("watch", args.watchers));
    }
    cells
        .into_iter()
        .filter_map(|(workload, clients)| {
            Some((
                workload,
                clients,
                best(rows, System::Keel, members, workload, clients)?,
                best(rows, System::Etcd, members, workload, clients)?,
            ))
        })
        .collect()
}

/// keel's and etcd's runs of one cell in each round that has both, in round order: each pair
/// made back to back, so their spread is the drift and noise the best-of figures hide.
fn round_pairs<'a>(
    rows: &'a [Row],
    members: usize,
    workload: &str,
    clients: usize,
) -> Vec<(&'a Row, &'a Row)> {
    let of = |system: System, round: usize| {
        rows.iter()
            .find(|r| r.round == round && r.is_cell(system, members, workload, clients))
    };
    let mut rounds: Vec<usize> = rows.iter().map(|r| r.round).collect();
    rounds.sort_unstable();
    rounds.dedup();
    rounds
        .into_iter()
        .filter_map(|round| Some((of(System::Keel, round)?, of(System::Etcd, round)?)))
        .collect()
}

/// keel ÷ etcd of one cell in each round that has both, in round order.
fn round_ratios(rows: &[Row], members: usize, workload: &str, clients: usize) -> Vec<f64> {
    round_pairs(rows, members, workload, clients)
        .into_iter()
        .filter(|(_, etcd)| etcd.per_second > 0.0)
        .map(|(keel, etcd)| keel.per_second / etcd.per_second)
        .collect()
}

/// Each round's p99 of a watch cell, keel's / etcd's: the writer's rate is fixed, so the best
/// round by rate says nothing, and the latencies are the figures.
fn round_watch_p99s(rows: &[Row], members: usize, clients: usize) -> String {
    let pairs: Vec<String> = round_pairs(rows, members, "watch", clients)
        .into_iter()
        .map(|(keel, etcd)| format!("{:.2} / {:.2} ms p99", keel.p99_ms, etcd.p99_ms))
        .collect();
    pairs.join(", ")
}

/// The watch cell's latencies from each put's send rather than its acknowledgement, by round,
/// when the load generator reported them.
fn watch_from_sent(rows: &[Row], members: usize, clients: usize) -> Option<String> {
    let pairs: Vec<String> = round_pairs(rows, members, "watch", clients)
        .into_iter()
        .filter_map(|(keel, etcd)| {
            Some(format!(
                "keel {:.2} / {:.2}, etcd {:.2} / {:.2}",
                keel.from_sent_p50_ms?,
                keel.from_sent_p99_ms?,
                etcd.from_sent_p50_ms?,
                etcd.from_sent_p99_ms?
            ))
        })
        .collect();
    (!pairs.is_empty()).then(|| pairs.join("; "))
}

fn report(args: &StoreArgs, rows: &[Row], etcd_version: &str) -> String {
    let mut md = format!(
        "### Store: keel beside etcd, same load generator (`keel-store-load`, etcd's gRPC API)\n\n\
         {etcd_version} (Debian) and keel's `control-plane`, both on loopback with data under \
         `target/` on the same disk and fsync on; 256-byte values; {} s per measurement, \
         {} round(s). In a round both clusters are up, on fresh data directories, and each cell \
         runs on one system and then at once on the other (keel first in odd rounds, etcd first \
         in even ones), each system's members left to settle after a run; an idle cluster costs \
         the other about 1.5% of the machine. /s and latencies are each system's best round; \
         the round ratios are each from two runs made back to back. The load generator shares \
         the machine's 2 cores with the members it measures.\n\n\
         | members | workload | clients | keel /s | etcd /s | keel ÷ etcd | keel ÷ etcd by round | keel p50 ms | etcd p50 ms | keel p99 ms | etcd p99 ms |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
        args.duration, args.rounds
    );
    for &members in &args.members {
        for (workload, clients, k, e) in paired_cells(args, rows, members, true) {
            let ratio = if e.per_second > 0.0 {
                k.per_second / e.per_second
            } else {
                0.0
            };
            let (label, by_round) = if workload == "watch" {
                (
                    "watch fan-out (latency from write ack to event)".to_owned(),
                    round_watch_p99s(rows, members, clients),
                )
            } else {
                let ratios: Vec<String> = round_ratios(rows, members, workload, clients)
                    .iter()
                    .map(|r| format!("{r:.2}"))
                    .collect();
                (workload.to_owned(), ratios.join(", "))
            };
            md.push_str(&format!(
                "| {members} | {label} | {clients} | {:.0} | {:.0} | {ratio:.2} | {by_round} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                k.per_second, e.per_second, k.p50_ms, e.p50_ms, k.p99_ms, e.p99_ms
            ));
        }
    }
    md.push_str(
        "\nFor watch rows, /s is the writer's rate (fixed), the latencies are from the put's \
         acknowledgement to each watcher's receipt of its event (an event that beats the \
         acknowledgement counts as 0), and the round column gives each round's p99; missing \
         events are counted as errors in store.json.\n",
    );
    for &members in &args.members {
        if let Some(by_round) = watch_from_sent(rows, members, args.watchers) {
            // The put's answer can wait behind the fan-out it caused, so the figure above
            // also says in which order a member sends the answer and the events.
            md.push_str(&format!(
                "\nThe same watch fan-out measured from each put's send, p50 / p99 ms by round, \
                 {members} member(s): {by_round}.\n"
            ));
        }
    }
    md.push_str(
        "\n#### What the members spent: CPU time (user + system, all members) per operation, µs\n\n\
         From `/proc/<pid>/stat` before and after each run; the load generator's own time is \
         not in it.\n\n\
         | members | workload | clients | keel µs/op | etcd µs/op |\n|---|---|---|---|---|\n",
    );
    for &members in &args.members {
        for (workload, clients, k, e) in paired_cells(args, rows, members, false) {
            md.push_str(&format!(
                "| {members} | {workload} | {clients} | {:.0} | {:.0} |\n",
                k.member_cpu_us_per_op, e.member_cpu_us_per_op
            ));
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::{cells, order, report, Row, StoreArgs, System};

    fn cell(
        system: System,
        round: usize,
        workload: &str,
        clients: usize,
        per_second: f64,
        cpu: f64,
    ) -> Row {
        Row {
            system,
            members: 3,
            round,
            workload: workload.into(),
            clients,
            per_second,
            p50_ms: 1.0,
            p99_ms: 2.0,
            errors: 0,
            operations: 100,
            member_cpu_us_per_op: cpu,
            from_sent_p50_ms: None,
            from_sent_p99_ms: None,
        }
    }

    fn args() -> StoreArgs {
        StoreArgs {
            members: vec![3],
            clients: vec![1, 16],
            duration: 8.0,
            watchers: 1000,
            rounds: 2,
        }
    }

    #[test]
    fn the_report_pairs_each_cell_and_leaves_out_one_a_system_lacks() {
        let rows = vec![
            cell(System::Keel, 0, "write", 1, 880.0, 1400.0),
            cell(System::Etcd, 0, "write", 1, 800.0, 1600.0),
            cell(System::Etcd, 1, "write", 1, 1000.0, 1500.0),
            cell(System::Keel, 1, "write", 1, 950.0, 1300.0),
            cell(System::Keel, 0, "write", 16, 5000.0, 360.0),
            cell(System::Keel, 0, "read", 64, 13000.0, 104.0),
            cell(System::Etcd, 0, "read", 64, 6500.0, 245.0),
        ];
        let md = report(&args(), &rows, "etcd Version: 3.4.23");
        // Each system's better round (keel 950, etcd 1000), and beside them each round's ratio
        // of the two runs made back to back (880 ÷ 800, 950 ÷ 1000), in round order.
        assert!(
            md.contains("| 3 | write | 1 | 950 | 1000 | 0.95 | 1.10, 0.95 |"),
            "{md}"
        );
        assert!(md.contains("| 3 | write | 1 | 1300 | 1500 |"), "{md}");
        // A round only one system has gives no ratio.
        assert!(
            md.contains("| 3 | read | 64 | 13000 | 6500 | 2.00 | 2.00 |"),
            "{md}"
        );
        assert!(md.contains("| 3 | read | 64 | 104 | 245 |"), "{md}");
        // etcd has no 16-client row: no half cell in either table.
        assert!(!md.contains("| 3 | write | 16 |"), "{md}");
    }

    #[test]
    fn a_watch_cell_gives_each_rounds_p99_and_the_latency_from_the_send_when_known() {
        let watch = |system, round, p99: f64, from_sent: Option<(f64, f64)>| Row {
            p99_ms: p99,
            from_sent_p50_ms: from_sent.map(|f| f.0),
            from_sent_p99_ms: from_sent.map(|f| f.1),
            ..cell(system, round, "watch", 1000, 100.0, 9.0)
        };
        let rows = vec![
            watch(System::Keel, 0, 5.83, Some((6.6, 11.3))),
            watch(System::Etcd, 0, 18.72, Some((7.0, 20.1))),
            watch(System::Etcd, 1, 4.16, None),
            watch(System::Keel, 1, 4.31, None),
        ];
        let md = report(&args(), &rows, "etcd Version: 3.4.23");
        assert!(
            md.contains("| 5.83 / 18.72 ms p99, 4.31 / 4.16 ms p99 |"),
            "{md}"
        );
        // Only the first round has both systems' figures from the send.
        assert!(
            md.contains("3 member(s): keel 6.60 / 11.30, etcd 7.00 / 20.10.\n"),
            "{md}"
        );
        let without: Vec<Row> = rows
            .into_iter()
            .map(|r| Row {
                from_sent_p50_ms: None,
                from_sent_p99_ms: None,
                ..r
            })
            .collect();
        let md = report(&args(), &without, "etcd Version: 3.4.23");
        assert!(!md.contains("measured from each put's send"), "{md}");
    }

    #[test]
    fn a_round_alternates_who_goes_first_and_runs_every_cell() {
        assert_eq!(order(0), [System::Keel, System::Etcd]);
        assert_eq!(order(1), [System::Etcd, System::Keel]);
        assert_eq!(order(2), order(0));
        let cells = cells(&args());
        let workloads: Vec<&str> = cells.iter().map(|c| c[0].as_str()).collect();
        assert_eq!(
            workloads,
            [
                "--workload=write",
                "--workload=write",
                "--workload=read",
                "--workload=watch"
            ]
        );
        assert!(cells[1].contains(&"--clients=16".to_owned()), "{cells:?}");
        assert!(
            cells[3].contains(&"--watchers=1000".to_owned()),
            "{cells:?}"
        );
    }
}
