//! Pods (`printPod`). READY, STATUS and RESTARTS are what people read a cluster's health by,
//! so they are derived from the container statuses exactly as kubectl users know them: init
//! progress (`Init:0/1`), a container's waiting or termination reason (`CrashLoopBackOff`,
//! `Completed`, `Error`), `Terminating` while deleted, and the time of the last restart.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::columns::{Column, Printer, Row, AGE, NAME};
use super::duration::{age, since, timestamp};
use super::fields::{at, bool_at, count, int_at, items_at, name, or_none, str_at};

pub(super) const PRINTER: Printer = Printer {
    columns: COLUMNS,
    row,
};

const COLUMNS: &[Column] = &[
    NAME,
    Column::new(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    Column::new(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
    ),
    Column::new(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last \
         container in this pod has restarted.",
    ),
    AGE,
    Column::new(
        "IP",
        "string",
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not \
         yet allocated.",
    )
    .wide(),
    Column::new("Node", "string", NODE_NAME_DESCRIPTION).wide(),
    Column::new("Nominated Node", "string", NOMINATED_NODE_DESCRIPTION).wide(),
    Column::new("Readiness Gates", "string", READINESS_GATES_DESCRIPTION).wide(),
];

/// `apiv1.PodSpec{}.SwaggerDoc()["nodeName"]`.
const NODE_NAME_DESCRIPTION: &str = "NodeName indicates in which node this pod is scheduled. If \
    empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. \
    Once this field is set, the kubelet for this node becomes responsible for the lifecycle of \
    this pod. This field should not be used to express a desire for the pod to be scheduled on a \
    specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename";

/// `apiv1.PodStatus{}.SwaggerDoc()["nominatedNodeName"]`.
const NOMINATED_NODE_DESCRIPTION: &str = "nominatedNodeName is set only when this pod preempts \
    other pods on the node, but it cannot be scheduled right away as preemption victims receive \
    their graceful termination periods. This field does not guarantee that the pod will be \
    scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes \
    become available sooner. Scheduler may also decide to give the resources on this node to a \
    higher priority pod that is created after preemption. As a result, this field may be \
    different than PodSpec.nodeName when the pod is scheduled.";

/// `apiv1.PodSpec{}.SwaggerDoc()["readinessGates"]`.
const READINESS_GATES_DESCRIPTION: &str = "If specified, all readiness gates will be evaluated \
    for pod readiness. A pod is ready when all its containers are ready AND all conditions \
    specified in the readiness gates have status equal to \"True\" More info: \
    https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates";

/// `node.NodeUnreachablePodReason`: the node lifecycle controller's reason for the pods of a
/// node it lost.
const NODE_LOST: &str = "NodeLost";

fn row(pod: &Value, now: Timestamp) -> Row {
    let summary = Summary::of(pod);
    let restarts = match summary.last_restart {
        Some(last) if summary.restarts != 0 => {
            format!("{} ({} ago)", summary.restarts, since(Some(last), now))
        }
        _ => summary.restarts.to_string(),
    };
    let cells: Vec<Value> = vec![
        name(pod).into(),
        format!("{}/{}", summary.ready, summary.total).into(),
        summary.reason.into(),
        restarts.into(),
        age(pod, now).into(),
        or_none(pod_ip(pod)).into(),
        or_none(str_at(pod, &["spec", "nodeName"])).into(),
        or_none(str_at(pod, &["status", "nominatedNodeName"])).into(),
        readiness_gates(pod).into(),
    ];
    Row {
        cells,
        conditions: completion_conditions(str_at(pod, &["status", "phase"])),
    }
}

/// READY (`ready`/`total`), STATUS (`reason`) and RESTARTS of one pod.
struct Summary {
    ready: i64,
    total: i64,
    reason: String,
    restarts: i64,
    last_restart: Option<Timestamp>,
}

impl Summary {
    fn of(pod: &Value) -> Summary {
        let phase = str_at(pod, &["status", "phase"]);
        let pod_reason = str_at(pod, &["status", "reason"]);
        let conditions = items_at(pod, &["status", "conditions"]);
        let init_specs = items_at(pod, &["spec", "initContainers"]);

        let mut reason = if pod_reason.is_empty() {
            phase
        } else {
            pod_reason
        }
        .to_string();
        let gated = conditions.iter().any(|c| {
            str_at(c, &["type"]) == "PodScheduled" && str_at(c, &["reason"]) == "SchedulingGated"
        });
        if gated {
            reason = "SchedulingGated".to_string();
        }

        // Sidecars (restartable init containers) run beside the app containers, so they count.
        let sidecars = init_specs.iter().filter(|c| is_restartable(c)).count();
        let mut summary = Summary {
            ready: 0,
            total: count(items_at(pod, &["spec", "containers"]).len())
                .saturating_add(count(sidecars)),
            reason,
            restarts: 0,
            last_restart: None,
        };

        // Init containers run in order: stop at the first that has not completed, which is
        // what the pod is waiting on.
        let mut sidecar_restarts: i64 = 0;
        let mut last_sidecar_restart = None;
        let mut initializing = false;
        for (index, status) in items_at(pod, &["status", "initContainerStatuses"])
            .iter()
            .enumerate()
        {
            let restarts = restart_count(status);
            let terminated_at = last_termination(status);
            summary.restarts = summary.restarts.saturating_add(restarts);
            keep_latest(&mut summary.last_restart, terminated_at);
            let sidecar = is_sidecar(init_specs, str_at(status, &["name"]));
            if sidecar {
                sidecar_restarts = sidecar_restarts.saturating_add(restarts);
                keep_latest(&mut last_sidecar_restart, terminated_at);
            }
            let terminated = state(status, "terminated");
            if terminated.is_some_and(|t| exit_code(t) == 0) {
                continue;
            }
            if sidecar && at(status, &["started"]).and_then(Value::as_bool) == Some(true) {
                if bool_at(status, &["ready"]) {
                    summary.ready += 1;
                }
                continue;
            }
            let waiting = state(status, "waiting")
                .map(|w| str_at(w, &["reason"]))
                .filter(|r| !r.is_empty() && *r != "PodInitializing");
            summary.reason = match (terminated, waiting) {
                (Some(terminated), _) => format!("Init:{}", termination_reason(terminated)),
                (None, Some(waiting)) => format!("Init:{waiting}"),
                (None, None) => format!("Init:{index}/{}", init_specs.len()),
            };
            initializing = true;
            break;
        }

        if !initializing || initialized(conditions) {
            // Restarts of completed init containers no longer matter; the sidecars' still do.
            summary.restarts = sidecar_restarts;
            summary.last_restart = last_sidecar_restart;
            let has_running =
                summary.read_containers(items_at(pod, &["status", "containerStatuses"]));
            if summary.reason == "Completed" && has_running {
                summary.reason = if ready(conditions) {
                    "Running"
                } else {
                    "NotReady"
                }
                .to_string();
            }
        }

        let deleting = at(pod, &["metadata", "deletionTimestamp"]).is_some_and(|t| !t.is_null());
        if deleting && pod_reason == NODE_LOST {
            summary.reason = "Unknown".to_string();
        } else if deleting && phase != "Succeeded" && phase != "Failed" {
            summary.reason = "Terminating".to_string();
        }
        summary
    }

    /// The app containers, last to first, so the first container with something to say has
    /// the last word. Returns whether one of them is running and ready.
    fn read_containers(&mut self, statuses: &[Value]) -> bool {
        let mut has_running = false;
        // Since Kubernetes 1.35 (kubernetes#124766) a failed container keeps the STATUS even
        // when an earlier container completed cleanly: a Job pod whose second container failed
        // reads Error, not Completed.
        let mut has_error = false;
        for status in statuses.iter().rev() {
            self.restarts = self.restarts.saturating_add(restart_count(status));
            keep_latest(&mut self.last_restart, last_termination(status));
            let waiting = state(status, "waiting")
                .map(|w| str_at(w, &["reason"]))
                .filter(|r| !r.is_empty());
            if let Some(waiting) = waiting {
                self.reason = waiting.to_string();
            } else if let Some(terminated) = state(status, "terminated") {
                let failed = exit_code(terminated) != 0;
                if failed || !has_error {
                    self.reason = termination_reason(terminated);
                }
                has_error |= failed;
            } else if bool_at(status, &["ready"]) && state(status, "running").is_some() {
                has_running = true;
                self.ready += 1;
            }
        }
        has_running
    }
}

fn restart_count(status: &Value) -> i64 {
    int_at(status, &["restartCount"]).unwrap_or(0)
}

/// `state.waiting`, `state.running` or `state.terminated` of a container status, when set.
fn state<'a>(status: &'a Value, which: &str) -> Option<&'a Value> {
    at(status, &["state", which]).filter(|state| state.is_object())
}

