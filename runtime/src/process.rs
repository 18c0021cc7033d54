//! Processes the daemon watches but may not have started: the pause and shim processes of
//! pods, which outlive a daemon restart and are adopted by the next daemon.
//!
//! A pid alone is not an identity (pids are reused), so keel records the pid together with
//! the process's start time (field 22 of `/proc/<pid>/stat`) and acts on a process only
//! through a pidfd opened after checking both.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
};

use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;

/// A process as recorded in the state directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessId {
    pub pid: i32,
    /// Clock ticks after boot when the process started.
    pub start_time: u64,
}

impl ProcessId {
    /// The identity of a running process.
    pub fn of(pid: i32) -> io::Result<Self> {
        Ok(Self {
            pid,
            start_time: start_time(pid)?,
        })
    }

    /// Opens the process if it is still the one recorded; `None` when it has gone.
    pub fn open(&self) -> io::Result<Option<ProcessHandle>> {
        let fd = match pidfd_open(self.pid) {
            Ok(fd) => fd,
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
            Err(err) => return Err(err),
        };
        // Checked after opening: from here on the pidfd pins the process, so a match means
        // the fd refers to the recorded process, not to a later one with the same pid.
        match start_time(self.pid) {
            Ok(time) if time == self.start_time => Ok(Some(ProcessHandle { id: *self, fd })),
            Ok(_) => Ok(None),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }
}

fn start_time(pid: i32) -> io::Result<u64> {
    let process = procfs::process::Process::new(pid).map_err(procfs_error)?;
    let stat = process.stat().map_err(procfs_error)?;
    // A zombie has exited: it is not running whatever its pid says.
    if stat.state == 'Z' {
        return Err(io::Error::new(io::ErrorKind::NotFound, "zombie"));
    }
    Ok(stat.starttime)
}

fn procfs_error(err: procfs::ProcError) -> io::Error {
    match err {
        procfs::ProcError::NotFound(_) => io::Error::new(io::ErrorKind::NotFound, err),
        other => io::Error::other(other),
    }
}

/// Waits for the child `pid` to end and reaps it; returns its exit code (128 + the signal that
/// killed it, as a shell reports it) and the killing signal, if any.
pub fn wait_for_child(pid: i32) -> io::Result<(i32, Option<i32>)> {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok((code, None)),
            Ok(WaitStatus::Signaled(_, signal, _)) => {
                let signal = signal as i32;
                return Ok((128 + signal, Some(signal)));
            }
            // Stopped or continued: not an end; wait on.
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
}

fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A live process, held by a pidfd.
#[derive(Debug)]
pub struct ProcessHandle {
    id: ProcessId,
    fd: OwnedFd,
}

impl ProcessHandle {
    /// The process just started by this daemon.
    pub fn from_child(pid: i32) -> io::Result<Self> {
        let fd = pidfd_open(pid)?;
        Ok(Self {
            id: ProcessId::of(pid)?,
            fd,
        })
    }

    pub fn id(&self) -> ProcessId {
        self.id
    }

    /// Sends `signal`; a process that has exited meanwhile is not an error.
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        // SAFETY: pidfd_send_signal(2) with a pidfd we own, no siginfo, no flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ESRCH) {
                return Err(err);
            }
        }
        Ok(())
    }

    /// Whether the process has exited (without waiting).
    pub fn has_exited(&self) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).is_ok_and(|ready| ready > 0)
    }

    /// Waits until the process exits, then reaps it if it is the daemon's child (an adopted
    /// process belongs to whoever inherited it).
    pub async fn exited(self) -> io::Result<ProcessId> {
        let id = self.id;
        // SAFETY: an OwnedFd returns the same open fd for as long as it lives, and the
        // AsyncFd owns it from here on.
        let fd = unsafe { AsyncFd::register_with_interest(self.fd, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        let _ = fd.readable().await?;
        reap(fd.get_ref());
        Ok(id)
    }

    /// [`ProcessHandle::exited`] without async: blocks the thread.
    pub fn wait_blocking(self) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        // Interrupted by a signal: poll again.
        while poll(&mut fds, PollTimeout::NONE).is_err() {}
        reap(&self.fd);
    }
}

fn reap(fd: &OwnedFd) {
    // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid(2).
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: P_PIDFD with our pidfd; ECHILD (not our child) is expected and ignored.
    unsafe {
        libc::waitid(
            libc::P_PIDFD,
            fd.as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn identity_survives_only_while_the_process_lives() {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = child.id() as i32;
        let id = ProcessId::of(pid).expect("identity");
        let handle = id.open().expect("open").expect("alive");
        assert!(!handle.has_exited());
        // A different start time is a different process, even with the same pid.
        let stale = ProcessId {
            start_time: id.start_time + 1,
            ..id
        };
        assert!(stale.open().expect("open").is_none());
        handle.signal(libc::SIGKILL).expect("kill");
        let exited = tokio::time::timeout(std::time::Duration::from_secs(5), handle.exited())
            .await
            .expect("exits")
            .expect("wait");
        assert_eq!(exited, id);
        assert!(id.open().expect("open").is_none(), "reaped and gone");
        drop(child);
    }
}
