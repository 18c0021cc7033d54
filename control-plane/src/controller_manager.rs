//! The controllers as kube-controller-manager runs them: one component, elected on the
//! `kube-system/kube-controller-manager` Lease, that starts the controllers its `--controllers`
//! list enables.
//!
//! The list has kube-controller-manager's grammar, so an operator's habits carry over: `*`
//! enables every controller that is on by default, `foo` enables `foo`, `-foo` disables it
//! (`--controllers=*,-nodelifecycle`). Names are kube's.
//!
//! Each controller records its Events through a [`Recorder`] of its own, under kube's source
//! component (`replicaset-controller`, `deployment-controller`, …), so that `kubectl describe`
//! names who did what as it does against kube-controller-manager. The namespace controller
//! and the root CA publisher record none, as kube's.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use keel_controllers::{
    certificates, deployment, endpointslice, garbage_collector, namespace, node_ipam,
    node_lifecycle, replicaset, root_ca_cert_publisher, workqueue,
};
use keel_events::Recorder;

/// A controller keel runs, under kube-controller-manager's name for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Controller {
    CsrApproving,
    CsrSigning,
    Deployment,
    EndpointSlice,
    GarbageCollector,
    Namespace,
    NodeIpam,
    NodeLifecycle,
    ReplicaSet,
    RootCaCertPublisher,
}

impl Controller {
    /// Every controller, all on by default (as each is in kube-controller-manager).
    pub const ALL: [Controller; 10] = [
        Controller::CsrApproving,
        Controller::CsrSigning,
        Controller::Deployment,
        Controller::EndpointSlice,
        Controller::GarbageCollector,
        Controller::Namespace,
        Controller::NodeIpam,
        Controller::NodeLifecycle,
        Controller::ReplicaSet,
        Controller::RootCaCertPublisher,
    ];

    /// kube-controller-manager's name (`--controllers`).
    pub fn name(self) -> &'static str {
        match self {
            Controller::CsrApproving => "csrapproving",
            Controller::CsrSigning => "csrsigning",
            Controller::Deployment => "deployment",
            Controller::EndpointSlice => "endpointslice",
            Controller::GarbageCollector => "garbagecollector",
            Controller::Namespace => "namespace",
            Controller::NodeIpam => "nodeipam",
            Controller::NodeLifecycle => "nodelifecycle",
            Controller::ReplicaSet => "replicaset",
            Controller::RootCaCertPublisher => "root-ca-cert-publisher",
        }
    }

    fn named(name: &str) -> Option<Controller> {
        Controller::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// Parses a `--controllers` list into the controllers it enables.
///
/// As in kube-controller-manager, a name's own entry wins over `*` whatever their order, and
/// an empty list enables nothing. An unknown name, or one both enabled and disabled, is an
/// error naming it: a typo must not silently leave a controller off.
pub fn parse_controllers(list: &str) -> Result<BTreeSet<Controller>, String> {
    let mut star = false;
    let mut on = BTreeSet::new();
    let mut off = BTreeSet::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if entry == "*" {
            star = true;
            continue;
        }
        let (disable, name) = match entry.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, entry),
        };
        let controller = Controller::named(name).ok_or_else(|| {
            let known: Vec<&str> = Controller::ALL.iter().map(|c| c.name()).collect();
            format!(
                "{name:?} is not in the list of known controllers ({})",
                known.join(", ")
            )
        })?;
        if disable {
            off.insert(controller);
        } else {
            on.insert(controller);
        }
    }
    if let Some(both) = on.intersection(&off).next() {
        return Err(format!("{:?} is both enabled and disabled", both.name()));
    }
    Ok(Controller::ALL
        .into_iter()
        .filter(|c| on.contains(c) || (star && !off.contains(c)))
        .collect())
}

/// The controllers' metrics, registered on the member's `/metrics` before they first run
/// (a member that never leads still exposes them, at zero).
#[derive(Default)]
pub struct ControllerMetrics {
    pub queues: Arc<workqueue::WorkQueueMetrics>,
    pub endpoint_slices: Arc<endpointslice::Metrics>,
}

impl ControllerMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        self.queues.register(registry);
        self.endpoint_slices.register(registry);
    }
}

/// The controllers' settings (kube-controller-manager's flags of the same names).
#[derive(Clone, Debug)]
pub struct Settings {
    pub enabled: BTreeSet<Controller>,
    pub cluster_cidr: (std::net::Ipv4Addr, u8),
    pub node_cidr_mask_size: u8,
    pub node_monitor_grace_period: Duration,
    /// What `csrsigning` issues with (the cluster CA); None: it signs nothing.
    pub signer: Option<Arc<dyn certificates::Signer>>,
    pub cluster_signing_duration: Duration,
    /// The cluster CA certificate (PEM) `root-ca-cert-publisher` publishes in every namespace.
    pub root_ca: String,
}

/// The cluster CA as the CSR signer's issuer.
pub struct CaSigner(pub Arc<keel_apiserver::auth::pki::Ca>);

impl std::fmt::Debug for CaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaSigner")
    }
}

impl certificates::Signer for CaSigner {
    fn sign(
        &self,
        request_pem: &[u8],
        usages: &[String],
        duration: Duration,
    ) -> Result<String, String> {
        self.0
            .sign_request(request_pem, usages, duration)
            .map_err(|e| e.to_string())
    }
}

/// The enabled controllers as one leader-elected component.
pub struct ControllersComponent {
    pub client: kube::Client,
    pub metrics: Arc<ControllerMetrics>,
    pub settings: Settings,
}

/// A running controller; dropping it stops it (every controller's handle does so).
pub type Running = Box<dyn Send>;

