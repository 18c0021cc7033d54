//! The daemon's life: start-up, the reconcile loop, shutdown and cleanup.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use caps::{CapSet, Capability};
use prometheus_client::collector::Collector;
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::watch,
};

use keel_host::{backoff::Backoff, cgroup, cidr::Ipv4Cidr};
use keel_proxy::{
    ebpf::{
        conntrack_gc::{ConntrackGc, DEFAULT_GC_INTERVAL},
        counters::{ServiceCounters, ServiceNames},
        ct_sizing,
        stale_sockets::{pinned_udp_backends, DestroyStaleSockets, SocketCounters},
        EbpfConfig, EbpfProxy, Limits,
    },
    iptables::{self, IptablesProxy},
    ipvs::{self, IpvsProxy},
    nftables::NftablesProxy,
    route,
    stale_udp::{FlushCounters, FlushStaleUdp},
    tracker::ChangeTracker,
    ServiceProxy,
};
use keel_runtime::{self as runtime, RuntimeConfig};

mod host_state;
mod reconcile;
pub use host_state::cleanup;
use host_state::{enable_forwarding_for_pods, install_service_route, remove_other_modes};
use reconcile::reconcile;

use crate::{
    cluster::{self, Cluster},
    limiter::SyncLimiter,
    manifests::ManifestDir,
    metrics::{self, Metrics},
    watch::watch_dir,
    Args, ProxyMode,
};

