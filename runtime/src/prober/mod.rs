//! Probes with the kubelet's semantics: one worker per (pod, container, probe kind), started
//! with the container's run and stopped with it. A worker runs its check every period, counts
//! consecutive successes and failures against the thresholds, and reports only when the
//! thresholded result changes (the kubelet's results cache). Running a check (`check`) is
//! kept apart from scheduling it (`worker`).

use std::{net::Ipv4Addr, path::PathBuf, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use keel_api::{
    pod::{ExecAction, GrpcAction, HttpGetAction, Probe, Scheme, TcpSocketAction},
    Container,
};
use tokio::{
    net::TcpStream,
    sync::{mpsc, watch},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startup",
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
        }
    }
}

/// One check's outcome; a failure says why (the kubelet's event message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
}

/// What a check needs to know about its container.
#[derive(Clone, Debug)]
pub struct Target {
    pub pod_ip: Ipv4Addr,
    pub container: Container,
    /// For exec probes: the `node-daemon` binary, the container's shim spec and process.
    pub exe: PathBuf,
    pub spec_path: PathBuf,
    pub pid: i32,
}

/// A thresholded result that changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeEvent {
    pub container: String,
    /// The container's run (its restart count when it started): results of an earlier run
    /// that arrive late are ignored.
    pub run: u32,
    pub kind: ProbeKind,
    pub success: bool,
    /// The last check's failure, for the `Unhealthy` event.
    pub message: Option<String>,
}

/// Consecutive results against the thresholds; emits only on change.
#[derive(Clone, Debug)]
pub struct Thresholds {
    success: u32,
    failure: u32,
    successes: u32,
    failures: u32,
    current: Option<bool>,
}

impl Thresholds {
    /// `initial` is the result before any check: liveness starts as success (a container is
    /// alive until proven otherwise), readiness and startup as unknown.
    pub fn new(probe: &Probe, initial: Option<bool>) -> Self {
        Self {
            success: probe.success_threshold(),
            failure: probe.failure_threshold(),
            successes: 0,
            failures: 0,
            current: initial,
        }
    }

    /// Records one check; returns the new result if it changed.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let next = if self.successes >= self.success {
            Some(true)
        } else if self.failures >= self.failure {
            Some(false)
        } else {
            self.current
        };
        (next != self.current).then(|| {
            self.current = next;
            next
        })?
    }
}

/// Runs a probe for one run of one container until the task is aborted (the container
/// exited) or, for a startup probe, until it succeeded. `gate`, for liveness and readiness
/// probes of a container with a startup probe, holds them back until startup succeeded.
#[allow(clippy::too_many_arguments)]
pub async fn worker(
    kind: ProbeKind,
    probe: Probe,
    target: Target,
    run: u32,
    events: mpsc::UnboundedSender<ProbeEvent>,
    gate: Option<watch::Receiver<bool>>,
    jitter: Duration,
) {
    if let Some(mut gate) = gate {
        if gate.wait_for(|started| *started).await.is_err() {
            return;
        }
    }
    tokio::time::sleep(Duration::from_secs(probe.initial_delay().into()) + jitter).await;
    let initial = (kind == ProbeKind::Liveness).then_some(true);
    let mut thresholds = Thresholds::new(&probe, initial);
    let period = Duration::from_secs(probe.period().into());
    loop {
        let outcome = check(&probe, &target).await;
        let ok = outcome == Outcome::Success;
        if let Some(success) = thresholds.observe(ok) {
            let message = match &outcome {
                Outcome::Failure(why) => Some(why.clone()),
                Outcome::Success => None,
            };
            let event = ProbeEvent {
                container: target.container.name.clone(),
                run,
                kind,
                success,
                message,
            };
            if events.send(event).is_err() {
                return;
            }
            if kind == ProbeKind::Startup && success {
                return; // startup probes stop once they succeed
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// Runs one check, bounded by the probe's timeout.
pub async fn check(probe: &Probe, target: &Target) -> Outcome {
    let timeout = Duration::from_secs(probe.timeout().into());
    let run = async {
        if let Some(http) = &probe.http_get {
            http::http_get(http, target).await
        } else if let Some(tcp) = &probe.tcp_socket {
            tcp_socket(tcp, target).await
        } else if let Some(exec) = &probe.exec {
            exec_in_container(exec, target).await
        } else if let Some(grpc) = &probe.grpc {
            grpc::grpc_health(grpc, target).await
        } else {
            Outcome::Failure("the probe has no handler".into())
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Failure(format!("probe timed out after {}s", timeout.as_secs())),
    }
}

fn host_of(host: &Option<String>, target: &Target) -> String {
    host.clone().unwrap_or_else(|| target.pod_ip.to_string())
}

async fn tcp_socket(action: &TcpSocketAction, target: &Target) -> Outcome {
    let Some(port) = target.container.resolve_port(&action.port) else {
        return Outcome::Failure(format!(
            "port {} is not a port of the container",
            action.port
        ));
    };
    let host = host_of(&action.host, target);
    match TcpStream::connect((host.as_str(), port)).await {
        Ok(_) => Outcome::Success,
        Err(err) => Outcome::Failure(format!("dial tcp {host}:{port}: {err}")),
    }
}

/// Runs the command in the container through `node-daemon nsexec`; exit 0 is success. The
/// helper is killed (and the command with it) if the probe times out.
async fn exec_in_container(action: &ExecAction, target: &Target) -> Outcome {
    let output = tokio::process::Command::new(&target.exe)
        .arg("nsexec")
        .arg("--spec")
        .arg(&target.spec_path)
        .arg("--pid")
        .arg(target.pid.to_string())
        .arg("--")
        .args(&action.command)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    match output {
        Ok(output) if output.status.success() => Outcome::Success,
        Ok(output) => {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            let code = output
                .status
                .code()
                .map_or("a signal".into(), |c| c.to_string());
            Outcome::Failure(format!(
                "command {:?} exited with {code}: {}",
                action.command,
                text.trim()
            ))
        }
        Err(err) => Outcome::Failure(format!("cannot run the exec probe: {err}")),
    }
}

pub mod grpc;
mod http;

#[cfg(test)]
mod tests;
