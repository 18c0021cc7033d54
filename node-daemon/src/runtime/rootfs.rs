//! Inside the container, before its process starts: join the pod's namespaces and cgroups,
//! build the root file system in a mount namespace of its own, drop privileges, exec.
//!
//! This runs in the shim's forked child, which is single-threaded, so ordinary Rust is fine
//! here. Every mount is made inside the container's private mount namespace: it disappears
//! with the container, and nothing is ever mounted on the host.

use std::{
    ffi::CString,
    fs,
    os::{fd::OwnedFd, unix::fs::PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context};
use caps::{CapSet, Capability, CapsHashSet};
use nix::{
    mount::{mount, umount2, MntFlags, MsFlags},
    sched::{setns, unshare, CloneFlags},
    unistd::{chdir, pivot_root},
};
use serde::{Deserialize, Serialize};

use super::shim::ShimSpec;

/// How the container's root file system is made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RootfsSpec {
    /// An overlay of a writable layer on the image's read-only root file system.
    Overlay {
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
    },
    /// A private copy of the image's root file system (where overlayfs is unavailable).
    Copy { dir: PathBuf },
}

/// A host file bind-mounted over a path inside the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindFile {
    pub source: PathBuf,
    /// Absolute, inside the container.
    pub target: String,
}

/// A volume bind-mounted at a path inside the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// On the host: an emptyDir's directory, a hostPath, or a subPath of either.
    pub source: PathBuf,
    /// Absolute, inside the container.
    pub target: String,
    pub read_only: bool,
}

/// The capabilities a container keeps: Docker's default set. Everything else (SYS_ADMIN,
/// NET_ADMIN, SYS_MODULE, …) is dropped from every set, the bounding set included.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// The device nodes a container gets, bind-mounted from the host's /dev.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Sets up the container and execs its process. Returns only on failure.
pub fn enter_and_exec(spec: &ShimSpec, stdout: OwnedFd, stderr: OwnedFd) -> anyhow::Error {
    match setup(spec, stdout, stderr) {
        Ok(never) => match never {},
        Err(error) => error,
    }
}

fn setup(
    spec: &ShimSpec,
    stdout: OwnedFd,
    stderr: OwnedFd,
) -> anyhow::Result<std::convert::Infallible> {
    join_pod_namespaces(spec.pause_pid)?;
    for procs in &spec.cgroup_procs {
        fs::write(procs, "0").with_context(|| format!("joining cgroup {}", procs.display()))?;
    }
    let stdin = fs::File::open("/dev/null").context("opening /dev/null")?;
    let root = mount_rootfs(spec)?;
    enter_root(&root)?;
    redirect_stdio(stdin, stdout, stderr)?;
    drop_privileges(spec.uid, spec.gid)?;
    chdir(Path::new(&spec.working_dir))
        .with_context(|| format!("workingDir {:?}", spec.working_dir))?;
    exec(&spec.argv, &spec.env)
}

fn join_pod_namespaces(pause_pid: i32) -> anyhow::Result<()> {
    for (name, flag) in [
        ("net", CloneFlags::CLONE_NEWNET),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
    ] {
        let ns = fs::File::open(format!("/proc/{pause_pid}/ns/{name}"))
            .with_context(|| format!("the pod's pause process ({pause_pid}) is gone"))?;
        setns(ns, flag).with_context(|| format!("joining the pod's {name} namespace"))?;
    }
    Ok(())
}

/// Builds the root file system in a new mount namespace; returns where it is mounted.
fn mount_rootfs(spec: &ShimSpec) -> anyhow::Result<PathBuf> {
    unshare(CloneFlags::CLONE_NEWNS).context("creating the mount namespace")?;
    // Nothing mounted from here on may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making mounts private")?;
    let root = match &spec.rootfs {
        RootfsSpec::Overlay {
            lower,
            upper,
            work,
            target,
        } => {
            let options = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            );
            mount(
                Some("overlay"),
                target,
                Some("overlay"),
                MsFlags::empty(),
                Some(options.as_str()),
            )
            .with_context(|| format!("mounting the overlay at {}", target.display()))?;
            target.clone()
        }
        RootfsSpec::Copy { dir } => {
            // pivot_root needs a mount point.
            mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .with_context(|| format!("bind-mounting {}", dir.display()))?;
            dir.clone()
        }
    };
    mount_kernel_filesystems(&root)?;
    for file in &spec.files {
        let target = inside_root(&root, &file.target)?;
        ensure_file(&target)?;
        mount(
            Some(&file.source),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("bind-mounting {}", file.target))?;
    }
    for volume in &spec.mounts {
        mount_volume(&root, volume)?;
    }
    Ok(root)
}

