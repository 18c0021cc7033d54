//! `control-plane`: one member of keel's control plane. Today that is the replicated store,
//! serving etcd's v3 API to clients; the API server, scheduler and controllers join it here.
//!
//! Flags follow etcd's where they mean the same thing, so that an operator who has run etcd
//! reads them without a manual.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use keel_control_plane::controller_manager::{
    parse_controllers, Controller, ControllerMetrics, ControllersComponent, Settings,
};
use keel_store::member::MemberConfig;
use keel_store::server::{self, Listeners};

/// jemalloc: request handling allocates heavily on several threads, where glibc's malloc was a
/// fifth of the member's CPU (the dependency's comment in Cargo.toml has the figures).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser, Debug)]
#[command(
    name = "control-plane",
    version,
    about = "A member of keel's control plane"
)]
struct Args {
    /// This member's name (shown by `etcdctl member list`).
    #[arg(long, default_value = "default")]
    name: String,
    /// Where the raft log and snapshots live (default: ./NAME.keel).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address the raft (peer) listener binds.
    #[arg(long, default_value = "127.0.0.1:2380")]
    listen_peer: SocketAddr,
    /// Address the etcd-API (client) listener binds.
    #[arg(long, default_value = "127.0.0.1:2379")]
    listen_client: SocketAddr,
    /// The peer URL other members dial (default: http://LISTEN_PEER). It is the member's
    /// identity: its id is derived from it.
    #[arg(long)]
    advertise_peer_url: Option<String>,
    /// The client URL published in the member list (default: http://LISTEN_CLIENT).
    #[arg(long)]
    advertise_client_url: Option<String>,
    /// Every initial member as name=peer-URL, comma-separated (default: this member alone).
    #[arg(long)]
    initial_cluster: Option<String>,
    /// `new` forms the cluster from --initial-cluster on first start; `existing` joins a
    /// running cluster that added this member (`etcdctl member add`).
    #[arg(long, default_value = "new", value_parser = ["new", "existing"])]
    initial_cluster_state: String,
    /// Prometheus metrics and /health on this address.
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Raft heartbeat interval, milliseconds (etcd's flag and default unit).
    #[arg(long, default_value_t = 100)]
    heartbeat_interval: u64,
    /// Raft election timeout, milliseconds; elections time out between this and 1.25 times it.
    #[arg(long, default_value_t = 500)]
    election_timeout: u64,
    /// Applied entries between state machine snapshots, at least (etcd's default). Each writes
    /// the whole state: applies wait only while it is copied (about 20 ms at 40,000 pods), but
    /// encoding and writing it take the cores and the disk from the writes for a while, so a
    /// large state also waits for as many bytes of raft log as its last snapshot took.
    #[arg(long, default_value_t = 100_000)]
    snapshot_count: u64,
    /// Entries kept behind a snapshot for slow followers; a member further behind is sent the
    /// snapshot instead.
    #[arg(long, default_value_t = 5_000)]
    snapshot_catchup_entries: u64,
    /// History younger than this is never compacted (e.g. 5m, 1h).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    auto_compaction_retention: Duration,
    /// ...and neither are the last this many revisions.
    #[arg(long, default_value_t = 100_000)]
    auto_compaction_revisions: i64,
    /// Serve the Kubernetes API over HTTPS on this address, over this member's store or over
    /// --etcd-servers. The cluster CA, the serving certificate and `admin.kubeconfig` are
    /// made in the data directory at first start.
    #[arg(long)]
    listen_api: Option<SocketAddr>,
    /// Also serve the API over plain HTTP on this loopback address (for load generators and
    /// tests): requests without credentials there are `system:unsecured` in
    /// `system:masters`, as kube-apiserver's old insecure port. Refused on other addresses.
    #[arg(long)]
    insecure_listen_api: Option<SocketAddr>,
    /// Extra names and addresses for the serving certificate (repeatable), beyond the listen
    /// address, localhost, 127.0.0.1 and the `kubernetes` Service's names and ClusterIP.
    #[arg(long = "tls-san")]
    tls_sans: Vec<String>,
    /// Where the cluster CA and the ServiceAccount signing key live (default:
    /// DATA_DIR/pki). Members of one cluster must share them, as kubeadm's control-plane
    /// nodes share /etc/kubernetes/pki: give every member the same directory (or a copy).
    #[arg(long)]
    pki_dir: Option<PathBuf>,
    /// Bearer tokens, kube-apiserver's CSV format: token,user,uid[,"group1,group2"].
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// Write an audit event for every API request (or those --audit-policy-file names) to this
    /// file (JSON lines, kube-apiserver's `audit.k8s.io/v1` Events at the Metadata level: who
    /// did what to which object, and the answer; never bodies or credentials).
    #[arg(long)]
    audit_log_path: Option<PathBuf>,
    /// kube-apiserver's audit policy (`audit.k8s.io/v1` Policy, YAML or JSON): which requests
    /// the audit log records, and at which stages. Without it, every request at Metadata.
    #[arg(long, requires = "audit_log_path")]
    audit_policy_file: Option<PathBuf>,
    /// Requests without credentials are `system:anonymous` everywhere (otherwise only on
    /// /livez, /readyz and /healthz, so probes need no secret).
    #[arg(long)]
    anonymous_auth: bool,
    /// Do not run the scheduler in this process (pods then wait for another scheduler).
    #[arg(long)]
    disable_scheduler: bool,
    /// Do not run any controller in this process (the same as `--controllers=`).
    #[arg(long, conflicts_with = "controllers")]
    disable_controllers: bool,
    /// The controllers to run (kube-controller-manager's flag): `*` enables all, `foo`
    /// enables foo, `-foo` disables it. Known: csrapproving, csrsigning, deployment,
    /// endpointslice, garbagecollector, namespace, nodeipam, nodelifecycle, replicaset,
    /// root-ca-cert-publisher.
    #[arg(long, default_value = "*", value_parser = parse_controllers)]
    controllers: BTreeSet<Controller>,
    /// Pod CIDRs of the nodes come from this range (kube-controller-manager's --cluster-cidr;
    /// the node daemons route them).
    #[arg(long, default_value = "10.244.0.0/16", value_parser = parse_ipv4_cidr)]
    cluster_cidr: (std::net::Ipv4Addr, u8),
    /// How long a node may go without renewing its Lease (or posting its status) before it is
    /// marked `Ready=Unknown` and tainted unreachable (kube-controller-manager's flag and
    /// default).
    #[arg(long, default_value = "40s", value_parser = humantime::parse_duration)]
    node_monitor_grace_period: Duration,
    /// The prefix length of each node's pod CIDR.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// The longest validity of a certificate the CSR signer issues from the cluster CA
    /// (kube-controller-manager's flag and default); a request may ask for less.
    #[arg(long, default_value = "8760h", value_parser = parse_signing_duration)]
    cluster_signing_duration: Duration,
    /// Run the scheduler (and the controllers) only while this member holds the `kube-system/kube-scheduler` Lease
    /// (kube-scheduler's --leader-elect, on by default): with several members, one schedules.
    /// The controllers are elected the same way on `kube-system/kube-controller-manager`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// The scheduler's `KubeSchedulerConfiguration` (kubescheduler.config.k8s.io/v1, YAML):
    /// profiles, plugins, weights, args. kube-scheduler's defaults without it.
    #[arg(long)]
    scheduler_config: Option<PathBuf>,
    /// Keep cluster state in an external etcd v3 cluster (comma-separated client URLs)
    /// instead of the embedded store; this process then serves the API alone.
    #[arg(long, value_delimiter = ',')]
    etcd_servers: Vec<String>,
    /// How the API server reaches the embedded store: `in-process` hands its reads, writes
    /// and watches to the member directly; `grpc` sends them over loopback through etcd's v3
    /// API, as to an external etcd (the path before the in-process one; `cargo xtask bench
    /// api` runs both).
    #[arg(long, value_enum, default_value_t = StoreClient::InProcess)]
    api_store_client: StoreClient,
    /// Events each resource's watch cache keeps for watches resuming from an older
    /// resourceVersion; older ones get 410 Gone and relist.
    #[arg(long, default_value_t = keel_apiserver::cache::DEFAULT_HISTORY)]
    watch_cache_size: usize,
    /// ClusterIPs of Services come from this range (kube-apiserver's flag and default; the node
    /// daemon's --service-cidr must be the same).
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: keel_apiserver::service_ips::ServiceIpRange,
    /// Node ports of NodePort and LoadBalancer Services come from this range (kube-apiserver's
    /// flag and default).
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: keel_apiserver::node_ports::NodePortRange,
    /// Read-only API requests in flight at once; more get 429 with Retry-After (watches are
    /// not counted). kube-apiserver's flag and default.
    #[arg(long, default_value_t = 400)]
    max_requests_inflight: usize,
    /// Mutating API requests in flight at once; more get 429.
    #[arg(long, default_value_t = 200)]
    max_mutating_requests_inflight: usize,
    /// How often watches that asked for progress notifications get one.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    watch_progress_notify_interval: Duration,
}

fn parse_initial_cluster(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut members = Vec::new();
    for (i, part) in text.split(',').enumerate() {
        let Some((name, url)) = part.split_once('=') else {
            bail!(
                "--initial-cluster entry {} ({part:?}) is not name=URL",
                i + 1
            );
        };
        if name.is_empty() || !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!(
                "--initial-cluster entry {} ({part:?}): the name must be non-empty and the URL http(s)://host:port",
                i + 1
            );
        }
        if members
            .iter()
            .any(|(n, u): &(String, String)| n == name || u == url)
        {
            bail!("--initial-cluster names {name:?} or {url:?} twice");
        }
        members.push((name.to_owned(), url.to_owned()));
    }
    Ok(members)
}

