//! The store's Prometheus metrics, named as etcd names its own (`etcd_server_*`, `etcd_disk_*`,
//! `etcd_mvcc_*`) so that dashboards and alerts written for etcd read keel's store unchanged.
//! Gauges that mirror raft's state are refreshed from openraft's metrics by the member.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::{counter::Counter, gauge::Gauge, histogram::Histogram};
use prometheus_client::registry::Registry;

use crate::grpc_metrics::{GrpcMetrics, HistogramFamily};

/// Handles to every metric; clones share the same series.
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    pub has_leader: Gauge,
    pub is_leader: Gauge,
    pub leader_changes: Counter,
    pub term: Gauge,
    pub committed_index: Gauge,
    pub applied_index: Gauge,
    pub proposals_failed: Counter,
    pub proposals_pending: Gauge,
    pub wal_fsync_duration: Histogram,
    pub wal_batch_size: Histogram,
    pub proposal_duration: Histogram,
    pub snapshot_size_bytes: Histogram,
    pub snapshot_save_duration: Histogram,
    pub keys: Gauge,
    pub watchers: Gauge,
    pub slow_watchers_cancelled: Counter,
    pub revision: Gauge,
    pub compact_revision: Gauge,
    pub db_total_size: Gauge,
    pub db_total_size_in_use: Gauge,
    pub peers: PeerMetrics,
    pub grpc: GrpcMetrics,
}

fn exponential(start: f64, factor: f64, count: u16) -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        start, factor, count,
    ))
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            has_leader: Gauge::default(),
            is_leader: Gauge::default(),
            leader_changes: Counter::default(),
            term: Gauge::default(),
            committed_index: Gauge::default(),
            applied_index: Gauge::default(),
            proposals_failed: Counter::default(),
            proposals_pending: Gauge::default(),
            // etcd's own buckets for the WAL fsync: 1 ms … 8 s; keel adds the sub-millisecond
            // ones a local SSD needs to be seen at all.
            wal_fsync_duration: exponential(0.00005, 2.0, 18),
            wal_batch_size: exponential(1.0, 2.0, 12),
            proposal_duration: exponential(0.0001, 2.0, 16),
            snapshot_size_bytes: exponential(1024.0, 4.0, 12),
            snapshot_save_duration: exponential(0.001, 2.0, 14),
            keys: Gauge::default(),
            watchers: Gauge::default(),
            slow_watchers_cancelled: Counter::default(),
            revision: Gauge::default(),
            compact_revision: Gauge::default(),
            db_total_size: Gauge::default(),
            db_total_size_in_use: Gauge::default(),
            peers: PeerMetrics::default(),
            grpc: GrpcMetrics::default(),
        }
    }
}

impl StoreMetrics {
    /// Registers every series (counters get their `_total` suffix from the encoder).
    pub fn register(&self, registry: &mut Registry) {
        let m = self.clone();
        registry.register(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not",
            m.has_leader,
        );
        registry.register(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise",
            m.is_leader,
        );
        registry.register(
            "etcd_server_leader_changes_seen",
            "The number of leader changes seen",
            m.leader_changes,
        );
        registry.register("etcd_server_term", "The member's current raft term", m.term);
        registry.register(
            "etcd_server_proposals_committed",
            "The index of the last raft entry known committed",
            m.committed_index,
        );
        registry.register(
            "etcd_server_proposals_applied",
            "The index of the last raft entry applied to the store",
            m.applied_index,
        );
        registry.register(
            "etcd_server_proposals_failed",
            "The number of failed proposals seen",
            m.proposals_failed,
        );
        registry.register(
            "etcd_server_proposals_pending",
            "The number of proposals waiting to commit",
            m.proposals_pending,
        );
        registry.register(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distribution of raft log syncs (one sync per group commit)",
            m.wal_fsync_duration,
        );
        registry.register(
            "etcd_disk_wal_fsync_batch_entries",
            "Appends made durable by one raft log sync (group commit)",
            m.wal_batch_size,
        );
        registry.register(
            "etcd_server_proposal_duration_seconds",
            "The latency distribution of a proposal from submission to applied",
            m.proposal_duration,
        );
        registry.register(
            "etcd_server_snapshot_size_bytes",
            "The size distribution of built or received state machine snapshots",
            m.snapshot_size_bytes,
        );
        registry.register(
            "etcd_server_snapshot_save_duration_seconds",
            "The latency distribution of writing a snapshot durably",
            m.snapshot_save_duration,
        );
        registry.register("etcd_mvcc_keys", "Live keys in the store", m.keys);
        registry.register(
            "etcd_mvcc_watchers",
            "Watchers registered on this member",
            m.watchers,
        );
        registry.register(
            "etcd_mvcc_slow_watchers_cancelled",
            "Watchers cancelled because their client did not keep up",
            m.slow_watchers_cancelled,
        );
        registry.register(
            "etcd_mvcc_current_revision",
            "The store revision (the last applied raft index)",
            m.revision,
        );
        registry.register(
            "etcd_mvcc_compact_revision",
            "The revision history was last compacted at",
            m.compact_revision,
        );
        // etcd's figures for its bolt file: what keel's store occupies (its raft log on
        // disk, and the keyspace in memory) and the part of it that is live data.
        registry.register(
            "etcd_mvcc_db_total_size_in_bytes",
            "Bytes the store occupies: the raft log on disk and the keyspace with its history",
            m.db_total_size,
        );
        registry.register(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Bytes of the keyspace and its history (approximate)",
            m.db_total_size_in_use,
        );
        m.peers.register(registry);
        m.grpc.register(registry);
    }
}