fn exit_code(terminated: &Value) -> i64 {
    int_at(terminated, &["exitCode"]).unwrap_or(0)
}

/// What a terminated container says about the pod: its reason, else the signal that killed
/// it, else its exit code.
fn termination_reason(terminated: &Value) -> String {
    let reason = str_at(terminated, &["reason"]);
    if !reason.is_empty() {
        return reason.to_string();
    }
    match int_at(terminated, &["signal"]).unwrap_or(0) {
        0 => format!("ExitCode:{}", exit_code(terminated)),
        signal => format!("Signal:{signal}"),
    }
}

/// When the container's previous run ended (`lastState.terminated.finishedAt`), if it has one.
fn last_termination(status: &Value) -> Option<Timestamp> {
    at(status, &["lastState", "terminated"])
        .filter(|terminated| terminated.is_object())
        .and_then(|terminated| timestamp(terminated.get("finishedAt")))
}

fn keep_latest(latest: &mut Option<Timestamp>, candidate: Option<Timestamp>) {
    if let Some(candidate) = candidate {
        if latest.is_none_or(|current| current < candidate) {
            *latest = Some(candidate);
        }
    }
}

/// A sidecar: an init container with `restartPolicy: Always`.
fn is_restartable(container: &Value) -> bool {
    str_at(container, &["restartPolicy"]) == "Always"
}

