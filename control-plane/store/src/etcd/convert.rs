//! etcd's wire messages to keel's commands and back. Decoding validates as etcd's server does
//! (`etcdserver/api/v3rpc/key.go`), naming the field that is wrong, so a hostile or broken
//! request is refused before it reaches raft.

use tonic::Status;

use crate::pb::etcdserverpb as pb;
use crate::pb::mvccpb;
use crate::types::{
    Compare, CompareResult, CompareTarget, DeleteRequest, Event, EventKind, KeyRange, KeyValue,
    PutRequest, RangeRequest, RangeResult, SortOrder, SortTarget, TxnOp, TxnOpResult, TxnRequest,
    TxnResult,
};

/// etcd's `--max-txn-ops` default: operations in one transaction, nested ones included.
pub const MAX_TXN_OPS: usize = 128;

fn key_required(key: &[u8]) -> Result<(), Status> {
    if key.is_empty() {
        return Err(Status::invalid_argument("etcdserver: key is not provided"));
    }
    Ok(())
}

fn range(key: Vec<u8>, range_end: Vec<u8>) -> KeyRange {
    KeyRange { key, range_end }
}

pub fn range_request(r: pb::RangeRequest) -> Result<RangeRequest, Status> {
    key_required(&r.key)?;
    let sort_order = match pb::range_request::SortOrder::try_from(r.sort_order) {
        Ok(pb::range_request::SortOrder::None) => SortOrder::None,
        Ok(pb::range_request::SortOrder::Ascend) => SortOrder::Ascend,
        Ok(pb::range_request::SortOrder::Descend) => SortOrder::Descend,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "etcdserver: invalid sort option: sort_order {}",
                r.sort_order
            )))
        }
    };
    let sort_target = match pb::range_request::SortTarget::try_from(r.sort_target) {
        Ok(pb::range_request::SortTarget::Key) => SortTarget::Key,
        Ok(pb::range_request::SortTarget::Version) => SortTarget::Version,
        Ok(pb::range_request::SortTarget::Create) => SortTarget::Create,
        Ok(pb::range_request::SortTarget::Mod) => SortTarget::Mod,
        Ok(pb::range_request::SortTarget::Value) => SortTarget::Value,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "etcdserver: invalid sort option: sort_target {}",
                r.sort_target
            )))
        }
    };
    Ok(RangeRequest {
        range: range(r.key, r.range_end),
        limit: r.limit.max(0),
        revision: r.revision,
        sort_order,
        sort_target,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    })
}

pub fn put_request(p: pb::PutRequest) -> Result<PutRequest, Status> {
    key_required(&p.key)?;
    if p.ignore_value && !p.value.is_empty() {
        return Err(Status::invalid_argument(
            "etcdserver: value is provided (ignore_value is set)",
        ));
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(Status::invalid_argument(
            "etcdserver: lease is provided (ignore_lease is set)",
        ));
    }
    Ok(PutRequest {
        key: p.key,
        value: p.value,
        lease: p.lease,
        prev_kv: p.prev_kv,
        ignore_value: p.ignore_value,
        ignore_lease: p.ignore_lease,
    })
}

pub fn delete_request(d: pb::DeleteRangeRequest) -> Result<DeleteRequest, Status> {
    key_required(&d.key)?;
    Ok(DeleteRequest {
        range: range(d.key, d.range_end),
        prev_kv: d.prev_kv,
    })
}

fn compare(c: pb::Compare) -> Result<Compare, Status> {
    use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    key_required(&c.key)?;
    let result = match R::try_from(c.result) {
        Ok(R::Equal) => CompareResult::Equal,
        Ok(R::Greater) => CompareResult::Greater,
        Ok(R::Less) => CompareResult::Less,
        Ok(R::NotEqual) => CompareResult::NotEqual,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "etcdserver: compare.result {} is not a comparison",
                c.result
            )))
        }
    };
    let declared = T::try_from(c.target).map_err(|_| {
        Status::invalid_argument(format!(
            "etcdserver: compare.target {} is not a target",
            c.target
        ))
    })?;
    let target = match (declared, c.target_union) {
        (T::Version, Some(U::Version(v))) => CompareTarget::Version(v),
        (T::Create, Some(U::CreateRevision(v))) => CompareTarget::Create(v),
        (T::Mod, Some(U::ModRevision(v))) => CompareTarget::Mod(v),
        (T::Value, Some(U::Value(v))) => CompareTarget::Value(v),
        (T::Lease, Some(U::Lease(v))) => CompareTarget::Lease(v),
        // proto3 drops a zero oneof member from nothing: an absent union compares with zero.
        (T::Version, None) => CompareTarget::Version(0),
        (T::Create, None) => CompareTarget::Create(0),
        (T::Mod, None) => CompareTarget::Mod(0),
        (T::Value, None) => CompareTarget::Value(Vec::new()),
        (T::Lease, None) => CompareTarget::Lease(0),
        (t, Some(_)) => {
            return Err(Status::invalid_argument(format!(
                "etcdserver: compare.target_union does not match compare.target {t:?}"
            )))
        }
    };
    Ok(Compare {
        range: range(c.key, c.range_end),
        result,
        target,
    })
}

