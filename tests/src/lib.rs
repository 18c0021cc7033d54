//! Harness for keel's end-to-end tests: a node daemon running in a lab's node namespace, the
//! manifests it reads, and a client that connects from inside keel's cgroup.
//!
//! Every test needs root (BPF, namespaces, cgroups) and says so instead of skipping.

use std::{
    collections::BTreeMap,
    fs,
    net::{Ipv4Addr, SocketAddrV4},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use keel_lab::{bin, Child, Lab};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Fails the test with a clear reason when not run as root.
pub fn require_root() {
    // SAFETY: geteuid(2) has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "keel's end-to-end tests load BPF programs and create namespaces: run them as root (cargo xtask test)");
}

/// A node daemon in the lab's node namespace. Stopped (SIGTERM) and cleaned up on drop.
pub struct Daemon {
    child: Option<Child>,
    netns: Option<PathBuf>,
    cgroup: PathBuf,
}

/// Where the daemon serves metrics inside the node namespace (each lab has its own loopback).
pub const METRICS_ADDR: &str = "127.0.0.1:10249";

impl Daemon {
    /// Starts `node-daemon` on the lab's node and waits until it has synced the manifests.
    pub fn start(
        lab: &Lab,
        manifests: &Path,
        cgroup: &Path,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let mut command = Command::new(bin("node-daemon"));
        command
            .arg("--manifests")
            .arg(manifests)
            .args(["--proxy-mode", "ebpf", "--metrics-addr", METRICS_ADDR])
            .arg("--cgroup")
            .arg(cgroup)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        let placement = lab.on_node(None);
        let mut child = Child::spawn("node-daemon", command, &placement)?;
        child.wait_for_line("ready", Duration::from_secs(20))?;
        Ok(Self {
            child: Some(child),
            netns: placement.netns,
            cgroup: cgroup.to_owned(),
        })
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> Vec<String> {
        self.child.as_ref().map(Child::output).unwrap_or_default()
    }

    /// Waits until a log line contains every one of `needles`.
    pub fn wait_for_log(&self, needles: &[&str], timeout: Duration) -> Result<String, String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .log()
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return Ok(line);
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "no log line with {needles:?} within {timeout:?}:\n{}",
                    self.log().join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        child.signal(libc::SIGTERM);
        child.wait_timeout(Duration::from_secs(10)).ok().flatten()
    }

    /// Runs `node-daemon --cleanup` on the node; returns its exit code and output.
    pub fn cleanup(&self) -> Result<(Option<i32>, Vec<String>), Box<dyn std::error::Error>> {
        let mut command = Command::new(bin("node-daemon"));
        command
            .arg("--cleanup")
            .arg("--cgroup")
            .arg(&self.cgroup)
            .env("NO_COLOR", "1");
        let placement = keel_lab::Placement {
            netns: self.netns.clone(),
            cgroup: None,
        };
        Ok(Child::spawn("node-daemon --cleanup", command, &placement)?
            .finish(Duration::from_secs(10))?)
    }

    /// The `/metrics` page.
    pub fn metrics(&self) -> Result<String, Box<dyn std::error::Error>> {
        let mut command = Command::new("curl");
        command.args(["-sf", &format!("http://{METRICS_ADDR}/metrics")]);
        let placement = keel_lab::Placement {
            netns: self.netns.clone(),
            cgroup: None,
        };
        let (code, lines) =
            Child::spawn("curl", command, &placement)?.finish(Duration::from_secs(5))?;
        if code != Some(0) {
            return Err(format!("curl /metrics failed ({code:?}): {lines:?}").into());
        }
        Ok(lines.join("\n"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
            let _ = self.cleanup();
        }
    }
}

/// The outcome of a client run: one entry per attempt, in order.
#[derive(Debug)]
pub struct Attempts {
    /// `(ms since the client started, Ok(backend name) or Err(errno name))`.
    pub attempts: Vec<(u64, Result<String, String>)>,
}

impl Attempts {
    /// How many attempts each backend (or `err:ERRNO`) got.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for (_, result) in &self.attempts {
            let key = match result {
                Ok(name) => name.clone(),
                Err(errno) => format!("err:{errno}"),
            };
            *counts.entry(key).or_default() += 1;
        }
        counts
    }
}

/// How a client run is bounded.
pub enum Run {
    Count(u64),
    ForMs(u64),
}

/// Connects to `to` from the lab's node, inside `cgroup`, with keel's test client.
pub fn connect(
    lab: &Lab,
    cgroup: &Path,
    to: SocketAddrV4,
    run: Run,
) -> Result<Attempts, Box<dyn std::error::Error>> {
    let mut command = Command::new(bin("keel-lab-agent"));
    command.args(["connect", "--to", &to.to_string(), "--timeout-ms", "1000"]);
    match run {
        Run::Count(n) => command.args(["--count", &n.to_string()]),
        Run::ForMs(ms) => command.args(["--for-ms", &ms.to_string()]),
    };
    let (code, lines) = Child::spawn("client", command, &lab.on_node(Some(cgroup)))?
        .finish(Duration::from_secs(120))?;
    if code != Some(0) {
        return Err(format!("client failed ({code:?}): {lines:?}").into());
    }
    let attempts = lines
        .iter()
        .filter_map(|line| {
            let mut words = line.splitn(3, ' ');
            let ms = words.next()?.parse().ok()?;
            let result = match (words.next()?, words.next()?) {
                ("ok", name) => Ok(name.to_owned()),
                ("err", errno) => Err(errno.to_owned()),
                _ => return None,
            };
            Some((ms, result))
        })
        .collect();
    Ok(Attempts { attempts })
}

/// Writes `text` to `dir/name` atomically (write a hidden file, rename), as a deployment tool
/// would, so that the daemon never reads half a file.
pub fn write_manifest(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, text)?;
    fs::rename(&tmp, dir.join(name))
}

/// A `v1` Service with one TCP port named `http`.
pub fn service_yaml(name: &str, vip: Ipv4Addr, port: u16, target_port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  clusterIP: {vip}\n  ports:\n  - name: http\n    port: {port}\n    targetPort: {target_port}\n    protocol: TCP\n"
    )
}

/// An EndpointSlice for `service` with the given `(address, ready)` endpoints on port `http`.
pub fn slice_yaml(service: &str, port: u16, endpoints: &[(Ipv4Addr, bool)]) -> String {
    let mut text = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-1\n  namespace: default\n  labels:\n    kubernetes.io/service-name: {service}\naddressType: IPv4\nports:\n- name: http\n  port: {port}\n  protocol: TCP\nendpoints:\n"
    );
    for (addr, ready) in endpoints {
        text.push_str(&format!(
            "- addresses: [\"{addr}\"]\n  conditions:\n    ready: {ready}\n"
        ));
    }
    text
}
