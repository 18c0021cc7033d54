//! NodePorts: a pod that binds host ports fits only on a node where no pod binds the same
//! port and protocol on the same address (`0.0.0.0` overlapping every address).

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{CycleState, FilterPlugin, Status};
use crate::node_info::{pod_host_ports, HostPort, NodeInfo, DEFAULT_BIND_ALL_HOST_IP};

pub const NAME: &str = "NodePorts";
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

#[derive(Clone, Copy, Debug, Default)]
pub struct NodePorts;

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }

    /// A pod without host ports conflicts with nothing (kube's PreFilter returns Skip).
    fn pre_filter(&self, pod: &Pod, _nodes: &[NodeInfo], _state: &mut CycleState) -> Status {
        if pod_host_ports(pod).is_empty() {
            Status::skip()
        } else {
            Status::success()
        }
    }

    /// Unschedulable rather than unresolvable: evicting the pod holding the port frees it.
    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let conflict = pod_host_ports(pod)
            .iter()
            .any(|wanted| conflicts(&node.used_ports, wanted));
        if conflict {
            Status::unschedulable(ERR_REASON)
        } else {
            Status::success()
        }
    }
}

/// Whether `wanted` collides with a used port, as kube-scheduler's `HostPortInfo.CheckConflict`:
/// same protocol and port, and either side bound to every address or both to the same one.
pub fn conflicts(used: &[HostPort], wanted: &HostPort) -> bool {
    let (ip, protocol, port) = wanted;
    if *port <= 0 {
        return false;
    }
    used.iter().any(|(used_ip, used_protocol, used_port)| {
        used_port == port
            && used_protocol == protocol
            && (ip == DEFAULT_BIND_ALL_HOST_IP
                || used_ip == DEFAULT_BIND_ALL_HOST_IP
                || used_ip == ip)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, node_info, pod};

    /// kube-scheduler's `TestNodePorts`, every case; ports written `PROTOCOL/hostIP/hostPort`.
    #[test]
    fn host_port_conflicts() {
        let cases: [(&str, &[&str], &[&str], bool); 13] = [
            ("skip filter", &[], &[], true),
            (
                "other port",
                &["UDP/127.0.0.1/8080"],
                &["UDP/127.0.0.1/9090"],
                true,
            ),
            (
                "same udp port",
                &["UDP/127.0.0.1/8080"],
                &["UDP/127.0.0.1/8080"],
                false,
            ),
            (
                "same tcp port",
                &["TCP/127.0.0.1/8080"],
                &["TCP/127.0.0.1/8080"],
                false,
            ),
            (
                "different host ip",
                &["TCP/127.0.0.1/8080"],
                &["TCP/127.0.0.2/8080"],
                true,
            ),
            (
                "different protocol",
                &["UDP/127.0.0.1/8080"],
                &["TCP/127.0.0.1/8080"],
                true,
            ),
            (
                "second udp port conflict",
                &["UDP/127.0.0.1/8000", "UDP/127.0.0.1/8080"],
                &["UDP/127.0.0.1/8080"],
                false,
            ),
            (
                "first tcp port conflict",
                &["TCP/127.0.0.1/8001", "UDP/127.0.0.1/8080"],
                &["TCP/127.0.0.1/8001", "UDP/127.0.0.1/8081"],
                false,
            ),
            (
                "first tcp port conflict due to 0.0.0.0 hostIP",
                &["TCP/0.0.0.0/8001"],
                &["TCP/127.0.0.1/8001"],
                false,
            ),
            (
                "TCP hostPort conflict due to 0.0.0.0 hostIP",
                &["TCP/10.0.10.10/8001", "TCP/0.0.0.0/8001"],
                &["TCP/127.0.0.1/8001"],
                false,
            ),
            (
                "second tcp port conflict to 0.0.0.0 hostIP",
                &["TCP/127.0.0.1/8001"],
                &["TCP/0.0.0.0/8001"],
                false,
            ),
            (
                "second different protocol",
                &["UDP/127.0.0.1/8001"],
                &["TCP/0.0.0.0/8001"],
                true,
            ),
            (
                "UDP hostPort conflict due to 0.0.0.0 hostIP",
                &["UDP/127.0.0.1/8001"],
                &["TCP/0.0.0.0/8001", "UDP/0.0.0.0/8001"],
                false,
            ),
        ];
        for (name, wanted, used, fits) in cases {
            let existing = pod().node("m1").ports(used).obj();
            let node = node_info(node("m1").obj(), vec![existing]);
            let status = NodePorts.filter(&CycleState::new(), &pod().ports(wanted).obj(), &node);
            if fits {
                assert!(status.is_success(), "{name}: {status}");
            } else {
                assert_eq!(status, Status::unschedulable(ERR_REASON), "{name}");
            }
        }
    }

    /// Beyond kube's table: no host IP is every address, no protocol is TCP, and sidecars
    /// hold their ports for the pod's life.
    #[test]
    fn defaults_and_sidecars() {
        let node_with = |existing| node_info(node("m1").obj(), vec![existing]);
        let any_address = node_with(pod().ports(&["//8080"]).obj());
        assert!(!NodePorts
            .filter(
                &CycleState::new(),
                &pod().ports(&["TCP/10.0.0.1/8080"]).obj(),
                &any_address
            )
            .is_success());
        assert!(NodePorts
            .filter(
                &CycleState::new(),
                &pod().ports(&["UDP/10.0.0.1/8080"]).obj(),
                &any_address
            )
            .is_success());

        let sidecar = node_with(pod().sidecar_ports(&["TCP/0.0.0.0/9000"]).obj());
        assert!(!NodePorts
            .filter(
                &CycleState::new(),
                &pod().ports(&["TCP/0.0.0.0/9000"]).obj(),
                &sidecar
            )
            .is_success());
        let wanting_sidecar = pod().sidecar_ports(&["TCP/0.0.0.0/9000"]).obj();
        assert!(!NodePorts
            .filter(&CycleState::new(), &wanting_sidecar, &sidecar)
            .is_success());
    }
}
