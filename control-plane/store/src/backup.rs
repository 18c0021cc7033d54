//! keel's backup format: what the Maintenance service's `Snapshot` streams (`keelctl snapshot
//! save`, `etcdctl snapshot save`) and what `keelctl snapshot restore` builds a data directory
//! from.
//!
//! etcd streams its bbolt database; keel's state lives in the state machine (memory, made
//! durable by its snapshot files and the raft log), so a backup is the state machine's
//! [`State`] — the keyspace with its history, the leases, the membership — framed so that a
//! file that is not one, or was cut short, is told apart from one that is:
//!
//! ```text
//! "KEELSNAP" | format version (u32, big endian) | postcard(State) | zeros | SHA-256 of all before it
//! ```
//!
//! The zeros (format 2; format 1 had none) pad what the checksum covers to a multiple of 512
//! bytes: `etcdctl snapshot save` (3.4) keeps only a download whose size is 32 more than a
//! multiple of 512, the shape of etcd's bbolt pages plus their SHA-256, and deletes any other
//! as truncated.
//!
//! Restoring writes a data directory that holds only a state machine snapshot, rewritten for
//! a new cluster of one member (as `etcdutl snapshot restore` does): the backup's keys, their
//! revisions, history and leases, and a membership of just the new member. Its raft log is
//! left empty: at first start openraft takes the snapshot as applied and the log before it as
//! purged (`get_initial_state`), so the member counts as initialized (it does not form a
//! cluster from `--initial-cluster`), elects itself, and its revisions go on after the
//! backup's.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use openraft::alias::LeaderIdOf;
use openraft::vote::RaftLeaderId;
use sha2::Digest;

use crate::metrics::StoreMetrics;
use crate::state_machine::{State, StateMachine};
use crate::types::{member_id, LogId, Member, NodeId, SnapshotMeta, StoredMembership, TypeConfig};

/// The first bytes of every backup.
pub const MAGIC: &[u8; 8] = b"KEELSNAP";
/// The layout of the bytes after the magic; bumped when [`State`]'s encoding changes.
pub const FORMAT_VERSION: u32 = 2;
/// Format 1: no padding before the checksum. Still read.
const FORMAT_UNPADDED: u32 = 1;
/// The unit etcd's snapshot size check counts in (its database page size).
const PAD_TO: usize = 512;
const HEADER_LEN: usize = MAGIC.len() + 4;
const CHECKSUM_LEN: usize = 32;
/// Where the state machine keeps its snapshot inside a data directory (`Member::start`).
const SNAPSHOTS_DIR: &str = "snapshots";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the snapshot is empty (0 bytes)")]
    Empty,
    #[error("not a keel snapshot: it does not start with \"KEELSNAP\"{hint}")]
    NotASnapshot { hint: &'static str },
    #[error("the snapshot is truncated: {len} bytes, fewer than the {min} of the smallest one")]
    Truncated { len: usize, min: usize },
    #[error(
        "keel snapshot format {found} is not supported (this keel reads formats {FORMAT_UNPADDED} and {FORMAT_VERSION})"
    )]
    UnsupportedVersion { found: u32 },
    #[error("the snapshot's checksum does not match its contents: it is truncated or corrupted")]
    Checksum,
    #[error("the snapshot's state does not decode ({0}): it was written by an incompatible keel")]
    Decode(String),
    #[error("encoding the state: {0}")]
    Encode(String),
    #[error("{path} is not empty: a restore only writes a new data directory (remove it, or name another)")]
    DataDirNotEmpty { path: PathBuf },
    #[error("{path} exists and is not a directory")]
    DataDirNotADirectory { path: PathBuf },
    #[error("invalid member name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("invalid peer URL {url:?}: it must be http(s)://host:port")]
    InvalidPeerUrl { url: String },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Frames `state` as a backup. Walks the whole keyspace: callers holding the state lock keep
