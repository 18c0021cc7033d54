//! etcd's Cluster and Maintenance services: membership as raft sees it, joined with the client
//! URLs each member published; status figures for `etcdctl endpoint status`.

use sha2::Digest;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{request_status, Api};
use crate::member::{check_peer_url, TransferError, REQUEST_TIMEOUT};
use crate::pb::etcdserverpb as pb;
use crate::pb::etcdserverpb::cluster_server::Cluster;
use crate::pb::etcdserverpb::maintenance_server::Maintenance;
use crate::types::{KeyRange, RangeRequest};

/// What `Status.version` reports: the etcd API level keel speaks, with keel's own version as
/// semver build metadata, so tools that parse it see 3.4 and people see it is keel.
pub const VERSION: &str = concat!("3.4.0+keel.", env!("CARGO_PKG_VERSION"));

/// Bytes per `SnapshotResponse` (etcd's figure: 32 KiB).
const SNAPSHOT_CHUNK: usize = 32 * 1024;

impl Api {
    /// The members as this member knows them ([`crate::member::Member::known_membership`]), with
    /// the client URLs each published.
    pub fn member_list(&self) -> Vec<pb::Member> {
        let known = self.member.known_membership();
        let known = known.membership();
        let voters: Vec<u64> = known.voter_ids().collect();
        let published = self.member.sm.lock().state.members.clone();
        known
            .nodes()
            .map(|(id, node)| {
                let attributes = published.get(id);
                pb::Member {
                    id: *id,
                    name: attributes.map_or_else(|| node.name.clone(), |a| a.name.clone()),
                    peer_ur_ls: vec![node.peer_url.clone()],
                    client_ur_ls: attributes
                        .map(|a| a.client_urls.clone())
                        .unwrap_or_default(),
                    is_learner: !voters.contains(id),
                }
            })
            .collect()
    }
}

