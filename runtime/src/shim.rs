//! The shim: one small process per running container, between the daemon and the container
//! (like containerd's shim or CRI-O's conmon).
//!
//! It exists so that a container does not depend on the daemon: the shim is the container's
//! parent, so it alone can reap it and learn its exit status, and it writes that status into
//! the state directory even when no daemon is running. It also owns the container's stdout
//! and stderr, writing them to the log file line by line with timestamps.
//!
//! `node-daemon shim --spec FILE`, started by the daemon in its own session. Signals: SIGTERM
//! is forwarded to the container; SIGUSR2 becomes SIGKILL for the container (the daemon's
//! graceful stop ends with it). Both go through a pidfd, so they can never hit a recycled pid.

use std::{
    fs,
    io::{Read, Write},
    os::{
        fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
        unix::process::CommandExt,
    },
    path::{Path, PathBuf},
    process::Stdio,
    sync::atomic::{AtomicI32, Ordering},
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context;

use super::spec::{Exit, Running, ShimSpec, MAX_LOG_LINE};
use super::{
    process::ProcessHandle,
    rootfs,
    state::{self, ContainerDir},
};

/// The RFC 3339 time now, with nanoseconds (log lines) or seconds (status).
pub fn now_rfc3339_nanos() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// The pidfd of the container, for the signal handlers (-1 until it exists).
static CONTAINER_PIDFD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn forward(signal: libc::c_int) {
    let fd = CONTAINER_PIDFD.load(Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    let to = if signal == libc::SIGUSR2 {
        libc::SIGKILL
    } else {
        signal
    };
    // SAFETY: pidfd_send_signal is a plain system call, async-signal-safe.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd,
            to,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
}

/// Runs the shim. Must be called before any other thread exists: it forks.
pub fn main(spec_path: &Path) -> anyhow::Result<()> {
    let spec: ShimSpec = state::read_json(spec_path)?
        .with_context(|| format!("{} does not exist", spec_path.display()))?;
    let dir = ContainerDir {
        dir: spec.container_dir.clone(),
    };
    for signal in [libc::SIGTERM, libc::SIGUSR2, libc::SIGINT] {
        // SAFETY: `forward` only reads an atomic and makes one system call.
        unsafe { libc::signal(signal, forward as *const () as libc::sighandler_t) };
    }
    let started_at = now_rfc3339();
    let exit = match run(&spec, &dir) {
        Ok(exit) => exit,
        Err(error) => Exit {
            exit_code: 128,
            signal: None,
            start_error: Some(format!("{error:#}")),
            started_at: started_at.clone(),
            finished_at: now_rfc3339(),
        },
    };
    state::write_json(&dir.exit_json(), &exit)?;
    Ok(())
}

fn run(spec: &ShimSpec, dir: &ContainerDir) -> anyhow::Result<Exit> {
    // PID namespaces are entered by the next child, not by the caller: set it up here so the
    // container's process is born in the right one.
    enter_pid_namespace(spec)?;
    let (out_read, out_write) = pipe()?;
    let (err_read, err_write) = pipe()?;
    // Closed on exec: EOF means the exec happened, a message means it did not.
    let (report_read, report_write) = pipe()?;
    if let Some(parent) = spec.log_file.parent() {
        fs::create_dir_all(parent)?;
    }
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log_file)
        .with_context(|| format!("opening {}", spec.log_file.display()))?;

    // SAFETY: the shim is single-threaded (this runs before any thread is spawned), so the
    // child may do anything the parent could.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork");
    }
    if pid == 0 {
        drop((out_read, err_read, report_read));
        let error = rootfs::enter_and_exec(spec, out_write, err_write);
        let mut report = fs::File::from(report_write);
        let _ = report.write_all(format!("{error:#}").as_bytes());
        // SAFETY: leaving the forked child without running the parent's destructors.
        unsafe { libc::_exit(127) };
    }
    drop((out_write, err_write, report_write));
    let pidfd = open_pidfd(pid)?;
    CONTAINER_PIDFD.store(pidfd.as_raw_fd(), Ordering::SeqCst);
    let started_at = now_rfc3339();

    let mut failure = String::new();
    fs::File::from(report_read).read_to_string(&mut failure)?;
    if failure.is_empty() {
        state::write_json(
            &dir.running_json(),
            &Running {
                pid,
                started_at: started_at.clone(),
            },
        )?;
    }
    // One thread only: after unshare(CLONE_NEWPID) this process may not create threads
    // (clone(2) refuses CLONE_THREAD), so the pipes and the exit are watched with poll.
    let written = log.metadata().map(|m| m.len()).unwrap_or(0);
    let mut log = LogWriter {
        file: log,
        path: spec.log_file.clone(),
        written,
        max_size: spec.log_max_size.max(MAX_LOG_LINE as u64 * 2),
        max_files: spec.log_max_files.max(1),
        streams: [
            Stream::new(out_read, "stdout"),
            Stream::new(err_read, "stderr"),
        ],
    };
    let status = log.pump_until_exit(pid, &pidfd)?;
    CONTAINER_PIDFD.store(-1, Ordering::SeqCst);
    let (exit_code, signal) = status;
    Ok(Exit {
        exit_code,
        signal,
        start_error: (!failure.is_empty()).then_some(failure),
        started_at,
        finished_at: now_rfc3339(),
    })
}

