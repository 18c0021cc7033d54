//! One pod worker per pod (the kubelet's pod workers): a task that owns the pod from its
//! sandbox to its removal. It starts the containers, notices their exits through their
//! shims, restarts them by the pod's policy with back-off, and on stop terminates them
//! gracefully before tearing the sandbox down. Everything it decides is written to the
//! state directory as it happens, so a new daemon can take over.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{future::BoxFuture, stream::FuturesUnordered, FutureExt, StreamExt};
use keel_api::{
    pod::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        PodIp,
    },
    Container, ContainerStatus, PodStatus,
};
use serde::{Deserialize, Serialize};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

mod exit;
mod probes;
mod start;
mod status;
mod terminate;

use exit::terminated_state;
use start::waiting;

use super::{
    events::EventLog,
    image::ImageError,
    lifecycle::{self, BackoffPolicy},
    prober::{self, ProbeEvent, ProbeKind},
    process::{ProcessHandle, ProcessId},
    sandbox::{self, Sandbox},
    shim,
    spec::{BindFile, Exit, RootfsSpec, Running, ShimSpec},
    state::{self, ContainerDir, PodDir},
    DesiredPod, PodView, RuntimeConfig,
};

/// Retrying a pod sandbox that could not be made (an address, a cgroup, a veth).
const SANDBOX_RETRY: keel_host::backoff::BackoffPolicy =
    keel_host::backoff::BackoffPolicy::new(Duration::from_millis(500), Duration::from_secs(30));
/// How often a running pod's API-backed volumes are brought up to date (the kubelet's sync
/// period is a minute; tokens are refreshed well before they expire).
const API_VOLUME_REFRESH: Duration = Duration::from_secs(10);
/// What the worker remembers per container across daemon restarts (`runtime.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerRecord {
    status: ContainerStatus,
    /// The shim of the current run, while it runs.
    shim: Option<ProcessId>,
    /// The last restart delay, for the next doubling.
    backoff_ms: Option<u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RuntimeRecord {
    containers: BTreeMap<String, ContainerRecord>,
}

/// A container as the worker tracks it.
struct Slot {
    spec: Container,
    record: ContainerRecord,
    /// When the current run started (for the back-off reset).
    started: Option<Instant>,
    /// A restart that is due at this time.
    restart_at: Option<Instant>,
    /// The probe workers of the current run (aborted when it ends).
    probes: Vec<JoinHandle<()>>,
    /// Opens the liveness and readiness probes once the startup probe succeeded.
    startup_gate: Option<watch::Sender<bool>>,
    /// The readiness probe's result; `None` without a readiness probe.
    readiness: Option<bool>,
    /// A container being killed (liveness or startup failure) gets SIGKILL at this time.
    kill_at: Option<Instant>,
    /// The cgroup's OOM-kill count when this run started.
    oom_baseline: Option<u64>,
    /// The cgroup's OOM-kill count as last read: a kill the kernel reports is this
    /// container's when the count has moved past it.
    oom_seen: Option<u64>,
    /// An OOM kill in this run, as the kernel reported it.
    oom: Option<keel_common::OomEvent>,
    /// When the status said `OOMKilled` before the kernel's event had arrived.
    oom_reported_at_ns: Option<u64>,
}

impl Slot {
    /// Ready: running, started (startup probe passed, if any) and, with a readiness probe,
    /// its last result a success; never while being killed.
    fn update_ready(&mut self) {
        let running = self.record.status.state.running.is_some();
        self.record.status.ready = running
            && self.record.status.started
            && self.readiness.unwrap_or(true)
            && self.kill_at.is_none();
    }

    fn stop_probes(&mut self) {
        for probe in self.probes.drain(..) {
            probe.abort();
        }
        self.startup_gate = None;
        self.readiness = None;
    }
}

type ExitFuture = BoxFuture<'static, (String, ProcessId)>;

pub struct Worker {
    config: Arc<RuntimeConfig>,
    pod: DesiredPod,
    dir: PodDir,
    /// Boxed: a B-tree node has room for eleven entries, so 1.9 KB slots stored inline made
    /// every pod's map one 21 KB node for its one or two containers (2 MB at 100 pods).
    slots: BTreeMap<String, Box<Slot>>,
    sandbox: Option<Sandbox>,
    exits: FuturesUnordered<ExitFuture>,
    start_time: String,
    sandbox_error: Option<String>,
    events: EventLog,
    probe_tx: mpsc::UnboundedSender<ProbeEvent>,
    probe_rx: mpsc::UnboundedReceiver<ProbeEvent>,
    /// Set once the pod is being stopped (its endpoints turn terminating).
    terminating: bool,
    /// The last endpoint-relevant state published, to wake the proxy only on change.
    endpoint_key: Option<(Option<String>, bool, bool, bool)>,
    /// The number of that change (see `RuntimeConfig::endpoints_synced`).
    endpoint_version: u64,
    /// What this worker last wrote to `runtime.json` and `status.json`: unchanged, they are
    /// not written again.
    written_record: Option<Vec<u8>>,
    written_status: Option<Vec<u8>>,
}

