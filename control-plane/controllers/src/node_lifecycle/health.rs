//! Node health as kube's `tryUpdateNodeHealth` judges it: from when this controller *observed*
//! a heartbeat change, never from the kubelet's own timestamps.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

pub const READY: &str = "Ready";
/// The conditions set to `Unknown` with Ready (kube's `nodeConditionsToUpdate`… in
/// `tryUpdateNodeHealth`).
pub const CONDITIONS: [&str; 4] = [READY, "MemoryPressure", "DiskPressure", "PIDPressure"];
pub const UNKNOWN: &str = "Unknown";
pub const REASON_UNKNOWN: &str = "NodeStatusUnknown";
pub const MESSAGE_UNKNOWN: &str = "Kubelet stopped posting node status.";
pub const REASON_NEVER_UPDATED: &str = "NodeStatusNeverUpdated";
pub const MESSAGE_NEVER_UPDATED: &str = "Kubelet never posted node status.";

/// What the kubelet last posted, as read from the caches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heartbeats {
    /// The Ready condition's `lastHeartbeatTime` (`None` without a Ready condition).
    pub ready_heartbeat: Option<Timestamp>,
    /// Whether the node has a Ready condition at all.
    pub has_ready: bool,
    /// The node Lease's `spec.renewTime`.
    pub lease_renew: Option<Timestamp>,
}

impl Heartbeats {
    pub fn of(node: &Node, lease_renew: Option<Timestamp>) -> Heartbeats {
        let ready = ready_condition(node);
        Heartbeats {
            ready_heartbeat: ready
                .and_then(|ready| ready.last_heartbeat_time.as_ref())
                .map(|time| time.0),
            has_ready: ready.is_some(),
            lease_renew,
        }
    }
}

/// kube's `nodeHealthData`: the heartbeats last seen and when one was last seen to change.
#[derive(Debug, Clone)]
pub struct NodeHealth {
    /// When a heartbeat was last seen to change (`probeTimestamp`).
    pub probe: Instant,
    seen: Heartbeats,
}

impl NodeHealth {
    /// A node seen for the first time: its grace period starts now.
    pub fn first(seen: Heartbeats, now: Instant) -> NodeHealth {
        NodeHealth { probe: now, seen }
    }

    /// Records what the caches show now: a changed heartbeat, or a lease renewed later than
    /// the one seen, moves the probe time to `now`.
    pub fn observe(&mut self, current: Heartbeats, now: Instant) {
        if current.ready_heartbeat != self.seen.ready_heartbeat
            || current.has_ready != self.seen.has_ready
        {
            self.probe = now;
        }
        // Only a later renewal counts: kube compares `RenewTime.Before`.
        if let Some(renew) = current.lease_renew {
            if self.seen.lease_renew.is_none_or(|seen| seen < renew) {
                self.probe = now;
            }
        }
        let lease_renew = current.lease_renew.or(self.seen.lease_renew);
        self.seen = Heartbeats {
            lease_renew,
            ..current
        };
    }

    /// Whether nothing changed for longer than the grace period (`now` after
    /// `probeTimestamp + gracePeriod`).
    pub fn is_stale(&self, now: Instant, grace: Duration) -> bool {
        now > self.probe + grace
    }

    /// Starts a fresh grace period (leaving full disruption, kube resets every probe).
    pub fn reset(&mut self, now: Instant) {
        self.probe = now;
    }
}

/// The node's Ready condition.
pub fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|condition| condition.type_ == READY)
}

/// The Ready condition's status: `True`, `False` or `Unknown` (also when missing).
pub fn ready_status(node: &Node) -> &str {
    ready_condition(node).map_or(UNKNOWN, |ready| ready.status.as_str())
}

/// The conditions of a node whose kubelet went silent: every one of [`CONDITIONS`] not
/// `Unknown` yet becomes `Unknown` (`NodeStatusUnknown`), a missing one is added
/// (`NodeStatusNeverUpdated`, heartbeat = the node's creation), other conditions are kept.
/// `None` when nothing changes (no write needed).
pub fn unknown_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|status| status.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for type_ in CONDITIONS {
        match conditions
            .iter_mut()
            .find(|condition| condition.type_ == type_)
        {
            Some(condition) => {
                if condition.status != UNKNOWN {
                    condition.status = UNKNOWN.to_string();
                    condition.reason = Some(REASON_UNKNOWN.to_string());
                    condition.message = Some(MESSAGE_UNKNOWN.to_string());
                    condition.last_transition_time = Some(Time(now));
                    changed = true;
                }
            }
            None => {
                conditions.push(NodeCondition {
                    type_: type_.to_string(),
                    status: UNKNOWN.to_string(),
                    reason: Some(REASON_NEVER_UPDATED.to_string()),
                    message: Some(MESSAGE_NEVER_UPDATED.to_string()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}