#[tonic::async_trait]
impl Cluster for Api {
    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        let req = request.into_inner();
        let [peer_url] = req.peer_ur_ls.as_slice() else {
            return Err(Status::invalid_argument(
                "etcdserver: a member is added with exactly one peer URL",
            ));
        };
        check_peer_url(peer_url).map_err(request_status)?;
        let id = self
            .member
            .add_member(peer_url, req.is_learner)
            .await
            .map_err(request_status)?;
        let members = self.member_list();
        let member = members.iter().find(|m| m.id == id).cloned();
        Ok(Response::new(pb::MemberAddResponse {
            header: Some(self.header(self.current_revision())),
            member,
            members,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let id = request.into_inner().id;
        if !self.member_list().iter().any(|m| m.id == id) {
            return Err(Status::not_found("etcdserver: member not found"));
        }
        self.member
            .remove_member(id)
            .await
            .map_err(request_status)?;
        // A member that removed itself never applies its removal: its list would still
        // name it.
        let mut members = self.member_list();
        members.retain(|m| m.id != id);
        Ok(Response::new(pb::MemberRemoveResponse {
            header: Some(self.header(self.current_revision())),
            members,
        }))
    }

    async fn member_update(
        &self,
        _request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        Err(Status::unimplemented(
            "keel: a member's peer URL is its identity; remove it and add the new URL instead",
        ))
    }

    /// Answered from this member's own view, as etcd does, unless the client asks for a
    /// linearizable list (etcd 3.5's field) or this member knows no members yet: a cluster
    /// always has one, so an empty list would be a wrong answer where "no leader" is honest.
    async fn member_list(
        &self,
        request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let mut members = self.member_list();
        if request.into_inner().linearizable || members.is_empty() {
            self.member
                .linearizable_barrier()
                .await
                .map_err(request_status)?;
            members = self.member_list();
        }
        Ok(Response::new(pb::MemberListResponse {
            header: Some(self.header(self.current_revision())),
            members,
        }))
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let id = request.into_inner().id;
        let member = self.member_list().into_iter().find(|m| m.id == id);
        match member {
            None => return Err(Status::not_found("etcdserver: member not found")),
            Some(m) if !m.is_learner => {
                return Err(Status::failed_precondition(
                    "etcdserver: can only promote a learner member",
                ))
            }
            Some(_) => {}
        }
        self.member.promote(id).await.map_err(request_status)?;
        Ok(Response::new(pb::MemberPromoteResponse {
            header: Some(self.header(self.current_revision())),
            members: self.member_list(),
        }))
    }
}

#[tonic::async_trait]
impl Maintenance for Api {
    async fn alarm(
        &self,
        _request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        // keel raises no alarms: a full disk fails writes with an error instead of NOSPACE.
        Ok(Response::new(pb::AlarmResponse {
            header: Some(self.header(self.current_revision())),
            alarms: Vec::new(),
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let metrics = self.member.raft_metrics();
        let is_voter = self
            .member
            .known_membership()
            .membership()
            .voter_ids()
            .any(|v| v == self.member.id);
        let revision = self.current_revision();
        let size = self.member.db_size();
        Ok(Response::new(pb::StatusResponse {
            header: Some(pb::ResponseHeader {
                raft_term: metrics.current_term,
                ..self.header(revision)
            }),
            version: VERSION.into(),
            db_size: size.total as i64,
            leader: metrics.current_leader.unwrap_or(0),
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_term: metrics.current_term,
            raft_applied_index: metrics.last_applied.map_or(0, |l| l.index),
            errors: Vec::new(),
            db_size_in_use: size.in_use as i64,
            is_learner: !is_voter,
        }))
    }

    async fn defragment(
        &self,
        _request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        // fjall compacts its own files in the background; there is nothing to defragment.
        Ok(Response::new(pb::DefragmentResponse {
            header: Some(self.header(self.current_revision())),
        }))
    }

    async fn hash(
        &self,
        _request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        let (revision, hash) = self.hash_at(0)?;
        Ok(Response::new(pb::HashResponse {
            header: Some(self.header(revision)),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        let (revision, hash) = self.hash_at(request.into_inner().revision)?;
        let compact_revision = self.member.sm.lock().state.kv.compact_revision();
        Ok(Response::new(pb::HashKvResponse {
            header: Some(self.header(revision)),
            hash,
            compact_revision,
        }))
    }

    type SnapshotStream = ReceiverStream<Result<pb::SnapshotResponse, Status>>;

    async fn snapshot(
        &self,
        _request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        // keel's backup format (crate::backup), not a bbolt file: restore it with
        // `keelctl snapshot restore`. Encoding walks the keyspace under the state lock, as a
        // state machine snapshot does; off the async workers.
        self.member.caught_up().await.map_err(request_status)?;
        let member = self.member.clone();
        let encoded = tokio::task::spawn_blocking(move || {
            let inner = member.sm.lock();
            crate::backup::encode(&inner.state).map(|bytes| (inner.state.kv.revision(), bytes))
        })
        .await
        .map_err(|e| Status::internal(format!("keel: the snapshot task failed: {e}")))?;
        let (revision, bytes) =
            encoded.map_err(|e| Status::internal(format!("keel: snapshot: {e}")))?;
        // The first message's header is the snapshot's point in time (etcd's contract).
        let mut header = Some(self.header(revision));
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut remaining = bytes.len();
            for chunk in bytes.chunks(SNAPSHOT_CHUNK) {
                remaining -= chunk.len();
                let message = pb::SnapshotResponse {
                    header: header.take(),
                    remaining_bytes: remaining as u64,
                    blob: chunk.to_vec(),
                };
                if tx.send(Ok(message)).await.is_err() {
                    return; // The client went away.
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        self.member
            .transfer_leadership(target, REQUEST_TIMEOUT)
            .await
            .map_err(|e| {
                let message = e.to_string();
                match e {
                    TransferError::NotLeader | TransferError::BadTransferee => {
                        Status::failed_precondition(message)
                    }
                    TransferError::Timeout => Status::unavailable(message),
                    TransferError::Stopped(_) => Status::internal(message),
                }
            })?;
        Ok(Response::new(pb::MoveLeaderResponse {
            header: Some(self.header(self.current_revision())),
        }))
    }
}

impl Api {
    /// A hash of every key at `revision` (0: now), equal on members that applied alike.
    fn hash_at(&self, revision: i64) -> Result<(i64, u32), Status> {
        let inner = self.member.sm.lock();
        let all = RangeRequest {
            range: KeyRange {
                key: vec![0],
                range_end: vec![0],
            },
            revision,
            ..RangeRequest::default()
        };
        let result = inner.state.kv.range(&all).map_err(super::apply_status)?;
        let mut digest = sha2::Sha256::new();
        for kv in &result.kvs {
            for part in [kv.key.as_slice(), &kv.value[..]] {
                digest.update((part.len() as u64).to_be_bytes());
                digest.update(part);
            }
            digest.update(kv.mod_revision.to_be_bytes());
        }
        let sum = digest.finalize();
        let hash = u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]]);
        Ok((inner.state.kv.revision(), hash))
    }
}