impl Worker {
    pub fn new(config: Arc<RuntimeConfig>, pod: DesiredPod) -> Self {
        let dir = config.state.pod(&pod.uid);
        let saved: RuntimeRecord = state::read_json(&dir.dir.join("runtime.json"))
            .ok()
            .flatten()
            .unwrap_or_default();
        let slots = pod
            .pod
            .spec
            .containers
            .iter()
            .map(|spec| {
                let mut record = saved
                    .containers
                    .get(&spec.name)
                    .cloned()
                    .unwrap_or_default();
                record.status.name = spec.name.clone();
                record.status.image = spec.image.clone();
                if record.status.state == ContainerState::default() {
                    record.status.state = waiting("ContainerCreating", None);
                }
                let slot = Slot {
                    spec: spec.clone(),
                    record,
                    started: None,
                    restart_at: None,
                    probes: Vec::new(),
                    startup_gate: None,
                    readiness: None,
                    kill_at: None,
                    oom_seen: None,
                    oom_baseline: None,
                    oom: None,
                    oom_reported_at_ns: None,
                };
                (spec.name.clone(), Box::new(slot))
            })
            .collect();
        let (probe_tx, probe_rx) = mpsc::unbounded_channel();
        let events = EventLog::open(dir.dir.join("events.json"));
        Self {
            config,
            pod,
            dir,
            slots,
            sandbox: None,
            exits: FuturesUnordered::new(),
            start_time: shim::now_rfc3339(),
            sandbox_error: None,
            events,
            probe_tx,
            probe_rx,
            terminating: false,
            endpoint_key: None,
            endpoint_version: 0,
            written_record: None,
            written_status: None,
        }
    }

    fn pod_name(&self) -> String {
        pod_name(&self.pod)
    }

