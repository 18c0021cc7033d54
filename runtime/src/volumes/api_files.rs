//! The files of volumes that come from the API server (secret, configMap, downwardAPI,
//! projected). The runtime does not talk to the API server: whoever does (the node daemon)
//! hands their contents over through [`VolumeContents`], and this module writes them.
//!
//! Each such volume is a tmpfs, so Secrets and tokens never reach the node's disk, written the
//! way the kubelet's `AtomicWriter` writes: the files go into a fresh hidden directory
//! (`..<time>`), the `..data` link is renamed onto it in one step, and each top-level name is a
//! link through `..data`. A container reading the volume while a token is refreshed sees the
//! old set or the new one, never a mix; containers mount it read-only.

use std::{
    fs, io,
    os::unix::fs::{symlink, PermissionsExt},
    path::{Component, Path},
    sync::atomic::{AtomicU64, Ordering},
};

use nix::mount::{mount, MsFlags};

use super::VolumeError;

/// The tmpfs of one such volume holds at most this much (a Secret is at most 1 MiB; a
/// projected volume a few of them).
const TMPFS_SIZE: &str = "64m";
/// Where the data directory in effect is named.
const DATA_LINK: &str = "..data";
/// A hash of the files in effect: an unchanged set is not written again.
const FINGERPRINT: &str = "..fingerprint";

/// One file of a volume: its path inside the volume, bytes and permission bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeFile {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

/// The contents of API-backed volumes, as the daemon last fetched them.
pub trait VolumeContents: Send + Sync {
    /// The files of `volume` of the pod with `pod_uid`: `None` while they are being fetched,
    /// an error (a missing Secret, a refused token request) when they cannot be.
    fn files(&self, pod_uid: &str, volume: &str) -> Option<Result<Vec<VolumeFile>, String>>;
}

/// Writes `files` as the volume's contents at `path`: mounts its tmpfs first if need be, and
/// does nothing when the same files are in effect. Whether anything was written.
pub fn write(volume: &str, path: &Path, files: &[VolumeFile]) -> Result<bool, VolumeError> {
    let io_error = |at: &Path, source: io::Error| VolumeError::Io {
        volume: volume.to_owned(),
        path: at.to_owned(),
        source,
    };
    for file in files {
        check_path(&file.path).map_err(|message| VolumeError::Invalid {
            volume: volume.to_owned(),
            message,
        })?;
    }
    fs::create_dir_all(path).map_err(|e| io_error(path, e))?;
    if !super::is_mount_point(path) {
        let options = format!("mode=0755,size={TMPFS_SIZE}");
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            flags,
            Some(options.as_str()),
        )
        .map_err(|errno| io_error(path, errno.into()))?;
    }
    let fingerprint = fingerprint(files);
    if fs::read_to_string(path.join(FINGERPRINT)).is_ok_and(|f| f == fingerprint) {
        return Ok(false);
    }
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let data_dir = format!(
        "..{}.{:09}.{}",
        stamp.as_secs(),
        stamp.subsec_nanos(),
        SERIAL.fetch_add(1, Ordering::Relaxed)
    );
    let data_path = path.join(&data_dir);
    fs::create_dir(&data_path).map_err(|e| io_error(&data_path, e))?;
    fs::set_permissions(&data_path, fs::Permissions::from_mode(0o755))
        .map_err(|e| io_error(&data_path, e))?;
    for file in files {
        let target = data_path.join(&file.path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
        }
        fs::write(&target, &file.data).map_err(|e| io_error(&target, e))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(file.mode & 0o777))
            .map_err(|e| io_error(&target, e))?;
    }
    // The switch: a new link renamed over `..data` (rename is atomic).
    let old_data = fs::read_link(path.join(DATA_LINK)).ok();
    let staged = path.join("..data_tmp");
    let _ = fs::remove_file(&staged);
    symlink(&data_dir, &staged).map_err(|e| io_error(&staged, e))?;
    fs::rename(&staged, path.join(DATA_LINK)).map_err(|e| io_error(path, e))?;
    // The names users see: a link per top-level entry, and none for what is gone.
    let mut tops: Vec<&str> = files
        .iter()
        .filter_map(|f| f.path.split('/').next())
        .collect();
    tops.sort_unstable();
    tops.dedup();
    for top in &tops {
        let link = path.join(top);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_LINK).join(top), &link).map_err(|e| io_error(&link, e))?;
        }
    }
    for entry in fs::read_dir(path).map_err(|e| io_error(path, e))?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with("..") && !tops.contains(&name.as_ref()) {
            let _ = fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old_data.filter(|old| old.as_os_str() != data_dir.as_str()) {
        // Only a name of ours: `..data` never points out of the volume.
        if let Some(name) = old.file_name() {
            let _ = fs::remove_dir_all(path.join(name));
        }
    }
    fs::write(path.join(FINGERPRINT), fingerprint).map_err(|e| io_error(path, e))?;
    Ok(true)
}

