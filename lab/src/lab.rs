//! The lab topology: a node holding a bridge, and pods with a veth on it.
//!
//! ```text
//!   node (own netns, or the host)          pod "a" (netns)        pod "b" (netns)
//!   ┌──────────────────────────────┐      ┌───────────────┐      ┌───────────────┐
//!   │ bridge 10.244.0.1/24         │──────│ eth0 .2/24    │      │ eth0 .3/24    │
//!   │   └─ veths ──────────────────│──────┼───────────────┼──────│               │
//!   └──────────────────────────────┘      └───────────────┘      └───────────────┘
//! ```
//! Pods have only the connected route of the lab subnet: they can answer the node and each
//! other, and nothing else.

use std::{net::Ipv4Addr, process::Command, time::Duration};

use thiserror::Error;

use crate::{
    ledger::{Ledger, Resource},
    netns::{ip, CommandError, Netns},
    process::{Child, Placement},
    unique_id,
};

/// The node bridge's MAC: locally administered, `02:6b:` ("k") as the pod runtime's bridge, then
/// "lab".
const BRIDGE_MAC: &str = "02:6b:6c:61:62:01";

/// The lab subnet; the node's bridge holds the first address.
pub const LAB_SUBNET: &str = "10.244.0.0/24";
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
const PREFIX_LEN: u8 = 24;

#[derive(Debug, Error)]
pub enum LabError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("the host already routes {LAB_SUBNET} ({route}); the lab would clash with it")]
    SubnetInUse { route: String },
    #[error("a lab holds at most 250 pods")]
    Full,
}

/// Where the node side of the lab lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodePlacement {
    /// A namespace of its own: tests. Nothing of the lab is visible on the host.
    OwnNetns,
    /// The host itself, as on a real node: demos (`cargo xtask run`), where the daemon, its
    /// metrics and a curl typed by the user all live on the host.
    Host,
}

pub struct Lab {
    // Field order is drop order: pods (and their processes) go before the node.
    pods: Vec<Pod>,
    node: Option<Netns>,
    id: String,
    bridge: String,
    /// The bridge (when the node is the host) is in this process's ledger.
    bridge_recorded: bool,
}

impl Lab {
    pub fn new(placement: NodePlacement) -> Result<Self, LabError> {
        let id = unique_id();
        let (node, bridge) = match placement {
            NodePlacement::OwnNetns => (
                Some(Netns::create(&format!("keel-{id}-node"))?),
                "kbr0".to_owned(),
            ),
            NodePlacement::Host => {
                let routes = ip(&["-4", "route", "show", "to", "match", LAB_SUBNET])?;
                let routes = String::from_utf8_lossy(&routes.stdout).to_string();
                if let Some(route) = routes.lines().find(|l| !l.starts_with("default")) {
                    return Err(LabError::SubnetInUse {
                        route: route.to_owned(),
                    });
                }
                (None, format!("keel{id}"))
            }
        };
        let mut lab = Self {
            pods: Vec::new(),
            node,
            id,
            bridge,
            bridge_recorded: false,
        };
        if let Some(node) = &lab.node {
            client_sysctls(node)?;
        }
        // A fixed address: a bridge without one takes the lowest of its ports', so it would
        // change as pods come and go, and pods holding the old one in their ARP cache would
        // send to a port instead of the node (the pod runtime's bridge learned this first).
        let ledger = Ledger::host();
        let hold = lab.node.is_none().then(|| ledger.hold());
        lab.node_ip(&[
            "link",
            "add",
            &lab.bridge,
            "address",
            BRIDGE_MAC,
            "type",
            "bridge",
        ])?;
        if lab.node.is_none() {
            lab.bridge_recorded = ledger.record(Resource::link(&lab.bridge));
        }
        drop(hold);
        lab.node_ip(&[
            "addr",
            "add",
            &format!("{NODE_IP}/{PREFIX_LEN}"),
            "dev",
            &lab.bridge,
        ])?;
        lab.node_ip(&["link", "set", &lab.bridge, "up"])?;
        Ok(lab)
    }