    /// Runs the pod until `stop` turns true, then stops it and removes it from the node.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        if !self.dir.pod_json().exists() && !*stop.borrow() {
            if let Err(error) = state::write_json(&self.dir.pod_json(), &self.pod.record()) {
                tracing::error!(pod = %self.pod_name(), "{error}");
            }
            let message = format!("static pod from {}", self.pod.source.display());
            self.events.normal("Scheduled", None, message);
        }
        let mut sandbox_retry = SANDBOX_RETRY.initial;
        let mut oom_events = self.config.oom_events.subscribe();
        // A deadline, not a sleep per turn: probes wake the loop far more often than this.
        let mut volumes_refresh_at = Instant::now() + API_VOLUME_REFRESH;
        loop {
            if *stop.borrow() {
                break;
            }
            if self.sandbox.is_none() {
                match self.ensure_sandbox().await {
                    Ok(()) => {
                        self.sandbox_error = None;
                        self.adopt_or_schedule();
                    }
                    Err(error) => {
                        let message = format!("{error:#}");
                        tracing::error!(pod = %self.pod_name(), "pod sandbox: {message}");
                        self.sandbox_error = Some(message);
                        self.publish();
                        tokio::select! {
                            _ = stop.changed() => {}
                            () = tokio::time::sleep(sandbox_retry) => {}
                        }
                        sandbox_retry =
                            SANDBOX_RETRY.next_delay(Some(sandbox_retry), Duration::ZERO);
                        continue;
                    }
                }
            }
            self.start_due().await;
            self.publish();
            let next_restart = self
                .slots
                .values()
                .flat_map(|s| [s.restart_at, s.kill_at])
                .flatten()
                .min();
            let pause_exit = async {
                match &self.sandbox {
                    Some(sandbox) if !sandbox.pause.has_exited() => {
                        // Polled, not awaited: the handle stays with the sandbox.
                        loop {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            if sandbox.pause.has_exited() {
                                return;
                            }
                        }
                    }
                    _ => std::future::pending().await,
                }
            };
            let has_api_volumes = self.config.volume_contents.is_some()
                && self
                    .pod
                    .pod
                    .spec
                    .volumes
                    .iter()
                    .any(|v| v.api_volume().is_some());
            tokio::select! {
                _ = stop.changed() => {}
                () = sleep_until(Some(volumes_refresh_at)), if has_api_volumes => {
                    self.refresh_api_volumes();
                    volumes_refresh_at = Instant::now() + API_VOLUME_REFRESH;
                }
                Some((name, _)) = self.exits.next(), if !self.exits.is_empty() => {
                    self.on_exit(&name);
                }
                Some(event) = self.probe_rx.recv() => self.on_probe(event),
                Ok(event) = oom_events.recv() => self.on_oom(event),
                () = sleep_until(next_restart) => self.kill_overdue(),
                () = pause_exit => {
                    tracing::warn!(pod = %self.pod_name(), "the pause process died; recreating the pod sandbox");
                    self.kill_all_and_reap().await;
                    if let Some(sandbox) = self.sandbox.take() {
                        sandbox::stop(sandbox, &self.pod.uid).await;
                    }
                    let _ = state::remove_file(&self.dir.sandbox_json());
                }
            }
        }
        self.terminate().await;
    }

    /// Brings the files of the pod's API-backed volumes up to date (a refreshed token, an
    /// edited ConfigMap), off the runtime's worker thread.
    fn refresh_api_volumes(&self) {
        if let Some(contents) = &self.config.volume_contents {
            tokio::task::block_in_place(|| {
                crate::volumes::refresh(
                    &self.dir,
                    &self.pod.pod.spec.volumes,
                    contents.as_ref(),
                    &self.pod.uid,
                )
            });
        }
    }

    async fn ensure_sandbox(&mut self) -> anyhow::Result<()> {
        let spec = &self.pod.pod;
        let hostname = spec
            .spec
            .hostname
            .clone()
            .unwrap_or_else(|| spec.metadata.name.clone());
        let (sandbox, adopted) = sandbox::ensure(
            &self.config,
            &self.pod.uid,
            &self.dir,
            &hostname,
            spec.metadata.namespace(),
        )
        .await?;
        if adopted {
            tracing::info!(pod = %self.pod_name(), ip = %sandbox.record.ip, "adopted the running pod sandbox");
        } else {
            tracing::info!(pod = %self.pod_name(), ip = %sandbox.record.ip, pause = sandbox.record.pause.pid, "pod sandbox created");
        }
        self.sandbox = Some(sandbox);
        Ok(())
    }

    /// After the sandbox is there: adopt the shims that still run, account for the ones
    /// that exited while no daemon watched, and schedule the rest to start.
    fn adopt_or_schedule(&mut self) {
        let now = Instant::now();
        let names: Vec<String> = self.slots.keys().cloned().collect();
        for name in names {
            let container_dir = self.dir.container(&name);
            let Some(slot) = self.slots.get_mut(&name) else {
                continue;
            };
            let live = slot.record.shim.and_then(|id| id.open().ok().flatten());
            match live {
                Some(handle) => {
                    tracing::info!(pod = %self.pod.uid, container = %name, "adopted running container");
                    slot.started = Some(now);
                    // Kills counted from here on are this run's (the count before the
                    // restart is not known: the daemon's memory of it went with it).
                    slot.oom_baseline = self.config.cgroups.oom_kills(&self.pod.uid, &name);
                    slot.oom_seen = slot.oom_baseline;
                    self.exits.push(wait_exit(name.clone(), handle));
                    // Probes start over, as after a kubelet restart: not ready until the
                    // readiness probe passes again.
                    self.start_probes(&name);
                }
                None if slot.record.shim.is_some() => {
                    // It ran under an earlier daemon and has exited since: its shim left the
                    // exit status behind (or, if the shim itself died, there is none).
                    let exit = state::read_json::<Exit>(&container_dir.exit_json())
                        .ok()
                        .flatten();
                    self.record_exit(&name, exit, Duration::ZERO);
                }
                None => {
                    // Never started, or waiting for a restart: start now (the back-off of an
                    // earlier daemon is not carried over in time, only in length).
                    if slot.restart_at.is_none() {
                        slot.restart_at = Some(now);
                    }
                }
            }
        }
    }
}

fn wait_exit(name: String, handle: ProcessHandle) -> ExitFuture {
    async move {
        let id = handle.id();
        let _ = handle.exited().await;
        (name, id)
    }
    .boxed()
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// `namespace/name`, as the pod is named in logs and in a container's shim.
fn pod_name(pod: &DesiredPod) -> String {
    format!("{}/{}", pod.pod.metadata.namespace(), pod.pod.metadata.name)
}
