//! File system work inside a root that an attacker shaped: an image's layers, a container's
//! root file system, a volume another container writes to.
//!
//! Every path is resolved by the kernel with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
//! from a descriptor of the root: `..` stops at the root and a symbolic link, absolute or
//! not, is followed *inside* it, as it will be once the root is a container's `/`. What the
//! resolution returns is a descriptor, and the work is done through it (`*at` calls on the
//! parent's descriptor, mounts onto `/proc/self/fd/N`), so nothing can swap a component for a
//! link between the check and the use. This is what runc (`securejoin`, `pathrs`) and the
//! kubelet's subPath code do; a string join followed by a path-based call is the bug they fix.
//!
//! `openat2` needs Linux 5.6. Without it keel refuses to import images or start containers:
//! there is no safe fallback.

use std::{
    ffi::{OsStr, OsString},
    io::{self, Read},
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Component, Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag},
    sys::stat::{fstatat, mkdirat, Mode, SFlag},
    unistd::{unlinkat, UnlinkatFlags},
};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum InRootError {
    #[error("{root}: {path}: {source}")]
    Io {
        root: PathBuf,
        path: String,
        source: io::Error,
    },
    #[error("the kernel lacks openat2(2) (Linux 5.6 or later): keel will not resolve paths inside images without it")]
    NoOpenat2,
    #[error("{root}: {path}: {message}")]
    Refused {
        root: PathBuf,
        path: String,
        message: String,
    },
}

impl InRootError {
    /// Whether the path named nothing (ENOENT): for callers to whom a missing file is an
    /// answer, not a failure.
    pub fn is_not_found(&self) -> bool {
        matches!(self, InRootError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOENT))
    }
}

/// `Ok(None)` for a path that names nothing, the error for any other failure.
pub fn if_present<T>(result: Result<T, InRootError>) -> Result<Option<T>, InRootError> {
    match result {
        Ok(found) => Ok(Some(found)),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error),
    }
}

/// The deepest directory tree [`remove_all_at`] walks: each level holds a descriptor.
const MAX_DEPTH: usize = 512;