/// applies waiting for that long, as a state machine snapshot does.
pub fn encode(state: &State) -> Result<Vec<u8>, BackupError> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + state.kv.approximate_size() + CHECKSUM_LEN);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    let mut bytes =
        postcard::to_extend(state, bytes).map_err(|e| BackupError::Encode(e.to_string()))?;
    bytes.resize(bytes.len().div_ceil(PAD_TO) * PAD_TO, 0);
    let sum = sha2::Sha256::digest(&bytes);
    bytes.extend_from_slice(&sum);
    Ok(bytes)
}

/// An etcd bbolt database has its meta page's magic at offset 16: worth naming, since
/// `etcdctl snapshot save` against etcd makes a file of that shape.
fn bbolt_hint(bytes: &[u8]) -> &'static str {
    if bytes.get(16..20) == Some(&0xED0C_DAEDu32.to_le_bytes()[..]) {
        " (it is an etcd bbolt database: restore it with etcdutl into an etcd)"
    } else {
        ""
    }
}

/// Checks the framing and the checksum, then decodes the state. Nothing is decoded before the
/// checksum matched, so garbage never reaches the decoder.
pub fn decode(bytes: &[u8]) -> Result<State, BackupError> {
    let min = HEADER_LEN + CHECKSUM_LEN;
    if bytes.is_empty() {
        return Err(BackupError::Empty);
    }
    // A file shorter than the magic but agreeing with it is a truncated backup, not garbage.
    let head = &bytes[..bytes.len().min(MAGIC.len())];
    if !MAGIC.starts_with(head) {
        return Err(BackupError::NotASnapshot {
            hint: bbolt_hint(bytes),
        });
    }
    if bytes.len() < min {
        return Err(BackupError::Truncated {
            len: bytes.len(),
            min,
        });
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&bytes[MAGIC.len()..HEADER_LEN]);
    let found = u32::from_be_bytes(version);
    if found != FORMAT_VERSION && found != FORMAT_UNPADDED {
        return Err(BackupError::UnsupportedVersion { found });
    }
    let (framed, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if sha2::Sha256::digest(framed).as_slice() != sum {
        return Err(BackupError::Checksum);
    }
    let (state, rest) = postcard::take_from_bytes::<State>(&framed[HEADER_LEN..])
        .map_err(|e| BackupError::Decode(e.to_string()))?;
    // Format 2's padding: fewer zeros than a page, nothing else.
    let padding_ok = found == FORMAT_VERSION && rest.len() < PAD_TO && rest.iter().all(|&b| b == 0);
    if !rest.is_empty() && !padding_ok {
        return Err(BackupError::Decode(format!(
            "{} bytes after the state",
            rest.len()
        )));
    }
    Ok(state)
}

/// What a backup holds, in figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The store revision the backup was taken at.
    pub revision: i64,
    pub compact_revision: i64,
    /// Live keys (not counting history).
    pub keys: usize,
    pub leases: usize,
    /// Size of the backup file.
    pub bytes: u64,
}

impl Summary {
    fn of(state: &State, bytes: usize) -> Self {
        Self {
            revision: state.kv.revision(),
            compact_revision: state.kv.compact_revision(),
            keys: state.kv.len(),
            leases: state.kv.leases().len(),
            bytes: bytes as u64,
        }
    }
}

fn read(file: &Path) -> Result<(State, usize), BackupError> {
    let bytes = fs::read(file).map_err(io_error(file))?;
    Ok((decode(&bytes)?, bytes.len()))
}

/// Reads and verifies the backup in `file`.
pub fn inspect(file: &Path) -> Result<Summary, BackupError> {
    let (state, len) = read(file)?;
    Ok(Summary::of(&state, len))
}

/// What [`restore_snapshot`] made.
#[derive(Debug, Clone)]
pub struct Restored {
    pub summary: Summary,
    /// The new member's id (derived from its peer URL, as at every start).
    pub member_id: NodeId,
    /// The raft index the restored state stands at; the member's next entry follows it.
    pub index: u64,
}

