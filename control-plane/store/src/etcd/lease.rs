//! etcd's Lease service. Grants and revokes go through raft; keep-alives and time-to-live are
//! answered by the leader's clock (a follower forwards them), as etcd's lessor does.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{apply_status, request_status, Api};
use crate::pb::etcdserverpb as pb;
use crate::pb::etcdserverpb::lease_server::Lease;
use crate::types::{Command, Outcome};

/// etcd's shortest lease: shorter ones are raised to it (a lease must outlive an election).
pub const MIN_TTL: i64 = 2;
/// etcd's longest lease (`MaxLeaseTTL`).
pub const MAX_TTL: i64 = 9_000_000_000;

#[tonic::async_trait]
impl Lease for Api {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let req = request.into_inner();
        if req.ttl > MAX_TTL {
            return Err(Status::out_of_range("etcdserver: too large lease TTL"));
        }
        if req.id < 0 {
            return Err(Status::invalid_argument(
                "etcdserver: lease ID must be positive (or 0 to let the server choose)",
            ));
        }
        let ttl = req.ttl.max(MIN_TTL);
        let result = self
            .member
            .propose(Command::LeaseGrant { id: req.id, ttl })
            .await
            .map_err(request_status)?;
        match result.outcome.map_err(apply_status)? {
            Outcome::LeaseGranted { id, ttl } => Ok(Response::new(pb::LeaseGrantResponse {
                header: Some(self.header(result.revision)),
                id,
                ttl,
                error: String::new(),
            })),
            other => Err(Status::internal(format!(
                "a grant was answered with {other:?}"
            ))),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let id = request.into_inner().id;
        let result = self
            .member
            .propose(Command::LeaseRevoke { id })
            .await
            .map_err(request_status)?;
        result.outcome.map_err(apply_status)?;
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: Some(self.header(result.revision)),
        }))
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<pb::LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = request.into_inner();
        let (out, rx) = mpsc::channel(16);
        let api = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(req)) = inbound.message().await {
                let answer = match api.member.lease_keep_alive(req.id).await {
                    Ok(ttl) => Ok(pb::LeaseKeepAliveResponse {
                        header: Some(api.header(api.current_revision())),
                        id: req.id,
                        ttl,
                    }),
                    Err(e) => Err(request_status(e)),
                };
                let failed = answer.is_err();
                if out.send(answer).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        self.member.caught_up().await.map_err(request_status)?;
        let answer = self
            .member
            .lease_time_to_live(req.id)
            .await
            .map_err(request_status)?;
        let Some((ttl, granted_ttl)) = answer else {
            // etcd answers an unknown lease with TTL -1, not an error.
            return Ok(Response::new(pb::LeaseTimeToLiveResponse {
                header: Some(self.header(self.current_revision())),
                id: req.id,
                ttl: -1,
                ..Default::default()
            }));
        };
        let keys = if req.keys {
            let inner = self.member.sm.lock();
            inner
                .state
                .kv
                .leases()
                .get(&req.id)
                .map(|l| l.keys.iter().cloned().collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Ok(Response::new(pb::LeaseTimeToLiveResponse {
            header: Some(self.header(self.current_revision())),
            id: req.id,
            ttl,
            granted_ttl,
            keys,
        }))
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        self.member.caught_up().await.map_err(request_status)?;
        let (revision, leases) = {
            let inner = self.member.sm.lock();
            let leases = inner
                .state
                .kv
                .leases()
                .keys()
                .map(|id| pb::LeaseStatus { id: *id })
                .collect();
            (inner.state.kv.revision(), leases)
        };
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: Some(self.header(revision)),
            leases,
        }))
    }
}
