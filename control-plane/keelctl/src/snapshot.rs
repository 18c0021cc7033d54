//! `keelctl snapshot save|restore`: a backup of the store streamed from one member by the
//! Maintenance service, and a new data directory made from one.
//!
//! The backup is keel's own format (`keel_store::backup`), not etcd's bbolt file. `save`
//! writes `FILE.part`, verifies it (framing, checksum, that it decodes), syncs it and only
//! then renames it to `FILE`: a `FILE` that exists is a whole, valid backup.

use std::io::Write;
use std::path::{Path, PathBuf};

use keel_store::backup::{self, BackupError, Summary};

use crate::client::{self, ClientError, Target};
use crate::cluster::format_id;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(
        "a snapshot is taken from one member; {count} endpoints given (pass one with --endpoints)"
    )]
    OneEndpoint { count: usize },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the snapshot stream ended with {remaining} bytes still announced")]
    EndedEarly { remaining: u64 },
    #[error("the member sent {extra} bytes more than it announced")]
    Overlong { extra: u64 },
    #[error("the received snapshot is not valid: {0}")]
    Received(BackupError),
    #[error("{file}: {source}")]
    Backup { file: PathBuf, source: BackupError },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `FILE.part`: where a backup is written until it is whole and verified.
pub fn part_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// What `save` wrote.
#[derive(Debug, Clone)]
pub struct Saved {
    pub path: PathBuf,
    pub summary: Summary,
    /// The member that sent it.
    pub member_id: u64,
}

/// Receives the snapshot into `part`, checking its length against what the member
/// announced. Each message may take up to the command timeout; the whole transfer has no
/// deadline, as etcdctl's has none (a large store takes as long as it takes).
async fn receive(
    target: &Target,
    endpoint: &str,
    part: &Path,
) -> Result<(u64, u64), SnapshotError> {
    let mut client = client::connect(&[endpoint.to_owned()], target.timeout).await?;
    let mut stream = client::ask(endpoint, target.timeout, client.snapshot()).await?;
    let mut file = std::fs::File::create(part).map_err(io_error(part))?;
    let mut written: u64 = 0;
    let mut announced: Option<u64> = None;
    let mut member_id = 0;
    loop {
        let Some(message) = client::ask(endpoint, target.timeout, stream.message()).await? else {
            break;
        };
        if let Some(header) = message.header() {
            member_id = header.member_id();
        }
        let blob = message.blob();
        file.write_all(blob).map_err(io_error(part))?;
        written += blob.len() as u64;
        // The first message says how much follows it; every later one must agree.
        let total = written + message.remaining_bytes();
        match announced {
            None => announced = Some(total),
            Some(expected) if total > expected => {
                return Err(SnapshotError::Overlong {
                    extra: total - expected,
                })
            }
            Some(_) => {}
        }
    }
    let expected = announced.unwrap_or(0);
    if written < expected {
        return Err(SnapshotError::EndedEarly {
            remaining: expected - written,
        });
    }
    file.sync_all().map_err(io_error(part))?;
    Ok((written, member_id))
}

/// `keelctl snapshot save FILE`: streams the snapshot of the one member in `target` to
/// `FILE.part`, verifies it, syncs it and renames it to `FILE`.
pub async fn save(target: &Target, file: &Path) -> Result<Saved, SnapshotError> {
    let [endpoint] = target.endpoints.as_slice() else {
        return Err(SnapshotError::OneEndpoint {
            count: target.endpoints.len(),
        });
    };
    let part = part_path(file);
    let received = receive(target, endpoint, &part).await;
    let verified = received.and_then(|(_, member_id)| {
        backup::inspect(&part)
            .map(|summary| (summary, member_id))
            .map_err(SnapshotError::Received)
    });
    let (summary, member_id) = match verified {
        Ok(v) => v,
        Err(e) => {
            // A partial or invalid download is of no use to anyone.
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    std::fs::rename(&part, file).map_err(io_error(file))?;
    // The rename itself survives a crash only once its directory is synced.
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))?;
    Ok(Saved {
        path: file.to_owned(),
        summary,
        member_id,
    })
}