    /// `ip ARGS` run on the node.
    pub fn node_ip(&self, args: &[&str]) -> Result<std::process::Output, CommandError> {
        match &self.node {
            Some(netns) => netns.ip(args),
            None => ip(args),
        }
    }

    /// The node's namespace; `None` when the node is the host.
    pub fn node_netns(&self) -> Option<&Netns> {
        self.node.as_ref()
    }

    /// A placement on the node, optionally in a cgroup.
    pub fn on_node(&self, cgroup: Option<&std::path::Path>) -> Placement {
        Placement {
            netns: self.node.as_ref().map(Netns::path),
            cgroup: cgroup.map(Into::into),
        }
    }

    /// Adds a pod named `name` (unique in this lab) with the next free address.
    pub fn add_pod(&mut self, name: &str) -> Result<&mut Pod, LabError> {
        let index = self.pods.len();
        let host_octet = u8::try_from(index + 2).map_err(|_| LabError::Full)?;
        if host_octet > 251 {
            return Err(LabError::Full);
        }
        let addr = Ipv4Addr::new(10, 244, 0, host_octet);
        let veth = format!("kv{}p{index}", self.id);
        let netns = self.wired_netns(name, &veth, addr)?;
        self.node_ip(&["link", "set", &veth, "master", &self.bridge, "up"])?;
        Ok(self.push_pod(netns, name, addr))
    }

    /// A namespace `keel-<lab>-<name>` whose `eth0` (holding `addr`/24, up) is the peer of the
    /// node's interface `node_side`.
    fn wired_netns(&self, name: &str, node_side: &str, addr: Ipv4Addr) -> Result<Netns, LabError> {
        let netns = Netns::create(&format!("keel-{}-{name}", self.id))?;
        self.node_ip(&[
            "link",
            "add",
            node_side,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            netns.name(),
        ])?;
        netns.ip(&[
            "addr",
            "add",
            &format!("{addr}/{PREFIX_LEN}"),
            "dev",
            "eth0",
        ])?;
        netns.ip(&["link", "set", "eth0", "up"])?;
        Ok(netns)
    }

    fn push_pod(&mut self, netns: Netns, name: &str, addr: Ipv4Addr) -> &mut Pod {
        self.pods.push(Pod {
            children: Vec::new(),
            netns,
            name: name.to_owned(),
            addr,
            cgroup: None,
        });
        let last = self.pods.len() - 1;
        &mut self.pods[last]
    }

    /// Every pod (and remote host) of the lab.
    pub fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter()
    }

    pub fn pod(&mut self, name: &str) -> Option<&mut Pod> {
        self.pods.iter_mut().find(|p| p.name == name)
    }

    /// Adds a host "beyond the node": its own namespace on a point-to-point link to the node
    /// (the node's uplink, [`UPLINK`] on the node side, [`UPLINK_NODE_IP`]), with routes to the
    /// service CIDR and the pod subnet through the node and nothing else. Its traffic reaches
    /// services the way another node's or an external client's would: as packets, through
    /// the uplink, never through keel's cgroup. Pods get a route back to it; the node starts
    /// forwarding. Only one per lab.
    pub fn add_remote(&mut self, name: &str) -> Result<&mut Pod, LabError> {
        let Some(node) = &self.node else {
            return Err(LabError::Io {
                what: "a remote host needs a lab node namespace".into(),
                source: std::io::ErrorKind::Unsupported.into(),
            });
        };
        node.sysctl("net.ipv4.ip_forward", "1")?;
        let netns = self.wired_netns(name, UPLINK, REMOTE_IP)?;
        self.node_ip(&[
            "addr",
            "add",
            &format!("{UPLINK_NODE_IP}/{PREFIX_LEN}"),
            "dev",
            UPLINK,
        ])?;
        self.node_ip(&["link", "set", UPLINK, "up"])?;
        let via = UPLINK_NODE_IP.to_string();
        netns.ip(&["route", "add", "10.96.0.0/12", "via", &via])?;
        netns.ip(&["route", "add", LAB_SUBNET, "via", &via])?;
        client_sysctls(&netns)?;
        for pod in &self.pods {
            pod.netns
                .ip(&["route", "add", REMOTE_SUBNET, "via", &NODE_IP.to_string()])?;
        }
        Ok(self.push_pod(netns, name, REMOTE_IP))
    }
}

