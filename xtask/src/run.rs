//! `cargo xtask run`: a real keel cluster on this host.
//!
//! By default one `control-plane` member (store, API server, scheduler, controllers in one
//! process) and one node daemon in cluster mode, both on this host, with their data under one
//! directory; the demo — a Deployment of three busybox httpd pods behind a Service — is created
//! through the API with the real kubectl. `--members N --nodes M` builds the same as a lab:
//! every member and node in a network namespace of its own ([`keel_lab::cluster`]).
//! Ctrl-C stops everything and removes what it set up (`--keep` keeps the data directory).

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::Args;
use keel_lab::{
    cluster::{ClusterLab, ClusterSpec},
    Child, Placement,
};

use crate::{build, is_root, setup, workspace_root};

const DEMO_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const DEMO_PORT: u16 = 80;
const BACKEND_PORT: u16 = 8080;
const REPLICAS: usize = 3;
/// Where the single-host cluster listens (the well-known ports, on loopback).
const API: &str = "127.0.0.1:6443";
const MEMBER_METRICS: &str = "127.0.0.1:2381";
const NODE_METRICS: &str = "127.0.0.1:10249";
const PROMETHEUS: &str = "127.0.0.1:9090";

#[derive(Args)]
pub struct RunArgs {
    /// Where the cluster keeps its data: `control-plane/` (the member: raft log, PKI,
    /// kubeconfigs) and `node/` (pods, logs, images) [default: target/keel-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Control-plane members; more than one (or more than one node) builds a lab of network
    /// namespaces instead of using the host.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=7))]
    members: u8,
    /// Node daemons.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=20))]
    nodes: u8,
    /// The node daemons' --proxy-mode.
    #[arg(long, default_value = "ebpf", value_parser = ["ebpf", "iptables", "nftables", "ipvs"])]
    proxy_mode: String,
    /// Keep the data directory when stopping (the next run starts from it).
    #[arg(long)]
    keep: bool,
    /// Also start Debian's prometheus, scraping every member and node (127.0.0.1:9090).
    #[arg(long)]
    with_prometheus: bool,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    if !is_root() {
        bail!("keel loads BPF programs and creates namespaces: run `cargo xtask run` as root");
    }
    setup::run()?;
    let bin_dir = build::run(false)?;
    crate::dead_runs::sweep();
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| workspace_root().join("target/keel-data"));
    let kubectl = kubectl()?;
    if args.members > 1 || args.nodes > 1 {
        return run_lab(&args, &bin_dir, &data_dir, &kubectl);
    }
    let cluster = HostCluster::start(&bin_dir, &data_dir, &args.proxy_mode, args.keep)?;
    cluster.create_demo(&kubectl)?;
    let answers = cluster.wait_for_demo()?;
    let prometheus = if args.with_prometheus {
        Some(keel_lab::prometheus::Prometheus::start(
            &data_dir.join("prometheus"),
            &Placement::default(),
            PROMETHEUS,
            &[MEMBER_METRICS.to_owned()],
            &[NODE_METRICS.to_owned()],
        )?)
    } else {
        None
    };

    let kubeconfig = cluster.admin_kubeconfig();
    let cgroup = cluster.cgroup.display();
    println!();
    println!("keel is running: one control-plane member and one node (this host).");
    println!("  the demo     Deployment default/demo ({REPLICAS} busybox httpd pods) behind Service demo, ClusterIP {DEMO_VIP}:{DEMO_PORT}");
    println!("               answered from {answers:?}");
    println!("  API          https://{API}");
    println!(
        "  metrics      http://{MEMBER_METRICS}/metrics (control-plane), http://{NODE_METRICS}/metrics (node)"
    );
    println!("  data         {}", data_dir.display());
    if prometheus.is_some() {
        println!("  prometheus   http://{PROMETHEUS}/targets (every member and node, scraped each second)");
    }
    println!();
    println!("Try:");
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!(
        "  export PATH={}:$PATH",
        kubectl.parent().unwrap_or(Path::new(".")).display()
    );
    println!("  kubectl get nodes,pods -o wide");
    println!("  kubectl scale deployment demo --replicas 5");
    println!("  kubectl rollout status deployment demo");
    println!(
        "  sh -c 'echo $$ > {cgroup}/cgroup.procs && exec curl -s http://{DEMO_VIP}:{DEMO_PORT}/'   # from keel's cgroup"
    );
    println!(
        "  {} cluster status --endpoints http://127.0.0.1:2379",
        bin_dir.join("keelctl").display()
    );
    println!();
    println!(
        "Ctrl-C stops the cluster and removes everything keel set up{}.",
        if args.keep {
            " (the data directory stays)"
        } else {
            ""
        }
    );
    wait_for_ctrl_c()?;
    println!("\nstopping");
    drop(prometheus);
    cluster.stop()
}

