//! The storage seam: etcd's v3 data model, served by keel's own raft store or by an external
//! etcd cluster. Optimistic concurrency is etcd's: every write is a transaction comparing the
//! key's `mod_revision`, which is the object's `resourceVersion`.
//!
//! Every operation here is built from the primitives of [`backend::Backend`] (a range, a
//! conditional transaction and a watch of a prefix), so both backends answer them the same
//! way.

pub mod backend;
pub mod etcd;

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use backend::{Backend, Condition, Range, Txn, Watch, Write};

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
    /// Shared with the store where it lives in the same process.
    pub value: bytes::Bytes,
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
    backend: Arc<dyn Backend>,
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

fn put(key: &str, value: Vec<u8>) -> Write {
    Write::Put {
        key: key.to_owned(),
        value,
    }
}

fn delete(key: &str) -> Write {
    Write::Delete {
        key: key.to_owned(),
    }
}

/// Adds to `txn` the creation of each of `reserved` (a marker naming `owner`) and, should it
/// fail, a read of each, so a marker another object holds shows as Taken.
fn reserve(txn: &mut Txn, owner: &str, reserved: &[String]) {
    for marker in reserved {
        txn.when.push(Condition::Absent(marker.clone()));
        txn.then.push(put(marker, owner.as_bytes().to_vec()));
        txn.otherwise.push(marker.clone());
    }
}

impl Storage {
    /// Connects to etcd's v3 API at `endpoints`.
    pub async fn connect(endpoints: &[String]) -> Result<Self, StorageError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(30));
        let client = Client::connect(endpoints, Some(options)).await?;
        Ok(Self::with_backend(Arc::new(etcd::EtcdKv::new(&client))))
    }

    /// Over another backend (the store member in this process).
    pub fn with_backend(backend: Arc<dyn Backend>) -> Self {
        Self { backend }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Stored>, StorageError> {
        let answer = self
            .backend
            .range(Range {
                start: key.as_bytes().to_vec(),
                ..Range::default()
            })
            .await?;
        Ok(answer.items.into_iter().next())
    }

    /// The store's current revision, read linearizably (a count-only range of one key that
    /// need not exist: the answer carries the revision).
    pub async fn revision(&self) -> Result<i64, StorageError> {
        let answer = self
            .backend
            .range(Range {
                start: b"/registry/health".to_vec(),
                count_only: true,
                ..Range::default()
            })
            .await?;
        Ok(answer.revision)
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
        let answer = self
            .backend
            .range(Range {
                start,
                end: prefix_end(prefix),
                limit,
                revision,
                count_only: false,
            })
            .await?;
        let remaining = (answer.count - answer.items.len() as i64).max(0);
        Ok(Page {
            revision: answer.revision,
            items: answer.items,
            remaining,
        })
    }

    /// Writes `value` if `key` does not exist; the new object's revision.
    pub async fn create(&self, key: &str, value: Vec<u8>) -> Result<i64, StorageError> {
        let answer = self
            .backend
            .txn(Txn {
                when: vec![Condition::Absent(key.to_owned())],
                then: vec![put(key, value)],
                otherwise: Vec::new(),
            })
            .await?;
        if !answer.succeeded {
            return Err(StorageError::Exists);
        }
        Ok(answer.revision)
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
        let mut txn = Txn {
            when: vec![Condition::Absent(key.to_owned())],
            then: vec![put(key, value)],
            otherwise: vec![key.to_owned()],
        };
        reserve(&mut txn, key, reservations);
        for guard in guards {
            txn.when
                .push(Condition::At(guard.key.clone(), guard.expected));
            txn.then.push(put(&guard.key, guard.value.clone()));
        }
        let answer = self.backend.txn(txn).await?;
        if answer.succeeded {
            return Ok(answer.revision);
        }
        if answer.found.first().copied().flatten().is_some() {
            Err(StorageError::Exists)
        } else if answer.found.iter().skip(1).any(Option::is_some) {
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
        let mut then = vec![delete(key)];
        then.extend(released.iter().map(|r| delete(r)));
        let answer = self
            .backend
            .txn(Txn {
                when: vec![Condition::At(key.to_owned(), expected)],
                then,
                otherwise: vec![key.to_owned()],
            })
            .await?;
        if answer.succeeded {
            return Ok(answer.revision);
        }
        match answer.found.first().copied().flatten() {
            None => Err(StorageError::NotFound),
            Some(_) => Err(StorageError::Conflict),
        }
    }

    /// Writes `value` if `key` is still at `expected` (its mod revision); the new revision.
    pub async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: i64,
    ) -> Result<i64, StorageError> {
        self.update_reserving(key, value, expected, &[], &[]).await
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
        let mut txn = Txn {
            when: vec![Condition::At(key.to_owned(), expected)],
            then: vec![put(key, value)],
            otherwise: vec![key.to_owned()],
        };
        reserve(&mut txn, key, acquire);
        txn.then.extend(release.iter().map(|r| delete(r)));
        let answer = self.backend.txn(txn).await?;
        if answer.succeeded {
            return Ok(answer.revision);
        }
        match answer.found.first().copied().flatten() {
            None => Err(StorageError::NotFound),
            Some(revision) if revision != expected => Err(StorageError::Conflict),
            Some(_) if answer.found.iter().skip(1).any(Option::is_some) => Err(StorageError::Taken),
            // Neither the object moved nor an acquired key is taken: something moved between
            // the compare and the reads; the caller reads again.
            Some(_) => Err(StorageError::Conflict),
        }
    }

    /// Deletes `key` if it is still at `expected`; the deletion's revision.
    pub async fn delete(&self, key: &str, expected: i64) -> Result<i64, StorageError> {
        self.delete_releasing(key, expected, &[]).await
    }

    /// A watch of every key under `prefix` from `from_revision` (inclusive), with progress
    /// notifications.
    pub async fn watch(
        &self,
        prefix: &str,
        from_revision: i64,
    ) -> Result<Box<dyn Watch>, StorageError> {
        self.backend.watch(prefix, from_revision).await
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
