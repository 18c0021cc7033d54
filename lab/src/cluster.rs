//! A whole keel cluster in one lab: control-plane members and node daemons, each in a
//! network namespace of its own on the lab's bridge, each node with its own cgroup subtree,
//! bpffs directory, state directory and pod CIDR. `cargo xtask run --members N --nodes M`
//! and the end-to-end tests build it.
//!
//! ```text
//!   lab switch netns: bridge 10.244.0.1 ── kubectl, curl (the operator's seat)
//!     ├── m0 10.244.0.2   control-plane  :6443 API, :2379 etcd API, :2380 raft, :2381 metrics
//!     ├── m1 ...
//!     ├── n0 10.244.0.x   node-daemon    bridge keel0 10.200.0.1/24, pods; :10249 metrics
//!     └── n1 ...          node-daemon    bridge keel0 10.200.1.1/24, pods
//! ```
//! With several members, a TCP load balancer on the switch (`keel-lab-agent balance`,
//! `10.244.0.1:6443`) fronts their API servers, as haproxy or kube-vip does in an HA
//! cluster: node daemons and the admin kubeconfig name it, so they outlive any one member.
//!
//! Pod CIDRs come from [`CLUSTER_CIDR`] (the control plane's node IPAM), kept apart from the
//! lab's own subnet; the nodes route each other's pod CIDRs (host-gw) over the bridge. Nothing
//! has a default route: no packet leaves the machine.

use std::{
    io,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use crate::{unique_id, Cgroup, Child, Lab, NodePlacement, Placement};

/// The range node pod CIDRs are cut from (a /24 each).
pub const CLUSTER_CIDR: &str = "10.200.0.0/16";
/// The ports every member listens on inside its namespace.
pub const API_PORT: u16 = 6443;
pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;
pub const MEMBER_METRICS_PORT: u16 = 2381;
pub const NODE_METRICS_PORT: u16 = 10249;

/// What to build.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub members: usize,
    pub nodes: usize,
    /// `--proxy-mode` of every node daemon.
    pub proxy_mode: String,
    /// Where every member's and node's data goes (`m0/`, `n0/`, `pki/`, kubeconfigs).
    pub dir: PathBuf,
    /// Where `control-plane`, `node-daemon` and `keelctl` are.
    pub bin_dir: PathBuf,
    /// An OCI layout imported into every node's image store before it starts.
    pub image_layout: Option<PathBuf>,
    /// More arguments for every member and every node daemon.
    pub member_args: Vec<String>,
    pub node_args: Vec<String>,
}

/// One process of the cluster and how to start it again.
pub struct LabProcess {
    pub name: String,
    pub addr: Ipv4Addr,
    pub netns: PathBuf,
    program: PathBuf,
    args: Vec<String>,
    ready_line: &'static str,
    child: Option<Child>,
}

impl LabProcess {
    /// Starts the process and waits for its ready line.
    pub fn start(&mut self) -> io::Result<()> {
        self.spawn()?;
        self.wait_ready(Duration::from_secs(60))
    }

    fn spawn(&mut self) -> io::Result<()> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .env("RUST_LOG", "info,openraft=warn")
            .env("NO_COLOR", "1");
        let placement = Placement {
            netns: Some(self.netns.clone()),
            cgroup: None,
        };
        self.child = Some(Child::spawn(&self.name, command, &placement)?);
        Ok(())
    }

    fn wait_ready(&mut self, timeout: Duration) -> io::Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Err(io::Error::other(format!("{} is not running", self.name)));
        };
        child.wait_for_line(self.ready_line, timeout).map_err(|e| {
            io::Error::other(format!(
                "{} did not start: {e}\n{}",
                self.name,
                child.output().join("\n")
            ))
        })
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The process id while it runs (benches read its `/proc/<pid>/status` and `stat`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::pid)
    }

    /// `kill -9`: no shutdown at all (a crash, a lost machine).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.signal(libc::SIGKILL);
            let _ = child.wait_timeout(Duration::from_secs(10));
        }
    }

    /// SIGTERM, and wait.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            child.signal(libc::SIGTERM);
            let _ = child.finish(Duration::from_secs(20));
        }
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> Vec<String> {
        self.child.as_ref().map(Child::output).unwrap_or_default()
    }
}