fn check_name(name: &str) -> Result<(), BackupError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.chars().any(char::is_control) {
        "it contains a control character"
    } else if name.contains([',', '=']) || name.chars().any(char::is_whitespace) {
        "it contains ',', '=' or whitespace (it goes into --initial-cluster)"
    } else {
        return Ok(());
    };
    Err(BackupError::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

fn check_peer_url(url: &str) -> Result<(), BackupError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(host)
            if !host.is_empty() && !url.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(())
        }
        _ => Err(BackupError::InvalidPeerUrl {
            url: url.to_owned(),
        }),
    }
}

/// `data_dir` must be absent or an empty directory; true when this call created it.
fn prepare_data_dir(data_dir: &Path) -> Result<bool, BackupError> {
    match fs::metadata(data_dir) {
        Ok(meta) if !meta.is_dir() => Err(BackupError::DataDirNotADirectory {
            path: data_dir.to_owned(),
        }),
        Ok(_) => {
            let mut entries = fs::read_dir(data_dir).map_err(io_error(data_dir))?;
            if entries.next().is_some() {
                return Err(BackupError::DataDirNotEmpty {
                    path: data_dir.to_owned(),
                });
            }
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(data_dir).map_err(io_error(data_dir))?;
            Ok(true)
        }
        Err(e) => Err(io_error(data_dir)(e)),
    }
}

/// The backup's state as the first state of a new cluster whose only member is
/// `(name, peer_url)`, and the snapshot metadata openraft starts from.
fn rebase(
    mut state: State,
    name: &str,
    peer_url: &str,
) -> Result<(State, SnapshotMeta, NodeId, u64), BackupError> {
    let id = member_id(peer_url);
    // The raft index must not fall behind the revision: the revision is the applied index,
    // and the member's next entry (index + 1) must make a newer one.
    let revision = u64::try_from(state.kv.revision()).unwrap_or(0);
    let index = state
        .last_applied
        .map_or(0, |log_id| log_id.index)
        .max(revision);
    // Term 0, led by the new member: the vote a pristine member starts with is (0, itself),
    // so its first election (term 1) is newer than every log id it holds, whatever terms
    // the old cluster had reached.
    let leader = <LeaderIdOf<TypeConfig> as RaftLeaderId>::new(0, id);
    let log_id = LogId::new(leader.to_committed(), index);
    let nodes = BTreeMap::from([(
        id,
        Member {
            name: name.to_owned(),
            peer_url: peer_url.to_owned(),
        },
    )]);
    let membership = openraft::Membership::new(vec![BTreeSet::from([id])], nodes)
        .map_err(|e| BackupError::Encode(format!("the new membership: {e}")))?;
    let stored = StoredMembership::new(Some(log_id), membership);
    state.last_applied = Some(log_id);
    state.membership = stored.clone();
    // The old members' published client URLs; the new member publishes its own at start.
    state.members.clear();
    let meta = SnapshotMeta {
        last_log_id: Some(log_id),
        last_membership: stored,
    };
    Ok((state, meta, id, index))
}

fn write_state_machine(
    snapshots: &Path,
    state: &State,
    meta: &SnapshotMeta,
) -> Result<(), BackupError> {
    let data = postcard::to_stdvec(state).map_err(|e| BackupError::Encode(e.to_string()))?;
    let sm = StateMachine::open(snapshots, StoreMetrics::default()).map_err(io_error(snapshots))?;
    // The state machine's own install writes the file (synced, renamed, directory synced), so
    // a restored directory is byte for byte what a member writes; it blocks, and needs no
    // runtime.
    sm.install(meta, data).map_err(io_error(snapshots))?;
    // Read it back as a starting member will: a restore that does not load is refused now
    // rather than at the member's first start.
    let reopened =
        StateMachine::open(snapshots, StoreMetrics::default()).map_err(io_error(snapshots))?;
    let loaded = reopened.lock().state.kv.revision();
    if loaded != state.kv.revision() {
        return Err(BackupError::Decode(format!(
            "the restored snapshot loads at revision {loaded}, not {}",
            state.kv.revision()
        )));
    }
    Ok(())
}