/// Settings for namespaces that run clients (shared/BENCH-NOTES.md). Hundreds of short
/// connections from one client reuse source ports while the backends still hold the old
/// connections in TIME_WAIT; with per-connection random timestamp offsets (the default,
/// `tcp_timestamps=1`) the backend's PAWS check drops the new SYN and the connect stalls for a
/// retransmission. Monotonic timestamps (`2`) let TIME_WAIT be recycled, and a wide port range
/// makes reuse rarer.
fn client_sysctls(netns: &Netns) -> Result<(), CommandError> {
    netns.sysctl("net.ipv4.tcp_timestamps", "2")?;
    netns.sysctl("net.ipv4.ip_local_port_range", "10000 65000")
}

/// The node side of the link to a remote host.
pub const UPLINK: &str = "up0";
/// The node's address on the uplink.
pub const UPLINK_NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 245, 0, 1);
/// The remote host's address.
pub const REMOTE_IP: Ipv4Addr = Ipv4Addr::new(10, 245, 0, 2);
const REMOTE_SUBNET: &str = "10.245.0.0/24";

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a pod's namespace deletes its veth pair; the bridge goes with the node's
        // namespace, or explicitly when the node is the host.
        self.pods.clear();
        if self.node.is_none() {
            let gone = crate::netns::delete_link(&self.bridge);
            if gone && self.bridge_recorded {
                Ledger::host().released();
            }
        }
    }
}

pub struct Pod {
    // Processes die before their namespace is deleted.
    children: Vec<Child>,
    netns: Netns,
    name: String,
    addr: Ipv4Addr,
    /// The cgroup (v2 path) the pod's processes join; `None`: the caller's.
    cgroup: Option<std::path::PathBuf>,
}

impl Pod {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// Puts the processes the pod starts from now on into `cgroup`, so their CPU time can be
    /// read there (the benchmarks account the lab's CPU that way).
    pub fn place_in(&mut self, cgroup: &std::path::Path) -> &mut Self {
        self.cgroup = Some(cgroup.to_owned());
        self
    }

    /// Where the pod's processes run: its namespace, and its cgroup if it was given one. A
    /// client started there (a remote host's, say) is a process of the pod's.
    pub fn placement(&self) -> Placement {
        Placement {
            netns: Some(self.netns.path()),
            cgroup: self.cgroup.clone(),
        }
    }

    /// Runs `command` in the pod for the pod's lifetime.
    pub fn spawn(&mut self, name: &str, command: Command) -> Result<&mut Child, LabError> {
        let child =
            Child::spawn(name, command, &self.placement()).map_err(|source| LabError::Io {
                what: format!("spawning {name} in pod {}", self.name),
                source,
            })?;
        self.children.push(child);
        let last = self.children.len() - 1;
        Ok(&mut self.children[last])
    }

    /// Starts keel's test server on `port`, answering every TCP connection with the pod's
    /// name, and waits until it listens.
    pub fn serve(&mut self, port: u16) -> Result<(), LabError> {
        let mut command = Command::new(crate::bin("keel-lab-agent"));
        command.args([
            "serve",
            "--name",
            &self.name.clone(),
            "--port",
            &port.to_string(),
        ]);
        let name = format!("server {}:{port}", self.name);
        let child = self.spawn(&name, command)?;
        child
            .wait_for_line("listening", Duration::from_secs(5))
            .map_err(|source| LabError::Io { what: name, source })
    }
}
