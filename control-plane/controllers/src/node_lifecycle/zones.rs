//! Zones, their disruption states and the rate at which their nodes are tainted NoExecute
//! (kube's `ComputeZoneState`, `setLimiterInZone`, `RateLimitedTimedQueue`).

use std::collections::{HashSet, VecDeque};

use k8s_openapi::api::core::v1::Node;
use tokio::time::Instant;

/// The label naming a node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// A node's zone: its zone label, "" without one.
pub fn zone_of(node: &Node) -> String {
    node.metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(ZONE_LABEL))
        .cloned()
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    /// Seen for the first time, not yet judged.
    Initial,
    Normal,
    FullDisruption,
    PartialDisruption,
}

/// kube's `ComputeZoneState` over the Ready statuses of a zone's nodes (`None`: no Ready
/// condition): the number not Ready, and the state — full disruption when none is Ready,
/// partial when more than two are not and they are at least `threshold` of the zone.
pub fn compute_zone_state(ready: &[Option<&str>], threshold: f64) -> (usize, ZoneState) {
    let ready_nodes = ready
        .iter()
        .filter(|status| **status == Some("True"))
        .count();
    let not_ready = ready.len() - ready_nodes;
    let state = if ready_nodes == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && ratio(not_ready, ready.len()) >= threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    };
    (not_ready, state)
}

fn ratio(part: usize, whole: usize) -> f64 {
    // Node counts are far below 2^52: exact as floats.
    let part = u32::try_from(part).map_or(f64::MAX, f64::from);
    let whole = u32::try_from(whole).map_or(f64::MAX, f64::from);
    part / whole
}

/// Tainting rates (`--node-eviction-rate`, …).
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    pub eviction_rate: f64,
    pub secondary_eviction_rate: f64,
    pub large_cluster_size_threshold: usize,
}

impl Rates {
    /// The tainting QPS of a zone of `zone_size` nodes in `state` (`setLimiterInZone`):
    /// partially disrupted zones use the secondary rate, or stop in small clusters
    /// (`ReducedQPSFunc`); a fully disrupted zone (while others are not) keeps the normal rate
    /// (`HealthyQPSFunc`).
    pub fn qps(&self, state: ZoneState, zone_size: usize) -> f64 {
        match state {
            ZoneState::PartialDisruption if zone_size > self.large_cluster_size_threshold => {
                self.secondary_eviction_rate
            }
            ZoneState::PartialDisruption => 0.0,
            ZoneState::Initial | ZoneState::Normal | ZoneState::FullDisruption => {
                self.eviction_rate
            }
        }
    }
}

/// client-go's `tokenBucketRateLimiter` with burst 1 (`EvictionRateLimiterBurst`), used with
/// `TryAccept`; a QPS ≤ 0 never accepts (`NewFakeNeverRateLimiter`).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(qps: f64, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            qps,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    pub fn qps(&self) -> f64 {
        self.qps
    }

    /// Takes a token if one is there.
    pub fn try_accept(&mut self, now: Instant) -> bool {
        if self.qps <= 0.0 {
            return false;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.qps).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// `SwapLimiter`: a new rate with a full bucket, unless the rate is the same.
    pub fn set_qps(&mut self, qps: f64, now: Instant) {
        if (self.qps - qps).abs() > f64::EPSILON {
            *self = TokenBucket::new(qps, 1, now);
        }
    }
}

/// A zone's queue of nodes to taint (kube's `RateLimitedTimedQueue`, reduced to what the
/// tainting pass needs): node names in arrival order, each once, each attempt taking a token.
#[derive(Debug)]
pub struct TaintQueue {
    pub limiter: TokenBucket,
    queue: VecDeque<String>,
    members: HashSet<String>,
}

impl TaintQueue {
    pub fn new(qps: f64, now: Instant) -> TaintQueue {
        TaintQueue {
            limiter: TokenBucket::new(qps, 1, now),
            queue: VecDeque::new(),
            members: HashSet::new(),
        }
    }

    /// Queues `node` unless it is queued (`Add`); returns whether it was added.
    pub fn add(&mut self, node: &str) -> bool {
        if !self.members.insert(node.to_string()) {
            return false;
        }
        self.queue.push_back(node.to_string());
        true
    }

    /// Drops `node` (`Remove`, when the node is Ready again or gone).
    pub fn remove(&mut self, node: &str) {
        if self.members.remove(node) {
            self.queue.retain(|queued| queued != node);
        }
    }

    /// Keeps only the nodes `keep` accepts (gone nodes leave the queue).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.members.retain(|node| keep(node));
        let members = &self.members;
        self.queue.retain(|node| members.contains(node));
    }

    pub fn contains(&self, node: &str) -> bool {
        self.members.contains(node)
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The nodes the limiter lets through now, in order, taken off the queue (`Try`: it
    /// stops at the first refused token). A node whose taint fails goes back with
    /// [`TaintQueue::add`].
    pub fn take_allowed(&mut self, now: Instant) -> Vec<String> {
        let mut allowed = Vec::new();
        while !self.queue.is_empty() && self.limiter.try_accept(now) {
            if let Some(node) = self.queue.pop_front() {
                self.members.remove(&node);
                allowed.push(node);
            }
        }
        allowed
    }
}