fn wait_for_ctrl_c() -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .context("cannot install the Ctrl-C handler")?;
    let _ = rx.recv();
    Ok(())
}

/// The lab: members and nodes in namespaces of their own.
fn run_lab(args: &RunArgs, bin_dir: &Path, data_dir: &Path, kubectl: &Path) -> anyhow::Result<()> {
    if data_dir.exists() {
        fs::remove_dir_all(data_dir)
            .with_context(|| format!("removing the previous lab's {}", data_dir.display()))?;
    }
    let spec = ClusterSpec {
        members: usize::from(args.members),
        nodes: usize::from(args.nodes),
        proxy_mode: args.proxy_mode.clone(),
        dir: data_dir.to_owned(),
        bin_dir: bin_dir.to_owned(),
        image_layout: Some(setup::busybox_layout()?),
        member_args: Vec::new(),
        node_args: Vec::new(),
    };
    let lab = ClusterLab::start(&spec).context("starting the lab cluster")?;
    let kubeconfig = lab.admin_kubeconfig.display().to_string();
    let apply = |file: &Path| -> anyhow::Result<()> {
        let output = lab.run_on_switch(
            kubectl,
            &[
                "--kubeconfig",
                &kubeconfig,
                "apply",
                "-f",
                &file.display().to_string(),
            ],
        )?;
        if !output.status.success() {
            bail!(
                "kubectl apply: {}\n{}",
                String::from_utf8_lossy(&output.stdout),
                lab.logs()
            );
        }
        Ok(())
    };
    let demo = data_dir.join("demo.yaml");
    fs::write(&demo, demo_manifest())?;
    apply(&demo)?;
    let prometheus = if args.with_prometheus {
        Some(lab.start_prometheus(&data_dir.join("prometheus"))?)
    } else {
        None
    };
    let switch = lab.switch_netns_name();
    println!();
    println!(
        "keel is running as a lab: {} member(s), {} node(s), each in a network namespace of its own.",
        args.members, args.nodes
    );
    for member in &lab.members {
        println!(
            "  member {}  {}  API https://{}:6443  metrics http://{}:2381/metrics",
            member.name, member.addr, member.addr, member.addr
        );
    }
    for node in &lab.nodes {
        println!(
            "  node   {}  {}  metrics http://{}:10249/metrics",
            node.name, node.addr, node.addr
        );
    }
    if args.members > 1 {
        println!(
            "  the API at {}: a TCP balancer in front of the members, which the nodes and the admin kubeconfig use",
            lab.api_server
        );
    }
    println!();
    println!("The lab's addresses are reachable from its switch namespace, {switch}. Try:");
    println!(
        "  ip netns exec {switch} {} --kubeconfig {kubeconfig} get nodes,pods -o wide",
        kubectl.display()
    );
    println!(
        "  ip netns exec {switch} {} cluster status --endpoints {}",
        bin_dir.join("keelctl").display(),
        lab.members
            .iter()
            .map(|m| format!("http://{}:2379", m.addr))
            .collect::<Vec<_>>()
            .join(",")
    );
    if prometheus.is_some() {
        println!(
            "  ip netns exec {switch} curl -s http://{PROMETHEUS}/api/v1/targets   # prometheus"
        );
    }
    println!();
    println!("Ctrl-C stops the lab and removes its namespaces, cgroups and data.");
    wait_for_ctrl_c()?;
    println!("\nstopping");
    drop(prometheus);
    drop(lab);
    if !args.keep {
        let _ = fs::remove_dir_all(data_dir);
    }
    Ok(())
}

/// Brings the single-host cluster up with the demo, curls the ClusterIP from keel's cgroup
/// until every pod has answered, and tears everything down. Run by `cargo xtask test`.
pub fn smoke(bin_dir: &Path) -> anyhow::Result<()> {
    println!("$ smoke test of `cargo xtask run`");
    let data_dir = std::env::temp_dir().join(format!("keel-smoke-{}", std::process::id()));
    let cluster = HostCluster::start(bin_dir, &data_dir, "ebpf", false)?;
    let result = cluster
        .create_demo(&kubectl()?)
        .and_then(|()| cluster.wait_for_demo());
    cluster.stop()?;
    let answers = result?;
    println!("  the demo ClusterIP answered from all {REPLICAS} pods: {answers:?}");
    Ok(())
}

/// kubectl from the venv `cargo xtask setup` made.
fn kubectl() -> anyhow::Result<PathBuf> {
    let path = setup::clients_venv()?.join("bin/kubectl");
    if !path.exists() {
        bail!("{} is missing: run `cargo xtask setup`", path.display());
    }
    Ok(path)
}

