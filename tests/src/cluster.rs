//! The whole-cluster tests' harness: a [`ClusterLab`] (members and node daemons, each in a
//! namespace of its own) driven through the real `kubectl` from the lab's switch.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use keel_lab::cluster::{ClusterLab, ClusterSpec};
use serde_json::Value;

use crate::require_root;

/// The ClusterIP of the Services [`deployment`] writes.
pub const DEMO_VIP: &str = "10.96.0.50";

fn kubectl_path() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/kube-clients/bin/kubectl");
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask setup`",
        path.display()
    );
    path
}

pub struct Cluster {
    pub lab: ClusterLab,
    pub kubectl: PathBuf,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// One member and `nodes` node daemons.
    pub fn start(
        nodes: usize,
        proxy_mode: &str,
        member_args: &[&str],
    ) -> Result<Self, Box<dyn std::error::Error>> {
        Self::start_members(1, nodes, proxy_mode, member_args)
    }

    /// `members` members (behind the lab's API balancer when more than one) and `nodes`
    /// node daemons.
    pub fn start_members(
        members: usize,
        nodes: usize,
        proxy_mode: &str,
        member_args: &[&str],
    ) -> Result<Self, Box<dyn std::error::Error>> {
        Self::start_with(members, nodes, proxy_mode, member_args, &[])
    }

    /// As [`Cluster::start_members`], with more arguments for every node daemon.
    pub fn start_with(
        members: usize,
        nodes: usize,
        proxy_mode: &str,
        member_args: &[&str],
        node_args: &[&str],
    ) -> Result<Self, Box<dyn std::error::Error>> {
        require_root();
        let dir = tempfile::tempdir()?;
        let layout = dir.path().join("busybox");
        keel_lab::oci::write_busybox_layout(&layout)?;
        let spec = ClusterSpec {
            members,
            nodes,
            proxy_mode: proxy_mode.into(),
            dir: dir.path().join("cluster"),
            bin_dir: keel_lab::bin_dir(),
            image_layout: Some(layout),
            member_args: member_args.iter().map(|a| a.to_string()).collect(),
            node_args: node_args.iter().map(|a| a.to_string()).collect(),
        };
        let lab = ClusterLab::start(&spec)?;
        Ok(Self {
            lab,
            kubectl: kubectl_path(),
            dir,
        })
    }

    /// kubectl as the cluster admin, from the lab's switch; fails with its output.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        self.kubectl_with(&self.lab.admin_kubeconfig, args)
    }

    pub fn apply(&self, yaml: &str) -> Result<String, String> {
        let file = self
            .dir
            .path()
            .join(format!("{}.yaml", keel_lab::unique_id()));
        std::fs::write(&file, yaml).map_err(|e| e.to_string())?;
        self.kubectl(&["apply", "-f", file.to_str().unwrap_or("")])
    }

    pub fn json(&self, args: &[&str]) -> Result<Value, String> {
        let mut full = args.to_vec();
        full.extend(["-o", "json"]);
        let text = self.kubectl(&full)?;
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
    }

    /// Polls `check` on `kubectl get ARGS -o json` until it holds.
    pub fn wait(
        &self,
        what: &str,
        args: &[&str],
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Ok(value) = self.json(args) {
                if check(&value) {
                    return Ok(value);
                }
                last = value;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(format!(
            "{what}: not within {timeout:?}; last seen:\n{}\n{}",
            serde_json::to_string_pretty(&last).unwrap_or_default(),
            self.lab.logs()
        ))
    }

    /// `curl http://VIP/` from node `i`, inside its pods' cgroup (where keel's socket programs
    /// translate).
    pub fn curl_from_node(&self, i: usize, url: &str) -> Option<String> {
        let output = self
            .lab
            .run_in(
                &self.lab.nodes[i].netns,
                Some(&self.lab.node_cgroup(i)),
                Path::new("curl"),
                &["-sf", "--max-time", "2", url],
            )
            .ok()?;
        // An empty body is no pod's answer (each pod answers its name).
        let body = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        (output.status.success() && !body.is_empty()).then_some(body)
    }
}

pub fn deployment(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  \
         selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      \
         terminationGracePeriodSeconds: 2\n      containers:\n      - name: httpd\n        image: {image}\n        \
         command: [sh, -c, 'echo serving $(hostname); mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www']\n        \
         ports: [{{containerPort: 8080, name: http}}]\n        readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  clusterIP: {DEMO_VIP}\n  selector: {{app: {name}}}\n  \
         ports: [{{port: 80, targetPort: http}}]\n",
        image = keel_lab::oci::BUSYBOX_IMAGE,
    )
}

pub fn node_ready(node: &Value) -> Option<String> {
    node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str().map(str::to_owned))
}

pub fn has_taint(node: &Value, key: &str) -> bool {
    node["spec"]["taints"].as_array().is_some_and(|t| {
        t.iter()
            .any(|t| t["key"] == key && t["effect"] == "NoExecute")
    })
}

pub fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

pub fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

impl Cluster {
    /// A scratch directory that lives as long as the cluster.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// kubectl with `kubeconfig` (say, one naming a single member), from the lab's switch;
    /// fails with its output.
    pub fn kubectl_with(&self, kubeconfig: &Path, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["--kubeconfig", kubeconfig.to_str().unwrap_or("")];
        full.extend_from_slice(args);
        let output = self
            .lab
            .run_on_switch(&self.kubectl, &full)
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(text)
        } else {
            Err(format!("kubectl {args:?}: {text}"))
        }
    }
}
