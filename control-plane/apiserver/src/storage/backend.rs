//! The three primitives every storage operation is built from — a range read, a conditional
//! transaction and a watch of a prefix, in etcd's data model — and the interface a backend
//! implements to serve them.
//!
//! Two backends exist: the `etcd` module's speaks etcd's v3 gRPC API (an external etcd, or
//! keel's store in another process), and the control-plane binary's in-process one hands the
//! same requests straight to the member it runs beside. The in-process one exists because on a
//! member the API server and its store share the machine: the loopback gRPC hop (encode,
//! HTTP/2 both ways, decode) was a fifth of a create's CPU.

use futures::future::BoxFuture;

use super::{StorageError, Stored};

/// A condition of a transaction, on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The key does not exist (etcd: `create_revision == 0`).
    Absent(String),
    /// The key exists at this mod revision (etcd: `mod_revision == n`).
    At(String, i64),
}

/// A write of a transaction's success branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

/// A transaction: if every condition holds, the writes; otherwise each key of `otherwise` is
/// read (without its value), so the caller can tell why it failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub when: Vec<Condition>,
    pub then: Vec<Write>,
    pub otherwise: Vec<String>,
}

/// What a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnAnswer {
    pub succeeded: bool,
    /// The store's revision after the transaction (the new revision when it wrote).
    pub revision: i64,
    /// On failure: the mod revision of each key of `otherwise`, `None` where it is absent.
    pub found: Vec<Option<i64>>,
}

/// A linearizable read of `[start, end)` (`end` empty: the key `start` alone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Range {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
    /// At most this many keys (0: all).
    pub limit: i64,
    /// Read at this revision (0: the current one).
    pub revision: i64,
    /// Only count the keys.
    pub count_only: bool,
}

#[derive(Debug, Clone)]
pub struct RangeAnswer {
    pub items: Vec<Stored>,
    /// Every key in the range, the ones past `limit` included.
    pub count: i64,
    /// The store's current revision when it answered.
    pub revision: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Put,
    Delete,
}

/// One key's change, as a watch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub key: String,
    /// Empty for a delete. Shared with the store where it lives in the same process.
    pub value: bytes::Bytes,
    pub mod_revision: i64,
}

/// What a watch reports, in revision order. A revision's changes are never split across
/// messages; a replay of history may carry several revisions in one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMessage {
    Changes(Vec<Change>),
    /// Every change at or below this revision was reported before this message.
    Progress(i64),
}

/// A watch of every key under a prefix.
pub trait Watch: Send {
    /// The next message; `None` when the watch ended (its follower watches again from the
    /// revision it has). A start revision compacted away is `StorageError::Compacted`.
    fn next(&mut self) -> BoxFuture<'_, Result<Option<WatchMessage>, StorageError>>;

    /// Asks for a `Progress` at the store's current revision, after every change already
    /// on its way.
    fn request_progress(&mut self) -> BoxFuture<'_, Result<(), StorageError>>;
}

/// A store the API server keeps its objects in.
pub trait Backend: Send + Sync {
    /// Reads a range linearizably. A revision compacted away is `StorageError::Compacted`.
    fn range(&self, range: Range) -> BoxFuture<'_, Result<RangeAnswer, StorageError>>;

    /// Runs a transaction through the store's consensus.
    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnAnswer, StorageError>>;

    /// Watches every key under `prefix` from `from_revision` (inclusive).
    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        from_revision: i64,
    ) -> BoxFuture<'a, Result<Box<dyn Watch>, StorageError>>;
}