fn data_dir(args: &Args) -> PathBuf {
    args.data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.keel", args.name)))
}

fn config(args: &Args) -> anyhow::Result<MemberConfig> {
    let peer_url = args
        .advertise_peer_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", args.listen_peer));
    let client_url = args
        .advertise_client_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", args.listen_client));
    let data_dir = data_dir(args);
    let mut config = MemberConfig::new(&args.name, data_dir, &peer_url, &client_url);
    config.initial_cluster = match (&args.initial_cluster, args.initial_cluster_state.as_str()) {
        (_, "existing") => Vec::new(),
        (Some(text), _) => parse_initial_cluster(text)?,
        (None, _) => vec![(args.name.clone(), peer_url.clone())],
    };
    if !config.initial_cluster.is_empty()
        && !config.initial_cluster.iter().any(|(_, u)| *u == peer_url)
    {
        bail!("--initial-cluster does not list this member's peer URL {peer_url}");
    }
    if args.election_timeout <= args.heartbeat_interval * 3 {
        bail!(
            "--election-timeout ({} ms) must be more than three heartbeats ({} ms each)",
            args.election_timeout,
            args.heartbeat_interval
        );
    }
    config.heartbeat = Duration::from_millis(args.heartbeat_interval);
    config.election_timeout = Duration::from_millis(args.election_timeout);
    config.snapshot_count = args.snapshot_count.max(1);
    config.snapshot_catchup_entries = args.snapshot_catchup_entries;
    config.compaction_retention = args.auto_compaction_retention;
    config.compaction_revisions = args.auto_compaction_revisions.max(1);
    config.progress_notify_interval = args.watch_progress_notify_interval;
    Ok(config)
}