/// A file's path must stay inside the volume, whatever the API server let through.
fn check_path(path: &str) -> Result<(), String> {
    let relative = Path::new(path);
    let normal = !path.is_empty()
        && !path.starts_with("..")
        && !path.contains('\0')
        && relative
            .components()
            .all(|part| matches!(part, Component::Normal(_)));
    if normal {
        Ok(())
    } else {
        Err(format!(
            "file path {path:?} does not stay inside the volume"
        ))
    }
}

/// SHA-256 over every file's path, mode and bytes, each length-prefixed (so that no two
/// different sets hash alike by moving bytes between fields).
fn fingerprint(files: &[VolumeFile]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for file in files {
        for field in [file.path.as_bytes(), &file.mode.to_le_bytes(), &file.data] {
            hash.update((field.len() as u64).to_le_bytes());
            hash.update(field);
        }
    }
    hash.finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &str) -> VolumeFile {
        VolumeFile {
            path: path.into(),
            data: data.as_bytes().to_vec(),
            mode: 0o644,
        }
    }

    /// Writes into a tmpfs of its own under a temporary directory, unmounted at the end.
    struct Scratch {
        dir: tempfile::TempDir,
    }

    impl Scratch {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().expect("a temporary directory"),
            }
        }
        fn volume(&self) -> std::path::PathBuf {
            self.dir.path().join("v")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.volume(), nix::mount::MntFlags::MNT_DETACH);
        }
    }

    /// Mounts a tmpfs: the suite runs as root, as the runtime does.
    #[test]
    fn files_are_switched_at_once_and_stale_names_go() -> Result<(), Box<dyn std::error::Error>> {
        let scratch = Scratch::new();
        let path = scratch.volume();
        let first = [file("token", "one"), file("sub/ca.crt", "ca")];
        assert!(write("v", &path, &first)?);
        assert!(super::super::is_mount_point(&path));
        assert_eq!(fs::read_to_string(path.join("token"))?, "one");
        assert_eq!(fs::read_to_string(path.join("sub/ca.crt"))?, "ca");
        assert_eq!(
            fs::read_link(path.join("token"))?,
            Path::new("..data/token")
        );
        // The same files: nothing written.
        assert!(!write("v", &path, &first)?);
        let before = fs::read_link(path.join(DATA_LINK))?;
        // A refreshed token, and `sub` gone.
        let second = [VolumeFile {
            mode: 0o600,
            ..file("token", "two")
        }];
        assert!(write("v", &path, &second)?);
        assert_eq!(fs::read_to_string(path.join("token"))?, "two");
        assert_eq!(
            fs::metadata(path.join("token"))?.permissions().mode() & 0o777,
            0o600
        );
        assert!(fs::symlink_metadata(path.join("sub")).is_err());
        assert!(
            !path.join(&before).exists(),
            "the old data directory is removed"
        );
        let hidden: Vec<String> = fs::read_dir(&path)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != DATA_LINK && n != FINGERPRINT)
            .collect();
        assert_eq!(hidden.len(), 1, "{hidden:?}");
        Ok(())
    }

    #[test]
    fn paths_out_of_the_volume_are_refused_before_anything_is_written() {
        for hostile in [
            "../escape",
            "/etc/passwd",
            "a/../../b",
            "..data",
            "",
            "./a",
            "a\0b",
        ] {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let path = dir.path().join("v");
            let error = write("v", &path, &[file(hostile, "x")]).expect_err(hostile);
            assert!(
                error
                    .to_string()
                    .contains("does not stay inside the volume"),
                "{hostile:?}: {error}"
            );
            assert!(!path.exists(), "{hostile:?}: nothing made");
        }
    }
}
