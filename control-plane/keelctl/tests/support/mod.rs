//! The harness of keelctl's integration tests: real `control-plane` members on loopback and
//! the real `keelctl` binary. `control-plane` is found beside the test binary
//! (`keel_lab::bin`); `cargo xtask test` builds the whole workspace first. Alone: `cargo build
//! -p keel-control-plane --bin control-plane && cargo test -p keel-keelctl`.

#![allow(dead_code)] // Each test file uses its own part of the harness.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use keel_lab::{Child, Placement};

pub const KEELCTL: &str = env!("CARGO_BIN_EXE_keelctl");

pub fn control_plane() -> PathBuf {
    let path = keel_lab::bin("control-plane");
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p keel-control-plane --bin control-plane)",
        path.display()
    );
    path
}

/// A free loopback address, its port below the kernel's ephemeral range: a port handed out for
/// `:0` was once taken by another test's outgoing connection before the member bound it.
pub fn free_addr() -> SocketAddr {
    let port = keel_lab::free_loopback_port().expect("a free loopback port");
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One `control-plane` process, killed when dropped.
pub struct Member {
    pub client: SocketAddr,
    pub peer: SocketAddr,
    pub data_dir: PathBuf,
    pub process: Child,
}

impl Member {
    /// Starts a member named `name` on `data_dir` with fresh ports; `extra` flags after.
    pub fn start(name: &str, data_dir: &Path, extra: &[String]) -> Self {
        let client = free_addr();
        let peer = free_addr();
        let mut command = Command::new(control_plane());
        command
            .args(["--name", name, "--data-dir"])
            .arg(data_dir)
            .args(["--listen-client", &client.to_string()])
            .args(["--listen-peer", &peer.to_string()])
            .args(extra)
            .env("RUST_LOG", "info,openraft=warn");
        let mut process =
            Child::spawn(name, command, &Placement::default()).expect("control-plane starts");
        let ready = if extra.iter().any(|a| a == "--listen-api") {
            "Kubernetes API serving"
        } else {
            "serving etcd's v3 API"
        };
        if let Err(e) = process.wait_for_line(ready, Duration::from_secs(30)) {
            panic!("{name} did not start: {e}\n{}", process.output().join("\n"));
        }
        Self {
            client,
            peer,
            data_dir: data_dir.to_owned(),
            process,
        }
    }

    /// A member that also serves the Kubernetes API (alone: no scheduler, no controllers);
    /// the API's address.
    pub fn start_with_api(name: &str, data_dir: &Path) -> (Self, SocketAddr) {
        Self::start_with_api_and(name, data_dir, &["--disable-controllers"])
    }

    /// A member serving the Kubernetes API without the scheduler, with `extra` flags (which
    /// controllers run, say); the API's address.
    pub fn start_with_api_and(name: &str, data_dir: &Path, extra: &[&str]) -> (Self, SocketAddr) {
        let api = free_addr();
        let mut args = vec![
            "--listen-api".to_owned(),
            api.to_string(),
            "--disable-scheduler".to_owned(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let member = Self::start(name, data_dir, &args);
        (member, api)
    }

    /// What the member printed, for failure messages.
    pub fn output(&self) -> String {
        self.process.output().join("\n")
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.client)
    }

    /// keelctl against this member.
    pub fn keelctl(&self, args: &[&str]) -> Output {
        keelctl(&[&["--endpoints", &self.endpoint()], args].concat())
    }

    /// keelctl that must succeed; its standard output.
    pub fn keelctl_ok(&self, args: &[&str]) -> String {
        let out = self.keelctl(args);
        assert!(
            out.status.success(),
            "keelctl {args:?}: {}\n{}\n--- member:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.process.output().join("\n")
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until `cluster status` names a leader: a new member elects itself quickly,
    /// but not before its first answer.
    pub fn wait_leader(&self) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.keelctl(&["cluster", "status", "-o", "json"]);
            let rows: serde_json::Value =
                serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
            if rows[0]["is_leader"] == true {
                return rows;
            }
            assert!(
                Instant::now() < deadline,
                "no leader: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.process.output().join("\n")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

pub fn keelctl(args: &[&str]) -> Output {
    Command::new(KEELCTL)
        .args(args)
        .env_remove("KEELCTL_ENDPOINTS")
        .output()
        .expect("keelctl runs")
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

pub async fn etcd(endpoint: &str) -> etcd_client::Client {
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(8));
    etcd_client::Client::connect([endpoint], Some(options))
        .await
        .expect("an etcd client")
}

/// A kube-rs client from a kubeconfig file, as a user of kube-rs loads one.
pub async fn client(kubeconfig: &Path) -> kube::Client {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig).expect("a kubeconfig"),
        &Default::default(),
    )
    .await
    .expect("a client configuration");
    kube::Client::try_from(config).expect("a client")
}

impl Member {
    /// keelctl with `--kubeconfig kubeconfig` appended, which must succeed; its standard
    /// output (its error and this member's log otherwise).
    pub fn keelctl_api_ok(&self, kubeconfig: &str, args: &[&str]) -> String {
        let out = keelctl(&[args, &["--kubeconfig", kubeconfig]].concat());
        assert!(
            out.status.success(),
            "keelctl {args:?}: {}\n{}\n--- member:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.output()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
