//! Harness for the pod runtime's tests: a node daemon in a lab node namespace with a state
//! directory of its own, the busybox image imported, and helpers to apply pods and read
//! their status the way an operator would (`node-daemon pods -o json`, `logs`).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use keel_lab::{bin, Cgroup, Child, Lab, NodePlacement};
use serde_json::Value;
use tempfile::TempDir;

use crate::{require_root, write_manifest, Daemon};

/// The pod range of test daemons: beside the lab's own 10.244.0.0/24 on the node.
pub const POD_CIDR: &str = "10.244.1.0/24";
pub const BUSYBOX: &str = keel_lab::oci::BUSYBOX_IMAGE;

type Error = Box<dyn std::error::Error>;

/// A node running pods. Fields drop in order: the daemon stops and cleans up (stopping its
/// pods) before the state, cgroup and lab go.
pub struct PodNode {
    pub daemon: Daemon,
    pub cgroup: Cgroup,
    pub state: TempDir,
    pub manifests: TempDir,
    pub lab: Lab,
}

impl PodNode {
    /// A daemon with the busybox image imported and `extra_args` on its command line.
    pub fn start(test: &str, extra_args: &[&str]) -> Result<Self, Error> {
        require_root();
        let lab = Lab::new(NodePlacement::OwnNetns)?;
        let cgroup = Cgroup::create(&format!("keel-test-{test}-{}", keel_lab::unique_id()))?;
        let manifests = tempfile::tempdir()?;
        let state = tempfile::tempdir()?;
        import_busybox(state.path())?;
        let state_dir = state.path().to_string_lossy().into_owned();
        let mut args = vec!["--state-dir", &state_dir, "--pod-cidr", POD_CIDR];
        args.extend_from_slice(extra_args);
        let daemon = Daemon::start_with(&lab, manifests.path(), cgroup.path(), &args)?;
        Ok(Self {
            daemon,
            state,
            manifests,
            cgroup,
            lab,
        })
    }

    pub fn apply(&self, file: &str, yaml: &str) -> std::io::Result<()> {
        write_manifest(self.manifests.path(), file, yaml)
    }

    /// `node-daemon exec POD -c CONTAINER -- COMMAND`: its exit code and output (stdout, then
    /// stderr).
    pub fn exec(
        &self,
        pod: &str,
        container: &str,
        command: &[&str],
    ) -> Result<(Option<i32>, String), Error> {
        let output = std::process::Command::new(keel_lab::bin("node-daemon"))
            .args(["exec", pod, "-c", container, "--state-dir"])
            .arg(self.state.path())
            .arg("--")
            .args(command)
            .output()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        Ok((output.status.code(), text))
    }

    pub fn remove(&self, file: &str) -> std::io::Result<()> {
        std::fs::remove_file(self.manifests.path().join(file))
    }