/// etcd's rule per level (compare, success and failure each at most `MAX_TXN_OPS`), plus a
/// bound on all operations of the nested tree so one request cannot ask for unbounded work.
fn too_many_ops(t: &pb::TxnRequest, total: &mut usize) -> bool {
    if t.compare.len() > MAX_TXN_OPS
        || t.success.len() > MAX_TXN_OPS
        || t.failure.len() > MAX_TXN_OPS
    {
        return true;
    }
    *total += t.compare.len() + t.success.len() + t.failure.len();
    if *total > MAX_TXN_OPS * 8 {
        return true;
    }
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(pb::request_op::Request::RequestTxn(inner)) => too_many_ops(inner, total),
            _ => false,
        })
}

pub fn txn_request(t: pb::TxnRequest) -> Result<TxnRequest, Status> {
    if too_many_ops(&t, &mut 0) {
        return Err(Status::invalid_argument(
            "etcdserver: too many operations in txn request",
        ));
    }
    let ops = |ops: Vec<pb::RequestOp>, branch: &str| -> Result<Vec<TxnOp>, Status> {
        ops.into_iter()
            .enumerate()
            .map(|(i, op)| {
                use pb::request_op::Request;
                match op.request {
                    Some(Request::RequestRange(r)) => range_request(r).map(TxnOp::Range),
                    Some(Request::RequestPut(p)) => put_request(p).map(TxnOp::Put),
                    Some(Request::RequestDeleteRange(d)) => delete_request(d).map(TxnOp::Delete),
                    Some(Request::RequestTxn(inner)) => txn_request(inner).map(TxnOp::Txn),
                    None => Err(Status::invalid_argument(format!(
                        "etcdserver: {branch}[{i}] names no request"
                    ))),
                }
            })
            .collect()
    };
    Ok(TxnRequest {
        compare: t
            .compare
            .into_iter()
            .map(compare)
            .collect::<Result<_, _>>()?,
        success: ops(t.success, "success")?,
        failure: ops(t.failure, "failure")?,
    })
}

pub fn key_value(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn event(e: Event) -> mvccpb::Event {
    mvccpb::Event {
        r#type: match e.kind {
            EventKind::Put => mvccpb::event::EventType::Put as i32,
            EventKind::Delete => mvccpb::event::EventType::Delete as i32,
        },
        kv: Some(key_value(e.kv)),
        prev_kv: e.prev.map(key_value),
    }
}

pub fn range_response(header: &pb::ResponseHeader, r: RangeResult) -> pb::RangeResponse {
    pb::RangeResponse {
        header: Some(*header),
        kvs: r.kvs.into_iter().map(key_value).collect(),
        more: r.more,
        count: r.count,
    }
}

pub fn txn_response(header: &pb::ResponseHeader, t: TxnResult) -> pb::TxnResponse {
    use pb::response_op::Response;
    pb::TxnResponse {
        header: Some(*header),
        succeeded: t.succeeded,
        responses: t
            .responses
            .into_iter()
            .map(|r| pb::ResponseOp {
                response: Some(match r {
                    TxnOpResult::Range(r) => Response::ResponseRange(range_response(header, r)),
                    TxnOpResult::Put { prev_kv } => Response::ResponsePut(pb::PutResponse {
                        header: Some(*header),
                        prev_kv: prev_kv.map(key_value),
                    }),
                    TxnOpResult::Delete { deleted, prev_kvs } => {
                        Response::ResponseDeleteRange(pb::DeleteRangeResponse {
                            header: Some(*header),
                            deleted,
                            prev_kvs: prev_kvs.into_iter().map(key_value).collect(),
                        })
                    }
                    TxnOpResult::Txn(inner) => Response::ResponseTxn(txn_response(header, inner)),
                }),
            })
            .collect(),
    }
}
