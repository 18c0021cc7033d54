//! What goes through raft: the commands a member proposes and the results the state machine
//! answers with, and the raft type configuration that ties them to openraft.
//!
//! Commands are keel's own serde types rather than the generated protobuf messages: the log is
//! keel's on-disk format (postcard), and it must not change when the etcd-facing protos do.
//! Byte strings are marked `serde_bytes`: postcard then writes them as one length-prefixed
//! block instead of element by element (which cost 3% of a 3-member write load's CPU).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A member's raft identity. Derived from its peer URL (see [`member_id`]), so that every member
/// computes the same id for a peer from `--initial-cluster` alone, as etcd does.
pub type NodeId = u64;

/// What the raft membership records about a member: enough to dial it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    /// `http://host:port` of the member's raft (peer) listener.
    pub peer_url: String,
}

openraft::declare_raft_types!(
    /// keel's raft: commands on a u64-indexed log, members identified by their peer URL's hash.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = Member,
);

pub type LogId = openraft::LogId<openraft::alias::CommittedLeaderIdOf<TypeConfig>>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;

/// The id of the member whose raft listener is `peer_url`: the first 8 bytes of its SHA-256,
/// never 0 (etcd reserves 0 for "none").
pub fn member_id(peer_url: &str) -> NodeId {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(peer_url.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(id).max(1)
}

/// A key range as etcd spells it: `range_end` empty = the single key; `range_end` = `[0]` = every
/// key from `key` on; otherwise the half-open range `[key, range_end)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KeyRange {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
}

impl KeyRange {
    pub fn contains(&self, k: &[u8]) -> bool {
        if self.range_end.is_empty() {
            return k == self.key.as_slice();
        }
        if self.range_end == [0] {
            return k >= self.key.as_slice();
        }
        k >= self.key.as_slice() && k < self.range_end.as_slice()
    }

    pub fn is_single_key(&self) -> bool {
        self.range_end.is_empty()
    }
}

/// One stored version of a key, as etcd's `mvccpb.KeyValue`.
///
/// The value is shared, not owned: one version of a key is held by the current map, by its
/// event in the history, by the next version's event as `prev`, and by every watcher it is
/// sent to, and a snapshot copies the whole state under the state machine's lock. Copying a
/// reference instead of the bytes keeps each of those, and the lock hold, independent of how
/// large the objects are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KeyValue {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "shared_bytes")]
    pub value: bytes::Bytes,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// A change to one key at one revision; `prev` is the version it replaced (watchers asking for
/// `prev_kv` get it, and a read at an older revision undoes events with it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    /// For a delete: the key with `mod_revision` = the deleting revision and no value.
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SortOrder {
    #[default]
    None,
    Ascend,
    Descend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SortTarget {
    #[default]
    Key,
    Version,
    Create,
    Mod,
    Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RangeRequest {
    pub range: KeyRange,
    pub limit: i64,
    /// 0 = the current revision.
    pub revision: i64,
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    pub keys_only: bool,
    pub count_only: bool,
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    pub more: bool,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PutRequest {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub lease: i64,
    pub prev_kv: bool,
    pub ignore_value: bool,
    pub ignore_lease: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeleteRequest {
    pub range: KeyRange,
    pub prev_kv: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareResult {
    Equal,
    Greater,
    Less,
    NotEqual,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    Version(i64),
    Create(i64),
    Mod(i64),
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    Lease(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub range: KeyRange,
    pub result: CompareResult,
    pub target: CompareTarget,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    Range(RangeRequest),
    Put(PutRequest),
    Delete(DeleteRequest),
    Txn(TxnRequest),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOpResult {
    Range(RangeResult),
    Put {
        prev_kv: Option<KeyValue>,
    },
    Delete {
        deleted: i64,
        prev_kvs: Vec<KeyValue>,
    },
    Txn(TxnResult),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TxnResult {
    pub succeeded: bool,
    pub responses: Vec<TxnOpResult>,
}

/// A member's client-facing attributes, published through raft once it runs (etcd's
/// `publish`), so that every member's `MemberList` names every member's client URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MemberAttributes {
    pub name: String,
    pub client_urls: Vec<String>,
}

/// What a member proposes. Every variant is deterministic given the state it applies to: lease
/// expiry is decided by the leader's clock *before* proposing a revoke, never during apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Put, DeleteRange and Txn all travel as a transaction (a Put is a txn of one op).
    Txn(TxnRequest),
    Compact {
        revision: i64,
    },
    /// `id` 0: the state machine picks one (the entry's log index).
    LeaseGrant {
        id: i64,
        ttl: i64,
    },
    LeaseRevoke {
        id: i64,
    },
    PublishMember {
        id: NodeId,
        attributes: MemberAttributes,
    },
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Txn(t) => write!(
                f,
                "txn(compare {}, success {}, failure {})",
                t.compare.len(),
                t.success.len(),
                t.failure.len()
            ),
            Command::Compact { revision } => write!(f, "compact({revision})"),
            Command::LeaseGrant { id, ttl } => write!(f, "lease-grant({id:x}, {ttl}s)"),
            Command::LeaseRevoke { id } => write!(f, "lease-revoke({id:x})"),
            Command::PublishMember { id, attributes } => {
                write!(f, "publish({id:x}, {})", attributes.name)
            }
        }
    }
}

/// Why an applied command did nothing. These become the etcd error a client expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApplyError {
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
}

/// The state machine's answer to one command, with the revision after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    pub revision: i64,
    pub outcome: Result<Outcome, ApplyError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A blank or membership entry: nothing but the revision moved.
    Noop,
    Txn(TxnResult),
    Compacted,
    LeaseGranted {
        id: i64,
        ttl: i64,
    },
    LeaseRevoked,
    Published,
}

/// `bytes::Bytes` as serde bytes: the same encoding `serde_bytes` gives a `Vec<u8>`, so
/// snapshots written before the value was shared still decode.
mod shared_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &bytes::Bytes,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<bytes::Bytes, D::Error> {
        serde_bytes::ByteBuf::deserialize(deserializer)
            .map(|buf| bytes::Bytes::from(buf.into_vec()))
    }
}
