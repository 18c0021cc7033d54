//! Builders for the tests' pods and nodes, in the spirit of kube-scheduler's `st.MakePod()` and
//! `st.MakeNode()`, so that each ported test case stays a few readable lines.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerImage, ContainerPort, Node, NodeAffinity as NodeAffinitySpec,
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, NodeSpec, NodeStatus, Pod, PodSpec,
    PreferredSchedulingTerm, ResourceRequirements, Taint, Toleration, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::framework::{CycleState, ScorePlugin};
use crate::node_info::{ClusterSummary, ClusterView, NodeInfo};

/// `pod` with a required anti-affinity, per node (`kubernetes.io/hostname`), to the pods
/// labelled `app` = `app`.
pub(crate) fn with_required_anti_affinity(mut pod: Pod, app: &str) -> Pod {
    use k8s_openapi::api::core::v1::{PodAffinityTerm, PodAntiAffinity};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    pod.spec.get_or_insert_default().affinity = Some(Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                topology_key: "kubernetes.io/hostname".into(),
                label_selector: Some(LabelSelector {
                    match_labels: Some([("app".to_string(), app.to_string())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    });
    pod
}

/// The nodes with their summary counted, as the cache hands them to a decision.
pub(crate) fn view(nodes: &[NodeInfo]) -> ClusterView<'_> {
    ClusterView {
        nodes,
        summary: Some(ClusterSummary::of(nodes)),
    }
}

/// A mebibyte, the unit of kube-scheduler's image locality tests.
pub(crate) const MB: i64 = 1024 * 1024;

pub(crate) fn quantities(list: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    list.iter()
        .map(|(name, value)| (name.to_string(), Quantity(value.to_string())))
        .collect()
}

fn requests(list: &[(&str, &str)]) -> Option<ResourceRequirements> {
    Some(ResourceRequirements {
        requests: Some(quantities(list)),
        ..Default::default()
    })
}

/// `""` stands for an absent field, as Go's zero value does in kube's tests.
fn optional(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

pub(crate) struct PodBuilder(Pod);

pub(crate) fn pod() -> PodBuilder {
    PodBuilder(Pod {
        spec: Some(Default::default()),
        ..Default::default()
    })
}

impl PodBuilder {
    fn spec(&mut self) -> &mut PodSpec {
        self.0.spec.get_or_insert_default()
    }

    fn push_container(mut self, container: Container) -> Self {
        let containers = &mut self.spec().containers;
        let name = format!("c{}", containers.len());
        containers.push(Container { name, ..container });
        self
    }

    fn push_init_container(mut self, container: Container) -> Self {
        let init_containers = self.spec().init_containers.get_or_insert_default();
        let name = format!("i{}", init_containers.len());
        init_containers.push(Container { name, ..container });
        self
    }

    pub(crate) fn name(mut self, name: &str) -> Self {
        self.0.metadata.name = Some(name.to_string());
        self
    }

    /// Assigns the pod to a node (`spec.nodeName`).
    pub(crate) fn node(mut self, node: &str) -> Self {
        self.spec().node_name = Some(node.to_string());
        self
    }

    /// A container requesting `list` (`st.MakePod().Req(…)`).
    pub(crate) fn req(self, list: &[(&str, &str)]) -> Self {
        self.push_container(Container {
            resources: requests(list),
            ..Default::default()
        })
    }

    /// A container that requests nothing.
    pub(crate) fn container(self) -> Self {
        self.push_container(Container::default())
    }

    pub(crate) fn init_req(self, list: &[(&str, &str)]) -> Self {
        self.push_init_container(Container {
            resources: requests(list),
            ..Default::default()
        })
    }

    /// A sidecar: an init container with `restartPolicy: Always`.
    pub(crate) fn sidecar_req(self, list: &[(&str, &str)]) -> Self {
        self.push_init_container(Container {
            resources: requests(list),
            restart_policy: Some("Always".to_string()),
            ..Default::default()
        })
    }

    pub(crate) fn overhead(mut self, list: &[(&str, &str)]) -> Self {
        self.spec().overhead = Some(quantities(list));
        self
    }

    /// Pod-level requests (`spec.resources.requests`).
    pub(crate) fn pod_level(mut self, list: &[(&str, &str)]) -> Self {
        self.spec().resources = requests(list);
        self
    }

    pub(crate) fn toleration(mut self, toleration: Toleration) -> Self {
        self.spec()
            .tolerations
            .get_or_insert_default()
            .push(toleration);
        self
    }

    pub(crate) fn node_selector(mut self, labels: &[(&str, &str)]) -> Self {
        self.spec().node_selector = Some(
            labels
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
        );
        self
    }

    fn node_affinity(&mut self) -> &mut NodeAffinitySpec {
        self.spec()
            .affinity
            .get_or_insert_default()
            .node_affinity
            .get_or_insert_default()
    }

    /// `requiredDuringSchedulingIgnoredDuringExecution` with these terms.
    pub(crate) fn required(mut self, terms: Vec<NodeSelectorTerm>) -> Self {
        self.node_affinity()
            .required_during_scheduling_ignored_during_execution = Some(NodeSelector {
            node_selector_terms: terms,
        });
        self
    }

    /// `preferredDuringSchedulingIgnoredDuringExecution` with these (weight, term)s.
    pub(crate) fn preferred(mut self, terms: Vec<(i32, NodeSelectorTerm)>) -> Self {
        self.node_affinity()
            .preferred_during_scheduling_ignored_during_execution = Some(
            terms
                .into_iter()
                .map(|(weight, preference)| PreferredSchedulingTerm { weight, preference })
                .collect(),
        );
        self
    }

    /// An affinity with a node affinity that sets nothing.
    pub(crate) fn empty_node_affinity(mut self) -> Self {
        self.spec().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinitySpec::default()),
            ..Default::default()
        });
        self
    }

    /// A container with host ports written `PROTOCOL/hostIP/hostPort`, as kube's NodePorts
    /// tests write them.
    /// Volumes in `spec.volumes` (`st.MakePod().Volume(…)`).
    pub(crate) fn volumes(mut self, volumes: &[Volume]) -> Self {
        self.spec()
            .volumes
            .get_or_insert_default()
            .extend_from_slice(volumes);
        self
    }

    pub(crate) fn ports(self, ports: &[&str]) -> Self {
        self.push_container(Container {
            ports: Some(ports.iter().copied().map(container_port).collect()),
            ..Default::default()
        })
    }

    /// Host ports on the last container (one container that requests and listens, as
    /// kube-scheduler's `TestNewNodeInfo` builds its pods).
    pub(crate) fn and_ports(mut self, ports: &[&str]) -> Self {
        if let Some(last) = self.spec().containers.last_mut() {
            last.ports
                .get_or_insert_default()
                .extend(ports.iter().copied().map(container_port));
        }
        self
    }

    /// A sidecar with host ports, written as for [`PodBuilder::ports`].
    pub(crate) fn sidecar_ports(self, ports: &[&str]) -> Self {
        self.push_init_container(Container {
            ports: Some(ports.iter().copied().map(container_port).collect()),
            restart_policy: Some("Always".to_string()),
            ..Default::default()
        })
    }

    pub(crate) fn init_ports(self, ports: &[&str]) -> Self {
        self.push_init_container(Container {
            ports: Some(ports.iter().copied().map(container_port).collect()),
            ..Default::default()
        })
    }

    pub(crate) fn image(self, image: &str) -> Self {
        self.push_container(Container {
            image: Some(image.to_string()),
            ..Default::default()
        })
    }

    pub(crate) fn init_image(self, image: &str) -> Self {
        self.push_init_container(Container {
            image: Some(image.to_string()),
            ..Default::default()
        })
    }

    pub(crate) fn obj(self) -> Pod {
        self.0
    }
}

