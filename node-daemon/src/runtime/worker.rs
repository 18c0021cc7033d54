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

use super::{
    events::EventLog,
    image::ImageError,
    lifecycle::{self, BackoffPolicy},
    prober::{self, ProbeEvent, ProbeKind},
    process::{ProcessHandle, ProcessId},
    rootfs::{BindFile, RootfsSpec},
    sandbox::{self, Sandbox},
    shim::{self, Exit, Running, ShimSpec},
    state::{self, ContainerDir, PodDir},
    DesiredPod, PodView, RuntimeConfig,
};

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
    /// The cgroup2 id of the container's cgroup, to recognise its OOM kills.
    cgroup_id: Option<u64>,
    /// The cgroup's OOM-kill count when this run started.
    oom_baseline: Option<u64>,
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
    slots: BTreeMap<String, Slot>,
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
                    cgroup_id: None,
                    oom_baseline: None,
                    oom: None,
                    oom_reported_at_ns: None,
                };
                (spec.name.clone(), slot)
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
        }
    }

    fn pod_name(&self) -> String {
        format!(
            "{}/{}",
            self.pod.pod.metadata.namespace(),
            self.pod.pod.metadata.name
        )
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
        let mut sandbox_retry = Duration::from_millis(500);
        let mut oom_events = self.config.oom_events.subscribe();
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
                        sandbox_retry = (sandbox_retry * 2).min(Duration::from_secs(30));
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
            tokio::select! {
                _ = stop.changed() => {}
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
                    slot.cgroup_id = self
                        .config
                        .cgroups
                        .container_cgroup_id(&self.pod.uid, &name);
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

    /// Starts every container whose time has come.
    async fn start_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| s.restart_at.is_some_and(|at| at <= now))
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            if let Some(slot) = self.slots.get_mut(&name) {
                slot.restart_at = None;
            }
            self.start_container(&name).await;
        }
    }

    async fn start_container(&mut self, name: &str) {
        let Some(sandbox) = &self.sandbox else { return };
        let pause_pid = sandbox.record.pause.pid;
        let Some(slot) = self.slots.get(name) else {
            return;
        };
        let spec = slot.spec.clone();
        let restart = slot.record.status.restart_count;
        let container_dir = self.dir.container(name);
        let prepared = self.prepare(&spec, &container_dir, pause_pid, restart);
        let shim_spec = match prepared {
            Ok(shim_spec) => {
                // keel never pulls: an image in the store is what the kubelet calls present.
                let message = format!(
                    "Container image {:?} already present on machine",
                    spec.image
                );
                self.events.normal("Pulled", Some(name), message);
                shim_spec
            }
            Err(Prepare::Image(error)) => {
                let message = error.to_string();
                tracing::warn!(pod = %self.pod_name(), container = name, "{message}");
                self.events.warning(
                    "Failed",
                    Some(name),
                    format!("Error: ErrImageNeverPull: {message}"),
                );
                self.wait_and_retry(name, "ErrImageNeverPull", message);
                return;
            }
            Err(Prepare::Config(message)) => {
                tracing::warn!(pod = %self.pod_name(), container = name, "{message}");
                self.events
                    .warning("Failed", Some(name), format!("Error: {message}"));
                self.wait_and_retry(name, "CreateContainerConfigError", message);
                return;
            }
            Err(Prepare::Other(error)) => {
                let message = format!("{error:#}");
                tracing::error!(pod = %self.pod_name(), container = name, "cannot create container: {message}");
                self.wait_and_retry(name, "CreateContainerError", message);
                return;
            }
        };
        let shim_procs = match self.config.cgroups.shim_procs() {
            Ok(procs) => procs,
            Err(error) => {
                self.wait_and_retry(name, "CreateContainerError", error.to_string());
                return;
            }
        };
        match shim::launch(&self.config.exe, &shim_spec, &container_dir, &shim_procs).await {
            Ok((handle, running)) => {
                tracing::info!(pod = %self.pod_name(), container = name, pid = running.pid, restarts = restart, "container started");
                if let Some(slot) = self.slots.get_mut(name) {
                    slot.record.shim = Some(handle.id());
                    slot.record.status.state = ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: running.started_at,
                        }),
                        ..Default::default()
                    };
                    slot.record.status.container_id =
                        Some(format!("keel://{}/{name}/{restart}", self.pod.uid));
                    slot.started = Some(Instant::now());
                    slot.cgroup_id = self.config.cgroups.container_cgroup_id(&self.pod.uid, name);
                    slot.oom_baseline = self.config.cgroups.oom_kills(&self.pod.uid, name);
                    slot.oom = None;
                }
                self.events
                    .normal("Created", Some(name), format!("Created container {name}"));
                self.events
                    .normal("Started", Some(name), format!("Started container {name}"));
                self.exits.push(wait_exit(name.to_owned(), handle));
                self.start_probes(name);
            }
            Err(shim::LaunchError::Exited(exit)) => {
                self.record_exit(name, Some(exit), Duration::ZERO)
            }
            Err(shim::LaunchError::Other(error)) => {
                let message = format!("{error:#}");
                tracing::error!(pod = %self.pod_name(), container = name, "cannot start container: {message}");
                self.wait_and_retry(name, "CreateContainerError", message);
            }
        }
    }

    /// Resolves the image and command, prepares the rootfs directories and cgroups.
    fn prepare(
        &self,
        spec: &Container,
        container_dir: &ContainerDir,
        pause_pid: i32,
        restart: u32,
    ) -> Result<ShimSpec, Prepare> {
        let image = self
            .config
            .images
            .get(&spec.image)
            .map_err(Prepare::Image)?;
        let effective = spec.effective_security(&self.pod.pod.spec);
        let pod_ref = format!(
            "{}_{}({})",
            self.pod.pod.metadata.name,
            self.pod.pod.metadata.namespace(),
            self.pod.uid
        );
        let (uid, gid) = super::security::resolve_user(
            &effective,
            image.config.user.as_deref(),
            &image.rootfs,
            &pod_ref,
            &spec.name,
        )
        .map_err(Prepare::Config)?;
        let argv = super::command::resolve_argv(spec, &image.config);
        let env = super::command::resolve_env(spec, &image.config, &self.pod.pod);
        let working_dir = spec
            .working_dir
            .clone()
            .or(image.config.working_dir.clone().filter(|d| !d.is_empty()))
            .unwrap_or_else(|| "/".to_owned());
        // A fresh writable layer per run, as a restarted container gets in Kubernetes.
        let dir = &container_dir.dir;
        for stale in ["upper", "work", "rootfs", "copy"] {
            let _ = std::fs::remove_dir_all(dir.join(stale));
        }
        for stale in [container_dir.running_json(), container_dir.exit_json()] {
            state::remove_file(&stale).map_err(|e| Prepare::Other(e.into()))?;
        }
        let rootfs = if self.config.overlay {
            for sub in ["upper", "work", "rootfs"] {
                std::fs::create_dir_all(dir.join(sub)).map_err(|e| Prepare::Other(e.into()))?;
            }
            RootfsSpec::Overlay {
                lower: image.rootfs.clone(),
                upper: dir.join("upper"),
                work: dir.join("work"),
                target: dir.join("rootfs"),
            }
        } else {
            copy_tree(&image.rootfs, &dir.join("copy")).map_err(|e| Prepare::Other(e.into()))?;
            RootfsSpec::Copy {
                dir: dir.join("copy"),
            }
        };
        let cgroup_procs = self
            .config
            .cgroups
            .create_container(&self.pod.uid, &spec.name, &spec.resources)
            .map_err(|e| Prepare::Other(e.into()))?;
        let volumes = &self.pod.pod.spec.volumes;
        super::volumes::prepare(&self.dir, volumes).map_err(|e| Prepare::Other(e.into()))?;
        let mounts = super::volumes::mounts(&self.dir, volumes, spec)
            .map_err(|e| Prepare::Other(e.into()))?;
        let files = ["hosts", "hostname", "resolv.conf"]
            .into_iter()
            .map(|file| BindFile {
                source: self.dir.dir.join(file),
                target: format!("/etc/{file}"),
            })
            .collect();
        Ok(ShimSpec {
            pod: self.pod_name(),
            container: spec.name.clone(),
            container_dir: dir.clone(),
            argv,
            env,
            working_dir,
            uid,
            gid,
            security: super::security::Security::for_container(&effective),
            rootfs,
            files,
            mounts,
            pause_pid,
            share_pid_namespace: self.pod.pod.spec.share_process_namespace,
            cgroup_procs,
            log_file: self.dir.log_file(&spec.name, restart),
            log_max_size: self.config.log_max_size,
            log_max_files: self.config.log_max_files,
        })
    }

    /// Waiting with `reason`, and another attempt after the back-off.
    fn wait_and_retry(&mut self, name: &str, reason: &str, message: String) {
        let policy = self.config.backoff;
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        let delay = policy.next_delay(
            slot.record.backoff_ms.map(Duration::from_millis),
            Duration::ZERO,
        );
        slot.record.backoff_ms = Some(delay.as_millis() as u64);
        slot.record.status.state = waiting(reason, Some(message));
        slot.record.status.ready = false;
        slot.restart_at = Some(Instant::now() + delay);
    }

    fn on_exit(&mut self, name: &str) {
        let container_dir = self.dir.container(name);
        let exit = state::read_json::<Exit>(&container_dir.exit_json())
            .ok()
            .flatten();
        let ran_for = self
            .slots
            .get(name)
            .and_then(|s| s.started)
            .map_or(Duration::ZERO, |at| at.elapsed());
        self.record_exit(name, exit, ran_for);
    }

    /// Records a run's end and decides, by the restart policy, whether and when it runs again.
    fn record_exit(&mut self, name: &str, exit: Option<Exit>, ran_for: Duration) {
        let policy = self.pod.pod.spec.restart_policy;
        let backoff: BackoffPolicy = self.config.backoff;
        let pod = self.pod_name();
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        let mut terminated = terminated_state(exit, &slot.record.status);
        let exit_code = terminated.exit_code;
        let oom_kills = self.config.cgroups.oom_kills(&self.pod.uid, name);
        if exit_code == 137 && oom_killed(slot, oom_kills) {
            terminated.reason = "OOMKilled".to_owned();
            let now = super::oom::monotonic_ns();
            match slot.oom {
                // From the kernel's choice of victim to the status saying so.
                Some(event) => {
                    let latency_us = now.saturating_sub(event.timestamp_ns) / 1000;
                    tracing::info!(pod = %pod, container = name, latency_us, "container OOMKilled");
                }
                // The cgroup's counter told first; the kernel's event (on its way through
                // the ring buffer) gives the latency when it arrives.
                None => {
                    slot.oom_reported_at_ns = Some(now);
                    tracing::info!(pod = %pod, container = name, "container OOMKilled (the cgroup's count; the kernel's event follows)");
                }
            }
            self.events.warning(
                "OOMKilled",
                Some(name),
                format!("Container {name} was killed: it exceeded its memory limit"),
            );
        }
        slot.oom = None;
        tracing::info!(pod = %pod, container = name, exit_code, reason = %terminated.reason, "container exited");
        slot.stop_probes();
        slot.kill_at = None;
        slot.record.shim = None;
        slot.record.status.ready = false;
        slot.record.status.started = false;
        slot.started = None;
        if lifecycle::should_restart(policy, exit_code) {
            let delay =
                backoff.next_delay(slot.record.backoff_ms.map(Duration::from_millis), ran_for);
            slot.record.backoff_ms = Some(delay.as_millis() as u64);
            slot.record.status.restart_count += 1;
            slot.record.status.last_state = ContainerState {
                terminated: Some(terminated),
                ..Default::default()
            };
            let message = lifecycle::backoff_message(delay, name, &pod);
            // Tests read this line for the back-off sequence: keep its shape.
            tracing::info!(pod = %pod, container = name, delay_ms = delay.as_millis() as u64, restarts = slot.record.status.restart_count, "{message}");
            slot.record.status.state = waiting("CrashLoopBackOff", Some(message));
            slot.restart_at = Some(Instant::now() + delay);
            self.events.warning(
                "BackOff",
                Some(name),
                format!("Back-off restarting failed container {name} in pod {pod}"),
            );
        } else {
            slot.record.status.state = ContainerState {
                terminated: Some(terminated),
                ..Default::default()
            };
        }
    }

    /// Stops every container gracefully, then the sandbox, then removes the pod's state:
    /// SIGTERM to all containers at once, SIGKILL to those still running after the grace
    /// period, as the kubelet does.
    async fn terminate(mut self) {
        let pod = self.pod_name();
        let grace = Duration::from_secs(self.pod.pod.spec.grace_period_seconds());
        // Containers that have not started yet never will; probes stop; endpoints turn
        // terminating before any signal is sent, so no new connection reaches the pod.
        self.terminating = true;
        for slot in self.slots.values_mut() {
            slot.restart_at = None;
            slot.stop_probes();
            slot.update_ready();
        }
        self.publish();
        self.wait_for_endpoints().await;
        // Adopt first, if the daemon was told to stop a pod it had not looked at yet.
        if self.sandbox.is_none() {
            if let Ok(Some(record)) =
                state::read_json::<sandbox::SandboxRecord>(&self.dir.sandbox_json())
            {
                if let Ok(Some(pause)) = record.pause.open() {
                    self.sandbox = Some(Sandbox { record, pause });
                }
            }
            self.adopt_running_only();
        }
        let running: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| s.record.shim.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        tracing::info!(pod = %pod, containers = ?running, grace_seconds = grace.as_secs(), "killing containers with a grace period");
        for name in &running {
            self.events
                .normal("Killing", Some(name), format!("Stopping container {name}"));
        }
        self.signal_shims(libc::SIGTERM);
        let deadline = tokio::time::Instant::now() + grace;
        while !self.exits.is_empty() {
            tokio::select! {
                Some((name, _)) = self.exits.next() => {
                    self.on_exit_final(&name);
                }
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        if !self.exits.is_empty() {
            tracing::info!(pod = %pod, "grace period over; killing the remaining containers");
            self.signal_shims(libc::SIGUSR2);
            self.kill_all_and_reap().await;
        }
        tracing::info!(pod = %pod, "all containers stopped");
        self.publish();
        if let Some(sandbox) = self.sandbox.take() {
            sandbox::stop(sandbox, &self.pod.uid).await;
        }
        tracing::info!(pod = %pod, "pod sandbox stopped");
        if let Err(error) = self.config.cgroups.remove_pod(&self.pod.uid) {
            tracing::warn!(pod = %pod, "removing the pod's cgroups: {error}");
        }
        if let Err(error) = self.config.ipam.release(&self.pod.uid) {
            tracing::warn!(pod = %pod, "releasing the pod's address: {error}");
        }
        super::volumes::release(&self.dir);
        if let Err(error) = std::fs::remove_dir_all(&self.dir.dir) {
            tracing::warn!(pod = %pod, "removing {}: {error}", self.dir.dir.display());
        }
        self.config
            .views
            .write()
            .map(|mut v| v.remove(&self.pod.uid))
            .ok();
        tracing::info!(pod = %pod, "pod removed");
    }

    /// Waits (briefly) until the proxy has taken this pod's endpoints out, so that SIGTERM
    /// never races a new connection. Kubernetes leaves that race to preStop hooks; a node
    /// that runs the proxy itself can simply wait for it.
    async fn wait_for_endpoints(&mut self) {
        let version = self.endpoint_version;
        let mut synced = self.config.endpoints_synced.subscribe();
        let caught_up = synced.wait_for(|synced| *synced >= version);
        if tokio::time::timeout(Duration::from_secs(2), caught_up)
            .await
            .is_err()
        {
            tracing::warn!(pod = %self.pod_name(), "the proxy did not sync the pod's endpoints within 2 s; stopping anyway");
        }
    }

    /// At termination, only containers already running are waited for.
    fn adopt_running_only(&mut self) {
        for (name, slot) in &mut self.slots {
            if let Some(handle) = slot.record.shim.and_then(|id| id.open().ok().flatten()) {
                self.exits.push(wait_exit(name.clone(), handle));
            }
        }
    }

    fn on_exit_final(&mut self, name: &str) {
        let exit = state::read_json::<Exit>(&self.dir.container(name).exit_json())
            .ok()
            .flatten();
        if let Some(slot) = self.slots.get_mut(name) {
            let terminated = terminated_state(exit, &slot.record.status);
            tracing::info!(pod = %self.pod.uid, container = name, exit_code = terminated.exit_code, "container stopped");
            slot.stop_probes();
            slot.record.shim = None;
            slot.record.status.ready = false;
            slot.record.status.state = ContainerState {
                terminated: Some(terminated),
                ..Default::default()
            };
        }
    }

    fn signal_shims(&self, signal: i32) {
        for (name, slot) in &self.slots {
            if let Some(handle) = slot.record.shim.and_then(|id| id.open().ok().flatten()) {
                if let Err(error) = handle.signal(signal) {
                    tracing::warn!(container = name, "signalling the shim: {error}");
                }
            }
        }
    }

    /// SIGKILL through the shims, then the shims themselves if they do not report within
    /// 5 s; waits for every exit.
    async fn kill_all_and_reap(&mut self) {
        self.signal_shims(libc::SIGUSR2);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self.exits.is_empty() {
            tokio::select! {
                Some((name, _)) = self.exits.next() => self.on_exit_final(&name),
                () = tokio::time::sleep_until(deadline) => {
                    self.signal_shims(libc::SIGKILL);
                    while let Some((name, _)) = self.exits.next().await {
                        self.on_exit_final(&name);
                    }
                }
            }
        }
    }

    /// Writes the pod's status and the worker's record, and updates the shared view.
    fn publish(&mut self) {
        let statuses: Vec<ContainerStatus> = self
            .slots
            .values()
            .map(|s| s.record.status.clone())
            .collect();
        let phase = lifecycle::pod_phase(self.pod.pod.spec.restart_policy, &statuses);
        let ip = self.sandbox.as_ref().map(|s| s.record.ip.to_string());
        let status = PodStatus {
            phase,
            conditions: lifecycle::pod_conditions(&statuses, &self.start_time),
            message: self.sandbox_error.clone(),
            reason: self
                .sandbox_error
                .as_ref()
                .map(|_| "SandboxError".to_owned()),
            host_ip: self.config.node_ip.map(|ip| ip.to_string()),
            pod_ip: ip.clone(),
            pod_ips: ip.map(|ip| vec![PodIp { ip }]).unwrap_or_default(),
            start_time: Some(self.start_time.clone()),
            container_statuses: statuses,
        };
        let record = RuntimeRecord {
            containers: self
                .slots
                .iter()
                .map(|(n, s)| (n.clone(), s.record.clone()))
                .collect(),
        };
        for result in [
            state::write_json(&self.dir.dir.join("runtime.json"), &record),
            state::write_json(&self.dir.status_json(), &status),
        ] {
            if let Err(error) = result {
                tracing::error!(pod = %self.pod.uid, "{error}");
            }
        }
        let view = PodView {
            namespace: self.pod.pod.metadata.namespace().to_owned(),
            name: self.pod.pod.metadata.name.clone(),
            labels: self.pod.pod.metadata.labels.clone(),
            status,
            pids: self
                .slots
                .keys()
                .filter_map(|n| {
                    let running: Running =
                        state::read_json(&self.dir.container(n).running_json()).ok()??;
                    Some((n.clone(), running.pid))
                })
                .collect(),
            ports: self
                .pod
                .pod
                .spec
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().cloned())
                .collect(),
            terminating: self.terminating,
        };
        let key = view.endpoint_key();
        if let Ok(mut views) = self.config.views.write() {
            views.insert(self.pod.uid.clone(), view);
        }
        if self.endpoint_key.as_ref() != Some(&key) {
            self.endpoint_key = Some(key);
            self.endpoint_version = self
                .config
                .endpoints_version
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                + 1;
            self.config.endpoints_changed.notify_one();
        }
    }

    /// Starts the probe workers of a container's current run. Without a startup probe the
    /// container counts as started at once; with one, liveness and readiness wait for it.
    fn start_probes(&mut self, name: &str) {
        let Some(sandbox) = &self.sandbox else { return };
        let pod_ip = sandbox.record.ip;
        let container_dir = self.dir.container(name);
        let Some(pid) = state::read_json::<Running>(&container_dir.running_json())
            .ok()
            .flatten()
            .map(|r| r.pid)
        else {
            return;
        };
        let exe = self.config.exe.clone();
        let uid = self.pod.uid.clone();
        let tx = self.probe_tx.clone();
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        slot.stop_probes();
        let target = prober::Target {
            pod_ip,
            container: slot.spec.clone(),
            exe,
            spec_path: container_dir.spec_json(),
            pid,
        };
        let run = slot.record.status.restart_count;
        let spec = slot.spec.clone();
        let gate = spec.startup_probe.as_ref().map(|_| watch::channel(false));
        slot.record.status.started = gate.is_none();
        slot.readiness = spec.readiness_probe.as_ref().map(|_| false);
        for (kind, probe) in [
            (ProbeKind::Startup, &spec.startup_probe),
            (ProbeKind::Liveness, &spec.liveness_probe),
            (ProbeKind::Readiness, &spec.readiness_probe),
        ] {
            let Some(probe) = probe.clone() else { continue };
            let gate_rx = match (kind, &gate) {
                (ProbeKind::Startup, _) | (_, None) => None,
                (_, Some((_, rx))) => Some(rx.clone()),
            };
            let jitter = probe_jitter(&uid, name, kind, probe.period());
            let worker = prober::worker(
                kind,
                probe,
                target.clone(),
                run,
                tx.clone(),
                gate_rx,
                jitter,
            );
            slot.probes.push(tokio::spawn(worker));
        }
        slot.startup_gate = gate.map(|(tx, _)| tx);
        slot.update_ready();
    }

    /// The kernel's OOM killer acted: if in one of this pod's containers, note it (the exit
    /// that follows is then `OOMKilled`) and record the event.
    fn on_oom(&mut self, event: keel_common::OomEvent) {
        let pod = self.pod_name();
        let container_dir = |name: &str| self.dir.container(name);
        let pid_of = |name: &str| {
            state::read_json::<Running>(&container_dir(name).running_json())
                .ok()
                .flatten()
                .map(|r| r.pid)
        };
        let pids: BTreeMap<String, Option<i32>> =
            self.slots.keys().map(|n| (n.clone(), pid_of(n))).collect();
        let Some((name, slot)) = self.slots.iter_mut().find(|(name, slot)| {
            slot.cgroup_id == Some(event.cgroup_id)
                || pids.get(*name).copied().flatten() == Some(event.pid as i32)
        }) else {
            return;
        };
        let name = name.clone();
        match slot.oom_reported_at_ns.take() {
            // The exit was already recorded as OOMKilled: this is that kill.
            Some(reported_at) => {
                let latency_us = reported_at.saturating_sub(event.timestamp_ns) / 1000;
                tracing::info!(pod = %pod, container = %name, latency_us, "container OOMKilled");
            }
            None => slot.oom = Some(event),
        }
        tracing::info!(pod = %pod, container = %name, victim = event.pid, anon_rss_kb = event.anon_rss_kb, "OOM kill in the container's memory cgroup");
        self.events.warning(
            "OOMKilling",
            Some(&name),
            format!(
                "Memory cgroup out of memory: killed process {} (total-vm:{}kB, anon-rss:{}kB, file-rss:{}kB, shmem-rss:{}kB)",
                event.pid, event.total_vm_kb, event.anon_rss_kb, event.file_rss_kb, event.shmem_rss_kb
            ),
        );
    }

    /// A probe's thresholded result changed.
    fn on_probe(&mut self, event: ProbeEvent) {
        let pod = self.pod_name();
        let Some(slot) = self.slots.get_mut(&event.container) else {
            return;
        };
        let current = slot.record.status.restart_count == event.run
            && slot.record.status.state.running.is_some()
            && slot.kill_at.is_none();
        if !current {
            return; // a late result of an earlier run
        }
        let name = event.container.clone();
        let kind = event.kind.name();
        tracing::info!(pod = %pod, container = %name, probe = kind, success = event.success, "probe result changed");
        if !event.success {
            let why = event.message.clone().unwrap_or_default();
            let probe = capitalized(kind);
            self.events.warning(
                "Unhealthy",
                Some(&name),
                format!("{probe} probe failed: {why}"),
            );
        }
        match (event.kind, event.success) {
            (ProbeKind::Startup, true) => {
                slot.record.status.started = true;
                if let Some(gate) = &slot.startup_gate {
                    let _ = gate.send(true);
                }
            }
            (ProbeKind::Readiness, ready) => slot.readiness = Some(ready),
            (ProbeKind::Liveness | ProbeKind::Startup, false) => {
                self.kill_container(&name, &format!("failed {kind} probe, will be restarted"));
                return;
            }
            (ProbeKind::Liveness, true) => {}
        }
        slot.update_ready();
    }

    /// Kills one container for a failed liveness or startup probe: SIGTERM now, SIGKILL
    /// after the pod's grace period. The exit then takes the restart policy's course.
    fn kill_container(&mut self, name: &str, why: &str) {
        let grace = Duration::from_secs(self.pod.pod.spec.grace_period_seconds());
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        slot.stop_probes();
        slot.kill_at = Some(Instant::now() + grace);
        slot.update_ready();
        if let Some(handle) = slot.record.shim.and_then(|id| id.open().ok().flatten()) {
            let _ = handle.signal(libc::SIGTERM);
        }
        tracing::info!(pod = %self.pod.uid, container = name, "killing container: {why}");
        self.events
            .normal("Killing", Some(name), format!("Container {name} {why}"));
    }

    /// SIGKILL for containers whose grace period after a probe kill is over.
    fn kill_overdue(&mut self) {
        let now = Instant::now();
        for slot in self.slots.values_mut() {
            if slot.kill_at.is_some_and(|at| at <= now) {
                slot.kill_at = Some(now + Duration::from_secs(3600)); // once
                if let Some(handle) = slot.record.shim.and_then(|id| id.open().ok().flatten()) {
                    let _ = handle.signal(libc::SIGUSR2);
                }
            }
        }
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// A start offset for a probe worker, spread over the first tenth of its period so that
/// many containers started together are not probed in lockstep. Derived from the names
/// (stable across restarts, no randomness needed).
fn probe_jitter(uid: &str, container: &str, kind: ProbeKind, period: u32) -> Duration {
    let seed = format!("{uid}/{container}/{}", kind.name());
    let hash = crate::proxy::hash::fnv1a(seed.as_bytes(), 0);
    let span_ms = u64::from(period) * 100; // a tenth of the period
    Duration::from_millis(hash % span_ms.max(1))
}

enum Prepare {
    Image(ImageError),
    /// The pod asks for what cannot be (`runAsNonRoot` and a root image, an unknown user):
    /// the kubelet's `CreateContainerConfigError`.
    Config(String),
    Other(anyhow::Error),
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: reason.to_owned(),
            message,
        }),
        ..Default::default()
    }
}

