//! etcd's KV service: Range, Put, DeleteRange, Txn, Compact.

use prost::Message;
use tonic::{Request, Response, Status};

use super::convert;
use super::{apply_status, check_size, request_status, Api};
use crate::keyspace::check_duplicate_writes;
use crate::member::RequestError;
use crate::pb::etcdserverpb as pb;
use crate::pb::etcdserverpb::kv_server::Kv;
use crate::types::{
    ApplyError, Command, CommandResult, Outcome, RangeRequest, RangeResult, TxnOp, TxnOpResult,
    TxnRequest, TxnResult,
};

/// Why a read or a transaction failed, typed: the gRPC service turns it into etcd's status, and
/// a caller in the member's process (the API server) reads it as it is.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

impl From<KvError> for Status {
    fn from(error: KvError) -> Self {
        match error {
            KvError::Request(e) => request_status(e),
            KvError::Apply(e) => apply_status(e),
        }
    }
}

impl Api {
    /// Runs a transaction through raft (forwarded to the leader from a follower); the revision
    /// after it and its result.
    pub async fn transact(&self, txn: TxnRequest) -> Result<(i64, TxnResult), KvError> {
        check_duplicate_writes(&txn)?;
        let CommandResult { revision, outcome } = self.member.propose(Command::Txn(txn)).await?;
        match outcome? {
            Outcome::Txn(result) => Ok((revision, result)),
            other => Err(RequestError::Internal(format!(
                "a transaction was answered with {other:?}"
            ))
            .into()),
        }
    }

    /// A range: linearizable unless `serializable`, which any member answers from its own
    /// state (once it holds every write it acknowledged); the current revision and the result.
    pub async fn range(
        &self,
        req: &RangeRequest,
        serializable: bool,
    ) -> Result<(i64, RangeResult), KvError> {
        if serializable {
            self.member.caught_up().await?;
        } else {
            self.member.linearizable_barrier().await?;
        }
        let inner = self.member.sm.lock();
        Ok((inner.state.kv.revision(), inner.state.kv.range(req)?))
    }

    /// [`Api::transact`], its revision as a response header.
    async fn write(&self, txn: TxnRequest) -> Result<(pb::ResponseHeader, TxnResult), Status> {
        let (revision, result) = self.transact(txn).await?;
        Ok((self.header(revision), result))
    }

    /// etcd's Range.
    pub async fn read(&self, req: pb::RangeRequest) -> Result<pb::RangeResponse, Status> {
        let serializable = req.serializable;
        let req = convert::range_request(req)?;
        let (revision, result) = self.range(&req, serializable).await?;
        Ok(convert::range_response(&self.header(revision), result))
    }
}

fn single(ops: Vec<TxnOp>) -> TxnRequest {
    TxnRequest {
        compare: Vec::new(),
        success: ops,
        failure: Vec::new(),
    }
}

#[tonic::async_trait]
impl Kv for Api {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        self.read(request.into_inner()).await.map(Response::new)
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let req = request.into_inner();
        check_size(req.encoded_len())?;
        let put = convert::put_request(req)?;
        let (header, result) = self.write(single(vec![TxnOp::Put(put)])).await?;
        let prev_kv = match result.responses.into_iter().next() {
            Some(TxnOpResult::Put { prev_kv }) => prev_kv.map(convert::key_value),
            _ => None,
        };
        Ok(Response::new(pb::PutResponse {
            header: Some(header),
            prev_kv,
        }))
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let del = convert::delete_request(request.into_inner())?;
        let (header, result) = self.write(single(vec![TxnOp::Delete(del)])).await?;
        let (deleted, prev_kvs) = match result.responses.into_iter().next() {
            Some(TxnOpResult::Delete { deleted, prev_kvs }) => (deleted, prev_kvs),
            _ => (0, Vec::new()),
        };
        Ok(Response::new(pb::DeleteRangeResponse {
            header: Some(header),
            deleted,
            prev_kvs: prev_kvs.into_iter().map(convert::key_value).collect(),
        }))
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let req = request.into_inner();
        check_size(req.encoded_len())?;
        let txn = convert::txn_request(req)?;
        // Every transaction goes through raft, read-only ones too: etcd does the same, and it
        // makes a txn's reads and compares one atomic, linearizable step.
        let (header, result) = self.write(txn).await?;
        Ok(Response::new(convert::txn_response(&header, result)))
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let revision = request.into_inner().revision;
        let CommandResult { revision, outcome } = self
            .member
            .propose(Command::Compact { revision })
            .await
            .map_err(request_status)?;
        outcome.map_err(apply_status)?;
        Ok(Response::new(pb::CompactionResponse {
            header: Some(self.header(revision)),
        }))
    }
}
