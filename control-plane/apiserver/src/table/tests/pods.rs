//! Pod rows: STATUS, READY and RESTARTS as `kubectl get pods` shows them, and the wide cells.

use serde_json::{json, Value};

use super::{ago, cells, column_names, running_pod, table_of, IncludeObject};

/// A pod of one `app` container, created an hour ago, with the given status.
fn pod(status: Value) -> Value {
    pod_with(
        json!({"containers": [{"name": "app", "image": "nginx"}]}),
        status,
    )
}

fn pod_with(spec: Value, status: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(3600)},
        "spec": spec,
        "status": status,
    })
}

/// READY, STATUS and RESTARTS of a pod.
fn summary(pod: Value) -> (String, String, String) {
    let cells = cells("pods", pod);
    let text = |index: usize| cells[index].as_str().unwrap_or_default().to_string();
    (text(1), text(2), text(3))
}

fn status(pod: Value) -> String {
    summary(pod).1
}

#[test]
fn columns_are_kubectls() {
    assert_eq!(
        column_names("pods"),
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP",
            "Node",
            "Nominated Node",
            "Readiness Gates"
        ]
    );
}

#[test]
fn running() {
    assert_eq!(
        cells("pods", running_pod()),
        json!([
            "web",
            "1/1",
            "Running",
            "0",
            "60m",
            "10.244.0.5",
            "node-1",
            "<none>",
            "<none>"
        ])
    );
}

#[test]
fn pending_before_scheduling() {
    assert_eq!(
        cells("pods", pod(json!({"phase": "Pending"}))),
        json!(["web", "0/1", "Pending", "0", "60m", "<none>", "<none>", "<none>", "<none>"])
    );
}

#[test]
fn container_creating() {
    let pod = pod(json!({
        "phase": "Pending",
        "containerStatuses": [{
            "name": "app",
            "ready": false,
            "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}},
        }],
    }));
    assert_eq!(
        summary(pod),
        ("0/1".into(), "ContainerCreating".into(), "0".into())
    );
}

#[test]
fn crash_loop_back_off_shows_when_it_last_restarted() {
    let pod = pod(json!({
        "phase": "Running",
        "containerStatuses": [{
            "name": "app",
            "ready": false,
            "restartCount": 5,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2m40s"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(300)}},
        }],
    }));
    assert_eq!(
        summary(pod),
        ("0/1".into(), "CrashLoopBackOff".into(), "5 (5m ago)".into())
    );
}

#[test]
fn restarts_without_a_termination_time_are_a_bare_count() {
    let pod = pod(json!({
        "phase": "Running",
        "containerStatuses": [{"name": "app", "ready": true, "restartCount": 2, "state": {"running": {}}}],
    }));
    assert_eq!(summary(pod), ("1/1".into(), "Running".into(), "2".into()));
}

fn with_init(init_statuses: Value, conditions: Value) -> Value {
    pod_with(
        json!({
            "initContainers": [{"name": "migrate", "image": "busybox"}, {"name": "seed", "image": "busybox"}],
            "containers": [{"name": "app", "image": "nginx"}],
        }),
        json!({
            "phase": "Pending",
            "conditions": conditions,
            "initContainerStatuses": init_statuses,
            "containerStatuses": [{
                "name": "app",
                "ready": false,
                "restartCount": 0,
                "state": {"waiting": {"reason": "PodInitializing"}},
            }],
        }),
    )
}

#[test]
fn init_progress() {
    let running_first = with_init(
        json!([
            {"name": "migrate", "ready": false, "restartCount": 0, "state": {"running": {}}},
            {"name": "seed", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}},
        ]),
        json!([]),
    );
    assert_eq!(
        summary(running_first),
        ("0/1".into(), "Init:0/2".into(), "0".into())
    );

    let running_second = with_init(
        json!([
            {"name": "migrate", "ready": true, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "seed", "ready": false, "restartCount": 0, "state": {"running": {}}},
        ]),
        json!([]),
    );
    assert_eq!(status(running_second), "Init:1/2");
}

#[test]
fn init_zero_of_one() {
    let pod = pod_with(
        json!({
            "initContainers": [{"name": "migrate", "image": "busybox"}],
            "containers": [{"name": "app", "image": "nginx"}],
        }),
        json!({
            "phase": "Pending",
            "initContainerStatuses": [{"name": "migrate", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}],
        }),
    );
    assert_eq!(summary(pod), ("0/1".into(), "Init:0/1".into(), "0".into()));
}

#[test]
fn failing_init_containers() {
    let crash_looping = with_init(
        json!([{
            "name": "migrate",
            "ready": false,
            "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(20)}},
        }]),
        json!([]),
    );
    assert_eq!(
        summary(crash_looping),
        (
            "0/1".into(),
            "Init:CrashLoopBackOff".into(),
            "3 (20s ago)".into()
        )
    );

    let terminated = |state: Value| {
        status(with_init(
            json!([{"name": "migrate", "restartCount": 0, "state": {"terminated": state}}]),
            json!([]),
        ))
    };
    assert_eq!(
        terminated(json!({"exitCode": 1, "reason": "Error"})),
        "Init:Error"
    );
    assert_eq!(terminated(json!({"exitCode": 2})), "Init:ExitCode:2");
    assert_eq!(
        terminated(json!({"exitCode": 137, "signal": 9})),
        "Init:Signal:9"
    );
}