impl crate::leader_election::Component for ControllersComponent {
    type Running = Vec<Running>;

    fn start(&mut self) -> anyhow::Result<Self::Running> {
        let client = &self.client;
        let queues = Some(self.metrics.queues.clone());
        let settings = &self.settings;
        let recorder = |component: &str| Some(Recorder::new(client.clone(), component));
        let mut running: Vec<Running> = Vec::new();
        for controller in &settings.enabled {
            tracing::info!(controller = controller.name(), "starting controller");
            let handle: Running = match controller {
                Controller::CsrApproving => Box::new(certificates::start(
                    client.clone(),
                    certificates::Options {
                        approve: true,
                        signer: None,
                        metrics: queues.clone(),
                        ..Default::default()
                    },
                )),
                Controller::CsrSigning => Box::new(certificates::start(
                    client.clone(),
                    certificates::Options {
                        approve: false,
                        signer: settings.signer.clone(),
                        signing_duration: settings.cluster_signing_duration,
                        metrics: queues.clone(),
                    },
                )),
                Controller::ReplicaSet => Box::new(replicaset::start(
                    client.clone(),
                    replicaset::Options {
                        metrics: queues.clone(),
                        recorder: recorder(replicaset::COMPONENT),
                        ..Default::default()
                    },
                )),
                Controller::EndpointSlice => Box::new(endpointslice::start(
                    client.clone(),
                    endpointslice::Options {
                        queue_metrics: queues.clone(),
                        metrics: Some(self.metrics.endpoint_slices.clone()),
                        recorder: recorder(endpointslice::COMPONENT),
                        ..Default::default()
                    },
                )),
                Controller::GarbageCollector => Box::new(garbage_collector::start(
                    client.clone(),
                    garbage_collector::Options {
                        metrics: queues.clone(),
                        recorder: recorder(garbage_collector::COMPONENT),
                        ..Default::default()
                    },
                )),
                Controller::Deployment => Box::new(deployment::start(
                    client.clone(),
                    deployment::Options {
                        metrics: queues.clone(),
                        recorder: recorder(deployment::COMPONENT),
                        ..Default::default()
                    },
                )),
                Controller::Namespace => Box::new(namespace::start(
                    client.clone(),
                    namespace::Options {
                        metrics: queues.clone(),
                        ..Default::default()
                    },
                )),
                Controller::NodeIpam => Box::new(node_ipam::start(
                    client.clone(),
                    node_ipam::Options {
                        cluster_cidr: settings.cluster_cidr,
                        node_cidr_mask_size: settings.node_cidr_mask_size,
                        metrics: queues.clone(),
                        recorder: recorder(node_ipam::COMPONENT),
                    },
                )),
                Controller::RootCaCertPublisher => Box::new(root_ca_cert_publisher::start(
                    client.clone(),
                    root_ca_cert_publisher::Options {
                        root_ca: settings.root_ca.clone(),
                        workers: root_ca_cert_publisher::DEFAULT_WORKERS,
                        metrics: queues.clone(),
                    },
                )),
                Controller::NodeLifecycle => Box::new(node_lifecycle::start(
                    client.clone(),
                    node_lifecycle::Options {
                        node_monitor_grace_period: settings.node_monitor_grace_period,
                        // kube's --node-monitor-period is 5 s against a 40 s grace; a
                        // shortened grace (tests, labs) is checked at least twice within it.
                        node_monitor_period: (settings.node_monitor_grace_period / 2)
                            .min(Duration::from_secs(5)),
                        metrics: queues.clone(),
                        recorder: recorder(node_lifecycle::COMPONENT),
                        eviction_recorder: recorder(node_lifecycle::EVICTION_COMPONENT),
                        ..Default::default()
                    },
                )),
            };
            running.push(handle);
        }
        Ok(running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &str) -> Vec<&'static str> {
        parse_controllers(list)
            .expect("a valid list")
            .into_iter()
            .map(Controller::name)
            .collect()
    }

    #[test]
    fn star_enables_all_and_minus_disables_one() {
        assert_eq!(names("*").len(), Controller::ALL.len());
        assert!(
            names("*").contains(&"root-ca-cert-publisher"),
            "on by default, as in kube"
        );
        let without = names("*,-nodelifecycle");
        assert_eq!(without.len(), Controller::ALL.len() - 1);
        assert!(!without.contains(&"nodelifecycle"));
        // Order does not matter: `-foo` before `*` still disables foo.
        assert_eq!(names("-nodelifecycle,*"), without);
    }

    #[test]
    fn a_bare_list_enables_only_its_names() {
        assert_eq!(names("namespace"), vec!["namespace"]);
        assert_eq!(
            names("namespace,root-ca-cert-publisher"),
            vec!["namespace", "root-ca-cert-publisher"]
        );
        assert_eq!(
            names(" replicaset , deployment "),
            vec!["deployment", "replicaset"]
        );
        assert!(names("").is_empty());
        assert!(names("-namespace").is_empty());
    }

    #[test]
    fn unknown_or_contradictory_names_are_refused_by_name() {
        let error = parse_controllers("*,-namespaces").expect_err("a typo");
        assert!(
            error.contains("\"namespaces\" is not in the list"),
            "{error}"
        );
        assert!(
            error.contains("namespace,") || error.contains("namespace"),
            "{error}"
        );
        let error = parse_controllers("deployment,-deployment").expect_err("both");
        assert!(error.contains("\"deployment\" is both"), "{error}");
        for hostile in ["--", "-", "*,\n-x", "deployment;rm -rf /", "ñ"] {
            assert!(parse_controllers(hostile).is_err(), "{hostile:?}");
        }
    }
}
