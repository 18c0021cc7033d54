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
use nix::{
    fcntl::OFlag,
    mount::{mount, umount2, MntFlags, MsFlags},
    sched::{setns, unshare, CloneFlags},
    unistd::{chdir, pivot_root},
};

use super::{
    inroot::{fd_path, if_present, Root},
    security::{self, Security},
    spec::{BindMount, RootfsSpec, ShimSpec},
};

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
    if spec.security.read_only_root {
        // After every mount point was made: nothing can be created in it any more.
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .context("readOnlyRootFilesystem: remounting / read-only")?;
    }
    redirect_stdio(stdin, stdout, stderr)?;
    security::lock_down(&spec.security, spec.uid, spec.gid)?;
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
            // nodev: a device node the container makes (or an image brings) is inert.
            mount(
                Some("overlay"),
                target,
                Some("overlay"),
                MsFlags::MS_NODEV,
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
            mount(
                None::<&str>,
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NODEV,
                None::<&str>,
            )
            .with_context(|| format!("remounting {} nodev", dir.display()))?;
            dir.clone()
        }
    };
    // From here on every target is opened inside the container's tree and mounted through
    // its descriptor: the image's links (and a container writing to a shared volume) cannot
    // turn a mount into one on the host.
    let tree = Root::open(&root)?;
    mount_kernel_filesystems(&tree, &spec.security)?;
    for file in &spec.files {
        let target = tree.ensure_file(Path::new(&file.target))?;
        mount(
            Some(&file.source),
            &fd_path(&target),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("bind-mounting {}", file.target))?;
    }
    for volume in &spec.mounts {
        mount_volume(&tree, volume)?;
    }
    Ok(root)
}

/// Binds a volume's host source at its path in the container: a detached copy of the
/// source's mount tree is made nodev (and read-only for `readOnly`), recursively, before it
/// is attached to the target's descriptor, so there is no moment (and no path lookup) at
/// which a container could see it writable or have the remount land elsewhere.
fn mount_volume(tree: &Root, volume: &BindMount) -> anyhow::Result<()> {
    let source_root = Root::open(&volume.source)?;
    let source = match &volume.sub_path {
        Some(sub_path) => source_root.resolve(Path::new(sub_path))?,
        None => source_root.resolve(Path::new("/"))?,
    };
    let is_dir = fs::metadata(fd_path(&source))
        .with_context(|| format!("volume source {}", volume.source.display()))?
        .is_dir();
    let target = if is_dir {
        tree.create_dir_all(Path::new(&volume.target), false)?
    } else {
        tree.ensure_file(Path::new(&volume.target))?
    };
    let mut attributes = libc::MOUNT_ATTR_NODEV;
    if volume.read_only {
        attributes |= libc::MOUNT_ATTR_RDONLY;
    }
    attach_copy(&source, &target, attributes)
        .with_context(|| format!("mounting {} at {}", volume.source.display(), volume.target))
}

/// `open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)` of `source`, `mount_setattr` of `attributes`
/// on the whole copy, `move_mount` onto `target` (Linux 5.12).
fn attach_copy(source: &OwnedFd, target: &OwnedFd, attributes: u64) -> anyhow::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let empty = c"";
    // SAFETY: open_tree on a descriptor we own with an empty path; returns a new fd.
    let copy = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            source.as_raw_fd(),
            empty.as_ptr(),
            libc::OPEN_TREE_CLONE
                | libc::OPEN_TREE_CLOEXEC
                | libc::AT_EMPTY_PATH as libc::c_uint
                | libc::AT_RECURSIVE as libc::c_uint,
        )
    };
    if copy < 0 {
        return Err(std::io::Error::last_os_error()).context("open_tree");
    }
    // SAFETY: a new descriptor, ours alone.
    let copy = unsafe { OwnedFd::from_raw_fd(copy as i32) };
    let attr = libc::mount_attr {
        attr_set: attributes,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr on the detached copy, with a valid mount_attr of its size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            copy.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("mount_setattr");
    }
    // SAFETY: move_mount between two descriptors we own, empty paths.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            copy.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("move_mount");
    }
    Ok(())
}