fn enter_pid_namespace(spec: &ShimSpec) -> anyhow::Result<()> {
    use nix::sched::{setns, unshare, CloneFlags};
    if spec.share_pid_namespace {
        let ns = fs::File::open(format!("/proc/{}/ns/pid", spec.pause_pid))
            .context("the pod's pause process is gone")?;
        setns(ns, CloneFlags::CLONE_NEWPID).context("joining the pod's PID namespace")?;
    } else {
        unshare(CloneFlags::CLONE_NEWPID).context("creating the container's PID namespace")?;
    }
    Ok(())
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}

fn open_pidfd(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) of our own unreaped child.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new fd, ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// One of the container's output streams, split into lines.
struct Stream {
    fd: Option<OwnedFd>,
    name: &'static str,
    partial: Vec<u8>,
}

impl Stream {
    fn new(fd: OwnedFd, name: &'static str) -> Self {
        Self {
            fd: Some(fd),
            name,
            partial: Vec::new(),
        }
    }
}

/// Writes the container's output to its log: `<RFC 3339 time> <stream> <tag> <line>`, the
/// CRI log format the kubelet reads (`F` marks a full line or the end of one, `P` a part).
/// The file is rotated as the kubelet rotates it: renamed to `<file>.<time>` when the next
/// entry would take it past `max_size`, with at most `max_files - 1` rotated files kept.
struct LogWriter {
    file: fs::File,
    path: PathBuf,
    written: u64,
    max_size: u64,
    max_files: u32,
    streams: [Stream; 2],
}

impl LogWriter {
    /// Copies output until the process exits, then what is still in the pipes (for at most
    /// 2 s: a process the container left behind may hold a pipe open, and must not keep the
    /// exit from being recorded).
    fn pump_until_exit(
        &mut self,
        pid: i32,
        pidfd: &OwnedFd,
    ) -> std::io::Result<(i32, Option<i32>)> {
        let mut status = None;
        let mut drain_deadline: Option<std::time::Instant> = None;
        loop {
            let open: Vec<usize> = (0..2).filter(|i| self.streams[*i].fd.is_some()).collect();
            if status.is_some() && open.is_empty() {
                break;
            }
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            let timeout = match drain_deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
                }
                None => PollTimeout::NONE,
            };
            let mut fds: Vec<PollFd> = open
                .iter()
                .filter_map(|i| self.streams[*i].fd.as_ref())
                .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
                .collect();
            if status.is_none() {
                fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue, // a forwarded signal
                Err(errno) => return Err(errno.into()),
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            for (slot, index) in open.iter().enumerate() {
                if ready[slot] {
                    self.read_stream(*index);
                }
            }
            if status.is_none() && ready.last() == Some(&true) {
                status = Some(super::process::wait_for_child(pid)?);
                drain_deadline = Some(std::time::Instant::now() + Duration::from_secs(2));
            }
        }
        for index in 0..2 {
            let stream = &mut self.streams[index];
            if !stream.partial.is_empty() {
                let line = std::mem::take(&mut stream.partial);
                let name = stream.name;
                self.write_entry(name, 'F', &line);
            }
        }
        status.ok_or_else(|| std::io::Error::other("the container's exit was not seen"))
    }

    fn read_stream(&mut self, index: usize) {
        let mut buffer = [0u8; 16 * 1024];
        let stream = &mut self.streams[index];
        let Some(fd) = stream.fd.as_ref() else { return };
        let read = match nix::unistd::read(fd.as_fd(), &mut buffer) {
            Ok(0) => {
                stream.fd = None; // EOF: every writer has gone
                return;
            }
            Ok(read) => read,
            Err(nix::errno::Errno::EINTR) => return,
            Err(_) => {
                stream.fd = None;
                return;
            }
        };
        stream.partial.extend_from_slice(&buffer[..read]);
        let name = stream.name;
        let mut entries = Vec::new();
        loop {
            let newline = stream.partial.iter().position(|b| *b == b'\n');
            match newline {
                Some(end) if end <= MAX_LOG_LINE => {
                    let line: Vec<u8> = stream.partial.drain(..=end).collect();
                    entries.push(('F', line[..line.len() - 1].to_vec()));
                }
                _ if stream.partial.len() >= MAX_LOG_LINE => {
                    entries.push(('P', stream.partial.drain(..MAX_LOG_LINE).collect()));
                }
                _ => break,
            }
        }
        for (tag, line) in entries {
            self.write_entry(name, tag, &line);
        }
    }

    fn write_entry(&mut self, stream: &str, tag: char, line: &[u8]) {
        let mut entry = format!("{} {stream} {tag} ", now_rfc3339_nanos()).into_bytes();
        entry.extend_from_slice(line);
        entry.push(b'\n');
        if self.written > 0 && self.written + entry.len() as u64 > self.max_size {
            if let Err(error) = self.rotate() {
                // Keep writing to the file we have: losing output is worse than a big file.
                eprintln!("rotating {}: {error}", self.path.display());
            }
        }
        if self.file.write_all(&entry).is_ok() {
            self.written += entry.len() as u64;
        }
    }

    /// Renames the live file to `<file>.<time>`, removes the oldest rotated files beyond
    /// `max_files - 1`, and starts a new live file.
    fn rotate(&mut self) -> std::io::Result<()> {
        let stamp: String = now_rfc3339_nanos()
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut rotated = self.path.as_os_str().to_owned();
        rotated.push(format!(".{stamp}"));
        fs::rename(&self.path, &rotated)?;
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.file = file;
        self.written = 0;
        for old in rotated_logs(&self.path)
            .iter()
            .rev()
            .skip(self.max_files as usize - 1)
        {
            let _ = fs::remove_file(old);
        }
        Ok(())
    }
}

