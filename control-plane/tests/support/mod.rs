//! Harness for the store's tests: `control-plane` members as real processes, on loopback or
//! each in a network namespace of a lab, stopped and their data removed when dropped.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use keel_lab::{Child, Placement};
use tempfile::TempDir;

pub const BINARY: &str = env!("CARGO_BIN_EXE_control-plane");

/// The tests' runtime: two workers, like the machine's two cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `limit`; fails the test
/// naming `what` when it never does.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fails the test with `why` root is needed when it is not run as root.
pub fn require_root(why: &str) {
    // SAFETY: geteuid(2) has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "{why}: run them as root (cargo xtask test)");
}

/// A free loopback port below the kernel's ephemeral range ([`keel_lab::free_loopback_port`]).
pub fn free_port() -> u16 {
    keel_lab::free_loopback_port().expect("a free loopback port")
}

/// One member process and how to start it again.
pub struct Member {
    pub name: String,
    pub data_dir: PathBuf,
    pub client: SocketAddr,
    pub peer: SocketAddr,
    pub args: Vec<String>,
    pub placement: Placement,
    child: Option<Child>,
}

impl Member {
    pub fn new(
        name: &str,
        data_dir: PathBuf,
        client: SocketAddr,
        peer: SocketAddr,
        args: Vec<String>,
    ) -> Self {
        Self {
            name: name.into(),
            data_dir,
            client,
            peer,
            args,
            placement: Placement::default(),
            child: None,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.client)
    }

    pub fn peer_url(&self) -> String {
        format!("http://{}", self.peer)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether the process started by [`Member::start`] is still running now.
    pub fn has_not_exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Starts the process and waits until it serves clients.
    pub fn start(&mut self) {
        let mut command = Command::new(BINARY);
        command
            .args(&self.args)
            .env("RUST_LOG", "info,openraft=warn");
        let mut child = Child::spawn(&self.name, command, &self.placement)
            .unwrap_or_else(|e| panic!("cannot start member {}: {e}", self.name));
        if let Err(e) = child.wait_for_line("serving etcd's v3 API", Duration::from_secs(20)) {
            panic!(
                "member {} did not start: {e}\n{}",
                self.name,
                child.output().join("\n")
            );
        }
        self.child = Some(child);
    }

    /// Starts the process expecting it to refuse to start: its exit code (`None`: killed by a
    /// signal, or still running after `timeout`, and killed) and everything it printed.
    pub fn start_refused(&mut self, timeout: Duration) -> (Option<i32>, Vec<String>) {
        let mut command = Command::new(BINARY);
        command
            .args(&self.args)
            .env("RUST_LOG", "info,openraft=warn");
        let child = Child::spawn(&self.name, command, &self.placement)
            .unwrap_or_else(|e| panic!("cannot start member {}: {e}", self.name));
        child.finish(timeout).unwrap_or_default()
    }

    /// `kill -9`: no shutdown, no flush beyond what was already synced.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.signal(libc::SIGKILL);
            let _ = child.wait_timeout(Duration::from_secs(10));
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) -> Vec<String> {
        match self.child.take() {
            Some(child) => {
                child.signal(libc::SIGTERM);
                child
                    .finish(Duration::from_secs(10))
                    .map(|(_, lines)| lines)
                    .unwrap_or_default()
            }
            None => Vec::new(),
        }
    }

    pub fn output(&self) -> Vec<String> {
        self.child.as_ref().map(|c| c.output()).unwrap_or_default()
    }

    /// Waits up to `timeout` for the process to exit by itself: its exit code (`None`: still
    /// running then, and killed, or killed by a signal) and everything it printed.
    pub fn wait_exit(&mut self, timeout: Duration) -> (Option<i32>, Vec<String>) {
        match self.child.take() {
            Some(child) => child.finish(timeout).unwrap_or_default(),
            None => (None, Vec::new()),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.pid())
    }
}

