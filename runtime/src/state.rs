//! The node's state directory: everything keel must remember about pods across a daemon
//! restart lives here, as small JSON files written atomically.
//!
//! ```text
//! <state-dir>/
//!   images/            the image store (see `image`)
//!   ipam/<ip>          the uid of the pod holding that address
//!   pods/<uid>/
//!     pod.json         the pod as applied (its spec decides the uid)
//!     sandbox.json     the pause process and the pod's address
//!     runtime.json     per container: status, restart count, back-off, the shim's identity
//!     status.json      the pod's status, Kubernetes field names
//!     events.json      the pod's events
//!     hosts, hostname, resolv.conf   files bind-mounted into every container
//!     containers/<name>/
//!       spec.json      what the shim runs (written by the daemon)
//!       running.json   written by the shim once the container's process has started
//!       exit.json      written by the shim once it has reaped the container
//!       shim.log       the shim's own messages
//!       upper/ work/ rootfs/   the container's writable overlay layer and mount point
//!     logs/<name>/<restart>.log
//!     volumes/<name>/  an emptyDir (a tmpfs mounted here for medium: Memory)
//! ```

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

/// Where node state lives unless `--state-dir` says otherwise (as the kubelet's /var/lib/kubelet).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/keel";

#[derive(Debug, Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not valid JSON for keel's state: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

pub fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The paths of the state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    pub fn ipam(&self) -> PathBuf {
        self.root.join("ipam")
    }

    pub fn pods(&self) -> PathBuf {
        self.root.join("pods")
    }

    pub fn pod(&self, uid: &str) -> PodDir {
        PodDir {
            dir: self.pods().join(uid),
        }
    }

    /// The uids of every pod with a directory here.
    pub fn pod_uids(&self) -> Result<Vec<String>, StateError> {
        let dir = self.pods();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StateError::Io { path: dir, source }),
        };
        let mut uids: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        uids.sort();
        Ok(uids)
    }
}

/// One pod's directory.
#[derive(Clone, Debug)]
pub struct PodDir {
    pub dir: PathBuf,
}

impl PodDir {
    pub fn pod_json(&self) -> PathBuf {
        self.dir.join("pod.json")
    }
    pub fn sandbox_json(&self) -> PathBuf {
        self.dir.join("sandbox.json")
    }
    pub fn status_json(&self) -> PathBuf {
        self.dir.join("status.json")
    }
    pub fn container(&self, name: &str) -> ContainerDir {
        ContainerDir {
            dir: self.dir.join("containers").join(name),
        }
    }
    /// The pod's emptyDir volumes, one directory each.
    pub fn volumes(&self) -> PathBuf {
        self.dir.join("volumes")
    }
    pub fn volume(&self, name: &str) -> PathBuf {
        self.volumes().join(name)
    }
    pub fn log_dir(&self, container: &str) -> PathBuf {
        self.dir.join("logs").join(container)
    }
    /// The log file of a container's `restart`-th run (0 for the first).
    pub fn log_file(&self, container: &str, restart: u32) -> PathBuf {
        self.log_dir(container).join(format!("{restart}.log"))
    }

    /// Where a container's logs are, newest run first.
    pub fn log_files(&self, container: &str) -> Vec<PathBuf> {
        let mut files: Vec<(u32, PathBuf)> = fs::read_dir(self.log_dir(container))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let n = e.path().file_stem()?.to_str()?.parse().ok()?;
                Some((n, e.path()))
            })
            .collect();
        files.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
        files.into_iter().map(|(_, p)| p).collect()
    }
}

/// One container's directory in its pod's.
#[derive(Clone, Debug)]
pub struct ContainerDir {
    pub dir: PathBuf,
}

impl ContainerDir {
    pub fn spec_json(&self) -> PathBuf {
        self.dir.join("spec.json")
    }
    pub fn running_json(&self) -> PathBuf {
        self.dir.join("running.json")
    }
    pub fn exit_json(&self) -> PathBuf {
        self.dir.join("exit.json")
    }
    pub fn shim_log(&self) -> PathBuf {
        self.dir.join("shim.log")
    }
}

/// Writes `value` as JSON through a temporary file and a rename, so a reader (or a daemon
/// killed mid-write) sees the old file or the new one, never half of one.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    write_bytes(path, &to_json(path, value)?)
}

/// `value` as the pretty JSON the state files hold; an error names `path`, its destination.
fn to_json<T: Serialize>(path: &Path, value: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec_pretty(value).map_err(|source| StateError::Json {
        path: path.to_owned(),
        source,
    })
}

/// Replaces `path` with `text` through a temporary file and a rename.
fn write_bytes(path: &Path, text: &[u8]) -> Result<(), StateError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, text).map_err(io_error(&tmp))?;
    fs::rename(&tmp, path).map_err(io_error(path))
}

/// [`write_json`], unless `value` serialises to `last` (what this caller wrote last): a pod's
/// worker publishes after every turn of its loop, mostly with nothing new, and each write is a
/// new inode (the temporary file). `last` is updated only once the write succeeded. Returns
/// whether the file was written.
pub fn write_json_if_changed<T: Serialize>(
    path: &Path,
    value: &T,
    last: &mut Option<Vec<u8>>,
) -> Result<bool, StateError> {
    let text = to_json(path, value)?;
    if last.as_deref() == Some(text.as_slice()) {
        return Ok(false);
    }
    write_bytes(path, &text)?;
    *last = Some(text);
    Ok(true)
}

/// Reads a JSON file written by [`write_json`]; `None` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| StateError::Json {
            path: path.to_owned(),
            source,
        })
}

/// Removes a file that may not exist.
pub fn remove_file(path: &Path) -> Result<(), StateError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StateError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_corrupt_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/value.json");
        assert_eq!(read_json::<Vec<u32>>(&path).expect("missing is fine"), None);
        write_json(&path, &vec![1u32, 2]).expect("write");
        assert_eq!(
            read_json::<Vec<u32>>(&path).expect("read"),
            Some(vec![1, 2])
        );
        fs::write(&path, "{not json").expect("corrupt");
        let err = read_json::<Vec<u32>>(&path).expect_err("corrupt");
        assert!(err.to_string().contains("value.json"), "{err}");
    }

    #[test]
    fn an_unchanged_value_is_not_written_again() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pod/status.json");
        let mut last = None;
        assert!(write_json_if_changed(&path, &vec![1u32], &mut last).expect("first"));
        let inode = fs::metadata(&path).expect("written").ino();
        assert!(!write_json_if_changed(&path, &vec![1u32], &mut last).expect("same"));
        assert_eq!(
            fs::metadata(&path).expect("kept").ino(),
            inode,
            "not replaced"
        );
        assert!(write_json_if_changed(&path, &vec![2u32], &mut last).expect("changed"));
        assert_eq!(read_json::<Vec<u32>>(&path).expect("read"), Some(vec![2]));

        // A failed write leaves `last` alone, so the next call tries again.
        let blocked = dir.path().join("file-not-dir");
        fs::write(&blocked, "x").expect("a file");
        let mut last = Some(b"[\n  1\n]".to_vec());
        let err = write_json_if_changed(&blocked.join("status.json"), &vec![3u32], &mut last)
            .expect_err("a file is no directory");
        assert!(err.to_string().contains("file-not-dir"), "{err}");
        assert_eq!(last.as_deref(), Some(&b"[\n  1\n]"[..]));
    }
}
