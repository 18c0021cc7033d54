//! Cluster mode (`--kubeconfig`, `--node-name`): the node daemon as a client of a Kubernetes
//! API server, through kube-rs — keel's own control plane or any conformant one. The node
//! registers itself and renews its Lease ([`node`]), runs the pods bound to it and serves
//! the Services and EndpointSlices of the cluster ([`sources`]), and reports its pods' status
//! ([`pod_status`]). The manifest directory still works beside it (static pods and services).
//! A node without credentials gets them first by TLS bootstrap ([`bootstrap`]).

pub mod bootstrap;
pub mod endpoint_reply;
pub mod exec_server;
pub mod logs_server;
pub mod mirror;
pub mod node;
pub mod pod_status;
pub mod routes;
pub mod sources;
pub mod volume_contents;
pub mod watch_pacing;

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use kube::Client;
use tokio::sync::watch;

use keel_host::cidr::Ipv4Cidr;
use keel_runtime::RuntimeConfig;

use self::sources::{ClusterObjects, RefusedPod};

/// How long a newly registered node waits for the control plane to give it a pod CIDR
/// before it falls back to `--pod-cidr`.
const POD_CIDR_WAIT: Duration = Duration::from_secs(30);

/// A kube-rs client from a kubeconfig file (its current context), and the cluster CA it
/// trusts (PEM), which also vouches for the API server's calls to this node.
pub async fn client(kubeconfig: &Path) -> anyhow::Result<(Client, Option<String>)> {
    let text = std::fs::read_to_string(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let parsed = kube::config::Kubeconfig::from_yaml(&text)
        .with_context(|| format!("{} is not a kubeconfig", kubeconfig.display()))?;
    let ca = cluster_ca(&parsed)
        .with_context(|| format!("the certificate authority in {}", kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(parsed, &kube::config::KubeConfigOptions::default())
            .await
            .with_context(|| format!("the client configuration in {}", kubeconfig.display()))?;
    let client = Client::try_from(config).context("building the API client")?;
    Ok((client, ca))
}

/// The CA of the current context's cluster: inline (`certificate-authority-data`) or a file.
fn cluster_ca(config: &kube::config::Kubeconfig) -> anyhow::Result<Option<String>> {
    use base64::Engine as _;
    let context_name = config.current_context.as_deref().unwrap_or_default();
    let cluster_name = config
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone());
    let Some(cluster) = config
        .clusters
        .iter()
        .find(|c| Some(&c.name) == cluster_name.as_ref())
        .and_then(|c| c.cluster.as_ref())
    else {
        return Ok(None);
    };
    if let Some(data) = &cluster.certificate_authority_data {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .context("certificate-authority-data is not base64")?;
        return Ok(Some(
            String::from_utf8(pem).context("certificate-authority-data is not PEM")?,
        ));
    }
    match &cluster.certificate_authority {
        Some(path) => Ok(Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        )),
        None => Ok(None),
    }
}

/// The node's registration: what it learnt from the API server before the runtime starts.
pub struct Registration {
    pub client: Client,
    /// The cluster CA (PEM), if the kubeconfig names one: the log endpoint's client CA.
    pub ca_pem: Option<String>,
    pub facts: node::NodeFacts,
    /// The pod CIDR the control plane assigned (`spec.podCIDR`), if it did in time.
    pub pod_cidr: Option<Ipv4Cidr>,
}

/// Registers the Node and waits (briefly) for its pod CIDR.
pub async fn register(
    kubeconfig: &Path,
    node_name: &str,
    node_ip: Option<std::net::Ipv4Addr>,
    max_pods: u32,
    kubelet_port: Option<u16>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Registration> {
    let (client, ca_pem) = client(kubeconfig).await?;
    let mut facts = node::gather(node_name, node_ip, max_pods, 0);
    // Published so that the API server finds this node's log endpoint.
    facts.daemon_port = kubelet_port;
    let registered = node::register(&client, &facts, stop)
        .await
        .context("registering the node")?;
    let assigned = match registered.spec.as_ref().and_then(|s| s.pod_cidr.clone()) {
        Some(cidr) => Some(cidr),
        None => node::wait_for_pod_cidr(&client, node_name, POD_CIDR_WAIT)
            .await
            .context("waiting for the node's pod CIDR")?,
    };
    let pod_cidr = match assigned {
        Some(text) => Some(
            text.parse::<Ipv4Cidr>()
                .map_err(|e| anyhow::anyhow!("the node's spec.podCIDR {text:?}: {e}"))?,
        ),
        None => None,
    };
    tracing::info!(node = node_name, pod_cidr = ?pod_cidr.map(|c| c.to_string()), "node registered");
    Ok(Registration {
        client,
        ca_pem,
        facts,
        pod_cidr,
    })
}

/// The running cluster side of the daemon: the watches, the heartbeats, the status reporter,
/// the files of pods' API-backed volumes and the routes to other nodes' pods. Background tasks end when this is dropped.
pub struct Cluster {
    pub objects: ClusterObjects,
    pub refused: watch::Sender<Vec<RefusedPod>>,
    /// The static pods this node runs, for their mirror pods; None until the pods bound here
    /// have been listed (a mirror is never deleted for want of a list).
    pub statics: watch::Sender<Option<Vec<keel_runtime::DesiredPod>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl Cluster {
    /// Starts the watches, heartbeats, status reports, routes, and the log endpoint on
    /// `kubelet_addr` (none without a cluster CA to check callers against).
    pub async fn start(
        registration: Registration,
        runtime: Arc<RuntimeConfig>,
        volume_contents: Arc<volume_contents::ApiVolumeContents>,
        state_dir: &Path,
        kubelet_addr: Option<std::net::SocketAddr>,
    ) -> anyhow::Result<Self> {
        let Registration {
            client,
            ca_pem,
            facts,
            ..
        } = registration;
        let node_name = facts.name.clone();
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        match (kubelet_addr, ca_pem) {
            (Some(addr), Some(ca_pem)) => {
                let mut names = vec![node_name.clone()];
                names.extend(facts.internal_ip.map(|ip| ip.to_string()));
                let (bound, task) =
                    logs_server::serve(addr, &ca_pem, names, state_dir.to_owned(), stop_rx.clone())
                        .await?;
                tracing::info!(addr = %bound, "serving pods' logs to the API server");
                tasks.push(task);
            }
            (Some(_), None) => {
                tracing::warn!(
                    "the kubeconfig names no CA: no log endpoint (kubectl logs will not work)"
                )
            }
            (None, _) => {}
        }
        let objects = ClusterObjects::start(&client, &node_name);
        let (refused, refused_rx) = watch::channel(Vec::new());
        let (ready_tx, ready_rx) = watch::channel(Ok(()));
        let heartbeat = node::Heartbeat::new(
            client.clone(),
            facts,
            Duration::from_secs(10),
            Duration::from_secs(300),
        );
        tasks.push(tokio::spawn({
            let stop = stop_rx.clone();
            async move {
                // Kept alive by the task: the node reports Ready while the daemon runs.
                let _ready_tx = ready_tx;
                heartbeat.run(stop, ready_rx).await
            }
        }));
        tasks.push(tokio::spawn(pod_status::run(
            client.clone(),
            objects.pods.clone(),
            runtime.clone(),
            refused_rx,
            objects.changed_for_status.clone(),
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(volume_contents::run(
            client.clone(),
            objects.pods.clone(),
            volume_contents,
            objects.changed_for_volumes.clone(),
            stop_rx.clone(),
        )));
        let (statics, statics_rx) = watch::channel(None);
        tasks.push(tokio::spawn(mirror::run(
            client.clone(),
            node_name.clone(),
            objects.pods.clone(),
            statics_rx,
            objects.changed_for_mirrors.clone(),
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(routes::run(
            client,
            node_name,
            runtime.bridge.clone(),
            stop_rx,
        )));
        Ok(Self {
            objects,
            refused,
            statics,
            tasks,
            stop,
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}
