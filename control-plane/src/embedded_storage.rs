//! The API server's reads and writes handed straight to the store member in the same process.
//!
//! On a member the API server used to reach its own store over loopback gRPC, as it reaches an
//! external etcd. That hop — protobuf and HTTP/2 on both sides, two tasks woken per request —
//! was about a fifth of the CPU a create costs (perf, one member, one client). Here a range is
//! the member's linearizable read and a transaction is its raft proposal, through the same
//! `keel_store::etcd::Api` calls the gRPC KV service makes: a follower forwards to the leader,
//! duplicate keys are refused, a compacted revision is `Compacted`; a request over etcd's size
//! limit is refused here with etcd's error, measured on the keys and values rather than on an
//! encoding. A watch is the
//! member's [`LocalWatch`]: the same replay-then-live order as the Watch service, no encoding.

use std::sync::Arc;

use futures::future::BoxFuture;
use keel_apiserver::storage::backend::{
    Backend, Change, ChangeKind, Condition, Range, RangeAnswer, Txn, TxnAnswer, Watch,
    WatchMessage, Write,
};
use keel_apiserver::storage::{prefix_end, StorageError, Stored};
use keel_store::etcd::kv::KvError;
use keel_store::etcd::{Api, MAX_REQUEST_BYTES};
use keel_store::local_watch::{LocalMessage, LocalWatch};
use keel_store::member::Member;
use keel_store::types::{
    ApplyError, Compare, CompareResult, CompareTarget, DeleteRequest, Event, EventKind, KeyRange,
    KeyValue, PutRequest, RangeRequest, TxnOp, TxnOpResult, TxnRequest,
};

/// The member's own KV requests: the same [`Api`] its gRPC service answers with, without the
/// encoding.
pub struct EmbeddedKv {
    api: Api,
}

impl EmbeddedKv {
    pub fn new(member: Arc<Member>) -> Self {
        Self {
            api: Api::new(member),
        }
    }
}

fn single(key: String) -> KeyRange {
    KeyRange {
        key: key.into_bytes(),
        range_end: Vec::new(),
    }
}

fn compare(condition: Condition) -> Compare {
    let (key, target) = match condition {
        Condition::Absent(key) => (key, CompareTarget::Create(0)),
        Condition::At(key, revision) => (key, CompareTarget::Mod(revision)),
    };
    Compare {
        range: single(key),
        result: CompareResult::Equal,
        target,
    }
}

fn write(write: Write) -> TxnOp {
    match write {
        Write::Put { key, value } => TxnOp::Put(PutRequest {
            key: key.into_bytes(),
            value,
            ..PutRequest::default()
        }),
        Write::Delete { key } => TxnOp::Delete(DeleteRequest {
            range: single(key),
            prev_kv: false,
        }),
    }
}

fn check(key: String) -> TxnOp {
    TxnOp::Range(RangeRequest {
        range: single(key),
        keys_only: true,
        ..RangeRequest::default()
    })
}

/// What raft would carry, as the gRPC service measures it (roughly: keys and values are all
/// but a few bytes of an encoded request), so that an object too large for etcd is refused
/// here too rather than only when the API server runs over an external etcd.
fn request_bytes(txn: &TxnRequest) -> usize {
    let op = |op: &TxnOp| match op {
        TxnOp::Put(put) => put.key.len() + put.value.len() + 8,
        TxnOp::Delete(delete) => delete.range.key.len() + delete.range.range_end.len() + 8,
        TxnOp::Range(range) => range.range.key.len() + range.range.range_end.len() + 8,
        TxnOp::Txn(inner) => request_bytes(inner),
    };
    txn.compare
        .iter()
        .map(|c| c.range.key.len() + 16)
        .chain(txn.success.iter().map(op))
        .chain(txn.failure.iter().map(op))
        .sum()
}