/// The API's listeners, bound before the store starts so a taken port fails fast (and the
/// audit policy, read then for the same reason).
struct ApiListeners {
    secure: tokio::net::TcpListener,
    insecure: Option<tokio::net::TcpListener>,
    audit_policy: Option<keel_apiserver::audit::policy::Policy>,
}

async fn bind_api(args: &Args) -> anyhow::Result<Option<ApiListeners>> {
    let audit_policy = match &args.audit_policy_file {
        Some(path) => {
            let policy =
                keel_apiserver::audit::policy::Policy::load(path).context("--audit-policy-file")?;
            for warning in policy.warnings() {
                tracing::warn!("--audit-policy-file: {warning}");
            }
            Some(policy)
        }
        None => None,
    };
    let Some(addr) = args.listen_api else {
        if args.insecure_listen_api.is_some() {
            bail!("--insecure-listen-api needs --listen-api: the plain listener only comes beside the TLS one");
        }
        return Ok(None);
    };
    let secure = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the API listener {addr}"))?;
    let insecure = match args.insecure_listen_api {
        None => None,
        Some(plain) if plain.ip().is_loopback() => Some(
            tokio::net::TcpListener::bind(plain)
                .await
                .with_context(|| format!("binding the plain-HTTP API listener {plain}"))?,
        ),
        Some(plain) => bail!(
            "--insecure-listen-api {plain}: plain HTTP is served on loopback only (127.0.0.1 or ::1)"
        ),
    };
    Ok(Some(ApiListeners {
        secure,
        insecure,
        audit_policy,
    }))
}

