//! keel's cgroup: where its socket programs are attached, and where the processes whose
//! connections keel translates live.
//!
//! Hosts mount cgroup2 either at `/sys/fs/cgroup` (pure v2, most production hosts) or beside
//! the v1 hierarchies, at `/sys/fs/cgroup/unified` (hybrid). The mount is found at start-up.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use thiserror::Error;

/// The directory keel owns under the cgroup2 mount, unless told otherwise.
pub const DEFAULT_CGROUP_NAME: &str = "keel";

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("cannot read the mount table: {0}")]
    MountInfo(#[from] procfs::ProcError),
    #[error("no cgroup2 file system is mounted (checked /proc/self/mountinfo)")]
    NoCgroup2,
    #[error("{path} is not a directory on a cgroup2 mount (mounted at {mount})")]
    NotCgroup2 { path: PathBuf, mount: PathBuf },
    #[error("cannot create cgroup {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot remove cgroup {path}: {source} (processes still in it?)")]
    Remove { path: PathBuf, source: io::Error },
}

/// Where cgroup2 is mounted. With several mounts, the shortest path wins (`/sys/fs/cgroup`
/// over a bind mount below it).
pub fn cgroup2_mount() -> Result<PathBuf, CgroupError> {
    let mounts = procfs::process::Process::myself()?.mountinfo()?;
    mounts
        .into_iter()
        .filter(|m| m.fs_type == "cgroup2")
        .map(|m| m.mount_point)
        .min_by_key(|p| p.as_os_str().len())
        .ok_or(CgroupError::NoCgroup2)
}

/// keel's default cgroup: `<cgroup2 mount>/keel`.
pub fn default_cgroup() -> Result<PathBuf, CgroupError> {
    Ok(cgroup2_mount()?.join(DEFAULT_CGROUP_NAME))
}

/// Creates `path` if needed; it must lie on the cgroup2 mount. Returns whether it was created.
pub fn ensure(path: &Path) -> Result<bool, CgroupError> {
    let mount = cgroup2_mount()?;
    if !path.starts_with(&mount) {
        return Err(CgroupError::NotCgroup2 {
            path: path.to_owned(),
            mount,
        });
    }
    if path == mount {
        tracing::warn!(cgroup = %path.display(), "attaching to the cgroup2 root: every process on the host is affected");
    }
    match fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(CgroupError::Create {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Removes the cgroup `path` (and its empty children, deepest first). A missing cgroup is not
/// an error; one that still holds processes is.
/// Returns whether there was one.
pub fn remove(path: &Path) -> Result<bool, CgroupError> {
    if !path.exists() {
        return Ok(false);
    }
    let children: Vec<PathBuf> = fs::read_dir(path)
        .map_err(|source| CgroupError::Remove {
            path: path.to_owned(),
            source,
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    for child in children {
        remove(&child)?;
    }
    // cgroupfs directories are removed with rmdir even though they list files.
    fs::remove_dir(path).map_err(|source| CgroupError::Remove {
        path: path.to_owned(),
        source,
    })?;
    Ok(true)
}
