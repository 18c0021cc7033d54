//! Store members each in a pod of a `keel_lab` lab, so that the network between them can be
//! cut for real: every member has a network stack of its own (its own address, `eth0` on the
//! lab's bridge), and a partition is a set of iptables rules inside the members' namespaces,
//! where the kernel drops the packets exactly as a broken switch or a firewall would. On
//! loopback no such cut is possible without also cutting the test's own clients.
//!
//! ```text
//!   node netns: bridge 10.244.0.1 ── the test's etcd clients (threads moved in with setns)
//!     ├── pod m0 10.244.0.2  control-plane  0.0.0.0:2379 (clients), 0.0.0.0:2380 (raft)
//!     ├── pod m1 10.244.0.3  control-plane
//!     └── pod m2 10.244.0.4  control-plane
//! ```
//! The rules only ever name other members' addresses, never the node's, so the test keeps
//! talking to every member, isolated or not: that is how it sees what a minority answers.
//! Everything (rules included) lives in namespaces the lab created and deletes on drop.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use keel_lab::{Child, Lab, NodePlacement, Placement};
use tempfile::TempDir;

use super::{leader_peer_url, member_args, Member, BINARY};

/// The ports every member listens on inside its pod (each pod has its own stack, so all
/// members use etcd's well-known ones).
pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;

/// Debian's iptables (`cargo xtask setup` installs it); named by path since a test run's PATH
/// may lack `/usr/sbin`.
pub const IPTABLES: &str = "/usr/sbin/iptables";

/// The pod a member runs in.
struct PodInfo {
    /// The namespace's name, for `ip netns exec`.
    netns: String,
    addr: Ipv4Addr,
}

pub struct LabCluster {
    // Field order is drop order: the members die before the lab deletes their namespaces
    // (`Drop` below kills them first anyway).
    pub members: Vec<Member>,
    pods: Vec<PodInfo>,
    lab: Lab,
    pub dir: TempDir,
}

impl LabCluster {
    /// `size` members `m0`, `m1`, ..., member `i` in pod `m{i}` at `10.244.0.{i+2}`, started
    /// and serving. `extra` is appended to every member's arguments (timing flags, say).
    pub fn new(size: usize, extra: &[&str]) -> Self {
        assert!(
            Path::new(IPTABLES).exists(),
            "{IPTABLES} is missing: partitions are iptables rules (install Debian's iptables, \
             `cargo xtask setup` does)"
        );
        let mut lab = Lab::new(NodePlacement::OwnNetns)
            .unwrap_or_else(|e| panic!("cannot create the lab (root is required): {e}"));
        let dir = tempfile::tempdir().expect("a data directory");
        let mut pods = Vec::with_capacity(size);
        let mut paths = Vec::with_capacity(size);
        for i in 0..size {
            let pod = lab
                .add_pod(&format!("m{i}"))
                .unwrap_or_else(|e| panic!("cannot add pod m{i}: {e}"));
            pods.push(PodInfo {
                netns: pod.netns().name().to_owned(),
                addr: pod.addr(),
            });
            paths.push(pod.netns().path());
        }
        let initial: Vec<String> = pods
            .iter()
            .enumerate()
            .map(|(i, pod)| format!("m{i}=http://{}:{PEER_PORT}", pod.addr))
            .collect();
        let initial = initial.join(",");
        // Listening on every address of the pod's own stack; the advertised URLs name the
        // pod's address, the peer URL being the member's identity.
        let any_client = SocketAddr::from(([0, 0, 0, 0], CLIENT_PORT));
        let any_peer = SocketAddr::from(([0, 0, 0, 0], PEER_PORT));
        let members = pods
            .iter()
            .zip(paths)
            .enumerate()
            .map(|(i, (pod, netns_path))| {
                let name = format!("m{i}");
                let data_dir = dir.path().join(&name);
                let client = SocketAddr::from((pod.addr, CLIENT_PORT));
                let peer = SocketAddr::from((pod.addr, PEER_PORT));
                let mut args = member_args(&name, &data_dir, any_client, any_peer, &initial, extra);
                args.extend([
                    "--advertise-peer-url".to_owned(),
                    format!("http://{peer}"),
                    "--advertise-client-url".to_owned(),
                    format!("http://{client}"),
                ]);
                let mut member = Member::new(&name, data_dir, client, peer, args);
                member.placement = Placement {
                    netns: Some(netns_path),
                    cgroup: None,
                };
                member
            })
            .collect();
        let mut cluster = Self {
            members,
            pods,
            lab,
            dir,
        };
        cluster.start_all();
        cluster
    }

