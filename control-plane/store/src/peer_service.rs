//! The member-to-member gRPC service: raft's RPCs into the local raft, and what followers
//! forward to the leader other than writes. (The leader's pipelined replication and the
//! forwarded writes come in on the same port, but not as gRPC: see [`crate::peer_link`].)

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::member::Member;
use crate::network::{decode, encode, MembershipChange, ProbeFrom, RemoteRaftError};
use crate::pb::peer::peer_server::Peer;
use crate::pb::peer::Blob;
use crate::peer_wire::member_removed;
use crate::state_machine::Snapshot;
use crate::types::{SnapshotMeta, Vote};

pub struct PeerService {
    member: Arc<Member>,
}

impl PeerService {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }
}

fn remote<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, RemoteRaftError> {
    RemoteRaftError::wrap(r)
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc = decode(request.get_ref())?;
        let answer = remote(self.member.raft.append_entries(rpc).await);
        Ok(Response::new(encode(&answer)))
    }

    async fn vote(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc = decode(request.get_ref())?;
        let answer = remote(self.member.raft.vote(rpc).await);
        Ok(Response::new(encode(&answer)))
    }

    async fn pre_vote(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc = decode(request.get_ref())?;
        let answer = remote(self.member.raft.pre_vote(rpc).await);
        Ok(Response::new(encode(&answer)))
    }

    async fn transfer_leader(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc = decode(request.get_ref())?;
        let answer = remote(self.member.raft.handle_transfer_leader(rpc).await);
        Ok(Response::new(encode(&answer)))
    }

    async fn install_snapshot(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        let (vote, meta, data): (Vote, SnapshotMeta, serde_bytes::ByteBuf) =
            decode(request.get_ref())?;
        let snapshot = Snapshot {
            meta,
            snapshot: data.into_vec(),
        };
        let answer = remote(self.member.raft.install_full_snapshot(vote, snapshot).await);
        Ok(Response::new(encode(&answer)))
    }

    async fn read_index(&self, _request: Request<Blob>) -> Result<Response<Blob>, Status> {
        let answer = self.member.read_index_as_leader().await;
        Ok(Response::new(encode(&answer)))
    }

    async fn lease_keep_alive(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        let id: i64 = decode(request.get_ref())?;
        Ok(Response::new(encode(&self.member.keep_alive_as_leader(id))))
    }

    async fn member_change(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        let change: MembershipChange = decode(request.get_ref())?;
        let answer = self.member.change_membership_as_leader(change).await;
        Ok(Response::new(encode(&answer)))
    }

    async fn probe(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        // An older prober sends nothing (see `ProbeFrom`).
        let from: Option<ProbeFrom> = if request.get_ref().data.is_empty() {
            None
        } else {
            decode(request.get_ref())?
        };
        if from.is_some_and(|from| self.member.knows_removed(&from)) {
            return Err(member_removed());
        }
        // Its cluster id, for a member that joined and has yet to learn it.
        Ok(Response::new(encode(&self.member.cluster_id_to_share())))
    }

    async fn lease_time_to_live(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        let id: i64 = decode(request.get_ref())?;
        Ok(Response::new(encode(
            &self.member.time_to_live_as_leader(id),
        )))
    }
}
