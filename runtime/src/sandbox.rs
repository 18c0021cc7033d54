//! A pod's sandbox: its pause process (holding the namespaces), its address and veth, and
//! the files every container sees (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`).

use std::{fs, net::Ipv4Addr, time::Duration};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{
    network, pause,
    process::{ProcessHandle, ProcessId},
    state::{self, PodDir},
    RuntimeConfig,
};

/// `sandbox.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxRecord {
    pub pause: ProcessId,
    pub ip: Ipv4Addr,
    pub hostname: String,
}

/// A live sandbox.
#[derive(Debug)]
pub struct Sandbox {
    pub record: SandboxRecord,
    pub pause: ProcessHandle,
}

/// The sandbox of a pod: the one recorded, if its pause process still runs (a restarted
/// daemon adopts it), else a new one.
pub async fn ensure(
    config: &RuntimeConfig,
    uid: &str,
    dir: &PodDir,
    hostname: &str,
    namespace: &str,
) -> anyhow::Result<(Sandbox, bool)> {
    if let Some(record) = state::read_json::<SandboxRecord>(&dir.sandbox_json())? {
        if let Some(pause) = record.pause.open()? {
            return Ok((Sandbox { record, pause }, true));
        }
        // The pause is gone (node reboot, killed): its network namespace went with it.
        network::detach_pod(uid).await?;
    }
    Ok((create(config, uid, dir, hostname, namespace).await?, false))
}

async fn create(
    config: &RuntimeConfig,
    uid: &str,
    dir: &PodDir,
    hostname: &str,
    namespace: &str,
) -> anyhow::Result<Sandbox> {
    let ipam = &config.ipam;
    network::ensure_bridge(&config.bridge, ipam.gateway(), ipam.cidr())
        .await
        .with_context(|| format!("node bridge {}", config.bridge))?;
    let ip = ipam.allocate(uid)?;
    write_pod_files(config, dir, hostname, namespace, ip)?;
    let procs = config.cgroups.pause_procs(uid)?;
    let pid = pause::spawn(&config.exe, hostname, &procs).context("starting the pause process")?;
    let pause = ProcessHandle::from_child(pid).context("watching the pause process")?;
    let record = SandboxRecord {
        pause: pause.id(),
        ip,
        hostname: hostname.to_owned(),
    };
    if let Err(error) =
        network::attach_pod(&config.bridge, uid, pid, ip, ipam.cidr(), ipam.gateway()).await
    {
        let sandbox = Sandbox { record, pause };
        stop(sandbox, uid).await;
        return Err(error).context("wiring the pod's network");
    }
    state::write_json(&dir.sandbox_json(), &record)?;
    Ok(Sandbox { record, pause })
}

/// `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` for the pod, as the kubelet writes
/// them: the pod's own name and address, and the node's resolvers (dnsPolicy `Default`;
/// keel has no cluster DNS).
fn write_pod_files(
    config: &RuntimeConfig,
    dir: &PodDir,
    hostname: &str,
    namespace: &str,
    ip: Ipv4Addr,
) -> anyhow::Result<()> {
    fs::create_dir_all(&dir.dir)?;
    let hosts = format!(
        "# Kubernetes-managed hosts file (written by keel).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{hostname}\n"
    );
    fs::write(dir.dir.join("hosts"), hosts)?;
    fs::write(dir.dir.join("hostname"), format!("{hostname}\n"))?;
    let node = fs::read_to_string(&config.resolv_conf).unwrap_or_default();
    let nameservers: Vec<&str> = node
        .lines()
        .filter(|l| l.trim_start().starts_with("nameserver"))
        .collect();
    let resolv = format!(
        "search {namespace}.svc.cluster.local svc.cluster.local cluster.local\n{}\noptions ndots:5\n",
        nameservers.join("\n")
    );
    fs::write(dir.dir.join("resolv.conf"), resolv)?;
    Ok(())
}

/// Stops the pause process (its namespaces go with it) and removes the pod's veth.
pub async fn stop(sandbox: Sandbox, uid: &str) {
    let _ = sandbox.pause.signal(libc::SIGTERM);
    let exited = tokio::time::timeout(Duration::from_secs(2), wait(sandbox.pause)).await;
    if exited.is_err() {
        tracing::warn!(uid, "pause process ignored SIGTERM; killing it");
        if let Ok(Some(pause)) = sandbox.record.pause.open() {
            let _ = pause.signal(libc::SIGKILL);
        }
    }
    if let Err(error) = network::detach_pod(uid).await {
        tracing::warn!(uid, "removing the pod's veth: {error}");
    }
}

async fn wait(pause: ProcessHandle) {
    let _ = pause.exited().await;
}