/// Whether the init container a status reports on is a sidecar. Go looks the name up in a map
/// built from the spec, so a repeated name means its last container, and a status with no
/// container in the spec is not a sidecar.
fn is_sidecar(init_specs: &[Value], container_name: &str) -> bool {
    init_specs
        .iter()
        .rev()
        .find(|spec| str_at(spec, &["name"]) == container_name)
        .is_some_and(is_restartable)
}

/// The pod's `Initialized` condition is true (the first such condition decides).
fn initialized(conditions: &[Value]) -> bool {
    conditions
        .iter()
        .find(|c| str_at(c, &["type"]) == "Initialized")
        .is_some_and(|c| str_at(c, &["status"]) == "True")
}

/// Some `Ready` condition is true.
fn ready(conditions: &[Value]) -> bool {
    conditions
        .iter()
        .any(|c| str_at(c, &["type"]) == "Ready" && str_at(c, &["status"]) == "True")
}

/// The pod's primary IP. The Go printer sees the internal pod, whose conversion from v1 makes
/// `podIP` win over a differing `podIPs[0]` and fills `podIPs` from `podIP` alone.
fn pod_ip(pod: &Value) -> &str {
    let ip = str_at(pod, &["status", "podIP"]);
    if !ip.is_empty() {
        return ip;
    }
    items_at(pod, &["status", "podIPs"])
        .first()
        .map_or("", |first| str_at(first, &["ip"]))
}

/// READINESS GATES: how many of the gates' conditions are true, of how many gates.
fn readiness_gates(pod: &Value) -> String {
    let gates = items_at(pod, &["spec", "readinessGates"]);
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let conditions = items_at(pod, &["status", "conditions"]);
    let passed = gates
        .iter()
        .filter(|gate| {
            let wanted = str_at(gate, &["conditionType"]);
            conditions
                .iter()
                .find(|c| str_at(c, &["type"]) == wanted)
                .is_some_and(|c| str_at(c, &["status"]) == "True")
        })
        .count();
    format!("{passed}/{}", gates.len())
}

/// A pod that has run to the end gets the `Completed` row condition, which clients may use to
/// show it less prominently.
fn completion_conditions(phase: &str) -> Vec<Value> {
    let (reason, message) = match phase {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return Vec::new(),
    };
    vec![json!({
        "type": "Completed",
        "status": "True",
        "reason": reason,
        "message": message,
    })]
}