fn stored(kv: KeyValue) -> Stored {
    Stored {
        key: String::from_utf8_lossy(&kv.key).into_owned(),
        value: kv.value,
        mod_revision: kv.mod_revision,
    }
}

fn unavailable(error: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(error.to_string())
}

fn change(event: Event) -> Change {
    Change {
        kind: match event.kind {
            EventKind::Put => ChangeKind::Put,
            EventKind::Delete => ChangeKind::Delete,
        },
        key: String::from_utf8_lossy(&event.kv.key).into_owned(),
        value: event.kv.value,
        mod_revision: event.kv.mod_revision,
    }
}

impl Watch for LocalWatchFeed {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<WatchMessage>, StorageError>> {
        Box::pin(async move {
            Ok(self.0.next().await.map(|message| match message {
                LocalMessage::Events { events, .. } => {
                    WatchMessage::Changes(events.into_iter().map(change).collect())
                }
                LocalMessage::Progress { revision } => WatchMessage::Progress(revision),
            }))
        })
    }

    fn request_progress(&mut self) -> BoxFuture<'_, Result<(), StorageError>> {
        self.0.request_progress();
        Box::pin(async { Ok(()) })
    }
}

/// The member's watch, answering as the API server's [`Watch`].
struct LocalWatchFeed(LocalWatch);

impl Backend for EmbeddedKv {
    fn range(&self, range: Range) -> BoxFuture<'_, Result<RangeAnswer, StorageError>> {
        Box::pin(async move {
            let request = RangeRequest {
                range: KeyRange {
                    key: range.start,
                    range_end: range.end,
                },
                limit: range.limit,
                revision: range.revision,
                count_only: range.count_only,
                ..RangeRequest::default()
            };
            let (revision, result) =
                self.api.range(&request, false).await.map_err(|e| match e {
                    KvError::Apply(ApplyError::Compacted) => StorageError::Compacted {
                        requested: range.revision,
                    },
                    other => unavailable(other),
                })?;
            Ok(RangeAnswer {
                items: result.kvs.into_iter().map(stored).collect(),
                count: result.count,
                revision,
            })
        })
    }

    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnAnswer, StorageError>> {
        Box::pin(async move {
            let request = TxnRequest {
                compare: txn.when.into_iter().map(compare).collect(),
                success: txn.then.into_iter().map(write).collect(),
                failure: txn.otherwise.into_iter().map(check).collect(),
            };
            let bytes = request_bytes(&request);
            if bytes > MAX_REQUEST_BYTES {
                return Err(StorageError::Unavailable(format!(
                    "etcdserver: request is too large ({bytes} bytes; the limit is {MAX_REQUEST_BYTES})"
                )));
            }
            let (revision, answer) = self.api.transact(request).await.map_err(unavailable)?;
            let found = if answer.succeeded {
                Vec::new()
            } else {
                answer
                    .responses
                    .iter()
                    .map(|r| match r {
                        TxnOpResult::Range(range) => range.kvs.first().map(|kv| kv.mod_revision),
                        _ => None,
                    })
                    .collect()
            };
            Ok(TxnAnswer {
                succeeded: answer.succeeded,
                revision,
                found,
            })
        })
    }

    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        from_revision: i64,
    ) -> BoxFuture<'a, Result<Box<dyn Watch>, StorageError>> {
        Box::pin(async move {
            let range = KeyRange {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix),
            };
            // As the Watch service: a watch from "now" starts after every write this member
            // acknowledged (a member cut off from the leader serves what it has).
            let _ = self.api.member.caught_up().await;
            match LocalWatch::open(self.api.member.clone(), range, from_revision) {
                Ok(watch) => Ok(Box::new(LocalWatchFeed(watch)) as Box<dyn Watch>),
                Err(_) => Err(StorageError::Compacted {
                    requested: from_revision,
                }),
            }
        })
    }
}

#[cfg(test)]
#[path = "embedded_storage_tests.rs"]
mod tests;