/// A directory that paths are resolved inside of.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// The part of a path inside a root: its normal components, with `.`, `..` and the leading
/// `/` left to the kernel's in-root resolution to interpret (they never leave the root).
fn relative(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => out.push(".."),
            Component::Normal(part) => out.push(part),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// `/proc/self/fd/N`: the path of what a descriptor holds, for calls that only take paths
/// (mount(2)). The kernel follows it to the very inode the descriptor was opened on.
pub fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

impl Root {
    /// Opens `path` (trusted: keel's own state or a volume's directory) as a root.
    pub fn open(path: &Path) -> Result<Self, InRootError> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| InRootError::Io {
            root: path.to_owned(),
            path: "/".into(),
            source: e.into(),
        })?;
        Ok(Self {
            fd,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, path: &Path, errno: Errno) -> InRootError {
        if errno == Errno::ENOSYS {
            return InRootError::NoOpenat2;
        }
        InRootError::Io {
            root: self.path.clone(),
            path: path.display().to_string(),
            source: errno.into(),
        }
    }

    fn refused(&self, path: &Path, message: impl Into<String>) -> InRootError {
        InRootError::Refused {
            root: self.path.clone(),
            path: path.display().to_string(),
            message: message.into(),
        }
    }

    /// Opens `path` inside the root. `no_symlinks` refuses any link on the way (for the
    /// places where a link is itself suspicious: `/proc`, `/sys`, `/dev`).
    pub fn open_at(
        &self,
        path: &Path,
        flags: OFlag,
        no_symlinks: bool,
    ) -> Result<OwnedFd, InRootError> {
        let mut resolve = ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS;
        if no_symlinks {
            resolve |= ResolveFlag::RESOLVE_NO_SYMLINKS;
        }
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(resolve);
        let rel = relative(path);
        loop {
            match openat2(self.fd.as_fd(), rel.as_path(), how) {
                Ok(fd) => return Ok(fd),
                // The kernel asks for a retry when a rename raced the walk.
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(errno) => return Err(self.error(path, errno)),
            }
        }
    }

    /// An `O_PATH` descriptor of what `path` names, following links inside the root.
    pub fn resolve(&self, path: &Path) -> Result<OwnedFd, InRootError> {
        self.open_at(path, OFlag::O_PATH, false)
    }

    /// The directory `path` names, created with its parents (mode 0755) where missing.
    /// Returns an `O_PATH` descriptor of it.
    pub fn create_dir_all(&self, path: &Path, no_symlinks: bool) -> Result<OwnedFd, InRootError> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
        if let Some(fd) = if_present(self.open_at(path, flags, no_symlinks))? {
            return Ok(fd);
        }
        let rel = relative(path);
        let mut walked = PathBuf::new();
        let mut parent = self.open_at(Path::new("."), flags, no_symlinks)?;
        for component in rel.components() {
            walked.push(component);
            let name = component.as_os_str();
            match self.open_at(&walked, flags, no_symlinks) {
                Ok(fd) => parent = fd,
                Err(error) if error.is_not_found() => {
                    if name == ".." {
                        return Err(self.refused(path, "`..` names a missing directory"));
                    }
                    // The parent came from in-root resolution: creating in it stays inside.
                    match mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(errno) => return Err(self.error(&walked, errno)),
                    }
                    parent = match self.open_at(&walked, flags, no_symlinks) {
                        Ok(fd) => fd,
                        // Present yet not found: a link to nowhere. Creating its target
                        // would mean creating what a link names; refuse instead.
                        Err(error) if error.is_not_found() => {
                            return Err(
                                self.refused(&walked, "is a symbolic link to a missing directory")
                            )
                        }
                        Err(other) => return Err(other),
                    };
                }
                Err(other) => return Err(other),
            }
        }
        Ok(parent)
    }

    /// The parent directory of `path` (created where missing) and the last component, for
    /// the `*at` calls that create or remove that last component without following it.
    pub fn parent_and_name(
        &self,
        path: &Path,
        create: bool,
    ) -> Result<(OwnedFd, OsString), InRootError> {
        let rel = relative(path);
        let Some(name) = rel.file_name().map(OsStr::to_owned) else {
            return Err(self.refused(path, "names no file"));
        };
        if name == ".." || name == "." {
            return Err(self.refused(path, "ends in `..`"));
        }
        let parent = rel.parent().unwrap_or(Path::new("."));
        let fd = if create {
            self.create_dir_all(parent, false)?
        } else {
            self.open_at(parent, OFlag::O_PATH | OFlag::O_DIRECTORY, false)?
        };
        Ok((fd, name))
    }

    /// An empty regular file at `path` unless something is there already; returns an
    /// `O_PATH` descriptor of what is there (for mounting a file over it).
    pub fn ensure_file(&self, path: &Path) -> Result<OwnedFd, InRootError> {
        if let Some(fd) = if_present(self.resolve(path))? {
            return Ok(fd);
        }
        let (parent, name) = self.parent_and_name(path, true)?;
        match openat(
            parent.as_fd(),
            name.as_os_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(_) | Err(Errno::EEXIST) => {}
            Err(errno) => return Err(self.error(path, errno)),
        }
        self.resolve(path)
    }

    /// Reads a small file of the image (`/etc/passwd`), refusing more than `limit` bytes.
    pub fn read_file(&self, path: &Path, limit: u64) -> Result<Option<Vec<u8>>, InRootError> {
        let Some(fd) = if_present(self.open_at(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK, false))?
        else {
            return Ok(None);
        };
        let stat = nix::sys::stat::fstat(fd.as_fd()).map_err(|e| self.error(path, e))?;
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(self.refused(path, "is not a regular file"));
        }
        let mut content = Vec::new();
        std::fs::File::from(fd)
            .take(limit + 1)
            .read_to_end(&mut content)
            .map_err(|source| InRootError::Io {
                root: self.path.clone(),
                path: path.display().to_string(),
                source,
            })?;
        if content.len() as u64 > limit {
            return Err(self.refused(path, format!("is larger than {limit} bytes")));
        }
        Ok(Some(content))
    }
}

/// What is at `name` in `dir`, without following a link there.
pub fn kind_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<SFlag>, Errno> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(
            SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT,
        )),
        Err(Errno::ENOENT) => Ok(None),
        Err(errno) => Err(errno),
    }
}

/// Removes `name` from `dir` whatever it is, a directory with everything below it included,
/// never following a link (a link is removed, not what it points at).
pub fn remove_all_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    // One component of `dir`, never `dir` itself, its parent or a path through it.
    if matches!(name.as_bytes(), b"" | b"." | b"..") || name.as_bytes().contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    remove_all_depth(dir, name, 0)
}

fn remove_all_depth(dir: BorrowedFd<'_>, name: &OsStr, depth: usize) -> Result<(), Errno> {
    match kind_at(dir, name)? {
        None => Ok(()),
        Some(SFlag::S_IFDIR) => {
            if depth > MAX_DEPTH {
                return Err(Errno::ELOOP);
            }
            let child = openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            empty_dir_at(child, depth + 1, &mut |_| false)?;
            match unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => Ok(()),
                Err(errno) => Err(errno),
            }
        }
        Some(_) => match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(errno) => Err(errno),
        },
    }
}

/// Removes every entry of the directory `dir` (opened for reading) for which `keep` is false.
pub fn empty_dir(dir: OwnedFd, keep: &mut dyn FnMut(&OsStr) -> bool) -> Result<(), Errno> {
    empty_dir_at(dir, 0, keep)
}