    /// Starts every member that is not running, all before waiting on any (as
    /// `Cluster::start_all`), and waits until each serves clients.
    pub fn start_all(&mut self) {
        for m in self.members.iter_mut().filter(|m| !m.is_running()) {
            let mut command = Command::new(BINARY);
            command.args(&m.args).env("RUST_LOG", "info,openraft=warn");
            let child = Child::spawn(&m.name, command, &m.placement)
                .unwrap_or_else(|e| panic!("cannot start member {}: {e}", m.name));
            m.child = Some(child);
        }
        for m in &mut self.members {
            if let Some(child) = m.child.as_mut() {
                if let Err(e) =
                    child.wait_for_line("serving etcd's v3 API", Duration::from_secs(20))
                {
                    panic!(
                        "member {} did not start: {e}\n{}",
                        m.name,
                        child.output().join("\n")
                    );
                }
            }
        }
    }

    /// `/run/netns/<node>`: the namespace from which the pods' addresses are reachable.
    pub fn node_netns(&self) -> PathBuf {
        self.lab
            .node_netns()
            .map(|netns| netns.path())
            .expect("a lab made with NodePlacement::OwnNetns has a node namespace")
    }

    /// Runs `future` to completion in the lab's node namespace; see [`block_on_in_node`].
    pub fn block_on<F>(&self, future: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        block_on_in_node(&self.node_netns(), future)
    }

    /// Runs `future` in the lab's node namespace on a thread of its own, while the caller
    /// goes on (faults are injected from the test's thread meanwhile); see [`spawn_in_node`].
    pub fn spawn<F>(&self, future: F) -> std::thread::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        spawn_in_node(self.node_netns(), future)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    pub fn endpoints_of(&self, members: &[usize]) -> Vec<String> {
        members
            .iter()
            .map(|&i| self.members[i].endpoint())
            .collect()
    }