/// The running cluster. Dropping it stops every process, runs each node daemon's cleanup in
/// its namespace, and deletes the namespaces, cgroups and pins.
pub struct ClusterLab {
    // Field order is drop order (and `Drop` stops the processes first anyway).
    pub members: Vec<LabProcess>,
    pub nodes: Vec<LabProcess>,
    node_cleanups: Vec<(PathBuf, Vec<String>)>,
    /// The kubeconfig of `kubernetes-admin`, naming the API (m0, or the balancer in front of
    /// several members): usable from the switch.
    pub admin_kubeconfig: PathBuf,
    /// The API's URL in every kubeconfig the lab wrote.
    pub api_server: String,
    /// The TCP balancer in front of several members' API servers (killed on drop).
    balancer: Option<Child>,
    pki: PathBuf,
    /// The parent of every node's cgroup.
    cgroup: Cgroup,
    lab: Lab,
    bin_dir: PathBuf,
    pin_dirs: Vec<PathBuf>,
}

fn other(message: String) -> io::Error {
    io::Error::other(message)
}

impl ClusterLab {
    /// Builds the lab, starts the members (the first alone until it has made the cluster's
    /// PKI, which all share), issues every node its credential, starts the node daemons and
    /// waits until each has registered.
    pub fn start(spec: &ClusterSpec) -> io::Result<Self> {
        if spec.members == 0 {
            return Err(other("a cluster needs at least one member".into()));
        }
        let mut lab = Lab::new(NodePlacement::OwnNetns).map_err(|e| other(e.to_string()))?;
        let id = unique_id();
        let cgroup = Cgroup::create(&format!("keel-cluster-{id}"))?;
        std::fs::create_dir_all(&spec.dir)?;
        let pki = spec.dir.join("pki");
        let mut member_addrs = Vec::new();
        let mut member_netns = Vec::new();
        for i in 0..spec.members {
            let pod = lab
                .add_pod(&format!("m{i}"))
                .map_err(|e| other(e.to_string()))?;
            member_addrs.push(pod.addr());
            member_netns.push(pod.netns().path());
        }
        let mut node_addrs = Vec::new();
        let mut node_netns = Vec::new();
        for i in 0..spec.nodes {
            let pod = lab
                .add_pod(&format!("n{i}"))
                .map_err(|e| other(e.to_string()))?;
            node_addrs.push(pod.addr());
            node_netns.push(pod.netns().path());
        }
        let initial: Vec<String> = member_addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| format!("m{i}=http://{addr}:{PEER_PORT}"))
            .collect();
        let members = member_addrs
            .iter()
            .zip(&member_netns)
            .enumerate()
            .map(|(i, (addr, netns))| {
                let mut args: Vec<String> = vec![
                    "--name".into(),
                    format!("m{i}"),
                    "--data-dir".into(),
                    spec.dir.join(format!("m{i}")).display().to_string(),
                    "--pki-dir".into(),
                    pki.display().to_string(),
                    "--listen-client".into(),
                    format!("0.0.0.0:{CLIENT_PORT}"),
                    "--listen-peer".into(),
                    format!("0.0.0.0:{PEER_PORT}"),
                    "--advertise-client-url".into(),
                    format!("http://{addr}:{CLIENT_PORT}"),
                    "--advertise-peer-url".into(),
                    format!("http://{addr}:{PEER_PORT}"),
                    "--initial-cluster".into(),
                    initial.join(","),
                    "--listen-api".into(),
                    format!("0.0.0.0:{API_PORT}"),
                    "--tls-san".into(),
                    addr.to_string(),
                    // The balancer's address, which clients of an HA lab dial.
                    "--tls-san".into(),
                    crate::lab::NODE_IP.to_string(),
                    "--metrics-addr".into(),
                    format!("0.0.0.0:{MEMBER_METRICS_PORT}"),
                    "--cluster-cidr".into(),
                    CLUSTER_CIDR.into(),
                ];
                args.extend(spec.member_args.iter().cloned());
                LabProcess {
                    name: format!("m{i}"),
                    addr: *addr,
                    netns: netns.clone(),
                    program: spec.bin_dir.join("control-plane"),
                    args,
                    ready_line: "Kubernetes API serving",
                    child: None,
                }
            })
            .collect();
        let mut cluster = Self {
            members,
            nodes: Vec::new(),
            node_cleanups: Vec::new(),
            admin_kubeconfig: spec.dir.join("admin.kubeconfig"),
            api_server: String::new(),
            balancer: None,
            pki: pki.clone(),
            cgroup,
            lab,
            bin_dir: spec.bin_dir.clone(),
            pin_dirs: Vec::new(),
        };
        // The first member makes the CA and the ServiceAccount key; the others must find them.
        cluster.members[0].spawn()?;
        wait_for(
            || pki.join("ca.key").exists() && pki.join("sa.key").exists(),
            Duration::from_secs(30),
        )
        .map_err(|()| {
            other(format!(
                "m0 made no PKI in {}:\n{}",
                pki.display(),
                cluster.members[0].log().join("\n")
            ))
        })?;
        for member in cluster.members.iter_mut().skip(1) {
            member.spawn()?;
        }
        for member in &mut cluster.members {
            member.wait_ready(Duration::from_secs(60))?;
        }
        // One member is the API; several sit behind the balancer.
        let api = if spec.members > 1 {
            cluster.balancer = Some(start_balancer(&spec.bin_dir, &cluster.lab, &member_addrs)?);
            format!("https://{}:{API_PORT}", crate::lab::NODE_IP)
        } else {
            format!("https://{}:{API_PORT}", member_addrs[0])
        };
        cluster.api_server = api.clone();
        cluster.keelctl_kubeconfig(
            &pki,
            "kubernetes-admin",
            "system:masters",
            &api,
            &cluster.admin_kubeconfig.clone(),
        )?;
        // Nodes join as kubeadm's do: with a bootstrap token that only asks for the node's
        // certificate, which the control plane approves and signs. No node sees the CA key.
        let bootstrap = spec.dir.join("bootstrap.kubeconfig");
        cluster.join_token(&bootstrap)?;
        for (i, (addr, netns)) in node_addrs.iter().zip(&node_netns).enumerate() {
            let name = format!("n{i}");
            let dir = spec.dir.join(&name);
            let state = dir.join("state");
            std::fs::create_dir_all(&state)?;
            // Written by the node daemon once its certificate is issued.
            let kubeconfig = dir.join("kubeconfig");
            if let Some(layout) = &spec.image_layout {
                import_image(&spec.bin_dir, layout, &state)?;
            }
            let node_cgroup = cluster.cgroup.path().join(&name);
            let pins = crate::pin_dir(&format!("keel-cluster-{name}"));
            cluster.pin_dirs.push(pins.clone());
            let pod_args: Vec<String> = vec![
                "--cgroup".into(),
                node_cgroup.display().to_string(),
                "--bpf-dir".into(),
                pins.display().to_string(),
                "--state-dir".into(),
                state.display().to_string(),
            ];
            let mut args: Vec<String> = vec![
                "--bootstrap-kubeconfig".into(),
                bootstrap.display().to_string(),
                "--kubeconfig".into(),
                kubeconfig.display().to_string(),
                "--node-name".into(),
                name.clone(),
                "--node-ip".into(),
                addr.to_string(),
                "--proxy-mode".into(),
                spec.proxy_mode.clone(),
                "--metrics-addr".into(),
                format!("0.0.0.0:{NODE_METRICS_PORT}"),
                // Quick restarts: tests kill containers and wait for them to come back.
                "--restart-backoff".into(),
                "1s".into(),
            ];
            // In eBPF mode the tc programs serve what arrives at the node from outside
            // (NodePorts, source-NATed to backends on other nodes), as a cluster runs it.
            if spec.proxy_mode == "ebpf" {
                args.extend(["--tc-interface".into(), "eth0".into()]);
            }
            args.extend(pod_args.iter().cloned());
            args.extend(spec.node_args.iter().cloned());
            cluster.node_cleanups.push((netns.clone(), pod_args));
            cluster.nodes.push(LabProcess {
                name,
                addr: *addr,
                netns: netns.clone(),
                program: spec.bin_dir.join("node-daemon"),
                args,
                ready_line: "daemon ready",
                child: None,
            });
        }
        for node in &mut cluster.nodes {
            node.start()?;
        }
        Ok(cluster)
    }

    /// `keelctl join-token` as the administrator, from the switch (where the API is reached):
    /// a bootstrap kubeconfig at `out` (its token lives an hour, longer than any test). Tried
    /// for a while: a new cluster makes `kube-system` moments after its API answers.
    fn join_token(&self, out: &Path) -> io::Result<()> {
        let (admin, out) = (
            self.admin_kubeconfig.display().to_string(),
            out.display().to_string(),
        );
        let args = [
            "join-token",
            "--kubeconfig",
            &admin,
            "--ttl",
            "1h",
            "--description",
            "keel lab",
            "-o",
            &out,
        ];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let output = self.run_on_switch(&self.bin_dir.join("keelctl"), &args)?;
            if output.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                // The switch's runner gathers both streams into `stdout`.
                return Err(other(format!(
                    "keelctl join-token: {}",
                    String::from_utf8_lossy(&output.stdout)
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn keelctl_kubeconfig(
        &self,
        pki: &Path,
        user: &str,
        group: &str,
        server: &str,
        out: &Path,
    ) -> io::Result<()> {
        let output = Command::new(self.bin_dir.join("keelctl"))
            .arg("kubeconfig")
            .args(["--user", user, "--group", group, "--server", server])
            .arg("--pki-dir")
            .arg(pki)
            .arg("-o")
            .arg(out)
            .output()?;
        if !output.status.success() {
            return Err(other(format!(
                "keelctl kubeconfig --user {user}: {}",
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(())
    }

    /// A `kubernetes-admin` kubeconfig naming member `i`'s own API server, bypassing the
    /// balancer (to talk to one member, say, a partitioned one), written to `out`.
    pub fn member_kubeconfig(&self, i: usize, out: &Path) -> io::Result<()> {
        let member = self
            .members
            .get(i)
            .ok_or_else(|| other(format!("no member m{i}")))?;
        let server = format!("https://{}:{API_PORT}", member.addr);
        self.keelctl_kubeconfig(
            &self.pki,
            "kubernetes-admin",
            "system:masters",
            &server,
            out,
        )
    }

    /// `/run/netns/<switch>`: where the members' and nodes' addresses are all reachable.
    pub fn switch_netns(&self) -> PathBuf {
        self.lab.node_netns().map(|n| n.path()).unwrap_or_default()
    }

    /// The switch namespace's name, for `ip netns exec`.
    pub fn switch_netns_name(&self) -> String {
        self.lab
            .node_netns()
            .map(|n| n.name().to_owned())
            .unwrap_or_default()
    }

    /// The cgroup of node `i`'s pods, where keel's socket programs translate connections.
    pub fn node_cgroup(&self, i: usize) -> PathBuf {
        self.cgroup.path().join(format!("n{i}"))
    }

    /// Runs `program args` in the switch namespace and returns its output.
    pub fn run_on_switch(&self, program: &Path, args: &[&str]) -> io::Result<Output> {
        self.run_in(&self.switch_netns(), None, program, args)
    }

    /// [`ClusterLab::run_on_switch`] waiting at most `timeout` (a load generator runs for
    /// minutes). A program still running then is killed, which reads as a failed exit.
    pub fn run_on_switch_for(
        &self,
        program: &Path,
        args: &[&str],
        timeout: Duration,
    ) -> io::Result<Output> {
        run_placed(&self.switch_netns(), None, program, args, timeout)
    }

    /// Runs `program args` in `netns` (and `cgroup`), waiting at most 60 s.
    pub fn run_in(
        &self,
        netns: &Path,
        cgroup: Option<&Path>,
        program: &Path,
        args: &[&str],
    ) -> io::Result<Output> {
        run_placed(netns, cgroup, program, args, Duration::from_secs(60))
    }

    /// Debian's Prometheus in the switch namespace (`127.0.0.1:9090` there), scraping every
    /// member's and node's `/metrics`; its configuration and data go to `dir`.
    pub fn start_prometheus(&self, dir: &Path) -> io::Result<crate::prometheus::Prometheus> {
        let members: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}:{MEMBER_METRICS_PORT}", m.addr))
            .collect();
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{}:{NODE_METRICS_PORT}", n.addr))
            .collect();
        let placement = Placement {
            netns: Some(self.switch_netns()),
            cgroup: None,
        };
        crate::prometheus::Prometheus::start(dir, &placement, "127.0.0.1:9090", &members, &nodes)
    }

    /// Every process' log, for a failing test's message.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        if let Some(balancer) = &self.balancer {
            text.push_str("===== api balancer\n");
            text.push_str(&balancer.output().join("\n"));
            text.push('\n');
        }
        for process in self.members.iter().chain(&self.nodes) {
            text.push_str(&format!("===== {}\n", process.name));
            let log = process.log();
            let start = log.len().saturating_sub(300);
            text.push_str(&log[start..].join("\n"));
            text.push('\n');
        }
        text
    }
}

impl Drop for ClusterLab {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        // Each node's pods, bridge, routes, rules and pins, removed by the daemon's own
        // cleanup in the node's namespace.
        for (netns, pod_args) in &self.node_cleanups {
            let mut command = Command::new(self.bin_dir.join("node-daemon"));
            command.arg("--cleanup").args(pod_args).env("NO_COLOR", "1");
            let placement = Placement {
                netns: Some(netns.clone()),
                cgroup: None,
            };
            match Child::spawn("node-daemon --cleanup", command, &placement)
                .and_then(|child| child.finish(Duration::from_secs(60)))
            {
                Ok((Some(0), _)) => {}
                Ok((code, lines)) => eprintln!(
                    "keel-lab: node cleanup exited {code:?}:\n{}",
                    lines.join("\n")
                ),
                Err(error) => eprintln!("keel-lab: node cleanup: {error}"),
            }
        }
        for member in &mut self.members {
            member.stop();
        }
        for pins in &self.pin_dirs {
            let _ = std::fs::remove_dir_all(pins);
        }
    }
}

/// The TCP balancer on the switch in front of the members' API servers, m0 first.
fn start_balancer(bin_dir: &Path, lab: &Lab, members: &[Ipv4Addr]) -> io::Result<Child> {
    let mut command = Command::new(bin_dir.join("keel-lab-agent"));
    command
        .arg("balance")
        .arg("--listen")
        .arg(format!("{}:{API_PORT}", crate::lab::NODE_IP));
    for member in members {
        command.arg("--backend").arg(format!("{member}:{API_PORT}"));
    }
    let mut child = Child::spawn("api balancer", command, &lab.on_node(None))?;
    child.wait_for_line("balancing", Duration::from_secs(10))?;
    Ok(child)
}

/// Runs `program args` in `netns` (and `cgroup`), waiting at most `timeout`. stdout and
/// stderr come back interleaved, as lines, in `stdout`.
fn run_placed(
    netns: &Path,
    cgroup: Option<&Path>,
    program: &Path,
    args: &[&str],
    timeout: Duration,
) -> io::Result<Output> {
    let mut command = Command::new(program);
    command.args(args);
    let placement = Placement {
        netns: Some(netns.to_owned()),
        cgroup: cgroup.map(Path::to_owned),
    };
    let child = Child::spawn(&program.display().to_string(), command, &placement)?;
    let (code, lines) = child.finish(timeout)?;
    Ok(Output {
        status: std::os::unix::process::ExitStatusExt::from_raw(code.unwrap_or(1) << 8),
        stdout: lines.join("\n").into_bytes(),
        stderr: Vec::new(),
    })
}

fn import_image(bin_dir: &Path, layout: &Path, state: &Path) -> io::Result<()> {
    let output = Command::new(bin_dir.join("node-daemon"))
        .args(["image", "import"])
        .arg(layout)
        .arg("--state-dir")
        .arg(state)
        .output()?;
    if !output.status.success() {
        return Err(other(format!(
            "importing {}: {}",
            layout.display(),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(())
}

fn wait_for(mut done: impl FnMut() -> bool, timeout: Duration) -> Result<(), ()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            return Err(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