pub fn render_saved(saved: &Saved) -> String {
    format!(
        "Snapshot saved at {} ({} bytes, revision {}, {} keys, from member {})\n",
        saved.path.display(),
        saved.summary.bytes,
        saved.summary.revision,
        saved.summary.keys,
        format_id(saved.member_id),
    )
}

/// What `snapshot restore` is asked to do.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub file: PathBuf,
    pub data_dir: PathBuf,
    pub name: String,
    pub peer_url: String,
}

/// `keelctl snapshot restore`: a new data directory for a one-member cluster holding the
/// backup's keys (see `keel_store::backup::restore_snapshot`).
pub fn restore(request: &RestoreRequest) -> Result<backup::Restored, SnapshotError> {
    backup::restore_snapshot(
        &request.file,
        &request.data_dir,
        &request.name,
        &request.peer_url,
    )
    .map_err(|source| SnapshotError::Backup {
        file: request.file.clone(),
        source,
    })
}

pub fn render_restored(request: &RestoreRequest, restored: &backup::Restored) -> String {
    format!(
        "Restored revision {rev} ({keys} keys, {leases} leases) into {dir} as member {name} (id {id}).\n\n\
         Start it as a new one-member cluster; its id is derived from its peer URL, so it must \
         advertise exactly this one:\n\
         \x20 control-plane --name={name} --data-dir={dir} --advertise-peer-url={url}\n\
         Add more members afterwards with `keelctl member add`.\n",
        rev = restored.summary.revision,
        keys = restored.summary.keys,
        leases = restored.summary.leases,
        dir = request.data_dir.display(),
        name = request.name,
        id = format_id(restored.member_id),
        url = request.peer_url,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_store::state_machine::State;
    use keel_store::types::{PutRequest, TxnOp, TxnRequest};

    fn state_with(keys: &[(&str, &str)]) -> State {
        let mut state = State::default();
        for (i, (k, v)) in keys.iter().enumerate() {
            let put = TxnRequest {
                success: vec![TxnOp::Put(PutRequest {
                    key: k.as_bytes().to_vec(),
                    value: v.as_bytes().to_vec(),
                    ..PutRequest::default()
                })],
                ..TxnRequest::default()
            };
            let revision = i as i64 + 2;
            state.kv.apply_txn(&put, revision, &mut Vec::new()).ok();
            state.kv.advance(revision);
        }
        state
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).ok();
        path
    }

    fn request(file: PathBuf, data_dir: PathBuf) -> RestoreRequest {
        RestoreRequest {
            file,
            data_dir,
            name: "m0".into(),
            peer_url: "http://127.0.0.1:2380".into(),
        }
    }

    #[test]
    fn the_part_file_sits_beside_the_target() {
        assert_eq!(part_path(Path::new("/b/s.db")), Path::new("/b/s.db.part"));
        assert_eq!(part_path(Path::new("s")), Path::new("s.part"));
    }

    #[test]
    fn garbage_truncated_and_empty_files_are_refused_with_their_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = backup::encode(&state_with(&[("/a", "1")])).expect("encoded");
        let mut bolt = vec![0u8; 64];
        bolt[16..20].copy_from_slice(&0xED0C_DAEDu32.to_le_bytes());
        let mut flipped = good.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        let mut future = good.clone();
        future[8..12].copy_from_slice(&99u32.to_be_bytes());
        let cases: [(&str, Vec<u8>, &str); 7] = [
            ("empty", Vec::new(), "empty"),
            (
                "garbage",
                b"hello, I am not a snapshot at all".to_vec(),
                "not a keel snapshot",
            ),
            ("bolt", bolt, "bbolt"),
            ("short", b"KEEL".to_vec(), "truncated"),
            ("cut", good[..good.len() - 1].to_vec(), "checksum"),
            ("flipped", flipped, "checksum"),
            ("future", future, "format 99"),
        ];
        for (name, bytes, expected) in cases {
            let file = write(dir.path(), name, &bytes);
            let target = dir.path().join(format!("{name}.restored"));
            let error = restore(&request(file.clone(), target.clone()))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains(expected), "{name}: {error:?}");
            assert!(
                error.contains(&file.display().to_string()),
                "{name}: {error:?}"
            );
            assert!(
                !target.exists(),
                "{name}: a refused restore left {target:?}"
            );
        }
        let missing = restore(&request(dir.path().join("nope"), dir.path().join("x")));
        assert!(missing.is_err());
    }

    #[test]
    fn a_non_empty_data_directory_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(
            dir.path(),
            "s",
            &backup::encode(&state_with(&[])).expect("encoded"),
        );
        let data_dir = dir.path().join("data");
        std::fs::create_dir(&data_dir).ok();
        write(&data_dir, "precious", b"keep me");
        let error = restore(&request(file.clone(), data_dir.clone())).err();
        assert!(
            error
                .as_ref()
                .is_some_and(|e| e.to_string().contains("not empty")),
            "{error:?}"
        );
        assert_eq!(
            std::fs::read(data_dir.join("precious")).ok(),
            Some(b"keep me".to_vec())
        );
        // A file where the directory should be.
        let error = restore(&request(file, data_dir.join("precious"))).err();
        assert!(error.is_some_and(|e| e.to_string().contains("not a directory")),);
    }

    #[test]
    fn hostile_names_and_urls_are_refused_before_reading() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(
            dir.path(),
            "s",
            &backup::encode(&state_with(&[])).expect("encoded"),
        );
        for (name, url) in [
            ("", "http://127.0.0.1:2380"),
            ("a\nb", "http://127.0.0.1:2380"),
            ("a=b", "http://127.0.0.1:2380"),
            ("m0", "127.0.0.1:2380"),
            ("m0", "http://"),
            ("m0", "http://h:1 x"),
        ] {
            let mut r = request(file.clone(), dir.path().join("d"));
            r.name = name.into();
            r.peer_url = url.into();
            assert!(restore(&r).is_err(), "{name:?} {url:?} was accepted");
            assert!(!dir.path().join("d").exists());
        }
    }

    #[test]
    fn a_restored_directory_loads_with_the_same_keys_and_one_member() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state = state_with(&[("/registry/a", "1"), ("/registry/b", "2")]);
        state.kv.advance(9);
        let file = write(dir.path(), "s", &backup::encode(&state).expect("encoded"));
        let summary = backup::inspect(&file).expect("inspected");
        assert_eq!((summary.revision, summary.keys), (9, 2));
        // An existing empty directory is fine.
        let data_dir = dir.path().join("data");
        std::fs::create_dir(&data_dir).ok();
        let req = request(file, data_dir.clone());
        let restored = restore(&req).expect("restored");
        assert_eq!(restored.index, 9);
        assert_eq!(
            restored.member_id,
            keel_store::types::member_id(&req.peer_url)
        );
        let text = render_restored(&req, &restored);
        assert!(text.contains("Restored revision 9 (2 keys"), "{text}");
        let sm = keel_store::state_machine::StateMachine::open(
            &data_dir.join("snapshots"),
            keel_store::metrics::StoreMetrics::default(),
        )
        .expect("the restored state machine opens");
        let inner = sm.lock();
        assert_eq!(inner.state.kv.revision(), 9);
        assert_eq!(inner.state.kv.len(), 2);
        assert_eq!(inner.state.last_applied.map(|l| l.index), Some(9));
        let membership = inner.state.membership.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        assert_eq!(voters, vec![restored.member_id]);
        assert_eq!(
            membership
                .get_node(&restored.member_id)
                .map(|n| n.name.as_str()),
            Some("m0")
        );
        assert!(inner.state.members.is_empty());
        drop(inner);
        // Restoring again into the now non-empty directory is refused.
        assert!(restore(&req).is_err());
    }
}