    /// The pod address of member `i`.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        self.pods[i].addr
    }

    /// Cuts every member of `minority` off from every other member, both ways; the node (and
    /// so the test's clients) still reaches all of them. The rules go into the minority's
    /// namespaces only: dropping at one end is enough to cut a link both ways.
    pub fn partition(&self, minority: &[usize]) {
        let rest: Vec<usize> = (0..self.members.len())
            .filter(|i| !minority.contains(i))
            .collect();
        self.drop_between(minority, &rest);
    }

    /// Splits the members into `a` and `b` (every member of one side cut off from every member
    /// of the other), e.g. two against two, where neither side has a quorum.
    pub fn split(&self, a: &[usize], b: &[usize]) {
        self.drop_between(a, b);
    }

    /// Removes every rule [`partition`](Self::partition) and [`split`](Self::split) added.
    pub fn heal(&self) {
        for pod in &self.pods {
            for chain in ["INPUT", "OUTPUT"] {
                iptables(&pod.netns, &["-F", chain]);
            }
        }
    }

    /// In each pod of `from`: drop what arrives from, and what leaves for, each member of `to`.
    /// Established connections are cut too: a fresh namespace has no conntrack rule that would
    /// let them through.
    fn drop_between(&self, from: &[usize], to: &[usize]) {
        for &i in from {
            for &j in to.iter().filter(|&&j| j != i) {
                let other = self.pods[j].addr.to_string();
                iptables(
                    &self.pods[i].netns,
                    &["-A", "INPUT", "-s", &other, "-j", "DROP"],
                );
                iptables(
                    &self.pods[i].netns,
                    &["-A", "OUTPUT", "-d", &other, "-j", "DROP"],
                );
            }
        }
    }

    /// The index of the member that leads, as seen by the members in `among`, and only if it
    /// is itself one of them: on the majority side of a partition, the isolated old leader may
    /// still be named by a member that has not noticed yet, and must not count.
    pub async fn leader_among(&self, among: &[usize]) -> Option<usize> {
        for &i in among {
            let m = &self.members[i];
            if !m.is_running() {
                continue;
            }
            let Some(leader_peer) = leader_peer_url(&m.endpoint()).await else {
                continue;
            };
            let found = self
                .members
                .iter()
                .position(|x| x.peer_url() == leader_peer && x.is_running());
            if let Some(j) = found.filter(|j| among.contains(j)) {
                return Some(j);
            }
        }
        None
    }

    pub async fn leader(&self) -> Option<usize> {
        let all: Vec<usize> = (0..self.members.len()).collect();
        self.leader_among(&all).await
    }

    /// Waits until one of `among` leads and one of `among` says so.
    pub async fn wait_leader_among(&self, among: &[usize], timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.leader_among(among).await {
                return i;
            }
            if Instant::now() > deadline {
                panic!(
                    "no leader among {among:?} within {timeout:?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_leader(&self, timeout: Duration) -> usize {
        let all: Vec<usize> = (0..self.members.len()).collect();
        self.wait_leader_among(&all, timeout).await
    }

    /// Every member's output so far, for a failure message.
    pub fn logs(&self) -> String {
        let logs: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("--- {}:\n{}", m.name, m.output().join("\n")))
            .collect();
        logs.join("\n")
    }
}

impl Drop for LabCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
    }
}

/// `ip netns exec NETNS iptables -w ARGS`; a failure panics (the partition the test asked for
/// would not be there).
fn iptables(netns: &str, args: &[&str]) {
    let mut all = vec!["netns", "exec", netns, IPTABLES, "-w"];
    all.extend_from_slice(args);
    if let Err(e) = keel_lab::netns::run("ip", &all) {
        panic!("cannot change the partition in {netns}: {e}");
    }
}

/// Runs `future` to completion on a new thread that first moves into the network namespace
/// `node_netns` (`/run/netns/NAME`), on a current-thread tokio runtime of that thread. Only
/// that thread moves (network namespaces are per thread), so every socket the future opens
/// is in the namespace while the test's own thread stays where it was. A panic in the future
/// is the caller's panic.
pub fn block_on_in_node<F>(node_netns: &Path, future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("lab-node".into())
            .spawn_scoped(scope, move || run_in_netns(node_netns, future))
            .expect("a thread for the lab node");
        match handle.join() {
            Ok(output) => output,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// [`block_on_in_node`] without waiting: the caller joins the handle (and should resume a
/// panic it carries).
pub fn spawn_in_node<F>(node_netns: PathBuf, future: F) -> std::thread::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::Builder::new()
        .name("lab-node".into())
        .spawn(move || run_in_netns(&node_netns, future))
        .expect("a thread for the lab node")
}

/// Joins a thread of [`spawn_in_node`], its panic becoming the caller's.
pub fn join<T>(handle: std::thread::JoinHandle<T>) -> T {
    match handle.join() {
        Ok(output) => output,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn run_in_netns<F: Future>(netns: &Path, future: F) -> F::Output {
    if let Err(e) = enter_netns(netns) {
        panic!(
            "cannot enter the network namespace {}: {e}",
            netns.display()
        );
    }
    // Built after the move: the runtime's sockets and any thread it starts later (its
    // blocking pool, spawned from here) are in the namespace too.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the lab node");
    runtime.block_on(future)
}

/// Moves the calling thread (only it) into the network namespace at `path`.
fn enter_netns(path: &Path) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    // SAFETY: setns(2) on a namespace descriptor that stays open for the call; with
    // CLONE_NEWNET it changes only the calling thread's network namespace.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
