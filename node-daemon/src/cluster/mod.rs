//! Cluster mode (`--kubeconfig`, `--node-name`): the node daemon as a client of a Kubernetes
//! API server, through kube-rs — keel's own control plane or any conformant one. The node
//! registers itself and renews its Lease ([`node`]), runs the pods bound to it and serves
//! the Services and EndpointSlices of the cluster ([`sources`]), and reports its pods' status
//! ([`pod_status`]). The manifest directory still works beside it (static pods and services).

pub mod node;
pub mod pod_status;
pub mod routes;
pub mod sources;

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

/// A kube-rs client from a kubeconfig file (its current context).
pub async fn client(kubeconfig: &Path) -> anyhow::Result<Client> {
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

/// The node's registration: what it learnt from the API server before the runtime starts.
pub struct Registration {
    pub client: Client,
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
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Registration> {
    let client = client(kubeconfig).await?;
    let facts = node::gather(node_name, node_ip, max_pods, 0);
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
        facts,
        pod_cidr,
    })
}

/// The running cluster side of the daemon: the watches, the heartbeats, the status reporter
/// and the routes to other nodes' pods. Background tasks end when this is dropped.
pub struct Cluster {
    pub objects: ClusterObjects,
    pub refused: watch::Sender<Vec<RefusedPod>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl Cluster {
    pub fn start(registration: Registration, runtime: Arc<RuntimeConfig>) -> Self {
        let Registration { client, facts, .. } = registration;
        let node_name = facts.name.clone();
        let objects = ClusterObjects::start(&client, &node_name);
        let (refused, refused_rx) = watch::channel(Vec::new());
        let (stop, stop_rx) = watch::channel(false);
        let (_ready_tx, ready_rx) = watch::channel(Ok(()));
        let heartbeat = node::Heartbeat::new(
            client.clone(),
            facts,
            Duration::from_secs(10),
            Duration::from_secs(300),
        );
        let mut tasks = vec![
            tokio::spawn({
                let stop = stop_rx.clone();
                async move {
                    // Kept alive by the task: the node reports Ready while the daemon runs.
                    let _ready_tx = _ready_tx;
                    heartbeat.run(stop, ready_rx).await
                }
            }),
            tokio::spawn(pod_status::run(
                client.clone(),
                objects.pods.clone(),
                runtime.clone(),
                refused_rx,
                objects.changed_for_status.clone(),
                stop_rx.clone(),
            )),
        ];
        tasks.push(tokio::spawn(routes::run(
            client,
            node_name,
            runtime.bridge.clone(),
            stop_rx,
        )));
        Self {
            objects,
            refused,
            tasks,
            stop,
        }
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