/// Binds a volume's host source at its path in the container. A read-only volume is remounted
/// read-only: a bind mount takes flags only on a remount.
fn mount_volume(root: &Path, volume: &BindMount) -> anyhow::Result<()> {
    let target = inside_root(root, &volume.target)?;
    let source = fs::metadata(&volume.source)
        .with_context(|| format!("volume source {}", volume.source.display()))?;
    if source.is_dir() {
        fs::create_dir_all(&target).with_context(|| format!("creating {}", volume.target))?;
    } else {
        ensure_file(&target)?;
    }
    mount(
        Some(&volume.source),
        &target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("mounting {} at {}", volume.source.display(), volume.target))?;
    if volume.read_only {
        mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .with_context(|| format!("making {} read-only", volume.target))?;
    }
    Ok(())
}

/// Where `path` (absolute, as the container will see it) is under `root` now, following the
/// image's symbolic links as the container would: inside `root`. The container's tree is not
/// yet the root, so the kernel would resolve an absolute link (or enough `..`) against the
/// host's: a mount made through it would land on the host. (runc's securejoin, in small.)
/// Volumes' subPaths resolve the same way inside their volume.
pub(super) fn inside_root(root: &Path, path: &str) -> anyhow::Result<PathBuf> {
    let mut pending: Vec<String> = path.split('/').rev().map(str::to_owned).collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                resolved.pop(); // at the root, ".." is the root
                continue;
            }
            _ => {}
        }
        let candidate = resolved
            .iter()
            .fold(root.to_path_buf(), |p, c| p.join(c))
            .join(&part);
        let is_link = fs::symlink_metadata(&candidate).is_ok_and(|m| m.file_type().is_symlink());
        if !is_link {
            resolved.push(part);
            continue;
        }
        links += 1;
        if links > 40 {
            bail!("{path}: too many levels of symbolic links in the image");
        }
        let link = fs::read_link(&candidate)
            .with_context(|| format!("reading the link {}", candidate.display()))?;
        let link = link.to_string_lossy();
        if link.starts_with('/') {
            resolved.clear();
        }
        pending.extend(link.split('/').rev().map(str::to_owned));
    }
    Ok(resolved.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

fn mount_kernel_filesystems(root: &Path) -> anyhow::Result<()> {
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let proc = root.join("proc");
    fs::create_dir_all(&proc)?;
    // A proc of the container's PID namespace (this process was born in it).
    mount(Some("proc"), &proc, Some("proc"), nodev, None::<&str>).context("mounting /proc")?;
    let sys = root.join("sys");
    fs::create_dir_all(&sys)?;
    mount(
        Some("sysfs"),
        &sys,
        Some("sysfs"),
        nodev | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .context("mounting /sys")?;
    let dev = root.join("dev");
    fs::create_dir_all(&dev)?;
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID,
        Some("mode=755,size=65536k"),
    )
    .context("mounting /dev")?;
    for device in DEVICES {
        let target = dev.join(device);
        ensure_file(&target)?;
        mount(
            Some(&Path::new("/dev").join(device)),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("bind-mounting /dev/{device}"))?;
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(link))?;
    }
    let shm = dev.join("shm");
    fs::create_dir_all(&shm)?;
    mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        nodev,
        Some("mode=1777,size=65536k"),
    )
    .context("mounting /dev/shm")?;
    Ok(())
}

/// Creates an empty file to mount over, with its directories.
fn ensure_file(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    if !path.exists() {
        fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    }
    Ok(())
}

/// Makes `root` the root: `pivot_root(".", ".")` stacks the old root on top of the new one,
/// and a lazy unmount then removes it (runc's way, which needs no directory for the old
/// root inside the image).
fn enter_root(root: &Path) -> anyhow::Result<()> {
    chdir(root).with_context(|| format!("entering {}", root.display()))?;
    pivot_root(".", ".").context("pivot_root")?;
    umount2(".", MntFlags::MNT_DETACH).context("detaching the old root")?;
    chdir("/").context("chdir /")?;
    Ok(())
}

