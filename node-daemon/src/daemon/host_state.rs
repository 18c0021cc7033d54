//! What the daemon sets up on the host and leaves there across restarts — the service route,
//! forwarding for pods in the NAT modes — what a mode starting removes of the others, and
//! `--cleanup`, which removes all of it.

use anyhow::bail;
use keel_host::cgroup;
use keel_proxy::{
    ebpf::{pins, tc_attach},
    iptables, ipvs, nftables, route,
};
use keel_runtime as runtime;
use std::sync::Arc;

use super::{cgroup_path, runtime_config};
use crate::{Args, ProxyMode};

/// What the netfilter modes need for pods on keel's bridge, as the kubelet's bridge networking
/// and every bridge CNI plugin set it. A pod's connection to a ClusterIP is DNATed on the node
/// and routed back out of the bridge (`ip_forward`); its backend's reply, when the backend sits
/// on the same bridge, crosses it at layer 2 and is un-NATed only if bridged traffic passes
/// netfilter (`bridge-nf-call-iptables`, br_netfilter). The eBPF mode needs neither: the socket
/// programs translate before any packet exists. Both settings belong to the daemon's network
/// namespace.
pub(super) fn enable_forwarding_for_pods() {
    for (sysctl, why) in [
        (
            "/proc/sys/net/ipv4/ip_forward",
            "pods' connections to a ClusterIP cannot be routed back to a pod",
        ),
        (
            "/proc/sys/net/bridge/bridge-nf-call-iptables",
            "replies from a pod on keel's bridge are not un-NATed (load br_netfilter)",
        ),
    ] {
        match std::fs::read_to_string(sysctl) {
            Ok(value) if value.trim() == "1" => {}
            Ok(_) => match std::fs::write(sysctl, "1") {
                Ok(()) => tracing::info!(sysctl, "enabled for pods in the netfilter modes"),
                Err(error) => tracing::warn!(sysctl, "cannot enable ({error}): {why}"),
            },
            Err(error) => tracing::warn!(sysctl, "cannot read ({error}): {why}"),
        }
    }
}

/// The route that keeps ClusterIPs on the node: a blackhole for the eBPF mode (whose
/// translation happens before routing), a dummy interface for the netfilter modes (whose
/// translation of local connections happens after it).
pub(super) async fn install_service_route(
    mode: ProxyMode,
    cidr: keel_proxy::tracker::Ipv4Cidr,
) -> anyhow::Result<()> {
    if mode == ProxyMode::Ebpf {
        route::install_blackhole(cidr).await?;
        route::remove_dummy_interface().await?;
        tracing::info!(%cidr, "blackhole route installed for the service CIDR");
    } else {
        route::install_dummy_route(cidr).await?;
        tracing::info!(%cidr, interface = route::DUMMY_INTERFACE, "service CIDR routed into a dummy interface");
    }
    Ok(())
}

/// Like kube-proxy, a mode starting removes what the other modes left: two proxies
/// translating the same ClusterIP would fight. Failures are logged, not fatal (a missing `nft`
/// binary means there is no nftables state either).
pub(super) async fn remove_other_modes(args: &Args) {
    if args.proxy_mode != ProxyMode::Ebpf {
        match pins::remove_all(&args.bpf_dir) {
            Ok(0) => {}
            Ok(count) => {
                tracing::info!(count, dir = %args.bpf_dir.display(), "removed the eBPF mode's pins")
            }
            Err(error) => tracing::warn!("removing the eBPF mode's pins: {error}"),
        }
        match tc_attach::remove_classic_filters() {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "removed the eBPF mode's classic tc filters"),
            Err(error) => tracing::warn!("removing the eBPF mode's classic tc filters: {error}"),
        }
    }
    if args.proxy_mode != ProxyMode::Iptables {
        if let Err(error) = iptables::cleanup(&iptables::Binaries::detect()) {
            tracing::debug!("removing the iptables mode's rules: {error}");
        }
    }
    if args.proxy_mode != ProxyMode::Nftables {
        if let Err(error) = nftables::cleanup() {
            tracing::debug!("removing the nftables mode's table: {error}");
        }
    }
    if args.proxy_mode != ProxyMode::Ipvs {
        if let Err(error) = ipvs::cleanup(args.service_cidr) {
            tracing::debug!("removing the ipvs mode's services: {error}");
        }
    }
}

/// Removes what keel leaves in place across restarts, for every mode: pinned links (detaching
/// the programs) and maps, iptables chains, the nftables table, the service route and dummy
/// interface, keel's cgroup. Every step runs even if an earlier one failed; the exit status
/// reports any failure.
pub async fn cleanup(args: &Args) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    // Pods first: their processes must leave the cgroups before those can go.
    match runtime_config(args, args.pod_cidr).await {
        Ok(config) => {
            let config = Arc::new(config);
            let stopped = runtime::stop_all(config.clone()).await;
            tracing::info!(pods = stopped, "stopped keel's pods");
            match runtime::network::remove_bridge(&args.pod_bridge).await {
                Ok(true) => tracing::info!(bridge = %args.pod_bridge, "removed the pod bridge"),
                Ok(false) => {}
                Err(error) => failures.push(error.to_string()),
            }
            if let Err(error) = config.cgroups.remove_all() {
                failures.push(error.to_string());
            }
        }
        Err(error) => failures.push(format!("{error:#}")),
    }
    match iptables::cleanup(&iptables::Binaries::detect()) {
        Ok(()) => tracing::info!("removed keel's iptables chains"),
        Err(error) => failures.push(error.to_string()),
    }
    match nftables::cleanup() {
        Ok(()) => tracing::info!("removed keel's nftables table"),
        Err(error) => failures.push(error.to_string()),
    }
    match ipvs::cleanup(args.service_cidr) {
        Ok(0) => {}
        Ok(count) => tracing::info!(count, "removed keel's IPVS services"),
        Err(error) => failures.push(error.to_string()),
    }
    match pins::remove_all(&args.bpf_dir) {
        Ok(count) => {
            tracing::info!(dir = %args.bpf_dir.display(), count, "removed pinned links and maps")
        }
        Err(error) => failures.push(error.to_string()),
    }
    // Classic tc filters are not pinned: they are found on the interfaces, by name.
    match tc_attach::remove_classic_filters() {
        Ok(0) => {}
        Ok(count) => tracing::info!(count, "removed keel's classic tc filters"),
        Err(error) => failures.push(format!("removing classic tc filters: {error}")),
    }
    match route::remove_pod_routes().await {
        Ok(0) => {}
        Ok(count) => tracing::info!(count, "removed the routes to other nodes' pods"),
        Err(error) => failures.push(error.to_string()),
    }
    match route::remove_service_route(args.service_cidr).await {
        Ok(true) => tracing::info!(cidr = %args.service_cidr, "removed the service route"),
        Ok(false) => tracing::info!(cidr = %args.service_cidr, "no service route of keel's"),
        Err(error) => failures.push(error.to_string()),
    }
    match cgroup_path(args).map(|path| (cgroup::remove(&path), path)) {
        Ok((Ok(true), path)) => tracing::info!(cgroup = %path.display(), "removed keel's cgroup"),
        Ok((Ok(false), path)) => tracing::info!(cgroup = %path.display(), "no cgroup of keel's"),
        Ok((Err(error), _)) => failures.push(error.to_string()),
        Err(error) => failures.push(error.to_string()),
    }
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("cleanup incomplete:\n  {}", failures.join("\n  "))
    }
}
