//! keel's directory in bpffs: what is pinned there, and how it is replaced and removed.
//!
//! Layout of `<bpf dir>` (default `/sys/fs/bpf/keel`):
//! - `keel_svc_v1`, `keel_backend_v1`, `keel_stats_v1`, `keel_revsk_v1`, `keel_affin_v1`,
//!   `keel_affmat_v1`: the maps;
//! - `link_<program>`: the link attaching each socket program to keel's cgroup.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use aya::programs::links::FdLink;
use thiserror::Error;

/// keel's pins unless told otherwise.
pub const DEFAULT_BPF_DIR: &str = "/sys/fs/bpf/keel";
/// `BPF_FS_MAGIC` from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Debug, Error)]
pub enum PinError {
    #[error("{path} is not on a bpffs mount (mount one: `mount -t bpf bpf /sys/fs/bpf`)")]
    NotBpffs { path: PathBuf },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("link of {name}: {message}")]
    Link { name: String, message: String },
}

fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PinError + 'a {
    move |source| PinError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` and checks that it is on bpffs: pins anywhere else would fail, or worse,
/// silently not survive.
pub fn prepare_dir(dir: &Path) -> Result<(), PinError> {
    fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
    if !is_bpffs(dir).map_err(io_error("inspecting", dir))? {
        return Err(PinError::NotBpffs {
            path: dir.to_owned(),
        });
    }
    Ok(())
}

fn is_bpffs(path: &Path) -> io::Result<bool> {
    let path = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statfs writes into the zeroed struct; the path is NUL-terminated.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.f_type as i64 == BPF_FS_MAGIC)
}

/// The pin path of a program's link.
pub fn link_path(dir: &Path, program: &str) -> PathBuf {
    dir.join(format!("link_{program}"))
}

/// Pins `link` as the link of `program`, replacing the previous one. The new link is attached
/// before this is called, so the program runs throughout; removing the old pin detaches the old
/// program (nothing else holds its link).
pub fn swap_link(dir: &Path, program: &str, link: FdLink) -> Result<(), PinError> {
    let path = link_path(dir, program);
    // bpffs refuses names with a dot, so the staging name is plain.
    let staging = dir.join(format!("new_link_{program}"));
    let _ = fs::remove_file(&staging);
    let pinned = link.pin(&staging).map_err(|e| PinError::Link {
        name: program.to_owned(),
        message: error_chain(&e),
    })?;
    // rename(2) over the old pin: one step, and the old link loses its last reference.
    fs::rename(&staging, &path).map_err(io_error("replacing", &path))?;
    // Dropping the handle closes our descriptor; the pin keeps the link attached.
    drop(pinned);
    Ok(())
}

/// Whether a pin's name is one keel makes: its maps (`keel_…`, versioned) and its links
/// (`link_…`, and `new_link_…` while one is replaced).
pub fn is_keel_pin(name: &str) -> bool {
    name.starts_with("keel_") || name.starts_with("link_") || name.starts_with("new_link_")
}

/// Removes keel's pins in `dir` (links detach, maps are freed once no program uses them),
/// then the directory if nothing else is left in it: a pin someone else put beside keel's
/// (a directory shared by mistake, `--bpf-dir /sys/fs/bpf`) is never keel's to remove. A
/// missing directory is fine. Returns how many pins were removed.
pub fn remove_all(dir: &Path) -> Result<usize, PinError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(err) => {
            return Err(PinError::Io {
                what: "listing",
                path: dir.to_owned(),
                source: err,
            })
        }
    };
    let mut removed = 0;
    let mut foreign = 0;
    let mut paths = Vec::new();
    for entry in entries.flatten() {
        if is_keel_pin(&entry.file_name().to_string_lossy()) {
            paths.push(entry.path());
        } else {
            foreign += 1;
        }
    }
    // Links first, so programs stop before their maps go.
    paths.sort_by_key(|p| {
        !p.file_name()
            .is_some_and(|n| n.to_string_lossy().contains("link_"))
    });
    for path in paths {
        fs::remove_file(&path).map_err(io_error("unpinning", &path))?;
        removed += 1;
    }
    if foreign == 0 {
        fs::remove_dir(dir).map_err(io_error("removing", dir))?;
    } else {
        tracing::warn!(dir = %dir.display(), foreign, "left the pins that are not keel's, and the directory");
    }
    Ok(removed)
}

/// An error and its sources on one line: aya's errors keep the errno in their source.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keels_pins_are_removed() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let shared = dir.path().join("shared");
        fs::create_dir(&shared)?;
        for name in [
            "keel_svc_v1",
            "link_keel_connect4",
            "new_link_keel_sendmsg4",
            "cilium_lb4",
        ] {
            fs::write(shared.join(name), "")?;
        }
        assert_eq!(remove_all(&shared)?, 3);
        let left: Vec<String> = fs::read_dir(&shared)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            left,
            ["cilium_lb4"],
            "another program's pin and the directory stay"
        );

        let own = dir.path().join("own");
        fs::create_dir(&own)?;
        fs::write(own.join("keel_backend_v1"), "")?;
        assert_eq!(remove_all(&own)?, 1);
        assert!(!own.exists(), "keel's own directory goes with its pins");
        assert_eq!(remove_all(&own)?, 0, "a missing directory is fine");
        Ok(())
    }
}