/// The serving certificate's names: the listen address, loopback, the `kubernetes`
/// Service's DNS names and its ClusterIP (the range's first address), and `--tls-san`.
fn serving_names(args: &Args, listen: SocketAddr) -> (Vec<String>, Vec<std::net::IpAddr>) {
    let mut dns: Vec<String> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut ips: Vec<std::net::IpAddr> = vec![
        std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::Ipv6Addr::LOCALHOST.into(),
        args.service_cluster_ip_range.first_address(),
    ];
    if !listen.ip().is_unspecified() {
        ips.push(listen.ip());
    }
    for san in &args.tls_sans {
        match san.parse::<std::net::IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(san.clone()),
        }
    }
    ips.dedup();
    (dns, ips)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreClient {
    InProcess,
    Grpc,
}

/// Starts the Kubernetes API on `listeners`, over the etcd v3 API at `endpoints`, or, with
/// `member` (the store in this process), over the member directly.
async fn start_api(
    listeners: ApiListeners,
    endpoints: Vec<String>,
    member: Option<Arc<keel_store::member::Member>>,
    data_dir: &std::path::Path,
    args: &Args,
) -> anyhow::Result<ApiServing> {
    use keel_apiserver::auth::{self, pki};
    let addr = listeners.secure.local_addr()?;
    let pki_dir = args.pki_dir.clone().unwrap_or_else(|| data_dir.join("pki"));
    let ca = pki::Ca::load_or_create(&pki_dir).context("the cluster CA")?;
    let (dns, ips) = serving_names(args, addr);
    let serving = ca.serving(&dns, &ips).context("the serving certificate")?;
    let tls = auth::server_tls(&serving.cert_pem, &serving.key_pem, &ca.cert_pem)?;
    let admin = ca
        .client("kubernetes-admin", &["system:masters".to_owned()])
        .context("the admin credential")?;
    let host = if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let kubeconfig_path = data_dir.join("admin.kubeconfig");
    pki::write_private(
        &kubeconfig_path,
        pki::kubeconfig(
            &format!("https://{host}"),
            &ca.cert_pem,
            "kubernetes-admin",
            &admin,
        )
        .as_bytes(),
    )?;
    // kube-apiserver's default issuer; tokens name it and are accepted only for it.
    let issuer = "https://kubernetes.default.svc.cluster.local".to_owned();
    let signer = std::sync::Arc::new(
        auth::service_accounts::TokenSigner::load_or_create(&pki_dir, &issuer)
            .context("the ServiceAccount token key")?,
    );
    let token_file = match &args.token_auth_file {
        Some(path) => auth::authn::TokenFile::load(path)?,
        None => auth::authn::TokenFile::default(),
    };
    // The credential this server shows nodes when it fetches pods' logs (kubeadm's
    // apiserver-kubelet-client).
    let kubelet_client = ca
        .client(
            "kube-apiserver-kubelet-client",
            &["system:masters".to_owned()],
        )
        .context("the kubelet client credential")?;
    let kubelet_tls = keel_apiserver::rest::pod_logs::kubelet_client_tls(
        &kubelet_client.cert_pem,
        &kubelet_client.key_pem,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let storage = match member {
        Some(member) => {
            let kv = Arc::new(keel_control_plane::embedded_storage::EmbeddedKv::new(
                member,
            ));
            Ok(keel_apiserver::storage::Storage::with_backend(kv))
        }
        None => keel_apiserver::storage::Storage::connect(&endpoints).await,
    }
    .with_context(|| format!("connecting the API server to its store at {endpoints:?}"))?;
    let metrics = std::sync::Arc::new(keel_apiserver::metrics::Metrics::default());
    let api = keel_apiserver::rest::Api::start(
        storage,
        metrics,
        keel_apiserver::rest::ApiConfig {
            watch_cache_size: args.watch_cache_size,
            service_ip_range: args.service_cluster_ip_range,
            node_port_range: args.service_node_port_range,
            api_port: addr.port(),
            token_signer: Some(signer.clone()),
            kubelet_tls: Some(kubelet_tls),
        },
    );
    let security = std::sync::Arc::new(auth::Security {
        authn: auth::authn::AuthnConfig {
            token_file,
            service_accounts: Some(auth::authn::ServiceAccountTokens {
                signer,
                audiences: vec![issuer],
                accounts: api.cache_of("", "serviceaccounts")?,
                pods: api.cache_of("", "pods")?,
                secrets: api.cache_of("", "secrets")?,
                nodes: api.cache_of("", "nodes")?,
            }),
            bootstrap: Some(auth::authn::BootstrapTokens {
                secrets: api.cache_of("", "secrets")?,
            }),
            user_tokens: Some(auth::authn::UserTokens {
                secrets: api.cache_of("", "secrets")?,
            }),
            anonymous: args.anonymous_auth,
        },
        authorizer: api.authorizer.clone(),
    });
    let mut served = vec![keel_apiserver::server::Listener {
        tcp: listeners.secure,
        tls: Some(tls),
    }];
    let insecure = listeners
        .insecure
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;
    if let Some(plain) = listeners.insecure {
        served.push(keel_apiserver::server::Listener {
            tcp: plain,
            tls: None,
        });
    }
    let audit = match &args.audit_log_path {
        Some(path) => {
            let log = keel_apiserver::audit::AuditLog::open(path)
                .await
                .with_context(|| format!("--audit-log-path {}", path.display()))?;
            Some(std::sync::Arc::new(match listeners.audit_policy {
                Some(policy) => log.with_policy(policy),
                None => log,
            }))
        }
        None => None,
    };
    tokio::spawn(keel_apiserver::server::serve(
        served,
        api.clone(),
        security,
        audit,
        keel_apiserver::server::Limits {
            max_readonly_inflight: args.max_requests_inflight.max(1),
            max_mutating_inflight: args.max_mutating_requests_inflight.max(1),
            ..keel_apiserver::server::Limits::default()
        },
    ));
    // The default namespaces and roles exist before the API says it serves, as
    // kube-apiserver's rbac/bootstrap-roles post-start hook gates readiness.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = if api.ready() {
            keel_apiserver::bootstrap::ensure_defaults(&api)
                .await
                .map_err(anyhow::Error::from)
        } else {
            Err(anyhow::anyhow!("the watch caches have not listed yet"))
        };
        match attempt {
            Ok(created) => {
                if created > 0 {
                    tracing::info!(created, "created the default namespaces and RBAC roles");
                }
                break;
            }
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "bootstrap not done yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.context("creating the default namespaces and RBAC roles")),
        }
    }
    // Events an older keel kept apart join the others before the API says it serves; a
    // failure is tried again at the next start (the Events stay where they were).
    match keel_apiserver::conversion::relocate::legacy_events(&api.storage).await {
        Ok(done) if done.moved + done.kept > 0 => tracing::info!(
            moved = done.moved,
            kept = done.kept,
            "moved the events.k8s.io Events an older keel stored apart to /registry/events/"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "moving the events.k8s.io Events stored apart failed"),
    }
    tokio::spawn(keel_apiserver::bootstrap::keep_default_service_accounts(
        api.clone(),
    ));
    tracing::info!(
        %addr,
        insecure = ?insecure,
        store = ?endpoints,
        kubeconfig = %kubeconfig_path.display(),
        "Kubernetes API serving over TLS"
    );
    Ok(ApiServing {
        url: format!("https://{host}"),
        ca: std::sync::Arc::new(ca),
    })
}