fn redirect_stdio(stdin: fs::File, stdout: OwnedFd, stderr: OwnedFd) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    for (from, to) in [
        (stdin.as_raw_fd(), 0),
        (stdout.as_raw_fd(), 1),
        (stderr.as_raw_fd(), 2),
    ] {
        // SAFETY: dup2 onto the standard descriptors; `from` stays valid until the end.
        if unsafe { libc::dup2(from, to) } < 0 {
            return Err(std::io::Error::last_os_error()).context("redirecting stdio");
        }
    }
    Ok(())
}

/// Keeps Docker's default capabilities, switches to the container's user and group, and
/// sets no_new_privs so that nothing exec'd can gain privileges (setuid binaries included).
pub(super) fn drop_privileges(uid: u32, gid: u32) -> anyhow::Result<()> {
    let keep: CapsHashSet = DEFAULT_CAPABILITIES.into_iter().collect();
    for cap in caps::all() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .with_context(|| format!("dropping {cap} from the bounding set"))?;
        }
    }
    for set in [CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
        caps::set(None, set, &keep).with_context(|| format!("setting the {set:?} capabilities"))?;
    }
    // SAFETY: setgroups with an empty list, setgid and setuid are plain system calls.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(std::io::Error::last_os_error()).context("setgroups");
        }
        if libc::setgid(gid) != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("runAsGroup {gid}"));
        }
        if libc::setuid(uid) != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("runAsUser {uid}"));
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error()).context("no_new_privs");
        }
    }
    Ok(())
}

/// execve with the container's environment; a bare command name is looked up in the
/// container's PATH (its own environment's, else the usual default).
pub(super) fn exec(argv: &[String], env: &[String]) -> anyhow::Result<std::convert::Infallible> {
    let Some(program) = argv.first() else {
        bail!("no command: the pod gives none and the image has no entrypoint or cmd");
    };
    let c_argv: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()
        .context("an argument contains a NUL byte")?;
    let c_env: Vec<CString> = env
        .iter()
        .map(|e| CString::new(e.as_str()))
        .collect::<Result<_, _>>()
        .context("an environment variable contains a NUL byte")?;
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![PathBuf::from(program)]
    } else {
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        path.split(':')
            .map(|dir| Path::new(dir).join(program))
            .collect()
    };
    let found = candidates.iter().find(|p| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    });
    let Some(found) = found else {
        bail!("executable {program:?} not found in the container (searched {candidates:?})");
    };
    let path = CString::new(found.as_os_str().as_encoded_bytes()).context("path with NUL")?;
    let Err(err) = nix::unistd::execve(&path, &c_argv, &c_env);
    Err(err).with_context(|| format!("exec {}", found.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn paths_resolve_inside_the_root_whatever_the_image_links_say() -> anyhow::Result<()> {
        let root = tempfile::tempdir()?;
        let root = root.path();
        fs::create_dir_all(root.join("run"))?;
        fs::create_dir_all(root.join("usr/lib"))?;
        // Debian's /var/run -> /run: absolute, so it must mean the image's /run.
        fs::create_dir_all(root.join("var"))?;
        symlink("/run", root.join("var/run"))?;
        // Links that try to leave the image.
        symlink("/etc", root.join("escape"))?;
        symlink("../../../../../../etc", root.join("usr/lib/up"))?;
        symlink("loop", root.join("loop"))?;

        assert_eq!(
            inside_root(root, "/var/run/app.sock")?,
            root.join("run/app.sock")
        );
        assert_eq!(inside_root(root, "/escape/hosts")?, root.join("etc/hosts"));
        assert_eq!(
            inside_root(root, "/usr/lib/up/passwd")?,
            root.join("etc/passwd")
        );
        assert_eq!(inside_root(root, "/../../data")?, root.join("data"));
        assert_eq!(inside_root(root, "/data/./x/")?, root.join("data/x"));
        let error = inside_root(root, "/loop/x").expect_err("a link to itself");
        assert!(error.to_string().contains("too many levels"), "{error}");
        Ok(())
    }
}
