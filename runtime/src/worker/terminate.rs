//! Stopping the pod: out of its Services' endpoints first, then SIGTERM, the grace period, SIGKILL, and the sandbox removed.

use super::*;

impl Worker {
    /// Stops every container gracefully, then the sandbox, then removes the pod's state:
    /// SIGTERM to all containers at once, SIGKILL to those still running after the grace
    /// period, as the kubelet does.
    pub(super) async fn terminate(mut self) {
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
        // Unmounting and removing a pod's tree (its writable layers, its volumes) blocks:
        // off the runtime's worker thread.
        tokio::task::block_in_place(|| {
            crate::volumes::release(&self.dir);
            if let Err(error) = std::fs::remove_dir_all(&self.dir.dir) {
                tracing::warn!(pod = %pod, "removing {}: {error}", self.dir.dir.display());
            }
        });
        // Poisoning cannot leave the map half-changed (see `PodViews`): recover, never skip.
        self.config
            .views
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.pod.uid);
        self.config.status_changed.notify_one();
        tracing::info!(pod = %pod, "pod removed");
    }

    /// Waits (briefly) until the proxy has taken this pod's endpoints out, so that SIGTERM
    /// never races a new connection. Kubernetes leaves that race to preStop hooks; a node
    /// that runs the proxy itself can simply wait for it.
    pub(super) async fn wait_for_endpoints(&mut self) {
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
    pub(super) fn adopt_running_only(&mut self) {
        for (name, slot) in &mut self.slots {
            if let Some(handle) = slot.record.shim.and_then(|id| id.open().ok().flatten()) {
                self.exits.push(wait_exit(name.clone(), handle));
            }
        }
    }

    pub(super) fn on_exit_final(&mut self, name: &str) {
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

    pub(super) fn signal_shims(&self, signal: i32) {
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
    pub(super) async fn kill_all_and_reap(&mut self) {
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
}