/// What the components beside the API server need to reach it.
struct ApiServing {
    url: String,
    ca: std::sync::Arc<keel_apiserver::auth::pki::Ca>,
}

/// A kube-rs client for a component of this process, authenticated by a client certificate
/// the cluster CA issues it (`system:kube-scheduler`, …), whose kubeconfig is also written to
/// the data directory so an operator can act as that component.
async fn component_client(
    serving: &ApiServing,
    data_dir: &std::path::Path,
    user: &str,
    file: &str,
) -> anyhow::Result<kube::Client> {
    use keel_apiserver::auth::pki;
    let credential = serving
        .ca
        .client(user, &[])
        .with_context(|| format!("the {user} credential"))?;
    let text = pki::kubeconfig(&serving.url, &serving.ca.cert_pem, user, &credential);
    let path = data_dir.join(file);
    pki::write_private(&path, text.as_bytes())?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)
        .with_context(|| format!("reading back {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("the client configuration in {}", path.display()))?;
    kube::Client::try_from(config).with_context(|| format!("a client as {user}"))
}

/// The scheduler as a leader-elected component: built afresh each time this member leads.
struct SchedulerComponent {
    client: kube::Client,
    config_yaml: Option<String>,
    metrics: Arc<keel_scheduler::metrics::Metrics>,
}

impl keel_control_plane::leader_election::Component for SchedulerComponent {
    type Running = keel_scheduler::run::SchedulerHandle;

    fn start(&mut self) -> anyhow::Result<Self::Running> {
        Ok(keel_scheduler::run::start(
            self.client.clone(),
            keel_scheduler::run::Options {
                config_yaml: self.config_yaml.clone(),
                metrics: Some(self.metrics.clone()),
                ..Default::default()
            },
        )?)
    }
}

/// `10.244.0.0/16` → the network and its prefix length (IPv4: what node IPAM allocates).
/// kube's `--cluster-signing-duration`: at least the ten minutes a request may ask for.
fn parse_signing_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration < Duration::from_secs(600) {
        return Err(format!(
            "{text:?} is shorter than 10m, the least a request may ask for"
        ));
    }
    Ok(duration)
}

