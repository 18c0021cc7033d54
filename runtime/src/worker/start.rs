//! Starting a container: the image, the command, the root file system, the shim; waiting with a reason when it cannot.

use super::*;

impl Worker {
    /// Starts every container whose time has come.
    pub(super) async fn start_due(&mut self) {
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

    pub(super) async fn start_container(&mut self, name: &str) {
        let Some(sandbox) = &self.sandbox else { return };
        let pause_pid = sandbox.record.pause.pid;
        let Some(slot) = self.slots.get(name) else {
            return;
        };
        let spec = slot.spec.clone();
        let restart = slot.record.status.restart_count;
        let container_dir = self.dir.container(name);
        if let Err((reason, message)) = self.api_volumes_ready() {
            // The kubelet's "ContainerCreating" while volumes mount: asked again shortly,
            // without the crash back-off, since nothing failed in the container.
            let retry = if reason == "FailedMount" {
                self.events.warning(reason, None, message.clone());
                FAILED_MOUNT_RETRY
            } else {
                API_VOLUME_RETRY
            };
            if let Some(slot) = self.slots.get_mut(name) {
                slot.record.status.state = waiting("ContainerCreating", Some(message));
                slot.restart_at = Some(Instant::now() + retry);
            }
            return;
        }
        // File system work (a fresh writable layer, a copy of the image where overlayfs is
        // missing, cgroups, volumes) can take seconds: off the runtime's worker thread, so
        // that probes, metrics and the other pods go on meanwhile.
        let preparation = Preparation {
            config: self.config.clone(),
            pod: self.pod.clone(),
            pod_dir: self.dir.clone(),
            spec: spec.clone(),
            container_dir: container_dir.clone(),
            pause_pid,
            restart,
        };
        let prepared = {
            // The semaphore is never closed, so a permit always comes.
            let _permit = self.config.preparations.acquire().await;
            // On the blocking pool rather than in place: block_in_place hands the worker's
            // core to another thread at every call, and a burst of calls left a dozen
            // threads behind; at most `preparations` blocking threads work here.
            tokio::task::spawn_blocking(move || preparation.run())
                .await
                .unwrap_or_else(|error| {
                    Err(Prepare::Other(anyhow::anyhow!(
                        "preparing the container failed: {error}"
                    )))
                })
        };
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
                    slot.oom_baseline = self.config.cgroups.oom_kills(&self.pod.uid, name);
                    slot.oom_seen = slot.oom_baseline;
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

    /// Whether the files of every API-backed volume of the pod are at hand; else the reason
    /// and message to wait with (`FailedMount` when they cannot be had as things stand).
    fn api_volumes_ready(&self) -> Result<(), (&'static str, String)> {
        let volumes = &self.pod.pod.spec.volumes;
        for volume in volumes.iter().filter(|v| v.api_volume().is_some()) {
            let Some(contents) = &self.config.volume_contents else {
                return Err((
                    "FailedMount",
                    format!(
                        "MountVolume.SetUp failed for volume {:?} : {} volumes need an API server",
                        volume.name,
                        volume.type_name()
                    ),
                ));
            };
            match contents.files(&self.pod.uid, &volume.name) {
                Some(Ok(_)) => {}
                Some(Err(message)) => {
                    return Err((
                        "FailedMount",
                        format!(
                            "MountVolume.SetUp failed for volume {:?} : {message}",
                            volume.name
                        ),
                    ))
                }
                None => {
                    return Err((
                        "ContainerCreating",
                        format!("waiting for the contents of volume {:?}", volume.name),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Waiting with `reason`, and another attempt after the back-off.
    pub(super) fn wait_and_retry(&mut self, name: &str, reason: &str, message: String) {
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
}

/// How soon a container waiting for its volumes' files looks again.
const API_VOLUME_RETRY: Duration = Duration::from_millis(100);
/// How soon it looks again when they could not be had (a missing Secret, say).
const FAILED_MOUNT_RETRY: Duration = Duration::from_secs(2);

pub(super) enum Prepare {
    Image(ImageError),
    /// The pod asks for what cannot be (`runAsNonRoot` and a root image, an unknown user):
    /// the kubelet's `CreateContainerConfigError`.
    Config(String),
    Other(anyhow::Error),
}

pub(super) fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: reason.to_owned(),
            message,
        }),
        ..Default::default()
    }
}

/// A private copy of the image's root file system, for hosts without overlayfs.
pub(super) fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
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

/// What preparing one container needs, owned, so that it runs on a blocking thread.
struct Preparation {
    config: Arc<RuntimeConfig>,
    pod: DesiredPod,
    pod_dir: PodDir,
    spec: Container,
    container_dir: ContainerDir,
    pause_pid: i32,
    restart: u32,
}

impl Preparation {
    /// Resolves the image and command, prepares the rootfs directories and cgroups.
    fn run(&self) -> Result<ShimSpec, Prepare> {
        let Self {
            config,
            pod,
            pod_dir,
            spec,
            container_dir,
            pause_pid,
            restart,
        } = self;
        let (pause_pid, restart) = (*pause_pid, *restart);
        let image = self
            .config
            .images
            .get(&spec.image)
            .map_err(Prepare::Image)?;
        let effective = spec.effective_security(&pod.pod.spec);
        let pod_ref = format!(
            "{}_{}({})",
            pod.pod.metadata.name,
            pod.pod.metadata.namespace(),
            pod.uid
        );
        let (uid, gid) = crate::security::resolve_user(
            &effective,
            image.config.user.as_deref(),
            &image.rootfs,
            &pod_ref,
            &spec.name,
        )
        .map_err(Prepare::Config)?;
        let argv = crate::command::resolve_argv(spec, &image.config);
        let env = crate::command::resolve_env(spec, &image.config, &pod.pod);
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
        let rootfs = if config.overlay {
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
            .create_container(&pod.uid, &spec.name, &spec.resources)
            .map_err(|e| Prepare::Other(e.into()))?;
        let volumes = &pod.pod.spec.volumes;
        crate::volumes::prepare(
            pod_dir,
            volumes,
            config.volume_contents.as_deref(),
            &pod.uid,
        )
        .map_err(|e| Prepare::Other(e.into()))?;
        let mounts =
            crate::volumes::mounts(pod_dir, volumes, spec).map_err(|e| Prepare::Other(e.into()))?;
        let files = ["hosts", "hostname", "resolv.conf"]
            .into_iter()
            .map(|file| BindFile {
                source: pod_dir.dir.join(file),
                target: format!("/etc/{file}"),
            })
            .collect();
        Ok(ShimSpec {
            pod: super::pod_name(pod),
            container: spec.name.clone(),
            container_dir: dir.clone(),
            argv,
            env,
            working_dir,
            uid,
            gid,
            security: crate::security::Security::for_container(&effective),
            rootfs,
            files,
            mounts,
            pause_pid,
            share_pid_namespace: pod.pod.spec.share_process_namespace,
            cgroup_procs,
            log_file: pod_dir.log_file(&spec.name, restart),
            log_max_size: config.log_max_size,
            log_max_files: config.log_max_files,
        })
    }
}
