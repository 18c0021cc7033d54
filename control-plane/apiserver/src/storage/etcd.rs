//! The backend that speaks etcd's v3 gRPC API through `etcd-client`: an external etcd cluster
//! (`--etcd-servers`), or keel's store reached over the network.

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, KvClient, TxnOp, TxnOpResponse, WatchClient,
    WatchOptions, WatchStream,
};
use futures::future::BoxFuture;

use super::backend::{
    Backend, Change, ChangeKind, Condition, Range, RangeAnswer, Txn, TxnAnswer, Watch,
    WatchMessage, Write,
};
use super::{prefix_end, StorageError, Stored};

pub struct EtcdKv {
    kv: KvClient,
    watch: WatchClient,
}

impl EtcdKv {
    pub fn new(client: &Client) -> Self {
        Self {
            // A list of a whole resource in one range (deletecollection, an exact-revision
            // list) can pass tonic's 4 MiB default; the API's own 3 MiB body limit bounds each
            // object.
            kv: client.kv_client().max_decoding_message_size(1 << 30),
            watch: client.watch_client(),
        }
    }
}

/// etcd's watch stream, answering as [`Watch`].
struct EtcdWatch {
    stream: WatchStream,
    from_revision: i64,
}

impl Watch for EtcdWatch {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<WatchMessage>, StorageError>> {
        Box::pin(async move {
            loop {
                let Some(response) = self.stream.message().await? else {
                    return Ok(None);
                };
                if response.compact_revision() > 0 {
                    return Err(StorageError::Compacted {
                        requested: self.from_revision,
                    });
                }
                if response.canceled() {
                    return Err(StorageError::Unavailable(format!(
                        "watch canceled: {}",
                        response.cancel_reason()
                    )));
                }
                // The creation's answer carries the current revision, but the history being
                // replayed comes after it: it is no progress.
                if response.created() {
                    continue;
                }
                if response.events().is_empty() {
                    let Some(header) = response.header() else {
                        continue;
                    };
                    return Ok(Some(WatchMessage::Progress(header.revision())));
                }
                let changes = response
                    .events()
                    .iter()
                    .filter_map(|event| {
                        let kv = event.kv()?;
                        Some(Change {
                            kind: match event.event_type() {
                                EventType::Put => ChangeKind::Put,
                                EventType::Delete => ChangeKind::Delete,
                            },
                            key: String::from_utf8_lossy(kv.key()).into_owned(),
                            value: bytes::Bytes::copy_from_slice(kv.value()),
                            mod_revision: kv.mod_revision(),
                        })
                    })
                    .collect();
                return Ok(Some(WatchMessage::Changes(changes)));
            }
        })
    }

    fn request_progress(&mut self) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move { Ok(self.stream.request_progress().await?) })
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
        value: bytes::Bytes::copy_from_slice(kv.value()),
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

    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        from_revision: i64,
    ) -> BoxFuture<'a, Result<Box<dyn Watch>, StorageError>> {
        Box::pin(async move {
            let options = WatchOptions::new()
                .with_range(prefix_end(prefix))
                .with_start_revision(from_revision)
                .with_progress_notify();
            let stream = self.watch.clone().watch(prefix, Some(options)).await?;
            Ok(Box::new(EtcdWatch {
                stream,
                from_revision,
            }) as Box<dyn Watch>)
        })
    }
}