fn parse_ipv4_cidr(text: &str) -> Result<(std::net::Ipv4Addr, u8), String> {
    let (ip, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not a CIDR (want e.g. 10.244.0.0/16)"))?;
    let ip: std::net::Ipv4Addr = ip
        .parse()
        .map_err(|e| format!("{text:?}: the address: {e} (IPv4 only)"))?;
    let prefix: u8 = prefix
        .parse()
        .map_err(|e| format!("{text:?}: the prefix length: {e}"))?;
    if prefix > 30 {
        return Err(format!(
            "{text:?}: a prefix of {prefix} leaves no room for nodes"
        ));
    }
    Ok((ip, prefix))
}

/// Starts the controllers in this process, as `system:kube-controller-manager`, elected on
/// the `kube-system/kube-controller-manager` Lease (or directly without --leader-elect).
async fn start_controllers(
    serving: &ApiServing,
    data_dir: &std::path::Path,
    args: &Args,
    metrics: Arc<ControllerMetrics>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    use keel_control_plane::leader_election::{self, Component};
    if args.disable_controllers || args.controllers.is_empty() {
        return Ok(None);
    }
    let client = component_client(
        serving,
        data_dir,
        "system:kube-controller-manager",
        "controller-manager.kubeconfig",
    )
    .await?;
    if args.node_cidr_mask_size < args.cluster_cidr.1 || args.node_cidr_mask_size > 30 {
        bail!(
            "--node-cidr-mask-size {} does not fit in --cluster-cidr /{}",
            args.node_cidr_mask_size,
            args.cluster_cidr.1
        );
    }
    let mut component = ControllersComponent {
        client: client.clone(),
        metrics,
        settings: Settings {
            enabled: args.controllers.clone(),
            cluster_cidr: args.cluster_cidr,
            node_cidr_mask_size: args.node_cidr_mask_size,
            node_monitor_grace_period: args.node_monitor_grace_period,
            signer: Some(std::sync::Arc::new(
                keel_control_plane::controller_manager::CaSigner(serving.ca.clone()),
            )),
            cluster_signing_duration: args.cluster_signing_duration,
            root_ca: serving.ca.cert_pem.clone(),
        },
    };
    if !args.leader_elect {
        let running = component.start()?;
        // Held by a task that lives as long as the process (aborting it stops them).
        return Ok(Some(tokio::spawn(async move {
            let _running = running;
            std::future::pending::<()>().await;
        })));
    }
    let config =
        leader_election::Config::new("kube-system", "kube-controller-manager", &identity(args));
    tracing::info!(identity = %config.identity, "controllers waiting for the kube-system/kube-controller-manager lease");
    Ok(Some(tokio::spawn(leader_election::run(
        client, config, component,
    ))))
}

/// What runs the scheduler: directly, or a leader-election task that runs it while leading.
enum SchedulerRunner {
    Direct(keel_scheduler::run::SchedulerHandle),
    Elected(tokio::task::JoinHandle<()>),
}

impl SchedulerRunner {
    fn stop(self) {
        match self {
            SchedulerRunner::Direct(handle) => handle.stop(),
            // Dropping the task's future drops the running scheduler, which stops it.
            SchedulerRunner::Elected(task) => task.abort(),
        }
    }
}

/// A candidate identity unique among members and restarts: `<member>_<pid><time>`.
fn identity(args: &Args) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{}_{:x}{:08x}", args.name, std::process::id(), nanos)
}