/// The rotated files of a live log file, oldest first.
pub fn rotated_logs(live: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (live.parent(), live.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// Why a container did not start.
pub(super) enum LaunchError {
    /// The shim reported the container's end (an exec that failed, say).
    Exited(Exit),
    Other(anyhow::Error),
}

/// Starts the shim and waits until it reports the container's process running (or
/// failed to start).
pub(super) async fn launch(
    exe: &std::path::Path,
    spec: &ShimSpec,
    container_dir: &ContainerDir,
    cgroup_procs: &std::path::Path,
) -> Result<(ProcessHandle, Running), LaunchError> {
    let spec_path = container_dir.spec_json();
    state::write_json(&spec_path, spec).map_err(|e| LaunchError::Other(e.into()))?;
    let log = std::fs::File::create(container_dir.shim_log())
        .map_err(|e| LaunchError::Other(e.into()))?;
    let log_err = log.try_clone().map_err(|e| LaunchError::Other(e.into()))?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("shim")
        .arg("--spec")
        .arg(&spec_path)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let procs = std::fs::OpenOptions::new()
        .write(true)
        .open(cgroup_procs)
        .with_context(|| format!("opening {}", cgroup_procs.display()))
        .map_err(LaunchError::Other)?;
    let procs_fd = std::os::fd::AsRawFd::as_raw_fd(&procs);
    // SAFETY: write(2) and setsid(2) are async-signal-safe, on an fd opened before the
    // fork. The shim joins keel's cgroup (so that everything keel started is found there)
    // and gets its own session, out of the daemon's process group: a Ctrl-C meant for the
    // daemon does not reach the pods.
    unsafe {
        command.pre_exec(move || {
            if libc::write(procs_fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::setsid();
            Ok(())
        });
    }
    let child = command
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))
        .map_err(LaunchError::Other)?;
    let handle = ProcessHandle::from_child(child.id() as i32)
        .context("watching the shim")
        .map_err(LaunchError::Other)?;
    // The pidfd reaps it; the std handle is not needed.
    drop(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(running)) = state::read_json::<Running>(&container_dir.running_json()) {
            return Ok((handle, running));
        }
        if handle.has_exited() {
            handle.wait_blocking();
            let exit = state::read_json::<Exit>(&container_dir.exit_json())
                .ok()
                .flatten()
                .unwrap_or_else(|| Exit {
                    exit_code: 128,
                    signal: None,
                    start_error: Some(format!(
                        "the shim exited without a status: {}",
                        last_line(&container_dir.shim_log())
                    )),
                    started_at: now_rfc3339(),
                    finished_at: now_rfc3339(),
                });
            return Err(LaunchError::Exited(exit));
        }
        if Instant::now() > deadline {
            let _ = handle.signal(libc::SIGKILL);
            return Err(LaunchError::Other(anyhow::anyhow!(
                "the container did not start within 20 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What a shim said before it died (its error), or where to look.
fn last_line(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let said: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("RUST_BACKTRACE"))
        .collect();
    if said.is_empty() {
        format!("see {}", path.display())
    } else {
        said[said.len().saturating_sub(3)..].join(" | ")
    }
}