/// The single-host cluster. Torn down by [`HostCluster::stop`], or on drop if an error or
/// panic came first.
struct HostCluster {
    member: Option<Child>,
    node: Option<Child>,
    bin_dir: PathBuf,
    data_dir: PathBuf,
    cgroup: PathBuf,
    keep: bool,
}

impl HostCluster {
    fn start(
        bin_dir: &Path,
        data_dir: &Path,
        proxy_mode: &str,
        keep: bool,
    ) -> anyhow::Result<Self> {
        let member_dir = data_dir.join("control-plane");
        let node_dir = data_dir.join("node");
        let state = node_dir.join("state");
        fs::create_dir_all(&member_dir)?;
        fs::create_dir_all(&state)?;
        let cgroup = keel_lab::cgroup::cgroup2_mount()?.join("keel");
        let mut cluster = Self {
            member: None,
            node: None,
            bin_dir: bin_dir.to_owned(),
            data_dir: data_dir.to_owned(),
            cgroup: cgroup.clone(),
            keep,
        };
        // On failure from here on, dropping `cluster` tears down what was set up.
        let mut command = Command::new(bin_dir.join("control-plane"));
        command
            .args(["--name", "default", "--data-dir"])
            .arg(&member_dir)
            .args([
                "--listen-client",
                "127.0.0.1:2379",
                "--listen-peer",
                "127.0.0.1:2380",
                "--listen-api",
                API,
                "--metrics-addr",
                MEMBER_METRICS,
            ])
            .env("RUST_LOG", "info,openraft=warn")
            .env("NO_COLOR", "1");
        let member = cluster.member.insert(Child::spawn(
            "control-plane",
            command,
            &Placement::default(),
        )?);
        if let Err(error) = member.wait_for_line("Kubernetes API serving", Duration::from_secs(60))
        {
            bail!(
                "the control plane did not start: {error}\n{}",
                member.output().join("\n")
            );
        }
        let host = hostname();
        // The node joins as kubeadm's nodes do: a bootstrap token asks for its certificate,
        // which the control plane approves and signs; the node writes its kubeconfig.
        let kubeconfig = node_dir.join("kubeconfig");
        let bootstrap = node_dir.join("bootstrap.kubeconfig");
        // Tried for a while: a new cluster makes `kube-system` moments after its API answers.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let output = Command::new(bin_dir.join("keelctl"))
                .arg("join-token")
                .arg("--kubeconfig")
                .arg(member_dir.join("admin.kubeconfig"))
                .args(["--ttl", "1h", "--description", "cargo xtask run"])
                .arg("-o")
                .arg(&bootstrap)
                .output()?;
            if output.status.success() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "keelctl join-token for the node: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        import_busybox(bin_dir, &state)?;
        let mut command = Command::new(bin_dir.join("node-daemon"));
        command
            .arg("--bootstrap-kubeconfig")
            .arg(&bootstrap)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--node-name", &host, "--proxy-mode", proxy_mode])
            .args(["--metrics-addr", NODE_METRICS])
            .arg("--state-dir")
            .arg(&state)
            .arg("--cgroup")
            .arg(&cgroup)
            .env("NO_COLOR", "1");
        let node =
            cluster
                .node
                .insert(Child::spawn("node-daemon", command, &Placement::default())?);
        if let Err(error) = node.wait_for_line("daemon ready", Duration::from_secs(60)) {
            bail!(
                "the node daemon did not start: {error}\n{}",
                node.output().join("\n")
            );
        }
        Ok(cluster)
    }

    fn admin_kubeconfig(&self) -> PathBuf {
        self.data_dir.join("control-plane/admin.kubeconfig")
    }