/// Arguments of a member of `cluster` (name, client address, peer address); the timing is
/// the binary's default unless `extra` says otherwise.
pub fn member_args(
    name: &str,
    data_dir: &Path,
    client: SocketAddr,
    peer: SocketAddr,
    initial_cluster: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--name".into(),
        name.into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--listen-client".into(),
        client.to_string(),
        "--listen-peer".into(),
        peer.to_string(),
        "--initial-cluster".into(),
        initial_cluster.into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Members on loopback, each with its own ports and data directory.
pub struct Cluster {
    pub members: Vec<Member>,
    pub dir: TempDir,
}

impl Cluster {
    pub fn loopback(size: usize, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("a data directory");
        Self::loopback_with(dir, size, extra, |_| Vec::new())
    }

    /// Members whose data directories live under `parent` (a small tmpfs, say).
    pub fn loopback_in(parent: &Path, size: usize, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir_in(parent).expect("a data directory");
        Self::loopback_with(dir, size, extra, |_| Vec::new())
    }

    /// Members on loopback with arguments of their own besides `extra`: `own(i)` for member
    /// `i` (a metrics port each, say).
    pub fn loopback_each(size: usize, extra: &[&str], own: impl Fn(usize) -> Vec<String>) -> Self {
        let dir = tempfile::tempdir().expect("a data directory");
        Self::loopback_with(dir, size, extra, own)
    }

    fn loopback_with(
        dir: TempDir,
        size: usize,
        extra: &[&str],
        own: impl Fn(usize) -> Vec<String>,
    ) -> Self {
        let addrs: Vec<(SocketAddr, SocketAddr)> = (0..size)
            .map(|_| {
                let client = SocketAddr::from(([127, 0, 0, 1], free_port()));
                let peer = SocketAddr::from(([127, 0, 0, 1], free_port()));
                (client, peer)
            })
            .collect();
        let initial: Vec<String> = addrs
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://{peer}"))
            .collect();
        let initial = initial.join(",");
        let members = addrs
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let name = format!("m{i}");
                let data_dir = dir.path().join(&name);
                Member {
                    args: member_args(&name, &data_dir, *client, *peer, &initial, extra),
                    name,
                    data_dir,
                    client: *client,
                    peer: *peer,
                    placement: Placement::default(),
                    child: None,
                }
            })
            .collect();
        let mut cluster = Self { members, dir };
        for (i, member) in cluster.members.iter_mut().enumerate() {
            member.args.extend(own(i));
        }
        // Start all before waiting on any: a member of three waits for a quorum to serve.
        cluster.start_all();
        cluster
    }

    /// A member that joins this cluster (`--initial-cluster-state existing`, no initial
    /// cluster), with an empty data directory, not yet started nor added: its index.
    pub fn push_joiner(&mut self) -> usize {
        let name = format!("m{}", self.members.len());
        let client = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let peer = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let data_dir = self.dir.path().join(&name);
        let mut args = member_args(&name, &data_dir, client, peer, "", &[]);
        args.retain(|a| a != "--initial-cluster" && !a.is_empty());
        args.extend(["--initial-cluster-state".into(), "existing".into()]);
        self.members
            .push(Member::new(&name, data_dir, client, peer, args));
        self.members.len() - 1
    }

    pub fn start_all(&mut self) {
        let handles: Vec<_> = self
            .members
            .iter_mut()
            .filter(|m| !m.is_running())
            .map(|m| {
                let mut command = Command::new(BINARY);
                command.args(&m.args).env("RUST_LOG", "info,openraft=warn");
                let child = Child::spawn(&m.name, command, &m.placement)
                    .unwrap_or_else(|e| panic!("cannot start member {}: {e}", m.name));
                m.child = Some(child);
            })
            .collect();
        drop(handles);
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

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    pub fn running_endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.is_running())
            .map(Member::endpoint)
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
    }
}

/// How long one question to one member may take before the next member is asked.
const ASK: Duration = Duration::from_secs(1);

/// The peer URL of the leader as the member at `endpoint` sees it (`Status`, then
/// `MemberList`); `None` when it cannot be asked or knows no leader.
pub async fn leader_peer_url(endpoint: &str) -> Option<String> {
    let (mut client, status) = status_within(endpoint, ASK).await?;
    let leader = status.leader();
    if leader == 0 {
        return None;
    }
    let list = tokio::time::timeout(ASK, client.member_list())
        .await
        .ok()?
        .ok()?;
    let member = list.members().iter().find(|x| x.id() == leader)?;
    member.peer_urls().first().cloned()
}

/// The index of the member that is leader, asked of the running members.
pub async fn leader(cluster: &Cluster) -> Option<usize> {
    for m in cluster.members.iter().filter(|m| m.is_running()) {
        let Some(leader_peer) = leader_peer_url(&m.endpoint()).await else {
            continue;
        };
        if let Some(i) = cluster
            .members
            .iter()
            .position(|x| x.peer_url() == leader_peer && x.is_running())
        {
            return Some(i);
        }
    }
    None
}

pub async fn wait_leader(cluster: &Cluster, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(i) = leader(cluster).await {
            return i;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = cluster
                .members
                .iter()
                .map(|m| format!("--- {}:\n{}", m.name, m.output().join("\n")))
                .collect();
            panic!("no leader within {timeout:?}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The member at `endpoint`'s `Status`, with the client that asked, when connecting and
/// asking each answer within `limit`; `None` otherwise.
pub async fn status_within(
    endpoint: &str,
    limit: Duration,
) -> Option<(etcd_client::Client, etcd_client::StatusResponse)> {
    let mut client = tokio::time::timeout(limit, connect(&[endpoint.to_owned()]))
        .await
        .ok()?
        .ok()?;
    let status = tokio::time::timeout(limit, client.status())
        .await
        .ok()?
        .ok()?;
    Some((client, status))
}

pub async fn connect(endpoints: &[String]) -> Result<etcd_client::Client, etcd_client::Error> {
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(8));
    etcd_client::Client::connect(endpoints, Some(options)).await
}

/// `etcdctl` from Debian's etcd-client, against `endpoints`; `cargo xtask setup` installs it.
pub fn etcdctl(endpoints: &str, args: &[&str]) -> std::process::Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(args)
        .output()
        .expect("etcdctl (Debian's etcd-client, installed by `cargo xtask setup`)")
}
pub mod api;
pub mod lab_cluster;
pub mod scheduling;
pub mod workload;
