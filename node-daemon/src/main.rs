//! `node-daemon`: keel's per-node agent.
//!
//! # Layout
//! - [`daemon`]: start-up, the reconcile loop, shutdown.
//! - [`manifests`] → [`tracker`] → [`service_table`]: objects in, desired datapath out.
//! - [`proxy`]: backends that write the desired datapath into the kernel (`ebpf`).
//! - [`cgroup`], [`route`]: the host state keel owns besides its BPF objects.
//! - [`metrics`], [`watch`]: serving `/metrics`, noticing manifest changes.

mod cgroup;
mod daemon;
mod manifests;
mod metrics;
mod proxy;
mod route;
mod service_table;
mod tracker;
mod watch;

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::tracker::Ipv4Cidr;

/// keel's node daemon: translates Service ClusterIPs in the kernel.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Args {
    /// Directory of Kubernetes-style YAML (Service, EndpointSlice), watched for changes.
    #[arg(long, value_name = "DIR", required_unless_present = "cleanup")]
    pub manifests: Option<PathBuf>,
    /// How services are implemented in the kernel.
    #[arg(long, value_enum, default_value_t = ProxyMode::Ebpf)]
    pub proxy_mode: ProxyMode,
    /// Where to serve /metrics and /healthz.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:10249")]
    pub metrics_addr: SocketAddr,
    /// The cgroup (v2) whose processes get translated connections
    /// [default: <cgroup2 mount>/keel].
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// ClusterIPs come from this range; it is blackholed on this host.
    #[arg(long, value_name = "CIDR", default_value = "10.96.0.0/12")]
    pub service_cidr: Ipv4Cidr,
    /// Remove everything keel attached, pinned or routed on this host, then exit.
    #[arg(long)]
    pub cleanup: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProxyMode {
    /// keel's eBPF programs: socket-level translation in keel's cgroup.
    Ebpf,
}

impl ProxyMode {
    pub fn name(self) -> &'static str {
        match self {
            ProxyMode::Ebpf => "ebpf",
        }
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if args.cleanup {
        runtime.block_on(daemon::cleanup(&args))
    } else {
        runtime.block_on(daemon::run(args))
    }
}
