//! keel's node daemon, as a library: the `node-daemon` binary is a thin shell around it, and
//! the end-to-end tests drive its pieces (the eBPF proxy above all) directly.
//!
//! # Layout
//! - [`daemon`]: start-up, the reconcile loop, shutdown and cleanup: the wiring of the
//!   service proxy (`keel-proxy`) and the pod runtime (`keel-runtime`).
//! - [`manifests`], [`watch`]: the manifest directory and its changes.
//! - [`cluster`]: cluster mode — the node registered with an API server, its pods, Services
//!   and EndpointSlices from there, pod status back.
//! - [`limiter`]: how often the proxy syncs.
//! - [`metrics`]: serving `/metrics` and `/healthz`.
//! - [`inspect`]: `node-daemon services`, what the kernel maps hold.
//! - [`monitor`]: `node-daemon monitor`, the datapath's events as they happen.

pub mod cluster;
pub mod daemon;
pub mod inspect;
pub mod limiter;
pub mod manifests;
pub mod metrics;
pub mod monitor;
pub mod watch;

pub use keel_runtime::cli::OutputFormat;

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, ValueEnum};

use keel_host::cidr::Ipv4Cidr;

/// keel's node daemon: translates Service ClusterIPs in the kernel.
#[derive(Debug, Parser)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Directory of Kubernetes-style YAML (Service, EndpointSlice, static Pods), watched for
    /// changes.
    #[arg(long, value_name = "DIR", required_unless_present_any = ["cleanup", "kubeconfig"])]
    pub manifests: Option<PathBuf>,
    /// Join a cluster: register this node with the API server of this kubeconfig, run the
    /// pods bound to it and serve the cluster's Services (the kubelet's and kube-proxy's
    /// --kubeconfig). The manifest directory, if given too, adds static pods and services.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// TLS bootstrap (the kubelet's flag): a kubeconfig whose user has a bootstrap token
    /// (`keelctl join-token` prints one). When the --kubeconfig file is missing, holds no
    /// client certificate, or its certificate has expired (or is in the last tenth of its
    /// lifetime), the node asks the cluster for a certificate for system:node:NAME with a
    /// CertificateSigningRequest, waits until it is approved and signed, and writes
    /// --kubeconfig (mode 0600) with it. Needs --kubeconfig.
    #[arg(long, value_name = "FILE", requires = "kubeconfig")]
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// How long TLS bootstrap waits for the certificate before the daemon gives up (kubeadm
    /// join waits as long; an auto-approved request is signed in seconds).
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = parse_duration)]
    pub bootstrap_timeout: std::time::Duration,
    /// This node's name in the cluster [default: the host name, lower-cased].
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// The address other nodes reach this one at (its Node's InternalIP) [default: the first
    /// address of this network namespace].
    #[arg(long, value_name = "IP")]
    pub node_ip: Option<std::net::Ipv4Addr>,
    /// Where the log endpoint (`kubectl logs` through the API server) listens, the kubelet's
    /// port; 0 serves none.
    #[arg(long, value_name = "PORT", default_value_t = crate::cluster::logs_server::DEFAULT_PORT)]
    pub kubelet_port: u16,
    /// The address the log endpoint binds [default: the node's address, --node-ip].
    #[arg(long, value_name = "IP")]
    pub kubelet_address: Option<std::net::Ipv4Addr>,
    /// The most pods this node takes (the kubelet's --max-pods), reported as its capacity.
    #[arg(long, value_name = "N", default_value_t = 110, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_pods: u32,
    /// How services are implemented in the kernel.
    #[arg(long, value_enum, default_value_t = ProxyMode::Ebpf)]
    pub proxy_mode: ProxyMode,
    /// Where to serve /metrics and /healthz.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:10249")]
    pub metrics_addr: SocketAddr,
    /// The cgroup (v2) whose processes get translated connections
    /// [default: keel under the cgroup2 mount].
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// The bpffs directory where keel pins its maps and links.
    #[arg(long, value_name = "DIR", default_value = keel_proxy::ebpf::pins::DEFAULT_BPF_DIR)]
    pub bpf_dir: PathBuf,
    /// ClusterIPs come from this range; it is blackholed on this host.
    #[arg(long, value_name = "CIDR", default_value = "10.96.0.0/12")]
    pub service_cidr: Ipv4Cidr,
    /// Room in the kernel maps for this many service ports.
    #[arg(long, value_name = "N", default_value_t = keel_common::DEFAULT_MAX_SERVICES,
          value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub max_services: u32,
    /// Room in the kernel maps for this many backends (and as many service slots).
    #[arg(long, value_name = "N", default_value_t = keel_common::DEFAULT_MAX_BACKENDS,
          value_parser = clap::value_parser!(u32).range(1..=4_194_304))]
    pub max_backends: u32,
    /// Translate packets per packet on this interface too (tc ingress DNAT, egress reverse
    /// NAT): for clients outside keel's cgroup reaching the node through it, and NodePorts.
    /// Repeat for several interfaces.
    #[arg(long = "tc-interface", value_name = "NAME")]
    pub tc_interfaces: Vec<String>,
    /// Attach the per-packet programs through tcx (links, Linux 6.6+) where the kernel has
    /// it; `false` uses classic tc filters, as kernels before 6.6 always do (Cilium's flag).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub enable_tcx: bool,
    /// Write the eBPF programs' debug records to this log (through aya-log): each
    /// connection's backend at connect4, drops and conntrack misses on tc ingress. Without
    /// it the verifier removes the logging code, so the programs cost what they did without
    /// it. `--proxy-mode ebpf` only.
    #[arg(long)]
    pub bpf_debug_log: bool,
    /// Entries per service in the Maglev tables of the per-packet path (a prime of
    /// 1021, 2039, 4093, 8191, 16381, 32749, 65521).
    #[arg(long, value_name = "N", default_value_t = keel_proxy::ebpf::maglev::DEFAULT_SIZE,
          value_parser = parse_maglev_size)]
    pub maglev_table_size: u32,
    /// The seed of the per-packet path's flow hash (Cilium's `maglev.hashSeed`): a 32-bit
    /// number, decimal or 0x-hex. Give every node of a cluster the same one, or a flow that
    /// reaches two nodes goes to two backends.
    #[arg(long, value_name = "SEED", default_value_t = keel_common::DEFAULT_MAGLEV_HASH_SEED,
          value_parser = parse_hash_seed)]
    pub maglev_hash_seed: u32,
    /// Service ports that can have a Maglev table, at most --max-services (the Maglev map is
    /// sized for this many tables of --maglev-table-size entries; 128 bytes per 32 entries)
    /// [default: as many as 1,048,576 chunks hold (2,048 at the default table size), at most
    /// --max-services]. With --tc-interface, a service beyond it is not programmed, and
    /// reported.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_maglev_services: Option<u32>,
    /// Entries of the per-packet conntrack map (two a flow; 96 bytes each), 1024 to 16 Mi
    /// (Cilium's --bpf-ct-global-tcp-max) [default: sized by --map-dynamic-size-ratio].
    #[arg(long, value_name = "N")]
    pub conntrack_max: Option<u32>,
    /// Share of the node's memory (MemTotal) the conntrack map is sized for, more than 0 and
    /// at most 1, the size kept within 128 Ki..16 Mi entries (Cilium's
    /// --bpf-map-dynamic-size-ratio) [default: 0.0025]. Without this flag or --conntrack-max,
    /// a pinned map of another size is kept.
    #[arg(long, value_name = "RATIO")]
    pub map_dynamic_size_ratio: Option<f64>,
    /// Syncs beyond the burst wait this long after each other (changes meanwhile are folded
    /// into one sync), like kube-proxy's --min-sync-period.
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = parse_duration)]
    pub min_sync_interval: std::time::Duration,
    /// Syncs allowed back to back before --min-sync-interval applies.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub sync_burst: u32,
    /// Where node state lives: pods, their logs, the image store, address allocations.
    #[arg(long, value_name = "DIR", default_value = keel_runtime::state::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Pod addresses come from this range; the bridge gets its first address.
    #[arg(long, value_name = "CIDR", default_value = "10.244.0.0/24")]
    pub pod_cidr: Ipv4Cidr,
    /// The node bridge pods are attached to.
    #[arg(long, value_name = "NAME", default_value = keel_runtime::network::DEFAULT_BRIDGE)]
    pub pod_bridge: String,
    /// First wait before restarting a failed container; doubles per crash (kubelet: 10s).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub restart_backoff: std::time::Duration,
    /// The longest wait before a restart (kubelet: 300s).
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = parse_duration)]
    pub restart_backoff_max: std::time::Duration,
    /// A container that ran this long without failing starts over at the first wait.
    #[arg(long, value_name = "DURATION", default_value = "600s", value_parser = parse_duration)]
    pub restart_backoff_reset: std::time::Duration,
    /// A container's log file is rotated when it would grow past this (kubelet's
    /// `containerLogMaxSize`).
    #[arg(long, value_name = "QUANTITY", default_value = "10Mi", value_parser = parse_log_size)]
    pub container_log_max_size: u64,
    /// Log files kept per container, the live one included (kubelet's `containerLogMaxFiles`).
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..))]
    pub container_log_max_files: u32,
    /// Containers whose file systems (writable layer, volumes, cgroups) are prepared at once.
    /// Each preparation holds a thread of its own; in a burst of pod starts, more than a few
    /// at once only queue on the disk and the cores, and every extra thread keeps its stack
    /// and allocations (the kubelet's `--max-parallel-image-pulls` bounds pulls the same way).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_parallel_container_starts: u32,
    /// Remove everything keel attached, pinned or routed on this host, and stop its pods,
    /// then exit.
    #[arg(long)]
    pub cleanup: bool,
}