/// Which peer a series is about: its member ID in hex, as etcd's `To` label names it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
#[allow(non_snake_case)] // the label etcd's dashboards and alerts select on is `To`
pub struct PeerLabels {
    To: String,
}

/// etcd's peer network series, which its mixin alerts on (`etcdMembersDown` from send
/// failures, `etcdMemberCommunicationSlow` from round trips); clones share them. The round
/// trips are the probes' (each member probes every peer each second, as etcd's prober
/// does): raft's own messages wait for the peer's disk, and openraft drops a heartbeat that
/// outlives its interval before its time could be taken.
#[derive(Clone, Debug)]
pub struct PeerMetrics {
    round_trip: HistogramFamily<PeerLabels>,
    sent_failures: Family<PeerLabels, Counter>,
}

/// etcd's buckets: 0.1 ms to 3.3 s.
fn round_trip_histogram() -> Histogram {
    exponential(0.0001, 2.0, 16)
}

impl Default for PeerMetrics {
    fn default() -> Self {
        Self {
            round_trip: Family::new_with_constructor(round_trip_histogram),
            sent_failures: Family::default(),
        }
    }
}

impl PeerMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "etcd_network_peer_round_trip_time_seconds",
            "Round-trip time of probes to a peer (answered at once: the network and gRPC)",
            self.round_trip.clone(),
        );
        registry.register(
            "etcd_network_peer_sent_failures",
            "Requests to a peer that failed: not delivered, or answered with what does not decode; probes also when not answered in time",
            self.sent_failures.clone(),
        );
    }

    /// The series of the peer `to`, created at zero (a `rate()` then sees the first failure
    /// too); the handles share them.
    pub fn of(&self, to: u64) -> PeerSeries {
        let labels = PeerLabels {
            To: format!("{to:x}"),
        };
        PeerSeries {
            round_trip: self.round_trip.get_or_create(&labels).clone(),
            sent_failures: self.sent_failures.get_or_create(&labels).clone(),
        }
    }
}

/// One peer's series, held by its client so that counting allocates nothing.
#[derive(Clone, Debug)]
pub struct PeerSeries {
    pub round_trip: Histogram,
    pub sent_failures: Counter,
}

/// One request counted in a gauge such as `etcd_server_proposals_pending` for as long as it is
/// waited for: a caller that gives up (a client cancelling, a forwarding stream that broke)
/// drops the wait half way, and the count must still come down.
pub struct PendingGuard<'g>(&'g Gauge);

impl<'g> PendingGuard<'g> {
    pub fn count(gauge: &'g Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_proposal_given_up_half_way_is_no_longer_counted_pending() {
        let gauge = Gauge::default();
        let waiting = async {
            let _pending = PendingGuard::count(&gauge);
            std::future::pending::<()>().await;
        };
        // The caller gives up while the proposal waits.
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(10), waiting).await;
        assert!(gave_up.is_err());
        assert_eq!(gauge.get(), 0, "a dropped wait left the count up");
        let finished = PendingGuard::count(&gauge);
        assert_eq!(gauge.get(), 1);
        drop(finished);
        assert_eq!(gauge.get(), 0);
    }
}
