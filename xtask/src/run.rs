//! `cargo xtask run`: a demo node on this host.
//!
//! The host plays the node, as on a real cluster: the daemon runs here with its state under
//! one data directory, its metrics on 127.0.0.1, and two static pods from the busybox image
//! (imported from the OCI layout `cargo xtask setup` builds) serve HTTP behind a Service.
//! Ctrl-C stops the daemon and runs its cleanup, which stops the pods and removes the
//! bridge, the route and the cgroups.

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
use keel_lab::{Child, Placement};

use crate::{build, is_root, setup, workspace_root};

const DEMO_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const DEMO_PORT: u16 = 80;
const BACKEND_PORT: u16 = 8080;
const PODS: [&str; 2] = ["demo-a", "demo-b"];

#[derive(Args)]
pub struct RunArgs {
    /// Where keel keeps its state: `<data-dir>/manifests` (the demo's manifests, which the
    /// daemon follows) and `<data-dir>/state` (pods, logs, images, addresses).
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
    let node_daemon = bin_dir.join("node-daemon");
    let state = demo.state.display();
    println!();
    println!("keel is running: one node (this host), two busybox pods, one Service.");
    println!("  Service      default/demo  ClusterIP {DEMO_VIP}:{DEMO_PORT} -> pods {} and {} on :{BACKEND_PORT}", demo.pods[0], demo.pods[1]);
    println!(
        "  manifests    {}  (edit them: the daemon follows)",
        demo.manifests.display()
    );
    println!(
        "  pods         {} pods --state-dir {state}",
        node_daemon.display()
    );
    println!(
        "  logs         {} logs demo-a --state-dir {state}",
        node_daemon.display()
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

/// Brings the demo up, curls the ClusterIP from keel's cgroup until both pods have
/// answered, and tears everything down. Run by `cargo xtask test`.
pub fn smoke(bin_dir: &Path) -> anyhow::Result<()> {
    println!("$ smoke test of `cargo xtask run`");
    let data_dir = tempfile_dir()?;
    let demo = Demo::start(bin_dir, &data_dir, "127.0.0.1:0".parse()?)?;
    let mut answers = std::collections::BTreeSet::new();
    let mut result = Ok(());
    for _ in 0..50 {
        match demo.curl_service() {
            Ok(body) => {
                answers.insert(body);
            }
            Err(err) => {
                result = Err(err);
                break;
            }
        }
        if answers.len() == PODS.len() {
            break;
        }
    }
    demo.stop()?;
    let _ = fs::remove_dir_all(&data_dir);
    result?;
    if answers.len() < PODS.len() {
        bail!("only {answers:?} answered through the ClusterIP");
    }
    println!("  the demo ClusterIP answered from both pods: {answers:?}");
    Ok(())
}

/// The running demo. Torn down by [`Demo::stop`], or on drop if an error or panic came first.
struct Demo {
    daemon: Option<Child>,
    bin_dir: PathBuf,
    cgroup: PathBuf,
    manifests: PathBuf,
    state: PathBuf,
    pods: Vec<Ipv4Addr>,
}

impl Demo {
    fn start(bin_dir: &Path, data_dir: &Path, metrics_addr: SocketAddr) -> anyhow::Result<Self> {
        let manifests = data_dir.join("manifests");
        let state = data_dir.join("state");
        fs::create_dir_all(&manifests)
            .with_context(|| format!("creating {}", manifests.display()))?;
        // Manifests of an earlier run that was killed are not this demo's.
        let _ = fs::remove_file(manifests.join("demo.yaml"));
        import_busybox(bin_dir, &state)?;
        for pod in PODS {
            fs::write(manifests.join(format!("{pod}.yaml")), pod_manifest(pod))?;
        }
        let cgroup = keel_lab::cgroup::cgroup2_mount()?.join("keel");
        let mut command = Command::new(bin_dir.join("node-daemon"));
        command
            .arg("--manifests")
            .arg(&manifests)
            .arg("--state-dir")
            .arg(&state)
            .args([
                "--proxy-mode",
                "ebpf",
                "--metrics-addr",
                &metrics_addr.to_string(),
            ])
            .arg("--cgroup")
            .arg(&cgroup);
        let daemon = Child::spawn("node-daemon", command, &Placement::default())?;
        let mut demo = Self {
            daemon: Some(daemon),
            bin_dir: bin_dir.to_owned(),
            cgroup,
            manifests,
            state,
            pods: Vec::new(),
        };
        // On failure, dropping `demo` tears down what was set up.
        demo.daemon_ready()?;
        demo.pods = demo.pod_ips()?;
        fs::write(
            demo.manifests.join("demo.yaml"),
            service_manifest(&demo.pods),
        )?;
        demo.wait_for_log("synced service_ports=1 backends=2")?;
        Ok(demo)
    }

    /// Waits until both pods run and returns their addresses (in `PODS` order).
    fn pod_ips(&self) -> anyhow::Result<Vec<Ipv4Addr>> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while std::time::Instant::now() < deadline {
            let output = Command::new(self.bin_dir.join("node-daemon"))
                .args(["pods", "-o", "json", "--state-dir"])
                .arg(&self.state)
                .output()?;
            last = String::from_utf8_lossy(&output.stdout).into_owned();
            let list: serde_json::Value = serde_json::from_str(&last).unwrap_or_default();
            let running = |name: &str| {
                list["items"].as_array()?.iter().find_map(|pod| {
                    let ready = pod["metadata"]["name"] == name
                        && pod["status"]["containerStatuses"][0]["ready"] == true;
                    ready.then(|| pod["status"]["podIP"].as_str()?.parse().ok())?
                })
            };
            let ips: Vec<Ipv4Addr> = PODS.iter().filter_map(|p| running(p)).collect();
            if ips.len() == PODS.len() {
                return Ok(ips);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = self.daemon.as_ref().map(Child::output).unwrap_or_default();
        bail!("the demo pods did not start:\n{last}\n{}", log.join("\n"))
    }

    fn daemon_ready(&self) -> anyhow::Result<()> {
        self.wait_for_log("daemon ready")
    }

    /// Waits until the daemon logs a line containing `needle`.
    fn wait_for_log(&self, needle: &str) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            let log = self.daemon.as_ref().map(Child::output).unwrap_or_default();
            if log.iter().any(|l| l.contains(needle)) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = self.daemon.as_ref().map(Child::output).unwrap_or_default();
        bail!("node-daemon never logged {needle:?}:\n{}", log.join("\n"))
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

    /// Stops the daemon and runs its cleanup: pods, bridge, route, cgroups. Runs once.
    fn teardown(&mut self) -> anyhow::Result<()> {
        let Some(mut daemon) = self.daemon.take() else {
            return Ok(());
        };
        daemon.signal(libc::SIGTERM);
        let _ = daemon.wait_timeout(Duration::from_secs(10));
        for line in daemon.output() {
            println!("  node-daemon: {line}");
        }
        let mut cleanup = Command::new(self.bin_dir.join("node-daemon"));
        cleanup
            .arg("--cleanup")
            .arg("--cgroup")
            .arg(&self.cgroup)
            .arg("--state-dir")
            .arg(&self.state);
        let (code, lines) = Child::spawn("cleanup", cleanup, &Placement::default())?
            .finish(Duration::from_secs(60))?;
        for file in PODS
            .iter()
            .map(|p| format!("{p}.yaml"))
            .chain(["demo.yaml".into()])
        {
            let _ = fs::remove_file(self.manifests.join(file));
        }
        if code != Some(0) {
            bail!("node-daemon --cleanup failed: {}", lines.join("\n"));
        }
        println!("removed the demo: daemon stopped, pods, bridge, route and cgroups gone");
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

/// Imports the busybox image built by `cargo xtask setup` into the demo's image store.
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

/// A static pod serving `hello from <name>` with busybox httpd.
fn pod_manifest(name: &str) -> String {
    format!(
        "# A demo pod of `cargo xtask run`. Edit me: the daemon follows.\n\
         apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: demo}}\n\
         spec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: httpd\n\
         \x20   image: {image}\n\
         \x20   command: [sh, -c, 'mkdir -p /www && echo hello from {name} > /www/index.html && exec httpd -f -v -p {BACKEND_PORT} -h /www']\n\
         \x20   ports: [{{containerPort: {BACKEND_PORT}}}]\n\
         \x20   resources: {{limits: {{cpu: 200m, memory: 32Mi}}}}\n",
        image = keel_lab::oci::BUSYBOX_IMAGE,
    )
}

fn service_manifest(pods: &[Ipv4Addr]) -> String {
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