/// `250ms`, `1s`, `0s`.
/// A size such as `10Mi`, at least 64Ki (four of the longest log entries).
fn parse_log_size(text: &str) -> Result<u64, String> {
    let bytes = keel_api::quantity::Quantity::new(text).bytes()?;
    if bytes < 64 << 10 {
        return Err(format!("{text:?} is below the smallest log size, 64Ki"));
    }
    Ok(bytes)
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1000)
    } else {
        return Err(format!("{text:?} needs a unit: ms or s (e.g. 200ms)"));
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{number:?} is not a whole number"))?;
    Ok(std::time::Duration::from_millis(value * scale))
}

/// `12345` or `0x6b65656c`: any 32-bit value.
fn parse_hash_seed(text: &str) -> Result<u32, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("{text:?} is not a 32-bit number (decimal, or hex with 0x)"))
}

fn parse_maglev_size(text: &str) -> Result<u32, String> {
    let size: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if keel_proxy::ebpf::maglev::SIZES.contains(&size) {
        Ok(size)
    } else {
        Err(format!(
            "{size} is not one of {:?}",
            keel_proxy::ebpf::maglev::SIZES
        ))
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the services in the kernel maps, with backends and counters.
    Services {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
        /// The bpffs directory where keel pins its maps.
        #[arg(long, value_name = "DIR", default_value = keel_proxy::ebpf::pins::DEFAULT_BPF_DIR)]
        bpf_dir: PathBuf,
    },
    /// Stream datapath events live (ebpf mode): translations, drops with their reason,
    /// conntrack misses. The programs report only while a monitor listens.
    Monitor {
        /// Output format: one line per event, or one JSON object per line.
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
        /// Only this service: its id, `IP:PORT` or `IP:PORT/PROTO` (repeat for several).
        #[arg(long = "service", value_name = "SERVICE")]
        services: Vec<String>,
        /// Only events of this type: translate, drop, conntrack (repeat for several).
        #[arg(long = "type", value_name = "TYPE")]
        kinds: Vec<String>,
        /// Only events with this reason: no-backend, no-snat-port, ct-miss,
        /// ct-reply-evicted, ct-collision (repeat for several).
        #[arg(long = "reason", value_name = "REASON")]
        reasons: Vec<String>,
        /// The bpffs directory where keel pins its maps.
        #[arg(long, value_name = "DIR", default_value = keel_proxy::ebpf::pins::DEFAULT_BPF_DIR)]
        bpf_dir: PathBuf,
    },
    /// List the pods on this node, with their containers' states.
    Pods {
        /// Output format (JSON carries the full status, Kubernetes field names).
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
        #[arg(long, value_name = "DIR", default_value = keel_runtime::state::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Print a container's log.
    Logs {
        pod: String,
        #[arg(short = 'n', long, default_value = keel_api::meta::DEFAULT_NAMESPACE)]
        namespace: String,
        /// The container (needed when the pod has several).
        #[arg(short, long)]
        container: Option<String>,
        /// Keep printing as the log grows.
        #[arg(short, long)]
        follow: bool,
        /// The run before the current one (after a restart).
        #[arg(short, long)]
        previous: bool,
        /// Prefix each line with the time it was written.
        #[arg(long)]
        timestamps: bool,
        #[arg(long, value_name = "DIR", default_value = keel_runtime::state::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// The node's image store.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
        #[arg(long, value_name = "DIR", default_value = keel_runtime::state::DEFAULT_STATE_DIR, global = true)]
        state_dir: PathBuf,
    },
    /// (internal) A pod's pause process.
    #[command(hide = true)]
    Pause {
        #[arg(long)]
        hostname: String,
    },
    /// (internal) A container's shim.
    #[command(hide = true)]
    Shim {
        #[arg(long)]
        spec: PathBuf,
    },
    /// (internal) Run a command inside a running container (exec probes).
    #[command(hide = true)]
    Nsexec {
        #[arg(long)]
        spec: PathBuf,
        #[arg(long)]
        pid: i32,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Run a command inside a running container, as `kubectl exec`.
    Exec {
        pod: String,
        #[arg(short = 'n', long, default_value = keel_api::meta::DEFAULT_NAMESPACE)]
        namespace: String,
        /// The container (needed when the pod has several).
        #[arg(short, long)]
        container: Option<String>,
        #[arg(long, value_name = "DIR", default_value = keel_runtime::state::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Show a pod: its containers, their states, probes and the pod's events.
    Describe {
        pod: String,
        #[arg(short = 'n', long, default_value = keel_api::meta::DEFAULT_NAMESPACE)]
        namespace: String,
        #[arg(long, value_name = "DIR", default_value = keel_runtime::state::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Import an OCI image layout or a `docker save` archive (a .tar file or a directory).
    Import {
        file: PathBuf,
        /// The image's name, for archives that do not carry one.
        #[arg(long)]
        name: Option<String>,
    },
    /// List the images in the store.
    List,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProxyMode {
    /// keel's eBPF programs: socket-level translation in keel's cgroup, per-packet on
    /// `--tc-interface`s.
    Ebpf,
    /// kube-proxy's iptables layout, written with iptables-restore.
    Iptables,
    /// kube-proxy's nftables layout: one table, verdict maps.
    Nftables,
    /// Linux IPVS (needs kernel support).
    Ipvs,
}

impl ProxyMode {
    pub fn name(self) -> &'static str {
        match self {
            ProxyMode::Ebpf => "ebpf",
            ProxyMode::Iptables => "iptables",
            ProxyMode::Nftables => "nftables",
            ProxyMode::Ipvs => "ipvs",
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Args;

    fn seed(value: &str) -> Result<u32, String> {
        // `--flag=value`: a separate "-1" would be taken for a flag of its own.
        let flag = format!("--maglev-hash-seed={value}");
        Args::try_parse_from(["node-daemon", "--manifests", "m", &flag])
            .map(|args| args.maglev_hash_seed)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn maglev_hash_seed_takes_decimal_or_hex_and_names_itself_when_wrong() {
        assert_eq!(seed("12345"), Ok(12_345));
        assert_eq!(seed("0x6b65656c"), Ok(0x6b65_656c));
        assert_eq!(seed("0xFFFFFFFF"), Ok(u32::MAX));
        for bad in ["4294967296", "-1", "0x", "seed", ""] {
            let error = seed(bad).unwrap_err();
            assert!(error.contains("--maglev-hash-seed"), "{bad:?}: {error}");
        }
        let default = Args::try_parse_from(["node-daemon", "--manifests", "m"]).unwrap();
        assert_eq!(
            default.maglev_hash_seed,
            keel_common::DEFAULT_MAGLEV_HASH_SEED
        );
    }

    #[test]
    fn parallel_container_starts_are_bounded_and_name_the_flag_when_wrong() {
        let parse = |value: &str| {
            let flag = format!("--max-parallel-container-starts={value}");
            Args::try_parse_from(["node-daemon", "--manifests", "m", &flag])
                .map(|args| args.max_parallel_container_starts)
                .map_err(|e| e.to_string())
        };
        assert_eq!(parse("1"), Ok(1));
        assert_eq!(parse("16"), Ok(16));
        // Zero would start no container at all; a huge count would undo the bound.
        for bad in ["0", "-1", "1025", "four", ""] {
            let error = parse(bad).unwrap_err();
            assert!(
                error.contains("--max-parallel-container-starts"),
                "{bad:?}: {error}"
            );
        }
        let default = Args::try_parse_from(["node-daemon", "--manifests", "m"]).unwrap();
        assert_eq!(default.max_parallel_container_starts, 4);
    }
}