fn terminated_state(exit: Option<Exit>, status: &ContainerStatus) -> ContainerStateTerminated {
    match exit {
        Some(exit) => ContainerStateTerminated {
            exit_code: exit.exit_code,
            signal: exit.signal,
            reason: lifecycle::termination_reason(exit.exit_code, exit.start_error.is_some())
                .to_owned(),
            message: exit.start_error,
            started_at: exit.started_at,
            finished_at: exit.finished_at,
            container_id: status.container_id.clone(),
        },
        // The shim died without recording anything: what the kubelet reports for a
        // container whose state it lost.
        None => ContainerStateTerminated {
            exit_code: 137,
            signal: None,
            reason: "ContainerStatusUnknown".to_owned(),
            message: Some("the container's shim exited without recording its exit".to_owned()),
            started_at: status
                .state
                .running
                .as_ref()
                .map(|r| r.started_at.clone())
                .unwrap_or_default(),
            finished_at: shim::now_rfc3339(),
            container_id: status.container_id.clone(),
        },
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

/// Whether a run that ended by SIGKILL was the OOM killer's doing: the kernel said so (the
/// ring buffer), or the cgroup's OOM-kill counter moved during the run (a missed event).
fn oom_killed(slot: &Slot, kills_now: Option<u64>) -> bool {
    let counted =
        matches!((slot.oom_baseline, kills_now), (Some(before), Some(now)) if now > before);
    slot.oom.is_some() || counted
}

/// A private copy of the image's root file system, for hosts without overlayfs.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "cp -a {} {} failed",
            from.display(),
            to.display()
        )))
    }
}
