//! The pod lifecycle as pure functions, with no kernel and no clock of their own: restart
//! decisions, back-off, the pod's phase and conditions. The pod worker feeds them what it
//! observed; tests feed them sequences.

use std::time::Duration;

use keel_api::{
    pod::{ContainerStateTerminated, PodCondition},
    ContainerStatus, PodPhase, RestartPolicy,
};

/// Restart back-off: the kubelet's, shrunk by tests with the daemon's `--restart-backoff*`.
pub use keel_host::backoff::BackoffPolicy;

/// Whether a container that exited with `exit_code` is started again.
pub fn should_restart(policy: RestartPolicy, exit_code: i32) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => exit_code != 0,
        RestartPolicy::Never => false,
    }
}

/// The reason the kubelet gives a terminated container.
pub fn termination_reason(exit_code: i32, start_error: bool) -> &'static str {
    if start_error {
        "StartError"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// The pod's phase from its containers, as the kubelet computes it: Pending until every
/// container has run, Running while any runs or will run again, Succeeded or Failed once
/// all have terminated for good.
pub fn pod_phase(policy: RestartPolicy, containers: &[ContainerStatus]) -> PodPhase {
    let never_ran = containers.iter().any(|c| {
        c.state.waiting.is_some() && c.restart_count == 0 && c.last_state.terminated.is_none()
    });
    if never_ran || containers.is_empty() {
        return PodPhase::Pending;
    }
    let terminated: Vec<&ContainerStateTerminated> = containers
        .iter()
        .filter_map(|c| c.state.terminated.as_ref())
        .collect();
    if terminated.len() < containers.len() {
        return PodPhase::Running; // running, or waiting to be restarted
    }
    let all_succeeded = terminated.iter().all(|t| t.exit_code == 0);
    match (policy, all_succeeded) {
        (_, true) if policy != RestartPolicy::Always => PodPhase::Succeeded,
        (RestartPolicy::Never, false) => PodPhase::Failed,
        _ => PodPhase::Running,
    }
}

/// The pod's conditions. `ready` for a container is decided by the caller (running, and
/// its readiness probe where it has one).
pub fn pod_conditions(containers: &[ContainerStatus], now: &str) -> Vec<PodCondition> {
    let all_ready = !containers.is_empty() && containers.iter().all(|c| c.ready);
    let condition = |kind: &str, status: bool| PodCondition {
        condition_type: kind.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        last_transition_time: Some(now.to_owned()),
    };
    vec![
        condition("PodScheduled", true),
        condition("Initialized", true),
        condition("ContainersReady", all_ready),
        condition("Ready", all_ready),
    ]
}

/// `back-off 20s restarting failed container=web pod=default/web`, the kubelet's message.
pub fn backoff_message(delay: Duration, container: &str, pod: &str) -> String {
    format!(
        "back-off {} restarting failed container={container} pod={pod}",
        humantime::format_duration(delay)
    )
}

#[cfg(test)]
mod tests {
    use keel_api::pod::{ContainerState, ContainerStateRunning, ContainerStateWaiting};

    use super::*;

    fn waiting(restarts: u32) -> ContainerStatus {
        ContainerStatus {
            state: ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: "ContainerCreating".into(),
                    message: None,
                }),
                ..Default::default()
            },
            restart_count: restarts,
            ..Default::default()
        }
    }

    fn running() -> ContainerStatus {
        ContainerStatus {
            state: ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..Default::default()
            },
            ready: true,
            ..Default::default()
        }
    }

    fn exited(code: i32) -> ContainerStatus {
        ContainerStatus {
            state: ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn restart_policies() {
        assert!(should_restart(RestartPolicy::Always, 0));
        assert!(should_restart(RestartPolicy::OnFailure, 1));
        assert!(!should_restart(RestartPolicy::OnFailure, 0));
        assert!(!should_restart(RestartPolicy::Never, 137));
    }

    #[test]
    fn phases_follow_the_kubelet() {
        use PodPhase::*;
        use RestartPolicy::*;
        assert_eq!(pod_phase(Always, &[waiting(0), running()]), Pending);
        assert_eq!(pod_phase(Always, &[running(), running()]), Running);
        // Waiting to be restarted after a crash is still Running.
        assert_eq!(pod_phase(Always, &[waiting(3), running()]), Running);
        assert_eq!(pod_phase(Never, &[exited(0), exited(0)]), Succeeded);
        assert_eq!(pod_phase(Never, &[exited(0), exited(1)]), Failed);
        assert_eq!(pod_phase(OnFailure, &[exited(0)]), Succeeded);
        assert_eq!(pod_phase(Never, &[exited(0), running()]), Running);
        assert_eq!(pod_phase(Always, &[]), Pending);
    }

    #[test]
    fn conditions_need_every_container_ready() {
        let ready = |c: &[ContainerStatus]| {
            pod_conditions(c, "t")
                .into_iter()
                .find(|c| c.condition_type == "Ready")
                .map(|c| c.status)
        };
        assert_eq!(ready(&[running(), running()]).as_deref(), Some("True"));
        assert_eq!(ready(&[running(), waiting(1)]).as_deref(), Some("False"));
    }

    #[test]
    fn messages_and_reasons() {
        assert_eq!(
            backoff_message(Duration::from_secs(20), "web", "default/web"),
            "back-off 20s restarting failed container=web pod=default/web"
        );
        assert_eq!(termination_reason(0, false), "Completed");
        assert_eq!(termination_reason(137, false), "Error");
        assert_eq!(termination_reason(128, true), "StartError");
    }
}
