//! The storage seam: the etcd v3 API, spoken through `etcd-client`, to keel's own raft store or
//! to an external etcd cluster. Optimistic concurrency is etcd's: every write is a transaction
//! comparing the key's `mod_revision`, which is the object's `resourceVersion`.

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, Txn, TxnOp, TxnOpResponse,
    WatchOptions, WatchStream,
};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("the key already exists")]
    Exists,
    #[error("the key does not exist")]
    NotFound,
    /// The key changed since the revision the caller read.
    #[error("the key was modified")]
    Conflict,
    /// A key the write reserves (a ClusterIP, a node port) is held by another object.
    #[error("a reserved key is taken")]
    Taken,
    #[error("required revision {requested} has been compacted")]
    Compacted { requested: i64 },
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

impl From<etcd_client::Error> for StorageError {
    fn from(error: etcd_client::Error) -> Self {
        StorageError::Unavailable(error.to_string())
    }
}

/// One object as stored: its bytes and the revisions etcd keeps for it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// A key written beside a create only if it is still at `expected`.
#[derive(Debug, Clone)]
pub struct Guard {
    pub key: String,
    pub value: Vec<u8>,
    pub expected: i64,
}

/// One page of a range read at one revision.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Stored>,
    /// The revision the page was read at (the list's `resourceVersion`).
    pub revision: i64,
    /// Keys in the range after this page.
    pub remaining: i64,
}

#[derive(Clone)]
pub struct Storage {
    client: Client,
    kv: KvClient,
}

/// The first key after every key that starts with `prefix` (etcd's range end for a prefix).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
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

