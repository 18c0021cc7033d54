//! `cargo xtask run`: a demo node on this host.
//!
//! The host plays the node, as on a real cluster: the daemon runs here, its metrics are on
//! 127.0.0.1, and two pods (network namespaces on a bridge, no route out) serve HTTP behind a
//! Service. Ctrl-C stops the daemon, runs its cleanup and removes the pods and the bridge.

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    sync::mpsc,
    time::Duration,
};

use anyhow::{bail, Context};
use clap::Args;
use keel_lab::{Child, Lab, NodePlacement, Placement};

use crate::{build, is_root, setup, workspace_root};

const DEMO_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const DEMO_PORT: u16 = 80;
const BACKEND_PORT: u16 = 8080;

#[derive(Args)]
pub struct RunArgs {
    /// Where keel keeps its state (the demo's manifests live in `<data-dir>/manifests`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Where the daemon serves /metrics and /healthz.
    #[arg(long, default_value = "127.0.0.1:10249")]
    metrics_addr: SocketAddr,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the demo loads BPF programs and creates namespaces: run `cargo xtask run` as root");
    }
    setup::run()?;
    let bin_dir = build::run(false)?;
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| workspace_root().join("target/keel-data"));
    let demo = Demo::start(&bin_dir, &data_dir, args.metrics_addr)?;

    let cgroup = demo.cgroup.display();
    println!();
    println!("keel is running: one node (this host), two pods, one Service.");
    println!("  Service      default/demo  ClusterIP {DEMO_VIP}:{DEMO_PORT} -> pods {} and {} on :{BACKEND_PORT}", demo.pods[0], demo.pods[1]);
    println!(
        "  manifests    {}  (edit them: the daemon follows)",
        demo.manifests.display()
    );
    println!("  metrics      http://{}/metrics", args.metrics_addr);
    println!("  health       http://{}/healthz", args.metrics_addr);
    println!();
    println!("Connections from processes in keel's cgroup ({cgroup}) are translated. Try:");
    println!(
        "  sh -c 'echo $$ > {cgroup}/cgroup.procs && exec curl -s http://{DEMO_VIP}:{DEMO_PORT}/'"
    );
    println!();
    println!("Ctrl-C stops the daemon and removes everything keel set up.");

    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .context("cannot install the Ctrl-C handler")?;
    let _ = rx.recv();
    println!("\nstopping");
    demo.stop()
}

/// Brings the demo up, curls the ClusterIP from keel's cgroup, and tears everything down.
/// Run by `cargo xtask test`.
pub fn smoke(bin_dir: &Path) -> anyhow::Result<()> {
    println!("$ smoke test of `cargo xtask run`");
    let data_dir = tempfile_dir()?;
    let demo = Demo::start(bin_dir, &data_dir, "127.0.0.1:0".parse()?)?;
    let result = demo.curl_service();
    demo.stop()?;
    let _ = fs::remove_dir_all(&data_dir);
    let body = result?;
    println!("  the demo ClusterIP answered: {body}");
    Ok(())
}

/// The running demo. Torn down by [`Demo::stop`], or on drop if an error or panic came first.
struct Demo {
    daemon: Child,
    lab: Option<Lab>,
    bin_dir: PathBuf,
    cgroup: PathBuf,
    manifests: PathBuf,
    pods: Vec<Ipv4Addr>,
}

impl Demo {
    fn start(bin_dir: &Path, data_dir: &Path, metrics_addr: SocketAddr) -> anyhow::Result<Self> {
        let mut lab = Lab::new(NodePlacement::Host)?;
        let mut pods = Vec::new();
        for name in ["demo-a", "demo-b"] {
            let pod = lab.add_pod(name)?;
            pod.serve(BACKEND_PORT)?;
            pods.push(pod.addr());
        }
        let manifests = data_dir.join("manifests");
        fs::create_dir_all(&manifests)
            .with_context(|| format!("creating {}", manifests.display()))?;
        fs::write(manifests.join("demo.yaml"), demo_manifest(&pods))?;

        let cgroup = keel_lab::cgroup::cgroup2_mount()?.join("keel");
        let mut command = Command::new(bin_dir.join("node-daemon"));
        command
            .arg("--manifests")
            .arg(&manifests)
            .args([
                "--proxy-mode",
                "ebpf",
                "--metrics-addr",
                &metrics_addr.to_string(),
            ])
            .arg("--cgroup")
            .arg(&cgroup);
        let daemon = Child::spawn("node-daemon", command, &Placement::default())?;
        let demo = Self {
            daemon,
            lab: Some(lab),
            bin_dir: bin_dir.to_owned(),
            cgroup,
            manifests,
            pods,
        };
        // On failure, dropping `demo` tears down what was set up.
        demo.daemon_ready()?;
        Ok(demo)
    }

    fn daemon_ready(&self) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if self
                .daemon
                .output()
                .iter()
                .any(|l| l.contains("daemon ready"))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "node-daemon did not become ready:\n{}",
            self.daemon.output().join("\n")
        )
    }

    /// What a user's curl from keel's cgroup gets back.
    fn curl_service(&self) -> anyhow::Result<String> {
        let mut curl = Command::new("curl");
        curl.args([
            "-sf",
            "--max-time",
            "5",
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

    /// Stops the daemon, runs its cleanup, removes pods and bridge. Runs once.
    fn teardown(&mut self) -> anyhow::Result<()> {
        let Some(lab) = self.lab.take() else {
            return Ok(());
        };
        self.daemon.signal(libc::SIGTERM);
        let _ = self.daemon.wait_timeout(Duration::from_secs(10));
        for line in self.daemon.output() {
            println!("  node-daemon: {line}");
        }
        let mut cleanup = Command::new(self.bin_dir.join("node-daemon"));
        cleanup.arg("--cleanup").arg("--cgroup").arg(&self.cgroup);
        let (code, lines) = Child::spawn("cleanup", cleanup, &Placement::default())?
            .finish(Duration::from_secs(10))?;
        drop(lab);
        if code != Some(0) {
            bail!("node-daemon --cleanup failed: {}", lines.join("\n"));
        }
        println!("removed the demo: daemon stopped, route, cgroup, pods and bridge gone");
        Ok(())
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Err(err) = self.teardown() {
            eprintln!("tearing the demo down: {err:#}");
        }
    }
}

fn demo_manifest(pods: &[Ipv4Addr]) -> String {
    let mut text = format!(
        "# The demo service of `cargo xtask run`. Edit me: the daemon follows.\n\
         apiVersion: v1\nkind: Service\nmetadata:\n  name: demo\nspec:\n  clusterIP: {DEMO_VIP}\n  ports:\n  - name: http\n    port: {DEMO_PORT}\n    targetPort: {BACKEND_PORT}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: demo-1\n  labels:\n    kubernetes.io/service-name: demo\naddressType: IPv4\nports:\n- name: http\n  port: {BACKEND_PORT}\nendpoints:\n"
    );
    for pod in pods {
        text.push_str(&format!(
            "- addresses: [\"{pod}\"]\n  conditions:\n    ready: true\n"
        ));
    }
    text
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("keel-smoke-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    Ok(dir)
}
