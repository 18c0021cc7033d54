//! Probes: one task per probe, their results turned into readiness, and the kills a failed liveness or startup probe asks for.

use super::*;

impl Worker {
    /// Starts the probe workers of a container's current run. Without a startup probe the
    /// container counts as started at once; with one, liveness and readiness wait for it.
    pub(super) fn start_probes(&mut self, name: &str) {
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

    /// A probe's thresholded result changed.
    pub(super) fn on_probe(&mut self, event: ProbeEvent) {
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
    pub(super) fn kill_container(&mut self, name: &str, why: &str) {
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
    pub(super) fn kill_overdue(&mut self) {
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

pub(super) fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// A start offset for a probe worker, spread over the first tenth of its period so that
/// many containers started together are not probed in lockstep. Derived from the names
/// (stable across restarts, no randomness needed).
pub(super) fn probe_jitter(uid: &str, container: &str, kind: ProbeKind, period: u32) -> Duration {
    let seed = format!("{uid}/{container}/{}", kind.name());
    let hash = keel_host::hash::fnv1a(seed.as_bytes(), 0);
    let span_ms = u64::from(period) * 100; // a tenth of the period
    Duration::from_millis(hash % span_ms.max(1))
}