fn container_port(port: &str) -> ContainerPort {
    let mut parts = port.split('/');
    let protocol = parts.next().unwrap_or_default();
    let host_ip = parts.next().unwrap_or_default();
    let host_port: i32 = parts
        .next()
        .and_then(|port| port.parse().ok())
        .expect("PROTOCOL/hostIP/hostPort");
    ContainerPort {
        container_port: host_port,
        host_ip: optional(host_ip),
        host_port: Some(host_port),
        protocol: optional(protocol),
        ..Default::default()
    }
}

/// A toleration; `""` leaves a field unset.
pub(crate) fn toleration(key: &str, operator: &str, value: &str, effect: &str) -> Toleration {
    Toleration {
        key: optional(key),
        operator: optional(operator),
        value: optional(value),
        effect: optional(effect),
        ..Default::default()
    }
}

/// A node selector requirement (`matchExpressions` or `matchFields` entry).
pub(crate) fn expr(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.to_string(),
        operator: operator.to_string(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
    }
}

/// A term of `matchExpressions`.
pub(crate) fn term(expressions: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: Some(expressions),
        match_fields: None,
    }
}

/// A term of `matchFields`.
pub(crate) fn field_term(fields: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(fields),
    }
}

pub(crate) struct NodeBuilder(Node);