    /// `node-daemon pods -o json`: the items.
    pub fn pods(&self) -> Result<Vec<Value>, Error> {
        let output = Command::new(bin("node-daemon"))
            .args(["pods", "-o", "json", "--state-dir"])
            .arg(self.state.path())
            .output()?;
        if !output.status.success() {
            return Err(format!(
                "node-daemon pods: {}",
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        let list: Value = serde_json::from_slice(&output.stdout)?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }

    pub fn pod(&self, name: &str) -> Result<Option<Value>, Error> {
        Ok(self
            .pods()?
            .into_iter()
            .find(|p| p["metadata"]["name"] == name))
    }

    /// Waits until pod `name` satisfies `ready`; returns it. The error shows its last state
    /// and the daemon's log.
    pub fn wait_pod(
        &self,
        name: &str,
        timeout: Duration,
        ready: impl Fn(&Value) -> bool,
    ) -> Result<Value, Error> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(pod) = self.pod(name)? {
                if ready(&pod) {
                    return Ok(pod);
                }
                last = Some(pod);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "pod {name} not as expected within {timeout:?}; last seen:\n{}\ndaemon log:\n{}",
            last.map(|p| serde_json::to_string_pretty(&p["status"]).unwrap_or_default())
                .unwrap_or_else(|| "(absent)".into()),
            self.daemon.log().join("\n")
        )
        .into())
    }

    /// Waits until the pod is gone from the node.
    pub fn wait_gone(&self, name: &str, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.pod(name)?.is_none() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "pod {name} still there after {timeout:?}:\n{}",
            self.daemon.log().join("\n")
        )
        .into())
    }

    /// `node-daemon logs POD -c CONTAINER` (with `--previous`: the run before).
    pub fn logs(&self, pod: &str, container: &str, previous: bool) -> Result<String, Error> {
        let mut command = Command::new(bin("node-daemon"));
        command
            .args(["logs", pod, "-c", container, "--state-dir"])
            .arg(self.state.path());
        if previous {
            command.arg("--previous");
        }
        let output = command.output()?;
        if !output.status.success() {
            return Err(format!(
                "node-daemon logs: {}",
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Waits until the container's current log contains `needle`.
    pub fn wait_log(
        &self,
        pod: &str,
        container: &str,
        needle: &str,
        timeout: Duration,
    ) -> Result<String, Error> {
        let deadline = Instant::now() + timeout;
        let mut text = String::new();
        while Instant::now() < deadline {
            if let Ok(logs) = self.logs(pod, container, false) {
                text = logs;
                if text.contains(needle) {
                    return Ok(text);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = self
            .pod(pod)
            .ok()
            .flatten()
            .map(|p| {
                serde_json::to_string_pretty(&p["status"]["containerStatuses"]).unwrap_or_default()
            })
            .unwrap_or_else(|| "(pod absent)".into());
        Err(format!(
            "{pod}/{container} never logged {needle:?}; log:\n{text}\ncontainers:\n{status}\ndaemon log:\n{}",
            self.daemon.log().join("\n")
        )
        .into())
    }

    /// The directory of a pod in the state directory.
    pub fn pod_dir(&self, pod: &Value) -> PathBuf {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
        self.state.path().join("pods").join(uid)
    }

    /// The host pid of a running container's process.
    pub fn container_pid(&self, pod: &Value, container: &str) -> Result<i32, Error> {
        let path = self
            .pod_dir(pod)
            .join("containers")
            .join(container)
            .join("running.json");
        let running: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        running["pid"]
            .as_i64()
            .map(|p| p as i32)
            .ok_or_else(|| format!("no pid in {}", path.display()).into())
    }

    /// Runs `command` in the node's network namespace; returns exit code and output.
    pub fn on_node(
        &self,
        name: &str,
        command: Command,
    ) -> Result<(Option<i32>, Vec<String>), Error> {
        Ok(
            Child::spawn(name, command, &self.lab.on_node(None))?
                .finish(Duration::from_secs(20))?,
        )
    }

    /// An HTTP GET from the node; the body, or `None` if it failed.
    pub fn http_get(&self, url: &str) -> Result<Option<String>, Error> {
        let mut curl = Command::new("curl");
        curl.args(["-sf", "--max-time", "2", url]);
        let (code, lines) = self.on_node("curl", curl)?;
        Ok((code == Some(0)).then(|| lines.join("\n")))
    }
}

/// Builds the busybox image as an OCI layout and imports it into `state_dir`, as an
/// operator would with `node-daemon image import`.
pub fn import_busybox(state_dir: &Path) -> Result<(), Error> {
    let layout = tempfile::tempdir()?;
    keel_lab::oci::write_busybox_layout(&layout.path().join("busybox"))?;
    let output = Command::new(bin("node-daemon"))
        .args(["image", "import"])
        .arg(layout.path().join("busybox"))
        .arg("--state-dir")
        .arg(state_dir)
        .output()?;
    if !output.status.success() {
        return Err(format!("image import: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(())
}

/// A `v1` Pod manifest: `containers` are (name, shell script) run with `sh -c`. The grace
/// period is 1 s unless `extra_spec` sets one (a shell as PID 1 ignores SIGTERM, so the
/// default 30 s would be spent in every test's teardown).
pub fn pod_yaml(name: &str, extra_spec: &str, containers: &[(&str, &str)]) -> String {
    let extra_spec = if extra_spec.contains("terminationGracePeriodSeconds") {
        extra_spec.to_owned()
    } else {
        format!("{extra_spec}  terminationGracePeriodSeconds: 1\n")
    };
    let mut text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n{extra_spec}  containers:\n"
    );
    for (container, script) in containers {
        text.push_str(&format!(
            "  - name: {container}\n    image: {BUSYBOX}\n    command: [sh, -c, {}]\n",
            serde_json::to_string(script).unwrap_or_default()
        ));
    }
    text
}

/// The state of container `name` in a pod's JSON.
pub fn container_status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

pub fn is_running(pod: &Value, container: &str) -> bool {
    !container_status(pod, container)["state"]["running"].is_null()
}