/// Starts the scheduler in this process, as a client of the API at `serving`.
async fn start_scheduler(
    serving: &ApiServing,
    data_dir: &std::path::Path,
    args: &Args,
    metrics: Arc<keel_scheduler::metrics::Metrics>,
) -> anyhow::Result<Option<SchedulerRunner>> {
    if args.disable_scheduler {
        return Ok(None);
    }
    let config_yaml = match &args.scheduler_config {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("--scheduler-config {}", path.display()))?,
        ),
        None => None,
    };
    let client = component_client(
        serving,
        data_dir,
        "system:kube-scheduler",
        "scheduler.kubeconfig",
    )
    .await?;
    // A configuration that does not load fails the start, not the first election.
    if let Some(text) = &config_yaml {
        keel_scheduler::config::SchedulerConfig::from_yaml(
            text,
            &keel_scheduler::config::PluginEnv::default(),
        )
        .context("--scheduler-config")?;
    }
    if args.leader_elect {
        use keel_control_plane::leader_election;
        let config = leader_election::Config::new("kube-system", "kube-scheduler", &identity(args));
        let component = SchedulerComponent {
            client: client.clone(),
            config_yaml,
            metrics,
        };
        tracing::info!(identity = %config.identity, "scheduler waiting for the kube-system/kube-scheduler lease");
        let task = tokio::spawn(leader_election::run(client, config, component));
        return Ok(Some(SchedulerRunner::Elected(task)));
    }
    let handle = keel_scheduler::run::start(
        client,
        keel_scheduler::run::Options {
            config_yaml,
            metrics: Some(metrics),
            ..Default::default()
        },
    )
    .with_context(|| match &args.scheduler_config {
        Some(path) => format!("--scheduler-config {}", path.display()),
        None => "starting the scheduler".to_string(),
    })?;
    tracing::info!("scheduler running");
    Ok(Some(SchedulerRunner::Direct(handle)))
}

