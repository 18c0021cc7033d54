//! `cargo xtask bench proxy`: the proxy modes side by side.
//!
//! For each mode and each N (`--services`), in a fresh lab with ten backend pods and a
//! release-built daemon: N services × 10 endpoints are loaded from manifest files of 1,000
//! services each; then
//! - **program**: the daemon's own `took=` of the first sync (the kernel writes, not YAML);
//! - **change**: one endpoint of one service turns unready, twenty times: each sync's `took=`
//!   (the kernel writes), and the wall time from the file write to the sync being logged
//!   (what a user waits: the watcher's settle delay, re-reading the manifests — only the
//!   changed file is parsed again — computing the table, the sync);
//! - **connect**: from a client pod, new connection + request latency to a random one of the
//!   N ClusterIPs, against a random one of the ten pods reached directly, as a ratio;
//! - **keep-alive**: requests per second over 8 kept-alive connections (wrk, 3 s), direct and
//!   through a ClusterIP;
//! - **CPU** per 10,000 connections (the whole machine's busy time, and the `cpu.stat` of the
//!   client's and the servers' cgroups) and the **state** the mode holds in the kernel.
//!
//! Every N is also measured with **no proxy at all** (mode `none`: the same lab, no daemon,
//! no rules, no programs), so that what a mode costs traffic that never touches a service —
//! kube-proxy's chains are walked by every new connection — shows against it, not only
//! against the direct path inside the mode's own rules.
//!
//! The sync rate limit is off (`--min-sync-interval 0s`): this measures the modes, not the
//! limiter. Every figure is the median over `--runs` repetitions (min beside it where it matters); see
//! shared/BENCH-NOTES.md for why single runs lie on these machines. Results go to
//! `bench-results/<date>/`: `results.json` (every run), `results.md` (the tables, also printed)
//! and SVG plots against N. Ctrl-C or SIGTERM stops the bench and removes its lab.

use std::{
    fs,
    net::{Ipv4Addr, SocketAddrV4},
    path::PathBuf,
    time::Duration,
};

use anyhow::{bail, Context};
use clap::Args;
use keel_lab::{Cgroup, Lab, NodePlacement, Placement};

use super::{build_release, check_stop, measure, tempdir, Daemon, Latency};

mod report;
mod state;
pub(crate) use report::markdown;
use report::report;
use state::state_size;

const ENDPOINTS: usize = 10;
const BACKEND_PORT: u16 = 8080;
const CHANGES: usize = 20;
/// Services in one manifest file (an application's file, not the whole cluster in one).
const SERVICES_PER_FILE: u32 = 1000;
/// The most services a run takes (the VIPs come from 10.96.0.0/12; the eBPF maps are sized
/// for N).
const MAX_SERVICES: u32 = 100_000;
/// The baseline mode: no daemon at all.
const NONE: &str = "none";

#[derive(Args)]
pub struct ProxyArgs {
    /// Numbers of services, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,1000")]
    services: Vec<u32>,
    /// Modes, comma-separated; `none` is the lab with no proxy at all, the baseline.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "none,ebpf,iptables,nftables"
    )]
    modes: Vec<String>,
    /// Connections per latency measurement.
    #[arg(long, default_value_t = 1000)]
    connections: u64,
    /// Repetitions.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds a mode may take to program N services and make the twenty changes, per run;
    /// past it the cell is reported as not finished, with the time, and larger N of that mode
    /// are not run (so that `--services 1,1000,10000,65536` ends within the half hour).
    #[arg(long, value_name = "SECONDS", default_value_t = 150)]
    give_up_after: u64,
    /// Run inside the Debian kernel under qemu (with IPVS); every figure is emulated (TCG).
    #[arg(long)]
    pub(super) vm: bool,
    /// (internal) Running inside the VM: binaries are in $KEEL_BIN_DIR, nothing is built.
    #[arg(long, hide = true)]
    pub in_guest: bool,
}

