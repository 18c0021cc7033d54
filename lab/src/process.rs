//! Processes placed in a network namespace and/or a cgroup, killed when dropped.
//!
//! The placement happens in the child between fork and exec, so the program's very first
//! instruction already runs in place: a client cannot connect before it is in keel's cgroup.
//! Only the network namespace is entered (`setns(CLONE_NEWNET)`), never a mount namespace,
//! so the host's `/sys/fs/cgroup` and `/sys/fs/bpf` stay visible (`ip netns exec` would hide
//! them).

use std::{
    ffi::CString,
    fs::File,
    io::{self, BufRead, BufReader, Read},
    os::{fd::AsRawFd, unix::ffi::OsStrExt, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

/// Where a process runs. `Default` is "where the caller is".
#[derive(Debug, Default, Clone)]
pub struct Placement {
    /// `/run/netns/NAME` to enter.
    pub netns: Option<PathBuf>,
    /// A cgroup v2 directory to join.
    pub cgroup: Option<PathBuf>,
}

/// A process's CPU time so far (user + system), from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    let id = i32::try_from(pid).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("pid {pid} is not a process id"),
        )
    })?;
    let stat = procfs::process::Process::new(id)
        .and_then(|process| process.stat())
        .map_err(|e| io::Error::other(format!("reading /proc/{pid}/stat: {e}")))?;
    Ok(Duration::from_secs_f64(
        (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64,
    ))
}

/// A running process whose output lines are collected. Killed and reaped on drop.
#[derive(Debug)]
pub struct Child {
    name: String,
    child: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// The threads reading stdout and stderr; each ends at its pipe's end of file.
    collectors: Vec<thread::JoinHandle<()>>,
}

/// How long a process that exited may leave its output unread: its collectors end when the
/// pipes close, at once unless a process it left behind holds them open.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

impl Child {
    /// Spawns `command` at `placement`, collecting stdout and stderr lines.
    pub fn spawn(name: &str, mut command: Command, placement: &Placement) -> io::Result<Self> {
        let netns = placement.netns.as_deref().map(File::open).transpose()?;
        let cgroup_procs = placement
            .cgroup
            .as_deref()
            .map(|cg| path_cstring(&cg.join("cgroup.procs")))
            .transpose()?;
        let netns_fd = netns.as_ref().map(|f| f.as_raw_fd());
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // system calls (open, write, close, setns) on memory prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                if let Some(procs) = &cgroup_procs {
                    join_cgroup(procs)?;
                }
                if let Some(fd) = netns_fd {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn()?;
        drop(netns);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut collectors = Vec::new();
        if let Some(out) = child.stdout.take() {
            collectors.push(collect(out, lines.clone()));
        }
        if let Some(err) = child.stderr.take() {
            collectors.push(collect(err, lines.clone()));
        }
        Ok(Self {
            name: name.to_owned(),
            child,
            lines,
            collectors,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line printed so far (stdout and stderr interleaved as they arrived).
    pub fn output(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits until a line contains `needle`. Errors if the process exits or time runs out.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.output().iter().any(|l| l.contains(needle)) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                // It may have printed the line and exited before the collectors read it.
                self.drain();
                if self.output().iter().any(|l| l.contains(needle)) {
                    return Ok(());
                }
                return Err(io::Error::other(format!(
                    "{} exited ({status}) before printing {needle:?}:\n{}",
                    self.name,
                    self.output().join("\n")
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} did not print {needle:?} within {timeout:?}:\n{}",
                        self.name,
                        self.output().join("\n")
                    ),
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the process has exited, and how, without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<std::process::ExitStatus>> {
        self.child.try_wait()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for exit, up to `timeout`; returns the exit code (`None`: killed by a signal or
    /// still running when time ran out).
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<i32>> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                self.drain();
                return Ok(status.code());
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(None)
    }

    /// Waits (at most [`DRAIN_LIMIT`]) until the collectors have read the pipes to their end:
    /// a process that exited has printed everything, but a loaded machine may not yet have run
    /// the threads that read it (a fixed 20 ms pause used to hand `curl`'s answer back empty).
    fn drain(&self) {
        let limit = Instant::now() + DRAIN_LIMIT;
        while self.collectors.iter().any(|c| !c.is_finished()) && Instant::now() < limit {
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for exit and returns everything printed.
    pub fn finish(mut self, timeout: Duration) -> io::Result<(Option<i32>, Vec<String>)> {
        let code = self.wait_timeout(timeout)?;
        Ok((code, self.output()))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn path_cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is `procs` ("0" = myself).
fn join_cgroup(procs: &CString) -> io::Result<()> {
    // SAFETY: plain system calls on a valid NUL-terminated path and a static buffer.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let written = libc::write(fd, b"0".as_ptr().cast(), 1);
        let err = io::Error::last_os_error();
        libc::close(fd);
        if written != 1 {
            return Err(err);
        }
    }
    Ok(())
}

fn collect(
    stream: impl Read + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Ok(mut lines) = lines.lock() {
                lines.push(line);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Child {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        Child::spawn("sh", command, &Placement::default()).expect("sh")
    }

    /// What a process printed is all there when `finish` returns, including what a process it
    /// left behind printed before closing the pipes.
    #[test]
    fn finish_returns_everything_printed_up_to_the_pipes_end() {
        let (code, lines) = sh("(sleep 0.3; echo late) & echo early")
            .finish(Duration::from_secs(5))
            .expect("finish");
        assert_eq!(code, Some(0));
        assert_eq!(lines, ["early", "late"]);
        let (_, lines) = sh("seq 1 50000")
            .finish(Duration::from_secs(10))
            .expect("finish");
        assert_eq!(lines.len(), 50_000);
        assert_eq!(lines.last().map(String::as_str), Some("50000"));
    }

    /// A process left behind that holds the pipes open does not hold `finish` up for longer
    /// than [`DRAIN_LIMIT`].
    #[test]
    fn a_process_left_holding_the_pipes_does_not_hold_finish_up() {
        let started = Instant::now();
        let (code, lines) = sh("sleep 30 & echo $!")
            .finish(Duration::from_secs(5))
            .expect("finish");
        let left = lines.first().and_then(|pid| pid.parse::<i32>().ok());
        if let Some(pid) = left {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        assert_eq!((code, lines.len()), (Some(0), 1), "{lines:?}");
        assert!(left.is_some(), "{lines:?}");
        assert!(
            started.elapsed() < DRAIN_LIMIT + Duration::from_secs(2),
            "finish took {:?}",
            started.elapsed()
        );
    }
}
