//! Leases on the leader's clock: a keep-alive restarts a lease's deadline, time-to-live reads
//! it. The deadlines live only on the leader (the lease clock revokes through raft what runs
//! out); a follower asks the leader.

use std::time::{Duration, Instant};

use super::{Member, RequestError};
use crate::network::ForwardError;

impl Member {
    /// The leader's keep-alive: restart the lease's clock; 0 when it does not exist (the
    /// answer etcd gives, which makes clients stop).
    pub fn keep_alive_as_leader(&self, id: i64) -> Result<i64, ForwardError> {
        if !self.is_leader() {
            return Err(ForwardError::NotLeader);
        }
        let ttl = self.sm.lock().state.kv.leases().get(&id).map(|l| l.ttl);
        let Some(ttl) = ttl else {
            return Ok(0);
        };
        self.lessor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Instant::now() + Duration::from_secs(ttl as u64));
        Ok(ttl)
    }

    /// `(remaining seconds, granted TTL)` on the leader's clock.
    pub fn time_to_live_as_leader(&self, id: i64) -> Result<Option<(i64, i64)>, ForwardError> {
        if !self.is_leader() {
            return Err(ForwardError::NotLeader);
        }
        let granted = self.sm.lock().state.kv.leases().get(&id).map(|l| l.ttl);
        let Some(granted) = granted else {
            return Ok(None);
        };
        let deadline = self
            .lessor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied();
        let remaining = deadline.map_or(granted, |d| {
            d.saturating_duration_since(Instant::now())
                .as_secs_f64()
                .ceil() as i64
        });
        Ok(Some((remaining, granted)))
    }

    pub async fn lease_keep_alive(&self, id: i64) -> Result<i64, RequestError> {
        self.on_leader(
            |m| m.keep_alive_as_leader(id),
            move |peer, left| async move { peer.lease_keep_alive(id, left).await },
        )
        .await
    }

    pub async fn lease_time_to_live(&self, id: i64) -> Result<Option<(i64, i64)>, RequestError> {
        self.on_leader(
            |m| m.time_to_live_as_leader(id),
            move |peer, left| async move { peer.lease_time_to_live(id, left).await },
        )
        .await
    }
}