impl ProxyArgs {
    /// The arguments to hand to the bench inside the VM.
    pub(super) fn guest_args(&self) -> Vec<String> {
        let join = |items: Vec<String>| items.join(",");
        vec![
            "--services".into(),
            join(self.services.iter().map(u32::to_string).collect()),
            "--modes".into(),
            join(self.modes.clone()),
            "--connections".into(),
            self.connections.to_string(),
            "--runs".into(),
            self.runs.to_string(),
            "--give-up-after".into(),
            self.give_up_after.to_string(),
        ]
    }
}

/// One (mode, N) cell, all runs.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Cell {
    mode: String,
    services: u32,
    program_ms: Vec<f64>,
    change_p50_ms: Vec<f64>,
    change_p99_ms: Vec<f64>,
    change_wall_p50_ms: Vec<f64>,
    change_wall_p99_ms: Vec<f64>,
    /// The daemon's `built=`: the changed objects given to the change tracker and the table
    /// brought up to them, before the sync (empty for runs before the daemon logged it).
    #[serde(default)]
    change_build_p50_ms: Vec<f64>,
    #[serde(default)]
    change_build_p99_ms: Vec<f64>,
    direct: Vec<Latency>,
    cluster_ip: Vec<Latency>,
    /// What the mode holds in the kernel for N services: BPF map memory (ebpf), or the size of
    /// the ruleset as the tools print it (iptables, nftables) — not the same measure, said so
    /// in the report.
    state_bytes: Vec<u64>,
    /// ebpf: the part of `state_bytes` in service-state maps (services, backends, Maglev) and
    /// in flow-state maps (conntrack, SYN, affinity, reverse); empty for other modes.
    #[serde(default)]
    service_state_bytes: Vec<u64>,
    #[serde(default)]
    flow_state_bytes: Vec<u64>,
    keepalive_direct_rps: Vec<f64>,
    keepalive_vip_rps: Vec<f64>,
    /// Why the cell has no figures: the mode did not finish within `--give-up-after` (or did
    /// not at a smaller N). A cell with this set is reported as such, never as numbers.
    #[serde(default)]
    not_finished: Option<String>,
}