fn empty_dir_at(
    dir: OwnedFd,
    depth: usize,
    keep: &mut dyn FnMut(&OsStr) -> bool,
) -> Result<(), Errno> {
    let own = dir.try_clone().map_err(|_| Errno::EMFILE)?;
    let mut listing = nix::dir::Dir::from_fd(dir)?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes()).to_owned();
        if name != "." && name != ".." && !keep(&name) {
            names.push(name);
        }
    }
    drop(listing);
    for name in names {
        remove_all_depth(own.as_fd(), &name, depth)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{fs, os::unix::fs::symlink};

    use super::*;

    fn io_kind(result: Result<OwnedFd, InRootError>) -> Option<i32> {
        match result {
            Err(InRootError::Io { source, .. }) => source.raw_os_error(),
            _ => None,
        }
    }

    #[test]
    fn links_and_dot_dots_resolve_inside_the_root() -> Result<(), Box<dyn std::error::Error>> {
        let outside = tempfile::tempdir()?;
        fs::write(outside.path().join("secret"), "host")?;
        let dir = tempfile::tempdir()?;
        let root_path = dir.path().join("root");
        fs::create_dir_all(root_path.join("etc"))?;
        fs::write(root_path.join("etc/secret"), "image")?;
        symlink(outside.path(), root_path.join("abs"))?;
        symlink("../../../../..", root_path.join("up"))?;
        symlink("/etc", root_path.join("etc-link"))?;
        let root = Root::open(&root_path)?;

        // An absolute link to a host directory means that directory inside the root.
        assert_eq!(
            io_kind(root.resolve(Path::new("/abs/secret"))),
            Some(libc::ENOENT),
            "{} must not be reachable",
            outside.path().display()
        );
        let read = |p: &str| root.read_file(Path::new(p), 100);
        assert_eq!(read("/up/etc/secret")?, Some(b"image".to_vec()));
        assert_eq!(read("../../etc/secret")?, Some(b"image".to_vec()));
        assert_eq!(read("/etc-link/secret")?, Some(b"image".to_vec()));
        assert_eq!(read("/missing")?, None);
        let err = root
            .read_file(Path::new("/etc"), 100)
            .expect_err("a directory");
        assert!(err.to_string().contains("regular file"), "{err}");

        // Creating through a link creates inside the root, never on the host; through a
        // link to nowhere (inside the root) it is refused.
        let err = root
            .create_dir_all(Path::new("/abs/made/here"), false)
            .expect_err("a dangling link");
        assert!(err.to_string().contains("missing directory"), "{err}");
        assert!(!outside.path().join("made").exists());
        root.create_dir_all(Path::new("/etc-link/made/here"), false)?;
        assert!(root_path.join("etc/made/here").is_dir());
        root.ensure_file(Path::new("/etc-link/hosts"))?;
        assert!(root_path.join("etc/hosts").is_file());

        // `no_symlinks` refuses a link anywhere on the way.
        let refused = root.open_at(Path::new("/etc-link"), OFlag::O_PATH, true);
        assert_eq!(io_kind(refused), Some(libc::ELOOP));
        Ok(())
    }

    #[test]
    fn removal_never_follows_a_link() -> Result<(), Box<dyn std::error::Error>> {
        let outside = tempfile::tempdir()?;
        fs::write(outside.path().join("keep"), "host")?;
        let dir = tempfile::tempdir()?;
        fs::create_dir_all(dir.path().join("tree/deep/er"))?;
        fs::write(dir.path().join("tree/deep/er/file"), "x")?;
        symlink(outside.path(), dir.path().join("tree/link"))?;
        let root = Root::open(dir.path())?;
        let fd = root.open_at(Path::new("."), OFlag::O_PATH | OFlag::O_DIRECTORY, false)?;
        remove_all_at(fd.as_fd(), OsStr::new("tree"))?;
        assert!(!dir.path().join("tree").exists());
        assert!(
            outside.path().join("keep").exists(),
            "the link's target survives"
        );
        Ok(())
    }

    /// A kernel without openat2 (before 5.6) is refused by name, never worked around: a
    /// child process whose seccomp filter answers ENOSYS for openat2 stands in for one.
    #[test]
    fn without_openat2_nothing_is_resolved() -> Result<(), Box<dyn std::error::Error>> {
        use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};
        let dir = tempfile::tempdir()?;
        let filter = SeccompFilter::new(
            [(libc::SYS_openat2, vec![])].into_iter().collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            std::env::consts::ARCH.try_into()?,
        )?;
        let program: BpfProgram = filter.try_into()?;
        // SAFETY: the child only makes system calls and leaves with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = match seccompiler::apply_filter(&program) {
                Err(_) => 2,
                Ok(()) => match Root::open(dir.path()).and_then(|r| r.resolve(Path::new("x"))) {
                    Err(InRootError::NoOpenat2) => 0,
                    _ => 1,
                },
            };
            // SAFETY: leaving the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for the child just forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "status {status}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "1: openat2's absence was not reported as such; 2: the filter did not install"
        );
        Ok(())
    }
}