impl Storage {
    pub async fn connect(endpoints: &[String]) -> Result<Self, StorageError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(30));
        let client = Client::connect(endpoints, Some(options)).await?;
        // A list of a whole resource in one range (deletecollection, an exact-revision list)
        // can pass tonic's 4 MiB default; the API's own 3 MiB body limit bounds each object.
        let kv = client.kv_client().max_decoding_message_size(1 << 30);
        Ok(Self { client, kv })
    }

    pub async fn get(&self, key: &str) -> Result<Option<Stored>, StorageError> {
        let response = self.kv.clone().get(key, None).await?;
        Ok(response.kvs().first().map(stored))
    }

    /// The store's current revision, read linearizably (a count-only range of one key that
    /// need not exist: the header carries the revision).
    pub async fn revision(&self) -> Result<i64, StorageError> {
        let response = self
            .kv
            .clone()
            .get(
                "/registry/health",
                Some(GetOptions::new().with_count_only()),
            )
            .await?;
        Ok(response.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Keys under `prefix` strictly after `after` (or from the start), at most `limit` (0: all),
    /// read at `revision` (0: the current one).
    pub async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: i64,
        revision: i64,
    ) -> Result<Page, StorageError> {
        let start = match after {
            Some(key) => {
                let mut k = key.as_bytes().to_vec();
                k.push(0);
                k
            }
            None => prefix.as_bytes().to_vec(),
        };
        let mut options = GetOptions::new()
            .with_range(prefix_end(prefix))
            .with_limit(limit);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let response = self
            .kv
            .clone()
            .get(start, Some(options))
            .await
            .map_err(|e| compacted_or(e, revision))?;
        let items: Vec<Stored> = response.kvs().iter().map(stored).collect();
        let remaining = (response.count() - items.len() as i64).max(0);
        Ok(Page {
            revision: response.header().map(|h| h.revision()).unwrap_or(revision),
            items,
            remaining,
        })
    }

    /// Writes `value` if `key` does not exist; the new object's revision.
    pub async fn create(&self, key: &str, value: Vec<u8>) -> Result<i64, StorageError> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        let response = self.kv.clone().txn(txn).await?;
        if !response.succeeded() {
            return Err(StorageError::Exists);
        }
        Ok(response.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Writes `value` at `key` and creates each of `reservations` (a marker naming `key`), all
    /// or nothing: if `key` exists the answer is Exists, if a reservation does, Taken.
    pub async fn create_reserving(
        &self,
        key: &str,
        value: Vec<u8>,
        reservations: &[String],
    ) -> Result<i64, StorageError> {
        self.create_guarded(key, value, reservations, &[]).await
    }

    /// `create_reserving`, and each of `guards` written in the same transaction if it is still
    /// at the revision it was read at (a ResourceQuota whose usage the create raises); a guard
    /// that moved is Conflict, and the caller reads it again.
    pub async fn create_guarded(
        &self,
        key: &str,
        value: Vec<u8>,
        reservations: &[String],
        guards: &[Guard],
    ) -> Result<i64, StorageError> {
        let mut compares = vec![Compare::create_revision(key, CompareOp::Equal, 0)];
        let mut puts = vec![TxnOp::put(key, value, None)];
        let mut checks = vec![TxnOp::get(key, Some(GetOptions::new().with_count_only()))];
        for reserved in reservations {
            compares.push(Compare::create_revision(
                reserved.as_str(),
                CompareOp::Equal,
                0,
            ));
            puts.push(TxnOp::put(reserved.as_str(), key, None));
            checks.push(TxnOp::get(
                reserved.as_str(),
                Some(GetOptions::new().with_count_only()),
            ));
        }
        for guard in guards {
            compares.push(Compare::mod_revision(
                guard.key.as_str(),
                CompareOp::Equal,
                guard.expected,
            ));
            puts.push(TxnOp::put(guard.key.as_str(), guard.value.clone(), None));
        }
        let txn = Txn::new().when(compares).and_then(puts).or_else(checks);
        let response = self.kv.clone().txn(txn).await?;
        if response.succeeded() {
            return Ok(response.header().map(|h| h.revision()).unwrap_or(0));
        }
        let counts: Vec<i64> = response
            .op_responses()
            .iter()
            .map(|r| match r {
                TxnOpResponse::Get(get) => get.count(),
                _ => 0,
            })
            .collect();
        if counts.first().copied().unwrap_or(0) > 0 {
            Err(StorageError::Exists)
        } else if counts.iter().skip(1).any(|c| *c > 0) {
            Err(StorageError::Taken)
        } else {
            Err(StorageError::Conflict)
        }
    }

    /// Deletes `key` if it is still at `expected`, and `released` with it (its reservations).
    pub async fn delete_releasing(
        &self,
        key: &str,
        expected: i64,
        released: &[String],
    ) -> Result<i64, StorageError> {
        let mut deletes = vec![TxnOp::delete(key, None)];
        deletes.extend(released.iter().map(|r| TxnOp::delete(r.as_str(), None)));
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then(deletes)
            .or_else([TxnOp::get(key, None)]);
        let response = self.kv.clone().txn(txn).await?;
        if response.succeeded() {
            return Ok(response.header().map(|h| h.revision()).unwrap_or(0));
        }
        Err(Self::why_failed(&response.op_responses()))
    }

    /// Writes `value` if `key` is still at `expected` (its mod revision); the new revision.
    pub async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: i64,
    ) -> Result<i64, StorageError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(key, value, None)])
            .or_else([TxnOp::get(key, None)]);
        let response = self.kv.clone().txn(txn).await?;
        if response.succeeded() {
            return Ok(response.header().map(|h| h.revision()).unwrap_or(0));
        }
        Err(Self::why_failed(&response.op_responses()))
    }

    /// `update`, and in the same transaction each of `acquire` created (a marker naming `key`,
    /// as `create_reserving` writes) and each of `release` deleted: a Service update that
    /// takes node ports or an address and gives others back, all or nothing. The object
    /// moved: Conflict (NotFound if it went); an acquired key exists: Taken.
    pub async fn update_reserving(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: i64,
        acquire: &[String],
        release: &[String],
    ) -> Result<i64, StorageError> {
        let mut compares = vec![Compare::mod_revision(key, CompareOp::Equal, expected)];
        let mut writes = vec![TxnOp::put(key, value, None)];
        let mut checks = vec![TxnOp::get(key, Some(GetOptions::new().with_keys_only()))];
        for reserved in acquire {
            compares.push(Compare::create_revision(
                reserved.as_str(),
                CompareOp::Equal,
                0,
            ));
            writes.push(TxnOp::put(reserved.as_str(), key, None));
            checks.push(TxnOp::get(
                reserved.as_str(),
                Some(GetOptions::new().with_count_only()),
            ));
        }
        writes.extend(release.iter().map(|r| TxnOp::delete(r.as_str(), None)));
        let txn = Txn::new().when(compares).and_then(writes).or_else(checks);
        let response = self.kv.clone().txn(txn).await?;
        if response.succeeded() {
            return Ok(response.header().map(|h| h.revision()).unwrap_or(0));
        }
        let responses = response.op_responses();
        let object = match responses.first() {
            Some(TxnOpResponse::Get(get)) => get.kvs().first().map(|kv| kv.mod_revision()),
            _ => None,
        };
        match object {
            None => Err(StorageError::NotFound),
            Some(revision) if revision != expected => Err(StorageError::Conflict),
            Some(_) => {
                let taken = responses.iter().skip(1).any(|r| match r {
                    TxnOpResponse::Get(get) => get.count() > 0,
                    _ => false,
                });
                // Neither: something moved between the compare and the reads; read again.
                Err(if taken {
                    StorageError::Taken
                } else {
                    StorageError::Conflict
                })
            }
        }
    }

    /// Deletes `key` if it is still at `expected`; the deletion's revision.
    pub async fn delete(&self, key: &str, expected: i64) -> Result<i64, StorageError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::delete(key, None)])
            .or_else([TxnOp::get(key, None)]);
        let response = self.kv.clone().txn(txn).await?;
        if response.succeeded() {
            return Ok(response.header().map(|h| h.revision()).unwrap_or(0));
        }
        Err(Self::why_failed(&response.op_responses()))
    }

    fn why_failed(responses: &[TxnOpResponse]) -> StorageError {
        match responses.first() {
            Some(TxnOpResponse::Get(get)) if get.kvs().is_empty() => StorageError::NotFound,
            _ => StorageError::Conflict,
        }
    }

    /// A watch of every key under `prefix` from `from_revision` (inclusive), with previous
    /// values and progress notifications.
    pub async fn watch(
        &self,
        prefix: &str,
        from_revision: i64,
    ) -> Result<WatchStream, StorageError> {
        let options = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_start_revision(from_revision)
            .with_prev_key()
            .with_progress_notify();
        Ok(self
            .client
            .watch_client()
            .watch(prefix, Some(options))
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
    }
}