/// Requests per second of `wrk` (1 thread, 8 connections, 3 s) against `to` from `client`.
fn wrk(client: &Placement, to: SocketAddrV4) -> anyhow::Result<f64> {
    let mut command = std::process::Command::new("wrk");
    command.args(["-t1", "-c8", "-d3s", &format!("http://{to}/")]);
    let (code, lines) =
        keel_lab::Child::spawn("wrk", command, client)?.finish(Duration::from_secs(60))?;
    if code != Some(0) {
        bail!("wrk against {to} failed: {lines:?}");
    }
    if let Some(errors) = lines
        .iter()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
    {
        bail!("wrk against {to}: {errors}");
    }
    lines
        .iter()
        .find_map(|l| l.strip_prefix("Requests/sec:")?.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output: {lines:?}"))
}

/// Serial console markers around the in-guest run's results (one JSON line), which the host
/// side (`guest`) reads off the console.
pub const RESULTS_BEGIN: &str = "KEEL-VM-RESULTS-BEGIN";
pub const RESULTS_END: &str = "KEEL-VM-RESULTS-END";

/// Refuses arguments that cannot run, before anything is built or booted.
pub fn check_args(args: &ProxyArgs) -> anyhow::Result<()> {
    let ipvs = std::path::Path::new("/proc/net/ip_vs").exists();
    for mode in &args.modes {
        let known = [NONE, "ebpf", "iptables", "nftables", "ipvs"].contains(&mode.as_str());
        if !known || (mode == "ipvs" && !ipvs && !args.vm) {
            bail!("--modes: {mode:?} is not one of none, ebpf, iptables, nftables (ipvs needs a kernel with IP_VS: add --vm)");
        }
    }
    if args.services.iter().any(|n| *n == 0 || *n > MAX_SERVICES) {
        bail!("--services: each count must be within 1..={MAX_SERVICES}");
    }
    Ok(())
}

/// Runs the bench here (on the host, or inside the guest with `--in-guest`).
pub fn run(args: ProxyArgs) -> anyhow::Result<()> {
    super::TOLERATE_ERRORS.store(args.in_guest, std::sync::atomic::Ordering::Relaxed);
    let bin_dir = if args.in_guest {
        PathBuf::from(std::env::var_os("KEEL_BIN_DIR").context("KEEL_BIN_DIR is not set")?)
    } else {
        build_release()?
    };
    let mut cells = Vec::new();
    let total = (args.modes.len() * args.services.len() * args.runs) as u64;
    // In the VM the console is a serial line: plain lines, no redrawn bar.
    let progress = if args.in_guest {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(total)
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let give_up_after = Duration::from_secs(args.give_up_after);
    for mode in &args.modes {
        // The smallest N this mode did not finish at: larger ones are not run.
        let mut gave_up_at = None;
        for &services in &args.services {
            let mut cell = Cell {
                mode: mode.clone(),
                services,
                ..Cell::default()
            };
            if let Some(at) = gave_up_at.filter(|at| *at < services) {
                cell.not_finished = Some(format!("not run: did not finish at {at} services"));
                progress.inc(args.runs as u64);
                cells.push(cell);
                continue;
            }
            for run in 1..=args.runs {
                check_stop()?;
                let what = format!("{mode} × {services} services, run {run}/{}", args.runs);
                progress.set_message(what.clone());
                if progress.is_hidden() {
                    println!("  {what}");
                }
                let outcome = one_run(
                    &bin_dir,
                    mode,
                    services,
                    args.connections,
                    give_up_after,
                    &mut cell,
                )
                .with_context(|| format!("{mode} with {services} services"))?;
                progress.inc(1);
                if let Err(reason) = outcome {
                    cell.not_finished = Some(reason);
                    gave_up_at = Some(services);
                    progress.inc((args.runs - run) as u64);
                    break;
                }
            }
            let summary = if let Some(reason) = &cell.not_finished {
                format!("  {mode} × {services}: {reason}")
            } else if mode == NONE {
                format!(
                    "  {mode} × {services}: direct p99 {:.0} µs (median), the baseline",
                    median(&cell.direct.iter().map(|l| l.p99 as f64).collect::<Vec<_>>())
                )
            } else {
                format!(
                    "  {mode} × {services}: program {:.1} ms, one change {:.2} ms (medians)",
                    median(&cell.program_ms),
                    median(&cell.change_p50_ms)
                )
            };
            // A hidden bar (no terminal, or the VM's console) prints nothing itself.
            if progress.is_hidden() {
                println!("{summary}");
            } else {
                progress.println(summary);
            }
            cells.push(cell);
        }
    }
    progress.finish_and_clear();
    report(&cells, args.in_guest)
}

/// One run of one cell, its figures added to `cell`; `Err(reason)` inside when the mode did
/// not finish programming and changing within `give_up_after`.
fn one_run(
    bin_dir: &std::path::Path,
    mode: &str,
    services: u32,
    connections: u64,
    give_up_after: Duration,
    cell: &mut Cell,
) -> anyhow::Result<Result<(), String>> {
    let mut lab = Lab::new(NodePlacement::OwnNetns)?;
    // The servers get a cgroup of their own, outside keel's (no socket program applies to
    // them): with the client's, it is the lab's CPU accounting.
    let servers = Cgroup::create(&format!("keel-bench-servers-{}", keel_lab::unique_id()))?;
    let mut pods = Vec::new();
    for n in 0..ENDPOINTS {
        let pod = lab.add_pod(&format!("p{n}"))?;
        pod.place_in(servers.path()).serve(BACKEND_PORT)?;
        pods.push(pod.addr());
    }
    // The client is a pod too, as in a cluster: in keel's cgroup (the eBPF mode's socket LB
    // applies to it), with a route to the services through the node.
    let client_pod = lab.add_pod("client")?;
    client_pod
        .netns()
        .ip(&["route", "add", "10.96.0.0/12", "via", "10.244.0.1"])?;
    let client_netns = client_pod.netns().path();
    // The netfilter modes see pod-to-pod replies only if the bridge hands them to iptables
    // (shared/BENCH-NOTES.md: without it the hairpin replies skip the un-DNAT).
    // And they route pod-to-ClusterIP packets through the node, which must forward them.
    if let Some(node) = lab.node_netns() {
        node.sysctl("net.bridge.bridge-nf-call-iptables", "1")?;
        node.sysctl("net.ipv4.ip_forward", "1")?;
    }
    let cgroup = Cgroup::create(&format!("keel-bench-{}", keel_lab::unique_id()))?;
    let client = Placement {
        netns: Some(client_netns),
        cgroup: Some(cgroup.path().to_owned()),
    };
    // No proxy: nothing is programmed, and only the direct path exists.
    let daemon = if mode == NONE {
        cell.state_bytes.push(0);
        None
    } else {
        let deadline = std::time::Instant::now() + give_up_after;
        match program(
            bin_dir, &lab, mode, services, &pods, &cgroup, deadline, cell,
        )? {
            Ok(running) => Some(running),
            Err(reason) => return Ok(Err(reason)),
        }
    };
    // Short connections: direct to a random one of the pods, and to a random service of the N.
    check_stop()?;
    // The baseline spreads over the same ten pods a ClusterIP balances over: one warm server
    // process against ten would flatter the direct path.
    let direct = SocketAddrV4::new(pods[0], BACKEND_PORT);
    let consecutive = pods
        .iter()
        .enumerate()
        .all(|(i, pod)| u32::from(*pod) == u32::from(pods[0]) + i as u32);
    if !consecutive {
        bail!("the lab's pods are not on consecutive addresses: {pods:?}");
    }
    let lab_cgroups = [&cgroup, &servers];
    let first_vip = SocketAddrV4::new(vip(0), 80);
    // Unmeasured warm-up of both paths: the first packet to each pod waits for ARP, ten
    // first packets in a thousand samples are exactly the p99.
    let warm_up = (ENDPOINTS as u64 * 10).min(connections);
    measure(bin_dir, &client, direct, warm_up, ENDPOINTS as u32, &[])?;
    if daemon.is_some() {
        measure(bin_dir, &client, first_vip, warm_up, services, &[])?;
    }
    cell.direct.push(measure(
        bin_dir,
        &client,
        direct,
        connections,
        ENDPOINTS as u32,
        &lab_cgroups,
    )?);
    if daemon.is_some() {
        cell.cluster_ip.push(measure(
            bin_dir,
            &client,
            first_vip,
            connections,
            services,
            &lab_cgroups,
        )?);
    }
    // Keep-alive requests per second (wrk), direct and through the last service.
    check_stop()?;
    cell.keepalive_direct_rps.push(wrk(&client, direct)?);
    if daemon.is_some() {
        cell.keepalive_vip_rps
            .push(wrk(&client, SocketAddrV4::new(vip(services - 1), 80))?);
    }
    drop(daemon);
    Ok(Ok(()))
}

/// Starts the daemon in `mode` with N services and measures programming them and changing
/// one endpoint twenty times; the daemon is returned running, for the traffic figures, or
/// why it is not: it had not finished by `deadline`.
#[allow(clippy::too_many_arguments)]
fn program(
    bin_dir: &std::path::Path,
    lab: &Lab,
    mode: &str,
    services: u32,
    pods: &[Ipv4Addr],
    cgroup: &Cgroup,
    deadline: std::time::Instant,
    cell: &mut Cell,
) -> anyhow::Result<Result<Running, String>> {
    let started = std::time::Instant::now();
    // The time limit is the deadline; stopping a daemon that missed it takes longer still.
    let budget = deadline.saturating_duration_since(started).as_secs();
    let gave_up = |what: &str| Ok(Err(format!("not finished within {budget} s: {what}")));
    let manifests = tempdir()?;
    for file in 0..services.div_ceil(SERVICES_PER_FILE) {
        let path = manifests.path().join(format!("services-{file}.yaml"));
        fs::write(path, manifest(file, services, pods, None))?;
    }
    let bpf_dir = keel_lab::pin_dir("keel-bench");
    check_stop()?;
    let mut args = vec![
        "--proxy-mode".to_string(),
        mode.to_string(),
        "--min-sync-interval".into(),
        "0s".into(),
    ];
    if mode == "ebpf" {
        // The maps are sized for N: each service takes an id and a head, and a slot for each
        // endpoint (the defaults hold 65,535 services and 262,144 slots).
        let max_services = (services + 1)
            .next_power_of_two()
            .max(keel_common::DEFAULT_MAX_SERVICES);
        let max_backends = (services * ENDPOINTS as u32).max(keel_common::DEFAULT_MAX_BACKENDS);
        args.extend([
            "--max-services".into(),
            max_services.to_string(),
            "--max-backends".into(),
            max_backends.to_string(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let timeout = deadline.saturating_duration_since(started);
    let daemon = match Daemon::start_within(
        lab,
        bin_dir,
        manifests.path(),
        cgroup.path(),
        &bpf_dir,
        &args,
        timeout,
    ) {
        Ok(daemon) => daemon,
        Err(_) if std::time::Instant::now() >= deadline => {
            return gave_up(&format!("programming {services} services"));
        }
        Err(error) => return Err(error),
    };
    let state = state_size(lab, mode, &bpf_dir)?;
    cell.state_bytes.push(state.total);
    if mode == "ebpf" {
        cell.service_state_bytes.push(state.service);
        cell.flow_state_bytes.push(state.flow);
    }
    let first = sync_times(&daemon.log());
    cell.program_ms
        .push(*first.first().context("the daemon logged no sync")?);

    let mut changes = Vec::new();
    let mut walls = Vec::new();
    let mut builds = Vec::new();
    for k in 0..CHANGES {
        check_stop()?;
        let before = sync_times(&daemon.log()).len();
        let unready = (k as u32 * 37 % services, k % ENDPOINTS);
        // Only the file holding the changed service is rewritten, as a user changes one
        // application's file: the daemon re-reads every file but parses only that one.
        let file = unready.0 / SERVICES_PER_FILE;
        let manifest_file = manifests.path().join(format!("services-{file}.yaml"));
        let text = manifest(file, services, pods, Some(unready));
        let written = std::time::Instant::now();
        fs::write(&manifest_file, text)?;
        let Some(took) = wait_for_sync(&daemon, before, deadline)? else {
            return gave_up(&format!("change {} of {CHANGES}", k + 1));
        };
        changes.push(took);
        walls.push(written.elapsed().as_secs_f64() * 1e3);
        builds.extend(synced_field(&daemon.log(), "built=").get(before));
    }
    changes.sort_by(f64::total_cmp);
    walls.sort_by(f64::total_cmp);
    builds.sort_by(f64::total_cmp);
    if let (Some(p50), Some(p99)) = (builds.get(builds.len() / 2), builds.last()) {
        cell.change_build_p50_ms.push(*p50);
        cell.change_build_p99_ms.push(*p99);
    }
    cell.change_p50_ms.push(changes[changes.len() / 2]);
    cell.change_p99_ms.push(changes[changes.len() - 1]);
    cell.change_wall_p50_ms.push(walls[walls.len() / 2]);
    cell.change_wall_p99_ms.push(walls[walls.len() - 1]);
    Ok(Ok(Running {
        _daemon: daemon,
        _manifests: manifests,
    }))
}

/// A daemon the traffic figures run through, with the manifests it reads.
struct Running {
    _daemon: Daemon,
    _manifests: tempfile::TempDir,
}

/// Waits for a sync beyond the first `seen`, returns its duration in ms.
fn wait_for_sync(
    daemon: &Daemon,
    seen: usize,
    deadline: std::time::Instant,
) -> anyhow::Result<Option<f64>> {
    loop {
        let times = sync_times(&daemon.log());
        if times.len() > seen {
            return Ok(Some(times[seen]));
        }
        check_stop()?;
        if std::time::Instant::now() > deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The `took=` of every "synced" line, in ms.
fn sync_times(log: &[String]) -> Vec<f64> {
    synced_field(log, "took=")
}

/// The duration `field` (`took=`, `built=`) of every "synced" line, in ms.
fn synced_field(log: &[String], field: &str) -> Vec<f64> {
    log.iter()
        .filter(|l| l.contains("synced"))
        .filter_map(|l| {
            l.split(field)
                .nth(1)?
                .split_whitespace()
                .next()
                .and_then(parse_duration_ms)
        })
        .collect()
}

/// Parses Rust's `Debug` of a `Duration` ("1.2s", "154.39ms", "12.5µs", "800ns") into ms.
fn parse_duration_ms(text: &str) -> Option<f64> {
    let units = [
        ("ms", 1.0),
        ("µs", 1e-3),
        ("us", 1e-3),
        ("ns", 1e-6),
        ("s", 1e3),
    ];
    units.iter().find_map(|(unit, scale)| {
        text.strip_suffix(unit)?
            .parse::<f64>()
            .ok()
            .map(|v| v * scale)
    })
}

fn vip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i + 1)
}

/// Manifest file number `file` of N services ([`SERVICES_PER_FILE`] a file), each service
/// with every pod as an endpoint; `unready` marks one endpoint of one service not ready.
fn manifest(file: u32, services: u32, pods: &[Ipv4Addr], unready: Option<(u32, usize)>) -> String {
    let mut text = String::new();
    let first = file * SERVICES_PER_FILE;
    for i in first..services.min(first + SERVICES_PER_FILE) {
        text.push_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}}}\nspec:\n  clusterIP: {}\n  ports: [{{name: http, port: 80}}]\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: s{i}-1\n  labels: {{kubernetes.io/service-name: s{i}}}\nports: [{{name: http, port: {BACKEND_PORT}}}]\nendpoints:\n",
            vip(i)
        ));
        for (e, pod) in pods.iter().enumerate() {
            let ready = unready != Some((i, e));
            text.push_str(&format!(
                "- addresses: [\"{pod}\"]\n  conditions: {{ready: {ready}}}\n"
            ));
        }
        text.push_str("---\n");
    }
    text
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_daemons_sync_times() {
        let log = [
            "INFO synced service_ports=1 backends=2 written=5 removed=0 took=154.39ms".to_owned(),
            "INFO something else".to_owned(),
            "INFO synced service_ports=1 backends=1 written=2 removed=1 took=97.786µs".to_owned(),
            "INFO synced took=1.5s".to_owned(),
            "INFO synced took=garbage".to_owned(),
        ];
        let times = sync_times(&log);
        assert_eq!(times.len(), 3);
        assert!(
            (times[0] - 154.39).abs() < 1e-9
                && (times[1] - 0.097786).abs() < 1e-9
                && (times[2] - 1500.0).abs() < 1e-9
        );
    }

    #[test]
    fn manifests_mark_one_endpoint_unready() {
        let pods = [Ipv4Addr::new(10, 244, 0, 2), Ipv4Addr::new(10, 244, 0, 3)];
        let text = manifest(0, 2, &pods, Some((1, 0)));
        assert_eq!(text.matches("ready: false").count(), 1);
        assert_eq!(text.matches("kind: Service\n").count(), 2);
        // Files of SERVICES_PER_FILE: the last one holds the rest, each service once.
        let n = 2 * SERVICES_PER_FILE + 5;
        let files: Vec<String> = (0..n.div_ceil(SERVICES_PER_FILE))
            .map(|file| manifest(file, n, &pods, None))
            .collect();
        assert_eq!(files.len(), 3);
        assert_eq!(files[2].matches("kind: Service\n").count(), 5);
        let all = files.concat();
        assert_eq!(all.matches("kind: Service\n").count() as u32, n);
        assert!(
            all.contains(&format!("name: s{}}}", n - 1)),
            "the last service is there"
        );
        assert!(!all.contains(&format!("name: s{n}}}")));
    }
}
