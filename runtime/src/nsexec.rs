//! Running a command inside a running container: its namespaces (PID, IPC, UTS, network,
//! mount — so its root file system), its cgroups, its user and capabilities. Used by exec
//! probes and by `node-daemon exec`.
//!
//! It must run single-threaded: entering a PID namespace takes effect for children only, so
//! the caller forks after `setns`. The daemon therefore runs it as a helper process
//! (`node-daemon nsexec`), killable on a probe's timeout; the CLI runs it directly.

use std::{fs, path::Path};

use anyhow::{bail, Context};
use nix::sched::{setns, CloneFlags};

use super::{rootfs, spec::ShimSpec, state};

/// Runs `command` in the container whose shim spec is `spec_path` and whose process is
/// `pid` (host pid); returns the command's exit code (128 + signal if killed).
pub fn run(spec_path: &Path, pid: i32, command: &[String]) -> anyhow::Result<i32> {
    if command.is_empty() {
        bail!("no command to run");
    }
    let spec: ShimSpec = state::read_json(spec_path)?
        .with_context(|| format!("{} does not exist", spec_path.display()))?;
    // Opened first: once the PID namespace is entered, /proc/<pid> is still the host's, but
    // the process may exit at any moment, and open fds keep the namespaces reachable.
    let open = |name: &str| {
        fs::File::open(format!("/proc/{pid}/ns/{name}"))
            .with_context(|| format!("the container's process ({pid}) is gone"))
    };
    let (pid_ns, ipc, uts, net, mnt) = (
        open("pid")?,
        open("ipc")?,
        open("uts")?,
        open("net")?,
        open("mnt")?,
    );
    setns(pid_ns, CloneFlags::CLONE_NEWPID).context("entering the container's PID namespace")?;
    // SAFETY: this process is single-threaded (see the module docs).
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(std::io::Error::last_os_error()).context("fork");
    }
    if child == 0 {
        let error = enter_and_exec(
            &spec,
            [
                (ipc, "ipc", CloneFlags::CLONE_NEWIPC),
                (uts, "uts", CloneFlags::CLONE_NEWUTS),
                (net, "net", CloneFlags::CLONE_NEWNET),
                (mnt, "mnt", CloneFlags::CLONE_NEWNS),
            ],
            command,
        );
        eprintln!("exec in container {}: {error:#}", spec.container);
        // SAFETY: leaving the forked child without running the parent's destructors.
        unsafe { libc::_exit(126) };
    }
    let (code, _) = super::process::wait_for_child(child).context("waitpid")?;
    Ok(code)
}

fn enter_and_exec(
    spec: &ShimSpec,
    namespaces: [(fs::File, &str, CloneFlags); 4],
    command: &[String],
) -> anyhow::Error {
    let result = (|| -> anyhow::Result<std::convert::Infallible> {
        // Killed with the helper: a probe's timeout kills the helper, and must not leave the
        // command running in the container.
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
        // Not dumpable while it holds the host's descriptors and privileges: the container's
        // processes may not ptrace or read /proc/<pid> of it (runc's CVE-2016-9962). The
        // exec of the command makes it dumpable again.
        nix::sys::prctl::set_dumpable(false)?;
        // The cgroups first: their paths are the host's, gone once in the container's
        // mount namespace.
        for procs in &spec.cgroup_procs {
            fs::write(procs, "0").with_context(|| format!("joining {}", procs.display()))?;
        }
        for (file, name, flag) in namespaces {
            setns(file, flag)
                .with_context(|| format!("entering the container's {name} namespace"))?;
        }
        // `kubectl exec -t`: stdin is the terminal of the session (a pty whose other end is
        // the exec stream); the command leads a session of its own with it as its controlling
        // terminal, so that a shell gets job control and ^C reaches what runs in it.
        if nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
            nix::unistd::setsid().context("a session for the terminal")?;
            // SAFETY: TIOCSCTTY takes an int argument; fd 0 is open (a terminal, checked).
            if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
                return Err(std::io::Error::last_os_error()).context("taking the terminal");
            }
        }
        super::security::lock_down(&spec.security, spec.uid, spec.gid)?;
        // A change of user clears the parent-death signal: set it again.
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
        nix::unistd::chdir(Path::new(&spec.working_dir)).or_else(|_| nix::unistd::chdir("/"))?;
        rootfs::exec(command, &spec.env)
    })();
    match result {
        Ok(never) => match never {},
        Err(error) => error,
    }
}