#[test]
fn completed() {
    let pod = pod(json!({
        "phase": "Succeeded",
        "containerStatuses": [{
            "name": "app",
            "ready": false,
            "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": ago(60)}},
        }],
    }));
    let table = table_of("pods", &[pod], IncludeObject::None);
    assert_eq!(table["rows"][0]["cells"][1], "0/1");
    assert_eq!(table["rows"][0]["cells"][2], "Completed");
    assert_eq!(
        table["rows"][0]["conditions"],
        json!([{
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        }])
    );
}

#[test]
fn terminating() {
    let mut deleted = running_pod();
    deleted["metadata"]["deletionTimestamp"] = json!(ago(10));
    assert_eq!(status(deleted), "Terminating");

    // A pod that already finished is not "terminating" while its object is deleted.
    let mut finished = pod(json!({"phase": "Succeeded"}));
    finished["metadata"]["deletionTimestamp"] = json!(ago(10));
    assert_eq!(status(finished), "Succeeded");
}

#[test]
fn deleted_on_a_lost_node_is_unknown() {
    let mut lost = running_pod();
    lost["metadata"]["deletionTimestamp"] = json!(ago(10));
    lost["status"]["reason"] = json!("NodeLost");
    assert_eq!(status(lost), "Unknown");
}

#[test]
fn evicted() {
    let evicted = pod(json!({
        "phase": "Failed",
        "reason": "Evicted",
        "message": "The node was low on resource: memory.",
    }));
    let table = table_of("pods", &[evicted], IncludeObject::None);
    assert_eq!(table["rows"][0]["cells"][2], "Evicted");
    assert_eq!(
        table["rows"][0]["conditions"],
        json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}])
    );
}

#[test]
fn scheduling_gated() {
    let gated = pod(json!({
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
    }));
    assert_eq!(status(gated), "SchedulingGated");
}

fn two_containers(statuses: Value, conditions: Value) -> Value {
    pod_with(
        json!({"containers": [{"name": "a", "image": "busybox"}, {"name": "z", "image": "busybox"}]}),
        json!({"phase": "Running", "conditions": conditions, "containerStatuses": statuses}),
    )
}

#[test]
fn a_completed_container_beside_a_running_one() {
    let statuses = json!([
        {"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
        {"name": "z", "ready": true, "restartCount": 0, "state": {"running": {}}},
    ]);
    assert_eq!(
        summary(two_containers(statuses.clone(), json!([]))),
        ("1/2".into(), "NotReady".into(), "0".into())
    );
    let ready = json!([{"type": "Ready", "status": "True"}]);
    assert_eq!(status(two_containers(statuses, ready)), "Running");
}

#[test]
fn a_failed_container_is_not_hidden_by_a_completed_one() {
    let statuses = json!([
        {"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
        {"name": "z", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}},
    ]);
    assert_eq!(status(two_containers(statuses, json!([]))), "Error");
}

#[test]
fn terminated_without_a_reason_shows_the_signal_or_exit_code() {
    let terminated = |state: Value| {
        status(pod(json!({
            "phase": "Failed",
            "containerStatuses": [{"name": "app", "restartCount": 0, "state": {"terminated": state}}],
        })))
    };
    assert_eq!(terminated(json!({"exitCode": 137})), "ExitCode:137");
    assert_eq!(
        terminated(json!({"exitCode": 137, "signal": 9})),
        "Signal:9"
    );
}

#[test]
fn sidecars_count_toward_ready_and_restarts() {
    let pod = pod_with(
        json!({
            "initContainers": [{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}],
            "containers": [{"name": "app", "image": "nginx"}],
        }),
        json!({
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [{
                "name": "proxy",
                "ready": true,
                "started": true,
                "restartCount": 2,
                "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(600)}},
            }],
            "containerStatuses": [{
                "name": "app",
                "ready": true,
                "restartCount": 1,
                "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(120)}},
            }],
        }),
    );
    assert_eq!(
        summary(pod),
        ("2/2".into(), "Running".into(), "3 (2m ago)".into())
    );
}

#[test]
fn wide_cells() {
    let pod = pod_with(
        json!({
            "containers": [{"name": "app", "image": "nginx"}],
            "readinessGates": [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}],
        }),
        json!({
            "phase": "Pending",
            "podIPs": [{"ip": "fd00::5"}],
            "nominatedNodeName": "node-2",
            "conditions": [{"type": "example.com/lb", "status": "True"}, {"type": "example.com/dns", "status": "False"}],
        }),
    );
    let cells = cells("pods", pod);
    assert_eq!(cells[5], "fd00::5");
    assert_eq!(cells[6], "<none>");
    assert_eq!(cells[7], "node-2");
    assert_eq!(cells[8], "1/2");
}