/// runc's default `maskedPaths` (the OCI runtime spec's defaults, as containerd sets them):
/// what the kernel tells of the host through a container's `/proc` and `/sys` — kernel
/// memory, keyrings, timers, firmware — hidden behind an empty file or directory.
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// runc's default `readonlyPaths`: the parts of `/proc` that change the host's kernel. The
/// container's root is the host's root (no user namespace), so `/proc/sys/kernel/core_pattern`
/// would otherwise run a program of its choosing as root on the host.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn mount_kernel_filesystems(tree: &Root, security: &Security) -> anyhow::Result<()> {
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    // These three must be real directories of the image: a link there is refused.
    let proc = tree.create_dir_all(Path::new("/proc"), true)?;
    // A proc of the container's PID namespace (this process was born in it).
    mount(
        Some("proc"),
        &fd_path(&proc),
        Some("proc"),
        nodev,
        None::<&str>,
    )
    .context("mounting /proc")?;
    let sys = tree.create_dir_all(Path::new("/sys"), true)?;
    let sys_flags = if security.privileged {
        nodev
    } else {
        nodev | MsFlags::MS_RDONLY
    };
    mount(
        Some("sysfs"),
        &fd_path(&sys),
        Some("sysfs"),
        sys_flags,
        None::<&str>,
    )
    .context("mounting /sys")?;
    let dev = tree.create_dir_all(Path::new("/dev"), true)?;
    // nodev: only the devices bound below (each its own mount) can be opened.
    mount(
        Some("tmpfs"),
        &fd_path(&dev),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=755,size=65536k"),
    )
    .context("mounting /dev")?;
    // The fresh tmpfs, not the image's directory under it.
    let dev = tree.open_at(Path::new("/dev"), OFlag::O_PATH | OFlag::O_DIRECTORY, true)?;
    let dev_dir = fd_path(&dev);
    for device in DEVICES {
        let target = dev_dir.join(device);
        fs::File::create(&target).with_context(|| format!("creating /dev/{device}"))?;
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
        std::os::unix::fs::symlink(to, dev_dir.join(link))?;
    }
    let shm = dev_dir.join("shm");
    fs::create_dir_all(&shm)?;
    mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        nodev,
        Some("mode=1777,size=65536k"),
    )
    .context("mounting /dev/shm")?;
    if security.mask_paths {
        mask_paths(tree)?;
    }
    Ok(())
}

/// Masks and write-protects what runc does, on the container's fresh `/proc` and `/sys`.
fn mask_paths(tree: &Root) -> anyhow::Result<()> {
    for path in MASKED_PATHS {
        // A kernel without the file (no kcore, no sysrq) has nothing to mask.
        let Some(target) = if_present(tree.open_at(Path::new(path), OFlag::O_PATH, true))? else {
            continue;
        };
        let target_path = fd_path(&target);
        let result = if fs::metadata(&target_path).is_ok_and(|m| m.is_dir()) {
            mount(
                Some("tmpfs"),
                &target_path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=0,mode=555"),
            )
        } else {
            mount(
                Some("/dev/null"),
                &target_path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        result.with_context(|| format!("masking {path}"))?;
    }
    for path in READONLY_PATHS {
        let Some(target) = if_present(tree.open_at(Path::new(path), OFlag::O_PATH, true))? else {
            continue;
        };
        mount(
            Some(&fd_path(&target)),
            &fd_path(&target),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .with_context(|| format!("binding {path}"))?;
        // The descriptor names what is under the new mount: remount through a fresh one.
        let mounted = tree.open_at(Path::new(path), OFlag::O_PATH, true)?;
        mount(
            None::<&str>,
            &fd_path(&mounted),
            None::<&str>,
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .with_context(|| format!("making {path} read-only"))?;
    }
    Ok(())
}

/// Makes `root` the root: `pivot_root(".", ".")` stacks the old root on top of the new one,
/// and a lazy unmount then removes it (runc's way, which needs no directory for the old
/// root inside the image).
///
/// A host whose own root is the initramfs (a minimal VM such as keel's test guest) cannot
/// pivot: the kernel refuses to move the rootfs. There, as runc's `--no-pivot`, the new root
/// is moved over `/` and entered with chroot. That is weaker (a process holding
/// CAP_SYS_CHROOT could look for the old root), so it is used only where pivoting is
/// impossible, never as a fallback for other errors.
fn enter_root(root: &Path) -> anyhow::Result<()> {
    chdir(root).with_context(|| format!("entering {}", root.display()))?;
    match pivot_root(".", ".") {
        Ok(()) => {
            umount2(".", MntFlags::MNT_DETACH).context("detaching the old root")?;
        }
        Err(nix::errno::Errno::EINVAL) if root_is_initramfs() => {
            mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
                .context("moving the container's root over the initramfs")?;
            nix::unistd::chroot(".").context("chroot into the container's root")?;
        }
        Err(errno) => return Err(errno).context("pivot_root"),
    }
    chdir("/").context("chdir /")?;
    Ok(())
}

/// Whether `/` is the kernel's initramfs (ramfs, or tmpfs for an initramfs unpacked there).
fn root_is_initramfs() -> bool {
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    nix::sys::statfs::statfs("/").is_ok_and(|s| {
        let kind = s.filesystem_type().0;
        kind == RAMFS_MAGIC || kind == TMPFS_MAGIC
    })
}

fn redirect_stdio(stdin: fs::File, stdout: OwnedFd, stderr: OwnedFd) -> anyhow::Result<()> {
    use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout};
    dup2_stdin(&stdin).context("redirecting stdin")?;
    dup2_stdout(&stdout).context("redirecting stdout")?;
    dup2_stderr(&stderr).context("redirecting stderr")?;
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