pub(crate) fn node(name: &str) -> NodeBuilder {
    NodeBuilder(Node {
        metadata: ObjectMeta {
            name: optional(name),
            ..Default::default()
        },
        ..Default::default()
    })
}

impl NodeBuilder {
    fn status(&mut self) -> &mut NodeStatus {
        self.0.status.get_or_insert_default()
    }

    fn spec(&mut self) -> &mut NodeSpec {
        self.0.spec.get_or_insert_default()
    }

    /// Capacity and allocatable both (`st.MakeNode().Capacity(…)`).
    pub(crate) fn capacity(mut self, list: &[(&str, &str)]) -> Self {
        let status = self.status();
        status.capacity = Some(quantities(list));
        status.allocatable = Some(quantities(list));
        self
    }

    pub(crate) fn labels(mut self, labels: &[(&str, &str)]) -> Self {
        self.0.metadata.labels = Some(
            labels
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
        );
        self
    }

    pub(crate) fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.spec().taints.get_or_insert_default().push(Taint {
            key: key.to_string(),
            value: optional(value),
            effect: effect.to_string(),
            ..Default::default()
        });
        self
    }

    pub(crate) fn unschedulable(mut self, unschedulable: bool) -> Self {
        self.spec().unschedulable = Some(unschedulable);
        self
    }

    pub(crate) fn image(mut self, names: &[&str], size_bytes: i64) -> Self {
        self.status()
            .images
            .get_or_insert_default()
            .push(ContainerImage {
                names: Some(names.iter().map(|name| name.to_string()).collect()),
                size_bytes: Some(size_bytes),
            });
        self
    }

    pub(crate) fn obj(self) -> Node {
        self.0
    }
}

/// The node with `pods` on it; every quantity in the tests is one keel reads.
pub(crate) fn node_info(node: Node, pods: Vec<Pod>) -> NodeInfo {
    NodeInfo::new(node, pods).expect("the test's quantities parse")
}

/// NodeInfos for `nodes`, each with the pods whose `spec.nodeName` names it, as kube's
/// `cache.NewSnapshot(pods, nodes)`.
pub(crate) fn cluster(nodes: Vec<Node>, pods: Vec<Pod>) -> Vec<NodeInfo> {
    nodes
        .into_iter()
        .map(|node| {
            let name = node.metadata.name.clone();
            let on_node = pods
                .iter()
                .filter(|pod| pod.spec.as_ref().and_then(|spec| spec.node_name.clone()) == name)
                .cloned()
                .collect();
            node_info(node, on_node)
        })
        .collect()
}

/// Scores the pod on every node, then normalizes, as the framework will.
pub(crate) fn score_all(plugin: &dyn ScorePlugin, pod: &Pod, nodes: &[NodeInfo]) -> Vec<i64> {
    let mut state = CycleState::new();
    let feasible: Vec<&NodeInfo> = nodes.iter().collect();
    let status = plugin.pre_score(pod, &feasible, nodes, &mut state);
    assert!(status.is_ok(), "pre_score: {status}");
    let mut scores: Vec<i64> = nodes
        .iter()
        .map(|node| plugin.score(&state, pod, node).expect("score"))
        .collect();
    plugin.normalize(&state, pod, &mut scores);
    scores
}