/// `--etcd-servers`: the API server alone, its state in an external etcd.
async fn api_over_etcd(args: &Args) -> anyhow::Result<()> {
    let Some(listeners) = bind_api(args).await? else {
        bail!("--etcd-servers needs --listen-api: without the embedded store this process only serves the API");
    };
    for url in &args.etcd_servers {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("--etcd-servers entry {url:?} is not an http(s):// URL");
        }
    }
    let dir = data_dir(args);
    let serving = start_api(listeners, args.etcd_servers.clone(), None, &dir, args).await?;
    let metrics = Arc::new(keel_scheduler::metrics::Metrics::default());
    let scheduler = start_scheduler(&serving, &dir, args, metrics).await?;
    let controllers =
        start_controllers(&serving, &dir, args, Arc::new(ControllerMetrics::default())).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    if let Some(controllers) = controllers {
        controllers.abort();
    }
    if let Some(scheduler) = scheduler {
        scheduler.stop();
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // openraft warns at every failed heartbeat, ten lines a second for each peer
                // that is down; the member's prober logs when a peer stops and starts answering.
                .unwrap_or_else(|_| "info,openraft=warn,openraft::core::heartbeat=error".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    if !args.etcd_servers.is_empty() {
        return api_over_etcd(&args).await;
    }
    let config = config(&args)?;
    let api_listener = bind_api(&args).await?;
    let listeners =
        Listeners::bind(args.listen_client, args.listen_peer, args.metrics_addr).await?;
    let scheduler_metrics = Arc::new(keel_scheduler::metrics::Metrics::default());
    let controller_metrics = Arc::new(ControllerMetrics::default());
    let registered = (scheduler_metrics.clone(), controller_metrics.clone());
    let running = server::start_with_metrics(config.clone(), listeners, move |registry| {
        registered.0.register(registry);
        registered.1.register(registry);
    })
    .await
    .context("starting the store member")?;
    tracing::info!(
        name = %config.name,
        id = %format!("{:x}", running.member.id),
        client = %running.client_addr,
        peer = %running.peer_addr,
        data_dir = %config.data_dir.display(),
        "store member serving etcd's v3 API"
    );
    let mut scheduler = None;
    let mut controllers = None;
    if let Some(listener) = api_listener {
        let endpoint = format!("http://{}", running.client_addr);
        let serving = start_api(
            listener,
            vec![endpoint],
            (args.api_store_client == StoreClient::InProcess).then(|| running.member.clone()),
            &config.data_dir,
            &args,
        )
        .await?;
        scheduler = start_scheduler(&serving, &config.data_dir, &args, scheduler_metrics).await?;
        controllers =
            start_controllers(&serving, &config.data_dir, &args, controller_metrics).await?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let member = running.member.clone();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        reason = member.fatal() => {
            tracing::error!(%reason, "the store stopped on a fatal error; exiting so that a supervisor restarts this member once it is fixed");
            // Let the requests that failed with it get their answers out first.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            running.stop().await;
            bail!("the store stopped: {reason}");
        }
        how = member.removed() => {
            // etcd stops a removed member the same way, and exits 0: a supervisor has nothing
            // to restart, the cluster has moved on without it.
            tracing::error!(%how, "the member has been permanently removed from the cluster; stopping (remove its data directory before adding it again)");
            // As etcd does: a member that removed itself through itself answers that first.
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
    tracing::info!("stopping");
    if let Some(controllers) = controllers {
        controllers.abort();
    }
    if let Some(scheduler) = scheduler {
        scheduler.stop();
    }
    running.stop().await;
    Ok(())
}