/// Runs until SIGTERM or SIGINT. The service route, the cgroup and the mode's kernel state
/// (pinned programs and maps, chains, the nftables table) stay after exit, so that ClusterIPs
/// keep working and never leak while the daemon restarts; `--cleanup` removes them.
pub async fn run(args: Args) -> anyhow::Result<()> {
    check_capabilities()?;
    if args.manifests.is_none() && args.kubeconfig.is_none() {
        bail!("--manifests or --kubeconfig is required");
    }
    // Decided before the host is touched, so that a bad bootstrap kubeconfig fails at once.
    let bootstrap = match (&args.bootstrap_kubeconfig, &args.kubeconfig) {
        (Some(bootstrap), Some(kubeconfig)) => cluster::bootstrap::plan(kubeconfig, bootstrap)
            .with_context(|| format!("TLS bootstrap for {}", kubeconfig.display()))?,
        _ => None,
    };

    if args.proxy_mode == ProxyMode::Ipvs {
        ipvs::check_available()?;
    }
    if args.bpf_debug_log && args.proxy_mode != ProxyMode::Ebpf {
        anyhow::bail!(
            "--bpf-debug-log: the {} proxy mode runs no eBPF programs (use --proxy-mode ebpf)",
            args.proxy_mode.name()
        );
    }
    if args.proxy_mode == ProxyMode::Ebpf {
        // The flags' combination, before anything on the host changes.
        keel_proxy::ebpf::sizing::maglev_tables(
            ebpf_limits(&args),
            args.max_maglev_services,
            args.maglev_table_size,
        )?;
        let size = conntrack_size(&args)?;
        tracing::info!(
            entries = size.entries,
            explicit = size.explicit,
            "conntrack map size"
        );
    }
    install_service_route(args.proxy_mode, args.service_cidr).await?;
    // In a cluster, pods reach other nodes' pods through this node (routed, host-gw), in
    // every mode.
    if args.proxy_mode != ProxyMode::Ebpf || args.kubeconfig.is_some() {
        enable_forwarding_for_pods();
    }
    remove_other_modes(&args).await;
    let names = ServiceNames::default();
    let conntrack_flush = FlushCounters::default();
    let socket_destroy = SocketCounters::default();
    let (mut proxy, collectors): (Box<dyn ServiceProxy>, Vec<Box<dyn Collector>>) = match args
        .proxy_mode
    {
        ProxyMode::Ebpf => {
            let cgroup_path = cgroup_path(&args)?;
            if cgroup::ensure(&cgroup_path)? {
                tracing::info!(cgroup = %cgroup_path.display(), "created keel's cgroup");
            }
            let config = EbpfConfig {
                cgroup: cgroup_path.clone(),
                bpf_dir: args.bpf_dir.clone(),
                limits: ebpf_limits(&args),
                tc_interfaces: args.tc_interfaces.clone(),
                node_ips: route::node_addresses().await?,
                maglev_size: args.maglev_table_size,
                enable_tcx: args.enable_tcx,
                maglev_hash_seed: args.maglev_hash_seed,
                max_maglev_services: args.max_maglev_services,
                conntrack: Some(conntrack_size(&args)?),
                debug_log: args.bpf_debug_log,
            };
            let proxy = EbpfProxy::load(&config)?;
            tracing::info!(cgroup = %cgroup_path.display(), pins = %args.bpf_dir.display(), tc = ?args.tc_interfaces, "eBPF programs attached");
            // A connected UDP socket keeps the backend its connect() was sent to: each sync
            // is followed by destroying the sockets of keel's clients to removed backends.
            let proxy = DestroyStaleSockets::new(
                Box::new(proxy),
                cgroup_path.clone(),
                pinned_udp_backends(&args.bpf_dir),
                socket_destroy.clone(),
            );
            let counters = ServiceCounters::new(args.bpf_dir.clone(), names.clone());
            let gc = ConntrackGc::new(args.bpf_dir.clone());
            tokio::spawn(run_conntrack_gc(gc.clone()));
            (Box::new(proxy), vec![Box::new(counters), Box::new(gc)])
        }
        // The netfilter modes follow a UDP flow's conntrack entry, not their rules: each sync
        // is followed by deleting the entries it left pointing at removed backends.
        ProxyMode::Iptables => (
            Box::new(FlushStaleUdp::new(
                Box::new(IptablesProxy::new(iptables::Binaries::detect())),
                conntrack_flush.clone(),
            )),
            Vec::new(),
        ),
        ProxyMode::Nftables => (
            Box::new(FlushStaleUdp::new(
                Box::new(NftablesProxy::default()),
                conntrack_flush.clone(),
            )),
            Vec::new(),
        ),
        ProxyMode::Ipvs => (
            Box::new(FlushStaleUdp::new(
                Box::new(IpvsProxy::new(
                    args.service_cidr,
                    route::node_addresses().await?,
                )?),
                conntrack_flush.clone(),
            )),
            Vec::new(),
        ),
    };
    tracing::info!(mode = proxy.name(), "proxy loaded");

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let (stop_tx, stop_rx) = watch::channel(false);
    // In cluster mode the node registers before its pods start: their addresses come from the
    // pod CIDR the control plane assigns it.
    let mut kubelet_addr = None;
    let registration = match &args.kubeconfig {
        Some(kubeconfig) => {
            let node_name = node_name(&args)?;
            let node_ip = match args.node_ip {
                Some(ip) => Some(ip),
                None => route::node_addresses().await?.first().copied(),
            };
            // The log endpoint listens on the node's address only (where the API server
            // dials it), unless told otherwise.
            kubelet_addr = match (args.kubelet_port, args.kubelet_address.or(node_ip)) {
                (0, _) | (_, None) => None,
                (port, Some(ip)) => Some(std::net::SocketAddr::from((ip, port))),
            };
            // The node's client certificate first, if it has none; a signal meanwhile stops
            // the daemon with --kubeconfig untouched.
            if let Some(plan) = &bootstrap {
                tokio::select! {
                    done = cluster::bootstrap::run(plan, &node_name, args.bootstrap_timeout) => match done {
                        Ok(()) => {}
                        // The current certificate still works: better than none.
                        Err(error) if plan.renewing() => tracing::warn!("renewing the client certificate: {error}; going on with the current one"),
                        Err(error) => return Err(anyhow::Error::new(error).context(format!("TLS bootstrap for {}", kubeconfig.display()))),
                    },
                    _ = terminate.recv() => return Ok(()),
                    _ = interrupt.recv() => return Ok(()),
                }
            }
            // Registration retries until the API server answers; a signal meanwhile stops
            // the daemon (nothing of the cluster's has started yet).
            tokio::select! {
                registered = cluster::register(kubeconfig, &node_name, node_ip, args.max_pods, kubelet_addr.map(|a| a.port()), &stop_rx) => Some(registered?),
                _ = terminate.recv() => return Ok(()),
                _ = interrupt.recv() => return Ok(()),
            }
        }
        None => None,
    };
    let pod_cidr = match registration.as_ref().and_then(|r| r.pod_cidr) {
        Some(cidr) => cidr,
        None => {
            if registration.is_some() {
                tracing::warn!(pod_cidr = %args.pod_cidr, "no pod CIDR assigned by the control plane; using --pod-cidr");
            }
            args.pod_cidr
        }
    };
    // In a cluster, flows that reach this node for a backend on another node leave with its
    // address (the eBPF mode's source NAT; the netfilter modes masquerade by rule).
    if let Some(node_ip) = registration.as_ref().and_then(|r| r.facts.internal_ip) {
        proxy
            .join_cluster(node_ip, pod_cidr)
            .context("setting the datapath's source NAT")?;
    }
    // The files of pods' secret, configMap and projected volumes, which only an API server has.
    let volume_contents = registration
        .as_ref()
        .map(|_| Arc::new(cluster::volume_contents::ApiVolumeContents::default()));
    let mut runtime_config = runtime_config(&args, pod_cidr).await?;
    runtime_config.volume_contents = volume_contents
        .clone()
        .map(|c| c as Arc<dyn runtime::volumes::VolumeContents>);
    let runtime_config = Arc::new(runtime_config);
    // Without it OOM kills are still found, later, through the cgroups' counters.
    let _oom_watcher = match runtime::oom::start(runtime_config.oom_events.clone()) {
        Ok(task) => {
            tracing::info!("OOM watcher attached to oom/mark_victim");
            Some(AbortOnDrop(task))
        }
        Err(error) => {
            tracing::warn!("no OOM watcher: {error}");
            None
        }
    };
    let mut collectors = collectors;
    collectors.push(Box::new(runtime::metrics::PodCollector::new(
        runtime_config.clone(),
    )));
    let (desired_pods, desired_rx) = watch::channel(None);
    let pod_manager = tokio::spawn(runtime::run_manager(runtime_config.clone(), desired_rx));
    let metrics = Arc::new(Metrics::new(
        args.proxy_mode.name(),
        collectors,
        conntrack_flush,
        socket_destroy,
    ));
    let mut cluster = match (registration, volume_contents) {
        (Some(registration), Some(volume_contents)) => Some(
            Cluster::start(
                registration,
                runtime_config.clone(),
                volume_contents,
                &args.state_dir,
                kubelet_addr,
            )
            .await?,
        ),
        _ => None,
    };
    let (metrics_addr, server) =
        metrics::serve(args.metrics_addr, metrics.clone(), stopped(stop_rx))
            .await
            .with_context(|| format!("cannot serve metrics on {}", args.metrics_addr))?;
    let server = tokio::spawn(server);
    tracing::info!(addr = %metrics_addr, "serving /metrics and /healthz");

    let (_watcher, mut changes) = match &args.manifests {
        Some(dir) => {
            let (watcher, changes) =
                watch_dir(dir).with_context(|| format!("cannot watch {}", dir.display()))?;
            (Some(watcher), Some(changes))
        }
        None => (None, None),
    };
    let mut manifests = args.manifests.as_ref().map(ManifestDir::new);
    let mut tracker = ChangeTracker::new(args.service_cidr);

    // The reconcile loop below is the future `main` drives with `block_on`: it runs on the
    // main thread, never on one of the runtime's two worker threads, and nothing else is
    // multiplexed into it (the pod manager, its workers and probes, and the metrics server
    // are spawned). So a reconcile that blocks for seconds (an `iptables-restore` of 10,000
    // services) holds only this loop; `probes_keep_their_period_during_a_long_sync` shows it.
    let cluster_changed = cluster.as_ref().map(|c| c.objects.changed.clone());
    let mut reconcile = || {
        reconcile(
            manifests.as_mut(),
            cluster.as_mut(),
            &mut tracker,
            proxy.as_mut(),
            &metrics,
            &names,
            &desired_pods,
            &runtime_config,
        )
    };
    let endpoints_changed = runtime_config.endpoints_changed.clone();

    // Changes are synced at once unless they come faster than the limiter allows; a failed
    // sync is retried on its own, with backoff, not only on the next file change.
    let mut limiter = SyncLimiter::new(args.min_sync_interval, args.sync_burst, Instant::now());
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    let first = reconcile();
    if first.kernel_written {
        limiter.take(Instant::now());
    }
    let mut retry_at = (!first.ok).then(|| Instant::now() + backoff.next_delay());
    // Harnesses wait for this exact message: keep it unique in the log.
    tracing::info!("daemon ready");
    let mut pending = false;
    let mut allowed_at: Option<Instant> = None;
    loop {
        let wake = [retry_at, allowed_at].into_iter().flatten().min();
        let timer = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let manifest_change = async {
            match changes.as_mut() {
                Some(changes) => changes.next().await,
                None => std::future::pending().await,
            }
        };
        let cluster_change = async {
            match cluster_changed.as_ref() {
                Some(changed) => changed.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            change = manifest_change => {
                if change.is_none() {
                    bail!("the watch on the manifest directory ended");
                }
                pending = true;
            }
            () = cluster_change => pending = true,
            // A pod's readiness or address changed: its Services' endpoints did too.
            () = endpoints_changed.notified() => pending = true,
            () = timer => {
                pending |= retry_at.is_some_and(|at| at <= Instant::now());
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
        if !pending {
            continue;
        }
        match limiter.check(Instant::now()) {
            Ok(()) => {
                pending = false;
                allowed_at = None;
                let outcome = reconcile();
                if outcome.kernel_written {
                    limiter.take(Instant::now());
                }
                retry_at = if outcome.ok {
                    backoff.reset();
                    None
                } else {
                    let delay = backoff.next_delay();
                    tracing::warn!(?delay, "will retry the sync");
                    Some(Instant::now() + delay)
                };
            }
            Err(at) => allowed_at = Some(at),
        }
    }
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    let _ = server.await;
    // The node's Lease simply expires; its pods keep running.
    drop(cluster);
    // Pods keep running: a new daemon adopts them from the state directory.
    drop(desired_pods);
    let _ = pod_manager.await;
    // The links are pinned: the datapath stays in place until the next daemon takes over.
    drop(proxy);
    tracing::info!(
        "stopped; the datapath stays pinned in {}",
        args.bpf_dir.display()
    );
    Ok(())
}

/// Aborts a background task when dropped (at the end of `run`).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The conntrack map's size from the flags and the node's memory.
fn conntrack_size(args: &Args) -> anyhow::Result<ct_sizing::ConntrackSize> {
    let mem_total = ct_sizing::mem_total(std::path::Path::new("/proc/meminfo"))?;
    Ok(ct_sizing::conntrack_size(
        args.conntrack_max,
        args.map_dynamic_size_ratio,
        mem_total,
    )?)
}

fn ebpf_limits(args: &Args) -> Limits {
    Limits {
        max_services: args.max_services,
        max_backends: args.max_backends,
    }
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The pod runtime's view of the node, from the daemon's flags.
async fn runtime_config(args: &Args, pod_cidr: Ipv4Cidr) -> anyhow::Result<RuntimeConfig> {
    let state = runtime::state::StateDir::new(&args.state_dir);
    let cgroup = cgroup_path(args)?;
    let cgroups = runtime::cgroups::CgroupLayout::detect(&cgroup)?;
    tracing::debug!(?cgroups, "cgroup layout");
    Ok(RuntimeConfig {
        images: runtime::image::ImageStore::new(state.images()),
        ipam: runtime::ipam::Ipam::new(state.ipam(), pod_cidr)?,
        state,
        cgroups,
        bridge: args.pod_bridge.clone(),
        exe: std::env::current_exe().context("locating the node-daemon executable")?,
        backoff: runtime::lifecycle::BackoffPolicy {
            initial: args.restart_backoff,
            max: args.restart_backoff_max,
            reset_after: args.restart_backoff_reset,
        },
        overlay: runtime::overlay_available(),
        log_max_size: args.container_log_max_size,
        log_max_files: args.container_log_max_files,
        preparations: tokio::sync::Semaphore::new(args.max_parallel_container_starts as usize),
        node_ip: route::node_addresses()
            .await
            .ok()
            .and_then(|a| a.first().copied()),
        resolv_conf: PathBuf::from("/etc/resolv.conf"),
        views: Default::default(),
        endpoints_changed: Default::default(),
        status_changed: Default::default(),
        endpoints_version: Default::default(),
        endpoints_synced: watch::channel(0).0,
        oom_events: tokio::sync::broadcast::channel(256).0,
        volume_contents: None,
    })
}

/// `--node-name`, or the host name as the kubelet defaults it (lower-cased).
fn node_name(args: &Args) -> anyhow::Result<String> {
    if let Some(name) = &args.node_name {
        return Ok(name.clone());
    }
    let host = nix::unistd::gethostname().context("reading the host name for --node-name")?;
    Ok(host.to_string_lossy().to_lowercase())
}

fn cgroup_path(args: &Args) -> anyhow::Result<PathBuf> {
    match &args.cgroup {
        Some(path) => Ok(path.clone()),
        None => Ok(cgroup::default_cgroup()?),
    }
}

/// Loading BPF programs and changing routes needs privileges; say which are missing up front
/// instead of failing half-way with EPERM.
fn check_capabilities() -> anyhow::Result<()> {
    let needed = [Capability::CAP_SYS_ADMIN, Capability::CAP_NET_ADMIN];
    let missing: Vec<String> = needed
        .into_iter()
        .filter(|cap| !caps::has_cap(None, CapSet::Effective, *cap).unwrap_or(false))
        .map(|cap| cap.to_string())
        .collect();
    if !missing.is_empty() {
        bail!("node-daemon needs {} (run it as root)", missing.join(", "));
    }
    Ok(())
}

/// Deletes expired per-packet conntrack flows every [`DEFAULT_GC_INTERVAL`], for the life of
/// the daemon (the task ends with its runtime). A failed sweep is logged and retried next time.
async fn run_conntrack_gc(gc: ConntrackGc) {
    let mut tick = tokio::time::interval(DEFAULT_GC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let gc = gc.clone();
        match tokio::task::spawn_blocking(move || gc.run_once()).await {
            Ok(Ok(sweep)) => {
                tracing::debug!(deleted = sweep.deleted, live = ?sweep.live, "conntrack GC")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "conntrack GC failed"),
            Err(e) => tracing::warn!(error = %e, "conntrack GC task failed"),
        }
    }
}