    fn create_demo(&self, kubectl: &Path) -> anyhow::Result<()> {
        let file = self.data_dir.join("demo.yaml");
        fs::write(&file, demo_manifest())?;
        let output = Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(self.admin_kubeconfig())
            .arg("apply")
            .arg("-f")
            .arg(&file)
            .output()?;
        if !output.status.success() {
            bail!(
                "kubectl apply of the demo: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// Curls the ClusterIP from keel's cgroup until every replica has answered.
    fn wait_for_demo(&self) -> anyhow::Result<std::collections::BTreeSet<String>> {
        let mut answers = std::collections::BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while answers.len() < REPLICAS {
            if Instant::now() > deadline {
                bail!(
                    "only {answers:?} answered through the ClusterIP within 120 s\n{}",
                    self.logs()
                );
            }
            match self.curl_service() {
                Ok(body) => {
                    answers.insert(body);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        Ok(answers)
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        for (name, child) in [("control-plane", &self.member), ("node-daemon", &self.node)] {
            let lines = child.as_ref().map(Child::output).unwrap_or_default();
            let start = lines.len().saturating_sub(60);
            text.push_str(&format!("===== {name}\n{}\n", lines[start..].join("\n")));
        }
        text
    }

    /// What a user's curl from keel's cgroup gets back.
    fn curl_service(&self) -> anyhow::Result<String> {
        let mut curl = Command::new("curl");
        curl.args([
            "-sf",
            "--max-time",
            "2",
            &format!("http://{DEMO_VIP}:{DEMO_PORT}/"),
        ]);
        let placement = Placement {
            netns: None,
            cgroup: Some(self.cgroup.clone()),
        };
        let (code, lines) =
            Child::spawn("curl", curl, &placement)?.finish(Duration::from_secs(10))?;
        if code != Some(0) {
            bail!("curl of the demo ClusterIP failed ({code:?}): {lines:?}");
        }
        Ok(lines.join(" "))
    }

    fn stop(mut self) -> anyhow::Result<()> {
        self.teardown()
    }

    /// Stops the node daemon and runs its cleanup (pods, bridge, routes, cgroups), then the
    /// member; removes the data directory unless asked to keep it. Runs once.
    fn teardown(&mut self) -> anyhow::Result<()> {
        let mut failure = None;
        if let Some(node) = self.node.take() {
            node.signal(libc::SIGTERM);
            let _ = node.finish(Duration::from_secs(20));
        }
        if self.member.is_some() {
            let mut cleanup = Command::new(self.bin_dir.join("node-daemon"));
            cleanup
                .arg("--cleanup")
                .arg("--cgroup")
                .arg(&self.cgroup)
                .arg("--state-dir")
                .arg(self.data_dir.join("node/state"));
            let (code, lines) = Child::spawn("cleanup", cleanup, &Placement::default())?
                .finish(Duration::from_secs(60))?;
            if code != Some(0) {
                failure = Some(format!(
                    "node-daemon --cleanup failed: {}",
                    lines.join("\n")
                ));
            }
        }
        if let Some(member) = self.member.take() {
            member.signal(libc::SIGTERM);
            let _ = member.finish(Duration::from_secs(20));
            if !self.keep {
                let _ = fs::remove_dir_all(&self.data_dir);
            }
            println!("stopped: node daemon and its pods, bridge, routes and cgroups gone; control plane stopped");
        }
        match failure {
            Some(message) => bail!(message),
            None => Ok(()),
        }
    }
}

impl Drop for HostCluster {
    fn drop(&mut self) {
        if let Err(err) = self.teardown() {
            eprintln!("tearing the cluster down: {err:#}");
        }
    }
}

/// The host's name, as the node's (the kubelet's default, lower-cased).
fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "keel-node".into())
}

/// Imports the busybox image built by `cargo xtask setup` into the node's image store.
fn import_busybox(bin_dir: &Path, state: &Path) -> anyhow::Result<()> {
    let layout = setup::busybox_layout()?;
    let output = Command::new(bin_dir.join("node-daemon"))
        .args(["image", "import"])
        .arg(&layout)
        .arg("--state-dir")
        .arg(state)
        .output()?;
    if !output.status.success() {
        bail!(
            "importing {}: {}",
            layout.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The demo: a Deployment of busybox httpd pods answering with their names, and its Service.
fn demo_manifest() -> String {
    format!(
        "# The demo of `cargo xtask run`. Change it with kubectl: the cluster follows.\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: demo\nspec:\n  replicas: {REPLICAS}\n\
         \x20 selector: {{matchLabels: {{app: demo}}}}\n  template:\n    metadata: {{labels: {{app: demo}}}}\n    spec:\n\
         \x20     terminationGracePeriodSeconds: 2\n      containers:\n      - name: httpd\n        image: {image}\n\
         \x20       command: [sh, -c, 'mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -v -p {BACKEND_PORT} -h /www']\n\
         \x20       ports: [{{containerPort: {BACKEND_PORT}, name: http}}]\n\
         \x20       readinessProbe: {{tcpSocket: {{port: {BACKEND_PORT}}}, periodSeconds: 1}}\n\
         \x20       resources: {{limits: {{cpu: 200m, memory: 32Mi}}}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata:\n  name: demo\nspec:\n  clusterIP: {DEMO_VIP}\n  selector: {{app: demo}}\n\
         \x20 ports:\n  - name: http\n    port: {DEMO_PORT}\n    targetPort: http\n",
        image = keel_lab::oci::BUSYBOX_IMAGE,
    )
}
