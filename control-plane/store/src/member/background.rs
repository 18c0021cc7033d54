//! What a member runs beside raft: metrics mirrored from raft's state, the leader's lease
//! clock, periodic compaction, publishing its own client URLs, and probing its peers (which
//! tells a removed member so).

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;

use super::Member;
use crate::network::Probed;
use crate::types::{Command, MemberAttributes};

/// Mirrors raft's server state (leader, role, term) into the etcd-named gauges and counts
/// leader changes. It watches openraft's server metrics, which change with an election or a
/// membership change: its full metrics change with every commit, and watching them woke this
/// task and cloned them (replication maps included) once per commit on the leader. The
/// committed index is read when `/metrics` is scraped ([`Member::refresh_metrics`]).
pub(super) async fn mirror_metrics(member: Arc<Member>) {
    let mut rx = member.raft.server_metrics();
    let mut last_leader = None;
    loop {
        {
            let m = rx.borrow_watched();
            let metrics = &member.metrics;
            metrics
                .has_leader
                .set(i64::from(m.current_leader.is_some()));
            metrics
                .is_leader
                .set(i64::from(m.state == ServerState::Leader));
            metrics.term.set(m.vote.leader_id().term as i64);
            if m.current_leader.is_some() && m.current_leader != last_leader {
                metrics.leader_changes.inc();
            }
            last_leader = m.current_leader;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// The leader's lease clock: revokes (through raft) every lease whose deadline passed.
pub(super) async fn lease_clock(member: Arc<Member>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        if !member.is_leader() {
            member
                .lessor
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            continue;
        }
        let leases: Vec<(i64, i64)> = member
            .sm
            .lock()
            .state
            .kv
            .leases()
            .iter()
            .map(|(id, l)| (*id, l.ttl))
            .collect();
        let now = Instant::now();
        let expired: Vec<i64> = {
            let mut clock = member.lessor.lock().unwrap_or_else(|p| p.into_inner());
            clock.retain(|id, _| leases.iter().any(|(l, _)| l == id));
            let mut expired = Vec::new();
            for (id, ttl) in &leases {
                let deadline = *clock
                    .entry(*id)
                    .or_insert_with(|| now + Duration::from_secs(*ttl as u64));
                if deadline <= now {
                    expired.push(*id);
                }
            }
            expired
        };
        for id in expired {
            if let Err(e) = member.propose(Command::LeaseRevoke { id }).await {
                tracing::warn!(lease = %format!("{id:016x}"), error = %e, "revoking an expired lease failed; retrying");
            }
        }
    }
}

/// Compacts history older than the retention period or beyond the revision budget.
pub(super) async fn compactor(member: Arc<Member>) {
    let retention = member.config.compaction_retention;
    let period = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut samples: std::collections::VecDeque<(Instant, i64)> = Default::default();
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let (revision, compacted) = {
            let inner = member.sm.lock();
            (inner.state.kv.revision(), inner.state.kv.compact_revision())
        };
        let now = Instant::now();
        samples.push_back((now, revision));
        // The newest sample at least `retention` old: everything below it is old enough.
        let mut by_age = 0;
        while let Some((at, rev)) = samples.front().copied() {
            if now.duration_since(at) < retention {
                break;
            }
            by_age = rev;
            samples.pop_front();
        }
        if by_age > 0 {
            samples.push_front((now - retention, by_age));
        }
        let by_count = revision - member.config.compaction_revisions;
        let target = by_age.max(by_count);
        if member.is_leader() && target > compacted {
            match member.propose(Command::Compact { revision: target }).await {
                Ok(_) => tracing::info!(revision = target, "compacted history"),
                Err(e) => tracing::warn!(revision = target, error = %e, "compaction failed"),
            }
        }
    }
}

/// Publishes this member's name and client URLs through raft (etcd's `publish`), retrying
/// until a leader takes it.
pub(super) async fn publish(member: Arc<Member>) {
    let attributes = MemberAttributes {
        name: member.config.name.clone(),
        client_urls: member.config.client_urls.clone(),
    };
    loop {
        let known = member.sm.lock().state.members.get(&member.id).cloned();
        if known.as_ref() == Some(&attributes) {
            return;
        }
        let cmd = Command::PublishMember {
            id: member.id,
            attributes: attributes.clone(),
        };
        match member.propose(cmd).await {
            Ok(_) => return,
            Err(e) => tracing::debug!(error = %e, "publishing member attributes; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How often every member probes every other one, and how long a probe may take before it
/// counts as failed. etcd's prober asks every few seconds; once a second gives a scrape every
/// 15 s enough round trips for a quantile, and costs two tiny calls a second per peer.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// etcd's prober: each member asks each other one for an answer that involves no raft (the
/// peer service's `Probe`), and the round trips are `etcd_network_peer_round_trip_time_seconds`
/// by peer; a probe not answered within [`PROBE_INTERVAL`] counts in
/// `etcd_network_peer_sent_failures_total`. The peers probed together, so a dead one does not
/// hold up the others' round trips.
///
/// A peer that stops answering, or answers again, is logged once, as etcd logs "peer became
/// inactive/active": openraft warns at every failed heartbeat (ten a second per dead peer),
/// which the binary's default filter leaves out.
///
/// The probes also tell a removed member that it was removed ([`super::removal`]).
pub(super) async fn probe_peers(member: Arc<Member>) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut answering = std::collections::HashMap::new();
    // Peers that answered with another cluster's id, each logged once.
    let mut foreign = std::collections::HashSet::new();
    loop {
        tick.tick().await;
        let from = member.probe_from();
        let (others, leader): (Vec<_>, _) = {
            let metrics = member.raft.metrics();
            let metrics = metrics.borrow_watched();
            let others = metrics
                .membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != member.id)
                .map(|(id, node)| (*id, node.clone()))
                .collect();
            (others, metrics.current_leader)
        };
        let peers: Vec<_> = others.iter().map(|(_, node)| member.peer(node)).collect();
        let probed =
            futures::future::join_all(peers.iter().map(|peer| peer.probe(from, PROBE_INTERVAL)))
                .await;
        answering.retain(|url: &String, _| others.iter().any(|(_, node)| node.peer_url == *url));
        if leader == Some(member.id) {
            member.settle_cluster_id_as_leader(&probed);
        }
        for ((id, node), probed) in others.iter().zip(probed) {
            match probed {
                Probed::Removed => member.removed_from_cluster(format!(
                    "its peer {} answered that it was removed",
                    node.peer_url
                )),
                // The cluster id comes from the leader only: a member's membership may list
                // URLs from before it joined, which another cluster may serve now.
                Probed::Answered { cluster_id } if leader == Some(*id) => {
                    if let Err(own) = member.learn_cluster_id(cluster_id) {
                        if foreign.insert(node.peer_url.clone()) {
                            tracing::warn!(
                                peer = %node.peer_url,
                                cluster_id = %format!("{own:016x}"),
                                peer_cluster_id = %format!("{cluster_id:016x}"),
                                "a peer answered with another cluster's id"
                            );
                        }
                    }
                }
                Probed::Answered { .. } | Probed::Unanswered => {}
            }
            let answered = probed != Probed::Unanswered;
            match (answering.insert(node.peer_url.clone(), answered), answered) {
                (None | Some(true), false) => tracing::warn!(
                    peer = %node.peer_url,
                    name = %node.name,
                    "peer became inactive: no answer to a probe within {PROBE_INTERVAL:?}"
                ),
                (Some(false), true) => {
                    tracing::info!(peer = %node.peer_url, name = %node.name, "peer became active")
                }
                _ => {}
            }
        }
    }
}
