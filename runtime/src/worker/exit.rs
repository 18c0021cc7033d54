//! A container's end: its exit recorded as the kubelet reports it (OOMKilled included), and the restart its policy asks for.

use super::*;
use crate::oom;

impl Worker {
    pub(super) fn on_exit(&mut self, name: &str) {
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
    pub(super) fn record_exit(&mut self, name: &str, exit: Option<Exit>, ran_for: Duration) {
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
            let now = crate::oom::monotonic_ns();
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

    /// The kernel's OOM killer acted: if its victim is in one of this pod's containers, note
    /// it (the exit that follows is then `OOMKilled`) and record the event.
    ///
    /// The event's cgroup is the one of the task that *ran* the OOM killer, which under a
    /// global OOM (or a pod-level limit) is any task at all, not the victim's. The victim's
    /// own memory cgroup is what the kernel counts the kill in (`memory.events` `oom_kill`,
    /// raised before the victim is marked), so that counter decides; the victim's pid is
    /// the fallback where no counter is kept.
    pub(super) fn on_oom(&mut self, event: keel_common::OomEvent) {
        let pod = self.pod_name();
        let container_dir = |name: &str| self.dir.container(name);
        let pid_of = |name: &str| {
            state::read_json::<Running>(&container_dir(name).running_json())
                .ok()
                .flatten()
                .map(|r| r.pid)
        };
        let candidates: Vec<oom::OomCandidate> = self
            .slots
            .iter()
            .map(|(name, slot)| oom::OomCandidate {
                name: name.clone(),
                kills_seen: slot.oom_seen,
                kills_now: self.config.cgroups.oom_kills(&self.pod.uid, name),
                pid: pid_of(name),
            })
            .collect();
        let Some(victim) = oom::victim(&candidates, event.pid) else {
            return;
        };
        let Some(slot) = self.slots.get_mut(&victim.name) else {
            return;
        };
        if victim.kills_now.is_some() {
            slot.oom_seen = victim.kills_now;
        }
        let name = victim.name.clone();
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
}

pub(super) fn terminated_state(
    exit: Option<Exit>,
    status: &ContainerStatus,
) -> ContainerStateTerminated {
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

/// Whether a run that ended by SIGKILL was the OOM killer's doing: the kernel said so (the
/// ring buffer), or the cgroup's OOM-kill counter moved during the run (a missed event).
pub(super) fn oom_killed(slot: &Slot, kills_now: Option<u64>) -> bool {
    let counted =
        matches!((slot.oom_baseline, kills_now), (Some(before), Some(now)) if now > before);
    slot.oom.is_some() || counted
}