/// Builds a new data directory `data_dir` (absent or empty) from the backup in `file`, for a
/// member named `member_name` that advertises `peer_url` (its id derives from it, so it must
/// start with exactly that URL). The member then starts as a cluster of one holding the
/// backup's keys at their revisions; more members join it with `member add`.
pub fn restore_snapshot(
    file: &Path,
    data_dir: &Path,
    member_name: &str,
    peer_url: &str,
) -> Result<Restored, BackupError> {
    check_name(member_name)?;
    check_peer_url(peer_url)?;
    // Before touching the directory: a bad backup leaves nothing behind.
    let (state, len) = read(file)?;
    let created = prepare_data_dir(data_dir)?;
    let summary = Summary::of(&state, len);
    let (state, meta, member_id, index) = rebase(state, member_name, peer_url)?;
    let snapshots = data_dir.join(SNAPSHOTS_DIR);
    let written = write_state_machine(&snapshots, &state, &meta).and_then(|()| {
        // The directory entry of `snapshots` itself.
        fs::File::open(data_dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(data_dir))
    });
    if let Err(e) = written {
        // Leave the directory as it was found, so that a retry is not refused as non-empty.
        let _ = fs::remove_dir_all(&snapshots);
        if created {
            let _ = fs::remove_dir(data_dir);
        }
        return Err(e);
    }
    Ok(Restored {
        summary,
        member_id,
        index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        let mut state = State::default();
        let put = crate::types::TxnRequest {
            success: vec![crate::types::TxnOp::Put(crate::types::PutRequest {
                key: b"/a".to_vec(),
                value: vec![b'v'; 700],
                ..Default::default()
            })],
            ..Default::default()
        };
        state.kv.apply_txn(&put, 2, &mut Vec::new()).ok();
        state.kv.advance(2);
        state
    }

    /// Frames `body` (the bytes after the header) with a version and a correct checksum.
    fn framed(version: u32, body: &[u8]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&version.to_be_bytes());
        bytes.extend_from_slice(body);
        let sum = sha2::Sha256::digest(&bytes);
        bytes.extend_from_slice(&sum);
        bytes
    }

    #[test]
    fn a_backup_has_the_size_etcdctl_snapshot_save_keeps() {
        for state in [State::default(), state()] {
            let bytes = encode(&state).expect("encoded");
            assert_eq!(bytes.len() % 512, 32, "{} bytes", bytes.len());
            assert_eq!(
                decode(&bytes).expect("decoded").kv.revision(),
                state.kv.revision()
            );
        }
    }

    #[test]
    fn unpadded_format_1_backups_still_restore() {
        let body = postcard::to_stdvec(&state()).expect("encoded");
        let decoded = decode(&framed(FORMAT_UNPADDED, &body)).expect("format 1 decodes");
        assert_eq!(decoded.kv.revision(), 2);
    }

    #[test]
    fn only_zeros_short_of_a_page_may_follow_the_state() {
        let body = postcard::to_stdvec(&state()).expect("encoded");
        let with = |tail: &[u8], version| {
            let mut b = body.clone();
            b.extend_from_slice(tail);
            decode(&framed(version, &b))
        };
        assert!(with(&[0; 100], FORMAT_VERSION).is_ok());
        for (tail, version) in [
            (&[0u8, 0, 1][..], FORMAT_VERSION),
            (&[0; PAD_TO][..], FORMAT_VERSION),
            (&[0; 3][..], FORMAT_UNPADDED),
        ] {
            let err = with(tail, version).expect_err("refused");
            assert!(err.to_string().contains("bytes after the state"), "{err}");
        }
        let err = decode(&framed(3, &body)).expect_err("future format");
        assert!(err.to_string().contains("formats 1 and 2"), "{err}");
    }
}
