//! The backend that speaks etcd's v3 gRPC API through `etcd-client`: an external etcd cluster
//! (`--etcd-servers`), or keel's store reached over the network.

use etcd_client::{Compare, CompareOp, GetOptions, KvClient, TxnOp, TxnOpResponse};
use futures::future::BoxFuture;

use super::backend::{Backend, Condition, Range, RangeAnswer, Txn, TxnAnswer, Write};
use super::{StorageError, Stored};

pub struct EtcdKv {
    kv: KvClient,
}

impl EtcdKv {
    pub fn new(kv: KvClient) -> Self {
        Self { kv }
    }
}

fn compacted_or(error: etcd_client::Error, requested: i64) -> StorageError {
    let text = error.to_string();
    if text.contains("compacted") {
        StorageError::Compacted { requested }
    } else {
        StorageError::Unavailable(text)
    }
}

fn stored(kv: &etcd_client::KeyValue) -> Stored {
    Stored {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        mod_revision: kv.mod_revision(),
    }
}

fn compare(condition: Condition) -> Compare {
    match condition {
        Condition::Absent(key) => Compare::create_revision(key, CompareOp::Equal, 0),
        Condition::At(key, revision) => Compare::mod_revision(key, CompareOp::Equal, revision),
    }
}

fn write(write: Write) -> TxnOp {
    match write {
        Write::Put { key, value } => TxnOp::put(key, value, None),
        Write::Delete { key } => TxnOp::delete(key, None),
    }
}

impl Backend for EtcdKv {
    fn range(&self, range: Range) -> BoxFuture<'_, Result<RangeAnswer, StorageError>> {
        Box::pin(async move {
            let mut options = GetOptions::new().with_limit(range.limit);
            if !range.end.is_empty() {
                options = options.with_range(range.end);
            }
            if range.revision > 0 {
                options = options.with_revision(range.revision);
            }
            if range.count_only {
                options = options.with_count_only();
            }
            let response = self
                .kv
                .clone()
                .get(range.start, Some(options))
                .await
                .map_err(|e| compacted_or(e, range.revision))?;
            Ok(RangeAnswer {
                items: response.kvs().iter().map(stored).collect(),
                count: response.count(),
                revision: response
                    .header()
                    .map(|h| h.revision())
                    .unwrap_or(range.revision),
            })
        })
    }

    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnAnswer, StorageError>> {
        Box::pin(async move {
            let request = etcd_client::Txn::new()
                .when(txn.when.into_iter().map(compare).collect::<Vec<_>>())
                .and_then(txn.then.into_iter().map(write).collect::<Vec<_>>())
                .or_else(
                    txn.otherwise
                        .into_iter()
                        .map(|key| TxnOp::get(key, Some(GetOptions::new().with_keys_only())))
                        .collect::<Vec<_>>(),
                );
            let response = self.kv.clone().txn(request).await?;
            let found = if response.succeeded() {
                Vec::new()
            } else {
                response
                    .op_responses()
                    .iter()
                    .map(|r| match r {
                        TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.mod_revision()),
                        _ => None,
                    })
                    .collect()
            };
            Ok(TxnAnswer {
                succeeded: response.succeeded(),
                revision: response.header().map(|h| h.revision()).unwrap_or(0),
                found,
            })
        })
    }
}
