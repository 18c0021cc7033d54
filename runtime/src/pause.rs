//! The pause process: it holds a pod's network, IPC and UTS namespaces (and its PID
//! namespace, as PID 1) for as long as the pod exists, so containers can come and go without
//! the pod losing its address.
//!
//! It is `node-daemon pause`, started by [`spawn`] with `clone(2)` straight into new
//! namespaces, its hostname already set. Its whole job: reap the zombies that a shared PID
//! namespace hands to PID 1, and exit on SIGTERM or SIGINT.

use std::{ffi::CString, io, os::unix::ffi::OsStrExt, path::Path};

use nix::sys::signal::{self, SigHandler, SigSet, Signal};

/// Runs the pause process. Never returns unless setting up fails.
pub fn main(hostname: &str) -> anyhow::Result<()> {
    // [`spawn`] set it before executing this; set again for a pause process started otherwise.
    nix::unistd::sethostname(hostname)?;
    // PID 1 of a namespace only receives the signals it has a handler for (pid_namespaces(7)):
    // install real handlers, keep the signals blocked and take them with sigwait.
    extern "C" fn noop(_: libc::c_int) {}
    let wanted = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD];
    let mut set = SigSet::empty();
    for sig in wanted {
        set.add(sig);
        // SAFETY: the handler does nothing, which is async-signal-safe.
        unsafe { signal::signal(sig, SigHandler::Handler(noop))? };
    }
    set.thread_block()?;
    loop {
        match set.wait()? {
            Signal::SIGCHLD => reap_all(),
            _ => return Ok(()),
        }
    }
}

fn reap_all() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Starts `<exe> pause --hostname <hostname>` in new PID, network, IPC and UTS namespaces,
/// in its own session, in the cgroup of `cgroup_procs`, with stdio on /dev/null. Returns its
/// pid (in the daemon's namespace) once the namespace has its hostname: the child sets it
/// before it executes, and the caller is held until then (`CLONE_VFORK`). A container that
/// joins the namespace right after — as the first one does — would otherwise find the host's
/// own name there while the pause process was still starting (seen under load: a pod
/// answering "vm", this machine's hostname).
pub fn spawn(exe: &Path, hostname: &str, cgroup_procs: &Path) -> io::Result<i32> {
    // Everything the child needs is prepared here: between clone and exec the child of a
    // multi-threaded process may only make async-signal-safe calls (no allocation).
    let name = hostname.as_bytes();
    let path = CString::new(exe.as_os_str().as_bytes())?;
    let args = [
        CString::new("keel-pause")?,
        CString::new("pause")?,
        CString::new("--hostname")?,
        CString::new(hostname)?,
    ];
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    let null_fd = std::os::fd::AsRawFd::as_raw_fd(&null);
    let procs = std::fs::OpenOptions::new().write(true).open(cgroup_procs)?;
    let procs_fd = std::os::fd::AsRawFd::as_raw_fd(&procs);

    let flags = libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_VFORK
        | libc::SIGCHLD;
    // SAFETY: clone(2) without CLONE_VM and with a null stack behaves like fork(2): the child
    // gets a copy-on-write copy of this thread's stack (CLONE_VFORK only suspends this thread
    // until the child executes or exits). It only makes system calls (sethostname, write,
    // setsid, dup2, execve, _exit) on memory prepared above.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: see above; the child never returns from this block.
        unsafe {
            if libc::sethostname(name.as_ptr().cast(), name.len()) != 0 {
                libc::_exit(125);
            }
            // "0" is the writing process itself.
            if libc::write(procs_fd, b"0".as_ptr().cast(), 1) != 1 {
                libc::_exit(126);
            }
            libc::setsid();
            libc::dup2(null_fd, 0);
            libc::dup2(null_fd, 1);
            libc::dup2(null_fd, 2);
            libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    Ok(pid as i32)
}
